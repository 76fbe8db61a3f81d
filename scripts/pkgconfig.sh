#!/usr/bin/env bash
# Writes pkg-config metadata for the libvlbeit built in LIB_DIR (default target/debug):
#   LIB_DIR/pkgconfig/vlbeit.pc         libvlbeit.so, with an rpath to LIB_DIR
#   LIB_DIR/pkgconfig/vlbeit-static.pc  libvlbeit.a and the system libraries it needs
# Then: PKG_CONFIG_PATH=LIB_DIR/pkgconfig pkg-config --cflags --libs vlbeit
# ONNX Runtime is not linked: libvlbeit loads it at run time (vlbeit_global_init's path,
# ORT_DYLIB_PATH, the active venv, the project venv found at build time, the system loader).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lib_dir="$(cd "${1:-$root/target/debug}" && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"
out="$lib_dir/pkgconfig"
mkdir -p "$out"
write() { # name, description, libs
  local tmp="$out/$1.pc.tmp"
  cat > "$tmp" <<PC
prefix=$root
includedir=\${prefix}/include
cppincludedir=\${prefix}/bindings/cpp
libdir=$lib_dir

Name: $1
Description: $2
Version: $version
Cflags: -I\${includedir} -I\${cppincludedir}
Libs: $3
PC
  mv "$tmp" "$out/$1.pc"
}
# The system libraries a Rust staticlib needs (rustc --print native-static-libs).
native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
write vlbeit "VL-BEiT runtime C ABI (shared library)" "-L\${libdir} -Wl,-rpath,\${libdir} -lvlbeit"
write vlbeit-static "VL-BEiT runtime C ABI (static library)" "\${libdir}/libvlbeit.a $native"
echo "$out"
