"""The same CLIP architecture in PyTorch, timed like `vlm bench` for a side-by-side run.

usage: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/torch_clip.py --model tiny --batch-size 64 --steps 10
                                                                  [--precision fp32|amp_bf16]
Prints one JSON line: pairs_per_s, step_ms, peak_rss_mb (ru_maxrss of this process).
amp_bf16 runs the forward pass (and so the loss) under torch.autocast("cpu", dtype=torch.bfloat16).
Presets mirror vlm's (fusion/clip.c): tiny, small. GELU (open_clip default), pre-LN blocks,
class-token pooling, EOT (argmax) pooling, symmetric InfoNCE, AdamW, grad clipping 1.0.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(embed=192, image=32, patch=4, vw=192, vl=6, vh=3, ctx=32, vocab=8192, tw=192, tl=6, th=3),
    "small": dict(embed=384, image=64, patch=8, vw=384, vl=6, vh=6, ctx=32, vocab=16384, tw=384, tl=6, th=6),
}


class Block(nn.Module):
    def __init__(self, w, h):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(w), nn.LayerNorm(w)
        self.attn = nn.MultiheadAttention(w, h, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.GELU(), nn.Linear(4 * w, w))

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class CLIP(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.conv1 = nn.Conv2d(3, p["vw"], p["patch"], p["patch"], bias=False)
        n = (p["image"] // p["patch"]) ** 2
        self.cls = nn.Parameter(torch.randn(p["vw"]) * 0.02)
        self.vpos = nn.Parameter(torch.randn(n + 1, p["vw"]) * 0.02)
        self.ln_pre, self.ln_post = nn.LayerNorm(p["vw"]), nn.LayerNorm(p["vw"])
        self.vblocks = nn.ModuleList([Block(p["vw"], p["vh"]) for _ in range(p["vl"])])
        self.vproj = nn.Parameter(torch.randn(p["vw"], p["embed"]) * 0.02)
        self.tok = nn.Embedding(p["vocab"], p["tw"])
        self.tpos = nn.Parameter(torch.randn(p["ctx"], p["tw"]) * 0.01)
        self.tblocks = nn.ModuleList([Block(p["tw"], p["th"]) for _ in range(p["tl"])])
        self.ln_final = nn.LayerNorm(p["tw"])
        self.tproj = nn.Parameter(torch.randn(p["tw"], p["embed"]) * 0.02)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_buffer("mask", torch.full((p["ctx"], p["ctx"]), float("-inf")).triu(1))

    def forward(self, img, txt):
        x = self.conv1(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.vpos
        x = self.ln_pre(x)
        for b in self.vblocks:
            x = b(x)
        fi = self.ln_post(x[:, 0]) @ self.vproj
        t = self.tok(txt) + self.tpos
        for b in self.tblocks:
            t = b(t, self.mask)
        t = self.ln_final(t)
        ft = t[torch.arange(t.shape[0]), txt.argmax(-1)] @ self.tproj
        fi, ft = F.normalize(fi, dim=-1), F.normalize(ft, dim=-1)
        logits = self.logit_scale.exp() * fi @ ft.t()
        lab = torch.arange(logits.shape[0])
        return (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "amp_bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = PRESETS[a.model]
    m = CLIP(p)
    opt = torch.optim.AdamW(m.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    B = a.batch_size
    img = torch.randn(B, 3, p["image"], p["image"])
    txt = torch.zeros(B, p["ctx"], dtype=torch.long)
    for b in range(B):
        L = 6 + torch.randint(0, p["ctx"] - 5, (1,)).item()
        txt[b, 0], txt[b, 1:L - 1], txt[b, L - 1] = p["vocab"] - 2, torch.randint(1, p["vocab"] - 3, (L - 2,)), p["vocab"] - 1
    total = 0.0
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "amp_bf16"):
            loss = m(img, txt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            m.logit_scale.clamp_(0, math.log(100))
        if s >= a.warmup:
            total += time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "pytorch " + torch.__version__, "model": a.model, "batch_size": B, "steps": a.steps,
                      "threads": a.threads, "precision": a.precision, "pairs_per_s": round(B * a.steps / total, 1),
                      "step_ms": round(1e3 * total / a.steps, 2), "peak_rss_mb": round(rss, 1),
                      "last_loss": round(loss.item(), 4)}))


if __name__ == "__main__":
    main()
