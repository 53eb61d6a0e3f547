// Training charts as PNG: line charts (loss curves) with numbered, labelled
// axes drawn in the built-in 5x7 font, and confusion-matrix heatmaps.
#ifndef VLM_TRAIN_PLOT_H
#define VLM_TRAIN_PLOT_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

#define VLM_PLOT_MAX_SERIES 4

// One curve: y[i] against x[i] for i < n. label names it in the legend
// (drawn when there is more than one series; NULL shows "series <k>").
typedef struct {
    const double *x, *y;
    int n;
    const char *label;
} vlm_plot_series;

// Any text may be NULL (not drawn). w, h: image size in pixels, 640 x 360
// when 0. log_y: log10 y axis with decade ticks (values <= 0 are skipped).
typedef struct {
    const char *title, *xlabel, *ylabel;
    int w, h;
    int log_y;
} vlm_plot_opts;

// Colours of series 0..3 (the start of matplotlib's tab10) and of all text
// (tick numbers, labels, title, legend), so tests can find them in a PNG.
extern const uint8_t vlm_plot_series_rgb[VLM_PLOT_MAX_SERIES][3];
extern const uint8_t vlm_plot_text_rgb[3];

// Draws 1..4 series into an RGB PNG at path: 1-2-5 ticks on both axes with
// numbers, the x label under the axis, the y label above it at the top left,
// the title on top and, for several series, a legend in the emptiest corner.
// The x axis spans the data; the y axis is widened to the enclosing ticks.
// Points with a non-finite x or y are skipped and break the line; an empty
// series is skipped; equal y values get a padded range; if nothing at all is
// drawable the axes still come out (0..1). Errors: VLM_ERR_ARG for no or too
// many series, NULL arrays, n < 0 or a size outside 128x96..8192x8192;
// VLM_ERR_NUMERIC for a data range that overflows a double; VLM_ERR_IO when
// the file cannot be written.
vlm_status vlm_plot_lines_png(const char *path, const vlm_plot_series *s, int n_series, const vlm_plot_opts *o,
                              vlm_error *err);

// 'Nice' ticks covering [lo, hi]: the multiples of the smallest step
// m * 10^k (m = 1, 2 or 5) from the last one <= lo to the first one >= hi
// that number at most max_ticks (>= 2). Writes up to cap of them, ascending,
// to out and returns how many it wrote; 1 (lo) when lo == hi; 0 for
// non-finite input, max_ticks < 2, ticks that would overflow, or when no
// step fits (a range across 0 needs at least -s, 0, s). E.g. 0..1 with 6
// gives 0, 0.2, .., 1 and 0..2350 with 6 gives 0, 500, .., 2500.
int vlm_plot_nice_ticks(double lo, double hi, int max_ticks, double *out, int cap);

// Short text for a tick value: "0", "500", "0.25", "1k", "1.5k", "2M", "3G",
// "2e-4" (below 0.001), "1e12" (from 1e12), with the fewest decimals that
// give v back (at most 4 significant digits otherwise). Always
// NUL-terminated when cap > 0.
void vlm_plot_format_number(double v, char *buf, size_t cap);

// Plots y[i] against x[i] (n points) into a w x h RGB PNG; a second series
// (y2, may be NULL) is drawn in another colour. Axes are labelled "step" and
// "loss". Kept for existing callers: vlm_plot_lines_png does the drawing.
vlm_status vlm_plot_png(const char *path, const double *x, const double *y, const double *y2, int n, int w, int h,
                        vlm_error *err);

// Row-normalised confusion matrix [C, C] (rows = true class) as a heatmap PNG
// (white = 0, dark blue = 1): square cells of up to 24 pixels, about 800
// pixels across in all (1 pixel per cell from 400 classes).
vlm_status vlm_plot_confusion_png(const char *path, const int64_t *counts, int C, vlm_error *err);

#endif
