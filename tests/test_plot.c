// Line charts (train/plot.c): 1-2-5 tick choice, compact tick numbers, and a
// rendered chart decoded back from PNG, checked for its size, both curve
// colours inside the axes and text pixels beside and below them; then the
// awkward inputs (flat, empty, NaN, log of negatives) and the errors.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "data/image.h"
#include "train/plot.h"
#include "tests/testutil.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * fmax(1, fabs(b)); }

static void test_ticks(void) {
    double t[32];
    int n = vlm_plot_nice_ticks(0, 1, 6, t, 32);
    CHECK(n == 6, "0..1: %d ticks", n);
    for (int i = 0; i < n && n == 6; i++) CHECK(near(t[i], 0.2 * i), "0..1 tick %d = %.17g", i, t[i]);
    // Clean decimals, not 0.6000000000000001: the labels depend on it.
    CHECK(n == 6 && t[3] == 0.6, "tick 3 is the double 0.6: %.17g", t[3]);

    n = vlm_plot_nice_ticks(0, 2350, 6, t, 32);
    CHECK(n == 6 && t[0] == 0 && t[n - 1] == 2500, "0..2350: %d ticks, %g..%g", n, t[0], t[n > 0 ? n - 1 : 0]);
    for (int i = 0; i < n; i++) CHECK(fmod(t[i], 500) == 0 && t[i] == 500.0 * i, "0..2350 tick %d = %g", i, t[i]);

    n = vlm_plot_nice_ticks(3, 97, 6, t, 32);
    CHECK(n == 6 && t[0] == 0 && t[1] == 20 && t[5] == 100, "3..97: %d ticks from %g step %g", n, t[0], t[1] - t[0]);
    n = vlm_plot_nice_ticks(0, 1, 5, t, 32); // 0.2 steps would need 6
    CHECK(n == 3 && t[0] == 0 && t[1] == 0.5 && t[2] == 1, "0..1 with 5: %d ticks", n);
    // Over assorted ranges and limits: within the limit, covering the range,
    // evenly spaced by 1, 2 or 5 x 10^k, and the finer 1-2-5 step would not fit.
    static const double R[][2] = {{2.13, 2.87}, {0, 2350}, {-7, 3}, {1e-6, 3e-6}, {123, 124}, {-1e9, -2e8}};
    for (size_t r = 0; r < sizeof R / sizeof R[0]; r++)
        for (int mx = 2; mx <= 12; mx++) {
            n = vlm_plot_nice_ticks(R[r][0], R[r][1], mx, t, 32);
            if (mx == 2 && R[r][0] < 0 && R[r][1] > 0) { // -s, 0, s at least: nothing fits
                CHECK(n == 0, "%g..%g with 2: %d ticks", R[r][0], R[r][1], n);
                continue;
            }
            int ok = n >= 2 && n <= mx && t[0] <= R[r][0] && t[n - 1] >= R[r][1];
            double step = n >= 2 ? t[1] - t[0] : 0, mant = ok ? step / pow(10, floor(log10(step) + 1e-9)) : 0;
            ok = ok && (fabs(mant - 1) < 1e-9 || fabs(mant - 2) < 1e-9 || fabs(mant - 5) < 1e-9);
            for (int i = 1; i < n && ok; i++) ok = fabs(t[i] - t[i - 1] - step) <= 1e-9 * step;
            double finer = fabs(mant - 1) < 1e-9 ? step / 2 : fabs(mant - 2) < 1e-9 ? step / 2 : step * 0.4;
            ok = ok && ceil(R[r][1] / finer - 1e-9) - floor(R[r][0] / finer + 1e-9) + 1 > mx;
            CHECK(ok, "%g..%g with %d: %d ticks, step %g", R[r][0], R[r][1], mx, n, step);
        }
    n = vlm_plot_nice_ticks(-0.37, 0.52, 5, t, 32);
    CHECK(n >= 2 && n <= 5 && t[0] <= -0.37 && t[n - 1] >= 0.52, "negative range: %d, %g..%g", n, t[0], t[n - 1]);
    int has0 = 0;
    for (int i = 0; i < n; i++) has0 |= t[i] == 0;
    CHECK(has0, "a range across 0 ticks 0");
    n = vlm_plot_nice_ticks(1e-4, 5e-4, 6, t, 32);
    CHECK(n >= 2 && near(t[1] - t[0], 1e-4), "small values: step %g", n >= 2 ? t[1] - t[0] : 0);

    CHECK(vlm_plot_nice_ticks(1, 0, 6, t, 32) == 6 && t[0] == 0 && t[5] == 1, "reversed bounds");
    CHECK(vlm_plot_nice_ticks(5, 5, 6, t, 32) == 1 && t[0] == 5, "lo == hi: one tick");
    CHECK(vlm_plot_nice_ticks(NAN, 1, 6, t, 32) == 0 && vlm_plot_nice_ticks(0, INFINITY, 6, t, 32) == 0, "non-finite");
    CHECK(vlm_plot_nice_ticks(0, 1, 1, t, 32) == 0, "max_ticks < 2");
    CHECK(vlm_plot_nice_ticks(1e308, 1.7e308, 6, t, 32) == 0, "ticks past DBL_MAX");
    CHECK(vlm_plot_nice_ticks(0, 1, 6, t, 3) == 3 && t[2] == 0.4, "cap limits what is written");
}

