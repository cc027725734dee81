#!/usr/bin/env bash
# scripts/build-wasm.sh: configures and builds the WebAssembly module with
# Debian's Emscripten; the artefacts stay in build/wasm/ where quantscope.mjs loads them.
set -euo pipefail

cd "$(dirname "$0")/.."
# Emscripten 3.1.6's JS optimiser needs Debian's acorn (TOOLCHAIN.md).
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

jobs="${JOBS:-$(nproc)}"
start=$(date +%s)
# The preset names Emscripten's toolchain file: the same thing emcmake does,
# without emcmake's own argument rewriting.
cmake --preset wasm >/dev/null
cmake --build build/wasm -j "$jobs" --target quantscope_wasm

for f in build/wasm/quantscope_core.mjs build/wasm/quantscope_core.wasm; do
  [ -s "$f" ] || { echo "build-wasm: missing $f" >&2; exit 1; }
done
# A CSP without 'unsafe-eval' refuses eval and new Function: fail the build
# rather than the page if the glue ever grows one.
if grep -Eq '(^|[^A-Za-z_.$])eval\(|new Function\(' build/wasm/quantscope_core.mjs; then
  echo "build-wasm: the glue uses eval or new Function" >&2
  exit 1
fi
echo "build-wasm: done in $(( $(date +%s) - start )) s:" \
  "$(stat -c %s build/wasm/quantscope_core.mjs) B glue," \
  "$(stat -c %s build/wasm/quantscope_core.wasm) B wasm"
