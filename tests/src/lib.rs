//! Fixtures shared by the cross-crate tests in `tests/tests/`: a real (tiny) pretrained
//! checkpoint and its verified bundle, made from the project's synthetic scenes.

use std::path::{Path, PathBuf};

use tch::Device;
use vlbeit_core::config::ModelConfig;
use vlbeit_core::scenes::{DatasetSpec, SplitCounts, write_dataset};
use vlbeit_core::text::{TextTokenizer, TrainOptions};
use vlbeit_export::{BundleOptions, export_bundle};
use vlbeit_train::pretrain::{PretrainConfig, pretrain};
use vlbeit_train::visual_tokenizer::{VisualTokenizer, VisualTokenizerConfig};

/// A pretrained micro checkpoint (2 steps), as train/tests/pretrain.rs builds it.
pub fn pretrained_checkpoint(root: &Path) -> PathBuf {
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
    let tokenizer = TextTokenizer::train(corpus.lines(), &TrainOptions::default()).unwrap();
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
    let mut vt = VisualTokenizerConfig::for_model(&model);
    vt.encoder.width = 32;
    vt.encoder.heads = 1;
    vt.encoder.depth = 1;
    vt.decoder = vt.encoder.clone();
    VisualTokenizer::new(vt, Device::Cpu)
        .unwrap()
        .save(&root.join("visual_tokenizer"))
        .unwrap();
    let mut c = PretrainConfig::new(
        model,
        root.join("scenes"),
        root.join("tokenizer.json"),
        root.join("visual_tokenizer"),
        root.join("run"),
    );
    c.steps = 2;
    c.batch_size = 3;
    c.warmup_steps = 1;
    c.eval_batches = 1;
    c.progress = false;
    pretrain(&c).unwrap().checkpoint
}

/// [`pretrained_checkpoint`] exported to `root/bundle` with the parity gate on; returns the
/// checkpoint and the bundle directories.
pub fn verified_bundle(root: &Path) -> (PathBuf, PathBuf) {
    let checkpoint = pretrained_checkpoint(root);
    let bundle = root.join("bundle");
    let options = BundleOptions {
        verify: true,
        ..BundleOptions::default()
    };
    export_bundle(&checkpoint, &bundle, &options).unwrap();
    (checkpoint, bundle)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}
