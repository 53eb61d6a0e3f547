// ViT image classifier with an optional conv stem (see classifier.h).
#include "vision/classifier.h"
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/op_ext.h"
#include "core/safetensors.h"

void vlm_classifier_cfg_from_vit(vlm_classifier_cfg *cfg, const vlm_vit_cfg *vit, int n_classes) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vit = *vit;
    cfg->vit.patch_dropout = 0;
    if (!cfg->vit.mlp_width) cfg->vit.mlp_width = 4 * cfg->vit.width;
    cfg->pool = VLM_POOL_CLS;
    cfg->head.kind = VLM_HEAD_LINEAR;
    cfg->head.n_classes = n_classes;
    cfg->head.act = VLM_ACT_GELU;
    cfg->stem_act = VLM_ACT_RELU;
}

int vlm_pool_parse(const char *name) {
    if (!strcmp(name, "cls") || !strcmp(name, "token")) return VLM_POOL_CLS;
    if (!strcmp(name, "mean") || !strcmp(name, "avg")) return VLM_POOL_MEAN;
    return -1;
}

static int log2_exact(int p) {
    int k = 0;
    while (p > 1 && p % 2 == 0) {
        p /= 2;
        k++;
    }
    return p == 1 ? k : -1;
}

vlm_status vlm_classifier_cfg_check(const vlm_classifier_cfg *c, vlm_error *err) {
    const vlm_vit_cfg *v = &c->vit;
    if (v->image_size <= 0 || v->patch_size <= 0 || v->image_size % v->patch_size)
        return vlm_errorf(err, VLM_ERR_ARG, "classifier: image size %d is not a multiple of patch size %d", v->image_size,
                          v->patch_size);
    if (v->width <= 0 || v->heads <= 0 || v->width % v->heads || v->layers < 0 || v->mlp_width < 0 || v->output_dim <= 0)
        return vlm_errorf(err, VLM_ERR_ARG, "classifier: inconsistent ViT sizes (width %d, heads %d, layers %d, mlp %d, output %d)",
                          v->width, v->heads, v->layers, v->mlp_width, v->output_dim);
    if (c->stem_layers < 0 || c->stem_layers > VLM_STEM_MAX)
        return vlm_errorf(err, VLM_ERR_ARG, "classifier: %d stem layers (at most %d)", c->stem_layers, VLM_STEM_MAX);
    if (c->stem_layers) {
        int k = log2_exact(v->patch_size);
        if (k < 0 || k > c->stem_layers)
            return vlm_errorf(err, VLM_ERR_ARG,
                              "classifier: a conv stem needs a power-of-two patch size with at most one stride-2 conv per "
                              "stem layer (patch %d, %d stem layers)",
                              v->patch_size, c->stem_layers);
        for (int i = 0; i < c->stem_layers; i++)
            if (c->stem_ch[i] <= 0 || c->stem_ch[i] > 4096)
                return vlm_errorf(err, VLM_ERR_ARG, "classifier: stem layer %d has %d channels", i, c->stem_ch[i]);
    }
    if (c->pool != VLM_POOL_CLS && c->pool != VLM_POOL_MEAN) return vlm_errorf(err, VLM_ERR_ARG, "classifier: bad pooling");
    if (c->head.n_classes <= 0) return vlm_errorf(err, VLM_ERR_ARG, "classifier: %d classes", c->head.n_classes);
    return VLM_OK;
}

// ---- channel-last im2col -----------------------------------------------------
typedef struct {
    int64_t B, H, W, C, Ho, Wo, k, stride, pad;
} im2col_geom;

