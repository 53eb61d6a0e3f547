// Minimal line charts as PNG (loss curves): no fonts, axes with tick marks.
#ifndef VLM_CLI_PLOT_H
#define VLM_CLI_PLOT_H

#include <stdint.h>
#include "core/error.h"

// Plots y[i] against x[i] (n points) into a w x h RGB PNG; a second series
// (y2, may be NULL) is drawn in another colour.
vlm_status vlm_plot_png(const char *path, const double *x, const double *y, const double *y2, int n, int w, int h,
                        vlm_error *err);

#endif

// Row-normalised confusion matrix [C, C] (rows = true class) as a heatmap PNG
// (white = 0, dark blue = 1), each cell `cell` pixels.
vlm_status vlm_plot_confusion_png(const char *path, const int64_t *counts, int C, vlm_error *err);
