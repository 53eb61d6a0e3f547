// CLIP BPE tokenizer: merges-file loading, word-level BPE (simple_tokenizer.py's
// bpe(), with a heap for long words), a bounded word cache, encode and decode.
#include "text/tokenizer.h"
#include "text/text_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CACHE_KEY 30               // longest cached word (bytes); ids <= bytes
#define DEFAULT_CACHE_SLOTS 16384
#define MAX_CACHE_SLOTS (1 << 22)
#define SHORT_WORD 48              // up to here the quadratic loop beats the heap
#define MAX_MERGES_TEXT ((size_t)256 << 20) // decompressed-size cap (gzip bombs)

typedef struct {
    uint32_t hash;
    uint8_t klen, nids; // klen 0: empty
    uint8_t key[CACHE_KEY];
    uint16_t ids[CACHE_KEY]; // vocab <= 49408 fits
} cache_slot;

typedef struct {
    uint64_t key; // (a << 32 | b), PAIR_EMPTY if free
    int32_t rank, merged;
} pair_slot;
#define PAIR_EMPTY UINT64_MAX

typedef struct {
    int32_t rank, pos, a, b;
} heap_ent;

struct vlm_tokenizer_impl {
    int n_vocab, n_merges;
    int32_t sot, eot;
    uint8_t *arena;     // token bytes ("</w>" spelled out as 4 bytes)
    uint32_t *off;      // token i = arena[off[i] .. off[i+1])
    int32_t *enc;       // bytes -> id, open addressing, -1 = free
    uint32_t enc_mask;
    pair_slot *pairs;
    uint32_t pair_mask;
    int32_t byte_id[256], byte_eow_id[256];

    cache_slot *cache;
    uint32_t cache_mask;

    vlm_text_scratch scratch;
    uint8_t *word;
    size_t word_cap;
    int32_t *sym, *next, *prev;
    size_t sym_cap, next_cap, prev_cap;
    heap_ent *heap, *pend;
    size_t heap_cap, pend_cap;
};

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static inline size_t tok_len(const struct vlm_tokenizer_impl *t, int32_t id) {
    return t->off[id + 1] - t->off[id];
}

static int32_t enc_get(const struct vlm_tokenizer_impl *t, const uint8_t *p, size_t n) {
    uint32_t h = (uint32_t)hash_bytes(p, n) & t->enc_mask;
    for (;; h = (h + 1) & t->enc_mask) {
        int32_t id = t->enc[h];
        if (id < 0) return -1;
        if (tok_len(t, id) == n && !memcmp(t->arena + t->off[id], p, n)) return id;
    }
}

// Later ids replace earlier ones with the same bytes, as dict(zip(vocab, range)).
static void enc_put(struct vlm_tokenizer_impl *t, int32_t id) {
    const uint8_t *p = t->arena + t->off[id];
    size_t n = tok_len(t, id);
    uint32_t h = (uint32_t)hash_bytes(p, n) & t->enc_mask;
    for (;; h = (h + 1) & t->enc_mask) {
        int32_t o = t->enc[h];
        if (o < 0 || (tok_len(t, o) == n && !memcmp(t->arena + t->off[o], p, n))) {
            t->enc[h] = id;
            return;
        }
    }
}

static inline const pair_slot *pair_find(const struct vlm_tokenizer_impl *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t h = (uint32_t)mix64(key) & t->pair_mask;
    for (;; h = (h + 1) & t->pair_mask) {
        const pair_slot *s = &t->pairs[h];
        if (s->key == key) return s;
        if (s->key == PAIR_EMPTY) return NULL;
    }
}

