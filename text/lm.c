// Language model on the text tower (see lm.h).
#include "text/lm.h"
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/op_ext.h"
#include "core/safetensors.h"

const char *vlm_lm_objective_name(vlm_lm_objective o) { return o == VLM_LM_MLM ? "mlm" : "clm"; }

int vlm_lm_objective_parse(const char *s) {
    if (!s) return -1;
    return !strcmp(s, "clm") ? VLM_LM_CLM : !strcmp(s, "mlm") ? VLM_LM_MLM : -1;
}

vlm_status vlm_lm_cfg_preset(const char *name, vlm_lm_objective obj, int tokenizer_vocab, int context_length,
                             vlm_lm_cfg *cfg, vlm_error *err) {
    memset(cfg, 0, sizeof *cfg);
    if (!strcmp(name, "tiny")) cfg->width = 192, cfg->heads = 3, cfg->layers = 6;         // the tiny CLIP's text tower
    else if (!strcmp(name, "small")) cfg->width = 384, cfg->heads = 6, cfg->layers = 6;   // the small CLIP's
    else if (!strcmp(name, "micro")) cfg->width = 64, cfg->heads = 2, cfg->layers = 2;    // tests
    else return vlm_errorf(err, VLM_ERR_ARG, "unknown language model '%s' (presets: micro, tiny, small)", name);
    if (tokenizer_vocab < 3) return vlm_errorf(err, VLM_ERR_ARG, "tokenizer vocabulary of %d tokens", tokenizer_vocab);
    if (context_length < 2 || context_length > 4096)
        return vlm_errorf(err, VLM_ERR_ARG, "context length %d outside [2, 4096]", context_length);
    cfg->mlp_width = 4 * cfg->width;
    cfg->act = VLM_ACT_GELU;
    cfg->objective = obj;
    cfg->context_length = context_length;
    cfg->sot = tokenizer_vocab - 2, cfg->eot = tokenizer_vocab - 1;
    cfg->mask = obj == VLM_LM_MLM ? tokenizer_vocab : -1;
    cfg->vocab_size = tokenizer_vocab + (obj == VLM_LM_MLM);
    cfg->mask_prob = 0.15f;
    return VLM_OK;
}

vlm_status vlm_lm_init(vlm_lm *m, const vlm_lm_cfg *cfg, vlm_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    vlm_params_init(&m->ps);
    if (cfg->vocab_size < 3 || cfg->context_length < 2 || cfg->width < 1 || cfg->heads < 1 || cfg->width % cfg->heads ||
        cfg->layers < 1 || cfg->sot < 0 || cfg->eot < 0 || cfg->sot >= cfg->vocab_size || cfg->eot >= cfg->vocab_size ||
        (cfg->objective == VLM_LM_MLM && (cfg->mask < 0 || cfg->mask >= cfg->vocab_size)))
        return vlm_errorf(err, VLM_ERR_ARG,
                          "language model: bad config (vocab %d, context %d, width %d, heads %d, layers %d, sot %d, eot %d, "
                          "mask %d)", cfg->vocab_size, cfg->context_length, cfg->width, cfg->heads, cfg->layers, cfg->sot,
                          cfg->eot, cfg->mask);
    int64_t e[2] = {cfg->vocab_size, cfg->width}, p[2] = {cfg->context_length, cfg->width}, w[1] = {cfg->width},
            v[1] = {cfg->vocab_size};
    m->tok_emb = vlm_params_add(&m->ps, "token_embedding.weight", 2, e, err);
    m->pos_emb = vlm_params_add(&m->ps, "positional_embedding", 2, p, err);
    vlm_transformer_cfg tc = {cfg->width, cfg->heads, cfg->layers, cfg->mlp_width ? cfg->mlp_width : 4 * cfg->width,
                              cfg->act, cfg->objective == VLM_LM_CLM, 1e-5f};
    vlm_status st = m->pos_emb < 0 ? (err ? err->status : VLM_ERR_ARG) : vlm_transformer_init(&m->tr, &m->ps, "transformer.", tc, err);
    if (st) return st;
    m->ln_w = vlm_params_add(&m->ps, "ln_final.weight", 1, w, err);
    m->ln_b = vlm_params_add(&m->ps, "ln_final.bias", 1, w, err);
    m->bias = vlm_params_add(&m->ps, "lm_head.bias", 1, v, err);
    if (m->bias < 0) return err ? err->status : VLM_ERR_ARG;
    st = vlm_params_alloc(&m->ps, err);
    if (!st) vlm_params_default_decay(&m->ps);
    return st;
}

