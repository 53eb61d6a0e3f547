// Detection set loss: Hungarian assignment against brute force (and an exact
// subset DP on tall matrices), IoU/GIoU values, finite-difference checks of the
// focal / L1 / GIoU ops and of the whole loss, padded queries, bad inputs, and
// PyTorch reference values (tests/fixtures/detection.safetensors).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "losses/detection.h"
#include "tests/testutil.h"

static vlm_ctx C;

// ---- (a) Hungarian ------------------------------------------------------------------
// Brute force over all injective maps columns -> rows: minimum, how many
// assignments reach it (within 1e-9), and one argmin.
typedef struct {
    const double *cost;
    int nr, nc;
    int cur[8], best_assign[8];
    char used[8];
    double best;
    int n_best;
} brute;

static void brute_rec(brute *s, int j, double acc) {
    if (j == s->nc) {
        if (acc < s->best - 1e-9) {
            s->best = acc;
            s->n_best = 1;
            memcpy(s->best_assign, s->cur, sizeof s->cur);
        } else if (fabs(acc - s->best) <= 1e-9)
            s->n_best++;
        return;
    }
    for (int r = 0; r < s->nr; r++) {
        if (s->used[r]) continue;
        s->used[r] = 1;
        s->cur[j] = r;
        brute_rec(s, j + 1, acc + s->cost[r * s->nc + j]);
        s->used[r] = 0;
    }
}

// Exact optimum by DP over subsets of columns (rows processed in order).
static double subset_dp(const double *cost, int nr, int nc) {
    int S = 1 << nc;
    double *dp = malloc(sizeof(double) * (size_t)S);
    for (int m = 0; m < S; m++) dp[m] = INFINITY;
    dp[0] = 0;
    for (int r = 0; r < nr; r++)
        for (int m = S - 1; m > 0; m--) // descending: each row used at most once
            for (int c = 0; c < nc; c++)
                if ((m >> c & 1) && dp[m ^ (1 << c)] + cost[r * nc + c] < dp[m]) dp[m] = dp[m ^ (1 << c)] + cost[r * nc + c];
    double v = dp[S - 1];
    free(dp);
    return v;
}

static int assignment_ok(const int32_t *a, int nr, int nc) {
    char seen[256] = {0};
    for (int j = 0; j < nc; j++) {
        if (a[j] < 0 || a[j] >= nr || seen[a[j]]) return 0;
        seen[a[j]] = 1;
    }
    return 1;
}

