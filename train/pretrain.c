// Contrastive CLIP pretraining on the trainer layer (see pretrain.h).
#include "train/pretrain.h"
#include "text/lm.h"
#include "core/clock.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "eval/embed.h"
#include "fusion/checkpoint.h"
#include "losses/contrastive.h"
#include "text/tokenizer.h"

void vlm_pretrain_opts_default(vlm_pretrain_opts *o) {
    memset(o, 0, sizeof *o);
    vlm_train_common_default(&o->c);
    o->c.batch = 64, o->c.epochs = 1, o->c.warmup = 100, o->c.save_every = 200, o->c.log_every = 10;
    o->c.lr = 5e-4, o->c.wd = 0.2, o->c.beta2 = 0.98, o->c.eps = 1e-6;
    o->dtype = "auto", o->img_key = "filepath", o->cap_key = "title", o->model = NULL, o->sep = '\t';
    o->caption_weight = 2;
    o->accum = 1, o->save_freq = 1, o->keep = 3, o->nsynth = 4096, o->cooldown_power = 1.0;
    o->text_buckets = 4;
    vlm_train_aug_default(&o->aug);
    vlm_decode_opts_default(&o->dec);
}

// ---- the loss and the step ----------------------------------------------------
vlm_tensor *vlm_clip_batch_loss(vlm_ctx *c, vlm_clip *m, vlm_tensor *fi, vlm_tensor *ft, const int32_t *groups,
                                int siglip, vlm_dist *d) {
    vlm_tensor *scale = vlm_op_act(c, vlm_params_get(&m->ps, m->logit_scale), VLM_ACT_EXP);
    if (!d || d->world <= 1) {
        if (siglip)
            return vlm_loss_siglip(c, vlm_op_l2norm(c, fi), vlm_op_l2norm(c, ft), scale,
                                   vlm_params_get(&m->ps, m->logit_bias), groups);
        return vlm_loss_clip(c, vlm_clip_logits(c, m, fi, ft), groups);
    }
    vlm_tensor *a = vlm_op_l2norm(c, fi), *b = vlm_op_l2norm(c, ft); // [B, E]
    if (!a || !b) return NULL;
    int64_t off = (int64_t)d->rank * a->shape[0];
    vlm_tensor *all_t = vlm_op_all_gather(c, b, d); // [G, E]
    if (siglip) return vlm_loss_siglip_local(c, a, all_t, scale, vlm_params_get(&m->ps, m->logit_bias), off, groups);
    vlm_tensor *all_i = vlm_op_all_gather(c, a, d);                                                  // [G, E]
    vlm_tensor *li = vlm_op_mul(c, vlm_op_matmul(c, a, vlm_view_transpose(c, all_t, 0, 1)), scale); // [B, G]
    vlm_tensor *lt = vlm_op_mul(c, vlm_op_matmul(c, b, vlm_view_transpose(c, all_i, 0, 1)), scale); // [B, G]
    return vlm_loss_clip_local(c, li, lt, off, groups);
}

static vlm_tensor *wrap_images(vlm_ctx *c, float *p, int B, int S) {
    int64_t sh[4] = {B, 3, S, S};
    return vlm_tensor_wrap(c, VLM_F32, 4, sh, p, NULL);
}

static vlm_tensor *wrap_ids(vlm_ctx *c, int32_t *p, int B, int T) {
    int64_t sh[2] = {B, T};
    return vlm_tensor_wrap(c, VLM_I32, 2, sh, p, NULL);
}

// K > 1: the no-grad pass that caches every micro-batch's features [K*B, E].
static vlm_status cache_features(vlm_ctx *c, vlm_clip *m, float *images, int32_t *ids, const vlm_clip_step_args *a,
                                 vlm_error *err) {
    const int B = a->B, S = m->cfg.vision.image_size, T = m->cfg.text.context_length, E = m->cfg.embed_dim;
    for (int j = 0; j < a->K; j++) {
        vlm_ctx_reset(c);
        c->grad_enabled = 0;
        vlm_rng pd;
        vlm_rng_init(&pd, a->seed, VLM_RNG_DROPOUT, (uint64_t)(a->step * a->K + j));
        vlm_tensor *fi = vlm_clip_encode_image(c, m, wrap_images(c, images + (int64_t)j * B * 3 * S * S, B, S), &pd);
        vlm_tensor *ft = vlm_clip_encode_text(c, m, wrap_ids(c, ids + (int64_t)j * B * T, B, T));
        if (!fi || !ft) {
            *err = c->err;
            c->grad_enabled = 1;
            return c->status;
        }
        memcpy(a->cache_i + (int64_t)j * B * E, vlm_f32(fi), sizeof(float) * (size_t)B * E);
        memcpy(a->cache_t + (int64_t)j * B * E, vlm_f32(ft), sizeof(float) * (size_t)B * E);
    }
    c->grad_enabled = 1;
    return VLM_OK;
}

// Micro-batch j's fresh features between the cached ones before and after it: [K*B, E].
static vlm_tensor *with_cached(vlm_ctx *c, vlm_tensor *f, const float *cache, int j, const vlm_clip_step_args *a, int E) {
    vlm_tensor *p[3];
    int np = 0;
    int64_t sb[2] = {(int64_t)j * a->B, E}, sa[2] = {(int64_t)(a->K - 1 - j) * a->B, E};
    if (j > 0) p[np++] = vlm_tensor_wrap(c, VLM_F32, 2, sb, (float *)cache, NULL);
    p[np++] = f;
    if (j < a->K - 1) p[np++] = vlm_tensor_wrap(c, VLM_F32, 2, sa, (float *)cache + (int64_t)(j + 1) * a->B * E, NULL);
    return vlm_op_concat(c, p, np, 0);
}

