// An open-vocabulary detector's COCO evaluation: a split (the images and
// boxes in memory, data/detset.h, plus its COCO ground truth), the detector
// run over it with the split's own category names as queries, COCO results
// and the 12 COCO statistics.
#ifndef VLM_EVAL_DETECT_EVAL_H
#define VLM_EVAL_DETECT_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "data/detset.h"
#include "eval/coco_eval.h"
#include "fusion/detect_ensemble.h"
#include "fusion/detection.h"

typedef struct {
    vlm_detset ds;
    vlm_coco_gt gt;
    int64_t n; // images used (a limit prefix)
    int loaded;
} vlm_det_split;

// A COCO ground-truth JSON and its images (file_name relative to the JSON's
// folder); limit > 0 uses the first `limit` images.
vlm_status vlm_det_split_load(vlm_det_split *d, const char *json, int64_t limit, vlm_error *err);
void vlm_det_split_free(vlm_det_split *d);

typedef struct {
    double stats[VLM_COCO_NSTATS];
    long n_images, n_dets;
    double seconds;
} vlm_det_eval;

// Runs the detector over the split in batches of B (queries: the split's
// category names through the templates, NULL = the names), keeps up to
// max_det boxes per image, writes the COCO results to out_json (may be NULL)
// and evaluates them against the split's ground truth (cut to the images
// used); summary (may be NULL) gets pycocotools' printed table. ens (may be
// NULL) fuses each image's scores with a frozen CLIP's on the token crops.
vlm_status vlm_owl_evaluate(vlm_owl *o, vlm_det_ensemble *ens, const vlm_det_split *d, const char *const *templates,
                            int nt, int B, int max_det, const char *out_json, vlm_det_eval *ev, char *summary,
                            size_t summary_cap, vlm_error *err);
// The statistics as JSON fields "<prefix>AP": .., "<prefix>AP50": .., ...
void vlm_det_eval_json(char *buf, size_t cap, const char *prefix, const double *s);

#endif
