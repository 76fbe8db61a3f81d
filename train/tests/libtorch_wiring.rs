//! The trainer binary finds libtorch through its baked-in run path: no LD_LIBRARY_PATH, no
//! Python environment needed at run time.

use std::process::Command;

#[test]
fn vlbeit_train_runs_without_library_path_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_vlbeit-train"))
        .arg("doctor")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBTORCH")
        .env_remove("VIRTUAL_ENV")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("smoke test:   ok"), "{stdout}");
}

#[test]
fn libtorch_computes_in_process() {
    let info = vlbeit_train::device::TorchInfo::probe().unwrap();
    assert!(info.smoke_ok);
    assert!(info.threads >= 1);
}
