// Classification metrics: a label's rank among the logits, top-1/top-5
// counts, and a classifier's top-1, top-5 and cross-entropy over a dataset.
#ifndef VLM_EVAL_CLASSIFY_H
#define VLM_EVAL_CLASSIFY_H

#include <stdint.h>
#include "data/dataset.h"
#include "vision/classifier.h"

// How many of the K logits rank before label y's (ties count against the
// label: a class with an equal logit and a lower index ranks first); 0 = top-1.
int vlm_label_rank(const float *logits, int K, int y);
// Counts rows whose label is the top-1 / within the top-5 logits (rows with a
// label outside [0, K) count as wrong).
void vlm_topk_count(const float *logits, const int32_t *y, int64_t n, int K, int64_t *top1, int64_t *top5);

typedef struct {
    int64_t n, top1, top5;
    double loss; // mean cross-entropy
} vlm_cls_eval;

// Top-1/top-5 and mean cross-entropy of m over ds (eval transform, batches of
// `batch` decoded by `workers` threads) on the context c (its grad and
// training flags are restored). A label outside the model's classes is an
// error naming the sample.
vlm_status vlm_classifier_evaluate(vlm_classifier *m, const vlm_dataset *ds, int batch, int workers, vlm_ctx *c,
                                   vlm_cls_eval *r, vlm_error *err);

#endif
