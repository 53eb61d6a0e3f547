// Open-vocabulary detector training on the trainer layer (see detect.h).
#include "train/detect.h"
#include "core/clock.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/fs.h"
#include "eval/templates.h"
#include "losses/detection.h"

void vlm_detect_opts_default(vlm_detect_opts *o) {
    memset(o, 0, sizeof *o);
    vlm_train_common_default(&o->c);
    o->c.batch = 32, o->c.epochs = 20, o->c.warmup = 200, o->c.lr = 3e-4, o->c.wd = 0.05;
    o->max_det = 100, o->tower_scale = 0.3, o->hflip = 0.5, o->alpha = 0.3, o->gamma = 2;
    o->w[0] = 2, o->w[1] = 5, o->w[2] = 2;
    o->one_to_many = 1, o->nms = -1;
    o->scale[0] = 0.5, o->scale[1] = 1.0;
    vlm_det_ensemble_opts eo;
    vlm_det_ensemble_opts_default(&eo);
    o->ens_w[0] = eo.w_seen, o->ens_w[1] = eo.w_novel, o->ens_context = eo.context, o->ens_top = eo.top;
}

vlm_status vlm_detect_opts_check(const vlm_detect_opts *o, vlm_error *err) {
    if (o->eval_only) {
        if (!o->checkpoint || (!o->val && !o->heldout))
            return vlm_errorf(err, VLM_ERR_ARG, "--eval-only needs --checkpoint DETECTOR and --val-data or --heldout-data");
        if (o->ensemble && !o->clip)
            return vlm_errorf(err, VLM_ERR_ARG, "--ensemble with --eval-only needs --clip CKPT (the CLIP that scores the crops)");
        return VLM_OK;
    }
    if (!o->clip && !o->c.resume) return vlm_errorf(err, VLM_ERR_ARG, "--clip CKPT is required (see --help)");
    if (!o->clip) return vlm_errorf(err, VLM_ERR_ARG, "--resume also needs --clip (the run is rebuilt, then its state restored)");
    if (!o->train) return vlm_errorf(err, VLM_ERR_ARG, "--train-data is required (see --help)");
    return vlm_train_common_check(&o->c, err);
}

vlm_status vlm_detect_eval_splits(vlm_owl *m, vlm_det_ensemble *ens, vlm_det_split *val, vlm_det_split *held,
                                  const char *const *tmpl, int nt, int batch, int max_det, const char *dir,
                                  const vlm_trainer *log_to, char *json, size_t cap, vlm_error *err) {
    size_t n = 0;
    json[0] = 0;
    vlm_det_split *sp[2] = {val, held};
    const char *tag[2] = {"val", "heldout"};
    for (int s = 0; s < 2; s++) {
        if (!sp[s] || !sp[s]->loaded) continue;
        char path[1200], summary[2048], pre[16];
        snprintf(path, sizeof path, "%s/%s_results.json", dir, tag[s]);
        vlm_det_eval ev;
        vlm_status st = vlm_owl_evaluate(m, ens, sp[s], tmpl, nt, batch, max_det, path, &ev, summary, sizeof summary, err);
        if (st) return st;
        size_t sl = strlen(summary);
        if (sl && summary[sl - 1] == '\n') summary[sl - 1] = 0;
        if (log_to)
            vlm_trainer_logf(log_to, "%s: %ld images, %ld categories, %ld detections (%s), %.1f s\n%s", tag[s], ev.n_images,
                             (long)sp[s]->ds.n_classes, ev.n_dets, path, ev.seconds, summary);
        snprintf(pre, sizeof pre, "%s_", tag[s]);
        n += (size_t)snprintf(json + n, cap - n, "%s", n ? ", " : "");
        vlm_det_eval_json(json + n, cap - n, pre, ev.stats);
        n = strlen(json);
        n += (size_t)snprintf(json + n, cap - n, ", \"%s_n\": %ld", tag[s], ev.n_images);
    }
    return VLM_OK;
}

