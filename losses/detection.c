// Detection set loss: Hungarian assignment, box IoU/GIoU, matching cost, and
// the sigmoid focal / L1 / GIoU loss ops with their backward passes (see detection.h).
#include "losses/detection.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/op_ext.h"

#define OMP_MIN 16384 // below this many elements a loop runs single-threaded

int64_t vlm_det_num_targets(const vlm_det_target *targets, int64_t B, int64_t N, const vlm_det_cfg *cfg) {
    int64_t K = 0;
    for (int64_t b = 0; b < B; b++) {
        const vlm_det_target *t = &targets[b];
        int64_t r = 1;
        if (cfg->one_to_many > 1 && t->n > 0) { // as the loss repeats them
            r = N / t->n;
            if (r > cfg->one_to_many) r = cfg->one_to_many;
        }
        K += (int64_t)t->n * r;
    }
    return K;
}

void vlm_det_cfg_default(vlm_det_cfg *cfg) {
    cfg->cost_class = 2.0f;
    cfg->cost_bbox = 5.0f;
    cfg->cost_giou = 2.0f;
    cfg->loss_class = 2.0f;
    cfg->loss_bbox = 5.0f;
    cfg->loss_giou = 2.0f;
    cfg->focal_alpha = 0.3f;
    cfg->focal_gamma = 2.0f;
    cfg->one_to_many = 1;
    cfg->norm = 0;
}

