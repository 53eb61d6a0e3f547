// `vlm finetune`: the option table and a call to vlm_finetune (train/finetune.h).
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/train_common.h"
#include "train/finetune.h"

static const char *usage =
    "usage: vlm finetune --train-data DATA (--clip CKPT | --checkpoint CLASSIFIER | --model NAME|JSON) [options]\n"
    "data (labelled images: manifest with a label column, ImageFolder, IDX, webdataset with .cls):\n"
    "  --train-data PATH        training set\n"
    "  --val-data PATH          evaluation set (e.g. .../t10k-images-idx3-ubyte.gz); top-1/top-5 reported on it\n"
    "  --csv-img-key K (filepath)  --csv-label-key K (label)  --csv-separator C (tab)\n"
    "  --classnames FILE        class names, one per line (default: the dataset's)\n"
    "  --train-limit N  --val-limit N   use only the first N samples (quick runs)\n"
    "  --workers N (2)\n"
    CLI_AUG_HELP
    "  --no-augment             eval transform for training images\n"
    "model:\n"
    "  --clip CKPT              CLIP model file: start from its vision tower\n"
    "  --checkpoint CKPT        a vlm classifier file (continue / --eval-only); a CLIP file works here too\n"
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
    "  --precision fp32|amp_bf16|bf16|auto  --workers N (2)\n"
    "  --wise-alpha A[,A2..]    WiSE-FT: evaluate and save (1-A)*initial + A*finetuned weights\n"
    "checkpoints and logs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (500)  --resume latest|STATE  --log-every N (20)\n"
    "  --val-frequency E (0: evaluate at the end only)  --stop-at-step N  --eval-only  --json\n"
    "data-parallel: mpirun -np N vlm finetune ... (an MPI build): --batch-size per rank, rank 0 writes;\n"
    "  --dist-timeout S (300) stops the job when a rank waits longer than S seconds for the others\n"
    "Resuming continues mid-epoch at the next sample; pass the same options as the original run.\n";

static int fn_wise(const char *v, void *dst, vlm_error *err) {
    vlm_finetune_opts *o = dst;
    return (o->n_wise = cli_parse_list("--wise-alpha", v, o->wise, VLM_FT_MAX_WISE, 0, 1, err)) < 0 ? -1 : 0;
}

static int fn_stem(const char *v, void *dst, vlm_error *err) {
    vlm_finetune_opts *o = dst;
    o->stem_n = 0;
    if (!strcmp(v, "none")) return 0;
    double ch[VLM_STEM_MAX];
    int n = cli_parse_list("--stem", v, ch, VLM_STEM_MAX, 1, 4096, err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) o->stem_ch[i] = (int)ch[i];
    o->stem_n = n;
    return 0;
}

