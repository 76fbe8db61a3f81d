//! `vlbeit-train pretrain`: one-stage MLM + MIM + MVLM pretraining.

use std::path::PathBuf;

use anyhow::Context;
use vlbeit_core::config::ModelConfig;
use vlbeit_core::text::TextTokenizer;

use crate::pretrain::{PretrainConfig, Tasks, pretrain};

/// Arguments of `vlbeit-train pretrain`.
#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    /// Model: a preset (`tiny`, `base`; vocab_size is taken from the tokenizer) or a config.json
    /// (its vocab_size must equal the tokenizer's).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Scenes data set directory (`vlbeit-train scenes`).
    #[arg(long, default_value = "data/scenes")]
    pub data: PathBuf,
    #[arg(long, default_value = "data/tokenizer.json")]
    pub tokenizer: PathBuf,
    /// Visual tokenizer directory (`vlbeit-train visual-tokenizer`).
    #[arg(long, default_value = "data/visual_tokenizer")]
    pub visual_tokenizer: PathBuf,
    /// Run directory (checkpoint/, metrics.jsonl); an existing checkpoint there is resumed.
    #[arg(long, default_value = "data/pretrain")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Images = texts = pairs per micro-batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate (the seed: 2e-3 at batch 6144; small CPU runs need more per sample).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-5)]
    pub min_lr: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 3.0)]
    pub clip_grad: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Comma-separated subset of mlm,mim,mvlm (the seed's Table 4 ablation).
    #[arg(long, default_value = "mlm,mim,mvlm")]
    pub pretrain_tasks: String,
    /// Held-out evaluation every N steps (and at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    #[arg(long, default_value_t = 8)]
    pub eval_batches: usize,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Pause after this step (resume later with the same command).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// `cpu`, `cuda` or `auto`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// Resolves the model config: presets take their vocabulary size from the tokenizer.
pub fn model_config(spec: &str, tokenizer: &TextTokenizer) -> anyhow::Result<ModelConfig> {
    match ModelConfig::preset(spec) {
        Ok(mut config) => {
            config.vocab_size = tokenizer.vocab_size();
            Ok(config)
        }
        Err(_) => ModelConfig::load(std::path::Path::new(spec)).with_context(|| {
            format!("`{spec}` is neither a preset (tiny, base) nor a config file")
        }),
    }
}

pub fn device(spec: &str) -> anyhow::Result<tch::Device> {
    Ok(match spec {
        "cpu" => tch::Device::Cpu,
        "cuda" => {
            anyhow::ensure!(
                tch::Cuda::is_available(),
                "--device cuda: no CUDA device is visible"
            );
            tch::Device::Cuda(0)
        }
        "auto" => tch::Device::cuda_if_available(),
        other => anyhow::bail!("unknown device `{other}` (cpu, cuda, auto)"),
    })
}

pub fn run(args: &PretrainArgs) -> anyhow::Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)
        .with_context(|| format!("loading {}", args.tokenizer.display()))?;
    let model = model_config(&args.config, &tokenizer)?;
    let mut config = PretrainConfig::new(
        model,
        args.data.clone(),
        args.tokenizer.clone(),
        args.visual_tokenizer.clone(),
        args.out.clone(),
    );
    config.steps = args.steps;
    config.batch_size = args.batch_size;
    config.grad_accum = args.grad_accum;
    config.peak_lr = args.lr;
    config.min_lr = args.min_lr;
    config.warmup_steps = args.warmup;
    config.adamw.weight_decay = args.weight_decay;
    config.clip_grad = args.clip_grad;
    config.seed = args.seed;
    config.tasks = Tasks::parse(&args.pretrain_tasks).map_err(anyhow::Error::msg)?;
    config.eval_every = args.eval_every;
    config.eval_batches = args.eval_batches;
    config.checkpoint_every = args.checkpoint_every;
    config.stop_after = args.stop_after;
    config.device = device(&args.device)?;
    config.progress = !args.quiet;
    let outcome = pretrain(&config)?;
    if let Some(from) = outcome.resumed_from {
        println!("resumed from step {from}");
    }
    println!(
        "pretrained {} steps (now at step {}/{}) at {:.1} samples/s; checkpoint: {}",
        outcome.steps_run,
        outcome.step,
        config.steps,
        outcome.samples_per_second,
        outcome.checkpoint.display()
    );
    if let Some(eval) = &outcome.eval {
        println!("held-out: {}", eval.summary());
    }
    Ok(())
}
