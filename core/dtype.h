// Element types. Only f32 is computed today; bf16 and the integer types are
// carried through storage (safetensors, token ids) and leave room for bf16 compute.
#ifndef VLM_CORE_DTYPE_H
#define VLM_CORE_DTYPE_H

#include <stddef.h>

typedef enum {
    VLM_F32 = 0,
    VLM_BF16,
    VLM_F16,
    VLM_F64,
    VLM_I32,
    VLM_I64,
    VLM_U8,
    VLM_DTYPE_COUNT
} vlm_dtype;

size_t vlm_dtype_size(vlm_dtype t);
const char *vlm_dtype_name(vlm_dtype t);          // safetensors spelling: "F32", "BF16", ...
int vlm_dtype_from_name(const char *s, vlm_dtype *out); // 0 on success

#endif
