// Linear probe (fusion/linprobe.h): the L-BFGS logistic regression against a
// closed-form optimum and the optimality conditions, determinism across
// thread counts and warm starts, the C sweep on synthetic Gaussian blobs, and
// bad input.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core/rng.h"
#include "eval/classify.h"
#include "eval/linprobe.h"
#include "tests/testutil.h"

// Blobs: class k centred at mu_k (random, scale sep) + N(0, 1) noise, with
// an irrelevant feature of large scale (standardisation must handle it).
static void blobs(int64_t n, int d, int K, double sep, uint64_t seed, float *X, int32_t *y) {
    vlm_rng r;
    vlm_rng_init(&r, 123, 7, 0);
    float *mu = malloc(sizeof(float) * (size_t)K * d);
    for (int i = 0; i < K * d; i++) mu[i] = (float)sep * vlm_rng_normal(&r);
    vlm_rng_init(&r, seed, 7, 1);
    for (int64_t i = 0; i < n; i++) {
        int k = (int)(i % K);
        y[i] = k;
        for (int j = 0; j < d; j++) X[i * d + j] = mu[k * d + j] + vlm_rng_normal(&r);
        X[i * d + d - 1] = 1000.0f + 500.0f * vlm_rng_normal(&r); // noise feature, huge scale
    }
    free(mu);
}

// Independent double-precision gradient of the objective at m (on the standardised data).
static double grad_max(const vlm_logreg *m, const float *X, const int32_t *y, int64_t n) {
    const int d = m->d, K = m->K;
    double *g = calloc((size_t)(K * d + K), sizeof(double)), *z = malloc(sizeof(double) * (size_t)d),
           *p = malloc(sizeof(double) * (size_t)K);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) z[j] = ((double)X[i * d + j] - m->mean[j]) / m->std[j];
        double mx = -1e300, s = 0;
        for (int k = 0; k < K; k++) {
            double a = m->b[k];
            for (int j = 0; j < d; j++) a += (double)m->W[k * d + j] * z[j];
            p[k] = a;
            if (a > mx) mx = a;
        }
        for (int k = 0; k < K; k++) s += exp(p[k] - mx);
        for (int k = 0; k < K; k++) {
            double q = exp(p[k] - mx) / s - (k == y[i]);
            for (int j = 0; j < d; j++) g[k * d + j] += q * z[j];
            g[K * d + k] += q;
        }
    }
    double worst = 0;
    for (int i = 0; i < K * d; i++) worst = fmax(worst, fabs(g[i] / n + m->W[i] / (m->C * n)));
    for (int k = 0; k < K; k++) worst = fmax(worst, fabs(g[K * d + k] / n));
    free(g); free(z); free(p);
    return worst;
}

static void test_closed_form(void) {
    // Two points z = +1 (class 1) and z = -1 (class 0): by symmetry W = [-a, a],
    // b = 0, and a solves -2 / (1 + exp(2a)) + a / C = 0 (objective
    // log(1 + exp(-2a)) + a^2 / (2C), from (1/n) sum CE + ||W||^2 / (2Cn), n = 2).
    float X[2] = {3.0f, 1.0f}; // standardised: mean 2, std 1 -> +1, -1
    int32_t y[2] = {1, 0};
    const double Cs[3] = {0.1, 1.0, 10.0};
    for (int t = 0; t < 3; t++) {
        double C = Cs[t], lo = 0, hi = 50;
        for (int it = 0; it < 200; it++) {
            double a = 0.5 * (lo + hi);
            if (-2.0 / (1.0 + exp(2 * a)) + a / C > 0) hi = a;
            else lo = a;
        }
        double a = 0.5 * (lo + hi);
        vlm_logreg m;
        vlm_error err;
        vlm_logreg_opts o;
        vlm_logreg_opts_default(&o);
        o.gtol = 1e-9;
        CHECK(vlm_logreg_fit(&m, X, y, 2, 1, 2, C, &o, NULL, &err) == VLM_OK, "fit: %s", err.msg);
        CHECK(fabs(m.mean[0] - 2.0f) < 1e-6 && fabs(m.std[0] - 1.0f) < 1e-6, "standardisation %g %g", m.mean[0], m.std[0]);
        CHECK(fabs(m.W[1] - a) < 1e-4 && fabs(m.W[0] + a) < 1e-4, "C %g: W = [%g, %g], expected [-%g, %g]", C, m.W[0],
              m.W[1], a, a);
        CHECK(fabs(m.b[0]) < 1e-5 && fabs(m.b[1]) < 1e-5, "C %g: bias %g %g", C, m.b[0], m.b[1]);
        CHECK(m.converged, "C %g: not converged after %d iterations", C, m.iters);
        double fexp = log1p(exp(-2 * a)) + a * a / (2 * C);
        CHECK(fabs(m.loss - fexp) < 1e-7, "C %g: objective %.9f expected %.9f", C, m.loss, fexp);
        vlm_logreg_free(&m);
    }
}