// CoCa's step (K = 1): the contrastive loss plus caption_weight times the
// multimodal decoder's caption loss on the same forward pass.
static vlm_tensor *coca_loss(vlm_ctx *c, vlm_clip *m, vlm_tensor *images, vlm_tensor *ids, const int32_t *groups,
                             const vlm_clip_step_args *a, vlm_rng *pd) {
    vlm_tensor *itok = NULL, *ttok = NULL;
    int32_t *eot = NULL;
    vlm_tensor *fi = vlm_clip_encode_image_tokens(c, m, images, pd, &itok);
    if (a->ov) a->ov->boundary = c->tape;
    vlm_tensor *ft = vlm_clip_encode_text_tokens(c, m, ids, 0, &ttok, &eot);
    vlm_tensor *lc = vlm_clip_batch_loss(c, m, fi, ft, groups, a->siglip, a->dist);
    if (!lc || !ttok) return NULL;
    const int B = (int)ttok->shape[0], T = (int)ttok->shape[1], Tc = (int)ids->shape[1];
    int32_t *cut = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)B * T); // ids [B, T'] of [B, Tc]
    if (!cut) return vlm_ctx_fail(c, VLM_ERR_OOM, "coca: arena out of memory");
    for (int b = 0; b < B; b++) memcpy(cut + (size_t)b * T, (int32_t *)ids->data + (size_t)b * Tc, sizeof(int32_t) * (size_t)T);
    vlm_tensor *cap = vlm_caption_loss(c, vlm_mm_forward(c, &m->dec, &m->ps, ttok, itok), cut, eot, B, T);
    return vlm_op_add(c, lc, vlm_op_scale(c, cap, a->caption_weight));
}

vlm_status vlm_clip_train_step(vlm_ctx *c, vlm_clip *m, float *images, int32_t *ids, const int32_t *groups,
                               const vlm_clip_step_args *a, double *loss, vlm_error *err) {
    const int B = a->B, K = a->K, S = m->cfg.vision.image_size, T = m->cfg.text.context_length, E = m->cfg.embed_dim;
    const int W = a->dist ? a->dist->world : 1, R = a->dist ? a->dist->rank : 0;
    if (K > 1 && cache_features(c, m, images, ids, a, err)) return err->status;
    for (int j = 0; j < K; j++) {
        vlm_ctx_reset(c);
        vlm_rng pd;
        vlm_rng_init(&pd, a->seed, VLM_RNG_DROPOUT, (uint64_t)((a->step * K + j) * W + R));
        if (m->has_dec && K == 1) {
            vlm_tensor *l = coca_loss(c, m, wrap_images(c, images, B, S), wrap_ids(c, ids, B, T), groups, a, &pd);
            if (!l || vlm_backward(c, l)) {
                *err = c->err;
                return c->status ? c->status : VLM_ERR_STATE;
            }
            *loss = vlm_f32(l)[0];
            return VLM_OK;
        }
        vlm_tensor *fi = vlm_clip_encode_image(c, m, wrap_images(c, images + (int64_t)j * B * 3 * S * S, B, S), &pd);
        if (a->ov) a->ov->boundary = c->tape; // the text tower's nodes come after this one
        vlm_tensor *ft = vlm_clip_encode_text(c, m, wrap_ids(c, ids + (int64_t)j * B * T, B, T));
        if (K > 1 && fi && ft) {
            fi = with_cached(c, fi, a->cache_i, j, a, E);
            ft = with_cached(c, ft, a->cache_t, j, a, E);
        }
        vlm_tensor *l = vlm_clip_batch_loss(c, m, fi, ft, groups, a->siglip, a->dist);
        if (!l || vlm_backward(c, l)) {
            *err = c->err;
            return c->status ? c->status : VLM_ERR_STATE;
        }
        *loss = vlm_f32(l)[0];
    }
    return VLM_OK;
}

// ---- the task -------------------------------------------------------------------
typedef struct {
    const vlm_pretrain_opts *o;
    vlm_trainer *t;
    vlm_clip m;
    vlm_tokenizer tok;
    char *merges, *args_json;
    vlm_dataset train, val;
    vlm_loader *L;
    vlm_ctx c;
    int synthetic, have_model, have_tok, have_train, have_val, B, K, S, T;
    int64_t epoch_size, synth_pos;
    float *imgbuf, *cache_i, *cache_t;
    int32_t *idbuf, *groups;
    char (*capbuf)[256];
    const char **capptr;
    vlm_retrieval last_r;
    // time spent waiting for the loader (open_clip's "data time"): since the
    // last logged step, and in all (the loader keeps up when both are ~0)
    double wait_since, wait_total;
} pretrain_task;

// Synthetic data: random images, captions from 100 "classes". first: this
// rank's stream position; rank R of W takes the global stream's samples R,
// R + W, ... of each epoch (as the loader shards), so a global batch holds the
// same samples at every world size.
static void synth_batch(int64_t seed, int64_t first, int64_t epoch_size, int R, int W, int B, int S, float *images,
                        char (*caps)[256], const char **cptr) {
    for (int b = 0; b < B; b++) {
        vlm_rng r;
        int64_t q = first + b, idx = (q / epoch_size) * epoch_size * W + (q % epoch_size) * W + R;
        vlm_rng_init(&r, (uint64_t)seed, VLM_RNG_DATA, (uint64_t)idx);
        int cls = (int)(idx * 2654435761u % 100);
        for (int64_t i = 0; i < 3 * S * S; i++) images[(int64_t)b * 3 * S * S + i] = 0.5f * vlm_rng_normal(&r) + 0.02f * (float)(cls % 10);
        snprintf(caps[b], sizeof caps[b], "a synthetic picture of thing %d", cls);
        cptr[b] = caps[b];
    }
}

