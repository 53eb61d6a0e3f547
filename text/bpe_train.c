// `vlm bpe train`: learns byte-level BPE merges from captions with the
// tokenizer's own cleaning and pre-tokenisation, with incremental pair
// counts (only words containing the merged pair are revisited).
#include "text/text_internal.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
    int32_t *v;
    uint32_t n, cap;
} ivec;

static int ivec_push(ivec *x, int32_t v) {
    if (x->n == x->cap) {
        uint32_t c = x->cap ? x->cap * 2 : 4;
        int32_t *p = realloc(x->v, sizeof *p * c);
        if (!p) return 0;
        x->v = p;
        x->cap = c;
    }
    x->v[x->n++] = v;
    return 1;
}

typedef struct {
    char *p;
    size_t n, cap;
} buf_t;

static int buf_put(buf_t *b, const void *s, size_t n) {
    if (b->cap - b->n < n + 1) {
        size_t c = b->cap ? b->cap : 4096;
        while (c - b->n < n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return 0;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

// Open-addressing index of byte strings stored in a buf_t (offsets/lengths).
typedef struct {
    int32_t *slot; // -1 free
    uint32_t mask;
    int32_t n;
} strset;

typedef struct {
    // tokens: merges-file spelling (UTF-8 of byte-alphabet chars [+ "</w>"])
    buf_t tstr;
    ivec toff, tlen;
    strset tset;
    // unique words during counting: raw bytes
    buf_t wstr;
    ivec woff, wlen;
    strset wset;
    int64_t *wfreq;
    size_t wfreq_cap;
    // words as symbols
    int32_t *sym;   // pool
    int64_t *soff;  // word w: sym[soff[w] .. soff[w] + slen[w])
    int32_t *slen;
    uint32_t *wstamp;
    // pairs
    uint64_t *pkey; // per pair (a << 32 | b)
    int64_t *pcount, *pdelta;
    uint8_t *pbanned;
    uint32_t *pstamp;
    ivec *pwhere;
    int32_t np, pcap;
    int32_t *pslot; // hash -> pair index, -1 free
    uint32_t pmask;
    ivec touched;
    // heap of (count, pair)
    struct hent {
        int64_t count;
        int32_t pair;
    } *heap;
    size_t hn, hcap;
} trainer;

static const char *tok_s(const trainer *T, int32_t id) { return T->tstr.p + T->toff.v[id]; }

static int strset_grow(strset *s, const buf_t *b, const ivec *off, const ivec *len);

static int32_t strset_find(const strset *s, const buf_t *b, const ivec *off, const ivec *len, const void *p,
                           size_t n, uint32_t *where) {
    uint32_t h = (uint32_t)hash_bytes(p, n) & s->mask;
    for (;; h = (h + 1) & s->mask) {
        int32_t id = s->slot[h];
        if (id < 0) {
            if (where) *where = h;
            return -1;
        }
        if ((size_t)len->v[id] == n && !memcmp(b->p + off->v[id], p, n)) return id;
    }
}

// Appends string p to (b, off, len) and indexes it; returns its id or -1 (OOM).
static int32_t strset_add(strset *s, buf_t *b, ivec *off, ivec *len, const void *p, size_t n) {
    if ((uint32_t)(s->n + 1) * 2 > s->mask + 1 && !strset_grow(s, b, off, len)) return -1;
    uint32_t h;
    int32_t id = strset_find(s, b, off, len, p, n, &h);
    if (id >= 0) return id;
    id = (int32_t)off->n;
    if (!ivec_push(off, (int32_t)b->n) || !ivec_push(len, (int32_t)n) || !buf_put(b, p, n)) return -1;
    s->slot[h] = id;
    s->n++;
    return id;
}

static int strset_grow(strset *s, const buf_t *b, const ivec *off, const ivec *len) {
    uint32_t nm = s->mask ? s->mask * 2 + 1 : 1023;
    int32_t *ns = malloc(sizeof *ns * ((size_t)nm + 1));
    if (!ns) return 0;
    memset(ns, 0xff, sizeof *ns * ((size_t)nm + 1));
    for (uint32_t i = 0; s->mask && i <= s->mask; i++) {
        int32_t id = s->slot[i];
        if (id < 0) continue;
        uint32_t h = (uint32_t)hash_bytes(b->p + off->v[id], (size_t)len->v[id]) & nm;
        while (ns[h] >= 0) h = (h + 1) & nm;
        ns[h] = id;
    }
    free(s->slot);
    s->slot = ns;
    s->mask = nm;
    return 1;
}

// ----------------------------------------------------------------- pairs

static int pairs_rehash(trainer *T) {
    uint32_t nm = T->pmask ? T->pmask * 2 + 1 : 4095;
    int32_t *ns = malloc(sizeof *ns * ((size_t)nm + 1));
    if (!ns) return 0;
    memset(ns, 0xff, sizeof *ns * ((size_t)nm + 1));
    for (int32_t i = 0; i < T->np; i++) {
        uint32_t h = (uint32_t)mix64(T->pkey[i]) & nm;
        while (ns[h] >= 0) h = (h + 1) & nm;
        ns[h] = i;
    }
    free(T->pslot);
    T->pslot = ns;
    T->pmask = nm;
    return 1;
}

#define GROW_ARR(p, n) ((tmp = realloc((p), sizeof *(p) * (size_t)(n))) ? ((p) = tmp, 1) : 0)

static int32_t pair_get(trainer *T, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    if ((uint32_t)(T->np + 1) * 2 > T->pmask + 1 && !pairs_rehash(T)) return -1;
    uint32_t h = (uint32_t)mix64(key) & T->pmask;
    for (;; h = (h + 1) & T->pmask) {
        int32_t i = T->pslot[h];
        if (i < 0) break;
        if (T->pkey[i] == key) return i;
    }
    if (T->np == T->pcap) {
        int32_t c = T->pcap ? T->pcap * 2 : 4096;
        void *tmp;
        if (!GROW_ARR(T->pkey, c) || !GROW_ARR(T->pcount, c) || !GROW_ARR(T->pdelta, c) ||
            !GROW_ARR(T->pbanned, c) || !GROW_ARR(T->pstamp, c) || !GROW_ARR(T->pwhere, c))
            return -1;
        T->pcap = c;
    }
    int32_t i = T->np++;
    T->pkey[i] = key;
    T->pcount[i] = T->pdelta[i] = 0;
    T->pbanned[i] = 0;
    T->pstamp[i] = 0;
    memset(&T->pwhere[i], 0, sizeof T->pwhere[i]);
    T->pslot[h] = i;
    return i;
}

// Heap order: higher count first, then the smaller (first, second) spelling.
static int hent_before(const trainer *T, const struct hent *x, const struct hent *y) {
    if (x->count != y->count) return x->count > y->count;
    for (int side = 0; side < 2; side++) {
        int shift = side ? 0 : 32;
        int32_t ta = (int32_t)(uint32_t)(T->pkey[x->pair] >> shift), tb = (int32_t)(uint32_t)(T->pkey[y->pair] >> shift);
        if (ta == tb) continue;
        size_t la = (size_t)T->tlen.v[ta], lb = (size_t)T->tlen.v[tb];
        int c = memcmp(tok_s(T, ta), tok_s(T, tb), la < lb ? la : lb);
        if (c) return c < 0;
        if (la != lb) return la < lb;
    }
    return x->pair < y->pair; // same spellings: cannot happen (tokens are distinct)
}

static int heap_push(trainer *T, int32_t pair) {
    if (T->hn == T->hcap) {
        size_t c = T->hcap ? T->hcap * 2 : 4096;
        struct hent *p = realloc(T->heap, sizeof *p * c);
        if (!p) return 0;
        T->heap = p;
        T->hcap = c;
    }
    struct hent e = {T->pcount[pair], pair};
    size_t i = T->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_before(T, &e, &T->heap[p])) break;
        T->heap[i] = T->heap[p];
        i = p;
    }
    T->heap[i] = e;
    return 1;
}

static void heap_pop(trainer *T) {
    struct hent last = T->heap[--T->hn];
    size_t i = 0, n = T->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hent_before(T, &T->heap[c + 1], &T->heap[c])) c++;
        if (!hent_before(T, &T->heap[c], &last)) break;
        T->heap[i] = T->heap[c];
        i = c;
    }
    if (n) T->heap[i] = last;
}

