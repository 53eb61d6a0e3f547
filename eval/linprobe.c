// Logistic-regression linear probe (see linprobe.h).
#include "eval/linprobe.h"
#include "eval/classify.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"

#define ROWS_PER_BLOCK 256 // fixed partition of the rows: sums never depend on the thread count

void vlm_logreg_opts_default(vlm_logreg_opts *o) {
    o->max_iter = 1000;
    o->history = 10;
    o->gtol = 1e-5;
    o->ftol = 1e-10;
}

void vlm_logreg_free(vlm_logreg *m) {
    if (!m) return;
    free(m->mean);
    free(m->std);
    free(m->W);
    free(m->b);
    memset(m, 0, sizeof *m);
}

// Dot product with 8 independent partial sums (vectorises without -ffast-math).
static float dotf(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; t++) acc[t] += a[j + t] * b[j + t];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

typedef struct {
    const float *Z;   // [n, d] standardised
    const int32_t *y;
    int64_t n;
    int d, K;
    double C;
    float *Wf, *bf;   // float copy of theta for the row loops
    float *gpart;     // [nb, K, d] per-block gradient partials
    double *bpart;    // [nb, K]
    double *lpart;    // [nb]
    int64_t nb;
} lr_problem;

// f(theta) and its gradient g (both [K*d + K], W first then b).
static double lr_eval(lr_problem *p, const double *theta, double *g) {
    const int d = p->d, K = p->K;
    const int64_t P = (int64_t)K * d;
    for (int64_t i = 0; i < P; i++) p->Wf[i] = (float)theta[i];
    for (int k = 0; k < K; k++) p->bf[k] = (float)theta[P + k];
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < p->nb; blk++) {
        float *G = p->gpart + blk * P;
        double *Gb = p->bpart + blk * K, loss = 0;
        memset(G, 0, sizeof(float) * (size_t)P);
        memset(Gb, 0, sizeof(double) * (size_t)K);
        double pr[256];
        float coef[256];
        double *prob = K <= 256 ? pr : malloc(sizeof(double) * (size_t)K);
        float *cf = K <= 256 ? coef : malloc(sizeof(float) * (size_t)K);
        int64_t r1 = (blk + 1) * ROWS_PER_BLOCK < p->n ? (blk + 1) * ROWS_PER_BLOCK : p->n;
        for (int64_t r = blk * ROWS_PER_BLOCK; r < r1; r++) {
            const float *z = p->Z + r * d;
            double mx = -INFINITY;
            for (int k = 0; k < K; k++) {
                prob[k] = (double)(dotf(p->Wf + (int64_t)k * d, z, d) + p->bf[k]);
                if (prob[k] > mx) mx = prob[k];
            }
            double s = 0;
            for (int k = 0; k < K; k++) s += exp(prob[k] - mx);
            double lse = mx + log(s);
            int y = p->y[r];
            loss += lse - prob[y];
            for (int k = 0; k < K; k++) {
                double q = exp(prob[k] - lse) - (k == y);
                cf[k] = (float)q;
                Gb[k] += q;
            }
            for (int k = 0; k < K; k++) {
                float c = cf[k], *gk = G + (int64_t)k * d;
                for (int j = 0; j < d; j++) gk[j] += c * z[j];
            }
        }
        p->lpart[blk] = loss;
        if (prob != pr) free(prob);
        if (cf != coef) free(cf);
    }
    // Reduce the blocks in order.
    double loss = 0, reg = 0;
    memset(g, 0, sizeof(double) * (size_t)(P + K));
    for (int64_t blk = 0; blk < p->nb; blk++) {
        loss += p->lpart[blk];
        const float *G = p->gpart + blk * P;
        for (int64_t i = 0; i < P; i++) g[i] += G[i];
        for (int k = 0; k < K; k++) g[P + k] += p->bpart[blk * K + k];
    }
    const double inv_n = 1.0 / (double)p->n, lam = 1.0 / (p->C * (double)p->n);
    for (int64_t i = 0; i < P; i++) {
        g[i] = g[i] * inv_n + lam * theta[i];
        reg += theta[i] * theta[i];
    }
    for (int k = 0; k < K; k++) g[P + k] *= inv_n;
    return loss * inv_n + 0.5 * lam * reg;
}