static void test_hungarian(void) {
    vlm_rng rng;
    vlm_rng_init(&rng, 7, 1, 0);
    vlm_error err;
    double cost[64 * 16];
    int32_t a[16];
    int cases = 0, unique_checked = 0, bad = 0;
    // kind 0: uniform reals, 1: integers 0..3 (many ties), 2: integers 0..9 with
    // negatives, 3: all equal, 4: reals with huge spread.
    for (int nr = 1; nr <= 7; nr++)
        for (int nc = 0; nc <= nr; nc++)
            for (int kind = 0; kind < 5; kind++)
                for (int rep = 0; rep < 6; rep++) {
                    for (int k = 0; k < nr * nc; k++) {
                        double u = vlm_rng_uniform_d(&rng);
                        cost[k] = kind == 0 ? u
                                  : kind == 1 ? (double)vlm_rng_below(&rng, 4)
                                  : kind == 2 ? (double)vlm_rng_below(&rng, 10) - 5
                                  : kind == 3 ? 1.5
                                              : (u - 0.5) * pow(10.0, (double)vlm_rng_below(&rng, 7));
                    }
                    double total = -1;
                    vlm_status st = vlm_det_hungarian(cost, nr, nc, a, &total, &err);
                    brute bf = {.cost = cost, .nr = nr, .nc = nc, .best = INFINITY};
                    brute_rec(&bf, 0, 0);
                    double sum = 0;
                    for (int j = 0; j < nc; j++) sum += (st == VLM_OK && a[j] >= 0 && a[j] < nr) ? cost[a[j] * nc + j] : NAN;
                    int ok = st == VLM_OK && assignment_ok(a, nr, nc) && fabs(sum - bf.best) <= 1e-9 * fmax(1, fabs(bf.best)) &&
                             fabs(total - sum) <= 1e-9 * fmax(1, fabs(sum));
                    if (ok && bf.n_best == 1 && nc > 0) {
                        unique_checked++;
                        for (int j = 0; j < nc; j++) ok = ok && a[j] == bf.best_assign[j];
                    }
                    // Determinism: a second run gives the same assignment.
                    int32_t a2[16];
                    vlm_det_hungarian(cost, nr, nc, a2, NULL, &err);
                    ok = ok && memcmp(a, a2, sizeof(int32_t) * (size_t)nc) == 0;
                    if (!ok && bad++ < 5)
                        CHECK(0, "hungarian %dx%d kind %d rep %d: total %.12g, brute force %.12g (%s)", nr, nc, kind, rep,
                              sum, bf.best, st ? err.msg : "assignment");
                    cases++;
                }
    CHECK(bad == 0, "hungarian: %d of %d cases differ from brute force", bad, cases);
    CHECK(unique_checked > 100, "hungarian: only %d cases with a unique optimum", unique_checked);
    printf("  hungarian vs brute force: %d matrices up to 7x7 (%d with a unique optimum, assignment compared)\n", cases,
           unique_checked);

    // Tall matrices as the detector sees them: subset DP gives the exact optimum.
    int tall_bad = 0, tall = 0;
    const int shapes[][2] = {{64, 10}, {144, 10}, {100, 7}, {30, 1}, {12, 12}, {16, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int rep = 0; rep < 4; rep++) {
            int nr = shapes[s][0], nc = shapes[s][1];
            double *cm = malloc(sizeof(double) * (size_t)(nr * nc));
            for (int k = 0; k < nr * nc; k++)
                cm[k] = rep & 1 ? (double)vlm_rng_below(&rng, 5) : vlm_rng_uniform_d(&rng) * 10 - 3;
            double total = 0;
            vlm_status st = vlm_det_hungarian(cm, nr, nc, a, &total, &err);
            double ref = subset_dp(cm, nr, nc);
            if (st != VLM_OK || !assignment_ok(a, nr, nc) || fabs(total - ref) > 1e-9 * fmax(1, fabs(ref))) {
                tall_bad++;
                CHECK(0, "hungarian %dx%d: total %.12g, subset DP %.12g", nr, nc, total, ref);
            }
            tall++;
            free(cm);
        }
    CHECK(tall_bad == 0, "hungarian: %d tall cases wrong", tall_bad);
    printf("  hungarian vs subset DP: %d matrices up to 144x10\n", tall);

    // Fixed cases.
    double one = 3.25, tot = 0;
    CHECK(vlm_det_hungarian(&one, 1, 1, a, &tot, &err) == VLM_OK && a[0] == 0 && tot == 3.25, "1x1");
    CHECK(vlm_det_hungarian(NULL, 5, 0, NULL, &tot, &err) == VLM_OK && tot == 0, "0 columns");
    // Unique optimum on a 4x3 matrix: col0->row2, col1->row0, col2->row3.
    const double m43[12] = {5, 1, 9, 8, 7, 6, 1, 8, 9, 9, 9, 2};
    CHECK(vlm_det_hungarian(m43, 4, 3, a, &tot, &err) == VLM_OK && a[0] == 2 && a[1] == 0 && a[2] == 3 && tot == 4,
          "4x3 fixed: %d %d %d total %g", a[0], a[1], a[2], tot);
    // All ties: deterministic, lowest rows in order.
    const double eq[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(vlm_det_hungarian(eq, 3, 3, a, &tot, &err) == VLM_OK && assignment_ok(a, 3, 3) && tot == 3, "3x3 ties");
    const double wide[6] = {1, 2, 3, 4, 5, 6};
    CHECK(vlm_det_hungarian(wide, 2, 3, a, &tot, &err) == VLM_ERR_SHAPE && strstr(err.msg, "2 x 3"),
          "n_cols > n_rows must fail: %s", err.msg);
    double nanm[4] = {1, NAN, 2, 3}, infm[4] = {1, 2, INFINITY, 3};
    CHECK(vlm_det_hungarian(nanm, 2, 2, a, &tot, &err) == VLM_ERR_NUMERIC, "NaN cost must fail");
    CHECK(vlm_det_hungarian(infm, 2, 2, a, &tot, &err) == VLM_ERR_NUMERIC, "Inf cost must fail");
}

// ---- (b) boxes -------------------------------------------------------------------------
static void test_boxes(void) {
    const float a[4] = {0.5f, 0.5f, 1.0f, 1.0f}; // xyxy (0, 0, 1, 1)
    double xy[4];
    vlm_box_cxcywh_to_xyxy(a, xy);
    CHECK(xy[0] == 0 && xy[1] == 0 && xy[2] == 1 && xy[3] == 1, "cxcywh -> xyxy: %g %g %g %g", xy[0], xy[1], xy[2], xy[3]);
    CHECK(fabs(vlm_box_iou_cxcywh(a, a) - 1) < 1e-12 && fabs(vlm_box_giou_cxcywh(a, a) - 1) < 1e-12, "identical boxes");
    // Disjoint: (0,0,1,1) and (2,0,3,1): IoU 0, union 2, hull 3 -> GIoU -1/3.
    const double d0[4] = {0, 0, 1, 1}, d1[4] = {2, 0, 3, 1};
    CHECK(vlm_box_iou_xyxy(d0, d1) == 0 && fabs(vlm_box_giou_xyxy(d0, d1) + 1.0 / 3) < 1e-12, "disjoint: giou %g",
          vlm_box_giou_xyxy(d0, d1));
    // Far apart: GIoU -> -1.
    const double f0[4] = {0, 0, 0.1, 0.1}, f1[4] = {0.9, 0.9, 1, 1};
    CHECK(fabs(vlm_box_giou_xyxy(f0, f1) - (0.02 / 1.0 - 1)) < 1e-12, "far apart: giou %g", vlm_box_giou_xyxy(f0, f1));
    // Nested: (0,0,2,2) contains (0.5,0.5,1.5,1.5): IoU 1/4 = GIoU.
    const double n0[4] = {0, 0, 2, 2}, n1[4] = {0.5, 0.5, 1.5, 1.5};
    CHECK(fabs(vlm_box_iou_xyxy(n0, n1) - 0.25) < 1e-12 && fabs(vlm_box_giou_xyxy(n1, n0) - 0.25) < 1e-12, "nested");
    // Partial: (0,0,2,2) and (1,1,3,3): I 1, U 7, hull 9 -> GIoU 1/7 - 2/9.
    const double p0[4] = {0, 0, 2, 2}, p1[4] = {1, 1, 3, 3};
    CHECK(fabs(vlm_box_iou_xyxy(p0, p1) - 1.0 / 7) < 1e-12 && fabs(vlm_box_giou_xyxy(p0, p1) - (1.0 / 7 - 2.0 / 9)) < 1e-12,
          "partial overlap");
    // Touching edges: I 0, GIoU 0 (hull = union).
    const double t1[4] = {1, 0, 2, 1};
    CHECK(vlm_box_giou_xyxy(d0, t1) == 0, "touching: %g", vlm_box_giou_xyxy(d0, t1));
    // Same in cxcywh, symmetric.
    const float q0[4] = {1, 1, 2, 2}, q1[4] = {2, 2, 2, 2};
    CHECK(fabs(vlm_box_giou_cxcywh(q0, q1) - (1.0 / 7 - 2.0 / 9)) < 1e-12 && vlm_box_giou_cxcywh(q0, q1) == vlm_box_giou_cxcywh(q1, q0),
          "cxcywh partial");
    // Degenerate: zero-area boxes give finite values.
    const float z[4] = {0.5f, 0.5f, 0, 0};
    CHECK(vlm_box_iou_cxcywh(z, z) == 0 && vlm_box_giou_cxcywh(z, z) == 0, "zero-size boxes");
}

// ---- (c, d) finite differences -----------------------------------------------------------
enum { M_FOCAL, M_L1, M_GIOU, M_TOTAL };

typedef struct {
    int B, N, Q;
    float *logits, *boxes;    // [B, N, Q], [B, N, 4]
    uint8_t *qvalid;          // [B, Q]
    uint8_t *target;          // [B, N, Q] (focal op)
    int64_t *idx;             // pairs (box ops)
    float *gt;                // [k, 4]
    int64_t k;
    vlm_det_target *tg;       // [B] (total)
    int32_t *match;           // expected matching (total)
    float alpha, gamma, norm;
} scene;

// Loss of the scene in mode `mode`; with gl / gb non-NULL the analytic
// gradients are written there. Returns NAN on failure.
static double eval(const scene *s, int mode, float *gl, float *gb, vlm_det_stats *stats) {
    vlm_ctx_reset(&C);
    C.grad_enabled = gl || gb;
    int64_t sl[3] = {s->B, s->N, s->Q}, sb[3] = {s->B, s->N, 4};
    if (gl) memset(gl, 0, sizeof(float) * (size_t)(s->B * s->N * s->Q));
    if (gb) memset(gb, 0, sizeof(float) * (size_t)(s->B * s->N * 4));
    vlm_tensor *lt = vlm_tensor_wrap(&C, VLM_F32, 3, sl, s->logits, gl);
    vlm_tensor *bt = vlm_tensor_wrap(&C, VLM_F32, 3, sb, s->boxes, gb);
    vlm_tensor *y = NULL;
    if (mode == M_FOCAL) y = vlm_op_sigmoid_focal(&C, lt, s->target, s->qvalid, s->alpha, s->gamma, s->norm);
    if (mode == M_L1) y = vlm_op_box_l1(&C, bt, s->idx, s->gt, s->k, s->norm);
    if (mode == M_GIOU) y = vlm_op_box_giou_loss(&C, bt, s->idx, s->gt, s->k, s->norm);
    if (mode == M_TOTAL) {
        vlm_det_cfg cfg;
        vlm_det_cfg_default(&cfg);
        y = vlm_loss_detection(&C, lt, bt, s->qvalid, s->tg, &cfg, stats);
        // The matching must not move under the perturbations.
        int64_t off = 0;
        for (int b = 0; b < s->B && y; b++) {
            int32_t m[16];
            vlm_error err;
            if (vlm_det_match(s->logits + b * s->N * s->Q, s->boxes + b * s->N * 4, s->N, s->Q, &s->tg[b], &cfg, m, NULL,
                              &err) != VLM_OK)
                return NAN;
            for (int j = 0; j < s->tg[b].n; j++)
                if (m[j] != s->match[off + j]) {
                    fprintf(stderr, "matching moved: image %d box %d -> token %d, expected %d\n", b, j, m[j], s->match[off + j]);
                    return NAN;
                }
            off += s->tg[b].n;
        }
    }
    if (!y) {
        fprintf(stderr, "eval mode %d failed: %s\n", mode, C.err.msg);
        return NAN;
    }
    if ((gl || gb) && vlm_backward(&C, y) != VLM_OK) {
        fprintf(stderr, "backward failed: %s\n", C.err.msg);
        return NAN;
    }
    return vlm_f32(y)[0];
}

// Central differences on every element of x (n floats) against the analytic gradient.
static void fd_check(const char *name, const scene *s, int mode, float *x, int64_t n, const float *an, float h, double tol) {
    double max_err = 0, max_g = tu_max_abs(an, n);
    int64_t worst = -1;
    for (int64_t i = 0; i < n; i++) {
        float save = x[i];
        x[i] = save + h;
        double lp = eval(s, mode, NULL, NULL, NULL);
        x[i] = save - h;
        double lm = eval(s, mode, NULL, NULL, NULL);
        x[i] = save;
        double fd = (lp - lm) / (2.0 * (double)h);
        double e = fabs(fd - an[i]);
        if (!(e <= max_err)) max_err = e, worst = i;
    }
    double rel = max_err / fmax(max_g, 1e-3);
    CHECK(max_g > 1e-4, "%s: analytic gradient is all zero", name);
    CHECK(rel < tol, "%s: max |fd - analytic| = %.3g at %lld (rel %.3g, max grad %.3g)", name, max_err, (long long)worst, rel,
          max_g);
    printf("  %-28s fd ok (rel err %.2e, max grad %.3g)\n", name, rel, max_g);
}

static float urand(vlm_rng *r, float lo, float hi) { return lo + (hi - lo) * vlm_rng_uniform(r); }

// A GT box near pred p with every coordinate and edge at least `gap` away
// from p's (no kinks of |.|, min, max within the FD step); `shrink` makes it
// contain or be contained.
static void near_box(vlm_rng *r, const float *p, float *g, float lo, float hi, float gap) {
    for (;;) {
        for (int q = 0; q < 4; q++) {
            float d = urand(r, lo, hi);
            g[q] = p[q] + (vlm_rng_below(r, 2) ? d : -d);
        }
        int ok = g[2] > 0.02f && g[3] > 0.02f;
        for (int q = 0; q < 4; q++) ok = ok && fabsf(g[q] - p[q]) > gap;
        double a[4], b[4];
        vlm_box_cxcywh_to_xyxy(p, a);
        vlm_box_cxcywh_to_xyxy(g, b);
        for (int q = 0; q < 4; q++) ok = ok && fabs(a[q] - b[q]) > gap;
        if (ok) return;
    }
}

static void test_gradients(void) {
    vlm_rng rng;
    vlm_rng_init(&rng, 11, 2, 0);
    enum { B = 3, N = 6, Q = 3 };
    float logits[B * N * Q], boxes[B * N * 4], gl[B * N * Q], gb[B * N * 4];
    uint8_t qvalid[B * Q], target[B * N * Q];
    for (int i = 0; i < B * N * Q; i++) logits[i] = urand(&rng, -3, 0.5f);
    for (int i = 0; i < B * N; i++) {
        boxes[4 * i] = urand(&rng, 0.2f, 0.8f);
        boxes[4 * i + 1] = urand(&rng, 0.2f, 0.8f);
        boxes[4 * i + 2] = urand(&rng, 0.1f, 0.35f);
        boxes[4 * i + 3] = urand(&rng, 0.1f, 0.35f);
    }
    memset(qvalid, 1, sizeof qvalid);
    qvalid[1 * Q + 2] = 0; // image 1: query 2 is padding
    qvalid[2 * Q + 1] = 0; // image 2: query 1 is padding
    for (int i = 0; i < B * N * Q; i++) target[i] = vlm_rng_below(&rng, 4) == 0;

    // Ground truth: image 0 two boxes, image 1 one box, image 2 none.
    // Matched tokens get a high logit at their query and a GT box near their own box.
    static const int tok[3] = {4, 1, 3}, img[3] = {0, 0, 1};
    static const int32_t query[3] = {0, 2, 1};
    float gtb[3 * 4];
    int64_t idx[3];
    for (int j = 0; j < 3; j++) {
        int b = img[j];
        logits[(b * N + tok[j]) * Q + query[j]] = 1.5f + 0.2f * (float)j;
        near_box(&rng, boxes + 4 * (b * N + tok[j]), gtb + 4 * j, 0.01f, 0.04f, 0.006f);
        idx[j] = b * N + tok[j];
    }
    // Pair 0 of the box-op scene is made disjoint from its GT, pair 1 nested inside it.
    float gt_ops[3 * 4];
    memcpy(gt_ops, gtb, sizeof gt_ops);
    gt_ops[0] = boxes[4 * idx[0]] + boxes[4 * idx[0] + 2] / 2 + 0.08f; // to the right, a clear gap
    gt_ops[2] = 0.05f;
    memcpy(gt_ops + 4, boxes + 4 * idx[1], 4 * sizeof(float));
    gt_ops[4 + 2] += 0.06f; // GT contains the prediction, centres 0.01 apart
    gt_ops[4 + 3] += 0.05f;
    gt_ops[4 + 0] += 0.01f;
    gt_ops[4 + 1] += 0.012f;
    vlm_det_target tg[B] = {{2, gtb, query}, {1, gtb + 8, query + 2}, {0, NULL, NULL}};
    int32_t match[3] = {tok[0], tok[1], tok[2]};

    scene s = {B, N, Q, logits, boxes, qvalid, target, idx, gt_ops, 3, tg, match, 0.3f, 2.0f, 2.5f};
    double v;

    // Focal op (gamma 2, then gamma 1.5 and gamma 0 = weighted BCE).
    v = eval(&s, M_FOCAL, gl, NULL, NULL);
    CHECK(isfinite(v), "focal forward");
    fd_check("sigmoid_focal (g=2) logits", &s, M_FOCAL, logits, B * N * Q, gl, 1e-2f, 2e-3);
    int pad_zero = 1;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int q = 0; q < Q; q++)
                if (!qvalid[b * Q + q] && gl[(b * N + n) * Q + q] != 0) pad_zero = 0;
    CHECK(pad_zero, "focal: padded queries must get exactly zero gradient");
    s.gamma = 1.5f;
    s.alpha = 0.25f;
    eval(&s, M_FOCAL, gl, NULL, NULL);
    fd_check("sigmoid_focal (g=1.5) logits", &s, M_FOCAL, logits, B * N * Q, gl, 1e-2f, 2e-3);
    s.gamma = 0;
    s.alpha = 0.5f;
    v = eval(&s, M_FOCAL, gl, NULL, NULL);
    { // gamma 0, alpha 0.5: half the summed BCE
        double ref = 0;
        for (int i = 0; i < B * N * Q; i++) {
            if (!qvalid[(i / (N * Q)) * Q + i % Q]) continue;
            double x = logits[i], p = 1 / (1 + exp(-x));
            ref += 0.5 * -(target[i] ? log(p) : log(1 - p));
        }
        CHECK(fabs(v - ref / 2.5) < 1e-5 * fmax(1, ref), "focal gamma 0 = BCE / 2: %g vs %g", v, ref / 2.5);
    }
    fd_check("sigmoid_focal (g=0) logits", &s, M_FOCAL, logits, B * N * Q, gl, 1e-2f, 2e-3);
    s.alpha = 0.3f;
    s.gamma = 2.0f;

    // Box ops.
    v = eval(&s, M_L1, NULL, gb, NULL);
    CHECK(isfinite(v), "l1 forward");
    fd_check("box_l1 boxes", &s, M_L1, boxes, B * N * 4, gb, 1e-3f, 2e-3);
    v = eval(&s, M_GIOU, NULL, gb, NULL);
    {
        double ref = 0;
        for (int j = 0; j < 3; j++) ref += 1 - vlm_box_giou_cxcywh(boxes + 4 * idx[j], gt_ops + 4 * j);
        CHECK(fabs(v - ref / 2.5) < 1e-6, "giou loss value %g vs %g", v, ref / 2.5);
        CHECK(vlm_box_iou_cxcywh(boxes + 4 * idx[0], gt_ops) == 0, "giou scene: pair 0 must be disjoint");
    }
    fd_check("box_giou_loss boxes", &s, M_GIOU, boxes, B * N * 4, gb, 1e-3f, 2e-3);

    // Whole loss, matching fixed by construction (checked on every evaluation).
    s.gt = gtb;
    vlm_det_stats st;
    v = eval(&s, M_TOTAL, gl, gb, &st);
    CHECK(isfinite(v) && st.num_boxes == 3, "total forward: %g, %d boxes", v, st.num_boxes);
    CHECK(fabs(st.total - (2 * st.focal + 5 * st.l1 + 2 * st.giou)) < 1e-5 * fmax(1, st.total) && st.total == (float)v,
          "total = 2 focal + 5 l1 + 2 giou: %g vs %g %g %g", st.total, st.focal, st.l1, st.giou);
    printf("  detection loss: total %.5f = 2 x focal %.5f + 5 x l1 %.5f + 2 x giou %.5f\n", st.total, st.focal, st.l1, st.giou);
    fd_check("detection loss logits", &s, M_TOTAL, logits, B * N * Q, gl, 1e-2f, 2e-3);
    eval(&s, M_TOTAL, gl, gb, NULL);
    fd_check("detection loss boxes", &s, M_TOTAL, boxes, B * N * 4, gb, 1e-3f, 2e-3);

    // (d) padded queries: zero gradient, and their logits do not change the loss.
    eval(&s, M_TOTAL, gl, gb, NULL);
    pad_zero = 1;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int q = 0; q < Q; q++)
                if (!qvalid[b * Q + q] && gl[(b * N + n) * Q + q] != 0) pad_zero = 0;
    CHECK(pad_zero, "detection loss: padded queries must get exactly zero gradient");
    double base = eval(&s, M_TOTAL, NULL, NULL, NULL);
    for (int n = 0; n < N; n++) logits[(1 * N + n) * Q + 2] = n & 1 ? 1e4f : NAN;
    double moved = eval(&s, M_TOTAL, NULL, NULL, NULL);
    CHECK(moved == base, "padded query logits changed the loss: %.9g vs %.9g", moved, base);
    for (int n = 0; n < N; n++) logits[(1 * N + n) * Q + 2] = 0;

    // An image without boxes still trains its focal negatives; a batch without any box is normalised by 1.
    vlm_det_target none[B] = {{0, NULL, NULL}, {0, NULL, NULL}, {0, NULL, NULL}};
    s.tg = none;
    v = eval(&s, M_TOTAL, gl, gb, &st);
    CHECK(isfinite(v) && st.num_boxes == 0 && st.l1 == 0 && st.giou == 0 && tu_max_abs(gb, B * N * 4) == 0 &&
              tu_max_abs(gl, B * N * Q) > 0,
          "no boxes: loss %g, l1 %g, giou %g", v, st.l1, st.giou);
    s.tg = tg;
}

