//! Finding, checking and loading the ONNX Runtime shared library, and the process's one
//! ONNX Runtime environment.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), never linked or downloaded. Its
//! path is resolved in a fixed, documented order (see [`OrtLibrary::resolve`]); the first source
//! that is *set* decides: an explicit path that does not exist is an error, not a reason to try
//! the next source, so a typo never silently loads another build.
//!
//! `ort` panics when a lazily loaded library is missing and allows one environment per process,
//! so this module always loads explicitly (`ort::init_from`), checks the version itself first,
//! and keeps the environment for the life of the process.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The ONNX Runtime release the project is built and tested against. Newer 1.x releases keep
/// the C API backward compatible and are accepted; older ones lack API entries `ort` calls.
pub const REQUIRED_ORT_MAJOR: u32 = 1;
pub const REQUIRED_ORT_MINOR: u32 = 31;

/// Environment variable naming the library file (the same variable `ort` itself reads).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The project venv's library, fixed when this crate was built (`.cargo/config.toml`).
const PROJECT_VENV_DYLIB: Option<&str> = option_env!("VLBEIT_PROJECT_ORT_DYLIB");

/// Where a library path came from, in the order they are consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// `RuntimeOptions::ort_library` (C ABI: `vlbeit_global_init`'s path).
    Explicit,
    /// The `ORT_DYLIB_PATH` environment variable.
    EnvVar,
    /// The `onnxruntime` wheel of the active venv (`VIRTUAL_ENV`).
    ActiveVenv,
    /// The `onnxruntime` wheel of the project venv made by `scripts/setup.sh`.
    ProjectVenv,
    /// `libonnxruntime.so` through the system loader (`LD_LIBRARY_PATH`, ld.so.cache).
    SystemLoader,
}

impl std::fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Explicit => "explicit option",
            Self::EnvVar => ORT_DYLIB_ENV,
            Self::ActiveVenv => "active venv (VIRTUAL_ENV)",
            Self::ProjectVenv => "project venv",
            Self::SystemLoader => "system loader",
        })
    }
}

/// Errors of finding, loading or initializing ONNX Runtime.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error(
        "ONNX Runtime library {} (from the {source_kind}) does not exist; fix the path or unset it",
        path.display()
    )]
    LibraryMissing {
        path: PathBuf,
        source_kind: LibrarySource,
    },
    #[error(
        "ONNX Runtime {REQUIRED_ORT_MAJOR}.{REQUIRED_ORT_MINOR} or newer was not found; searched: {searched}. \
         Run scripts/setup.sh, set {ORT_DYLIB_ENV}, or pass the library path explicitly"
    )]
    LibraryNotFound { searched: String },
    #[error("cannot load ONNX Runtime library {} (from the {source_kind}): {reason}", path.display())]
    LibraryLoad {
        path: PathBuf,
        source_kind: LibrarySource,
        reason: String,
    },
    #[error(
        "ONNX Runtime library {} (from the {source_kind}) is version {found}; \
         vlbeit needs {REQUIRED_ORT_MAJOR}.x with x >= {REQUIRED_ORT_MINOR}",
        path.display()
    )]
    WrongVersion {
        path: PathBuf,
        source_kind: LibrarySource,
        found: String,
    },
    #[error(
        "ONNX Runtime is already loaded from {} in this process; cannot load {} as well \
         (one ONNX Runtime per process)",
        loaded.display(),
        requested.display()
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("creating the ONNX Runtime environment failed: {0}")]
    Init(String),
}

/// A resolved, version-checked ONNX Runtime library file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtLibrary {
    /// The path handed to the loader (a bare file name for the system loader).
    pub path: PathBuf,
    /// `OrtGetApiBase()->GetVersionString()`, e.g. `1.31.1`.
    pub version: String,
    pub source: LibrarySource,
}

struct Candidate {
    path: PathBuf,
    source: LibrarySource,
}

