// OpenAI CLIP's vision transformer: conv1 patchify (no bias), class token,
// positional embedding, ln_pre, shared pre-LN blocks, ln_post on the class
// token, then proj. Parameter names follow OpenAI's state_dict ("visual.*").
#ifndef VLM_VISION_VIT_H
#define VLM_VISION_VIT_H

#include "core/transformer.h"

typedef struct {
    int image_size, patch_size, width, layers, heads, mlp_width, output_dim;
    vlm_act act;
    float patch_dropout; // fraction of patch tokens dropped in training (0 = off)
} vlm_vit_cfg;

typedef struct {
    vlm_vit_cfg cfg;
    int conv1, class_emb, pos_emb, ln_pre_w, ln_pre_b, ln_post_w, ln_post_b, proj; // param indices
    vlm_transformer tr;
} vlm_vit;

vlm_status vlm_vit_init(vlm_vit *v, vlm_params *ps, const char *prefix, vlm_vit_cfg cfg, vlm_error *err);
void vlm_vit_free(vlm_vit *v);
void vlm_vit_init_weights(const vlm_vit *v, vlm_params *ps, vlm_rng *rng);
// images: [B, 3, S, S] -> tokens [B, 1+N, W] after the last block (before ln_post).
// rng (may be NULL) drives patch dropout when c->training.
vlm_tensor *vlm_vit_tokens(vlm_ctx *c, const vlm_vit *v, vlm_params *ps, vlm_tensor *images, vlm_rng *rng);
// images: [B, 3, S, S] -> features [B, output_dim] (ln_post(class token) @ proj).
vlm_tensor *vlm_vit_forward(vlm_ctx *c, const vlm_vit *v, vlm_params *ps, vlm_tensor *images, vlm_rng *rng);

#endif
