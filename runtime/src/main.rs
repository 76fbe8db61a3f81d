//! `vlbeit`: the command-line front of the runtime.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vlbeit::{Runtime, RuntimeOptions};

#[derive(Parser)]
#[command(name = "vlbeit", version, about = "Run exported VL-BEiT bundles")]
struct Cli {
    /// ONNX Runtime library to load (default: ORT_DYLIB_PATH, the venv's wheel, the system loader).
    #[arg(long, global = true)]
    ort_library: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Which ONNX Runtime is loaded, from where, and which execution providers it has.
    Doctor,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor => doctor(cli.ort_library, cli.json),
    }
}

fn doctor(ort_library: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let options = RuntimeOptions { ort_library };
    let runtime = Runtime::new(options).context("loading ONNX Runtime")?;
    let library = runtime.library();
    let providers = runtime.available_providers()?;
    if json {
        let report = serde_json::json!({
            "onnxruntime": {
                "version": library.version,
                "path": library.path,
                "source": library.source.to_string(),
            },
            "providers": providers,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("ONNX Runtime {}", library.version);
        println!("  path:      {}", library.path.display());
        println!("  found by:  {}", library.source);
        println!("  providers: {}", providers.join(", "));
    }
    Ok(())
}
