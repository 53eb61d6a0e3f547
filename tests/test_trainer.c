// The training loop as a library (train/trainer.h) on a toy task: a linear
// regression whose targets carry noise from the step context's dropout stream,
// so a resumed run matches only if the parameters, AdamW moments, loader
// position and RNG stream all come back. Checks: an interrupted run resumed
// from "latest" gives the uninterrupted run's weights bit for bit (and the
// same metrics); --stop-at-step, a stop request and the time budget stop
// cleanly with the state saved; a non-finite loss stops with VLM_ERR_NUMERIC,
// naming the last good state, which holds the last saved step; validation
// runs at epoch ends and at the end; epoch_N files keep the newest K; the
// progress lines and plots are written.
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/state.h"
#include "testutil.h"
#include "train/trainer.h"

#define LOGS "/tmp/vlm_test_trainer"
#define D 6       // features
#define N 40      // samples per epoch
#define B 8       // batch: 5 steps per epoch
#define STEPS 20  // 4 epochs

typedef struct {
    vlm_params ps;
    vlm_ctx c;
    int64_t epoch, index; // the next sample's loader position
    int64_t nan_at;       // step whose loss is NaN (-1: never)
    int n_validate, n_progress;
    int64_t validated_at[16];
    double val[16];
} toy;

// Sample i of the dataset: x_i from a fixed hash, y = w* . x + 0.3 (noise added per step).
static void sample(int64_t i, float *x, float *y) {
    uint32_t h = (uint32_t)i * 2654435761u + 12345u;
    *y = 0.3f;
    for (int d = 0; d < D; d++) {
        h = h * 1664525u + 1013904223u;
        x[d] = (float)(h >> 8) / 16777216.0f - 0.5f;
        *y += (float)(d + 1) * 0.5f * x[d];
    }
}

// Epoch e's order: a permutation that changes with e.
static int64_t order(int64_t e, int64_t k) { return (k * 7 + e * 3) % N; }

static vlm_status toy_step(void *user, vlm_trainer *t, double *loss, vlm_error *err) {
    (void)err;
    toy *p = user;
    float *w = p->ps.data, *gw = p->ps.grad;
    double l = 0;
    t->batch_epoch = p->epoch;
    for (int b = 0; b < B; b++) {
        float x[D], y;
        sample(order(p->epoch, p->index), x, &y);
        y += 0.05f * vlm_rng_normal(&p->c.dropout_rng); // the stream a resume must restore
        float r = w[D] - y;
        for (int d = 0; d < D; d++) r += w[d] * x[d];
        l += (double)r * r / B;
        for (int d = 0; d < D; d++) gw[d] += 2 * r * x[d] / B;
        gw[D] += 2 * r / B;
        if (++p->index == N) p->index = 0, p->epoch++;
    }
    t->next = (vlm_loader_pos){p->epoch, p->index};
    *loss = t->st.step == p->nan_at ? NAN : l;
    return VLM_OK;
}

static vlm_status toy_load(void *user, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err) {
    (void)t;
    return vlm_state_load(path, &((toy *)user)->ps, st, "toy", err);
}

static vlm_status toy_save(void *user, vlm_trainer *t, vlm_error *err) {
    toy *p = user;
    vlm_status st = vlm_state_save(t->run.state, &p->ps, &t->st, "toy", NULL, NULL, 0, err);
    return st ? st : vlm_state_save(t->run.model, &p->ps, &t->st, "toy", NULL, NULL, 0, err);
}

static vlm_status toy_validate(void *user, vlm_trainer *t, char *line, size_t lcap, char *json, size_t jcap,
                               double *value, vlm_error *err) {
    (void)err;
    toy *p = user;
    if (p->n_validate < 16) p->validated_at[p->n_validate] = t->st.step;
    p->n_validate++;
    double mse = 0;
    for (int i = 0; i < N; i++) {
        float x[D], y, r = p->ps.data[D];
        sample(i, x, &y);
        for (int d = 0; d < D; d++) r += p->ps.data[d] * x[d];
        mse += (double)(r - y) * (r - y) / N;
    }
    if (p->n_validate <= 16) p->val[p->n_validate - 1] = mse;
    snprintf(line, lcap, "toy: val mse %.5f", mse);
    snprintf(json, jcap, "\"val_mse\": %.6f", mse);
    *value = mse;
    return VLM_OK;
}

static vlm_status toy_save_epoch(void *user, vlm_trainer *t, const char *path, int64_t epoch, vlm_error *err) {
    (void)epoch;
    return vlm_state_save(path, &((toy *)user)->ps, &t->st, "toy", NULL, NULL, 0, err);
}

static const vlm_task toy_ops = {toy_step, toy_load, toy_save, NULL, NULL, toy_validate, toy_save_epoch};

