// BPE training tests: determinism (memory, plain and gzip files), the
// vocabulary layout (SOT/EOT highest), round trips with the trained vocab,
// the tie-break rule, early stop and hostile training text.
#include "tests/testutil.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *adj[] = {"red", "small", "happy", "wooden", "old", "shiny", "striped", "fluffy", "tall",
                            "blue", "broken", "sleepy", "crowded", "empty", "snowy", "tiny"};
static const char *noun[] = {"dog", "cat", "car", "bicycle", "table", "house", "bird", "tree", "boat", "person",
                             "street", "kitchen", "beach", "train", "horse", "pizza", "umbrella", "window"};
static const char *prep[] = {"on", "in", "next to", "under", "near", "behind"};
static const char *lead[] = {"a photo of", "an image of", "a close-up of", "A PICTURE OF", "", "there's"};

static const char *pick(uint64_t *x, const char *const *arr, size_t n) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return arr[*x % n];
}
#define PICK(arr) pick(&x, arr, sizeof arr / sizeof arr[0])

// Deterministic synthetic captions ("a photo of a fluffy cat next to the boat.").
static char **make_corpus(int n) {
    char **t = malloc(sizeof *t * (size_t)n);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        const char *l = PICK(lead), *a = PICK(adj), *n1 = PICK(noun), *p = PICK(prep), *n2 = PICK(noun);
        t[i] = malloc(160);
        snprintf(t[i], 160, "%s a %s %s %s the %s%s", l, a, n1, p, n2,
                 i % 5 == 0 ? "." : i % 7 == 0 ? " at night, 2 people" : "");
    }
    return t;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = 0;
    *len = (size_t)n;
    return p;
}

static size_t despace(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') out[o++] = s[i];
    return o;
}

