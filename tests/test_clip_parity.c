// CLIP parity: vlm's clip-step against OpenAI's own outputs for the shared
// tiny model (features, logits, loss, AdamW losses), against gradients from the
// independent PyTorch model (tests/reference/make_clip_fixtures.py; the shared
// file's gradients are all zero), and against two more configs of other shapes
// (OpenAI schema with QuickGELU; open_clip schema with GELU and 3 vision heads).
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/safetensors.h"
#include "train/clip_step.h"
#include "tests/testutil.h"

static const float *get(const vlm_st_file *f, const char *name) {
    const vlm_st_entry *e = vlm_st_find(f, name);
    return e ? vlm_st_data(f, e) : NULL;
}

static void check_case(const char *name, const char *cfg_path, const char *w_path, const char *io_path,
                       const char *grads_path) {
    vlm_error err = {0};
    vlm_clip_cfg cfg;
    vlm_clip m;
    vlm_st_file io, gf;
    if (vlm_clip_cfg_load(cfg_path, &cfg, &err) || vlm_clip_init(&m, &cfg, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    if (vlm_clip_load_weights(&m, w_path, &err) || vlm_st_read(&io, io_path, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        vlm_clip_free(&m);
        return;
    }
    if (vlm_st_read(&gf, grads_path, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        vlm_st_free(&io);
        vlm_clip_free(&m);
        return;
    }
    const vlm_st_entry *ei = vlm_st_find(&io, "image"), *et = vlm_st_find(&io, "text");
    int64_t ishape[4] = {ei->shape[0], ei->shape[1], ei->shape[2], ei->shape[3]}, tshape[2] = {et->shape[0], et->shape[1]};
    vlm_clip_step_result r;
    vlm_adamw_cfg ac = {1e-3f, 0.9f, 0.98f, 1e-6f, 0.2f};
    if (vlm_clip_step(&m, vlm_st_data(&io, ei), ishape, vlm_st_data(&io, et), tshape, 3, ac, &r, &err)) {
        CHECK(0, "%s: clip step failed: %s", name, err.msg);
    } else {
        int64_t BE = r.B * r.E;
        double e_img = tu_rel_err(r.image_features, get(&io, "image_features"), BE, 1e-12);
        double e_txt = tu_rel_err(r.text_features, get(&io, "text_features"), BE, 1e-12);
        double e_log = tu_rel_err(r.logits_per_image, get(&io, "logits_per_image"), r.B * r.B, 1e-12);
        double e_loss = fabs(r.loss - *get(&io, "loss"));
        CHECK(e_img <= 1e-4 && e_txt <= 1e-4 && e_log <= 1e-4, "%s: features/logits rel err %.2e %.2e %.2e", name, e_img,
              e_txt, e_log);
        CHECK(e_loss <= 1e-5, "%s: loss %.8f vs %.8f", name, r.loss, *get(&io, "loss"));
        double e_grad = 0;
        const char *worst = "";
        char key[200];
        for (int i = 0; i < m.ps.n; i++) {
            snprintf(key, sizeof key, "grad.%s", m.ps.p[i].name);
            const float *ref = get(&gf, key);
            CHECK(ref != NULL, "%s: reference lacks %s", name, key);
            if (!ref) continue;
            CHECK(tu_max_abs(ref, m.ps.p[i].numel) > 0, "%s: reference %s is all zero", name, key);
            double e = tu_rel_err(r.grads + m.ps.p[i].offset, ref, m.ps.p[i].numel, 1e-12);
            if (e > e_grad) {
                e_grad = e;
                worst = m.ps.p[i].name;
            }
        }
        CHECK(e_grad <= 1e-3, "%s: gradient rel err %.2e (%s)", name, e_grad, worst);
        const float *al = get(&io, "adamw_losses");
        double e_adam = 0;
        for (int k = 0; al && k <= 3; k++) e_adam = fmax(e_adam, fabs(r.adamw_losses[k] - al[k]));
        CHECK(al && e_adam <= 1e-4, "%s: AdamW losses differ by %.2e", name, e_adam);
        printf("%-14s features %.1e/%.1e logits %.1e loss %.1e grads %.1e (%s) adamw %.1e\n", name, e_img, e_txt, e_log,
               e_loss, e_grad, worst, e_adam);
        vlm_clip_step_result_free(&r);
    }
    vlm_st_free(&gf);
    vlm_st_free(&io);
    vlm_clip_free(&m);
}

int main(void) {
    const char *sh = "../shared/reference/openai-clip/";
    char cfg[512], w[512], io[512];
    snprintf(cfg, sizeof cfg, "%s", tu_src("../shared/reference/openai-clip/tiny.json"));
    snprintf(w, sizeof w, "%s", tu_src("../shared/reference/openai-clip/tiny.weights.safetensors"));
    snprintf(io, sizeof io, "%s", tu_src("../shared/reference/openai-clip/tiny.io.safetensors"));
    (void)sh;
    check_case("openai_tiny", cfg, w, io, tu_src("tests/fixtures/clip/openai_tiny.grads.safetensors"));
    const char *alts[2] = {"openai_alt", "openclip_gelu"};
    for (int i = 0; i < 2; i++) {
        char a[256], b[256], c[256];
        snprintf(a, sizeof a, "tests/fixtures/clip/%s.json", alts[i]);
        snprintf(b, sizeof b, "tests/fixtures/clip/%s.weights.safetensors", alts[i]);
        snprintf(c, sizeof c, "tests/fixtures/clip/%s.io.safetensors", alts[i]);
        snprintf(cfg, sizeof cfg, "%s", tu_src(a));
        snprintf(w, sizeof w, "%s", tu_src(b));
        snprintf(io, sizeof io, "%s", tu_src(c));
        check_case(alts[i], cfg, w, io, io);
    }
    return tu_done("test_clip_parity");
}
