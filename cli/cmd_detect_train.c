// `vlm detect train`: fine-tune an open-vocabulary detection head from a CLIP
// on COCO-format data and evaluate it with the COCO evaluator.
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "train/plot.h"
#include "cli/train_common.h"
#include "core/optim.h"
#include "data/coco.h"
#include "eval/coco_eval.h"
#include "data/detset.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/detection.h"
#include "eval/templates.h"
#include "fusion/classes.h"
#include "losses/detection.h"
#ifdef _OPENMP
#include <omp.h>
#endif

// ---------------------------------------------------------------- data
// A split: the images and boxes in memory (data/detset.h) plus its COCO ground
// truth for the evaluator. The split's own categories are its text queries.
typedef struct {
    vlm_detset ds;
    vlm_coco_gt gt;
    int64_t n; // images used (a --*-limit prefix)
    int loaded;
} det_split;

static void split_free(det_split *d) {
    if (d->loaded) {
        vlm_detset_free(&d->ds);
        vlm_coco_gt_free(&d->gt);
    }
    memset(d, 0, sizeof *d);
}

static vlm_status split_load(det_split *d, const char *json, int64_t limit, vlm_error *err) {
    memset(d, 0, sizeof *d);
    vlm_status st = vlm_coco_gt_load(&d->gt, json, err);
    if (st) return st;
    if ((st = vlm_detset_from_gt(&d->ds, &d->gt, json, NULL, err))) {
        vlm_coco_gt_free(&d->gt);
        return st;
    }
    d->loaded = 1;
    d->n = limit > 0 && limit < d->ds.n_images ? limit : d->ds.n_images;
    return VLM_OK;
}

// ---------------------------------------------------------------- evaluation
typedef struct {
    double stats[VLM_COCO_NSTATS];
    long n_images, n_dets;
    double seconds;
} det_eval;