// One image: gather (add_back = 0) or scatter-add (add_back = 1) between
// img [H, W, C] and cols [Ho, Wo, k, k, C].
static void im2col_image(const im2col_geom *g, float *img, float *cols, int add_back) {
    const int64_t C = g->C, row = g->k * g->k * C;
    for (int64_t oy = 0; oy < g->Ho; oy++)
        for (int64_t ox = 0; ox < g->Wo; ox++) {
            float *dst = cols + (oy * g->Wo + ox) * row;
            for (int64_t ky = 0; ky < g->k; ky++) {
                int64_t iy = oy * g->stride - g->pad + ky;
                for (int64_t kx = 0; kx < g->k; kx++) {
                    int64_t ix = ox * g->stride - g->pad + kx;
                    float *d = dst + (ky * g->k + kx) * C;
                    int in = iy >= 0 && iy < g->H && ix >= 0 && ix < g->W;
                    if (add_back) {
                        if (in) {
                            float *s = img + (iy * g->W + ix) * C;
                            for (int64_t ch = 0; ch < C; ch++) s[ch] += d[ch];
                        }
                    } else if (in)
                        memcpy(d, img + (iy * g->W + ix) * C, sizeof(float) * (size_t)C);
                    else
                        memset(d, 0, sizeof(float) * (size_t)C);
                }
            }
        }
}

static void im2col_backward(vlm_ctx *c, vlm_node *n) {
    (void)c;
    vlm_tensor *x = n->in[0], *y = n->out;
    const im2col_geom *g = n->saved;
    const int64_t in_sz = g->H * g->W * g->C, out_sz = g->Ho * g->Wo * g->k * g->k * g->C;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < g->B; b++) im2col_image(g, x->grad + b * in_sz, y->grad + b * out_sz, 1);
}

vlm_tensor *vlm_op_im2col_nhwc(vlm_ctx *c, vlm_tensor *x, int k, int stride, int pad) {
    if (!vlm_check_f32(c, "im2col_nhwc", x, "x")) return NULL;
    char sx[96];
    if (x->ndim != 4 || k < 1 || stride < 1 || pad < 0 || x->shape[1] + 2 * pad < k || x->shape[2] + 2 * pad < k)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "im2col_nhwc: input %s must be [B, H, W, C] with H, W + 2*%d >= %d (stride %d)",
                            vlm_shape_str(x, sx, sizeof sx), pad, k, stride);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    im2col_geom gm = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], 0, 0, k, stride, pad};
    gm.Ho = (gm.H + 2 * pad - k) / stride + 1;
    gm.Wo = (gm.W + 2 * pad - k) / stride + 1;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    int64_t shape[4] = {gm.B, gm.Ho, gm.Wo, (int64_t)k * k * gm.C};
    vlm_tensor *y = vlm_out(c, 4, shape, g);
    if (!y) return NULL;
    const int64_t in_sz = gm.H * gm.W * gm.C, out_sz = gm.Ho * gm.Wo * k * k * gm.C;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < gm.B; b++) im2col_image(&gm, vlm_f32(x) + b * in_sz, vlm_f32(y) + b * out_sz, 0);
    if (g) {
        im2col_geom *saved = vlm_arena_alloc(&c->arena, sizeof *saved);
        if (!saved) return vlm_ctx_fail(c, VLM_ERR_OOM, "im2col_nhwc: arena out of memory");
        *saved = gm;
        vlm_node *nd = vlm_record(c, "im2col_nhwc", y, im2col_backward, x, NULL, NULL, NULL);
        if (nd) nd->saved = saved;
    }
    return y;
}

static const char *act_name(vlm_act a) {
    switch (a) {
    case VLM_ACT_QUICK_GELU: return "quick_gelu";
    case VLM_ACT_GELU_TANH: return "gelu_tanh";
    case VLM_ACT_RELU: return "relu";
    case VLM_ACT_SILU: return "silu";
    default: return "gelu";
    }
}

int vlm_act_parse_name(const char *s, vlm_act *a) {
    if (!strcmp(s, "gelu")) *a = VLM_ACT_GELU;
    else if (!strcmp(s, "quick_gelu")) *a = VLM_ACT_QUICK_GELU;
    else if (!strcmp(s, "gelu_tanh")) *a = VLM_ACT_GELU_TANH;
    else if (!strcmp(s, "relu")) *a = VLM_ACT_RELU;
    else if (!strcmp(s, "silu")) *a = VLM_ACT_SILU;
    else return -1;
    return 0;
}