void vlm_lm_free(vlm_lm *m) {
    vlm_transformer_free(&m->tr);
    vlm_params_free(&m->ps);
}

void vlm_lm_init_weights(vlm_lm *m, vlm_rng *rng) {
    // as the CLIP text tower (OpenAI's initialize_parameters); the output bias starts at 0
    vlm_fill_normal(vlm_params_get(&m->ps, m->tok_emb), rng, 0.02f);
    vlm_fill_normal(vlm_params_get(&m->ps, m->pos_emb), rng, 0.01f);
    vlm_fill_const(vlm_params_get(&m->ps, m->ln_w), 1);
    vlm_fill_const(vlm_params_get(&m->ps, m->ln_b), 0);
    vlm_fill_const(vlm_params_get(&m->ps, m->bias), 0);
    vlm_transformer_init_weights(&m->tr, &m->ps, rng);
}

vlm_tensor *vlm_lm_hidden(vlm_ctx *c, vlm_lm *m, vlm_tensor *ids) {
    if (!ids || c->status != VLM_OK) return NULL;
    char s[96];
    if (ids->dtype != VLM_I32 || ids->ndim != 2 || ids->shape[1] < 1 || ids->shape[1] > m->cfg.context_length)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "language model: ids %s must be I32 [B, T] with 1 <= T <= %d",
                            vlm_shape_str(ids, s, sizeof s), m->cfg.context_length);
    int64_t T = ids->shape[1];
    vlm_tensor *x = vlm_op_embedding(c, vlm_params_get(&m->ps, m->tok_emb), ids); // [B, T, W]
    vlm_tensor *pos = vlm_params_get(&m->ps, m->pos_emb);
    if (T < m->cfg.context_length) pos = vlm_view_slice(c, pos, 0, 0, T);
    x = vlm_op_add(c, x, pos);
    x = vlm_transformer_forward(c, &m->tr, &m->ps, x, NULL);
    return vlm_op_layernorm(c, x, vlm_params_get(&m->ps, m->ln_w), vlm_params_get(&m->ps, m->ln_b), 1e-5f);
}

vlm_tensor *vlm_lm_logits(vlm_ctx *c, vlm_lm *m, vlm_tensor *h) {
    vlm_tensor *et = vlm_view_transpose(c, vlm_params_get(&m->ps, m->tok_emb), 0, 1); // [W, V]
    return vlm_op_add(c, vlm_op_matmul(c, h, et), vlm_params_get(&m->ps, m->bias));
}

// ---- batches and the loss ---------------------------------------------------------

// Tokens per row the mlm loss looks at: round(mask_prob * T), at least 1.
static int mlm_k(const vlm_lm *m, int T) {
    int k = (int)lroundf(m->cfg.mask_prob * (float)T);
    return k < 1 ? 1 : k > T ? T : k;
}

vlm_status vlm_lm_batch_alloc(vlm_lm_batch *b, int B, int T, vlm_error *err) {
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T;
    b->in = malloc(sizeof(int32_t) * (size_t)B * T);
    b->target = malloc(sizeof(int32_t) * (size_t)B * T);
    b->sel = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!b->in || !b->target || !b->sel) {
        vlm_lm_batch_free(b);
        return vlm_errorf(err, VLM_ERR_OOM, "language model batch [%d, %d]: out of memory", B, T);
    }
    return VLM_OK;
}

void vlm_lm_batch_free(vlm_lm_batch *b) {
    free(b->in), free(b->target), free(b->sel);
    memset(b, 0, sizeof *b);
}

