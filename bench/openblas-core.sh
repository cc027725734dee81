# bench/openblas-core.sh (sourced by bench/run.sh and bench/train_speed.sh):
# Debian 12's OpenBLAS (0.3.21) takes CPUs newer than it knows for a Prescott
# and runs its SSE3 kernels. On this Xeon (family 6, model 207) that put
# OpenBLAS at 17-22 GFLOP/s instead of 53-107 and PyTorch, which reaches BLAS
# through it, at a third of its training speed, so every ratio against them
# was inflated 3-5x. Where it has fallen back so, name the newest core type
# it has that the CPU's flags allow; a caller's OPENBLAS_CORETYPE wins.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  openblas_core=$(/usr/bin/python3 -c "import ctypes; l = ctypes.CDLL('libopenblas.so.0'); \
l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())" 2>/dev/null || true)
  if [ "$openblas_core" = Prescott ]; then
    if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
    [ -n "${OPENBLAS_CORETYPE:-}" ] &&
      echo "bench: OpenBLAS took this CPU for a Prescott; OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE" >&2
  fi
fi
