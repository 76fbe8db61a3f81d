//! `vlbeit-train eval`: the seed's metrics of a fine-tuned checkpoint on a split.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cli::pretrain::device;
use crate::finetune::{DataFormat, FinetunedModel, Task, evaluate_task, load_task_data};

/// Arguments of `vlbeit-train eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub task: Task,
    /// A checkpoint directory (`finetune`'s `checkpoint/`; for retrieval also a pretrained one).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "data/scenes")]
    pub data: PathBuf,
    #[arg(long, default_value = "scenes")]
    pub format: DataFormat,
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Retrieval: candidates per query reranked by the fusion encoder.
    #[arg(long, default_value_t = 8)]
    pub rerank_k: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `name value` pairs on one line, values with two decimals.
pub fn format_metrics(metrics: &BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Evaluates and returns the metrics (also what `run` prints).
pub fn evaluate(args: &EvalArgs) -> anyhow::Result<BTreeMap<String, f64>> {
    let loaded = FinetunedModel::load(&args.checkpoint, device(&args.device)?)?;
    let data = load_task_data(
        args.task,
        args.format,
        &args.data,
        &args.split,
        &loaded.config.preprocess,
    )?;
    Ok(evaluate_task(
        &loaded.task_model(),
        &data,
        loaded.config.heads.answers.as_deref(),
        loaded.config.heads.classes.as_deref(),
        args.rerank_k,
        args.batch_size,
    )?)
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let metrics = evaluate(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        println!(
            "{} ({}): {}",
            args.split,
            args.task,
            format_metrics(&metrics)
        );
    }
    Ok(())
}
