// Tokenizer tests: CLIP's reference ids (all 3,028), Python-generated edge
// cases (hostile Unicode, HTML entities, invalid UTF-8), decode, context
// padding/truncation, merges-file parsing and 1 MB hostile lines.
#include "tests/testutil.h"
#include "text/tokenizer.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB "../shared/reference/openai-clip/bpe_simple_vocab_16e6.txt.gz"
#define REF_JSONL "../shared/reference/openai-clip/tokenizer.jsonl"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                p = NULL;
                break;
            }
            p = q;
            cap *= 2;
        }
    }
    fclose(f);
    if (p) p[n] = 0;
    *len = n;
    return p;
}

static size_t unhex(const char *h, char *out) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static size_t despace(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') out[o++] = s[i];
    return o;
}

static int ids_equal_json(const int32_t *ids, int n, json_t *arr) {
    if ((int)json_array_size(arr) != n) return 0;
    for (int i = 0; i < n; i++)
        if (json_integer_value(json_array_get(arr, (size_t)i)) != ids[i]) return 0;
    return 1;
}

// [SOT] + encode + [EOT] into ids (cap >= 2); returns count or -1.
static int encode_full(vlm_tokenizer *tok, const char *s, size_t len, int32_t *ids, int cap) {
    vlm_error err = {0};
    int n;
    if (vlm_tokenizer_encode(tok, s, len, ids + 1, cap - 2, &n, &err)) {
        fprintf(stderr, "encode: %s\n", err.msg);
        return -1;
    }
    if (n > cap - 2) return -1;
    ids[0] = vlm_tokenizer_sot(tok);
    ids[n + 1] = vlm_tokenizer_eot(tok);
    return n + 2;
}

static void test_reference(vlm_tokenizer *tok) {
    size_t len;
    char *all = read_all(tu_src(REF_JSONL), &len);
    CHECK(all, "cannot read %s", REF_JSONL);
    if (!all) return;
    int lines = 0, match = 0, decoded_nospace = 0, exact = 0, exact_eligible = 0;
    static int32_t ids[4096];
    static char dec[65536], cln[65536], d1[65536], d2[65536];
    vlm_error err = {0};
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        CHECK(o, "bad json line %d: %s", lines + 1, je.text);
        if (!o) continue;
        lines++;
        const char *text = json_string_value(json_object_get(o, "text"));
        size_t tlen = json_string_length(json_object_get(o, "text"));
        json_t *want = json_object_get(o, "ids");
        int n = encode_full(tok, text, tlen, ids, 4096);
        if (n >= 0 && ids_equal_json(ids, n, want)) match++;
        else if (lines - match <= 5) fprintf(stderr, "reference mismatch: %s\n", text);

        // decode(encode(x)) gives back the cleaned text: exactly (plus the
        // trailing "</w>" space) when its pre-tokens are space-separated
        // words; otherwise decode puts a space after every pre-token
        // ("it's" -> "it 's "), so only the spaces differ.
        size_t dl = 0, cl = 0;
        CHECK(!vlm_tokenizer_decode(tok, ids + 1, n - 2, dec, sizeof dec, &dl, &err), "%s", err.msg);
        CHECK(!vlm_tokenizer_clean(tok, text, tlen, cln, sizeof cln, &cl, &err), "%s", err.msg);
        size_t a = despace(dec, dl, d1), b = despace(cln, cl, d2);
        if (a == b && !memcmp(d1, d2, a)) decoded_nospace++;
        int words_only = 1;
        for (size_t i = 0; i < cl; i++)
            if (!((cln[i] >= 'a' && cln[i] <= 'z') || cln[i] == ' ')) words_only = 0;
        if (words_only && cl) {
            exact_eligible++;
            if (dl == cl + 1 && !memcmp(dec, cln, cl) && dec[cl] == ' ') exact++;
        }
        json_decref(o);
    }
    free(all);
    printf("reference: %d/%d ids exact, decode==clean (modulo spaces) %d/%d, exact on %d/%d letter-only lines\n",
           match, lines, decoded_nospace, lines, exact, exact_eligible);
    CHECK(lines == 3028, "expected 3028 reference lines, got %d", lines);
    CHECK(match == lines, "%d of %d reference lines differ", lines - match, lines);
    CHECK(decoded_nospace == lines, "decode != clean on %d lines", lines - decoded_nospace);
    CHECK(exact == exact_eligible && exact_eligible > 1000, "exact decode %d/%d", exact, exact_eligible);
}

