// Finite-difference checks of every op's backward: analytic gradients of
// loss = sum(op(x) * R) (R fixed random weights) against central differences,
// with a guard that each checked gradient is not all zero.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "losses/contrastive.h"
#include "tests/testutil.h"

#define MAXIN 4
typedef vlm_tensor *(*build_fn)(vlm_ctx *c, vlm_tensor **in);

typedef struct {
    const char *name;
    build_fn f;
    int nin;
    int ndim[MAXIN];
    int64_t shape[MAXIN][VLM_MAX_DIMS];
    float lo, hi;       // input range
    int no_grad_mask;   // bit i: input i gets no gradient check
} gcase;

// Relative bound on |finite difference - analytic| / max |analytic|: float32
// forward passes leave up to ~1.3e-4 of noise in the differences at these
// steps (the largest seen over all cases); 1e-3 was 2e-2 with 24 elements
// and plain central differences.
#define FD_TOL 1e-3

static vlm_ctx C;
static float *R;        // random output weights
static int64_t R_n;

static double eval(const gcase *g, float **data, float **grad, int64_t *numel, int with_grad) {
    vlm_ctx_reset(&C);
    C.grad_enabled = with_grad;
    vlm_tensor *in[MAXIN];
    for (int i = 0; i < g->nin; i++) {
        in[i] = vlm_tensor_wrap(&C, VLM_F32, g->ndim[i], g->shape[i], data[i],
                                with_grad && !(g->no_grad_mask >> i & 1) ? grad[i] : NULL);
        (void)numel;
    }
    vlm_tensor *y = g->f(&C, in);
    if (!y) {
        fprintf(stderr, "%s: forward failed: %s\n", g->name, C.err.msg);
        return NAN;
    }
    int64_t n = vlm_numel(y);
    if (n > R_n) {
        fprintf(stderr, "%s: output too large\n", g->name);
        return NAN;
    }
    vlm_tensor *r = vlm_tensor_wrap(&C, VLM_F32, y->ndim, y->shape, R, NULL);
    vlm_tensor *yc = vlm_op_contiguous(&C, y);
    vlm_tensor *loss = vlm_op_sum(&C, vlm_op_mul(&C, yc, r));
    if (!loss) {
        fprintf(stderr, "%s: loss failed: %s\n", g->name, C.err.msg);
        return NAN;
    }
    if (with_grad && vlm_backward(&C, loss) != VLM_OK) {
        fprintf(stderr, "%s: backward failed: %s\n", g->name, C.err.msg);
        return NAN;
    }
    return vlm_f32(loss)[0];
}

static void gradcheck(const gcase *g, uint64_t seed) {
    vlm_rng rng;
    vlm_rng_init(&rng, seed, 99, 0);
    float *data[MAXIN], *grad[MAXIN];
    int64_t numel[MAXIN];
    for (int i = 0; i < g->nin; i++) {
        numel[i] = 1;
        for (int d = 0; d < g->ndim[i]; d++) numel[i] *= g->shape[i][d];
        data[i] = malloc(sizeof(float) * (size_t)numel[i]);
        grad[i] = calloc((size_t)numel[i], sizeof(float));
        for (int64_t j = 0; j < numel[i]; j++) data[i][j] = g->lo + (g->hi - g->lo) * vlm_rng_uniform(&rng);
    }
    double base = eval(g, data, grad, numel, 1);
    CHECK(isfinite(base), "%s: loss not finite", g->name);
    for (int i = 0; i < g->nin && isfinite(base); i++) {
        if (g->no_grad_mask >> i & 1) continue;
        CHECK(tu_max_abs(grad[i], numel[i]) > 1e-6, "%s: gradient of input %d is all zero", g->name, i);
        // Check up to 64 random elements per input with central differences at
        // steps h and h/2, Richardson-extrapolated ((4 D(h/2) - D(h)) / 3 cancels
        // the h^2 term), so what is left is float32 rounding in the forward.
        double max_err = 0, max_g = tu_max_abs(grad[i], numel[i]);
        int checks = numel[i] < 64 ? (int)numel[i] : 64;
        for (int k = 0; k < checks; k++) {
            int64_t j = numel[i] <= 64 ? k : (int64_t)vlm_rng_below(&rng, (uint64_t)numel[i]);
            float save = data[i][j], h = 1e-2f * fmaxf(1.0f, fabsf(save));
            double d[2];
            for (int q = 0; q < 2; q++) {
                float hq = q ? h / 2 : h;
                data[i][j] = save + hq;
                double lp = eval(g, data, grad, numel, 0);
                data[i][j] = save - hq;
                double lm = eval(g, data, grad, numel, 0);
                d[q] = (lp - lm) / ((double)(save + hq) - (double)(save - hq)); // the steps as actually taken
            }
            data[i][j] = save;
            double fd = (4 * d[1] - d[0]) / 3;
            double e = fabs(fd - grad[i][j]);
            if (e > max_err) max_err = e;
        }
        double rel = max_err / fmax(max_g, 1e-3);
        CHECK(rel < FD_TOL, "%s: input %d: max |fd - analytic| = %.3g (rel %.3g, max grad %.3g)", g->name, i, max_err, rel,
              max_g);
        if (rel < FD_TOL) printf("  %-22s input %d ok (rel err %.2e)\n", g->name, i, rel);
    }
    for (int i = 0; i < g->nin; i++) {
        free(data[i]);
        free(grad[i]);
    }
}

