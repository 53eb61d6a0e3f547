// Shared helpers for the CTest executables (see testutil.h).
#include "tests/testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "data/image.h"

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

int tu_read_losses(const char *metrics_path, double *loss, int cap) {
    char line[4096];
    FILE *f = fopen(metrics_path, "r");
    int maxs = 0;
    while (f && fgets(line, sizeof line, f)) {
        int s;
        double l;
        char *ps = strstr(line, "\"step\": "), *pl = strstr(line, "\"loss\": ");
        if (ps && pl && sscanf(ps + 8, "%d", &s) == 1 && sscanf(pl + 8, "%lf", &l) == 1 && s >= 0 && s < cap) {
            loss[s] = l;
            if (s > maxs) maxs = s;
        }
    }
    if (f) fclose(f);
    return maxs;
}

void tu_make_squares(const char *dir, int n, int detailed) {
    mkdir(dir, 0755);
    static const char *names[8] = {"red", "green", "blue", "yellow", "purple", "cyan", "white", "black"};
    static const unsigned char col[8][3] = {{220, 20, 20}, {20, 200, 20}, {20, 20, 220}, {230, 230, 20},
                                            {150, 20, 150}, {20, 200, 200}, {250, 250, 250}, {5, 5, 5}};
    char p[1024];
    snprintf(p, sizeof p, "%s/train.tsv", dir);
    FILE *f = fopen(p, "w");
    if (!f) return;
    fprintf(f, detailed ? "filepath\ttitle\tlabel\n" : "filepath\ttitle\n");
    unsigned char px[20 * 20 * 3];
    vlm_error err;
    for (int i = 0; i < n; i++) {
        int k = i % 8, s = 4 + (i / 8) % 10;
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 20; x++)
                for (int ch = 0; ch < 3; ch++)
                    px[(y * 20 + x) * 3 + ch] = (x >= s && y >= s && x < s + 8 && y < s + 8) ? col[k][ch] : 128;
        snprintf(p, sizeof p, "%s/%03d.png", dir, i);
        vlm_image_write_png(p, px, 20, 20, &err);
        if (detailed) fprintf(f, "%03d.png\ta %s square at %d\t%d\n", i, names[k], s, k);
        else fprintf(f, "%03d.png\ta %s square\n", i, names[k]);
    }
    fclose(f);
    if (detailed) {
        snprintf(p, sizeof p, "%s/classnames.txt", dir);
        if ((f = fopen(p, "w"))) {
            for (int k = 0; k < 8; k++) fprintf(f, "%s\n", names[k]);
            fclose(f);
        }
    }
}
