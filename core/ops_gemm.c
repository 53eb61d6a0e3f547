// GEMM-backed ops: matmul, linear, attention, patchify and conv2d (im2col).
#include <math.h>
#include <string.h>
#include "core/bf16.h"
#include "core/isa_internal.h"
#include "core/ops_internal.h"
#ifdef VLM_HAVE_OPENBLAS
#include <cblas.h>
#endif

// ---- generic strided GEMM dispatch -------------------------------------------
// Describes m as a row-major BLAS operand: *trans = 0 -> ld is the row stride,
// *trans = 1 -> m is the transpose of a row-major matrix with leading dim ld.
static int blas_layout(const vlm_mat *m, int *trans, int64_t *ld) {
    *trans = 0;
    *ld = 1;
    if (m->cs == 1 || m->cols == 1) {
        *trans = 0;
        *ld = m->rows == 1 ? (m->cols > 1 ? m->cols : 1) : m->rs;
        if (*ld >= m->cols) return 1;
    }
    if (m->rs == 1 || m->rows == 1) {
        *trans = 1;
        *ld = m->cols == 1 ? (m->rows > 1 ? m->rows : 1) : m->cs;
        if (*ld >= m->rows) return 1;
    }
    return 0;
}

int vlm_mat_blas_ok(const vlm_mat *m) {
    int t;
    int64_t ld;
    return blas_layout(m, &t, &ld);
}

static vlm_mat mat_t(vlm_mat m) {
    vlm_mat t = {m.p, m.cols, m.rows, m.cs, m.rs};
    return t;
}

// Part id of nt of one large GEMM: a block of rows (or, for wide C, of
// columns) of C. Returns 0 when the part is empty.
static int gemm_part(vlm_mat *C, vlm_mat *A, vlm_mat *B, int id, int nt) {
    int split_rows = C->rows >= C->cols;
    int64_t n = split_rows ? C->rows : C->cols, chunk = (n + nt - 1) / nt;
    chunk = split_rows ? chunk : (chunk + 15) / 16 * 16; // keep column blocks vector-aligned
    int64_t lo = id * chunk, hi = lo + chunk < n ? lo + chunk : n;
    if (lo >= hi) return 0;
    if (split_rows) {
        C->p += lo * C->rs;
        C->rows = hi - lo;
        A->p += lo * A->rs;
        A->rows = hi - lo;
    } else {
        C->p += lo * C->cs;
        C->cols = hi - lo;
        B->p += lo * B->cs;
        B->cols = hi - lo;
    }
    return 1;
}

#if defined(VLM_HAVE_OPENBLAS) && defined(_OPENMP)
static void gemm_blas(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta);

// One large GEMM as one part per thread (each part single-threaded OpenBLAS:
// inside a parallel region OpenBLAS does not thread, and its own threaded
// driver would malloc per call).
static void gemm_split(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta) {
#pragma omp parallel
    {
        vlm_mat Cb = C, Ab = A, Bb = B;
        if (gemm_part(&Cb, &Ab, &Bb, omp_get_thread_num(), omp_get_num_threads())) gemm_blas(Cb, Ab, Bb, alpha, beta);
    }
}

#endif

// C (+)= alpha A B on the calling thread (OpenBLAS stays single-threaded
// inside a parallel region and for small sizes).
static void gemm_blas(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta) {
    int tc = 0, ta = 0, tb = 0;
    int64_t ldc = 1, lda = 1, ldb = 1;
    blas_layout(&C, &tc, &ldc);
    if (tc) { // C column-major: compute C^T = B^T A^T
        vlm_mat At = mat_t(A), Bt = mat_t(B);
        C = mat_t(C);
        A = Bt;
        B = At;
        blas_layout(&C, &tc, &ldc);
    }
    blas_layout(&A, &ta, &lda);
    blas_layout(&B, &tb, &ldb);
#ifdef VLM_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)C.rows,
                (int)C.cols, (int)A.cols, alpha, A.p, (int)lda, B.p, (int)ldb, beta, C.p, (int)ldc);