// ---- Hungarian assignment ------------------------------------------------------
// The classic potentials formulation runs over the smaller side: its "rows"
// i = 1..m are our columns (GT), its "columns" j = 1..n our rows (predictions),
// a(i, j) = cost[(j-1) * m + (i-1)]. For each new row i it grows a shortest
// path tree (Dijkstra on reduced costs a - u - v) from i until it reaches a free
// column, updating the potentials so reduced costs stay >= 0, then flips the
// path. Index 0 is the virtual root.
vlm_status vlm_det_hungarian(const double *cost, int64_t n_rows, int64_t n_cols, int32_t *col_to_row, double *total,
                             vlm_error *err) {
    if (total) *total = 0;
    if (n_rows < 0 || n_cols < 0)
        return vlm_errorf(err, VLM_ERR_SHAPE, "hungarian: negative size [%lld x %lld]", (long long)n_rows,
                          (long long)n_cols);
    if (n_cols > n_rows)
        return vlm_errorf(err, VLM_ERR_SHAPE,
                          "hungarian: cost [%lld x %lld] has more columns (GT) than rows (predictions)",
                          (long long)n_rows, (long long)n_cols);
    if (n_rows > INT32_MAX - 1)
        return vlm_errorf(err, VLM_ERR_SHAPE, "hungarian: %lld rows exceed the int32 index range", (long long)n_rows);
    if (n_cols == 0) return VLM_OK;
    if (!cost || !col_to_row) return vlm_errorf(err, VLM_ERR_ARG, "hungarian: NULL cost or output");
    for (int64_t k = 0; k < n_rows * n_cols; k++)
        if (!isfinite(cost[k]))
            return vlm_errorf(err, VLM_ERR_NUMERIC, "hungarian: cost [%lld x %lld] has a non-finite value at (%lld, %lld)",
                              (long long)n_rows, (long long)n_cols, (long long)(k / n_cols), (long long)(k % n_cols));
    const int64_t m = n_cols, n = n_rows;
    double *u = malloc(sizeof(double) * (size_t)(m + 1));
    double *v = malloc(sizeof(double) * (size_t)(n + 1));
    double *minv = malloc(sizeof(double) * (size_t)(n + 1));
    int64_t *p = malloc(sizeof(int64_t) * (size_t)(n + 1));   // p[j]: row (1..m) holding column j, 0 = free
    int64_t *way = malloc(sizeof(int64_t) * (size_t)(n + 1)); // predecessor column on the path
    char *used = malloc((size_t)(n + 1));
    if (!u || !v || !minv || !p || !way || !used) {
        free(u), free(v), free(minv), free(p), free(way), free(used);
        return vlm_errorf(err, VLM_ERR_OOM, "hungarian: out of memory for [%lld x %lld]", (long long)n_rows,
                          (long long)n_cols);
    }
    for (int64_t i = 0; i <= m; i++) u[i] = 0;
    for (int64_t j = 0; j <= n; j++) v[j] = 0, p[j] = 0, way[j] = 0;
    for (int64_t i = 1; i <= m; i++) {
        p[0] = i;
        int64_t j0 = 0;
        for (int64_t j = 0; j <= n; j++) minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            int64_t i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            const double *row = cost + (i0 - 1); // a(i0, j) = row[(j-1) * m]
            for (int64_t j = 1; j <= n; j++) {
                if (used[j]) continue;
                double cur = row[(j - 1) * m] - u[i0] - v[j];
                if (cur < minv[j]) {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if (minv[j] < delta) { // strict: the lowest j (prediction row) wins ties
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (int64_t j = 0; j <= n; j++) {
                if (used[j]) {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else
                    minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do { // flip the augmenting path
            int64_t j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    double sum = 0;
    for (int64_t j = 1; j <= n; j++)
        if (p[j]) col_to_row[p[j] - 1] = (int32_t)(j - 1);
    for (int64_t c = 0; c < m; c++) sum += cost[(int64_t)col_to_row[c] * m + c];
    if (total) *total = sum;
    free(u), free(v), free(minv), free(p), free(way), free(used);
    return VLM_OK;
}


static int box_ok(const float *b) {
    for (int k = 0; k < 4; k++)
        if (!isfinite(b[k])) return 0;
    return b[2] >= 0 && b[3] >= 0;
}

// ---- matching ------------------------------------------------------------------
// Stable softplus(x) = log(1 + e^x) = -log sigmoid(-x).
static inline double softplus_d(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

vlm_status vlm_det_cost(const float *logits, const float *boxes, int64_t N, int64_t Q, const vlm_det_target *t,
                        const vlm_det_cfg *cfg, double *cost, vlm_error *err) {
    vlm_det_cfg dflt;
    if (!cfg) {
        vlm_det_cfg_default(&dflt);
        cfg = &dflt;
    }
    if (!t || t->n < 0 || (t->n > 0 && (!t->boxes || !t->query)))
        return vlm_errorf(err, VLM_ERR_ARG, "detection cost: missing or negative ground truth");
    const int64_t M = t->n;
    if (N < 0 || Q < 0) return vlm_errorf(err, VLM_ERR_SHAPE, "detection cost: negative size N=%lld Q=%lld", (long long)N, (long long)Q);
    for (int64_t j = 0; j < M; j++) {
        if (t->query[j] < 0 || t->query[j] >= Q)
            return vlm_errorf(err, VLM_ERR_ARG, "detection cost: GT box %lld has query %d outside [0, %lld)", (long long)j,
                              t->query[j], (long long)Q);
        if (!box_ok(t->boxes + 4 * j))
            return vlm_errorf(err, VLM_ERR_NUMERIC,
                              "detection cost: GT box %lld (%g, %g, %g, %g) is non-finite or has negative size",
                              (long long)j, t->boxes[4 * j], t->boxes[4 * j + 1], t->boxes[4 * j + 2],
                              t->boxes[4 * j + 3]);
    }
    if (M == 0 || N == 0) return VLM_OK;
    const double alpha = cfg->focal_alpha, gamma = cfg->focal_gamma;
    for (int64_t n = 0; n < N; n++) {
        const float *pb = boxes + 4 * n;
        if (!box_ok(pb))
            return vlm_errorf(err, VLM_ERR_NUMERIC,
                              "detection cost: predicted box %lld (%g, %g, %g, %g) is non-finite or has negative size",
                              (long long)n, pb[0], pb[1], pb[2], pb[3]);
        double pxy[4];
        vlm_box_cxcywh_to_xyxy(pb, pxy);
        for (int64_t j = 0; j < M; j++) {
            const float *gb = t->boxes + 4 * j;
            double x = logits[n * Q + t->query[j]];
            if (!isfinite(x))
                return vlm_errorf(err, VLM_ERR_NUMERIC, "detection cost: logit [%lld, %d] is %g", (long long)n,
                                  t->query[j], x);
            // p = sigmoid(x); -log p = softplus(-x), -log(1-p) = softplus(x)
            double p = 1.0 / (1.0 + exp(-x)), q = 1.0 / (1.0 + exp(x));
            double pos = alpha * pow(q, gamma) * softplus_d(-x), neg = (1.0 - alpha) * pow(p, gamma) * softplus_d(x);
            double l1 = 0;
            for (int k = 0; k < 4; k++) l1 += fabs((double)pb[k] - (double)gb[k]);
            double gxy[4];
            vlm_box_cxcywh_to_xyxy(gb, gxy);
            double giou = vlm_box_giou_xyxy_grad(pxy, gxy, NULL, NULL, 0);
            cost[n * M + j] = cfg->cost_class * (pos - neg) + cfg->cost_bbox * l1 - cfg->cost_giou * giou;
        }
    }
    return VLM_OK;
}

vlm_status vlm_det_match(const float *logits, const float *boxes, int64_t N, int64_t Q, const vlm_det_target *t,
                         const vlm_det_cfg *cfg, int32_t *match, double *total_cost, vlm_error *err) {
    if (total_cost) *total_cost = 0;
    if (!t || t->n < 0) return vlm_errorf(err, VLM_ERR_ARG, "detection match: missing or negative ground truth");
    if (t->n > N)
        return vlm_errorf(err, VLM_ERR_SHAPE, "detection match: %d GT boxes but only %lld predictions", t->n,
                          (long long)N);
    if (t->n == 0) return VLM_OK;
    double *cost = malloc(sizeof(double) * (size_t)(N * t->n));
    if (!cost) return vlm_errorf(err, VLM_ERR_OOM, "detection match: out of memory for a [%lld x %d] cost", (long long)N, t->n);
    vlm_status st = vlm_det_cost(logits, boxes, N, Q, t, cfg, cost, err);
    if (st == VLM_OK) st = vlm_det_hungarian(cost, N, t->n, match, total_cost, err);
    free(cost);
    return st;
}

// ---- sigmoid focal loss -------------------------------------------------------------
// Per element: L = alpha_t (1 - p_t)^gamma BCE(x, t) and dL/dx, with
//   t = 1: L = a q^g sp(-x),      dL/dx = a q^g (-g p sp(-x) - q)
//   t = 0: L = (1-a) p^g sp(x),   dL/dx = (1-a) p^g (g q sp(x) + p)
// where p = sigmoid(x), q = 1 - p = sigmoid(-x), sp = softplus.
static inline float fpow(float x, float g) { return g == 2.0f ? x * x : (g == 1.0f ? x : powf(x, g)); }
static inline float focal_elem(float x, int t, float alpha, float gamma, float *dldx) {
    float e = expf(-fabsf(x)), l1pe = log1pf(e), inv = 1.0f / (1.0f + e);
    float p = x >= 0 ? inv : e * inv, q = x >= 0 ? e * inv : inv;
    float sp_pos = (x > 0 ? x : 0) + l1pe, sp_neg = (x < 0 ? -x : 0) + l1pe;
    if (t) {
        float w = alpha * fpow(q, gamma);
        *dldx = w * (-gamma * p * sp_neg - q);
        return w * sp_neg;
    }
    float w = (1.0f - alpha) * fpow(p, gamma);
    *dldx = w * (gamma * q * sp_pos + p);
    return w * sp_pos;
}

static void focal_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0];
    const float *d = n->saved; // dL/dx / norm, 0 at padded queries
    float g = n->out->grad[0];
    int64_t N = vlm_numel(x);
    (void)c;
#pragma omp parallel for schedule(static) if (N >= OMP_MIN)
    for (int64_t i = 0; i < N; i++) x->grad[i] += g * d[i];
}

vlm_tensor *vlm_op_sigmoid_focal(vlm_ctx *c, vlm_tensor *x, const uint8_t *target, const uint8_t *query_valid,
                                 float alpha, float gamma, float norm) {
    if (!vlm_check_f32(c, "sigmoid_focal", x, "logits")) return NULL;
    char s1[96];
    if (x->ndim != 3)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "sigmoid_focal: logits %s must be [B, N, Q]", vlm_shape_str(x, s1, sizeof s1));
    if (!(norm > 0) || !isfinite(norm) || !isfinite(alpha) || !(gamma >= 0) || !isfinite(gamma))
        return vlm_ctx_fail(c, VLM_ERR_ARG, "sigmoid_focal: bad alpha %g, gamma %g or norm %g", alpha, gamma, norm);
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    const int64_t B = x->shape[0], N = x->shape[1], Q = x->shape[2], rows = B * N, one = 1;
    int g = vlm_needs_grad(c, x, NULL, NULL);
    vlm_tensor *y = vlm_out(c, 1, &one, g);
    double *row_loss = vlm_arena_alloc(&c->arena, sizeof(double) * (size_t)(rows ? rows : 1));
    float *d = g ? vlm_scratch(c, rows * Q) : NULL;
    if (!y || !row_loss || (g && !d)) return vlm_ctx_fail(c, VLM_ERR_OOM, "sigmoid_focal: arena out of memory");
    const float *xd = vlm_f32(x), inv = 1.0f / norm;
    // Per-row sums in parallel, then a fixed-order total: deterministic.
#pragma omp parallel for schedule(static) if (rows * Q >= OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *qv = query_valid ? query_valid + (r / N) * Q : NULL;
        const uint8_t *tr = target ? target + r * Q : NULL;
        double acc = 0;
        for (int64_t k = 0; k < Q; k++) {
            float dl = 0;
            if (!qv || qv[k]) acc += focal_elem(xd[r * Q + k], tr && tr[k], alpha, gamma, &dl);
            if (d) d[r * Q + k] = dl * inv;
        }
        row_loss[r] = acc;
    }
    double total = 0;
    for (int64_t r = 0; r < rows; r++) total += row_loss[r];
    total /= norm;
    if (!isfinite(total))
        return vlm_ctx_fail(c, VLM_ERR_NUMERIC, "sigmoid_focal: loss over logits %s is %g (non-finite logits?)",
                            vlm_shape_str(x, s1, sizeof s1), total);
    vlm_f32(y)[0] = (float)total;
    if (g) {
        vlm_node *nd = vlm_record(c, "sigmoid_focal", y, focal_backward, x, NULL, NULL, NULL);
        if (nd) nd->saved = d;
    }
    return y;
}

// ---- box losses on matched pairs ------------------------------------------------------
typedef struct {
    int64_t k;
    int64_t *idx; // [k] rows of boxes
    float *gt;    // [k, 4]
} box_saved;

// Validates the shared inputs and copies idx / gt into the arena.
static box_saved *box_prep(vlm_ctx *c, const char *op, vlm_tensor **boxes, const int64_t *idx, const float *gt,
                           int64_t k, float norm) {
    if (!vlm_check_f32(c, op, *boxes, "boxes")) return NULL;
    char s1[96];
    vlm_tensor *b = *boxes;
    if (b->ndim < 1 || b->shape[b->ndim - 1] != 4)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "%s: boxes %s must be [..., 4]", op, vlm_shape_str(b, s1, sizeof s1));
    if (k < 0 || (k > 0 && (!idx || !gt)))
        return vlm_ctx_fail(c, VLM_ERR_ARG, "%s: %lld pairs with NULL indices or targets", op, (long long)k);
    if (!(norm > 0) || !isfinite(norm)) return vlm_ctx_fail(c, VLM_ERR_ARG, "%s: bad norm %g", op, norm);
    b = vlm_ensure_contig(c, b);
    if (!b) return NULL;
    *boxes = b;
    const int64_t R = vlm_numel(b) / 4;
    box_saved *s = vlm_arena_alloc(&c->arena, sizeof *s);
    int64_t *ix = vlm_arena_alloc(&c->arena, sizeof(int64_t) * (size_t)(k ? k : 1));
    float *g = vlm_scratch(c, 4 * k);
    if (!s || !ix || !g) return vlm_ctx_fail(c, VLM_ERR_OOM, "%s: arena out of memory", op);
    for (int64_t j = 0; j < k; j++) {
        if (idx[j] < 0 || idx[j] >= R)
            return vlm_ctx_fail(c, VLM_ERR_ARG, "%s: pair %lld indexes box row %lld outside [0, %lld) of boxes %s", op,
                                (long long)j, (long long)idx[j], (long long)R, vlm_shape_str(b, s1, sizeof s1));
        ix[j] = idx[j];
        for (int q = 0; q < 4; q++) {
            float v = gt[4 * j + q], pv = vlm_f32(b)[4 * idx[j] + q];
            if (!isfinite(v) || !isfinite(pv))
                return vlm_ctx_fail(c, VLM_ERR_NUMERIC, "%s: pair %lld has a non-finite coordinate (pred %g, gt %g)", op,
                                    (long long)j, pv, v);
            g[4 * j + q] = v;
        }
    }
    s->k = k;
    s->idx = ix;
    s->gt = g;
    return s;
}

static void l1_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *b = n->in[0];
    const box_saved *s = n->saved;
    float g = n->out->grad[0] / n->f[0];
    const float *bd = vlm_f32(b);
    (void)c;
    for (int64_t j = 0; j < s->k; j++) // serial: indices may repeat
        for (int q = 0; q < 4; q++) {
            float diff = bd[4 * s->idx[j] + q] - s->gt[4 * j + q];
            b->grad[4 * s->idx[j] + q] += diff > 0 ? g : (diff < 0 ? -g : 0.0f);
        }
}

vlm_tensor *vlm_op_box_l1(vlm_ctx *c, vlm_tensor *boxes, const int64_t *idx, const float *gt, int64_t k, float norm) {
    box_saved *s = box_prep(c, "box_l1", &boxes, idx, gt, k, norm);
    if (!s) return NULL;
    int64_t one = 1;
    int g = vlm_needs_grad(c, boxes, NULL, NULL);
    vlm_tensor *y = vlm_out(c, 1, &one, g);
    if (!y) return NULL;
    const float *bd = vlm_f32(boxes);
    double total = 0;
    for (int64_t j = 0; j < k; j++)
        for (int q = 0; q < 4; q++) total += fabs((double)bd[4 * idx[j] + q] - (double)gt[4 * j + q]);
    vlm_f32(y)[0] = (float)(total / norm);
    if (g) {
        vlm_node *nd = vlm_record(c, "box_l1", y, l1_backward, boxes, NULL, NULL, NULL);
        if (nd) {
            nd->saved = s;
            nd->f[0] = norm;
        }
    }
    return y;
}

static void giou_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *b = n->in[0];
    const box_saved *s = n->saved;
    double g = -(double)n->out->grad[0] / n->f[0]; // loss = 1 - GIoU
    const float *bd = vlm_f32(b);
    (void)c;
    for (int64_t j = 0; j < s->k; j++) {
        double a[4], t[4], ga[4] = {0, 0, 0, 0};
        vlm_box_cxcywh_to_xyxy(bd + 4 * s->idx[j], a);
        vlm_box_cxcywh_to_xyxy(s->gt + 4 * j, t);
        vlm_box_giou_xyxy_grad(a, t, NULL, ga, g);
        // x0 = cx - w/2, x1 = cx + w/2
        float *gr = b->grad + 4 * s->idx[j];
        gr[0] += (float)(ga[0] + ga[2]);
        gr[1] += (float)(ga[1] + ga[3]);
        gr[2] += (float)(0.5 * (ga[2] - ga[0]));
        gr[3] += (float)(0.5 * (ga[3] - ga[1]));
    }
}

vlm_tensor *vlm_op_box_giou_loss(vlm_ctx *c, vlm_tensor *boxes, const int64_t *idx, const float *gt, int64_t k,
                                 float norm) {
    box_saved *s = box_prep(c, "box_giou_loss", &boxes, idx, gt, k, norm);
    if (!s) return NULL;
    const float *bd = vlm_f32(boxes);
    for (int64_t j = 0; j < k; j++)
        if (!box_ok(bd + 4 * idx[j]) || !box_ok(gt + 4 * j))
            return vlm_ctx_fail(c, VLM_ERR_NUMERIC, "box_giou_loss: pair %lld has a box with negative width or height",
                                (long long)j);
    int64_t one = 1;
    int g = vlm_needs_grad(c, boxes, NULL, NULL);
    vlm_tensor *y = vlm_out(c, 1, &one, g);
    if (!y) return NULL;
    double total = 0;
    for (int64_t j = 0; j < k; j++) total += 1.0 - vlm_box_giou_cxcywh(bd + 4 * idx[j], gt + 4 * j);
    vlm_f32(y)[0] = (float)(total / norm);
    if (g) {
        vlm_node *nd = vlm_record(c, "box_giou_loss", y, giou_backward, boxes, NULL, NULL, NULL);
        if (nd) {
            nd->saved = s;
            nd->f[0] = norm;
        }
    }
    return y;
}

// ---- the set loss ------------------------------------------------------------------------
vlm_tensor *vlm_loss_detection(vlm_ctx *c, vlm_tensor *logits, vlm_tensor *boxes, const uint8_t *query_valid,
                               const vlm_det_target *targets, const vlm_det_cfg *cfg, vlm_det_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!vlm_check_f32(c, "detection loss", logits, "logits") || !vlm_check_f32(c, "detection loss", boxes, "boxes"))
        return NULL;
    vlm_det_cfg dflt;
    if (!cfg) {
        vlm_det_cfg_default(&dflt);
        cfg = &dflt;
    }
    char s1[96], s2[96];
    if (logits->ndim != 3 || boxes->ndim != 3 || boxes->shape[0] != logits->shape[0] ||
        boxes->shape[1] != logits->shape[1] || boxes->shape[2] != 4)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "detection loss: logits %s and boxes %s must be [B, N, Q] and [B, N, 4]",
                            vlm_shape_str(logits, s1, sizeof s1), vlm_shape_str(boxes, s2, sizeof s2));
    const int64_t B = logits->shape[0], N = logits->shape[1], Q = logits->shape[2];
    if (B > 0 && !targets) return vlm_ctx_fail(c, VLM_ERR_ARG, "detection loss: targets is NULL");
    int64_t K = 0;
    for (int64_t b = 0; b < B; b++) {
        const vlm_det_target *t = &targets[b];
        if (t->n < 0 || t->n > N)
            return vlm_ctx_fail(c, VLM_ERR_ARG, "detection loss: image %lld has %d GT boxes for %lld predictions (logits %s)",
                                (long long)b, t->n, (long long)N, vlm_shape_str(logits, s1, sizeof s1));
        if (t->n > 0 && (!t->boxes || !t->query))
            return vlm_ctx_fail(c, VLM_ERR_ARG, "detection loss: image %lld has %d GT boxes but NULL boxes or queries",
                                (long long)b, t->n);
        for (int j = 0; j < t->n; j++) {
            int32_t q = t->query[j];
            if (q < 0 || q >= Q)
                return vlm_ctx_fail(c, VLM_ERR_ARG, "detection loss: image %lld GT box %d has query %d outside [0, %lld)",
                                    (long long)b, j, q, (long long)Q);
            if (query_valid && !query_valid[b * Q + q])
                return vlm_ctx_fail(c, VLM_ERR_ARG, "detection loss: image %lld GT box %d has padded query %d",
                                    (long long)b, j, q);
        }
        K += t->n;
    }
    if (cfg->one_to_many < 1)
        return vlm_ctx_fail(c, VLM_ERR_ARG, "detection loss: one_to_many %d (want >= 1)", cfg->one_to_many);
    if (cfg->one_to_many > 1 && K > 0) {
        // Each image's GT repeated r = min(k, N / n) times: the matching below
        // then gives each box r distinct tokens.
        vlm_det_target *rep = vlm_arena_alloc(&c->arena, sizeof(vlm_det_target) * (size_t)B);
        if (!rep) return vlm_ctx_fail(c, VLM_ERR_OOM, "detection loss: arena out of memory");
        K = 0;
        for (int64_t b = 0; b < B; b++) {
            const vlm_det_target *t = &targets[b];
            int r = t->n ? (int)(N / t->n) : 1;
            if (r > cfg->one_to_many) r = cfg->one_to_many;
            rep[b].n = t->n * r;
            float *bx = rep[b].n ? vlm_arena_alloc(&c->arena, sizeof(float) * 4 * (size_t)rep[b].n) : NULL;
            int32_t *qy = rep[b].n ? vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)rep[b].n) : NULL;
            if (rep[b].n && (!bx || !qy)) return vlm_ctx_fail(c, VLM_ERR_OOM, "detection loss: arena out of memory");
            for (int j = 0; j < t->n; j++)
                for (int k = 0; k < r; k++) {
                    memcpy(bx + 4 * (j * r + k), t->boxes + 4 * j, 4 * sizeof(float));
                    qy[j * r + k] = t->query[j];
                }
            rep[b].boxes = bx;
            rep[b].query = qy;
            K += rep[b].n;
        }
        targets = rep;
    }
    logits = vlm_ensure_contig(c, logits);
    boxes = vlm_ensure_contig(c, boxes);
    if (!logits || !boxes) return NULL;

    // Matching, one image per iteration (independent, so parallel and deterministic).
    int32_t *match = vlm_arena_alloc(&c->arena, sizeof(int32_t) * (size_t)(K ? K : 1));
    int64_t *first = vlm_arena_alloc(&c->arena, sizeof(int64_t) * (size_t)(B + 1));
    vlm_error *errs = vlm_arena_alloc(&c->arena, sizeof(vlm_error) * (size_t)(B ? B : 1));
    vlm_status *sts = vlm_arena_alloc(&c->arena, sizeof(vlm_status) * (size_t)(B ? B : 1));
    if (!match || !first || !errs || !sts) return vlm_ctx_fail(c, VLM_ERR_OOM, "detection loss: arena out of memory");
    first[0] = 0;
    for (int64_t b = 0; b < B; b++) first[b + 1] = first[b] + targets[b].n;
    const float *ld = vlm_f32(logits), *bd = vlm_f32(boxes);
