// Zero-shot classifier correctness: class embeddings of OpenAI's tiny CLIP
// built with OpenAI's recipe match the PyTorch reference
// (tests/reference/make_zeroshot_fixtures.py); and the template helpers behave
// (placeholders, built-in sets, bad files). The prompts' token ids in the
// fixture come from vlm's own tokenizer (the tiny model's 1000-token
// vocabulary has no OpenAI counterpart), so the id check below only guards
// against regressions; the tokenizer's parity with OpenAI's is test_tokenizer's.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "eval/templates.h"
#include "fusion/classes.h"
#include "tests/testutil.h"

int main(void) {
    vlm_error err = {0};
    vlm_clip_cfg cfg;
    vlm_clip m;
    vlm_tokenizer tok;
    char **classes = NULL, **tmpl = NULL;
    int C = 0, T = 0;
    if (vlm_clip_cfg_load(tu_src("../shared/reference/openai-clip/tiny.json"), &cfg, &err) || vlm_clip_init(&m, &cfg, &err) ||
        vlm_clip_load_weights(&m, tu_src("../shared/reference/openai-clip/tiny.weights.safetensors"), &err) ||
        vlm_tokenizer_init(&tok, tu_src("tests/fixtures/zeroshot/vocab.txt"), &err) ||
        vlm_lines_load(tu_src("tests/fixtures/zeroshot/classnames.txt"), &classes, &C, &err) ||
        vlm_templates_load(tu_src("tests/fixtures/zeroshot/templates.txt"), &tmpl, &T, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    vlm_st_file ref;
    if (vlm_st_read(&ref, tu_src("tests/fixtures/zeroshot/reference.safetensors"), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    // Tokenisation equals the ids the reference used.
    const vlm_st_entry *ei = vlm_st_find(&ref, "ids");
    const int32_t *rid = vlm_st_data(&ref, ei);
    int same = 1;
    char buf[512];
    for (int k = 0; k < C; k++)
        for (int t = 0; t < T; t++) {
            int32_t ids[16];
            int nt;
            vlm_template_fill(tmpl[t], classes[k], buf, sizeof buf, &err);
            vlm_tokenizer_encode_ctx(&tok, buf, strlen(buf), ids, 16, 1, &nt, &err);
            same &= !memcmp(ids, rid + (k * T + t) * 16, sizeof ids);
        }
    CHECK(same, "prompt token ids differ from the reference's");
    int E = cfg.embed_dim;
    float *W = malloc(sizeof(float) * (size_t)C * E);
    CHECK(vlm_zeroshot_classifier(&m, &tok, (const char *const *)classes, C, (const char *const *)tmpl, T, W, &err) == VLM_OK,
          "classifier: %s", err.msg);
    const float *rw = vlm_st_data(&ref, vlm_st_find(&ref, "class_embeddings"));
    double e = tu_rel_err(W, rw, (long)C * E, 1e-12);
    printf("class embeddings vs PyTorch: rel err %.2e\n", e);
    CHECK(e < 1e-5, "class embeddings differ from PyTorch: rel err %.3g", e);

    // Templates: built-ins and placeholder handling.
    const vlm_template_set *s = vlm_templates_builtin("imagenet");
    CHECK(s && s->n == 80 && !strcmp(s->t[0], "a bad photo of a {}."), "imagenet set");
    CHECK(vlm_templates_builtin("imagenet7")->n == 7 && vlm_templates_builtin("cifar10")->n == 18 &&
              vlm_templates_builtin("mnist")->n == 1 && !vlm_templates_builtin("nope"),
          "built-in template sets");
    CHECK(vlm_template_fill("{} and {}", "x", buf, sizeof buf, &err) == VLM_OK && !strcmp(buf, "x and x"), "fill");
    FILE *f = fopen("bad_templates.txt", "w");
    fputs("a photo of a {}.\nno placeholder here\n", f);
    fclose(f);
    char **bt;
    int bn;
    CHECK(vlm_templates_load("bad_templates.txt", &bt, &bn, &err) == VLM_ERR_FORMAT && strstr(err.msg, "placeholder"),
          "template without {} accepted: %s", err.msg);
    free(W);
    vlm_st_free(&ref);
    vlm_strlist_free(classes, C);
    vlm_strlist_free(tmpl, T);
    vlm_tokenizer_free(&tok);
    vlm_clip_free(&m);
    return tu_done("test_zeroshot");
}
