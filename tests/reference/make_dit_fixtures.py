#!/usr/bin/python3
"""PyTorch reference for vlm's DiT denoiser with adaLN-Zero (tests/test_dit.c).

    /usr/bin/python3 tests/reference/make_dit_fixtures.py   # -> tests/fixtures/dit.safetensors
    /usr/bin/python3 tests/reference/make_dit_fixtures.py --long-skip   # -> tests/fixtures/dit_skip.safetensors

Written from DiT's paper and its public model code (facebookresearch/DiT, models.py),
in torch float64, independently of the C code:
  c = MLP(timestep_embedding(t)) + Linear(e),  e = CLIP embedding, or the learned
      null embedding in dropped rows (classifier-free guidance)
  x = patchify(x_t) + pos_embed (fixed 2-D sin-cos); [tokens(e) | x] when cond_tokens > 0
  block: shift1, scale1, gate1, shift2, scale2, gate2 = Linear(SiLU(c)).chunk(6)
         x = x + gate1 * attn(LN(x) * (1 + scale1) + shift1)
         x = x + gate2 * mlp(LN(x) * (1 + scale2) + shift2)      (LN without affine, eps 1e-6;
                                                                  mlp = fc2(gelu_tanh(fc1)))
  --long-skip (U-ViT, Bao et al. 2023; here L = 5): blocks 0 .. L//2 - 1 keep their outputs; before
         block L - L//2 + i, x = skips.i.linear(cat([x, output of block L//2 - 1 - i], -1))
  final: shift, scale = Linear(SiLU(c)).chunk(2); linear(LN(x) * (1 + scale) + shift); unpatchify
  loss = mean((eps_pred - eps)^2)
The adaLN and final weights are random here (not zero as at initialisation) so
every gradient is non-trivial.

Tensors: every parameter by name, inputs xt [B, 3, 8, 8], t [B] (as float), emb [B, E],
drop [B] (float 0/1), eps [B, 3, 8, 8]; outputs out [B, 3, 8, 8], loss [1], grad.<name>;
pos_ref [16, W] (DiT's numpy sin-cos table), temb_ref [B, 16] (timestep embedding).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
LONG_SKIP = "--long-skip" in sys.argv[1:]
B, S, p, Ci, W, H, L, E, K, FD = 3, 8, 2, 3, 16, 2, 5 if LONG_SKIP else 2, 8, 2, 16
NS = L // 2 if LONG_SKIP else 0
G, N, M = S // p, (S // p) ** 2, 4 * W


def sincos_1d(D, pos):  # DiT's get_1d_sincos_pos_embed_from_grid
    omega = np.arange(D // 2, dtype=np.float64) / (D / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def pos_table(D, G):  # DiT's get_2d_sincos_pos_embed
    gh, gw = np.arange(G, dtype=np.float32), np.arange(G, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, G, G)
    return np.concatenate([sincos_1d(D // 2, grid[0]), sincos_1d(D // 2, grid[1])], axis=1)


def timestep_embedding(t, dim, max_period=10000):  # DiT's TimestepEmbedder.timestep_embedding
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)
    args = t[:, None].double() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


P = {}
def param(name, *shape, std=0.2):
    P[name] = (torch.randn(*shape) * std).requires_grad_(True)
    return P[name]

param("x_embedder.proj.weight", W, Ci, p, p)
param("x_embedder.proj.bias", W)
param("t_embedder.mlp.0.weight", W, FD)
param("t_embedder.mlp.0.bias", W)
param("t_embedder.mlp.2.weight", W, W)
param("t_embedder.mlp.2.bias", W)
param("y_embedder.proj.weight", W, E)
param("y_embedder.proj.bias", W)
param("y_embedder.null", E)
param("y_embedder.tokens.weight", K * W, E)
param("y_embedder.tokens.bias", K * W)
for l in range(L):
    for nm, sh in [("attn.qkv", (3 * W, W)), ("attn.proj", (W, W)), ("mlp.fc1", (M, W)), ("mlp.fc2", (W, M)),
                   ("adaLN_modulation.1", (6 * W, W))]:
        param(f"blocks.{l}.{nm}.weight", *sh)
        param(f"blocks.{l}.{nm}.bias", sh[0])
for i in range(NS):
    param(f"skips.{i}.linear.weight", W, 2 * W)
    param(f"skips.{i}.linear.bias", W)
param("final_layer.adaLN_modulation.1.weight", 2 * W, W)
param("final_layer.adaLN_modulation.1.bias", 2 * W)
param("final_layer.linear.weight", p * p * Ci, W)
param("final_layer.linear.bias", p * p * Ci)
pos = torch.tensor(pos_table(W, G)).reshape(1, N, W)

xt = torch.randn(B, Ci, S, S)
t = torch.tensor([999, 500, 3])
emb = F.normalize(torch.randn(B, E), dim=-1)
drop = torch.tensor([0.0, 1.0, 0.0])
eps = torch.randn(B, Ci, S, S)


def modulate(x, shift, scale):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]


def lin(x, name):
    return F.linear(x, P[name + ".weight"], P[name + ".bias"])


def attention(x, l):
    Bx, T, C = x.shape
    qkv = lin(x, f"blocks.{l}.attn.qkv").reshape(Bx, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // H), dim=-1)
    return lin((a @ v).transpose(1, 2).reshape(Bx, T, C), f"blocks.{l}.attn.proj")


def forward():
    e = emb * (1 - drop[:, None]) + P["y_embedder.null"][None] * drop[:, None]
    temb = lin(F.silu(lin(timestep_embedding(t, FD), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    c = temb + lin(e, "y_embedder.proj")
    sc = F.silu(c)
    x = F.conv2d(xt, P["x_embedder.proj.weight"], P["x_embedder.proj.bias"], stride=p).flatten(2).transpose(1, 2) + pos
    x = torch.cat([lin(e, "y_embedder.tokens").reshape(B, K, W), x], dim=1)
    skips = []
    for l in range(L):
        if l >= L - NS:
            i = l - (L - NS)
            x = lin(torch.cat([x, skips[NS - 1 - i]], dim=-1), f"skips.{i}.linear")
        s1, c1, g1, s2, c2, g2 = lin(sc, f"blocks.{l}.adaLN_modulation.1").chunk(6, dim=1)
        x = x + g1[:, None] * attention(modulate(x, s1, c1), l)
        h = F.gelu(lin(modulate(x, s2, c2), f"blocks.{l}.mlp.fc1"), approximate="tanh")
        x = x + g2[:, None] * lin(h, f"blocks.{l}.mlp.fc2")
        if l < NS:
            skips.append(x)
    x = x[:, K:]
    shift, scale = lin(sc, "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    x = lin(modulate(x, shift, scale), "final_layer.linear")
    x = x.reshape(B, G, G, p, p, Ci)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, Ci, S, S)


out = forward()
loss = ((out - eps) ** 2).mean()
loss.backward()
T = {k: v.detach() for k, v in P.items()}
T["pos_embed"] = pos
T.update({f"grad.{k}": v.grad for k, v in P.items()})
T.update({"xt": xt, "t": t.double(), "emb": emb, "drop": drop, "eps": eps, "out": out.detach(),
          "loss": loss.detach().reshape(1), "pos_ref": torch.tensor(pos_table(W, G)),
          "temb_ref": timestep_embedding(t, FD)})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "dit_skip.safetensors" if LONG_SKIP else "dit.safetensors")
st.save(path, {k: np.asarray(v.numpy(), dtype=np.float32) for k, v in T.items()},
        {"config": f"B={B} S={S} p={p} C={Ci} W={W} H={H} L={L} E={E} K={K} freq={FD}" + (" long_skip=1" if LONG_SKIP else ""), "torch": torch.__version__})
print("wrote", os.path.normpath(path), len(T), "tensors")
