#!/usr/bin/env bash
# bench/train_speed.sh: training throughput of `qs train` vs PyTorch CPU on the
# same BERT-style model, batch, sequence length and threads; alternating runs,
# medians and their ratio. Usage: bench/train_speed.sh [rounds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/openblas-core.sh
rounds=${1:-3}
threads=${2:-2}
shape=(--layers 4 --hidden 128 --heads 4 --ffn 512 --batch 32 --seq-len 128)
scripts/setup.sh --train --bench >/dev/null
scripts/kjv.sh >/dev/null
[ -x build/native/qs ] || scripts/build.sh >/dev/null

qs_rate() {  # steady state: the last 20-step window of a 30-step run
  build/native/qs train --out "$tmp/qs" "${shape[@]}" --steps 30 --warmup 2 --threads "$threads" \
    --eval-every 0 --log-every 10 --save-every 0 | tail -n 1 | sed -E 's/.* ([0-9]+) tok\/s.*/\1/'
}
torch_rate() {
  /usr/bin/python3 bench/torch_train.py "${shape[@]}" --steps 20 --threads "$threads" |
    sed -E 's/.*: ([0-9]+) tokens\/s/\1/'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/q"; : >"$tmp/t"
for ((i = 1; i <= rounds; i++)); do
  q=$(qs_rate); t=$(torch_rate)
  echo "round $i: qs $q tokens/s, torch $t tokens/s"
  echo "$q" >>"$tmp/q"; echo "$t" >>"$tmp/t"
done
q=$(median <"$tmp/q"); t=$(median <"$tmp/t")
echo "median over $rounds rounds, $threads threads, ${shape[*]}:"
echo "qs train $q tokens/s, PyTorch $t tokens/s, ratio $(awk -v a="$q" -v b="$t" 'BEGIN{printf "%.2f", a/b}')x"
