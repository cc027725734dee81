#!/usr/bin/env bash
# bench/run.sh: every speed and memory table of the README in one command:
# GEMM native (vs OpenBLAS) and WASM (vs tfjs XNNPACK), model forwards, threads, memory.
# Usage: bench/run.sh [rounds=7] [min_ms=200]   (e.g. bench/run.sh 1 10 to smoke-test)
#   QS_BENCH_TRAIN=1 adds bench/train_speed.sh (qs train vs PyTorch, about 3 minutes).
# Ends with a summary: every goal of issue 11 beside the figure this run printed for it.
# Models: every models/*/ with a model.safetensors, or QS_BENCH_MODELS="dir ...";
# forwards are timed on the first one (bert-vanilla when present).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/openblas-core.sh
rounds=${1:-7}
min_ms=${2:-200}
native_dir=${QS_BENCH_NATIVE_BUILD:-build/native}

scripts/setup.sh --bench >/dev/null
bench/build.sh >/dev/null

if [ -n "${QS_BENCH_MODELS:-}" ]; then
  read -r -a models <<<"$QS_BENCH_MODELS"
else
  models=()
  for d in models/bert-vanilla models/*/; do
    d=${d%/}
    [ -f "$d/model.safetensors" ] && [[ " ${models[*]} " != *" $d "* ]] && models+=("$d")
  done
fi

mkdir -p build/bench
log=build/bench/results-$(date +%Y%m%d-%H%M%S).txt
{
  echo "quantscope bench: $(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
       "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); rounds $rounds, samples of $min_ms ms"
  echo
  echo "== checks: int8 kernels equal their scalar reference, int8 equals fake quant within rounding"
  echo "native: $("$native_dir/test_int8" | tail -n 1)"
  echo "wasm:   $(node build/bench/test_int8_wasm.cjs | tail -n 1)"
  echo
  echo "== native GEMM (single thread)"
  OPENBLAS_NUM_THREADS=1 build/bench/bench_native gemm "$rounds" "$min_ms"
  echo
  # Relaxed SIMD on, so the relaxed-SIMD module (FMA) runs beside the plain one.
  echo "== WASM GEMM in Node (single thread)"
  node --experimental-wasm-relaxed-simd bench/wasm/bench.mjs gemm "$rounds" "$min_ms"
  echo
  if ((${#models[@]} == 0)); then
    echo "== forwards and memory: no model with a model.safetensors under models/ (set QS_BENCH_MODELS)"
  else
    echo "== forward, native"
    build/bench/bench_native model "${models[0]}" "$rounds" "$min_ms"
    echo
    echo "== forward, WASM in Node"
    node bench/wasm/bench.mjs model "${models[0]}" "$rounds" "$min_ms"
    echo
    echo "== forward, WASM in Node with relaxed SIMD on (as Chromium has it)"
    node --experimental-wasm-relaxed-simd bench/wasm/bench.mjs model "${models[0]}" "$rounds" "$min_ms"
    echo
    echo "== forward, WASM in headless Chromium"
    node bench/browser/run.mjs "${models[0]}" "$rounds" "$min_ms"
    echo
    echo "== threads: batch evaluation natively; evaluation and training steps in the WASM pthreads build"
    build/bench/bench_native eval "${models[0]}" "$rounds" "$min_ms"
    node bench/browser/run.mjs "${models[0]}" "$rounds" "$min_ms" --threads
    echo
    echo "== memory: each model in a fresh process (peaks only grow)"
    for d in "${models[@]}"; do
      echo "native $(build/bench/bench_native mem "$d")"
      echo "wasm   $(node bench/wasm/bench.mjs mem "$d")"
    done
  fi
  if [ -n "${QS_BENCH_TRAIN:-}" ]; then
    echo
    echo "== training: qs train vs PyTorch CPU, 2 threads (bench/train_speed.sh 3 2)"
    bench/train_speed.sh 3 2
  fi
} 2>&1 | tee "$log"

# Issue 11's goals, each as the ratio or figure printed above: one place to read
# them all from this run (a missing line means its section did not run). Made in
# full before it is appended, so that it never reads its own lines.
summary_text=$({
  echo
  echo "== summary: the goals' figures from this run"
  summary() {  # label, goal, pattern: every matching line of the log, with its section
    printf '%s (goal %s)\n' "$1" "$2"
    awk -v pat="$3" '/^== / { sec = substr($0, 4) } $0 ~ pat { sub(/^ +/, ""); print "    " sec ": " $0; n++ }
                     END { if (!n) print "    (not measured in this run)" }' "$log"
  }
  summary "native GEMM vs OpenBLAS, the 8 transformer shapes" ">= 0.9x" '^geometric mean ours/openblas'
  summary "attention products vs OpenBLAS (ours/ob column)" ">= 0.7x" '^(qk|pv) +[0-9]'
  summary "WASM GEMM vs tfjs XNNPACK (plain SIMD128 and relaxed SIMD), and the ceilings under them" ">= 1.5x" '(ours|relaxed)/xnnpack|^ceiling: f32x4'
  summary "statistics on / off (and with only the Outliers view's / off); f32 / int8 W8A8, both with statistics" "<= 1.3x; >= 1.5x" 'statistics on / off'
  summary "forward of 64 tokens with statistics, Node and Chromium" "<= 5 ms" '^ *T =  64  f32 +((relaxed SIMD|SIMD128) +)?([(]|[0-9])'
  summary "qs train vs PyTorch, 2 threads (QS_BENCH_TRAIN=1 runs it)" ">= 4x" '^qs train .* ratio'
})
echo "$summary_text" | tee -a "$log"
echo "(saved to $log)"
