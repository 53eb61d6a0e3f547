"""PyTorch reference for the open-vocabulary detection head's forward and
gradients (vision/detector.h), written from the header's description:

  tokens = ln_post(ViT tokens)                       [B, 1+N, W]  (OpenAI's ViT: make_clip_fixtures.Visual)
  x      = merge_ln(patch_tokens * class_token)      [B, N, W]
  boxes  = sigmoid(box.2(gelu(box.1(gelu(box.0(x))))) + box_bias)
           box_bias[n = i*g + j] = logit((j+.5)/g), logit((i+.5)/g), logit(1/g), logit(1/g)
  e      = normalize(class_proj(x))
  logits = (e @ queries^T + logit_shift(x)) * (elu(logit_scale(x)) + 1)

Run: /usr/bin/python3 tests/reference/make_detector_fixtures.py
Writes tests/fixtures/detector_head.safetensors: every parameter under vlm's
name, images [B,3,S,S], queries [Q,E], logits, boxes, the upstream gradients
r_logits, r_boxes and grad.<param> of sum(logits * r_logits) + sum(boxes * r_boxes).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from make_clip_fixtures import Visual
from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "detector_head.safetensors")
B, S, P, W, LAYERS, HEADS, E, Q = 2, 16, 4, 16, 1, 2, 8, 3
G = S // P


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = Visual(S, P, W, LAYERS, HEADS, E, nn.GELU)
        self.merge_ln = nn.LayerNorm(W)
        self.box = nn.ModuleList([nn.Linear(W, W), nn.Linear(W, W), nn.Linear(W, 4)])
        self.class_proj = nn.Linear(W, E)
        self.logit_shift = nn.Linear(W, 1)
        self.logit_scale = nn.Linear(W, 1)
        lg = lambda p: math.log(p / (1 - p))
        bias = [[lg((j + .5) / G), lg((i + .5) / G), lg(1 / G), lg(1 / G)] for i in range(G) for j in range(G)]
        self.register_buffer("box_bias", torch.tensor(bias))

    def forward(self, images, queries):
        v = self.visual
        x = v.conv1(images).flatten(2).transpose(1, 2)
        cls = v.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + v.positional_embedding
        x = v.ln_pre(x).permute(1, 0, 2)
        tok = v.ln_post(v.transformer(x).permute(1, 0, 2))  # [B, 1+N, W]
        x = self.merge_ln(tok[:, 1:] * tok[:, :1])
        h = F.gelu(self.box[0](x))
        h = F.gelu(self.box[1](h))
        boxes = torch.sigmoid(self.box[2](h) + self.box_bias)
        e = F.normalize(self.class_proj(x), dim=-1)
        logits = (e @ queries.t() + self.logit_shift(x)) * (F.elu(self.logit_scale(x)) + 1)
        return logits, boxes


def vlm_name(n):
    n = n.replace("box.", "det.box.", 1) if n.startswith("box.") else n
    for k in ("merge_ln", "class_proj", "logit_shift", "logit_scale"):
        if n.startswith(k):
            return "det." + n
    return n


if __name__ == "__main__":
    torch.manual_seed(11)
    m = Head()
    with torch.no_grad():
        for n, p in m.named_parameters():  # every weight non-trivial (LayerNorms too)
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.2) + (1.0 if n.endswith("ln_1.weight") or
                    n.endswith("ln_2.weight") or "ln_" in n and n.endswith("weight") or n == "merge_ln.weight" else 0))
    images = torch.randn(B, 3, S, S)
    queries = F.normalize(torch.randn(Q, E), dim=-1)
    logits, boxes = m(images, queries)
    r_logits, r_boxes = torch.randn_like(logits), torch.randn_like(boxes)
    ((logits * r_logits).sum() + (boxes * r_boxes).sum()).backward()
    t = {"images": images.numpy(), "queries": queries.numpy(), "logits": logits.detach().numpy(),
         "boxes": boxes.detach().numpy(), "r_logits": r_logits.numpy(), "r_boxes": r_boxes.numpy()}
    for n, p in m.named_parameters():
        if n == "visual.proj":
            continue  # unused by the head (frozen in vlm)
        t[vlm_name(n)] = p.detach().numpy()
        t["grad." + vlm_name(n)] = p.grad.numpy()
    save(OUT, {k: np.asarray(v, dtype=np.float32) for k, v in t.items()},
         {"B": str(B), "S": str(S), "P": str(P), "W": str(W), "layers": str(LAYERS), "heads": str(HEADS), "E": str(E),
          "Q": str(Q)})
    print(f"wrote {OUT}: logits {logits.abs().max().item():.3f}, boxes mean {boxes.mean().item():.3f}", file=sys.stderr)
