// The pre-LN residual attention block shared by the vision and text towers
// (OpenAI CLIP's ResidualAttentionBlock) and a stack of them. Parameter names
// follow OpenAI's state_dict: <prefix>resblocks.<i>.ln_1.weight, ...attn.in_proj_weight, ...
#ifndef VLM_CORE_TRANSFORMER_H
#define VLM_CORE_TRANSFORMER_H

#include "core/ops.h"

typedef struct {
    int width, heads, layers;
    int mlp_width;   // 4 * width by default (0 -> 4 * width)
    vlm_act act;     // VLM_ACT_QUICK_GELU (OpenAI) or VLM_ACT_GELU (open_clip)
    int causal;      // text tower
    float ln_eps;    // 1e-5
} vlm_transformer_cfg;

typedef struct {
    int ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b; // param indices
} vlm_block;

typedef struct {
    vlm_transformer_cfg cfg;
    vlm_block *blocks;
} vlm_transformer;

// Registers the parameters as <prefix>resblocks.<i>.* in ps (before vlm_params_alloc).
vlm_status vlm_transformer_init(vlm_transformer *t, vlm_params *ps, const char *prefix, vlm_transformer_cfg cfg,
                                vlm_error *err);
void vlm_transformer_free(vlm_transformer *t);
// OpenAI CLIP's initialisation (after vlm_params_alloc): in_proj ~ N(0, w^-1/2),
// out_proj and c_proj ~ N(0, w^-1/2 (2L)^-1/2), c_fc ~ N(0, (2w)^-1/2), biases 0, LN 1/0.
void vlm_transformer_init_weights(const vlm_transformer *t, vlm_params *ps, vlm_rng *rng);
// x: [B, T, C] -> [B, T, C]; key_pad: [B*T] bytes (nonzero = padding) or NULL.
vlm_tensor *vlm_block_forward(vlm_ctx *c, const vlm_transformer *t, const vlm_block *blk, vlm_params *ps, vlm_tensor *x,
                              const uint8_t *key_pad);
vlm_tensor *vlm_transformer_forward(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                                    const uint8_t *key_pad);
// Fills a tensor with N(0, std) from rng.
void vlm_fill_normal(vlm_tensor *t, vlm_rng *rng, float std);
void vlm_fill_const(vlm_tensor *t, float v);

#endif
