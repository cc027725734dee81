#!/usr/bin/env bash
# scripts/run.sh: the main job. Installs what is missing, builds everything,
# then runs the outlier and quantization analysis on the shipped models.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh

qs=build/native/qs
echo
echo "== quantscope built: native CLI $qs, WASM module build/wasm/"
for name in bert opt; do
  model=tests/golden/$name
  ids=$(node -e "console.log(require('./$model/expected.json').input_ids.join(','))")
  echo
  echo "== qs stats on the golden Hugging Face $name checkpoint ($model)"
  "$qs" stats --model "$model" --ids "$ids"
  echo
  echo "== qs quant W8A8 on $model"
  "$qs" quant --model "$model" --ids "$ids" --wbits 8 --abits 8 | head -n 3
done
