//! `libvlbeit`: the C ABI over the runtime (`include/vlbeit.h` is generated from this module by
//! cbindgen; the doc comments here are the header's documentation).
//!
//! Conventions (DESIGN §7, after llama.h, whisper.h and the ONNX Runtime C API):
//!
//! - Opaque handles (`vlbeit_model`, `vlbeit_index`), created by `*_load` / `*_create` and
//!   released by `*_free(&handle)`, which sets the caller's pointer to NULL. The library keeps a
//!   registry of live handles: a handle that is not live (already freed, never created) is
//!   reported as `VLBEIT_ERROR_INVALID_HANDLE` and never dereferenced.
//! - Params structs start with `uint32_t struct_size` (set by `vlbeit_*_default_params()`).
//! - Every function that can fail returns a `vlbeit_status`; the message of the last failure on
//!   the calling thread is `vlbeit_last_error_message()`.
//! - No panic crosses the boundary: every entry point catches them (`VLBEIT_ERROR_INTERNAL`).
//! - Outputs go to caller-owned buffers: `(out, capacity, out_count)`. `out_count` (optional)
//!   receives the number of elements the result needs; `out == NULL` with `capacity == 0` is a
//!   size query that does no work and returns `VLBEIT_OK`; a smaller non-NULL buffer is
//!   `VLBEIT_ERROR_BUFFER_TOO_SMALL`.
//! - Thread safety is stated on every function; models and indexes are safe to share.

#![allow(non_camel_case_types)]
// The pointers are checked (NULL, live handle) before use; what cannot be checked (a buffer's
// real length) is the documented contract of each function, as in any C API.
#![allow(clippy::missing_safety_doc)]

mod global;
mod index;
mod model;

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

pub use global::*;
pub use index::*;
pub use model::*;

use crate::error::Error;

/// Version of the C ABI: incremented on every incompatible change of `vlbeit.h`.
pub const VLBEIT_ABI_VERSION: u32 = 1;

/// Result of every fallible function. `VLBEIT_OK` is 0; on any other value the calling
/// thread's `vlbeit_last_error_message()` says what failed and why.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vlbeit_status {
    VLBEIT_OK = 0,
    /// A NULL pointer where one is required, a wrong `struct_size`, a string that is not
    /// UTF-8, an out-of-range enum value.
    VLBEIT_ERROR_INVALID_ARGUMENT = 1,
    /// A handle that is not live: already freed or never created.
    VLBEIT_ERROR_INVALID_HANDLE = 2,
    /// An output buffer smaller than the result; `out_count` says how many elements it needs.
    VLBEIT_ERROR_BUFFER_TOO_SMALL = 3,
    /// `vlbeit_global_init` has not been called (or `vlbeit_global_shutdown` was).
    VLBEIT_ERROR_NOT_INITIALIZED = 4,
    /// The call is not possible now (e.g. shutdown while models or indexes are live).
    VLBEIT_ERROR_INVALID_STATE = 5,
    /// ONNX Runtime was not found, has the wrong version, or cannot start.
    VLBEIT_ERROR_ENVIRONMENT = 6,
    /// A file could not be read or written.
    VLBEIT_ERROR_IO = 7,
    /// The bundle is invalid: manifest, file hashes, graph signatures, tokenizer.
    VLBEIT_ERROR_BUNDLE = 8,
    /// An explicitly requested execution provider cannot run here (strict mode).
    VLBEIT_ERROR_PROVIDER_UNAVAILABLE = 9,
    /// A request input is bad: a corrupt image, an empty text, `top_k == 0`, …
    VLBEIT_ERROR_INVALID_INPUT = 10,
    /// The bundle has no head for this task (e.g. `vlbeit_answer` without a VQA head).
    VLBEIT_ERROR_MISSING_HEAD = 11,
    /// An index file that cannot be read, or an index of another bundle or modality.
    VLBEIT_ERROR_INDEX = 12,
    /// ONNX Runtime failed while running a graph.
    VLBEIT_ERROR_RUNTIME = 13,
    /// A bug in libvlbeit (a caught panic); the message says where.
    VLBEIT_ERROR_INTERNAL = 14,
}