typedef struct {
    const vlm_detect_opts *o;
    vlm_trainer *t;
    vlm_owl m;
    int have_model, have_bt, Q, B, S, M, N;
    vlm_det_split tr, va, ho;
    char **tmpl;
    int nt, own_tmpl;
    char *classnames, *args_json;
    float *q;
    int64_t *order, *idx, epoch_shuffled, steps_per_epoch;
    vlm_detbatch bt;
    vlm_detaug aug;
    int *groups;
    float gscale[2];
    vlm_det_target *tg;
    vlm_det_cfg dcfg;
    vlm_ctx c;
    vlm_det_stats acc;
    int acc_n;
} det_task;

static char *join_names(const vlm_detset *d) {
    size_t n = 1;
    for (int k = 0; k < d->n_classes; k++) n += strlen(d->classnames[k]) + 1;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    *p = 0;
    for (int k = 0; k < d->n_classes; k++) p += sprintf(p, "%s%s", k ? "\n" : "", d->classnames[k]);
    return s;
}

// This rank's B images of the step: positions R*B.. of the global batch in a
// seeded permutation of the (limited) split per epoch, the last batch
// wrapping around; augmented into p->bt.
static vlm_status next_batch(det_task *p, vlm_trainer *t, vlm_error *err) {
    const int B = p->B, GB = B * t->world;
    const int64_t step = t->st.step, spe = p->steps_per_epoch;
    int64_t epoch = step / spe, pos = (step % spe) * GB + (int64_t)t->rank * B;
    if (epoch != p->epoch_shuffled) {
        vlm_detset_order(p->tr.n, (uint64_t)p->o->c.seed, (uint64_t)epoch, p->order);
        p->epoch_shuffled = epoch;
    }
    for (int b = 0; b < B; b++) p->idx[b] = p->order[(pos + b) % p->tr.n];
    t->batch_epoch = epoch;
    t->next = (vlm_loader_pos){(step + 1) / spe, ((step + 1) % spe) * B};
    vlm_status st = vlm_detset_batch(&p->tr.ds, &p->aug, p->idx, B, 1, (uint64_t)p->o->c.seed, (uint64_t)epoch, &p->bt, err);
    for (int b = 0; !st && b < B; b++)
        p->tg[b] = (vlm_det_target){p->bt.n_boxes[b], p->bt.boxes + (size_t)b * p->M * 4, p->bt.classes + (size_t)b * p->M};
    return st;
}

static vlm_status task_step(void *user, vlm_trainer *t, double *loss, vlm_error *err) {
    det_task *p = user;
    vlm_status st = next_batch(p, t, err);
    if (st) return st;
    vlm_ctx *c = &p->c;
    vlm_ctx_reset(c);
    c->grad_enabled = 1;
    c->training = 1;
    int64_t sh[4] = {p->B, 3, p->S, p->S};
    vlm_det_out out;
    vlm_det_stats stt;
    vlm_tensor *l = NULL;
    if (!vlm_detector_forward(c, &p->m.det, vlm_tensor_wrap(c, VLM_F32, 4, sh, p->bt.images, NULL), p->q, p->Q, &out)) {
        if (t->world > 1) { // DETR's num_boxes: the mean box count per rank over all ranks
            double nb = (double)vlm_det_num_targets(p->tg, p->B, out.logits->shape[1], &p->dcfg);
            if ((st = vlm_dist_allreduce_f64(t->dist, &nb, 1, "box count allreduce", err))) return st;
            p->dcfg.norm = (float)fmax(nb / t->world, 1.0);
        }
        l = vlm_loss_detection(c, out.logits, out.boxes, NULL, p->tg, &p->dcfg, &stt);
    }
    if (!l || vlm_backward(c, l)) {
        *err = c->err;
        return c->status ? c->status : VLM_ERR_STATE;
    }
    *loss = stt.total;
    p->acc.focal += stt.focal, p->acc.l1 += stt.l1, p->acc.giou += stt.giou;
    p->acc_n++;
    return VLM_OK;
}

static vlm_status task_load(void *user, vlm_trainer *t, const char *path, vlm_train_state *st, vlm_error *err) {
    (void)t;
    return vlm_owl_load_state(path, &((det_task *)user)->m, st, err);
}