char *vlm_classifier_cfg_to_json(const vlm_classifier_cfg *c) {
    const vlm_vit_cfg *v = &c->vit;
    json_t *stem = json_array();
    for (int i = 0; i < c->stem_layers; i++) json_array_append_new(stem, json_integer(c->stem_ch[i]));
    json_t *root = json_pack("{s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s}, s:o, s:s, s:s, s:b, s:{s:s, s:i, s:i, s:s, s:f}}",
                             "format", "vlm-classifier", "vision_cfg", "image_size", v->image_size, "patch_size",
                             v->patch_size, "width", v->width, "layers", v->layers, "heads", v->heads, "mlp_width",
                             v->mlp_width, "output_dim", v->output_dim, "act", act_name(v->act), "stem", stem, "stem_act",
                             act_name(c->stem_act), "pool",
                             c->pool == VLM_POOL_MEAN ? "mean" : "cls", "head_on_proj", c->head_on_proj, "head", "kind",
                             vlm_head_kind_name(c->head.kind), "hidden", c->head.hidden, "n_classes", c->head.n_classes,
                             "act", act_name(c->head.act), "dropout", (double)c->head.dropout);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static int get_int(json_t *o, const char *k, int *out, int required) {
    json_t *v = json_object_get(o, k);
    if (!v) return required ? -1 : 0;
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < INT32_MIN || x > INT32_MAX) return -1;
    *out = (int)x;
    return 0;
}

vlm_status vlm_classifier_cfg_from_json(const char *text, vlm_classifier_cfg *cfg, vlm_error *err) {
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: malformed JSON at line %d: %s", je.line, je.text);
    }
    memset(cfg, 0, sizeof *cfg);
    vlm_status st = VLM_OK;
    json_t *vc = json_object_get(root, "vision_cfg"), *hc = json_object_get(root, "head"), *stem = json_object_get(root, "stem");
    const char *pool = json_string_value(json_object_get(root, "pool"));
    vlm_vit_cfg *v = &cfg->vit;
    const char *vact = vc ? json_string_value(json_object_get(vc, "act")) : NULL;
    const char *sact = json_string_value(json_object_get(root, "stem_act"));
    const char *hkind = hc ? json_string_value(json_object_get(hc, "kind")) : NULL;
    const char *hact = hc ? json_string_value(json_object_get(hc, "act")) : NULL;
    json_t *hdrop = hc ? json_object_get(hc, "dropout") : NULL;
    if (!json_is_object(vc) || !json_is_object(hc) || (stem && !json_is_array(stem)) || !pool ||
        get_int(vc, "image_size", &v->image_size, 1) || get_int(vc, "patch_size", &v->patch_size, 1) ||
        get_int(vc, "width", &v->width, 1) || get_int(vc, "layers", &v->layers, 1) || get_int(vc, "heads", &v->heads, 1) ||
        get_int(vc, "mlp_width", &v->mlp_width, 1) || get_int(vc, "output_dim", &v->output_dim, 1) ||
        get_int(hc, "hidden", &cfg->head.hidden, 0) || get_int(hc, "n_classes", &cfg->head.n_classes, 1) || !hkind ||
        (hdrop && !json_is_number(hdrop))) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: missing or mistyped field");
        goto done;
    }
    v->act = VLM_ACT_GELU;
    cfg->head.act = VLM_ACT_GELU;
    cfg->stem_act = VLM_ACT_RELU;
    if ((vact && vlm_act_parse_name(vact, &v->act)) || (hact && vlm_act_parse_name(hact, &cfg->head.act)) ||
        (sact && vlm_act_parse_name(sact, &cfg->stem_act))) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: unknown activation");
        goto done;
    }
    int hk = vlm_head_kind_parse(hkind), pk = vlm_pool_parse(pool);
    if (hk < 0 || pk < 0) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: unknown head '%s' or pooling '%s'", hkind, pool);
        goto done;
    }
    cfg->head.kind = (vlm_head_kind)hk;
    cfg->pool = (vlm_pool)pk;
    cfg->head.dropout = hdrop ? (float)json_number_value(hdrop) : 0.0f;
    cfg->head_on_proj = json_is_true(json_object_get(root, "head_on_proj"));
    if (stem) {
        size_t n = json_array_size(stem);
        if (n > VLM_STEM_MAX) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: %zu stem layers (at most %d)", n, VLM_STEM_MAX);
            goto done;
        }
        cfg->stem_layers = (int)n;
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(stem, i);
            if (!json_is_integer(e)) {
                st = vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: stem channels must be integers");
                goto done;
            }
            cfg->stem_ch[i] = (int)json_integer_value(e);
        }
    }
    st = vlm_classifier_cfg_check(cfg, err);
    if (!st && (cfg->head.dropout < 0 || cfg->head.dropout >= 1 || cfg->head.hidden < 0))
        st = vlm_errorf(err, VLM_ERR_FORMAT, "classifier config: bad head dropout or hidden size");