#else
    for (int64_t i = 0; i < C.rows; i++)
        for (int64_t j = 0; j < C.cols; j++) {
            float s = 0;
            for (int64_t k = 0; k < A.cols; k++) s += A.p[i * A.rs + k * A.cs] * B.p[k * B.rs + j * B.cs];
            float *o = &C.p[i * C.rs + j * C.cs];
            *o = alpha * s + (beta != 0 ? *o : 0);
        }
#endif
}

void vlm_gemm(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta) {
    if (C.rows == 0 || C.cols == 0) return;
    if (A.cols == 0) { // empty inner dim: C = beta*C
        if (beta == 0)
            for (int64_t i = 0; i < C.rows; i++)
                for (int64_t j = 0; j < C.cols; j++) C.p[i * C.rs + j * C.cs] = 0;
        return;
    }
#if defined(VLM_HAVE_OPENBLAS) && defined(_OPENMP)
    // Large GEMMs outside a parallel region are split across our own threads
    // (each block runs single-threaded OpenBLAS): OpenBLAS's threaded driver
    // mallocs a job array per call, which would break the no-malloc step.
    if (!omp_in_parallel() && omp_get_max_threads() > 1 && C.rows * C.cols * A.cols >= (1 << 18)) {
        gemm_split(C, A, B, alpha, beta);
        return;
    }
#endif
    gemm_blas(C, A, B, alpha, beta);
}

// ---- the context's precision ---------------------------------------------------
static size_t scratch_slice(void) { return (vlm_gemm_bf16_scratch_bytes() + 63) / 64 * 64; }

int vlm_ctx_gemm_prepare(vlm_ctx *c) {
    if (!c->precision) return 1;
    size_t need = scratch_slice() * (size_t)vlm_nthreads();
    if (c->gemm_scratch_bytes >= need) return 1;
    free(c->gemm_scratch);
    c->gemm_scratch = aligned_alloc(64, need);
    c->gemm_scratch_bytes = c->gemm_scratch ? need : 0;
    if (!c->gemm_scratch) vlm_ctx_fail(c, VLM_ERR_OOM, "gemm: cannot allocate %zu bytes of bf16 packing space", need);
    return c->gemm_scratch != NULL;
}

void *vlm_ctx_gemm_scratch(vlm_ctx *c) {
    size_t per = scratch_slice(), off = per * (size_t)vlm_thread_id();
    if (!c->precision || !c->gemm_scratch || off + per > c->gemm_scratch_bytes) return NULL;
    return (char *)c->gemm_scratch + off;
}

void vlm_ctx_gemm(vlm_ctx *c, vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta) {
    if (!c || !c->precision || C.rows == 0 || C.cols == 0 || A.cols == 0) {
        vlm_gemm(C, A, B, alpha, beta);
        return;
    }
#ifdef _OPENMP
    if (omp_in_parallel()) { // one thread's part of a parallel op
        void *s = vlm_ctx_gemm_scratch(c);
        if (s) vlm_gemm_bf16(C, A, B, alpha, beta, s);
        else vlm_gemm(C, A, B, alpha, beta);
        return;
    }
#endif
    if (!vlm_ctx_gemm_prepare(c)) return;
    if (vlm_nthreads() > 1 && C.rows * C.cols * A.cols >= (1 << 18)) {
#pragma omp parallel
        {
            vlm_mat Cb = C, Ab = A, Bb = B;
            int nt = 1;
#ifdef _OPENMP
            nt = omp_get_num_threads();
#endif
            if (gemm_part(&Cb, &Ab, &Bb, vlm_thread_id(), nt))
                vlm_gemm_bf16(Cb, Ab, Bb, alpha, beta, vlm_ctx_gemm_scratch(c));
        }
        return;
    }
    vlm_gemm_bf16(C, A, B, alpha, beta, c->gemm_scratch);
}

// ---- matmul -------------------------------------------------------------------
static vlm_mat tmat(const vlm_tensor *t, float *p, int64_t off) {
    int n = t->ndim;
    vlm_mat m = {p + off, t->shape[n - 2], t->shape[n - 1], t->stride[n - 2], t->stride[n - 1]};
    return m;
}

