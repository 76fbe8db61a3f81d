//! AdamW with parameter groups, gradient clipping and the warmup + cosine schedule of the seed
//! (§3.1; DESIGN.md §4.7).
//!
//! Written here rather than taken from libtorch's C++ optimizers because the moments must be
//! saved and restored for an exact resume, and tch does not expose the C++ optimizer state.

use std::collections::BTreeMap;

use tch::{Kind, Tensor, nn};

/// Names that never get weight decay besides biases and other 1-D parameters: tokens and
/// position tables (BEiT's `no_weight_decay` set).
const NO_DECAY_NAMES: [&str; 4] = [
    "embed.image_pos",
    "embed.text_pos",
    "embed.image_cls",
    "embed.mask_token",
];

/// Whether a parameter decays: not biases, norms, layer-scale gammas, q/v biases, the logit
/// scale (all 1-D or scalars) nor tokens and position tables.
pub fn decays(name: &str, shape: &[i64]) -> bool {
    shape.len() > 1 && !NO_DECAY_NAMES.contains(&name)
}

/// BEiT's layer-wise learning-rate decay: parameter `name` of a `layers`-block encoder gets
/// `decay^(layers + 1 - id)`, where id is 0 for `embed.*`, `i + 1` for `blocks.{i}.*` and
/// `layers + 1` for everything above the blocks (final norm, heads), which keep the full rate.
pub fn layer_decay_scale(name: &str, layers: usize, decay: f64) -> f64 {
    let id = if name.starts_with("embed.") {
        0
    } else if let Some(rest) = name.strip_prefix("blocks.") {
        rest.split('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .map_or(layers + 1, |i| i + 1)
    } else {
        layers + 1
    };
    decay.powi((layers + 1 - id.min(layers + 1)) as i32)
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The seed's pretraining values: β = (0.9, 0.999), weight decay 0.05.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        }
    }
}

struct Param {
    name: String,
    var: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
    /// Multiplies the learning rate of this parameter (layer-wise decay); 1 by default.
    lr_scale: f64,
}

/// Decoupled-weight-decay Adam over the trainable variables of a `VarStore`.
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<Param>,
    step: i64,
}

