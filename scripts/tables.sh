#!/usr/bin/env bash
# The seed's Tables 1-5 at small scale on the synthetic scenes (about 55 minutes on 2 cores):
# set-up, release build, the data (scenes, tokenizers) when missing, then `vlbeit-train tables`,
# whose results.md and plots are copied to docs/.
#
# Environment:
#   VLBEIT_TABLES_DIR    run directory (default: data/tables; finished runs are reused)
#   VLBEIT_TABLES_SEEDS  comma-separated seeds (default: 0,1,2)
#   VLBEIT_TABLES_SMOKE  1 = a few steps per run, 1 seed pair, results not copied to docs/
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

data=${VLBEIT_DATA_DIR:-data}
out=${VLBEIT_TABLES_DIR:-$data/tables}
seeds=${VLBEIT_TABLES_SEEDS:-0,1,2}
step() { printf '\n==> %s\n' "$*" >&2; }

step "set-up"
scripts/setup.sh
step "build (release)"
cargo build --release --locked --bin vlbeit-train
train=target/release/vlbeit-train

if [ ! -f "$data/scenes/dataset.json" ]; then
    step "synthetic scenes -> $data/scenes"
    "$train" scenes --out "$data/scenes" --seed 0 --image-size 64
fi
if [ ! -f "$data/tokenizer.json" ]; then
    step "text tokenizer -> $data/tokenizer.json"
    "$train" tokenizer --corpus "$data/scenes" --vocab-size 2000 --out "$data/tokenizer.json"
fi
if [ ! -f "$data/visual_tokenizer/visual_tokenizer.safetensors" ]; then
    step "visual tokenizer -> $data/visual_tokenizer"
    "$train" visual-tokenizer --data "$data/scenes" --out "$data/visual_tokenizer" --steps 600 --seed 0
fi

if [ "${VLBEIT_TABLES_SMOKE:-0}" = 1 ]; then
    step "tables (smoke) -> $out-smoke"
    "$train" tables --data "$data/scenes" --tokenizer "$data/tokenizer.json" \
        --visual-tokenizer "$data/visual_tokenizer" --out "$out-smoke" --seeds 0,1 \
        --pretrain-steps 3 --finetune-steps 3 --eval-limit 16
    exit 0
fi

step "tables -> $out (seeds $seeds)"
"$train" tables --data "$data/scenes" --tokenizer "$data/tokenizer.json" \
    --visual-tokenizer "$data/visual_tokenizer" --out "$out" --seeds "$seeds" \
    --pretrain-steps 500 --finetune-steps 120 --eval-limit 150
mkdir -p docs/results
cp "$out/results.md" docs/results.md
cp "$out"/results/*.png docs/results/
step "wrote docs/results.md"
