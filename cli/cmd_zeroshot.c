// `vlm zeroshot`: classify a labelled image set from class names alone with a
// CLIP checkpoint; top-1/top-5, per-class accuracy, confusion-matrix PNG.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "train/plot.h"
#include "cli/train_common.h"
#include "eval/embed.h"
#include "core/op_ext.h"
#include "core/safetensors.h"
#include "fusion/checkpoint.h"
#include "eval/templates.h"
#include "fusion/classes.h"

static const char *usage =
    "usage: vlm zeroshot --checkpoint CKPT --data DATA --classnames FILE [options]\n"
    "  --checkpoint CKPT      vlm CLIP checkpoint (model or training-state file)\n"
    "  --data DATA            labelled images: manifest with filepath + label columns, ImageFolder, IDX\n"
    "  --classnames FILE      one class name per line; line i names label i\n"
    "  --templates NAME|FILE  imagenet (80), imagenet7, cifar10 (18), mnist, photo, name ('{}'), or a file\n"
    "                         with one template per line containing {} (default imagenet)\n"
    "  --save-classifier OUT  write the class embeddings [C, E] (safetensors) for reuse\n"
    "  --classifier FILE      use saved class embeddings instead of building them\n"
    "  --confusion PNG        write the row-normalised confusion matrix\n"
    "  --csv-img-key K  --csv-label-key K  --csv-separator C   manifest columns (filepath, label, tab)\n"
    "  --composite R,G,B      composite transparent images over this colour (default: drop alpha)\n"
    "  --batch-size B (256)  --workers N (2)  --json (end with one JSON line: top1, top5, n, per_class)\n";

