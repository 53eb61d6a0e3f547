// One reference step of CLIP (forward, loss, backward, optional AdamW steps)
// on a fixed batch: what `vlm clip-step` and the parity tests run.
#ifndef VLM_TRAIN_CLIP_STEP_H
#define VLM_TRAIN_CLIP_STEP_H

#include "core/optim.h"
#include "fusion/clip.h"

typedef struct {
    int64_t B, E;
    float *image_features;   // [B, E] before normalisation
    float *text_features;    // [B, E]
    float *logits_per_image; // [B, B]
    float loss;
    float *grads;            // m->ps layout (index with m->ps.p[i].offset)
    float *adamw_losses;     // [adamw_steps + 1] or NULL
    int adamw_steps;
} vlm_clip_step_result;

// images: [B, 3, S, S], text: [B, T] (SOT/EOT/zero padding). Weights of m are
// updated in place when adamw_steps > 0.
vlm_status vlm_clip_step(vlm_clip *m, const float *images, const int64_t ishape[4], const int32_t *text,
                         const int64_t tshape[2], int adamw_steps, vlm_adamw_cfg ac, vlm_clip_step_result *res,
                         vlm_error *err);
void vlm_clip_step_result_free(vlm_clip_step_result *r);

#endif
