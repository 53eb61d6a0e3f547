"""PyTorch references for CoCa's multimodal decoder (fusion/coca.h), written
from open_clip's MultimodalTransformer description: per layer a causal
self-attention block then a cross-attention block (ln_1 on the queries,
ln_1_kv on the image tokens, nn.MultiheadAttention, MLP), ln_final,
text_projection; the caption loss is the next-token cross-entropy up to each
row's EOT.

Run: /usr/bin/python3 tests/reference/make_coca_fixtures.py
Writes tests/fixtures/coca.safetensors:
  xblock.<param>, xblock.x [B,T,W], xblock.kv [B,N,W], xblock.out, xblock.r (upstream),
  xblock.grad.<param>, xblock.grad_x, xblock.grad_kv      (one cross-attention block)
  dec.<param> (vlm names), dec.text [B,T,W], dec.img [B,M,WI], dec.ids I32 [B,T], dec.eot I32 [B],
  dec.logits, dec.loss, dec.grad.<param>, dec.grad_text, dec.grad_img   (decoder + caption loss)
"""
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from make_clip_fixtures import Block
from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "coca.safetensors")
B, T, N, M, W, WI, H, L, V = 2, 6, 5, 4, 16, 12, 2, 2, 30


class CrossBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_1_kv, self.ln_2 = nn.LayerNorm(W), nn.LayerNorm(W), nn.LayerNorm(W)
        self.attn = nn.MultiheadAttention(W, H, batch_first=True)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(W, 4 * W)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(4 * W, W))]))

    def forward(self, x, kv):
        m = self.ln_1_kv(kv)
        x = x + self.attn(self.ln_1(x), m, m, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_proj = nn.Linear(WI, W)
        self.resblocks = nn.ModuleList([Block(W, H, nn.GELU) for _ in range(L)])
        self.cross_attn = nn.ModuleList([CrossBlock() for _ in range(L)])
        self.ln_final = nn.LayerNorm(W)
        self.text_projection = nn.Parameter(torch.randn(W, V) * W ** -0.5)

    def forward(self, text, img):
        kv = self.img_proj(img)
        mask = torch.full((text.shape[1], text.shape[1]), float("-inf")).triu(1)
        x = text
        for sb, xb in zip(self.resblocks, self.cross_attn):
            x = sb(x.permute(1, 0, 2), mask).permute(1, 0, 2)
            x = xb(x, kv)
        return self.ln_final(x) @ self.text_projection


def jitter(m, s=0.2):
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.add_(torch.randn_like(p) * s)


def main():
    t = {}
    torch.manual_seed(3)
    xb = CrossBlock()
    jitter(xb)
    x = torch.randn(B, T, W, requires_grad=True)
    kv = torch.randn(B, N, W, requires_grad=True)
    out = xb(x, kv)
    r = torch.randn_like(out)
    (out * r).sum().backward()
    for n, p in xb.named_parameters():
        t[f"xblock.{n}"], t[f"xblock.grad.{n}"] = p.detach(), p.grad
    t.update({"xblock.x": x.detach(), "xblock.kv": kv.detach(), "xblock.out": out.detach(), "xblock.r": r,
              "xblock.grad_x": x.grad, "xblock.grad_kv": kv.grad})

    torch.manual_seed(4)
    d = Decoder()
    jitter(d)
    text = torch.randn(B, T, W, requires_grad=True)
    img = torch.randn(B, M, WI, requires_grad=True)
    ids = torch.randint(0, V - 2, (B, T))
    eot = torch.tensor([T - 1, 3])
    ids[0, T - 1] = V - 1
    ids[1, 3] = V - 1
    ids[1, 4:] = 0
    logits = d(text, img)
    tgt = torch.full((B, T), -100, dtype=torch.int64)
    for b in range(B):
        for s in range(T - 1):
            if s + 1 <= eot[b]:
                tgt[b, s] = ids[b, s + 1]
    loss = F.cross_entropy(logits.reshape(B * T, V), tgt.reshape(-1), ignore_index=-100)
    loss.backward()
    for n, p in d.named_parameters():
        vn = "text_decoder." + n
        t[f"dec.{vn}"], t[f"dec.grad.{vn}"] = p.detach(), p.grad
    t.update({"dec.text": text.detach(), "dec.img": img.detach(), "dec.logits": logits.detach(),
              "dec.loss": loss.detach().reshape(1), "dec.grad_text": text.grad, "dec.grad_img": img.grad})
    arrays = {k: np.asarray(v.numpy() if torch.is_tensor(v) else v, dtype=np.float32) for k, v in t.items()}
    arrays["dec.ids"] = ids.numpy().astype(np.int32)
    arrays["dec.eot"] = eot.numpy().astype(np.int32)
    save(OUT, arrays, {k: str(v) for k, v in dict(B=B, T=T, N=N, M=M, W=W, WI=WI, H=H, L=L, V=V).items()})
    print(f"wrote {OUT}: caption loss {loss.item():.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
