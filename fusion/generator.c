// Generator = frozen CLIP + DiT denoiser: model/state files, EMA, guided
// sampling and the Fréchet distance used by `vlm generate eval`.
#include "fusion/generator.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"

vlm_status vlm_gen_from_clip(vlm_gen *g, const char *clip_path, vlm_dit_cfg cfg, uint64_t seed, vlm_error *err) {
    memset(g, 0, sizeof *g);
    snprintf(g->template_, sizeof g->template_, "{}");
    vlm_status st = vlm_ckpt_load_model(clip_path, &g->clip, &g->tokenizer_text, err);
    if (st) return st;
    g->have_clip = 1;
    if (!g->tokenizer_text) {
        vlm_gen_free(g);
        return vlm_errorf(err, VLM_ERR_FORMAT, VLM_NO_TOKENIZER, clip_path);
    }
    cfg.cond_dim = g->clip.cfg.embed_dim;
    if ((st = vlm_dit_init(&g->dit, &cfg, err))) {
        vlm_gen_free(g);
        return st;
    }
    g->have_dit = 1;
    vlm_dit_init_weights(&g->dit, seed);
    return VLM_OK;
}

void vlm_gen_free(vlm_gen *g) {
    if (g->have_dit) vlm_dit_free(&g->dit);
    if (g->have_clip) vlm_clip_free(&g->clip);
    free(g->tokenizer_text);
    free(g->ema);
    memset(g, 0, sizeof *g);
}

vlm_status vlm_gen_ema_init(vlm_gen *g, vlm_error *err) {
    size_t n = (size_t)g->dit.ps.total;
    free(g->ema);
    g->ema = malloc(sizeof(float) * n);
    if (!g->ema) return vlm_errorf(err, VLM_ERR_OOM, "generator: cannot allocate the EMA (%zu floats)", n);
    memcpy(g->ema, g->dit.ps.data, sizeof(float) * n);
    return VLM_OK;
}

void vlm_gen_ema_update(vlm_gen *g, float decay, int64_t step) {
    float d = (float)(1 + step) / (float)(10 + step);
    if (d > decay) d = decay;
    const float *w = g->dit.ps.data;
    float *e = g->ema;
    int64_t n = g->dit.ps.total;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) e[i] = d * e[i] + (1 - d) * w[i];
}

static const char *cond_name(vlm_gen_cond c) { return c == VLM_GEN_IMAGE ? "image" : "text"; }

vlm_status vlm_gen_save(const char *path, const vlm_gen *g, const float *weights, int64_t step, vlm_error *err) {
    const vlm_params *dp = &g->dit.ps, *cp = &g->clip.ps;
    int n = dp->n + cp->n;
    vlm_st_tensor *t = calloc((size_t)n, sizeof *t);
    char *cfg = vlm_dit_cfg_to_json(&g->dit.cfg), *ccfg = vlm_clip_cfg_to_json(&g->clip.cfg);
    vlm_status st = VLM_OK;
    if (!t || !cfg || !ccfg) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    } else {
        const float *w = weights ? weights : dp->data;
        for (int i = 0; i < dp->n; i++) {
            const vlm_param *p = &dp->p[i];
            t[i] = (vlm_st_tensor){p->name, VLM_F32, p->t.ndim, p->t.shape, (void *)(w + p->offset)};
        }
        for (int i = 0; i < cp->n; i++) {
            const vlm_param *p = &cp->p[i];
            t[dp->n + i] = (vlm_st_tensor){p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data};
        }
        char sstep[32];
        snprintf(sstep, sizeof sstep, "%" PRId64, step);
        const char *keys[8] = {"format", "config", "clip_config", "tokenizer", "cond", "template", "step", "train_data"};
        const char *vals[8] = {"vlm-diffusion", cfg, ccfg, g->tokenizer_text, cond_name(g->cond), g->template_, sstep,
                               g->train_data};
        st = vlm_st_write(path, t, n, keys, vals, 8, err);
    }
    free(t);
    free(cfg);
    free(ccfg);
    return st;
}

