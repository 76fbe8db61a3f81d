//! Training augmentations (DESIGN.md §4.7) on decoded [`ImageF32`] images: random resized crop,
//! horizontal flip and colour jitter, with the pair rules that keep captions true.
//!
//! Geometry goes through the core's `crop` / `resize` / `flip_horizontal`, so augmented and
//! evaluation images share one resize implementation.

use vlbeit_core::PreprocessConfig;
use vlbeit_core::preprocess::{ImageF32, PreprocessError};
use vlbeit_core::rng::Rng;

/// Colour jitter strengths: each factor is drawn from `[1 - s, 1 + s]` (torchvision's
/// `ColorJitter`). There is no hue: hue shifts would turn "a red circle" into a lie.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
}

impl Default for ColorJitter {
    fn default() -> Self {
        Self {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
        }
    }
}

/// Augmentation settings. `Default` suits the synthetic scenes.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Area fraction range of the random resized crop for images. BEiT uses (0.08, 1) on
    /// ImageNet; the small scenes hold few objects, so (0.5, 1) keeps most of each image.
    pub crop_scale: (f64, f64),
    /// Crop scale for pairs: milder, because a crop that drops an object makes a caption that
    /// lists or counts the objects false.
    pub pair_crop_scale: (f64, f64),
    /// Aspect ratio range (width / height) of the crop.
    pub crop_ratio: (f64, f64),
    pub flip_prob: f64,
    /// Applied to images only, never to pairs (colour words must stay true).
    pub jitter: Option<ColorJitter>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_scale: (0.5, 1.0),
            pair_crop_scale: (0.8, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_prob: 0.5,
            jitter: Some(ColorJitter::default()),
        }
    }
}

impl AugmentConfig {
    pub fn with_crop_scale(mut self, lo: f64, hi: f64) -> Self {
        self.crop_scale = (lo, hi);
        self
    }

    pub fn with_pair_crop_scale(mut self, lo: f64, hi: f64) -> Self {
        self.pair_crop_scale = (lo, hi);
        self
    }

    pub fn with_flip_prob(mut self, p: f64) -> Self {
        self.flip_prob = p;
        self
    }

    pub fn with_jitter(mut self, jitter: Option<ColorJitter>) -> Self {
        self.jitter = jitter;
        self
    }

    /// An image for MIM: crop, flip, jitter → `pixel_values` `[3, image_size, image_size]`.
    pub fn image(
        &self,
        image: &ImageF32,
        pre: &PreprocessConfig,
        rng: &mut Rng,
    ) -> Result<Vec<f32>, PreprocessError> {
        let mut out = random_resized_crop(image, self.crop_scale, self.crop_ratio, pre, rng)?;
        if rng.bernoulli(self.flip_prob) {
            out.flip_horizontal();
        }
        if let Some(jitter) = &self.jitter {
            jitter.apply(&mut out, rng);
        }
        Ok(out.to_pixel_values(pre))
    }

    /// A pair for MVLM: crop and flip, the caption's left/right swapped with the flip, no
    /// jitter. Returns `pixel_values` and the (possibly rewritten) caption.
    pub fn pair(
        &self,
        image: &ImageF32,
        caption: &str,
        pre: &PreprocessConfig,
        rng: &mut Rng,
    ) -> Result<(Vec<f32>, String), PreprocessError> {
        let mut out = random_resized_crop(image, self.pair_crop_scale, self.crop_ratio, pre, rng)?;
        let caption = if rng.bernoulli(self.flip_prob) {
            out.flip_horizontal();
            swap_left_right(caption)
        } else {
            caption.to_owned()
        };
        Ok((out.to_pixel_values(pre), caption))
    }
}

/// torchvision's `RandomResizedCrop`: up to 10 draws of an area fraction in `scale` and a
/// log-uniform aspect ratio in `ratio`; if none fits, a center crop clamped to `ratio`. The
/// crop is resized to `image_size²` with the config's interpolation.
pub fn random_resized_crop(
    image: &ImageF32,
    scale: (f64, f64),
    ratio: (f64, f64),
    pre: &PreprocessConfig,
    rng: &mut Rng,
) -> Result<ImageF32, PreprocessError> {
    let (x, y, w, h) = crop_box(image.width(), image.height(), scale, ratio, rng);
    let side = pre.image_size;
    image
        .crop(x, y, w, h)?
        .resize(side, side, pre.interpolation)
}

