//! Task heads of fine-tuning in the exported graphs, without libtorch: `heads.classify.*` becomes
//! `class_logits` of the image encoder and `heads.vqa.*` `vqa_logits` of the fusion encoder; the
//! graphs pass the full ONNX check and run in ONNX Runtime, and their head outputs match an
//! independent reference computed here in f64 from the safetensors weights and the graphs' own
//! `image_states` / `pooled` (whose parity with tch is tests/tests/export_parity.rs's job).
//! Partial heads, wrong shapes and label-count mismatches are refused with the tensor named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use vlbeit_core::config::{ModelConfig, Variant};
use vlbeit_export::{
    ExportError, ExportOptions, FUSION_ENCODER, IMAGE_ENCODER, Precision, TEXT_ENCODER,
    expected_task_head_shapes, expected_weight_shapes, export_graphs, export_graphs_with,
};

const ANSWERS: usize = 5;
const CLASSES: usize = 3;

fn small() -> ModelConfig {
    ModelConfig {
        variant: Variant::Mome,
        hidden: 32,
        layers: 2,
        heads: 4,
        image_size: 32,
        patch_size: 8,
        vocab_size: 50,
        max_text_len: 16,
        max_pair_text_len: 16,
        vl_ffn_start: 1,
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

fn labels(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The encoder weights plus both exported heads and one NLVR2 and one segmentation tensor.
fn shapes_with_heads(config: &ModelConfig) -> BTreeMap<String, Vec<i64>> {
    let d = config.hidden as i64;
    let mut shapes = expected_weight_shapes(config);
    shapes.extend(expected_task_head_shapes(
        config,
        Some(ANSWERS),
        Some(CLASSES),
    ));
    shapes.insert("heads.nlvr2.fc2.bias".into(), vec![2]);
    shapes.insert("heads.segment.fc.weight".into(), vec![4, d]);
    shapes
}

/// `config.json` with `heads` as given, and `model.safetensors` with `shapes`; returns the
/// weights written.
fn write_checkpoint(
    dir: &Path,
    config: &ModelConfig,
    shapes: &BTreeMap<String, Vec<i64>>,
    heads: serde_json::Value,
) -> BTreeMap<String, Vec<f32>> {
    std::fs::create_dir_all(dir).unwrap();
    let json = serde_json::json!({ "format_version": 1, "model": config, "heads": heads });
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let weights: BTreeMap<String, Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product::<i64>() as usize;
            (name.clone(), values(n, i as u64))
        })
        .collect();
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .iter()
        .map(|(name, shape)| {
            let shape = shape.iter().map(|&d| d as usize).collect();
            let bytes = weights[name].iter().flat_map(|x| x.to_le_bytes()).collect();
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
    weights
}

fn both_labels() -> serde_json::Value {
    serde_json::json!({ "answers": labels("a", ANSWERS), "classes": labels("c", CLASSES) })
}

fn venv_python() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = workspace.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the project venv (onnx is needed to check graphs)",
        python.display()
    );
    python
}

fn check_with_onnx(dir: &Path) {
    let script = "import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n";
    let paths = [IMAGE_ENCODER, TEXT_ENCODER, FUSION_ENCODER].map(|f| dir.join(f));
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(&paths)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "onnx.checker refused {paths:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn session(path: &Path) -> Session {
    let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions::default()).unwrap();
    Session::builder(runtime.environment())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(path)
        .unwrap()
}

/// f64 reference maths, written from the contract (not from the graph builders).
mod reference {
    /// `x [rows, in]` · Wᵀ + b with `w [out, in]` (PyTorch layout).
    pub fn linear(x: &[f64], rows: usize, w: &[f32], b: &[f32]) -> Vec<f64> {
        let (out, inp) = (b.len(), w.len() / b.len());
        assert_eq!(x.len(), rows * inp);
        let mut y = vec![0.0; rows * out];
        for r in 0..rows {
            for o in 0..out {
                let dot: f64 = (0..inp)
                    .map(|i| x[r * inp + i] * f64::from(w[o * inp + i]))
                    .sum();
                y[r * out + o] = dot + f64::from(b[o]);
            }
        }
        y
    }

