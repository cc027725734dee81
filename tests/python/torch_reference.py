#!/usr/bin/python3
"""tests/python/torch_reference.py: replays a `qs train --trace` run in PyTorch
and compares it with what quantscope's C trainer did, step by step (the way
llm.c's test_gpt2 checks its trainer against PyTorch).

From DIR/init/ (the model before step 1) it builds the model described by
config.json, written here from the math of the Hugging Face architectures and
quantscope's documented variants (README "Config keys"), not from the C loops;
gradients come from torch autograd. For every step of the trace it takes the
batch the trainer used, computes the loss (mean cross-entropy over the batch's
scored targets), the gradient, global-norm clipping, the warmup + cosine
learning rate and the optimiser (AdamW; SOAP as the official soap.py; Shampoo
grafted onto Adam: the equations at the top of src/train/optim.c), all in float64, so that what remains
of a difference is the C's float32 rounding. It compares each step's loss, gradient norm and
learning rate with the ones qs recorded, and the final parameters with
DIR/model.safetensors, prints one line and exits 1 past the tolerances below.
--mutate replays again with deliberate bugs, each of which must fail.

Needs only python3-torch and numpy (Debian's); safetensors are read by hand.

usage: torch_reference.py --dir DIR --trace FILE --name NAME --lr X --warmup N
       [--min-lr-ratio X --wd X --beta1 X --beta2 X --eps X --clip X --gamma-ramp]
       [--optimizer adamw|soap|shampoo --shampoo-beta X --precond-every N
        --max-precond-dim N --precond-eps X] [--mutate NAME,NAME...]
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# ---- tolerances ------------------------------------------------------------
# Measured on the 14 cases of test_train_parity.sh (KJV and the script's own
# text) and 108 more runs of every variant with seeds 1..7, 1 and 2 threads
# (2 layers, d 32, batch 4 x 32, 20 steps, lr 3e-3, clipping at every step):
# the C's float32 run stays within 1.2e-7 relative of this float64 replay in
# the loss (the float32 rounding of the recorded loss alone is 6e-8) and
# within 3.6e-7 in the gradient norm at every step. Parameters after 20
# AdamW steps agree within 3.5e-6 absolute (they are O(0.02..1)) except where
# Adam amplifies round-off, which is not a bug:
# - a ReLU input within ~1e-8 of 0 can fall on the other side in float32
#   (inputs that close to 0 occur: 1.4e-8 was seen), so one hidden unit gets
#   another gradient for one token, and Adam's normalisation turns that into
#   a full-sized step on that unit's weights: up to 4.5e-5 (1 of 122 runs),
#   9e-6 in two more;
# - key biases: q_i . b_k is constant along a row of scores, which softmax
#   ignores, so d loss / d b_k is exactly 0 here while the C gets round-off
#   that Adam divides by its own RMS + eps: up to 5.6e-6.
# The bounds are 15-60x the smooth worst cases (room for another machine's
# FMA contraction and summation order) and 4x the worst kink; yet every
# deliberate bug of MUTATIONS fails at least one of them: eps inside the
# square root, a missing bias correction, the next step's lr, no clipping or
# a per-sequence loss miss by 1e-3..1 in the loss; decay on biases and gains,
# or none at all, by 4e-5..9e-5 in the loss (20-45x LOSS_RTOL); gradient
# through clipped entries by 2e-3..3e-2 in the parameters; tanh for erf GELU,
# the subtlest (the two agree to 1e-7 near 0, where a tiny model's
# pre-activations are), by 2e-5 in the gradient norm (4x GNORM_RTOL).
#
# SOAP and Shampoo: the same 20 steps on BERT vanilla, OP, gated per-head,
# gated MLP (its 3-D gate weight), clipped and softmax1, seeds 1..4, 1 and 2
# threads: 48 runs each; SOAP with shampoo_beta 0.9 and a refresh every 5
# updates (three refreshes), Shampoo with roots every 5 steps.
# - Shampoo: loss within 2.7e-7, gradient norm 2.6e-6, parameters 1.1e-5, the
#   final L, R 3.5e-5 of their largest entry, its roots' check 3.4e-5.
# - SOAP: median 6e-8 / 2.2e-7 / 8e-7, but a tail up to 2.1e-6 / 1.0e-5 /
#   3.0e-5 (L, R 4.5e-4, QR check 2.2e-4): Adam in the rotated basis
#   normalises each entry of G' = Q_L^T G Q_R, and an entry that happens to
#   come out near 0 by cancellation (2.8e-8 against a row norm of 0.19 in the
#   worst run) is mostly float32 round-off, which the first updates turn into
#   a full-sized step of round-off's sign on that rotated coordinate.
# The bounds below are 7-18x those. OPT is left out of these cases (the
# optimisers do not depend on the architecture, and OPT's own maths is the
# AdamW cases'):
# - its ReLU leaves hidden units dead, directions no gradient reaches; in
#   SOAP's basis their entries of G' are round-off (~1e-8) that eps 1e-8
#   lets Adam scale the same way, so OPT runs part by 2e-5..9e-5 in 20 steps
#   (1.7e-6 with eps 1e-6);
# - a ReLU input within ~1e-7 of 0 (the kink above) enters L and R, which
#   spread it over whole matrices: up to 2.9e-3 in 1 of 24 Shampoo runs.
# Every deliberate SOAP and Shampoo bug of MUTATIONS still fails by 3x..1e4x
# a bound: no decay (with wd 0.1, which test_train_parity.sh gives the SOAP
# case so that decay is seen above SOAP's round-off) by 2.9e-4 in the loss,
# AdamW's bias correction for SOAP's by 3.1e-3 in the parameters.
LOSS_RTOL = {"adamw": 2e-6, "soap": 2e-5, "shampoo": 2e-6}   # per step, |loss_qs - loss_ref| / loss_ref
GNORM_RTOL = {"adamw": 5e-6, "soap": 1e-4, "shampoo": 2e-5}  # per step, gradient norm before clipping
LR_RTOL = 1e-6         # per step; qs records lr as float32 (6e-8 relative)
PARAM_ATOL = 2e-4      # final parameters, max |p_qs - p_ref| over every tensor
STATE_RTOL = 5e-3      # SOAP's / Shampoo's final L, R against the C's, relative to the largest entry
BASIS_TOL = 2e-3       # a C eigenbasis, QR or column order taken by the SOAP replay (see SOAP)
ROOT_TOL = 3e-4        # a C inverse root taken by the Shampoo replay (see Shampoo)
torch.set_default_dtype(torch.float64)

# Deliberate bugs (--mutate): each changes one detail of the replay the way a
# plausible bug in the C would; test_train_parity.sh replays each where it
# applies and fails when one passes the tolerances, so the test keeps
# showing that it would see such a bug.
MUTATIONS = {
    "adam-eps-in-sqrt": "AdamW with eps inside the square root",
    "no-bias-correction": "AdamW without bias correction",
    "decay-everything": "weight decay on biases and LayerNorm gains too",
    "no-decay": "no weight decay",
    "lr-next-step": "each step uses the next step's learning rate",
    "no-grad-clip": "no gradient clipping",
    "loss-per-sequence": "loss averaged per sequence, then over the batch",
    "gelu-tanh": "tanh GELU instead of erf GELU",
    "ln-eps-1e-5": "LayerNorm eps 1e-5 instead of the config's",
    "clip-straight-through": "clipped softmax passes gradient through clipped entries",
    "ramp-off-by-one": "gamma ramp factor step / warmup instead of (step + 1) / warmup",
    "opt-positions-from-0": "OPT positions without HF's offset of 2",
    "gate-from-residual": "OPT gate computed from the residual stream, not LN1(x)",
    "op-normalised-residual": "OP block layer 0 adds the attention to LN(x), not x",
    "softmax1-as-softmax": "softmax1 without its extra 1 in the denominator",
    "gate-other-head-slice": "per-head gate of head h reads head h+1's slice of x",
    "soap-update-first-step": "SOAP updates at its first step instead of only building L, R, Q",
    "soap-stats-with-beta2": "SOAP's L and R averaged with beta2 instead of shampoo_beta",
    "soap-no-moment-rotation": "SOAP keeps m in the old basis when Q is refreshed",
    "soap-no-v-permutation": "SOAP does not permute v with the re-sorted columns of Q",
    "soap-no-refresh": "SOAP keeps its first eigenbases (no power step + QR)",
    "soap-ascending-basis": "SOAP expects the eigenbasis by ascending eigenvalue",
    "soap-adamw-bias-correction": "SOAP with AdamW's (m / bc1) / (sqrt(v / bc2) + eps)",
    "shampoo-no-graft": "Shampoo steps by L^-1/4 G R^-1/4 itself, not grafted onto Adam's norm",
    "shampoo-root-half": "Shampoo with L^-1/2 and R^-1/2 (full-matrix AdaGrad's exponent)",
    "shampoo-stats-ema": "Shampoo's L and R an EMA (beta2) instead of sums",
    "shampoo-root-before-stats": "Shampoo takes its roots before adding this step's G G^T",
}
MUTATE = set()


def read_safetensors(path):
    """name -> float64 numpy array, plus the metadata dict; F32 only (what qs writes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: {len(data)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} beyond the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} has dtype {e['dtype']}, expected F32")
        b, end = e["data_offsets"]
        shape = tuple(e["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end - b != 4 * count or end > len(body):
            raise ValueError(f"{path}: tensor {name}: offsets do not match its shape")
        out[name] = np.frombuffer(body[b:end], dtype="<f4").astype(np.float64).reshape(shape)
    return out, meta


class Config:
    """The subset of config.json keys that change the math, with HF defaults."""

    # keys that do not change the maths of a step: names, the tokenizer, checks
    # the C does at load, the gate's initial bias (already in init/)
    IGNORED = {"architectures", "tokenizer", "do_lower_case", "attn_gate_init",
               "tie_word_embeddings", "do_layer_norm_before", "word_embed_proj_dim",
               "position_embedding_type", "hidden_dropout_prob",
               "attention_probs_dropout_prob", "dropout", "attention_dropout"}

    def __init__(self, j):
        known = {"model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size", "ffn_dim",
                 "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act",
                 "activation_function", "attn_softmax", "clip_gamma", "clip_zeta",
                 "clip_alpha", "clip_seq_len", "attn_gate_type", "attn_gate_mlp",
                 "attn_gate_mlp_hidden", "attn_gate_linear_all_features", "block_type",
                 "op_beta"} | self.IGNORED
        unknown = set(j) - known
        if unknown:  # a key this reference does not model would be silently wrong
            raise ValueError(f"config.json: keys the reference does not implement: {sorted(unknown)}")
        self.arch = j["model_type"]
        if self.arch not in ("bert", "opt"):
            raise ValueError(f"model_type {self.arch!r}")
        bert = self.arch == "bert"
        if not j.get("tie_word_embeddings", True) or j.get("do_layer_norm_before", True) is False:
            raise ValueError("only tied heads and pre-LN OPT are modelled")
        self.V = j["vocab_size"]
        self.D = j["hidden_size"]
        self.L = j["num_hidden_layers"]
        self.H = j["num_attention_heads"]
        self.I = j["intermediate_size" if bert else "ffn_dim"]
        self.dh = self.D // self.H
        self.max_pos = j.get("max_position_embeddings", 512 if bert else 2048)
        self.eps = j.get("layer_norm_eps", 1e-12 if bert else 1e-5)
        if "ln-eps-1e-5" in MUTATE:
            self.eps = 1e-5
        self.act = j.get("hidden_act" if bert else "activation_function", "gelu" if bert else "relu")
        if self.act not in ("gelu", "gelu_new", "relu"):
            raise ValueError(f"activation {self.act!r}")
        self.softmax = j.get("attn_softmax", "softmax")
        if self.softmax not in ("softmax", "clipped_softmax", "softmax1"):
            raise ValueError(f"attn_softmax {self.softmax!r}")
        self.zeta = j.get("clip_zeta", 1.0)
        alpha = j.get("clip_alpha", 0.0)
        # gamma = -alpha / T with T fixed at the training length (clip_seq_len)
        self.gamma = (-alpha / j.get("clip_seq_len", self.max_pos) if alpha > 0
                      else j.get("clip_gamma", 0.0))
        self.gate = j.get("attn_gate_type", "none")
        if self.gate not in ("none", "unconditional_per_head", "conditional_per_token"):
            raise ValueError(f"attn_gate_type {self.gate!r}")
        self.gate_mlp = bool(j.get("attn_gate_mlp", False))
        self.gate_all = bool(j.get("attn_gate_linear_all_features", False))
        self.block = j.get("block_type", "standard")
        if self.block not in ("standard", "op"):
            raise ValueError(f"block_type {self.block!r}")
        self.beta = j.get("op_beta", 0.2)


class Model:
    """Parameters by their HF names (float64 leaves) and the forward pass."""

    def __init__(self, cfg, tensors):
        self.cfg = cfg
        self.P = {k: torch.tensor(v, requires_grad=True) for k, v in tensors.items()}
        self.used = set()
        self.n_clipped = self.n_probs = 0  # clipped softmax, last forward: how much it clips

    def p(self, name):
        self.used.add(name)
        return self.P[name]

    def linear(self, x, name):
        return x @ self.p(name + ".weight").T + self.p(name + ".bias")

    def layer_norm(self, x, name):
        return F.layer_norm(x, (self.cfg.D,), self.p(name + ".weight"), self.p(name + ".bias"),
                            self.cfg.eps)

    def act(self, x):
        a = self.cfg.act
        if a == "gelu" and "gelu-tanh" in MUTATE:
            a = "gelu_new"
        if a == "relu":
            return F.relu(x)
        # erf GELU ("gelu", BERT's) or the tanh approximation ("gelu_new")
        return F.gelu(x, approximate="tanh" if a == "gelu_new" else "none")

    def probs(self, s, causal, gamma):
        """Attention probabilities from scores s [B,H,T,T]."""
        T = s.shape[-1]
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        if causal:  # key j is visible to query i when j <= i
            s = s.masked_fill(future, float("-inf"))
        kind = self.cfg.softmax
        if kind == "softmax1" and "softmax1-as-softmax" not in MUTATE:
            # exp(s_j) / (1 + sum_k exp(s_k)): softmax with an extra logit fixed at 0
            zero = torch.zeros(s.shape[:-1] + (1,))
            return torch.softmax(torch.cat([s, zero], dim=-1), dim=-1)[..., :T]
        p = torch.softmax(s, dim=-1)
        if kind == "clipped_softmax":
            # Bondarenko et al. eq. 4.1: clip((zeta - gamma) softmax + gamma, 0, 1);
            # masked keys have p = 0, which gamma <= 0 keeps at 0
            lin = (self.cfg.zeta - gamma) * p + gamma
            valid = (~future if causal else torch.ones(T, T, dtype=torch.bool)).expand(lin.shape)
            self.n_clipped += int(((lin <= 0) & valid).sum())
            self.n_probs += int(valid.sum())
            p = torch.clamp(lin, 0.0, 1.0)
            if "clip-straight-through" in MUTATE:
                p = lin + (p - lin).detach()
        return p

    def gate_logits(self, x, prefix):
        """Gate logits [B,T,H] from the attention input x [B,T,D]."""
        c = self.cfg
        B, T, _ = x.shape
        g = prefix + ".gate"
        if c.gate == "unconditional_per_head":
            return self.p(g + ".bias").expand(B, T, c.H)
        if c.gate_all:  # one Linear(D, H) over all features of the token
            return self.linear(x, g)
        xh = x.view(B, T, c.H, c.dh)  # head h sees its own d_head slice of x
        if "gate-other-head-slice" in MUTATE:
            xh = xh.roll(-1, dims=2)
        if c.gate_mlp:  # per head d_head -> hidden -> ReLU -> 1
            hid = torch.einsum("bthd,hud->bthu", xh, self.p(g + ".fc1.weight")) + self.p(g + ".fc1.bias")
            return torch.einsum("bthu,hu->bth", F.relu(hid), self.p(g + ".fc2.weight")) + self.p(g + ".fc2.bias")
        return torch.einsum("bthd,hd->bth", xh, self.p(g + ".weight")) + self.p(g + ".bias")

    def attention(self, x, prefix, names, gamma, gate_in=None):
        """Self-attention of x [B,T,D]; names: query, key, value, output modules.
        The gate reads gate_in (default x, the attention input)."""
        c = self.cfg
        B, T, _ = x.shape
        heads = lambda t: t.view(B, T, c.H, c.dh).transpose(1, 2)  # [B,H,T,dh]
        q = heads(self.linear(x, prefix + names[0]))
        k = heads(self.linear(x, prefix + names[1]))
        v = heads(self.linear(x, prefix + names[2]))
        if c.block == "op":
            # QK-RMSNorm (He et al. 2024): each head's q and k over d_head, one shared gain
            gain = self.p(prefix + names[4] + ".weight")
            rms = lambda t: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + c.eps) * gain
            q, k = rms(q), rms(k)
        s = q @ k.transpose(-1, -2) / math.sqrt(c.dh)
        ctx = self.probs(s, c.arch == "opt", gamma) @ v  # [B,H,T,dh]
        if c.gate != "none":
            gx = x if gate_in is None else gate_in
            ctx = ctx * torch.sigmoid(self.gate_logits(gx, prefix + names[5])).transpose(1, 2).unsqueeze(-1)
        return self.linear(ctx.transpose(1, 2).reshape(B, T, c.D), prefix + names[3])

    def forward(self, ids, types, gamma):
        """Logits [B,T,V] of a batch of token ids [B,T] (types [B,T] for BERT)."""
        c = self.cfg
        B, T = ids.shape
        pos = torch.arange(T)
        self.n_clipped = self.n_probs = 0
        bert = c.arch == "bert"
        if bert:
            e = "bert.embeddings."
            x = (self.p(e + "word_embeddings.weight")[ids] + self.p(e + "position_embeddings.weight")[pos]
                 + self.p(e + "token_type_embeddings.weight")[types])
            x = self.layer_norm(x, e + "LayerNorm")
            wte = self.p(e + "word_embeddings.weight")
            names = ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "attention.self.qk_norm", "attention.self")
        else:
            # HF OPTLearnedPositionalEmbedding: position t is row t + 2
            off = 0 if "opt-positions-from-0" in MUTATE else 2
            x = self.p("model.decoder.embed_tokens.weight")[ids] + self.p("model.decoder.embed_positions.weight")[pos + off]
            wte = self.p("model.decoder.embed_tokens.weight")
            names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                     "self_attn.out_proj", "self_attn.qk_norm", "self_attn")
        ffn = ("intermediate.dense", "output.dense") if bert else ("fc1", "fc2")
        mlp = lambda h, pre: self.linear(self.act(self.linear(h, pre + ffn[0])), pre + ffn[1])
        for l in range(c.L):
            pre = f"bert.encoder.layer.{l}." if bert else f"model.decoder.layers.{l}."
            if c.block == "op":
                # Outlier Protected block: no LayerNorm in the branches, each scaled by
                # beta; only layer 0 normalises its attention input (not the residual)
                a_in = x
                if l == 0:
                    a_in = self.layer_norm(x, pre + ("attention.input_layernorm" if bert else "self_attn_layer_norm"))
                h = (a_in if "op-normalised-residual" in MUTATE else x) + c.beta * self.attention(a_in, pre, names, gamma)
                x = h + c.beta * mlp(h, pre)
            elif bert:  # post-LN
                h = self.layer_norm(x + self.attention(x, pre, names, gamma), pre + "attention.output.LayerNorm")
                x = self.layer_norm(h + mlp(h, pre), pre + "output.LayerNorm")
            else:  # pre-LN
                a_in = self.layer_norm(x, pre + "self_attn_layer_norm")
                h = x + self.attention(a_in, pre, names, gamma, x if "gate-from-residual" in MUTATE else a_in)
                x = h + mlp(self.layer_norm(h, pre + "final_layer_norm"), pre)
        if bert:  # MLM head: dense, activation, LayerNorm, tied decoder + bias
            t = "cls.predictions."
            h = self.layer_norm(self.act(self.linear(x, t + "transform.dense")), t + "transform.LayerNorm")
            return h @ wte.T + self.p(t + "bias")
        return self.layer_norm(x, "model.decoder.final_layer_norm") @ wte.T


