// adaLN ops (DiT): layernorm without affine followed by a per-sample shift and
// scale, and the gated residual add. Fused so the [B, T, C] stream is read
// once per op instead of through three broadcast elementwise ops.
#include <math.h>
#include <string.h>
#include "core/ops_internal.h"

// Checks a per-sample modulation vector m: [B, C] with unit stride in C (a
// column slice of the [B, k*C] adaLN output is fine: any row stride).
static int check_mod(vlm_ctx *c, const char *op, const vlm_tensor *x, const vlm_tensor *m, const char *what) {
    if (!vlm_check_f32(c, op, m, what)) return 0;
    char s1[96], s2[96];
    if (m->ndim != 2 || m->shape[0] != x->shape[0] || m->shape[1] != x->shape[2] || (m->shape[1] > 1 && m->stride[1] != 1)) {
        vlm_ctx_fail(c, VLM_ERR_SHAPE, "%s: %s %s must be [B, C] (unit stride in C) for input %s", op, what,
                     vlm_shape_str(m, s1, sizeof s1), vlm_shape_str(x, s2, sizeof s2));
        return 0;
    }
    return 1;
}

static int check_x(vlm_ctx *c, const char *op, const vlm_tensor *x, const char *what) {
    if (!vlm_check_f32(c, op, x, what)) return 0;
    if (x->ndim != 3 || x->shape[2] < 1) {
        char s[96];
        vlm_ctx_fail(c, VLM_ERR_SHAPE, "%s: %s %s must be [B, T, C]", op, what, vlm_shape_str(x, s, sizeof s));
        return 0;
    }
    return 1;
}

// ---- LN (no affine) + modulate -------------------------------------------------------
// y[b,t,:] = xhat[b,t,:] * (1 + scale[b,:]) + shift[b,:]; saved: mean[B*T], rstd[B*T].
static void ln_modulate_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *sh = n->in[1], *sc = n->in[2], *y = n->out;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const float *mean = n->saved, *rstd = mean + B * T, *xd = vlm_f32(x), *scd = vlm_f32(sc);
    (void)c;
    // Parallel over samples: each b owns its shift/scale gradient row.
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *s = scd + b * sc->stride[0];
        float *dsh = sh->requires_grad ? sh->grad + b * sh->stride[0] : NULL;
        float *dsc = sc->requires_grad ? sc->grad + b * sc->stride[0] : NULL;
        for (int64_t t = 0; t < T; t++) {
            int64_t r = b * T + t;
            const float *xr = xd + r * C, *gr = y->grad + r * C;
            float m = mean[r], rs = rstd[r], sum_g = 0, sum_gx = 0;
            for (int64_t j = 0; j < C; j++) {
                float xh = (xr[j] - m) * rs, gw = gr[j] * (1.0f + s[j]);
                sum_g += gw;
                sum_gx += gw * xh;
                if (dsh) dsh[j] += gr[j];
                if (dsc) dsc[j] += gr[j] * xh;
            }
            if (x->requires_grad) {
                float *dx = x->grad + r * C, inv = 1.0f / (float)C;
                for (int64_t j = 0; j < C; j++) {
                    float xh = (xr[j] - m) * rs, gw = gr[j] * (1.0f + s[j]);
                    dx[j] += rs * (gw - inv * sum_g - xh * inv * sum_gx);
                }
            }
        }
    }
}

vlm_tensor *vlm_op_ln_modulate(vlm_ctx *c, vlm_tensor *x, vlm_tensor *shift, vlm_tensor *scale, float eps) {
    const char *op = "ln_modulate";
    if (!check_x(c, op, x, "x") || !check_mod(c, op, x, shift, "shift") || !check_mod(c, op, x, scale, "scale"))
        return NULL;
    x = vlm_ensure_contig(c, x);
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    int g = vlm_needs_grad(c, x, shift, scale);
    vlm_tensor *y = vlm_out(c, 3, x->shape, g);
    float *stats = vlm_scratch(c, 2 * B * T);
    if (!y || !stats) return NULL;
    const float *xd = vlm_f32(x), *shd = vlm_f32(shift), *scd = vlm_f32(scale);
    float *yo = vlm_f32(y);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * T; r++) {
        int64_t b = r / T;
        const float *xr = xd + r * C, *s0 = shd + b * shift->stride[0], *s1 = scd + b * scale->stride[0];
        float m, rs;
        vlm_ln_row_stats(xr, C, eps, &m, &rs);
        stats[r] = m;
        stats[B * T + r] = rs;
        float *yr = yo + r * C;
        for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * (1.0f + s1[j]) + s0[j];
    }
    if (g) {
        vlm_node *nd = vlm_record(c, op, y, ln_modulate_backward, x, shift, scale, NULL);
        if (nd) nd->saved = stats;
    }
    return y;
}

// ---- gated residual ------------------------------------------------------------------
// out[b,t,:] = x[b,t,:] + gate[b,:] * y[b,t,:]
static void gate_add_backward(vlm_ctx *c, vlm_node *n) {
    vlm_tensor *x = n->in[0], *gate = n->in[1], *y = n->in[2], *o = n->out;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const float *gd = vlm_f32(gate), *yd = vlm_f32(y);
    (void)c;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *gt = gd + b * gate->stride[0];
        float *dg = gate->requires_grad ? gate->grad + b * gate->stride[0] : NULL;
        for (int64_t t = 0; t < T; t++) {
            int64_t r = (b * T + t) * C;
            const float *go = o->grad + r;
            if (x->requires_grad)
                for (int64_t j = 0; j < C; j++) x->grad[r + j] += go[j];
            if (y->requires_grad)
                for (int64_t j = 0; j < C; j++) y->grad[r + j] += go[j] * gt[j];
            if (dg)
                for (int64_t j = 0; j < C; j++) dg[j] += go[j] * yd[r + j];
        }
    }
}

vlm_tensor *vlm_op_gate_add(vlm_ctx *c, vlm_tensor *x, vlm_tensor *gate, vlm_tensor *y) {
    const char *op = "gate_add";
    if (!check_x(c, op, x, "x") || !check_x(c, op, y, "y") || !check_mod(c, op, x, gate, "gate")) return NULL;
    char s1[96], s2[96];
    if (x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1] || x->shape[2] != y->shape[2])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "%s: x %s and y %s differ", op, vlm_shape_str(x, s1, sizeof s1),
                            vlm_shape_str(y, s2, sizeof s2));
    x = vlm_ensure_contig(c, x);
    y = vlm_ensure_contig(c, y);
    if (!x || !y) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    int g = vlm_needs_grad(c, x, gate, y);
    vlm_tensor *o = vlm_out(c, 3, x->shape, g);
    if (!o) return NULL;
    const float *xd = vlm_f32(x), *gd = vlm_f32(gate), *yd = vlm_f32(y);
    float *od = vlm_f32(o);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * T; r++) {
        const float *gt = gd + (r / T) * gate->stride[0];
        for (int64_t j = 0; j < C; j++) od[r * C + j] = xd[r * C + j] + gt[j] * yd[r * C + j];
    }
    if (g) vlm_record(c, op, o, gate_add_backward, x, gate, y, NULL);
    return o;
}