static void add_delta(trainer *T, int32_t q, int64_t d, uint32_t stamp, int *oom) {
    if (T->pstamp[q] != stamp) {
        T->pstamp[q] = stamp;
        T->pdelta[q] = 0;
        if (!ivec_push(&T->touched, q)) *oom = 1;
    }
    T->pdelta[q] += d;
}

static void trainer_free(trainer *T) {
    free(T->tstr.p);
    free(T->toff.v);
    free(T->tlen.v);
    free(T->tset.slot);
    free(T->wstr.p);
    free(T->woff.v);
    free(T->wlen.v);
    free(T->wset.slot);
    free(T->wfreq);
    free(T->sym);
    free(T->soff);
    free(T->slen);
    free(T->wstamp);
    for (int32_t i = 0; i < T->np; i++) free(T->pwhere[i].v);
    free(T->pkey);
    free(T->pcount);
    free(T->pdelta);
    free(T->pbanned);
    free(T->pstamp);
    free(T->pwhere);
    free(T->pslot);
    free(T->touched.v);
    free(T->heap);
}

// Spelling of byte b in the merges file (UTF-8 of its alphabet character).
static size_t spell_byte(uint8_t b, char *out) {
    int32_t cp = vlm_text_byte_to_unicode(b);
    return vlm_text_utf8_encode(&cp, 1, (uint8_t *)out);
}