// Later merges of the same pair replace earlier ranks (dict(zip(merges, range))).
static void pair_put(struct vlm_tokenizer_impl *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t h = (uint32_t)mix64(key) & t->pair_mask;
    for (;; h = (h + 1) & t->pair_mask) {
        pair_slot *s = &t->pairs[h];
        if (s->key == key || s->key == PAIR_EMPTY) {
            s->key = key;
            s->rank = rank;
            s->merged = merged;
            return;
        }
    }
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

// ------------------------------------------------------------ loading

static int is_ws(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// Counts '\n' in p[0..n) up to limit.
static size_t count_lines(const char *p, size_t n, size_t have, size_t limit) {
    for (size_t i = 0; i < n && have < limit; i++) have += p[i] == '\n';
    return have;
}

// Reads a (gzip or plain) file, stopping once CLIP's line window is read.
static vlm_status read_file(const char *path, char **buf, size_t *len, vlm_error *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 20, n = 0, lines = 0;
    char *p = malloc(cap);
    if (!p) {
        gzclose(f);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    }
    for (;;) {
        if (cap - n < (1 << 16)) {
            if (cap >= MAX_MERGES_TEXT) {
                free(p);
                gzclose(f);
                return vlm_errorf(err, VLM_ERR_FORMAT, "%s: more than %zu MB before the last merge line", path,
                                  MAX_MERGES_TEXT >> 20);
            }
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                gzclose(f);
                return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            }
            p = q;
            cap *= 2;
        }
        int r = gzread(f, p + n, (unsigned)(cap - n));
        if (r < 0) {
            int zerr;
            const char *m = gzerror(f, &zerr);
            vlm_status st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: %s", path, m ? m : "read error");
            free(p);
            gzclose(f);
            return st;
        }
        if (r == 0) break;
        lines = count_lines(p + n, (size_t)r, lines, VLM_TEXT_MAX_MERGES + 1);
        n += (size_t)r;
        if (lines > VLM_TEXT_MAX_MERGES) break; // the rest is never used
    }
    gzclose(f);
    *buf = p;
    *len = n;
    return VLM_OK;
}

static vlm_status gunzip_mem(const uint8_t *data, size_t len, char **buf, size_t *out_len, vlm_error *err) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) return vlm_errorf(err, VLM_ERR_OOM, "merges: inflateInit failed");
    size_t cap = 1 << 20, n = 0, lines = 0;
    char *p = malloc(cap);
    if (!p) {
        inflateEnd(&z);
        return vlm_errorf(err, VLM_ERR_OOM, "merges: out of memory");
    }
    const uint8_t *in = data;
    size_t in_left = len;
    for (;;) {
        if (cap - n < (1 << 16)) {
            char *q = cap < MAX_MERGES_TEXT ? realloc(p, cap * 2) : NULL;
            if (!q) {
                free(p);
                inflateEnd(&z);
                return cap < MAX_MERGES_TEXT ? vlm_errorf(err, VLM_ERR_OOM, "merges: out of memory")
                                             : vlm_errorf(err, VLM_ERR_FORMAT, "merges: decompressed text too large");
            }
            p = q;
            cap *= 2;
        }
        z.next_in = (Bytef *)in;
        z.avail_in = in_left > UINT_MAX ? UINT_MAX : (unsigned)in_left;
        z.next_out = (Bytef *)p + n;
        z.avail_out = (unsigned)(cap - n);
        unsigned before_in = z.avail_in;
        int r = inflate(&z, Z_NO_FLUSH);
        size_t got = (cap - n) - z.avail_out;
        in += before_in - z.avail_in;
        in_left -= before_in - z.avail_in;
        lines = count_lines(p + n, got, lines, VLM_TEXT_MAX_MERGES + 1);
        n += got;
        if (r == Z_STREAM_END || lines > VLM_TEXT_MAX_MERGES) break;
        if (r != Z_OK && !(r == Z_BUF_ERROR && got)) {
            free(p);
            inflateEnd(&z);
            return vlm_errorf(err, VLM_ERR_FORMAT, "merges: corrupt gzip data (%s)", z.msg ? z.msg : "truncated");
        }
    }
    inflateEnd(&z);
    *buf = p;
    *out_len = n;
    return VLM_OK;
}

