// Differentiable ops. Each takes the step context, records itself on the tape
// when a gradient must flow, and returns an arena tensor (NULL once the
// context has failed; the first error is in c->err and names op and shapes).
#ifndef VLM_CORE_OPS_H
#define VLM_CORE_OPS_H

#include "core/tensor.h"

typedef enum {
    VLM_ACT_GELU = 0,   // x * Phi(x) (erf form, nn.GELU())
    VLM_ACT_GELU_TANH,  // tanh approximation (nn.GELU(approximate="tanh"))
    VLM_ACT_QUICK_GELU, // x * sigmoid(1.702 x) (OpenAI CLIP)
    VLM_ACT_SILU,
    VLM_ACT_RELU,
    VLM_ACT_SIGMOID,
    VLM_ACT_TANH,
    VLM_ACT_EXP,
    VLM_ACT_LOG_SIGMOID, // log(sigmoid(x)), stable (SigLIP)
    VLM_ACT_ELU1,        // elu(x) + 1 > 0 (OWL-ViT's per-token logit scale)
} vlm_act;

// ---- copies and shape ----
vlm_tensor *vlm_op_contiguous(vlm_ctx *c, vlm_tensor *x);
// x contiguous -> reshape view; otherwise a contiguous copy first.
vlm_tensor *vlm_op_reshape(vlm_ctx *c, vlm_tensor *x, int ndim, const int64_t *shape);
// Concatenate n tensors of equal shape except along dim.
vlm_tensor *vlm_op_concat(vlm_ctx *c, vlm_tensor **xs, int n, int dim);
// x: [B, T, C], idx: B row indices in [0, T) -> [B, C] (class-token / EOT pooling)
vlm_tensor *vlm_op_gather_rows(vlm_ctx *c, vlm_tensor *x, const int32_t *idx);

// ---- GEMM ----
// a: [..., M, K], b: [..., K, N] or [K, N] -> [..., M, N]. Transposed views
// go to BLAS as transposes (no copy).
vlm_tensor *vlm_op_matmul(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b);
// x: [..., K], w: [N, K] (PyTorch layout), b: [N] or NULL -> [..., N]
vlm_tensor *vlm_op_linear(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b);

// ---- elementwise (numpy broadcasting) ----
vlm_tensor *vlm_op_add(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b);
vlm_tensor *vlm_op_sub(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b);
vlm_tensor *vlm_op_mul(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b);
vlm_tensor *vlm_op_scale(vlm_ctx *c, vlm_tensor *x, float s);
vlm_tensor *vlm_op_add_scalar(vlm_ctx *c, vlm_tensor *x, float s);
vlm_tensor *vlm_op_act(vlm_ctx *c, vlm_tensor *x, vlm_act act);

// ---- normalisation ----
// Over the last dim; w, b: [C] or NULL.
vlm_tensor *vlm_op_layernorm(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b, float eps);
vlm_tensor *vlm_op_softmax(vlm_ctx *c, vlm_tensor *x);     // last dim
vlm_tensor *vlm_op_log_softmax(vlm_ctx *c, vlm_tensor *x); // last dim
vlm_tensor *vlm_op_l2norm(vlm_ctx *c, vlm_tensor *x);      // x / max(||x||, 1e-12) over last dim

// ---- across processes ----
struct vlm_dist;
// x: [B, ...] (the same shape on every rank) -> [W*B, ...], rank r's rows at
// [r*B, (r+1)*B). Backward sums the output gradient over ranks and keeps this
// rank's rows (open_clip's gather_with_grad). d NULL or a world of 1: a copy.
vlm_tensor *vlm_op_all_gather(vlm_ctx *c, vlm_tensor *x, struct vlm_dist *d);

// ---- adaLN (DiT) ----
// x: [B, T, C]; shift, scale: [B, C] (unit stride in C, any row stride, e.g.
// column slices of one [B, 6C] modulation output) ->
// layernorm(x, no affine) * (1 + scale[b]) + shift[b]: [B, T, C]
vlm_tensor *vlm_op_ln_modulate(vlm_ctx *c, vlm_tensor *x, vlm_tensor *shift, vlm_tensor *scale, float eps);
// x, y: [B, T, C], gate: [B, C] (as above) -> x + gate[b] * y: [B, T, C]
vlm_tensor *vlm_op_gate_add(vlm_ctx *c, vlm_tensor *x, vlm_tensor *gate, vlm_tensor *y);

// ---- attention ----
// q: [B, H, Tq, D], k, v: [B, H, Tk, D] (any strides; the last dim must be
// unit-stride, as in head-split views of a fused qkv projection).
// key_pad: [B * Tk] bytes, nonzero = padded key (ignored) or NULL.
// Returns [B, H, Tq, D] whose memory is laid out [B, Tq, H, D], so
// transpose(1, 2) + reshape merges heads without a copy.
// A query row whose keys are all masked gets a zero output.
vlm_tensor *vlm_op_attention(vlm_ctx *c, vlm_tensor *q, vlm_tensor *k, vlm_tensor *v, int causal,
                             const uint8_t *key_pad);

// ---- lookup and convolution ----
// w: [V, C], ids: I32 [...] -> [..., C]; ids outside [0, V) are an error.
vlm_tensor *vlm_op_embedding(vlm_ctx *c, vlm_tensor *w, vlm_tensor *ids);
// x: [B, C, H, W], w: [D, C, p, p], b: [D] or NULL -> [B, (H/p)*(W/p), D]
// (kernel = stride convolution as im2col + GEMM; H, W divisible by p)
vlm_tensor *vlm_op_patchify(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b);
// x: [B, Ci, H, W], w: [Co, Ci, kh, kw], b: [Co] or NULL -> [B, Co, Ho, Wo]
vlm_tensor *vlm_op_conv2d(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b, int stride, int pad);

// ---- reductions ----
vlm_tensor *vlm_op_sum(vlm_ctx *c, vlm_tensor *x);  // -> [1]
vlm_tensor *vlm_op_mean(vlm_ctx *c, vlm_tensor *x); // -> [1]
vlm_tensor *vlm_op_mean_dim(vlm_ctx *c, vlm_tensor *x, int dim); // drops dim

// ---- losses and regularisation ----
// logits: [N, K], targets: N class ids (-100 = ignore). Mean over counted rows.
// With label smoothing ls: (1-ls) * nll + ls * mean_k(-log p_k), as PyTorch.
vlm_tensor *vlm_op_cross_entropy(vlm_ctx *c, vlm_tensor *logits, const int32_t *targets, float ls);
vlm_tensor *vlm_op_mse(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b); // mean((a-b)^2) -> [1]
// Inverted dropout; identity when !c->training or p == 0. The mask is a pure
// function of a per-call key from the context's dropout stream.
vlm_tensor *vlm_op_dropout(vlm_ctx *c, vlm_tensor *x, float p);

#endif
