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
    }
    Ok(())
}
