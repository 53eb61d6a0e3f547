// `vlm bench ops`: GFLOPS of the core ops at transformer shapes, with raw
// cblas_sgemm measured in the same run as the yardstick for the matmul op.
#include "core/bf16.h"
#include "core/cpu.h"
#include <math.h>
#include "core/clock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/ops.h"
#include "core/optim.h"
#include "fusion/clip.h"
#include "losses/contrastive.h"
#include <sys/resource.h>
#ifdef VLM_HAVE_OPENBLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

static void fill(float *p, int64_t n, vlm_rng *r) {
    for (int64_t i = 0; i < n; i++) p[i] = vlm_rng_uniform(r) - 0.5f;
}

typedef struct {
    const char *name;
    double gflops, ms;
} result;

// Times fn over reps after one warm-up; returns the best-of-3 mean ms.
#define TIME_BEST(ms_out, reps, body)                  \
    do {                                               \
        body;                                          \
        double best = 1e30;                            \
        for (int trial = 0; trial < 3; trial++) {      \
            double t0 = vlm_now();                       \
            for (int rep = 0; rep < (reps); rep++) body; \
            double dt = (vlm_now() - t0) / (reps);       \
            if (dt < best) best = dt;                  \
        }                                              \
        ms_out = best * 1e3;                           \
    } while (0)

// matmul op against raw cblas_sgemm at the ViT-tiny GEMM shapes; *worst_ratio:
// the lowest sgemm/op speed ratio seen.
static void bench_gemms(vlm_ctx *c, vlm_rng *rng, int reps, result *res, int *nres, double *worst_ratio) {
    const int64_t gemms[][3] = {{64 * 65, 192, 576}, {64 * 65, 192, 768}, {64 * 65, 768, 192}, {64 * 65, 192, 192}};
    for (size_t g = 0; g < sizeof gemms / sizeof gemms[0]; g++) {
        int64_t M = gemms[g][0], K = gemms[g][1], N = gemms[g][2];
        float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N)),
              *Cm = malloc(sizeof(float) * (size_t)(M * N));
        fill(A, M * K, rng);
        fill(B, K * N, rng);
        double flops = 2.0 * (double)M * (double)N * (double)K, ms_raw = 0, ms_op = 0;
#ifdef VLM_HAVE_OPENBLAS
        TIME_BEST(ms_raw, reps,
                  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)K, B,
                              (int)N, 0.0f, Cm, (int)N));
