//! `vlbeit-train init` is reproducible: the same seed gives the same weights byte for byte, another
//! seed other weights. Each run is its own process, so libtorch's process-wide generator is not
//! shared with tests running in parallel.

use std::path::Path;
use std::process::Command;

use vlbeit_core::scenes::{SceneConfig, SceneGenerator};
use vlbeit_core::text::{TextTokenizer, TrainOptions};

fn init(tokenizer: &Path, out: &Path, seed: u64) {
    let status = Command::new(env!("CARGO_BIN_EXE_vlbeit-train"))
        .args(["init", "--config", "tiny", "--seed", &seed.to_string()])
        .arg("--tokenizer")
        .arg(tokenizer)
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "vlbeit-train init failed: {status}");
}

#[test]
fn the_same_seed_gives_the_same_weights_and_another_seed_others() {
    let dir = tempfile::tempdir().unwrap();
    let generator = SceneGenerator::new(SceneConfig::default()).unwrap();
    let texts: Vec<String> = (0..300).map(|i| generator.corpus_sentence(i)).collect();
    let tokenizer = dir.path().join("tokenizer.json");
    TextTokenizer::train(&texts, &TrainOptions::default().with_vocab_size(300))
        .unwrap()
        .save(&tokenizer)
        .unwrap();
    init(&tokenizer, &dir.path().join("a"), 3);
    init(&tokenizer, &dir.path().join("b"), 3);
    init(&tokenizer, &dir.path().join("c"), 4);
    let read = |name: &str| std::fs::read(dir.path().join(name).join("model.safetensors")).unwrap();
    assert!(read("a") == read("b"), "same seed, different weights");
    assert!(read("a") != read("c"), "another seed, same weights");
}
