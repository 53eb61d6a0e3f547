// `vlm tokenize` (stdin lines -> JSON id arrays, or --bench) and
// `vlm bpe train` (learn a merges file from a caption corpus).
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/clock.h"
#include "text/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char **line;
    size_t *len;
    long n, cap;
    size_t bytes;
} lines_t;

static void lines_free(lines_t *l) {
    for (long i = 0; i < l->n; i++) free(l->line[i]);
    free(l->line);
    free(l->len);
    memset(l, 0, sizeof *l);
}

// Reads every '\n'-terminated line (the last one may lack it), keeping NUL
// bytes; the '\n' is dropped (a '\r' before it is whitespace to the cleaner).
static int lines_read(FILE *f, lines_t *l) {
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t r;
    while ((r = getline(&buf, &bcap, f)) >= 0) {
        size_t n = (size_t)r;
        if (n && buf[n - 1] == '\n') n--;
        if (l->n == l->cap) {
            long c = l->cap ? l->cap * 2 : 1024;
            char **a = realloc(l->line, sizeof *a * (size_t)c);
            if (!a) break;
            l->line = a;
            size_t *b = realloc(l->len, sizeof *b * (size_t)c);
            if (!b) break;
            l->len = b;
            l->cap = c;
        }
        char *s = malloc(n + 1);
        if (!s) break;
        memcpy(s, buf, n);
        s[n] = 0;
        l->line[l->n] = s;
        l->len[l->n++] = n;
        l->bytes += n;
    }
    int ok = !ferror(f) && feof(f);
    free(buf);
    return ok;
}

// ----------------------------------------------------------- tokenize

static const char *tokenize_usage =
    "usage: vlm tokenize --vocab FILE [--context-length N] [--truncate]\n"
    "       vlm tokenize --vocab FILE --bench TEXTFILE [--repeat R]\n"
    "\n"
    "Reads one text per line on stdin and writes one JSON array of token ids\n"
    "per line: [SOT, ids..., EOT] (CLIP's bpe_simple_vocab_16e6.txt.gz gives\n"
    "SOT 49406, EOT 49407). Invalid UTF-8 is read as U+FFFD.\n"
    "\n"
    "  --vocab FILE          merges file (gzip or plain text)\n"
    "  --context-length N    pad every array with 0 to exactly N ids; a text\n"
    "                        needing more is an error naming its line\n"
    "  --truncate            with --context-length: keep SOT + the first N-2\n"
    "                        ids + EOT instead of failing\n"
    "  --bench TEXTFILE      time encoding the lines of TEXTFILE (cold cache,\n"
    "                        warm cache, no cache) and print tokens/s\n"
    "  --repeat R            warm/no-cache passes for --bench (default: enough\n"
    "                        for about 1 s each)\n";

static void put_ids(FILE *out, const int32_t *ids, int n) {
    char buf[16];
    fputc('[', out);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", out);
        uint32_t v = (uint32_t)ids[i];
        int k = (int)sizeof buf;
        do buf[--k] = (char)('0' + v % 10);
        while (v /= 10);
        fwrite(buf + k, 1, sizeof buf - (size_t)k, out);
    }
    fputs("]\n", out);
}

// One pass over the lines; returns BPE tokens (without SOT/EOT) or -1.
static long bench_pass(vlm_tokenizer *tok, const lines_t *l, int32_t **ids, int *cap, vlm_error *err) {
    long total = 0;
    for (long i = 0; i < l->n; i++) {
        int n;
        if (vlm_tokenizer_encode(tok, l->line[i], l->len[i], *ids, *cap, &n, err)) return -1;
        if (n > *cap) { // rare: grow and redo so the ids are really written
            int32_t *p = realloc(*ids, sizeof *p * (size_t)n);
            if (!p) return -1;
            *ids = p;
            *cap = n;
            if (vlm_tokenizer_encode(tok, l->line[i], l->len[i], *ids, *cap, &n, err)) return -1;
        }
        total += n;
    }
    return total;
}

