// CLIP model: configs, parameters, weight loading and the contrastive forward.
#include <limits.h>
#include "fusion/clip.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"

static void set_cfg(vlm_clip_cfg *c, int embed, int img, int patch, int vw, int vl, int vh, int ctx, int vocab, int tw,
                    int tl, int th, vlm_act act) {
    memset(c, 0, sizeof *c);
    c->embed_dim = embed;
    c->vision = (vlm_vit_cfg){img, patch, vw, vl, vh, 4 * vw, embed, act, 0};
    c->text = (vlm_text_cfg){ctx, vocab, tw, th, tl, 4 * tw, embed, act};
}

vlm_status vlm_clip_cfg_preset(const char *name, vlm_clip_cfg *cfg, vlm_error *err) {
    if (!strcmp(name, "tiny")) set_cfg(cfg, 192, 32, 4, 192, 6, 3, 32, 8192, 192, 6, 3, VLM_ACT_GELU);
    else if (!strcmp(name, "small")) set_cfg(cfg, 384, 64, 8, 384, 6, 6, 32, 16384, 384, 6, 6, VLM_ACT_GELU);
    else if (!strcmp(name, "ViT-S-16")) set_cfg(cfg, 384, 224, 16, 384, 12, 6, 77, 49408, 384, 12, 6, VLM_ACT_GELU);
    else if (!strcmp(name, "ViT-S-32")) set_cfg(cfg, 384, 224, 32, 384, 12, 6, 77, 49408, 384, 12, 6, VLM_ACT_GELU);
    else if (!strcmp(name, "ViT-B-32")) set_cfg(cfg, 512, 224, 32, 768, 12, 12, 77, 49408, 512, 12, 8, VLM_ACT_GELU);
    // OpenAI's released models (QuickGELU), as their weights define them
    else if (!strcmp(name, "ViT-B/32") || !strcmp(name, "openai-ViT-B-32"))
        set_cfg(cfg, 512, 224, 32, 768, 12, 12, 77, 49408, 512, 12, 8, VLM_ACT_QUICK_GELU);
    else if (!strcmp(name, "ViT-B/16") || !strcmp(name, "openai-ViT-B-16"))
        set_cfg(cfg, 512, 224, 16, 768, 12, 12, 77, 49408, 512, 12, 8, VLM_ACT_QUICK_GELU);
    else if (!strcmp(name, "ViT-L/14") || !strcmp(name, "openai-ViT-L-14"))
        set_cfg(cfg, 768, 224, 14, 1024, 24, 16, 77, 49408, 768, 12, 12, VLM_ACT_QUICK_GELU);
    else if (!strcmp(name, "ViT-L/14@336px") || !strcmp(name, "openai-ViT-L-14-336"))
        set_cfg(cfg, 768, 336, 14, 1024, 24, 16, 77, 49408, 768, 12, 12, VLM_ACT_QUICK_GELU);
    else return vlm_errorf(err, VLM_ERR_ARG, "unknown model '%s' (presets: tiny, small, ViT-S-16, ViT-S-32, ViT-B-32, "
                           "OpenAI's ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px; or a JSON file)", name);
    return VLM_OK;
}

// 1: *out set; 0: absent; -1: not a number, or outside int's range (a
// float-to-int conversion out of range would be undefined behaviour).
static int jint(json_t *o, const char *k, int *out) {
    json_t *v = json_object_get(o, k);
    if (!v) return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
    if (!(d >= INT_MIN && d <= INT_MAX)) return -1;
    *out = (int)d;
    return 1;
}

static double jnum(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}

