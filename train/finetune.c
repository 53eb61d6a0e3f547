// Image-classifier fine-tuning on the trainer layer (see finetune.h).
#include "train/finetune.h"
#include "core/clock.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/fs.h"
#include "eval/templates.h"
#include "fusion/checkpoint.h"
#include "fusion/classes.h"

void vlm_wise_mix(float *out, const float *theta0, const float *theta1, int64_t n, float alpha) {
    for (int64_t i = 0; i < n; i++) out[i] = (1.0f - alpha) * theta0[i] + alpha * theta1[i];
}

void vlm_finetune_opts_default(vlm_finetune_opts *o) {
    memset(o, 0, sizeof *o);
    vlm_train_common_default(&o->c);
    o->c.batch = 128, o->c.epochs = 10, o->c.warmup = 100, o->c.lr = 1e-3, o->c.wd = 0.05;
    o->img_key = "filepath", o->label_key = "label", o->templates = "imagenet", o->sep = '\t';
    o->layer_decay = 1.0, o->stem_n = -1;
    vlm_train_aug_default(&o->aug);
}

vlm_status vlm_finetune_opts_check(const vlm_finetune_opts *o, vlm_error *err) {
    if (!o->train && !o->eval_only) return vlm_errorf(err, VLM_ERR_ARG, "--train-data is required (see vlm finetune --help)");
    if (o->eval_only && !o->val) return vlm_errorf(err, VLM_ERR_ARG, "--eval-only needs --val-data");
    if (o->checkpoint && o->model) return vlm_errorf(err, VLM_ERR_ARG, "--checkpoint and --model exclude each other");
    if (o->zeroshot_init && !o->checkpoint) return vlm_errorf(err, VLM_ERR_ARG, "--zeroshot-init needs a CLIP --checkpoint");
    if (o->n_wise && !o->checkpoint)
        return vlm_errorf(err, VLM_ERR_ARG,
                          "--wise-alpha interpolates with the starting model: it needs --checkpoint (best with --zeroshot-init)");
    if (o->pool && vlm_pool_parse(o->pool) < 0) return vlm_errorf(err, VLM_ERR_ARG, "--pool must be cls or mean, not '%s'", o->pool);
    if (o->head && vlm_head_kind_parse(o->head) < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "--head must be linear or mlp, not '%s'", o->head);
    if (o->head_input && strcmp(o->head_input, "pre") && strcmp(o->head_input, "post"))
        return vlm_errorf(err, VLM_ERR_ARG, "--head-input must be pre or post, not '%s'", o->head_input);
    vlm_status st = vlm_train_aug_check(&o->aug, err);
    return st ? st : vlm_train_common_check(&o->c, err);
}

// ---- the model ------------------------------------------------------------------
// Applies the architecture flags to cfg (from scratch; only head flags with a checkpoint).
static vlm_status apply_overrides(const vlm_finetune_opts *o, vlm_classifier_cfg *cfg, int from_scratch, vlm_error *err) {
    vlm_vit_cfg *v = &cfg->vit;
    if (from_scratch) {
        if (o->image_size) v->image_size = (int)o->image_size;
        if (o->patch_size) v->patch_size = (int)o->patch_size;
        if (o->width) {
            v->width = (int)o->width;
            if (!o->mlp_ratio) v->mlp_width = 4 * v->width;
            if (!o->heads && v->width % v->heads) v->heads = v->width / 64 > 0 ? v->width / 64 : 1;
        }
        if (o->layers) v->layers = (int)o->layers;
        if (o->act && vlm_act_parse_name(o->act, &v->act))
            return vlm_errorf(err, VLM_ERR_ARG, "--act: unknown activation '%s' (gelu, quick_gelu, gelu_tanh, relu, silu)", o->act);
        if (o->stem_act && vlm_act_parse_name(o->stem_act, &cfg->stem_act))
            return vlm_errorf(err, VLM_ERR_ARG, "--stem-act: unknown activation '%s'", o->stem_act);
        if (o->heads) v->heads = (int)o->heads;
        if (o->mlp_ratio) v->mlp_width = (int)lround(o->mlp_ratio * v->width);
        if (o->stem_n >= 0) {
            cfg->stem_layers = o->stem_n;
            for (int i = 0; i < o->stem_n; i++) cfg->stem_ch[i] = o->stem_ch[i];
        }
    } else if (o->image_size || o->patch_size || o->width || o->layers || o->heads || o->mlp_ratio || o->stem_n >= 0 || o->act ||
               o->stem_act) {
        return vlm_errorf(err, VLM_ERR_ARG, "--image-size/--patch-size/--width/--layers/--heads/--mlp-ratio/--stem/--act change the "
                                            "architecture: only with --model (from scratch), not with --checkpoint");
    }
    if (o->pool) cfg->pool = (vlm_pool)vlm_pool_parse(o->pool);
    if (o->head) cfg->head.kind = (vlm_head_kind)vlm_head_kind_parse(o->head);
    if (o->head_hidden) cfg->head.hidden = (int)o->head_hidden;
    if (o->head_dropout > 0) cfg->head.dropout = (float)o->head_dropout;
    if (o->head_input) cfg->head_on_proj = !strcmp(o->head_input, "post");
    return vlm_classifier_cfg_check(cfg, err);
}

