// SVG rasterisation (librsvg), internal to data/: vlm_image_decode and
// vlm_image_probe call it for bytes that sniff as SVG.
#ifndef VLM_DATA_SVG_INTERNAL_H
#define VLM_DATA_SVG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "data/image.h"

int vlm_svg_sniff(const uint8_t *p, size_t size);
// Size the SVG is drawn at (longest side = side).
vlm_status vlm_svg_probe(const uint8_t *data, size_t size, const char *name, int side, int *w, int *h,
                         vlm_error *err);
// Draws the SVG with its longest side `side` pixels, over bg (RGB).
vlm_status vlm_svg_decode(vlm_image *img, const uint8_t *data, size_t size, const char *name, int side,
                          const uint8_t bg[3], vlm_error *err);

#endif
