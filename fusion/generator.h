// The text/image-conditioned generator: a frozen CLIP (it embeds prompts or
// images) and a DiT denoiser on those embeddings (fusion/dit.h); its model
// file, its training-state file (with the EMA of the weights), and sampling
// with classifier-free guidance (DDIM eta 0 or DDPM ancestral, seeded).
//
// Model file ("format" vlm-diffusion): the DiT's parameters by name (the EMA
// weights when training kept one), the CLIP's by OpenAI name, metadata
// "config" (DiT JSON), "clip_config", "tokenizer", "cond" (text | image),
// "template" (the prompt template used in training, e.g. "a photo of a {}"),
// "train_data" (the training data as given), "step". Self-contained: sampling needs no other file.
#ifndef VLM_FUSION_GENERATOR_H
#define VLM_FUSION_GENERATOR_H

#include "fusion/checkpoint.h"
#include "fusion/clip.h"
#include "fusion/dit.h"

typedef enum { VLM_GEN_TEXT = 0, VLM_GEN_IMAGE } vlm_gen_cond;

typedef struct {
    vlm_dit dit;
    vlm_clip clip;
    char *tokenizer_text; // the CLIP's BPE merges (malloc'd)
    vlm_gen_cond cond;
    char template_[256];  // prompt template ("{}" = the class name / caption)
    char train_data[1024]; // the training data spec (metadata "train_data"; eval's default real images)
    float *ema;           // [dit.ps.total] EMA weights while training (NULL otherwise)
    int have_dit, have_clip;
} vlm_gen;

// A new generator on the CLIP model file at clip_path: cfg->cond_dim is set to
// the CLIP's embed_dim; the DiT gets fresh weights (seed).
vlm_status vlm_gen_from_clip(vlm_gen *g, const char *clip_path, vlm_dit_cfg cfg, uint64_t seed, vlm_error *err);
void vlm_gen_free(vlm_gen *g);
// Allocates the EMA buffer as a copy of the current weights.
vlm_status vlm_gen_ema_init(vlm_gen *g, vlm_error *err);
// ema = d ema + (1 - d) w with d = min(decay, (1 + step) / (10 + step)) (the
// usual warm-up, so early EMA weights are not dominated by the initialisation).
void vlm_gen_ema_update(vlm_gen *g, float decay, int64_t step);

// The model file: DiT weights from `weights` ([dit.ps.total]; NULL = the
// current ones; pass g->ema for the EMA).
vlm_status vlm_gen_save(const char *path, const vlm_gen *g, const float *weights, int64_t step, vlm_error *err);
vlm_status vlm_gen_load(const char *path, vlm_gen *g, vlm_error *err);
// Training state: params, AdamW moments, the EMA and *s (format vlm-diffusion-state).
vlm_status vlm_gen_save_state(const char *path, const vlm_gen *g, const vlm_train_state *s, const char *args_json,
                              vlm_error *err);
vlm_status vlm_gen_load_state(const char *path, vlm_gen *g, vlm_train_state *s, vlm_error *err);

typedef struct {
    int steps;       // reverse steps (DDIM: any in [1, T]; DDPM: respaced when < T)
    int ddpm;        // 0 = DDIM (eta 0), 1 = DDPM ancestral
    float guidance;  // s in eps_u + s (eps_c - eps_u); 1 = conditional only, 0 = unconditional only
    // Guidance interval (Kynkaenniemi et al. 2024): guidance only at steps whose noise level
    // sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) lies in (guidance_lo, guidance_hi]; the other
    // steps are conditional only (one forward pass, not two). Default (0, inf]: every step.
    float guidance_lo, guidance_hi;
    // Guidance rescale (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    // flawed", sec. 3.4): the guided x0 prediction's standard deviation (per image) is pulled back
    // towards the conditional one's, x0 *= phi std(x0_c) / std(x0_g) + (1 - phi); guidance
    // otherwise over-exposes (large s inflates the contrast). 0 = off.
    float guidance_rescale;
    int clip_x0;     // clip the predicted x0 to [-1, 1] at every step (1 by default)
    uint64_t seed;   // sample i's noise: stream VLM_RNG_SAMPLE, sub = first_index + i
    int64_t first_index;
    int batch;       // images per forward pass (x2 with guidance)
    // Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"):
    // a weaker denoiser `guide` (smaller and/or shorter-trained, same image size, channels, noise
    // schedule and condition) adds (autoguidance - 1) (eps_c - eps_guide_c) at every step: the paper's
    // aim is to push images towards what the main model knows better than the guide without the
    // loss of variety of classifier-free guidance. NULL or autoguidance 1 = off.
    const vlm_dit *guide;
    float autoguidance;
} vlm_gen_sample_opts;

void vlm_gen_sample_opts_default(vlm_gen_sample_opts *o); // DDIM 50 steps, guidance 3, clip, seed 0, batch 64
// emb: [n, E] conditioning embeddings (L2-normalised CLIP embeddings) ->
// out: [n, C, S, S] in [-1, 1]. Sample i depends only on (seed, first_index
// + i, emb[i]), not on n or the batch size. The DiT's current weights are used.
// With a guide and guidance s, autoguidance a, inside the guidance interval:
// eps = eps_u + s (eps_c - eps_u) + (a - 1) (eps_c - eps_g); outside it the
// s term is dropped (eps = eps_c + (a - 1) (eps_c - eps_g)).
vlm_status vlm_gen_sample(vlm_gen *g, const float *emb, int64_t n, const vlm_gen_sample_opts *o, float *out,
                          vlm_error *err);

// [n, C, S, S] in [-1, 1] -> 8-bit RGB [n, S, S, 3] (grey replicated when C = 1).
void vlm_gen_to_rgb(const float *x, int64_t n, int C, int S, uint8_t *rgb);
// 8-bit RGB [S, S, 3] -> [C, S, S] in [-1, 1] (C = 1: the mean of R, G, B).
void vlm_gen_from_rgb(const uint8_t *rgb, int C, int S, float *x);

#endif
