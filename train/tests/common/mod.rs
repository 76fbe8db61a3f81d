//! The micro fixture the fine-tuning and tables tests share: generated scenes, a tokenizer, a
//! random visual tokenizer and a 2-step pretrained micro checkpoint.

use std::path::PathBuf;

use tch::Device;
use vlbeit_core::config::ModelConfig;
use vlbeit_core::scenes::{DatasetSpec, SplitCounts, write_dataset};
use vlbeit_core::text::{TextTokenizer, TrainOptions};
use vlbeit_train::pretrain::{PretrainConfig, pretrain};
use vlbeit_train::visual_tokenizer::{VisualTokenizer, VisualTokenizerConfig};

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub model: ModelConfig,
}

/// Scenes, a tokenizer, a random visual tokenizer and a 2-step pretrained micro checkpoint.
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let counts = SplitCounts {
        train: 24,
        val: 8,
        test: 4,
        compositional: 6,
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
        corpus
            .lines()
            .chain(["what is the colour of the circle? how many shapes are there?"]),
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
        model.clone(),
        root.join("scenes"),
        root.join("tokenizer.json"),
        root.join("visual_tokenizer"),
        root.join("pretrain"),
    );
    c.steps = 2;
    c.batch_size = 3;
    c.warmup_steps = 1;
    c.eval_batches = 1;
    c.progress = false;
    pretrain(&c).unwrap();
    Fixture {
        _dir: dir,
        root,
        model,
    }
}
