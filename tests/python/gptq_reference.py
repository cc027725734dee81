#!/usr/bin/python3
"""tests/python/gptq_reference.py: quantscope's GPTQ (src/fix/gptq.c) against
a PyTorch implementation written here from the paper (Frantar et al. 2023,
Algorithm 1 with its lazy batch updates), on random layers.

For each case it draws a weight matrix W and calibration inputs X (correlated
columns, a few outlier channels, optionally dead ones), forms the Hessian
H = 2 X^T X / N in float64, writes W and H for `test_fix --gptq IN OUT`, which
runs qs_gptq_quantize, and compares the C's quantized weights with the
reference's, computed in float64 from the same H. The grids are quantscope's
(docs/science.md §4: symmetric s = max|w| / (2^(b-1) - 1) or asymmetric
min-max, per tensor, per row or per row and group) and a weight is rounded as
the C rounds it, in float32: s * round_half_even(clip(w / s, lo, hi)).

Tolerances and why: the factorisations (LAPACK here, plain loops in C) and
the lazy update's sums agree to ~1e-13, so a weight can only come out on
another grid point when w / s lies within ~1e-12 of a rounding boundary,
whose rounding then feeds every later column of its row. Allowed: 0.2 % of
the weights on another grid point, and the layer-output error
||X W^T - X Q^T||^2 within 1e-3 relative of the reference's. Checked as
well: GPTQ's error below round to nearest's on the same grids, dead columns
(H_dd = 0) zeroed as the official code does, and a Hessian that cannot be
factored (no dampening, fewer tokens than columns) refused by both.

usage: gptq_reference.py --bin build/native/test_fix [--tmp DIR]
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

FLT_MIN = np.float32(1.17549435e-38)
MISMATCH_FRACTION = 0.002
ERROR_RTOL = 1e-3


def grid(lo, hi, bits, sym):
    """quantscope's grid for the float32 range [lo, hi]: (scale, clip lo, clip hi)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if sym:
        qmax = 2 ** (bits - 1) - 1
        s = np.float32(max(-lo, hi) / qmax)
        s = max(s, FLT_MIN)
        return s, np.float32(-qmax), np.float32(qmax)
    qmax = 2 ** bits - 1
    s = max(np.float32((hi - lo) / qmax), FLT_MIN)
    z = min(max(np.rint(-lo / float(s)), 0), qmax)
    return s, np.float32(-z), np.float32(qmax - z)


def quantize(w, g):
    """One column of weights (float64) rounded on per-row grids g, as the C does in float32."""
    s = np.array([x[0] for x in g], dtype=np.float32)
    lo = np.array([x[1] for x in g], dtype=np.float32)
    hi = np.array([x[2] for x in g], dtype=np.float32)
    v = np.clip(w.numpy().astype(np.float32) / s, lo, hi)
    return torch.from_numpy((s * np.rint(v)).astype(np.float64))


def row_grids(W, j0, j1, bits, sym, per_tensor):
    part = W[:, j0:j1].numpy().astype(np.float32)
    if per_tensor:
        return [grid(part.min(), part.max(), bits, sym)] * W.shape[0]
    return [grid(r.min(), r.max(), bits, sym) for r in part]


def gptq(W0, H0, bits, sym, per_tensor, group, block, damp):
    """Algorithm 1 of the paper. Returns (Q, dead columns), or None when H + damp I
    is not positive definite."""
    W = W0.clone().double()
    H = H0.clone()
    rows, cols = W.shape
    if group == 0:  # grids of the original weights
        g = row_grids(W, 0, cols, bits, sym, per_tensor)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=torch.float64)
    L, info = torch.linalg.cholesky_ex(H)
    if info != 0:
        return None
    U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
    if info != 0:
        return None
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if group and col % group == 0:
                # the group's grid from W as the batches before left it
                g = row_grids(W, col, min(col + group, cols), bits, sym, False)
            q = quantize(W1[:, i], g)
            Q[:, col] = q
            e = (W1[:, i] - q) / U[col, col]
            W1[:, i:] -= e.unsqueeze(1) * U[col, i1 + i:i2].unsqueeze(0)
            E1[:, i] = e
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q, int(dead.sum())


def rtn(W0, bits, sym, per_tensor, group):
    W = W0.double()
    Q = torch.zeros_like(W)
    step = group or W.shape[1]
    for j0 in range(0, W.shape[1], step):
        j1 = min(j0 + step, W.shape[1])
        g = row_grids(W, j0, j1, bits, sym, per_tensor and not group)
        for j in range(j0, j1):
            Q[:, j] = quantize(W[:, j], g)
    return Q


def layer_error(X, W, Q):
    return float(((X @ (W.double() - Q).T) ** 2).sum())


