// Greedy and beam-search decoding (see decode.h).
#include "text/decode.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void vlm_seqdec_opts_default(vlm_seqdec_opts *o, int32_t start, int32_t end, int max_len) {
    memset(o, 0, sizeof *o);
    o->beams = 1, o->max_len = max_len, o->start = start, o->end = end;
}

typedef struct {
    float s;   // running sum of log-probabilities
    int beam;  // parent beam
    int32_t v; // token appended
} cand;

static int cand_cmp(const void *a, const void *b) { // score descending; ties: parent, then token (deterministic)
    const cand *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    if (x->beam != y->beam) return x->beam - y->beam;
    return (x->v > y->v) - (x->v < y->v);
}

static float rank(float s, int len, float lp) { return lp != 0 ? s / powf((float)len, lp) : s; }

vlm_status vlm_seq_decode(vlm_next_logp_fn fn, void *user, int V, const vlm_seqdec_opts *o, int32_t *out, int *len,
                          float *score, vlm_error *err) {
    const int K = o->beams < 1 ? 1 : o->beams, L = o->max_len;
    if (L < 2 || V < 2) return vlm_errorf(err, VLM_ERR_ARG, "decode: max_len %d / vocabulary %d too small", L, V);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)K * L), *nseq = malloc(sizeof(int32_t) * (size_t)K * L);
    int32_t *best = malloc(sizeof(int32_t) * (size_t)L), *pre = malloc(sizeof(int32_t) * (size_t)K * L);
    float *sc = malloc(sizeof(float) * (size_t)K), *logp = malloc(sizeof(float) * (size_t)K * V);
    cand *cs = malloc(sizeof(cand) * (size_t)K * V);
    vlm_status st = !seq || !nseq || !best || !pre || !sc || !logp || !cs ? vlm_errorf(err, VLM_ERR_OOM, "decode: out of memory")
                                                                 : VLM_OK;
    int live = 1, finished = 0, best_len = 0;
    float best_score = -INFINITY;
    if (!st) seq[0] = o->start, sc[0] = 0;
    for (int n = 1; !st && n < L && live > 0 && finished < K; n++) {
        for (int i = 0; i < live; i++) memcpy(pre + (size_t)i * n, seq + (size_t)i * L, sizeof(int32_t) * (size_t)n);
        if (fn(user, pre, live, n, logp, err)) {
            st = err->status ? err->status : VLM_ERR_STATE;
            break;
        }
        int nc = 0;
        for (int i = 0; i < live; i++) {
            for (int b = 0; b < o->n_banned; b++)
                if (o->banned[b] >= 0 && o->banned[b] < V) logp[(size_t)i * V + o->banned[b]] = -INFINITY;
            for (int v = 0; v < V; v++) {
                float lv = logp[(size_t)i * V + v];
                if (lv > -INFINITY) cs[nc++] = (cand){sc[i] + lv, i, v};
            }
        }
        qsort(cs, (size_t)nc, sizeof *cs, cand_cmp);
        int nl = 0;
        for (int k = 0; k < nc && nl < K && finished < K; k++) {
            const cand *c = &cs[k];
            if (c->v == o->end || n + 1 == L) { // finished: by EOT, or the length ran out
                float r = rank(c->s, n + 1, o->length_penalty);
                if (r > best_score) {
                    best_score = r, best_len = n + 1;
                    memcpy(best, seq + (size_t)c->beam * L, sizeof(int32_t) * (size_t)n);
                    best[n] = c->v;
                }
                finished++;
                continue;
            }
            memcpy(nseq + (size_t)nl * L, seq + (size_t)c->beam * L, sizeof(int32_t) * (size_t)n);
            nseq[(size_t)nl * L + n] = c->v;
            logp[nl] = c->s; // new scores (logp is free now)
            nl++;
        }
        for (int i = 0; i < nl; i++) sc[i] = logp[i];
        int32_t *t = seq;
        seq = nseq, nseq = t;
        live = nl;
    }
    if (!st && best_len == 0) st = vlm_errorf(err, VLM_ERR_STATE, "decode: no sequence finished");
    if (!st) {
        memcpy(out, best, sizeof(int32_t) * (size_t)best_len);
        *len = best_len;
        if (score) *score = best_score;
    }
    free(seq), free(nseq), free(best), free(pre), free(sc), free(logp), free(cs);
    return st;
}
