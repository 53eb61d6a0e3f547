// Language-model pretraining on the trainer layer (see lm.h).
#include "train/lm.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/clock.h"

void vlm_lm_opts_default(vlm_lm_opts *o) {
    memset(o, 0, sizeof *o);
    vlm_train_common_default(&o->c);
    o->c.batch = 64, o->c.epochs = 10, o->c.warmup = 200, o->c.lr = 5e-4, o->c.wd = 0.1;
    o->c.save_every = 500, o->c.log_every = 20;
    o->objective = "clm", o->model = "tiny", o->context = 32, o->vocab_size = 8192, o->mask_prob = 0.15;
}

vlm_status vlm_lm_opts_check(const vlm_lm_opts *o, vlm_error *err) {
    if (!o->train) return vlm_errorf(err, VLM_ERR_ARG, "--train-data FILE is required (see --help)");
    if (vlm_lm_objective_parse(o->objective) < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "--objective: mlm or clm, not '%s'", o->objective);
    if (o->context < 4 || o->context > 1024) return vlm_errorf(err, VLM_ERR_ARG, "--context %lld outside [4, 1024]", o->context);
    if (!(o->mask_prob > 0 && o->mask_prob <= 0.5)) return vlm_errorf(err, VLM_ERR_ARG, "--mask-prob %g outside (0, 0.5]", o->mask_prob);
    return vlm_train_common_check(&o->c, err);
}

typedef struct {
    const vlm_lm_opts *o;
    vlm_lm m;
    int have_m, have_tok;
    vlm_tokenizer tok;
    char *merges;
    vlm_token_stream train, val;
    vlm_ctx c;
    vlm_lm_batch b;
    int32_t *rows;          // [B, T+1]
    uint32_t *order;        // this epoch's row order
    int64_t n_rows, epoch_shuffled, steps_per_epoch, GB;
    vlm_lm_eval_result last_val;
    int have_val;
    char args_json[2048];
} lm_task;

static vlm_status task_step(void *user, vlm_trainer *t, double *loss, vlm_error *err) {
    lm_task *p = user;
    const int B = p->b.B, T = p->b.T, clm = p->m.cfg.objective == VLM_LM_CLM;
    const int64_t step = t->st.step, spe = p->steps_per_epoch, epoch = step / spe;
    // this rank's B rows of the global batch: positions R*B.. of it, so a
    // global batch holds the same rows and masks at every world size
    const int64_t pos = (step % spe) * p->GB + (int64_t)t->rank * B;
    if (epoch != p->epoch_shuffled) {
        vlm_rng r;
        vlm_rng_init(&r, (uint64_t)p->o->c.seed, VLM_RNG_DATA, (uint64_t)epoch);
        for (int64_t i = 0; i < p->n_rows; i++) p->order[i] = (uint32_t)i;
        vlm_rng_shuffle_u32(&r, p->order, (uint64_t)p->n_rows);
        p->epoch_shuffled = epoch;
    }
    for (int i = 0; i < B; i++)
        memcpy(p->rows + (size_t)i * (T + clm), p->train.ids + (int64_t)p->order[(pos + i) % p->n_rows] * T,
               sizeof(int32_t) * (size_t)(T + clm));
    vlm_lm_batch_make(&p->m, p->rows, (uint64_t)p->o->c.seed, (uint64_t)(step * p->GB + (int64_t)t->rank * B), &p->b);
    t->batch_epoch = epoch;
    t->next = (vlm_loader_pos){(step + 1) / spe, ((step + 1) % spe) * B};
    vlm_ctx *c = &p->c;
    vlm_ctx_reset(c);
    c->grad_enabled = 1;
    c->training = 1;
    vlm_tensor *l = vlm_lm_loss(c, &p->m, &p->b);
    if (!l || vlm_backward(c, l)) {
        *err = c->err;
        return c->status ? c->status : VLM_ERR_STATE;
    }
    *loss = vlm_f32(l)[0];
    return VLM_OK;
}

static vlm_status task_load(void *user, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err) {
    (void)t;
    return vlm_state_load(path, &((lm_task *)user)->m.ps, st, "vlm-lm-state", err);
}

static vlm_status task_save(void *user, vlm_trainer *t, vlm_error *err) {
    lm_task *p = user;
    // model first, state last (the state is the commit point; see pretrain's task_save)
    vlm_status st = vlm_lm_save(t->run.model, &p->m, p->merges, t->st.step, err);
    if (st) return st;
    char *cfg = vlm_lm_cfg_to_json(&p->m.cfg);
    if (!cfg) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    const char *keys[3] = {"config", "tokenizer", "args"}, *vals[3] = {cfg, p->merges, p->args_json};
    st = vlm_state_save(t->run.state, &p->m.ps, &t->st, "vlm-lm-state", keys, vals, 3, err);
    free(cfg);
    return st;
}