done:
    json_decref(root);
    return st;
}

static int addp(vlm_params *ps, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, vlm_error *err) {
    int64_t shape[4] = {d0, d1, d2, d3};
    return vlm_params_add(ps, name, ndim, shape, err);
}

vlm_status vlm_classifier_init(vlm_classifier *m, const vlm_classifier_cfg *cfg_in, vlm_error *err) {
    memset(m, 0, sizeof *m);
    vlm_params_init(&m->ps);
    vlm_classifier_cfg cfg = *cfg_in;
    if (!cfg.vit.mlp_width) cfg.vit.mlp_width = 4 * cfg.vit.width;
    cfg.vit.patch_dropout = 0;
    vlm_status st = vlm_classifier_cfg_check(&cfg, err);
    if (st) return st;
    cfg.head.in_dim = cfg.head_on_proj ? cfg.vit.output_dim : cfg.vit.width;
    m->cfg = cfg;
    m->stem_pw = m->stem_pb = -1;
    for (int i = 0; i < VLM_STEM_MAX; i++) m->stem_w[i] = m->stem_b[i] = -1;
    st = vlm_vit_init(&m->vit, &m->ps, "visual.", cfg.vit, err);
    for (int i = 0; !st && i < cfg.stem_layers; i++) {
        char n[64];
        int64_t cin = i ? cfg.stem_ch[i - 1] : 3;
        snprintf(n, sizeof n, "visual.stem.%d.weight", i);
        m->stem_w[i] = addp(&m->ps, n, 4, cfg.stem_ch[i], 3, 3, cin, err); // [Co, kh, kw, Ci]
        snprintf(n, sizeof n, "visual.stem.%d.bias", i);
        m->stem_b[i] = addp(&m->ps, n, 1, cfg.stem_ch[i], 0, 0, 0, err);
        if (m->stem_w[i] < 0 || m->stem_b[i] < 0) st = err ? err->status : VLM_ERR_ARG;
    }
    if (!st && cfg.stem_layers) {
        m->stem_pw = addp(&m->ps, "visual.stem.proj.weight", 2, cfg.vit.width, cfg.stem_ch[cfg.stem_layers - 1], 0, 0, err);
        m->stem_pb = addp(&m->ps, "visual.stem.proj.bias", 1, cfg.vit.width, 0, 0, 0, err);
        if (m->stem_pw < 0 || m->stem_pb < 0) st = err ? err->status : VLM_ERR_ARG;
    }
    if (!st) st = vlm_head_init(&m->head, &m->ps, "head.", cfg.head, err);
    if (!st) st = vlm_params_alloc(&m->ps, err);
    if (st) {
        vlm_classifier_free(m);
        return st;
    }
    if (cfg.stem_layers) vlm_params_set_frozen(&m->ps, m->vit.conv1, 1);
    return VLM_OK;
}

void vlm_classifier_free(vlm_classifier *m) {
    vlm_vit_free(&m->vit);
    vlm_params_free(&m->ps);
}

