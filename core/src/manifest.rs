//! `manifest.json` of a bundle (DESIGN.md §5): written by `vlbeit-export`, read and enforced by
//! the `vlbeit` runtime. One schema, typed here, so the writer and the reader cannot drift.
//!
//! Every field is checked on reading (unknown fields are refused): a bundle that a newer exporter
//! wrote with fields this runtime does not know fails with the field's name instead of being
//! half-understood.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, PreprocessConfig};
use crate::text::TokenizerSettings;

/// The file name of the manifest inside a bundle.
pub const MANIFEST: &str = "manifest.json";
/// The bundle layout this version of the project writes and reads.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

/// File names of the three graphs of a bundle.
pub const IMAGE_ENCODER: &str = "image_encoder.onnx";
pub const TEXT_ENCODER: &str = "text_encoder.onnx";
pub const FUSION_ENCODER: &str = "fusion_encoder.onnx";

/// One axis of a graph input or output: a fixed size or a named dynamic axis (`"batch"`,
/// `"seq"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DimSpec {
    Fixed(i64),
    Symbolic(String),
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    /// `float32`, `float16`, `int64` or `bool`.
    pub dtype: String,
    pub shape: Vec<DimSpec>,
}

/// A graph file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntry {
    /// sha256 of the `.onnx` file (lowercase hex).
    pub sha256: Option<String>,
    /// Size of the `.onnx` file.
    pub bytes: u64,
    /// External-data file next to the graph (large models), if any.
    pub data_file: Option<String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl GraphEntry {
    /// The output called `name`, if the graph has it.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// Label vocabularies of the task heads in the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLabels {
    /// VQA answers, index = `vqa_logits` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
    /// Class names, index = `class_logits` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
}

/// Where the weights came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCheckpoint {
    /// sha256 of the checkpoint's `model.safetensors`.
    pub model_sha256: String,
}

/// One output compared by the parity gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputParity {
    /// Graph output name (`pooled`, `itm_logits`, …).
    pub output: String,
    /// Graph file that produced it.
    pub graph: String,
    /// Tensor of `golden/outputs.safetensors` it was compared with.
    pub golden: String,
    pub shape: Vec<usize>,
    pub max_abs: f64,
    pub cosine: f64,
    pub passed: bool,
}

/// What a replay of `golden/` measured (the export gate stores it in the manifest; `vlbeit
/// verify` prints it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityReport {
    /// ONNX Runtime version that ran the graphs.
    pub onnxruntime: String,
    /// Precision of the graphs checked (`fp32`, `fp16`).
    pub precision: String,
    /// Execution provider that ran the graphs (`cpu` when absent: bundles of the first exporter).
    #[serde(default = "default_provider")]
    pub provider: String,
    /// `None` (null) where max |Δ| is not gated (fp16).
    pub max_abs_tolerance: Option<f64>,
    pub min_cosine: f64,
    pub passed: bool,
    pub outputs: Vec<OutputParity>,
}

fn default_attention() -> String {
    "standard".to_owned()
}

fn default_provider() -> String {
    "cpu".to_owned()
}