static void test_optimum_and_determinism(void) {
    const int64_t n = 3000;
    const int d = 12, K = 5;
    float *X = malloc(sizeof(float) * n * d);
    int32_t *y = malloc(sizeof(int32_t) * n);
    blobs(n, d, K, 0.6, 1, X, y);
    vlm_logreg a, b, c;
    vlm_error err;
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    CHECK(vlm_logreg_fit(&a, X, y, n, d, K, 0.5, NULL, NULL, &err) == VLM_OK, "fit: %s", err.msg);
    double gm = grad_max(&a, X, y, n);
    CHECK(gm < 2e-5, "max |gradient| at the solution %g", gm);
    CHECK(a.converged && a.iters > 3, "iterations %d converged %d", a.iters, a.converged);
    // Non-trivial: weights clearly non-zero, noise feature near zero weight.
    double wmax = 0, wnoise = 0;
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < d - 1; j++) wmax = fmax(wmax, fabs(a.W[k * d + j]));
        wnoise = fmax(wnoise, fabs(a.W[k * d + d - 1]));
    }
    CHECK(wmax > 0.3 && wnoise < 0.2 * wmax, "weights: max %g, noise feature %g", wmax, wnoise);
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    CHECK(vlm_logreg_fit(&b, X, y, n, d, K, 0.5, NULL, NULL, &err) == VLM_OK, "fit: %s", err.msg);
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    CHECK(!memcmp(a.W, b.W, sizeof(float) * K * d) && !memcmp(a.b, b.b, sizeof(float) * K) && a.iters == b.iters,
          "1 thread and 2 threads give different solutions");
    // Warm start from the solution converges at once to the same point.
    CHECK(vlm_logreg_fit(&c, X, y, n, d, K, 0.5, NULL, &a, &err) == VLM_OK, "fit: %s", err.msg);
    CHECK(c.iters <= 2, "warm start needed %d iterations", c.iters);
    double dw = 0;
    for (int i = 0; i < K * d; i++) dw = fmax(dw, fabs(c.W[i] - a.W[i]));
    CHECK(dw < 1e-3, "warm-started solution differs by %g", dw);
    // Predictions: logits by hand for one row.
    float lg[5];
    vlm_logreg_predict(&a, X + 7 * d, 1, lg);
    for (int k = 0; k < K; k++) {
        double s = a.b[k];
        for (int j = 0; j < d; j++) s += (double)a.W[k * d + j] * ((X[7 * d + j] - a.mean[j]) / a.std[j]);
        CHECK(fabs(lg[k] - s) < 1e-4, "logit %d: %g vs %g", k, lg[k], s);
    }
    vlm_logreg_free(&a);
    vlm_logreg_free(&b);
    vlm_logreg_free(&c);
    free(X);
    free(y);
}