// Runs the detector over a split with the split's own category names as
// queries, writes COCO results (if out_json) and evaluates them.
static vlm_status evaluate(vlm_owl *o, const det_split *d, const char *const *templates, int nt, int B, int max_det,
                           const char *out_json, det_eval *ev, char *summary, size_t summary_cap, vlm_error *err) {
    double t0 = cli_now();
    memset(ev, 0, sizeof *ev);
    const vlm_detset *ds = &d->ds;
    int Q = ds->n_classes, E = o->det.cfg.embed_dim, S = o->det.cfg.vit.image_size, N = o->det.grid * o->det.grid;
    float *q = malloc(sizeof(float) * (size_t)Q * E);
    vlm_det_box *bx = malloc(sizeof(vlm_det_box) * (size_t)max_det);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)B);
    vlm_coco_results res;
    vlm_coco_results_init(&res);
    vlm_detbatch bt;
    vlm_detaug aug;
    vlm_detaug_init(&aug, S);
    int have_bt = 0, have_ctx = 0;
    vlm_ctx c;
    vlm_status st = !q || !bx || !idx ? vlm_errorf(err, VLM_ERR_OOM, "detect eval: out of memory") : VLM_OK;
    if (!st) st = vlm_owl_queries(o, (const char *const *)ds->classnames, Q, templates, nt, q, err);
    if (!st && !(st = vlm_detbatch_init(&bt, B, S, ds->max_boxes > 0 ? ds->max_boxes : 1, err))) have_bt = 1;
    if (!st && !(st = vlm_ctx_init(&c, 64u << 20, 0, err))) have_ctx = 1;
    if (st) goto done;
    c.grad_enabled = 0;
    c.training = 0;
    for (int64_t i0 = 0; i0 < d->n && !st; i0 += B) {
        int nb = d->n - i0 < B ? (int)(d->n - i0) : B;
        for (int b = 0; b < nb; b++) idx[b] = i0 + b;
        if ((st = vlm_detset_batch(ds, &aug, idx, nb, 0, 0, 0, &bt, err))) break;
        vlm_ctx_reset(&c);
        int64_t sh[4] = {nb, 3, S, S};
        vlm_det_out out;
        if (vlm_detector_forward(&c, &o->det, vlm_tensor_wrap(&c, VLM_F32, 4, sh, bt.images, NULL), q, Q, &out)) {
            st = c.status;
            if (err) *err = c.err;
            break;
        }
        for (int b = 0; b < nb && !st; b++) {
            int64_t i = i0 + b;
            int n = vlm_detector_decode(vlm_f32(out.logits) + (size_t)b * N * Q, vlm_f32(out.boxes) + (size_t)b * N * 4,
                                        N, Q, NULL, ds->width[i], ds->height[i], max_det, 0, o->det.cfg.nms_iou, bx);
            if (n < 0) st = vlm_errorf(err, VLM_ERR_OOM, "detect eval: out of memory");
            for (int k = 0; k < n && !st; k++) {
                double box[4] = {bx[k].x, bx[k].y, bx[k].w, bx[k].h};
                st = vlm_coco_results_add(&res, ds->image_ids[i], ds->category_ids[bx[k].query], box, bx[k].score, err);
            }
        }
    }
    if (!st && out_json) st = vlm_coco_results_save(&res, out_json, err);
    if (!st) {
        // evaluate the images we ran on: a --val-limit prefix drops the rest of the ground truth
        vlm_coco_gt cut;
        vlm_coco_gt_init(&cut);
        const vlm_coco_gt *gt = &d->gt;
        if (d->n < d->gt.n_images) {
            for (int64_t i = 0; i < d->n && !st; i++) {
                long j = vlm_coco_gt_find_image(&d->gt, ds->image_ids[i]);
                st = vlm_coco_gt_add_image(&cut, d->gt.images[j].id, d->gt.images[j].width, d->gt.images[j].height,
                                           d->gt.images[j].file_name, err);
            }
            for (long k = 0; k < d->gt.n_categories && !st; k++)
                st = vlm_coco_gt_add_category(&cut, d->gt.categories[k].id, d->gt.categories[k].name, NULL, err);
            for (long a = 0; a < d->gt.n_anns && !st; a++)
                if (vlm_coco_gt_find_image(&cut, d->gt.anns[a].image_id) >= 0)
                    st = vlm_coco_gt_add_ann(&cut, &d->gt.anns[a], err);
            gt = &cut;
        }
        vlm_coco_eval e;
        vlm_coco_eval_init(&e);
        if (!st) st = vlm_coco_eval_run(&e, gt, &res, err);
        if (!st) {
            memcpy(ev->stats, e.stats, sizeof ev->stats);
            if (summary) vlm_coco_eval_summary(&e, summary, summary_cap);
        }
        vlm_coco_eval_free(&e);
        vlm_coco_gt_free(&cut);
    }
    ev->n_images = d->n;
    ev->n_dets = res.n;
done:
    if (have_ctx) vlm_ctx_free(&c);
    if (have_bt) vlm_detbatch_free(&bt);
    ev->seconds = cli_now() - t0;
    vlm_coco_results_free(&res);
    free(q);
    free(bx);
    free(idx);
    return st;
}

static void stats_json(char *buf, size_t cap, const char *prefix, const double *s) {
    size_t n = 0;
    for (int i = 0; i < VLM_COCO_NSTATS && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"%s%s\": %.6f", i ? ", " : "", prefix, vlm_coco_eval_stat_name(i),
                              s[i]);
}