fn active_venv_dylib() -> Option<PathBuf> {
    let venv = std::env::var_os("VIRTUAL_ENV")?;
    let lib = Path::new(&venv).join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .filter_map(|capi| std::fs::read_dir(capi).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so.1."))
        })
        .collect();
    found.sort();
    found.pop()
}

impl OrtLibrary {
    /// Finds the library by the documented order and checks its version:
    ///
    /// 1. `explicit` (an application's own choice);
    /// 2. the `ORT_DYLIB_PATH` environment variable;
    /// 3. the `onnxruntime` wheel of the active venv (`$VIRTUAL_ENV`), then of the project venv
    ///    that `scripts/setup.sh` made when this crate was built;
    /// 4. `libonnxruntime.so` through the system loader.
    ///
    /// Sources 1 and 2 are binding when set: a missing file there is an error.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self, EnvironmentError> {
        if let Some(path) = explicit {
            return Self::check_binding(path, LibrarySource::Explicit);
        }
        if let Some(path) = std::env::var_os(ORT_DYLIB_ENV).filter(|p| !p.is_empty()) {
            return Self::check_binding(Path::new(&path), LibrarySource::EnvVar);
        }
        let mut candidates = Vec::new();
        if let Some(path) = active_venv_dylib() {
            candidates.push(Candidate {
                path,
                source: LibrarySource::ActiveVenv,
            });
        }
        if let Some(path) = PROJECT_VENV_DYLIB {
            candidates.push(Candidate {
                path: PathBuf::from(path),
                source: LibrarySource::ProjectVenv,
            });
        }
        let mut searched = Vec::new();
        for candidate in candidates {
            if candidate.path.exists() {
                return Self::probe(&candidate.path, candidate.source);
            }
            searched.push(format!(
                "{} ({})",
                candidate.path.display(),
                candidate.source
            ));
        }
        // The system loader: a bare name lets dlopen search LD_LIBRARY_PATH and ld.so.cache.
        for name in ["libonnxruntime.so", "libonnxruntime.so.1"] {
            match Self::probe(Path::new(name), LibrarySource::SystemLoader) {
                Ok(lib) => return Ok(lib),
                Err(EnvironmentError::LibraryLoad { .. }) => {
                    searched.push(format!("{name} ({})", LibrarySource::SystemLoader))
                }
                Err(other) => return Err(other),
            }
        }
        Err(EnvironmentError::LibraryNotFound {
            searched: searched.join(", "),
        })
    }

    fn check_binding(path: &Path, source: LibrarySource) -> Result<Self, EnvironmentError> {
        if !path.exists() {
            return Err(EnvironmentError::LibraryMissing {
                path: path.to_owned(),
                source_kind: source,
            });
        }
        Self::probe(path, source)
    }

    /// Opens the library, reads its version string and checks it, without handing it to `ort`.
    fn probe(path: &Path, source: LibrarySource) -> Result<Self, EnvironmentError> {
        let load_error = |reason: String| EnvironmentError::LibraryLoad {
            path: path.to_owned(),
            source_kind: source,
            reason,
        };
        // SAFETY: loading a shared library runs its initializers; ONNX Runtime's are benign, and
        // a file that is not a shared library makes dlopen fail cleanly.
        let lib =
            unsafe { libloading::Library::new(path) }.map_err(|e| load_error(e.to_string()))?;
        type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
        // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
        let get_base: libloading::Symbol<GetApiBase> = unsafe { lib.get(b"OrtGetApiBase\0") }
            .map_err(|_| load_error("it does not export OrtGetApiBase".into()))?;
        // SAFETY: the base struct is static data of the library, valid while it is loaded.
        let base = unsafe { get_base() };
        if base.is_null() {
            return Err(load_error("OrtGetApiBase returned NULL".into()));
        }
        // SAFETY: checked non-null above; GetVersionString returns a static C string.
        let version = unsafe {
            let ptr = ((*base).GetVersionString)();
            if ptr.is_null() {
                return Err(load_error("GetVersionString returned NULL".into()));
            }
            CStr::from_ptr(ptr).to_string_lossy().into_owned()
        };
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        let (major, minor) = (parts.next().flatten(), parts.next().flatten());
        let supported = matches!((major, minor), (Some(REQUIRED_ORT_MAJOR), Some(m)) if m >= REQUIRED_ORT_MINOR);
        if !supported {
            return Err(EnvironmentError::WrongVersion {
                path: path.to_owned(),
                source_kind: source,
                found: version,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            version,
            source,
        })
    }
}