vlm_status vlm_gen_load(const char *path, vlm_gen *g, vlm_error *err) {
    memset(g, 0, sizeof *g);
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    const char *fmt = vlm_st_meta(&f, "format"), *cfg = vlm_st_meta(&f, "config"), *ccfg = vlm_st_meta(&f, "clip_config"),
               *tok = vlm_st_meta(&f, "tokenizer"), *cond = vlm_st_meta(&f, "cond"), *tmpl = vlm_st_meta(&f, "template"),
               *tdata = vlm_st_meta(&f, "train_data");
    vlm_dit_cfg dc;
    vlm_clip_cfg cc;
    if (!fmt || strcmp(fmt, "vlm-diffusion") || !cfg || !ccfg || !tok) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a vlm diffusion model file (format \"%s\")", path, fmt ? fmt : "none");
    } else if (cond && strcmp(cond, "text") && strcmp(cond, "image")) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: unknown conditioning \"%s\"", path, cond);
    } else if ((st = vlm_dit_cfg_from_json(cfg, &dc, err)) || (st = vlm_clip_cfg_from_json(ccfg, &cc, err))) {
        vlm_error_prefix(err, "%s", path);
    } else if (!(st = vlm_dit_init(&g->dit, &dc, err))) {
        g->have_dit = 1;
        if (!(st = vlm_clip_init(&g->clip, &cc, err))) {
            g->have_clip = 1;
            for (int i = 0; i < g->dit.ps.n && !st; i++) {
                vlm_param *p = &g->dit.ps.p[i];
                if ((st = vlm_st_get(&f, p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data, err)))
                    vlm_error_prefix(err, "%s", path);
            }
            if (!st) st = vlm_clip_load_weights_st(&g->clip, &f, path, err);
            if (!st && dc.cond_dim != cc.embed_dim)
                st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: DiT cond_dim %d differs from the CLIP's embed_dim %d", path,
                                dc.cond_dim, cc.embed_dim);
            if (!st) {
                g->tokenizer_text = strdup(tok);
                g->cond = cond && !strcmp(cond, "image") ? VLM_GEN_IMAGE : VLM_GEN_TEXT;
                snprintf(g->template_, sizeof g->template_, "%s", tmpl ? tmpl : "{}");
                snprintf(g->train_data, sizeof g->train_data, "%s", tdata ? tdata : "");
                if (!g->tokenizer_text) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            }
        }
    }
    vlm_st_free(&f);
    if (st) vlm_gen_free(g);
    return st;
}

vlm_status vlm_gen_save_state(const char *path, const vlm_gen *g, const vlm_train_state *s, const char *args_json,
                              vlm_error *err) {
    char *cfg = vlm_dit_cfg_to_json(&g->dit.cfg);
    if (!cfg) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    const char *keys[3] = {"config", "args", "cond"};
    const char *vals[3] = {cfg, args_json ? args_json : "{}", cond_name(g->cond)};
    vlm_status st = vlm_state_save_with(path, &g->dit.ps, s, "vlm-diffusion-state", keys, vals, 3, g->ema ? "ema" : NULL,
                                        g->ema, err);
    free(cfg);
    return st;
}

vlm_status vlm_gen_load_state(const char *path, vlm_gen *g, vlm_train_state *s, vlm_error *err) {
    vlm_status st = VLM_OK;
    if (!g->ema && (st = vlm_gen_ema_init(g, err))) return st;
    return vlm_state_load_with(path, &g->dit.ps, s, "vlm-diffusion-state", "ema", g->ema, err);
}

void vlm_gen_sample_opts_default(vlm_gen_sample_opts *o) {
    *o = (vlm_gen_sample_opts){.steps = 50, .ddpm = 0, .guidance = 3.0f, .guidance_lo = 0.0f,
                               .guidance_hi = INFINITY, .clip_x0 = 1, .seed = 0, .first_index = 0,
                               .batch = 64, .guide = NULL, .autoguidance = 1.0f, .guidance_rescale = 0.0f};
}

