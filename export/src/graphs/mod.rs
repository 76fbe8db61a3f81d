//! ONNX graph builders that mirror the trained model (`train/src/model/`) file by file:
//! `embed` (input representations), `mome` (the block), `encoder` (the three modes, one graph
//! each) and `heads`. Read each function next to its tch counterpart.

mod embed;
mod encoder;
mod heads;
mod mome;

pub(crate) use encoder::{fusion_encoder, image_encoder, text_encoder};

use crate::checkpoint::Checkpoint;
use crate::onnx::{GraphBuilder, Value};

/// Float type of the weights and activations in the exported graphs. Only fp32 exists now;
/// fp16 will convert initializers here and keep the attention softmax and LayerNorm in fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
}

/// A graph under construction together with the checkpoint whose weights it reads.
pub(crate) struct Ctx<'a> {
    pub(crate) g: GraphBuilder,
    ckpt: &'a Checkpoint,
    #[allow(dead_code)]
    precision: Precision,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(name: &str, ckpt: &'a Checkpoint, precision: Precision) -> Self {
        Self {
            g: GraphBuilder::new(name),
            ckpt,
            precision,
        }
    }

    pub(crate) fn config(&self) -> &vlbeit_core::config::ModelConfig {
        &self.ckpt.config
    }

    /// The checkpoint tensor `name` as an initializer of the same name (added once).
    pub(crate) fn weight(&mut self, name: &str) -> Value {
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
            self.g
                .initializer_f32(&t_name, &[cols as i64, rows as i64], &t);
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

    /// `nn::LayerNorm` `{prefix}.{weight,bias}` with the config's epsilon.
    pub(crate) fn layer_norm(&mut self, x: &Value, prefix: &str) -> Value {
        let w = self.weight(&format!("{prefix}.weight"));
        let b = self.weight(&format!("{prefix}.bias"));
        let eps = self.config().layer_norm_eps as f32;
        self.g.layer_norm(x, &w, &b, eps)
    }
}