// Offset of batch index bi (over dims [0, nb)) in t, where t may have fewer
// batch dims (then the missing leading dims broadcast).
static int64_t batch_off(const vlm_tensor *t, int nb, const int64_t *bshape, int64_t bi) {
    int64_t off = 0;
    int tb = t->ndim - 2;
    for (int d = nb - 1; d >= 0; d--) {
        int64_t id = bi % bshape[d];
        bi /= bshape[d];
        int td = d - (nb - tb);
        if (td >= 0 && t->shape[td] != 1) off += id * t->stride[td];
    }
    return off;
}

static void matmul_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *a = n->in[0], *b = n->in[1], *o = n->out;
    int nb = o->ndim - 2;
    int64_t nbatch = 1;
    for (int d = 0; d < nb; d++) nbatch *= o->shape[d];
    (void)c;
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t oa = batch_off(a, nb, o->shape, bi), ob = batch_off(b, nb, o->shape, bi), oo = batch_off(o, nb, o->shape, bi);
        vlm_mat G = tmat(o, o->grad, oo);
        // dA += dC B^T ; dB += A^T dC
        if (a->requires_grad) vlm_ctx_gemm(c, tmat(a, a->grad, oa), G, mat_t(tmat(b, b->data, ob)), 1, 1);
        if (b->requires_grad) vlm_ctx_gemm(c, tmat(b, b->grad, ob), mat_t(tmat(a, a->data, oa)), G, 1, 1);
    }
}

vlm_tensor *vlm_op_matmul(vlm_ctx *c, vlm_tensor *a, vlm_tensor *b) {
    if (!vlm_check_f32(c, "matmul", a, "a") || !vlm_check_f32(c, "matmul", b, "b")) return NULL;
    char sa[96], sb[96];
    if (a->ndim < 2 || b->ndim < 2 || a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "matmul: cannot multiply %s by %s", vlm_shape_str(a, sa, sizeof sa),
                            vlm_shape_str(b, sb, sizeof sb));
    // Batch dims: b's must equal a's trailing batch dims (or be 1).
    int nb = a->ndim - 2, nbb = b->ndim - 2;
    if (nbb > nb)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "matmul: b %s has more batch dims than a %s", vlm_shape_str(b, sb, sizeof sb),
                            vlm_shape_str(a, sa, sizeof sa));
    for (int d = 0; d < nbb; d++)
        if (b->shape[d] != 1 && b->shape[d] != a->shape[nb - nbb + d])
            return vlm_ctx_fail(c, VLM_ERR_SHAPE, "matmul: batch dims of %s and %s differ", vlm_shape_str(a, sa, sizeof sa),
                                vlm_shape_str(b, sb, sizeof sb));
    vlm_mat ma = tmat(a, a->data, 0), mb = tmat(b, b->data, 0);
    if (!vlm_mat_blas_ok(&ma)) a = vlm_op_contiguous(c, a);
    if (!vlm_mat_blas_ok(&mb)) b = vlm_op_contiguous(c, b);
    if (!a || !b) return NULL;
    int64_t shape[VLM_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    shape[a->ndim - 1] = b->shape[b->ndim - 1];
    int g = vlm_needs_grad(c, a, b, NULL);
    vlm_tensor *o = vlm_out(c, a->ndim, shape, g);
    if (!o) return NULL;
    int64_t nbatch = 1;
    for (int d = 0; d < nb; d++) nbatch *= shape[d];
    int64_t M = shape[a->ndim - 2], N = shape[a->ndim - 1], K = a->shape[a->ndim - 1];
    // Many small matrices (attention-like): parallel over the batch, BLAS
    // single-threaded inside; otherwise let BLAS use all threads.
    if (nbatch >= 2 * vlm_nthreads() && M * N * K < (1 << 21)) {
#pragma omp parallel for schedule(static)
        for (int64_t bi = 0; bi < nbatch; bi++)
            vlm_gemm(tmat(o, o->data, batch_off(o, nb, shape, bi)), tmat(a, a->data, batch_off(a, nb, shape, bi)),
                     tmat(b, b->data, batch_off(b, nb, shape, bi)), 1, 0);
    } else {
        for (int64_t bi = 0; bi < nbatch; bi++)
            vlm_ctx_gemm(c, tmat(o, o->data, batch_off(o, nb, shape, bi)), tmat(a, a->data, batch_off(a, nb, shape, bi)),
                     tmat(b, b->data, batch_off(b, nb, shape, bi)), 1, 0);
    }
    if (g) vlm_record(c, "matmul", o, matmul_backward, a, b, NULL, NULL);
    return o;
}

