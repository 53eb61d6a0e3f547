// `vlm generate train|sample|eval`: a DiT denoiser conditioned on a frozen
// CLIP's embeddings (fusion/generator.h): training with eps-MSE, classifier-
// free-guidance dropout and an EMA; guided sampling to a PNG grid; evaluation
// by conditional accuracy (a vlm classifier) and the Fréchet distance in the
// CLIP's image-embedding space beside the real-vs-real baseline.
#include <inttypes.h>
#include "core/clock.h"
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "data/font.h"
#include "cli/opts.h"
#include "cli/train_common.h"
#include "train/gen_data.h"
#include "train/generate.h"
#include "core/optim.h"
#include "data/evalread.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/generator.h"
#include "eval/frechet.h"
#include "eval/templates.h"
#include "fusion/classes.h"
#include "vision/classifier.h"



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
    "  --batch-size B (64)  --lr LR (3e-4)  --wd WD (0)  --warmup STEPS (500)  --lr-scheduler const|cosine\n"
    "  --grad-clip-norm N (1)  --p-uncond P (0.1)  --ema-decay D (0.9995)  --seed S (0)\n"
    "  --min-snr G (0)  weight each sample's eps-MSE by min(SNR_t, G) / SNR_t (Min-SNR-gamma; 5 is the\n"
    "                   paper's value; 0 = plain eps-MSE); the logged loss is then the weighted one\n"
    "  --t-sampling uniform|stratified|importance (uniform)  how a batch draws its timesteps: independently\n"
    "                   and uniformly; one per stratum of [0, T) (lower variance, same distribution); or\n"
    "                   stratified with density proportional to the --min-snr weight and every sample weighted\n"
    "                   by the mean weight instead (the same expected loss, no draws spent on ~zero weights)\n"
    "  --max-steps N  --max-minutes M  --time-schedule (cosine over the time budget)  --precision fp32|amp_bf16|bf16|auto\n"
    "runs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (1000)  --log-every N (50)  --resume latest|FILE\n"
    "  --grid-n N (8): at the end, sample N images per prompt (first 10 prompts) into <run>/samples.png\n"
    "data-parallel: mpirun -np N vlm generate train ... (an MPI build): --batch-size per rank, rank 0 writes;\n"
    "  --dist-timeout S (300) stops the job when a rank waits longer than S seconds for the others\n"
    "Ends with one JSON line: steps, minutes, loss, checkpoint (the EMA model file).\n";

