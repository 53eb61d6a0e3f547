// An embeddings file and exact top-k search over it: "embeddings" [n, dim]
// (L2-normalised f32) in safetensors, with the ids (file names, texts) as
// metadata; search scores every vector by inner product (one GEMM) and keeps
// the k best.
#ifndef VLM_API_INDEX_H
#define VLM_API_INDEX_H

#include <stdint.h>
#include "core/error.h"

typedef struct {
    int64_t n;
    int dim;
    float *emb; // [n, dim]
    char **ids; // [n]
    char *model;  // the model that made them (metadata; may be NULL)
    char *source; // what was embedded (metadata; may be NULL)
    int64_t next; // source samples consumed so far (a partial file resumes there)
} vlm_index;

vlm_status vlm_index_load(vlm_index *ix, const char *path, vlm_error *err);
// Written atomically.
vlm_status vlm_index_save(const vlm_index *ix, const char *path, vlm_error *err);
void vlm_index_free(vlm_index *ix);
// q [nq, dim] -> for each query the k best rows (k <= n): idx [nq, k], score [nq, k], best first.
vlm_status vlm_index_search(const vlm_index *ix, const float *q, int nq, int k, int64_t *idx, float *score,
                            vlm_error *err);

#endif