// A --model value: a classifier config JSON ("format": "vlm-classifier") or a CLIP preset/config.
static vlm_status model_cfg(const char *model, int n_classes, vlm_classifier_cfg *cfg, vlm_error *err) {
    const char *dot = strrchr(model, '.');
    if (dot && !strcmp(dot, ".json")) {
        FILE *f = fopen(model, "rb");
        if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", model, strerror(errno));
        char *text = malloc(16u << 20);
        size_t len = text ? fread(text, 1, (16u << 20) - 1, f) : 0;
        fclose(f);
        if (!text) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", model);
        text[len] = 0;
        if (strstr(text, "\"vlm-classifier\"")) {
            // n_classes comes from the data; accept configs that leave it out or set it.
            vlm_status st = vlm_classifier_cfg_from_json(text, cfg, err);
            free(text);
            if (st) return vlm_error_prefix(err, "%s", model);
            cfg->head.n_classes = n_classes;
            return VLM_OK;
        }
        free(text);
    }
    vlm_clip_cfg cc;
    vlm_status st = vlm_clip_cfg_load(model, &cc, err);
    if (st) return st;
    vlm_classifier_cfg_from_vit(cfg, &cc.vision, n_classes);
    cfg->vit.output_dim = cc.embed_dim;
    return VLM_OK;
}

typedef struct {
    const vlm_finetune_opts *o;
    vlm_trainer *t;
    vlm_classifier m;
    vlm_clip clip;
    char *merges, *classnames_joined, *args_json, **cls_names;
    vlm_dataset train, val;
    vlm_loader *L;
    vlm_ctx c;
    int have_model, have_clip, have_train, have_val, is_cls_file, n_cls_names, K, S, B, locked;
    float *imgbuf, *theta0, *theta_ft, *gscale;
    int32_t *labbuf;
    int *groups;
    double acc_sum;
    int64_t acc_n;
    vlm_cls_eval last_val; // the latest validation (have_last)
    int have_last;
} ft_task;

// The zero-shot head: 100 x the class embeddings of the names x templates.
static vlm_status zeroshot_head(ft_task *p, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    if (!p->merges) return vlm_errorf(err, VLM_ERR_FORMAT, VLM_NO_TOKENIZER, o->checkpoint);
    if (!p->cls_names) return vlm_errorf(err, VLM_ERR_ARG, "--zeroshot-init needs class names (--classnames FILE)");
    char **tmpl = NULL;
    int T = 0, own = 0;
    vlm_status st = vlm_templates_resolve(o->templates, &tmpl, &T, &own, err);
    if (st) return st;
    vlm_tokenizer tok;
    const int K = p->K, E = p->clip.cfg.embed_dim;
    float *W = malloc(sizeof(float) * (size_t)K * E); // [K, E]
    if (!W) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (!st && !(st = vlm_tokenizer_init_from_memory(&tok, p->merges, strlen(p->merges), err))) {
        st = vlm_zeroshot_classifier(&p->clip, &tok, (const char *const *)p->cls_names, K, (const char *const *)tmpl, T, W, err);
        vlm_tokenizer_free(&tok);
    }
    if (!st) {
        for (int64_t i = 0; i < (int64_t)K * E; i++) W[i] *= 100.0f;
        st = vlm_head_set_linear(&p->m.head, &p->m.ps, W, K, E, err);
    }
    free(W);
    if (own) vlm_strlist_free(tmpl, T);
    if (!st) vlm_trainer_logf(p->t, "finetune: zero-shot head from %d class names x %d templates", K, T);
    return st;
}

