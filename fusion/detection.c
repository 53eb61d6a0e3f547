// Open-vocabulary detector files and text queries (see detection.h).
#include "fusion/detection.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "data/transform.h"
#include "fusion/classes.h"

static const char *act_name(vlm_act a) {
    switch (a) {
    case VLM_ACT_QUICK_GELU: return "quick_gelu";
    case VLM_ACT_GELU_TANH: return "gelu_tanh";
    default: return "gelu";
    }
}

static char *det_cfg_json(const vlm_detector_cfg *c) {
    const vlm_vit_cfg *v = &c->vit;
    json_t *o = json_pack("{s:s, s:i, s:f, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s}}", "format", "vlm-detector",
                          "embed_dim", c->embed_dim, "nms_iou", (double)c->nms_iou, "vision_cfg", "image_size", v->image_size, "patch_size",
                          v->patch_size, "width", v->width, "layers", v->layers, "heads", v->heads, "mlp_width",
                          v->mlp_width, "output_dim", v->output_dim, "act", act_name(v->act));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static vlm_status det_cfg_parse(const char *text, const char *path, vlm_detector_cfg *c, vlm_error *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    const char *act = "gelu";
    double nms = 0;
    int ok = o && !json_unpack(o, "{s:i, s?F, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s?s}}", "embed_dim", &c->embed_dim,
                                "nms_iou", &nms, "vision_cfg", "image_size", &c->vit.image_size, "patch_size", &c->vit.patch_size,
                                "width", &c->vit.width, "layers", &c->vit.layers, "heads", &c->vit.heads, "mlp_width",
                                &c->vit.mlp_width, "output_dim", &c->vit.output_dim, "act", &act);
    if (ok) {
        if (!strcmp(act, "quick_gelu")) c->vit.act = VLM_ACT_QUICK_GELU;
        else if (!strcmp(act, "gelu_tanh")) c->vit.act = VLM_ACT_GELU_TANH;
        else if (!strcmp(act, "gelu")) c->vit.act = VLM_ACT_GELU;
        else ok = 0;
    }
    json_decref(o);
    c->nms_iou = (float)nms;
    if (!ok || !(nms >= 0 && nms <= 1)) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: detector config malformed", path);
    if (c->vit.image_size <= 0 || c->vit.patch_size <= 0 || c->vit.width <= 0 || c->vit.layers <= 0 ||
        c->vit.heads <= 0 || c->vit.width % c->vit.heads || c->embed_dim <= 0 || c->vit.image_size > 4096 ||
        c->vit.width > 16384 || c->vit.layers > 256)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: detector config has invalid sizes", path);
    return VLM_OK;
}

static vlm_status tok_init(vlm_owl *o, vlm_error *err) {
    if (!o->tokenizer_text) return vlm_errorf(err, VLM_ERR_FORMAT, "detector: the CLIP has no tokenizer");
    vlm_status st = vlm_tokenizer_init_from_memory(&o->tok, o->tokenizer_text, strlen(o->tokenizer_text), err);
    if (!st) o->has_tok = 1;
    return st;
}

vlm_status vlm_owl_from_clip(vlm_owl *o, const char *clip_path, int image_size, int patch_size, uint64_t seed,
                             vlm_error *err) {
    memset(o, 0, sizeof *o);
    vlm_status st = vlm_ckpt_load_model(clip_path, &o->clip, &o->tokenizer_text, err);
    if (st) return st;
    if (!o->tokenizer_text) {
        vlm_clip_free(&o->clip);
        return vlm_errorf(err, VLM_ERR_FORMAT, VLM_NO_TOKENIZER, clip_path);
    }
    vlm_detector_cfg dc = {o->clip.cfg.vision, o->clip.cfg.embed_dim, 0};
    if (image_size > 0) dc.vit.image_size = image_size;
    if (patch_size > 0 && patch_size % dc.vit.patch_size) {
        st = vlm_errorf(err, VLM_ERR_ARG, "detector: patch size %d is not a multiple of the CLIP's patch size %d",
                        patch_size, dc.vit.patch_size);
        vlm_owl_free(o);
        return st;
    }
    if (patch_size > 0) dc.vit.patch_size = patch_size;
    if (dc.vit.image_size % dc.vit.patch_size) {
        st = vlm_errorf(err, VLM_ERR_ARG, "detector: image size %d is not a multiple of the CLIP's patch size %d",
                        dc.vit.image_size, dc.vit.patch_size);
        vlm_owl_free(o);
        return st;
    }
    int copied = 0;
    if ((st = vlm_detector_init(&o->det, &dc, err)) || (vlm_detector_init_weights(&o->det, seed), 0) ||
        (st = vlm_detector_copy_from_clip(&o->det, &o->clip.ps, &copied, err)) || (st = tok_init(o, err))) {
        vlm_owl_free(o);
        return st;
    }
    return VLM_OK;
}

void vlm_owl_free(vlm_owl *o) {
    vlm_detector_free(&o->det);
    vlm_clip_free(&o->clip);
    if (o->has_tok) vlm_tokenizer_free(&o->tok);
    free(o->tokenizer_text);
    memset(o, 0, sizeof *o);
}

static int is_text_side(const char *name) { return strncmp(name, "visual.", 7) != 0; }

vlm_status vlm_owl_save(const char *path, const vlm_owl *o, const char *classnames, vlm_error *err) {
    int n = o->det.ps.n + o->clip.ps.n;
    vlm_st_tensor *t = calloc((size_t)n, sizeof *t);
    char *cfg = det_cfg_json(&o->det.cfg), *ccfg = vlm_clip_cfg_to_json(&o->clip.cfg);
    vlm_status st = VLM_OK;
    if (!t || !cfg || !ccfg) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    } else {
        int k = 0;
        for (int i = 0; i < o->det.ps.n; i++) {
            const vlm_param *p = &o->det.ps.p[i];
            t[k++] = (vlm_st_tensor){p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data};
        }
        for (int i = 0; i < o->clip.ps.n; i++) {
            const vlm_param *p = &o->clip.ps.p[i];
            if (is_text_side(p->name)) t[k++] = (vlm_st_tensor){p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data};
        }
        const char *keys[5] = {"format", "config", "clip_config", "tokenizer", "classnames"};
        const char *vals[5] = {"vlm-detector", cfg, ccfg, o->tokenizer_text ? o->tokenizer_text : "",
                               classnames ? classnames : ""};
        st = vlm_st_write(path, t, k, keys, vals, 5, err);
    }
    free(t);
    free(cfg);
    free(ccfg);
    return st;
}

