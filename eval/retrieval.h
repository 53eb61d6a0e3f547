// Image<->text retrieval metrics over paired, L2-normalised embeddings.
#ifndef VLM_EVAL_RETRIEVAL_H
#define VLM_EVAL_RETRIEVAL_H

#include <stdint.h>
#include "core/error.h"

typedef struct {
    int64_t n;
    double i2t_r1, i2t_r5, i2t_r10, i2t_mean_rank, i2t_median_rank;
    double t2i_r1, t2i_r5, t2i_r10, t2i_mean_rank, t2i_median_rank;
} vlm_retrieval;

// img, txt: [N, E] normalised. groups: N ids or NULL. Query i's correct
// candidates are those j with groups[j] == groups[i] (j == i when NULL); its
// rank (1-based) is that of the best-scored correct candidate.
vlm_status vlm_retrieval_eval(const float *img, const float *txt, int64_t n, int64_t e, const int32_t *groups,
                              vlm_retrieval *out, vlm_error *err);
// Group ids from strings: equal strings share an id.
void vlm_group_ids(const char *const *strs, int64_t n, int32_t *ids);

#endif