static vlm_status task_save(void *user, vlm_trainer *t, vlm_error *err) {
    det_task *p = user;
    // model first, state last (the commit point; see pretrain's task_save)
    vlm_status st = vlm_owl_save(t->run.model, &p->m, p->classnames, err);
    return st ? st : vlm_owl_save_state(t->run.state, &p->m, p->classnames, &t->st, p->args_json, err);
}

static void task_log_fields(void *user, vlm_trainer *t, char *text, size_t tcap, char *json, size_t jcap) {
    (void)t;
    det_task *p = user;
    double n = p->acc_n ? p->acc_n : 1;
    snprintf(text, tcap, " (focal %.4f l1 %.4f giou %.4f)", p->acc.focal / n, p->acc.l1 / n, p->acc.giou / n);
    snprintf(json, jcap, ", \"focal\": %.6f, \"l1\": %.6f, \"giou\": %.6f", p->acc.focal / n, p->acc.l1 / n, p->acc.giou / n);
    memset(&p->acc, 0, sizeof p->acc);
    p->acc_n = 0;
}

static const vlm_task det_ops = {task_step, task_load, task_save, NULL, task_log_fields, NULL, NULL};

// The detector from the CLIP (a fresh head), the splits, the queries and the
// optimiser's two LR groups (the tower at tower_scale x LR).
static vlm_status build(det_task *p, vlm_error *err) {
    const vlm_detect_opts *o = p->o;
    vlm_status st = vlm_owl_from_clip(&p->m, o->clip, (int)o->image_size, (int)o->patch_size, (uint64_t)o->c.seed, err);
    if (st) return st;
    p->have_model = 1;
    p->m.det.cfg.nms_iou = (float)(o->nms >= 0 ? o->nms : o->one_to_many > 1 ? 0.5 : 0);
    p->S = p->m.det.cfg.vit.image_size, p->N = p->m.det.grid * p->m.det.grid;
    const int E = p->m.det.cfg.embed_dim;
    if ((st = vlm_det_split_load(&p->tr, o->train, o->train_limit, err)) ||
        (o->val && (st = vlm_det_split_load(&p->va, o->val, o->val_limit, err))) ||
        (o->heldout && (st = vlm_det_split_load(&p->ho, o->heldout, o->val_limit, err))))
        return st;
    if (p->tr.n < 1) return vlm_errorf(err, VLM_ERR_ARG, "%s: no images", o->train);
    if (p->tr.ds.max_boxes > p->N)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: an image has %d boxes, more than the %d tokens that predict them", o->train,
                          p->tr.ds.max_boxes, p->N);
    p->Q = p->tr.ds.n_classes, p->B = (int)o->c.batch;
    p->q = malloc(sizeof(float) * (size_t)p->Q * E);
    p->groups = malloc(sizeof(int) * (size_t)p->m.det.ps.n);
    if (!p->q || !p->groups) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if ((st = vlm_owl_queries(&p->m, (const char *const *)p->tr.ds.classnames, p->Q, (const char *const *)p->tmpl, p->nt,
                              p->q, err)))
        return st;
    if (!(p->classnames = join_names(&p->tr.ds))) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (o->lock_image) vlm_detector_lock_image(&p->m.det, 1);
    for (int i = 0; i < p->m.det.ps.n; i++) p->groups[i] = strncmp(p->m.det.ps.p[i].name, "visual.", 7) ? 1 : 0;
    p->gscale[0] = (float)o->tower_scale, p->gscale[1] = 1.0f;
    return VLM_OK;
}

