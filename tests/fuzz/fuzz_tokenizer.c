// libFuzzer: any bytes through CLIP's tokenizer (OpenAI's vocabulary when
// ../shared/reference is there, else a small built-in one): cleaning (ftfy,
// HTML unescape, whitespace), pre-tokenisation, BPE, context truncation, and
// decoding the ids back.
#include "text/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

static const char small_merges[] = "#version: 0.2\nt h\nth e</w>\na n\nc a\nca t</w>\n";

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    static vlm_tokenizer t;
    static int init;
    vlm_error err = {0};
    if (!init) {
        const char *vocab = VLM_SOURCE_DIR "/../shared/reference/openai-clip/bpe_simple_vocab_16e6.txt.gz";
        if (vlm_tokenizer_init(&t, vocab, &err) != VLM_OK &&
            vlm_tokenizer_init_from_memory(&t, small_merges, sizeof small_merges - 1, &err) != VLM_OK)
            abort();
        init = 1;
    }
    int32_t ids[80], ctx[77];
    int k = 0;
    if (vlm_tokenizer_encode(&t, (const char *)d, n, ids, 80, &k, &err) == VLM_OK) {
        char out[2048];
        vlm_tokenizer_decode(&t, ids, k < 80 ? k : 80, out, sizeof out, NULL, &err);
    }
    int nt = 0;
    vlm_tokenizer_encode_ctx(&t, (const char *)d, n, ctx, 77, 1, &nt, &err);
    char clean[1024];
    vlm_tokenizer_clean(&t, (const char *)d, n, clean, sizeof clean, NULL, &err);
    return 0;
}
