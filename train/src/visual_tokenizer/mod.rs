//! The visual tokenizer that turns images into MIM / MVLM-image targets (DESIGN §4.6).
//!
//! BEiT v2's VQ-KD, trained by the project because its weights cannot be downloaded: a small
//! ViT encoder → Linear–Tanh–Linear to a 32-d code → L2-normalize → nearest code of an
//! L2-normalized codebook ([`quantizer`]: k-means init, EMA, commitment, straight-through,
//! dead-code re-seeding) → a small decoder that regresses a teacher's patch features with
//! VQ-KD's cosine loss. The default teacher is HOG ([`hog`], MaskFeat); [`Teacher`] is the
//! seam for an image encoder of ours later.
//!
//! Pretraining loads a trained tokenizer with [`VisualTokenizer::load_for_model`] and calls
//! [`VisualTokenizer::tokenize`]: `pixels [B, 3, H, W]` → ids `[B, N]`, row-major over the
//! patch grid like the model's patches.

pub mod hog;
mod quantizer;
mod train;
mod vit;
mod vqkd;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Tensor;
use vlbeit_core::ModelConfig;

pub use hog::HogConfig;
pub use train::{TrainOptions, TrainingSummary, load_scene_images, train};
pub use vit::VitConfig;
pub use vqkd::{CONFIG_FILE, StepOutput, VisualTokenizer, WEIGHTS_FILE};

/// The shape and training constants of a tokenizer; saved in `visual_tokenizer.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisualTokenizerConfig {
    /// Input side in pixels; must equal the model's `image_size`.
    pub image_size: usize,
    /// Patch side; must equal the model's `patch_size` so that ids line up with patches.
    pub patch_size: usize,
    /// Codes K; must equal the model's `visual_vocab` (the MIM head's output size).
    pub codebook_size: usize,
    /// Width of the L2-normalized code vectors (32 in BEiT v2: low-dimensional codes keep
    /// the codebook in use).
    pub code_dim: usize,
    pub encoder: VitConfig,
    pub decoder: VitConfig,
    pub teacher: TeacherConfig,
    /// EMA decay of the codebook statistics.
    pub ema_decay: f64,
    /// β of the commitment loss.
    pub commitment: f64,
    /// Training steps a code may go unused before it is re-seeded.
    pub dead_code_steps: usize,
}

impl VisualTokenizerConfig {
    /// A tokenizer for `model`: for small images a 0.19 M-parameter shape that trains 1 000
    /// steps of batch 32 in about two minutes on one CPU core; a wider one for base-size inputs.
    pub fn for_model(model: &ModelConfig) -> Self {
        let (width, depth) = if model.image_size <= 64 {
            (64, 2)
        } else {
            (256, 6)
        };
        Self {
            image_size: model.image_size,
            patch_size: model.patch_size,
            codebook_size: model.visual_vocab,
            code_dim: 32,
            encoder: VitConfig {
                width,
                depth,
                heads: width / 32,
                mlp_ratio: 4,
            },
            decoder: VitConfig {
                width,
                depth: 1,
                heads: width / 32,
                mlp_ratio: 4,
            },
            teacher: TeacherConfig::Hog(HogConfig::default()),
            ema_decay: 0.99,
            commitment: 0.25,
            dead_code_steps: 50,
        }
    }

    /// Patches per image side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image (N).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), VisualTokenizerError> {
        let invalid = |field: &'static str, reason: String| {
            Err(VisualTokenizerError::Invalid { field, reason })
        };
        for (field, value) in [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("codebook_size", self.codebook_size),
            ("code_dim", self.code_dim),
        ] {
            if value == 0 {
                return invalid(field, "must be greater than 0".into());
            }
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return invalid(
                "image_size",
                format!(
                    "{} is not divisible by patch_size {}",
                    self.image_size, self.patch_size
                ),
            );
        }
        if let Err(reason) = self.encoder.validate("encoder") {
            return invalid("encoder", reason);
        }
        if let Err(reason) = self.decoder.validate("decoder") {
            return invalid("decoder", reason);
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return invalid(
                "ema_decay",
                format!("must be in [0, 1), got {}", self.ema_decay),
            );
        }
        if !(self.commitment.is_finite() && self.commitment >= 0.0) {
            return invalid(
                "commitment",
                format!("must be >= 0, got {}", self.commitment),
            );
        }
        if self.dead_code_steps == 0 {
            return invalid("dead_code_steps", "must be greater than 0".into());
        }
        let TeacherConfig::Hog(hog) = &self.teacher;
        if hog.bins == 0
            || hog.cells_per_side == 0
            || !self.patch_size.is_multiple_of(hog.cells_per_side)
        {
            return invalid(
                "teacher",
                format!(
                    "HOG needs bins > 0 and cells_per_side dividing patch_size {}, got {hog:?}",
                    self.patch_size
                ),
            );
        }
        Ok(())
    }

    /// The fields a model relies on: the error names the first that differs from `model`.
    pub fn check_model(&self, model: &ModelConfig) -> Result<(), (&'static str, String, String)> {
        for (field, ours, theirs, model_field) in [
            (
                "codebook_size",
                self.codebook_size,
                model.visual_vocab,
                "visual_vocab",
            ),
            (
                "patch_size",
                self.patch_size,
                model.patch_size,
                "patch_size",
            ),
            (
                "image_size",
                self.image_size,
                model.image_size,
                "image_size",
            ),
        ] {
            if ours != theirs {
                return Err((
                    field,
                    ours.to_string(),
                    format!("{theirs} (the model's {model_field})"),
                ));
            }
        }
        Ok(())
    }
}

/// Which features the decoder learns to regress. Serialized in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherConfig {
    /// Histograms of oriented gradients per patch (MaskFeat).
    Hog(HogConfig),
}

impl TeacherConfig {
    /// The teacher for images cut into `patch_size` patches.
    pub fn build(&self, patch_size: usize) -> Box<dyn Teacher> {
        match self {
            Self::Hog(config) => Box::new(HogTeacher {
                config: config.clone(),
                patch_size: patch_size as i64,
            }),
        }
    }
}

/// A source of per-patch target features. Training only: a trained tokenizer needs no teacher.
pub trait Teacher {
    /// Features per patch (F).
    fn dim(&self) -> usize;
    /// `pixels [B, 3, H, W]` → `[B, N, F]`, patches row-major; no gradient needed.
    fn targets(&self, pixels: &Tensor) -> Tensor;
}

struct HogTeacher {
    config: HogConfig,
    patch_size: i64,
}

impl Teacher for HogTeacher {
    fn dim(&self) -> usize {
        self.config.dim()
    }

    fn targets(&self, pixels: &Tensor) -> Tensor {
        tch::no_grad(|| hog::hog_features(pixels, self.patch_size, &self.config))
    }
}

/// Why a tokenizer could not be built, loaded, saved or run.
#[derive(Debug, thiserror::Error)]
pub enum VisualTokenizerError {
    #[error("visual tokenizer config field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(
        "visual tokenizer {} does not fit the model: `{field}` is {found}, expected {expected}",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::checkpoint::CheckpointError),
    #[error("{} is not a valid visual tokenizer config: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
    #[error("pixels have shape {found:?}, expected [batch, 3, {size}, {size}]")]
    Shape { found: Vec<i64>, size: usize },
}