// From a classifier file (continue / evaluate) as it is.
static vlm_status load_classifier(ft_task *p, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    if (o->zeroshot_init || o->n_wise)
        return vlm_errorf(err, VLM_ERR_ARG, "--zeroshot-init / --wise-alpha need a CLIP checkpoint, %s is a classifier",
                          o->checkpoint);
    if (o->pool || o->head || o->head_input || o->head_hidden || o->stem_n >= 0 || o->image_size || o->width || o->layers)
        return vlm_errorf(err, VLM_ERR_ARG, "architecture flags do not apply to a classifier checkpoint (%s)", o->checkpoint);
    vlm_status st = vlm_classifier_load(o->checkpoint, &p->m, NULL, err);
    if (st) return st;
    p->have_model = 1;
    if (p->m.cfg.head.n_classes != p->K)
        return vlm_errorf(err, VLM_ERR_SHAPE, "%s has %d classes, the data has %d", o->checkpoint, p->m.cfg.head.n_classes, p->K);
    return VLM_OK;
}

// The classifier: from a classifier file, a CLIP's vision tower (+ zero-shot
// head) or scratch; theta0 kept for WiSE-FT.
static vlm_status build_model(ft_task *p, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    vlm_status st;
    if (o->checkpoint && (p->is_cls_file = vlm_classifier_file_is(o->checkpoint, err)) < 0) return err->status;
    if (p->is_cls_file) {
        if ((st = load_classifier(p, err))) return st;
    } else {
        vlm_classifier_cfg cfg;
        if (o->checkpoint) {
            if ((st = vlm_ckpt_load_model(o->checkpoint, &p->clip, &p->merges, err))) return st;
            p->have_clip = 1;
            vlm_classifier_cfg_from_vit(&cfg, &p->clip.cfg.vision, p->K);
            cfg.vit.output_dim = p->clip.cfg.embed_dim;
            if (o->zeroshot_init) cfg.head_on_proj = 1;
            if ((st = apply_overrides(o, &cfg, 0, err))) return st;
            if (o->zeroshot_init && (!cfg.head_on_proj || cfg.head.kind != VLM_HEAD_LINEAR))
                return vlm_errorf(err, VLM_ERR_ARG, "--zeroshot-init needs a linear head on the projected embedding (--head-input post)");
        } else if ((st = model_cfg(o->model ? o->model : "tiny", p->K, &cfg, err)) || (st = apply_overrides(o, &cfg, 1, err)))
            return st;
        if ((st = vlm_classifier_init(&p->m, &cfg, err))) return st;
        p->have_model = 1;
        vlm_classifier_init_weights(&p->m, (uint64_t)o->c.seed);
        if (p->have_clip) {
            int copied = 0;
            if ((st = vlm_classifier_copy_from(&p->m, &p->clip.ps, "visual.", &copied, err)))
                return vlm_error_prefix(err, "%s", o->checkpoint);
            vlm_trainer_logf(p->t, "finetune: %d vision-tower tensors from %s", copied, o->checkpoint);
        }
    }
    if (o->zeroshot_init && (st = zeroshot_head(p, err))) return st;
    if (p->have_clip) {
        vlm_clip_free(&p->clip);
        p->have_clip = 0;
    }
    if (o->n_wise) {
        p->theta0 = malloc(sizeof(float) * (size_t)p->m.ps.total);
        p->theta_ft = malloc(sizeof(float) * (size_t)p->m.ps.total);
        if (!p->theta0 || !p->theta_ft) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        memcpy(p->theta0, p->m.ps.data, sizeof(float) * (size_t)p->m.ps.total);
    }
    return VLM_OK;
}

