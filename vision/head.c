// Classification heads (see head.h).
#include "vision/head.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

int vlm_head_kind_parse(const char *name) {
    if (!strcmp(name, "linear")) return VLM_HEAD_LINEAR;
    if (!strcmp(name, "mlp")) return VLM_HEAD_MLP;
    return -1;
}

const char *vlm_head_kind_name(vlm_head_kind k) { return k == VLM_HEAD_MLP ? "mlp" : "linear"; }

static int addp(vlm_params *ps, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1, vlm_error *err) {
    char full[160];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[2] = {d0, d1};
    return vlm_params_add(ps, full, ndim, shape, err);
}

vlm_status vlm_head_init(vlm_head *h, vlm_params *ps, const char *prefix, vlm_head_cfg cfg, vlm_error *err) {
    memset(h, 0, sizeof *h);
    h->w2 = h->b2 = -1;
    if (cfg.in_dim <= 0 || cfg.n_classes <= 0 || cfg.hidden < 0 || cfg.dropout < 0 || cfg.dropout >= 1)
        return vlm_errorf(err, VLM_ERR_ARG, "head: bad sizes (in %d, classes %d, hidden %d, dropout %g)", cfg.in_dim,
                          cfg.n_classes, cfg.hidden, (double)cfg.dropout);
    if (cfg.kind != VLM_HEAD_LINEAR && cfg.kind != VLM_HEAD_MLP)
        return vlm_errorf(err, VLM_ERR_ARG, "head: unknown kind %d", (int)cfg.kind);
    if (cfg.kind == VLM_HEAD_MLP && !cfg.hidden) cfg.hidden = cfg.in_dim;
    h->cfg = cfg;
    if (cfg.kind == VLM_HEAD_LINEAR) {
        h->w1 = addp(ps, prefix, "weight", 2, cfg.n_classes, cfg.in_dim, err);
        h->b1 = addp(ps, prefix, "bias", 1, cfg.n_classes, 0, err);
        return h->w1 < 0 || h->b1 < 0 ? (err ? err->status : VLM_ERR_ARG) : VLM_OK;
    }
    h->w1 = addp(ps, prefix, "fc1.weight", 2, cfg.hidden, cfg.in_dim, err);
    h->b1 = addp(ps, prefix, "fc1.bias", 1, cfg.hidden, 0, err);
    h->w2 = addp(ps, prefix, "fc2.weight", 2, cfg.n_classes, cfg.hidden, err);
    h->b2 = addp(ps, prefix, "fc2.bias", 1, cfg.n_classes, 0, err);
    return h->w1 < 0 || h->b1 < 0 || h->w2 < 0 || h->b2 < 0 ? (err ? err->status : VLM_ERR_ARG) : VLM_OK;
}

void vlm_head_init_weights(const vlm_head *h, vlm_params *ps, vlm_rng *rng) {
    if (h->cfg.kind == VLM_HEAD_MLP) {
        vlm_tensor *w = vlm_params_get(ps, h->w1), *b = vlm_params_get(ps, h->b1);
        float bound = 1.0f / sqrtf((float)h->cfg.in_dim);
        for (int64_t i = 0; i < vlm_numel(w); i++) vlm_f32(w)[i] = bound * (2.0f * vlm_rng_uniform(rng) - 1.0f);
        for (int64_t i = 0; i < vlm_numel(b); i++) vlm_f32(b)[i] = bound * (2.0f * vlm_rng_uniform(rng) - 1.0f);
        vlm_fill_const(vlm_params_get(ps, h->w2), 0);
        vlm_fill_const(vlm_params_get(ps, h->b2), 0);
    } else {
        vlm_fill_const(vlm_params_get(ps, h->w1), 0);
        vlm_fill_const(vlm_params_get(ps, h->b1), 0);
    }
}

vlm_status vlm_head_set_linear(const vlm_head *h, vlm_params *ps, const float *W, int K, int F, vlm_error *err) {
    if (h->cfg.kind != VLM_HEAD_LINEAR)
        return vlm_errorf(err, VLM_ERR_ARG, "head: only a linear head can be set from class embeddings");
    if (K != h->cfg.n_classes || F != h->cfg.in_dim)
        return vlm_errorf(err, VLM_ERR_SHAPE, "head: weights [%d, %d] do not fit a [%d, %d] head", K, F,
                          h->cfg.n_classes, h->cfg.in_dim);
    memcpy(vlm_f32(vlm_params_get(ps, h->w1)), W, sizeof(float) * (size_t)K * F);
    vlm_fill_const(vlm_params_get(ps, h->b1), 0);
    return VLM_OK;
}

vlm_tensor *vlm_head_forward(vlm_ctx *c, const vlm_head *h, vlm_params *ps, vlm_tensor *x) {
    if (!x || c->status != VLM_OK) return NULL;
    char s[96];
    if (x->ndim != 2 || x->shape[1] != h->cfg.in_dim)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "head: features %s, expected [B, %d]", vlm_shape_str(x, s, sizeof s),
                            h->cfg.in_dim);
    if (h->cfg.dropout > 0) x = vlm_op_dropout(c, x, h->cfg.dropout);
    x = vlm_op_linear(c, x, vlm_params_get(ps, h->w1), vlm_params_get(ps, h->b1));
    if (h->cfg.kind == VLM_HEAD_LINEAR) return x;
    x = vlm_op_act(c, x, h->cfg.act);
    return vlm_op_linear(c, x, vlm_params_get(ps, h->w2), vlm_params_get(ps, h->b2));
}