// The step's K*B pairs into imgbuf/capbuf (copied: the loader reuses its
// buffers); sets the trainer's batch epoch and next position.
static vlm_status gather_batch(pretrain_task *p, vlm_error *err) {
    vlm_trainer *t = p->t;
    const int B = p->B, S = p->S;
    for (int j = 0; j < p->K; j++) {
        float *ib = p->imgbuf + (int64_t)j * B * 3 * S * S;
        if (p->synthetic) {
            int64_t E = p->epoch_size;
            if (p->synth_pos % E + B > E) p->synth_pos += E - p->synth_pos % E;
            synth_batch(p->o->c.seed, p->synth_pos, E, t->rank, t->world, B, S, ib, p->capbuf + (int64_t)j * B,
                        p->capptr + (int64_t)j * B);
            t->batch_epoch = p->synth_pos / E;
            p->synth_pos += B;
            t->next = (vlm_loader_pos){p->synth_pos / E, p->synth_pos % E};
            continue;
        }
        vlm_batch b;
        double t0 = vlm_now();
        vlm_status st = vlm_loader_next(p->L, &b, err);
        double waited = vlm_now() - t0;
        p->wait_since += waited, p->wait_total += waited;
        if (st) return st;
        if (b.n < B) return vlm_errorf(err, VLM_ERR_STATE, "loader returned a short batch (%d of %d)", b.n, B);
        memcpy(ib, b.images, sizeof(float) * (size_t)B * 3 * S * S);
        for (int i = 0; i < B; i++) {
            snprintf(p->capbuf[j * B + i], sizeof p->capbuf[0], "%s", b.captions[i]);
            p->capptr[j * B + i] = p->capbuf[j * B + i];
        }
        t->batch_epoch = b.pos.epoch;
        t->next = b.next;
    }
    return VLM_OK;
}

// FLIP's unmasked tuning: once the last unmasked_tail of the run has begun,
// every patch is kept. The run's progress is the larger of its steps and its
// time budget used (whichever ends it), read from the saved state (steps
// done, elapsed time), so a resumed run switches where the uninterrupted one did.
static float patch_dropout_now(const pretrain_task *p, const vlm_trainer *t) {
    const vlm_pretrain_opts *o = p->o;
    if (!(o->unmasked_tail > 0)) return p->m.visual.cfg.patch_dropout;
    double budget = t->cfg.max_minutes * 60.0, done = 0;
    if (t->cfg.total_steps > 0) done = (double)t->st.step / (double)t->cfg.total_steps;
    if (budget > 0 && t->st.elapsed_s / budget > done) done = t->st.elapsed_s / budget;
    return done >= 1.0 - o->unmasked_tail ? 0.0f : (float)o->patch_dropout;
}

static vlm_status task_step(void *user, vlm_trainer *t, double *loss, vlm_error *err) {
    pretrain_task *p = user;
    const int B = p->B, K = p->K, W = t->world;
    p->m.visual.cfg.patch_dropout = patch_dropout_now(p, t);
    vlm_status st = gather_batch(p, err);
    if (!st) st = vlm_tokenizer_encode_batch(&p->tok, p->capptr, K * B, p->T, p->idbuf, err);
    if (st) return st;
    if (W > 1) { // group ids over the global batch, in rank order (the gathered features' order)
        if ((st = vlm_dist_allgather(t->dist, p->capbuf[0], (int64_t)B * sizeof p->capbuf[0], p->capbuf[B],
                                     "caption all-gather", err)))
            return st;
        memmove(p->capbuf[0], p->capbuf[B], (size_t)B * W * sizeof p->capbuf[0]);
        for (int i = 0; i < B * W; i++) p->capptr[i] = p->capbuf[i];
    }
    vlm_group_ids(p->capptr, (int64_t)K * B * W, p->groups); // duplicate captions are not negatives
    vlm_clip_step_args a = {B, K, p->o->siglip, (uint64_t)p->o->c.seed, t->st.step, p->cache_i, p->cache_t, t->dist,
                            t->cfg.overlap_early > 0 ? &t->overlap : NULL, (float)p->o->caption_weight};
    return vlm_clip_train_step(&p->c, &p->m, p->imgbuf, p->idbuf, p->groups, &a, loss, err);
}

static vlm_status task_load(void *user, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err) {
    (void)t;
    return vlm_ckpt_load_state(path, &((pretrain_task *)user)->m, st, err);
}

static vlm_status task_save(void *user, vlm_trainer *t, vlm_error *err) {
    pretrain_task *p = user;
    // the model file first, the state last: the state is the commit point, so a kill between
    // the two leaves a model file ahead of the state (rewritten when the resumed run gets there),
    // never a finished state with a stale model file
    vlm_status st = vlm_ckpt_save_model(t->run.model, &p->m, p->merges, t->st.step, t->st.epoch, err);
    return st ? st : vlm_ckpt_save_state(t->run.state, &p->m, p->merges, &t->st, p->args_json, err);
}

static vlm_status task_save_epoch(void *user, vlm_trainer *t, const char *path, int64_t epoch, vlm_error *err) {
    pretrain_task *p = user;
    return vlm_ckpt_save_model(path, &p->m, p->merges, t->st.step, epoch, err);
}

