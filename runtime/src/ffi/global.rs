//! Process-wide state of the C ABI: the ONNX Runtime environment and the log settings.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::sync::RwLock;

use super::vlbeit_status::*;
use super::{FfiError, FfiResult, arg_str, guard, opt_str, vlbeit_status};
use crate::environment::{Runtime, RuntimeOptions};

/// Severity of a log message; a message is delivered when its level is at least the
/// configured `log_level`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum vlbeit_log_level {
    /// Every failed call, with its message (the same as `vlbeit_last_error_message()`).
    VLBEIT_LOG_DEBUG = 0,
    /// Initialization and model loads: library paths, providers.
    VLBEIT_LOG_INFO = 1,
    /// Degraded operation, e.g. a non-strict GPU request that fell back to CPU.
    VLBEIT_LOG_WARN = 2,
    VLBEIT_LOG_ERROR = 3,
    /// No messages at all.
    VLBEIT_LOG_NONE = 4,
}

/// Receives log messages. `message` is NUL-terminated and valid only during the call.
/// Called from whichever thread made the library call that logs: it must be thread-safe and
/// must not call `vlbeit_global_init` or `vlbeit_global_shutdown`.
pub type vlbeit_log_callback = Option<
    unsafe extern "C" fn(level: vlbeit_log_level, message: *const c_char, user_data: *mut c_void),
>;

/// Parameters of `vlbeit_global_init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vlbeit_init_params {
    /// `sizeof(vlbeit_init_params)`; set by `vlbeit_init_default_params()`.
    pub struct_size: u32,
    /// Messages below this `vlbeit_log_level` are dropped (default `VLBEIT_LOG_WARN`).
    pub log_level: i32,
    /// The ONNX Runtime shared library to load (e.g. `/opt/ort/lib/libonnxruntime.so.1.31.1`);
    /// NULL (default) searches: `ORT_DYLIB_PATH`, the active venv's `onnxruntime` wheel, the
    /// project venv found at build time, then `libonnxruntime.so` through the system loader.
    pub ort_library: *const c_char,
    /// Where messages go; NULL (default) writes them to stderr.
    pub log_callback: vlbeit_log_callback,
    /// Passed back to `log_callback` unchanged.
    pub log_user_data: *mut c_void,
}

struct Global {
    runtime: Runtime,
    log_level: vlbeit_log_level,
    log_callback: vlbeit_log_callback,
    /// The caller's pointer, only handed back.
    log_user_data: usize,
}

static GLOBAL: RwLock<Option<Global>> = RwLock::new(None);

fn read_global<R>(f: impl FnOnce(Option<&Global>) -> R) -> R {
    let guard = GLOBAL.read().unwrap_or_else(|p| p.into_inner());
    f(guard.as_ref())
}

/// The process's runtime, or `VLBEIT_ERROR_NOT_INITIALIZED`.
pub(crate) fn runtime() -> FfiResult<Runtime> {
    read_global(|g| g.map(|g| g.runtime.clone())).ok_or_else(|| {
        FfiError::new(
            VLBEIT_ERROR_NOT_INITIALIZED,
            "vlbeit_global_init has not been called (or vlbeit_global_shutdown was)",
        )
    })
}

fn log_level_from(value: i32) -> FfiResult<vlbeit_log_level> {
    use vlbeit_log_level::*;
    Ok(match value {
        0 => VLBEIT_LOG_DEBUG,
        1 => VLBEIT_LOG_INFO,
        2 => VLBEIT_LOG_WARN,
        3 => VLBEIT_LOG_ERROR,
        4 => VLBEIT_LOG_NONE,
        other => {
            return Err(FfiError::invalid(format!(
                "params->log_level is {other}; expected VLBEIT_LOG_DEBUG (0) .. VLBEIT_LOG_NONE (4)"
            )));
        }
    })
}

/// Delivers `message` to the configured callback (or stderr) if its level passes. Before
/// `vlbeit_global_init`, only warnings and errors are written, to stderr.
pub(crate) fn log(level: vlbeit_log_level, message: &str) {
    let (threshold, callback, user_data) = read_global(|g| match g {
        Some(g) => (g.log_level, g.log_callback, g.log_user_data),
        None => (vlbeit_log_level::VLBEIT_LOG_WARN, None, 0),
    });
    if level < threshold || level == vlbeit_log_level::VLBEIT_LOG_NONE {
        return;
    }
    match callback {
        Some(callback) => {
            let text = super::c_string(message);
            // SAFETY: the caller registered this callback for exactly this use; the lock is
            // released, so the callback may call back into the library.
            unsafe { callback(level, text.as_ptr(), user_data as *mut c_void) };
        }
        None => {
            // A closed stderr must not fail (or panic) the call being logged.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "vlbeit [{}]: {message}",
                level_name(level)
            );
        }
    }
}

fn level_name(level: vlbeit_log_level) -> &'static str {
    use vlbeit_log_level::*;
    match level {
        VLBEIT_LOG_DEBUG => "debug",
        VLBEIT_LOG_INFO => "info",
        VLBEIT_LOG_WARN => "warn",
        VLBEIT_LOG_ERROR => "error",
        VLBEIT_LOG_NONE => "none",
    }
}

