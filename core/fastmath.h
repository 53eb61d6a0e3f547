// Vectorised float exp / erfc / GELU family on GCC vector extensions. libm's
// expf/erff are scalar calls, and plain loops over branch-free scalar code do
// not vectorise under the default -ftrapping-math, so these work on vectors.
//
// Two instantiations of the same formulas (this header includes itself once
// per instantiation, see the bottom):
//   vlm_v<name>   vlm_vf: VLM_VW floats (8 when compiled with AVX, else 4 on
//                 SSE2), any x86-64 (or other GCC target);
//   vlm_x8<name>  __m256 with FMA, only inside functions compiled with
//                 __attribute__((target("avx2,fma"))) and called after a
//                 runtime CPU check (VLM_FASTMATH_X8 is defined when available);
//   vlm_x16<name> __m512, the same inside AVX-512 functions (VLM_FASTMATH_X16).
// Accuracy, measured against double-precision libm (both instantiations):
//   exp            <= 1.4 ulp on [-87, 88] (Cephes expf polynomial, Cody-Waite
//                  reduction); inputs are clamped to [-87, 88], so it never
//                  returns inf or 0 (exp(88) = 1.65e38, exp(-87) = 1.6e-38);
//   erf            <= 4.5e-7 absolute (rational fit, no exp);
//   erfc_pos       relative error <= 1.2e-7 near 0 (Numerical Recipes' erfcc
//                  Chebyshev fit), growing to ~8e-6 at z = 8 (erfc ~ 1e-29)
//                  from rounding z*z;
//   GELU (erf form) <= 1.4e-6 absolute, 2.5e-7 relative to |x| (libm erff:
//                  4.5e-7 absolute), derivative <= 3e-7; GELU-tanh <= 4.4e-7
//                  (derivative 2e-6 at |x| ~ 20);
//                  QuickGELU <= 7.4e-7; SiLU <= 1.3e-6 at |x| = 20.
#ifndef VLM_FASTMATH_BODY
#ifndef VLM_CORE_FASTMATH_H
#define VLM_CORE_FASTMATH_H

#include <stdint.h>
#include <string.h>

// 8 lanes where the compiler may use AVX, else 4 (SSE): a 32-byte vector
// without AVX would change the argument ABI of the helpers (-Wpsabi).
#ifdef __AVX__
#define VLM_VW 8
#else
#define VLM_VW 4
#endif
typedef float vlm_vf __attribute__((vector_size(VLM_VW * 4)));
typedef int32_t vlm_vi __attribute__((vector_size(VLM_VW * 4)));

#define VLM_FASTMATH_BODY
// ---- portable instantiation ----
#define FM_VF vlm_vf
#define FM_VI vlm_vi
#define FM_W VLM_VW
#define FM(name) vlm_v##name
#define FM_ATTR static inline
#define FM_FMA(a, b, c) ((a) * (b) + (c))
#include "core/fastmath.h"
#undef FM_VF
#undef FM_VI
#undef FM_W
#undef FM
#undef FM_ATTR
#undef FM_FMA

// ---- AVX2 + FMA instantiation (x86-64 GCC/Clang) ----
#if defined(__x86_64__) && defined(__GNUC__)
#define VLM_FASTMATH_X8 1
#include <immintrin.h>
typedef int32_t vlm_x8i __attribute__((vector_size(32)));
#define FM_VF __m256
#define FM_VI vlm_x8i
#define FM_W 8
#define FM(name) vlm_x8##name
#define FM_ATTR static inline __attribute__((target("avx2,fma")))
#define FM_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#include "core/fastmath.h"
#undef FM_VF
#undef FM_VI
#undef FM_W
#undef FM
#undef FM_ATTR
#undef FM_FMA

// ---- AVX-512 instantiation (16 lanes) ----
#define VLM_FASTMATH_X16 1
typedef int32_t vlm_x16i __attribute__((vector_size(64)));
#define FM_VF __m512
#define FM_VI vlm_x16i
#define FM_W 16
#define FM(name) vlm_x16##name
#define FM_ATTR static inline __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))
#define FM_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#include "core/fastmath.h"
#undef FM_VF
#undef FM_VI
#undef FM_W
#undef FM
#undef FM_ATTR
#undef FM_FMA
#endif

#undef VLM_FASTMATH_BODY
#endif // VLM_CORE_FASTMATH_H