// ---- linear -------------------------------------------------------------------
// x: [R, K] rows, w: [N, K], y: [R, N]
static void linear_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    int64_t N = w->shape[0], K = w->shape[1], R = vlm_numel(x) / K;
    (void)c;
    vlm_mat dY = {y->grad, R, N, N, 1};
    if (x->requires_grad) { // dX[R,K] += dY[R,N] W[N,K]
        vlm_mat dX = {x->grad, R, K, K, 1}, W = {vlm_f32(w), N, K, K, 1};
        vlm_ctx_gemm(c, dX, dY, W, 1, 1);
    }
    if (w->requires_grad) { // dW[N,K] += dY^T[N,R] X[R,K]
        vlm_mat dW = {w->grad, N, K, K, 1}, X = {vlm_f32(x), R, K, K, 1};
        vlm_ctx_gemm(c, dW, mat_t(dY), X, 1, 1);
    }
    if (b && b->requires_grad) { // db[N] += sum_r dY[r, :]
        const float *g = y->grad;
        float *db = b->grad;
#pragma omp parallel for schedule(static)
        for (int64_t j0 = 0; j0 < N; j0 += 16) {
            int64_t j1 = j0 + 16 < N ? j0 + 16 : N;
            float acc[16] = {0};
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += g[r * N + j];
            for (int64_t j = j0; j < j1; j++) db[j] += acc[j - j0];
        }
    }
}

vlm_tensor *vlm_op_linear(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b) {
    if (!vlm_check_f32(c, "linear", x, "x") || !vlm_check_f32(c, "linear", w, "weight")) return NULL;
    if (b && !vlm_check_f32(c, "linear", b, "bias")) return NULL;
    char sx[96], sw[96];
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1] ||
        (b && (vlm_numel(b) != w->shape[0])))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "linear: x %s does not fit weight %s%s", vlm_shape_str(x, sx, sizeof sx),
                            vlm_shape_str(w, sw, sizeof sw), b ? " (or bias size differs)" : "");
    x = vlm_ensure_contig(c, x);
    w = vlm_ensure_contig(c, w);
    if (!x || !w) return NULL;
    int64_t N = w->shape[0], K = w->shape[1], R = vlm_numel(x) / (K ? K : 1);
    int64_t shape[VLM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = N;
    int g = vlm_needs_grad(c, x, w, b);
    vlm_tensor *y = vlm_out(c, x->ndim, shape, g);
    if (!y) return NULL;
    float *yo = vlm_f32(y);
    float beta = 0;
    if (b) { // start from the bias, then GEMM accumulates (beta = 1)
        const float *bb = vlm_f32(b);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < R; r++) memcpy(yo + r * N, bb, sizeof(float) * (size_t)N);
        beta = 1;
    }
    vlm_mat Y = {yo, R, N, N, 1}, X = {vlm_f32(x), R, K, K, 1}, W = {vlm_f32(w), N, K, K, 1};
    vlm_ctx_gemm(c, Y, X, mat_t(W), 1, beta);
    if (g) vlm_record(c, "linear", y, linear_backward, x, w, b, NULL);
    return y;
}

// ---- attention ----------------------------------------------------------------
typedef struct {
    float *P;             // [B, H, Tq, Tk] probabilities
    const uint8_t *pad;   // [B, Tk] or NULL (arena copy)
    int causal;
} attn_saved;

static int64_t head_off(const vlm_tensor *t, int64_t b, int64_t h) { return b * t->stride[0] + h * t->stride[1]; }

static vlm_mat head_mat(const vlm_tensor *t, float *base, int64_t b, int64_t h) {
    vlm_mat m = {base + head_off(t, b, h), t->shape[2], t->shape[3], t->stride[2], t->stride[3]};
    return m;
}

