#!/usr/bin/python3
"""PyTorch reference fixtures for vlm's tensor-core ops (tests/test_ops_ref.c).

Run with Debian's interpreter, which has torch (the pyenv python3 on PATH does not):

    /usr/bin/python3 tests/reference/make_op_fixtures.py   # -> tests/fixtures/ops.safetensors

Every case NAME stores, as little-endian safetensors written by hand (struct + json):

    NAME.in0, NAME.in1, ...   inputs: F32, or I32 for ids / targets / masks
                              (integer inputs always come after the float ones)
    NAME.R                    F32 fixed random weights, shape of the output
    NAME.out                  F32 forward output, in the logical shape vlm's op returns
    NAME.grad0, NAME.grad1..  F32 d loss / d in_i for every float input, where
                              loss = sum(out * R)

Inputs and R are drawn in float32 from a fixed torch seed and stored as float32.
The reference itself (forward and autograd backward) is evaluated in float64 on
those float32 values and rounded to float32 once, so the fixture is the exact
answer up to one rounding and the C test measures vlm's own float32 error, not
the sum of vlm's and PyTorch's.

Cases, in PyTorch terms (x = in0, y = in1, ...; vlm op in brackets):

  matmul               x[5,7] @ y[7,3]                                   [vlm_op_matmul]
  matmul_batched       x[2,4,5] @ y[2,5,3]
  matmul_bcast_b       x[2,4,5] @ y[5,3]          (2-D b broadcast over the batch)
  matmul_transposed    x[2,5,4].transpose(-1,-2) @ y[2,3,5].transpose(-1,-2)
                       (vlm: vlm_view_transpose on both inputs, strided BLAS operands)
  matmul_large         x[24,64] @ y[64,40]        (goes through a real BLAS kernel)
  linear               F.linear(x[2,3,6], w[4,6], b[4])                  [vlm_op_linear]
  linear_nobias        F.linear(x[5,6], w[4,6])
  add_same             x[3,4] + y[3,4]                                   [vlm_op_add]
  add_bias_bcast       x[2,3,4] + y[4]
  add_mid_bcast        x[2,3,4] + y[2,1,4]
  add_bcast_left       x[4] + y[2,3,4]            (smaller tensor on the left)
  sub_same             x[3,4] - y[3,4]                                   [vlm_op_sub]
  sub_bias_bcast       x[2,3,4] - y[4]
  sub_mid_bcast        x[2,3,4] - y[2,1,4]
  mul_same             x[3,4] * y[3,4]                                   [vlm_op_mul]
  mul_bias_bcast       x[2,3,4] * y[4]
  mul_mid_bcast        x[2,3,4] * y[2,1,4]
  mul_scalar_tensor    x[3,4] * y[1]
  mul_outer_bcast      x[3,1] * y[1,4]            (both sides broadcast)
  scale                x[3,4] * -1.7                                     [vlm_op_scale]
  add_scalar           x[3,4] + 0.75                                     [vlm_op_add_scalar]
  gelu                 F.gelu(x[6,7]), x in [-3,3]                       [vlm_op_act, VLM_ACT_GELU]
  gelu_tanh            F.gelu(x, approximate="tanh")                     [VLM_ACT_GELU_TANH]
  quick_gelu           x * torch.sigmoid(1.702 * x)                      [VLM_ACT_QUICK_GELU]
  silu                 F.silu(x)                                         [VLM_ACT_SILU]
  relu                 F.relu(x), |x| in [0.1, 2] (no kink at 0)         [VLM_ACT_RELU]
  elu1                 F.elu(x) + 1 (OWL-ViT's logit scale)              [VLM_ACT_ELU1]
  siglip_groups        SigLIP loss, duplicate captions as positives      [vlm_loss_siglip with groups]
  sigmoid              torch.sigmoid(x)                                  [VLM_ACT_SIGMOID]
  tanh                 torch.tanh(x), x in [-2,2]                        [VLM_ACT_TANH]
  exp                  torch.exp(x), x in [-2,2]                         [VLM_ACT_EXP]
  log_sigmoid          F.logsigmoid(x), x in [-6,6]                      [VLM_ACT_LOG_SIGMOID]
  layernorm            F.layer_norm(x[2,7,192], (192,), w[192], b[192], eps=1e-5)  [vlm_op_layernorm]
  softmax              torch.softmax(x[4,9], dim=-1)                     [vlm_op_softmax]
  log_softmax          torch.log_softmax(x[4,9], dim=-1)                 [vlm_op_log_softmax]
  l2norm               F.normalize(x[3,6], dim=-1)                       [vlm_op_l2norm]
  attention            q,k,v = in0..2 [B=2,H=3,T=5,D=8];                 [vlm_op_attention]
                       torch.softmax(q @ k.transpose(-1,-2) / sqrt(D) + mask, -1) @ v
                       with mask = 0; out [2,3,5,8]
  attention_causal     same, mask[i,j] = -inf where j > i
  attention_keypad     same, in3 = I32 [B,T] key-padding mask (1 = ignore key j),
                       mask[b,:,:,j] = -inf where in3[b,j]; no row fully masked
  attention_fused_qkv  in0 = x[B=2,T=5,3C=72] (C = H*D = 24, H=3, D=8);
                       q,k,v = x.split(C, -1), each .view(B,T,H,D).transpose(1,2);
                       o = attention(q,k,v) (no mask); out = o.transpose(1,2).reshape(B,T,C)
                       (vlm: head-split views into x, heads merged without a copy)
  attention_fused_qkv_causal   same with the causal mask
  embedding            F.embedding(in1 = I32 ids[2,3], w = in0[7,5]) (repeated ids)  [vlm_op_embedding]
  patchify             F.conv2d(x[2,3,8,8], w[5,3,4,4], b[5], stride=4).flatten(2).transpose(1,2)
                       -> [2,4,5]                                        [vlm_op_patchify]
  conv2d               F.conv2d(x[2,3,6,5], w[4,3,3,3], b[4], stride=1, padding=1)  [vlm_op_conv2d]
  conv2d_stride2       F.conv2d(x[2,2,7,7], w[3,2,3,3], None, stride=2, padding=0)
  concat               torch.cat([x[2,3,4], y[2,1,4], z[2,2,4]], dim=1)  [vlm_op_concat]
  gather_rows          x[3,4,5][arange(3), in1], in1 = I32 [3]           [vlm_op_gather_rows]
  sum                  x[3,4].sum().reshape(1)                           [vlm_op_sum]
  mean                 x[3,4].mean().reshape(1)                          [vlm_op_mean]
  mean_dim             x[2,5,3].mean(dim=1)                              [vlm_op_mean_dim]
  cross_entropy        F.cross_entropy(x[6,10], in1) (mean; in1 = I32 [6] with one -100)
                                                                         [vlm_op_cross_entropy]
  cross_entropy_ls     F.cross_entropy(x[6,10], in1, label_smoothing=0.1), no ignored rows
  cross_entropy_ls_ignore  label_smoothing=0.1 and one -100 target (mean over counted rows)
  mse                  F.mse_loss(x[3,4], y[3,4]) -> [1]                 [vlm_op_mse]

Dropout is random and is covered by the finite-difference test only.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "ops.safetensors"))

gen = torch.Generator().manual_seed(20240611)


def uniform(shape, lo=-1.0, hi=1.0):
    return (lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float32)).contiguous()


def away_from_zero(shape, lo=0.1, hi=2.0):
    mag = uniform(shape, lo, hi)
    sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).to(torch.float32)
    return (mag * sign).contiguous()


tensors = {}  # name -> (dtype string, numpy array)
case_names = []


def put(name, arr, dtype):
    assert name not in tensors, name
    a = np.ascontiguousarray(arr.detach().cpu().numpy() if torch.is_tensor(arr) else arr)
    if dtype == "F32":
        a = a.astype("<f4")
        assert np.all(np.isfinite(a)), name
    else:
        a = a.astype("<i4")
    tensors[name] = (dtype, a)


def case(name, fn, floats, ints=()):
    """floats: float32 inputs (get gradients); ints: int32 inputs passed to fn after them."""
    assert name not in case_names, name
    case_names.append(name)
    xs = [t.detach().to(torch.float64).requires_grad_(True) for t in floats]
    out = fn(*xs, *ints)
    R = uniform(tuple(out.shape))
    loss = (out * R.to(torch.float64)).sum()
    grads = torch.autograd.grad(loss, xs)
    for i, t in enumerate(floats):
        put(f"{name}.in{i}", t, "F32")
    for j, t in enumerate(ints):
        put(f"{name}.in{len(floats) + j}", t, "I32")
    put(f"{name}.R", R, "F32")
    put(f"{name}.out", out, "F32")
    for i, g in enumerate(grads):
        assert g.abs().max().item() > 0, f"{name}: gradient {i} is all zero"
        put(f"{name}.grad{i}", g, "F32")


def attention(q, k, v, causal=False, key_pad=None):
    D = q.shape[-1]
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    Tq, Tk = s.shape[-2], s.shape[-1]
    mask = torch.zeros(Tq, Tk, dtype=s.dtype)
    if causal:
        mask = mask.masked_fill(torch.ones(Tq, Tk, dtype=torch.bool).triu(1), float("-inf"))
    mask = mask.expand(s.shape)
    if key_pad is not None:  # [B, Tk], True = ignore
        mask = mask.masked_fill(key_pad[:, None, None, :], float("-inf"))
    return torch.softmax(s + mask, dim=-1) @ v


def fused_qkv(x, H, causal):
    B, T, C3 = x.shape
    C = C3 // 3
    q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in x.split(C, -1))
    o = attention(q, k, v, causal=causal)
    return o.transpose(1, 2).reshape(B, T, C)


def build():
    # ---- GEMM ----
    case("matmul", lambda a, b: a @ b, [uniform((5, 7)), uniform((7, 3))])
    case("matmul_batched", lambda a, b: a @ b, [uniform((2, 4, 5)), uniform((2, 5, 3))])
    case("matmul_bcast_b", lambda a, b: a @ b, [uniform((2, 4, 5)), uniform((5, 3))])
    case("matmul_transposed", lambda a, b: a.transpose(-1, -2) @ b.transpose(-1, -2),
         [uniform((2, 5, 4)), uniform((2, 3, 5))])
    case("matmul_large", lambda a, b: a @ b, [uniform((24, 64)), uniform((64, 40))])
    case("linear", lambda x, w, b: F.linear(x, w, b), [uniform((2, 3, 6)), uniform((4, 6)), uniform((4,))])
    case("linear_nobias", lambda x, w: F.linear(x, w), [uniform((5, 6)), uniform((4, 6))])

    # ---- elementwise with broadcasting ----
    for nm, f in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)):
        case(f"{nm}_same", f, [uniform((3, 4)), uniform((3, 4))])
        case(f"{nm}_bias_bcast", f, [uniform((2, 3, 4)), uniform((4,))])
        case(f"{nm}_mid_bcast", f, [uniform((2, 3, 4)), uniform((2, 1, 4))])
    case("add_bcast_left", torch.add, [uniform((4,)), uniform((2, 3, 4))])
    case("mul_scalar_tensor", torch.mul, [uniform((3, 4)), uniform((1,))])
    case("mul_outer_bcast", torch.mul, [uniform((3, 1)), uniform((1, 4))])
    case("scale", lambda x: x * -1.7, [uniform((3, 4))])
    case("add_scalar", lambda x: x + 0.75, [uniform((3, 4))])

    # ---- activations ----
    case("gelu", F.gelu, [uniform((6, 7), -3, 3)])
    case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), [uniform((6, 7), -3, 3)])
    case("quick_gelu", lambda x: x * torch.sigmoid(1.702 * x), [uniform((6, 7), -3, 3)])
    case("silu", F.silu, [uniform((6, 7), -3, 3)])
    case("relu", F.relu, [away_from_zero((6, 7))])
    case("sigmoid", torch.sigmoid, [uniform((6, 7), -3, 3)])
    case("tanh", torch.tanh, [uniform((6, 7), -2, 2)])
    case("exp", torch.exp, [uniform((6, 7), -2, 2)])
    case("log_sigmoid", F.logsigmoid, [uniform((6, 7), -6, 6)])

    # ---- normalisation ----
    case("layernorm", lambda x, w, b: F.layer_norm(x, (192,), w, b, eps=1e-5),
         [uniform((2, 7, 192), -2, 2) + 0.5, uniform((192,), 0.5, 1.5), uniform((192,), -0.5, 0.5)])
    case("softmax", lambda x: torch.softmax(x, dim=-1), [uniform((4, 9), -2, 2)])
    case("log_softmax", lambda x: torch.log_softmax(x, dim=-1), [uniform((4, 9), -2, 2)])
    case("l2norm", lambda x: F.normalize(x, dim=-1), [uniform((3, 6), -2, 2)])

    # ---- attention ----
    B, H, T, D = 2, 3, 5, 8
    qkv = lambda: [uniform((B, H, T, D)) for _ in range(3)]
    case("attention", lambda q, k, v: attention(q, k, v), qkv())
    case("attention_causal", lambda q, k, v: attention(q, k, v, causal=True), qkv())
    pad = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 0, 0, 1]], dtype=torch.int32)
    case("attention_keypad", lambda q, k, v, p: attention(q, k, v, key_pad=p.bool()), qkv(), [pad])
    case("attention_fused_qkv", lambda x: fused_qkv(x, H, False), [uniform((B, T, 3 * H * D))])
    case("attention_fused_qkv_causal", lambda x: fused_qkv(x, H, True), [uniform((B, T, 3 * H * D))])

    # ---- lookup and convolution ----
    ids = torch.tensor([[3, 0, 3], [6, 1, 3]], dtype=torch.int32)
    case("embedding", lambda w, i: F.embedding(i.long(), w), [uniform((7, 5))], [ids])
    case("patchify", lambda x, w, b: F.conv2d(x, w, b, stride=4).flatten(2).transpose(1, 2),
         [uniform((2, 3, 8, 8)), uniform((5, 3, 4, 4)), uniform((5,))])
    case("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
         [uniform((2, 3, 6, 5)), uniform((4, 3, 3, 3)), uniform((4,))])
    case("conv2d_stride2", lambda x, w: F.conv2d(x, w, None, stride=2, padding=0),
         [uniform((2, 2, 7, 7)), uniform((3, 2, 3, 3))])

    # ---- shape ----
    case("concat", lambda a, b, c: torch.cat([a, b, c], dim=1),
         [uniform((2, 3, 4)), uniform((2, 1, 4)), uniform((2, 2, 4))])
    idx = torch.tensor([2, 0, 3], dtype=torch.int32)
    case("gather_rows", lambda x, i: x[torch.arange(x.shape[0]), i.long()], [uniform((3, 4, 5))], [idx])

    # ---- reductions ----
    case("sum", lambda x: x.sum().reshape(1), [uniform((3, 4))])
    case("mean", lambda x: x.mean().reshape(1), [uniform((3, 4))])
    case("mean_dim", lambda x: x.mean(dim=1), [uniform((2, 5, 3))])

    # ---- losses ----
    tg = torch.tensor([1, 9, -100, 0, 4, 4], dtype=torch.int32)
    tg_all = torch.tensor([1, 9, 2, 0, 4, 4], dtype=torch.int32)
    case("cross_entropy", lambda x, t: F.cross_entropy(x, t.long()).reshape(1), [uniform((6, 10), -3, 3)], [tg])
    case("cross_entropy_ls", lambda x, t: F.cross_entropy(x, t.long(), label_smoothing=0.1).reshape(1),
         [uniform((6, 10), -3, 3)], [tg_all])
    case("cross_entropy_ls_ignore", lambda x, t: F.cross_entropy(x, t.long(), label_smoothing=0.1).reshape(1),
         [uniform((6, 10), -3, 3)], [tg])
    case("mse", lambda a, b: F.mse_loss(a, b).reshape(1), [uniform((3, 4)), uniform((3, 4))])

    # ---- added later (appended, so the earlier cases keep their random draws) ----
    # OWL-ViT's per-token logit scale: elu(x) + 1
    case("elu1", lambda x: F.elu(x) + 1, [uniform((6, 7), -3, 3)])

    # SigLIP's pairwise sigmoid loss with vlm's duplicate-caption groups: the
    # label of (i, j) is +1 on the diagonal and where captions i and j are the
    # same (same group id), else -1; loss = -sum log sigmoid(z * (s x.y + b)) / B.
    def siglip(img, txt, scale, bias, groups):
        g = groups.long()
        z = torch.where((g[:, None] == g[None, :]) | torch.eye(len(g), dtype=torch.bool), 1.0, -1.0).to(img.dtype)
        logits = img @ txt.t() * scale + bias
        return (-F.logsigmoid(z * logits).sum() / img.shape[0]).reshape(1)
    groups = torch.tensor([0, 1, 2, 1, 3, 0, 4], dtype=torch.int32)
    case("siglip_groups", siglip, [uniform((7, 5)), uniform((7, 5)), uniform((1,), 5, 15), uniform((1,), -3, 0)],
         [groups])


def write_safetensors(path, items, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, (dtype, a) in items.items():
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * (-len(hj) % 8)  # pad so the data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    torch.set_num_threads(1)
    build()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    meta = {"generator": "tests/reference/make_op_fixtures.py", "torch": torch.__version__,
            "cases": ",".join(case_names)}
    write_safetensors(OUT, tensors, meta)
    size = os.path.getsize(OUT)
    print(f"wrote {OUT}: {len(case_names)} cases, {len(tensors)} tensors, {size} bytes")
    if size >= 300 * 1024:
        sys.exit("fixture file too large (limit 300 KB)")


if __name__ == "__main__":
    main()
