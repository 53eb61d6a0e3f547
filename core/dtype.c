// dtype sizes and safetensors names.
#include "core/dtype.h"
#include <string.h>

static const struct { const char *name; size_t size; } info[VLM_DTYPE_COUNT] = {
    [VLM_F32] = {"F32", 4}, [VLM_BF16] = {"BF16", 2}, [VLM_F16] = {"F16", 2}, [VLM_F64] = {"F64", 8},
    [VLM_I32] = {"I32", 4}, [VLM_I64] = {"I64", 8},   [VLM_U8] = {"U8", 1},
};

size_t vlm_dtype_size(vlm_dtype t) { return (unsigned)t < VLM_DTYPE_COUNT ? info[t].size : 0; }
const char *vlm_dtype_name(vlm_dtype t) { return (unsigned)t < VLM_DTYPE_COUNT ? info[t].name : "?"; }

int vlm_dtype_from_name(const char *s, vlm_dtype *out) {
    for (int i = 0; i < VLM_DTYPE_COUNT; i++)
        if (!strcmp(s, info[i].name)) { *out = (vlm_dtype)i; return 0; }
    return -1;
}