static void task_after_update(void *user, vlm_trainer *t) {
    (void)t;
    vlm_clip_clamp_logit_scale(&((pretrain_task *)user)->m);
}

static void task_log_fields(void *user, vlm_trainer *t, char *text, size_t tcap, char *json, size_t jcap) {
    pretrain_task *p = user;
    float scale = expf(vlm_f32(vlm_params_get(&p->m.ps, p->m.logit_scale))[0]);
    // share of the wall time since the last logged step spent waiting for a batch
    double wait = p->wait_since / fmax(vlm_now() - t->t_last, 1e-9);
    p->wait_since = 0;
    snprintf(text, tcap, " | scale %.1f | data %.1f%%", scale, 100.0 * wait);
    snprintf(json, jcap, ", \"logit_scale\": %.4f, \"data_wait\": %.4f", scale, wait);
}

static void retrieval_json(char *buf, size_t cap, const vlm_retrieval *r) {
    snprintf(buf, cap,
             "\"val_n\": %" PRId64 ", \"i2t_r1\": %.4f, \"i2t_r5\": %.4f, \"i2t_r10\": %.4f, \"i2t_mean_rank\": %.2f, "
             "\"i2t_median_rank\": %.1f, \"t2i_r1\": %.4f, \"t2i_r5\": %.4f, \"t2i_r10\": %.4f, \"t2i_mean_rank\": %.2f, "
             "\"t2i_median_rank\": %.1f",
             r->n, r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank, r->t2i_r1, r->t2i_r5,
             r->t2i_r10, r->t2i_mean_rank, r->t2i_median_rank);
}

// Retrieval on the validation pairs (captions that are equal count as one group).
static vlm_status task_validate(void *user, vlm_trainer *t, char *line, size_t lcap, char *json, size_t jcap,
                                double *value, vlm_error *err) {
    pretrain_task *p = user;
    vlm_retrieval *r = &p->last_r;
    float *img = NULL, *txt = NULL;
    int64_t *idx = NULL, n = 0;
    vlm_status st = vlm_clip_encode_dataset(&p->m, &p->val, &p->tok, p->B, (int)p->o->c.workers, &p->o->dec, &img, &txt,
                                            &idx, &n, err);
    if (st) return st;
    const char **caps = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    int32_t *groups = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!caps || !groups) st = vlm_errorf(err, VLM_ERR_OOM, "validation: out of memory");
    for (int64_t i = 0; !st && i < n; i++) caps[i] = vlm_dataset_caption(&p->val, idx[i]);
    if (!st) vlm_group_ids(caps, n, groups);
    if (!st) st = vlm_retrieval_eval(img, txt, n, p->m.cfg.embed_dim, groups, r, err);
    free(caps), free(groups), free(img), free(txt), free(idx);
    if (st) return st;
    snprintf(line, lcap,
             "val step %" PRId64 ": n=%" PRId64 " image->text R@1 %.3f R@5 %.3f R@10 %.3f mean rank %.1f median %.0f | "
             "text->image R@1 %.3f R@5 %.3f R@10 %.3f mean rank %.1f median %.0f",
             t->st.step, r->n, r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank, r->t2i_r1,
             r->t2i_r5, r->t2i_r10, r->t2i_mean_rank, r->t2i_median_rank);
    retrieval_json(json, jcap, r);
    *value = 0.5 * (r->i2t_r1 + r->t2i_r1);
    return VLM_OK;
}

static const vlm_task pretrain_ops = {task_step, task_load, task_save, task_after_update, task_log_fields,
                                      task_validate, task_save_epoch};
static const vlm_task pretrain_ops_noval = {task_step, task_load, task_save, task_after_update, task_log_fields, NULL,
                                            task_save_epoch};

// ---- setup ----------------------------------------------------------------------
static vlm_status open_data(pretrain_task *p, vlm_error *err) {
    const vlm_pretrain_opts *o = p->o;
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.img_key = o->img_key;
    dso.caption_key = o->cap_key;
    dso.caption_sep = o->cap_sep;
    dso.sep = o->sep;
    dso.require_caption = 1;
    vlm_status st;
    if (!p->synthetic) {
        dso.upsampling = o->upsampling; // the training data only
        st = vlm_dataset_open(&p->train, o->train, &dso, err);
        dso.upsampling = NULL;
        if (st) return st;
        p->have_train = 1;
        if (!strcmp(o->dtype, "csv") && p->train.kind != VLM_DS_MANIFEST)
            return vlm_errorf(err, VLM_ERR_ARG, "--dataset-type csv but %s is a %s", o->train,
                              vlm_dataset_kind_name(p->train.kind));
        if (!strcmp(o->dtype, "webdataset") && p->train.kind != VLM_DS_WEBDATASET)
            return vlm_errorf(err, VLM_ERR_ARG, "--dataset-type webdataset but %s is a %s", o->train,
                              vlm_dataset_kind_name(p->train.kind));
        if (p->train.n_bad)
            vlm_trainer_logf(p->t, "pretrain: %" PRId64 " malformed entries skipped in %s (first: %s)", p->train.n_bad,
                             o->train, p->train.bad[0] ? p->train.bad[0] : "?");
    }
    if (o->val) {
        if ((st = vlm_dataset_open(&p->val, o->val, &dso, err))) return st;
        p->have_val = 1;
    }
    return VLM_OK;
}

