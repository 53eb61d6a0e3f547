// `vlm zeroshot`: classify a labelled image set from class names alone with a
// CLIP; top-1/top-5, per-class accuracy, confusion-matrix PNG (eval/zeroshot.h).
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/safetensors.h"
#include "eval/embed.h"
#include "eval/templates.h"
#include "eval/zeroshot.h"
#include "fusion/checkpoint.h"
#include "fusion/classes.h"
#include "text/tokenizer.h"
#include "train/plot.h"

static const char *usage =
    "usage: vlm zeroshot --clip CKPT --data DATA --classnames FILE [options]\n"
    "  --clip CKPT            CLIP weights: vlm model/state file, OpenAI .pt, open_clip checkpoint or hub folder,\n"
    "                         Hugging Face CLIPModel folder; old name --checkpoint\n"
    "  --tokenizer FILE       the weights' BPE merges (OpenAI's bpe_simple_vocab_16e6.txt.gz) if they lack one\n"
    "  --data DATA            labelled images: manifest with filepath + label columns, ImageFolder, IDX\n"
    "  --classnames FILE      one class name per line; line i names label i\n"
    "  --templates NAME|FILE  imagenet (80), imagenet7, cifar10 (18), mnist, photo, name ('{}'), or a file\n"
    "                         with one template per line containing {} (default imagenet)\n"
    "  --save-classifier OUT  write the class embeddings [C, E] (safetensors) for reuse\n"
    "  --classifier FILE      use saved class embeddings instead of building them\n"
    "  --confusion PNG        write the row-normalised confusion matrix\n"
    "  --csv-img-key K  --csv-label-key K  --csv-separator C   manifest columns (filepath, label, tab)\n"
    "  --composite R,G,B      composite transparent images over this colour (default: drop alpha)\n"
    "  --batch-size B (256)  --workers N (2)\n"
    "  --json                 end with one JSON line (top1, top5, n, classes, per_class; with up to 20 classes\n"
    "                         also confusion: counts, rows = true class, columns = top-1 prediction)\n";

typedef struct {
    const char *clip, *data, *classfile, *templates, *save_cls, *load_cls, *confusion, *tokenizer;
    int json;
    cli_data_opts d;
} zs_opts;

