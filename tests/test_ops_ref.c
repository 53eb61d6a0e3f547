// vlm's ops against PyTorch: forward outputs and input gradients of
// loss = sum(op(inputs) * R) compared with tests/fixtures/ops.safetensors,
// written by tests/reference/make_op_fixtures.py (which documents every case in
// PyTorch terms). The reference is PyTorch evaluated in float64 on the float32
// inputs and rounded once, so the errors below are vlm's own float32 errors.
//
// Error metric: tu_rel_err = max |vlm - ref| / max |ref| over the tensor.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "core/safetensors.h"
#include "losses/contrastive.h"
#include "tests/testutil.h"

#define MAXIN 4

// x: float inputs (in0..), ix: int32 inputs (they follow the float ones in the file).
typedef vlm_tensor *(*build_fn)(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix);

typedef struct {
    const char *name;
    build_fn f;
    int nf, ni;      // float inputs (all get a gradient check), int32 inputs
    double tol_out;  // max allowed tu_rel_err of the forward output
    double tol_grad; // ... of each input gradient
} rcase;

// ---- builders ----
static vlm_tensor *b_matmul(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    (void)ix;
    return vlm_op_matmul(c, x[0], x[1]);
}
static vlm_tensor *b_matmul_tt(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) { // a^T @ b^T as strided views
    (void)ix;
    return vlm_op_matmul(c, vlm_view_transpose(c, x[0], -1, -2), vlm_view_transpose(c, x[1], -1, -2));
}
static vlm_tensor *b_linear(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    (void)ix;
    return vlm_op_linear(c, x[0], x[1], x[2]);
}
static vlm_tensor *b_linear_nobias(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    (void)ix;
    return vlm_op_linear(c, x[0], x[1], NULL);
}
#define UNARY(nm, expr)                                                     \
    static vlm_tensor *nm(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {    \
        (void)ix;                                                           \
        return expr;                                                        \
    }
UNARY(b_add, vlm_op_add(c, x[0], x[1]))
UNARY(b_sub, vlm_op_sub(c, x[0], x[1]))
UNARY(b_mul, vlm_op_mul(c, x[0], x[1]))
UNARY(b_scale, vlm_op_scale(c, x[0], -1.7f))
UNARY(b_add_scalar, vlm_op_add_scalar(c, x[0], 0.75f))
UNARY(b_gelu, vlm_op_act(c, x[0], VLM_ACT_GELU))
UNARY(b_gelu_tanh, vlm_op_act(c, x[0], VLM_ACT_GELU_TANH))
UNARY(b_quick_gelu, vlm_op_act(c, x[0], VLM_ACT_QUICK_GELU))
UNARY(b_silu, vlm_op_act(c, x[0], VLM_ACT_SILU))
UNARY(b_relu, vlm_op_act(c, x[0], VLM_ACT_RELU))
UNARY(b_sigmoid, vlm_op_act(c, x[0], VLM_ACT_SIGMOID))
UNARY(b_tanh, vlm_op_act(c, x[0], VLM_ACT_TANH))
UNARY(b_exp, vlm_op_act(c, x[0], VLM_ACT_EXP))
UNARY(b_logsig, vlm_op_act(c, x[0], VLM_ACT_LOG_SIGMOID))
UNARY(b_layernorm, vlm_op_layernorm(c, x[0], x[1], x[2], 1e-5f))
UNARY(b_softmax, vlm_op_softmax(c, x[0]))
UNARY(b_log_softmax, vlm_op_log_softmax(c, x[0]))
UNARY(b_l2norm, vlm_op_l2norm(c, x[0]))
UNARY(b_attention, vlm_op_attention(c, x[0], x[1], x[2], 0, NULL))
UNARY(b_attention_causal, vlm_op_attention(c, x[0], x[1], x[2], 1, NULL))
UNARY(b_patchify, vlm_op_patchify(c, x[0], x[1], x[2]))
UNARY(b_conv2d, vlm_op_conv2d(c, x[0], x[1], x[2], 1, 1))
UNARY(b_conv2d_s2, vlm_op_conv2d(c, x[0], x[1], NULL, 2, 0))
UNARY(b_sum, vlm_op_sum(c, x[0]))
UNARY(b_mean, vlm_op_mean(c, x[0]))
UNARY(b_mean_dim, vlm_op_mean_dim(c, x[0], 1))
UNARY(b_mse, vlm_op_mse(c, x[0], x[1]))

static vlm_tensor *b_attention_pad(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    int64_t n = vlm_numel(ix[0]);
    uint8_t *pad = vlm_arena_alloc(&c->arena, (size_t)n);
    if (!pad) return NULL;
    for (int64_t i = 0; i < n; i++) pad[i] = ((const int32_t *)ix[0]->data)[i] != 0;
    return vlm_op_attention(c, x[0], x[1], x[2], 0, pad);
}

// One head-split [B, H, T, D] view of slice s (0 = q, 1 = k, 2 = v) of a fused
// [B, T, 3C] projection: strides {T*3C, D, 3C, 1}, no copy.
static vlm_tensor *qkv_view(vlm_ctx *c, vlm_tensor *x, int s, int64_t H) {
    int64_t B = x->shape[0], T = x->shape[1], C3 = x->shape[2], Cm = C3 / 3, D = Cm / H;
    vlm_tensor *v = vlm_view_slice(c, x, 2, s * Cm, Cm);
    if (!v) return NULL;
    v->ndim = 4;
    int64_t sh[4] = {B, H, T, D}, st[4] = {T * C3, D, C3, 1};
    memcpy(v->shape, sh, sizeof sh);
    memcpy(v->stride, st, sizeof st);
    return v;
}

static vlm_tensor *merge_heads(vlm_ctx *c, vlm_tensor *o) { // [B, H, T, D] (memory [B, T, H, D]) -> [B, T, H*D]
    if (!o) return NULL;
    int64_t sh[3] = {o->shape[0], o->shape[2], o->shape[1] * o->shape[3]};
    return vlm_view_reshape(c, vlm_view_transpose(c, o, 1, 2), 3, sh); // no copy
}

static vlm_tensor *b_attention_qkv(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) { // q, k, v all strided views
    (void)ix;
    return merge_heads(c, vlm_op_attention(c, qkv_view(c, x[0], 0, 3), qkv_view(c, x[0], 1, 3),
                                           qkv_view(c, x[0], 2, 3), 0, NULL));
}

static vlm_tensor *b_attention_qkv_causal(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    (void)ix;
    // q through a contiguous copy (gradient flows back through vlm_op_contiguous), k and v strided views.
    vlm_tensor *q = vlm_op_contiguous(c, qkv_view(c, x[0], 0, 3));
    return merge_heads(c, vlm_op_attention(c, q, qkv_view(c, x[0], 1, 3), qkv_view(c, x[0], 2, 3), 1, NULL));
}

static vlm_tensor *b_embedding(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) { return vlm_op_embedding(c, x[0], ix[0]); }
static vlm_tensor *b_concat(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    (void)ix;
    return vlm_op_concat(c, x, 3, 1);
}
static vlm_tensor *b_gather(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    return vlm_op_gather_rows(c, x[0], (const int32_t *)ix[0]->data);
}
static vlm_tensor *b_elu1(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    (void)ix;
    return vlm_op_act(c, x[0], VLM_ACT_ELU1);
}
static vlm_tensor *b_siglip_groups(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    return vlm_loss_siglip(c, x[0], x[1], x[2], x[3], (const int32_t *)ix[0]->data);
}
static vlm_tensor *b_ce(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    return vlm_op_cross_entropy(c, x[0], (const int32_t *)ix[0]->data, 0.0f);
}
static vlm_tensor *b_ce_ls(vlm_ctx *c, vlm_tensor **x, vlm_tensor **ix) {
    return vlm_op_cross_entropy(c, x[0], (const int32_t *)ix[0]->data, 0.1f);
}

// ---- tolerances ----
// T_EW = 1e-5 (about 80 float32 ulps of the tensor's largest value) for every
// case: elementwise ops, short reductions and these small GEMMs (K <= 64)
// round only a handful of times per element. Observed errors are <= 2.6e-7
// (about 40x below the tolerance), including the exp-heavy ones (softmax,
// attention, cross-entropy) and the longest sums (layernorm over C = 192,
// matmul_large with K = 64), so none needs the looser 1e-4 that a long float32
// GEMM sum or a cancellation through expf/logf could justify. If a case ever
// does, give it its own constant here with the reason; do not raise T_EW.
#define T_EW 1e-5

static const rcase cases[] = {
    {"matmul", b_matmul, 2, 0, T_EW, T_EW},
    {"matmul_batched", b_matmul, 2, 0, T_EW, T_EW},
    {"matmul_bcast_b", b_matmul, 2, 0, T_EW, T_EW},
    {"matmul_transposed", b_matmul_tt, 2, 0, T_EW, T_EW},
    {"matmul_large", b_matmul, 2, 0, T_EW, T_EW},
    {"linear", b_linear, 3, 0, T_EW, T_EW},
    {"linear_nobias", b_linear_nobias, 2, 0, T_EW, T_EW},
    {"add_same", b_add, 2, 0, T_EW, T_EW},
    {"add_bias_bcast", b_add, 2, 0, T_EW, T_EW},
    {"add_mid_bcast", b_add, 2, 0, T_EW, T_EW},
    {"sub_same", b_sub, 2, 0, T_EW, T_EW},
    {"sub_bias_bcast", b_sub, 2, 0, T_EW, T_EW},
    {"sub_mid_bcast", b_sub, 2, 0, T_EW, T_EW},
    {"mul_same", b_mul, 2, 0, T_EW, T_EW},
    {"mul_bias_bcast", b_mul, 2, 0, T_EW, T_EW},
    {"mul_mid_bcast", b_mul, 2, 0, T_EW, T_EW},
    {"add_bcast_left", b_add, 2, 0, T_EW, T_EW},
    {"mul_scalar_tensor", b_mul, 2, 0, T_EW, T_EW},
    {"mul_outer_bcast", b_mul, 2, 0, T_EW, T_EW},
    {"scale", b_scale, 1, 0, T_EW, T_EW},
    {"add_scalar", b_add_scalar, 1, 0, T_EW, T_EW},
    {"gelu", b_gelu, 1, 0, T_EW, T_EW},
    {"gelu_tanh", b_gelu_tanh, 1, 0, T_EW, T_EW},
    {"quick_gelu", b_quick_gelu, 1, 0, T_EW, T_EW},
    {"silu", b_silu, 1, 0, T_EW, T_EW},
    {"relu", b_relu, 1, 0, T_EW, T_EW},
    {"sigmoid", b_sigmoid, 1, 0, T_EW, T_EW},
    {"tanh", b_tanh, 1, 0, T_EW, T_EW},
    {"exp", b_exp, 1, 0, T_EW, T_EW},
    {"log_sigmoid", b_logsig, 1, 0, T_EW, T_EW},
    {"layernorm", b_layernorm, 3, 0, T_EW, T_EW},
    {"softmax", b_softmax, 1, 0, T_EW, T_EW},
    {"log_softmax", b_log_softmax, 1, 0, T_EW, T_EW},
    {"l2norm", b_l2norm, 1, 0, T_EW, T_EW},
    {"attention", b_attention, 3, 0, T_EW, T_EW},
    {"attention_causal", b_attention_causal, 3, 0, T_EW, T_EW},
    {"attention_keypad", b_attention_pad, 3, 1, T_EW, T_EW},
    {"attention_fused_qkv", b_attention_qkv, 1, 0, T_EW, T_EW},
    {"attention_fused_qkv_causal", b_attention_qkv_causal, 1, 0, T_EW, T_EW},
    {"embedding", b_embedding, 1, 1, T_EW, T_EW},
    {"patchify", b_patchify, 3, 0, T_EW, T_EW},
    {"conv2d", b_conv2d, 3, 0, T_EW, T_EW},
    {"conv2d_stride2", b_conv2d_s2, 2, 0, T_EW, T_EW},
    {"concat", b_concat, 3, 0, T_EW, T_EW},
    {"gather_rows", b_gather, 1, 1, T_EW, T_EW},
    {"sum", b_sum, 1, 0, T_EW, T_EW},
    {"mean", b_mean, 1, 0, T_EW, T_EW},
    {"mean_dim", b_mean_dim, 1, 0, T_EW, T_EW},
    {"cross_entropy", b_ce, 1, 1, T_EW, T_EW},
    {"cross_entropy_ls", b_ce_ls, 1, 1, T_EW, T_EW},
    {"cross_entropy_ls_ignore", b_ce_ls, 1, 1, T_EW, T_EW},
    {"mse", b_mse, 2, 0, T_EW, T_EW},
    {"elu1", b_elu1, 1, 0, T_EW, T_EW},
    {"siglip_groups", b_siglip_groups, 4, 1, T_EW, T_EW},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

// ---- fixture access ----
typedef struct {
    int ndim;
    int64_t shape[VLM_MAX_DIMS];
    int64_t numel;
    void *data; // malloc'd copy (the file buffer need not be aligned for floats)
} fx;

static vlm_st_file F;

static int fx_load(const char *name, vlm_dtype dt, fx *out) {
    memset(out, 0, sizeof *out);
    const vlm_st_entry *e = vlm_st_find(&F, name);
    if (!e) {
        CHECK(0, "fixture tensor '%s' missing (regenerate with tests/reference/make_op_fixtures.py)", name);
        return -1;
    }
    if (e->dtype != dt || e->ndim > VLM_MAX_DIMS) {
        CHECK(0, "fixture tensor '%s': dtype %s / ndim %d, expected %s", name, vlm_dtype_name(e->dtype), e->ndim,
              vlm_dtype_name(dt));
        return -1;
    }
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof(int64_t) * (size_t)e->ndim);
    out->numel = e->numel;
    out->data = malloc(e->end - e->begin + 1);
    if (!out->data) return -1;
    memcpy(out->data, vlm_st_data(&F, e), e->end - e->begin);
    return 0;
}

static int same_shape(int n1, const int64_t *s1, int n2, const int64_t *s2) {
    if (n1 != n2) return 0;
    for (int i = 0; i < n1; i++)
        if (s1[i] != s2[i]) return 0;
    return 1;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *s) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)s[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static vlm_ctx C;
static double worst_out = 0, worst_grad = 0;

static void run_case(const rcase *rc) {
    char nm[192];
    fx in[MAXIN], ref_g[MAXIN], ix[MAXIN], R, out;
    float *grad[MAXIN] = {0};
    int ok = 1;
    memset(in, 0, sizeof in);
    memset(ref_g, 0, sizeof ref_g);
    memset(ix, 0, sizeof ix);
    memset(&R, 0, sizeof R);
    memset(&out, 0, sizeof out);
    for (int i = 0; i < rc->nf && ok; i++) {
        snprintf(nm, sizeof nm, "%s.in%d", rc->name, i);
        ok = !fx_load(nm, VLM_F32, &in[i]);
        snprintf(nm, sizeof nm, "%s.grad%d", rc->name, i);
        ok = ok && !fx_load(nm, VLM_F32, &ref_g[i]);
        if (ok && !same_shape(in[i].ndim, in[i].shape, ref_g[i].ndim, ref_g[i].shape)) {
            CHECK(0, "%s: grad%d shape differs from in%d", rc->name, i, i);
            ok = 0;
        }
        if (ok) {
            grad[i] = calloc((size_t)in[i].numel + 1, sizeof(float));
            ok = grad[i] != NULL;
        }
    }
    for (int j = 0; j < rc->ni && ok; j++) {
        snprintf(nm, sizeof nm, "%s.in%d", rc->name, rc->nf + j);
        ok = !fx_load(nm, VLM_I32, &ix[j]);
    }
    snprintf(nm, sizeof nm, "%s.R", rc->name);
    ok = ok && !fx_load(nm, VLM_F32, &R);
    snprintf(nm, sizeof nm, "%s.out", rc->name);
    ok = ok && !fx_load(nm, VLM_F32, &out);
    // The table and the fixture must agree on the number of inputs.
    snprintf(nm, sizeof nm, "%s.in%d", rc->name, rc->nf + rc->ni);
    CHECK(!vlm_st_find(&F, nm), "%s: fixture has more inputs than the table's %d", rc->name, rc->nf + rc->ni);
    snprintf(nm, sizeof nm, "%s.grad%d", rc->name, rc->nf);
    CHECK(!vlm_st_find(&F, nm), "%s: fixture has more gradients than the table's %d", rc->name, rc->nf);

    vlm_tensor *x[MAXIN] = {0}, *xi[MAXIN] = {0}, *y = NULL, *yc = NULL, *loss = NULL;
    if (ok) {
        vlm_ctx_reset(&C);
        C.grad_enabled = 1;
        for (int i = 0; i < rc->nf; i++) x[i] = vlm_tensor_wrap(&C, VLM_F32, in[i].ndim, in[i].shape, in[i].data, grad[i]);
        for (int j = 0; j < rc->ni; j++) xi[j] = vlm_tensor_wrap(&C, VLM_I32, ix[j].ndim, ix[j].shape, ix[j].data, NULL);
        y = rc->f(&C, x, xi);
        if (!y) {
            CHECK(0, "%s: forward failed: %s", rc->name, C.err.msg);
            ok = 0;
        }
    }
    if (ok && !same_shape(y->ndim, y->shape, out.ndim, out.shape)) {
        char a[128], b[128];
        shape_str(a, sizeof a, y->ndim, y->shape);
        shape_str(b, sizeof b, out.ndim, out.shape);
        CHECK(0, "%s: output shape %s, PyTorch %s", rc->name, a, b);
        ok = 0;
    }
    if (ok && !same_shape(R.ndim, R.shape, out.ndim, out.shape)) {
        CHECK(0, "%s: R shape differs from out", rc->name);
        ok = 0;
    }
    if (ok) {
        yc = vlm_op_contiguous(&C, y);
        vlm_tensor *r = vlm_tensor_wrap(&C, VLM_F32, R.ndim, R.shape, R.data, NULL);
        loss = vlm_op_sum(&C, vlm_op_mul(&C, yc, r));
        if (!loss || vlm_backward(&C, loss) != VLM_OK) {
            CHECK(0, "%s: loss/backward failed: %s", rc->name, C.err.msg);
            ok = 0;
        }
    }
    if (ok) {
        char line[512];
        int fail = 0;
        double e = tu_rel_err(vlm_f32(yc), out.data, (long)out.numel, 1e-30);
        CHECK(tu_max_abs(out.data, (long)out.numel) > 0, "%s: reference output is all zero", rc->name);
        CHECK(e <= rc->tol_out, "%s: output rel err %.3g > %.0e", rc->name, e, rc->tol_out);
        fail |= !(e <= rc->tol_out);
        worst_out = fmax(worst_out, e / rc->tol_out);
        size_t o = (size_t)snprintf(line, sizeof line, "  %-27s out %.2e  grad", rc->name, e);
        for (int i = 0; i < rc->nf; i++) {
            double mg = tu_max_abs(ref_g[i].data, (long)ref_g[i].numel);
            CHECK(mg > 1e-6, "%s: reference gradient %d is all zero (max %.3g)", rc->name, i, mg);
            double eg = tu_rel_err(grad[i], ref_g[i].data, (long)ref_g[i].numel, 1e-30);
            CHECK(eg <= rc->tol_grad, "%s: grad%d rel err %.3g > %.0e (max |ref| %.3g)", rc->name, i, eg, rc->tol_grad,
                  mg);
            fail |= !(eg <= rc->tol_grad) || !(mg > 1e-6);
            worst_grad = fmax(worst_grad, eg / rc->tol_grad);
            if (o < sizeof line) o += (size_t)snprintf(line + o, sizeof line - o, " %.2e", eg);
        }
        if (o < sizeof line)
            snprintf(line + o, sizeof line - o, "  (tol %.0e/%.0e) %s", rc->tol_out, rc->tol_grad, fail ? "FAIL" : "ok");
        printf("%s\n", line);
    } else {
        printf("  %-27s FAIL (see above)\n", rc->name);
    }
    for (int i = 0; i < MAXIN; i++) {
        free(in[i].data);
        free(ref_g[i].data);
        free(ix[i].data);
        free(grad[i]);
    }
    free(R.data);
    free(out.data);
}

int main(void) {
    vlm_error err;
    const char *path = tu_src("tests/fixtures/ops.safetensors");
    if (vlm_st_read(&F, path, &err) != VLM_OK) {
        fprintf(stderr, "test_ops_ref: %s\n", err.msg);
        return 1;
    }
    if (vlm_ctx_init(&C, 1 << 20, 1, &err) != VLM_OK) {
        fprintf(stderr, "test_ops_ref: %s\n", err.msg);
        return 1;
    }
    // Every case in the fixture must be in the table (and vice versa, via the loads).
    const char *list = vlm_st_meta(&F, "cases");
    CHECK(list != NULL, "fixture has no 'cases' metadata");
    int n_fixture = 0;
    for (const char *p = list; p && *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        int found = 0;
        for (int i = 0; i < NCASES && !found; i++) found = strlen(cases[i].name) == len && !strncmp(cases[i].name, p, len);
        CHECK(found, "fixture case '%.*s' has no entry in test_ops_ref.c", (int)len, p);
        n_fixture++;
        p = q ? q + 1 : p + len;
    }
    CHECK(n_fixture == NCASES, "fixture has %d cases, table %d", n_fixture, NCASES);
    printf("test_ops_ref: %d cases from %s (rel err = max|vlm - torch| / max|torch|)\n", NCASES, path);
    for (int i = 0; i < NCASES; i++) run_case(&cases[i]);
    printf("worst error / tolerance: out %.3f, grad %.3f\n", worst_out, worst_grad);
    vlm_ctx_free(&C);
    vlm_st_free(&F);
    return tu_done("test_ops_ref");
}
