// CoCa's multimodal text decoder (see coca.h).
#include "fusion/coca.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/op_ext.h"

static int addp(vlm_params *ps, const char *name, int ndim, int64_t d0, int64_t d1, vlm_error *err) {
    int64_t shape[2] = {d0, d1};
    return vlm_params_add(ps, name, ndim, shape, err);
}

static int addx(vlm_params *ps, int i, const char *what, int ndim, int64_t d0, int64_t d1, vlm_error *err) {
    char n[160];
    snprintf(n, sizeof n, "text_decoder.cross_attn.%d.%s", i, what);
    return addp(ps, n, ndim, d0, d1, err);
}

vlm_status vlm_mm_init(vlm_mm_decoder *d, vlm_params *ps, vlm_mm_cfg cfg, vlm_error *err) {
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    if (cfg.width < 1 || cfg.heads < 1 || cfg.width % cfg.heads || cfg.layers < 1 || cfg.vocab_size < 2 ||
        cfg.image_width < 1)
        return vlm_errorf(err, VLM_ERR_ARG, "multimodal decoder: width %d, heads %d, layers %d, vocab %d, image width %d",
                          cfg.width, cfg.heads, cfg.layers, cfg.vocab_size, cfg.image_width);
    vlm_transformer_cfg tc = {cfg.width, cfg.heads, cfg.layers, 4 * cfg.width, cfg.act, 1, 1e-5f};
    vlm_status st = vlm_transformer_init(&d->self, ps, "text_decoder.", tc, err);
    if (st) return st;
    d->x = calloc((size_t)cfg.layers, sizeof *d->x);
    if (!d->x) return vlm_errorf(err, VLM_ERR_OOM, "multimodal decoder: out of memory");
    const int64_t W = cfg.width, M = 4 * cfg.width;
    for (int i = 0; i < cfg.layers; i++) {
        vlm_xblock *b = &d->x[i];
        b->ln1_w = addx(ps, i, "ln_1.weight", 1, W, 0, err), b->ln1_b = addx(ps, i, "ln_1.bias", 1, W, 0, err);
        b->lnkv_w = addx(ps, i, "ln_1_kv.weight", 1, W, 0, err), b->lnkv_b = addx(ps, i, "ln_1_kv.bias", 1, W, 0, err);
        b->in_w = addx(ps, i, "attn.in_proj_weight", 2, 3 * W, W, err);
        b->in_b = addx(ps, i, "attn.in_proj_bias", 1, 3 * W, 0, err);
        b->out_w = addx(ps, i, "attn.out_proj.weight", 2, W, W, err);
        b->out_b = addx(ps, i, "attn.out_proj.bias", 1, W, 0, err);
        b->ln2_w = addx(ps, i, "ln_2.weight", 1, W, 0, err), b->ln2_b = addx(ps, i, "ln_2.bias", 1, W, 0, err);
        b->fc_w = addx(ps, i, "mlp.c_fc.weight", 2, M, W, err), b->fc_b = addx(ps, i, "mlp.c_fc.bias", 1, M, 0, err);
        b->proj_w = addx(ps, i, "mlp.c_proj.weight", 2, W, M, err);
        b->proj_b = addx(ps, i, "mlp.c_proj.bias", 1, W, 0, err);
        if (b->proj_b < 0) return err ? err->status : VLM_ERR_ARG;
    }
    d->img_w = addp(ps, "text_decoder.img_proj.weight", 2, W, cfg.image_width, err);
    d->img_b = addp(ps, "text_decoder.img_proj.bias", 1, W, 0, err);
    d->ln_w = addp(ps, "text_decoder.ln_final.weight", 1, W, 0, err);
    d->ln_b = addp(ps, "text_decoder.ln_final.bias", 1, W, 0, err);
    d->proj = addp(ps, "text_decoder.text_projection", 2, W, cfg.vocab_size, err);
    return d->proj < 0 ? (err ? err->status : VLM_ERR_ARG) : VLM_OK;
}

void vlm_mm_free(vlm_mm_decoder *d) {
    vlm_transformer_free(&d->self);
    free(d->x);
    d->x = NULL;
}

void vlm_mm_init_weights(const vlm_mm_decoder *d, vlm_params *ps, vlm_rng *rng) {
    // as OpenAI's text tower: attention std W^-1/2, projections scaled by depth
    const float W = (float)d->cfg.width, L = (float)d->cfg.layers;
    const float attn = 1 / sqrtf(W), proj = attn / sqrtf(2 * L), fc = 1 / sqrtf(2 * W);
    vlm_transformer_init_weights(&d->self, ps, rng);
    for (int i = 0; i < d->cfg.layers; i++) {
        const vlm_xblock *b = &d->x[i];
        const int ones[] = {b->ln1_w, b->lnkv_w, b->ln2_w}, zeros[] = {b->ln1_b, b->lnkv_b, b->ln2_b, b->in_b, b->out_b,
                                                                        b->fc_b, b->proj_b};
        for (size_t k = 0; k < 3; k++) vlm_fill_const(vlm_params_get(ps, ones[k]), 1);
        for (size_t k = 0; k < 7; k++) vlm_fill_const(vlm_params_get(ps, zeros[k]), 0);
        vlm_fill_normal(vlm_params_get(ps, b->in_w), rng, attn);
        vlm_fill_normal(vlm_params_get(ps, b->out_w), rng, proj);
        vlm_fill_normal(vlm_params_get(ps, b->fc_w), rng, fc);
        vlm_fill_normal(vlm_params_get(ps, b->proj_w), rng, proj);
    }
    vlm_fill_normal(vlm_params_get(ps, d->img_w), rng, 1 / sqrtf((float)d->cfg.image_width));
    vlm_fill_const(vlm_params_get(ps, d->img_b), 0);
    vlm_fill_const(vlm_params_get(ps, d->ln_w), 1);
    vlm_fill_const(vlm_params_get(ps, d->ln_b), 0);
    vlm_fill_normal(vlm_params_get(ps, d->proj), rng, attn);
}

