# tests/python/common.sh: what the Python reference checks share (sourced):
# the interpreter with PyTorch, a skip that says so when it is missing, and
# the built binary they drive.
PY=${QS_PYTHON:-/usr/bin/python3} # Debian's, where python3-torch installs

# require_torch WHAT: exits 0 (a skip, named) when PY cannot import torch.
require_torch() {
  if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "SKIP $1: $PY cannot import torch (install Debian's python3-torch:" \
         "scripts/setup.sh --torch)"
    exit 0
  fi
}

# require_bin SCRIPT BIN: fails when the binary under test is not built.
require_bin() {
  if [ ! -x "$2" ]; then
    echo "$1: $2 not found; build it first (cmake --build build/native)" >&2
    exit 1
  fi
}
