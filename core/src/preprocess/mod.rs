//! Image preprocessing: bytes or pixels → `pixel_values` `[B, 3, H, W]` f32, the same bits for
//! training and serving.
//!
//! The pipeline is torchvision's evaluation transform on Pillow's float resize:
//!
//! 1. decode JPEG, PNG or WebP to RGB (EXIF orientation applied, alpha dropped,
//!    16-bit to 8-bit), refusing headers that declare more than `max_image_pixels`;
//! 2. resize the short side to `config.resize` (`Resize(int)`: long side
//!    `int(resize * long / short)`), antialiased bicubic or bilinear in f32, bit-identical to
//!    Pillow's `Image.resize` on "F" planes;
//! 3. center-crop `image_size` (`CenterCrop`: offset `int(round(margin / 2.0))`, half to even);
//! 4. `(x / 255 - mean) / std` per channel, laid out CHW.
//!
//! Training augmentations (random resized crop, flip, colour jitter) work on the same
//! [`ImageF32`] through [`ImageF32::crop`], [`ImageF32::resize`], [`ImageF32::flip_horizontal`]
//! and [`ImageF32::data_mut`], then [`ImageF32::to_pixel_values`].
//!
//! ```
//! use vlbeit_core::PreprocessConfig;
//! use vlbeit_core::preprocess::{ImageInput, Preprocessor, Rgb8Image};
//!
//! let pre = Preprocessor::new(PreprocessConfig::for_image_size(32)).unwrap();
//! let gray = vec![128u8; 3 * 40 * 50];
//! let image = Rgb8Image::packed(&gray, 40, 50).unwrap();
//! let batch = pre.batch(&[ImageInput::Rgb8(image), ImageInput::Rgb8(image)]).unwrap();
//! assert_eq!(batch.shape, [2, 3, 32, 32]);
//! assert_eq!(batch.data.len(), 2 * 3 * 32 * 32);
//! ```

mod decode;
mod error;
mod image;
mod resize;

pub use error::PreprocessError;
pub use image::{ImageF32, Rgb8Image};

use crate::config::PreprocessConfig;
use resize::{center_crop_offset, short_side_size};

/// Label of an encoded input in errors, until the caller renames it with
/// [`PreprocessError::with_input`].
const ENCODED: &str = "encoded image";
const RGB8: &str = "RGB8 buffer";

/// One image of a batch.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    /// Encoded JPEG, PNG or WebP bytes.
    Encoded(&'a [u8]),
    /// Raw RGB8 pixels.
    Rgb8(Rgb8Image<'a>),
    /// An already decoded (and possibly augmented) image.
    Image(&'a ImageF32),
}

/// `pixel_values` of a batch: one contiguous buffer in `shape` = `[batch, 3, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelBatch {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
}

/// Turns images into the model's `pixel_values` according to a validated [`PreprocessConfig`].
/// Holds no buffers: share one across threads.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: PreprocessConfig,
}

impl Preprocessor {
    /// Validates `config` (the error names the bad field).
    pub fn new(config: PreprocessConfig) -> Result<Self, PreprocessError> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// Values per image: `3 * image_size * image_size`.
    pub fn pixel_values_len(&self) -> usize {
        let side = self.config.image_size as usize;
        3 * side * side
    }

    /// Decodes JPEG, PNG or WebP bytes into an RGB float image (values 0..=255), e.g. for
    /// training augmentations. Fails before allocating pixels when the header declares more
    /// than `max_image_pixels`.
    pub fn decode(&self, bytes: &[u8]) -> Result<ImageF32, PreprocessError> {
        decode::decode(bytes, ENCODED, self.config.max_image_pixels)
    }

    /// Encoded bytes → `pixel_values` `[3, image_size, image_size]`.
    pub fn encoded(&self, bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
        let image = self.decode(bytes)?;
        self.pixel_values(&image, ENCODED)
    }

