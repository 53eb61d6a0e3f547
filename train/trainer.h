// The training loop as a library: one loop for every trainer (pretrain,
// finetune, detect train, generate train, and those to come). The loop owns
// the run folder and metrics.jsonl, the progress line with its ETA, the
// training state (optimizer step, loader position, the dropout stream, the
// clock) and resume, the time budget and LR schedule, stop requests, the
// non-finite stop, checkpoint cadence and retention, validation cadence,
// loss/LR/validation plots, and the data-parallel step end (gradient
// averaging and its overlap; one loss, stop and clock for every rank). A task
// supplies its step (forward + backward), its file formats and its
// evaluation through vlm_task.
//
//   vlm_trainer_init(&t, &cfg)           run folder, resolves --resume
//   ... build the model (from t.run.resume when resuming, if it needs to)
//   vlm_trainer_begin(&t, ps, ctx, ...)  optimizer, state restore, param sync
//   ... open the data at t.st.loader_epoch / loader_index, set t.cfg.total_steps
//   vlm_trainer_run(&t)                  the loop
//   vlm_trainer_free(&t)
//
// The library prints nothing: messages and progress lines go to cfg.log.
#ifndef VLM_TRAIN_TRAINER_H
#define VLM_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include "core/optim.h"
#include "core/state.h"
#include "data/loader.h"
#include "train/run.h"

typedef struct vlm_trainer vlm_trainer;

typedef struct {
    // Forward and backward of this rank's share of step t->st.step, gradients
    // into the store (zeroed before the call); *loss: this rank's mean loss.
    // Sets t->batch_epoch (the epoch the batch came from) and t->next (this
    // rank's position of its next sample).
    vlm_status (*step)(void *task, vlm_trainer *t, double *loss, vlm_error *err);
    // Restores the parameters, moments and *st from a training-state file.
    vlm_status (*load)(void *task, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err);
    // Writes t->run.state (with t->st) and t->run.model; rank 0 only.
    vlm_status (*save)(void *task, vlm_trainer *t, vlm_error *err);
    // After the optimizer update (EMA, clamping); NULL: nothing.
    void (*after_update)(void *task, vlm_trainer *t);
    // Extra fields of a progress line (" | acc 0.912") and of its metrics
    // record (", \"train_acc\": 0.912"), called at every logged step; the task
    // resets what it accumulates over the interval. NULL: none.
    void (*log_fields)(void *task, vlm_trainer *t, char *text, size_t tcap, char *json, size_t jcap);
    // Validation on rank 0 (NULL: none): a line to print and the fields of
    // the metrics record; *value is the metric plotted in val.png.
    vlm_status (*validate)(void *task, vlm_trainer *t, char *line, size_t lcap, char *json, size_t jcap, double *value,
                           vlm_error *err);
    // A model file for the end of epoch `epoch` (epoch_N files; NULL: none).
    vlm_status (*save_epoch)(void *task, vlm_trainer *t, const char *path, int64_t epoch, vlm_error *err);
} vlm_task;

// Where messages go: progress = 1 for the per-step progress line (a terminal
// may overwrite it in place), 0 for whole messages.
typedef void (*vlm_train_log_fn)(void *user, int progress, const char *line);

typedef struct {
    const char *tag;           // message prefix, e.g. "pretrain"
    const char *unit;          // samples in the throughput: "pairs" | "img"
    const char *val_name;      // label of the plotted validation metric (e.g. "val top-1")
    // run folder
    const char *logs, *name, *resume; // resume: NULL, "latest" or a state file
    // length and budget
    int64_t total_steps;       // set before vlm_trainer_run
    int64_t batch;             // samples per step on this rank (all micro-batches)
    int64_t epoch_size;        // samples per epoch on this rank (for the epoch end)
    double max_minutes;        // 0: no time budget
    int64_t stop_at;           // stop cleanly at this step (0: never), schedule unchanged
    int64_t debug_nan_after;   // testing: the step after this many completed ones has a NaN loss (-1: never)
    // optimisation
    vlm_adamw_cfg adamw;
    vlm_sched sched;           // .total is set to total_steps by vlm_trainer_run
    int time_schedule;         // cosine over the fraction of the time budget used
    int precision;             // vlm_precision: bf16 rounds the weights after every update
    double clip_norm;          // 0: no clipping
    const int *groups;         // per-parameter LR group (NULL: one group)
    const float *group_scale;  // [n_groups] LR multipliers
    int n_groups;
    // cadence
    int64_t log_every, save_every;
    int save_at_epoch_end;     // also save the state at every epoch end
    int64_t save_frequency;    // epoch_N model files every E epochs (0: none) ...
    int64_t keep;              // ... keeping the newest K
    int64_t val_every_epochs;  // validation at epoch ends (0: at the end only)
    int log_mean_loss;         // log the interval's mean loss (else the last step's)
    // reporting and control
    vlm_train_log_fn log;      // NULL: silent
    void *log_user;
    const volatile sig_atomic_t *stop_flag; // set asynchronously (a signal): stop cleanly
    void (*before_step)(void *user, int64_t step); // test hook (fault injection); NULL: none
    void *hook_user;
    vlm_dist *dist;            // NULL: a world of 1
    int64_t overlap_early;     // > 0: floats [0, early) are reduced during backward (vlm_grad_overlap)
} vlm_trainer_cfg;

