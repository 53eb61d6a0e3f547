// `vlm lm train|eval|sample`: language models on the text tower (text/lm.h):
// masked-token (BERT) or causal (GPT) pretraining on plain text or captions,
// held-out perplexity / masked-token accuracy, and seeded sampling.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/train_common.h"
#include "eval/lm_eval.h"
#include "train/lm.h"

// ---------------------------------------------------------------- train
static const char *train_usage =
    "usage: vlm lm train --train-data TEXT --objective mlm|clm [options]\n"
    "Pretrains the text tower as a language model: mlm = BERT's masked-token objective (bidirectional\n"
    "attention; 15% of the tokens selected, of those 80% [MASK], 10% a random token, 10% unchanged; loss\n"
    "on the selected ones), clm = GPT's next-token objective (causal attention). The output layer is tied\n"
    "to the token embedding. Documents are packed into rows of --context tokens (SOT doc EOT SOT ...).\n"
    "data:\n"
    "  --train-data TEXT        one document per line; or a manifest / webdataset shards: their captions\n"
    "  --val-data TEXT          held-out text: perplexity (clm) or masked-token top-1 (mlm) at the end\n"
    "  --csv-caption-key K      manifests: the caption column (default title)\n"
    "model:\n"
    "  --model micro|tiny|small (tiny: the tiny CLIP's text tower, 6 x 192)  --context T (32)\n"
    "  --tokenizer FILE         BPE merges; default: train a BPE of --vocab-size V (8192) on the text\n"
    "  --mask-prob P (0.15)\n"
    "optimisation:\n"
    "  --batch-size B (64)  --lr LR (5e-4)  --wd WD (0.1)  --warmup STEPS (200)  --epochs N (10)\n"
    "  --max-steps N  --max-minutes M  --time-schedule  --precision fp32|amp_bf16|bf16|auto  --seed S (0)\n"
    "runs:\n"
    "  --logs DIR (./logs)  --name NAME  --save-every-steps N (500)  --log-every N (20)  --resume latest|FILE\n"
    "data-parallel: mpirun -np N vlm lm train ... (an MPI build): --batch-size per rank, rank 0 writes\n"
    "Ends with one JSON line: steps, minutes, loss, val figures, checkpoint (the model file, which\n"
    "`vlm pretrain --pretrained-text` reads).\n";

static int train_parse(int argc, char **argv, vlm_lm_opts *o, cli_dist_opts *d, int *json, vlm_error *err) {
    vlm_lm_opts_default(o);
    cli_dist_opts_default(d);
    const cli_opt own[] = {
        {"train-data", CLI_STR, &o->train, 0, 0, NULL, NULL},
        {"val-data", CLI_STR, &o->val, 0, 0, NULL, NULL},
        {"csv-caption-key", CLI_STR, &o->caption_key, 0, 0, NULL, NULL},
        {"objective", CLI_STR, &o->objective, 0, 0, NULL, NULL},
        {"model", CLI_STR, &o->model, 0, 0, NULL, NULL},
        {"tokenizer", CLI_STR, &o->tokenizer, 0, 0, NULL, NULL},
        {"context", CLI_INT, &o->context, 4, 1024, NULL, NULL},
        {"vocab-size", CLI_INT, &o->vocab_size, 514, 49408, NULL, NULL},
        {"mask-prob", CLI_FLT, &o->mask_prob, 0.001, 0.5, NULL, NULL},
        CLI_END,
    };
    cli_opt common[CLI_TRAIN_OPTS];
    cli_train_table(common, &o->c, d, json);
    const cli_opt *tabs[] = {own, common};
    int r = cli_parse_flags("lm train", argc, argv, tabs, 2, err);
    if (r) return r;
    return vlm_lm_opts_check(o, err) ? -1 : 0;
}

static void print_val(const vlm_lm_eval_result *v) {
    printf("\"val_tokens\": %" PRId64 ", \"val_loss\": %.5f, \"val_perplexity\": %.4f, \"val_top1\": %.5f, ", v->tokens,
           v->loss, v->perplexity, v->top1);
}