/// Options of the process-wide ONNX Runtime environment.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The library file to load; `None` resolves by the documented order.
    pub ort_library: Option<PathBuf>,
}

impl RuntimeOptions {
    /// Loads this exact library file instead of searching.
    pub fn with_ort_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.ort_library = Some(path.into());
        self
    }
}

/// The loaded ONNX Runtime and its environment: create one explicitly (the library crate never
/// does it behind the caller's back) and share it; it lives until the process exits.
#[derive(Debug, Clone)]
pub struct Runtime {
    library: OrtLibrary,
    environment: ort::environment::Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

impl Runtime {
    /// Loads ONNX Runtime and creates the environment, or returns the one this process already
    /// has when `options` resolve to the same library. A different library is an error: ONNX
    /// Runtime cannot be loaded twice into one process.
    pub fn new(options: RuntimeOptions) -> Result<Self, EnvironmentError> {
        let _guard = INIT_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = RUNTIME.get() {
            let requested = match (&options.ort_library, std::env::var_os(ORT_DYLIB_ENV)) {
                (Some(path), _) => Some(path.clone()),
                (None, Some(env)) if !env.is_empty() => Some(PathBuf::from(env)),
                _ => None,
            };
            if let Some(requested) = requested
                && !same_file(&requested, &existing.library.path)
            {
                return Err(EnvironmentError::AlreadyLoaded {
                    loaded: existing.library.path.clone(),
                    requested,
                });
            }
            return Ok(existing.clone());
        }
        let library = OrtLibrary::resolve(options.ort_library.as_deref())?;
        let builder = ort::init_from(&library.path).map_err(|e| EnvironmentError::LibraryLoad {
            path: library.path.clone(),
            source_kind: library.source,
            reason: e.to_string(),
        })?;
        let environment = builder
            .with_name("vlbeit")
            .with_telemetry(false)
            .build()
            .map_err(|e| EnvironmentError::Init(e.to_string()))?;
        let runtime = Self {
            library,
            environment,
        };
        Ok(RUNTIME.get_or_init(|| runtime).clone())
    }

    /// The library in use: path, version and where it was found.
    pub fn library(&self) -> &OrtLibrary {
        &self.library
    }

    /// The `ort` environment, for building sessions.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// Execution providers compiled into the loaded library (e.g. `CPUExecutionProvider`,
    /// `CUDAExecutionProvider`, `TensorrtExecutionProvider`).
    pub fn available_providers(&self) -> Result<Vec<String>, EnvironmentError> {
        let api = ort::api();
        let mut providers: *mut *mut std::ffi::c_char = std::ptr::null_mut();
        let mut count: std::ffi::c_int = 0;
        // SAFETY: the API table is valid after init; the out-pointers are valid for writes.
        let status = unsafe { (api.GetAvailableProviders)(&mut providers, &mut count) };
        if !status.0.is_null() {
            // SAFETY: a non-null status is owned by us and must be released.
            unsafe { (api.ReleaseStatus)(status.0) };
            return Err(EnvironmentError::Init(
                "GetAvailableProviders failed".into(),
            ));
        }
        let names = (0..count as usize)
            // SAFETY: ONNX Runtime returned `count` valid C strings.
            .map(|i| {
                unsafe { CStr::from_ptr(*providers.add(i)) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        // SAFETY: releases exactly what GetAvailableProviders returned.
        let status = unsafe { (api.ReleaseAvailableProviders)(providers, count) };
        if !status.0.is_null() {
            // SAFETY: a non-null status is owned by us and must be released.
            unsafe { (api.ReleaseStatus)(status.0) };
        }
        Ok(names)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
