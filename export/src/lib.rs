//! vlbeit-export: writes VL-BEiT checkpoints as ONNX graphs, in pure Rust (no libtorch, no
//! Python).
//!
//! [`export_graphs`] reads a checkpoint directory (`config.json` + `model.safetensors`,
//! DESIGN.md §5) and writes `image_encoder.onnx`, `text_encoder.onnx` and
//! `fusion_encoder.onnx`, whose nodes mirror the trained forward of `train/src/model/`.
//!
//! ```no_run
//! use std::path::Path;
//! let report = vlbeit_export::export_graphs(Path::new("ckpt"), Path::new("bundle"))?;
//! for graph in &report.graphs {
//!     println!("{} ({} bytes)", graph.path.display(), graph.bytes);
//! }
//! # Ok::<(), vlbeit_export::ExportError>(())
//! ```

mod bundle;
mod checkpoint;
mod graphs;
pub mod onnx;
mod signature;
mod triton;
mod verify;

use std::path::{Path, PathBuf};

pub use bundle::{BUNDLE_FORMAT_VERSION, BundleOptions, BundleReport, MANIFEST, export_bundle};
pub use checkpoint::{expected_shapes as expected_weight_shapes, expected_task_head_shapes};
pub use graphs::{AttentionForm, Precision};
pub use onnx::WrittenModel;
pub use signature::{DimSpec, GraphSignature, TensorSpec};
pub use triton::{
    InstanceKind, TensorRtOptions, TritonModel, TritonOptions, TritonReport, TrtPrecision,
    write_triton_repository,
};
pub use verify::{
    MAX_ABS_TOLERANCE, MIN_COSINE, MIN_COSINE_F16, OutputParity, ParityReport, Tolerance,
    check_parity, max_abs_and_cosine,
};
pub use vlbeit_core as core;

use checkpoint::Checkpoint;
use graphs::Ctx;

/// File names of the three graphs in a bundle (DESIGN.md §5).
pub const IMAGE_ENCODER: &str = "image_encoder.onnx";
pub const TEXT_ENCODER: &str = "text_encoder.onnx";
pub const FUSION_ENCODER: &str = "fusion_encoder.onnx";

/// A checkpoint that cannot be exported or a file that cannot be written, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error(
        "weights {} do not match the config: {}",
        path.display(),
        describe_mismatch(missing, unexpected, wrong_shape)
    )]
    Mismatch {
        path: PathBuf,
        /// Expected by the config, absent from the file.
        missing: Vec<String>,
        /// In the file, not part of the model.
        unexpected: Vec<String>,
        /// `"<name> has shape [..], expected [..]"`.
        wrong_shape: Vec<String>,
    },
    #[error("{}: output directory exists and is not empty (pass --force to replace it)", path.display())]
    OutputExists { path: PathBuf },
    #[error("{}: cannot write the Triton repository: {reason}", path.display())]
    Triton { path: PathBuf, reason: String },
    #[error("{}: cannot verify the bundle: {reason}", path.display())]
    Verify { path: PathBuf, reason: String },
    #[error(
        "parity gate refused the export of {}: {}",
        checkpoint.display(),
        failures.join("; ")
    )]
    ParityFailed {
        checkpoint: PathBuf,
        /// `"<output>: max |Δ| = …, cosine = …"` for every output out of tolerance.
        failures: Vec<String>,
        report: Box<ParityReport>,
    },
}

fn describe_mismatch(missing: &[String], unexpected: &[String], wrong_shape: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing tensors: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected tensors: {}", unexpected.join(", ")));
    }
    parts.extend(wrong_shape.iter().map(|w| format!("tensor {w}")));
    parts.join("; ")
}

/// How graphs are exported.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// fp32 (default) or fp16 weights and activations; inputs and outputs are the same in both.
    pub precision: Precision,
    /// Standard opset-17 attention (default; TensorRT parses it) or ONNX Runtime's fused
    /// `com.microsoft.Attention` kernel (CPU/CUDA through ONNX Runtime only).
    pub attention: AttentionForm,
    pub write: onnx::WriteOptions,
}

impl ExportOptions {
    /// These options with weights and activations in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// These options with the blocks' attention written as `attention`.
    pub fn with_attention(mut self, attention: AttentionForm) -> Self {
        self.attention = attention;
        self
    }

    /// Models larger than `bytes` keep their weights in a `.data` file next to the graph.
    pub fn with_external_data_above(mut self, bytes: usize) -> Self {
        self.write = self.write.with_external_data_above(bytes);
        self
    }
}

/// What [`export_graphs`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub config: vlbeit_core::config::ModelConfig,
    /// Image, text and fusion encoder, in that order.
    pub graphs: Vec<WrittenModel>,
    /// Inputs and outputs of each graph, in the order of `graphs`.
    pub signatures: Vec<GraphSignature>,
    /// Checkpoint tensors of task heads no graph holds (`heads.nlvr2.*`, `heads.segment.*`);
    /// `heads.vqa.*` and `heads.classify.*` become the outputs `vqa_logits` / `class_logits`.
    pub skipped_tensors: Vec<String>,
}

/// Exports the three encoder graphs of the checkpoint in `checkpoint_dir` into `out_dir`
/// (created if needed), fp32, with default options (see [`ExportOptions::precision`] for fp16).
pub fn export_graphs(checkpoint_dir: &Path, out_dir: &Path) -> Result<ExportReport, ExportError> {
    export_graphs_with(checkpoint_dir, out_dir, &ExportOptions::default())
}

/// [`export_graphs`] with explicit options.
pub fn export_graphs_with(
    checkpoint_dir: &Path,
    out_dir: &Path,
    options: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let ckpt = Checkpoint::load(checkpoint_dir)?;
    std::fs::create_dir_all(out_dir).map_err(|source| ExportError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    type Build = fn(Ctx) -> onnx::proto::GraphProto;
    let builds: [(&str, &str, Build); 3] = [
        (IMAGE_ENCODER, "image_encoder", graphs::image_encoder),
        (TEXT_ENCODER, "text_encoder", graphs::text_encoder),
        (FUSION_ENCODER, "fusion_encoder", graphs::fusion_encoder),
    ];
    let mut written = Vec::new();
    let mut signatures = Vec::new();
    for (file, name, build) in builds {
        let graph = build(Ctx::new(name, &ckpt, options.precision, options.attention));
        signatures.push(GraphSignature::of(&graph));
        let path = out_dir.join(file);
        let model = onnx::write_model(graph, &path, &options.write)
            .map_err(|source| ExportError::Io { path, source })?;
        written.push(model);
    }
    Ok(ExportReport {
        config: ckpt.config.clone(),
        graphs: written,
        signatures,
        skipped_tensors: ckpt.skipped.clone(),
    })
}
