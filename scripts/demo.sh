#!/usr/bin/env bash
# The main job: set-up, release build, then the demo pipeline on the embedded synthetic data.
#
# Environment:
#   VLBEIT_DEMO_DIR   where the demo writes (default: data/)
#   VLBEIT_DEMO_SEED  data seed (default: 0)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

out=${VLBEIT_DEMO_DIR:-data}
seed=${VLBEIT_DEMO_SEED:-0}
step() { printf '\n==> %s\n' "$*" >&2; }
t0=$(date +%s)

step "set-up"
scripts/setup.sh

step "build (release)"
cargo build --release --locked --bins
train=target/release/vlbeit-train

step "synthetic scenes -> $out/scenes"
"$train" scenes --out "$out/scenes" --seed "$seed" --image-size 64

step "text tokenizer -> $out/tokenizer.json"
"$train" tokenizer --corpus "$out/scenes" --vocab-size 2000 --out "$out/tokenizer.json"

step "ONNX Runtime"
target/release/vlbeit doctor

printf '\n==> demo finished in %s s; outputs in %s/\n' "$(( $(date +%s) - t0 ))" "$out" >&2