// ---------------------------------------------------------------- options
static const char *usage =
    "usage: vlm detect train --clip CKPT --train-data TRAIN.json [options]\n"
    "Fine-tunes an open-vocabulary detection head (OWL-ViT style) and the CLIP's image tower on COCO-format\n"
    "data (e.g. from `vlm data scenes`); the CLIP's text tower stays frozen and encodes the category names\n"
    "as queries, so any class can be queried by name afterwards.\n"
    "data:\n"
    "  --train-data JSON        COCO ground truth; images are file_name relative to the JSON's folder;\n"
    "                           its categories (names) are the training queries\n"
    "  --val-data JSON          evaluation split (queries: its categories); repeatable via --heldout-data\n"
    "  --heldout-data JSON      a second evaluation split, e.g. classes never boxed in training\n"
    "  --train-limit N / --val-limit N   use the first N images\n"
    "  --hflip P                horizontal flip probability, boxes mirrored (default 0.5)\n"
    "  --aug-scale LO,HI        crop window area / image area (default 0.5,1; above 1 zooms out)\n"
    "model:\n"
    "  --clip CKPT              CLIP model file (vlm pretrain) with its tokenizer\n"
    "  --image-size S           detector input size (default: the CLIP's); the positional embedding is resized\n"
    "  --patch-size P           a multiple k of the CLIP's patch: conv1 is upsampled k x k, so e.g. a 32 px /\n"
    "                           patch 4 CLIP reads 64 px at patch 8 with the same token grid and cost\n"
    "  --templates NAME|FILE    query templates (default name: the class name itself)\n"
    "  --lock-image             train the head only\n"
    "optimisation:\n"
    "  --batch-size B (32)  --epochs E (20)  --lr LR (3e-4)  --tower-lr-scale F (0.3: tower LR = F * LR)\n"
    "  --wd WD (0.05)  --warmup STEPS (200)  --grad-clip-norm N (1.0)  --seed S (0)\n"
    "  --max-steps N  --max-minutes M  --time-schedule (cosine over the time budget)\n"
    "  --loss-weights C,L1,GIOU (2,5,2)  --focal-alpha A (0.3)  --focal-gamma G (2)\n"
    "  --one-to-many K (1)      each GT box is matched to K tokens (H-DETR's one-to-many branch): more\n"
    "                           positives per step; needs NMS at inference\n"
    "  --nms IOU                per-class NMS of the decoded boxes, stored in the detector (default 0.5\n"
    "                           with --one-to-many > 1, else 0 = none); with --eval-only it overrides\n"
    "runs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (500)  --log-every N (20)  --resume latest|FILE\n"
    "  --max-det N (100)  --eval-only --checkpoint DETECTOR  --json (end with one JSON line of COCO stats)\n"
    "data-parallel: mpirun -np N vlm detect train ... (an MPI build): --batch-size per rank, rank 0 writes\n"
    "  and evaluates; --dist-timeout S (300) stops the job when a rank waits longer than S seconds\n";

typedef struct {
    const char *clip, *train, *val, *heldout, *logs, *name, *resume, *templates, *checkpoint;
    long long image_size, patch_size, batch, epochs, warmup, seed, max_steps, save_every, log_every, train_limit, val_limit,
        max_det, one_to_many;
    double nms, lr, tower_scale, wd, clip_norm, max_minutes, hflip, alpha, gamma, w[3], scale[2];
    int lock_image, time_sched, json, eval_only;
    cli_dist_opts dist;
} opts;