// 0: parsed, 1: --help, -1: usage error.
static int train_parse(int argc, char **argv, vlm_generate_opts *o, cli_dist_opts *d, int *json, vlm_error *err) {
    vlm_generate_opts_default(o);
    cli_dist_opts_default(d);
    const cli_opt own[] = {
        {"clip", CLI_STR, &o->clip, 0, 0, NULL, NULL},
        {"train-data", CLI_STR, &o->train, 0, 0, NULL, NULL},
        {"classnames", CLI_STR, &o->classnames, 0, 0, NULL, NULL},
        {"template", CLI_STR, &o->tmpl, 0, 0, NULL, NULL},
        {"cond", CLI_STR, &o->cond, 0, 0, NULL, NULL},
        {"composite", CLI_FN, &o->dec, 0, 0, cli_fn_composite, NULL},
        {"schedule", CLI_STR, &o->schedule, 0, 0, NULL, NULL},
        {"t-sampling", CLI_STR, &o->t_sampling, 0, 0, NULL, NULL},
        {"train-limit", CLI_INT, &o->limit, 1, 9.3e18, NULL, NULL},
        {"image-size", CLI_INT, &o->image_size, 4, 1024, NULL, NULL},
        {"patch-size", CLI_INT, &o->patch, 1, 64, NULL, NULL},
        {"channels", CLI_INT, &o->channels, 1, 3, NULL, NULL},
        {"width", CLI_INT, &o->width, 4, 8192, NULL, NULL},
        {"layers", CLI_INT, &o->layers, 1, 256, NULL, NULL},
        {"heads", CLI_INT, &o->heads, 1, 256, NULL, NULL},
        {"cond-tokens", CLI_INT, &o->cond_tokens, 0, 64, NULL, NULL},
        {"timesteps", CLI_INT, &o->timesteps, 2, 100000, NULL, NULL},
        {"grid-n", CLI_INT, &o->grid_n, 0, 64, NULL, NULL},
        {"hflip", CLI_FLT, &o->hflip, 0, 1, NULL, NULL},
        {"p-uncond", CLI_FLT, &o->p_uncond, 0, 1, NULL, NULL},
        {"ema-decay", CLI_FLT, &o->ema, 0, 1, NULL, NULL},
        {"min-snr", CLI_FLT, &o->min_snr, 0, 1e9, NULL, NULL},
        {"long-skip", CLI_FLAG, &o->long_skip, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt common[CLI_TRAIN_OPTS];
    cli_train_table(common, &o->c, d, json);
    const cli_opt *tabs[] = {own, common};
    int r = cli_parse_flags("generate train", argc, argv, tabs, 2, err);
    if (r) return r;
    return vlm_generate_opts_check(o, err) ? -1 : 0;
}

static int cmd_generate_train(int argc, char **argv) {
    vlm_generate_opts o;
    cli_dist_opts d;
    vlm_error err = {0};
    int json = 0, pr = train_parse(argc, argv, &o, &d, &json, &err);
    if (pr) return cli_parse_exit(pr, "generate train", train_usage, &err);
    cli_trainer_setup(&o.c, &d);
    vlm_generate_result r;
    if (vlm_generate_train(&o, &r, &err)) return cli_train_fail("generate train", &err);
    cli_progress_end();
    if (o.c.dist->rank) return 0; // rank 0 reports
    printf("{\"steps\": %" PRId64 ", \"minutes\": %.2f, \"loss\": %.5f, \"checkpoint\": \"%s\"}\n", r.steps, r.minutes,
           r.loss, r.checkpoint);
    return 0;
}

// The sampling flags `sample` and `eval` share: --steps, --guidance, --seed,
// --sampler, guidance interval / rescale, autoguidance.
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

// LO,HI in noise level sigma = sqrt((1 - alpha_bar) / alpha_bar); HI may be "inf"
static int fn_interval(const char *v, void *dst, vlm_error *err) {
    sample_flags *f = dst;
    char *end = NULL;
    double lo = strtod(v, &end), hi = NAN;
    if (end != v && *end == ',') {
        const char *h = end + 1;
        hi = strtod(h, &end); // strtod reads "inf"
        if (end == h || *end) hi = NAN;
    }
    if (!(lo >= 0) || !isfinite(lo) || !(hi > lo)) {
        vlm_errorf(err, VLM_ERR_ARG,
                   "--guidance-interval: expected LO,HI with 0 <= LO < HI (noise levels sigma; HI may be inf), got '%s'", v);
        return -1;
    }
    f->glo = lo, f->ghi = hi;
    return 0;
}

static int fn_sampler(const char *v, void *dst, vlm_error *err) {
    if (strcmp(v, "ddim") && strcmp(v, "ddpm")) {
        vlm_errorf(err, VLM_ERR_ARG, "--sampler: expected ddim or ddpm, got '%s'", v);
        return -1;
    }
    *(const char **)dst = v;
    return 0;
}

#define SAMPLE_OPTS 10
static void sample_table(cli_opt *tab, sample_flags *f) {
    const cli_opt t[] = {
        {"steps", CLI_INT, &f->steps, 1, 100000, NULL, NULL},
        {"seed", CLI_INT, &f->seed, 0, 9.3e18, NULL, NULL},
        {"guidance", CLI_FLT, &f->guidance, 0, 100, NULL, NULL},
        {"guidance-rescale", CLI_FLT, &f->rescale, 0, 1, NULL, NULL},
        {"autoguidance", CLI_FLT, &f->autog, 0, 100, NULL, NULL},
        {"guide", CLI_STR, &f->guide, 0, 0, NULL, NULL},
        {"guidance-interval", CLI_FN, f, 0, 0, fn_interval, NULL},
        {"sampler", CLI_FN, &f->sampler, 0, 0, fn_sampler, NULL},
        CLI_END,
    };
    _Static_assert(sizeof t / sizeof t[0] <= SAMPLE_OPTS, "SAMPLE_OPTS too small");
    memcpy(tab, t, sizeof t);
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

typedef struct {
    const char *ckpt, *prompts_file, *classnames, *tmpl, *out;
    long long n, scale, batch;
    sample_flags sf;
    int no_clip, no_labels;
    vlm_strvec prompts, images; // --prompt, --image (repeatable)
} sample_cli;

static int fn_strvec(const char *v, void *dst, vlm_error *err) { return vlm_strvec_add(dst, v, err) ? -1 : 0; }

// 0: parsed, 1: --help, -1: usage error.
static int sample_parse(int argc, char **argv, sample_cli *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->out = "grid.png", o->n = 8, o->scale = 2, o->batch = 64, o->sf = sample_flags_default;
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &o->ckpt, 0, 0, NULL, NULL},
        {"prompt", CLI_FN, &o->prompts, 0, 0, fn_strvec, NULL},
        {"image", CLI_FN, &o->images, 0, 0, fn_strvec, NULL},
        {"prompts", CLI_STR, &o->prompts_file, 0, 0, NULL, NULL},
        {"classnames", CLI_STR, &o->classnames, 0, 0, NULL, NULL},
        {"template", CLI_STR, &o->tmpl, 0, 0, NULL, NULL},
        {"out", CLI_STR, &o->out, 0, 0, NULL, NULL},
        {"n", CLI_INT, &o->n, 1, 1024, NULL, NULL},
        {"scale", CLI_INT, &o->scale, 1, 16, NULL, NULL},
        {"batch-size", CLI_INT, &o->batch, 1, 4096, NULL, NULL},
        {"no-clip-x0", CLI_FLAG, &o->no_clip, 0, 0, NULL, NULL},
        {"no-labels", CLI_FLAG, &o->no_labels, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt smp[SAMPLE_OPTS];
    sample_table(smp, &o->sf);
    const cli_opt *tabs[] = {own, smp};
    int r = cli_parse_flags("generate sample", argc, argv, tabs, 2, err);
    if (r) return r;
    if (!o->ckpt) return vlm_errorf(err, VLM_ERR_ARG, "--checkpoint is required (see vlm generate sample --help)"), -1;
    return 0;
}

// Each --image through the training-time path: eval transform to S, then the
// CLIP's image tower -> row_emb [rows, E].
static vlm_status embed_image_files(vlm_gen *g, const vlm_strvec *images, float *row_emb, vlm_error *err) {
    const int rows = images->n, S = g->dit.cfg.image_size;
    uint8_t *small = malloc((size_t)rows * S * S * 3);
    vlm_eval_reader rd;
    vlm_eval_reader_init(&rd, S, NULL);
    vlm_status st = small ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    for (int r = 0; r < rows && !st; r++) st = vlm_eval_read_file_u8(&rd, images->p[r], small + (size_t)r * S * S * 3, err);
    if (!st) st = vlm_gen_embed_images(&g->clip, small, rows, S, row_emb, err);
    free(small);
    vlm_eval_reader_free(&rd);
    return st;
}

// The condition of every image to sample: emb [rows * n, E], row r's
// embedding (its prompt's or its image's) repeated n times.
static vlm_status sample_conditions(vlm_gen *g, sample_cli *o, int rows, float *emb, vlm_error *err) {
    const int E = g->dit.cfg.cond_dim;
    float *row_emb = malloc(sizeof(float) * (size_t)rows * E);
    if (!row_emb) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    vlm_status st = o->images.n ? embed_image_files(g, &o->images, row_emb, err)
                                : vlm_gen_embed_texts(g, (const char *const *)o->prompts.p, rows, row_emb, err);
    for (int64_t i = 0; i < (int64_t)rows * o->n && !st; i++)
        memcpy(emb + i * E, row_emb + (i / o->n) * E, sizeof(float) * (size_t)E);
    free(row_emb);
    return st;
}

// --prompts lines as they are, or --classnames filled into the template.
static vlm_status add_prompt_lines(vlm_gen *g, sample_cli *o, vlm_error *err) {
    if (!o->prompts_file && !o->classnames) return VLM_OK;
    char **lines = NULL;
    int nl = 0;
    vlm_status st = vlm_lines_load(o->prompts_file ? o->prompts_file : o->classnames, &lines, &nl, err);
    if (st) return st;
    if (o->prompts_file)
        for (int i = 0; i < nl && !st; i++) st = vlm_strvec_add(&o->prompts, lines[i], err);
    else st = vlm_gen_fill_prompts(o->tmpl ? o->tmpl : g->template_, lines, nl, &o->prompts, err);
    vlm_strlist_free(lines, nl);
    return st;
}

static int cmd_generate_sample(int argc, char **argv) {
    const char *cmd = "generate sample";
    sample_cli o;
    vlm_error err = {0};
    int pr = sample_parse(argc, argv, &o, &err);
    if (pr) {
        vlm_strvec_free(&o.prompts), vlm_strvec_free(&o.images);
        return cli_parse_exit(pr, cmd, sample_usage, &err);
    }
    int rc = 1, have_guide = 0, rows = 0;
    vlm_gen g, guide;
    memset(&g, 0, sizeof g);
    float *emb = NULL, *x = NULL;
    uint8_t *rgb = NULL;
    if (vlm_gen_load(o.ckpt, &g, &err) || add_prompt_lines(&g, &o, &err)) goto done;
    rows = o.images.n ? o.images.n : o.prompts.n;
    if (rows == 0) {
        vlm_errorf(&err, VLM_ERR_ARG, "nothing to condition on: give --prompt, --prompts, --classnames or --image");
        goto done;
    }
    if (o.images.n && o.prompts.n) {
        vlm_errorf(&err, VLM_ERR_ARG, "give prompts or images, not both");
        goto done;
    }
    const int E = g.dit.cfg.cond_dim, S = g.dit.cfg.image_size, C = g.dit.cfg.in_channels;
    const int64_t N = (int64_t)rows * o.n;
    emb = malloc(sizeof(float) * (size_t)N * E);
    x = malloc(sizeof(float) * (size_t)N * C * S * S);
    rgb = malloc((size_t)N * S * S * 3);
    if (!emb || !x || !rgb) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto done;
    }
    if (sample_conditions(&g, &o, rows, emb, &err)) goto done;
    vlm_gen_sample_opts so;
    sample_opts_from(&o.sf, &so);
    so.clip_x0 = !o.no_clip, so.batch = (int)o.batch;
    if (load_guide(&o.sf, &guide, &have_guide, &so, &err)) goto done;
    double t0 = vlm_now();
    if (vlm_gen_sample(&g, emb, N, &so, x, &err)) goto done;
    vlm_gen_to_rgb(x, N, C, S, rgb);
    if (vlm_grid_png(o.out, rgb, rows, (int)o.n, S, (int)o.scale,
                     o.no_labels ? NULL : (const char *const *)(o.images.n ? o.images.p : o.prompts.p), &err))
        goto done;
    fprintf(stderr, "generate sample: %" PRId64 " images (%d x %lld, %s %lld steps, guidance %g, seed %lld) in %.1f s -> %s\n",
            N, rows, o.n, o.sf.sampler, o.sf.steps, o.sf.guidance, o.sf.seed, vlm_now() - t0, o.out);
    rc = 0;
done:
    if (rc) cli_fail(cmd, &err);
    vlm_gen_free(&g);
    if (have_guide) vlm_gen_free(&guide);
    vlm_strvec_free(&o.prompts);
    vlm_strvec_free(&o.images);
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
    vlm_status st = vlm_images_forward(rgb, n, s, m->cfg.vit.image_size, classifier_fn, m, K, logits, err);
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

typedef struct {
    const char *ckpt, *clf_path, *classnames, *real, *tmpl, *grid;
    long long npc;
    sample_flags sf;
    int json;
} eval_cli;

// 0: parsed, 1: --help, -1: usage error.
static int eval_parse(int argc, char **argv, eval_cli *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->npc = 100, o->sf = sample_flags_default;
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &o->ckpt, 0, 0, NULL, NULL},
        {"classifier", CLI_STR, &o->clf_path, 0, 0, NULL, NULL},
        {"classnames", CLI_STR, &o->classnames, 0, 0, NULL, NULL},
        {"real-data", CLI_STR, &o->real, 0, 0, NULL, NULL},
        {"template", CLI_STR, &o->tmpl, 0, 0, NULL, NULL},
        {"grid", CLI_STR, &o->grid, 0, 0, NULL, NULL},
        {"n-per-class", CLI_INT, &o->npc, 1, 100000, NULL, NULL},
        {"json", CLI_FLAG, &o->json, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt smp[SAMPLE_OPTS];
    sample_table(smp, &o->sf);
    const cli_opt *tabs[] = {own, smp};
    int r = cli_parse_flags("generate eval", argc, argv, tabs, 2, err);
    if (r) return r;
    if (!o->ckpt || !o->clf_path || !o->classnames)
        return vlm_errorf(err, VLM_ERR_ARG, "--checkpoint, --classifier and --classnames are required (see vlm generate eval --help)"), -1;
    return 0;
}

// Real images at the generator's size S, 8-bit [K * npc, S, S, 3] each: the
// first 2 npc of every class in file order, the first npc into ra and the
// next npc into rb (class k's at rows k * npc ...).
static vlm_status load_real_pairs(const char *real, char **names, int K, int64_t npc, int S, uint8_t *ra, uint8_t *rb,
                                  vlm_error *err) {
    const int64_t P = (int64_t)S * S * 3;
    vlm_dataset ds;
    vlm_dataset_opts dopt;
    vlm_dataset_opts_default(&dopt);
    dopt.require_label = 1;
    vlm_status st = vlm_dataset_open(&ds, real, &dopt, err);
    if (st) return st;
    int64_t *cnt = calloc((size_t)K, sizeof(int64_t)), have = 0;
    if (!cnt) {
        vlm_dataset_free(&ds);
        return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    }
    vlm_eval_reader rd;
    vlm_eval_reader_init(&rd, S, NULL);
    for (int64_t i = 0; i < ds.n && have < 2 * K * npc && !st; i++) {
        int32_t y = vlm_dataset_label(&ds, i);
        if (y < 0 || y >= K || cnt[y] >= 2 * npc) continue;
        int64_t k = cnt[y] < npc ? cnt[y] : cnt[y] - npc;
        uint8_t *dst = (cnt[y] < npc ? ra : rb) + ((int64_t)y * npc + k) * P;
        st = vlm_eval_read_sample_u8(&rd, &ds, i, dst, err);
        cnt[y]++, have++;
    }
    for (int k = 0; k < K && !st; k++)
        if (cnt[k] < 2 * npc)
            st = vlm_errorf(err, VLM_ERR_ARG, "%s: class %d (%s) has fewer than 2 x %lld images (needed for the "
                            "real-vs-real baseline)", real, k, names[k], (long long)npc);
    vlm_eval_reader_free(&rd);
    free(cnt);
    vlm_dataset_free(&ds);
    return st;
}

// What `generate eval` measures.
typedef struct {
    int64_t hit, hit_real; // classifier top-1 hits on generated / real (A) images
    int64_t *per;          // [K] hits per prompted class
    double fd, fd_rr, fd_mean;
    double *fdk; // [2K]: per class generated-vs-A, then B-vs-A
} gen_metrics;

static void gen_metrics_free(gen_metrics *m) { free(m->per), free(m->fdk); }

// Conditional accuracy, and Fréchet distances in the CLIP image-embedding
// space: all, the mean term, each class. rgb: generated; ra, rb: real halves.
static vlm_status measure(vlm_gen *g, vlm_classifier *clf, const uint8_t *rgb, const uint8_t *ra, const uint8_t *rb,
                          int K, int64_t npc, gen_metrics *m, vlm_error *err) {
    const int S = g->dit.cfg.image_size, E = g->dit.cfg.cond_dim; // CLIP image embeddings
    const int64_t N = K * npc;
    memset(m, 0, sizeof *m);
    int32_t *pred = malloc(sizeof(int32_t) * (size_t)N);
    float *fg = malloc(sizeof(float) * (size_t)N * E), *fa = malloc(sizeof(float) * (size_t)N * E),
          *fb = malloc(sizeof(float) * (size_t)N * E);
    m->per = calloc((size_t)K, sizeof(int64_t));
    m->fdk = calloc((size_t)(2 * K), sizeof(double));
    vlm_status st = pred && fg && fa && fb && m->per && m->fdk ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (!st && !(st = classify(clf, rgb, N, S, pred, err)))
        for (int64_t i = 0; i < N; i++)
            if (pred[i] == i / npc) m->hit++, m->per[i / npc]++;
    if (!st && !(st = classify(clf, ra, N, S, pred, err)))
        for (int64_t i = 0; i < N; i++) m->hit_real += pred[i] == i / npc;
    if (!st && !(st = vlm_gen_embed_images(&g->clip, rgb, N, S, fg, err)) &&
        !(st = vlm_gen_embed_images(&g->clip, ra, N, S, fa, err)) && !(st = vlm_gen_embed_images(&g->clip, rb, N, S, fb, err)) &&
        !(st = vlm_frechet_distance(fg, N, fa, N, E, &m->fd, err)))
        st = vlm_frechet_distance(fb, N, fa, N, E, &m->fd_rr, err);
    for (int e = 0; e < E && !st; e++) { // the |mu_g - mu_a|^2 part
        double mg = 0, ma = 0;
        for (int64_t i = 0; i < N; i++) mg += fg[i * E + e], ma += fa[i * E + e];
        m->fd_mean += (mg - ma) / (double)N * ((mg - ma) / (double)N);
    }
    for (int k = 0; k < K && npc >= 2 && !st; k++) {
        const int64_t o = (int64_t)k * npc * E;
        if (!(st = vlm_frechet_distance(fg + o, npc, fa + o, npc, E, &m->fdk[k], err)))
            st = vlm_frechet_distance(fb + o, npc, fa + o, npc, E, &m->fdk[K + k], err);
    }
    free(pred), free(fg), free(fa), free(fb);
    return st;
}

// The first 10 images of each class as a grid, one row per prompt.
static vlm_status write_class_grid(const char *path, const uint8_t *rgb, int K, int64_t npc, int S,
                                   const vlm_strvec *prompts, vlm_error *err) {
    const int64_t P = (int64_t)S * S * 3;
    int per_row = npc < 10 ? (int)npc : 10;
    uint8_t *sel = malloc((size_t)K * per_row * P);
    if (!sel) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    for (int k = 0; k < K; k++) memcpy(sel + (int64_t)k * per_row * P, rgb + (int64_t)k * npc * P, (size_t)(per_row * P));
    vlm_status st = vlm_grid_png(path, sel, K, per_row, S, 2, (const char *const *)prompts->p, err);
    free(sel);
    return st;
}

static void eval_report(const eval_cli *o, const vlm_strvec *prompts, int K, const gen_metrics *m, int guided) {
    const int64_t npc = o->npc, N = K * npc;
    const sample_flags *sf = &o->sf;
    FILE *f = stdout; // with --json the JSON line follows the report
    fprintf(f, "%-28s %8s %9s %9s\n", "prompt", "accuracy", "fd", "fd_real");
    for (int k = 0; k < K; k++)
        fprintf(f, "%-28s %8.3f %9.5f %9.5f\n", prompts->p[k], (double)m->per[k] / (double)npc, m->fdk[k], m->fdk[K + k]);
    fprintf(f, "conditional accuracy %.4f (classifier on real images: %.4f)\n", (double)m->hit / N, (double)m->hit_real / N);
    fprintf(f, "FD (CLIP image embeddings) generated-real %.5f, real-real %.5f, ratio %.2f (n = %" PRId64 ")\n", m->fd,
            m->fd_rr, m->fd_rr > 0 ? m->fd / m->fd_rr : 0.0, N);
    if (!o->json) return;
    printf("{\"cond_accuracy\": %.6f, \"fd\": %.6f, \"fd_real_real\": %.6f, \"fd_ratio\": %.4f, \"n\": %" PRId64
           ", \"real_accuracy\": %.6f, \"guidance\": %g, \"steps\": %lld, \"sampler\": \"%s\", \"per_class\": [",
           (double)m->hit / N, m->fd, m->fd_rr, m->fd_rr > 0 ? m->fd / m->fd_rr : 0.0, N, (double)m->hit_real / N,
           sf->guidance, sf->steps, sf->sampler);
    for (int k = 0; k < K; k++) printf("%s%.4f", k ? ", " : "", (double)m->per[k] / (double)npc);
    printf("], \"guidance_interval\": [%g, ", sf->glo);
    if (isfinite(sf->ghi)) printf("%g]", sf->ghi);
    else printf("null]"); // JSON has no inf
    if (guided) printf(", \"autoguidance\": %g", sf->autog);
    if (sf->rescale > 0) printf(", \"guidance_rescale\": %g", sf->rescale);
    printf(", \"fd_mean\": %.6f, \"fd_class\": [", m->fd_mean);
    for (int k = 0; k < K; k++) printf("%s%.6f", k ? ", " : "", m->fdk[k]);
    printf("], \"fd_class_real_real\": [");
    for (int k = 0; k < K; k++) printf("%s%.6f", k ? ", " : "", m->fdk[K + k]);
    printf("]}\n");
}

// Samples npc images per prompt into rgb [K * npc, S, S, 3].
static vlm_status sample_per_class(vlm_gen *g, const vlm_strvec *prompts, int64_t npc, const vlm_gen_sample_opts *so,
                                   uint8_t *rgb, vlm_error *err) {
    const int K = prompts->n, E = g->dit.cfg.cond_dim, S = g->dit.cfg.image_size, C = g->dit.cfg.in_channels;
    const int64_t N = K * npc;
    float *emb = malloc(sizeof(float) * (size_t)N * E), *pe = malloc(sizeof(float) * (size_t)K * E),
          *x = malloc(sizeof(float) * (size_t)N * C * S * S);
    vlm_status st = emb && pe && x ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (!st) st = vlm_gen_embed_texts(g, (const char *const *)prompts->p, K, pe, err);
    for (int64_t i = 0; i < N && !st; i++) memcpy(emb + i * E, pe + (i / npc) * E, sizeof(float) * (size_t)E);
    if (!st) st = vlm_gen_sample(g, emb, N, so, x, err);
    if (!st) vlm_gen_to_rgb(x, N, C, S, rgb);
    free(emb), free(pe), free(x);
    return st;
}

// Loads the generator, the classifier and the class prompts, checking they fit.
static vlm_status eval_load(eval_cli *o, vlm_gen *g, vlm_classifier *clf, int *have_clf, char ***names, int *K,
                            vlm_strvec *prompts, vlm_error *err) {
    vlm_status st = vlm_gen_load(o->ckpt, g, err);
    if (st) return st;
    if (!o->real) {
        if (!g->train_data[0]) return vlm_errorf(err, VLM_ERR_ARG, "%s records no training data: pass --real-data", o->ckpt);
        o->real = g->train_data;
        fprintf(stderr, "generate eval: real images from the training data %s\n", o->real);
    }
    if (g->cond != VLM_GEN_TEXT)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: conditional accuracy needs a text-conditioned generator", o->ckpt);
    if ((st = vlm_classifier_load(o->clf_path, clf, NULL, err))) return st;
    *have_clf = 1;
    if ((st = vlm_lines_load(o->classnames, names, K, err))) return st;
    if (*K != clf->cfg.head.n_classes)
        return vlm_errorf(err, VLM_ERR_ARG, "%s has %d class names, the classifier %s has %d classes", o->classnames, *K,
                          o->clf_path, clf->cfg.head.n_classes);
    return vlm_gen_fill_prompts(o->tmpl ? o->tmpl : g->template_, *names, *K, prompts, err);
}

static int cmd_generate_eval(int argc, char **argv) {
    const char *cmd = "generate eval";
    eval_cli o;
    vlm_error err = {0};
    int pr = eval_parse(argc, argv, &o, &err);
    if (pr) return cli_parse_exit(pr, cmd, eval_usage, &err);
    int rc = 1, have_clf = 0, have_guide = 0, K = 0;
    vlm_gen g, guide;
    memset(&g, 0, sizeof g);
    vlm_classifier clf;
    char **names = NULL;
    vlm_strvec prompts = {0};
    uint8_t *rgb = NULL, *ra = NULL, *rb = NULL;
    gen_metrics m = {0};
    double t0 = vlm_now();
    if (eval_load(&o, &g, &clf, &have_clf, &names, &K, &prompts, &err)) goto done;
    const int S = g.dit.cfg.image_size;
    const int64_t N = (int64_t)K * o.npc, P = (int64_t)S * S * 3;
    ra = malloc((size_t)(N * P)), rb = malloc((size_t)(N * P)), rgb = malloc((size_t)(N * P));
    if (!ra || !rb || !rgb) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto done;
    }
    if (load_real_pairs(o.real, names, K, o.npc, S, ra, rb, &err)) goto done;
    vlm_gen_sample_opts so;
    sample_opts_from(&o.sf, &so);
    if (load_guide(&o.sf, &guide, &have_guide, &so, &err)) goto done;
    double tg = vlm_now();
    if (sample_per_class(&g, &prompts, o.npc, &so, rgb, &err)) goto done;
    tg = vlm_now() - tg;
    if (measure(&g, &clf, rgb, ra, rb, K, o.npc, &m, &err)) goto done;
    if (o.grid && write_class_grid(o.grid, rgb, K, o.npc, S, &prompts, &err)) goto done;
    fprintf(stderr, "generate eval: %d classes x %lld images, %s %lld steps, guidance %g: sampling %.1f s, total %.1f s\n", K,
            o.npc, o.sf.sampler, o.sf.steps, o.sf.guidance, tg, vlm_now() - t0);
    eval_report(&o, &prompts, K, &m, have_guide);
    rc = 0;
done:
    if (rc) cli_fail(cmd, &err);
    gen_metrics_free(&m);
    vlm_gen_free(&g);
    if (have_guide) vlm_gen_free(&guide);
    if (have_clf) vlm_classifier_free(&clf);
    if (names) vlm_strlist_free(names, K);
    vlm_strvec_free(&prompts);
    free(rgb), free(ra), free(rb);
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
    return cli_usagef("generate", "expected train, sample or eval (got %s); see vlm generate --help", sub ? sub : "nothing");
}
