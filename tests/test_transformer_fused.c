// The fused transformer stack (vlm_op_transformer, what vlm_transformer_forward
// runs) against the per-op block chain (vlm_transformer_forward_ops): output,
// input gradient and every parameter gradient to <= 1e-5 relative; central
// finite differences of its backward (input and a sample of every parameter
// kind of every layer, with a guard that no checked gradient is all zero);
// frozen parameters and an input without gradient; no-grad mode; a
// pooling-like loss (gradient on a few rows only). Cases cover
// causal and bidirectional attention, key padding (including a sequence whose
// keys are all padded), QuickGELU, GELU (erf and tanh), a non-default
// mlp_width, one head, sequence lengths that are not multiples of 8 and more
// rows than one processing chunk.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/transformer.h"
#include "tests/testutil.h"

typedef struct {
    const char *name;
    int width, heads, layers, mlp;
    vlm_act act;
    int causal;
    int pad; // 0 none, 1 ragged tails, 2 ragged tails + one sequence fully padded
    int64_t B, T;
} tcase;

static const tcase cases[] = {
    {"quickgelu_causal_pad", 16, 2, 2, 0, VLM_ACT_QUICK_GELU, 1, 1, 3, 7},
    {"gelu_bidir_pad_allmasked", 16, 4, 2, 40, VLM_ACT_GELU, 0, 2, 3, 6},
    {"gelu_causal_3layers", 24, 3, 3, 0, VLM_ACT_GELU, 1, 0, 2, 9},
    {"gelu_tanh_bidir_1head", 8, 1, 1, 0, VLM_ACT_GELU_TANH, 0, 0, 2, 5},
    {"gelu_vit_like", 32, 2, 2, 0, VLM_ACT_GELU, 0, 0, 4, 17},
    // > 512 rows: the fused op works in chunks of whole sequences (57 + 13 here)
    {"quickgelu_causal_chunks", 8, 2, 2, 0, VLM_ACT_QUICK_GELU, 1, 1, 70, 9},
};

typedef struct {
    const tcase *tc;
    vlm_params ps;
    vlm_transformer tr;
    vlm_ctx c;
    float *x, *dx, *R, *y;
    uint8_t *pad;
    int64_t n; // B * T * C
} model;