#endif
        c->grad_enabled = 0;
        int64_t sa[2] = {M, K}, sb[2] = {K, N};
        TIME_BEST(ms_op, reps, {
            vlm_ctx_reset(c);
            vlm_op_matmul(c, vlm_tensor_wrap(c, VLM_F32, 2, sa, A, NULL), vlm_tensor_wrap(c, VLM_F32, 2, sb, B, NULL));
        });
        c->precision = VLM_PREC_AMP_BF16;
        double ms_bf = 0;
        TIME_BEST(ms_bf, reps, {
            vlm_ctx_reset(c);
            vlm_op_matmul(c, vlm_tensor_wrap(c, VLM_F32, 2, sa, A, NULL), vlm_tensor_wrap(c, VLM_F32, 2, sb, B, NULL));
        });
        c->precision = VLM_PREC_FP32;
        static char names[8][3][64];
        snprintf(names[g][0], 64, "sgemm_raw %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
        snprintf(names[g][1], 64, "matmul_op %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
        res[(*nres)++] = (result){names[g][0], ms_raw > 0 ? flops / ms_raw * 1e-6 : 0, ms_raw};
        res[(*nres)++] = (result){names[g][1], flops / ms_op * 1e-6, ms_op};
        snprintf(names[g][2], 64, "matmul_op_amp_bf16 %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
        res[(*nres)++] = (result){names[g][2], flops / ms_bf * 1e-6, ms_bf};
        if (ms_raw > 0 && ms_raw / ms_op < *worst_ratio) *worst_ratio = ms_raw / ms_op;
        free(A);
        free(B);
        free(Cm);
    }
}

// linear forward + backward (qkv projection of ViT-tiny, batch 64): 3 GEMMs
static void bench_linear(vlm_ctx *c, vlm_rng *rng, int reps, result *res, int *nres) {
    int64_t M = 64 * 65, K = 192, N = 576;
    c->grad_enabled = 1;
    float *X = malloc(sizeof(float) * (size_t)(M * K)), *W = malloc(sizeof(float) * (size_t)(N * K)),
          *bb = calloc((size_t)N, sizeof(float)), *gX = calloc((size_t)(M * K), sizeof(float)),
          *gW = calloc((size_t)(N * K), sizeof(float)), *gb = calloc((size_t)N, sizeof(float));
    fill(X, M * K, rng);
    fill(W, N * K, rng);
    int64_t sx[2] = {M, K}, sw[2] = {N, K}, sbias[1] = {N};
    double ms = 0;
    TIME_BEST(ms, reps, {
        vlm_ctx_reset(c);
        vlm_tensor *y = vlm_op_linear(c, vlm_tensor_wrap(c, VLM_F32, 2, sx, X, gX),
                                      vlm_tensor_wrap(c, VLM_F32, 2, sw, W, gW),
                                      vlm_tensor_wrap(c, VLM_F32, 1, sbias, bb, gb));
        vlm_backward(c, vlm_op_sum(c, y));
    });
    res[(*nres)++] = (result){"linear_fwd_bwd 4160x192x576", 3 * 2.0 * (double)(M * N * K) / ms * 1e-6, ms};
    free(X); free(W); free(bb); free(gX); free(gW); free(gb);
}

// attention: B=64, H=3, T=65, D=64 (ViT-tiny), forward and forward+backward
static void bench_attention(vlm_ctx *c, vlm_rng *rng, int reps, result *res, int *nres) {
    int64_t B = 64, H = 3, T = 65, D = 64, n = B * T * 3 * H * D;
    float *qkv = malloc(sizeof(float) * (size_t)n), *g = calloc((size_t)n, sizeof(float));
    fill(qkv, n, rng);
    int64_t sh[4] = {B, H, T, D}, st[4] = {T * 3 * H * D, D, 3 * H * D, 1}, full[1] = {n};
    double flops = 4.0 * (double)(B * H * T * T * D), ms_f = 0, ms_fb = 0;
    for (int withgrad = 0; withgrad < 2; withgrad++) {
        c->grad_enabled = withgrad;
        double ms = 0;
        TIME_BEST(ms, reps, {
            vlm_ctx_reset(c);
            vlm_tensor *base = vlm_tensor_wrap(c, VLM_F32, 1, full, qkv, withgrad ? g : NULL);
            vlm_tensor *o = vlm_op_attention(c, vlm_view_strided(c, base, 4, sh, st, 0),
                                             vlm_view_strided(c, base, 4, sh, st, H * D),
                                             vlm_view_strided(c, base, 4, sh, st, 2 * H * D), 0, NULL);
            if (withgrad) vlm_backward(c, vlm_op_sum(c, o));
        });
        if (withgrad) ms_fb = ms; else ms_f = ms;
    }
    res[(*nres)++] = (result){"attention_fwd 64x3x65x64", flops / ms_f * 1e-6, ms_f};
    res[(*nres)++] = (result){"attention_fwd_bwd 64x3x65x64", 3.0 * flops / ms_fb * 1e-6, ms_fb};
    free(qkv);
    free(g);
}

// layernorm [4160, 192] forward (about 8 flops per element)
static void bench_layernorm(vlm_ctx *c, vlm_rng *rng, int reps, result *res, int *nres) {
    int64_t R = 64 * 65, C = 192;
    float *x = malloc(sizeof(float) * (size_t)(R * C)), *w = malloc(sizeof(float) * (size_t)C),
          *b = calloc((size_t)C, sizeof(float));
    fill(x, R * C, rng);
    for (int64_t i = 0; i < C; i++) w[i] = 1;
    int64_t sx[2] = {R, C}, sw[1] = {C};
    c->grad_enabled = 0;
    double ms = 0;
    TIME_BEST(ms, reps * 5, {
        vlm_ctx_reset(c);
        vlm_op_layernorm(c, vlm_tensor_wrap(c, VLM_F32, 2, sx, x, NULL), vlm_tensor_wrap(c, VLM_F32, 1, sw, w, NULL),
                         vlm_tensor_wrap(c, VLM_F32, 1, sw, b, NULL), 1e-5f);
    });
    res[(*nres)++] = (result){"layernorm_fwd 4160x192", 8.0 * (double)(R * C) / ms * 1e-6, ms};
    free(x); free(w); free(b);
}

static const char *ops_usage =
    "usage: vlm bench ops [--reps N] [--json]\n"
    "GFLOPS of matmul (vs raw cblas_sgemm), linear fwd+bwd, attention and layernorm\n"
    "at ViT-tiny shapes (batch 64, 65 tokens, width 192).\n";

static int bench_ops(int argc, char **argv) {
    int json = 0;
    long long reps_ll = 10;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"reps", CLI_INT, &reps_ll, 1, 1000000, NULL, NULL},
        {"json", CLI_FLAG, &json, 0, 0, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("bench ops", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "bench ops", ops_usage, &err);
    const int reps = (int)reps_ll;
    vlm_ctx c;
    if (vlm_ctx_init(&c, 64u << 20, 1, &err)) return cli_fail("bench ops", &err);
    vlm_rng rng;
    vlm_rng_init(&rng, 1, 1, 0);
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_get_max_threads();
#endif
    result res[32];
    int nres = 0;
    double worst_ratio = 1e9;
    bench_gemms(&c, &rng, reps, res, &nres, &worst_ratio);
    bench_linear(&c, &rng, reps, res, &nres);
    bench_attention(&c, &rng, reps, res, &nres);
    bench_layernorm(&c, &rng, reps, res, &nres);
    if (!vlm_ctx_ok(&c)) {
        vlm_error e = c.err;
        vlm_ctx_free(&c);
        return cli_fail("bench ops", &e);
    }
    vlm_ctx_free(&c);
    if (json) {
        printf("{\"threads\": %d, \"matmul_vs_sgemm_min\": %.3f, \"ops\": [", nthreads, worst_ratio);
        for (int i = 0; i < nres; i++)
            printf("%s{\"name\": \"%s\", \"gflops\": %.2f, \"ms\": %.3f}", i ? ", " : "", res[i].name, res[i].gflops, res[i].ms);
        printf("]}\n");
    } else {
        printf("threads: %d\n%-34s %10s %10s\n", nthreads, "op", "GFLOPS", "ms");
        for (int i = 0; i < nres; i++) printf("%-34s %10.2f %10.3f\n", res[i].name, res[i].gflops, res[i].ms);
        printf("matmul op / raw sgemm (worst shape): %.1f%%\n", 100.0 * worst_ratio);
    }
    return 0;
}

// FLOPs of one training step as vlm executes it: the GEMM and attention
// multiply-adds of both towers' forward pass, and twice that in the backward
// for the rows that carry a gradient (the fused transformer skips the rest:
// all but the class token in the vision tower's top block, the positions
// after each caption's EOT in the text tower). Tt: text positions computed
// (the batch's last EOT + 1); live: sum over captions of their EOT + 1.
static double clip_step_gflop(const vlm_clip_cfg *cfg, int B, int Tt, double live) {
    const vlm_vit_cfg *v = &cfg->vision;
    const vlm_text_cfg *t = &cfg->text;
    double np = (double)(v->image_size / v->patch_size) * (v->image_size / v->patch_size), Tv = np + 1;
    double Cv = v->width, Mv = v->mlp_width, Ct = t->width, Mt = t->mlp_width, E = cfg->embed_dim;
    double vlin = 2.0 * B * Tv * (4 * Cv * Cv + 2 * Cv * Mv), vatt = 4.0 * B * Tv * Tv * Cv;
    double tlin = 2.0 * B * Tt * (4 * Ct * Ct + 2 * Ct * Mt), tatt = 4.0 * B * (double)Tt * Tt * Ct;
    double patch = 2.0 * B * np * 3 * v->patch_size * v->patch_size * Cv, proj = 2.0 * B * (Cv + Ct) * E;
    double fwd = v->layers * (vlin + vatt) + t->layers * (tlin + tatt) + patch + proj + 2.0 * B * B * E;
    double bwd = 2 * ((v->layers - 1) * (vlin + vatt) + (vlin + vatt) / Tv) + patch +
                 2 * t->layers * (tlin * live / ((double)B * Tt) + tatt) + 2 * proj + 4.0 * B * B * E;
    return (fwd + bwd) * 1e-9;
}

// The GEMM peak at this precision, measured here: a [4160 x 768] x [768 x 768]
// product (the size of a tiny-preset MLP GEMM, large enough to saturate) on
// all threads, best of 5 after a warm-up.
static double gemm_peak_gflops(vlm_ctx *c) {
    const int64_t M = 4160, K = 768, N = 768;
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *Bm = malloc(sizeof(float) * (size_t)(K * N)),
          *Cm = malloc(sizeof(float) * (size_t)(M * N));
    if (!A || !Bm || !Cm) return 0;
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) - 6;
    for (int64_t i = 0; i < K * N; i++) Bm[i] = (float)((i * 5) % 11) - 5;
    vlm_mat mc = {Cm, M, N, N, 1}, ma = {A, M, K, K, 1}, mb = {Bm, K, N, N, 1};
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = vlm_now();
        vlm_ctx_gemm(c, mc, ma, mb, 1, 0);
        double dt = vlm_now() - t0;
        if (r && dt < best) best = dt;
    }
    free(A), free(Bm), free(Cm);
    return 2.0 * M * N * K / best * 1e-9;
}