static void val_line(const vlm_lm *m, const vlm_lm_eval_result *r, int64_t step, char *line, size_t lcap) {
    if (m->cfg.objective == VLM_LM_CLM)
        snprintf(line, lcap, "val step %" PRId64 ": perplexity %.2f (loss %.4f) over %" PRId64 " tokens, top-1 %.3f", step,
                 r->perplexity, r->loss, r->tokens, r->top1);
    else
        snprintf(line, lcap, "val step %" PRId64 ": masked-token top-1 %.4f (loss %.4f) over %" PRId64 " masked tokens",
                 step, r->top1, r->loss, r->tokens);
}

static vlm_status task_validate(void *user, vlm_trainer *t, char *line, size_t lcap, char *json, size_t jcap,
                                double *value, vlm_error *err) {
    lm_task *p = user;
    vlm_lm_eval_result *r = &p->last_val;
    vlm_status st = vlm_lm_evaluate(&p->m, &p->val, p->b.B, r, err);
    if (st) return st;
    p->have_val = 1;
    val_line(&p->m, r, t->st.step, line, lcap);
    snprintf(json, jcap, "\"val_tokens\": %" PRId64 ", \"val_loss\": %.6f, \"val_perplexity\": %.4f, \"val_top1\": %.5f",
             r->tokens, r->loss, r->perplexity, r->top1);
    *value = p->m.cfg.objective == VLM_LM_CLM ? r->perplexity : r->top1;
    return VLM_OK;
}

static const vlm_task lm_ops = {task_step, task_load, task_save, NULL, NULL, task_validate, NULL};
static const vlm_task lm_ops_noval = {task_step, task_load, task_save, NULL, NULL, NULL, NULL};

// The tokenizer: the resumed state's, a merges file, or a BPE trained on the text.
static vlm_status tokenizer(lm_task *p, vlm_trainer *t, const vlm_docs *d, vlm_error *err) {
    const vlm_lm_opts *o = p->o;
    vlm_status st = VLM_OK;
    if (!p->merges && o->tokenizer) st = vlm_tokenizer_read_merges(o->tokenizer, &p->merges, err);
    else if (!p->merges) {
        size_t *lens = malloc(sizeof(size_t) * (size_t)d->n), mlen = 0;
        if (!lens) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        for (int64_t i = 0; i < d->n; i++) lens[i] = strlen(d->doc[i]);
        vlm_bpe_train_info info;
        double t0 = vlm_now();
        int n = d->n > INT32_MAX ? INT32_MAX : (int)d->n;
        st = vlm_bpe_train_mem((const char *const *)d->doc, lens, n, (int)o->vocab_size, &p->merges, &mlen, &info, err);
        free(lens);
        if (!st)
            vlm_trainer_logf(t, "lm train: trained a BPE vocabulary of %d tokens (%d merges%s) on %d documents in %.1fs",
                             info.vocab_size, info.n_merges, info.stopped_early ? ", text exhausted" : "", n,
                             vlm_now() - t0);
    }
    if (!st) st = vlm_tokenizer_init_from_memory(&p->tok, p->merges, strlen(p->merges), err);
    p->have_tok = !st;
    return st;
}

// Documents, tokenizer, model (new or the resumed state's) and token streams.
static vlm_status build(lm_task *p, vlm_trainer *t, vlm_error *err) {
    const vlm_lm_opts *o = p->o;
    vlm_docs d;
    vlm_status st = vlm_docs_read(&d, o->train, o->caption_key, err);
    if (st) return st;
    if (t->run.resume[0]) {
        st = vlm_lm_load(t->run.resume, &p->m, &p->merges, err);
        p->have_m = !st;
        if (!st && !p->merges) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: carries no tokenizer", t->run.resume);
    }
    if (!st) st = tokenizer(p, t, &d, err);
    if (!st && !p->have_m) {
        vlm_lm_cfg cfg;
        st = vlm_lm_cfg_preset(o->model, (vlm_lm_objective)vlm_lm_objective_parse(o->objective),
                               vlm_tokenizer_vocab_size(&p->tok), (int)o->context, &cfg, err);
        cfg.mask_prob = (float)o->mask_prob;
        if (!st) st = vlm_lm_init(&p->m, &cfg, err);
        p->have_m = !st;
        if (!st) {
            vlm_rng r;
            vlm_rng_init(&r, (uint64_t)o->c.seed, VLM_RNG_INIT, 0);
            vlm_lm_init_weights(&p->m, &r);
        }
    }
    if (!st) st = vlm_docs_tokenize(&d, &p->tok, &p->train, err);
    int64_t n_docs = d.n;
    vlm_docs_free(&d);
    if (!st && o->val) {
        if (!(st = vlm_docs_read(&d, o->val, o->caption_key, err))) {
            st = vlm_docs_tokenize(&d, &p->tok, &p->val, err);
            vlm_docs_free(&d);
        }
    }
    if (!st)
        vlm_trainer_logf(t, "lm train: %" PRId64 " documents, %" PRId64 " tokens%s", n_docs, p->train.n,
                         o->val ? "; held-out text read" : "");
    return st;
}

