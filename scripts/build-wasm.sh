#!/usr/bin/env bash
# scripts/build-wasm.sh: configures and builds the WebAssembly module with
# Debian's Emscripten; the artefacts stay in build/wasm/ where quantscope.mjs loads them.
# --threads builds the optional pthreads module instead, in build/wasm-threads/
# (preset wasm-threads; quantscope.mjs loads it after configure({ threads })).
set -euo pipefail

cd "$(dirname "$0")/.."
# Emscripten 3.1.6's JS optimiser needs Debian's acorn (docs/toolchain.md).
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

preset=wasm
[ "${1:-}" = "--threads" ] && preset=wasm-threads
dir=build/$preset
# Each build has its relaxed-SIMD module beside the plain one (CMakeLists.txt).
files=("$dir/quantscope_core.mjs" "$dir/quantscope_core.wasm" "$dir/quantscope_core_relaxed.wasm")
[ "$preset" = wasm-threads ] && files+=("$dir/quantscope_core.worker.js")

jobs="${JOBS:-$(nproc)}"
start=$(date +%s)
# The preset names Emscripten's toolchain file: the same thing emcmake does,
# without emcmake's own argument rewriting.
cmake --preset "$preset" >/dev/null
# The threaded build warns that JS views of growable shared memory are slower:
# our JS touches the heap only to copy inputs and results.
cmake --build "$dir" -j "$jobs" --target quantscope_wasm quantscope_wasm_relaxed 2>&1 |
  { grep -v 'pthreads-mem-growth\|design/issues/1271' || true; }
# The relaxed module runs under the plain module's glue (and worker script):
# the two links must agree on everything but the file name.
for ext in mjs worker.js; do
  [ -f "$dir/quantscope_core.$ext" ] || continue
  if ! cmp -s <(sed 's/quantscope_core_relaxed_proto/quantscope_core/g' "$dir/quantscope_core_relaxed_proto.$ext") \
      "$dir/quantscope_core.$ext"; then
    echo "build-wasm: the relaxed module's quantscope_core.$ext differs from the plain one's" >&2
    exit 1
  fi
done
for f in "${files[@]}"; do
  [ -s "$f" ] || { echo "build-wasm: missing $f" >&2; exit 1; }
  # A CSP without 'unsafe-eval' refuses eval and new Function: fail the build
  # rather than the page if the glue ever grows one.
  if grep -Eq '(^|[^A-Za-z_.$])eval\(|new Function\(' "$f"; then
    echo "build-wasm: $f uses eval or new Function" >&2
    exit 1
  fi
done
echo "build-wasm: $dir done in $(( $(date +%s) - start )) s:" \
  "$(stat -c %s "${files[0]}") B glue," \
  "$(stat -c %s "${files[1]}") B wasm"
