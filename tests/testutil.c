// Shared helpers for the CTest executables (see testutil.h).
#include "tests/testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tu_failures = 0;
int tu_checks = 0;

double tu_max_abs(const float *a, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

double tu_rel_err(const float *a, const float *b, long n, double floor) {
    double d = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (isnan(e)) return INFINITY;
        d = fmax(d, e);
    }
    return d / fmax(tu_max_abs(b, n), floor);
}

int tu_done(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, tu_checks);
    return 0;
}

// "../shared/..." (the steering repository's reference data) is found beside
// the source tree; when the checkout lives elsewhere, $VLM_SHARED_DIR or
// /work/shared is used instead.
const char *tu_src(const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", VLM_SOURCE_DIR, rel);
    if (!strncmp(rel, "../shared/", 10) && access(buf[k], F_OK) != 0) {
        const char *env = getenv("VLM_SHARED_DIR");
        snprintf(buf[k], sizeof buf[k], "%s/%s", env ? env : "/work/shared", rel + 10);
    }
    return buf[k];
}

char *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)len + 1))) {
        if (fread(b, 1, (size_t)len, f) != (size_t)len) {
            free(b);
            b = NULL;
        } else {
            b[len] = 0;
            if (n) *n = (size_t)len;
        }
    }
    fclose(f);
    return b;
}
