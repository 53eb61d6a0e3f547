// Diffusion-generator training on the trainer layer (see generate.h).
#include "train/generate.h"
#include "core/clock.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/font.h"

int vlm_t_sampling_parse(const char *name) {
    static const char *const modes[] = {"uniform", "stratified", "importance"};
    for (int m = 0; m < 3; m++)
        if (!strcmp(name, modes[m])) return m;
    return -1;
}

void vlm_generate_opts_default(vlm_generate_opts *o) {
    memset(o, 0, sizeof *o);
    vlm_train_common_default(&o->c);
    o->c.batch = 64, o->c.epochs = 100, o->c.warmup = 500, o->c.lr = 3e-4, o->c.wd = 0;
    o->c.save_every = 1000, o->c.log_every = 50, o->c.lr_scheduler = "const";
    o->tmpl = "a photo of a {}", o->cond = "text", o->schedule = "linear", o->t_sampling = "uniform";
    o->image_size = 32, o->patch = 4, o->channels = 3, o->width = 256, o->layers = 6, o->heads = 4, o->timesteps = 1000;
    o->grid_n = 8, o->p_uncond = 0.1, o->ema = 0.9995;
    vlm_decode_opts_default(&o->dec);
}

vlm_status vlm_generate_opts_check(const vlm_generate_opts *o, vlm_error *err) {
    if (!o->clip || !o->train) return vlm_errorf(err, VLM_ERR_ARG, "--clip CKPT and --train-data DATA are required (see --help)");
    if (strcmp(o->cond, "text") && strcmp(o->cond, "image"))
        return vlm_errorf(err, VLM_ERR_ARG, "--cond: expected text or image, got '%s'", o->cond);
    if (o->channels == 2) return vlm_errorf(err, VLM_ERR_ARG, "--channels: 1 or 3");
    if (vlm_diff_kind_parse(o->schedule) < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "--schedule: expected linear or cosine, got '%s'", o->schedule);
    if (vlm_t_sampling_parse(o->t_sampling) < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "--t-sampling: expected uniform, stratified or importance, got '%s'", o->t_sampling);
    vlm_sched_kind k;
    if (vlm_sched_parse(o->c.lr_scheduler, &k) || k == VLM_SCHED_CONST_COOLDOWN)
        return vlm_errorf(err, VLM_ERR_ARG, "--lr-scheduler: expected const or cosine, got '%s'", o->c.lr_scheduler);
    if (!strstr(o->tmpl, "{}")) return vlm_errorf(err, VLM_ERR_ARG, "--template must contain {} (got '%s')", o->tmpl);
    return vlm_train_common_check(&o->c, err);
}

// Sample b's draws and noisy input (see vlm_gen_train_step); i: its data row.
static void draw_sample(const vlm_gen *g, const vlm_diff_schedule *sch, const vlm_gen_data *d, int64_t i, int64_t step,
                        int bi, vlm_gen_step_buf *b) {
    const int S = g->dit.cfg.image_size, C = g->dit.cfg.in_channels, E = g->dit.cfg.cond_dim, T = sch->T;
    const int64_t D = (int64_t)C * S * S;
    vlm_rng r;
    vlm_rng_init(&r, b->seed, VLM_RNG_SAMPLE, (uint64_t)(step * b->GB + (int64_t)b->R * b->B + bi));
    int flip = vlm_rng_uniform(&r) < b->hflip;
    if (b->t_mode) // sample j of the global batch draws from its stratum [j, j+1) / GB
        b->tt[bi] = (int32_t)vlm_diff_t_from_u(b->t_cdf, T, ((double)b->R * b->B + bi + vlm_rng_uniform_d(&r)) / b->GB);
    else
        b->tt[bi] = (int32_t)vlm_rng_below(&r, (uint64_t)T);
    b->drop[bi] = vlm_rng_uniform(&r) < b->p_uncond;
    float *xb = b->x0 + bi * D, *eps = b->eps + bi * D;
    vlm_gen_from_rgb(d->rgb + i * S * S * 3, C, S, xb);
    if (flip)
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S / 2; xx++) {
                    float *row = xb + ((int64_t)ch * S + y) * S, tmp = row[xx];
                    row[xx] = row[S - 1 - xx];
                    row[S - 1 - xx] = tmp;
                }
    for (int64_t j = 0; j < D; j++) eps[j] = vlm_rng_normal(&r);
    vlm_diff_q_sample(sch, b->tt[bi], xb, eps, b->xt + bi * D, D);
    // Min-SNR: mean(w (pred - eps)^2) as the MSE of sqrt(w) pred and sqrt(w) eps
    b->sw[bi] = (float)sqrt(b->t_mode == VLM_T_IMPORTANCE ? b->t_mean_w : vlm_diff_min_snr_weight(sch, b->tt[bi], b->min_snr));
    if (b->min_snr > 0)
        for (int64_t j = 0; j < D; j++) eps[j] *= b->sw[bi];
    memcpy(b->emb + (int64_t)bi * E, d->emb + (int64_t)d->row[i] * E, sizeof(float) * (size_t)E);
}