static vlm_status oom_error(vlm_error *err) { return vlm_errorf(err, VLM_ERR_OOM, "bpe train: out of memory"); }

// The 512 base tokens in CLIP's id order: the bytes by rank, then each with "</w>".
static vlm_status add_base_tokens(trainer *T, vlm_error *err) {
    uint8_t byte_of_rank[256];
    for (int b = 0; b < 256; b++) byte_of_rank[vlm_text_byte_rank((uint8_t)b)] = (uint8_t)b;
    for (int e = 0; e < 2; e++)
        for (int r = 0; r < 256; r++) {
            char s[8];
            size_t k = spell_byte(byte_of_rank[r], s);
            if (e) memcpy(s + k, "</w>", 4), k += 4;
            if (strset_add(&T->tset, &T->tstr, &T->toff, &T->tlen, s, k) != e * 256 + r) return oom_error(err);
        }
    return VLM_OK;
}

// Counts the pre-tokens of one cleaned text cp [ncp] into T->wset / T->wfreq
// (specials left out, words over VLM_BPE_MAX_WORD bytes skipped); *wb: UTF-8 scratch.
static vlm_status count_words(trainer *T, const int32_t *cp, size_t ncp, uint8_t **wb, size_t *wb_cap,
                              vlm_bpe_train_info *info, vlm_error *err) {
    size_t pos = 0, s, e;
    while (vlm_text_pretok_next(cp, ncp, &pos, &s, &e)) {
        if (4 * (e - s) > *wb_cap) {
            size_t c = 4 * (e - s) + 64;
            uint8_t *p = realloc(*wb, c);
            if (!p) return oom_error(err);
            *wb = p;
            *wb_cap = c;
        }
        size_t m = vlm_text_utf8_encode(cp + s, e - s, *wb);
        if ((m == 15 && !memcmp(*wb, VLM_TEXT_SOT, 15)) || (m == 13 && !memcmp(*wb, VLM_TEXT_EOT, 13)))
            continue; // encoded as the special ids, never merged
        if (m > VLM_BPE_MAX_WORD) {
            info->n_skipped++;
            continue;
        }
        int32_t w = strset_add(&T->wset, &T->wstr, &T->woff, &T->wlen, *wb, m);
        if (w < 0) return oom_error(err);
        if ((size_t)w >= T->wfreq_cap) {
            size_t c = T->wfreq_cap ? T->wfreq_cap * 2 : 4096;
            int64_t *p = realloc(T->wfreq, sizeof *p * c);
            if (!p) return oom_error(err);
            memset(p + T->wfreq_cap, 0, sizeof *p * (c - T->wfreq_cap));
            T->wfreq = p;
            T->wfreq_cap = c;
        }
        T->wfreq[w]++;
        info->n_words++;
    }
    return VLM_OK;
}

