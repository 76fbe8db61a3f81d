//! `vlbeit-train tables`: the seed's Tables 1–5 at small scale (see `crate::tables`).

use std::path::PathBuf;

use anyhow::Context;
use vlbeit_core::text::TextTokenizer;

use crate::cli::pretrain::{device, model_config};
use crate::tables::{TablesConfig, run_tables};

/// Arguments of `vlbeit-train tables`.
#[derive(Debug, clap::Args)]
pub struct TablesArgs {
    /// Model preset or config.json (as `pretrain --config`).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    #[arg(long, default_value = "data/scenes")]
    pub data: PathBuf,
    #[arg(long, default_value = "data/tokenizer.json")]
    pub tokenizer: PathBuf,
    #[arg(long, default_value = "data/visual_tokenizer")]
    pub visual_tokenizer: PathBuf,
    /// Run directory (every run is kept and reused; results.md, results.json, results/*.png).
    #[arg(long, default_value = "data/tables")]
    pub out: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    #[arg(long, default_value_t = 500)]
    pub pretrain_steps: u64,
    #[arg(long, default_value_t = 32)]
    pub pretrain_batch: usize,
    #[arg(long, default_value_t = 120)]
    pub finetune_steps: u64,
    #[arg(long, default_value_t = 32)]
    pub finetune_batch: usize,
    /// Images / questions / items evaluated per split (0 = all).
    #[arg(long, default_value_t = 150)]
    pub eval_limit: usize,
    #[arg(long, default_value_t = 8)]
    pub rerank_k: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: &TablesArgs) -> anyhow::Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)
        .with_context(|| format!("loading {}", args.tokenizer.display()))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let config = TablesConfig {
        model: model_config(&args.config, &tokenizer)?,
        data: args.data.clone(),
        tokenizer: args.tokenizer.clone(),
        visual_tokenizer: args.visual_tokenizer.clone(),
        out: args.out.clone(),
        seeds: args.seeds.clone(),
        pretrain_steps: args.pretrain_steps,
        pretrain_batch: args.pretrain_batch,
        finetune_steps: args.finetune_steps,
        finetune_batch: args.finetune_batch,
        eval_limit: (args.eval_limit > 0).then_some(args.eval_limit),
        rerank_k: args.rerank_k,
        command,
        device: device(&args.device)?,
        progress: !args.quiet,
    };
    run_tables(&config)?;
    println!("wrote {}", args.out.join("results.md").display());
    Ok(())
}
