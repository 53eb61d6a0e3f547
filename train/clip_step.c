// Reference CLIP step (see clip_step.h).
#include "train/clip_step.h"
#include <stdlib.h>
#include <string.h>
#include "losses/contrastive.h"

typedef struct {
    vlm_tensor *img, *txt, *logits, *loss;
} fwd;

static fwd forward(vlm_ctx *c, vlm_clip *m, const float *images, const int64_t *ishape, const int32_t *text,
                   const int64_t *tshape) {
    fwd o;
    o.img = vlm_clip_encode_image(c, m, vlm_tensor_wrap(c, VLM_F32, 4, ishape, (void *)images, NULL), NULL);
    o.txt = vlm_clip_encode_text(c, m, vlm_tensor_wrap(c, VLM_I32, 2, tshape, (void *)text, NULL));
    o.logits = vlm_clip_logits(c, m, o.img, o.txt);
    o.loss = vlm_loss_clip(c, o.logits, NULL);
    return o;
}

void vlm_clip_step_result_free(vlm_clip_step_result *r) {
    free(r->image_features);
    free(r->grads);
    free(r->adamw_losses);
    memset(r, 0, sizeof *r);
}

vlm_status vlm_clip_step(vlm_clip *m, const float *images, const int64_t ishape[4], const int32_t *text,
                         const int64_t tshape[2], int adamw_steps, vlm_adamw_cfg ac, vlm_clip_step_result *res,
                         vlm_error *err) {
    memset(res, 0, sizeof *res);
    if (ishape[0] != tshape[0]) return vlm_errorf(err, VLM_ERR_SHAPE, "clip-step: %lld images but %lld texts",
                                                  (long long)ishape[0], (long long)tshape[0]);
    vlm_ctx c;
    vlm_status st = vlm_ctx_init(&c, 16u << 20, 0, err);
    if (st) return st;
    c.training = 0;
    int64_t B = ishape[0], E = m->cfg.embed_dim;
    res->B = B;
    res->E = E;
    res->adamw_steps = adamw_steps;
    res->image_features = malloc(sizeof(float) * (size_t)(2 * B * E + B * B));
    res->grads = malloc(sizeof(float) * (size_t)m->ps.total);
    res->adamw_losses = adamw_steps > 0 ? malloc(sizeof(float) * (size_t)(adamw_steps + 1)) : NULL;
    if (!res->image_features || !res->grads || (adamw_steps > 0 && !res->adamw_losses)) {
        st = vlm_errorf(err, VLM_ERR_OOM, "clip-step: out of memory");
        goto done;
    }
    res->text_features = res->image_features + B * E;
    res->logits_per_image = res->text_features + B * E;
    vlm_params_zero_grad(&m->ps);
    fwd o = forward(&c, m, images, ishape, text, tshape);
    if (!o.loss || vlm_backward(&c, o.loss)) goto ctx_fail;
    memcpy(res->image_features, vlm_f32(o.img), sizeof(float) * (size_t)(B * E));
    memcpy(res->text_features, vlm_f32(o.txt), sizeof(float) * (size_t)(B * E));
    memcpy(res->logits_per_image, vlm_f32(o.logits), sizeof(float) * (size_t)(B * B));
    res->loss = vlm_f32(o.loss)[0];
    memcpy(res->grads, m->ps.grad, sizeof(float) * (size_t)m->ps.total);
    if (adamw_steps > 0) {
        vlm_adamw opt;
        if ((st = vlm_adamw_init(&opt, &m->ps, ac, err))) goto done;
        for (int k = 0; k <= adamw_steps; k++) {
            vlm_ctx_reset(&c);
            vlm_params_zero_grad(&m->ps);
            c.grad_enabled = k < adamw_steps;
            o = forward(&c, m, images, ishape, text, tshape);
            if (!o.loss || (k < adamw_steps && vlm_backward(&c, o.loss))) goto ctx_fail;
            res->adamw_losses[k] = vlm_f32(o.loss)[0];
            if (k == adamw_steps) break;
            vlm_adamw_step(&opt, &m->ps, ac.lr);
            vlm_clip_clamp_logit_scale(m);
        }
    }
    st = VLM_OK;
    goto done;
ctx_fail:
    st = c.status;
    if (err) *err = c.err;
done:
    vlm_ctx_free(&c);
    if (st) vlm_clip_step_result_free(res);
    return st;
}