static void test_train_and_roundtrip(void) {
    enum { N = 3000, V = 600 };
    char **corpus = make_corpus(N);
    vlm_error err = {0};
    vlm_bpe_train_info info;
    char *m1 = NULL, *m2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK(!vlm_bpe_train_mem((const char *const *)corpus, NULL, N, V, &m1, &l1, &info, &err), "%s", err.msg);
    CHECK(!vlm_bpe_train_mem((const char *const *)corpus, NULL, N, V, &m2, &l2, NULL, &err), "%s", err.msg);
    CHECK(m1 && m2 && l1 == l2 && !memcmp(m1, m2, l1), "training is not deterministic");
    CHECK(info.vocab_size == V && info.n_merges == V - 514 && !info.stopped_early, "info %d %d %d", info.vocab_size,
          info.n_merges, info.stopped_early);
    CHECK(info.n_unique_words > 30 && info.n_words > N * 6, "words %ld %ld", info.n_words, info.n_unique_words);
    // Format: header line, then V-514 "a b" lines, no trailing newline.
    int nl = 0;
    for (size_t i = 0; i < l1; i++) nl += m1[i] == '\n';
    CHECK(m1[0] == '#' && nl == V - 514 && m1[l1 - 1] != '\n', "format: %d newlines", nl);

    // Files: plain and gzip, twice each, byte-identical, and loadable.
    char p1[4096], p2[4096], pg1[4096], pg2[4096];
    snprintf(p1, sizeof p1, "%s/bpe_train_test_1.txt", VLM_BINARY_DIR);
    snprintf(p2, sizeof p2, "%s/bpe_train_test_2.txt", VLM_BINARY_DIR);
    snprintf(pg1, sizeof pg1, "%s/bpe_train_test_1.txt.gz", VLM_BINARY_DIR);
    snprintf(pg2, sizeof pg2, "%s/bpe_train_test_2.txt.gz", VLM_BINARY_DIR);
    const char *paths[4] = {p1, p2, pg1, pg2};
    for (int k = 0; k < 4; k++)
        CHECK(!vlm_bpe_train((const char *const *)corpus, NULL, N, V, paths[k], NULL, &err), "%s", err.msg);
    size_t fl1, fl2, gl1, gl2;
    char *f1 = read_file(p1, &fl1), *f2 = read_file(p2, &fl2), *g1 = read_file(pg1, &gl1), *g2 = read_file(pg2, &gl2);
    CHECK(f1 && f2 && fl1 == l1 && fl2 == l1 && !memcmp(f1, m1, l1) && !memcmp(f2, m1, l1), "plain files differ");
    CHECK(g1 && g2 && gl1 == gl2 && !memcmp(g1, g2, gl1) && gl1 > 2 && (uint8_t)g1[0] == 0x1f, "gzip files differ");

    vlm_tokenizer tm, tf, tg;
    CHECK(!vlm_tokenizer_init_from_memory(&tm, m1, l1, &err), "%s", err.msg);
    CHECK(!vlm_tokenizer_init(&tf, p1, &err), "%s", err.msg);
    CHECK(!vlm_tokenizer_init(&tg, pg1, &err), "%s", err.msg);
    if (tm.impl && tf.impl && tg.impl) {
        CHECK(vlm_tokenizer_vocab_size(&tm) == V && vlm_tokenizer_sot(&tm) == V - 2 && vlm_tokenizer_eot(&tm) == V - 1,
              "SOT/EOT must be the two highest ids");
        CHECK(vlm_tokenizer_vocab_size(&tg) == V && vlm_tokenizer_vocab_size(&tf) == V, "file vocab sizes");
        int32_t a[256], b[256];
        char dec[1024], cln[1024], d1[1024], d2[1024];
        int bad = 0, exact = 0, eligible = 0;
        long bytes = 0, ntok = 0;
        for (int i = 0; i < N; i++) {
            int na, nb;
            size_t len = strlen(corpus[i]), dl, cl;
            vlm_tokenizer_encode(&tm, corpus[i], len, a, 256, &na, &err);
            vlm_tokenizer_encode(&tg, corpus[i], len, b, 256, &nb, &err);
            if (na != nb || memcmp(a, b, sizeof *a * (size_t)na)) bad++;
            for (int k = 0; k < na; k++)
                if (a[k] < 0 || a[k] >= V - 2) bad++; // text never produces SOT/EOT here
            vlm_tokenizer_decode(&tm, a, na, dec, sizeof dec, &dl, &err);
            vlm_tokenizer_clean(&tm, corpus[i], len, cln, sizeof cln, &cl, &err);
            size_t x = despace(dec, dl, d1), y = despace(cln, cl, d2);
            if (x != y || memcmp(d1, d2, x)) bad++;
            int words_only = 1;
            for (size_t k = 0; k < cl; k++)
                if (!((cln[k] >= 'a' && cln[k] <= 'z') || cln[k] == ' ')) words_only = 0;
            if (words_only && cl) {
                eligible++;
                exact += dl == cl + 1 && !memcmp(dec, cln, cl) && dec[cl] == ' ';
            }
            bytes += (long)cl;
            ntok += na;
        }
        printf("trained vocab %d: %d/%d exact round trips on letter-only captions, %.2f bytes/token\n", V, exact,
               eligible, (double)bytes / (double)ntok);
        CHECK(bad == 0, "%d round-trip / consistency failures", bad);
        CHECK(exact == eligible && eligible > N / 3, "exact %d/%d", exact, eligible);
        CHECK((double)bytes / (double)ntok > 2.0, "the trained merges should compress captions (bytes alone: ~1.2)");
    }
    vlm_tokenizer_free(&tm);
    vlm_tokenizer_free(&tf);
    vlm_tokenizer_free(&tg);
    for (int k = 0; k < 4; k++) remove(paths[k]);
    free(f1), free(f2), free(g1), free(g2), free(m1), free(m2);
    for (int i = 0; i < N; i++) free(corpus[i]);
    free(corpus);
}

