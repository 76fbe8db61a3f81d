//! The parity gate: replays `golden/` of a bundle from its raw inputs (image files decoded by
//! vlbeit-core's preprocessing, texts tokenized with the bundle's `tokenizer.json`, padding to
//! the longest in each batch, exactly as `train/src/golden.rs` recorded them), runs the three
//! ONNX graphs in ONNX Runtime and compares every output with the trainer's.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::preprocess::{ImageInput, Preprocessor};
use vlbeit_core::text::{Padding, TextTokenizer};

use crate::{ExportError, FUSION_ENCODER, IMAGE_ENCODER, TEXT_ENCODER, graphs::Precision};

/// fp32 tolerance: every output's max |Δ| must not exceed this…
pub const MAX_ABS_TOLERANCE: f64 = 1e-4;
/// …and its cosine similarity with the trainer's output must reach this.
pub const MIN_COSINE: f64 = 0.99999;
/// fp16 tolerance: every output's cosine similarity with the trainer's (fp32) output must reach
/// this; max |Δ| is reported, not gated.
pub const MIN_COSINE_F16: f64 = 0.999;

/// The gate of one precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// `None`: max |Δ| is measured but not gated.
    pub max_abs: Option<f64>,
    pub min_cosine: f64,
}

impl Tolerance {
    /// fp32: max |Δ| ≤ [`MAX_ABS_TOLERANCE`] and cosine ≥ [`MIN_COSINE`]; fp16: cosine ≥
    /// [`MIN_COSINE_F16`].
    pub fn of(precision: Precision) -> Self {
        match precision {
            Precision::F32 => Self {
                max_abs: Some(MAX_ABS_TOLERANCE),
                min_cosine: MIN_COSINE,
            },
            Precision::F16 => Self {
                max_abs: None,
                min_cosine: MIN_COSINE_F16,
            },
        }
    }

    /// Do these measurements pass? (A NaN never does.)
    pub fn passes(&self, max_abs: f64, cosine: f64) -> bool {
        let abs_ok = match self.max_abs {
            Some(limit) => max_abs <= limit,
            None => !max_abs.is_nan(),
        };
        abs_ok && cosine >= self.min_cosine
    }
}

/// `golden/inputs.json` as the trainer writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenInputs {
    images: Vec<String>,
    texts: Vec<String>,
    pairs: Vec<(usize, usize)>,
    text_max_len: usize,
    pair_max_len: usize,
}

/// One compared output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// What the gate measured; stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityReport {
    pub onnxruntime: String,
    /// Precision of the graphs checked (`fp32`, `fp16`).
    pub precision: String,
    /// `None` (null) where max |Δ| is not gated (fp16).
    pub max_abs_tolerance: Option<f64>,
    pub min_cosine: f64,
    pub passed: bool,
    pub outputs: Vec<OutputParity>,
}

