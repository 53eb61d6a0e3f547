// DiT denoiser with adaLN-Zero, conditioned on CLIP embeddings (see dit.h).
#include "fusion/dit.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/transformer.h"

void vlm_dit_cfg_default(vlm_dit_cfg *cfg) {
    *cfg = (vlm_dit_cfg){.image_size = 32, .patch_size = 4, .in_channels = 3, .width = 256, .layers = 6,
                         .heads = 4, .mlp_ratio = 4, .cond_dim = 512, .cond_tokens = 0, .freq_dim = 256,
                         .ln_eps = 1e-6f, .schedule = VLM_DIFF_LINEAR, .timesteps = 1000, .long_skip = 0};
}

vlm_status vlm_dit_cfg_check(const vlm_dit_cfg *c, vlm_error *err) {
    if (c->image_size < 1 || c->patch_size < 1 || c->image_size % c->patch_size)
        return vlm_errorf(err, VLM_ERR_ARG, "dit: image size %d is not a multiple of patch size %d", c->image_size,
                          c->patch_size);
    if (c->in_channels != 1 && c->in_channels != 3)
        return vlm_errorf(err, VLM_ERR_ARG, "dit: channels must be 1 or 3, got %d", c->in_channels);
    if (c->width < 4 || c->heads < 1 || c->width % c->heads || c->layers < 1 || c->mlp_ratio < 1)
        return vlm_errorf(err, VLM_ERR_ARG, "dit: width %d must be divisible by heads %d (layers %d, mlp ratio %d)",
                          c->width, c->heads, c->layers, c->mlp_ratio);
    if ((c->width / c->patch_size / c->patch_size) && c->width % 4)
        return vlm_errorf(err, VLM_ERR_ARG, "dit: width %d must be a multiple of 4 (2-D sin-cos positions)", c->width);
    if (c->cond_dim < 1 || c->cond_tokens < 0 || c->cond_tokens > 64 || c->freq_dim < 2 || c->freq_dim % 2)
        return vlm_errorf(err, VLM_ERR_ARG, "dit: bad cond_dim %d / cond_tokens %d / freq_dim %d", c->cond_dim,
                          c->cond_tokens, c->freq_dim);
    if (c->long_skip && (c->layers < 2 || c->layers > 256))
        return vlm_errorf(err, VLM_ERR_ARG, "dit: long skips need 2 to 256 layers, got %d", c->layers);
    if (c->timesteps < 2 || c->timesteps > 100000)
        return vlm_errorf(err, VLM_ERR_ARG, "dit: timesteps %d out of [2, 100000]", c->timesteps);
    return VLM_OK;
}

char *vlm_dit_cfg_to_json(const vlm_dit_cfg *c) {
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:i}", "image_size",
                          c->image_size, "patch_size", c->patch_size, "in_channels", c->in_channels, "width", c->width,
                          "layers", c->layers, "heads", c->heads, "mlp_ratio", c->mlp_ratio, "cond_dim", c->cond_dim,
                          "cond_tokens", c->cond_tokens, "freq_dim", c->freq_dim, "ln_eps", (double)c->ln_eps,
                          "schedule", vlm_diff_kind_name(c->schedule), "timesteps", c->timesteps);
    // written only when on, so files of models without skips stay byte-identical
    if (o && c->long_skip) json_object_set_new(o, "long_skip", json_true());
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

