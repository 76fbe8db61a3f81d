//! The Triton model repository written from a real bundle (random weights, no libtorch), checked
//! against Triton's own schema: every `config.pbtxt` is parsed by the venv's python with
//! `tritonclient`'s `model_config_pb2.ModelConfig` (scripts/setup.sh installs it), and the parsed
//! configs are compared with the bundle manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use vlbeit_core::config::{ModelConfig, PreprocessConfig, Variant};
use vlbeit_core::text::SPECIAL_TOKENS;
use vlbeit_export::{
    BundleOptions, ExportError, ExportOptions, InstanceKind, MANIFEST, TritonOptions,
    expected_weight_shapes, export_bundle, write_triton_repository,
};

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

/// A checkpoint of deterministic pseudo-random weights, with what a bundle copies.
fn write_checkpoint(dir: &Path, config: &ModelConfig) {
    std::fs::create_dir_all(dir).unwrap();
    let json = serde_json::json!({
        "format_version": 1,
        "model": config,
        "preprocess": PreprocessConfig::for_image_size(config.image_size as u32),
        "tokenizer": {
            "max_len": config.max_text_len,
            "padding": "longest",
            "special_tokens": SPECIAL_TOKENS
                .iter()
                .enumerate()
                .map(|(id, token)| serde_json::json!({"token": token, "id": id}))
                .collect::<Vec<_>>(),
            "lowercase": true,
            "unicode_normalization": "nfkc",
        },
        "pair_max_len": config.max_pair_text_len,
        "heads": {},
        "training": {},
    });
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = expected_weight_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let n: usize = shape.iter().product();
            let bytes = (0..n)
                .flat_map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5).to_le_bytes()
                })
                .collect();
            (name, shape, bytes)
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

/// A bundle in `root/bundle`; with external data when `external`.
fn bundle(root: &Path, external: bool) -> PathBuf {
    let ckpt = root.join("ckpt");
    write_checkpoint(&ckpt, &small());
    let out = root.join("bundle");
    let export = if external {
        ExportOptions::default().with_external_data_above(0)
    } else {
        ExportOptions::default()
    };
    let options = BundleOptions {
        export,
        ..BundleOptions::default()
    };
    export_bundle(&ckpt, &out, &options).unwrap();
    out
}

fn venv_python() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = workspace.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the project venv (tritonclient's schema is needed)",
        python.display()
    );
    python
}

/// Parses each config with Triton's `ModelConfig` schema; returns them as JSON (proto field
/// names, enums by name, 64-bit integers as strings).
fn parse_with_triton_schema(configs: &[PathBuf]) -> Vec<Json> {
    let script = r#"
import importlib.util, json, pathlib, sys
from google.protobuf import json_format, text_format
# tritonclient.grpc's __init__ imports grpc (not installed: --no-deps); load the schema alone.
spec = importlib.util.find_spec("tritonclient")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
loader = importlib.util.spec_from_file_location("model_config_pb2", path)
model_config_pb2 = importlib.util.module_from_spec(loader)
loader.loader.exec_module(model_config_pb2)
out = []
for p in sys.argv[1:]:
    config = text_format.Parse(pathlib.Path(p).read_text(), model_config_pb2.ModelConfig())
    out.append(json_format.MessageToDict(config, preserving_proto_field_name=True))
print(json.dumps(out))
"#;
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(configs)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "Triton's schema refused {configs:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(name, data_type, dims)` of the config's inputs or outputs.
fn tensors(config: &Json, field: &str) -> Vec<(String, String, Vec<i64>)> {
    config[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let dims = t["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().parse().unwrap())
                .collect();
            (
                t["name"].as_str().unwrap().to_owned(),
                t["data_type"].as_str().unwrap().to_owned(),
                dims,
            )
        })
        .collect()
}

/// The manifest's signature as Triton sees it: batch axis dropped, `seq` as -1.
fn expected(signature: &Json) -> Vec<(String, String, Vec<i64>)> {
    signature
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t["shape"].as_array().unwrap();
            assert_eq!(shape[0], "batch");
            let dims = shape[1..]
                .iter()
                .map(|d| d.as_i64().unwrap_or(-1))
                .collect();
            let dtype = match t["dtype"].as_str().unwrap() {
                "float32" => "TYPE_FP32",
                "int64" => "TYPE_INT64",
                other => panic!("dtype {other}"),
            };
            (t["name"].as_str().unwrap().to_owned(), dtype.into(), dims)
        })
        .collect()
}

