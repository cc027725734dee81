#!/usr/bin/env bash
# tests/python/test_gptq_reference.sh: quantscope's GPTQ (src/fix/gptq.c, through
# `test_fix --gptq`) against tests/python/gptq_reference.py, a PyTorch version
# written from the paper, on random layers (cases and tolerances: the top of
# that file). Skips, saying so, without PyTorch.
set -uo pipefail
cd "$(dirname "$0")/../.."

. tests/python/common.sh
BIN=${QS_TEST_FIX:-build/native/test_fix}
require_torch "GPTQ against PyTorch"
require_bin test_gptq_reference "$BIN"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/python/gptq_reference.py --bin "$BIN" --tmp "$tmp"