static void test_rules(void) {
    vlm_error err = {0};
    vlm_bpe_train_info info;
    char *m = NULL;
    size_t l;
    // Highest count first: (a, b</w>) occurs twice, (c, d</w>) once.
    const char *t1[] = {"ab ab cd"};
    CHECK(!vlm_bpe_train_mem(t1, NULL, 1, 515, &m, &l, &info, &err), "%s", err.msg);
    CHECK(m && strstr(m, "\na b</w>") && !strchr(strchr(m, '\n') + 1, '\n'), "count rule: %s", m ? m : "");
    free(m);
    // Tie: both pairs once -> the byte-wise smaller spelling ("a" < "c").
    const char *t2[] = {"cd ab"};
    CHECK(!vlm_bpe_train_mem(t2, NULL, 1, 515, &m, &l, &info, &err), "%s", err.msg);
    CHECK(m && strstr(m, "\na b</w>"), "tie rule: %s", m ? m : "");
    free(m);
    // Early stop: "ab" and "cd" allow two merges only.
    CHECK(!vlm_bpe_train_mem(t2, NULL, 1, 49408, &m, &l, &info, &err), "%s", err.msg);
    CHECK(info.stopped_early && info.n_merges == 2 && info.vocab_size == 516, "early stop %d %d", info.stopped_early,
          info.n_merges);
    vlm_tokenizer t;
    CHECK(!vlm_tokenizer_init_from_memory(&t, m, l, &err) && vlm_tokenizer_eot(&t) == 515, "early-stopped vocab");
    vlm_tokenizer_free(&t);
    free(m);
    // Empty corpus: no merges, still a valid vocabulary.
    CHECK(!vlm_bpe_train_mem(NULL, NULL, 0, 600, &m, &l, &info, &err) && info.n_merges == 0 && info.stopped_early,
          "empty corpus");
    free(m);
    CHECK(vlm_bpe_train_mem(t1, NULL, 1, 513, &m, &l, &info, &err) == VLM_ERR_ARG, "vocab < 514");
    CHECK(vlm_bpe_train_mem(t1, NULL, 1, 49409, &m, &l, &info, &err) == VLM_ERR_ARG, "vocab > max");
    CHECK(vlm_bpe_train(t1, NULL, 1, 520, "/nonexistent/dir/x.txt", &info, &err) == VLM_ERR_IO, "unwritable");
}

static void test_hostile_training(void) {
    vlm_error err = {0};
    vlm_bpe_train_info info;
    size_t L = 1 << 20;
    char *big = malloc(L);
    uint64_t x = 1;
    for (size_t i = 0; i < L; i++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, big[i] = (char)(x & 0xff);
    const char *texts[] = {big, "a\0b\0c caf\xc3\xa9 \xff\xfe invalid", "", "<|endoftext|> x", "aaaaaaaaaaaa"};
    size_t lens[] = {L, 22, 0, 15, 12};
    char *m = NULL;
    size_t l;
    CHECK(!vlm_bpe_train_mem(texts, lens, 5, 2000, &m, &l, &info, &err), "%s", err.msg);
    vlm_tokenizer t;
    CHECK(m && !vlm_tokenizer_init_from_memory(&t, m, l, &err), "%s", err.msg);
    if (m && t.impl) {
        int32_t ids[64];
        int n;
        char dec[256];
        size_t dl;
        CHECK(!vlm_tokenizer_encode(&t, texts[1], lens[1], ids, 64, &n, &err) && n <= 64, "encode");
        CHECK(!vlm_tokenizer_decode(&t, ids, n, dec, sizeof dec, &dl, &err), "decode");
        // NUL and U+FFFD survive the round trip.
        CHECK(dl > 3 && dec[0] == 'a' && dec[1] == ' ' && dec[2] == 0, "decode of NUL text");
        vlm_tokenizer_free(&t);
    }
    free(m);
    free(big);
}

int main(void) {
    test_train_and_roundtrip();
    test_rules();
    test_hostile_training();
    return tu_done("test_bpe_train");
}