// The options every trainer shares (the CLI's common flag table fills them).
typedef struct {
    const char *logs, *name, *resume; // run folder; resume: NULL, "latest" or a state file
    long long seed, batch, epochs, max_steps, warmup, save_every, log_every, stop_at, workers;
    double lr, wd, beta1, beta2, eps, clip_norm, max_minutes;
    const char *lr_scheduler;         // cosine | const | const-cooldown
    int time_schedule;
    int precision;                    // vlm_precision (core/bf16.h): fp32 | amp_bf16 | bf16
    long long debug_nan_after;        // testing (--debug-fault nan:RANK:STEP): NaN loss after STEP steps; -1 off
    // reporting and control (not flags)
    vlm_train_log_fn log;
    void *log_user;
    const volatile sig_atomic_t *stop_flag;
    void (*before_step)(void *user, int64_t step);
    void *hook_user;
    vlm_dist *dist;
} vlm_train_common;

// Train-time image augmentation (data/transform.h's train fields), shared by
// pretrain and finetune: RandomResizedCrop area and aspect ranges, flip,
// colour jitter (probability and B,C,S,H strengths), grayscale.
typedef struct {
    double scale[2], ratio[2], hflip, jitter, cj[4], gray;
} vlm_train_aug;
// open_clip's train defaults: scale 0.9..1, ratio 3/4..4/3, no flip, jitter
// or grayscale (jitter strengths 0.4,0.4,0.4,0.1 when it is on).
void vlm_train_aug_default(vlm_train_aug *a);
vlm_status vlm_train_aug_check(const vlm_train_aug *a, vlm_error *err);
void vlm_train_aug_apply(const vlm_train_aug *a, vlm_transform *t);

// Defaults shared by the trainers: logs ./logs, seed 0, 2 workers, betas
// 0.9/0.999, eps 1e-8, grad clip 1, cosine schedule, log every 20, save
// every 500; each trainer then sets its own batch, epochs, lr, wd, warmup.
void vlm_train_common_default(vlm_train_common *c);
// Checks the shared options (schedule name, --time-schedule needs a budget).
vlm_status vlm_train_common_check(const vlm_train_common *c, vlm_error *err);
// The trainer configuration these options give (tag and unit as named;
// steps, batch and epoch size are the task's to set).
void vlm_train_common_cfg(const vlm_train_common *c, const char *tag, const char *unit, const char *name,
                          vlm_trainer_cfg *cfg);

// Defaults: log every 10, save every 200, keep 3, world of 1, no budget.
void vlm_trainer_cfg_default(vlm_trainer_cfg *c);

struct vlm_trainer {
    vlm_trainer_cfg cfg;
    vlm_run run;
    vlm_train_state st;        // the state of the step about to run
    vlm_adamw opt;
    vlm_params *ps;
    vlm_ctx *ctx;              // the step context (its dropout stream is saved; may be NULL)
    vlm_dist *dist, solo;      // dist: cfg.dist or solo (a world of 1)
    int rank, world, io;       // io: this rank writes files and logs
    vlm_grad_overlap overlap;  // a task's step sets overlap.boundary (cfg.overlap_early > 0)
    int64_t overlapped_steps;
    // set by the task's step
    int64_t batch_epoch;
    vlm_loader_pos next;
    // the loop's view
    float lr, loss;            // last step's
    float grad_norm;           // last step's global gradient norm before clipping
    int64_t cur_epoch;
    double t_start;            // clock origin: now - elapsed training time
    const char *stop_reason;
    int validated;             // a validation ran in this process
    FILE *metrics;
    // curves for the plots: steps, loss, lr; validation points
    double *cx, *cy, *clr, *vx, *vy;
    int64_t cn, ccap, vn, vcap;
    // internal
    const vlm_task *task;
    void *task_user;
    double t_last, loss_acc;
    int64_t since, loss_n;
    uint8_t *frozen_saved;
};

// Sets up the run folder (rank 0 creates it) and resolves cfg.resume into
// t->run.resume. Nothing else is allocated yet.
vlm_status vlm_trainer_init(vlm_trainer *t, const vlm_trainer_cfg *cfg, vlm_error *err);
// The optimizer over ps (moments allocated), the resumed state through
// task->load (optimizer step and dropout stream restored, the world checked),
// rank 0's parameters on every rank, metrics.jsonl opened and the curves of a
// resumed run reloaded from it. ctx may be NULL.
vlm_status vlm_trainer_begin(vlm_trainer *t, vlm_params *ps, vlm_ctx *ctx, const vlm_task *task, void *task_user,
                             vlm_error *err);
// The loop, until total_steps, the time budget, stop_at or a stop request.
// A non-finite loss or gradient stops with VLM_ERR_NUMERIC (the last good
// state stays on disk; the message names it).
vlm_status vlm_trainer_run(vlm_trainer *t, vlm_error *err);
// A message through cfg.log (printf-style; nothing when log is NULL).
void vlm_trainer_logf(const vlm_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Writes loss.png, lr.png and (with validation points) val.png in the run folder.
vlm_status vlm_trainer_plot(const vlm_trainer *t, vlm_error *err);
void vlm_trainer_free(vlm_trainer *t);

#endif