// ---- (e) bad inputs -----------------------------------------------------------------------
static void expect_fail(const char *what, vlm_tensor *y, vlm_status want) {
    CHECK(y == NULL && C.status == want && C.err.msg[0], "%s: expected %s, got %s (%s)", what, vlm_status_name(want),
          vlm_status_name(C.status), C.err.msg);
    if (y == NULL && C.status == want) printf("  rejects %-32s %s\n", what, C.err.msg);
}

static void test_bad_inputs(void) {
    enum { B = 2, N = 4, Q = 3 };
    float logits[B * N * Q], boxes[B * N * 4];
    for (int i = 0; i < B * N * Q; i++) logits[i] = 0.1f * (float)(i % 7) - 0.3f;
    for (int i = 0; i < B * N; i++) {
        boxes[4 * i] = 0.3f + 0.05f * (float)(i % 5);
        boxes[4 * i + 1] = 0.4f;
        boxes[4 * i + 2] = 0.2f;
        boxes[4 * i + 3] = 0.25f;
    }
    float gtb[8] = {0.3f, 0.4f, 0.2f, 0.2f, 0.6f, 0.5f, 0.1f, 0.3f};
    int32_t q_ok[2] = {0, 2}, q_big[2] = {0, 3}, q_neg[1] = {-1};
    uint8_t qv[B * Q] = {1, 1, 1, 1, 1, 0};
    int64_t sl[3] = {B, N, Q}, sb[3] = {B, N, 4}, sb3[3] = {B, N, 3}, sbn[3] = {B, N + 1, 4}, s2[2] = {B * N, Q};
    vlm_det_target tg[B] = {{2, gtb, q_ok}, {1, gtb + 4, q_ok}};
#define RUN(what, want, expr)                                         \
    do {                                                              \
        vlm_ctx_reset(&C);                                            \
        C.grad_enabled = 1;                                           \
        vlm_tensor *L = vlm_tensor_wrap(&C, VLM_F32, 3, sl, logits, NULL); \
        vlm_tensor *Bx = vlm_tensor_wrap(&C, VLM_F32, 3, sb, boxes, NULL); \
        (void)L, (void)Bx;                                            \
        expect_fail(what, (expr), want);                              \
    } while (0)
    float big[B * (N + 1) * 4];
    memset(big, 0, sizeof big);
    RUN("boxes [B, N, 3]", VLM_ERR_SHAPE, vlm_loss_detection(&C, L, vlm_tensor_wrap(&C, VLM_F32, 3, sb3, boxes, NULL), qv, tg, NULL, NULL));
    RUN("boxes with another N", VLM_ERR_SHAPE, vlm_loss_detection(&C, L, vlm_tensor_wrap(&C, VLM_F32, 3, sbn, big, NULL), qv, tg, NULL, NULL));
    RUN("2-D logits", VLM_ERR_SHAPE, vlm_loss_detection(&C, vlm_tensor_wrap(&C, VLM_F32, 2, s2, logits, NULL), Bx, qv, tg, NULL, NULL));
    RUN("NULL logits", VLM_ERR_ARG, vlm_loss_detection(&C, NULL, Bx, qv, tg, NULL, NULL));
    RUN("NULL targets", VLM_ERR_ARG, vlm_loss_detection(&C, L, Bx, qv, NULL, NULL, NULL));
    vlm_det_target t_big[B] = {{2, gtb, q_big}, {0, NULL, NULL}};
    RUN("query index out of range", VLM_ERR_ARG, vlm_loss_detection(&C, L, Bx, qv, t_big, NULL, NULL));
    vlm_det_target t_neg[B] = {{1, gtb, q_neg}, {0, NULL, NULL}};
    RUN("negative query index", VLM_ERR_ARG, vlm_loss_detection(&C, L, Bx, qv, t_neg, NULL, NULL));
    vlm_det_target t_pad[B] = {{0, NULL, NULL}, {2, gtb, q_ok}}; // image 1's query 2 is padding
    RUN("GT on a padded query", VLM_ERR_ARG, vlm_loss_detection(&C, L, Bx, qv, t_pad, NULL, NULL));
    float many[4 * 5];
    int32_t qmany[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < 20; i++) many[i] = 0.2f;
    vlm_det_target t_many[B] = {{5, many, qmany}, {0, NULL, NULL}};
    RUN("more GT boxes than tokens", VLM_ERR_ARG, vlm_loss_detection(&C, L, Bx, qv, t_many, NULL, NULL));
    vlm_det_target t_null[B] = {{1, NULL, q_ok}, {0, NULL, NULL}};
    RUN("GT count with NULL arrays", VLM_ERR_ARG, vlm_loss_detection(&C, L, Bx, qv, t_null, NULL, NULL));
    float gnan[4] = {0.3f, NAN, 0.2f, 0.2f}, gneg[4] = {0.3f, 0.3f, -0.1f, 0.2f};
    vlm_det_target t_gnan[B] = {{1, gnan, q_ok}, {0, NULL, NULL}}, t_gneg[B] = {{1, gneg, q_ok}, {0, NULL, NULL}};
    RUN("NaN GT box", VLM_ERR_NUMERIC, vlm_loss_detection(&C, L, Bx, qv, t_gnan, NULL, NULL));
    RUN("negative GT width", VLM_ERR_NUMERIC, vlm_loss_detection(&C, L, Bx, qv, t_gneg, NULL, NULL));
    logits[2 * Q + 0] = NAN; // token 2, query 0 of image 0
    RUN("NaN logit", VLM_ERR_NUMERIC, vlm_loss_detection(&C, L, Bx, qv, tg, NULL, NULL));
    logits[2 * Q + 0] = 0;
    logits[(N + 1) * Q + 1] = INFINITY; // image 1: no GT on query 1 row... still in the focal sum
    vlm_det_target t_zero[B] = {{0, NULL, NULL}, {0, NULL, NULL}};
    RUN("Inf logit (focal sum)", VLM_ERR_NUMERIC, vlm_loss_detection(&C, L, Bx, qv, t_zero, NULL, NULL));
    logits[(N + 1) * Q + 1] = 0;
    boxes[4 * 3 + 2] = NAN;
    RUN("NaN predicted box", VLM_ERR_NUMERIC, vlm_loss_detection(&C, L, Bx, qv, tg, NULL, NULL));
    boxes[4 * 3 + 2] = -0.1f;
    RUN("negative predicted width", VLM_ERR_NUMERIC, vlm_loss_detection(&C, L, Bx, qv, tg, NULL, NULL));
    boxes[4 * 3 + 2] = 0.2f;
    int64_t bad_idx[1] = {B * N};
    RUN("box_l1 index out of range", VLM_ERR_ARG, vlm_op_box_l1(&C, Bx, bad_idx, gtb, 1, 1));
    RUN("box_giou_loss norm 0", VLM_ERR_ARG, vlm_op_box_giou_loss(&C, Bx, bad_idx, gtb, 1, 0));
    RUN("sigmoid_focal 2-D", VLM_ERR_SHAPE, vlm_op_sigmoid_focal(&C, vlm_tensor_wrap(&C, VLM_F32, 2, s2, logits, NULL), NULL, NULL, 0.3f, 2, 1));
    RUN("sigmoid_focal negative gamma", VLM_ERR_ARG, vlm_op_sigmoid_focal(&C, L, NULL, NULL, 0.3f, -1, 1));
#undef RUN
    vlm_error err;
    int32_t m[4];
    CHECK(vlm_det_match(logits, boxes, N, Q, &t_many[0], NULL, m, NULL, &err) == VLM_ERR_SHAPE, "match: more GT than tokens");
    CHECK(vlm_det_match(logits, boxes, N, Q, &t_big[0], NULL, m, NULL, &err) == VLM_ERR_ARG, "match: query out of range");
    // A valid call still works after all of that.
    vlm_ctx_reset(&C);
    vlm_tensor *L = vlm_tensor_wrap(&C, VLM_F32, 3, sl, logits, NULL), *Bx = vlm_tensor_wrap(&C, VLM_F32, 3, sb, boxes, NULL);
    vlm_tensor *y = vlm_loss_detection(&C, L, Bx, qv, tg, NULL, NULL);
    CHECK(y && isfinite(vlm_f32(y)[0]), "valid call after errors: %s", C.err.msg);
}

