// `vlm pretrain`: contrastive CLIP pretraining on image-caption pairs with
// open_clip's flags: the option table and a call to vlm_pretrain (train/pretrain.h).
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/train_common.h"
#include "train/pretrain.h"

static const char *usage =
    "usage: vlm pretrain --train-data DATA [options]\n"
    "data:\n"
    "  --train-data PATH        manifest (.csv/.tsv), webdataset shards ('dir/{0000..0009}.tar'), or 'synthetic'\n"
    "  --val-data PATH          retrieval evaluation set (image-caption pairs)\n"
    "  --dataset-type T         csv | webdataset | synthetic | auto (default auto)\n"
    "  --csv-img-key K          image column (default filepath)\n"
    "  --csv-caption-key K      caption column (default title)\n"
    "  --csv-caption-sep S      a caption cell holds several captions split at S (one is drawn per epoch;\n"
    "                           webdataset .txt: one caption per line)\n"
    "  --csv-separator C        column separator (default tab; '\\t' or ',' etc.)\n"
    "  --train-data-upsampling-factors F1::F2::...   whole numbers, one per '::' source of --train-data\n"
    "                           (webdataset): each source's samples are listed Fk times per epoch\n"
    "  --train-num-samples N    samples per epoch for synthetic data (default 4096)\n"
    "  --workers N              decode threads (default 2)\n"
    "  --no-augment             eval transform for training images (default: RandomResizedCrop 0.9-1)\n"
    CLI_AUG_HELP
    "  --composite R,G,B        composite transparent images over this colour (default: drop alpha, as PIL)\n"
    "  --random-background P    with --composite: a training image is composited over a random colour (each\n"
    "                           channel 30..225) with probability P, drawn per (epoch, sample): transparent\n"
    "                           objects seen on many backgrounds, as detection scenes show them (default 0)\n"
    "model:\n"
    "  --model NAME|JSON        tiny | small | ViT-S-16 | ViT-S-32 | ViT-B-32 | config file (default tiny;\n"
    "                           with --pretrained the weights define the model)\n"
    "  --pretrained W           start from weights: a vlm model file, OpenAI's .pt, an open_clip checkpoint or\n"
    "                           hub folder, a Hugging Face CLIPModel folder, an OpenAI-named safetensors file\n"
    "  --tokenizer FILE         BPE merges file (CLIP format, .gz ok); default: the one that came with\n"
    "                           --pretrained (refused if none), else train one on the captions\n"
    "  --pretrained-text LM     start the text tower (and the tokenizer) from a vlm lm train model: the\n"
    "                           tensors whose names and shapes match; says which are new\n"
    "  --coca L                 CoCa: add a multimodal text decoder of L layers (causal self-attention +\n"
    "                           cross-attention to the image tokens) and its caption loss; `vlm caption` reads it\n"
    "  --coca-caption-weight W  loss = contrastive + W * caption (default 2, open_clip's)\n"
    "  --patch-dropout P        fraction of patch tokens dropped while training (default 0)\n"
    "  --unmasked-tail F        the last fraction F of the schedule keeps every patch (FLIP's unmasked tuning)\n"
    "  --text-buckets K         captions run in up to K length buckets (default 4; same features; 1: off)\n"
    "  --siglip                 SigLIP sigmoid loss instead of InfoNCE\n"
    "  --lock-image / --lock-text   freeze a tower\n"
    "optimisation:\n"
    "  --batch-size B (64)  --epochs E (1)  --lr LR (5e-4)  --wd WD (0.2)  --beta1 (0.9)  --beta2 (0.98)\n"
    "  --eps (1e-6)  --warmup STEPS (100)  --lr-scheduler cosine|const|const-cooldown (cosine)\n"
    "  --epochs-cooldown E  --lr-cooldown-end LR  --lr-cooldown-power P   (const-cooldown)\n"
    "  --grad-clip-norm N (1.0; 0 = off)  --accum-freq K (1; features cached, negatives from all K batches)\n"
    "  --seed S (0)  --max-steps N  --max-minutes M  --precision fp32|amp_bf16|bf16|auto\n"
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
    "  --gather-with-grad, --local-loss   open_clip's flags, accepted: vlm always gathers features with\n"
    "                           gradients and computes each rank's local loss against the global batch\n"
    "  --dist-timeout S (300)   a rank waiting longer than S seconds for the others stops the job\n"
    "                           (validation runs on rank 0 alone: S must exceed its duration)\n"
    "Resuming continues mid-epoch at the next sample; pass the same options as the original run (under\n"
    "mpirun any world size that divides the global batch, with --batch-size = global batch / ranks).\n";

static int fn_dtype(const char *v, void *dst, vlm_error *err) {
    if (strcmp(v, "auto") && strcmp(v, "csv") && strcmp(v, "webdataset") && strcmp(v, "synthetic")) {
        vlm_errorf(err, VLM_ERR_ARG, "--dataset-type must be csv, webdataset, synthetic or auto, not '%s'", v);
        return -1;
    }
    *(const char **)dst = v;
    return 0;
}