static double dotd(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// L-BFGS state over theta = [W (K*d), b (K)], NP values: the iterate, its
// gradient, the trial point, the search direction, and the last H (s, y)
// pairs in a ring (slot hstart the oldest, hn in use).
typedef struct {
    int64_t NP, H;
    double *th, *g, *th2, *g2, *dir; // [NP]
    double *S, *Y;                   // [H, NP]
    double *rho, *alpha;             // [H]
    int hn, hstart;
} lbfgs;

// Per-feature mean and std (in double, row order; std floored at 1e-6) into m,
// and Z [n, d] = (X - mean) / std.
static vlm_status standardise(vlm_logreg *m, const float *X, int64_t n, int d, float *Z, vlm_error *err) {
    for (int j = 0; j < d; j++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) s += X[i * d + j];
        double mu = s / (double)n;
        for (int64_t i = 0; i < n; i++) {
            double t = X[i * d + j] - mu;
            s2 += t * t;
        }
        double sd = sqrt(s2 / (double)n);
        m->mean[j] = (float)mu;
        m->std[j] = (float)(sd > 1e-6 ? sd : 1e-6);
        if (!isfinite(mu) || !isfinite(sd))
            return vlm_errorf(err, VLM_ERR_NUMERIC, "logreg: feature %d is not finite", j);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) Z[i * d + j] = (X[i * d + j] - m->mean[j]) / m->std[j];
    return VLM_OK;
}

// lb->dir = -H g by the two-loop recursion (steepest descent, history
// dropped, when that is not a descent direction). Returns g . dir.
static double lbfgs_direction(lbfgs *lb) {
    const int64_t NP = lb->NP, H = lb->H;
    const double *g = lb->g, *S = lb->S, *Y = lb->Y;
    double *dir = lb->dir, *rho = lb->rho, *alpha = lb->alpha;
    for (int64_t i = 0; i < NP; i++) dir[i] = -g[i];
    for (int k = lb->hn - 1; k >= 0; k--) {
        int64_t s = (lb->hstart + k) % H;
        alpha[s] = rho[s] * dotd(S + s * NP, dir, NP);
        for (int64_t i = 0; i < NP; i++) dir[i] -= alpha[s] * Y[s * NP + i];
    }
    double gamma = 1.0;
    if (lb->hn) {
        int64_t s = (lb->hstart + lb->hn - 1) % H;
        gamma = dotd(S + s * NP, Y + s * NP, NP) / dotd(Y + s * NP, Y + s * NP, NP);
    }
    for (int64_t i = 0; i < NP; i++) dir[i] *= gamma;
    for (int k = 0; k < lb->hn; k++) {
        int64_t s = (lb->hstart + k) % H;
        double beta = rho[s] * dotd(Y + s * NP, dir, NP);
        for (int64_t i = 0; i < NP; i++) dir[i] += (alpha[s] - beta) * S[s * NP + i];
    }
    double gd = dotd(g, dir, NP);
    if (!(gd < 0)) { // not a descent direction: restart from steepest descent
        lb->hn = 0;
        for (int64_t i = 0; i < NP; i++) dir[i] = -g[i];
        gd = dotd(g, dir, NP);
    }
    return gd;
}

// Backtracking (Armijo) line search from f along lb->dir: the accepted point
// in th2, g2, its value in *f2. Returns 0 when 40 halvings found no decrease.
static int line_search(lr_problem *p, lbfgs *lb, double f, double gd, double step, double *f2, int *evals) {
    *f2 = f;
    for (int ls = 0; ls < 40; ls++) {
        for (int64_t i = 0; i < lb->NP; i++) lb->th2[i] = lb->th[i] + step * lb->dir[i];
        *f2 = lr_eval(p, lb->th2, lb->g2);
        (*evals)++;
        if (isfinite(*f2) && *f2 <= f + 1e-4 * step * gd) return 1;
        step *= 0.5;
    }
    return 0;
}

