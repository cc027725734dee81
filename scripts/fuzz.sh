#!/usr/bin/env bash
# scripts/fuzz.sh: builds the libFuzzer targets of tests/fuzz into build/fuzz
# (clang 14, ASan + UBSan) and runs each one for a bounded time or run count.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]  SECONDS per target (default 10), all targets
#                                          unless named (safetensors config wordpiece
#                                          byte_tokenizer resume quant model)
#   scripts/fuzz.sh 0                      replay the committed corpora only (regressions)
#   scripts/fuzz.sh 600                    the long local run: 10 minutes per target
#   FUZZ_RUNS=1000000 scripts/fuzz.sh      a run count per target instead of a time
#   FUZZ_FLAGS='-jobs=2 -workers=2' ...    extra libFuzzer flags
#   scripts/fuzz.sh --seeds                rewrite tests/fuzz/corpus with make_seeds
#
# New inputs go to build/fuzz/corpus/<target> (the committed seeds stay as they
# are); a crash leaves build/fuzz/artifacts/<target>-crash-* and makes the
# script fail with the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(safetensors config wordpiece byte_tokenizer resume quant model)
seeds=0
if [ "${1:-}" = "--seeds" ]; then seeds=1; shift; fi
secs="${1:-10}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# clang 14 with the libFuzzer and sanitizer runtimes (Debian: clang-14, libclang-rt-14-dev).
if ! command -v clang-14 >/dev/null 2>&1 ||
   ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "fuzz: installing clang-14 libclang-rt-14-dev"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    clang-14 libclang-rt-14-dev >/dev/null
fi

start=$(date +%s)
CC=clang-14 cmake -S tests/fuzz -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
echo "fuzz: built ${#all[@]} targets in build/fuzz ($(( $(date +%s) - start )) s)"

if [ "$seeds" = 1 ]; then
  rm -rf tests/fuzz/corpus.new
  build/fuzz/make_seeds tests/fuzz/corpus.new tests/golden
  # regression inputs (regress-*) are kept; everything else is regenerated
  for d in tests/fuzz/corpus/*/; do
    t=$(basename "$d")
    for f in "$d"regress-*; do [ -e "$f" ] && mkdir -p "tests/fuzz/corpus.new/$t" && cp "$f" "tests/fuzz/corpus.new/$t/"; done
  done
  rm -rf tests/fuzz/corpus && mv tests/fuzz/corpus.new tests/fuzz/corpus
  du -sh tests/fuzz/corpus
  exit 0
fi

mkdir -p build/fuzz/artifacts build/fuzz/logs
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
printf '%-16s %12s %10s %8s %8s\n' target executions exec/s seconds corpus
for t in "${targets[@]}"; do
  bin="build/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: no target '$t' (one of: ${all[*]})" >&2; exit 2; }
  mkdir -p "build/fuzz/corpus/$t"
  limit=(-max_total_time="$secs")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  [ "$secs" = 0 ] && [ -z "${FUZZ_RUNS:-}" ] && limit=(-runs=0)
  dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="tests/fuzz/dict/$t.dict")
  log="build/fuzz/logs/$t.log"
  t0=$(date +%s)
  # -timeout: one input may take at most 10 s; -rss_limit_mb: 2 GB (also the
  # largest single malloc), so an allocation sized from the file is a finding.
  # shellcheck disable=SC2086
  if "$bin" "${limit[@]}" "${dict[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="build/fuzz/artifacts/$t-" ${FUZZ_FLAGS:-} \
       "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  n=$(find "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" -type f | wc -l)
  printf '%-16s %12s %10s %8s %8s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$(( $(date +%s) - t0 ))" "$n" "$status"
done

if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "== fuzz_$t failed; log build/fuzz/logs/$t.log:" >&2
    grep -E 'ERROR|runtime error|invariant failed|SUMMARY|Test unit written' "build/fuzz/logs/$t.log" | head -20 >&2 || tail -20 "build/fuzz/logs/$t.log" >&2
    echo "   reproduce: build/fuzz/fuzz_$t build/fuzz/artifacts/$t-<file>" >&2
  done
  exit 1
fi
echo "fuzz: all targets clean in $(( $(date +%s) - start )) s"