// BERT's masking of one row (as its create_pretraining_data.py): exactly K
// positions, drawn among the non-special tokens; each selected token becomes
// [MASK] with p 0.8, a random token (not a special one) with p 0.1, or stays.
// Rows with fewer candidates than K fill the rest with ignored targets.
static void mask_row(const vlm_lm *m, const int32_t *row, int T, int K, vlm_rng *rng, int32_t *in, int32_t *pos,
                     int32_t *tgt) {
    const vlm_lm_cfg *c = &m->cfg;
    int32_t cand[4096];
    int nc = 0;
    memcpy(in, row, sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++)
        if (row[t] != c->sot && row[t] != c->eot) cand[nc++] = t;
    // partial Fisher-Yates: the first K of a random permutation, then sorted
    for (int k = 0; k < K && k < nc; k++) {
        int j = k + (int)vlm_rng_below(rng, (uint64_t)(nc - k));
        int32_t tmp = cand[k];
        cand[k] = cand[j], cand[j] = tmp;
    }
    int nk = K < nc ? K : nc;
    for (int a = 1; a < nk; a++)
        for (int b2 = a; b2 > 0 && cand[b2 - 1] > cand[b2]; b2--) {
            int32_t tmp = cand[b2];
            cand[b2] = cand[b2 - 1], cand[b2 - 1] = tmp;
        }
    int n_regular = c->sot < c->eot ? c->sot : c->eot; // ids [0, n_regular) are ordinary tokens
    for (int k = 0; k < K; k++) {
        if (k >= nk) {
            pos[k] = 0, tgt[k] = -100;
            continue;
        }
        int t = cand[k];
        pos[k] = t, tgt[k] = row[t];
        float u = vlm_rng_uniform(rng);
        if (u < 0.8f) in[t] = c->mask;
        else if (u < 0.9f) in[t] = (int32_t)vlm_rng_below(rng, (uint64_t)n_regular);
    }
}

void vlm_lm_batch_make(const vlm_lm *m, const int32_t *rows, uint64_t seed, uint64_t first, vlm_lm_batch *b) {
    const int B = b->B, T = b->T;
    if (m->cfg.objective == VLM_LM_CLM) {
        for (int i = 0; i < B; i++) {
            memcpy(b->in + (size_t)i * T, rows + (size_t)i * (T + 1), sizeof(int32_t) * (size_t)T);
            memcpy(b->target + (size_t)i * T, rows + (size_t)i * (T + 1) + 1, sizeof(int32_t) * (size_t)T);
        }
        b->n_sel = 0;
        return;
    }
    const int K = mlm_k(m, T);
    int32_t pos[4096], tgt[4096];
    for (int i = 0; i < B; i++) {
        vlm_rng rng;
        vlm_rng_init(&rng, seed, VLM_RNG_AUGMENT, first + (uint64_t)i);
        mask_row(m, rows + (size_t)i * T, T, K, &rng, b->in + (size_t)i * T, pos, tgt);
        // layout [K][B]: selection k of every row together (one gather per k)
        for (int k = 0; k < K; k++) b->sel[k * B + i] = pos[k], b->target[k * B + i] = tgt[k];
    }
    b->n_sel = K * B;
}

// Logits at the positions the loss looks at: clm every position [B*T, V];
// mlm the selected ones [K*B, V].
static vlm_tensor *target_logits(vlm_ctx *c, vlm_lm *m, const vlm_lm_batch *b) {
    const int B = b->B, T = b->T;
    vlm_tensor *ids = vlm_tensor_wrap(c, VLM_I32, 2, (int64_t[]){B, T}, b->in, NULL);
    vlm_tensor *h = vlm_lm_hidden(c, m, ids); // [B, T, W]
    if (!h) return NULL;
    if (m->cfg.objective == VLM_LM_CLM) {
        h = vlm_op_reshape(c, vlm_ensure_contig(c, h), 2, (int64_t[]){(int64_t)B * T, m->cfg.width});
        return vlm_lm_logits(c, m, h);
    }
    const int K = b->n_sel / B;
    vlm_tensor *parts[4096];
    for (int k = 0; k < K; k++) parts[k] = vlm_op_gather_rows(c, h, b->sel + (size_t)k * B); // [B, W]
    vlm_tensor *g = K == 1 ? parts[0] : vlm_op_concat(c, parts, K, 0);                      // [K*B, W]
    return vlm_lm_logits(c, m, g);
}

vlm_tensor *vlm_lm_loss(vlm_ctx *c, vlm_lm *m, const vlm_lm_batch *b) {
    vlm_tensor *logits = target_logits(c, m, b);
    return logits ? vlm_op_cross_entropy(c, logits, b->target, 0) : NULL;
}

vlm_status vlm_lm_top1(vlm_ctx *c, vlm_lm *m, const vlm_lm_batch *b, int64_t *correct, int64_t *count, vlm_error *err) {
    vlm_tensor *lg = target_logits(c, m, b);
    if (!lg) {
        *err = c->err;
        return c->status ? c->status : VLM_ERR_STATE;
    }
    const int64_t N = lg->shape[0], V = lg->shape[1];
    const float *l = vlm_f32(lg);
    for (int64_t i = 0; i < N; i++) {
        if (b->target[i] < 0) continue;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (l[i * V + v] > l[i * V + best]) best = v;
        *correct += best == b->target[i];
        (*count)++;
    }
    return VLM_OK;
}

