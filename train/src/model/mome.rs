//! The MoME block (DESIGN.md §4.3, VLMo-style, pre-LN): one self-attention shared by every
//! modality, then a feed-forward expert chosen by the modality of each token.
//!
//! ```text
//! x = x + drop_path(gamma_1 * Attn(norm1(x), key_mask))
//! x = x + drop_path(gamma_2 * FFN_expert(norm_expert(x)))
//! ```

use tch::{Kind, Tensor, nn, nn::Module};
use vlbeit_core::config::{ModelConfig, Variant};

use super::init;

/// Which expert(s) a block applies: decided by the encoder mode, not by the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Every token is text.
    Text,
    /// Every token is an image token.
    Image,
    /// `concat(text, image)`: the first `text_len` tokens are text.
    Fusion { text_len: i64 },
}

/// Multi-head self-attention with a fused qkv projection, learnable q and v biases (k bias 0,
/// as BEiT: a key bias only shifts every logit of a row by the same amount) and an fp32 softmax.
#[derive(Debug)]
pub(crate) struct Attention {
    qkv: Tensor,
    q_bias: Tensor,
    v_bias: Tensor,
    proj: nn::Linear,
    heads: i64,
    scale: f64,
}

impl Attention {
    fn new(vs: &nn::Path, config: &ModelConfig) -> Self {
        let d = config.hidden;
        Self {
            qkv: init::linear(vs / "qkv", d, 3 * d, false).ws,
            q_bias: vs.zeros("q_bias", &[d as i64]),
            v_bias: vs.zeros("v_bias", &[d as i64]),
            proj: init::linear(vs / "proj", d, d, true),
            heads: config.heads as i64,
            scale: (config.head_dim() as f64).powf(-0.5),
        }
    }

    /// `x [B, S, D]`; `key_padding [B, S]` bool, true where a key must be ignored ([PAD]).
    fn forward(&self, x: &Tensor, key_padding: Option<&Tensor>) -> Tensor {
        let (b, s, d) = x.size3().expect("attention input is [B, S, D]");
        let bias = Tensor::cat(&[&self.q_bias, &self.v_bias.zeros_like(), &self.v_bias], 0);
        let qkv = x
            .linear(&self.qkv, Some(&bias))
            .reshape([b, s, 3, self.heads, d / self.heads])
            .permute([2, 0, 3, 1, 4]); // [3, B, H, S, hd]
        let (q, k, v) = (qkv.get(0) * self.scale, qkv.get(1), qkv.get(2));
        // Logits and softmax in fp32 even under bf16: the exported graph does the same, and
        // masked -inf logits stay exact.
        let logits = q
            .to_kind(Kind::Float)
            .matmul(&k.to_kind(Kind::Float).transpose(-2, -1));
        let logits = match key_padding {
            Some(pad) => logits.masked_fill(&pad.view([b, 1, 1, s]), f64::NEG_INFINITY),
            None => logits,
        };
        let attn = logits.softmax(-1, Kind::Float).to_kind(v.kind());
        let out = attn.matmul(&v).transpose(1, 2).reshape([b, s, d]);
        self.proj.forward(&out)
    }
}

/// One modality expert: its own LayerNorm, then Linear(D, 4D) → GELU (erf) → Linear(4D, D).
#[derive(Debug)]
pub(crate) struct Expert {
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Expert {
    fn new(vs: &nn::Path, config: &ModelConfig) -> Self {
        Self {
            norm: init::layer_norm(vs / "norm", config.hidden, config.layer_norm_eps),
            fc1: init::linear(vs / "fc1", config.hidden, config.mlp_hidden(), true),
            fc2: init::linear(vs / "fc2", config.mlp_hidden(), config.hidden, true),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2
            .forward(&self.fc1.forward(&self.norm.forward(x)).gelu("none"))
    }
}

/// The feed-forward part of a block: MoME's experts, or the one FFN of the standard variant.
#[derive(Debug)]
// One value per block: its size does not matter, a Box would only add noise.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ffn {
    /// `ffn.text`, `ffn.image`, and `ffn.vl` from `vl_ffn_start` up.
    Mome {
        text: Expert,
        image: Expert,
        vl: Option<Expert>,
    },
    /// `ffn.shared`: one FFN for every modality (ablation of seed Table 5).
    Standard { shared: Expert },
}

impl Ffn {
    fn new(vs: &nn::Path, config: &ModelConfig, layer: usize) -> Self {
        match config.variant {
            Variant::Mome => Self::Mome {
                text: Expert::new(&(vs / "text"), config),
                image: Expert::new(&(vs / "image"), config),
                vl: config
                    .has_vl_expert(layer)
                    .then(|| Expert::new(&(vs / "vl"), config)),
            },
            Variant::Standard => Self::Standard {
                shared: Expert::new(&(vs / "shared"), config),
            },
        }
    }

