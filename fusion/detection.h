// The open-vocabulary detector as users handle it: the detection head and
// fine-tuned image tower (vision/detector.h) together with the CLIP's frozen
// text tower and tokenizer, which turn any class name or free text into a
// query embedding. One self-contained file holds all of it.
//
// File: every detector parameter by name ("visual.*" at the detector's input
// size, "det.*"), the CLIP's text-side tensors by their OpenAI names
// ("token_embedding.weight", "transformer.*", "ln_final.*", "text_projection",
// "logit_scale"), and metadata "format" = "vlm-detector", "config" (detector
// JSON), "clip_config" (open_clip JSON), "tokenizer" (BPE merges) and
// "classnames" (the training categories, one per line).
#ifndef VLM_FUSION_DETECTION_H
#define VLM_FUSION_DETECTION_H

#include "data/image.h"
#include "fusion/checkpoint.h"
#include "fusion/detect_ensemble.h"
#include "text/tokenizer.h"
#include "vision/detector.h"

typedef struct {
    vlm_detector det;
    vlm_clip clip;     // its text tower encodes the queries (never trained here)
    vlm_tokenizer tok;
    char *tokenizer_text;
    int has_tok;
    vlm_det_ensemble *ens; // optional (caller-owned): vlm_owl_detect fuses its scores with this
                           // frozen CLIP's on the token crops; its queries must be the Q given
} vlm_owl;

// From a CLIP model file: the detector's tower gets the CLIP's image tower at
// input image_size and patch patch_size (0 = the CLIP's; a multiple of it),
// positional embedding resized to the new grid, and class_proj =
// visual.proj^T; the head is fresh (seed).
vlm_status vlm_owl_from_clip(vlm_owl *o, const char *clip_path, int image_size, int patch_size, uint64_t seed,
                             vlm_error *err);
// From a detector file (model or training state).
vlm_status vlm_owl_load(vlm_owl *o, const char *path, char **classnames, vlm_error *err);
void vlm_owl_free(vlm_owl *o);
// Model file (atomic). classnames: newline-separated, may be NULL.
vlm_status vlm_owl_save(const char *path, const vlm_owl *o, const char *classnames, vlm_error *err);
// Training state: the detector's parameters and AdamW moments + *s (the text
// tower never changes, so it is not repeated); resume by building the model
// as the original run did, then vlm_owl_load_state.
vlm_status vlm_owl_save_state(const char *path, const vlm_owl *o, const char *classnames, const vlm_train_state *s,
                              const char *args_json, vlm_error *err);
vlm_status vlm_owl_load_state(const char *path, vlm_owl *o, vlm_train_state *s, vlm_error *err);
// Query embeddings [n, E], L2-normalised: each text filled into every
// template, encoded by the text tower, normalised, averaged and renormalised
// (OpenAI's zero-shot recipe). templates NULL -> the text itself ("{}").
vlm_status vlm_owl_queries(vlm_owl *o, const char *const *texts, int n, const char *const *templates, int n_templates,
                           float *out, vlm_error *err);

// Detects Q queries (embeddings qe [Q, E] from vlm_owl_queries) in one RGB
// image of any size. A non-square image is padded to a square (bottom and
// right, grey 128) before the eval transform, so the whole image is seen
// undistorted; boxes are in the image's pixels, clipped to it, and boxes lying
// wholly in the padding are dropped. Each box takes its best query (OWL-ViT's
// post-processing); with o->ens the scores are the fused ones
// (fusion/detect_ensemble.h). Writes the detections with score >= threshold, best first,
// at most max_det of them, to out[max_det]; *n their count.
vlm_status vlm_owl_detect(vlm_owl *o, const vlm_image *img, const float *qe, int Q, float threshold, int max_det,
                          vlm_det_box *out, int *n, vlm_error *err);

#endif
