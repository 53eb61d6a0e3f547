// The generator's data: every usable sample of a dataset in memory at the
// model's resolution with the frozen CLIP's embedding of its condition
// (caption, class prompt or the image itself), and the batched CLIP / model
// passes over 8-bit images that training, sampling and evaluation share.
#ifndef VLM_TRAIN_GEN_DATA_H
#define VLM_TRAIN_GEN_DATA_H

#include <stdint.h>
#include "data/dataset.h"
#include "data/image.h"
#include "fusion/generator.h"

// A growable list of owned strings.
typedef struct {
    char **p;
    int n;
} vlm_strvec;
void vlm_strvec_free(vlm_strvec *l);
vlm_status vlm_strvec_add(vlm_strvec *l, const char *s, vlm_error *err);

// Every usable sample of a dataset in memory at the model's resolution (the eval
// transform: shortest side to S, centre crop), with its conditioning row.
typedef struct {
    int64_t n, skipped;
    int S;
    uint8_t *rgb;    // [n, S, S, 3]
    int32_t *row;    // [n] row of emb
    float *emb;      // [n_emb, E]
    int64_t n_emb;
    vlm_strvec texts;   // text conditioning: the distinct prompts (n_emb)
    char skip_note[768]; // what was skipped and why ("" if nothing)
} vlm_gen_data;

// Loads spec (any dataset vlm reads; first `limit` samples if > 0): images
// through the eval transform to the generator's size, conditions embedded
// once per distinct prompt (text) or per image. Bad samples are skipped and
// described in d->skip_note.
vlm_status vlm_gen_data_load(vlm_gen *g, const char *spec, const char *classnames, const vlm_decode_opts *dec,
                             int64_t limit, vlm_gen_data *d, vlm_error *err);
void vlm_gen_data_free(vlm_gen_data *d);

// Text embeddings [n, E] (L2-normalised) through the generator's CLIP and tokenizer.
vlm_status vlm_gen_embed_texts(vlm_gen *g, const char *const *texts, int n, float *out, vlm_error *err);
// CLIP image embeddings [n, E] (L2-normalised) of 8-bit RGB images [n, s, s, 3]
// through the CLIP's eval transform (resize to its input size).
vlm_status vlm_gen_embed_images(vlm_clip *m, const uint8_t *rgb, int64_t n, int s, float *out, vlm_error *err);
// Class names -> prompts through the template ("{}" = the name).
vlm_status vlm_gen_fill_prompts(const char *tmpl, char **names, int n, vlm_strvec *out, vlm_error *err);
// Runs f (a model on [b, 3, S, S] eval-transformed images -> [b, dout]) over
// 8-bit RGB images [n, s, s, 3] in batches of 64; rows into out [n, dout].
typedef vlm_tensor *(*vlm_image_fn)(vlm_ctx *c, void *model, vlm_tensor *images);
vlm_status vlm_images_forward(const uint8_t *rgb, int64_t n, int s, int S, vlm_image_fn f, void *model, int dout, float *out,
                              vlm_error *err);

#endif
