// The bf16 GEMM of amp_bf16: GotoBLAS-style blocking (pack a KC x NC block
// of B and an MC x KC block of A as bf16 pairs along k), a 12 x 32
// vdpbf16ps micro-kernel where the CPU has AVX512-BF16, and an exact
// emulation elsewhere.
#include <math.h>
#include "core/bf16.h"
#include "core/cpu.h"
#include "core/isa_internal.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define MR 12   // rows of C per micro-tile
#define NR 32   // columns of C per micro-tile (two 16-lane vectors)
#define KC 384  // k per block (even)
#define MC 96   // rows per packed A block (multiple of MR)
#define NC 1024 // columns per packed B block (multiple of NR)

const char *vlm_precision_name(vlm_precision p) {
    return p == VLM_PREC_AMP_BF16 ? "amp_bf16" : p == VLM_PREC_BF16 ? "bf16" : "fp32";
}

int vlm_precision_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "fp32")) return VLM_PREC_FP32;
    if (!strcmp(s, "amp_bf16")) return VLM_PREC_AMP_BF16;
    if (!strcmp(s, "bf16")) return VLM_PREC_BF16;
    return -1;
}

void vlm_bf16_round(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = vlm_bf16_to_f32(vlm_f32_to_bf16(x[i]));
}

// Packed A block: [MC/MR panels][KC/2 pairs][MR] of 32-bit (k, k+1) pairs;
// packed B block: [NC/NR panels][KC/2 pairs][NR] pairs.
// (The emulation packs fp32: twice the bytes.)
size_t vlm_gemm_bf16_scratch_bytes(void) { return (size_t)(MC + NC) * KC * 4 + 128; }

static inline float at(const vlm_mat *m, int64_t i, int64_t j) { return m->p[i * m->rs + j * m->cs]; }

static inline uint32_t pair(float lo, float hi) {
    return (uint32_t)vlm_f32_to_bf16(lo) | (uint32_t)vlm_f32_to_bf16(hi) << 16;
}

// A[i0 : i0+mc, k0 : k0+kc] -> dst, rows past mc and the odd k past kc zero.
static void pack_a(const vlm_mat *A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, uint32_t *dst) {
    int64_t kp = (kc + 1) / 2;
    for (int64_t r0 = 0; r0 < mc; r0 += MR, dst += kp * MR)
        for (int64_t i = 0; i < MR; i++) {
            if (r0 + i >= mc) {
                for (int64_t p = 0; p < kp; p++) dst[p * MR + i] = 0;
                continue;
            }
            const float *row = A->p + (i0 + r0 + i) * A->rs + k0 * A->cs;
            int64_t p = 0, cs = A->cs;
            for (; 2 * p + 1 < kc; p++) dst[p * MR + i] = pair(row[2 * p * cs], row[(2 * p + 1) * cs]);
            if (p < kp) dst[p * MR + i] = pair(row[2 * p * cs], 0);
        }
}

// B[k0 : k0+kc, j0 : j0+nc] -> dst, columns past nc and the odd k past kc zero.
static void pack_b(const vlm_mat *B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, uint32_t *dst) {
    int64_t kp = (kc + 1) / 2;
    for (int64_t c0 = 0; c0 < nc; c0 += NR, dst += kp * NR)
        for (int64_t p = 0; p < kp; p++)
            for (int64_t j = 0; j < NR; j++) {
                int64_t jj = c0 + j, k = k0 + 2 * p;
                float lo = jj < nc ? at(B, k, j0 + jj) : 0, hi = jj < nc && 2 * p + 1 < kc ? at(B, k + 1, j0 + jj) : 0;
                dst[p * NR + j] = pair(lo, hi);
            }
}

#ifdef HAVE_X86
#define X16BF __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
// 16 columns of rows k and k+1 (m: the columns that exist; r1 NULL: zero) -> 16 (k, k+1) pairs.
X16BF static inline __m512i pair16(const float *r0, const float *r1, __mmask16 m) {
    __m512 a = _mm512_maskz_loadu_ps(m, r0), b = r1 ? _mm512_maskz_loadu_ps(m, r1) : _mm512_setzero_ps();
    __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a); // bf16 [a0..a15 | b0..b15]
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, v);
}

// pack_b for B with contiguous columns (cs == 1), 16 columns per vector.
X16BF static void pack_b_x16(const vlm_mat *B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, uint32_t *dst) {
    int64_t kp = (kc + 1) / 2;
    for (int64_t c0 = 0; c0 < nc; c0 += NR, dst += kp * NR)
        for (int64_t h = 0; h < NR; h += 16) {
            int64_t w = nc - c0 - h;
            __mmask16 m = w >= 16 ? 0xFFFF : w <= 0 ? 0 : (__mmask16)((1u << w) - 1);
            for (int64_t p = 0; p < kp; p++) {
                const float *r0 = B->p + (k0 + 2 * p) * B->rs + j0 + c0 + h;
                _mm512_storeu_si512(dst + p * NR + h, pair16(r0, 2 * p + 1 < kc ? r0 + B->rs : NULL, m));
            }
        }
}

