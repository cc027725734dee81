#!/usr/bin/env bash
# scripts/train-models.sh: trains the shipped models (one shared recipe, one
# variant each) on the KJV with `qs train`, then evaluates them all with
# `qs eval` and writes models/<id>/card.md and models/index.json.
# Usage: scripts/train-models.sh [variant ...]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."

# The shared recipe (README "Results" says how it was chosen).
recipe=(--arch bert --layers 4 --hidden 128 --heads 4 --ffn 512 --max-pos 128 --seq-len 128
        --batch 32 --steps "${STEPS:-1500}" --lr 1e-3 --wd 0.01 --warmup 75 --min-lr-ratio 0.1
        --seed 1 --threads 1 --eval-every 100 --eval-batches 4 --log-every 50 --save-every 250)
declare -A extra=(
  [vanilla]="--variant vanilla"
  [clipped]="--variant clipped --clip-alpha 0.4"
  [gated]="--variant gated --gate-type conditional_per_token --gate-init 0.25"
  [op]="--variant op --op-beta 0.2"
)
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(vanilla clipped gated op)

scripts/setup.sh --train
scripts/kjv.sh >/dev/null
[ -x build/native/qs ] || scripts/build.sh

# One single-threaded run per variant, all at once: on 2 cores the total
# time equals running them one after another with 2 threads each.
train() {
  local v=$1 out=models/bert-$1
  rm -rf "$out" && mkdir -p "$out"
  local cmd="build/native/qs train --out $out --data data/kjv.txt ${recipe[*]} ${extra[$v]}"
  echo "== $cmd"
  local start
  start=$(date +%s)
  # shellcheck disable=SC2086
  $cmd >"$out/train.log" 2>&1
  echo "$cmd" >"$out/command.txt"
  echo $(( $(date +%s) - start )) >"$out/wall_s.txt"
  rm -f "$out/train_state.safetensors"
}
for v in "${variants[@]}"; do train "$v" & done
wait

node scripts/model-cards.mjs
