//! The two attention forms (`AttentionForm`) without libtorch: the `ort` form's graphs pass the
//! full ONNX check, import `com.microsoft`, keep one fused Attention node per block after
//! ONNX Runtime's optimizer (read back from `optimized_model_filepath`), and give the standard
//! form's outputs. (Parity of both forms with tch: tests/tests/export_parity.rs.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use prost::Message;
use vlbeit_core::config::{ModelConfig, Variant};
use vlbeit_export::onnx::proto::ModelProto;
use vlbeit_export::{
    AttentionForm, ExportOptions, FUSION_ENCODER, IMAGE_ENCODER, Precision, TEXT_ENCODER,
    expected_weight_shapes, export_graphs_with,
};

const GRAPHS: [&str; 3] = [IMAGE_ENCODER, TEXT_ENCODER, FUSION_ENCODER];

fn small(variant: Variant) -> ModelConfig {
    ModelConfig {
        variant,
        hidden: 32,
        layers: 3,
        heads: 4,
        image_size: 32,
        patch_size: 8,
        vocab_size: 50,
        max_text_len: 16,
        max_pair_text_len: 16,
        vl_ffn_start: 2,
        visual_vocab: 16,
        embed_dim: 24,
        ..ModelConfig::tiny()
    }
}

/// Deterministic pseudo-random values in [-0.5, 0.5) (a 64-bit LCG).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn write_checkpoint(dir: &Path, config: &ModelConfig) {
    std::fs::create_dir_all(dir).unwrap();
    let json = serde_json::json!({ "format_version": 1, "model": config });
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let shapes: BTreeMap<String, Vec<i64>> = expected_weight_shapes(config);
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let n = shape.iter().product();
            let bytes = values(n, i as u64)
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (name.clone(), shape, bytes)
        })
        .collect();
    let views = buffers.iter().map(|(name, shape, bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .unwrap();
        (name.clone(), view)
    });
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

fn venv_python() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = workspace.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the project venv",
        python.display()
    );
    python
}

fn check_with_onnx(dir: &Path) {
    let script = "import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n";
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(GRAPHS.map(|g| dir.join(g)))
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "onnx.checker refused {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn export(root: &Path, config: &ModelConfig, form: AttentionForm, precision: Precision) -> PathBuf {
    let ckpt = root.join("ckpt");
    if !ckpt.exists() {
        write_checkpoint(&ckpt, config);
    }
    let out = root.join(format!("{form}-{precision}"));
    let options = ExportOptions::default()
        .with_attention(form)
        .with_precision(precision);
    export_graphs_with(&ckpt, &out, &options).unwrap();
    out
}

/// Opens `graph` with ONNX Runtime's full optimization, keeping the optimized model; returns
/// the session and the optimized graph's operator types.
fn optimized(graph: &Path) -> (Session, Vec<String>) {
    let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions::default()).unwrap();
    let optimized = graph.with_extension("optimized.onnx");
    let session = Session::builder(runtime.environment())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .with_optimized_model_path(&optimized)
        .unwrap()
        .commit_from_file(graph)
        .unwrap();
    let model = ModelProto::decode(&std::fs::read(&optimized).unwrap()[..]).unwrap();
    let ops = model.graph.unwrap().node.into_iter().map(|n| n.op_type);
    (session, ops.collect())
}

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| *o == op).count()
}

