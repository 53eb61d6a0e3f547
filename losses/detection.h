// Detection set loss (DETR / OWL-ViT style): exact Hungarian assignment of
// predicted boxes to ground truth, box utilities (IoU, GIoU), and the sigmoid
// focal, L1 and GIoU losses as autograd ops normalised by the number of boxes.
#ifndef VLM_LOSSES_DETECTION_H
#define VLM_LOSSES_DETECTION_H

#include "core/box.h"
#include "core/ops.h"

// ---- configuration -----------------------------------------------------------
// Matching cost C = cost_class * focal_cost + cost_bbox * L1 + cost_giou * (-GIoU),
// focal_cost(x) = alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p)),
// p = sigmoid(x) (Deformable DETR's / OWL-ViT's matcher), with the loss's
// alpha and gamma (as OWL-ViT; Deformable DETR fixes 0.25 / 2 in the matcher).
// Loss = loss_class * focal + loss_bbox * L1 + loss_giou * (1 - GIoU), each
// term summed and divided by max(1, number of GT boxes in the batch).
typedef struct {
    float cost_class, cost_bbox, cost_giou; // matching weights: 2, 5, 2 (DETR / Deformable DETR)
    float loss_class, loss_bbox, loss_giou; // loss weights: 2, 5, 2 (Deformable DETR; OWL-ViT uses 1, 1, 1)
    float focal_alpha, focal_gamma;         // 0.3, 2 (OWL-ViT)
    // One-to-many matching (H-DETR's hybrid branch): each GT box enters the
    // Hungarian matching this many times, so up to that many tokens learn it
    // (capped per image at N / n boxes); the normaliser counts the copies.
    // 1 = one-to-one (DETR / OWL-ViT; no NMS needed at inference); > 1 trains
    // more tokens per step and needs NMS (vlm_detector_cfg.nms_iou).
    int one_to_many;
    // > 0: the loss divides by this instead of the batch's own max(1, boxes):
    // data-parallel training passes the mean box count per rank over all
    // ranks (DETR's num_boxes), so the mean of the ranks' losses is the
    // global batch's loss. 0 (default): the batch's own count.
    float norm;
} vlm_det_cfg;

void vlm_det_cfg_default(vlm_det_cfg *cfg);

// Ground truth of one image: n boxes (cx, cy, w, h), normalised to the image,
// w, h >= 0; query[j] in [0, Q) is the (valid) query / class of box j.
typedef struct {
    int n;
    const float *boxes;    // [n, 4]
    const int32_t *query;  // [n]
} vlm_det_target;

// The box count the loss of these B images normalises by (one-to-many copies
// included, N predictions per image), before the max(1, .).
int64_t vlm_det_num_targets(const vlm_det_target *targets, int64_t B, int64_t N, const vlm_det_cfg *cfg);

// Per-batch figures for logging: the unweighted terms (each already divided by
// num_boxes) and the weighted total (the value of the returned tensor).
typedef struct {
    float total, focal, l1, giou;
    int num_boxes; // GT boxes in the batch (the normaliser is max(1, num_boxes))
} vlm_det_stats;

// ---- Hungarian assignment ----------------------------------------------------
// Minimum-cost assignment for cost [n_rows, n_cols] (row-major), n_cols <= n_rows:
// col_to_row[j] is the distinct row given to column j (n_cols entries), and
// *total (if non-NULL) the summed cost. Shortest augmenting paths with
// potentials (Jonker-Volgenant / Kuhn-Munkres), O(n_cols^2 n_rows), double
// precision. Deterministic: among equal reduced costs each search step takes
// the lowest row index, so ties always resolve the same way. n_cols == 0 is an
// empty assignment; n_cols > n_rows and non-finite costs are errors.
vlm_status vlm_det_hungarian(const double *cost, int64_t n_rows, int64_t n_cols, int32_t *col_to_row, double *total,
                             vlm_error *err);

// ---- matching (no gradient) ---------------------------------------------------
// One image: logits [N, Q], boxes [N, 4] (cx, cy, w, h), t->n GT boxes ->
// cost [N, t->n] (row-major, double). Errors name the bad box / query / value.
vlm_status vlm_det_cost(const float *logits, const float *boxes, int64_t n_tokens, int64_t n_queries,
                        const vlm_det_target *t, const vlm_det_cfg *cfg, double *cost, vlm_error *err);
// cost + Hungarian: match[j] = token assigned to GT box j (t->n entries);
// *total_cost (if non-NULL) is the matched cost. t->n > N is an error.
vlm_status vlm_det_match(const float *logits, const float *boxes, int64_t n_tokens, int64_t n_queries,
                         const vlm_det_target *t, const vlm_det_cfg *cfg, int32_t *match, double *total_cost,
                         vlm_error *err);

// ---- loss ops (recorded on the tape, hand-written backward) -----------------------
// logits: [B, N, Q]; target: [B, N, Q] bytes, nonzero = positive (NULL: all
// negative); query_valid: [B, Q] bytes, 0 = padded query (NULL: all valid).
// -> [1] = sum over valid (b, n, q) of alpha_t (1 - p_t)^gamma BCE(x, t) / norm.
// Padded queries add nothing and get zero gradient. A non-finite sum is an error.
vlm_tensor *vlm_op_sigmoid_focal(vlm_ctx *c, vlm_tensor *logits, const uint8_t *target, const uint8_t *query_valid,
                                 float alpha, float gamma, float norm);
// boxes: [..., 4] (cx, cy, w, h); idx: k rows of boxes viewed as [R, 4];
// gt: [k, 4] (cx, cy, w, h). -> [1] = sum_j |boxes[idx_j] - gt_j|_1 / norm.
vlm_tensor *vlm_op_box_l1(vlm_ctx *c, vlm_tensor *boxes, const int64_t *idx, const float *gt, int64_t k, float norm);
// Same inputs -> [1] = sum_j (1 - GIoU(boxes[idx_j], gt_j)) / norm. Boxes with
// w or h < 0 or non-finite values are an error.
vlm_tensor *vlm_op_box_giou_loss(vlm_ctx *c, vlm_tensor *boxes, const int64_t *idx, const float *gt, int64_t k,
                                 float norm);

// The set loss of a batch. logits: [B, N, Q] (token x query), boxes: [B, N, 4]
// (already sigmoided cx, cy, w, h), query_valid: [B, Q] bytes or NULL,
// targets: B images' ground truth, cfg: NULL for the defaults, stats: NULL or
// filled. Matches every image (no gradient), then returns the weighted total
// [1]; gradients flow into logits and boxes.
vlm_tensor *vlm_loss_detection(vlm_ctx *c, vlm_tensor *logits, vlm_tensor *boxes, const uint8_t *query_valid,
                               const vlm_det_target *targets, const vlm_det_cfg *cfg, vlm_det_stats *stats);

#endif
