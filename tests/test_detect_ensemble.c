// Detector + frozen-CLIP score fusion (fusion/detect_ensemble.h) with the
// shared tiny CLIP: the crop of a box is classified as the CLIP classifies
// that crop made independently (vlm_transform_eval of the cut-out), the same
// object at two places gets the same p_clip, the fused log-odds follow
// p_det^(1-w) * p_clip^w with w per seen / novel query, tokens outside the top
// fuse with 1/Q, and bad settings or files are refused with clear errors.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/ops.h"
#include "data/transform.h"
#include "fusion/detect_ensemble.h"
#include "fusion/checkpoint.h"
#include "fusion/classes.h"
#include "tests/testutil.h"

enum { IW = 64, IH = 40, Q = 2, N = 3 };

static double logodds(double p) { return log(p) - log1p(-p); }
static double sigm(double x) { return 1 / (1 + exp(-x)); }

// grey image with two identical 16 x 16 blocks (red top half, blue bottom) at
// (4, 4) and (36, 12)
static void draw(vlm_image *img) {
    for (int y = 0; y < IH; y++)
        for (int x = 0; x < IW; x++) {
            uint8_t *p = img->px + ((size_t)y * IW + x) * 3;
            p[0] = p[1] = p[2] = 128;
            for (int b = 0; b < 2; b++) {
                int x0 = b ? 36 : 4, y0 = b ? 12 : 4;
                if (x >= x0 && x < x0 + 16 && y >= y0 && y < y0 + 16) {
                    int top = y < y0 + 8;
                    p[0] = top ? 220 : 10, p[1] = 30, p[2] = top ? 20 : 230;
                }
            }
        }
}

// p_clip of the 16 x 16 block at (4, 4), made without the ensemble's crop code.
static int reference_probs(vlm_clip *m, vlm_tokenizer *tok, const vlm_image *img, const char *const *names, double *pc) {
    vlm_error err = {0};
    const int S = m->cfg.vision.image_size, E = m->cfg.embed_dim;
    vlm_image cut;
    vlm_image_init(&cut);
    if (vlm_image_alloc(&cut, 16, 16, &err)) return -1;
    for (int y = 0; y < 16; y++) memcpy(cut.px + (size_t)y * 16 * 3, img->px + ((size_t)(4 + y) * IW + 4) * 3, 16 * 3);
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    float *x = malloc(sizeof(float) * 3 * S * S), qe[Q * 1024];
    vlm_ctx c;
    int rc = -1;
    static const char *const plain[1] = {"{}"};
    if (x && E <= 1024 && !vlm_transform_eval(&t, &cut, x, &sc, &err) &&
        !vlm_zeroshot_classifier(m, tok, names, Q, plain, 1, qe, &err) && !vlm_ctx_init(&c, 16u << 20, 0, &err)) {
        c.grad_enabled = 0;
        int64_t sh[4] = {1, 3, S, S};
        vlm_tensor *f = vlm_op_l2norm(&c, vlm_clip_encode_image(&c, m, vlm_tensor_wrap(&c, VLM_F32, 4, sh, x, NULL), NULL));
        if (f) {
            double scale = exp(vlm_f32(vlm_params_get(&m->ps, m->logit_scale))[0]), l[Q], mx = -1e30, sum = 0;
            for (int q = 0; q < Q; q++) {
                double d = 0;
                for (int j = 0; j < E; j++) d += (double)vlm_f32(f)[j] * qe[q * E + j];
                l[q] = scale * d;
                mx = fmax(mx, l[q]);
            }
            for (int q = 0; q < Q; q++) sum += pc[q] = exp(l[q] - mx);
            for (int q = 0; q < Q; q++) pc[q] /= sum;
            rc = 0;
        }
        vlm_ctx_free(&c);
    }
    free(x);
    vlm_transform_scratch_free(&sc);
    vlm_image_free(&cut);
    return rc;
}

