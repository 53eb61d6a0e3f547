#!/usr/bin/python3
"""PyTorch reference for vlm's detection set loss (tests/test_detection_loss.c).

Run with Debian's interpreter, which has torch (the pyenv python3 on PATH does not):

    /usr/bin/python3 tests/reference/make_detection_fixtures.py   # -> tests/fixtures/detection.safetensors

The loss follows Deformable DETR / OWL-ViT, evaluated in float64 on float32 inputs
(one rounding to float32 at the end):

  matching cost  C[n, j] = 2 * focal_cost(logits[n, q_j]) + 5 * |box_n - gt_j|_1 + 2 * (-GIoU(box_n, gt_j)),
                 focal_cost(x) = a (1-p)^g (-log p) - (1-a) p^g (-log(1-p)), p = sigmoid(x), a = 0.3, g = 2;
                 solved per image by brute force over all injective token assignments
                 (scipy is not installed here; the optimum is checked to be unique);
  losses         focal = sum over valid (token, query) of a_t (1-p_t)^g BCE(x, t) / num_boxes,
                 t = 1 at (matched token, GT query); padded queries are left out;
                 l1 = sum |box - gt|_1 / num_boxes; giou = sum (1 - GIoU) / num_boxes;
                 total = 2 focal + 5 l1 + 2 giou, num_boxes = max(1, GT boxes in the batch).
  GIoU is written out by hand (torchvision may be absent; when present it is cross-checked).

Tensors (B = 3 images, N = 8 tokens, Q = 4 queries; image 1 has query 3 padded, image 2 no boxes):

  logits [B,N,Q] F32, boxes [B,N,4] F32 (cx, cy, w, h), query_valid [B,Q] I32,
  gt_count [B] I32, gt_boxes [K,4] F32, gt_query [K] I32 (images' boxes concatenated),
  match [K] I32          matched token of each GT box,
  cost0 [N, M0] F32      image 0's matching cost matrix,
  focal, l1, giou, total [1] F32, grad_logits [B,N,Q] F32, grad_boxes [B,N,4] F32 (d total),
  focal_g15 [1], focal_g15_grad [B,N,Q]: the focal op alone with alpha 0.25, gamma 1.5,
                         the matched targets and norm 2.5 (d focal / d logits).
"""
import itertools
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st  # noqa: E402

OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "detection.safetensors"))
gen = torch.Generator().manual_seed(20261127)

B, N, Q = 3, 8, 4
ALPHA, GAMMA = 0.3, 2.0
W_CLASS, W_BBOX, W_GIOU = 2.0, 5.0, 2.0


def rand(*shape):
    return torch.rand(shape, generator=gen, dtype=torch.float32)


