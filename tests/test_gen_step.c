// vlm_gen_train_step (train/generate.h), the diffusion training step, on a
// tiny DiT and data built in memory: x_t is q_sample(x0, eps) of the schedule;
// the loss is the eps-MSE of an independent forward on the step's own inputs;
// the conditions are the data's rows (dropped with p_uncond); the step is a
// function of (seed, step, sample) alone, so a repeat gives bit-identical
// loss and gradients and a rank's share of the global batch draws exactly
// what the same samples draw in a single-rank step.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"
#include "testutil.h"
#include "train/generate.h"

enum { S = 8, C = 3, E = 16, N = 6, D = C * S * S };

static vlm_gen_step_buf make_buf(int B, int R, int GB, double p_uncond) {
    vlm_gen_step_buf b = {.B = B, .R = R, .GB = GB, .seed = 11, .hflip = 0.5, .p_uncond = p_uncond};
    b.x0 = malloc(sizeof(float) * B * D), b.xt = malloc(sizeof(float) * B * D), b.eps = malloc(sizeof(float) * B * D);
    b.emb = malloc(sizeof(float) * B * E), b.sw = malloc(sizeof(float) * B);
    b.tt = malloc(sizeof(int32_t) * B), b.drop = malloc((size_t)B);
    return b;
}

static void free_buf(vlm_gen_step_buf *b) {
    free(b->x0), free(b->xt), free(b->eps), free(b->emb), free(b->sw), free(b->tt), free(b->drop);
}

