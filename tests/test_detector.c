// Detection head (vision/detector.h): initial boxes on their own patches,
// positional-embedding resize, parameter gradients of the whole head + tower
// against central differences, decoding order, and the open-vocabulary
// detector file round trip (fusion/detection.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fusion/detection.h"
#include "tests/testutil.h"

static vlm_detector_cfg micro_cfg(void) {
    vlm_detector_cfg c = {0};
    c.vit = (vlm_vit_cfg){.image_size = 8, .patch_size = 4, .width = 8, .layers = 1, .heads = 2, .mlp_width = 16,
                          .output_dim = 6, .act = VLM_ACT_GELU};
    c.embed_dim = 6;
    return c;
}

// loss = sum(logits * R1) + sum(boxes * R2): any linear functional exercises every path.
static double run(vlm_ctx *c, vlm_detector *d, float *img, const float *q, int Q, const float *R1, const float *R2,
                  int grad) {
    vlm_ctx_reset(c);
    c->grad_enabled = grad;
    int64_t sh[4] = {2, 3, 8, 8};
    vlm_tensor *x = vlm_tensor_wrap(c, VLM_F32, 4, sh, img, NULL);
    vlm_det_out o;
    if (vlm_detector_forward(c, d, x, q, Q, &o)) return NAN;
    vlm_tensor *r1 = vlm_tensor_wrap(c, VLM_F32, 3, o.logits->shape, (float *)R1, NULL);
    vlm_tensor *r2 = vlm_tensor_wrap(c, VLM_F32, 3, o.boxes->shape, (float *)R2, NULL);
    vlm_tensor *l = vlm_op_add(c, vlm_op_sum(c, vlm_op_mul(c, o.logits, r1)), vlm_op_sum(c, vlm_op_mul(c, o.boxes, r2)));
    if (!l) return NAN;
    if (grad) {
        vlm_params_zero_grad(&d->ps);
        if (vlm_backward(c, l)) return NAN;
    }
    return vlm_f32(l)[0];
}

static void test_head(void) {
    vlm_error err;
    vlm_detector d;
    vlm_detector_cfg cfg = micro_cfg();
    CHECK(vlm_detector_init(&d, &cfg, &err) == VLM_OK, "init: %s", err.msg);
    vlm_detector_init_weights(&d, 3);
    // perturb the zero-initialised last box layer so its inputs get gradient too
    vlm_rng rng;
    vlm_rng_init(&rng, 7, 99, 0);
    vlm_fill_normal(vlm_params_get(&d.ps, d.box_w[2]), &rng, 0.3f);
    vlm_ctx c;
    vlm_ctx_init(&c, 8u << 20, 0, &err);
    const int Q = 3, N = 4;
    float img[2 * 3 * 64], q[3 * 6], R1[2 * 4 * 3], R2[2 * 4 * 4];
    for (int i = 0; i < 2 * 3 * 64; i++) img[i] = vlm_rng_uniform(&rng) * 2 - 1;
    for (int i = 0; i < 18; i++) q[i] = vlm_rng_uniform(&rng) - 0.5f;
    for (int k = 0; k < Q; k++) { // normalise the queries
        double s = 0;
        for (int e = 0; e < 6; e++) s += q[k * 6 + e] * q[k * 6 + e];
        for (int e = 0; e < 6; e++) q[k * 6 + e] /= (float)sqrt(s);
    }
    for (int i = 0; i < 24; i++) R1[i] = vlm_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < 32; i++) R2[i] = vlm_rng_uniform(&rng) - 0.5f;

    // Initial boxes: with the last layer zero, token n's box is its own patch.
    {
        vlm_detector d0;
        vlm_detector_init(&d0, &cfg, &err);
        vlm_detector_init_weights(&d0, 3);
        vlm_ctx_reset(&c);
        c.grad_enabled = 0;
        int64_t sh[4] = {2, 3, 8, 8};
        vlm_det_out o;
        CHECK(vlm_detector_forward(&c, &d0, vlm_tensor_wrap(&c, VLM_F32, 4, sh, img, NULL), q, Q, &o) == 0, "fwd");
        const float *b = vlm_f32(o.boxes);
        CHECK(o.boxes->shape[0] == 2 && o.boxes->shape[1] == N && o.boxes->shape[2] == 4, "boxes shape");
        CHECK(o.logits->shape[2] == Q, "logits shape");
        const float want[4][4] = {{.25f, .25f, .5f, .5f}, {.75f, .25f, .5f, .5f}, {.25f, .75f, .5f, .5f},
                                  {.75f, .75f, .5f, .5f}};
        for (int n = 0; n < N; n++)
            for (int k = 0; k < 4; k++)
                CHECK(fabsf(b[4 * (N + n) + k] - want[n][k]) < 1e-5f, "initial box %d[%d] = %g", n, k, b[4 * (N + n) + k]);
        // Initial logits: (cos - 0.9) * 10 in [-19, 1] (weights of shift/scale are small).
        for (int i = 0; i < 2 * N * Q; i++) CHECK(vlm_f32(o.logits)[i] < 1.5f && vlm_f32(o.logits)[i] > -19.5f, "logit");
        vlm_detector_free(&d0);
    }

    double base = run(&c, &d, img, q, Q, R1, R2, 1);
    CHECK(isfinite(base), "loss: %s", c.err.msg);
    int64_t T = d.ps.total;
    float *g = malloc(sizeof(float) * (size_t)T);
    memcpy(g, d.ps.grad, sizeof(float) * (size_t)T);
    // Per parameter tensor: a few elements by central differences (double-checked step).
    int checked = 0;
    for (int i = 0; i < d.ps.n; i++) {
        vlm_param *p = &d.ps.p[i];
        if (p->frozen) continue;
        double gmax = tu_max_abs(g + p->offset, (long)p->numel);
        CHECK(gmax > 1e-7, "%s: gradient all zero", p->name);
        for (int k = 0; k < 3 && k < p->numel; k++) {
            int64_t j = p->offset + (int64_t)((k * 7919) % p->numel);
            float keep = d.ps.data[j], h = 1e-2f;
            d.ps.data[j] = keep + h;
            double lp = run(&c, &d, img, q, Q, R1, R2, 0);
            d.ps.data[j] = keep - h;
            double lm = run(&c, &d, img, q, Q, R1, R2, 0);
            d.ps.data[j] = keep;
            double fd = (lp - lm) / (2 * h);
            double tol = 2e-2 * fmax(gmax, 1e-2) + 1e-3;
            CHECK(fabs(fd - g[j]) <= tol, "%s[%lld]: analytic %g vs central difference %g", p->name,
                  (long long)(j - p->offset), g[j], fd);
            checked++;
        }
    }
    CHECK(checked > 30, "only %d elements checked", checked);
    free(g);
    vlm_ctx_free(&c);
    vlm_detector_free(&d);
}

