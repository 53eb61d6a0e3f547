// The DiT denoiser (fusion/dit.c) against PyTorch (tests/fixtures/dit.safetensors,
// tests/reference/make_dit_fixtures.py): positional table, timestep embedding,
// eps prediction, loss and every parameter gradient (adaLN-Zero blocks with
// random modulation weights, extra condition tokens, a dropped row), plus the
// adaLN-Zero property (freshly initialised: eps = 0, grads only where expected).
// (The gradients are checked against PyTorch's autograd, not by finite
// differences through the whole model; the ops' own finite-difference checks
// are in test_ops_grad.)
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "core/transformer.h"
#include "fusion/dit.h"
#include "testutil.h"

enum { B = 3, S = 8, CI = 3, W = 16, E = 8 };

static vlm_dit_cfg tiny_cfg(void) {
    vlm_dit_cfg c;
    vlm_dit_cfg_default(&c);
    c.image_size = S, c.patch_size = 2, c.in_channels = CI, c.width = W, c.heads = 2, c.layers = 2, c.cond_dim = E,
    c.cond_tokens = 2, c.freq_dim = 16;
    return c;
}

static float *get(const vlm_st_file *f, const char *name, int64_t n) {
    const vlm_st_entry *e = vlm_st_find(f, name);
    CHECK(e && e->numel == n && e->dtype == VLM_F32, "fixture tensor %s missing or not %lld floats", name, (long long)n);
    if (!e || e->numel != n) return NULL;
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, vlm_st_data(f, e), sizeof(float) * (size_t)n);
    return p;
}