def decays(name):
    """AdamW weight decay on weight matrices and embeddings (names ending in
    .weight), never on biases, LayerNorm gains or the QK-norm gain."""
    if "decay-everything" in MUTATE or "no-decay" in MUTATE:
        return "decay-everything" in MUTATE
    gain = any(s in name for s in ("LayerNorm", "layer_norm", "layernorm", "qk_norm"))
    return name.endswith(".weight") and not gain


def lr_at(a, step):
    """Linear warmup over warmup steps, then cosine to min_lr_ratio * lr at the last."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    span = a.steps - a.warmup
    p = min((step - a.warmup) / span, 1.0) if span > 0 else 1.0
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def f32(x):
    """qs_train_config holds its settings as float32: use the same values."""
    return float(np.float32(x))


# ---- optimisers --------------------------------------------------------------
# Each takes the clipped gradients of a step (1-based t) and its learning rate,
# and updates the parameters in place; problems collects what its checks of
# the C's eigenbases found, compare_state the worst difference of the final
# statistics against the C's checkpoint.

class AdamW:
    """AdamW (Loshchilov & Hutter), bias-corrected, eps outside the square root,
    decoupled decay."""

    def __init__(self, a, params, tr):
        self.a, self.P = a, params
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.problems = []

    def direction(self, t, k, g):
        """The moments of tensor k after gradient g at step t, and Adam's step
        direction (m / bc1) / (sqrt(v / bc2) + eps)."""
        a = self.a
        bc1, bc2 = 1 - a.beta1 ** t, 1 - a.beta2 ** t
        if "no-bias-correction" in MUTATE:
            bc1 = bc2 = 1.0
        self.m[k].mul_(a.beta1).add_((1 - a.beta1) * g)
        self.v[k].mul_(a.beta2).add_((1 - a.beta2) * g * g)
        if "adam-eps-in-sqrt" in MUTATE:
            return (self.m[k] / bc1) / torch.sqrt(self.v[k] / bc2 + a.eps)
        return (self.m[k] / bc1) / (torch.sqrt(self.v[k] / bc2) + a.eps)  # eps outside the sqrt

    def step(self, t, grads, lr):
        for k, p in self.P.items():
            upd = self.direction(t, k, grads[k])
            if decays(k):
                upd = upd + self.a.wd * p  # decoupled decay (Loshchilov & Hutter)
            p.sub_(lr * upd)

    def compare_state(self, final_state):
        return 0.0, ""

    def figures(self):
        return ""


TOKEN_EMBEDDINGS = ("bert.embeddings.word_embeddings.weight", "model.decoder.embed_tokens.weight")


def sides(a, name, p):
    """The preconditioned dimensions of a tensor as soap.py decides them (no
    merge_dims, no precondition_1d): every one of a tensor with 2 or more, up
    to max_precond_dim long, except the vocabulary side of the token
    embedding (what soap.py's max_precond_dim is for: src/train/optim.c);
    their lengths, 0 for one left alone."""
    return [n if p.dim() >= 2 and n <= a.max_precond_dim and not (d == 0 and name in TOKEN_EMBEDDINGS)
            else 0 for d, n in enumerate(p.shape)]


def unfold_gram(g, d):
    """G_(d) G_(d)^T: g contracted with itself over every dimension but d."""
    dims = [i for i in range(g.dim()) if i != d]
    return torch.tensordot(g, g, dims=[dims, dims])


def project(g, Q, back=False):
    """soap.py's project / project_back: dimension by dimension, the first one
    contracted with Q[d] (into the basis: Q[d]^T applied; back: Q[d]) and moved
    to the end; None leaves a dimension as it is."""
    for q in Q:
        if q is None:
            g = g.permute(*range(1, g.dim()), 0)
        else:
            g = torch.tensordot(g, q, dims=[[0], [1 if back else 0]])
    return g


def compare_stats(final_state, key, stats):
    """The worst difference of this replay's L, R (stats: name -> one per
    dimension, None where there is none) from the C's final checkpoint (key:
    the tensor name with {} for the parameter and the dimension), relative to
    each matrix's largest entry; and where."""
    worst, where = 0.0, ""
    for name, per_dim in stats.items():
        for d, L in enumerate(per_dim):
            if L is None:
                continue
            c = final_state[key.format(name, d)]
            rel = float(np.abs(c - L.numpy()).max()) / (float(np.abs(L.numpy()).max()) or 1.0)
            if rel > worst:
                worst, where = rel, f"{name} L/R {d}"
    return worst, where