static void test_format(void) {
    static const struct {
        double v;
        const char *s;
    } cases[] = {
        {0, "0"},        {-0.0, "0"},     {500, "500"},     {1000, "1k"},        {1500, "1.5k"},
        {2500, "2.5k"},  {0.25, "0.25"},  {0.2 * 3, "0.6"}, {0.1 + 0.2, "0.3"},  {-0.5, "-0.5"},
        {2e-4, "2e-4"},  {2.5e-5, "2.5e-5"}, {0.001, "0.001"}, {1e6, "1M"},      {2.5e9, "2.5G"},
        {1e12, "1e12"},  {-3000, "-3k"},  {12, "12"},       {999999, "999.999k"}, {NAN, "nan"},
        {INFINITY, "inf"}, {3.14159265, "3.142"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vlm_plot_format_number(cases[i].v, buf, sizeof buf);
        CHECK(!strcmp(buf, cases[i].s), "format(%.17g) = \"%s\", want \"%s\"", cases[i].v, buf, cases[i].s);
    }
    memset(buf, 'x', sizeof buf);
    vlm_plot_format_number(123456.0, buf, 3);
    CHECK(buf[2] == 0 && strlen(buf) == 2, "short buffer stays terminated: \"%s\"", buf);
}

static int same(const uint8_t *p, const uint8_t *c) { return p[0] == c[0] && p[1] == c[1] && p[2] == c[2]; }

// Pixels of colour c in the inclusive box.
static long count(const vlm_image *im, int x0, int y0, int x1, int y1, const uint8_t *c) {
    long n = 0;
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < im->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < im->w; x++) n += same(im->px + ((size_t)y * im->w + x) * 3, c);
    return n;
}

