//! `vlbeit`: the VL-BEiT runtime. Loads an exported bundle (image, text and fusion encoder
//! ONNX graphs) into ONNX Runtime on CPU, CUDA or TensorRT, with the same tokenization and
//! preprocessing as training (from `vlbeit-core`), and serves embeddings, image–text matching,
//! retrieval with fusion rerank, VQA and classification.
//!
//! Start with one [`Runtime`] per process, then load [`Model`]s:
//!
//! ```no_run
//! use vlbeit::{FlatIndex, ImageSource, IndexEntry, Modality, Model, ModelOptions, Query};
//! let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions::default())?;
//! println!("ONNX Runtime {} from {}", runtime.library().version, runtime.library().path.display());
//! let model = Model::load(&runtime, "data/bundle".as_ref(), ModelOptions::default())?;
//!
//! let files = ["a.png", "b.png"];
//! let sources: Vec<ImageSource> = files.iter().map(|f| ImageSource::Path(f.as_ref())).collect();
//! let mut index = FlatIndex::new(&model, Modality::Image);
//! let entries = files
//!     .iter()
//!     .map(|f| IndexEntry { id: f.to_string(), source: Some(f.to_string()), metadata: None })
//!     .collect();
//! index.add(entries, &model.embed_images(&sources)?)?;
//! for hit in model.retrieve(&index, Query::Text("a red circle"), 5, 2)? {
//!     println!("{} similarity {:.3} match {:?}", hit.id, hit.similarity, hit.match_score);
//! }
//! # Ok::<(), vlbeit::Error>(())
//! ```

pub mod bundle;
pub mod environment;
pub mod error;
pub mod ffi;
mod graph;
pub mod index;
pub mod model;
pub mod provider;
pub mod retrieval;
pub mod verify;

pub use bundle::{Bundle, BundleFiles, HashCheck};
pub use environment::{EnvironmentError, LibrarySource, OrtLibrary, Runtime, RuntimeOptions};
pub use error::{Error, Result};
pub use index::{FlatIndex, IndexEntry, Modality, Neighbor};
pub use model::{Embeddings, ImageSource, Model, ModelOptions, Scored};
pub use provider::{
    DimRange, EngineCacheKey, ExecutionProvider, GpuStack, ProviderReport, ShapeProfile,
    TensorRtOptions,
};
pub use retrieval::{Hit, Query};
pub use vlbeit_core as core;
pub use vlbeit_core::manifest::{Manifest, ParityReport};
pub use vlbeit_core::preprocess::Rgb8Image;
