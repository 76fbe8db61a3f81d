//! Bakes the libtorch directory into the binaries' run path, so `vlbeit-train` and the tests
//! run without LD_LIBRARY_PATH. `LIBTORCH` comes from `.cargo/config.toml` (the project venv's
//! torch wheel); torch-sys reads the same variable to find headers and libraries.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = Path::new(&libtorch).join("lib");
    // Resolve the .venv link: the binary keeps working if the checkout's link goes away while
    // the cached venv stays.
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