class SOAP:
    """SOAP (Vyas et al. 2024) as the official soap.py steps: L, R the EMAs of
    G_(d) G_(d)^T with shampoo_beta, from 0 (lerp); at the first step only L,
    R and the eigenbases (eigh, descending), no update; then Adam on
    G' = project(G) with m, v kept in the basis, the update
    project_back(m / (sqrt(v) + eps)) times lr sqrt(1 - beta2^k) / (1 - beta1^k),
    decay of the stepped weight, and after it update_preconditioner: m back to
    the parameter basis, L and R updated, every precond_every updates the
    columns of Q sorted by diag(Q^T L Q) (v permuted with them) and
    Q <- qr(L Q), m into the basis again.

    The eigenbases and the refreshes' column orders are the C's (the trace
    holds each one it made):
    where L has a repeated eigenvalue, zero above all (a 64 x 32 weight's
    G G^T has rank <= 32), any
    orthonormal basis of that space is an eigenbasis, a QR's columns past the
    rank are any completion, and SOAP's steps depend on which. Each one taken
    is checked first against this replay's own L, R: orthonormal, Q^T L Q
    diagonal with a descending diagonal (step 1), Q^T (L Q_sorted) upper
    triangular (refresh), within BASIS_TOL of the largest entry."""

    def __init__(self, a, params, tr):
        self.a, self.P = a, params
        self.bases = {k: v for k, v in tr.items() if k.startswith("bases.")}
        self.st = {}
        for k, p in params.items():
            self.st[k] = {"m": torch.zeros_like(p), "v": torch.zeros_like(p),
                          "GG": [torch.zeros(n, n) if n else None for n in sides(a, k, p)], "Q": None}
        self.problems = []
        self.worst = {"eigh": 0.0, "qr": 0.0, "order": 0.0}
        self.taken = 0

    def basis_of(self, t, name, d):
        key = f"bases.{t}.soap.{name}.Q{d}"
        if key not in self.bases:
            self.problems.append(f"the trace has no basis {key} (the C refreshed at other steps)")
            return None
        self.taken += 1
        return torch.tensor(self.bases[key])

    def order_of(self, t, name, d, est):
        """The C's column order of a refresh when it sorts this replay's
        estimates descending within BASIS_TOL of the largest (round-off orders
        near-equal ones: the vocabulary side of an embedding has ~200 within
        1e-6 of each other), else this replay's own."""
        own = torch.sort(est, descending=True, stable=True).indices
        key = f"bases.{t}.soap.{name}.order{d}"
        if key not in self.bases:
            self.problems.append(f"the trace has no column order {key}")
            return own
        c = torch.tensor(self.bases[key]).long()
        if sorted(c.tolist()) != list(range(len(est))):
            self.problems.append(f"step {t} {name} dim {d}: the C's column order is not a permutation")
            return own
        rise = est[c][1:] - est[c][:-1]
        worst = float(rise.max().clamp(min=0)) / (float(est.abs().max()) or 1.0) if len(rise) else 0.0
        self.worst["order"] = max(self.worst["order"], worst)
        if worst > BASIS_TOL:
            self.problems.append(f"step {t} {name} dim {d}: the C's column order does not sort "
                                 f"diag(Q^T L Q) descending (off by {worst:.1e}, tol {BASIS_TOL:g})")
        return c

    def check(self, kind, where, q, mat):
        """q orthonormal and, for eigh, q^T mat q diagonal with its diagonal in
        order; for qr, q^T mat upper triangular; relative to max |mat|."""
        scale = float(mat.abs().max()) or 1.0
        worst = float((q.T @ q - torch.eye(q.shape[0])).abs().max())
        if kind == "eigh":
            d = q.T @ mat @ q
            diag = torch.diag(d)
            worst = max(worst, float((d - torch.diag(diag)).abs().max()) / scale)
            rise = diag[:-1] - diag[1:] if "soap-ascending-basis" in MUTATE else diag[1:] - diag[:-1]
            if len(rise):
                worst = max(worst, float(rise.max().clamp(min=0)) / scale)
        else:
            worst = max(worst, float(torch.tril(q.T @ mat, -1).abs().max()) / scale)
        self.worst[kind] = max(self.worst[kind], worst)
        if worst > BASIS_TOL:
            self.problems.append(f"{where}: the C's {'eigenbasis' if kind == 'eigh' else 'QR'} is "
                                 f"not one of this replay's L/R (off by {worst:.1e}, tol {BASIS_TOL:g})")

    def step(self, t, grads, lr):
        a = self.a
        beta_s = a.beta2 if "soap-stats-with-beta2" in MUTATE else a.shampoo_beta
        first_too = "soap-update-first-step" in MUTATE
        k = t if first_too else t - 1  # soap.py's state["step"]: the updates so far
        for name, p in self.P.items():
            st, g = self.st[name], grads[name]
            pre = any(x is not None for x in st["GG"])
            if st["Q"] is None:  # the first step: L, R and their eigenbases only
                st["Q"] = [None] * len(st["GG"])
                for d, L in enumerate(st["GG"]):
                    if L is None:
                        continue
                    L.add_((1 - beta_s) * unfold_gram(g, d))  # lerp from 0
                    q = self.basis_of(t, name, d)
                    if q is not None:
                        self.check("eigh", f"step {t} {name} dim {d}", q, L)
                        st["Q"][d] = q
                    else:
                        st["Q"][d] = torch.eye(L.shape[0])
                if not first_too:
                    continue
            Q = st["Q"]
            gp = project(g, Q)
            m, v = st["m"], st["v"]
            m.mul_(a.beta1).add_((1 - a.beta1) * gp)
            v.mul_(a.beta2).add_((1 - a.beta2) * gp * gp)
            if "soap-adamw-bias-correction" in MUTATE:
                bc1, bc2 = 1 - a.beta1 ** k, 1 - a.beta2 ** k
                u, step_size = (m / bc1) / (torch.sqrt(v / bc2) + a.eps), lr
            else:  # the bias corrections in the step size, eps outside the plain sqrt
                u = m / (torch.sqrt(v) + a.eps)
                step_size = lr * math.sqrt(1 - a.beta2 ** k) / (1 - a.beta1 ** k)
            p.sub_(step_size * project(u, Q, back=True))
            if decays(name):
                p.sub_(lr * a.wd * p)  # soap.py: p.add_(p, alpha=-lr * wd) after the step
            if not pre:
                continue
            # update_preconditioner (soap.py)
            m_orig = project(m, Q, back=True)
            for d, L in enumerate(st["GG"]):
                if L is not None:
                    L.mul_(beta_s).add_((1 - beta_s) * unfold_gram(g, d))
            refresh = k > 0 and k % a.precond_every == 0 and "soap-no-refresh" not in MUTATE
            if refresh:
                for d, L in enumerate(st["GG"]):
                    if L is None:
                        continue
                    est = torch.diag(Q[d].T @ L @ Q[d])
                    order = self.order_of(t, name, d, est)
                    if "soap-no-v-permutation" not in MUTATE:
                        st["v"] = st["v"].index_select(d, order)
                    power = L @ Q[d][:, order]
                    q = self.basis_of(t, name, d)
                    if q is not None:
                        self.check("qr", f"step {t} {name} dim {d}", q, power)
                        Q[d] = q
            if not (refresh and "soap-no-moment-rotation" in MUTATE):
                st["m"] = project(m_orig, Q)

    def compare_state(self, final_state):
        return compare_stats(final_state, "soap.{}.GG{}", {k: st["GG"] for k, st in self.st.items()})

    def figures(self):
        return (f"; {self.taken} C bases taken, checked within {self.worst['eigh']:.1e} (eigh) "
                f"{self.worst['qr']:.1e} (qr) {self.worst['order']:.1e} (order)")


