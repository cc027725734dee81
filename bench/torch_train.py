"""bench/torch_train.py: the PyTorch CPU peer of `qs train` for the speed
comparison: the same BERT-style byte-level MLM model (post-LN, GELU, tied MLM
head), batch, sequence length, AdamW and thread count; prints tokens/s."""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, d, h, ffn):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d, eps=1e-12)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // self.h), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class Bert(nn.Module):
    def __init__(self, vocab, d, layers, h, ffn, T):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(T, d)
        self.wtt = nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList([Layer(d, h, ffn) for _ in range(layers)])
        self.head = nn.Linear(d, d)
        self.head_ln = nn.LayerNorm(d, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, ids, types, rows, targets):
        T = ids.shape[1]
        x = self.ln(self.wte(ids) + self.wpe(torch.arange(T)) + self.wtt(types))
        for layer in self.layers:
            x = layer(x)
        h = x.reshape(-1, x.shape[-1])[rows]  # only the masked rows, as qs does
        h = self.head_ln(F.gelu(self.head(h)))
        return F.cross_entropy(h @ self.wte.weight.t() + self.bias, targets)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = Bert(260, a.hidden, a.layers, a.heads, a.ffn, a.seq_len)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    B, T = a.batch, a.seq_len
    ids = torch.randint(4, 260, (B, T))
    types = torch.zeros(B, T, dtype=torch.long)
    rows = torch.nonzero(torch.rand(B * T) < 0.15).squeeze(1)
    targets = ids.reshape(-1)[rows]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = m(ids, types, rows, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    for _ in range(3):  # warm-up
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(f"torch {torch.__version__}: {a.steps * B * T / dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