static char *join_lines(char **v, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(v[i]) + 1;
    char *s = malloc(len), *q = s;
    if (!s) return NULL;
    for (int i = 0; i < n; i++) q += sprintf(q, "%s%s", i ? "\n" : "", v[i]);
    *q = 0;
    return s;
}

// Training and validation sets, the class count and class names.
static vlm_status open_data(ft_task *p, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.img_key = o->img_key;
    dso.label_key = o->label_key;
    dso.sep = o->sep;
    dso.require_label = 1;
    dso.classnames = o->classnames;
    vlm_status st;
    if (o->train && !o->eval_only) {
        if ((st = vlm_dataset_open(&p->train, o->train, &dso, err))) return st;
        p->have_train = 1;
        if (o->train_limit && o->train_limit < p->train.n) p->train.n = o->train_limit;
        if (p->train.n_bad)
            vlm_trainer_logf(p->t, "finetune: %" PRId64 " malformed entries skipped in %s (first: %s)", p->train.n_bad,
                             o->train, p->train.bad[0] ? p->train.bad[0] : "?");
    }
    if (o->val) {
        if ((st = vlm_dataset_open(&p->val, o->val, &dso, err))) return st;
        p->have_val = 1;
        if (o->val_limit && o->val_limit < p->val.n) p->val.n = o->val_limit;
    }
    const vlm_dataset *ref = p->have_train ? &p->train : &p->val;
    p->K = ref->n_classes;
    if (p->have_train && p->have_val && p->val.n_classes > p->K)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s has %d classes but %s has labels up to %d", o->train, p->K, o->val,
                          p->val.n_classes - 1);
    if (o->classnames) {
        if ((st = vlm_lines_load(o->classnames, &p->cls_names, &p->n_cls_names, err))) return st;
    } else if (ref->classnames) {
        p->n_cls_names = ref->n_classes;
        p->cls_names = calloc((size_t)p->n_cls_names, sizeof(char *));
        for (int i = 0; p->cls_names && i < p->n_cls_names; i++)
            p->cls_names[i] = strdup(ref->classnames[i] ? ref->classnames[i] : "");
    }
    if (p->cls_names) {
        if (p->n_cls_names < p->K) return vlm_errorf(err, VLM_ERR_FORMAT, "%d class names for %d classes", p->n_cls_names, p->K);
        p->K = p->n_cls_names;
        p->classnames_joined = join_lines(p->cls_names, p->n_cls_names);
    }
    if (p->K < 2)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: %d class(es); a classifier needs at least 2",
                          p->have_train ? o->train : o->val, p->K);
    return VLM_OK;
}