// Merges-file spelling (byte-alphabet characters) -> raw bytes. Returns -1
// with the offending code point in *bad on a character outside the alphabet.
static long field_to_bytes(const uint8_t *s, size_t n, uint8_t *dst, int32_t *bad) {
    size_t i = 0, o = 0;
    while (i < n) {
        int32_t c;
        size_t k = vlm_text_utf8_decode1(s + i, n - i, &c);
        if (!k) {
            *bad = -1;
            return -1;
        }
        int b = vlm_text_unicode_to_byte(c);
        if (b < 0) {
            *bad = c;
            return -1;
        }
        dst[o++] = (uint8_t)b;
        i += k;
    }
    return (long)o;
}

static vlm_status parse_merges(struct vlm_tokenizer_impl *t, const char *text, size_t len, vlm_error *err) {
    const uint8_t *p = (const uint8_t *)text;
    // The first line is a header, skipped whatever it says (CLIP's reads
    // "\"bpe_simple_vocab_16e6.txt#version: 0.2").
    size_t i = 0;
    while (i < len && p[i] != '\n') i++;
    if (!len) return vlm_errorf(err, VLM_ERR_FORMAT, "merges: empty file (expected a header line, then merges)");
    i = i < len ? i + 1 : len;

    size_t arena_cap = 256 * 1 + 256 * 5 + (len - i) + 64;
    t->arena = malloc(arena_cap);
    t->off = malloc(sizeof *t->off * (VLM_TOKENIZER_MAX_VOCAB + 1));
    int32_t *split = malloc(sizeof *split * VLM_TEXT_MAX_MERGES);
    if (!t->arena || !t->off || !split) {
        free(split);
        return vlm_errorf(err, VLM_ERR_OOM, "merges: out of memory");
    }
    size_t a = 0;
    int nt = 0;
    for (int r = 0; r < 256; r++) { // bytes in CLIP's order
        int b = 0;
        while (vlm_text_byte_rank((uint8_t)b) != r) b++;
        t->off[nt++] = (uint32_t)a;
        t->arena[a++] = (uint8_t)b;
    }
    for (int r = 0; r < 256; r++) {
        t->off[nt] = (uint32_t)a;
        t->arena[a++] = t->arena[t->off[r]];
        memcpy(t->arena + a, "</w>", 4);
        a += 4;
        nt++;
    }
    int m = 0, line = 1;
    int blank_line = 0; // first empty line seen: only allowed at the end
    while (i < len && m < VLM_TEXT_MAX_MERGES) {
        size_t e = i;
        while (e < len && p[e] != '\n') e++;
        line++;
        size_t fs[3], fe[3];
        int nf = 0;
        for (size_t k = i; k < e;) {
            while (k < e && is_ws(p[k])) k++;
            if (k >= e) break;
            size_t s0 = k;
            while (k < e && !is_ws(p[k])) k++;
            if (nf < 3) fs[nf] = s0, fe[nf] = k;
            nf++;
        }
        i = e < len ? e + 1 : len;
        if (nf == 0) {
            if (!blank_line) blank_line = line;
            continue;
        }
        if (blank_line) {
            free(split);
            return vlm_errorf(err, VLM_ERR_FORMAT, "merges: line %d is empty but merges follow it", blank_line);
        }
        if (nf != 2) {
            free(split);
            return vlm_errorf(err, VLM_ERR_FORMAT, "merges: line %d has %d fields, expected 2 (\"a b\")", line, nf);
        }
        t->off[nt] = (uint32_t)a;
        int32_t bad = 0;
        long la = field_to_bytes(p + fs[0], fe[0] - fs[0], t->arena + a, &bad);
        long lb = la < 0 ? -1 : field_to_bytes(p + fs[1], fe[1] - fs[1], t->arena + a + la, &bad);
        if (lb < 0) {
            free(split);
            if (bad < 0) return vlm_errorf(err, VLM_ERR_FORMAT, "merges: line %d is not valid UTF-8", line);
            return vlm_errorf(err, VLM_ERR_FORMAT,
                              "merges: line %d: U+%04X is not a character of the byte-level BPE alphabet", line,
                              (unsigned)bad);
        }
        split[m++] = (int32_t)la;
        a += (size_t)(la + lb);
        nt++;
    }
    t->n_merges = m;
    const char *spec[2] = {VLM_TEXT_SOT, VLM_TEXT_EOT};
    for (int k = 0; k < 2; k++) {
        t->off[nt++] = (uint32_t)a;
        memcpy(t->arena + a, spec[k], strlen(spec[k]));
        a += strlen(spec[k]);
    }
    t->off[nt] = (uint32_t)a;
    t->n_vocab = nt;

    t->enc_mask = pow2_at_least((size_t)nt * 2) - 1;
    t->pair_mask = pow2_at_least((size_t)m * 2 + 2) - 1;
    t->enc = malloc(sizeof *t->enc * (t->enc_mask + 1));
    t->pairs = malloc(sizeof *t->pairs * (t->pair_mask + 1));
    if (!t->enc || !t->pairs) {
        free(split);
        return vlm_errorf(err, VLM_ERR_OOM, "merges: out of memory");
    }
    memset(t->enc, 0xff, sizeof *t->enc * (t->enc_mask + 1));
    for (uint32_t k = 0; k <= t->pair_mask; k++) t->pairs[k].key = PAIR_EMPTY;
    for (int32_t id = 0; id < nt; id++) enc_put(t, id);

    // Symbols are canonical ids (the id the encoder dict gives a string), so
    // duplicate strings in a hand-made file behave as in Python.
    for (int b = 0; b < 256; b++) {
        uint8_t w[5] = {(uint8_t)b, '<', '/', 'w', '>'};
        t->byte_id[b] = enc_get(t, w, 1);
        t->byte_eow_id[b] = enc_get(t, w, 5);
    }
    for (int r = 0; r < m; r++) {
        int32_t id = 512 + r;
        const uint8_t *s = t->arena + t->off[id];
        size_t la = (size_t)split[r], n = tok_len(t, id);
        int32_t ia = enc_get(t, s, la), ib = enc_get(t, s + la, n - la);
        if (ia < 0 || ib < 0) continue; // a part that is no token never occurs in a word
        pair_put(t, ia, ib, r, enc_get(t, s, n));
    }
    free(split);
    t->sot = enc_get(t, (const uint8_t *)VLM_TEXT_SOT, strlen(VLM_TEXT_SOT));
    t->eot = enc_get(t, (const uint8_t *)VLM_TEXT_EOT, strlen(VLM_TEXT_EOT));
    return VLM_OK;
}

