// Open-vocabulary detection head on the ViT (see detector.h).
#include "vision/detector.h"
#include "losses/detection.h" // vlm_det_iou for the NMS
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int addp(vlm_params *ps, const char *name, int ndim, int64_t d0, int64_t d1, vlm_error *err) {
    int64_t shape[2] = {d0, d1};
    return vlm_params_add(ps, name, ndim, shape, err);
}

static float logitf_(float p) { return logf(p / (1.0f - p)); }

vlm_status vlm_detector_init(vlm_detector *d, const vlm_detector_cfg *cfg, vlm_error *err) {
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    vlm_params_init(&d->ps);
    if (cfg->embed_dim <= 0) return vlm_errorf(err, VLM_ERR_ARG, "detector: embed_dim %d invalid", cfg->embed_dim);
    vlm_vit_cfg vc = cfg->vit;
    vc.patch_dropout = 0; // every token predicts a box
    if (!vc.mlp_width) vc.mlp_width = 4 * vc.width;
    d->cfg.vit = vc;
    vlm_status st = vlm_vit_init(&d->vit, &d->ps, "visual.", vc, err);
    if (st) return st;
    int64_t W = vc.width, E = cfg->embed_dim;
    d->merge_w = addp(&d->ps, "det.merge_ln.weight", 1, W, 0, err);
    d->merge_b = addp(&d->ps, "det.merge_ln.bias", 1, W, 0, err);
    for (int i = 0; i < 3; i++) {
        char n[64];
        snprintf(n, sizeof n, "det.box.%d.weight", i);
        d->box_w[i] = addp(&d->ps, n, 2, i == 2 ? 4 : W, W, err);
        snprintf(n, sizeof n, "det.box.%d.bias", i);
        d->box_b[i] = addp(&d->ps, n, 1, i == 2 ? 4 : W, 0, err);
    }
    d->cls_w = addp(&d->ps, "det.class_proj.weight", 2, E, W, err);
    d->cls_b = addp(&d->ps, "det.class_proj.bias", 1, E, 0, err);
    d->shift_w = addp(&d->ps, "det.logit_shift.weight", 2, 1, W, err);
    d->shift_b = addp(&d->ps, "det.logit_shift.bias", 1, 1, 0, err);
    d->scale_w = addp(&d->ps, "det.logit_scale.weight", 2, 1, W, err);
    d->scale_b = addp(&d->ps, "det.logit_scale.bias", 1, 1, 0, err);
    if (d->scale_b < 0) return err ? err->status : VLM_ERR_ARG;
    if ((st = vlm_params_alloc(&d->ps, err))) return st;
    vlm_params_default_decay(&d->ps);
    vlm_params_set_frozen(&d->ps, d->vit.proj, 1); // pooled projection unused: class_proj replaces it
    int g = vc.image_size / vc.patch_size;
    d->grid = g;
    d->box_bias = malloc(sizeof(float) * 4 * (size_t)(g * g));
    if (!d->box_bias) return vlm_errorf(err, VLM_ERR_OOM, "detector: out of memory");
    // Token (i, j) starts on its own patch: centre ((j + .5) / g, (i + .5) / g), size 1/g.
    for (int i = 0; i < g; i++)
        for (int j = 0; j < g; j++) {
            float *b = d->box_bias + 4 * (i * g + j);
            b[0] = logitf_((j + 0.5f) / (float)g);
            b[1] = logitf_((i + 0.5f) / (float)g);
            b[2] = b[3] = logitf_(1.0f / (float)g);
        }
    return VLM_OK;
}

void vlm_detector_free(vlm_detector *d) {
    vlm_vit_free(&d->vit);
    vlm_params_free(&d->ps);
    free(d->box_bias);
    memset(d, 0, sizeof *d);
}

static void fill(vlm_params *ps, int i, vlm_rng *rng, float std, float c) {
    vlm_tensor *t = vlm_params_get(ps, i);
    if (std > 0) vlm_fill_normal(t, rng, std);
    else vlm_fill_const(t, c);
}

