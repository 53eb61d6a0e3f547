// `vlm pretrain`: contrastive CLIP pretraining on image-caption pairs with
// open_clip's flags, checkpoints/resume, logs, a loss-curve PNG and
// retrieval metrics on a validation set.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "train/plot.h"
#include "cli/train_common.h"
#include "eval/embed.h"
#include "core/optim.h"
#include "data/loader.h"
#include "fusion/checkpoint.h"
#include "eval/retrieval.h"
#include "losses/contrastive.h"

static const char *usage =
    "usage: vlm pretrain --train-data DATA [options]\n"
    "data:\n"
    "  --train-data PATH        manifest (.csv/.tsv), webdataset shards ('dir/{0000..0009}.tar'), or 'synthetic'\n"
    "  --val-data PATH          retrieval evaluation set (image-caption pairs)\n"
    "  --dataset-type T         csv | webdataset | synthetic | auto (default auto)\n"
    "  --csv-img-key K          image column (default filepath)\n"
    "  --csv-caption-key K      caption column (default title)\n"
    "  --csv-separator C        column separator (default tab; '\\t' or ',' etc.)\n"
    "  --train-num-samples N    samples per epoch for synthetic data (default 4096)\n"
    "  --workers N              decode threads (default 2)\n"
    "  --no-augment             eval transform for training images (default: RandomResizedCrop 0.9-1)\n"
    "  --composite R,G,B        composite transparent images over this colour (default: drop alpha, as PIL)\n"
    "model:\n"
    "  --model NAME|JSON        tiny | small | ViT-S-16 | ViT-S-32 | ViT-B-32 | config file (default tiny)\n"
    "  --pretrained W           start from weights in OpenAI state_dict names (a converted OpenAI/open_clip\n"
    "                           checkpoint or a vlm model file; shapes must match --model)\n"
    "  --tokenizer FILE         BPE merges file (CLIP format, .gz ok); default: train one on the captions\n"
    "  --patch-dropout P        fraction of patch tokens dropped while training (default 0)\n"
    "  --siglip                 SigLIP sigmoid loss instead of InfoNCE\n"
    "  --lock-image / --lock-text   freeze a tower\n"
    "optimisation:\n"
    "  --batch-size B (64)  --epochs E (1)  --lr LR (5e-4)  --wd WD (0.2)  --beta1 (0.9)  --beta2 (0.98)\n"
    "  --eps (1e-6)  --warmup STEPS (100)  --lr-scheduler cosine|const|const-cooldown (cosine)\n"
    "  --epochs-cooldown E  --lr-cooldown-end LR  --lr-cooldown-power P   (const-cooldown)\n"
    "  --grad-clip-norm N (1.0; 0 = off)  --accum-freq K (1; features cached, negatives from all K batches)\n"
    "  --seed S (0)  --max-steps N  --max-minutes M\n"
    "  --time-schedule          with --max-minutes: after warmup the cosine follows elapsed time / budget, so\n"
    "                           the schedule fits the budget on any machine (not bit-reproducible on resume)\n"
    "checkpoints and logs:\n"
    "  --logs DIR (./logs)  --name NAME (default: <model>-b<B>-s<seed>)\n"
    "  --save-frequency E (1: epoch_N every E epochs)  --save-every-steps N (200: epoch_latest)\n"
    "  --keep K (3 epoch files)  --resume latest|STATE_FILE  --log-every N (10)\n"
    "  --stop-at-step N         stop cleanly (with a checkpoint) at step N without changing the schedule\n"
    "data-parallel (mpirun -np N vlm pretrain ..., an MPI build):\n"
    "  --batch-size is per rank (global batch N x B); each rank reads its shard; features are gathered\n"
    "  with gradients so the loss is the global batch's; rank 0 writes logs and checkpoints.\n"
    "  --dist-timeout S (300)   a rank waiting longer than S seconds for the others stops the job\n"
    "                           (validation runs on rank 0 alone: S must exceed its duration)\n"
    "Resuming continues mid-epoch at the next sample; pass the same options as the original run (under\n"
    "mpirun any world size that divides the global batch, with --batch-size = global batch / ranks).\n";

