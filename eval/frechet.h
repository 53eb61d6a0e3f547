// Fréchet distance (FID-style) between two feature sets, for generation quality.
#ifndef VLM_EVAL_FRECHET_H
#define VLM_EVAL_FRECHET_H

#include <stdint.h>
#include "core/error.h"

// Fréchet distance between Gaussians fitted to two sets of row vectors
// a: [na, d], b: [nb, d]: |mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa Sb)^1/2),
// in double, with tr((Sa Sb)^1/2) = sum sqrt(eig(Sa^1/2 Sb Sa^1/2)) from a
// Jacobi eigensolver. na, nb >= 2.
vlm_status vlm_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int d, double *fd, vlm_error *err);

#endif
