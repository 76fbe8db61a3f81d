//! Pretraining data: where images, texts and image–text pairs come from ([`DataSources`]), how
//! they are augmented ([`AugmentConfig`]), and the [`Loader`] that turns them into steps of equal
//! numbers of images, texts and pairs (DESIGN.md §4.7).
//!
//! Everything random is a function of `(seed, task, epoch, shard, item)`, so a loader resumed
//! from a saved [`LoaderState`] yields exactly the batches an uninterrupted run would have, and
//! a background thread may prepare batches without changing their order.
//!
//! ```no_run
//! use vlbeit_core::{ModelConfig, PreprocessConfig};
//! use vlbeit_core::text::TextTokenizer;
//! use vlbeit_train::data::{DataSources, Loader, LoaderConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = ModelConfig::tiny();
//! let sources = DataSources::scenes("data/scenes")?;
//! let tokenizer = TextTokenizer::load("tokenizer.json".as_ref())?;
//! let pre = PreprocessConfig::for_image_size(model.image_size as u32);
//! let mut loader = Loader::new(&sources, tokenizer, pre, LoaderConfig::train(&model, 32))?;
//! let step = loader.next().unwrap()?;
//! assert_eq!(step.images.shape[0], step.texts.batch);
//! let saved = loader.state(); // store in the checkpoint; `Loader::resume` continues from it
//! # Ok(()) }
//! ```

mod augment;
mod loader;
mod process;
mod sources;
mod stream;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use vlbeit_core::preprocess::PreprocessError;
use vlbeit_core::scenes::DatasetError;
use vlbeit_core::shards::ShardError;
use vlbeit_core::text::{TextBatch, TextError};

pub use augment::{AugmentConfig, ColorJitter, random_resized_crop, swap_left_right};
pub use loader::{Loader, LoaderConfig, LoaderState};
pub use sources::{DataSources, ImageSource, TextSlice};
pub use stream::StreamState;

/// Images as `pixel_values`: one contiguous buffer in `shape` = `[batch, 3, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    pub pixels: Vec<f32>,
    pub shape: [usize; 4],
}

/// Image–text pairs for MVLM: row `i` of `images` goes with row `i` of `text`.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    pub images: ImageBatch,
    /// Ids and attention mask, at most `max_pair_text_len` long.
    pub text: TextBatch,
    /// The captions as fed to the tokenizer (after the flip's left/right swap).
    pub captions: Vec<String>,
}

/// One pretraining step: the same number of images (MIM), texts (MLM) and pairs (MVLM).
/// Masks are not applied here: see [`crate::masking`].
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainBatch {
    /// Index of this step since the start of the run (0-based); a handy stream label for
    /// the step's masking generator.
    pub step: u64,
    pub images: ImageBatch,
    /// Ids and attention mask, at most `max_text_len` long.
    pub texts: TextBatch,
    pub pairs: PairBatch,
}

impl PretrainBatch {
    /// Items per task.
    pub fn batch_size(&self) -> usize {
        self.texts.batch
    }
}

/// An image the loader skipped, as passed to the bad-image callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage {
    /// Shard path and sample key, or the image file's path.
    pub source: String,
    pub reason: String,
}

/// Receives every skipped image (the default prints a line to stderr).
pub type BadImageCallback = Arc<dyn Fn(&BadImage) + Send + Sync>;

/// Images decoded so far (images and pairs together) and how many of them were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ImageCounts {
    pub seen: u64,
    pub bad: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{what} path {path} does not exist")]
    Missing { what: &'static str, path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no usable {what} in {}", list(.paths))]
    Empty {
        what: &'static str,
        paths: Vec<PathBuf>,
    },
    #[error(
        "{bad} of {seen} images were unreadable (more than {:.1}%); last: {last}",
        .max_fraction * 100.0
    )]
    TooManyBadImages {
        bad: u64,
        seen: u64,
        max_fraction: f64,
        last: String,
    },
    #[error("cannot resume: {0}")]
    StateMismatch(String),
    #[error("invalid loader config: {0}")]
    Config(String),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("the data loader thread stopped unexpectedly")]
    LoaderStopped,
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(none given)".to_owned();
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}
