// Language models (text/lm.h, train/lm.h): the clm and mlm losses and every
// parameter's gradient against PyTorch (tests/reference/make_lm_fixtures.py),
// a central-difference check of the whole loss, BERT's masking (exactly K
// per row, never SOT/EOT, 80/10/10, reproducible per row), model files,
// sampling (greedy = top-k 1, seeded), and lm train: the loss falls on a
// tiny corpus, and a run stopped and resumed ends byte-identical to an
// uninterrupted one, each step logged once.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "fusion/checkpoint.h"
#include "text/lm.h"
#include "train/lm.h"
#include "train/pretrain.h"
#include "tests/testutil.h"

static vlm_status fixture_model(const vlm_st_file *f, const char *obj, vlm_lm *m, vlm_error *err) {
    const int V = atoi(vlm_st_meta(f, "V")), W = atoi(vlm_st_meta(f, "W"));
    vlm_lm_cfg c = {.context_length = atoi(vlm_st_meta(f, "ctx")), .vocab_size = V, .width = W,
                    .heads = atoi(vlm_st_meta(f, "heads")), .layers = atoi(vlm_st_meta(f, "layers")), .mlp_width = 4 * W,
                    .act = VLM_ACT_GELU, .mask_prob = 0.15f};
    if (!strcmp(obj, "clm")) c.objective = VLM_LM_CLM, c.sot = V - 2, c.eot = V - 1, c.mask = -1;
    else c.objective = VLM_LM_MLM, c.sot = V - 3, c.eot = V - 2, c.mask = V - 1;
    vlm_status st = vlm_lm_init(m, &c, err);
    for (int i = 0; !st && i < m->ps.n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", obj, m->ps.p[i].name);
        st = vlm_st_get(f, name, VLM_F32, m->ps.p[i].t.ndim, m->ps.p[i].t.shape, m->ps.p[i].t.data, err);
    }
    return st;
}

static void test_torch_parity(const char *obj) {
    vlm_st_file f;
    vlm_error err = {0};
    CHECK(vlm_st_read(&f, tu_src("tests/fixtures/lm.safetensors"), &err) == VLM_OK, "%s", err.msg);
    vlm_lm m;
    CHECK(fixture_model(&f, obj, &m, &err) == VLM_OK, "%s: %s", obj, err.msg);
    const int B = atoi(vlm_st_meta(&f, "B")), T = atoi(vlm_st_meta(&f, "T"));
    vlm_lm_batch b;
    vlm_lm_batch_alloc(&b, B, T, &err);
    char name[64];
    snprintf(name, sizeof name, "%s.in", obj);
    CHECK(vlm_st_get(&f, name, VLM_I32, 2, (int64_t[]){B, T}, b.in, &err) == VLM_OK, "%s", err.msg);
    snprintf(name, sizeof name, "%s.target", obj);
    const vlm_st_entry *te = vlm_st_find(&f, name);
    int nt = te ? (int)te->shape[0] : 0;
    CHECK(vlm_st_get(&f, name, VLM_I32, 1, (int64_t[]){nt}, b.target, &err) == VLM_OK, "%s", err.msg);
    if (!strcmp(obj, "mlm")) {
        snprintf(name, sizeof name, "%s.sel", obj);
        CHECK(vlm_st_get(&f, name, VLM_I32, 1, (int64_t[]){nt}, b.sel, &err) == VLM_OK, "%s", err.msg);
        b.n_sel = nt;
    }
    vlm_ctx c;
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    c.grad_enabled = 1;
    vlm_params_zero_grad(&m.ps);
    vlm_tensor *l = vlm_lm_loss(&c, &m, &b);
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "%s: %s", obj, c.err.msg);
    snprintf(name, sizeof name, "%s.loss", obj);
    float ref;
    vlm_st_get(&f, name, VLM_F32, 1, (int64_t[]){1}, &ref, &err);
    CHECK(l && fabsf(vlm_f32(l)[0] - ref) <= 1e-5f * fmaxf(1, fabsf(ref)), "%s loss %.7f, PyTorch %.7f", obj,
          l ? vlm_f32(l)[0] : NAN, ref);
    for (int i = 0; i < m.ps.n; i++) {
        vlm_tensor *p = &m.ps.p[i].t;
        long n = (long)m.ps.p[i].numel;
        float *g = malloc(sizeof(float) * (size_t)n);
        snprintf(name, sizeof name, "%s.grad.%s", obj, m.ps.p[i].name);
        CHECK(vlm_st_get(&f, name, VLM_F32, p->ndim, p->shape, g, &err) == VLM_OK, "%s", err.msg);
        double d = 0, s = tu_max_abs(g, n);
        for (long k = 0; k < n; k++) d = fmax(d, fabs((double)p->grad[k] - g[k]));
        CHECK(s > 0, "%s: PyTorch's gradient of %s is all zero", obj, m.ps.p[i].name);
        CHECK(d <= 1e-3 * s + 1e-7, "%s: grad %s differs by %.3g (max |g| %.3g)", obj, m.ps.p[i].name, d, s);
        free(g);
    }
    vlm_ctx_free(&c);
    vlm_lm_batch_free(&b);
    vlm_lm_free(&m);
    vlm_st_free(&f);
}

