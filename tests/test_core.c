// Core mechanics: RNG streams, arena growth/folding, views sharing data and
// gradients, no-grad mode, frozen parameters, gradient accumulation, and
// error messages that name the op and the shapes.
#include <math.h>
#include <string.h>
#include "core/ops.h"
#include "tests/testutil.h"

static void test_rng(void) {
    vlm_rng a, b, c;
    vlm_rng_init(&a, 42, VLM_RNG_DATA, 0);
    vlm_rng_init(&b, 42, VLM_RNG_DATA, 0);
    vlm_rng_init(&c, 42, VLM_RNG_AUGMENT, 0);
    int same = 1, diff = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t x = vlm_rng_u32(&a), y = vlm_rng_u32(&b), z = vlm_rng_u32(&c);
        same &= x == y;
        diff += x != z;
    }
    CHECK(same, "same (seed, stream) must give the same numbers");
    CHECK(diff > 95, "different streams must differ");
    vlm_rng_init(&a, 7, 1, 0);
    double m = 0, m2 = 0, um = 0;
    int in_range = 1;
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        double n = vlm_rng_normal(&a);
        m += n;
        m2 += n * n;
        float u = vlm_rng_uniform(&a);
        in_range &= u >= 0 && u < 1;
        um += u;
    }
    m /= N;
    CHECK(in_range, "uniform out of [0, 1)");
    CHECK(fabs(m) < 0.01 && fabs(m2 / N - 1) < 0.02 && fabs(um / N - 0.5) < 0.01, "moments off: mean %g var %g", m, m2 / N);
    uint32_t perm[100], seen[100] = {0};
    for (int i = 0; i < 100; i++) perm[i] = (uint32_t)i;
    vlm_rng_shuffle_u32(&a, perm, 100);
    int ok = 1;
    for (int i = 0; i < 100; i++) ok &= !seen[perm[i]]++;
    CHECK(ok, "shuffle is not a permutation");
    // Known-answer test for Philox4x32-10 (Random123's kat_vectors: zero key and counter).
    uint32_t key[2] = {0, 0}, out[4];
    vlm_philox(key, 0, out);
    CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u,
          "philox KAT mismatch: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
}

static void test_arena(void) {
    vlm_arena a;
    vlm_error err;
    CHECK(vlm_arena_init(&a, 4096, &err) == VLM_OK, "arena init");
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 10; i++) {
            char *p = vlm_arena_alloc(&a, 3000);
            CHECK(p && ((uintptr_t)p % 64) == 0, "allocation not 64-byte aligned");
            memset(p, i, 3000);
        }
        CHECK(step == 0 || a.extra == NULL, "step %d still needs overflow blocks after folding", step);
        vlm_arena_reset(&a);
    }
    CHECK(a.head->cap >= 30000, "arena did not fold to the high-water mark (%zu)", a.head->cap);
    vlm_arena_free(&a);
}

