//! Pretraining end to end on a micro model and generated scenes: exact resume, checkpoint
//! reload with its golden outputs, and the failures that must stop a run before or during it.

use std::path::{Path, PathBuf};

use tch::{Device, Tensor, nn};
use vlbeit_core::config::ModelConfig;
use vlbeit_core::scenes::{DatasetSpec, SplitCounts, write_dataset};
use vlbeit_core::text::{TextTokenizer, TrainOptions};
use vlbeit_train::checkpoint::{CheckpointConfig, read_safetensors};
use vlbeit_train::golden::GoldenInputs;
use vlbeit_train::model::{VlBeit, load_weights};
use vlbeit_train::pretrain::{PretrainConfig, PretrainError, pretrain};
use vlbeit_train::visual_tokenizer::{VisualTokenizer, VisualTokenizerConfig};

/// libtorch's random generator is process-wide and the tests of a binary run in parallel: the
/// tests that train take this lock, or one test's draws (drop path, masks re-seeded per step)
/// would shift another's, and the resume test compares weights bit for bit.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TRAINING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: ModelConfig,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let counts = SplitCounts {
        train: 24,
        val: 8,
        test: 4,
        compositional: 4,
    };
    write_dataset(
        root.join("scenes"),
        &DatasetSpec {
            image_size: 32,
            seed: 5,
            scenes: counts,
            nlvr2: counts,
            corpus_sentences: 300,
            shard_size: 10,
        },
    )
    .unwrap();
    let corpus = std::fs::read_to_string(root.join("scenes/corpus.txt")).unwrap();
    let tokenizer = TextTokenizer::train(
        corpus.lines().chain(["what is the colour of the circle?"]),
        &TrainOptions::default(),
    )
    .unwrap();
    tokenizer.save(&root.join("tokenizer.json")).unwrap();
    let model = ModelConfig {
        hidden: 32,
        layers: 2,
        heads: 2,
        mlp_ratio: 2,
        image_size: 32,
        patch_size: 8,
        vocab_size: tokenizer.vocab_size(),
        max_text_len: 32,
        max_pair_text_len: 24,
        vl_ffn_start: 1,
        visual_vocab: 32,
        embed_dim: 16,
        ..ModelConfig::tiny()
    };
    // An untrained (randomly initialized) visual tokenizer gives fixed, if meaningless,
    // targets: enough to exercise the pipeline.
    let mut vt = VisualTokenizerConfig::for_model(&model);
    vt.encoder.width = 32;
    vt.encoder.heads = 1;
    vt.encoder.depth = 1;
    vt.decoder = vt.encoder.clone();
    VisualTokenizer::new(vt, Device::Cpu)
        .unwrap()
        .save(&root.join("visual_tokenizer"))
        .unwrap();
    Fixture {
        _dir: dir,
        root,
        model,
    }
}

fn config(f: &Fixture, out: &str) -> PretrainConfig {
    let mut c = PretrainConfig::new(
        f.model.clone(),
        f.root.join("scenes"),
        f.root.join("tokenizer.json"),
        f.root.join("visual_tokenizer"),
        f.root.join(out),
    );
    c.steps = 4;
    c.batch_size = 3;
    c.warmup_steps = 1;
    c.eval_batches = 1;
    c.progress = false;
    c
}

fn weights(checkpoint: &Path) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(checkpoint.join("model.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_gives_the_same_weights_as_an_uninterrupted_run() {
    let _serial = serial();
    let f = fixture();
    let straight = pretrain(&config(&f, "straight")).unwrap();
    assert_eq!((straight.step, straight.steps_run), (4, 4));
    for key in ["mlm_loss", "mim_loss", "mvlm_text_loss", "mvlm_image_loss"] {
        assert!(straight.last_metrics[key].is_finite(), "{key}");
    }

    let mut paused = config(&f, "paused");
    paused.stop_after = Some(2);
    let first = pretrain(&paused).unwrap();
    assert_eq!(first.step, 2);
    let at_step_2 = weights(&first.checkpoint);
    paused.stop_after = None;
    let second = pretrain(&paused).unwrap();
    assert_eq!(second.resumed_from, Some(2));
    assert_eq!(second.steps_run, 2);

    let a = weights(&straight.checkpoint);
    let b = weights(&second.checkpoint);
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs after resume");
    }
    // And the last two steps moved the weights at all.
    let moved = at_step_2
        .iter()
        .zip(&b)
        .filter(|((_, x), (_, y))| !x.equal(y))
        .count();
    assert!(
        moved > a.len() / 2,
        "only {moved} of {} tensors changed",
        a.len()
    );
}