// Rejects sampler options that are out of range or a guide that does not
// match the generator's image, channels, condition, T and schedule.
static vlm_status check_sample_opts(const vlm_gen *g, const vlm_gen_sample_opts *o, vlm_error *err) {
    const vlm_dit_cfg *cf = &g->dit.cfg;
    const int C = cf->in_channels, S = cf->image_size, E = cf->cond_dim, T = cf->timesteps;
    if (o->steps < 1 || o->steps > T)
        return vlm_errorf(err, VLM_ERR_ARG, "sample: steps %d outside [1, %d]", o->steps, T);
    if (o->batch < 1) return vlm_errorf(err, VLM_ERR_ARG, "sample: batch %d < 1", o->batch);
    if (!(o->guidance_lo >= 0) || !(o->guidance_hi > o->guidance_lo))
        return vlm_errorf(err, VLM_ERR_ARG, "sample: guidance interval (%g, %g] is empty or negative",
                          (double)o->guidance_lo, (double)o->guidance_hi);
    const vlm_dit_cfg *gc = o->guide ? &o->guide->cfg : NULL;
    if (gc && (gc->image_size != S || gc->in_channels != C || gc->cond_dim != E || gc->timesteps != T ||
               gc->schedule != cf->schedule))
        return vlm_errorf(err, VLM_ERR_ARG,
                          "sample: the autoguidance guide (image %d, channels %d, cond %d, T %d, %s schedule) does not "
                          "match the generator (image %d, channels %d, cond %d, T %d, %s schedule)",
                          gc->image_size, gc->in_channels, gc->cond_dim, gc->timesteps,
                          vlm_diff_kind_name(gc->schedule), S, C, E, T,
                          vlm_diff_kind_name(cf->schedule));
    if (!(o->autoguidance >= 0) || !isfinite(o->autoguidance))
        return vlm_errorf(err, VLM_ERR_ARG, "sample: autoguidance %g is not a finite value >= 0", (double)o->autoguidance);
    if (!(o->guidance_rescale >= 0 && o->guidance_rescale <= 1))
        return vlm_errorf(err, VLM_ERR_ARG, "sample: guidance rescale %g outside [0, 1]", (double)o->guidance_rescale);
    return VLM_OK;
}

// One vlm_gen_sample run: its constants and buffers (Bmax = o->batch, D = C*S*S).
typedef struct {
    vlm_gen *g;
    const vlm_gen_sample_opts *o;
    vlm_diff_schedule sch;
    int C, S, E;
    int64_t D;
    int autog;        // the autoguidance guide runs (guide set, weight != 1)
    float ag;         // its weight - 1
    int both;         // conditional and unconditional rows (guidance not 0 or 1)
    int uncond_only;  // guidance 0
    int rows;         // 2 with both, else 1
    int *ts;          // [steps] the timesteps, T-1 first
    float *x, *eb;    // [rows * Bmax, D] x_t (rows [B, 2B) copy rows [0, B)), [rows * Bmax, E] conditions
    float *z, *eps;   // [D] DDPM noise, [Bmax, D] the guided eps
    uint8_t *drop;    // [rows * Bmax] 1: the row is unconditional
    int32_t *tt;      // [rows * Bmax] t per row
    vlm_rng *rng;     // [Bmax] each sample's own stream
} sampler;

// Guidance rescale on the guided eps [B, D] in place: x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab):
// x0_g *= phi std(x0_c) / std(x0_g) + (1 - phi), then back to eps. x [B, D] is x_t, yo [B, D] eps_c.
static void rescale_guided(const float *x, const float *yo, float *eps, int B, int64_t D, double ab, double phi) {
    const double sa = sqrt(ab), s1 = sqrt(1.0 - ab);
    for (int b = 0; b < B; b++) {
        const float *xb = x + b * D, *ec = yo + b * D;
        float *eg = eps + b * D;
        double mc = 0, qc = 0, mg = 0, qg = 0;
        for (int64_t j = 0; j < D; j++) {
            double a0 = (xb[j] - s1 * ec[j]) / sa, g0 = (xb[j] - s1 * eg[j]) / sa;
            mc += a0, qc += a0 * a0, mg += g0, qg += g0 * g0;
        }
        mc /= (double)D, mg /= (double)D;
        double vc = qc / (double)D - mc * mc, vg = qg / (double)D - mg * mg;
        if (!(vg > 1e-12) || !(vc >= 0)) continue;
        double f = phi * sqrt(vc / vg) + (1.0 - phi);
        for (int64_t j = 0; j < D; j++) {
            double g0 = (xb[j] - s1 * eg[j]) / sa * f;
            eg[j] = (float)((xb[j] - sa * g0) / s1);
        }
    }
}

