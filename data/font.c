// A 5x7 bitmap font (plus a descender row) for printable ASCII and clipped rectangle/text drawing on
// RGB buffers (labels of detection visualisations, sample grids and chart axes).
#include "data/font.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/image.h"
#include <stddef.h>

// Column-major glyphs, 5 bytes per character 32..126: byte c is column c from
// the left, bit r is row r from the top. Capitals and digits are the classic
// HD44780-style 5x7 set in rows 0..6; lowercase letters are their own shapes
// (so 'l', 'I' and '1' stay distinct) and g, j, p, q, y and '_' reach into
// row 7, because squeezed into the x-height 'g' reads as '9' and 'y' as 'v'.
static const uint8_t font5x7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, // ' '
    {0x00, 0x00, 0x5F, 0x00, 0x00}, // !
    {0x00, 0x07, 0x00, 0x07, 0x00}, // "
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, // #
    {0x24, 0x2A, 0x7F, 0x2A, 0x12}, // $
    {0x23, 0x13, 0x08, 0x64, 0x62}, // %
    {0x36, 0x49, 0x55, 0x22, 0x50}, // &
    {0x00, 0x05, 0x03, 0x00, 0x00}, // '
    {0x00, 0x1C, 0x22, 0x41, 0x00}, // (
    {0x00, 0x41, 0x22, 0x1C, 0x00}, // )
    {0x14, 0x08, 0x3E, 0x08, 0x14}, // *
    {0x08, 0x08, 0x3E, 0x08, 0x08}, // +
    {0x00, 0x50, 0x30, 0x00, 0x00}, // ,
    {0x08, 0x08, 0x08, 0x08, 0x08}, // -
    {0x00, 0x60, 0x60, 0x00, 0x00}, // .
    {0x20, 0x10, 0x08, 0x04, 0x02}, // /
    {0x3E, 0x51, 0x49, 0x45, 0x3E}, // 0
    {0x00, 0x42, 0x7F, 0x40, 0x00}, // 1
    {0x42, 0x61, 0x51, 0x49, 0x46}, // 2
    {0x21, 0x41, 0x45, 0x4B, 0x31}, // 3
    {0x18, 0x14, 0x12, 0x7F, 0x10}, // 4
    {0x27, 0x45, 0x45, 0x45, 0x39}, // 5
    {0x3C, 0x4A, 0x49, 0x49, 0x30}, // 6
    {0x01, 0x71, 0x09, 0x05, 0x03}, // 7
    {0x36, 0x49, 0x49, 0x49, 0x36}, // 8
    {0x06, 0x49, 0x49, 0x29, 0x1E}, // 9
    {0x00, 0x36, 0x36, 0x00, 0x00}, // :
    {0x00, 0x56, 0x36, 0x00, 0x00}, // ;
    {0x08, 0x14, 0x22, 0x41, 0x00}, // <
    {0x14, 0x14, 0x14, 0x14, 0x14}, // =
    {0x00, 0x41, 0x22, 0x14, 0x08}, // >
    {0x02, 0x01, 0x51, 0x09, 0x06}, // ?
    {0x32, 0x49, 0x79, 0x41, 0x3E}, // @
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, // A
    {0x7F, 0x49, 0x49, 0x49, 0x36}, // B
    {0x3E, 0x41, 0x41, 0x41, 0x22}, // C
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, // D
    {0x7F, 0x49, 0x49, 0x49, 0x41}, // E
    {0x7F, 0x09, 0x09, 0x09, 0x01}, // F
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, // G
    {0x7F, 0x08, 0x08, 0x08, 0x7F}, // H
    {0x00, 0x41, 0x7F, 0x41, 0x00}, // I
    {0x20, 0x40, 0x41, 0x3F, 0x01}, // J
    {0x7F, 0x08, 0x14, 0x22, 0x41}, // K
    {0x7F, 0x40, 0x40, 0x40, 0x40}, // L
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, // M
    {0x7F, 0x04, 0x08, 0x10, 0x7F}, // N
    {0x3E, 0x41, 0x41, 0x41, 0x3E}, // O
    {0x7F, 0x09, 0x09, 0x09, 0x06}, // P
    {0x3E, 0x41, 0x51, 0x21, 0x5E}, // Q
    {0x7F, 0x09, 0x19, 0x29, 0x46}, // R
    {0x46, 0x49, 0x49, 0x49, 0x31}, // S
    {0x01, 0x01, 0x7F, 0x01, 0x01}, // T
    {0x3F, 0x40, 0x40, 0x40, 0x3F}, // U
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, // V
    {0x3F, 0x40, 0x38, 0x40, 0x3F}, // W
    {0x63, 0x14, 0x08, 0x14, 0x63}, // X
    {0x07, 0x08, 0x70, 0x08, 0x07}, // Y
    {0x61, 0x51, 0x49, 0x45, 0x43}, // Z
    {0x00, 0x7F, 0x41, 0x41, 0x00}, // [
    {0x02, 0x04, 0x08, 0x10, 0x20}, // backslash
    {0x00, 0x41, 0x41, 0x7F, 0x00}, // ]
    {0x04, 0x02, 0x01, 0x02, 0x04}, // ^
    {0x80, 0x80, 0x80, 0x80, 0x80}, // _
    {0x00, 0x01, 0x02, 0x04, 0x00}, // `
    {0x20, 0x54, 0x54, 0x54, 0x78}, // a
    {0x7F, 0x48, 0x44, 0x44, 0x38}, // b
    {0x38, 0x44, 0x44, 0x44, 0x20}, // c
    {0x38, 0x44, 0x44, 0x48, 0x7F}, // d
    {0x38, 0x54, 0x54, 0x54, 0x18}, // e
    {0x08, 0x7E, 0x09, 0x01, 0x02}, // f
    {0x18, 0xA4, 0xA4, 0xA4, 0x7C}, // g
    {0x7F, 0x08, 0x04, 0x04, 0x78}, // h
    {0x00, 0x44, 0x7D, 0x40, 0x00}, // i
    {0x40, 0x80, 0x84, 0x7D, 0x00}, // j
    {0x7F, 0x10, 0x28, 0x44, 0x00}, // k
    {0x00, 0x41, 0x7F, 0x40, 0x00}, // l
    {0x7C, 0x04, 0x18, 0x04, 0x78}, // m
    {0x7C, 0x08, 0x04, 0x04, 0x78}, // n
    {0x38, 0x44, 0x44, 0x44, 0x38}, // o
    {0xFC, 0x24, 0x24, 0x24, 0x18}, // p
    {0x18, 0x24, 0x24, 0x24, 0xFC}, // q
    {0x7C, 0x08, 0x04, 0x04, 0x08}, // r
    {0x48, 0x54, 0x54, 0x54, 0x20}, // s
    {0x04, 0x3F, 0x44, 0x40, 0x20}, // t
    {0x3C, 0x40, 0x40, 0x20, 0x7C}, // u
    {0x1C, 0x20, 0x40, 0x20, 0x1C}, // v
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, // w
    {0x44, 0x28, 0x10, 0x28, 0x44}, // x
    {0x1C, 0xA0, 0xA0, 0xA0, 0x7C}, // y
    {0x44, 0x64, 0x54, 0x4C, 0x44}, // z
    {0x00, 0x08, 0x36, 0x41, 0x00}, // {
    {0x00, 0x00, 0x7F, 0x00, 0x00}, // |
    {0x00, 0x41, 0x36, 0x08, 0x00}, // }
    {0x08, 0x04, 0x08, 0x10, 0x08}, // ~
};