static void impl_free(struct vlm_tokenizer_impl *t) {
    if (!t) return;
    free(t->arena);
    free(t->off);
    free(t->enc);
    free(t->pairs);
    free(t->cache);
    vlm_text_scratch_free(&t->scratch);
    free(t->word);
    free(t->sym);
    free(t->next);
    free(t->prev);
    free(t->heap);
    free(t->pend);
    free(t);
}

static vlm_status init_text(vlm_tokenizer *tok, const char *text, size_t len, vlm_error *err) {
    struct vlm_tokenizer_impl *t = calloc(1, sizeof *t);
    if (!t) return vlm_errorf(err, VLM_ERR_OOM, "tokenizer: out of memory");
    vlm_status st = parse_merges(t, text, len, err);
    if (!st) {
        t->cache_mask = DEFAULT_CACHE_SLOTS - 1;
        t->cache = calloc(DEFAULT_CACHE_SLOTS, sizeof *t->cache);
        if (!t->cache) st = vlm_errorf(err, VLM_ERR_OOM, "tokenizer: out of memory");
    }
    if (st) {
        impl_free(t);
        return st;
    }
    tok->impl = t;
    return VLM_OK;
}

vlm_status vlm_tokenizer_init_from_memory(vlm_tokenizer *tok, const void *data, size_t len, vlm_error *err) {
    if (!tok) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: NULL tokenizer");
    tok->impl = NULL;
    if (!data && len) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: NULL data");
    const uint8_t *d = data;
    if (len >= 2 && d[0] == 0x1f && d[1] == 0x8b) {
        char *buf = NULL;
        size_t n = 0;
        vlm_status st = gunzip_mem(d, len, &buf, &n, err);
        if (st) return st;
        st = init_text(tok, buf, n, err);
        free(buf);
        return st;
    }
    return init_text(tok, data, len, err);
}

