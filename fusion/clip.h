// CLIP: the two towers, L2 normalisation and the learned temperature
// (logit_scale, clamped to [0, ln 100]); SigLIP adds logit_bias. Configs come
// from presets, OpenAI CLIP(...) argument names or open_clip's JSON schema.
#ifndef VLM_FUSION_CLIP_H
#define VLM_FUSION_CLIP_H

#include "fusion/coca.h"
#include "text/decode.h"
#include "text/text_encoder.h"
#include "vision/vit.h"

typedef struct {
    int embed_dim;
    vlm_vit_cfg vision;  // output_dim = embed_dim
    vlm_text_cfg text;   // output_dim = embed_dim
    int siglip;          // logit_scale init ln 10, logit_bias init -10
    int coca_layers, coca_heads; // > 0: CoCa's multimodal text decoder (fusion/coca.h; JSON
                                 // "multimodal_cfg": {"layers", "heads"}; width = the text tower's)
} vlm_clip_cfg;

typedef struct {
    vlm_clip_cfg cfg;
    vlm_params ps;
    vlm_vit visual;
    vlm_text_encoder text;
    int logit_scale, logit_bias; // param indices (logit_bias -1 unless siglip)
    int has_dec;                 // cfg.coca_layers > 0
    vlm_mm_decoder dec;
} vlm_clip;

// Presets: tiny, small, ViT-S-16, ViT-S-32, ViT-B-32 (open_clip's configs) and OpenAI's
// ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px (QuickGELU; also openai-ViT-L-14-336 etc.).
vlm_status vlm_clip_cfg_preset(const char *name, vlm_clip_cfg *cfg, vlm_error *err);
// JSON text in either OpenAI's CLIP(...) argument names (embed_dim,
// image_resolution, vision_layers, vision_width, vision_patch_size,
// context_length, vocab_size, transformer_width, transformer_heads,
// transformer_layers; QuickGELU, vision heads = width / 64) or open_clip's
// schema (embed_dim, quick_gelu, vision_cfg{...}, text_cfg{...}).
vlm_status vlm_clip_cfg_from_json(const char *json, vlm_clip_cfg *cfg, vlm_error *err);
// A preset name, or a path to a JSON config file.
vlm_status vlm_clip_cfg_load(const char *name_or_path, vlm_clip_cfg *cfg, vlm_error *err);
// open_clip schema JSON (malloc'd string).
char *vlm_clip_cfg_to_json(const vlm_clip_cfg *cfg);

vlm_status vlm_clip_init(vlm_clip *m, const vlm_clip_cfg *cfg, vlm_error *err);
void vlm_clip_free(vlm_clip *m);
void vlm_clip_init_weights(vlm_clip *m, uint64_t seed);
// Loads every parameter by its OpenAI name from a safetensors file (shapes
// checked; missing or extra model tensors are errors, other keys ignored).
vlm_status vlm_clip_load_weights(vlm_clip *m, const char *path, vlm_error *err);
vlm_status vlm_clip_load_weights_st(vlm_clip *m, const void *st_file, const char *what, vlm_error *err);
void vlm_clip_clamp_logit_scale(vlm_clip *m);

// images [B, 3, S, S] -> [B, E] (unnormalised); rng drives patch dropout.
vlm_tensor *vlm_clip_encode_image(vlm_ctx *c, vlm_clip *m, vlm_tensor *images, vlm_rng *rng);
// ids I32 [B, T] -> [B, E] (unnormalised)
vlm_tensor *vlm_clip_encode_text(vlm_ctx *c, vlm_clip *m, vlm_tensor *ids);
// exp(logit_scale) * normalize(img) @ normalize(txt)^T -> [Bi, Bt]
// CoCa: image features [B, E] and *tokens = ln_post of every image token [B, 1+N, Wv].
vlm_tensor *vlm_clip_encode_image_tokens(vlm_ctx *c, vlm_clip *m, vlm_tensor *images, vlm_rng *rng, vlm_tensor **tokens);
// CoCa: text features [B, E] and *tokens = ln_final of every token [B, T', W]
// (T' = the batch's last EOT + 1), *eot [B] each row's EOT position (arena).
vlm_tensor *vlm_clip_encode_text_tokens(vlm_ctx *c, vlm_clip *m, vlm_tensor *ids, int all_positions, vlm_tensor **tokens,
                                        int32_t **eot);
// CoCa: the caption of one image [3, S, S] (normalised as the eval transform
// gives it): greedy (o->beams 1) or beam search over the multimodal decoder,
// SOT first; out [o->max_len], *len tokens.
vlm_status vlm_coca_caption(vlm_clip *m, const float *image, const vlm_seqdec_opts *o, int32_t *out, int *len,
                            vlm_error *err);
vlm_tensor *vlm_clip_logits(vlm_ctx *c, vlm_clip *m, vlm_tensor *img_feat, vlm_tensor *txt_feat);

#endif