int main(void) {
    vlm_error err = {0};
    vlm_clip m;
    char *vocab;
    if (tu_tiny_clip(&m, &vocab)) return tu_done("test_detect_ensemble");
    char path[] = "/tmp/vlm_test_ensemble_XXXXXX.safetensors";
    int fd = mkstemps(path, 12);
    if (fd >= 0) close(fd);
    CHECK(fd >= 0 && vlm_ckpt_save_model(path, &m, vocab, 0, 0, &err) == VLM_OK, "save clip: %s", err.msg);
    vlm_tokenizer tok;
    CHECK(vlm_tokenizer_init_from_memory(&tok, vocab, strlen(vocab), &err) == VLM_OK, "%s", err.msg);

    vlm_image img;
    vlm_image_init(&img);
    CHECK(vlm_image_alloc(&img, IW, IH, &err) == VLM_OK, "%s", err.msg);
    draw(&img);
    const char *names[Q] = {"a red dog", "a blue sneaker"};
    double pc[Q] = {0, 0};
    CHECK(reference_probs(&m, &tok, &img, names, pc) == 0, "reference p_clip");
    CHECK(fabs(pc[0] + pc[1] - 1) < 1e-9 && fabs(pc[0] - 0.5) > 1e-4, "reference p_clip %g %g (not informative)", pc[0],
          pc[1]);
    // tokens: the block at (4, 4), the block at (36, 12), a weak token elsewhere
    const float boxes[N * 4] = {12.0f / IW, 12.0f / IH, 16.0f / IW, 16.0f / IH, 44.0f / IW, 20.0f / IH, 16.0f / IW, 16.0f / IH,
                                0.9f, 0.9f, 0.1f, 0.1f};
    const float det[N * Q] = {2.0f, 1.0f, 1.5f, 0.5f, -3.0f, -3.0f};
    const double ws[3][2] = {{0, 1}, {0.35, 0.65}, {1, 0}}; // (seen, novel)
    for (int k = 0; k < 3; k++) {
        vlm_det_ensemble_opts o;
        vlm_det_ensemble_opts_default(&o);
        o.clip = path, o.w_seen = (float)ws[k][0], o.w_novel = (float)ws[k][1], o.context = 1.0f, o.top = 2;
        vlm_det_ensemble e;
        if (vlm_det_ensemble_init(&e, &o, &err)) {
            CHECK(0, "init: %s", err.msg);
            continue;
        }
        float lg[N * Q];
        memcpy(lg, det, sizeof lg);
        CHECK(vlm_det_ensemble_rescore(&e, &img, boxes, lg, N, &err) == VLM_ERR_ARG && strstr(err.msg, "queries"),
              "rescore before queries: %s", err.msg);
        e.seen = "a red dog\nsomething else";
        CHECK(vlm_det_ensemble_queries(&e, names, Q, NULL, 0, &err) == VLM_OK &&
                  vlm_det_ensemble_rescore(&e, &img, boxes, lg, N, &err) == VLM_OK,
              "rescore: %s", err.msg);
        for (int t = 0; t < N; t++)
            for (int q = 0; q < Q; q++) {
                double w = ws[k][q == 0 ? 0 : 1], p = t < 2 ? pc[q] : 1.0 / Q;
                double want = logodds(pow(sigm(det[t * Q + q]), 1 - w) * pow(p, w));
                CHECK(fabs(lg[t * Q + q] - want) < 2e-3 * (1 + fabs(want)), "weights %g,%g token %d query %d: %g, want %g",
                      ws[k][0], ws[k][1], t, q, lg[t * Q + q], want);
            }
        vlm_det_ensemble_free(&e);
    }
    // refused: weights, context, top out of range; a missing CLIP file
    vlm_det_ensemble_opts o;
    vlm_det_ensemble_opts_default(&o);
    o.clip = path, o.w_novel = 1.5f;
    vlm_det_ensemble e;
    CHECK(vlm_det_ensemble_init(&e, &o, &err) == VLM_ERR_ARG && strstr(err.msg, "weights"), "weight 1.5: %s", err.msg);
    vlm_det_ensemble_opts_default(&o);
    o.clip = path, o.context = 0.5f;
    CHECK(vlm_det_ensemble_init(&e, &o, &err) == VLM_ERR_ARG, "context 0.5 accepted");
    vlm_det_ensemble_opts_default(&o);
    o.clip = path, o.top = 0;
    CHECK(vlm_det_ensemble_init(&e, &o, &err) == VLM_ERR_ARG, "top 0 accepted");
    vlm_det_ensemble_opts_default(&o);
    o.clip = "/nonexistent/clip.safetensors";
    CHECK(vlm_det_ensemble_init(&e, &o, &err) != VLM_OK && strstr(err.msg, "/nonexistent/clip.safetensors"),
          "missing file: %s", err.msg);
    vlm_det_ensemble_opts_default(&o);
    CHECK(vlm_det_ensemble_init(&e, &o, &err) == VLM_ERR_ARG, "no CLIP accepted");

    vlm_image_free(&img);
    vlm_tokenizer_free(&tok);
    vlm_clip_free(&m);
    free(vocab);
    unlink(path);
    return tu_done("test_detect_ensemble");
}
