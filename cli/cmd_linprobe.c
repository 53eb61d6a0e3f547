// `vlm linprobe`: logistic regression on frozen image features (CLIP paper
// protocol: C swept on a validation split of the training set, refit on all
// of it, test accuracy). Features come from a CLIP checkpoint's vision tower
// or a vlm classifier, before (pre) or after (post) the projection.
#include <inttypes.h>
#include "core/clock.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "data/loader.h"
#include "fusion/checkpoint.h"
#include "eval/linprobe.h"
#include "vision/classifier.h"

static const char *usage =
    "usage: vlm linprobe --checkpoint CKPT --train-data DATA --val-data TEST [options]\n"
    "  --checkpoint CKPT        CLIP checkpoint (vision tower) or vlm classifier file\n"
    "  --train-data PATH        labelled training images (manifest with a label column, ImageFolder, IDX, webdataset .cls)\n"
    "  --val-data PATH          labelled test images; top-1/top-5 reported on them\n"
    "  --features pre|post      pooled ln_post features [W] (pre, default) or their projection [E] (post)\n"
    "  --val-fraction F (0.2)   training samples held out to choose C\n"
    "  --c-min C (1e-4)  --c-max C (1e4)  --c-steps N (9)  --refine R (2)   log-spaced sweep + bisection rounds\n"
    "  --max-iter N (1000)      L-BFGS iterations per fit\n"
    "  --train-limit N  --val-limit N   first N samples only\n"
    "  --csv-img-key K  --csv-label-key K  --csv-separator C  --classnames FILE\n"
    "  --seed S (0)  --batch-size B (256)  --workers N (2)  --composite R,G,B\n"
    "  --json                   end with one JSON line (top1, top5, best_C, sweep, ...)\n"
    "The objective is sklearn's LogisticRegression(C) (multinomial, L2, unpenalised bias) on standardised features.\n";

// Encodes every image of ds (eval transform) into features [n, d] and labels [n].
static vlm_status encode(vlm_classifier *m, const vlm_dataset *ds, vlm_feat_kind kind, const cli_data_opts *dopt, float **X,
                         int32_t **y, int64_t *n_out, int *d_out, vlm_error *err) {
    const int S = m->cfg.vit.image_size, d = kind == VLM_FEAT_POST ? m->cfg.vit.output_dim : m->cfg.vit.width;
    vlm_loader_opts lo;
    vlm_loader_opts_eval(&lo, S, (int)dopt->batch, (int)dopt->workers);
    lo.decode = dopt->dec;
    vlm_loader *L;
    vlm_status st = vlm_loader_open(&L, ds, &lo, err);
    if (st) return st;
    int64_t cap = ds->n ? ds->n : 1, n = 0;
    float *x = malloc(sizeof(float) * (size_t)(cap * d));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)cap);
    vlm_ctx c;
    if (!x || !lab || vlm_ctx_init(&c, 16u << 20, 0, err)) {
        free(x);
        free(lab);
        vlm_loader_free(L);
        return err && err->status ? err->status : vlm_errorf(err, VLM_ERR_OOM, "linprobe: out of memory");
    }
    c.grad_enabled = 0;
    c.training = 0;
    vlm_batch b;
    double t0 = vlm_now(), tl = t0;
    while ((st = vlm_loader_next(L, &b, err)) == VLM_OK && b.n > 0) {
        vlm_ctx_reset(&c);
        int64_t sh[4] = {b.n, 3, S, S};
        vlm_tensor *f = vlm_classifier_features(&c, m, vlm_tensor_wrap(&c, VLM_F32, 4, sh, b.images, NULL), kind);
        if (!f) {
            st = c.status;
            *err = c.err;
            break;
        }
        memcpy(x + n * d, vlm_f32(f), sizeof(float) * (size_t)b.n * d);
        memcpy(lab + n, b.labels, sizeof(int32_t) * (size_t)b.n);
        n += b.n;
        double now = vlm_now();
        if (now - tl > 10) {
            fprintf(stderr, "linprobe: encoded %" PRId64 "/%" PRId64 " (%.0f img/s)\n", n, ds->n, n / (now - t0));
            tl = now;
        }
    }
    vlm_ctx_free(&c);
    vlm_loader_free(L);
    if (st) {
        free(x);
        free(lab);
        return st;
    }
    *X = x;
    *y = lab;
    *n_out = n;
    *d_out = d;
    return VLM_OK;
}

