//! The VQ-KD tokenizer itself: encoder → quantizer → decoder, its training step, `tokenize`,
//! and its directory format (`visual_tokenizer.json` + `visual_tokenizer.safetensors`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};
use vlbeit_core::ModelConfig;

use super::quantizer::{Quantizer, QuantizerSettings, l2_normalize};
use super::vit::{TaskLayer, Transformer};
use super::{TrainingSummary, VisualTokenizerConfig, VisualTokenizerError};

/// The config file of a tokenizer directory.
pub const CONFIG_FILE: &str = "visual_tokenizer.json";
/// The weights file of a tokenizer directory (tch `VarStore::save`).
pub const WEIGHTS_FILE: &str = "visual_tokenizer.safetensors";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    format_version: u32,
    config: VisualTokenizerConfig,
    training: Option<TrainingSummary>,
}

/// What one training step computed. `loss` carries the graph; the others are detached.
#[derive(Debug)]
pub struct StepOutput {
    /// Reconstruction + commitment.
    pub loss: Tensor,
    /// `1 − cos(decoder(codes), teacher)`, averaged over patches with a teacher direction.
    pub reconstruction: Tensor,
    pub commitment: Tensor,
    /// The codes chosen, `[B, N]`.
    pub ids: Tensor,
}

/// A VQ-KD visual tokenizer with its weights.
#[derive(Debug)]
pub struct VisualTokenizer {
    vs: nn::VarStore,
    config: VisualTokenizerConfig,
    patch_embed: nn::Conv2D,
    encoder: Transformer,
    encode_task: TaskLayer,
    quantizer: Quantizer,
    decode_in: nn::Linear,
    decoder: Transformer,
    decode_task: TaskLayer,
    summary: Option<TrainingSummary>,
}