def xyxy(b):
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def giou_pairs(a, b):
    """GIoU of matching rows of a, b (xyxy, [K, 4]); no eps, as DETR."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    lt_c = torch.minimum(a[:, :2], b[:, :2])
    rb_c = torch.maximum(a[:, 2:], b[:, 2:])
    wh_c = rb_c - lt_c
    area_c = wh_c[:, 0] * wh_c[:, 1]
    return inter / union - (area_c - union) / area_c


def focal_elem(x, t, alpha, gamma):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return alpha_t * (1 - p_t) ** gamma * ce


# ---- inputs (float32) ----
logits32 = (rand(B, N, Q) * 6 - 3).contiguous()
raw = torch.randn((B, N, 4), generator=gen, dtype=torch.float32)
boxes32 = torch.sigmoid(raw - torch.tensor([0.0, 0.0, 1.0, 1.0])).contiguous()
query_valid = torch.ones((B, Q), dtype=torch.int32)
query_valid[1, 3] = 0
gt_count = [3, 2, 0]
gt_query = torch.tensor([0, 2, 0, 1, 2], dtype=torch.int32)
K = sum(gt_count)
gt_boxes32 = torch.cat([0.2 + 0.6 * rand(K, 2), 0.05 + 0.45 * rand(K, 2)], 1).contiguous()

# ---- matching (no gradient, float64) ----
x64 = logits32.double()
b64 = boxes32.double()
g64 = gt_boxes32.double()
match = []
cost0 = None
off = 0
for b in range(B):
    M = gt_count[b]
    if M == 0:
        continue
    qs = gt_query[off:off + M].long()
    x = x64[b][:, qs]  # [N, M]
    cost_class = (ALPHA * torch.sigmoid(-x) ** GAMMA * -F.logsigmoid(x)
                  - (1 - ALPHA) * torch.sigmoid(x) ** GAMMA * -F.logsigmoid(-x))
    cost_bbox = torch.cdist(b64[b], g64[off:off + M], p=1)
    pa = xyxy(b64[b])[:, None, :].expand(N, M, 4).reshape(-1, 4)
    pg = xyxy(g64[off:off + M])[None, :, :].expand(N, M, 4).reshape(-1, 4)
    cost_giou = -giou_pairs(pa, pg).reshape(N, M)
    C = W_CLASS * cost_class + W_BBOX * cost_bbox + W_GIOU * cost_giou
    if b == 0:
        cost0 = C.clone()
    best, second, arg = float("inf"), float("inf"), None
    for perm in itertools.permutations(range(N), M):
        s = sum(C[perm[j], j].item() for j in range(M))
        if s < best:
            best, second, arg = s, best, perm
        elif s < second:
            second = s
    assert second - best > 1e-6, "matching optimum not unique"
    match.extend(arg)
    off += M
match = torch.tensor(match, dtype=torch.int64)

# ---- losses with autograd (float64) ----
x = x64.clone().requires_grad_(True)
bx = b64.clone().requires_grad_(True)
target = torch.zeros((B, N, Q), dtype=torch.float64)
img = torch.tensor([b for b in range(B) for _ in range(gt_count[b])], dtype=torch.int64)
target[img, match, gt_query.long()] = 1.0
valid = query_valid.double()[:, None, :]
num_boxes = max(1, K)
focal = (focal_elem(x, target, ALPHA, GAMMA) * valid).sum() / num_boxes
pred = bx[img, match]  # [K, 4]
l1 = (pred - g64).abs().sum() / num_boxes
giou = (1 - giou_pairs(xyxy(pred), xyxy(g64))).sum() / num_boxes
total = W_CLASS * focal + W_BBOX * l1 + W_GIOU * giou
total.backward()

try:
    import torchvision.ops as tvo
    tv = torch.diag(tvo.generalized_box_iou(xyxy(pred.detach()), xyxy(g64)))
    assert torch.allclose(tv, giou_pairs(xyxy(pred.detach()), xyxy(g64)), atol=1e-12)
except ImportError:
    pass

# ---- the focal op alone with other alpha / gamma / norm ----
x2 = x64.clone().requires_grad_(True)
focal2 = (focal_elem(x2, target, 0.25, 1.5) * valid).sum() / 2.5
focal2.backward()


def f32(t):
    return t.detach().to(torch.float32).numpy()


st.save(OUT, {
    "logits": logits32.numpy(),
    "boxes": boxes32.numpy(),
    "query_valid": query_valid.numpy(),
    "gt_count": np.array(gt_count, dtype=np.int32),
    "gt_boxes": gt_boxes32.numpy(),
    "gt_query": gt_query.numpy(),
    "match": match.to(torch.int32).numpy(),
    "cost0": f32(cost0),
    "focal": f32(focal.reshape(1)),
    "l1": f32(l1.reshape(1)),
    "giou": f32(giou.reshape(1)),
    "total": f32(total.reshape(1)),
    "grad_logits": f32(x.grad),
    "grad_boxes": f32(bx.grad),
    "focal_g15": f32(focal2.reshape(1)),
    "focal_g15_grad": f32(x2.grad),
}, metadata={"generator": "tests/reference/make_detection_fixtures.py", "torch": torch.__version__})
print(f"wrote {OUT}: match {match.tolist()}, focal {focal.item():.6f} l1 {l1.item():.6f} "
      f"giou {giou.item():.6f} total {total.item():.6f}")
