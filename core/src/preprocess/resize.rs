//! Antialiased resize, bit-identical to Pillow's float resize, and torchvision's size rules.
//!
//! Pillow resamples an "F" image with a separable convolution whose weights (bicubic a = -0.5,
//! or triangle) are computed in f64 and accumulated in f64 strictly left to right, horizontal
//! pass first, each pass rounded to f32. `fast_image_resize` does the same in its portable
//! ("native") code path, for `F32` planes and `F32x3` pixels alike. Its SSE4.1/AVX2 paths sum
//! in f64 lanes, another order: on 33 M resized values of noise they still gave the same f32
//! bits, but only the portable order is identical by construction (and it is the path aarch64
//! takes anyway). We pin it: the same bits as Pillow on every CPU, for training and serving,
//! at about 1.5-2x the AVX2 time (640x480 -> 298x224 bicubic: ~7 ms vs ~4.5 ms, release).

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::F32;
use fast_image_resize::{CpuExtensions, FilterType, ResizeAlg, ResizeOptions, Resizer};

use super::error::{PreprocessError, geometry};
use super::image::{ImageF32, plane_len};
use crate::config::Interpolation;

impl ImageF32 {
    /// Resamples to `width x height` with an antialiased filter (its support widens with the
    /// downscaling factor), exactly as Pillow's `Image.resize` on each channel as a float
    /// plane. Works in both directions, from 1x1 up.
    ///
    /// ```
    /// # use vlbeit_core::{Interpolation, preprocess::ImageF32};
    /// let image = ImageF32::from_planar(2, 1, vec![0.0, 255.0, 0.0, 255.0, 0.0, 255.0]).unwrap();
    /// let wide = image.resize(4, 1, Interpolation::Bilinear).unwrap();
    /// assert_eq!(wide.plane(0), &[0.0, 63.75, 191.25, 255.0]);
    /// ```
    pub fn resize(
        &self,
        width: u32,
        height: u32,
        interpolation: Interpolation,
    ) -> Result<Self, PreprocessError> {
        self.resize_on(width, height, interpolation, CpuExtensions::None)
    }

    /// [`ImageF32::resize`] on a chosen code path of `fast_image_resize`; tests compare paths.
    pub(crate) fn resize_on(
        &self,
        width: u32,
        height: u32,
        interpolation: Interpolation,
        cpu: CpuExtensions,
    ) -> Result<Self, PreprocessError> {
        let len = plane_len(width, height).and_then(|n| n.checked_mul(3));
        let Some(len) = len.filter(|_| width > 0 && height > 0) else {
            return Err(geometry(
                "image",
                format!(
                    "cannot resize to {width}x{height}: sizes must be non-zero and fit in memory"
                ),
            ));
        };
        let fail = |e: &dyn std::fmt::Display| {
            geometry(
                "image",
                format!(
                    "resize {}x{} -> {width}x{height} failed: {e}",
                    self.width(),
                    self.height()
                ),
            )
        };
        let mut resizer = Resizer::new();
        if !cpu.is_supported() {
            return Err(fail(&format!("{cpu:?} is not supported on this CPU")));
        }
        // SAFETY: `set_cpu_extensions` is unsafe only because an unsupported extension would
        // execute illegal instructions; support was checked just above.
        unsafe { resizer.set_cpu_extensions(cpu) };
        let filter = match interpolation {
            // Keys' cubic with a = -0.5, Pillow's BICUBIC.
            Interpolation::Bicubic => FilterType::CatmullRom,
            Interpolation::Bilinear => FilterType::Bilinear,
        };
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
        let mut data = Vec::with_capacity(len);
        let mut src = Vec::with_capacity(self.plane(0).len());
        let mut dst = TypedImage::<F32>::new(width, height);
        for channel in 0..3 {
            src.clear();
            src.extend(self.plane(channel).iter().map(|&v| F32::new(v)));
            let src_view =
                TypedImageRef::new(self.width(), self.height(), &src).map_err(|e| fail(&e))?;
            resizer
                .resize_typed(&src_view, &mut dst, &options)
                .map_err(|e| fail(&e))?;
            data.extend(dst.pixels().iter().map(|p| p.0));
        }
        Ok(Self::from_valid_planes(width, height, data))
    }
}

