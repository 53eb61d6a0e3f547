// Library entry points that used to live in the CLI, each against an
// independent computation: vlm_wise_mix, vlm_label_rank / vlm_topk_count,
// vlm_zeroshot_eval, vlm_classifier_evaluate (against a plain forward over the
// decoded images, metrics in double), and vlm_clip_batch_loss (CLIP with
// duplicate-caption groups, and SigLIP, against the formulas in double).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"
#include "data/transform.h"
#include "eval/classify.h"
#include "eval/zeroshot.h"
#include "testutil.h"
#include "train/finetune.h"
#include "train/pretrain.h"

#define DIRN "/tmp/vlm_test_eval_api"

static void test_wise_mix(void) {
    float a[5] = {0, 1, -2, 3.5f, 1e-3f}, b[5] = {4, -1, 2, 3.5f, 0}, o[5];
    vlm_wise_mix(o, a, b, 5, 0.0f);
    CHECK(!memcmp(o, a, sizeof o), "alpha 0 is theta0");
    vlm_wise_mix(o, a, b, 5, 1.0f);
    CHECK(!memcmp(o, b, sizeof o), "alpha 1 is theta1");
    vlm_wise_mix(o, a, b, 5, 0.25f);
    for (int i = 0; i < 5; i++) CHECK(fabsf(o[i] - (0.75f * a[i] + 0.25f * b[i])) < 1e-7f, "alpha 0.25 at %d", i);
}

static void test_rank_topk(void) {
    const float l[2][6] = {{0.1f, 0.9f, 0.5f, 0.5f, 0.2f, 0.3f}, {1, 1, 1, 1, 1, 1}};
    CHECK(vlm_label_rank(l[0], 6, 1) == 0 && vlm_label_rank(l[0], 6, 2) == 1 && vlm_label_rank(l[0], 6, 3) == 2,
          "ranks, a tie goes to the lower index");
    CHECK(vlm_label_rank(l[1], 6, 5) == 5, "all tied: the last index ranks last");
    int32_t y[2] = {3, 5};
    int64_t t1, t5;
    vlm_topk_count(&l[0][0], y, 2, 6, &t1, &t5);
    CHECK(t1 == 0 && t5 == 1, "top-1 %lld top-5 %lld", (long long)t1, (long long)t5);
    int32_t bad[2] = {7, -1};
    vlm_topk_count(&l[0][0], bad, 2, 6, &t1, &t5);
    CHECK(t1 == 0 && t5 == 0, "labels outside [0, K) count as wrong");
}

// Class embeddings e_k (one-hot-ish, normalised); images near their class's
// embedding except two which sit nearest another class.
static void test_zeroshot(void) {
    enum { C = 4, E = 4, n = 8 };
    float W[C * E] = {0}, img[n * E];
    for (int k = 0; k < C; k++) W[k * E + k] = 1;
    int32_t lab[n] = {0, 1, 2, 3, 0, 1, 2, 3};
    for (int i = 0; i < n; i++) {
        int target = i == 5 ? 2 : i == 7 ? 0 : lab[i]; // two mistakes: 1 -> 2, 3 -> 0
        for (int e = 0; e < E; e++) img[i * E + e] = e == target ? 0.9f : 0.1f * (float)(e + 1) / 4;
    }
    vlm_zeroshot_result r;
    vlm_error err = {0};
    CHECK(vlm_zeroshot_eval(img, lab, n, W, C, E, &r, &err) == VLM_OK, "zeroshot: %s", err.msg);
    CHECK(r.n == n && r.top1 == 6 && r.top5 == 8, "top-1 %lld top-5 %lld", (long long)r.top1, (long long)r.top5);
    CHECK(r.cls_n[1] == 2 && r.cls_ok[1] == 1 && r.cls_ok[0] == 2 && r.cls_ok[3] == 1, "per-class counts");
    CHECK(r.confusion[1 * C + 2] == 1 && r.confusion[3 * C + 0] == 1 && r.confusion[2 * C + 2] == 2, "confusion");
    vlm_zeroshot_result_free(&r);
    lab[3] = C;
    CHECK(vlm_zeroshot_eval(img, lab, n, W, C, E, &r, &err) != VLM_OK && strstr(err.msg, "3"),
          "a label outside the classes is refused naming its row: %s", err.msg);
}