static void test_sweep(void) {
    const int64_t ntr = 2000, nte = 1000;
    const int d = 10, K = 4;
    float *Xtr = malloc(sizeof(float) * ntr * d), *Xte = malloc(sizeof(float) * nte * d);
    int32_t *ytr = malloc(sizeof(int32_t) * ntr), *yte = malloc(sizeof(int32_t) * nte);
    blobs(ntr, d, K, 0.5, 2, Xtr, ytr);
    blobs(nte, d, K, 0.5, 3, Xte, yte);
    vlm_linprobe_opts o;
    vlm_linprobe_opts_default(&o);
    vlm_linprobe_result r, r2;
    vlm_error err;
    CHECK(vlm_linprobe_run(Xtr, ytr, ntr, Xte, yte, nte, d, K, &o, &r, NULL, NULL, &err) == VLM_OK, "run: %s", err.msg);
    CHECK(r.n_sweep == 9 + 4, "%d fits in the sweep", r.n_sweep);
    CHECK(r.n_val == 400 && r.n_train == 1600 && r.n_test == nte, "split %lld/%lld, test %lld", (long long)r.n_train,
          (long long)r.n_val, (long long)r.n_test);
    // The smallest C underfits (near chance): the sweep must pick something larger.
    CHECK(r.sweep_val_top1[0] < r.best_val_top1 - 0.05, "C %g val %g vs best %g", r.sweep_C[0], r.sweep_val_top1[0],
          r.best_val_top1);
    CHECK(r.best_C > 1e-4, "best C %g", r.best_C);
    // Bayes accuracy of these blobs is well above chance (0.25); the probe gets close to it.
    CHECK(r.test_top1 > 0.6 && r.test_top5 == 1.0, "test top-1 %g top-5 %g", r.test_top1, r.test_top5);
    CHECK(fabs(r.test_top1 - r.best_val_top1) < 0.08, "test %g vs val %g", r.test_top1, r.best_val_top1);
    // Deterministic end to end.
    CHECK(vlm_linprobe_run(Xtr, ytr, ntr, Xte, yte, nte, d, K, &o, &r2, NULL, NULL, &err) == VLM_OK, "run: %s", err.msg);
    CHECK(r2.best_C == r.best_C && r2.test_top1 == r.test_top1 && r2.test_top5 == r.test_top5, "second run differs");
    // Bad input: labels out of range, too few classes, bad C.
    ytr[5] = K;
    CHECK(vlm_linprobe_run(Xtr, ytr, ntr, Xte, yte, nte, d, K, &o, &r2, NULL, NULL, &err) == VLM_ERR_ARG &&
              strstr(err.msg, "label"),
          "out-of-range label: %s", err.msg);
    ytr[5] = 1;
    vlm_logreg m;
    CHECK(vlm_logreg_fit(&m, Xtr, ytr, ntr, d, 1, 1.0, NULL, NULL, &err) == VLM_ERR_ARG, "K = 1 accepted");
    CHECK(vlm_logreg_fit(&m, Xtr, ytr, ntr, d, K, -1.0, NULL, NULL, &err) == VLM_ERR_ARG, "C < 0 accepted");
    o.val_fraction = 0;
    CHECK(vlm_linprobe_run(Xtr, ytr, ntr, Xte, yte, nte, d, K, &o, &r2, NULL, NULL, &err) == VLM_ERR_ARG, "no val split accepted");
    // top-k counting with ties: an equal logit at a lower index ranks first.
    float lg[2 * 3] = {1, 1, 0, 0, 2, 2};
    int32_t yy[2] = {1, 1};
    int64_t t1, t5;
    vlm_topk_count(lg, yy, 2, 3, &t1, &t5);
    CHECK(t1 == 1 && t5 == 2, "ties: top1 %lld top5 %lld", (long long)t1, (long long)t5);
    free(Xtr); free(Xte); free(ytr); free(yte);
}

int main(void) {
    test_closed_form();
    test_optimum_and_determinism();
    test_sweep();
    return tu_done("test_linprobe");
}
