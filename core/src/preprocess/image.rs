//! The two image types of preprocessing: a borrowed RGB8 buffer as a C caller holds it, and the
//! planar f32 image that every geometric step (crop, resize, flip) works on.

use super::error::{PreprocessError, geometry};
use crate::config::PreprocessConfig;

/// A borrowed RGB8 image: `height` rows of `3 * width` bytes (R, G, B interleaved), each row
/// starting `stride` bytes after the previous one (padding between rows is ignored).
///
/// ```
/// # use vlbeit_core::preprocess::Rgb8Image;
/// let pixels = [255u8, 0, 0, 0, 0, 255, 7, 7]; // 2x1 image, rows padded to 8 bytes
/// let image = Rgb8Image::new(&pixels, 2, 1, 8).unwrap();
/// assert_eq!((image.width(), image.height()), (2, 1));
/// assert!(Rgb8Image::new(&pixels, 3, 1, 8).is_err()); // 9 bytes do not fit in 8
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Rgb8Image<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
    stride: usize,
}

impl<'a> Rgb8Image<'a> {
    /// Checks that `data` holds `height` rows of `3 * width` bytes `stride` bytes apart: sizes
    /// non-zero, `stride >= 3 * width`, `data.len() >= (height - 1) * stride + 3 * width`.
    pub fn new(
        data: &'a [u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<Self, PreprocessError> {
        let fail = |reason: String| PreprocessError::Buffer {
            input: "RGB8 buffer".to_owned(),
            width,
            height,
            stride,
            len: data.len(),
            reason,
        };
        if width == 0 || height == 0 {
            return Err(fail("width and height must be non-zero".to_owned()));
        }
        let row_bytes = (width as usize)
            .checked_mul(3)
            .ok_or_else(|| fail("3 * width overflows".to_owned()))?;
        if stride < row_bytes {
            return Err(fail(format!(
                "stride must be at least 3 * width = {row_bytes} bytes"
            )));
        }
        let needed = (height as usize - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(row_bytes))
            .ok_or_else(|| fail("(height - 1) * stride + 3 * width overflows".to_owned()))?;
        if data.len() < needed {
            return Err(fail(format!(
                "expected at least (height - 1) * stride + 3 * width = {needed} bytes"
            )));
        }
        Ok(Self {
            data,
            width,
            height,
            stride,
        })
    }

    /// A tightly packed image (`stride = 3 * width`), whose length must be exactly
    /// `3 * width * height`.
    pub fn packed(data: &'a [u8], width: u32, height: u32) -> Result<Self, PreprocessError> {
        let stride = width as usize * 3;
        let image = Self::new(data, width, height, stride)?;
        if data.len() != stride * height as usize {
            return Err(PreprocessError::Buffer {
                input: "RGB8 buffer".to_owned(),
                width,
                height,
                stride,
                len: data.len(),
                reason: format!(
                    "a packed image needs exactly 3 * width * height = {} bytes",
                    stride * height as usize
                ),
            });
        }
        Ok(image)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from the start of one row to the start of the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + 3 * self.width as usize]
    }
}

/// An RGB image as three f32 planes (`[3, height, width]`, row-major) holding 0..=255 values:
/// the representation of Pillow's float ("F" mode) resize, which our resize reproduces bit
/// for bit. Crop, resize and flip keep this representation; [`ImageF32::to_pixel_values`]
/// produces the model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageF32 {
    width: u32,
    height: u32,
    data: Vec<f32>,
}

impl ImageF32 {
    /// Converts an RGB8 image (exact: every u8 is an f32).
    pub fn from_rgb8(image: &Rgb8Image<'_>) -> Self {
        let (w, h) = (image.width as usize, image.height as usize);
        let mut data = vec![0.0f32; 3 * w * h];
        let (r, rest) = data.split_at_mut(w * h);
        let (g, b) = rest.split_at_mut(w * h);
        for y in 0..h {
            let row = image.row(y);
            for (x, px) in row.chunks_exact(3).enumerate() {
                r[y * w + x] = f32::from(px[0]);
                g[y * w + x] = f32::from(px[1]);
                b[y * w + x] = f32::from(px[2]);
            }
        }
        Self {
            width: image.width,
            height: image.height,
            data,
        }
    }

