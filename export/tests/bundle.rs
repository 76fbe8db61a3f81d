//! Bundle writer checks that need no trained model: the checks made before any export work.
//! (Export + parity gate on a real checkpoint: tests/tests/bundle.rs.)

use std::path::Path;

use vlbeit_export::core::config::{ModelConfig, PreprocessConfig};
use vlbeit_export::core::text::SPECIAL_TOKENS;
use vlbeit_export::{BundleOptions, ExportError, export_bundle};

fn write_config(dir: &Path) {
    let model = ModelConfig::tiny();
    let config = serde_json::json!({
        "format_version": 1,
        "model": model,
        "preprocess": PreprocessConfig::for_image_size(model.image_size as u32),
        "tokenizer": {
            "max_len": model.max_text_len,
            "padding": "longest",
            "special_tokens": SPECIAL_TOKENS
                .iter()
                .enumerate()
                .map(|(id, token)| serde_json::json!({"token": token, "id": id}))
                .collect::<Vec<_>>(),
            "lowercase": true,
            "unicode_normalization": "nfkc",
        },
        "pair_max_len": model.max_pair_text_len,
        "heads": {},
        "training": {},
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn a_missing_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    let out = dir.path().join("out");
    let err = export_bundle(&ckpt, &out, &BundleOptions::default()).unwrap_err();
    let config = ckpt.join("config.json");
    assert!(
        err.to_string().contains(&config.display().to_string()),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_missing_tokenizer_or_golden_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    write_config(&ckpt);
    let out = dir.path().join("out");
    let err = export_bundle(&ckpt, &out, &BundleOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    std::fs::write(ckpt.join("tokenizer.json"), b"{}").unwrap();
    let verify = BundleOptions {
        verify: true,
        ..BundleOptions::default()
    };
    let err = export_bundle(&ckpt, &out, &verify).unwrap_err();
    assert!(err.to_string().contains("golden"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_non_empty_output_is_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    write_config(&ckpt);
    std::fs::write(ckpt.join("tokenizer.json"), b"{}").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let err = export_bundle(&ckpt, &out, &BundleOptions::default()).unwrap_err();
    assert!(matches!(err, ExportError::OutputExists { .. }), "{err}");
    assert!(
        err.to_string().contains(&out.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");

    // With force, the export proceeds (and fails here on the missing weights, naming them),
    // leaving the old directory and no temp dir behind.
    let force = BundleOptions {
        force: true,
        ..BundleOptions::default()
    };
    let err = export_bundle(&ckpt, &out, &force).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(out.join("keep.txt").exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}