// ---- the task -------------------------------------------------------------------
static vlm_status task_step(void *user, vlm_trainer *t, double *loss, vlm_error *err) {
    ft_task *p = user;
    const vlm_finetune_opts *o = p->o;
    const int B = p->B, S = p->S, K = p->K;
    vlm_batch b;
    vlm_status st = vlm_loader_next(p->L, &b, err);
    if (st) return st;
    if (b.n < B) return vlm_errorf(err, VLM_ERR_STATE, "loader returned a short batch (%d of %d)", b.n, B);
    t->batch_epoch = b.pos.epoch;
    t->next = b.next;
    memcpy(p->imgbuf, b.images, sizeof(float) * (size_t)B * 3 * S * S);
    for (int i = 0; i < B; i++) {
        p->labbuf[i] = b.labels[i];
        if (p->labbuf[i] < 0 || p->labbuf[i] >= K)
            return vlm_errorf(err, VLM_ERR_FORMAT, "sample %" PRId64 " has label %d outside [0, %d)", b.indices[i], p->labbuf[i], K);
    }
    int want_lock = o->lock_image || t->batch_epoch < o->lock_epochs;
    if (want_lock != p->locked) {
        vlm_classifier_lock_image(&p->m, want_lock);
        p->locked = want_lock;
        if (t->st.step > 0 || o->lock_epochs)
            vlm_trainer_logf(t, "finetune: %s at step %" PRId64, want_lock ? "image tower locked (head only)" : "full fine-tuning",
                             t->st.step);
    }
    vlm_ctx *c = &p->c;
    vlm_ctx_reset(c);
    c->training = 1;
    int64_t sh[4] = {B, 3, S, S};
    vlm_tensor *logits = vlm_classifier_forward(c, &p->m, vlm_tensor_wrap(c, VLM_F32, 4, sh, p->imgbuf, NULL), !p->locked);
    vlm_tensor *l = vlm_op_cross_entropy(c, logits, p->labbuf, (float)o->ls);
    if (!l || vlm_backward(c, l)) {
        *err = c->err;
        return c->status ? c->status : VLM_ERR_STATE;
    }
    *loss = vlm_f32(l)[0];
    int64_t t1;
    vlm_topk_count(vlm_f32(logits), p->labbuf, B, K, &t1, NULL);
    p->acc_sum += (double)t1;
    p->acc_n += B;
    return VLM_OK;
}

static vlm_status task_load(void *user, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err) {
    (void)t;
    return vlm_classifier_load_state(path, &((ft_task *)user)->m, st, err);
}

static vlm_status task_save(void *user, vlm_trainer *t, vlm_error *err) {
    ft_task *p = user;
    // model first, state last (the commit point; see pretrain's task_save)
    vlm_status st = vlm_classifier_save(t->run.model, &p->m, p->classnames_joined, t->st.step, err);
    return st ? st : vlm_classifier_save_state(t->run.state, &p->m, p->classnames_joined, &t->st, p->args_json, err);
}

static void task_log_fields(void *user, vlm_trainer *t, char *text, size_t tcap, char *json, size_t jcap) {
    (void)t;
    ft_task *p = user;
    double acc = p->acc_n ? p->acc_sum / (double)p->acc_n : 0;
    snprintf(text, tcap, " | acc %.3f", acc);
    snprintf(json, jcap, ", \"train_acc\": %.4f", acc);
    p->acc_sum = 0;
    p->acc_n = 0;
}

static void eval_line(const vlm_cls_eval *r, char *line, size_t cap) {
    snprintf(line, cap, "n=%" PRId64 " top-1 %.2f%% top-5 %.2f%% loss %.4f", r->n, 100.0 * (double)r->top1 / fmax(1, (double)r->n),
             100.0 * (double)r->top5 / fmax(1, (double)r->n), r->loss);
}

static vlm_status task_validate(void *user, vlm_trainer *t, char *line, size_t lcap, char *json, size_t jcap,
                                double *value, vlm_error *err) {
    ft_task *p = user;
    vlm_cls_eval r;
    vlm_status st = vlm_classifier_evaluate(&p->m, &p->val, p->B, (int)p->o->c.workers, &p->c, &r, err);
    if (st) return st;
    p->last_val = r;
    p->have_last = 1;
    char e[256];
    eval_line(&r, e, sizeof e);
    snprintf(line, lcap, "val step %" PRId64 " (epoch %" PRId64 "): %s", t->st.step, t->cur_epoch, e);
    double n = fmax(1, (double)r.n);
    snprintf(json, jcap, "\"val_n\": %" PRId64 ", \"val_top1\": %.5f, \"val_top5\": %.5f, \"val_loss\": %.5f", r.n,
             (double)r.top1 / n, (double)r.top5 / n, r.loss);
    *value = (double)r.top1 / n;
    return VLM_OK;
}

static const vlm_task ft_ops = {task_step, task_load, task_save, NULL, task_log_fields, task_validate, NULL};
static const vlm_task ft_ops_noval = {task_step, task_load, task_save, NULL, task_log_fields, NULL, NULL};