void vlm_detector_init_weights(vlm_detector *d, uint64_t seed) {
    vlm_rng rng;
    vlm_rng_init(&rng, seed, VLM_RNG_INIT, 0);
    vlm_vit_init_weights(&d->vit, &d->ps, &rng);
    float W = (float)d->cfg.vit.width;
    fill(&d->ps, d->merge_w, &rng, 0, 1);
    fill(&d->ps, d->merge_b, &rng, 0, 0);
    // Box MLP hidden layers N(0, W^-1/2) (about PyTorch's nn.Linear scale): with
    // a small std the hidden activations all but vanish and the head learns
    // one box size for every token.
    for (int i = 0; i < 3; i++) {
        fill(&d->ps, d->box_w[i], &rng, i == 2 ? 0 : 1.0f / sqrtf(W), 0);
        fill(&d->ps, d->box_b[i], &rng, 0, 0);
    }
    fill(&d->ps, d->cls_w, &rng, 1.0f / sqrtf(W), 0);
    fill(&d->ps, d->cls_b, &rng, 0, 0);
    fill(&d->ps, d->shift_w, &rng, 0.02f, 0);
    fill(&d->ps, d->shift_b, &rng, 0, -0.9f);
    fill(&d->ps, d->scale_w, &rng, 0.02f, 0);
    fill(&d->ps, d->scale_b, &rng, 0, 9.0f);
}

void vlm_pos_emb_resize(const float *src, int g0, float *dst, int g1, int W) {
    memcpy(dst, src, sizeof(float) * (size_t)W);
    const float *s = src + W;
    float *o = dst + W;
    float r = (float)g0 / (float)g1;
    for (int i = 0; i < g1; i++) {
        // source coordinate of the output pixel centre (align_corners = False), clamped
        float y = ((float)i + 0.5f) * r - 0.5f;
        if (y < 0) y = 0;
        int y0 = (int)y, y1 = y0 + 1 < g0 ? y0 + 1 : g0 - 1;
        float fy = y - (float)y0;
        for (int j = 0; j < g1; j++) {
            float x = ((float)j + 0.5f) * r - 0.5f;
            if (x < 0) x = 0;
            int x0 = (int)x, x1 = x0 + 1 < g0 ? x0 + 1 : g0 - 1;
            float fx = x - (float)x0;
            const float *a = s + (int64_t)(y0 * g0 + x0) * W, *b = s + (int64_t)(y0 * g0 + x1) * W,
                        *cc = s + (int64_t)(y1 * g0 + x0) * W, *dd = s + (int64_t)(y1 * g0 + x1) * W;
            float *out = o + (int64_t)(i * g1 + j) * W;
            for (int k = 0; k < W; k++)
                out[k] = (1 - fy) * ((1 - fx) * a[k] + fx * b[k]) + fy * ((1 - fx) * cc[k] + fx * dd[k]);
        }
    }
}