// pack_a for A with contiguous columns (rs == 1, as A = X^T in a weight
// gradient): two k at a time give MR rows' pairs per (masked) vector.
X16BF static void pack_a_x16(const vlm_mat *A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, uint32_t *dst) {
    int64_t kp = (kc + 1) / 2;
    for (int64_t r0 = 0; r0 < mc; r0 += MR, dst += kp * MR) {
        int64_t w = mc - r0 < MR ? mc - r0 : MR;
        __mmask16 m = (__mmask16)((1u << w) - 1);
        for (int64_t p = 0; p < kp; p++) {
            const float *c0 = A->p + (i0 + r0) + (k0 + 2 * p) * A->cs;
            __m512i v = pair16(c0, 2 * p + 1 < kc ? c0 + A->cs : NULL, m);
            _mm512_mask_storeu_epi32(dst + p * MR, 0x0FFF, v); // MR = 12 lanes
        }
    }
}

// kc contiguous floats -> (kc + 1) / 2 bf16 pairs (an odd tail paired with 0).
X16BF static void cvt_pairs_x16(const float *src, int64_t kc, uint32_t *dst) {
    int64_t k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512 a = _mm512_loadu_ps(src + k), b = _mm512_loadu_ps(src + k + 16);
        _mm512_storeu_si512(dst + k / 2, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
    if (k < kc) {
        int64_t r = kc - k, ra = r < 16 ? r : 16, rb = r - ra;
        __m512 a = _mm512_maskz_loadu_ps((__mmask16)((1u << ra) - 1), src + k);
        __m512 b = _mm512_maskz_loadu_ps((__mmask16)((1u << rb) - 1), src + k + 16);
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a);
        _mm512_mask_storeu_epi32(dst + k / 2, (__mmask16)((1u << ((r + 1) / 2)) - 1), v);
    }
}

// pack_a for A with contiguous rows (cs == 1): each row converted at once.
X16BF static void pack_a_rows_x16(const vlm_mat *A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, uint32_t *dst) {
    int64_t kp = (kc + 1) / 2;
    uint32_t tmp[KC / 2];
    for (int64_t r0 = 0; r0 < mc; r0 += MR, dst += kp * MR)
        for (int64_t i = 0; i < MR; i++) {
            if (r0 + i < mc) cvt_pairs_x16(A->p + (i0 + r0 + i) * A->rs + k0, kc, tmp);
            else memset(tmp, 0, sizeof(uint32_t) * (size_t)kp);
            for (int64_t p = 0; p < kp; p++) dst[p * MR + i] = tmp[p];
        }
}

// pack_b for B with contiguous columns along k (rs == 1, as B = W^T).
X16BF static void pack_b_cols_x16(const vlm_mat *B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, uint32_t *dst) {
    int64_t kp = (kc + 1) / 2;
    uint32_t tmp[KC / 2];
    for (int64_t c0 = 0; c0 < nc; c0 += NR, dst += kp * NR)
        for (int64_t j = 0; j < NR; j++) {
            if (c0 + j < nc) cvt_pairs_x16(B->p + k0 + (j0 + c0 + j) * B->cs, kc, tmp);
            else memset(tmp, 0, sizeof(uint32_t) * (size_t)kp);
            for (int64_t p = 0; p < kp; p++) dst[p * NR + j] = tmp[p];
        }
}

// C[0:m, 0:n] = alpha * (a b) + beta * C over kp pairs; a: [kp][MR], b: [kp][NR].
X16BF static void ukernel_x16(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, float alpha,
                              float beta, int64_t m, int64_t n) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; p++, a += MR, b += NR) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1), m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    __m512 va = _mm512_set1_ps(alpha);
    for (int i = 0; i < MR && i < m; i++) {
        float *r = c + i * ldc;
        __m512 y0 = _mm512_mul_ps(acc[i][0], va), y1 = _mm512_mul_ps(acc[i][1], va);
        if (beta != 0) {
            y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, r));
            y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, r + 16));
        }
        _mm512_mask_storeu_ps(r, m0, y0);
        _mm512_mask_storeu_ps(r + 16, m1, y1);
    }
}
#endif

