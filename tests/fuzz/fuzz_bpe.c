// libFuzzer: BPE merges files (OpenAI's bpe_simple_vocab format, HF
// merges.txt), then a fixed text through the tokenizer they define.
#include "text/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    vlm_tokenizer t;
    vlm_error err = {0};
    if (vlm_tokenizer_init_from_memory(&t, d, n, &err) != VLM_OK) return 0;
    static const char text[] = "a photo of a cat, an Émoji 🐱 and 3.14 dogs' tails";
    int32_t ids[64];
    int k = 0;
    if (vlm_tokenizer_encode(&t, text, sizeof text - 1, ids, 64, &k, &err) == VLM_OK) {
        char out[512];
        vlm_tokenizer_decode(&t, ids, k < 64 ? k : 64, out, sizeof out, NULL, &err);
    }
    vlm_tokenizer_free(&t);
    return 0;
}
