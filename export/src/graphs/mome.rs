//! The MoME block (DESIGN.md §4.3), mirroring `train/src/model/mome.rs`:
//!
//! ```text
//! x = x + gamma_1 * Attn(norm1(x), key_mask)
//! x = x + gamma_2 * FFN_expert(norm_expert(x))
//! ```
//! (drop path is training-only and absent here.)

use vlbeit_core::config::Variant;

use super::Ctx;
use crate::onnx::{ElemType, Value};

/// Which expert(s) a block applies, decided by the encoder mode.
#[derive(Debug, Clone)]
pub(super) enum Route {
    Text,
    Image,
    /// `concat(text, image)`: the first `text_len` tokens (a 1-element i64 value) are text.
    Fusion {
        text_len: Value,
    },
}

/// Multi-head self-attention of block `layer`. Fused qkv with bias `[q_bias, 0, v_bias]` (BEiT:
/// a key bias would shift every logit of a row equally), scale head_dim^-0.5 on q, logits and
/// softmax in fp32 (also in an fp16 export), padded keys masked by `key_bias [B, 1, 1, S]` (0 or the f32 minimum).
///
/// Written as MatMul/Add/Softmax/MatMul so ONNX Runtime's attention fusion can recognise it.
fn attention(ctx: &mut Ctx, layer: usize, x: &Value, key_bias: Option<&Value>) -> Value {
    let c = ctx.config();
    let (d, heads) = (c.hidden as i64, c.heads as i64);
    let head_dim = d / heads;
    let scale = (c.head_dim() as f64).powf(-0.5) as f32;
    let prefix = format!("blocks.{layer}.attn");
    let bias_name = format!("{prefix}.qkv_bias");
    let qkv_bias = if ctx.g.has_initializer(&bias_name) {
        Value(bias_name)
    } else {
        let q = ctx.weight_data(&format!("{prefix}.q_bias"));
        let v = ctx.weight_data(&format!("{prefix}.v_bias"));
        let zeros = vec![0f32; v.len()];
        let bias: Vec<f32> = [q, zeros, v].concat();
        ctx.float_initializer(&bias_name, &[3 * d], &bias)
    };
    let w = ctx.weight_t(&format!("{prefix}.qkv.weight"));
    let scale = ctx.const_float(&[], &[scale]);
    let f16 = ctx.is_f16();
    let g = &mut ctx.g;
    let qkv = g.matmul(x, &w);
    let qkv = g.add(&qkv, &qkv_bias);
    let qkv = g.reshape(&qkv, &[0, 0, 3, heads, head_dim]);
    let qkv = g.transpose(&qkv, &[2, 0, 3, 1, 4]); // [3, B, H, S, hd]
    let (i0, i1, i2) = (g.scalar_i64(0), g.scalar_i64(1), g.scalar_i64(2));
    let q = g.gather(&qkv, &i0, 0);
    let k = g.gather(&qkv, &i1, 0);
    let v = g.gather(&qkv, &i2, 0);
    let q = g.mul(&q, &scale);
    let k_t = g.transpose(&k, &[0, 1, 3, 2]);
    let logits = g.matmul(&q, &k_t); // [B, H, S, S]
    // The mask and the softmax run in fp32 (the f32-minimum key bias has no fp16 equivalent).
    let logits = if f16 {
        g.cast(&logits, ElemType::F32)
    } else {
        logits
    };
    let logits = match key_bias {
        Some(bias) => g.add(&logits, bias),
        None => logits,
    };
    let attn = g.softmax(&logits, -1);
    let attn = if f16 {
        g.cast(&attn, ElemType::F16)
    } else {
        attn
    };
    let out = g.matmul(&attn, &v); // [B, H, S, hd]
    let out = g.transpose(&out, &[0, 2, 1, 3]);
    let out = g.reshape(&out, &[0, 0, d]);
    ctx.linear(&out, &format!("{prefix}.proj"), true)
}

/// One expert `{prefix}`: LayerNorm → Linear(D, 4D) → GELU (erf) → Linear(4D, D).
fn expert(ctx: &mut Ctx, prefix: &str, x: &Value) -> Value {
    let h = ctx.layer_norm(x, &format!("{prefix}.norm"));
    let h = ctx.linear(&h, &format!("{prefix}.fc1"), true);
    let h = gelu_erf(ctx, &h);
    ctx.linear(&h, &format!("{prefix}.fc2"), true)
}

/// GELU(x) = x · ½(1 + erf(x/√2)) (tch `gelu("none")`), in the Div/Erf/Add/Mul/Mul order that
/// ONNX Runtime's GeluFusion matches.
pub(super) fn gelu_erf(ctx: &mut Ctx, x: &Value) -> Value {
    let sqrt2 = ctx.const_float(&[], &[std::f32::consts::SQRT_2]);
    let one = ctx.const_float(&[], &[1.0]);
    let half = ctx.const_float(&[], &[0.5]);
    let g = &mut ctx.g;
    let h = g.div(x, &sqrt2);
    let h = g.erf(&h);
    let h = g.add(&h, &one);
    let h = g.mul(x, &h);
    g.mul(&h, &half)
}

/// The feed-forward part of block `layer` under `route` (MoME routing, or the shared FFN).
fn ffn(ctx: &mut Ctx, layer: usize, x: &Value, route: &Route) -> Value {
    let prefix = format!("blocks.{layer}.ffn");
    if ctx.config().variant == Variant::Standard {
        return expert(ctx, &format!("{prefix}.shared"), x);
    }
    let has_vl = ctx.config().has_vl_expert(layer);
    match route {
        Route::Text => expert(ctx, &format!("{prefix}.text"), x),
        Route::Image => expert(ctx, &format!("{prefix}.image"), x),
        Route::Fusion { .. } if has_vl => expert(ctx, &format!("{prefix}.vl"), x),
        // Below vl_ffn_start each token keeps its own modality's expert.
        Route::Fusion { text_len } => {
            let zero = ctx.g.const_i64(&[0]);
            let end = ctx.g.const_i64(&[i64::MAX]);
            let text = ctx.g.slice(x, &zero, text_len, &[1]);
            let image = ctx.g.slice(x, text_len, &end, &[1]);
            let text = expert(ctx, &format!("{prefix}.text"), &text);
            let image = expert(ctx, &format!("{prefix}.image"), &image);
            ctx.g.concat(&[&text, &image], 1)
        }
    }
}

/// Block `layer`: pre-LN attention and FFN residual branches, each scaled by its gamma.
pub(super) fn block(
    ctx: &mut Ctx,
    layer: usize,
    x: &Value,
    key_bias: Option<&Value>,
    route: &Route,
) -> Value {
    let b = format!("blocks.{layer}");
    let h = ctx.layer_norm(x, &format!("{b}.norm1"));
    let attn = attention(ctx, layer, &h, key_bias);
    let gamma_1 = ctx.weight(&format!("{b}.gamma_1"));
    let attn = ctx.g.mul(&gamma_1, &attn);
    let x = ctx.g.add(x, &attn);
    let h = ffn(ctx, layer, &x, route);
    let gamma_2 = ctx.weight(&format!("{b}.gamma_2"));
    let h = ctx.g.mul(&gamma_2, &h);
    ctx.g.add(&x, &h)
}
