// The text tower's length buckets (vlm_text_encoder.max_buckets): a batch of
// captions of many lengths gives the same features and the same gradient of
// every parameter with buckets as in one run at the longest length (<= 1e-5
// relative), the bucketed path really ran (more tape nodes), central finite
// differences agree with its backward on token-embedding and positional
// entries (non-zero guard), and batches where buckets save nothing (equal
// lengths, too few rows) stay one run.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"
#include "text/text_encoder.h"
#include "tests/testutil.h"

enum { V = 50, CTX = 16, W = 16, D = 8, B = 80 };

typedef struct {
    vlm_params ps;
    vlm_text_encoder t;
    vlm_ctx c;
    int32_t ids[B * CTX];
    float R[B * D], feat[B * D];
    int nodes;
} model;

static int setup(model *m) {
    memset(m, 0, sizeof *m);
    vlm_error err = {0};
    vlm_params_init(&m->ps);
    vlm_text_cfg cfg = {CTX, V, W, 2, 2, 0, D, VLM_ACT_GELU};
    if (vlm_text_init(&m->t, &m->ps, cfg, &err) || vlm_params_alloc(&m->ps, &err) ||
        vlm_ctx_init(&m->c, 8u << 20, 1, &err)) {
        CHECK(0, "setup: %s", err.msg);
        return 0;
    }
    vlm_rng rng;
    vlm_rng_init(&rng, 3, VLM_RNG_INIT, 0);
    vlm_text_init_weights(&m->t, &m->ps, &rng);
    for (int i = 0; i < B * D; i++) m->R[i] = vlm_rng_uniform(&rng) - 0.5f;
    return 1;
}

// Row b: len(b) tokens in 1..V-2, EOT (V-1, the largest id) last, zeros after.
static void fill_ids(model *m, int (*len)(int)) {
    memset(m->ids, 0, sizeof m->ids);
    for (int b = 0; b < B; b++) {
        int n = len(b);
        for (int j = 0; j < n - 1; j++) m->ids[b * CTX + j] = 1 + (b * 13 + j * 7) % (V - 2);
        m->ids[b * CTX + n - 1] = V - 1;
    }
}
static int ragged(int b) { return 1 + (b * 7) % CTX; } // 1..16 tokens
static int mostly_short(int b) { return b == 5 ? CTX : 2 + b % 4; }
static int equal(int b) { return (void)b, 9; }

// loss = sum(features * R); with grad: the parameter grads are refilled.
static double run(model *m, int buckets, int with_grad, int rows) {
    vlm_ctx *c = &m->c;
    vlm_ctx_reset(c);
    c->grad_enabled = with_grad;
    if (with_grad) vlm_params_zero_grad(&m->ps);
    m->t.max_buckets = buckets;
    vlm_tensor *f = vlm_text_forward(c, &m->t, &m->ps, vlm_tensor_wrap(c, VLM_I32, 2, (int64_t[]){rows, CTX}, m->ids, NULL));
    if (!f) {
        CHECK(0, "forward: %s", c->err.msg);
        return NAN;
    }
    m->nodes = c->n_nodes;
    memcpy(m->feat, vlm_f32(f), sizeof(float) * (size_t)(rows * D));
    double loss = 0;
    for (int i = 0; i < rows * D; i++) loss += (double)m->feat[i] * m->R[i];
    if (with_grad) {
        vlm_tensor *l = vlm_op_sum(c, vlm_op_mul(c, f, vlm_tensor_wrap(c, VLM_F32, 2, (int64_t[]){rows, D}, m->R, NULL)));
        CHECK(l && vlm_backward(c, l) == VLM_OK, "backward: %s", c->err.msg);
    }
    return loss;
}

static void test_same_as_one_run(model *m, int (*len)(int), const char *name) {
    fill_ids(m, len);
    size_t np = (size_t)m->ps.total;
    float *g1 = malloc(sizeof(float) * np), *f1 = malloc(sizeof(float) * B * D);
    run(m, 1, 1, B);
    int nodes1 = m->nodes;
    memcpy(g1, m->ps.grad, sizeof(float) * np);
    memcpy(f1, m->feat, sizeof(float) * B * D);
    run(m, 4, 1, B);
    CHECK(m->nodes > nodes1, "%s: the bucketed path ran (%d nodes against %d)", name, m->nodes, nodes1);
    double ef = tu_rel_err(m->feat, f1, B * D, 1e-6), eg = tu_rel_err(m->ps.grad, g1, (long)np, 1e-6);
    CHECK(ef <= 1e-5, "%s: features differ by %.3g", name, ef);
    CHECK(eg <= 1e-5, "%s: parameter gradients differ by %.3g", name, eg);
    CHECK(tu_max_abs(g1, (long)np) > 0, "%s: gradient is all zero", name);
    free(g1);
    free(f1);
}

// Central differences of the bucketed loss against its backward on a few
// token-embedding rows that occur in the batch and on positional entries.
static void test_finite_differences(model *m) {
    fill_ids(m, ragged);
    run(m, 4, 1, B);
    vlm_tensor *tok = vlm_params_get(&m->ps, m->t.tok_emb), *pos = vlm_params_get(&m->ps, m->t.pos_emb);
    float *targets[2] = {vlm_f32(tok), vlm_f32(pos)}, *grads[2] = {tok->grad, pos->grad};
    int64_t picks[2][4] = {{1 * W + 3, 20 * W + 7, (V - 1) * W + 0, 8 * W + 15}, {0 * W + 2, 5 * W + 9, 12 * W + 1, 15 * W + 4}};
    double worst = 0, mag = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) {
            float *p = targets[k] + picks[k][i], keep = *p, h = 1e-3f;
            double g = grads[k][picks[k][i]];
            *p = keep + h;
            double lp = run(m, 4, 0, B);
            *p = keep - h;
            double lm = run(m, 4, 0, B);
            *p = keep;
            double fd = (lp - lm) / (2.0 * h), e = fabs(fd - g) / fmax(fabs(fd), 1e-2);
            worst = e > worst ? e : worst;
            mag = fabs(g) > mag ? fabs(g) : mag;
        }
    CHECK(worst < 5e-3, "finite differences: worst relative error %.3g", worst);
    CHECK(mag > 1e-4, "finite differences: checked gradients all zero (max %.3g)", mag);
}

static void test_no_buckets_when_useless(model *m) {
    fill_ids(m, equal);
    run(m, 1, 0, B);
    int n1 = m->nodes;
    run(m, 4, 0, B);
    CHECK(m->nodes == n1, "equal lengths: one run (%d nodes against %d)", m->nodes, n1);
    fill_ids(m, ragged);
    run(m, 1, 0, 20);
    n1 = m->nodes;
    run(m, 4, 0, 20);
    CHECK(m->nodes == n1, "20 rows: one run (%d nodes against %d)", m->nodes, n1);
}

int main(void) {
    model m;
    if (setup(&m)) {
        test_same_as_one_run(&m, ragged, "ragged");
        test_same_as_one_run(&m, mostly_short, "mostly short, one long");
        test_finite_differences(&m);
        test_no_buckets_when_useless(&m);
    }
    vlm_ctx_free(&m.c);
    vlm_text_free(&m.t);
    vlm_params_free(&m.ps);
    return tu_done("test_text_buckets");
}
