// Image classifier on the ViT family: OpenAI-style ViT ("visual.*" names, so a
// CLIP checkpoint's vision tower loads as is), an optional convolutional stem
// in place of the patchify conv, pooling (class token or mean of patch
// tokens), ln_post, and a head (vision/head.h) on either the pooled width-W
// features or the L2-normalised projected embedding (the zero-shot head's
// input: 100 * normalize(x @ proj) @ W^T when head.weight = 100 * W).
//
//   images [B, 3, S, S] -> stem or patchify -> [B, N, W] tokens (+ class token,
//   + pos, ln_pre) -> transformer -> pool -> ln_post -> [B, W]
//   -> (head_on_proj: @ proj [W, E], L2 normalise) -> head -> logits [B, K]
//
// Files: a model file holds every parameter by name plus metadata "format"
// (vlm-classifier), "config" (JSON, vlm_classifier_cfg_to_json) and optional
// "classnames" (newline-joined); a training-state file holds the flat
// parameter, AdamW m and v buffers and vlm_train_state, written atomically.
#ifndef VLM_VISION_CLASSIFIER_H
#define VLM_VISION_CLASSIFIER_H

#include "core/optim.h"
#include "core/state.h"
#include "vision/head.h"
#include "vision/vit.h"

#define VLM_STEM_MAX 4

typedef enum { VLM_POOL_CLS = 0, VLM_POOL_MEAN } vlm_pool;

typedef struct {
    vlm_vit_cfg vit;              // image tower; output_dim = E (the CLIP projection width)
    // Convolutional stem (stem_layers > 0): 3x3 convs (padding 1, bias, act)
    // with stem_ch[i] output channels; the last log2(patch_size) of them have
    // stride 2, so the token grid is S/patch_size as with patchify (patch_size
    // must be a power of two); then a linear map to W per grid cell (a 1x1
    // conv, "visual.stem.proj"). The patchify weight visual.conv1 stays
    // registered (CLIP layout) but is frozen and unused. The stem runs
    // channel-last: each conv is vlm_op_im2col_nhwc + one batched GEMM, with
    // weights "visual.stem.<i>.weight" stored [Co, 3, 3, Ci] (PyTorch's
    // [Co, Ci, 3, 3] permuted by (0, 2, 3, 1)).
    int stem_layers;
    int stem_ch[VLM_STEM_MAX];
    vlm_act stem_act;             // activation after each stem conv (default VLM_ACT_RELU)
    vlm_pool pool;
    int head_on_proj;             // 0: head on ln_post(pooled) [W]; 1: on normalize(ln_post(pooled) @ proj) [E]
    vlm_head_cfg head;            // in_dim is set by vlm_classifier_init
} vlm_classifier_cfg;

typedef struct {
    vlm_classifier_cfg cfg;
    vlm_params ps;
    vlm_vit vit;
    int stem_w[VLM_STEM_MAX], stem_b[VLM_STEM_MAX], stem_pw, stem_pb; // param indices (-1 without a stem)
    vlm_head head;
} vlm_classifier;

typedef enum { VLM_FEAT_PRE = 0, VLM_FEAT_POST } vlm_feat_kind;

// x: [B, H, W, C] (channel-last) -> cols [B, Ho, Wo, k*k*C] with column
// order (ky, kx, c): the patches of a k x k convolution with zero padding
// `pad` and stride `stride` (Ho = (H + 2 pad - k) / stride + 1). The backward
// scatters the column gradients back (col2im), images in parallel.
vlm_tensor *vlm_op_im2col_nhwc(vlm_ctx *c, vlm_tensor *x, int k, int stride, int pad);

