// Pre-LN transformer block: x += out_proj(attn(ln_1(x))); x += c_proj(act(c_fc(ln_2(x)))),
// as per-op blocks (reference) and as one fused op over the whole stack.
#include "core/transformer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "core/fastmath.h"
#include "core/bf16.h"
#include "core/isa_internal.h"
#include "core/ops_internal.h"

struct vlm_transformer_ws {
    float *buf;
    size_t cap; // floats
};

static int add(vlm_params *ps, const char *prefix, int i, const char *name, int ndim, int64_t d0, int64_t d1,
               vlm_error *err) {
    char full[160];
    snprintf(full, sizeof full, "%sresblocks.%d.%s", prefix, i, name);
    int64_t shape[2] = {d0, d1};
    return vlm_params_add(ps, full, ndim, shape, err);
}

vlm_status vlm_transformer_init(vlm_transformer *t, vlm_params *ps, const char *prefix, vlm_transformer_cfg cfg,
                                vlm_error *err) {
    if (cfg.width <= 0 || cfg.heads <= 0 || cfg.layers < 0 || cfg.width % cfg.heads)
        return vlm_errorf(err, VLM_ERR_ARG, "transformer %s: width %d must be a positive multiple of heads %d", prefix,
                          cfg.width, cfg.heads);
    if (!cfg.mlp_width) cfg.mlp_width = 4 * cfg.width;
    if (cfg.ln_eps <= 0) cfg.ln_eps = 1e-5f;
    t->cfg = cfg;
    t->blocks = calloc((size_t)(cfg.layers ? cfg.layers : 1), sizeof *t->blocks);
    t->ws = calloc(1, sizeof *t->ws);
    if (!t->blocks || !t->ws) {
        vlm_transformer_free(t);
        return vlm_errorf(err, VLM_ERR_OOM, "transformer: out of memory");
    }
    int64_t C = cfg.width, M = cfg.mlp_width;
    for (int i = 0; i < cfg.layers; i++) {
        vlm_block *b = &t->blocks[i];
        b->in_w = add(ps, prefix, i, "attn.in_proj_weight", 2, 3 * C, C, err);
        b->in_b = add(ps, prefix, i, "attn.in_proj_bias", 1, 3 * C, 0, err);
        b->out_w = add(ps, prefix, i, "attn.out_proj.weight", 2, C, C, err);
        b->out_b = add(ps, prefix, i, "attn.out_proj.bias", 1, C, 0, err);
        b->ln1_w = add(ps, prefix, i, "ln_1.weight", 1, C, 0, err);
        b->ln1_b = add(ps, prefix, i, "ln_1.bias", 1, C, 0, err);
        b->fc_w = add(ps, prefix, i, "mlp.c_fc.weight", 2, M, C, err);
        b->fc_b = add(ps, prefix, i, "mlp.c_fc.bias", 1, M, 0, err);
        b->proj_w = add(ps, prefix, i, "mlp.c_proj.weight", 2, C, M, err);
        b->proj_b = add(ps, prefix, i, "mlp.c_proj.bias", 1, C, 0, err);
        b->ln2_w = add(ps, prefix, i, "ln_2.weight", 1, C, 0, err);
        b->ln2_b = add(ps, prefix, i, "ln_2.bias", 1, C, 0, err);
        if (b->ln2_b < 0) return err ? err->status : VLM_ERR_ARG;
    }
    return VLM_OK;
}

void vlm_transformer_free(vlm_transformer *t) {
    free(t->blocks);
    t->blocks = NULL;
    if (t->ws) free(t->ws->buf);
    free(t->ws);
    t->ws = NULL;
}

void vlm_fill_normal(vlm_tensor *t, vlm_rng *rng, float std) {
    float *d = vlm_f32(t);
    for (int64_t i = 0; i < vlm_numel(t); i++) d[i] = std * vlm_rng_normal(rng);
}

void vlm_fill_const(vlm_tensor *t, float v) {
    float *d = vlm_f32(t);
    for (int64_t i = 0; i < vlm_numel(t); i++) d[i] = v;
}

void vlm_transformer_init_weights(const vlm_transformer *t, vlm_params *ps, vlm_rng *rng) {
    float w = (float)t->cfg.width, L = (float)(t->cfg.layers ? t->cfg.layers : 1);
    float attn_std = 1.0f / sqrtf(w), proj_std = attn_std / sqrtf(2.0f * L), fc_std = 1.0f / sqrtf(2.0f * w);
    for (int i = 0; i < t->cfg.layers; i++) {
        const vlm_block *b = &t->blocks[i];
        vlm_fill_normal(vlm_params_get(ps, b->in_w), rng, attn_std);
        vlm_fill_normal(vlm_params_get(ps, b->out_w), rng, proj_std);
        vlm_fill_normal(vlm_params_get(ps, b->fc_w), rng, fc_std);
        vlm_fill_normal(vlm_params_get(ps, b->proj_w), rng, proj_std);
        int zeros[] = {b->in_b, b->out_b, b->fc_b, b->proj_b, b->ln1_b, b->ln2_b};
        for (int k = 0; k < 6; k++) vlm_fill_const(vlm_params_get(ps, zeros[k]), 0);
        vlm_fill_const(vlm_params_get(ps, b->ln1_w), 1);
        vlm_fill_const(vlm_params_get(ps, b->ln2_w), 1);
    }
}

vlm_tensor *vlm_block_forward(vlm_ctx *c, const vlm_transformer *t, const vlm_block *blk, vlm_params *ps, vlm_tensor *x,
                              const uint8_t *key_pad) {
    if (!x) return NULL;
    const vlm_transformer_cfg *cf = &t->cfg;
    int64_t B = x->shape[0], T = x->shape[1], C = cf->width, H = cf->heads, D = C / H;
#define P(i) vlm_params_get(ps, blk->i)
    vlm_tensor *h = vlm_op_layernorm(c, x, P(ln1_w), P(ln1_b), cf->ln_eps);
    vlm_tensor *qkv = vlm_op_linear(c, h, P(in_w), P(in_b)); // [B, T, 3C]
    if (!qkv) return NULL;
    // Head split as views of qkv: [B, H, T, D] with strides [T*3C, D, 3C, 1].
    int64_t shape[4] = {B, H, T, D}, stride[4] = {T * 3 * C, D, 3 * C, 1};
    vlm_tensor *q = vlm_view_strided(c, qkv, 4, shape, stride, 0);
    vlm_tensor *k = vlm_view_strided(c, qkv, 4, shape, stride, C);
    vlm_tensor *v = vlm_view_strided(c, qkv, 4, shape, stride, 2 * C);
    vlm_tensor *o = vlm_op_attention(c, q, k, v, cf->causal, key_pad); // memory [B, T, H, D]
    int64_t merged[3] = {B, T, C};
    o = vlm_view_reshape(c, vlm_view_transpose(c, o, 1, 2), 3, merged);
    x = vlm_op_add(c, x, vlm_op_linear(c, o, P(out_w), P(out_b)));
    h = vlm_op_layernorm(c, x, P(ln2_w), P(ln2_b), cf->ln_eps);
    h = vlm_op_act(c, vlm_op_linear(c, h, P(fc_w), P(fc_b)), cf->act);
    x = vlm_op_add(c, x, vlm_op_linear(c, h, P(proj_w), P(proj_b)));
#undef P
    return x;
}