    /// Wraps planar data (`[3, height, width]`, values on the 0..=255 scale).
    pub fn from_planar(width: u32, height: u32, data: Vec<f32>) -> Result<Self, PreprocessError> {
        let expected = plane_len(width, height).and_then(|n| n.checked_mul(3));
        if width == 0 || height == 0 || expected != Some(data.len()) {
            return Err(geometry(
                "planar image",
                format!(
                    "{width}x{height} needs 3 * width * height non-zero values, found {}",
                    data.len()
                ),
            ));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// For producers inside the crate that already hold `3 * width * height` values.
    pub(crate) fn from_valid_planes(width: u32, height: u32, data: Vec<f32>) -> Self {
        debug_assert_eq!(plane_len(width, height).map(|n| 3 * n), Some(data.len()));
        Self {
            width,
            height,
            data,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The planes, `[3, height, width]` row-major (R plane, then G, then B).
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable planes, for photometric augmentation (colour jitter) in place.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// One channel (0 = R, 1 = G, 2 = B) as a `[height, width]` plane.
    pub fn plane(&self, channel: usize) -> &[f32] {
        let n = self.width as usize * self.height as usize;
        &self.data[channel * n..(channel + 1) * n]
    }

    /// The `width x height` region whose top-left pixel is `(x, y)`; it must lie inside the
    /// image and be non-empty.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self, PreprocessError> {
        let fits = |at: u32, len: u32, size: u32| at.checked_add(len).is_some_and(|e| e <= size);
        if width == 0 || height == 0 || !fits(x, width, self.width) || !fits(y, height, self.height)
        {
            return Err(geometry(
                "image",
                format!(
                    "crop {width}x{height} at ({x}, {y}) is empty or outside the {}x{} image",
                    self.width, self.height
                ),
            ));
        }
        let (w, h) = (width as usize, height as usize);
        let mut data = Vec::with_capacity(3 * w * h);
        for c in 0..3 {
            let plane = self.plane(c);
            for row in y as usize..y as usize + h {
                let start = row * self.width as usize + x as usize;
                data.extend_from_slice(&plane[start..start + w]);
            }
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Mirrors the image left to right.
    pub fn flip_horizontal(&mut self) {
        for row in self.data.chunks_exact_mut(self.width as usize) {
            row.reverse();
        }
    }

    /// Scales to [0, 1] and normalizes with the config's mean and std: `(x / 255 - mean) / std`
    /// per channel, in f32 (torchvision's `ToTensor` + `Normalize`). Returns `[3, height,
    /// width]`; the model expects `height = width = config.image_size`.
    pub fn to_pixel_values(&self, config: &PreprocessConfig) -> Vec<f32> {
        let mut out = vec![0.0; self.data.len()];
        self.write_pixel_values(0, 0, self.width, self.height, config, &mut out);
        out
    }

    /// Normalizes the region `(x, y, width, height)` into `out` (`[3, height, width]`), so the
    /// pipeline crops and normalizes in one pass without an intermediate image. The region
    /// must lie inside the image (checked by the callers).
    pub(crate) fn write_pixel_values(
        &self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        config: &PreprocessConfig,
        out: &mut [f32],
    ) {
        let (w, h) = (width as usize, height as usize);
        debug_assert_eq!(out.len(), 3 * w * h);
        for (c, out_plane) in out.chunks_exact_mut(w * h).enumerate() {
            let (mean, std) = (config.mean[c], config.std[c]);
            let plane = self.plane(c);
            for (row, out_row) in out_plane.chunks_exact_mut(w).enumerate() {
                let start = (y as usize + row) * self.width as usize + x as usize;
                for (o, &v) in out_row.iter_mut().zip(&plane[start..start + w]) {
                    *o = (v / 255.0 - mean) / std;
                }
            }
        }
    }
}

pub(crate) fn plane_len(width: u32, height: u32) -> Option<usize> {
    (width as usize).checked_mul(height as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(err: PreprocessError) -> String {
        match err {
            PreprocessError::Buffer { reason, .. } => reason,
            other => panic!("expected a buffer error, got {other}"),
        }
    }

    #[test]
    fn strided_buffers_are_validated() {
        let data = [0u8; 20];
        let zero = reason(Rgb8Image::new(&data, 0, 2, 6).unwrap_err());
        assert!(zero.contains("non-zero"), "{zero}");
        let narrow = reason(Rgb8Image::new(&data, 3, 2, 8).unwrap_err());
        assert!(narrow.contains("at least 3 * width = 9"), "{narrow}");
        let short = reason(Rgb8Image::new(&data, 3, 3, 9).unwrap_err());
        assert!(
            short.contains("at least (height - 1) * stride + 3 * width = 27"),
            "{short}"
        );
        let huge = reason(Rgb8Image::new(&data, 1, u32::MAX, usize::MAX).unwrap_err());
        assert!(huge.contains("overflows"), "{huge}");
        // The last row needs no padding: 10 + 6 = 16 bytes suffice.
        assert!(Rgb8Image::new(&data[..16], 2, 2, 10).is_ok());
        let err = Rgb8Image::new(&data, 3, 3, 9).unwrap_err().to_string();
        assert!(
            err.starts_with("RGB8 buffer: invalid RGB8 buffer (3x3, stride 9 bytes, 20 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn packed_buffers_need_the_exact_length() {
        let data = [0u8; 13];
        assert!(Rgb8Image::packed(&data[..12], 2, 2).is_ok());
        let extra = reason(Rgb8Image::packed(&data, 2, 2).unwrap_err());
        assert!(extra.contains("exactly 3 * width * height = 12"), "{extra}");
    }

    #[test]
    fn row_padding_is_ignored() {
        let data = [1, 2, 3, 4, 5, 6, 99, 7, 8, 9, 10, 11, 12];
        let image = ImageF32::from_rgb8(&Rgb8Image::new(&data, 2, 2, 7).unwrap());
        assert_eq!(
            image.data(),
            &[1., 4., 7., 10., 2., 5., 8., 11., 3., 6., 9., 12.]
        );
    }

    fn counting(width: u32, height: u32) -> ImageF32 {
        let n = (3 * width * height) as usize;
        ImageF32::from_planar(width, height, (0..n).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn crop_takes_the_region_of_every_plane() {
        let crop = counting(4, 3).crop(1, 1, 2, 2).unwrap();
        assert_eq!(
            crop.data(),
            &[5., 6., 9., 10., 17., 18., 21., 22., 29., 30., 33., 34.]
        );
        for (x, y, w, h) in [
            (3, 0, 2, 1),
            (0, 0, 0, 1),
            (u32::MAX, 0, 2, 1),
            (0, 2, 1, 2),
        ] {
            let err = counting(4, 3).crop(x, y, w, h).unwrap_err().to_string();
            assert!(err.contains("outside the 4x3 image"), "{err}");
        }
    }

    #[test]
    fn flip_mirrors_each_row() {
        let mut image = counting(3, 1);
        image.flip_horizontal();
        assert_eq!(image.data(), &[2., 1., 0., 5., 4., 3., 8., 7., 6.]);
    }

    #[test]
    fn pixel_values_are_scaled_then_normalized_per_channel() {
        let image = ImageF32::from_planar(1, 1, vec![255.0, 0.0, 51.0]).unwrap();
        let config = PreprocessConfig {
            mean: [0.5, 0.25, 0.2],
            std: [0.5, 0.25, 0.1],
            ..PreprocessConfig::default()
        };
        let values = image.to_pixel_values(&config);
        assert_eq!(values, vec![1.0, -1.0, (51.0f32 / 255.0 - 0.2) / 0.1]);
    }

    #[test]
    fn planar_data_must_match_its_size() {
        let err = ImageF32::from_planar(2, 2, vec![0.0; 11])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2x2 needs 3 * width * height non-zero values, found 11"),
            "{err}"
        );
        assert!(ImageF32::from_planar(0, 2, vec![]).is_err());
    }
}
