//! The pretraining loader: steps of equal numbers of images, texts and pairs, resumable
//! exactly, prepared on a background thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use vlbeit_core::preprocess::Preprocessor;
use vlbeit_core::text::{Padding, TextTokenizer};
use vlbeit_core::{ModelConfig, PreprocessConfig};

use super::process::Producer;
use super::sources::{list_images, load_lines};
use super::stream::{Stream, StreamState, Units};
use super::{
    AugmentConfig, BadImage, BadImageCallback, DataError, DataSources, ImageCounts, ImageSource,
    PretrainBatch,
};

/// Loader settings. [`LoaderConfig::train`] for pretraining, [`LoaderConfig::eval`] for a
/// single unshuffled, unaugmented pass over held-out data.
#[derive(Clone)]
pub struct LoaderConfig {
    /// Items per task per step (images = texts = pairs = `batch_size`).
    pub batch_size: usize,
    pub seed: u64,
    pub max_text_len: usize,
    pub max_pair_text_len: usize,
    /// `Longest` (default) pads each step to its longest text; `MaxLen` gives fixed shapes.
    pub padding: Padding,
    /// `None`: the evaluation path (resize + center crop, as serving).
    pub augment: Option<AugmentConfig>,
    pub shuffle: bool,
    /// Stop after one epoch of the shortest stream instead of cycling; the last step may be
    /// smaller (still equal counts per task).
    pub single_pass: bool,
    /// Steps prepared ahead on a background thread; 0 prepares them on the caller's thread.
    pub prefetch: usize,
    /// Fail when more than this share of the images seen were unreadable...
    pub max_bad_fraction: f64,
    /// ...once at least this many were seen (a few bad files early on are no verdict).
    pub min_images_before_bad_check: u64,
    pub on_bad_image: BadImageCallback,
}

impl std::fmt::Debug for LoaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoaderConfig")
            .field("batch_size", &self.batch_size)
            .field("seed", &self.seed)
            .field("augment", &self.augment)
            .field("shuffle", &self.shuffle)
            .field("single_pass", &self.single_pass)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl LoaderConfig {
    pub fn train(model: &ModelConfig, batch_size: usize) -> Self {
        Self {
            batch_size,
            seed: 0,
            max_text_len: model.max_text_len,
            max_pair_text_len: model.max_pair_text_len,
            padding: Padding::Longest,
            augment: Some(AugmentConfig::default()),
            shuffle: true,
            single_pass: false,
            prefetch: 2,
            max_bad_fraction: 0.01,
            min_images_before_bad_check: 100,
            on_bad_image: Arc::new(|bad: &BadImage| {
                eprintln!("skipping unreadable image {}: {}", bad.source, bad.reason)
            }),
        }
    }

    pub fn eval(model: &ModelConfig, batch_size: usize) -> Self {
        Self {
            augment: None,
            shuffle: false,
            single_pass: true,
            ..Self::train(model, batch_size)
        }
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_augment(mut self, augment: Option<AugmentConfig>) -> Self {
        self.augment = augment;
        self
    }

    pub fn with_prefetch(mut self, steps: usize) -> Self {
        self.prefetch = steps;
        self
    }

    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    pub fn with_bad_image_callback(mut self, callback: BadImageCallback) -> Self {
        self.on_bad_image = callback;
        self
    }
}

/// Where a loader stands after the last step it returned: store it in a checkpoint and pass
/// it to [`Loader::resume`]. No generator state is needed: every random choice derives from
/// the seed and the positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub seed: u64,
    /// Steps returned so far.
    pub step: u64,
    pub images: StreamState,
    pub texts: StreamState,
    pub pairs: StreamState,
    pub image_counts: ImageCounts,
    /// Units (shards, or 1 for a folder or text files) per stream, to refuse resuming on data
    /// that changed shape.
    pub units: [usize; 3],
}

impl LoaderState {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the loader state serialises")
    }

    pub fn from_json(text: &str) -> Result<Self, DataError> {
        serde_json::from_str(text).map_err(|e| DataError::StateMismatch(e.to_string()))
    }
}

/// Task labels of the three streams (stream paths of [`vlbeit_core::rng::Rng::derive_path`]).
pub(crate) const IMAGES: u64 = 1;
pub(crate) const TEXTS: u64 = 2;
pub(crate) const PAIRS: u64 = 3;

type Step = Result<(PretrainBatch, LoaderState), DataError>;

enum Engine {
    Inline(Box<Producer>),
    Background {
        receiver: Option<Receiver<Step>>,
        thread: Option<JoinHandle<()>>,
    },
    Finished,
}

/// An endless (or, with `single_pass`, finite) iterator of [`PretrainBatch`]es. After an
/// error it returns `None`.
pub struct Loader {
    engine: Engine,
    state: LoaderState,
}

impl Loader {
    /// A loader at the start of the data. Fails before reading any image when a path is
    /// missing or the text files hold no line.
    pub fn new(
        sources: &DataSources,
        tokenizer: TextTokenizer,
        preprocess: PreprocessConfig,
        config: LoaderConfig,
    ) -> Result<Self, DataError> {
        Self::start(sources, tokenizer, preprocess, config, None)
    }

