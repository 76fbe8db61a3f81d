//! Finding and loading ONNX Runtime: the documented search order, version check, and the
//! errors a user sees when the library is missing, wrong or conflicting.
//!
//! Everything runs in one test function: ONNX Runtime can be loaded once per process, and the
//! order (probe failures first, then the real load, then a conflicting second load) matters.

use std::path::{Path, PathBuf};
use std::process::Command;

use vlbeit::environment::{EnvironmentError, LibrarySource, OrtLibrary};
use vlbeit::{Runtime, RuntimeOptions};

/// Builds a shared library that exports `OrtGetApiBase` reporting `version`, so the version
/// check can be tested without a second ONNX Runtime release.
fn fake_onnxruntime(dir: &Path, version: &str) -> PathBuf {
    let src = dir.join("fake_ort.c");
    std::fs::write(
        &src,
        format!(
            r#"
typedef struct {{ const void* (*GetApi)(unsigned); const char* (*GetVersionString)(void); }} OrtApiBase;
static const void* get_api(unsigned v) {{ (void)v; return 0; }}
static const char* version(void) {{ return "{version}"; }}
static const OrtApiBase base = {{ get_api, version }};
const OrtApiBase* OrtGetApiBase(void) {{ return &base; }}
"#
        ),
    )
    .unwrap();
    let out = dir.join(format!("libonnxruntime-fake-{version}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(status.success(), "cc failed");
    out
}

#[test]
fn onnxruntime_is_found_checked_and_loaded_once() {
    let dir = tempfile::tempdir().unwrap();

    // A binding source that points nowhere is an error naming the path, not a fallback.
    let missing = dir.path().join("nope/libonnxruntime.so");
    match OrtLibrary::resolve(Some(&missing)) {
        Err(EnvironmentError::LibraryMissing { path, source_kind }) => {
            assert_eq!(path, missing);
            assert_eq!(source_kind, LibrarySource::Explicit);
        }
        other => panic!("expected LibraryMissing, got {other:?}"),
    }

    // A file that is not a shared library.
    let junk = dir.path().join("libonnxruntime.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let err = OrtLibrary::resolve(Some(&junk)).unwrap_err();
    assert!(
        matches!(err, EnvironmentError::LibraryLoad { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("libonnxruntime.so"), "{err}");

    // A library of the wrong version is refused before `ort` sees it.
    let old = fake_onnxruntime(dir.path(), "1.16.3");
    match OrtLibrary::resolve(Some(&old)) {
        Err(EnvironmentError::WrongVersion { found, path, .. }) => {
            assert_eq!(found, "1.16.3");
            assert_eq!(path, old);
        }
        other => panic!("expected WrongVersion, got {other:?}"),
    }
    let future = fake_onnxruntime(dir.path(), "2.0.0");
    assert!(matches!(
        OrtLibrary::resolve(Some(&future)),
        Err(EnvironmentError::WrongVersion { .. })
    ));

    // The real library: without an explicit path, the documented order finds the venv's wheel
    // (or whatever ORT_DYLIB_PATH names, when the caller set it).
    let runtime = Runtime::new(RuntimeOptions::default()).expect("ONNX Runtime loads");
    let library = runtime.library().clone();
    assert!(library.version.starts_with("1.31"), "{library:?}");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() && std::env::var_os("VIRTUAL_ENV").is_none() {
        assert_eq!(library.source, LibrarySource::ProjectVenv);
    }
    let providers = runtime.available_providers().unwrap();
    assert!(
        providers.iter().any(|p| p == "CPUExecutionProvider"),
        "{providers:?}"
    );

    // The same library again shares the environment; another one is a typed error.
    let again = Runtime::new(RuntimeOptions::default().with_ort_library(&library.path)).unwrap();
    assert_eq!(again.library(), &library);
    let fake_current = fake_onnxruntime(dir.path(), "1.31.9");
    match Runtime::new(RuntimeOptions::default().with_ort_library(&fake_current)) {
        Err(EnvironmentError::AlreadyLoaded { loaded, requested }) => {
            assert_eq!(loaded, library.path);
            assert_eq!(requested, fake_current);
        }
        other => panic!("expected AlreadyLoaded, got {other:?}"),
    }
}