vlm_tensor *vlm_transformer_forward_ops(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                                        const uint8_t *key_pad) {
    for (int i = 0; i < t->cfg.layers && x; i++) x = vlm_block_forward(c, t, &t->blocks[i], ps, x, key_pad);
    return x;
}

vlm_tensor *vlm_transformer_forward(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                                    const uint8_t *key_pad) {
    return vlm_op_transformer(c, t, ps, x, key_pad);
}


// ---- fused stack -------------------------------------------------------------------
// Row-major [rows, cols] matrix view for vlm_gemm, and its transpose (no copy).
static vlm_mat mat(const float *p, int64_t rows, int64_t cols, int64_t rs) {
    vlm_mat m = {(float *)p, rows, cols, rs, 1}; // vlm_mat is also used for outputs
    return m;
}
static vlm_mat tr(vlm_mat m) {
    vlm_mat t = {m.p, m.cols, m.rows, m.cs, m.rs};
    return t;
}
// The block GEMMs of one thread: bf16 inputs when the context runs amp_bf16
// (bf: this thread's packing space), else fp32.
static void tgemm(void *bf, vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta) {
    if (bf) vlm_gemm_bf16(C, A, B, alpha, beta, bf);
    else vlm_gemm(C, A, B, alpha, beta);
}

static inline int64_t rup16(int64_t n) { return (n + 15) / 16 * 16; }

// What the backward needs, per layer (offsets in floats inside one layer's block).
typedef struct {
    int64_t xh1, qkv, att, xh2, h, rstd1, rstd2, lse, size;
} tr_layout;

static tr_layout layout(int64_t B, int64_t T, int64_t C, int64_t M, int64_t H) {
    int64_t N = B * T;
    tr_layout l;
    l.xh1 = 0;
    l.qkv = l.xh1 + rup16(N * C);
    l.att = l.qkv + rup16(N * 3 * C);
    l.xh2 = l.att + rup16(N * C);
    l.h = l.xh2 + rup16(N * C);
    l.rstd1 = l.h + rup16(N * M);
    l.rstd2 = l.rstd1 + rup16(N);
    l.lse = l.rstd2 + rup16(N);
    l.size = l.lse + rup16(B * H * T);
    return l;
}

typedef struct {
    const vlm_transformer *t;
    vlm_params *ps;
    const uint8_t *pad; // [B*T] arena copy or NULL
    float *save;        // layers * layout.size floats
    int64_t B, T;
} tr_saved;

static float *ws_get(vlm_ctx *c, const vlm_transformer *t, int64_t n) {
    struct vlm_transformer_ws *w = t->ws;
    if (!w) return vlm_ctx_fail(c, VLM_ERR_STATE, "transformer: not initialised (vlm_transformer_init)");
    if ((size_t)n > w->cap) {
        free(w->buf);
        w->cap = 0;
        w->buf = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
        if (!w->buf) return vlm_ctx_fail(c, VLM_ERR_OOM, "transformer: cannot allocate %lld scratch floats", (long long)n);
        w->cap = (size_t)n;
    }
    return w->buf;
}

static inline int pgrad(vlm_params *ps, int idx) {
    const vlm_tensor *p = vlm_params_get(ps, idx);
    return p && p->requires_grad && p->grad;
}
static inline float *pdata(vlm_params *ps, int idx) { return vlm_f32(vlm_params_get(ps, idx)); }
static inline float *pgr(vlm_params *ps, int idx) { return vlm_params_get(ps, idx)->grad; }

// The fused op hands whole chunks of sequences to threads, so these row
// helpers are serial.

// Rows of x (+= pending bias pb first, if any) -> xh = (x - mean) * rstd and
// lo = xh * w + b; rstd per row.
VLM_INLINE void ln_fwd_body(float *x, const float *pb, const float *w, const float *b, float eps, float *xh, float *lo,
                   float *rstd, int64_t N, int64_t C) {
    for (int64_t r = 0; r < N; r++) {
        float *xr = x + r * C, *hr = xh + r * C, *lr = lo + r * C;
        if (pb)
#pragma omp simd
            for (int64_t j = 0; j < C; j++) xr[j] += pb[j];
        float m, rs;
        vlm_ln_row_stats(xr, C, eps, &m, &rs);
        rstd[r] = rs;
#pragma omp simd
        for (int64_t j = 0; j < C; j++) {
            float h = (xr[j] - m) * rs;
            hr[j] = h;
            lr[j] = h * w[j] + b[j];
        }
    }
}
VLM_MULTIVERSION(ln_fwd,
                 (float *x, const float *pb, const float *w, const float *b, float eps, float *xh, float *lo,
                  float *rstd, int64_t N, int64_t C),
                 (x, pb, w, b, eps, xh, lo, rstd, N, C))

// lo = xh * w + b (the LN output, recomputed in the backward)
VLM_INLINE void ln_out_body(const float *xh, const float *w, const float *b, float *lo, int64_t N, int64_t C) {
    for (int64_t r = 0; r < N; r++)
#pragma omp simd
        for (int64_t j = 0; j < C; j++) lo[r * C + j] = xh[r * C + j] * w[j] + b[j];
}
VLM_MULTIVERSION(ln_out, (const float *xh, const float *w, const float *b, float *lo, int64_t N, int64_t C),
                 (xh, w, b, lo, N, C))