vlm_status vlm_detector_copy_from_clip(vlm_detector *d, const vlm_params *src, int *copied, vlm_error *err) {
    int n = 0;
    for (int i = 0; i < d->ps.n; i++) {
        const char *name = d->ps.p[i].name;
        if (strncmp(name, "visual.", 7)) continue;
        int j = vlm_params_find(src, name);
        if (j < 0) continue;
        vlm_tensor *dt = vlm_params_get(&d->ps, i);
        const vlm_tensor *st = &src->p[j].t;
        if (i == d->vit.pos_emb && st->ndim == 2 && st->shape[1] == dt->shape[1] && st->shape[0] != dt->shape[0]) {
            int64_t g0 = (int64_t)llround(sqrt((double)(st->shape[0] - 1)));
            if (g0 * g0 + 1 != st->shape[0])
                return vlm_errorf(err, VLM_ERR_SHAPE, "detector: %s has %lld rows, not 1 + a square grid", name,
                                  (long long)st->shape[0]);
            vlm_pos_emb_resize(st->data, (int)g0, dt->data, d->grid, (int)dt->shape[1]);
            n++;
            continue;
        }
        if (i == d->vit.conv1 && st->ndim == 4 && dt->ndim == 4 && st->shape[0] == dt->shape[0] &&
            st->shape[1] == dt->shape[1] && st->shape[2] != dt->shape[2]) {
            // A larger patch from a smaller one: each source tap covers k x k
            // pixels at 1/k^2 weight, so on an image upsampled k times
            // (nearest) the patch embeddings are exactly the CLIP's.
            int64_t p0 = st->shape[2], p1 = dt->shape[2], k = p1 / p0;
            if (p1 % p0 || st->shape[3] != p0 || dt->shape[3] != p1)
                return vlm_errorf(err, VLM_ERR_SHAPE, "detector: patch %lld is not a multiple of the CLIP's patch %lld",
                                  (long long)p1, (long long)p0);
            const float *sp = st->data;
            float *dp = dt->data;
            for (int64_t o = 0; o < dt->shape[0] * dt->shape[1]; o++)
                for (int64_t y = 0; y < p1; y++)
                    for (int64_t x = 0; x < p1; x++)
                        dp[(o * p1 + y) * p1 + x] = sp[(o * p0 + y / k) * p0 + x / k] / (float)(k * k);
            n++;
            continue;
        }
        if (vlm_numel(dt) != vlm_numel(st) || dt->ndim != st->ndim)
            return vlm_errorf(err, VLM_ERR_SHAPE, "detector: %s has %lld elements in the CLIP, %lld in the detector",
                              name, (long long)vlm_numel(st), (long long)vlm_numel(dt));
        memcpy(dt->data, st->data, sizeof(float) * (size_t)vlm_numel(dt));
        n++;
    }
    // class_proj [E, W] = visual.proj [W, E] transposed
    int j = vlm_params_find(src, "visual.proj");
    vlm_tensor *cw = vlm_params_get(&d->ps, d->cls_w);
    if (j >= 0 && src->p[j].t.ndim == 2 && src->p[j].t.shape[0] == cw->shape[1] &&
        src->p[j].t.shape[1] == cw->shape[0]) {
        const float *p = src->p[j].t.data;
        float *w = cw->data;
        int64_t Wd = cw->shape[1], E = cw->shape[0];
        for (int64_t e = 0; e < E; e++)
            for (int64_t k = 0; k < Wd; k++) w[e * Wd + k] = p[k * E + e];
        n++;
    }
    if (copied) *copied = n;
    return VLM_OK;
}

void vlm_detector_lock_image(vlm_detector *d, int lock) {
    for (int i = 0; i < d->ps.n; i++)
        if (!strncmp(d->ps.p[i].name, "visual.", 7)) vlm_params_set_frozen(&d->ps, i, lock || i == d->vit.proj);
}

