// `vlm generate train|sample|eval`: a DiT denoiser conditioned on a frozen
// CLIP's embeddings (fusion/generator.h): training with eps-MSE, classifier-
// free-guidance dropout and an EMA; guided sampling to a PNG grid; evaluation
// by conditional accuracy (a vlm classifier) and the Fréchet distance in the
// CLIP's image-embedding space beside the real-vs-real baseline.
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "data/font.h"
#include "cli/train_common.h"
#include "core/optim.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/generator.h"
#include "eval/frechet.h"
#include "eval/templates.h"
#include "fusion/classes.h"
#include "vision/classifier.h"

// ---------------------------------------------------------------- shared helpers
// Tokenizer of the generator's CLIP + text embeddings [n, E] (L2-normalised).
static vlm_status embed_texts(vlm_gen *g, const char *const *texts, int n, float *out, vlm_error *err) {
    vlm_tokenizer tok;
    vlm_status st = cli_tokenizer_from_text(&tok, g->tokenizer_text, err);
    if (st) return st;
    st = vlm_clip_encode_texts(&g->clip, &tok, texts, n, out, err);
    vlm_tokenizer_free(&tok);
    return st;
}

// Runs f (a model on [b, 3, S, S] eval-transformed images -> [b, dout]) over
// 8-bit RGB images [n, s, s, 3] in batches of 64; rows into out [n, dout].
typedef vlm_tensor *(*image_fn)(vlm_ctx *c, void *model, vlm_tensor *images);
static vlm_status images_forward(const uint8_t *rgb, int64_t n, int s, int S, image_fn f, void *model, int dout,
                                 float *out, vlm_error *err) {
    const int B = 64;
    vlm_transform tf;
    vlm_transform_init(&tf, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    vlm_image img;
    vlm_image_init(&img);
    float *x = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    vlm_ctx c;
    vlm_status st = !x ? vlm_errorf(err, VLM_ERR_OOM, "out of memory") : vlm_ctx_init(&c, 64u << 20, 0, err);
    if (st) {
        free(x);
        return st;
    }
    c.grad_enabled = 0;
    c.training = 0;
    if ((st = vlm_image_alloc(&img, s, s, err))) goto done;
    for (int64_t i0 = 0; i0 < n && !st; i0 += B) {
        int b = n - i0 < B ? (int)(n - i0) : B;
        for (int k = 0; k < b && !st; k++) {
            memcpy(img.px, rgb + (i0 + k) * s * s * 3, (size_t)s * s * 3);
            st = vlm_transform_eval(&tf, &img, x + (int64_t)k * 3 * S * S, &sc, err);
        }
        if (st) break;
        vlm_ctx_reset(&c);
        vlm_tensor *y = f(&c, model, vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){b, 3, S, S}, x, NULL));
        if (!y) {
            st = c.status;
            *err = c.err;
            break;
        }
        memcpy(out + i0 * dout, vlm_f32(y), sizeof(float) * (size_t)b * dout);
    }
done:
    vlm_ctx_free(&c);
    vlm_image_free(&img);
    vlm_transform_scratch_free(&sc);
    free(x);
    return st;
}

static vlm_tensor *clip_embed_fn(vlm_ctx *c, void *m, vlm_tensor *images) {
    return vlm_op_l2norm(c, vlm_clip_encode_image(c, m, images, NULL));
}

// CLIP image embeddings [n, E] (L2-normalised) of 8-bit RGB images [n, s, s, 3]
// through the CLIP's eval transform (resize to its input size).
static vlm_status embed_images(vlm_clip *m, const uint8_t *rgb, int64_t n, int s, float *out, vlm_error *err) {
    return images_forward(rgb, n, s, m->cfg.vision.image_size, clip_embed_fn, m, m->cfg.embed_dim, out, err);
}

// Grid PNG: one row per prompt (label on the left), n images per row, each
// scaled up `scale` x (nearest).
static vlm_status write_grid(const char *path, const uint8_t *rgb, int rows, int n, int s, int scale,
                             const char *const *labels, vlm_error *err) {
    int cell = s * scale, pad = 2, lw = 0;
    const int fs = 1;
    if (labels)
        for (int r = 0; r < rows; r++) {
            int w = vlm_text_width(labels[r], fs);
            if (w > lw) lw = w;
        }
    if (lw > 240) lw = 240;
    int lx = labels ? lw + 6 : 0;
    int W = lx + n * (cell + pad) + pad, H = rows * (cell + pad) + pad;
    uint8_t *img = malloc((size_t)W * H * 3);
    if (!img) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    memset(img, 255, (size_t)W * H * 3);
    const uint8_t black[3] = {0, 0, 0};
    for (int r = 0; r < rows; r++) {
        int y0 = pad + r * (cell + pad);
        if (labels) {
            char buf[256];
            int keep = vlm_text_chars(labels[r]);
            if (keep > 40) keep = 40; // the label column is at most 240 px (40 glyphs)
            snprintf(buf, sizeof buf, "%.*s", vlm_text_prefix_bytes(labels[r], keep), labels[r]);
            vlm_draw_text(img, W, H, 3, y0 + cell / 2 - VLM_FONT_H * fs / 2, buf, black, fs);
        }
        for (int k = 0; k < n; k++) {
            const uint8_t *src = rgb + ((int64_t)r * n + k) * s * s * 3;
            int x0 = lx + pad + k * (cell + pad);
            for (int y = 0; y < cell; y++)
                for (int x = 0; x < cell; x++)
                    memcpy(img + ((int64_t)(y0 + y) * W + x0 + x) * 3, src + ((y / scale) * s + x / scale) * 3, 3);
        }
    }
    vlm_status st = vlm_image_write_png(path, img, W, H, err);
    free(img);
    return st;
}

// Prompts from --prompt (repeatable), --prompts FILE or --classnames FILE (+ template).
typedef struct {
    char **p;
    int n;
} strlist;

static void strlist_free(strlist *l) {
    vlm_strlist_free(l->p, l->n);
    l->p = NULL;
    l->n = 0;
}

static vlm_status strlist_add(strlist *l, const char *s, vlm_error *err) {
    char **q = realloc(l->p, sizeof(char *) * (size_t)(l->n + 1));
    if (!q) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    l->p = q;
    if (!(l->p[l->n] = strdup(s))) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    l->n++;
    return VLM_OK;
}

// Class names -> prompts through the template.
static vlm_status fill_prompts(const char *tmpl, char **names, int n, strlist *out, vlm_error *err) {
    char buf[1024];
    for (int i = 0; i < n; i++) {
        vlm_status st = vlm_template_fill(tmpl, names[i], buf, sizeof buf, err);
        if (st || (st = strlist_add(out, buf, err))) return st;
    }
    return VLM_OK;
}

// ---------------------------------------------------------------- training data
// Every usable sample of a dataset in memory at the model's resolution (the eval
// transform: shortest side to S, centre crop), with its conditioning row.
typedef struct {
    int64_t n, skipped;
    int S;
    uint8_t *rgb;    // [n, S, S, 3]
    int32_t *row;    // [n] row of emb
    float *emb;      // [n_emb, E]
    int64_t n_emb;
    strlist texts;   // text conditioning: the distinct prompts (n_emb)
} gen_data;

static void gen_data_free(gen_data *d) {
    free(d->rgb);
    free(d->row);
    free(d->emb);
    strlist_free(&d->texts);
    memset(d, 0, sizeof *d);
}

typedef struct {
    const char *s;
    int64_t i;
} keyed;
static int keyed_cmp(const void *a, const void *b) {
    int c = strcmp(((const keyed *)a)->s, ((const keyed *)b)->s);
    if (c) return c;
    return (((const keyed *)a)->i > ((const keyed *)b)->i) - (((const keyed *)a)->i < ((const keyed *)b)->i);
}

static vlm_status load_data(vlm_gen *g, const char *spec, const char *classnames, const vlm_decode_opts *dec,
                            int64_t limit, gen_data *d, vlm_error *err) {
    memset(d, 0, sizeof *d);
    const int S = g->dit.cfg.image_size, E = g->dit.cfg.cond_dim;
    d->S = S;
    vlm_dataset_opts dopt;
    vlm_dataset_opts_default(&dopt);
    dopt.classnames = classnames;
    vlm_dataset ds;
    vlm_status st = vlm_dataset_open(&ds, spec, &dopt, err);
    if (st) return st;
    int64_t N = limit > 0 && limit < ds.n ? limit : ds.n;
    char **caps = calloc((size_t)(N > 0 ? N : 1), sizeof(char *));
    d->rgb = malloc((size_t)(N > 0 ? N : 1) * S * S * 3);
    d->row = malloc(sizeof(int32_t) * (size_t)(N > 0 ? N : 1));
    uint8_t *ok = calloc((size_t)(N > 0 ? N : 1), 1);
    if (!caps || !d->rgb || !d->row || !ok) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %" PRId64 " images", spec, N);
        goto done;
    }
    int64_t n_nocap = 0;
    vlm_status first_bad = VLM_OK;
    char first_msg[512] = "";
