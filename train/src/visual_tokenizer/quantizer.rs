//! VQ-KD's quantizer (BEiT v2 §2.1): nearest code by cosine similarity in an L2-normalized
//! codebook, k-means initialization, EMA updates, commitment loss, straight-through gradients,
//! and re-seeding of dead codes.
//!
//! The codebook and its EMA statistics are non-trainable variables of the tokenizer's
//! `VarStore`, so they are saved with the weights and ignored by the optimizer.

use tch::{Kind, Tensor, nn};

/// Lloyd iterations of the k-means initialization; spherical k-means on one batch settles in
/// a handful.
const KMEANS_ITERS: usize = 10;

/// Laplace smoothing of the EMA cluster sizes (Sonnet's VQ-VAE-EMA): a code nobody chose keeps
/// a tiny positive count, so `embed_sum / size` never divides by zero.
const LAPLACE_EPS: f64 = 1e-5;

/// Quantizer settings (part of the serialized tokenizer config).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantizerSettings {
    pub codebook_size: i64,
    pub code_dim: i64,
    pub decay: f64,
    pub commitment: f64,
    /// A code unused for this many consecutive training steps is re-seeded.
    pub dead_after_steps: i64,
}

/// One quantization of a batch of code vectors `z [M, C]`.
#[derive(Debug)]
pub(crate) struct Quantized {
    /// `z + (codebook[ids] - z).detach()`: the code's value forward, the identity backward.
    pub straight_through: Tensor,
    /// Index of the nearest code per row, `[M]` i64.
    pub ids: Tensor,
    /// `commitment · ‖z − sg(codebook[ids])‖²`, averaged.
    pub commitment_loss: Tensor,
}

#[derive(Debug)]
pub(crate) struct Quantizer {
    settings: QuantizerSettings,
    /// `[K, C]`, every row of unit norm.
    codebook: Tensor,
    /// EMA of how many vectors chose each code per step, `[K]`.
    cluster_size: Tensor,
    /// EMA of the sum of the vectors that chose each code, `[K, C]`.
    embed_sum: Tensor,
    /// Consecutive training steps in which each code was not chosen, `[K]`.
    unused_steps: Tensor,
    /// 1 once k-means has run: a loaded tokenizer must not be re-initialized.
    initialized: Tensor,
}

/// Each row (last dimension) scaled to unit length.
pub(crate) fn l2_normalize(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2, [-1i64].as_slice(), true)
        .clamp_min(1e-12)
}

impl Quantizer {
    pub(crate) fn new(path: &nn::Path, settings: QuantizerSettings) -> Self {
        let (k, c) = (settings.codebook_size, settings.code_dim);
        let codebook = path.zeros_no_train("codebook", &[k, c]);
        let cluster_size = path.zeros_no_train("cluster_size", &[k]);
        let embed_sum = path.zeros_no_train("embed_sum", &[k, c]);
        let unused_steps = path.zeros_no_train("unused_steps", &[k]);
        let initialized = path.zeros_no_train("initialized", &[1]);
        // Random unit vectors until k-means replaces them, so an untrained tokenizer still
        // tokenizes.
        tch::no_grad(|| {
            codebook.shallow_clone().copy_(&l2_normalize(&Tensor::randn(
                [k, c],
                (Kind::Float, path.device()),
            )))
        });
        Self {
            settings,
            codebook,
            cluster_size,
            embed_sum,
            unused_steps,
            initialized,
        }
    }

