//! Model and preprocessing configuration (DESIGN.md §4.1), serialized as JSON in `config.json`
//! of a checkpoint and in `manifest.json` of a bundle.
//!
//! Every loader validates: a bad value is reported with the name of its field, so that a user
//! who edits a config by hand learns which line to fix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used, with the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {} is not valid: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config {} is not valid: {source}", path.display())]
    InvalidIn {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("unknown model preset `{0}` (known: base, tiny)")]
    UnknownPreset(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The backbone family: VL-BEiT's mixture-of-modality-experts, or the standard Transformer
/// with one shared feed-forward network (the ablation of the seed's Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    #[default]
    Mome,
    Standard,
}

/// The shape of a VL-BEiT model. Field names are part of the checkpoint and bundle formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// MoME (default) or the standard-Transformer ablation.
    pub variant: Variant,
    /// Width D of every token state.
    pub hidden: usize,
    /// Number of MoME blocks.
    pub layers: usize,
    /// Attention heads; `hidden` must be divisible by it.
    pub heads: usize,
    /// FFN width is `mlp_ratio * hidden`.
    pub mlp_ratio: usize,
    /// Input resolution (square), in pixels.
    pub image_size: usize,
    /// Patch side P; `image_size` must be divisible by it.
    pub patch_size: usize,
    /// Image channels (RGB only).
    pub channels: usize,
    /// Text vocabulary size (must equal the tokenizer's).
    pub vocab_size: usize,
    /// Length of the text position table, [T_CLS] and [T_SEP] included; text-only inputs are
    /// truncated to it.
    pub max_text_len: usize,
    /// Text length of image–text pairs (captions, questions), [T_CLS] and [T_SEP] included.
    pub max_pair_text_len: usize,
    /// First layer whose fusion mode uses the vision–language expert (VLMo: the top 2 layers).
    pub vl_ffn_start: usize,
    /// Initial value of the per-channel layer-scale gammas.
    pub layer_scale_init: f64,
    pub layer_norm_eps: f64,
    /// Stochastic depth rate of the last block (linearly increasing from 0).
    pub drop_path: f64,
    /// Size of the visual tokenizer's codebook (MIM targets).
    pub visual_vocab: usize,
    /// Width E of the retrieval (ITC) projection.
    pub embed_dim: usize,
}

impl ModelConfig {
    /// VL-BEiT base (DESIGN.md §4.1): ViT-B/16 at 224 px with a 64k Unigram vocabulary.
    pub fn base() -> Self {
        Self {
            variant: Variant::Mome,
            hidden: 768,
            layers: 12,
            heads: 12,
            mlp_ratio: 4,
            image_size: 224,
            patch_size: 16,
            channels: 3,
            vocab_size: 64_000,
            max_text_len: 128,
            max_pair_text_len: 40,
            vl_ffn_start: 10,
            layer_scale_init: 0.1,
            layer_norm_eps: 1e-6,
            drop_path: 0.1,
            visual_vocab: 8192,
            embed_dim: 768,
        }
    }

    /// The tiny model of the tests and the CPU demo: 4 layers of width 128 on 64 px scenes.
    pub fn tiny() -> Self {
        Self {
            variant: Variant::Mome,
            hidden: 128,
            layers: 4,
            heads: 4,
            mlp_ratio: 4,
            image_size: 64,
            patch_size: 8,
            channels: 3,
            vocab_size: 2000,
            max_text_len: 32,
            max_pair_text_len: 32,
            vl_ffn_start: 3,
            layer_scale_init: 0.1,
            layer_norm_eps: 1e-6,
            drop_path: 0.1,
            visual_vocab: 512,
            embed_dim: 128,
        }
    }

