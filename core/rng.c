// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
#include "core/rng.h"
#include <math.h>

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void vlm_philox(const uint32_t key[2], uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = key[0], k1 = key[1];
    for (int i = 0; i < 10; i++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void vlm_rng_init(vlm_rng *r, uint64_t seed, uint32_t stream, uint64_t sub) {
    uint64_t k = splitmix64(splitmix64(seed) ^ splitmix64(((uint64_t)stream << 32) | 0x5eedu) ^
                            splitmix64(sub + 0x1234567ull));
    r->key[0] = (uint32_t)k;
    r->key[1] = (uint32_t)(k >> 32);
    r->counter = 0;
    r->buf_pos = 4;
}

uint32_t vlm_rng_u32(vlm_rng *r) {
    if (r->buf_pos >= 4) {
        vlm_philox(r->key, r->counter++, r->buf);
        r->buf_pos = 0;
    }
    return r->buf[r->buf_pos++];
}

uint64_t vlm_rng_u64(vlm_rng *r) {
    uint64_t hi = vlm_rng_u32(r);
    return (hi << 32) | vlm_rng_u32(r);
}

float vlm_rng_uniform(vlm_rng *r) { return (float)(vlm_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double vlm_rng_uniform_d(vlm_rng *r) { return (double)(vlm_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float vlm_rng_normal(vlm_rng *r) {
    double u1 = vlm_rng_uniform_d(r), u2 = vlm_rng_uniform_d(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t vlm_rng_below(vlm_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = vlm_rng_u64(r); while (x >= limit);
    return x % n;
}

void vlm_rng_shuffle_u32(vlm_rng *r, uint32_t *a, uint64_t n) {
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = vlm_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