// LayerNorm backward from dl = d(LN output): dx += rstd * (dl*w - mean(dl*w) -
// xh * mean(dl*w*xh)) (dx NULL: skipped); dw += sum_r dl*xh, db += sum_r dl,
// dsum += sum_r dx (the updated rows: the next bias gradient down the stack)
// (NULL: skipped).
VLM_INLINE void ln_bwd_body(const float *dl, const float *xh, const float *rstd, const float *w, float *dx, float *dw, float *db,
                   float *dsum, int64_t N, int64_t C) {
    for (int64_t r = 0; r < N; r++) {
        const float *g = dl + r * C, *h = xh + r * C;
        if (dw)
#pragma omp simd
            for (int64_t j = 0; j < C; j++) dw[j] += g[j] * h[j];
        if (db)
#pragma omp simd
            for (int64_t j = 0; j < C; j++) db[j] += g[j];
        if (!dx) continue;
        float s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t j = 0; j < C; j++) {
            float gw = g[j] * w[j];
            s1 += gw;
            s2 += gw * h[j];
        }
        float rs = rstd[r], inv = 1.0f / (float)C, m1 = s1 * inv, m2 = s2 * inv;
        float *d = dx + r * C;
#pragma omp simd
        for (int64_t j = 0; j < C; j++) d[j] += rs * (g[j] * w[j] - m1 - h[j] * m2);
        if (dsum)
#pragma omp simd
            for (int64_t j = 0; j < C; j++) dsum[j] += d[j];
    }
}
VLM_MULTIVERSION(ln_bwd,
                 (const float *dl, const float *xh, const float *rstd, const float *w, float *dx, float *dw,
                  float *db, float *dsum, int64_t N, int64_t C),
                 (dl, xh, rstd, w, dx, dw, db, dsum, N, C))

// a *= d elementwise ([N, K]); out[j] += sum_r a[r, j] after (out NULL: skipped).
VLM_INLINE void mul_colsum_body(float *a, const float *d, int64_t N, int64_t K, float *out) {
    for (int64_t r = 0; r < N; r++) {
        float *ar = a + r * K;
        const float *dr = d + r * K;
#pragma omp simd
        for (int64_t j = 0; j < K; j++) ar[j] *= dr[j];
        if (out)
#pragma omp simd
            for (int64_t j = 0; j < K; j++) out[j] += ar[j];
    }
}
VLM_MULTIVERSION(mul_colsum, (float *a, const float *d, int64_t N, int64_t K, float *out), (a, d, N, K, out))

// out[j] += sum_r a[r, j] (a: [N, K])
VLM_INLINE void colsum_body(const float *a, int64_t N, int64_t K, float *out) {
    for (int64_t r = 0; r < N; r++)
#pragma omp simd
        for (int64_t j = 0; j < K; j++) out[j] += a[r * K + j];
}
VLM_MULTIVERSION(colsum, (const float *a, int64_t N, int64_t K, float *out), (a, N, K, out))

// Softmax of row r[0, n) where vm[j] != 0 (vm NULL: all), zero elsewhere
// up to T; returns the log-sum-exp, or INFINITY when no key is valid (row zeroed).
static float softmax_row(float *r, int64_t n, int64_t T, const float *vm) {
    vlm_vf vmx = vlm_vset(-INFINITY), ninf = vmx;
    int64_t j = 0;
    for (; j + VLM_VW <= n; j += VLM_VW) {
        vlm_vf v = vlm_vload(r + j);
        if (vm) v = vlm_vsel(vlm_vload(vm + j) != 0.0f, v, ninf);
        vmx = vlm_vmax(vmx, v);
    }
    float mx = vlm_vhmax(vmx);
    for (; j < n; j++)
        if ((!vm || vm[j] != 0) && r[j] > mx) mx = r[j];
    if (mx == -INFINITY) {
        memset(r, 0, sizeof(float) * (size_t)T);
        return INFINITY;
    }
    vlm_vf vs = vlm_vset(0);
    for (j = 0; j + VLM_VW <= n; j += VLM_VW) {
        vlm_vf e = vlm_vexp(vlm_vload(r + j) - mx);
        if (vm) e = e * vlm_vload(vm + j);
        vlm_vstore(r + j, e);
        vs += e;
    }
    if (j < n) {
        vlm_vf e = vlm_vexp(vlm_vload_part(r + j, n - j) - mx);
        if (vm) e = e * vlm_vload_part(vm + j, n - j);
        vlm_vf keep = vlm_vset(0);
        for (int64_t k = 0; k < n - j; k++) keep[k] = 1.0f;
        e = e * keep;
        vlm_vstore_part(r + j, e, n - j);
        vs += e;
    }
    float sum = vlm_vhsum(vs), inv = 1.0f / sum;
    for (j = 0; j < n; j++) r[j] *= inv;
    for (; j < T; j++) r[j] = 0;
    return mx + logf(sum);
}

// Recomputes probabilities from scores: r[j] = exp(r[j] - lse) on valid keys, 0 elsewhere.
static void prob_row(float *r, int64_t n, int64_t T, const float *vm, float lse) {
    if (isinf(lse)) {
        memset(r, 0, sizeof(float) * (size_t)T);
        return;
    }
    int64_t j = 0;
    for (; j + VLM_VW <= n; j += VLM_VW) {
        vlm_vf e = vlm_vexp(vlm_vload(r + j) - lse);
        if (vm) e = e * vlm_vload(vm + j);
        vlm_vstore(r + j, e);
    }
    if (j < n) {
        vlm_vf e = vlm_vexp(vlm_vload_part(r + j, n - j) - lse);
        if (vm) e = e * vlm_vload_part(vm + j, n - j);
        vlm_vstore_part(r + j, e, n - j);
    }
    for (j = n; j < T; j++) r[j] = 0;
}

// Per-thread floats of pbuf: the T x T scores, a D x T transposed K or V, two
// [T, D] compact row blocks and T row ids.
#define ATTN_SCRATCH(T, D) (rup16((T) * (T)) + rup16(3 * (D) * (T)) + rup16(T))

typedef struct {
    int64_t B, T, C, H, D;
    int causal;
    const float *vmask; // [B*T] 1 = valid key, 0 = padded; NULL = none
} attn_geom;

#ifdef VLM_FASTMATH_X8
// ---- SIMD attention: per-head small GEMMs (T x T x D) in registers ----------------
// OpenBLAS spends more time packing and dispatching than multiplying at these
// sizes, so each (b, h) runs on these kernels instead: core/attn_kern_internal.h
// compiled for AVX2 (8 lanes) and AVX-512 (16 lanes).
#define X8 __attribute__((target("avx2,fma")))
#define X16 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))

X8 static inline __m256i x8_mask(int64_t n) { // lanes [0, n) on
    const int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    __m256i i;
    memcpy(&i, idx, sizeof i);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), i);
}