static void test_pos_resize(void) {
    // Same grid: identity. 2x2 -> 4x4: bilinear with align_corners=False (edge clamped).
    float src[5 * 1] = {9, 0, 1, 2, 3}, dst[17];
    vlm_pos_emb_resize(src, 2, dst, 2, 1);
    for (int i = 0; i < 5; i++) CHECK(dst[i] == src[i], "identity resize");
    vlm_pos_emb_resize(src, 2, dst, 4, 1);
    CHECK(dst[0] == 9, "class position kept");
    // F.interpolate([[0,1],[2,3]], size=4, mode="bilinear", align_corners=False) first row: 0, .25, .75, 1
    const float row0[4] = {0, .25f, .75f, 1}, row1[4] = {.5f, .75f, 1.25f, 1.5f};
    for (int j = 0; j < 4; j++) {
        CHECK(fabsf(dst[1 + j] - row0[j]) < 1e-6f, "row 0 col %d: %g", j, dst[1 + j]);
        CHECK(fabsf(dst[5 + j] - row1[j]) < 1e-6f, "row 1 col %d: %g", j, dst[5 + j]);
    }
}

static void test_decode(void) {
    // 2 tokens x 2 queries; query 1 padded.
    const float logits[4] = {0.0f, 5.0f, 2.0f, 1.0f};
    const float boxes[8] = {.5f, .5f, .2f, .4f, .25f, .25f, .5f, .5f};
    const uint8_t valid[2] = {1, 0};
    vlm_det_box out[8];
    int n = vlm_detector_decode(logits, boxes, 2, 2, valid, 100, 50, 10, 0, 0, out);
    CHECK(n == 2, "decode count %d", n);
    CHECK(out[0].query == 0 && fabsf(out[0].score - 1 / (1 + expf(-2))) < 1e-6f, "best first");
    CHECK(fabsf(out[0].x - 0) < 1e-4f && fabsf(out[0].w - 50) < 1e-4f && fabsf(out[0].h - 25) < 1e-4f, "pixels");
    CHECK(fabsf(out[1].x - 40) < 1e-4f && fabsf(out[1].y - 15) < 1e-4f, "xywh of token 0");
    n = vlm_detector_decode(logits, boxes, 2, 2, NULL, 100, 50, 1, 0, 0, out);
    CHECK(n == 1 && out[0].query == 1, "max_det and padded query allowed without mask");
    // NMS: 3 tokens x 2 queries. Tokens 0 and 1 overlap (IoU 0.6), token 2 is apart.
    const float l3[6] = {3.0f, -1.0f, 2.0f, 1.5f, 1.0f, -2.0f};
    const float b3[12] = {.30f, .5f, .2f, .2f, .34f, .5f, .2f, .2f, .8f, .8f, .1f, .1f};
    n = vlm_detector_decode(l3, b3, 3, 2, NULL, 100, 100, 10, 0, 0.5f, out);
    // query 0: token 0 (3.0) keeps, token 1 (2.0) suppressed (IoU .6 > .5), token 2 (1.0) kept;
    // query 1: token 1 (1.5) kept, token 0 (-1) suppressed by it, token 2 (-2) kept
    CHECK(n == 4, "nms count %d", n);
    if (n == 4) {
        CHECK(out[0].query == 0 && out[0].score > 0.95f, "nms: best first");
        CHECK(out[1].query == 1 && fabsf(out[1].x - 24) < 1e-4f, "nms: token 1 kept for query 1 (%g)", out[1].x);
        CHECK(out[2].query == 0 && fabsf(out[2].x - 75) < 1e-4f, "nms: token 2 kept for query 0");
        CHECK(out[3].query == 1 && fabsf(out[3].x - 75) < 1e-4f, "nms: token 2 kept for query 1");
    }
    n = vlm_detector_decode(l3, b3, 3, 2, NULL, 100, 100, 10, 0, 0.7f, out);
    CHECK(n == 6, "nms at 0.7 keeps the IoU-0.6 pair: %d", n);
    n = vlm_detector_decode(l3, b3, 3, 2, NULL, 100, 100, 2, 0, 0.5f, out);
    CHECK(n == 2 && out[1].query == 1, "nms then max_det: %d", n);
}