// Adds (s, y) = (th2 - th, g2 - g) to the history unless the curvature
// condition fails (then the slot is only scratch).
static void history_push(lbfgs *lb) {
    const int64_t NP = lb->NP, H = lb->H;
    int64_t slot = lb->hn < H ? (lb->hstart + lb->hn) % H : lb->hstart;
    double *sv = lb->S + slot * NP, *yv = lb->Y + slot * NP;
    for (int64_t i = 0; i < NP; i++) {
        sv[i] = lb->th2[i] - lb->th[i];
        yv[i] = lb->g2[i] - lb->g[i];
    }
    double sy = dotd(sv, yv, NP);
    if (sy > 1e-12 * sqrt(dotd(sv, sv, NP) * dotd(yv, yv, NP))) {
        lb->rho[slot] = 1.0 / sy;
        if (lb->hn < H) lb->hn++;
        else lb->hstart = (lb->hstart + 1) % H;
    }
}

// Minimises from lb->th; leaves the optimum in lb->th and writes loss,
// iterations, evaluations and convergence to m.
static void lbfgs_run(lr_problem *p, lbfgs *lb, const vlm_logreg_opts *o, vlm_logreg *m) {
    const int64_t NP = lb->NP;
    double f = lr_eval(p, lb->th, lb->g);
    m->evals = 1;
    int it = 0, converged = 0;
    for (; it < o->max_iter; it++) {
        double gmax = 0;
        for (int64_t i = 0; i < NP; i++) gmax = fmax(gmax, fabs(lb->g[i]));
        if (gmax <= o->gtol) {
            converged = 1;
            break;
        }
        double gd = lbfgs_direction(lb);
        double step = 1.0;
        if (!lb->hn) step = fmin(1.0, 1.0 / sqrt(dotd(lb->g, lb->g, NP)));
        double f2;
        if (!line_search(p, lb, f, gd, step, &f2, &m->evals)) { // no progress possible at float precision: stop here
            converged = 1;
            break;
        }
        history_push(lb);
        double df = f - f2;
        memcpy(lb->th, lb->th2, sizeof(double) * (size_t)NP);
        memcpy(lb->g, lb->g2, sizeof(double) * (size_t)NP);
        f = f2;
        if (df <= o->ftol * fmax(1.0, fabs(f))) {
            converged = 1;
            it++;
            break;
        }
    }
    m->loss = f;
    m->iters = it;
    m->converged = converged;
}