// The whole loss against central differences on sampled weights of every tensor.
static void test_finite_differences(vlm_lm_objective obj) {
    vlm_error err = {0};
    vlm_lm_cfg cfg;
    vlm_lm_cfg_preset("micro", obj, 30, 8, &cfg, &err);
    cfg.width = 8, cfg.heads = 2, cfg.mlp_width = 32;
    vlm_lm m;
    CHECK(vlm_lm_init(&m, &cfg, &err) == VLM_OK, "%s", err.msg);
    vlm_rng r;
    vlm_rng_init(&r, 3, VLM_RNG_INIT, 0);
    vlm_lm_init_weights(&m, &r);
    for (int64_t i = 0; i < m.ps.total; i++) m.ps.data[i] += 0.2f * vlm_rng_normal(&r); // away from init symmetries
    int32_t rows[4 * 9];
    for (int i = 0; i < 4 * 9; i++) rows[i] = (int32_t)vlm_rng_below(&r, 28);
    vlm_lm_batch b;
    vlm_lm_batch_alloc(&b, 4, 8, &err);
    vlm_lm_batch_make(&m, rows, 5, 0, &b);
    vlm_ctx c;
    vlm_ctx_init(&c, 16u << 20, 0, &err);
    c.grad_enabled = 1;
    vlm_params_zero_grad(&m.ps);
    vlm_tensor *l = vlm_lm_loss(&c, &m, &b);
    CHECK(l && vlm_backward(&c, l) == VLM_OK, "%s", c.err.msg);
    float *ga = malloc(sizeof(float) * (size_t)m.ps.total);
    memcpy(ga, m.ps.grad, sizeof(float) * (size_t)m.ps.total);
    c.grad_enabled = 0;
    double worst = 0, gmax = 0;
    int checked = 0;
    for (int pi = 0; pi < m.ps.n; pi++)
        for (int s = 0; s < 6; s++) {
            int64_t k = m.ps.p[pi].offset + (int64_t)vlm_rng_below(&r, (uint64_t)m.ps.p[pi].numel);
            float x0 = m.ps.data[k];
            double f[2];
            const float h = 1e-2f;
            for (int side = 0; side < 2; side++) {
                m.ps.data[k] = x0 + (side ? -h : h);
                vlm_ctx_reset(&c);
                f[side] = vlm_f32(vlm_lm_loss(&c, &m, &b))[0];
            }
            m.ps.data[k] = x0;
            double fd = (f[0] - f[1]) / (2 * h);
            worst = fmax(worst, fabs(fd - ga[k]));
            gmax = fmax(gmax, fabs(ga[k]));
            checked++;
        }
    CHECK(gmax > 1e-3, "%s: sampled gradients all ~0 (%g)", vlm_lm_objective_name(obj), gmax);
    CHECK(worst <= 2e-3 + 2e-2 * gmax, "%s: analytic vs central difference off by %.3g (max |g| %.3g, %d weights)",
          vlm_lm_objective_name(obj), worst, gmax, checked);
    free(ga);
    vlm_ctx_free(&c);
    vlm_lm_batch_free(&b);
    vlm_lm_free(&m);
}