// dst[p*T + j] = src[j*ld + p] (p < D, j < T): a head's K or V transposed,
// in 8 x 8 register blocks.
X8 static void x8_transpose(float *dst, const float *src, int64_t T, int64_t D, int64_t ld) {
    int64_t j = 0, D8 = D / 8 * 8;
    for (; j + 8 <= T; j += 8)
        for (int64_t p = 0; p < D8; p += 8) {
            const float *s = src + j * ld + p;
            __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ld), r2 = _mm256_loadu_ps(s + 2 * ld),
                   r3 = _mm256_loadu_ps(s + 3 * ld), r4 = _mm256_loadu_ps(s + 4 * ld), r5 = _mm256_loadu_ps(s + 5 * ld),
                   r6 = _mm256_loadu_ps(s + 6 * ld), r7 = _mm256_loadu_ps(s + 7 * ld);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                   t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + p * T + j;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + T, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * T, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * T, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * T, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * T, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * T, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * T, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    for (int64_t jj = 0; jj < T; jj++) // remaining rows of src (j >= T/8*8) and columns (p >= D/8*8)
        for (int64_t p = jj < j ? D8 : 0; p < D; p++) dst[p * T + jj] = src[jj * ld + p];
}

#define KW 8
#define KATTR X8
#define K(name) x8_##name
#define FMV(name) vlm_x8##name
#define VF __m256
#define VI vlm_x8i
#define KIOTA ((VI){0, 1, 2, 3, 4, 5, 6, 7})
#define KMASK __m256i
#define KMK(w) x8_mask(w)
#define KLDU(p) _mm256_loadu_ps(p)
#define KSTU(p, v) _mm256_storeu_ps((p), (v))
#define KLDM(p, m) _mm256_maskload_ps((p), (m))
#define KSTM(p, v, m) _mm256_maskstore_ps((p), (m), (v))
#define KBC(p) _mm256_broadcast_ss(p)
#define KFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#include "core/attn_kern_internal.h"

#define KW 16
#define KATTR X16
#define K(name) x16_##name
#define FMV(name) vlm_x16##name
#define VF __m512
#define VI vlm_x16i
#define KIOTA ((VI){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
#define KMASK __mmask16
#define KMK(w) ((__mmask16)((w) >= 16 ? 0xFFFFu : (w) <= 0 ? 0u : (1u << (w)) - 1u))
#define KLDU(p) _mm512_loadu_ps(p)
#define KSTU(p, v) _mm512_storeu_ps((p), (v))
#define KLDM(p, m) _mm512_maskz_loadu_ps((m), (p))
#define KSTM(p, v, m) _mm512_mask_storeu_ps((p), (m), (v))
#define KBC(p) _mm512_set1_ps(*(p))
#define KFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#include "core/attn_kern_internal.h"
#endif

// att[b, t, h*D:(h+1)*D] = softmax(q k^T / sqrt D) v per (b, h) of the chunk;
// lse per (b, h, row). S: ATTN_SCRATCH(T, D) floats.
static void attn_fwd(const attn_geom *g, const float *qkv, float *att, float *lse, float *S) {
    int64_t B = g->B, T = g->T, C = g->C, H = g->H, D = g->D;
    float scale = 1.0f / sqrtf((float)D);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
#ifdef VLM_FASTMATH_X8
            if (vlm_use_x16()) {
                x16_attn_fwd_head(g, qkv, att, lse, S, S + T * T, b, h);
                continue;
            }
            if (vlm_use_x8()) {
                x8_attn_fwd_head(g, qkv, att, lse, S, S + T * T, b, h);
                continue;
            }
#endif
            const float *q = qkv + b * T * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
            vlm_gemm(mat(S, T, T, T), mat(q, T, D, 3 * C), tr(mat(k, T, D, 3 * C)), scale, 0);
            const float *vm = g->vmask ? g->vmask + b * T : NULL;
            float *l = lse + (b * H + h) * T;
            for (int64_t i = 0; i < T; i++) l[i] = softmax_row(S + i * T, g->causal ? i + 1 : T, T, vm);
            vlm_gemm(mat(att + b * T * C + h * D, T, D, C), mat(S, T, T, T), mat(v, T, D, 3 * C), 1, 0);
        }
}

// dqkv (fully written) from datt = d(attention output), recomputing P from q,
// k and lse. nz: [B*T] 1 where a query row's output gradient may be nonzero,
// or NULL (all). P: ATTN_SCRATCH(T, D), dP: T*T floats.
static void attn_bwd(const attn_geom *g, const float *qkv, const float *datt, const float *lse, float *dqkv, float *P,
                     float *dP, const uint8_t *nz) {
    int64_t B = g->B, T = g->T, C = g->C, H = g->H, D = g->D;
    float scale = 1.0f / sqrtf((float)D);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
#ifdef VLM_FASTMATH_X8
            if (vlm_use_x8()) {
                int64_t nr = 0;
                int32_t *rows = (int32_t *)(P + T * T + 3 * D * T);
                if (nz)
                    for (int64_t i = 0; i < T; i++)
                        if (nz[b * T + i]) rows[nr++] = (int32_t)i;
                int x16 = vlm_use_x16();
                if (nz && nr < T) {
                    if (x16)
                        x16_attn_bwd_head_rows(g, qkv, datt, lse, dqkv, P, dP, P + T * T, P + T * T + D * T, rows, nr,
                                               b, h);
                    else
                        x8_attn_bwd_head_rows(g, qkv, datt, lse, dqkv, P, dP, P + T * T, P + T * T + D * T, rows, nr,
                                              b, h);
                } else if (x16) {
                    x16_attn_bwd_head(g, qkv, datt, lse, dqkv, P, dP, P + T * T, b, h);
                } else {
                    x8_attn_bwd_head(g, qkv, datt, lse, dqkv, P, dP, P + T * T, b, h);
                }
                continue;
            }
#endif
            // portable path: every row (rows without a gradient contribute zero)
            const float *q = qkv + b * T * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + b * T * 3 * C + h * D, *dk = dq + C, *dv = dq + 2 * C;
            const float *dO = datt + b * T * C + h * D;
            vlm_gemm(mat(P, T, T, T), mat(q, T, D, 3 * C), tr(mat(k, T, D, 3 * C)), scale, 0);
            const float *vm = g->vmask ? g->vmask + b * T : NULL;
            const float *l = lse + (b * H + h) * T;
            for (int64_t i = 0; i < T; i++) prob_row(P + i * T, g->causal ? i + 1 : T, T, vm, l[i]);
            vlm_gemm(mat(dv, T, D, 3 * C), tr(mat(P, T, T, T)), mat(dO, T, D, C), 1, 0);  // dV = P^T dO
            vlm_gemm(mat(dP, T, T, T), mat(dO, T, D, C), tr(mat(v, T, D, 3 * C)), 1, 0); // dP = dO V^T
            for (int64_t i = 0; i < T; i++) { // dS = P * (dP - rowsum(P * dP)) / sqrt D
                float *pr = P + i * T, *dr = dP + i * T, dot = 0;
                int64_t n = g->causal ? i + 1 : T;
#pragma omp simd reduction(+ : dot)
                for (int64_t j = 0; j < n; j++) dot += pr[j] * dr[j];
#pragma omp simd
                for (int64_t j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
            }
            vlm_gemm(mat(dq, T, D, 3 * C), mat(dP, T, T, T), mat(k, T, D, 3 * C), 1, 0);     // dQ = dS K
            vlm_gemm(mat(dk, T, D, 3 * C), tr(mat(dP, T, T, T)), mat(q, T, D, 3 * C), 1, 0); // dK = dS^T Q
        }
    (void)nz;
}

