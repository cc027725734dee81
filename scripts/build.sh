#!/usr/bin/env bash
# scripts/build.sh: builds the native library, CLI and tests (build/native) and
# the WebAssembly module (build/wasm) and its optional pthreads variant
# (build/wasm-threads); --sanitize adds the ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

cmake --preset native >/dev/null
cmake --build build/native -j"$jobs"
if [ "${1:-}" = "--sanitize" ]; then
  cmake --preset native-sanitize >/dev/null
  cmake --build build/sanitize -j"$jobs"
fi
scripts/build-wasm.sh
scripts/build-wasm.sh --threads