// A BPE vocabulary of the model's size trained on the training captions.
static vlm_status train_vocab(pretrain_task *p, vlm_error *err) {
    int64_t n = p->synthetic ? 100 : p->train.n;
    const char **texts = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    size_t *lens = malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    char (*sbuf)[64] = p->synthetic ? malloc(64 * (size_t)n) : NULL;
    vlm_status st = !texts || !lens || (p->synthetic && !sbuf) ? vlm_errorf(err, VLM_ERR_OOM, "out of memory") : VLM_OK;
    for (int64_t i = 0; !st && i < n; i++) {
        if (p->synthetic) {
            snprintf(sbuf[i], 64, "a synthetic picture of thing %d", (int)i);
            texts[i] = sbuf[i];
        } else
            texts[i] = vlm_dataset_caption(&p->train, i) ? vlm_dataset_caption(&p->train, i) : "";
        lens[i] = strlen(texts[i]);
    }
    size_t mlen = 0;
    vlm_bpe_train_info info;
    double t0 = vlm_now();
    if (!st) st = vlm_bpe_train_mem(texts, lens, (int)n, p->m.cfg.text.vocab_size, &p->merges, &mlen, &info, err);
    free(texts), free(lens), free(sbuf);
    if (!st)
        vlm_trainer_logf(p->t, "pretrain: trained a BPE vocabulary of %d tokens (%d merges%s) on %" PRId64 " captions in %.1fs",
                         info.vocab_size, info.n_merges, info.stopped_early ? ", corpus exhausted" : "", n,
                         vlm_now() - t0);
    return st;
}

// --pretrained: the model as the weights define it (any format fusion/import.h
// reads; --model, if given, must agree), with the tokenizer that came with
// them or --tokenizer; never a newly trained vocabulary.
static vlm_status from_pretrained(pretrain_task *p, vlm_error *err) {
    const vlm_pretrain_opts *o = p->o;
    char *tok = NULL;
    vlm_clip w;
    vlm_status st = vlm_ckpt_load_model(o->pretrained, &w, &tok, err);
    if (st) return st;
    vlm_clip_cfg cfg = w.cfg;
    if (o->model) {
        vlm_clip_cfg want;
        if (!(st = vlm_clip_cfg_load(o->model, &want, err)) &&
            (want.embed_dim != cfg.embed_dim || want.vision.width != cfg.vision.width || want.vision.layers != cfg.vision.layers ||
             want.vision.patch_size != cfg.vision.patch_size || want.text.width != cfg.text.width ||
             want.text.layers != cfg.text.layers || want.text.vocab_size != cfg.text.vocab_size))
            st = vlm_errorf(err, VLM_ERR_ARG, "--model %s does not match the weights of %s (leave --model out: the "
                            "weights define the model)", o->model, o->pretrained);
        if (!st) cfg = want, cfg.vision.act = w.cfg.vision.act, cfg.text.act = w.cfg.text.act;
    }
    cfg.siglip = o->siglip;
    // Patch dropout is this run's training choice, not the weights': a model
    // saved by a FLIP run (0.5 in its config) fine-tunes unmasked unless asked
    // (--patch-dropout, or a --model config that names it, as for a new model).
    if (!o->model) cfg.vision.patch_dropout = 0;
    if (o->patch_dropout > 0) cfg.vision.patch_dropout = (float)o->patch_dropout;
    if (!st && !(st = vlm_clip_init(&p->m, &cfg, err))) {
        p->have_model = 1;
        vlm_clip_init_weights(&p->m, (uint64_t)o->c.seed); // a SigLIP bias the weights lack keeps its init
        for (int i = 0; i < p->m.ps.n; i++) {
            int j = vlm_params_find(&w.ps, p->m.ps.p[i].name);
            if (j >= 0 && w.ps.p[j].numel == p->m.ps.p[i].numel)
                memcpy(p->m.ps.p[i].t.data, w.ps.p[j].t.data, sizeof(float) * (size_t)w.ps.p[j].numel);
        }
    }
    vlm_clip_free(&w);
    if (!st && o->tokenizer) free(tok), tok = NULL, st = vlm_tokenizer_read_merges(o->tokenizer, &tok, err);
    if (!st && !tok) st = vlm_errorf(err, VLM_ERR_ARG, VLM_NO_TOKENIZER, o->pretrained);
    if (st) return free(tok), st;
    p->merges = tok;
    return VLM_OK;
}