// ---- files -----------------------------------------------------------------------

char *vlm_lm_cfg_to_json(const vlm_lm_cfg *c) {
    json_t *r = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:i, s:i, s:f}", "objective",
                          vlm_lm_objective_name(c->objective), "context_length", c->context_length, "vocab_size",
                          c->vocab_size, "width", c->width, "heads", c->heads, "layers", c->layers, "mlp_width",
                          c->mlp_width, "act", c->act == VLM_ACT_QUICK_GELU ? "quick_gelu" : "gelu", "sot", c->sot, "eot",
                          c->eot, "mask", c->mask, "mask_prob", (double)c->mask_prob);
    char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    return s;
}

static vlm_status cfg_parse(const char *js, const char *path, vlm_lm_cfg *c, vlm_error *err) {
    json_error_t je;
    json_t *r = json_loads(js, 0, &je);
    memset(c, 0, sizeof *c);
    const char *obj = NULL, *act = NULL;
    double mp = 0.15;
    int bad = !r || json_unpack(r, "{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:i, s:i, s?F}", "objective", &obj,
                                "context_length", &c->context_length, "vocab_size", &c->vocab_size, "width", &c->width,
                                "heads", &c->heads, "layers", &c->layers, "mlp_width", &c->mlp_width, "act", &act, "sot",
                                &c->sot, "eot", &c->eot, "mask", &c->mask, "mask_prob", &mp);
    int o = bad ? -1 : vlm_lm_objective_parse(obj);
    if (!bad && o >= 0) {
        c->objective = (vlm_lm_objective)o;
        c->act = !strcmp(act, "quick_gelu") ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
        c->mask_prob = (float)mp;
    }
    json_decref(r);
    if (bad || o < 0 || !(c->mask_prob > 0 && c->mask_prob <= 1) || c->context_length > 4096)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: language model \"config\" is malformed: %.200s", path, js);
    return VLM_OK;
}

vlm_status vlm_lm_save(const char *path, const vlm_lm *m, const char *tok, int64_t step, vlm_error *err) {
    vlm_st_tensor *t = calloc((size_t)m->ps.n, sizeof *t);
    char *cfg = vlm_lm_cfg_to_json(&m->cfg);
    if (!t || !cfg) {
        free(t), free(cfg);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    }
    for (int i = 0; i < m->ps.n; i++)
        t[i] = (vlm_st_tensor){m->ps.p[i].name, VLM_F32, m->ps.p[i].t.ndim, m->ps.p[i].t.shape, m->ps.p[i].t.data};
    char s_step[32];
    snprintf(s_step, sizeof s_step, "%" PRId64, step);
    const char *keys[4] = {"format", "config", "step", "tokenizer"}, *vals[4] = {"vlm-lm", cfg, s_step, tok};
    vlm_status st = vlm_st_write(path, t, m->ps.n, keys, vals, tok ? 4 : 3, err);
    free(cfg), free(t);
    return st;
}

vlm_status vlm_lm_load(const char *path, vlm_lm *m, char **tok, vlm_error *err) {
    if (tok) *tok = NULL;
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    const char *fmt = vlm_st_meta(&f, "format"), *cj = vlm_st_meta(&f, "config");
    int is_state = fmt && !strcmp(fmt, "vlm-lm-state");
    vlm_lm_cfg cfg;
    if (!fmt || (strcmp(fmt, "vlm-lm") && !is_state) || !cj)
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a vlm language model (format '%s'; vlm lm train writes them)", path,
                        fmt ? fmt : "none");
    if (!st) st = cfg_parse(cj, path, &cfg, err);
    if (!st) st = vlm_lm_init(m, &cfg, err);
    vlm_status gs = VLM_OK; // reading the tensors (their errors get the path)
    if (!st && is_state) // one flat "params" buffer in store order
        gs = vlm_st_get(&f, "params", VLM_F32, 1, (int64_t[]){m->ps.total}, m->ps.data, err);
    for (int i = 0; !st && !gs && !is_state && i < m->ps.n; i++) {
        vlm_tensor *p = &m->ps.p[i].t;
        gs = vlm_st_get(&f, m->ps.p[i].name, VLM_F32, p->ndim, p->shape, p->data, err);
    }
    if (gs) st = vlm_error_prefix(err, "%s", path);
    if (!st && tok) {
        const char *t = vlm_st_meta(&f, "tokenizer");
        if (t && !(*tok = strdup(t))) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    }
    vlm_st_free(&f);
    if (st) vlm_lm_free(m);
    return st;
}