vlm_status vlm_tokenizer_init(vlm_tokenizer *tok, const char *path, vlm_error *err) {
    if (!tok) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: NULL tokenizer");
    tok->impl = NULL;
    if (!path) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: NULL merges path");
    char *buf = NULL;
    size_t n = 0;
    errno = 0;
    vlm_status st = read_file(path, &buf, &n, err);
    if (st) return st;
    st = init_text(tok, buf, n, err);
    free(buf);
    if (st) vlm_error_prefix(err, "%s", path);
    return st;
}

void vlm_tokenizer_free(vlm_tokenizer *tok) {
    if (!tok) return;
    impl_free(tok->impl);
    tok->impl = NULL;
}

// An uninitialised (or failed) tokenizer reports 0 / -1 rather than crashing.
int vlm_tokenizer_vocab_size(const vlm_tokenizer *tok) { return tok && tok->impl ? tok->impl->n_vocab : 0; }
int32_t vlm_tokenizer_sot(const vlm_tokenizer *tok) { return tok && tok->impl ? tok->impl->sot : -1; }
int32_t vlm_tokenizer_eot(const vlm_tokenizer *tok) { return tok && tok->impl ? tok->impl->eot : -1; }
int vlm_tokenizer_n_merges(const vlm_tokenizer *tok) { return tok && tok->impl ? tok->impl->n_merges : 0; }

vlm_status vlm_tokenizer_set_cache(vlm_tokenizer *tok, int slots, vlm_error *err) {
    if (!tok || !tok->impl) return vlm_errorf(err, VLM_ERR_STATE, "tokenizer: not initialised");
    if (slots < 0 || slots > MAX_CACHE_SLOTS)
        return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: cache size %d not in [0, %d]", slots, MAX_CACHE_SLOTS);
    struct vlm_tokenizer_impl *t = tok->impl;
    free(t->cache);
    t->cache = NULL;
    t->cache_mask = 0;
    if (!slots) return VLM_OK;
    uint32_t n = pow2_at_least((size_t)slots);
    t->cache = calloc(n, sizeof *t->cache);
    if (!t->cache) return vlm_errorf(err, VLM_ERR_OOM, "tokenizer: out of memory for a %u-slot cache", n);
    t->cache_mask = n - 1;
    return VLM_OK;
}