// ---- the emulation (no AVX512-BF16): fp32 blocks of bf16-rounded values ------
// Products of bf16 values are exact in fp32, so an fp32 GEMM on rounded
// inputs differs from vdpbf16ps only in the order of the fp32 sums. Packed
// A: [MC/MR][KC][MR] floats, B: [NC/NR][KC][NR].

VLM_INLINE float bfr(float x) { return vlm_bf16_to_f32(vlm_f32_to_bf16(x)); }

VLM_INLINE void pack_af_body(const vlm_mat *A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float *dst) {
    for (int64_t r0 = 0; r0 < mc; r0 += MR, dst += kc * MR)
        for (int64_t i = 0; i < MR; i++) {
            const float *row = A->p + (i0 + r0 + i) * A->rs + k0 * A->cs;
            if (r0 + i >= mc)
                for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = 0;
            else
                for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = bfr(row[k * A->cs]);
        }
}
VLM_MULTIVERSION(pack_af, (const vlm_mat *A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float *dst),
                 (A, i0, mc, k0, kc, dst))

VLM_INLINE void pack_bf_body(const vlm_mat *B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *dst) {
    for (int64_t c0 = 0; c0 < nc; c0 += NR, dst += kc * NR) {
        int64_t w = nc - c0 < NR ? nc - c0 : NR;
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B->p + (k0 + k) * B->rs + (j0 + c0) * B->cs;
            float *d = dst + k * NR;
            if (B->cs == 1)
                for (int64_t j = 0; j < w; j++) d[j] = bfr(src[j]);
            else
                for (int64_t j = 0; j < w; j++) d[j] = bfr(src[j * B->cs]);
            for (int64_t j = w; j < NR; j++) d[j] = 0;
        }
    }
}
VLM_MULTIVERSION(pack_bf, (const vlm_mat *B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *dst),
                 (B, k0, kc, j0, nc, dst))

// C[0:m, 0:n] = alpha * acc + beta * C from a full MR x NR tile.
static void store_tile(const float *acc, float *c, int64_t ldc, float alpha, float beta, int64_t m, int64_t n) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = alpha * acc[i * NR + j] + (beta != 0 ? c[i * ldc + j] : 0);
}

static void ukf_portable(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha, float beta,
                         int64_t m, int64_t n) {
    float acc[MR * NR] = {0};
    for (int64_t k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i * NR + j] += a[k * MR + i] * b[k * NR + j];
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

#ifdef HAVE_X86
// 6 x 16 sub-tiles (12 ymm accumulators) of the 12 x 32 tile.
VLM_TARGET_X8 static void ukf_x8(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                                 float beta, int64_t m, int64_t n) {
    float acc[MR * NR];
    for (int rh = 0; rh < MR; rh += 6)
        for (int ch = 0; ch < NR; ch += 16) {
            __m256 s[6][2];
            for (int i = 0; i < 6; i++) s[i][0] = s[i][1] = _mm256_setzero_ps();
            for (int64_t k = 0; k < kc; k++) {
                __m256 b0 = _mm256_loadu_ps(b + k * NR + ch), b1 = _mm256_loadu_ps(b + k * NR + ch + 8);
                for (int i = 0; i < 6; i++) {
                    __m256 av = _mm256_broadcast_ss(a + k * MR + rh + i);
                    s[i][0] = _mm256_fmadd_ps(av, b0, s[i][0]);
                    s[i][1] = _mm256_fmadd_ps(av, b1, s[i][1]);
                }
            }
            for (int i = 0; i < 6; i++) {
                _mm256_storeu_ps(acc + (rh + i) * NR + ch, s[i][0]);
                _mm256_storeu_ps(acc + (rh + i) * NR + ch + 8, s[i][1]);
            }
        }
    store_tile(acc, c, ldc, alpha, beta, m, n);
}

// The whole 12 x 32 tile in 24 zmm accumulators.
VLM_TARGET_X16 static void ukf_x16(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                                   float beta, int64_t m, int64_t n) {
    __m512 s[MR][2];
    for (int i = 0; i < MR; i++) s[i][0] = s[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b + k * NR), b1 = _mm512_loadu_ps(b + k * NR + 16);
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[k * MR + i]);
            s[i][0] = _mm512_fmadd_ps(av, b0, s[i][0]);
            s[i][1] = _mm512_fmadd_ps(av, b1, s[i][1]);
        }
    }
    float acc[MR * NR];
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(acc + i * NR, s[i][0]);
        _mm512_storeu_ps(acc + i * NR + 16, s[i][1]);
    }
    store_tile(acc, c, ldc, alpha, beta, m, n);
}
#endif