    fn experts(&self) -> Vec<&Expert> {
        match self {
            Self::Mome { text, image, vl } => [Some(text), Some(image), vl.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            Self::Standard { shared } => vec![shared],
        }
    }

    fn forward(&self, x: &Tensor, route: Route) -> Tensor {
        let (text, image, vl) = match self {
            Self::Standard { shared } => return shared.forward(x),
            Self::Mome { text, image, vl } => (text, image, vl),
        };
        match (route, vl) {
            (Route::Text, _) => text.forward(x),
            (Route::Image, _) => image.forward(x),
            (Route::Fusion { .. }, Some(vl)) => vl.forward(x),
            // Below vl_ffn_start each token keeps its own modality's expert.
            (Route::Fusion { text_len }, None) => {
                let len = x.size()[1];
                let text_part = text.forward(&x.narrow(1, 0, text_len));
                let image_part = image.forward(&x.narrow(1, text_len, len - text_len));
                Tensor::cat(&[text_part, image_part], 1)
            }
        }
    }
}

/// One MoME (or standard) Transformer block, `blocks.{i}.*`.
#[derive(Debug)]
pub(crate) struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    gamma_1: Tensor,
    gamma_2: Tensor,
    ffn: Ffn,
    /// Stochastic depth rate of this block (training only).
    drop_path: f64,
}

impl Block {
    /// Block `layer` (0-based) of a `config.layers`-deep encoder.
    pub(crate) fn new(vs: &nn::Path, config: &ModelConfig, layer: usize) -> Self {
        let d = config.hidden as i64;
        let block = Self {
            norm1: init::layer_norm(vs / "norm1", config.hidden, config.layer_norm_eps),
            attn: Attention::new(&(vs / "attn"), config),
            gamma_1: vs.var("gamma_1", &[d], nn::Init::Const(config.layer_scale_init)),
            gamma_2: vs.var("gamma_2", &[d], nn::Init::Const(config.layer_scale_init)),
            ffn: Ffn::new(&(vs / "ffn"), config, layer),
            drop_path: drop_path_rate(config, layer),
        };
        block.rescale_residual_outputs(layer + 1);
        block
    }

    /// BEiT's `fix_init_weight`: the residual branches of layer l (1-based) write through
    /// weights divided by sqrt(2·l), so the residual stream's variance grows slowly with depth.
    fn rescale_residual_outputs(&self, layer_1based: usize) {
        let factor = (2.0 * layer_1based as f64).sqrt();
        tch::no_grad(|| {
            let mut proj = self.attn.proj.ws.shallow_clone();
            let _ = proj.g_div_scalar_(factor);
            for expert in self.ffn.experts() {
                let mut fc2 = expert.fc2.ws.shallow_clone();
                let _ = fc2.g_div_scalar_(factor);
            }
        });
    }

    pub(crate) fn forward(
        &self,
        x: &Tensor,
        key_padding: Option<&Tensor>,
        route: Route,
        train: bool,
    ) -> Tensor {
        let attn = self.attn.forward(&self.norm1.forward(x), key_padding);
        let x = x + self.drop_path(&self.gamma_1 * attn, train);
        let ffn = self.ffn.forward(&x, route);
        &x + self.drop_path(&self.gamma_2 * ffn, train)
    }

    /// Stochastic depth: drop the whole residual branch of a sample with probability p and
    /// rescale the kept ones by 1/(1-p). One draw per sample covers every token, text and image
    /// alike, so a fused pair keeps or drops the branch as one.
    fn drop_path(&self, branch: Tensor, train: bool) -> Tensor {
        if !train || self.drop_path == 0.0 {
            return branch;
        }
        let keep = 1.0 - self.drop_path;
        let b = branch.size()[0];
        let mask =
            Tensor::empty([b, 1, 1], (branch.kind(), branch.device())).bernoulli_float_(keep);
        branch * mask / keep
    }
}

/// Rate of block `layer`: linear from 0 at the first block to `config.drop_path` at the last.
fn drop_path_rate(config: &ModelConfig, layer: usize) -> f64 {
    if config.layers <= 1 {
        return 0.0;
    }
    config.drop_path * layer as f64 / (config.layers - 1) as f64
}