vlm_status vlm_gen_train_step(vlm_ctx *c, vlm_gen *g, const vlm_diff_schedule *sch, const vlm_gen_data *d,
                              const uint32_t *order, int64_t step, int64_t pos, vlm_gen_step_buf *b, double *loss,
                              vlm_error *err) {
    const int B = b->B, S = g->dit.cfg.image_size, C = g->dit.cfg.in_channels, E = g->dit.cfg.cond_dim;
#pragma omp parallel for schedule(static)
    for (int bi = 0; bi < B; bi++) draw_sample(g, sch, d, order[(pos + bi) % d->n], step, bi, b);
    vlm_ctx_reset(c);
    c->grad_enabled = 1;
    c->training = 1;
    vlm_tensor *xin = vlm_tensor_wrap(c, VLM_F32, 4, (int64_t[]){B, C, S, S}, b->xt, NULL);
    vlm_tensor *ein = vlm_tensor_wrap(c, VLM_F32, 2, (int64_t[]){B, E}, b->emb, NULL);
    vlm_tensor *target = vlm_tensor_wrap(c, VLM_F32, 4, (int64_t[]){B, C, S, S}, b->eps, NULL);
    vlm_tensor *pred = vlm_dit_forward(c, &g->dit, xin, b->tt, ein, b->drop); // [B, C, S, S]
    if (pred && b->min_snr > 0) pred = vlm_op_mul(c, pred, vlm_tensor_wrap(c, VLM_F32, 4, (int64_t[]){B, 1, 1, 1}, b->sw, NULL));
    vlm_tensor *l = vlm_op_mse(c, pred, target);
    if (!l || vlm_backward(c, l)) {
        *err = c->err;
        return c->status ? c->status : VLM_ERR_STATE;
    }
    *loss = vlm_f32(l)[0];
    return VLM_OK;
}

// ---- the task -------------------------------------------------------------------
typedef struct {
    const vlm_generate_opts *o;
    vlm_gen g;
    vlm_gen_data d;
    vlm_diff_schedule sch;
    int have_sch;
    vlm_ctx c;
    vlm_gen_step_buf b;
    double *t_cdf;
    uint32_t *order;
    int64_t epoch_shuffled, steps_per_epoch;
    char args_json[2048];
} gen_task;

static vlm_status task_step(void *user, vlm_trainer *t, double *loss, vlm_error *err) {
    gen_task *p = user;
    const int64_t step = t->st.step, spe = p->steps_per_epoch;
    // This rank's B samples of the global batch: positions R*B.. of it, so a
    // global batch holds the same samples and draws at every world size.
    int64_t epoch = step / spe, pos = (step % spe) * p->b.GB + (int64_t)t->rank * p->b.B;
    if (epoch != p->epoch_shuffled) {
        vlm_rng r;
        vlm_rng_init(&r, (uint64_t)p->o->c.seed, VLM_RNG_DATA, (uint64_t)epoch);
        for (int64_t i = 0; i < p->d.n; i++) p->order[i] = (uint32_t)i;
        vlm_rng_shuffle_u32(&r, p->order, (uint64_t)p->d.n);
        p->epoch_shuffled = epoch;
    }
    t->batch_epoch = epoch;
    t->next = (vlm_loader_pos){(step + 1) / spe, ((step + 1) % spe) * p->b.B};
    return vlm_gen_train_step(&p->c, &p->g, &p->sch, &p->d, p->order, step, pos, &p->b, loss, err);
}