def run_c(binary, tmp, name, W, H, bits, sym, per_tensor, group, block, damp):
    rows, cols = W.shape
    path_in, path_out = os.path.join(tmp, name + ".in"), os.path.join(tmp, name + ".out")
    with open(path_in, "wb") as f:
        f.write(struct.pack("<7if", rows, cols, bits, sym, 0 if per_tensor else 1, group, block, damp))
        f.write(W.numpy().astype("<f4").tobytes())
        f.write(H.numpy().astype("<f8").tobytes())
    r = subprocess.run([binary, "--gptq", path_in, path_out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s --gptq failed: %s" % (binary, r.stderr.strip()))
    with open(path_out, "rb") as f:
        status, dead = struct.unpack("<2i", f.read(8))
        q = np.frombuffer(f.read(rows * cols * 4), dtype="<f4").reshape(rows, cols)
    return status, dead, torch.from_numpy(q.astype(np.float64))


def draw(rows, cols, n, seed, n_dead):
    rng = np.random.default_rng(seed)
    W = torch.from_numpy(rng.normal(0.0, 0.05, (rows, cols)).astype(np.float32))
    mix = rng.normal(0.0, 1.0, (cols, cols)) / np.sqrt(cols)
    X = rng.standard_t(5, (n, cols)) @ (np.eye(cols) + mix)  # correlated, heavy tails
    X[:, rng.choice(cols, 3, replace=False)] *= 20.0         # outlier channels
    X[:, rng.choice(cols, n_dead, replace=False)] = 0.0       # never active
    X = torch.from_numpy(X.astype(np.float32).astype(np.float64))
    return W, X, 2.0 * X.T @ X / n


# name, rows, cols, tokens, bits, symmetric, per tensor, group, block, damp, dead columns
CASES = [
    ("4bit-sym-channel", 64, 128, 512, 4, 1, False, 0, 128, 0.01, 0),
    ("3bit-asym-channel-lazy", 48, 96, 256, 3, 0, False, 0, 32, 0.01, 0),
    ("8bit-sym-tensor", 32, 64, 256, 8, 1, True, 0, 128, 0.01, 0),
    ("4bit-group16-in-block32", 40, 80, 300, 4, 1, False, 16, 32, 0.01, 0),
    ("2bit-asym-dead-columns", 24, 64, 200, 2, 0, False, 0, 20, 0.01, 3),
    ("6bit-fewer-tokens-than-columns", 16, 256, 100, 6, 1, False, 0, 64, 0.01, 0),
    ("5bit-group32-damp0.1", 20, 128, 400, 5, 0, False, 32, 128, 0.1, 2),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp")
    a = ap.parse_args()
    tmp = a.tmp or tempfile.mkdtemp()
    failed = 0
    for seed, (name, rows, cols, n, bits, sym, per_tensor, group, block, damp, n_dead) in enumerate(CASES):
        W, X, H = draw(rows, cols, n, seed + 1, n_dead)
        ref, ref_dead = gptq(W, H, bits, sym, per_tensor, group, block, damp)
        status, dead, q = run_c(a.bin, tmp, name, W, H, bits, sym, per_tensor, group, block, np.float32(damp))
        if status != 0:
            print("%s: FAIL the C refused the case (status %d)" % (name, status))
            failed += 1
            continue
        step = max(float(grid(W.min(), W.max(), bits, sym)[0]), 1e-30)  # the coarsest grid
        differ = int((q != ref).sum())
        worst = float((q - ref).abs().max()) / step
        e_c, e_ref, e_rtn = layer_error(X, W, q), layer_error(X, W, ref), layer_error(X, W, rtn(W, bits, sym, per_tensor, group))
        ok = (differ <= MISMATCH_FRACTION * rows * cols and abs(e_c - e_ref) <= ERROR_RTOL * e_ref
              and e_c < e_rtn and dead == ref_dead == n_dead
              and (n_dead == 0 or bool((q[:, (X == 0).all(0)] == 0).all())))
        print("%s: %s %d of %d weights differ (at most %.2g steps), layer-output error C %.6g, "
              "reference %.6g, round to nearest %.6g (GPTQ/RTN %.2f), dead %d"
              % (name, "PASS" if ok else "FAIL", differ, rows * cols, worst, e_c, e_ref, e_rtn,
                 e_c / e_rtn, dead))
        failed += not ok
    # No dampening and fewer tokens than columns: H is singular; both refuse it.
    W, X, H = draw(16, 128, 40, 99, 0)
    ref = gptq(W, H, 4, 1, False, 0, 128, 0.0)
    status, _, _ = run_c(a.bin, tmp, "singular", W, H, 4, 1, False, 0, 128, np.float32(0.0))
    ok = status == 6 and ref is None  # QS_ERR_RANGE
    print("singular-undamped: %s C status %d (6 = QS_ERR_RANGE), reference %s"
          % ("PASS" if ok else "FAIL", status, "refused" if ref is None else "factored it"))
    failed += not ok
    print("%d passed, %d failed" % (len(CASES) + 1 - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
