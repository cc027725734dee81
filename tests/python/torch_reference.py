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
learning rate and AdamW, all in float64, so that what remains of a difference
is the C's float32 rounding. It compares each step's loss, gradient norm and
learning rate with the ones qs recorded, and the final parameters with
DIR/model.safetensors, prints one line and exits 1 past the tolerances below.
--mutate replays again with deliberate bugs, each of which must fail.

Needs only python3-torch and numpy (Debian's); safetensors are read by hand.

usage: torch_reference.py --dir DIR --trace FILE --name NAME --lr X --warmup N
       [--min-lr-ratio X --wd X --beta1 X --beta2 X --eps X --clip X --gamma-ramp]
       [--mutate NAME,NAME...]
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
LOSS_RTOL = 2e-6       # per step, |loss_qs - loss_ref| / loss_ref
GNORM_RTOL = 5e-6      # per step, gradient norm before clipping
LR_RTOL = 1e-6         # per step; qs records lr as float32 (6e-8 relative)
PARAM_ATOL = 2e-4      # final parameters, max |p_qs - p_ref| over every tensor
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


def replay(a, cfg_json, init, final, tr):
    """Runs the trace's steps from init; returns (problems, figures)."""
    cfg = Config(cfg_json)
    model = Model(cfg, init)
    params = model.P
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
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
            t = step + 1
            bc1, bc2 = 1 - a.beta1 ** t, 1 - a.beta2 ** t
            if "no-bias-correction" in MUTATE:
                bc1 = bc2 = 1.0
            for k, p in params.items():
                g = grads[k] * clip
                m[k].mul_(a.beta1).add_((1 - a.beta1) * g)
                v2[k].mul_(a.beta2).add_((1 - a.beta2) * g * g)
                if "adam-eps-in-sqrt" in MUTATE:
                    upd = (m[k] / bc1) / torch.sqrt(v2[k] / bc2 + a.eps)
                else:
                    upd = (m[k] / bc1) / (torch.sqrt(v2[k] / bc2) + a.eps)  # eps outside the sqrt
                if decays(k):
                    upd = upd + a.wd * p  # decoupled decay (Loshchilov & Hutter)
                p.sub_(lr * upd)
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
    if worst["loss"] > LOSS_RTOL:
        problems.append(f"loss off by {worst['loss']:.2e} relative (tol {LOSS_RTOL:g})")
    if worst["gnorm"] > GNORM_RTOL:
        problems.append(f"gradient norm off by {worst['gnorm']:.2e} relative (tol {GNORM_RTOL:g})")
    if worst["lr"] > LR_RTOL:
        problems.append(f"lr off by {worst['lr']:.2e} relative (tol {LR_RTOL:g})")
    if p_abs > PARAM_ATOL:
        problems.append(f"parameter {p_name} off by {p_abs:.2e} (tol {PARAM_ATOL:g})")
    figures = (f"{S} steps, loss {float(tr['loss'][0]):.4f} -> {float(tr['loss'][-1]):.4f}; "
               f"max rel diff loss {worst['loss']:.1e} |g| {worst['gnorm']:.1e} lr {worst['lr']:.1e}; "
               f"params max abs diff {p_abs:.1e} ({p_name}), max rel to tensor {p_rel:.1e}")
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
    ap.add_argument("--mutate", default="", help="comma-separated deliberate bugs (MUTATIONS) to "
                    "replay after the real run; each must fail")
    a = ap.parse_args()
    for k in ("lr", "min_lr_ratio", "wd", "beta1", "beta2", "eps", "clip"):
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
    if S != a.steps:
        print(f"{a.name}: FAIL the trace holds {S} steps of a {a.steps}-step run")
        return 1

    problems, figures = replay(a, cfg_json, init, final, tr)
    print(f"{a.name}: {'PASS' if not problems else 'FAIL'}  {figures}"
          + "".join(f"\n  {p}" for p in problems))
    missed = []
    for x in mutations:
        MUTATE.clear()
        MUTATE.add(x)
        caught, figures = replay(a, cfg_json, init, final, tr)
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