    /// Raw RGB8 pixels → `pixel_values` `[3, image_size, image_size]`.
    pub fn rgb8(&self, image: &Rgb8Image<'_>) -> Result<Vec<f32>, PreprocessError> {
        self.check_rgb8(image, RGB8)?;
        self.pixel_values(&ImageF32::from_rgb8(image), RGB8)
    }

    /// A decoded image → `pixel_values` `[3, image_size, image_size]` (resize, crop,
    /// normalize).
    pub fn image(&self, image: &ImageF32) -> Result<Vec<f32>, PreprocessError> {
        self.pixel_values(image, "image")
    }

    /// Preprocesses every input into one `[B, 3, image_size, image_size]` buffer. The first
    /// failing input stops the batch; its error names it `image #<index>`. An empty slice gives
    /// an empty batch (`B = 0`).
    pub fn batch(&self, inputs: &[ImageInput<'_>]) -> Result<PixelBatch, PreprocessError> {
        let per_image = self.pixel_values_len();
        let side = self.config.image_size as usize;
        let mut data = vec![0.0f32; inputs.len() * per_image];
        for (index, (input, out)) in inputs
            .iter()
            .zip(data.chunks_exact_mut(per_image))
            .enumerate()
        {
            let label = format!("image #{index}");
            match input {
                ImageInput::Encoded(bytes) => {
                    let image = decode::decode(bytes, &label, self.config.max_image_pixels)?;
                    self.write_pixel_values(&image, &label, out)
                }
                ImageInput::Rgb8(rgb) => {
                    self.check_rgb8(rgb, &label)?;
                    self.write_pixel_values(&ImageF32::from_rgb8(rgb), &label, out)
                }
                ImageInput::Image(image) => self.write_pixel_values(image, &label, out),
            }
            .map_err(|e| e.with_input(label))?;
        }
        Ok(PixelBatch {
            data,
            shape: [inputs.len(), 3, side, side],
        })
    }

    fn check_rgb8(&self, image: &Rgb8Image<'_>, input: &str) -> Result<(), PreprocessError> {
        let pixels = u64::from(image.width()) * u64::from(image.height());
        if pixels > self.config.max_image_pixels {
            return Err(PreprocessError::TooLarge {
                input: input.to_owned(),
                what: format!("{}x{} = {pixels} pixels", image.width(), image.height()),
                limit: self.config.max_image_pixels,
            });
        }
        Ok(())
    }

    fn pixel_values(&self, image: &ImageF32, input: &str) -> Result<Vec<f32>, PreprocessError> {
        let mut out = vec![0.0; self.pixel_values_len()];
        self.write_pixel_values(image, input, &mut out)?;
        Ok(out)
    }

    fn write_pixel_values(
        &self,
        image: &ImageF32,
        input: &str,
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        let config = &self.config;
        let (width, height) = short_side_size(image.width(), image.height(), config.resize);
        // A 1 x 80M strip passes the decode limit but its resize would not fit in memory.
        let limit = config
            .max_image_pixels
            .max(u64::from(config.resize) * u64::from(config.resize));
        let fits = width.saturating_mul(height) <= limit;
        let (Ok(width), Ok(height), true) = (u32::try_from(width), u32::try_from(height), fits)
        else {
            return Err(PreprocessError::TooLarge {
                input: input.to_owned(),
                what: format!(
                    "resizing {}x{} to short side {} gives {width}x{height} pixels, which",
                    image.width(),
                    image.height(),
                    config.resize
                ),
                limit,
            });
        };
        let resized = image
            .resize(width, height, config.interpolation)
            .map_err(|e| e.with_input(input))?;
        let side = config.image_size;
        let (x, y) = (
            center_crop_offset(width, side),
            center_crop_offset(height, side),
        );
        resized.write_pixel_values(x, y, side, side, config, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Interpolation;

    fn config(image_size: u32, resize: u32) -> PreprocessConfig {
        PreprocessConfig {
            resize,
            interpolation: Interpolation::Bilinear,
            ..PreprocessConfig::for_image_size(image_size)
        }
    }

    fn noise(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7919) % 251) as u8).collect()
    }