// 1. Cleans every text and counts its pre-tokens (unique words and frequencies).
static vlm_status count_texts(trainer *T, const char *const *texts, const size_t *lens, int n,
                              vlm_bpe_train_info *info, vlm_error *err) {
    vlm_status st = VLM_OK;
    vlm_text_scratch scr = {0};
    uint8_t *wb = NULL;
    size_t wb_cap = 0;
    for (int i = 0; i < n && !st; i++) {
        const char *text = texts[i] ? texts[i] : "";
        size_t len = lens ? lens[i] : strlen(text);
        const int32_t *cp;
        size_t ncp;
        if ((st = vlm_text_clean(&scr, text, len, &cp, &ncp, err))) {
            vlm_error_prefix(err, "bpe train: text %d", i + 1);
            break;
        }
        st = count_words(T, cp, ncp, &wb, &wb_cap, info, err);
    }
    vlm_text_scratch_free(&scr);
    free(wb);
    return st;
}

// 2. Words as symbol sequences (byte ranks, the last one + 256 for "</w>");
// initial pair counts, occurrence lists and the heap.
static vlm_status init_pairs(trainer *T, vlm_bpe_train_info *info, vlm_error *err) {
    int32_t nw = (int32_t)T->woff.n;
    info->n_unique_words = nw;
    T->soff = malloc(sizeof *T->soff * ((size_t)nw + 1));
    T->slen = malloc(sizeof *T->slen * ((size_t)nw + 1));
    T->wstamp = calloc((size_t)nw + 1, sizeof *T->wstamp);
    T->sym = malloc(sizeof *T->sym * (T->wstr.n + 1));
    if (!T->soff || !T->slen || !T->wstamp || !T->sym) return oom_error(err);
    int64_t so = 0;
    for (int32_t w = 0; w < nw; w++) {
        const uint8_t *p = (const uint8_t *)T->wstr.p + T->woff.v[w];
        int32_t m = T->wlen.v[w];
        T->soff[w] = so;
        T->slen[w] = m;
        for (int32_t k = 0; k < m; k++) T->sym[so + k] = vlm_text_byte_rank(p[k]) + (k == m - 1 ? 256 : 0);
        for (int32_t k = 0; k + 1 < m; k++) {
            int32_t q = pair_get(T, T->sym[so + k], T->sym[so + k + 1]);
            if (q < 0) return oom_error(err);
            T->pcount[q] += T->wfreq[w];
            ivec *wh = &T->pwhere[q];
            if ((!wh->n || wh->v[wh->n - 1] != w) && !ivec_push(wh, w)) return oom_error(err);
        }
        so += m;
    }
    for (int32_t q = 0; q < T->np; q++)
        if (!heap_push(T, q)) return oom_error(err);
    return VLM_OK;
}

// The next pair to merge: the heap's best live entry whose spelling (left in
// *cat, la + lb bytes) is not a token yet; pairs that would duplicate one are
// banned. -1: no pair with a positive count is left; -2: out of memory.
static int32_t next_pair(trainer *T, char **cat, size_t *cat_cap) {
    for (;;) {
        while (T->hn && (T->heap[0].count != T->pcount[T->heap[0].pair] || T->pbanned[T->heap[0].pair]))
            heap_pop(T); // stale snapshot (a newer entry exists) or banned
        if (!T->hn || T->heap[0].count <= 0) return -1;
        int32_t p = T->heap[0].pair;
        int32_t a = (int32_t)(uint32_t)(T->pkey[p] >> 32), b = (int32_t)(uint32_t)T->pkey[p];
        size_t la = (size_t)T->tlen.v[a], lb = (size_t)T->tlen.v[b];
        if (la + lb > *cat_cap) {
            char *c = realloc(*cat, la + lb + 64);
            if (!c) return -2;
            *cat = c;
            *cat_cap = la + lb + 64;
        }
        memcpy(*cat, tok_s(T, a), la);
        memcpy(*cat + la, tok_s(T, b), lb);
        if (strset_find(&T->tset, &T->tstr, &T->toff, &T->tlen, *cat, la + lb, NULL) >= 0) {
            T->pbanned[p] = 1; // would duplicate an existing token
            heap_pop(T);
            continue;
        }
        heap_pop(T);
        return p;
    }
}

