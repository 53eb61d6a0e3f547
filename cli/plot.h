// Minimal line charts as PNG (loss curves): no fonts, axes with tick marks.
#ifndef VLM_CLI_PLOT_H
#define VLM_CLI_PLOT_H

#include "core/error.h"

// Plots y[i] against x[i] (n points) into a w x h RGB PNG; a second series
// (y2, may be NULL) is drawn in another colour.
vlm_status vlm_plot_png(const char *path, const double *x, const double *y, const double *y2, int n, int w, int h,
                        vlm_error *err);

#endif