int main(void) {
    vlm_error err = {0};
    vlm_gen g;
    memset(&g, 0, sizeof g);
    vlm_dit_cfg cfg;
    vlm_dit_cfg_default(&cfg);
    cfg.image_size = S, cfg.patch_size = 4, cfg.in_channels = C, cfg.width = 32, cfg.layers = 2, cfg.heads = 2;
    cfg.cond_dim = E, cfg.timesteps = 100;
    CHECK(vlm_dit_init(&g.dit, &cfg, &err) == VLM_OK, "dit: %s", err.msg);
    vlm_dit_init_weights(&g.dit, 2);
    for (int64_t i = 0; i < g.dit.ps.total; i++) // adaLN-zero starts at 0: perturb so every weight matters
        g.dit.ps.data[i] += 0.02f * (float)((i * 2654435761u) % 1000) / 1000.0f - 0.01f;
    vlm_diff_schedule sch;
    CHECK(vlm_diff_schedule_init(&sch, VLM_DIFF_LINEAR, cfg.timesteps, &err) == VLM_OK, "schedule: %s", err.msg);
    // the data: N random 8x8 images, two conditions
    vlm_gen_data d;
    memset(&d, 0, sizeof d);
    d.n = N, d.S = S, d.n_emb = 2;
    d.rgb = malloc((size_t)N * S * S * 3), d.row = malloc(sizeof(int32_t) * N), d.emb = malloc(sizeof(float) * 2 * E);
    vlm_rng rng;
    vlm_rng_init(&rng, 3, 1, 0);
    for (int i = 0; i < N * S * S * 3; i++) d.rgb[i] = (uint8_t)vlm_rng_below(&rng, 256);
    for (int i = 0; i < N; i++) d.row[i] = i % 2;
    for (int i = 0; i < 2 * E; i++) d.emb[i] = vlm_rng_normal(&rng);
    const uint32_t order[N] = {4, 1, 5, 0, 3, 2};
    vlm_ctx c;
    vlm_ctx_init(&c, 32u << 20, 0, &err);

    // one step of the whole batch
    vlm_gen_step_buf b = make_buf(N, 0, N, 0.5);
    double loss = 0, loss2 = 0;
    vlm_params_zero_grad(&g.dit.ps);
    CHECK(vlm_gen_train_step(&c, &g, &sch, &d, order, 7, 2, &b, &loss, &err) == VLM_OK, "step: %s", err.msg);
    float *grad = malloc(sizeof(float) * (size_t)g.dit.ps.total);
    memcpy(grad, g.dit.ps.grad, sizeof(float) * (size_t)g.dit.ps.total);
    CHECK(isfinite(loss) && loss > 0 && tu_max_abs(grad, g.dit.ps.total) > 0, "loss %g, gradient non-zero", loss);
    // x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, conditions from the sample's row
    int drops = 0;
    for (int bi = 0; bi < N; bi++) {
        const double ab = sch.alphas_cumprod[b.tt[bi]];
        double worst = 0;
        for (int j = 0; j < D; j++)
            worst = fmax(worst, fabs(b.xt[bi * D + j] - (sqrt(ab) * b.x0[bi * D + j] + sqrt(1 - ab) * b.eps[bi * D + j])));
        CHECK(worst < 1e-5, "sample %d: x_t off q_sample by %g", bi, worst);
        CHECK(b.tt[bi] >= 0 && b.tt[bi] < cfg.timesteps, "timestep in range");
        const uint32_t i = order[(2 + bi) % N];
        CHECK(!memcmp(b.emb + bi * E, d.emb + d.row[i] * E, sizeof(float) * E), "sample %d's condition is its row", bi);
        drops += b.drop[bi] != 0;
    }
    // the loss from an independent forward on the same inputs
    vlm_ctx_reset(&c);
    c.grad_enabled = 0, c.training = 1;
    int64_t xs[4] = {N, C, S, S}, es[2] = {N, E};
    vlm_tensor *pred = vlm_dit_forward(&c, &g.dit, vlm_tensor_wrap(&c, VLM_F32, 4, xs, b.xt, NULL), b.tt,
                                       vlm_tensor_wrap(&c, VLM_F32, 2, es, b.emb, NULL), b.drop);
    double mse = 0;
    for (int j = 0; pred && j < N * D; j++) mse += pow((double)vlm_f32(pred)[j] - b.eps[j], 2) / (N * D);
    CHECK(pred && fabs(mse - loss) < 1e-5 * loss, "loss %.8f vs the eps-MSE %.8f", loss, mse);
    // a repeat: bit-identical
    vlm_params_zero_grad(&g.dit.ps);
    CHECK(vlm_gen_train_step(&c, &g, &sch, &d, order, 7, 2, &b, &loss2, &err) == VLM_OK && loss2 == loss &&
              !memcmp(grad, g.dit.ps.grad, sizeof(float) * (size_t)g.dit.ps.total),
          "the same step again: loss %.9g vs %.9g, gradients bitwise equal", loss2, loss);
    vlm_params_zero_grad(&g.dit.ps);
    CHECK(vlm_gen_train_step(&c, &g, &sch, &d, order, 8, 2, &b, &loss2, &err) == VLM_OK && loss2 != loss,
          "another step draws other noise");

    // rank 1 of 2 with 3 samples each: samples 3..5 of the global batch
    vlm_gen_step_buf h = make_buf(3, 1, N, 0.5);
    CHECK(vlm_gen_train_step(&c, &g, &sch, &d, order, 7, 2 + 3, &h, &loss2, &err) == VLM_OK, "rank 1: %s", err.msg);
    vlm_gen_train_step(&c, &g, &sch, &d, order, 7, 2, &b, &loss, &err);
    for (int bi = 0; bi < 3; bi++)
        CHECK(h.tt[bi] == b.tt[3 + bi] && h.drop[bi] == b.drop[3 + bi] &&
                  !memcmp(h.eps + bi * D, b.eps + (3 + bi) * D, sizeof(float) * D) &&
                  !memcmp(h.xt + bi * D, b.xt + (3 + bi) * D, sizeof(float) * D),
              "rank 1's sample %d draws what it draws in the whole batch", bi);
    free_buf(&h);

    // p_uncond 1: every condition dropped; 0: none
    free_buf(&b);
    b = make_buf(N, 0, N, 1.0);
    vlm_gen_train_step(&c, &g, &sch, &d, order, 7, 0, &b, &loss, &err);
    int all = 1;
    for (int bi = 0; bi < N; bi++) all &= b.drop[bi] != 0;
    CHECK(all, "p_uncond 1 drops every condition");
    free_buf(&b);
    b = make_buf(N, 0, N, 0.0);
    vlm_gen_train_step(&c, &g, &sch, &d, order, 7, 0, &b, &loss, &err);
    int none = 1;
    for (int bi = 0; bi < N; bi++) none &= b.drop[bi] == 0;
    CHECK(none, "p_uncond 0 keeps every condition (p 0.5 dropped %d of %d)", drops, N);
    free_buf(&b);

    free(grad);
    free(d.rgb), free(d.row), free(d.emb);
    vlm_ctx_free(&c);
    vlm_diff_schedule_free(&sch);
    vlm_dit_free(&g.dit);
    return tu_done("test_gen_step");
}