typedef struct {
    const char *train, *val, *dtype, *img_key, *cap_key, *model, *tokenizer, *logs, *name, *resume, *sched, *pretrained;
    char sep;
    long long batch, epochs, warmup, accum, seed, workers, max_steps, save_freq, save_every, keep, log_every, nsynth, stop_at;
    double lr, wd, beta1, beta2, eps, clip, max_minutes, patch_dropout, cooldown_epochs, cooldown_end, cooldown_power;
    cli_dist_opts dist;
    int siglip, lock_image, lock_text, json, no_augment, time_schedule;
    vlm_decode_opts dec;
} opts;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int parse(int argc, char **argv, opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->dtype = "auto"; o->img_key = "filepath"; o->cap_key = "title"; o->model = "tiny"; o->logs = "./logs";
    o->sched = "cosine"; o->sep = '\t';
    o->batch = 64; o->epochs = 1; o->warmup = 100; o->accum = 1; o->workers = 2; o->save_freq = 1; o->save_every = 200;
    o->keep = 3; o->log_every = 10; o->nsynth = 4096;
    vlm_decode_opts_default(&o->dec);
    cli_dist_opts_default(&o->dist);
    o->lr = 5e-4; o->wd = 0.2; o->beta1 = 0.9; o->beta2 = 0.98; o->eps = 1e-6; o->clip = 1.0; o->cooldown_power = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(flag, field) if (!strcmp(a, flag)) { if (!v) goto need; o->field = v; i++; continue; }
#define INT(flag, field, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_int(flag, v, lo, hi, &o->field, err)) return -1; i++; continue; }
#define FLT(flag, field, lo, hi) if (!strcmp(a, flag)) { if (!v) goto need; if (cli_parse_float(flag, v, lo, hi, &o->field, err)) return -1; i++; continue; }
#define FLAG(flag, field) if (!strcmp(a, flag)) { o->field = 1; continue; }
        STR("--train-data", train) STR("--val-data", val) STR("--dataset-type", dtype) STR("--csv-img-key", img_key)
        STR("--csv-caption-key", cap_key) STR("--model", model) STR("--tokenizer", tokenizer) STR("--logs", logs)
        STR("--name", name) STR("--resume", resume) STR("--lr-scheduler", sched) STR("--pretrained", pretrained)
        INT("--batch-size", batch, 1, 1 << 20) INT("--epochs", epochs, 1, 1 << 20) INT("--warmup", warmup, 0, 1LL << 40)
        INT("--accum-freq", accum, 1, 1024) INT("--seed", seed, 0, INT64_MAX) INT("--workers", workers, 1, 256)
        INT("--max-steps", max_steps, 1, 1LL << 40) INT("--save-frequency", save_freq, 1, 1 << 20)
        INT("--save-every-steps", save_every, 1, 1LL << 40) INT("--keep", keep, 1, 1 << 20)
        INT("--log-every", log_every, 1, 1 << 30) INT("--stop-at-step", stop_at, 1, 1LL << 40) INT("--train-num-samples", nsynth, 1, 1LL << 40)
        FLT("--lr", lr, 0, 10) FLT("--wd", wd, 0, 10) FLT("--beta1", beta1, 0, 0.999999) FLT("--beta2", beta2, 0, 0.9999999)
        FLT("--eps", eps, 1e-30, 1) FLT("--grad-clip-norm", clip, 0, 1e9) FLT("--max-minutes", max_minutes, 0, 1e9)
        FLT("--patch-dropout", patch_dropout, 0, 0.95) FLT("--epochs-cooldown", cooldown_epochs, 0, 1e9)
        FLT("--lr-cooldown-end", cooldown_end, 0, 10) FLT("--lr-cooldown-power", cooldown_power, 0.01, 100)
        FLAG("--siglip", siglip) FLAG("--lock-image", lock_image) FLAG("--lock-text", lock_text) FLAG("--json", json)
        FLAG("--no-augment", no_augment) FLAG("--time-schedule", time_schedule)
        if (!strcmp(a, "--composite")) {
            if (!v) goto need;
            if (cli_parse_composite(v, &o->dec, err)) return -1;
            i++;
            continue;
        }
        int dr = cli_dist_parse_opt(a, v, &o->dist, err); // --dist-timeout, --debug-fault
        if (dr < 0) return -1;
        if (dr) { i++; continue; }
        if (!strcmp(a, "--csv-separator")) {
            if (!v) goto need;
            if (!strcmp(v, "\\t") || !strcmp(v, "tab")) o->sep = '\t';
            else if (strlen(v) == 1) o->sep = v[0];
            else { vlm_errorf(err, VLM_ERR_ARG, "--csv-separator: one character expected, got '%s'", v); return -1; }
            i++;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        vlm_errorf(err, VLM_ERR_ARG, "unknown option '%s' (see vlm pretrain --help)", a);
        return -1;
    need:
        vlm_errorf(err, VLM_ERR_ARG, "option %s needs a value", a);
        return -1;
    }
    if (!o->train) { vlm_errorf(err, VLM_ERR_ARG, "--train-data is required (see vlm pretrain --help)"); return -1; }
    if (strcmp(o->dtype, "auto") && strcmp(o->dtype, "csv") && strcmp(o->dtype, "webdataset") && strcmp(o->dtype, "synthetic")) {
        vlm_errorf(err, VLM_ERR_ARG, "--dataset-type must be csv, webdataset, synthetic or auto, not '%s'", o->dtype);
        return -1;
    }
    if (!strcmp(o->train, "synthetic")) o->dtype = "synthetic";
    vlm_sched_kind k;
    if (vlm_sched_parse(o->sched, &k)) { vlm_errorf(err, VLM_ERR_ARG, "--lr-scheduler must be cosine, const or const-cooldown"); return -1; }
    if (o->time_schedule && o->max_minutes <= 0) { vlm_errorf(err, VLM_ERR_ARG, "--time-schedule needs --max-minutes"); return -1; }
    if (o->lock_image && o->lock_text) { vlm_errorf(err, VLM_ERR_ARG, "--lock-image and --lock-text together leave nothing to train"); return -1; }
    return 0;
}

// ---- synthetic data: random images, captions from 100 "classes" --------------
// first: this rank's stream position; rank R of W takes the global stream's
// samples R, R + W, ... of each epoch (as the loader shards), so a global batch
// holds the same samples at every world size.
static void synth_batch(int64_t seed, int64_t first, int64_t epoch_size, int R, int W, int B, int S, float *images,
                        char (*caps)[256], const char **cptr) {
    for (int b = 0; b < B; b++) {
        vlm_rng r;
        int64_t q = first + b, idx = (q / epoch_size) * epoch_size * W + (q % epoch_size) * W + R;
        vlm_rng_init(&r, (uint64_t)seed, VLM_RNG_DATA, (uint64_t)idx);
        int cls = (int)(idx * 2654435761u % 100);
        for (int64_t i = 0; i < 3 * S * S; i++) images[(int64_t)b * 3 * S * S + i] = 0.5f * vlm_rng_normal(&r) + 0.02f * (float)(cls % 10);
        snprintf(caps[b], sizeof caps[b], "a synthetic picture of thing %d", cls);
        cptr[b] = caps[b];
    }
}

// ---- helpers ---------------------------------------------------------------------
static vlm_tensor *wrap_images(vlm_ctx *c, float *p, int B, int S) {
    int64_t sh[4] = {B, 3, S, S};
    return vlm_tensor_wrap(c, VLM_F32, 4, sh, p, NULL);
}

