#!/usr/bin/python3
"""Reference Fréchet distance for vlm_frechet_distance (tests/test_generate.c).

    /usr/bin/python3 tests/reference/make_frechet_fixtures.py   # -> tests/fixtures/frechet.safetensors

FD = |mu_a - mu_b|^2 + tr(Sa) + tr(Sb) - 2 tr((Sa Sb)^1/2) with unbiased
covariances (np.cov), computed in float64 with torch.linalg.eigh:
tr((Sa Sb)^1/2) = sum sqrt(eig(Sa^1/2 Sb Sa^1/2)) (as in the FID literature;
pytorch-fid uses scipy.linalg.sqrtm, which gives the same trace for PSD inputs).
Tensors: a [300, 24], b [200, 24] (correlated, different means), fd [1].
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.manual_seed(0)
d = 24
ma, mb = torch.randn(d, d, dtype=torch.float64), torch.randn(d, d, dtype=torch.float64) * 0.7
a = (torch.randn(300, d, dtype=torch.float64) @ ma + 0.3).float()
b = (torch.randn(200, d, dtype=torch.float64) @ mb - 0.1).float()


def moments(x):
    x = x.double()
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


mua, sa = moments(a)
mub, sb = moments(b)
w, v = torch.linalg.eigh(sa)
r = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
m = r @ sb @ r
tr = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
fd = ((mua - mub) ** 2).sum() + torch.trace(sa) + torch.trace(sb) - 2 * tr
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "frechet.safetensors")
st.save(path, {"a": a.numpy(), "b": b.numpy(), "fd": np.array([fd.item()], dtype=np.float32)},
        {"fd_float64": repr(fd.item()), "torch": torch.__version__})
print("wrote", os.path.normpath(path), "fd =", fd.item())
