//! Pretraining and retrieval heads (DESIGN.md §4.4), `heads.*`. Task heads of fine-tuning
//! (vqa, nlvr2, classify, segment) live with their tasks and add their weights under `heads.`.

use tch::{Tensor, nn, nn::Module};
use vlbeit_core::config::ModelConfig;

use super::init;

/// Initial ITC temperature 0.07 (CLIP), stored as ln(1/0.07).
const ITC_INIT_TEMPERATURE: f64 = 0.07;

/// `heads.mlm`, BERT's prediction head: dense D→D, GELU, LayerNorm, decoder D→V.
#[derive(Debug)]
struct MlmHead {
    dense: nn::Linear,
    norm: nn::LayerNorm,
    decoder: nn::Linear,
}

/// The heads of pretraining (MLM, MIM), retrieval (ITC) and reranking (pooler + ITM).
#[derive(Debug)]
pub struct Heads {
    mlm: MlmHead,
    mim: nn::Linear,
    itc_image_proj: nn::Linear,
    itc_text_proj: nn::Linear,
    logit_scale: Tensor,
    pooler: nn::Linear,
    itm: nn::Linear,
}

impl Heads {
    pub(crate) fn new(vs: &nn::Path, config: &ModelConfig) -> Self {
        let d = config.hidden;
        let mlm = vs / "mlm";
        let itc = vs / "itc";
        Self {
            mlm: MlmHead {
                dense: init::linear(&mlm / "dense", d, d, true),
                norm: init::layer_norm(&mlm / "norm", d, config.layer_norm_eps),
                decoder: init::linear(&mlm / "decoder", d, config.vocab_size, true),
            },
            mim: init::linear(vs / "mim", d, config.visual_vocab, true),
            itc_image_proj: init::linear(&itc / "image_proj", d, config.embed_dim, false),
            itc_text_proj: init::linear(&itc / "text_proj", d, config.embed_dim, false),
            logit_scale: itc.var(
                "logit_scale",
                &[],
                nn::Init::Const((1.0 / ITC_INIT_TEMPERATURE).ln()),
            ),
            pooler: init::linear(vs / "pooler" / "dense", d, d, true),
            itm: init::linear(vs / "itm", d, 2, true),
        }
    }

    /// Text token states `[.., D]` → vocabulary logits `[.., V]` (MLM, MVLM text).
    pub fn mlm(&self, text_states: &Tensor) -> Tensor {
        let h = self.mlm.dense.forward(text_states).gelu("none");
        self.mlm.decoder.forward(&self.mlm.norm.forward(&h))
    }

    /// Patch states `[.., D]` → visual-token logits `[.., visual_vocab]` (MIM, MVLM image).
    pub fn mim(&self, patch_states: &Tensor) -> Tensor {
        self.mim.forward(patch_states)
    }

    /// Image-mode states `[B, 1 + N, D]` → L2-normalized projection of [I_CLS], `[B, E]`.
    pub fn image_embeds(&self, image_states: &Tensor) -> Tensor {
        l2_normalize(&self.itc_image_proj.forward(&image_states.select(1, 0)))
    }

    /// Text-mode states `[B, L, D]` → L2-normalized projection of [T_CLS], `[B, E]`.
    pub fn text_embeds(&self, text_states: &Tensor) -> Tensor {
        l2_normalize(&self.itc_text_proj.forward(&text_states.select(1, 0)))
    }

    /// ln of the ITC logit scale (a scalar); similarities are multiplied by its `exp()`.
    pub fn logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }

    /// Fused states `[B, L + 1 + N, D]` → tanh(dense([T_CLS])), `[B, D]`.
    pub fn pooled(&self, fused_states: &Tensor) -> Tensor {
        self.pooler.forward(&fused_states.select(1, 0)).tanh()
    }

    /// Pooled `[B, D]` → match / no-match logits `[B, 2]` (index 1 = match).
    pub fn itm(&self, pooled: &Tensor) -> Tensor {
        self.itm.forward(pooled)
    }
}

/// x / max(‖x‖₂, 1e-12) over the last dimension, as `torch.nn.functional.normalize`.
fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2.0, [-1i64], true).clamp_min(1e-12);
    x / norm
}
