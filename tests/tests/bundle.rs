//! Checkpoint → verified bundle: a tiny pretraining writes a real checkpoint with golden/, the
//! exporter writes the bundle and its parity gate replays golden/ from the raw inputs; a
//! corrupted weight is refused and leaves nothing; bad output and input directories are named.

use std::path::Path;

use sha2::Digest;
use tch::Tensor;
use vlbeit_export::{
    BundleOptions, ExportError, ExportOptions, MANIFEST, Precision, export_bundle,
};
use vlbeit_tests::{copy_dir, pretrained_checkpoint};

fn sha256(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn verify() -> BundleOptions {
    BundleOptions {
        verify: true,
        ..BundleOptions::default()
    }
}

#[test]
fn a_pretrained_checkpoint_exports_as_a_verified_bundle() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let checkpoint = pretrained_checkpoint(root);
    let out = root.join("bundle");

    // Verified export passes, every output within fp32 tolerance.
    let report = export_bundle(&checkpoint, &out, &verify()).unwrap();
    let parity = report.parity.as_ref().expect("verified");
    assert!(parity.passed);
    assert_eq!(parity.outputs.len(), 5);
    for o in &parity.outputs {
        println!(
            "{:<14} {:?} max|Δ| = {:.3e}  cosine = {:.9}",
            o.output, o.shape, o.max_abs, o.cosine
        );
        assert!(o.max_abs <= 1e-4, "{}: {}", o.output, o.max_abs);
        assert!(o.cosine >= 0.99999, "{}: {}", o.output, o.cosine);
    }

    // The manifest's hashes are those of the files, and it lists every file but itself.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["precision"], "fp32");
    assert_eq!(manifest["parity"]["passed"], true);
    assert_eq!(
        manifest["source_checkpoint"]["model_sha256"],
        sha256(&checkpoint.join("model.safetensors"))
    );
    let files = manifest["files"].as_object().unwrap();
    for name in [
        "image_encoder.onnx",
        "text_encoder.onnx",
        "fusion_encoder.onnx",
        "tokenizer.json",
        "golden/inputs.json",
        "golden/outputs.safetensors",
    ] {
        assert!(files.contains_key(name), "{name} not in the manifest");
    }
    assert!(!files.contains_key(MANIFEST));
    for (name, hash) in files {
        assert_eq!(hash.as_str().unwrap(), sha256(&out.join(name)), "{name}");
    }
    for (file, graph) in manifest["graphs"].as_object().unwrap() {
        assert_eq!(graph["sha256"], files[file.as_str()], "{file}");
    }
    let text = &manifest["graphs"]["text_encoder.onnx"];
    assert_eq!(text["inputs"][0]["name"], "input_ids");
    assert_eq!(text["inputs"][0]["dtype"], "int64");
    assert_eq!(
        text["inputs"][0]["shape"],
        serde_json::json!(["batch", "seq"])
    );
    let image = &manifest["graphs"]["image_encoder.onnx"];
    assert_eq!(
        image["inputs"][0]["shape"],
        serde_json::json!(["batch", 3, 32, 32])
    );
    assert_eq!(
        manifest["pair_max_len"],
        manifest["model"]["max_pair_text_len"]
    );
    assert_eq!(manifest["tokenizer"]["max_len"], 32);
    // No temp dir is left next to the bundle.
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    // fp16: the verified export passes its gate (cosine ≥ 0.999), the manifest says so, the
    // signatures are those of fp32 and the graphs are about half the size.
    let out16 = root.join("bundle-fp16");
    let options16 = BundleOptions {
        export: ExportOptions::default().with_precision(Precision::F16),
        ..verify()
    };
    let report16 = export_bundle(&checkpoint, &out16, &options16).unwrap();
    let parity16 = report16.parity.as_ref().expect("verified");
    assert!(parity16.passed);
    assert_eq!(parity16.precision, "fp16");
    assert_eq!(parity16.max_abs_tolerance, None);
    assert_eq!(parity16.outputs.len(), 5);
    for o in &parity16.outputs {
        println!(
            "fp16 {:<14} {:?} max|Δ| = {:.3e}  cosine = {:.9}",
            o.output, o.shape, o.max_abs, o.cosine
        );
        assert!(o.cosine >= 0.999, "{}: {}", o.output, o.cosine);
    }
    let manifest16: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out16.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest16["precision"], "fp16");
    assert_eq!(manifest16["parity"]["passed"], true);
    assert_eq!(manifest16["parity"]["min_cosine"], 0.999);
    for (file, graph) in manifest["graphs"].as_object().unwrap() {
        let graph16 = &manifest16["graphs"][file.as_str()];
        assert_eq!(graph["inputs"], graph16["inputs"], "{file}");
        assert_eq!(graph["outputs"], graph16["outputs"], "{file}");
        let (b32, b16) = (
            graph["bytes"].as_f64().unwrap(),
            graph16["bytes"].as_f64().unwrap(),
        );
        println!(
            "{file:<20} fp32 {b32} bytes, fp16 {b16} bytes ({:.3})",
            b16 / b32
        );
        assert!((0.45..0.6).contains(&(b16 / b32)), "{file}: {b32} → {b16}");
    }

    // An existing non-empty bundle is not replaced without force, and is with it.
    let err = export_bundle(&checkpoint, &out, &verify()).unwrap_err();
    assert!(matches!(err, ExportError::OutputExists { .. }), "{err}");
    assert!(
        err.to_string().contains(&out.display().to_string()),
        "{err}"
    );
    let forced = BundleOptions {
        force: true,
        ..BundleOptions::default()
    };
    let report = export_bundle(&checkpoint, &out, &forced).unwrap();
    assert!(report.parity.is_none());
    assert!(report.manifest.parity.is_none());

    // A corrupted weight: the gate refuses and nothing is written.
    let corrupt = root.join("corrupt");
    copy_dir(&checkpoint, &corrupt);
    let weights = corrupt.join("model.safetensors");
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&weights)
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let t = if name == "embed.patch.weight" {
                t * 1.5
            } else {
                t
            };
            (name, t)
        })
        .collect();
    Tensor::write_safetensors(&tensors, &weights).unwrap();
    let refused = root.join("refused");
    let err = export_bundle(&corrupt, &refused, &verify()).unwrap_err();
    println!("refused: {err}");
    let ExportError::ParityFailed { failures, .. } = &err else {
        panic!("expected a parity failure, got {err}");
    };
    assert!(
        failures.iter().any(|f| f.starts_with("image_states")),
        "{err}"
    );
    assert!(err.to_string().contains("max |Δ|"), "{err}");
    assert!(!refused.exists());

    // A checkpoint without config.json is named.
    let no_config = root.join("no-config");
    copy_dir(&checkpoint, &no_config);
    std::fs::remove_file(no_config.join("config.json")).unwrap();
    let err = export_bundle(&no_config, &root.join("b2"), &verify()).unwrap_err();
    let config = no_config.join("config.json").display().to_string();
    assert!(err.to_string().contains(&config), "{err}");
    assert!(!root.join("b2").exists());

    // An output whose parent is a file cannot be written: the error names the path.
    let blocker = root.join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let err = export_bundle(&checkpoint, &blocker.join("out"), &verify()).unwrap_err();
    assert!(matches!(err, ExportError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
}