use vlbeit_status::*;

/// A failure on its way to the caller: status and message.
#[derive(Debug)]
pub(crate) struct FfiError {
    status: vlbeit_status,
    message: String,
}

impl FfiError {
    pub(crate) fn new(status: vlbeit_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(VLBEIT_ERROR_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for FfiError {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::Environment(_) => VLBEIT_ERROR_ENVIRONMENT,
            Error::Io { .. } | Error::ImageFile { .. } => VLBEIT_ERROR_IO,
            Error::Manifest { .. }
            | Error::BundleFile { .. }
            | Error::Signature { .. }
            | Error::Tokenizer { .. }
            | Error::Verify { .. } => VLBEIT_ERROR_BUNDLE,
            Error::ProviderUnavailable { .. } => VLBEIT_ERROR_PROVIDER_UNAVAILABLE,
            Error::ProviderOptions(_) => VLBEIT_ERROR_INVALID_ARGUMENT,
            Error::Ort { .. } => VLBEIT_ERROR_RUNTIME,
            Error::Image { .. } | Error::Text { .. } | Error::Request(_) => {
                VLBEIT_ERROR_INVALID_INPUT
            }
            Error::MissingHead { .. } => VLBEIT_ERROR_MISSING_HEAD,
            Error::Index { .. } => VLBEIT_ERROR_INDEX,
        };
        // The full chain: "image 1 of the request: cannot decode …: <decoder's reason>".
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Self::new(status, message)
    }
}

pub(crate) type FfiResult<T> = std::result::Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: std::cell::RefCell<CString> = std::cell::RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

/// Runs one entry point: catches panics, turns errors into a status and the thread's last
/// error message (prefixed by the function's name).
pub(crate) fn guard(function: &str, body: impl FnOnce() -> FfiResult<()>) -> vlbeit_status {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let error = match outcome {
        Ok(Ok(())) => return VLBEIT_OK,
        Ok(Err(error)) => error,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            FfiError::new(
                VLBEIT_ERROR_INTERNAL,
                format!("internal error (please report): {what}"),
            )
        }
    };
    let message = format!("{function}: {}", error.message);
    // Logging must not fail the call it reports on.
    let _ = catch_unwind(|| global::log(vlbeit_log_level::VLBEIT_LOG_DEBUG, &message));
    set_last_error(&message);
    error.status
}

/// A required pointer argument.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: non-NULL pointers are the caller's valid objects (documented contract).
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::invalid(format!("{name} is NULL")))
}

/// A required out-pointer.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: as `arg`.
    unsafe { ptr.as_mut() }.ok_or_else(|| FfiError::invalid(format!("{name} is NULL")))
}

/// A required NUL-terminated UTF-8 string.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> FfiResult<&'a str> {
    // SAFETY: non-NULL strings are NUL-terminated (documented contract).
    let text = unsafe { opt_str(ptr, name) }?;
    text.ok_or_else(|| FfiError::invalid(format!("{name} is NULL")))
}

/// An optional (NULL allowed) NUL-terminated UTF-8 string.
pub(crate) unsafe fn opt_str<'a>(ptr: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL strings are NUL-terminated (documented contract).
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map(Some)
        .map_err(|e| FfiError::invalid(format!("{name} is not UTF-8: {e}")))
}

/// `count` elements at `ptr` (NULL allowed only when `count == 0`).
pub(crate) unsafe fn arg_slice<'a, T>(
    ptr: *const T,
    count: usize,
    name: &str,
) -> FfiResult<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::invalid(format!(
            "{name} is NULL but its count is {count}"
        )));
    }
    // SAFETY: the caller passes `count` valid elements (documented contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// A params struct: reads `struct_size` first, so a struct of another size (another header