static void on_fit(void *ud, double C, double acc, const vlm_logreg *m) {
    (void)ud;
    fprintf(stderr, "linprobe: C %-10.4g val top-1 %.2f%%  (%d L-BFGS iterations%s, loss %.4f)\n", C, 100 * acc, m->iters,
            m->converged ? "" : ", not converged", m->loss);
}

typedef struct {
    const char *ckpt, *train_p, *test_p, *features, *classnames;
    long long train_limit, val_limit, seed, c_steps, refine, max_iter;
    double val_frac, c_min, c_max;
    int json;
    cli_data_opts d;
} lp_opts;

// 0: parsed, 1: --help, -1: usage error.
static int parse(int argc, char **argv, lp_opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->features = "pre", o->c_steps = 9, o->refine = 2, o->max_iter = 1000;
    o->val_frac = 0.2, o->c_min = 1e-4, o->c_max = 1e4;
    cli_data_opts_default(&o->d, 256);
    const double BIG = 1099511627776.0;
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &o->ckpt, 0, 0, NULL, NULL},
        {"train-data", CLI_STR, &o->train_p, 0, 0, NULL, NULL},
        {"val-data", CLI_STR, &o->test_p, 0, 0, NULL, NULL},
        {"test-data", CLI_STR, &o->test_p, 0, 0, NULL, "val-data"},
        {"features", CLI_STR, &o->features, 0, 0, NULL, NULL},
        {"classnames", CLI_STR, &o->classnames, 0, 0, NULL, NULL},
        {"train-limit", CLI_INT, &o->train_limit, 1, BIG, NULL, NULL},
        {"val-limit", CLI_INT, &o->val_limit, 1, BIG, NULL, NULL},
        {"seed", CLI_INT, &o->seed, 0, 9.3e18, NULL, NULL},
        {"c-steps", CLI_INT, &o->c_steps, 1, 48, NULL, NULL},
        {"refine", CLI_INT, &o->refine, 0, 8, NULL, NULL},
        {"max-iter", CLI_INT, &o->max_iter, 1, 1000000, NULL, NULL},
        {"val-fraction", CLI_FLT, &o->val_frac, 1e-6, 0.999, NULL, NULL},
        {"c-min", CLI_FLT, &o->c_min, 1e-12, 1e12, NULL, NULL},
        {"c-max", CLI_FLT, &o->c_max, 1e-12, 1e12, NULL, NULL},
        {"json", CLI_FLAG, &o->json, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt data[CLI_DATA_OPTS];
    cli_data_table(data, &o->d, 1);
    const cli_opt *tabs[] = {own, data};
    int r = cli_parse_flags("linprobe", argc, argv, tabs, 2, err);
    if (r) return r;
    if (!o->ckpt || !o->train_p || !o->test_p)
        vlm_errorf(err, VLM_ERR_ARG, "--checkpoint, --train-data and --val-data are required (see vlm linprobe --help)");
    else if (strcmp(o->features, "pre") && strcmp(o->features, "post"))
        vlm_errorf(err, VLM_ERR_ARG, "--features must be pre or post, not '%s'", o->features);
    else if (o->c_max < o->c_min)
        vlm_errorf(err, VLM_ERR_ARG, "--c-max must not be below --c-min");
    else
        return 0;
    return -1;
}

// The model whose image features are probed: a vlm classifier file as is, or
// a CLIP checkpoint's vision tower (with its projection) in a K-class classifier.
static vlm_status load_model(const char *ckpt, int K, vlm_classifier *m, vlm_error *err) {
    int is_cls = vlm_classifier_file_is(ckpt, err);
    if (is_cls < 0) return err->status;
    if (is_cls) return vlm_classifier_load(ckpt, m, NULL, err);
    vlm_clip clip;
    vlm_status st = vlm_ckpt_load_model(ckpt, &clip, NULL, err);
    if (st) return st;
    vlm_classifier_cfg cfg;
    vlm_classifier_cfg_from_vit(&cfg, &clip.cfg.vision, K);
    cfg.vit.output_dim = clip.cfg.embed_dim;
    if (!(st = vlm_classifier_init(m, &cfg, err)) && (st = vlm_classifier_copy_from(m, &clip.ps, "visual.", NULL, err)))
        vlm_classifier_free(m);
    vlm_clip_free(&clip);
    return st;
}

