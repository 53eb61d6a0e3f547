// DDPM noise schedules, forward noising and the DDIM / DDPM reverse steps
// (issue 8's diffusion training and sampling), on raw float buffers.
#ifndef VLM_LOSSES_DIFFUSION_H
#define VLM_LOSSES_DIFFUSION_H

#include <stdint.h>
#include "core/error.h"

typedef enum {
    VLM_DIFF_LINEAR = 0, // betas = linspace(1e-4, 0.02, T) (Ho et al. 2020)
    VLM_DIFF_COSINE,     // alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2), s = 0.008,
                         // betas = min(1 - alpha_bar(t+1)/alpha_bar(t), 0.999) (Nichol & Dhariwal 2021)
} vlm_diff_kind;

// Everything in double: alpha_bar near t = T is ~1e-5 (linear) and its square
// roots feed every step.
typedef struct {
    vlm_diff_kind kind;
    int T;
    double *betas;          // [T]
    double *alphas_cumprod; // [T] alpha_bar_t = prod_{s<=t} (1 - beta_s)
} vlm_diff_schedule;

vlm_status vlm_diff_schedule_init(vlm_diff_schedule *s, vlm_diff_kind kind, int T, vlm_error *err);
void vlm_diff_schedule_free(vlm_diff_schedule *s);
// "linear" | "cosine" -> kind; -1 if unknown.
int vlm_diff_kind_parse(const char *name);
// kind -> "linear" | "cosine" (the inverse of vlm_diff_kind_parse)
const char *vlm_diff_kind_name(vlm_diff_kind kind);

// x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, n elements, t in [0, T).
void vlm_diff_q_sample(const vlm_diff_schedule *s, int t, const float *x0, const float *eps, float *xt, int64_t n);

// DDIM step with eta = 0 from t to t_prev (t_prev = -1: alpha_bar = 1, the
// clean image): x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t),
// x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) eps. out may alias xt.
void vlm_diff_ddim_step(const vlm_diff_schedule *s, int t, int t_prev, const float *xt, const float *eps, float *out,
                        int64_t n);

// DDPM ancestral step t -> t-1: mean = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(1 - beta_t),
// plus sqrt(var) z with var = beta_t (1 - ab_{t-1}) / (1 - ab_t) (the posterior
// variance; 0 at t = 0). z: [n] standard normal noise (ignored at t = 0). out may alias xt.
void vlm_diff_ddpm_step(const vlm_diff_schedule *s, int t, const float *xt, const float *eps, const float *z, float *out,
                        int64_t n);

// The DDPM ancestral step between any t > t_prev (t_prev = -1: the clean
// image), i.e. the step of the respaced chain with beta' = 1 - ab_t / ab_prev
// (Nichol & Dhariwal's respacing): mean = (x_t - beta' / sqrt(1 - ab_t) eps) /
// sqrt(1 - beta'), var = beta' (1 - ab_prev) / (1 - ab_t). Equals
// vlm_diff_ddpm_step when t_prev = t - 1. out may alias xt.
void vlm_diff_ddpm_step_to(const vlm_diff_schedule *s, int t, int t_prev, const float *xt, const float *eps,
                           const float *z, float *out, int64_t n);

// Clips the x0 implied by (x_t, eps) to [-1, 1] and rewrites eps to match it
// (eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)), so either step then moves
// toward an image inside the data range (the samplers' clip_denoised).
void vlm_diff_clip_eps(const vlm_diff_schedule *s, int t, const float *xt, float *eps, int64_t n);

// Min-SNR-gamma loss weight for eps-prediction (Hang et al. 2023, "Efficient
// Diffusion Training via Min-SNR Weighting Strategy"): w_t = min(SNR_t, gamma) /
// SNR_t with SNR_t = ab_t / (1 - ab_t). 1 where SNR <= gamma (noisy steps), less
// for the nearly-clean steps, whose eps targets are hard and least useful; the
// paper reports ~3x faster convergence of ViT denoisers with gamma = 5.
// gamma <= 0: 1 (plain eps-MSE).
double vlm_diff_min_snr_weight(const vlm_diff_schedule *s, int t, double gamma);

// Importance sampling of the training timestep (Hang et al.'s weights as a
// sampling density instead of a loss factor): t drawn with probability
// w_t / sum(w), w_t = vlm_diff_min_snr_weight(t, gamma), and every sample's
// loss weighted by the mean weight sum(w) / T. The expected loss (and its
// gradient) is that of uniform t with per-sample weights w_t, but no draws
// are spent on steps whose weight is near zero (cosine, gamma 5: 8% of the
// uniform draws weigh < 0.1; the effective sample size grows by ~1/0.86).
// cdf: [T], filled with the normalised cumulative weights (cdf[T-1] = 1).
// Returns the mean weight (1 when gamma <= 0: uniform).
double vlm_diff_weight_cdf(const vlm_diff_schedule *s, double gamma, double *cdf);
// Inverse CDF: the t in [0, T) with cdf[t-1] <= u < cdf[t] (cdf[-1] = 0), for u
// in [0, 1); u >= 1 gives T-1. With u = (j + U_j) / n for the n samples j of
// a batch (U_j uniform) the batch covers the density stratum by stratum
// (Kingma et al.'s low-discrepancy sampler), lowering the variance further.
int vlm_diff_t_from_u(const double *cdf, int T, double u);

// DDIM's timestep subsequence: steps evenly spaced values in [0, T), descending
// (t[0] = the largest), as "trailing" spacing: t_i = round(T - i T / steps) - 1.
// Returns 0, or -1 if steps is not in [1, T].
int vlm_diff_timesteps(int T, int steps, int *t);

#endif