// Batch buffers, the loss configuration and the run's length.
static vlm_status prepare(det_task *p, vlm_trainer *t, vlm_error *err) {
    const vlm_detect_opts *o = p->o;
    vlm_detaug_init(&p->aug, p->S);
    p->aug.hflip_prob = (float)o->hflip;
    p->aug.scale_min = (float)o->scale[0];
    p->aug.scale_max = (float)o->scale[1];
    p->M = p->tr.ds.max_boxes > 0 ? p->tr.ds.max_boxes : 1;
    vlm_status st = vlm_detbatch_init(&p->bt, p->B, p->S, p->M, err);
    if (st) return st;
    p->have_bt = 1;
    p->tg = malloc(sizeof(vlm_det_target) * (size_t)p->B);
    p->order = malloc(sizeof(int64_t) * (size_t)p->tr.n);
    p->idx = malloc(sizeof(int64_t) * (size_t)p->B);
    p->args_json = malloc(1024);
    if (!p->tg || !p->order || !p->idx || !p->args_json) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    snprintf(p->args_json, 1024,
             "{\"image_size\": %d, \"batch_size\": %d, \"lr\": %g, \"tower_lr_scale\": %g, \"wd\": %g, \"warmup\": "
             "%lld, \"epochs\": %lld, \"seed\": %lld, \"hflip\": %g, \"loss_weights\": [%g, %g, %g], "
             "\"focal_alpha\": %g, \"focal_gamma\": %g, \"one_to_many\": %lld, \"nms_iou\": %g, \"max_minutes\": %g}",
             p->S, p->B, o->c.lr, o->tower_scale, o->c.wd, o->c.warmup, o->c.epochs, o->c.seed, o->hflip, o->w[0], o->w[1],
             o->w[2], o->alpha, o->gamma, o->one_to_many, (double)p->m.det.cfg.nms_iou, o->c.max_minutes);
    vlm_det_cfg_default(&p->dcfg);
    p->dcfg.loss_class = (float)o->w[0], p->dcfg.loss_bbox = (float)o->w[1], p->dcfg.loss_giou = (float)o->w[2];
    p->dcfg.focal_alpha = (float)o->alpha, p->dcfg.focal_gamma = (float)o->gamma;
    p->dcfg.one_to_many = (int)o->one_to_many;
    const int GB = p->B * t->world;
    p->steps_per_epoch = (p->tr.n + GB - 1) / GB;
    p->epoch_shuffled = -1;
    t->cfg.total_steps = o->c.max_steps ? o->c.max_steps : p->steps_per_epoch * o->c.epochs;
    t->cfg.epoch_size = p->steps_per_epoch * p->B;
    vlm_status cst = vlm_ctx_init(&p->c, 256u << 20, (uint64_t)o->c.seed, err);
    p->c.precision = (int)o->c.precision;
    return cst;
}

static void task_free(det_task *p) {
    if (p->c.arena.head) vlm_ctx_free(&p->c);
    if (p->have_model) vlm_owl_free(&p->m);
    vlm_det_split_free(&p->tr), vlm_det_split_free(&p->va), vlm_det_split_free(&p->ho);
    if (p->own_tmpl) vlm_strlist_free(p->tmpl, p->nt);
    if (p->have_bt) vlm_detbatch_free(&p->bt);
    free(p->classnames), free(p->args_json), free(p->q), free(p->order), free(p->idx), free(p->groups), free(p->tg);
}

// The val / held-out splits into r->eval_json, with the --ensemble CLIP when
// asked (the seen classes: the detector's training categories).
static vlm_status eval_splits(det_task *p, int batch, const char *dir, vlm_trainer *t, vlm_detect_result *r,
                              vlm_error *err) {
    const vlm_detect_opts *o = p->o;
    vlm_det_ensemble ens, *e = NULL;
    if (o->ensemble) {
        vlm_det_ensemble_opts eo = {.clip = o->clip, .w_seen = (float)o->ens_w[0], .w_novel = (float)o->ens_w[1],
                                    .context = (float)o->ens_context, .top = (int)o->ens_top};
        vlm_status st = vlm_det_ensemble_init(&ens, &eo, err);
        if (st) return vlm_det_ensemble_free(&ens), st;
        ens.seen = p->classnames;
        e = &ens;
        vlm_trainer_logf(t, "detect eval: scores fused with %s on token crops (weights seen %g, novel %g, context %g, top %d)",
                         o->clip, (double)eo.w_seen, (double)eo.w_novel, (double)eo.context, eo.top);
    }
    vlm_status st = vlm_detect_eval_splits(&p->m, e, &p->va, &p->ho, (const char *const *)p->tmpl, p->nt, batch,
                                           (int)o->max_det, dir, t, r->eval_json, sizeof r->eval_json, err);
    if (e) vlm_det_ensemble_free(e);
    return st;
}

