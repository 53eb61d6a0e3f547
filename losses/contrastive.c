// InfoNCE and SigLIP losses (see contrastive.h).
#include "losses/contrastive.h"
#include <math.h>
#include <string.h>

vlm_tensor *vlm_loss_clip(vlm_ctx *c, vlm_tensor *logits, const int32_t *groups) {
    if (!logits || c->status != VLM_OK) return NULL;
    char s[96];
    if (logits->ndim != 2 || logits->shape[0] != logits->shape[1])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "clip loss: logits %s must be [B, B]", vlm_shape_str(logits, s, sizeof s));
    int64_t B = logits->shape[0];
    int32_t *diag = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B ? B : 1));
    if (!diag) return vlm_ctx_fail(c, VLM_ERR_OOM, "clip loss: arena out of memory");
    for (int64_t i = 0; i < B; i++) diag[i] = (int32_t)i;
    vlm_tensor *li = logits, *lt = vlm_view_transpose(c, logits, 0, 1);
    if (groups) {
        // Duplicate positives leave the negatives: add -inf-like mask (-1e4 after
        // scaling dwarfs any logit) where i != j share a group.
        int any = 0;
        for (int64_t i = 0; i < B && !any; i++)
            for (int64_t j = 0; j < B; j++)
                if (i != j && groups[i] == groups[j]) { any = 1; break; }
        if (any) {
            int64_t sh[2] = {B, B};
            vlm_tensor *mask = vlm_tensor_new(c, VLM_F32, 2, sh, 0);
            if (!mask) return NULL;
            float *m = vlm_f32(mask);
            for (int64_t i = 0; i < B; i++)
                for (int64_t j = 0; j < B; j++) m[i * B + j] = (i != j && groups[i] == groups[j]) ? -1e4f : 0.0f;
            li = vlm_op_add(c, logits, mask); // mask is symmetric, so transpose(li) masks the text side
            lt = vlm_view_transpose(c, li, 0, 1);
        }
    }
    vlm_tensor *a = vlm_op_cross_entropy(c, li, diag, 0);
    vlm_tensor *b = vlm_op_cross_entropy(c, lt, diag, 0);
    return vlm_op_scale(c, vlm_op_add(c, a, b), 0.5f);
}

vlm_tensor *vlm_loss_siglip(vlm_ctx *c, vlm_tensor *img, vlm_tensor *txt, vlm_tensor *scale, vlm_tensor *bias,
                            const int32_t *groups) {
    if (!img || !txt || !scale || !bias || c->status != VLM_OK) return NULL;
    int64_t B = img->shape[0];
    vlm_tensor *logits = vlm_op_matmul(c, img, vlm_view_transpose(c, txt, 0, 1)); // [B, B]
    logits = vlm_op_add(c, vlm_op_mul(c, logits, scale), bias);
    int64_t sh[2] = {B, B};
    vlm_tensor *z = vlm_tensor_new(c, VLM_F32, 2, sh, 0);
    if (!z || !logits) return NULL;
    float *zz = vlm_f32(z);
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++)
            zz[i * B + j] = (i == j || (groups && groups[i] == groups[j])) ? 1.0f : -1.0f;
    vlm_tensor *ls = vlm_op_act(c, vlm_op_mul(c, logits, z), VLM_ACT_LOG_SIGMOID);
    return vlm_op_scale(c, vlm_op_sum(c, ls), -1.0f / (float)B);
}
