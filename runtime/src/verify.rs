//! The golden replay: `golden/` holds raw inputs (image files, texts) and the trainer's outputs
//! for them. Replaying it decodes the images with vlbeit-core's preprocessing, tokenizes the
//! texts with the bundle's tokenizer (padding to the longest of each batch, as the trainer
//! recorded them), runs the graphs and compares every output. The exporter's parity gate and
//! `vlbeit verify` are this one function.

use std::path::{Path, PathBuf};

use ort::value::Tensor;
use serde::Deserialize;
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::manifest::{
    FUSION_ENCODER, IMAGE_ENCODER, OutputParity, ParityReport, TEXT_ENCODER,
};
use vlbeit_core::preprocess::{ImageInput, Preprocessor};
use vlbeit_core::text::{Padding, TextTokenizer};

use crate::environment::Runtime;
use crate::error::{Error, Result};
use crate::graph::{Graph, GraphSource, Outputs, SessionConfig};
use crate::model::Model;
use crate::provider::{ExecutionProvider, ShapeProfile};

/// fp32 on CPU: every output's max |Δ| must not exceed this…
pub const MAX_ABS_TOLERANCE: f64 = 1e-4;
/// …and its cosine similarity with the trainer's output must reach this.
pub const MIN_COSINE: f64 = 0.99999;
/// fp32 on a GPU provider (CUDA may use TF32 and other reduction orders): max |Δ| limit.
pub const MAX_ABS_TOLERANCE_GPU: f64 = 1e-3;
/// fp32 on a GPU provider: cosine floor.
pub const MIN_COSINE_GPU: f64 = 0.9999;
/// fp16 graphs, or TensorRT fp16 engines: cosine floor; max |Δ| is reported, not gated.
pub const MIN_COSINE_F16: f64 = 0.999;

/// The gate of one precision on one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// `None`: max |Δ| is measured but not gated.
    pub max_abs: Option<f64>,
    pub min_cosine: f64,
}