vlm_status vlm_logreg_fit(vlm_logreg *m, const float *X, const int32_t *y, int64_t n, int d, int K, double C,
                          const vlm_logreg_opts *o_in, const vlm_logreg *init, vlm_error *err) {
    memset(m, 0, sizeof *m);
    vlm_logreg_opts o;
    if (o_in) o = *o_in;
    else vlm_logreg_opts_default(&o);
    if (n < 1 || d < 1 || K < 2 || !(C > 0) || !isfinite(C) || o.history < 1 || o.max_iter < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "logreg: bad problem (n %lld, d %d, K %d, C %g, history %d)", (long long)n, d,
                          K, C, o.history);
    if (init && (init->d != d || init->K != K))
        return vlm_errorf(err, VLM_ERR_SHAPE, "logreg: warm start has d %d, K %d; problem has %d, %d", init->d, init->K, d, K);
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            return vlm_errorf(err, VLM_ERR_ARG, "logreg: label %d of row %lld is outside [0, %d)", y[i], (long long)i, K);
    const int64_t P = (int64_t)K * d, NP = P + K, H = o.history;
    lr_problem p = {0};
    p.y = y;
    p.n = n;
    p.d = d;
    p.K = K;
    p.C = C;
    p.nb = (n + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    m->d = d;
    m->K = K;
    m->C = C;
    m->mean = malloc(sizeof(float) * (size_t)d);
    m->std = malloc(sizeof(float) * (size_t)d);
    m->W = malloc(sizeof(float) * (size_t)P);
    m->b = malloc(sizeof(float) * (size_t)K);
    float *Z = malloc(sizeof(float) * (size_t)(n * d));
    p.Wf = malloc(sizeof(float) * (size_t)P);
    p.bf = malloc(sizeof(float) * (size_t)K);
    p.gpart = malloc(sizeof(float) * (size_t)(p.nb * P));
    p.bpart = malloc(sizeof(double) * (size_t)(p.nb * K));
    p.lpart = malloc(sizeof(double) * (size_t)p.nb);
    lbfgs lb = {.NP = NP, .H = H};
    lb.th = malloc(sizeof(double) * (size_t)NP), lb.g = malloc(sizeof(double) * (size_t)NP);
    lb.th2 = malloc(sizeof(double) * (size_t)NP), lb.g2 = malloc(sizeof(double) * (size_t)NP);
    lb.dir = malloc(sizeof(double) * (size_t)NP), lb.S = malloc(sizeof(double) * (size_t)(H * NP));
    lb.Y = malloc(sizeof(double) * (size_t)(H * NP)), lb.rho = malloc(sizeof(double) * (size_t)H);
    lb.alpha = malloc(sizeof(double) * (size_t)H);
    vlm_status st = VLM_OK;
    if (!m->mean || !m->std || !m->W || !m->b || !Z || !p.Wf || !p.bf || !p.gpart || !p.bpart || !p.lpart || !lb.th ||
        !lb.g || !lb.th2 || !lb.g2 || !lb.dir || !lb.S || !lb.Y || !lb.rho || !lb.alpha) {
        st = vlm_errorf(err, VLM_ERR_OOM, "logreg: out of memory (%lld x %d features)", (long long)n, d);
        goto done;
    }
    if ((st = standardise(m, X, n, d, Z, err))) goto done;
    p.Z = Z;
    for (int64_t i = 0; i < NP; i++) lb.th[i] = 0;
    if (init) {
        for (int64_t i = 0; i < P; i++) lb.th[i] = init->W[i];
        for (int k = 0; k < K; k++) lb.th[P + k] = init->b[k];
    }
    lbfgs_run(&p, &lb, &o, m);
    for (int64_t i = 0; i < P; i++) m->W[i] = (float)lb.th[i];
    for (int k = 0; k < K; k++) m->b[k] = (float)lb.th[P + k];
done:
    free(Z); free(p.Wf); free(p.bf); free(p.gpart); free(p.bpart); free(p.lpart);
    free(lb.th); free(lb.g); free(lb.th2); free(lb.g2); free(lb.dir); free(lb.S); free(lb.Y); free(lb.rho);
    free(lb.alpha);
    if (st) vlm_logreg_free(m);
    return st;
}

void vlm_logreg_predict(const vlm_logreg *m, const float *X, int64_t n, float *logits) {
    const int d = m->d, K = m->K;
#pragma omp parallel
    {
        float *z = malloc(sizeof(float) * (size_t)d);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (!z) continue;
            for (int j = 0; j < d; j++) z[j] = (X[i * d + j] - m->mean[j]) / m->std[j];
            for (int k = 0; k < K; k++) logits[i * K + k] = dotf(m->W + (int64_t)k * d, z, d) + m->b[k];
        }
        free(z);
    }
}


void vlm_linprobe_opts_default(vlm_linprobe_opts *o) {
    o->val_fraction = 0.2;
    o->seed = 0;
    o->c_min = 1e-4;
    o->c_max = 1e4;
    o->c_steps = 9;
    o->refine = 2;
    vlm_logreg_opts_default(&o->lr);
}

static vlm_status logreg_copy(vlm_logreg *dst, const vlm_logreg *src, vlm_error *err) {
    *dst = *src;
    dst->mean = malloc(sizeof(float) * (size_t)src->d);
    dst->std = malloc(sizeof(float) * (size_t)src->d);
    dst->W = malloc(sizeof(float) * (size_t)src->d * src->K);
    dst->b = malloc(sizeof(float) * (size_t)src->K);
    if (!dst->mean || !dst->std || !dst->W || !dst->b) {
        vlm_logreg_free(dst);
        return vlm_errorf(err, VLM_ERR_OOM, "logreg: out of memory");
    }
    memcpy(dst->mean, src->mean, sizeof(float) * (size_t)src->d);
    memcpy(dst->std, src->std, sizeof(float) * (size_t)src->d);
    memcpy(dst->W, src->W, sizeof(float) * (size_t)src->d * src->K);
    memcpy(dst->b, src->b, sizeof(float) * (size_t)src->K);
    return VLM_OK;
}

static double accuracy(const vlm_logreg *m, const float *X, const int32_t *y, int64_t n, float *logits) {
    vlm_logreg_predict(m, X, n, logits);
    int64_t t1;
    vlm_topk_count(logits, y, n, m->K, &t1, NULL);
    return n ? (double)t1 / (double)n : 0;
}

