#!/usr/bin/env bash
# scripts/train-models.sh: trains the shipped models with `qs train`, one shared
# recipe per architecture and one variant each (models/RECIPES.md says how the
# recipe was chosen). Each model trains in its own run folder under RUNS
# (default runs/, outside git) with checkpoints every 100 steps; running the
# script again resumes every unfinished run bit-exactly (same flags, same
# thread count). A finished run's model is copied to models/<id>/ with its
# command, curve, log and wall time, then the cards and models/index.json are
# regenerated (scripts/model-cards.mjs).
#
# Usage: scripts/train-models.sh [ID ...]   IDs: bert-vanilla bert-clipped bert-gated
#        bert-op bert-softmax1 opt-vanilla opt-clipped opt-gated (default: the BERT ones)
#   JOBS=2 (default) trains two runs side by side with one thread each: on 2 cores
#   that is as fast as one run on two threads, and each run stays reproducible.
#   STEPS=N shortens every schedule (pilots); RUNS=DIR moves the run folders.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-runs}
JOBS=${JOBS:-2}

# The shared recipes. BERT: batch 64 x 128 bytes, AdamW (no decay on biases and
# LayerNorm gains), warmup then cosine; the same flags for every variant.
bert=(--arch bert --layers 4 --hidden 128 --heads 4 --ffn 512 --max-pos 128 --seq-len 128
      --batch 64 --steps "${STEPS:-2400}" --lr 1e-3 --wd 0.01 --warmup 150 --min-lr-ratio 0.5
      --seed 1 --threads 1 --eval-every 100 --eval-batches 4 --log-every 50 --save-every 100)
opt=(--arch opt --layers 4 --hidden 128 --heads 4 --ffn 512 --max-pos 128 --seq-len 128
     --batch 32 --steps "${STEPS:-1500}" --lr 2e-3 --wd 0.01 --warmup 150 --min-lr-ratio 0.1
     --seed 1 --threads 1 --eval-every 100 --eval-batches 4 --log-every 50 --save-every 100)
declare -A variant=(
  [vanilla]="--variant vanilla"
  [clipped]="--variant clipped --clip-alpha 0.8 --gamma-ramp"
  [gated]="--variant gated --gate-type conditional_per_token --gate-init 0.25"
  [op]="--variant op --op-beta 0.2"
  [softmax1]="--variant softmax1"
)

ids=("$@")
[ ${#ids[@]} -gt 0 ] || ids=(bert-vanilla bert-gated bert-clipped bert-op bert-softmax1)

scripts/setup.sh --train
scripts/kjv.sh >/dev/null
[ -x build/native/qs ] || scripts/build.sh

# The flags of one model, as `qs train` gets them (--out added by train()).
flags() {
  local arch=${1%%-*} v=${1#*-}
  [ -n "${variant[$v]:-}" ] || { echo "train-models: unknown model id $1" >&2; return 2; }
  local -n recipe=$arch
  echo "--data data/kjv.txt ${recipe[*]} ${variant[$v]}"
}

train() {
  local id=$1 run=$RUNS/$1 out=models/$1 args
  args=$(flags "$id")
  mkdir -p "$run"
  local resume=""
  [ -f "$run/train_state.safetensors" ] && resume="--resume"
  echo "== $id: build/native/qs train --out $run $args $resume"
  local start
  start=$(date +%s)
  # shellcheck disable=SC2086
  build/native/qs train --out "$run" $args $resume >>"$run/train.log" 2>&1
  # Wall time over all sessions of the run, resumes included.
  echo $(( $(cat "$run/wall_s.txt" 2>/dev/null || echo 0) + $(date +%s) - start )) >"$run/wall_s.txt"
  mkdir -p "$out"
  cp "$run/config.json" "$run/model.safetensors" "$run/curve.csv" "$run/train.log" "$run/wall_s.txt" "$out/"
  # The command as the default RUNS names it: RUNS moves the folder, not the result.
  echo "build/native/qs train --out runs/$id $args" >"$out/command.txt"
}

running=0
for id in "${ids[@]}"; do
  flags "$id" >/dev/null
  train "$id" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

node scripts/model-cards.mjs