static vlm_status task_load(void *user, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err) {
    (void)t;
    return vlm_gen_load_state(path, &((gen_task *)user)->g, st, err);
}

static vlm_status task_save(void *user, vlm_trainer *t, vlm_error *err) {
    gen_task *p = user;
    // model first, state last (the commit point; see pretrain's task_save)
    vlm_status st = vlm_gen_save(t->run.model, &p->g, p->g.ema, t->st.step, err);
    return st ? st : vlm_gen_save_state(t->run.state, &p->g, &t->st, p->args_json, err);
}

static void task_after_update(void *user, vlm_trainer *t) {
    gen_task *p = user;
    vlm_gen_ema_update(&p->g, (float)p->o->ema, t->st.step);
}

static const vlm_task gen_ops = {task_step, task_load, task_save, task_after_update, NULL, NULL, NULL};

// Samples `per` images for each of the first (up to 10) prompts into a grid.
static vlm_status end_grid(vlm_gen *g, const vlm_gen_data *d, int per, const char *path, vlm_error *err) {
    if (d->texts.n == 0 || per <= 0) return VLM_OK;
    int rows = d->texts.n < 10 ? d->texts.n : 10, E = g->dit.cfg.cond_dim, S = g->dit.cfg.image_size,
        C = g->dit.cfg.in_channels;
    int64_t n = (int64_t)rows * per;
    float *emb = malloc(sizeof(float) * (size_t)n * E), *x = malloc(sizeof(float) * (size_t)n * C * S * S);
    uint8_t *rgb = malloc((size_t)n * S * S * 3);
    vlm_status st = !emb || !x || !rgb ? vlm_errorf(err, VLM_ERR_OOM, "out of memory") : VLM_OK;
    if (!st) {
        for (int64_t i = 0; i < n; i++) memcpy(emb + i * E, d->emb + (i / per) * E, sizeof(float) * (size_t)E);
        vlm_gen_sample_opts so;
        vlm_gen_sample_opts_default(&so);
        if (!(st = vlm_gen_sample(g, emb, n, &so, x, err))) {
            vlm_gen_to_rgb(x, n, C, S, rgb);
            st = vlm_grid_png(path, rgb, rows, per, S, 2, (const char *const *)d->texts.p, err);
        }
    }
    free(emb), free(x), free(rgb);
    return st;
}

// The generator from the CLIP, its data and conditioning statistics.
static vlm_status build(gen_task *p, vlm_trainer *t, vlm_error *err) {
    const vlm_generate_opts *o = p->o;
    vlm_dit_cfg cfg;
    vlm_dit_cfg_default(&cfg);
    cfg.image_size = (int)o->image_size, cfg.patch_size = (int)o->patch, cfg.in_channels = (int)o->channels;
    cfg.width = (int)o->width, cfg.layers = (int)o->layers, cfg.heads = (int)o->heads, cfg.cond_tokens = (int)o->cond_tokens;
    cfg.long_skip = o->long_skip;
    cfg.schedule = (vlm_diff_kind)vlm_diff_kind_parse(o->schedule), cfg.timesteps = (int)o->timesteps;
    vlm_status st = vlm_gen_from_clip(&p->g, o->clip, cfg, (uint64_t)o->c.seed, err);
    if (st) return st;
    p->g.cond = strcmp(o->cond, "image") ? VLM_GEN_TEXT : VLM_GEN_IMAGE;
    snprintf(p->g.template_, sizeof p->g.template_, "%s", o->tmpl);
    snprintf(p->g.train_data, sizeof p->g.train_data, "%s", o->train);
    if ((st = vlm_gen_data_load(&p->g, o->train, o->classnames, &o->dec, o->limit, &p->d, err))) return st;
    if (p->d.skip_note[0]) vlm_trainer_logf(t, "generate: %s", p->d.skip_note);
    vlm_dit_set_cond_stats(&p->g.dit, p->d.emb, p->d.n_emb); // (restored as saved when resuming)
    if ((st = vlm_diff_schedule_init(&p->sch, cfg.schedule, cfg.timesteps, err))) return st;
    p->have_sch = 1;
    return vlm_gen_ema_init(&p->g, err);
}

