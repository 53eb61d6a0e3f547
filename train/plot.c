// Line-chart and confusion-matrix PNG writers for training runs (see plot.h):
// tick choice, number formatting, layout around the labels, and drawing.
#include "train/plot.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/font.h"
#include "data/image.h"

const uint8_t vlm_plot_series_rgb[VLM_PLOT_MAX_SERIES][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}};
const uint8_t vlm_plot_text_rgb[3] = {34, 34, 34};
static const uint8_t AXIS[3] = {0, 0, 0}, GRID[3] = {228, 228, 228}, WHITE[3] = {255, 255, 255},
                     FRAME[3] = {170, 170, 170};

// ---- ticks ----------------------------------------------------------------

// Tick i of step m * 10^e. Dividing by 10^-e for negative e (instead of
// multiplying by 0.1) gives the double nearest 0.3, not 0.30000000000000004,
// so labels and tests see clean decimals.
static double tick_value(double i, int m, int e) {
    double p = pow(10.0, abs(e));
    return e < 0 ? i * m / p : i * m * p;
}

// Slack for float noise in lo/step and hi/step (1 / 0.2 may be 4.999..).
#define TICK_EPS 1e-9

int vlm_plot_nice_ticks(double lo, double hi, int max_ticks, double *out, int cap) {
    if (!isfinite(lo) || !isfinite(hi) || max_ticks < 2 || cap < 1 || !out) return 0;
    if (lo > hi) {
        double t = lo;
        lo = hi, hi = t;
    }
    double span = hi - lo;
    if (!isfinite(span)) return 0;
    if (span == 0) {
        out[0] = lo;
        return 1;
    }
    // No step below span / (max_ticks - 1) can fit, so start at the 1-2-5
    // value just under it and walk up; a handful of steps always suffices.
    double raw = span / (max_ticks - 1);
    if (raw < DBL_MIN * 1e20) return 0; // 10^e would underflow below
    int e = (int)floor(log10(raw));
    static const int M[3] = {1, 2, 5};
    for (int k = 0; k < 12; k++) {
        int m = M[k % 3], ek = e + k / 3;
        double step = tick_value(1, m, ek);
        if (step < raw * (1 - TICK_EPS)) continue;
        double i0 = floor(lo / step + TICK_EPS), i1 = ceil(hi / step - TICK_EPS);
        if (i1 - i0 + 1 > max_ticks) continue;
        if (!isfinite(tick_value(i0, m, ek)) || !isfinite(tick_value(i1, m, ek))) return 0; // next to DBL_MAX
        int n = 0;
        for (double i = i0; i <= i1 && n < cap; i++) out[n++] = tick_value(i, m, ek);
        return n;
    }
    return 0;
}

// ---- number formatting ----------------------------------------------------

// x (>= 0) with the fewest decimals (<= maxd) that read back as x within
// float noise; failing that, 4 significant digits.
static void fmt_fixed(double x, int maxd, char *buf, size_t cap) {
    for (int d = 0; d <= maxd; d++) {
        snprintf(buf, cap, "%.*f", d, x);
        if (fabs(strtod(buf, NULL) - x) <= 1e-9 * x) return;
    }
    int d = x >= 1 ? 3 - (int)floor(log10(x)) : maxd;
    snprintf(buf, cap, "%.*f", d < 0 ? 0 : d > maxd ? maxd : d, x);
}

// x (> 0) as mantissa e exponent, shortest mantissa, no '+' or leading
// exponent zeros: 2e-4, 1.5e12.
static void fmt_exp(double x, char *buf, size_t cap) {
    char t[24]; // the longest form, "d.ddde-308", fits twice over
    int p = 0;
    for (; p <= 3; p++) {
        snprintf(t, sizeof t, "%.*e", p, x);
        if (fabs(strtod(t, NULL) - x) <= 1e-9 * x) break;
    }
    if (p > 3) snprintf(t, sizeof t, "%.3e", x);
    char *ep = strchr(t, 'e');
    int ex = atoi(ep + 1);
    *ep = 0;
    snprintf(buf, cap, "%.8se%d", t, ex); // the mantissa is at most "d.ddd"
}