#pragma omp parallel
    {
        vlm_sample smp;
        vlm_sample_init(&smp);
        vlm_image img;
        vlm_image_init(&img);
        vlm_transform tf;
        vlm_transform_init(&tf, S);
        vlm_transform_scratch sc;
        vlm_transform_scratch_init(&sc);
        char buf[1024];
#pragma omp for schedule(dynamic, 64) reduction(+ : n_nocap)
        for (int64_t i = 0; i < N; i++) {
            vlm_error e = {0};
            // labelled data with class names: the template filled with the name; else the caption as is
            const char *cap = vlm_dataset_caption(&ds, i);
            int32_t lab = vlm_dataset_label(&ds, i);
            if (lab >= 0 && ds.classnames && lab < ds.n_classes &&
                vlm_template_fill(g->template_, ds.classnames[lab], buf, sizeof buf, &e) == VLM_OK)
                cap = buf;
            if (g->cond == VLM_GEN_TEXT && !cap) {
                n_nocap++;
                continue;
            }
            if (vlm_dataset_load_image(&ds, i, &smp, &img, dec, &e) ||
                vlm_transform_eval_u8(&tf, &img, d->rgb + i * S * S * 3, &sc, &e)) {
#pragma omp critical
                if (!first_bad) first_bad = e.status ? e.status : VLM_ERR_FORMAT, snprintf(first_msg, sizeof first_msg, "%s", e.msg);
                continue;
            }
            if (g->cond == VLM_GEN_TEXT) caps[i] = strdup(cap);
            ok[i] = 1;
        }
        vlm_sample_free(&smp);
        vlm_image_free(&img);
        vlm_transform_scratch_free(&sc);
    }
    // compact the kept samples
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) {
        if (!ok[i]) continue;
        if (n != i) {
            memmove(d->rgb + n * S * S * 3, d->rgb + i * S * S * 3, (size_t)S * S * 3);
            caps[n] = caps[i];
            caps[i] = NULL;
        }
        n++;
    }
    d->n = n;
    d->skipped = N - n;
    if (d->skipped)
        fprintf(stderr, "generate: skipped %" PRId64 " of %" PRId64 " samples (%" PRId64 " without a caption or class name%s%s)\n",
                d->skipped, N, n_nocap, first_msg[0] ? "; first bad image: " : "", first_msg);
    if (n == 0) {
        st = vlm_errorf(err, VLM_ERR_ARG, "%s: no usable samples%s", spec,
                        g->cond == VLM_GEN_TEXT ? " (text conditioning needs captions, or labels with --classnames)" : "");
        goto done;
    }
    if (g->cond == VLM_GEN_TEXT) {
        // distinct prompts, embedded once
        keyed *k = malloc(sizeof(keyed) * (size_t)n);
        if (!k) {
            st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < n; i++) k[i] = (keyed){caps[i], i};
        qsort(k, (size_t)n, sizeof *k, keyed_cmp);
        for (int64_t i = 0; i < n && !st; i++) {
            if (i == 0 || strcmp(k[i].s, k[i - 1].s)) st = strlist_add(&d->texts, k[i].s, err);
            d->row[k[i].i] = d->texts.n - 1;
        }
        free(k);
        d->n_emb = d->texts.n;
        if (!st && !(d->emb = malloc(sizeof(float) * (size_t)d->n_emb * E)))
            st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        if (!st) st = embed_texts(g, (const char *const *)d->texts.p, (int)d->n_emb, d->emb, err);
    } else {
        d->n_emb = n;
        for (int64_t i = 0; i < n; i++) d->row[i] = (int32_t)i;
        if (!(d->emb = malloc(sizeof(float) * (size_t)n * E))) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        if (!st) st = embed_images(&g->clip, d->rgb, n, S, d->emb, err);
    }
done:
    if (caps)
        for (int64_t i = 0; i < N; i++) free(caps[i]);
    free(caps);
    free(ok);
    vlm_dataset_free(&ds);
    return st;
}

// ---------------------------------------------------------------- train
static const char *train_usage =
    "usage: vlm generate train --clip CKPT --train-data DATA [options]\n"
    "Trains a DiT denoiser (adaLN-Zero) on 32x32 images conditioned on the frozen CLIP's embeddings of\n"
    "their captions (or class prompts, or the images themselves), with eps-prediction MSE, the condition\n"
    "dropped to a learned null embedding for classifier-free guidance, AdamW and an EMA of the weights.\n"
    "data:\n"
    "  --train-data DATA        any dataset vlm reads (manifest, webdataset shards, folder, IDX)\n"
    "  --classnames FILE        class names of labelled data (prompt = --template filled with the name)\n"
    "  --template T             prompt template for class names (default \"a photo of a {}\"); captions\n"
    "                           of unlabelled data are used as they are\n"
    "  --cond text|image        condition on caption/prompt text embeddings (default) or image embeddings\n"
    "  --composite R,G,B        composite transparent pixels over this colour (emoji: 255,255,255)\n"
    "  --train-limit N          first N samples  --hflip P  horizontal flip probability (default 0)\n"
    "model (DiT):\n"
    "  --image-size S (32)  --patch-size P (4)  --channels 1|3 (3)  --width W (256)  --layers L (6)\n"
    "  --heads H (4)  --cond-tokens K (0: the embedding also as K extra tokens, unCLIP style)\n"
    "  --long-skip              U-ViT long skips: the last L/2 blocks each take Linear([x, output of the\n"
    "                           mirrored first-half block]) as input (Bao et al. 2023)\n"
    "  --schedule linear|cosine (linear)  --timesteps T (1000)\n"
    "optimisation:\n"
    "  --batch-size B (64)  --lr LR (3e-4)  --wd WD (0)  --warmup STEPS (500)  --lr-schedule const|cosine\n"
    "  --grad-clip-norm N (1)  --p-uncond P (0.1)  --ema-decay D (0.9995)  --seed S (0)\n"
    "  --min-snr G (0)  weight each sample's eps-MSE by min(SNR_t, G) / SNR_t (Min-SNR-gamma; 5 is the\n"
    "                   paper's value; 0 = plain eps-MSE); the logged loss is then the weighted one\n"
    "  --t-sampling uniform|stratified|importance (uniform)  how a batch draws its timesteps: independently\n"
    "                   and uniformly; one per stratum of [0, T) (lower variance, same distribution); or\n"
    "                   stratified with density proportional to the --min-snr weight and every sample weighted\n"
    "                   by the mean weight instead (the same expected loss, no draws spent on ~zero weights)\n"
    "  --max-steps N  --max-minutes M  --time-schedule (cosine over the time budget)\n"
    "runs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (1000)  --log-every N (50)  --resume latest|FILE\n"
    "  --grid-n N (8): at the end, sample N images per prompt (first 10 prompts) into <run>/samples.png\n"
    "data-parallel: mpirun -np N vlm generate train ... (an MPI build): --batch-size per rank, rank 0 writes;\n"
    "  --dist-timeout S (300) stops the job when a rank waits longer than S seconds for the others\n"
    "Ends with one JSON line: steps, minutes, loss, checkpoint (the EMA model file).\n";

typedef struct {
    const char *clip, *train, *classnames, *tmpl, *cond, *composite, *logs, *name, *resume, *schedule, *lr_sched,
        *t_sampling;
    long long limit, image_size, patch, channels, width, layers, heads, cond_tokens, timesteps, batch, warmup, seed,
        max_steps, save_every, log_every, grid_n;
    double hflip, lr, wd, clip_norm, p_uncond, ema, max_minutes, min_snr;
    int time_sched, long_skip;
    int t_mode; // --t-sampling: 0 uniform, 1 stratified, 2 importance
    cli_dist_opts dist;
} train_opts;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

