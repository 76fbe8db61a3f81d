//! `vlbeit doctor`, `info` and `verify`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use vlbeit::{Bundle, GpuStack, HashCheck};

use super::Ctx;
use crate::ModelArgs;

pub fn doctor(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let runtime = ctx.runtime()?;
    let library = runtime.library();
    let providers = runtime.available_providers()?;
    let gpu = GpuStack::probe();
    if ctx.json {
        ctx.print_json(&json!({
            "onnxruntime": {
                "version": library.version,
                "path": library.path,
                "source": library.source.to_string(),
            },
            "providers": providers,
            "gpu": gpu,
        }))?;
    } else {
        println!("ONNX Runtime {}", library.version);
        println!("  path:      {}", library.path.display());
        println!("  found by:  {}", library.source);
        println!("  providers: {}", providers.join(", "));
        let show = |r: &Result<String, String>| match r {
            Ok(v) => v.clone(),
            Err(e) => format!("not available: {e}"),
        };
        println!("CUDA:     {}", show(&gpu.cuda_driver));
        for (i, name) in gpu.gpus.iter().enumerate() {
            println!("  GPU {i}:  {name}");
        }
        println!("TensorRT: {}", show(&gpu.tensorrt));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn info(ctx: &Ctx, dir: &Path) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open_with(dir, HashCheck::All)?;
    let m = bundle.manifest();
    if ctx.json {
        ctx.print_json(&json!({
            "bundle": dir,
            "sha256": bundle.sha256(),
            "manifest": m,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &m.model;
    println!(
        "bundle {} (sha256 {})",
        dir.display(),
        &bundle.sha256()[..16]
    );
    println!(
        "  model: {:?}, hidden {}, {} layers, {} heads, image {} / patch {}, vocab {}, embed dim {}",
        c.variant,
        c.hidden,
        c.layers,
        c.heads,
        c.image_size,
        c.patch_size,
        c.vocab_size,
        c.embed_dim
    );
    println!(
        "  precision {}, attention {}, text max_len {}, pair max_len {}",
        m.precision, m.attention, m.tokenizer.max_len, m.pair_max_len
    );
    if let Some(answers) = &m.heads.answers {
        println!("  VQA head: {} answers", answers.len());
    }
    if let Some(classes) = &m.heads.classes {
        println!("  classification head: {} classes", classes.len());
    }
    for (file, graph) in &m.graphs {
        println!("  {file} ({} bytes)", graph.bytes);
        let fmt = |specs: &[vlbeit::core::manifest::TensorSpec]| {
            specs
                .iter()
                .map(|s| format!("{} {} {:?}", s.name, s.dtype, s.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("    inputs:  {}", fmt(&graph.inputs));
        println!("    outputs: {}", fmt(&graph.outputs));
    }
    match &m.parity {
        Some(p) => println!(
            "  parity at export ({} on ONNX Runtime {}): {}, worst max |Δ| {:.2e}, worst cosine {:.9}",
            p.provider,
            p.onnxruntime,
            if p.passed { "passed" } else { "FAILED" },
            p.outputs.iter().map(|o| o.max_abs).fold(0.0, f64::max),
            p.outputs.iter().map(|o| o.cosine).fold(1.0, f64::min),
        ),
        None => println!("  parity: not verified at export"),
    }
    println!("  files: {} listed, all hashes verified", m.files.len());
    Ok(ExitCode::SUCCESS)
}

pub fn verify(ctx: &Ctx, args: &ModelArgs) -> anyhow::Result<ExitCode> {
    let model = ctx.model(args)?;
    let report = vlbeit::verify::verify(&model)?;
    if ctx.json {
        ctx.print_json(&json!({
            "report": report,
            "providers": model.provider_reports(),
        }))?;
    } else {
        let limit = report
            .max_abs_tolerance
            .map(|l| format!("max |Δ| ≤ {l:.0e}, "))
            .unwrap_or_default();
        println!(
            "golden replay of {} on {} ({} graphs, ONNX Runtime {}): {limit}cosine ≥ {}",
            args.bundle.display(),
            report.provider,
            report.precision,
            report.onnxruntime,
            report.min_cosine
        );
        for o in &report.outputs {
            println!(
                "  {:4} {:<13} {:<20} max |Δ| {:.3e}  cosine {:.9}",
                if o.passed { "ok" } else { "FAIL" },
                o.output,
                o.graph,
                o.max_abs,
                o.cosine
            );
        }
        println!("{}", if report.passed { "passed" } else { "FAILED" });
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