void vlm_plot_format_number(double v, char *buf, size_t cap) {
    if (!buf || !cap) return;
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
        return;
    }
    double a = fabs(v);
    const char *sign = v < 0 ? "-" : "";
    char t[24]; // the longest form, "d.ddde-308", fits twice over
    if (isinf(v)) {
        snprintf(buf, cap, "%sinf", sign);
        return;
    }
    if (a < 1e-300) {
        snprintf(buf, cap, "0"); // also -0 and denormals, never "-0"
        return;
    }
    if (a < 1e-3 || a >= 1e12) {
        fmt_exp(a, t, sizeof t);
    } else if (a < 1e3) {
        fmt_fixed(a, 6, t, sizeof t);
        if (strtod(t, NULL) >= 1e3) snprintf(t, sizeof t, "1k"); // 999.99995 rounds up
    } else {
        // k, M, G: the suffix whose mantissa is below 1000 after rounding.
        static const char SUF[3] = {'k', 'M', 'G'};
        int k = a >= 1e9 ? 2 : a >= 1e6 ? 1 : 0;
        fmt_fixed(a / pow(1e3, k + 1), 3, t, sizeof t - 1);
        if (strtod(t, NULL) >= 1e3) {
            if (k == 2) {
                fmt_exp(a, t, sizeof t);
                snprintf(buf, cap, "%s%s", sign, t);
                return;
            }
            k++;
            fmt_fixed(a / pow(1e3, k + 1), 3, t, sizeof t - 1);
        }
        size_t n = strlen(t);
        t[n] = SUF[k], t[n + 1] = 0;
    }
    snprintf(buf, cap, "%s%s", sign, t);
}

// ---- drawing --------------------------------------------------------------

typedef struct {
    uint8_t *px;
    int w, h;
} canvas;

// A t x t pen, so thick lines stay thick at every slope.
static void dot(canvas *c, int x, int y, int t, const uint8_t *rgb) {
    int o = (t - 1) / 2;
    vlm_fill_rect(c->px, c->w, c->h, x - o, y - o, x - o + t - 1, y - o + t - 1, rgb);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, int t, const uint8_t *rgb) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        dot(c, x0, y0, t, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}

// ---- line charts ----------------------------------------------------------

#define MAX_TICKS 16
#define LABEL_LEN 32

typedef struct {
    double v[MAX_TICKS];        // tick values (log_y: exponents)
    char s[MAX_TICKS][LABEL_LEN];
    int n;
    double lo, hi;              // axis range (log_y: exponents)
} axis_ticks;

static void label_ticks(axis_ticks *a, int log) {
    for (int i = 0; i < a->n; i++) vlm_plot_format_number(log ? pow(10.0, a->v[i]) : a->v[i], a->s[i], LABEL_LEN);
}

// Linear ticks over [lo, hi]. tight: the axis keeps the data range and shows
// the at most max_ticks ticks inside it (unless fewer than 2 are), else it
// widens to the ticks. The enclosing ticks of a tight range may number two
// more than those inside, so a finer step is tried first.
static void linear_ticks(axis_ticks *a, double lo, double hi, int max_ticks, int tight) {
    double t[MAX_TICKS] = {0}; // (always filled: the loop runs at least once; -O2 cannot see it)
    int n = 0;
    for (int mt = tight ? max_ticks + 2 : max_ticks; mt >= max_ticks; mt--) {
        n = vlm_plot_nice_ticks(lo, hi, mt, t, MAX_TICKS);
        a->n = 0;
        if (n < 2) { // only for ranges too small to tick: label the ends
            a->lo = a->v[0] = lo, a->hi = a->v[1] = hi, a->n = 2;
            label_ticks(a, 0);
            return;
        }
        double slack = (t[1] - t[0]) * 1e-6;
        if (tight)
            for (int i = 0; i < n; i++)
                if (t[i] >= lo - slack && t[i] <= hi + slack) a->v[a->n++] = t[i];
        if (a->n >= 2 && a->n <= max_ticks) {
            a->lo = lo, a->hi = hi;
            label_ticks(a, 0);
            return;
        }
    }
    memcpy(a->v, t, sizeof(double) * n);
    a->n = n, a->lo = t[0], a->hi = t[n - 1];
    label_ticks(a, 0);
}

