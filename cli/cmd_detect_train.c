// `vlm detect train`: fine-tune an open-vocabulary detection head from a CLIP
// on COCO-format data and evaluate it with the COCO evaluator.
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/plot.h"
#include "cli/train_common.h"
#include "core/optim.h"
#include "data/coco.h"
#include "data/coco_eval.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/detection.h"
#include "fusion/zeroshot.h"
#include "losses/detection.h"
#ifdef _OPENMP
#include <omp.h>
#endif

// ---------------------------------------------------------------- data
// One COCO split decoded once into memory: images eval-transformed to the
// detector's input size (the scenes are small), boxes normalised to the
// canvas as (cx, cy, w, h), labels as indices into the split's categories.
typedef struct {
    vlm_coco_gt gt;
    int n, S;
    float *px;             // [n, 3, S, S]
    int64_t *ann0;         // [n + 1] first box of image i
    float *boxes;          // [n_boxes, 4]
    int32_t *labels;       // [n_boxes] category index (gt.categories order)
    int skipped;           // crowd boxes dropped from training targets
} det_split;

static void split_free(det_split *d) {
    vlm_coco_gt_free(&d->gt);
    free(d->px);
    free(d->ann0);
    free(d->boxes);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static vlm_status split_load(det_split *d, const char *json, const char *images_dir, int S, int limit,
                             vlm_error *err) {
    memset(d, 0, sizeof *d);
    d->S = S;
    vlm_status st = vlm_coco_gt_load(&d->gt, json, err);
    if (st) return st;
    char dir[1024];
    if (images_dir) snprintf(dir, sizeof dir, "%s", images_dir);
    else {
        snprintf(dir, sizeof dir, "%s", json);
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    int n = (int)d->gt.n_images;
    if (limit > 0 && limit < n) n = limit;
    d->n = n;
    d->px = malloc(sizeof(float) * 3 * (size_t)S * (size_t)S * (size_t)(n ? n : 1));
    d->ann0 = calloc((size_t)n + 1, sizeof(int64_t));
    d->boxes = malloc(sizeof(float) * 4 * (size_t)(d->gt.n_anns + 1));
    d->labels = malloc(sizeof(int32_t) * (size_t)(d->gt.n_anns + 1));
    long *img_of = malloc(sizeof(long) * (size_t)(d->gt.n_anns + 1));
    if (!d->px || !d->ann0 || !d->boxes || !d->labels || !img_of) {
        free(img_of);
        split_free(d);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %d images at %d px", json, n, S);
    }
    // annotations grouped by image, in file order within an image
    for (long a = 0; a < d->gt.n_anns; a++) img_of[a] = vlm_coco_gt_find_image(&d->gt, d->gt.anns[a].image_id);
    int64_t k = 0;
    for (int i = 0; i < n; i++) {
        d->ann0[i] = k;
        const vlm_coco_image *im = &d->gt.images[i];
        for (long a = 0; a < d->gt.n_anns; a++) {
            if (img_of[a] != i) continue;
            const vlm_coco_ann *an = &d->gt.anns[a];
            if (an->iscrowd) {
                d->skipped++;
                continue;
            }
            double W = (double)(im->width > 0 ? im->width : S), H = (double)(im->height > 0 ? im->height : S);
            float *b = d->boxes + 4 * k;
            b[0] = (float)((an->bbox[0] + 0.5 * an->bbox[2]) / W);
            b[1] = (float)((an->bbox[1] + 0.5 * an->bbox[3]) / H);
            b[2] = (float)(an->bbox[2] / W);
            b[3] = (float)(an->bbox[3] / H);
            d->labels[k++] = (int32_t)vlm_coco_gt_find_category(&d->gt, an->category_id);
        }
    }
    d->ann0[n] = k;
    free(img_of);
    // decode + eval transform, images in parallel (each thread its own buffers)
    vlm_status first = VLM_OK;
    vlm_error ferr = {0};
#pragma omp parallel
    {
        vlm_image img;
        vlm_image_init(&img);
        vlm_transform_scratch sc;
        vlm_transform_scratch_init(&sc);
        vlm_transform t;
        vlm_transform_init(&t, S);
        vlm_decode_opts opt;
        vlm_decode_opts_default(&opt);
        vlm_error e;
#pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < n; i++) {
            char path[2048];
            const char *fn = d->gt.images[i].file_name;
            snprintf(path, sizeof path, "%s/%s", dir, fn ? fn : "");
            vlm_status s2 = fn ? vlm_image_load(&img, path, &opt, &e) : vlm_errorf(&e, VLM_ERR_FORMAT, "%s: image %lld has no file_name", json, (long long)d->gt.images[i].id);
            if (!s2) s2 = vlm_transform_eval(&t, &img, d->px + (size_t)i * 3 * S * S, &sc, &e);
            if (s2) {
#pragma omp critical
                if (!first) {
                    first = s2;
                    ferr = e;
                }
            }
        }
        vlm_image_free(&img);
        vlm_transform_scratch_free(&sc);
    }
    if (first) {
        if (err) *err = ferr;
        split_free(d);
        return first;
    }
    return VLM_OK;
}

// Category names of a split (pointers into gt).
static const char **split_names(const det_split *d) {
    const char **v = malloc(sizeof(char *) * (size_t)(d->gt.n_categories + 1));
    if (!v) return NULL;
    for (long k = 0; k < d->gt.n_categories; k++) v[k] = d->gt.categories[k].name ? d->gt.categories[k].name : "";
    return v;
}

// Batch assembly with a horizontal flip (boxes mirrored with the pixels),
// deterministic per (seed, epoch, position).
static void make_batch(const det_split *d, const int32_t *order, int64_t pos, int B, uint64_t seed, int64_t epoch,
                       float hflip, float *img, float *boxes, int32_t *labels, vlm_det_target *tg) {
    const int S = d->S;
    const size_t P = (size_t)S * S;
    int64_t k = 0;
    for (int b = 0; b < B; b++) {
        int i = order[(pos + b) % d->n];
        vlm_rng r;
        vlm_rng_init(&r, seed, VLM_RNG_AUGMENT, (uint64_t)epoch * 0x100000000ull + (uint64_t)(pos + b));
        int flip = hflip > 0 && vlm_rng_uniform(&r) < hflip;
        const float *src = d->px + (size_t)i * 3 * P;
        float *dst = img + (size_t)b * 3 * P;
        if (!flip) memcpy(dst, src, sizeof(float) * 3 * P);
        else
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) dst[ch * P + y * S + x] = src[ch * P + y * S + (S - 1 - x)];
        tg[b].n = (int)(d->ann0[i + 1] - d->ann0[i]);
        tg[b].boxes = boxes + 4 * k;
        tg[b].query = labels + k;
        for (int64_t a = d->ann0[i]; a < d->ann0[i + 1]; a++, k++) {
            memcpy(boxes + 4 * k, d->boxes + 4 * a, sizeof(float) * 4);
            if (flip) boxes[4 * k] = 1.0f - boxes[4 * k];
            labels[k] = d->labels[a];
        }
    }
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
    int Q = (int)d->gt.n_categories, E = o->det.cfg.embed_dim, S = d->S, N = o->det.grid * o->det.grid;
    const char **names = split_names(d);
    float *q = malloc(sizeof(float) * (size_t)Q * E);
    vlm_det_box *bx = malloc(sizeof(vlm_det_box) * (size_t)max_det);
    vlm_coco_results res;
    vlm_coco_results_init(&res);
    vlm_ctx c;
    vlm_status st = !names || !q || !bx ? vlm_errorf(err, VLM_ERR_OOM, "detect eval: out of memory") : VLM_OK;
    if (!st) st = vlm_owl_queries(o, names, Q, templates, nt, q, err);
    if (!st) st = vlm_ctx_init(&c, 64u << 20, 0, err);
    if (st) goto done;
    c.grad_enabled = 0;
    c.training = 0;
    for (int i0 = 0; i0 < d->n && !st; i0 += B) {
        int nb = d->n - i0 < B ? d->n - i0 : B;
        vlm_ctx_reset(&c);
        int64_t sh[4] = {nb, 3, S, S};
        vlm_tensor *x = vlm_tensor_wrap(&c, VLM_F32, 4, sh, d->px + (size_t)i0 * 3 * S * S, NULL);
        vlm_det_out out;
        if (vlm_detector_forward(&c, &o->det, x, q, Q, &out)) {
            st = c.status;
            if (err) *err = c.err;
            break;
        }
        for (int b = 0; b < nb && !st; b++) {
            const vlm_coco_image *im = &d->gt.images[i0 + b];
            int W = im->width > 0 ? (int)im->width : S, H = im->height > 0 ? (int)im->height : S;
            int n = vlm_detector_decode(vlm_f32(out.logits) + (size_t)b * N * Q, vlm_f32(out.boxes) + (size_t)b * N * 4,
                                        N, Q, NULL, W, H, max_det, 0, bx);
            if (n < 0) st = vlm_errorf(err, VLM_ERR_OOM, "detect eval: out of memory");
            for (int k = 0; k < n && !st; k++) {
                double box[4] = {bx[k].x, bx[k].y, bx[k].w, bx[k].h};
                st = vlm_coco_results_add(&res, im->id, d->gt.categories[bx[k].query].id, box, bx[k].score, err);
            }
        }
    }
    if (!st && out_json) st = vlm_coco_results_save(&res, out_json, err);
    if (!st) {
        // evaluate only the images we ran on (a --val-limit prefix)
        vlm_coco_gt sub = d->gt;
        sub.n_images = d->n;
        vlm_coco_eval e;
        vlm_coco_eval_init(&e);
        if (d->n < d->gt.n_images) { // drop annotations of images beyond the prefix
            vlm_coco_gt cut;
            vlm_coco_gt_init(&cut);
            for (long i = 0; i < d->n && !st; i++)
                st = vlm_coco_gt_add_image(&cut, d->gt.images[i].id, d->gt.images[i].width, d->gt.images[i].height,
                                           d->gt.images[i].file_name, err);
            for (long k = 0; k < d->gt.n_categories && !st; k++)
                st = vlm_coco_gt_add_category(&cut, d->gt.categories[k].id, d->gt.categories[k].name, NULL, err);
            for (long a = 0; a < d->gt.n_anns && !st; a++)
                if (vlm_coco_gt_find_image(&cut, d->gt.anns[a].image_id) >= 0)
                    st = vlm_coco_gt_add_ann(&cut, &d->gt.anns[a], err);
            if (!st) st = vlm_coco_eval_run(&e, &cut, &res, err);
            vlm_coco_gt_free(&cut);
        } else {
            st = vlm_coco_eval_run(&e, &sub, &res, err);
        }
        if (!st) {
            memcpy(ev->stats, e.stats, sizeof ev->stats);
            if (summary) vlm_coco_eval_summary(&e, summary, summary_cap);
        }
        vlm_coco_eval_free(&e);
    }
    ev->n_images = d->n;
    ev->n_dets = res.n;
    vlm_ctx_free(&c);
done:
    ev->seconds = cli_now() - t0;
    vlm_coco_results_free(&res);
    free(names);
    free(q);
    free(bx);
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
    "  --train-data JSON        COCO ground truth; images are file_name relative to the JSON's folder\n"
    "  --val-data JSON          evaluation split (queries: its categories); repeatable via --heldout-data\n"
    "  --heldout-data JSON      a second evaluation split, e.g. classes never boxed in training\n"
    "  --train-limit N / --val-limit N   use the first N images\n"
    "  --hflip P                horizontal flip probability, boxes mirrored (default 0.5)\n"
    "model:\n"
    "  --clip CKPT              CLIP model file (vlm pretrain) with its tokenizer\n"
    "  --image-size S           detector input size (default: the CLIP's); the positional embedding is resized\n"
    "  --templates NAME|FILE    query templates (default name: the class name itself)\n"
    "  --lock-image             train the head only\n"
    "optimisation:\n"
    "  --batch-size B (32)  --epochs E (20)  --lr LR (3e-4)  --tower-lr-scale F (0.3: tower LR = F * LR)\n"
    "  --wd WD (0.05)  --warmup STEPS (200)  --grad-clip-norm N (1.0)  --seed S (0)\n"
    "  --max-steps N  --max-minutes M  --time-schedule (cosine over the time budget)\n"
    "  --loss-weights C,L1,GIOU (2,5,2)  --focal-alpha A (0.3)  --focal-gamma G (2)\n"
    "runs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (500)  --log-every N (20)  --resume latest|FILE\n"
    "  --max-det N (100)  --eval-only --checkpoint DETECTOR  --json (end with one JSON line of COCO stats)\n";

typedef struct {
    const char *clip, *train, *val, *heldout, *logs, *name, *resume, *templates, *checkpoint;
    long long image_size, batch, epochs, warmup, seed, max_steps, save_every, log_every, train_limit, val_limit,
        max_det;
    double lr, tower_scale, wd, clip_norm, max_minutes, hflip, alpha, gamma, w[3];
    int lock_image, time_sched, json, eval_only;
} opts;

static int parse(int argc, char **argv, opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->logs = "./logs";
    o->batch = 32, o->epochs = 20, o->warmup = 200, o->save_every = 500, o->log_every = 20, o->max_det = 100;
    o->lr = 3e-4, o->tower_scale = 0.3, o->wd = 0.05, o->clip_norm = 1.0, o->hflip = 0.5, o->alpha = 0.3,
    o->gamma = 2;
    o->w[0] = 2, o->w[1] = 5, o->w[2] = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(flag, f) if (!strcmp(a, flag)) { if (!v) goto need; o->f = v; i++; continue; }
#define INT(flag, f, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_int(flag, v, lo, hi, &o->f, err)) return -1; i++; continue; }
#define FLT(flag, f, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_float(flag, v, lo, hi, &o->f, err)) return -1; i++; continue; }
#define FLAG(flag, f) if (!strcmp(a, flag)) { o->f = 1; continue; }
        STR("--clip", clip) STR("--train-data", train) STR("--val-data", val) STR("--heldout-data", heldout)
        STR("--logs", logs) STR("--name", name) STR("--resume", resume) STR("--templates", templates)
        STR("--checkpoint", checkpoint)
        INT("--image-size", image_size, 8, 4096) INT("--batch-size", batch, 1, 1 << 16) INT("--epochs", epochs, 1, 1 << 20)
        INT("--warmup", warmup, 0, 1LL << 40) INT("--seed", seed, 0, INT64_MAX) INT("--max-steps", max_steps, 1, 1LL << 40)
        INT("--save-every-steps", save_every, 1, 1LL << 40) INT("--log-every", log_every, 1, 1 << 30)
        INT("--train-limit", train_limit, 1, 1 << 30) INT("--val-limit", val_limit, 1, 1 << 30)
        INT("--max-det", max_det, 1, 100000)
        FLT("--lr", lr, 0, 10) FLT("--tower-lr-scale", tower_scale, 0, 100) FLT("--wd", wd, 0, 10)
        FLT("--grad-clip-norm", clip_norm, 0, 1e9) FLT("--max-minutes", max_minutes, 0, 1e7) FLT("--hflip", hflip, 0, 1)
        FLT("--focal-alpha", alpha, 0, 1) FLT("--focal-gamma", gamma, 0, 10)
        FLAG("--lock-image", lock_image) FLAG("--time-schedule", time_sched) FLAG("--json", json)
        FLAG("--eval-only", eval_only)
        if (!strcmp(a, "--loss-weights")) {
            if (!v) goto need;
            if (sscanf(v, "%lf,%lf,%lf", &o->w[0], &o->w[1], &o->w[2]) != 3 || o->w[0] < 0 || o->w[1] < 0 || o->w[2] < 0) {
                vlm_errorf(err, VLM_ERR_ARG, "--loss-weights: expected three non-negative numbers C,L1,GIOU, got '%s'", v);
                return -1;
            }
            i++;
            continue;
        }
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

static char *join_names(const det_split *d) {
    size_t n = 1;
    for (long k = 0; k < d->gt.n_categories; k++) n += strlen(d->gt.categories[k].name ? d->gt.categories[k].name : "") + 1;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    *p = 0;
    for (long k = 0; k < d->gt.n_categories; k++)
        p += sprintf(p, "%s%s", k ? "\n" : "", d->gt.categories[k].name ? d->gt.categories[k].name : "");
    return s;
}

// Evaluates the splits that were given; prints summaries; fills the JSON tail.
static vlm_status eval_splits(vlm_owl *o, det_split *val, det_split *held, const char *const *tmpl, int nt,
                              const opts *op, const char *run_dir, char *json, size_t cap, vlm_error *err) {
    size_t n = 0;
    det_split *sp[2] = {val, held};
    const char *tag[2] = {"val", "heldout"};
    for (int s = 0; s < 2; s++) {
        if (!sp[s] || !sp[s]->n) continue;
        char path[1200], summary[2048];
        snprintf(path, sizeof path, "%s/%s_results.json", run_dir, tag[s]);
        det_eval ev;
        vlm_status st = evaluate(o, sp[s], tmpl, nt, (int)op->batch, (int)op->max_det, path, &ev, summary,
                                 sizeof summary, err);
        if (st) return st;
        fprintf(stderr, "%s: %ld images, %ld categories, %ld detections (%s), %.1f s\n%s", tag[s], ev.n_images,
                sp[s]->gt.n_categories, ev.n_dets, path, ev.seconds, summary);
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
    float *q = NULL, *img = NULL, *boxes = NULL;
    int32_t *labels = NULL, *order = NULL;
    int *groups = NULL;
    uint8_t *saved = NULL;
    vlm_det_target *tg = NULL;
    vlm_ctx c;
    int have_ctx = 0;
    FILE *mf = NULL;
    int own_tmpl = o.templates && !vlm_templates_builtin(o.templates);
    // templates
    if (o.templates) {
        const vlm_template_set *ts = vlm_templates_builtin(o.templates);
        if (ts) {
            tmpl = (char **)ts->t;
            nt = ts->n;
        } else if (vlm_templates_load(o.templates, &tmpl, &nt, &err)) {
            tmpl = NULL;
            goto fail;
        }
    }
    if (o.eval_only) {
        if (vlm_owl_load(&m, o.checkpoint, NULL, &err)) goto fail;
        have_model = 1;
        int S = m.det.cfg.vit.image_size;
        if ((o.val && split_load(&va, o.val, NULL, S, (int)o.val_limit, &err)) ||
            (o.heldout && split_load(&ho, o.heldout, NULL, S, (int)o.val_limit, &err)))
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
        if (vlm_owl_from_clip(&m, o.clip, (int)o.image_size, (uint64_t)o.seed, &err)) goto fail;
    } else {
        vlm_errorf(&err, VLM_ERR_ARG, "--resume also needs --clip (the run is rebuilt, then its state restored)");
        goto fail;
    }
    have_model = 1;
    const int S = m.det.cfg.vit.image_size, N = m.det.grid * m.det.grid, E = m.det.cfg.embed_dim;
    if (split_load(&tr, o.train, NULL, S, (int)o.train_limit, &err) ||
        (o.val && split_load(&va, o.val, NULL, S, (int)o.val_limit, &err)) ||
        (o.heldout && split_load(&ho, o.heldout, NULL, S, (int)o.val_limit, &err)))
        goto fail;
    if (tr.n < 1) {
        vlm_errorf(&err, VLM_ERR_ARG, "%s: no images", o.train);
        goto fail;
    }
    const int Q = (int)tr.gt.n_categories, B = (int)o.batch;
    const char **qn = split_names(&tr);
    q = malloc(sizeof(float) * (size_t)Q * E);
    if (!qn || !q) {
        free(qn);
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto fail;
    }
    vlm_status qst = vlm_owl_queries(&m, qn, Q, (const char *const *)tmpl, nt, q, &err);
    free(qn);
    if (qst) goto fail;
    classnames = join_names(&tr);
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
    char run_dir[1024], ck_dir[1100], model_path[1300], state_path[1300], metrics[1200], name[256];
    if (o.name) snprintf(name, sizeof name, "%s", o.name);
    else snprintf(name, sizeof name, "detect-s%d-b%d-seed%lld", S, B, o.seed);
    snprintf(run_dir, sizeof run_dir, "%s/%s", o.logs, name);
    snprintf(ck_dir, sizeof ck_dir, "%s/checkpoints", run_dir);
    snprintf(model_path, sizeof model_path, "%s/epoch_latest.safetensors", ck_dir);
    snprintf(state_path, sizeof state_path, "%s/epoch_latest.state.safetensors", ck_dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run_dir);
    if (cli_mkdirs(ck_dir, &err)) goto fail;
    vlm_train_state ts;
    memset(&ts, 0, sizeof ts);
    if (o.resume) {
        const char *sp = strcmp(o.resume, "latest") ? o.resume : state_path;
        if (vlm_owl_load_state(sp, &m, &ts, &err)) goto fail;
        opt.step = ts.adam_step;
        fprintf(stderr, "detect train: resumed %s at step %" PRId64 "\n", sp, ts.step);
    }
    mf = fopen(metrics, o.resume ? "a" : "w");
    if (!mf) {
        vlm_errorf(&err, VLM_ERR_IO, "%s: cannot open for writing", metrics);
        goto fail;
    }
    {
        size_t an = 1024;
        args_json = malloc(an);
        if (!args_json) goto oom;
        snprintf(args_json, an,
                 "{\"image_size\": %d, \"batch_size\": %d, \"lr\": %g, \"tower_lr_scale\": %g, \"wd\": %g, \"warmup\": "
                 "%lld, \"epochs\": %lld, \"seed\": %lld, \"hflip\": %g, \"loss_weights\": [%g, %g, %g], "
                 "\"focal_alpha\": %g, \"focal_gamma\": %g, \"max_minutes\": %g}",
                 S, B, o.lr, o.tower_scale, o.wd, o.warmup, o.epochs, o.seed, o.hflip, o.w[0], o.w[1], o.w[2], o.alpha,
                 o.gamma, o.max_minutes);
    }
    // buffers
    int64_t max_boxes = 0;
    for (int i = 0; i < tr.n; i++)
        if (tr.ann0[i + 1] - tr.ann0[i] > max_boxes) max_boxes = tr.ann0[i + 1] - tr.ann0[i];
    if (max_boxes > N) {
        vlm_errorf(&err, VLM_ERR_ARG, "%s: an image has %lld boxes, more than the %d tokens that predict them", o.train,
                   (long long)max_boxes, N);
        goto fail;
    }
    img = malloc(sizeof(float) * 3 * (size_t)S * S * (size_t)B);
    boxes = malloc(sizeof(float) * 4 * (size_t)(max_boxes * B + 1));
    labels = malloc(sizeof(int32_t) * (size_t)(max_boxes * B + 1));
    tg = malloc(sizeof(vlm_det_target) * (size_t)B);
    order = malloc(sizeof(int32_t) * (size_t)tr.n);
    if (!img || !boxes || !labels || !tg || !order) goto oom;
    if (vlm_ctx_init(&c, 256u << 20, (uint64_t)o.seed, &err)) goto fail;
    have_ctx = 1;
    vlm_det_cfg dcfg;
    vlm_det_cfg_default(&dcfg);
    dcfg.loss_class = (float)o.w[0], dcfg.loss_bbox = (float)o.w[1], dcfg.loss_giou = (float)o.w[2];
    dcfg.focal_alpha = (float)o.alpha, dcfg.focal_gamma = (float)o.gamma;
    const int64_t steps_per_epoch = (tr.n + B - 1) / B;
    int64_t total = o.max_steps ? o.max_steps : steps_per_epoch * o.epochs;
    vlm_sched sched = {VLM_SCHED_COSINE, (float)o.lr, o.warmup, total, 0, 1, 0};
    const double budget = o.max_minutes > 0 ? o.max_minutes * 60.0 : 0;
    fprintf(stderr,
            "detect train: %d train images (%d categories, %lld boxes), input %d px (%d tokens), %lld params, batch %d, "
            "%lld steps/epoch%s; setup %.1f s; run dir %s\n",
            tr.n, Q, (long long)tr.ann0[tr.n], S, N, (long long)m.det.ps.total, B, (long long)steps_per_epoch,
            budget > 0 ? ", time budget" : "", cli_now() - t_setup, run_dir);
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
        if (budget > 0 && now - t_start >= budget) {
            stop_reason = "time budget";
            break;
        }
        int64_t epoch = ts.step / steps_per_epoch, pos = (ts.step % steps_per_epoch) * B;
        if (epoch != epoch_shuffled) { // a seeded permutation per epoch
            for (int i = 0; i < tr.n; i++) order[i] = i;
            vlm_rng r;
            vlm_rng_init(&r, (uint64_t)o.seed, VLM_RNG_DATA, (uint64_t)epoch);
            vlm_rng_shuffle_u32(&r, (uint32_t *)order, (uint64_t)tr.n);
            epoch_shuffled = epoch;
        }
        make_batch(&tr, order, pos, B, (uint64_t)o.seed, epoch, (float)o.hflip, img, boxes, labels, tg);
        vlm_ctx_reset(&c);
        c.grad_enabled = 1;
        c.training = 1;
        vlm_params_zero_grad(&m.det.ps);
        int64_t sh[4] = {B, 3, S, S};
        vlm_det_out out;
        vlm_det_stats stt;
        vlm_tensor *loss = NULL;
        if (!vlm_detector_forward(&c, &m.det, vlm_tensor_wrap(&c, VLM_F32, 4, sh, img, NULL), q, Q, &out))
            loss = vlm_loss_detection(&c, out.logits, out.boxes, NULL, tg, &dcfg, &stt);
        if (!loss || vlm_backward(&c, loss)) {
            err = c.err;
            goto fail;
        }
        if (!isfinite(stt.total) || !vlm_grads_finite(&m.det.ps)) {
            fprintf(stderr, "detect train: non-finite loss/gradient at step %" PRId64 "; stopping (last checkpoint kept)\n",
                    ts.step);
            rc = 3;
            goto done;
        }
        if (o.clip_norm > 0) vlm_clip_grad_norm(&m.det.ps, (float)o.clip_norm);
        now = cli_now();
        float lr = vlm_sched_lr_at(&sched, ts.step, o.time_sched, budget > 0 ? (now - t_start) / budget : 0);
        vlm_adamw_step_groups(&opt, &m.det.ps, o.lock_image ? NULL : groups, gscale, 2, lr, saved);
        ts.step++;
        ts.adam_step = opt.step;
        ts.last_loss = stt.total;
        acc.total += stt.total, acc.focal += stt.focal, acc.l1 += stt.l1, acc.giou += stt.giou;
        acc_n++;
        seen_log += B;
        now = cli_now();
        ts.elapsed_s = now - t_start;
        if (ts.step % o.log_every == 0 || ts.step == total) {
            double ips = seen_log / (now - t_log);
            char eta[32];
            double left = budget > 0 ? budget - ts.elapsed_s : (double)(total - ts.step) * B / (ips > 0 ? ips : 1);
            cli_fmt_duration(left > 0 ? left : 0, eta, sizeof eta);
            fprintf(stderr,
                    "step %" PRId64 " | epoch %" PRId64 " | loss %.4f (focal %.4f l1 %.4f giou %.4f) | lr %.3g | %.0f img/s | ETA %s\n",
                    ts.step, epoch, acc.total / acc_n, acc.focal / acc_n, acc.l1 / acc_n, acc.giou / acc_n, lr, ips, eta);
            fprintf(mf,
                    "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.6f, \"focal\": %.6f, \"l1\": %.6f, \"giou\": "
                    "%.6f, \"lr\": %g, \"img_per_s\": %.1f, \"elapsed_s\": %.1f}\n",
                    ts.step, epoch, acc.total / acc_n, acc.focal / acc_n, acc.l1 / acc_n, acc.giou / acc_n, lr, ips,
                    ts.elapsed_s);
            fflush(mf);
            memset(&acc, 0, sizeof acc);
            acc_n = 0;
            seen_log = 0;
            t_log = now;
        }
        int stop_here = g_stop || (budget > 0 && ts.elapsed_s >= budget) || ts.step == total;
        if (ts.step % o.save_every == 0 || stop_here) {
            ts.epoch = ts.step / steps_per_epoch;
            ts.loader_epoch = ts.epoch;
            ts.loader_index = (ts.step % steps_per_epoch) * B;
            if (vlm_owl_save_state(state_path, &m, classnames, &ts, args_json, &err) ||
                vlm_owl_save(model_path, &m, classnames, &err))
                goto fail;
        }
        if (g_stop) {
            stop_reason = "interrupted";
            break;
        }
    }
    fprintf(stderr, "detect train: %s after %" PRId64 " steps, %.1f min\n", stop_reason, ts.step, ts.elapsed_s / 60);
    {
        char json[4096] = "";
        if (eval_splits(&m, &va, &ho, (const char *const *)tmpl, nt, &o, run_dir, json, sizeof json, &err)) goto fail;
        fprintf(mf, "{\"step\": %" PRId64 ", %s}\n", ts.step, json);
        printf("{\"steps\": %" PRId64 ", \"minutes\": %.2f, \"loss\": %.5f%s%s, \"checkpoint\": \"%s\"}\n", ts.step,
               ts.elapsed_s / 60, ts.last_loss, json[0] ? ", " : "", json, model_path);
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
    free(img);
    free(boxes);
    free(labels);
    free(order);
    free(groups);
    free(saved);
    free(tg);
    return rc;
}
