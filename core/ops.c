// Elementwise, normalisation, reduction, lookup, shape and loss ops with
// their backward passes. Inputs that are strided views are made contiguous
// first (recorded, so their gradients flow) unless the op handles strides.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/fastmath.h"
#include "core/isa_internal.h"
#include "core/ops_internal.h"

// ---- helpers ------------------------------------------------------------------
int vlm_check_f32(vlm_ctx *c, const char *op, const vlm_tensor *x, const char *what) {
    if (c->status != VLM_OK) return 0;
    if (!x) {
        vlm_ctx_fail(c, VLM_ERR_ARG, "%s: %s is NULL", op, what);
        return 0;
    }
    if (x->dtype != VLM_F32) {
        vlm_ctx_fail(c, VLM_ERR_ARG, "%s: %s has dtype %s, expected F32", op, what, vlm_dtype_name(x->dtype));
        return 0;
    }
    return 1;
}

vlm_tensor *vlm_out(vlm_ctx *c, int ndim, const int64_t *shape, int grad) {
    return vlm_tensor_new(c, VLM_F32, ndim, shape, grad);
}

float *vlm_scratch(vlm_ctx *c, int64_t n) {
    if (c->status != VLM_OK) return NULL;
    float *p = vlm_arena_alloc(&c->arena, sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory for %lld floats", (long long)n);
    return p;
}

// OpenMP's reduction clause combines thread partials in arrival order, so a
// float sum could differ between runs; these sums keep one partial per thread
// (static schedule: fixed chunks) and add them in thread order instead.
#define VLM_MAX_THREADS 256
#define DET_SUM(total, n, i, expr)                                         \
    do {                                                                   \
        double part_[VLM_MAX_THREADS] = {0};                               \
        _Pragma("omp parallel") {                                          \
            double acc_ = 0;                                               \
            _Pragma("omp for schedule(static)") for (int64_t i = 0; i < (n); i++) acc_ += (expr); \
            part_[vlm_thread_id() % VLM_MAX_THREADS] += acc_;              \
        }                                                                  \
        total = 0;                                                         \
        for (int t_ = 0; t_ < VLM_MAX_THREADS; t_++) total += part_[t_];   \
    } while (0)

vlm_tensor *vlm_ensure_contig(vlm_ctx *c, vlm_tensor *x) {
    if (!x || c->status != VLM_OK) return NULL;
    return vlm_is_contiguous(x) ? x : vlm_op_contiguous(c, x);
}

// Linear index i of a contiguous tensor of shape t->shape -> element offset in t.
static inline int64_t strided_off(const vlm_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t id = i % t->shape[d];
        i /= t->shape[d];
        off += id * t->stride[d];
    }
    return off;
}

// ---- contiguous / reshape -----------------------------------------------------------
static void contiguous_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    int64_t N = vlm_numel(y), inner = x->shape[x->ndim - 1], is = x->stride[x->ndim - 1];
    (void)c;
    // Rows are distinct in x unless x has stride-0 (broadcast) dims; views made
    // here never do, so rows can run in parallel.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N / inner; r++) {
        float *dst = x->grad + strided_off(x, r * inner);
        const float *src = y->grad + r * inner;
        for (int64_t j = 0; j < inner; j++) dst[j * is] += src[j];
    }
}

vlm_tensor *vlm_op_contiguous(vlm_ctx *c, vlm_tensor *x) {
    if (!x || c->status != VLM_OK) return NULL;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_tensor_new(c, x->dtype, x->ndim, x->shape, g);
    if (!y) return NULL;
    int64_t N = vlm_numel(y);
    if (N == 0) return y;
    size_t es = vlm_dtype_size(x->dtype);
    int64_t inner = x->ndim ? x->shape[x->ndim - 1] : 1, is = x->ndim ? x->stride[x->ndim - 1] : 1;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N / inner; r++) {
        const char *src = (const char *)x->data + (size_t)strided_off(x, r * inner) * es;
        char *dst = (char *)y->data + (size_t)(r * inner) * es;
        if (is == 1)
            memcpy(dst, src, es * (size_t)inner);
        else
            for (int64_t j = 0; j < inner; j++) memcpy(dst + (size_t)j * es, src + (size_t)(j * is) * es, es);
    }
    if (g) vlm_record(c, "contiguous", y, contiguous_backward, x, NULL, NULL, NULL);
    return y;
}

vlm_tensor *vlm_op_reshape(vlm_ctx *c, vlm_tensor *x, int ndim, const int64_t *shape) {
    x = vlm_ensure_contig(c, x);
    return vlm_view_reshape(c, x, ndim, shape);
}

// ---- broadcast binary ops -------------------------------------------------------------
enum { BIN_ADD, BIN_SUB, BIN_MUL };

typedef struct {
    int nd;
    int64_t shape[VLM_MAX_DIMS], sa[VLM_MAX_DIMS], sb[VLM_MAX_DIMS]; // output shape, input strides (0 = broadcast)
} bcast;

static int make_bcast(const vlm_tensor *a, const vlm_tensor *b, bcast *bc) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    bc->nd = nd;
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        if (ea != eb && ea != 1 && eb != 1) return 0;
        bc->shape[d] = ea > eb ? ea : eb;
        if (ea == 0 || eb == 0) bc->shape[d] = 0;
        bc->sa[d] = (da >= 0 && ea != 1) ? a->stride[da] : 0;
        bc->sb[d] = (db >= 0 && eb != 1) ? b->stride[db] : 0;
    }
    return 1;
}

static inline void bc_offsets(const bcast *bc, int64_t i, int64_t *oa, int64_t *ob) {
    int64_t a = 0, b = 0;
    for (int d = bc->nd - 1; d >= 0; d--) {
        int64_t id = i % bc->shape[d];
        i /= bc->shape[d];
        a += id * bc->sa[d];
        b += id * bc->sb[d];
    }
    *oa = a;
    *ob = b;
}

// Whether the operand with broadcast strides sx reads element i % n for every
// output index i: it covers the output's trailing dims contiguously and
// repeats over the leading ones (n = output size: a full contiguous operand).
static int trailing_bcast(const bcast *bc, const int64_t *sx, int64_t n) {
    int64_t acc = 1;
    for (int d = bc->nd - 1; d >= 0; d--) {
        if (bc->shape[d] == 1) continue;
        if (acc < n) {
            if (sx[d] != acc) return 0;
            acc *= bc->shape[d];
        } else if (sx[d] != 0)
            return 0;
    }
    return acc == n;
}