void vlm_classifier_init_weights(vlm_classifier *m, uint64_t seed) {
    vlm_rng rng;
    vlm_rng_init(&rng, seed, VLM_RNG_INIT, 1);
    vlm_vit_init_weights(&m->vit, &m->ps, &rng);
    vlm_rng_init(&rng, seed, VLM_RNG_INIT, 2);
    for (int i = 0; i < m->cfg.stem_layers; i++) {
        int64_t fan_in = (i ? m->cfg.stem_ch[i - 1] : 3) * 9;
        vlm_fill_normal(vlm_params_get(&m->ps, m->stem_w[i]), &rng, sqrtf(2.0f / (float)fan_in));
        vlm_fill_const(vlm_params_get(&m->ps, m->stem_b[i]), 0);
    }
    if (m->cfg.stem_layers) {
        vlm_tensor *w = vlm_params_get(&m->ps, m->stem_pw);
        float bound = 1.0f / sqrtf((float)m->cfg.stem_ch[m->cfg.stem_layers - 1]);
        for (int64_t i = 0; i < vlm_numel(w); i++) vlm_f32(w)[i] = bound * (2.0f * vlm_rng_uniform(&rng) - 1.0f);
        vlm_fill_const(vlm_params_get(&m->ps, m->stem_pb), 0);
    }
    vlm_rng_init(&rng, seed, VLM_RNG_INIT, 3);
    vlm_head_init_weights(&m->head, &m->ps, &rng);
}

vlm_status vlm_classifier_copy_from(vlm_classifier *m, const vlm_params *src, const char *prefix, int *copied,
                                    vlm_error *err) {
    size_t pl = strlen(prefix);
    int n = 0;
    for (int i = 0; i < src->n; i++) {
        const vlm_param *s = &src->p[i];
        if (strncmp(s->name, prefix, pl)) continue;
        int j = vlm_params_find(&m->ps, s->name);
        if (j < 0) continue;
        vlm_param *d = &m->ps.p[j];
        int same = d->t.ndim == s->t.ndim;
        for (int k = 0; same && k < d->t.ndim; k++) same = d->t.shape[k] == s->t.shape[k];
        if (!same) {
            char a[96], b[96];
            return vlm_errorf(err, VLM_ERR_SHAPE, "%s: checkpoint has %s, the classifier needs %s", s->name,
                              vlm_shape_str(&s->t, a, sizeof a), vlm_shape_str(&d->t, b, sizeof b));
        }
        memcpy(d->t.data, s->t.data, sizeof(float) * (size_t)d->numel);
        n++;
    }
    if (copied) *copied = n;
    return VLM_OK;
}

int vlm_classifier_n_groups(const vlm_classifier *m) { return m->cfg.vit.layers + 2; }

int vlm_classifier_param_group(const vlm_classifier *m, int i) {
    const char *name = m->ps.p[i].name;
    const int L = m->cfg.vit.layers;
    if (strncmp(name, "visual.", 7)) return L + 1; // head
    const char *rb = "visual.transformer.resblocks.";
    if (!strncmp(name, rb, strlen(rb))) {
        int l = atoi(name + strlen(rb));
        return l >= 0 && l < L ? l + 1 : L + 1;
    }
    if (!strncmp(name, "visual.ln_post", 14) || !strcmp(name, "visual.proj")) return L + 1;
    return 0;
}

void vlm_classifier_lock_image(vlm_classifier *m, int lock) {
    for (int i = 0; i < m->ps.n; i++)
        if (!strncmp(m->ps.p[i].name, "visual.", 7)) vlm_params_set_frozen(&m->ps, i, lock);
    if (m->cfg.stem_layers) vlm_params_set_frozen(&m->ps, m->vit.conv1, 1);
}

// Conv stem: images [B, 3, S, S] -> tokens [B, N, W], channel-last inside.
static vlm_tensor *stem_forward(vlm_ctx *c, vlm_classifier *m, vlm_tensor *x) {
    const int L = m->cfg.stem_layers, n2 = log2_exact(m->cfg.vit.patch_size);
    const int perm[4] = {0, 2, 3, 1};
    x = vlm_op_contiguous(c, vlm_view_permute(c, x, perm)); // [B, S, S, 3]
    for (int i = 0; i < L && x; i++) {
        int stride = i >= L - n2 ? 2 : 1;
        vlm_tensor *w = vlm_params_get(&m->ps, m->stem_w[i]);
        int64_t ws[2] = {w->shape[0], 9 * w->shape[3]};
        x = vlm_op_im2col_nhwc(c, x, 3, stride, 1);                                            // [B, Ho, Wo, 9 Ci]
        x = vlm_op_linear(c, x, vlm_view_reshape(c, w, 2, ws), vlm_params_get(&m->ps, m->stem_b[i])); // [B, Ho, Wo, Co]
        x = vlm_op_act(c, x, m->cfg.stem_act);
    }
    if (!x) return NULL;
    int64_t sh[3] = {x->shape[0], x->shape[1] * x->shape[2], x->shape[3]};
    x = vlm_view_reshape(c, x, 3, sh); // [B, N, C]
    return vlm_op_linear(c, x, vlm_params_get(&m->ps, m->stem_pw), vlm_params_get(&m->ps, m->stem_pb)); // [B, N, W]
}