// 0: parsed, 1: --help, -1: usage error.
static int parse(int argc, char **argv, vlm_finetune_opts *o, cli_dist_opts *d, int *json, vlm_error *err) {
    vlm_finetune_opts_default(o);
    cli_dist_opts_default(d);
    const char *clip = NULL;
    const cli_opt own[] = {
        {"train-data", CLI_STR, &o->train, 0, 0, NULL, NULL},
        {"val-data", CLI_STR, &o->val, 0, 0, NULL, NULL},
        {"csv-img-key", CLI_STR, &o->img_key, 0, 0, NULL, NULL},
        {"csv-label-key", CLI_STR, &o->label_key, 0, 0, NULL, NULL},
        {"csv-separator", CLI_FN, &o->sep, 0, 0, cli_fn_sep, NULL},
        {"classnames", CLI_STR, &o->classnames, 0, 0, NULL, NULL},
        {"clip", CLI_STR, &clip, 0, 0, NULL, NULL},
        {"checkpoint", CLI_STR, &o->checkpoint, 0, 0, NULL, NULL},
        {"model", CLI_STR, &o->model, 0, 0, NULL, NULL},
        {"templates", CLI_STR, &o->templates, 0, 0, NULL, NULL},
        {"stem", CLI_FN, o, 0, 0, fn_stem, NULL},
        {"act", CLI_STR, &o->act, 0, 0, NULL, NULL},
        {"stem-act", CLI_STR, &o->stem_act, 0, 0, NULL, NULL},
        {"pool", CLI_STR, &o->pool, 0, 0, NULL, NULL},
        {"head", CLI_STR, &o->head, 0, 0, NULL, NULL},
        {"head-input", CLI_STR, &o->head_input, 0, 0, NULL, NULL},
        {"image-size", CLI_INT, &o->image_size, 1, 4096, NULL, NULL},
        {"patch-size", CLI_INT, &o->patch_size, 1, 4096, NULL, NULL},
        {"width", CLI_INT, &o->width, 1, 65536, NULL, NULL},
        {"layers", CLI_INT, &o->layers, 0, 1024, NULL, NULL},
        {"heads", CLI_INT, &o->heads, 1, 4096, NULL, NULL},
        {"head-hidden", CLI_INT, &o->head_hidden, 1, 1 << 20, NULL, NULL},
        {"train-limit", CLI_INT, &o->train_limit, 1, 1099511627776.0, NULL, NULL},
        {"val-limit", CLI_INT, &o->val_limit, 1, 1099511627776.0, NULL, NULL},
        {"val-frequency", CLI_INT, &o->val_freq, 0, 1 << 20, NULL, NULL},
        {"lock-image-epochs", CLI_INT, &o->lock_epochs, 0, 1 << 20, NULL, NULL},
        {"layer-decay", CLI_FLT, &o->layer_decay, 1e-3, 1, NULL, NULL},
        {"label-smoothing", CLI_FLT, &o->ls, 0, 0.999, NULL, NULL},
        {"mlp-ratio", CLI_FLT, &o->mlp_ratio, 0.01, 64, NULL, NULL},
        {"head-dropout", CLI_FLT, &o->head_dropout, 0, 0.99, NULL, NULL},
        {"wise-alpha", CLI_FN, o, 0, 0, fn_wise, NULL},
        {"lock-image", CLI_FLAG, &o->lock_image, 0, 0, NULL, NULL},
        {"zeroshot-init", CLI_FLAG, &o->zeroshot_init, 0, 0, NULL, NULL},
        {"no-augment", CLI_FLAG, &o->no_augment, 0, 0, NULL, NULL},
        {"eval-only", CLI_FLAG, &o->eval_only, 0, 0, NULL, NULL},
        CLI_END,
    };
    cli_opt common[CLI_TRAIN_OPTS], aug[CLI_AUG_OPTS];
    cli_train_table(common, &o->c, d, json);
    cli_aug_table(aug, &o->aug);
    const cli_opt *tabs[] = {own, common, aug};
    int r = cli_parse_flags("finetune", argc, argv, tabs, 3, err);
    if (r) return r;
    if (clip && o->checkpoint) {
        vlm_errorf(err, VLM_ERR_ARG, "--clip and --checkpoint exclude each other");
        return -1;
    }
    if (clip) o->checkpoint = clip; // the classifier file check tells them apart
    return vlm_finetune_opts_check(o, err) ? -1 : 0;
}

static void print_json(const vlm_finetune_opts *o, const vlm_finetune_result *r) {
    printf("{");
    if (r->have_val)
        printf("\"top1\": %.5f, \"top5\": %.5f, \"n\": %" PRId64 ", \"%s\": %.5f%s", (double)r->val.top1 / fmax(1, (double)r->val.n),
               (double)r->val.top5 / fmax(1, (double)r->val.n), r->val.n, o->eval_only ? "loss" : "val_loss", r->val.loss,
               o->eval_only ? "" : ", ");
    if (o->eval_only) {
        printf("}\n");
        return;
    }
    printf("\"steps\": %" PRId64 ", \"epoch\": %" PRId64 ", \"loss\": %.5f, \"minutes\": %.2f, \"images_seen\": %" PRId64,
           r->steps, r->epoch, r->loss, r->minutes, r->images_seen);
    if (r->n_wise && r->have_val) {
        printf(", \"wise\": [");
        for (int a = 0; a < r->n_wise; a++)
            printf("%s{\"alpha\": %.4f, \"top1\": %.5f, \"top5\": %.5f}", a ? ", " : "", r->wise_alpha[a],
                   (double)r->wise[a].top1 / fmax(1, (double)r->wise[a].n), (double)r->wise[a].top5 / fmax(1, (double)r->wise[a].n));
        printf("]");
    }
    printf(", \"checkpoint\": \"%s\"}\n", r->checkpoint);
}

int cmd_finetune(int argc, char **argv) {
    vlm_finetune_opts o;
    cli_dist_opts d;
    vlm_error err = {0};
    int json = 0, pr = parse(argc, argv, &o, &d, &json, &err);
    if (pr) return cli_parse_exit(pr, "finetune", usage, &err);
    cli_trainer_setup(&o.c, &d);
    vlm_finetune_result r;
    if (vlm_finetune(&o, &r, &err)) return cli_train_fail("finetune", &err);
    cli_progress_end();
    if (o.c.dist->rank) return 0; // rank 0 reports
    if (!o.eval_only || json) print_json(&o, &r);
    return 0;
}