static void test_render(const char *dir) {
    enum { N = 200 };
    double x[N], a[N], b[N];
    for (int i = 0; i < N; i++) {
        x[i] = i * 12.5;
        a[i] = 2 + 8 * exp(-i / 25.0);
        b[i] = 3 + 6 * exp(-i / 40.0);
    }
    a[50] = NAN; // a gap, not a crash
    vlm_plot_series s[2] = {{x, a, N, "train"}, {x, b, N, "val"}};
    vlm_plot_opts o = {.title = "loss curves", .xlabel = "step", .ylabel = "loss"};
    char path[512];
    snprintf(path, sizeof path, "%s/lines.png", dir);
    vlm_error err = {0};
    vlm_status st = vlm_plot_lines_png(path, s, 2, &o, &err);
    CHECK(st == VLM_OK, "plot: %s", err.msg);

    vlm_image im;
    vlm_image_init(&im);
    st = vlm_image_load(&im, path, NULL, &err);
    CHECK(st == VLM_OK, "decode: %s", err.msg);
    if (st) return;
    CHECK(im.w == 640 && im.h == 360, "default size: %dx%d", im.w, im.h);

    // The axes are the longest black runs: the y axis a column, the x axis a row.
    static const uint8_t black[3] = {0, 0, 0};
    int ax = -1, ay = -1, best = 0;
    for (int x = 0; x < im.w; x++) {
        int n = count(&im, x, 0, x, im.h - 1, black);
        if (n > best) best = n, ax = x;
    }
    CHECK(best > im.h / 2, "a y axis: column %d has %d black pixels", ax, best);
    best = 0;
    for (int y = 0; y < im.h; y++) {
        int n = count(&im, 0, y, im.w - 1, y, black);
        if (n > best) best = n, ay = y;
    }
    CHECK(best > im.w / 2, "an x axis: row %d has %d black pixels", ay, best);
    CHECK(ax > 10 && ax < im.w / 4 && ay > im.h / 2 && ay < im.h - 10, "axes where expected: x=%d y=%d", ax, ay);

    const uint8_t *ink = vlm_plot_text_rgb;
    long c0 = count(&im, ax + 1, 0, im.w - 1, ay - 1, vlm_plot_series_rgb[0]);
    long c1 = count(&im, ax + 1, 0, im.w - 1, ay - 1, vlm_plot_series_rgb[1]);
    CHECK(c0 > 300 && c1 > 300, "both curves inside the axes: %ld and %ld pixels", c0, c1);
    CHECK(count(&im, 0, 0, im.w - 1, im.h - 1, vlm_plot_series_rgb[2]) == 0, "no third colour with two series");
    // Tick numbers left of the y axis (beyond the tick marks), x numbers and
    // the x label below the x axis, title and y label above the plot.
    long left = count(&im, 0, im.h / 6, ax - 6, ay + 5, ink); // below the title and y label
    long below = count(&im, ax, ay + 6, im.w - 1, im.h - 1, ink);
    long top = count(&im, 0, 0, im.w - 1, 20, ink);
    CHECK(left > 40, "y tick numbers: %ld text pixels left of the axis", left);
    CHECK(below > 60, "x tick numbers and label: %ld text pixels below the axis", below);
    CHECK(top > 40, "title: %ld text pixels at the top", top);
    // The x label sits under the numbers: text in two separate bands.
    int bands = 0, prev = 0;
    for (int y = ay + 2; y < im.h; y++) {
        int t = count(&im, ax, y, im.w - 1, y, ink) > 0;
        bands += t && !prev;
        prev = t;
    }
    CHECK(bands == 2, "numbers and x label below the axis: %d text bands", bands);
    int ptop = 0; // the top of the plot: where the y axis starts
    while (ptop < ay && !same(im.px + ((size_t)ptop * im.w + ax) * 3, black)) ptop++;
    CHECK(ptop > 20 && ptop < ay - 100, "plot top at row %d", ptop);
    CHECK(count(&im, ax + 1, ptop, im.w - 1, ay - 1, ink) > 40, "legend text inside the plot");
    vlm_image_free(&im);
}

// Inputs that must still give a readable chart, not an error or a crash.
static void test_awkward(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/awkward.png", dir);
    vlm_error err = {0};
    double x[5] = {0, 1, 2, 3, 4}, flat[5] = {7, 7, 7, 7, 7}, nan[5] = {NAN, NAN, INFINITY, NAN, NAN};
    double mixed[5] = {-1, 0, 1e-3, 1e-1, 10};
    vlm_plot_series s[3] = {{x, flat, 5, "flat"}, {NULL, NULL, 0, "empty"}, {x, nan, 5, "nan"}};
    CHECK(vlm_plot_lines_png(path, s, 1, NULL, &err) == VLM_OK, "flat series: %s", err.msg);
    CHECK(vlm_plot_lines_png(path, s, 3, NULL, &err) == VLM_OK, "flat + empty + NaN: %s", err.msg);
    CHECK(vlm_plot_lines_png(path, s + 1, 2, NULL, &err) == VLM_OK, "nothing drawable still gives axes: %s", err.msg);
    vlm_plot_series m = {x, mixed, 5, NULL};
    vlm_plot_opts lo = {.log_y = 1, .w = 300, .h = 200, .ylabel = "lr"};
    CHECK(vlm_plot_lines_png(path, &m, 1, &lo, &err) == VLM_OK, "log_y skips values <= 0: %s", err.msg);
    double big_y[2] = {1e308, 1.7e308};
    vlm_plot_series near_max = {x, big_y, 2, NULL};
    CHECK(vlm_plot_lines_png(path, &near_max, 1, NULL, &err) == VLM_OK, "y next to DBL_MAX: %s", err.msg);
    double one = 3;
    vlm_plot_series single = {&one, &one, 1, NULL};
    CHECK(vlm_plot_lines_png(path, &single, 1, NULL, &err) == VLM_OK, "one point: %s", err.msg);
    vlm_image im;
    vlm_image_init(&im);
    vlm_plot_opts big = {.w = 1280, .h = 720, .title = "a title far too long to fit at double size in the chart"};
    CHECK(vlm_plot_lines_png(path, s, 1, &big, &err) == VLM_OK, "big: %s", err.msg);
    CHECK(vlm_image_load(&im, path, NULL, &err) == VLM_OK && im.w == 1280 && im.h == 720, "size from opts: %dx%d",
          im.w, im.h);
    vlm_image_free(&im);
    // The old entry point and the confusion heatmap still work.
    double y2[5] = {1, 2, 3, 2, 1};
    CHECK(vlm_plot_png(path, x, flat, y2, 5, 640, 360, &err) == VLM_OK, "vlm_plot_png: %s", err.msg);
    int64_t conf[4] = {3, 1, 0, 4};
    CHECK(vlm_plot_confusion_png(path, conf, 2, &err) == VLM_OK, "confusion: %s", err.msg);
}