vlm_tensor *vlm_classifier_tokens(vlm_ctx *c, vlm_classifier *m, vlm_tensor *images) {
    if (!images || c->status != VLM_OK) return NULL;
    if (!m->cfg.stem_layers) return vlm_vit_tokens(c, &m->vit, &m->ps, images, NULL);
    const vlm_vit_cfg *cf = &m->cfg.vit;
    char s[96];
    if (images->ndim != 4 || images->shape[1] != 3 || images->shape[2] != cf->image_size ||
        images->shape[3] != cf->image_size)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "classifier: images %s, expected [B, 3, %d, %d]",
                            vlm_shape_str(images, s, sizeof s), cf->image_size, cf->image_size);
    vlm_tensor *x = stem_forward(c, m, images);
    if (!x) return NULL;
    int64_t B = x->shape[0], W = cf->width;
    int64_t cs[3] = {B, 1, W};
    vlm_tensor *cls = vlm_op_add(c, vlm_tensor_zeros(c, VLM_F32, 3, cs, 0), vlm_params_get(&m->ps, m->vit.class_emb));
    vlm_tensor *parts[2] = {cls, x};
    x = vlm_op_concat(c, parts, 2, 1);                                   // [B, 1+N, W]
    x = vlm_op_add(c, x, vlm_params_get(&m->ps, m->vit.pos_emb));        // + [1+N, W]
    x = vlm_op_layernorm(c, x, vlm_params_get(&m->ps, m->vit.ln_pre_w), vlm_params_get(&m->ps, m->vit.ln_pre_b), 1e-5f);
    return vlm_transformer_forward(c, &m->vit.tr, &m->ps, x, NULL);
}

vlm_tensor *vlm_classifier_features(vlm_ctx *c, vlm_classifier *m, vlm_tensor *images, vlm_feat_kind kind) {
    vlm_tensor *x = vlm_classifier_tokens(c, m, images); // [B, 1+N, W]
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1];
    if (m->cfg.pool == VLM_POOL_MEAN) {
        x = vlm_op_mean_dim(c, vlm_view_slice(c, x, 1, 1, T - 1), 1); // mean of patch tokens [B, W]
    } else {
        int32_t *idx = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(B ? B : 1));
        if (!idx) return vlm_ctx_fail(c, VLM_ERR_OOM, "classifier: arena out of memory");
        memset(idx, 0, sizeof(int32_t) * (size_t)B);
        x = vlm_op_gather_rows(c, x, idx); // class token [B, W]
    }
    x = vlm_op_layernorm(c, x, vlm_params_get(&m->ps, m->vit.ln_post_w), vlm_params_get(&m->ps, m->vit.ln_post_b), 1e-5f);
    if (kind == VLM_FEAT_POST) x = vlm_op_matmul(c, x, vlm_params_get(&m->ps, m->vit.proj)); // [B, E]
    return x;
}

vlm_tensor *vlm_classifier_forward(vlm_ctx *c, vlm_classifier *m, vlm_tensor *images, int backbone_grad) {
    int g = c->grad_enabled;
    if (!backbone_grad) c->grad_enabled = 0;
    vlm_tensor *f = vlm_classifier_features(c, m, images, m->cfg.head_on_proj ? VLM_FEAT_POST : VLM_FEAT_PRE);
    if (m->cfg.head_on_proj) f = vlm_op_l2norm(c, f);
    c->grad_enabled = g;
    return vlm_head_forward(c, &m->head, &m->ps, f);
}

