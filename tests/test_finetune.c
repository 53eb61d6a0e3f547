// Image classifier and `vlm finetune`: config round trip; finite-difference
// gradients through conv stem + ViT + mean pooling + MLP head (non-zero
// guard); the locked tower; layer-decay groups; model files; then the CLI on
// a generated IDX dataset: loss falls and the classifier beats chance, a
// stopped + resumed run reproduces the uninterrupted loss curve bit for bit,
// and, from a briefly pretrained CLIP, the zero-shot-initialised head scores
// exactly what `vlm zeroshot` does, as does WiSE-FT at alpha 0.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/ops.h"
#include "core/rng.h"
#include "tests/testutil.h"
#include "vision/classifier.h"

#define DIRN "finetune_data"
#define LOGS "finetune_logs"

// ---- library -------------------------------------------------------------------
static vlm_classifier_cfg tiny_cfg(void) {
    vlm_classifier_cfg c;
    vlm_vit_cfg v = {8, 2, 8, 1, 2, 16, 6, VLM_ACT_GELU, 0};
    vlm_classifier_cfg_from_vit(&c, &v, 3);
    c.stem_layers = 2;
    c.stem_ch[0] = 4;
    c.stem_ch[1] = 5;
    c.stem_act = VLM_ACT_GELU; // smooth, for finite differences
    c.pool = VLM_POOL_MEAN;
    c.head.kind = VLM_HEAD_MLP;
    c.head.hidden = 7;
    return c;
}

static float loss_of(vlm_classifier *m, vlm_ctx *c, float *img, const int32_t *y, int B, int grad) {
    vlm_ctx_reset(c);
    c->grad_enabled = grad;
    int64_t sh[4] = {B, 3, 8, 8};
    vlm_tensor *lg = vlm_classifier_forward(c, m, vlm_tensor_wrap(c, VLM_F32, 4, sh, img, NULL), 1);
    vlm_tensor *l = vlm_op_cross_entropy(c, lg, y, 0.1f);
    if (!l) return NAN;
    float v = vlm_f32(l)[0];
    if (grad && vlm_backward(c, l)) return NAN;
    return v;
}

