// A training run's folder and the data-parallel step end: the pieces every
// trainer shares below the loop itself (train/trainer.h).
#ifndef VLM_TRAIN_RUN_H
#define VLM_TRAIN_RUN_H

#include <stdint.h>
#include <stdio.h>
#include "core/dist.h"
#include "core/error.h"
#include "core/tensor.h"

// "1h02m" / "3m05s" / "12s" (negative or non-finite: "0s").
void vlm_train_fmt_duration(double s, char *buf, int n);
// mkdir -p
vlm_status vlm_mkdirs(const char *path, vlm_error *err);

// A run's folder LOGS/NAME: checkpoints/ (the latest model and training state,
// written atomically), metrics.jsonl, plots, and the state --resume names
// ("" for a fresh run).
typedef struct {
    char dir[1024], ckdir[1100], model[1300], state[1300], metrics[1200], resume[1300];
} vlm_run;
// Fills the paths; on the writing rank (io) creates checkpoints/ and removes
// the temp files a killed run left there; resolves resume (NULL: a fresh run,
// "latest": this run's state, else a state file), which must exist.
vlm_status vlm_run_init(vlm_run *r, const char *logs, const char *name, const char *resume, int io, vlm_error *err);
// Opens metrics.jsonl: appended to when resuming, truncated otherwise.
vlm_status vlm_run_open_metrics(const vlm_run *r, FILE **f, vlm_error *err);
// dir/name into out.
void vlm_run_path(const vlm_run *r, const char *name, char *out, size_t cap);

// ---- the data-parallel step end (mpirun; see core/dist.h) ----
// Overlap of communication with backward for a model whose parameters
// [0, early) receive their last gradient before the rest (CLIP's text tower,
// registered first, encoded after the image tower): set `boundary` to the tape
// before the early part's forward (c->tape) each step and install
// vlm_grad_overlap_hook as the context's backward hook; when backward reaches
// the boundary the prefix's allreduce starts and runs while the remaining
// backward computes.
typedef struct {
    vlm_dist *d;
    vlm_params *ps;
    int64_t early;        // floats in the prefix
    const void *boundary; // the node before the early part's first node
    int started;          // this step's prefix reduction is in flight
    vlm_status st;
    vlm_error err;
} vlm_grad_overlap;
void vlm_grad_overlap_hook(void *user, const vlm_node *next);
// Every rank starts from rank 0's parameters.
vlm_status vlm_dist_sync_params(vlm_dist *d, vlm_params *ps, vlm_error *err);
// The end of a data-parallel step, after backward: the global batch's
// gradient (ps->grad summed over ranks by a bucketed allreduce, divided by the
// world size, since each rank's loss is a mean over its own equal share of the
// batch; reduced_prefix: the first floats whose allreduce a vlm_grad_overlap
// already started during backward, 0 if none), then one small allreduce on
// which every rank agrees: *loss (in: this rank's) becomes the mean over
// ranks, *stop (in: this rank's wish, a signal or its own stop condition) is
// set everywhere if any rank set it, and *elapsed (out) is rank 0's seconds
// since t_start, so time budgets and time-based schedules cannot differ
// between ranks. A world of 1: the gradient and loss unchanged, *elapsed this
// process's clock.
vlm_status vlm_dist_step_end(vlm_dist *d, vlm_params *ps, int64_t reduced_prefix, double t_start, double *loss,
                             int *stop, double *elapsed, vlm_error *err);
// A resumed state must fit this world: the same global batch (per-rank batch
// x world size; older files record none) and a stream position every rank
// can start from (a multiple of the world size).
vlm_status vlm_dist_check_resume(const vlm_dist *d, int64_t global_batch_saved, int64_t loader_index,
                                 int64_t per_rank_batch, const char *path, vlm_error *err);

#endif