// fixture: dit.safetensors (2 blocks) or, with long_skip, dit_skip.safetensors
// (5 blocks: 2 U-ViT long skips around a middle block).
static void test_reference(const char *fixture, int long_skip) {
    vlm_st_file f;
    vlm_error err;
    if (vlm_st_read(&f, tu_src(fixture), &err) != VLM_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    vlm_dit d;
    vlm_dit_cfg cfg = tiny_cfg();
    if (long_skip) cfg.long_skip = 1, cfg.layers = 5;
    CHECK(vlm_dit_init(&d, &cfg, &err) == VLM_OK, "%s", err.msg);
    vlm_dit_init_weights(&d, 1);
    // The C sin-cos table and timestep embedding against DiT's numpy/torch code.
    float *pos_ref = get(&f, "pos_ref", 16 * W), *temb_ref = get(&f, "temb_ref", B * 16), *tf = get(&f, "t", B);
    float temb[B * 16];
    int32_t t[B];
    for (int b = 0; b < B; b++) t[b] = (int32_t)tf[b];
    vlm_dit_timestep_embedding(t, B, 16, temb);
    CHECK(tu_rel_err(vlm_f32(vlm_params_get(&d.ps, d.pos)), pos_ref, 16 * W, 1e-3) < 1e-5, "pos_embed table");
    CHECK(tu_rel_err(temb, temb_ref, B * 16, 1e-3) < 1e-5, "timestep embedding");
    // Load every parameter by name.
    for (int i = 0; i < d.ps.n; i++) {
        vlm_param *p = &d.ps.p[i];
        if (p->frozen && !vlm_st_find(&f, p->name)) continue; // y_embedder.mean / inv_scale: identity (0, 1)
        CHECK(vlm_st_get(&f, p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data, &err) == VLM_OK, "%s", err.msg);
    }
    float *xt = get(&f, "xt", B * CI * S * S), *emb = get(&f, "emb", B * E), *dropf = get(&f, "drop", B);
    float *eps = get(&f, "eps", B * CI * S * S), *out = get(&f, "out", B * CI * S * S), *loss_ref = get(&f, "loss", 1);
    uint8_t drop[B];
    for (int b = 0; b < B; b++) drop[b] = dropf[b] != 0;
    vlm_ctx c;
    CHECK(vlm_ctx_init(&c, 1 << 20, 0, &err) == VLM_OK, "%s", err.msg);
    vlm_params_zero_grad(&d.ps);
    vlm_tensor *x = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, xt, NULL);
    vlm_tensor *e = vlm_tensor_wrap(&c, VLM_F32, 2, (int64_t[]){B, E}, emb, NULL);
    vlm_tensor *y = vlm_dit_forward(&c, &d, x, t, e, drop);
    vlm_tensor *target = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, eps, NULL);
    vlm_tensor *loss = vlm_op_mse(&c, y, target);
    CHECK(loss && vlm_backward(&c, loss) == VLM_OK, "forward/backward: %s", c.err.msg);
    if (loss) {
        double e_out = tu_rel_err(vlm_f32(y), out, B * CI * S * S, 1e-2);
        CHECK(e_out < 1e-4, "eps prediction rel err %.3g", e_out);
        CHECK(fabs(vlm_f32(loss)[0] - loss_ref[0]) < 1e-5 * fabs(loss_ref[0]), "loss %.7g vs %.7g", vlm_f32(loss)[0],
              loss_ref[0]);
        double worst = 0;
        const char *wn = "";
        for (int i = 0; i < d.ps.n; i++) {
            vlm_param *p = &d.ps.p[i];
            if (p->frozen) continue;
            char gn[200];
            snprintf(gn, sizeof gn, "grad.%s", p->name);
            float *g = get(&f, gn, p->numel);
            if (!g) continue;
            CHECK(tu_max_abs(g, p->numel) > 1e-8, "%s: reference gradient is all zero", gn);
            double er = tu_rel_err(p->t.grad, g, p->numel, 1e-4);
            if (er > worst) worst = er, wn = p->name;
            CHECK(er < 1e-3, "%s: rel err %.3g", gn, er);
            free(g);
        }
        printf("  dit%s vs torch: out rel %.2e, loss %.7g, worst grad rel %.2e (%s)\n", long_skip ? " (long skips)" : "", e_out, vlm_f32(loss)[0], worst, wn);
    }
    // The embedding statistics: mean m and inv_scale s give the outputs of
    // feeding (emb - m) * s with the identity statistics.
    if (loss) {
        float e2[B * E], want[B * CI * S * S];
        memcpy(want, vlm_f32(y), sizeof want);
        vlm_dit_set_cond_stats(&d, emb, B);
        float *m = vlm_f32(vlm_params_get(&d.ps, d.y_mean)), s = vlm_f32(vlm_params_get(&d.ps, d.y_iscale))[0];
        double rms = 0;
        for (int i = 0; i < B * E; i++) rms += (double)(emb[i] - m[i % E]) * (emb[i] - m[i % E]);
        CHECK(fabs(sqrt(rms / B) * s - 1) < 1e-5, "inv_scale %g is not 1/RMS", s);
        vlm_ctx_reset(&c);
        x = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, xt, NULL); // (the arena was reset)
        vlm_tensor *y1 = vlm_dit_forward(&c, &d, x, t, vlm_tensor_wrap(&c, VLM_F32, 2, (int64_t[]){B, E}, emb, NULL), drop);
        float y1c[B * CI * S * S];
        if (y1) memcpy(y1c, vlm_f32(y1), sizeof y1c);
        for (int i = 0; i < B * E; i++) e2[i] = (emb[i] - m[i % E]) * s;
        vlm_fill_const(vlm_params_get(&d.ps, d.y_mean), 0.0f);
        vlm_fill_const(vlm_params_get(&d.ps, d.y_iscale), 1.0f);
        vlm_ctx_reset(&c);
        x = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, xt, NULL);
        vlm_tensor *y2 = vlm_dit_forward(&c, &d, x, t, vlm_tensor_wrap(&c, VLM_F32, 2, (int64_t[]){B, E}, e2, NULL), drop);
        CHECK(y1 && y2 && tu_rel_err(y1c, vlm_f32(y2), B * CI * S * S, 1e-3) < 1e-5, "statistics differ from pre-normalised input");
        CHECK(y1 && tu_rel_err(y1c, want, B * CI * S * S, 1e-3) > 1e-3, "statistics had no effect");
    }
    free(pos_ref), free(temb_ref), free(tf), free(xt), free(emb), free(dropf), free(eps), free(out), free(loss_ref);
    vlm_ctx_free(&c);
    vlm_dit_free(&d);
    vlm_st_free(&f);
}

