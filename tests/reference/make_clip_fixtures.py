"""Independent PyTorch CLIP (OpenAI's architecture, written from its published
description) used to make parity fixtures for configs other than the shared
`tiny` one, and to check itself against OpenAI's own tiny outputs first.

Run: /usr/bin/python3 tests/reference/make_clip_fixtures.py
Writes tests/fixtures/clip/openai_tiny.grads.safetensors (gradients on OpenAI's tiny
weights and batch) and tests/fixtures/clip/<name>.json, <name>.weights.safetensors, <name>.io.safetensors
in the layout of ../shared/reference/openai-clip/tiny.* (image, text, image_features,
text_features, logits_per_image, loss, grad.<param>, adamw_losses).
"""
import json
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
SHARED = os.path.join(ROOT, "..", "shared", "reference", "openai-clip")


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, w, heads, act):
        super().__init__()
        self.attn = nn.MultiheadAttention(w, heads)
        self.ln_1 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(w, 4 * w)), ("gelu", act()),
                                              ("c_proj", nn.Linear(4 * w, w))]))
        self.ln_2 = nn.LayerNorm(w)

    def forward(self, x, mask):  # x: [T, B, W]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, w, layers, heads, act):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(w, heads, act) for _ in range(layers)])

    def forward(self, x, mask=None):
        for b in self.resblocks:
            x = b(x, mask)
        return x