// Decade ticks over exponents [elo, ehi] (already whole numbers, elo < ehi),
// every stride-th decade so at most max_ticks appear.
static void log_ticks(axis_ticks *a, double elo, double ehi, int max_ticks) {
    double stride = ceil((ehi - elo) / (max_ticks - 1));
    if (stride < 1) stride = 1;
    a->lo = floor(elo / stride) * stride, a->hi = ceil(ehi / stride) * stride;
    a->n = 0;
    for (double e = a->lo; e <= a->hi + 0.5 && a->n < MAX_TICKS; e += stride) a->v[a->n++] = e;
    label_ticks(a, 1);
}

static int widest(const axis_ticks *a, int scale) {
    int m = 0;
    for (int i = 0; i < a->n; i++) {
        int tw = vlm_text_width(a->s[i], scale);
        if (tw > m) m = tw;
    }
    return m;
}

// Whether a point counts: finite, and positive on a log axis.
static int usable(double x, double y, int log_y) {
    return isfinite(x) && isfinite(y) && (!log_y || y > 0);
}

// Pads a degenerate range (all values equal) so it can be ticked.
static void pad_range(double *lo, double *hi) {
    double mid = *lo / 2 + *hi / 2, span = *hi - *lo;
    if (span > fabs(mid) * 1e-9 && span > 1e-200) return;
    double d = fabs(mid) > 1e-200 ? fabs(mid) * 0.1 : 1;
    *lo = mid - d, *hi = mid + d;
}

typedef struct {
    int L, T, pw, ph; // plot area: top-left corner and size
    double x0, x1, y0, y1;
    int log_y;
} frame;

static int map_x(const frame *f, double x) {
    return f->L + (int)lround((f->pw - 1) * (x - f->x0) / (f->x1 - f->x0));
}

// y in axis units (log_y: the exponent).
static int map_y(const frame *f, double y) {
    return f->T + (int)lround((f->ph - 1) * (1 - (y - f->y0) / (f->y1 - f->y0)));
}

// Pixels of any series colour in a box, to put the legend where it hides least.
static long series_pixels(const canvas *c, int x0, int y0, int x1, int y1) {
    long n = 0;
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < c->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < c->w; x++) {
            const uint8_t *p = c->px + ((size_t)y * c->w + x) * 3;
            for (int k = 0; k < VLM_PLOT_MAX_SERIES; k++)
                if (!memcmp(p, vlm_plot_series_rgb[k], 3)) {
                    n++;
                    break;
                }
        }
    return n;
}

// A line chart's layout, in pixels of the final w x h image: text and strokes
// grow with the image (scale) so a 1280x720 chart reads like a 640x360 one.
typedef struct {
    int w, h, log_y;
    int scale, fh, pad, tick, gap, lw; // text scale, font height, margins, tick length, gaps, line width
    int title_scale;
    int ylabel_y;                      // top of the y label
    int xb;                            // the x axis row
    frame f;                           // plot area and axis ranges
    axis_ticks xt, yt;
} chart;