// Step buffers, the timestep density and the run's length.
static vlm_status prepare(gen_task *p, vlm_trainer *t, vlm_error *err) {
    const vlm_generate_opts *o = p->o;
    const int S = p->g.dit.cfg.image_size, C = p->g.dit.cfg.in_channels, E = p->g.dit.cfg.cond_dim, B = (int)o->c.batch;
    const int64_t D = (int64_t)C * S * S;
    vlm_gen_step_buf *b = &p->b;
    *b = (vlm_gen_step_buf){.B = B, .R = t->rank, .GB = B * t->world, .seed = (uint64_t)o->c.seed, .hflip = o->hflip,
                            .p_uncond = o->p_uncond, .min_snr = o->min_snr,
                            .t_mode = (vlm_t_sampling)vlm_t_sampling_parse(o->t_sampling)};
    b->x0 = malloc(sizeof(float) * (size_t)B * D);
    b->xt = malloc(sizeof(float) * (size_t)B * D);
    b->eps = malloc(sizeof(float) * (size_t)B * D);
    b->emb = malloc(sizeof(float) * (size_t)B * E);
    b->sw = malloc(sizeof(float) * (size_t)B);
    b->tt = malloc(sizeof(int32_t) * (size_t)B);
    b->drop = malloc((size_t)B);
    p->order = malloc(sizeof(uint32_t) * (size_t)p->d.n);
    p->t_cdf = malloc(sizeof(double) * (size_t)p->sch.T);
    if (!b->x0 || !b->xt || !b->eps || !b->emb || !b->sw || !b->tt || !b->drop || !p->order || !p->t_cdf)
        return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    // importance: t ~ w_t / sum(w), each sample weighted by mean(w) (vlm_diff_weight_cdf);
    // stratified: the uniform density (gamma 0), weights as --min-snr gives them
    b->t_mean_w = vlm_diff_weight_cdf(&p->sch, b->t_mode == VLM_T_IMPORTANCE ? o->min_snr : 0, p->t_cdf);
    b->t_cdf = p->t_cdf;
    p->steps_per_epoch = (p->d.n + b->GB - 1) / b->GB;
    p->epoch_shuffled = -1;
    t->cfg.total_steps = o->c.max_steps ? o->c.max_steps : (o->c.max_minutes > 0 ? INT64_MAX / 4 : p->steps_per_epoch * o->c.epochs);
    t->cfg.epoch_size = p->steps_per_epoch * B;
    snprintf(p->args_json, sizeof p->args_json,
             "{\"train_data\": \"%s\", \"cond\": \"%s\", \"template\": \"%s\", \"batch_size\": %d, \"lr\": %g, \"wd\": %g, "
             "\"warmup\": %lld, \"lr_schedule\": \"%s\", \"p_uncond\": %g, \"ema_decay\": %g, \"hflip\": %g, \"seed\": %lld, "
             "\"max_minutes\": %g, \"min_snr\": %g, \"t_sampling\": \"%s\"}",
             o->train, o->cond, o->tmpl, B, o->c.lr, o->c.wd, o->c.warmup, o->c.lr_scheduler, o->p_uncond, o->ema, o->hflip,
             o->c.seed, o->c.max_minutes, o->min_snr, o->t_sampling);
    vlm_status cst = vlm_ctx_init(&p->c, 256u << 20, (uint64_t)o->c.seed, err);
    p->c.precision = (int)o->c.precision;
    return cst;
}