typedef void (*probe_progress)(void *ud, double C, double val_top1, const vlm_logreg *m);

// The sweep's data: fit rows Xf [nfit, d], yf and validation rows Xv [nval, d], yv
// (a seeded split of the training set), a logits scratch and the progress callback.
typedef struct {
    float *Xf, *Xv;
    int32_t *yf, *yv;
    int64_t nfit, nval;
    int d, K;
    float *logits; // [max(nval, nte), K]
    probe_progress progress;
    void *ud;
} probe_split;

// Split: a seeded permutation of the ntr rows; the first nval are the validation set.
static void split_rows(probe_split *ps, const float *Xtr, const int32_t *ytr, int64_t ntr, uint64_t seed,
                       uint32_t *perm) {
    const int d = ps->d;
    for (int64_t i = 0; i < ntr; i++) perm[i] = (uint32_t)i;
    vlm_rng rng;
    vlm_rng_init(&rng, seed, VLM_RNG_DATA, 0x11e7);
    vlm_rng_shuffle_u32(&rng, perm, (uint64_t)ntr);
    for (int64_t i = 0; i < ps->nval; i++) {
        memcpy(ps->Xv + i * d, Xtr + (int64_t)perm[i] * d, sizeof(float) * (size_t)d);
        ps->yv[i] = ytr[perm[i]];
    }
    for (int64_t i = 0; i < ps->nfit; i++) {
        memcpy(ps->Xf + i * d, Xtr + (int64_t)perm[ps->nval + i] * d, sizeof(float) * (size_t)d);
        ps->yf[i] = ytr[perm[ps->nval + i]];
    }
}

// One point of the sweep: fits at C (warm start init, may be NULL) on the fit
// rows into *cur, its validation top-1 into *acc, logged in r and reported.
static vlm_status sweep_point(const probe_split *ps, const vlm_linprobe_opts *o, double C, const vlm_logreg *init,
                              vlm_logreg *cur, double *acc, vlm_linprobe_result *r, vlm_error *err) {
    vlm_status st = vlm_logreg_fit(cur, ps->Xf, ps->yf, ps->nfit, ps->d, ps->K, C, &o->lr, init, err);
    if (st) return st;
    *acc = accuracy(cur, ps->Xv, ps->yv, ps->nval, ps->logits);
    r->sweep_C[r->n_sweep] = C;
    r->sweep_val_top1[r->n_sweep++] = *acc;
    if (ps->progress) ps->progress(ps->ud, C, *acc, cur);
    return VLM_OK;
}

// Top-1 and top-5 of the final model on the test rows Xte [nte, d] into r.
static vlm_status score_test(const vlm_logreg *fin, const float *Xte, const int32_t *yte, int64_t nte, int K,
                             float *logits, vlm_linprobe_result *r, vlm_error *err) {
    for (int64_t i = 0; i < nte; i++)
        if (yte[i] < 0 || yte[i] >= K)
            return vlm_errorf(err, VLM_ERR_ARG, "linprobe: test label %d of row %lld is outside [0, %d)", yte[i],
                              (long long)i, K);
    vlm_logreg_predict(fin, Xte, nte, logits);
    int64_t t1, t5;
    vlm_topk_count(logits, yte, nte, K, &t1, &t5);
    r->n_test = nte;
    r->test_top1 = (double)t1 / (double)nte;
    r->test_top5 = (double)t5 / (double)nte;
    return VLM_OK;
}