static const char *kinds[12] = {"ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                                "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
                                "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};

static int param_index(const model *m, int layer, int kind) {
    const vlm_block *b = &m->tr.blocks[layer];
    int idx[12] = {b->ln1_w, b->ln1_b, b->in_w, b->in_b, b->out_w, b->out_b,
                   b->ln2_w, b->ln2_b, b->fc_w, b->fc_b, b->proj_w, b->proj_b};
    return idx[kind];
}

static int setup(model *m, const tcase *tc) {
    memset(m, 0, sizeof *m);
    m->tc = tc;
    vlm_error err = {0};
    vlm_params_init(&m->ps);
    vlm_transformer_cfg cfg = {tc->width, tc->heads, tc->layers, tc->mlp, tc->act, tc->causal, 1e-5f};
    if (vlm_transformer_init(&m->tr, &m->ps, "transformer.", cfg, &err) || vlm_params_alloc(&m->ps, &err) ||
        vlm_ctx_init(&m->c, 1 << 16, 1, &err)) {
        CHECK(0, "%s: setup: %s", tc->name, err.msg);
        return 0;
    }
    vlm_rng rng;
    vlm_rng_init(&rng, 7, VLM_RNG_INIT, 0);
    vlm_transformer_init_weights(&m->tr, &m->ps, &rng);
    // Non-trivial LN affine and biases so that every parameter gets a gradient.
    for (int l = 0; l < tc->layers; l++)
        for (int k = 0; k < 12; k++) {
            vlm_tensor *p = vlm_params_get(&m->ps, param_index(m, l, k));
            int is_ln_w = k == 0 || k == 6, is_bias = k == 1 || k == 3 || k == 5 || k == 7 || k == 9 || k == 11;
            for (int64_t i = 0; i < vlm_numel(p); i++) {
                if (is_ln_w) vlm_f32(p)[i] = 1.0f + 0.2f * vlm_rng_normal(&rng);
                else if (is_bias) vlm_f32(p)[i] = 0.1f * vlm_rng_normal(&rng);
                else vlm_f32(p)[i] *= 1.5f; // sharper attention than the default init
            }
        }
    m->n = tc->B * tc->T * tc->width;
    m->x = malloc(sizeof(float) * (size_t)m->n);
    m->dx = calloc((size_t)m->n, sizeof(float));
    m->R = malloc(sizeof(float) * (size_t)m->n);
    m->y = malloc(sizeof(float) * (size_t)m->n);
    m->pad = calloc((size_t)(tc->B * tc->T), 1);
    for (int64_t i = 0; i < m->n; i++) {
        m->x[i] = vlm_rng_normal(&rng);
        m->R[i] = vlm_rng_uniform(&rng) - 0.5f;
    }
    if (tc->pad)
        for (int64_t b = 0; b < tc->B; b++) {
            int64_t valid = tc->T - b % tc->T; // sequence b: last b mod T keys padded
            if (tc->pad == 2 && b == tc->B - 1) valid = 0;
            for (int64_t j = valid < 0 ? 0 : valid; j < tc->T; j++) m->pad[b * tc->T + j] = 1;
        }
    return 1;
}

static void teardown(model *m) {
    vlm_ctx_free(&m->c);
    vlm_transformer_free(&m->tr);
    vlm_params_free(&m->ps);
    free(m->x);
    free(m->dx);
    free(m->R);
    free(m->y);
    free(m->pad);
}

// loss = sum(stack(x) * R). fused: vlm_op_transformer, else the per-op chain.
// With grad: zeroes and fills the parameter grads and m->dx (when x_grad).
// Copies the output to m->y; returns the loss in double (NAN on failure).
static double run(model *m, int fused, int with_grad, int x_grad) {
    vlm_ctx *c = &m->c;
    const tcase *tc = m->tc;
    vlm_ctx_reset(c);
    c->grad_enabled = with_grad;
    if (with_grad) {
        vlm_params_zero_grad(&m->ps);
        memset(m->dx, 0, sizeof(float) * (size_t)m->n);
    }
    int64_t shape[3] = {tc->B, tc->T, tc->width};
    vlm_tensor *x = vlm_tensor_wrap(c, VLM_F32, 3, shape, m->x, with_grad && x_grad ? m->dx : NULL);
    const uint8_t *pad = tc->pad ? m->pad : NULL;
    vlm_tensor *y = fused ? vlm_op_transformer(c, &m->tr, &m->ps, x, pad)
                          : vlm_transformer_forward_ops(c, &m->tr, &m->ps, x, pad);
    if (!y) {
        fprintf(stderr, "%s: forward failed: %s\n", tc->name, c->err.msg);
        return NAN;
    }
    memcpy(m->y, vlm_f32(y), sizeof(float) * (size_t)m->n);
    double loss = 0;
    for (int64_t i = 0; i < m->n; i++) loss += (double)m->y[i] * m->R[i];
    if (with_grad) {
        vlm_tensor *r = vlm_tensor_wrap(c, VLM_F32, 3, shape, m->R, NULL);
        vlm_tensor *l = vlm_op_sum(c, vlm_op_mul(c, y, r));
        if (!l || !l->requires_grad || vlm_backward(c, l) != VLM_OK) {
            fprintf(stderr, "%s: backward failed: %s\n", tc->name, c->err.msg);
            return NAN;
        }
    }
    return loss;
}

static float *copy_of(const float *p, int64_t n) {
    float *q = malloc(sizeof(float) * (size_t)(n ? n : 1));
    memcpy(q, p, sizeof(float) * (size_t)n);
    return q;
}

// Fused vs per-op: output, dx and every parameter gradient.
static void check_vs_ops(model *m) {
    const tcase *tc = m->tc;
    double l_ops = run(m, 0, 1, 1);
    float *y_ops = copy_of(m->y, m->n), *dx_ops = copy_of(m->dx, m->n), *g_ops = copy_of(m->ps.grad, m->ps.total);
    double l_f = run(m, 1, 1, 1);
    CHECK(isfinite(l_ops) && isfinite(l_f), "%s: loss not finite", tc->name);
    double e_y = tu_rel_err(m->y, y_ops, (long)m->n, 1e-12), e_dx = tu_rel_err(m->dx, dx_ops, (long)m->n, 1e-12);
    CHECK(e_y <= 1e-5, "%s: fused output vs per-op rel err %.3g", tc->name, e_y);
    CHECK(e_dx <= 1e-5, "%s: fused dx vs per-op rel err %.3g", tc->name, e_dx);
    CHECK(tu_max_abs(m->dx, (long)m->n) > 1e-6, "%s: dx is all zero", tc->name);
    double worst = 0;
    const char *wname = "";
    for (int i = 0; i < m->ps.n; i++) {
        const vlm_param *p = &m->ps.p[i];
        double e = tu_rel_err(m->ps.grad + p->offset, g_ops + p->offset, (long)p->numel, 1e-12);
        CHECK(e <= 1e-5, "%s: %s grad vs per-op rel err %.3g", tc->name, p->name, e);
        CHECK(tu_max_abs(m->ps.grad + p->offset, (long)p->numel) > 1e-7, "%s: %s grad is all zero", tc->name, p->name);
        if (e > worst) {
            worst = e;
            wname = p->name;
        }
    }
    // No-grad mode runs the same arithmetic without saving activations.
    run(m, 1, 0, 0);
    double e_ng = tu_rel_err(m->y, y_ops, (long)m->n, 1e-12);
    CHECK(e_ng <= 1e-5, "%s: no-grad output vs per-op rel err %.3g", tc->name, e_ng);
    printf("  %-26s vs per-op: out %.2e dx %.2e params %.2e (%s) no-grad out %.2e\n", tc->name, e_y, e_dx, worst, wname,
           e_ng);
    free(y_ops);
    free(dx_ops);
    free(g_ops);
}

// Pooling-like loss: only one row per sequence (a different position per
// sequence) carries a gradient, none in every third sequence and none in
// sequences >= 57 (a whole chunk in the multi-chunk case): the fused backward then skips the zero rows of the
// top layer's MLP / out_proj work; it must still match the per-op path exactly.
static void check_pooled(model *m) {
    const tcase *tc = m->tc;
    float *dense = m->R, *pooled = calloc((size_t)m->n, sizeof(float));
    int64_t C = tc->width;
    for (int64_t b = 0; b < tc->B && b < 57; b++) {
        if (b % 3 == 2 && tc->B > 2) continue; // some sequences without any
        int64_t t = (b * 5) % tc->T;
        memcpy(pooled + (b * tc->T + t) * C, dense + (b * tc->T + t) * C, sizeof(float) * (size_t)C);
    }
    m->R = pooled;
    run(m, 0, 1, 1);
    float *dx_ops = copy_of(m->dx, m->n), *g_ops = copy_of(m->ps.grad, m->ps.total);
    run(m, 1, 1, 1);
    double e_dx = tu_rel_err(m->dx, dx_ops, (long)m->n, 1e-12), worst = 0;
    CHECK(e_dx <= 1e-5, "%s pooled: dx rel err %.3g", tc->name, e_dx);
    CHECK(tu_max_abs(m->dx, (long)m->n) > 1e-6, "%s pooled: dx all zero", tc->name);
    for (int i = 0; i < m->ps.n; i++) {
        const vlm_param *p = &m->ps.p[i];
        double e = tu_rel_err(m->ps.grad + p->offset, g_ops + p->offset, (long)p->numel, 1e-12);
        CHECK(e <= 1e-5, "%s pooled: %s grad rel err %.3g", tc->name, p->name, e);
        worst = fmax(worst, e);
    }
    printf("  %-26s pooled loss vs per-op: dx %.2e params %.2e\n", tc->name, e_dx, worst);
    m->R = dense;
    free(pooled);
    free(dx_ops);
    free(g_ops);
}

// max |fd - analytic| / max(max |analytic|, 1e-3) over `count` sampled elements of p.
static double fd_check(model *m, float *p, const float *grad, int64_t numel, int count, vlm_rng *rng) {
    double max_err = 0, max_g = tu_max_abs(grad, (long)numel);
    int checks = numel < count ? (int)numel : count;
    for (int k = 0; k < checks; k++) {
        int64_t j = numel <= count ? k : (int64_t)vlm_rng_below(rng, (uint64_t)numel);
        float save = p[j], h = 1e-3f * fmaxf(1.0f, fabsf(save));
        p[j] = save + h;
        double lp = run(m, 1, 0, 0);
        p[j] = save - h;
        double lm = run(m, 1, 0, 0);
        p[j] = save;
        double fd = (lp - lm) / (2.0 * (double)h);
        max_err = fmax(max_err, fabs(fd - grad[j]));
    }
    return max_err / fmax(max_g, 1e-3);
}

static void check_fd(model *m) {
    const tcase *tc = m->tc;
    run(m, 1, 1, 1);
    float *dx = copy_of(m->dx, m->n), *g = copy_of(m->ps.grad, m->ps.total);
    vlm_rng rng;
    vlm_rng_init(&rng, 11, 99, 0);
    double e = fd_check(m, m->x, dx, m->n, 12, &rng), worst = e;
    CHECK(e < 2e-2, "%s: fd dx rel err %.3g", tc->name, e);
    CHECK(tu_max_abs(dx, (long)m->n) > 1e-6, "%s: dx all zero", tc->name);
    const char *wname = "x";
    for (int l = 0; l < tc->layers; l++)
        for (int k = 0; k < 12; k++) {
            const vlm_param *p = &m->ps.p[param_index(m, l, k)];
            const float *pg = g + p->offset;
            CHECK(tu_max_abs(pg, (long)p->numel) > 1e-7, "%s: layer %d %s gradient all zero", tc->name, l, kinds[k]);
            double ek = fd_check(m, m->ps.data + p->offset, pg, p->numel, 3, &rng);
            CHECK(ek < 2e-2, "%s: fd layer %d %s rel err %.3g", tc->name, l, kinds[k], ek);
            if (ek > worst) {
                worst = ek;
                wname = p->name;
            }
        }
    printf("  %-26s finite differences: worst rel err %.2e (%s)\n", tc->name, worst, wname);
    free(dx);
    free(g);
}

// Frozen parameters get no gradient, the rest still match the per-op path, and
// an input without gradient is fine; with everything frozen nothing is recorded.
static void check_frozen(model *m) {
    const tcase *tc = m->tc;
    int frozen[3] = {param_index(m, 0, 2), param_index(m, tc->layers - 1, 7), param_index(m, tc->layers - 1, 9)};
    for (int k = 0; k < 3; k++) vlm_params_set_frozen(&m->ps, frozen[k], 1);
    run(m, 0, 1, 0);
    float *g_ops = copy_of(m->ps.grad, m->ps.total);
    run(m, 1, 1, 0);
    double worst = 0;
    for (int i = 0; i < m->ps.n; i++) {
        const vlm_param *p = &m->ps.p[i];
        double e = tu_rel_err(m->ps.grad + p->offset, g_ops + p->offset, (long)p->numel, 1e-12);
        if (p->frozen) {
            CHECK(tu_max_abs(m->ps.grad + p->offset, (long)p->numel) == 0, "%s: frozen %s got a gradient", tc->name, p->name);
        } else {
            CHECK(e <= 1e-5, "%s (frozen, x no grad): %s grad rel err %.3g", tc->name, p->name, e);
            worst = fmax(worst, e);
        }
    }
    CHECK(tu_max_abs(m->dx, (long)m->n) == 0, "%s: dx written although x needs no gradient", tc->name);
    printf("  %-26s with frozen params + x without grad: worst rel err %.2e\n", tc->name, worst);
    free(g_ops);
    // Everything frozen and x without gradient: plain forward, nothing on the tape.
    for (int i = 0; i < m->ps.n; i++) vlm_params_set_frozen(&m->ps, i, 1);
    vlm_ctx_reset(&m->c);
    int64_t shape[3] = {tc->B, tc->T, tc->width};
    vlm_tensor *x = vlm_tensor_wrap(&m->c, VLM_F32, 3, shape, m->x, NULL);
    vlm_tensor *y = vlm_op_transformer(&m->c, &m->tr, &m->ps, x, tc->pad ? m->pad : NULL);
    CHECK(y && !y->requires_grad && !y->grad && m->c.n_nodes == 0, "%s: all frozen: output should need no gradient",
          tc->name);
    for (int i = 0; i < m->ps.n; i++) vlm_params_set_frozen(&m->ps, i, 0);
}

static void check_errors(void) {
    model m;
    if (!setup(&m, &cases[0])) return;
    vlm_ctx_reset(&m.c);
    int64_t bad[3] = {2, 3, 5};
    vlm_tensor *x = vlm_tensor_zeros(&m.c, VLM_F32, 3, bad, 1);
    CHECK(!vlm_op_transformer(&m.c, &m.tr, &m.ps, x, NULL) && m.c.status == VLM_ERR_SHAPE &&
              strstr(m.c.err.msg, "transformer"),
          "wrong width must fail with a shape error naming the op (got '%s')", m.c.err.msg);
    teardown(&m);
}

int main(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        model m;
        if (!setup(&m, &cases[i])) continue;
        check_vs_ops(&m);
        check_pooled(&m);
        check_fd(&m);
        check_frozen(&m);
        teardown(&m);
    }
    check_errors();
    return tu_done("test_transformer_fused");
}
