#!/usr/bin/env bash
# Makes the project's Python venv (libtorch for the trainer, ONNX Runtime for the runtime, onnx
# for the exporter's checker tests, tritonclient for Triton's model-config schema) once, and
# links it as `.venv` in the repository.
#
# The venv lives in a per-user cache directory keyed by the pinned versions, so fresh clones and
# CI runs on the same machine reuse it; a half-made venv (interrupted install) is detected by its
# missing completion stamp and rebuilt. Nothing is done when everything is already in place.
#
# Environment:
#   VLBEIT_CACHE_DIR  where venvs are kept (default: ${XDG_CACHE_HOME:-~/.cache}/vlbeit)
#   VLBEIT_PYTHON     the interpreter to build the venv from (default: python3)
# Arguments:
#   --c-tools         also make sure cc, c++, make, pkg-config and valgrind are there (tests)
set -euo pipefail

TORCH_VERSION=2.13.0
ORT_VERSION=1.31.1
ONNX_VERSION=1.19.1
TRITONCLIENT_VERSION=2.73.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${VLBEIT_PYTHON:-python3}
cache=${VLBEIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vlbeit}

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null || die "no Python interpreter '$python' (set VLBEIT_PYTHON)"
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
command -v cargo >/dev/null || die "no cargo on PATH: install Rust (rustup) first"

# With --c-tools (the test command): the C ABI's tests build C/C++ programs with pkg-config and
# run them under valgrind; install what is missing (as root, from Debian) or say what to install.
missing=()
[[ "${1:-}" == "--c-tools" ]] && for tool in cc c++ make pkg-config valgrind; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing the C toolchain for the C ABI tests (missing: ${missing[*]})"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config valgrind >/dev/null
    else
        die "missing ${missing[*]} (needed by the C ABI tests): install build-essential, pkg-config and valgrind"
    fi
fi

venv="$cache/venv-py$pyver-torch$TORCH_VERSION-ort$ORT_VERSION-onnx$ONNX_VERSION-tritonclient$TRITONCLIENT_VERSION"
stamp="$venv/vlbeit/complete"
mkdir -p "$cache"

# One set-up at a time per cache (a test run and a demo started together must not race).
exec 9>"$cache/.setup.lock"
flock 9

if [[ ! -f "$stamp" ]]; then
    if [[ -e "$venv" ]]; then
        say "removing an incomplete venv at $venv"
        rm -rf "$venv"
    fi
    say "creating $venv (torch==$TORCH_VERSION, onnxruntime==$ORT_VERSION, onnx==$ONNX_VERSION, tritonclient==$TRITONCLIENT_VERSION; ~5 GB, a few minutes)"
    start=$(date +%s)
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "torch==$TORCH_VERSION" "onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION"
    # tritonclient only for its model-config schema (tritonclient/grpc/model_config_pb2.py), which
    # the Triton repository test parses every config.pbtxt with. That module needs nothing but
    # protobuf, which onnx already brought; --no-deps keeps out the client's network stack (grpcio,
    # geventhttpclient, aiohttp, ...) we never import, and cannot pull a protobuf over onnx's.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
        "tritonclient==$TRITONCLIENT_VERSION"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # Stable names, independent of the Python version, for .cargo/config.toml and the runtime.
    mkdir -p "$venv/vlbeit"
    ln -sfn "$site/torch" "$venv/vlbeit/libtorch"
    ln -sfn "$site/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$venv/vlbeit/libonnxruntime.so"
    [[ -f "$venv/vlbeit/libtorch/lib/libtorch.so" ]] || die "the torch wheel has no lib/libtorch.so"
    [[ -f "$venv/vlbeit/libonnxruntime.so" ]] || die "the onnxruntime wheel has no libonnxruntime.so.$ORT_VERSION"
    "$venv/bin/python" - "$TORCH_VERSION" "$ORT_VERSION" "$TRITONCLIENT_VERSION" <<'EOF'
import importlib.metadata, importlib.util, pathlib, sys, torch, onnxruntime
want_torch, want_ort, want_triton = sys.argv[1], sys.argv[2], sys.argv[3]
assert torch.__version__.split("+")[0] == want_torch, torch.__version__
assert onnxruntime.__version__ == want_ort, onnxruntime.__version__
assert importlib.metadata.version("tritonclient") == want_triton
# The schema module loads on its own (without tritonclient.grpc's grpc imports).
spec = importlib.util.find_spec("tritonclient")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
schema = importlib.util.spec_from_file_location("model_config_pb2", path)
module = importlib.util.module_from_spec(schema)
schema.loader.exec_module(module)
module.ModelConfig()
EOF
    printf 'torch==%s\nonnxruntime==%s\nonnx==%s\ntritonclient==%s\n' "$TORCH_VERSION" "$ORT_VERSION" \
        "$ONNX_VERSION" "$TRITONCLIENT_VERSION" >"$stamp"
    say "venv ready in $(( $(date +%s) - start )) s"
fi

# `.venv` in the repository points at the cached venv (git-ignored).
if [[ "$(readlink "$root/.venv" 2>/dev/null)" != "$venv" ]]; then
    if [[ -e "$root/.venv" && ! -L "$root/.venv" ]]; then
        die "$root/.venv exists and is not the link this script manages; move it away"
    fi
    ln -sfn "$venv" "$root/.venv"
fi