static void test_edge_cases(vlm_tokenizer *tok) {
    size_t len;
    char *all = read_all(tu_src("tests/fixtures/text/edge_cases.jsonl"), &len);
    CHECK(all, "cannot read edge_cases.jsonl");
    if (!all) return;
    int n_enc = 0, n_dec = 0, bad = 0;
    static int32_t ids[65536];
    static char in[65536], want[65536 * 3], got[65536 * 3];
    vlm_error err = {0};
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        CHECK(o, "bad fixture line");
        if (!o) continue;
        json_t *dids = json_object_get(o, "decode_ids");
        size_t wl = unhex(json_string_value(json_object_get(o, "decode")), want), gl = 0;
        if (dids) {
            int n = (int)json_array_size(dids);
            for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(dids, (size_t)i));
            CHECK(!vlm_tokenizer_decode(tok, ids, n, got, sizeof got, &gl, &err), "%s", err.msg);
            CHECK(gl == wl && !memcmp(got, want, wl), "decode of id list %d differs", n_dec);
            n_dec++;
            json_decref(o);
            continue;
        }
        size_t il = unhex(json_string_value(json_object_get(o, "hex")), in);
        int n = encode_full(tok, in, il, ids, 65536);
        int ok = n >= 0 && ids_equal_json(ids, n, json_object_get(o, "ids"));
        CHECK(!vlm_tokenizer_decode(tok, ids + 1, n - 2, got, sizeof got, &gl, &err), "%s", err.msg);
        ok = ok && gl == wl && !memcmp(got, want, wl);
        wl = unhex(json_string_value(json_object_get(o, "clean")), want);
        CHECK(!vlm_tokenizer_clean(tok, in, il, got, sizeof got, &gl, &err), "%s", err.msg);
        ok = ok && gl == wl && !memcmp(got, want, wl);
        if (!ok && ++bad <= 5) fprintf(stderr, "edge case mismatch: %s\n", json_string_value(json_object_get(o, "hex")));
        n_enc++;
        json_decref(o);
    }
    free(all);
    printf("edge cases: %d encode/clean/decode lines, %d decode-only, %d mismatches\n", n_enc, n_dec, bad);
    CHECK(bad == 0 && n_enc > 500 && n_dec == 100, "edge cases: %d bad of %d", bad, n_enc);
}

static void test_ctx(vlm_tokenizer *tok) {
    vlm_error err = {0};
    int32_t out[8], ref[64];
    const char *s = "a photo of a dog";
    int n = encode_full(tok, s, strlen(s), ref, 64); // SOT a photo of a dog EOT = 7
    CHECK(n == 7, "n %d", n);
    int need = 0;
    CHECK(!vlm_tokenizer_encode_ctx(tok, s, strlen(s), out, 8, 0, &need, &err), "%s", err.msg);
    CHECK(need == 7 && !memcmp(out, ref, 7 * sizeof *out) && out[7] == 0, "padded");
    CHECK(!vlm_tokenizer_encode_ctx(tok, s, strlen(s), out, 7, 0, NULL, &err), "%s", err.msg);
    CHECK(!memcmp(out, ref, 7 * sizeof *out), "exact fit");
    for (int i = 0; i < 8; i++) out[i] = -5;
    need = 0;
    CHECK(vlm_tokenizer_encode_ctx(tok, s, strlen(s), out, 6, 0, &need, &err) == VLM_ERR_SHAPE && need == 7,
          "overflow must fail and report the count");
    CHECK(out[0] == -5, "output untouched on error");
    CHECK(!vlm_tokenizer_encode_ctx(tok, s, strlen(s), out, 5, 1, &need, &err), "%s", err.msg);
    // open_clip: tokens[:5] then last = EOT -> SOT a photo of EOT
    CHECK(need == 7 && out[0] == 49406 && out[1] == ref[1] && out[2] == ref[2] && out[3] == ref[3] && out[4] == 49407,
          "truncate");
    CHECK(!vlm_tokenizer_encode_ctx(tok, s, strlen(s), out, 2, 1, NULL, &err) && out[0] == 49406 && out[1] == 49407,
          "ctx 2");
    CHECK(vlm_tokenizer_encode_ctx(tok, s, strlen(s), out, 1, 1, NULL, &err) == VLM_ERR_ARG, "ctx 1");
    CHECK(!vlm_tokenizer_encode_ctx(tok, "", 0, out, 4, 0, NULL, &err) && out[0] == 49406 && out[1] == 49407 &&
              out[2] == 0 && out[3] == 0,
          "empty text");

    // snprintf-style encode: full count, only cap ids written.
    int32_t small[3] = {-1, -1, -1};
    CHECK(!vlm_tokenizer_encode(tok, s, strlen(s), small, 2, &n, &err) && n == 5, "count %d", n);
    CHECK(small[0] == ref[1] && small[1] == ref[2] && small[2] == -1, "cap respected");
    CHECK(!vlm_tokenizer_encode(tok, s, strlen(s), NULL, 0, &n, &err) && n == 5, "count only");

    // Decoding: SOT/EOT decode to their literal text; bad ids are errors.
    char buf[64];
    size_t dl;
    CHECK(!vlm_tokenizer_decode(tok, ref, n + 2, buf, sizeof buf, &dl, &err), "%s", err.msg);
    CHECK(!strcmp(buf, "<|startoftext|>a photo of a dog <|endoftext|>"), "decode '%s'", buf);
    CHECK(!vlm_tokenizer_decode(tok, ref, n + 2, buf, 5, &dl, &err) && dl == 45 && !strcmp(buf, "<|st"),
          "decode truncation");
    int32_t badid[2] = {1, 49408};
    CHECK(vlm_tokenizer_decode(tok, badid, 2, buf, sizeof buf, &dl, &err) == VLM_ERR_ARG, "bad id");
}

