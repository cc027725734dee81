#!/usr/bin/env bash
# tests/python/test_gptq_reference.sh: quantscope's GPTQ (src/fix/gptq.c, through
# `test_fix --gptq`) against tests/python/gptq_reference.py, a PyTorch version
# written from the paper, on random layers (cases and tolerances: the top of
# that file). Skips, saying so, without PyTorch.
set -uo pipefail
cd "$(dirname "$0")/../.."

PY=${QS_PYTHON:-/usr/bin/python3} # Debian's, where python3-torch installs
BIN=${QS_TEST_FIX:-build/native/test_fix}
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIP GPTQ against PyTorch: $PY cannot import torch (install Debian's python3-torch:" \
       "scripts/setup.sh --torch)"
  exit 0
fi
if [ ! -x "$BIN" ]; then
  echo "test_gptq_reference: $BIN not found; build it first (cmake --build build/native)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/python/gptq_reference.py --bin "$BIN" --tmp "$tmp"
