// Detector + frozen-CLIP score fusion on token crops (fusion/detect_ensemble.h).
#include "fusion/detect_ensemble.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "fusion/classes.h"
#include "fusion/checkpoint.h"

void vlm_det_ensemble_opts_default(vlm_det_ensemble_opts *o) {
    memset(o, 0, sizeof *o);
    // F-VLM's novel weight; its base weight (0.35) lowered the scenes' seen-class
    // val AP50 from 0.909 to 0.801 (docs/RESULTS.md): the detector alone is better
    // on the classes it was trained on.
    o->w_seen = 0.0f;
    o->w_novel = 0.65f;
    o->context = 1.0f;
    o->top = 16;
}

void vlm_det_ensemble_free(vlm_det_ensemble *e) {
    if (e->loaded) {
        vlm_clip_free(&e->clip);
        vlm_tokenizer_free(&e->tok);
        vlm_ctx_free(&e->c);
        vlm_transform_scratch_free(&e->sc);
    }
    free(e->tok_text);
    free(e->qe);
    free(e->w);
    free(e->x);
    free(e->pc);
    free(e->tok_idx);
    free(e->tok_best);
    free(e->u8);
    memset(e, 0, sizeof *e);
}

vlm_status vlm_det_ensemble_init(vlm_det_ensemble *e, const vlm_det_ensemble_opts *o, vlm_error *err) {
    memset(e, 0, sizeof *e);
    e->o = *o;
    if (!o->clip || !o->clip[0]) return vlm_errorf(err, VLM_ERR_ARG, "detection ensemble: no CLIP file given");
    if (!(o->w_seen >= 0 && o->w_seen <= 1 && o->w_novel >= 0 && o->w_novel <= 1 && o->context >= 1 &&
          o->context <= 4 && o->top >= 1 && o->top <= 4096))
        return vlm_errorf(err, VLM_ERR_ARG,
                          "detection ensemble: weights %g,%g must be in [0, 1], context %g in [1, 4], top %d in [1, 4096]",
                          (double)o->w_seen, (double)o->w_novel, (double)o->context, o->top);
    vlm_status st = vlm_ckpt_load_model(o->clip, &e->clip, &e->tok_text, err);
    if (st) return st;
    if (!e->tok_text) {
        vlm_clip_free(&e->clip);
        return vlm_errorf(err, VLM_ERR_FORMAT, VLM_NO_TOKENIZER, o->clip);
    }
    if ((st = vlm_tokenizer_init_from_memory(&e->tok, e->tok_text, strlen(e->tok_text), err))) {
        vlm_clip_free(&e->clip);
        return st;
    }
    if ((st = vlm_ctx_init(&e->c, 64u << 20, 0, err))) {
        vlm_tokenizer_free(&e->tok);
        vlm_clip_free(&e->clip);
        return st;
    }
    e->c.grad_enabled = 0;
    e->c.training = 0;
    vlm_transform_scratch_init(&e->sc);
    e->loaded = 1;
    const int S = e->clip.cfg.vision.image_size;
    vlm_transform_init(&e->tf, S);
    e->x = malloc(sizeof(float) * (size_t)o->top * 3 * S * S);
    e->tok_idx = malloc(sizeof(int) * (size_t)o->top);
    e->tok_best = malloc(sizeof(float) * (size_t)o->top);
    e->u8 = malloc((size_t)S * S * 3);
    if (!e->x || !e->tok_idx || !e->tok_best || !e->u8) {
        vlm_det_ensemble_free(e);
        return vlm_errorf(err, VLM_ERR_OOM, "detection ensemble: out of memory");
    }
    return VLM_OK;
}

// Whether name is one of the newline-separated lines of list.
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == n && !memcmp(p, name, n)) return 1;
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

vlm_status vlm_det_ensemble_queries(vlm_det_ensemble *e, const char *const *names, int Q, const char *const *templates,
                                    int nt, vlm_error *err) {
    static const char *const plain[1] = {"{}"};
    const int E = e->clip.cfg.embed_dim;
    free(e->qe);
    free(e->w);
    free(e->pc);
    e->qe = malloc(sizeof(float) * (size_t)Q * E);
    e->w = malloc(sizeof(float) * (size_t)Q);
    e->pc = malloc(sizeof(float) * (size_t)Q * e->o.top);
    e->Q = 0;
    if (!e->qe || !e->w || !e->pc) return vlm_errorf(err, VLM_ERR_OOM, "detection ensemble: out of memory");
    if (!templates || nt < 1) {
        templates = plain;
        nt = 1;
    }
    vlm_status st = vlm_zeroshot_classifier(&e->clip, &e->tok, names, Q, templates, nt, e->qe, err);
    if (st) return st;
    for (int q = 0; q < Q; q++) e->w[q] = listed(e->seen, names[q]) ? e->o.w_seen : e->o.w_novel;
    e->Q = Q;
    return VLM_OK;
}