// 1: a full and b repeated every nb elements; 2: the reverse; 0: neither.
static int repeat_kind(const bcast *bc, int64_t N, int64_t na, int64_t nb) {
    if (N == 0 || na == 0 || nb == 0) return 0;
    if (trailing_bcast(bc, bc->sa, N) && trailing_bcast(bc, bc->sb, nb)) return 1;
    if (trailing_bcast(bc, bc->sb, N) && trailing_bcast(bc, bc->sa, na)) return 2;
    return 0;
}

static void binary_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    int op = (int)n->i[0];
    bcast *bc = n->saved;
    int64_t N = vlm_numel(y);
    const float *g = y->grad, *ad = vlm_f32(a), *bd = vlm_f32(b);
    (void)c;
    int same = vlm_numel(a) == N && vlm_numel(b) == N && vlm_is_contiguous(a) && vlm_is_contiguous(b);
    if (same) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            float gi = g[i];
            if (a->requires_grad) a->grad[i] += op == BIN_MUL ? gi * bd[i] : gi;
            if (b->requires_grad) b->grad[i] += op == BIN_MUL ? gi * ad[i] : (op == BIN_SUB ? -gi : gi);
        }
        return;
    }
    int kind = repeat_kind(bc, N, vlm_numel(a), vlm_numel(b));
    if (kind) { // one operand full, the other repeated every n elements
        vlm_tensor *f = kind == 1 ? a : b, *r = kind == 1 ? b : a;
        const float *fd = vlm_f32(f), *rd = vlm_f32(r);
        int64_t nr = vlm_numel(r);
        float sf = op == BIN_SUB && f == b ? -1.0f : 1.0f, sr = op == BIN_SUB && r == b ? -1.0f : 1.0f;
        if (f->requires_grad)
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < N; i++) f->grad[i] += op == BIN_MUL ? g[i] * rd[i % nr] : sf * g[i];
        if (r->requires_grad) // column blocks: each repeated element summed by one thread
#pragma omp parallel for schedule(static) if (N >= OMP_MIN)
            for (int64_t j0 = 0; j0 < nr; j0 += 64) {
                int64_t j1 = j0 + 64 < nr ? j0 + 64 : nr;
                for (int64_t o = 0; o < N / nr; o++)
                    for (int64_t j = j0; j < j1; j++)
                        r->grad[j] += op == BIN_MUL ? g[o * nr + j] * fd[o * nr + j] : sr * g[o * nr + j];
            }
        return;
    }
    // Other broadcasts: an input element may receive from many outputs; run serially.
    for (int64_t i = 0; i < N; i++) {
        int64_t oa, ob;
        bc_offsets(bc, i, &oa, &ob);
        float gi = g[i];
        if (a->requires_grad) a->grad[oa] += op == BIN_MUL ? gi * bd[ob] : gi;
        if (b->requires_grad) b->grad[ob] += op == BIN_MUL ? gi * ad[oa] : (op == BIN_SUB ? -gi : gi);
    }
}

static vlm_tensor *binary(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b, int op, const char *name) {
    if (!vlm_check_f32(c, name, a, "a") || !vlm_check_f32(c, name, b, "b")) return NULL;
    bcast *bc = vlm_arena_alloc(&c->arena, sizeof *bc);
    if (!bc) return vlm_ctx_fail(c, VLM_ERR_OOM, "%s: arena out of memory", name);
    char s1[96], s2[96];
    if (!make_bcast(a, b, bc))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", name,
                            vlm_shape_str(a, s1, sizeof s1), vlm_shape_str(b, s2, sizeof s2));
    int g = vlm_needs_grad(c, a, b, NULL);
    vlm_tensor *y = vlm_out(c, bc->nd, bc->shape, g);
    if (!y) return NULL;
    int64_t N = vlm_numel(y);
    float *yo = vlm_f32(y);
    const float *ad = vlm_f32(a), *bd = vlm_f32(b);
    int64_t na = vlm_numel(a), nb = vlm_numel(b);
    if (na == N && nb == N && vlm_is_contiguous(a) && vlm_is_contiguous(b)) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++)
            yo[i] = op == BIN_ADD ? ad[i] + bd[i] : op == BIN_SUB ? ad[i] - bd[i] : ad[i] * bd[i];
    } else if (repeat_kind(bc, N, na, nb) == 1) {
        // b repeats over the leading dims (bias-like, positional embeddings)
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < N / nb; r++)
            for (int64_t j = 0; j < nb; j++) {
                float x = ad[r * nb + j], z = bd[j];
                yo[r * nb + j] = op == BIN_ADD ? x + z : op == BIN_SUB ? x - z : x * z;
            }
    } else if (repeat_kind(bc, N, na, nb) == 2) { // a repeats
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < N / na; r++)
            for (int64_t j = 0; j < na; j++) {
                float x = ad[j], z = bd[r * na + j];
                yo[r * na + j] = op == BIN_ADD ? x + z : op == BIN_SUB ? x - z : x * z;
            }
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            int64_t oa, ob;
            bc_offsets(bc, i, &oa, &ob);
            yo[i] = op == BIN_ADD ? ad[oa] + bd[ob] : op == BIN_SUB ? ad[oa] - bd[ob] : ad[oa] * bd[ob];
        }
    }
    if (g) {
        vlm_node *nd = vlm_record(c, name, y, binary_backward, a, b, NULL, NULL);
        if (nd) {
            nd->i[0] = op;
            nd->saved = bc;
        }
    }
    return y;
}

vlm_tensor *vlm_op_add(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b) { return binary(c, a, b, BIN_ADD, "add"); }
vlm_tensor *vlm_op_sub(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b) { return binary(c, a, b, BIN_SUB, "sub"); }
vlm_tensor *vlm_op_mul(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b) { return binary(c, a, b, BIN_MUL, "mul"); }

// ---- scale / add scalar -------------------------------------------------------------
static void affine_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    float s = n->f[0];
    int64_t N = vlm_numel(y);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) x->grad[i] += s * y->grad[i];
}

static vlm_tensor *affine(vlm_ctx *c, vlm_tensor *x, float s, float t, const char *name) {
    if (!vlm_check_f32(c, name, x, "x")) return NULL;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, x->ndim, x->shape, g);
    if (!y) return NULL;
    int64_t N = vlm_numel(y);
    const float *xd = vlm_f32(x);
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) yo[i] = s * xd[i] + t;
    if (g) {
        vlm_node *nd = vlm_record(c, name, y, affine_backward, x, NULL, NULL, NULL);
        if (nd) nd->f[0] = s;
    }
    return y;
}