static vlm_status copy_named(const vlm_st_file *f, const char *path, vlm_params *ps, int text_only, vlm_error *err) {
    for (int i = 0; i < ps->n; i++) {
        const vlm_param *p = &ps->p[i];
        if (text_only && !is_text_side(p->name)) continue;
        vlm_status st = vlm_st_get(f, p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data, err);
        if (st) return vlm_error_prefix(err, "%s", path);
    }
    return VLM_OK;
}

vlm_status vlm_owl_load(vlm_owl *o, const char *path, char **classnames, vlm_error *err) {
    memset(o, 0, sizeof *o);
    if (classnames) *classnames = NULL;
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    const char *fmt = vlm_st_meta(&f, "format"), *cfg = vlm_st_meta(&f, "config"), *ccfg = vlm_st_meta(&f, "clip_config"),
               *tok = vlm_st_meta(&f, "tokenizer"), *cn = vlm_st_meta(&f, "classnames");
    vlm_detector_cfg dc;
    vlm_clip_cfg cc;
    if (!fmt || strcmp(fmt, "vlm-detector") || !cfg || !ccfg) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a vlm detector model file (format \"%s\")", path,
                        fmt ? fmt : "none");
    } else if (!(st = det_cfg_parse(cfg, path, &dc, err)) && !(st = vlm_clip_cfg_from_json(ccfg, &cc, err)) &&
               !(st = vlm_detector_init(&o->det, &dc, err)) && !(st = vlm_clip_init(&o->clip, &cc, err))) {
        vlm_clip_init_weights(&o->clip, 0); // the CLIP's image tower is not used; its text side is loaded below
        if (!(st = copy_named(&f, path, &o->det.ps, 0, err)) && !(st = copy_named(&f, path, &o->clip.ps, 1, err))) {
            o->tokenizer_text = tok && *tok ? strdup(tok) : NULL;
            st = tok_init(o, err);
            if (!st && classnames && cn && *cn && !(*classnames = strdup(cn)))
                st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
        }
    }
    vlm_st_free(&f);
    if (st) vlm_owl_free(o);
    return st;
}

vlm_status vlm_owl_save_state(const char *path, const vlm_owl *o, const char *classnames, const vlm_train_state *s,
                              const char *args_json, vlm_error *err) {
    char *cfg = det_cfg_json(&o->det.cfg);
    if (!cfg) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    const char *keys[3] = {"config", "args", "classnames"};
    const char *vals[3] = {cfg, args_json ? args_json : "{}", classnames ? classnames : ""};
    vlm_status st = vlm_state_save(path, &o->det.ps, s, "vlm-detector-state", keys, vals, 3, err);
    free(cfg);
    return st;
}

vlm_status vlm_owl_load_state(const char *path, vlm_owl *o, vlm_train_state *s, vlm_error *err) {
    return vlm_state_load(path, &o->det.ps, s, "vlm-detector-state", err);
}

vlm_status vlm_owl_queries(vlm_owl *o, const char *const *texts, int n, const char *const *templates, int n_templates,
                           float *out, vlm_error *err) {
    static const char *const plain[1] = {"{}"};
    if (!templates || n_templates < 1) {
        templates = plain;
        n_templates = 1;
    }
    return vlm_zeroshot_classifier(&o->clip, &o->tok, texts, n, templates, n_templates, out, err);
}