// The crop of box b (cx, cy, w, h in [0, 1]) of img: a square of side
// context * the longer side, shifted inside the image where it fits, resized
// to S x S (bicubic) and normalised into x [3, S, S].
static vlm_status crop(vlm_det_ensemble *e, const vlm_image *img, const float *b, float *x, vlm_error *err) {
    const int S = e->clip.cfg.vision.image_size, W = img->w, H = img->h;
    float side = e->o.context * fmaxf(b[2] * (float)W, b[3] * (float)H);
    int s = (int)lrintf(side);
    if (s < 4) s = 4;
    int bw = s < W ? s : W, bh = s < H ? s : H;
    int bx = (int)lrintf(b[0] * (float)W - 0.5f * (float)bw), by = (int)lrintf(b[1] * (float)H - 0.5f * (float)bh);
    bx = bx < 0 ? 0 : bx + bw > W ? W - bw : bx;
    by = by < 0 ? 0 : by + bh > H ? H - bh : by;
    vlm_status st = vlm_image_resize_bicubic(img, bx, by, bw, bh, S, S, 0, 0, S, S, e->u8, &e->sc, err);
    if (!st) vlm_transform_to_tensor(&e->tf, e->u8, x);
    return st;
}

// Tokens by their best logit, descending: the first k into e->tok_idx.
static int pick_top(vlm_det_ensemble *e, const float *logits, int N, int Q) {
    int k = 0;
    for (int t = 0; t < N; t++) {
        float best = logits[(size_t)t * Q];
        for (int q = 1; q < Q; q++) best = fmaxf(best, logits[(size_t)t * Q + q]);
        // insertion into the sorted prefix [0, k); ties keep the earlier token first
        int pos = k < e->o.top ? k : e->o.top;
        while (pos > 0 && e->tok_best[pos - 1] < best) {
            if (pos < e->o.top) e->tok_idx[pos] = e->tok_idx[pos - 1], e->tok_best[pos] = e->tok_best[pos - 1];
            pos--;
        }
        if (pos < e->o.top) e->tok_idx[pos] = t, e->tok_best[pos] = best;
        if (k < e->o.top) k++;
    }
    return k;
}

// p_clip [k, Q] of the k crops in e->x.
static vlm_status classify(vlm_det_ensemble *e, int k, vlm_error *err) {
    const int S = e->clip.cfg.vision.image_size, E = e->clip.cfg.embed_dim, Q = e->Q;
    vlm_ctx_reset(&e->c);
    int64_t sh[4] = {k, 3, S, S};
    vlm_tensor *x = vlm_tensor_wrap(&e->c, VLM_F32, 4, sh, e->x, NULL);
    vlm_tensor *f = vlm_op_l2norm(&e->c, vlm_clip_encode_image(&e->c, &e->clip, x, NULL)); // [k, E]
    if (!f) {
        if (err) *err = e->c.err;
        return e->c.status;
    }
    const float scale = expf(vlm_f32(vlm_params_get(&e->clip.ps, e->clip.logit_scale))[0]);
    for (int i = 0; i < k; i++) {
        float *p = e->pc + (size_t)i * Q, mx = -INFINITY, sum = 0;
        for (int q = 0; q < Q; q++) {
            float d = 0;
            for (int j = 0; j < E; j++) d += vlm_f32(f)[(size_t)i * E + j] * e->qe[(size_t)q * E + j];
            p[q] = scale * d;
            mx = fmaxf(mx, p[q]);
        }
        for (int q = 0; q < Q; q++) sum += p[q] = expf(p[q] - mx);
        for (int q = 0; q < Q; q++) p[q] /= sum;
    }
    return VLM_OK;
}

// log-odds of p_det^(1-w) * p_clip^w, p_det = sigmoid(logit).
static float fuse(float logit, float pc, float w) {
    double lpd = -log1p(exp(-(double)logit)); // log sigmoid
    double ls = (1 - w) * lpd + w * log(fmax((double)pc, 1e-12));
    if (ls > -1e-7) ls = -1e-7;
    return (float)(ls - log(-expm1(ls)));
}

vlm_status vlm_det_ensemble_rescore(vlm_det_ensemble *e, const vlm_image *img, const float *boxes, float *logits, int N,
                                    vlm_error *err) {
    const int Q = e->Q, S = e->clip.cfg.vision.image_size;
    if (Q < 1) return vlm_errorf(err, VLM_ERR_ARG, "detection ensemble: no queries set");
    int k = pick_top(e, logits, N, Q);
    for (int i = 0; i < k; i++) {
        vlm_status st = crop(e, img, boxes + 4 * (size_t)e->tok_idx[i], e->x + (size_t)i * 3 * S * S, err);
        if (st) return st;
    }
    vlm_status st = classify(e, k, err);
    if (st) return st;
    // tokens not cropped fuse with p_clip = 1/Q
    for (int t = 0; t < N; t++) {
        int r = -1;
        for (int i = 0; i < k; i++)
            if (e->tok_idx[i] == t) r = i;
        for (int q = 0; q < Q; q++)
            logits[(size_t)t * Q + q] =
                fuse(logits[(size_t)t * Q + q], r >= 0 ? e->pc[(size_t)r * Q + q] : 1.0f / (float)Q, e->w[q]);
    }
    return VLM_OK;
}
