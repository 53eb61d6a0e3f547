// GGUF export of a CLIP in clip.cpp's layout (see import.h).
#include "fusion/import.h"

vlm_status vlm_gguf_write_clip(const vlm_clip *m, const char *tokenizer_text, const char *path, vlm_error *err);

vlm_status vlm_gguf_write_clip(const vlm_clip *m, const char *tokenizer_text, const char *path, vlm_error *err) {
    (void)m, (void)tokenizer_text;
    return vlm_errorf(err, VLM_ERR_ARG, "%s: GGUF export is not written yet", path);
}
