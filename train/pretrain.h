// Contrastive CLIP pretraining (open_clip's recipe) on the trainer layer:
// the CLIP/SigLIP loss over one rank's batch or the data-parallel global
// batch, accumulation with cached features, synthetic data, a BPE vocabulary
// trained on the captions, and retrieval validation.
#ifndef VLM_TRAIN_PRETRAIN_H
#define VLM_TRAIN_PRETRAIN_H

#include "data/image.h"
#include "eval/retrieval.h"
#include "fusion/clip.h"
#include "train/trainer.h"

// The contrastive loss of image features fi [B, E] and text features ft
// [B, E] (unnormalised tower outputs): InfoNCE over logit_scale * cosine
// logits, or SigLIP's sigmoid loss. groups: the batch's caption ids (equal
// captions are not negatives of each other). With d of several ranks, every
// rank's features are gathered with gradients and this rank's rows are scored
// against all of them (open_clip's gather_with_grad + local_loss), so the mean
// over ranks equals the loss of the global batch; groups then covers it.
vlm_tensor *vlm_clip_batch_loss(vlm_ctx *c, vlm_clip *m, vlm_tensor *fi, vlm_tensor *ft, const int32_t *groups,
                                int siglip, vlm_dist *d);

// Forward and backward of one step over K micro-batches of B pairs each:
// images [K*B, 3, S, S], ids [K*B, T]. With K > 1, open_clip's feature
// caching: a no-grad pass caches every micro-batch's features (cache_i,
// cache_t: [K*B, E] scratch), then each micro-batch is re-encoded with grad
// and the loss runs over all K*B pairs against the cached rest. Dropout draws
// come from (seed, step). ov (may be NULL) has its boundary set before the
// text tower's forward. *loss: the last micro-batch's loss.
typedef struct {
    int B, K, siglip;
    uint64_t seed;
    int64_t step;
    float *cache_i, *cache_t;
    vlm_dist *dist;
    vlm_grad_overlap *ov;
    float caption_weight;    // CoCa (m->has_dec, K = 1): + caption_weight * caption loss
} vlm_clip_step_args;
vlm_status vlm_clip_train_step(vlm_ctx *c, vlm_clip *m, float *images, int32_t *ids, const int32_t *groups,
                               const vlm_clip_step_args *a, double *loss, vlm_error *err);

typedef struct {
    vlm_train_common c;
    const char *train, *val, *dtype, *img_key, *cap_key, *model, *tokenizer, *pretrained, *sched;
    const char *cap_sep;         // manifest: several captions per cell split at this (NULL: one)
    const char *upsampling;      // "F1::F2": the train shards' "::" sources listed Fk times (NULL: once)
    const char *pretrained_text; // a vlm lm model file: the text tower (and tokenizer) start from it
    long long coca_layers;       // > 0: CoCa, a multimodal text decoder of this many layers (--coca)
    double caption_weight;       // CoCa: loss = contrastive + caption_weight * caption (default 2)
    char sep;
    long long accum, save_freq, keep, nsynth;
    long long text_buckets; // vlm_text_encoder.max_buckets (default 4; 1: one run at the batch's longest caption)
    double random_background; // vlm_loader_opts.random_background
    double patch_dropout, cooldown_epochs, cooldown_end, cooldown_power;
    double unmasked_tail; // FLIP's unmasked tuning: the last fraction of the schedule trains without patch dropout
    int siglip, lock_image, lock_text, no_augment;
    vlm_train_aug aug; // RandomResizedCrop, flip, colour jitter, grayscale (unless no_augment)
    vlm_decode_opts dec;
} vlm_pretrain_opts;

// open_clip's defaults: tiny model, batch 64, 1 epoch, lr 5e-4, wd 0.2,
// betas 0.9/0.98, eps 1e-6, warmup 100, cosine, save every 200 steps.
void vlm_pretrain_opts_default(vlm_pretrain_opts *o);
// The option combinations that cannot work (before any file is read).
vlm_status vlm_pretrain_opts_check(const vlm_pretrain_opts *o, vlm_error *err);

typedef struct {
    int64_t steps, epoch, pairs_seen;
    double loss, minutes;
    double data_wait_s; // this process's time waiting for the loader (0 on synthetic data)
    int have_val;
    vlm_retrieval val;
    char checkpoint[1300];
    const char *stop_reason;
} vlm_pretrain_result;

// The whole run: data, model (fresh, --pretrained, or the resumed state's),
// tokenizer, the loop, validation. Messages go to o->c.log.
vlm_status vlm_pretrain(const vlm_pretrain_opts *o, vlm_pretrain_result *r, vlm_error *err);

#endif