// Rejects a missing path, a bad series count or series without arrays.
static vlm_status check_series(const char *path, const vlm_plot_series *s, int n_series, vlm_error *err) {
    if (!path || !*path) return vlm_errorf(err, VLM_ERR_ARG, "plot: no output path");
    if (!s) return vlm_errorf(err, VLM_ERR_ARG, "plot: no series array");
    if (n_series < 1 || n_series > VLM_PLOT_MAX_SERIES)
        return vlm_errorf(err, VLM_ERR_ARG, "plot: %d series (want 1..%d)", n_series, VLM_PLOT_MAX_SERIES);
    for (int k = 0; k < n_series; k++) {
        if (s[k].n < 0) return vlm_errorf(err, VLM_ERR_ARG, "plot: series %d has length %d", k, s[k].n);
        if (s[k].n > 0 && (!s[k].x || !s[k].y))
            return vlm_errorf(err, VLM_ERR_ARG, "plot: series %d has %d points but no x or y array", k, s[k].n);
    }
    return VLM_OK;
}

// Data ranges over the points that will be drawn (log_y: of log10 y), padded
// when degenerate, 0..1 when nothing is drawable; r = {xlo, xhi, ylo, yhi}.
static vlm_status data_range(const vlm_plot_series *s, int n_series, int log_y, double r[4], vlm_error *err) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!usable(x, y, log_y)) continue;
            if (log_y) y = log10(y);
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    if (xlo > xhi) xlo = 0, xhi = 1, ylo = 0, yhi = 1; // nothing drawable: bare axes
    pad_range(&xlo, &xhi);
    if (!log_y) pad_range(&ylo, &yhi);
    // Checked after padding, which can itself overflow next to DBL_MAX.
    if (!isfinite(xlo) || !isfinite(xhi) || !isfinite(xhi - xlo) || !isfinite(ylo) || !isfinite(yhi) ||
        !isfinite(yhi - ylo))
        return vlm_errorf(err, VLM_ERR_NUMERIC, "plot: data range overflows (x %g..%g, y %g..%g)", xlo, xhi, ylo,
                          yhi);
    r[0] = xlo, r[1] = xhi, r[2] = ylo, r[3] = yhi;
    return VLM_OK;
}

// Vertical layout (title, y label, then the plot, whose top tick label pokes
// half a line above T; below it tick marks, numbers and x label) and the y
// ticks. Sets ch->f.T, f.ph, ylabel_y, title_scale and yt; *L = the plot's left edge.
static vlm_status layout_y(chart *ch, const vlm_plot_opts *o, double ylo, double yhi, int *L, vlm_error *err) {
    const int w = ch->w, h = ch->h, scale = ch->scale, fh = ch->fh, pad = ch->pad, gap = ch->gap;
    ch->title_scale = scale * 2;
    if (o->title && vlm_text_width(o->title, ch->title_scale) > w - 2 * pad) ch->title_scale = scale;
    int T = pad;
    if (o->title && *o->title) T += VLM_FONT_H * ch->title_scale + 2 * gap;
    ch->ylabel_y = T;
    if (o->ylabel && *o->ylabel) T += fh + gap;
    T += fh / 2 + gap;
    int B = ch->tick + gap + fh + (o->xlabel && *o->xlabel ? 2 * gap + fh : 0) + pad;
    int ph = h - T - B;
    if (ph < 24) return vlm_errorf(err, VLM_ERR_ARG, "plot: %dx%d is too small for its labels", w, h);
    ch->f.T = T, ch->f.ph = ph;
    int max_y = ph / (fh + 30 * scale);
    max_y = max_y < 3 ? 3 : max_y > 11 ? 11 : max_y;
    if (ch->log_y) {
        double elo = floor(ylo + 1e-9), ehi = ceil(yhi - 1e-9);
        if (ehi <= elo) ehi = elo + 1;
        log_ticks(&ch->yt, elo, ehi, max_y);
    } else {
        linear_ticks(&ch->yt, ylo, yhi, max_y, 0);
    }
    *L = pad + widest(&ch->yt, scale) + gap + ch->tick;
    return VLM_OK;
}