// ---- files ----------------------------------------------------------------------
vlm_status vlm_classifier_save(const char *path, const vlm_classifier *m, const char *classnames, int64_t step,
                               vlm_error *err) {
    vlm_st_tensor *t = calloc((size_t)m->ps.n, sizeof *t);
    if (!t) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < m->ps.n; i++)
        t[i] = (vlm_st_tensor){m->ps.p[i].name, VLM_F32, m->ps.p[i].t.ndim, m->ps.p[i].t.shape, m->ps.p[i].t.data};
    char *cfg = vlm_classifier_cfg_to_json(&m->cfg);
    char s_step[32];
    snprintf(s_step, sizeof s_step, "%" PRId64, step);
    const char *keys[4] = {"format", "config", "step", "classnames"};
    const char *vals[4] = {"vlm-classifier", cfg, s_step, classnames};
    vlm_status st = vlm_st_write(path, t, m->ps.n, keys, vals, classnames ? 4 : 3, err);
    free(cfg);
    free(t);
    return st;
}

int vlm_classifier_file_is(const char *path, vlm_error *err) {
    struct stat sb;
    if (!stat(path, &sb) && S_ISDIR(sb.st_mode)) return 0; // a weights folder (HF, open_clip hub)
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    size_t got = fp ? fread(magic, 1, 4, fp) : 0;
    if (fp) fclose(fp);
    if (got == 4 && (!memcmp(magic, "PK\003\004", 4) || !memcmp(magic, "GGUF", 4))) return 0; // PyTorch zip, GGUF
    vlm_st_file f;
    if (vlm_st_read(&f, path, err)) return -1;
    const char *fmt = vlm_st_meta(&f, "format");
    int r = fmt && (!strcmp(fmt, "vlm-classifier") || !strcmp(fmt, "vlm-classifier-state"));
    vlm_st_free(&f);
    return r;
}

vlm_status vlm_classifier_load(const char *path, vlm_classifier *m, char **classnames, vlm_error *err) {
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    if (classnames) *classnames = NULL;
    const char *fmt = vlm_st_meta(&f, "format"), *cj = vlm_st_meta(&f, "config");
    vlm_classifier_cfg cfg;
    if (!fmt || (strcmp(fmt, "vlm-classifier") && strcmp(fmt, "vlm-classifier-state")) || !cj) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a vlm classifier file (format %s)", path, fmt ? fmt : "missing");
        goto done;
    }
    if ((st = vlm_classifier_cfg_from_json(cj, &cfg, err))) {
        vlm_error_prefix(err, "%s", path);
        goto done;
    }
    if ((st = vlm_classifier_init(m, &cfg, err))) {
        vlm_error_prefix(err, "%s", path);
        goto done;
    }
    const vlm_st_entry *flat = vlm_st_find(&f, "params");
    if (flat) {
        if (flat->dtype != VLM_F32 || flat->numel != m->ps.total)
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: params has %lld floats, the model needs %lld", path,
                            (long long)flat->numel, (long long)m->ps.total);
        else
            memcpy(m->ps.data, vlm_st_data(&f, flat), sizeof(float) * (size_t)m->ps.total);
    } else {
        for (int i = 0; i < m->ps.n && !st; i++) {
            vlm_param *p = &m->ps.p[i];
            if ((st = vlm_st_get(&f, p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data, err))) vlm_error_prefix(err, "%s", path);
        }
    }
    if (st) {
        vlm_classifier_free(m);
        goto done;
    }
    if (classnames) {
        const char *cn = vlm_st_meta(&f, "classnames");
        *classnames = cn ? strdup(cn) : NULL;
    }
done:
    vlm_st_free(&f);
    return st;
}

vlm_status vlm_classifier_save_state(const char *path, const vlm_classifier *m, const char *classnames,
                                     const vlm_train_state *s, const char *args_json, vlm_error *err) {
    char *cfg = vlm_classifier_cfg_to_json(&m->cfg);
    if (!cfg) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    const char *keys[3] = {"config", "args", "classnames"};
    const char *vals[3] = {cfg, args_json ? args_json : "{}", classnames};
    vlm_status st = vlm_state_save(path, &m->ps, s, "vlm-classifier-state", keys, vals, classnames ? 3 : 2, err);
    free(cfg);
    return st;
}

vlm_status vlm_classifier_load_state(const char *path, vlm_classifier *m, vlm_train_state *s, vlm_error *err) {
    return vlm_state_load(path, &m->ps, s, "vlm-classifier-state", err);
}
