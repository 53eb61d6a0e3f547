// Zero-shot classification metrics (see zeroshot.h).
#include "eval/zeroshot.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "core/op_ext.h"
#include "eval/classify.h"

vlm_status vlm_zeroshot_eval(const float *img, const int32_t *labels, int64_t n, const float *W, int C, int E,
                             vlm_zeroshot_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    r->C = C;
    float *logits = malloc(sizeof(float) * (size_t)(n ? n : 1) * C); // [n, C]
    r->cls_n = calloc((size_t)C, sizeof(int64_t));
    r->cls_ok = calloc((size_t)C, sizeof(int64_t));
    r->confusion = calloc((size_t)C * C, sizeof(int64_t));
    if (!logits || !r->cls_n || !r->cls_ok || !r->confusion) {
        free(logits);
        vlm_zeroshot_result_free(r);
        return vlm_errorf(err, VLM_ERR_OOM, "zero-shot: out of memory for %" PRId64 " x %d logits", n, C);
    }
    vlm_mat L = {logits, n, C, C, 1}, A = {(float *)img, n, E, E, 1}, Bt = {(float *)W, E, C, 1, E};
    if (n) vlm_gemm(L, A, Bt, 100.0f, 0);
    vlm_status st = VLM_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        int32_t y = labels[i];
        if (y < 0 || y >= C) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "zero-shot: label %d of row %" PRId64 " is outside the %d classes", y, i, C);
            break;
        }
        const float *l = logits + i * C;
        int rank = vlm_label_rank(l, C, y), arg = 0;
        for (int k = 1; k < C; k++)
            if (l[k] > l[arg]) arg = k;
        r->top1 += rank == 0;
        r->top5 += rank < 5;
        r->cls_n[y]++;
        r->cls_ok[y] += rank == 0;
        r->confusion[(int64_t)y * C + arg]++;
        r->n++;
    }
    free(logits);
    if (st) vlm_zeroshot_result_free(r);
    return st;
}

void vlm_zeroshot_result_free(vlm_zeroshot_result *r) {
    free(r->cls_n), free(r->cls_ok), free(r->confusion);
    r->cls_n = r->cls_ok = r->confusion = NULL;
}
