#!/usr/bin/env bash
# The main job: set-up, release build, then the demo pipeline on the embedded synthetic data.
#
# Environment:
#   VLBEIT_DEMO_DIR       where the demo writes (default: data/)
#   VLBEIT_DEMO_SEED      data and training seed (default: 0)
#   VLBEIT_DEMO_STEPS     pretraining steps (default: 1000, ~7 min on 2 cores)
#   VLBEIT_DEMO_VT_STEPS  visual tokenizer steps (default: 600, ~30 s)
# A pretraining run found in $VLBEIT_DEMO_DIR/pretrain is resumed; delete it to start over.
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

step "visual tokenizer (VQ-KD, HOG teacher) -> $out/visual_tokenizer"
"$train" visual-tokenizer --data "$out/scenes" --out "$out/visual_tokenizer" --steps "${VLBEIT_DEMO_VT_STEPS:-600}" --seed "$seed"

step "pretrain tiny (MLM + MIM + MVLM) -> $out/pretrain"
"$train" pretrain --config tiny --data "$out/scenes" --tokenizer "$out/tokenizer.json" \
    --visual-tokenizer "$out/visual_tokenizer" --out "$out/pretrain" \
    --steps "${VLBEIT_DEMO_STEPS:-1000}" --eval-every 250 --checkpoint-every 250 --seed "$seed"
"$train" report --metrics "$out/pretrain/metrics.jsonl" --svg "$out/pretrain/loss.svg"

step "export -> $out/bundle (image/text/fusion ONNX graphs, verified against the trainer's golden outputs)"
target/release/vlbeit-export --checkpoint "$out/pretrain/checkpoint" --out "$out/bundle" --verify --force

step "ONNX Runtime"
target/release/vlbeit doctor

printf '\n==> demo finished in %s s; outputs in %s/\n' "$(( $(date +%s) - t0 ))" "$out" >&2