static int parse(int argc, char **argv, opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->logs = "./logs";
    o->batch = 32, o->epochs = 20, o->warmup = 200, o->save_every = 500, o->log_every = 20, o->max_det = 100;
    cli_dist_opts_default(&o->dist);
    o->lr = 3e-4, o->tower_scale = 0.3, o->wd = 0.05, o->clip_norm = 1.0, o->hflip = 0.5, o->alpha = 0.3,
    o->gamma = 2;
    o->w[0] = 2, o->w[1] = 5, o->w[2] = 2;
    o->one_to_many = 1, o->nms = -1;
    o->scale[0] = 0.5, o->scale[1] = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(flag, f) if (!strcmp(a, flag)) { if (!v) goto need; o->f = v; i++; continue; }
#define INT(flag, f, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_int(flag, v, lo, hi, &o->f, err)) return -1; i++; continue; }
#define FLT(flag, f, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_float(flag, v, lo, hi, &o->f, err)) return -1; i++; continue; }
#define FLAG(flag, f) if (!strcmp(a, flag)) { o->f = 1; continue; }
        STR("--clip", clip) STR("--train-data", train) STR("--val-data", val) STR("--heldout-data", heldout)
        STR("--logs", logs) STR("--name", name) STR("--resume", resume) STR("--templates", templates)
        STR("--checkpoint", checkpoint)
        INT("--image-size", image_size, 8, 4096) INT("--patch-size", patch_size, 1, 4096) INT("--batch-size", batch, 1, 1 << 16) INT("--epochs", epochs, 1, 1 << 20)
        INT("--warmup", warmup, 0, 1LL << 40) INT("--seed", seed, 0, INT64_MAX) INT("--max-steps", max_steps, 1, 1LL << 40)
        INT("--save-every-steps", save_every, 1, 1LL << 40) INT("--log-every", log_every, 1, 1 << 30)
        INT("--train-limit", train_limit, 1, 1 << 30) INT("--val-limit", val_limit, 1, 1 << 30)
        INT("--max-det", max_det, 1, 100000) INT("--one-to-many", one_to_many, 1, 64) FLT("--nms", nms, 0, 1)
        FLT("--lr", lr, 0, 10) FLT("--tower-lr-scale", tower_scale, 0, 100) FLT("--wd", wd, 0, 10)
        FLT("--grad-clip-norm", clip_norm, 0, 1e9) FLT("--max-minutes", max_minutes, 0, 1e7) FLT("--hflip", hflip, 0, 1)
        FLT("--focal-alpha", alpha, 0, 1) FLT("--focal-gamma", gamma, 0, 10)
        FLAG("--lock-image", lock_image) FLAG("--time-schedule", time_sched) FLAG("--json", json)
        FLAG("--eval-only", eval_only)
        if (!strcmp(a, "--aug-scale")) {
            if (!v) goto need;
            if (sscanf(v, "%lf,%lf", &o->scale[0], &o->scale[1]) != 2 || o->scale[0] <= 0 || o->scale[1] < o->scale[0] ||
                o->scale[1] > 4) {
                vlm_errorf(err, VLM_ERR_ARG, "--aug-scale: expected LO,HI with 0 < LO <= HI <= 4, got '%s'", v);
                return -1;
            }
            i++;
            continue;
        }
        if (!strcmp(a, "--loss-weights")) {
            if (!v) goto need;
            if (sscanf(v, "%lf,%lf,%lf", &o->w[0], &o->w[1], &o->w[2]) != 3 || o->w[0] < 0 || o->w[1] < 0 || o->w[2] < 0) {
                vlm_errorf(err, VLM_ERR_ARG, "--loss-weights: expected three non-negative numbers C,L1,GIOU, got '%s'", v);
                return -1;
            }
            i++;
            continue;
        }
        int dr = cli_dist_parse_opt(a, v, &o->dist, err); // --dist-timeout, --debug-fault
        if (dr < 0) return -1;
        if (dr) { i++; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        vlm_errorf(err, VLM_ERR_ARG, "unknown option '%s' (see --help)", a);
        return -1;
    need:
        vlm_errorf(err, VLM_ERR_ARG, "%s needs a value", a);
        return -1;
    }
#undef STR
#undef INT
#undef FLT
#undef FLAG
    if (o->eval_only) {
        if (!o->checkpoint || (!o->val && !o->heldout)) {
            vlm_errorf(err, VLM_ERR_ARG, "--eval-only needs --checkpoint DETECTOR and --val-data or --heldout-data");
            return -1;
        }
        return 0;
    }
    if (!o->clip && !o->resume) {
        vlm_errorf(err, VLM_ERR_ARG, "--clip CKPT is required (see --help)");
        return -1;
    }
    if (!o->train) {
        vlm_errorf(err, VLM_ERR_ARG, "--train-data is required (see --help)");
        return -1;
    }
    if (o->time_sched && o->max_minutes <= 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--time-schedule needs --max-minutes");
        return -1;
    }
    return 0;
}

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static char *join_names(const vlm_detset *d) {
    size_t n = 1;
    for (int k = 0; k < d->n_classes; k++) n += strlen(d->classnames[k]) + 1;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    *p = 0;
    for (int k = 0; k < d->n_classes; k++) p += sprintf(p, "%s%s", k ? "\n" : "", d->classnames[k]);
    return s;
}

// Evaluates the splits that were given; prints summaries; fills the JSON tail.
static vlm_status eval_splits(vlm_owl *o, det_split *val, det_split *held, const char *const *tmpl, int nt,
                              const opts *op, const char *run_dir, char *json, size_t cap, vlm_error *err) {
    size_t n = 0;
    det_split *sp[2] = {val, held};
    const char *tag[2] = {"val", "heldout"};
    for (int s = 0; s < 2; s++) {
        if (!sp[s] || !sp[s]->loaded) continue;
        char path[1200], summary[2048];
        snprintf(path, sizeof path, "%s/%s_results.json", run_dir, tag[s]);
        det_eval ev;
        vlm_status st = evaluate(o, sp[s], tmpl, nt, (int)op->batch, (int)op->max_det, path, &ev, summary,
                                 sizeof summary, err);
        if (st) return st;
        fprintf(stderr, "%s: %ld images, %ld categories, %ld detections (%s), %.1f s\n%s", tag[s], ev.n_images,
                (long)sp[s]->ds.n_classes, ev.n_dets, path, ev.seconds, summary);
        char pre[16];
        snprintf(pre, sizeof pre, "%s_", tag[s]);
        n += (size_t)snprintf(json + n, cap - n, "%s", n ? ", " : "");
        stats_json(json + n, cap - n, pre, ev.stats);
        n = strlen(json);
        n += (size_t)snprintf(json + n, cap - n, ", \"%s_n\": %ld", tag[s], ev.n_images);
    }
    return VLM_OK;
}