// vm[b*T + j] = 1 unless key j of sequence b is padding.
static float *make_vmask(float *vm, const uint8_t *pad, int64_t n) {
    if (!pad) return NULL;
    for (int64_t i = 0; i < n; i++) vm[i] = pad[i] ? 0.0f : 1.0f;
    return vm;
}

// Rows are processed in chunks of whole sequences (~512 rows): each thread
// takes whole chunks through a layer with single-threaded GEMMs and serial
// elementwise passes, so the per-chunk temporaries -- LN outputs, act(h), the
// [rows, 4C] gradients -- stay in that core's cache and threads never wait on
// each other inside a layer. The chunk count is a multiple of the thread count
// where the batch allows.
static int64_t chunk_seqs(int64_t B, int64_t T, int64_t nt) {
    int64_t per = (512 + T - 1) / (T > 0 ? T : 1); // sequences per ~512 rows
    int64_t nch = (B + per - 1) / per;
    nch = (nch + nt - 1) / nt * nt;
    if (nch > B) nch = B;
    if (nch < 1) nch = 1;
    return (B + nch - 1) / nch;
}

// Pointers of one layer's saved tensors for the rows of sequences [b0, b0+nb).
typedef struct {
    float *xh1, *qkv, *att, *xh2, *h, *rstd1, *rstd2, *lse;
} tr_rows;

static tr_rows rows_at(float *base, const tr_layout *lay, int64_t b0, int64_t T, int64_t C, int64_t M, int64_t H) {
    int64_t r0 = b0 * T;
    tr_rows r = {base + lay->xh1 + r0 * C, base + lay->qkv + r0 * 3 * C, base + lay->att + r0 * C,
                 base + lay->xh2 + r0 * C, base + lay->h + r0 * M,      base + lay->rstd1 + r0,
                 base + lay->rstd2 + r0,   base + lay->lse + b0 * H * T};
    return r;
}

// Per-thread scratch of the forward (floats, for chunks of R rows).
typedef struct {
    int64_t lo, g, attn, sv, size;
} fwd_ws;

static fwd_ws fwd_ws_layout(int64_t R, int64_t T, int64_t C, int64_t M, int64_t D, int64_t sv_size) {
    fwd_ws w;
    w.lo = 0;
    w.g = w.lo + rup16(R * C);
    w.attn = w.g + rup16(R * M);
    w.sv = w.attn + ATTN_SCRATCH(T, D);
    w.size = w.sv + sv_size;
    return w;
}

// Per-thread scratch of the backward: chunk buffers, the compact live rows of
// the top layer, and the thread's own accumulators of the layer's parameter
// gradients (13 slots: the block's 12 parameters + proj_b of the block below).
typedef struct {
    int64_t A, Bb, Cc, attn, dP, kd, kh, kx2, katt, kdatt, kr2, kidx, knz, grads, size;
    int64_t goff[13], gsize;
} bwd_ws;

static void block_params(const vlm_transformer *t, int l, int idx[13]) {
    const vlm_block *b = &t->blocks[l];
    int v[13] = {b->ln1_w, b->ln1_b, b->in_w,  b->in_b, b->out_w,  b->out_b, b->ln2_w,
                 b->ln2_b, b->fc_w,  b->fc_b,  b->proj_w, b->proj_b, l > 0 ? t->blocks[l - 1].proj_b : -1};
    memcpy(idx, v, sizeof v);
}

static bwd_ws bwd_ws_layout(const vlm_transformer *t, vlm_params *ps, int64_t R, int64_t T) {
    const vlm_transformer_cfg *cf = &t->cfg;
    int64_t C = cf->width, M = cf->mlp_width, D = C / cf->heads, A = M > 3 * C ? M : 3 * C;
    bwd_ws w;
    w.A = 0;
    w.Bb = w.A + rup16(R * A);
    w.Cc = w.Bb + rup16(R * C);
    w.attn = w.Cc + rup16(R * C);
    w.dP = w.attn + ATTN_SCRATCH(T, D);
    w.kd = w.dP + rup16(T * T);
    w.kh = w.kd + rup16(R * C);
    w.kx2 = w.kh + rup16(R * A);
    w.katt = w.kx2 + rup16(R * C);
    w.kdatt = w.katt + rup16(R * C);
    w.kr2 = w.kdatt + rup16(R * C);
    w.kidx = w.kr2 + rup16(R);
    w.knz = w.kidx + rup16(R);
    w.grads = w.knz + rup16(R / 4 + 1);
    int idx[13];
    block_params(t, cf->layers > 0 ? cf->layers - 1 : 0, idx);
    w.gsize = 0;
    for (int k = 0; k < 13; k++) {
        w.goff[k] = w.gsize;
        const vlm_tensor *p = k < 12 ? vlm_params_get(ps, idx[k]) : NULL;
        w.gsize += rup16(k < 12 ? vlm_numel(p) : C); // same shapes in every block
    }
    w.size = w.grads + w.gsize;
    return w;
}

typedef struct {
    const vlm_transformer *t;
    vlm_params *ps;
    int64_t C, M;
    float *A, *Bb; // [R, max(M, 3C)], [R, C]
    float *g[13];  // this thread's gradient accumulators (NULL: no gradient wanted)
    void *bf;      // this thread's bf16 GEMM packing space (amp_bf16), or NULL (fp32)
} bwd_ctx;

