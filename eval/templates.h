// Zero-shot prompt templates: OpenAI's built-in sets and template files
// (one template per line, each with a "{}" for the class name).
#ifndef VLM_EVAL_TEMPLATES_H
#define VLM_EVAL_TEMPLATES_H

#include "core/error.h"
#include "core/fs.h"

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
// --templates NAME|FILE: a built-in set (*owned = 0; do not free) or a file
// (*owned = 1: free with vlm_strlist_free). A name that is neither is an
// error listing the built-in sets.
vlm_status vlm_templates_resolve(const char *name_or_file, char ***templates, int *n, int *owned, vlm_error *err);

#endif