int cmd_detect_train(int argc, char **argv) {
    const char *cmd = "detect train";
    vlm_error err = {0};
    opts o;
    int pr = parse(argc, argv, &o, &err);
    if (pr == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (pr) return cli_fail(cmd, &err);
    int rc = 1;
    vlm_owl m;
    memset(&m, 0, sizeof m);
    int have_model = 0;
    det_split tr = {0}, va = {0}, ho = {0};
    char **tmpl = NULL;
    int nt = 0;
    char *classnames = NULL, *args_json = NULL;
    float *q = NULL;
    int64_t *order = NULL, *idx = NULL;
    vlm_detbatch bt;
    int have_bt = 0;
    int *groups = NULL;
    uint8_t *saved = NULL;
    vlm_det_target *tg = NULL;
    vlm_ctx c;
    int have_ctx = 0;
    FILE *mf = NULL;
    int own_tmpl = 0;
    if (o.templates && vlm_templates_resolve(o.templates, &tmpl, &nt, &own_tmpl, &err)) goto fail;
    if (o.eval_only) {
        if (vlm_owl_load(&m, o.checkpoint, NULL, &err)) goto fail;
        have_model = 1;
        if (o.nms >= 0) m.det.cfg.nms_iou = (float)o.nms;
        if ((o.val && split_load(&va, o.val, o.val_limit, &err)) ||
            (o.heldout && split_load(&ho, o.heldout, o.val_limit, &err)))
            goto fail;
        char json[4096] = "", dir[1024];
        snprintf(dir, sizeof dir, "%s", o.checkpoint);
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else snprintf(dir, sizeof dir, ".");
        if (eval_splits(&m, &va, &ho, (const char *const *)tmpl, nt, &o, dir, json, sizeof json, &err)) goto fail;
        if (o.json) printf("{%s}\n", json);
        rc = 0;
        goto done;
    }
    // model: from the CLIP (the head is fresh), or the resumed run's
    double t_setup = cli_now();
    if (o.clip) {
        if (vlm_owl_from_clip(&m, o.clip, (int)o.image_size, (int)o.patch_size, (uint64_t)o.seed, &err)) goto fail;
    } else {
        vlm_errorf(&err, VLM_ERR_ARG, "--resume also needs --clip (the run is rebuilt, then its state restored)");
        goto fail;
    }
    have_model = 1;
    m.det.cfg.nms_iou = (float)(o.nms >= 0 ? o.nms : o.one_to_many > 1 ? 0.5 : 0);
    const int S = m.det.cfg.vit.image_size, N = m.det.grid * m.det.grid, E = m.det.cfg.embed_dim;
    if (split_load(&tr, o.train, o.train_limit, &err) || (o.val && split_load(&va, o.val, o.val_limit, &err)) ||
        (o.heldout && split_load(&ho, o.heldout, o.val_limit, &err)))
        goto fail;
    if (tr.n < 1) {
        vlm_errorf(&err, VLM_ERR_ARG, "%s: no images", o.train);
        goto fail;
    }
    const int Q = tr.ds.n_classes, B = (int)o.batch;
    q = malloc(sizeof(float) * (size_t)Q * E);
    if (!q) goto oom;
    if (vlm_owl_queries(&m, (const char *const *)tr.ds.classnames, Q, (const char *const *)tmpl, nt, q, &err)) goto fail;
    classnames = join_names(&tr.ds);
    if (o.lock_image) vlm_detector_lock_image(&m.det, 1);
    // optimiser: two LR groups, the tower at tower_lr_scale x LR
    vlm_adamw opt;
    if (vlm_adamw_init(&opt, &m.det.ps, (vlm_adamw_cfg){(float)o.lr, 0.9f, 0.999f, 1e-8f, (float)o.wd}, &err)) goto fail;
    groups = malloc(sizeof(int) * (size_t)m.det.ps.n);
    saved = malloc((size_t)m.det.ps.n);
    if (!groups || !saved) goto oom;
    for (int i = 0; i < m.det.ps.n; i++) groups[i] = strncmp(m.det.ps.p[i].name, "visual.", 7) ? 1 : 0;
    float gscale[2] = {(float)o.tower_scale, 1.0f};
    // run folder
    char name[256];
    if (o.name) snprintf(name, sizeof name, "%s", o.name);
    else snprintf(name, sizeof name, "detect-s%d-p%d-b%d-seed%lld", S, m.det.cfg.vit.patch_size, B, o.seed);
    vlm_dist *Dd = cli_dist_setup(&o.dist);
    const int R = Dd->rank, W = Dd->world, io = R == 0; // only rank 0 writes files, logs and evaluates
    const int GB = B * W;                                 // global batch
    cli_run run;
    if (cli_run_init(&run, o.logs, name, o.resume, io, &err)) goto fail;
    vlm_train_state ts;
    memset(&ts, 0, sizeof ts);
    if (run.resume[0]) {
        if (vlm_owl_load_state(run.resume, &m, &ts, &err)) goto fail;
        opt.step = ts.adam_step;
        if (cli_dist_check_resume(Dd, ts.global_batch, 0, B, run.resume, &err)) goto fail;
        if (io) fprintf(stderr, "detect train: resumed %s at step %" PRId64 "\n", run.resume, ts.step);
    }
    if (cli_dist_sync_params(Dd, &m.det.ps, &err)) goto fail;
    if (io && cli_run_open_metrics(&run, &mf, &err)) goto fail;
    {
        size_t an = 1024;
        args_json = malloc(an);
        if (!args_json) goto oom;
        snprintf(args_json, an,
                 "{\"image_size\": %d, \"batch_size\": %d, \"lr\": %g, \"tower_lr_scale\": %g, \"wd\": %g, \"warmup\": "
                 "%lld, \"epochs\": %lld, \"seed\": %lld, \"hflip\": %g, \"loss_weights\": [%g, %g, %g], "
                 "\"focal_alpha\": %g, \"focal_gamma\": %g, \"one_to_many\": %lld, \"nms_iou\": %g, \"max_minutes\": %g}",
                 S, B, o.lr, o.tower_scale, o.wd, o.warmup, o.epochs, o.seed, o.hflip, o.w[0], o.w[1], o.w[2], o.alpha,
                 o.gamma, o.one_to_many, (double)m.det.cfg.nms_iou, o.max_minutes);
    }
    // buffers
    if (tr.ds.max_boxes > N) {
        vlm_errorf(&err, VLM_ERR_ARG, "%s: an image has %d boxes, more than the %d tokens that predict them", o.train,
                   tr.ds.max_boxes, N);
        goto fail;
    }
    vlm_detaug aug;
    vlm_detaug_init(&aug, S);
    aug.hflip_prob = (float)o.hflip;
    aug.scale_min = (float)o.scale[0];
    aug.scale_max = (float)o.scale[1];
    const int M = tr.ds.max_boxes > 0 ? tr.ds.max_boxes : 1;
    if (vlm_detbatch_init(&bt, B, S, M, &err)) goto fail;
    have_bt = 1;
    tg = malloc(sizeof(vlm_det_target) * (size_t)B);
    order = malloc(sizeof(int64_t) * (size_t)tr.n);
    idx = malloc(sizeof(int64_t) * (size_t)B);
    if (!tg || !order || !idx) goto oom;
    if (vlm_ctx_init(&c, 256u << 20, (uint64_t)o.seed, &err)) goto fail;
    have_ctx = 1;
    vlm_det_cfg dcfg;
    vlm_det_cfg_default(&dcfg);
    dcfg.loss_class = (float)o.w[0], dcfg.loss_bbox = (float)o.w[1], dcfg.loss_giou = (float)o.w[2];
    dcfg.focal_alpha = (float)o.alpha, dcfg.focal_gamma = (float)o.gamma;
    dcfg.one_to_many = (int)o.one_to_many;
    const int64_t steps_per_epoch = (tr.n + GB - 1) / GB;
    int64_t total = o.max_steps ? o.max_steps : steps_per_epoch * o.epochs;
    vlm_sched sched = {VLM_SCHED_COSINE, (float)o.lr, o.warmup, total, 0, 1, 0};
    const double budget = o.max_minutes > 0 ? o.max_minutes * 60.0 : 0;
    if (io)
        fprintf(stderr,
            "detect train: %d train images (%d categories, %lld boxes), input %d px (%d tokens), %lld params, batch %d, "
            "%lld steps/epoch%s; setup %.1f s; run dir %s\n",
            (int)tr.n, Q, (long long)tr.ds.n_boxes, S, N, (long long)m.det.ps.total, B, (long long)steps_per_epoch,
            budget > 0 ? ", time budget" : "", cli_now() - t_setup, run.dir);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double t_start = cli_now() - ts.elapsed_s, t_log = cli_now();
    int64_t epoch_shuffled = -1, seen_log = 0;
    const char *stop_reason = "done";
    vlm_det_stats acc = {0};
    int acc_n = 0;
    while (1) {
        if (ts.step >= total) break;
        double now = cli_now();
        if (budget > 0 && (W > 1 ? ts.elapsed_s : now - t_start) >= budget) { // W > 1: rank 0's clock, agreed last step
            stop_reason = "time budget";
            break;
        }
        cli_dist_fault(&o.dist, Dd, ts.step);
        // This rank's B images: positions R*B.. of the global batch.
        int64_t epoch = ts.step / steps_per_epoch, pos = (ts.step % steps_per_epoch) * GB + (int64_t)R * B;
        if (epoch != epoch_shuffled) { // a seeded permutation of the (limited) split per epoch
            vlm_detset_order(tr.n, (uint64_t)o.seed, (uint64_t)epoch, order);
            epoch_shuffled = epoch;
        }
        for (int b = 0; b < B; b++) idx[b] = order[(pos + b) % tr.n]; // the last batch wraps around
        if (vlm_detset_batch(&tr.ds, &aug, idx, B, 1, (uint64_t)o.seed, (uint64_t)epoch, &bt, &err)) goto fail;
        for (int b = 0; b < B; b++) tg[b] = (vlm_det_target){bt.n_boxes[b], bt.boxes + (size_t)b * M * 4, bt.classes + (size_t)b * M};
        vlm_ctx_reset(&c);
        c.grad_enabled = 1;
        c.training = 1;
        vlm_params_zero_grad(&m.det.ps);
        int64_t sh[4] = {B, 3, S, S};
        vlm_det_out out;
        vlm_det_stats stt;
        vlm_tensor *loss = NULL;
        if (!vlm_detector_forward(&c, &m.det, vlm_tensor_wrap(&c, VLM_F32, 4, sh, bt.images, NULL), q, Q, &out)) {
            if (W > 1) { // DETR's num_boxes: the mean box count per rank over all ranks
                double nb = (double)vlm_det_num_targets(tg, B, out.logits->shape[1], &dcfg);
                if (vlm_dist_allreduce_f64(Dd, &nb, 1, "box count allreduce", &err)) goto fail;
                dcfg.norm = (float)fmax(nb / W, 1.0);
            }
            loss = vlm_loss_detection(&c, out.logits, out.boxes, NULL, tg, &dcfg, &stt);
        }
        if (!loss || vlm_backward(&c, loss)) {
            err = c.err;
            goto fail;
        }
        // Data-parallel: averaged gradients (the losses are normalised by the
        // all-ranks box count above), rank 0's clock.
        double clock_s, ltot = stt.total;
        int stop_sig = g_stop != 0;
        if (cli_dist_step_end(Dd, &m.det.ps, 0, t_start, &ltot, &stop_sig, &clock_s, &err)) goto fail;
        stt.total = (float)ltot;
        if (!isfinite(stt.total) || !vlm_grads_finite(&m.det.ps)) {
            if (io)
                fprintf(stderr, "detect train: non-finite loss/gradient at step %" PRId64 "; stopping (last checkpoint kept)\n",
                    ts.step);
            rc = 3;
            goto done;
        }
        if (o.clip_norm > 0) vlm_clip_grad_norm(&m.det.ps, (float)o.clip_norm);
        now = W > 1 ? t_start + clock_s : cli_now();
        float lr = vlm_sched_lr_at(&sched, ts.step, o.time_sched, budget > 0 ? (now - t_start) / budget : 0);
        vlm_adamw_step_groups(&opt, &m.det.ps, o.lock_image ? NULL : groups, gscale, 2, lr, saved);
        ts.step++;
        ts.adam_step = opt.step;
        ts.last_loss = stt.total;
        acc.total += stt.total, acc.focal += stt.focal, acc.l1 += stt.l1, acc.giou += stt.giou;
        acc_n++;
        seen_log += GB;
        now = cli_now();
        ts.elapsed_s = W > 1 ? clock_s : now - t_start;
        ts.global_batch = GB;
        if (ts.step % o.log_every == 0 || ts.step == total) {
            double ips = seen_log / (now - t_log);
            char eta[32];
            double left = budget > 0 ? budget - ts.elapsed_s : (double)(total - ts.step) * GB / (ips > 0 ? ips : 1);
            cli_fmt_duration(left > 0 ? left : 0, eta, sizeof eta);
            if (io)
                fprintf(stderr,
                    "step %" PRId64 " | epoch %" PRId64 " | loss %.4f (focal %.4f l1 %.4f giou %.4f) | lr %.3g | %.0f img/s | ETA %s\n",
                    ts.step, epoch, acc.total / acc_n, acc.focal / acc_n, acc.l1 / acc_n, acc.giou / acc_n, lr, ips, eta);
            if (mf)
                fprintf(mf,
                    "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.6f, \"focal\": %.6f, \"l1\": %.6f, \"giou\": "
                    "%.6f, \"lr\": %g, \"img_per_s\": %.1f, \"elapsed_s\": %.1f}\n",
                    ts.step, epoch, acc.total / acc_n, acc.focal / acc_n, acc.l1 / acc_n, acc.giou / acc_n, lr, ips,
                    ts.elapsed_s);
            if (mf) fflush(mf);
            memset(&acc, 0, sizeof acc);
            acc_n = 0;
            seen_log = 0;
            t_log = now;
        }
        int stop_here = stop_sig || (budget > 0 && ts.elapsed_s >= budget) || ts.step == total;
        if (io && (ts.step % o.save_every == 0 || stop_here)) {
            ts.epoch = ts.step / steps_per_epoch;
            ts.loader_epoch = ts.epoch;
            ts.loader_index = (ts.step % steps_per_epoch) * GB;
            if (vlm_owl_save_state(run.state, &m, classnames, &ts, args_json, &err) ||
                vlm_owl_save(run.model, &m, classnames, &err))
                goto fail;
        }
        if (stop_sig) {
            stop_reason = "interrupted";
            break;
        }
    }
    if (!io) { // the same weights on every rank; rank 0 evaluates and writes
        rc = 0;
        goto done;
    }
    fprintf(stderr, "detect train: %s after %" PRId64 " steps, %.1f min\n", stop_reason, ts.step, ts.elapsed_s / 60);
    {
        char json[4096] = "";
        if (eval_splits(&m, &va, &ho, (const char *const *)tmpl, nt, &o, run.dir, json, sizeof json, &err)) goto fail;
        fprintf(mf, "{\"step\": %" PRId64 ", %s}\n", ts.step, json);
        printf("{\"steps\": %" PRId64 ", \"minutes\": %.2f, \"loss\": %.5f%s%s, \"checkpoint\": \"%s\"}\n", ts.step,
               ts.elapsed_s / 60, ts.last_loss, json[0] ? ", " : "", json, run.model);
    }
    rc = 0;
    goto done;
oom:
    vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
fail:
    cli_fail(cmd, &err);
    rc = rc == 3 ? 3 : 1;
done:
    if (mf) fclose(mf);
    if (have_ctx) vlm_ctx_free(&c);
    if (have_model) vlm_owl_free(&m);
    split_free(&tr);
    split_free(&va);
    split_free(&ho);
    if (own_tmpl) vlm_strlist_free(tmpl, nt);
    free(classnames);
    free(args_json);
    free(q);
    if (have_bt) vlm_detbatch_free(&bt);
    free(order);
    free(idx);
    free(groups);
    free(saved);
    free(tg);
    return rc;
}
