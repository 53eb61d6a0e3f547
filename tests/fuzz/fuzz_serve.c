// libFuzzer: `vlm serve`'s request bodies (cli/serve_req.c): the first byte
// picks the route (/v1/embed, /v1/classify, /v1/detect, /v1/generate) and the
// Content-Type (JSON or image/png); the rest is the body: JSON parsing,
// label/template/query arrays, base64 and data: URLs, image decoding and the
// eval transform, parameter ranges.
#include "cli/serve_req.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    static const int routes[4] = {R_EMBED, R_CLASSIFY, R_DETECT, R_GENERATE};
    static const char *types[3] = {"application/json", "image/png", "text/plain"};
    job *j = calloc(1, sizeof *j);
    if (!j) abort();
    serve_parse_job(16, 8, routes[d[0] & 3], types[(d[0] >> 2) % 3], (const char *)d + 1, n - 1, j);
    job_free(j);
    return 0;
}