// im2col_nhwc + linear is a convolution: same output and gradients as
// vlm_op_conv2d (NCHW, [Co, Ci, k, k] weights), for stride 1 and 2; plus
// finite differences of the op itself with a non-zero-gradient guard.
static void test_im2col(void) {
    vlm_error err;
    vlm_ctx c;
    vlm_ctx_init(&c, 1 << 20, 0, &err);
    vlm_rng r;
    vlm_rng_init(&r, 3, 1, 0);
    const int B = 2, Ci = 3, H = 7, Wd = 6, Co = 4, k = 3;
    float x_nchw[2 * 3 * 7 * 6], w_oikk[4 * 3 * 9], bias[4];
    for (int i = 0; i < B * Ci * H * Wd; i++) x_nchw[i] = vlm_rng_normal(&r);
    for (int i = 0; i < Co * Ci * 9; i++) w_oikk[i] = vlm_rng_normal(&r);
    for (int i = 0; i < Co; i++) bias[i] = vlm_rng_normal(&r);
    for (int stride = 1; stride <= 2; stride++) {
        // Reference: conv2d on NCHW, loss = sum(y * u) for a fixed random u.
        vlm_ctx_reset(&c);
        c.grad_enabled = 1;
        float gx_ref[2 * 3 * 7 * 6] = {0}, gw_ref[4 * 3 * 9] = {0}, gb_ref[4] = {0};
        int64_t xs[4] = {B, Ci, H, Wd}, wsh[4] = {Co, Ci, k, k}, bs[1] = {Co};
        vlm_tensor *x = vlm_tensor_wrap(&c, VLM_F32, 4, xs, x_nchw, gx_ref), *w = vlm_tensor_wrap(&c, VLM_F32, 4, wsh, w_oikk, gw_ref),
                   *b = vlm_tensor_wrap(&c, VLM_F32, 1, bs, bias, gb_ref);
        x->requires_grad = w->requires_grad = b->requires_grad = 1;
        vlm_tensor *y = vlm_op_conv2d(&c, x, w, b, stride, 1); // [B, Co, Ho, Wo]
        CHECK(y != NULL, "conv2d: %s", c.err.msg);
        if (!y) return;
        int64_t Ho = y->shape[2], Wo = y->shape[3], ny = vlm_numel(y);
        float *u = malloc(sizeof(float) * ny), *yref = malloc(sizeof(float) * ny);
        vlm_rng_init(&r, 4, 1, (uint64_t)stride);
        for (int64_t i = 0; i < ny; i++) u[i] = vlm_rng_normal(&r);
        memcpy(yref, vlm_f32(y), sizeof(float) * ny);
        vlm_tensor *uy = vlm_tensor_wrap(&c, VLM_F32, 4, y->shape, u, NULL);
        CHECK(vlm_backward(&c, vlm_op_sum(&c, vlm_op_mul(&c, y, uy))) == VLM_OK, "ref backward");
        // Channel-last: x [B, H, W, Ci], weights [Co, k, k, Ci].
        float x_nhwc[2 * 7 * 6 * 3], w_okki[4 * 9 * 3], gx[2 * 7 * 6 * 3] = {0}, gw[4 * 9 * 3] = {0}, gb[4] = {0};
        for (int bb = 0; bb < B; bb++)
            for (int ch = 0; ch < Ci; ch++)
                for (int i = 0; i < H * Wd; i++) x_nhwc[(bb * H * Wd + i) * Ci + ch] = x_nchw[(bb * Ci + ch) * H * Wd + i];
        for (int o = 0; o < Co; o++)
            for (int ch = 0; ch < Ci; ch++)
                for (int t = 0; t < 9; t++) w_okki[(o * 9 + t) * Ci + ch] = w_oikk[(o * Ci + ch) * 9 + t];
        vlm_ctx_reset(&c);
        int64_t xs2[4] = {B, H, Wd, Ci}, ws2[2] = {Co, 9 * Ci};
        vlm_tensor *x2 = vlm_tensor_wrap(&c, VLM_F32, 4, xs2, x_nhwc, gx), *w2 = vlm_tensor_wrap(&c, VLM_F32, 2, ws2, w_okki, gw),
                   *b2 = vlm_tensor_wrap(&c, VLM_F32, 1, bs, bias, gb);
        x2->requires_grad = w2->requires_grad = b2->requires_grad = 1;
        vlm_tensor *cols = vlm_op_im2col_nhwc(&c, x2, k, stride, 1);
        CHECK(cols && cols->shape[1] == Ho && cols->shape[2] == Wo && cols->shape[3] == 9 * Ci, "im2col shape");
        vlm_tensor *y2 = vlm_op_linear(&c, cols, w2, b2); // [B, Ho, Wo, Co]
        if (!y2) return;
        float *u2 = malloc(sizeof(float) * ny), *y2c = malloc(sizeof(float) * ny);
        for (int bb = 0; bb < B; bb++)
            for (int o = 0; o < Co; o++)
                for (int i = 0; i < Ho * Wo; i++) {
                    u2[(bb * Ho * Wo + i) * Co + o] = u[(bb * Co + o) * Ho * Wo + i];
                    y2c[(bb * Co + o) * Ho * Wo + i] = vlm_f32(y2)[(bb * Ho * Wo + i) * Co + o];
                }
        vlm_tensor *uy2 = vlm_tensor_wrap(&c, VLM_F32, 4, y2->shape, u2, NULL);
        CHECK(vlm_backward(&c, vlm_op_sum(&c, vlm_op_mul(&c, y2, uy2))) == VLM_OK, "nhwc backward");
        CHECK(tu_rel_err(y2c, yref, (long)ny, 1e-3) < 1e-5, "stride %d: forward differs from conv2d", stride);
        float gx_back[2 * 3 * 7 * 6], gw_back[4 * 3 * 9];
        for (int bb = 0; bb < B; bb++)
            for (int ch = 0; ch < Ci; ch++)
                for (int i = 0; i < H * Wd; i++) gx_back[(bb * Ci + ch) * H * Wd + i] = gx[(bb * H * Wd + i) * Ci + ch];
        for (int o = 0; o < Co; o++)
            for (int ch = 0; ch < Ci; ch++)
                for (int t = 0; t < 9; t++) gw_back[(o * Ci + ch) * 9 + t] = gw[(o * 9 + t) * Ci + ch];
        CHECK(tu_max_abs(gx_ref, B * Ci * H * Wd) > 0.1, "stride %d: zero input gradient", stride);
        CHECK(tu_rel_err(gx_back, gx_ref, B * Ci * H * Wd, 1e-3) < 1e-5, "stride %d: input gradient differs", stride);
        CHECK(tu_rel_err(gw_back, gw_ref, Co * Ci * 9, 1e-3) < 1e-5, "stride %d: weight gradient differs", stride);
        CHECK(tu_rel_err(gb, gb_ref, Co, 1e-3) < 1e-5, "stride %d: bias gradient differs", stride);
        // Finite differences of loss = sum(im2col(x) * v) w.r.t. x (the op alone).
        vlm_ctx_reset(&c);
        float gx3[2 * 7 * 6 * 3] = {0};
        vlm_tensor *x3 = vlm_tensor_wrap(&c, VLM_F32, 4, xs2, x_nhwc, gx3);
        x3->requires_grad = 1;
        vlm_tensor *c3 = vlm_op_im2col_nhwc(&c, x3, k, stride, 1);
        int64_t nc = vlm_numel(c3);
        float *v = malloc(sizeof(float) * nc);
        for (int64_t i = 0; i < nc; i++) v[i] = vlm_rng_normal(&r);
        vlm_tensor *vv = vlm_tensor_wrap(&c, VLM_F32, 4, c3->shape, v, NULL);
        vlm_backward(&c, vlm_op_sum(&c, vlm_op_mul(&c, c3, vv)));
        CHECK(tu_max_abs(gx3, B * H * Wd * Ci) > 0.1, "im2col: zero gradient");
        double worst = 0;
        for (int i = 0; i < B * H * Wd * Ci; i += 5) {
            double lp = 0, lm = 0;
            float keep = x_nhwc[i];
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                x_nhwc[i] = keep + sgn * 1e-2f;
                vlm_ctx_reset(&c);
                c.grad_enabled = 0;
                vlm_tensor *xx = vlm_tensor_wrap(&c, VLM_F32, 4, xs2, x_nhwc, NULL);
                vlm_tensor *cc = vlm_op_im2col_nhwc(&c, xx, k, stride, 1);
                double s2 = 0;
                for (int64_t j = 0; j < nc; j++) s2 += (double)vlm_f32(cc)[j] * v[j];
                if (sgn < 0) lm = s2;
                else lp = s2;
            }
            x_nhwc[i] = keep;
            c.grad_enabled = 1;
            worst = fmax(worst, fabs((lp - lm) / 2e-2 - gx3[i]));
        }
        CHECK(worst < 1e-3, "stride %d: im2col finite differences off by %g", stride, worst);
        free(u); free(yref); free(u2); free(y2c); free(v);
    }
    // Bad shapes are errors.
    vlm_ctx_reset(&c);
    int64_t bad[3] = {2, 3, 4};
    float z[24] = {0};
    CHECK(vlm_op_im2col_nhwc(&c, vlm_tensor_wrap(&c, VLM_F32, 3, bad, z, NULL), 3, 1, 1) == NULL && c.status == VLM_ERR_SHAPE,
          "3-d input accepted");
    vlm_ctx_free(&c);
}

