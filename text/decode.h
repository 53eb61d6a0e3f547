// Sequence decoding for any next-token model: greedy and beam search over a
// callback that scores the next token of several prefixes at once. Used by
// `vlm caption` (CoCa) and testable with a hand-made model.
#ifndef VLM_TEXT_DECODE_H
#define VLM_TEXT_DECODE_H

#include <stdint.h>
#include "core/error.h"

// Log-probabilities of the next token for n prefixes: prefixes [n, len]
// (row-major, every prefix the same length) -> logp [n, V]. Nonzero on error
// (with *err set).
typedef int (*vlm_next_logp_fn)(void *user, const int32_t *prefixes, int n, int len, float *logp, vlm_error *err);

typedef struct {
    int beams;          // 1 = greedy
    int max_len;        // tokens in all, the start token included
    int32_t start, end; // the start token (SOT) and the token that ends a sequence (EOT)
    float length_penalty; // finished beams ranked by sum(logp) / len^length_penalty (0 = plain sum)
    const int32_t *banned; int n_banned; // never generated (e.g. SOT, [MASK])
} vlm_seqdec_opts;

void vlm_seqdec_opts_default(vlm_seqdec_opts *o, int32_t start, int32_t end, int max_len);

// Best sequence into out [max_len] (start first, end last unless max_len
// was reached), *len its length, *score its ranking score.
vlm_status vlm_seq_decode(vlm_next_logp_fn fn, void *user, int V, const vlm_seqdec_opts *o, int32_t *out, int *len,
                      float *score, vlm_error *err);

#endif
