// Diffusion schedules and steps against PyTorch (tests/fixtures/diffusion.safetensors,
// tests/reference/make_diffusion_fixtures.py) and closed-form properties.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/safetensors.h"
#include "losses/diffusion.h"
#include "testutil.h"

enum { T = 1000, NX = 16 };

static float ref[T];

static int get(const vlm_st_file *f, const char *name, int64_t n, float *dst) {
    vlm_error err;
    int64_t shape[1] = {n};
    if (vlm_st_get(f, name, VLM_F32, 1, shape, dst, &err) != VLM_OK) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    return 0;
}

// max |a - b| / max(|b|, floor) over n
static double rel_err(const float *a, const float *b, int64_t n, double floor) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / fmax(fabs((double)b[i]), floor);
        if (e > m) m = e;
    }
    return m;
}

static void test_reference(void) {
    vlm_st_file f;
    vlm_error err;
    if (vlm_st_read(&f, tu_src("tests/fixtures/diffusion.safetensors"), &err) != VLM_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    float x0[NX], eps[NX], z[NX], out[NX], want[NX], got[T];
    if (get(&f, "x0", NX, x0) || get(&f, "eps", NX, eps) || get(&f, "z", NX, z)) goto done;
    const char *names[2] = {"linear", "cosine"};
    const int cases[4][2] = {{999, 979}, {500, 480}, {10, 0}, {0, -1}};
    for (int k = 0; k < 2; k++) {
        vlm_diff_schedule s;
        CHECK(vlm_diff_kind_parse(names[k]) == k && !strcmp(vlm_diff_kind_name((vlm_diff_kind)k), names[k]),
              "parse / name %s", names[k]);
        if (vlm_diff_schedule_init(&s, (vlm_diff_kind)k, T, &err)) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        char n[64];
        snprintf(n, sizeof n, "%s_betas", names[k]);
        if (!get(&f, n, T, ref)) {
            for (int t = 0; t < T; t++) got[t] = (float)s.betas[t];
            double e = rel_err(got, ref, T, 1e-12);
            CHECK(e < 1e-6, "%s betas rel err %.3g", names[k], e);
        }
        snprintf(n, sizeof n, "%s_alphas_cumprod", names[k]);
        if (!get(&f, n, T, ref)) {
            for (int t = 0; t < T; t++) got[t] = (float)s.alphas_cumprod[t];
            double e = rel_err(got, ref, T, 1e-12);
            CHECK(e < 1e-6, "%s alphas_cumprod rel err %.3g", names[k], e);
        }
        snprintf(n, sizeof n, "%s_min_snr5", names[k]);
        if (!get(&f, n, T, ref)) {
            int below = 0; // guard: the weight must actually bite somewhere
            for (int t = 0; t < T; t++) got[t] = (float)vlm_diff_min_snr_weight(&s, t, 5.0), below += got[t] < 0.5f;
            double e = rel_err(got, ref, T, 1e-12);
            CHECK(e < 1e-5 && below > 10, "%s min-SNR-5 weights rel err %.3g (%d below 0.5)", names[k], e, below);
            CHECK(vlm_diff_min_snr_weight(&s, 0, 0) == 1.0, "gamma 0 is plain MSE");
        }
        for (int c = 0; c < 4; c++) {
            int t = cases[c][0], tp = cases[c][1];
            snprintf(n, sizeof n, "%s_q_t%d", names[k], t);
            vlm_diff_q_sample(&s, t, x0, eps, out, NX);
            if (!get(&f, n, NX, want)) CHECK(rel_err(out, want, NX, 1e-3) < 1e-5, "%s", n);
            snprintf(n, sizeof n, "%s_ddim_t%d_p%d", names[k], t, tp);
            vlm_diff_ddim_step(&s, t, tp, x0, eps, out, NX);
            if (!get(&f, n, NX, want)) CHECK(rel_err(out, want, NX, 1e-3) < 1e-5, "%s: %.3g", n, rel_err(out, want, NX, 1e-3));
            snprintf(n, sizeof n, "%s_ddpm_t%d", names[k], t);
            vlm_diff_ddpm_step(&s, t, x0, eps, z, out, NX);
            if (!get(&f, n, NX, want)) CHECK(rel_err(out, want, NX, 1e-3) < 1e-5, "%s: %.3g", n, rel_err(out, want, NX, 1e-3));
            // the respaced step with t_prev = t - 1 is the same step
            float o2[NX];
            vlm_diff_ddpm_step_to(&s, t, t - 1, x0, eps, z, o2, NX);
            if (!get(&f, n, NX, want)) CHECK(rel_err(o2, want, NX, 1e-3) < 1e-5, "%s (step_to): %.3g", n, rel_err(o2, want, NX, 1e-3));
        }
        vlm_diff_schedule_free(&s);
    }
done:
    vlm_st_free(&f);
}

static void test_properties(void) {
    vlm_error err;
    vlm_diff_schedule s;
    CHECK(vlm_diff_schedule_init(&s, VLM_DIFF_LINEAR, T, &err) == VLM_OK, "init");
    // linear endpoints, monotone alpha_bar
    CHECK(fabs(s.betas[0] - 1e-4) < 1e-15 && fabs(s.betas[T - 1] - 0.02) < 1e-15, "linear endpoints");
    int mono = 1;
    for (int t = 1; t < T; t++) mono &= s.alphas_cumprod[t] < s.alphas_cumprod[t - 1];
    CHECK(mono, "alpha_bar decreasing");
    // DDIM with the true eps recovers x0 exactly at t_prev = -1 (to float rounding)
    float x0[NX], eps[NX], xt[NX], back[NX];
    for (int i = 0; i < NX; i++) x0[i] = 0.1f * (float)i - 0.7f, eps[i] = 0.3f * (float)((i * 7) % 5) - 0.6f;
    vlm_diff_q_sample(&s, 400, x0, eps, xt, NX);
    vlm_diff_ddim_step(&s, 400, -1, xt, eps, back, NX);
    CHECK(rel_err(back, x0, NX, 1e-2) < 1e-5, "ddim recovers x0: %.3g", rel_err(back, x0, NX, 1e-2));
    // t -> t_prev with the true eps equals q_sample at t_prev (eta = 0 is deterministic)
    float mid[NX];
    vlm_diff_ddim_step(&s, 400, 200, xt, eps, back, NX);
    vlm_diff_q_sample(&s, 200, x0, eps, mid, NX);
    CHECK(rel_err(back, mid, NX, 1e-2) < 1e-5, "ddim lands on q(x_200)");
    // respaced DDPM to the clean image is the x0 prediction; with the true eps it is x0
    vlm_diff_ddpm_step_to(&s, 400, -1, xt, eps, eps, back, NX);
    CHECK(rel_err(back, x0, NX, 1e-2) < 1e-5, "ddpm_step_to(-1) recovers x0");
    // clip_eps: x0 inside [-1, 1] leaves eps unchanged; outside, the implied x0 is clipped
    float e2[NX];
    memcpy(e2, eps, sizeof e2);
    vlm_diff_clip_eps(&s, 400, xt, e2, NX);
    CHECK(rel_err(e2, eps, NX, 1e-2) < 1e-4, "clip_eps changed an in-range x0");
    float big[NX], xb[NX];
    for (int i = 0; i < NX; i++) big[i] = 3.0f * x0[i];
    vlm_diff_q_sample(&s, 400, big, eps, xb, NX);
    memcpy(e2, eps, sizeof e2);
    vlm_diff_clip_eps(&s, 400, xb, e2, NX);
    vlm_diff_ddim_step(&s, 400, -1, xb, e2, back, NX);
    int inside = 1;
    for (int i = 0; i < NX; i++) inside &= back[i] >= -1.00001f && back[i] <= 1.00001f && (fabsf(big[i]) > 1 || fabsf(back[i] - big[i]) < 1e-4f);
    CHECK(inside, "clip_eps: x0 clipped to [-1, 1], in-range entries kept");
    vlm_diff_schedule_free(&s);
    // timesteps
    int ts[50];
    CHECK(vlm_diff_timesteps(T, 50, ts) == 0 && ts[0] == 999 && ts[49] == 19 && ts[1] == 979, "timesteps %d %d %d", ts[0],
          ts[1], ts[49]);
    CHECK(vlm_diff_timesteps(T, 0, ts) == -1 && vlm_diff_timesteps(10, 11, ts) == -1, "bad step counts");
    // bad arguments
    CHECK(vlm_diff_schedule_init(&s, VLM_DIFF_COSINE, 1, &err) == VLM_ERR_ARG && strstr(err.msg, "T = 1"), "T = 1");
    CHECK(vlm_diff_schedule_init(&s, (vlm_diff_kind)7, 10, &err) == VLM_ERR_ARG, "bad kind");
    CHECK(vlm_diff_kind_parse("quadratic") == -1 && vlm_diff_kind_parse(NULL) == -1, "parse unknown");
}

// Importance-sampled timesteps: the density is the Min-SNR weight, and the
// mean weight times the average over stratified draws estimates the
// uniform-t weighted average of any per-t loss.
static void test_importance(void) {
    vlm_diff_schedule s;
    vlm_error err;
    static double cdf[T];
    CHECK(vlm_diff_schedule_init(&s, VLM_DIFF_COSINE, T, &err) == VLM_OK, "init");
    double mw = vlm_diff_weight_cdf(&s, 5.0, cdf), want = 0, wl = 0;
    int mono = 1;
    for (int t = 0; t < T; t++) {
        double w = vlm_diff_min_snr_weight(&s, t, 5.0);
        want += w / T, wl += w * (2 + sin(t / 37.0)) / T; // a per-t "loss" 2 + sin(t/37)
        mono &= t == 0 || cdf[t] >= cdf[t - 1];
    }
    CHECK(mono && cdf[T - 1] == 1.0 && cdf[0] > 0, "cdf monotone, ends at 1");
    // cosine, gamma 5: 0.824 (the same sum in Python); guard that it is not uniform
    CHECK(fabs(mw - want) < 1e-12 && fabs(mw - 0.8240) < 1e-3, "mean weight %.6f (want %.6f)", mw, want);
    enum { N = 20000 };
    double est = 0, lo = 0;
    for (int j = 0; j < N; j++) {
        int t = vlm_diff_t_from_u(cdf, T, (j + 0.5) / N);
        est += mw * (2 + sin(t / 37.0)) / N, lo += t < 100;
    }
    CHECK(fabs(est - wl) < 2e-3 * wl, "importance estimate %.5f vs weighted mean %.5f", est, wl);
    // the nearly-clean steps (t < 100, weights < 0.3) get fewer draws than their uniform 10%
    CHECK(lo / N < 0.05 && lo > 0, "draws at t < 100: %.3f", lo / N);
    CHECK(vlm_diff_t_from_u(cdf, T, 0.0) == 0 && vlm_diff_t_from_u(cdf, T, 0.999999) == T - 1 &&
              vlm_diff_t_from_u(cdf, T, 1.0) == T - 1, "u at the ends");
    // gamma 0: uniform, t = floor(u T)
    CHECK(vlm_diff_weight_cdf(&s, 0, cdf) == 1.0, "gamma 0 mean weight 1");
    int uni = 1;
    for (int k = 0; k < T; k += 7) uni &= vlm_diff_t_from_u(cdf, T, (k + 0.5) / T) == k;
    CHECK(uni, "gamma 0: t = floor(u T)");
    vlm_diff_schedule_free(&s);
}

int main(void) {
    test_reference();
    test_properties();
    test_importance();
    return tu_done("test_diffusion");
}
