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

struct vlm_transformer_ws; // scratch of the fused op (grown on first use, reused every step)

typedef struct {
    vlm_transformer_cfg cfg;
    vlm_block *blocks;
    struct vlm_transformer_ws *ws;
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
// The whole stack: vlm_op_transformer (below).
vlm_tensor *vlm_transformer_forward(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                                    const uint8_t *key_pad);
// The same stack as a chain of per-op blocks (vlm_block_forward): the reference
// the fused op is tested against; needs ~2x the activation memory.
vlm_tensor *vlm_transformer_forward_ops(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                                        const uint8_t *key_pad);
// All layers of t as ONE tape node with its own forward and backward (llm.c
// style): x: [B, T, C] -> [B, T, C]. The residual stream and its gradient are
// updated in place in one [B*T, C] buffer each. Per layer it keeps only what
// the backward needs -- normalised LN inputs (+ 1/std), qkv, the attention
// output, the c_fc output and one log-sum-exp per attention row -- and
// recomputes the LN outputs, act(c_fc) and the attention probabilities
// (flash-attention style) in the backward. Temporaries live in t's workspace,
// which is grown on the first call and reused (no malloc in later steps), so
// one transformer must not run in two threads at once. Parameter gradients
// accumulate into ps's grad buffers (frozen parameters are skipped);
// key_pad: [B*T] bytes, nonzero = padded key (ignored); a query row whose keys
// are all masked gets a zero attention output.
vlm_tensor *vlm_op_transformer(vlm_ctx *c, const vlm_transformer *t, vlm_params *ps, vlm_tensor *x,
                               const uint8_t *key_pad);
// Fills a tensor with N(0, std) from rng.
void vlm_fill_normal(vlm_tensor *t, vlm_rng *rng, float std);
void vlm_fill_const(vlm_tensor *t, float v);

#endif
