// Language-model text and evaluation (see lm_eval.h).
#include "eval/lm_eval.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "data/dataset.h"
#include "data/image.h"

static int is_dataset_spec(const char *p) {
    size_t n = strlen(p);
    const char *ext = strrchr(p, '.');
    return strchr(p, '{') || strstr(p, "::") || (ext && (!strcmp(ext, ".tsv") || !strcmp(ext, ".csv") ||
                                                         !strcmp(ext, ".tar") || !strcmp(ext, ".tgz"))) ||
           (n > 7 && !strcmp(p + n - 7, ".tar.gz"));
}

static vlm_status docs_add(vlm_docs *d, int64_t *cap, char *s, vlm_error *err) {
    if (d->n == *cap) {
        int64_t c = *cap ? *cap * 2 : 1024;
        char **p = realloc(d->doc, sizeof(char *) * (size_t)c);
        if (!p) return vlm_errorf(err, VLM_ERR_OOM, "documents: out of memory");
        d->doc = p, *cap = c;
    }
    d->doc[d->n++] = s;
    return VLM_OK;
}

// One document per line of a plain-text file (CR and empty lines dropped).
static vlm_status docs_from_text(vlm_docs *d, const char *path, vlm_error *err) {
    size_t cap = 0, size = 0;
    uint8_t *buf = NULL;
    vlm_status st = vlm_file_read(path, &buf, &cap, &size, (size_t)4 << 30, err);
    if (st) return st;
    char *b = realloc(buf, size + 1);
    if (!b) {
        free(buf);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    }
    b[size] = 0;
    d->buf = b;
    int64_t dcap = 0;
    for (char *p = b; !st && p < b + size;) {
        char *nl = memchr(p, '\n', (size_t)(b + size - p));
        char *end = nl ? nl : b + size;
        *end = 0;
        if (end > p && end[-1] == '\r') end[-1] = 0;
        if (*p) st = docs_add(d, &dcap, p, err);
        p = end + 1;
    }
    return st;
}

// Every caption (each line of a multi-caption) of a dataset.
static vlm_status docs_from_dataset(vlm_docs *d, const char *path, const char *caption_key, vlm_error *err) {
    vlm_dataset ds;
    vlm_dataset_opts o;
    vlm_dataset_opts_default(&o);
    if (caption_key) o.caption_key = caption_key;
    o.require_caption = 1;
    vlm_status st = vlm_dataset_open(&ds, path, &o, err);
    if (st) return st;
    size_t bytes = 0;
    for (int64_t i = 0; i < ds.n; i++) bytes += vlm_dataset_caption(&ds, i) ? strlen(vlm_dataset_caption(&ds, i)) + 1 : 0;
    d->buf = malloc(bytes + 1);
    if (!d->buf) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    char *w = d->buf;
    int64_t dcap = 0;
    for (int64_t i = 0; !st && i < ds.n; i++) {
        const char *c = vlm_dataset_caption(&ds, i);
        int nc = vlm_caption_count(c);
        for (int k = 0; !st && k < nc; k++) {
            size_t len;
            const char *s = vlm_caption_pick(c, k, &len);
            memcpy(w, s, len);
            w[len] = 0;
            if (len) st = docs_add(d, &dcap, w, err);
            w += len + 1;
        }
    }
    vlm_dataset_free(&ds);
    return st;
}

vlm_status vlm_docs_read(vlm_docs *d, const char *path, const char *caption_key, vlm_error *err) {
    memset(d, 0, sizeof *d);
    vlm_status st = is_dataset_spec(path) ? docs_from_dataset(d, path, caption_key, err) : docs_from_text(d, path, err);
    if (!st && d->n == 0) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: no text (no non-empty line or caption)", path);
    if (st) vlm_docs_free(d);
    return st;
}

void vlm_docs_free(vlm_docs *d) {
    free(d->doc);
    free(d->buf);
    memset(d, 0, sizeof *d);
}