static void gemm_emul(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta, void *scratch) {
    int64_t M = C.rows, N = C.cols, K = A.cols;
    float *pa = scratch, *pb = pa + (size_t)MC * KC;
    vlm_isa isa = vlm_cpu_isa();
    for (int64_t j0 = 0; j0 < N; j0 += NC) {
        int64_t nc = N - j0 < NC ? N - j0 : NC;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            float bk = k0 == 0 ? beta : 1.0f;
            pack_bf(&B, k0, kc, j0, nc, pb);
            for (int64_t i0 = 0; i0 < M; i0 += MC) {
                int64_t mc = M - i0 < MC ? M - i0 : MC;
                pack_af(&A, i0, mc, k0, kc, pa);
                for (int64_t c0 = 0; c0 < nc; c0 += NR)
                    for (int64_t r0 = 0; r0 < mc; r0 += MR) {
                        const float *a = pa + r0 * kc, *b = pb + c0 * kc;
                        float *c = C.p + (i0 + r0) * C.rs + j0 + c0;
                        int64_t m = mc - r0 < MR ? mc - r0 : MR, n = nc - c0 < NR ? nc - c0 : NR;
#ifdef HAVE_X86
                        if (isa >= VLM_ISA_AVX512) ukf_x16(kc, a, b, c, C.rs, alpha, bk, m, n);
                        else if (isa >= VLM_ISA_AVX2) ukf_x8(kc, a, b, c, C.rs, alpha, bk, m, n);
                        else
#endif
                            ukf_portable(kc, a, b, c, C.rs, alpha, bk, m, n);
                    }
            }
        }
    }
    (void)isa;
}

#ifdef HAVE_X86
// The vdpbf16ps path: bf16 pairs packed with AVX-512 where the layout allows.
static void gemm_x16(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta, void *scratch) {
    int64_t M = C.rows, N = C.cols, K = A.cols;
    uint32_t *pa = (uint32_t *)scratch, *pb = pa + (size_t)MC * KC / 2;
    for (int64_t j0 = 0; j0 < N; j0 += NC) {
        int64_t nc = N - j0 < NC ? N - j0 : NC;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC, kp = (kc + 1) / 2;
            float bk = k0 == 0 ? beta : 1.0f;
            if (B.cs == 1) pack_b_x16(&B, k0, kc, j0, nc, pb);
            else if (B.rs == 1) pack_b_cols_x16(&B, k0, kc, j0, nc, pb);
            else pack_b(&B, k0, kc, j0, nc, pb);
            for (int64_t i0 = 0; i0 < M; i0 += MC) {
                int64_t mc = M - i0 < MC ? M - i0 : MC;
                if (A.cs == 1) pack_a_rows_x16(&A, i0, mc, k0, kc, pa);
                else if (A.rs == 1) pack_a_x16(&A, i0, mc, k0, kc, pa);
                else pack_a(&A, i0, mc, k0, kc, pa);
                for (int64_t c0 = 0; c0 < nc; c0 += NR)
                    for (int64_t r0 = 0; r0 < mc; r0 += MR) {
                        const uint32_t *a = pa + r0 * kp, *b = pb + c0 * kp;
                        float *c = C.p + (i0 + r0) * C.rs + j0 + c0;
                        int64_t m = mc - r0 < MR ? mc - r0 : MR, n = nc - c0 < NR ? nc - c0 : NR;
                        ukernel_x16(kp, a, b, c, C.rs, alpha, bk, m, n);
                    }
            }
        }
    }
}
#endif

static vlm_mat mat_t(vlm_mat m) {
    vlm_mat t = {m.p, m.cols, m.rows, m.cs, m.rs};
    return t;
}

void vlm_gemm_bf16(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta, void *scratch) {
    if (C.cs != 1 && C.rs == 1) { // column-major C: C^T = B^T A^T
        vlm_mat At = mat_t(A);
        C = mat_t(C);
        A = mat_t(B);
        B = At;
    }
    int64_t M = C.rows, N = C.cols, K = A.cols;
    if (M == 0 || N == 0) return;
    if (C.cs != 1 || K == 0) { // no row-major view of C (not produced by vlm's ops), or empty k
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += vlm_bf16_to_f32(vlm_f32_to_bf16(at(&A, i, k))) * vlm_bf16_to_f32(vlm_f32_to_bf16(at(&B, k, j)));
                float *o = &C.p[i * C.rs + j * C.cs];
                *o = alpha * s + (beta != 0 ? *o : 0);
            }
        return;
    }
    if (vlm_cpu_isa() < VLM_ISA_AVX512_BF16) {
        gemm_emul(C, A, B, alpha, beta, scratch);
        return;
    }
#ifdef HAVE_X86
    gemm_x16(C, A, B, alpha, beta, scratch);
#endif
}
