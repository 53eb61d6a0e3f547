// Linear probe: multinomial logistic regression on frozen features, trained
// full-batch with L-BFGS on standardised features, and the CLIP paper's
// protocol around it (log-spaced sweep of the L2 strength C on a validation
// split carved from the training set, refit on train+val with the best C,
// test accuracy). Everything is deterministic: the loss and gradient are
// summed over a fixed partition of the rows in a fixed order, whatever the
// thread count.
#ifndef VLM_EVAL_LINPROBE_H
#define VLM_EVAL_LINPROBE_H

#include <stdint.h>
#include "core/error.h"

// Objective (sklearn's LogisticRegression(C) divided by C * n):
//   f(W, b) = (1/n) sum_i CE(softmax(W z_i + b), y_i) + ||W||^2 / (2 C n)
// with z = (x - mean) / std (std floored at 1e-6; statistics of the fit set);
// the bias is not penalised.
typedef struct {
    int max_iter;    // L-BFGS iterations (default 1000)
    int history;     // L-BFGS memory (default 10)
    double gtol;     // stop when max |grad| <= gtol (default 1e-5)
    double ftol;     // ... or when f decreases by less than ftol * max(1, |f|) (default 1e-10)
} vlm_logreg_opts;

typedef struct {
    int d, K;
    float *mean, *std; // [d] standardisation
    float *W;          // [K, d] on standardised features
    float *b;          // [K]
    double C, loss;    // final objective value
    int iters, evals;
    int converged;     // 1: gtol/ftol reached, 0: max_iter
} vlm_logreg;

void vlm_logreg_opts_default(vlm_logreg_opts *o);
// X: [n, d] row-major, y: n labels in [0, K). init (may be NULL): warm start
// from another model with the same d, K (its W and b; its standardisation is
// ignored). m is allocated here; free with vlm_logreg_free.
vlm_status vlm_logreg_fit(vlm_logreg *m, const float *X, const int32_t *y, int64_t n, int d, int K, double C,
                          const vlm_logreg_opts *o, const vlm_logreg *init, vlm_error *err);
// logits [n, K] for raw (unstandardised) features X [n, d].
void vlm_logreg_predict(const vlm_logreg *m, const float *X, int64_t n, float *logits);
void vlm_logreg_free(vlm_logreg *m);


#define VLM_LINPROBE_MAX_SWEEP 64

typedef struct {
    double val_fraction;  // training samples held out for the sweep (default 0.2)
    uint64_t seed;        // split permutation (default 0)
    double c_min, c_max;  // sweep range (default 1e-4 .. 1e4)
    int c_steps;          // log-spaced values in the range (default 9: one per decade)
    int refine;           // bisection rounds around the best C (default 2: half, then quarter decade)
    vlm_logreg_opts lr;
} vlm_linprobe_opts;

typedef struct {
    int n_sweep;
    double sweep_C[VLM_LINPROBE_MAX_SWEEP], sweep_val_top1[VLM_LINPROBE_MAX_SWEEP];
    double best_C, best_val_top1;
    int64_t n_train, n_val;  // split sizes
    int64_t n_test;
    double test_top1, test_top5;
    int final_iters, final_converged;
} vlm_linprobe_result;

void vlm_linprobe_opts_default(vlm_linprobe_opts *o);
// Sweep on a split of (Xtr, ytr), refit on all of it with the best C,
// evaluate on (Xte, yte). progress (may be NULL) is called after each fit.
vlm_status vlm_linprobe_run(const float *Xtr, const int32_t *ytr, int64_t ntr, const float *Xte, const int32_t *yte,
                            int64_t nte, int d, int K, const vlm_linprobe_opts *o, vlm_linprobe_result *r,
                            void (*progress)(void *ud, double C, double val_top1, const vlm_logreg *m), void *ud,
                            vlm_error *err);

#endif
