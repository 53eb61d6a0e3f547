// Open-vocabulary score fusion (ViLD's ensemble, F-VLM's geometric mean): a
// frozen CLIP classifies the crop of each detector token's box among the
// queries, and the detector's probability p_det and the CLIP's p_clip become
// p_det^(1-w) * p_clip^w, w = w_seen for the classes the detector was trained
// on and w_novel for the rest. Fine-tuning the image tower on the seen classes
// pulls its region embeddings towards them; the untouched CLIP still knows the
// names it was pretrained on, which is what held-out classes need.
//
//   vlm_det_ensemble e;  vlm_det_ensemble_init(&e, &opts, &err);       // loads opts.clip
//   e.seen = "t-shirt\nbag";  vlm_det_ensemble_queries(&e, names, Q, NULL, 0, &err);  // per split
//   vlm_det_ensemble_rescore(&e, &img, boxes, logits, N, &err);       // per image
#ifndef VLM_FUSION_DETECT_ENSEMBLE_H
#define VLM_FUSION_DETECT_ENSEMBLE_H

#include "core/tensor.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/clip.h"
#include "text/tokenizer.h"

typedef struct {
    const char *clip;       // CLIP model file (with its tokenizer)
    float w_seen, w_novel;  // the CLIP's exponent for seen / novel queries (default 0, 0.65;
                            // F-VLM: 0.35, 0.65)
    float context;          // crop side = context * the box's longer side, square (default 1: the box)
    int top;                // tokens rescored per image, by the detector's best score (default 16)
} vlm_det_ensemble_opts;

typedef struct {
    vlm_det_ensemble_opts o;
    vlm_clip clip;
    vlm_tokenizer tok;
    char *tok_text;
    const char *seen; // the detector's training classes, newline-separated (set by the caller;
                      // NULL = every query is novel)
    int Q;          // queries set by vlm_det_ensemble_queries
    float *qe;      // [Q, E] normalised query embeddings of the CLIP
    float *w;       // [Q] exponent of each query
    float *x;       // [top, 3, S, S] crops
    float *pc;      // [top, Q] CLIP probabilities
    int *tok_idx;   // [top] rescored tokens
    float *tok_best; // [top] their best logit (the sort key)
    uint8_t *u8;    // [S, S, 3] one resized crop
    vlm_transform tf; // the CLIP's Normalize
    vlm_transform_scratch sc;
    vlm_ctx c;
    int loaded;
} vlm_det_ensemble;

void vlm_det_ensemble_opts_default(vlm_det_ensemble_opts *o);
// Loads o->clip and its tokenizer. vlm_det_ensemble_free is safe after a
// failed init (and on a zeroed struct).
vlm_status vlm_det_ensemble_init(vlm_det_ensemble *e, const vlm_det_ensemble_opts *o, vlm_error *err);
void vlm_det_ensemble_free(vlm_det_ensemble *e);
// The queries of the next images: names [Q] through the templates (NULL =
// the names); a name listed in e->seen gets w_seen, others w_novel.
vlm_status vlm_det_ensemble_queries(vlm_det_ensemble *e, const char *const *names, int Q, const char *const *templates,
                                    int nt, vlm_error *err);
// One image: boxes [N, 4] (cx, cy, w, h in [0, 1] of the image), logits
// [N, Q] the detector's (sigmoid -> p_det), rewritten in place as the log-odds
// of the fused score. The `top` tokens with the best detector score are
// cropped and classified; the others fuse with p_clip = 1/Q (no evidence).
vlm_status vlm_det_ensemble_rescore(vlm_det_ensemble *e, const vlm_image *img, const float *boxes, float *logits, int N,
                                    vlm_error *err);

#endif