vlm_status vlm_dit_cfg_from_json(const char *text, vlm_dit_cfg *c, vlm_error *err) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return vlm_errorf(err, VLM_ERR_FORMAT, "dit config: malformed JSON at line %d: %s", je.line, je.text);
    }
    const char *names[] = {"image_size", "patch_size", "in_channels", "width", "layers", "heads",
                           "mlp_ratio", "cond_dim", "cond_tokens", "freq_dim", "timesteps"};
    int *dst[] = {&c->image_size, &c->patch_size, &c->in_channels, &c->width, &c->layers, &c->heads,
                  &c->mlp_ratio, &c->cond_dim, &c->cond_tokens, &c->freq_dim, &c->timesteps};
    vlm_status st = VLM_OK;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !st; i++) {
        json_t *v = json_object_get(o, names[i]);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
            st = vlm_errorf(err, VLM_ERR_FORMAT, "dit config: field '%s' missing or not a small integer", names[i]);
        else
            *dst[i] = (int)json_integer_value(v);
    }
    json_t *eps = json_object_get(o, "ln_eps");
    const char *sch = json_string_value(json_object_get(o, "schedule"));
    if (!st && (!json_is_number(eps) || !sch || vlm_diff_kind_parse(sch) < 0))
        st = vlm_errorf(err, VLM_ERR_FORMAT, "dit config: 'ln_eps' must be a number and 'schedule' linear or cosine");
    json_t *ls = json_object_get(o, "long_skip"); // optional (older files: off)
    if (!st && ls && !json_is_boolean(ls))
        st = vlm_errorf(err, VLM_ERR_FORMAT, "dit config: 'long_skip' must be true or false");
    if (!st) {
        c->long_skip = ls ? json_is_true(ls) : 0;
        c->ln_eps = (float)json_number_value(eps);
        c->schedule = (vlm_diff_kind)vlm_diff_kind_parse(sch);
        st = vlm_dit_cfg_check(c, err);
    }
    json_decref(o);
    return st;
}

