// Runtime dispatch and amp_bf16: every kernel variant this CPU has (portable,
// AVX2, AVX-512, AVX512-BF16) computes the same forward and backward of each
// dispatched op (activations, LayerNorm, softmax, cross-entropy, patchify,
// the fused transformer's attention and norms, AdamW) as the portable one;
// and every op that runs its GEMMs in bf16 under amp_bf16 (linear, matmul,
// patchify, conv2d, the fused transformer) stays within bf16 tolerance of
// its fp32 result while differing from it.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/bf16.h"
#include "core/cpu.h"
#include "core/optim.h"
#include "core/transformer.h"
#include "tests/testutil.h"

#define MAXV (1 << 20)
typedef struct {
    float v[MAXV];
    int64_t n;
    char name[64][48];
    int64_t start[65];
    int nseg;
} outs;

static void put(outs *o, const char *name, const float *p, int64_t n) {
    if (o->n + n > MAXV || o->nseg >= 64) return;
    snprintf(o->name[o->nseg], sizeof o->name[0], "%s", name);
    o->start[o->nseg++] = o->n;
    memcpy(o->v + o->n, p, sizeof(float) * (size_t)n);
    o->n += n;
    o->start[o->nseg] = o->n;
}

static vlm_tensor *input(vlm_ctx *c, int ndim, const int64_t *shape, uint64_t seed, float scale) {
    vlm_tensor *t = vlm_tensor_zeros(c, VLM_F32, ndim, shape, 1);
    vlm_rng r;
    vlm_rng_init(&r, seed, 0, 0);
    for (int64_t i = 0; i < vlm_numel(t); i++) vlm_f32(t)[i] = scale * vlm_rng_normal(&r);
    return t;
}

// loss = sum(y * fixed random weights), so every output element gets its own gradient
static void backward_of(vlm_ctx *c, vlm_tensor *y) {
    vlm_tensor *w = input(c, y->ndim, y->shape, 99, 1.0f);
    w->requires_grad = 0;
    vlm_backward(c, vlm_op_sum(c, vlm_op_mul(c, y, w)));
}

// The dispatched ops once, outputs and input gradients into o.
static void run_dispatched(outs *o) {
    vlm_ctx c;
    vlm_error err = {0};
    vlm_ctx_init(&c, 64u << 20, 1, &err);
    int64_t s2[2] = {37, 53};
    static const vlm_act acts[] = {VLM_ACT_GELU, VLM_ACT_GELU_TANH, VLM_ACT_QUICK_GELU, VLM_ACT_SILU};
    for (int a = 0; a < 4; a++) {
        vlm_ctx_reset(&c);
        vlm_tensor *x = input(&c, 2, s2, 1, 3.0f), *y = vlm_op_act(&c, x, acts[a]);
        backward_of(&c, y);
        put(o, "act", vlm_f32(y), vlm_numel(y));
        put(o, "act grad", x->grad, vlm_numel(x));
    }
    for (int lf = 0; lf < 2; lf++) {
        vlm_ctx_reset(&c);
        vlm_tensor *x = input(&c, 2, s2, 2, 2.0f), *y = lf ? vlm_op_log_softmax(&c, x) : vlm_op_softmax(&c, x);
        backward_of(&c, y);
        put(o, "softmax", vlm_f32(y), vlm_numel(y));
        put(o, "softmax grad", x->grad, vlm_numel(x));
    }
    vlm_ctx_reset(&c);
    int64_t sw[1] = {53};
    vlm_tensor *x = input(&c, 2, s2, 3, 2.0f), *w = input(&c, 1, sw, 4, 1.0f), *b = input(&c, 1, sw, 5, 1.0f);
    vlm_tensor *y = vlm_op_layernorm(&c, x, w, b, 1e-5f);
    backward_of(&c, y);
    put(o, "layernorm", vlm_f32(y), vlm_numel(y));
    put(o, "layernorm dx", x->grad, vlm_numel(x));
    put(o, "layernorm dw", w->grad, 53);
    vlm_ctx_reset(&c);
    int32_t tg[37];
    for (int i = 0; i < 37; i++) tg[i] = (i * 7) % 53;
    x = input(&c, 2, s2, 6, 2.0f);
    y = vlm_op_cross_entropy(&c, x, tg, 0.1f);
    vlm_backward(&c, y);
    put(o, "cross_entropy", vlm_f32(y), 1);
    put(o, "cross_entropy grad", x->grad, vlm_numel(x));
    vlm_ctx_reset(&c);
    int64_t si[4] = {2, 3, 12, 12}, spw[4] = {16, 3, 4, 4}, spb[1] = {16};
    x = input(&c, 4, si, 7, 1.0f);
    w = input(&c, 4, spw, 8, 0.2f);
    b = input(&c, 1, spb, 9, 0.2f);
    y = vlm_op_patchify(&c, x, w, b);
    backward_of(&c, y);
    put(o, "patchify", vlm_f32(y), vlm_numel(y));
    put(o, "patchify dx", x->grad, vlm_numel(x));
    vlm_ctx_free(&c);
    // AdamW: three steps on fixed gradients over tensors of awkward sizes
    vlm_params ps;
    vlm_params_init(&ps);
    int64_t n1[1] = {1000}, n2[2] = {37, 3}, n3[1] = {20001};
    vlm_params_add(&ps, "a", 1, n1, &err);
    vlm_params_add(&ps, "b", 2, n2, &err);
    vlm_params_add(&ps, "c", 1, n3, &err);
    vlm_params_alloc(&ps, &err);
    ps.p[1].no_decay = 1;
    vlm_rng r;
    vlm_rng_init(&r, 12, 0, 0);
    for (int64_t i = 0; i < ps.total; i++) ps.data[i] = vlm_rng_normal(&r);
    vlm_adamw opt;
    vlm_adamw_init(&opt, &ps, (vlm_adamw_cfg){1e-2f, 0.9f, 0.98f, 1e-6f, 0.1f}, &err);
    for (int step = 0; step < 3; step++) {
        for (int64_t i = 0; i < ps.total; i++) ps.grad[i] = vlm_rng_normal(&r) * 1e-3f;
        vlm_adamw_step(&opt, &ps, 1e-2f);
    }
    put(o, "adamw", ps.data, ps.total);
    vlm_params_free(&ps);
}

