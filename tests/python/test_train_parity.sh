#!/usr/bin/env bash
# tests/python/test_train_parity.sh: the C trainer against PyTorch, step by step.
# For each model variant `qs train --trace` runs 20 steps of a tiny model and
# tests/python/torch_reference.py replays them in float64 autograd, comparing
# every step's loss, gradient norm and lr and the final parameters (tolerances
# and why: the top of torch_reference.py). Skips, saying so, without PyTorch.
set -uo pipefail
cd "$(dirname "$0")/../.."

. tests/python/common.sh
QS=${QS:-build/native/qs}
require_torch "PyTorch step parity"
require_bin test_train_parity "$QS"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=${QS_PARITY_DATA:-data/kjv.txt}
if [ ! -f "$data" ]; then
  # The corpus needs a validation split too: every 20th 16 KiB block from the
  # 10th, so > 176 KiB of text; ~450 KiB of varied lines.
  data=$tmp/corpus.txt
  awk 'BEGIN { split("and the of to in that he for his unto shall be they is with not all thou", w, " ");
               for (i = 1; i <= 9000; i++) { s = "";
                 for (j = 0; j < 9; j++) s = s w[(i * 7 + j * 13 + int(i / 17)) % 20 + 1] " ";
                 printf "%d:%d %s%d.\n", i % 150 + 1, i % 31 + 1, s, (i * 7919) % 10007 } }' > "$data"
fi

# A tiny model whose parameters really move in 20 steps (lr 3e-3, clip 1.0 is
# hit in the first steps); evaluation and intermediate saves off for speed.
model=(--layers 2 --hidden 32 --heads 2 --ffn 64 --max-pos 32)
train=(--steps 20 --batch 4 --seq-len 32 --lr 3e-3 --wd 0.01 --clip 1.0 --warmup 5 --seed 3)
logs=(--eval-every 0 --log-every 0 --save-every 0)
ref=(--lr 3e-3 --wd 0.01 --clip 1.0 --warmup 5)