static int add(vlm_params *ps, vlm_error *err, int *bad, int nd, const int64_t *sh, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int add(vlm_params *ps, vlm_error *err, int *bad, int nd, const int64_t *sh, const char *fmt, ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int i = vlm_params_add(ps, name, nd, sh, err);
    if (i < 0) *bad = 1;
    return i;
}
#define ADD1(n0, ...) add(&d->ps, err, &bad, 1, (int64_t[]){n0}, __VA_ARGS__)
#define ADD2(n0, n1, ...) add(&d->ps, err, &bad, 2, (int64_t[]){n0, n1}, __VA_ARGS__)

vlm_status vlm_dit_init(vlm_dit *d, const vlm_dit_cfg *cfg, vlm_error *err) {
    memset(d, 0, sizeof *d);
    vlm_status st = vlm_dit_cfg_check(cfg, err);
    if (st) return st;
    d->cfg = *cfg;
    vlm_params_init(&d->ps);
    int64_t W = cfg->width, p = cfg->patch_size, Ci = cfg->in_channels, G = cfg->image_size / p, E = cfg->cond_dim;
    int64_t M = W * cfg->mlp_ratio;
    int bad = 0;
    d->pos = add(&d->ps, err, &bad, 3, (int64_t[]){1, G * G, W}, "pos_embed");
    d->xe_w = add(&d->ps, err, &bad, 4, (int64_t[]){W, Ci, p, p}, "x_embedder.proj.weight");
    d->xe_b = ADD1(W, "x_embedder.proj.bias");
    d->t0_w = ADD2(W, cfg->freq_dim, "t_embedder.mlp.0.weight");
    d->t0_b = ADD1(W, "t_embedder.mlp.0.bias");
    d->t2_w = ADD2(W, W, "t_embedder.mlp.2.weight");
    d->t2_b = ADD1(W, "t_embedder.mlp.2.bias");
    d->y_w = ADD2(W, E, "y_embedder.proj.weight");
    d->y_b = ADD1(W, "y_embedder.proj.bias");
    d->y_null = ADD1(E, "y_embedder.null");
    d->y_mean = ADD1(E, "y_embedder.mean");
    d->y_iscale = ADD1(1, "y_embedder.inv_scale");
    d->tok_w = d->tok_b = -1;
    if (cfg->cond_tokens) {
        d->tok_w = ADD2(cfg->cond_tokens * W, E, "y_embedder.tokens.weight");
        d->tok_b = ADD1(cfg->cond_tokens * W, "y_embedder.tokens.bias");
    }
    d->blocks = calloc((size_t)cfg->layers, sizeof *d->blocks);
    if (!d->blocks) return vlm_errorf(err, VLM_ERR_OOM, "dit: out of memory");
    for (int l = 0; l < cfg->layers; l++) {
        vlm_dit_block *b = &d->blocks[l];
        b->qkv_w = ADD2(3 * W, W, "blocks.%d.attn.qkv.weight", l);
        b->qkv_b = ADD1(3 * W, "blocks.%d.attn.qkv.bias", l);
        b->proj_w = ADD2(W, W, "blocks.%d.attn.proj.weight", l);
        b->proj_b = ADD1(W, "blocks.%d.attn.proj.bias", l);
        b->fc1_w = ADD2(M, W, "blocks.%d.mlp.fc1.weight", l);
        b->fc1_b = ADD1(M, "blocks.%d.mlp.fc1.bias", l);
        b->fc2_w = ADD2(W, M, "blocks.%d.mlp.fc2.weight", l);
        b->fc2_b = ADD1(W, "blocks.%d.mlp.fc2.bias", l);
        b->ada_w = ADD2(6 * W, W, "blocks.%d.adaLN_modulation.1.weight", l);
        b->ada_b = ADD1(6 * W, "blocks.%d.adaLN_modulation.1.bias", l);
    }
    if (cfg->long_skip) {
        int ns = cfg->layers / 2;
        d->skip_w = malloc(sizeof(int) * (size_t)ns), d->skip_b = malloc(sizeof(int) * (size_t)ns);
        if (!d->skip_w || !d->skip_b) return vlm_errorf(err, VLM_ERR_OOM, "dit: out of memory");
        for (int i = 0; i < ns; i++) {
            d->skip_w[i] = ADD2(W, 2 * W, "skips.%d.linear.weight", i);
            d->skip_b[i] = ADD1(W, "skips.%d.linear.bias", i);
        }
    }
    d->fa_w = ADD2(2 * W, W, "final_layer.adaLN_modulation.1.weight");
    d->fa_b = ADD1(2 * W, "final_layer.adaLN_modulation.1.bias");
    d->fl_w = ADD2(p * p * Ci, W, "final_layer.linear.weight");
    d->fl_b = ADD1(p * p * Ci, "final_layer.linear.bias");
    if (bad) return VLM_ERR_ARG;
    if ((st = vlm_params_alloc(&d->ps, err))) return st;
    vlm_params_set_frozen(&d->ps, d->pos, 1);
    vlm_params_set_frozen(&d->ps, d->y_mean, 1);
    vlm_params_set_frozen(&d->ps, d->y_iscale, 1);
    vlm_params_default_decay(&d->ps);
    d->ps.p[d->y_null].no_decay = 1;
    return VLM_OK;
}

void vlm_dit_free(vlm_dit *d) {
    vlm_params_free(&d->ps);
    free(d->blocks);
    free(d->skip_w), free(d->skip_b);
    memset(d, 0, sizeof *d);
}

void vlm_dit_timestep_embedding(const int32_t *t, int B, int dim, float *out) {
    int h = dim / 2;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < h; i++) {
            double f = exp(-log(10000.0) * i / h), a = (double)t[b] * f;
            out[(int64_t)b * dim + i] = (float)cos(a);
            out[(int64_t)b * dim + h + i] = (float)sin(a);
        }
}

// 1-D table of DiT's get_1d_sincos_pos_embed_from_grid: [sin(pos w_i), cos(pos w_i)], w_i = 10000^(-i/(D/2)).
static void sincos_1d(int D, double pos, float *out) {
    int h = D / 2;
    for (int i = 0; i < h; i++) {
        double w = 1.0 / pow(10000.0, (double)i / h);
        out[i] = (float)sin(pos * w);
        out[h + i] = (float)cos(pos * w);
    }
}

void vlm_dit_pos_embed(int G, int W, float *out) {
    // DiT: grid = meshgrid(w, h) so grid[0] is the column index; the first W/2
    // channels encode grid[0] (column), the last W/2 grid[1] (row).
    for (int r = 0; r < G; r++)
        for (int col = 0; col < G; col++) {
            float *o = out + ((int64_t)r * G + col) * W;
            sincos_1d(W / 2, col, o);
            sincos_1d(W / 2, r, o + W / 2);
        }
}