static void test_config_json(void) {
    vlm_classifier_cfg a = tiny_cfg(), b;
    a.head_on_proj = 1;
    a.head.dropout = 0.25f;
    char *j = vlm_classifier_cfg_to_json(&a);
    vlm_error err;
    CHECK(vlm_classifier_cfg_from_json(j, &b, &err) == VLM_OK, "from_json: %s (%s)", err.msg, j);
    CHECK(b.vit.image_size == 8 && b.vit.patch_size == 2 && b.vit.width == 8 && b.vit.layers == 1 && b.vit.heads == 2 &&
              b.vit.mlp_width == 16 && b.vit.output_dim == 6 && b.stem_layers == 2 && b.stem_ch[1] == 5 &&
              b.stem_act == VLM_ACT_GELU && b.pool == VLM_POOL_MEAN && b.head.kind == VLM_HEAD_MLP && b.head.hidden == 7 &&
              b.head.n_classes == 3 && b.head_on_proj == 1 && fabsf(b.head.dropout - 0.25f) < 1e-6f,
          "round trip lost fields: %s", j);
    free(j);
    // Bad configs are errors that say why.
    a = tiny_cfg();
    a.vit.patch_size = 4; // needs two stride-2 convs: the stem has 2 -> fine
    CHECK(vlm_classifier_cfg_check(&a, &err) == VLM_OK, "patch 4 with 2 stem layers: %s", err.msg);
    a.vit.patch_size = 8;
    a.vit.image_size = 16;
    CHECK(vlm_classifier_cfg_check(&a, &err) == VLM_ERR_ARG && strstr(err.msg, "stem"), "patch 8 with 2 stem layers: %s", err.msg);
    a = tiny_cfg();
    a.vit.image_size = 9;
    CHECK(vlm_classifier_cfg_check(&a, &err) == VLM_ERR_ARG, "image 9 / patch 2 accepted");
    CHECK(vlm_classifier_cfg_from_json("{\"format\": \"vlm-classifier\"}", &b, &err) == VLM_ERR_FORMAT, "empty config accepted");
}