const uint8_t *vlm_font_glyph(unsigned char ch) {
    if (ch < 32 || ch > 126) ch = '?';
    return font5x7[ch - 32];
}

// Next drawn character of *p (advancing *p): the byte itself for ASCII, '?'
// for control bytes and for each UTF-8 code point (its continuation bytes
// are consumed with it, so an emoji is one '?', not four); 0 at the end.
static unsigned char next_char(const char **p) {
    const unsigned char *s = (const unsigned char *)*p;
    unsigned char c = *s;
    if (!c) return 0;
    s++;
    if (c >= 0x80) {
        int more = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : 0;
        while (more-- > 0 && (*s & 0xC0) == 0x80) s++;
        c = '?';
    } else if (c < 32 || c == 127) {
        c = '?';
    }
    *p = (const char *)s;
    return c;
}

int vlm_text_chars(const char *s) {
    int n = 0;
    while (next_char(&s)) n++;
    return n;
}

int vlm_text_prefix_bytes(const char *s, int n) {
    const char *p = s;
    while (n-- > 0 && next_char(&p)) {
    }
    return (int)(p - s);
}

int vlm_text_width(const char *s, int scale) {
    if (scale < 1) scale = 1;
    int n = vlm_text_chars(s);
    return n ? (n * VLM_FONT_ADVANCE - (VLM_FONT_ADVANCE - VLM_FONT_W)) * scale : 0;
}

