// Optimizers (AdamW with decoupled weight decay, SGD with momentum) over the
// contiguous parameter store, LR schedules, and global grad-norm clipping.
#ifndef VLM_CORE_OPTIM_H
#define VLM_CORE_OPTIM_H

#include "core/tensor.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} vlm_adamw_cfg;

typedef struct {
    vlm_adamw_cfg cfg;
    int64_t step; // completed steps (bias correction uses step + 1)
} vlm_adamw;

// Allocates the store's m and v moments (zeroed).
vlm_status vlm_adamw_init(vlm_adamw *o, vlm_params *ps, vlm_adamw_cfg cfg, vlm_error *err);
// One step at learning rate lr, exactly torch.optim.AdamW's update: decay
// p *= 1 - lr*wd (params with no_decay skip it), then Adam with bias correction.
// Frozen parameters are left untouched.
void vlm_adamw_step(vlm_adamw *o, vlm_params *ps, float lr);

// One AdamW step with per-group learning rates lr * scale[group[i]] (layer-wise
// decay, a slower backbone): the update runs once per group with the other
// groups masked as frozen, all at the same step count. group NULL = one group.
// saved: ps->n bytes of scratch.
void vlm_adamw_step_groups(vlm_adamw *o, vlm_params *ps, const int *group, const float *scale, int G, float lr,
                           uint8_t *saved);

typedef struct {
    float lr, momentum, weight_decay;
    int nesterov;
    int64_t step;
} vlm_sgd;
// torch.optim.SGD: g += wd*p; buf = momentum*buf + g (buf = g on the first
// step); p -= lr * (nesterov ? g + momentum*buf : buf). Uses the store's m.
vlm_status vlm_sgd_init(vlm_sgd *o, vlm_params *ps, float lr, float momentum, float wd, int nesterov, vlm_error *err);
void vlm_sgd_step(vlm_sgd *o, vlm_params *ps, float lr);

// Global L2 norm of all trainable gradients; if above max_norm (> 0) scales
// them by max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_.
// Returns the norm before clipping.
float vlm_clip_grad_norm(vlm_params *ps, float max_norm);
// Multiplies every gradient by s (e.g. 1/accum for gradient accumulation).
void vlm_grad_scale(vlm_params *ps, float s);
// 1 if every trainable gradient is finite.
int vlm_grads_finite(const vlm_params *ps);

typedef enum { VLM_SCHED_COSINE = 0, VLM_SCHED_CONST, VLM_SCHED_CONST_COOLDOWN } vlm_sched_kind;

typedef struct {
    vlm_sched_kind kind;
    float base_lr;
    int64_t warmup, total;  // steps
    int64_t cooldown;       // const-cooldown: steps of cooldown at the end
    float cooldown_power;   // 1 = linear
    float cooldown_end_lr;
} vlm_sched;

// open_clip's schedules: linear warmup lr*(step+1)/warmup, then cosine to 0 /
// constant / constant then (1 - e/es)^power cooldown.
float vlm_sched_lr(const vlm_sched *s, int64_t step);
int vlm_sched_parse(const char *name, vlm_sched_kind *out); // "cosine", "const", "const-cooldown"
// With time_sched: linear warmup over steps, then cosine (or const) over
// frac = the fraction of a time budget used, so a run ends at its budget with
// the LR at 0 on any machine; otherwise vlm_sched_lr(s, step).
float vlm_sched_lr_at(const vlm_sched *s, int64_t step, int time_sched, double frac);

#endif