static vlm_tensor *wrap_ids(vlm_ctx *c, int32_t *p, int B, int T) {
    int64_t sh[2] = {B, T};
    return vlm_tensor_wrap(c, VLM_I32, 2, sh, p, NULL);
}

static vlm_tensor *loss_of(vlm_ctx *c, vlm_clip *m, vlm_tensor *fi, vlm_tensor *ft, const int32_t *groups, int siglip) {
    if (siglip) {
        vlm_tensor *scale = vlm_op_act(c, vlm_params_get(&m->ps, m->logit_scale), VLM_ACT_EXP);
        return vlm_loss_siglip(c, vlm_op_l2norm(c, fi), vlm_op_l2norm(c, ft), scale, vlm_params_get(&m->ps, m->logit_bias),
                               groups);
    }
    return vlm_loss_clip(c, vlm_clip_logits(c, m, fi, ft), groups);
}

// The data-parallel loss: this rank's normalised features against every rank's
// (gathered with gradients), open_clip's gather_with_grad + local_loss. The
// mean over ranks equals loss_of over the global batch. groups: G ids.
static vlm_tensor *loss_dist(vlm_ctx *c, vlm_clip *m, vlm_tensor *fi, vlm_tensor *ft, const int32_t *groups, int siglip,
                             vlm_dist *d) {
    vlm_tensor *a = vlm_op_l2norm(c, fi), *b = vlm_op_l2norm(c, ft);      // [B, E]
    if (!a || !b) return NULL;
    int64_t off = (int64_t)d->rank * a->shape[0];
    vlm_tensor *scale = vlm_op_act(c, vlm_params_get(&m->ps, m->logit_scale), VLM_ACT_EXP);
    vlm_tensor *all_t = vlm_op_all_gather(c, b, d);                         // [G, E]
    if (siglip) return vlm_loss_siglip_local(c, a, all_t, scale, vlm_params_get(&m->ps, m->logit_bias), off, groups);
    vlm_tensor *all_i = vlm_op_all_gather(c, a, d);                         // [G, E]
    vlm_tensor *li = vlm_op_mul(c, vlm_op_matmul(c, a, vlm_view_transpose(c, all_t, 0, 1)), scale); // [B, G]
    vlm_tensor *lt = vlm_op_mul(c, vlm_op_matmul(c, b, vlm_view_transpose(c, all_i, 0, 1)), scale); // [B, G]
    return vlm_loss_clip_local(c, li, lt, off, groups);
}

static void path_join(char *out, size_t n, const char *a, const char *b) { snprintf(out, n, "%s/%s", a, b); }

static vlm_status evaluate(vlm_clip *m, const vlm_dataset *val, vlm_tokenizer *tok, int batch, int workers,
                           const vlm_decode_opts *dec, vlm_retrieval *r, vlm_error *err) {
    float *img = NULL, *txt = NULL;
    int64_t *idx = NULL, n = 0;
    vlm_status st = vlm_clip_encode_dataset(m, val, tok, batch, workers, dec, &img, &txt, &idx, &n, err);
    if (st) return st;
    const char **caps = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    int32_t *groups = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) caps[i] = vlm_dataset_caption(val, idx[i]);
    vlm_group_ids(caps, n, groups);
    st = vlm_retrieval_eval(img, txt, n, m->cfg.embed_dim, groups, r, err);
    free(caps); free(groups); free(img); free(txt); free(idx);
    return st;
}

static void print_retrieval(FILE *f, const vlm_retrieval *r, int64_t step) {
    fprintf(f, "val step %" PRId64 ": n=%" PRId64 " image->text R@1 %.3f R@5 %.3f R@10 %.3f mean rank %.1f median %.0f | "
               "text->image R@1 %.3f R@5 %.3f R@10 %.3f mean rank %.1f median %.0f\n",
            step, r->n, r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank, r->t2i_r1, r->t2i_r5,
            r->t2i_r10, r->t2i_mean_rank, r->t2i_median_rank);
}

static void json_retrieval(FILE *f, const vlm_retrieval *r) {
    fprintf(f, "\"val_n\": %" PRId64 ", \"i2t_r1\": %.4f, \"i2t_r5\": %.4f, \"i2t_r10\": %.4f, \"i2t_mean_rank\": %.2f, "
               "\"i2t_median_rank\": %.1f, \"t2i_r1\": %.4f, \"t2i_r5\": %.4f, \"t2i_r10\": %.4f, \"t2i_mean_rank\": %.2f, "
               "\"t2i_median_rank\": %.1f",
            r->n, r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank, r->t2i_r1, r->t2i_r5, r->t2i_r10,
            r->t2i_mean_rank, r->t2i_median_rank);
}

