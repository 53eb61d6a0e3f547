// `vlm caption --checkpoint C IMAGES...`: captions from a CoCa model's
// multimodal decoder (vlm pretrain --coca), greedy or beam search.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/checkpoint.h"
#include "text/tokenizer.h"

static const char *usage =
    "usage: vlm caption --checkpoint C [options] IMAGE...\n"
    "       vlm caption --checkpoint C --data DATASET [--limit N] [options]\n"
    "Captions images with a CoCa model (vlm pretrain --coca): the multimodal decoder continues SOT\n"
    "until EOT, greedily or by beam search. Prints \"IMAGE<TAB>caption\" per image, or JSON lines.\n"
    "  --beams K            beam search with K beams (default 1: greedy)\n"
    "  --max-len N          tokens at most, SOT and EOT included (default: the context length)\n"
    "  --length-penalty A   beams ranked by sum(log p) / length^A (default 0)\n"
    "  --composite R,G,B    composite transparent images over this colour (emoji: 255,255,255)\n"
    "  --json               one JSON object per image: image, caption, tokens\n"
    "  --data DATASET       caption every sample of a dataset and score against its (first) caption:\n"
    "                       exact match and word-level F1, averaged; one JSON line at the end\n"
    "  --limit N            the first N samples of --data\n";

// Word-level F1 of two captions (multisets of space-separated words).
static double word_f1(const char *pred, const char *ref) {
    char a[512], b[512], *wa[128], *wb[128];
    snprintf(a, sizeof a, "%s", pred);
    snprintf(b, sizeof b, "%s", ref);
    int na = 0, nb = 0, common = 0;
    for (char *s = strtok(a, " "); s && na < 128; s = strtok(NULL, " ")) wa[na++] = s;
    for (char *s = strtok(b, " "); s && nb < 128; s = strtok(NULL, " ")) wb[nb++] = s;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (wb[j] && !strcmp(wa[i], wb[j])) {
                common++;
                wb[j] = NULL;
                break;
            }
    if (!common) return 0;
    double p = (double)common / na, r = (double)common / nb;
    return 2 * p * r / (p + r);
}

// The reference as the tokenizer renders it (encode then decode: lower case,
// cleaned whitespace, punctuation split off as its own word: "Timor-Leste" ->
// "timor - leste"), so exact match and F1 compare like with like.
static vlm_status ref_as_decoded(vlm_tokenizer *tok, const char *ref, size_t len, char *out, size_t cap,
                                 vlm_error *err) {
    int32_t ids[256];
    int n = 0;
    vlm_status st = vlm_tokenizer_encode(tok, ref, len, ids, 256, &n, err);
    if (!st) st = vlm_tokenizer_decode(tok, ids, n < 256 ? n : 256, out, cap, NULL, err);
    if (st) return st;
    size_t l = strlen(out);
    while (l && out[l - 1] == ' ') out[--l] = 0;
    return VLM_OK;
}