int cmd_zeroshot(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *classfile = NULL, *templates = "imagenet", *save_cls = NULL, *load_cls = NULL,
               *confusion = NULL, *img_key = "filepath", *label_key = "label";
    char sep = '\t';
    long long batch = 256, workers = 2;
    int json = 0;
    vlm_error err = {0};
    vlm_decode_opts dec;
    vlm_decode_opts_default(&dec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage, stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!v) return cli_failf("zeroshot", "option %s needs a value (see --help)", a);
        i++;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--classnames")) classfile = v;
        else if (!strcmp(a, "--templates")) templates = v;
        else if (!strcmp(a, "--save-classifier")) save_cls = v;
        else if (!strcmp(a, "--classifier")) load_cls = v;
        else if (!strcmp(a, "--confusion")) confusion = v;
        else if (!strcmp(a, "--csv-img-key")) img_key = v;
        else if (!strcmp(a, "--csv-label-key")) label_key = v;
        else if (!strcmp(a, "--composite")) { if (cli_fn_composite(v, &dec, &err)) return cli_fail("zeroshot", &err); }
        else if (!strcmp(a, "--csv-separator")) sep = !strcmp(v, "\\t") ? '\t' : v[0];
        else if (!strcmp(a, "--batch-size")) { if (cli_parse_int(a, v, 1, 1 << 16, &batch, &err)) return cli_fail("zeroshot", &err); }
        else if (!strcmp(a, "--workers")) { if (cli_parse_int(a, v, 1, 256, &workers, &err)) return cli_fail("zeroshot", &err); }
        else return cli_failf("zeroshot", "unknown option '%s' (see --help)", a);
    }
    if (!ckpt || !data || !classfile) return cli_failf("zeroshot", "--checkpoint, --data and --classnames are required");
    vlm_clip m;
    char *merges = NULL;
    if (vlm_ckpt_load_model(ckpt, &m, &merges, &err)) return cli_fail("zeroshot", &err);
    int rc = 1, have_tok = 0, have_ds = 0, C = 0, T = 0, own_t = 0;
    char **classes = NULL, **tmpl = NULL;
    vlm_tokenizer tok;
    vlm_dataset ds;
    float *W = NULL, *img = NULL;
    int64_t *idx = NULL, n = 0, *conf = NULL;
    const int E = m.cfg.embed_dim;
    if (vlm_lines_load(classfile, &classes, &C, &err)) goto fail;
    if (load_cls) {
        vlm_st_file f;
        int64_t shape[2] = {C, E};
        W = malloc(sizeof(float) * (size_t)C * E);
        if (vlm_st_read(&f, load_cls, &err)) goto fail;
        vlm_status st = vlm_st_get(&f, "class_embeddings", VLM_F32, 2, shape, W, &err);
        vlm_st_free(&f);
        if (st) { vlm_error_prefix(&err, "%s", load_cls); goto fail; }
    } else {
        if (!merges) { vlm_errorf(&err, VLM_ERR_FORMAT, "%s: checkpoint carries no tokenizer", ckpt); goto fail; }
        if (vlm_tokenizer_init_from_memory(&tok, merges, strlen(merges), &err)) goto fail;
        have_tok = 1;
        if (vlm_templates_resolve(templates, &tmpl, &T, &own_t, &err)) goto fail;
        W = malloc(sizeof(float) * (size_t)C * E);
        if (vlm_zeroshot_classifier(&m, &tok, (const char *const *)classes, C, (const char *const *)tmpl, T, W, &err)) goto fail;
    }
    if (save_cls) {
        int64_t shape[2] = {C, E};
        vlm_st_tensor t = {"class_embeddings", VLM_F32, 2, shape, W};
        const char *k[1] = {"templates"}, *v[1] = {templates};
        if (vlm_st_write(save_cls, &t, 1, k, v, 1, &err)) goto fail;
    }
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.img_key = img_key;
    dso.label_key = label_key;
    dso.sep = sep;
    dso.require_label = 1;
    if (vlm_dataset_open(&ds, data, &dso, &err)) goto fail;
    have_ds = 1;
    if (vlm_clip_encode_dataset(&m, &ds, NULL, (int)batch, (int)workers, &dec, &img, NULL, &idx, &n, &err)) goto fail;
    // logits = 100 * img @ W^T; rank of the true class
    float *logits = malloc(sizeof(float) * (size_t)n * C);
    conf = calloc((size_t)C * C, sizeof(int64_t));
    int64_t *cls_n = calloc((size_t)C, sizeof(int64_t)), *cls_ok = calloc((size_t)C, sizeof(int64_t));
    vlm_mat L = {logits, n, C, C, 1}, A = {img, n, E, E, 1}, Bt = {W, E, C, 1, E};
    vlm_gemm(L, A, Bt, 100.0f, 0);
    int64_t top1 = 0, top5 = 0, counted = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t y = vlm_dataset_label(&ds, idx[i]);
        if (y < 0 || y >= C) {
            vlm_errorf(&err, VLM_ERR_FORMAT, "%s: label %d of sample %" PRId64 " is outside the %d class names", data, y, idx[i], C);
            free(logits); free(cls_n); free(cls_ok);
            goto fail;
        }
        const float *l = logits + i * C;
        int better = 0, arg = 0;
        for (int k = 0; k < C; k++) {
            if (l[k] > l[y] || (l[k] == l[y] && k < y)) better++;
            if (l[k] > l[arg]) arg = k;
        }
        top1 += better == 0;
        top5 += better < 5;
        cls_n[y]++;
        cls_ok[y] += better == 0;
        conf[(int64_t)y * C + arg]++;
        counted++;
    }
    double t1 = counted ? (double)top1 / counted : 0, t5 = counted ? (double)top5 / counted : 0;
    printf("zero-shot on %s: %" PRId64 " images, %d classes, %d templates\n", data, counted, C, T);
    printf("top-1 %.2f%%  top-5 %.2f%%  (chance %.2f%%)\n", 100 * t1, 100 * t5, 100.0 / C);
    if (C <= 20) {
        printf("%-32s %8s %8s\n", "class", "n", "acc");
        for (int k = 0; k < C; k++)
            printf("%-32.32s %8" PRId64 " %7.1f%%\n", classes[k], cls_n[k], cls_n[k] ? 100.0 * cls_ok[k] / cls_n[k] : 0.0);
    }
    if (confusion && vlm_plot_confusion_png(confusion, conf, C, &err)) {
        free(logits); free(cls_n); free(cls_ok);
        goto fail;
    }
    if (json) {
        printf("{\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"classes\": %d, \"per_class\": [", t1, t5, counted, C);
        for (int k = 0; k < C; k++) printf("%s%.4f", k ? ", " : "", cls_n[k] ? (double)cls_ok[k] / cls_n[k] : 0.0);
        printf("]}\n");
    }
    free(logits); free(cls_n); free(cls_ok);
    rc = 0;
fail:
    if (rc) cli_fail("zeroshot", &err);
    if (own_t) vlm_strlist_free(tmpl, T);
    vlm_strlist_free(classes, C);
    if (have_tok) vlm_tokenizer_free(&tok);
    if (have_ds) vlm_dataset_free(&ds);
    free(W); free(img); free(idx); free(conf); free(merges);
    vlm_clip_free(&m);
    return rc;
}