static void test_gradients(void) {
    vlm_classifier_cfg cfg = tiny_cfg();
    vlm_classifier m;
    vlm_error err;
    CHECK(vlm_classifier_init(&m, &cfg, &err) == VLM_OK, "init: %s", err.msg);
    vlm_classifier_init_weights(&m, 5);
    // Non-zero output layer so every gradient flows; random everything else.
    vlm_rng r;
    vlm_rng_init(&r, 9, 1, 0);
    vlm_fill_normal(vlm_params_get(&m.ps, m.head.w2), &r, 0.5f);
    vlm_fill_normal(vlm_params_get(&m.ps, m.head.b2), &r, 0.1f);
    const int B = 3;
    float img[3 * 3 * 64];
    for (int i = 0; i < 3 * 3 * 64; i++) img[i] = vlm_rng_normal(&r);
    int32_t y[3] = {0, 2, 1};
    vlm_ctx c;
    vlm_ctx_init(&c, 1 << 20, 0, &err);
    vlm_params_zero_grad(&m.ps);
    float l0 = loss_of(&m, &c, img, y, B, 1);
    CHECK(isfinite(l0), "loss %g: %s", l0, c.err.msg);
    float *grad = malloc(sizeof(float) * m.ps.total);
    memcpy(grad, m.ps.grad, sizeof(float) * m.ps.total);
    // Per parameter: the gradient is non-zero and matches central differences
    // on a few entries (largest-gradient entry plus two others).
    int checked = 0;
    for (int i = 0; i < m.ps.n; i++) {
        vlm_param *p = &m.ps.p[i];
        if (p->frozen || !strcmp(p->name, "visual.proj")) continue; // conv1 (replaced by the stem), proj (unused)
        const float *g = grad + p->offset;
        int64_t arg = 0;
        double gn = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            gn += (double)g[j] * g[j];
            if (fabsf(g[j]) > fabsf(g[arg])) arg = j;
        }
        CHECK(gn > 1e-12, "%s: zero gradient", p->name);
        int64_t idx[3] = {arg, p->numel / 2, p->numel - 1};
        for (int t = 0; t < 3; t++) {
            float *w = m.ps.data + p->offset + idx[t], keep = *w, h = 1e-2f;
            *w = keep + h;
            float lp = loss_of(&m, &c, img, y, B, 0);
            *w = keep - h;
            float lm = loss_of(&m, &c, img, y, B, 0);
            *w = keep;
            double fd = ((double)lp - lm) / (2.0 * h), an = g[idx[t]];
            double tol = 2e-3 + 3e-2 * fabs(fd);
            CHECK(fabs(fd - an) <= tol, "%s[%lld]: analytic %.6g, finite difference %.6g", p->name, (long long)idx[t], an, fd);
            checked++;
        }
    }
    CHECK(checked >= 3 * 20, "only %d entries checked", checked);
    CHECK(m.ps.p[m.vit.conv1].frozen, "visual.conv1 should be frozen with a stem");
    // Locked tower: only the head gets gradients.
    vlm_classifier_lock_image(&m, 1);
    vlm_params_zero_grad(&m.ps);
    vlm_ctx_reset(&c);
    c.grad_enabled = 1;
    int64_t sh[4] = {B, 3, 8, 8};
    vlm_tensor *lg = vlm_classifier_forward(&c, &m, vlm_tensor_wrap(&c, VLM_F32, 4, sh, img, NULL), 0);
    vlm_tensor *l = vlm_op_cross_entropy(&c, lg, y, 0);
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "locked backward: %s", c.err.msg);
    double vis = 0, head = 0;
    for (int i = 0; i < m.ps.n; i++)
        for (int64_t j = 0; j < m.ps.p[i].numel; j++) {
            double gg = fabs(m.ps.grad[m.ps.p[i].offset + j]);
            if (!strncmp(m.ps.p[i].name, "visual.", 7)) vis += gg;
            else head += gg;
        }
    CHECK(vis == 0 && head > 0, "locked: visual grad %g, head grad %g", vis, head);
    vlm_classifier_lock_image(&m, 0);
    CHECK(!m.ps.p[vlm_params_find(&m.ps, "visual.ln_pre.weight")].frozen && m.ps.p[m.vit.conv1].frozen, "unlock");
    // Layer-decay groups: embeddings 0, block l -> l+1, ln_post/proj/head -> L+1.
    CHECK(vlm_classifier_n_groups(&m) == 3, "groups %d", vlm_classifier_n_groups(&m));
    const char *names[6] = {"visual.stem.0.weight", "visual.positional_embedding", "visual.transformer.resblocks.0.attn.in_proj_weight",
                            "visual.ln_post.weight", "visual.proj", "head.fc2.weight"};
    const int want[6] = {0, 0, 1, 2, 2, 2};
    for (int t = 0; t < 6; t++) {
        int i = vlm_params_find(&m.ps, names[t]);
        CHECK(i >= 0 && vlm_classifier_param_group(&m, i) == want[t], "%s: group %d, want %d", names[t],
              i >= 0 ? vlm_classifier_param_group(&m, i) : -9, want[t]);
    }
    // Model file round trip: same logits.
    mkdir(DIRN, 0755);
    CHECK(vlm_classifier_save(DIRN "/tiny.safetensors", &m, "a\nb\nc", 7, &err) == VLM_OK, "save: %s", err.msg);
    CHECK(vlm_classifier_file_is(DIRN "/tiny.safetensors", &err) == 1, "file_is");
    vlm_classifier m2;
    char *cn = NULL;
    CHECK(vlm_classifier_load(DIRN "/tiny.safetensors", &m2, &cn, &err) == VLM_OK, "load: %s", err.msg);
    CHECK(cn && !strcmp(cn, "a\nb\nc"), "classnames %s", cn ? cn : "(null)");
    free(cn);
    float a = loss_of(&m, &c, img, y, B, 0), b = loss_of(&m2, &c, img, y, B, 0);
    CHECK(a == b, "loaded model loss %g vs %g", b, a);
    // Copying a tower of the wrong shape is an error naming the tensor.
    vlm_classifier_cfg c3 = cfg;
    c3.vit.width = 10;
    vlm_classifier m3;
    CHECK(vlm_classifier_init(&m3, &c3, &err) == VLM_OK, "init m3");
    CHECK(vlm_classifier_copy_from(&m3, &m.ps, "visual.", NULL, &err) == VLM_ERR_SHAPE && strstr(err.msg, "visual."),
          "shape mismatch: %s", err.msg);
    vlm_classifier_free(&m3);
    vlm_classifier_free(&m2);
    vlm_classifier_free(&m);
    vlm_ctx_free(&c);
    free(grad);
}