static void attention_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *o = n->out;
    attn_saved *s = n->saved;
    int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], Tk = k->shape[2], D = q->shape[3];
    float scale = 1.0f / sqrtf((float)D);
    int nt = vlm_nthreads();
    float *scratch = vlm_scratch(c, (int64_t)nt * Tq * Tk);
    if (!scratch) return;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            float *dP = scratch + (int64_t)vlm_thread_id() * Tq * Tk;
            float *P = s->P + (b * H + h) * Tq * Tk;
            vlm_mat mP = {P, Tq, Tk, Tk, 1}, mdP = {dP, Tq, Tk, Tk, 1};
            vlm_mat dO = head_mat(o, o->grad, b, h);
            if (v->requires_grad) vlm_gemm(head_mat(v, v->grad, b, h), mat_t(mP), dO, 1, 1); // dV += P^T dO
            if (!q->requires_grad && !k->requires_grad) continue;
            vlm_gemm(mdP, dO, mat_t(head_mat(v, v->data, b, h)), 1, 0); // dP = dO V^T
            for (int64_t i = 0; i < Tq; i++) { // dS = P * (dP - rowsum(dP * P)) * scale
                float *pr = P + i * Tk, *dr = dP + i * Tk, dot = 0;
                for (int64_t j = 0; j < Tk; j++) dot += pr[j] * dr[j];
                for (int64_t j = 0; j < Tk; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
            }
            if (q->requires_grad) vlm_gemm(head_mat(q, q->grad, b, h), mdP, head_mat(k, k->data, b, h), 1, 1);
            if (k->requires_grad) vlm_gemm(head_mat(k, k->grad, b, h), mat_t(mdP), head_mat(q, q->data, b, h), 1, 1);
        }
}

vlm_tensor *vlm_op_attention(vlm_ctx *c, vlm_tensor *q, vlm_tensor *k, vlm_tensor *v, int causal,
                             const uint8_t *key_pad) {
    if (!vlm_check_f32(c, "attention", q, "q") || !vlm_check_f32(c, "attention", k, "k") ||
        !vlm_check_f32(c, "attention", v, "v"))
        return NULL;
    char s1[96], s2[96], s3[96];
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] ||
        k->shape[1] != q->shape[1] || v->shape[1] != q->shape[1] || k->shape[3] != q->shape[3] ||
        v->shape[3] != q->shape[3] || v->shape[2] != k->shape[2] || (causal && q->shape[2] != k->shape[2]))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "attention: q %s, k %s, v %s must be [B, H, T, D] with matching B, H, D%s",
                            vlm_shape_str(q, s1, sizeof s1), vlm_shape_str(k, s2, sizeof s2),
                            vlm_shape_str(v, s3, sizeof s3), causal ? " (causal needs Tq == Tk)" : "");
    if (q->stride[3] != 1) q = vlm_op_contiguous(c, q);
    if (k->stride[3] != 1) k = vlm_op_contiguous(c, k);
    if (v->stride[3] != 1) v = vlm_op_contiguous(c, v);
    if (!q || !k || !v) return NULL;
    int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], Tk = k->shape[2], D = q->shape[3];
    int g = vlm_needs_grad(c, q, k, v);
    int64_t mshape[4] = {B, Tq, H, D};
    vlm_tensor *o = vlm_out(c, 4, mshape, g);
    if (!o) return NULL;
    // Present the [B, Tq, H, D] memory as [B, H, Tq, D].
    o->shape[1] = H; o->shape[2] = Tq;
    o->stride[1] = D; o->stride[2] = H * D;
    attn_saved *s = vlm_arena_alloc(&c->arena, sizeof *s);
    float *P = vlm_scratch(c, B * H * Tq * Tk);
    if (!s || !P) return vlm_ctx_fail(c, VLM_ERR_OOM, "attention: arena out of memory");
    s->P = P;
    s->causal = causal;
    s->pad = NULL;
    if (key_pad) {
        uint8_t *pc = vlm_arena_alloc(&c->arena, (size_t)(B * Tk));
        if (!pc) return vlm_ctx_fail(c, VLM_ERR_OOM, "attention: arena out of memory");
        memcpy(pc, key_pad, (size_t)(B * Tk));
        s->pad = pc;
    }
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            float *Pb = P + (b * H + h) * Tq * Tk;
            vlm_mat mP = {Pb, Tq, Tk, Tk, 1};
            vlm_gemm(mP, head_mat(q, vlm_f32(q), b, h), mat_t(head_mat(k, vlm_f32(k), b, h)), scale, 0); // S = q k^T / sqrt(D)
            const uint8_t *pad = s->pad ? s->pad + b * Tk : NULL;
            for (int64_t i = 0; i < Tq; i++) { // masked row softmax
                float *r = Pb + i * Tk, mx = -INFINITY;
                int64_t jmax = causal ? i + 1 : Tk;
                for (int64_t j = 0; j < Tk; j++) {
                    if (j >= jmax || (pad && pad[j])) r[j] = -INFINITY;
                    else if (r[j] > mx) mx = r[j];
                }
                if (mx == -INFINITY) { // every key masked: zero output row
                    memset(r, 0, sizeof(float) * (size_t)Tk);
                    continue;
                }
                float sum = 0;
                for (int64_t j = 0; j < Tk; j++) {
                    r[j] = expf(r[j] - mx);
                    sum += r[j];
                }
                float inv = 1.0f / sum;
                for (int64_t j = 0; j < Tk; j++) r[j] *= inv;
            }
            vlm_gemm(head_mat(o, vlm_f32(o), b, h), mP, head_mat(v, vlm_f32(v), b, h), 1, 0); // O = P V
        }
    if (g) {
        vlm_node *nd = vlm_record(c, "attention", o, attention_backward, q, k, v, NULL);
        if (nd) nd->saved = s;
    }
    return o;
}