class Visual(nn.Module):
    def __init__(self, res, patch, w, layers, heads, out, act):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w))
        self.positional_embedding = nn.Parameter(torch.randn((res // patch) ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, layers, heads, act)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, out))

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)  # [B, N, W]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, c, act):
        super().__init__()
        self.visual = Visual(c["image_resolution"], c["vision_patch_size"], c["vision_width"], c["vision_layers"],
                             c["vision_heads"], c["embed_dim"], act)
        w = c["transformer_width"]
        self.transformer = Transformer(w, c["transformer_layers"], c["transformer_heads"], act)
        self.token_embedding = nn.Embedding(c["vocab_size"], w)
        self.positional_embedding = nn.Parameter(torch.randn(c["context_length"], w))
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.randn(w, c["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_text(self, t):
        T = t.shape[1]
        x = self.token_embedding(t) + self.positional_embedding[:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), t.argmax(-1)] @ self.text_projection

    def forward(self, image, text):
        fi, ft = self.visual(image), self.encode_text(text)
        a, b = fi / fi.norm(dim=-1, keepdim=True), ft / ft.norm(dim=-1, keepdim=True)
        logits = self.logit_scale.exp() * a @ b.t()
        lab = torch.arange(logits.shape[0])
        loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
        return fi, ft, logits, loss


def load_st(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "I32": np.int32, "I64": np.int64}[v["dtype"]]
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dt).reshape(v["shape"]).copy())
    return out


def no_decay(n, p):
    return p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n


def run(model, image, text, steps=3):
    fi, ft, logits, loss = model(image, text)
    model.zero_grad()
    loss.backward()
    out = {"image_features": fi.detach().numpy(), "text_features": ft.detach().numpy(),
           "logits_per_image": logits.detach().numpy(), "loss": loss.detach().numpy().reshape(())}
    for n, p in model.named_parameters():
        out["grad." + n] = p.grad.detach().numpy().copy()
    named = list(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": 0.2},
                             {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        l = model(image, text)[3]
        losses.append(l.item())
        l.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    losses.append(model(image, text)[3].item())
    out["adamw_losses"] = np.array(losses, dtype=np.float32)
    return out


def openai_cfg(c):
    c = dict(c)
    c["vision_heads"] = max(c["vision_width"] // 64, 1)
    return c


def self_check():
    """Our torch model must reproduce OpenAI's own tiny outputs."""
    cfg = json.load(open(os.path.join(SHARED, "tiny.json")))
    model = CLIP(openai_cfg(cfg), QuickGELU)
    w = load_st(os.path.join(SHARED, "tiny.weights.safetensors"))
    model.load_state_dict({k: v for k, v in w.items()}, strict=True)
    io = load_st(os.path.join(SHARED, "tiny.io.safetensors"))
    out = run(model, io["image"], io["text"].long())
    for k in ["image_features", "text_features", "logits_per_image", "adamw_losses"]:
        err = np.abs(out[k] - io[k].numpy()).max() / np.abs(io[k].numpy()).max()
        assert err < 1e-5, (k, err)
    ref_grads = {k: io[k].numpy() for k in out if k.startswith("grad.")}
    if all(np.abs(v).max() == 0 for v in ref_grads.values()):
        # The shared tiny.io.safetensors stores every grad.<param> as zeros, so
        # OpenAI's own gradients cannot be compared. Our model reproduces OpenAI's
        # features, logits, loss and AdamW losses above; its gradients on OpenAI's
        # tiny weights and batch become the gradient reference.
        print("note: shared tiny.io.safetensors has all-zero gradients; writing our own")
    else:
        gerr = max(np.abs(out[k] - v).max() / max(np.abs(v).max(), 1e-12) for k, v in ref_grads.items())
        assert gerr < 1e-4, gerr
    d = os.path.join(ROOT, "tests", "fixtures", "clip")
    os.makedirs(d, exist_ok=True)
    save(os.path.join(d, "openai_tiny.grads.safetensors"), {k: v for k, v in out.items() if k.startswith("grad.")},
         {"torch": torch.__version__, "source": "make_clip_fixtures.py on ../shared/reference/openai-clip/tiny.*"})
    print("self-check against OpenAI tiny: ok (features, logits, loss, AdamW losses)")


def make(name, cfg, act, schema_json, B, seed):
    torch.manual_seed(seed)
    model = CLIP(cfg, act)
    with torch.no_grad():  # non-trivial values everywhere (biases, LN affine) so every path is exercised
        for n, p in model.named_parameters():
            if n == "logit_scale":
                continue
            if "ln" in n and n.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.ndim < 2:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))
    S, V, T = cfg["image_resolution"], cfg["vocab_size"], cfg["context_length"]
    image = torch.randn(B, 3, S, S)
    text = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        L = 2 + (b * 3) % (T - 1)  # lengths vary; the last row fills the context
        L = T if b == B - 1 else L
        text[b, 0] = V - 2
        text[b, 1:L - 1] = torch.randint(1, V - 2, (L - 2,))
        text[b, L - 1] = V - 1
    weights = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    out = run(model, image, text)
    out["image"] = image.numpy()
    out["text"] = text.int().numpy()
    d = os.path.join(ROOT, "tests", "fixtures", "clip")
    os.makedirs(d, exist_ok=True)
    save(os.path.join(d, name + ".weights.safetensors"), weights)
    save(os.path.join(d, name + ".io.safetensors"), out, {"torch": torch.__version__})
    with open(os.path.join(d, name + ".json"), "w") as f:
        json.dump(schema_json, f, indent=1)
    print(name, "loss", float(out["loss"]), "adamw", out["adamw_losses"].tolist())


if __name__ == "__main__":
    torch.set_num_threads(1)
    self_check()
    # OpenAI schema: one vision head (width 64), 3 text heads, patch 4, batch 5.
    c1 = {"embed_dim": 32, "image_resolution": 16, "vision_layers": 1, "vision_width": 64, "vision_patch_size": 4,
          "context_length": 10, "vocab_size": 300, "transformer_width": 48, "transformer_heads": 3,
          "transformer_layers": 2}
    make("openai_alt", openai_cfg(c1), QuickGELU, c1, 5, 11)
    # open_clip schema with nn.GELU: 3 vision heads of width 16, patch 5, batch 6.
    oc = {"embed_dim": 24, "vision_cfg": {"image_size": 20, "patch_size": 5, "width": 48, "head_width": 16, "layers": 2},
          "text_cfg": {"context_length": 8, "vocab_size": 200, "width": 32, "heads": 2, "layers": 2}}
    c2 = {"embed_dim": 24, "image_resolution": 20, "vision_layers": 2, "vision_width": 48, "vision_patch_size": 5,
          "vision_heads": 3, "context_length": 8, "vocab_size": 200, "transformer_width": 32, "transformer_heads": 2,
          "transformer_layers": 2}
    make("openclip_gelu", c2, nn.GELU, oc, 6, 12)
