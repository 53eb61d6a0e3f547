// The training loop shared by every trainer (see trainer.h).
#include "core/bf16.h"
#include "train/trainer.h"
#include "core/clock.h"
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "train/plot.h"

void vlm_trainer_cfg_default(vlm_trainer_cfg *c) {
    memset(c, 0, sizeof *c);
    c->tag = "train";
    c->unit = "img";
    c->val_name = "validation";
    c->logs = "./logs";
    c->log_every = 10;
    c->save_every = 200;
    c->keep = 3;
    c->debug_nan_after = -1;
    c->adamw = (vlm_adamw_cfg){1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    c->sched = (vlm_sched){VLM_SCHED_COSINE, 1e-3f, 0, 1, 0, 1.0f, 0.0f};
}

void vlm_train_aug_default(vlm_train_aug *a) {
    memset(a, 0, sizeof *a);
    a->scale[0] = 0.9, a->scale[1] = 1.0, a->ratio[0] = 3.0 / 4.0, a->ratio[1] = 4.0 / 3.0;
    a->cj[0] = a->cj[1] = a->cj[2] = 0.4, a->cj[3] = 0.1;
}

vlm_status vlm_train_aug_check(const vlm_train_aug *a, vlm_error *err) {
    if (a->scale[0] > a->scale[1] || a->ratio[0] > a->ratio[1])
        return vlm_errorf(err, VLM_ERR_ARG, "--aug-scale / --aug-ratio: LO must not exceed HI");
    return VLM_OK;
}

void vlm_train_aug_apply(const vlm_train_aug *a, vlm_transform *t) {
    t->scale_min = (float)a->scale[0], t->scale_max = (float)a->scale[1];
    t->ratio_min = (float)a->ratio[0], t->ratio_max = (float)a->ratio[1];
    t->hflip_prob = (float)a->hflip, t->jitter_prob = (float)a->jitter, t->gray_prob = (float)a->gray;
    t->brightness = (float)a->cj[0], t->contrast = (float)a->cj[1], t->saturation = (float)a->cj[2], t->hue = (float)a->cj[3];
}

void vlm_train_common_default(vlm_train_common *c) {
    memset(c, 0, sizeof *c);
    c->logs = "./logs";
    c->workers = 2;
    c->batch = 64;
    c->epochs = 1;
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->clip_norm = 1.0;
    c->lr_scheduler = "cosine";
    c->debug_nan_after = -1;
    c->log_every = 20;
    c->save_every = 500;
}

vlm_status vlm_train_common_check(const vlm_train_common *c, vlm_error *err) {
    vlm_sched_kind k;
    if (vlm_sched_parse(c->lr_scheduler, &k))
        return vlm_errorf(err, VLM_ERR_ARG, "--lr-scheduler must be cosine, const or const-cooldown, not '%s'",
                          c->lr_scheduler);
    if (c->time_schedule && !(c->max_minutes > 0))
        return vlm_errorf(err, VLM_ERR_ARG, "--time-schedule needs --max-minutes");
    return VLM_OK;
}

void vlm_train_common_cfg(const vlm_train_common *c, const char *tag, const char *unit, const char *name,
                          vlm_trainer_cfg *cfg) {
    vlm_trainer_cfg_default(cfg);
    cfg->tag = tag;
    cfg->unit = unit;
    cfg->logs = c->logs;
    cfg->name = name;
    cfg->resume = c->resume;
    cfg->batch = c->batch;
    cfg->max_minutes = c->max_minutes;
    cfg->stop_at = c->stop_at;
    cfg->adamw = (vlm_adamw_cfg){(float)c->lr, (float)c->beta1, (float)c->beta2, (float)c->eps, (float)c->wd};
    cfg->sched = (vlm_sched){VLM_SCHED_COSINE, (float)c->lr, c->warmup, 1, 0, 1.0f, 0.0f};
    vlm_sched_parse(c->lr_scheduler, &cfg->sched.kind);
    cfg->time_schedule = c->time_schedule;
    cfg->precision = c->precision;
    cfg->debug_nan_after = c->debug_nan_after;
    cfg->clip_norm = c->clip_norm;
    cfg->log_every = c->log_every;
    cfg->save_every = c->save_every;
    cfg->log = c->log;
    cfg->log_user = c->log_user;
    cfg->stop_flag = c->stop_flag;
    cfg->before_step = c->before_step;
    cfg->hook_user = c->hook_user;
    cfg->dist = c->dist;
}

void vlm_trainer_logf(const vlm_trainer *t, const char *fmt, ...) {
    if (!t->cfg.log || !t->io) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->cfg.log(t->cfg.log_user, 0, line);
}

vlm_status vlm_trainer_init(vlm_trainer *t, const vlm_trainer_cfg *cfg_in, vlm_error *err) {
    const vlm_trainer_cfg copy = *cfg_in, *cfg = &copy; // cfg_in may be &t->cfg
    memset(t, 0, sizeof *t);
    t->cfg = copy;
    t->solo.world = 1;
    t->dist = cfg->dist ? cfg->dist : &t->solo;
    t->rank = t->dist->rank;
    t->world = t->dist->world;
    t->io = t->rank == 0;
    t->stop_reason = "done";
    if (!cfg->name || !cfg->name[0]) return vlm_errorf(err, VLM_ERR_ARG, "%s: the run needs a name", cfg->tag);
    return vlm_run_init(&t->run, cfg->logs, cfg->name, cfg->resume, t->io, err);
}

// Appends (x, y) to a curve, growing it by doubling.
static void curve_push(double **x, double **y, double **y2, int64_t *n, int64_t *cap, double xv, double yv, double y2v) {
    if (*n == *cap) {
        int64_t nc = *cap ? 2 * *cap : 1024;
        double *nx = realloc(*x, sizeof(double) * (size_t)nc);
        if (nx) *x = nx;
        double *ny = nx ? realloc(*y, sizeof(double) * (size_t)nc) : NULL;
        if (ny) *y = ny;
        double *n2 = ny && y2 ? realloc(*y2, sizeof(double) * (size_t)nc) : NULL;
        if (n2) *y2 = n2;
        if (!nx || !ny || (y2 && !n2)) return; // out of memory: the plot just stops growing
        *cap = nc;
    }
    (*x)[*n] = xv;
    (*y)[*n] = yv;
    if (y2) (*y2)[*n] = y2v;
    (*n)++;
}

// The curves of a resumed run, from its metrics log up to the resumed step.
static void reload_curves(vlm_trainer *t) {
    FILE *mf = fopen(t->run.metrics, "r");
    char line[4096];
    while (mf && fgets(line, sizeof line, mf)) {
        long long stp;
        double v, lr = NAN;
        char *ps = strstr(line, "\"step\": "), *pl = strstr(line, "\"loss\": "), *pr = strstr(line, "\"lr\": ");
        if (!ps || sscanf(ps + 8, "%lld", &stp) != 1 || stp > t->st.step) continue;
        if (pl && sscanf(pl + 8, "%lf", &v) == 1) {
            if (pr) sscanf(pr + 6, "%lf", &lr);
            curve_push(&t->cx, &t->cy, &t->clr, &t->cn, &t->ccap, (double)stp, v, lr);
        }
        char *pv = strstr(line, "\"val_metric\": ");
        if (pv && sscanf(pv + 14, "%lf", &v) == 1) curve_push(&t->vx, &t->vy, NULL, &t->vn, &t->vcap, (double)stp, v, 0);
    }
    if (mf) fclose(mf);
}

vlm_status vlm_trainer_begin(vlm_trainer *t, vlm_params *ps, vlm_ctx *ctx, const vlm_task *task, void *task_user,
                             vlm_error *err) {
    t->ps = ps;
    t->ctx = ctx;
    t->task = task;
    t->task_user = task_user;
    vlm_status st = vlm_adamw_init(&t->opt, ps, t->cfg.adamw, err);
    if (st) return st;
    if (t->cfg.groups && !(t->frozen_saved = malloc((size_t)ps->n)))
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", t->cfg.tag);
    memset(&t->st, 0, sizeof t->st);
    if (t->run.resume[0]) {
        if ((st = task->load(task_user, t, t->run.resume, &t->st, err))) return st;
        t->opt.step = t->st.adam_step;
        if (ctx) vlm_train_state_get_rng(&t->st, &ctx->dropout_rng);
        if ((st = vlm_dist_check_resume(t->dist, t->st.global_batch, t->st.loader_index, t->cfg.batch, t->run.resume,
                                        err)))
            return st;
        vlm_trainer_logf(t, "%s: resumed from %s at step %" PRId64 " (epoch %" PRId64 ", sample %" PRId64 ")", t->cfg.tag,
                         t->run.resume, t->st.step, t->st.loader_epoch, t->st.loader_index);
    }
    if ((st = vlm_dist_sync_params(t->dist, ps, err))) return st;
    if (t->io && (st = vlm_run_open_metrics(&t->run, &t->metrics, err))) return st;
    if (t->io && t->run.resume[0]) reload_curves(t);
    t->cur_epoch = t->st.loader_epoch;
    t->loss = t->st.last_loss;
    return VLM_OK;
}

vlm_status vlm_trainer_plot(const vlm_trainer *t, vlm_error *err) {
    if (t->cn < 2) return VLM_OK;
    char path[1400];
    vlm_plot_series s = {t->cx, t->cy, (int)t->cn, "loss"};
    vlm_plot_opts o = {NULL, "step", "loss", 640, 360, 0};
    char title[256];
    snprintf(title, sizeof title, "%s: training loss", t->cfg.tag);
    o.title = title;
    vlm_run_path(&t->run, "loss.png", path, sizeof path);
    vlm_status st = vlm_plot_lines_png(path, &s, 1, &o, err);
    if (st) return st;
    s = (vlm_plot_series){t->cx, t->clr, (int)t->cn, "lr"};
    snprintf(title, sizeof title, "%s: learning rate", t->cfg.tag);
    o.ylabel = "learning rate";
    vlm_run_path(&t->run, "lr.png", path, sizeof path);
    if ((st = vlm_plot_lines_png(path, &s, 1, &o, err))) return st;
    if (t->vn < 1) return VLM_OK;
    s = (vlm_plot_series){t->vx, t->vy, (int)t->vn, t->cfg.val_name};
    snprintf(title, sizeof title, "%s: %s", t->cfg.tag, t->cfg.val_name);
    o.ylabel = t->cfg.val_name;
    vlm_run_path(&t->run, "val.png", path, sizeof path);
    return vlm_plot_lines_png(path, &s, 1, &o, err);
}

// One optimizer update at this step's LR (per-group LRs when configured).
static void update(vlm_trainer *t, double clock_s) {
    const vlm_trainer_cfg *c = &t->cfg;
    double budget = c->max_minutes * 60.0;
    t->lr = vlm_sched_lr_at(&c->sched, t->st.step, c->time_schedule, budget > 0 ? clock_s / budget : 0);
    if (c->groups) vlm_adamw_step_groups(&t->opt, t->ps, c->groups, c->group_scale, c->n_groups, t->lr, t->frozen_saved);
    else vlm_adamw_step(&t->opt, t->ps, t->lr);
    if (c->precision == VLM_PREC_BF16) vlm_bf16_round(t->ps->data, t->ps->total); // pure bf16 weights
    if (t->task->after_update) t->task->after_update(t->task_user, t);
}

// The state after a finished step (what resuming continues from).
static void record_state(vlm_trainer *t, double clock_s) {
    vlm_train_state *s = &t->st;
    s->elapsed_s = t->world > 1 ? clock_s : vlm_now() - t->t_start; // W > 1: rank 0's clock on every rank
    s->loader_epoch = t->next.epoch;
    s->loader_index = t->next.index * t->world; // position in the global stream
    s->global_batch = t->cfg.batch * t->world;
    s->epoch = t->next.epoch;
    s->adam_step = t->opt.step;
    s->last_loss = t->loss;
    if (t->ctx) vlm_train_state_set_rng(s, &t->ctx->dropout_rng);
}

// The progress line and metrics record of a logged step.
static void log_step(vlm_trainer *t) {
    const vlm_trainer_cfg *c = &t->cfg;
    const vlm_train_state *s = &t->st;
    double now = vlm_now(), rate = (double)t->since / fmax(now - t->t_last, 1e-9);
    double loss = c->log_mean_loss && t->loss_n ? t->loss_acc / (double)t->loss_n : t->loss;
    double eta_s = (double)(c->total_steps - s->step) * (double)(c->batch * t->world) / fmax(rate, 1e-9);
    if (c->max_minutes > 0 && c->max_minutes * 60.0 - s->elapsed_s < eta_s) eta_s = c->max_minutes * 60.0 - s->elapsed_s;
    char eta[32], tot[32] = "?", text[512] = "", json[512] = "";
    vlm_train_fmt_duration(eta_s, eta, sizeof eta);
    if (c->total_steps < INT64_MAX / 8) snprintf(tot, sizeof tot, "%" PRId64, c->total_steps);
    if (t->task->log_fields) t->task->log_fields(t->task_user, t, text, sizeof text, json, sizeof json);
    if (c->log && t->io) {
        char line[1024];
        snprintf(line, sizeof line, "step %" PRId64 "/%s | epoch %" PRId64 " | loss %.4f%s | lr %.3g | %.0f %s/s | ETA %s",
                 s->step, tot, t->batch_epoch, loss, text, t->lr, rate, c->unit, eta);
        c->log(c->log_user, 1, line);
    }
    if (t->metrics) {
        fprintf(t->metrics,
                "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.6f%s, \"lr\": %.6g, \"grad_norm\": %.7g, "
                "\"%s_per_s\": %.1f, \"elapsed_s\": %.1f}\n",
                s->step, t->batch_epoch, loss, json, t->lr, t->grad_norm, c->unit, rate, s->elapsed_s);
        fflush(t->metrics);
    }
    t->t_last = now;
    t->since = 0;
    t->loss_acc = 0;
    t->loss_n = 0;
}

// Checkpoints after a step: the state (every save_every, at the end and at
// epoch ends when asked), the plots with it, and epoch_N files with retention.
static vlm_status save_step(vlm_trainer *t, int last, int epoch_done, vlm_error *err) {
    const vlm_trainer_cfg *c = &t->cfg;
    if (t->st.step % c->save_every == 0 || last || (epoch_done && c->save_at_epoch_end)) {
        vlm_status st = t->task->save(t->task_user, t, err);
        if (st) return st;
        vlm_error perr;
        if (vlm_trainer_plot(t, &perr)) vlm_trainer_logf(t, "%s: warning: %s", c->tag, perr.msg);
    }
    if (!epoch_done || !t->task->save_epoch || c->save_frequency <= 0 || (t->batch_epoch + 1) % c->save_frequency) return VLM_OK;
    char fn[64], path[1400];
    snprintf(fn, sizeof fn, "epoch_%" PRId64 ".safetensors", t->batch_epoch + 1);
    snprintf(path, sizeof path, "%s/%s", t->run.ckdir, fn);
    vlm_status st = t->task->save_epoch(t->task_user, t, path, t->batch_epoch + 1, err);
    if (st) return st;
    int64_t old = t->batch_epoch + 1 - c->keep * c->save_frequency;
    if (old >= 1) {
        snprintf(path, sizeof path, "%s/epoch_%" PRId64 ".safetensors", t->run.ckdir, old);
        unlink(path);
    }
    return VLM_OK;
}

// A non-finite loss or gradient: nothing of the failed step was applied, so
// the parameters, moments and recorded state are still those of the last
// good step; save them (unless that step was just saved) and stop with
// VLM_ERR_NUMERIC, the message naming the state file.
static vlm_status save_last_good(vlm_trainer *t, vlm_error *err) {
    vlm_error e2 = {0};
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    int saved = t->st.step > 0 && t->st.step % t->cfg.save_every != 0 && t->io;
    if (saved && t->task->save(t->task_user, t, &e2))
        vlm_errorf(err, VLM_ERR_NUMERIC, "%s; saving the last good state (step %" PRId64 ") also failed: %s", msg,
                   t->st.step, e2.msg);
    else if (saved)
        vlm_errorf(err, VLM_ERR_NUMERIC, "%s (saved just now, at step %" PRId64 ")", msg, t->st.step);
    return VLM_ERR_NUMERIC;
}

// Validation on rank 0 (the other ranks wait at their next collective); its
// time does not count against the training budget.
static vlm_status validate(vlm_trainer *t, vlm_error *err) {
    double t0 = vlm_now(), value = NAN;
    char line[2048] = "", json[2048] = "";
    vlm_status st = t->task->validate(t->task_user, t, line, sizeof line, json, sizeof json, &value, err);
    if (st) return st;
    double dt = vlm_now() - t0;
    t->validated = 1;
    vlm_trainer_logf(t, "%s (%.1fs)", line, dt);
    if (isfinite(value)) curve_push(&t->vx, &t->vy, NULL, &t->vn, &t->vcap, (double)t->st.step, value, 0);
    if (t->metrics) {
        fprintf(t->metrics, "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", %s", t->st.step, t->cur_epoch, json);
        if (isfinite(value)) fprintf(t->metrics, ", \"val_metric\": %.6g", value);
        fprintf(t->metrics, "}\n");
        fflush(t->metrics);
    }
    t->t_start += dt;
    t->t_last += dt;
    return VLM_OK;
}

// Forward/backward, the data-parallel step end and the finiteness check.
// *clock_s: rank 0's training seconds; *stop: any rank's stop request.
static vlm_status run_step(vlm_trainer *t, double *clock_s, int *stop, vlm_error *err) {
    if (t->cfg.before_step) t->cfg.before_step(t->cfg.hook_user, t->st.step);
    vlm_params_zero_grad(t->ps);
    t->overlap.started = 0;
    double loss = 0;
    vlm_status st = t->task->step(t->task_user, t, &loss, err);
    if (st) return st;
    if (t->st.step == t->cfg.debug_nan_after) loss = NAN; // fault injection (tests)
    if (t->overlap.st) {
        *err = t->overlap.err;
        return t->overlap.st;
    }
    t->overlapped_steps += t->overlap.started;
    *stop = t->cfg.stop_flag && *t->cfg.stop_flag;
    if ((st = vlm_dist_step_end(t->dist, t->ps, t->overlap.started ? t->overlap.early : 0, t->t_start, &loss, stop,
                                clock_s, err)))
        return st;
    t->loss = (float)loss;
    if (!isfinite(t->loss) || !vlm_grads_finite(t->ps))
        return vlm_errorf(err, VLM_ERR_NUMERIC, "%s at step %" PRId64 " (lr %.3g); stopping. The last good checkpoint is %s",
                          isfinite(t->loss) ? "non-finite gradients" : "loss is NaN/Inf", t->st.step + 1,
                          vlm_sched_lr_at(&t->cfg.sched, t->st.step, 0, 0), t->run.state);
    // the norm before clipping (logged: what data-parallel runs must agree on)
    t->grad_norm = vlm_clip_grad_norm(t->ps, t->cfg.clip_norm > 0 ? (float)t->cfg.clip_norm : 0.0f);
    return VLM_OK;
}

vlm_status vlm_trainer_run(vlm_trainer *t, vlm_error *err) {
    vlm_trainer_cfg *c = &t->cfg;
    c->sched.total = c->total_steps;
    const double budget = c->max_minutes * 60.0;
    t->t_start = vlm_now() - t->st.elapsed_s;
    t->t_last = vlm_now();
    t->overlap = (vlm_grad_overlap){.d = t->dist, .ps = t->ps, .early = c->overlap_early};
    if (t->world > 1 && c->overlap_early > 0 && t->ctx) { // the prefix's allreduce overlaps the rest of backward
        t->ctx->backward_hook = vlm_grad_overlap_hook;
        t->ctx->backward_hook_user = &t->overlap;
    }
    while (t->st.step < c->total_steps) {
        double clock_s;
        int stop_sig;
        vlm_status st = run_step(t, &clock_s, &stop_sig, err);
        if (st == VLM_ERR_NUMERIC) return save_last_good(t, err);
        if (st) return st;
        update(t, clock_s);
        t->st.step++;
        t->since += c->batch * t->world;
        t->loss_acc += t->loss;
        t->loss_n++;
        curve_push(&t->cx, &t->cy, &t->clr, &t->cn, &t->ccap, (double)t->st.step, t->loss, t->lr);
        record_state(t, clock_s);
        const int64_t step = t->st.step;
        if (step % c->log_every == 0 || step == c->total_steps || step == 1) log_step(t);
        int epoch_done = t->next.epoch > t->batch_epoch || t->next.index + c->batch > c->epoch_size;
        int out_of_time = budget > 0 && t->st.elapsed_s >= budget;
        int stop_here = c->stop_at && step >= c->stop_at;
        int last = step == c->total_steps || out_of_time || stop_sig || stop_here;
        if (epoch_done) t->cur_epoch = t->batch_epoch + 1;
        if (t->io && (st = save_step(t, last, epoch_done, err))) return st;
        int val_now = last || (epoch_done && c->val_every_epochs > 0 && t->cur_epoch % c->val_every_epochs == 0);
        if (t->io && t->task->validate && val_now && (st = validate(t, err))) return st;
        if (out_of_time) t->stop_reason = "time budget reached";
        if (stop_sig) t->stop_reason = "interrupted";
        if (stop_here) t->stop_reason = "stopped at --stop-at-step";
        if (out_of_time || stop_sig || stop_here) break;
    }
    if (t->world > 1)
        vlm_trainer_logf(t, "%s: %d ranks; rank 0 waited %.1f s in collectives (%.1f%% of %.1f s), %.1f MB sent%s%" PRId64 "%s",
                         c->tag, t->world, t->dist->comm_s, 100.0 * t->dist->comm_s / fmax(t->st.elapsed_s, 1e-9),
                         t->st.elapsed_s, (double)t->dist->comm_bytes / 1e6,
                         c->overlap_early > 0 ? "; text-tower gradients reduced during the image backward in " : "",
                         c->overlap_early > 0 ? t->overlapped_steps : 0, c->overlap_early > 0 ? " steps" : "");
    return VLM_OK;
}

void vlm_trainer_free(vlm_trainer *t) {
    if (t->metrics) fclose(t->metrics);
    if (t->ctx && t->ctx->backward_hook == vlm_grad_overlap_hook) {
        t->ctx->backward_hook = NULL;
        t->ctx->backward_hook_user = NULL;
    }
    free(t->cx), free(t->cy), free(t->clr), free(t->vx), free(t->vy), free(t->frozen_saved);
    memset(t, 0, sizeof *t);
}