// ---- sampling --------------------------------------------------------------------

void vlm_lm_sample_opts_default(vlm_lm_sample_opts *o) {
    o->max_tokens = 32, o->temperature = 0, o->top_k = 0, o->seed = 0;
}

// Index of the token drawn from logits l [V] (greedy when temperature is 0).
static int draw(const float *l, int V, const vlm_lm_sample_opts *o, vlm_rng *r, float *p) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[best]) best = v;
    if (o->temperature <= 0) return best;
    // top-k: keep logits >= the k-th largest (ties kept)
    float thr = -INFINITY;
    if (o->top_k > 0 && o->top_k < V) {
        memcpy(p, l, sizeof(float) * (size_t)V);
        for (int k = 0; k < o->top_k; k++) { // k passes of selection: V small enough here
            int a = -1;
            for (int v = 0; v < V; v++)
                if (p[v] > -INFINITY && (a < 0 || p[v] > p[a])) a = v;
            thr = p[a];
            p[a] = -INFINITY;
        }
    }
    double sum = 0;
    for (int v = 0; v < V; v++) {
        p[v] = l[v] >= thr ? expf((l[v] - l[best]) / o->temperature) : 0;
        sum += p[v];
    }
    double u = vlm_rng_uniform_d(r) * sum, acc = 0;
    for (int v = 0; v < V; v++) {
        acc += p[v];
        if (p[v] > 0 && u < acc) return v;
    }
    return best;
}

vlm_status vlm_lm_sample(vlm_lm *m, int32_t *ids, int *n, int cap, const vlm_lm_sample_opts *o, vlm_error *err) {
    if (m->cfg.objective != VLM_LM_CLM)
        return vlm_errorf(err, VLM_ERR_ARG, "sampling needs a causal (clm) language model, not %s",
                          vlm_lm_objective_name(m->cfg.objective));
    if (*n < 1) return vlm_errorf(err, VLM_ERR_ARG, "sampling needs a prompt of at least one token (SOT)");
    const int V = m->cfg.vocab_size, ctx = m->cfg.context_length;
    if (cap > ctx) cap = ctx;
    vlm_ctx c;
    vlm_status st = vlm_ctx_init(&c, 64u << 20, o->seed, err);
    if (st) return st;
    float *p = malloc(sizeof(float) * (size_t)V);
    if (!p) {
        vlm_ctx_free(&c);
        return vlm_errorf(err, VLM_ERR_OOM, "sampling: out of memory");
    }
    vlm_rng r;
    vlm_rng_init(&r, o->seed, VLM_RNG_SAMPLE, 0);
    for (int k = 0; k < o->max_tokens && *n < cap && !st; k++) {
        vlm_ctx_reset(&c);
        c.grad_enabled = 0;
        vlm_tensor *x = vlm_tensor_wrap(&c, VLM_I32, 2, (int64_t[]){1, *n}, ids, NULL);
        vlm_tensor *h = vlm_lm_hidden(&c, m, x);
        vlm_tensor *last = h ? vlm_op_reshape(&c, vlm_op_contiguous(&c, vlm_view_slice(&c, h, 1, *n - 1, 1)), 2,
                                              (int64_t[]){1, m->cfg.width})
                             : NULL;
        vlm_tensor *lg = last ? vlm_lm_logits(&c, m, last) : NULL;
        if (!lg) {
            *err = c.err;
            st = c.status ? c.status : VLM_ERR_STATE;
            break;
        }
        float *l = vlm_f32(lg);
        l[m->cfg.sot] = -INFINITY; // never generated: SOT opens a text, [MASK] is mlm's
        if (m->cfg.mask >= 0) l[m->cfg.mask] = -INFINITY;
        int tok = draw(l, V, o, &r, p);
        ids[(*n)++] = tok;
        if (tok == m->cfg.eot) break;
    }
    free(p);
    vlm_ctx_free(&c);
    return st;
}
