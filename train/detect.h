// Open-vocabulary detector training on the trainer layer: an OWL-ViT style
// head and the CLIP's image tower fine-tuned on COCO-format data (Hungarian
// matching, focal + L1 + GIoU, H-DETR's one-to-many option), the text tower
// frozen as the query encoder, COCO evaluation of the val / held-out splits.
#ifndef VLM_TRAIN_DETECT_H
#define VLM_TRAIN_DETECT_H

#include "eval/detect_eval.h"
#include "train/trainer.h"

typedef struct {
    vlm_train_common c;
    const char *clip, *train, *val, *heldout, *templates, *checkpoint;
    long long image_size, patch_size, train_limit, val_limit, max_det, one_to_many;
    double nms, tower_scale, hflip, alpha, gamma, w[3], scale[2];
    int lock_image, eval_only;
    // Score fusion with the frozen --clip on token crops at evaluation
    // (fusion/detect_ensemble.h): on when ensemble is set.
    // (ens_w: the CLIP's exponent for seen, novel classes; crop context; tokens per image)
    int ensemble;
    double ens_w[2], ens_context;
    long long ens_top;
} vlm_detect_opts;

// batch 32, 20 epochs, lr 3e-4 (tower x 0.3), wd 0.05, warmup 200, save
// every 500, log every 20, flips 0.5, crops 0.5-1, loss weights 2,5,2, focal
// alpha 0.3 gamma 2, one-to-one matching, NMS from the matching (-1).
void vlm_detect_opts_default(vlm_detect_opts *o);
vlm_status vlm_detect_opts_check(const vlm_detect_opts *o, vlm_error *err);

typedef struct {
    int64_t steps;
    double minutes, loss;
    char eval_json[4096]; // "val_AP": .., "heldout_AP": .. (the splits given)
    char checkpoint[1300];
} vlm_detect_result;

// Trains (or, with eval_only, evaluates o->checkpoint) and evaluates the
// val / held-out splits, their COCO results written beside the model.
vlm_status vlm_detect_train(const vlm_detect_opts *o, vlm_detect_result *r, vlm_error *err);
// The COCO statistics of the splits given (val, held; either may be NULL or
// not loaded) into json; results files <dir>/<split>_results.json. ens (may
// be NULL): scores fused with a frozen CLIP's.
vlm_status vlm_detect_eval_splits(vlm_owl *m, vlm_det_ensemble *ens, vlm_det_split *val, vlm_det_split *held,
                                  const char *const *tmpl, int nt, int batch, int max_det, const char *dir,
                                  const vlm_trainer *log_to, char *json, size_t cap, vlm_error *err);

#endif