vlm_status vlm_docs_tokenize(const vlm_docs *d, vlm_tokenizer *tok, vlm_token_stream *s, vlm_error *err) {
    enum { MAXDOC = 1024 };
    memset(s, 0, sizeof *s);
    int64_t cap = 0;
    int32_t tmp[MAXDOC];
    vlm_status st = VLM_OK;
    for (int64_t i = 0; !st && i < d->n; i++) {
        int n = 0;
        if ((st = vlm_tokenizer_encode(tok, d->doc[i], strlen(d->doc[i]), tmp, MAXDOC, &n, err))) break;
        if (n > MAXDOC) n = MAXDOC;
        if (s->n + n + 2 > cap) {
            int64_t c = cap ? cap * 2 : 1 << 16;
            while (c < s->n + n + 2) c *= 2;
            int32_t *p = realloc(s->ids, sizeof(int32_t) * (size_t)c);
            if (!p) {
                st = vlm_errorf(err, VLM_ERR_OOM, "token stream: out of memory (%lld tokens)", (long long)c);
                break;
            }
            s->ids = p, cap = c;
        }
        s->ids[s->n++] = vlm_tokenizer_sot(tok);
        memcpy(s->ids + s->n, tmp, sizeof(int32_t) * (size_t)n);
        s->n += n;
        s->ids[s->n++] = vlm_tokenizer_eot(tok);
    }
    if (st) vlm_token_stream_free(s);
    return st;
}

void vlm_token_stream_free(vlm_token_stream *s) {
    free(s->ids);
    memset(s, 0, sizeof *s);
}

int64_t vlm_lm_rows(const vlm_lm *m, const vlm_token_stream *s, int T) {
    return m->cfg.objective == VLM_LM_CLM ? (s->n > 0 ? (s->n - 1) / T : 0) : s->n / T;
}

double vlm_unigram_perplexity(const vlm_token_stream *train, const vlm_token_stream *s, int V, int T) {
    double *cnt = calloc((size_t)V, sizeof(double));
    if (!cnt || T < 1 || s->n < 2) {
        free(cnt);
        return NAN;
    }
    for (int64_t i = 0; i < train->n; i++)
        if (train->ids[i] >= 0 && train->ids[i] < V) cnt[train->ids[i]] += 1;
    double tot = (double)train->n + V, nll = 0;
    int64_t rows = (s->n - 1) / T, n = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int t = 1; t <= T; t++) { // the targets of row r: tokens r*T+1 .. r*T+T
            int32_t id = s->ids[r * T + t];
            nll -= log(((id >= 0 && id < V ? cnt[id] : 0) + 1) / tot);
            n++;
        }
    free(cnt);
    return n ? exp(nll / (double)n) : NAN;
}

vlm_status vlm_lm_evaluate(vlm_lm *m, const vlm_token_stream *s, int B, vlm_lm_eval_result *r, vlm_error *err) {
    memset(r, 0, sizeof *r);
    const int T = m->cfg.context_length, clm = m->cfg.objective == VLM_LM_CLM;
    const int64_t rows = vlm_lm_rows(m, s, T);
    if (rows == 0)
        return vlm_errorf(err, VLM_ERR_FORMAT, "evaluation text has %lld tokens: fewer than one row of %d", (long long)s->n,
                          T + clm);
    vlm_ctx c;
    vlm_lm_batch b;
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)B * (T + 1));
    vlm_status st = buf ? vlm_ctx_init(&c, 256u << 20, 0, err) : vlm_errorf(err, VLM_ERR_OOM, "evaluation: out of memory");
    if (st) {
        free(buf);
        return st;
    }
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t i0 = 0; !st && i0 < rows; i0 += B) {
        int nb = (int)(rows - i0 < B ? rows - i0 : B);
        for (int i = 0; i < nb; i++)
            memcpy(buf + (size_t)i * (T + clm), s->ids + (i0 + i) * T, sizeof(int32_t) * (size_t)(T + clm));
        if ((st = vlm_lm_batch_alloc(&b, nb, T, err))) break;
        vlm_lm_batch_make(m, buf, 0xE7A1, (uint64_t)i0, &b); // fixed masks: the figure repeats
        vlm_ctx_reset(&c);
        c.grad_enabled = 0;
        int64_t cnt = 0;
        st = vlm_lm_top1(&c, m, &b, &correct, &cnt, err);
        if (!st) { // the loss of the same logits: mean CE over the counted targets
            vlm_ctx_reset(&c);
            vlm_tensor *l = vlm_lm_loss(&c, m, &b);
            if (!l) *err = c.err, st = c.status ? c.status : VLM_ERR_STATE;
            else loss_sum += (double)vlm_f32(l)[0] * (double)cnt;
        }
        r->tokens += cnt;
        vlm_lm_batch_free(&b);
    }
    if (!st) {
        r->rows = rows;
        r->loss = r->tokens ? loss_sum / (double)r->tokens : 0;
        r->perplexity = exp(r->loss);
        r->top1 = r->tokens ? (double)correct / (double)r->tokens : 0;
    }
    free(buf);
    vlm_ctx_free(&c);
    return st;
}
