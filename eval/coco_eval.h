// COCO bbox evaluation, reproducing pycocotools' COCOeval(gt, dt, "bbox")
// evaluate + accumulate + summarize number for number (double precision,
// the same thresholds, sort orders, matching loop and -1 conventions).
#ifndef VLM_EVAL_COCO_EVAL_H
#define VLM_EVAL_COCO_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "data/coco.h"

enum {
    VLM_COCO_T = 10,   // IoU thresholds .50:.05:.95
    VLM_COCO_R = 101,  // recall thresholds 0:.01:1
    VLM_COCO_A = 4,    // area ranges all, small, medium, large
    VLM_COCO_M = 3,    // maxDets 1, 10, 100
};

// The 12 summary numbers, in pycocotools' stats order.
enum {
    VLM_COCO_AP, VLM_COCO_AP50, VLM_COCO_AP75, VLM_COCO_APS, VLM_COCO_APM, VLM_COCO_APL,
    VLM_COCO_AR1, VLM_COCO_AR10, VLM_COCO_AR100, VLM_COCO_ARS, VLM_COCO_ARM, VLM_COCO_ARL,
    VLM_COCO_NSTATS
};

typedef struct {
    // Parameters (pycocotools' defaults; the thresholds are numpy's linspace doubles).
    double iou_thrs[VLM_COCO_T];
    double rec_thrs[VLM_COCO_R];
    int max_dets[VLM_COCO_M];             // 1, 10, 100
    double area_rng[VLM_COCO_A][2];       // [0,1e10], [0,32^2], [32^2,96^2], [96^2,1e10]

    long n_images;                        // images evaluated (all of the ground truth's)
    long n_categories;                    // K
    int64_t *category_ids;                // [K] ascending (pycocotools' catIds)
    long n_results_used;                  // results of a listed category
    long n_results_unknown_category;      // results skipped: category not in the ground truth

    // accumulate(): -1 where a setting has no ground truth.
    double *precision;                    // [T][R][K][A][M]
    double *recall;                       // [T][K][A][M]

    // summarize(): the 12 stats (-1 when nothing to average) and, per
    // category, AP over IoU .50:.95, area all, maxDets 100 (-1 for a
    // category without ground truth).
    double stats[VLM_COCO_NSTATS];
    double *category_ap;                  // [K], same order as category_ids
} vlm_coco_eval;

void vlm_coco_eval_init(vlm_coco_eval *ev);
void vlm_coco_eval_free(vlm_coco_eval *ev);

// Evaluates dt against gt (ev need not be initialised; it is overwritten, not
// freed). Fails if gt is inconsistent or a result names an image that is not
// in gt; results of unknown categories are skipped and counted.
vlm_status vlm_coco_eval_run(vlm_coco_eval *ev, const vlm_coco_gt *gt, const vlm_coco_results *dt, vlm_error *err);

// Loads both files and evaluates (messages name the file and entry).
vlm_status vlm_coco_eval_files(vlm_coco_eval *ev, const char *gt_path, const char *dt_path, vlm_error *err);

// "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl".
const char *vlm_coco_eval_stat_name(int i);

// The 12 lines pycocotools' summarize() prints, each ending in '\n':
// " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.145".
// snprintf semantics: returns the full length, writes at most cap bytes.
size_t vlm_coco_eval_summary(const vlm_coco_eval *ev, char *buf, size_t cap);

// Index into precision / recall.
static inline size_t vlm_coco_prec_idx(const vlm_coco_eval *ev, int t, int r, long k, int a, int m) {
    return ((((size_t)t * VLM_COCO_R + (size_t)r) * (size_t)ev->n_categories + (size_t)k) * VLM_COCO_A + (size_t)a) *
               VLM_COCO_M + (size_t)m;
}
static inline size_t vlm_coco_rec_idx(const vlm_coco_eval *ev, int t, long k, int a, int m) {
    return (((size_t)t * (size_t)ev->n_categories + (size_t)k) * VLM_COCO_A + (size_t)a) * VLM_COCO_M + (size_t)m;
}

#endif