static void count_log(void *user, int progress, const char *line) {
    (void)line;
    if (progress) ((toy *)user)->n_progress++;
}

typedef struct {
    const char *name, *resume;
    int64_t stop_at, nan_at, stop_before; // stop_before: raise the stop flag before this step (-1: never)
    double max_minutes;
} run_opts;

static volatile sig_atomic_t stop_flag;
static int64_t stop_before_step = -1;
static void hook(void *user, int64_t step) {
    (void)user;
    if (step == stop_before_step) stop_flag = 1;
}

// One run of the toy task; returns its status and leaves the weights in w.
static vlm_status run(const run_opts *ro, float w[D + 1], vlm_trainer *out, toy *pout, vlm_error *err) {
    toy p;
    memset(&p, 0, sizeof p);
    p.nan_at = ro->nan_at;
    vlm_params_init(&p.ps);
    int64_t sh[1] = {D + 1};
    vlm_params_add(&p.ps, "w", 1, sh, err);
    if (vlm_params_alloc(&p.ps, err) || vlm_ctx_init(&p.c, 1 << 16, 7, err)) return err->status;
    vlm_trainer_cfg cfg;
    vlm_trainer_cfg_default(&cfg);
    cfg.tag = "toy", cfg.unit = "samples", cfg.val_name = "val mse";
    cfg.logs = LOGS, cfg.name = ro->name, cfg.resume = ro->resume;
    cfg.total_steps = STEPS, cfg.batch = B, cfg.epoch_size = N;
    cfg.adamw = (vlm_adamw_cfg){0.3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    cfg.sched = (vlm_sched){VLM_SCHED_COSINE, 0.3f, 2, STEPS, 0, 1.0f, 0.0f};
    cfg.log_every = 2, cfg.save_every = 3;
    cfg.save_frequency = 1, cfg.keep = 2, cfg.val_every_epochs = 1;
    cfg.stop_at = ro->stop_at, cfg.max_minutes = ro->max_minutes;
    cfg.log = count_log, cfg.log_user = &p;
    stop_flag = 0;
    stop_before_step = ro->stop_before;
    cfg.stop_flag = &stop_flag, cfg.before_step = hook;
    vlm_trainer t;
    vlm_status st = vlm_trainer_init(&t, &cfg, err);
    if (!st && !(st = vlm_trainer_begin(&t, &p.ps, &p.c, &toy_ops, &p, err))) {
        p.epoch = t.st.loader_epoch, p.index = t.st.loader_index; // where the resumed stream continues
        st = vlm_trainer_run(&t, err);
    }
    memcpy(w, p.ps.data, sizeof(float) * (D + 1));
    if (out) {
        *out = t; // the caller reads the counters only
        out->cx = out->cy = out->clr = out->vx = out->vy = NULL;
        out->metrics = NULL;
        out->frozen_saved = NULL;
    }
    if (pout) *pout = p;
    vlm_trainer_free(&t);
    vlm_ctx_free(&p.c);
    vlm_params_free(&p.ps);
    return st;
}

static int exists(const char *run, const char *file) {
    char p[512];
    struct stat sb;
    snprintf(p, sizeof p, LOGS "/%s/%s", run, file);
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

static int count_lines(const char *run, const char *file, const char *needle) {
    char p[512];
    snprintf(p, sizeof p, LOGS "/%s/%s", run, file);
    char *s = tu_read_file(p, NULL);
    int n = 0;
    for (char *q = s; q && (q = strstr(q, needle)); q++) n++;
    free(s);
    return n;
}

int main(void) {
    if (system("rm -rf " LOGS) != 0) return 1;
    vlm_error err = {0};
    float wa[D + 1], wb[D + 1];
    vlm_trainer t;
    toy p;
    // The uninterrupted run.
    run_opts ro = {"full", NULL, 0, -1, -1, 0};
    CHECK(run(&ro, wa, &t, &p, &err) == VLM_OK, "full run: %s", err.msg);
    CHECK(t.st.step == STEPS && !strcmp(t.stop_reason, "done"), "ran %" PRId64 " steps (%s)", t.st.step, t.stop_reason);
    CHECK(p.val[3] < 0.5 * p.val[0], "validation mse falls: %g -> %g", p.val[0], p.val[3]);
    CHECK(p.n_validate == 4 && p.validated_at[0] == 5 && p.validated_at[3] == 20,
          "validation at the 4 epoch ends (the last one also the end): %d, first at %" PRId64, p.n_validate,
          p.validated_at[0]);
    CHECK(p.n_progress == 11, "progress lines at steps 1, 2, 4, ..., 20: %d", p.n_progress);
    CHECK(count_lines("full", "metrics.jsonl", "\"loss\"") == 11 && count_lines("full", "metrics.jsonl", "val_mse") == 4,
          "metrics records");
    CHECK(exists("full", "checkpoints/epoch_3.safetensors") && exists("full", "checkpoints/epoch_4.safetensors") &&
              !exists("full", "checkpoints/epoch_2.safetensors") && !exists("full", "checkpoints/epoch_1.safetensors"),
          "epoch files: the newest 2 kept");
    CHECK(exists("full", "loss.png") && exists("full", "lr.png") && exists("full", "val.png"), "plots");

    // Interrupted at step 7 (--stop-at-step), resumed from "latest": bit-exact.
    ro = (run_opts){"resumed", NULL, 7, -1, -1, 0};
    CHECK(run(&ro, wb, &t, NULL, &err) == VLM_OK && t.st.step == 7 && strstr(t.stop_reason, "stop-at-step"),
          "stop at 7: %s (%" PRId64 ")", err.msg, t.st.step);
    ro = (run_opts){"resumed", "latest", 0, -1, -1, 0};
    CHECK(run(&ro, wb, &t, &p, &err) == VLM_OK && t.st.step == STEPS, "resume: %s", err.msg);
    CHECK(!memcmp(wa, wb, sizeof wa), "resumed weights equal the uninterrupted run's bit for bit (w0 %.9g vs %.9g)",
          wa[0], wb[0]);
    CHECK(count_lines("resumed", "metrics.jsonl", "\"step\": 20, \"epoch\": 3, \"loss\"") == 1 &&
              count_lines("full", "metrics.jsonl", "\"step\": 20, \"epoch\": 3, \"loss\"") == 1,
          "the resumed log continues to step 20");

    // A stop request (SIGINT/SIGTERM in the CLI) before step 5: that step
    // finishes, the state is saved at 6, and resuming is again bit-exact.
    ro = (run_opts){"stopped", NULL, 0, -1, 5, 0};
    CHECK(run(&ro, wb, &t, NULL, &err) == VLM_OK && t.st.step == 6 && !strcmp(t.stop_reason, "interrupted"),
          "stop request: %" PRId64 " %s", t.st.step, t.stop_reason);
    vlm_params ps;
    vlm_params_init(&ps);
    int64_t sh[1] = {D + 1};
    vlm_params_add(&ps, "w", 1, sh, &err);
    vlm_params_alloc(&ps, &err);
    vlm_train_state s;
    CHECK(vlm_state_load(LOGS "/stopped/checkpoints/epoch_latest.state.safetensors", &ps, &s, "toy", &err) == VLM_OK && s.step == 6 &&
              s.loader_index == 8 && s.loader_epoch == 1,
          "state at the stop: step %" PRId64 ", epoch %" PRId64 " sample %" PRId64, s.step, s.loader_epoch,
          s.loader_index);
    ro = (run_opts){"stopped", "latest", 0, -1, -1, 0};
    CHECK(run(&ro, wb, &t, NULL, &err) == VLM_OK && !memcmp(wa, wb, sizeof wa), "resumed after a stop: bit-exact");

    // The time budget: a tiny one stops after the first step.
    ro = (run_opts){"budget", NULL, 0, -1, -1, 1e-9};
    CHECK(run(&ro, wb, &t, NULL, &err) == VLM_OK && t.st.step == 1 && !strcmp(t.stop_reason, "time budget reached"),
          "budget: %" PRId64 " %s", t.st.step, t.stop_reason);

    // A NaN loss at step 10 (0-based: the 11th): VLM_ERR_NUMERIC naming the last
    // good state, saved at the stop: step 10 (the periodic saves, every 3, had
    // reached 9), nothing of the failed step applied.
    ro = (run_opts){"nan", NULL, 0, 10, -1, 0};
    vlm_status st = run(&ro, wb, &t, NULL, &err);
    CHECK(st == VLM_ERR_NUMERIC && strstr(err.msg, "at step 11") && strstr(err.msg, "saved just now, at step 10") &&
              strstr(err.msg, "nan/checkpoints/epoch_latest.state.safetensors"),
          "NaN stop: %d %s", st, err.msg);
    CHECK(vlm_state_load(LOGS "/nan/checkpoints/epoch_latest.state.safetensors", &ps, &s, "toy", &err) == VLM_OK && s.step == 10,
          "last good state at step %" PRId64, s.step);
    for (int i = 0; i <= D; i++) CHECK(isfinite(ps.data[i]), "saved weights finite");
    vlm_params_free(&ps);

    // Resuming a run that does not exist is refused before anything is written.
    ro = (run_opts){"never", "latest", 0, -1, -1, 0};
    CHECK(run(&ro, wb, NULL, NULL, &err) != VLM_OK && strstr(err.msg, "never"), "resume of a missing run: %s", err.msg);
    if (!tu_failures && system("rm -rf " LOGS) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_trainer");
}
