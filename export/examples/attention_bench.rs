//! Benchmark of the two attention forms on ONNX Runtime's CPU provider: the same random-weight
//! checkpoint exported as `standard` and as `ort` (com.microsoft.Attention), both graphs of each
//! encoder run interleaved in one process, median latency and the ratio standard / ort reported
//! (a ratio against a reference measured in the same run, not an absolute figure).
//!
//! ```text
//! cargo run -p vlbeit-export --example attention_bench -- [tiny|mid|base] [reps] [threads] [batch]
//! ```
//! `mid` is hidden 384, 6 layers, 6 heads at 224 px / patch 16 (197 image tokens).

use std::path::Path;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use prost::Message;
use vlbeit_export::core::config::ModelConfig;
use vlbeit_export::onnx::proto::ModelProto;
use vlbeit_export::{
    AttentionForm, ExportOptions, FUSION_ENCODER, IMAGE_ENCODER, TEXT_ENCODER,
    expected_weight_shapes, export_graphs_with,
};

fn config(name: &str) -> Result<ModelConfig, Box<dyn std::error::Error>> {
    Ok(match name {
        "mid" => ModelConfig {
            hidden: 384,
            layers: 6,
            heads: 6,
            vl_ffn_start: 4,
            embed_dim: 384,
            image_size: 224,
            patch_size: 16,
            vocab_size: 8000,
            max_text_len: 40,
            max_pair_text_len: 40,
            ..ModelConfig::tiny()
        },
        other => ModelConfig::preset(other)?,
    })
}

/// Small pseudo-random weights (a 64-bit LCG), LayerNorm scales near 1.
fn write_checkpoint(dir: &Path, config: &ModelConfig) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({ "format_version": 1, "model": config });
    std::fs::write(dir.join("config.json"), json.to_string())?;
    let mut state = 0x2545f4914f6cdd1du64;
    let mut buffers = Vec::new();
    for (name, shape) in expected_weight_shapes(config) {
        let n: i64 = shape.iter().product();
        let offset = if name.contains("norm") && name.ends_with("weight") {
            1.0
        } else {
            0.0
        };
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let x = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1 + offset;
                x.to_le_bytes()
            })
            .collect();
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        buffers.push((name, shape, bytes));
    }
    let views = buffers.iter().map(|(name, shape, bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .expect("shape matches the bytes");
        (name.clone(), view)
    });
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))?;
    Ok(())
}

fn open(
    runtime: &vlbeit::Runtime,
    graph: &Path,
    threads: usize,
) -> Result<(Session, usize), Box<dyn std::error::Error>> {
    let optimized = graph.with_extension("optimized.onnx");
    let session = Session::builder(runtime.environment())?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(threads)?
        .with_optimized_model_path(&optimized)?
        .commit_from_file(graph)?;
    let model = ModelProto::decode(&std::fs::read(&optimized)?[..])?;
    let attention = model
        .graph
        .map(|g| g.node.iter().filter(|n| n.op_type == "Attention").count())
        .unwrap_or(0);
    Ok((session, attention))
}

fn run_once(
    session: &mut Session,
    graph: &str,
    config: &ModelConfig,
    batch: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let (s, seq) = (config.image_size, 24usize);
    let pixels = || Tensor::from_array(([batch, 3, s, s], vec![0.1f32; batch * 3 * s * s]));
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| {
            if i % seq < seq - 3 * (i / seq % 2) {
                5 + (i % 50) as i64
            } else {
                0
            }
        })
        .collect();
    let mask: Vec<i64> = ids.iter().map(|&t| i64::from(t != 0)).collect();
    let ids = || Tensor::from_array(([batch, seq], ids.clone()));
    let mask = || Tensor::from_array(([batch, seq], mask.clone()));
    let start = Instant::now();
    match graph {
        IMAGE_ENCODER => drop(session.run(ort::inputs!["pixel_values" => pixels()?])?),
        TEXT_ENCODER => drop(session.run(ort::inputs![
            "input_ids" => ids()?,
            "attention_mask" => mask()?,
        ])?),
        _ => drop(session.run(ort::inputs![
            "input_ids" => ids()?,
            "attention_mask" => mask()?,
            "pixel_values" => pixels()?,
        ])?),
    }
    Ok(start.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("tiny");
    let reps: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let threads: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2);
    let batch: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(4);
    let config = config(name)?;
    let root = tempfile::tempdir()?;
    let ckpt = root.path().join("ckpt");
    write_checkpoint(&ckpt, &config)?;
    let forms = [AttentionForm::Standard, AttentionForm::OrtFused];
    for form in forms {
        let options = ExportOptions::default().with_attention(form);
        export_graphs_with(&ckpt, &root.path().join(form.as_str()), &options)?;
    }
    let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions::default())?;
    println!(
        "{name}: hidden {}, {} layers, {} heads, {} image tokens; batch {batch}, text 24, {threads} threads, {reps} reps",
        config.hidden,
        config.layers,
        config.heads,
        1 + config.num_patches()
    );
    for graph in [IMAGE_ENCODER, TEXT_ENCODER, FUSION_ENCODER] {
        let mut sessions = Vec::new();
        for form in forms {
            let (mut session, attention) = open(
                &runtime,
                &root.path().join(form.as_str()).join(graph),
                threads,
            )?;
            run_once(&mut session, graph, &config, batch)?; // warm-up
            sessions.push((form, session, attention, Vec::new()));
        }
        for _ in 0..reps {
            for (_, session, _, times) in sessions.iter_mut() {
                times.push(run_once(session, graph, &config, batch)?);
            }
        }
        let medians: Vec<(AttentionForm, usize, Duration)> = sessions
            .into_iter()
            .map(|(form, _, attention, times)| (form, attention, median(times)))
            .collect();
        let ratio = medians[0].2.as_secs_f64() / medians[1].2.as_secs_f64();
        println!(
            "  {graph:<20} standard {:>9.2} ms ({} Attention)   ort {:>9.2} ms ({} Attention)   standard/ort {ratio:.2}",
            medians[0].2.as_secs_f64() * 1e3,
            medians[0].1,
            medians[1].2.as_secs_f64() * 1e3,
            medians[1].1,
        );
    }
    Ok(())
}
