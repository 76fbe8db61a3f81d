//! `vlbeit`: the VL-BEiT runtime. Loads an exported bundle (image, text and fusion encoder
//! ONNX graphs) into ONNX Runtime on CPU, CUDA or TensorRT, with the same tokenization and
//! preprocessing as training (from `vlbeit-core`).
//!
//! Start with one [`Runtime`] per process:
//!
//! ```no_run
//! let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions::default())?;
//! println!("ONNX Runtime {} from {}", runtime.library().version, runtime.library().path.display());
//! # Ok::<(), vlbeit::EnvironmentError>(())
//! ```

pub mod environment;

pub use environment::{EnvironmentError, LibrarySource, OrtLibrary, Runtime, RuntimeOptions};
pub use vlbeit_core as core;
