#!/usr/bin/env bash
# scripts/train-models.sh: trains the shipped models with `qs train`, one shared
# recipe per architecture and one variant each (models/RECIPES.md says how the
# recipe was chosen). Each model trains in its own run folder under RUNS
# (default runs/, outside git) with checkpoints every 100 steps; running the
# script again resumes every unfinished run bit-exactly (same flags, same
# thread count). BERT trains in two phases: the second starts from the first
# one's model (qs train --init) in RUNS/<id>-2. A finished model is copied to
# models/<id>/ with its commands, curve, log and wall time, then the cards and
# models/index.json are regenerated (scripts/model-cards.mjs).
#
# Usage: scripts/train-models.sh [ID ...]   IDs: bert-vanilla bert-clipped bert-gated
#        bert-op bert-softmax1 bert-vanilla-soap bert-op-soap opt-vanilla opt-clipped opt-gated
#        (default: the five AdamW BERT ones)
#   JOBS=2 (default) trains two runs side by side with one thread each: on 2 cores
#   that is as fast as one run on two threads, and each run stays reproducible
#   (for its thread count: THREADS=N gives each run N threads).
#   STEPS=N shortens every schedule (pilots), STEPS2=N BERT's second phase; RUNS=DIR moves
#   the run folders; CARDS=0 leaves the cards and the evaluation for later (more runs
#   to come); QS=BIN trains with another qs binary (a resume must use the binary
#   that started the run: other kernels round differently).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-runs}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
QS=${QS:-build/native/qs}

# The shared recipes. BERT: batch 64 x 128 bytes, AdamW (no decay on biases and
# LayerNorm gains), warmup then cosine; the same flags for every variant.
bert=(--arch bert --layers 4 --hidden 128 --heads 4 --ffn 512 --max-pos 128 --seq-len 128
      --batch 64 --steps "${STEPS:-2400}" --lr 1e-3 --wd 0.01 --warmup 150 --min-lr-ratio 0.5
      --seed 1 --threads "$THREADS" --eval-every 100 --eval-batches 4 --log-every 50 --save-every 100)
opt=(--arch opt --layers 4 --hidden 128 --heads 4 --ffn 512 --max-pos 128 --seq-len 128
     --batch 32 --steps "${STEPS:-4000}" --lr 2e-3 --wd 0.01 --warmup 150 --min-lr-ratio 0.5
     --seed 1 --threads "$THREADS" --eval-every 100 --eval-batches 4 --log-every 50 --save-every 100)
# BERT phase 2, from phase 1's model: the rate warmed back up to 1e-3 for
# 3000 more steps (24.6 M tokens, 44 M in all, near the 49 M of the PyTorch
# probe in models/RECIPES.md), new batches (seed 2). No model flags: --init
# brings the architecture and variant.
bert2=(--batch 64 --seq-len 128 --steps "${STEPS2:-3000}" --lr 1e-3 --wd 0.01 --warmup 50
       --min-lr-ratio 0.5 --seed 2 --threads "$THREADS" --eval-every 100 --eval-batches 4 --log-every 50
       --save-every 100)
declare -A variant=(
  [vanilla]="--variant vanilla"
  [clipped]="--variant clipped --clip-alpha 0.8 --gamma-ramp"
  [gated]="--variant gated --gate-type conditional_per_token --gate-init 0.25"
  [op]="--variant op --op-beta 0.2"
  [softmax1]="--variant softmax1"
  # He et al.'s optimiser finding: the same recipe with SOAP in place of AdamW
  # (its betas 0.95 / 0.95; the rate stays the recipe's 1e-3).
  [vanilla-soap]="--variant vanilla --optimizer soap"
  [op-soap]="--variant op --op-beta 0.2 --optimizer soap"
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

# One phase: qs train into RUNS/<run>, resumed when it has a checkpoint;
# appends the command to $cmds and the seconds to RUNS/<run>/wall_s.txt.
phase() {
  local run=$RUNS/$1 args=$2 resume=""
  mkdir -p "$run"
  [ -f "$run/train_state.safetensors" ] && resume="--resume"
  echo "== $1: $QS train --out $run $args $resume"
  local start
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$QS" train --out "$run" $args $resume >>"$run/train.log" 2>&1
  # Wall time over all sessions of the run, resumes included.
  echo $(( $(cat "$run/wall_s.txt" 2>/dev/null || echo 0) + $(date +%s) - start )) >"$run/wall_s.txt"
  # The command as the default RUNS names it: RUNS moves the folder, not the result.
  cmds+="build/native/qs train --out runs/$1 ${args//$RUNS\//runs/}"$'\n'
}

train() {
  local id=$1 out=models/$1 last=$1 cmds=""
  phase "$id" "$(flags "$id")"
  if [ "${id%%-*}" = bert ]; then
    last=$id-2
    # --init brings the model, not the optimiser: phase 2 names it again.
    local v=${id#*-} optimizer=""
    [[ "${variant[$v]}" =~ (--optimizer [a-z]+) ]] && optimizer=${BASH_REMATCH[1]}
    phase "$last" "--data data/kjv.txt --init $RUNS/$id ${bert2[*]} $optimizer"
  fi
  mkdir -p "$out"
  cp "$RUNS/$last/config.json" "$RUNS/$last/model.safetensors" "$out/"
  # One curve over the phases: a later phase's steps and elapsed seconds
  # continue from where the one before ended.
  awk -F, -v OFS=, 'FNR == 1 { if (NR == 1) print; else { s0 = s; e0 = e }; next }
                    { $1 += s0; $NF += e0; s = $1; e = $NF; print }' \
      "$RUNS/$id/curve.csv" $([ "$last" = "$id" ] || echo "$RUNS/$last/curve.csv") >"$out/curve.csv"
  cat "$RUNS/$id/train.log" $([ "$last" = "$id" ] || echo "$RUNS/$last/train.log") >"$out/train.log"
  echo $(( $(cat "$RUNS/$id/wall_s.txt") + $([ "$last" = "$id" ] && echo 0 || cat "$RUNS/$last/wall_s.txt") )) \
      >"$out/wall_s.txt"
  printf '%s' "$cmds" >"$out/command.txt"
}

# A failed run stops the script before the cards are rewritten: its log says why.
running=0 failed=0
for id in "${ids[@]}"; do
  flags "$id" >/dev/null
  train "$id" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n || failed=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
[ "$failed" = 0 ] || { echo "train-models: a run failed; see its train.log under $RUNS" >&2; exit 1; }

[ "${CARDS:-1}" = 0 ] || node scripts/model-cards.mjs
