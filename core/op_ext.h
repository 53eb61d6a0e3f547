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

#endif
