//! Loader tests on a tiny scenes data set written into a temp dir.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vlbeit_core::preprocess::{ImageF32, Preprocessor};
use vlbeit_core::scenes::{DatasetSpec, SceneAnnotation, SplitCounts, write_dataset};
use vlbeit_core::shards::{Sample, ShardReader, ShardWriter};
use vlbeit_core::text::{TextTokenizer, TrainOptions};
use vlbeit_core::{ModelConfig, PreprocessConfig};

use super::*;

const SIDE: u32 = 32;

struct Fixture {
    _dir: tempfile::TempDir,
    scenes: PathBuf,
    tokenizer: TextTokenizer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let scenes = dir.path().join("scenes");
    let spec = DatasetSpec {
        image_size: SIDE,
        seed: 1,
        scenes: SplitCounts {
            train: 12,
            val: 4,
            test: 0,
            compositional: 0,
        },
        nlvr2: SplitCounts {
            train: 0,
            val: 0,
            test: 0,
            compositional: 0,
        },
        corpus_sentences: 40,
        shard_size: 5,
    };
    write_dataset(&scenes, &spec).unwrap();
    let corpus = std::fs::read_to_string(scenes.join("corpus.txt")).unwrap();
    let mut texts: Vec<String> = corpus.lines().map(str::to_owned).collect();
    texts.extend(
        train_samples(&scenes)
            .iter()
            .flat_map(|(_, a)| a.captions.clone()),
    );
    let tokenizer =
        TextTokenizer::train(texts, &TrainOptions::default().with_vocab_size(300)).unwrap();
    Fixture {
        _dir: dir,
        scenes,
        tokenizer,
    }
}

fn train_samples(scenes: &Path) -> Vec<(Sample, SceneAnnotation)> {
    let manifest = vlbeit_core::scenes::DatasetManifest::load(scenes).unwrap();
    manifest.splits["train"]
        .shards
        .iter()
        .flat_map(|s| ShardReader::open(scenes.join(s)).unwrap())
        .map(|s| {
            let s = s.unwrap();
            let annotation = serde_json::from_slice(&s.files["json"]).unwrap();
            (s, annotation)
        })
        .collect()
}

fn model() -> ModelConfig {
    ModelConfig {
        image_size: SIDE as usize,
        ..ModelConfig::tiny()
    }
}

fn pre() -> PreprocessConfig {
    PreprocessConfig::for_image_size(SIDE)
}

fn loader(f: &Fixture, sources: &DataSources, config: LoaderConfig) -> Loader {
    Loader::new(sources, f.tokenizer.clone(), pre(), config).unwrap()
}

fn take(loader: &mut Loader, n: usize) -> Vec<PretrainBatch> {
    (0..n).map(|_| loader.next().unwrap().unwrap()).collect()
}

#[test]
fn every_step_has_equal_counts_of_images_texts_and_pairs() {
    let f = fixture();
    let sources = DataSources::scenes(&f.scenes).unwrap();
    let mut loader = loader(&f, &sources, LoaderConfig::train(&model(), 4));
    for (step, batch) in take(&mut loader, 5).into_iter().enumerate() {
        assert_eq!(batch.step, step as u64);
        assert_eq!(batch.images.shape, [4, 3, 32, 32]);
        assert_eq!(batch.images.pixels.len(), 4 * 3 * 32 * 32);
        assert_eq!(batch.pairs.images.shape, [4, 3, 32, 32]);
        assert_eq!(batch.pairs.images.pixels.len(), 4 * 3 * 32 * 32);
        assert_eq!((batch.texts.batch, batch.pairs.text.batch), (4, 4));
        assert_eq!(batch.pairs.captions.len(), 4);
        assert!(batch.texts.seq_len <= model().max_text_len);
        assert!(batch.pairs.text.seq_len <= model().max_pair_text_len);
        assert_eq!(batch.texts.input_ids.len(), 4 * batch.texts.seq_len);
    }
    assert_eq!(loader.state().step, 5);
    assert_eq!(loader.image_counts(), ImageCounts { seen: 40, bad: 0 });
}