#define OPT_STR(flag, f) if (!strcmp(a, flag)) { if (!v) goto need; o->f = v; i++; continue; }
#define OPT_INT(flag, f, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_int(flag, v, lo, hi, &o->f, err)) return -1; i++; continue; }
#define OPT_FLT(flag, f, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_float(flag, v, lo, hi, &o->f, err)) return -1; i++; continue; }
#define OPT_FLAG(flag, f) if (!strcmp(a, flag)) { o->f = 1; continue; }

static int train_parse(int argc, char **argv, train_opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->tmpl = "a photo of a {}", o->cond = "text", o->logs = "./logs", o->schedule = "linear", o->lr_sched = "const";
    o->t_sampling = "uniform";
    o->image_size = 32, o->patch = 4, o->channels = 3, o->width = 256, o->layers = 6, o->heads = 4, o->timesteps = 1000;
    o->batch = 64, o->warmup = 500, o->save_every = 1000, o->log_every = 50, o->grid_n = 8;
    o->lr = 3e-4, o->clip_norm = 1, o->p_uncond = 0.1, o->ema = 0.9995;
    cli_dist_opts_default(&o->dist);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        OPT_STR("--clip", clip) OPT_STR("--train-data", train) OPT_STR("--classnames", classnames)
        OPT_STR("--template", tmpl) OPT_STR("--cond", cond) OPT_STR("--composite", composite) OPT_STR("--logs", logs)
        OPT_STR("--name", name) OPT_STR("--resume", resume) OPT_STR("--schedule", schedule)
        OPT_STR("--lr-schedule", lr_sched) OPT_STR("--t-sampling", t_sampling)
        OPT_INT("--train-limit", limit, 1, INT64_MAX) OPT_INT("--image-size", image_size, 4, 1024)
        OPT_INT("--patch-size", patch, 1, 64) OPT_INT("--channels", channels, 1, 3) OPT_INT("--width", width, 4, 8192)
        OPT_INT("--layers", layers, 1, 256) OPT_INT("--heads", heads, 1, 256) OPT_INT("--cond-tokens", cond_tokens, 0, 64)
        OPT_INT("--timesteps", timesteps, 2, 100000) OPT_INT("--batch-size", batch, 1, 1 << 16)
        OPT_INT("--warmup", warmup, 0, 1LL << 40) OPT_INT("--seed", seed, 0, INT64_MAX)
        OPT_INT("--max-steps", max_steps, 1, 1LL << 40) OPT_INT("--save-every-steps", save_every, 1, 1LL << 40)
        OPT_INT("--log-every", log_every, 1, 1 << 30) OPT_INT("--grid-n", grid_n, 0, 64)
        OPT_FLT("--hflip", hflip, 0, 1) OPT_FLT("--lr", lr, 0, 10) OPT_FLT("--wd", wd, 0, 10)
        OPT_FLT("--grad-clip-norm", clip_norm, 0, 1e9) OPT_FLT("--p-uncond", p_uncond, 0, 1)
        OPT_FLT("--ema-decay", ema, 0, 1) OPT_FLT("--min-snr", min_snr, 0, 1e9) OPT_FLT("--max-minutes", max_minutes, 0, 1e7)
        OPT_FLAG("--time-schedule", time_sched) OPT_FLAG("--long-skip", long_skip)
        int dr = cli_dist_parse_opt(a, v, &o->dist, err); // --dist-timeout, --debug-fault
        if (dr < 0) return -1;
        if (dr) { i++; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        vlm_errorf(err, VLM_ERR_ARG, "unknown option '%s' (see vlm generate train --help)", a);
        return -1;
    need:
        vlm_errorf(err, VLM_ERR_ARG, "%s needs a value", a);
        return -1;
    }
    if (!o->clip || !o->train) {
        vlm_errorf(err, VLM_ERR_ARG, "--clip CKPT and --train-data DATA are required (see --help)");
        return -1;
    }
    if (strcmp(o->cond, "text") && strcmp(o->cond, "image")) {
        vlm_errorf(err, VLM_ERR_ARG, "--cond: expected text or image, got '%s'", o->cond);
        return -1;
    }
    if (o->channels == 2) {
        vlm_errorf(err, VLM_ERR_ARG, "--channels: 1 or 3");
        return -1;
    }
    if (vlm_diff_kind_parse(o->schedule) < 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--schedule: expected linear or cosine, got '%s'", o->schedule);
        return -1;
    }
    static const char *const t_modes[] = {"uniform", "stratified", "importance"};
    o->t_mode = -1;
    for (int m = 0; m < 3; m++)
        if (!strcmp(o->t_sampling, t_modes[m])) o->t_mode = m;
    if (o->t_mode < 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--t-sampling: expected uniform, stratified or importance, got '%s'", o->t_sampling);
        return -1;
    }
    vlm_sched_kind k;
    if (vlm_sched_parse(o->lr_sched, &k) || k == VLM_SCHED_CONST_COOLDOWN) {
        vlm_errorf(err, VLM_ERR_ARG, "--lr-schedule: expected const or cosine, got '%s'", o->lr_sched);
        return -1;
    }
    if (!strstr(o->tmpl, "{}")) {
        vlm_errorf(err, VLM_ERR_ARG, "--template must contain {} (got '%s')", o->tmpl);
        return -1;
    }
    if (o->time_sched && o->max_minutes <= 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--time-schedule needs --max-minutes");
        return -1;
    }
    return 0;
}

// Samples `per` images for each of the first `rows` prompts of d into a grid.
static vlm_status end_grid(vlm_gen *g, const gen_data *d, int per, const char *path, vlm_error *err) {
    if (d->texts.n == 0 || per <= 0) return VLM_OK;
    int rows = d->texts.n < 10 ? d->texts.n : 10, E = g->dit.cfg.cond_dim, S = g->dit.cfg.image_size,
        C = g->dit.cfg.in_channels;
    int64_t n = (int64_t)rows * per;
    float *emb = malloc(sizeof(float) * (size_t)n * E), *x = malloc(sizeof(float) * (size_t)n * C * S * S);
    uint8_t *rgb = malloc((size_t)n * S * S * 3);
    vlm_status st = !emb || !x || !rgb ? vlm_errorf(err, VLM_ERR_OOM, "out of memory") : VLM_OK;
    if (!st) {
        for (int64_t i = 0; i < n; i++) memcpy(emb + i * E, d->emb + (i / per) * E, sizeof(float) * (size_t)E);
        vlm_gen_sample_opts so;
        vlm_gen_sample_opts_default(&so);
        if (!(st = vlm_gen_sample(g, emb, n, &so, x, err))) {
            vlm_gen_to_rgb(x, n, C, S, rgb);
            st = write_grid(path, rgb, rows, per, S, 2, (const char *const *)d->texts.p, err);
        }
    }
    free(emb), free(x), free(rgb);
    return st;
}