#else // ---- the formulas, instantiated above ----

FM_ATTR FM_VF FM(set)(float s) { return (FM_VF){0} + s; }
FM_ATTR FM_VF FM(load)(const float *p) {
    FM_VF v;
    memcpy(&v, p, sizeof v);
    return v;
}
FM_ATTR void FM(store)(float *p, FM_VF v) { memcpy(p, &v, sizeof v); }
// Lanes [0, n) from p, the rest 0 (n < width).
FM_ATTR FM_VF FM(load_part)(const float *p, int64_t n) {
    float b[FM_W] = {0};
    memcpy(b, p, sizeof(float) * (size_t)n);
    return FM(load)(b);
}
FM_ATTR void FM(store_part)(float *p, FM_VF v, int64_t n) {
    float b[FM_W];
    FM(store)(b, v);
    memcpy(p, b, sizeof(float) * (size_t)n);
}
// m ? a : b per lane (m from a vector comparison: all ones or zero)
FM_ATTR FM_VF FM(sel)(FM_VI m, FM_VF a, FM_VF b) { return (FM_VF)((m & (FM_VI)a) | (~m & (FM_VI)b)); }
FM_ATTR FM_VF FM(max)(FM_VF a, FM_VF b) { return FM(sel)(a > b, a, b); }
FM_ATTR FM_VF FM(min)(FM_VF a, FM_VF b) { return FM(sel)(a < b, a, b); }
FM_ATTR FM_VF FM(abs)(FM_VF a) { return (FM_VF)((FM_VI)a & 0x7FFFFFFF); }
FM_ATTR float FM(hsum)(FM_VF v) {
    float s = 0;
    for (int i = 0; i < FM_W; i++) s += v[i];
    return s;
}
FM_ATTR float FM(hmax)(FM_VF v) {
    float m = v[0];
    for (int i = 1; i < FM_W; i++) m = v[i] > m ? v[i] : m;
    return m;
}

FM_ATTR FM_VF FM(exp)(FM_VF x) {
    x = FM(max)(x, FM(set)(-87.0f));
    x = FM(min)(x, FM(set)(88.0f));
    // n = round(x / ln2) with the 1.5 * 2^23 trick (exact for |n| < 2^22).
    FM_VF t = FM_FMA(x, FM(set)(1.44269504088896341f), FM(set)(12582912.0f));
    FM_VF n = t - 12582912.0f;
    FM_VI ni = (FM_VI)t - 0x4B400000;
    FM_VF r = FM_FMA(n, FM(set)(-0.693359375f), x); // Cody-Waite: ln2 = 0.693359375 - 2.12194440e-4
    r = FM_FMA(n, FM(set)(2.12194440e-4f), r);
    FM_VF z = r * r;
    FM_VF p = FM_FMA(r, FM(set)(1.9875691500e-4f), FM(set)(1.3981999507e-3f));
    p = FM_FMA(p, r, FM(set)(8.3334519073e-3f));
    p = FM_FMA(p, r, FM(set)(4.1665795894e-2f));
    p = FM_FMA(p, r, FM(set)(1.6666665459e-1f));
    p = FM_FMA(p, r, FM(set)(5.0000001201e-1f));
    p = FM_FMA(p, z, r) + 1.0f;
    return p * (FM_VF)((ni + 127) << 23);
}

// erfc(z) for z >= 0.
FM_ATTR FM_VF FM(erfc_pos)(FM_VF z) {
    FM_VF t = 1.0f / FM_FMA(z, FM(set)(0.5f), FM(set)(1.0f));
    FM_VF q = FM_FMA(t, FM(set)(0.17087277f), FM(set)(-0.82215223f));
    q = FM_FMA(q, t, FM(set)(1.48851587f));
    q = FM_FMA(q, t, FM(set)(-1.13520398f));
    q = FM_FMA(q, t, FM(set)(0.27886807f));
    q = FM_FMA(q, t, FM(set)(-0.18628806f));
    q = FM_FMA(q, t, FM(set)(0.09678418f));
    q = FM_FMA(q, t, FM(set)(0.37409196f));
    q = FM_FMA(q, t, FM(set)(1.00002368f));
    q = FM_FMA(q, t, FM(set)(-1.26551223f));
    return t * FM(exp)(q - z * z);
}

