// CoCa's multimodal decoder (fusion/coca.h) against PyTorch
// (tests/reference/make_coca_fixtures.py): one cross-attention block forward
// and backward (parameters and both inputs), the whole decoder with the
// caption loss (loss, logits and every gradient), and central differences
// of the cross-attention block's inputs; end to end, vlm pretrain --coca on
// coloured squares learns to caption them (greedy and beam search).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "data/dataset.h"
#include "data/transform.h"
#include "fusion/checkpoint.h"
#include "fusion/coca.h"
#include "text/tokenizer.h"
#include "train/pretrain.h"
#include "tests/testutil.h"

static vlm_st_file F;

static int meta(const char *k) { return atoi(vlm_st_meta(&F, k)); }

static float *get(const char *name, int64_t n) {
    const vlm_st_entry *e = vlm_st_find(&F, name);
    CHECK(e != NULL, "fixture lacks %s", name);
    float *p = calloc((size_t)n, sizeof(float));
    if (e) memcpy(p, vlm_st_data(&F, e), sizeof(float) * (size_t)n);
    return p;
}

// max |a - b| / max |b|, and *scale = max |b| (the reference's size)
static double rel(const float *a, const float *b, int64_t n, double *scale) {
    *scale = tu_max_abs(b, (long)n);
    return tu_rel_err(a, b, (long)n, 1e-30);
}

// Decoder of `layers` layers with the fixture's sizes, parameters named
// "<prefix><name>" loaded when present (prefix "xblock." maps the lone block
// onto cross_attn.0).
static void build(vlm_mm_decoder *d, vlm_params *ps, int layers, const char *prefix, int xblock_only) {
    vlm_error err = {0};
    vlm_params_init(ps);
    vlm_mm_cfg cfg = {meta("W"), meta("H"), layers, meta("V"), meta("WI"), VLM_ACT_GELU};
    CHECK(vlm_mm_init(d, ps, cfg, &err) == VLM_OK && vlm_params_alloc(ps, &err) == VLM_OK, "%s", err.msg);
    for (int i = 0; i < ps->n; i++) {
        const char *n = ps->p[i].name;
        char name[256];
        if (xblock_only) {
            const char *pre = "text_decoder.cross_attn.0.";
            if (strncmp(n, pre, strlen(pre))) continue;
            snprintf(name, sizeof name, "%s%s", prefix, n + strlen(pre));
        } else
            snprintf(name, sizeof name, "%s%s", prefix, n);
        vlm_tensor *p = &ps->p[i].t;
        CHECK(vlm_st_get(&F, name, VLM_F32, p->ndim, p->shape, p->data, &err) == VLM_OK, "%s", err.msg);
    }
}

static void compare_grads(vlm_params *ps, const char *prefix, int xblock_only) {
    for (int i = 0; i < ps->n; i++) {
        const char *n = ps->p[i].name, *pre = "text_decoder.cross_attn.0.";
        if (xblock_only && strncmp(n, pre, strlen(pre))) continue;
        char name[256];
        snprintf(name, sizeof name, "%sgrad.%s", prefix, xblock_only ? n + strlen(pre) : n);
        float *g = get(name, ps->p[i].numel);
        double s, r = rel(ps->p[i].t.grad, g, ps->p[i].numel, &s);
        CHECK(s > 0, "PyTorch's gradient of %s is all zero", n);
        CHECK(r < 1e-3, "grad %s differs by %.3g relative (max %.3g)", n, r, s);
        free(g);
    }
}