void vlm_dit_set_cond_stats(vlm_dit *d, const float *emb, int64_t n) {
    const int E = d->cfg.cond_dim;
    float *mean = vlm_f32(vlm_params_get(&d->ps, d->y_mean)), *is = vlm_f32(vlm_params_get(&d->ps, d->y_iscale));
    double ss = 0;
    for (int j = 0; j < E; j++) {
        double m = 0;
        for (int64_t i = 0; i < n; i++) m += emb[i * E + j];
        mean[j] = n > 0 ? (float)(m / (double)n) : 0.0f;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < E; j++) ss += ((double)emb[i * E + j] - mean[j]) * ((double)emb[i * E + j] - mean[j]);
    double rms = n > 0 ? sqrt(ss / (double)n) : 0;
    is[0] = rms > 1e-6 ? (float)(1.0 / rms) : 1.0f;
}

static void xavier(vlm_tensor *w, int64_t fan_out, int64_t fan_in, vlm_rng *rng) {
    float a = sqrtf(6.0f / (float)(fan_in + fan_out));
    for (int64_t i = 0; i < vlm_numel(w); i++) vlm_f32(w)[i] = a * (2.0f * vlm_rng_uniform(rng) - 1.0f);
}

void vlm_dit_init_weights(vlm_dit *d, uint64_t seed) {
    vlm_rng rng;
    vlm_rng_init(&rng, seed, 0xd17, 0);
    memset(d->ps.data, 0, sizeof(float) * (size_t)d->ps.total); // biases and every adaLN / final layer: zero
    const vlm_dit_cfg *c = &d->cfg;
    int64_t W = c->width, p = c->patch_size, G = c->image_size / p, M = W * c->mlp_ratio;
#define P(i) vlm_params_get(&d->ps, i)
    vlm_dit_pos_embed((int)G, (int)W, vlm_f32(P(d->pos)));
    xavier(P(d->xe_w), W, c->in_channels * p * p, &rng);
    vlm_fill_normal(P(d->t0_w), &rng, 0.02f);
    vlm_fill_normal(P(d->t2_w), &rng, 0.02f);
    vlm_fill_normal(P(d->y_w), &rng, 0.02f);
    vlm_fill_normal(P(d->y_null), &rng, 1.0f / sqrtf((float)c->cond_dim));
    vlm_fill_const(P(d->y_iscale), 1.0f); // mean stays 0: identity until vlm_dit_set_cond_stats
    if (d->tok_w >= 0) xavier(P(d->tok_w), c->cond_tokens * W, c->cond_dim, &rng);
    for (int l = 0; l < c->layers; l++) {
        const vlm_dit_block *b = &d->blocks[l];
        xavier(P(b->qkv_w), 3 * W, W, &rng);
        xavier(P(b->proj_w), W, W, &rng);
        xavier(P(b->fc1_w), M, W, &rng);
        xavier(P(b->fc2_w), W, M, &rng);
    }
    for (int i = 0; c->long_skip && i < c->layers / 2; i++) xavier(P(d->skip_w[i]), W, 2 * W, &rng);
#undef P
}

