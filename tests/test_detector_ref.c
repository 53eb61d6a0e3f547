// The detection head's forward (boxes, logits) and every parameter's
// gradient against PyTorch (tests/reference/make_detector_fixtures.py, written
// from vision/detector.h's description, not from vlm's code).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "vision/detector.h"
#include "tests/testutil.h"

static int meta(const vlm_st_file *f, const char *k) { return atoi(vlm_st_meta(f, k)); }

static float *get(const vlm_st_file *f, const char *name, int64_t n) {
    const vlm_st_entry *e = vlm_st_find(f, name);
    CHECK(e != NULL, "fixture lacks %s", name);
    if (!e) return NULL;
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, vlm_st_data(f, e), sizeof(float) * (size_t)n);
    return p;
}

// max |a - b| / max |b|, and *scale = max |b| (the reference's size)
static double rel_diff(const float *a, const float *b, int64_t n, double *scale) {
    *scale = tu_max_abs(b, (long)n);
    return tu_rel_err(a, b, (long)n, 1e-30);
}

int main(void) {
    vlm_st_file f;
    vlm_error err = {0};
    CHECK(vlm_st_read(&f, tu_src("tests/fixtures/detector_head.safetensors"), &err) == VLM_OK, "%s", err.msg);
    const int B = meta(&f, "B"), S = meta(&f, "S"), P = meta(&f, "P"), W = meta(&f, "W"), E = meta(&f, "E"),
              Q = meta(&f, "Q"), N = (S / P) * (S / P);
    vlm_detector_cfg cfg = {.vit = {S, P, W, meta(&f, "layers"), meta(&f, "heads"), 4 * W, E, VLM_ACT_GELU, 0},
                            .embed_dim = E};
    vlm_detector d;
    CHECK(vlm_detector_init(&d, &cfg, &err) == VLM_OK, "%s", err.msg);
    int loaded = 0;
    for (int i = 0; i < d.ps.n; i++) {
        if (!strcmp(d.ps.p[i].name, "visual.proj")) continue;
        vlm_tensor *p = &d.ps.p[i].t;
        CHECK(vlm_st_get(&f, d.ps.p[i].name, VLM_F32, p->ndim, p->shape, p->data, &err) == VLM_OK, "%s", err.msg);
        loaded++;
    }
    float *images = get(&f, "images", (int64_t)B * 3 * S * S), *queries = get(&f, "queries", (int64_t)Q * E);
    float *ref_l = get(&f, "logits", (int64_t)B * N * Q), *ref_b = get(&f, "boxes", (int64_t)B * N * 4);
    float *r_l = get(&f, "r_logits", (int64_t)B * N * Q), *r_b = get(&f, "r_boxes", (int64_t)B * N * 4);
    vlm_ctx c;
    vlm_ctx_init(&c, 32u << 20, 0, &err);
    c.grad_enabled = 1;
    vlm_params_zero_grad(&d.ps);
    vlm_tensor *img = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, 3, S, S}, images, NULL);
    vlm_det_out out;
    CHECK(vlm_detector_forward(&c, &d, img, queries, Q, &out) == 0, "%s", c.err.msg);
    double s;
    double dl = rel_diff(vlm_f32(out.logits), ref_l, (int64_t)B * N * Q, &s);
    CHECK(dl < 1e-5, "logits differ from PyTorch by %.3g relative (max %.3g)", dl, s);
    double db = rel_diff(vlm_f32(out.boxes), ref_b, (int64_t)B * N * 4, &s);
    CHECK(db < 1e-5, "boxes differ from PyTorch by %.3g relative (max %.3g)", db, s);
    vlm_tensor *l = vlm_op_add(
        &c, vlm_op_sum(&c, vlm_op_mul(&c, out.logits, vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, N, Q}, r_l, NULL))),
        vlm_op_sum(&c, vlm_op_mul(&c, out.boxes, vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, N, 4}, r_b, NULL))));
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "%s", c.err.msg);
    int compared = 0;
    for (int i = 0; i < d.ps.n; i++) {
        if (!strcmp(d.ps.p[i].name, "visual.proj")) continue;
        char name[200];
        snprintf(name, sizeof name, "grad.%s", d.ps.p[i].name);
        float *g = get(&f, name, d.ps.p[i].numel);
        if (!g) continue;
        double r = rel_diff(d.ps.p[i].t.grad, g, d.ps.p[i].numel, &s);
        CHECK(s > 0, "PyTorch's gradient of %s is all zero", d.ps.p[i].name);
        CHECK(r < 1e-3, "grad %s differs by %.3g relative (max %.3g)", d.ps.p[i].name, r, s);
        compared++;
        free(g);
    }
    CHECK(compared == loaded && loaded == 33, "%d tensors loaded, %d gradients compared", loaded, compared);
    free(images), free(queries), free(ref_l), free(ref_b), free(r_l), free(r_b);
    vlm_ctx_free(&c);
    vlm_detector_free(&d);
    vlm_st_free(&f);
    return tu_done("test_detector_ref");
}