// Layer-wise LR decay: group g of G trains at lr * decay^(G - 1 - g).
static vlm_status layer_groups(ft_task *p, vlm_trainer_cfg *cfg, vlm_error *err) {
    if (p->o->layer_decay >= 1.0) return VLM_OK;
    const int G = vlm_classifier_n_groups(&p->m);
    p->groups = malloc(sizeof(int) * (size_t)p->m.ps.n);
    p->gscale = malloc(sizeof(float) * (size_t)G);
    if (!p->groups || !p->gscale) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    for (int i = 0; i < p->m.ps.n; i++) p->groups[i] = vlm_classifier_param_group(&p->m, i);
    for (int g = 0; g < G; g++) p->gscale[g] = (float)pow(p->o->layer_decay, G - 1 - g);
    cfg->groups = p->groups, cfg->group_scale = p->gscale, cfg->n_groups = G;
    return VLM_OK;
}

// The augmenting loader at the resumed position and the run's length.
static vlm_status open_loader(ft_task *p, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    vlm_trainer *t = p->t;
    vlm_loader_opts lo;
    vlm_loader_opts_default(&lo, p->S, p->B);
    lo.workers = (int)o->c.workers;
    lo.seed = (uint64_t)o->c.seed;
    lo.train = !o->no_augment;
    lo.captions = 0;
    vlm_train_aug_apply(&o->aug, &lo.transform);
    lo.start.epoch = t->st.loader_epoch;
    lo.start.index = t->st.loader_index / t->world; // the state counts the global stream
    lo.rank = t->rank;
    lo.world_size = t->world;
    vlm_status st = vlm_loader_open(&p->L, &p->train, &lo, err);
    if (st) return st;
    const int64_t epoch_size = vlm_loader_epoch_size(p->L), spe = epoch_size / p->B;
    if (spe < 1) return vlm_errorf(err, VLM_ERR_ARG, "an epoch has %" PRId64 " samples, fewer than the batch size %d", epoch_size, p->B);
    vlm_trainer_cfg *c = &t->cfg;
    c->total_steps = spe * o->c.epochs;
    if (o->c.max_steps && o->c.max_steps < c->total_steps) c->total_steps = o->c.max_steps;
    c->epoch_size = epoch_size;
    if (c->sched.kind == VLM_SCHED_CONST_COOLDOWN) c->sched.cooldown = c->total_steps / 5;
    p->imgbuf = malloc(sizeof(float) * (size_t)p->B * 3 * p->S * p->S);
    p->labbuf = malloc(sizeof(int32_t) * (size_t)p->B);
    if (!p->imgbuf || !p->labbuf) return vlm_errorf(err, VLM_ERR_OOM, "out of memory for batch buffers");
    return VLM_OK;
}

static vlm_status make_args_json(ft_task *p, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    char *cfgj = vlm_classifier_cfg_to_json(&p->m.cfg);
    size_t n = (cfgj ? strlen(cfgj) : 0) + 2048;
    p->args_json = cfgj ? malloc(n) : NULL;
    if (p->args_json)
        snprintf(p->args_json, n,
                 "{\"batch_size\": %lld, \"lr\": %g, \"wd\": %g, \"epochs\": %lld, \"warmup\": %lld, "
                 "\"seed\": %lld, \"label_smoothing\": %g, \"layer_decay\": %g, \"lock_image\": %d, "
                 "\"lock_image_epochs\": %lld, \"source\": \"%s\", \"model\": %s}",
                 o->c.batch, o->c.lr, o->c.wd, o->c.epochs, o->c.warmup, o->c.seed, o->ls, o->layer_decay, o->lock_image,
                 o->lock_epochs, o->checkpoint ? "checkpoint" : "scratch", cfgj);
    free(cfgj);
    return p->args_json ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
}

