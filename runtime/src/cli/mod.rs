//! The subcommands of `vlbeit`.

pub mod bench;
pub mod inspect;
pub mod serve;

use std::path::PathBuf;

use anyhow::Context;
use vlbeit::{ExecutionProvider, Model, ModelOptions, Runtime, RuntimeOptions, TensorRtOptions};

use crate::ModelArgs;

/// Options every subcommand shares.
pub struct Ctx {
    pub ort_library: Option<PathBuf>,
    pub json: bool,
}

impl Ctx {
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        Runtime::new(RuntimeOptions {
            ort_library: self.ort_library.clone(),
        })
        .context("loading ONNX Runtime")
    }

    pub fn model(&self, args: &ModelArgs) -> anyhow::Result<Model> {
        let runtime = self.runtime()?;
        let mut provider = ExecutionProvider::parse(&args.provider)?;
        match &mut provider {
            ExecutionProvider::Cpu { threads } => *threads = args.threads,
            ExecutionProvider::TensorRt(options) => {
                *options = TensorRtOptions {
                    fp16: args.trt_fp16,
                    engine_cache_dir: args.trt_cache.clone(),
                    timing_cache: args.trt_cache.is_some(),
                    ..options.clone()
                }
            }
            ExecutionProvider::Cuda { .. } => {}
        }
        let mut options = ModelOptions::default()
            .with_provider(provider)
            .with_max_batch(args.max_batch);
        if args.no_strict {
            options = options.with_strict(false);
        }
        Model::load(&runtime, &args.bundle, options)
            .with_context(|| format!("loading bundle {}", args.bundle.display()))
    }

    /// Prints `value` as pretty JSON.
    pub fn print_json(&self, value: &serde_json::Value) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }
}