// --pretrained-text: the text tower's tensors from a language model (vlm lm
// train) where names and shapes match (the token embedding's first rows, the
// positional embedding's first context rows), and its tokenizer; the rest
// (text_projection, the image tower, the logit scale) stays new.
static vlm_status text_from_lm(pretrain_task *p, vlm_error *err) {
    const char *path = p->o->pretrained_text;
    vlm_lm lm;
    char *tok = NULL;
    vlm_status st = vlm_lm_load(path, &lm, &tok, err);
    if (st) return st;
    const vlm_text_cfg *tc = &p->m.cfg.text;
    if (!tok) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: carries no tokenizer", path);
    else if (lm.cfg.width != tc->width || lm.cfg.heads != tc->heads || lm.cfg.layers != tc->layers ||
             lm.cfg.mlp_width != tc->mlp_width || lm.cfg.context_length < tc->context_length)
        st = vlm_errorf(err, VLM_ERR_SHAPE,
                        "%s: language model %d x %d (heads %d, mlp %d, context %d) does not fit the text tower %d x %d "
                        "(heads %d, mlp %d, context %d)", path, lm.cfg.layers, lm.cfg.width, lm.cfg.heads,
                        lm.cfg.mlp_width, lm.cfg.context_length, tc->layers, tc->width, tc->heads, tc->mlp_width,
                        tc->context_length);
    int copied = 0;
    char fresh[512] = "";
    for (int i = 0; !st && i < p->m.ps.n; i++) {
        vlm_param *d = &p->m.ps.p[i];
        int j = strncmp(d->name, "visual.", 7) ? vlm_params_find(&lm.ps, d->name) : -1;
        if (j < 0) {
            if (strncmp(d->name, "visual.", 7) && strlen(fresh) + strlen(d->name) + 3 < sizeof fresh)
                snprintf(fresh + strlen(fresh), sizeof fresh - strlen(fresh), "%s%s", fresh[0] ? ", " : "", d->name);
            continue;
        }
        const vlm_param *s = &lm.ps.p[j];
        int rows_only = !strcmp(d->name, "token_embedding.weight") || !strcmp(d->name, "positional_embedding");
        if (d->t.ndim != s->t.ndim || (d->t.ndim == 2 && d->t.shape[1] != s->t.shape[1]) ||
            (!rows_only && d->numel != s->numel)) {
            st = vlm_errorf(err, VLM_ERR_SHAPE, "%s: %s has another shape in the language model", path, d->name);
            break;
        }
        int64_t n = d->numel < s->numel ? d->numel : s->numel; // first rows of the embeddings
        memcpy(d->t.data, s->t.data, sizeof(float) * (size_t)n);
        copied++;
    }
    if (!st)
        vlm_trainer_logf(p->t, "pretrain: text tower from the %s language model %s: %d tensors copied; new: %s and the image "
                         "tower%s", vlm_lm_objective_name(lm.cfg.objective), path, copied, fresh,
                         lm.cfg.objective == VLM_LM_MLM ? " (it was trained with bidirectional attention; CLIP's is causal)" : "");
    vlm_lm_free(&lm);
    if (st) free(tok);
    else p->merges = tok;
    return st;
}

// The model and its tokenizer: fresh (+ --pretrained weights, + a vocabulary)
// or the resumed state's; vocab.txt in the run folder; locked towers frozen.
static vlm_status build_model(pretrain_task *p, vlm_error *err) {
    const vlm_pretrain_opts *o = p->o;
    const vlm_run *run = &p->t->run;
    vlm_status st;
    if (run->resume[0]) {
        if ((st = vlm_ckpt_load_model(run->resume, &p->m, &p->merges, err))) return st;
        p->have_model = 1;
        if (!p->merges) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: checkpoint carries no tokenizer", run->resume);
    } else if (o->pretrained) {
        if ((st = from_pretrained(p, err))) return st;
    } else {
        vlm_clip_cfg cfg;
        if ((st = vlm_clip_cfg_load(o->model ? o->model : "tiny", &cfg, err))) return st;
        cfg.siglip = o->siglip;
        if (o->patch_dropout > 0) cfg.vision.patch_dropout = (float)o->patch_dropout;
        if (o->coca_layers > 0) cfg.coca_layers = (int)o->coca_layers, cfg.coca_heads = cfg.text.heads;
        if ((st = vlm_clip_init(&p->m, &cfg, err))) return st;
        p->have_model = 1;
        vlm_clip_init_weights(&p->m, (uint64_t)o->c.seed);
        st = o->pretrained_text ? text_from_lm(p, err)
             : o->tokenizer     ? vlm_tokenizer_read_merges(o->tokenizer, &p->merges, err)
                                : train_vocab(p, err);
        if (st) return st;
    }
    p->m.text.max_buckets = (int)o->text_buckets;
    if ((st = vlm_tokenizer_init_from_memory(&p->tok, p->merges, strlen(p->merges), err))) return st;
    p->have_tok = 1;
    if (vlm_tokenizer_vocab_size(&p->tok) > p->m.cfg.text.vocab_size)
        return vlm_errorf(err, VLM_ERR_ARG, "tokenizer has %d tokens but the model's vocab_size is %d",
                          vlm_tokenizer_vocab_size(&p->tok), p->m.cfg.text.vocab_size);
    char path[1400];
    vlm_run_path(run, "vocab.txt", path, sizeof path);
    FILE *vf = p->t->io ? fopen(path, "w") : NULL;
    if (vf) {
        fputs(p->merges, vf);
        fclose(vf);
    }
    for (int i = 0; (o->lock_image || o->lock_text) && i < p->m.ps.n; i++) {
        int is_visual = !strncmp(p->m.ps.p[i].name, "visual.", 7);
        int is_scale = !strcmp(p->m.ps.p[i].name, "logit_scale") || !strcmp(p->m.ps.p[i].name, "logit_bias");
        if (!is_scale && ((o->lock_image && is_visual) || (o->lock_text && !is_visual))) vlm_params_set_frozen(&p->m.ps, i, 1);
    }
    return VLM_OK;
}

