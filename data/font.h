// Drawing on 8-bit RGB buffers for visualisations (detection boxes, sample
// grids, chart labels): a built-in 5x7 bitmap font (printable ASCII),
// rectangle outlines and filled rectangles, all clipped.
#ifndef VLM_DATA_FONT_H
#define VLM_DATA_FONT_H

#include <stdint.h>
#include "core/error.h"

// Glyph cell at scale 1: 5 x 8 pixels (5x7 glyphs and a descender row),
// advancing 6 (one column of spacing).
#define VLM_FONT_W 5
#define VLM_FONT_H 8
#define VLM_FONT_ADVANCE 6

// The 5 column bitmaps of a character (bit r = row r from the top). Bytes
// outside 32..126 give '?'.
const uint8_t *vlm_font_glyph(unsigned char ch);

// Draws s with its top-left corner at (x, y) into rgb [h, w, 3]; each font
// pixel becomes a scale x scale block (scale < 1 counts as 1). Only set
// pixels are written (no background). Bytes 32..126 draw their glyph; any
// other character draws '?', a UTF-8 sequence (e.g. an emoji name) one '?'
// per code point. Pixels outside the image are skipped.
void vlm_draw_text(uint8_t *rgb, int w, int h, int x, int y, const char *s, const uint8_t color[3], int scale);
// Width in pixels of what vlm_draw_text draws for s (no trailing spacing;
// 0 for ""). Its height is VLM_FONT_H * scale.
int vlm_text_width(const char *s, int scale);
// Number of characters (code points, as drawn) in s.
int vlm_text_chars(const char *s);
// Byte length of the first n drawn characters of s (to cut a label).
int vlm_text_prefix_bytes(const char *s, int n);

// Outline of the rectangle with inclusive corners (x0, y0) and (x1, y1)
// (swapped if given reversed), `thickness` pixels wide growing inwards.
void vlm_draw_rect(uint8_t *rgb, int w, int h, int x0, int y0, int x1, int y1, const uint8_t color[3],
                   int thickness);
// Filled rectangle with inclusive corners (x0, y0) and (x1, y1).
void vlm_fill_rect(uint8_t *rgb, int w, int h, int x0, int y0, int x1, int y1, const uint8_t color[3]);

// A PNG grid of 8-bit RGB images rgb [rows * n, s, s, 3]: one row per label
// (drawn on the left, cut to 40 characters; labels may be NULL), n images per
// row, each scaled up `scale` x (nearest).
vlm_status vlm_grid_png(const char *path, const uint8_t *rgb, int rows, int n, int s, int scale, const char *const *labels,
                        vlm_error *err);

#endif