// Rows [r0, r0 + n) of a [3W, W] / [3W] in_proj parameter, as a view.
static vlm_tensor *rows(vlm_ctx *c, vlm_tensor *p, int64_t r0, int64_t n) { return vlm_view_slice(c, p, 0, r0, n); }

// [B, L, W] -> heads [B, H, L, D] as a strided view (memory stays [B, L, H, D]).
static vlm_tensor *heads(vlm_ctx *c, vlm_tensor *x, int H) {
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t B = x->shape[0], L = x->shape[1], W = x->shape[2], D = W / H;
    int64_t shape[4] = {B, H, L, D}, stride[4] = {L * W, D, W, 1};
    return vlm_view_strided(c, x, 4, shape, stride, 0);
}

vlm_tensor *vlm_xblock_forward(vlm_ctx *c, const vlm_xblock *b, vlm_params *ps, int H, vlm_act act, vlm_tensor *x,
                               vlm_tensor *kv) {
    if (!x || !kv) return NULL;
    const int64_t B = x->shape[0], T = x->shape[1], W = x->shape[2];
#define P(i) vlm_params_get(ps, b->i)
    vlm_tensor *h = vlm_op_layernorm(c, x, P(ln1_w), P(ln1_b), 1e-5f);
    vlm_tensor *m = vlm_op_layernorm(c, kv, P(lnkv_w), P(lnkv_b), 1e-5f);
    vlm_tensor *q = vlm_op_linear(c, h, rows(c, P(in_w), 0, W), rows(c, P(in_b), 0, W));     // [B, T, W]
    vlm_tensor *k = vlm_op_linear(c, m, rows(c, P(in_w), W, W), rows(c, P(in_b), W, W));     // [B, N, W]
    vlm_tensor *v = vlm_op_linear(c, m, rows(c, P(in_w), 2 * W, W), rows(c, P(in_b), 2 * W, W));
    vlm_tensor *o = vlm_op_attention(c, heads(c, q, H), heads(c, k, H), heads(c, v, H), 0, NULL); // memory [B, T, H, D]
    int64_t merged[3] = {B, T, W};
    o = o ? vlm_view_reshape(c, vlm_view_transpose(c, o, 1, 2), 3, merged) : NULL;
    x = vlm_op_add(c, x, vlm_op_linear(c, o, P(out_w), P(out_b)));
    h = vlm_op_layernorm(c, x, P(ln2_w), P(ln2_b), 1e-5f);
    h = vlm_op_act(c, vlm_op_linear(c, h, P(fc_w), P(fc_b)), act);
    x = vlm_op_add(c, x, vlm_op_linear(c, h, P(proj_w), P(proj_b)));
#undef P
    return x;
}

vlm_tensor *vlm_mm_forward(vlm_ctx *c, const vlm_mm_decoder *d, vlm_params *ps, vlm_tensor *text, vlm_tensor *img) {
    if (!text || !img || c->status != VLM_OK) return NULL;
    char s1[96], s2[96];
    if (text->ndim != 3 || text->shape[2] != d->cfg.width || img->ndim != 3 || img->shape[2] != d->cfg.image_width ||
        img->shape[0] != text->shape[0])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "multimodal decoder: text %s must be [B, T, %d], image tokens %s [B, M, %d]",
                            vlm_shape_str(text, s1, sizeof s1), d->cfg.width, vlm_shape_str(img, s2, sizeof s2),
                            d->cfg.image_width);
    vlm_tensor *kv = vlm_op_linear(c, img, vlm_params_get(ps, d->img_w), vlm_params_get(ps, d->img_b)); // [B, M, W]
    vlm_tensor *x = text;
    for (int i = 0; i < d->cfg.layers && x; i++) {
        x = vlm_block_forward(c, &d->self, &d->self.blocks[i], ps, x, NULL);
        x = vlm_xblock_forward(c, &d->x[i], ps, d->cfg.heads, d->cfg.act, x, kv);
    }
    x = vlm_op_layernorm(c, x, vlm_params_get(ps, d->ln_w), vlm_params_get(ps, d->ln_b), 1e-5f);
    return vlm_op_matmul(c, x, vlm_params_get(ps, d->proj));
}

vlm_tensor *vlm_caption_loss(vlm_ctx *c, vlm_tensor *logits, const int32_t *ids, const int32_t *eot, int B, int T) {
    if (!logits) return NULL;
    int32_t *tgt = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)B * T);
    if (!tgt) return vlm_ctx_fail(c, VLM_ERR_OOM, "caption loss: arena out of memory");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T && t + 1 <= eot[b] ? ids[b * T + t + 1] : -100;
    int64_t V = logits->shape[logits->ndim - 1];
    vlm_tensor *flat = vlm_op_reshape(c, vlm_ensure_contig(c, logits), 2, (int64_t[]){(int64_t)B * T, V});
    return vlm_op_cross_entropy(c, flat, tgt, 0);
}