// The loader at the resumed position (or the synthetic stream's), the run's
// length and schedule, and the step buffers.
static vlm_status open_loader(pretrain_task *p, vlm_error *err) {
    const vlm_pretrain_opts *o = p->o;
    vlm_trainer *t = p->t;
    const int B = p->B, K = p->K, S = p->S, W = t->world;
    if (!p->synthetic) {
        vlm_loader_opts lo;
        vlm_loader_opts_default(&lo, S, B);
        lo.workers = (int)o->c.workers;
        lo.seed = (uint64_t)o->c.seed;
        lo.train = !o->no_augment;
        vlm_train_aug_apply(&o->aug, &lo.transform);
        lo.caption_max = 256;
        lo.decode = o->dec;
        lo.random_background = (float)o->random_background;
        lo.start.epoch = t->st.loader_epoch;
        lo.start.index = t->st.loader_index / W; // the state counts the global stream
        lo.rank = t->rank;
        lo.world_size = W;
        vlm_status st = vlm_loader_open(&p->L, &p->train, &lo, err);
        if (st) return st;
        p->epoch_size = vlm_loader_epoch_size(p->L);
    } else
        p->epoch_size = o->nsynth / W;
    p->synth_pos = t->st.loader_epoch * p->epoch_size + t->st.loader_index / W;
    int64_t spe = p->epoch_size / ((int64_t)B * K);
    if (spe < 1)
        return vlm_errorf(err, VLM_ERR_ARG, "an epoch has %" PRId64 " samples per rank, fewer than batch %d x accum %d",
                          p->epoch_size, B, K);
    vlm_trainer_cfg *c = &t->cfg;
    c->total_steps = spe * o->c.epochs;
    if (o->c.time_schedule && !o->c.max_steps) c->total_steps = INT64_MAX / 4; // the clock ends the run
    if (o->c.max_steps && o->c.max_steps < c->total_steps) c->total_steps = o->c.max_steps;
    c->epoch_size = p->epoch_size;
    c->sched.cooldown_power = (float)o->cooldown_power;
    c->sched.cooldown_end_lr = (float)o->cooldown_end;
    if (c->sched.kind == VLM_SCHED_CONST_COOLDOWN)
        c->sched.cooldown = o->cooldown_epochs > 0 ? (int64_t)(o->cooldown_epochs * (double)spe) : c->total_steps / 5;
    const int E = p->m.cfg.embed_dim;
    p->imgbuf = malloc(sizeof(float) * (size_t)K * B * 3 * S * S);
    p->idbuf = malloc(sizeof(int32_t) * (size_t)K * B * p->T);
    p->groups = malloc(sizeof(int32_t) * (size_t)K * B * W);
    // W > 1: every rank's captions (gathered behind this rank's B), for the global group ids
    p->capbuf = malloc(sizeof(*p->capbuf) * (size_t)K * B * (W > 1 ? W + 1 : 1));
    p->capptr = malloc(sizeof(char *) * (size_t)K * B * W);
    if (K > 1) {
        p->cache_i = malloc(sizeof(float) * (size_t)K * B * E);
        p->cache_t = malloc(sizeof(float) * (size_t)K * B * E);
    }
    if (!p->imgbuf || !p->idbuf || !p->groups || !p->capbuf || !p->capptr || (K > 1 && (!p->cache_i || !p->cache_t)))
        return vlm_errorf(err, VLM_ERR_OOM, "pretrain: out of memory for batch buffers");
    return VLM_OK;
}

static vlm_status args_json(pretrain_task *p, vlm_error *err) {
    const vlm_pretrain_opts *o = p->o;
    char *cfgj = vlm_clip_cfg_to_json(&p->m.cfg);
    size_t n = (cfgj ? strlen(cfgj) : 0) + 1024;
    p->args_json = cfgj ? malloc(n) : NULL;
    if (p->args_json)
        snprintf(p->args_json, n,
                 "{\"batch_size\": %lld, \"accum_freq\": %lld, \"lr\": %g, \"wd\": %g, \"epochs\": %lld, "
                 "\"warmup\": %lld, \"seed\": %lld, \"siglip\": %d, \"model\": %s}",
                 o->c.batch, o->accum, o->c.lr, o->c.wd, o->c.epochs, o->c.warmup, o->c.seed, o->siglip, cfgj);
    free(cfgj);
    return p->args_json ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "pretrain: out of memory");
}

static void task_free(pretrain_task *p) {
    if (p->L) vlm_loader_free(p->L);
    if (p->have_train) vlm_dataset_free(&p->train);
    if (p->have_val) vlm_dataset_free(&p->val);
    if (p->have_tok) vlm_tokenizer_free(&p->tok);
    if (p->have_model) vlm_clip_free(&p->m);
    if (p->c.arena.head) vlm_ctx_free(&p->c);
    free(p->merges), free(p->args_json), free(p->imgbuf), free(p->idbuf), free(p->groups), free(p->capbuf);
    free(p->capptr), free(p->cache_i), free(p->cache_t);
}