// OpenAI's tiny CLIP (shared reference) + a small vocabulary -> a detector at
// twice the CLIP's input size -> file -> load: same outputs, same queries.
static void test_owl_file(void) {
    vlm_error err;
    vlm_clip_cfg cc;
    vlm_clip m;
    char *vocab = tu_read_file(tu_src("tests/fixtures/zeroshot/vocab.txt"), NULL);
    CHECK(vocab != NULL, "vocab fixture");
    if (!vocab || vlm_clip_cfg_load(tu_src("../shared/reference/openai-clip/tiny.json"), &cc, &err) ||
        vlm_clip_init(&m, &cc, &err) ||
        vlm_clip_load_weights(&m, tu_src("../shared/reference/openai-clip/tiny.weights.safetensors"), &err)) {
        CHECK(0, "setup: %s", err.msg);
        free(vocab);
        return;
    }
    char dir[] = "/tmp/vlm_test_det_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char cpath[256], dpath[256], bare[256];
    snprintf(cpath, sizeof cpath, "%s/clip.safetensors", dir);
    snprintf(dpath, sizeof dpath, "%s/det.safetensors", dir);
    snprintf(bare, sizeof bare, "%s/bare.safetensors", dir);
    CHECK(vlm_ckpt_save_model(cpath, &m, vocab, 0, 0, &err) == VLM_OK, "save clip: %s", err.msg);
    CHECK(vlm_ckpt_save_model(bare, &m, NULL, 0, 0, &err) == VLM_OK, "save clip: %s", err.msg);
    vlm_owl o, o2;
    CHECK(vlm_owl_from_clip(&o, bare, 64, 0, 5, &err) != VLM_OK && strstr(err.msg, "tokenizer"),
          "a CLIP without a tokenizer is refused: %s", err.msg);
    CHECK(vlm_owl_from_clip(&o, cpath, 36, 0, 5, &err) != VLM_OK && strstr(err.msg, "multiple"),
          "input size must be a multiple of the patch: %s", err.msg);
    if (vlm_owl_from_clip(&o, cpath, 64, 0, 5, &err)) {
        CHECK(0, "from_clip: %s", err.msg);
    } else {
        CHECK(o.det.grid == 8 && o.det.cfg.vit.image_size == 64, "grid %d", o.det.grid);
        // The tower is the CLIP's: conv1 equal, class position embedding kept.
        int i = vlm_params_find(&o.det.ps, "visual.conv1.weight"), j = vlm_params_find(&m.ps, "visual.conv1.weight");
        CHECK(!memcmp(o.det.ps.p[i].t.data, m.ps.p[j].t.data, sizeof(float) * (size_t)m.ps.p[j].numel), "conv1 copied");
        i = vlm_params_find(&o.det.ps, "visual.positional_embedding");
        j = vlm_params_find(&m.ps, "visual.positional_embedding");
        CHECK(!memcmp(o.det.ps.p[i].t.data, m.ps.p[j].t.data, sizeof(float) * 128), "class position kept");
        const char *names[2] = {"a dog", "a red sneaker"};
        float q1[2 * 64], q2[2 * 64];
        CHECK(vlm_owl_queries(&o, names, 2, NULL, 0, q1, &err) == VLM_OK, "queries: %s", err.msg);
        o.det.cfg.nms_iou = 0.5f; // the file carries the inference NMS (predict / --eval-only apply it)
        CHECK(vlm_owl_save(dpath, &o, "dog\nsneaker", &err) == VLM_OK, "save: %s", err.msg);
        char *cn = NULL;
        if (vlm_owl_load(&o2, dpath, &cn, &err)) {
            CHECK(0, "load: %s", err.msg);
        } else {
            CHECK(cn && !strcmp(cn, "dog\nsneaker"), "classnames");
            CHECK(o2.det.cfg.nms_iou == 0.5f, "nms_iou round-trips: %g", (double)o2.det.cfg.nms_iou);
            CHECK(o2.det.ps.total == o.det.ps.total && !memcmp(o2.det.ps.data, o.det.ps.data,
                                                               sizeof(float) * (size_t)o.det.ps.total),
                  "detector parameters round-trip");
            CHECK(vlm_owl_queries(&o2, names, 2, NULL, 0, q2, &err) == VLM_OK, "queries: %s", err.msg);
            CHECK(!memcmp(q1, q2, sizeof q1), "the text side round-trips (same query embeddings)");
            vlm_owl_free(&o2);
        }
        free(cn);
        // A patch twice the CLIP's: on a 2x nearest-upsampled image the patch
        // embeddings equal the CLIP's on the original.
        vlm_owl o3;
        if (vlm_owl_from_clip(&o3, cpath, 64, 16, 5, &err)) {
            CHECK(0, "from_clip with patch 16: %s", err.msg);
        } else {
            CHECK(o3.det.grid == 4, "grid %d", o3.det.grid);
            vlm_ctx c;
            vlm_ctx_init(&c, 8u << 20, 0, &err);
            c.grad_enabled = 0;
            static float x[3 * 32 * 32], X[3 * 64 * 64];
            vlm_rng r;
            vlm_rng_init(&r, 11, 99, 0);
            for (int k = 0; k < 3 * 32 * 32; k++) x[k] = vlm_rng_uniform(&r) * 2 - 1;
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < 64; y++)
                    for (int xx = 0; xx < 64; xx++) X[(ch * 64 + y) * 64 + xx] = x[(ch * 32 + y / 2) * 32 + xx / 2];
            int64_t s1[4] = {1, 3, 32, 32}, s2[4] = {1, 3, 64, 64};
            vlm_tensor *a = vlm_op_patchify(&c, vlm_tensor_wrap(&c, VLM_F32, 4, s1, x, NULL),
                                            vlm_params_get(&m.ps, vlm_params_find(&m.ps, "visual.conv1.weight")), NULL);
            vlm_tensor *b = vlm_op_patchify(&c, vlm_tensor_wrap(&c, VLM_F32, 4, s2, X, NULL),
                                            vlm_params_get(&o3.det.ps, o3.det.vit.conv1), NULL);
            CHECK(a && b && vlm_numel(a) == vlm_numel(b), "patchify shapes");
            if (a && b) CHECK(tu_rel_err(vlm_f32(b), vlm_f32(a), (long)vlm_numel(a), 1e-6) < 1e-5,
                              "upsampled conv1 reproduces the CLIP's patch embeddings: %g",
                              tu_rel_err(vlm_f32(b), vlm_f32(a), (long)vlm_numel(a), 1e-6));
            vlm_ctx_free(&c);
            vlm_owl_free(&o3);
        }
        CHECK(vlm_owl_from_clip(&o3, cpath, 64, 12, 5, &err) != VLM_OK && strstr(err.msg, "multiple"),
              "patch must be a multiple of the CLIP's: %s", err.msg);
        // A CLIP file is not a detector file.
        CHECK(vlm_owl_load(&o2, cpath, NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "detector"), "%s", err.msg);
        vlm_owl_free(&o);
    }
    vlm_clip_free(&m);
    free(vocab);
    unlink(cpath);
    unlink(dpath);
    unlink(bare);
    rmdir(dir);
}

int main(void) {
    test_pos_resize();
    test_decode();
    test_head();
    test_owl_file();
    return tu_done("test_detector");
}