// The (guided) noise prediction at timestep t for the B samples in sp->x: sp->eps [B, D].
static vlm_status predict_eps(sampler *sp, vlm_ctx *c, int B, int t, vlm_error *err) {
    const vlm_gen_sample_opts *o = sp->o;
    const int C = sp->C, S = sp->S, E = sp->E, R = sp->rows * B;
    const int64_t D = sp->D;
    // outside the guidance interval: the conditional rows only (R = B)
    double ab = sp->sch.alphas_cumprod[t], sigma = sqrt((1.0 - ab) / ab);
    int guide = sp->both && sigma > o->guidance_lo && sigma <= o->guidance_hi, Rk = guide ? R : B;
    if (guide) memcpy(sp->x + (int64_t)B * D, sp->x, sizeof(float) * (size_t)B * D);
    for (int r = 0; r < Rk; r++) sp->tt[r] = t;
    vlm_ctx_reset(c);
    vlm_tensor *xin = vlm_tensor_wrap(c, VLM_F32, 4, (int64_t[]){Rk, C, S, S}, sp->x, NULL);
    vlm_tensor *ein = vlm_tensor_wrap(c, VLM_F32, 2, (int64_t[]){Rk, E}, sp->eb, NULL);
    vlm_tensor *y = vlm_dit_forward(c, &sp->g->dit, xin, sp->tt, ein, sp->drop);
    if (!y) {
        *err = c->err;
        return c->status;
    }
    const float *yo = vlm_f32(y);
    float *eps = sp->eps;
    // guidance: eps = eps_u + s (eps_c - eps_u)
    for (int64_t j = 0; j < (int64_t)B * D; j++)
        eps[j] = guide ? yo[(int64_t)B * D + j] + o->guidance * (yo[j] - yo[(int64_t)B * D + j]) : yo[j];
    if (guide && o->guidance_rescale > 0) rescale_guided(sp->x, yo, eps, B, D, ab, o->guidance_rescale);
    if (sp->autog) {
        // the guide on the conditional rows [0, B) (same x_t, t, condition); yo stays
        // valid: the arena is not reset between the two passes
        vlm_tensor *xg = vlm_tensor_wrap(c, VLM_F32, 4, (int64_t[]){B, C, S, S}, sp->x, NULL);
        vlm_tensor *eg = vlm_tensor_wrap(c, VLM_F32, 2, (int64_t[]){B, E}, sp->eb, NULL);
        vlm_tensor *yg = vlm_dit_forward(c, (vlm_dit *)o->guide, xg, sp->tt, eg, sp->drop);
        if (!yg) {
            vlm_status st = c->status;
            *err = c->err;
            vlm_error_prefix(err, "autoguidance guide");
            return st;
        }
        const float *go = vlm_f32(yg);
        for (int64_t j = 0; j < (int64_t)B * D; j++) eps[j] += sp->ag * (yo[j] - go[j]);
    }
    return VLM_OK;
}

// Samples out [B, D] for conditions emb [B, E] (global sample index first_index + i0 + b):
// x_T from each sample's stream, o->steps reverse steps, clamped to [-1, 1].
static vlm_status sample_batch(sampler *sp, vlm_ctx *c, const float *emb, int64_t i0, int B, float *out,
                               vlm_error *err) {
    const vlm_gen_sample_opts *o = sp->o;
    const int E = sp->E, R = sp->rows * B;
    const int64_t D = sp->D;
    float *x = sp->x;
    vlm_status st = VLM_OK;
    // x_T ~ N(0, I) from each sample's own stream (the DDPM noise continues it)
    for (int b = 0; b < B; b++) {
        vlm_rng_init(&sp->rng[b], o->seed, VLM_RNG_SAMPLE, (uint64_t)(o->first_index + i0 + b));
        for (int64_t j = 0; j < D; j++) x[b * D + j] = vlm_rng_normal(&sp->rng[b]);
    }
    for (int r = 0; r < R; r++) {
        int b = r % B;
        memcpy(sp->eb + (int64_t)r * E, emb + (i0 + b) * E, sizeof(float) * (size_t)E);
        sp->drop[r] = sp->uncond_only || r >= B; // rows [B, 2B): the unconditional half
    }
    for (int k = 0; k < o->steps && !st; k++) {
        int t = sp->ts[k], tp = k + 1 < o->steps ? sp->ts[k + 1] : -1;
        if ((st = predict_eps(sp, c, B, t, err))) break;
        for (int b = 0; b < B; b++) {
            float *xb = x + b * D, *eb_ = sp->eps + b * D;
            if (o->clip_x0) vlm_diff_clip_eps(&sp->sch, t, xb, eb_, D);
            if (o->ddpm) {
                for (int64_t j = 0; j < D; j++) sp->z[j] = tp >= 0 ? vlm_rng_normal(&sp->rng[b]) : 0.0f;
                vlm_diff_ddpm_step_to(&sp->sch, t, tp, xb, eb_, sp->z, xb, D);
            } else {
                vlm_diff_ddim_step(&sp->sch, t, tp, xb, eb_, xb, D);
            }
        }
    }
    for (int64_t j = 0; j < (int64_t)B * D; j++) {
        float v = x[j];
        out[j] = v < -1 ? -1 : v > 1 ? 1 : v;
    }
    return st;
}

