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
#include "cli/train_common.h"
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
    "  --seed S (0)  --batch-size B (256)  --workers N (2)  --json (end with one JSON line)\n"
    "The objective is sklearn's LogisticRegression(C) (multinomial, L2, unpenalised bias) on standardised features.\n";

// Encodes every image of ds (eval transform) into features [n, d] and labels [n].
static vlm_status encode(vlm_classifier *m, const vlm_dataset *ds, vlm_feat_kind kind, int batch, int workers, float **X,
                         int32_t **y, int64_t *n_out, int *d_out, vlm_error *err) {
    const int S = m->cfg.vit.image_size, d = kind == VLM_FEAT_POST ? m->cfg.vit.output_dim : m->cfg.vit.width;
    vlm_loader_opts lo;
    vlm_loader_opts_eval(&lo, S, batch, workers);
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

int cmd_linprobe(int argc, char **argv) {
    const char *ckpt = NULL, *train_p = NULL, *test_p = NULL, *features = "pre", *img_key = "filepath",
               *label_key = "label", *classnames = NULL;
    char sep = '\t';
    long long batch = 256, workers = 2, train_limit = 0, val_limit = 0, seed = 0, c_steps = 9, refine = 2, max_iter = 1000;
    double val_frac = 0.2, c_min = 1e-4, c_max = 1e4;
    int json = 0;
    vlm_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage, stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!v) return cli_failf("linprobe", "option %s needs a value (see --help)", a);
        i++;
        int bad = 0;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--train-data")) train_p = v;
        else if (!strcmp(a, "--val-data") || !strcmp(a, "--test-data")) test_p = v;
        else if (!strcmp(a, "--features")) features = v;
        else if (!strcmp(a, "--csv-img-key")) img_key = v;
        else if (!strcmp(a, "--csv-label-key")) label_key = v;
        else if (!strcmp(a, "--classnames")) classnames = v;
        else if (!strcmp(a, "--csv-separator")) {
            if (!strcmp(v, "\\t") || !strcmp(v, "tab")) sep = '\t';
            else if (strlen(v) == 1) sep = v[0];
            else return cli_failf("linprobe", "--csv-separator: one character expected, got '%s'", v);
        }
        else if (!strcmp(a, "--batch-size")) bad = cli_parse_int(a, v, 1, 1 << 16, &batch, &err);
        else if (!strcmp(a, "--workers")) bad = cli_parse_int(a, v, 1, 256, &workers, &err);
        else if (!strcmp(a, "--train-limit")) bad = cli_parse_int(a, v, 1, 1LL << 40, &train_limit, &err);
        else if (!strcmp(a, "--val-limit")) bad = cli_parse_int(a, v, 1, 1LL << 40, &val_limit, &err);
        else if (!strcmp(a, "--seed")) bad = cli_parse_int(a, v, 0, INT64_MAX, &seed, &err);
        else if (!strcmp(a, "--c-steps")) bad = cli_parse_int(a, v, 1, 48, &c_steps, &err);
        else if (!strcmp(a, "--refine")) bad = cli_parse_int(a, v, 0, 8, &refine, &err);
        else if (!strcmp(a, "--max-iter")) bad = cli_parse_int(a, v, 1, 1000000, &max_iter, &err);
        else if (!strcmp(a, "--val-fraction")) bad = cli_parse_float(a, v, 1e-6, 0.999, &val_frac, &err);
        else if (!strcmp(a, "--c-min")) bad = cli_parse_float(a, v, 1e-12, 1e12, &c_min, &err);
        else if (!strcmp(a, "--c-max")) bad = cli_parse_float(a, v, 1e-12, 1e12, &c_max, &err);
        else return cli_failf("linprobe", "unknown option '%s' (see --help)", a);
        if (bad) return cli_fail("linprobe", &err);
    }
    if (!ckpt || !train_p || !test_p) return cli_failf("linprobe", "--checkpoint, --train-data and --val-data are required");
    if (strcmp(features, "pre") && strcmp(features, "post"))
        return cli_failf("linprobe", "--features must be pre or post, not '%s'", features);
    if (c_max < c_min) return cli_failf("linprobe", "--c-max must not be below --c-min");
    const vlm_feat_kind kind = !strcmp(features, "post") ? VLM_FEAT_POST : VLM_FEAT_PRE;
    int rc = 1, have_model = 0, have_tr = 0, have_te = 0;
    vlm_classifier m;
    vlm_dataset tr, te;
    float *Xtr = NULL, *Xte = NULL;
    int32_t *ytr = NULL, *yte = NULL;
    int64_t ntr = 0, nte = 0;
    int d = 0;
    double t_start = vlm_now();
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.img_key = img_key;
    dso.label_key = label_key;
    dso.sep = sep;
    dso.require_label = 1;
    dso.classnames = classnames;
    if (vlm_dataset_open(&tr, train_p, &dso, &err)) goto fail;
    have_tr = 1;
    if (train_limit && train_limit < tr.n) tr.n = train_limit;
    if (vlm_dataset_open(&te, test_p, &dso, &err)) goto fail;
    have_te = 1;
    if (val_limit && val_limit < te.n) te.n = val_limit;
    int K = tr.n_classes > te.n_classes ? tr.n_classes : te.n_classes;
    if (K < 2) {
        vlm_errorf(&err, VLM_ERR_FORMAT, "%s: %d class(es); a classifier needs at least 2", train_p, K);
        goto fail;
    }
    // ---- model ----
    int is_cls = vlm_classifier_file_is(ckpt, &err);
    if (is_cls < 0) goto fail;
    if (is_cls) {
        if (vlm_classifier_load(ckpt, &m, NULL, &err)) goto fail;
        have_model = 1;
    } else {
        vlm_clip clip;
        if (vlm_ckpt_load_model(ckpt, &clip, NULL, &err)) goto fail;
        vlm_classifier_cfg cfg;
        vlm_classifier_cfg_from_vit(&cfg, &clip.cfg.vision, K);
        cfg.vit.output_dim = clip.cfg.embed_dim;
        vlm_status st = vlm_classifier_init(&m, &cfg, &err);
        if (!st) {
            have_model = 1;
            st = vlm_classifier_copy_from(&m, &clip.ps, "visual.", NULL, &err);
        }
        vlm_clip_free(&clip);
        if (st) goto fail;
    }
    // ---- features ----
    double t0 = vlm_now();
    if (encode(&m, &tr, kind, (int)batch, (int)workers, &Xtr, &ytr, &ntr, &d, &err)) goto fail;
    if (encode(&m, &te, kind, (int)batch, (int)workers, &Xte, &yte, &nte, &d, &err)) goto fail;
    double t_enc = vlm_now() - t0;
    fprintf(stderr, "linprobe: %s features (d=%d) of %" PRId64 " train + %" PRId64 " test images in %.1fs\n", features, d, ntr,
            nte, t_enc);
    // ---- sweep, refit, test ----
    vlm_linprobe_opts lo;
    vlm_linprobe_opts_default(&lo);
    lo.val_fraction = val_frac;
    lo.seed = (uint64_t)seed;
    lo.c_min = c_min;
    lo.c_max = c_max;
    lo.c_steps = (int)c_steps;
    lo.refine = (int)refine;
    lo.lr.max_iter = (int)max_iter;
    vlm_linprobe_result r;
    t0 = vlm_now();
    if (vlm_linprobe_run(Xtr, ytr, ntr, Xte, yte, nte, d, K, &lo, &r, on_fit, NULL, &err)) goto fail;
    double t_fit = vlm_now() - t0;
    printf("linear probe (%s features, d=%d) on %s: train %" PRId64 " + val %" PRId64 ", best C %.4g (val top-1 %.2f%%)\n",
           features, d, test_p, r.n_train, r.n_val, r.best_C, 100 * r.best_val_top1);
    printf("test: n=%" PRId64 " top-1 %.2f%%  top-5 %.2f%%  (fits %.1fs, encoding %.1fs)\n", r.n_test, 100 * r.test_top1,
           100 * r.test_top5, t_fit, t_enc);
    if (json) {
        printf("{\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"best_C\": %.6g, \"val_top1\": %.5f, \"features\": \"%s\", "
               "\"d\": %d, \"n_train\": %" PRId64 ", \"n_val\": %" PRId64 ", \"sweep\": [",
               r.test_top1, r.test_top5, r.n_test, r.best_C, r.best_val_top1, features, d, r.n_train, r.n_val);
        for (int i = 0; i < r.n_sweep; i++)
            printf("%s{\"C\": %.6g, \"val_top1\": %.5f}", i ? ", " : "", r.sweep_C[i], r.sweep_val_top1[i]);
        printf("], \"minutes\": %.2f}\n", (vlm_now() - t_start) / 60.0);
    }
    rc = 0;
fail:
    if (rc) cli_fail("linprobe", &err);
    if (have_model) vlm_classifier_free(&m);
    if (have_tr) vlm_dataset_free(&tr);
    if (have_te) vlm_dataset_free(&te);
    free(Xtr); free(Xte); free(ytr); free(yte);
    return rc;
}
