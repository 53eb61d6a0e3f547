// `vlm serve`'s requests as jobs: the parsing of a POST body (JSON or image
// bytes) into what the model thread runs, apart from the HTTP server so it can
// be tested and fuzzed alone (tests/fuzz/fuzz_serve.c).
#ifndef VLM_CLI_SERVE_REQ_H
#define VLM_CLI_SERVE_REQ_H

#include <stddef.h>
#include <stdint.h>
#include "data/image.h"
#include "fusion/detection.h"

enum { R_PAGE, R_HEALTH, R_METRICS, R_EMBED, R_CLASSIFY, R_DETECT, R_GENERATE, R_OTHER };

typedef struct job {
    int kind;              // 0 image, 1 text, 2 classify, 3 detect, 4 generate
    uint8_t *rgb;          // [S, S, 3] eval-transformed (image, classify)
    char *text;            // text
    char **labels, **tmpl; // classify
    int n_labels, n_tmpl;
    float *out;            // [E] embedding, then (classify) probs [n_labels]
    float *probs;
    vlm_image img;         // detect: the decoded image
    double threshold;
    int max_det, n_det, steps;
    vlm_det_box *det;
    float guidance;
    uint64_t seed;
    uint8_t *png;          // generate: the encoded result
    size_t png_n;
    int done, status;      // status: HTTP code of a failure, 0 ok
    char err[256];
    struct job *next;
} job;

void job_free(job *j);
// Builds the job of a POST body to route (R_EMBED .. R_GENERATE) with
// Content-Type ctype (may be NULL) for a model of input size S and embedding
// width E; 0 or an HTTP status (the message in j->err).
int serve_parse_job(int S, int E, int route, const char *ctype, const char *body, size_t n, job *j);
// Base64 (standard or URL alphabet, padding optional, a data: prefix allowed)
// -> malloc'd bytes, *n of them; NULL if invalid.
uint8_t *serve_b64_decode(const char *s, size_t *n);

#endif