static int run_bench(vlm_tokenizer *tok, const char *path, long repeat) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_failf("tokenize", "%s: %s", path, strerror(errno));
    lines_t l = {0};
    int ok = lines_read(f, &l);
    fclose(f);
    if (!ok) {
        lines_free(&l);
        return cli_failf("tokenize", "%s: read failed", path);
    }
    vlm_error err = {0};
    int cap = 4096;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    if (!ids) {
        lines_free(&l);
        return cli_failf("tokenize", "out of memory");
    }
    printf("bench: %s: %ld lines, %zu bytes\n", path, l.n, l.bytes);
    int rc = 0;
    const char *names[3] = {"cold cache, 1 pass", "warm cache", "no cache"};
    for (int mode = 0; mode < 3 && !rc; mode++) {
        if (vlm_tokenizer_set_cache(tok, mode == 2 ? 0 : 16384, &err)) { // fresh (or no) cache
            rc = cli_fail("tokenize", &err);
            break;
        }
        if (mode == 1 && bench_pass(tok, &l, &ids, &cap, &err) < 0) { // warm it up
            rc = cli_fail("tokenize", &err);
            break;
        }
        long passes = 0, tokens = 0;
        double t0 = vlm_now(), dt = 0;
        for (;;) {
            long k = bench_pass(tok, &l, &ids, &cap, &err);
            if (k < 0) {
                rc = cli_fail("tokenize", &err);
                break;
            }
            tokens += k;
            passes++;
            dt = vlm_now() - t0;
            if (mode == 0) break;
            if (repeat > 0 ? passes >= repeat : (dt >= 1.0 && passes >= 3)) break;
        }
        if (rc) break;
        printf("  %-20s %ld passes %8.3f s  %12.0f tokens/s  %8.2f MB/s  %10.0f lines/s\n", names[mode], passes,
               dt, (double)tokens / dt, (double)l.bytes * (double)passes / dt / 1e6, (double)l.n * (double)passes / dt);
    }
    free(ids);
    lines_free(&l);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *vocab = NULL, *bench = NULL;
    long long ctx_ll = 0, repeat_ll = 0;
    int truncate = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"vocab", CLI_STR, &vocab, 0, 0, NULL, NULL},
        {"bench", CLI_STR, &bench, 0, 0, NULL, NULL},
        {"context-length", CLI_INT, &ctx_ll, 2, 1 << 24, NULL, NULL},
        {"repeat", CLI_INT, &repeat_ll, 1, 1000000, NULL, NULL},
        {"truncate", CLI_FLAG, &truncate, 0, 0, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("tokenize", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "tokenize", tokenize_usage, &err);
    if (!vocab) return cli_usagef("tokenize", "--vocab FILE is required (see vlm tokenize --help)");
    if (truncate && !ctx_ll) return cli_usagef("tokenize", "--truncate needs --context-length");
    const long ctx = (long)ctx_ll, repeat = (long)repeat_ll;
    vlm_tokenizer tok;
    if (vlm_tokenizer_init(&tok, vocab, &err)) return cli_fail("tokenize", &err);
    if (bench) {
        int rc = run_bench(&tok, bench, repeat);
        vlm_tokenizer_free(&tok);
        return rc;
    }

    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    int cap = ctx ? (int)ctx : 1024;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t r;
    long lineno = 0;
    int rc = 0;
    if (!ids) rc = cli_failf("tokenize", "out of memory");
    while (!rc && (r = getline(&line, &lcap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)r;
        if (len && line[len - 1] == '\n') len--;
        if (ctx) {
            int need;
            if (vlm_tokenizer_encode_ctx(&tok, line, len, ids, (int)ctx, truncate, &need, &err)) {
                rc = err.status == VLM_ERR_SHAPE
                         ? cli_failf("tokenize", "line %ld: %d tokens with SOT/EOT exceed --context-length %ld "
                                     "(use --truncate to cut)", lineno, need, ctx)
                         : cli_fail("tokenize", &err);
                break;
            }
            put_ids(stdout, ids, (int)ctx);
            continue;
        }
        int n;
        for (;;) {
            if (vlm_tokenizer_encode(&tok, line, len, ids + 1, cap - 2, &n, &err)) {
                rc = cli_fail("tokenize", &err);
                break;
            }
            if (n <= cap - 2) break;
            int32_t *p = n < INT_MAX - 2 ? realloc(ids, sizeof *p * ((size_t)n + 2)) : NULL;
            if (!p) {
                rc = cli_failf("tokenize", "line %ld: out of memory for %d tokens", lineno, n);
                break;
            }
            ids = p;
            cap = n + 2;
        }
        if (rc) break;
        ids[0] = vlm_tokenizer_sot(&tok);
        ids[n + 1] = vlm_tokenizer_eot(&tok);
        put_ids(stdout, ids, n + 2);
    }
    if (!rc && ferror(stdin)) rc = cli_failf("tokenize", "reading stdin: %s", strerror(errno));
    if (fflush(stdout) && !rc) rc = cli_failf("tokenize", "writing stdout: %s", strerror(errno));
    free(line);
    free(ids);
    vlm_tokenizer_free(&tok);
    return rc;
}

// ---------------------------------------------------------------- bpe

#define VLM_STR_(x) #x
#define VLM_STR(x) VLM_STR_(x)
static const char *bpe_usage =
    "usage: vlm bpe train --input TEXT --vocab-size N --out FILE\n"
    "\n"
    "Learns a byte-level BPE vocabulary from TEXT (one caption per line),\n"
    "cleaned and pre-tokenised exactly as `vlm tokenize` does, and writes a\n"
    "CLIP-format merges file (gzip if FILE ends in .gz) that --vocab reads.\n"
    "N counts every token: 512 byte tokens + merges + SOT + EOT, so\n"
    "N - 514 merges (514 <= N <= " VLM_STR(VLM_TOKENIZER_MAX_VOCAB) "). Deterministic: the most frequent\n"
    "pair wins, ties go to the byte-wise smallest (first, second) spelling.\n"
    "If the corpus runs out of pairs first, training stops and says so.\n";

int cmd_bpe(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(bpe_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train")) return cli_usagef("bpe", "unknown subcommand '%s' (see vlm bpe --help)", argv[1]);
    const char *input = NULL, *out = NULL;
    long long vocab = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"input", CLI_STR, &input, 0, 0, NULL, NULL},
        {"out", CLI_STR, &out, 0, 0, NULL, NULL},
        {"vocab-size", CLI_INT, &vocab, 514, VLM_TOKENIZER_MAX_VOCAB, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("bpe train", argc - 1, argv + 1, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "bpe train", bpe_usage, &err);
    if (!input || !out || !vocab) return cli_usagef("bpe train", "--input, --vocab-size and --out are required");
    FILE *f = fopen(input, "rb");
    if (!f) return cli_failf("bpe", "%s: %s", input, strerror(errno));
    lines_t l = {0};
    int ok = lines_read(f, &l);
    fclose(f);
    if (!ok || l.n > INT_MAX) {
        lines_free(&l);
        return cli_failf("bpe", "%s: read failed", input);
    }
    vlm_bpe_train_info info;
    double t0 = vlm_now();
    vlm_status st = vlm_bpe_train((const char *const *)l.line, l.len, (int)l.n, (int)vocab, out, &info, &err);
    double dt = vlm_now() - t0;
    long nlines = l.n;
    lines_free(&l);
    if (st) return cli_fail("bpe", &err);
    printf("vlm bpe train: %ld lines, %ld pre-tokens (%ld distinct) -> %d merges, vocab size %d, %.2f s -> %s\n",
           nlines, info.n_words, info.n_unique_words, info.n_merges, info.vocab_size, dt, out);
    if (info.n_skipped)
        printf("vlm bpe train: ignored %ld pre-tokens longer than %d bytes\n", info.n_skipped, VLM_BPE_MAX_WORD);
    if (info.stopped_early)
        fprintf(stderr, "vlm bpe train: warning: the corpus ran out of pairs to merge: vocab size is %d, not %ld\n",
                info.vocab_size, (long)vocab);
    return 0;
}
