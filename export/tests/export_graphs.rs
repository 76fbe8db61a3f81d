//! The exporter end to end without libtorch: random weights of the documented names and shapes
//! → three graphs that pass `onnx.checker` (full check), inline and with external data; bad
//! checkpoints are refused with the tensor named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vlbeit_core::config::{ModelConfig, Variant};
use vlbeit_export::{
    ExportError, ExportOptions, FUSION_ENCODER, IMAGE_ENCODER, Precision, TEXT_ENCODER,
    expected_weight_shapes, export_graphs, export_graphs_with,
};

/// A model small enough to export and check in well under a second.
fn small(variant: Variant) -> ModelConfig {
    ModelConfig {
        variant,
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

fn write_checkpoint(dir: &Path, config: &ModelConfig, shapes: &BTreeMap<String, Vec<i64>>) {
    std::fs::create_dir_all(dir).unwrap();
    let json = serde_json::json!({ "format_version": 1, "model": config });
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
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
        "{} is missing: run scripts/setup.sh to create the project venv (onnx is needed to check graphs)",
        python.display()
    );
    python
}

/// Runs `onnx.checker.check_model(full_check=True)` on each file (path-based, so external
/// data is found next to the graph).
fn check_with_onnx(paths: &[PathBuf]) {
    let script = "import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\n";
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(paths)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "onnx.checker refused {paths:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn graph_paths(dir: &Path) -> Vec<PathBuf> {
    [IMAGE_ENCODER, TEXT_ENCODER, FUSION_ENCODER]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

#[test]
fn mome_and_standard_graphs_pass_the_full_onnx_check() {
    for variant in [Variant::Mome, Variant::Standard] {
        let root = tempfile::tempdir().unwrap();
        let config = small(variant);
        write_checkpoint(
            &root.path().join("ckpt"),
            &config,
            &expected_weight_shapes(&config),
        );
        let out = root.path().join("bundle");
        let report = export_graphs(&root.path().join("ckpt"), &out).unwrap();
        assert_eq!(report.graphs.len(), 3);
        assert!(report.graphs.iter().all(|g| g.data_path.is_none()));
        check_with_onnx(&graph_paths(&out));
        // Only the three graphs: temp files were renamed away.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
    }
}

#[test]
fn fp16_graphs_pass_the_full_onnx_check_with_fp32_inputs_and_outputs() {
    for variant in [Variant::Mome, Variant::Standard] {
        let root = tempfile::tempdir().unwrap();
        let config = small(variant);
        let ckpt = root.path().join("ckpt");
        write_checkpoint(&ckpt, &config, &expected_weight_shapes(&config));
        let out32 = root.path().join("fp32");
        let out16 = root.path().join("fp16");
        let fp32 = export_graphs(&ckpt, &out32).unwrap();
        let options = ExportOptions::default().with_precision(Precision::F16);
        let fp16 = export_graphs_with(&ckpt, &out16, &options).unwrap();
        check_with_onnx(&graph_paths(&out16));
        // Callers see the same graph signatures in both precisions.
        assert_eq!(fp32.signatures, fp16.signatures);
        for (a, b) in fp32.graphs.iter().zip(&fp16.graphs) {
            let ratio = b.bytes as f64 / a.bytes as f64;
            println!(
                "{variant:?} {}: fp32 {} bytes, fp16 {} bytes ({ratio:.3})",
                a.path.file_name().unwrap().to_string_lossy(),
                a.bytes,
                b.bytes
            );
            // The small test model is dominated by weights; LayerNorm parameters stay f32.
            assert!(ratio < 0.6, "fp16 / fp32 size ratio {ratio}");
        }
    }
    // Weights are FLOAT16 except the LayerNorm scale/bias; the mask bias is f32 (fp32 softmax).
    let script = "import sys, onnx\nm = onnx.load(sys.argv[1])\nfor t in m.graph.initializer:\n    if t.data_type == 1:\n        assert 'norm' in t.name or t.name.startswith('const'), t.name\nassert any(t.data_type == 10 for t in m.graph.initializer)\nops = [n.op_type for n in m.graph.node]\nassert ops.count('LayerNormalization') > 0 and ops.count('Softmax') > 0\n";
    let root = tempfile::tempdir().unwrap();
    let config = small(Variant::Mome);
    let ckpt = root.path().join("ckpt");
    write_checkpoint(&ckpt, &config, &expected_weight_shapes(&config));
    let out = root.path().join("fp16");
    let options = ExportOptions::default().with_precision(Precision::F16);
    export_graphs_with(&ckpt, &out, &options).unwrap();
    let status = Command::new(venv_python())
        .args(["-c", script])
        .arg(out.join(FUSION_ENCODER))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn f32_to_f16_rounds_to_nearest_even() {
    use vlbeit_export::onnx::{f16_bits_to_f32, f32_to_f16_bits};
    let cases: [(f32, u16); 14] = [
        (0.0, 0x0000),
        (-0.0, 0x8000),
        (1.0, 0x3c00),
        (-2.0, 0xc000),
        (65504.0, 0x7bff),
        (65520.0, 0x7c00), // halfway to the next binade: rounds to even, which is inf
        (1e6, 0x7c00),
        (f32::INFINITY, 0x7c00),
        (f32::NEG_INFINITY, 0xfc00),
        (6.103_515_6e-5, 0x0400),     // smallest normal
        (5.960_464_5e-8, 0x0001),     // smallest subnormal
        (2.980_232_2e-8, 0x0000),     // half of it: tie to even (0)
        (1.0 + 1.0 / 2048.0, 0x3c00), // tie between 0x3c00 and 0x3c01: even
        (1.0 + 3.0 / 2048.0, 0x3c02), // tie between 0x3c01 and 0x3c02: even
    ];
    for (x, bits) in cases {
        assert_eq!(f32_to_f16_bits(x), bits, "{x:e}");
    }
    assert!(f16_bits_to_f32(f32_to_f16_bits(f32::NAN)).is_nan());
    // Every half value round-trips exactly.
    for h in 0..=u16::MAX {
        let x = f16_bits_to_f32(h);
        if x.is_nan() {
            continue;
        }
        assert_eq!(f32_to_f16_bits(x), h, "{h:#06x}");
    }
    // Just above a tie rounds up; just below rounds down.
    let above = f32::from_bits((1.0f32 + 1.0 / 2048.0).to_bits() + 1);
    let below = f32::from_bits((1.0f32 + 1.0 / 2048.0).to_bits() - 1);
    assert_eq!(f32_to_f16_bits(above), 0x3c01);
    assert_eq!(f32_to_f16_bits(below), 0x3c00);
}

#[test]
fn large_models_move_weights_to_aligned_external_data() {
    let root = tempfile::tempdir().unwrap();
    let config = small(Variant::Mome);
    write_checkpoint(
        &root.path().join("ckpt"),
        &config,
        &expected_weight_shapes(&config),
    );
    let out = root.path().join("bundle");
    let options = ExportOptions::default().with_external_data_above(4096);
    let report = export_graphs_with(&root.path().join("ckpt"), &out, &options).unwrap();
    for graph in &report.graphs {
        let data = graph.data_path.as_ref().expect("external data above 4 KiB");
        let file_name = data.file_name().unwrap().to_string_lossy().into_owned();
        assert!(file_name.ends_with(".onnx.data"), "{file_name}");
        assert!(std::fs::metadata(data).unwrap().len() > 64 * 1024);
        // The graph itself shrinks to its nodes and small constants.
        assert!(
            graph.bytes < 64 * 1024,
            "{} is {} bytes",
            graph.path.display(),
            graph.bytes
        );
    }
    check_with_onnx(&graph_paths(&out));
    // Offsets are 64 KiB-aligned.
    let script = "import sys, onnx\nm = onnx.load(sys.argv[1], load_external_data=False)\nfor t in m.graph.initializer:\n    for e in t.external_data:\n        if e.key == 'offset':\n            assert int(e.value) % 65536 == 0, (t.name, e.value)\n";
    let status = Command::new(venv_python())
        .args(["-c", script])
        .arg(out.join(FUSION_ENCODER))
        .status()
        .unwrap();
    assert!(status.success());
}

fn export_error(shapes: BTreeMap<String, Vec<i64>>) -> String {
    let root = tempfile::tempdir().unwrap();
    let config = small(Variant::Mome);
    write_checkpoint(&root.path().join("ckpt"), &config, &shapes);
    let err = export_graphs(&root.path().join("ckpt"), &root.path().join("bundle")).unwrap_err();
    assert!(matches!(err, ExportError::Mismatch { .. }), "{err}");
    assert!(
        !root.path().join("bundle").exists(),
        "nothing is written on error"
    );
    err.to_string()
}

#[test]
fn a_missing_tensor_is_named() {
    let mut shapes = expected_weight_shapes(&small(Variant::Mome));
    shapes.remove("blocks.1.ffn.vl.fc2.bias");
    let message = export_error(shapes);
    assert!(
        message.contains("missing tensors: blocks.1.ffn.vl.fc2.bias"),
        "{message}"
    );
}

#[test]
fn an_unexpected_tensor_is_named() {
    let mut shapes = expected_weight_shapes(&small(Variant::Mome));
    shapes.insert("blocks.0.ffn.vl.fc1.weight".into(), vec![128, 32]);
    let message = export_error(shapes);
    assert!(
        message.contains("unexpected tensors: blocks.0.ffn.vl.fc1.weight"),
        "{message}"
    );
}

#[test]
fn a_wrong_shaped_tensor_is_named_with_both_shapes() {
    let mut shapes = expected_weight_shapes(&small(Variant::Mome));
    shapes.insert("embed.text_pos".into(), vec![1, 8, 32]);
    let message = export_error(shapes);
    assert!(
        message.contains("tensor embed.text_pos has shape [1, 8, 32], expected [1, 16, 32]"),
        "{message}"
    );
    assert!(!message.contains("missing"), "{message}");
}

#[test]
fn nlvr2_and_segmentation_tensors_are_skipped_and_reported() {
    let root = tempfile::tempdir().unwrap();
    let config = small(Variant::Mome);
    let mut shapes = expected_weight_shapes(&config);
    shapes.insert("heads.nlvr2.fc1.weight".into(), vec![64, 64]);
    shapes.insert("heads.segment.fc.weight".into(), vec![4, 32]);
    write_checkpoint(&root.path().join("ckpt"), &config, &shapes);
    let report = export_graphs(&root.path().join("ckpt"), &root.path().join("bundle")).unwrap();
    assert_eq!(
        report.skipped_tensors,
        ["heads.nlvr2.fc1.weight", "heads.segment.fc.weight"]
    );
}