// erf(x): Eigen's rational minimax fit x P(x^2) / Q(x^2) on [-4, 4] (clamped
// outside; erf(4) = 1 - 1.5e-8): absolute error <= 4.5e-7, no exp.
FM_ATTR FM_VF FM(erf)(FM_VF x) {
    x = FM(max)(x, FM(set)(-4.0f));
    x = FM(min)(x, FM(set)(4.0f));
    FM_VF x2 = x * x;
    FM_VF p = FM_FMA(x2, FM(set)(-2.72614225801306e-10f), FM(set)(2.77068142495902e-08f));
    p = FM_FMA(x2, p, FM(set)(-2.10102402082508e-06f));
    p = FM_FMA(x2, p, FM(set)(-5.69250639462346e-05f));
    p = FM_FMA(x2, p, FM(set)(-7.34990630326855e-04f));
    p = FM_FMA(x2, p, FM(set)(-2.95459980854025e-03f));
    p = FM_FMA(x2, p, FM(set)(-1.60960333262415e-02f));
    FM_VF q = FM_FMA(x2, FM(set)(-1.45660718464996e-05f), FM(set)(-2.13374055278905e-04f));
    q = FM_FMA(x2, q, FM(set)(-1.68282697438203e-03f));
    q = FM_FMA(x2, q, FM(set)(-7.37332916720468e-03f));
    q = FM_FMA(x2, q, FM(set)(-1.42647390514189e-02f));
    return x * p / q;
}

// Phi(x), the standard normal CDF: 0.5 * (1 + erf(x / sqrt 2)).
FM_ATTR FM_VF FM(phi)(FM_VF x) { return FM_FMA(FM(erf)(x * 0.70710678118654752f), FM(set)(0.5f), FM(set)(0.5f)); }
FM_ATTR FM_VF FM(gelu)(FM_VF x) { return x * FM(phi)(x); }
FM_ATTR FM_VF FM(gelu_grad)(FM_VF x) {
    return FM_FMA(x * 0.39894228040143268f, FM(exp)(x * x * -0.5f), FM(phi)(x));
}
// GELU and its derivative together (the backward needs both).
FM_ATTR FM_VF FM(gelu_both)(FM_VF x, FM_VF *grad) {
    FM_VF phi = FM(phi)(x);
    *grad = FM_FMA(x * 0.39894228040143268f, FM(exp)(x * x * -0.5f), phi);
    return x * phi;
}

FM_ATTR FM_VF FM(sigmoid)(FM_VF x) { return 1.0f / (FM(exp)(-x) + 1.0f); }
// tanh via 1 - 2 / (exp(2u) + 1): absolute error ~1e-7 (what GELU-tanh needs).
FM_ATTR FM_VF FM(tanh_abs)(FM_VF u) { return 1.0f - 2.0f / (FM(exp)(u * 2.0f) + 1.0f); }

FM_ATTR FM_VF FM(gelu_tanh)(FM_VF x) {
    FM_VF u = FM_FMA(x * x * x, FM(set)(0.044715f), x) * 0.7978845608028654f;
    return x * 0.5f * (FM(tanh_abs)(u) + 1.0f);
}
FM_ATTR FM_VF FM(gelu_tanh_grad)(FM_VF x) {
    FM_VF u = FM_FMA(x * x * x, FM(set)(0.044715f), x) * 0.7978845608028654f, t = FM(tanh_abs)(u);
    return (t + 1.0f) * 0.5f +
           x * 0.5f * (1.0f - t * t) * 0.7978845608028654f * FM_FMA(x * x, FM(set)(3.0f * 0.044715f), FM(set)(1.0f));
}
FM_ATTR FM_VF FM(quick_gelu)(FM_VF x) { return x * FM(sigmoid)(x * 1.702f); }
FM_ATTR FM_VF FM(quick_gelu_grad)(FM_VF x) {
    FM_VF s = FM(sigmoid)(x * 1.702f);
    return FM_FMA(x * 1.702f, s * (1.0f - s), s);
}
FM_ATTR FM_VF FM(silu)(FM_VF x) { return x * FM(sigmoid)(x); }
FM_ATTR FM_VF FM(silu_grad)(FM_VF x) {
    FM_VF s = FM(sigmoid)(x);
    return s * FM_FMA(x, 1.0f - s, FM(set)(1.0f));
}

#endif // VLM_FASTMATH_BODY