impl AdamW {
    /// Takes every trainable variable of `vs`, sorted by name (a stable order for the state file).
    pub fn new(vs: &nn::VarStore, config: AdamWConfig) -> Self {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let params = vars
            .into_iter()
            .filter(|(_, var)| var.requires_grad())
            .map(|(name, var)| {
                let decay = decays(&name, &var.size());
                Param {
                    exp_avg: var.zeros_like().set_requires_grad(false),
                    exp_avg_sq: var.zeros_like().set_requires_grad(false),
                    name,
                    var,
                    decay,
                    lr_scale: 1.0,
                }
            })
            .collect();
        Self {
            config,
            params,
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Names of the parameters with and without weight decay.
    pub fn groups(&self) -> (Vec<&str>, Vec<&str>) {
        let (decay, no_decay): (Vec<_>, Vec<_>) = self.params.iter().partition(|p| p.decay);
        (
            decay.iter().map(|p| p.name.as_str()).collect(),
            no_decay.iter().map(|p| p.name.as_str()).collect(),
        )
    }

    /// Sets each parameter's learning-rate multiplier from its name (BEiT's layer-wise decay:
    /// see [`layer_decay_scale`]).
    pub fn set_lr_scales(&mut self, scale: impl Fn(&str) -> f64) {
        for p in &mut self.params {
            p.lr_scale = scale(&p.name);
        }
    }

    /// `(name, learning-rate multiplier)` of every parameter.
    pub fn lr_scales(&self) -> Vec<(&str, f64)> {
        self.params
            .iter()
            .map(|p| (p.name.as_str(), p.lr_scale))
            .collect()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.var.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before
    /// clipping (NaN or infinite when a gradient is).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .map(|p| p.var.grad())
                .filter(|g| g.defined())
                .collect();
            if grads.is_empty() {
                return 0.0;
            }
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.to_kind(Kind::Float).norm())
                .collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            if total.is_finite() && total > max_norm {
                let scale = max_norm / (total + 1e-6);
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(scale);
                }
            }
            total
        })
    }

    /// One update with learning rate `lr` (PyTorch's AdamW, bias-corrected).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.var.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = lr * p.lr_scale;
                if p.decay && weight_decay > 0.0 {
                    let _ = p.var.g_mul_scalar_(1.0 - lr * weight_decay);
                }
                let _ = p.exp_avg.g_mul_scalar_(beta1);
                let _ = p.exp_avg.g_add_(&(&grad * (1.0 - beta1)));
                let _ = p.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = p.exp_avg_sq.g_add_(&(&grad * &grad * (1.0 - beta2)));
                let denom = (&p.exp_avg_sq / bias2).sqrt() + eps;
                let update = (&p.exp_avg / &denom) * (lr / bias1);
                let _ = p.var.g_sub_(&update);
            }
        });
    }

    /// The optimizer state as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`) plus the step.
    pub fn state(&self) -> (i64, Vec<(String, Tensor)>) {
        let mut tensors = Vec::with_capacity(self.params.len() * 2);
        for p in &self.params {
            tensors.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            tensors.push((
                format!("exp_avg_sq.{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
        }
        (self.step, tensors)
    }

    /// Restores a state saved with [`AdamW::state`]; every parameter's moments must be present
    /// with the parameter's shape.
    pub fn load_state(
        &mut self,
        step: i64,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<(), String> {
        for p in &mut self.params {
            for (prefix, slot) in [
                ("exp_avg", &mut p.exp_avg),
                ("exp_avg_sq", &mut p.exp_avg_sq),
            ] {
                let key = format!("{prefix}.{}", p.name);
                let saved = tensors
                    .get(&key)
                    .ok_or_else(|| format!("optimizer state lacks `{key}`"))?;
                if saved.size() != p.var.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, the parameter has {:?}",
                        saved.size(),
                        p.var.size()
                    ));
                }
                tch::no_grad(|| slot.copy_(saved));
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to `min_lr` at `total`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub total: u64,
}

impl Schedule {
    /// Learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.min_lr
            + 0.5 * (self.peak - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// The seed's peak learning rate (2e-3 at batch 6144), scaled linearly to `batch`.
pub fn scaled_peak_lr(batch: usize) -> f64 {
    2e-3 * batch as f64 / 6144.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn layer_decay_scales_grow_towards_the_top() {
        let s = |n: &str| layer_decay_scale(n, 4, 0.5);
        assert_eq!(s("embed.patch.weight"), 0.5f64.powi(5));
        assert_eq!(s("blocks.0.attn.qkv.weight"), 0.5f64.powi(4));
        assert_eq!(s("blocks.3.gamma_1"), 0.5);
        assert_eq!(s("norm.weight"), 1.0);
        assert_eq!(s("heads.vqa.fc1.weight"), 1.0);
        assert_eq!(layer_decay_scale("blocks.2.x", 4, 1.0), 1.0);
    }

    #[test]
    fn decay_groups_follow_beit() {
        assert!(decays("blocks.0.attn.qkv.weight", &[384, 128]));
        assert!(decays("embed.word.weight", &[100, 128]));
        assert!(!decays("blocks.0.attn.qkv.bias", &[384]));
        assert!(!decays("blocks.0.norm1.weight", &[128]));
        assert!(!decays("blocks.0.gamma_1", &[128]));
        assert!(!decays("heads.itc.logit_scale", &[]));
        assert!(!decays("embed.image_pos", &[1, 65, 128]));
        assert!(!decays("embed.mask_token", &[1, 1, 128]));
    }

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let s = Schedule {
            peak: 1e-3,
            min_lr: 1e-5,
            warmup: 10,
            total: 110,
        };
        assert!((s.lr(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-9);
        assert!((s.lr(110) - 1e-5).abs() < 1e-12);
        assert!(s.lr(500) >= 1e-5);
        assert!((scaled_peak_lr(6144) - 2e-3).abs() < 1e-15);
    }

    /// One step against a hand computation of PyTorch's AdamW formula.
    #[test]
    fn adamw_matches_the_reference_update() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[0.5f32]));
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        let loss =
            (&w * Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2])).sum(Kind::Float) + &b * 2.0;
        opt.zero_grad();
        loss.sum(Kind::Float).backward();
        let lr = 0.1;
        opt.step(lr);
        // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) = ±lr; decay on w only.
        let got: Vec<f32> = Vec::try_from(w.flatten(0, -1)).unwrap();
        let expect = [1.0 * (1.0 - lr * 0.05) - lr, -2.0 * (1.0 - lr * 0.05) - lr];
        for (g, e) in got.iter().zip(expect) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expect:?}");
        }
        let got_b = b.double_value(&[0]);
        assert!((got_b - (0.5 - lr)).abs() < 1e-6, "{got_b}");
    }

    #[test]
    fn clipping_bounds_the_global_norm_and_state_round_trips() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]));
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        opt.zero_grad();
        (&w * &w).sum(Kind::Float).backward(); // grad = 2w, norm 10
        let norm = opt.clip_grad_norm(1.0);
        assert!((norm - 10.0).abs() < 1e-4);
        let clipped = w.grad().norm().double_value(&[]);
        assert!((clipped - 1.0).abs() < 1e-4, "{clipped}");
        opt.step(0.01);

        let (step, state) = opt.state();
        let saved: BTreeMap<String, Tensor> =
            state.into_iter().map(|(k, v)| (k, v.copy())).collect();
        let mut other = AdamW::new(&vs, AdamWConfig::default());
        other.load_state(step, &saved).unwrap();
        assert_eq!(other.steps(), 1);
        let mut broken: BTreeMap<String, Tensor> =
            saved.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
        broken.remove("exp_avg.w");
        let err = AdamW::new(&vs, AdamWConfig::default())
            .load_state(1, &broken)
            .unwrap_err();
        assert!(err.contains("exp_avg.w"), "{err}");
    }
}
