// Shared CLI helpers for training and evaluation (see train_common.h).
#include "cli/train_common.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "core/ops.h"
#include "data/loader.h"

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out, vlm_error *err) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        vlm_errorf(err, VLM_ERR_ARG, "%s: '%s' is not an integer in [%lld, %lld]", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out, vlm_error *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        vlm_errorf(err, VLM_ERR_ARG, "%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

vlm_status cli_mkdirs(const char *path, vlm_error *err) {
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

int cli_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

vlm_status cli_read_merges(const char *path, char **text, vlm_error *err) {
    gzFile g = gzopen(path, "rb"); // reads plain files too
    if (!g) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 65536 + 1 > cap) {
            if (cap > (256u << 20)) {
                free(buf);
                gzclose(g);
                return vlm_errorf(err, VLM_ERR_FORMAT, "%s: vocabulary larger than 256 MB", path);
            }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                gzclose(g);
                return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            }
            buf = nb;
        }
        int r = gzread(g, buf + len, 65536);
        if (r < 0) {
            free(buf);
            gzclose(g);
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: corrupt gzip data", path);
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(g);
    buf[len] = 0;
    *text = buf;
    return VLM_OK;
}

vlm_status cli_tokenizer_from_text(vlm_tokenizer *tok, const char *text, vlm_error *err) {
    return vlm_tokenizer_init_from_memory(tok, text, strlen(text), err);
}

void cli_fmt_duration(double s, char *buf, int n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, (size_t)n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, (size_t)n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, (size_t)n, "%lds", t);
}

int cli_parse_composite(const char *s, vlm_decode_opts *o, vlm_error *err) {
    int r, g, b;
    char tail;
    if (sscanf(s, "%d,%d,%d%c", &r, &g, &b, &tail) != 3 || r < 0 || g < 0 || b < 0 || r > 255 || g > 255 || b > 255) {
        vlm_errorf(err, VLM_ERR_ARG, "--composite wants R,G,B in 0..255, got '%s'", s);
        return -1;
    }
    o->alpha = VLM_ALPHA_COMPOSITE;
    o->background[0] = (uint8_t)r;
    o->background[1] = (uint8_t)g;
    o->background[2] = (uint8_t)b;
    return 0;
}

// ---- data-parallel helpers ----
// The global batch's gradient (see cli_dist_step_end).
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

void cli_grad_overlap_hook(void *user, const vlm_node *next) {
    cli_grad_overlap *o = user;
    if (o->st) return;
    if (o->started) {
        vlm_dist_progress(o->d); // let MPI move the transfer along between backward nodes
        return;
    }
    if ((const void *)next != o->boundary) return;
    o->started = 1;
    o->st = vlm_dist_iallreduce_f32(o->d, o->ps->grad, o->early, "gradient allreduce (text tower, overlapped)", &o->err);
}

vlm_status cli_dist_sync_params(vlm_dist *d, vlm_params *ps, vlm_error *err) {
    if (d->world <= 1) return VLM_OK;
    return vlm_dist_bcast(d, ps->data, ps->total * (int64_t)sizeof(float), 0, "parameter broadcast from rank 0", err);
}

vlm_status cli_dist_step_end(vlm_dist *d, vlm_params *ps, int64_t reduced_prefix, double t_start, double *loss,
                             int *stop, double *elapsed, vlm_error *err) {
    if (average_grads(d, ps, reduced_prefix, err)) return err->status;
    *elapsed = cli_now() - t_start; // read after the gradient traffic: it is part of the step
    if (d->world <= 1) return VLM_OK;
    double v[3] = {*loss, *stop ? 1.0 : 0.0, d->rank == 0 ? *elapsed : 0.0};
    if (vlm_dist_allreduce_f64(d, v, 3, "step agreement (loss, stop, clock)", err)) return err->status;
    *loss = v[0] / d->world;
    *stop = v[1] > 0;
    *elapsed = v[2];
    return VLM_OK;
}

vlm_status cli_dist_check_resume(const vlm_dist *d, int64_t global_batch_saved, int64_t loader_index,
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

void cli_dist_opts_default(cli_dist_opts *o) {
    memset(o, 0, sizeof *o);
    o->timeout_s = 300;
}

int cli_dist_parse_opt(const char *a, const char *v, cli_dist_opts *o, vlm_error *err) {
    if (strcmp(a, "--dist-timeout") && strcmp(a, "--debug-fault")) return 0;
    if (!v) {
        vlm_errorf(err, VLM_ERR_ARG, "option %s needs a value", a);
        return -1;
    }
    if (!strcmp(a, "--dist-timeout")) return cli_parse_float(a, v, 0.1, 1e7, &o->timeout_s, err) ? -1 : 1;
    char k[16];
    int r;
    long long st;
    if (sscanf(v, "%15[a-z]:%d:%lld", k, &r, &st) != 3 || (strcmp(k, "hang") && strcmp(k, "exit")) || r < 0 || st < 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--debug-fault: expected hang:RANK:STEP or exit:RANK:STEP, got '%s'", v);
        return -1;
    }
    o->fault_kind = strcmp(k, "hang") ? 2 : 1;
    o->fault_rank = r;
    o->fault_step = st;
    return 1;
}

vlm_dist *cli_dist_setup(const cli_dist_opts *o) {
    vlm_dist *d = cli_dist();
    d->timeout_s = o->timeout_s;
    return d;
}

void cli_dist_fault(const cli_dist_opts *o, const vlm_dist *d, long long step) {
    if (!o->fault_kind || d->rank != o->fault_rank || step != o->fault_step) return;
    if (o->fault_kind == 2) _exit(9);
    for (;;) sleep(1); // a hung rank: never reaches the next collective
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

vlm_status cli_run_init(cli_run *r, const char *logs, const char *name, const char *resume, int io, vlm_error *err) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s/%s", logs, name);
    snprintf(r->ckdir, sizeof r->ckdir, "%s/checkpoints", r->dir);
    snprintf(r->model, sizeof r->model, "%s/epoch_latest.safetensors", r->ckdir);
    snprintf(r->state, sizeof r->state, "%s/epoch_latest.state.safetensors", r->ckdir);
    snprintf(r->metrics, sizeof r->metrics, "%s/metrics.jsonl", r->dir);
    if (io) {
        vlm_status st = cli_mkdirs(r->ckdir, err);
        if (st) return st;
        remove_stale_tmp(r->ckdir);
    }
    if (resume) {
        snprintf(r->resume, sizeof r->resume, "%s", strcmp(resume, "latest") ? resume : r->state);
        if (!cli_file_exists(r->resume))
            return vlm_errorf(err, VLM_ERR_IO, "--resume: no training state at %s", r->resume);
    }
    return VLM_OK;
}

vlm_status cli_run_open_metrics(const cli_run *r, FILE **f, vlm_error *err) {
    *f = fopen(r->metrics, r->resume[0] ? "a" : "w");
    if (!*f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open for writing: %s", r->metrics, strerror(errno));
    return VLM_OK;
}