enum { G_LN1_W, G_LN1_B, G_IN_W, G_IN_B, G_OUT_W, G_OUT_B, G_LN2_W, G_LN2_B, G_FC_W, G_FC_B, G_PROJ_W, G_PROJ_B, G_BELOW_B };

// Backward of the MLP half and of out_proj of block bk over n rows (dres, h,
// xh2, rstd2, att: those rows, updated in place: dres gets the LN_2 backward,
// h becomes act'(h)); datt receives d(attention output) = dres @ W_out.
static void mlp_out_bwd(const bwd_ctx *b, const vlm_block *bk, int top, int64_t n, float *dres, float *h,
                        const float *xh2, const float *rstd2, const float *att, float *datt) {
    vlm_params *ps = b->ps;
    int64_t C = b->C, M = b->M;
    int act = b->t->cfg.act;
    float *const *g = b->g, *A = b->A, *Bb = b->Bb;
    // proj_b's gradient is colsum(dres): below the top layer summed by the LN_1 backward above.
    if (top && g[G_PROJ_B]) colsum(dres, n, C, g[G_PROJ_B]);
    // act(h) for dW_proj and act'(h) in place of h (its last use) in one pass
    for (int64_t r = 0; r < n; r++) vlm_act_fwd_grad_n(act, h + r * M, A + r * M, h + r * M, M);
    if (g[G_PROJ_W]) tgemm(b->bf, mat(g[G_PROJ_W], C, M, M), tr(mat(dres, n, C, C)), mat(A, n, M, M), 1, 1);
    tgemm(b->bf, mat(A, n, M, M), mat(dres, n, C, C), mat(pdata(ps, bk->proj_w), C, M, M), 1, 0); // d act(h)
    mul_colsum(A, h, n, M, g[G_FC_B]); // dh = d act(h) * act'(h)
    if (g[G_FC_W]) {
        ln_out(xh2, pdata(ps, bk->ln2_w), pdata(ps, bk->ln2_b), Bb, n, C);
        tgemm(b->bf, mat(g[G_FC_W], M, C, C), tr(mat(A, n, M, M)), mat(Bb, n, C, C), 1, 1);
    }
    tgemm(b->bf, mat(datt, n, C, C), mat(A, n, M, M), mat(pdata(ps, bk->fc_w), M, C, C), 1, 0); // d ln_2 out
    ln_bwd(datt, xh2, rstd2, pdata(ps, bk->ln2_w), dres, g[G_LN2_W], g[G_LN2_B], g[G_OUT_B], n, C);
    if (g[G_OUT_W]) tgemm(b->bf, mat(g[G_OUT_W], C, C, C), tr(mat(dres, n, C, C)), mat(att, n, C, C), 1, 1);
    tgemm(b->bf, mat(datt, n, C, C), mat(dres, n, C, C), mat(pdata(ps, bk->out_w), C, C, C), 1, 0);
}

static void gather_rows(float *dst, const float *src, const int32_t *idx, int64_t k, int64_t w) {
    for (int64_t i = 0; i < k; i++) memcpy(dst + i * w, src + (int64_t)idx[i] * w, sizeof(float) * (size_t)w);
}

// Rows of a ([n, w]) that are not all zero: their ids in idx (and 1/0 in nz),
// returns how many.
static int64_t live_rows(const float *a, int64_t n, int64_t w, int32_t *idx, uint8_t *nz) {
    int64_t k = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *ar = a + r * w;
        int64_t j = 0;
        while (j < w && ar[j] == 0) j++;
        if (nz) nz[r] = j < w;
        if (j < w) idx[k++] = (int32_t)r;
    }
    return k;
}

