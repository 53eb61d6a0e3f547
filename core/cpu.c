// Runtime CPU dispatch: detection, the VLM_ISA cap and the forced level.
#include "core/cpu.h"
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"portable", "avx2", "avx512", "avx512_bf16"};

const char *vlm_isa_name(vlm_isa isa) { return (unsigned)isa < 4 ? names[isa] : "?"; }

int vlm_isa_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, names[i])) return i;
    return -1;
}

vlm_isa vlm_cpu_detect(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return VLM_ISA_PORTABLE;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
        return VLM_ISA_AVX2;
    // AVX512-BF16 is CPUID leaf 7 sub-leaf 1, EAX bit 5 (GCC 12 has no name for it)
    unsigned a = 7, b = 0, c = 1, d = 0;
    __asm__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return (a >> 5) & 1 ? VLM_ISA_AVX512_BF16 : VLM_ISA_AVX512;
#else
    return VLM_ISA_PORTABLE;
#endif
}

static int active = -1; // the chosen level, -1 until the first call

vlm_isa vlm_cpu_isa(void) {
    int s = __atomic_load_n(&active, __ATOMIC_RELAXED);
    if (s >= 0) return (vlm_isa)s;
    s = (int)vlm_cpu_detect();
    const char *e = getenv("VLM_ISA"), *p = getenv("VLM_FASTMATH_PORTABLE");
    int cap = vlm_isa_parse(e);
    if (cap >= 0 && cap < s) s = cap;
    if (p && *p && strcmp(p, "0")) s = VLM_ISA_PORTABLE;
    __atomic_store_n(&active, s, __ATOMIC_RELAXED);
    return (vlm_isa)s;
}

vlm_status vlm_cpu_set_isa(vlm_isa isa, vlm_error *err) {
    vlm_isa hw = vlm_cpu_detect();
    if ((int)isa < 0 || isa > hw)
        return vlm_errorf(err, VLM_ERR_ARG, "cpu: level %s is not available here (this CPU: up to %s)",
                          vlm_isa_name(isa), vlm_isa_name(hw));
    __atomic_store_n(&active, (int)isa, __ATOMIC_RELAXED);
    return VLM_OK;
}
