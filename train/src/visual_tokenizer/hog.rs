//! The default VQ-KD teacher: histograms of oriented gradients per patch (MaskFeat, Wei et al.
//! 2022), computed with tensor ops so that a batch costs a few convolutions.
//!
//! Per image: grayscale → central-difference gradients (replicate padding, so the image border
//! is not an edge) → unsigned orientation in `[0, π)` hard-binned into `bins`, weighted by the
//! gradient magnitude → summed over square cells (`cells_per_side²` cells per patch) → the
//! cell histograms of a patch concatenated (cell row-major, bins innermost) and L2-normalized.
//!
//! The input is `pixel_values` as the model sees them, `(x / 255 - mean) / std`. Gradients do
//! not see the mean, and with equal per-channel std (every preset) the gray image is an affine
//! map of the true luminance, which the per-patch normalization removes.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// ITU-R BT.601 luma weights (what Pillow's `convert("L")` uses); they sum to 1.
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// A patch with no gradient at all (flat colour) gives an all-zero feature, not a division by zero.
const NORM_EPS: f64 = 1e-6;

/// HOG teacher settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HogConfig {
    /// Orientation bins over `[0, π)`.
    pub bins: usize,
    /// Cells along each side of a patch; the cell side is `patch_size / cells_per_side`.
    pub cells_per_side: usize,
}

impl Default for HogConfig {
    /// 9 bins (Dalal & Triggs, MaskFeat) and 2×2 cells: 4 px cells on the tiny model's 8 px
    /// patches, 8 px cells (MaskFeat's) on base's 16 px patches.
    fn default() -> Self {
        Self {
            bins: 9,
            cells_per_side: 2,
        }
    }
}

impl HogConfig {
    /// Features per patch.
    pub fn dim(&self) -> usize {
        self.cells_per_side * self.cells_per_side * self.bins
    }
}

/// HOG features of every patch: `pixels [B, 3, H, W]` → `[B, N, cells² · bins]`, patches in
/// row-major order over the grid (the model's patch order).
pub fn hog_features(pixels: &Tensor, patch_size: i64, config: &HogConfig) -> Tensor {
    let (b, _, h, w) = pixels.size4().expect("pixels must be [B, 3, H, W]");
    let cps = config.cells_per_side as i64;
    let bins = config.bins as i64;
    let cell = patch_size / cps;
    let luma = Tensor::from_slice(&LUMA)
        .to_kind(pixels.kind())
        .to_device(pixels.device())
        .view([1, 3, 1, 1]);
    let gray = (pixels * luma).sum_dim_intlist([1i64].as_slice(), true, pixels.kind());
    let padded = gray.pad([1i64, 1, 1, 1].as_slice(), "replicate", None);
    // Central differences [-1, 0, 1], as in Dalal & Triggs and skimage's hog.
    let gx = padded.narrow(2, 1, h).narrow(3, 2, w) - padded.narrow(2, 1, h).narrow(3, 0, w);
    let gy = padded.narrow(2, 2, h).narrow(3, 1, w) - padded.narrow(2, 0, h).narrow(3, 1, w);
    let magnitude = (&gx * &gx + &gy * &gy).sqrt();
    let angle = gy.atan2(&gx).remainder(std::f64::consts::PI);
    let bin = (angle * (bins as f64 / std::f64::consts::PI))
        .floor()
        .clamp(0, bins - 1)
        .to_kind(Kind::Int64)
        .squeeze_dim(1);
    // [B, H, W, bins] → [B, bins, H, W], weighted by magnitude.
    let votes = bin
        .one_hot(bins)
        .to_kind(pixels.kind())
        .permute([0, 3, 1, 2])
        * magnitude;
    // Sum pooling over cells: avg_pool times the cell area (the scale cancels in the
    // normalization, but sums keep the hand-computed test readable).
    let cells = votes.avg_pool2d([cell, cell], [cell, cell], [0, 0], false, true, None)
        * (cell * cell) as f64;
    let (gh, gw) = (h / patch_size, w / patch_size);
    let per_patch = cells
        .view([b, bins, gh, cps, gw, cps])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([b, gh * gw, cps * cps * bins]);
    let norm = per_patch
        .norm_scalaropt_dim(2, [2i64].as_slice(), true)
        .clamp_min(NORM_EPS);
    per_patch / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 8×8 gray image (one patch of 2×2 cells of 4 px) from a row-major function of (y, x).
    fn gray_image(value: impl Fn(i64, i64) -> f32) -> Tensor {
        let plane: Vec<f32> = (0..64).map(|i| value(i / 8, i % 8)).collect();
        let plane = Tensor::from_slice(&plane).view([1, 1, 8, 8]);
        Tensor::cat(&[&plane, &plane, &plane], 1)
    }

    fn features(image: &Tensor) -> Vec<f32> {
        let out = hog_features(image, 8, &HogConfig::default());
        assert_eq!(out.size(), [1, 1, 36]);
        Vec::<f32>::try_from(out.flatten(0, -1)).unwrap()
    }

    fn assert_close(got: &[f32], expected: &[f32]) {
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((g - e).abs() < 1e-5, "feature {i}: got {g}, expected {e}");
        }
    }

    #[test]
    fn vertical_edge_puts_all_energy_in_the_horizontal_gradient_bin() {
        // Step 0 → 1 between columns 3 and 4: central differences give gx = 1 at columns 3
        // and 4, gy = 0 everywhere, so orientation 0 (bin 0). Each 4×4 cell holds one of those
        // columns: 4 votes of 1 → [4, 0, …] per cell; normalized over the 4 cells: 4 / 8 = 0.5.
        let got = features(&gray_image(|_, x| if x >= 4 { 1.0 } else { 0.0 }));
        let mut expected = [0.0f32; 36];
        for cell in 0..4 {
            expected[cell * 9] = 0.5;
        }
        assert_close(&got, &expected);
    }

    #[test]
    fn horizontal_edge_votes_for_the_vertical_gradient_bin() {
        // Same step along y: orientation π/2 falls in bin floor(4.5) = 4.
        let got = features(&gray_image(|y, _| if y >= 4 { -1.0 } else { 0.5 }));
        let mut expected = [0.0f32; 36];
        for cell in 0..4 {
            expected[cell * 9 + 4] = 0.5;
        }
        assert_close(&got, &expected);
    }

    #[test]
    fn flat_patches_give_zero_features_and_patches_follow_the_grid() {
        // A 16×16 image, bright only in the right half of the top-right patch (patch 1, row-major).
        let plane: Vec<f32> = (0..256)
            .map(|i| {
                let (y, x) = (i / 16, i % 16);
                if y < 8 && x >= 12 { 1.0 } else { 0.0 }
            })
            .collect();
        let plane = Tensor::from_slice(&plane).view([1, 1, 16, 16]);
        let image = Tensor::cat(&[&plane, &plane, &plane], 1);
        let out = hog_features(&image, 8, &HogConfig::default());
        assert_eq!(out.size(), [1, 4, 36]);
        let energy: Vec<f32> = Vec::try_from(
            out.abs()
                .sum_dim_intlist([2i64].as_slice(), false, Kind::Float)
                .view([-1]),
        )
        .unwrap();
        // The step at y = 7 | 8 below the edge also reaches the first row of patch 3.
        assert!(energy[1] >= 1.0 && energy[3] >= 1.0, "{energy:?}");
        assert!(energy[0] == 0.0 && energy[2] == 0.0, "{energy:?}");
    }
}