static void test_views_and_grad(void) {
    vlm_ctx c;
    vlm_error err;
    vlm_ctx_init(&c, 1 << 16, 1, &err);
    float data[6] = {0, 1, 2, 3, 4, 5}, grad[6] = {0};
    int64_t sh[2] = {2, 3};
    vlm_tensor *x = vlm_tensor_wrap(&c, VLM_F32, 2, sh, data, grad);
    vlm_tensor *t = vlm_view_transpose(&c, x, 0, 1);
    CHECK(t->shape[0] == 3 && t->data == x->data && !vlm_is_contiguous(t), "transpose must be a view");
    vlm_tensor *tc = vlm_op_contiguous(&c, t);
    const float want[6] = {0, 3, 1, 4, 2, 5};
    CHECK(!memcmp(tc->data, want, sizeof want), "transposed copy wrong");
    vlm_tensor *s = vlm_view_slice(&c, x, 1, 1, 2);
    CHECK(vlm_f32(s) == data + 1 && s->grad == grad + 1, "slice must share data and grad");
    // Gradient through a slice view lands in the base buffer; two backward passes accumulate.
    for (int rep = 0; rep < 2; rep++) {
        vlm_tensor *l = vlm_op_sum(&c, vlm_op_scale(&c, vlm_view_slice(&c, x, 1, 1, 2), 2.0f));
        CHECK(vlm_backward(&c, l) == VLM_OK, "backward: %s", c.err.msg);
    }
    const float gwant[6] = {0, 4, 4, 0, 4, 4};
    CHECK(!memcmp(grad, gwant, sizeof gwant), "accumulated slice gradient wrong");
    // No-grad mode records nothing.
    vlm_ctx_reset(&c);
    c.grad_enabled = 0;
    x = vlm_tensor_wrap(&c, VLM_F32, 2, sh, data, grad);
    vlm_tensor *y = vlm_op_act(&c, x, VLM_ACT_GELU);
    CHECK(y && !y->requires_grad && c.n_nodes == 0 && y->grad == NULL, "no-grad mode recorded a node");
    CHECK(vlm_backward(&c, vlm_op_sum(&c, y)) == VLM_ERR_STATE, "backward in no-grad mode must fail clearly");
    c.grad_enabled = 1;
    // Shape errors name the op and shapes, and the context stays failed (sticky).
    vlm_ctx_reset(&c);
    int64_t sa[2] = {2, 3}, sb[2] = {4, 5};
    vlm_tensor *a = vlm_tensor_wrap(&c, VLM_F32, 2, sa, data, NULL), *b = vlm_tensor_wrap(&c, VLM_F32, 2, sb, data, NULL);
    CHECK(vlm_op_matmul(&c, a, b) == NULL && c.status == VLM_ERR_SHAPE, "matmul shape error not raised");
    CHECK(strstr(c.err.msg, "matmul") && strstr(c.err.msg, "[2, 3]") && strstr(c.err.msg, "[4, 5]"),
          "error must name op and shapes: %s", c.err.msg);
    CHECK(vlm_op_add(&c, a, a) == NULL, "ops after a failure must return NULL");
    vlm_ctx_reset(&c);
    int32_t bad_ids[2] = {0, 99};
    int64_t si[1] = {2}, sw[2] = {2, 3};
    vlm_op_embedding(&c, vlm_tensor_wrap(&c, VLM_F32, 2, sw, data, NULL), vlm_tensor_wrap(&c, VLM_I32, 1, si, bad_ids, NULL));
    CHECK(c.status == VLM_ERR_ARG && strstr(c.err.msg, "99"), "bad token id not reported: %s", c.err.msg);
    vlm_ctx_reset(&c);
    int32_t bad_t[2] = {0, 7};
    vlm_op_cross_entropy(&c, vlm_tensor_wrap(&c, VLM_F32, 2, sa, data, NULL), bad_t, 0);
    CHECK(c.status == VLM_ERR_ARG && strstr(c.err.msg, "target 7"), "bad target not reported: %s", c.err.msg);
    vlm_ctx_free(&c);
}

static void test_params(void) {
    vlm_params ps;
    vlm_params_init(&ps);
    vlm_error err;
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    int a = vlm_params_add(&ps, "visual.proj", 2, s1, &err), b = vlm_params_add(&ps, "visual.ln_post.bias", 1, s2, &err);
    CHECK(vlm_params_add(&ps, "visual.proj", 2, s1, &err) < 0 && strstr(err.msg, "duplicate"), "duplicate accepted");
    CHECK(vlm_params_alloc(&ps, &err) == VLM_OK, "alloc");
    vlm_tensor *ta = vlm_params_get(&ps, a), *tb = vlm_params_get(&ps, b);
    CHECK(vlm_f32(ta) == ps.data && vlm_f32(tb) >= ps.data + 15 && vlm_f32(tb) + 7 <= ps.data + ps.total,
          "parameters must live in one buffer");
    CHECK(((uintptr_t)vlm_f32(tb) % 64) == 0, "parameters must be 64-byte aligned");
    CHECK(!ps.p[a].no_decay && ps.p[b].no_decay, "decay groups");
    vlm_params_set_frozen(&ps, a, 1);
    vlm_ctx c;
    vlm_ctx_init(&c, 1 << 16, 1, &err);
    vlm_tensor *l = vlm_op_sum(&c, vlm_op_mul(&c, ta, ta));
    CHECK(l && !l->requires_grad && c.n_nodes == 0, "frozen parameter must not record gradients");
    vlm_ctx_free(&c);
    vlm_params_free(&ps);
}

int main(void) {
    test_rng();
    test_arena();
    test_views_and_grad();
    test_params();
    return tu_done("test_core");
}
