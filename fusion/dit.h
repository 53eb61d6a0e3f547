// The diffusion denoiser: a DiT (Peebles & Xie 2023) with adaLN-Zero blocks,
// conditioned on a CLIP embedding (unCLIP's decoder idea): the conditioning
// vector is MLP(sinusoid(t)) + Linear(clip_emb); optionally the embedding also
// enters as `cond_tokens` extra tokens. It predicts epsilon.
//
//   x_t [B, Cin, S, S] -> patchify [B, N, W] + pos (fixed 2-D sin-cos)
//   (-> [tokens(emb) | x] [B, K+N, W]) -> blocks -> drop the K tokens
//   -> final adaLN + linear [B, N, p*p*Cin] -> unpatchify -> eps [B, Cin, S, S]
//
// Parameter names follow DiT's state_dict (x_embedder.proj, t_embedder.mlp.{0,2},
// blocks.<i>.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1},
// final_layer.{adaLN_modulation.1, linear}, pos_embed) plus y_embedder.proj
// (CLIP embedding -> W), y_embedder.null (the learned null embedding used for
// classifier-free guidance), y_embedder.tokens (the extra tokens) and the
// frozen y_embedder.mean [E] / y_embedder.inv_scale [1]: embeddings enter as
// (e - mean) * inv_scale, standardised by the statistics of the training
// conditions (as unCLIP-style decoders normalise CLIP embeddings). Prompts
// from one template share most of their CLIP embedding (cosine 0.99 between
// "a photo of a sneaker" and "... sandal" in a small CLIP); centring leaves the
// part that tells them apart.
#ifndef VLM_FUSION_DIT_H
#define VLM_FUSION_DIT_H

#include "core/ops.h"
#include "losses/diffusion.h"

typedef struct {
    int image_size, patch_size, in_channels;
    int width, layers, heads, mlp_ratio;
    int cond_dim;    // E: width of the CLIP embedding
    int cond_tokens; // K extra tokens from the embedding (0 = off)
    int freq_dim;    // sinusoidal timestep embedding width (256)
    float ln_eps;    // 1e-6 (DiT)
    vlm_diff_kind schedule;
    int timesteps;   // T (1000)
    int long_skip;   // U-ViT long skips (Bao et al. 2023): the i-th last block's input is
                     // Linear([x, output of block i]) for the first floor(L/2) blocks (0 = off)
} vlm_dit_cfg;

typedef struct {
    int qkv_w, qkv_b, proj_w, proj_b, fc1_w, fc1_b, fc2_w, fc2_b, ada_w, ada_b;
} vlm_dit_block;

typedef struct {
    vlm_dit_cfg cfg;
    vlm_params ps;
    int pos, xe_w, xe_b, t0_w, t0_b, t2_w, t2_b, y_w, y_b, y_null, y_mean, y_iscale, tok_w, tok_b, fa_w, fa_b, fl_w, fl_b;
    vlm_dit_block *blocks;
    int *skip_w, *skip_b; // [layers / 2] with long_skip: skips.i.linear, [W, 2W] / [W]
} vlm_dit;

// 32x32 RGB, patch 4, width 256, 6 layers, 4 heads, E = 512, no extra tokens, linear schedule, T = 1000.
void vlm_dit_cfg_default(vlm_dit_cfg *cfg);
vlm_status vlm_dit_cfg_check(const vlm_dit_cfg *cfg, vlm_error *err);
char *vlm_dit_cfg_to_json(const vlm_dit_cfg *cfg); // malloc'd
vlm_status vlm_dit_cfg_from_json(const char *json, vlm_dit_cfg *cfg, vlm_error *err);

// Registers and allocates the parameters (data + grad).
vlm_status vlm_dit_init(vlm_dit *d, const vlm_dit_cfg *cfg, vlm_error *err);
void vlm_dit_free(vlm_dit *d);
// DiT's initialisation: Linear layers Xavier-uniform with zero bias, the patch
// embedding Xavier on its [W, Cin p p] view, timestep MLP N(0, 0.02),
// y_embedder.proj N(0, 0.02), null embedding N(0, 1/E) per element (about unit
// norm, like the CLIP embeddings it stands in for), every adaLN modulation and
// the final linear zero (adaLN-Zero: each block starts as the identity and the
// model predicts eps = 0), pos_embed the fixed 2-D sin-cos table (frozen).
void vlm_dit_init_weights(vlm_dit *d, uint64_t seed);

// Sets y_embedder.mean to the mean of the n condition embeddings emb [n, E] and
// inv_scale to 1 / RMS of their distance to it (1 if they all coincide).
void vlm_dit_set_cond_stats(vlm_dit *d, const float *emb, int64_t n);

// DiT's timestep embedding: out[b] = [cos(t_b f_0..f_{h-1}), sin(t_b f_0..)]
// with f_i = exp(-ln(10000) i / h), h = dim / 2. out: [B, dim].
void vlm_dit_timestep_embedding(const int32_t *t, int B, int dim, float *out);
// DiT's fixed 2-D sin-cos positional table for a G x G grid: out [G*G, W].
void vlm_dit_pos_embed(int G, int W, float *out);

// xt: [B, Cin, S, S], t: B timesteps in [0, T), emb: [B, E] CLIP embeddings
// (may be NULL when every row is dropped), drop: B bytes (nonzero: use the null
// embedding for that row) or NULL -> eps prediction [B, Cin, S, S].
vlm_tensor *vlm_dit_forward(vlm_ctx *c, vlm_dit *d, vlm_tensor *xt, const int32_t *t, vlm_tensor *emb,
                            const uint8_t *drop);

#endif