/// The crop rectangle `(x, y, width, height)` of [`random_resized_crop`].
pub(crate) fn crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut Rng,
) -> (u32, u32, u32, u32) {
    let (fw, fh) = (f64::from(width), f64::from(height));
    let area = fw * fh;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if w > 0.0 && h > 0.0 && w <= fw && h <= fh {
            let (w, h) = (w as u32, h as u32);
            let y = rng.index((height - h + 1) as usize) as u32;
            let x = rng.index((width - w + 1) as usize) as u32;
            return (x, y, w, h);
        }
    }
    let in_ratio = fw / fh;
    let (w, h) = if in_ratio < ratio.0 {
        (width, ((fw / ratio.0).round() as u32).clamp(1, height))
    } else if in_ratio > ratio.1 {
        (((fh * ratio.1).round() as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

impl ColorJitter {
    /// Brightness, contrast and saturation with independent factors, in a random order (as
    /// torchvision), on the 0..=255 scale, clamped after each step.
    pub fn apply(&self, image: &mut ImageF32, rng: &mut Rng) {
        let mut order = [0usize, 1, 2];
        rng.shuffle(&mut order);
        for op in order {
            let (strength, f): (f64, fn(&mut ImageF32, f32)) = match op {
                0 => (self.brightness, brightness),
                1 => (self.contrast, contrast),
                _ => (self.saturation, saturation),
            };
            if strength > 0.0 {
                let factor = rng.uniform((1.0 - strength).max(0.0), 1.0 + strength);
                f(image, factor as f32);
            }
        }
    }
}

fn brightness(image: &mut ImageF32, factor: f32) {
    for v in image.data_mut() {
        *v = (*v * factor).clamp(0.0, 255.0);
    }
}

/// ITU-R 601 luma, as torchvision's `rgb_to_grayscale`.
fn grayscale(image: &ImageF32) -> Vec<f32> {
    let (r, g, b) = (image.plane(0), image.plane(1), image.plane(2));
    (0..r.len())
        .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
        .collect()
}

/// Blends towards the mean gray level.
fn contrast(image: &mut ImageF32, factor: f32) {
    let gray = grayscale(image);
    let mean = gray.iter().map(|&v| f64::from(v)).sum::<f64>() / gray.len() as f64;
    let mean = mean as f32;
    for v in image.data_mut() {
        *v = (factor * *v + (1.0 - factor) * mean).clamp(0.0, 255.0);
    }
}

/// Blends towards each pixel's gray level.
fn saturation(image: &mut ImageF32, factor: f32) {
    let gray = grayscale(image);
    for plane in image.data_mut().chunks_exact_mut(gray.len()) {
        for (v, &g) in plane.iter_mut().zip(&gray) {
            *v = (factor * *v + (1.0 - factor) * g).clamp(0.0, 255.0);
        }
    }
}

/// Swaps the whole words "left" and "right" (any case; the first letter's case is kept), so a
/// caption stays true for the mirrored image. "leftmost" or "bright" are left alone.
pub fn swap_left_right(caption: &str) -> String {
    let mut out = String::with_capacity(caption.len() + 8);
    let mut rest = caption;
    while !rest.is_empty() {
        let word_len = rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len());
        if word_len == 0 {
            let c = rest.chars().next().expect("rest is not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let word = &rest[..word_len];
        let swapped = match word.to_lowercase().as_str() {
            "left" => Some("right"),
            "right" => Some("left"),
            _ => None,
        };
        match swapped {
            Some(new) if word.chars().all(|c| c.is_uppercase()) => {
                out.push_str(&new.to_uppercase())
            }
            Some(new) if word.starts_with(char::is_uppercase) => {
                out.push_str(&new[..1].to_uppercase());
                out.push_str(&new[1..]);
            }
            Some(new) => out.push_str(new),
            None => out.push_str(word),
        }
        rest = &rest[word_len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_and_right_swap_as_whole_words() {
        assert_eq!(
            swap_left_right("a red circle left of a star, right side. Left? RIGHT"),
            "a red circle right of a star, left side. Right? LEFT"
        );
        assert_eq!(
            swap_left_right("leftmost bright upright"),
            "leftmost bright upright"
        );
        assert_eq!(swap_left_right(""), "");
    }

    #[test]
    fn crop_boxes_follow_scale_and_ratio() {
        let mut rng = Rng::new(1);
        for _ in 0..500 {
            let (x, y, w, h) = crop_box(64, 48, (0.5, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(x + w <= 64 && y + h <= 48);
            let area = f64::from(w * h) / f64::from(64 * 48);
            assert!((0.45..=1.0).contains(&area), "area {area}");
        }
        // Nothing fits a 1:8 strip with ratio >= 3/4: the fallback clamps the ratio.
        assert_eq!(
            crop_box(8, 64, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng),
            (0, 26, 8, 11)
        );
    }

    #[test]
    fn jitter_keeps_range_and_changes_pixels() {
        let data: Vec<f32> = (0..3 * 16 * 16).map(|i| (i * 37 % 256) as f32).collect();
        let original = ImageF32::from_planar(16, 16, data).unwrap();
        let mut image = original.clone();
        ColorJitter::default().apply(&mut image, &mut Rng::new(4));
        assert!(image.data().iter().all(|v| (0.0..=255.0).contains(v)));
        assert_ne!(image, original);
    }
}
