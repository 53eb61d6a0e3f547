// Class embeddings from names, built as OpenAI does for zero-shot
// classification (encode every template filled with the class name, normalise
// each, average, renormalise; logits = 100 * image features @ W^T), and text
// encoding in batches. The template sets themselves live in eval/templates.h.
#ifndef VLM_FUSION_CLASSES_H
#define VLM_FUSION_CLASSES_H

#include "fusion/clip.h"
#include "text/tokenizer.h"

// Encodes texts into normalised embeddings out [n, E], in chunks of 256.
vlm_status vlm_clip_encode_texts(vlm_clip *m, vlm_tokenizer *tok, const char *const *texts, int n, float *out,
                                 vlm_error *err);
// W: [C, E] normalised class embeddings.
vlm_status vlm_zeroshot_classifier(vlm_clip *m, vlm_tokenizer *tok, const char *const *classnames, int C,
                                   const char *const *templates, int T, float *W, vlm_error *err);
// Fills "{}" in tmpl with name (all occurrences) into out.
vlm_status vlm_template_fill(const char *tmpl, const char *name, char *out, size_t cap, vlm_error *err);

#endif
