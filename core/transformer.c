// Pre-LN transformer block: x += out_proj(attn(ln_1(x))); x += c_proj(act(c_fc(ln_2(x)))).
#include "core/transformer.h"
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

static int add(vlm_params *ps, const char *prefix, int i, const char *name, int ndim, int64_t d0, int64_t d1,
               vlm_error *err) {
    char full[160];
    snprintf(full, sizeof full, "%sresblocks.%d.%s", prefix, i, name);
    int64_t shape[2] = {d0, d1};
    return vlm_params_add(ps, full, ndim, shape, err);
}

vlm_status vlm_transformer_init(vlm_transformer *t, vlm_params *ps, const char *prefix, vlm_transformer_cfg cfg,
                                vlm_error *err) {
    if (cfg.width <= 0 || cfg.heads <= 0 || cfg.layers < 0 || cfg.width % cfg.heads)
        return vlm_errorf(err, VLM_ERR_ARG, "transformer %s: width %d must be a positive multiple of heads %d", prefix,
                          cfg.width, cfg.heads);
    if (!cfg.mlp_width) cfg.mlp_width = 4 * cfg.width;
    if (cfg.ln_eps <= 0) cfg.ln_eps = 1e-5f;
    t->cfg = cfg;
    t->blocks = calloc((size_t)(cfg.layers ? cfg.layers : 1), sizeof *t->blocks);
    if (!t->blocks) return vlm_errorf(err, VLM_ERR_OOM, "transformer: out of memory");
    int64_t C = cfg.width, M = cfg.mlp_width;
    for (int i = 0; i < cfg.layers; i++) {
        vlm_block *b = &t->blocks[i];
        b->in_w = add(ps, prefix, i, "attn.in_proj_weight", 2, 3 * C, C, err);
        b->in_b = add(ps, prefix, i, "attn.in_proj_bias", 1, 3 * C, 0, err);
        b->out_w = add(ps, prefix, i, "attn.out_proj.weight", 2, C, C, err);
        b->out_b = add(ps, prefix, i, "attn.out_proj.bias", 1, C, 0, err);
        b->ln1_w = add(ps, prefix, i, "ln_1.weight", 1, C, 0, err);
        b->ln1_b = add(ps, prefix, i, "ln_1.bias", 1, C, 0, err);
        b->fc_w = add(ps, prefix, i, "mlp.c_fc.weight", 2, M, C, err);
        b->fc_b = add(ps, prefix, i, "mlp.c_fc.bias", 1, M, 0, err);
        b->proj_w = add(ps, prefix, i, "mlp.c_proj.weight", 2, C, M, err);
        b->proj_b = add(ps, prefix, i, "mlp.c_proj.bias", 1, C, 0, err);
        b->ln2_w = add(ps, prefix, i, "ln_2.weight", 1, C, 0, err);
        b->ln2_b = add(ps, prefix, i, "ln_2.bias", 1, C, 0, err);
        if (b->ln2_b < 0) return err ? err->status : VLM_ERR_ARG;
    }
    return VLM_OK;
}

void vlm_transformer_free(vlm_transformer *t) {
    free(t->blocks);
    t->blocks = NULL;
}

void vlm_fill_normal(vlm_tensor *t, vlm_rng *rng, float std) {
    float *d = vlm_f32(t);
    for (int64_t i = 0; i < vlm_numel(t); i++) d[i] = std * vlm_rng_normal(rng);
}

void vlm_fill_const(vlm_tensor *t, float v) {
    float *d = vlm_f32(t);
    for (int64_t i = 0; i < vlm_numel(t); i++) d[i] = v;
}

void vlm_transformer_init_weights(const vlm_transformer *t, vlm_params *ps, vlm_rng *rng) {
    float w = (float)t->cfg.width, L = (float)(t->cfg.layers ? t->cfg.layers : 1);
    float attn_std = 1.0f / sqrtf(w), proj_std = attn_std / sqrtf(2.0f * L), fc_std = 1.0f / sqrtf(2.0f * w);
    for (int i = 0; i < t->cfg.layers; i++) {
        const vlm_block *b = &t->blocks[i];
        vlm_fill_normal(vlm_params_get(ps, b->in_w), rng, attn_std);
        vlm_fill_normal(vlm_params_get(ps, b->out_w), rng, proj_std);
        vlm_fill_normal(vlm_params_get(ps, b->fc_w), rng, fc_std);
        vlm_fill_normal(vlm_params_get(ps, b->proj_w), rng, proj_std);
        int zeros[] = {b->in_b, b->out_b, b->fc_b, b->proj_b, b->ln1_b, b->ln2_b};
        for (int k = 0; k < 6; k++) vlm_fill_const(vlm_params_get(ps, zeros[k]), 0);
        vlm_fill_const(vlm_params_get(ps, b->ln1_w), 1);
        vlm_fill_const(vlm_params_get(ps, b->ln2_w), 1);
    }
}

vlm_tensor *vlm_block_forward(vlm_ctx *c, const vlm_transformer *t, const vlm_block *blk, vlm_params *ps, vlm_tensor *x,
                              const uint8_t *key_pad) {
    if (!x) return NULL;
    const vlm_transformer_cfg *cf = &t->cfg;
    int64_t B = x->shape[0], T = x->shape[1], C = cf->width, H = cf->heads, D = C / H;
#define P(i) vlm_params_get(ps, blk->i)
    vlm_tensor *h = vlm_op_layernorm(c, x, P(ln1_w), P(ln1_b), cf->ln_eps);
    vlm_tensor *qkv = vlm_op_linear(c, h, P(in_w), P(in_b)); // [B, T, 3C]
    if (!qkv) return NULL;
    // Head split as views of qkv: [B, H, T, D] with strides [T*3C, D, 3C, 1].
    int64_t shape[4] = {B, H, T, D}, stride[4] = {T * 3 * C, D, 3 * C, 1};
    vlm_tensor *q = vlm_view_strided(c, qkv, 4, shape, stride, 0);
    vlm_tensor *k = vlm_view_strided(c, qkv, 4, shape, stride, C);
    vlm_tensor *v = vlm_view_strided(c, qkv, 4, shape, stride, 2 * C);
    vlm_tensor *o = vlm_op_attention(c, q, k, v, cf->causal, key_pad); // memory [B, T, H, D]
    int64_t merged[3] = {B, T, C};
    o = vlm_view_reshape(c, vlm_view_transpose(c, o, 1, 2), 3, merged);
    x = vlm_op_add(c, x, vlm_op_linear(c, o, P(out_w), P(out_b)));
    h = vlm_op_layernorm(c, x, P(ln2_w), P(ln2_b), cf->ln_eps);
    h = vlm_op_act(c, vlm_op_linear(c, h, P(fc_w), P(fc_b)), cf->act);
    x = vlm_op_add(c, x, vlm_op_linear(c, h, P(proj_w), P(proj_b)));
#undef P
    return x;
}

vlm_tensor *vlm_transformer_forward(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                                    const uint8_t *key_pad) {
    for (int i = 0; i < t->cfg.layers && x; i++) x = vlm_block_forward(c, t, &t->blocks[i], ps, x, key_pad);
    return x;
}
