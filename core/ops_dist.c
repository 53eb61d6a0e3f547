// The cross-process op: all-gather with gradient (open_clip's gather_with_grad),
// so a contrastive loss can see every rank's features as negatives.
#include <string.h>
#include "core/dist.h"
#include "core/ops_internal.h"

// Backward: every rank's loss depends on every rank's rows, so rank r's input
// gradient is the sum over ranks of d(loss_rank)/d(out[rows of r]): a
// reduce-scatter of the output gradient (each rank receives only its rows).
static void all_gather_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *y = n->out;
    vlm_dist *d = n->saved;
    int64_t per = vlm_numel(x);
    if (!d || d->world <= 1) { // a copy: the gradient passes through
        for (int64_t i = 0; i < per; i++) x->grad[i] += y->grad[i];
        return;
    }
    float *mine = vlm_scratch(c, per);
    if (!mine) return;
    vlm_error err;
    if (vlm_dist_reduce_scatter_f32(d, y->grad, mine, per, "all_gather backward (feature gradients)", &err)) {
        vlm_ctx_fail(c, err.status, "%s", err.msg);
        return;
    }
    for (int64_t i = 0; i < per; i++) x->grad[i] += mine[i];
}

vlm_tensor *vlm_op_all_gather(vlm_ctx *c, vlm_tensor *x, struct vlm_dist *d) {
    if (!vlm_check_f32(c, "all_gather", x, "x")) return NULL;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    if (x->ndim < 1) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "all_gather: x must have a leading batch dim");
    int W = d ? d->world : 1;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    int64_t sh[VLM_MAX_DIMS];
    memcpy(sh, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    sh[0] *= W;
    vlm_tensor *y = vlm_out(c, x->ndim, sh, g);
    if (!y) return NULL;
    int64_t per = vlm_numel(x);
    if (W <= 1) memcpy(vlm_f32(y), vlm_f32(x), sizeof(float) * (size_t)per);
    else {
        vlm_error err;
        if (vlm_dist_allgather(d, vlm_f32(x), per * (int64_t)sizeof(float), vlm_f32(y), "all_gather (features)", &err))
            return vlm_ctx_fail(c, err.status, "%s", err.msg);
    }
    if (g) {
        vlm_node *nd = vlm_record(c, "all_gather", y, all_gather_backward, x, NULL, NULL, NULL);
        if (nd) nd->saved = d;
    }
    return y;
}