# name | qs train flags | deliberate bugs the replay must catch (the
# reference's --mutate: shows the tolerances would see a real bug; each costs
# a replay, so they run where they apply) | the reference's own flags beyond
# ${ref[*]} (the optimiser's). Clipped softmax must really clip
# for the test to mean anything (the reference prints the share clipped):
# BERT alpha 0.9 (clip threshold 0.028, just below 1/T = 0.031: 0.5 %), the
# ramp case alpha 2 (90 %; above 1/T, which is what --gamma-ramp is for), OPT
# alpha 1.2 (28 %: causal rows over few keys sit far above the threshold;
# qs warns that the threshold is above 1/T, as it should).
generic=adam-eps-in-sqrt,no-bias-correction,decay-everything,no-decay,lr-next-step
generic+=,no-grad-clip,loss-per-sequence,gelu-tanh,ln-eps-1e-5
# SOAP and Shampoo (src/train/optim.c) on BERT only: why not OPT, the top of
# torch_reference.py. SOAP's betas are its defaults (0.95, 0.95); shampoo_beta
# 0.9 tells a mix-up with beta2 apart, and a refresh every 5 updates makes
# three of them (steps 6, 11, 16) in 20 steps; Shampoo recomputes its roots at
# steps 1, 6, 11 and 16. The SOAP case with bugs decays by 0.1: at 0.01 the
# decay bugs move SOAP's loss by only 1.5x its bound.
soap="--optimizer soap --shampoo-beta 0.9 --precond-every 5"
soap_ref="$soap --beta1 0.95 --beta2 0.95"
soap_bugs=soap-update-first-step,soap-stats-with-beta2,soap-no-moment-rotation
soap_bugs+=,soap-no-v-permutation,soap-no-refresh,soap-ascending-basis,soap-adamw-bias-correction
soap_bugs+=,decay-everything,no-decay,lr-next-step,no-grad-clip
shampoo="--optimizer shampoo --precond-every 5"
shampoo_bugs=shampoo-no-graft,shampoo-root-half,shampoo-stats-ema,shampoo-root-before-stats
shampoo_bugs+=,adam-eps-in-sqrt,no-bias-correction,decay-everything
cases=(
  "bert-vanilla|--arch bert --variant vanilla --threads 1|"
  "bert-vanilla-2threads|--arch bert --variant vanilla --threads 2|"
  "bert-clipped|--arch bert --variant clipped --clip-alpha 0.9 --threads 1|clip-straight-through"
  "bert-clipped-ramp|--arch bert --variant clipped --clip-alpha 2 --gamma-ramp --threads 1|$generic,clip-straight-through,ramp-off-by-one"
  "bert-gated-token|--arch bert --variant gated --gate-type conditional_per_token --threads 1|gate-other-head-slice"
  "bert-gated-head|--arch bert --variant gated --gate-type unconditional_per_head --threads 1|"
  "bert-gated-mlp|--arch bert --variant gated --gate-mlp --threads 1|gate-other-head-slice"
  "bert-gated-all|--arch bert --variant gated --gate-all-features --threads 1|"
  "bert-op|--arch bert --variant op --threads 1|op-normalised-residual"
  "bert-softmax1|--arch bert --variant softmax1 --threads 1|softmax1-as-softmax"
  "opt-vanilla|--arch opt --variant vanilla --threads 1|opt-positions-from-0"
  "opt-clipped|--arch opt --variant clipped --clip-alpha 1.2 --threads 1|clip-straight-through"
  "opt-gated|--arch opt --variant gated --threads 1|gate-from-residual"
  "opt-op|--arch opt --variant op --threads 1|op-normalised-residual"
  "bert-soap|--arch bert --variant vanilla --threads 1 $soap --wd 0.1|$soap_bugs|$soap_ref --wd 0.1"
  "bert-soap-2threads|--arch bert --variant vanilla --threads 2 $soap||$soap_ref"
  "bert-soap-op|--arch bert --variant op --threads 1 $soap||$soap_ref"
  "bert-soap-gated-mlp|--arch bert --variant gated --gate-mlp --threads 1 $soap||$soap_ref"
  "bert-shampoo|--arch bert --variant vanilla --threads 1 $shampoo|$shampoo_bugs|$shampoo"
  "bert-shampoo-2threads|--arch bert --variant vanilla --threads 2 $shampoo||$shampoo"
  "bert-shampoo-gated-mlp|--arch bert --variant gated --gate-mlp --threads 1 $shampoo||$shampoo"
)

start=$(date +%s)
passed=0 failed=0
for c in "${cases[@]}"; do
  IFS='|' read -r name flagtext mutations reftext <<< "$c"
  read -r -a flags <<< "$flagtext"
  read -r -a refflags <<< "$reftext"
  dir=$tmp/$name
  mkdir -p "$dir"
  if ! "$QS" train --out "$dir" --data "$data" --trace "$dir/trace.safetensors" "${model[@]}" \
       "${train[@]}" "${logs[@]}" "${flags[@]}" > "$dir/train.log" 2>&1; then
    echo "$name: FAIL qs train failed:"; sed 's/^/  /' "$dir/train.log"
    failed=$((failed + 1))
    continue
  fi
  extra=()
  [[ " ${flags[*]} " == *" --gamma-ramp "* ]] && extra=(--gamma-ramp)
  if "$PY" tests/python/torch_reference.py --dir "$dir" --trace "$dir/trace.safetensors" \
       --name "$name" "${ref[@]}" "${extra[@]}" "${refflags[@]}" --mutate "$mutations"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
# A trace replays a run from its first step, so qs refuses to trace a resumed one.
out=$("$QS" train --out "$tmp/bert-vanilla" --data "$data" --trace "$tmp/x.safetensors" --resume 2>&1)
if [ $? -eq 2 ] && [[ "$out" == *"cannot be combined with --resume"* ]]; then
  echo "trace-with-resume: PASS refused: ${out%%$'\n'*}"
  passed=$((passed + 1))
else
  echo "trace-with-resume: FAIL expected exit 2 and a message, got:"; echo "$out" | sed 's/^/  /'
  failed=$((failed + 1))
fi
echo "# PyTorch step parity: ${#cases[@]} cases + 1 CLI check in $(( $(date +%s) - start )) s (corpus $data)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