    /// A preset by name: `base` or `tiny`.
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name {
            "base" => Ok(Self::base()),
            "tiny" => Ok(Self::tiny()),
            other => Err(ConfigError::UnknownPreset(other.to_owned())),
        }
    }

    /// Patches per image side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image (N); the image sequence is `1 + N` long with [I_CLS].
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    pub fn mlp_hidden(&self) -> usize {
        self.hidden * self.mlp_ratio
    }

    /// Whether layer `i` has a vision–language expert (fusion mode from `vl_ffn_start` up).
    pub fn has_vl_expert(&self, layer: usize) -> bool {
        self.variant == Variant::Mome && layer >= self.vl_ffn_start
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("hidden", self.hidden)?;
        positive("layers", self.layers)?;
        positive("heads", self.heads)?;
        positive("mlp_ratio", self.mlp_ratio)?;
        positive("image_size", self.image_size)?;
        positive("patch_size", self.patch_size)?;
        positive("visual_vocab", self.visual_vocab)?;
        positive("embed_dim", self.embed_dim)?;
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(invalid(
                "hidden",
                format!(
                    "hidden ({}) must be divisible by heads ({})",
                    self.hidden, self.heads
                ),
            ));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(invalid(
                "image_size",
                format!(
                    "image_size ({}) must be divisible by patch_size ({})",
                    self.image_size, self.patch_size
                ),
            ));
        }
        if self.channels != 3 {
            return Err(invalid(
                "channels",
                format!("only RGB images are supported (3), got {}", self.channels),
            ));
        }
        if self.vocab_size < crate::text::SPECIAL_TOKENS.len() + 1 {
            return Err(invalid(
                "vocab_size",
                format!(
                    "must hold the {} special tokens and at least one piece, got {}",
                    crate::text::SPECIAL_TOKENS.len(),
                    self.vocab_size
                ),
            ));
        }
        if self.max_text_len < 3 {
            return Err(invalid(
                "max_text_len",
                format!(
                    "must fit [T_CLS], one token and [T_SEP] (>= 3), got {}",
                    self.max_text_len
                ),
            ));
        }
        if self.max_pair_text_len < 3 || self.max_pair_text_len > self.max_text_len {
            return Err(invalid(
                "max_pair_text_len",
                format!(
                    "must be between 3 and max_text_len ({}), got {}",
                    self.max_text_len, self.max_pair_text_len
                ),
            ));
        }
        if self.vl_ffn_start > self.layers {
            return Err(invalid(
                "vl_ffn_start",
                format!(
                    "must be at most layers ({}), got {}",
                    self.layers, self.vl_ffn_start
                ),
            ));
        }
        if !(self.layer_scale_init.is_finite() && self.layer_scale_init >= 0.0) {
            return Err(invalid(
                "layer_scale_init",
                format!(
                    "must be a finite number >= 0, got {}",
                    self.layer_scale_init
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(invalid(
                "layer_norm_eps",
                format!("must be a finite number > 0, got {}", self.layer_norm_eps),
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(invalid(
                "drop_path",
                format!("must be in [0, 1), got {}", self.drop_path),
            ));
        }
        Ok(())
    }

    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads, parses and validates `path`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| ConfigError::InvalidIn {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Ok(config)
    }
}

fn positive(field: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(field, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// Resampling filter of the resize step. Both are antialiased (the filter support grows with
/// the downscaling factor) exactly as Pillow's float resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    #[default]
    Bicubic,
    Bilinear,
}

/// How an image becomes `pixel_values`: resize the short side to `resize` (torchvision
/// `Resize(int)`), center-crop `image_size`, scale to [0, 1], normalize with `mean`/`std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Side of the square crop fed to the model (= `ModelConfig::image_size`).
    pub image_size: u32,
    /// Target of the short side before the center crop; `>= image_size`.
    pub resize: u32,
    pub interpolation: Interpolation,
    /// Per-channel mean, applied after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation, applied after scaling to [0, 1].
    pub std: [f32; 3],
    /// Decompression-bomb guard: images whose header declares more pixels fail before any
    /// pixel memory is allocated (Pillow's default limit).
    pub max_image_pixels: u64,
}

impl PreprocessConfig {
    /// BEiT v2 / VLMo evaluation preprocessing: bicubic, no crop margin, mean = std = 0.5.
    pub fn for_image_size(image_size: u32) -> Self {
        Self {
            image_size,
            resize: image_size,
            interpolation: Interpolation::Bicubic,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
            max_image_pixels: 89_478_485,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.image_size == 0 {
            return Err(invalid("image_size", "must be greater than 0"));
        }
        if self.resize < self.image_size {
            return Err(invalid(
                "resize",
                format!(
                    "the short side ({}) must not be smaller than the crop image_size ({})",
                    self.resize, self.image_size
                ),
            ));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(invalid(
                "std",
                format!("every entry must be finite and > 0, got {:?}", self.std),
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(invalid(
                "mean",
                format!("every entry must be finite, got {:?}", self.mean),
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(invalid("max_image_pixels", "must be greater than 0"));
        }
        Ok(())
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| ConfigError::InvalidIn {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Ok(config)
    }
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self::for_image_size(224)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_match_the_design_table() {
        let base = ModelConfig::base();
        base.validate().unwrap();
        assert_eq!(base.num_patches(), 196);
        assert_eq!(base.head_dim(), 64);
        assert!(base.has_vl_expert(10) && !base.has_vl_expert(9));
        let tiny = ModelConfig::tiny();
        tiny.validate().unwrap();
        assert_eq!(tiny.grid(), 8);
        assert_eq!(tiny.vl_ffn_start, tiny.layers - 1);
        assert!(ModelConfig::preset("huge").is_err());
    }

    #[test]
    fn standard_variant_has_no_vl_expert() {
        let mut c = ModelConfig::tiny();
        c.variant = Variant::Standard;
        assert!(!c.has_vl_expert(c.layers - 1));
    }

    #[test]
    fn validation_names_the_bad_field() {
        type Mutation = fn(&mut ModelConfig);
        let cases: Vec<(&str, Mutation)> = vec![
            ("image_size", |c| c.image_size = 65),
            ("hidden", |c| c.heads = 3),
            ("vl_ffn_start", |c| c.vl_ffn_start = 5),
            ("channels", |c| c.channels = 1),
            ("max_pair_text_len", |c| c.max_pair_text_len = 64),
            ("drop_path", |c| c.drop_path = 1.0),
            ("layer_norm_eps", |c| c.layer_norm_eps = 0.0),
            ("patch_size", |c| c.patch_size = 0),
        ];
        for (field, mutate) in cases {
            let mut c = ModelConfig::tiny();
            mutate(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an error on `{field}`, got {other:?}"),
            }
        }
    }

    #[test]
    fn json_round_trips_and_missing_or_unknown_fields_are_named() {
        let c = ModelConfig::tiny();
        let text = serde_json::to_string_pretty(&c).unwrap();
        assert_eq!(ModelConfig::from_json(&text).unwrap(), c);

        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("hidden");
        let err = ModelConfig::from_json(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains("missing field `hidden`"), "{err}");

        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["hiden"] = 3.into();
        let err = ModelConfig::from_json(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains("hiden"), "{err}");

        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["layers"] = "four".into();
        let err = ModelConfig::from_json(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn load_names_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut c = ModelConfig::tiny();
        c.heads = 7;
        std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
        let msg = format!("{:#}", ModelConfig::load(&path).unwrap_err());
        assert!(msg.contains("config.json"), "{msg}");
        let err = ModelConfig::load(&path).unwrap_err();
        let ConfigError::InvalidIn { source, .. } = err else {
            panic!("expected InvalidIn")
        };
        assert!(matches!(
            *source,
            ConfigError::Invalid {
                field: "hidden",
                ..
            }
        ));

        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            ModelConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            ModelConfig::load(&dir.path().join("missing.json")),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn preprocess_validation() {
        PreprocessConfig::default().validate().unwrap();
        let mut p = PreprocessConfig::for_image_size(64);
        p.resize = 32;
        assert!(matches!(
            p.validate(),
            Err(ConfigError::Invalid {
                field: "resize",
                ..
            })
        ));
        let mut p = PreprocessConfig::for_image_size(64);
        p.std[1] = 0.0;
        assert!(matches!(
            p.validate(),
            Err(ConfigError::Invalid { field: "std", .. })
        ));
    }
}