// Horizontal layout: fewer x ticks until neighbouring numbers keep two
// character widths apart, and a right margin wide enough for the last number.
// Sets ch->xt and the frame ch->f (plot area left edge L, ranges).
static vlm_status layout_x(chart *ch, double xlo, double xhi, int L, vlm_error *err) {
    const int w = ch->w, h = ch->h, scale = ch->scale, pad = ch->pad, T = ch->f.T, ph = ch->f.ph;
    axis_ticks *xt = &ch->xt;
    int R = pad + 4 * scale, pw = 0;
    frame f = {0};
    for (int pass = 0; pass < 3; pass++) {
        pw = w - L - R;
        if (pw < 32) return vlm_errorf(err, VLM_ERR_ARG, "plot: %dx%d is too small for its labels", w, h);
        int max_x = pw / (80 * scale);
        max_x = max_x < 2 ? 2 : max_x > 12 ? 12 : max_x;
        for (; max_x >= 2; max_x--) {
            linear_ticks(xt, xlo, xhi, max_x, 1);
            f = (frame){L, T, pw, ph, xt->lo, xt->hi, ch->yt.lo, ch->yt.hi, ch->log_y};
            int ok = 1;
            for (int i = 1; i < xt->n && ok; i++) {
                int a = map_x(&f, xt->v[i - 1]) + vlm_text_width(xt->s[i - 1], scale) / 2;
                int b = map_x(&f, xt->v[i]) - vlm_text_width(xt->s[i], scale) / 2;
                ok = b - a >= 2 * VLM_FONT_ADVANCE * scale;
            }
            if (ok) break;
        }
        int right = map_x(&f, xt->v[xt->n - 1]) + (vlm_text_width(xt->s[xt->n - 1], scale) + 1) / 2;
        if (right <= w - pad) break;
        R += right - (w - pad);
    }
    ch->f = f;
    return VLM_OK;
}

// Grid lines at every tick, under the curves.
static void draw_grid(canvas *c, const chart *ch) {
    const frame *f = &ch->f;
    for (int i = 0; i < ch->yt.n; i++) {
        int y = map_y(f, ch->yt.v[i]);
        vlm_fill_rect(c->px, c->w, c->h, f->L, y, f->L + f->pw - 1, y, GRID);
    }
    for (int i = 0; i < ch->xt.n; i++) {
        int x = map_x(f, ch->xt.v[i]);
        vlm_fill_rect(c->px, c->w, c->h, x, f->T, x, ch->xb, GRID);
    }
}

// Curves, broken at unusable points; a point with no usable neighbour gets a
// dot so a lone value still shows.
static void draw_curves(canvas *c, const chart *ch, const vlm_plot_series *s, int n_series) {
    const int log_y = ch->log_y, lw = ch->lw;
    for (int k = 0; k < n_series; k++) {
        const uint8_t *rgb = vlm_plot_series_rgb[k];
        int px0 = 0, py0 = 0, have = 0;
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!usable(x, y, log_y)) {
                have = 0;
                continue;
            }
            int px = map_x(&ch->f, x), py = map_y(&ch->f, log_y ? log10(y) : y);
            if (have) {
                line(c, px0, py0, px, py, lw, rgb);
            } else {
                int next = i + 1 < s[k].n && usable(s[k].x[i + 1], s[k].y[i + 1], log_y);
                if (!next) dot(c, px, py, lw + 2, rgb);
            }
            px0 = px, py0 = py, have = 1;
        }
    }
}