vlm_tensor *vlm_op_scale(vlm_ctx *c, vlm_tensor *x, float s) { return affine(c, x, s, 0, "scale"); }
vlm_tensor *vlm_op_add_scalar(vlm_ctx *c, vlm_tensor *x, float s) { return affine(c, x, 1, s, "add_scalar"); }

// ---- activations ------------------------------------------------------------------------
static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float act_fwd(int act, float x) {
    switch (act) {
    case VLM_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case VLM_ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case VLM_ACT_QUICK_GELU: return x * sigmoidf_(1.702f * x);
    case VLM_ACT_SILU: return x * sigmoidf_(x);
    case VLM_ACT_RELU: return x > 0 ? x : 0;
    case VLM_ACT_SIGMOID: return sigmoidf_(x);
    case VLM_ACT_TANH: return tanhf(x);
    case VLM_ACT_EXP: return expf(x);
    case VLM_ACT_LOG_SIGMOID: return x < 0 ? x - log1pf(expf(x)) : -log1pf(expf(-x));
    case VLM_ACT_ELU1: return x > 0 ? x + 1.0f : expf(x);
    }
    return 0;
}

// d act / dx at x (y = act(x) given too).
static inline float act_bwd(int act, float x, float y) {
    switch (act) {
    case VLM_ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.3989422804014327f * expf(-0.5f * x * x);
    case VLM_ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x), t = tanhf(u);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case VLM_ACT_QUICK_GELU: {
        float s = sigmoidf_(1.702f * x);
        return s + 1.702f * x * s * (1.0f - s);
    }
    case VLM_ACT_SILU: {
        float s = sigmoidf_(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case VLM_ACT_RELU: return x > 0 ? 1.0f : 0.0f;
    case VLM_ACT_SIGMOID: return y * (1.0f - y);
    case VLM_ACT_TANH: return 1.0f - y * y;
    case VLM_ACT_EXP: return y;
    case VLM_ACT_LOG_SIGMOID: return 1.0f - sigmoidf_(x);
    case VLM_ACT_ELU1: return x > 0 ? 1.0f : y;
    }
    return 0;
}

// The GELU family and SiLU run on vectors (core/fastmath.h), the rest on libm:
// 8-wide AVX2+FMA kernels when the CPU has them (checked once at run time;
// VLM_FASTMATH_PORTABLE=1 in the environment forces the portable kernels),
// else the portable ones. One loop per activation keeps the switch outside.
#define ACT_FWD_LOOP(V, W, F)                                                                  \
    do {                                                                                       \
        for (; i + W <= n; i += W) V##store(y + i, F(V##load(x + i)));                         \
        if (i < n) V##store_part(y + i, F(V##load_part(x + i, n - i)), n - i);                 \
    } while (0)
#define ACT_BWD_LOOP(V, W, F)                                                                  \
    do {                                                                                       \
        for (; i + W <= n; i += W) {                                                           \
            V##store(dx + i, acc ? V##load(dx + i) + V##load(g + i) * F(V##load(x + i))        \
                                 : V##load(g + i) * F(V##load(x + i)));                        \
        }                                                                                      \
        if (i < n) {                                                                           \
            int64_t k = n - i;                                                                 \
            V##store_part(dx + i, acc ? V##load_part(dx + i, k) + V##load_part(g + i, k) * F(V##load_part(x + i, k)) \
                                      : V##load_part(g + i, k) * F(V##load_part(x + i, k)), k);                      \
        }                                                                                      \
    } while (0)
#define ACT_VEC_SWITCH(LOOP, V, W)                                                             \
    switch (act) {                                                                             \
    case VLM_ACT_GELU: LOOP(V, W, V##gelu); break;                                             \
    case VLM_ACT_GELU_TANH: LOOP(V, W, V##gelu_tanh); break;                                   \
    case VLM_ACT_QUICK_GELU: LOOP(V, W, V##quick_gelu); break;                                 \
    default: LOOP(V, W, V##silu); break;                                                       \
    }
#define ACT_VEC_SWITCH_GRAD(LOOP, V, W)                                                        \
    switch (act) {                                                                             \
    case VLM_ACT_GELU: LOOP(V, W, V##gelu_grad); break;                                        \
    case VLM_ACT_GELU_TANH: LOOP(V, W, V##gelu_tanh_grad); break;                              \
    case VLM_ACT_QUICK_GELU: LOOP(V, W, V##quick_gelu_grad); break;                            \
    default: LOOP(V, W, V##silu_grad); break;                                                  \
    }

static int act_vectorised(int act) {
    return act == VLM_ACT_GELU || act == VLM_ACT_GELU_TANH || act == VLM_ACT_QUICK_GELU || act == VLM_ACT_SILU;
}

#ifdef VLM_FASTMATH_X8
__attribute__((target("avx2,fma"))) static void act_fwd_x8(int act, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    ACT_VEC_SWITCH(ACT_FWD_LOOP, vlm_x8, 8)
}
__attribute__((target("avx2,fma"))) static void act_bwd_x8(int act, const float *x, const float *g, float *dx,
                                                           int64_t n, int acc) {
    int64_t i = 0;
    ACT_VEC_SWITCH_GRAD(ACT_BWD_LOOP, vlm_x8, 8)
}
#define X16 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))
X16 static void act_fwd_x16(int act, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    ACT_VEC_SWITCH(ACT_FWD_LOOP, vlm_x16, 16)
}
X16 static void act_bwd_x16(int act, const float *x, const float *g, float *dx, int64_t n, int acc) {
    int64_t i = 0;
    ACT_VEC_SWITCH_GRAD(ACT_BWD_LOOP, vlm_x16, 16)
}
int vlm_use_x8(void) { return vlm_cpu_isa() >= VLM_ISA_AVX2; }
int vlm_use_x16(void) { return vlm_cpu_isa() >= VLM_ISA_AVX512; }
#endif

#define ACT_BOTH_LOOP(V, W)                                                                    \
    do {                                                                                       \
        for (; i + W <= n; i += W) {                                                           \
            __typeof__(V##set(0)) gr, v = V##gelu_both(V##load(x + i), &gr);                   \
            V##store(y + i, v);                                                                \
            V##store(d + i, gr);                                                               \
        }                                                                                      \
        if (i < n) {                                                                           \
            __typeof__(V##set(0)) gr, v = V##gelu_both(V##load_part(x + i, n - i), &gr);       \
            V##store_part(y + i, v, n - i);                                                    \
            V##store_part(d + i, gr, n - i);                                                   \
        }                                                                                      \
    } while (0)

#ifdef VLM_FASTMATH_X8
__attribute__((target("avx2,fma"))) static void gelu_both_x8(const float *x, float *y, float *d, int64_t n) {
    int64_t i = 0;
    ACT_BOTH_LOOP(vlm_x8, 8);
}
X16 static void gelu_both_x16(const float *x, float *y, float *d, int64_t n) {
    int64_t i = 0;
    ACT_BOTH_LOOP(vlm_x16, 16);
}
#endif

void vlm_act_fwd_grad_n(int act, const float *x, float *y, float *d, int64_t n) {
    if (act != VLM_ACT_GELU) { // nothing shared worth fusing: forward, then derivative * 1
        float ones[256];
        for (int k = 0; k < 256; k++) ones[k] = 1.0f;
        for (int64_t i0 = 0; i0 < n; i0 += 256) {
            int64_t k = n - i0 < 256 ? n - i0 : 256;
            vlm_act_fwd_n(act, x + i0, y + i0, k);
            vlm_act_bwd_n(act, x + i0, y + i0, ones, d + i0, k, 0);
        }
        return;
    }
#ifdef VLM_FASTMATH_X8
    if (vlm_use_x16()) {
        gelu_both_x16(x, y, d, n);
        return;
    }
    if (vlm_use_x8()) {
        gelu_both_x8(x, y, d, n);
        return;
    }
#endif
    int64_t i = 0;
    ACT_BOTH_LOOP(vlm_v, VLM_VW);
}

void vlm_act_fwd_n(int act, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    if (!act_vectorised(act)) {
        for (; i < n; i++) y[i] = act_fwd(act, x[i]);
        return;
    }
#ifdef VLM_FASTMATH_X8
    if (vlm_use_x16()) {
        act_fwd_x16(act, x, y, n);
        return;
    }
    if (vlm_use_x8()) {
        act_fwd_x8(act, x, y, n);
        return;
    }
#endif
    ACT_VEC_SWITCH(ACT_FWD_LOOP, vlm_v, VLM_VW)
}

void vlm_act_bwd_n(int act, const float *x, const float *y, const float *g, float *dx, int64_t n, int acc) {
    int64_t i = 0;
    if (!act_vectorised(act)) {
        for (; i < n; i++) {
            float d = g[i] * act_bwd(act, x[i], y ? y[i] : act_fwd(act, x[i]));
            dx[i] = acc ? dx[i] + d : d;
        }
        return;
    }
#ifdef VLM_FASTMATH_X8
    if (vlm_use_x16()) {
        act_bwd_x16(act, x, g, dx, n, acc);
        return;
    }
    if (vlm_use_x8()) {
        act_bwd_x8(act, x, g, dx, n, acc);
        return;
    }
#endif
    ACT_VEC_SWITCH_GRAD(ACT_BWD_LOOP, vlm_v, VLM_VW)
}

#define ACT_CHUNK 4096 // elements per parallel work item

static void act_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    int act = (int)n->i[0];
    int64_t N = vlm_numel(y);
    const float *xd = vlm_f32(x), *yd = vlm_f32(y), *g = y->grad;
    (void)c;
#pragma omp parallel for schedule(static) if (N >= OMP_MIN)
    for (int64_t i0 = 0; i0 < N; i0 += ACT_CHUNK)
        vlm_act_bwd_n(act, xd + i0, yd + i0, g + i0, x->grad + i0, N - i0 < ACT_CHUNK ? N - i0 : ACT_CHUNK, 1);
}

vlm_tensor *vlm_op_act(vlm_ctx *c, vlm_tensor *x, vlm_act act) {
    if (!vlm_check_f32(c, "act", x, "x")) return NULL;
    if ((unsigned)act > VLM_ACT_ELU1) return vlm_ctx_fail(c, VLM_ERR_ARG, "act: unknown activation %d", (int)act);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, x->ndim, x->shape, g);
    if (!y) return NULL;
    int64_t N = vlm_numel(y);
    const float *xd = vlm_f32(x);
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static) if (N >= OMP_MIN)
    for (int64_t i0 = 0; i0 < N; i0 += ACT_CHUNK)
        vlm_act_fwd_n(act, xd + i0, yo + i0, N - i0 < ACT_CHUNK ? N - i0 : ACT_CHUNK);
    if (g) {
        vlm_node *nd = vlm_record(c, "act", y, act_backward, x, NULL, NULL, NULL);
        if (nd) nd->i[0] = act;
    }
    return y;
}

// ---- layernorm -------------------------------------------------------------------------
// One row of the backward: pw/pb (this thread's partial dw/db, NULL: not
// needed) and dx (NULL: not needed) accumulate.
VLM_INLINE void ln_row_bwd_body(const float *xr, const float *gr, const float *wd, float m, float rs, float *pw,
                                float *pb, float *dx, int64_t C) {
    float sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t j = 0; j < C; j++) {
        float xh = (xr[j] - m) * rs, gw = gr[j] * (wd ? wd[j] : 1.0f);
        sum_g += gw;
        sum_gx += gw * xh;
    }
    if (pw)
        for (int64_t j = 0; j < C; j++) {
            pw[j] += gr[j] * (xr[j] - m) * rs;
            pb[j] += gr[j];
        }
    if (dx) {
        float inv = 1.0f / (float)C;
        for (int64_t j = 0; j < C; j++) {
            float xh = (xr[j] - m) * rs, gw = gr[j] * (wd ? wd[j] : 1.0f);
            dx[j] += rs * (gw - inv * sum_g - xh * inv * sum_gx);
        }
    }
}
VLM_MULTIVERSION(ln_row_bwd,
                 (const float *xr, const float *gr, const float *wd, float m, float rs, float *pw, float *pb,
                  float *dx, int64_t C),
                 (xr, gr, wd, m, rs, pw, pb, dx, C))

// One row of the forward: y = (x - mean) * rstd * w + b; returns mean, rstd.
VLM_INLINE void ln_row_fwd_body(const float *xr, const float *wd, const float *bd, float eps, float *yr, float *ms,
                                int64_t C) {
    float m, rs;
    vlm_ln_row_stats(xr, C, eps, &m, &rs);
    ms[0] = m;
    ms[1] = rs;
    for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * (wd ? wd[j] : 1.0f) + (bd ? bd[j] : 0.0f);
}
VLM_MULTIVERSION(ln_row_fwd, (const float *xr, const float *wd, const float *bd, float eps, float *yr, float *ms, int64_t C),
                 (xr, wd, bd, eps, yr, ms, C))

// x: [R, C] rows; saved: mean[R], rstd[R]
static void layernorm_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    int64_t C = x->shape[x->ndim - 1], R = vlm_numel(x) / C;
    const float *mean = n->saved, *rstd = mean + R, *xd = vlm_f32(x), *wd = w ? vlm_f32(w) : NULL;
    int nt = vlm_nthreads();
    int need_wb = (w && w->requires_grad) || (b && b->requires_grad);
    float *part = need_wb ? vlm_scratch(c, (int64_t)nt * 2 * C) : NULL;
    if (need_wb && !part) return;
    if (part) memset(part, 0, sizeof(float) * (size_t)(nt * 2 * C));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        float *pw = part ? part + (int64_t)vlm_thread_id() * 2 * C : NULL;
        ln_row_bwd(xd + r * C, y->grad + r * C, wd, mean[r], rstd[r], pw, pw ? pw + C : NULL,
                   x->requires_grad ? x->grad + r * C : NULL, C);
    }
    if (part)
        for (int t = 0; t < nt; t++)
            for (int64_t j = 0; j < C; j++) {
                if (w && w->requires_grad) w->grad[j] += part[t * 2 * C + j];
                if (b && b->requires_grad) b->grad[j] += part[t * 2 * C + C + j];
            }
}

vlm_tensor *vlm_op_layernorm(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b, float eps) {
    if (!vlm_check_f32(c, "layernorm", x, "x")) return NULL;
    if ((w && !vlm_check_f32(c, "layernorm", w, "weight")) || (b && !vlm_check_f32(c, "layernorm", b, "bias")))
        return NULL;
    char s1[96];
    int64_t C = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (!C || (w && vlm_numel(w) != C) || (b && vlm_numel(b) != C))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "layernorm: input %s, weight/bias must have %lld elements",
                            vlm_shape_str(x, s1, sizeof s1), (long long)C);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t R = vlm_numel(x) / C;
    int g = vlm_needs_grad(c, x, w, b);
    vlm_tensor *y = vlm_out(c, x->ndim, x->shape, g);
    float *stats = vlm_scratch(c, 2 * R);
    if (!y || !stats) return NULL;
    const float *xd = vlm_f32(x), *wd = w ? vlm_f32(w) : NULL, *bd = b ? vlm_f32(b) : NULL;
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        float ms[2];
        ln_row_fwd(xd + r * C, wd, bd, eps, yo + r * C, ms, C);
        stats[r] = ms[0];
        stats[R + r] = ms[1];
    }
    if (g) {
        vlm_node *nd = vlm_record(c, "layernorm", y, layernorm_backward, x, w, b, NULL);
        if (nd) nd->saved = stats;
    }
    return y;
}

// ---- softmax / log-softmax (last dim) -----------------------------------------------
VLM_INLINE void softmax_row_bwd_body(const float *yr, const float *gr, float *dx, int64_t C, int log_form) {
    float s = 0;
    if (log_form) { // dx = g - softmax * sum(g)
        for (int64_t j = 0; j < C; j++) s += gr[j];
        for (int64_t j = 0; j < C; j++) dx[j] += gr[j] - expf(yr[j]) * s;
    } else { // dx = y * (g - sum(g * y))
        for (int64_t j = 0; j < C; j++) s += gr[j] * yr[j];
        for (int64_t j = 0; j < C; j++) dx[j] += yr[j] * (gr[j] - s);
    }
}
VLM_MULTIVERSION(softmax_row_bwd, (const float *yr, const float *gr, float *dx, int64_t C, int log_form),
                 (yr, gr, dx, C, log_form))

VLM_INLINE void softmax_row_fwd_body(const float *xr, float *yr, int64_t C, int log_form) {
    float mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < C; j++) mx = xr[j] > mx ? xr[j] : mx;
    for (int64_t j = 0; j < C; j++) s += expf(xr[j] - mx);
    if (log_form) {
        float lse = mx + logf(s);
        for (int64_t j = 0; j < C; j++) yr[j] = xr[j] - lse;
    } else {
        float inv = 1.0f / s;
        for (int64_t j = 0; j < C; j++) yr[j] = expf(xr[j] - mx) * inv;
    }
}
VLM_MULTIVERSION(softmax_row_fwd, (const float *xr, float *yr, int64_t C, int log_form), (xr, yr, C, log_form))

static void softmax_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    int log_form = (int)n->i[0];
    int64_t C = y->shape[y->ndim - 1], R = vlm_numel(y) / C;
    const float *yd = vlm_f32(y);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        softmax_row_bwd(yd + r * C, y->grad + r * C, x->grad + r * C, C, log_form);
    }
}

