// What an op defined outside core/ needs (a loss, a model's own layer):
// output allocation from the step arena, input checks that fail the context,
// contiguous copies, scratch memory, and the GEMM on strided matrices that
// core's ops use (OpenBLAS where the layout allows).
#ifndef VLM_CORE_OP_EXT_H
#define VLM_CORE_OP_EXT_H

#include "core/tensor.h"

// Returns x if contiguous, else a recorded contiguous copy.
vlm_tensor *vlm_ensure_contig(vlm_ctx *c, vlm_tensor *x);
// New output of the given shape; gets a grad buffer when `grad` is set.
vlm_tensor *vlm_out(vlm_ctx *c, int ndim, const int64_t *shape, int grad);
// Fails the context unless x is a non-NULL f32 tensor.
int vlm_check_f32(vlm_ctx *c, const char *op, const vlm_tensor *x, const char *what);
float *vlm_scratch(vlm_ctx *c, int64_t n); // arena floats, uninitialised

// C[rows x cols] (+)= alpha * A[rows x k] B[k x cols] with element (i,j) of a
// matrix at p[i*rs + j*cs]; any of the four BLAS layouts. beta 0 or 1.
typedef struct {
    float *p;
    int64_t rows, cols, rs, cs;
} vlm_mat;
int vlm_mat_blas_ok(const vlm_mat *m);
void vlm_gemm(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta);
// vlm_gemm in the context's precision (c->precision: amp_bf16 and bf16 round
// A and B to bf16 and accumulate in fp32). Called outside parallel regions,
// it splits large products across the threads like vlm_gemm.
struct vlm_ctx;
void vlm_ctx_gemm(struct vlm_ctx *c, vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta);
// This thread's bf16 packing space of c, or NULL (fp32, or out of memory:
// then the caller falls back to fp32). Valid inside parallel regions once
// vlm_ctx_gemm_prepare(c) has run outside them.
void *vlm_ctx_gemm_scratch(struct vlm_ctx *c);
int vlm_ctx_gemm_prepare(struct vlm_ctx *c);

#endif
