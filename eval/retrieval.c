// Retrieval metrics (see retrieval.h).
#include "eval/retrieval.h"
#include <stdlib.h>
#include <string.h>
#include "core/op_ext.h"

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void summarise(int64_t *ranks, int64_t n, double *r1, double *r5, double *r10, double *mean, double *median) {
    double s = 0;
    int64_t c1 = 0, c5 = 0, c10 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)ranks[i];
        c1 += ranks[i] <= 1;
        c5 += ranks[i] <= 5;
        c10 += ranks[i] <= 10;
    }
    qsort(ranks, (size_t)n, sizeof *ranks, cmp_i64);
    *r1 = (double)c1 / (double)n;
    *r5 = (double)c5 / (double)n;
    *r10 = (double)c10 / (double)n;
    *mean = s / (double)n;
    *median = n % 2 ? (double)ranks[n / 2] : 0.5 * (double)(ranks[n / 2 - 1] + ranks[n / 2]);
}

vlm_status vlm_retrieval_eval(const float *img, const float *txt, int64_t n, int64_t e, const int32_t *groups,
                              vlm_retrieval *out, vlm_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 1) return vlm_errorf(err, VLM_ERR_ARG, "retrieval: no samples");
    float *sim = malloc(sizeof(float) * (size_t)(n * n));
    int64_t *ri = malloc(sizeof(int64_t) * (size_t)n), *rt = malloc(sizeof(int64_t) * (size_t)n);
    if (!sim || !ri || !rt) {
        free(sim); free(ri); free(rt);
        return vlm_errorf(err, VLM_ERR_OOM, "retrieval: out of memory for %lld x %lld similarities", (long long)n,
                          (long long)n);
    }
    vlm_mat S = {sim, n, n, n, 1}, A = {(float *)img, n, e, e, 1}, Bt = {(float *)txt, e, n, 1, e};
    vlm_gemm(S, A, Bt, 1, 0); // sim[i][j] = img_i . txt_j
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        // image i -> texts: best correct score, rank = 1 + #incorrect scoring higher
        float best = -1e30f;
        for (int64_t j = 0; j < n; j++)
            if (groups ? groups[j] == groups[i] : j == i) best = sim[i * n + j] > best ? sim[i * n + j] : best;
        int64_t r = 1;
        for (int64_t j = 0; j < n; j++)
            if (!(groups ? groups[j] == groups[i] : j == i) && sim[i * n + j] > best) r++;
        ri[i] = r;
        // text i -> images (column i)
        best = -1e30f;
        for (int64_t j = 0; j < n; j++)
            if (groups ? groups[j] == groups[i] : j == i) best = sim[j * n + i] > best ? sim[j * n + i] : best;
        r = 1;
        for (int64_t j = 0; j < n; j++)
            if (!(groups ? groups[j] == groups[i] : j == i) && sim[j * n + i] > best) r++;
        rt[i] = r;
    }
    out->n = n;
    summarise(ri, n, &out->i2t_r1, &out->i2t_r5, &out->i2t_r10, &out->i2t_mean_rank, &out->i2t_median_rank);
    summarise(rt, n, &out->t2i_r1, &out->t2i_r5, &out->t2i_r10, &out->t2i_mean_rank, &out->t2i_median_rank);
    free(sim);
    free(ri);
    free(rt);
    return VLM_OK;
}

typedef struct {
    const char *s;
    int64_t i;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i < y->i ? -1 : x->i > y->i);
}

void vlm_group_ids(const char *const *strs, int64_t n, int32_t *ids) {
    keyed *k = malloc(sizeof(keyed) * (size_t)(n ? n : 1));
    if (!k) { // fall back to distinct ids
        for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)i;
        return;
    }
    for (int64_t i = 0; i < n; i++) k[i] = (keyed){strs[i] ? strs[i] : "", i};
    qsort(k, (size_t)n, sizeof *k, cmp_keyed);
    int32_t g = -1;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(k[i].s, k[i - 1].s)) g = (int32_t)k[i].i;
        ids[k[i].i] = g;
    }
    free(k);
}
