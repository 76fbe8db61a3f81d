//! The tokenizer's small Transformers: a pre-LN block (as BEiT v2's VQ-KD encoder and decoder)
//! and a stack of them with learnable absolute positions. Separate from the VL-BEiT model on
//! purpose: the tokenizer is frozen before pretraining starts and has its own weight names.

use serde::{Deserialize, Serialize};
use tch::Tensor;
use tch::nn::{self, Module};

/// Shape of one of the tokenizer's Transformers (encoder or decoder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
}

impl VitConfig {
    pub(crate) fn validate(&self, which: &'static str) -> Result<(), String> {
        if self.width == 0 || self.heads == 0 || self.mlp_ratio == 0 {
            return Err(format!("{which}: width, heads and mlp_ratio must be > 0"));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "{which}: width ({}) must be divisible by heads ({})",
                self.width, self.heads
            ));
        }
        Ok(())
    }
}

/// BEiT's LayerNorm epsilon (also the VL-BEiT model's, DESIGN §4.1).
const LN_EPS: f64 = 1e-6;

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

fn layer_norm(path: nn::Path, width: i64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps: LN_EPS,
        ..Default::default()
    };
    nn::layer_norm(path, vec![width], config)
}

impl Block {
    fn new(path: &nn::Path, config: &VitConfig) -> Self {
        let d = config.width as i64;
        let hidden = d * config.mlp_ratio as i64;
        let linear = Default::default();
        Self {
            norm1: layer_norm(path / "norm1", d),
            qkv: nn::linear(path / "attn" / "qkv", d, 3 * d, linear),
            proj: nn::linear(path / "attn" / "proj", d, d, linear),
            norm2: layer_norm(path / "norm2", d),
            fc1: nn::linear(path / "mlp" / "fc1", d, hidden, linear),
            fc2: nn::linear(path / "mlp" / "fc2", hidden, d, linear),
            heads: config.heads as i64,
        }
    }

    /// `x + Attn(LN(x))`, then `x + MLP(LN(x))`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, t, d) = x.size3().expect("tokens must be [B, T, D]");
        let qkv = self
            .qkv
            .forward(&x.apply(&self.norm1))
            .view([b, t, 3, self.heads, d / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attended = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        )
        .transpose(1, 2)
        .reshape([b, t, d]);
        let x = x + self.proj.forward(&attended);
        let mlp = x
            .apply(&self.norm2)
            .apply(&self.fc1)
            .gelu("none")
            .apply(&self.fc2);
        x + mlp
    }
}

/// Blocks over `tokens` learnable positions, with a final LayerNorm.
#[derive(Debug)]
pub(crate) struct Transformer {
    pos: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl Transformer {
    pub(crate) fn new(path: &nn::Path, config: &VitConfig, tokens: i64) -> Self {
        let d = config.width as i64;
        Self {
            // BEiT's trunc_normal(std = 0.02) without the truncation, which rarely bites at 0.02.
            pos: path.randn("pos", &[1, tokens, d], 0.0, 0.02),
            blocks: (0..config.depth)
                .map(|i| Block::new(&(path / "blocks" / i), config))
                .collect(),
            norm: layer_norm(path / "norm", d),
        }
    }

    /// `[B, T, D]` (positions not yet added) → `[B, T, D]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x + &self.pos;
        for block in &self.blocks {
            x = block.forward(&x);
        }
        x.apply(&self.norm)
    }
}

/// BEiT v2's task layer between a Transformer and the code (or teacher) space:
/// Linear–Tanh–Linear.
#[derive(Debug)]
pub(crate) struct TaskLayer {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl TaskLayer {
    pub(crate) fn new(path: &nn::Path, width: i64, out: i64) -> Self {
        Self {
            fc1: nn::linear(path / "fc1", width, width, Default::default()),
            fc2: nn::linear(path / "fc2", width, out, Default::default()),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).tanh().apply(&self.fc2)
    }
}
