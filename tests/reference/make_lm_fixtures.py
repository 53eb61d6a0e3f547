"""PyTorch references for the language models (text/lm.h): the CLIP text
tower's blocks (make_clip_fixtures.Block) with token + positional embeddings,
ln_final and an output layer tied to the token embedding plus lm_head.bias.

  clm: causal attention, mean next-token cross-entropy over every position.
  mlm: bidirectional attention, cross-entropy at the selected positions only
       (a fixed mask: sel, masked input, targets; -100 = ignored row).

Run: /usr/bin/python3 tests/reference/make_lm_fixtures.py
Writes tests/fixtures/lm.safetensors: for each objective O in clm, mlm: O.<param>
(weights), O.in (I32 [B, T]), O.target, O.sel (mlm), O.loss, O.grad.<param>.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from make_clip_fixtures import Transformer
from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "lm.safetensors")

V, W, HEADS, LAYERS, CTX, B, T = 40, 16, 2, 2, 8, 3, 8


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding = nn.Embedding(V, W)
        self.positional_embedding = nn.Parameter(torch.randn(CTX, W) * 0.1)
        self.transformer = Transformer(W, LAYERS, HEADS, nn.GELU)
        self.ln_final = nn.LayerNorm(W)
        self.lm_head_bias = nn.Parameter(torch.randn(V) * 0.1)

    def hidden(self, ids, causal):
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        mask = None
        if causal:
            mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
        return self.ln_final(x)

    def logits(self, h):
        return h @ self.token_embedding.weight.t() + self.lm_head_bias


def params(m):
    out = {}
    for n, p in m.named_parameters():
        out["lm_head.bias" if n == "lm_head_bias" else n] = p
    return out


def make(obj, seed, tensors):
    torch.manual_seed(seed)
    m = LM()
    with torch.no_grad():  # livelier weights than the default init, so gradients are not tiny
        for n, p in m.named_parameters():
            if p.dim() > 1 and "embedding" not in n:
                p.mul_(1.5)
    g = torch.Generator().manual_seed(seed + 1)
    if obj == "clm":
        rows = torch.randint(0, V - 2, (B, T + 1), generator=g)
        rows[:, 0] = V - 2  # SOT
        inp, target = rows[:, :T], rows[:, 1:].reshape(-1)
        loss = F.cross_entropy(m.logits(m.hidden(inp, True)).reshape(B * T, V), target)
        sel = None
    else:
        rows = torch.randint(0, V - 3, (B, T), generator=g)
        rows[:, 0] = V - 3  # SOT (V-3), EOT (V-2), [MASK] (V-1)
        rows[:, -1] = V - 2
        K = 2
        inp = rows.clone()
        sel = torch.zeros(K, B, dtype=torch.int64)
        target = torch.zeros(K, B, dtype=torch.int64)
        for b in range(B):
            pos = torch.randperm(T - 2, generator=g)[:K].sort().values + 1
            for k in range(K):
                sel[k, b] = pos[k]
                target[k, b] = rows[b, pos[k]]
                inp[b, pos[k]] = V - 1 if k == 0 else int(torch.randint(0, V - 3, (1,), generator=g))
        target[1, 2] = -100  # an ignored row, as the masking gives when a row runs short
        h = m.hidden(inp, False)  # [B, T, W]
        g_rows = torch.cat([h[torch.arange(B), sel[k]] for k in range(K)], 0)  # [K*B, W] in [K][B] order
        loss = F.cross_entropy(m.logits(g_rows), target.reshape(-1), ignore_index=-100)
    loss.backward()
    ps = params(m)
    for n, p in ps.items():
        tensors[f"{obj}.{n}"] = p.detach().numpy().astype(np.float32)
        tensors[f"{obj}.grad.{n}"] = p.grad.numpy().astype(np.float32)
    tensors[f"{obj}.in"] = inp.numpy().astype(np.int32)
    tensors[f"{obj}.target"] = target.reshape(-1).numpy().astype(np.int32)
    if sel is not None:
        tensors[f"{obj}.sel"] = sel.reshape(-1).numpy().astype(np.int32)
    tensors[f"{obj}.loss"] = np.array([loss.item()], dtype=np.float32)
    print(f"{obj}: loss {loss.item():.6f}", file=sys.stderr)


if __name__ == "__main__":
    torch.set_default_dtype(torch.float32)
    t = {}
    make("clm", 7, t)
    make("mlm", 8, t)
    save(OUT, t, {"V": str(V), "W": str(W), "heads": str(HEADS), "layers": str(LAYERS), "ctx": str(CTX),
                  "B": str(B), "T": str(T)})
    print(f"wrote {OUT}", file=sys.stderr)
