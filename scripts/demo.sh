#!/usr/bin/env bash
# The main job: set-up, release build, then the demo pipeline on the embedded synthetic data.
#
# Environment:
#   VLBEIT_DEMO_DIR       where the demo writes (default: data/)
#   VLBEIT_DEMO_SEED      data and training seed (default: 0)
#   VLBEIT_DEMO_STEPS     pretraining steps (default: 1000, ~7 min on 2 cores)
#   VLBEIT_DEMO_VT_STEPS  visual tokenizer steps (default: 600, ~30 s)
#   VLBEIT_DEMO_FT_STEPS  fine-tuning steps of retrieval and of VQA (default: 300 each)
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
# One build for the binaries and the report example (one feature resolution, no second build).
cargo build --release --locked --bins --example demo_report
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
"$train" report --metrics "$out/pretrain/metrics.jsonl" --png "$out/pretrain/loss.png"

ft_steps=${VLBEIT_DEMO_FT_STEPS:-300}
step "fine-tune retrieval (ITC + ITM with hard negatives) -> $out/finetune-retrieval"
"$train" finetune --task retrieval --init "$out/pretrain/checkpoint" --data "$out/scenes" \
    --out "$out/finetune-retrieval" --steps "$ft_steps" --seed "$seed"

step "fine-tune VQA -> $out/finetune-vqa"
"$train" finetune --task vqa --init "$out/pretrain/checkpoint" --data "$out/scenes" \
    --out "$out/finetune-vqa" --steps "$ft_steps" --seed "$seed"

export_bin=target/release/vlbeit-export
vlbeit=target/release/vlbeit
for task in retrieval vqa; do
    step "export $task -> $out/bundle-$task (ONNX graphs, refused unless ONNX Runtime reproduces the trainer's golden outputs)"
    "$export_bin" --checkpoint "$out/finetune-$task/checkpoint" --out "$out/bundle-$task" --verify --force
    step "vlbeit verify $out/bundle-$task (golden replay from the raw images and texts)"
    "$vlbeit" verify --bundle "$out/bundle-$task"
done
# The pretrained model as a bundle too (what `vlbeit-export` gave before fine-tuning).
"$export_bin" --checkpoint "$out/pretrain/checkpoint" --out "$out/bundle" --verify --force >/dev/null

step "serve: index the test split, search with and without rerank, answer questions -> $out/report"
target/release/examples/demo_report --bundle "$out/bundle-retrieval" --vqa-bundle "$out/bundle-vqa" \
    --scenes "$out/scenes" --split test --out "$out/report"

step "the CLI on the same index"
query=$(head -1 "$out/report/queries.txt")
printf 'vlbeit search --text "%s" --rerank 8\n' "$query" >&2
"$vlbeit" search --bundle "$out/bundle-retrieval" --index "$out/report/test.vlbidx" \
    --text "$query" --top-k 3 --rerank 8
IFS=$'\t' read -r image question < "$out/report/questions.tsv"
printf 'vlbeit answer --image %s --question "%s"\n' "$image" "$question" >&2
"$vlbeit" answer --bundle "$out/bundle-vqa" --image "$image" --question "$question" --top-k 3

step "ONNX Runtime"
"$vlbeit" doctor

printf '\n==> demo finished in %s s; outputs in %s/\n' "$(( $(date +%s) - t0 ))" "$out" >&2