    #[test]
    fn batch_equals_single_calls_in_order() {
        let pre = Preprocessor::new(config(16, 20)).unwrap();
        let (a, b) = (noise(3 * 30 * 20), noise(53 * 40));
        let a = Rgb8Image::packed(&a, 30, 20).unwrap();
        let b = Rgb8Image::new(&b, 17, 40, 3 * 17 + 2).unwrap();
        let decoded = ImageF32::from_rgb8(&b);
        let batch = pre
            .batch(&[
                ImageInput::Rgb8(a),
                ImageInput::Image(&decoded),
                ImageInput::Rgb8(a),
            ])
            .unwrap();
        assert_eq!(batch.shape, [3, 3, 16, 16]);
        let n = pre.pixel_values_len();
        assert_eq!(batch.data[..n], pre.rgb8(&a).unwrap()[..]);
        assert_eq!(batch.data[n..2 * n], pre.rgb8(&b).unwrap()[..]);
        assert_eq!(batch.data[2 * n..], batch.data[..n]);
        assert_ne!(batch.data[..n], batch.data[n..2 * n]);
    }

    #[test]
    fn batch_errors_name_the_failing_index() {
        let pre = Preprocessor::new(config(16, 16)).unwrap();
        let pixels = noise(3 * 4 * 4);
        let ok = ImageInput::Rgb8(Rgb8Image::packed(&pixels, 4, 4).unwrap());
        let err = pre
            .batch(&[ok, ImageInput::Encoded(b"not an image"), ok])
            .unwrap_err();
        assert_eq!(err.input(), "image #1");
        assert!(
            err.to_string()
                .starts_with("image #1: not a JPEG, PNG or WebP image"),
            "{err}"
        );
        assert_eq!(pre.batch(&[]).unwrap().shape, [0, 3, 16, 16]);
    }

    #[test]
    fn an_invalid_config_is_refused_with_its_field() {
        let err = Preprocessor::new(config(32, 16)).unwrap_err();
        assert!(err.to_string().contains("`resize`"), "{err}");
    }

    #[test]
    fn rgb8_over_the_pixel_limit_is_refused() {
        let pre = Preprocessor::new(PreprocessConfig {
            max_image_pixels: 99,
            ..config(8, 8)
        })
        .unwrap();
        let pixels = noise(3 * 10 * 10);
        let err = pre
            .rgb8(&Rgb8Image::packed(&pixels, 10, 10).unwrap())
            .unwrap_err();
        assert!(
            matches!(err, PreprocessError::TooLarge { limit: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("10x10 = 100 pixels"), "{err}");
    }

    #[test]
    fn an_absurd_aspect_ratio_fails_before_resizing() {
        let pre = Preprocessor::new(PreprocessConfig {
            max_image_pixels: 10_000,
            ..config(32, 32)
        })
        .unwrap();
        let strip = ImageF32::from_planar(1, 5000, vec![0.0; 15_000]).unwrap();
        let err = pre.image(&strip).unwrap_err().to_string();
        assert!(err.contains("gives 32x160000 pixels"), "{err}");
    }

    #[test]
    fn output_is_the_center_of_the_resized_image() {
        // A 6x4 image resized to short side 4 keeps its size; the 4x4 center crop starts at
        // x = 1 and the normalization maps 0..255 to -1..1 (mean = std = 0.5).
        let pre = Preprocessor::new(config(4, 4)).unwrap();
        let values: Vec<f32> = (0..3 * 24).map(|i| (i % 24) as f32 * 10.0).collect();
        let image = ImageF32::from_planar(6, 4, values).unwrap();
        let out = pre.image(&image).unwrap();
        let expected = |v: f32| (v / 255.0 - 0.5) / 0.5;
        assert_eq!(out[0], expected(10.0));
        assert_eq!(out[4], expected(70.0));
        assert_eq!(out[15], expected(220.0));
    }
}
