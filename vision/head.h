// Classification heads on pooled image features: linear (W x + b) or a
// two-layer MLP (fc2(act(fc1 x))). Parameter names: <prefix>weight/bias
// (linear), <prefix>fc1.weight, ... (MLP); weights in PyTorch [out, in] layout.
#ifndef VLM_VISION_HEAD_H
#define VLM_VISION_HEAD_H

#include "core/transformer.h"

typedef enum { VLM_HEAD_LINEAR = 0, VLM_HEAD_MLP } vlm_head_kind;

typedef struct {
    vlm_head_kind kind;
    int in_dim;      // F: feature width
    int hidden;      // MLP hidden width (0 -> in_dim)
    int n_classes;   // K
    vlm_act act;     // MLP activation (default GELU)
    float dropout;   // on the head input while training (0 = off)
} vlm_head_cfg;

typedef struct {
    vlm_head_cfg cfg;
    int w1, b1, w2, b2; // param indices; linear uses w1/b1 only (w2 = b2 = -1)
} vlm_head;

// "linear" | "mlp" -> kind; -1 if unknown.
int vlm_head_kind_parse(const char *name);
const char *vlm_head_kind_name(vlm_head_kind k);
// Registers the head's parameters under `prefix` (before vlm_params_alloc).
vlm_status vlm_head_init(vlm_head *h, vlm_params *ps, const char *prefix, vlm_head_cfg cfg, vlm_error *err);
// PyTorch nn.Linear init (U(+-1/sqrt(fan_in))) for the MLP's fc1; the output
// layer (linear head's weight, MLP's fc2) starts at zero with zero bias, as
// timm does for fine-tuning heads, so the first logits are uniform.
void vlm_head_init_weights(const vlm_head *h, vlm_params *ps, vlm_rng *rng);
// Sets a linear head to W: [K, F] (e.g. zero-shot class embeddings times the
// logit scale) and bias 0. Fails for an MLP head or a shape mismatch.
vlm_status vlm_head_set_linear(const vlm_head *h, vlm_params *ps, const float *W, int K, int F, vlm_error *err);
// x: [B, F] -> logits [B, K].
vlm_tensor *vlm_head_forward(vlm_ctx *c, const vlm_head *h, vlm_params *ps, vlm_tensor *x);

#endif