static vlm_status prepare(lm_task *p, vlm_trainer *t, vlm_error *err) {
    const vlm_lm_opts *o = p->o;
    const int B = (int)o->c.batch, T = p->m.cfg.context_length;
    p->GB = (int64_t)B * t->world;
    p->n_rows = vlm_lm_rows(&p->m, &p->train, T);
    if (p->n_rows < p->GB)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: %" PRId64 " rows of %d tokens, fewer than one global batch of %" PRId64,
                          o->train, p->n_rows, T, p->GB);
    if (p->n_rows > UINT32_MAX) return vlm_errorf(err, VLM_ERR_ARG, "%s: more than 2^32 rows", o->train);
    p->steps_per_epoch = p->n_rows / p->GB;
    p->epoch_shuffled = -1;
    p->rows = malloc(sizeof(int32_t) * (size_t)B * (T + 1));
    p->order = malloc(sizeof(uint32_t) * (size_t)p->n_rows);
    vlm_status st = !p->rows || !p->order ? vlm_errorf(err, VLM_ERR_OOM, "out of memory") : vlm_lm_batch_alloc(&p->b, B, T, err);
    if (st) return st;
    t->cfg.total_steps = o->c.max_steps ? o->c.max_steps : (o->c.max_minutes > 0 ? INT64_MAX / 4 : p->steps_per_epoch * o->c.epochs);
    t->cfg.epoch_size = p->steps_per_epoch * B;
    snprintf(p->args_json, sizeof p->args_json,
             "{\"train_data\": \"%s\", \"objective\": \"%s\", \"model\": \"%s\", \"context\": %d, \"batch_size\": %d, "
             "\"lr\": %g, \"wd\": %g, \"warmup\": %lld, \"seed\": %lld, \"mask_prob\": %g}",
             o->train, o->objective, o->model, T, B, o->c.lr, o->c.wd, o->c.warmup, o->c.seed, o->mask_prob);
    st = vlm_ctx_init(&p->c, 256u << 20, (uint64_t)o->c.seed, err);
    p->c.precision = (int)o->c.precision;
    return st;
}

static vlm_status train(lm_task *p, vlm_trainer *t, vlm_lm_result *r, vlm_error *err) {
    const vlm_lm_opts *o = p->o;
    char name[256];
    if (o->c.name) snprintf(name, sizeof name, "%s", o->c.name);
    else snprintf(name, sizeof name, "lm-%s-%s-b%lld-seed%lld", o->objective, o->model, o->c.batch, o->c.seed);
    t->cfg.name = name;
    t->cfg.val_name = vlm_lm_objective_parse(o->objective) == VLM_LM_CLM ? "val perplexity" : "val masked top-1";
    vlm_status st = vlm_trainer_init(t, &t->cfg, err);
    if (!st) st = build(p, t, err);
    if (!st) st = prepare(p, t, err);
    if (!st) st = vlm_trainer_begin(t, &p->m.ps, &p->c, o->val ? &lm_ops : &lm_ops_noval, p, err);
    if (st) return st;
    const vlm_lm_cfg *c = &p->m.cfg;
    vlm_trainer_logf(t,
                     "lm train: %s, %s, %d layers x %d wide, context %d, vocab %d%s, %lld params; %" PRId64
                     " rows/epoch, batch %lld x %d ranks, %" PRId64 " steps/epoch; run dir %s",
                     o->model, vlm_lm_objective_name(c->objective), c->layers, c->width, c->context_length, c->vocab_size,
                     c->objective == VLM_LM_MLM ? " (with [MASK])" : "", (long long)p->m.ps.total, p->n_rows, o->c.batch,
                     t->world, p->steps_per_epoch, t->run.dir);
    if ((st = vlm_trainer_run(t, err))) return st;
    r->steps = t->st.step, r->minutes = t->st.elapsed_s / 60, r->loss = t->st.last_loss;
    r->rows = p->n_rows, r->tokens = p->train.n;
    r->have_val = p->have_val, r->val = p->last_val;
    snprintf(r->checkpoint, sizeof r->checkpoint, "%s", t->run.model);
    if (t->io)
        vlm_trainer_logf(t, "lm train: %s after %" PRId64 " steps, %.1f min; model %s", t->stop_reason, t->st.step,
                         t->st.elapsed_s / 60, t->run.model);
    return VLM_OK;
}

vlm_status vlm_lm_train(const vlm_lm_opts *o, vlm_lm_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    vlm_status st = vlm_lm_opts_check(o, err);
    if (st) return st;
    lm_task p;
    memset(&p, 0, sizeof p);
    p.o = o;
    vlm_trainer t;
    memset(&t, 0, sizeof t);
    vlm_train_common_cfg(&o->c, "lm train", "seqs", NULL, &t.cfg);
    t.cfg.log_mean_loss = 1;
    t.io = !o->c.dist || o->c.dist->rank == 0;
    st = train(&p, &t, r, err);
    vlm_trainer_free(&t);
    if (p.c.arena.head) vlm_ctx_free(&p.c);
    if (p.have_m) vlm_lm_free(&p.m);
    if (p.have_tok) vlm_tokenizer_free(&p.tok);
    free(p.merges);
    vlm_token_stream_free(&p.train);
    vlm_token_stream_free(&p.val);
    vlm_lm_batch_free(&p.b);
    free(p.rows), free(p.order);
    return st;
}
