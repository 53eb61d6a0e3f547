// ViT image tower (see vit.h).
#include "vision/vit.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int addp(vlm_params *ps, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
                int64_t d3, vlm_error *err) {
    char full[160];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[4] = {d0, d1, d2, d3};
    return vlm_params_add(ps, full, ndim, shape, err);
}

vlm_status vlm_vit_init(vlm_vit *v, vlm_params *ps, const char *prefix, vlm_vit_cfg cfg, vlm_error *err) {
    memset(v, 0, sizeof *v);
    if (cfg.patch_size <= 0 || cfg.image_size <= 0 || cfg.image_size % cfg.patch_size)
        return vlm_errorf(err, VLM_ERR_ARG, "vit: image size %d is not a multiple of patch size %d", cfg.image_size,
                          cfg.patch_size);
    if (!cfg.mlp_width) cfg.mlp_width = 4 * cfg.width;
    v->cfg = cfg;
    int64_t W = cfg.width, g = cfg.image_size / cfg.patch_size, p = cfg.patch_size;
    v->class_emb = addp(ps, prefix, "class_embedding", 1, W, 0, 0, 0, err);
    v->pos_emb = addp(ps, prefix, "positional_embedding", 2, g * g + 1, W, 0, 0, err);
    v->proj = addp(ps, prefix, "proj", 2, W, cfg.output_dim, 0, 0, err);
    v->conv1 = addp(ps, prefix, "conv1.weight", 4, W, 3, p, p, err);
    v->ln_pre_w = addp(ps, prefix, "ln_pre.weight", 1, W, 0, 0, 0, err);
    v->ln_pre_b = addp(ps, prefix, "ln_pre.bias", 1, W, 0, 0, 0, err);
    char tp[160];
    snprintf(tp, sizeof tp, "%stransformer.", prefix);
    vlm_transformer_cfg tc = {cfg.width, cfg.heads, cfg.layers, cfg.mlp_width, cfg.act, 0, 1e-5f};
    if (v->ln_pre_b < 0) return err ? err->status : VLM_ERR_ARG;
    vlm_status st = vlm_transformer_init(&v->tr, ps, tp, tc, err);
    if (st) return st;
    v->ln_post_w = addp(ps, prefix, "ln_post.weight", 1, W, 0, 0, 0, err);
    v->ln_post_b = addp(ps, prefix, "ln_post.bias", 1, W, 0, 0, 0, err);
    return v->ln_post_b < 0 ? (err ? err->status : VLM_ERR_ARG) : VLM_OK;
}

void vlm_vit_free(vlm_vit *v) { vlm_transformer_free(&v->tr); }

void vlm_vit_init_weights(const vlm_vit *v, vlm_params *ps, vlm_rng *rng) {
    float scale = 1.0f / sqrtf((float)v->cfg.width);
    vlm_fill_normal(vlm_params_get(ps, v->class_emb), rng, scale);
    vlm_fill_normal(vlm_params_get(ps, v->pos_emb), rng, scale);
    vlm_fill_normal(vlm_params_get(ps, v->proj), rng, scale);
    // conv1: PyTorch's default (kaiming uniform, a = sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    vlm_tensor *w = vlm_params_get(ps, v->conv1);
    float bound = 1.0f / sqrtf((float)(3 * v->cfg.patch_size * v->cfg.patch_size));
    for (int64_t i = 0; i < vlm_numel(w); i++) vlm_f32(w)[i] = bound * (2.0f * vlm_rng_uniform(rng) - 1.0f);
    vlm_fill_const(vlm_params_get(ps, v->ln_pre_w), 1);
    vlm_fill_const(vlm_params_get(ps, v->ln_pre_b), 0);
    vlm_fill_const(vlm_params_get(ps, v->ln_post_w), 1);
    vlm_fill_const(vlm_params_get(ps, v->ln_post_b), 0);
    vlm_transformer_init_weights(&v->tr, ps, rng);
}

