// Helpers shared by the op implementations (not part of the public API).
#ifndef VLM_CORE_OPS_INTERNAL_H
#define VLM_CORE_OPS_INTERNAL_H

#include <math.h>
#include "core/cpu.h"
#include "core/fastmath.h"
#include "core/op_ext.h"
#include "core/ops.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define OMP_MIN 16384 // below this many elements a loop runs single-threaded

static inline int vlm_nthreads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static inline int vlm_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Layernorm statistics of one row x[0..C): *mean and *rstd = 1 / sqrt(var + eps)
// (biased variance, two passes), shared by layernorm and the adaLN op.
static inline __attribute__((always_inline)) void vlm_ln_row_stats(const float *x, int64_t C, float eps, float *mean, float *rstd) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < C; j++) s += x[j];
    float m = s / (float)C, v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < C; j++) v += (x[j] - m) * (x[j] - m);
    *mean = m;
    *rstd = 1.0f / sqrtf(v / (float)C + eps);
}

// Activation kernels (serial; callers parallelise): y[i] = act(x[i]) for i < n,
// and dx[i] = (acc ? dx[i] : 0) + g[i] * act'(x[i]). y = act(x) may be NULL in
// the backward (recomputed where an activation needs it); dx may alias g.
void vlm_act_fwd_n(int act, const float *x, float *y, int64_t n);
void vlm_act_bwd_n(int act, const float *x, const float *y, const float *g, float *dx, int64_t n, int acc);
// y[i] = act(x[i]) and d[i] = act'(x[i]) in one pass (shared work for GELU);
// d may alias x (x is read before d is written), not y.
void vlm_act_fwd_grad_n(int act, const float *x, float *y, float *d, int64_t n);
#ifdef VLM_FASTMATH_X8
// Whether the AVX2+FMA kernels (core/fastmath.h vlm_x8*) may run, and the
// AVX-512 ones (vlm_x16*): vlm_cpu_isa() (core/cpu.h: the CPU, capped by
// VLM_ISA; VLM_FASTMATH_PORTABLE=1 forces the portable kernels).
int vlm_use_x8(void);
int vlm_use_x16(void);
#endif

#endif