static int lm_train(int argc, char **argv) {
    vlm_lm_opts o;
    cli_dist_opts d;
    vlm_error err = {0};
    int json = 0, pr = train_parse(argc, argv, &o, &d, &json, &err);
    if (pr) return cli_parse_exit(pr, "lm train", train_usage, &err);
    cli_trainer_setup(&o.c, &d);
    vlm_lm_result r;
    if (vlm_lm_train(&o, &r, &err)) return cli_train_fail("lm train", &err);
    cli_progress_end();
    if (o.c.dist->rank) return 0;
    printf("{\"objective\": \"%s\", \"steps\": %" PRId64 ", \"minutes\": %.2f, \"loss\": %.5f, \"tokens\": %" PRId64 ", ",
           o.objective, r.steps, r.minutes, r.loss, r.tokens);
    if (r.have_val) print_val(&r.val);
    printf("\"checkpoint\": \"%s\"}\n", r.checkpoint);
    return 0;
}

// ---------------------------------------------------------------- eval
static const char *eval_usage =
    "usage: vlm lm eval --checkpoint MODEL --data TEXT [--batch-size B] [--csv-caption-key K] [--unigram-from TRAIN]\n"
    "Held-out figures of a language model on TEXT (packed as in training): perplexity and next-token\n"
    "top-1 (clm), or masked-token top-1 (mlm; the masks come from a fixed seed, so the figure repeats).\n"
    "--unigram-from TRAIN adds unigram_perplexity: a unigram model of TRAIN's tokens (same tokenizer,\n"
    "add-one smoothing) scored on the same targets, the baseline a clm must beat. Prints one JSON line.\n";

// Loads a model and its tokenizer (the model file carries it).
static int load(const char *cmd, const char *path, vlm_lm *m, vlm_tokenizer *tok) {
    vlm_error err = {0};
    char *merges = NULL;
    if (vlm_lm_load(path, m, &merges, &err)) return cli_fail(cmd, &err);
    if (!merges) {
        vlm_lm_free(m);
        return cli_usagef(cmd, "%s carries no tokenizer", path);
    }
    vlm_status st = vlm_tokenizer_init_from_memory(tok, merges, strlen(merges), &err);
    free(merges);
    if (st) {
        vlm_lm_free(m);
        return cli_fail(cmd, &err);
    }
    return 0;
}

static int lm_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *capkey = NULL, *uni = NULL;
    long long B = 64;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &ckpt, 0, 0, NULL, NULL},
        {"data", CLI_STR, &data, 0, 0, NULL, NULL},
        {"csv-caption-key", CLI_STR, &capkey, 0, 0, NULL, NULL},
        {"unigram-from", CLI_STR, &uni, 0, 0, NULL, NULL},
        {"batch-size", CLI_INT, &B, 1, 1 << 16, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("lm eval", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "lm eval", eval_usage, &err);
    if (!ckpt || !data) return cli_usagef("lm eval", "--checkpoint and --data are required");
    vlm_lm m;
    vlm_tokenizer tok;
    int rc = load("lm eval", ckpt, &m, &tok);
    if (rc) return rc;
    vlm_docs d;
    vlm_token_stream s = {0};
    vlm_lm_eval_result r;
    vlm_status st = vlm_docs_read(&d, data, capkey, &err);
    if (!st) {
        st = vlm_docs_tokenize(&d, &tok, &s, &err);
        vlm_docs_free(&d);
    }
    if (!st) st = vlm_lm_evaluate(&m, &s, (int)B, &r, &err);
    double uppl = NAN;
    if (!st && uni) {
        vlm_token_stream ts = {0};
        if (!(st = vlm_docs_read(&d, uni, capkey, &err))) {
            st = vlm_docs_tokenize(&d, &tok, &ts, &err);
            vlm_docs_free(&d);
        }
        if (!st) uppl = vlm_unigram_perplexity(&ts, &s, vlm_tokenizer_vocab_size(&tok), m.cfg.context_length);
        vlm_token_stream_free(&ts);
    }
    if (st) rc = cli_fail("lm eval", &err);
    else {
        printf("{\"objective\": \"%s\", \"rows\": %" PRId64 ", \"tokens\": %" PRId64 ", \"loss\": %.5f, \"perplexity\": %.4f, "
               "\"top1\": %.5f",
               vlm_lm_objective_name(m.cfg.objective), r.rows, r.tokens, r.loss, r.perplexity, r.top1);
        if (uni) printf(", \"unigram_perplexity\": %.4f", uppl);
        printf("}\n");
    }
    vlm_token_stream_free(&s);
    vlm_tokenizer_free(&tok);
    vlm_lm_free(&m);
    return rc;
}