static void test_xblock(void) {
    const int B = meta("B"), T = meta("T"), N = meta("N"), W = meta("W");
    vlm_mm_decoder d;
    vlm_params ps;
    build(&d, &ps, 1, "xblock.", 1);
    float *x = get("xblock.x", (int64_t)B * T * W), *kv = get("xblock.kv", (int64_t)B * N * W);
    float *ref = get("xblock.out", (int64_t)B * T * W), *r = get("xblock.r", (int64_t)B * T * W);
    float *gx = calloc((size_t)B * T * W, sizeof(float)), *gkv = calloc((size_t)B * N * W, sizeof(float));
    vlm_ctx c;
    vlm_error err = {0};
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    c.grad_enabled = 1;
    vlm_tensor *xt = vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, T, W}, x, gx);
    vlm_tensor *kt = vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, N, W}, kv, gkv);
    vlm_tensor *out = vlm_xblock_forward(&c, &d.x[0], &ps, d.cfg.heads, VLM_ACT_GELU, xt, kt);
    CHECK(out != NULL, "%s", c.err.msg);
    double s, e = out ? rel(vlm_f32(out), ref, (int64_t)B * T * W, &s) : 1;
    CHECK(e < 1e-5, "cross-attention block output differs by %.3g relative", e);
    vlm_tensor *l = vlm_op_sum(&c, vlm_op_mul(&c, out, vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, T, W}, r, NULL)));
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "%s", c.err.msg);
    compare_grads(&ps, "xblock.", 1);
    float *rgx = get("xblock.grad_x", (int64_t)B * T * W), *rgkv = get("xblock.grad_kv", (int64_t)B * N * W);
    CHECK(rel(gx, rgx, (int64_t)B * T * W, &s) < 1e-3, "grad x differs");
    CHECK(rel(gkv, rgkv, (int64_t)B * N * W, &s) < 1e-3 && s > 0, "grad kv differs");
    // central differences of the same scalar in double-checked float: inputs x and kv
    c.grad_enabled = 0;
    double worst = 0, gmax = 0;
    for (int k = 0; k < 24; k++) {
        int on_kv = k & 1;
        float *buf = on_kv ? kv : x, *ga = on_kv ? gkv : gx;
        int64_t n = on_kv ? (int64_t)B * N * W : (int64_t)B * T * W, i = (k * 7919) % n;
        float x0 = buf[i];
        double f2[2];
        for (int sd = 0; sd < 2; sd++) {
            buf[i] = x0 + (sd ? -1e-2f : 1e-2f);
            vlm_ctx_reset(&c);
            vlm_tensor *o = vlm_xblock_forward(&c, &d.x[0], &ps, d.cfg.heads, VLM_ACT_GELU,
                                               vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, T, W}, x, NULL),
                                               vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, N, W}, kv, NULL));
            double acc = 0;
            for (int64_t j = 0; j < (int64_t)B * T * W; j++) acc += (double)vlm_f32(o)[j] * r[j];
            f2[sd] = acc;
        }
        buf[i] = x0;
        double fd = (f2[0] - f2[1]) / 2e-2;
        worst = fmax(worst, fabs(fd - ga[i]));
        gmax = fmax(gmax, fabs(ga[i]));
    }
    CHECK(gmax > 1e-2, "sampled input gradients ~0 (%g)", gmax);
    CHECK(worst < 2e-3 + 1e-2 * gmax, "central differences off by %.3g (max |g| %.3g)", worst, gmax);
    free(x), free(kv), free(ref), free(r), free(gx), free(gkv), free(rgx), free(rgkv);
    vlm_ctx_free(&c);
    vlm_mm_free(&d);
    vlm_params_free(&ps);
}

static void test_decoder(void) {
    const int B = meta("B"), T = meta("T"), M = meta("M"), W = meta("W"), WI = meta("WI"), V = meta("V");
    vlm_mm_decoder d;
    vlm_params ps;
    build(&d, &ps, meta("L"), "dec.", 0);
    float *text = get("dec.text", (int64_t)B * T * W), *img = get("dec.img", (int64_t)B * M * WI);
    float *gt = calloc((size_t)B * T * W, sizeof(float)), *gi = calloc((size_t)B * M * WI, sizeof(float));
    int32_t ids[64], eot[8];
    vlm_error err = {0};
    CHECK(vlm_st_get(&F, "dec.ids", VLM_I32, 2, (int64_t[]){B, T}, ids, &err) == VLM_OK, "%s", err.msg);
    CHECK(vlm_st_get(&F, "dec.eot", VLM_I32, 1, (int64_t[]){B}, eot, &err) == VLM_OK, "%s", err.msg);
    vlm_ctx c;
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    c.grad_enabled = 1;
    vlm_tensor *lg = vlm_mm_forward(&c, &d, &ps, vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, T, W}, text, gt),
                                    vlm_tensor_wrap(&c, VLM_F32, 3, (int64_t[]){B, M, WI}, img, gi));
    CHECK(lg != NULL, "%s", c.err.msg);
    float *rl = get("dec.logits", (int64_t)B * T * V), ref_loss;
    vlm_st_get(&F, "dec.loss", VLM_F32, 1, (int64_t[]){1}, &ref_loss, &err);
    double s;
    CHECK(lg && rel(vlm_f32(lg), rl, (int64_t)B * T * V, &s) < 1e-5, "logits differ");
    vlm_tensor *l = vlm_caption_loss(&c, lg, ids, eot, B, T);
    CHECK(l && fabsf(vlm_f32(l)[0] - ref_loss) < 1e-5f * fmaxf(1, ref_loss), "caption loss %.7f, PyTorch %.7f",
          l ? vlm_f32(l)[0] : NAN, ref_loss);
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "%s", c.err.msg);
    compare_grads(&ps, "dec.", 0);
    float *rgt = get("dec.grad_text", (int64_t)B * T * W), *rgi = get("dec.grad_img", (int64_t)B * M * WI);
    CHECK(rel(gt, rgt, (int64_t)B * T * W, &s) < 1e-3 && s > 0, "grad text differs");
    CHECK(rel(gi, rgi, (int64_t)B * M * WI, &s) < 1e-3 && s > 0, "grad image tokens differs");
    free(text), free(img), free(gt), free(gi), free(rl), free(rgt), free(rgi);
    vlm_ctx_free(&c);
    vlm_mm_free(&d);
    vlm_params_free(&ps);
}