/// version) is refused without reading past its end.
pub(crate) unsafe fn params<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{name} is NULL")));
    }
    // SAFETY: every params struct starts with `uint32_t struct_size`.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() };
    let want = std::mem::size_of::<T>();
    if size as usize != want {
        return Err(FfiError::invalid(format!(
            "{name}->struct_size is {size}, expected {want} (initialize it with its \
             *_default_params() function, and build against the header of this library)"
        )));
    }
    // SAFETY: the struct has the expected size; non-NULL checked above.
    Ok(unsafe { &*ptr })
}

/// Checks a caller's output buffer against the `needed` element count. Returns `None` for a
/// size query (`out == NULL`, `capacity == 0`): the caller then returns without work.
pub(crate) unsafe fn out_buffer<'a, T>(
    out: *mut T,
    capacity: usize,
    out_count: *mut usize,
    needed: usize,
    name: &str,
) -> FfiResult<Option<&'a mut [T]>> {
    // SAFETY: a non-NULL out_count is writable (documented contract).
    if let Some(count) = unsafe { out_count.as_mut() } {
        *count = needed;
    }
    if out.is_null() {
        if capacity == 0 {
            return Ok(None);
        }
        return Err(FfiError::invalid(format!(
            "{name} is NULL but its capacity is {capacity}"
        )));
    }
    if capacity < needed {
        return Err(FfiError::new(
            VLBEIT_ERROR_BUFFER_TOO_SMALL,
            format!("{name} holds {capacity} elements, the result needs {needed}"),
        ));
    }
    // SAFETY: the caller's buffer holds `capacity >= needed` elements (documented contract).
    Ok(Some(unsafe { std::slice::from_raw_parts_mut(out, needed) }))
}

/// Writes `text` and its NUL into a caller's `char` buffer (size-query convention).
pub(crate) unsafe fn out_string(
    text: &str,
    out: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> FfiResult<()> {
    let bytes = text.as_bytes();
    // SAFETY: forwarded contract of the caller's buffer.
    if let Some(buf) = unsafe { out_buffer(out, capacity, out_len, bytes.len() + 1, "out")? } {
        for (dst, &src) in buf.iter_mut().zip(bytes.iter().chain(std::iter::once(&0))) {
            *dst = src as c_char;
        }
    }
    Ok(())
}

/// Which kind of object a live handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandleKind {
    Model,
    Index,
}

/// Addresses of the live handles, so that a freed or foreign pointer is reported instead of
/// dereferenced (the double-free guard). A BTreeMap frees its nodes when emptied, so a program
/// that freed every handle ends with nothing of the registry on the heap.
static LIVE_HANDLES: Mutex<BTreeMap<usize, HandleKind>> = Mutex::new(BTreeMap::new());

fn live_handles<R>(f: impl FnOnce(&mut BTreeMap<usize, HandleKind>) -> R) -> R {
    let mut guard = LIVE_HANDLES.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

pub(crate) fn live_handle_count() -> usize {
    live_handles(|live| live.len())
}

pub(crate) fn register<T>(object: T, kind: HandleKind) -> *mut T {
    let ptr = Box::into_raw(Box::new(object));
    live_handles(|live| live.insert(ptr as usize, kind));
    ptr
}

fn check_live<T>(ptr: *const T, kind: HandleKind, name: &str) -> FfiResult<()> {
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{name} is NULL")));
    }
    match live_handles(|live| live.get(&(ptr as usize)).copied()) {
        Some(found) if found == kind => Ok(()),
        Some(found) => Err(FfiError::new(
            VLBEIT_ERROR_INVALID_HANDLE,
            format!("{name} is a {found:?} handle, not a {kind:?} handle"),
        )),
        None => Err(FfiError::new(
            VLBEIT_ERROR_INVALID_HANDLE,
            format!("{name} ({ptr:p}) is not a live handle (already freed, or never created)"),
        )),
    }
}

/// A live handle, borrowed for the call.
pub(crate) unsafe fn handle<'a, T>(
    ptr: *const T,
    kind: HandleKind,
    name: &str,
) -> FfiResult<&'a T> {
    check_live(ptr, kind, name)?;
    // SAFETY: registered handles are valid boxes until `unregister`.
    Ok(unsafe { &*ptr })
}

