// Runtime CPU dispatch: which instruction-set level vlm's own kernels use,
// detected once at start-up (capped by VLM_ISA) and reported by `vlm --version`.
#ifndef VLM_CORE_CPU_H
#define VLM_CORE_CPU_H

#include "core/error.h"

// Ordered: each level includes the ones below it.
typedef enum {
    VLM_ISA_PORTABLE = 0,    // GCC vector extensions, any x86-64 (SSE2) or other target
    VLM_ISA_AVX2 = 1,        // AVX2 + FMA, 8-wide
    VLM_ISA_AVX512 = 2,      // AVX-512 F/BW/VL/DQ, 16-wide
    VLM_ISA_AVX512_BF16 = 3, // + AVX512-BF16 (vdpbf16ps) for the bf16 GEMM
} vlm_isa;

// The best level this CPU supports.
vlm_isa vlm_cpu_detect(void);
// The level the kernels use: vlm_cpu_detect() capped by the environment
// variable VLM_ISA (portable|avx2|avx512|avx512_bf16; VLM_FASTMATH_PORTABLE=1
// is kept as a synonym of portable), chosen on first call.
vlm_isa vlm_cpu_isa(void);
// Forces a level (tests and benchmarks compare the variants). Refused with
// VLM_ERR_ARG when the CPU lacks it.
vlm_status vlm_cpu_set_isa(vlm_isa isa, vlm_error *err);
const char *vlm_isa_name(vlm_isa isa);
// Parses a level's name; -1 when unknown.
int vlm_isa_parse(const char *s);

#endif