// Axes over the curves' ends, then ticks and numbers (log_y: minor ticks too).
static void draw_axes(canvas *c, const chart *ch) {
    const int w = c->w, h = c->h, scale = ch->scale, tick = ch->tick, gap = ch->gap, xb = ch->xb;
    const int L = ch->f.L, T = ch->f.T, pw = ch->f.pw;
    const frame *f = &ch->f;
    const axis_ticks *xt = &ch->xt, *yt = &ch->yt;
    const uint8_t *ink = vlm_plot_text_rgb;
    vlm_fill_rect(c->px, w, h, L - 1, T, L - 1, xb, AXIS);
    vlm_fill_rect(c->px, w, h, L - 1, xb + 1, L + pw - 1, xb + 1, AXIS);
    for (int i = 0; i < yt->n; i++) {
        int y = map_y(f, yt->v[i]);
        vlm_fill_rect(c->px, w, h, L - 1 - tick, y, L - 2, y, AXIS);
        vlm_draw_text(c->px, w, h, L - 1 - tick - gap - vlm_text_width(yt->s[i], scale), y - 3 * scale, yt->s[i], ink,
                      scale);
    }
    if (ch->log_y && yt->v[1] - yt->v[0] == 1) { // minor ticks at 2..9 x 10^e when decades are tall enough
        for (int i = 0; i + 1 < yt->n && (f->ph - 1) / (yt->n - 1) >= 24 * scale; i++)
            for (int m = 2; m <= 9; m++) {
                int y = map_y(f, yt->v[i] + log10(m));
                vlm_fill_rect(c->px, w, h, L - 1 - tick / 2, y, L - 2, y, AXIS);
            }
    }
    for (int i = 0; i < xt->n; i++) {
        int x = map_x(f, xt->v[i]);
        vlm_fill_rect(c->px, w, h, x, xb + 2, x, xb + 1 + tick, AXIS);
        vlm_draw_text(c->px, w, h, x - vlm_text_width(xt->s[i], scale) / 2, xb + 2 + tick + gap, xt->s[i], ink, scale);
    }
}

// Title (centred on top), y label (top left) and x label (under the numbers).
static void draw_labels(canvas *c, const chart *ch, const vlm_plot_opts *o) {
    const int w = c->w, h = c->h, scale = ch->scale, pad = ch->pad, gap = ch->gap;
    const uint8_t *ink = vlm_plot_text_rgb;
    if (o->title && *o->title) {
        int tw = vlm_text_width(o->title, ch->title_scale), tx = (w - tw) / 2;
        vlm_draw_text(c->px, w, h, tx < pad ? pad : tx, pad, o->title, ink, ch->title_scale);
    }
    if (o->ylabel && *o->ylabel) vlm_draw_text(c->px, w, h, pad, ch->ylabel_y, o->ylabel, ink, scale);
    if (o->xlabel && *o->xlabel) {
        int tw = vlm_text_width(o->xlabel, scale);
        vlm_draw_text(c->px, w, h, ch->f.L + (ch->f.pw - tw) / 2, ch->xb + 2 + ch->tick + gap + ch->fh + 2 * gap,
                      o->xlabel, ink, scale);
    }
}

// Legend: a swatch and the label per drawn series, in whichever corner of
// the plot covers the fewest curve pixels (top right on ties).
static void draw_legend(canvas *c, const chart *ch, const vlm_plot_series *s, int n_series) {
    const int w = c->w, h = c->h, scale = ch->scale, gap = ch->gap, lw = ch->lw, xb = ch->xb;
    const int L = ch->f.L, T = ch->f.T, pw = ch->f.pw;
    int shown[VLM_PLOT_MAX_SERIES], ns = 0;
    for (int k = 0; k < n_series; k++)
        if (s[k].n > 0) shown[ns++] = k;
    if (n_series <= 1 || ns <= 0) return;
    char names[VLM_PLOT_MAX_SERIES][48];
    int tw = 0, sw = 14 * scale, row = ch->fh + 4 * scale;
    for (int j = 0; j < ns; j++) {
        if (s[shown[j]].label)
            snprintf(names[j], sizeof names[j], "%s", s[shown[j]].label);
        else
            snprintf(names[j], sizeof names[j], "series %d", shown[j] + 1);
        int t = vlm_text_width(names[j], scale);
        if (t > tw) tw = t;
    }
    int bw = gap + sw + gap + tw + gap + 2, bh = ns * row + 2 * scale + 2, m = 6 * scale;
    if (bw > pw - 2 * m) bw = pw - 2 * m;
    int cx[4] = {L + pw - m - bw, L + m, L + pw - m - bw, L + m}, cy[4] = {T + m, T + m, xb - m - bh, xb - m - bh};
    int best = 0;
    long best_n = -1;
    for (int q = 0; q < 4; q++) {
        long n = series_pixels(c, cx[q], cy[q], cx[q] + bw - 1, cy[q] + bh - 1);
        if (best_n < 0 || n < best_n) best = q, best_n = n;
    }
    int bx = cx[best], by = cy[best];
    vlm_fill_rect(c->px, w, h, bx, by, bx + bw - 1, by + bh - 1, WHITE);
    vlm_draw_rect(c->px, w, h, bx, by, bx + bw - 1, by + bh - 1, FRAME, 1);
    for (int j = 0; j < ns; j++) {
        int ry = by + 1 + scale + j * row + row / 2;
        vlm_fill_rect(c->px, w, h, bx + 1 + gap, ry - lw / 2, bx + gap + sw, ry - lw / 2 + lw - 1,
                      vlm_plot_series_rgb[shown[j]]);
        vlm_draw_text(c->px, w, h, bx + 1 + 2 * gap + sw, ry - 4 * scale, names[j], vlm_plot_text_rgb, scale);
    }
}