impl Tolerance {
    /// fp32 on CPU: max |Δ| ≤ 1e-4 and cosine ≥ 0.99999; fp32 on CUDA/TensorRT: 1e-3 and 0.9999;
    /// fp16 (bundle or TensorRT engine): cosine ≥ 0.999.
    pub fn of(precision: &str, provider: &ExecutionProvider) -> Self {
        let fp16 = precision == "fp16"
            || matches!(provider, ExecutionProvider::TensorRt(options) if options.fp16);
        if fp16 {
            Self {
                max_abs: None,
                min_cosine: MIN_COSINE_F16,
            }
        } else if provider.is_gpu() {
            Self {
                max_abs: Some(MAX_ABS_TOLERANCE_GPU),
                min_cosine: MIN_COSINE_GPU,
            }
        } else {
            Self {
                max_abs: Some(MAX_ABS_TOLERANCE),
                min_cosine: MIN_COSINE,
            }
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

/// Replays the bundle's `golden/` through `model` (its provider, its sessions) with the
/// tolerance of the model's precision and provider.
pub fn verify(model: &Model) -> Result<ParityReport> {
    let bundle = model.bundle();
    let tolerance = Tolerance::of(&bundle.manifest().precision, &model.options().provider);
    let read = |file: &str| -> Result<Vec<u8>> {
        let path = format!("golden/{file}");
        if !bundle.has(&path) {
            return Err(Error::Verify {
                path: bundle.origin().join(&path),
                reason: "missing from the bundle (exported without golden/?)".into(),
            });
        }
        Ok(bundle.read(&path)?.to_vec())
    };
    let [image, text, fusion] = model.graphs();
    replay(
        &bundle.origin().join("golden"),
        &read,
        model.tokenizer(),
        model.preprocessor(),
        [image, text, fusion],
        tolerance,
        Meta {
            precision: &bundle.manifest().precision,
            provider: model.options().provider.kind(),
            onnxruntime: &model.runtime().library().version,
        },
    )
}

/// Replays `dir/golden/` through the three graph files in `dir` on CPU, before a manifest
/// exists: the exporter's gate. `precision` is the graphs' (`fp32`, `fp16`).
pub fn replay_dir(
    runtime: &Runtime,
    dir: &Path,
    preprocess: &PreprocessConfig,
    precision: &str,
) -> Result<ParityReport> {
    let preprocessor = Preprocessor::new(preprocess.clone()).map_err(|e| Error::Verify {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = TextTokenizer::load(&tokenizer_path).map_err(|source| Error::Tokenizer {
        bundle: dir.to_owned(),
        source,
    })?;
    let provider = ExecutionProvider::Cpu { threads: 1 };
    let config = SessionConfig {
        provider: provider.clone(),
        strict: false,
        pool_size: 1,
        bundle_sha256: String::new(),
        precision: precision.to_owned(),
        image_size: preprocess.image_size as usize,
        profile: ShapeProfile::derived(1, 3, 3),
    };
    let open = |file: &str| {
        Graph::load(
            runtime,
            file,
            GraphSource::File(dir.join(file)),
            config.clone(),
            None,
        )
    };
    let graphs = [
        &open(IMAGE_ENCODER)?,
        &open(TEXT_ENCODER)?,
        &open(FUSION_ENCODER)?,
    ];
    let golden = dir.join("golden");
    let read = |file: &str| -> Result<Vec<u8>> {
        let path = golden.join(file);
        std::fs::read(&path).map_err(Error::io(path))
    };
    replay(
        &golden,
        &read,
        &tokenizer,
        &preprocessor,
        graphs,
        Tolerance::of(precision, &provider),
        Meta {
            precision,
            provider: provider.kind(),
            onnxruntime: &runtime.library().version,
        },
    )
}

struct Meta<'a> {
    precision: &'a str,
    provider: &'a str,
    onnxruntime: &'a str,
}

fn replay(
    golden: &Path,
    read: &dyn Fn(&str) -> Result<Vec<u8>>,
    tokenizer: &TextTokenizer,
    preprocessor: &Preprocessor,
    [image_graph, text_graph, fusion_graph]: [&Graph; 3],
    tolerance: Tolerance,
    meta: Meta<'_>,
) -> Result<ParityReport> {
    let inputs_path = golden.join("inputs.json");
    let invalid = |path: &Path, reason: String| Error::Verify {
        path: path.to_owned(),
        reason,
    };
    let inputs: GoldenInputs = serde_json::from_slice(&read("inputs.json")?)
        .map_err(|e| invalid(&inputs_path, e.to_string()))?;
    let images = inputs
        .images
        .iter()
        .map(|name| read(name))
        .collect::<Result<Vec<_>>>()?;
    let encoded: Vec<ImageInput<'_>> = images.iter().map(|b| ImageInput::Encoded(b)).collect();
    let pixels = preprocessor
        .batch(&encoded)
        .map_err(|e| invalid(golden, e.to_string()))?;
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
    let text = tokenizer
        .encode_batch(&inputs.texts, inputs.text_max_len, Padding::Longest)
        .map_err(|e| invalid(&inputs_path, e.to_string()))?;
    let pair_texts: Vec<&str> = inputs
        .pairs
        .iter()
        .map(|&(_, t)| inputs.texts[t].as_str())
        .collect();
    let pair = tokenizer
        .encode_batch(&pair_texts, inputs.pair_max_len, Padding::Longest)
        .map_err(|e| invalid(&inputs_path, e.to_string()))?;

    let outputs_path = golden.join("outputs.safetensors");
    let golden_bytes = read("outputs.safetensors")?;
    let expected = safetensors::SafeTensors::deserialize(&golden_bytes)
        .map_err(|e| invalid(&outputs_path, e.to_string()))?;

    let tensor_err = |e: ort::Error| invalid(golden, format!("building an input tensor: {e}"));
    let [_, c, h, w] = pixels.shape;
    let image_out = image_graph.run(vec![(
        "pixel_values",
        Tensor::from_array(([inputs.images.len(), c, h, w], pixels.data.clone()))
            .map_err(tensor_err)?
            .into_dyn(),
    )])?;
    let text_out = text_graph.run(vec![
        (
            "input_ids",
            Tensor::from_array(([text.batch, text.seq_len], text.input_ids.clone()))
                .map_err(tensor_err)?
                .into_dyn(),
        ),
        (
            "attention_mask",
            Tensor::from_array(([text.batch, text.seq_len], text.attention_mask.clone()))
                .map_err(tensor_err)?
                .into_dyn(),
        ),
    ])?;
    let fusion_out = fusion_graph.run(vec![
        (
            "input_ids",
            Tensor::from_array(([pair.batch, pair.seq_len], pair.input_ids.clone()))
                .map_err(tensor_err)?
                .into_dyn(),
        ),
        (
            "attention_mask",
            Tensor::from_array(([pair.batch, pair.seq_len], pair.attention_mask.clone()))
                .map_err(tensor_err)?
                .into_dyn(),
        ),
        (
            "pixel_values",
            Tensor::from_array(([inputs.pairs.len(), c, h, w], pair_pixels))
                .map_err(tensor_err)?
                .into_dyn(),
        ),
    ])?;

    let compared: [(&Outputs, &Graph, &str, &str, bool); 7] = [
        (
            &image_out,
            image_graph,
            "image_embeds",
            "image_embeds",
            true,
        ),
        (
            &image_out,
            image_graph,
            "image_states",
            "image_states",
            true,
        ),
        (
            &image_out,
            image_graph,
            "class_logits",
            "class_logits",
            false,
        ),
        (&text_out, text_graph, "text_embeds", "text_embeds", true),
        (&fusion_out, fusion_graph, "pooled", "fusion_pooled", true),
        (&fusion_out, fusion_graph, "itm_logits", "itm_logits", true),
        (&fusion_out, fusion_graph, "vqa_logits", "vqa_logits", false),
    ];
    let golden_names: Vec<String> = expected.names().into_iter().map(String::from).collect();
    let mut report = Vec::new();
    for (outputs, graph, name, golden_name, required) in compared {
        let in_graph = outputs.contains_key(name);
        let in_golden = golden_names.iter().any(|n| n == golden_name);
        match (in_graph, in_golden) {
            (false, false) if !required => continue,
            (true, true) => {}
            (false, _) => {
                return Err(invalid(
                    &PathBuf::from(graph.name()),
                    format!("the graph has no output {name}, but golden has {golden_name}"),
                ));
            }
            (true, false) => {
                return Err(invalid(
                    &outputs_path,
                    format!("no golden tensor {golden_name} for the graph output {name}"),
                ));
            }
        }
        let got = &outputs[name];
        let want = expected
            .tensor(golden_name)
            .map_err(|e| invalid(&outputs_path, format!("tensor {golden_name}: {e}")))?;
        if want.dtype() != safetensors::Dtype::F32 {
            return Err(invalid(
                &outputs_path,
                format!("tensor {golden_name} is {:?}, expected F32", want.dtype()),
            ));
        }
        if got.shape != want.shape() {
            return Err(invalid(
                &PathBuf::from(graph.name()),
                format!(
                    "output {name} has shape {:?}, golden {golden_name} has {:?}",
                    got.shape,
                    want.shape()
                ),
            ));
        }
        let want: Vec<f32> = want
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (max_abs, cosine) = max_abs_and_cosine(&got.data, &want);
        report.push(OutputParity {
            output: name.to_owned(),
            graph: graph.name().to_owned(),
            golden: golden_name.to_owned(),
            shape: got.shape.clone(),
            max_abs,
            cosine,
            passed: tolerance.passes(max_abs, cosine),
        });
    }
    Ok(ParityReport {
        onnxruntime: meta.onnxruntime.to_owned(),
        precision: meta.precision.to_owned(),
        provider: meta.provider.to_owned(),
        max_abs_tolerance: tolerance.max_abs,
        min_cosine: tolerance.min_cosine,
        passed: report.iter().all(|o| o.passed),
        outputs: report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_follow_precision_and_provider() {
        let cpu = Tolerance::of("fp32", &ExecutionProvider::Cpu { threads: 0 });
        assert_eq!(cpu.max_abs, Some(MAX_ABS_TOLERANCE));
        let gpu = Tolerance::of("fp32", &ExecutionProvider::Cuda { device: 0 });
        assert_eq!(gpu.min_cosine, MIN_COSINE_GPU);
        let half = Tolerance::of("fp16", &ExecutionProvider::Cpu { threads: 0 });
        assert_eq!(half.max_abs, None);
        let trt16 = Tolerance::of(
            "fp32",
            &ExecutionProvider::TensorRt(crate::provider::TensorRtOptions {
                fp16: true,
                ..Default::default()
            }),
        );
        assert_eq!(trt16.min_cosine, MIN_COSINE_F16);
        assert!(cpu.passes(5e-5, 0.999995));
        assert!(!cpu.passes(2e-4, 0.999995));
        assert!(!cpu.passes(f64::NAN, 1.0));
        assert!(!half.passes(f64::NAN, 1.0));
    }

    #[test]
    fn max_abs_and_cosine_of_known_vectors() {
        let (m, c) = max_abs_and_cosine(&[1.0, 0.0], &[0.0, 1.0]);
        assert_eq!((m, c), (1.0, 0.0));
        let (m, c) = max_abs_and_cosine(&[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!((m, c), (0.0, 1.0));
        let (m, _) = max_abs_and_cosine(&[f32::NAN], &[1.0]);
        assert!(m.is_nan());
    }
}
