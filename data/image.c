// PNG/JPEG decoding to 8-bit RGB with PIL-compatible conversions, and a PNG
// writer. libpng/libjpeg errors are caught with setjmp/longjmp and returned
// as vlm_error; their warnings are silenced (nothing is ever printed).
#include "data/image.h"
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
// jpeglib.h needs stdio.h first
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include "data/svg_internal.h"
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

void vlm_decode_opts_default(vlm_decode_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_pixels = VLM_IMAGE_DEFAULT_MAX_PIXELS;
    o->alpha = VLM_ALPHA_DROP;
    o->background[0] = o->background[1] = o->background[2] = 255;
}

void vlm_image_init(vlm_image *img) { memset(img, 0, sizeof *img); }

void vlm_image_free(vlm_image *img) {
    free(img->px);
    free(img->arena);
    memset(img, 0, sizeof *img);
}

static vlm_status ensure_cap(vlm_image *img, size_t bytes, vlm_error *err) {
    if (bytes <= img->cap) return VLM_OK;
    size_t cap = img->cap ? img->cap : 4096;
    while (cap < bytes) cap *= 2;
    uint8_t *p = realloc(img->px, cap);
    if (!p) return vlm_errorf(err, VLM_ERR_OOM, "image buffer: cannot allocate %zu bytes", cap);
    img->px = p;
    img->cap = cap;
    return VLM_OK;
}

vlm_status vlm_image_alloc(vlm_image *img, int w, int h, vlm_error *err) {
    if (w <= 0 || h <= 0) return vlm_errorf(err, VLM_ERR_ARG, "image: bad size %dx%d", w, h);
    vlm_status st = ensure_cap(img, (size_t)w * (size_t)h * 3, err);
    if (st) return st;
    img->w = w;
    img->h = h;
    return VLM_OK;
}

vlm_image_format vlm_image_sniff(const void *data, size_t size) {
    const uint8_t *p = data;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 8 && !memcmp(p, png_sig, 8)) return VLM_IMAGE_PNG;
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return VLM_IMAGE_JPEG;
    if (vlm_svg_sniff(p, size)) return VLM_IMAGE_SVG;
    return VLM_IMAGE_UNKNOWN;
}

const char *vlm_image_format_ext(vlm_image_format f) {
    return f == VLM_IMAGE_PNG ? "png" : f == VLM_IMAGE_JPEG ? "jpg" : f == VLM_IMAGE_SVG ? "svg" : "bin";
}

static vlm_status check_pixels(const char *name, int64_t w, int64_t h, const vlm_decode_opts *o,
                               vlm_error *err) {
    if (w <= 0 || h <= 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: bad image size %lldx%lld", name,
                                            (long long)w, (long long)h);
    if (o->max_pixels > 0 && w * h > o->max_pixels)
        return vlm_errorf(err, VLM_ERR_OOM,
                          "%s: image is %lldx%lld = %lld pixels, over the limit of %lld "
                          "(decompression-bomb guard; raise max_pixels to allow it)",
                          name, (long long)w, (long long)h, (long long)(w * h), (long long)o->max_pixels);
    return VLM_OK;
}

// Converts n pixels of c interleaved 8-bit channels (1 gray, 2 gray+alpha,
// 3 RGB, 4 RGBA) in place into RGB. c < 3 grows the data, so it walks
// backwards; c == 4 shrinks it and walks forwards.
static void to_rgb_inplace(uint8_t *p, size_t n, int c, const vlm_decode_opts *o) {
    int comp = o->alpha == VLM_ALPHA_COMPOSITE;
    const int bg0 = o->background[0], bg1 = o->background[1], bg2 = o->background[2];
#define BLEND(v, a, bg) (uint8_t)(((v) * (a) + (bg) * (255 - (a)) + 127) / 255)
    if (c == 1) {
        for (size_t i = n; i-- > 0;) {
            uint8_t g = p[i];
            p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = g;
        }
    } else if (c == 2) {
        for (size_t i = n; i-- > 0;) {
            int g = p[2 * i], a = p[2 * i + 1];
            if (comp) {
                p[3 * i] = BLEND(g, a, bg0);
                p[3 * i + 1] = BLEND(g, a, bg1);
                p[3 * i + 2] = BLEND(g, a, bg2);
            } else {
                p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = (uint8_t)g;
            }
        }
    } else if (c == 4) {
        for (size_t i = 0; i < n; i++) {
            int r = p[4 * i], g = p[4 * i + 1], b = p[4 * i + 2], a = p[4 * i + 3];
            if (comp) {
                r = BLEND(r, a, bg0);
                g = BLEND(g, a, bg1);
                b = BLEND(b, a, bg2);
            }
            p[3 * i] = (uint8_t)r;
            p[3 * i + 1] = (uint8_t)g;
            p[3 * i + 2] = (uint8_t)b;
        }
    }
#undef BLEND
}

