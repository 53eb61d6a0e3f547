// `vlm detect train`: the option table and a call to vlm_detect_train
// (train/detect.h): fine-tune an open-vocabulary detection head from a CLIP on
// COCO-format data and evaluate it with the COCO evaluator.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/train_common.h"
#include "train/detect.h"

static const char *usage =
    "usage: vlm detect train --clip CKPT --train-data TRAIN.json [options]\n"
    "Fine-tunes an open-vocabulary detection head (OWL-ViT style) and the CLIP's image tower on COCO-format\n"
    "data (e.g. from `vlm data scenes`); the CLIP's text tower stays frozen and encodes the category names\n"
    "as queries, so any class can be queried by name afterwards.\n"
    "data:\n"
    "  --train-data JSON        COCO ground truth; images are file_name relative to the JSON's folder;\n"
    "                           its categories (names) are the training queries\n"
    "  --val-data JSON          evaluation split (queries: its categories); repeatable via --heldout-data\n"
    "  --heldout-data JSON      a second evaluation split, e.g. classes never boxed in training\n"
    "  --train-limit N / --val-limit N   use the first N images\n"
    "  --hflip P                horizontal flip probability, boxes mirrored (default 0.5)\n"
    "  --aug-scale LO,HI        crop window area / image area (default 0.5,1; above 1 zooms out)\n"
    "model:\n"
    "  --clip CKPT              CLIP model file (vlm pretrain) with its tokenizer\n"
    "  --image-size S           detector input size (default: the CLIP's); the positional embedding is resized\n"
    "  --patch-size P           a multiple k of the CLIP's patch: conv1 is upsampled k x k, so e.g. a 32 px /\n"
    "                           patch 4 CLIP reads 64 px at patch 8 with the same token grid and cost\n"
    "  --templates NAME|FILE    query templates (default name: the class name itself)\n"
    "  --ensemble SEEN,NOVEL    at evaluation, fuse each token's score with the frozen --clip's on its box's\n"
    "                           crop (ViLD's ensemble, F-VLM's fusion): p_det^(1-w) * p_clip^w, w = SEEN for\n"
    "                           the training classes, NOVEL for the others (F-VLM: 0.35,0.65; on the scenes\n"
    "                           0,0.65: the CLIP's crops cost the seen classes AP)\n"
    "  --ensemble-context F     crop side = F x the box's longer side, square (default 1)\n"
    "  --ensemble-top K         tokens per image cropped, best first (default 16; the rest fuse with 1/Q)\n"
    "  --lock-image             train the head only\n"
    "optimisation:\n"
    "  --batch-size B (32)  --epochs E (20)  --lr LR (3e-4)  --tower-lr-scale F (0.3: tower LR = F * LR)\n"
    "  --wd WD (0.05)  --warmup STEPS (200)  --grad-clip-norm N (1.0)  --seed S (0)\n"
    "  --max-steps N  --max-minutes M  --time-schedule (cosine over the time budget)  --precision fp32|amp_bf16|bf16|auto\n"
    "  --loss-weights C,L1,GIOU (2,5,2)  --focal-alpha A (0.3)  --focal-gamma G (2)\n"
    "  --one-to-many K (1)      each GT box is matched to K tokens (H-DETR's one-to-many branch): more\n"
    "                           positives per step; needs NMS at inference\n"
    "  --nms IOU                per-class NMS of the decoded boxes, stored in the detector (default 0.5\n"
    "                           with --one-to-many > 1, else 0 = none); with --eval-only it overrides\n"
    "runs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (500)  --log-every N (20)  --resume latest|FILE\n"
    "  --max-det N (100)  --eval-only --checkpoint DETECTOR [--clip CKPT with --ensemble]  --json (end with one\n"
    "                           JSON line of COCO stats)\n"
    "data-parallel: mpirun -np N vlm detect train ... (an MPI build): --batch-size per rank, rank 0 writes\n"
    "  and evaluates; --dist-timeout S (300) stops the job when a rank waits longer than S seconds\n";

static int fn_scale(const char *v, void *dst, vlm_error *err) {
    double *s = dst;
    char tail;
    if (sscanf(v, "%lf,%lf%c", &s[0], &s[1], &tail) != 2 || s[0] <= 0 || s[1] < s[0] || s[1] > 4) {
        vlm_errorf(err, VLM_ERR_ARG, "--aug-scale: expected LO,HI with 0 < LO <= HI <= 4, got '%s'", v);
        return -1;
    }
    return 0;
}

