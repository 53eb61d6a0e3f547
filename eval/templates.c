// Built-in zero-shot prompt template sets: OpenAI's 80 ImageNet templates and
// its 7-template subset, its 18 CIFAR-10 templates, its MNIST template, and
// plain ones for caption-style vocabularies (emoji names).
#include "eval/templates.h"
#include <stdio.h>
#include <string.h>

static const char *const imagenet80[] = {
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.",
    "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
    "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
    "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
    "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.",
    "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
};

static const char *const imagenet7[] = {
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
};

static const char *const cifar10[] = {
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.", "a low contrast photo of a {}.",
    "a high contrast photo of a {}.", "a bad photo of a {}.", "a good photo of a {}.", "a photo of a small {}.",
    "a photo of a big {}.", "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.", "a bad photo of the {}.",
    "a good photo of the {}.", "a photo of the small {}.", "a photo of the big {}.",
};

static const char *const mnist[] = {"a photo of the number: \"{}\"."};
static const char *const photo[] = {"a photo of a {}."};
static const char *const name_only[] = {"{}"};
// The caption forms of the corpus (data/corpus.py) for emoji and icons.
static const char *const emoji[] = {"{}", "an emoji of a {}", "a {} emoji"};
static const char *const icon[] = {"{}", "an icon of a {}", "a {} icon"};

static const vlm_template_set sets[] = {
    {"imagenet", imagenet80, 80}, {"imagenet7", imagenet7, 7}, {"cifar10", cifar10, 18},
    {"mnist", mnist, 1},          {"photo", photo, 1},         {"name", name_only, 1},
    {"emoji", emoji, 3},          {"icon", icon, 3},
};

const vlm_template_set *vlm_templates_builtin(const char *name) {
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (!strcmp(sets[i].name, name)) return &sets[i];
    return NULL;
}

const char *vlm_templates_builtin_names(void) { return "imagenet (80), imagenet7, cifar10 (18), mnist, photo, name, emoji (3), icon (3)"; }

vlm_status vlm_templates_resolve(const char *name_or_file, char ***templates, int *n, int *owned, vlm_error *err) {
    *templates = NULL;
    *n = 0;
    *owned = 0;
    const vlm_template_set *ts = vlm_templates_builtin(name_or_file);
    if (ts) {
        *templates = (char **)ts->t;
        *n = ts->n;
        return VLM_OK;
    }
    FILE *f = fopen(name_or_file, "r");
    if (!f)
        return vlm_errorf(err, VLM_ERR_ARG, "--templates: '%s' is neither a built-in set (%s) nor a readable file",
                          name_or_file, vlm_templates_builtin_names());
    fclose(f);
    vlm_status st = vlm_templates_load(name_or_file, templates, n, err);
    if (!st) *owned = 1;
    return st;
}

vlm_status vlm_templates_load(const char *path, char ***templates, int *n, vlm_error *err) {
    vlm_status st = vlm_lines_load_nonblank(path, templates, n, err);
    if (st) return st;
    for (int i = 0; i < *n; i++)
        if (!strstr((*templates)[i], "{}")) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: template %d \"%s\" has no {} placeholder", path, i + 1, (*templates)[i]);
            vlm_strlist_free(*templates, *n);
            return st;
        }
    return VLM_OK;
}