// The fused transformer (attention, LayerNorms, bias sums) forward and
// backward, causal with padding and bidirectional, at precision prec.
static void run_transformer(outs *o, int prec) {
    for (int causal = 0; causal < 2; causal++) {
        vlm_error err = {0};
        vlm_params ps;
        vlm_params_init(&ps);
        vlm_transformer tr;
        vlm_transformer_cfg cfg = {.width = 64, .heads = 2, .layers = 2, .act = VLM_ACT_GELU, .causal = causal};
        vlm_transformer_init(&tr, &ps, "t.", cfg, &err);
        vlm_params_alloc(&ps, &err);
        vlm_rng rng;
        vlm_rng_init(&rng, 3, VLM_RNG_INIT, 0);
        vlm_transformer_init_weights(&tr, &ps, &rng);
        vlm_ctx c;
        vlm_ctx_init(&c, 16u << 20, 1, &err);
        c.precision = prec;
        int64_t sx[3] = {3, 37, 64};
        uint8_t pad[3 * 37] = {0};
        for (int i = 30; i < 37; i++) pad[37 + i] = 1; // sequence 1 ends at 30
        vlm_tensor *x = input(&c, 3, sx, 11, 1.0f), *y = vlm_transformer_forward(&c, &tr, &ps, x, causal ? pad : NULL);
        CHECK(y != NULL, "transformer: %s", c.err.msg);
        if (y) {
            backward_of(&c, y);
            put(o, "transformer", vlm_f32(y), vlm_numel(y));
            put(o, "transformer dx", x->grad, vlm_numel(x));
            put(o, "transformer dparams", ps.grad, ps.total);
        }
        vlm_ctx_free(&c);
        vlm_transformer_free(&tr);
        vlm_params_free(&ps);
    }
}

// max |a - b| / (max |b| + 1e-6) per segment, and that a differs from b somewhere
static double seg_err(const outs *a, const outs *b, int s) {
    double d = 0, m = 0;
    for (int64_t i = a->start[s]; i < a->start[s + 1]; i++) {
        d = fmax(d, fabs((double)a->v[i] - b->v[i]));
        m = fmax(m, fabs((double)b->v[i]));
    }
    return d / (m + 1e-6);
}

static void test_dispatch(void) {
    static outs ref, got;
    vlm_error err = {0};
    vlm_isa hw = vlm_cpu_detect();
    for (int isa = VLM_ISA_PORTABLE; isa <= (int)hw; isa++) {
        CHECK(vlm_cpu_set_isa((vlm_isa)isa, &err) == VLM_OK, "%s", err.msg);
        outs *o = isa == VLM_ISA_PORTABLE ? &ref : &got;
        memset(o, 0, sizeof *o);
        run_dispatched(o);
        run_transformer(o, VLM_PREC_FP32);
        CHECK(o->nseg > 20 && o->n > 1000, "outputs collected: %d segments, %lld floats", o->nseg, (long long)o->n);
        if (o == &ref) continue;
        CHECK(got.nseg == ref.nseg && got.n == ref.n, "%s: same outputs", vlm_isa_name((vlm_isa)isa));
        double worst = 0;
        for (int s = 0; s < ref.nseg && s < got.nseg; s++) {
            double e = seg_err(&got, &ref, s);
            // the vector kernels differ from the portable ones only in summation order and
            // in exp/erf polynomials (core/fastmath.h): a few float ulps, amplified by the
            // backward through softmax and LayerNorm
            CHECK(e < 2e-5, "%s: %s differs from portable by %.3g", vlm_isa_name((vlm_isa)isa), ref.name[s], e);
            if (!strcmp(ref.name[s], "adamw")) // same formula per element, only the vector width differs
                CHECK(e == 0, "%s: adamw not bit-identical to portable: %.3g", vlm_isa_name((vlm_isa)isa), e);
            worst = fmax(worst, e);
        }
        printf("%-12s vs portable: %d outputs, worst relative difference %.2e\n", vlm_isa_name((vlm_isa)isa),
               got.nseg, worst);
    }
    vlm_cpu_set_isa(hw, &err);
}