vlm_status vlm_clip_cfg_from_json(const char *text, vlm_clip_cfg *cfg, vlm_error *err) {
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return vlm_errorf(err, VLM_ERR_FORMAT, "model config: malformed JSON at line %d: %s", je.line, je.text);
    }
    memset(cfg, 0, sizeof *cfg);
    vlm_status st = VLM_OK;
    int embed = 0;
    if (jint(root, "embed_dim", &embed) != 1 || embed <= 0) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: needs a positive integer embed_dim");
        goto done;
    }
    cfg->embed_dim = embed;
    json_t *vc = json_object_get(root, "vision_cfg"), *tc = json_object_get(root, "text_cfg");
    if (vc || tc) { // open_clip schema
        if (!json_is_object(vc) || !json_is_object(tc)) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: vision_cfg and text_cfg must both be objects");
            goto done;
        }
        vlm_act act = json_is_true(json_object_get(root, "quick_gelu")) ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
        vlm_vit_cfg *v = &cfg->vision;
        vlm_text_cfg *t = &cfg->text;
        int head_width = 64;
        v->image_size = 224; v->patch_size = 16; v->layers = 12; v->width = 768;
        t->context_length = 77; t->vocab_size = 49408; t->width = 512; t->heads = 8; t->layers = 12;
        int bad = jint(vc, "image_size", &v->image_size) < 0 || jint(vc, "patch_size", &v->patch_size) < 0 ||
                  jint(vc, "layers", &v->layers) < 0 || jint(vc, "width", &v->width) < 0 ||
                  jint(vc, "head_width", &head_width) < 0 || jint(tc, "context_length", &t->context_length) < 0 ||
                  jint(tc, "vocab_size", &t->vocab_size) < 0 || jint(tc, "width", &t->width) < 0 ||
                  jint(tc, "heads", &t->heads) < 0 || jint(tc, "layers", &t->layers) < 0;
        if (bad || head_width <= 0) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: a vision_cfg/text_cfg field has the wrong type");
            goto done;
        }
        v->heads = v->width / head_width;
        if (jint(vc, "heads", &v->heads) < 0) { st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: vision heads"); goto done; }
        double vr = jnum(vc, "mlp_ratio", 4.0), tr = jnum(tc, "mlp_ratio", 4.0), pd = jnum(vc, "patch_dropout", 0.0);
        if (!(vr > 0 && vr <= 64 && tr > 0 && tr <= 64 && pd >= 0 && pd < 1) || v->width < 0 || t->width < 0 ||
            v->width > (1 << 20) || t->width > (1 << 20)) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: mlp_ratio must be in (0, 64], patch_dropout in [0, 1), "
                                                 "widths in [0, 2^20]");
            goto done;
        }
        v->mlp_width = (int)(v->width * vr);
        v->patch_dropout = (float)pd;
        t->mlp_width = (int)(t->width * tr);
        v->act = t->act = act;
        v->output_dim = t->output_dim = embed;
        json_t *sg = json_object_get(root, "init_logit_bias");
        cfg->siglip = sg != NULL && !json_is_null(sg);
        json_t *mm = json_object_get(root, "multimodal_cfg");
        if (mm) {
            cfg->coca_layers = t->layers, cfg->coca_heads = t->heads;
            if (!json_is_object(mm) || jint(mm, "layers", &cfg->coca_layers) < 0 || jint(mm, "heads", &cfg->coca_heads) < 0 ||
                cfg->coca_layers < 1 || cfg->coca_layers > 256 || cfg->coca_heads < 1 || t->width % cfg->coca_heads) {
                st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: multimodal_cfg needs layers in [1, 256] and heads "
                                                     "dividing the text width");
                goto done;
            }
        }
    } else { // OpenAI CLIP(...) arguments
        vlm_vit_cfg *v = &cfg->vision;
        vlm_text_cfg *t = &cfg->text;
        const char *need[] = {"image_resolution", "vision_layers", "vision_width", "vision_patch_size", "context_length",
                              "vocab_size", "transformer_width", "transformer_heads", "transformer_layers"};
        int *dst[] = {&v->image_size, &v->layers, &v->width, &v->patch_size, &t->context_length, &t->vocab_size, &t->width,
                      &t->heads, &t->layers};
        for (int i = 0; i < 9; i++)
            if (jint(root, need[i], dst[i]) != 1) {
                st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: missing or non-numeric '%s'", need[i]);
                goto done;
            }
        if (v->width < 0 || v->width > (1 << 20) || t->width < 0 || t->width > (1 << 20)) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "model config: widths must be in [0, 2^20]");
            goto done;
        }
        v->heads = v->width / 64 > 0 ? v->width / 64 : 1; // OpenAI: vision_heads = vision_width // 64
        v->mlp_width = 4 * v->width;
        t->mlp_width = 4 * t->width;
        v->act = t->act = VLM_ACT_QUICK_GELU;
        v->output_dim = t->output_dim = embed;
    }
    const vlm_vit_cfg *cv = &cfg->vision;
    const vlm_text_cfg *ct = &cfg->text;
    if (st == VLM_OK && (embed > (1 << 20) || cv->layers > 1024 || ct->layers > 1024 || cv->image_size <= 0 ||
                         cv->image_size > (1 << 14) || ct->context_length <= 0 || ct->context_length > (1 << 16) ||
                         ct->vocab_size <= 0 || ct->vocab_size > (1 << 24)))
        st = vlm_errorf(err, VLM_ERR_FORMAT,
                        "model config: sizes out of range (embed_dim <= 2^20, layers <= 1024, image 1..16384, "
                        "context 1..65536, vocab 1..2^24)");
    else if (cfg->vision.width <= 0 || cfg->vision.heads <= 0 || cfg->vision.width % cfg->vision.heads || cfg->text.width <= 0 ||
        cfg->text.heads <= 0 || cfg->text.width % cfg->text.heads || cfg->vision.layers < 0 || cfg->text.layers < 0 ||
        cfg->vision.patch_size <= 0 || cfg->vision.image_size % cfg->vision.patch_size)
        st = vlm_errorf(err, VLM_ERR_FORMAT,
                        "model config: inconsistent sizes (vision width %d / heads %d, text width %d / heads %d, image %d / patch %d)",
                        cfg->vision.width, cfg->vision.heads, cfg->text.width, cfg->text.heads, cfg->vision.image_size,
                        cfg->vision.patch_size);