int cmd_caption(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL;
    long long beams = 1, max_len = 0, limit = 0;
    double lp = 0;
    int json = 0, pos;
    vlm_decode_opts dec;
    vlm_decode_opts_default(&dec);
    vlm_error err = {0};
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &ckpt, 0, 0, NULL, NULL},
        {"beams", CLI_INT, &beams, 1, 64, NULL, NULL},
        {"max-len", CLI_INT, &max_len, 2, 4096, NULL, NULL},
        {"length-penalty", CLI_FLT, &lp, 0, 10, NULL, NULL},
        {"composite", CLI_FN, &dec, 0, 0, cli_fn_composite, NULL},
        {"json", CLI_FLAG, &json, 0, 0, NULL, NULL},
        {"data", CLI_STR, &data, 0, 0, NULL, NULL},
        {"limit", CLI_INT, &limit, 1, 9.3e18, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse("caption", argc, argv, tabs, 1, &pos, &err);
    if (pr) return cli_parse_exit(pr, "caption", usage, &err);
    if (!ckpt) return cli_usagef("caption", "--checkpoint is required");
    if (pos >= argc && !data) return cli_usagef("caption", "no images given");
    if (pos < argc && data) return cli_usagef("caption", "images or --data, not both");
    vlm_dataset ds;
    vlm_sample smp;
    vlm_sample_init(&smp);
    int64_t n = argc - pos;
    if (data) {
        if (vlm_dataset_open(&ds, data, NULL, &err)) return cli_fail("caption", &err);
        n = limit && limit < ds.n ? limit : ds.n;
    }
    double sum_exact = 0, sum_f1 = 0;
    vlm_clip m;
    char *merges = NULL;
    if (vlm_ckpt_load_model(ckpt, &m, &merges, &err)) return cli_fail("caption", &err);
    vlm_tokenizer tok;
    int rc = 0, have_tok = 0;
    if (!m.has_dec) rc = cli_usagef("caption", "%s is not a CoCa model (train one with vlm pretrain --coca L)", ckpt);
    else if (!merges) rc = cli_usagef("caption", "%s carries no tokenizer", ckpt);
    else if (vlm_tokenizer_init_from_memory(&tok, merges, strlen(merges), &err)) rc = cli_fail("caption", &err);
    else have_tok = 1;
    const int S = m.cfg.vision.image_size, ctx = m.cfg.text.context_length;
    if (!max_len || max_len > ctx) max_len = ctx;
    float *x = malloc(sizeof(float) * 3 * (size_t)S * S);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)max_len);
    char *text = malloc(8192);
    vlm_image img;
    vlm_image_init(&img);
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    if (!rc && (!x || !ids || !text)) rc = cli_fail("caption", (vlm_errorf(&err, VLM_ERR_OOM, "out of memory"), &err));
    int32_t ban[1];
    for (int64_t i = 0; !rc && i < n; i++) {
        char src[4200];
        const char *name = data ? vlm_dataset_source(&ds, i, src, sizeof src) : argv[pos + i];
        vlm_seqdec_opts so;
        vlm_seqdec_opts_default(&so, vlm_tokenizer_sot(&tok), vlm_tokenizer_eot(&tok), (int)max_len);
        so.beams = (int)beams, so.length_penalty = (float)lp;
        ban[0] = vlm_tokenizer_sot(&tok), so.banned = ban, so.n_banned = 1;
        int len = 0;
        vlm_status st = data ? vlm_dataset_load_image(&ds, i, &smp, &img, &dec, &err) : vlm_image_load(&img, name, &dec, &err);
        if (!st) st = vlm_transform_eval(&t, &img, x, &sc, &err);
        if (!st) st = vlm_coca_caption(&m, x, &so, ids, &len, &err);
        int body = len - 1 - (len > 1 && ids[len - 1] == vlm_tokenizer_eot(&tok));
        if (!st) st = vlm_tokenizer_decode(&tok, ids + 1, body, text, 8192, NULL, &err);
        if (st) {
            rc = cli_fail("caption", &err);
            break;
        }
        size_t tl = strlen(text);
        while (tl && text[tl - 1] == ' ') text[--tl] = 0;
        const char *ref = data ? vlm_dataset_caption(&ds, i) : NULL;
        size_t rl = 0;
        char refbuf[512];
        if (ref) {
            const char *r0 = vlm_caption_pick(ref, 0, &rl);
            if ((st = ref_as_decoded(&tok, r0, rl, refbuf, sizeof refbuf, &err))) {
                rc = cli_fail("caption", &err);
                break;
            }
            sum_exact += !strcmp(text, refbuf);
            sum_f1 += word_f1(text, refbuf);
        }
        if (json) {
            printf("{\"image\": ");
            cli_json_str(stdout, name);
            printf(", \"caption\": ");
            cli_json_str(stdout, text);
            if (ref) {
                printf(", \"reference\": ");
                cli_json_str(stdout, refbuf);
            }
            printf(", \"tokens\": %d}\n", body);
        } else
            printf("%s\t%s\n", name, text);
    }
    if (!rc && data)
        printf("{\"n\": %lld, \"caption_exact\": %.4f, \"caption_f1\": %.4f, \"beams\": %lld}\n", (long long)n,
               sum_exact / (double)n, sum_f1 / (double)n, beams);
    if (data) vlm_dataset_free(&ds);
    vlm_sample_free(&smp);
    vlm_image_free(&img);
    vlm_transform_scratch_free(&sc);
    free(x), free(ids), free(text), free(merges);
    if (have_tok) vlm_tokenizer_free(&tok);
    vlm_clip_free(&m);
    return rc;
}
