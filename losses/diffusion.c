// DDPM noise schedules and the forward / reverse steps (see diffusion.h).
#include "losses/diffusion.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int vlm_diff_kind_parse(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "linear")) return VLM_DIFF_LINEAR;
    if (!strcmp(name, "cosine")) return VLM_DIFF_COSINE;
    return -1;
}

const char *vlm_diff_kind_name(vlm_diff_kind kind) { return kind == VLM_DIFF_COSINE ? "cosine" : "linear"; }

static double cos_alpha_bar(double t, int T) {
    const double s = 0.008, pi = 3.14159265358979323846;
    double c = cos((t / T + s) / (1 + s) * pi / 2);
    return c * c;
}

vlm_status vlm_diff_schedule_init(vlm_diff_schedule *s, vlm_diff_kind kind, int T, vlm_error *err) {
    memset(s, 0, sizeof *s);
    if (T < 2 || T > 1000000) return vlm_errorf(err, VLM_ERR_ARG, "diffusion schedule: T = %d (want 2..1000000)", T);
    if (kind != VLM_DIFF_LINEAR && kind != VLM_DIFF_COSINE)
        return vlm_errorf(err, VLM_ERR_ARG, "diffusion schedule: unknown kind %d", (int)kind);
    s->kind = kind;
    s->T = T;
    s->betas = malloc(sizeof(double) * (size_t)T);
    s->alphas_cumprod = malloc(sizeof(double) * (size_t)T);
    if (!s->betas || !s->alphas_cumprod) {
        vlm_diff_schedule_free(s);
        return vlm_errorf(err, VLM_ERR_OOM, "diffusion schedule: out of memory (T = %d)", T);
    }
    for (int t = 0; t < T; t++) {
        if (kind == VLM_DIFF_LINEAR) s->betas[t] = 1e-4 + (0.02 - 1e-4) * t / (T - 1);
        else {
            double b = 1 - cos_alpha_bar(t + 1, T) / cos_alpha_bar(t, T);
            s->betas[t] = b < 0.999 ? b : 0.999;
        }
    }
    double ab = 1;
    for (int t = 0; t < T; t++) s->alphas_cumprod[t] = ab *= 1 - s->betas[t];
    return VLM_OK;
}

void vlm_diff_schedule_free(vlm_diff_schedule *s) {
    free(s->betas);
    free(s->alphas_cumprod);
    memset(s, 0, sizeof *s);
}

void vlm_diff_q_sample(const vlm_diff_schedule *s, int t, const float *x0, const float *eps, float *xt, int64_t n) {
    const double ab = s->alphas_cumprod[t];
    const float a = (float)sqrt(ab), b = (float)sqrt(1 - ab);
    for (int64_t i = 0; i < n; i++) xt[i] = a * x0[i] + b * eps[i];
}

void vlm_diff_ddim_step(const vlm_diff_schedule *s, int t, int t_prev, const float *xt, const float *eps, float *out,
                        int64_t n) {
    const double ab = s->alphas_cumprod[t], abp = t_prev >= 0 ? s->alphas_cumprod[t_prev] : 1.0;
    const double sa = sqrt(ab), sb = sqrt(1 - ab), sap = sqrt(abp), sbp = sqrt(1 - abp);
    for (int64_t i = 0; i < n; i++) {
        double x0 = ((double)xt[i] - sb * eps[i]) / sa;
        out[i] = (float)(sap * x0 + sbp * eps[i]);
    }
}

void vlm_diff_ddpm_step(const vlm_diff_schedule *s, int t, const float *xt, const float *eps, const float *z, float *out,
                        int64_t n) {
    const double beta = s->betas[t], ab = s->alphas_cumprod[t], abp = t > 0 ? s->alphas_cumprod[t - 1] : 1.0;
    const double c = beta / sqrt(1 - ab), inv = 1 / sqrt(1 - beta);
    const double sd = t > 0 ? sqrt(beta * (1 - abp) / (1 - ab)) : 0.0;
    for (int64_t i = 0; i < n; i++) {
        double m = ((double)xt[i] - c * eps[i]) * inv;
        out[i] = (float)(t > 0 ? m + sd * z[i] : m);
    }
}

void vlm_diff_ddpm_step_to(const vlm_diff_schedule *s, int t, int t_prev, const float *xt, const float *eps,
                           const float *z, float *out, int64_t n) {
    const double ab = s->alphas_cumprod[t], abp = t_prev >= 0 ? s->alphas_cumprod[t_prev] : 1.0;
    const double beta = 1 - ab / abp, c = beta / sqrt(1 - ab), inv = 1 / sqrt(1 - beta);
    const double sd = t_prev >= 0 ? sqrt(beta * (1 - abp) / (1 - ab)) : 0.0;
    for (int64_t i = 0; i < n; i++) {
        double m = ((double)xt[i] - c * eps[i]) * inv;
        out[i] = (float)(t_prev >= 0 ? m + sd * z[i] : m);
    }
}

void vlm_diff_clip_eps(const vlm_diff_schedule *s, int t, const float *xt, float *eps, int64_t n) {
    const double ab = s->alphas_cumprod[t], sa = sqrt(ab), sb = sqrt(1 - ab);
    for (int64_t i = 0; i < n; i++) {
        double x0 = ((double)xt[i] - sb * eps[i]) / sa;
        if (x0 > 1) x0 = 1;
        if (x0 < -1) x0 = -1;
        eps[i] = (float)(((double)xt[i] - sa * x0) / sb);
    }
}

double vlm_diff_min_snr_weight(const vlm_diff_schedule *s, int t, double gamma) {
    if (gamma <= 0) return 1.0;
    const double ab = s->alphas_cumprod[t], snr = ab / (1 - ab);
    return snr > gamma ? gamma / snr : 1.0;
}

double vlm_diff_weight_cdf(const vlm_diff_schedule *s, double gamma, double *cdf) {
    double sum = 0;
    for (int t = 0; t < s->T; t++) cdf[t] = sum += vlm_diff_min_snr_weight(s, t, gamma);
    for (int t = 0; t < s->T; t++) cdf[t] /= sum;
    cdf[s->T - 1] = 1.0; // exact, whatever the rounding of the division
    return sum / s->T;
}

int vlm_diff_t_from_u(const double *cdf, int T, double u) {
    int lo = 0, hi = T - 1; // the first t with cdf[t] > u
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

int vlm_diff_timesteps(int T, int steps, int *t) {
    if (steps < 1 || steps > T) return -1;
    for (int i = 0; i < steps; i++) t[i] = (int)llround(T - (double)i * T / steps) - 1;
    return 0;
}