// ---------------------------------------------------------------- PNG

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char msg[200];
} png_src;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->size - s->pos) {
        snprintf(s->msg, sizeof s->msg, "truncated (file ends at byte %zu)", s->size);
        png_longjmp(png, 1);
    }
    memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

// libpng allocations: bump-allocated from img's arena while it has room,
// malloc otherwise (and the arena grows after the decode).
static png_voidp png_arena_malloc(png_structp png, png_alloc_size_t n) {
    vlm_image *img = png_get_mem_ptr(png);
    if (img) {
        size_t a = ((size_t)n + 15) & ~(size_t)15;
        if (a >= n && img->arena_used + a <= img->arena_cap) {
            void *p = img->arena + img->arena_used;
            img->arena_used += a;
            return p;
        }
        img->arena_want = img->arena_used + a;
    }
    return malloc(n ? n : 1);
}

static void png_arena_free(png_structp png, png_voidp p) {
    vlm_image *img = png_get_mem_ptr(png);
    uintptr_t q = (uintptr_t)p, a0 = img ? (uintptr_t)img->arena : 0;
    if (img && img->arena && q >= a0 && q < a0 + img->arena_cap) return;
    free(p);
}

// After a decode nothing lives in the arena: grow it to what was needed.
static void arena_settle(vlm_image *img) {
    if (!img) return;
    if (img->arena_want > img->arena_cap) {
        size_t c = img->arena_want + img->arena_want / 4 + 4096;
        uint8_t *p = realloc(img->arena, c);
        if (p) {
            img->arena = p;
            img->arena_cap = c;
        }
    }
    img->arena_used = img->arena_want = 0;
}

// header_only: fills w/h only. Otherwise decodes into img as RGB.
static vlm_status decode_png(vlm_image *img, const uint8_t *data, size_t size, const char *name,
                             const vlm_decode_opts *o, int header_only, int *pw, int *ph, vlm_error *err) {
    png_src src = {data, size, 0, {0}};
    if (img) img->arena_used = img->arena_want = 0;
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &src, png_err_fn, png_warn_fn, img,
                                               png_arena_malloc, png_arena_free);
    if (!png) return vlm_errorf(err, VLM_ERR_OOM, "%s: cannot create PNG decoder", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        arena_settle(img);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: cannot create PNG decoder", name);
    }
    // Everything below that can fail longjmps here; only `png`, `info`, `img`
    // and `src` (not modified after setjmp in this frame) are touched afterwards.
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        arena_settle(img);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: corrupt PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    vlm_status st = check_pixels(name, w, h, o, err);
    if (st || header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        arena_settle(img);
        if (pw) *pw = (int)w;
        if (ph) *ph = (int)h;
        return st;
    }
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    img->src_format = VLM_IMAGE_PNG;
    img->src_bit_depth = depth;
    img->src_channels = ctype == PNG_COLOR_TYPE_GRAY         ? 1
                        : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                        : ctype == PNG_COLOR_TYPE_RGB        ? 3
                        : ctype == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                                                             : 3 + has_trns;
    // PIL reads 16-bit samples by their high byte (rawmodes "RGB;16B" etc.):
    // png_set_strip_16 does the same (png_set_scale_16 would round instead).
    if (depth == 16) png_set_strip_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png); // + alpha if tRNS
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    // Single-colour tRNS of gray/RGB images only matters when compositing:
    // PIL's convert("RGB") ignores it.
    if (has_trns && o->alpha == VLM_ALPHA_COMPOSITE && ctype != PNG_COLOR_TYPE_PALETTE)
        png_set_tRNS_to_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (c < 1 || c > 4 || rowbytes != (size_t)w * (size_t)c) {
        snprintf(src.msg, sizeof src.msg, "unsupported layout (%d channels, %zu bytes/row)", c, rowbytes);
        png_longjmp(png, 1);
    }
    size_t need = (size_t)w * h * (size_t)(c > 3 ? c : 3);
    if (ensure_cap(img, need, err)) {
        png_destroy_read_struct(&png, &info, NULL);
        arena_settle(img);
        return vlm_error_prefix(err, "%s", name);
    }
    // Rows are read straight into the pixel buffer (c bytes per pixel), then
    // widened/narrowed to RGB in place. Interlaced images take several passes
    // over the same rows, which png_read_row combines.
    for (int p = 0; p < passes; p++)
        for (png_uint_32 y = 0; y < h; y++) png_read_row(png, img->px + (size_t)y * rowbytes, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    arena_settle(img);
    to_rgb_inplace(img->px, (size_t)w * h, c, o);
    img->w = (int)w;
    img->h = (int)h;
    return VLM_OK;
}

