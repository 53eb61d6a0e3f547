// Diffusion-generator training on the trainer layer: a DiT denoiser
// conditioned on a frozen CLIP's embeddings, eps-prediction MSE (optionally
// Min-SNR weighted, with stratified or importance-sampled timesteps), the
// condition dropped for classifier-free guidance, and an EMA of the weights.
#ifndef VLM_TRAIN_GENERATE_H
#define VLM_TRAIN_GENERATE_H

#include "train/gen_data.h"
#include "train/trainer.h"

typedef enum { VLM_T_UNIFORM = 0, VLM_T_STRATIFIED, VLM_T_IMPORTANCE } vlm_t_sampling;
// "uniform" | "stratified" | "importance"; -1 if unknown.
int vlm_t_sampling_parse(const char *name);

// One diffusion training step's inputs and scratch (B samples of this rank).
typedef struct {
    int B, R, GB;            // this rank's batch, its rank, the global batch
    uint64_t seed;
    double hflip, p_uncond, min_snr;
    vlm_t_sampling t_mode;
    const double *t_cdf;     // [T] timestep density's CDF (stratified / importance)
    double t_mean_w;         // importance: every sample's weight
    float *x0, *xt, *eps, *emb, *sw; // [B, D] x3, [B, E], [B]
    int32_t *tt;             // [B]
    uint8_t *drop;           // [B]
} vlm_gen_step_buf;

// Step `step` on samples order[pos .. pos + B) (mod d->n): every sample's own
// stream (seed, global sample index) draws its flip, timestep, condition drop
// and noise, so a resumed run repeats them exactly; then forward, the
// (weighted) eps-MSE and backward on c. *loss: this rank's loss.
vlm_status vlm_gen_train_step(vlm_ctx *c, vlm_gen *g, const vlm_diff_schedule *sch, const vlm_gen_data *d,
                              const uint32_t *order, int64_t step, int64_t pos, vlm_gen_step_buf *b, double *loss,
                              vlm_error *err);

typedef struct {
    vlm_train_common c;
    const char *clip, *train, *classnames, *tmpl, *cond, *schedule, *t_sampling;
    vlm_decode_opts dec;
    long long limit, image_size, patch, channels, width, layers, heads, cond_tokens, timesteps, grid_n;
    double hflip, p_uncond, ema, min_snr;
    int long_skip;
} vlm_generate_opts;

// DiT 6 x 256, patch 4, 32 px, 3 channels, linear schedule of 1000 steps;
// batch 64, lr 3e-4 constant after 500 warmup steps, wd 0, EMA 0.9995,
// p_uncond 0.1, save every 1000, log every 50, 100 epochs, a grid of 8.
void vlm_generate_opts_default(vlm_generate_opts *o);
vlm_status vlm_generate_opts_check(const vlm_generate_opts *o, vlm_error *err);

typedef struct {
    int64_t steps;
    double minutes, loss;
    char checkpoint[1300], grid[1300]; // grid: "" when none was sampled
} vlm_generate_result;

vlm_status vlm_generate_train(const vlm_generate_opts *o, vlm_generate_result *r, vlm_error *err);

#endif
