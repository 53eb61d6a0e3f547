// Line-chart PNG writer for loss curves (see plot.h).
#include "cli/plot.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "data/image.h"

static void put(unsigned char *px, int w, int h, int x, int y, const unsigned char *c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    memcpy(px + 3 * ((size_t)y * w + x), c, 3);
}

static void line(unsigned char *px, int w, int h, int x0, int y0, int x1, int y1, const unsigned char *c) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        put(px, w, h, x0, y0, c);
        put(px, w, h, x0, y0 + 1, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

vlm_status vlm_plot_png(const char *path, const double *x, const double *y, const double *y2, int n, int w, int h,
                        vlm_error *err) {
    if (n < 1 || w < 64 || h < 64) return vlm_errorf(err, VLM_ERR_ARG, "plot: nothing to draw");
    unsigned char *px = malloc((size_t)w * h * 3);
    if (!px) return vlm_errorf(err, VLM_ERR_OOM, "plot: out of memory");
    memset(px, 255, (size_t)w * h * 3);
    double xmin = x[0], xmax = x[0], ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < n; i++) {
        xmin = fmin(xmin, x[i]);
        xmax = fmax(xmax, x[i]);
        if (isfinite(y[i])) { ymin = fmin(ymin, y[i]); ymax = fmax(ymax, y[i]); }
        if (y2 && isfinite(y2[i])) { ymin = fmin(ymin, y2[i]); ymax = fmax(ymax, y2[i]); }
    }
    if (!isfinite(ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-9) ymax = ymin + 1;
    ymin = fmin(ymin, 0);
    if (xmax - xmin < 1e-9) xmax = xmin + 1;
    const int L = 40, R = 10, T = 10, B = 30;
    const unsigned char axis[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, c1[3] = {31, 119, 180}, c2[3] = {255, 127, 14};
    for (int k = 0; k <= 5; k++) { // grid lines and ticks
        int yy = T + (h - T - B) * k / 5, xx = L + (w - L - R) * k / 5;
        line(px, w, h, L, yy, w - R, yy, grid);
        line(px, w, h, xx, h - B, xx, h - B + 5, axis);
        line(px, w, h, L - 5, yy, L, yy, axis);
    }
    line(px, w, h, L, T, L, h - B, axis);
    line(px, w, h, L, h - B, w - R, h - B, axis);
    for (int s = 0; s < (y2 ? 2 : 1); s++) {
        const double *yy = s ? y2 : y;
        int px0 = -1, py0 = -1;
        for (int i = 0; i < n; i++) {
            if (!isfinite(yy[i])) continue;
            int xx = L + (int)((w - L - R) * (x[i] - xmin) / (xmax - xmin));
            int yv = h - B - (int)((h - T - B) * (yy[i] - ymin) / (ymax - ymin));
            if (px0 >= 0) line(px, w, h, px0, py0, xx, yv, s ? c2 : c1);
            px0 = xx;
            py0 = yv;
        }
    }
    vlm_status st = vlm_image_write_png(path, px, w, h, err);
    free(px);
    return st;
}

vlm_status vlm_plot_confusion_png(const char *path, const int64_t *counts, int C, vlm_error *err) {
    if (C < 1) return vlm_errorf(err, VLM_ERR_ARG, "confusion: no classes");
    int cell = C >= 400 ? 1 : 800 / C > 24 ? 24 : (800 / C < 1 ? 1 : 800 / C), W = C * cell + 2;
    unsigned char *px = malloc((size_t)W * W * 3);
    if (!px) return vlm_errorf(err, VLM_ERR_OOM, "confusion: out of memory");
    memset(px, 128, (size_t)W * W * 3);
    for (int i = 0; i < C; i++) {
        int64_t row = 0;
        for (int j = 0; j < C; j++) row += counts[(int64_t)i * C + j];
        for (int j = 0; j < C; j++) {
            double v = row ? (double)counts[(int64_t)i * C + j] / (double)row : 0;
            unsigned char c[3] = {(unsigned char)(255 - 247 * v), (unsigned char)(255 - 207 * v), (unsigned char)(255 - 148 * v)};
            for (int y = 0; y < cell; y++)
                for (int x = 0; x < cell; x++) memcpy(px + 3 * ((size_t)(1 + i * cell + y) * W + 1 + j * cell + x), c, 3);
        }
    }
    vlm_status st = vlm_image_write_png(path, px, W, W, err);
    free(px);
    return st;
}