// --eval-only: a detector file on the val / held-out splits.
static vlm_status eval_only(det_task *p, vlm_trainer *t, vlm_detect_result *r, vlm_error *err) {
    const vlm_detect_opts *o = p->o;
    vlm_status st = vlm_owl_load(&p->m, o->checkpoint, &p->classnames, err);
    if (st) return st;
    p->have_model = 1;
    if (o->nms >= 0) p->m.det.cfg.nms_iou = (float)o->nms;
    if ((o->val && (st = vlm_det_split_load(&p->va, o->val, o->val_limit, err))) ||
        (o->heldout && (st = vlm_det_split_load(&p->ho, o->heldout, o->val_limit, err))))
        return st;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", o->checkpoint);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    else snprintf(dir, sizeof dir, ".");
    return eval_splits(p, (int)o->c.batch, dir, t, r, err);
}

static vlm_status train(det_task *p, vlm_trainer *t, vlm_detect_result *r, vlm_error *err) {
    const vlm_detect_opts *o = p->o;
    double t_setup = vlm_now();
    vlm_status st;
    if ((st = build(p, err))) return st;
    char name[256];
    if (o->c.name) snprintf(name, sizeof name, "%s", o->c.name);
    else
        snprintf(name, sizeof name, "detect-s%d-p%d-b%d-seed%lld", p->S, p->m.det.cfg.vit.patch_size, p->B, o->c.seed);
    t->cfg.name = name;
    if ((st = vlm_trainer_init(t, &t->cfg, err))) return st;
    if (!o->lock_image) t->cfg.groups = p->groups, t->cfg.group_scale = p->gscale, t->cfg.n_groups = 2;
    if ((st = vlm_trainer_begin(t, &p->m.det.ps, &p->c, &det_ops, p, err))) return st;
    if ((st = prepare(p, t, err))) return st;
    vlm_trainer_logf(t,
                     "detect train: %d train images (%d categories, %lld boxes), input %d px (%d tokens), %lld params, batch %d, "
                     "%lld steps/epoch%s; setup %.1f s; run dir %s",
                     (int)p->tr.n, p->Q, (long long)p->tr.ds.n_boxes, p->S, p->N, (long long)p->m.det.ps.total, p->B,
                     (long long)p->steps_per_epoch, o->c.max_minutes > 0 ? ", time budget" : "", vlm_now() - t_setup,
                     t->run.dir);
    if ((st = vlm_trainer_run(t, err))) return st;
    r->steps = t->st.step, r->minutes = t->st.elapsed_s / 60, r->loss = t->st.last_loss;
    snprintf(r->checkpoint, sizeof r->checkpoint, "%s", t->run.model);
    if (!t->io) return VLM_OK; // the same weights on every rank; rank 0 evaluates and writes
    vlm_trainer_logf(t, "detect train: %s after %" PRId64 " steps, %.1f min", t->stop_reason, t->st.step, t->st.elapsed_s / 60);
    if ((st = eval_splits(p, p->B, t->run.dir, t, r, err))) return st;
    if (t->metrics && r->eval_json[0]) fprintf(t->metrics, "{\"step\": %" PRId64 ", %s}\n", t->st.step, r->eval_json);
    return VLM_OK;
}

vlm_status vlm_detect_train(const vlm_detect_opts *o, vlm_detect_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    vlm_status st = vlm_detect_opts_check(o, err);
    if (st) return st;
    det_task p;
    memset(&p, 0, sizeof p);
    p.o = o;
    vlm_trainer t;
    vlm_trainer_cfg cfg;
    vlm_train_common_cfg(&o->c, "detect train", "img", NULL, &cfg);
    cfg.log_mean_loss = 1;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.io = !o->c.dist || o->c.dist->rank == 0;
    p.t = &t;
    if (o->templates) st = vlm_templates_resolve(o->templates, &p.tmpl, &p.nt, &p.own_tmpl, err);
    if (!st) st = o->eval_only ? eval_only(&p, &t, r, err) : train(&p, &t, r, err);
    vlm_trainer_free(&t);
    task_free(&p);
    return st;
}