// ---------------------------------------------------------------- BPE

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static inline int heap_less(const heap_ent *x, const heap_ent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

// simple_tokenizer.py's bpe(): repeatedly take the lowest-ranked adjacent
// pair and merge all its occurrences left to right. Symbols in t->sym; returns
// the number left. Long words use a (rank, position) heap over a linked list,
// processing one rank fully before any pair created meanwhile, which gives
// the same result in O(m log m) instead of O(m^2).
static vlm_status bpe_word(struct vlm_tokenizer_impl *t, const uint8_t *w, size_t m, size_t *n_out,
                           vlm_error *err) {
    if (!grow((void **)&t->sym, &t->sym_cap, m, sizeof *t->sym)) return vlm_errorf(err, VLM_ERR_OOM, "bpe: out of memory");
    int32_t *sym = t->sym;
    for (size_t i = 0; i + 1 < m; i++) sym[i] = t->byte_id[w[i]];
    sym[m - 1] = t->byte_eow_id[w[m - 1]];
    if (m <= SHORT_WORD) {
        size_t len = m;
        while (len > 1) {
            int32_t best = INT32_MAX, a = 0, b = 0, merged = 0;
            for (size_t i = 0; i + 1 < len; i++) {
                const pair_slot *p = pair_find(t, sym[i], sym[i + 1]);
                if (p && p->rank < best) best = p->rank, a = sym[i], b = sym[i + 1], merged = p->merged;
            }
            if (best == INT32_MAX) break;
            size_t o = 0;
            for (size_t i = 0; i < len;) {
                if (i + 1 < len && sym[i] == a && sym[i + 1] == b) {
                    sym[o++] = merged;
                    i += 2;
                } else {
                    sym[o++] = sym[i++];
                }
            }
            len = o;
        }
        *n_out = len;
        return VLM_OK;
    }
    // The sizes stay below 3m: m-1 initial entries plus 2 per merge.
    if (!grow((void **)&t->next, &t->next_cap, m, sizeof *t->next) ||
        !grow((void **)&t->prev, &t->prev_cap, m, sizeof *t->prev) ||
        !grow((void **)&t->heap, &t->heap_cap, 3 * m, sizeof *t->heap) ||
        !grow((void **)&t->pend, &t->pend_cap, 2 * m, sizeof *t->pend))
        return vlm_errorf(err, VLM_ERR_OOM, "bpe: out of memory");
    int32_t *next = t->next, *prev = t->prev;
    heap_ent *heap = t->heap, *pend = t->pend;
    size_t hn = 0;
    for (size_t i = 0; i < m; i++) {
        next[i] = i + 1 < m ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        const pair_slot *p = pair_find(t, sym[i], sym[i + 1]);
        if (p) heap_push(heap, &hn, (heap_ent){p->rank, (int32_t)i, sym[i], sym[i + 1]});
    }
    while (hn) {
        int32_t r = heap[0].rank;
        size_t pn = 0;
        while (hn && heap[0].rank == r) {
            heap_ent e = heap_pop(heap, &hn);
            int32_t i = e.pos, j = next[i];
            // Stale entry: its left symbol was consumed or either side changed.
            // (A removed node is marked by prev == -2.)
            if (prev[i] == -2 || sym[i] != e.a || j < 0 || sym[j] != e.b) continue;
            const pair_slot *p = pair_find(t, e.a, e.b);
            sym[i] = p->merged;
            next[i] = next[j];
            if (next[j] >= 0) prev[next[j]] = i;
            prev[j] = -2;
            if (prev[i] >= 0) {
                const pair_slot *q = pair_find(t, sym[prev[i]], sym[i]);
                if (q) pend[pn++] = (heap_ent){q->rank, prev[i], sym[prev[i]], sym[i]};
            }
            if (next[i] >= 0) {
                const pair_slot *q = pair_find(t, sym[i], sym[next[i]]);
                if (q) pend[pn++] = (heap_ent){q->rank, i, sym[i], sym[next[i]]};
            }
        }
        for (size_t k = 0; k < pn; k++) heap_push(heap, &hn, pend[k]);
    }
    size_t o = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[o++] = sym[i];
    *n_out = o;
    return VLM_OK;
}

typedef struct {
    int32_t *ids;
    size_t cap, n;
} emitter;

static inline void emit(emitter *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static vlm_status encode_word(struct vlm_tokenizer_impl *t, const uint8_t *w, size_t m, emitter *out, vlm_error *err) {
    // The two special strings are pre-seeded in Python's cache: emitted as is.
    if ((m == 15 && !memcmp(w, VLM_TEXT_SOT, 15)) || (m == 13 && !memcmp(w, VLM_TEXT_EOT, 13))) {
        emit(out, m == 15 ? t->sot : t->eot);
        return VLM_OK;
    }
    cache_slot *slot = NULL;
    uint32_t h = 0;
    if (t->cache && m <= CACHE_KEY) {
        h = (uint32_t)hash_bytes(w, m);
        slot = &t->cache[h & t->cache_mask];
        if (slot->klen == m && slot->hash == h && !memcmp(slot->key, w, m)) {
            for (int k = 0; k < slot->nids; k++) emit(out, slot->ids[k]);
            return VLM_OK;
        }
    }
    size_t n = 0;
    vlm_status st = bpe_word(t, w, m, &n, err);
    if (st) return st;
    for (size_t k = 0; k < n; k++) emit(out, t->sym[k]);
    if (slot) { // direct-mapped: a collision evicts, so memory stays bounded
        slot->hash = h;
        slot->klen = (uint8_t)m;
        slot->nids = (uint8_t)n;
        memcpy(slot->key, w, m);
        for (size_t k = 0; k < n; k++) slot->ids[k] = (uint16_t)t->sym[k];
    }
    return VLM_OK;
}

// Encodes into out; stops early once out->n > stop (enough for truncation).
static vlm_status encode_impl(struct vlm_tokenizer_impl *t, const char *text, size_t len, emitter *out, size_t stop,
                              vlm_error *err) {
    const int32_t *cp = NULL;
    size_t n = 0;
    vlm_status st = vlm_text_clean(&t->scratch, text, len, &cp, &n, err);
    if (st) return st;
    size_t pos = 0, s, e;
    while (vlm_text_pretok_next(cp, n, &pos, &s, &e)) {
        if (!grow((void **)&t->word, &t->word_cap, 4 * (e - s), 1)) return vlm_errorf(err, VLM_ERR_OOM, "tokenizer: out of memory");
        size_t m = vlm_text_utf8_encode(cp + s, e - s, t->word);
        if ((st = encode_word(t, t->word, m, out, err))) return st;
        if (out->n > stop) break;
    }
    return VLM_OK;
}

vlm_status vlm_tokenizer_encode(vlm_tokenizer *tok, const char *text, size_t len, int32_t *ids, int cap, int *n,
                                vlm_error *err) {
    if (!tok || !tok->impl) return vlm_errorf(err, VLM_ERR_STATE, "tokenizer: not initialised");
    if (cap < 0 || (cap > 0 && !ids) || !n) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: bad output buffer");
    emitter out = {ids, (size_t)cap, 0};
    vlm_status st = encode_impl(tok->impl, text, len, &out, SIZE_MAX, err);
    if (st) return st;
    if (out.n > INT_MAX) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: %zu tokens do not fit an int", out.n);
    *n = (int)out.n;
    return VLM_OK;
}

vlm_status vlm_tokenizer_encode_ctx(vlm_tokenizer *tok, const char *text, size_t len, int32_t *out, int ctx,
                                    int truncate, int *n_tokens, vlm_error *err) {
    if (!tok || !tok->impl) return vlm_errorf(err, VLM_ERR_STATE, "tokenizer: not initialised");
    if (ctx < 2 || !out) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer: context length %d < 2", ctx);
    struct vlm_tokenizer_impl *t = tok->impl;
    int32_t *body = malloc(sizeof *body * (size_t)(ctx - 2 + 1)); // keep out untouched on error
    if (!body) return vlm_errorf(err, VLM_ERR_OOM, "tokenizer: out of memory");
    emitter em = {body, (size_t)ctx - 2, 0};
    // With truncation and no count wanted, stop as soon as it overflows.
    vlm_status st = encode_impl(t, text, len, &em, truncate && !n_tokens ? (size_t)ctx - 2 : SIZE_MAX, err);
    if (st) {
        free(body);
        return st;
    }
    size_t total = em.n + 2;
    if (n_tokens) *n_tokens = total > INT_MAX ? INT_MAX : (int)total;
    if (total > (size_t)ctx && !truncate) {
        free(body);
        return vlm_errorf(err, VLM_ERR_SHAPE, "text needs %zu tokens with SOT/EOT, context length is %d", total, ctx);
    }
    size_t nb = em.n < (size_t)ctx - 2 ? em.n : (size_t)ctx - 2;
    out[0] = t->sot;
    memcpy(out + 1, body, nb * sizeof *out);
    out[1 + nb] = t->eot;
    for (size_t k = nb + 2; k < (size_t)ctx; k++) out[k] = 0;
    free(body);
    return VLM_OK;
}

// ------------------------------------------------------------- decode

static void copy_out(const uint8_t *s, size_t n, char *out, size_t cap, size_t *len) {
    if (cap) {
        size_t c = n < cap - 1 ? n : cap - 1;
        memcpy(out, s, c);
        out[c] = 0;
    }
    if (len) *len = n;
}

vlm_status vlm_tokenizer_decode(const vlm_tokenizer *tok, const int32_t *ids, int n, char *out, size_t cap,
                                size_t *len, vlm_error *err) {
    if (!tok || !tok->impl) return vlm_errorf(err, VLM_ERR_STATE, "tokenizer: not initialised");
    if (n < 0 || (n > 0 && !ids) || (cap && !out)) return vlm_errorf(err, VLM_ERR_ARG, "decode: bad arguments");
    const struct vlm_tokenizer_impl *t = tok->impl;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return vlm_errorf(err, VLM_ERR_ARG, "decode: id %d at position %d is outside the vocabulary [0, %d)",
                              (int)ids[i], i, t->n_vocab);
        total += tok_len(t, ids[i]);
    }
    uint8_t *raw = malloc(total + 1), *txt = malloc(3 * total + 1);
    if (!raw || !txt) {
        free(raw);
        free(txt);
        return vlm_errorf(err, VLM_ERR_OOM, "decode: out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(raw + k, t->arena + t->off[ids[i]], tok_len(t, ids[i]));
        k += tok_len(t, ids[i]);
    }
    // decode("utf-8", errors="replace") first, then .replace("</w>", " ").
    size_t m = vlm_text_utf8_sanitize(raw, total, txt, NULL), o = 0;
    for (size_t i = 0; i < m;) {
        if (i + 4 <= m && !memcmp(txt + i, "</w>", 4)) {
            txt[o++] = ' ';
            i += 4;
        } else {
            txt[o++] = txt[i++];
        }
    }
    copy_out(txt, o, out, cap, len);
    free(raw);
    free(txt);
    return VLM_OK;
}

vlm_status vlm_tokenizer_clean(vlm_tokenizer *tok, const char *text, size_t len, char *out, size_t cap,
                               size_t *out_len, vlm_error *err) {
    if (!tok || !tok->impl) return vlm_errorf(err, VLM_ERR_STATE, "tokenizer: not initialised");
    if (cap && !out) return vlm_errorf(err, VLM_ERR_ARG, "clean: NULL output");
    struct vlm_tokenizer_impl *t = tok->impl;
    const int32_t *cp = NULL;
    size_t n = 0;
    vlm_status st = vlm_text_clean(&t->scratch, text, len, &cp, &n, err);
    if (st) return st;
    if (!grow((void **)&t->word, &t->word_cap, 4 * n + 1, 1)) return vlm_errorf(err, VLM_ERR_OOM, "clean: out of memory");
    size_t m = vlm_text_utf8_encode(cp, n, t->word);
    copy_out(t->word, m, out, cap, out_len);
    return VLM_OK;
}

vlm_status vlm_tokenizer_encode_batch(vlm_tokenizer *tok, const char *const *texts, int n, int ctx, int32_t *ids,
                                      vlm_error *err) {
    for (int i = 0; i < n; i++) {
        const char *s = texts[i] ? texts[i] : "";
        int nt;
        vlm_status st = vlm_tokenizer_encode_ctx(tok, s, strlen(s), ids + (int64_t)i * ctx, ctx, 1, &nt, err);
        if (st) return st;
    }
    return VLM_OK;
}

vlm_status vlm_tokenizer_read_merges(const char *path, char **text, vlm_error *err) {
    gzFile g = gzopen(path, "rb"); // reads plain files too
    if (!g) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 65536 + 1 > cap) {
            if (cap > (256u << 20)) {
                free(buf);
                gzclose(g);
                return vlm_errorf(err, VLM_ERR_FORMAT, "%s: vocabulary larger than 256 MB", path);
            }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                gzclose(g);
                return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            }
            buf = nb;
        }
        int r = gzread(g, buf + len, 65536);
        if (r < 0) {
            free(buf);
            gzclose(g);
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: corrupt gzip data", path);
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(g);
    buf[len] = 0;
    *text = buf;
    return VLM_OK;
}
