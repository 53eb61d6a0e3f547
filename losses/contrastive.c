// InfoNCE and SigLIP losses (see contrastive.h).
#include "losses/contrastive.h"
#include <math.h>
#include <string.h>

vlm_tensor *vlm_loss_clip(vlm_ctx *c, vlm_tensor *logits, const int32_t *groups) {
    if (!logits || c->status != VLM_OK) return NULL;
    char s[96];
    if (logits->ndim != 2 || logits->shape[0] != logits->shape[1])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "clip loss: logits %s must be [B, B]", vlm_shape_str(logits, s, sizeof s));
    return vlm_loss_clip_local(c, logits, vlm_view_transpose(c, logits, 0, 1), 0, groups);
}

vlm_tensor *vlm_loss_clip_local(vlm_ctx *c, vlm_tensor *li, vlm_tensor *lt, int64_t offset, const int32_t *groups) {
    if (!li || !lt || c->status != VLM_OK) return NULL;
    char s[96], s2[96];
    if (li->ndim != 2 || lt->ndim != 2 || li->shape[0] != lt->shape[0] || li->shape[1] != lt->shape[1] ||
        offset < 0 || offset + li->shape[0] > li->shape[1])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "clip loss: logits %s and %s must both be [B, G] with rows %lld.. inside G",
                            vlm_shape_str(li, s, sizeof s), vlm_shape_str(lt, s2, sizeof s2), (long long)offset);
    int64_t B = li->shape[0], G = li->shape[1];
    int32_t *tgt = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B ? B : 1));
    if (!tgt) return vlm_ctx_fail(c, VLM_ERR_OOM, "clip loss: arena out of memory");
    for (int64_t i = 0; i < B; i++) tgt[i] = (int32_t)(offset + i);
    if (groups) {
        // Duplicate positives leave the negatives: add -inf-like mask (-1e4 after
        // scaling dwarfs any logit) where row i (sample offset + i) and column j
        // != offset + i share a group. The relation is symmetric, so one mask
        // serves both directions.
        int any = 0;
        for (int64_t i = 0; i < B && !any; i++)
            for (int64_t j = 0; j < G; j++)
                if (j != offset + i && groups[offset + i] == groups[j]) { any = 1; break; }
        if (any) {
            int64_t sh[2] = {B, G};
            vlm_tensor *mask = vlm_tensor_new(c, VLM_F32, 2, sh, 0);
            if (!mask) return NULL;
            float *m = vlm_f32(mask);
            for (int64_t i = 0; i < B; i++)
                for (int64_t j = 0; j < G; j++)
                    m[i * G + j] = (j != offset + i && groups[offset + i] == groups[j]) ? -1e4f : 0.0f;
            li = vlm_op_add(c, li, mask);
            lt = vlm_op_add(c, lt, mask);
        }
    }
    vlm_tensor *a = vlm_op_cross_entropy(c, li, tgt, 0);
    vlm_tensor *b = vlm_op_cross_entropy(c, lt, tgt, 0);
    return vlm_op_scale(c, vlm_op_add(c, a, b), 0.5f);
}

vlm_tensor *vlm_loss_siglip(vlm_ctx *c, vlm_tensor *img, vlm_tensor *txt, vlm_tensor *scale, vlm_tensor *bias,
                            const int32_t *groups) {
    return vlm_loss_siglip_local(c, img, txt, scale, bias, 0, groups);
}

vlm_tensor *vlm_loss_siglip_local(vlm_ctx *c, vlm_tensor *img, vlm_tensor *txt, vlm_tensor *scale, vlm_tensor *bias,
                                  int64_t offset, const int32_t *groups) {
    if (!img || !txt || !scale || !bias || c->status != VLM_OK) return NULL;
    int64_t B = img->shape[0], G = txt->shape[0];
    if (offset < 0 || offset + B > G) {
        char s[96], s2[96];
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "siglip loss: images %s at row %lld do not fit texts %s",
                            vlm_shape_str(img, s, sizeof s), (long long)offset, vlm_shape_str(txt, s2, sizeof s2));
    }
    vlm_tensor *logits = vlm_op_matmul(c, img, vlm_view_transpose(c, txt, 0, 1)); // [B, G]
    logits = vlm_op_add(c, vlm_op_mul(c, logits, scale), bias);
    int64_t sh[2] = {B, G};
    vlm_tensor *z = vlm_tensor_new(c, VLM_F32, 2, sh, 0);
    if (!z || !logits) return NULL;
    float *zz = vlm_f32(z);
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < G; j++)
            zz[i * G + j] = (offset + i == j || (groups && groups[offset + i] == groups[j])) ? 1.0f : -1.0f;
    vlm_tensor *ls = vlm_op_act(c, vlm_op_mul(c, logits, z), VLM_ACT_LOG_SIGMOID);
    return vlm_op_scale(c, vlm_op_sum(c, ls), -1.0f / (float)B);
}