static vlm_tensor *softmax_impl(vlm_ctx *c, vlm_tensor *x, int log_form) {
    const char *name = log_form ? "log_softmax" : "softmax";
    if (!vlm_check_f32(c, name, x, "x")) return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] == 0) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "%s: empty last dim", name);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, x->ndim, x->shape, g);
    if (!y) return NULL;
    int64_t C = x->shape[x->ndim - 1], R = vlm_numel(x) / C;
    const float *xd = vlm_f32(x);
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        softmax_row_fwd(xd + r * C, yo + r * C, C, log_form);
    }
    if (g) {
        vlm_node *nd = vlm_record(c, name, y, softmax_backward, x, NULL, NULL, NULL);
        if (nd) nd->i[0] = log_form;
    }
    return y;
}

vlm_tensor *vlm_op_softmax(vlm_ctx *c, vlm_tensor *x) { return softmax_impl(c, x, 0); }
vlm_tensor *vlm_op_log_softmax(vlm_ctx *c, vlm_tensor *x) { return softmax_impl(c, x, 1); }

// ---- L2 normalisation (last dim) ------------------------------------------------------
static void l2norm_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    int64_t C = y->shape[y->ndim - 1], R = vlm_numel(y) / C;
    const float *norm = n->saved, *yd = vlm_f32(y);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *yr = yd + r * C, *gr = y->grad + r * C;
        float *dx = x->grad + r * C, dot = 0, inv = 1.0f / norm[r];
        if (norm[r] <= 1e-12f) { // clamped: y = x / eps is linear in x
            for (int64_t j = 0; j < C; j++) dx[j] += gr[j] * inv;
            continue;
        }
        for (int64_t j = 0; j < C; j++) dot += gr[j] * yr[j];
        for (int64_t j = 0; j < C; j++) dx[j] += (gr[j] - yr[j] * dot) * inv;
    }
}

