// Eval-transform parity with torchvision on PIL: Resize(S, BICUBIC),
// CenterCrop(S), ToTensor, Normalize(CLIP) over the sources in
// tests/fixtures/data/transform (made by tests/reference/make_transform_fixtures.py).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "data/image.h"
#include "data/transform.h"
#include "tests/testutil.h"

#define DIR "tests/fixtures/data/transform/"

static uint8_t *read_gz(const char *path, size_t *n) {
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    int r;
    while ((r = gzread(f, buf + len, (unsigned)(cap - len))) > 0) {
        len += (size_t)r;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    gzclose(f);
    *n = len;
    return buf;
}

// Undoes the fixture's 2-D delta coding in place: [S, S, 3].
static void undelta(uint8_t *a, int S) {
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                int v = a[((size_t)y * S + x) * 3 + c];
                if (x) v += a[((size_t)y * S + x - 1) * 3 + c];
                if (y) v += a[((size_t)(y - 1) * S + x) * 3 + c];
                if (x && y) v -= a[((size_t)(y - 1) * S + x - 1) * 3 + c];
                a[((size_t)y * S + x) * 3 + c] = (uint8_t)v;
            }
}

int main(void) {
    size_t blob_n = 0;
    uint8_t *blob = read_gz(tu_src(DIR "expected.u8.gz"), &blob_n);
    CHECK(blob != NULL, "cannot read expected.u8.gz");
    FILE *f = fopen(tu_src(DIR "cases.tsv"), "r");
    CHECK(f != NULL, "cannot open cases.tsv");
    if (!blob || !f) return tu_done("test_transform_parity");

    vlm_image img;
    vlm_image_init(&img);
    vlm_transform_scratch s;
    vlm_transform_scratch_init(&s);
    vlm_error err = {0};
    char line[512], name[256];
    int S, ncases = 0, exact = 0;
    long off;
    double worst_max = 0, worst_mean = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%255s %d %ld", name, &S, &off) != 3) continue;
        char path[600];
        snprintf(path, sizeof path, DIR "src/%s", name);
        vlm_status st = vlm_image_load(&img, tu_src(path), NULL, &err);
        CHECK(st == VLM_OK, "%s: %s", name, err.msg);
        if (st) continue;
        CHECK((size_t)off + (size_t)S * S * 3 <= blob_n, "%s: offset past the blob", name);
        if ((size_t)off + (size_t)S * S * 3 > blob_n) continue;
        uint8_t *want8 = blob + off;
        undelta(want8, S);

        vlm_transform t;
        vlm_transform_init(&t, S);
        float *got = malloc(sizeof(float) * 3 * S * S);
        uint8_t *got8 = malloc((size_t)S * S * 3);
        st = vlm_transform_eval(&t, &img, got, &s, &err);
        CHECK(st == VLM_OK, "%s S=%d: %s", name, S, err.msg);
        st = vlm_transform_eval_u8(&t, &img, got8, &s, &err);
        CHECK(st == VLM_OK, "%s S=%d: %s", name, S, err.msg);
        double maxd = 0, sumd = 0;
        int maxd8 = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < S * S; i++) {
                float ref = ((float)want8[(size_t)i * 3 + c] / 255.0f - t.mean[c]) / t.std[c];
                double d = fabs((double)got[(size_t)c * S * S + i] - ref);
                maxd = fmax(maxd, d);
                sumd += d;
                int d8 = abs((int)got8[(size_t)i * 3 + c] - (int)want8[(size_t)i * 3 + c]);
                if (d8 > maxd8) maxd8 = d8;
            }
        double mean = sumd / (3.0 * S * S);
        CHECK(maxd <= 0.02, "%s S=%d: max abs diff %.5f > 0.02", name, S, maxd);
        CHECK(mean <= 0.002, "%s S=%d: mean abs diff %.6f > 0.002", name, S, mean);
        printf("  %-30s S=%-3d max|d| %.2e  mean|d| %.2e  max u8 diff %d\n", name, S, maxd, mean, maxd8);
        worst_max = fmax(worst_max, maxd);
        worst_mean = fmax(worst_mean, mean);
        exact += maxd8 == 0;
        ncases++;
        free(got);
        free(got8);
    }
    fclose(f);
    CHECK(ncases >= 30, "only %d cases ran", ncases);
    printf("%d cases, %d bit-exact; worst max|d| %.3e, worst mean|d| %.3e\n", ncases, exact, worst_max, worst_mean);
    free(blob);
    vlm_image_free(&img);
    vlm_transform_scratch_free(&s);
    return tu_done("test_transform_parity");
}
