// Text tower (see text_encoder.h).
#include "text/text_encoder.h"
#include <math.h>
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
    vlm_tensor *x = vlm_op_embedding(c, vlm_params_get(ps, t->tok_emb), ids); // [B, T, W]
    vlm_tensor *pos = vlm_params_get(ps, t->pos_emb);
    if (T < t->cfg.context_length) pos = vlm_view_slice(c, pos, 0, 0, T);
    x = vlm_op_add(c, x, pos);
    x = vlm_transformer_forward(c, &t->tr, ps, x, NULL);
    if (eot) *eot = idx;
    if (tokens) { // every position through ln_final; the pooled rows are the EOT rows of it
        *tokens = vlm_op_layernorm(c, x, vlm_params_get(ps, t->ln_final_w), vlm_params_get(ps, t->ln_final_b), 1e-5f);
        return vlm_op_matmul(c, vlm_op_gather_rows(c, *tokens, idx), vlm_params_get(ps, t->proj));
    }
    // ln_final is per row: normalise only the pooled rows. x: [B, T, W] -> [B, W]
    x = vlm_op_gather_rows(c, x, idx);
    x = vlm_op_layernorm(c, x, vlm_params_get(ps, t->ln_final_w), vlm_params_get(ps, t->ln_final_b), 1e-5f);
    return vlm_op_matmul(c, x, vlm_params_get(ps, t->proj));
}

vlm_tensor *vlm_text_forward(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids) {
    return forward(c, t, ps, ids, 0, NULL, NULL);
}

vlm_tensor *vlm_text_forward_tokens(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids,
                                    int all_positions, vlm_tensor **tokens, int32_t **eot) {
    *tokens = NULL;
    return forward(c, t, ps, ids, all_positions, tokens, eot);
}
