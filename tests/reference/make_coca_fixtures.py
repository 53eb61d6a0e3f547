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
  coca.<param> (every CLIP and decoder tensor, vlm names), coca.image, coca.text I32, coca.contrastive,
  coca.caption, coca.total (= contrastive + 2 caption), coca.grad.<param>   (the whole CoCa step:
  image tokens = ln_post of every ViT token, text tokens = ln_final of every position up to the
  batch's last EOT, InfoNCE on the pooled features)
"""
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from make_clip_fixtures import CLIP, Block
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
    def __init__(self, L=L, WI=WI):
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
    # the whole CoCa step on a micro CLIP (text width W, heads H) with a 1-layer decoder
    torch.manual_seed(5)
    cfg = dict(embed_dim=8, image_resolution=8, vision_patch_size=4, vision_width=12, vision_layers=1, vision_heads=2,
               context_length=7, vocab_size=V, transformer_width=W, transformer_heads=H, transformer_layers=1)
    clip = CLIP(cfg, nn.GELU)
    dec = Decoder(L=1, WI=12)
    jitter(clip, 0.1)
    jitter(dec)
    Bc = 3
    image = torch.randn(Bc, 3, 8, 8)
    text = torch.zeros(Bc, 7, dtype=torch.int64)
    for b, n in enumerate([4, 2, 5]):  # SOT(V-2) tokens EOT(V-1) 0...
        text[b, 0] = V - 2
        text[b, 1:n + 1] = torch.randint(1, V - 2, (n,))
        text[b, n + 1] = V - 1
    eot = text.argmax(-1)
    Tl = int(eot.max()) + 1
    v = clip.visual
    x = v.conv1(image).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(Bc, 1, -1), x], 1) + v.positional_embedding
    itok = v.ln_post(v.transformer(v.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2))  # [B, 1+N, Wv]
    fi = itok[:, 0] @ v.proj
    tt = text[:, :Tl]
    xt = clip.token_embedding(tt) + clip.positional_embedding[:Tl]
    mask = torch.full((Tl, Tl), float("-inf")).triu(1)
    ttok = clip.ln_final(clip.transformer(xt.permute(1, 0, 2), mask).permute(1, 0, 2))  # [B, Tl, W]
    ft = ttok[torch.arange(Bc), eot] @ clip.text_projection
    a, b_ = fi / fi.norm(dim=-1, keepdim=True), ft / ft.norm(dim=-1, keepdim=True)
    logits = clip.logit_scale.exp() * a @ b_.t()
    lab = torch.arange(Bc)
    contrastive = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
    clog = dec(ttok, itok)
    tgt = torch.full((Bc, Tl), -100, dtype=torch.int64)
    for b in range(Bc):
        for s in range(Tl - 1):
            if s + 1 <= eot[b]:
                tgt[b, s] = tt[b, s + 1]
    caption = F.cross_entropy(clog.reshape(Bc * Tl, V), tgt.reshape(-1), ignore_index=-100)
    total = contrastive + 2 * caption
    total.backward()
    for n, p in list(clip.named_parameters()) + [("text_decoder." + n, p) for n, p in dec.named_parameters()]:
        t[f"coca.{n}"] = p.detach().reshape(p.shape)
        t[f"coca.grad.{n}"] = p.grad if p.grad is not None else torch.zeros_like(p)
    t.update({"coca.image": image, "coca.contrastive": contrastive.detach().reshape(1),
              "coca.caption": caption.detach().reshape(1), "coca.total": total.detach().reshape(1)})
    arrays = {k: np.asarray(v.numpy() if torch.is_tensor(v) else v, dtype=np.float32) for k, v in t.items()}
    arrays["dec.ids"] = ids.numpy().astype(np.int32)
    arrays["dec.eot"] = np.array([T - 1, 3], dtype=np.int32)
    arrays["coca.text"] = text.numpy().astype(np.int32)
    save(OUT, arrays, {k: str(v) for k, v in dict(B=B, T=T, N=N, M=M, W=W, WI=WI, H=H, L=L, V=V).items()})
    print(f"wrote {OUT}: caption loss {loss.item():.6f}; coca total {total.item():.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
