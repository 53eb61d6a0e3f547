// SVG decoding (librsvg): sniffing by content, the drawn size (longest side =
// svg_size, aspect kept), exact pixels of flat shapes over white and over a
// chosen background, and broken or hostile SVG giving clear errors, never a
// crash (the suite also runs under ASan).
#include <stdlib.h>
#include <string.h>
#include "data/image.h"
#include "tests/testutil.h"

#define DIR "tests/fixtures/data/svg/"

static const uint8_t *px(const vlm_image *im, int x, int y) { return im->px + ((size_t)y * im->w + x) * 3; }

static int decode_file(vlm_image *img, const char *name, const vlm_decode_opts *o, vlm_error *err) {
    char path[256];
    snprintf(path, sizeof path, DIR "%s", name);
    size_t n = 0;
    uint8_t *d = (uint8_t *)tu_read_file(tu_src(path), &n);
    CHECK(d != NULL, "cannot read %s", path);
    if (!d) return -1;
    CHECK(vlm_image_sniff(d, n) == VLM_IMAGE_SVG || strstr(name, "html"), "%s not sniffed as SVG", name);
    int st = vlm_image_decode(img, d, n, name, o, err);
    free(d);
    return st;
}

static void test_pixels(void) {
    vlm_image img;
    vlm_image_init(&img);
    vlm_error err = {0};
    vlm_decode_opts o;
    vlm_decode_opts_default(&o);
    // a red disc (#d32f2f) on a 24x24 canvas, drawn at the default 64 px
    CHECK(decode_file(&img, "circle.svg", &o, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.w == VLM_SVG_DEFAULT_SIZE && img.h == VLM_SVG_DEFAULT_SIZE, "%dx%d", img.w, img.h);
    CHECK(img.src_format == VLM_IMAGE_SVG, "format %d", img.src_format);
    const uint8_t *c = px(&img, 32, 32), *k = px(&img, 1, 1);
    CHECK(c[0] == 211 && c[1] == 47 && c[2] == 47, "centre %d,%d,%d", c[0], c[1], c[2]);
    CHECK(k[0] == 255 && k[1] == 255 && k[2] == 255, "corner %d,%d,%d (transparent goes over white)", k[0], k[1], k[2]);
    // over a chosen background, at 32 px
    o.alpha = VLM_ALPHA_COMPOSITE;
    o.background[0] = 0, o.background[1] = 0, o.background[2] = 255;
    o.svg_size = 32;
    CHECK(decode_file(&img, "circle.svg", &o, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.w == 32 && img.h == 32, "%dx%d", img.w, img.h);
    k = px(&img, 0, 0);
    CHECK(k[0] == 0 && k[1] == 0 && k[2] == 255, "corner %d,%d,%d over blue", k[0], k[1], k[2]);
    // XML declaration, comment and DOCTYPE before the root; 2:1 viewBox: 64x32;
    // left half opaque black, right half 50% blue over white
    vlm_decode_opts_default(&o);
    CHECK(decode_file(&img, "wide_decl.svg", &o, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.w == 64 && img.h == 32, "%dx%d", img.w, img.h);
    const uint8_t *l = px(&img, 10, 16), *r = px(&img, 50, 16);
    CHECK(l[0] == 0 && l[1] == 0 && l[2] == 0, "left %d,%d,%d", l[0], l[1], l[2]);
    CHECK(abs(r[0] - 127) <= 1 && abs(r[1] - 127) <= 1 && r[2] == 255, "right %d,%d,%d", r[0], r[1], r[2]);
    // no width, height or viewBox: drawn square
    CHECK(decode_file(&img, "nosize.svg", &o, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.w == 64 && img.h == 64, "%dx%d", img.w, img.h);
    // an absurd aspect ratio stays within the size: 64 x 1
    CHECK(decode_file(&img, "huge.svg", &o, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.w == 64 && img.h == 1, "%dx%d", img.w, img.h);
    // references to local files draw nothing from them (and do not fail the image)
    vlm_status st = decode_file(&img, "external.svg", &o, &err);
    CHECK(st == VLM_OK || st == VLM_ERR_FORMAT, "external: %d %s", st, err.msg);
    int w = 0, h = 0;
    vlm_image_format f;
    size_t n;
    uint8_t *d = (uint8_t *)tu_read_file(tu_src(DIR "wide_decl.svg"), &n);
    CHECK(d && vlm_image_probe(d, n, "wide", &w, &h, &f, &err) == VLM_OK && f == VLM_IMAGE_SVG && w == 64 && h == 32,
          "probe %dx%d: %s", w, h, err.msg);
    free(d);
    vlm_image_free(&img);
}

static void expect_error(const char *name, const char *needle) {
    vlm_image img;
    vlm_image_init(&img);
    vlm_error err = {0};
    vlm_status st = decode_file(&img, name, NULL, &err);
    CHECK(st == VLM_ERR_FORMAT, "%s: status %d (%s)", name, st, err.msg);
    CHECK(strstr(err.msg, name) && strstr(err.msg, needle), "%s: message '%s' lacks '%s'", name, err.msg, needle);
    vlm_image_free(&img);
}

static void test_broken(void) {
    expect_error("truncated.svg", "SVG");
    expect_error("mismatched.svg", "SVG");
    expect_error("entity.svg", "SVG");              // billion-laughs entities: refused by the parser
    expect_error("html.svg", "not a PNG, JPEG or SVG"); // the root must be <svg>
    // sniffing: the root element's name must be exactly svg
    CHECK(vlm_image_sniff("<svgx/>", 7) == VLM_IMAGE_UNKNOWN, "<svgx> sniffed as SVG");
    CHECK(vlm_image_sniff("\xEF\xBB\xBF  <svg/>", 12) == VLM_IMAGE_SVG, "BOM + <svg/> not SVG");
    CHECK(vlm_image_sniff("<!-- unterminated", 17) == VLM_IMAGE_UNKNOWN, "unterminated comment");
    // every prefix of a valid SVG: an error or an image, never a crash
    size_t n;
    uint8_t *d = (uint8_t *)tu_read_file(tu_src(DIR "wide_decl.svg"), &n);
    vlm_image img;
    vlm_image_init(&img);
    int fails = 0;
    for (size_t k = 0; d && k < n; k += 7) {
        vlm_error err = {0};
        fails += vlm_image_decode(&img, d, k, "cut.svg", NULL, &err) != VLM_OK;
    }
    CHECK(fails > 10, "only %d of the cut SVGs failed", fails);
    free(d);
    vlm_image_free(&img);
}

int main(void) {
    test_pixels();
    test_broken();
    return tu_done("test_svg");
}