// ---- CLI -------------------------------------------------------------------------
static void be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

// 4 classes of 16x16 gray images: a bright 6x6 square in quadrant k at a
// jittered position over noise.
static void write_idx(const char *stem, int n, uint64_t seed) {
    char p[256];
    snprintf(p, sizeof p, DIRN "/%s-images-idx3-ubyte", stem);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, DIRN "/%s-labels-idx1-ubyte", stem);
    FILE *fl = fopen(p, "wb");
    be32(fi, 0x803);
    be32(fi, (uint32_t)n);
    be32(fi, 16);
    be32(fi, 16);
    be32(fl, 0x801);
    be32(fl, (uint32_t)n);
    vlm_rng r;
    vlm_rng_init(&r, seed, 3, 0);
    for (int i = 0; i < n; i++) {
        int k = (int)vlm_rng_below(&r, 4);
        int ox = (k & 1) * 8 + (int)vlm_rng_below(&r, 3), oy = (k >> 1) * 8 + (int)vlm_rng_below(&r, 3);
        unsigned char px[256];
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) {
                int in = x >= ox && x < ox + 6 && y >= oy && y < oy + 6;
                px[y * 16 + x] = (unsigned char)(in ? 180 + vlm_rng_below(&r, 70) : vlm_rng_below(&r, 90));
            }
        fwrite(px, 1, 256, fi);
        unsigned char lab = (unsigned char)k;
        fwrite(&lab, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}