#[test]
fn resuming_from_a_saved_state_repeats_the_uninterrupted_batches() {
    let f = fixture();
    let sources = DataSources::scenes(&f.scenes).unwrap();
    let config = LoaderConfig::train(&model(), 5).with_seed(9);
    // 7 steps of 5 cross the epochs of 12 images and 38 training lines.
    let mut full = loader(&f, &sources, config.clone());
    let first = take(&mut full, 3);
    let saved = LoaderState::from_json(&full.state().to_json()).unwrap();
    let rest = take(&mut full, 4);
    let mut resumed = Loader::resume(
        &sources,
        f.tokenizer.clone(),
        pre(),
        config.clone().with_prefetch(0),
        saved.clone(),
    )
    .unwrap();
    assert_eq!(take(&mut resumed, 4), rest);
    assert_ne!(first[0], rest[0]);
    assert!(rest.last().unwrap().step == 6 && saved.images.epoch == 1);
    // Another seed shuffles differently and cannot resume this state.
    let mut other = loader(&f, &sources, config.clone().with_seed(10));
    assert_ne!(
        take(&mut other, 1)[0].pairs.captions,
        first[0].pairs.captions
    );
    let err = Loader::resume(
        &sources,
        f.tokenizer.clone(),
        pre(),
        config.with_seed(10),
        saved,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("seed 9"), "{err}");
}

/// `pixel_values` of an image resized to the model size and optionally mirrored: what a
/// full-image crop gives without colour jitter.
fn reference(image: &ImageF32, flip: bool) -> Vec<f32> {
    let config = pre();
    let mut out = image.resize(SIDE, SIDE, config.interpolation).unwrap();
    if flip {
        out.flip_horizontal();
    }
    out.to_pixel_values(&config)
}

#[test]
fn pairs_flip_with_their_captions_and_are_never_jittered() {
    let f = fixture();
    let sources = DataSources::scenes(&f.scenes).unwrap();
    let decoder = Preprocessor::new(pre()).unwrap();
    let scenes: Vec<(ImageF32, SceneAnnotation)> = train_samples(&f.scenes)
        .into_iter()
        .map(|(s, a)| (decoder.decode(&s.files["png"]).unwrap(), a))
        .collect();
    let augment = AugmentConfig::default()
        .with_crop_scale(1.0, 1.0)
        .with_pair_crop_scale(1.0, 1.0)
        .with_flip_prob(1.0);
    let config = LoaderConfig::train(&model(), 4).with_augment(Some(augment));
    let mut swapped = 0;
    for batch in take(&mut loader(&f, &sources, config), 6) {
        let per = 3 * 32 * 32;
        for (i, caption) in batch.pairs.captions.iter().enumerate() {
            let pixels = &batch.pairs.images.pixels[i * per..(i + 1) * per];
            let (image, annotation) = scenes
                .iter()
                .find(|(image, _)| reference(image, true) == pixels)
                .expect("a pair is a mirrored, unjittered training image");
            assert_ne!(reference(image, false), pixels, "the image is mirrored");
            let original = annotation
                .captions
                .iter()
                .find(|c| swap_left_right(c) == *caption)
                .expect("the caption is one of the scene's, left/right swapped");
            swapped += usize::from(original != caption);
        }
        for i in 0..4 {
            let pixels = &batch.images.pixels[i * per..(i + 1) * per];
            let plain = scenes
                .iter()
                .any(|(image, _)| reference(image, true) == pixels);
            assert!(!plain, "images (not pairs) are colour-jittered");
        }
    }
    assert!(swapped > 0, "no caption mentioned left or right");
}

#[test]
fn evaluation_is_one_unaugmented_pass_over_held_out_data() {
    let f = fixture();
    let sources = DataSources::scenes_held_out(&f.scenes).unwrap();
    let config = LoaderConfig::eval(&model(), 3);
    let batches: Vec<PretrainBatch> = loader(&f, &sources, config)
        .collect::<Result<_, _>>()
        .unwrap();
    // 4 val scenes, but the held-out text is the last 5% of 40 lines: 2 per task.
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].batch_size(), 2);
    let corpus = std::fs::read_to_string(f.scenes.join("corpus.txt")).unwrap();
    let last = corpus.lines().last().unwrap();
    assert_eq!(
        f.tokenizer
            .decode(batches[0].texts.row(1).unwrap())
            .unwrap(),
        f.tokenizer.normalize(last).unwrap()
    );
    let manifest = vlbeit_core::scenes::DatasetManifest::load(&f.scenes).unwrap();
    let shard = f.scenes.join(&manifest.splits["val"].shards[0]);
    let first = ShardReader::open(shard).unwrap().next().unwrap().unwrap();
    let expected = Preprocessor::new(pre())
        .unwrap()
        .encoded(&first.files["png"])
        .unwrap();
    assert_eq!(batches[0].images.pixels[..expected.len()], expected[..]);
    assert_eq!(
        batches[0].pairs.images.pixels[..expected.len()],
        expected[..]
    );
}