static int fn_ensemble(const char *v, void *dst, vlm_error *err) {
    vlm_detect_opts *o = dst;
    if (cli_parse_ensemble(v, o->ens_w, err)) return -1;
    o->ensemble = 1;
    return 0;
}

static int fn_weights(const char *v, void *dst, vlm_error *err) {
    double *w = dst;
    char tail;
    if (sscanf(v, "%lf,%lf,%lf%c", &w[0], &w[1], &w[2], &tail) != 3 || w[0] < 0 || w[1] < 0 || w[2] < 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--loss-weights: expected three non-negative numbers C,L1,GIOU, got '%s'", v);
        return -1;
    }
    return 0;
}

// 0: parsed, 1: --help, -1: usage error.
static int parse(int argc, char **argv, vlm_detect_opts *o, cli_dist_opts *d, int *json, vlm_error *err) {
    vlm_detect_opts_default(o);
    cli_dist_opts_default(d);
    const cli_opt own[] = {
        {"clip", CLI_STR, &o->clip, 0, 0, NULL, NULL},
        {"train-data", CLI_STR, &o->train, 0, 0, NULL, NULL},
        {"val-data", CLI_STR, &o->val, 0, 0, NULL, NULL},
        {"heldout-data", CLI_STR, &o->heldout, 0, 0, NULL, NULL},
        {"templates", CLI_STR, &o->templates, 0, 0, NULL, NULL},
        {"checkpoint", CLI_STR, &o->checkpoint, 0, 0, NULL, NULL},
        {"image-size", CLI_INT, &o->image_size, 8, 4096, NULL, NULL},
        {"patch-size", CLI_INT, &o->patch_size, 1, 4096, NULL, NULL},
        {"train-limit", CLI_INT, &o->train_limit, 1, 1 << 30, NULL, NULL},
        {"val-limit", CLI_INT, &o->val_limit, 1, 1 << 30, NULL, NULL},
        {"max-det", CLI_INT, &o->max_det, 1, 100000, NULL, NULL},
        {"one-to-many", CLI_INT, &o->one_to_many, 1, 64, NULL, NULL},
        {"nms", CLI_FLT, &o->nms, 0, 1, NULL, NULL},
        {"tower-lr-scale", CLI_FLT, &o->tower_scale, 0, 100, NULL, NULL},
        {"hflip", CLI_FLT, &o->hflip, 0, 1, NULL, NULL},
        {"focal-alpha", CLI_FLT, &o->alpha, 0, 1, NULL, NULL},
        {"focal-gamma", CLI_FLT, &o->gamma, 0, 10, NULL, NULL},
        {"aug-scale", CLI_FN, o->scale, 0, 0, fn_scale, NULL},
        {"loss-weights", CLI_FN, o->w, 0, 0, fn_weights, NULL},
        {"ensemble", CLI_FN, o, 0, 0, fn_ensemble, NULL},
        {"ensemble-context", CLI_FLT, &o->ens_context, 1, 4, NULL, NULL},
        {"ensemble-top", CLI_INT, &o->ens_top, 1, 4096, NULL, NULL},
        {"lock-image", CLI_FLAG, &o->lock_image, 0, 0, NULL, NULL},
        {"eval-only", CLI_FLAG, &o->eval_only, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt common[CLI_TRAIN_OPTS];
    cli_train_table(common, &o->c, d, json);
    const cli_opt *tabs[] = {own, common};
    int r = cli_parse_flags("detect train", argc, argv, tabs, 2, err);
    if (r) return r;
    return vlm_detect_opts_check(o, err) ? -1 : 0;
}

int cmd_detect_train(int argc, char **argv) {
    vlm_detect_opts o;
    cli_dist_opts d;
    vlm_error err = {0};
    int json = 0, pr = parse(argc, argv, &o, &d, &json, &err);
    if (pr) return cli_parse_exit(pr, "detect train", usage, &err);
    cli_trainer_setup(&o.c, &d);
    vlm_detect_result r;
    if (vlm_detect_train(&o, &r, &err)) return cli_train_fail("detect train", &err);
    cli_progress_end();
    if (o.c.dist->rank) return 0; // rank 0 reports
    if (o.eval_only) {
        if (json) printf("{%s}\n", r.eval_json);
        return 0;
    }
    printf("{\"steps\": %" PRId64 ", \"minutes\": %.2f, \"loss\": %.5f%s%s, \"checkpoint\": \"%s\"}\n", r.steps, r.minutes,
           r.loss, r.eval_json[0] ? ", " : "", r.eval_json, r.checkpoint);
    return 0;
}