// vlm_classifier_evaluate against a forward of the same decoded images.
static void test_classifier_evaluate(void) {
    enum { K = 8, S = 16, NIMG = 21 };
    if (system("rm -rf " DIRN) != 0) return;
    tu_make_squares(DIRN, NIMG, 1);
    vlm_error err = {0};
    vlm_vit_cfg vit = {S, 8, 16, 1, 2, 32, 8, VLM_ACT_GELU, 0};
    vlm_classifier_cfg cfg;
    vlm_classifier_cfg_from_vit(&cfg, &vit, K);
    vlm_classifier m;
    CHECK(vlm_classifier_init(&m, &cfg, &err) == VLM_OK, "init: %s", err.msg);
    vlm_classifier_init_weights(&m, 3);
    vlm_dataset ds;
    vlm_dataset_opts dso;
    vlm_dataset_opts_default(&dso);
    dso.require_label = 1;
    CHECK(vlm_dataset_open(&ds, DIRN "/train.tsv", &dso, &err) == VLM_OK, "dataset: %s", err.msg);
    vlm_ctx c;
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    c.grad_enabled = 1, c.training = 1;
    vlm_cls_eval r;
    CHECK(vlm_classifier_evaluate(&m, &ds, 6, 2, &c, &r, &err) == VLM_OK, "evaluate: %s", err.msg);
    CHECK(c.grad_enabled == 1 && c.training == 1, "the context's flags are restored");
    // the reference: decode + eval transform, one forward, metrics in double
    float *x = malloc(sizeof(float) * NIMG * 3 * S * S);
    int32_t y[NIMG];
    vlm_sample s;
    vlm_sample_init(&s);
    vlm_image img;
    vlm_image_init(&img);
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    for (int i = 0; i < NIMG; i++) {
        CHECK(vlm_dataset_load_image(&ds, i, &s, &img, NULL, &err) == VLM_OK &&
                  vlm_transform_eval(&t, &img, x + (size_t)i * 3 * S * S, &sc, &err) == VLM_OK,
              "decode %d: %s", i, err.msg);
        y[i] = vlm_dataset_label(&ds, i);
    }
    vlm_ctx_reset(&c);
    c.grad_enabled = 0, c.training = 0;
    int64_t sh[4] = {NIMG, 3, S, S};
    vlm_tensor *lg = vlm_classifier_forward(&c, &m, vlm_tensor_wrap(&c, VLM_F32, 4, sh, x, NULL), 0);
    CHECK(lg != NULL, "forward");
    int64_t t1 = 0, t5 = 0;
    double loss = 0;
    for (int i = 0; lg && i < NIMG; i++) {
        const float *l = vlm_f32(lg) + i * K;
        int rank = vlm_label_rank(l, K, y[i]);
        t1 += rank == 0, t5 += rank < 5;
        double mx = l[0], z = 0;
        for (int k = 1; k < K; k++) mx = fmax(mx, l[k]);
        for (int k = 0; k < K; k++) z += exp(l[k] - mx);
        loss += (log(z) + mx - l[y[i]]) / NIMG;
    }
    CHECK(r.n == NIMG && r.top1 == t1 && r.top5 == t5, "counts %lld/%lld/%lld vs %lld/%lld", (long long)r.n,
          (long long)r.top1, (long long)r.top5, (long long)t1, (long long)t5);
    CHECK(fabs(r.loss - loss) < 1e-5 * fmax(1, loss), "loss %.7f vs %.7f", r.loss, loss);
    vlm_transform_scratch_free(&sc);
    vlm_image_free(&img);
    vlm_sample_free(&s);
    free(x);
    vlm_ctx_free(&c);
    vlm_dataset_free(&ds);
    vlm_classifier_free(&m);
    if (system("rm -rf " DIRN) != 0) fprintf(stderr, "cleanup failed\n");
}