#pragma omp parallel for schedule(dynamic) if (B > 1 && K > 0)
    for (int64_t b = 0; b < B; b++) {
        errs[b].msg[0] = 0;
        sts[b] = vlm_det_match(ld + b * N * Q, bd + b * N * 4, N, Q, &targets[b], cfg, match + first[b], NULL, &errs[b]);
    }
    for (int64_t b = 0; b < B; b++)
        if (sts[b] != VLM_OK) return vlm_ctx_fail(c, sts[b], "detection loss: image %lld: %s", (long long)b, errs[b].msg);

    // Focal targets [B, N, Q] and the matched pairs.
    uint8_t *tgt = vlm_arena_alloc(&c->arena, (size_t)(B * N * Q > 0 ? B * N * Q : 1));
    int64_t *idx = vlm_arena_alloc(&c->arena, sizeof(int64_t) * (size_t)(K ? K : 1));
    float *gt = vlm_scratch(c, 4 * K);
    if (!tgt || !idx || !gt) return vlm_ctx_fail(c, VLM_ERR_OOM, "detection loss: arena out of memory");
    memset(tgt, 0, (size_t)(B * N * Q));
    for (int64_t b = 0; b < B; b++)
        for (int j = 0; j < targets[b].n; j++) {
            int64_t k = first[b] + j, tok = match[k];
            tgt[(b * N + tok) * Q + targets[b].query[j]] = 1;
            idx[k] = b * N + tok;
            memcpy(gt + 4 * k, targets[b].boxes + 4 * j, 4 * sizeof(float));
        }
    float norm = cfg->norm > 0 ? cfg->norm : K > 1 ? (float)K : 1.0f;
    vlm_tensor *lf = vlm_op_sigmoid_focal(c, logits, tgt, query_valid, cfg->focal_alpha, cfg->focal_gamma, norm);
    vlm_tensor *ll = vlm_op_box_l1(c, boxes, idx, gt, K, norm);
    vlm_tensor *lg = vlm_op_box_giou_loss(c, boxes, idx, gt, K, norm);
    if (!lf || !ll || !lg) return NULL;
    vlm_tensor *total = vlm_op_add(c, vlm_op_add(c, vlm_op_scale(c, lf, cfg->loss_class), vlm_op_scale(c, ll, cfg->loss_bbox)),
                                   vlm_op_scale(c, lg, cfg->loss_giou));
    if (!total) return NULL;
    if (stats) {
        stats->total = vlm_f32(total)[0];
        stats->focal = vlm_f32(lf)[0];
        stats->l1 = vlm_f32(ll)[0];
        stats->giou = vlm_f32(lg)[0];
        stats->num_boxes = (int)K;
    }
    return total;
}
