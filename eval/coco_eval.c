// COCO bbox evaluation reproducing pycocotools' COCOeval (evaluate,
// accumulate, summarize); facts taken from cocoapi's cocoeval.py, coco.py and
// maskApi.c (bbIou), re-derived here in C with the same double arithmetic.
#include "eval/coco_eval.h"
#include "core/box.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const stat_names[VLM_COCO_NSTATS] = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                        "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};
static const char *const area_labels[VLM_COCO_A] = {"all", "small", "medium", "large"};

const char *vlm_coco_eval_stat_name(int i) { return i >= 0 && i < VLM_COCO_NSTATS ? stat_names[i] : "?"; }

// numpy.linspace(start, stop, num) in float64: arange(num) * step + start,
// with the last value set to stop exactly. pycocotools' thresholds are these
// doubles (e.g. iouThrs[5] is exactly 0.75, which summarize() looks up by ==).
static void linspace(double start, double stop, int num, double *y) {
    double step = (stop - start) / (double)(num - 1);
    for (int i = 0; i < num; i++) y[i] = (double)i * step + start;
    if (num > 1) y[num - 1] = stop;
}

// numpy's pairwise summation of float64 (what np.mean uses on a contiguous
// 1-D array): 8 accumulators up to 128 elements, halving above.
static double pairwise_sum(const double *a, long n) {
    if (n < 8) {
        double res = -0.0;
        for (long i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        long i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    long n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

void vlm_coco_eval_init(vlm_coco_eval *ev) {
    memset(ev, 0, sizeof *ev);
    // Params.setDetParams: the counts come from int(np.round((0.95 - .5) / .05)) + 1 etc.
    linspace(0.5, 0.95, (int)nearbyint((0.95 - 0.5) / 0.05) + 1, ev->iou_thrs);
    linspace(0.0, 1.00, (int)nearbyint((1.00 - 0.0) / 0.01) + 1, ev->rec_thrs);
    ev->max_dets[0] = 1;
    ev->max_dets[1] = 10;
    ev->max_dets[2] = 100;
    const double big = 1e5 * 1e5; // 1e5 ** 2
    const double rng[VLM_COCO_A][2] = {{0, big}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, big}};
    memcpy(ev->area_rng, rng, sizeof rng);
    for (int i = 0; i < VLM_COCO_NSTATS; i++) ev->stats[i] = -1;
}

void vlm_coco_eval_free(vlm_coco_eval *ev) {
    free(ev->category_ids);
    free(ev->precision);
    free(ev->recall);
    free(ev->category_ap);
    vlm_coco_eval_init(ev);
}

// ------------------------------------------------------------ helpers

typedef struct {
    int64_t key;  // category rank * n_images + image rank
    long idx;     // position in the file (stable order)
} keyed;

static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Score-descending with ties in list order: what np.argsort(-s, kind='mergesort') gives.
typedef struct {
    double score;
    long pos;     // position in the list being sorted
    long base;    // where this detection's flags start (accumulate)
    int stride;   // the cell's detection count (accumulate)
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score > y->score) return -1;
    if (x->score < y->score) return 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static long rank_of(const int64_t *sorted, long n, int64_t id) {
    long lo = 0, hi = n;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (sorted[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && sorted[lo] == id ? lo : -1;
}

// Grows *p to hold need elements; always leaves a non-NULL buffer (memset,
// qsort and pointer offsets of zero-length cells stay well defined).
static int grow(void **p, long *cap, long need, size_t elem) {
    if (need < 1) need = 1;
    if (need <= *cap) return 1;
    long c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, elem * (size_t)c);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}


// Working memory of one evaluation, reused across cells and categories.
typedef struct {
    // current cell
    scored *dts;      long cap_dts;
    double *iou;      long cap_iou;      // [D][G], ground truth in file order
    int *gt_order;    long cap_gto;      // sorted position -> cell gt index
    unsigned char *gig, *gtm;
    long cap_g, cap_gtm;
    // current category: one record per cell with anything in it
    int *cell_d;      long cap_cells;    // detections kept (<= maxDets[-1])
    long *cell_score; long cap_cs;       // offset of the cell's scores in scores[]
    double *scores;   long cap_scores;   // sorted scores of all cells
    long *cell_flag[VLM_COCO_A];         // offset of the cell's T x D flags per area range
    long cap_cf[VLM_COCO_A];
    unsigned char *matched[VLM_COCO_A], *ignored[VLM_COCO_A];
    long cap_fl[VLM_COCO_A], cap_fl2[VLM_COCO_A], n_fl[VLM_COCO_A];
    long npig[VLM_COCO_A];               // ground truth not ignored, per area range
    // accumulate
    scored *acc;      long cap_acc;
    double *rc, *pr;  long cap_rc, cap_pr;
    // summarize
    double *vals;     long cap_vals;
} work;

static void work_free(work *w) {
    free(w->dts);
    free(w->iou);
    free(w->gt_order);
    free(w->gig);
    free(w->gtm);
    free(w->cell_d);
    free(w->cell_score);
    free(w->scores);
    for (int a = 0; a < VLM_COCO_A; a++) {
        free(w->cell_flag[a]);
        free(w->matched[a]);
        free(w->ignored[a]);
    }
    free(w->acc);
    free(w->rc);
    free(w->pr);
    free(w->vals);
}

// evaluateImg for one image and category, all four area ranges at maxDets[-1]:
// G ground truths (file order) and Dall detections; appends one cell record.
static int eval_cell(vlm_coco_eval *ev, work *w, long n_cells, const vlm_coco_ann *const *g, long G,
                     const vlm_coco_det *const *d, long Dall) {
    const int T = VLM_COCO_T;
    // Detections by score, stable, cut at the largest maxDet (computeIoU and evaluateImg both do this).
    if (!grow((void **)&w->dts, &w->cap_dts, Dall, sizeof *w->dts)) return 0;
    for (long j = 0; j < Dall; j++) w->dts[j] = (scored){d[j]->score, j, 0, 0};
    qsort(w->dts, (size_t)Dall, sizeof *w->dts, cmp_scored);
    long D = Dall < ev->max_dets[VLM_COCO_M - 1] ? Dall : ev->max_dets[VLM_COCO_M - 1];

    if (!grow((void **)&w->iou, &w->cap_iou, D * G, sizeof *w->iou)) return 0;
    for (long j = 0; j < D; j++)
        for (long q = 0; q < G; q++) w->iou[j * G + q] = vlm_box_iou_xywh(d[w->dts[j].pos]->bbox, g[q]->bbox, g[q]->iscrowd);

    if (!grow((void **)&w->cell_d, &w->cap_cells, n_cells + 1, sizeof *w->cell_d) ||
        !grow((void **)&w->cell_score, &w->cap_cs, n_cells + 1, sizeof *w->cell_score))
        return 0;
    long s0 = n_cells ? w->cell_score[n_cells - 1] + w->cell_d[n_cells - 1] : 0;
    if (!grow((void **)&w->scores, &w->cap_scores, s0 + D, sizeof *w->scores)) return 0;
    for (long j = 0; j < D; j++) w->scores[s0 + j] = w->dts[j].score;
    w->cell_d[n_cells] = (int)D;
    w->cell_score[n_cells] = s0;

    if (!grow((void **)&w->gt_order, &w->cap_gto, G, sizeof *w->gt_order) ||
        !grow((void **)&w->gig, &w->cap_g, G, 1) || !grow((void **)&w->gtm, &w->cap_gtm, (long)T * G, 1))
        return 0;
    for (int a = 0; a < VLM_COCO_A; a++) {
        const double lo = ev->area_rng[a][0], hi = ev->area_rng[a][1];
        // gt ignore: pycocotools' _prepare sets ignore = iscrowd (overwriting
        // any "ignore" field); evaluateImg adds "area outside the range".
        // Then a stable sort puts ignored ground truth last.
        long ng = 0;
        for (long q = 0; q < G; q++)
            if (!(g[q]->iscrowd || g[q]->area < lo || g[q]->area > hi)) w->gt_order[ng++] = (int)q;
        w->npig[a] += ng;
        for (long q = 0, k = ng; q < G; q++)
            if (g[q]->iscrowd || g[q]->area < lo || g[q]->area > hi) w->gt_order[k++] = (int)q;
        for (long s = 0; s < G; s++) w->gig[s] = s >= ng;

        long off = w->n_fl[a];
        if (!grow((void **)&w->matched[a], &w->cap_fl[a], off + (long)T * D, 1) ||
            !grow((void **)&w->ignored[a], &w->cap_fl2[a], off + (long)T * D, 1) ||
            !grow((void **)&w->cell_flag[a], &w->cap_cf[a], n_cells + 1, sizeof *w->cell_flag[a]))
            return 0;
        unsigned char *dtm = w->matched[a] + off, *dtig = w->ignored[a] + off;
        memset(dtm, 0, (size_t)T * (size_t)D);
        memset(dtig, 0, (size_t)T * (size_t)D);
        memset(w->gtm, 0, (size_t)T * (size_t)G);
        if (D > 0 && G > 0) {
            for (int t = 0; t < T; t++) {
                unsigned char *gtm = w->gtm + (size_t)t * (size_t)G;
                for (long j = 0; j < D; j++) {
                    // Best match so far (m = -1: none); the threshold caps at 1-1e-10.
                    double iou = fmin(ev->iou_thrs[t], 1 - 1e-10);
                    long m = -1;
                    for (long s = 0; s < G; s++) {
                        const long q = w->gt_order[s];
                        // a matched gt is taken unless it is a crowd region
                        if (gtm[s] && !g[q]->iscrowd) continue;
                        // matched to a regular gt and reached the ignored ones: stop
                        if (m > -1 && !w->gig[m] && w->gig[s]) break;
                        if (w->iou[j * G + q] < iou) continue;
                        iou = w->iou[j * G + q];
                        m = s;
                    }
                    if (m == -1) continue;
                    dtig[(size_t)t * (size_t)D + (size_t)j] = w->gig[m];
                    dtm[(size_t)t * (size_t)D + (size_t)j] = 1; // gt ids are nonzero (checked at load)
                    gtm[m] = 1;
                }
            }
        }
        // Unmatched detections outside the area range (area = w*h, as loadRes sets it) are ignored.
        for (long j = 0; j < D; j++) {
            const double *b = d[w->dts[j].pos]->bbox;
            double area = b[2] * b[3];
            if (area < lo || area > hi)
                for (int t = 0; t < T; t++)
                    if (!dtm[(size_t)t * (size_t)D + (size_t)j]) dtig[(size_t)t * (size_t)D + (size_t)j] = 1;
        }
        w->cell_flag[a][n_cells] = off;
        w->n_fl[a] = off + (long)T * D;
    }
    return 1;
}

// accumulate for one category k over its n_cells cells (image order).
static int accumulate_category(vlm_coco_eval *ev, work *w, long k, long n_cells) {
    if (n_cells == 0) return 1; // no evalImgs entry at all: stays -1
    for (int a = 0; a < VLM_COCO_A; a++) {
        if (w->npig[a] == 0) continue; // no ground truth to recall: stays -1
        for (int mi = 0; mi < VLM_COCO_M; mi++) {
            const long max_det = ev->max_dets[mi];
            long N = 0;
            for (long c = 0; c < n_cells; c++) N += w->cell_d[c] < max_det ? w->cell_d[c] : max_det;
            if (!grow((void **)&w->acc, &w->cap_acc, N, sizeof *w->acc) ||
                !grow((void **)&w->rc, &w->cap_rc, N, sizeof *w->rc) || !grow((void **)&w->pr, &w->cap_pr, N, sizeof *w->pr))
                return 0;
            // Concatenate every image's first maxDet detections, then one stable sort by score.
            long n = 0;
            for (long c = 0; c < n_cells; c++) {
                long nd = w->cell_d[c] < max_det ? w->cell_d[c] : max_det;
                for (long j = 0; j < nd; j++, n++)
                    w->acc[n] = (scored){w->scores[w->cell_score[c] + j], n, w->cell_flag[a][c] + j, w->cell_d[c]};
            }
            qsort(w->acc, (size_t)N, sizeof *w->acc, cmp_scored);
            const double npig = (double)w->npig[a];
            for (int t = 0; t < VLM_COCO_T; t++) {
                long tp = 0, fp = 0;
                for (long i = 0; i < N; i++) {
                    size_t at = (size_t)w->acc[i].base + (size_t)t * (size_t)w->acc[i].stride;
                    if (!w->ignored[a][at]) {
                        if (w->matched[a][at]) tp++;
                        else fp++;
                    }
                    w->rc[i] = (double)tp / npig;
                    w->pr[i] = (double)tp / ((double)fp + (double)tp + DBL_EPSILON); // np.spacing(1)
                }
                ev->recall[vlm_coco_rec_idx(ev, t, k, a, mi)] = N ? w->rc[N - 1] : 0;
                for (long i = N - 1; i > 0; i--)
                    if (w->pr[i] > w->pr[i - 1]) w->pr[i - 1] = w->pr[i];
                // np.searchsorted(rc, recThrs, side='left'); past the end the rest stay 0.
                long lo = 0;
                for (int r = 0; r < VLM_COCO_R; r++) {
                    const double v = ev->rec_thrs[r];
                    long hi = N;
                    while (lo < hi) {
                        long mid = lo + (hi - lo) / 2;
                        if (w->rc[mid] < v) lo = mid + 1;
                        else hi = mid;
                    }
                    ev->precision[vlm_coco_prec_idx(ev, t, r, k, a, mi)] = lo < N ? w->pr[lo] : 0;
                }
            }
        }
    }
    return 1;
}

// One line of summarize(): the mean of the entries > -1, or -1.
static int summarize_one(const vlm_coco_eval *ev, work *w, int ap, double iou_thr, int a, int max_dets, double *out) {
    const long K = ev->n_categories;
    int mi = -1;
    for (int m = 0; m < VLM_COCO_M; m++)
        if (ev->max_dets[m] == max_dets) mi = m;
    long cap = (long)VLM_COCO_T * VLM_COCO_R * (K ? K : 1);
    if (!grow((void **)&w->vals, &w->cap_vals, cap, sizeof *w->vals)) return 0;
    long n = 0;
    for (int t = 0; t < VLM_COCO_T && mi >= 0; t++) {
        // pycocotools selects the threshold with np.where(iouThr == iouThrs)
        if (iou_thr >= 0 && ev->iou_thrs[t] != iou_thr) continue;
        if (ap) {
            for (int r = 0; r < VLM_COCO_R; r++)
                for (long k = 0; k < K; k++) {
                    double v = ev->precision[vlm_coco_prec_idx(ev, t, r, k, a, mi)];
                    if (v > -1) w->vals[n++] = v;
                }
        } else {
            for (long k = 0; k < K; k++) {
                double v = ev->recall[vlm_coco_rec_idx(ev, t, k, a, mi)];
                if (v > -1) w->vals[n++] = v;
            }
        }
    }
    *out = n ? pairwise_sum(w->vals, n) / (double)n : -1;
    return 1;
}

// The settings of the 12 stats (pycocotools' _summarizeDets).
static const struct {
    int ap;
    double iou;  // < 0: all thresholds
    int area;
    int max_dets;
} stat_def[VLM_COCO_NSTATS] = {
    {1, -1, 0, 100}, {1, .5, 0, 100}, {1, .75, 0, 100}, {1, -1, 1, 100}, {1, -1, 2, 100}, {1, -1, 3, 100},
    {0, -1, 0, 1},   {0, -1, 0, 10},  {0, -1, 0, 100},  {0, -1, 1, 100}, {0, -1, 2, 100}, {0, -1, 3, 100},
};

size_t vlm_coco_eval_summary(const vlm_coco_eval *ev, char *buf, size_t cap) {
    size_t len = 0;
    char iou[32];
    for (int i = 0; i < VLM_COCO_NSTATS; i++) {
        if (stat_def[i].iou < 0) snprintf(iou, sizeof iou, "%0.2f:%0.2f", ev->iou_thrs[0], ev->iou_thrs[VLM_COCO_T - 1]);
        else snprintf(iou, sizeof iou, "%0.2f", stat_def[i].iou);
        int n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
                         " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                         stat_def[i].ap ? "Average Precision" : "Average Recall", stat_def[i].ap ? "(AP)" : "(AR)", iou,
                         area_labels[stat_def[i].area], stat_def[i].max_dets, ev->stats[i]);
        if (n > 0) len += (size_t)n;
    }
    return len;
}

// ------------------------------------------------------------ run

vlm_status vlm_coco_eval_run(vlm_coco_eval *ev, const vlm_coco_gt *gt, const vlm_coco_results *dt, vlm_error *err) {
    vlm_coco_eval_init(ev);
    vlm_status st = vlm_coco_gt_validate(gt, NULL, err);
    if (st) return st;
    const long I = gt->n_images, K = gt->n_categories;
    ev->n_images = I;
    ev->n_categories = K;
    work w = {0};
    int64_t *img_ids = malloc(sizeof *img_ids * (size_t)(I ? I : 1));
    keyed *gk = malloc(sizeof *gk * (size_t)(gt->n_anns ? gt->n_anns : 1));
    keyed *dk = malloc(sizeof *dk * (size_t)(dt->n ? dt->n : 1));
    const vlm_coco_ann **cell_g = malloc(sizeof *cell_g * (size_t)(gt->n_anns ? gt->n_anns : 1));
    const vlm_coco_det **cell_d = malloc(sizeof *cell_d * (size_t)(dt->n ? dt->n : 1));
    ev->category_ids = malloc(sizeof *ev->category_ids * (size_t)(K ? K : 1));
    ev->category_ap = malloc(sizeof *ev->category_ap * (size_t)(K ? K : 1));
    size_t np = (size_t)VLM_COCO_T * VLM_COCO_R * (size_t)K * VLM_COCO_A * VLM_COCO_M;
    size_t nr = (size_t)VLM_COCO_T * (size_t)K * VLM_COCO_A * VLM_COCO_M;
    ev->precision = malloc(sizeof *ev->precision * (np ? np : 1));
    ev->recall = malloc(sizeof *ev->recall * (nr ? nr : 1));
    if (!img_ids || !gk || !dk || !cell_g || !cell_d || !ev->category_ids || !ev->category_ap || !ev->precision ||
        !ev->recall) {
        st = vlm_errorf(err, VLM_ERR_OOM, "coco eval: out of memory (%ld images, %ld categories)", I, K);
        goto done;
    }
    for (size_t i = 0; i < np; i++) ev->precision[i] = -1;
    for (size_t i = 0; i < nr; i++) ev->recall[i] = -1;

    // pycocotools evaluates every image and category of the ground truth, in ascending id order.
    for (long i = 0; i < I; i++) img_ids[i] = gt->images[i].id;
    qsort(img_ids, (size_t)I, sizeof *img_ids, cmp_i64);
    for (long k = 0; k < K; k++) ev->category_ids[k] = gt->categories[k].id;
    qsort(ev->category_ids, (size_t)K, sizeof *ev->category_ids, cmp_i64);

    // Group ground truth and detections by (category, image), keeping file order within a group.
    for (long i = 0; i < gt->n_anns; i++) {
        long r = rank_of(img_ids, I, gt->anns[i].image_id), c = rank_of(ev->category_ids, K, gt->anns[i].category_id);
        gk[i] = (keyed){(int64_t)c * I + r, i}; // validated: both exist
    }
    qsort(gk, (size_t)gt->n_anns, sizeof *gk, cmp_keyed);
    long nd = 0;
    for (long i = 0; i < dt->n; i++) {
        long r = rank_of(img_ids, I, dt->dets[i].image_id);
        if (r < 0) {
            st = vlm_errorf(err, VLM_ERR_FORMAT,
                            "coco eval: result %ld names image_id %" PRId64 ", which is not an image of the ground truth",
                            i, dt->dets[i].image_id);
            goto done;
        }
        long c = rank_of(ev->category_ids, K, dt->dets[i].category_id);
        if (c < 0) { // pycocotools' getAnnIds(catIds=...) drops these silently
            ev->n_results_unknown_category++;
            continue;
        }
        dk[nd++] = (keyed){(int64_t)c * I + r, i};
    }
    ev->n_results_used = nd;
    qsort(dk, (size_t)nd, sizeof *dk, cmp_keyed);

    long gi = 0, di = 0;
    for (long k = 0; k < K; k++) {
        long n_cells = 0;
        for (int a = 0; a < VLM_COCO_A; a++) w.npig[a] = w.n_fl[a] = 0;
        const int64_t kend = (int64_t)(k + 1) * I;
        while ((gi < gt->n_anns && gk[gi].key < kend) || (di < nd && dk[di].key < kend)) {
            int64_t key = INT64_MAX;
            if (gi < gt->n_anns && gk[gi].key < key) key = gk[gi].key;
            if (di < nd && dk[di].key < key) key = dk[di].key;
            long G = 0, D = 0;
            for (; gi < gt->n_anns && gk[gi].key == key; gi++) cell_g[G++] = &gt->anns[gk[gi].idx];
            for (; di < nd && dk[di].key == key; di++) cell_d[D++] = &dt->dets[dk[di].idx];
            if (!eval_cell(ev, &w, n_cells, cell_g, G, cell_d, D)) {
                st = vlm_errorf(err, VLM_ERR_OOM, "coco eval: out of memory");
                goto done;
            }
            n_cells++;
        }
        if (!accumulate_category(ev, &w, k, n_cells)) {
            st = vlm_errorf(err, VLM_ERR_OOM, "coco eval: out of memory");
            goto done;
        }
    }

    for (int i = 0; i < VLM_COCO_NSTATS; i++)
        if (!summarize_one(ev, &w, stat_def[i].ap, stat_def[i].iou, stat_def[i].area, stat_def[i].max_dets,
                           &ev->stats[i])) {
            st = vlm_errorf(err, VLM_ERR_OOM, "coco eval: out of memory");
            goto done;
        }
    // Per category: precision[:, :, k, area all, maxDets 100], entries > -1 averaged.
    if (!grow((void **)&w.vals, &w.cap_vals, (long)VLM_COCO_T * VLM_COCO_R, sizeof *w.vals)) {
        st = vlm_errorf(err, VLM_ERR_OOM, "coco eval: out of memory");
        goto done;
    }
    for (long k = 0; k < K; k++) {
        long n = 0;
        for (int t = 0; t < VLM_COCO_T; t++)
            for (int r = 0; r < VLM_COCO_R; r++) {
                double v = ev->precision[vlm_coco_prec_idx(ev, t, r, k, 0, VLM_COCO_M - 1)];
                if (v > -1) w.vals[n++] = v;
            }
        ev->category_ap[k] = n ? pairwise_sum(w.vals, n) / (double)n : -1;
    }

done:
    free(img_ids);
    free(gk);
    free(dk);
    free(cell_g);
    free(cell_d);
    work_free(&w);
    if (st) vlm_coco_eval_free(ev);
    return st;
}

vlm_status vlm_coco_eval_files(vlm_coco_eval *ev, const char *gt_path, const char *dt_path, vlm_error *err) {
    vlm_coco_eval_init(ev);
    vlm_coco_gt gt;
    vlm_coco_results dt;
    vlm_status st = vlm_coco_gt_load(&gt, gt_path, err);
    if (st) return st;
    st = vlm_coco_results_load(&dt, dt_path, &gt, err);
    if (!st) {
        st = vlm_coco_eval_run(ev, &gt, &dt, err);
        vlm_coco_results_free(&dt);
    }
    vlm_coco_gt_free(&gt);
    return st;
}
