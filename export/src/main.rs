//! `vlbeit-export`: checkpoint → image/text/fusion ONNX graphs in a verified bundle.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use clap::ValueEnum;
use vlbeit_export::{
    AttentionForm, BundleOptions, ExportOptions, InstanceKind, Precision, TensorRtOptions,
    TritonOptions, TrtPrecision, export_bundle, write_triton_repository,
};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum TrtPrec {
    Fp16,
    Fp32,
}

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
    /// Weights and activations: fp32, or fp16 (LayerNorm, softmax and L2 norm stay fp32; inputs
    /// and outputs are the same as fp32).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "fp16"])]
    precision: String,
    /// Attention: `standard` opset-17 operators (any runtime, TensorRT), or `ort`: ONNX
    /// Runtime's fused com.microsoft.Attention kernel (faster on ONNX Runtime CPU/CUDA;
    /// TensorRT's parser refuses it).
    #[arg(long, default_value = "standard", value_parser = ["standard", "ort"])]
    attention: String,
    /// Keep the weights in a `.data` file next to each graph even when the graph would fit in
    /// one protobuf message (otherwise only graphs above 2 GiB do).
    #[arg(long)]
    external_data: bool,
    /// Replay golden/ through the exported graphs and refuse a bundle out of tolerance (fp32:
    /// max |Δ| ≤ 1e-4 and cosine ≥ 0.99999; fp16: cosine ≥ 0.999).
    #[arg(long)]
    verify: bool,
    /// Replace an existing non-empty output directory.
    #[arg(long)]
    force: bool,
    /// ONNX Runtime library for --verify (default: ORT_DYLIB_PATH, the venv's wheel, the system loader).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// After a successful export (and --verify), also write a Triton model repository here
    /// (replaced with --force).
    #[arg(long, value_name = "DIR")]
    triton: Option<PathBuf>,
    /// Triton max_batch_size (0: no batching).
    #[arg(long, default_value_t = 32, requires = "triton")]
    triton_max_batch_size: u32,
    /// Triton instances per model.
    #[arg(long, default_value_t = 1, requires = "triton")]
    triton_instances: u32,
    /// Where Triton runs the instances.
    #[arg(long, value_enum, default_value = "gpu", requires = "triton")]
    triton_kind: Kind,
    /// Do not write the TensorRT accelerator for GPU instances (plain CUDA provider).
    #[arg(long, requires = "triton")]
    triton_no_tensorrt: bool,
    /// TensorRT precision.
    #[arg(long, value_enum, default_value = "fp16", requires = "triton")]
    triton_trt_precision: TrtPrec,
    /// TensorRT engine cache directory on the Triton server.
    #[arg(long, default_value = "/tmp/vlbeit-trt-cache", requires = "triton")]
    triton_trt_cache: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let precision: Precision = cli.precision.parse().map_err(anyhow::Error::msg)?;
    let attention: AttentionForm = cli.attention.parse().map_err(anyhow::Error::msg)?;
    let mut export = ExportOptions::default()
        .with_precision(precision)
        .with_attention(attention);
    if cli.external_data {
        export = export.with_external_data_above(0);
    }
    if attention == AttentionForm::OrtFused && cli.triton.is_some() && !cli.triton_no_tensorrt {
        eprintln!(
            "note: --attention ort graphs hold com.microsoft.Attention nodes, which TensorRT \
             does not parse; Triton's TensorRT accelerator will run them outside its engines"
        );
    }
    let options = BundleOptions {
        force: cli.force,
        verify: cli.verify,
        ort_library: cli.ort_library,
        export,
    };
    let report = export_bundle(&cli.checkpoint, &cli.out, &options).with_context(|| {
        format!(
            "exporting {} to {}",
            cli.checkpoint.display(),
            cli.out.display()
        )
    })?;
    println!(
        "exported {} ({precision}) in {:.2} s",
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
            println!(
                "parity (ONNX Runtime {}, {}):",
                parity.onnxruntime, parity.precision
            );
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
    if let Some(repo) = &cli.triton {
        let options = TritonOptions {
            max_batch_size: cli.triton_max_batch_size,
            dynamic_batching: cli.triton_max_batch_size > 0,
            instance_count: cli.triton_instances,
            instance_kind: match cli.triton_kind {
                Kind::Gpu => InstanceKind::Gpu,
                Kind::Cpu => InstanceKind::Cpu,
            },
            tensorrt: (!cli.triton_no_tensorrt).then(|| TensorRtOptions {
                precision: match cli.triton_trt_precision {
                    TrtPrec::Fp16 => TrtPrecision::Fp16,
                    TrtPrec::Fp32 => TrtPrecision::Fp32,
                },
                engine_cache_path: cli.triton_trt_cache.clone(),
                ..TensorRtOptions::default()
            }),
            force: cli.force,
            ..TritonOptions::default()
        };
        let report =
            write_triton_repository(&report.out_dir, repo, &options).with_context(|| {
                format!(
                    "writing the Triton repository {} from {}",
                    repo.display(),
                    cli.out.display()
                )
            })?;
        println!("triton repository {}:", report.repo_dir.display());
        for model in &report.models {
            println!("  {}", model.name);
        }
    }
    Ok(())
}
