// open_clip image transforms on 8-bit RGB images: eval (Resize shortest side
// to S with PIL-exact bicubic, CenterCrop, ToTensor, Normalize) and train
// (RandomResizedCrop + optional flip / colour jitter / grayscale, every draw
// from a seeded per-sample stream). Output is [3, S, S] f32, CHW.
#ifndef VLM_DATA_TRANSFORM_H
#define VLM_DATA_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "core/rng.h"
#include "data/image.h"

#define VLM_CLIP_MEAN_R 0.48145466f
#define VLM_CLIP_MEAN_G 0.4578275f
#define VLM_CLIP_MEAN_B 0.40821073f
#define VLM_CLIP_STD_R 0.26862954f
#define VLM_CLIP_STD_G 0.26130258f
#define VLM_CLIP_STD_B 0.27577711f

typedef struct {
    int size;                    // S: output [3, S, S]
    float mean[3], std[3];       // Normalize (CLIP values by default)
    // Train-time augmentation (vlm_transform_train only):
    float scale_min, scale_max;  // RandomResizedCrop area fraction, default 0.9..1.0
    float ratio_min, ratio_max;  // aspect ratio w/h, default 3/4..4/3 (log-uniform)
    float hflip_prob;            // RandomHorizontalFlip probability, default 0
    float jitter_prob;           // RandomApply(ColorJitter) probability, default 0
    float brightness, contrast, saturation, hue; // ColorJitter strengths (hue <= 0.5)
    float gray_prob;             // RandomGrayscale probability, default 0
} vlm_transform;

// The random choices of one train sample (exposed for tests and debugging).
typedef struct {
    int crop_x, crop_y, crop_w, crop_h; // RandomResizedCrop box in the source
    int flip;
    int jitter;                         // colour jitter applied?
    int order[4];                       // op order: 0 brightness 1 contrast 2 saturation 3 hue
    float b, c, s, h;                   // jitter factors (1, 1, 1, 0 = identity)
    int gray;
} vlm_augment_params;

// Reusable buffers of one thread (grow only): no allocation in steady state.
typedef struct {
    uint8_t *tmp;      // horizontal-pass rows, u8 RGB
    size_t tmp_cap;
    uint8_t *out8;     // resized window, u8 RGB [S, S, 3]
    size_t out8_cap;
    int32_t *kx, *ky;  // fixed-point filter taps per output column / row
    int *bx, *by;      // (first, count) source index per output column / row
    size_t kx_cap, ky_cap, bx_cap, by_cap;
    double *w;         // one output's float taps before fixed-point rounding
    size_t w_cap;
    int32_t *acc;      // one output row of vertical-pass accumulators
    size_t acc_cap;
} vlm_transform_scratch;

// CLIP mean/std, open_clip train defaults (scale 0.9..1, ratio 3/4..4/3, no
// flip / jitter / grayscale).
void vlm_transform_init(vlm_transform *t, int size);
void vlm_transform_scratch_init(vlm_transform_scratch *s);
void vlm_transform_scratch_free(vlm_transform_scratch *s);

// PIL Image.resize(BICUBIC) of the box (bx, by, bw, bh) of src to ow x oh
// (i.e. src.crop(box).resize((ow, oh))), computing only the output window
// (wx, wy, ww, wh). Bit-exact with Pillow's ImagingResample (separable,
// support scaled by the downscale factor, a = -0.5, 22-bit fixed point,
// horizontal pass first with an 8-bit intermediate).
// out: [wh, ww, 3] u8 (row stride ww*3).
vlm_status vlm_image_resize_bicubic(const vlm_image *src, int bx, int by, int bw, int bh, int ow, int oh,
                                    int wx, int wy, int ww, int wh, uint8_t *out, vlm_transform_scratch *s,
                                    vlm_error *err);

// Eval transform to 8-bit (before ToTensor). out: [S, S, 3] u8.
vlm_status vlm_transform_eval_u8(const vlm_transform *t, const vlm_image *img, uint8_t *out,
                                 vlm_transform_scratch *s, vlm_error *err);
// ToTensor + Normalize of an image already S x S: in [S, S, 3] u8 -> out
// [3, S, S] f32 (S = t->size).
void vlm_transform_to_tensor(const vlm_transform *t, const uint8_t *in, float *out);
// Eval transform. out: [3, S, S] f32.
vlm_status vlm_transform_eval(const vlm_transform *t, const vlm_image *img, float *out,
                              vlm_transform_scratch *s, vlm_error *err);

// The per-sample augmentation stream: a pure function of (seed, epoch, index)
// so results do not depend on thread count or order.
void vlm_transform_rng(vlm_rng *r, uint64_t seed, uint64_t epoch, uint64_t index);
// Draws a sample's random choices for an image of w x h (torchvision's
// RandomResizedCrop.get_params: 10 tries, then the centre-crop fallback).
void vlm_transform_draw(const vlm_transform *t, int w, int h, vlm_rng *rng, vlm_augment_params *p);
// Applies given choices. out: [3, S, S] f32.
vlm_status vlm_transform_apply(const vlm_transform *t, const vlm_image *img, const vlm_augment_params *p,
                               float *out, vlm_transform_scratch *s, vlm_error *err);
// draw + apply.
vlm_status vlm_transform_train(const vlm_transform *t, const vlm_image *img, vlm_rng *rng, float *out,
                               vlm_transform_scratch *s, vlm_error *err);

// Eval output size before the crop: shorter side S, longer int(S*long/short)
// (torchvision Resize with an int size).
void vlm_transform_resized_size(int w, int h, int size, int *nw, int *nh);

#endif