class Shampoo:
    """Shampoo (Gupta et al. 2018) grafted onto Adam: L, R the sums of
    G_(d) G_(d)^T; every precond_every steps from step 1 their roots
    (stat + eps I)^(-1/(2k)) for a tensor of order k, eigenvalues below 0
    taken as 0; S = G with each root applied; the step lr (|A| / |S|) S with
    A the AdamW step of the same gradient (AdamW itself where nothing is
    preconditioned); decoupled decay as AdamW.

    The roots are the C's (the trace holds each one), checked first: the root
    of a near-null direction is (lambda + eps)^(-1/4) with lambda the float32
    round-off of the C's L, of the order of 1e-7 |L| against eps = 1e-6, so a
    few per cent apart from this replay's, and the roots in force for the
    next precond_every steps apply exactly that gain to the new gradient
    directions: the trajectories part by ~1e-4 in 20 steps without any bug.
    A root P is taken when P^(-2k) - eps I matches this replay's L within
    ROOT_TOL of max(its largest entry, eps) (the exponent and eps are in that
    check)."""

    def __init__(self, a, params, tr):
        self.a, self.P = a, params
        self.adam = AdamW(a, params, tr)
        self.bases = {k: v for k, v in tr.items() if k.startswith("bases.")}
        self.stat = {k: [torch.zeros(n, n) if n else None for n in sides(a, k, p)]
                     for k, p in params.items()}
        self.root = {k: None for k in params}
        self.problems = []
        self.worst = 0.0
        self.taken = 0

    def root_of(self, t, name, d, L, k):
        """The C's root of L after the check, else (missing: a problem) this replay's own."""
        expo = -1.0 / k if "shampoo-root-half" in MUTATE else -1.0 / (2 * k)
        key = f"bases.{t}.shampoo.{name}.root{d}"
        if key not in self.bases:
            self.problems.append(f"the trace has no root {key} (the C recomputed at other steps)")
            w, U = torch.linalg.eigh(L)
            return (U * (w.clamp(min=0) + self.a.precond_eps) ** expo) @ U.T
        P = torch.tensor(self.bases[key])
        w, U = torch.linalg.eigh(0.5 * (P + P.T))
        if float(w.min()) <= 0:
            self.problems.append(f"step {t} {name} dim {d}: the C's root is not positive definite")
            return P
        back = (U * w ** (1.0 / expo)) @ U.T - self.a.precond_eps * torch.eye(L.shape[0])
        # a float32 P fixes L + eps I to its relative precision: where |L| is
        # below eps (attention weights at step 1) the yardstick is eps
        off = float((back - L).abs().max()) / max(float(L.abs().max()), self.a.precond_eps)
        self.worst = max(self.worst, off)
        if off > ROOT_TOL:
            self.problems.append(f"step {t} {name} dim {d}: the C's root P gives P^(-2k) - eps I "
                                 f"off this replay's L by {off:.1e} (tol {ROOT_TOL:g})")
        self.taken += 1
        return P

    def step(self, t, grads, lr):
        a = self.a
        for name, p in self.P.items():
            g = grads[name]
            upd = self.adam.direction(t, name, g)  # the graft: AdamW's step of this gradient
            stats = self.stat[name]
            k = p.dim()  # the order: a side left alone stands for a multiple of I
            if any(L is not None for L in stats):
                early = "shampoo-root-before-stats" in MUTATE
                recompute = (t - 1) % a.precond_every == 0
                roots = lambda: [None if L is None else self.root_of(t, name, d, L, k)
                                 for d, L in enumerate(stats)]
                if recompute and early:
                    self.root[name] = roots()
                for d, L in enumerate(stats):
                    if L is None:
                        continue
                    if "shampoo-stats-ema" in MUTATE:
                        L.mul_(a.beta2).add_((1 - a.beta2) * unfold_gram(g, d))
                    else:
                        L.add_(unfold_gram(g, d))
                if recompute and not early:
                    self.root[name] = roots()
                S = project(g, self.root[name])  # the roots are symmetric
                sn = float(S.norm())
                if "shampoo-no-graft" in MUTATE:
                    upd = S
                else:
                    upd = S * (float(upd.norm()) / sn if sn > 0 else 0.0)
            if decays(name):
                upd = upd + a.wd * p
            p.sub_(lr * upd)

    def compare_state(self, final_state):
        return compare_stats(final_state, "shampoo.{}.stat{}", self.stat)

    def figures(self):
        return f"; {self.taken} C roots taken, checked within {self.worst:.1e}"


