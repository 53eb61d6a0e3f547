"""PyTorch references for vlm's optimizers, clipping and schedules.

Run with Debian's torch: /usr/bin/python3 tests/reference/make_optim_fixtures.py
Writes tests/fixtures/optim.safetensors:
  init.<p>            initial parameters (w [3,4], proj.bias [4], ln_1.weight [4], logit_scale [1])
  grad.<step>.<p>     the gradient fed at each of 3 steps
  adamw.<step>.<p>    torch.optim.AdamW (lr 1e-3, betas (0.9, 0.98), eps 1e-6, wd 0.2; no decay for
                      ndim < 2 / ln / bias / logit_scale, open_clip's rule) after each step, with
                      clip_grad_norm_(max_norm=1.0) applied to the gradient first
  gradnorm.<step>     total norm returned by clip_grad_norm_
  sgd.<step>.<p>      torch.optim.SGD (lr 0.1, momentum 0.9, weight_decay 1e-2 on the decay group)
  sched.cosine / sched.const / sched.cooldown   lr at steps 0..29 (warmup 5, total 30, base 0.1;
                      cooldown: last 10 steps, power 1, end lr 0), open_clip's formulas
"""
import math
import os

import numpy as np
import torch

from st import save

torch.manual_seed(0)
names = ["w", "proj.bias", "ln_1.weight", "logit_scale"]
shapes = [(3, 4), (4,), (4,), (1,)]
init = {n: torch.randn(s) for n, s in zip(names, shapes)}
grads = [{n: torch.randn(s) * (0.5 + k) for n, s in zip(names, shapes)} for k in range(3)]
out = {f"init.{n}": init[n].numpy() for n in names}
for k in range(3):
    for n in names:
        out[f"grad.{k}.{n}"] = grads[k][n].numpy()


def no_decay(n, p):
    return p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n


def run(make_opt, tag, clip):
    params = {n: torch.nn.Parameter(init[n].clone()) for n in names}
    dec = [params[n] for n in names if not no_decay(n, params[n])]
    nod = [params[n] for n in names if no_decay(n, params[n])]
    opt = make_opt(dec, nod)
    for k in range(3):
        for n in names:
            params[n].grad = grads[k][n].clone()
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            out[f"gradnorm.{k}"] = np.array([norm.item()], dtype=np.float32)
        opt.step()
        for n in names:
            out[f"{tag}.{k}.{n}"] = params[n].detach().numpy().copy()


run(lambda d, n: torch.optim.AdamW([{"params": d, "weight_decay": 0.2}, {"params": n, "weight_decay": 0.0}],
                                   lr=1e-3, betas=(0.9, 0.98), eps=1e-6), "adamw", True)
run(lambda d, n: torch.optim.SGD([{"params": d, "weight_decay": 1e-2}, {"params": n, "weight_decay": 0.0}],
                                 lr=0.1, momentum=0.9), "sgd", False)

base, warm, total, cool = 0.1, 5, 30, 10


def warmup(step):
    return base * (step + 1) / warm


def cosine(step):
    if step < warm:
        return warmup(step)
    e, es = step - warm, total - warm
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base


def const(step):
    return warmup(step) if step < warm else base


def cooldown(step):
    if step < warm:
        return warmup(step)
    start = total - cool
    if step < start:
        return base
    e, es = step - start, total - start
    return (1 - e / es) ** 1.0 * (base - 0.0) + 0.0


for tag, fn in [("cosine", cosine), ("const", const), ("cooldown", cooldown)]:
    out[f"sched.{tag}"] = np.array([fn(s) for s in range(total)], dtype=np.float32)

here = os.path.dirname(os.path.abspath(__file__))
save(os.path.join(here, "..", "fixtures", "optim.safetensors"), out, {"torch": torch.__version__})
print("wrote", len(out), "tensors")
