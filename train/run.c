// Run folders and the data-parallel step end (see run.h).
#include "train/run.h"
#include "core/clock.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void vlm_train_fmt_duration(double s, char *buf, int n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, (size_t)n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, (size_t)n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, (size_t)n, "%lds", t);
}

vlm_status vlm_mkdirs(const char *path, vlm_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
    return VLM_OK;
}

// A run killed while writing leaves NAME.tmp.<pid>; the finished files are
// never touched by that, so the temp files are simply removed.
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
}

vlm_status vlm_run_init(vlm_run *r, const char *logs, const char *name, const char *resume, int io, vlm_error *err) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s/%s", logs, name);
    snprintf(r->ckdir, sizeof r->ckdir, "%s/checkpoints", r->dir);
    snprintf(r->model, sizeof r->model, "%s/epoch_latest.safetensors", r->ckdir);
    snprintf(r->state, sizeof r->state, "%s/epoch_latest.state.safetensors", r->ckdir);
    snprintf(r->metrics, sizeof r->metrics, "%s/metrics.jsonl", r->dir);
    if (io) {
        vlm_status st = vlm_mkdirs(r->ckdir, err);
        if (st) return st;
        remove_stale_tmp(r->ckdir);
    }
    if (resume) {
        snprintf(r->resume, sizeof r->resume, "%s", strcmp(resume, "latest") ? resume : r->state);
        if (!access(r->resume, F_OK) == 0)
            return vlm_errorf(err, VLM_ERR_IO, "--resume: no training state at %s", r->resume);
    }
    return VLM_OK;
}

vlm_status vlm_run_open_metrics(const vlm_run *r, FILE **f, vlm_error *err) {
    *f = fopen(r->metrics, r->resume[0] ? "a" : "w");
    if (!*f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open for writing: %s", r->metrics, strerror(errno));
    return VLM_OK;
}

void vlm_run_path(const vlm_run *r, const char *name, char *out, size_t cap) { snprintf(out, cap, "%s/%s", r->dir, name); }

// The global batch's gradient (see vlm_dist_step_end).
static vlm_status average_grads(vlm_dist *d, vlm_params *ps, int64_t reduced_prefix, vlm_error *err) {
    if (d->world <= 1) return VLM_OK;
    if (vlm_dist_allreduce_f32(d, ps->grad + reduced_prefix, ps->total - reduced_prefix, "gradient allreduce", err) ||
        vlm_dist_wait(d, "gradient allreduce (overlapped part)", err))
        return err->status;
    const float inv = 1.0f / (float)d->world;
    float *g = ps->grad;
    const int64_t n = ps->total;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) g[i] *= inv;
    return VLM_OK;
}

void vlm_grad_overlap_hook(void *user, const vlm_node *next) {
    vlm_grad_overlap *o = user;
    if (o->st) return;
    if (o->started) {
        vlm_dist_progress(o->d); // let MPI move the transfer along between backward nodes
        return;
    }
    if ((const void *)next != o->boundary) return;
    o->started = 1;
    o->st = vlm_dist_iallreduce_f32(o->d, o->ps->grad, o->early, "gradient allreduce (text tower, overlapped)", &o->err);
}

vlm_status vlm_dist_sync_params(vlm_dist *d, vlm_params *ps, vlm_error *err) {
    if (d->world <= 1) return VLM_OK;
    return vlm_dist_bcast(d, ps->data, ps->total * (int64_t)sizeof(float), 0, "parameter broadcast from rank 0", err);
}

vlm_status vlm_dist_step_end(vlm_dist *d, vlm_params *ps, int64_t reduced_prefix, double t_start, double *loss,
                             int *stop, double *elapsed, vlm_error *err) {
    if (average_grads(d, ps, reduced_prefix, err)) return err->status;
    *elapsed = vlm_now() - t_start; // read after the gradient traffic: it is part of the step
    if (d->world <= 1) return VLM_OK;
    double v[3] = {*loss, *stop ? 1.0 : 0.0, d->rank == 0 ? *elapsed : 0.0};
    if (vlm_dist_allreduce_f64(d, v, 3, "step agreement (loss, stop, clock)", err)) return err->status;
    *loss = v[0] / d->world;
    *stop = v[1] > 0;
    *elapsed = v[2];
    return VLM_OK;
}

vlm_status vlm_dist_check_resume(const vlm_dist *d, int64_t global_batch_saved, int64_t loader_index,
                                 int64_t per_rank_batch, const char *path, vlm_error *err) {
    const int W = d->world;
    if (global_batch_saved && global_batch_saved != per_rank_batch * W)
        return vlm_errorf(err, VLM_ERR_ARG,
                          "%s: the run used a global batch of %lld samples; with %d rank(s) pass --batch-size %lld "
                          "(the world size must divide the global batch)", path, (long long)global_batch_saved, W,
                          (long long)(global_batch_saved / W > 0 ? global_batch_saved / W : 1));
    if (loader_index % W)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: sample %lld of the epoch is not a multiple of %d ranks", path,
                          (long long)loader_index, W);
    return VLM_OK;
}