// WiSE-FT after training: each alpha's mix saved (wise_A.safetensors) and
// evaluated; the fine-tuned weights restored afterwards.
static vlm_status wise(ft_task *p, vlm_finetune_result *r, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    vlm_params *ps = &p->m.ps;
    memcpy(p->theta_ft, ps->data, sizeof(float) * (size_t)ps->total);
    vlm_status st = VLM_OK;
    for (int a = 0; a < o->n_wise && !st; a++) {
        vlm_wise_mix(ps->data, p->theta0, p->theta_ft, ps->total, (float)o->wise[a]);
        char path[1400];
        snprintf(path, sizeof path, "%s/wise_%.2f.safetensors", p->t->run.ckdir, o->wise[a]);
        if ((st = vlm_classifier_save(path, &p->m, p->classnames_joined, p->t->st.step, err))) break;
        r->wise_alpha[a] = o->wise[a];
        memset(&r->wise[a], 0, sizeof r->wise[a]);
        if (!p->have_val) {
            vlm_trainer_logf(p->t, "WiSE-FT alpha %.2f: saved %s", o->wise[a], path);
            continue;
        }
        if ((st = vlm_classifier_evaluate(&p->m, &p->val, p->B, (int)o->c.workers, &p->c, &r->wise[a], err))) break;
        const vlm_cls_eval *w = &r->wise[a];
        double n = fmax(1, (double)w->n);
        vlm_trainer_logf(p->t, "WiSE-FT alpha %.2f: top-1 %.2f%% top-5 %.2f%% (n=%" PRId64 "), saved %s", o->wise[a],
                         100.0 * (double)w->top1 / n, 100.0 * (double)w->top5 / n, w->n, path);
        if (p->t->metrics)
            fprintf(p->t->metrics, "{\"step\": %" PRId64 ", \"wise_alpha\": %.4f, \"val_top1\": %.5f, \"val_top5\": %.5f}\n",
                    p->t->st.step, o->wise[a], (double)w->top1 / n, (double)w->top5 / n);
    }
    r->n_wise = o->n_wise;
    memcpy(ps->data, p->theta_ft, sizeof(float) * (size_t)ps->total);
    return st;
}

static void task_free(ft_task *p) {
    if (p->L) vlm_loader_free(p->L);
    if (p->have_train) vlm_dataset_free(&p->train);
    if (p->have_val) vlm_dataset_free(&p->val);
    if (p->have_model) vlm_classifier_free(&p->m);
    if (p->have_clip) vlm_clip_free(&p->clip);
    if (p->c.arena.head) vlm_ctx_free(&p->c);
    vlm_strlist_free(p->cls_names, p->n_cls_names);
    free(p->merges), free(p->classnames_joined), free(p->args_json), free(p->imgbuf), free(p->labbuf);
    free(p->theta0), free(p->theta_ft), free(p->gscale), free(p->groups);
}

// --eval-only: the model on the validation set.
static vlm_status eval_only(ft_task *p, vlm_finetune_result *r, vlm_error *err) {
    if (!p->is_cls_file && !p->o->zeroshot_init)
        return vlm_errorf(err, VLM_ERR_ARG, "--eval-only needs a classifier --checkpoint, or a CLIP with --zeroshot-init");
    double t0 = vlm_now();
    vlm_status st = vlm_classifier_evaluate(&p->m, &p->val, p->B, (int)p->o->c.workers, &p->c, &r->val, err);
    if (st) return st;
    r->have_val = 1;
    char e[256];
    eval_line(&r->val, e, sizeof e);
    vlm_trainer_logf(p->t, "finetune: eval on %s: %s (%.1fs)", p->o->val, e, vlm_now() - t0);
    return VLM_OK;
}

