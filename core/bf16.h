// bfloat16 for mixed precision: conversions, in-place rounding and the bf16
// GEMM (bf16 inputs, fp32 accumulation) behind --precision amp_bf16.
#ifndef VLM_CORE_BF16_H
#define VLM_CORE_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "core/op_ext.h"

// Training precision (open_clip's --precision names):
//   fp32      everything fp32;
//   amp_bf16  GEMM inputs rounded to bf16, fp32 accumulation; weights,
//             optimizer state, LayerNorm, softmax and losses fp32 (autocast);
//   bf16      amp_bf16, and the weights themselves kept bf16-representable
//             (rounded after every optimizer step; the moments stay fp32).
typedef enum { VLM_PREC_FP32 = 0, VLM_PREC_AMP_BF16 = 1, VLM_PREC_BF16 = 2 } vlm_precision;
const char *vlm_precision_name(vlm_precision p);
int vlm_precision_parse(const char *s); // -1 when unknown

// Round to nearest even; NaN stays NaN (quiet), infinities stay infinite.
static inline uint16_t vlm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static inline float vlm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
// x[i] = bf16(x[i]) as a float, in place.
void vlm_bf16_round(float *x, int64_t n);

// C = alpha * bf16(A) bf16(B) + beta * C (beta 0 or 1) on the calling thread,
// fp32 accumulation: vdpbf16ps where the CPU has AVX512-BF16 (and
// vlm_cpu_isa() allows it), else an exact emulation (products of bf16 values
// are exact in fp32). scratch: vlm_gemm_bf16_scratch_bytes(), 64-byte aligned.
size_t vlm_gemm_bf16_scratch_bytes(void);
void vlm_gemm_bf16(vlm_mat C, vlm_mat A, vlm_mat B, float alpha, float beta, void *scratch);

#endif