vlm_status vlm_gen_sample(vlm_gen *g, const float *emb, int64_t n, const vlm_gen_sample_opts *o, float *out,
                          vlm_error *err) {
    const vlm_dit_cfg *cf = &g->dit.cfg;
    vlm_status st = check_sample_opts(g, o, err);
    if (st) return st;
    sampler sp = {.g = g, .o = o, .C = cf->in_channels, .S = cf->image_size, .E = cf->cond_dim};
    const int C = sp.C, S = sp.S, E = sp.E, T = cf->timesteps;
    const int64_t D = (int64_t)C * S * S;
    sp.D = D;
    sp.autog = o->guide && o->autoguidance != 1.0f;
    sp.ag = o->autoguidance - 1.0f;
    sp.both = o->guidance != 1.0f && o->guidance != 0.0f, sp.uncond_only = o->guidance == 0.0f;
    const int rows = sp.rows = sp.both ? 2 : 1;
    if ((st = vlm_diff_schedule_init(&sp.sch, cf->schedule, T, err))) return st;
    int Bmax = o->batch;
    sp.ts = malloc(sizeof(int) * (size_t)o->steps);
    sp.x = malloc(sizeof(float) * (size_t)(rows * Bmax) * D), sp.eb = malloc(sizeof(float) * (size_t)(rows * Bmax) * E);
    sp.z = malloc(sizeof(float) * (size_t)D), sp.eps = malloc(sizeof(float) * (size_t)Bmax * D);
    sp.drop = malloc((size_t)(rows * Bmax));
    sp.tt = malloc(sizeof(int32_t) * (size_t)(rows * Bmax));
    sp.rng = malloc(sizeof(vlm_rng) * (size_t)Bmax);
    vlm_ctx c;
    int have_ctx = 0;
    if (!sp.ts || !sp.x || !sp.eb || !sp.z || !sp.eps || !sp.drop || !sp.tt || !sp.rng) {
        st = vlm_errorf(err, VLM_ERR_OOM, "sample: out of memory");
        goto done;
    }
    vlm_diff_timesteps(T, o->steps, sp.ts);
    if ((st = vlm_ctx_init(&c, 64u << 20, o->seed, err))) goto done;
    have_ctx = 1;
    c.grad_enabled = 0;
    c.training = 0;
    for (int64_t i0 = 0; i0 < n && !st; i0 += Bmax) {
        int B = n - i0 < Bmax ? (int)(n - i0) : Bmax;
        st = sample_batch(&sp, &c, emb, i0, B, out + i0 * D, err);
    }
done:
    if (have_ctx) vlm_ctx_free(&c);
    vlm_diff_schedule_free(&sp.sch);
    free(sp.ts), free(sp.x), free(sp.eb), free(sp.z), free(sp.eps), free(sp.drop), free(sp.tt), free(sp.rng);
    return st;
}

void vlm_gen_to_rgb(const float *x, int64_t n, int C, int S, uint8_t *rgb) {
    const int64_t P = (int64_t)S * S;
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < P; p++)
            for (int ch = 0; ch < 3; ch++) {
                float v = x[(i * C + (C == 1 ? 0 : ch)) * P + p];
                float u = (v + 1.0f) * 127.5f;
                u = u < 0 ? 0 : u > 255 ? 255 : u;
                rgb[(i * P + p) * 3 + ch] = (uint8_t)lrintf(u);
            }
}

void vlm_gen_from_rgb(const uint8_t *rgb, int C, int S, float *x) {
    const int64_t P = (int64_t)S * S;
    for (int64_t p = 0; p < P; p++) {
        const uint8_t *q = rgb + p * 3;
        if (C == 1)
            x[p] = ((float)q[0] + (float)q[1] + (float)q[2]) / (3.0f * 127.5f) - 1.0f;
        else
            for (int ch = 0; ch < 3; ch++) x[ch * P + p] = (float)q[ch] / 127.5f - 1.0f;
    }
}
