// Text tower (see text_encoder.h).
#include "text/text_encoder.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

vlm_status vlm_text_init(vlm_text_encoder *t, vlm_params *ps, vlm_text_cfg cfg, vlm_error *err) {
    memset(t, 0, sizeof *t);
    if (cfg.context_length <= 0 || cfg.vocab_size <= 2)
        return vlm_errorf(err, VLM_ERR_ARG, "text encoder: context length %d / vocab size %d invalid", cfg.context_length,
                          cfg.vocab_size);
    if (!cfg.mlp_width) cfg.mlp_width = 4 * cfg.width;
    t->cfg = cfg;
    int64_t e[2] = {cfg.vocab_size, cfg.width}, p[2] = {cfg.context_length, cfg.width}, w[1] = {cfg.width},
            pr[2] = {cfg.width, cfg.output_dim};
    t->tok_emb = vlm_params_add(ps, "token_embedding.weight", 2, e, err);
    t->pos_emb = vlm_params_add(ps, "positional_embedding", 2, p, err);
    if (t->pos_emb < 0) return err ? err->status : VLM_ERR_ARG;
    vlm_transformer_cfg tc = {cfg.width, cfg.heads, cfg.layers, cfg.mlp_width, cfg.act, 1, 1e-5f};
    vlm_status st = vlm_transformer_init(&t->tr, ps, "transformer.", tc, err);
    if (st) return st;
    t->ln_final_w = vlm_params_add(ps, "ln_final.weight", 1, w, err);
    t->ln_final_b = vlm_params_add(ps, "ln_final.bias", 1, w, err);
    t->proj = vlm_params_add(ps, "text_projection", 2, pr, err);
    t->max_buckets = 4;
    return t->proj < 0 ? (err ? err->status : VLM_ERR_ARG) : VLM_OK;
}

void vlm_text_free(vlm_text_encoder *t) { vlm_transformer_free(&t->tr); }

void vlm_text_init_weights(const vlm_text_encoder *t, vlm_params *ps, vlm_rng *rng) {
    // OpenAI CLIP.initialize_parameters
    vlm_fill_normal(vlm_params_get(ps, t->tok_emb), rng, 0.02f);
    vlm_fill_normal(vlm_params_get(ps, t->pos_emb), rng, 0.01f);
    vlm_fill_normal(vlm_params_get(ps, t->proj), rng, 1.0f / sqrtf((float)t->cfg.width));
    vlm_fill_const(vlm_params_get(ps, t->ln_final_w), 1);
    vlm_fill_const(vlm_params_get(ps, t->ln_final_b), 0);
    vlm_transformer_init_weights(&t->tr, ps, rng);
}

// Bucket plan: rows sorted by EOT position (len[i] = EOT + 1, ascending) cut
// into at most K runs of >= MIN_ROWS rows, minimising the rows x length the
// tower processes (dynamic programme over cut points). cut[0..k] are the run
// bounds; returns k, the number of runs (1: not worth cutting). The caller
// (pooled_buckets) has checked 2 <= K <= 8 and the row count.
enum { BUCKET_MIN_ROWS = 16, BUCKET_MAX_ROWS = 4096 };
static int plan_buckets(const int32_t *len, int64_t B, int K, int64_t *cut, int64_t *work) {
    int64_t *best = work, *from = work + (int64_t)(K + 1) * (B + 1); // [K + 1][B + 1] each
    const int64_t INF = INT64_MAX / 4;
    for (int64_t i = 0; i < (int64_t)(K + 1) * (B + 1); i++) best[i] = INF;
    best[0] = 0;
    for (int k = 1; k <= K; k++)
        for (int64_t e = BUCKET_MIN_ROWS; e <= B; e++)
            for (int64_t s = 0; s + BUCKET_MIN_ROWS <= e; s++) {
                int64_t prev = best[(int64_t)(k - 1) * (B + 1) + s];
                if (prev >= INF) continue;
                int64_t v = prev + (e - s) * len[e - 1];
                if (v < best[(int64_t)k * (B + 1) + e]) best[(int64_t)k * (B + 1) + e] = v, from[(int64_t)k * (B + 1) + e] = s;
            }
    int kb = 1;
    for (int k = 2; k <= K; k++)
        if (best[(int64_t)k * (B + 1) + B] < best[(int64_t)kb * (B + 1) + B]) kb = k;
    // Under 10% saved: one run (fewer, larger GEMMs).
    if (kb == 1 || best[(int64_t)kb * (B + 1) + B] * 10 > (int64_t)B * len[B - 1] * 9) return 1;
    int64_t e = B;
    for (int k = kb; k >= 1; k--) cut[k] = e, e = from[(int64_t)k * (B + 1) + e];
    cut[0] = 0; // = e: every run starts where the one before it ended
    return kb;
}