// ---- op builders ----
static vlm_tensor *b_matmul(vlm_ctx *c, vlm_tensor **x) { return vlm_op_matmul(c, x[0], x[1]); }
static vlm_tensor *b_matmul_tt(vlm_ctx *c, vlm_tensor **x) { // transposed views on both sides
    return vlm_op_matmul(c, vlm_view_transpose(c, x[0], -1, -2), vlm_view_transpose(c, x[1], -1, -2));
}
static vlm_tensor *b_matmul_bcast(vlm_ctx *c, vlm_tensor **x) { return vlm_op_matmul(c, x[0], x[1]); }
static vlm_tensor *b_linear(vlm_ctx *c, vlm_tensor **x) { return vlm_op_linear(c, x[0], x[1], x[2]); }
static vlm_tensor *b_linear_nobias(vlm_ctx *c, vlm_tensor **x) { return vlm_op_linear(c, x[0], x[1], NULL); }
static vlm_tensor *b_add(vlm_ctx *c, vlm_tensor **x) { return vlm_op_add(c, x[0], x[1]); }
static vlm_tensor *b_sub(vlm_ctx *c, vlm_tensor **x) { return vlm_op_sub(c, x[0], x[1]); }
static vlm_tensor *b_mul(vlm_ctx *c, vlm_tensor **x) { return vlm_op_mul(c, x[0], x[1]); }
// A world of one: the gather is a copy and its backward the identity (the
// cross-rank sum is checked under mpirun by test_mpi_pretrain).
static vlm_tensor *b_all_gather(vlm_ctx *c, vlm_tensor **x) {
    vlm_tensor *g = vlm_op_all_gather(c, x[0], NULL);
    return vlm_op_mul(c, g, g);
}
// Rows 2..3 of a global batch of 4 (rank 1 of 2), with one duplicate caption.
static const int32_t local_groups[4] = {0, 1, 2, 0};
static vlm_tensor *b_clip_local(vlm_ctx *c, vlm_tensor **x) { return vlm_loss_clip_local(c, x[0], x[1], 2, local_groups); }
static vlm_tensor *b_siglip_local(vlm_ctx *c, vlm_tensor **x) {
    int64_t one = 1;
    static float sc = 3.0f, bi = -1.0f;
    vlm_tensor *scale = vlm_tensor_wrap(c, VLM_F32, 0, &one, &sc, NULL), *bias = vlm_tensor_wrap(c, VLM_F32, 0, &one, &bi, NULL);
    return vlm_loss_siglip_local(c, x[0], x[1], scale, bias, 2, local_groups);
}
static vlm_tensor *b_scale(vlm_ctx *c, vlm_tensor **x) { return vlm_op_scale(c, x[0], -1.7f); }
static vlm_tensor *b_add_scalar(vlm_ctx *c, vlm_tensor **x) { return vlm_op_mul(c, vlm_op_add_scalar(c, x[0], 0.5f), x[0]); }
#define ACT(nm, A) static vlm_tensor *nm(vlm_ctx *c, vlm_tensor **x) { return vlm_op_act(c, x[0], A); }
ACT(b_gelu, VLM_ACT_GELU)
ACT(b_gelu_tanh, VLM_ACT_GELU_TANH)
ACT(b_quick_gelu, VLM_ACT_QUICK_GELU)
ACT(b_silu, VLM_ACT_SILU)
ACT(b_relu, VLM_ACT_RELU)
ACT(b_sigmoid, VLM_ACT_SIGMOID)
ACT(b_tanh, VLM_ACT_TANH)
ACT(b_exp, VLM_ACT_EXP)
ACT(b_logsig, VLM_ACT_LOG_SIGMOID)
ACT(b_elu1, VLM_ACT_ELU1)
static vlm_tensor *b_layernorm(vlm_ctx *c, vlm_tensor **x) { return vlm_op_layernorm(c, x[0], x[1], x[2], 1e-5f); }
static vlm_tensor *b_ln_modulate(vlm_ctx *c, vlm_tensor **x) { return vlm_op_ln_modulate(c, x[0], x[1], x[2], 1e-6f); }
// shift/scale/gate as column slices of one [B, 3C] modulation output (DiT's chunk)
static vlm_tensor *b_adaln_slices(vlm_ctx *c, vlm_tensor **x) {
    int64_t C = x[0]->shape[2];
    vlm_tensor *h = vlm_op_ln_modulate(c, x[0], vlm_view_slice(c, x[1], 1, 0, C), vlm_view_slice(c, x[1], 1, C, C), 1e-6f);
    return vlm_op_gate_add(c, x[0], vlm_view_slice(c, x[1], 1, 2 * C, C), vlm_op_act(c, h, VLM_ACT_TANH));
}
static vlm_tensor *b_gate_add(vlm_ctx *c, vlm_tensor **x) { return vlm_op_gate_add(c, x[0], x[1], x[2]); }
static vlm_tensor *b_softmax(vlm_ctx *c, vlm_tensor **x) { return vlm_op_softmax(c, x[0]); }
static vlm_tensor *b_log_softmax(vlm_ctx *c, vlm_tensor **x) { return vlm_op_log_softmax(c, x[0]); }
static vlm_tensor *b_l2norm(vlm_ctx *c, vlm_tensor **x) { return vlm_op_l2norm(c, x[0]); }
static vlm_tensor *split_heads(vlm_ctx *c, vlm_tensor *x, int64_t H) { // [B, T, H*D] -> [B, H, T, D] view
    int64_t sh[4] = {x->shape[0], x->shape[1], H, x->shape[2] / H};
    return vlm_view_transpose(c, vlm_view_reshape(c, x, 4, sh), 1, 2);
}
static vlm_tensor *b_attention(vlm_ctx *c, vlm_tensor **x) {
    return vlm_op_attention(c, split_heads(c, x[0], 2), split_heads(c, x[1], 2), split_heads(c, x[2], 2), 0, NULL);
}
static vlm_tensor *b_attention_causal(vlm_ctx *c, vlm_tensor **x) {
    return vlm_op_attention(c, split_heads(c, x[0], 2), split_heads(c, x[1], 2), split_heads(c, x[2], 2), 1, NULL);
}
static vlm_tensor *b_attention_pad(vlm_ctx *c, vlm_tensor **x) {
    static const uint8_t pad[2 * 5] = {0, 0, 0, 1, 1, 0, 0, 0, 0, 1};
    return vlm_op_attention(c, split_heads(c, x[0], 2), split_heads(c, x[1], 2), split_heads(c, x[2], 2), 0, pad);
}
static vlm_tensor *b_attention_qkv(vlm_ctx *c, vlm_tensor **x) { // fused qkv slices, as the transformer block does
    int64_t C3 = x[0]->shape[2], Cm = C3 / 3;
    vlm_tensor *q = vlm_view_slice(c, x[0], 2, 0, Cm), *k = vlm_view_slice(c, x[0], 2, Cm, Cm),
               *v = vlm_view_slice(c, x[0], 2, 2 * Cm, Cm);
    int64_t sh[4] = {x[0]->shape[0], x[0]->shape[1], 2, Cm / 2};
    q = vlm_view_transpose(c, vlm_view_reshape(c, vlm_op_contiguous(c, q), 4, sh), 1, 2);
    (void)sh;
    // k and v stay strided views into x (no copy): exercise that path too.
    vlm_tensor *kk = vlm_view(c, k), *vv = vlm_view(c, v);
    kk->ndim = vv->ndim = 4;
    int64_t B = x[0]->shape[0], T = x[0]->shape[1], D = Cm / 2;
    int64_t shp[4] = {B, 2, T, D}, st[4] = {T * C3, D, C3, 1};
    memcpy(kk->shape, shp, sizeof shp);
    memcpy(vv->shape, shp, sizeof shp);
    memcpy(kk->stride, st, sizeof st);
    memcpy(vv->stride, st, sizeof st);
    vlm_tensor *o = vlm_op_attention(c, q, kk, vv, 1, NULL);
    int64_t osh[3] = {B, T, Cm};
    return vlm_view_reshape(c, vlm_view_transpose(c, o, 1, 2), 3, osh); // heads merged without a copy
}
static vlm_tensor *b_embedding(vlm_ctx *c, vlm_tensor **x) {
    static int32_t ids[6] = {3, 0, 3, 6, 1, 2};
    int64_t sh[2] = {2, 3};
    return vlm_op_embedding(c, x[0], vlm_tensor_wrap(c, VLM_I32, 2, sh, ids, NULL));
}
static vlm_tensor *b_patchify(vlm_ctx *c, vlm_tensor **x) { return vlm_op_patchify(c, x[0], x[1], x[2]); }
static vlm_tensor *b_conv2d(vlm_ctx *c, vlm_tensor **x) { return vlm_op_conv2d(c, x[0], x[1], x[2], 1, 1); }
static vlm_tensor *b_conv2d_s2(vlm_ctx *c, vlm_tensor **x) { return vlm_op_conv2d(c, x[0], x[1], NULL, 2, 0); }
static vlm_tensor *b_concat(vlm_ctx *c, vlm_tensor **x) {
    vlm_tensor *xs[2] = {x[0], x[1]};
    return vlm_op_concat(c, xs, 2, 1);
}
static vlm_tensor *b_slice_contig(vlm_ctx *c, vlm_tensor **x) { // slice + permute views
    int perm[3] = {2, 0, 1};
    return vlm_op_contiguous(c, vlm_view_permute(c, vlm_view_slice(c, x[0], 1, 1, 2), perm));
}
static vlm_tensor *b_gather(vlm_ctx *c, vlm_tensor **x) {
    static const int32_t idx[3] = {2, 0, 3};
    return vlm_op_gather_rows(c, x[0], idx);
}
static vlm_tensor *b_sum(vlm_ctx *c, vlm_tensor **x) { return vlm_op_sum(c, vlm_op_mul(c, x[0], x[0])); }
static vlm_tensor *b_mean(vlm_ctx *c, vlm_tensor **x) { return vlm_op_mean(c, vlm_op_mul(c, x[0], x[0])); }
static vlm_tensor *b_mean_dim(vlm_ctx *c, vlm_tensor **x) { return vlm_op_mean_dim(c, x[0], 1); }
static vlm_tensor *b_ce(vlm_ctx *c, vlm_tensor **x) {
    static const int32_t t[4] = {1, 4, -100, 0};
    return vlm_op_cross_entropy(c, x[0], t, 0.0f);
}
static vlm_tensor *b_ce_ls(vlm_ctx *c, vlm_tensor **x) {
    static const int32_t t[4] = {1, 4, 2, 0};
    return vlm_op_cross_entropy(c, x[0], t, 0.1f);
}
static vlm_tensor *b_mse(vlm_ctx *c, vlm_tensor **x) { return vlm_op_mse(c, x[0], x[1]); }
static vlm_tensor *b_dropout(vlm_ctx *c, vlm_tensor **x) {
    // Same mask for every evaluation: reset the dropout stream each time.
    vlm_rng_init(&c->dropout_rng, 7, VLM_RNG_DROPOUT, 0);
    return vlm_op_dropout(c, x[0], 0.3f);
}