static void test_masking(void) {
    vlm_error err = {0};
    vlm_lm_cfg cfg;
    vlm_lm_cfg_preset("micro", VLM_LM_MLM, 1000, 40, &cfg, &err); // sot 998, eot 999, mask 1000
    vlm_lm m;
    CHECK(vlm_lm_init(&m, &cfg, &err) == VLM_OK, "%s", err.msg);
    enum { B = 400, T = 40 };
    static int32_t rows[B * T];
    vlm_rng r;
    vlm_rng_init(&r, 1, VLM_RNG_DATA, 0);
    for (int i = 0; i < B * T; i++) rows[i] = (int32_t)vlm_rng_below(&r, 998);
    for (int i = 0; i < B; i++) rows[i * T + 5] = cfg.sot, rows[i * T + 6] = cfg.eot;
    vlm_lm_batch b, h;
    vlm_lm_batch_alloc(&b, B, T, &err);
    vlm_lm_batch_make(&m, rows, 9, 100, &b);
    const int K = 6; // round(0.15 * 40)
    CHECK(b.n_sel == K * B, "n_sel %d, want %d", b.n_sel, K * B);
    long masked = 0, random = 0, kept = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < B; i++) {
            int p = b.sel[k * B + i], t = b.target[k * B + i], now = b.in[i * T + p];
            CHECK(p != 5 && p != 6, "a special token was selected");
            CHECK(t == rows[i * T + p], "target is not the original token");
            if (k) CHECK(p > b.sel[(k - 1) * B + i], "positions not increasing");
            masked += now == cfg.mask, kept += now == t, random += now != cfg.mask && now != t;
        }
    double n = K * B;
    CHECK(fabs(masked / n - 0.8) < 0.03 && fabs(random / n - 0.1) < 0.02 && fabs(kept / n - 0.1) < 0.02,
          "80/10/10 split: %.3f %.3f %.3f", masked / n, random / n, kept / n);
    int changed = 0;
    for (int i = 0; i < B * T; i++) changed += b.in[i] != rows[i];
    CHECK(changed == masked + random, "tokens outside the selection changed (%d vs %ld)", changed, masked + random);
    // the second half masked on its own (first = 100 + B/2) gives the same rows
    vlm_lm_batch_alloc(&h, B / 2, T, &err);
    vlm_lm_batch_make(&m, rows + (B / 2) * T, 9, 100 + B / 2, &h);
    CHECK(!memcmp(h.in, b.in + (B / 2) * T, sizeof(int32_t) * (B / 2) * T), "masks depend on the batch split");
    vlm_lm_batch_free(&h);
    vlm_lm_batch_free(&b);
    vlm_lm_free(&m);
}

