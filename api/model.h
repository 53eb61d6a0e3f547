// The library's front door for using a trained CLIP: open any weights vlm
// reads (vlm files, OpenAI .pt, open_clip, Hugging Face, GGUF), embed images
// and texts (L2-normalised), classify zero-shot from labels. A vlm_model is
// used by one thread at a time (it owns its step context).
#ifndef VLM_API_MODEL_H
#define VLM_API_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

typedef struct vlm_model vlm_model;

// path: weights in any format fusion/import.h reads; tokenizer: a BPE merges
// file, or NULL for the one that came with the weights (texts are refused
// without one).
vlm_status vlm_model_open(vlm_model **out, const char *path, const char *tokenizer, vlm_error *err);
void vlm_model_close(vlm_model *m);
int vlm_model_dim(const vlm_model *m);        // E, the embedding width
int vlm_model_image_size(const vlm_model *m); // the image tower's input side
int vlm_model_has_text(const vlm_model *m);   // a tokenizer is there

// Image files (PNG, JPEG; alpha dropped) -> out [n, E].
vlm_status vlm_model_embed_files(vlm_model *m, const char *const *paths, int n, float *out, vlm_error *err);
// One encoded image (PNG or JPEG bytes) -> out [E]; what names it in errors.
vlm_status vlm_model_embed_encoded(vlm_model *m, const void *data, size_t size, const char *what, float *out,
                                   vlm_error *err);
// 8-bit RGB images [n, h, w, 3] (any size: open_clip's eval transform) -> out [n, E].
vlm_status vlm_model_embed_rgb(vlm_model *m, const uint8_t *rgb, int n, int w, int h, float *out, vlm_error *err);
// Texts -> out [n, E].
vlm_status vlm_model_embed_texts(vlm_model *m, const char *const *texts, int n, float *out, vlm_error *err);
// Zero-shot: probabilities [n_labels] = softmax(100 * image . class embedding),
// class embeddings from the labels through templates ("{}"; NULL: the label itself).
vlm_status vlm_model_classify(vlm_model *m, const float *image_emb, const char *const *labels, int n_labels,
                              const char *const *templates, int n_templates, float *probs, vlm_error *err);

#endif
