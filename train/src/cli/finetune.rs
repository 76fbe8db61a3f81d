//! `vlbeit-train finetune`: fine-tune a checkpoint on a downstream task.

use std::path::PathBuf;

use crate::cli::pretrain::device;
use crate::finetune::{DataFormat, FinetuneConfig, Task, finetune};

/// Arguments of `vlbeit-train finetune`.
#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    /// retrieval, vqa, nlvr2, classify or segment.
    #[arg(long)]
    pub task: Task,
    /// Checkpoint directory to start from (e.g. data/pretrain/checkpoint).
    #[arg(long)]
    pub init: PathBuf,
    /// Data directory (see --format).
    #[arg(long, default_value = "data/scenes")]
    pub data: PathBuf,
    /// Layout of --data (docs/finetuning.md).
    #[arg(long, default_value = "scenes")]
    pub format: DataFormat,
    #[arg(long, default_value = "train")]
    pub train_split: String,
    /// Split evaluated at the end (`val`, `test`, `compositional` for the scenes).
    #[arg(long, default_value = "val")]
    pub eval_split: String,
    /// Run directory: checkpoint/, metrics.jsonl, eval.json.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-6)]
    pub min_lr: f64,
    #[arg(long, default_value_t = 30)]
    pub warmup: u64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 3.0)]
    pub clip_grad: f64,
    /// Layer-wise learning-rate decay (BEiT; e.g. 0.65). Off when not given.
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// Fine-tune at this image side instead of the checkpoint's (positions interpolated).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Stochastic depth rate (default: the checkpoint's).
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Segmentation: comma-separated 0-based blocks the decoder reads (default: quarter ends).
    #[arg(long, value_delimiter = ',')]
    pub segment_layers: Option<Vec<usize>>,
    /// Retrieval: candidates per query reranked by the fusion encoder at evaluation.
    #[arg(long, default_value_t = 8)]
    pub rerank_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `cpu`, `cuda` or `auto`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: &FinetuneArgs) -> anyhow::Result<()> {
    let mut config = FinetuneConfig::new(
        args.task,
        args.init.clone(),
        args.data.clone(),
        args.out.clone(),
    );
    config.format = args.format;
    config.train_split = args.train_split.clone();
    config.eval_split = args.eval_split.clone();
    config.steps = args.steps;
    config.batch_size = args.batch_size;
    config.peak_lr = args.lr;
    config.min_lr = args.min_lr;
    config.warmup_steps = args.warmup;
    config.adamw.weight_decay = args.weight_decay;
    config.clip_grad = args.clip_grad;
    config.layer_decay = args.layer_decay;
    config.image_size = args.image_size;
    config.drop_path = args.drop_path;
    config.segment_layers = args.segment_layers.clone();
    config.rerank_k = args.rerank_k;
    config.seed = args.seed;
    config.device = device(&args.device)?;
    config.progress = !args.quiet;
    let outcome = finetune(&config)?;
    println!(
        "fine-tuned {} for {} steps (last loss {:.4}); checkpoint: {}",
        args.task,
        outcome.steps,
        outcome
            .last_metrics
            .get("loss")
            .copied()
            .unwrap_or(f64::NAN),
        outcome.checkpoint.display()
    );
    println!(
        "{} ({}): {}",
        args.eval_split,
        args.task,
        crate::cli::eval::format_metrics(&outcome.eval)
    );
    Ok(())
}
