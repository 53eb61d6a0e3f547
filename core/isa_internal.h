// Multi-versioned kernels (core only): one C body compiled three times, for
// AVX-512, AVX2+FMA and the portable baseline, picked by vlm_cpu_isa().
#ifndef VLM_CORE_ISA_INTERNAL_H
#define VLM_CORE_ISA_INTERNAL_H

#include "core/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define VLM_ISA_X86 1
#define VLM_TARGET_X8 __attribute__((target("avx2,fma")))
#if defined(__clang__) // (clang's vectoriser uses 512-bit vectors for AVX-512 targets by itself)
#define VLM_TARGET_X16 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))
#else // prefer-vector-width: let GCC's vectoriser use 16-float vectors, not 8
#define VLM_TARGET_X16 \
    __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")))
#endif
#else
#define VLM_TARGET_X8
#define VLM_TARGET_X16
#endif
#define VLM_INLINE static inline __attribute__((always_inline))

// VLM_MULTIVERSION(name, (params), (args)): given `VLM_INLINE void
// name##_body params`, defines `static void name params` dispatching to the
// AVX-512, AVX2 or baseline compilation of the body (the body stays plain C:
// the compiler vectorises it for each target; no FMA contraction in ISO C
// mode, so the three give the same floats wherever the loop order is the same).
#ifdef VLM_ISA_X86
#define VLM_MULTIVERSION(name, params, args)                    \
    VLM_TARGET_X16 static void name##_x16 params { name##_body args; } \
    VLM_TARGET_X8 static void name##_x8 params { name##_body args; }   \
    static void name params {                                   \
        vlm_isa isa_ = vlm_cpu_isa();                           \
        if (isa_ >= VLM_ISA_AVX512) name##_x16 args;            \
        else if (isa_ >= VLM_ISA_AVX2) name##_x8 args;          \
        else name##_body args;                                  \
    }
#else
#define VLM_MULTIVERSION(name, params, args) \
    static void name params { name##_body args; }
#endif

#endif
