//! `vlbeit-train`: pretraining, fine-tuning, evaluation and tokenizers for VL-BEiT.

use clap::{Parser, Subcommand};
use vlbeit_train::cli;

#[derive(Parser)]
#[command(name = "vlbeit-train", version, about = "Train VL-BEiT models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Which libtorch is linked and which devices it sees.
    Doctor,
    /// Write the synthetic scenes data set (images, captions, VQA, NLVR2, masks, text corpus).
    Scenes(cli::scenes::ScenesArgs),
    /// Train the Unigram text tokenizer.
    Tokenizer(cli::tokenizer::TokenizerArgs),
    /// Train the VQ-KD visual tokenizer (MIM targets) on a scenes data set.
    VisualTokenizer(cli::visual_tokenizer::VisualTokenizerArgs),
    /// One-stage MLM + MIM + MVLM pretraining.
    Pretrain(cli::pretrain::PretrainArgs),
    /// Fine-tune a checkpoint on a task (retrieval, vqa, nlvr2, classify, segment).
    Finetune(cli::finetune::FinetuneArgs),
    /// Evaluate a (fine-tuned) checkpoint on a task and split.
    Eval(cli::eval::EvalArgs),
    /// Write a randomly initialized checkpoint (config.json, model.safetensors, tokenizer.json,
    /// golden/) of a preset, e.g. to export and measure the base size.
    Init(cli::init::InitArgs),
    /// Training throughput of the presets on this machine (a benchmark, not a test).
    Bench(cli::bench::BenchArgs),
    /// Loss curves (SVG) and held-out accuracy table of a run's metrics.jsonl.
    Report(cli::report::ReportArgs),
    /// The seed's Tables 1-5 at small scale: pretrain, fine-tune and evaluate every variant.
    Tables(cli::tables::TablesArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor => {
            let info = vlbeit_train::device::TorchInfo::probe()?;
            println!("{info}");
        }
        Command::Scenes(args) => cli::scenes::run(&args)?,
        Command::Tokenizer(args) => cli::tokenizer::run(&args)?,
        Command::VisualTokenizer(args) => cli::visual_tokenizer::run(&args)?,
        Command::Pretrain(args) => cli::pretrain::run(&args)?,
        Command::Finetune(args) => cli::finetune::run(&args)?,
        Command::Eval(args) => cli::eval::run(&args)?,
        Command::Init(args) => cli::init::run(&args)?,
        Command::Bench(args) => cli::bench::run(&args)?,
        Command::Report(args) => cli::report::run(&args)?,
        Command::Tables(args) => cli::tables::run(&args)?,
    }
    Ok(())
}
