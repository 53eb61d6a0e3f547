// Embeddings files and exact top-k search (see index.h).
#include "api/index.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#ifdef VLM_HAVE_OPENBLAS
#include <cblas.h>
#endif

void vlm_index_free(vlm_index *ix) {
    for (int64_t i = 0; ix->ids && i < ix->n; i++) free(ix->ids[i]);
    free(ix->ids), free(ix->emb), free(ix->model), free(ix->source);
    memset(ix, 0, sizeof *ix);
}

vlm_status vlm_index_save(const vlm_index *ix, const char *path, vlm_error *err) {
    json_t *a = json_array();
    for (int64_t i = 0; a && i < ix->n; i++) json_array_append_new(a, json_string(ix->ids[i] ? ix->ids[i] : ""));
    char *ids = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!ids) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %lld ids", path, (long long)ix->n);
    char dim[32], next[32];
    snprintf(dim, sizeof dim, "%d", ix->dim);
    snprintf(next, sizeof next, "%lld", (long long)ix->next);
    int64_t shape[2] = {ix->n, ix->dim};
    vlm_st_tensor t = {"embeddings", VLM_F32, 2, shape, ix->emb};
    const char *k[6] = {"format", "ids", "dim", "model", "source", "next"},
               *v[6] = {"vlm-embeddings", ids, dim, ix->model ? ix->model : "", ix->source ? ix->source : "", next};
    vlm_status st = vlm_st_write(path, &t, 1, k, v, 6, err);
    free(ids);
    return st;
}

vlm_status vlm_index_load(vlm_index *ix, const char *path, vlm_error *err) {
    memset(ix, 0, sizeof *ix);
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    const vlm_st_entry *e = vlm_st_find(&f, "embeddings");
    const char *fmt = vlm_st_meta(&f, "format"), *ids = vlm_st_meta(&f, "ids"), *model = vlm_st_meta(&f, "model"),
               *src = vlm_st_meta(&f, "source"), *next = vlm_st_meta(&f, "next");
    json_error_t je;
    json_t *a = ids ? json_loads(ids, 0, &je) : NULL;
    if (!fmt || strcmp(fmt, "vlm-embeddings") || !e || e->ndim != 2 || e->dtype != VLM_F32 || !json_is_array(a) ||
        (int64_t)json_array_size(a) != e->shape[0] || e->shape[1] < 1 || e->shape[1] > (1 << 20))
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a vlm embeddings file (embeddings [n, dim] F32 and n ids)", path);
    else {
        ix->n = e->shape[0], ix->dim = (int)e->shape[1];
        ix->emb = malloc(sizeof(float) * (size_t)(ix->n > 0 ? ix->n * ix->dim : 1));
        ix->ids = calloc((size_t)(ix->n ? ix->n : 1), sizeof *ix->ids);
        ix->model = model && *model ? strdup(model) : NULL;
        ix->source = src && *src ? strdup(src) : NULL;
        ix->next = next ? atoll(next) : ix->n;
        if (!ix->emb || !ix->ids) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
        else memcpy(ix->emb, vlm_st_data(&f, e), sizeof(float) * (size_t)(ix->n * ix->dim));
        for (int64_t i = 0; !st && i < ix->n; i++) {
            const char *s = json_string_value(json_array_get(a, (size_t)i));
            if (!(ix->ids[i] = strdup(s ? s : ""))) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        }
    }
    json_decref(a);
    vlm_st_free(&f);
    if (st) vlm_index_free(ix);
    return st;
}

static void swap_at(float *hs, int64_t *hi, int a, int b) {
    float ts = hs[a];
    int64_t ti = hi[a];
    hs[a] = hs[b], hi[a] = hi[b], hs[b] = ts, hi[b] = ti;
}

// Keeps the k best (score, index) pairs in a min-heap hs/hi[0..*n).
static void heap_push(float *hs, int64_t *hi, int *n, int k, float s, int64_t i) {
    if (*n < k) {
        int c = (*n)++;
        hs[c] = s, hi[c] = i;
        for (int p; c > 0 && hs[p = (c - 1) / 2] > hs[c]; c = p) swap_at(hs, hi, p, c);
        return;
    }
    if (s <= hs[0]) return;
    hs[0] = s, hi[0] = i;
    for (int p = 0;;) {
        int l = 2 * p + 1, r = l + 1, m = p;
        if (l < k && hs[l] < hs[m]) m = l;
        if (r < k && hs[r] < hs[m]) m = r;
        if (m == p) break;
        swap_at(hs, hi, p, m);
        p = m;
    }
}

vlm_status vlm_index_search(const vlm_index *ix, const float *q, int nq, int k, int64_t *idx, float *score,
                            vlm_error *err) {
    if (k < 1 || k > ix->n || nq < 1) return vlm_errorf(err, VLM_ERR_ARG, "search: k %d of %lld vectors", k, (long long)ix->n);
    float *s = malloc(sizeof(float) * (size_t)ix->n);
    if (!s) return vlm_errorf(err, VLM_ERR_OOM, "search: out of memory for %lld scores", (long long)ix->n);
    for (int j = 0; j < nq; j++) {
        const float *qj = q + (size_t)j * ix->dim;
#ifdef VLM_HAVE_OPENBLAS
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)ix->n, ix->dim, 1.0f, ix->emb, ix->dim, qj, 1, 0.0f, s, 1);
#else
        for (int64_t i = 0; i < ix->n; i++) {
            float a = 0;
            for (int d = 0; d < ix->dim; d++) a += ix->emb[i * ix->dim + d] * qj[d];
            s[i] = a;
        }
#endif
        float *hs = score + (size_t)j * k;
        int64_t *hi = idx + (size_t)j * k;
        int n = 0;
        for (int64_t i = 0; i < ix->n; i++) heap_push(hs, hi, &n, k, s[i], i);
        for (int a = 1; a < k; a++) // best first (insertion sort of k items)
            for (int b = a; b > 0 && (hs[b] > hs[b - 1] || (hs[b] == hs[b - 1] && hi[b] < hi[b - 1])); b--)
                swap_at(hs, hi, b, b - 1);
    }
    free(s);
    return VLM_OK;
}
