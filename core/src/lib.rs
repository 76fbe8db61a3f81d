//! vlbeit-core: the contracts that training (`vlbeit-train`) and serving (`vlbeit`) share.
//!
//! Everything here must give the same bits on both sides: the model and preprocessing
//! configuration, image preprocessing, text tokenization, and the synthetic scenes data set
//! the project uses for demos and tests.

pub mod config;
pub mod fs;
pub mod manifest;
pub mod preprocess;
pub mod rng;
pub mod scenes;
pub mod shards;
pub mod text;

pub use config::{ConfigError, Interpolation, ModelConfig, PreprocessConfig};