static vlm_status train(gen_task *p, vlm_trainer *t, vlm_generate_result *r, vlm_error *err) {
    const vlm_generate_opts *o = p->o;
    double t_setup = vlm_now();
    vlm_status st;
    if ((st = build(p, t, err))) return st;
    const vlm_dit_cfg *cfg = &p->g.dit.cfg;
    char name[256];
    if (o->c.name) snprintf(name, sizeof name, "%s", o->c.name);
    else
        snprintf(name, sizeof name, "gen-s%d-p%d-w%d-l%d-b%lld-seed%lld", cfg->image_size, cfg->patch_size, cfg->width,
                 cfg->layers, o->c.batch, o->c.seed);
    t->cfg.name = name;
    if ((st = vlm_trainer_init(t, &t->cfg, err))) return st;
    if ((st = prepare(p, t, err))) return st;
    if ((st = vlm_trainer_begin(t, &p->g.dit.ps, &p->c, &gen_ops, p, err))) return st;
    const int S = cfg->image_size, C = cfg->in_channels;
    if (t->world > 1)
        vlm_trainer_logf(t, "generate train: data-parallel over %d ranks: %lld images per rank, global batch %d", t->world,
                         o->c.batch, p->b.GB);
    vlm_trainer_logf(t,
                     "generate train: %" PRId64 " images at %dx%dx%d, %" PRId64 " distinct conditions (%s), DiT %d layers x %d wide "
                     "(patch %d, %d tokens%s), %lld params, batch %lld, %" PRId64 " steps/epoch; setup %.1f s; run dir %s",
                     p->d.n, C, S, S, p->d.n_emb, o->cond, cfg->layers, cfg->width, cfg->patch_size,
                     (S / cfg->patch_size) * (S / cfg->patch_size), cfg->cond_tokens ? " + cond tokens" : "",
                     (long long)p->g.dit.ps.total, o->c.batch, p->steps_per_epoch, vlm_now() - t_setup, t->run.dir);
    if ((st = vlm_trainer_run(t, err))) return st;
    r->steps = t->st.step, r->minutes = t->st.elapsed_s / 60, r->loss = t->st.last_loss;
    snprintf(r->checkpoint, sizeof r->checkpoint, "%s", t->run.model);
    if (!t->io) return VLM_OK; // every rank holds the same weights; rank 0 samples and writes
    vlm_trainer_logf(t, "generate train: %s after %" PRId64 " steps, %.1f min; model (EMA weights) %s", t->stop_reason,
                     t->st.step, t->st.elapsed_s / 60, t->run.model);
    if (t->st.step > 0 && o->grid_n > 0 && p->g.cond == VLM_GEN_TEXT) {
        vlm_run_path(&t->run, "samples.png", r->grid, sizeof r->grid);
        memcpy(p->g.dit.ps.data, p->g.ema, sizeof(float) * (size_t)p->g.dit.ps.total); // sample with the EMA weights
        if ((st = end_grid(&p->g, &p->d, (int)o->grid_n, r->grid, err))) return st;
        vlm_trainer_logf(t, "generate train: samples of the first prompts in %s", r->grid);
    }
    return VLM_OK;
}

vlm_status vlm_generate_train(const vlm_generate_opts *o, vlm_generate_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    vlm_status st = vlm_generate_opts_check(o, err);
    if (st) return st;
    gen_task p;
    memset(&p, 0, sizeof p);
    p.o = o;
    vlm_trainer t;
    memset(&t, 0, sizeof t);
    vlm_train_common_cfg(&o->c, "generate train", "img", NULL, &t.cfg);
    t.cfg.log_mean_loss = 1;
    t.io = !o->c.dist || o->c.dist->rank == 0;
    st = train(&p, &t, r, err);
    vlm_trainer_free(&t);
    if (p.c.arena.head) vlm_ctx_free(&p.c);
    if (p.have_sch) vlm_diff_schedule_free(&p.sch);
    vlm_gen_free(&p.g);
    vlm_gen_data_free(&p.d);
    vlm_gen_step_buf *b = &p.b;
    free(b->x0), free(b->xt), free(b->eps), free(b->emb), free(b->sw), free(b->tt), free(b->drop), free(p.order), free(p.t_cdf);
    return st;
}