// Training from the run folder to WiSE-FT.
static vlm_status train(ft_task *p, vlm_trainer *t, vlm_finetune_result *r, vlm_error *err) {
    const vlm_finetune_opts *o = p->o;
    vlm_status st;
    if ((st = layer_groups(p, &t->cfg, err))) return st;
    if ((st = vlm_trainer_begin(t, &p->m.ps, &p->c, p->have_val ? &ft_ops : &ft_ops_noval, p, err))) return st;
    if ((st = open_loader(p, err)) || (st = make_args_json(p, err))) return st;
    int64_t n_train = 0;
    for (int i = 0; i < p->m.ps.n; i++)
        if (o->lock_image ? strncmp(p->m.ps.p[i].name, "visual.", 7) != 0 : !p->m.ps.p[i].frozen) n_train += p->m.ps.p[i].numel;
    if (t->world > 1)
        vlm_trainer_logf(t, "finetune: data-parallel over %d ranks: %d images per rank, global batch %d", t->world, p->B,
                         p->B * t->world);
    vlm_trainer_logf(t, "finetune: %lld params (%" PRId64 " trained%s), %d classes, %" PRId64 " samples/epoch, %" PRId64
                        " steps of %d, image %d, run dir %s",
                     (long long)p->m.ps.total, n_train, o->lock_image ? ", image tower locked" : "", p->K, t->cfg.epoch_size,
                     t->cfg.total_steps, p->B, p->S, t->run.dir);
    p->locked = -1;
    if ((st = vlm_trainer_run(t, err))) return st;
    char summary[2048];
    vlm_loader_bad_summary(p->L, summary, sizeof summary);
    if (summary[0] && t->cfg.log) { // every rank reports its own skips
        char line[2200];
        snprintf(line, sizeof line, "finetune: %s%s", t->world > 1 ? (t->rank ? "rank > 0: " : "rank 0: ") : "", summary);
        t->cfg.log(t->cfg.log_user, 0, line);
    }
    if (!t->io) return VLM_OK; // the weights are the same on every rank; rank 0 evaluates and writes
    if (p->have_val && !t->validated) { // resumed at the end: evaluate what is there
        char line[512], json[512];
        double v;
        if ((st = task_validate(p, t, line, sizeof line, json, sizeof json, &v, err))) return st;
    }
    vlm_trainer_logf(t, "finetune: %s after %" PRId64 " steps (%.1f min of training); model %s", t->stop_reason, t->st.step,
                     t->st.elapsed_s / 60.0, t->run.model);
    return o->n_wise ? wise(p, r, err) : VLM_OK;
}

vlm_status vlm_finetune(const vlm_finetune_opts *o, vlm_finetune_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    vlm_status st = vlm_finetune_opts_check(o, err);
    if (st) return st;
    char name[512];
    if (o->c.name) snprintf(name, sizeof name, "%s", o->c.name);
    else {
        const char *src = o->checkpoint ? o->checkpoint : o->model ? o->model : "tiny";
        const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
        snprintf(name, sizeof name, "ft-%s-b%lld-s%lld", base, o->c.batch, o->c.seed);
    }
    vlm_trainer t;
    vlm_trainer_cfg cfg;
    vlm_train_common_cfg(&o->c, "finetune", "img", name, &cfg);
    cfg.val_name = "val top-1";
    cfg.save_at_epoch_end = 1;
    cfg.val_every_epochs = o->val_freq;
    ft_task p;
    memset(&p, 0, sizeof p);
    p.o = o;
    p.t = &t;
    // The run folder only when training (--eval-only writes nothing).
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.io = !o->c.dist || o->c.dist->rank == 0;
    if (!o->eval_only && (st = vlm_trainer_init(&t, &cfg, err))) return st;
    if (!(st = open_data(&p, err)) && !(st = build_model(&p, err)) &&
        !(st = vlm_ctx_init(&p.c, 64u << 20, (uint64_t)o->c.seed, err))) {
        p.S = p.m.cfg.vit.image_size, p.B = (int)o->c.batch;
        p.c.precision = (int)o->c.precision;
        st = o->eval_only ? eval_only(&p, r, err) : train(&p, &t, r, err);
    }
    if (!st && !o->eval_only) {
        r->have_val = p.have_last;
        r->val = p.last_val;
        r->steps = t.st.step, r->epoch = t.st.epoch, r->loss = t.loss, r->minutes = t.st.elapsed_s / 60.0;
        r->images_seen = t.st.step * p.B * t.world;
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s", t.run.model);
    }
    vlm_trainer_free(&t);
    task_free(&p);
    return st;
}