// The whole CoCa step (contrastive + 2 x caption) and every gradient.
static void test_total(void) {
    const int V = meta("V");
    vlm_clip_cfg cfg = {.embed_dim = 8, .vision = {8, 4, 12, 1, 2, 48, 8, VLM_ACT_GELU, 0},
                        .text = {7, V, 16, 2, 1, 64, 8, VLM_ACT_GELU}, .coca_layers = 1, .coca_heads = 2};
    vlm_clip m;
    vlm_error err = {0};
    CHECK(vlm_clip_init(&m, &cfg, &err) == VLM_OK, "%s", err.msg);
    for (int i = 0; i < m.ps.n; i++) {
        char name[256];
        snprintf(name, sizeof name, "coca.%s", m.ps.p[i].name);
        vlm_tensor *p = &m.ps.p[i].t;
        CHECK(vlm_st_get(&F, name, VLM_F32, p->ndim, p->shape, p->data, &err) == VLM_OK, "%s", err.msg);
    }
    float *images = get("coca.image", 3 * 3 * 8 * 8);
    int32_t ids[21], groups[3] = {0, 1, 2};
    CHECK(vlm_st_get(&F, "coca.text", VLM_I32, 2, (int64_t[]){3, 7}, ids, &err) == VLM_OK, "%s", err.msg);
    vlm_ctx c;
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    c.grad_enabled = 1;
    vlm_params_zero_grad(&m.ps);
    vlm_clip_step_args a = {.B = 3, .K = 1, .caption_weight = 2};
    double loss = 0;
    CHECK(vlm_clip_train_step(&c, &m, images, ids, groups, &a, &loss, &err) == VLM_OK, "%s", err.msg);
    float ref;
    vlm_st_get(&F, "coca.total", VLM_F32, 1, (int64_t[]){1}, &ref, &err);
    CHECK(fabs(loss - ref) < 1e-5 * fmax(1, ref), "CoCa total %.7f, PyTorch %.7f", loss, ref);
    int compared = 0;
    for (int i = 0; i < m.ps.n; i++) {
        char name[256];
        snprintf(name, sizeof name, "coca.grad.%s", m.ps.p[i].name);
        float *g = get(name, m.ps.p[i].numel);
        double s, r = rel(m.ps.p[i].t.grad, g, m.ps.p[i].numel, &s);
        CHECK(s > 0, "PyTorch's gradient of %s is all zero", m.ps.p[i].name);
        CHECK(r < 1e-3, "grad %s differs by %.3g relative (max %.3g)", m.ps.p[i].name, r, s);
        compared++;
        free(g);
    }
    CHECK(compared > 40, "%d gradients compared", compared);
    free(images);
    vlm_ctx_free(&c);
    vlm_clip_free(&m);
}