// adaLN-Zero: a fresh model predicts eps = 0 exactly and its first gradients
// reach only the final linear layer (every block is the identity, the final
// modulation and linear are zero).
static void test_zero_init(void) {
    vlm_error err;
    vlm_dit d;
    vlm_dit_cfg cfg = tiny_cfg();
    CHECK(vlm_dit_init(&d, &cfg, &err) == VLM_OK, "%s", err.msg);
    vlm_dit_init_weights(&d, 7);
    vlm_ctx c;
    vlm_ctx_init(&c, 1 << 20, 0, &err);
    vlm_rng rng;
    vlm_rng_init(&rng, 3, 0, 0);
    float xt[B * CI * S * S], emb[B * E], eps[B * CI * S * S];
    for (int i = 0; i < B * CI * S * S; i++) xt[i] = vlm_rng_normal(&rng), eps[i] = vlm_rng_normal(&rng);
    for (int i = 0; i < B * E; i++) emb[i] = vlm_rng_normal(&rng);
    int32_t t[B] = {1, 500, 999};
    vlm_tensor *x = vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, xt, NULL);
    vlm_tensor *e = vlm_tensor_wrap(&c, VLM_F32, 2, (int64_t[]){B, E}, emb, NULL);
    vlm_tensor *y = vlm_dit_forward(&c, &d, x, t, e, NULL);
    vlm_tensor *loss = vlm_op_mse(&c, y, vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, eps, NULL));
    CHECK(loss && vlm_backward(&c, loss) == VLM_OK, "%s", c.err.msg);
    if (loss) {
        CHECK(tu_max_abs(vlm_f32(y), B * CI * S * S) == 0, "fresh DiT predicts nonzero eps");
        for (int i = 0; i < d.ps.n; i++) {
            vlm_param *p = &d.ps.p[i];
            double g = tu_max_abs(p->t.grad, p->numel);
            int expect = strstr(p->name, "final_layer.linear") != NULL;
            CHECK(expect ? g > 0 : g == 0, "%s: first gradient %g (expected %s)", p->name, g, expect ? "nonzero" : "zero");
        }
    }
    // Bad inputs are errors that name the op and shapes.
    vlm_ctx_reset(&c);
    int32_t bad_t[B] = {0, 1000, 3};
    CHECK(!vlm_dit_forward(&c, &d, vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S, S}, xt, NULL), bad_t,
                           vlm_tensor_wrap(&c, VLM_F32, 2, (int64_t[]){B, E}, emb, NULL), NULL) &&
              strstr(c.err.msg, "timestep 1000"),
          "timestep out of range not reported: %s", c.err.msg);
    vlm_ctx_reset(&c);
    c.status = VLM_OK;
    CHECK(!vlm_dit_forward(&c, &d, vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){B, CI, S - 2, S}, xt, NULL), t, NULL,
                           NULL) &&
              strstr(c.err.msg, "x_t"),
          "wrong image shape not reported: %s", c.err.msg);
    // Config JSON round trip.
    char *js = vlm_dit_cfg_to_json(&cfg);
    vlm_dit_cfg back;
    CHECK(js && vlm_dit_cfg_from_json(js, &back, &err) == VLM_OK && memcmp(&back, &cfg, sizeof cfg) == 0,
          "config JSON round trip: %s", js ? js : "(null)");
    free(js);
    cfg.long_skip = 1; // written only when on; read back
    js = vlm_dit_cfg_to_json(&cfg);
    CHECK(js && strstr(js, "\"long_skip\":true") && vlm_dit_cfg_from_json(js, &back, &err) == VLM_OK &&
              memcmp(&back, &cfg, sizeof cfg) == 0,
          "long-skip config JSON round trip: %s", js ? js : "(null)");
    free(js);
    cfg.layers = 1;
    CHECK(vlm_dit_cfg_check(&cfg, &err) != VLM_OK && strstr(err.msg, "long skips"), "long skips with 1 layer accepted");
    cfg.layers = 300;
    CHECK(vlm_dit_cfg_check(&cfg, &err) != VLM_OK && strstr(err.msg, "long skips"), "long skips with 300 layers accepted");
    cfg = tiny_cfg();
    CHECK(vlm_dit_cfg_from_json("{\"width\": 16}", &back, &err) != VLM_OK && strstr(err.msg, "dit config"),
          "incomplete config accepted");
    vlm_ctx_free(&c);
    vlm_dit_free(&d);
}

int main(void) {
    test_reference("tests/fixtures/dit.safetensors", 0);
    test_reference("tests/fixtures/dit_skip.safetensors", 1);
    test_zero_init();
    return tu_done("test_dit");
}