// ---------------------------------------------------------------- JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_error_exit_fn(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

// Warnings are silent, as in PIL, except a premature end of data: libjpeg
// would pad the image with grey, PIL reports "image file is truncated".
static void jpeg_emit_fn(j_common_ptr c, int level) {
    jpeg_err *e = (jpeg_err *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(e->msg, sizeof e->msg, "truncated (premature end of data)");
        longjmp(e->jb, 1);
    }
    if (level < 0) c->err->num_warnings++;
}

static void jpeg_output_fn(j_common_ptr c) { (void)c; }

static vlm_status decode_jpeg(vlm_image *img, const uint8_t *data, size_t size, const char *name,
                              const vlm_decode_opts *o, int header_only, int *pw, int *ph, vlm_error *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err je;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_error_exit_fn;
    je.pub.emit_message = jpeg_emit_fn;
    je.pub.output_message = jpeg_output_fn;
    je.msg[0] = 0;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: corrupt JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int64_t w = cinfo.image_width, h = cinfo.image_height;
    vlm_status st = check_pixels(name, w, h, o, err);
    if (st || header_only) {
        jpeg_destroy_decompress(&cinfo);
        if (pw) *pw = (int)w;
        if (ph) *ph = (int)h;
        return st;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    img->src_format = VLM_IMAGE_JPEG;
    img->src_bit_depth = 8;
    img->src_channels = cinfo.num_components;
    // Same decoder settings as PIL (libjpeg defaults: islow DCT, fancy upsampling).
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int c = cinfo.output_components;
    if ((cmyk && c != 4) || (!cmyk && c != 3)) {
        snprintf(je.msg, sizeof je.msg, "unexpected %d output components", c);
        longjmp(je.jb, 1);
    }
    if (cinfo.output_width != (JDIMENSION)w || cinfo.output_height != (JDIMENSION)h) {
        snprintf(je.msg, sizeof je.msg, "output size differs from header");
        longjmp(je.jb, 1);
    }
    if (ensure_cap(img, (size_t)w * h * (size_t)c, err)) {
        jpeg_destroy_decompress(&cinfo);
        return vlm_error_prefix(err, "%s", name);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = img->px + (size_t)cinfo.output_scanline * (size_t)w * (size_t)c;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (cmyk) {
        // PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with
        // cmyk2rgb: R = nk - nk*C/255 (rounded MULDIV255), nk = 255 - K. With
        // the stored (inverted) samples s: C = 255 - s_c, nk = s_k.
        uint8_t *p = img->px;
        size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++) {
            int nk = p[4 * i + 3];
            for (int k = 0; k < 3; k++) {
                int cv = 255 - p[4 * i + k];
                int t = cv * nk + 128;
                int v = nk - (((t >> 8) + t) >> 8);
                p[3 * i + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    img->w = (int)w;
    img->h = (int)h;
    return VLM_OK;
}

// ---------------------------------------------------------------- API

static vlm_status unknown_format(const uint8_t *p, size_t size, const char *name, vlm_error *err) {
    if (size == 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: empty file (0 bytes)", name);
    char hex[3 * 8 + 1] = {0};
    for (size_t i = 0; i < size && i < 8; i++) snprintf(hex + 3 * i, 4, "%02x ", p[i]);
    return vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a PNG, JPEG or SVG file (%zu bytes, starts %s)", name, size, hex);
}

vlm_status vlm_image_probe(const void *data, size_t size, const char *name, int *w, int *h,
                           vlm_image_format *fmt, vlm_error *err) {
    vlm_decode_opts o;
    vlm_decode_opts_default(&o);
    o.max_pixels = 0;
    vlm_image_format f = vlm_image_sniff(data, size);
    if (fmt) *fmt = f;
    if (f == VLM_IMAGE_PNG) return decode_png(NULL, data, size, name, &o, 1, w, h, err);
    if (f == VLM_IMAGE_JPEG) return decode_jpeg(NULL, data, size, name, &o, 1, w, h, err);
    if (f == VLM_IMAGE_SVG) return vlm_svg_probe(data, size, name, VLM_SVG_DEFAULT_SIZE, w, h, err);
    return unknown_format(data, size, name, err);
}

vlm_status vlm_image_decode(vlm_image *img, const void *data, size_t size, const char *name,
                            const vlm_decode_opts *opts, vlm_error *err) {
    vlm_decode_opts def;
    if (!opts) {
        vlm_decode_opts_default(&def);
        opts = &def;
    }
    if (!name) name = "<memory>";
    switch (vlm_image_sniff(data, size)) {
    case VLM_IMAGE_PNG: return decode_png(img, data, size, name, opts, 0, NULL, NULL, err);
    case VLM_IMAGE_JPEG: return decode_jpeg(img, data, size, name, opts, 0, NULL, NULL, err);
    case VLM_IMAGE_SVG: {
        static const uint8_t white[3] = {255, 255, 255};
        int side = opts->svg_size > 0 ? opts->svg_size : VLM_SVG_DEFAULT_SIZE;
        vlm_status st = check_pixels(name, side, side, opts, err);
        if (st) return st;
        return vlm_svg_decode(img, data, size, name, side,
                              opts->alpha == VLM_ALPHA_COMPOSITE ? opts->background : white, err);
    }
    default: return unknown_format(data, size, name, err);
    }
}

vlm_status vlm_file_read(const char *path, uint8_t **buf, size_t *cap, size_t *size, size_t max_bytes,
                         vlm_error *err) {
    *size = 0;
    // open/read rather than stdio: nothing is allocated per file
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return vlm_errorf(err, VLM_ERR_IO, "%s: not a regular file", path);
    }
    if (max_bytes && (uint64_t)sb.st_size > max_bytes) {
        close(fd);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: file is %lld bytes, over the limit of %zu", path,
                          (long long)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size;
    if (n + 1 > *cap) {
        size_t c = *cap ? *cap : 65536;
        while (c < n + 1) c *= 2;
        uint8_t *p = realloc(*buf, c);
        if (!p) {
            close(fd);
            return vlm_errorf(err, VLM_ERR_OOM, "%s: cannot allocate %zu bytes", path, c);
        }
        *buf = p;
        *cap = c;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, *buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (got != n) return vlm_errorf(err, VLM_ERR_IO, "%s: read failed (%zu of %zu bytes): %s", path, got, n, strerror(e));
    (*buf)[n] = 0;
    *size = n;
    return VLM_OK;
}

vlm_status vlm_image_load(vlm_image *img, const char *path, const vlm_decode_opts *opts, vlm_error *err) {
    uint8_t *buf = NULL;
    size_t cap = 0, size = 0;
    vlm_status st = vlm_file_read(path, &buf, &cap, &size, (size_t)1 << 31, err);
    if (!st) st = vlm_image_decode(img, buf, size, path, opts, err);
    free(buf);
    return st;
}

typedef struct {
    uint8_t *buf;
    size_t len, cap;
    int oom;
    char msg[200];
} png_sink;

static void png_write_mem(png_structp png, png_bytep data, png_size_t n) {
    png_sink *s = png_get_io_ptr(png);
    if (s->len + n > s->cap) {
        size_t c = s->cap ? s->cap : 4096;
        while (c < s->len + n) c *= 2;
        uint8_t *p = realloc(s->buf, c);
        if (!p) {
            s->oom = 1;
            snprintf(s->msg, sizeof s->msg, "out of memory");
            png_longjmp(png, 1);
        }
        s->buf = p;
        s->cap = c;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
}

static void png_flush_mem(png_structp png) { (void)png; }

static void png_sink_err_fn(png_structp png, png_const_charp msg) {
    png_sink *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

vlm_status vlm_image_encode_png(const uint8_t *px, int w, int h, int channels, uint8_t **out, size_t *size,
                                vlm_error *err) {
    *out = NULL;
    *size = 0;
    if (w <= 0 || h <= 0 || !px || (channels != 1 && channels != 3))
        return vlm_errorf(err, VLM_ERR_ARG, "encode PNG: bad image %dx%dx%d", w, h, channels);
    png_sink sink = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_sink_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        return vlm_errorf(err, VLM_ERR_OOM, "encode PNG: cannot create encoder");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(sink.buf);
        return vlm_errorf(err, sink.oom ? VLM_ERR_OOM : VLM_ERR_FORMAT, "encode PNG: %s", sink.msg);
    }
    png_set_write_fn(png, &sink, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(px + (size_t)y * w * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = sink.buf;
    *size = sink.len;
    return VLM_OK;
}

vlm_status vlm_image_write_png(const char *path, const uint8_t *rgb, int w, int h, vlm_error *err) {
    uint8_t *buf;
    size_t n;
    vlm_status st = vlm_image_encode_png(rgb, w, h, 3, &buf, &n, err);
    if (st) return vlm_error_prefix(err, "%s", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    size_t put = fwrite(buf, 1, n, f);
    free(buf);
    if (fclose(f) != 0 || put != n) return vlm_errorf(err, VLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return VLM_OK;
}