    /// A loader that continues after the step `state` was saved at.
    pub fn resume(
        sources: &DataSources,
        tokenizer: TextTokenizer,
        preprocess: PreprocessConfig,
        config: LoaderConfig,
        state: LoaderState,
    ) -> Result<Self, DataError> {
        Self::start(sources, tokenizer, preprocess, config, Some(state))
    }

    fn start(
        sources: &DataSources,
        tokenizer: TextTokenizer,
        preprocess: PreprocessConfig,
        config: LoaderConfig,
        saved: Option<LoaderState>,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        sources.check()?;
        let images = match &sources.images {
            ImageSource::Shards(shards) => Units::Shards(shards.clone()),
            ImageSource::Folder(dir) => Units::Files(list_images(dir)?),
        };
        let texts = Units::Lines(load_lines(&sources.texts, sources.text_slice)?);
        let pairs = Units::Shards(sources.pairs.clone());
        let fresh = |units: &Units| match units {
            Units::Shards(s) => s.len(),
            _ => 1,
        };
        let units = [fresh(&images), fresh(&texts), fresh(&pairs)];
        let state = match saved {
            None => LoaderState {
                seed: config.seed,
                step: 0,
                images: StreamState::default(),
                texts: StreamState::default(),
                pairs: StreamState::default(),
                image_counts: ImageCounts::default(),
                units,
            },
            Some(state) => {
                if state.seed != config.seed {
                    return Err(DataError::StateMismatch(format!(
                        "the saved loader used seed {}, the config says {}",
                        state.seed, config.seed
                    )));
                }
                if state.units != units {
                    return Err(DataError::StateMismatch(format!(
                        "the data changed: units (images, texts, pairs) were {:?}, now {units:?}",
                        state.units
                    )));
                }
                state
            }
        };
        let (seed, shuffle) = (config.seed, config.shuffle);
        let producer = Producer {
            images: Stream::new(images, seed, IMAGES, shuffle, state.images),
            texts: Stream::new(texts, seed, TEXTS, shuffle, state.texts),
            pairs: Stream::new(pairs, seed, PAIRS, shuffle, state.pairs),
            tokenizer,
            preprocessor: Preprocessor::new(preprocess)?,
            step: state.step,
            counts: state.image_counts,
            units,
            config,
            last_bad: None,
        };
        let engine = if producer.config.prefetch == 0 {
            Engine::Inline(Box::new(producer))
        } else {
            let (sender, receiver) = sync_channel(producer.config.prefetch);
            let thread = std::thread::Builder::new()
                .name("vlbeit-data".into())
                .spawn(move || produce(producer, sender))
                .map_err(|source| DataError::Io {
                    path: "<data loader thread>".into(),
                    source,
                })?;
            Engine::Background {
                receiver: Some(receiver),
                thread: Some(thread),
            }
        };
        Ok(Self { engine, state })
    }

    /// The position after the last returned step.
    pub fn state(&self) -> LoaderState {
        self.state.clone()
    }

    /// Images decoded and skipped up to the last returned step.
    pub fn image_counts(&self) -> ImageCounts {
        self.state.image_counts
    }
}

fn produce(mut producer: Producer, sender: SyncSender<Step>) {
    loop {
        let step = match producer.next_step() {
            Ok(Some(batch)) => Ok((batch, producer.state())),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let failed = step.is_err();
        // A closed channel means the loader was dropped: stop quietly.
        if sender.send(step).is_err() || failed {
            return;
        }
    }
}

impl Iterator for Loader {
    type Item = Result<PretrainBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let step = match &mut self.engine {
            Engine::Finished => return None,
            Engine::Inline(producer) => match producer.next_step() {
                Ok(Some(batch)) => Ok((batch, producer.state())),
                Ok(None) => {
                    self.engine = Engine::Finished;
                    return None;
                }
                Err(e) => Err(e),
            },
            Engine::Background { receiver, .. } => {
                let received = receiver.as_ref().expect("present until drop").recv();
                match received {
                    Ok(step) => step,
                    Err(_) => {
                        // The producer ended: a single pass is over, unless it panicked.
                        let panicked = thread_panicked(&mut self.engine);
                        self.engine = Engine::Finished;
                        return panicked.then_some(Err(DataError::LoaderStopped));
                    }
                }
            }
        };
        match step {
            Ok((batch, state)) => {
                self.state = state;
                Some(Ok(batch))
            }
            Err(e) => {
                self.engine = Engine::Finished;
                Some(Err(e))
            }
        }
    }
}

fn thread_panicked(engine: &mut Engine) -> bool {
    if let Engine::Background { thread, .. } = engine
        && let Some(handle) = thread.take()
    {
        return handle.join().is_err();
    }
    false
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Engine::Background { receiver, thread } = &mut self.engine {
            // Closing the channel first lets a producer blocked on `send` exit.
            drop(receiver.take());
            if let Some(handle) = thread.take() {
                let _ = handle.join();
            }
        }
    }
}