fn check_repository(external: bool) {
    let root = tempfile::tempdir().unwrap();
    let bundle = bundle(root.path(), external);
    let manifest: Json =
        serde_json::from_str(&std::fs::read_to_string(bundle.join(MANIFEST)).unwrap()).unwrap();
    let repo = root.path().join("triton");
    let report = write_triton_repository(&bundle, &repo, &TritonOptions::default()).unwrap();
    let names: Vec<&str> = report.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vlbeit_image_encoder",
            "vlbeit_text_encoder",
            "vlbeit_fusion_encoder",
            "vlbeit_retrieval"
        ]
    );
    // Nothing but the four models (no temp dirs beside the repository either).
    assert_eq!(std::fs::read_dir(&repo).unwrap().count(), 4);
    let beside: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(beside.iter().all(|n| !n.starts_with('.')), "{beside:?}");

    let configs: Vec<PathBuf> = report
        .models
        .iter()
        .map(|m| m.config_path.clone())
        .collect();
    let parsed = parse_with_triton_schema(&configs);

    // Model tensors by model name, for the ensemble's maps.
    let mut model_inputs = BTreeMap::new();
    let mut model_outputs = BTreeMap::new();
    for (i, file) in [
        "image_encoder.onnx",
        "text_encoder.onnx",
        "fusion_encoder.onnx",
    ]
    .iter()
    .enumerate()
    {
        let (model, config) = (&report.models[i], &parsed[i]);
        let graph = &manifest["graphs"][file];
        assert_eq!(config["name"], model.name.as_str());
        assert_eq!(config["platform"], "onnxruntime_onnx");
        assert_eq!(config["max_batch_size"], 32);
        let inputs = tensors(config, "input");
        let outputs = tensors(config, "output");
        assert_eq!(inputs, expected(&graph["inputs"]), "{file}");
        assert_eq!(outputs, expected(&graph["outputs"]), "{file}");
        assert_eq!(
            config["dynamic_batching"]["preferred_batch_size"],
            serde_json::json!([16, 32])
        );
        assert_eq!(
            config["dynamic_batching"]["max_queue_delay_microseconds"],
            "100"
        );
        assert_eq!(config["instance_group"][0]["kind"], "KIND_GPU");
        assert_eq!(config["instance_group"][0]["count"], 1);
        let trt = &config["optimization"]["execution_accelerators"]["gpu_execution_accelerator"][0];
        assert_eq!(trt["name"], "tensorrt");
        assert_eq!(trt["parameters"]["precision_mode"], "FP16");
        assert_eq!(trt["parameters"]["trt_engine_cache_enable"], "true");
        assert_eq!(
            trt["parameters"]["trt_engine_cache_path"],
            "/tmp/vlbeit-trt-cache"
        );

        // The graph (and its external data, under the name the graph refers to) is the bundle's.
        let version = repo.join(&model.name).join("1");
        assert_eq!(
            std::fs::read(version.join("model.onnx")).unwrap(),
            std::fs::read(bundle.join(file)).unwrap()
        );
        match graph["data_file"].as_str() {
            Some(data) => {
                assert!(external);
                assert_eq!(
                    std::fs::read(version.join(data)).unwrap(),
                    std::fs::read(bundle.join(data)).unwrap()
                );
                assert_eq!(model.files.len(), 2);
            }
            None => {
                assert!(!external);
                assert_eq!(std::fs::read_dir(&version).unwrap().count(), 1);
            }
        }
        model_inputs.insert(model.name.clone(), inputs);
        model_outputs.insert(model.name.clone(), outputs);
    }

    let ensemble = &parsed[3];
    assert_eq!(ensemble["name"], "vlbeit_retrieval");
    assert_eq!(ensemble["platform"], "ensemble");
    assert_eq!(ensemble["max_batch_size"], 32);
    assert!(repo.join("vlbeit_retrieval/1").is_dir());
    let inputs = tensors(ensemble, "input");
    let outputs = tensors(ensemble, "output");
    let input_names: Vec<&str> = inputs.iter().map(|t| t.0.as_str()).collect();
    let output_names: Vec<&str> = outputs.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(input_names, ["pixel_values", "input_ids", "attention_mask"]);
    assert_eq!(output_names, ["image_embeds", "text_embeds", "itm_logits"]);
    let steps = ensemble["ensemble_scheduling"]["step"].as_array().unwrap();
    let step_models: Vec<&str> = steps
        .iter()
        .map(|s| s["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(step_models, &names[..3]);
    let mut produced = Vec::new();
    for step in steps {
        let model = step["model_name"].as_str().unwrap();
        assert_eq!(step["model_version"], "1");
        let model_in = &model_inputs[model];
        let model_out = &model_outputs[model];
        let input_map = step["input_map"].as_object().unwrap();
        // Every model input is fed, from an ensemble input of the same type and dims.
        assert_eq!(input_map.len(), model_in.len(), "{model}");
        for (key, value) in input_map {
            let tensor = model_in.iter().find(|t| &t.0 == key).unwrap_or_else(|| {
                panic!("{model} has no input {key}");
            });
            let source = inputs
                .iter()
                .find(|t| t.0 == value.as_str().unwrap())
                .unwrap_or_else(|| panic!("{model}: {value} is no ensemble input"));
            assert_eq!((&tensor.1, &tensor.2), (&source.1, &source.2), "{model}");
        }
        for (key, value) in step["output_map"].as_object().unwrap() {
            let tensor = model_out.iter().find(|t| &t.0 == key).unwrap_or_else(|| {
                panic!("{model} has no output {key}");
            });
            let target = outputs
                .iter()
                .find(|t| t.0 == value.as_str().unwrap())
                .unwrap_or_else(|| panic!("{model}: {value} is no ensemble output"));
            assert_eq!((&tensor.1, &tensor.2), (&target.1, &target.2), "{model}");
            produced.push(target.0.clone());
        }
    }
    produced.sort();
    let mut want: Vec<String> = output_names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        produced, want,
        "each ensemble output is produced exactly once"
    );
}

