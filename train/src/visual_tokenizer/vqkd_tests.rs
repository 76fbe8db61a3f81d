use tch::{Device, Kind, Tensor};
use vlbeit_core::ModelConfig;

use super::*;
use crate::visual_tokenizer::{VisualTokenizerConfig, VitConfig};

/// 32 px images of 8 px patches (16 patches), a 64-code book, one narrow block each side.
fn small_config() -> VisualTokenizerConfig {
    let vit = VitConfig {
        width: 32,
        depth: 1,
        heads: 2,
        mlp_ratio: 2,
    };
    VisualTokenizerConfig {
        image_size: 32,
        patch_size: 8,
        codebook_size: 64,
        encoder: vit.clone(),
        decoder: vit,
        ..VisualTokenizerConfig::for_model(&ModelConfig::tiny())
    }
}

fn small_model() -> ModelConfig {
    ModelConfig {
        image_size: 32,
        visual_vocab: 64,
        ..ModelConfig::tiny()
    }
}

fn pixels(batch: i64) -> Tensor {
    Tensor::rand([batch, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

/// A tokenizer whose codebook went through k-means on real encoder outputs.
fn trained_once(seed: i64) -> VisualTokenizer {
    tch::manual_seed(seed);
    let mut tokenizer = VisualTokenizer::new(small_config(), Device::Cpu).unwrap();
    let x = pixels(4);
    let targets = tokenizer.config().teacher.build(8).targets(&x);
    let _ = tokenizer.step(&x, &targets);
    tokenizer
}

#[test]
fn tokenize_gives_one_deterministic_id_per_patch() {
    let tokenizer = trained_once(0);
    let x = pixels(3);
    let ids = tokenizer.tokenize(&x).unwrap();
    assert_eq!(ids.size(), [3, 16]);
    assert_eq!(ids.kind(), Kind::Int64);
    assert!(ids.min().int64_value(&[]) >= 0 && ids.max().int64_value(&[]) < 64);
    assert!(ids.equal(&tokenizer.tokenize(&x).unwrap()));
    // Row b of a batch is the tokenization of image b alone.
    assert!(
        ids.get(1)
            .equal(&tokenizer.tokenize(&x.narrow(0, 1, 1)).unwrap().get(0))
    );
}

#[test]
fn tokenize_refuses_the_wrong_image_size() {
    let tokenizer = trained_once(0);
    let err = tokenizer
        .tokenize(&Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu)))
        .unwrap_err();
    assert!(err.to_string().contains("[batch, 3, 32, 32]"), "{err}");
}

#[test]
fn the_straight_through_estimator_carries_gradients_to_the_encoder() {
    let mut tokenizer = trained_once(1);
    let x = pixels(2);
    let targets = tokenizer.config().teacher.build(8).targets(&x);
    let out = tokenizer.step(&x, &targets);
    out.loss.backward();
    let variables = tokenizer.var_store().variables();
    for name in ["encoder.patch.weight", "encoder.task.fc2.weight"] {
        let grad = variables[name].grad();
        assert!(grad.defined(), "{name} has no gradient");
        let norm = grad.norm().double_value(&[]);
        assert!(norm > 0.0, "{name}: gradient norm {norm}");
    }
    assert!(!variables["quantizer.codebook"].requires_grad());
}

#[test]
fn save_then_load_gives_identical_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok");
    let tokenizer = trained_once(2);
    tokenizer.save(&path).unwrap();
    assert!(path.join(CONFIG_FILE).is_file() && path.join(WEIGHTS_FILE).is_file());
    // Saving again replaces the earlier tokenizer and leaves no temp directory behind.
    tokenizer.save(&path).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    tch::manual_seed(99);
    let loaded = VisualTokenizer::load_for_model(&path, &small_model(), Device::Cpu).unwrap();
    assert_eq!(loaded.config(), tokenizer.config());
    let x = pixels(3);
    assert!(
        loaded
            .tokenize(&x)
            .unwrap()
            .equal(&tokenizer.tokenize(&x).unwrap())
    );
    assert!(loaded.codebook().equal(&tokenizer.codebook()));
}

#[test]
fn loading_for_a_mismatched_model_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok");
    trained_once(3).save(&path).unwrap();
    let cases = [
        (
            ModelConfig {
                visual_vocab: 8192,
                ..small_model()
            },
            "`codebook_size` is 64, expected 8192 (the model's visual_vocab)",
        ),
        (
            ModelConfig {
                patch_size: 16,
                ..small_model()
            },
            "`patch_size` is 8",
        ),
    ];
    for (model, needle) in cases {
        let err = VisualTokenizer::load_for_model(&path, &model, Device::Cpu).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn save_refuses_to_replace_an_unrelated_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = trained_once(4).save(dir.path()).unwrap_err();
    assert!(err.to_string().contains("refusing to replace"), "{err}");
    assert!(dir.path().join("notes.txt").is_file());
}
