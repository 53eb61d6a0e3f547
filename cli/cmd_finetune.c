// `vlm finetune`: an image classifier on the ViT (vision/classifier.h), from a
// CLIP checkpoint's vision tower or from scratch, with head-only or full
// fine-tuning, layer-wise LR decay, label smoothing, the data pipeline's
// augmentation, a zero-shot-initialised head and WiSE-FT weight ensembling.
// Checkpoints, resume, progress line and metrics follow `vlm pretrain`.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/train_common.h"
#include "core/optim.h"
#include "data/loader.h"
#include "fusion/checkpoint.h"
#include "eval/templates.h"
#include "fusion/classes.h"
#include "vision/classifier.h"

static const char *usage =
    "usage: vlm finetune --train-data DATA (--checkpoint CKPT | --model NAME|JSON) [options]\n"
    "data (labelled images: manifest with a label column, ImageFolder, IDX, webdataset with .cls):\n"
    "  --train-data PATH        training set\n"
    "  --val-data PATH          evaluation set (e.g. .../t10k-images-idx3-ubyte.gz); top-1/top-5 reported on it\n"
    "  --csv-img-key K (filepath)  --csv-label-key K (label)  --csv-separator C (tab)\n"
    "  --classnames FILE        class names, one per line (default: the dataset's)\n"
    "  --train-limit N  --val-limit N   use only the first N samples (quick runs)\n"
    "  --workers N (2)\n"
    "augmentation (training images; data/transform.h):\n"
    "  --aug-scale LO,HI (0.9,1)  --aug-ratio LO,HI (0.75,1.333)   RandomResizedCrop\n"
    "  --hflip P (0)  --jitter P (0) with --color-jitter B,C,S,H (0.4,0.4,0.4,0.1)  --grayscale P (0)\n"
    "  --no-augment             eval transform for training images\n"
    "model:\n"
    "  --checkpoint CKPT        CLIP checkpoint (its vision tower) or a vlm classifier file (continue / --eval-only)\n"
    "  --model NAME|JSON        from scratch: CLIP preset/config (vision part) or a classifier config JSON\n"
    "  --image-size S  --patch-size P  --width W  --layers L  --heads H  --mlp-ratio R   (from scratch: override)\n"
    "  --stem C1,C2,..          conv stem (3x3 convs, last log2(P) with stride 2) instead of patchify; 'none'\n"
    "  --act A  --stem-act A    transformer MLP / stem activation: gelu, quick_gelu, gelu_tanh, relu, silu\n"
    "  --pool cls|mean          class token or mean of patch tokens (default cls)\n"
    "  --head linear|mlp  --head-hidden N  --head-dropout P  --head-input pre|post (post: normalised projection)\n"
    "  --zeroshot-init          head = 100 * zero-shot class embeddings on normalize(proj(x)) (CLIP checkpoint)\n"
    "  --templates NAME|FILE    zero-shot templates (default imagenet; see vlm zeroshot --help)\n"
    "optimisation:\n"
    "  --epochs E (10)  --batch-size B (128)  --lr LR (1e-3)  --wd WD (0.05)  --warmup STEPS (100)\n"
    "  --lr-scheduler cosine|const|const-cooldown (cosine)  --beta1 (0.9)  --beta2 (0.999)  --eps (1e-8)\n"
    "  --grad-clip-norm N (1.0; 0 = off)  --label-smoothing LS (0)  --layer-decay D (1 = off)\n"
    "  --lock-image             train the head only;  --lock-image-epochs E: head only for E epochs, then all\n"
    "  --seed S (0)  --max-steps N  --max-minutes M  --time-schedule (cosine over --max-minutes, not steps)\n"
    "  --wise-alpha A[,A2..]    WiSE-FT: evaluate and save (1-A)*initial + A*finetuned weights\n"
    "checkpoints and logs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (500)  --resume latest|STATE  --log-every N (20)\n"
    "  --val-frequency E (0: evaluate at the end only)  --stop-at-step N  --eval-only  --json\n"
    "data-parallel: mpirun -np N vlm finetune ... (an MPI build): --batch-size per rank, rank 0 writes;\n"
    "  --dist-timeout S (300) stops the job when a rank waits longer than S seconds for the others\n"
    "Resuming continues mid-epoch at the next sample; pass the same options as the original run.\n";

typedef struct {
    const char *train, *val, *img_key, *label_key, *classnames, *checkpoint, *model, *logs, *name, *resume, *sched,
        *templates, *stem, *pool, *head, *head_input, *wise, *act, *stem_act;
    char sep;
    long long image_size, patch_size, width, layers, heads, head_hidden, batch, epochs, warmup, seed, workers, max_steps,
        save_every, log_every, stop_at, train_limit, val_limit, val_freq, lock_epochs;
    double lr, wd, beta1, beta2, eps, clip, max_minutes, layer_decay, ls, mlp_ratio, head_dropout, hflip, jitter, gray;
    double scale[2], ratio[2], cj[4];
    int lock_image, zeroshot_init, json, no_augment, eval_only, time_sched;
    double wise_a[16];
    int n_wise;
    cli_dist_opts dist;
} opts;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

// "a,b,..." into up to n doubles; returns the count or -1.
static int parse_list(const char *flag, const char *s, double *out, int n, double lo, double hi, vlm_error *err) {
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v >= lo && v <= hi) || k == n || (*end && *end != ',')) {
            vlm_errorf(err, VLM_ERR_ARG, "%s: '%s' is not a list of at most %d numbers in [%g, %g]", flag, s, n, lo, hi);
            return -1;
        }
        out[k++] = v;
        p = *end ? end + 1 : end;
    }
    if (!k) vlm_errorf(err, VLM_ERR_ARG, "%s: empty list", flag);
    return k ? k : -1;
}

