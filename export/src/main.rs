//! `vlbeit-export`: checkpoint → image/text/fusion ONNX graphs in a verified bundle.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use vlbeit_export::{BundleOptions, export_bundle};

#[derive(Parser)]
#[command(
    name = "vlbeit-export",
    version,
    about = "Export a VL-BEiT checkpoint as an ONNX bundle"
)]
struct Cli {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json, golden/).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Bundle directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Replay golden/ through the exported graphs and refuse a bundle out of fp32 tolerance.
    #[arg(long)]
    verify: bool,
    /// Replace an existing non-empty output directory.
    #[arg(long)]
    force: bool,
    /// ONNX Runtime library for --verify (default: ORT_DYLIB_PATH, the venv's wheel, the system loader).
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = BundleOptions {
        force: cli.force,
        verify: cli.verify,
        ort_library: cli.ort_library,
        ..BundleOptions::default()
    };
    let report = export_bundle(&cli.checkpoint, &cli.out, &options).with_context(|| {
        format!(
            "exporting {} to {}",
            cli.checkpoint.display(),
            cli.out.display()
        )
    })?;
    println!(
        "exported {} in {:.2} s",
        report.out_dir.display(),
        report.export_time.as_secs_f64()
    );
    for graph in &report.export.graphs {
        let name = graph.path.file_name().unwrap_or_default().to_string_lossy();
        print!("  {name:<22} {:>12} bytes", graph.bytes);
        if let Some(data) = &graph.data_path {
            let size = std::fs::metadata(data).map(|m| m.len()).unwrap_or(0);
            print!(" + {size} bytes external data");
        }
        println!();
    }
    match &report.parity {
        Some(parity) => {
            println!("parity (ONNX Runtime {}):", parity.onnxruntime);
            for o in &parity.outputs {
                println!(
                    "  {:<14} max|Δ| = {:.3e}  cosine = {:.9}  {}",
                    o.output,
                    o.max_abs,
                    o.cosine,
                    if o.passed { "ok" } else { "FAIL" }
                );
            }
        }
        None => println!("parity: not verified (pass --verify)"),
    }
    Ok(())
}
