// Zero-shot classification: class embeddings built as OpenAI does (encode
// every template filled with the class name, normalise each, average,
// renormalise); logits = 100 * image features @ W^T.
#ifndef VLM_FUSION_ZEROSHOT_H
#define VLM_FUSION_ZEROSHOT_H

#include "fusion/clip.h"
#include "text/tokenizer.h"

typedef struct {
    const char *name;
    const char *const *t;
    int n;
} vlm_template_set;

// "imagenet" (OpenAI's 80), "imagenet7", "cifar10" (18), "mnist", "photo", "name" ("{}"); NULL if unknown.
const vlm_template_set *vlm_templates_builtin(const char *name);
const char *vlm_templates_builtin_names(void);
// A file with one template per line, each containing "{}" (blank lines skipped).
vlm_status vlm_templates_load(const char *path, char ***templates, int *n, vlm_error *err);
void vlm_strlist_free(char **list, int n);
// --templates NAME|FILE: a built-in set (*owned = 0; do not free) or a file
// (*owned = 1: free with vlm_strlist_free). A name that is neither is an
// error listing the built-in sets.
vlm_status vlm_templates_resolve(const char *name_or_file, char ***templates, int *n, int *owned, vlm_error *err);
// One string per line (trailing CR/LF stripped; blank lines are errors for class names).
vlm_status vlm_lines_load(const char *path, char ***lines, int *n, vlm_error *err);

// W: [C, E] normalised class embeddings.
vlm_status vlm_zeroshot_classifier(vlm_clip *m, vlm_tokenizer *tok, const char *const *classnames, int C,
                                   const char *const *templates, int T, float *W, vlm_error *err);
// Fills "{}" in tmpl with name (all occurrences) into out.
vlm_status vlm_template_fill(const char *tmpl, const char *name, char *out, size_t cap, vlm_error *err);

#endif
