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

/// How the attention of every block is written in the exported graphs.
///
/// ONNX Runtime 1.31 fuses no opset-17 attention subgraph of a pre-LN encoder: its
/// AttentionFusion starts from a LayerNormalization whose output also feeds the residual Add
/// (BERT's post-LN block) or a Conv1D Reshape (GPT-2, with its causal mask), and matches
/// LayerNormalization and Unsqueeze only in their pre-opset-13 versions. So the fused kernel
/// is written directly when asked for, and the default stays the portable graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionForm {
    /// MatMul/Add/Softmax/MatMul in standard opset-17 operators, step by step the trained
    /// forward; any ONNX runtime and TensorRT's parser read it.
    #[default]
    Standard,
    /// One `com.microsoft.Attention` node per block: ONNX Runtime's fused kernel (CPU, CUDA).
    /// TensorRT's parser refuses the node (ONNX Runtime's TensorRT provider hands it to CUDA,
    /// cutting the engine at every block), so this form is for ONNX Runtime CPU/CUDA bundles.
    OrtFused,
}

impl AttentionForm {
    /// `"standard"` or `"ort"`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::OrtFused => "ort",
        }
    }
}

impl std::fmt::Display for AttentionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AttentionForm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Self::Standard),
            "ort" => Ok(Self::OrtFused),
            _ => Err(format!(
                "unknown attention form `{s}` (expected standard or ort)"
            )),
        }
    }
}

/// The key-padding mask in the form the blocks' attention takes, built once per graph from
/// `attention_mask [B, L]` (1 = token, 0 = [PAD]; the trained model's `eq(0)`), the
/// `image_len` image keys appended after the text (never masked): for the standard form an
/// additive f32 bias `[B, 1, 1, L + image_len]`, for the fused form ONNX Runtime's int32
/// `mask_index [B, L + image_len]`.
pub(super) fn key_mask(ctx: &mut Ctx, attention_mask: &Value, image_len: i64) -> Value {
    match ctx.attention_form() {
        AttentionForm::Standard => key_padding_bias(ctx, attention_mask, image_len),
        AttentionForm::OrtFused => {
            let g = &mut ctx.g;
            let mask = g.cast(attention_mask, ElemType::I32);
            if image_len > 0 {
                let one = g.const_i32(&[], &[1]);
                g.pad(&mask, &[0, 0, 0, image_len], &one)
            } else {
                mask
            }
        }
    }
}

/// 0 for real keys, the f32 minimum for padded ones (see [`key_mask`]).
///
/// The trained model fills masked logits with -inf. Any row with one real key (every row has
/// [T_CLS]) gives the same softmax either way: exp(min + logit - rowmax) underflows to exactly
/// 0 in f32, as exp(-inf) does, and `min + logit` never overflows to -inf.
fn key_padding_bias(ctx: &mut Ctx, attention_mask: &Value, image_len: i64) -> Value {
    let g = &mut ctx.g;
    let zero_i = g.scalar_i64(0);
    let padded = g.equal(attention_mask, &zero_i);
    let minimum = g.const_f32(&[], &[f32::MIN]);
    let zero_f = g.const_f32(&[], &[0.0]);
    let bias = g.where_(&padded, &minimum, &zero_f); // [B, L]
    let bias = if image_len > 0 {
        g.pad(&bias, &[0, 0, 0, image_len], &zero_f)
    } else {
        bias
    };
    g.unsqueeze(&bias, &[1, 2])
}

/// Multi-head self-attention of block `layer`, then its output projection. Fused qkv with bias
/// `[q_bias, 0, v_bias]` (BEiT: a key bias would shift every logit of a row equally), scale
/// head_dim^-0.5, padded keys masked by `key_mask` (from [`key_mask`]).
fn attention(ctx: &mut Ctx, layer: usize, x: &Value, key_mask: Option<&Value>) -> Value {
    let prefix = format!("blocks.{layer}.attn");
    let out = match ctx.attention_form() {
        AttentionForm::Standard => standard_attention(ctx, &prefix, x, key_mask),
        AttentionForm::OrtFused => {
            let w = ctx.weight_t(&format!("{prefix}.qkv.weight"));
            let bias = qkv_bias(ctx, &prefix);
            let c = ctx.config();
            let (heads, scale) = (c.heads as i64, attention_scale(c.head_dim()));
            ctx.g.ms_attention(x, &w, &bias, key_mask, heads, scale)
        }
    };
    ctx.linear(&out, &format!("{prefix}.proj"), true)
}

/// head_dim^-0.5, as the trained model computes it.
fn attention_scale(head_dim: usize) -> f32 {
    (head_dim as f64).powf(-0.5) as f32
}

/// `[q_bias, 0, v_bias]` as one initializer `{prefix}.qkv_bias`, in the compute float type.
fn qkv_bias(ctx: &mut Ctx, prefix: &str) -> Value {
    let name = format!("{prefix}.qkv_bias");
    if ctx.g.has_initializer(&name) {
        return Value(name);
    }
    let q = ctx.weight_data(&format!("{prefix}.q_bias"));
    let v = ctx.weight_data(&format!("{prefix}.v_bias"));
    let zeros = vec![0f32; v.len()];
    let bias: Vec<f32> = [q, zeros, v].concat();
    let len = bias.len() as i64;
    ctx.float_initializer(&name, &[len], &bias)
}

/// The standard form, step by step `Attention::forward` of the trained model: q scaled before
/// the logits, logits, mask and softmax in fp32 (also in an fp16 export), `key_bias
/// [B, 1, 1, S]` added to the logits. Returns the heads merged back, `[B, S, D]`.
fn standard_attention(ctx: &mut Ctx, prefix: &str, x: &Value, key_bias: Option<&Value>) -> Value {
    let c = ctx.config();
    let (d, heads) = (c.hidden as i64, c.heads as i64);
    let head_dim = d / heads;
    let scale = attention_scale(c.head_dim());
    let qkv_bias = qkv_bias(ctx, prefix);
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
    g.reshape(&out, &[0, 0, d])
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
    key_mask: Option<&Value>,
    route: &Route,
) -> Value {
    let b = format!("blocks.{layer}");
    let h = ctx.layer_norm(x, &format!("{b}.norm1"));
    let attn = attention(ctx, layer, &h, key_mask);
    let gamma_1 = ctx.weight(&format!("{b}.gamma_1"));
    let attn = ctx.g.mul(&gamma_1, &attn);
    let x = ctx.g.add(x, &attn);
    let h = ffn(ctx, layer, &x, route);
    let gamma_2 = ctx.weight(&format!("{b}.gamma_2"));
    let h = ctx.g.mul(&gamma_2, &h);
    ctx.g.add(&x, &h)
}