static int sh(const char *cmd) {
    char full[4096];
    snprintf(full, sizeof full, "%s >>" LOGS "/stdout.txt 2>>" LOGS "/stderr.txt", cmd);
    return system(full);
}

static int read_losses(const char *name, double *loss, int cap) {
    char p[512];
    snprintf(p, sizeof p, LOGS "/%s/metrics.jsonl", name);
    return tu_read_losses(p, loss, cap);
}

// The last line of a file that starts with '{' (the command's JSON result); "" if none.
static void last_json(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    char line[8192];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (line[0] == '{') snprintf(out, n, "%s", line);
    if (f) fclose(f);
}

static double jnum(const char *json, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    return p ? atof(p + strlen(k)) : NAN;
}

// vlm zeroshot --json's confusion counts ([4, 4] for test_cli's four classes): they
// sum to n, and each row's diagonal over its sum is that class's per_class accuracy.
static void check_confusion(const char *js) {
    const char *c = strstr(js, "\"confusion\": ["), *pc = strstr(js, "\"per_class\": [");
    CHECK(c && pc, "no confusion or per_class: %s", js);
    if (!c || !pc) return;
    c += strlen("\"confusion\": [");
    pc += strlen("\"per_class\": [");
    double total = 0;
    const int C = (int)jnum(js, "classes");
    CHECK(C == 4, "classes %d", C);
    if (C != 4) return;
    for (int k = 0; k < C; k++) {
        c = strchr(c, '[');
        if (!c) break;
        c++;
        double row = 0, diag = 0;
        for (int j = 0; j < C; j++) {
            char *end;
            double v = strtod(c, &end);
            row += v, diag += j == k ? v : 0;
            c = end + (*end == ',');
        }
        char *pend;
        double acc = strtod(pc, &pend);
        pc = pend + (*pend == ',');
        CHECK(fabs((row ? diag / row : 0) - acc) < 1e-4, "class %d: confusion %g/%g vs per_class %g", k, diag, row, acc);
        total += row;
    }
    CHECK(total == jnum(js, "n"), "confusion sums to %g, n %g", total, jnum(js, "n"));
}

static int run_json(const char *cmd, char *out, size_t n) {
    char full[4096];
    snprintf(full, sizeof full, "%s >" LOGS "/out.json 2>>" LOGS "/stderr.txt", cmd);
    int rc = system(full);
    last_json(LOGS "/out.json", out, n);
    return rc;
}