// ---- patchify (kernel = stride conv) ------------------------------------------
// cols: [B*N, C*p*p] with patch-major rows (n = py * (W/p) + px) and
// (c, ky, kx) columns, matching w.view(D, C*p*p).
// One patch row of cols from (or, add_back, into) image b at grid cell (py, px).
VLM_INLINE void patch_row_body(const float *x, float *row, int64_t b, int64_t py, int64_t px, int64_t C, int64_t H,
                               int64_t W, int64_t p, int add_back) {
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t ky = 0; ky < p; ky++) {
            const float *src = x + ((b * C + ch) * H + py * p + ky) * W + px * p;
            float *dst = row + (ch * p + ky) * p;
            if (add_back) // col2im for the backward pass: dx += dcols
                for (int64_t kx = 0; kx < p; kx++) ((float *)src)[kx] += dst[kx];
            else
                for (int64_t kx = 0; kx < p; kx++) dst[kx] = src[kx];
        }
}
VLM_MULTIVERSION(patch_row,
                 (const float *x, float *row, int64_t b, int64_t py, int64_t px, int64_t C, int64_t H, int64_t W,
                  int64_t p, int add_back),
                 (x, row, b, py, px, C, H, W, p, add_back))

static void patch_im2col(const float *x, float *cols, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p, int add_back) {
    int64_t gh = H / p, gw = W / p, K = C * p * p;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t py = 0; py < gh; py++)
            for (int64_t px = 0; px < gw; px++)
                patch_row(x, cols + ((b * gh + py) * gw + px) * K, b, py, px, C, H, W, p, add_back);
}

static void patchify_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    float *cols = n->saved;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], p = w->shape[2];
    int64_t D = w->shape[0], K = C * p * p, R = B * (H / p) * (W / p);
    vlm_mat dY = {y->grad, R, D, D, 1};
    if (w->requires_grad) {
        vlm_mat dW = {w->grad, D, K, K, 1}, X = {cols, R, K, K, 1};
        vlm_ctx_gemm(c, dW, mat_t(dY), X, 1, 1);
    }
    if (b && b->requires_grad)
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < D; j++) b->grad[j] += y->grad[r * D + j];
    if (x->requires_grad) {
        float *dcols = vlm_scratch(c, R * K);
        if (!dcols) return;
        vlm_mat dC = {dcols, R, K, K, 1}, Wm = {vlm_f32(w), D, K, K, 1};
        vlm_ctx_gemm(c, dC, dY, Wm, 1, 0);
        patch_im2col(x->grad, dcols, B, C, H, W, p, 1);
    }
}