// ---------------------------------------------------------------- sample
static const char *sample_usage =
    "usage: vlm lm sample --checkpoint MODEL [--prompt TEXT] [options]\n"
    "Continues the prompt with a causal (clm) language model until EOT or the context is full.\n"
    "  --max-tokens N (32)  --temperature T (0 = greedy)  --top-k K (0 = all)  --seed S (0)\n"
    "  --n N (1)  samples (seeds S, S+1, ...)  --json  one JSON line per sample\n";

static int lm_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "";
    long long max_tokens = 32, top_k = 0, seed = 0, n = 1;
    double temp = 0;
    int json = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &ckpt, 0, 0, NULL, NULL},
        {"prompt", CLI_STR, &prompt, 0, 0, NULL, NULL},
        {"max-tokens", CLI_INT, &max_tokens, 1, 4096, NULL, NULL},
        {"top-k", CLI_INT, &top_k, 0, 1 << 20, NULL, NULL},
        {"seed", CLI_INT, &seed, 0, 9.3e18, NULL, NULL},
        {"n", CLI_INT, &n, 1, 10000, NULL, NULL},
        {"temperature", CLI_FLT, &temp, 0, 100, NULL, NULL},
        {"json", CLI_FLAG, &json, 0, 0, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("lm sample", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "lm sample", sample_usage, &err);
    if (!ckpt) return cli_usagef("lm sample", "--checkpoint is required");
    vlm_lm m;
    vlm_tokenizer tok;
    int rc = load("lm sample", ckpt, &m, &tok);
    if (rc) return rc;
    const int ctx = m.cfg.context_length;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(ctx + 1));
    char *text = malloc(65536);
    int np = 0;
    vlm_status st = ids && text ? vlm_tokenizer_encode(&tok, prompt, strlen(prompt), ids + 1, ctx - 1, &np, &err)
                                : vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
    if (!st && np > ctx - 2) st = vlm_errorf(&err, VLM_ERR_ARG, "the prompt is %d tokens; the context holds %d", np, ctx);
    for (long long k = 0; !st && k < n; k++) {
        ids[0] = vlm_tokenizer_sot(&tok);
        int len = 1 + np;
        vlm_lm_sample_opts so;
        vlm_lm_sample_opts_default(&so);
        so.max_tokens = (int)max_tokens, so.temperature = (float)temp, so.top_k = (int)top_k, so.seed = (uint64_t)(seed + k);
        if ((st = vlm_lm_sample(&m, ids, &len, ctx, &so, &err))) break;
        int body = len - 1 - (ids[len - 1] == vlm_tokenizer_eot(&tok)); // without SOT and EOT
        if ((st = vlm_tokenizer_decode(&tok, ids + 1, body, text, 65536, NULL, &err))) break;
        size_t tl = strlen(text);
        while (tl && text[tl - 1] == ' ') text[--tl] = 0;
        if (json) {
            printf("{\"seed\": %lld, \"tokens\": %d, \"text\": ", seed + k, body - np);
            cli_json_str(stdout, text);
            printf("}\n");
        } else
            printf("%s\n", text);
    }
    if (st) rc = cli_fail("lm sample", &err);
    free(ids), free(text);
    vlm_tokenizer_free(&tok);
    vlm_lm_free(&m);
    return rc;
}

int cmd_lm(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: vlm lm train|eval|sample [options]  (vlm lm <sub> --help)\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return lm_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return lm_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "sample")) return lm_sample(argc - 1, argv + 1);
    return cli_usagef("lm", "unknown subcommand '%s' (train, eval, sample)", argv[1]);
}