int vlm_detector_forward(vlm_ctx *c, vlm_detector *d, vlm_tensor *images, const float *queries, int Q,
                         vlm_det_out *out) {
    memset(out, 0, sizeof *out);
    vlm_params *ps = &d->ps;
    vlm_tensor *tok = vlm_vit_tokens(c, &d->vit, ps, images, NULL); // [B, 1+N, W]
    if (!tok) return -1;
    int64_t B = tok->shape[0], N = tok->shape[1] - 1, W = tok->shape[2], E = d->cfg.embed_dim;
    if (Q < 1) {
        vlm_ctx_fail(c, VLM_ERR_ARG, "detector: %d queries", Q);
        return -1;
    }
    tok = vlm_op_layernorm(c, tok, vlm_params_get(ps, d->vit.ln_post_w), vlm_params_get(ps, d->vit.ln_post_b), 1e-5f);
    vlm_tensor *cls = vlm_op_contiguous(c, vlm_view_slice(c, tok, 1, 0, 1)); // [B, 1, W]
    vlm_tensor *pat = vlm_op_contiguous(c, vlm_view_slice(c, tok, 1, 1, N)); // [B, N, W]
    vlm_tensor *x = vlm_op_mul(c, pat, cls);
    x = vlm_op_layernorm(c, x, vlm_params_get(ps, d->merge_w), vlm_params_get(ps, d->merge_b), 1e-5f); // [B, N, W]
    // boxes
    vlm_tensor *h = vlm_op_act(c, vlm_op_linear(c, x, vlm_params_get(ps, d->box_w[0]), vlm_params_get(ps, d->box_b[0])),
                               VLM_ACT_GELU);
    h = vlm_op_act(c, vlm_op_linear(c, h, vlm_params_get(ps, d->box_w[1]), vlm_params_get(ps, d->box_b[1])),
                   VLM_ACT_GELU);
    h = vlm_op_linear(c, h, vlm_params_get(ps, d->box_w[2]), vlm_params_get(ps, d->box_b[2])); // [B, N, 4]
    int64_t bs[2] = {N, 4};
    vlm_tensor *bias = vlm_tensor_zeros(c, VLM_F32, 2, bs, 0);
    if (!bias) return -1;
    memcpy(bias->data, d->box_bias, sizeof(float) * 4 * (size_t)N);
    out->boxes = vlm_op_act(c, vlm_op_add(c, h, bias), VLM_ACT_SIGMOID);
    // class logits
    vlm_tensor *e = vlm_op_l2norm(c, vlm_op_linear(c, x, vlm_params_get(ps, d->cls_w), vlm_params_get(ps, d->cls_b)));
    int64_t qs[2] = {E, Q};
    vlm_tensor *qt = vlm_tensor_zeros(c, VLM_F32, 2, qs, 0); // queries^T [E, Q]
    if (!qt) return -1;
    float *qd = qt->data;
    for (int q = 0; q < Q; q++)
        for (int64_t k = 0; k < E; k++) qd[k * Q + q] = queries[(int64_t)q * E + k];
    vlm_tensor *lg = vlm_op_matmul(c, e, qt); // [B, N, Q]
    vlm_tensor *shift = vlm_op_linear(c, x, vlm_params_get(ps, d->shift_w), vlm_params_get(ps, d->shift_b));
    vlm_tensor *scale = vlm_op_act(
        c, vlm_op_linear(c, x, vlm_params_get(ps, d->scale_w), vlm_params_get(ps, d->scale_b)), VLM_ACT_ELU1);
    out->logits = vlm_op_mul(c, vlm_op_add(c, lg, shift), scale);
    (void)B;
    (void)W;
    return out->logits && out->boxes ? 0 : -1;
}

typedef struct {
    float score;
    int idx; // token * Q + query
} cand;

static int cand_cmp(const void *a, const void *b) { // score descending, then index (deterministic)
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int vlm_detector_decode(const float *logits, const float *boxes, int N, int Q, const uint8_t *query_valid,
                        int img_w, int img_h, int max_det, int per_token_top1, float nms_iou, vlm_det_box *out) {
    cand *cs = malloc(sizeof(cand) * (size_t)N * (size_t)Q);
    if (!cs) return -1;
    int n = 0;
    for (int t = 0; t < N; t++) {
        int best = -1;
        for (int q = 0; q < Q; q++) {
            if (query_valid && !query_valid[q]) continue;
            float s = 1.0f / (1.0f + expf(-logits[(int64_t)t * Q + q]));
            if (per_token_top1) {
                if (best < 0 || s > cs[best].score) {
                    if (best < 0) best = n++;
                    cs[best] = (cand){s, t * Q + q};
                }
            } else {
                cs[n++] = (cand){s, t * Q + q};
            }
        }
    }
    qsort(cs, (size_t)n, sizeof(cand), cand_cmp);
    if (nms_iou > 0) { // greedy per query, in score order: cs[0..kept) are the survivors
        int kept = 0;
        for (int i = 0; i < n && kept < max_det; i++) {
            int t = cs[i].idx / Q, q = cs[i].idx % Q, ok = 1;
            for (int k = 0; k < kept && ok; k++)
                if (cs[k].idx % Q == q && vlm_box_iou_cxcywh(boxes + 4 * (int64_t)t, boxes + 4 * (int64_t)(cs[k].idx / Q)) > nms_iou)
                    ok = 0;
            if (ok) cs[kept++] = cs[i];
        }
        n = kept;
    }
    if (n > max_det) n = max_det;
    for (int i = 0; i < n; i++) {
        int t = cs[i].idx / Q, q = cs[i].idx % Q;
        const float *b = boxes + 4 * (int64_t)t;
        float w = b[2] * (float)img_w, h = b[3] * (float)img_h;
        out[i] = (vlm_det_box){b[0] * (float)img_w - 0.5f * w, b[1] * (float)img_h - 0.5f * h, w, h, cs[i].score, q};
    }
    free(cs);
    return n;
}