static int same_tokens(vlm_tokenizer *a, vlm_tokenizer *b, const char *s, size_t len) {
    static int32_t x[1 << 16], y[1 << 16];
    int nx = encode_full(a, s, len, x, 1 << 16), ny = encode_full(b, s, len, y, 1 << 16);
    return nx >= 0 && nx == ny && !memcmp(x, y, sizeof *x * (size_t)nx);
}

static void test_loading(vlm_tokenizer *clip) {
    vlm_error err = {0};
    vlm_tokenizer t;
    // In-memory gzip == file.
    size_t gl;
    char *gz = read_all(tu_src(VOCAB), &gl);
    CHECK(gz && !vlm_tokenizer_init_from_memory(&t, gz, gl, &err), "from memory: %s", err.msg);
    if (gz && t.impl) {
        CHECK(vlm_tokenizer_vocab_size(&t) == 49408, "vocab");
        const char *s = "A quick brown fox & &amp; friends, it's 2024!";
        CHECK(same_tokens(clip, &t, s, strlen(s)), "memory vs file");
        vlm_tokenizer_free(&t);
    }
    free(gz);
    // A truncated gzip stream still fails cleanly.
    CHECK(vlm_tokenizer_init_from_memory(&t, "\x1f\x8b\x08\x00garbage", 11, &err) == VLM_ERR_FORMAT, "corrupt gz");
    CHECK(vlm_tokenizer_init(&t, "/nonexistent/merges.txt", &err) == VLM_ERR_IO, "missing file");

    // Plain text, CRLF, trailing blank lines; duplicates: last one wins.
    const char *m1 = "#version: 0.2\r\na b</w>\r\nh i\r\nh i</w>\r\na b</w>\r\n\r\n\n";
    CHECK(!vlm_tokenizer_init_from_memory(&t, m1, strlen(m1), &err), "%s", err.msg);
    if (t.impl) {
        CHECK(vlm_tokenizer_vocab_size(&t) == 512 + 4 + 2 && vlm_tokenizer_n_merges(&t) == 4, "vocab %d",
              vlm_tokenizer_vocab_size(&t));
        CHECK(vlm_tokenizer_sot(&t) == 516 && vlm_tokenizer_eot(&t) == 517, "specials");
        int32_t ids[8];
        int n;
        CHECK(!vlm_tokenizer_encode(&t, "ab hi", 5, ids, 8, &n, &err) && n == 2 && ids[0] == 515 && ids[1] == 514,
              "duplicate merges: n=%d %d %d", n, ids[0], ids[1]);
        CHECK(!vlm_tokenizer_encode(&t, "hix", 3, ids, 8, &n, &err) && n == 2 && ids[0] == 513, "hi x");
        vlm_tokenizer_free(&t);
    }
    const char *bad[] = {
        "",                          // no header
        "#h\na b c\n",              // 3 fields
        "#h\na\n",                   // 1 field
        "#h\na b\n\nc d\n",          // blank line inside
        "#h\na \xe2\x82\xac\n",      // U+20AC is not in the byte alphabet
        "#h\na \xff\n",              // invalid UTF-8
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vlm_status st = vlm_tokenizer_init_from_memory(&t, bad[i], strlen(bad[i]), &err);
        CHECK(st == VLM_ERR_FORMAT && t.impl == NULL, "bad merges %zu accepted (%d)", i, st);
    }
    // Header only: 0 merges, vocab 514, every word is bytes.
    CHECK(!vlm_tokenizer_init_from_memory(&t, "#h", 2, &err) && vlm_tokenizer_vocab_size(&t) == 514, "header only");
    vlm_tokenizer_free(&t);
    vlm_tokenizer_free(&t); // double free is harmless
}

