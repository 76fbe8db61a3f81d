//! BEiT-style initialization and the small layer constructors that apply it.
//!
//! Every weight matrix, the patch convolution, the embedding tables and the learnable tokens
//! ([I_CLS], mask token, positions) start from a normal of std 0.02 truncated at ±2σ (±0.04);
//! biases start at 0, LayerNorms at 1/0. The truncation point is a deliberate choice:
//! VLMo calls timm's `trunc_normal_(std=.02)` whose default bounds are the absolute values ±2
//! (±100σ, i.e. no truncation at all), while BEiT v1/v2 wrap it with `a=-std, b=std`, which cuts
//! at ±1σ and shrinks the real std to ≈0.011. Cutting at ±2σ keeps the real std near the
//! nominal one (≈0.0176) and still rules out outliers.
//!
//! After construction, BEiT's `fix_init_weight` divides the attention output projection and
//! every expert's `fc2` of layer l (1-based) by sqrt(2·l); see `mome.rs`.

use tch::{Kind, Tensor, nn};

/// Std of the truncated normal used for every weight and token.
pub(crate) const INIT_STD: f64 = 0.02;

/// A normal(0, std) sample truncated at ±2·std, by inverse-CDF sampling (as
/// `torch.nn.init.trunc_normal_`): uniform in [Φ(-2), Φ(2)] mapped through Φ⁻¹.
pub(crate) fn trunc_normal(dims: &[i64], std: f64, device: tch::Device) -> Tensor {
    // 2Φ(x) - 1 = erf(x/√2); for x = ±2 that is ±erf(√2) = ±P(|Z| < 2).
    const ERF_SQRT_2: f64 = 0.954_499_736_103_641_6;
    let bound = ERF_SQRT_2;
    let mut t = Tensor::empty(dims, (Kind::Float, device));
    let _ = t.uniform_(-bound, bound);
    let _ = t.erfinv_();
    let t = t * (std * std::f64::consts::SQRT_2);
    t.clamp(-2.0 * std, 2.0 * std)
}

/// A linear layer with a truncated-normal weight `[out, in]` and a zero bias.
pub(crate) fn linear(vs: nn::Path, in_dim: usize, out_dim: usize, bias: bool) -> nn::Linear {
    let ws = vs.var_copy(
        "weight",
        &trunc_normal(&[out_dim as i64, in_dim as i64], INIT_STD, vs.device()),
    );
    let bs = bias.then(|| vs.zeros("bias", &[out_dim as i64]));
    nn::Linear { ws, bs }
}

/// A LayerNorm over the last dimension, weight 1 and bias 0.
pub(crate) fn layer_norm(vs: nn::Path, dim: usize, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        vs,
        vec![dim as i64],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// A learnable tensor (token, position table, embedding table) drawn from the truncated normal.
pub(crate) fn token(vs: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    vs.var_copy(name, &trunc_normal(dims, INIT_STD, vs.device()))
}
