//! The one error type of preprocessing. Every variant names the input (a caller-supplied label,
//! `image #i` inside a batch) so that a failure in a batch of thousands can be traced to its file.

use crate::config::ConfigError;

/// Why an image could not become `pixel_values`.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The [`PreprocessConfig`](crate::PreprocessConfig) given to the preprocessor is unusable.
    #[error("invalid preprocessing config: {0}")]
    Config(#[from] ConfigError),
    /// Zero bytes were given where an encoded image was expected.
    #[error("{input}: empty input (0 bytes), expected an encoded JPEG, PNG or WebP image")]
    Empty { input: String },
    /// The bytes are not one of the supported formats.
    #[error("{input}: not a JPEG, PNG or WebP image ({found})")]
    UnsupportedFormat { input: String, found: String },
    /// The bytes look like a supported format but do not decode (truncated, corrupt).
    #[error("{input}: cannot decode {format} image of {len} bytes: {reason}")]
    Decode {
        input: String,
        format: &'static str,
        len: usize,
        reason: String,
    },
    /// The image declares more pixels than `max_image_pixels` (decompression-bomb guard); the
    /// check runs on the header, before any pixel memory is allocated.
    #[error(
        "{input}: {what} exceeds max_image_pixels = {limit}; refusing it as a possible \
         decompression bomb (raise max_image_pixels in the preprocess config if it is genuine)"
    )]
    TooLarge {
        input: String,
        what: String,
        limit: u64,
    },
    /// A raw RGB8 buffer whose sizes do not describe it.
    #[error(
        "{input}: invalid RGB8 buffer ({width}x{height}, stride {stride} bytes, {len} bytes): {reason}"
    )]
    Buffer {
        input: String,
        width: u32,
        height: u32,
        stride: usize,
        len: usize,
        reason: String,
    },
    /// A crop, resize or planar buffer whose geometry is impossible.
    #[error("{input}: {reason}")]
    Geometry { input: String, reason: String },
}

impl PreprocessError {
    /// The label of the input the error is about (empty for [`PreprocessError::Config`]).
    pub fn input(&self) -> &str {
        match self {
            Self::Config(_) => "",
            Self::Empty { input }
            | Self::UnsupportedFormat { input, .. }
            | Self::Decode { input, .. }
            | Self::TooLarge { input, .. }
            | Self::Buffer { input, .. }
            | Self::Geometry { input, .. } => input,
        }
    }

    /// Renames the input, e.g. to the file path or data-set key the caller knows it by.
    ///
    /// ```
    /// # use vlbeit_core::preprocess::{Preprocessor, PreprocessError};
    /// let pre = Preprocessor::new(Default::default()).unwrap();
    /// let err = pre.encoded(b"").unwrap_err().with_input("shard-3/000042.jpg");
    /// assert!(err.to_string().starts_with("shard-3/000042.jpg: empty input"));
    /// ```
    pub fn with_input(mut self, label: impl Into<String>) -> Self {
        match &mut self {
            Self::Config(_) => {}
            Self::Empty { input }
            | Self::UnsupportedFormat { input, .. }
            | Self::Decode { input, .. }
            | Self::TooLarge { input, .. }
            | Self::Buffer { input, .. }
            | Self::Geometry { input, .. } => *input = label.into(),
        }
        self
    }
}

pub(crate) fn geometry(input: &str, reason: impl Into<String>) -> PreprocessError {
    PreprocessError::Geometry {
        input: input.to_owned(),
        reason: reason.into(),
    }
}