static int parse(int argc, char **argv, opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->img_key = "filepath"; o->label_key = "label"; o->logs = "./logs"; o->sched = "cosine"; o->templates = "imagenet";
    o->sep = '\t';
    o->batch = 128; o->epochs = 10; o->warmup = 100; o->workers = 2; o->save_every = 500; o->log_every = 20;
    cli_dist_opts_default(&o->dist);
    o->lr = 1e-3; o->wd = 0.05; o->beta1 = 0.9; o->beta2 = 0.999; o->eps = 1e-8; o->clip = 1.0; o->layer_decay = 1.0;
    o->scale[0] = 0.9; o->scale[1] = 1.0; o->ratio[0] = 3.0 / 4.0; o->ratio[1] = 4.0 / 3.0;
    o->cj[0] = o->cj[1] = o->cj[2] = 0.4; o->cj[3] = 0.1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(flag, field) if (!strcmp(a, flag)) { if (!v) goto need; o->field = v; i++; continue; }
#define INT(flag, field, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_int(flag, v, lo, hi, &o->field, err)) return -1; i++; continue; }
#define FLT(flag, field, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_float(flag, v, lo, hi, &o->field, err)) return -1; i++; continue; }
#define FLAG(flag, field) if (!strcmp(a, flag)) { o->field = 1; continue; }
#define PAIR(flag, field, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (parse_list(flag, v, o->field, 2, lo, hi, err) != 2) { vlm_errorf(err, VLM_ERR_ARG, "%s: expected LO,HI", flag); return -1; } i++; continue; }
        STR("--train-data", train) STR("--val-data", val) STR("--csv-img-key", img_key) STR("--csv-label-key", label_key)
        STR("--classnames", classnames) STR("--checkpoint", checkpoint) STR("--model", model) STR("--logs", logs)
        STR("--name", name) STR("--resume", resume) STR("--lr-scheduler", sched) STR("--templates", templates)
        STR("--stem", stem) STR("--act", act) STR("--stem-act", stem_act) STR("--pool", pool) STR("--head", head) STR("--head-input", head_input)
        INT("--image-size", image_size, 1, 4096) INT("--patch-size", patch_size, 1, 4096) INT("--width", width, 1, 65536)
        INT("--layers", layers, 0, 1024) INT("--heads", heads, 1, 4096) INT("--head-hidden", head_hidden, 1, 1 << 20)
        INT("--batch-size", batch, 1, 1 << 20) INT("--epochs", epochs, 1, 1 << 20) INT("--warmup", warmup, 0, 1LL << 40)
        INT("--seed", seed, 0, INT64_MAX) INT("--workers", workers, 1, 256) INT("--max-steps", max_steps, 1, 1LL << 40)
        INT("--save-every-steps", save_every, 1, 1LL << 40) INT("--log-every", log_every, 1, 1 << 30)
        INT("--stop-at-step", stop_at, 1, 1LL << 40) INT("--train-limit", train_limit, 1, 1LL << 40)
        INT("--val-limit", val_limit, 1, 1LL << 40) INT("--val-frequency", val_freq, 0, 1 << 20)
        INT("--lock-image-epochs", lock_epochs, 0, 1 << 20)
        FLT("--lr", lr, 0, 10) FLT("--wd", wd, 0, 10) FLT("--beta1", beta1, 0, 0.999999) FLT("--beta2", beta2, 0, 0.9999999)
        FLT("--eps", eps, 1e-30, 1) FLT("--grad-clip-norm", clip, 0, 1e9) FLT("--max-minutes", max_minutes, 0, 1e9)
        FLT("--layer-decay", layer_decay, 1e-3, 1) FLT("--label-smoothing", ls, 0, 0.999) FLT("--mlp-ratio", mlp_ratio, 0.01, 64)
        FLT("--head-dropout", head_dropout, 0, 0.99) FLT("--hflip", hflip, 0, 1) FLT("--jitter", jitter, 0, 1)
        FLT("--grayscale", gray, 0, 1)
        PAIR("--aug-scale", scale, 1e-3, 1) PAIR("--aug-ratio", ratio, 1e-2, 100)
        FLAG("--lock-image", lock_image) FLAG("--zeroshot-init", zeroshot_init) FLAG("--json", json)
        FLAG("--no-augment", no_augment) FLAG("--eval-only", eval_only) FLAG("--time-schedule", time_sched)
        if (!strcmp(a, "--color-jitter")) {
            if (!v) goto need;
            if (parse_list(a, v, o->cj, 4, 0, 10, err) != 4 || o->cj[3] > 0.5) {
                vlm_errorf(err, VLM_ERR_ARG, "--color-jitter: expected B,C,S,H (hue <= 0.5)");
                return -1;
            }
            i++;
            continue;
        }
        if (!strcmp(a, "--wise-alpha")) {
            if (!v) goto need;
            if ((o->n_wise = parse_list(a, v, o->wise_a, 16, 0, 1, err)) < 0) return -1;
            o->wise = v;
            i++;
            continue;
        }
        if (!strcmp(a, "--csv-separator")) {
            if (!v) goto need;
            if (!strcmp(v, "\\t") || !strcmp(v, "tab")) o->sep = '\t';
            else if (strlen(v) == 1) o->sep = v[0];
            else { vlm_errorf(err, VLM_ERR_ARG, "--csv-separator: one character expected, got '%s'", v); return -1; }
            i++;
            continue;
        }
        int dr = cli_dist_parse_opt(a, v, &o->dist, err); // --dist-timeout, --debug-fault
        if (dr < 0) return -1;
        if (dr) { i++; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        vlm_errorf(err, VLM_ERR_ARG, "unknown option '%s' (see vlm finetune --help)", a);
        return -1;
    need:
        vlm_errorf(err, VLM_ERR_ARG, "option %s needs a value", a);
        return -1;
    }
#undef STR
#undef INT
#undef FLT
#undef FLAG
#undef PAIR
    if (!o->train && !o->eval_only) { vlm_errorf(err, VLM_ERR_ARG, "--train-data is required (see vlm finetune --help)"); return -1; }
    if (o->eval_only && !o->val) { vlm_errorf(err, VLM_ERR_ARG, "--eval-only needs --val-data"); return -1; }
    if (!o->checkpoint && !o->model) o->model = "tiny";
    if (o->checkpoint && o->model) { vlm_errorf(err, VLM_ERR_ARG, "--checkpoint and --model exclude each other"); return -1; }
    if (o->zeroshot_init && !o->checkpoint) { vlm_errorf(err, VLM_ERR_ARG, "--zeroshot-init needs a CLIP --checkpoint"); return -1; }
    if (o->n_wise && !o->checkpoint) {
        vlm_errorf(err, VLM_ERR_ARG, "--wise-alpha interpolates with the starting model: it needs --checkpoint (best with --zeroshot-init)");
        return -1;
    }
    vlm_sched_kind k;
    if (vlm_sched_parse(o->sched, &k)) { vlm_errorf(err, VLM_ERR_ARG, "--lr-scheduler must be cosine, const or const-cooldown"); return -1; }
    if (o->time_sched && !(o->max_minutes > 0)) { vlm_errorf(err, VLM_ERR_ARG, "--time-schedule needs --max-minutes"); return -1; }
    if (o->pool && vlm_pool_parse(o->pool) < 0) { vlm_errorf(err, VLM_ERR_ARG, "--pool must be cls or mean, not '%s'", o->pool); return -1; }
    if (o->head && vlm_head_kind_parse(o->head) < 0) { vlm_errorf(err, VLM_ERR_ARG, "--head must be linear or mlp, not '%s'", o->head); return -1; }
    if (o->head_input && strcmp(o->head_input, "pre") && strcmp(o->head_input, "post")) {
        vlm_errorf(err, VLM_ERR_ARG, "--head-input must be pre or post, not '%s'", o->head_input);
        return -1;
    }
    if (o->scale[0] > o->scale[1] || o->ratio[0] > o->ratio[1]) { vlm_errorf(err, VLM_ERR_ARG, "--aug-scale / --aug-ratio: LO must not exceed HI"); return -1; }
    return 0;
}

