// libFuzzer: the safetensors parser (header JSON, dtypes, shapes, offsets),
// then every tensor's bytes through the dtype conversion to f32.
#include "core/safetensors.h"
#include "core/tensorfile.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    vlm_st_file f;
    vlm_error err = {0};
    if (vlm_st_parse(&f, d, n, "fuzz.safetensors", &err) != VLM_OK) return 0;
    for (int i = 0; i < f.n; i++) {
        const vlm_st_entry *e = &f.entries[i];
        if (e->numel > (1 << 20)) continue;
        float *dst = malloc(sizeof(float) * (size_t)(e->numel ? e->numel : 1));
        vlm_to_f32(vlm_st_data(&f, e), e->dtype, e->numel, dst, &err);
        free(dst);
    }
    vlm_st_meta(&f, "format");
    vlm_st_free(&f);
    return 0;
}