static const char *bench_usage =
    "usage: vlm bench ops [--reps N] [--json]\n"
    "       vlm bench [--model NAME|CONFIG.json] [--batch-size B] [--steps N] [--warmup N] [--siglip]\n"
    "                 [--precision fp32|amp_bf16|bf16|auto] [--json]\n"
    "The second form times full CLIP training steps (forward, loss, backward, AdamW) on synthetic data\n"
    "and reports pairs_per_s, step_ms and peak_rss_mb.\n";

static int bench_model(int argc, char **argv) {
    const char *model = "tiny";
    long long batch_ll = 64, steps_ll = 20, warmup_ll = 3;
    int json = 0, siglip = 0, precision = VLM_PREC_FP32;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"model", CLI_STR, &model, 0, 0, NULL, NULL},
        {"batch-size", CLI_INT, &batch_ll, 1, 1 << 16, NULL, NULL},
        {"steps", CLI_INT, &steps_ll, 1, 1000000, NULL, NULL},
        {"warmup", CLI_INT, &warmup_ll, 0, 1000000, NULL, NULL},
        {"siglip", CLI_FLAG, &siglip, 0, 0, NULL, NULL},
        {"precision", CLI_FN, &precision, 0, 0, cli_fn_precision, NULL},
        {"json", CLI_FLAG, &json, 0, 0, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("bench", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "bench", bench_usage, &err);
    const int batch = (int)batch_ll, steps = (int)steps_ll, warmup = (int)warmup_ll;
    vlm_clip_cfg cfg;
    if (vlm_clip_cfg_load(model, &cfg, &err)) return cli_fail("bench", &err);
    cfg.siglip = siglip;
    vlm_clip m;
    if (vlm_clip_init(&m, &cfg, &err)) return cli_fail("bench", &err);
    vlm_clip_init_weights(&m, 0);
    vlm_adamw opt;
    vlm_ctx c;
    if (vlm_adamw_init(&opt, &m.ps, (vlm_adamw_cfg){5e-4f, 0.9f, 0.98f, 1e-6f, 0.2f}, &err) ||
        vlm_ctx_init(&c, 64u << 20, 0, &err))
        return cli_fail("bench", &err);
    c.precision = precision;
    int S = cfg.vision.image_size, T = cfg.text.context_length, V = cfg.text.vocab_size;
    float *images = malloc(sizeof(float) * (size_t)batch * 3 * S * S);
    int32_t *text = calloc((size_t)batch * T, sizeof(int32_t));
    vlm_rng rng;
    vlm_rng_init(&rng, 0, VLM_RNG_DATA, 0);
    for (int64_t i = 0; i < (int64_t)batch * 3 * S * S; i++) images[i] = vlm_rng_normal(&rng);
    for (int b = 0; b < batch; b++) { // SOT, words, EOT, padding: lengths 6..T
        int L = 6 + (int)vlm_rng_below(&rng, (uint64_t)(T - 5));
        text[b * T] = V - 2;
        for (int j = 1; j < L - 1; j++) text[b * T + j] = 1 + (int32_t)vlm_rng_below(&rng, (uint64_t)(V - 3));
        text[b * T + L - 1] = V - 1;
    }
    int64_t ishape[4] = {batch, 3, S, S}, tshape[2] = {batch, T};
    double t_total = 0, loss = 0;
    for (int step = 0; step < warmup + steps; step++) {
        double t0 = vlm_now();
        vlm_ctx_reset(&c);
        vlm_params_zero_grad(&m.ps);
        vlm_tensor *fi = vlm_clip_encode_image(&c, &m, vlm_tensor_wrap(&c, VLM_F32, 4, ishape, images, NULL), NULL);
        vlm_tensor *ft = vlm_clip_encode_text(&c, &m, vlm_tensor_wrap(&c, VLM_I32, 2, tshape, text, NULL));
        vlm_tensor *l;
        if (siglip) {
            vlm_tensor *scale = vlm_op_act(&c, vlm_params_get(&m.ps, m.logit_scale), VLM_ACT_EXP);
            l = vlm_loss_siglip(&c, vlm_op_l2norm(&c, fi), vlm_op_l2norm(&c, ft), scale, vlm_params_get(&m.ps, m.logit_bias), NULL);
        } else
            l = vlm_loss_clip(&c, vlm_clip_logits(&c, &m, fi, ft), NULL);
        if (!l || vlm_backward(&c, l)) return cli_fail("bench", &c.err);
        vlm_clip_grad_norm(&m.ps, 1.0f);
        vlm_adamw_step(&opt, &m.ps, 5e-4f);
        if (precision == VLM_PREC_BF16) vlm_bf16_round(m.ps.data, m.ps.total);
        vlm_clip_clamp_logit_scale(&m);
        double dt = vlm_now() - t0;
        if (step >= warmup) t_total += dt;
        loss = vlm_f32(l)[0];
    }
    int Tt = 0; // the text tower runs up to the batch's last EOT token
    double live = 0;
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < T; j++)
            if (text[b * T + j] == V - 1) {
                Tt = j + 1 > Tt ? j + 1 : Tt;
                live += j + 1;
            }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); // the training's peak, before the GEMM-peak probe's buffers
    double gflop = clip_step_gflop(&cfg, batch, Tt, live), peak = gemm_peak_gflops(&c);
    double achieved = gflop / (t_total / steps);
    double step_ms = 1e3 * t_total / steps, pairs = batch / (t_total / steps), rss = (double)ru.ru_maxrss / 1024.0;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (json)
        printf("{\"model\": \"%s\", \"batch_size\": %d, \"steps\": %d, \"threads\": %d, \"precision\": \"%s\", "
               "\"isa\": \"%s\", \"pairs_per_s\": %.1f, \"step_ms\": %.2f, \"peak_rss_mb\": %.1f, \"params\": %lld, "
               "\"last_loss\": %.4f, \"step_gflop\": %.2f, \"achieved_gflops\": %.1f, \"gemm_peak_gflops\": %.1f, "
               "\"mfu\": %.3f}\n",
               model, batch, steps, threads, vlm_precision_name(precision), vlm_isa_name(vlm_cpu_isa()), pairs, step_ms,
               rss, (long long)m.ps.total, loss, gflop, achieved, peak, achieved / peak);
    else
        printf("model %s  batch %d  threads %d  params %lld  precision %s  isa %s\n"
               "step %.2f ms  %.1f pairs/s  peak RSS %.1f MB  loss %.4f\n"
               "%.2f GFLOP per step: %.1f GFLOP/s of a measured %.1f GFLOP/s GEMM peak (MFU %.1f%%)\n",
               model, batch, threads, (long long)m.ps.total, vlm_precision_name(precision), vlm_isa_name(vlm_cpu_isa()),
               step_ms, pairs, rss, loss, gflop, achieved, peak, 100 * achieved / peak);
    free(images);
    free(text);
    vlm_ctx_free(&c);
    vlm_clip_free(&m);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "ops")) return bench_ops(argc - 1, argv + 1);
    return bench_model(argc, argv);
}