impl ParityReport {
    /// `"<output>: max |Δ| = …, cosine = …"` for every output out of tolerance.
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

fn invalid(path: &Path, reason: impl std::fmt::Display) -> ExportError {
    ExportError::Verify {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|source| ExportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Replays `bundle/golden/` through the graphs, tokenizer and `preprocess` of `bundle` and
/// measures every output against the tolerance of `precision` (the graphs' precision). Nothing
/// is refused here: see [`ParityReport::passed`].
pub fn check_parity(
    bundle: &Path,
    preprocess: &PreprocessConfig,
    runtime: &vlbeit::Runtime,
    precision: Precision,
) -> Result<ParityReport, ExportError> {
    let tolerance = Tolerance::of(precision);
    let golden = bundle.join("golden");
    let inputs_path = golden.join("inputs.json");
    let inputs: GoldenInputs =
        serde_json::from_slice(&read(&inputs_path)?).map_err(|e| invalid(&inputs_path, e))?;

    let preprocessor = Preprocessor::new(preprocess.clone()).map_err(|e| invalid(bundle, e))?;
    let images = inputs
        .images
        .iter()
        .map(|name| read(&golden.join(name)))
        .collect::<Result<Vec<_>, _>>()?;
    let encoded: Vec<ImageInput<'_>> = images.iter().map(|b| ImageInput::Encoded(b)).collect();
    let pixels = preprocessor
        .batch(&encoded)
        .map_err(|e| invalid(&golden, e))?;
    let per_image = preprocessor.pixel_values_len();
    let mut pair_pixels = Vec::with_capacity(inputs.pairs.len() * per_image);
    for &(image, text) in &inputs.pairs {
        if image >= inputs.images.len() || text >= inputs.texts.len() {
            return Err(invalid(
                &inputs_path,
                format!("pair ({image}, {text}) is out of range"),
            ));
        }
        pair_pixels.extend_from_slice(&pixels.data[image * per_image..(image + 1) * per_image]);
    }

    let tokenizer_path = bundle.join("tokenizer.json");
    let tokenizer =
        TextTokenizer::load(&tokenizer_path).map_err(|e| invalid(&tokenizer_path, e))?;
    let text = tokenizer
        .encode_batch(&inputs.texts, inputs.text_max_len, Padding::Longest)
        .map_err(|e| invalid(&inputs_path, e))?;
    let pair_texts: Vec<&str> = inputs
        .pairs
        .iter()
        .map(|&(_, t)| inputs.texts[t].as_str())
        .collect();
    let pair = tokenizer
        .encode_batch(&pair_texts, inputs.pair_max_len, Padding::Longest)
        .map_err(|e| invalid(&inputs_path, e))?;

    let outputs_path = golden.join("outputs.safetensors");
    let golden_bytes = read(&outputs_path)?;
    let expected = safetensors::SafeTensors::deserialize(&golden_bytes)
        .map_err(|e| invalid(&outputs_path, e))?;

    let px_shape: Vec<i64> = pixels.shape.iter().map(|&d| d as i64).collect();
    let pair_px_shape = [
        inputs.pairs.len() as i64,
        px_shape[1],
        px_shape[2],
        px_shape[3],
    ];
    let text_shape = [text.batch as i64, text.seq_len as i64];
    let pair_shape = [pair.batch as i64, pair.seq_len as i64];
    let f32_in = |shape: &[i64], data: &[f32], path: &Path| {
        Tensor::from_array((shape.to_vec(), data.to_vec())).map_err(|e| invalid(path, e))
    };
    let i64_in = |shape: &[i64], data: &[i64], path: &Path| {
        Tensor::from_array((shape.to_vec(), data.to_vec())).map_err(|e| invalid(path, e))
    };

    let mut report = Vec::new();
    let path = bundle.join(IMAGE_ENCODER);
    let mut session = open(runtime, &path)?;
    let out = session
        .run(ort::inputs!["pixel_values" => f32_in(&px_shape, &pixels.data, &path)?])
        .map_err(|e| invalid(&path, e))?;
    for (name, golden_name) in [
        ("image_embeds", "image_embeds"),
        ("image_states", "image_states"),
    ] {
        report.push(compare(
            &out,
            name,
            IMAGE_ENCODER,
            &expected,
            golden_name,
            &path,
            &tolerance,
        )?);
    }
    drop(out);

    let path = bundle.join(TEXT_ENCODER);
    let mut session = open(runtime, &path)?;
    let out = session
        .run(ort::inputs![
            "input_ids" => i64_in(&text_shape, &text.input_ids, &path)?,
            "attention_mask" => i64_in(&text_shape, &text.attention_mask, &path)?,
        ])
        .map_err(|e| invalid(&path, e))?;
    report.push(compare(
        &out,
        "text_embeds",
        TEXT_ENCODER,
        &expected,
        "text_embeds",
        &path,
        &tolerance,
    )?);
    drop(out);

    let path = bundle.join(FUSION_ENCODER);
    let mut session = open(runtime, &path)?;
    let out = session
        .run(ort::inputs![
            "input_ids" => i64_in(&pair_shape, &pair.input_ids, &path)?,
            "attention_mask" => i64_in(&pair_shape, &pair.attention_mask, &path)?,
            "pixel_values" => f32_in(&pair_px_shape, &pair_pixels, &path)?,
        ])
        .map_err(|e| invalid(&path, e))?;
    for (name, golden_name) in [("pooled", "fusion_pooled"), ("itm_logits", "itm_logits")] {
        report.push(compare(
            &out,
            name,
            FUSION_ENCODER,
            &expected,
            golden_name,
            &path,
            &tolerance,
        )?);
    }

    Ok(ParityReport {
        onnxruntime: runtime.library().version.clone(),
        precision: precision.as_str().to_owned(),
        max_abs_tolerance: tolerance.max_abs,
        min_cosine: tolerance.min_cosine,
        passed: report.iter().all(|o| o.passed),
        outputs: report,
    })
}

fn open(runtime: &vlbeit::Runtime, path: &Path) -> Result<Session, ExportError> {
    Session::builder(runtime.environment())
        .map_err(|e| invalid(path, e))?
        .with_intra_threads(1)
        .map_err(|e| invalid(path, e))?
        .commit_from_file(path)
        .map_err(|e| invalid(path, e))
}

/// max |Δ| and cosine of graph output `name` against golden tensor `golden_name`.
fn compare(
    out: &ort::session::SessionOutputs<'_>,
    name: &str,
    graph: &str,
    expected: &safetensors::SafeTensors<'_>,
    golden_name: &str,
    graph_path: &Path,
    tolerance: &Tolerance,
) -> Result<OutputParity, ExportError> {
    let value = out
        .get(name)
        .ok_or_else(|| invalid(graph_path, format!("the graph has no output {name}")))?;
    let (shape, got) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| invalid(graph_path, format!("output {name}: {e}")))?;
    let golden_path = PathBuf::from("golden/outputs.safetensors");
    let want = expected
        .tensor(golden_name)
        .map_err(|e| invalid(&golden_path, format!("tensor {golden_name}: {e}")))?;
    if want.dtype() != safetensors::Dtype::F32 {
        return Err(invalid(
            &golden_path,
            format!("tensor {golden_name} is {:?}, expected F32", want.dtype()),
        ));
    }
    let got_shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if got_shape != want.shape() {
        return Err(invalid(
            graph_path,
            format!(
                "output {name} has shape {got_shape:?}, golden {golden_name} has {:?}",
                want.shape()
            ),
        ));
    }
    let want: Vec<f32> = want
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (max_abs, cosine) = max_abs_and_cosine(got, &want);
    Ok(OutputParity {
        output: name.to_owned(),
        graph: graph.to_owned(),
        golden: golden_name.to_owned(),
        shape: got_shape,
        max_abs,
        cosine,
        passed: tolerance.passes(max_abs, cosine),
    })
}

/// Largest absolute difference and cosine similarity of two equally long vectors, in f64. A NaN
/// anywhere makes `max_abs` NaN (so it fails every gate); two all-zero vectors have cosine 1.
pub fn max_abs_and_cosine(got: &[f32], want: &[f32]) -> (f64, f64) {
    let (mut max_abs, mut dot, mut n1, mut n2) = (0f64, 0f64, 0f64, 0f64);
    for (&a, &b) in got.iter().zip(want) {
        let (a, b) = (f64::from(a), f64::from(b));
        let diff = (a - b).abs();
        max_abs = if diff.is_nan() || max_abs.is_nan() {
            f64::NAN
        } else {
            max_abs.max(diff)
        };
        dot += a * b;
        n1 += a * a;
        n2 += b * b;
    }
    let cosine = if n1 == 0.0 && n2 == 0.0 {
        1.0
    } else {
        dot / (n1.sqrt() * n2.sqrt()).max(1e-30)
    };
    (max_abs, cosine)
}
