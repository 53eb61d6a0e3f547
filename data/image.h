// Image decoding (PNG via libpng, JPEG via libjpeg-turbo, SVG drawn by librsvg)
// into 8-bit RGB, and a PNG writer. Decoding goes by content (magic bytes, an
// <svg> root), never by file extension; PNG/JPEG match PIL's
// `Image.open(f).convert("RGB")` pixel for pixel.
#ifndef VLM_DATA_IMAGE_H
#define VLM_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

// PIL's Image.MAX_IMAGE_PIXELS: larger images are refused before any pixel
// buffer is allocated (decompression-bomb guard).
#define VLM_IMAGE_DEFAULT_MAX_PIXELS 89478485LL

typedef enum {
    VLM_IMAGE_UNKNOWN = 0,
    VLM_IMAGE_PNG,
    VLM_IMAGE_JPEG,
    VLM_IMAGE_SVG,
} vlm_image_format;

#define VLM_SVG_DEFAULT_SIZE 64 // SVG longest side in pixels when decode opts say 0

typedef enum {
    VLM_ALPHA_DROP = 0,   // like PIL convert("RGB"): alpha/tRNS ignored, colour kept
    VLM_ALPHA_COMPOSITE,  // blend over opts.background: c*a + bg*(1-a), rounded
} vlm_alpha_mode;

typedef struct {
    int64_t max_pixels;      // refuse w*h above this (<= 0: no limit)
    vlm_alpha_mode alpha;
    uint8_t background[3];   // RGB, used with VLM_ALPHA_COMPOSITE
    int svg_size;            // SVG: drawn with its longest side this many pixels (0: 64).
                             // SVG is always composited: over `background` with
                             // VLM_ALPHA_COMPOSITE, else over white.
} vlm_decode_opts;

// An 8-bit RGB image. The pixel buffer is reused across decodes (grows only),
// so a worker that decodes many images allocates nothing in steady state.
typedef struct {
    int w, h;
    uint8_t *px;        // [h, w, 3] RGB, row-major, no padding
    size_t cap;         // bytes allocated in px
    vlm_image_format src_format;
    int src_channels;   // channels in the file (1 gray, 2 gray+alpha, 3, 4; palette: 3 or 4)
    int src_bit_depth;  // bits per sample in the file
    // libpng's working memory for one decode comes from this arena (reset
    // per image, grown to the high-water mark), so PNG decoding stops calling
    // malloc once warm. libjpeg keeps its own allocator.
    uint8_t *arena;
    size_t arena_cap, arena_used, arena_want;
} vlm_image;

void vlm_decode_opts_default(vlm_decode_opts *o);
void vlm_image_init(vlm_image *img);
void vlm_image_free(vlm_image *img);
// Makes px hold at least w*h*3 bytes and sets w, h.
vlm_status vlm_image_alloc(vlm_image *img, int w, int h, vlm_error *err);

// Format from the first bytes (PNG signature, JPEG SOI marker, an <svg> root
// element after optional XML declaration, comments and DOCTYPE).
vlm_image_format vlm_image_sniff(const void *data, size_t size);
const char *vlm_image_format_ext(vlm_image_format f); // "png", "jpg", "svg" or "bin"

// Reads only the header: dimensions and format (no pixel decode).
vlm_status vlm_image_probe(const void *data, size_t size, const char *name, int *w, int *h,
                           vlm_image_format *fmt, vlm_error *err);

// Decodes an in-memory PNG/JPEG/SVG into img (RGB). `name` (a path) is used in
// error messages. opts may be NULL (defaults). Corrupt, truncated, unknown or
// oversized input returns VLM_ERR_FORMAT (VLM_ERR_OOM for the pixel limit)
// and never prints, aborts or exits.
vlm_status vlm_image_decode(vlm_image *img, const void *data, size_t size, const char *name,
                            const vlm_decode_opts *opts, vlm_error *err);

// Reads a whole file into *buf (grown with realloc as needed; *cap tracks
// its allocation), *size = bytes read. Refuses files larger than max_bytes.
vlm_status vlm_file_read(const char *path, uint8_t **buf, size_t *cap, size_t *size, size_t max_bytes,
                         vlm_error *err);

// Convenience: vlm_file_read + vlm_image_decode (allocates a temporary buffer).
vlm_status vlm_image_load(vlm_image *img, const char *path, const vlm_decode_opts *opts, vlm_error *err);

// Encodes 8-bit gray (channels 1) or RGB (channels 3) pixels [h, w, channels]
// as PNG into *out (malloc'd; caller frees), *size bytes.
vlm_status vlm_image_encode_png(const uint8_t *px, int w, int h, int channels, uint8_t **out, size_t *size,
                                vlm_error *err);
// Writes 8-bit RGB ([h, w, 3]) as a PNG file.
vlm_status vlm_image_write_png(const char *path, const uint8_t *rgb, int w, int h, vlm_error *err);

#endif