// Rewrites word w with (a, b) -> x: its old pairs' counts out, the new ones in
// (as deltas stamped `stamp`), and w listed under the new pairs holding x.
// Words already seen at this stamp or without (a, b) are left alone. Returns 1 on OOM.
static int recount_word(trainer *T, int32_t w, int32_t a, int32_t b, int32_t x, uint32_t stamp) {
    if (T->wstamp[w] == stamp) return 0;
    T->wstamp[w] = stamp;
    int32_t *s = T->sym + T->soff[w], m = T->slen[w];
    int found = 0, oom = 0;
    for (int32_t i = 0; i + 1 < m && !found; i++) found = s[i] == a && s[i + 1] == b;
    if (!found) return 0;
    int64_t f = T->wfreq[w];
    for (int32_t i = 0; i + 1 < m && !oom; i++) {
        int32_t q = pair_get(T, s[i], s[i + 1]);
        if (q < 0) oom = 1;
        else add_delta(T, q, -f, stamp, &oom);
    }
    int32_t o = 0;
    for (int32_t i = 0; i < m;) {
        if (i + 1 < m && s[i] == a && s[i + 1] == b) s[o++] = x, i += 2;
        else s[o++] = s[i++];
    }
    T->slen[w] = m = o;
    for (int32_t i = 0; i + 1 < m && !oom; i++) {
        int32_t q = pair_get(T, s[i], s[i + 1]);
        if (q < 0) {
            oom = 1;
            break;
        }
        add_delta(T, q, f, stamp, &oom);
        ivec *wh = &T->pwhere[q];
        if ((s[i] == x || s[i + 1] == x) && (!wh->n || wh->v[wh->n - 1] != w) && !ivec_push(wh, w)) oom = 1;
    }
    return oom;
}

// Applies merge p = (a, b) -> x: re-counts the words that contain (a, b), old
// pairs out, new pairs in, and pushes the changed counts. Returns 0 on OOM.
static int apply_merge(trainer *T, int32_t p, int32_t a, int32_t b, int32_t x, uint32_t stamp) {
    T->touched.n = 0;
    int oom = 0;
    ivec where = T->pwhere[p]; // (a, b) never reappears, so this list is final
    memset(&T->pwhere[p], 0, sizeof T->pwhere[p]);
    for (uint32_t k = 0; k < where.n && !oom; k++) oom = recount_word(T, where.v[k], a, b, x, stamp);
    free(where.v);
    for (uint32_t k = 0; k < T->touched.n && !oom; k++) {
        int32_t q = T->touched.v[k];
        if (!T->pdelta[q]) continue;
        T->pcount[q] += T->pdelta[q];
        if (T->pcount[q] > 0 && !heap_push(T, q)) oom = 1;
    }
    return !oom;
}

// 3. Merge loop: the most frequent pair becomes a token until the vocabulary
// is full or no pair is left; each merge appends "\na b" to out.
static vlm_status merge_loop(trainer *T, int vocab_size, buf_t *out, vlm_bpe_train_info *info, vlm_error *err) {
    int target = vocab_size - 514;
    uint32_t stamp = 0;
    int nm = 0;
    char *cat = NULL;
    size_t cat_cap = 0;
    vlm_status st = VLM_OK;
    if (!buf_put(out, "", 0)) return oom_error(err);
    while (nm < target) {
        int32_t p = next_pair(T, &cat, &cat_cap);
        if (p == -1) break;
        if (p < 0) {
            st = oom_error(err);
            break;
        }
        int32_t a = (int32_t)(uint32_t)(T->pkey[p] >> 32), b = (int32_t)(uint32_t)T->pkey[p];
        size_t la = (size_t)T->tlen.v[a], lb = (size_t)T->tlen.v[b];
        int32_t x = strset_add(&T->tset, &T->tstr, &T->toff, &T->tlen, cat, la + lb);
        if (x < 0 || !buf_put(out, "\n", 1) || !buf_put(out, tok_s(T, a), la) || !buf_put(out, " ", 1) ||
            !buf_put(out, tok_s(T, b), lb)) {
            st = oom_error(err);
            break;
        }
        nm++;
        if (!apply_merge(T, p, a, b, x, ++stamp)) {
            st = oom_error(err);
            break;
        }
    }
    free(cat);
    if (st) return st;
    info->n_merges = nm;
    info->vocab_size = 512 + nm + 2;
    info->stopped_early = nm < target;
    return VLM_OK;
}

