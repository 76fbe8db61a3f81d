//! Encoded bytes → RGB, as Pillow's `ImageOps.exif_transpose(Image.open(f)).convert("RGB")`:
//! EXIF orientation applied, alpha dropped (not composited), grayscale replicated, 16-bit
//! samples reduced to their high byte (Pillow's "RGB;16B" raw mode for 16-bit RGB(A) PNGs).
//!
//! Deliberate difference: Pillow *clips* 16-bit grayscale ("I;16") to 0..255, which turns
//! nearly every photograph white; we take the high byte there too.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use super::error::PreprocessError;
use super::image::ImageF32;

/// Bytes a decoder may allocate per declared pixel (RGBA16 output) before the image crate's
/// own limit refuses; our pixel-count check runs first and is the real guard.
const ALLOC_BYTES_PER_PIXEL: u64 = 8;
const ALLOC_SLACK: u64 = 64 << 20;

pub(crate) fn decode(
    bytes: &[u8],
    input: &str,
    max_pixels: u64,
) -> Result<ImageF32, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty {
            input: input.to_owned(),
        });
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => f,
        Ok(other) => {
            return Err(PreprocessError::UnsupportedFormat {
                input: input.to_owned(),
                found: format!("a {other:?} image"),
            });
        }
        Err(_) => {
            return Err(PreprocessError::UnsupportedFormat {
                input: input.to_owned(),
                found: describe_start(bytes),
            });
        }
    };
    let name = format_name(format);
    let decode_error = |reason: String| PreprocessError::Decode {
        input: input.to_owned(),
        format: name,
        len: bytes.len(),
        reason,
    };
    let too_large = |what: String| PreprocessError::TooLarge {
        input: input.to_owned(),
        what,
        limit: max_pixels,
    };
    let map_image_error = |e: ImageError| match e {
        ImageError::Limits(e) => too_large(format!("the image ({e})")),
        other => decode_error(other.to_string()),
    };
    if format == ImageFormat::Jpeg && !jpeg_has_end_after_scan(bytes) {
        // zune-jpeg fills a truncated scan with gray and reports success; Pillow refuses
        // ("image file is truncated"), and so do we, rather than train on half an image.
        return Err(decode_error(
            "truncated: no end-of-image marker after the last scan".to_owned(),
        ));
    }

    let mut limits = Limits::default();
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(
        max_pixels
            .saturating_mul(ALLOC_BYTES_PER_PIXEL)
            .saturating_add(ALLOC_SLACK),
    );
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;

    // The header alone has been read: refuse a bomb before a byte of pixels is allocated.
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(too_large(format!(
            "the header's {width}x{height} = {pixels} pixels"
        )));
    }
    if pixels == 0 {
        return Err(decode_error(format!(
            "the header declares {width}x{height} pixels"
        )));
    }
    // A damaged EXIF block must not cost the image: Pillow ignores it too.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    image.apply_orientation(orientation);
    Ok(to_planes(&image))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        _ => "WebP",
    }
}

/// The first bytes, for an error about data that is no image at all.
fn describe_start(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{} bytes starting with {}", bytes.len(), head.join(" "))
}