/// A copy of the first training shard whose second sample's PNG is garbage.
fn corrupt_shard(f: &Fixture) -> PathBuf {
    let path = f.scenes.join("corrupt-00000.tar");
    let mut writer = ShardWriter::create(&path).unwrap();
    for (i, (mut sample, _)) in train_samples(&f.scenes).into_iter().take(5).enumerate() {
        if i == 1 {
            sample
                .files
                .insert("png".into(), b"\x89PNG not really".to_vec());
        }
        writer.write(&sample).unwrap();
    }
    writer.finish().unwrap();
    path
}

#[test]
fn a_corrupt_image_is_skipped_counted_and_too_many_fail() {
    let f = fixture();
    let shard = corrupt_shard(&f);
    let sources = DataSources {
        images: ImageSource::Shards(vec![shard.clone()]),
        pairs: vec![shard],
        texts: vec![f.scenes.join("corpus.txt")],
        text_slice: TextSlice::All,
    };
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = reported.clone();
    let config = LoaderConfig::train(&model(), 4).with_bad_image_callback(Arc::new(
        move |bad: &BadImage| sink.lock().unwrap().push(bad.clone()),
    ));
    let lenient = LoaderConfig {
        max_bad_fraction: 0.5,
        ..config.clone()
    };
    let mut ok = loader(&f, &sources, lenient);
    let batches = take(&mut ok, 3);
    assert!(batches.iter().all(|b| b.batch_size() == 4));
    let counts = ok.image_counts();
    assert!(
        counts.bad >= 2 && counts.seen == 24 + counts.bad,
        "{counts:?}"
    );
    let first = reported.lock().unwrap()[0].clone();
    assert!(first.source.contains("corrupt-00000.tar") && first.source.contains("train-0000001"));
    // One in five is far above 1%: the default limit stops once 100 images were seen.
    let err = loader(&f, &sources, config)
        .find_map(Result::err)
        .expect("the loader fails");
    match &err {
        DataError::TooManyBadImages { seen, bad, .. } => {
            assert!(*seen >= 100 && *bad * 100 > *seen, "{err}")
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("train-0000001"), "{err}");
}

#[test]
fn missing_and_empty_data_fail_before_training_naming_the_path() {
    let f = fixture();
    let err = DataSources::scenes(f.scenes.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("does not exist"),
        "{err}"
    );
    let mut sources = DataSources::scenes(&f.scenes).unwrap();
    sources.texts.push(f.scenes.join("missing.txt"));
    let err = Loader::new(
        &sources,
        f.tokenizer.clone(),
        pre(),
        LoaderConfig::train(&model(), 2),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("missing.txt"), "{err}");
    let empty = f.scenes.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    sources.texts = vec![empty];
    let err = Loader::new(
        &sources,
        f.tokenizer.clone(),
        pre(),
        LoaderConfig::train(&model(), 2),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("no usable text lines") && err.contains("empty.txt"),
        "{err}"
    );
}

#[test]
fn images_can_come_from_a_folder() {
    let f = fixture();
    let folder = f.scenes.join("images");
    std::fs::create_dir(&folder).unwrap();
    for (sample, a) in train_samples(&f.scenes).into_iter().take(3) {
        std::fs::write(folder.join(format!("{}.png", a.key)), &sample.files["png"]).unwrap();
    }
    std::fs::write(folder.join("notes.txt"), "not an image").unwrap();
    let sources = DataSources {
        images: ImageSource::Folder(folder),
        ..DataSources::scenes(&f.scenes).unwrap()
    };
    let config = LoaderConfig::train(&model(), 4).with_prefetch(0);
    let batch = take(&mut loader(&f, &sources, config), 2).pop().unwrap();
    assert_eq!(batch.images.shape, [4, 3, 32, 32]);
}