static int cmd_generate_train(int argc, char **argv) {
    const char *cmd = "generate train";
    vlm_error err = {0};
    train_opts o;
    int pr = train_parse(argc, argv, &o, &err);
    if (pr == 1) {
        fputs(train_usage, stdout);
        return 0;
    }
    if (pr) return cli_fail(cmd, &err);
    int rc = 1, have_ctx = 0;
    vlm_gen g;
    memset(&g, 0, sizeof g);
    gen_data d;
    memset(&d, 0, sizeof d);
    vlm_ctx c;
    FILE *mf = NULL;
    float *x0 = NULL, *xt = NULL, *eps = NULL, *emb = NULL, *sw = NULL;
    double *t_cdf = NULL; // [T] cumulative timestep density (--t-sampling stratified|importance)
    int32_t *tt = NULL;
    uint8_t *drop = NULL;
    uint32_t *order = NULL;
    char args_json[2048];
    vlm_decode_opts dec;
    vlm_decode_opts_default(&dec);
    if (o.composite && cli_parse_composite(o.composite, &dec, &err)) goto fail;
    double t_setup = cli_now();
    vlm_dit_cfg cfg;
    vlm_dit_cfg_default(&cfg);
    cfg.image_size = (int)o.image_size, cfg.patch_size = (int)o.patch, cfg.in_channels = (int)o.channels;
    cfg.width = (int)o.width, cfg.layers = (int)o.layers, cfg.heads = (int)o.heads, cfg.cond_tokens = (int)o.cond_tokens;
    cfg.long_skip = o.long_skip;
    cfg.schedule = (vlm_diff_kind)vlm_diff_kind_parse(o.schedule), cfg.timesteps = (int)o.timesteps;
    if (vlm_gen_from_clip(&g, o.clip, cfg, (uint64_t)o.seed, &err)) goto fail;
    g.cond = strcmp(o.cond, "image") ? VLM_GEN_TEXT : VLM_GEN_IMAGE;
    snprintf(g.template_, sizeof g.template_, "%s", o.tmpl);
    snprintf(g.train_data, sizeof g.train_data, "%s", o.train);
    if (load_data(&g, o.train, o.classnames, &dec, o.limit, &d, &err)) goto fail;
    vlm_dit_set_cond_stats(&g.dit, d.emb, d.n_emb); // (restored as saved when resuming)
    const int S = cfg.image_size, C = cfg.in_channels, E = g.dit.cfg.cond_dim, B = (int)o.batch, T = cfg.timesteps;
    const int64_t D = (int64_t)C * S * S;
    vlm_diff_schedule sch;
    if (vlm_diff_schedule_init(&sch, cfg.schedule, T, &err)) goto fail;
    vlm_adamw opt;
    if (vlm_adamw_init(&opt, &g.dit.ps, (vlm_adamw_cfg){(float)o.lr, 0.9f, 0.999f, 1e-8f, (float)o.wd}, &err)) goto fail_sch;
    if (vlm_gen_ema_init(&g, &err)) goto fail_sch;
    char grid_path[1200], name[256];
    if (o.name) snprintf(name, sizeof name, "%s", o.name);
    else snprintf(name, sizeof name, "gen-s%d-p%d-w%d-l%d-b%d-seed%lld", S, cfg.patch_size, cfg.width, cfg.layers, B, o.seed);
    vlm_dist *Dd = cli_dist_setup(&o.dist);
    const int R = Dd->rank, W = Dd->world, io = R == 0; // only rank 0 writes files and logs
    const int GB = B * W;                                 // global batch
    cli_run run;
    if (cli_run_init(&run, o.logs, name, o.resume, io, &err)) goto fail_sch;
    snprintf(grid_path, sizeof grid_path, "%s/samples.png", run.dir);
    vlm_train_state ts;
    memset(&ts, 0, sizeof ts);
    if (run.resume[0]) {
        if (vlm_gen_load_state(run.resume, &g, &ts, &err)) goto fail_sch;
        opt.step = ts.adam_step;
        if (cli_dist_check_resume(Dd, ts.global_batch, 0, B, run.resume, &err)) goto fail_sch;
        if (io) fprintf(stderr, "generate train: resumed %s at step %" PRId64 "\n", run.resume, ts.step);
    }
    if (cli_dist_sync_params(Dd, &g.dit.ps, &err)) goto fail_sch;
    if (io && cli_run_open_metrics(&run, &mf, &err)) goto fail_sch;
    snprintf(args_json, sizeof args_json,
             "{\"train_data\": \"%s\", \"cond\": \"%s\", \"template\": \"%s\", \"batch_size\": %d, \"lr\": %g, \"wd\": %g, "
             "\"warmup\": %lld, \"lr_schedule\": \"%s\", \"p_uncond\": %g, \"ema_decay\": %g, \"hflip\": %g, \"seed\": %lld, "
             "\"max_minutes\": %g, \"min_snr\": %g, \"t_sampling\": \"%s\"}",
             o.train, o.cond, o.tmpl, B, o.lr, o.wd, o.warmup, o.lr_sched, o.p_uncond, o.ema, o.hflip, o.seed,
             o.max_minutes, o.min_snr, o.t_sampling);
    x0 = malloc(sizeof(float) * (size_t)B * D);
    xt = malloc(sizeof(float) * (size_t)B * D);
    eps = malloc(sizeof(float) * (size_t)B * D);
    emb = malloc(sizeof(float) * (size_t)B * E);
    tt = malloc(sizeof(int32_t) * (size_t)B);
    sw = malloc(sizeof(float) * (size_t)B);
    drop = malloc((size_t)B);
    order = malloc(sizeof(uint32_t) * (size_t)d.n);
    t_cdf = malloc(sizeof(double) * (size_t)T);
    if (!x0 || !xt || !eps || !emb || !tt || !sw || !drop || !order || !t_cdf) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto fail_sch;
    }
    // importance: t ~ w_t / sum(w), each sample weighted by mean(w) (vlm_diff_weight_cdf);
    // stratified: the uniform density (gamma 0), weights as --min-snr gives them
    const int t_mode = o.t_mode;
    const double t_mean_w = vlm_diff_weight_cdf(&sch, t_mode == 2 ? o.min_snr : 0, t_cdf);
    if (vlm_ctx_init(&c, 256u << 20, (uint64_t)o.seed, &err)) goto fail_sch;
    have_ctx = 1;
    const int64_t steps_per_epoch = (d.n + GB - 1) / GB;
    int64_t total = o.max_steps ? o.max_steps : (o.max_minutes > 0 ? INT64_MAX / 4 : steps_per_epoch * 100);
    vlm_sched_kind sk;
    vlm_sched_parse(o.lr_sched, &sk);
    vlm_sched sched = {sk, (float)o.lr, o.warmup, total, 0, 1, 0};
    const double budget = o.max_minutes > 0 ? o.max_minutes * 60.0 : 0;
    if (io && W > 1)
        fprintf(stderr, "generate train: data-parallel over %d ranks: %d images per rank, global batch %d\n", W, B, GB);
    if (io)
        fprintf(stderr,
            "generate train: %" PRId64 " images at %dx%dx%d, %" PRId64 " distinct conditions (%s), DiT %d layers x %d wide "
            "(patch %d, %d tokens%s), %lld params, batch %d, %" PRId64 " steps/epoch; setup %.1f s; run dir %s\n",
            d.n, C, S, S, d.n_emb, o.cond, cfg.layers, cfg.width, cfg.patch_size, (S / cfg.patch_size) * (S / cfg.patch_size),
            cfg.cond_tokens ? " + cond tokens" : "", (long long)g.dit.ps.total, B, steps_per_epoch, cli_now() - t_setup,
            run.dir);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double t_start = cli_now() - ts.elapsed_s, t_log = cli_now(), acc = 0;
    int64_t epoch_shuffled = -1, seen = 0, acc_n = 0;
    const char *stop_reason = "done";
    while (ts.step < total) {
        double now = cli_now();
        if (budget > 0 && (W > 1 ? ts.elapsed_s : now - t_start) >= budget) { // W > 1: rank 0's clock, agreed last step
            stop_reason = "time budget";
            break;
        }
        cli_dist_fault(&o.dist, Dd, ts.step);
        // This rank's B samples of the global batch: positions R*B.. of it, so a
        // global batch holds the same samples and draws at every world size.
        int64_t epoch = ts.step / steps_per_epoch, pos = (ts.step % steps_per_epoch) * GB + (int64_t)R * B;
        if (epoch != epoch_shuffled) {
            vlm_rng r;
            vlm_rng_init(&r, (uint64_t)o.seed, VLM_RNG_DATA, (uint64_t)epoch);
            for (int64_t i = 0; i < d.n; i++) order[i] = (uint32_t)i;
            vlm_rng_shuffle_u32(&r, order, (uint64_t)d.n);
            epoch_shuffled = epoch;
        }
        // Per sample: its own stream (seed, global sample index) draws the flip,
        // t, the drop and eps, so a resumed run repeats them exactly.
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            int64_t i = order[(pos + b) % d.n];
            vlm_rng r;
            vlm_rng_init(&r, (uint64_t)o.seed, VLM_RNG_SAMPLE, (uint64_t)(ts.step * GB + (int64_t)R * B + b));
            int flip = vlm_rng_uniform(&r) < o.hflip;
            if (t_mode) // sample j of the global batch draws from its stratum [j, j+1) / GB
                tt[b] = (int32_t)vlm_diff_t_from_u(t_cdf, T, ((double)R * B + b + vlm_rng_uniform_d(&r)) / GB);
            else
                tt[b] = (int32_t)vlm_rng_below(&r, (uint64_t)T);
            drop[b] = vlm_rng_uniform(&r) < o.p_uncond;
            float *xb = x0 + b * D;
            vlm_gen_from_rgb(d.rgb + i * S * S * 3, C, S, xb);
            if (flip)
                for (int ch = 0; ch < C; ch++)
                    for (int y = 0; y < S; y++)
                        for (int xx = 0; xx < S / 2; xx++) {
                            float *row = xb + ((int64_t)ch * S + y) * S, tmp = row[xx];
                            row[xx] = row[S - 1 - xx];
                            row[S - 1 - xx] = tmp;
                        }
            for (int64_t j = 0; j < D; j++) eps[b * D + j] = vlm_rng_normal(&r);
            vlm_diff_q_sample(&sch, tt[b], xb, eps + b * D, xt + b * D, D);
            // Min-SNR: mean(w (pred - eps)^2) as the MSE of sqrt(w) pred and sqrt(w) eps
            sw[b] = (float)sqrt(t_mode == 2 ? t_mean_w : vlm_diff_min_snr_weight(&sch, tt[b], o.min_snr));
            if (o.min_snr > 0)
                for (int64_t j = 0; j < D; j++) eps[b * D + j] *= sw[b];
            memcpy(emb + (int64_t)b * E, d.emb + (int64_t)d.row[i] * E, sizeof(float) * (size_t)E);
        }
        vlm_ctx_reset(&c);
        c.grad_enabled = 1;
        c.training = 1;
        vlm_params_zero_grad(&g.dit.ps);
        vlm_tensor *xin = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, C, S, S}, xt, NULL);
        vlm_tensor *ein = vlm_tensor_wrap(&c, VLM_F32, 2, (int64_t[]){B, E}, emb, NULL);
        vlm_tensor *target = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, C, S, S}, eps, NULL);
        vlm_tensor *pred = vlm_dit_forward(&c, &g.dit, xin, tt, ein, drop); // [B, C, S, S]
        if (pred && o.min_snr > 0)
            pred = vlm_op_mul(&c, pred, vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, 1, 1, 1}, sw, NULL));
        vlm_tensor *loss = vlm_op_mse(&c, pred, target);
        if (!loss || vlm_backward(&c, loss)) {
            err = c.err;
            goto fail_sch;
        }
        // Data-parallel: the global batch's gradient and loss, rank 0's clock, any rank's stop.
        double clock_s, lvd = vlm_f32(loss)[0];
        int stop_sig = g_stop != 0;
        if (cli_dist_step_end(Dd, &g.dit.ps, 0, t_start, &lvd, &stop_sig, &clock_s, &err)) goto fail_sch;
        float lv = (float)lvd;
        if (!isfinite(lv) || !vlm_grads_finite(&g.dit.ps)) {
            if (io)
                fprintf(stderr, "generate train: non-finite loss/gradient at step %" PRId64 "; stopping (last checkpoint kept)\n",
                    ts.step);
            rc = 3;
            goto fail_sch;
        }
        if (o.clip_norm > 0) vlm_clip_grad_norm(&g.dit.ps, (float)o.clip_norm);
        now = W > 1 ? t_start + clock_s : cli_now();
        float lr = vlm_sched_lr_at(&sched, ts.step, o.time_sched, budget > 0 ? (now - t_start) / budget : 0);
        vlm_adamw_step(&opt, &g.dit.ps, lr);
        vlm_gen_ema_update(&g, (float)o.ema, ts.step);
        ts.step++;
        ts.adam_step = opt.step;
        ts.last_loss = lv;
        acc += lv, acc_n++, seen += GB;
        now = cli_now();
        ts.elapsed_s = W > 1 ? clock_s : now - t_start;
        ts.global_batch = GB;
        if (ts.step % o.log_every == 0 || ts.step == total) {
            double ips = seen / (now - t_log);
            char eta[32];
            double left = budget > 0 ? budget - ts.elapsed_s : (double)(total - ts.step) * GB / (ips > 0 ? ips : 1);
            cli_fmt_duration(left > 0 ? left : 0, eta, sizeof eta);
            if (io)
                fprintf(stderr, "step %" PRId64 " | epoch %" PRId64 " | loss %.4f | lr %.3g | %.0f img/s | ETA %s\n", ts.step,
                    epoch, acc / acc_n, lr, ips, eta);
            if (mf) {
                fprintf(mf, "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.6f, \"lr\": %g, \"img_per_s\": %.1f, "
                            "\"elapsed_s\": %.1f}\n",
                        ts.step, epoch, acc / acc_n, lr, ips, ts.elapsed_s);
                fflush(mf);
            }
            acc = 0, acc_n = 0, seen = 0, t_log = now;
        }
        int stop_here = stop_sig || (budget > 0 && ts.elapsed_s >= budget) || ts.step == total;
        if (io && (ts.step % o.save_every == 0 || stop_here)) {
            ts.epoch = ts.step / steps_per_epoch;
            ts.loader_epoch = ts.epoch;
            ts.loader_index = (ts.step % steps_per_epoch) * GB;
            if (vlm_gen_save_state(run.state, &g, &ts, args_json, &err) ||
                vlm_gen_save(run.model, &g, g.ema, ts.step, &err))
                goto fail_sch;
        }
        if (stop_sig) {
            stop_reason = "interrupted";
            break;
        }
    }
    if (!io) { // every rank holds the same weights; rank 0 samples and writes
        rc = 0;
        vlm_diff_schedule_free(&sch);
        goto done;
    }
    fprintf(stderr, "generate train: %s after %" PRId64 " steps, %.1f min; model (EMA weights) %s\n", stop_reason, ts.step,
            ts.elapsed_s / 60, run.model);
    if (ts.step > 0 && o.grid_n > 0 && g.cond == VLM_GEN_TEXT) {
        memcpy(g.dit.ps.data, g.ema, sizeof(float) * (size_t)g.dit.ps.total); // sample with the EMA weights
        if (end_grid(&g, &d, (int)o.grid_n, grid_path, &err)) goto fail_sch;
        fprintf(stderr, "generate train: samples of the first prompts in %s\n", grid_path);
    }
    printf("{\"steps\": %" PRId64 ", \"minutes\": %.2f, \"loss\": %.5f, \"checkpoint\": \"%s\"}\n", ts.step,
           ts.elapsed_s / 60, ts.last_loss, run.model);
    rc = 0;
    vlm_diff_schedule_free(&sch);
    goto done;
