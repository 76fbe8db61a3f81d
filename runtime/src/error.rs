//! The runtime's error type: every variant carries what a user needs to fix the cause (the file,
//! the input's position, the provider, expected vs found).

use std::path::PathBuf;

use vlbeit_core::manifest::ManifestError;
use vlbeit_core::preprocess::PreprocessError;
use vlbeit_core::text::TextError;

use crate::environment::EnvironmentError;

/// Result of the runtime's API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a bundle cannot be loaded or a request cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest is missing, unreadable or invalid.
    #[error("bundle {}: {source}", bundle.display())]
    Manifest {
        bundle: PathBuf,
        #[source]
        source: ManifestError,
    },
    /// A file of the bundle is absent, has another hash than the manifest says, or is not
    /// listed.
    #[error("bundle {}: file {file}: {problem}", bundle.display())]
    BundleFile {
        bundle: PathBuf,
        file: String,
        problem: String,
    },
    /// A graph's inputs or outputs differ from its manifest signature.
    #[error("bundle {}: graph {graph}: {problem}", bundle.display())]
    Signature {
        bundle: PathBuf,
        graph: String,
        problem: String,
    },
    /// The bundle's tokenizer does not load or does not match the manifest's settings.
    #[error("bundle {}: tokenizer.json: {source}", bundle.display())]
    Tokenizer {
        bundle: PathBuf,
        #[source]
        source: TextError,
    },
    /// An explicitly requested execution provider cannot run here (strict mode).
    #[error(
        "execution provider {provider} is unavailable for {graph}: {reason} \
         (strict mode; set strict = false to fall back to CPU)"
    )]
    ProviderUnavailable {
        provider: String,
        graph: String,
        reason: String,
    },
    /// Provider options that cannot work (e.g. a TensorRT profile with min > max).
    #[error("invalid execution provider options: {0}")]
    ProviderOptions(String),
    /// ONNX Runtime failed to create a session or to run a graph.
    #[error("{graph}: ONNX Runtime: {reason}")]
    Ort { graph: String, reason: String },
    /// An image of a request could not be read or preprocessed; `index` is its position in the
    /// request (0-based), whatever batching happened inside.
    #[error("image {index} of the request: {source}")]
    Image {
        index: usize,
        #[source]
        source: PreprocessError,
    },
    /// An image file of a request could not be read.
    #[error("image {index} of the request ({}): {source}", path.display())]
    ImageFile {
        index: usize,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A text of a request could not be tokenized; `index` is its position in the request.
    #[error("text {index} of the request: {source}")]
    Text {
        index: usize,
        #[source]
        source: TextError,
    },
    /// A request that is not well formed (empty, too large, a zero `top_k`, …).
    #[error("invalid request: {0}")]
    Request(String),
    /// The bundle has no head for this task (e.g. `answer` without a VQA head).
    #[error("the bundle has no {head} head: {hint}")]
    MissingHead { head: &'static str, hint: String },
    /// An index file that cannot be read, or that another bundle built.
    #[error("index {}: {problem}", path.display())]
    Index { path: PathBuf, problem: String },
    /// The golden replay could not run (a missing or inconsistent `golden/`).
    #[error("{}: cannot verify: {reason}", path.display())]
    Verify { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// ONNX Runtime's error (of a run or of a session builder) for `graph`.
    pub(crate) fn ort<R>(graph: &str) -> impl FnOnce(ort::Error<R>) -> Self + '_ {
        move |e| Self::Ort {
            graph: graph.to_owned(),
            reason: e.to_string(),
        }
    }
}
