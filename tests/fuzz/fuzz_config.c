// libFuzzer: model configs (OpenAI's CLIP(...) argument names and open_clip's
// schema) from JSON text.
#include "fusion/clip.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *s = fz_str(d, n);
    vlm_clip_cfg cfg;
    vlm_error err = {0};
    vlm_clip_cfg_from_json(s, &cfg, &err);
    free(s);
    return 0;
}
