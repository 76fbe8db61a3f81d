//! The exporter end to end without libtorch: random weights of the documented names and shapes
//! → three graphs that pass `onnx.checker` (full check), inline and with external data; bad
//! checkpoints are refused with the tensor named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vlbeit_core::config::{ModelConfig, Variant};
use vlbeit_export::{
    ExportError, ExportOptions, FUSION_ENCODER, IMAGE_ENCODER, TEXT_ENCODER,
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
fn task_head_tensors_are_skipped_and_reported() {
    let root = tempfile::tempdir().unwrap();
    let config = small(Variant::Mome);
    let mut shapes = expected_weight_shapes(&config);
    shapes.insert("heads.vqa.fc1.weight".into(), vec![4, 32]);
    write_checkpoint(&root.path().join("ckpt"), &config, &shapes);
    let report = export_graphs(&root.path().join("ckpt"), &root.path().join("bundle")).unwrap();
    assert_eq!(report.skipped_tensors, ["heads.vqa.fc1.weight"]);
}
