//! ONNX graph builders that mirror the trained model (`train/src/model/`) file by file:
//! `embed` (input representations), `mome` (the block), `encoder` (the three modes, one graph
//! each) and `heads`. Read each function next to its tch counterpart.

mod embed;
mod encoder;
mod heads;
mod mome;

pub(crate) use encoder::{fusion_encoder, image_encoder, text_encoder};
pub use mome::AttentionForm;

use crate::checkpoint::Checkpoint;
use crate::onnx::{ElemType, GraphBuilder, Value};

/// Float type of the weights and activations in the exported graphs.
///
/// `F16` stores the weights as fp16 initializers and runs the activations in fp16, except
/// LayerNormalization (with its f32 scale and bias), the attention softmax (with the key-padding
/// bias), the L2 normalization of the retrieval embeddings and the patch mean of the
/// classification head, which run in fp32. Graph inputs and outputs keep their fp32/i64 types in
/// both precisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    /// `"fp32"` or `"fp16"`, as in the manifest and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "fp32",
            Self::F16 => "fp16",
        }
    }

    /// Element type of weights and activations.
    pub fn elem_type(self) -> ElemType {
        match self {
            Self::F32 => ElemType::F32,
            Self::F16 => ElemType::F16,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" | "f32" => Ok(Self::F32),
            "fp16" | "f16" => Ok(Self::F16),
            _ => Err(format!("unknown precision `{s}` (expected fp32 or fp16)")),
        }
    }
}

/// A graph under construction together with the checkpoint whose weights it reads.
pub(crate) struct Ctx<'a> {
    pub(crate) g: GraphBuilder,
    ckpt: &'a Checkpoint,
    precision: Precision,
    attention: AttentionForm,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        name: &str,
        ckpt: &'a Checkpoint,
        precision: Precision,
        attention: AttentionForm,
    ) -> Self {
        Self {
            g: GraphBuilder::new(name),
            ckpt,
            precision,
            attention,
        }
    }

    /// How the blocks' attention is written.
    pub(crate) fn attention_form(&self) -> AttentionForm {
        self.attention
    }

    pub(crate) fn config(&self) -> &vlbeit_core::config::ModelConfig {
        &self.ckpt.config
    }

    /// Number of answers of the checkpoint's VQA head, if it has one.
    pub(crate) fn vqa_answers(&self) -> Option<usize> {
        self.ckpt.vqa_answers
    }

    /// Number of classes of the checkpoint's classification head, if it has one.
    pub(crate) fn classes(&self) -> Option<usize> {
        self.ckpt.classes
    }

    /// True when activations run in fp16.
    pub(crate) fn is_f16(&self) -> bool {
        self.precision == Precision::F16
    }

    /// An initializer of the compute float type (fp16 in `F16`), from f32 values.
    pub(crate) fn float_initializer(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Value {
        match self.precision {
            Precision::F32 => self.g.initializer_f32(name, dims, data),
            Precision::F16 => self.g.initializer_f16(name, dims, data),
        }
    }

    /// A fresh-named constant of the compute float type.
    pub(crate) fn const_float(&mut self, dims: &[i64], data: &[f32]) -> Value {
        match self.precision {
            Precision::F32 => self.g.const_f32(dims, data),
            Precision::F16 => self.g.const_f16(dims, data),
        }
    }

    /// An f32 value (a graph input, an fp32 section's result) in the compute float type.
    pub(crate) fn cast_compute(&mut self, x: &Value) -> Value {
        match self.precision {
            Precision::F32 => x.clone(),
            Precision::F16 => self.g.cast(x, ElemType::F16),
        }
    }

    /// A value of the compute float type as f32 (graph outputs, fp32 sections).
    pub(crate) fn cast_f32(&mut self, x: &Value) -> Value {
        match self.precision {
            Precision::F32 => x.clone(),
            Precision::F16 => self.g.cast(x, ElemType::F32),
        }
    }

    /// The checkpoint tensor `name` as an initializer of the same name (added once), in the
    /// compute float type.
    pub(crate) fn weight(&mut self, name: &str) -> Value {
        if !self.g.has_initializer(name) {
            let w = &self.ckpt.weights[name];
            let (shape, data) = (w.shape.clone(), w.data.clone());
            self.float_initializer(name, &shape, &data);
        }
        crate::onnx::Value(name.to_owned())
    }

    /// The checkpoint tensor `name` as an f32 initializer whatever the precision (LayerNorm
    /// scale and bias, which run in fp32).
    pub(crate) fn weight_f32(&mut self, name: &str) -> Value {
        if !self.g.has_initializer(name) {
            let w = &self.ckpt.weights[name];
            self.g.initializer_f32(name, &w.shape, &w.data);
        }
        crate::onnx::Value(name.to_owned())
    }

    /// The values of checkpoint tensor `name` (for initializers derived from it).
    pub(crate) fn weight_data(&self, name: &str) -> Vec<f32> {
        self.ckpt.weights[name].data.clone()
    }

    /// A `[out, in]` Linear weight stored transposed as `{name}.T` (`[in, out]`), so that
    /// `x.linear(W, b)` becomes MatMul + Add on inputs of any rank — the pattern ONNX Runtime
    /// fuses into its MatMul/attention kernels.
    pub(crate) fn weight_t(&mut self, name: &str) -> Value {
        let t_name = format!("{name}.T");
        if !self.g.has_initializer(&t_name) {
            let w = &self.ckpt.weights[name];
            let (rows, cols) = (w.shape[0] as usize, w.shape[1] as usize);
            let mut t = vec![0f32; w.data.len()];
            for r in 0..rows {
                for c in 0..cols {
                    t[c * rows + r] = w.data[r * cols + c];
                }
            }
            self.float_initializer(&t_name, &[cols as i64, rows as i64], &t);
        }
        crate::onnx::Value(t_name)
    }

    /// `nn::Linear` with weight `{prefix}.weight` and, if `bias`, `{prefix}.bias`.
    pub(crate) fn linear(&mut self, x: &Value, prefix: &str, bias: bool) -> Value {
        let w = self.weight_t(&format!("{prefix}.weight"));
        let y = self.g.matmul(x, &w);
        if bias {
            let b = self.weight(&format!("{prefix}.bias"));
            self.g.add(&y, &b)
        } else {
            y
        }
    }

    /// `nn::LayerNorm` `{prefix}.{weight,bias}` with the config's epsilon, computed in fp32
    /// (an fp16 input is cast to f32 and the result back to fp16).
    pub(crate) fn layer_norm(&mut self, x: &Value, prefix: &str) -> Value {
        let x = self.cast_f32(x);
        let y = self.layer_norm_f32(&x, prefix);
        self.cast_compute(&y)
    }

    /// [`Ctx::layer_norm`] of an f32 value, with an f32 result in both precisions.
    pub(crate) fn layer_norm_f32(&mut self, x: &Value, prefix: &str) -> Value {
        let w = self.weight_f32(&format!("{prefix}.weight"));
        let b = self.weight_f32(&format!("{prefix}.bias"));
        let eps = self.config().layer_norm_eps as f32;
        self.g.layer_norm(x, &w, &b, eps)
    }
}
