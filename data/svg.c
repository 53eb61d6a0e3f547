// SVG rasterisation with librsvg + cairo into the RGB vlm_image, composited
// over a background (transparent pixels have no colour to keep). Used by
// vlm_image_decode when the bytes sniff as SVG.
#include <cairo.h>
#include <librsvg/rsvg.h>
#include <math.h>
#include <string.h>
#include "data/svg_internal.h"

// The size an SVG is drawn at: its longest side becomes `side` pixels (the
// other keeps the aspect ratio, at least 1). SVGs without a usable size
// (no width/height/viewBox) are drawn square.
static void render_size(RsvgHandle *h, int side, int *w, int *hh) {
    double iw = 0, ih = 0;
    if (!rsvg_handle_get_intrinsic_size_in_pixels(h, &iw, &ih) || !(iw > 0) || !(ih > 0)) {
        gboolean has_vb = FALSE;
        RsvgRectangle vb;
        rsvg_handle_get_intrinsic_dimensions(h, NULL, NULL, NULL, NULL, &has_vb, &vb);
        if (has_vb && vb.width > 0 && vb.height > 0) {
            iw = vb.width;
            ih = vb.height;
        } else {
            iw = ih = 1;
        }
    }
    if (!isfinite(iw) || !isfinite(ih)) iw = ih = 1;
    double s = side / (iw > ih ? iw : ih);
    *w = (int)lround(iw * s);
    *hh = (int)lround(ih * s);
    if (*w < 1) *w = 1;
    if (*hh < 1) *hh = 1;
}

static vlm_status svg_open(const uint8_t *data, size_t size, const char *name, RsvgHandle **out, vlm_error *err) {
    GError *ge = NULL;
    RsvgHandle *h = rsvg_handle_new_from_data(data, size, &ge);
    if (!h) {
        vlm_status st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a valid SVG: %s", name,
                                   ge && ge->message ? ge->message : "librsvg refused it");
        if (ge) g_error_free(ge);
        return st;
    }
    *out = h;
    return VLM_OK;
}

vlm_status vlm_svg_probe(const uint8_t *data, size_t size, const char *name, int side, int *w, int *h,
                         vlm_error *err) {
    RsvgHandle *hd = NULL;
    vlm_status st = svg_open(data, size, name, &hd, err);
    if (st) return st;
    render_size(hd, side, w, h);
    g_object_unref(hd);
    return VLM_OK;
}

// Premultiplied ARGB32 (cairo, native-endian words) -> RGB over bg.
static void argb_to_rgb(const uint8_t *src, int stride, int w, int h, const uint8_t bg[3], uint8_t *dst) {
    for (int y = 0; y < h; y++) {
        const uint32_t *row = (const uint32_t *)(const void *)(src + (size_t)y * stride);
        uint8_t *o = dst + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            uint32_t p = row[x];
            int a = (int)(p >> 24), r = (int)(p >> 16) & 255, g = (int)(p >> 8) & 255, b = (int)p & 255;
            // premultiplied: c + bg * (1 - a)
            o[3 * x] = (uint8_t)(r + (bg[0] * (255 - a) + 127) / 255);
            o[3 * x + 1] = (uint8_t)(g + (bg[1] * (255 - a) + 127) / 255);
            o[3 * x + 2] = (uint8_t)(b + (bg[2] * (255 - a) + 127) / 255);
        }
    }
}

vlm_status vlm_svg_decode(vlm_image *img, const uint8_t *data, size_t size, const char *name, int side,
                          const uint8_t bg[3], vlm_error *err) {
    RsvgHandle *hd = NULL;
    vlm_status st = svg_open(data, size, name, &hd, err);
    if (st) return st;
    int w, h;
    render_size(hd, side, &w, &h);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        g_object_unref(hd);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: cannot make a %dx%d drawing surface", name, w, h);
    }
    cairo_t *cr = cairo_create(surf);
    RsvgRectangle vp = {0, 0, w, h};
    GError *ge = NULL;
    gboolean ok = rsvg_handle_render_document(hd, cr, &vp, &ge);
    cairo_destroy(cr);
    g_object_unref(hd);
    if (!ok) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: SVG cannot be drawn: %s", name,
                        ge && ge->message ? ge->message : "librsvg failed");
        if (ge) g_error_free(ge);
        cairo_surface_destroy(surf);
        return st;
    }
    cairo_surface_flush(surf);
    st = vlm_image_alloc(img, w, h, err);
    if (!st)
        argb_to_rgb(cairo_image_surface_get_data(surf), cairo_image_surface_get_stride(surf), w, h, bg, img->px);
    cairo_surface_destroy(surf);
    if (!st) {
        img->src_format = VLM_IMAGE_SVG;
        img->src_channels = 4;
        img->src_bit_depth = 8;
    }
    return st;
}

// "<svg" after an optional BOM, whitespace, XML declaration, comments and
// DOCTYPE: the root element must be svg, within the first 4 KiB.
int vlm_svg_sniff(const uint8_t *p, size_t size) {
    size_t n = size < 4096 ? size : 4096, i = 0;
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
        if (i >= n || p[i] != '<') return 0;
        if (n - i >= 4 && !memcmp(p + i, "<svg", 4)) return n - i == 4 || !((p[i + 4] | 32) >= 'a' && (p[i + 4] | 32) <= 'z');
        const char *end = NULL;
        if (n - i >= 4 && !memcmp(p + i, "<!--", 4)) end = "-->";
        else if (n - i >= 2 && (p[i + 1] == '?' || p[i + 1] == '!')) end = ">";
        else return 0;
        size_t el = strlen(end), j = i + 2;
        // a DOCTYPE's internal subset [...] may hold '>' (entity declarations)
        while (j + el <= n && memcmp(p + j, end, el)) {
            if (p[i + 1] == '!' && el == 1 && p[j] == '[') {
                while (j < n && p[j] != ']') j++;
                if (j >= n) return 0;
            }
            j++;
        }
        if (j + el > n) return 0;
        i = j + el;
    }
    return 0;
}
