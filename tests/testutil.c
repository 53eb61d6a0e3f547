// Shared helpers for the CTest executables (see testutil.h).
#include "tests/testutil.h"
#include <math.h>

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

const char *tu_src(const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", VLM_SOURCE_DIR, rel);
    return buf[k];
}