static void test_hostile(vlm_tokenizer *tok) {
    vlm_error err = {0};
    size_t L = 1 << 20;
    char *s = malloc(L), *cln = malloc(3 * L + 16), *dec = malloc(3 * L + 16);
    int32_t *ids = malloc(sizeof *ids * (L + 2));
    if (!s || !cln || !dec || !ids) {
        CHECK(0, "oom");
        return;
    }
    uint64_t x = 88172645463325252ull;
    for (int kind = 0; kind < 7; kind++) {
        for (size_t i = 0; i < L; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            switch (kind) {
            case 0: s[i] = (char)(x & 0xff); break;                       // random bytes (NUL, invalid UTF-8)
            case 1: s[i] = 'a' + (char)(x % 3); break;                    // one 1 MB word (heap BPE)
            case 2: s[i] = "\xcc\x81\xcc\x96"[i % 4]; break;              // alternating combining marks
            case 3: s[i] = "&amp;"[i % 5]; break;                         // entities
            case 4: s[i] = " \t\r"[x % 3]; break;                         // only whitespace
            case 5: s[i] = (char)('0' + x % 10); break;                   // 1M one-digit pre-tokens
            case 6: s[i] = "\xce\xa3'"[i % 3]; break;                     // sigmas and apostrophes
            }
        }
        int n = 0;
        vlm_status st = vlm_tokenizer_encode(tok, s, L, ids, (int)L, &n, &err);
        CHECK(!st, "kind %d: %s", kind, err.msg);
        CHECK(n <= (int)L, "kind %d: %d tokens", kind, n);
        if (st || n > (int)L) continue;
        size_t dl = 0, cl = 0;
        CHECK(!vlm_tokenizer_decode(tok, ids, n, dec, 3 * L + 16, &dl, &err), "%s", err.msg);
        CHECK(!vlm_tokenizer_clean(tok, s, L, cln, 3 * L + 16, &cl, &err), "%s", err.msg);
        // Round trip modulo spaces (decode adds one after every pre-token).
        size_t a = despace(dec, dl, dec), b = despace(cln, cl, cln);
        CHECK(a == b && !memcmp(dec, cln, a), "kind %d: decode(encode(x)) != clean(x)", kind);
        if (kind == 4) CHECK(n == 0, "whitespace gives no tokens");
        if (kind == 5) CHECK(n == (int)L, "digits: one token each");
        int32_t ctx[77];
        CHECK(!vlm_tokenizer_encode_ctx(tok, s, L, ctx, 77, 1, NULL, &err) && ctx[76] == (kind == 4 ? 0 : 49407),
              "kind %d truncate", kind);
    }
    // Cache sizes must not change results: none, tiny (constant eviction).
    vlm_tokenizer_set_cache(tok, 0, &err);
    int n0;
    for (size_t i = 0; i < L; i++) s[i] = "abcdefgh "[(i * 7 + i / 9) % 9];
    vlm_tokenizer_encode(tok, s, 200000, ids, (int)L, &n0, &err);
    int32_t *ids2 = malloc(sizeof *ids2 * (L + 2));
    int n1;
    vlm_tokenizer_set_cache(tok, 3, &err);
    vlm_tokenizer_encode(tok, s, 200000, ids2, (int)L, &n1, &err);
    CHECK(n0 == n1 && !memcmp(ids, ids2, sizeof *ids * (size_t)n0), "cache changes results");
    CHECK(vlm_tokenizer_set_cache(tok, -1, &err) == VLM_ERR_ARG, "negative cache");
    vlm_tokenizer_set_cache(tok, 16384, &err);
    free(ids2);
    free(s);
    free(cln);
    free(dec);
    free(ids);
}

int main(void) {
    vlm_error err = {0};
    vlm_tokenizer tok;
    if (vlm_tokenizer_init(&tok, tu_src(VOCAB), &err)) {
        fprintf(stderr, "cannot load %s: %s\n", VOCAB, err.msg);
        return 1;
    }
    CHECK(vlm_tokenizer_vocab_size(&tok) == 49408, "vocab %d", vlm_tokenizer_vocab_size(&tok));
    CHECK(vlm_tokenizer_sot(&tok) == 49406 && vlm_tokenizer_eot(&tok) == 49407, "special ids");
    CHECK(vlm_tokenizer_n_merges(&tok) == 48894, "merges %d", vlm_tokenizer_n_merges(&tok));
    test_reference(&tok);
    test_edge_cases(&tok);
    test_ctx(&tok);
    test_loading(&tok);
    test_hostile(&tok);
    vlm_tokenizer_free(&tok);
    return tu_done("test_tokenizer");
}