/// torchvision `Resize(short)`: the short side becomes `short`, the long side
/// `int(short * long / short_side)` (Python float arithmetic, truncated). Widened to u64 so an
/// absurd aspect ratio is reported instead of wrapping.
pub(crate) fn short_side_size(width: u32, height: u32, short: u32) -> (u64, u64) {
    let (short_side, long_side) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let long = (f64::from(short) * f64::from(long_side) / f64::from(short_side)) as u64;
    if width <= height {
        (u64::from(short), long)
    } else {
        (long, u64::from(short))
    }
}

/// torchvision `CenterCrop` offset: `int(round((size - crop) / 2.0))` with Python's
/// round-half-to-even, so an odd margin of 5 starts the crop at 2 and one of 3 at 2.
pub(crate) fn center_crop_offset(size: u32, crop: u32) -> u32 {
    let margin = size - crop;
    let half = margin / 2;
    if margin % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: u32, height: u32) -> ImageF32 {
        let n = (width * height) as usize;
        let data = (0..3 * n).map(|i| ((i * 37) % 256) as f32).collect();
        ImageF32::from_planar(width, height, data).unwrap()
    }

    #[test]
    fn short_side_follows_torchvision_truncation() {
        assert_eq!(short_side_size(640, 480, 224), (298, 224)); // 298.67 truncated
        assert_eq!(short_side_size(213, 320, 73), (73, 109)); // 109.67
        assert_eq!(short_side_size(100, 100, 64), (64, 64));
        assert_eq!(short_side_size(1, 1, 224), (224, 224));
        assert_eq!(
            short_side_size(1, u32::MAX, 224),
            (224, 224 * u64::from(u32::MAX))
        );
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        assert_eq!(center_crop_offset(37, 32), 2); // round(2.5) = 2
        assert_eq!(center_crop_offset(35, 32), 2); // round(1.5) = 2
        assert_eq!(center_crop_offset(33, 32), 0); // round(0.5) = 0
        assert_eq!(center_crop_offset(39, 32), 4); // round(3.5) = 4
        assert_eq!(center_crop_offset(36, 32), 2);
        assert_eq!(center_crop_offset(32, 32), 0);
    }

    #[test]
    fn one_pixel_upscales_to_a_constant() {
        let pixel = ImageF32::from_planar(1, 1, vec![200.0, 30.0, 90.0]).unwrap();
        for interpolation in [Interpolation::Bicubic, Interpolation::Bilinear] {
            let big = pixel.resize(224, 224, interpolation).unwrap();
            assert_eq!((big.width(), big.height()), (224, 224));
            for (channel, value) in [200.0, 30.0, 90.0].into_iter().enumerate() {
                assert!(big.plane(channel).iter().all(|&v| v == value));
            }
        }
    }

    #[test]
    fn same_size_resize_is_the_identity() {
        let image = ramp(7, 5);
        assert_eq!(image.resize(7, 5, Interpolation::Bicubic).unwrap(), image);
    }

    #[test]
    fn zero_target_size_is_an_error() {
        let err = ramp(4, 4)
            .resize(0, 3, Interpolation::Bilinear)
            .unwrap_err();
        assert!(err.to_string().contains("cannot resize to 0x3"), "{err}");
    }

    #[test]
    fn channels_are_resized_independently() {
        let image = ramp(9, 6);
        let resized = image.resize(4, 11, Interpolation::Bicubic).unwrap();
        let only_green = ImageF32::from_planar(
            9,
            6,
            [image.plane(1), image.plane(1), image.plane(1)].concat(),
        )
        .unwrap()
        .resize(4, 11, Interpolation::Bicubic)
        .unwrap();
        assert_eq!(resized.plane(1), only_green.plane(0));
    }
}