vlm_tensor *vlm_op_patchify(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b) {
    if (!vlm_check_f32(c, "patchify", x, "x") || !vlm_check_f32(c, "patchify", w, "weight")) return NULL;
    char sx[96], sw[96];
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != w->shape[3] || w->shape[2] < 1 ||
        x->shape[2] % w->shape[2] || x->shape[3] % w->shape[3] || (b && vlm_numel(b) != w->shape[0]))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE,
                            "patchify: image %s and weight %s must be [B, C, H, W] and [D, C, p, p] with p dividing H and W",
                            vlm_shape_str(x, sx, sizeof sx), vlm_shape_str(w, sw, sizeof sw));
    x = vlm_ensure_contig(c, x);
    w = vlm_ensure_contig(c, w);
    if (!x || !w) return NULL;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], p = w->shape[2], D = w->shape[0];
    int64_t N = (H / p) * (W / p), K = C * p * p;
    float *cols = vlm_scratch(c, B * N * K);
    if (!cols) return NULL;
    patch_im2col(vlm_f32(x), cols, B, C, H, W, p, 0);
    int g = vlm_needs_grad(c, x, w, b);
    int64_t shape[3] = {B, N, D};
    vlm_tensor *y = vlm_out(c, 3, shape, g);
    if (!y) return NULL;
    float beta = 0;
    if (b) {
        for (int64_t r = 0; r < B * N; r++) memcpy(vlm_f32(y) + r * D, vlm_f32(b), sizeof(float) * (size_t)D);
        beta = 1;
    }
    vlm_mat Y = {vlm_f32(y), B * N, D, D, 1}, X = {cols, B * N, K, K, 1}, Wm = {vlm_f32(w), D, K, K, 1};
    vlm_ctx_gemm(c, Y, X, mat_t(Wm), 1, beta);
    if (g) {
        vlm_node *nd = vlm_record(c, "patchify", y, patchify_backward, x, w, b, NULL);
        if (nd) nd->saved = cols;
    }
    return y;
}

// ---- general conv2d -------------------------------------------------------------
typedef struct {
    int64_t B, Ci, H, W, Co, kh, kw, Ho, Wo, stride, pad;
} conv_geom;

// cols: [Ci*kh*kw, Ho*Wo] for one image; add_back scatters cols into img.
static void conv_im2col(const conv_geom *g, float *img, float *cols, int add_back) {
    int64_t L = g->Ho * g->Wo;
    for (int64_t ci = 0; ci < g->Ci; ci++)
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++) {
                float *row = cols + ((ci * g->kh + ky) * g->kw + kx) * L;
                for (int64_t oy = 0; oy < g->Ho; oy++) {
                    int64_t iy = oy * g->stride - g->pad + ky;
                    for (int64_t ox = 0; ox < g->Wo; ox++) {
                        int64_t ix = ox * g->stride - g->pad + kx;
                        int in = iy >= 0 && iy < g->H && ix >= 0 && ix < g->W;
                        float *src = img + (ci * g->H + iy) * g->W + ix;
                        if (add_back) {
                            if (in) *src += row[oy * g->Wo + ox];
                        } else
                            row[oy * g->Wo + ox] = in ? *src : 0.0f;
                    }
                }
            }
}