// img padded to a P x P square (P = its longer side), grey at the bottom/right,
// then eval-transformed to x [3, S, S].
static vlm_status pad_transform(const vlm_image *img, int S, float *x, vlm_error *err) {
    const int W = img->w, H = img->h, P = W > H ? W : H;
    if ((long long)P * P > VLM_IMAGE_DEFAULT_MAX_PIXELS)
        return vlm_errorf(err, VLM_ERR_ARG, "%dx%d image is too elongated: padded to a %dx%d square it exceeds %lld pixels",
                          W, H, P, P, (long long)VLM_IMAGE_DEFAULT_MAX_PIXELS);
    vlm_image sq;
    vlm_image_init(&sq);
    vlm_status st = vlm_image_alloc(&sq, P, P, err);
    if (st) return st;
    memset(sq.px, 128, (size_t)P * P * 3);
    for (int y = 0; y < H; y++) memcpy(sq.px + (size_t)y * P * 3, img->px + (size_t)y * W * 3, (size_t)W * 3);
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    st = vlm_transform_eval(&t, &sq, x, &sc, err);
    vlm_transform_scratch_free(&sc);
    vlm_image_free(&sq);
    return st;
}

// o->ens on one image: boxes [N, 4] are in the padded P x P square, the
// crops come from the image itself, so they are rescaled to it first.
static vlm_status fuse_scores(vlm_det_ensemble *e, const vlm_image *img, int P, const float *boxes, float *logits, int N,
                              int Q, vlm_error *err) {
    if (e->Q != Q) return vlm_errorf(err, VLM_ERR_ARG, "vlm_owl_detect: the ensemble has %d queries, the detector %d", e->Q, Q);
    float *b = malloc(sizeof(float) * 4 * (size_t)N);
    if (!b) return vlm_errorf(err, VLM_ERR_OOM, "vlm_owl_detect: out of memory");
    const float sx = (float)P / (float)img->w, sy = (float)P / (float)img->h;
    for (int t = 0; t < N; t++) {
        b[4 * t] = boxes[4 * t] * sx, b[4 * t + 2] = boxes[4 * t + 2] * sx;
        b[4 * t + 1] = boxes[4 * t + 1] * sy, b[4 * t + 3] = boxes[4 * t + 3] * sy;
    }
    vlm_status st = vlm_det_ensemble_rescore(e, img, b, logits, N, err);
    free(b);
    return st;
}

vlm_status vlm_owl_detect(vlm_owl *o, const vlm_image *img, const float *qe, int Q, float threshold, int max_det,
                          vlm_det_box *out, int *n, vlm_error *err) {
    *n = 0;
    if (Q < 1 || max_det < 1 || !img->px)
        return vlm_errorf(err, VLM_ERR_ARG, "vlm_owl_detect: %d queries, max_det %d, image %dx%d", Q, max_det, img->w,
                          img->h);
    const int S = o->det.cfg.vit.image_size, N = o->det.grid * o->det.grid;
    const int W = img->w, H = img->h, P = W > H ? W : H;
    float *x = malloc(sizeof(float) * 3 * (size_t)S * S);
    if (!x) return vlm_errorf(err, VLM_ERR_OOM, "vlm_owl_detect: out of memory");
    vlm_status st = pad_transform(img, S, x, err);
    vlm_ctx c;
    if (!st) st = vlm_ctx_init(&c, 64u << 20, 0, err);
    if (st) return free(x), st;
    c.grad_enabled = 0;
    c.training = 0;
    int64_t sh[4] = {1, 3, S, S};
    vlm_det_out d;
    if (vlm_detector_forward(&c, &o->det, vlm_tensor_wrap(&c, VLM_F32, 4, sh, x, NULL), qe, Q, &d)) {
        *err = c.err;
        st = c.status ? c.status : VLM_ERR_ARG;
    } else if (o->ens && (st = fuse_scores(o->ens, img, P, vlm_f32(d.boxes), vlm_f32(d.logits), N, Q, err))) {
        // error set
    } else {
        int nd = vlm_detector_decode(vlm_f32(d.logits), vlm_f32(d.boxes), N, Q, NULL, P, P, max_det, 1,
                                     o->det.cfg.nms_iou, out);
        if (nd < 0) st = vlm_errorf(err, VLM_ERR_OOM, "vlm_owl_detect: out of memory decoding %d boxes", N);
        // threshold (decode sorts by score), then clip to the image
        for (int i = 0; i < nd && out[i].score >= threshold; i++) {
            double x0 = fmax(out[i].x, 0), y0 = fmax(out[i].y, 0);
            double x1 = fmin(out[i].x + out[i].w, W), y1 = fmin(out[i].y + out[i].h, H);
            if (!(x1 > x0 && y1 > y0)) continue;
            vlm_det_box b = out[i];
            b.x = (float)x0, b.y = (float)y0, b.w = (float)(x1 - x0), b.h = (float)(y1 - y0);
            out[(*n)++] = b;
        }
    }
    vlm_ctx_free(&c);
    free(x);
    return st;
}