/// Whether an EOI marker (FF D9) follows the last start-of-scan (FF DA). Entropy-coded data
/// byte-stuffs every FF, so FF D9 there is the real end; an EXIF thumbnail's scan and end come
/// before the main image's last scan and do not count.
fn jpeg_has_end_after_scan(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    last_scan.is_some_and(|at| bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

fn to_planes(image: &DynamicImage) -> ImageF32 {
    let (width, height) = (image.width(), image.height());
    let data = match image {
        DynamicImage::ImageLuma8(b) => planes(b.as_raw(), 1, |v| v),
        DynamicImage::ImageLumaA8(b) => planes(b.as_raw(), 2, |v| v),
        DynamicImage::ImageRgb8(b) => planes(b.as_raw(), 3, |v| v),
        DynamicImage::ImageRgba8(b) => planes(b.as_raw(), 4, |v| v),
        DynamicImage::ImageLuma16(b) => planes(b.as_raw(), 1, high_byte),
        DynamicImage::ImageLumaA16(b) => planes(b.as_raw(), 2, high_byte),
        DynamicImage::ImageRgb16(b) => planes(b.as_raw(), 3, high_byte),
        DynamicImage::ImageRgba16(b) => planes(b.as_raw(), 4, high_byte),
        // Float images come from no decoder we enable (JPEG, PNG, WebP); convert generically.
        other => planes(other.to_rgb8().as_raw(), 3, |v| v),
    };
    ImageF32::from_valid_planes(width, height, data)
}

fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Interleaved samples with `channels` per pixel → `[3, h, w]` planes; one or two channels
/// are gray (+ alpha), three or four are RGB (+ alpha); alpha is dropped.
fn planes<T: Copy>(samples: &[T], channels: usize, to_u8: impl Fn(T) -> u8) -> Vec<f32> {
    let n = samples.len() / channels;
    let mut data = vec![0.0f32; 3 * n];
    let (r, rest) = data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in samples.chunks_exact(channels).enumerate() {
        let (red, green, blue) = if channels < 3 {
            (px[0], px[0], px[0])
        } else {
            (px[0], px[1], px[2])
        };
        r[i] = f32::from(to_u8(red));
        g[i] = f32::from(to_u8(green));
        b[i] = f32::from(to_u8(blue));
    }
    data
}

#[cfg(test)]
mod tests {
    use image::{ImageBuffer, Luma, LumaA, Rgba};

    use super::*;

    const LIMIT: u64 = 1 << 20;

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn photo(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 16) as u8, ((x * y) % 256) as u8])
        }))
    }

    fn pixel(image: &ImageF32, x: usize, y: usize) -> [f32; 3] {
        let at = y * image.width() as usize + x;
        [0, 1, 2].map(|c| image.plane(c)[at])
    }

    #[test]
    fn zero_bytes_name_the_input() {
        let err = decode(&[], "cat.jpg", LIMIT).unwrap_err();
        assert!(matches!(err, PreprocessError::Empty { .. }));
        assert_eq!(
            err.to_string(),
            "cat.jpg: empty input (0 bytes), expected an encoded JPEG, PNG or WebP image"
        );
    }

    #[test]
    fn non_image_bytes_are_described() {
        let err = decode(b"<html>oops</html>", "page", LIMIT).unwrap_err();
        assert!(
            matches!(err, PreprocessError::UnsupportedFormat { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("17 bytes starting with 3c 68 74 6d"),
            "{err}"
        );
        let err = decode(b"GIF89a\x01\x00\x01\x00", "anim", LIMIT).unwrap_err();
        assert!(err.to_string().contains("a Gif image"), "{err}");
    }

    #[test]
    fn truncated_images_fail_in_every_format() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let bytes = encode(photo(32, 24), format);
            let err = decode(&bytes[..bytes.len() * 3 / 5], "half", LIMIT).unwrap_err();
            match &err {
                PreprocessError::Decode {
                    input,
                    format: name,
                    len,
                    ..
                } => {
                    assert_eq!((input.as_str(), *name), ("half", format_name(format)));
                    assert_eq!(*len, bytes.len() * 3 / 5);
                }
                other => panic!("{format:?}: {other}"),
            }
        }
    }

    #[test]
    fn no_prefix_or_corruption_panics() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let bytes = encode(photo(8, 8), format);
            // Cuts that lose no pixel data may decode: a PNG cut inside its final IEND chunk
            // (Pillow opens it too), a WebP missing only the zero pad byte after an odd-sized
            // chunk (libwebp refuses it; image-webp does not).
            let complete = match format {
                ImageFormat::Png => bytes.len() - 12,
                ImageFormat::WebP
                    if bytes.len().is_multiple_of(2) && bytes[bytes.len() - 1] == 0 =>
                {
                    bytes.len() - 1
                }
                _ => bytes.len(),
            };
            for len in 0..complete {
                assert!(
                    decode(&bytes[..len], "prefix", LIMIT).is_err(),
                    "{format:?} {len} of {}",
                    bytes.len()
                );
            }
            for at in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[at] ^= 0x5A;
                let _ = decode(&bad, "flipped", LIMIT);
            }
        }
    }

    #[test]
    fn a_header_over_the_pixel_limit_is_refused() {
        let bytes = encode(photo(9, 8), ImageFormat::Png);
        let err = decode(&bytes, "big", 71).unwrap_err();
        assert!(
            matches!(err, PreprocessError::TooLarge { limit: 71, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("9x8 = 72 pixels"), "{err}");
        assert!(decode(&bytes, "fits", 72).is_ok());
    }

    #[test]
    fn one_pixel_images_decode() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let image = decode(&encode(photo(1, 1), format), "dot", LIMIT).unwrap();
            assert_eq!((image.width(), image.height()), (1, 1), "{format:?}");
        }
    }

    #[test]
    fn sixteen_bit_samples_keep_their_high_byte() {
        // 0x12FF rounds to 0x13 but its high byte, Pillow's choice for 16-bit RGB, is 0x12.
        let gray = ImageBuffer::from_pixel(2, 2, Luma([0x12FFu16]));
        let image = decode(
            &encode(DynamicImage::ImageLuma16(gray), ImageFormat::Png),
            "g16",
            LIMIT,
        )
        .unwrap();
        assert_eq!(pixel(&image, 1, 1), [18.0; 3]);
    }

    #[test]
    fn alpha_is_dropped_not_composited() {
        let rgba = ImageBuffer::from_pixel(3, 2, Rgba([10u8, 20, 30, 0]));
        let image = decode(
            &encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
            "rgba",
            LIMIT,
        )
        .unwrap();
        assert_eq!(pixel(&image, 2, 1), [10.0, 20.0, 30.0]);
        let la = ImageBuffer::from_pixel(3, 2, LumaA([77u8, 5]));
        let image = decode(
            &encode(DynamicImage::ImageLumaA8(la), ImageFormat::Png),
            "la",
            LIMIT,
        )
        .unwrap();
        assert_eq!(pixel(&image, 0, 0), [77.0; 3]);
    }

    #[test]
    fn jpeg_end_marker_must_follow_the_last_scan() {
        assert!(jpeg_has_end_after_scan(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9
        ]));
        // A thumbnail's end marker before the main scan does not count.
        assert!(!jpeg_has_end_after_scan(&[
            0xFF, 0xD9, 0xFF, 0xDA, 1, 2, 0xFF, 0x00
        ]));
        assert!(!jpeg_has_end_after_scan(&[0xFF, 0xD8, 0xFF, 0xD9]));
    }
}