static void conv2d_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    conv_geom *g = n->saved;
    float *cols = (float *)(g + 1);
    int64_t K = g->Ci * g->kh * g->kw, L = g->Ho * g->Wo;
    float *dcols = x->requires_grad ? vlm_scratch(c, (int64_t)vlm_nthreads() * K * L) : NULL;
    if ((x->requires_grad && !dcols) || !vlm_ctx_gemm_prepare(c)) return;
    for (int64_t bi = 0; bi < g->B; bi++) {
        vlm_mat dY = {y->grad + bi * g->Co * L, g->Co, L, L, 1};
        if (w->requires_grad) { // dW[Co, K] += dY[Co, L] cols^T[L, K]
            vlm_mat dW = {w->grad, g->Co, K, K, 1}, C = {cols + bi * K * L, K, L, L, 1};
            vlm_ctx_gemm(c, dW, dY, mat_t(C), 1, 1);
        }
        if (b && b->requires_grad)
            for (int64_t co = 0; co < g->Co; co++)
                for (int64_t l = 0; l < L; l++) b->grad[co] += dY.p[co * L + l];
    }
    if (x->requires_grad) {
#pragma omp parallel for schedule(static)
        for (int64_t bi = 0; bi < g->B; bi++) {
            float *dc = dcols + (int64_t)vlm_thread_id() * K * L;
            vlm_mat dC = {dc, K, L, L, 1}, Wm = {vlm_f32(w), g->Co, K, K, 1},
                    dY = {y->grad + bi * g->Co * L, g->Co, L, L, 1};
            vlm_ctx_gemm(c, dC, mat_t(Wm), dY, 1, 0); // dcols = W^T dY
            conv_im2col(g, x->grad + bi * g->Ci * g->H * g->W, dc, 1);
        }
    }
}

vlm_tensor *vlm_op_conv2d(vlm_ctx *c, vlm_tensor *x, vlm_tensor *w, vlm_tensor *b, int stride, int pad) {
    if (!vlm_check_f32(c, "conv2d", x, "x") || !vlm_check_f32(c, "conv2d", w, "weight")) return NULL;
    char sx[96], sw[96];
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || stride < 1 || pad < 0 ||
        (b && vlm_numel(b) != w->shape[0]) || x->shape[2] + 2 * pad < w->shape[2] || x->shape[3] + 2 * pad < w->shape[3])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "conv2d: input %s, weight %s, stride %d, pad %d do not fit",
                            vlm_shape_str(x, sx, sizeof sx), vlm_shape_str(w, sw, sizeof sw), stride, pad);
    x = vlm_ensure_contig(c, x);
    w = vlm_ensure_contig(c, w);
    if (!x || !w) return NULL;
    conv_geom gm = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3], 0, 0,
                    stride, pad};
    gm.Ho = (gm.H + 2 * pad - gm.kh) / stride + 1;
    gm.Wo = (gm.W + 2 * pad - gm.kw) / stride + 1;
    int64_t K = gm.Ci * gm.kh * gm.kw, L = gm.Ho * gm.Wo;
    conv_geom *saved = vlm_arena_alloc(&c->arena, sizeof(conv_geom) + sizeof(float) * (size_t)(gm.B * K * L) + 64);
    if (!saved) return vlm_ctx_fail(c, VLM_ERR_OOM, "conv2d: arena out of memory");
    *saved = gm;
    float *cols = (float *)(saved + 1);
    int g = vlm_needs_grad(c, x, w, b);
    int64_t shape[4] = {gm.B, gm.Co, gm.Ho, gm.Wo};
    vlm_tensor *y = vlm_out(c, 4, shape, g);
    if (!y || !vlm_ctx_gemm_prepare(c)) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t bi = 0; bi < gm.B; bi++) {
        float *cb = cols + bi * K * L, *yb = vlm_f32(y) + bi * gm.Co * L;
        conv_im2col(&gm, vlm_f32(x) + bi * gm.Ci * gm.H * gm.W, cb, 0);
        float beta = 0;
        if (b) {
            for (int64_t co = 0; co < gm.Co; co++)
                for (int64_t l = 0; l < L; l++) yb[co * L + l] = vlm_f32(b)[co];
            beta = 1;
        }
        vlm_mat Y = {yb, gm.Co, L, L, 1}, Wm = {vlm_f32(w), gm.Co, K, K, 1}, C = {cb, K, L, L, 1};
        vlm_ctx_gemm(c, Y, Wm, C, 1, beta);
    }
    if (g) {
        vlm_node *nd = vlm_record(c, "conv2d", y, conv2d_backward, x, w, b, NULL);
        if (nd) nd->saved = saved;
    }
    return y;
}