// Applies the architecture flags to cfg (from scratch; only head flags with a checkpoint).
static vlm_status apply_overrides(const opts *o, vlm_classifier_cfg *cfg, int from_scratch, vlm_error *err) {
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
        if (o->stem) {
            cfg->stem_layers = 0;
            if (strcmp(o->stem, "none")) {
                double ch[VLM_STEM_MAX];
                int n = parse_list("--stem", o->stem, ch, VLM_STEM_MAX, 1, 4096, err);
                if (n < 0) return err->status;
                cfg->stem_layers = n;
                for (int i = 0; i < n; i++) cfg->stem_ch[i] = (int)ch[i];
            }
        }
    } else if (o->image_size || o->patch_size || o->width || o->layers || o->heads || o->mlp_ratio || o->stem || o->act ||
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
        char *text = NULL;
        size_t cap = 0, len = 0;
        for (;;) {
            if (len + 4096 + 1 > cap) {
                cap = cap ? 2 * cap : 8192;
                if (cap > (16u << 20)) break;
                char *nt = realloc(text, cap);
                if (!nt) break;
                text = nt;
            }
            size_t r = fread(text + len, 1, 4096, f);
            len += r;
            if (r < 4096) break;
        }
        fclose(f);
        if (!text) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", model);
        text[len] = 0;
        int is_cls = strstr(text, "\"vlm-classifier\"") != NULL;
        vlm_status st = VLM_OK;
        if (is_cls) {
            // n_classes comes from the data; accept configs that leave it out or set it.
            st = vlm_classifier_cfg_from_json(text, cfg, err);
            if (st) {
                free(text);
                return vlm_error_prefix(err, "%s", model);
            }
            cfg->head.n_classes = n_classes;
            free(text);
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

static vlm_tensor *wrap_images(vlm_ctx *c, float *p, int B, int S) {
    int64_t sh[4] = {B, 3, S, S};
    return vlm_tensor_wrap(c, VLM_F32, 4, sh, p, NULL);
}

typedef struct {
    int64_t n, top1, top5;
    double loss;
} eval_result;

// Top-1/top-5 and mean cross-entropy over (the first `limit` of) ds, eval transform.
static vlm_status evaluate(vlm_classifier *m, const vlm_dataset *ds, int batch, int workers, vlm_ctx *c, eval_result *r,
                           vlm_error *err) {
    memset(r, 0, sizeof *r);
    const int S = m->cfg.vit.image_size, K = m->cfg.head.n_classes;
    vlm_loader_opts lo;
    vlm_loader_opts_default(&lo, S, batch);
    lo.workers = workers;
    lo.shuffle = 0;
    lo.train = 0;
    lo.drop_last = 0;
    lo.epochs = 1;
    lo.captions = 0;
    vlm_loader *L;
    vlm_status st = vlm_loader_open(&L, ds, &lo, err);
    if (st) return st;
    int g = c->grad_enabled, tr = c->training;
    c->grad_enabled = 0;
    c->training = 0;
    vlm_batch b;
    while ((st = vlm_loader_next(L, &b, err)) == VLM_OK && b.n > 0) {
        vlm_ctx_reset(c);
        vlm_tensor *lg = vlm_classifier_forward(c, m, wrap_images(c, b.images, b.n, S), 0);
        if (!lg) {
            st = c->status;
            *err = c->err;
            break;
        }
        for (int i = 0; i < b.n; i++) {
            const float *l = vlm_f32(lg) + (int64_t)i * K;
            int y = b.labels[i];
            if (y < 0 || y >= K) {
                st = vlm_errorf(err, VLM_ERR_FORMAT, "evaluation sample %" PRId64 " has label %d outside the model's %d classes",
                                b.indices[i], y, K);
                break;
            }
            int better = 0;
            double mx = l[0], s = 0;
            for (int k = 0; k < K; k++) {
                better += l[k] > l[y] || (l[k] == l[y] && k < y);
                if (l[k] > mx) mx = l[k];
            }
            for (int k = 0; k < K; k++) s += exp(l[k] - mx);
            r->loss += mx + log(s) - l[y];
            r->top1 += better == 0;
            r->top5 += better < 5;
            r->n++;
        }
        if (st) break;
    }
    vlm_loader_free(L);
    c->grad_enabled = g;
    c->training = tr;
    if (r->n) r->loss /= (double)r->n;
    return st;
}

static char *join_lines(char **v, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(v[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s) return NULL;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? "\n" : "", v[i]);
    *p = 0;
    return s;
}

int cmd_finetune(int argc, char **argv) {
    opts o;
    vlm_error err = {0};
    int pr = parse(argc, argv, &o, &err);
    if (pr == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (pr) return cli_fail("finetune", &err);
    vlm_dist *D = cli_dist_setup(&o.dist);
    const int R = D->rank, W = D->world, io = R == 0; // only rank 0 writes files and logs
    int rc = 1, have_model = 0, have_train = 0, have_val = 0, have_clip = 0, own_tmpl = 0, n_cls_names = 0, T = 0;
    vlm_classifier m;
    memset(&m, 0, sizeof m);
    vlm_clip clip;
    memset(&clip, 0, sizeof clip);
    vlm_dataset train, val;
    vlm_loader *L = NULL;
    vlm_ctx c;
    memset(&c, 0, sizeof c);
    char *merges = NULL, *classnames_joined = NULL, *args_json = NULL, **cls_names = NULL, **tmpl = NULL;
    float *imgbuf = NULL, *theta0 = NULL, *theta_ft = NULL, *gscale = NULL;
    int32_t *labbuf = NULL;
    int *groups = NULL;
    uint8_t *frozen_saved = NULL;
    FILE *metrics = NULL;

    // ---- datasets ----
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.img_key = o.img_key;
    dso.label_key = o.label_key;
    dso.sep = o.sep;
    dso.require_label = 1;
    dso.classnames = o.classnames;
    if (o.train && !o.eval_only) {
        if (vlm_dataset_open(&train, o.train, &dso, &err)) goto fail;
        have_train = 1;
        if (o.train_limit && o.train_limit < train.n) train.n = o.train_limit;
        if (train.n_bad)
            fprintf(stderr, "finetune: %" PRId64 " malformed entries skipped in %s (first: %s)\n", train.n_bad, o.train,
                    train.bad[0] ? train.bad[0] : "?");
    }
    if (o.val) {
        if (vlm_dataset_open(&val, o.val, &dso, &err)) goto fail;
        have_val = 1;
        if (o.val_limit && o.val_limit < val.n) val.n = o.val_limit;
    }
    const vlm_dataset *ref = have_train ? &train : &val;
    int K = ref->n_classes;
    if (have_train && have_val && val.n_classes > K) {
        vlm_errorf(&err, VLM_ERR_FORMAT, "%s has %d classes but %s has labels up to %d", o.train, K, o.val, val.n_classes - 1);
        goto fail;
    }
    if (o.classnames) {
        if (vlm_lines_load(o.classnames, &cls_names, &n_cls_names, &err)) goto fail;
    } else if (ref->classnames) {
        n_cls_names = ref->n_classes;
        cls_names = calloc((size_t)n_cls_names, sizeof(char *));
        for (int i = 0; cls_names && i < n_cls_names; i++) cls_names[i] = strdup(ref->classnames[i] ? ref->classnames[i] : "");
    }
    if (cls_names) {
        if (n_cls_names < K) {
            vlm_errorf(&err, VLM_ERR_FORMAT, "%d class names for %d classes", n_cls_names, K);
            goto fail;
        }
        K = n_cls_names;
        classnames_joined = join_lines(cls_names, n_cls_names);
    }
    if (K < 2) {
        vlm_errorf(&err, VLM_ERR_FORMAT, "%s: %d class(es); a classifier needs at least 2", have_train ? o.train : o.val, K);
        goto fail;
    }

    // ---- model ----
    int is_cls_file = 0;
    vlm_classifier_cfg cfg;
    if (o.checkpoint) {
        is_cls_file = vlm_classifier_file_is(o.checkpoint, &err);
        if (is_cls_file < 0) goto fail;
    }
    if (is_cls_file) {
        if (o.zeroshot_init || o.n_wise) {
            vlm_errorf(&err, VLM_ERR_ARG, "--zeroshot-init / --wise-alpha need a CLIP checkpoint, %s is a classifier", o.checkpoint);
            goto fail;
        }
        if (o.pool || o.head || o.head_input || o.head_hidden || o.stem || o.image_size || o.width || o.layers) {
            vlm_errorf(&err, VLM_ERR_ARG, "architecture flags do not apply to a classifier checkpoint (%s)", o.checkpoint);
            goto fail;
        }
        if (vlm_classifier_load(o.checkpoint, &m, NULL, &err)) goto fail;
        have_model = 1;
        if (m.cfg.head.n_classes != K) {
            vlm_errorf(&err, VLM_ERR_SHAPE, "%s has %d classes, the data has %d", o.checkpoint, m.cfg.head.n_classes, K);
            goto fail;
        }
    } else {
        if (o.checkpoint) {
            if (vlm_ckpt_load_model(o.checkpoint, &clip, &merges, &err)) goto fail;
            have_clip = 1;
            vlm_classifier_cfg_from_vit(&cfg, &clip.cfg.vision, K);
            cfg.vit.output_dim = clip.cfg.embed_dim;
            if (o.zeroshot_init) cfg.head_on_proj = 1;
            if (apply_overrides(&o, &cfg, 0, &err)) goto fail;
            if (o.zeroshot_init && (!cfg.head_on_proj || cfg.head.kind != VLM_HEAD_LINEAR)) {
                vlm_errorf(&err, VLM_ERR_ARG, "--zeroshot-init needs a linear head on the projected embedding (--head-input post)");
                goto fail;
            }
        } else {
            if (model_cfg(o.model, K, &cfg, &err)) goto fail;
            if (apply_overrides(&o, &cfg, 1, &err)) goto fail;
        }
        if (vlm_classifier_init(&m, &cfg, &err)) goto fail;
        have_model = 1;
        vlm_classifier_init_weights(&m, (uint64_t)o.seed);
        if (have_clip) {
            int copied = 0;
            if (vlm_classifier_copy_from(&m, &clip.ps, "visual.", &copied, &err)) {
                vlm_error_prefix(&err, "%s", o.checkpoint);
                goto fail;
            }
            if (io)
                fprintf(stderr, "finetune: %d vision-tower tensors from %s\n", copied, o.checkpoint);
        }
    }
    if (o.zeroshot_init) {
        if (!merges) { vlm_errorf(&err, VLM_ERR_FORMAT, "%s: checkpoint carries no tokenizer", o.checkpoint); goto fail; }
        if (!cls_names) { vlm_errorf(&err, VLM_ERR_ARG, "--zeroshot-init needs class names (--classnames FILE)"); goto fail; }
        if (vlm_templates_resolve(o.templates, &tmpl, &T, &own_tmpl, &err)) goto fail;
        vlm_tokenizer tok;
        if (cli_tokenizer_from_text(&tok, merges, &err)) goto fail;
        const int E = clip.cfg.embed_dim;
        float *W = malloc(sizeof(float) * (size_t)K * E);
        vlm_status st = W ? vlm_zeroshot_classifier(&clip, &tok, (const char *const *)cls_names, K, (const char *const *)tmpl, T, W, &err)
                          : vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        vlm_tokenizer_free(&tok);
        if (!st) {
            for (int64_t i = 0; i < (int64_t)K * E; i++) W[i] *= 100.0f;
            st = vlm_head_set_linear(&m.head, &m.ps, W, K, E, &err);
        }
        free(W);
        if (st) goto fail;
        if (io)
            fprintf(stderr, "finetune: zero-shot head from %d class names x %d templates\n", K, T);
    }
    if (have_clip) {
        vlm_clip_free(&clip);
        have_clip = 0;
    }
    if (o.n_wise) {
        theta0 = malloc(sizeof(float) * (size_t)m.ps.total);
        theta_ft = malloc(sizeof(float) * (size_t)m.ps.total);
        if (!theta0 || !theta_ft) { vlm_errorf(&err, VLM_ERR_OOM, "out of memory"); goto fail; }
        memcpy(theta0, m.ps.data, sizeof(float) * (size_t)m.ps.total);
    }
    const int S = m.cfg.vit.image_size, B = (int)o.batch;
    if (vlm_ctx_init(&c, 64u << 20, (uint64_t)o.seed, &err)) goto fail;

    if (o.eval_only) {
        if (!is_cls_file && !o.zeroshot_init) {
            vlm_errorf(&err, VLM_ERR_ARG, "--eval-only needs a classifier --checkpoint, or a CLIP with --zeroshot-init");
            goto fail;
        }
        eval_result r;
        double t0 = cli_now();
        if (evaluate(&m, &val, B, (int)o.workers, &c, &r, &err)) goto fail;
        fprintf(stderr, "finetune: eval on %s: n=%" PRId64 " top-1 %.2f%% top-5 %.2f%% loss %.4f (%.1fs)\n", o.val, r.n,
                100.0 * r.top1 / fmax(1, r.n), 100.0 * r.top5 / fmax(1, r.n), r.loss, cli_now() - t0);
        if (o.json)
            printf("{\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"loss\": %.5f}\n", (double)r.top1 / fmax(1, r.n),
                   (double)r.top5 / fmax(1, r.n), r.n, r.loss);
        rc = 0;
        goto cleanup;
    }

    // ---- run folder ----
    char name[512];
    if (o.name) snprintf(name, sizeof name, "%s", o.name);
    else {
        const char *src = o.checkpoint ? o.checkpoint : o.model;
        const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
        snprintf(name, sizeof name, "ft-%s-b%lld-s%lld", base, o.batch, o.seed);
    }
    cli_run run;
    if (cli_run_init(&run, o.logs, name, o.resume, io, &err)) goto fail;

    // ---- optimiser, locking, layer decay, state ----
    vlm_adamw opt;
    vlm_adamw_cfg ac = {(float)o.lr, (float)o.beta1, (float)o.beta2, (float)o.eps, (float)o.wd};
    if (vlm_adamw_init(&opt, &m.ps, ac, &err)) goto fail;
    const int G = vlm_classifier_n_groups(&m);
    if (o.layer_decay < 1.0) {
        groups = malloc(sizeof(int) * (size_t)m.ps.n);
        gscale = malloc(sizeof(float) * (size_t)G);
        frozen_saved = malloc((size_t)m.ps.n);
        if (!groups || !gscale || !frozen_saved) { vlm_errorf(&err, VLM_ERR_OOM, "out of memory"); goto fail; }
        for (int i = 0; i < m.ps.n; i++) groups[i] = vlm_classifier_param_group(&m, i);
        for (int g = 0; g < G; g++) gscale[g] = (float)pow(o.layer_decay, G - 1 - g);
    }
    vlm_train_state ts;
    memset(&ts, 0, sizeof ts);
    if (run.resume[0]) {
        if (vlm_classifier_load_state(run.resume, &m, &ts, &err)) goto fail;
        opt.step = ts.adam_step;
        memcpy(c.dropout_rng.key, ts.rng_key, sizeof ts.rng_key);
        c.dropout_rng.counter = ts.rng_counter;
        memcpy(c.dropout_rng.buf, ts.rng_buf, sizeof ts.rng_buf);
        c.dropout_rng.buf_pos = ts.rng_pos;
        if (cli_dist_check_resume(D, ts.global_batch, ts.loader_index, B, run.resume, &err)) goto fail;
        if (io)
            fprintf(stderr, "finetune: resumed from %s at step %" PRId64 " (epoch %" PRId64 ", sample %" PRId64 ")\n", run.resume,
                ts.step, ts.loader_epoch, ts.loader_index);
    }

    // ---- loader ----
    vlm_loader_opts lo;
    vlm_loader_opts_default(&lo, S, B);
    lo.workers = (int)o.workers;
    lo.seed = (uint64_t)o.seed;
    lo.train = !o.no_augment;
    lo.captions = 0;
    lo.transform.scale_min = (float)o.scale[0];
    lo.transform.scale_max = (float)o.scale[1];
    lo.transform.ratio_min = (float)o.ratio[0];
    lo.transform.ratio_max = (float)o.ratio[1];
    lo.transform.hflip_prob = (float)o.hflip;
    lo.transform.jitter_prob = (float)o.jitter;
    lo.transform.brightness = (float)o.cj[0];
    lo.transform.contrast = (float)o.cj[1];
    lo.transform.saturation = (float)o.cj[2];
    lo.transform.hue = (float)o.cj[3];
    lo.transform.gray_prob = (float)o.gray;
    lo.start.epoch = ts.loader_epoch;
    lo.start.index = ts.loader_index / W; // the state counts the global stream
    lo.rank = R;
    lo.world_size = W;
    if (vlm_loader_open(&L, &train, &lo, &err)) goto fail;
    if (cli_dist_sync_params(D, &m.ps, &err)) goto fail;
    const int64_t epoch_size = vlm_loader_epoch_size(L), steps_per_epoch = epoch_size / B;
    if (steps_per_epoch < 1) {
        vlm_errorf(&err, VLM_ERR_ARG, "an epoch has %" PRId64 " samples, fewer than the batch size %d", epoch_size, B);
        goto fail;
    }
    int64_t total_steps = steps_per_epoch * o.epochs;
    if (o.max_steps && o.max_steps < total_steps) total_steps = o.max_steps;
    vlm_sched sched = {VLM_SCHED_COSINE, (float)o.lr, o.warmup, total_steps, 0, 1.0f, 0.0f};
    vlm_sched_parse(o.sched, &sched.kind);
    if (sched.kind == VLM_SCHED_CONST_COOLDOWN) sched.cooldown = total_steps / 5;

    imgbuf = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    labbuf = malloc(sizeof(int32_t) * (size_t)B);
    if (!imgbuf || !labbuf) { vlm_errorf(&err, VLM_ERR_OOM, "out of memory for batch buffers"); goto fail; }
    if (io && cli_run_open_metrics(&run, &metrics, &err)) goto fail;
    {
        char *cfgj = vlm_classifier_cfg_to_json(&m.cfg);
        size_t n = strlen(cfgj) + 2048;
        args_json = malloc(n);
        snprintf(args_json, n, "{\"batch_size\": %lld, \"lr\": %g, \"wd\": %g, \"epochs\": %lld, \"warmup\": %lld, "
                               "\"seed\": %lld, \"label_smoothing\": %g, \"layer_decay\": %g, \"lock_image\": %d, "
                               "\"lock_image_epochs\": %lld, \"source\": \"%s\", \"model\": %s}",
                 o.batch, o.lr, o.wd, o.epochs, o.warmup, o.seed, o.ls, o.layer_decay, o.lock_image, o.lock_epochs,
                 o.checkpoint ? "checkpoint" : "scratch", cfgj);
        free(cfgj);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int64_t n_train_params = 0;
    for (int i = 0; i < m.ps.n; i++)
        if (o.lock_image ? strncmp(m.ps.p[i].name, "visual.", 7) != 0 : !m.ps.p[i].frozen) n_train_params += m.ps.p[i].numel;
    if (io && W > 1)
        fprintf(stderr, "finetune: data-parallel over %d ranks: %d images per rank, global batch %d\n", W, B, B * W);
    if (io)
        fprintf(stderr, "finetune: %lld params (%" PRId64 " trained%s), %d classes, %" PRId64 " samples/epoch, %" PRId64
                    " steps of %d, image %d, run dir %s\n",
            (long long)m.ps.total, n_train_params, o.lock_image ? ", image tower locked" : "", K, epoch_size, total_steps, B,
            S, run.dir);

    // ---- training loop ----
    double t_start = cli_now() - ts.elapsed_s, t_last = cli_now();
    int64_t imgs_since = 0, cur_epoch = ts.loader_epoch;
    const int tty = isatty(2);
    float loss_v = ts.last_loss;
    double acc_sum = 0;
    int64_t acc_n = 0;
    const char *stop_reason = "done";
    int locked = -1;
    eval_result last_r = {0};
    int have_r = 0;
    const double budget_s = o.max_minutes * 60.0;
    while (ts.step < total_steps) {
        cli_dist_fault(&o.dist, D, ts.step);
        vlm_batch b;
        if (vlm_loader_next(L, &b, &err)) goto fail;
        if (b.n < B) {
            vlm_errorf(&err, VLM_ERR_STATE, "loader returned a short batch (%d of %d)", b.n, B);
            goto fail;
        }
        int64_t batch_epoch = b.pos.epoch;
        vlm_loader_pos next_pos = b.next;
        memcpy(imgbuf, b.images, sizeof(float) * (size_t)B * 3 * S * S);
        for (int i = 0; i < B; i++) {
            labbuf[i] = b.labels[i];
            if (labbuf[i] < 0 || labbuf[i] >= K) {
                vlm_errorf(&err, VLM_ERR_FORMAT, "sample %" PRId64 " has label %d outside [0, %d)", b.indices[i], labbuf[i], K);
                goto fail;
            }
        }
        int want_lock = o.lock_image || batch_epoch < o.lock_epochs;
        if (want_lock != locked) {
            vlm_classifier_lock_image(&m, want_lock);
            locked = want_lock;
            if (io && (ts.step > 0 || o.lock_epochs))
                fprintf(stderr, "%sfinetune: %s at step %" PRId64 "\n", tty && ts.step ? "\n" : "",
                        want_lock ? "image tower locked (head only)" : "full fine-tuning", ts.step);
        }
        vlm_params_zero_grad(&m.ps);
        vlm_ctx_reset(&c);
        c.training = 1;
        vlm_tensor *logits = vlm_classifier_forward(&c, &m, wrap_images(&c, imgbuf, B, S), !locked);
        vlm_tensor *l = vlm_op_cross_entropy(&c, logits, labbuf, (float)o.ls);
        if (!l || vlm_backward(&c, l)) goto ctx_fail;
        loss_v = vlm_f32(l)[0];
        for (int i = 0; i < B; i++) {
            const float *lg = vlm_f32(logits) + (int64_t)i * K;
            int arg = 0;
            for (int k = 1; k < K; k++)
                if (lg[k] > lg[arg]) arg = k;
            acc_sum += arg == labbuf[i];
        }
        acc_n += B;
        // Data-parallel: the global batch's gradient and loss, rank 0's clock, any rank's stop.
        double clock_s, loss_d = loss_v;
        int stop_sig = g_stop != 0;
        if (cli_dist_step_end(D, &m.ps, 0, t_start, &loss_d, &stop_sig, &clock_s, &err)) goto fail;
        loss_v = (float)loss_d;
        if (!isfinite(loss_v) || !vlm_grads_finite(&m.ps)) {
            if (io)
                fprintf(stderr, "\nfinetune: %s at step %" PRId64 "; stopping. The last good checkpoint is %s\n",
                    isfinite(loss_v) ? "non-finite gradients" : "loss is NaN/Inf", ts.step, run.state);
            rc = 3;
            goto cleanup;
        }
        if (o.clip > 0) vlm_clip_grad_norm(&m.ps, (float)o.clip);
        double now = cli_now();
        if (W > 1) now = t_start + clock_s; // rank 0's clock
        float lr = vlm_sched_lr_at(&sched, ts.step, o.time_sched, budget_s > 0 ? (now - t_start) / budget_s : 0);
        vlm_adamw_step_groups(&opt, &m.ps, groups, gscale, G, lr, frozen_saved);
        ts.step++;
        imgs_since += (int64_t)B * W;
        // ---- bookkeeping ----
        now = cli_now();
        ts.elapsed_s = W > 1 ? clock_s : now - t_start;
        ts.loader_epoch = next_pos.epoch;
        ts.loader_index = next_pos.index * W; // position in the global stream
        ts.global_batch = (int64_t)B * W;
        ts.epoch = next_pos.epoch;
        ts.adam_step = opt.step;
        ts.last_loss = loss_v;
        memcpy(ts.rng_key, c.dropout_rng.key, sizeof ts.rng_key);
        ts.rng_counter = c.dropout_rng.counter;
        memcpy(ts.rng_buf, c.dropout_rng.buf, sizeof ts.rng_buf);
        ts.rng_pos = c.dropout_rng.buf_pos;
        if (ts.step % o.log_every == 0 || ts.step == total_steps || ts.step == 1) {
            double ips = imgs_since / fmax(now - t_last, 1e-9);
            char eta[32];
            double left = (double)(total_steps - ts.step) * B * W / fmax(ips, 1e-9);
            if (budget_s > 0 && budget_s - ts.elapsed_s < left) left = budget_s - ts.elapsed_s;
            cli_fmt_duration(left, eta, sizeof eta);
            double tacc = acc_n ? acc_sum / (double)acc_n : 0;
            if (io)
                fprintf(stderr, "%sstep %" PRId64 "/%" PRId64 " | epoch %" PRId64 " | loss %.4f | acc %.3f | lr %.3g | %.0f img/s | ETA %s%s",
                    tty ? "\r" : "", ts.step, total_steps, batch_epoch, loss_v, tacc, lr, ips, eta, tty ? "   " : "\n");
            if (metrics) {
                fprintf(metrics, "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.6f, \"train_acc\": %.4f, \"lr\": %.6g, "
                                 "\"img_per_s\": %.1f, \"elapsed_s\": %.1f}\n",
                        ts.step, batch_epoch, loss_v, tacc, lr, ips, ts.elapsed_s);
                fflush(metrics);
            }
            t_last = now;
            imgs_since = 0;
            acc_sum = 0;
            acc_n = 0;
        }
        int epoch_done = next_pos.epoch > batch_epoch || next_pos.index + B > epoch_size;
        int out_of_time = budget_s > 0 && ts.elapsed_s >= budget_s;
        int stop_here = o.stop_at && ts.step >= o.stop_at;
        int last = ts.step == total_steps || out_of_time || stop_sig || stop_here;
        if (epoch_done) cur_epoch = batch_epoch + 1;
        if (io && (ts.step % o.save_every == 0 || last || epoch_done)) {
            if (vlm_classifier_save_state(run.state, &m, classnames_joined, &ts, args_json, &err) ||
                vlm_classifier_save(run.model, &m, classnames_joined, ts.step, &err))
                goto fail;
        }
        int val_now = io && have_val && (last || (epoch_done && o.val_freq > 0 && cur_epoch % o.val_freq == 0));
        if (val_now) {
            double t0 = cli_now();
            if (evaluate(&m, &val, B, (int)o.workers, &c, &last_r, &err)) goto fail;
            have_r = 1;
            double dt = cli_now() - t0;
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "val step %" PRId64 " (epoch %" PRId64 "): n=%" PRId64 " top-1 %.2f%% top-5 %.2f%% loss %.4f (%.1fs)\n",
                    ts.step, cur_epoch, last_r.n, 100.0 * last_r.top1 / fmax(1, last_r.n),
                    100.0 * last_r.top5 / fmax(1, last_r.n), last_r.loss, dt);
            fprintf(metrics, "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"val_n\": %" PRId64 ", \"val_top1\": %.5f, "
                             "\"val_top5\": %.5f, \"val_loss\": %.5f}\n",
                    ts.step, cur_epoch, last_r.n, (double)last_r.top1 / fmax(1, last_r.n),
                    (double)last_r.top5 / fmax(1, last_r.n), last_r.loss);
            fflush(metrics);
            t_start += dt; // evaluation does not count against the training budget
            t_last += dt;
        }
        if (out_of_time) { stop_reason = "time budget reached"; break; }
        if (stop_sig) { stop_reason = "interrupted"; break; }
        if (stop_here) { stop_reason = "stopped at --stop-at-step"; break; }
    }
    if (tty) fputc('\n', stderr);
    {
        char summary[2048];
        vlm_loader_bad_summary(L, summary, sizeof summary);
        if (summary[0]) fprintf(stderr, "finetune: %s%s\n", W > 1 ? (R ? "rank > 0: " : "rank 0: ") : "", summary);
    }
    vlm_loader_free(L);
    L = NULL;
    if (!io) { // the weights are the same on every rank; rank 0 evaluates and writes
        rc = 0;
        goto cleanup;
    }
    if (have_val && !have_r) { // resumed at the end: evaluate what is there
        if (evaluate(&m, &val, B, (int)o.workers, &c, &last_r, &err)) goto fail;
        have_r = 1;
    }
    fprintf(stderr, "finetune: %s after %" PRId64 " steps (%.1f min of training); model %s\n",
            stop_reason, ts.step, ts.elapsed_s / 60.0, run.model);
    // ---- WiSE-FT ----
    eval_result wr[16];
    if (o.n_wise) {
        memcpy(theta_ft, m.ps.data, sizeof(float) * (size_t)m.ps.total);
        for (int a = 0; a < o.n_wise; a++) {
            float al = (float)o.wise_a[a];
            for (int64_t i = 0; i < m.ps.total; i++) m.ps.data[i] = (1.0f - al) * theta0[i] + al * theta_ft[i];
            char path[1300];
            snprintf(path, sizeof path, "%s/wise_%.2f.safetensors", run.ckdir, o.wise_a[a]);
            if (vlm_classifier_save(path, &m, classnames_joined, ts.step, &err)) goto fail;
            memset(&wr[a], 0, sizeof wr[a]);
            if (have_val) {
                if (evaluate(&m, &val, B, (int)o.workers, &c, &wr[a], &err)) goto fail;
                fprintf(stderr, "WiSE-FT alpha %.2f: top-1 %.2f%% top-5 %.2f%% (n=%" PRId64 "), saved %s\n", o.wise_a[a],
                        100.0 * wr[a].top1 / fmax(1, wr[a].n), 100.0 * wr[a].top5 / fmax(1, wr[a].n), wr[a].n, path);
                fprintf(metrics, "{\"step\": %" PRId64 ", \"wise_alpha\": %.4f, \"val_top1\": %.5f, \"val_top5\": %.5f}\n",
                        ts.step, o.wise_a[a], (double)wr[a].top1 / fmax(1, wr[a].n), (double)wr[a].top5 / fmax(1, wr[a].n));
            } else
                fprintf(stderr, "WiSE-FT alpha %.2f: saved %s\n", o.wise_a[a], path);
        }
        memcpy(m.ps.data, theta_ft, sizeof(float) * (size_t)m.ps.total);
    }
    printf("{");
    if (have_r)
        printf("\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"val_loss\": %.5f, ", (double)last_r.top1 / fmax(1, last_r.n),
               (double)last_r.top5 / fmax(1, last_r.n), last_r.n, last_r.loss);
    printf("\"steps\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.5f, \"minutes\": %.2f, \"images_seen\": %" PRId64,
           ts.step, ts.epoch, loss_v, ts.elapsed_s / 60.0, ts.step * (int64_t)B * W);
    if (o.n_wise && have_val) {
        printf(", \"wise\": [");
        for (int a = 0; a < o.n_wise; a++)
            printf("%s{\"alpha\": %.4f, \"top1\": %.5f, \"top5\": %.5f}", a ? ", " : "", o.wise_a[a],
                   (double)wr[a].top1 / fmax(1, wr[a].n), (double)wr[a].top5 / fmax(1, wr[a].n));
        printf("]");
    }
    printf(", \"checkpoint\": \"%s\"}\n", run.model);
    rc = 0;
    goto cleanup;
ctx_fail:
    err = c.err;
fail:
    if (err.msg[0]) cli_fail("finetune", &err);
    rc = 1;
cleanup:
    if (metrics) fclose(metrics);
    if (L) vlm_loader_free(L);
    if (have_train) vlm_dataset_free(&train);
    if (have_val) vlm_dataset_free(&val);
    if (have_model) vlm_classifier_free(&m);
    if (have_clip) vlm_clip_free(&clip);
    if (c.arena.head) vlm_ctx_free(&c);
    if (own_tmpl) vlm_strlist_free(tmpl, T);
    vlm_strlist_free(cls_names, n_cls_names);
    free(merges); free(classnames_joined); free(args_json); free(imgbuf); free(labbuf); free(theta0); free(theta_ft);
    free(gscale); free(groups); free(frozen_saved);
    return rc;
}