vlm_tensor *vlm_op_l2norm(vlm_ctx *c, vlm_tensor *x) {
    if (!vlm_check_f32(c, "l2norm", x, "x")) return NULL;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] == 0) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "l2norm: empty last dim");
    int g = vlm_needs_grad(c, x, NULL, NULL);
    int64_t C = x->shape[x->ndim - 1], R = vlm_numel(x) / C;
    vlm_tensor *y = vlm_out(c, x->ndim, x->shape, g);
    float *norm = vlm_scratch(c, R);
    if (!y || !norm) return NULL;
    const float *xd = vlm_f32(x);
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t j = 0; j < C; j++) s += (double)xd[r * C + j] * xd[r * C + j];
        float nr = (float)sqrt(s);
        if (nr < 1e-12f) nr = 1e-12f;
        norm[r] = nr;
        float inv = 1.0f / nr;
        for (int64_t j = 0; j < C; j++) yo[r * C + j] = xd[r * C + j] * inv;
    }
    if (g) {
        vlm_node *nd = vlm_record(c, "l2norm", y, l2norm_backward, x, NULL, NULL, NULL);
        if (nd) nd->saved = norm;
    }
    return y;
}

// ---- embedding --------------------------------------------------------------------------
static void embedding_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *w = n->in[0], *ids = n->in[1], *y = n->out;
    int64_t C = w->shape[1], T = vlm_numel(ids);
    const int32_t *id = ids->data;
    (void)c;
    // Parallel over column blocks: no two threads touch the same weight element.
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < C; j0 += 16) {
        int64_t j1 = j0 + 16 < C ? j0 + 16 : C;
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = j0; j < j1; j++) w->grad[(int64_t)id[t] * C + j] += y->grad[t * C + j];
    }
}