def replay(a, cfg_json, init, final, tr, final_state):
    """Runs the trace's steps from init; returns (problems, figures)."""
    cfg = Config(cfg_json)
    model = Model(cfg, init)
    params = model.P
    opt = {"adamw": AdamW, "soap": SOAP, "shampoo": Shampoo}[a.optimizer](a, params, tr)
    S = tr["loss"].shape[0]
    worst = {"loss": 0.0, "gnorm": 0.0, "lr": 0.0}
    ids_all = torch.tensor(tr["ids"], dtype=torch.long)
    types_all = torch.tensor(tr["types"], dtype=torch.long)
    targets_all = torch.tensor(tr["targets"], dtype=torch.long)
    clipped = [0, 0]  # clipped softmax: entries clipped to 0, all entries
    for step in range(S):
        gamma = cfg.gamma
        if a.gamma_ramp and step < a.warmup:  # gamma ramped from 0 over warmup
            f = step if "ramp-off-by-one" in MUTATE else step + 1
            gamma = cfg.gamma * f32(f / a.warmup)
        logits = model.forward(ids_all[step], types_all[step], gamma)
        tg = targets_all[step]
        scored = tg >= 0
        ce = F.cross_entropy(logits.reshape(-1, cfg.V), tg.reshape(-1).clamp(min=0),
                             reduction="none").view(tg.shape) * scored
        if "loss-per-sequence" in MUTATE:
            loss = (ce.sum(1) / scored.sum(1)).mean()
        else:  # the mean over the scored targets of the whole batch
            loss = ce.sum() / scored.sum()
        for p in params.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in params.items()}
            norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
            clip = a.clip / norm if a.clip > 0 and norm > a.clip and "no-grad-clip" not in MUTATE else 1.0
            lr = lr_at(a, step + 1 if "lr-next-step" in MUTATE else step)
            opt.step(step + 1, {k: g * clip for k, g in grads.items()}, lr)
        L = float(loss)
        worst["loss"] = max(worst["loss"], abs(tr["loss"][step] - L) / L)
        worst["gnorm"] = max(worst["gnorm"], abs(tr["grad_norm"][step] - norm) / norm)
        worst["lr"] = max(worst["lr"], abs(tr["lr"][step] - lr) / lr)
        if cfg.softmax == "clipped_softmax":
            clipped[0] += model.n_clipped
            clipped[1] += model.n_probs

    problems = []
    unused = sorted(set(params) - model.used)
    if unused:
        problems.append(f"tensors the reference never used: {unused}")
    if set(final) != set(params):
        problems.append(f"final tensors differ from init: {sorted(set(final) ^ set(params))}")
    p_abs, p_name, p_rel = 0.0, "", 0.0
    for k, p in params.items():
        if k not in final:
            continue
        d = np.abs(final[k] - p.detach().numpy())
        # relative to the tensor's largest entry, reported, not tested (key
        # biases stay ~0 here, see above, so they are left out of it)
        scale = float(np.abs(p.detach().numpy()).max())
        if scale > 1e-3:
            p_rel = max(p_rel, float(d.max()) / scale)
        if float(d.max()) > p_abs:
            p_abs, p_name = float(d.max()), k
    if worst["loss"] > LOSS_RTOL[a.optimizer]:
        problems.append(f"loss off by {worst['loss']:.2e} relative (tol {LOSS_RTOL[a.optimizer]:g})")
    if worst["gnorm"] > GNORM_RTOL[a.optimizer]:
        problems.append(f"gradient norm off by {worst['gnorm']:.2e} relative "
                        f"(tol {GNORM_RTOL[a.optimizer]:g})")
    if worst["lr"] > LR_RTOL:
        problems.append(f"lr off by {worst['lr']:.2e} relative (tol {LR_RTOL:g})")
    if p_abs > PARAM_ATOL:
        problems.append(f"parameter {p_name} off by {p_abs:.2e} (tol {PARAM_ATOL:g})")
    problems += opt.problems
    state_rel, state_name = opt.compare_state(final_state)
    if state_rel > STATE_RTOL:
        problems.append(f"optimiser state {state_name} off by {state_rel:.2e} relative to its "
                        f"largest entry (tol {STATE_RTOL:g})")
    figures = (f"{S} steps, loss {float(tr['loss'][0]):.4f} -> {float(tr['loss'][-1]):.4f}; "
               f"max rel diff loss {worst['loss']:.1e} |g| {worst['gnorm']:.1e} lr {worst['lr']:.1e}; "
               f"params max abs diff {p_abs:.1e} ({p_name}), max rel to tensor {p_rel:.1e}")
    if a.optimizer != "adamw":
        figures += f"; state max rel diff {state_rel:.1e} ({state_name}){opt.figures()}"
    if clipped[1]:
        figures += f"; {100 * clipped[0] / clipped[1]:.1f} % of attention entries clipped to 0"
    return problems, figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="qs train --out DIR (with init/ and model.safetensors)")
    ap.add_argument("--trace", required=True)
    ap.add_argument("--name", default="run")
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--gamma-ramp", action="store_true")
    ap.add_argument("--optimizer", default="adamw", choices=("adamw", "soap", "shampoo"))
    ap.add_argument("--shampoo-beta", type=float, default=0.95)
    ap.add_argument("--precond-every", type=int, default=10)
    ap.add_argument("--max-precond-dim", type=int, default=10000)
    ap.add_argument("--precond-eps", type=float, default=1e-6)
    ap.add_argument("--mutate", default="", help="comma-separated deliberate bugs (MUTATIONS) to "
                    "replay after the real run; each must fail")
    a = ap.parse_args()
    for k in ("lr", "min_lr_ratio", "wd", "beta1", "beta2", "eps", "clip", "shampoo_beta",
              "precond_eps"):
        setattr(a, k, f32(getattr(a, k)))
    mutations = [x for x in a.mutate.split(",") if x]
    for x in mutations:
        if x not in MUTATIONS:
            ap.error(f"unknown mutation {x!r} (one of {', '.join(MUTATIONS)})")

    with open(os.path.join(a.dir, "init", "config.json")) as f:
        cfg_json = json.load(f)
    init, _ = read_safetensors(os.path.join(a.dir, "init", "model.safetensors"))
    final, _ = read_safetensors(os.path.join(a.dir, "model.safetensors"))
    tr, meta = read_safetensors(a.trace)
    S = tr["loss"].shape[0]
    a.steps = int(meta.get("steps", S))
    # The run must be the one this replay is configured for (catches a flag
    # that qs train dropped or misread as well as a driver mistake).
    want = {"lr": a.lr, "min_lr_ratio": a.min_lr_ratio, "warmup_steps": a.warmup,
            "weight_decay": a.wd, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps,
            "grad_clip": a.clip, "gamma_ramp": int(a.gamma_ramp)}
    for k, v in want.items():
        if k not in meta or f32(float(meta[k])) != f32(v):
            print(f"{a.name}: FAIL trace metadata {k} = {meta.get(k)}, the replay uses {v}")
            return 1
    # traces from before SOAP and Shampoo name no optimiser: AdamW's
    if meta.get("optimizer", "adamw") != a.optimizer:
        print(f"{a.name}: FAIL trace metadata optimizer = {meta.get('optimizer')}, the replay "
              f"uses {a.optimizer}")
        return 1
    if a.optimizer != "adamw":
        for k, v in {"shampoo_beta": a.shampoo_beta, "precond_every": a.precond_every,
                     "max_precond_dim": a.max_precond_dim, "precond_eps": a.precond_eps}.items():
            if k not in meta or f32(float(meta[k])) != f32(v):
                print(f"{a.name}: FAIL trace metadata {k} = {meta.get(k)}, the replay uses {v}")
                return 1
    if S != a.steps:
        print(f"{a.name}: FAIL the trace holds {S} steps of a {a.steps}-step run")
        return 1

    final_state = {}
    if a.optimizer != "adamw":
        final_state, _ = read_safetensors(os.path.join(a.dir, "train_state.safetensors"))
    problems, figures = replay(a, cfg_json, init, final, tr, final_state)
    print(f"{a.name}: {'PASS' if not problems else 'FAIL'}  {figures}"
          + "".join(f"\n  {p}" for p in problems))
    missed = []
    for x in mutations:
        MUTATE.clear()
        MUTATE.add(x)
        caught, figures = replay(a, cfg_json, init, final, tr, final_state)
        MUTATE.clear()
        if not caught:
            missed.append(x)
        print(f"  mutation {x} ({MUTATIONS[x]}): {'caught' if caught else 'MISSED'}: "
              f"{'; '.join(caught) if caught else figures}")
    return 1 if problems or missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError) as e:  # unreadable run, unknown config, missing tensor
        print(f"torch_reference: FAIL {type(e).__name__}: {e}")
        sys.exit(1)