pub(crate) fn system_info() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ort = read_global(|g| g.map(|g| g.runtime.clone()));
    let ort = match ort {
        Some(runtime) => {
            let library = runtime.library();
            let providers = runtime
                .available_providers()
                .map(|p| p.join(","))
                .unwrap_or_else(|e| format!("unknown ({e})"));
            format!(
                "ONNX Runtime {} from {} ({}), providers {providers}",
                library.version,
                library.path.display(),
                library.source
            )
        }
        None => "ONNX Runtime not initialized".to_owned(),
    };
    format!(
        "vlbeit {} (ABI {}); {ort}; {cpus} CPUs",
        env!("CARGO_PKG_VERSION"),
        super::VLBEIT_ABI_VERSION
    )
}

/// Default `vlbeit_init_params`: library search order, `VLBEIT_LOG_WARN` to stderr.
/// Thread safety: safe from any thread.
/// Ownership: returned by value (its pointers are NULL). Errors: none (cannot fail).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_init_default_params() -> vlbeit_init_params {
    vlbeit_init_params {
        struct_size: std::mem::size_of::<vlbeit_init_params>() as u32,
        log_level: vlbeit_log_level::VLBEIT_LOG_WARN as i32,
        ort_library: std::ptr::null(),
        log_callback: None,
        log_user_data: std::ptr::null_mut(),
    }
}

/// Loads ONNX Runtime and creates the process's environment; call it before any other
/// function that needs a model. `params` NULL means the defaults.
///
/// Calling it again (e.g. after `vlbeit_global_shutdown`) replaces the log settings; the ONNX
/// Runtime library itself stays loaded until the process exits (it cannot be unloaded), so a
/// later call naming another library file fails with `VLBEIT_ERROR_ENVIRONMENT`.
///
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT` (struct_size, log_level, a non-UTF-8 path),
/// `VLBEIT_ERROR_ENVIRONMENT` (library missing, not loadable, older than 1.31).
/// Ownership: `params` and its strings are only read during the call.
/// Thread safety: safe to call from any thread, serialized internally; do not call it while
/// other threads use the library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_global_init(params: *const vlbeit_init_params) -> vlbeit_status {
    guard("vlbeit_global_init", || {
        let defaults = vlbeit_init_default_params();
        let params = if params.is_null() {
            &defaults
        } else {
            // SAFETY: non-NULL params point to the caller's struct.
            unsafe { super::params(params, "params") }?
        };
        let log_level = log_level_from(params.log_level)?;
        // SAFETY: a non-NULL string is NUL-terminated (documented contract).
        let library = unsafe { opt_str(params.ort_library, "params->ort_library") }?;
        let mut options = RuntimeOptions::default();
        if let Some(path) = library {
            options.ort_library = Some(PathBuf::from(path));
        }
        let runtime = Runtime::new(options).map_err(|e| FfiError::from(crate::Error::from(e)))?;
        {
            let mut global = GLOBAL.write().unwrap_or_else(|p| p.into_inner());
            *global = Some(Global {
                runtime: runtime.clone(),
                log_level,
                log_callback: params.log_callback,
                log_user_data: params.log_user_data as usize,
            });
        }
        let library = runtime.library();
        log(
            vlbeit_log_level::VLBEIT_LOG_INFO,
            &format!(
                "ONNX Runtime {} from {} ({})",
                library.version,
                library.path.display(),
                library.source
            ),
        );
        Ok(())
    })
}

/// Ends the library's use: drops the log callback and marks the library uninitialized. Fails
/// with `VLBEIT_ERROR_INVALID_STATE` while models or indexes are still live (free them first).
/// Calling it when not initialized is a no-op. ONNX Runtime stays loaded until process exit.
/// Thread safety: do not call it while other threads use the library.
/// Ownership: the library releases its own state; handles stay the caller's.
/// Errors: `VLBEIT_ERROR_INVALID_STATE` (live handles).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_global_shutdown() -> vlbeit_status {
    guard("vlbeit_global_shutdown", || {
        let live = super::live_handle_count();
        if live > 0 {
            return Err(FfiError::new(
                VLBEIT_ERROR_INVALID_STATE,
                format!("{live} model or index handles are still live; free them first"),
            ));
        }
        let mut global = GLOBAL.write().unwrap_or_else(|p| p.into_inner());
        *global = None;
        Ok(())
    })
}

/// Sends one message through the library's log (level filter and callback). For applications
/// that want their messages in the same stream; mostly useful in tests.
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`. Thread safety: safe from any thread.
/// Ownership: the arguments are only read during the call; nothing returned needs freeing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_log_message(level: i32, message: *const c_char) -> vlbeit_status {
    guard("vlbeit_log_message", || {
        let level = log_level_from(level)?;
        // SAFETY: a non-NULL string is NUL-terminated (documented contract).
        let message = unsafe { arg_str(message, "message") }?;
        log(level, message);
        Ok(())
    })
}