vlm_tensor *vlm_dit_forward(vlm_ctx *c, vlm_dit *d, vlm_tensor *xt, const int32_t *t, vlm_tensor *emb,
                            const uint8_t *drop) {
    if (!vlm_ctx_ok(c)) return NULL;
    const vlm_dit_cfg *cf = &d->cfg;
    int64_t S = cf->image_size, p = cf->patch_size, Ci = cf->in_channels, G = S / p, N = G * G, W = cf->width;
    int64_t E = cf->cond_dim, K = cf->cond_tokens, H = cf->heads, D = W / H;
    char s1[96];
    if (!xt || xt->ndim != 4 || xt->shape[1] != Ci || xt->shape[2] != S || xt->shape[3] != S)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "dit: x_t %s, expected [B, %lld, %lld, %lld]",
                            xt ? vlm_shape_str(xt, s1, sizeof s1) : "NULL", (long long)Ci, (long long)S, (long long)S);
    int64_t B = xt->shape[0];
    if (emb && (emb->ndim != 2 || emb->shape[0] != B || emb->shape[1] != E))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "dit: embedding %s, expected [%lld, %lld]", vlm_shape_str(emb, s1, sizeof s1),
                            (long long)B, (long long)E);
    for (int64_t b = 0; b < B; b++) {
        if (t[b] < 0 || t[b] >= cf->timesteps)
            return vlm_ctx_fail(c, VLM_ERR_ARG, "dit: timestep %d of row %lld outside [0, %d)", t[b], (long long)b,
                                cf->timesteps);
        if (!emb && !(drop && drop[b]))
            return vlm_ctx_fail(c, VLM_ERR_ARG, "dit: row %lld has no embedding and is not dropped", (long long)b);
    }
