#!/usr/bin/env bash
# bench/build.sh: builds what bench/run.sh runs: the native library and bench
# binary (OpenBLAS), the WASM bench module and the int8 C tests compiled to WASM.
# QS_BENCH_NATIVE_BUILD / QS_BENCH_WASM_BUILD pick other build folders.
set -euo pipefail
cd "$(dirname "$0")/.."
# Emscripten 3.1.6's JS optimiser needs Debian's acorn (docs/toolchain.md).
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

native_dir=${QS_BENCH_NATIVE_BUILD:-build/native}
wasm_dir=${QS_BENCH_WASM_BUILD:-build/wasm}
out=build/bench
jobs=${JOBS:-$(nproc)}
mkdir -p "$out"

# ---- native: the library as the native preset builds it (-O2 -march=native)
if [ ! -f "$native_dir/CMakeCache.txt" ]; then
  if [ "$native_dir" = build/native ]; then cmake --preset native >/dev/null
  else cmake -S . -B "$native_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null; fi
fi
cmake --build "$native_dir" -j "$jobs" --target quantscope test_int8 >/dev/null
cc -std=c11 -O2 -march=native -Wall -Wextra -Wno-unused-parameter bench/native/bench.c \
  -Iinclude -Isrc "$native_dir/libquantscope.a" -lopenblas -lm -lpthread -o "$out/bench_native"
# Checkpoints of the real shapes (BERT-base, OPT-125m): load, memory, forward, W8A8 evaluation.
cc -std=c11 -O2 -march=native -Wall -Wextra bench/native/scale.c -Iinclude "$native_dir/libquantscope.a" \
  -lm -lpthread -o "$out/bench_scale"

# ---- WASM: the library as the wasm preset builds it (-O2 -msimd128)
if [ ! -f "$wasm_dir/CMakeCache.txt" ]; then
  if [ "$wasm_dir" = build/wasm ]; then cmake --preset wasm >/dev/null
  else cmake -S . -B "$wasm_dir" -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_TOOLCHAIN_FILE=/usr/share/emscripten/cmake/Modules/Platform/Emscripten.cmake >/dev/null; fi
fi
cmake --build "$wasm_dir" -j "$jobs" --target quantscope >/dev/null
# The bench module loads like quantscope_core (ES module, the wrapper hands it
# the compiled .wasm), so it also runs in a page or a worker.
# QS_BENCH_PROFILING=1 keeps the function names (node --cpu-prof, bench.mjs profile).
names=()
[ "${QS_BENCH_PROFILING:-0}" = 1 ] && names=(--profiling-funcs)
bench_core() {  # library, output .mjs, extra compiler flags
  local lib=$1 output=$2
  shift 2
  emcc -std=c11 -O3 -msimd128 -Wall "${names[@]}" "$@" bench/wasm/bench_exports.c "$lib" \
    -Iinclude -Isrc -sMODULARIZE=1 -sEXPORT_ES6=1 -sEXPORT_NAME=createBenchCore \
    -sENVIRONMENT=web,worker -sFILESYSTEM=0 -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=2147483648 \
    -sINITIAL_MEMORY=16777216 -sTOTAL_STACK=1048576 '-sEXPORTED_FUNCTIONS=[_malloc,_free]' \
    -o "$output"
}
bench_core "$wasm_dir/libquantscope.a" "$out/bench_core.mjs"
# The relaxed-SIMD bench module (FMA in the float kernels, CMakeLists.txt):
# the same exports over libquantscope_relaxed.a, renumbered as
# quantscope_core_relaxed.wasm is, under bench_core.mjs's glue. bench.mjs runs
# it beside the plain one where the engine has relaxed SIMD.
rm -f "$out/bench_core_relaxed.wasm"
if cmake --build "$wasm_dir" -j "$jobs" --target quantscope_relaxed >/dev/null 2>&1; then
  bench_core "$wasm_dir/libquantscope_relaxed.a" "$out/bench_core_relaxed_proto.mjs" -mrelaxed-simd -DQS_WASM_RELAXED
  node scripts/wasm-relaxed.mjs "$out/bench_core_relaxed_proto.wasm" "$out/bench_core_relaxed.wasm" >/dev/null
  cmp -s <(sed 's/bench_core_relaxed_proto/bench_core/g' "$out/bench_core_relaxed_proto.mjs") "$out/bench_core.mjs" ||
    { echo "bench/build.sh: the relaxed bench module's glue differs from bench_core.mjs" >&2; exit 1; }
fi
# tests/c/test_int8.c as a Node program: checks the SIMD128 kernel (natively
# the AVX2 one runs) against its scalar reference and fake quantization.
emcc -std=c11 -O2 -msimd128 tests/c/test_int8.c "$wasm_dir/libquantscope.a" -Itests/c -Iinclude -Isrc \
  -sSINGLE_FILE=1 -sENVIRONMENT=node -sEXIT_RUNTIME=1 -sALLOW_MEMORY_GROWTH=1 \
  -o "$out/test_int8_wasm.cjs"

# ---- the public module, for forwards through quantscope.mjs (optional here)
if [ "$wasm_dir" = build/wasm ]; then
  cmake --build build/wasm -j "$jobs" --target quantscope_wasm >/dev/null ||
    echo "bench/build.sh: warning: quantscope_wasm did not build; quantscope.mjs rows will be missing" >&2
fi
# ---- the pthreads module, for the threads rows in headless Chromium (optional here)
scripts/build-wasm.sh --threads >/dev/null ||
  echo "bench/build.sh: warning: the pthreads build failed; the WASM threads rows will be missing" >&2
echo "bench/build.sh: built $out/bench_native, $out/bench_scale, $out/bench_core.{mjs,wasm}, $out/bench_core_relaxed.wasm, $out/test_int8_wasm.cjs"