// The GEMM ops in fp32 and amp_bf16 (at the best ISA, then at the emulated one).
static void run_gemm_ops(outs *o, int prec) {
    vlm_ctx c;
    vlm_error err = {0};
    vlm_ctx_init(&c, 64u << 20, 1, &err);
    c.precision = prec;
    int64_t sx[2] = {300, 96}, sw[2] = {80, 96}, sb[1] = {80};
    vlm_tensor *x = input(&c, 2, sx, 21, 1.0f), *w = input(&c, 2, sw, 22, 0.1f), *b = input(&c, 1, sb, 23, 0.1f);
    vlm_tensor *y = vlm_op_linear(&c, x, w, b);
    backward_of(&c, y);
    put(o, "linear", vlm_f32(y), vlm_numel(y));
    put(o, "linear dx", x->grad, vlm_numel(x));
    put(o, "linear dw", w->grad, vlm_numel(w));
    vlm_ctx_reset(&c);
    int64_t sa[2] = {200, 70}, sm[2] = {70, 90};
    vlm_tensor *a = input(&c, 2, sa, 24, 1.0f), *m = input(&c, 2, sm, 25, 1.0f);
    y = vlm_op_matmul(&c, a, m);
    backward_of(&c, y);
    put(o, "matmul", vlm_f32(y), vlm_numel(y));
    put(o, "matmul da", a->grad, vlm_numel(a));
    put(o, "matmul db", m->grad, vlm_numel(m));
    vlm_ctx_reset(&c);
    int64_t si[4] = {4, 3, 32, 32}, spw[4] = {48, 3, 4, 4}, spb[1] = {48};
    x = input(&c, 4, si, 26, 1.0f);
    w = input(&c, 4, spw, 27, 0.2f);
    b = input(&c, 1, spb, 28, 0.2f);
    y = vlm_op_patchify(&c, x, w, b);
    backward_of(&c, y);
    put(o, "patchify", vlm_f32(y), vlm_numel(y));
    put(o, "patchify dw", w->grad, vlm_numel(w));
    vlm_ctx_reset(&c);
    int64_t scw[4] = {16, 3, 3, 3}, scb[1] = {16};
    x = input(&c, 4, si, 29, 1.0f);
    w = input(&c, 4, scw, 30, 0.2f);
    b = input(&c, 1, scb, 31, 0.2f);
    y = vlm_op_conv2d(&c, x, w, b, 1, 1);
    backward_of(&c, y);
    put(o, "conv2d", vlm_f32(y), vlm_numel(y));
    put(o, "conv2d dx", x->grad, vlm_numel(x));
    put(o, "conv2d dw", w->grad, vlm_numel(w));
    CHECK(vlm_ctx_ok(&c), "gemm ops: %s", c.err.msg);
    vlm_ctx_free(&c);
    run_transformer(o, prec);
}

static void test_amp_ops(vlm_isa isa) {
    static outs f32, bf;
    vlm_error err = {0};
    vlm_cpu_set_isa(isa, &err);
    memset(&f32, 0, sizeof f32);
    memset(&bf, 0, sizeof bf);
    run_gemm_ops(&f32, VLM_PREC_FP32);
    run_gemm_ops(&bf, VLM_PREC_AMP_BF16);
    CHECK(f32.nseg == bf.nseg && f32.n == bf.n, "same outputs");
    double worst = 0;
    for (int s = 0; s < f32.nseg && s < bf.nseg; s++) {
        double e = seg_err(&bf, &f32, s);
        // bf16 inputs carry 8 significant bits (relative rounding 2^-9 = 2e-3);
        // errors of independent products mostly cancel in the sums
        CHECK(e < 2e-2, "%s amp_bf16: %s off its fp32 result by %.3g", vlm_isa_name(isa), f32.name[s], e);
        CHECK(e > 1e-5, "%s amp_bf16: %s equals fp32 (%.3g): no bf16 GEMM ran", vlm_isa_name(isa), f32.name[s], e);
        worst = fmax(worst, e);
    }
    printf("amp_bf16 at %-12s vs fp32: %d outputs, worst relative difference %.2e\n", vlm_isa_name(isa), bf.nseg,
           worst);
}

int main(void) {
    vlm_isa hw = vlm_cpu_detect();
    printf("cpu: up to %s (active %s)\n", vlm_isa_name(hw), vlm_isa_name(vlm_cpu_isa()));
    CHECK(vlm_isa_parse("avx512_bf16") == VLM_ISA_AVX512_BF16 && vlm_isa_parse("sse9") == -1, "names");
    test_dispatch();
    test_amp_ops(hw);
    if (hw >= VLM_ISA_AVX512_BF16) test_amp_ops(VLM_ISA_AVX512); // the emulated bf16 GEMM
    return tu_done("test_isa");
}