// Backward of block l over the sequences [b0, b0 + nb) (one thread). Rows
// whose gradient is exactly zero contribute nothing, so each half of the
// block runs on the live rows only (gathered into compact buffers) when
// there are dead ones: rows nobody consumed above (pooling: all but the
// class / EOT token in the top block) and, in a causal tower pooled at EOT,
// every row after a sequence's EOT token in every block.
static void bwd_chunk(const bwd_ctx *bc, const tr_saved *s, const tr_layout *lay, const bwd_ws *wl, float *w,
                      const float *vmask, float *dres_all, int l, int dx_needed, int64_t b0, int64_t nb) {
    const vlm_transformer *t = s->t;
    const vlm_transformer_cfg *cf = &t->cfg;
    vlm_params *ps = s->ps;
    const vlm_block *bk = &t->blocks[l];
    int64_t T = s->T, C = cf->width, H = cf->heads, D = C / H, M = cf->mlp_width, n = nb * T;
    int top = l == cf->layers - 1;
    float *const *g = bc->g, *A = bc->A, *Bb = bc->Bb, *Cc = w + wl->Cc;
    tr_rows sv = rows_at(s->save + (int64_t)l * lay->size, lay, b0, T, C, M, H);
    float *dres = dres_all + b0 * T * C;
    attn_geom ag = {nb, T, C, H, D, cf->causal, vmask ? vmask + b0 * T : NULL};
    int32_t *kidx = (int32_t *)(w + wl->kidx);
    uint8_t *knz = (uint8_t *)(w + wl->knz);
    float *kd = w + wl->kd, *kh = w + wl->kh, *kx = w + wl->kx2, *katt = w + wl->katt, *kc = w + wl->kdatt,
          *kr = w + wl->kr2;
    // ---- MLP and out_proj: x += out_proj(attn) ; x += c_proj(act(c_fc(ln_2(x)))) ----
    int64_t k = live_rows(dres, n, C, kidx, knz);
    if (k == 0) return; // nothing flows back through these sequences
    int sparse = k * 20 <= n * 19;
    if (sparse) {
        gather_rows(kd, dres, kidx, k, C);
        gather_rows(kh, sv.h, kidx, k, M);
        gather_rows(kx, sv.xh2, kidx, k, C);
        gather_rows(katt, sv.att, kidx, k, C);
        gather_rows(kr, sv.rstd2, kidx, k, 1);
        mlp_out_bwd(bc, bk, top, k, kd, kh, kx, kr, katt, kc);
        memset(Cc, 0, sizeof(float) * (size_t)(n * C));
        for (int64_t i = 0; i < k; i++) {
            memcpy(dres + (int64_t)kidx[i] * C, kd + i * C, sizeof(float) * (size_t)C);
            memcpy(Cc + (int64_t)kidx[i] * C, kc + i * C, sizeof(float) * (size_t)C);
        }
    } else {
        mlp_out_bwd(bc, bk, top, n, dres, sv.h, sv.xh2, sv.rstd2, sv.att, Cc);
    }
    // ---- attention (query rows with a gradient only) and in_proj ----
    attn_bwd(&ag, sv.qkv, Cc, sv.lse, A, w + wl->attn, w + wl->dP, sparse ? knz : NULL); // A = d qkv [n, 3C]
    int lnw = dx_needed || g[G_LN1_W] || g[G_LN1_B];
    k = live_rows(A, n, 3 * C, kidx, NULL);
    if (k * 20 <= n * 19) {
        // kh: the live rows' d qkv, kx / kr: their xh1 / rstd1, kd: their dres, kc: d ln_1 out
        gather_rows(kh, A, kidx, k, 3 * C);
        if (g[G_IN_B]) colsum(kh, k, 3 * C, g[G_IN_B]);
        gather_rows(kx, sv.xh1, kidx, k, C);
        if (g[G_IN_W]) {
            ln_out(kx, pdata(ps, bk->ln1_w), pdata(ps, bk->ln1_b), Bb, k, C);
            tgemm(bc->bf, mat(g[G_IN_W], 3 * C, C, C), tr(mat(kh, k, 3 * C, 3 * C)), mat(Bb, k, C, C), 1, 1);
        }
        if (lnw) {
            gather_rows(kr, sv.rstd1, kidx, k, 1);
            gather_rows(kd, dres, kidx, k, C);
            tgemm(bc->bf, mat(kc, k, C, C), mat(kh, k, 3 * C, 3 * C), mat(pdata(ps, bk->in_w), 3 * C, C, C), 1, 0);
            ln_bwd(kc, kx, kr, pdata(ps, bk->ln1_w), dx_needed ? kd : NULL, g[G_LN1_W], g[G_LN1_B], NULL, k, C);
            if (dx_needed)
                for (int64_t i = 0; i < k; i++)
                    memcpy(dres + (int64_t)kidx[i] * C, kd + i * C, sizeof(float) * (size_t)C);
        }
        if (dx_needed && g[G_BELOW_B]) colsum(dres, n, C, g[G_BELOW_B]); // every row's, live or not
    } else {
        if (g[G_IN_B]) colsum(A, n, 3 * C, g[G_IN_B]);
        if (g[G_IN_W]) {
            ln_out(sv.xh1, pdata(ps, bk->ln1_w), pdata(ps, bk->ln1_b), Bb, n, C);
            tgemm(bc->bf, mat(g[G_IN_W], 3 * C, C, C), tr(mat(A, n, 3 * C, 3 * C)), mat(Bb, n, C, C), 1, 1);
        }
        if (lnw) {
            tgemm(bc->bf, mat(Cc, n, C, C), mat(A, n, 3 * C, 3 * C), mat(pdata(ps, bk->in_w), 3 * C, C, C), 1, 0);
            ln_bwd(Cc, sv.xh1, sv.rstd1, pdata(ps, bk->ln1_w), dx_needed ? dres : NULL, g[G_LN1_W], g[G_LN1_B],
                   g[G_BELOW_B], n, C);
        }
    }
}

static void transformer_backward(vlm_ctx *c, vlm_node *nd) {
    tr_saved *s = nd->saved;
    const vlm_transformer *t = s->t;
    const vlm_transformer_cfg *cf = &t->cfg;
    vlm_params *ps = s->ps;
    vlm_tensor *x = nd->in[0], *y = nd->out;
    int64_t B = s->B, T = s->T, N = B * T, C = cf->width, H = cf->heads, M = cf->mlp_width;
    int nt = vlm_nthreads();
    int64_t CB = chunk_seqs(B, T, nt), R = CB * T, nch = (B + CB - 1) / CB;
    tr_layout lay = layout(B, T, C, M, H);
    bwd_ws wl = bwd_ws_layout(t, ps, R, T);
    if (!vlm_ctx_gemm_prepare(c)) return;
    int64_t o_vm = (int64_t)nt * wl.size;
    float *ws = ws_get(c, t, o_vm + rup16(N));
    if (!ws) return;
    const float *vmask = make_vmask(ws + o_vm, s->pad, N);
    float *dres_all = y->grad; // the residual stream's gradient, updated in place layer by layer
    for (int l = cf->layers - 1; l >= 0; l--) {
        int idx[13];
        block_params(t, l, idx);
        int want[13];
        for (int k = 0; k < 13; k++) want[k] = idx[k] >= 0 && pgrad(ps, idx[k]);
        int dx_needed = l > 0 || x->requires_grad;
#pragma omp parallel num_threads(nt)
        {
            int tid = vlm_thread_id(), nth = 1;
#ifdef _OPENMP
            nth = omp_get_num_threads();
#endif
            float *w = ws + (int64_t)tid * wl.size, *gb = w + wl.grads;
            memset(gb, 0, sizeof(float) * (size_t)wl.gsize);
            bwd_ctx bc = {t, ps, C, M, w + wl.A, w + wl.Bb, {0}, vlm_ctx_gemm_scratch(c)};
            for (int k = 0; k < 13; k++) bc.g[k] = want[k] ? gb + wl.goff[k] : NULL;
            for (int64_t ch = tid; ch < nch; ch += nth) {
                int64_t b0 = ch * CB, nb = B - b0 < CB ? B - b0 : CB;
                bwd_chunk(&bc, s, &lay, &wl, w, vmask, dres_all, l, dx_needed, b0, nb);
            }
#pragma omp barrier
            // sum the threads' accumulators into the parameter store, in thread order
            for (int k = 0; k < 13; k++) {
                if (!want[k]) continue;
                float *dst = pgr(ps, idx[k]);
                int64_t cnt = vlm_numel(vlm_params_get(ps, idx[k]));
#pragma omp for schedule(static) nowait
                for (int64_t j = 0; j < cnt; j++) {
                    float acc = 0;
                    for (int u = 0; u < nth; u++) acc += ws[(int64_t)u * wl.size + wl.grads + wl.goff[k] + j];
                    dst[j] += acc;
                }
            }
        }
    }
    if (x->requires_grad) {
        float *dx = x->grad;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N * C; i++) dx[i] += dres_all[i];
    }
}

