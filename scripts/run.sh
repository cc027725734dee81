#!/usr/bin/env bash
# scripts/run.sh: the main job. Installs what is missing, builds everything,
# prints the shipped models' results table, then serves the demo page on
# http://127.0.0.1:8080/web/ (PORT=... to change) until interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --browser --train
scripts/build.sh

echo
echo "== quantscope built: native CLI build/native/qs, WASM modules build/wasm/ (default) and build/wasm-threads/ (pthreads: the page with ?threads=2)"
echo "== the shipped models (models/*/card.md) on the KJV validation split:"
if [ -s data/kjv.txt ] || scripts/kjv.sh >/dev/null; then
  build/native/qs eval --data data/kjv.txt --windows 64 \
    $(for d in models/*/model.safetensors; do printf -- '--model %s ' "$(dirname "$d")"; done)
fi

echo
echo "== the demo page"
[ -s data/kjv.txt ] || echo "run: no KJV corpus: the page works, without perplexities and training"
[ -s data/kjv.txt ] && node scripts/web-corpus.mjs
exec node scripts/serve.mjs --port "${PORT:-8080}"
