// libFuzzer: the checkpoint importers. First byte: 0 the torch zip/pickle
// reader (vlm_fset_read_torch: OpenAI TorchScript and torch.save archives),
// 1 and 2 the whole import (format sniffing, GGUF or safetensors reading,
// config inference, model build) of the rest as a .gguf or .safetensors file.
#include "core/tensorfile.h"
#include "fusion/import.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    static const char *ext[3] = {"pt", "gguf", "safetensors"};
    int k = d[0] % 3;
    const char *path = fz_file(d + 1, n - 1, ext[k]);
    vlm_error err = {0};
    if (k == 0) {
        vlm_fset s;
        if (vlm_fset_read_torch(path, &s, &err) == VLM_OK) vlm_fset_free(&s);
    } else {
        vlm_import_opts o;
        vlm_import_opts_default(&o);
        vlm_clip m;
        char *tok = NULL, what[128];
        if (vlm_clip_import(path, &o, &m, &tok, what, sizeof what, &err) == VLM_OK) vlm_clip_free(&m);
        free(tok);
    }
    unlink(path);
    return 0;
}