// 0: parsed, 1: --help, -1: usage error.
static int parse(int argc, char **argv, vlm_pretrain_opts *o, cli_dist_opts *d, int *json, vlm_error *err) {
    vlm_pretrain_opts_default(o);
    cli_dist_opts_default(d);
    int open_clip_noop = 0;
    const cli_opt own[] = {
        {"train-data", CLI_STR, &o->train, 0, 0, NULL, NULL},
        {"val-data", CLI_STR, &o->val, 0, 0, NULL, NULL},
        {"dataset-type", CLI_FN, &o->dtype, 0, 0, fn_dtype, NULL},
        {"csv-img-key", CLI_STR, &o->img_key, 0, 0, NULL, NULL},
        {"csv-caption-key", CLI_STR, &o->cap_key, 0, 0, NULL, NULL},
        {"csv-caption-sep", CLI_STR, &o->cap_sep, 0, 0, NULL, NULL},
        {"csv-separator", CLI_FN, &o->sep, 0, 0, cli_fn_sep, NULL},
        {"train-data-upsampling-factors", CLI_STR, &o->upsampling, 0, 0, NULL, NULL},
        {"train-num-samples", CLI_INT, &o->nsynth, 1, 1099511627776.0, NULL, NULL},
        {"no-augment", CLI_FLAG, &o->no_augment, 0, 0, NULL, NULL},
        {"random-background", CLI_FLT, &o->random_background, 0, 1, NULL, NULL},
        {"composite", CLI_FN, &o->dec, 0, 0, cli_fn_composite, NULL},
        {"model", CLI_STR, &o->model, 0, 0, NULL, NULL},
        {"pretrained", CLI_STR, &o->pretrained, 0, 0, NULL, NULL},
        {"pretrained-text", CLI_STR, &o->pretrained_text, 0, 0, NULL, NULL},
        {"coca", CLI_INT, &o->coca_layers, 1, 256, NULL, NULL},
        {"coca-caption-weight", CLI_FLT, &o->caption_weight, 0, 1000, NULL, NULL},
        {"tokenizer", CLI_STR, &o->tokenizer, 0, 0, NULL, NULL},
        {"patch-dropout", CLI_FLT, &o->patch_dropout, 0, 0.95, NULL, NULL},
        {"text-buckets", CLI_INT, &o->text_buckets, 1, 8, NULL, NULL},
        {"unmasked-tail", CLI_FLT, &o->unmasked_tail, 0, 1, NULL, NULL},
        {"siglip", CLI_FLAG, &o->siglip, 0, 0, NULL, NULL},
        {"lock-image", CLI_FLAG, &o->lock_image, 0, 0, NULL, NULL},
        {"lock-text", CLI_FLAG, &o->lock_text, 0, 0, NULL, NULL},
        {"accum-freq", CLI_INT, &o->accum, 1, 1024, NULL, NULL},
        {"epochs-cooldown", CLI_FLT, &o->cooldown_epochs, 0, 1e9, NULL, NULL},
        {"lr-cooldown-end", CLI_FLT, &o->cooldown_end, 0, 10, NULL, NULL},
        {"lr-cooldown-power", CLI_FLT, &o->cooldown_power, 0.01, 100, NULL, NULL},
        {"save-frequency", CLI_INT, &o->save_freq, 1, 1 << 20, NULL, NULL},
        {"keep", CLI_INT, &o->keep, 1, 1 << 20, NULL, NULL},
        {"gather-with-grad", CLI_FLAG, &open_clip_noop, 0, 0, NULL, NULL},
        {"local-loss", CLI_FLAG, &open_clip_noop, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt common[CLI_TRAIN_OPTS], aug[CLI_AUG_OPTS];
    cli_train_table(common, &o->c, d, json);
    cli_aug_table(aug, &o->aug);
    const cli_opt *tabs[] = {own, common, aug};
    int r = cli_parse_flags("pretrain", argc, argv, tabs, 3, err);
    if (r) return r;
    if (!o->train) {
        vlm_errorf(err, VLM_ERR_ARG, "--train-data is required (see vlm pretrain --help)");
        return -1;
    }
    if (!strcmp(o->train, "synthetic")) o->dtype = "synthetic";
    return vlm_pretrain_opts_check(o, err) ? -1 : 0;
}

static void json_retrieval(const vlm_retrieval *r) {
    printf("\"val_n\": %" PRId64 ", \"i2t_r1\": %.4f, \"i2t_r5\": %.4f, \"i2t_r10\": %.4f, \"i2t_mean_rank\": %.2f, "
           "\"i2t_median_rank\": %.1f, \"t2i_r1\": %.4f, \"t2i_r5\": %.4f, \"t2i_r10\": %.4f, \"t2i_mean_rank\": %.2f, "
           "\"t2i_median_rank\": %.1f",
           r->n, r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank, r->t2i_r1, r->t2i_r5, r->t2i_r10,
           r->t2i_mean_rank, r->t2i_median_rank);
}

int cmd_pretrain(int argc, char **argv) {
    vlm_pretrain_opts o;
    cli_dist_opts d;
    vlm_error err = {0};
    int json = 0, pr = parse(argc, argv, &o, &d, &json, &err);
    if (pr) return cli_parse_exit(pr, "pretrain", usage, &err);
    cli_trainer_setup(&o.c, &d);
    vlm_pretrain_result r;
    if (vlm_pretrain(&o, &r, &err)) return cli_train_fail("pretrain", &err);
    cli_progress_end();
    if (o.c.dist->rank) return 0; // rank 0 reports
    printf("{\"steps\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.5f, \"minutes\": %.2f, \"pairs_seen\": %" PRId64
           ", \"data_wait_s\": %.2f",
           r.steps, r.epoch, r.loss, r.minutes, r.pairs_seen, r.data_wait_s);
    if (r.have_val) {
        printf(", ");
        json_retrieval(&r.val);
    }
    printf(", \"checkpoint\": \"%s\"}\n", r.checkpoint);
    return 0;
}