impl ParityReport {
    /// `"<output> (<graph> vs golden <tensor>): max |Δ| = …, cosine = …"` for every output out
    /// of tolerance.
    pub fn failures(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter(|o| !o.passed)
            .map(|o| {
                let limit = match self.max_abs_tolerance {
                    Some(limit) => format!("limit {limit:.0e}"),
                    None => "not gated".to_owned(),
                };
                format!(
                    "{} ({} vs golden {}): max |Δ| = {:.3e} ({limit}), cosine = {:.9} (min {})",
                    o.output, o.graph, o.golden, o.max_abs, o.cosine, self.min_cosine
                )
            })
            .collect()
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub model: ModelConfig,
    pub preprocess: PreprocessConfig,
    /// How texts become `input_ids` for the text encoder (`max_len` = `model.max_text_len`).
    pub tokenizer: TokenizerSettings,
    /// Text length of image–text pairs (fusion encoder, VQA questions).
    pub pair_max_len: usize,
    pub heads: HeadLabels,
    /// `fp32` or `fp16` (weights and activations; inputs and outputs are f32 in both).
    pub precision: String,
    /// How the blocks' attention is written: `standard` (opset-17 operators; TensorRT parses it)
    /// or `ort` (`com.microsoft.Attention`, ONNX Runtime's fused kernel; TensorRT hands those
    /// nodes to CUDA). Absent in bundles of the first exporter: `standard`.
    #[serde(default = "default_attention")]
    pub attention: String,
    /// Graph file name → entry.
    pub graphs: BTreeMap<String, GraphEntry>,
    pub source_checkpoint: SourceCheckpoint,
    /// The export gate's measurements, when the bundle was exported with `--verify`.
    pub parity: Option<ParityReport>,
    /// sha256 of every file of the bundle but the manifest, by `/`-separated relative path.
    pub files: BTreeMap<String, String>,
}

/// A manifest that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest.json is not a valid manifest: {0}")]
    Parse(String),
    #[error(
        "manifest.json has format_version {found}; this runtime reads format_version {BUNDLE_FORMAT_VERSION} \
         (re-export the checkpoint with a matching vlbeit-export)"
    )]
    FormatVersion { found: u64 },
    #[error("manifest.json field {field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl Manifest {
    /// Parses and validates `manifest.json` bytes. The format version is checked before the
    /// rest, so a bundle of another layout says so instead of failing on its first new field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(BUNDLE_FORMAT_VERSION) => {}
            Some(found) => return Err(ManifestError::FormatVersion { found }),
            None => {
                return Err(ManifestError::Invalid {
                    field: "format_version".into(),
                    reason: "missing or not an integer".into(),
                });
            }
        }
        let manifest: Self =
            serde_json::from_value(value).map_err(|e| ManifestError::Parse(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Pretty JSON, as written into bundles.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest serializes")
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |field: &str, reason: String| ManifestError::Invalid {
            field: field.to_owned(),
            reason,
        };
        self.model
            .validate()
            .map_err(|e| invalid("model", e.to_string()))?;
        self.preprocess
            .validate()
            .map_err(|e| invalid("preprocess", e.to_string()))?;
        self.tokenizer
            .validate()
            .map_err(|e| invalid("tokenizer", e.to_string()))?;
        if self.precision != "fp32" && self.precision != "fp16" {
            return Err(invalid(
                "precision",
                format!("{:?} is neither \"fp32\" nor \"fp16\"", self.precision),
            ));
        }
        if self.attention != "standard" && self.attention != "ort" {
            return Err(invalid(
                "attention",
                format!("{:?} is neither \"standard\" nor \"ort\"", self.attention),
            ));
        }
        if self.pair_max_len < 3 || self.pair_max_len > self.model.max_text_len {
            return Err(invalid(
                "pair_max_len",
                format!(
                    "{} is outside 3..={} (model.max_text_len)",
                    self.pair_max_len, self.model.max_text_len
                ),
            ));
        }
        for graph in [IMAGE_ENCODER, TEXT_ENCODER, FUSION_ENCODER] {
            let Some(entry) = self.graphs.get(graph) else {
                return Err(invalid("graphs", format!("{graph} is missing")));
            };
            if entry.sha256.is_none() {
                return Err(invalid(&format!("graphs.{graph}.sha256"), "missing".into()));
            }
            if !self.files.contains_key(graph) {
                return Err(invalid("files", format!("{graph} has no hash")));
            }
        }
        if self.files.contains_key(MANIFEST) {
            return Err(invalid(
                "files",
                "lists manifest.json itself (it cannot hold its own hash)".into(),
            ));
        }
        for path in self.files.keys() {
            let bad = path.is_empty()
                || path.starts_with('/')
                || path.contains('\\')
                || path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..");
            if bad {
                return Err(invalid(
                    "files",
                    format!("{path:?} is not a plain relative path inside the bundle"),
                ));
            }
        }
        Ok(())
    }
}