static void test_cli(void) {
    system("rm -rf " LOGS);
    mkdir(LOGS, 0755);
    write_idx("train", 320, 1);
    write_idx("t10k", 96, 2);
    FILE *f = fopen(DIRN "/classnames.txt", "w");
    fputs("top left\ntop right\nbottom left\nbottom right\n", f);
    fclose(f);
    char base[2048], cmd[4096], js[8192];
    snprintf(base, sizeof base,
             "%s/vlm finetune --train-data " DIRN "/train-images-idx3-ubyte --val-data " DIRN "/t10k-images-idx3-ubyte "
             "--model %s --stem 8,16 --pool mean --batch-size 32 --epochs 3 --warmup 3 --lr 3e-3 --label-smoothing 0.1 "
             "--aug-scale 0.85,1 --log-every 1 --save-every-steps 4 --workers 2 --logs " LOGS,
             VLM_BINARY_DIR, tu_src("tests/fixtures/models/micro.json"));
    // Uninterrupted run: loss falls, better than chance on held-out data.
    snprintf(cmd, sizeof cmd, "%s --name full", base);
    CHECK(run_json(cmd, js, sizeof js) == 0, "finetune failed (see " LOGS "/stderr.txt)");
    double full[64] = {0}, res[64] = {0};
    int n = read_losses("full", full, 64);
    CHECK(n == 30, "logged %d steps, expected 30", n);
    tu_check_steps(LOGS, "full", -1, 30);
    double first = full[1], last = (full[26] + full[27] + full[28] + full[29] + full[30]) / 5;
    CHECK(fabs(first - log(4.0)) < 0.05, "first loss %g, expected ~ln 4", first);
    CHECK(last < first - 0.4, "loss did not fall: %g -> %g", first, last);
    double top1 = jnum(js, "top1");
    CHECK(top1 > 0.6 && jnum(js, "n") == 96 && jnum(js, "top5") == 1.0, "held-out result %s", js);
    // Stopped mid-epoch between checkpoints, resumed: the same curve bit for bit.
    snprintf(cmd, sizeof cmd, "%s --name stopped --stop-at-step 13", base);
    CHECK(run_json(cmd, js, sizeof js) == 0, "stopped run failed");
    CHECK(tu_state_step(LOGS, "stopped") == 13, "stopped run saved its state at step %lld, not 13",
          tu_state_step(LOGS, "stopped"));
    snprintf(cmd, sizeof cmd, "%s --name stopped --resume latest", base);
    CHECK(run_json(cmd, js, sizeof js) == 0, "resumed run failed");
    int nr = read_losses("stopped", res, 64);
    int same = nr == n;
    for (int s = 1; s <= n; s++) same &= res[s] == full[s];
    CHECK(same, "resumed loss curve differs from the uninterrupted one");
    tu_check_steps(LOGS, "stopped", 13, 30); // the resumed process starts at step 14
    tu_check_same_final(LOGS, "full", "stopped");
    CHECK(jnum(js, "top1") == top1, "resumed top-1 %g vs %g", jnum(js, "top1"), top1);
    // Evaluating the saved classifier gives the same figure.
    snprintf(cmd, sizeof cmd, "%s/vlm finetune --eval-only --checkpoint " LOGS "/full/checkpoints/epoch_latest.safetensors "
                              "--val-data " DIRN "/t10k-images-idx3-ubyte --json", VLM_BINARY_DIR);
    CHECK(run_json(cmd, js, sizeof js) == 0 && jnum(js, "top1") == top1, "eval-only: %s (want top1 %g)", js, top1);
    // Layer decay + head-only epochs + MLP head + cls pooling run and learn.
    snprintf(cmd, sizeof cmd, "%s --name ld --layer-decay 0.6 --lock-image-epochs 1 --head mlp", base);
    CHECK(run_json(cmd, js, sizeof js) == 0 && jnum(js, "top1") > 0.3, "layer decay run: %s", js);
    double ld[64] = {0};
    CHECK(read_losses("ld", ld, 64) == 30 && (ld[26] + ld[27] + ld[28] + ld[29] + ld[30]) / 5 < ld[1] - 0.03,
          "layer decay run: loss %g -> %g", ld[1], ld[30]);
    // Bad flags are clear errors.
    snprintf(cmd, sizeof cmd, "%s --name bad --pool max", base);
    CHECK(sh(cmd) != 0, "--pool max accepted");
    snprintf(cmd, sizeof cmd, "%s --name bad --zeroshot-init", base);
    CHECK(sh(cmd) != 0, "--zeroshot-init without a checkpoint accepted");

    // A CLIP briefly pretrained on the same images (IDX captions = class names).
    snprintf(cmd, sizeof cmd,
             "%s/vlm pretrain --train-data " DIRN "/train-images-idx3-ubyte --model %s --batch-size 32 --max-steps 6 "
             "--warmup 2 --workers 2 --logs " LOGS " --name clip",
             VLM_BINARY_DIR, tu_src("tests/fixtures/models/micro.json"));
    CHECK(sh(cmd) == 0, "pretraining the test CLIP failed");
    const char *ck = LOGS "/clip/checkpoints/epoch_latest.safetensors";
    snprintf(cmd, sizeof cmd, "%s/vlm zeroshot --checkpoint %s --data " DIRN "/t10k-images-idx3-ubyte --classnames " DIRN
                              "/classnames.txt --templates name --json", VLM_BINARY_DIR, ck);
    char zs[8192];
    CHECK(run_json(cmd, zs, sizeof zs) == 0, "vlm zeroshot failed");
    double z1 = jnum(zs, "top1");
    check_confusion(zs);
    snprintf(cmd, sizeof cmd, "%s/vlm finetune --checkpoint %s --zeroshot-init --templates name --eval-only --val-data " DIRN
                              "/t10k-images-idx3-ubyte --json", VLM_BINARY_DIR, ck);
    CHECK(run_json(cmd, js, sizeof js) == 0 && jnum(js, "top1") == z1 && jnum(js, "top5") == jnum(zs, "top5"),
          "zero-shot head %s vs vlm zeroshot %s", js, zs);
    // Fine-tune from it with WiSE-FT: alpha 0 is the zero-shot model, alpha 1 the fine-tuned one.
    snprintf(cmd, sizeof cmd,
             "%s/vlm finetune --checkpoint %s --zeroshot-init --templates name --train-data " DIRN "/train-images-idx3-ubyte "
             "--val-data " DIRN "/t10k-images-idx3-ubyte --batch-size 32 --epochs 2 --warmup 2 --lr 1e-3 --wise-alpha 0,0.5,1 "
             "--workers 2 --logs " LOGS " --name wise",
             VLM_BINARY_DIR, ck);
    CHECK(run_json(cmd, js, sizeof js) == 0, "WiSE-FT run failed");
    const char *w = strstr(js, "\"wise\": [");
    CHECK(w != NULL, "no wise results: %s", js);
    if (w) {
        const char *a0 = strstr(w, "\"alpha\": 0.0000"), *a1 = strstr(w, "\"alpha\": 1.0000");
        CHECK(a0 && jnum(a0, "top1") == z1, "WiSE alpha 0 top1 %g vs zero-shot %g", a0 ? jnum(a0, "top1") : -1, z1);
        CHECK(a1 && jnum(a1, "top1") == jnum(js, "top1"), "WiSE alpha 1 %g vs fine-tuned %g", a1 ? jnum(a1, "top1") : -1,
              jnum(js, "top1"));
    }
    struct stat sb;
    CHECK(stat(LOGS "/wise/checkpoints/wise_0.50.safetensors", &sb) == 0, "WiSE model file missing");
    // Linear probe on the CLIP's features runs end to end.
    snprintf(cmd, sizeof cmd, "%s/vlm linprobe --checkpoint %s --train-data " DIRN "/train-images-idx3-ubyte --val-data " DIRN
                              "/t10k-images-idx3-ubyte --c-steps 3 --refine 1 --json", VLM_BINARY_DIR, ck);
    CHECK(run_json(cmd, js, sizeof js) == 0 && jnum(js, "n") == 96 && jnum(js, "top1") > 0.3 && jnum(js, "best_C") > 0,
          "linprobe: %s", js);
}

int main(void) {
    test_im2col();
    test_config_json();
    test_gradients();
    test_cli();
    return tu_done("test_finetune");
}