fail_sch:
    vlm_diff_schedule_free(&sch);
fail:
    cli_fail(cmd, &err);
    rc = rc == 3 ? 3 : 1;
done:
    if (mf) fclose(mf);
    if (have_ctx) vlm_ctx_free(&c);
    vlm_gen_free(&g);
    gen_data_free(&d);
    free(x0), free(xt), free(eps), free(emb), free(tt), free(sw), free(drop), free(order), free(t_cdf);
    return rc;
}

// The sampling flags `sample` and `eval` share: --steps, --guidance, --seed,
// --sampler. Returns 1 if (a, v) was one of them, 0 if not, -1 on a bad value.
typedef struct {
    long long steps, seed;
    double guidance, glo, ghi; // guidance interval (glo, ghi], ghi may be inf
    const char *sampler;
    const char *guide; // autoguidance: the weaker generator's model file (NULL = none)
    double autog;      // its weight a (1 = off)
    double rescale;    // guidance rescale phi (0 = off)
} sample_flags;

// 50 DDIM steps, seed 0, guidance 3 at every step, no autoguidance, no rescale
static const sample_flags sample_flags_default = {50, 0, 3.0, 0, INFINITY, "ddim", NULL, 1.0, 0.0};

static int parse_sample_flag(const char *a, const char *v, sample_flags *f, vlm_error *err) {
    if (!strcmp(a, "--steps")) return cli_parse_int(a, v, 1, 100000, &f->steps, err) ? -1 : 1;
    if (!strcmp(a, "--seed")) return cli_parse_int(a, v, 0, INT64_MAX, &f->seed, err) ? -1 : 1;
    if (!strcmp(a, "--guidance")) return cli_parse_float(a, v, 0, 100, &f->guidance, err) ? -1 : 1;
    if (!strcmp(a, "--guidance-rescale")) return cli_parse_float(a, v, 0, 1, &f->rescale, err) ? -1 : 1;
    if (!strcmp(a, "--autoguidance")) return cli_parse_float(a, v, 0, 100, &f->autog, err) ? -1 : 1;
    if (!strcmp(a, "--guide")) {
        f->guide = v;
        return 1;
    }
    if (!strcmp(a, "--guidance-interval")) {
        // LO,HI in noise level sigma = sqrt((1 - alpha_bar) / alpha_bar); HI may be "inf"
        char *end = NULL;
        double lo = strtod(v, &end), hi = NAN;
        if (end != v && *end == ',') {
            const char *h = end + 1;
            hi = strtod(h, &end); // strtod reads "inf"
            if (end == h || *end) hi = NAN;
        }
        if (!(lo >= 0) || !isfinite(lo) || !(hi > lo)) {
            vlm_errorf(err, VLM_ERR_ARG, "--guidance-interval: expected LO,HI with 0 <= LO < HI (noise levels sigma; HI may be inf), got '%s'", v);
            return -1;
        }
        f->glo = lo, f->ghi = hi;
        return 1;
    }
    if (strcmp(a, "--sampler")) return 0;
    if (strcmp(v, "ddim") && strcmp(v, "ddpm")) {
        vlm_errorf(err, VLM_ERR_ARG, "--sampler: expected ddim or ddpm, got '%s'", v);
        return -1;
    }
    f->sampler = v;
    return 1;
}