// Files, sampling and the trainer on a small text.
static void test_train_and_files(void) {
    const char *dir = "test_lm_tmp";
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CHECK(system(cmd) == 0, "mkdir");
    FILE *f = fopen("test_lm_tmp/text.txt", "w");
    const char *animals[] = {"cat", "dog", "bird", "fish", "horse", "cow"}, *acts[] = {"runs", "sleeps", "eats", "swims"};
    for (int i = 0; i < 600; i++)
        fprintf(f, "the %s %s and the %s %s\n", animals[i % 6], acts[i % 4], animals[(i / 6) % 6], acts[(i / 4) % 4]);
    fclose(f);
    vlm_lm_opts o;
    vlm_lm_opts_default(&o);
    o.train = "test_lm_tmp/text.txt", o.val = "test_lm_tmp/text.txt", o.model = "micro", o.vocab_size = 600;
    o.context = 16, o.c.batch = 8, o.c.max_steps = 40, o.c.warmup = 5, o.c.lr = 3e-3, o.c.logs = dir;
    o.c.log_every = 1, o.c.save_every = 10, o.c.workers = 1;
    vlm_lm_result r;
    vlm_error err = {0};
    o.c.name = "full";
    CHECK(vlm_lm_train(&o, &r, &err) == VLM_OK, "%s", err.msg);
    CHECK(r.steps == 40 && r.have_val && r.val.perplexity < 8, "40 steps: val perplexity %.2f", r.val.perplexity);
    double loss[64];
    tu_read_losses("test_lm_tmp/full/metrics.jsonl", loss, 64);
    CHECK(loss[40] < 0.6 * loss[1], "loss %.3f -> %.3f", loss[1], loss[40]);
    // stopped at step 17 and resumed: the same final bytes, each step once
    o.c.name = "split", o.c.stop_at = 17;
    CHECK(vlm_lm_train(&o, &r, &err) == VLM_OK && r.steps == 17, "%s (steps %lld)", err.msg, (long long)r.steps);
    o.c.stop_at = 0, o.c.resume = "latest";
    CHECK(vlm_lm_train(&o, &r, &err) == VLM_OK && r.steps == 40, "%s", err.msg);
    tu_check_steps(dir, "split", 17, 40);
    tu_check_same_final(dir, "full", "split");
    // the model file: load, evaluate, sample
    vlm_lm m;
    char *merges = NULL;
    CHECK(vlm_lm_load("test_lm_tmp/full/checkpoints/epoch_latest.safetensors", &m, &merges, &err) == VLM_OK && merges,
          "%s", err.msg);
    vlm_lm m2;
    CHECK(vlm_lm_load("test_lm_tmp/full/checkpoints/epoch_latest.state.safetensors", &m2, NULL, &err) == VLM_OK, "%s",
          err.msg);
    CHECK(!memcmp(m.ps.data, m2.ps.data, sizeof(float) * (size_t)m.ps.total), "state params differ from the model's");
    vlm_lm_free(&m2);
    int32_t a[16] = {m.cfg.sot}, g[16] = {m.cfg.sot}, s1[16] = {m.cfg.sot}, s2[16] = {m.cfg.sot};
    int na = 1, ng = 1, n1 = 1, n2 = 1;
    vlm_lm_sample_opts so;
    vlm_lm_sample_opts_default(&so);
    CHECK(vlm_lm_sample(&m, a, &na, 16, &so, &err) == VLM_OK && na > 3, "greedy: %s (%d)", err.msg, na);
    so.temperature = 1, so.top_k = 1;
    CHECK(vlm_lm_sample(&m, g, &ng, 16, &so, &err) == VLM_OK && ng == na && !memcmp(a, g, sizeof(int32_t) * na),
          "top-k 1 differs from greedy");
    so.top_k = 0, so.seed = 4;
    vlm_lm_sample(&m, s1, &n1, 16, &so, &err);
    vlm_lm_sample(&m, s2, &n2, 16, &so, &err);
    CHECK(n1 == n2 && !memcmp(s1, s2, sizeof(int32_t) * n1), "same seed, different samples");
    for (int i = 1; i < na; i++) CHECK(a[i] != m.cfg.sot, "SOT generated");
    free(merges);
    vlm_lm_free(&m);
    // broken files are refused with the path in the message
    f = fopen("test_lm_tmp/bad.safetensors", "w");
    fputs("not a model", f);
    fclose(f);
    CHECK(vlm_lm_load("test_lm_tmp/bad.safetensors", &m, NULL, &err) != VLM_OK && strstr(err.msg, "bad.safetensors"),
          "%s", err.msg);
}