vlm_status vlm_plot_lines_png(const char *path, const vlm_plot_series *s, int n_series, const vlm_plot_opts *o,
                              vlm_error *err) {
    vlm_status st = check_series(path, s, n_series, err);
    if (st) return st;
    vlm_plot_opts def = {0};
    if (!o) o = &def;
    int w = o->w ? o->w : 640, h = o->h ? o->h : 360, log_y = o->log_y != 0;
    if (w < 128 || h < 96 || w > 8192 || h > 8192)
        return vlm_errorf(err, VLM_ERR_ARG, "plot: size %dx%d outside 128x96..8192x8192", w, h);
    double r[4] = {0, 0, 0, 0}; // xlo, xhi, ylo, yhi
    if ((st = data_range(s, n_series, log_y, r, err))) return st;

    chart ch = {.w = w, .h = h, .log_y = log_y};
    int scale = w / 640 < h / 360 ? w / 640 : h / 360;
    ch.scale = scale = scale < 1 ? 1 : scale > 4 ? 4 : scale;
    ch.fh = VLM_FONT_H * scale, ch.pad = 6 * scale, ch.tick = 4 * scale, ch.gap = 3 * scale, ch.lw = 1 + scale;
    int L = 0;
    if ((st = layout_y(&ch, o, r[2], r[3], &L, err))) return st;
    if ((st = layout_x(&ch, r[0], r[1], L, err))) return st;

    size_t bytes = (size_t)w * h * 3;
    canvas c = {malloc(bytes), w, h};
    if (!c.px) return vlm_errorf(err, VLM_ERR_OOM, "plot: out of memory for %dx%d", w, h);
    memset(c.px, 255, bytes);
    ch.xb = ch.f.T + ch.f.ph - 1; // the x axis row
    draw_grid(&c, &ch);
    draw_curves(&c, &ch, s, n_series);
    draw_axes(&c, &ch);
    draw_labels(&c, &ch, o);
    draw_legend(&c, &ch, s, n_series);
    st = vlm_image_write_png(path, c.px, w, h, err);
    free(c.px);
    return st;
}

vlm_status vlm_plot_png(const char *path, const double *x, const double *y, const double *y2, int n, int w, int h,
                        vlm_error *err) {
    if (n < 1 || !x || !y) return vlm_errorf(err, VLM_ERR_ARG, "plot: nothing to draw");
    vlm_plot_series s[2] = {{x, y, n, NULL}, {x, y2, n, NULL}};
    vlm_plot_opts o = {.xlabel = "step", .ylabel = "loss", .w = w, .h = h};
    return vlm_plot_lines_png(path, s, y2 ? 2 : 1, &o, err);
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