/// All outputs of the three graphs for one batch of 2 (a padded text row), by output name.
fn run(dir: &Path, config: &ModelConfig) -> (BTreeMap<String, Vec<f32>>, Vec<usize>) {
    let batch = 2usize;
    let s = config.image_size;
    let pixels = values(batch * 3 * s * s, 7);
    let ids: Vec<i64> = vec![2, 9, 14, 3, 0, 0, 2, 5, 6, 7, 8, 3];
    let mask: Vec<i64> = ids.iter().map(|&t| i64::from(t != 0)).collect();
    let mut outputs = BTreeMap::new();
    let mut attention_nodes = Vec::new();
    for graph in GRAPHS {
        let (mut session, ops) = optimized(&dir.join(graph));
        attention_nodes.push(count(&ops, "Attention"));
        let pixel_values = OrtTensor::from_array(([batch, 3, s, s], pixels.clone())).unwrap();
        let input_ids = OrtTensor::from_array(([batch, 6], ids.clone())).unwrap();
        let attention_mask = OrtTensor::from_array(([batch, 6], mask.clone())).unwrap();
        let out = match graph {
            IMAGE_ENCODER => session.run(ort::inputs!["pixel_values" => pixel_values]),
            TEXT_ENCODER => session.run(ort::inputs![
                "input_ids" => input_ids,
                "attention_mask" => attention_mask,
            ]),
            _ => session.run(ort::inputs![
                "input_ids" => input_ids,
                "attention_mask" => attention_mask,
                "pixel_values" => pixel_values,
            ]),
        }
        .unwrap();
        for (name, value) in out.iter() {
            let data = value.try_extract_tensor::<f32>().unwrap().1.to_vec();
            outputs.insert(name.to_owned(), data);
        }
    }
    (outputs, attention_nodes)
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn ort_attention_keeps_one_fused_node_per_block_and_the_standard_outputs() {
    for variant in [Variant::Mome, Variant::Standard] {
        let root = tempfile::tempdir().unwrap();
        let config = small(variant);
        let standard = export(
            root.path(),
            &config,
            AttentionForm::Standard,
            Precision::F32,
        );
        let fused = export(
            root.path(),
            &config,
            AttentionForm::OrtFused,
            Precision::F32,
        );
        check_with_onnx(&fused);
        for graph in GRAPHS {
            let model = ModelProto::decode(&std::fs::read(fused.join(graph)).unwrap()[..]).unwrap();
            let domains: Vec<(&str, i64)> = model
                .opset_import
                .iter()
                .map(|o| (o.domain.as_str(), o.version))
                .collect();
            assert_eq!(domains, [("", 17), ("com.microsoft", 1)], "{graph}");
            let model = ModelProto::decode(&std::fs::read(standard.join(graph)).unwrap()[..])
                .unwrap()
                .opset_import;
            assert_eq!(model.len(), 1, "the standard form imports ai.onnx only");
        }
        let (want, standard_nodes) = run(&standard, &config);
        let (got, fused_nodes) = run(&fused, &config);
        println!(
            "{variant:?}: Attention nodes after ONNX Runtime's optimizer: standard {standard_nodes:?}, ort {fused_nodes:?}"
        );
        // One fused kernel per block in every graph; a regression (an unfusable node, a
        // rewrite by the optimizer) shows here.
        assert_eq!(fused_nodes, [config.layers; 3]);
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>()
        );
        for (name, want) in &want {
            let delta = max_abs(&got[name], want);
            println!("{variant:?} {name:<14} ort vs standard max|Δ| = {delta:.3e}");
            assert!(delta <= 1e-5, "{name}: max |Δ| {delta:e}");
        }
    }
}

#[test]
fn ort_attention_runs_in_fp16() {
    let root = tempfile::tempdir().unwrap();
    let config = small(Variant::Mome);
    let reference = export(
        root.path(),
        &config,
        AttentionForm::Standard,
        Precision::F32,
    );
    let fused = export(
        root.path(),
        &config,
        AttentionForm::OrtFused,
        Precision::F16,
    );
    check_with_onnx(&fused);
    let (want, _) = run(&reference, &config);
    let (got, nodes) = run(&fused, &config);
    assert_eq!(nodes, [config.layers; 3]);
    for (name, want) in &want {
        let got = &got[name];
        let dot: f64 = got.iter().zip(want).map(|(a, b)| f64::from(a * b)).sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
        let cosine = dot / (norm(got) * norm(want));
        println!("fp16 ort {name:<14} cosine vs fp32 standard = {cosine:.9}");
        assert!(cosine >= 0.999, "{name}: cosine {cosine}");
    }
}

#[test]
fn attention_forms_parse_from_their_names() {
    for form in [AttentionForm::Standard, AttentionForm::OrtFused] {
        assert_eq!(form.as_str().parse::<AttentionForm>(), Ok(form));
    }
    let err = "fused".parse::<AttentionForm>().unwrap_err();
    assert!(err.contains("standard or ort"), "{err}");
}
