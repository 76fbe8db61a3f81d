//! `vlbeit-train scenes` and `vlbeit-train tokenizer` together: the tokenizer trained on a
//! scenes data set covers the language of its held-out splits.

use vlbeit_core::scenes::{DatasetManifest, SceneAnnotation};
use vlbeit_core::shards::ShardReader;
use vlbeit_core::text::{Padding, TextTokenizer};
use vlbeit_train::cli::{scenes, tokenizer};

#[test]
fn tokenizer_trained_on_scenes_has_no_unknown_pieces_on_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("scenes");
    scenes::run(&scenes::ScenesArgs {
        out: data.clone(),
        seed: 3,
        image_size: 64,
        train: 120,
        eval: 20,
        corpus: 500,
        shard_size: 50,
        formats: Vec::new(),
    })
    .unwrap();
    let manifest = DatasetManifest::load(&data).unwrap();
    assert_eq!(manifest.splits["train"].scenes, 120);
    assert_eq!(manifest.splits["train"].shards.len(), 3);

    let out = dir.path().join("tokenizer.json");
    tokenizer::run(&tokenizer::TokenizerArgs {
        corpus: vec![data.clone()],
        vocab_size: 2000,
        out: out.clone(),
    })
    .unwrap();
    let tok = TextTokenizer::load(&out).unwrap();
    let unk = tok.special_ids().unk;

    let shard = data.join(&manifest.splits["test"].shards[0]);
    let mut texts = Vec::new();
    for sample in ShardReader::open(&shard).unwrap() {
        let a: SceneAnnotation = serde_json::from_slice(&sample.unwrap().files["json"]).unwrap();
        texts.extend(a.captions);
        texts.extend(a.questions.into_iter().map(|q| q.question));
    }
    assert!(texts.len() >= 40);
    let batch = tok.encode_batch(&texts, 32, Padding::Longest).unwrap();
    assert!(
        !batch.input_ids.contains(&unk),
        "test-split text hits [UNK]"
    );
}

#[test]
fn a_missing_corpus_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = tokenizer::run(&tokenizer::TokenizerArgs {
        corpus: vec![dir.path().join("nope.txt")],
        vocab_size: 100,
        out: dir.path().join("t.json"),
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("nope.txt"), "{err:#}");
    assert!(!dir.path().join("t.json").exists());
}