static void print_json(const lp_opts *o, const vlm_linprobe_result *r, int d, double minutes) {
    printf("{\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"best_C\": %.6g, \"val_top1\": %.5f, \"features\": \"%s\", "
           "\"d\": %d, \"n_train\": %" PRId64 ", \"n_val\": %" PRId64 ", \"sweep\": [",
           r->test_top1, r->test_top5, r->n_test, r->best_C, r->best_val_top1, o->features, d, r->n_train, r->n_val);
    for (int i = 0; i < r->n_sweep; i++)
        printf("%s{\"C\": %.6g, \"val_top1\": %.5f}", i ? ", " : "", r->sweep_C[i], r->sweep_val_top1[i]);
    printf("], \"minutes\": %.2f}\n", minutes);
}

int cmd_linprobe(int argc, char **argv) {
    lp_opts o;
    vlm_error err = {0};
    int pr = parse(argc, argv, &o, &err);
    if (pr) return cli_parse_exit(pr, "linprobe", usage, &err);
    const vlm_feat_kind kind = !strcmp(o.features, "post") ? VLM_FEAT_POST : VLM_FEAT_PRE;
    int rc = 1, have_model = 0, have_tr = 0, have_te = 0;
    vlm_classifier m;
    vlm_dataset tr, te;
    float *Xtr = NULL, *Xte = NULL;
    int32_t *ytr = NULL, *yte = NULL;
    int64_t ntr = 0, nte = 0;
    int d = 0;
    double t_start = vlm_now();
    vlm_dataset_opts dso;
    cli_data_dataset_opts(&o.d, &dso);
    dso.require_label = 1;
    dso.classnames = o.classnames;
    if (vlm_dataset_open(&tr, o.train_p, &dso, &err)) goto fail;
    have_tr = 1;
    if (o.train_limit && o.train_limit < tr.n) tr.n = o.train_limit;
    if (vlm_dataset_open(&te, o.test_p, &dso, &err)) goto fail;
    have_te = 1;
    if (o.val_limit && o.val_limit < te.n) te.n = o.val_limit;
    int K = tr.n_classes > te.n_classes ? tr.n_classes : te.n_classes;
    if (K < 2) {
        vlm_errorf(&err, VLM_ERR_FORMAT, "%s: %d class(es); a classifier needs at least 2", o.train_p, K);
        goto fail;
    }
    if (load_model(o.ckpt, K, &m, &err)) goto fail;
    have_model = 1;
    // ---- features ----
    double t0 = vlm_now();
    if (encode(&m, &tr, kind, &o.d, &Xtr, &ytr, &ntr, &d, &err)) goto fail;
    if (encode(&m, &te, kind, &o.d, &Xte, &yte, &nte, &d, &err)) goto fail;
    double t_enc = vlm_now() - t0;
    fprintf(stderr, "linprobe: %s features (d=%d) of %" PRId64 " train + %" PRId64 " test images in %.1fs\n", o.features, d, ntr,
            nte, t_enc);
    // ---- sweep, refit, test ----
    vlm_linprobe_opts lo;
    vlm_linprobe_opts_default(&lo);
    lo.val_fraction = o.val_frac;
    lo.seed = (uint64_t)o.seed;
    lo.c_min = o.c_min;
    lo.c_max = o.c_max;
    lo.c_steps = (int)o.c_steps;
    lo.refine = (int)o.refine;
    lo.lr.max_iter = (int)o.max_iter;
    vlm_linprobe_result r;
    t0 = vlm_now();
    if (vlm_linprobe_run(Xtr, ytr, ntr, Xte, yte, nte, d, K, &lo, &r, on_fit, NULL, &err)) goto fail;
    double t_fit = vlm_now() - t0;
    FILE *f = stdout; // with --json the JSON line follows the report
    fprintf(f, "linear probe (%s features, d=%d) on %s: train %" PRId64 " + val %" PRId64 ", best C %.4g (val top-1 %.2f%%)\n",
           o.features, d, o.test_p, r.n_train, r.n_val, r.best_C, 100 * r.best_val_top1);
    fprintf(f, "test: n=%" PRId64 " top-1 %.2f%%  top-5 %.2f%%  (fits %.1fs, encoding %.1fs)\n", r.n_test, 100 * r.test_top1,
           100 * r.test_top5, t_fit, t_enc);
    if (o.json) print_json(&o, &r, d, (vlm_now() - t_start) / 60.0);
    rc = 0;
fail:
    if (rc) cli_fail("linprobe", &err);
    if (have_model) vlm_classifier_free(&m);
    if (have_tr) vlm_dataset_free(&tr);
    if (have_te) vlm_dataset_free(&te);
    free(Xtr); free(Xte); free(ytr); free(yte);
    return rc;
}