static void sample_opts_from(const sample_flags *f, vlm_gen_sample_opts *so) {
    vlm_gen_sample_opts_default(so);
    so->steps = (int)f->steps, so->ddpm = !strcmp(f->sampler, "ddpm"), so->guidance = (float)f->guidance;
    so->seed = (uint64_t)f->seed;
    so->guidance_lo = (float)f->glo, so->guidance_hi = (float)f->ghi;
    so->autoguidance = (float)f->autog;
    so->guidance_rescale = (float)f->rescale;
}

// Loads the autoguidance guide named by --guide into *guide (have = 1) and
// points so->guide at its denoiser; --autoguidance without --guide is an error.
static vlm_status load_guide(const sample_flags *f, vlm_gen *guide, int *have, vlm_gen_sample_opts *so,
                             vlm_error *err) {
    if (!f->guide) {
        if (f->autog != 1.0)
            return vlm_errorf(err, VLM_ERR_ARG, "--autoguidance %g needs --guide (the weaker generator)", f->autog);
        return VLM_OK;
    }
    memset(guide, 0, sizeof *guide);
    vlm_status st = vlm_gen_load(f->guide, guide, err);
    if (st) return st;
    *have = 1;
    so->guide = &guide->dit;
    return VLM_OK;
}

// ---------------------------------------------------------------- sample
static const char *sample_usage =
    "usage: vlm generate sample --checkpoint D (--prompt TEXT ... | --prompts FILE | --classnames FILE) [options]\n"
    "Samples images from a generator (vlm generate train) and writes a PNG grid, one row per prompt.\n"
    "  --prompt TEXT            a prompt (repeatable)\n"
    "  --prompts FILE           one prompt per line\n"
    "  --classnames FILE        one class name per line, filled into --template (default: the training template)\n"
    "  --image FILE             image conditioning (generators trained with --cond image): one row per image\n"
    "  --n N (8)                images per prompt\n"
    "  --steps N (50)           reverse steps  --sampler ddim|ddpm (ddim, eta 0)\n"
    "  --guidance S (3)         classifier-free guidance eps_u + S (eps_c - eps_u); 1 = no guidance\n"
    "  --guidance-interval LO,HI  guide only the steps whose noise level sigma = sqrt((1 - alpha_bar) /\n"
    "                           alpha_bar) is in (LO, HI] (HI may be inf); the others are conditional only\n"
    "  --guidance-rescale PHI   pull each guided x0 prediction's std back towards the conditional one's:\n"
    "                           x0 *= PHI std(x0_c) / std(x0_guided) + 1 - PHI (Lin et al. 2024; 0 = off)\n"
    "  --guide D --autoguidance A  autoguidance (Karras et al. 2024): a weaker generator D (smaller or\n"
    "                           shorter-trained; same size, schedule and CLIP) adds (A - 1) (eps_c - eps_D) at\n"
    "                           every step (on top of --guidance; A = 1: off)\n"
    "  --seed S (0)             --scale K (2): grid pixels per image pixel  --no-clip-x0  --batch-size B (64)\n"
    "  --out FILE (grid.png)    --no-labels: no prompt text on the left\n";

static int cmd_generate_sample(int argc, char **argv) {
    const char *cmd = "generate sample", *ckpt = NULL, *prompts_file = NULL, *classnames = NULL, *tmpl = NULL,
               *out = "grid.png";
    long long n = 8, scale = 2, batch = 64;
    sample_flags sf = sample_flags_default;
    int no_clip = 0, no_labels = 0;
    strlist prompts = {0}, images = {0};
    vlm_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(sample_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--no-clip-x0")) { no_clip = 1; continue; }
        if (!strcmp(a, "--no-labels")) { no_labels = 1; continue; }
        if (!v) return cli_failf(cmd, "%s needs a value (see --help)", a);
        i++;
        int pf = parse_sample_flag(a, v, &sf, &err);
        if (pf < 0) return cli_fail(cmd, &err);
        if (pf) continue;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--prompt")) { if (strlist_add(&prompts, v, &err)) return cli_fail(cmd, &err); }
        else if (!strcmp(a, "--image")) { if (strlist_add(&images, v, &err)) return cli_fail(cmd, &err); }
        else if (!strcmp(a, "--prompts")) prompts_file = v;
        else if (!strcmp(a, "--classnames")) classnames = v;
        else if (!strcmp(a, "--template")) tmpl = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--n")) { if (cli_parse_int(a, v, 1, 1024, &n, &err)) return cli_fail(cmd, &err); }
        else if (!strcmp(a, "--scale")) { if (cli_parse_int(a, v, 1, 16, &scale, &err)) return cli_fail(cmd, &err); }
        else if (!strcmp(a, "--batch-size")) { if (cli_parse_int(a, v, 1, 4096, &batch, &err)) return cli_fail(cmd, &err); }
        else return cli_failf(cmd, "unknown option '%s' (see --help)", a);
    }
    if (!ckpt) return cli_failf(cmd, "--checkpoint is required (see --help)");
    int rc = 1, have_guide = 0;
    vlm_gen g, guide;
    memset(&g, 0, sizeof g);
    float *emb = NULL, *x = NULL;
    uint8_t *rgb = NULL;
    char **lines = NULL;
    int nl = 0;
    if (vlm_gen_load(ckpt, &g, &err)) goto fail;
    if (prompts_file || classnames) {
        if (vlm_lines_load(prompts_file ? prompts_file : classnames, &lines, &nl, &err)) goto fail;
        if (prompts_file) {
            for (int i = 0; i < nl; i++)
                if (strlist_add(&prompts, lines[i], &err)) goto fail;
        } else if (fill_prompts(tmpl ? tmpl : g.template_, lines, nl, &prompts, &err))
            goto fail;
    }
    int rows = images.n ? images.n : prompts.n;
    if (rows == 0) {
        vlm_errorf(&err, VLM_ERR_ARG, "nothing to condition on: give --prompt, --prompts, --classnames or --image");
        goto fail;
    }
    if (images.n && prompts.n) {
        vlm_errorf(&err, VLM_ERR_ARG, "give prompts or images, not both");
        goto fail;
    }
    const int E = g.dit.cfg.cond_dim, S = g.dit.cfg.image_size, C = g.dit.cfg.in_channels;
    int64_t N = (int64_t)rows * n;
    float *row_emb = malloc(sizeof(float) * (size_t)rows * E);
    emb = malloc(sizeof(float) * (size_t)N * E);
    x = malloc(sizeof(float) * (size_t)N * C * S * S);
    rgb = malloc((size_t)N * S * S * 3);
    if (!row_emb || !emb || !x || !rgb) {
        free(row_emb);
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto fail;
    }
    vlm_status st;
    if (images.n) {
        // each image through the training-time path: eval transform to S, then the CLIP
        uint8_t *small = malloc((size_t)rows * S * S * 3);
        vlm_image img;
        vlm_image_init(&img);
        vlm_transform tf;
        vlm_transform_init(&tf, S);
        vlm_transform_scratch sc;
        vlm_transform_scratch_init(&sc);
        vlm_decode_opts dec;
        vlm_decode_opts_default(&dec);
        st = small ? VLM_OK : vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        for (int r = 0; r < rows && !st; r++)
            if (!(st = vlm_image_load(&img, images.p[r], &dec, &err)) &&
                (st = vlm_transform_eval_u8(&tf, &img, small + (size_t)r * S * S * 3, &sc, &err)))
                vlm_error_prefix(&err, "%s", images.p[r]);
        if (!st) st = embed_images(&g.clip, small, rows, S, row_emb, &err);
        free(small);
        vlm_image_free(&img);
        vlm_transform_scratch_free(&sc);
    } else {
        st = embed_texts(&g, (const char *const *)prompts.p, rows, row_emb, &err);
    }
    if (st) {
        free(row_emb);
        goto fail;
    }
    for (int64_t i = 0; i < N; i++) memcpy(emb + i * E, row_emb + (i / n) * E, sizeof(float) * (size_t)E);
    free(row_emb);
    vlm_gen_sample_opts so;
    sample_opts_from(&sf, &so);
    so.clip_x0 = !no_clip, so.batch = (int)batch;
    if (load_guide(&sf, &guide, &have_guide, &so, &err)) goto fail;
    double t0 = cli_now();
    if (vlm_gen_sample(&g, emb, N, &so, x, &err)) goto fail;
    vlm_gen_to_rgb(x, N, C, S, rgb);
    if (write_grid(out, rgb, rows, (int)n, S, (int)scale,
                   no_labels ? NULL : (const char *const *)(images.n ? images.p : prompts.p), &err))
        goto fail;
    fprintf(stderr, "generate sample: %" PRId64 " images (%d x %lld, %s %lld steps, guidance %g, seed %lld) in %.1f s -> %s\n",
            N, rows, n, sf.sampler, sf.steps, sf.guidance, sf.seed, cli_now() - t0, out);
    rc = 0;
    goto done;
fail:
    cli_fail(cmd, &err);
done:
    vlm_gen_free(&g);
    if (have_guide) vlm_gen_free(&guide);
    strlist_free(&prompts);
    strlist_free(&images);
    if (lines) vlm_strlist_free(lines, nl);
    free(emb), free(x), free(rgb);
    return rc;
}