#[test]
fn the_repository_parses_with_tritons_schema_and_matches_the_manifest() {
    check_repository(false);
}

#[test]
fn external_data_travels_with_the_graph() {
    check_repository(true);
}

#[test]
fn cpu_instances_without_batching_parse_too() {
    let root = tempfile::tempdir().unwrap();
    let bundle = bundle(root.path(), false);
    let repo = root.path().join("triton");
    let options = TritonOptions {
        model_prefix: "vl-cpu".into(),
        max_batch_size: 0,
        dynamic_batching: false,
        instance_kind: InstanceKind::Cpu,
        instance_count: 2,
        ..TritonOptions::default()
    };
    let report = write_triton_repository(&bundle, &repo, &options).unwrap();
    let configs: Vec<PathBuf> = report
        .models
        .iter()
        .map(|m| m.config_path.clone())
        .collect();
    let parsed = parse_with_triton_schema(&configs);
    assert_eq!(parsed[0]["name"], "vl-cpu_image_encoder");
    assert_eq!(parsed[3]["name"], "vl-cpu_retrieval");
    for config in &parsed[..3] {
        // Proto3 leaves zero values out.
        assert!(config.get("max_batch_size").is_none(), "{config}");
        assert!(config.get("dynamic_batching").is_none(), "{config}");
        assert!(config.get("optimization").is_none(), "{config}");
        assert_eq!(config["instance_group"][0]["kind"], "KIND_CPU");
        assert_eq!(config["instance_group"][0]["count"], 2);
    }
    // Without Triton batching the batch axis is part of dims.
    let text = tensors(&parsed[1], "input");
    assert_eq!(
        text[0],
        ("input_ids".into(), "TYPE_INT64".into(), vec![-1, -1])
    );
    let image = tensors(&parsed[0], "input");
    assert_eq!(image[0].2, vec![-1, 3, 32, 32]);
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let bundle = bundle(root.path(), false);
    let repo = root.path().join("triton");
    let cases: Vec<(TritonOptions, &str)> = vec![
        (
            TritonOptions {
                max_batch_size: 0,
                ..TritonOptions::default()
            },
            "dynamic batching needs max_batch_size >= 1",
        ),
        (
            TritonOptions {
                preferred_batch_sizes: Some(vec![8, 64]),
                ..TritonOptions::default()
            },
            "preferred batch size 64 is outside 1..=32",
        ),
        (
            TritonOptions {
                preferred_batch_sizes: Some(vec![16, 8]),
                ..TritonOptions::default()
            },
            "strictly increasing",
        ),
        (
            TritonOptions {
                instance_count: 0,
                ..TritonOptions::default()
            },
            "instance count must be >= 1",
        ),
        (
            TritonOptions {
                model_prefix: "../up".into(),
                ..TritonOptions::default()
            },
            "model prefix \"../up\"",
        ),
        (
            TritonOptions {
                version: 0,
                ..TritonOptions::default()
            },
            "model version must be >= 1",
        ),
        (
            TritonOptions {
                ensemble_outputs: vec!["logits".into()],
                ..TritonOptions::default()
            },
            "ensemble output \"logits\" is no output of the three graphs",
        ),
    ];
    for (options, want) in cases {
        let err = write_triton_repository(&bundle, &repo, &options).unwrap_err();
        assert!(matches!(err, ExportError::Triton { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(want), "{text}");
        assert!(!repo.exists());
    }
    // A directory that is no bundle: the manifest is named.
    let err = write_triton_repository(root.path(), &repo, &TritonOptions::default()).unwrap_err();
    assert!(err.to_string().contains(MANIFEST), "{err}");
    assert!(!repo.exists());
}

#[test]
fn a_non_empty_repository_is_kept_without_force() {
    let root = tempfile::tempdir().unwrap();
    let bundle = bundle(root.path(), false);
    let repo = root.path().join("triton");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("keep.txt"), b"mine").unwrap();
    let err = write_triton_repository(&bundle, &repo, &TritonOptions::default()).unwrap_err();
    assert!(matches!(err, ExportError::OutputExists { .. }), "{err}");
    assert!(
        err.to_string().contains(&repo.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(repo.join("keep.txt")).unwrap(), b"mine");

    // With force the repository is replaced whole.
    let force = TritonOptions {
        force: true,
        ..TritonOptions::default()
    };
    write_triton_repository(&bundle, &repo, &force).unwrap();
    assert!(!repo.join("keep.txt").exists());
    assert!(repo.join("vlbeit_fusion_encoder/config.pbtxt").is_file());
    let beside: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(beside.iter().all(|n| !n.starts_with('.')), "{beside:?}");
}

#[test]
fn a_graph_differing_from_the_manifest_is_named() {
    let root = tempfile::tempdir().unwrap();
    let bundle = bundle(root.path(), false);
    std::fs::write(bundle.join("text_encoder.onnx"), b"not the graph").unwrap();
    let repo = root.path().join("triton");
    let err = write_triton_repository(&bundle, &repo, &TritonOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("text_encoder.onnx"), "{text}");
    assert!(text.contains("sha256"), "{text}");
    assert!(!repo.exists());
}

#[test]
fn the_cli_writes_the_repository_after_the_export() {
    let root = tempfile::tempdir().unwrap();
    let ckpt = root.path().join("ckpt");
    write_checkpoint(&ckpt, &small());
    let out = root.path().join("bundle");
    let repo = root.path().join("triton");
    let run = Command::new(env!("CARGO_BIN_EXE_vlbeit-export"))
        .args(["--checkpoint", ckpt.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(["--triton", repo.to_str().unwrap()])
        .args(["--triton-max-batch-size", "8", "--triton-instances", "2"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join(MANIFEST).is_file());
    let parsed = parse_with_triton_schema(&[
        repo.join("vlbeit_image_encoder/config.pbtxt"),
        repo.join("vlbeit_retrieval/config.pbtxt"),
    ]);
    assert_eq!(parsed[0]["max_batch_size"], 8);
    assert_eq!(
        parsed[0]["dynamic_batching"]["preferred_batch_size"],
        serde_json::json!([4, 8])
    );
    assert_eq!(parsed[0]["instance_group"][0]["count"], 2);
    assert_eq!(parsed[1]["max_batch_size"], 8);

    // A bad option is refused after the export, naming the repository.
    let run = Command::new(env!("CARGO_BIN_EXE_vlbeit-export"))
        .args(["--checkpoint", ckpt.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--force"])
        .args(["--triton", repo.to_str().unwrap()])
        .args(["--triton-instances", "0"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("instance count must be >= 1"), "{stderr}");
    assert!(stderr.contains(&repo.display().to_string()), "{stderr}");
}