vlm_tensor *vlm_vit_tokens(vlm_ctx *c, const vlm_vit *v, vlm_params *ps, vlm_tensor *images, vlm_rng *rng) {
    if (!images || c->status != VLM_OK) return NULL;
    const vlm_vit_cfg *cf = &v->cfg;
    char s[96];
    if (images->ndim != 4 || images->shape[1] != 3 || images->shape[2] != cf->image_size ||
        images->shape[3] != cf->image_size)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "vit: images %s, expected [B, 3, %d, %d]", vlm_shape_str(images, s, sizeof s),
                            cf->image_size, cf->image_size);
    int64_t B = images->shape[0], W = cf->width;
    vlm_tensor *x = vlm_op_patchify(c, images, vlm_params_get(ps, v->conv1), NULL); // [B, N, W]
    if (!x) return NULL;
    int64_t N = x->shape[1];
    // Class token: broadcast class_embedding [W] to [B, 1, W] (gradient sums over B).
    int64_t cs[3] = {B, 1, W};
    vlm_tensor *zeros = vlm_tensor_zeros(c, VLM_F32, 3, cs, 0);
    vlm_tensor *cls = vlm_op_add(c, zeros, vlm_params_get(ps, v->class_emb));
    vlm_tensor *parts[2] = {cls, x};
    x = vlm_op_concat(c, parts, 2, 1);                                   // [B, 1+N, W]
    x = vlm_op_add(c, x, vlm_params_get(ps, v->pos_emb));                // + [1+N, W]
    if (x && cf->patch_dropout > 0 && c->training && rng) {
        // Keep the class token and a random subset of patches per image
        // (open_clip's PatchDropout): gather the kept rows into [B, 1+K, W].
        int64_t K = (int64_t)((double)N * (1.0 - cf->patch_dropout));
        if (K < 1) K = 1;
        int32_t *idx = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)B);
        uint32_t *perm = vlm_arena_alloc(&c->arena, sizeof(uint32_t) * (size_t)N);
        if (!idx || !perm) return vlm_ctx_fail(c, VLM_ERR_OOM, "vit: arena out of memory");
        vlm_tensor **kept = vlm_arena_alloc(&c->arena, sizeof(vlm_tensor *) * (size_t)(K + 1));
        if (!kept) return vlm_ctx_fail(c, VLM_ERR_OOM, "vit: arena out of memory");
        // Per-image random subsets through gather_rows, one kept position at a time.
        int32_t *sel = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B * K));
        if (!sel) return vlm_ctx_fail(c, VLM_ERR_OOM, "vit: arena out of memory");
        for (int64_t b = 0; b < B; b++) {
            for (int64_t i = 0; i < N; i++) perm[i] = (uint32_t)i;
            vlm_rng_shuffle_u32(rng, perm, (uint64_t)N);
            for (int64_t k = 0; k < K; k++) sel[k * B + b] = (int32_t)perm[k] + 1;
        }
        for (int64_t b = 0; b < B; b++) idx[b] = 0;
        int64_t one[3] = {B, 1, W};
        kept[0] = vlm_op_reshape(c, vlm_op_gather_rows(c, x, idx), 3, one);
        for (int64_t k = 0; k < K; k++) kept[k + 1] = vlm_op_reshape(c, vlm_op_gather_rows(c, x, sel + k * B), 3, one);
        x = vlm_op_concat(c, kept, (int)(K + 1), 1);
    }
    x = vlm_op_layernorm(c, x, vlm_params_get(ps, v->ln_pre_w), vlm_params_get(ps, v->ln_pre_b), 1e-5f);
    return vlm_transformer_forward(c, &v->tr, ps, x, NULL);
}

vlm_tensor *vlm_vit_forward(vlm_ctx *c, const vlm_vit *v, vlm_params *ps, vlm_tensor *images, vlm_rng *rng) {
    vlm_tensor *x = vlm_vit_tokens(c, v, ps, images, rng);
    if (!x) return NULL;
    int64_t B = x->shape[0];
    int32_t *idx = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B ? B : 1));
    if (!idx) return vlm_ctx_fail(c, VLM_ERR_OOM, "vit: arena out of memory");
    memset(idx, 0, sizeof(int32_t) * (size_t)B);
    x = vlm_op_gather_rows(c, x, idx); // class token [B, W]
    x = vlm_op_layernorm(c, x, vlm_params_get(ps, v->ln_post_w), vlm_params_get(ps, v->ln_post_b), 1e-5f);
    return vlm_op_matmul(c, x, vlm_params_get(ps, v->proj)); // [B, output_dim]
}
