//! A deterministic synthetic vision–language data set: scenes of 1–4 coloured shapes with
//! captions, VQA questions, NLVR2 pairs, class labels, segmentation masks and a text corpus.
//!
//! Every item is a pure function of `(seed, split, index)`: item `k` is generated from its own
//! stream ([`Rng::derive_path`]) without generating items before it, so readers may generate
//! any slice of the data set, in any order, on any machine, and get the same bytes.
//!
//! ```
//! use vlbeit_core::scenes::{SceneConfig, SceneGenerator, Split};
//! let generator = SceneGenerator::new(SceneConfig { image_size: 64, seed: 7 }).unwrap();
//! let scene = generator.generate(Split::Train, 0);
//! assert_eq!(scene.pixels.len(), 64 * 64 * 3);
//! assert!(scene.captions.len() >= 2);
//! ```

mod formats;
mod language;
mod layout;
mod nlvr2;
mod questions;
mod render;
mod vocab;
mod writer;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use formats::{TaskFormat, write_task_format};
pub use layout::{Background, SceneObject, Texture, relation_holds};
pub use nlvr2::Nlvr2Item;
pub use questions::{ANNOTATORS, Question, QuestionType};
pub use render::shape_of_mask_class;
pub use vocab::{
    CLASS_NAMES, COLOUR_NAMES, Colour, HELD_OUT_COMBOS, RELATION_NAMES, Relation,
    SEGMENTATION_CLASSES, SHAPE_NAMES, Shape, Size, answer_vocabulary, is_held_out, seen_combos,
};
pub use writer::{
    ColourEntry, DATASET_FORMAT_VERSION, DatasetError, DatasetManifest, DatasetSpec, SplitCounts,
    SplitEntry, write_dataset,
};

use crate::rng::Rng;
use crate::shards::Sample;

/// A data-set split. Train, val and test differ only by seed stream; the compositional split
/// uses only [`HELD_OUT_COMBOS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
    Compositional,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Val, Split::Test, Split::Compositional];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::Compositional => "compositional",
        }
    }

    /// The colour–shape combinations this split's scenes and texts use.
    pub fn combos(self) -> Vec<(Colour, Shape)> {
        match self {
            Split::Compositional => HELD_OUT_COMBOS.to_vec(),
            _ => seen_combos(),
        }
    }

    fn stream(self) -> u64 {
        self as u64 + 1
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| {
                format!("unknown split `{s}` (expected train, val, test or compositional)")
            })
    }
}

/// Stream labels below a scene's path, one per concern, so that e.g. a new caption template
/// does not move any object.
const LAYOUT: u64 = 0;
const RENDER: u64 = 1;
const CAPTIONS: u64 = 2;
const QUESTIONS: u64 = 3;
const CORPUS_STREAM: u64 = 16;
const NLVR2_STREAM: u64 = 32;

/// Smallest and largest supported image side.
pub const MIN_IMAGE_SIZE: u32 = 32;
pub const MAX_IMAGE_SIZE: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneConfig {
    /// Side of the square image in pixels (64 for tests, up to 224 and beyond).
    pub image_size: u32,
    pub seed: u64,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            image_size: 64,
            seed: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("image_size {0} is out of range {MIN_IMAGE_SIZE}..={MAX_IMAGE_SIZE}")]
    ImageSize(u32),
}

/// Everything about one scene: what `KEY.json` holds, serialisable on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneAnnotation {
    pub key: String,
    pub split: Split,
    pub index: u64,
    pub image_size: u32,
    /// Classification label: index into [`CLASS_NAMES`] of the largest object's shape.
    pub label: usize,
    pub label_name: String,
    pub captions: Vec<String>,
    pub questions: Vec<Question>,
    pub objects: Vec<SceneObject>,
    pub background: Background,
}

/// A generated scene: its annotation plus the rendered image and mask.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSample {
    pub annotation: SceneAnnotation,
    /// RGB8, row-major, `image_size² · 3` bytes.
    pub pixels: Vec<u8>,
    /// `pixels` as PNG.
    pub png: Vec<u8>,
    /// One byte per pixel: 0 background, `shape index + 1` inside an object
    /// ([`SEGMENTATION_CLASSES`]).
    pub mask: Vec<u8>,
    /// `mask` as a grayscale PNG.
    pub mask_png: Vec<u8>,
}

impl std::ops::Deref for SceneSample {
    type Target = SceneAnnotation;
    fn deref(&self) -> &SceneAnnotation {
        &self.annotation
    }
}

impl SceneSample {
    /// The WebDataset sample: `KEY.png`, `KEY.json`, `KEY.mask.png`.
    pub fn to_sample(&self) -> Sample {
        let json = serde_json::to_vec(&self.annotation).expect("annotations serialise");
        let mut sample = Sample::new(self.annotation.key.clone());
        sample.files.insert("png".into(), self.png.clone());
        sample.files.insert("json".into(), json);
        sample
            .files
            .insert("mask.png".into(), self.mask_png.clone());
        sample
    }
}