static int parse(int argc, char **argv, zs_opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->templates = "imagenet";
    cli_data_opts_default(&o->d, 256);
    const cli_opt own[] = {
        {"clip", CLI_STR, &o->clip, 0, 0, NULL, NULL},
        {"checkpoint", CLI_STR, &o->clip, 0, 0, NULL, "clip"},
        {"tokenizer", CLI_STR, &o->tokenizer, 0, 0, NULL, NULL},
        {"data", CLI_STR, &o->data, 0, 0, NULL, NULL},
        {"classnames", CLI_STR, &o->classfile, 0, 0, NULL, NULL},
        {"templates", CLI_STR, &o->templates, 0, 0, NULL, NULL},
        {"save-classifier", CLI_STR, &o->save_cls, 0, 0, NULL, NULL},
        {"classifier", CLI_STR, &o->load_cls, 0, 0, NULL, NULL},
        {"confusion", CLI_STR, &o->confusion, 0, 0, NULL, NULL},
        {"json", CLI_FLAG, &o->json, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt data[CLI_DATA_OPTS];
    cli_data_table(data, &o->d, 1);
    const cli_opt *tabs[] = {own, data};
    int r = cli_parse_flags("zeroshot", argc, argv, tabs, 2, err);
    if (r) return r;
    if (!o->clip || !o->data || !o->classfile) {
        vlm_errorf(err, VLM_ERR_ARG, "--clip, --data and --classnames are required (see vlm zeroshot --help)");
        return -1;
    }
    return 0;
}

// The class embeddings W [C, E]: loaded (--classifier) or built from the names
// and templates; saved with --save-classifier. *T: templates used (0 if loaded).
static vlm_status class_embeddings(const zs_opts *o, vlm_clip *m, const char *merges, char **classes, int C, float *W,
                                   int *T, vlm_error *err) {
    const int E = m->cfg.embed_dim;
    int64_t shape[2] = {C, E};
    vlm_status st = VLM_OK;
    *T = 0;
    if (o->load_cls) {
        vlm_st_file f;
        if ((st = vlm_st_read(&f, o->load_cls, err))) return st;
        st = vlm_st_get(&f, "class_embeddings", VLM_F32, 2, shape, W, err);
        vlm_st_free(&f);
        if (st) return vlm_error_prefix(err, "%s", o->load_cls);
    } else {
        if (!merges) return vlm_errorf(err, VLM_ERR_FORMAT, VLM_NO_TOKENIZER, o->clip);
        char **tmpl = NULL;
        int own = 0;
        vlm_tokenizer tok;
        if ((st = vlm_templates_resolve(o->templates, &tmpl, T, &own, err))) return st;
        if (!(st = vlm_tokenizer_init_from_memory(&tok, merges, strlen(merges), err))) {
            st = vlm_zeroshot_classifier(m, &tok, (const char *const *)classes, C, (const char *const *)tmpl, *T, W, err);
            vlm_tokenizer_free(&tok);
        }
        if (own) vlm_strlist_free(tmpl, *T);
        if (st) return st;
    }
    if (!o->save_cls) return VLM_OK;
    vlm_st_tensor t = {"class_embeddings", VLM_F32, 2, shape, W};
    const char *k[1] = {"templates"}, *v[1] = {o->templates};
    return vlm_st_write(o->save_cls, &t, 1, k, v, 1, err);
}

// Up to this many classes a per-class row fits a line: the text table and the
// JSON confusion counts are written only then.
enum { ZS_ROW_MAX_CLASSES = 20 };

static void report(const zs_opts *o, const vlm_zeroshot_result *r, char **classes, int T) {
    const int C = r->C;
    FILE *f = stdout; // with --json the JSON line follows the report
    double t1 = r->n ? (double)r->top1 / (double)r->n : 0, t5 = r->n ? (double)r->top5 / (double)r->n : 0;
    fprintf(f, "zero-shot on %s: %" PRId64 " images, %d classes, %d templates\n", o->data, r->n, C, T);
    fprintf(f, "top-1 %.2f%%  top-5 %.2f%%  (chance %.2f%%)\n", 100 * t1, 100 * t5, 100.0 / C);
    if (C <= ZS_ROW_MAX_CLASSES) {
        fprintf(f, "%-32s %8s %8s\n", "class", "n", "acc");
        for (int k = 0; k < C; k++)
            fprintf(f, "%-32.32s %8" PRId64 " %7.1f%%\n", classes[k], r->cls_n[k],
                    r->cls_n[k] ? 100.0 * (double)r->cls_ok[k] / (double)r->cls_n[k] : 0.0);
    }
    if (!o->json) return;
    printf("{\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"classes\": %d, \"per_class\": [", t1, t5, r->n, C);
    for (int k = 0; k < C; k++) printf("%s%.4f", k ? ", " : "", r->cls_n[k] ? (double)r->cls_ok[k] / (double)r->cls_n[k] : 0.0);
    printf("]");
    // The counts behind the per-class figures: which classes absorb which (a
    // category task's attractors). confusion: [C, C], rows = true class,
    // columns = top-1 prediction.
    if (C <= ZS_ROW_MAX_CLASSES) {
        printf(", \"confusion\": [");
        for (int k = 0; k < C; k++) {
            printf("%s[", k ? ", " : "");
            for (int j = 0; j < C; j++) printf("%s%" PRId64, j ? ", " : "", r->confusion[(size_t)k * C + j]);
            printf("]");
        }
        printf("]");
    }
    printf("}\n");
}

int cmd_zeroshot(int argc, char **argv) {
    zs_opts o;
    vlm_error err = {0};
    int pr = parse(argc, argv, &o, &err);
    if (pr) return cli_parse_exit(pr, "zeroshot", usage, &err);
    vlm_clip m;
    char *merges = NULL, **classes = NULL;
    if (vlm_ckpt_load_model(o.clip, &m, &merges, &err)) return cli_fail("zeroshot", &err);
    if (o.tokenizer) {
        free(merges);
        merges = NULL;
        if (vlm_tokenizer_read_merges(o.tokenizer, &merges, &err)) {
            vlm_clip_free(&m);
            return cli_fail("zeroshot", &err);
        }
    }
    int rc = 1, have_ds = 0, C = 0, T = 0;
    vlm_dataset ds;
    float *W = NULL, *img = NULL;
    int64_t *idx = NULL, n = 0;
    int32_t *labels = NULL;
    vlm_zeroshot_result r = {0};
    if (vlm_lines_load(o.classfile, &classes, &C, &err)) goto done;
    if (!(W = malloc(sizeof(float) * (size_t)C * m.cfg.embed_dim))) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto done;
    }
    if (class_embeddings(&o, &m, merges, classes, C, W, &T, &err)) goto done;
    vlm_dataset_opts dso;
    cli_data_dataset_opts(&o.d, &dso);
    dso.require_label = 1;
    if (vlm_dataset_open(&ds, o.data, &dso, &err)) goto done;
    have_ds = 1;
    if (vlm_clip_encode_dataset(&m, &ds, NULL, (int)o.d.batch, (int)o.d.workers, &o.d.dec, &img, NULL, &idx, &n, &err))
        goto done;
    if (!(labels = malloc(sizeof(int32_t) * (size_t)(n ? n : 1)))) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) labels[i] = vlm_dataset_label(&ds, idx[i]);
    if (vlm_zeroshot_eval(img, labels, n, W, C, m.cfg.embed_dim, &r, &err)) {
        vlm_error_prefix(&err, "%s", o.data);
        goto done;
    }
    if (o.confusion && vlm_plot_confusion_png(o.confusion, r.confusion, C, &err)) goto done;
    report(&o, &r, classes, T);
    rc = 0;
done:
    if (rc) cli_fail("zeroshot", &err);
    vlm_zeroshot_result_free(&r);
    vlm_strlist_free(classes, C);
    if (have_ds) vlm_dataset_free(&ds);
    free(W), free(img), free(idx), free(labels), free(merges);
    vlm_clip_free(&m);
    return rc;
}