    pub(crate) fn codebook(&self) -> &Tensor {
        &self.codebook
    }

    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.double_value(&[0]) > 0.5
    }

    /// Nearest code of each row of `z [M, C]` (unit rows): for unit vectors the smallest
    /// Euclidean distance is the largest dot product.
    pub(crate) fn nearest(&self, z: &Tensor) -> Tensor {
        z.matmul(&self.codebook.tr()).argmax(-1, false)
    }

    /// Quantizes `z [M, C]` (unit rows). In training, the first call initializes the codebook
    /// by k-means on `z`, and every call updates the EMA statistics and re-seeds dead codes.
    pub(crate) fn forward(&mut self, z: &Tensor, train: bool) -> Quantized {
        let detached = z.detach();
        if train && !self.is_initialized() {
            self.kmeans_init(&detached);
        }
        let ids = self.nearest(&detached);
        let chosen = self.codebook.index_select(0, &ids);
        let commitment_loss = (z - &chosen).square().mean(Kind::Float) * self.settings.commitment;
        let straight_through = z + (&chosen - z).detach();
        if train {
            tch::no_grad(|| self.ema_update(&detached, &ids));
        }
        Quantized {
            straight_through,
            ids,
            commitment_loss,
        }
    }

    /// Spherical k-means on `z` (BEiT v2 initializes its codebook the same way): seeds are
    /// distinct random rows (drawn with replacement when `z` has fewer rows than codes, the
    /// duplicates then die and get re-seeded), centroids are normalized means.
    pub(crate) fn kmeans_init(&mut self, z: &Tensor) {
        let (m, k) = (z.size()[0], self.settings.codebook_size);
        let device = z.device();
        let seeds = if m >= k {
            Tensor::randperm(m, (Kind::Int64, device)).narrow(0, 0, k)
        } else {
            Tensor::randint(m, [k], (Kind::Int64, device))
        };
        let mut centroids = z.index_select(0, &seeds);
        let mut counts = Tensor::zeros([k], (Kind::Float, device));
        for _ in 0..KMEANS_ITERS {
            let ids = z.matmul(&centroids.tr()).argmax(-1, false);
            counts = ids.bincount(None::<Tensor>, k).to_kind(Kind::Float);
            let sums = Tensor::zeros([k, z.size()[1]], (Kind::Float, device)).index_add(0, &ids, z);
            // An empty cluster keeps its seed rather than collapsing to the zero vector.
            centroids = l2_normalize(&sums).where_self(&counts.gt(0).unsqueeze(1), &centroids);
        }
        tch::no_grad(|| {
            self.codebook.shallow_clone().copy_(&centroids);
            self.cluster_size.shallow_clone().copy_(&counts);
            self.embed_sum
                .shallow_clone()
                .copy_(&(&centroids * counts.unsqueeze(1)));
            let _ = self.unused_steps.shallow_clone().zero_();
            let _ = self.initialized.shallow_clone().fill_(1.0);
        });
    }

    /// EMA of cluster sizes and sums (van den Oord et al. 2017, App. A.1), Laplace-smoothed,
    /// re-normalized onto the sphere; then dead codes are re-seeded.
    fn ema_update(&mut self, z: &Tensor, ids: &Tensor) {
        let QuantizerSettings {
            codebook_size: k,
            decay,
            ..
        } = self.settings;
        let counts = ids.bincount(None::<Tensor>, k).to_kind(Kind::Float);
        let sums = Tensor::zeros_like(&self.embed_sum).index_add(0, ids, z);
        let mut cluster_size = self.cluster_size.shallow_clone();
        let _ = cluster_size
            .g_mul_scalar_(decay)
            .g_add_(&(&counts * (1.0 - decay)));
        let mut embed_sum = self.embed_sum.shallow_clone();
        let _ = embed_sum
            .g_mul_scalar_(decay)
            .g_add_(&(&sums * (1.0 - decay)));
        let total = cluster_size.sum(Kind::Float);
        let smoothed = (&cluster_size + LAPLACE_EPS) / (&total + k as f64 * LAPLACE_EPS) * &total;
        let means = &embed_sum / smoothed.unsqueeze(1);
        self.codebook.shallow_clone().copy_(&l2_normalize(&means));

        let mut unused = self.unused_steps.shallow_clone();
        let _ = unused.g_add_scalar_(1.0);
        let fresh = unused.zeros_like();
        unused.copy_(&fresh.where_self(&counts.gt(0), &unused));
        self.reseed_dead(z);
    }

    /// Codes unused for `dead_after_steps` steps take random current encoder outputs, so the
    /// codebook follows the encoder instead of keeping stale directions nobody picks.
    pub(crate) fn reseed_dead(&mut self, z: &Tensor) -> i64 {
        let dead = self
            .unused_steps
            .ge(self.settings.dead_after_steps as f64)
            .nonzero()
            .squeeze_dim(1);
        let n = dead.size()[0];
        if n == 0 {
            return 0;
        }
        let picks = Tensor::randint(z.size()[0], [n], (Kind::Int64, z.device()));
        let vectors = z.index_select(0, &picks);
        tch::no_grad(|| {
            let _ = self
                .codebook
                .shallow_clone()
                .index_copy_(0, &dead, &vectors);
            // One vector's worth of evidence: the next assignments move it quickly.
            let ones = Tensor::ones([n], (Kind::Float, z.device()));
            let _ = self
                .cluster_size
                .shallow_clone()
                .index_copy_(0, &dead, &ones);
            let _ = self
                .embed_sum
                .shallow_clone()
                .index_copy_(0, &dead, &vectors);
            let _ = self
                .unused_steps
                .shallow_clone()
                .index_copy_(0, &dead, &ones.zeros_like());
        });
        n
    }

    #[cfg(test)]
    pub(crate) fn set_codebook(&mut self, codes: &Tensor) {
        let counts = Tensor::ones([codes.size()[0]], (Kind::Float, codes.device()));
        tch::no_grad(|| {
            self.codebook.shallow_clone().copy_(codes);
            self.cluster_size.shallow_clone().copy_(&counts);
            self.embed_sum.shallow_clone().copy_(codes);
            let _ = self.initialized.shallow_clone().fill_(1.0);
        });
    }

    #[cfg(test)]
    pub(crate) fn unused_steps(&self) -> &Tensor {
        &self.unused_steps
    }
}

#[cfg(test)]
#[path = "quantizer_tests.rs"]
mod tests;