static int cmp_row(const void *a, const void *b) { // (EOT, row) pairs: by EOT, then row (stable)
    const int32_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

// One run of rows through the tower: ids [n, L] -> the EOT rows [n, W].
static vlm_tensor *tower_pooled(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids, const int32_t *eot) {
    int64_t L = ids->shape[1];
    vlm_tensor *x = vlm_op_embedding(c, vlm_params_get(ps, t->tok_emb), ids); // [n, L, W]
    vlm_tensor *pos = vlm_params_get(ps, t->pos_emb);
    if (L < t->cfg.context_length) pos = vlm_view_slice(c, pos, 0, 0, L);
    x = vlm_transformer_forward(c, &t->tr, ps, vlm_op_add(c, x, pos), NULL);
    return vlm_op_gather_rows(c, x, eot);
}

// The EOT rows [B, W] of ids [B, T] (eot: each row's EOT position) in length
// buckets (vlm_text_encoder.max_buckets), or NULL with *used = 0 when one run
// is as good. Rows are sorted, run bucket by bucket, concatenated and put back
// in batch order by a row gather (whose backward scatters the gradient back).
static vlm_tensor *pooled_buckets(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, const int32_t *id, int64_t B,
                                  int64_t T, const int32_t *eot, int *used) {
    *used = 0;
    int K = t->max_buckets;
    if (K < 2 || B < 2 * BUCKET_MIN_ROWS || B > BUCKET_MAX_ROWS) return NULL;
    if (K > 8) K = 8;
    vlm_arena *a = &c->arena;
    int32_t *pr = vlm_arena_alloc(a, sizeof(int32_t) * (size_t)(2 * B)), *len = vlm_arena_alloc(a, sizeof(int32_t) * (size_t)B);
    int64_t *work = vlm_arena_alloc(a, sizeof(int64_t) * (size_t)(2 * (K + 1) * (B + 1))), cut[9];
    int32_t *inv = vlm_arena_alloc(a, sizeof(int32_t) * (size_t)B);
    if (!pr || !len || !work || !inv) return vlm_ctx_fail(c, VLM_ERR_OOM, "text encoder: arena out of memory");
    for (int64_t b = 0; b < B; b++) pr[2 * b] = eot[b], pr[2 * b + 1] = (int32_t)b;
    qsort(pr, (size_t)B, 2 * sizeof(int32_t), cmp_row);
    for (int64_t i = 0; i < B; i++) len[i] = pr[2 * i] + 1, inv[pr[2 * i + 1]] = (int32_t)i;
    int nk = plan_buckets(len, B, K, cut, work);
    if (nk < 2) return NULL;
    *used = 1;
    vlm_tensor *parts[8];
    for (int k = 0; k < nk; k++) {
        int64_t s = cut[k], n = cut[k + 1] - s, L = len[cut[k + 1] - 1];
        int32_t *sub = vlm_arena_alloc(a, sizeof(int32_t) * (size_t)(n * L)), *pe = vlm_arena_alloc(a, sizeof(int32_t) * (size_t)n);
        if (!sub || !pe) return vlm_ctx_fail(c, VLM_ERR_OOM, "text encoder: arena out of memory");
        for (int64_t r = 0; r < n; r++) {
            int32_t row = pr[2 * (s + r) + 1];
            memcpy(sub + r * L, id + (int64_t)row * T, sizeof(int32_t) * (size_t)L);
            pe[r] = eot[row];
        }
        parts[k] = tower_pooled(c, t, ps, vlm_tensor_wrap(c, VLM_I32, 2, (int64_t[]){n, L}, sub, NULL), pe);
        if (!parts[k]) return NULL;
    }
    vlm_tensor *sorted = vlm_op_concat(c, parts, nk, 0); // [B, W], rows in sorted order
    return vlm_op_embedding(c, sorted, vlm_tensor_wrap(c, VLM_I32, 1, (int64_t[]){B}, inv, NULL));
}

static vlm_tensor *forward(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids, int all,
                           vlm_tensor **tokens, int32_t **eot) {
    if (!ids || c->status != VLM_OK) return NULL;
    char s[96];
    if (ids->dtype != VLM_I32 || ids->ndim != 2 || ids->shape[1] > t->cfg.context_length || ids->shape[1] < 1)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "text encoder: ids %s must be I32 [B, T] with T <= %d",
                            vlm_shape_str(ids, s, sizeof s), t->cfg.context_length);
    if (!vlm_is_contiguous(ids)) ids = vlm_op_contiguous(c, ids);
    if (!ids) return NULL;
    int64_t B = ids->shape[0], T = ids->shape[1];
    // Pool at the EOT token: the position of the highest id in each row
    // (EOT is the largest id in CLIP's vocabulary; first occurrence, as torch.argmax).
    int32_t *idx = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B ? B : 1));
    if (!idx) return vlm_ctx_fail(c, VLM_ERR_OOM, "text encoder: arena out of memory");
    const int32_t *id = ids->data;
    int64_t Tlive = 1;
    for (int64_t b = 0; b < B; b++) {
        int32_t best = 0;
        for (int64_t j = 1; j < T; j++)
            if (id[b * T + j] > id[b * T + best]) best = (int32_t)j;
        idx[b] = best;
        if (best + 1 > Tlive) Tlive = best + 1;
    }
    // The mask is causal, so the tokens after the batch's last EOT never reach
    // a pooled row: run the tower on ids[:, :Tlive] only. Same result, and
    // captions much shorter than the context (emoji names: ~8 of 32 tokens)
    // cost a fraction of the full context.
    if (Tlive < T && !all) {
        ids = vlm_op_contiguous(c, vlm_view_slice(c, ids, 1, 0, Tlive));
        if (!ids) return NULL;
        T = Tlive;
    }
    if (eot) *eot = idx;
    if (!tokens) { // pooled features only, in length buckets when they save work. x: [B, W]
        int used = 0;
        vlm_tensor *x = pooled_buckets(c, t, ps, ids->data, B, T, idx, &used);
        if (!used) x = c->status == VLM_OK ? tower_pooled(c, t, ps, ids, idx) : NULL;
        // ln_final is per row: normalise only the pooled rows
        x = vlm_op_layernorm(c, x, vlm_params_get(ps, t->ln_final_w), vlm_params_get(ps, t->ln_final_b), 1e-5f);
        return vlm_op_matmul(c, x, vlm_params_get(ps, t->proj));
    }
    vlm_tensor *x = vlm_op_embedding(c, vlm_params_get(ps, t->tok_emb), ids); // [B, T, W]
    vlm_tensor *pos = vlm_params_get(ps, t->pos_emb);
    if (T < t->cfg.context_length) pos = vlm_view_slice(c, pos, 0, 0, T);
    x = vlm_transformer_forward(c, &t->tr, ps, vlm_op_add(c, x, pos), NULL);
    // every position through ln_final; the pooled rows are the EOT rows of it
    *tokens = vlm_op_layernorm(c, x, vlm_params_get(ps, t->ln_final_w), vlm_params_get(ps, t->ln_final_b), 1e-5f);
    return vlm_op_matmul(c, vlm_op_gather_rows(c, *tokens, idx), vlm_params_get(ps, t->proj));
}

vlm_tensor *vlm_text_forward(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids) {
    return forward(c, t, ps, ids, 0, NULL, NULL);
}

vlm_tensor *vlm_text_forward_tokens(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids,
                                    int all_positions, vlm_tensor **tokens, int32_t **eot) {
    *tokens = NULL;
    return forward(c, t, ps, ids, all_positions, tokens, eot);
}