// Forward of block l over the sequences [b0, b0 + nb) (one thread); pending:
// the previous block's c_proj bias, folded into this LN_1 pass.
static void fwd_chunk(const vlm_transformer *t, vlm_params *ps, tr_rows sv, float *xs, float *w, const fwd_ws *wl,
                      const float *vmask, const float *pending, int l, int64_t T, int64_t nb, void *bf) {
    const vlm_transformer_cfg *cf = &t->cfg;
    const vlm_block *bk = &t->blocks[l];
    int64_t C = cf->width, H = cf->heads, D = C / H, M = cf->mlp_width, n = nb * T;
    float *lo = w + wl->lo, *gb = w + wl->g;
    attn_geom ag = {nb, T, C, H, D, cf->causal, vmask};
    const float *bin = pdata(ps, bk->in_b), *bfc = pdata(ps, bk->fc_b);
    ln_fwd(xs, pending, pdata(ps, bk->ln1_w), pdata(ps, bk->ln1_b), cf->ln_eps, sv.xh1, lo, sv.rstd1, n, C);
    for (int64_t r = 0; r < n; r++) memcpy(sv.qkv + r * 3 * C, bin, sizeof(float) * (size_t)(3 * C));
    tgemm(bf, mat(sv.qkv, n, 3 * C, 3 * C), mat(lo, n, C, C), tr(mat(pdata(ps, bk->in_w), 3 * C, C, C)), 1, 1);
    attn_fwd(&ag, sv.qkv, sv.att, sv.lse, w + wl->attn);
    tgemm(bf, mat(xs, n, C, C), mat(sv.att, n, C, C), tr(mat(pdata(ps, bk->out_w), C, C, C)), 1, 1);
    ln_fwd(xs, pdata(ps, bk->out_b), pdata(ps, bk->ln2_w), pdata(ps, bk->ln2_b), cf->ln_eps, sv.xh2, lo, sv.rstd2, n,
           C);
    tgemm(bf, mat(sv.h, n, M, M), mat(lo, n, C, C), tr(mat(pdata(ps, bk->fc_w), M, C, C)), 1, 0);
    for (int64_t r = 0; r < n; r++) {
        float *hr = sv.h + r * M;
#pragma omp simd
        for (int64_t j = 0; j < M; j++) hr[j] += bfc[j];
        vlm_act_fwd_n(cf->act, hr, gb + r * M, M);
    }
    tgemm(bf, mat(xs, n, C, C), mat(gb, n, M, M), tr(mat(pdata(ps, bk->proj_w), C, M, M)), 1, 1);
}

vlm_tensor *vlm_op_transformer(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                               const uint8_t *key_pad) {
    if (!vlm_check_f32(c, "transformer", x, "x")) return NULL;
    const vlm_transformer_cfg *cf = &t->cfg;
    char s1[96];
    if (x->ndim != 3 || x->shape[2] != cf->width)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "transformer: x %s must be [B, T, %d]", vlm_shape_str(x, s1, sizeof s1),
                            cf->width);
    if (cf->layers == 0) return x;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], N = B * T, C = cf->width, H = cf->heads, D = C / H, M = cf->mlp_width;
    int need = vlm_needs_grad(c, x, NULL, NULL);
    for (int l = 0; l < cf->layers && c->grad_enabled && !need; l++) {
        int idx[13];
        block_params(t, l, idx);
        for (int k = 0; k < 12; k++) need |= pgrad(ps, idx[k]);
    }
    vlm_tensor *y = vlm_out(c, 3, x->shape, need);
    if (!y) return NULL;
    float *xs_all = vlm_f32(y); // the residual stream, updated in place
    memcpy(xs_all, vlm_f32(x), sizeof(float) * (size_t)(N * C));
    if (N == 0) return y;
    int nt = vlm_nthreads();
    int64_t CB = chunk_seqs(B, T, nt), R = CB * T, nch = (B + CB - 1) / CB;
    tr_layout lay = layout(B, T, C, M, H), clay = layout(CB, T, C, M, H);
    tr_saved *s = NULL;
    if (need) {
        s = vlm_arena_alloc(&c->arena, sizeof *s);
        float *save = vlm_scratch(c, (int64_t)cf->layers * lay.size);
        if (!s || !save) return vlm_ctx_fail(c, VLM_ERR_OOM, "transformer: arena out of memory");
        *s = (tr_saved){t, ps, NULL, save, B, T};
        if (key_pad) {
            uint8_t *pc = vlm_arena_alloc(&c->arena, (size_t)N);
            if (!pc) return vlm_ctx_fail(c, VLM_ERR_OOM, "transformer: arena out of memory");
            memcpy(pc, key_pad, (size_t)N);
            s->pad = pc;
        }
    }
    fwd_ws wl = fwd_ws_layout(R, T, C, M, D, need ? 0 : clay.size); // no grad: one chunk's "saved" block per thread
    if (!vlm_ctx_gemm_prepare(c)) return NULL;
    int64_t o_vm = (int64_t)nt * wl.size;
    float *ws = ws_get(c, t, o_vm + rup16(N));
    if (!ws) return NULL;
    const float *vmask = make_vmask(ws + o_vm, key_pad, N);
    // Sequences never interact, so each chunk goes through the whole stack on one thread.
#pragma omp parallel num_threads(nt)
    {
        int tid = vlm_thread_id(), nth = 1;
#ifdef _OPENMP
        nth = omp_get_num_threads();
#endif
        float *w = ws + (int64_t)tid * wl.size;
        void *bf = vlm_ctx_gemm_scratch(c);
        for (int64_t ch = tid; ch < nch; ch += nth) {
            int64_t b0 = ch * CB, nb = B - b0 < CB ? B - b0 : CB;
            float *xs = xs_all + b0 * T * C;
            const float *pending = NULL;
            for (int l = 0; l < cf->layers; l++) {
                tr_rows sv = need ? rows_at(s->save + (int64_t)l * lay.size, &lay, b0, T, C, M, H)
                                  : rows_at(w + wl.sv, &clay, 0, T, C, M, H);
                fwd_chunk(t, ps, sv, xs, w, &wl, vmask ? vmask + b0 * T : NULL, pending, l, T, nb, bf);
                pending = pdata(ps, t->blocks[l].proj_b);
            }
            for (int64_t r = 0; r < nb * T; r++)
                for (int64_t j = 0; j < C; j++) xs[r * C + j] += pending[j];
        }
    }
    if (need) {
        vlm_node *nd = vlm_record(c, "transformer", y, transformer_backward, x, NULL, NULL, NULL);
        if (nd) nd->saved = s;
    }
    return y;
}