done:
    json_decref(root);
    return st;
}

vlm_status vlm_clip_cfg_load(const char *name_or_path, vlm_clip_cfg *cfg, vlm_error *err) {
    const char *dot = strrchr(name_or_path, '.');
    if (!dot || strcmp(dot, ".json")) return vlm_clip_cfg_preset(name_or_path, cfg, err);
    json_error_t je;
    json_t *root = json_load_file(name_or_path, 0, &je);
    if (!root) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: %s (line %d)", name_or_path, je.text, je.line);
    char *text = json_dumps(root, 0);
    json_decref(root);
    vlm_status st = vlm_clip_cfg_from_json(text, cfg, err);
    free(text);
    if (st) vlm_error_prefix(err, "%s", name_or_path);
    return st;
}

char *vlm_clip_cfg_to_json(const vlm_clip_cfg *c) {
    json_t *root = json_pack("{s:i, s:b, s:{s:i, s:i, s:i, s:i, s:i, s:f, s:f}, s:{s:i, s:i, s:i, s:i, s:i, s:f}}",
                             "embed_dim", c->embed_dim, "quick_gelu", c->vision.act == VLM_ACT_QUICK_GELU, "vision_cfg",
                             "image_size", c->vision.image_size, "patch_size", c->vision.patch_size, "layers",
                             c->vision.layers, "width", c->vision.width, "heads", c->vision.heads, "mlp_ratio",
                             (double)c->vision.mlp_width / c->vision.width, "patch_dropout", (double)c->vision.patch_dropout,
                             "text_cfg", "context_length", c->text.context_length, "vocab_size", c->text.vocab_size,
                             "width", c->text.width, "heads", c->text.heads, "layers", c->text.layers, "mlp_ratio",
                             (double)c->text.mlp_width / c->text.width);
    if (c->siglip) json_object_set_new(root, "init_logit_bias", json_real(-10.0));
    if (c->coca_layers > 0)
        json_object_set_new(root, "multimodal_cfg", json_pack("{s:i, s:i, s:i}", "layers", c->coca_layers, "heads",
                                                              c->coca_heads, "width", c->text.width));
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

vlm_status vlm_clip_init(vlm_clip *m, const vlm_clip_cfg *cfg, vlm_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->cfg.vision.output_dim = m->cfg.text.output_dim = cfg->embed_dim;
    vlm_params_init(&m->ps);
    vlm_status st = vlm_text_init(&m->text, &m->ps, m->cfg.text, err);
    if (!st) st = vlm_vit_init(&m->visual, &m->ps, "visual.", m->cfg.vision, err);
    if (st) {
        vlm_clip_free(m);
        return st;
    }
    m->logit_scale = vlm_params_add(&m->ps, "logit_scale", 0, NULL, err);
    m->logit_bias = cfg->siglip ? vlm_params_add(&m->ps, "logit_bias", 0, NULL, err) : -1;
    if (cfg->coca_layers > 0) {
        vlm_mm_cfg mc = {cfg->text.width, cfg->coca_heads, cfg->coca_layers, cfg->text.vocab_size, cfg->vision.width,
                         cfg->text.act};
        m->has_dec = 1;
        if ((st = vlm_mm_init(&m->dec, &m->ps, mc, err))) {
            vlm_clip_free(m);
            return st;
        }
    }
    if (m->logit_scale < 0 || (cfg->siglip && m->logit_bias < 0) || vlm_params_alloc(&m->ps, err)) {
        vlm_clip_free(m);
        return err ? err->status : VLM_ERR_ARG;
    }
    return VLM_OK;
}

void vlm_clip_free(vlm_clip *m) {
    if (m->has_dec) vlm_mm_free(&m->dec);
    m->has_dec = 0;
    vlm_vit_free(&m->visual);
    vlm_text_free(&m->text);
    vlm_params_free(&m->ps);
}

void vlm_clip_init_weights(vlm_clip *m, uint64_t seed) {
    vlm_rng rng;
    vlm_rng_init(&rng, seed, VLM_RNG_INIT, 0);
    vlm_text_init_weights(&m->text, &m->ps, &rng);
    vlm_rng_init(&rng, seed, VLM_RNG_INIT, 1);
    vlm_vit_init_weights(&m->visual, &m->ps, &rng);
    vlm_f32(vlm_params_get(&m->ps, m->logit_scale))[0] = m->cfg.siglip ? logf(10.0f) : logf(1.0f / 0.07f);
    if (m->logit_bias >= 0) vlm_f32(vlm_params_get(&m->ps, m->logit_bias))[0] = -10.0f;
    if (m->has_dec) {
        vlm_rng_init(&rng, seed, VLM_RNG_INIT, 2);
        vlm_mm_init_weights(&m->dec, &m->ps, &rng);
    }
}

vlm_status vlm_clip_load_weights_st(vlm_clip *m, const void *stf, const char *what, vlm_error *err) {
    const vlm_st_file *f = stf;
    for (int i = 0; i < m->ps.n; i++) {
        vlm_param *p = &m->ps.p[i];
        vlm_status st = vlm_st_get(f, p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data, err);
        if (st) return vlm_error_prefix(err, "%s", what);
    }
    return VLM_OK;
}

vlm_status vlm_clip_load_weights(vlm_clip *m, const char *path, vlm_error *err) {
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    st = vlm_clip_load_weights_st(m, &f, path, err);
    vlm_st_free(&f);
    return st;
}

void vlm_clip_clamp_logit_scale(vlm_clip *m) {
    float *s = vlm_f32(vlm_params_get(&m->ps, m->logit_scale));
    const float hi = logf(100.0f);
    if (*s < 0) *s = 0;
    if (*s > hi) *s = hi;
}

vlm_tensor *vlm_clip_encode_image(vlm_ctx *c, vlm_clip *m, vlm_tensor *images, vlm_rng *rng) {
    return vlm_vit_forward(c, &m->visual, &m->ps, images, rng);
}

vlm_tensor *vlm_clip_encode_text(vlm_ctx *c, vlm_clip *m, vlm_tensor *ids) {
    return vlm_text_forward(c, &m->text, &m->ps, ids);
}

vlm_tensor *vlm_clip_encode_image_tokens(vlm_ctx *c, vlm_clip *m, vlm_tensor *images, vlm_rng *rng, vlm_tensor **tokens) {
    vlm_params *ps = &m->ps;
    vlm_tensor *tok = vlm_vit_tokens(c, &m->visual, ps, images, rng); // [B, 1+N, W]
    tok = vlm_op_layernorm(c, tok, vlm_params_get(ps, m->visual.ln_post_w), vlm_params_get(ps, m->visual.ln_post_b), 1e-5f);
    *tokens = tok;
    if (!tok) return NULL;
    int64_t B = tok->shape[0], W = tok->shape[2];
    // features: the class token (row 0 of every image) @ proj, as vlm_vit_forward
    vlm_tensor *cls = vlm_op_reshape(c, vlm_op_contiguous(c, vlm_view_slice(c, tok, 1, 0, 1)), 2, (int64_t[]){B, W});
    return vlm_op_matmul(c, cls, vlm_params_get(ps, m->visual.proj));
}

vlm_tensor *vlm_clip_encode_text_tokens(vlm_ctx *c, vlm_clip *m, vlm_tensor *ids, int all_positions, vlm_tensor **tokens,
                                        int32_t **eot) {
    return vlm_text_forward_tokens(c, &m->text, &m->ps, ids, all_positions, tokens, eot);
}

// Decoding state: the image's tokens (computed once) and a context.
typedef struct {
    vlm_clip *m;
    vlm_ctx c;
    float *itok; // [1 + N, Wv]
    int64_t M, Wv;
} caption_ctx;

// Next-token log-probabilities of n prefixes [n, len] given the image.
static int caption_next(void *user, const int32_t *pre, int n, int len, float *logp, vlm_error *err) {
    caption_ctx *k = user;
    vlm_ctx *c = &k->c;
    vlm_ctx_reset(c);
    c->grad_enabled = 0;
    const int64_t V = k->m->cfg.text.vocab_size;
    float *img = vlm_arena_alloc(&c->arena, sizeof(float) * (size_t)(n * k->M * k->Wv));
    if (!img) return vlm_errorf(err, VLM_ERR_OOM, "caption: arena out of memory"), 1;
    for (int i = 0; i < n; i++) memcpy(img + i * k->M * k->Wv, k->itok, sizeof(float) * (size_t)(k->M * k->Wv));
    vlm_tensor *ttok = NULL;
    vlm_clip_encode_text_tokens(c, k->m, vlm_tensor_wrap(c, VLM_I32, 2, (int64_t[]){n, len}, (void *)pre, NULL), 1, &ttok,
                                NULL);
    vlm_tensor *lg = vlm_mm_forward(c, &k->m->dec, &k->m->ps, ttok,
                                    vlm_tensor_wrap(c, VLM_F32, 3, (int64_t[]){n, k->M, k->Wv}, img, NULL));
    if (!lg) return *err = c->err, 1;
    for (int i = 0; i < n; i++) { // log_softmax of the last position
        const float *l = vlm_f32(lg) + ((int64_t)i * len + len - 1) * V;
        float mx = l[0];
        for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        double s = 0;
        for (int64_t v = 0; v < V; v++) s += exp((double)(l[v] - mx));
        float lse = mx + (float)log(s);
        for (int64_t v = 0; v < V; v++) logp[(int64_t)i * V + v] = l[v] - lse;
    }
    return 0;
}

vlm_status vlm_coca_caption(vlm_clip *m, const float *image, const vlm_seqdec_opts *o, int32_t *out, int *len,
                            vlm_error *err) {
    if (!m->has_dec) return vlm_errorf(err, VLM_ERR_ARG, "captioning needs a CoCa model (vlm pretrain --coca)");
    if (o->max_len > m->cfg.text.context_length)
        return vlm_errorf(err, VLM_ERR_ARG, "caption length %d exceeds the context of %d", o->max_len,
                          m->cfg.text.context_length);
    caption_ctx k = {.m = m};
    vlm_status st = vlm_ctx_init(&k.c, 64u << 20, 0, err);
    if (st) return st;
    const int S = m->cfg.vision.image_size;
    k.c.grad_enabled = 0;
    vlm_tensor *itok = NULL;
    vlm_clip_encode_image_tokens(&k.c, m, vlm_tensor_wrap(&k.c, VLM_F32, 4, (int64_t[]){1, 3, S, S}, (void *)image, NULL),
                                 NULL, &itok);
    if (!itok) {
        *err = k.c.err;
        st = k.c.status ? k.c.status : VLM_ERR_STATE;
    } else {
        k.M = itok->shape[1], k.Wv = itok->shape[2];
        k.itok = malloc(sizeof(float) * (size_t)(k.M * k.Wv));
        if (!k.itok) st = vlm_errorf(err, VLM_ERR_OOM, "caption: out of memory");
        else memcpy(k.itok, vlm_f32(itok), sizeof(float) * (size_t)(k.M * k.Wv));
    }
    if (!st) st = vlm_seq_decode(caption_next, &k, m->cfg.text.vocab_size, o, out, len, NULL, err);
    free(k.itok);
    vlm_ctx_free(&k.c);
    return st;
}

vlm_tensor *vlm_clip_logits(vlm_ctx *c, vlm_clip *m, vlm_tensor *img, vlm_tensor *txt) {
    vlm_tensor *a = vlm_op_l2norm(c, img), *b = vlm_op_l2norm(c, txt);
    vlm_tensor *scale = vlm_op_act(c, vlm_params_get(&m->ps, m->logit_scale), VLM_ACT_EXP);
    vlm_tensor *sim = vlm_op_matmul(c, a, vlm_view_transpose(c, b, 0, 1));
    return vlm_op_mul(c, sim, scale);
}