static vlm_status train(trainer *T, const char *const *texts, const size_t *lens, int n, int vocab_size, buf_t *out,
                        vlm_bpe_train_info *info, vlm_error *err) {
    vlm_status st = add_base_tokens(T, err);
    if (!st) st = count_texts(T, texts, lens, n, info, err);
    if (!st) st = init_pairs(T, info, err);
    if (!st) st = merge_loop(T, vocab_size, out, info, err);
    return st;
}

vlm_status vlm_bpe_train_mem(const char *const *texts, const size_t *lens, int n, int vocab_size, char **merges,
                             size_t *merges_len, vlm_bpe_train_info *info, vlm_error *err) {
    if (!merges || (n > 0 && !texts) || n < 0) return vlm_errorf(err, VLM_ERR_ARG, "bpe train: bad arguments");
    if (vocab_size < 514 || vocab_size > VLM_TOKENIZER_MAX_VOCAB)
        return vlm_errorf(err, VLM_ERR_ARG, "bpe train: vocab size %d not in [514, %d] (512 byte tokens + merges + 2)",
                          vocab_size, VLM_TOKENIZER_MAX_VOCAB);
    vlm_bpe_train_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    trainer T;
    memset(&T, 0, sizeof T);
    buf_t body = {0}, out = {0};
    vlm_status st = train(&T, texts, lens, n, vocab_size, &body, info, err);
    trainer_free(&T);
    if (!st) {
        // A header then "a b" lines, without a final newline so that CLIP's
        // own loader (split('\n')) sees exactly these merges.
        char hdr[128];
        int k = snprintf(hdr, sizeof hdr, "#version: 0.2 vlm bpe train: vocab_size %d, %d merges", info->vocab_size,
                         info->n_merges);
        if (!buf_put(&out, hdr, (size_t)k) || !buf_put(&out, body.p, body.n))
            st = vlm_errorf(err, VLM_ERR_OOM, "bpe train: out of memory");
    }
    free(body.p);
    if (st) {
        free(out.p);
        return st;
    }
    *merges = out.p;
    if (merges_len) *merges_len = out.n;
    return VLM_OK;
}

vlm_status vlm_bpe_train(const char *const *texts, const size_t *lens, int n, int vocab_size, const char *out_path,
                         vlm_bpe_train_info *info, vlm_error *err) {
    if (!out_path) return vlm_errorf(err, VLM_ERR_ARG, "bpe train: NULL output path");
    char *m = NULL;
    size_t len = 0;
    vlm_status st = vlm_bpe_train_mem(texts, lens, n, vocab_size, &m, &len, info, err);
    if (st) return st;
    // Write next to the target and rename, so a failed run leaves no half file.
    size_t pl = strlen(out_path);
    char *tmp = malloc(pl + 8);
    if (!tmp) {
        free(m);
        return vlm_errorf(err, VLM_ERR_OOM, "bpe train: out of memory");
    }
    snprintf(tmp, pl + 8, "%s.tmp", out_path);
    int gz = pl >= 3 && !strcmp(out_path + pl - 3, ".gz");
    int ok;
    if (gz) {
        gzFile f = gzopen(tmp, "wb9");
        ok = f && (len == 0 || gzwrite(f, m, (unsigned)len) == (int)len);
        if (f && gzclose(f) != Z_OK) ok = 0;
    } else {
        FILE *f = fopen(tmp, "wb");
        ok = f && fwrite(m, 1, len, f) == len;
        if (f && fclose(f)) ok = 0;
    }
    if (ok && rename(tmp, out_path)) ok = 0;
    if (!ok) remove(tmp);
    free(tmp);
    free(m);
    if (!ok) return vlm_errorf(err, VLM_ERR_IO, "bpe train: cannot write %s", out_path);
    return VLM_OK;
}