    /// LayerNorm over rows of `w.len()` values (biased variance, as torch).
    pub fn layer_norm(x: &[f64], w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
        let n = w.len();
        x.chunks(n)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / n as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (var + eps).sqrt();
                row.iter()
                    .enumerate()
                    .map(move |(i, v)| (v - mean) * inv * f64::from(w[i]) + f64::from(b[i]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// erf by its Taylor series for |x| < 4 (|error| < 1e-9 there in f64) and ±1 beyond
    /// (erfc(4) ≈ 1.5e-8): ample for a 1e-4 parity gate.
    pub fn erf(x: f64) -> f64 {
        if x.abs() >= 4.0 {
            return x.signum();
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    pub fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }
}

/// Reference `class_logits` from the graph's `image_states [B, 1 + N, D]`.
fn class_logits_reference(
    states: &[f32],
    batch: usize,
    d: usize,
    w: &BTreeMap<String, Vec<f32>>,
    eps: f64,
) -> Vec<f64> {
    let tokens = states.len() / (batch * d);
    let mut mean = vec![0.0; batch * d];
    for b in 0..batch {
        for t in 1..tokens {
            for i in 0..d {
                mean[b * d + i] += f64::from(states[(b * tokens + t) * d + i]);
            }
        }
    }
    mean.iter_mut().for_each(|m| *m /= (tokens - 1) as f64);
    let h = reference::layer_norm(
        &mean,
        &w["heads.classify.norm.weight"],
        &w["heads.classify.norm.bias"],
        eps,
    );
    reference::linear(
        &h,
        batch,
        &w["heads.classify.fc.weight"],
        &w["heads.classify.fc.bias"],
    )
}

/// Reference `vqa_logits` from the graph's `pooled [B, D]`.
fn vqa_logits_reference(
    pooled: &[f32],
    batch: usize,
    w: &BTreeMap<String, Vec<f32>>,
    eps: f64,
) -> Vec<f64> {
    let x: Vec<f64> = pooled.iter().map(|&v| f64::from(v)).collect();
    let h = reference::linear(
        &x,
        batch,
        &w["heads.vqa.fc1.weight"],
        &w["heads.vqa.fc1.bias"],
    );
    let h = reference::layer_norm(
        &h,
        &w["heads.vqa.norm.weight"],
        &w["heads.vqa.norm.bias"],
        eps,
    );
    let h: Vec<f64> = h.into_iter().map(reference::gelu).collect();
    reference::linear(
        &h,
        batch,
        &w["heads.vqa.fc2.weight"],
        &w["heads.vqa.fc2.bias"],
    )
}

/// Runs both graphs with heads on batch 2 and returns (class_logits, image_states, vqa_logits,
/// pooled) with the head outputs' shapes checked.
fn run_heads(dir: &Path, config: &ModelConfig) -> [Vec<f32>; 4] {
    let batch = 2usize;
    let s = config.image_size;
    let pixels = values(batch * 3 * s * s, 99);
    let pixel_tensor = || OrtTensor::from_array(([batch, 3, s, s], pixels.clone())).unwrap();
    let mut image = session(&dir.join(IMAGE_ENCODER));
    let out = image
        .run(ort::inputs!["pixel_values" => pixel_tensor()])
        .unwrap();
    let (shape, class_logits) = out["class_logits"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&shape[..], &[batch as i64, CLASSES as i64]);
    let class_logits = class_logits.to_vec();
    let states = out["image_states"].try_extract_tensor::<f32>().unwrap().1;
    let states = states.to_vec();
    drop(out);

    // Row 0: 5 real tokens of 6; row 1: 2 real tokens.
    let seq = 6;
    let ids: Vec<i64> = vec![2, 7, 9, 11, 3, 0, 2, 3, 0, 0, 0, 0];
    let mask: Vec<i64> = ids.iter().map(|&t| i64::from(t != 0)).collect();
    let mut fusion = session(&dir.join(FUSION_ENCODER));
    let out = fusion
        .run(ort::inputs![
            "input_ids" => OrtTensor::from_array(([batch, seq], ids)).unwrap(),
            "attention_mask" => OrtTensor::from_array(([batch, seq], mask)).unwrap(),
            "pixel_values" => pixel_tensor(),
        ])
        .unwrap();
    let (shape, vqa_logits) = out["vqa_logits"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&shape[..], &[batch as i64, ANSWERS as i64]);
    let vqa_logits = vqa_logits.to_vec();
    let pooled = out["pooled"]
        .try_extract_tensor::<f32>()
        .unwrap()
        .1
        .to_vec();
    [class_logits, states, vqa_logits, pooled]
}

fn assert_close(label: &str, got: &[f32], want: &[f64], max_abs: Option<f64>, min_cosine: f64) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
    let delta = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let dot: f64 = got.iter().zip(want).map(|(a, b)| a * b).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cosine = dot / (norm(&got) * norm(want));
    assert!(!delta.is_nan() && !cosine.is_nan(), "{label}: NaN");
    println!("{label:<24} max|Δ| = {delta:.3e}  cosine = {cosine:.9}");
    if let Some(limit) = max_abs {
        assert!(delta <= limit, "{label}: max |Δ| {delta:e} > {limit:e}");
    }
    assert!(cosine >= min_cosine, "{label}: cosine {cosine}");
}

#[test]
fn task_heads_become_graph_outputs_that_match_an_f64_reference() {
    let root = tempfile::tempdir().unwrap();
    let config = small();
    let ckpt = root.path().join("ckpt");
    let weights = write_checkpoint(&ckpt, &config, &shapes_with_heads(&config), both_labels());
    let eps = config.layer_norm_eps;
    let d = config.hidden;

    let out = root.path().join("fp32");
    let report = export_graphs(&ckpt, &out).unwrap();
    assert_eq!(
        report.skipped_tensors,
        ["heads.nlvr2.fc2.bias", "heads.segment.fc.weight"]
    );
    let names: Vec<Vec<&str>> = report
        .signatures
        .iter()
        .map(|s| s.outputs.iter().map(|o| o.name.as_str()).collect())
        .collect();
    assert_eq!(
        names,
        [
            vec!["image_embeds", "image_states", "class_logits"],
            vec!["text_embeds"],
            vec!["pooled", "itm_logits", "vqa_logits"],
        ]
    );
    check_with_onnx(&out);

    let [class_logits, states, vqa_logits, pooled] = run_heads(&out, &config);
    let class_ref = class_logits_reference(&states, 2, d, &weights, eps);
    let vqa_ref = vqa_logits_reference(&pooled, 2, &weights, eps);
    assert_close(
        "fp32 class_logits",
        &class_logits,
        &class_ref,
        Some(1e-4),
        0.99999,
    );
    assert_close(
        "fp32 vqa_logits",
        &vqa_logits,
        &vqa_ref,
        Some(1e-4),
        0.99999,
    );

    // fp16 graphs: the same outputs, within the fp16 gate, against the fp32 reference.
    let out16 = root.path().join("fp16");
    let options = ExportOptions::default().with_precision(Precision::F16);
    let report16 = export_graphs_with(&ckpt, &out16, &options).unwrap();
    assert_eq!(report16.signatures, report.signatures);
    check_with_onnx(&out16);
    let [class16, _, vqa16, _] = run_heads(&out16, &config);
    assert_close("fp16 class_logits", &class16, &class_ref, None, 0.999);
    assert_close("fp16 vqa_logits", &vqa16, &vqa_ref, None, 0.999);
}

#[test]
fn a_checkpoint_without_task_heads_has_no_head_outputs() {
    let root = tempfile::tempdir().unwrap();
    let config = small();
    let ckpt = root.path().join("ckpt");
    write_checkpoint(
        &ckpt,
        &config,
        &expected_weight_shapes(&config),
        serde_json::json!({}),
    );
    let report = export_graphs(&ckpt, &root.path().join("out")).unwrap();
    let names: Vec<Vec<&str>> = report
        .signatures
        .iter()
        .map(|s| s.outputs.iter().map(|o| o.name.as_str()).collect())
        .collect();
    assert_eq!(
        names,
        [
            vec!["image_embeds", "image_states"],
            vec!["text_embeds"],
            vec!["pooled", "itm_logits"],
        ]
    );
}

/// The export error for these weights and `heads` labels; nothing is written.
fn head_error(shapes: BTreeMap<String, Vec<i64>>, heads: serde_json::Value) -> ExportError {
    let root = tempfile::tempdir().unwrap();
    write_checkpoint(&root.path().join("ckpt"), &small(), &shapes, heads);
    let out = root.path().join("out");
    let err = export_graphs(&root.path().join("ckpt"), &out).unwrap_err();
    assert!(!out.exists(), "nothing is written on error");
    err
}

#[test]
fn a_partial_head_is_refused_naming_the_missing_tensors() {
    let mut shapes = shapes_with_heads(&small());
    shapes.remove("heads.vqa.fc2.weight");
    shapes.remove("heads.vqa.fc2.bias");
    let err = head_error(shapes, both_labels());
    assert!(matches!(err, ExportError::Mismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("missing tensors: heads.vqa.fc2.bias, heads.vqa.fc2.weight"),
        "{err}"
    );
}

#[test]
fn an_unknown_tensor_inside_a_head_is_refused() {
    let mut shapes = shapes_with_heads(&small());
    shapes.insert("heads.classify.proj.weight".into(), vec![3, 32]);
    let err = head_error(shapes, both_labels());
    assert!(
        err.to_string()
            .contains("unexpected tensors: heads.classify.proj.weight"),
        "{err}"
    );
}

#[test]
fn a_wrong_shaped_head_tensor_is_named_with_both_shapes() {
    let mut shapes = shapes_with_heads(&small());
    shapes.insert("heads.vqa.norm.weight".into(), vec![32]);
    let err = head_error(shapes, both_labels());
    assert!(
        err.to_string()
            .contains("tensor heads.vqa.norm.weight has shape [32], expected [64]"),
        "{err}"
    );
}

#[test]
fn a_head_size_differing_from_its_label_list_is_named() {
    let shapes = shapes_with_heads(&small());
    // Four answers listed, five rows in fc2.
    let heads = serde_json::json!({ "answers": labels("a", 4), "classes": labels("c", CLASSES) });
    let message = head_error(shapes, heads).to_string();
    assert!(
        message.contains(
            "tensor heads.vqa.fc2.weight has shape [5, 64], expected [4, 64] \
             (answers = the length of config.json heads.answers)"
        ),
        "{message}"
    );
    assert!(
        message.contains("tensor heads.vqa.fc2.bias has shape [5], expected [4]"),
        "{message}"
    );
}

#[test]
fn a_head_without_labels_or_labels_without_a_head_are_refused() {
    let config = small();
    let err = head_error(
        shapes_with_heads(&config),
        serde_json::json!({ "answers": labels("a", ANSWERS) }),
    );
    let message = err.to_string();
    assert!(
        message.contains("config.json")
            && message.contains("heads.classes is missing")
            && message.contains("heads.classify."),
        "{message}"
    );

    let err = head_error(expected_weight_shapes(&config), both_labels());
    let message = err.to_string();
    assert!(
        message.contains("heads.answers lists 5 labels") && message.contains("no heads.vqa.*"),
        "{message}"
    );

    let mut shapes = expected_weight_shapes(&config);
    shapes.extend(expected_task_head_shapes(&config, Some(ANSWERS), None));
    let err = head_error(shapes, serde_json::json!({ "answers": [] }));
    assert!(err.to_string().contains("heads.answers is empty"), "{err}");
}