#[test]
fn a_checkpoint_reloads_and_reproduces_its_golden_outputs() {
    let _serial = serial();
    let f = fixture();
    let outcome = pretrain(&config(&f, "run")).unwrap();
    let dir = &outcome.checkpoint;
    let saved = CheckpointConfig::load(dir).unwrap();
    assert_eq!(saved.model, f.model);
    assert_eq!(saved.training.step, 4);
    assert_eq!(saved.training.tasks, vec!["mlm", "mim", "mvlm"]);
    TextTokenizer::load(&dir.join("tokenizer.json"))
        .unwrap()
        .check_vocab_size(saved.model.vocab_size)
        .unwrap();

    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = VlBeit::new(&vs.root(), &saved.model);
    load_weights(&mut vs, &dir.join("model.safetensors"), &saved.model).unwrap();

    let inputs: GoldenInputs =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden/inputs.json")).unwrap())
            .unwrap();
    assert_eq!(inputs.images.len(), 3);
    assert!(inputs.pairs.len() >= 3);
    let (golden, _) = read_safetensors(&dir.join("golden/outputs.safetensors")).unwrap();
    assert_eq!(
        golden["image_embeds"].size(),
        vec![3, f.model.embed_dim as i64]
    );
    assert_eq!(
        golden["itm_logits"].size(),
        vec![inputs.pairs.len() as i64, 2]
    );

    // Recompute the image embeddings from the raw files through core preprocessing.
    let pre = vlbeit_core::preprocess::Preprocessor::new(saved.preprocess.clone()).unwrap();
    let bytes: Vec<Vec<u8>> = inputs
        .images
        .iter()
        .map(|n| std::fs::read(dir.join("golden").join(n)).unwrap())
        .collect();
    let batch = pre
        .batch(
            &bytes
                .iter()
                .map(|b| vlbeit_core::preprocess::ImageInput::Encoded(b))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    let pixels = Tensor::from_slice(&batch.data).reshape(&shape);
    let embeds = tch::no_grad(|| {
        model
            .heads()
            .image_embeds(&model.forward_image(&pixels, None, false))
    });
    assert!(embeds.allclose(&golden["image_embeds"], 1e-6, 1e-6, false));
}

#[test]
fn a_tokenizer_that_does_not_fit_the_config_fails_before_training() {
    let _serial = serial();
    let f = fixture();
    let mut c = config(&f, "bad");
    c.model.vocab_size += 1;
    let err = pretrain(&c).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PretrainError::Config(_)), "{msg}");
    assert!(
        msg.contains("tokenizer.json") && msg.contains(&c.model.vocab_size.to_string()),
        "{msg}"
    );
    assert!(!f.root.join("bad/checkpoint").exists());

    let mut c = config(&f, "bad");
    c.data = f.root.join("no-such-scenes");
    let msg = pretrain(&c).unwrap_err().to_string();
    assert!(msg.contains("no-such-scenes"), "{msg}");
}

#[test]
fn a_diverging_run_stops_with_its_step_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let f = fixture();
    let mut c = config(&f, "diverge");
    c.steps = 1;
    pretrain(&c).unwrap();
    let before = weights(&f.root.join("diverge/checkpoint"));

    let mut c = config(&f, "diverge");
    c.steps = 6;
    c.peak_lr = 1e30;
    c.warmup_steps = 0;
    c.clip_grad = 1e30;
    c.checkpoint_every = 0;
    match pretrain(&c) {
        Err(PretrainError::NonFinite { step, .. }) => assert!((2..=6).contains(&step)),
        other => panic!("expected a non-finite stop, got {other:?}"),
    }
    let after = weights(&f.root.join("diverge/checkpoint"));
    for ((name, x), (_, y)) in before.iter().zip(&after) {
        assert!(x.equal(y), "{name} changed although the run failed");
    }
}