vlm_tensor *vlm_op_embedding(vlm_ctx *c, vlm_tensor *w, vlm_tensor *ids) {
    if (!vlm_check_f32(c, "embedding", w, "weight")) return NULL;
    char s1[96];
    if (!ids || ids->dtype != VLM_I32 || w->ndim != 2 || ids->ndim + 1 > VLM_MAX_DIMS)
        return vlm_ctx_fail(c, VLM_ERR_ARG, "embedding: weight %s must be [V, C] and ids I32", vlm_shape_str(w, s1, sizeof s1));
    ids = vlm_ensure_contig(c, ids);
    if (!ids) return NULL;
    int64_t V = w->shape[0], C = w->shape[1], T = vlm_numel(ids);
    const int32_t *id = ids->data;
    for (int64_t t = 0; t < T; t++)
        if (id[t] < 0 || id[t] >= V)
            return vlm_ctx_fail(c, VLM_ERR_ARG, "embedding: id %d at position %lld outside vocabulary [0, %lld)", id[t],
                                (long long)t, (long long)V);
    w = vlm_ensure_contig(c, w);
    int64_t shape[VLM_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = C;
    int g = vlm_needs_grad(c, w, NULL, NULL);
    vlm_tensor *y = vlm_out(c, ids->ndim + 1, shape, g);
    if (!y) return NULL;
    for (int64_t t = 0; t < T; t++) memcpy(vlm_f32(y) + t * C, vlm_f32(w) + (int64_t)id[t] * C, sizeof(float) * (size_t)C);
    if (g) vlm_record(c, "embedding", y, embedding_backward, w, ids, NULL, NULL);
    return y;
}

// ---- concat -------------------------------------------------------------------------------
static void concat_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *y = n->out, **xs = n->saved;
    int cnt = (int)n->i[0], dim = (int)n->i[1];
    int64_t outer = 1, inner = 1;
    (void)c;
    for (int d = 0; d < dim; d++) outer *= y->shape[d];
    for (int d = dim + 1; d < y->ndim; d++) inner *= y->shape[d];
    int64_t off = 0;
    for (int k = 0; k < cnt; k++) {
        int64_t len = xs[k]->shape[dim] * inner;
        if (xs[k]->requires_grad)
            for (int64_t o = 0; o < outer; o++)
                for (int64_t j = 0; j < len; j++) xs[k]->grad[o * len + j] += y->grad[o * y->shape[dim] * inner + off + j];
        off += len;
    }
}

vlm_tensor *vlm_op_concat(vlm_ctx *c, vlm_tensor **xs, int n, int dim) {
    if (c->status != VLM_OK) return NULL;
    if (n < 1) return vlm_ctx_fail(c, VLM_ERR_ARG, "concat: no inputs");
    vlm_tensor **cx = vlm_arena_alloc(&c->arena, sizeof(vlm_tensor *) * (size_t)n);
    if (!cx) return vlm_ctx_fail(c, VLM_ERR_OOM, "concat: arena out of memory");
    int nd = xs[0] ? xs[0]->ndim : 0;
    if (dim < 0) dim += nd;
    if (dim < 0 || dim >= nd) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "concat: dim out of range");
    int64_t shape[VLM_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[dim] = 0;
    int g = 0;
    char s1[96], s2[96];
    for (int k = 0; k < n; k++) {
        if (!vlm_check_f32(c, "concat", xs[k], "input")) return NULL;
        int ok = xs[k]->ndim == nd;
        for (int d = 0; ok && d < nd; d++) ok = d == dim || xs[k]->shape[d] == xs[0]->shape[d];
        if (!ok)
            return vlm_ctx_fail(c, VLM_ERR_SHAPE, "concat: input %d %s does not match input 0 %s along dims other than %d", k,
                                vlm_shape_str(xs[k], s1, sizeof s1), vlm_shape_str(xs[0], s2, sizeof s2), dim);
        cx[k] = vlm_ensure_contig(c, xs[k]);
        if (!cx[k]) return NULL;
        shape[dim] += xs[k]->shape[dim];
        g |= vlm_needs_grad(c, cx[k], NULL, NULL);
    }
    vlm_tensor *y = vlm_out(c, nd, shape, g);
    if (!y) return NULL;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++) outer *= shape[d];
    for (int d = dim + 1; d < nd; d++) inner *= shape[d];
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        int64_t len = cx[k]->shape[dim] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(vlm_f32(y) + o * shape[dim] * inner + off, vlm_f32(cx[k]) + o * len, sizeof(float) * (size_t)len);
        off += len;
    }
    if (g) {
        vlm_node *nd2 = vlm_record(c, "concat", y, concat_backward, NULL, NULL, NULL, NULL);
        if (nd2) {
            nd2->saved = cx;
            nd2->i[0] = n;
            nd2->i[1] = dim;
        }
    }
    return y;
}