// A classifier config from a CLIP's vision tower: cls pooling, linear head,
// no stem (ReLU if one is added), patch dropout off.
void vlm_classifier_cfg_from_vit(vlm_classifier_cfg *cfg, const vlm_vit_cfg *vit, int n_classes);
// "gelu" | "quick_gelu" | "gelu_tanh" | "relu" | "silu" -> *act; -1 if unknown.
int vlm_act_parse_name(const char *name, vlm_act *act);
// "cls" | "mean" -> pool; -1 if unknown.
int vlm_pool_parse(const char *name);
// JSON (malloc'd) and back; from_json checks every size.
char *vlm_classifier_cfg_to_json(const vlm_classifier_cfg *cfg);
vlm_status vlm_classifier_cfg_from_json(const char *json, vlm_classifier_cfg *cfg, vlm_error *err);
// Checks sizes (stem strides vs patch size, heads, ...).
vlm_status vlm_classifier_cfg_check(const vlm_classifier_cfg *cfg, vlm_error *err);

vlm_status vlm_classifier_init(vlm_classifier *m, const vlm_classifier_cfg *cfg, vlm_error *err);
void vlm_classifier_free(vlm_classifier *m);
// Fresh weights: the ViT as vlm_vit_init_weights, stem convs Kaiming-normal
// (fan_in, std sqrt(2/fan_in)) with zero bias, stem.proj as nn.Linear, the head
// as vlm_head_init_weights. Deterministic in seed.
void vlm_classifier_init_weights(vlm_classifier *m, uint64_t seed);
// Copies every parameter of src whose name starts with `prefix` ("visual.")
// into the same-named parameter of m (shapes must match; parameters m lacks
// are ignored). *copied counts them (may be NULL).
vlm_status vlm_classifier_copy_from(vlm_classifier *m, const vlm_params *src, const char *prefix, int *copied,
                                    vlm_error *err);
// Number of layer-decay groups (layers + 2) and the group of parameter i:
// 0 = stem/patchify + embeddings + ln_pre, 1 + l = resblock l,
// layers + 1 = ln_post, proj and the head (BEiT's layer-wise LR decay).
int vlm_classifier_n_groups(const vlm_classifier *m);
int vlm_classifier_param_group(const vlm_classifier *m, int i);
// Freezes (1) or unfreezes (0) every "visual.*" parameter (visual.conv1 stays
// frozen when the stem replaces it).
void vlm_classifier_lock_image(vlm_classifier *m, int lock);

// images [B, 3, S, S] -> tokens [B, 1+N, W] after the last block (before ln_post).
vlm_tensor *vlm_classifier_tokens(vlm_ctx *c, vlm_classifier *m, vlm_tensor *images);
// Pooled features: PRE = ln_post(pool(tokens)) [B, W]; POST = PRE @ proj [B, E] (not normalised).
vlm_tensor *vlm_classifier_features(vlm_ctx *c, vlm_classifier *m, vlm_tensor *images, vlm_feat_kind kind);
// images -> logits [B, K]. With backbone_grad = 0 the tower runs in no-grad
// mode (locked image tower: only the head gets gradients).
vlm_tensor *vlm_classifier_forward(vlm_ctx *c, vlm_classifier *m, vlm_tensor *images, int backbone_grad);

// Files (see the top of this header). classnames may be NULL.
vlm_status vlm_classifier_save(const char *path, const vlm_classifier *m, const char *classnames, int64_t step,
                               vlm_error *err);
// Builds the model from a model or training-state file. *classnames (malloc'd,
// NULL when absent) may be NULL.
vlm_status vlm_classifier_load(const char *path, vlm_classifier *m, char **classnames, vlm_error *err);
// 1 if the safetensors file at path is a classifier (model or state), 0 if
// not (e.g. a CLIP checkpoint), -1 if unreadable (err set).
int vlm_classifier_file_is(const char *path, vlm_error *err);
vlm_status vlm_classifier_save_state(const char *path, const vlm_classifier *m, const char *classnames,
                                     const vlm_train_state *s, const char *args_json, vlm_error *err);
// Restores params, m, v and *s into a model built with the same layout.
vlm_status vlm_classifier_load_state(const char *path, vlm_classifier *m, vlm_train_state *s, vlm_error *err);

#endif