/// Frees the handle `*slot` points to and sets `*slot` to NULL. `slot == NULL` or
/// `*slot == NULL` is a no-op; a handle that is not live is reported, not touched.
pub(crate) unsafe fn free_handle<T>(
    slot: *mut *mut T,
    kind: HandleKind,
    name: &str,
) -> FfiResult<()> {
    // SAFETY: a non-NULL slot is the caller's writable pointer variable.
    let Some(slot) = (unsafe { slot.as_mut() }) else {
        return Ok(());
    };
    let ptr = *slot;
    if ptr.is_null() {
        return Ok(());
    }
    check_live(ptr, kind, name)?;
    let removed = live_handles(|live| live.remove(&(ptr as usize)));
    *slot = std::ptr::null_mut();
    if removed.is_some() {
        // SAFETY: the handle was live, so it is a box from `register`, now unregistered.
        drop(unsafe { Box::from_raw(ptr) });
    }
    Ok(())
}

/// Converts a caller-supplied text into a C string for handles' label and id tables.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// The message of the last call that failed on the calling thread (`""` if none has).
///
/// Ownership: owned by the library; valid until the next failing call on this thread. Copy it
/// to keep it. Thread safety: thread-local, safe from any thread. Never NULL.
/// Errors: none (cannot fail).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_last_error_message() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// The name of a status value (`"VLBEIT_ERROR_IO"`), or `"unknown status"`.
///
/// Ownership: a static string. Thread safety: safe from any thread. Never NULL.
/// Errors: none (cannot fail).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match status {
        0 => c"VLBEIT_OK",
        1 => c"VLBEIT_ERROR_INVALID_ARGUMENT",
        2 => c"VLBEIT_ERROR_INVALID_HANDLE",
        3 => c"VLBEIT_ERROR_BUFFER_TOO_SMALL",
        4 => c"VLBEIT_ERROR_NOT_INITIALIZED",
        5 => c"VLBEIT_ERROR_INVALID_STATE",
        6 => c"VLBEIT_ERROR_ENVIRONMENT",
        7 => c"VLBEIT_ERROR_IO",
        8 => c"VLBEIT_ERROR_BUNDLE",
        9 => c"VLBEIT_ERROR_PROVIDER_UNAVAILABLE",
        10 => c"VLBEIT_ERROR_INVALID_INPUT",
        11 => c"VLBEIT_ERROR_MISSING_HEAD",
        12 => c"VLBEIT_ERROR_INDEX",
        13 => c"VLBEIT_ERROR_RUNTIME",
        14 => c"VLBEIT_ERROR_INTERNAL",
        _ => c"unknown status",
    };
    name.as_ptr()
}

/// `VLBEIT_ABI_VERSION` of the library actually loaded; compare it with the header's macro to
/// detect a header/library mismatch. Thread safety: safe from any thread.
/// Ownership: returned by value. Errors: none (cannot fail).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_abi_version() -> u32 {
    VLBEIT_ABI_VERSION
}

/// The library's version, e.g. `"0.1.0"`.
///
/// Ownership: a static string. Thread safety: safe from any thread. Never NULL.
/// Errors: none (cannot fail).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_version_string() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(version) => version,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// A one-line description of the library and its environment: version, ABI, ONNX Runtime
/// (version, path, how it was found, its execution providers) once initialized, CPU count.
///
/// Writes the NUL-terminated text into `out` (`capacity` bytes); `out_len` (optional) receives
/// the bytes needed, NUL included. `out == NULL` with `capacity == 0` queries the length.
/// Errors: `VLBEIT_ERROR_BUFFER_TOO_SMALL`. Thread safety: safe from any thread.
/// Ownership: `out` is the caller's buffer; the library keeps no pointer to it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_system_info(
    out: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_system_info", || {
        let info = global::system_info();
        // SAFETY: forwarded contract of the caller's buffer.
        unsafe { out_string(&info, out, capacity, out_len) }
    })
}

#[cfg(test)]
mod tests;
