// Classification metrics (see classify.h).
#include "eval/classify.h"
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include "data/loader.h"

int vlm_label_rank(const float *l, int K, int y) {
    int better = 0;
    for (int k = 0; k < K; k++) better += l[k] > l[y] || (l[k] == l[y] && k < y);
    return better;
}

void vlm_topk_count(const float *logits, const int32_t *y, int64_t n, int K, int64_t *top1, int64_t *top5) {
    int64_t t1 = 0, t5 = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= K) continue;
        int r = vlm_label_rank(logits + i * K, K, y[i]);
        t1 += r == 0;
        t5 += r < 5;
    }
    if (top1) *top1 = t1;
    if (top5) *top5 = t5;
}

// One batch's logits [n, K] into the running counts.
static vlm_status count_batch(const float *lg, const vlm_batch *b, int K, vlm_cls_eval *r, vlm_error *err) {
    for (int i = 0; i < b->n; i++) {
        const float *l = lg + (int64_t)i * K;
        int y = b->labels[i];
        if (y < 0 || y >= K)
            return vlm_errorf(err, VLM_ERR_FORMAT, "evaluation sample %" PRId64 " has label %d outside the model's %d classes",
                              b->indices[i], y, K);
        double mx = l[0], s = 0;
        for (int k = 0; k < K; k++)
            if (l[k] > mx) mx = l[k];
        for (int k = 0; k < K; k++) s += exp(l[k] - mx);
        int rank = vlm_label_rank(l, K, y);
        r->loss += mx + log(s) - l[y];
        r->top1 += rank == 0;
        r->top5 += rank < 5;
        r->n++;
    }
    return VLM_OK;
}

vlm_status vlm_classifier_evaluate(vlm_classifier *m, const vlm_dataset *ds, int batch, int workers, vlm_ctx *c,
                                   vlm_cls_eval *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    const int S = m->cfg.vit.image_size, K = m->cfg.head.n_classes;
    vlm_loader_opts lo;
    vlm_loader_opts_eval(&lo, S, batch, workers);
    vlm_loader *L;
    vlm_status st = vlm_loader_open(&L, ds, &lo, err);
    if (st) return st;
    int g = c->grad_enabled, tr = c->training;
    c->grad_enabled = 0;
    c->training = 0;
    vlm_batch b;
    while (!st && (st = vlm_loader_next(L, &b, err)) == VLM_OK && b.n > 0) {
        vlm_ctx_reset(c);
        int64_t sh[4] = {b.n, 3, S, S};
        vlm_tensor *lg = vlm_classifier_forward(c, m, vlm_tensor_wrap(c, VLM_F32, 4, sh, b.images, NULL), 0); // [n, K]
        if (!lg) {
            st = c->status;
            *err = c->err;
            break;
        }
        st = count_batch(vlm_f32(lg), &b, K, r, err);
    }
    vlm_loader_free(L);
    c->grad_enabled = g;
    c->training = tr;
    if (r->n) r->loss /= (double)r->n;
    return st;
}
