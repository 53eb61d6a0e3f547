// AdamW / SGD updates over the parameter store, grad clipping, LR schedules.
#include "core/isa_internal.h"
#include "core/optim.h"
#include <math.h>
#include <string.h>

vlm_status vlm_adamw_init(vlm_adamw *o, vlm_params *ps, vlm_adamw_cfg cfg, vlm_error *err) {
    o->cfg = cfg;
    o->step = 0;
    return vlm_params_alloc_moments(ps, err);
}

// One tensor's update (torch.optim.AdamW, foreach=False order of operations).
VLM_INLINE void adamw_kernel_body(float *w, const float *g, float *m, float *v, int64_t n, float decay, float b1, float b2,
                           float step_size, float bc2_sqrt, float eps) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float gj = g[j], wj = w[j] * decay;
        float mj = b1 * m[j] + (1.0f - b1) * gj;
        float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
        m[j] = mj;
        v[j] = vj;
        w[j] = wj - step_size * mj / (__builtin_sqrtf(vj) / bc2_sqrt + eps);
    }
}
VLM_MULTIVERSION(adamw_kernel,
                 (float *w, const float *g, float *m, float *v, int64_t n, float decay, float b1, float b2,
                  float step_size, float bc2_sqrt, float eps),
                 (w, g, m, v, n, decay, b1, b2, step_size, bc2_sqrt, eps))

#define ADAMW_CHUNK 8192 // floats per work item: whole tensors are too uneven to split by

void vlm_adamw_step(vlm_adamw *o, vlm_params *ps, float lr) {
    o->step++;
    const float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps, wd = o->cfg.weight_decay;
    // torch: step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps
    const float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
    const float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
    // one parallel region over all tensors: chunks of every trainable tensor
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t c = 0; c < (ps->total + ADAMW_CHUNK - 1) / ADAMW_CHUNK; c++) {
        int64_t lo = c * ADAMW_CHUNK, hi = lo + ADAMW_CHUNK < ps->total ? lo + ADAMW_CHUNK : ps->total;
        for (int i = 0; i < ps->n; i++) { // the tensors overlapping [lo, hi)
            const vlm_param *p = &ps->p[i];
            int64_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
            if (p->frozen || a >= b) continue;
            const float decay = p->no_decay ? 1.0f : 1.0f - lr * wd;
            adamw_kernel(ps->data + a, ps->grad + a, ps->m + a, ps->v + a, b - a, decay, b1, b2, step_size, bc2_sqrt,
                         eps);
        }
    }
}

void vlm_adamw_step_groups(vlm_adamw *o, vlm_params *ps, const int *group, const float *scale, int G, float lr,
                           uint8_t *saved) {
    if (!group) {
        vlm_adamw_step(o, ps, lr);
        return;
    }
    int64_t step0 = o->step;
    for (int i = 0; i < ps->n; i++) saved[i] = (uint8_t)ps->p[i].frozen;
    for (int g = 0; g < G; g++) {
        int any = 0;
        for (int i = 0; i < ps->n; i++) {
            ps->p[i].frozen = saved[i] || group[i] != g;
            any |= !ps->p[i].frozen;
        }
        if (!any) continue;
        o->step = step0;
        vlm_adamw_step(o, ps, lr * scale[g]);
    }
    for (int i = 0; i < ps->n; i++) ps->p[i].frozen = saved[i];
    o->step = step0 + 1;
}

vlm_status vlm_sgd_init(vlm_sgd *o, vlm_params *ps, float lr, float momentum, float wd, int nesterov, vlm_error *err) {
    o->lr = lr;
    o->momentum = momentum;
    o->weight_decay = wd;
    o->nesterov = nesterov;
    o->step = 0;
    return vlm_params_alloc_moments(ps, err);
}