static void test_train_caption(void) {
    const char *dir = "test_coca_tmp";
    (void)!system("rm -rf test_coca_tmp && mkdir -p test_coca_tmp/sq");
    tu_make_squares("test_coca_tmp/sq", 64, 0);
    vlm_pretrain_opts o;
    vlm_pretrain_opts_default(&o);
    o.train = "test_coca_tmp/sq/train.tsv", o.model = tu_src("tests/fixtures/models/micro.json"), o.coca_layers = 1;
    o.c.batch = 16, o.c.max_steps = 250, o.c.epochs = 1000, o.c.lr = 3e-3, o.c.warmup = 10, o.c.logs = dir;
    o.c.name = "coca";
    o.c.workers = 1, o.no_augment = 1, o.c.log_every = 50;
    vlm_pretrain_result r;
    vlm_error err = {0};
    CHECK(vlm_pretrain(&o, &r, &err) == VLM_OK, "%s", err.msg);
    vlm_clip m;
    char *merges = NULL;
    CHECK(vlm_ckpt_load_model(r.checkpoint, &m, &merges, &err) == VLM_OK && m.has_dec && merges, "%s", err.msg);
    if (!merges) return;
    vlm_tokenizer tok;
    vlm_tokenizer_init_from_memory(&tok, merges, strlen(merges), &err);
    vlm_dataset ds;
    CHECK(vlm_dataset_open(&ds, "test_coca_tmp/sq/train.tsv", NULL, &err) == VLM_OK, "%s", err.msg);
    const int S = m.cfg.vision.image_size;
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    vlm_sample smp;
    vlm_sample_init(&smp);
    vlm_image img;
    vlm_image_init(&img);
    float *x = malloc(sizeof(float) * 3 * S * S);
    int exact[2] = {0, 0}, n = 16;
    for (int i = 0; i < n; i++) {
        CHECK(vlm_dataset_load_image(&ds, i, &smp, &img, NULL, &err) == VLM_OK, "%s", err.msg);
        vlm_transform_eval(&t, &img, x, &sc, &err);
        for (int beams = 1; beams <= 3; beams += 2) {
            vlm_seqdec_opts so;
            vlm_seqdec_opts_default(&so, vlm_tokenizer_sot(&tok), vlm_tokenizer_eot(&tok), m.cfg.text.context_length);
            so.beams = beams;
            int32_t ids[64];
            int len = 0;
            char text[256];
            CHECK(vlm_coca_caption(&m, x, &so, ids, &len, &err) == VLM_OK, "%s", err.msg);
            int body = len - 1 - (ids[len - 1] == vlm_tokenizer_eot(&tok));
            vlm_tokenizer_decode(&tok, ids + 1, body, text, sizeof text, NULL, &err);
            size_t tl = strlen(text);
            while (tl && text[tl - 1] == ' ') text[--tl] = 0;
            exact[beams > 1] += !strcmp(text, vlm_dataset_caption(&ds, i));
            if (i < 2) fprintf(stderr, "caption (%d beams) of '%s': '%s'\n", beams, vlm_dataset_caption(&ds, i), text);
        }
    }
    CHECK(exact[0] >= 12 && exact[1] >= 12, "exact captions: greedy %d, beam %d of %d", exact[0], exact[1], n);
    // vlm caption --data scores against the references as the tokenizer
    // renders them: upper-case references ("A RED SQUARE") still match.
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "awk -F'\\t' 'BEGIN { OFS = FS } NR > 1 { $2 = toupper($2) } 1' test_coca_tmp/sq/train.tsv "
             "> test_coca_tmp/sq/upper.tsv && %s/vlm caption --checkpoint %s --data test_coca_tmp/sq/upper.tsv --limit %d "
             "--json > test_coca_tmp/cap.jsonl", VLM_BINARY_DIR, r.checkpoint, n);
    CHECK(system(cmd) == 0, "%s", cmd);
    char line[4096] = "", last[4096] = "";
    FILE *f = fopen("test_coca_tmp/cap.jsonl", "r");
    while (f && fgets(line, sizeof line, f)) snprintf(last, sizeof last, "%s", line);
    if (f) fclose(f);
    const char *e = strstr(last, "\"caption_exact\": ");
    CHECK(e && atof(e + 17) * n >= 12 - 1e-9, "vlm caption --data: %s", last);
    free(x);
    vlm_image_free(&img);
    vlm_sample_free(&smp);
    vlm_transform_scratch_free(&sc);
    vlm_dataset_free(&ds);
    vlm_tokenizer_free(&tok);
    free(merges);
    vlm_clip_free(&m);
}

int main(void) {
    vlm_error err = {0};
    CHECK(vlm_st_read(&F, tu_src("tests/fixtures/coca.safetensors"), &err) == VLM_OK, "%s", err.msg);
    test_xblock();
    test_decoder();
    test_total();
    test_train_caption();
    vlm_st_free(&F);
    int rc = tu_done("test_coca");
    if (!rc) (void)!system("rm -rf test_coca_tmp");
    return rc;
}