vlm_status vlm_linprobe_run(const float *Xtr, const int32_t *ytr, int64_t ntr, const float *Xte, const int32_t *yte,
                            int64_t nte, int d, int K, const vlm_linprobe_opts *o, vlm_linprobe_result *r,
                            void (*progress)(void *ud, double C, double val_top1, const vlm_logreg *m), void *ud,
                            vlm_error *err) {
    memset(r, 0, sizeof *r);
    if (!(o->val_fraction > 0 && o->val_fraction < 1) || !(o->c_min > 0) || !(o->c_max >= o->c_min) || o->c_steps < 1 ||
        o->refine < 0 || o->c_steps + 2 * o->refine > VLM_LINPROBE_MAX_SWEEP)
        return vlm_errorf(err, VLM_ERR_ARG, "linprobe: bad sweep settings (val fraction %g, C %g..%g, %d steps, %d refinements)",
                          o->val_fraction, o->c_min, o->c_max, o->c_steps, o->refine);
    int64_t nval = (int64_t)floor((double)ntr * o->val_fraction), nfit = ntr - nval;
    if (nval < 1 || nfit < 2 || ntr > (int64_t)UINT32_MAX)
        return vlm_errorf(err, VLM_ERR_ARG, "linprobe: %lld training samples cannot be split %g for validation",
                          (long long)ntr, o->val_fraction);
    probe_split ps = {.nfit = nfit, .nval = nval, .d = d, .K = K, .progress = progress, .ud = ud};
    uint32_t *perm = malloc(sizeof(uint32_t) * (size_t)ntr);
    ps.Xf = malloc(sizeof(float) * (size_t)(nfit * d)), ps.Xv = malloc(sizeof(float) * (size_t)(nval * d));
    ps.yf = malloc(sizeof(int32_t) * (size_t)nfit), ps.yv = malloc(sizeof(int32_t) * (size_t)nval);
    int64_t nl = nval > nte ? nval : nte;
    ps.logits = malloc(sizeof(float) * (size_t)((nl ? nl : 1) * K));
    vlm_logreg best = {0}, cur = {0}, prev = {0}, fin = {0};
    vlm_status st = VLM_OK;
    if (!perm || !ps.Xf || !ps.Xv || !ps.yf || !ps.yv || !ps.logits) {
        st = vlm_errorf(err, VLM_ERR_OOM, "linprobe: out of memory");
        goto done;
    }
    split_rows(&ps, Xtr, ytr, ntr, o->seed, perm);
    r->n_train = nfit;
    r->n_val = nval;
    // Coarse sweep in increasing C, each fit warm-started from the previous one.
    double lo = log10(o->c_min), hi = log10(o->c_max), acc;
    int best_i = -1;
    for (int s = 0; s < o->c_steps; s++) {
        double C = pow(10.0, o->c_steps == 1 ? lo : lo + (hi - lo) * s / (o->c_steps - 1));
        if ((st = sweep_point(&ps, o, C, prev.W ? &prev : NULL, &cur, &acc, r, err))) goto done;
        if (best_i < 0 || acc > r->best_val_top1) {
            best_i = s;
            r->best_val_top1 = acc;
            r->best_C = C;
            vlm_logreg_free(&best);
            if ((st = logreg_copy(&best, &cur, err))) goto done;
        }
        vlm_logreg_free(&prev);
        prev = cur;
        memset(&cur, 0, sizeof cur);
    }
    // Refinement: bisect in log space around the best C (half a step, then a quarter, ...).
    double half = o->c_steps > 1 ? (hi - lo) / (o->c_steps - 1) / 2 : 0.5;
    for (int rd = 0; rd < o->refine; rd++, half /= 2) {
        double centre = log10(r->best_C);
        for (int side = -1; side <= 1; side += 2) {
            double C = pow(10.0, centre + side * half);
            if ((st = sweep_point(&ps, o, C, &best, &cur, &acc, r, err))) goto done;
            if (acc > r->best_val_top1) {
                r->best_val_top1 = acc;
                r->best_C = C;
                vlm_logreg_free(&best);
                best = cur;
                memset(&cur, 0, sizeof cur);
            } else
                vlm_logreg_free(&cur);
        }
    }
    // Refit on train + val with the best C and test.
    if ((st = vlm_logreg_fit(&fin, Xtr, ytr, ntr, d, K, r->best_C, &o->lr, &best, err))) goto done;
    r->final_iters = fin.iters;
    r->final_converged = fin.converged;
    if (nte > 0) st = score_test(&fin, Xte, yte, nte, K, ps.logits, r, err);
done:
    vlm_logreg_free(&best);
    vlm_logreg_free(&cur);
    vlm_logreg_free(&prev);
    vlm_logreg_free(&fin);
    free(perm); free(ps.Xf); free(ps.Xv); free(ps.yf); free(ps.yv); free(ps.logits);
    return st;
}