// ---------------------------------------------------------------- eval
static const char *eval_usage =
    "usage: vlm generate eval --checkpoint D --classifier CKPT --classnames FILE [--real-data DATA] [options]\n"
    "Generates N images per class prompt and reports\n"
    "  cond_accuracy  the fraction the classifier (vlm finetune) assigns to the prompted class;\n"
    "  fd             the Fréchet distance between generated and real images in the generator's CLIP\n"
    "                 image-embedding space (L2-normalised features; real images at the generator's size);\n"
    "  fd_real_real   the same distance between two disjoint real sets of the same size (the floor at this n).\n"
    "  --classnames FILE        class k's name on line k (the classifier's label k), filled into --template\n"
    "  --template T             default: the generator's training template\n"
    "  --real-data DATA         labelled real images (e.g. the Fashion-MNIST test set); needs 2N per class;\n"
    "                           default: the generator's training data (recorded in its file)\n"
    "  --n-per-class N (100)  --steps N (50)  --sampler ddim|ddpm  --guidance S (3)  --seed S (0)\n"
    "  --guidance-interval LO,HI  guide only at noise levels sigma in (LO, HI] (see generate sample)\n"
    "  --guidance-rescale PHI  --guide D --autoguidance A  (see generate sample)\n"
    "  --grid FILE              also write the first 10 images of each class as a grid\n"
    "  --json                   end with one JSON line: cond_accuracy, fd, fd_real_real, n, real_accuracy,\n"
    "                           per_class (accuracy), fd_mean (the |mu_g - mu_r|^2 part of fd), fd_class and\n"
    "                           fd_class_real_real (the two distances within each class, n = N per class)\n";

static vlm_tensor *classifier_fn(vlm_ctx *c, void *m, vlm_tensor *images) {
    return vlm_classifier_forward(c, m, images, 0);
}

// Top-1 of the classifier on 8-bit RGB images [n, s, s, 3] (its eval transform).
static vlm_status classify(vlm_classifier *m, const uint8_t *rgb, int64_t n, int s, int32_t *pred, vlm_error *err) {
    const int K = m->cfg.head.n_classes;
    float *logits = malloc(sizeof(float) * (size_t)n * K);
    if (!logits) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    vlm_status st = images_forward(rgb, n, s, m->cfg.vit.image_size, classifier_fn, m, K, logits, err);
    for (int64_t i = 0; i < n && !st; i++) {
        const float *l = logits + i * K;
        int best = 0;
        for (int j = 1; j < K; j++)
            if (l[j] > l[best]) best = j;
        pred[i] = best;
    }
    free(logits);
    return st;
}