static void test_errors(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/err.png", dir);
    double x[3] = {0, 1, 2}, y[3] = {1, 2, 3}, huge[2] = {-1e308, 1e308};
    vlm_plot_series s[5] = {{x, y, 3, "a"}, {x, y, 3, "b"}, {x, y, 3, "c"}, {x, y, 3, "d"}, {x, y, 3, "e"}};
    vlm_error err = {0};
    CHECK(vlm_plot_lines_png(path, s, 0, NULL, &err) == VLM_ERR_ARG && err.msg[0], "no series: %s", err.msg);
    CHECK(vlm_plot_lines_png(path, NULL, 1, NULL, &err) == VLM_ERR_ARG, "NULL series");
    CHECK(vlm_plot_lines_png(path, s, 5, NULL, &err) == VLM_ERR_ARG, "five series");
    CHECK(vlm_plot_lines_png(NULL, s, 1, NULL, &err) == VLM_ERR_ARG, "no path");
    vlm_plot_series bad = {NULL, y, 3, NULL};
    CHECK(vlm_plot_lines_png(path, &bad, 1, NULL, &err) == VLM_ERR_ARG, "NULL x: %s", err.msg);
    bad = (vlm_plot_series){x, y, -1, NULL};
    CHECK(vlm_plot_lines_png(path, &bad, 1, NULL, &err) == VLM_ERR_ARG, "negative n");
    vlm_plot_opts tiny = {.w = 50, .h = 40}, wide = {.w = 100000, .h = 360};
    CHECK(vlm_plot_lines_png(path, s, 1, &tiny, &err) == VLM_ERR_ARG, "too small: %s", err.msg);
    CHECK(vlm_plot_lines_png(path, s, 1, &wide, &err) == VLM_ERR_ARG, "too large");
    vlm_plot_series over = {x, huge, 2, NULL};
    CHECK(vlm_plot_lines_png(path, &over, 1, NULL, &err) == VLM_ERR_NUMERIC, "overflowing range: %s", err.msg);
    double maxed[2] = {DBL_MAX, DBL_MAX}; // padding the flat range overflows
    over = (vlm_plot_series){maxed, y, 2, NULL};
    CHECK(vlm_plot_lines_png(path, &over, 1, NULL, &err) == VLM_ERR_NUMERIC, "x at DBL_MAX: %s", err.msg);
    err.msg[0] = 0;
    CHECK(vlm_plot_lines_png("/nonexistent-dir-vlm/x/plot.png", s, 2, NULL, &err) == VLM_ERR_IO && err.msg[0],
          "unwritable path: %s", err.msg);
    CHECK(access(path, F_OK) != 0, "no file written on errors");
    CHECK(vlm_plot_png(path, x, y, NULL, 0, 640, 360, &err) == VLM_ERR_ARG, "vlm_plot_png with n = 0");
}

int main(void) {
    test_ticks();
    test_format();
    char dir[] = "/tmp/vlm_test_plot_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return tu_done("test_plot");
    }
    test_render(dir);
    test_awkward(dir);
    test_errors(dir);
    const char *names[] = {"lines.png", "awkward.png", "err.png"};
    char path[600];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return tu_done("test_plot");
}