// ---- gather rows --------------------------------------------------------------------------
static void gather_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    const int32_t *idx = n->saved;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    (void)c;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < C; j++) x->grad[(b * T + idx[b]) * C + j] += y->grad[b * C + j];
}

vlm_tensor *vlm_op_gather_rows(vlm_ctx *c, vlm_tensor *x, const int32_t *idx) {
    if (!vlm_check_f32(c, "gather_rows", x, "x")) return NULL;
    char s1[96];
    if (x->ndim != 3) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "gather_rows: x %s must be [B, T, C]", vlm_shape_str(x, s1, sizeof s1));
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    int32_t *ic = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B ? B : 1));
    if (!ic) return vlm_ctx_fail(c, VLM_ERR_OOM, "gather_rows: arena out of memory");
    for (int64_t b = 0; b < B; b++) {
        if (idx[b] < 0 || idx[b] >= T)
            return vlm_ctx_fail(c, VLM_ERR_ARG, "gather_rows: index %d for row %lld outside [0, %lld)", idx[b], (long long)b,
                                (long long)T);
        ic[b] = idx[b];
    }
    int g = vlm_needs_grad(c, x, NULL, NULL);
    int64_t shape[2] = {B, C};
    vlm_tensor *y = vlm_out(c, 2, shape, g);
    if (!y) return NULL;
    for (int64_t b = 0; b < B; b++) memcpy(vlm_f32(y) + b * C, vlm_f32(x) + (b * T + ic[b]) * C, sizeof(float) * (size_t)C);
    if (g) {
        vlm_node *nd = vlm_record(c, "gather_rows", y, gather_backward, x, NULL, NULL, NULL);
        if (nd) nd->saved = ic;
    }
    return y;
}

// ---- reductions ---------------------------------------------------------------------------
static void sum_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0];
    float g = n->out->grad[0] * n->f[0];
    int64_t N = vlm_numel(x);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) x->grad[i] += g;
}

static vlm_tensor *sum_impl(vlm_ctx *c, vlm_tensor *x, int mean) {
    if (!vlm_check_f32(c, mean ? "mean" : "sum", x, "x")) return NULL;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t N = vlm_numel(x), one = 1;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, 1, &one, g);
    if (!y) return NULL;
    double s;
    const float *xd = vlm_f32(x);
    DET_SUM(s, N, i, (double)xd[i]);
    float scale = mean ? (N ? 1.0f / (float)N : 0.0f) : 1.0f;
    vlm_f32(y)[0] = (float)(s * scale);
    if (g) {
        vlm_node *nd = vlm_record(c, mean ? "mean" : "sum", y, sum_backward, x, NULL, NULL, NULL);
        if (nd) nd->f[0] = scale;
    }
    return y;
}

vlm_tensor *vlm_op_sum(vlm_ctx *c, vlm_tensor *x) { return sum_impl(c, x, 0); }
vlm_tensor *vlm_op_mean(vlm_ctx *c, vlm_tensor *x) { return sum_impl(c, x, 1); }

static void mean_dim_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    int64_t outer = n->i[0], len = n->i[1], inner = n->i[2];
    float inv = 1.0f / (float)len;
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < len; k++)
            for (int64_t j = 0; j < inner; j++) x->grad[(o * len + k) * inner + j] += y->grad[o * inner + j] * inv;
}

vlm_tensor *vlm_op_mean_dim(vlm_ctx *c, vlm_tensor *x, int dim) {
    if (!vlm_check_f32(c, "mean_dim", x, "x")) return NULL;
    if (dim < 0) dim += x->ndim;
    if (dim < 0 || dim >= x->ndim || x->shape[dim] == 0) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "mean_dim: bad dim %d", dim);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t outer = 1, inner = 1, len = x->shape[dim], shape[VLM_MAX_DIMS];
    for (int d = 0, k = 0; d < x->ndim; d++) {
        if (d < dim) outer *= x->shape[d];
        if (d > dim) inner *= x->shape[d];
        if (d != dim) shape[k++] = x->shape[d];
    }
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, x->ndim - 1, shape, g);
    if (!y) return NULL;
    const float *xd = vlm_f32(x);
    float *yo = vlm_f32(y), inv = 1.0f / (float)len;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < inner; j++) yo[o * inner + j] = 0;
        for (int64_t k = 0; k < len; k++)
            for (int64_t j = 0; j < inner; j++) yo[o * inner + j] += xd[(o * len + k) * inner + j];
        for (int64_t j = 0; j < inner; j++) yo[o * inner + j] *= inv;
    }
    if (g) {
        vlm_node *nd = vlm_record(c, "mean_dim", y, mean_dim_backward, x, NULL, NULL, NULL);
        if (nd) {
            nd->i[0] = outer;
            nd->i[1] = len;
            nd->i[2] = inner;
        }
    }
    return y;
}

// ---- cross-entropy (fused log-softmax + NLL + label smoothing) -------------------------------
typedef struct {
    int32_t *targets;
    float *lse; // [N] log-sum-exp per row
    int64_t count;
} ce_saved;

// dx += scale * (softmax(x) - smoothed one-hot(t)) for one row.
VLM_INLINE void ce_row_bwd_body(const float *xr, float *dx, float lse, int32_t t, float ls, float scale, int64_t K) {
    for (int64_t j = 0; j < K; j++) {
        float p = expf(xr[j] - lse);
        float tj = (j == t ? 1.0f - ls : 0.0f) + ls / (float)K;
        dx[j] += scale * (p - tj);
    }
}
VLM_MULTIVERSION(ce_row_bwd, (const float *xr, float *dx, float lse, int32_t t, float ls, float scale, int64_t K),
                 (xr, dx, lse, t, ls, scale, K))

static void ce_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0];
    ce_saved *s = n->saved;
    float ls = n->f[0], g = n->out->grad[0];
    int64_t N = x->shape[0], K = x->shape[1];
    (void)c;
    if (!s->count) return;
    float scale = g / (float)s->count;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        if (s->targets[r] < 0) continue;
        ce_row_bwd(vlm_f32(x) + r * K, x->grad + r * K, s->lse[r], s->targets[r], ls, scale, K);
    }
}