void vlm_sgd_step(vlm_sgd *o, vlm_params *ps, float lr) {
    const float mom = o->momentum;
    const int first = o->step == 0;
    o->step++;
    for (int i = 0; i < ps->n; i++) {
        const vlm_param *p = &ps->p[i];
        if (p->frozen) continue;
        float *w = ps->data + p->offset, *g = ps->grad + p->offset, *buf = ps->m + p->offset;
        const float wd = p->no_decay ? 0.0f : o->weight_decay;
        for (int64_t j = 0; j < p->numel; j++) {
            float d = g[j] + wd * w[j];
            if (mom != 0) {
                buf[j] = first ? d : mom * buf[j] + d;
                d = o->nesterov ? d + mom * buf[j] : buf[j];
            }
            w[j] -= lr * d;
        }
    }
}

float vlm_clip_grad_norm(vlm_params *ps, float max_norm) {
    double s = 0;
    for (int i = 0; i < ps->n; i++) {
        const vlm_param *p = &ps->p[i];
        if (p->frozen) continue;
        const float *g = ps->grad + p->offset;
        for (int64_t j = 0; j < p->numel; j++) s += (double)g[j] * g[j];
    }
    float norm = (float)sqrt(s);
    if (max_norm > 0 && norm > max_norm) vlm_grad_scale(ps, max_norm / (norm + 1e-6f));
    return norm;
}

void vlm_grad_scale(vlm_params *ps, float sc) {
    for (int i = 0; i < ps->n; i++) {
        const vlm_param *p = &ps->p[i];
        if (p->frozen) continue;
        float *g = ps->grad + p->offset;
        for (int64_t j = 0; j < p->numel; j++) g[j] *= sc;
    }
}

int vlm_grads_finite(const vlm_params *ps) {
    for (int i = 0; i < ps->n; i++) {
        const vlm_param *p = &ps->p[i];
        if (p->frozen) continue;
        const float *g = ps->grad + p->offset;
        for (int64_t j = 0; j < p->numel; j++)
            if (!isfinite(g[j])) return 0;
    }
    return 1;
}

float vlm_sched_lr(const vlm_sched *s, int64_t step) {
    if (step < s->warmup) return s->base_lr * (float)(step + 1) / (float)s->warmup;
    switch (s->kind) {
    case VLM_SCHED_CONST: return s->base_lr;
    case VLM_SCHED_COSINE: {
        int64_t e = step - s->warmup, es = s->total - s->warmup;
        if (es <= 0) return s->base_lr;
        if (e > es) e = es;
        return 0.5f * (1.0f + cosf((float)M_PI * (float)e / (float)es)) * s->base_lr;
    }
    case VLM_SCHED_CONST_COOLDOWN: {
        int64_t start = s->total - s->cooldown;
        if (step < start) return s->base_lr;
        int64_t e = step - start, es = s->total - start;
        if (es <= 0) return s->base_lr;
        if (e > es) e = es;
        float decay = powf(1.0f - (float)e / (float)es, s->cooldown_power > 0 ? s->cooldown_power : 1.0f);
        return decay * (s->base_lr - s->cooldown_end_lr) + s->cooldown_end_lr;
    }
    }
    return s->base_lr;
}

int vlm_sched_parse(const char *name, vlm_sched_kind *out) {
    if (!strcmp(name, "cosine")) *out = VLM_SCHED_COSINE;
    else if (!strcmp(name, "const")) *out = VLM_SCHED_CONST;
    else if (!strcmp(name, "const-cooldown")) *out = VLM_SCHED_CONST_COOLDOWN;
    else return -1;
    return 0;
}

float vlm_sched_lr_at(const vlm_sched *s, int64_t step, int time_sched, double frac) {
    if (!time_sched) return vlm_sched_lr(s, step);
    double w = s->warmup > 0 && step < s->warmup ? (double)(step + 1) / (double)s->warmup : 1.0;
    if (frac > 1) frac = 1;
    if (frac < 0) frac = 0;
    double f = s->kind == VLM_SCHED_CONST ? 1.0 : 0.5 * (1.0 + cos(M_PI * frac));
    return (float)(s->base_lr * w * f);
}