// ---- (f) PyTorch reference ----------------------------------------------------------------
static void test_reference(void) {
    vlm_st_file f;
    vlm_error err;
    const char *path = tu_src("tests/fixtures/detection.safetensors");
    if (vlm_st_read(&f, path, &err) != VLM_OK) {
        CHECK(0, "reading %s: %s", path, err.msg);
        return;
    }
    enum { B = 3, N = 8, Q = 4, K = 5, M0 = 3 };
    float logits[B * N * Q], boxes[B * N * 4], gt_boxes[K * 4], cost0[N * M0], grad_l[B * N * Q], grad_b[B * N * 4];
    float focal, l1, giou, total, focal2, focal2_grad[B * N * Q];
    int32_t qv32[B * Q], gt_count[B], gt_query[K], match[K];
    int64_t sl[3] = {B, N, Q}, sb[3] = {B, N, 4}, sq[2] = {B, Q}, sg[2] = {K, 4}, sk[1] = {K}, sbb[1] = {B}, sc[2] = {N, M0},
            s1[1] = {1};
    int ok = vlm_st_get(&f, "logits", VLM_F32, 3, sl, logits, &err) == VLM_OK &&
             vlm_st_get(&f, "boxes", VLM_F32, 3, sb, boxes, &err) == VLM_OK &&
             vlm_st_get(&f, "query_valid", VLM_I32, 2, sq, qv32, &err) == VLM_OK &&
             vlm_st_get(&f, "gt_count", VLM_I32, 1, sbb, gt_count, &err) == VLM_OK &&
             vlm_st_get(&f, "gt_boxes", VLM_F32, 2, sg, gt_boxes, &err) == VLM_OK &&
             vlm_st_get(&f, "gt_query", VLM_I32, 1, sk, gt_query, &err) == VLM_OK &&
             vlm_st_get(&f, "match", VLM_I32, 1, sk, match, &err) == VLM_OK &&
             vlm_st_get(&f, "cost0", VLM_F32, 2, sc, cost0, &err) == VLM_OK &&
             vlm_st_get(&f, "focal", VLM_F32, 1, s1, &focal, &err) == VLM_OK &&
             vlm_st_get(&f, "l1", VLM_F32, 1, s1, &l1, &err) == VLM_OK &&
             vlm_st_get(&f, "giou", VLM_F32, 1, s1, &giou, &err) == VLM_OK &&
             vlm_st_get(&f, "total", VLM_F32, 1, s1, &total, &err) == VLM_OK &&
             vlm_st_get(&f, "grad_logits", VLM_F32, 3, sl, grad_l, &err) == VLM_OK &&
             vlm_st_get(&f, "grad_boxes", VLM_F32, 3, sb, grad_b, &err) == VLM_OK &&
             vlm_st_get(&f, "focal_g15", VLM_F32, 1, s1, &focal2, &err) == VLM_OK &&
             vlm_st_get(&f, "focal_g15_grad", VLM_F32, 3, sl, focal2_grad, &err) == VLM_OK;
    vlm_st_free(&f);
    CHECK(ok, "fixture: %s", err.msg);
    if (!ok) return;
    uint8_t qv[B * Q];
    for (int i = 0; i < B * Q; i++) qv[i] = (uint8_t)qv32[i];
    vlm_det_target tg[B];
    for (int b = 0, off = 0; b < B; off += gt_count[b], b++)
        tg[b] = (vlm_det_target){gt_count[b], gt_boxes + 4 * off, gt_query + off};

    // Cost matrix and matching.
    double cost[N * M0];
    CHECK(vlm_det_cost(logits, boxes, N, Q, &tg[0], NULL, cost, &err) == VLM_OK, "cost: %s", err.msg);
    double cerr = 0, cmax = 0;
    for (int i = 0; i < N * M0; i++) cerr = fmax(cerr, fabs(cost[i] - cost0[i])), cmax = fmax(cmax, fabs(cost0[i]));
    CHECK(cerr / cmax < 1e-6, "cost matrix vs PyTorch: rel err %.3g", cerr / cmax);
    int mok = 1;
    for (int b = 0, off = 0; b < B; off += gt_count[b], b++) {
        int32_t m[8];
        CHECK(vlm_det_match(logits + b * N * Q, boxes + b * N * 4, N, Q, &tg[b], NULL, m, NULL, &err) == VLM_OK, "match: %s",
              err.msg);
        for (int j = 0; j < gt_count[b]; j++) mok = mok && m[j] == match[off + j];
    }
    CHECK(mok, "matching differs from PyTorch's brute force");

    // Loss values and gradients.
    float gl[B * N * Q], gb[B * N * 4];
    memset(gl, 0, sizeof gl);
    memset(gb, 0, sizeof gb);
    vlm_ctx_reset(&C);
    C.grad_enabled = 1;
    vlm_tensor *L = vlm_tensor_wrap(&C, VLM_F32, 3, sl, logits, gl), *Bx = vlm_tensor_wrap(&C, VLM_F32, 3, sb, boxes, gb);
    vlm_det_stats st;
    vlm_tensor *y = vlm_loss_detection(&C, L, Bx, qv, tg, NULL, &st);
    CHECK(y && vlm_backward(&C, y) == VLM_OK, "reference loss: %s", C.err.msg);
    if (!y) return;
    double e_f = fabs(st.focal - focal) / focal, e_l = fabs(st.l1 - l1) / l1, e_g = fabs(st.giou - giou) / giou,
           e_t = fabs(st.total - total) / total;
    double e_gl = tu_rel_err(gl, grad_l, B * N * Q, 1e-6), e_gb = tu_rel_err(gb, grad_b, B * N * 4, 1e-6);
    CHECK(e_f < 2e-6 && e_l < 2e-6 && e_g < 2e-6 && e_t < 2e-6, "values vs PyTorch: focal %.2e l1 %.2e giou %.2e total %.2e",
          e_f, e_l, e_g, e_t);
    CHECK(e_gl < 1e-5 && e_gb < 1e-5, "gradients vs PyTorch: logits %.2e boxes %.2e", e_gl, e_gb);
    printf("  vs PyTorch: cost %.1e, focal %.1e, l1 %.1e, giou %.1e, total %.1e, d logits %.1e, d boxes %.1e (rel)\n",
           cerr / cmax, e_f, e_l, e_g, e_t, e_gl, e_gb);

    // The focal op alone with alpha 0.25, gamma 1.5, norm 2.5 on the matched targets.
    uint8_t tgt[B * N * Q];
    memset(tgt, 0, sizeof tgt);
    for (int b = 0, off = 0; b < B; off += gt_count[b], b++)
        for (int j = 0; j < gt_count[b]; j++) tgt[(b * N + match[off + j]) * Q + gt_query[off + j]] = 1;
    memset(gl, 0, sizeof gl);
    vlm_ctx_reset(&C);
    L = vlm_tensor_wrap(&C, VLM_F32, 3, sl, logits, gl);
    y = vlm_op_sigmoid_focal(&C, L, tgt, qv, 0.25f, 1.5f, 2.5f);
    CHECK(y && vlm_backward(&C, y) == VLM_OK, "focal g1.5: %s", C.err.msg);
    if (!y) return;
    double e2 = fabs(vlm_f32(y)[0] - focal2) / focal2, e2g = tu_rel_err(gl, focal2_grad, B * N * Q, 1e-6);
    CHECK(e2 < 2e-6 && e2g < 1e-5, "focal (a 0.25, g 1.5) vs PyTorch: value %.2e grad %.2e", e2, e2g);
}

