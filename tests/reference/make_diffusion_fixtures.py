#!/usr/bin/python3
"""PyTorch reference for vlm's diffusion schedules and steps (tests/test_diffusion.c).

    /usr/bin/python3 tests/reference/make_diffusion_fixtures.py   # -> tests/fixtures/diffusion.safetensors

Written from the papers' formulas in torch float64, independently of the C code:
  linear  betas = torch.linspace(1e-4, 0.02, T)                      (Ho et al. 2020)
  cosine  f(t) = cos(((t/T + 0.008) / 1.008) * pi/2)^2,
          betas_t = min(1 - f(t+1)/f(t), 0.999)                      (Nichol & Dhariwal 2021)
  alphas_cumprod = cumprod(1 - betas)
  q_sample   x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps
  DDIM (eta 0) from t to t_prev: x0 = (x_t - sqrt(1-ab_t) eps) / sqrt(ab_t); x = sqrt(ab_p) x0 + sqrt(1-ab_p) eps
  min-SNR-5 weight  min(SNR_t, 5) / SNR_t, SNR_t = ab_t / (1 - ab_t)    (Hang et al. 2023)
  DDPM ancestral: mean = (x_t - beta_t / sqrt(1-ab_t) eps) / sqrt(1-beta_t), var = beta_t (1-ab_{t-1}) / (1-ab_t)

Tensors (T = 1000; n = 16 elements; float32):
  {linear,cosine}_betas [T], {linear,cosine}_alphas_cumprod [T], {linear,cosine}_min_snr5 [T],
  x0, eps, z [n]; for (schedule, t) in cases: {s}_q_t{t} [n], {s}_ddim_t{t}_p{tp} [n], {s}_ddpm_t{t} [n].
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

T = 1000
torch.manual_seed(0)


def schedules():
    lin = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    f = lambda t: torch.cos(((t / T + 0.008) / 1.008) * math.pi / 2) ** 2
    t = torch.arange(T, dtype=torch.float64)
    cos = torch.clamp(1 - f(t + 1) / f(t), max=0.999)
    return {"linear": lin, "cosine": cos}


out = {}
x0 = torch.randn(16, dtype=torch.float64).float().double()
eps = torch.randn(16, dtype=torch.float64).float().double()
z = torch.randn(16, dtype=torch.float64).float().double()
out["x0"], out["eps"], out["z"] = x0.float().numpy(), eps.float().numpy(), z.float().numpy()
cases = [(999, 979), (500, 480), (10, 0), (0, -1)]
for name, betas in schedules().items():
    ab = torch.cumprod(1 - betas, 0)
    out[f"{name}_betas"] = betas.float().numpy()
    out[f"{name}_alphas_cumprod"] = ab.float().numpy()
    snr = ab / (1 - ab)
    out[f"{name}_min_snr5"] = (torch.clamp(snr, max=5.0) / snr).float().numpy()
    for t, tp in cases:
        a = ab[t]
        out[f"{name}_q_t{t}"] = (a.sqrt() * x0 + (1 - a).sqrt() * eps).float().numpy()
        ap = ab[tp] if tp >= 0 else torch.tensor(1.0, dtype=torch.float64)
        xt = x0  # any x_t: use x0's values as the noisy input
        x0p = (xt - (1 - a).sqrt() * eps) / a.sqrt()
        out[f"{name}_ddim_t{t}_p{tp}"] = (ap.sqrt() * x0p + (1 - ap).sqrt() * eps).float().numpy()
        b = betas[t]
        mean = (xt - b / (1 - a).sqrt() * eps) / (1 - b).sqrt()
        if t > 0:
            var = b * (1 - ab[t - 1]) / (1 - a)
            mean = mean + var.sqrt() * z
        out[f"{name}_ddpm_t{t}"] = mean.float().numpy()
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "diffusion.safetensors")
st.save(path, {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}, {"T": str(T), "torch": torch.__version__})
print("wrote", os.path.normpath(path), len(out), "tensors")