vlm_tensor *vlm_op_cross_entropy(vlm_ctx *c, vlm_tensor *x, const int32_t *targets, float ls) {
    if (!vlm_check_f32(c, "cross_entropy", x, "logits")) return NULL;
    char s1[96];
    if (x->ndim != 2 || x->shape[1] < 1)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "cross_entropy: logits %s must be [N, K]", vlm_shape_str(x, s1, sizeof s1));
    if (ls < 0 || ls >= 1) return vlm_ctx_fail(c, VLM_ERR_ARG, "cross_entropy: label smoothing %g outside [0, 1)", ls);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t N = x->shape[0], K = x->shape[1], one = 1;
    ce_saved *s = vlm_arena_alloc(&c->arena, sizeof *s);
    int32_t *tg = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(N ? N : 1));
    float *lse = vlm_scratch(c, N);
    if (!s || !tg || !lse) return vlm_ctx_fail(c, VLM_ERR_OOM, "cross_entropy: arena out of memory");
    s->count = 0;
    for (int64_t r = 0; r < N; r++) {
        if (targets[r] == -100) {
            tg[r] = -1;
            continue;
        }
        if (targets[r] < 0 || targets[r] >= K)
            return vlm_ctx_fail(c, VLM_ERR_ARG, "cross_entropy: target %d at row %lld outside [0, %lld)", targets[r],
                                (long long)r, (long long)K);
        tg[r] = targets[r];
        s->count++;
    }
    s->targets = tg;
    s->lse = lse;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, 1, &one, g);
    if (!y) return NULL;
    double total = 0;
    const float *xd = vlm_f32(x);
    // Per-row losses first (parallel), then a fixed-order sum: deterministic.
    double *row_loss = vlm_arena_alloc(&c->arena, sizeof(double) * (size_t)(N ? N : 1));
    if (!row_loss) return vlm_ctx_fail(c, VLM_ERR_OOM, "cross_entropy: arena out of memory");
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float *xr = xd + r * K;
        float mx = -INFINITY, sum = 0, sx = 0;
        for (int64_t j = 0; j < K; j++) mx = xr[j] > mx ? xr[j] : mx;
        for (int64_t j = 0; j < K; j++) {
            sum += expf(xr[j] - mx);
            sx += xr[j];
        }
        float l = mx + logf(sum);
        lse[r] = l;
        row_loss[r] = tg[r] < 0 ? 0.0 : (1.0 - ls) * (double)(l - xr[tg[r]]) + (double)ls * (double)(l - sx / (float)K);
    }
    for (int64_t r = 0; r < N; r++) total += row_loss[r];
    vlm_f32(y)[0] = s->count ? (float)(total / (double)s->count) : 0.0f;
    if (g) {
        vlm_node *nd = vlm_record(c, "cross_entropy", y, ce_backward, x, NULL, NULL, NULL);
        if (nd) {
            nd->saved = s;
            nd->f[0] = ls;
        }
    }
    return y;
}

// ---- MSE ---------------------------------------------------------------------------------------
static void mse_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *a = n->in[0], *b = n->in[1];
    int64_t N = vlm_numel(a);
    float g = n->out->grad[0] * 2.0f / (float)N;
    const float *ad = vlm_f32(a), *bd = vlm_f32(b);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        float d = g * (ad[i] - bd[i]);
        if (a->requires_grad) a->grad[i] += d;
        if (b->requires_grad) b->grad[i] -= d;
    }
}

vlm_tensor *vlm_op_mse(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b) {
    if (!vlm_check_f32(c, "mse", a, "a") || !vlm_check_f32(c, "mse", b, "b")) return NULL;
    char s1[96], s2[96];
    int same = a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
    if (!same || vlm_numel(a) == 0)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "mse: shapes %s and %s differ (or are empty)", vlm_shape_str(a, s1, sizeof s1),
                            vlm_shape_str(b, s2, sizeof s2));
    a = vlm_ensure_contig(c, a);
    b = vlm_ensure_contig(c, b);
    if (!a || !b) return NULL;
    int64_t N = vlm_numel(a), one = 1;
    int g = vlm_needs_grad(c, a, b, NULL);
    vlm_tensor *y = vlm_out(c, 1, &one, g);
    if (!y) return NULL;
    double s;
    const float *ad = vlm_f32(a), *bd = vlm_f32(b);
    DET_SUM(s, N, i, (double)(ad[i] - bd[i]) * (ad[i] - bd[i]));
    vlm_f32(y)[0] = (float)(s / (double)N);
    if (g) vlm_record(c, "mse", y, mse_backward, a, b, NULL, NULL);
    return y;
}

// ---- dropout --------------------------------------------------------------------------------------
static inline int dropout_keep(const uint32_t key[2], int64_t i, uint32_t thresh) {
    uint32_t w[4];
    vlm_philox(key, (uint64_t)i >> 2, w);
    return w[i & 3] >= thresh;
}

static void dropout_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    uint32_t key[2] = {(uint32_t)n->i[0], (uint32_t)n->i[1]}, thresh = (uint32_t)n->i[2];
    float s = n->f[0];
    int64_t N = vlm_numel(y);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++)
        if (dropout_keep(key, i, thresh)) x->grad[i] += s * y->grad[i];
}

vlm_tensor *vlm_op_dropout(vlm_ctx *c, vlm_tensor *x, float p) {
    if (!vlm_check_f32(c, "dropout", x, "x")) return NULL;
    if (p < 0 || p >= 1) return vlm_ctx_fail(c, VLM_ERR_ARG, "dropout: p = %g outside [0, 1)", p);
    if (!c->training || p == 0) return x;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    uint32_t key[2] = {vlm_rng_u32(&c->dropout_rng), vlm_rng_u32(&c->dropout_rng)};
    uint32_t thresh = (uint32_t)((double)p * 4294967296.0);
    float s = 1.0f / (1.0f - p);
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, x->ndim, x->shape, g);
    if (!y) return NULL;
    int64_t N = vlm_numel(y);
    const float *xd = vlm_f32(x);
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) yo[i] = dropout_keep(key, i, thresh) ? xd[i] * s : 0.0f;
    if (g) {
        vlm_node *nd = vlm_record(c, "dropout", y, dropout_backward, x, NULL, NULL, NULL);
        if (nd) {
            nd->i[0] = key[0];
            nd->i[1] = key[1];
            nd->i[2] = thresh;
            nd->f[0] = s;
        }
    }
    return y;
}