void vlm_fill_rect(uint8_t *rgb, int w, int h, int x0, int y0, int x1, int y1, const uint8_t color[3]) {
    if (x0 > x1) {
        int t = x0;
        x0 = x1, x1 = t;
    }
    if (y0 > y1) {
        int t = y0;
        y0 = y1, y1 = t;
    }
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > w - 1) x1 = w - 1;
    if (y1 > h - 1) y1 = h - 1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            uint8_t *px = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            px[0] = color[0], px[1] = color[1], px[2] = color[2];
        }
}

void vlm_draw_rect(uint8_t *rgb, int w, int h, int x0, int y0, int x1, int y1, const uint8_t color[3],
                   int thickness) {
    if (x0 > x1) {
        int t = x0;
        x0 = x1, x1 = t;
    }
    if (y0 > y1) {
        int t = y0;
        y0 = y1, y1 = t;
    }
    if (thickness < 1) thickness = 1;
    // A thickness covering the whole box fills it; the four bands below would
    // overlap harmlessly too, but cap it so the arithmetic cannot overflow.
    if (thickness > x1 - x0 + 1) thickness = x1 - x0 + 1;
    if (thickness > y1 - y0 + 1) thickness = y1 - y0 + 1;
    int t = thickness - 1;
    vlm_fill_rect(rgb, w, h, x0, y0, x1, y0 + t, color);     // top
    vlm_fill_rect(rgb, w, h, x0, y1 - t, x1, y1, color);     // bottom
    vlm_fill_rect(rgb, w, h, x0, y0, x0 + t, y1, color);     // left
    vlm_fill_rect(rgb, w, h, x1 - t, y0, x1, y1, color);     // right
}

void vlm_draw_text(uint8_t *rgb, int w, int h, int x, int y, const char *s, const uint8_t color[3], int scale) {
    if (scale < 1) scale = 1;
    unsigned char c;
    // Stop once the pen is past the right edge: nothing further can be visible.
    for (long pen = x; (c = next_char(&s)) && pen < w; pen += (long)VLM_FONT_ADVANCE * scale) {
        if (pen + (long)VLM_FONT_W * scale <= 0) continue;
        const uint8_t *g = vlm_font_glyph(c);
        for (int col = 0; col < VLM_FONT_W; col++)
            for (int row = 0; row < VLM_FONT_H; row++)
                if (g[col] >> row & 1) {
                    int px = (int)pen + col * scale, py = y + row * scale;
                    vlm_fill_rect(rgb, w, h, px, py, px + scale - 1, py + scale - 1, color);
                }
    }
}

// Grid PNG: one row per prompt (label on the left), n images per row, each
// scaled up `scale` x (nearest).
vlm_status vlm_grid_png(const char *path, const uint8_t *rgb, int rows, int n, int s, int scale,
                             const char *const *labels, vlm_error *err) {
    int cell = s * scale, pad = 2, lw = 0;
    const int fs = 1;
    if (labels)
        for (int r = 0; r < rows; r++) {
            int w = vlm_text_width(labels[r], fs);
            if (w > lw) lw = w;
        }
    if (lw > 240) lw = 240;
    int lx = labels ? lw + 6 : 0;
    int W = lx + n * (cell + pad) + pad, H = rows * (cell + pad) + pad;
    uint8_t *img = malloc((size_t)W * H * 3);
    if (!img) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    memset(img, 255, (size_t)W * H * 3);
    const uint8_t black[3] = {0, 0, 0};
    for (int r = 0; r < rows; r++) {
        int y0 = pad + r * (cell + pad);
        if (labels) {
            char buf[256];
            int keep = vlm_text_chars(labels[r]);
            if (keep > 40) keep = 40; // the label column is at most 240 px (40 glyphs)
            snprintf(buf, sizeof buf, "%.*s", vlm_text_prefix_bytes(labels[r], keep), labels[r]);
            vlm_draw_text(img, W, H, 3, y0 + cell / 2 - VLM_FONT_H * fs / 2, buf, black, fs);
        }
        for (int k = 0; k < n; k++) {
            const uint8_t *src = rgb + ((int64_t)r * n + k) * s * s * 3;
            int x0 = lx + pad + k * (cell + pad);
            for (int y = 0; y < cell; y++)
                for (int x = 0; x < cell; x++)
                    memcpy(img + ((int64_t)(y0 + y) * W + x0 + x) * 3, src + ((y / scale) * s + x / scale) * 3, 3);
        }
    }
    vlm_status st = vlm_image_write_png(path, img, W, H, err);
    free(img);
    return st;
}