// The contrastive batch loss (one rank) against the formulas in double.
static void test_clip_batch_loss(int siglip) {
    enum { B = 6 };
    vlm_error err = {0};
    vlm_clip_cfg cfg;
    vlm_clip m;
    CHECK(vlm_clip_cfg_load("tiny", &cfg, &err) == VLM_OK, "cfg: %s", err.msg);
    cfg.siglip = siglip;
    CHECK(vlm_clip_init(&m, &cfg, &err) == VLM_OK, "init: %s", err.msg);
    vlm_clip_init_weights(&m, 1);
    const int E = cfg.embed_dim;
    float *fi = malloc(sizeof(float) * B * E), *ft = malloc(sizeof(float) * B * E);
    float *gi = calloc((size_t)B * E, sizeof(float)), *gt = calloc((size_t)B * E, sizeof(float));
    vlm_rng rng;
    vlm_rng_init(&rng, 5, 9, 0);
    for (int i = 0; i < B * E; i++) fi[i] = vlm_rng_normal(&rng), ft[i] = vlm_rng_normal(&rng);
    for (int i = 0; i < B; i++) // pair i's text close to its image, so the loss is far from chance
        for (int e = 0; e < E; e++) ft[i * E + e] += 2 * fi[i * E + e];
    const int32_t groups[B] = {0, 1, 1, 2, 3, 4}; // captions 1 and 2 are the same text
    vlm_ctx c;
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    int64_t sh[2] = {B, E};
    vlm_tensor *l = vlm_clip_batch_loss(&c, &m, vlm_tensor_wrap(&c, VLM_F32, 2, sh, fi, gi),
                                        vlm_tensor_wrap(&c, VLM_F32, 2, sh, ft, gt), groups, siglip, NULL);
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "loss + backward: %s", c.err.msg);
    // reference
    static double ni[B][1024], nt[B][1024];
    double sim[B][B];
    CHECK(E <= 1024, "embed dim %d", E);
    for (int i = 0; i < B; i++) {
        double a = 0, b = 0;
        for (int e = 0; e < E; e++) a += (double)fi[i * E + e] * fi[i * E + e], b += (double)ft[i * E + e] * ft[i * E + e];
        for (int e = 0; e < E; e++) ni[i][e] = fi[i * E + e] / sqrt(a), nt[i][e] = ft[i * E + e] / sqrt(b);
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            sim[i][j] = 0;
            for (int e = 0; e < E; e++) sim[i][j] += ni[i][e] * nt[j][e];
        }
    const double scale = exp(m.ps.data[m.ps.p[m.logit_scale].offset]);
    double ref = 0;
    if (!siglip) { // InfoNCE both ways; a same-caption pair is no negative
        for (int dir = 0; dir < 2; dir++)
            for (int i = 0; i < B; i++) {
                double z = 0;
                for (int j = 0; j < B; j++) {
                    if (j != i && groups[j] == groups[i]) continue;
                    z += exp(scale * (dir ? sim[j][i] : sim[i][j]));
                }
                ref += (log(z) - scale * sim[i][i]) / (2.0 * B);
            }
    } else { // -sum log sigmoid(z (scale s + bias)) / B, z = +1 for the same caption
        const double bias = m.ps.data[m.ps.p[m.logit_bias].offset];
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) {
                double z = groups[i] == groups[j] ? 1 : -1, u = z * (scale * sim[i][j] + bias);
                ref += log1p(exp(-u)) / B;
            }
    }
    CHECK(l && fabs(vlm_f32(l)[0] - ref) < 1e-4 * fmax(1, fabs(ref)), "%s loss %.6f vs %.6f", siglip ? "siglip" : "clip",
          l ? vlm_f32(l)[0] : -1, ref);
    CHECK(tu_max_abs(gi, B * E) > 0 && tu_max_abs(gt, B * E) > 0, "gradients reach both feature sets");
    free(fi), free(ft), free(gi), free(gt);
    vlm_ctx_free(&c);
    vlm_clip_free(&m);
}

int main(void) {
    test_wise_mix();
    test_rank_topk();
    test_zeroshot();
    test_classifier_evaluate();
    test_clip_batch_loss(0);
    test_clip_batch_loss(1);
    return tu_done("test_eval_api");
}
