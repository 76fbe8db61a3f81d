//! The C ABI's own checks: the committed header is what cbindgen makes of this module, and the
//! argument checks report instead of dereferencing.

use std::ffi::CStr;
use std::path::PathBuf;

use super::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails when `include/vlbeit.h` differs from what cbindgen generates from `runtime/src/ffi`;
/// `VLBEIT_BLESS=1` rewrites it.
#[test]
fn header_is_fresh() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_src(crate_dir.join("src/ffi/global.rs"))
        .with_src(crate_dir.join("src/ffi/model.rs"))
        .with_src(crate_dir.join("src/ffi/index.rs"))
        .generate()
        .expect("cbindgen parses runtime/src/ffi")
        .write(&mut generated);
    let text = String::from_utf8(generated.clone()).unwrap();
    let declarations = text.split("extern \"C\" {").nth(1).unwrap();
    for item in declarations.split("/**").skip(1) {
        let (doc, declaration) = item.split_once("*/").unwrap();
        let name = declaration.split('(').next().unwrap().trim();
        for needed in ["Ownership", "Thread safety", "Errors"] {
            assert!(
                doc.contains(needed),
                "the comment of {name} does not state {needed}"
            );
        }
    }
    let header = repo_root().join("include/vlbeit.h");
    let committed = std::fs::read(&header).unwrap_or_default();
    if committed == generated {
        return;
    }
    if std::env::var_os("VLBEIT_BLESS").is_some_and(|v| v == "1") {
        let tmp = header.with_extension("h.tmp");
        std::fs::write(&tmp, &generated).unwrap();
        std::fs::rename(&tmp, &header).unwrap();
        return;
    }
    panic!(
        "{} is stale: regenerate it with VLBEIT_BLESS=1 cargo test -p vlbeit --lib \
         ffi::tests::header_is_fresh and commit it",
        header.display()
    );
}

fn last_error() -> String {
    // SAFETY: the library's message is a valid C string.
    unsafe { CStr::from_ptr(vlbeit_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn null_and_stale_handles_are_reported_not_dereferenced() {
    let mut dim = 0usize;
    // SAFETY: the calls under test must not dereference the bad pointers.
    unsafe {
        assert_eq!(
            vlbeit_model_embed_dim(std::ptr::null(), &mut dim),
            VLBEIT_ERROR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("model is NULL"), "{}", last_error());
        let bogus = 0x1000 as *const vlbeit_model;
        assert_eq!(
            vlbeit_model_embed_dim(bogus, &mut dim),
            VLBEIT_ERROR_INVALID_HANDLE
        );
        assert!(
            last_error().contains("not a live handle"),
            "{}",
            last_error()
        );
        let mut slot = bogus as *mut vlbeit_model;
        assert_eq!(vlbeit_model_free(&mut slot), VLBEIT_ERROR_INVALID_HANDLE);
        let mut null: *mut vlbeit_model = std::ptr::null_mut();
        assert_eq!(vlbeit_model_free(&mut null), VLBEIT_OK);
        assert_eq!(vlbeit_model_free(std::ptr::null_mut()), VLBEIT_OK);
    }
}

#[test]
fn wrong_struct_size_is_refused_before_reading_the_rest() {
    let mut params = vlbeit_model_default_params();
    params.struct_size -= 4;
    let mut model = std::ptr::null_mut();
    // SAFETY: valid pointers; the bundle is never opened.
    let status = unsafe { vlbeit_model_load(c"/nonexistent".as_ptr(), &params, &mut model) };
    assert_eq!(status, VLBEIT_ERROR_INVALID_ARGUMENT);
    assert!(last_error().contains("struct_size"), "{}", last_error());
    assert!(model.is_null());
}

#[test]
fn strings_follow_the_size_query_convention() {
    let mut needed = 0usize;
    // SAFETY: valid buffers of the stated sizes.
    unsafe {
        assert_eq!(
            vlbeit_system_info(std::ptr::null_mut(), 0, &mut needed),
            VLBEIT_OK
        );
        let mut small = vec![0 as std::ffi::c_char; needed - 1];
        assert_eq!(
            vlbeit_system_info(small.as_mut_ptr(), small.len(), &mut needed),
            VLBEIT_ERROR_BUFFER_TOO_SMALL
        );
        let mut buf = vec![0 as std::ffi::c_char; needed];
        assert_eq!(
            vlbeit_system_info(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()),
            VLBEIT_OK
        );
        let text = CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
        assert!(text.starts_with("vlbeit "), "{text}");
    }
}

#[test]
fn every_status_has_a_name() {
    for status in 0..=14 {
        // SAFETY: static strings.
        let name = unsafe { CStr::from_ptr(vlbeit_status_name(status)) };
        assert!(name.to_str().unwrap().starts_with("VLBEIT_"), "{status}");
    }
    // SAFETY: static string.
    let unknown = unsafe { CStr::from_ptr(vlbeit_status_name(99)) };
    assert_eq!(unknown.to_str().unwrap(), "unknown status");
}

#[test]
fn a_panic_becomes_an_internal_error_with_its_message() {
    let status = guard("vlbeit_test_entry", || panic!("boom at the boundary"));
    assert_eq!(status, VLBEIT_ERROR_INTERNAL);
    let message = last_error();
    assert!(
        message.starts_with("vlbeit_test_entry: internal error") && message.contains("boom"),
        "{message}"
    );
}