#define P(i) vlm_params_get(&d->ps, i)
    // Conditioning input: the CLIP embedding, or the learned null embedding in
    // dropped rows: e = emb * keep + null * (1 - keep), keep: [B, 1].
    vlm_tensor *keep = vlm_tensor_new(c, VLM_F32, 2, (int64_t[]){B, 1}, 0);
    vlm_tensor *tf = vlm_tensor_new(c, VLM_F32, 2, (int64_t[]){B, cf->freq_dim}, 0);
    if (!keep || !tf) return NULL;
    int any_drop = 0;
    for (int64_t b = 0; b < B; b++) {
        vlm_f32(keep)[b] = drop && drop[b] ? 0.0f : 1.0f;
        any_drop |= drop && drop[b];
    }
    // standardise the embeddings with the training conditions' statistics
    if (emb) emb = vlm_op_mul(c, vlm_op_sub(c, emb, P(d->y_mean)), P(d->y_iscale));
    vlm_tensor *e;
    vlm_tensor *null_row = vlm_view_reshape(c, P(d->y_null), 2, (int64_t[]){1, E});
    if (!any_drop)
        e = emb;
    else {
        vlm_tensor *dropped = vlm_op_add_scalar(c, vlm_op_scale(c, keep, -1.0f), 1.0f); // [B, 1]
        e = vlm_op_mul(c, null_row, dropped);                                           // [B, E]
        if (emb) e = vlm_op_add(c, e, vlm_op_mul(c, emb, keep));
    }
    vlm_dit_timestep_embedding(t, (int)B, cf->freq_dim, vlm_f32(tf));
    vlm_tensor *temb = vlm_op_linear(c, vlm_op_act(c, vlm_op_linear(c, tf, P(d->t0_w), P(d->t0_b)), VLM_ACT_SILU),
                                     P(d->t2_w), P(d->t2_b)); // [B, W]
    vlm_tensor *cvec = vlm_op_add(c, temb, vlm_op_linear(c, e, P(d->y_w), P(d->y_b)));
    vlm_tensor *sc = vlm_op_act(c, cvec, VLM_ACT_SILU); // [B, W], input of every adaLN modulation
    // Tokens: [B, N, W] + pos [1, N, W] (-> [B, K+N, W] with the extra tokens first).
    vlm_tensor *x = vlm_op_add(c, vlm_op_patchify(c, xt, P(d->xe_w), P(d->xe_b)), P(d->pos));
    if (K) {
        vlm_tensor *tok = vlm_op_reshape(c, vlm_op_linear(c, e, P(d->tok_w), P(d->tok_b)), 3, (int64_t[]){B, K, W});
        vlm_tensor *parts[2] = {tok, x};
        x = vlm_op_concat(c, parts, 2, 1);
    }
    if (!x) return NULL;
    int64_t T = K + N;
    // U-ViT long skips: blocks [0, L/2) push their outputs, blocks [L - L/2, L) take them back last-in
    // first-out through Linear([x, skip]) (a middle block of odd L has none).
    const int L = cf->layers, ns = cf->long_skip ? L / 2 : 0;
    vlm_tensor *skips[128]; // ns <= 128: vlm_dit_cfg_check caps long-skip models at 256 layers
    for (int l = 0; l < L; l++) {
        const vlm_dit_block *bk = &d->blocks[l];
        if (ns && l >= L - ns) {
            int i = l - (L - ns); // skip linear i takes the output of block ns - 1 - i
            vlm_tensor *parts[2] = {x, skips[ns - 1 - i]};
            x = vlm_op_linear(c, vlm_op_concat(c, parts, 2, 2), P(d->skip_w[i]), P(d->skip_b[i])); // [B, T, W]
            if (!x) return NULL;
        }
        vlm_tensor *mod = vlm_op_linear(c, sc, P(bk->ada_w), P(bk->ada_b)); // [B, 6W]
        if (!mod) return NULL;
        // DiT's chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
        vlm_tensor *ch[6];
        for (int k = 0; k < 6; k++) ch[k] = vlm_view_slice(c, mod, 1, k * W, W);
        vlm_tensor *h = vlm_op_ln_modulate(c, x, ch[0], ch[1], cf->ln_eps);
        vlm_tensor *qkv = vlm_op_linear(c, h, P(bk->qkv_w), P(bk->qkv_b)); // [B, T, 3W]
        if (!qkv) return NULL;
        int64_t shape[4] = {B, H, T, D}, stride[4] = {T * 3 * W, D, 3 * W, 1};
        vlm_tensor *q = vlm_view_strided(c, qkv, 4, shape, stride, 0);
        vlm_tensor *k = vlm_view_strided(c, qkv, 4, shape, stride, W);
        vlm_tensor *v = vlm_view_strided(c, qkv, 4, shape, stride, 2 * W);
        vlm_tensor *o = vlm_op_attention(c, q, k, v, 0, NULL); // memory [B, T, H, D]
        if (!o) return NULL;
        o = vlm_view_reshape(c, vlm_view_transpose(c, o, 1, 2), 3, (int64_t[]){B, T, W});
        x = vlm_op_gate_add(c, x, ch[2], vlm_op_linear(c, o, P(bk->proj_w), P(bk->proj_b)));
        h = vlm_op_ln_modulate(c, x, ch[3], ch[4], cf->ln_eps);
        h = vlm_op_act(c, vlm_op_linear(c, h, P(bk->fc1_w), P(bk->fc1_b)), VLM_ACT_GELU_TANH);
        x = vlm_op_gate_add(c, x, ch[5], vlm_op_linear(c, h, P(bk->fc2_w), P(bk->fc2_b)));
        if (!x) return NULL;
        if (l < ns) skips[l] = x;
    }
    if (K) x = vlm_view_slice(c, x, 1, K, N);
    vlm_tensor *fm = vlm_op_linear(c, sc, P(d->fa_w), P(d->fa_b)); // [B, 2W]: shift, scale
    if (!fm) return NULL;
    x = vlm_op_ln_modulate(c, x, vlm_view_slice(c, fm, 1, 0, W), vlm_view_slice(c, fm, 1, W, W), cf->ln_eps);
    x = vlm_op_linear(c, x, P(d->fl_w), P(d->fl_b)); // [B, N, p*p*Ci], feature = (py*p + px)*Ci + ch
#undef P
    if (!x) return NULL;
    // Unpatchify (DiT's 'nhwpqc->nchpwq') as a view, then one copy:
    // [B, Ci, G, p, G, p] over the token features.
    int64_t Pf = p * p * Ci;
    int64_t ush[6] = {B, Ci, G, p, G, p}, ust[6] = {N * Pf, 1, G * Pf, p * Ci, Pf, Ci};
    vlm_tensor *u = vlm_op_contiguous(c, vlm_view_strided(c, x, 6, ush, ust, 0));
    return vlm_view_reshape(c, u, 4, (int64_t[]){B, Ci, S, S});
}