int cmd_pretrain(int argc, char **argv) {
    opts o;
    vlm_error err = {0};
    int pr = parse(argc, argv, &o, &err);
    if (pr == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (pr) return cli_fail("pretrain", &err);
    const int synthetic = !strcmp(o.dtype, "synthetic");
    int rc = 1;
    vlm_clip m;
    memset(&m, 0, sizeof m);
    int have_model = 0, have_tok = 0, have_train = 0, have_val = 0;
    vlm_tokenizer tok;
    char *merges = NULL;
    vlm_dataset train, val;
    vlm_loader *L = NULL;
    vlm_ctx c;
    memset(&c, 0, sizeof c);
    float *imgbuf = NULL, *cache_i = NULL, *cache_t = NULL;
    int32_t *idbuf = NULL, *groups = NULL;
    char (*capbuf)[256] = NULL;
    const char **capptr = NULL;
    double *curve_x = NULL, *curve_y = NULL;
    FILE *metrics = NULL;
    char *args_json = NULL;
    vlm_dist *D = cli_dist_setup(&o.dist);
    const int R = D->rank, W = D->world, io = R == 0; // only rank 0 writes files and logs
    if (W > 1 && o.accum > 1) {
        vlm_errorf(&err, VLM_ERR_ARG, "--accum-freq > 1 does not combine with mpirun yet (raise --batch-size or the ranks)");
        goto fail;
    }

    // ---- run folder ----
    char name[512], path[1300];
    if (o.name) snprintf(name, sizeof name, "%s", o.name);
    else {
        const char *base = strrchr(o.model, '/') ? strrchr(o.model, '/') + 1 : o.model;
        snprintf(name, sizeof name, "%s-b%lld-s%lld", base, o.batch, o.seed);
    }
    cli_run run;
    if (cli_run_init(&run, o.logs, name, o.resume, io, &err)) goto fail;

    // ---- datasets ----
    // Training and validation sets: image-caption pairs with the --csv-* columns.
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.img_key = o.img_key;
    dso.caption_key = o.cap_key;
    dso.sep = o.sep;
    dso.require_caption = 1;
    if (!synthetic) {
        if (vlm_dataset_open(&train, o.train, &dso, &err)) goto fail;
        have_train = 1;
        if (!strcmp(o.dtype, "csv") && train.kind != VLM_DS_MANIFEST) {
            vlm_errorf(&err, VLM_ERR_ARG, "--dataset-type csv but %s is a %s", o.train, vlm_dataset_kind_name(train.kind));
            goto fail;
        }
        if (!strcmp(o.dtype, "webdataset") && train.kind != VLM_DS_WEBDATASET) {
            vlm_errorf(&err, VLM_ERR_ARG, "--dataset-type webdataset but %s is a %s", o.train, vlm_dataset_kind_name(train.kind));
            goto fail;
        }
        if (io && train.n_bad)
            fprintf(stderr, "pretrain: %" PRId64 " malformed entries skipped in %s (first: %s)\n", train.n_bad, o.train,
                    train.bad[0] ? train.bad[0] : "?");
    }
    if (o.val) {
        if (vlm_dataset_open(&val, o.val, &dso, &err)) goto fail;
        have_val = 1;
    }

    // ---- model + tokenizer (fresh or from the training state) ----
    if (run.resume[0]) {
        if (vlm_ckpt_load_model(run.resume, &m, &merges, &err)) goto fail;
        have_model = 1;
        if (!merges) {
            vlm_errorf(&err, VLM_ERR_FORMAT, "%s: checkpoint carries no tokenizer", run.resume);
            goto fail;
        }
    } else {
        vlm_clip_cfg cfg;
        if (vlm_clip_cfg_load(o.model, &cfg, &err)) goto fail;
        cfg.siglip = o.siglip;
        if (o.patch_dropout > 0) cfg.vision.patch_dropout = (float)o.patch_dropout;
        if (vlm_clip_init(&m, &cfg, &err)) goto fail;
        have_model = 1;
        vlm_clip_init_weights(&m, (uint64_t)o.seed);
        if (o.pretrained && vlm_clip_load_weights(&m, o.pretrained, &err)) goto fail;
        if (o.tokenizer) {
            if (cli_read_merges(o.tokenizer, &merges, &err)) goto fail;
        } else {
            // Train a BPE vocabulary on the training captions (model's vocab size).
            int64_t n = synthetic ? 100 : train.n;
            const char **texts = malloc(sizeof(char *) * (size_t)n);
            size_t *lens = malloc(sizeof(size_t) * (size_t)n);
            char (*sbuf)[64] = synthetic ? malloc(64 * (size_t)n) : NULL;
            for (int64_t i = 0; i < n; i++) {
                if (synthetic) {
                    snprintf(sbuf[i], 64, "a synthetic picture of thing %d", (int)i);
                    texts[i] = sbuf[i];
                } else
                    texts[i] = vlm_dataset_caption(&train, i) ? vlm_dataset_caption(&train, i) : "";
                lens[i] = strlen(texts[i]);
            }
            size_t mlen = 0;
            vlm_bpe_train_info info;
            double t0 = cli_now();
            vlm_status st = vlm_bpe_train_mem(texts, lens, (int)n, m.cfg.text.vocab_size, &merges, &mlen, &info, &err);
            free(texts); free(lens); free(sbuf);
            if (st) goto fail;
            if (io)
                fprintf(stderr, "pretrain: trained a BPE vocabulary of %d tokens (%d merges%s) on %" PRId64 " captions in %.1fs\n",
                    info.vocab_size, info.n_merges, info.stopped_early ? ", corpus exhausted" : "", n, cli_now() - t0);
        }
    }
    if (cli_tokenizer_from_text(&tok, merges, &err)) goto fail;
    have_tok = 1;
    if (vlm_tokenizer_vocab_size(&tok) > m.cfg.text.vocab_size) {
        vlm_errorf(&err, VLM_ERR_ARG, "tokenizer has %d tokens but the model's vocab_size is %d",
                   vlm_tokenizer_vocab_size(&tok), m.cfg.text.vocab_size);
        goto fail;
    }
    path_join(path, sizeof path, run.dir, "vocab.txt");
    if (io) {
        FILE *vf = fopen(path, "w");
        if (vf) {
            fputs(merges, vf);
            fclose(vf);
        }
    }
    if (o.lock_image || o.lock_text)
        for (int i = 0; i < m.ps.n; i++) {
            int is_visual = !strncmp(m.ps.p[i].name, "visual.", 7);
            int is_scale = !strcmp(m.ps.p[i].name, "logit_scale") || !strcmp(m.ps.p[i].name, "logit_bias");
            if (!is_scale && ((o.lock_image && is_visual) || (o.lock_text && !is_visual))) vlm_params_set_frozen(&m.ps, i, 1);
        }

    // ---- optimiser, state ----
    vlm_adamw opt;
    vlm_adamw_cfg ac = {(float)o.lr, (float)o.beta1, (float)o.beta2, (float)o.eps, (float)o.wd};
    if (vlm_adamw_init(&opt, &m.ps, ac, &err)) goto fail;
    vlm_train_state ts;
    memset(&ts, 0, sizeof ts);
    if (vlm_ctx_init(&c, 64u << 20, (uint64_t)o.seed, &err)) goto fail;
    if (run.resume[0]) {
        if (vlm_ckpt_load_state(run.resume, &m, &ts, &err)) goto fail;
        opt.step = ts.adam_step;
        memcpy(c.dropout_rng.key, ts.rng_key, sizeof ts.rng_key);
        c.dropout_rng.counter = ts.rng_counter;
        memcpy(c.dropout_rng.buf, ts.rng_buf, sizeof ts.rng_buf);
        c.dropout_rng.buf_pos = ts.rng_pos;
        if (cli_dist_check_resume(D, ts.global_batch, ts.loader_index, o.batch * o.accum, run.resume, &err)) goto fail;
        if (io)
            fprintf(stderr, "pretrain: resumed from %s at step %" PRId64 " (epoch %" PRId64 ", sample %" PRId64 ")\n",
                    run.resume, ts.step, ts.loader_epoch, ts.loader_index);
    }

    // ---- loader ----
    const int B = (int)o.batch, K = (int)o.accum, S = m.cfg.vision.image_size, T = m.cfg.text.context_length;
    int64_t epoch_size;
    if (!synthetic) {
        vlm_loader_opts lo;
        vlm_loader_opts_default(&lo, S, B);
        lo.workers = (int)o.workers;
        lo.seed = (uint64_t)o.seed;
        lo.train = !o.no_augment;
        lo.caption_max = 256;
        lo.decode = o.dec;
        lo.start.epoch = ts.loader_epoch;
        lo.start.index = ts.loader_index / W; // the state counts the global stream
        lo.rank = R;
        lo.world_size = W;
        if (vlm_loader_open(&L, &train, &lo, &err)) goto fail;
        epoch_size = vlm_loader_epoch_size(L);
    } else
        epoch_size = o.nsynth / W;
    if (cli_dist_sync_params(D, &m.ps, &err)) goto fail;
    int64_t steps_per_epoch = epoch_size / ((int64_t)B * K);
    if (steps_per_epoch < 1) {
        vlm_errorf(&err, VLM_ERR_ARG, "an epoch has %" PRId64 " samples per rank, fewer than batch %d x accum %d", epoch_size, B, K);
        goto fail;
    }
    int64_t total_steps = steps_per_epoch * o.epochs;
    if (o.time_schedule && !o.max_steps) total_steps = INT64_MAX / 4; // the clock ends the run
    if (o.max_steps && o.max_steps < total_steps) total_steps = o.max_steps;
    vlm_sched sched = {VLM_SCHED_COSINE, (float)o.lr, o.warmup, total_steps, 0, (float)o.cooldown_power, (float)o.cooldown_end};
    vlm_sched_parse(o.sched, &sched.kind);
    if (sched.kind == VLM_SCHED_CONST_COOLDOWN)
        sched.cooldown = o.cooldown_epochs > 0 ? (int64_t)(o.cooldown_epochs * (double)steps_per_epoch) : total_steps / 5;

    imgbuf = malloc(sizeof(float) * (size_t)K * B * 3 * S * S);
    idbuf = malloc(sizeof(int32_t) * (size_t)K * B * T);
    groups = malloc(sizeof(int32_t) * (size_t)K * B * W);
    // W > 1: every rank's captions (gathered behind this rank's B), for the global group ids
    capbuf = malloc(sizeof(*capbuf) * (size_t)K * B * (W > 1 ? W + 1 : 1));
    capptr = malloc(sizeof(char *) * (size_t)K * B * W);
    if (K > 1) {
        cache_i = malloc(sizeof(float) * (size_t)K * B * m.cfg.embed_dim);
        cache_t = malloc(sizeof(float) * (size_t)K * B * m.cfg.embed_dim);
    }
    int64_t curve_cap = total_steps + 16 < 4096 ? total_steps + 16 : 4096, curve_n = 0;
    curve_x = malloc(sizeof(double) * (size_t)curve_cap);
    curve_y = malloc(sizeof(double) * (size_t)curve_cap);
    if (!imgbuf || !idbuf || !groups || !capbuf || !capptr || !curve_x || !curve_y || (K > 1 && (!cache_i || !cache_t))) {
        vlm_errorf(&err, VLM_ERR_OOM, "pretrain: out of memory for batch buffers");
        goto fail;
    }
    if (io && cli_run_open_metrics(&run, &metrics, &err)) goto fail;
    // Reload the loss curve of a resumed run from its metrics log.
    if (io && run.resume[0]) {
        FILE *mf = fopen(run.metrics, "r");
        char line[4096];
        while (mf && fgets(line, sizeof line, mf) && curve_n < curve_cap) {
            long long stp;
            double lv;
            char *ps = strstr(line, "\"step\": "), *pl = strstr(line, "\"loss\": ");
            if (ps && pl && sscanf(ps + 8, "%lld", &stp) == 1 && sscanf(pl + 8, "%lf", &lv) == 1 && stp <= ts.step) {
                curve_x[curve_n] = (double)stp;
                curve_y[curve_n++] = lv;
            }
        }
        if (mf) fclose(mf);
    }
    {
        char *cfgj = vlm_clip_cfg_to_json(&m.cfg);
        size_t n = strlen(cfgj) + 1024;
        args_json = malloc(n);
        snprintf(args_json, n, "{\"batch_size\": %lld, \"accum_freq\": %lld, \"lr\": %g, \"wd\": %g, \"epochs\": %lld, "
                               "\"warmup\": %lld, \"seed\": %lld, \"siglip\": %d, \"model\": %s}",
                 o.batch, o.accum, o.lr, o.wd, o.epochs, o.warmup, o.seed, o.siglip, cfgj);
        free(cfgj);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (io && W > 1)
        fprintf(stderr, "pretrain: data-parallel over %d ranks: %d pairs per rank, global batch %d\n", W, B * K, B * K * W);
    if (io && o.time_schedule && !o.max_steps)
        fprintf(stderr, "pretrain: %s, %lld params, %" PRId64 " samples/epoch, steps of %d x %d pairs for %.1f minutes, run dir %s\n",
                o.model, (long long)m.ps.total, epoch_size * W, B, K, o.max_minutes, run.dir);
    else if (io)
        fprintf(stderr, "pretrain: %s, %lld params, %" PRId64 " samples/epoch, %" PRId64 " steps of %d x %d pairs, run dir %s\n",
                o.model, (long long)m.ps.total, epoch_size * W, total_steps, B, K, run.dir);

    // ---- training loop ----
    double t_start = cli_now() - ts.elapsed_s, t_last = cli_now(), last_val_t = 0;
    int64_t pairs_since = 0, synth_pos = ts.loader_epoch * epoch_size + ts.loader_index / W;
    int64_t cur_epoch = ts.loader_epoch;
    vlm_loader_pos next_pos = {ts.loader_epoch, ts.loader_index};
    const int tty = isatty(2);
    float loss_v = ts.last_loss;
    const char *stop_reason = "done";
    vlm_retrieval last_r;
    int have_r = 0;
    // W > 1: the text tower's parameters come first in the store and get their
    // last gradient before the image tower's backward runs, so their allreduce
    // overlaps that backward.
    cli_grad_overlap ov = {.d = D, .ps = &m.ps};
    int64_t overlapped = 0;
    for (int i = 0; i < m.ps.n; i++)
        if (!strncmp(m.ps.p[i].name, "visual.", 7)) {
            ov.early = m.ps.p[i].offset;
            break;
        }
    if (W > 1 && K == 1 && ov.early > 0) {
        c.backward_hook = cli_grad_overlap_hook;
        c.backward_hook_user = &ov;
    }
    while (ts.step < total_steps) {
        cli_dist_fault(&o.dist, D, ts.step);
        // Gather K micro-batches (copied: the loader reuses its buffers).
        int64_t batch_epoch = cur_epoch;
        for (int j = 0; j < K; j++) {
            float *ib = imgbuf + (int64_t)j * B * 3 * S * S;
            if (synthetic) {
                if (synth_pos % epoch_size + B > epoch_size) synth_pos += epoch_size - synth_pos % epoch_size;
                synth_batch(o.seed, synth_pos, epoch_size, R, W, B, S, ib, capbuf + (int64_t)j * B, capptr + (int64_t)j * B);
                batch_epoch = synth_pos / epoch_size;
                synth_pos += B;
                next_pos.epoch = synth_pos / epoch_size;
                next_pos.index = synth_pos % epoch_size;
            } else {
                vlm_batch b;
                if (vlm_loader_next(L, &b, &err)) goto fail;
                if (b.n < B) {
                    vlm_errorf(&err, VLM_ERR_STATE, "loader returned a short batch (%d of %d)", b.n, B);
                    goto fail;
                }
                memcpy(ib, b.images, sizeof(float) * (size_t)B * 3 * S * S);
                for (int i = 0; i < B; i++) {
                    snprintf(capbuf[j * B + i], sizeof capbuf[0], "%s", b.captions[i]);
                    capptr[j * B + i] = capbuf[j * B + i];
                }
                batch_epoch = b.pos.epoch;
                next_pos = b.next;
            }
        }
        if (vlm_tokenizer_encode_batch(&tok, capptr, K * B, T, idbuf, &err)) goto fail;
        if (W > 1) { // group ids over the global batch, in rank order (the gathered features' order)
            if (vlm_dist_allgather(D, capbuf[0], (int64_t)B * sizeof capbuf[0], capbuf[B], "caption all-gather", &err))
                goto fail;
            memmove(capbuf[0], capbuf[B], (size_t)B * W * sizeof capbuf[0]);
            for (int i = 0; i < B * W; i++) capptr[i] = capbuf[i];
        }
        vlm_group_ids(capptr, (int64_t)K * B * W, groups); // duplicate captions are not negatives

        // Forward/backward. With K > 1, open_clip's feature caching: a no-grad
        // pass caches every micro-batch's features, then each micro-batch is
        // re-encoded with grad and the loss runs over all K*B pairs.
        vlm_params_zero_grad(&m.ps);
        vlm_rng pd;
        double step_loss = 0;
        int E = m.cfg.embed_dim;
        if (K > 1) {
            for (int j = 0; j < K; j++) {
                vlm_ctx_reset(&c);
                c.grad_enabled = 0;
                vlm_rng_init(&pd, (uint64_t)o.seed, VLM_RNG_DROPOUT, (uint64_t)(ts.step * K + j));
                vlm_tensor *fi = vlm_clip_encode_image(&c, &m, wrap_images(&c, imgbuf + (int64_t)j * B * 3 * S * S, B, S), &pd);
                vlm_tensor *ft = vlm_clip_encode_text(&c, &m, wrap_ids(&c, idbuf + (int64_t)j * B * T, B, T));
                if (!fi || !ft) goto ctx_fail;
                memcpy(cache_i + (int64_t)j * B * E, vlm_f32(fi), sizeof(float) * (size_t)B * E);
                memcpy(cache_t + (int64_t)j * B * E, vlm_f32(ft), sizeof(float) * (size_t)B * E);
            }
            c.grad_enabled = 1;
        }
        for (int j = 0; j < K; j++) {
            vlm_ctx_reset(&c);
            vlm_rng_init(&pd, (uint64_t)o.seed, VLM_RNG_DROPOUT, (uint64_t)((ts.step * K + j) * W + R));
            vlm_tensor *fi = vlm_clip_encode_image(&c, &m, wrap_images(&c, imgbuf + (int64_t)j * B * 3 * S * S, B, S), &pd);
            ov.boundary = c.tape; // the text tower's nodes come after this one
            ov.started = 0;
            vlm_tensor *ft = vlm_clip_encode_text(&c, &m, wrap_ids(&c, idbuf + (int64_t)j * B * T, B, T));
            if (K > 1 && fi && ft) {
                vlm_tensor *pi[3], *pt[3];
                int np = 0;
                int64_t sb[2] = {(int64_t)j * B, E}, sa[2] = {(int64_t)(K - 1 - j) * B, E};
                if (j > 0) { pi[np] = vlm_tensor_wrap(&c, VLM_F32, 2, sb, cache_i, NULL); pt[np++] = vlm_tensor_wrap(&c, VLM_F32, 2, sb, cache_t, NULL); }
                pi[np] = fi;
                pt[np++] = ft;
                if (j < K - 1) {
                    pi[np] = vlm_tensor_wrap(&c, VLM_F32, 2, sa, cache_i + (int64_t)(j + 1) * B * E, NULL);
                    pt[np++] = vlm_tensor_wrap(&c, VLM_F32, 2, sa, cache_t + (int64_t)(j + 1) * B * E, NULL);
                }
                fi = vlm_op_concat(&c, pi, np, 0);
                ft = vlm_op_concat(&c, pt, np, 0);
            }
            vlm_tensor *l = W > 1 ? loss_dist(&c, &m, fi, ft, groups, o.siglip, D) : loss_of(&c, &m, fi, ft, groups, o.siglip);
            if (!l || vlm_backward(&c, l)) goto ctx_fail;
            step_loss = vlm_f32(l)[0];
        }
        // Data-parallel: the global batch's gradient and loss, one clock and one
        // stop decision for every rank (rank 0's time, any rank's signal).
        if (ov.st) {
            err = ov.err;
            goto fail;
        }
        overlapped += ov.started;
        double clock_s;
        int stop_sig = g_stop != 0;
        if (cli_dist_step_end(D, &m.ps, ov.started ? ov.early : 0, t_start, &step_loss, &stop_sig, &clock_s, &err))
            goto fail;
        loss_v = (float)step_loss;
        if (!isfinite(loss_v) || !vlm_grads_finite(&m.ps)) {
            if (io)
                fprintf(stderr, "\npretrain: %s at step %" PRId64 " (lr %.3g); stopping. The last good checkpoint is %s\n",
                    isfinite(loss_v) ? "non-finite gradients" : "loss is NaN/Inf", ts.step, vlm_sched_lr(&sched, ts.step), run.state);
            rc = 3;
            goto cleanup;
        }
        if (o.clip > 0) vlm_clip_grad_norm(&m.ps, (float)o.clip);
        float lr = vlm_sched_lr(&sched, ts.step);
        if (o.time_schedule && ts.step >= o.warmup) { // cosine over the fraction of the time budget used
            double f = clock_s / (o.max_minutes * 60.0);
            f = f < 0 ? 0 : f > 1 ? 1 : f;
            lr = (float)(0.5 * (1.0 + cos(M_PI * f)) * o.lr);
        }
        vlm_adamw_step(&opt, &m.ps, lr);
        vlm_clip_clamp_logit_scale(&m);
        ts.step++;
        pairs_since += (int64_t)K * B * W;
        if (curve_n == curve_cap) { // grow the loss curve (rare; amortised)
            double *nx = realloc(curve_x, sizeof(double) * (size_t)curve_cap * 2), *ny = nx ? realloc(curve_y, sizeof(double) * (size_t)curve_cap * 2) : NULL;
            if (nx) curve_x = nx;
            if (ny) {
                curve_y = ny;
                curve_cap *= 2;
            }
        }
        if (curve_n < curve_cap) {
            curve_x[curve_n] = (double)ts.step;
            curve_y[curve_n++] = loss_v;
        }
        // ---- bookkeeping ----
        double now = cli_now();
        ts.elapsed_s = W > 1 ? clock_s : now - t_start; // W > 1: rank 0's clock on every rank
        ts.loader_epoch = next_pos.epoch;
        ts.loader_index = next_pos.index * W; // position in the global stream
        ts.global_batch = (int64_t)B * K * W;
        ts.epoch = next_pos.epoch;
        ts.adam_step = opt.step;
        ts.last_loss = loss_v;
        memcpy(ts.rng_key, c.dropout_rng.key, sizeof ts.rng_key);
        ts.rng_counter = c.dropout_rng.counter;
        memcpy(ts.rng_buf, c.dropout_rng.buf, sizeof ts.rng_buf);
        ts.rng_pos = c.dropout_rng.buf_pos;
        float scale = expf(vlm_f32(vlm_params_get(&m.ps, m.logit_scale))[0]);
        if (ts.step % o.log_every == 0 || ts.step == total_steps || ts.step == 1) {
            double pps = pairs_since / fmax(now - t_last, 1e-9);
            char eta[32];
            double eta_s = (double)(total_steps - ts.step) * (double)K * B * W / fmax(pps, 1e-9);
            if (o.max_minutes > 0 && o.max_minutes * 60.0 - ts.elapsed_s < eta_s) eta_s = o.max_minutes * 60.0 - ts.elapsed_s;
            cli_fmt_duration(eta_s, eta, sizeof eta);
            char tot[32] = "?";
            if (total_steps < INT64_MAX / 8) snprintf(tot, sizeof tot, "%" PRId64, total_steps);
            if (io)
                fprintf(stderr, "%sstep %" PRId64 "/%s | epoch %" PRId64 " | loss %.4f | lr %.3g | scale %.1f | %.0f pairs/s | ETA %s%s",
                    tty ? "\r" : "", ts.step, tot, batch_epoch, loss_v, lr, scale, pps, eta, tty ? "   " : "\n");
            if (metrics) {
                fprintf(metrics, "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.6f, \"lr\": %.6g, \"logit_scale\": %.4f, "
                                 "\"pairs_per_s\": %.1f, \"elapsed_s\": %.1f}\n",
                        ts.step, batch_epoch, loss_v, lr, scale, pps, ts.elapsed_s);
                fflush(metrics);
            }
            t_last = now;
            pairs_since = 0;
        }
        int epoch_done = next_pos.epoch > batch_epoch || next_pos.index + (int64_t)B * K > epoch_size;
        int out_of_time = o.max_minutes > 0 && ts.elapsed_s >= o.max_minutes * 60.0;
        int stop_here = o.stop_at && ts.step >= o.stop_at;
        int last = ts.step == total_steps || out_of_time || stop_sig || stop_here;
        if (epoch_done) cur_epoch = batch_epoch + 1;
        if (io && (ts.step % o.save_every == 0 || last || epoch_done)) {
            if (vlm_ckpt_save_state(run.state, &m, merges, &ts, args_json, &err) ||
                vlm_ckpt_save_model(run.model, &m, merges, ts.step, ts.epoch, &err))
                goto fail;
            path_join(path, sizeof path, run.dir, "loss.png");
            vlm_error perr;
            if (curve_n > 1 && vlm_plot_png(path, curve_x, curve_y, NULL, (int)curve_n, 640, 360, &perr))
                fprintf(stderr, "\npretrain: warning: %s\n", perr.msg);
        }
        if (io && epoch_done && (batch_epoch + 1) % o.save_freq == 0) {
            char fn[64];
            snprintf(fn, sizeof fn, "epoch_%" PRId64 ".safetensors", batch_epoch + 1);
            path_join(path, sizeof path, run.ckdir, fn);
            if (vlm_ckpt_save_model(path, &m, merges, ts.step, batch_epoch + 1, &err)) goto fail;
            int64_t old = batch_epoch + 1 - o.keep * o.save_freq;
            if (old >= 1) {
                snprintf(fn, sizeof fn, "epoch_%" PRId64 ".safetensors", old);
                path_join(path, sizeof path, run.ckdir, fn);
                unlink(path);
            }
        }
        if (io && have_val && (epoch_done || last)) { // other ranks wait at the next collective
            double t0 = cli_now();
            if (evaluate(&m, &val, &tok, B, (int)o.workers, &o.dec, &last_r, &err)) goto fail;
            have_r = 1;
            last_val_t = cli_now() - t0;
            if (tty) fputc('\n', stderr);
            print_retrieval(stderr, &last_r, ts.step);
            fprintf(metrics, "{\"step\": %" PRId64 ", \"epoch\": %" PRId64 ", ", ts.step, batch_epoch);
            json_retrieval(metrics, &last_r);
            fprintf(metrics, "}\n");
            fflush(metrics);
            t_start += last_val_t; // evaluation time does not count against the training budget
        }
        if (out_of_time) { stop_reason = "time budget reached"; break; }
        if (stop_sig) { stop_reason = "interrupted"; break; }
        if (stop_here) { stop_reason = "stopped at --stop-at-step"; break; }
    }
    if (tty) fputc('\n', stderr);
    if (L) {
        char summary[2048];
        vlm_loader_bad_summary(L, summary, sizeof summary);
        if (summary[0]) fprintf(stderr, "pretrain: %s%s\n", W > 1 ? (R ? "rank > 0: " : "rank 0: ") : "", summary);
    }
    if (!io) {
        rc = 0;
        goto cleanup;
    }
    if (W > 1)
        fprintf(stderr, "pretrain: %d ranks; rank 0 waited %.1f s in collectives (%.1f%% of %.1f s), %.1f MB sent; "
                        "text-tower gradients reduced during the image backward in %" PRId64 " steps\n", W,
                D->comm_s, 100.0 * D->comm_s / fmax(ts.elapsed_s, 1e-9), ts.elapsed_s, (double)D->comm_bytes / 1e6, overlapped);
    fprintf(stderr, "pretrain: %s after %" PRId64 " steps (%.1f min); checkpoint %s\n", stop_reason,
            ts.step, ts.elapsed_s / 60.0, run.model);
    printf("{\"steps\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.5f, \"minutes\": %.2f, \"pairs_seen\": %" PRId64,
           ts.step, ts.epoch, loss_v, ts.elapsed_s / 60.0, ts.step * (int64_t)K * B * W);
    if (have_r) {
        printf(", ");
        json_retrieval(stdout, &last_r);
    }
    printf(", \"checkpoint\": \"%s\"}\n", run.model);
    rc = 0;
    goto cleanup;
ctx_fail:
    err = c.err;
fail:
    if (err.msg[0]) cli_fail("pretrain", &err);
    rc = 1;
cleanup:
    if (metrics) fclose(metrics);
    if (L) vlm_loader_free(L);
    if (have_train) vlm_dataset_free(&train);
    if (have_val) vlm_dataset_free(&val);
    if (have_tok) vlm_tokenizer_free(&tok);
    if (have_model) vlm_clip_free(&m);
    if (c.arena.head) vlm_ctx_free(&c);
    free(merges); free(imgbuf); free(idbuf); free(groups); free(capbuf); free(capptr); free(cache_i); free(cache_t);
    free(curve_x); free(curve_y); free(args_json);
    return rc;
}
