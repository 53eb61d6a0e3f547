// Zero-shot classification metrics: image embeddings scored against class
// embeddings (logits = 100 * img @ W^T, as OpenAI's zero-shot head), top-1
// and top-5, per-class accuracy and the confusion counts.
#ifndef VLM_EVAL_ZEROSHOT_H
#define VLM_EVAL_ZEROSHOT_H

#include <stdint.h>
#include "core/error.h"

typedef struct {
    int64_t n, top1, top5;
    int C;
    int64_t *cls_n, *cls_ok; // [C] images and correct top-1 per true class
    int64_t *confusion;      // [C, C] rows = true class, columns = top-1 prediction
} vlm_zeroshot_result;

// img: [n, E] L2-normalised image embeddings, labels: n true classes in
// [0, C) (one outside is an error naming the row), W: [C, E] class embeddings.
// Ties count against the true class (eval/classify.h's rank).
vlm_status vlm_zeroshot_eval(const float *img, const int32_t *labels, int64_t n, const float *W, int C, int E,
                             vlm_zeroshot_result *r, vlm_error *err);
void vlm_zeroshot_result_free(vlm_zeroshot_result *r);

#endif
