// Image-classifier fine-tuning on the trainer layer: a ViT classifier
// (vision/classifier.h) from a CLIP's vision tower, a classifier file or
// scratch; head-only or full training, layer-wise LR decay, label smoothing,
// augmentation, a zero-shot-initialised head and WiSE-FT weight ensembling.
#ifndef VLM_TRAIN_FINETUNE_H
#define VLM_TRAIN_FINETUNE_H

#include "eval/classify.h"
#include "train/trainer.h"
#include "vision/classifier.h"

// WiSE-FT: out = (1 - alpha) * theta0 + alpha * theta1 over n floats (out may
// alias either input).
void vlm_wise_mix(float *out, const float *theta0, const float *theta1, int64_t n, float alpha);

#define VLM_FT_MAX_WISE 16

typedef struct {
    vlm_train_common c;
    const char *train, *val, *img_key, *label_key, *classnames, *checkpoint, *model, *templates;
    const char *pool, *head, *head_input, *act, *stem_act;
    char sep;
    long long image_size, patch_size, width, layers, heads, head_hidden, train_limit, val_limit, val_freq, lock_epochs;
    double layer_decay, ls, mlp_ratio, head_dropout;
    vlm_train_aug aug;
    int stem_n;                    // -1: not given; 0: "none"; else stem_ch[0..stem_n)
    int stem_ch[VLM_STEM_MAX];
    int lock_image, zeroshot_init, no_augment, eval_only;
    double wise[VLM_FT_MAX_WISE];
    int n_wise;
} vlm_finetune_opts;

// batch 128, 10 epochs, lr 1e-3, wd 0.05, warmup 100, save every 500, log
// every 20, RandomResizedCrop 0.9-1, colour jitter 0.4,0.4,0.4,0.1 when on.
void vlm_finetune_opts_default(vlm_finetune_opts *o);
// The option combinations that cannot work (before any file is read).
vlm_status vlm_finetune_opts_check(const vlm_finetune_opts *o, vlm_error *err);

typedef struct {
    int have_val;
    vlm_cls_eval val;
    int64_t steps, epoch, images_seen;
    double loss, minutes;
    int n_wise;
    double wise_alpha[VLM_FT_MAX_WISE];
    vlm_cls_eval wise[VLM_FT_MAX_WISE];
    char checkpoint[1300];
} vlm_finetune_result;

// The whole run (or, with eval_only, the evaluation alone). Messages go to o->c.log.
vlm_status vlm_finetune(const vlm_finetune_opts *o, vlm_finetune_result *r, vlm_error *err);

#endif