impl VisualTokenizer {
    /// A freshly initialized tokenizer (random weights, codebook not yet k-means-initialized).
    pub fn new(
        config: VisualTokenizerConfig,
        device: Device,
    ) -> Result<Self, VisualTokenizerError> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (enc, dec) = (&config.encoder, &config.decoder);
        let tokens = config.num_patches() as i64;
        let code_dim = config.code_dim as i64;
        let teacher_dim = config.teacher.build(config.patch_size).dim() as i64;
        let patch = config.patch_size as i64;
        let conv = nn::ConvConfig {
            stride: patch,
            ..Default::default()
        };
        let encoder_path = &root / "encoder";
        let decoder_path = &root / "decoder";
        let quantizer = Quantizer::new(
            &(&root / "quantizer"),
            QuantizerSettings {
                codebook_size: config.codebook_size as i64,
                code_dim,
                decay: config.ema_decay,
                commitment: config.commitment,
                dead_after_steps: config.dead_code_steps as i64,
            },
        );
        Ok(Self {
            patch_embed: nn::conv2d(&encoder_path / "patch", 3, enc.width as i64, patch, conv),
            encoder: Transformer::new(&encoder_path, enc, tokens),
            encode_task: TaskLayer::new(&(&encoder_path / "task"), enc.width as i64, code_dim),
            quantizer,
            decode_in: nn::linear(
                &decoder_path / "input",
                code_dim,
                dec.width as i64,
                Default::default(),
            ),
            decoder: Transformer::new(&decoder_path, dec, tokens),
            decode_task: TaskLayer::new(&(&decoder_path / "task"), dec.width as i64, teacher_dim),
            summary: None,
            config,
            vs,
        })
    }

    pub fn config(&self) -> &VisualTokenizerConfig {
        &self.config
    }

    /// The weights (the optimizer is built over its trainable variables).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// How the saved tokenizer was trained, if it was.
    pub fn training_summary(&self) -> Option<&TrainingSummary> {
        self.summary.as_ref()
    }

    pub fn set_training_summary(&mut self, summary: TrainingSummary) {
        self.summary = Some(summary);
    }

    /// The codebook `[K, code_dim]`, unit rows.
    pub fn codebook(&self) -> Tensor {
        self.quantizer.codebook().detach().copy()
    }

    /// Unit code vectors before quantization, `[B, N, code_dim]`.
    fn encode(&self, pixels: &Tensor) -> Tensor {
        let patches = pixels
            .apply(&self.patch_embed)
            .flatten(2, 3)
            .transpose(1, 2);
        l2_normalize(&self.encode_task.forward(&self.encoder.forward(&patches)))
    }

    /// Visual token ids of `pixels [B, 3, H, W]` (f32, normalized as the model's input):
    /// `[B, N]` i64, row-major over the patch grid. Deterministic; no gradient.
    pub fn tokenize(&self, pixels: &Tensor) -> Result<Tensor, VisualTokenizerError> {
        let size = self.config.image_size;
        let shape = pixels.size();
        if shape.len() != 4 || shape[1] != 3 || shape[2] != size as i64 || shape[3] != size as i64 {
            return Err(VisualTokenizerError::Shape { found: shape, size });
        }
        Ok(tch::no_grad(|| {
            let pixels = pixels.to_device(self.device()).to_kind(Kind::Float);
            let z = self.encode(&pixels);
            let (b, n, c) = z.size3().expect("encoder output is [B, N, C]");
            self.quantizer.nearest(&z.view([b * n, c])).view([b, n])
        }))
    }

    /// One training forward pass: quantizes (k-means on the first call, EMA updates of the
    /// codebook), decodes, and scores the reconstruction of `targets [B, N, F]` by cosine.
    pub fn step(&mut self, pixels: &Tensor, targets: &Tensor) -> StepOutput {
        let z = self.encode(pixels);
        let (b, n, c) = z.size3().expect("encoder output is [B, N, C]");
        let quantized = self.quantizer.forward(&z.view([b * n, c]), true);
        let codes = quantized.straight_through.view([b, n, c]);
        let decoded = self
            .decode_task
            .forward(&self.decoder.forward(&codes.apply(&self.decode_in)));
        let cosine = Tensor::cosine_similarity(&decoded, targets, -1, 1e-8);
        // HOG of a flat patch is the zero vector: it has no direction to regress and would
        // only add a constant 1 to the loss, so those patches are left out of the mean.
        let has_direction = targets
            .norm_scalaropt_dim(2, [-1i64].as_slice(), false)
            .gt(1e-3)
            .to_kind(Kind::Float);
        let reconstruction = ((cosine.neg() + 1.0) * &has_direction).sum(Kind::Float)
            / has_direction.sum(Kind::Float).clamp_min(1.0);
        let loss = &reconstruction + &quantized.commitment_loss;
        StepOutput {
            loss,
            reconstruction: reconstruction.detach(),
            commitment: quantized.commitment_loss.detach(),
            ids: quantized.ids.view([b, n]),
        }
    }

    /// Writes `dir/visual_tokenizer.json` and `dir/visual_tokenizer.safetensors` atomically:
    /// into a sibling temp directory, synced, then renamed. An existing `dir` is replaced only
    /// if it is empty or holds a tokenizer.
    pub fn save(&self, dir: &Path) -> Result<(), VisualTokenizerError> {
        if dir.exists() && !replaceable(dir) {
            return Err(VisualTokenizerError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and holds something other than a visual tokenizer; refusing to replace it",
                ),
            });
        }
        crate::checkpoint::write_dir_atomically(dir, |temp| self.write_files(temp))
    }

    fn write_files(&self, dir: &Path) -> Result<(), VisualTokenizerError> {
        let config_path = dir.join(CONFIG_FILE);
        let file = ConfigFile {
            format_version: FORMAT_VERSION,
            config: self.config.clone(),
            training: self.summary.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("the config serializes");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VisualTokenizerError::Io { path, source }
        };
        std::fs::write(&config_path, json).map_err(io(&config_path))?;
        let weights = dir.join(WEIGHTS_FILE);
        self.vs
            .save(&weights)
            .map_err(|source| VisualTokenizerError::Weights {
                path: weights.clone(),
                source,
            })
    }

    /// Loads a tokenizer directory written by [`VisualTokenizer::save`].
    pub fn load(dir: &Path, device: Device) -> Result<Self, VisualTokenizerError> {
        Self::load_checked(dir, None, device)
    }

    /// Loads a tokenizer for `model`: its codebook size must equal `visual_vocab` and its
    /// patch and image sizes the model's; otherwise the error names the field.
    pub fn load_for_model(
        dir: &Path,
        model: &ModelConfig,
        device: Device,
    ) -> Result<Self, VisualTokenizerError> {
        Self::load_checked(dir, Some(model), device)
    }

    fn load_checked(
        dir: &Path,
        model: Option<&ModelConfig>,
        device: Device,
    ) -> Result<Self, VisualTokenizerError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| VisualTokenizerError::Io {
            path: path.clone(),
            source,
        })?;
        let file: ConfigFile =
            serde_json::from_str(&text).map_err(|source| VisualTokenizerError::Parse {
                path: path.clone(),
                source,
            })?;
        if file.format_version != FORMAT_VERSION {
            return Err(VisualTokenizerError::Mismatch {
                path,
                field: "format_version",
                expected: FORMAT_VERSION.to_string(),
                found: file.format_version.to_string(),
            });
        }
        if let Some(model) = model
            && let Err((field, found, expected)) = file.config.check_model(model)
        {
            return Err(VisualTokenizerError::Mismatch {
                path,
                field,
                expected,
                found,
            });
        }
        let mut tokenizer = Self::new(file.config, device)?;
        let weights = dir.join(WEIGHTS_FILE);
        tokenizer
            .vs
            .load(&weights)
            .map_err(|source| VisualTokenizerError::Weights {
                path: weights,
                source,
            })?;
        tokenizer.summary = file.training;
        Ok(tokenizer)
    }
}

/// Whether `dir` may be replaced by a save: empty, or an earlier tokenizer.
fn replaceable(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
        || std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
#[path = "vqkd_tests.rs"]
mod tests;
