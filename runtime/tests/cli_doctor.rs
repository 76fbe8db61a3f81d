//! `vlbeit doctor` end to end, in child processes so that environment variables and the
//! one-ONNX-Runtime-per-process rule do not leak between cases.

use std::process::Command;

fn vlbeit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlbeit"));
    cmd.env_remove("ORT_DYLIB_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("LD_LIBRARY_PATH");
    cmd
}

#[test]
fn doctor_reports_the_project_venv_library_as_json() {
    let out = vlbeit().args(["doctor", "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["onnxruntime"]["version"], "1.31.1");
    assert_eq!(report["onnxruntime"]["source"], "project venv");
    let providers = report["providers"].as_array().unwrap();
    assert!(providers.iter().any(|p| p == "CPUExecutionProvider"));
}

#[test]
fn a_wrong_ort_dylib_path_is_a_clear_error_not_a_panic() {
    let out = vlbeit()
        .args(["doctor"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
}

#[test]
fn an_explicit_library_wins_over_the_environment() {
    let out = vlbeit()
        .args(["doctor", "--ort-library", "/also/missing.so"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/also/missing.so"), "{stderr}");
    assert!(stderr.contains("explicit option"), "{stderr}");
}
