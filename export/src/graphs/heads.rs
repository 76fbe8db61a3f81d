//! Retrieval and reranking heads (DESIGN.md §4.4), mirroring `train/src/model/heads.rs`, and
//! the task heads of fine-tuning that the encoders can serve: VQA on the fusion encoder's pooled
//! output and classification on the image encoder's states (team contract, `heads.vqa.*`,
//! `heads.classify.*`).

use super::Ctx;
use super::mome::gelu_erf;
use crate::checkpoint::{CLASSIFY_HEAD, VQA_HEAD};
use crate::onnx::Value;

/// Image-mode states `[B, 1 + N, D]` → L2-normalized projection of [I_CLS], `[B, E]`.
pub(super) fn image_embeds(ctx: &mut Ctx, states: &Value) -> Value {
    let cls = first_token(ctx, states);
    let proj = ctx.linear(&cls, "heads.itc.image_proj", false);
    l2_normalize(ctx, &proj)
}

/// Text-mode states `[B, L, D]` → L2-normalized projection of [T_CLS], `[B, E]`.
pub(super) fn text_embeds(ctx: &mut Ctx, states: &Value) -> Value {
    let cls = first_token(ctx, states);
    let proj = ctx.linear(&cls, "heads.itc.text_proj", false);
    l2_normalize(ctx, &proj)
}

/// Fused states → tanh(dense([T_CLS])), `[B, D]`.
pub(super) fn pooled(ctx: &mut Ctx, states: &Value) -> Value {
    let cls = first_token(ctx, states);
    let h = ctx.linear(&cls, "heads.pooler.dense", true);
    ctx.g.tanh(&h)
}

/// Pooled `[B, D]` → match / no-match logits `[B, 2]` (index 1 = match).
pub(super) fn itm(ctx: &mut Ctx, pooled: &Value) -> Value {
    ctx.linear(pooled, "heads.itm", true)
}

/// Pooled `[B, D]` → answer logits `[B, A]`: fc1 (D→2D) → LayerNorm (fp32) → GELU (erf) →
/// fc2 (2D→A), in the compute float type.
pub(super) fn vqa_logits(ctx: &mut Ctx, pooled: &Value) -> Value {
    let h = ctx.linear(pooled, &format!("{VQA_HEAD}.fc1"), true);
    let h = ctx.layer_norm(&h, &format!("{VQA_HEAD}.norm"));
    let h = gelu_erf(ctx, &h);
    ctx.linear(&h, &format!("{VQA_HEAD}.fc2"), true)
}

/// Final image states `[B, 1 + N, D]` (f32) → class logits `[B, C]`: mean over the N patch
/// states ([I_CLS] excluded), LayerNorm, fc. The mean and the LayerNorm run in fp32 in both
/// precisions (an fp16 sum over N patches loses digits), fc in the compute float type.
pub(super) fn class_logits(ctx: &mut Ctx, states_f32: &Value) -> Value {
    let patches = ctx.g.slice_const(states_f32, 1, i64::MAX, 1);
    let mean = ctx.g.reduce_mean(&patches, &[1], false);
    let h = ctx.layer_norm_f32(&mean, &format!("{CLASSIFY_HEAD}.norm"));
    let h = ctx.cast_compute(&h);
    ctx.linear(&h, &format!("{CLASSIFY_HEAD}.fc"), true)
}

/// `states.select(1, 0)`.
fn first_token(ctx: &mut Ctx, states: &Value) -> Value {
    let zero = ctx.g.scalar_i64(0);
    ctx.g.gather(states, &zero, 1)
}

/// x / max(‖x‖₂, 1e-12) over the last axis, as `torch.nn.functional.normalize`; computed in
/// fp32 (an fp16 `x` is cast first), so the result is f32 in both precisions.
fn l2_normalize(ctx: &mut Ctx, x: &Value) -> Value {
    let x = &ctx.cast_f32(x);
    let g = &mut ctx.g;
    let squares = g.mul(x, x);
    let sum = g.reduce_sum(&squares, &[-1], true);
    let norm = g.sqrt(&sum);
    let floor = g.const_f32(&[], &[1e-12]);
    let norm = g.max(&norm, &floor);
    g.div(x, &norm)
}