int main(void) {
    vlm_error err;
    if (vlm_ctx_init(&C, 1 << 20, 1, &err)) return 1;
    R_n = 1 << 16;
    R = malloc(sizeof(float) * (size_t)R_n);
    vlm_rng rr;
    vlm_rng_init(&rr, 42, 98, 0);
    for (int64_t i = 0; i < R_n; i++) R[i] = vlm_rng_uniform(&rr) * 2 - 1;

    const gcase cases[] = {
        {"matmul", b_matmul, 2, {2, 2}, {{5, 7}, {7, 3}}, -1, 1, 0},
        {"matmul_batched", b_matmul, 2, {3, 3}, {{2, 4, 5}, {2, 5, 3}}, -1, 1, 0},
        {"matmul_transposed", b_matmul_tt, 2, {3, 3}, {{2, 5, 4}, {2, 3, 5}}, -1, 1, 0},
        {"matmul_bcast_b", b_matmul_bcast, 2, {3, 2}, {{2, 4, 5}, {5, 3}}, -1, 1, 0},
        {"linear", b_linear, 3, {3, 2, 1}, {{2, 3, 6}, {4, 6}, {4}}, -1, 1, 0},
        {"linear_nobias", b_linear_nobias, 2, {2, 2}, {{5, 6}, {4, 6}}, -1, 1, 0},
        {"add_same", b_add, 2, {2, 2}, {{3, 4}, {3, 4}}, -1, 1, 0},
        {"add_bias_bcast", b_add, 2, {3, 1}, {{2, 3, 4}, {4}}, -1, 1, 0},
        {"add_mid_bcast", b_add, 2, {3, 3}, {{2, 3, 4}, {2, 1, 4}}, -1, 1, 0},
        {"sub_bcast", b_sub, 2, {2, 2}, {{3, 4}, {3, 1}}, -1, 1, 0},
        {"mul_same", b_mul, 2, {2, 2}, {{3, 4}, {3, 4}}, -1, 1, 0},
        {"mul_scalar_tensor", b_mul, 2, {2, 1}, {{3, 4}, {1}}, -1, 1, 0},
        {"scale", b_scale, 1, {2}, {{3, 4}}, -1, 1, 0},
        {"add_scalar", b_add_scalar, 1, {2}, {{3, 4}}, -1, 1, 0},
        {"gelu", b_gelu, 1, {2}, {{4, 5}}, -3, 3, 0},
        {"gelu_tanh", b_gelu_tanh, 1, {2}, {{4, 5}}, -3, 3, 0},
        {"quick_gelu", b_quick_gelu, 1, {2}, {{4, 5}}, -3, 3, 0},
        {"silu", b_silu, 1, {2}, {{4, 5}}, -3, 3, 0},
        {"relu", b_relu, 1, {2}, {{4, 5}}, 0.1f, 2, 0},
        {"sigmoid", b_sigmoid, 1, {2}, {{4, 5}}, -3, 3, 0},
        {"tanh", b_tanh, 1, {2}, {{4, 5}}, -2, 2, 0},
        {"exp", b_exp, 1, {2}, {{4, 5}}, -2, 2, 0},
        {"log_sigmoid", b_logsig, 1, {2}, {{4, 5}}, -4, 4, 0},
        {"elu1", b_elu1, 1, {2}, {{4, 5}}, -3, 3, 0},
        {"layernorm", b_layernorm, 3, {3, 1, 1}, {{2, 3, 8}, {8}, {8}}, -2, 2, 0},
        {"ln_modulate", b_ln_modulate, 3, {3, 2, 2}, {{2, 3, 8}, {2, 8}, {2, 8}}, -2, 2, 0},
        {"adaln_slices", b_adaln_slices, 2, {3, 2}, {{2, 3, 8}, {2, 24}}, -2, 2, 0},
        {"gate_add", b_gate_add, 3, {3, 2, 3}, {{2, 3, 8}, {2, 8}, {2, 3, 8}}, -2, 2, 0},
        {"softmax", b_softmax, 1, {2}, {{3, 6}}, -2, 2, 0},
        {"log_softmax", b_log_softmax, 1, {2}, {{3, 6}}, -2, 2, 0},
        {"l2norm", b_l2norm, 1, {2}, {{3, 6}}, -2, 2, 0},
        {"attention", b_attention, 3, {3, 3, 3}, {{2, 5, 8}, {2, 5, 8}, {2, 5, 8}}, -1, 1, 0},
        {"attention_causal", b_attention_causal, 3, {3, 3, 3}, {{2, 5, 8}, {2, 5, 8}, {2, 5, 8}}, -1, 1, 0},
        {"attention_keypad", b_attention_pad, 3, {3, 3, 3}, {{2, 5, 8}, {2, 5, 8}, {2, 5, 8}}, -1, 1, 0},
        {"attention_fused_qkv", b_attention_qkv, 1, {3}, {{2, 4, 24}}, -1, 1, 0},
        {"embedding", b_embedding, 1, {2}, {{7, 5}}, -1, 1, 0},
        {"patchify", b_patchify, 3, {4, 4, 1}, {{2, 3, 8, 8}, {5, 3, 4, 4}, {5}}, -1, 1, 0},
        {"conv2d", b_conv2d, 3, {4, 4, 1}, {{2, 3, 6, 5}, {4, 3, 3, 3}, {4}}, -1, 1, 0},
        {"conv2d_stride2", b_conv2d_s2, 2, {4, 4}, {{2, 2, 7, 7}, {3, 2, 3, 3}}, -1, 1, 0},
        {"concat", b_concat, 2, {3, 3}, {{2, 3, 4}, {2, 2, 4}}, -1, 1, 0},
        {"slice_permute", b_slice_contig, 1, {3}, {{2, 4, 3}}, -1, 1, 0},
        {"gather_rows", b_gather, 1, {3}, {{3, 4, 5}}, -1, 1, 0},
        {"sum", b_sum, 1, {2}, {{3, 4}}, -1, 1, 0},
        {"mean", b_mean, 1, {2}, {{3, 4}}, -1, 1, 0},
        {"mean_dim", b_mean_dim, 1, {3}, {{2, 5, 3}}, -1, 1, 0},
        {"cross_entropy", b_ce, 1, {2}, {{4, 6}}, -2, 2, 0},
        {"cross_entropy_ls", b_ce_ls, 1, {2}, {{4, 6}}, -2, 2, 0},
        {"mse", b_mse, 2, {2, 2}, {{3, 4}, {3, 4}}, -1, 1, 0},
        {"dropout", b_dropout, 1, {2}, {{8, 8}}, -1, 1, 0},
        {"all_gather", b_all_gather, 1, {2}, {{3, 4}}, -1, 1, 0},
        {"clip_loss_local", b_clip_local, 2, {2, 2}, {{2, 4}, {2, 4}}, -2, 2, 0},
        {"siglip_loss_local", b_siglip_local, 2, {2, 2}, {{2, 3}, {4, 3}}, -1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) gradcheck(&cases[i], 1000 + i);

    // The data-parallel losses: the mean of the two "ranks'" local losses is
    // the global-batch loss (InfoNCE with a duplicate caption, and SigLIP).
    {
        float li[16], lt[16];
        for (int i = 0; i < 16; i++) li[i] = R[i] * 3;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) lt[i * 4 + j] = li[j * 4 + i]; // texts vs images = transpose
        int64_t sh[2] = {4, 4}, hs[2] = {2, 4};
        vlm_ctx_reset(&C);
        C.grad_enabled = 0;
        vlm_tensor *full = vlm_loss_clip(&C, vlm_tensor_wrap(&C, VLM_F32, 2, sh, li, NULL), local_groups);
        double parts = 0;
        for (int r = 0; r < 2; r++) {
            vlm_tensor *l = vlm_loss_clip_local(&C, vlm_tensor_wrap(&C, VLM_F32, 2, hs, li + 8 * r, NULL),
                                                vlm_tensor_wrap(&C, VLM_F32, 2, hs, lt + 8 * r, NULL), 2 * r, local_groups);
            parts += l ? vlm_f32(l)[0] / 2 : NAN;
        }
        CHECK(full && fabs(vlm_f32(full)[0] - parts) < 1e-5, "clip loss: global %.7f vs mean of local %.7f",
              full ? vlm_f32(full)[0] : NAN, parts);
        float img[12], txt[12], sc = 2.0f, bi = -0.5f;
        for (int i = 0; i < 12; i++) img[i] = R[100 + i], txt[i] = R[200 + i];
        int64_t e4[2] = {4, 3}, e2[2] = {2, 3}, one = 1;
        vlm_tensor *scale = vlm_tensor_wrap(&C, VLM_F32, 0, &one, &sc, NULL), *bias = vlm_tensor_wrap(&C, VLM_F32, 0, &one, &bi, NULL);
        vlm_tensor *t4 = vlm_tensor_wrap(&C, VLM_F32, 2, e4, txt, NULL);
        vlm_tensor *sf = vlm_loss_siglip(&C, vlm_tensor_wrap(&C, VLM_F32, 2, e4, img, NULL), t4, scale, bias, local_groups);
        parts = 0;
        for (int r = 0; r < 2; r++) {
            vlm_tensor *l = vlm_loss_siglip_local(&C, vlm_tensor_wrap(&C, VLM_F32, 2, e2, img + 6 * r, NULL), t4, scale, bias,
                                                  2 * r, local_groups);
            parts += l ? vlm_f32(l)[0] / 2 : NAN;
        }
        CHECK(sf && fabs(vlm_f32(sf)[0] - parts) < 1e-5, "siglip loss: global %.7f vs mean of local %.7f",
              sf ? vlm_f32(sf)[0] : NAN, parts);
        C.grad_enabled = 1;
    }
    free(R);
    vlm_ctx_free(&C);
    return tu_done("test_ops_grad");
}
