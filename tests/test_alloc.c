// Zero mallocs in a steady-state training step: a 2-layer transformer with
// embedding, attention, MLP, loss, backward and AdamW runs several steps; from
// the third step on, no malloc/calloc/realloc may happen anywhere in the process
// (our code, OpenBLAS and libgomp included; counted by interposing the allocator),
// in fp32 and in amp_bf16.
#include <stdlib.h>
#include <string.h>
#include "core/bf16.h"
#include "core/optim.h"
#include "core/transformer.h"
#include "tests/testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
int main(void) {
    printf("test_alloc: skipped under sanitizers (they own the allocator)\n");
    return 77; // CTest's SKIP_RETURN_CODE: reported as skipped, not passed
}
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static volatile int counting;
static long n_allocs;

void *malloc(size_t n) {
    if (counting) __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (counting) __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (counting) __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n) {
    if (counting) __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_memalign(al, n);
}
int posix_memalign(void **p, size_t al, size_t n) {
    if (counting) __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}

// One run at a GEMM precision (core/bf16.h vlm_precision).
static void run(int precision) {
    vlm_error err = {0};
    n_allocs = 0;
    vlm_params ps;
    vlm_params_init(&ps);
    vlm_transformer tr;
    vlm_transformer_cfg cfg = {.width = 64, .heads = 4, .layers = 2, .act = VLM_ACT_GELU, .causal = 1};
    const int64_t V = 50, B = 8, T = 16;
    int64_t eshape[2] = {V, 64}, hshape[2] = {10, 64};
    int emb = vlm_params_add(&ps, "token_embedding.weight", 2, eshape, &err);
    int head = vlm_params_add(&ps, "head.weight", 2, hshape, &err);
    if (emb < 0 || head < 0 || vlm_transformer_init(&tr, &ps, "transformer.", cfg, &err) ||
        vlm_params_alloc(&ps, &err)) {
        CHECK(0, "setup: %s", err.msg);
        return;
    }
    vlm_rng rng;
    vlm_rng_init(&rng, 1, VLM_RNG_INIT, 0);
    vlm_transformer_init_weights(&tr, &ps, &rng);
    vlm_fill_normal(vlm_params_get(&ps, emb), &rng, 0.02f);
    vlm_fill_normal(vlm_params_get(&ps, head), &rng, 0.02f);
    vlm_adamw opt;
    vlm_adamw_cfg oc = {1e-3f, 0.9f, 0.98f, 1e-6f, 0.1f};
    vlm_ctx c;
    if (vlm_adamw_init(&opt, &ps, oc, &err) || vlm_ctx_init(&c, 1 << 16, 1, &err)) { // small arena: must grow
        CHECK(0, "setup: %s", err.msg);
        return;
    }
    c.precision = precision;
    int32_t ids[8 * 16], targets[8];
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)vlm_rng_below(&rng, (uint64_t)V);
    for (int i = 0; i < B; i++) targets[i] = i % 10;
    uint8_t pad[8 * 16] = {0};
    pad[5] = 1;
    float first_loss = 0, last_loss = 0;
    for (int step = 0; step < 6; step++) {
        counting = step >= 2;
        vlm_ctx_reset(&c);
        vlm_params_zero_grad(&ps);
        int64_t ishape[2] = {B, T};
        vlm_tensor *x = vlm_op_embedding(&c, vlm_params_get(&ps, emb), vlm_tensor_wrap(&c, VLM_I32, 2, ishape, ids, NULL));
        x = vlm_transformer_forward(&c, &tr, &ps, x, pad);
        x = vlm_op_dropout(&c, vlm_op_mean_dim(&c, x, 1), 0.1f);
        vlm_tensor *logits = vlm_op_linear(&c, x, vlm_params_get(&ps, head), NULL);
        vlm_tensor *loss = vlm_op_cross_entropy(&c, logits, targets, 0.1f);
        if (!loss || vlm_backward(&c, loss)) {
            counting = 0;
            CHECK(0, "step %d: %s", step, c.err.msg);
            return;
        }
        vlm_clip_grad_norm(&ps, 1.0f);
        vlm_adamw_step(&opt, &ps, 1e-3f);
        counting = 0;
        if (step == 0) first_loss = vlm_f32(loss)[0];
        last_loss = vlm_f32(loss)[0];
    }
    printf("%s: allocations in steady-state steps 3..6: %ld (arena high water %zu bytes)\n",
           vlm_precision_name(precision), n_allocs, c.arena.high_water);
    CHECK(n_allocs == 0, "%s: steady-state training steps made %ld allocations", vlm_precision_name(precision),
          n_allocs);
    CHECK(last_loss < first_loss, "%s: loss did not fall: %g -> %g", vlm_precision_name(precision), first_loss,
          last_loss);
    vlm_ctx_free(&c);
    vlm_transformer_free(&tr);
    vlm_params_free(&ps);
}

int main(void) {
    run(VLM_PREC_FP32);
    run(VLM_PREC_AMP_BF16); // the bf16 packing space is allocated once, in the first step
    return tu_done("test_alloc");
}
#endif
