//! `vlbeit-train visual-tokenizer`: trains the VQ-KD visual tokenizer (MIM targets) on a
//! scenes data set and saves it as a tokenizer directory.

use std::path::PathBuf;

use anyhow::Context;
use vlbeit_core::preprocess::Preprocessor;
use vlbeit_core::{ModelConfig, PreprocessConfig};

use crate::visual_tokenizer::{self, TrainOptions, VisualTokenizer, VisualTokenizerConfig};

/// Arguments of `vlbeit-train visual-tokenizer`.
#[derive(Debug, clap::Args)]
pub struct VisualTokenizerArgs {
    /// A scenes data set (`vlbeit-train scenes`); its train split's images are used.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory (visual_tokenizer.json + visual_tokenizer.safetensors), written
    /// atomically; an earlier tokenizer there is replaced.
    #[arg(long)]
    pub out: PathBuf,
    /// Model preset whose image size, patch size and visual_vocab the tokenizer must fit.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    #[arg(long, default_value_t = TrainOptions::default().steps)]
    pub steps: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (warmup, then cosine decay).
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Codebook size; defaults to the model's visual_vocab (a different size will not load
    /// for that model).
    #[arg(long)]
    pub codebook_size: Option<usize>,
    /// Metrics as JSON lines (default: `<out>.metrics.jsonl` next to the output directory).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Train on the CPU even when a GPU is visible.
    #[arg(long)]
    pub cpu: bool,
    /// libtorch CPU threads (default: libtorch's choice). On a shared 2-core machine 1 is
    /// several times faster than 2: OpenMP threads spin while waiting for a busy core.
    #[arg(long)]
    pub threads: Option<i32>,
}

pub fn run(args: &VisualTokenizerArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads);
    }
    let model = ModelConfig::preset(&args.model)?;
    let mut config = VisualTokenizerConfig::for_model(&model);
    if let Some(k) = args.codebook_size {
        config.codebook_size = k;
    }
    let device = if args.cpu {
        tch::Device::Cpu
    } else {
        crate::device::TorchInfo::probe()?.default_device()
    };
    let preprocessor =
        Preprocessor::new(PreprocessConfig::for_image_size(model.image_size as u32))?;
    let images = visual_tokenizer::load_scene_images(&args.data)?;
    let metrics = args.metrics.clone().unwrap_or_else(|| {
        let mut name = args.out.file_name().unwrap_or_default().to_os_string();
        name.push(".metrics.jsonl");
        args.out.with_file_name(name)
    });
    let options = TrainOptions {
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        metrics_path: Some(metrics.clone()),
        ..TrainOptions::default()
    };
    let mut tokenizer = VisualTokenizer::new(config, device)?;
    eprintln!(
        "training a visual tokenizer ({} codes, {} parameters) on {} images from {} ({:?})",
        tokenizer.config().codebook_size,
        tokenizer
            .var_store()
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum::<usize>(),
        images.len(),
        args.data.display(),
        device,
    );
    let summary = visual_tokenizer::train(&mut tokenizer, &images, &preprocessor, &options)?;
    tokenizer
        .save(&args.out)
        .with_context(|| format!("saving the tokenizer to {}", args.out.display()))?;
    println!(
        "trained {} steps of batch {} in {:.1} s: loss {:.4} (from {:.4}), codebook usage {:.1}%, perplexity {:.1} -> {} (metrics: {})",
        summary.steps,
        summary.batch_size,
        summary.seconds,
        summary.final_loss,
        summary.initial_loss,
        summary.codebook_usage * 100.0,
        summary.perplexity,
        args.out.display(),
        metrics.display(),
    );
    Ok(())
}