// vlm pretrain --pretrained-text: the CLIP's text tower starts as the LM's
// (every matching tensor equal after one step at LR ~0), text_projection and
// the image tower new, the LM's tokenizer taken; a tower that does not fit is
// refused.
static void test_pretrained_text(void) {
    const char *lm_path = "test_lm_tmp/full/checkpoints/epoch_latest.safetensors";
    tu_make_squares("test_lm_tmp/sq", 16, 0);
    FILE *f = fopen("test_lm_tmp/clip.json", "w");
    fputs("{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 8, \"width\": 32, \"layers\": 1, "
          "\"head_width\": 16}, \"text_cfg\": {\"context_length\": 16, \"vocab_size\": 1024, \"width\": 64, "
          "\"heads\": 2, \"layers\": 2}}", f);
    fclose(f);
    vlm_pretrain_opts o;
    vlm_pretrain_opts_default(&o);
    o.train = "test_lm_tmp/sq/train.tsv", o.model = "test_lm_tmp/clip.json", o.pretrained_text = lm_path;
    o.c.batch = 8, o.c.max_steps = 1, o.c.lr = 1e-12, o.c.warmup = 0, o.c.logs = "test_lm_tmp", o.c.name = "clip";
    o.c.workers = 1;
    vlm_pretrain_result r;
    vlm_error err = {0};
    CHECK(vlm_pretrain(&o, &r, &err) == VLM_OK, "%s", err.msg);
    vlm_clip m;
    vlm_lm lm;
    char *tok = NULL, *ltok = NULL;
    CHECK(vlm_ckpt_load_model(r.checkpoint, &m, &tok, &err) == VLM_OK, "%s", err.msg);
    CHECK(vlm_lm_load(lm_path, &lm, &ltok, &err) == VLM_OK, "%s", err.msg);
    CHECK(tok && ltok && !strcmp(tok, ltok), "the CLIP did not take the language model's tokenizer");
    int same = 0;
    for (int i = 0; i < m.ps.n; i++) {
        int j = vlm_params_find(&lm.ps, m.ps.p[i].name);
        if (j < 0) {
            CHECK(!strncmp(m.ps.p[i].name, "visual.", 7) || !strcmp(m.ps.p[i].name, "text_projection") ||
                      !strcmp(m.ps.p[i].name, "logit_scale"), "%s has no source", m.ps.p[i].name);
            continue;
        }
        int64_t n = m.ps.p[i].numel < lm.ps.p[j].numel ? m.ps.p[i].numel : lm.ps.p[j].numel;
        const float *a = vlm_f32(&m.ps.p[i].t), *b = vlm_f32(&lm.ps.p[j].t);
        double d = 0;
        for (int64_t k = 0; k < n; k++) d = fmax(d, fabs((double)a[k] - b[k]));
        CHECK(d < 1e-6, "%s differs from the language model's by %g", m.ps.p[i].name, d);
        same++;
    }
    CHECK(same == 4 + 12 * 2, "%d tensors copied, want 28", same);
    free(tok), free(ltok);
    vlm_lm_free(&lm);
    vlm_clip_free(&m);
    // a text tower of another width is refused with both shapes named
    f = fopen("test_lm_tmp/clip2.json", "w");
    fputs("{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 8, \"width\": 32, \"layers\": 1, "
          "\"head_width\": 16}, \"text_cfg\": {\"context_length\": 16, \"vocab_size\": 1024, \"width\": 32, "
          "\"heads\": 2, \"layers\": 2}}", f);
    fclose(f);
    o.model = "test_lm_tmp/clip2.json", o.c.name = "clip2";
    CHECK(vlm_pretrain(&o, &r, &err) == VLM_ERR_SHAPE && strstr(err.msg, "does not fit"), "%s", err.msg);
}

int main(void) {
    test_torch_parity("clm");
    test_torch_parity("mlm");
    test_finite_differences(VLM_LM_CLM);
    test_finite_differences(VLM_LM_MLM);
    test_masking();
    test_train_and_files();
    test_pretrained_text();
    int rc = tu_done("test_lm");
    if (!rc) (void)!system("rm -rf test_lm_tmp");
    return rc;
}