/// The WebDataset key of a scene: `{split}-{index:07}` (no dots).
pub fn scene_key(split: Split, index: u64) -> String {
    format!("{}-{index:07}", split.name())
}

/// Generates scenes, NLVR2 items and corpus sentences from a seed.
#[derive(Debug, Clone)]
pub struct SceneGenerator {
    config: SceneConfig,
}

impl SceneGenerator {
    pub fn new(config: SceneConfig) -> Result<Self, SceneError> {
        if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&config.image_size) {
            return Err(SceneError::ImageSize(config.image_size));
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &SceneConfig {
        &self.config
    }

    fn rng(&self, split: Split, index: u64, purpose: u64) -> Rng {
        Rng::derive_path(self.config.seed, &[split.stream(), index, purpose])
    }

    /// The objects of scene `index` of `split`, without rendering it (cheap).
    pub fn objects(&self, split: Split, index: u64) -> Vec<SceneObject> {
        let mut rng = self.rng(split, index, LAYOUT);
        layout::sample_objects(&mut rng, self.config.image_size, &split.combos())
    }

    /// Scene `index` of `split`, rendered and annotated.
    pub fn generate(&self, split: Split, index: u64) -> SceneSample {
        let size = self.config.image_size;
        let combos = split.combos();
        let objects = self.objects(split, index);
        let mut render_rng = self.rng(split, index, RENDER);
        let background = Background::sample(&mut render_rng);
        let (pixels, mask) = render::render(&objects, &background, size, &mut render_rng);
        let captions = language::captions(
            &objects,
            &background,
            size,
            &mut self.rng(split, index, CAPTIONS),
        );
        let questions = questions::questions(
            &objects,
            &combos,
            size,
            &mut self.rng(split, index, QUESTIONS),
        );
        let label = largest(&objects).shape.index();
        let annotation = SceneAnnotation {
            key: scene_key(split, index),
            split,
            index,
            image_size: size,
            label,
            label_name: CLASS_NAMES[label].to_owned(),
            captions,
            questions,
            objects,
            background,
        };
        SceneSample {
            png: render::encode_png(&pixels, size, 3),
            mask_png: render::encode_png(&mask, size, 1),
            annotation,
            pixels,
            mask,
        }
    }

    /// NLVR2 item `index` of `split`, about two of the split's first `scene_pool` scenes
    /// (`scene_pool ≥ 1`; the two differ when it is ≥ 2).
    pub fn nlvr2_item(&self, split: Split, index: u64, scene_pool: u64) -> Nlvr2Item {
        let pool = scene_pool.max(1);
        let mut rng = Rng::derive_path(self.config.seed, &[NLVR2_STREAM + split.stream(), index]);
        let combos = split.combos();
        // Items 2k and 2k+1 get opposite labels in a random order: every prefix of the
        // item list is balanced, and the label is not predictable from the index.
        let pair_flip = Rng::derive_path(
            self.config.seed,
            &[NLVR2_STREAM + split.stream(), index / 2, u64::MAX],
        )
        .bernoulli(0.5);
        let mut label = index.is_multiple_of(2) == pair_flip;
        let mut attempt = 0;
        loop {
            let left_index = rng.below(pool);
            let mut right_index = rng.below(pool);
            if pool > 1 {
                while right_index == left_index {
                    right_index = rng.below(pool);
                }
            }
            let (left, right) = (
                self.objects(split, left_index),
                self.objects(split, right_index),
            );
            let size = self.config.image_size;
            // After many failed pairs (only plausible for tiny pools) accept either label
            // rather than loop forever; the label is still the statement's truth.
            if attempt >= 32 {
                label = !label;
            }
            if let Some(statement) =
                nlvr2::statement_with_label(&left, &right, &combos, size, label, &mut rng)
            {
                return Nlvr2Item {
                    id: format!("nlvr2-{}-{index:07}", split.name()),
                    split: split.name().to_owned(),
                    left: scene_key(split, left_index),
                    right: scene_key(split, right_index),
                    left_index,
                    right_index,
                    statement,
                    label,
                };
            }
            attempt += 1;
        }
    }

    /// Sentence `index` of the text-only corpus: the captions' language about scenes that
    /// are never rendered (and never use a held-out combination).
    pub fn corpus_sentence(&self, index: u64) -> String {
        let mut rng = Rng::derive_path(self.config.seed, &[CORPUS_STREAM, index]);
        let size = self.config.image_size;
        let objects = layout::sample_objects(&mut rng, size, &seen_combos());
        let background = Background::sample(&mut rng);
        language::any_caption(&objects, &background, size, &mut rng)
    }
}

/// The largest object (by area; the layout makes it unique by a clear margin).
pub fn largest(objects: &[SceneObject]) -> &SceneObject {
    objects
        .iter()
        .max_by(|a, b| a.scale.total_cmp(&b.scale))
        .expect("a scene has at least one object")
}