// One-to-many: the loss equals the one-to-one loss on targets repeated
// min(k, N / n) times per image, and each GT box gets that many distinct tokens.
static void test_one_to_many(void) {
    enum { B = 2, N = 6, Q = 3 };
    float logits[B * N * Q], boxes[B * N * 4];
    vlm_rng rng;
    vlm_rng_init(&rng, 5, 2, 0);
    for (int i = 0; i < B * N * Q; i++) logits[i] = urand(&rng, -3, 1);
    for (int i = 0; i < B * N; i++) {
        boxes[4 * i] = urand(&rng, .2f, .8f), boxes[4 * i + 1] = urand(&rng, .2f, .8f);
        boxes[4 * i + 2] = urand(&rng, .1f, .4f), boxes[4 * i + 3] = urand(&rng, .1f, .4f);
    }
    float g0[8] = {.3f, .3f, .2f, .2f, .7f, .6f, .3f, .2f}, g1[12] = {.5f, .5f, .3f, .3f, .2f, .7f, .1f, .2f, .8f, .2f, .2f, .1f};
    int32_t q0[2] = {0, 2}, q1[3] = {1, 1, 0};
    vlm_det_target tg[B] = {{2, g0, q0}, {3, g1, q1}};
    // k = 3: image 0 repeats 3x (6 <= N), image 1 is capped at N / 3 = 2x
    float r0[24], r1[24];
    int32_t rq0[6], rq1[6];
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 3; k++) memcpy(r0 + 4 * (3 * j + k), g0 + 4 * j, 16), rq0[3 * j + k] = q0[j];
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 2; k++) memcpy(r1 + 4 * (2 * j + k), g1 + 4 * j, 16), rq1[2 * j + k] = q1[j];
    vlm_det_target rt[B] = {{6, r0, rq0}, {6, r1, rq1}};
    int64_t sl[3] = {B, N, Q}, sb[3] = {B, N, 4};
    vlm_det_cfg cfg;
    vlm_det_cfg_default(&cfg);
    vlm_det_stats s1, s3;
    vlm_ctx_reset(&C);
    C.grad_enabled = 0;
    vlm_tensor *L = vlm_tensor_wrap(&C, VLM_F32, 3, sl, logits, NULL), *Bx = vlm_tensor_wrap(&C, VLM_F32, 3, sb, boxes, NULL);
    vlm_tensor *y1 = vlm_loss_detection(&C, L, Bx, NULL, rt, &cfg, &s1);
    cfg.one_to_many = 3;
    vlm_tensor *y3 = vlm_loss_detection(&C, L, Bx, NULL, tg, &cfg, &s3);
    CHECK(y1 && y3, "one-to-many loss: %s", C.err.msg);
    if (y1 && y3) {
        CHECK(s3.num_boxes == 12 && s1.num_boxes == 12, "one-to-many: %d boxes (want 12)", s3.num_boxes);
        CHECK(vlm_f32(y1)[0] == vlm_f32(y3)[0] && s1.focal == s3.focal && s1.giou == s3.giou,
              "one-to-many %.9g != repeated targets %.9g", vlm_f32(y3)[0], vlm_f32(y1)[0]);
        CHECK(vlm_f32(y3)[0] > 0, "one-to-many loss positive");
    }
    // distinct tokens: the repeated matching of image 0 uses 6 different tokens
    int32_t m[6];
    vlm_error err;
    cfg.one_to_many = 1;
    CHECK(vlm_det_match(logits, boxes, N, Q, &rt[0], &cfg, m, NULL, &err) == VLM_OK, "match: %s", err.msg);
    int seen = 0;
    for (int j = 0; j < 6; j++) seen |= 1 << m[j];
    CHECK(seen == 63, "repeated boxes take distinct tokens (mask %x)", seen);
    cfg.one_to_many = 0;
    vlm_ctx_reset(&C);
    L = vlm_tensor_wrap(&C, VLM_F32, 3, sl, logits, NULL), Bx = vlm_tensor_wrap(&C, VLM_F32, 3, sb, boxes, NULL);
    CHECK(!vlm_loss_detection(&C, L, Bx, NULL, tg, &cfg, NULL) && C.status == VLM_ERR_ARG, "one_to_many 0 rejected");
}

int main(void) {
    vlm_error err;
    if (vlm_ctx_init(&C, 1 << 20, 1, &err)) return 1;
    test_hungarian();
    test_boxes();
    test_gradients();
    test_bad_inputs();
    test_one_to_many();
    test_reference();
    vlm_ctx_free(&C);
    return tu_done("test_detection_loss");
}
