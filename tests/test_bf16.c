// bf16 mixed precision: conversions, the bf16 GEMM (every layout, edge
// sizes, each kernel variant this CPU has) against a double-precision
// reference on the same bf16-rounded inputs, and its fp32 distance.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/bf16.h"
#include "core/cpu.h"
#include "core/rng.h"
#include "tests/testutil.h"

static void test_convert(void) {
    CHECK(vlm_bf16_to_f32(vlm_f32_to_bf16(1.0f)) == 1.0f, "1");
    CHECK(vlm_f32_to_bf16(1.0f + 1.0f / 256) == 0x3F80, "ties to even, down"); // 1 + 2^-8: halfway, even is 1
    CHECK(vlm_f32_to_bf16(1.0f + 3.0f / 256) == 0x3F82, "ties to even, up");
    CHECK(vlm_f32_to_bf16(INFINITY) == 0x7F80 && vlm_f32_to_bf16(-INFINITY) == 0xFF80, "inf");
    CHECK(isnan(vlm_bf16_to_f32(vlm_f32_to_bf16(NAN))), "nan stays nan");
    CHECK(vlm_f32_to_bf16(3.4e38f) == 0x7F80, "overflow rounds to inf (RNE)");
    float x[3] = {3.14159265f, -2.7182818f, 1e-3f};
    vlm_bf16_round(x, 3);
    CHECK(x[0] == 3.140625f && x[1] == -2.71875f, "round in place %g %g", x[0], x[1]);
    CHECK(fabsf(x[2] - 1e-3f) < 1e-3f * 0x1p-8, "relative error <= 2^-9");
}

// C = alpha * A B + beta * C0 with A [M, K], B [K, N] in one of the four
// layouts (ta, tb: stored transposed), C row- or column-major (tc).
static double gemm_case(int64_t M, int64_t N, int64_t K, int ta, int tb, int tc, float beta, void *scratch,
                        vlm_rng *rng, double *fp32_dist) {
    float *a = malloc(sizeof(float) * (size_t)(M * K)), *b = malloc(sizeof(float) * (size_t)(K * N));
    float *c = malloc(sizeof(float) * (size_t)(M * N)), *c0 = malloc(sizeof(float) * (size_t)(M * N));
    double *ref = malloc(sizeof(double) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) a[i] = vlm_rng_normal(rng);
    for (int64_t i = 0; i < K * N; i++) b[i] = vlm_rng_normal(rng);
    for (int64_t i = 0; i < M * N; i++) c0[i] = c[i] = vlm_rng_normal(rng);
    vlm_mat A = ta ? (vlm_mat){a, M, K, 1, M} : (vlm_mat){a, M, K, K, 1};
    vlm_mat B = tb ? (vlm_mat){b, K, N, 1, K} : (vlm_mat){b, K, N, N, 1};
    vlm_mat C = tc ? (vlm_mat){c, M, N, 1, M} : (vlm_mat){c, M, N, N, 1};
    float alpha = 0.5f;
    double worst = 0, f32 = 0, scale = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, s32 = 0;
            for (int64_t k = 0; k < K; k++) {
                float x = A.p[i * A.rs + k * A.cs], y = B.p[k * B.rs + j * B.cs];
                s += (double)vlm_bf16_to_f32(vlm_f32_to_bf16(x)) * vlm_bf16_to_f32(vlm_f32_to_bf16(y));
                s32 += (double)x * y;
            }
            float cij = c0[i * C.rs + j * C.cs];
            ref[i * N + j] = alpha * s + (beta != 0 ? cij : 0);
            f32 = fmax(f32, fabs(alpha * (s - s32)));
            scale = fmax(scale, fabs(alpha * s32) + 1);
        }
    vlm_gemm_bf16(C, A, B, alpha, beta, scratch);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            worst = fmax(worst, fabs(c[i * C.rs + j * C.cs] - ref[i * N + j]) / (sqrt((double)K) + 1));
    *fp32_dist = f32 / scale;
    free(a), free(b), free(c), free(c0), free(ref);
    return worst;
}

static void test_gemm(vlm_isa isa) {
    vlm_error err = {0};
    CHECK(vlm_cpu_set_isa(isa, &err) == VLM_OK, "%s", err.msg);
    void *scratch = aligned_alloc(64, (vlm_gemm_bf16_scratch_bytes() + 63) / 64 * 64);
    vlm_rng rng;
    vlm_rng_init(&rng, 7, 0, 0);
    // edges: M not a multiple of 12, N not of 32 or 16, odd K, K over one block (384), N over 1024
    static const int64_t sizes[][3] = {{1, 1, 1},   {5, 7, 3},    {12, 32, 2},  {13, 33, 17},
                                       {37, 70, 385}, {100, 1030, 40}, {97, 48, 769}, {64, 16, 64}};
    double worst = 0, f32 = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int lay = 0; lay < 16; lay++) {
            double d;
            double e = gemm_case(sizes[s][0], sizes[s][1], sizes[s][2], lay & 1, (lay >> 1) & 1, (lay >> 2) & 1,
                                 (lay >> 3) ? 1.0f : 0.0f, scratch, &rng, &d);
            CHECK(e < 2e-6, "%s: %lldx%lldx%lld layout %d: error %.3g over the bf16 reference", vlm_isa_name(isa),
                  (long long)sizes[s][0], (long long)sizes[s][1], (long long)sizes[s][2], lay, e);
            worst = fmax(worst, e);
            f32 = fmax(f32, d);
        }
    // bf16 inputs carry 8 significant bits: against fp32 products the result
    // moves by ~2^-9 sqrt(K) relative, and must move (not an fp32 GEMM in disguise)
    CHECK(f32 > 1e-4 && f32 < 0.05, "%s: distance to the fp32 product %.3g", vlm_isa_name(isa), f32);
    printf("bf16 gemm %-12s worst error %.2e (per sqrt(K)), distance to fp32 %.2e\n", vlm_isa_name(isa), worst, f32);
    free(scratch);
}

int main(void) {
    test_convert();
    vlm_isa hw = vlm_cpu_detect();
    printf("cpu: up to %s\n", vlm_isa_name(hw));
    for (int isa = VLM_ISA_PORTABLE; isa <= (int)hw; isa++) test_gemm((vlm_isa)isa);
    vlm_error err = {0};
    if (hw < VLM_ISA_AVX512_BF16)
        CHECK(vlm_cpu_set_isa(VLM_ISA_AVX512_BF16, &err) == VLM_ERR_ARG && strstr(err.msg, "not available"),
              "forcing a missing level is refused: %s", err.msg);
    return tu_done("test_bf16");
}
