//! Bakes the libtorch directory into the test binaries' run path (as `train/build.rs` does):
//! the parity tests link libtorch through vlbeit-train and must run without LD_LIBRARY_PATH.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = Path::new(&libtorch).join("lib");
    // Resolve the .venv link, so the binaries keep working if the checkout's link goes away.
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