static int cmd_generate_eval(int argc, char **argv) {
    const char *cmd = "generate eval", *ckpt = NULL, *clf_path = NULL, *classnames = NULL, *real = NULL, *tmpl = NULL,
               *grid = NULL;
    long long npc = 100;
    sample_flags sf = sample_flags_default;
    int json = 0;
    vlm_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!v) return cli_failf(cmd, "%s needs a value (see --help)", a);
        i++;
        int pf = parse_sample_flag(a, v, &sf, &err);
        if (pf < 0) return cli_fail(cmd, &err);
        if (pf) continue;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--classifier")) clf_path = v;
        else if (!strcmp(a, "--classnames")) classnames = v;
        else if (!strcmp(a, "--real-data")) real = v;
        else if (!strcmp(a, "--template")) tmpl = v;
        else if (!strcmp(a, "--grid")) grid = v;
        else if (!strcmp(a, "--n-per-class")) { if (cli_parse_int(a, v, 1, 100000, &npc, &err)) return cli_fail(cmd, &err); }
        else return cli_failf(cmd, "unknown option '%s' (see --help)", a);
    }
    if (!ckpt || !clf_path || !classnames)
        return cli_failf(cmd, "--checkpoint, --classifier and --classnames are required (see --help)");
    int rc = 1, have_clf = 0, have_guide = 0;
    vlm_gen g, guide;
    memset(&g, 0, sizeof g);
    vlm_classifier clf;
    char **names = NULL;
    int K = 0;
    strlist prompts = {0};
    float *emb = NULL, *x = NULL, *fg = NULL, *fa = NULL, *fb = NULL;
    uint8_t *rgb = NULL, *ra = NULL, *rb = NULL;
    int32_t *pred = NULL;
    vlm_dataset ds;
    int have_ds = 0;
    double t0 = cli_now();
    if (vlm_gen_load(ckpt, &g, &err)) goto fail;
    if (!real) {
        if (!g.train_data[0]) {
            vlm_errorf(&err, VLM_ERR_ARG, "%s records no training data: pass --real-data", ckpt);
            goto fail;
        }
        real = g.train_data;
        fprintf(stderr, "generate eval: real images from the training data %s\n", real);
    }
    if (g.cond != VLM_GEN_TEXT) {
        vlm_errorf(&err, VLM_ERR_ARG, "%s: conditional accuracy needs a text-conditioned generator", ckpt);
        goto fail;
    }
    if (vlm_classifier_load(clf_path, &clf, NULL, &err)) goto fail;
    have_clf = 1;
    if (vlm_lines_load(classnames, &names, &K, &err)) goto fail;
    if (K != clf.cfg.head.n_classes) {
        vlm_errorf(&err, VLM_ERR_ARG, "%s has %d class names, the classifier %s has %d classes", classnames, K, clf_path,
                   clf.cfg.head.n_classes);
        goto fail;
    }
    if (fill_prompts(tmpl ? tmpl : g.template_, names, K, &prompts, &err)) goto fail;
    const int E = g.dit.cfg.cond_dim, S = g.dit.cfg.image_size, C = g.dit.cfg.in_channels;
    const int64_t N = (int64_t)K * npc, P = (int64_t)S * S * 3;
    // real images: the first 2N per class, in file order -> A (first N) and B (next N)
    {
        vlm_dataset_opts dopt;
        vlm_dataset_opts_default(&dopt);
        dopt.require_label = 1;
        if (vlm_dataset_open(&ds, real, &dopt, &err)) goto fail;
        have_ds = 1;
        ra = malloc((size_t)(N * P)), rb = malloc((size_t)(N * P));
        int64_t *cnt = calloc((size_t)K, sizeof(int64_t));
        if (!ra || !rb || !cnt) {
            free(cnt);
            vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
            goto fail;
        }
        vlm_sample smp;
        vlm_sample_init(&smp);
        vlm_image img;
        vlm_image_init(&img);
        vlm_transform tf;
        vlm_transform_init(&tf, S);
        vlm_transform_scratch sc;
        vlm_transform_scratch_init(&sc);
        vlm_decode_opts dec;
        vlm_decode_opts_default(&dec);
        int64_t have = 0;
        vlm_status st = VLM_OK;
        for (int64_t i = 0; i < ds.n && have < 2 * N && !st; i++) {
            int32_t y = vlm_dataset_label(&ds, i);
            if (y < 0 || y >= K || cnt[y] >= 2 * npc) continue;
            int64_t k = cnt[y] < npc ? cnt[y] : cnt[y] - npc;
            uint8_t *dst = (cnt[y] < npc ? ra : rb) + ((int64_t)y * npc + k) * P;
            if (vlm_dataset_load_image(&ds, i, &smp, &img, &dec, &err) || vlm_transform_eval_u8(&tf, &img, dst, &sc, &err))
                st = err.status;
            cnt[y]++, have++;
        }
        vlm_sample_free(&smp);
        vlm_image_free(&img);
        vlm_transform_scratch_free(&sc);
        int short_k = -1;
        for (int k = 0; k < K; k++)
            if (cnt[k] < 2 * npc) short_k = k;
        free(cnt);
        if (st) goto fail;
        if (short_k >= 0) {
            vlm_errorf(&err, VLM_ERR_ARG, "%s: class %d (%s) has fewer than 2 x %lld images (needed for the real-vs-real baseline)",
                       real, short_k, names[short_k], npc);
            goto fail;
        }
    }
    // generate N per class
    emb = malloc(sizeof(float) * (size_t)N * E);
    x = malloc(sizeof(float) * (size_t)N * C * S * S);
    rgb = malloc((size_t)(N * P));
    pred = malloc(sizeof(int32_t) * (size_t)N);
    fg = malloc(sizeof(float) * (size_t)N * E), fa = malloc(sizeof(float) * (size_t)N * E), fb = malloc(sizeof(float) * (size_t)N * E);
    float *pe = malloc(sizeof(float) * (size_t)K * E);
    if (!emb || !x || !rgb || !pred || !fg || !fa || !fb || !pe) {
        free(pe);
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto fail;
    }
    if (embed_texts(&g, (const char *const *)prompts.p, K, pe, &err)) {
        free(pe);
        goto fail;
    }
    for (int64_t i = 0; i < N; i++) memcpy(emb + i * E, pe + (i / npc) * E, sizeof(float) * (size_t)E);
    free(pe);
    vlm_gen_sample_opts so;
    sample_opts_from(&sf, &so);
    if (load_guide(&sf, &guide, &have_guide, &so, &err)) goto fail;
    double tg = cli_now();
    if (vlm_gen_sample(&g, emb, N, &so, x, &err)) goto fail;
    tg = cli_now() - tg;
    vlm_gen_to_rgb(x, N, C, S, rgb);
    // conditional accuracy (and the classifier on real images, for reference)
    int64_t hit = 0, hit_real = 0;
    int64_t *per = calloc((size_t)K, sizeof(int64_t));
    if (!per || classify(&clf, rgb, N, S, pred, &err)) {
        free(per);
        if (!err.msg[0]) vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < N; i++)
        if (pred[i] == i / npc) hit++, per[i / npc]++;
    if (classify(&clf, ra, N, S, pred, &err)) {
        free(per);
        goto fail;
    }
    for (int64_t i = 0; i < N; i++) hit_real += pred[i] == i / npc;
    // Fréchet distances in the CLIP image-embedding space
    double fd = 0, fd_rr = 0;
    if (embed_images(&g.clip, rgb, N, S, fg, &err) || embed_images(&g.clip, ra, N, S, fa, &err) ||
        embed_images(&g.clip, rb, N, S, fb, &err) || vlm_frechet_distance(fg, N, fa, N, E, &fd, &err) ||
        vlm_frechet_distance(fb, N, fa, N, E, &fd_rr, &err)) {
        free(per);
        goto fail;
    }
    // where the distance comes from: the mean term, and each class on its own (generated vs A, B vs A)
    double fd_mean = 0, *fdk = calloc((size_t)(2 * K), sizeof(double));
    if (!fdk) {
        free(per);
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto fail;
    }
    for (int e = 0; e < E; e++) {
        double mg = 0, ma = 0;
        for (int64_t i = 0; i < N; i++) mg += fg[i * E + e], ma += fa[i * E + e];
        fd_mean += (mg - ma) / (double)N * ((mg - ma) / (double)N);
    }
    for (int k = 0; k < K && npc >= 2; k++) {
        const int64_t o = (int64_t)k * npc * E;
        if (vlm_frechet_distance(fg + o, npc, fa + o, npc, E, &fdk[k], &err) ||
            vlm_frechet_distance(fb + o, npc, fa + o, npc, E, &fdk[K + k], &err)) {
            free(per), free(fdk);
            goto fail;
        }
    }
    if (grid) {
        int per_row = npc < 10 ? (int)npc : 10;
        uint8_t *sel = malloc((size_t)K * per_row * P);
        if (!sel) {
            free(per), free(fdk);
            vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
            goto fail;
        }
        for (int k = 0; k < K; k++)
            memcpy(sel + (int64_t)k * per_row * P, rgb + (int64_t)k * npc * P, (size_t)(per_row * P));
        vlm_status st = write_grid(grid, sel, K, per_row, S, 2, (const char *const *)prompts.p, &err);
        free(sel);
        if (st) {
            free(per), free(fdk);
            goto fail;
        }
    }
    fprintf(stderr, "generate eval: %d classes x %lld images, %s %lld steps, guidance %g: sampling %.1f s, total %.1f s\n", K,
            npc, sf.sampler, sf.steps, sf.guidance, tg, cli_now() - t0);
    printf("%-28s %8s %9s %9s\n", "prompt", "accuracy", "fd", "fd_real");
    for (int k = 0; k < K; k++)
        printf("%-28s %8.3f %9.5f %9.5f\n", prompts.p[k], (double)per[k] / (double)npc, fdk[k], fdk[K + k]);
    printf("conditional accuracy %.4f (classifier on real images: %.4f)\n", (double)hit / N, (double)hit_real / N);
    printf("FD (CLIP image embeddings) generated-real %.5f, real-real %.5f, ratio %.2f (n = %" PRId64 ")\n", fd, fd_rr,
           fd_rr > 0 ? fd / fd_rr : 0.0, N);
    if (json) {
        printf("{\"cond_accuracy\": %.6f, \"fd\": %.6f, \"fd_real_real\": %.6f, \"fd_ratio\": %.4f, \"n\": %" PRId64
               ", \"real_accuracy\": %.6f, \"guidance\": %g, \"steps\": %lld, \"sampler\": \"%s\", \"per_class\": [",
               (double)hit / N, fd, fd_rr, fd_rr > 0 ? fd / fd_rr : 0.0, N, (double)hit_real / N, sf.guidance, sf.steps,
               sf.sampler);
        for (int k = 0; k < K; k++) printf("%s%.4f", k ? ", " : "", (double)per[k] / (double)npc);
        printf("], \"guidance_interval\": [%g, ", sf.glo);
        if (isfinite(sf.ghi)) printf("%g]", sf.ghi);
        else printf("null]"); // JSON has no inf
        if (have_guide) printf(", \"autoguidance\": %g", sf.autog);
        if (sf.rescale > 0) printf(", \"guidance_rescale\": %g", sf.rescale);
        printf(", \"fd_mean\": %.6f, \"fd_class\": [", fd_mean);
        for (int k = 0; k < K; k++) printf("%s%.6f", k ? ", " : "", fdk[k]);
        printf("], \"fd_class_real_real\": [");
        for (int k = 0; k < K; k++) printf("%s%.6f", k ? ", " : "", fdk[K + k]);
        printf("]}\n");
    }
    free(per), free(fdk);
    rc = 0;
    goto done;
fail:
    cli_fail(cmd, &err);
done:
    vlm_gen_free(&g);
    if (have_guide) vlm_gen_free(&guide);
    if (have_clf) vlm_classifier_free(&clf);
    if (have_ds) vlm_dataset_free(&ds);
    if (names) vlm_strlist_free(names, K);
    strlist_free(&prompts);
    free(emb), free(x), free(fg), free(fa), free(fb), free(rgb), free(ra), free(rb), free(pred);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && !strcmp(sub, "train")) return cmd_generate_train(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "sample")) return cmd_generate_sample(argc - 1, argv + 1);
    if (sub && !strcmp(sub, "eval")) return cmd_generate_eval(argc - 1, argv + 1);
    if (sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h"))) {
        printf("usage: vlm generate train|sample|eval [options]  (each has --help)\n%s\n%s\n%s", train_usage, sample_usage,
               eval_usage);
        return 0;
    }
    return cli_failf("generate", "expected train, sample or eval (got %s); see vlm generate --help", sub ? sub : "nothing");
}