// Everything from the run folder to the loop's start.
static vlm_status setup(pretrain_task *p, vlm_trainer *t, vlm_error *err) {
    const vlm_pretrain_opts *o = p->o;
    vlm_status st;
    if ((st = open_data(p, err)) || (st = build_model(p, err))) return st;
    if ((st = vlm_ctx_init(&p->c, 64u << 20, (uint64_t)o->c.seed, err))) return st;
    p->c.precision = (int)o->c.precision;
    p->B = (int)o->c.batch, p->K = (int)o->accum, p->S = p->m.cfg.vision.image_size, p->T = p->m.cfg.text.context_length;
    // W > 1: the text tower's parameters come first in the store and get their
    // last gradient before the image tower's backward runs, so their allreduce
    // overlaps that backward.
    for (int i = 0; p->K == 1 && i < p->m.ps.n; i++)
        if (!strncmp(p->m.ps.p[i].name, "visual.", 7)) {
            t->cfg.overlap_early = p->m.ps.p[i].offset;
            break;
        }
    if ((st = vlm_trainer_begin(t, &p->m.ps, &p->c, p->have_val ? &pretrain_ops : &pretrain_ops_noval, p, err))) return st;
    if ((st = open_loader(p, err)) || (st = args_json(p, err))) return st;
    const int W = t->world;
    if (W > 1)
        vlm_trainer_logf(t, "pretrain: data-parallel over %d ranks: %d pairs per rank, global batch %d", W, p->B * p->K,
                         p->B * p->K * W);
    if (o->c.time_schedule && !o->c.max_steps)
        vlm_trainer_logf(t, "pretrain: %s, %lld params, %" PRId64 " samples/epoch, steps of %d x %d pairs for %.1f minutes, run dir %s",
                         o->model ? o->model : o->pretrained ? o->pretrained : "tiny", (long long)p->m.ps.total, p->epoch_size * W, p->B, p->K, o->c.max_minutes, t->run.dir);
    else
        vlm_trainer_logf(t, "pretrain: %s, %lld params, %" PRId64 " samples/epoch, %" PRId64 " steps of %d x %d pairs, run dir %s",
                         o->model ? o->model : o->pretrained ? o->pretrained : "tiny", (long long)p->m.ps.total, p->epoch_size * W, t->cfg.total_steps, p->B, p->K, t->run.dir);
    return VLM_OK;
}

vlm_status vlm_pretrain_opts_check(const vlm_pretrain_opts *o, vlm_error *err) {
    if (o->lock_image && o->lock_text)
        return vlm_errorf(err, VLM_ERR_ARG, "--lock-image and --lock-text together leave nothing to train");
    vlm_status st = vlm_train_common_check(&o->c, err);
    if (st) return st;
    if (o->c.dist && o->c.dist->world > 1 && o->accum > 1)
        return vlm_errorf(err, VLM_ERR_ARG, "--accum-freq > 1 does not combine with mpirun yet (raise --batch-size or the ranks)");
    if (o->coca_layers > 0 && o->accum > 1)
        return vlm_errorf(err, VLM_ERR_ARG, "--coca does not combine with --accum-freq > 1 yet");
    if (o->pretrained_text && (o->pretrained || o->tokenizer))
        return vlm_errorf(err, VLM_ERR_ARG, "--pretrained-text brings the text tower and its tokenizer: it does not combine "
                          "with --pretrained or --tokenizer");
    if (o->random_background > 0 && (o->dec.alpha != VLM_ALPHA_COMPOSITE || o->no_augment))
        return vlm_errorf(err, VLM_ERR_ARG, "--random-background composites transparent training images: it needs "
                          "--composite R,G,B (the colour the other images get) and augmentation (not --no-augment)");
    if (o->unmasked_tail > 0 && !(o->patch_dropout > 0))
        return vlm_errorf(err, VLM_ERR_ARG, "--unmasked-tail ends patch dropout: it needs --patch-dropout P");
    if ((st = vlm_train_aug_check(&o->aug, err))) return st;
    return VLM_OK;
}

vlm_status vlm_pretrain(const vlm_pretrain_opts *o, vlm_pretrain_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    vlm_status st = vlm_pretrain_opts_check(o, err);
    if (st) return st;
    char name[512];
    if (o->c.name) snprintf(name, sizeof name, "%s", o->c.name);
    else {
        const char *mn = o->model ? o->model : o->pretrained ? o->pretrained : "tiny";
        const char *base = strrchr(mn, '/') ? strrchr(mn, '/') + 1 : mn;
        snprintf(name, sizeof name, "%s-b%lld-s%lld", base, o->c.batch, o->c.seed);
    }
    vlm_trainer t;
    vlm_trainer_cfg cfg;
    vlm_train_common_cfg(&o->c, "pretrain", "pairs", name, &cfg);
    cfg.batch = o->c.batch * o->accum;
    cfg.val_name = "val R@1 (mean of image->text, text->image)";
    cfg.save_at_epoch_end = 1;
    cfg.save_frequency = o->save_freq;
    cfg.keep = o->keep;
    cfg.val_every_epochs = 1;
    pretrain_task p;
    memset(&p, 0, sizeof p);
    p.o = o;
    p.t = &t;
    p.synthetic = !strcmp(o->dtype, "synthetic") || !strcmp(o->train, "synthetic");
    if ((st = vlm_trainer_init(&t, &cfg, err))) return st;
    if (!(st = setup(&p, &t, err))) st = vlm_trainer_run(&t, err);
    if (!st && p.L) {
        char summary[2048];
        vlm_loader_bad_summary(p.L, summary, sizeof summary);
        if (summary[0] && o->c.log) { // every rank reports its own skips
            char line[2200];
            snprintf(line, sizeof line, "pretrain: %s%s", t.world > 1 ? (t.rank ? "rank > 0: " : "rank 0: ") : "", summary);
            o->c.log(o->c.log_user, 0, line);
        }
    }
    if (!st) {
        vlm_trainer_logf(&t, "pretrain: %s after %" PRId64 " steps (%.1f min; %.1f s of it waiting for data); checkpoint %s",
                         t.stop_reason, t.st.step, t.st.elapsed_s / 60.0, p.wait_total, t.run.model);
        r->steps = t.st.step, r->epoch = t.st.epoch, r->loss = t.loss, r->minutes = t.st.elapsed_s / 60.0;
        r->pairs_seen = t.st.step * cfg.batch * t.world;
        r->data_wait_s = p.wait_total;
        r->have_val = t.validated;
        r->val = p.last_r;
        r->stop_reason = t.stop_reason;
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s", t.run.model);
    }
    vlm_trainer_free(&t);
    task_free(&p);
    return st;
}
