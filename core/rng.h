// Counter-based RNG (Philox4x32-10): independent, reproducible streams derived
// from one run seed. No global state; a stream is a value you pass around.
#ifndef VLM_CORE_RNG_H
#define VLM_CORE_RNG_H

#include <stdint.h>

// Well-known stream ids; any other uint32 is allowed too.
enum {
    VLM_RNG_INIT = 1,    // parameter initialisation
    VLM_RNG_DROPOUT = 2, // dropout / patch dropout masks
    VLM_RNG_DATA = 3,    // data order (shuffle)
    VLM_RNG_AUGMENT = 4, // augmentation draws
    VLM_RNG_SAMPLE = 5,  // generation / sampling noise
    VLM_RNG_CAPTION = 6, // which of a sample's captions an epoch uses
    VLM_RNG_BACKGROUND = 7, // the loader's random background colour per (epoch, sample)
};

typedef struct {
    uint32_t key[2];     // from (seed, stream)
    uint64_t counter;    // block counter; each block yields 4 uint32
    uint32_t buf[4];
    int buf_pos;         // next unread word in buf (4 = empty)
} vlm_rng;

// Stream `stream` of run seed `seed`; `sub` separates e.g. epochs or samples
// within a stream (the same (seed, stream, sub) always gives the same numbers).
void vlm_rng_init(vlm_rng *r, uint64_t seed, uint32_t stream, uint64_t sub);
uint32_t vlm_rng_u32(vlm_rng *r);
uint64_t vlm_rng_u64(vlm_rng *r);
float vlm_rng_uniform(vlm_rng *r);            // [0, 1), 24-bit resolution
double vlm_rng_uniform_d(vlm_rng *r);         // [0, 1), 53-bit resolution
float vlm_rng_normal(vlm_rng *r);             // N(0, 1), Box-Muller
uint64_t vlm_rng_below(vlm_rng *r, uint64_t n); // uniform in [0, n), unbiased
void vlm_rng_shuffle_u32(vlm_rng *r, uint32_t *a, uint64_t n); // Fisher-Yates
// Stateless block: 4 words for (key, counter); used by parallel kernels that
// need random numbers at an index without sharing a stream.
void vlm_philox(const uint32_t key[2], uint64_t counter, uint32_t out[4]);

#endif
