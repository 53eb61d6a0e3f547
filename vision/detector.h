// Open-vocabulary detection head on the ViT (OWL-ViT style): every patch token
// predicts one box and one class embedding; class logits are cosine
// similarities with text-query embeddings, so the classes are whatever the
// queries name.
//
//   images [B, 3, S, S] -> ViT tokens [B, 1+N, W] -> ln_post (all tokens)
//   merge:  x = LN_merge(patch_tokens * class_token)                 [B, N, W]
//   boxes:  sigmoid(MLP_box(x) + box_bias)   (cx, cy, w, h) in [0,1]  [B, N, 4]
//           MLP_box: W -> W -> W -> 4, GELU, last layer zero-initialised;
//           box_bias puts token n's initial box on its own patch
//   class:  e = normalize(x @ class_proj^T + b)                       [B, N, E]
//           logits = (e @ queries^T + shift(x)) * scale(x)            [B, N, Q]
//           shift = x @ w_s + b_s, scale = elu(x @ w_k + b_k) + 1     [B, N, 1]
//
// Parameter names: the tower keeps OpenAI's "visual.*" names (so a CLIP's
// image tower loads by name); the head is "det.merge_ln.{weight,bias}",
// "det.box.{0,1,2}.{weight,bias}", "det.class_proj.{weight,bias}",
// "det.logit_shift.{weight,bias}", "det.logit_scale.{weight,bias}".
#ifndef VLM_VISION_DETECTOR_H
#define VLM_VISION_DETECTOR_H

#include "vision/vit.h"

typedef struct {
    vlm_vit_cfg vit; // image_size is the detector's input size
    int embed_dim;   // query embedding size E (the CLIP's embed_dim)
    // Inference: per-query non-maximum suppression of the decoded boxes at
    // this IoU (0 = none, OWL-ViT's one-to-one setting). A head trained with
    // one-to-many matching (several tokens per object) needs it.
    float nms_iou;
} vlm_detector_cfg;

typedef struct {
    vlm_detector_cfg cfg;
    vlm_params ps;
    vlm_vit vit;
    int merge_w, merge_b, box_w[3], box_b[3], cls_w, cls_b, shift_w, shift_b, scale_w, scale_b;
    int grid;        // tokens per side (N = grid^2)
    float *box_bias; // [N, 4] inverse-sigmoid of each patch's own box
} vlm_detector;

vlm_status vlm_detector_init(vlm_detector *d, const vlm_detector_cfg *cfg, vlm_error *err);
void vlm_detector_free(vlm_detector *d);
// Fresh weights (deterministic in seed): the tower as vlm_vit_init_weights;
// box MLP N(0, W^-1/2) with the last layer zero; class_proj N(0, W^-1/2);
// shift/scale weights N(0, 0.02) with biases that start logits near the
// focal-loss prior: scale = elu1(9) = 10, shift = -0.9, so a token whose class
// embedding has the cosine typical of unrelated CLIP embeddings (~0.45) starts
// at logit -4.5 (p ~ 0.01).
void vlm_detector_init_weights(vlm_detector *d, uint64_t seed);
// Copies the "visual.*" tensors of a CLIP's parameter store into the tower
// (the positional embedding bilinearly resized when the grids differ, the
// class position kept; a patch k times the CLIP's gets conv1 upsampled k x k
// (nearest) / k^2, exact on k-times-upsampled images, so a 32 px / patch 4
// CLIP reads 64 px images at patch 8 with the same 8 x 8 token grid) and sets class_proj to visual.proj^T, so class
// embeddings start in the CLIP's joint space. *copied counts the tensors.
vlm_status vlm_detector_copy_from_clip(vlm_detector *d, const vlm_params *clip_ps, int *copied, vlm_error *err);
// Bilinear resize (align_corners = False, as F.interpolate) of a positional
// embedding [1 + g0*g0, W] to [1 + g1*g1, W]; row 0 (class) is copied.
void vlm_pos_emb_resize(const float *src, int g0, float *dst, int g1, int W);
// Freezes (1) or unfreezes (0) the tower ("visual.*").
void vlm_detector_lock_image(vlm_detector *d, int lock);

typedef struct {
    vlm_tensor *logits; // [B, N, Q]
    vlm_tensor *boxes;  // [B, N, 4] (cx, cy, w, h) in [0, 1]
} vlm_det_out;

// images [B, 3, S, S]; queries [Q, E] L2-normalised text embeddings (constant:
// no gradient flows into them). Returns 0 and fills out, or -1 (c failed).
int vlm_detector_forward(vlm_ctx *c, vlm_detector *d, vlm_tensor *images, const float *queries, int Q,
                         vlm_det_out *out);

// Boxes of one image from its head outputs: for each token and each valid
// query, a detection (query q, score sigmoid(logit)); keeps the top `max_det`
// by score (OWL-ViT's per-token top class, then across tokens). With
// nms_iou > 0, a box whose IoU with a higher-scoring kept box of the same
// query exceeds nms_iou is dropped before the top max_det are taken. Boxes
// are returned in pixels [x, y, w, h] of an image of size img_w x img_h.
typedef struct {
    float x, y, w, h, score;
    int query;
} vlm_det_box;
int vlm_detector_decode(const float *logits, const float *boxes, int N, int Q, const uint8_t *query_valid,
                        int img_w, int img_h, int max_det, int per_token_top1, float nms_iou, vlm_det_box *out);

#endif
