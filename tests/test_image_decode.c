// PNG/JPEG decoding: exact pixels vs PIL's convert("RGB") for every fixture
// mode, alpha compositing, decoding by content, and hostile input (truncated,
// empty, unknown, decompression bombs) giving clear errors.
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "data/image.h"
#include "tests/testutil.h"

#define DIR "tests/fixtures/data/transform/"

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static uint8_t *slurp(const char *path, size_t *n) { return (uint8_t *)tu_read_file(path, n); }

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void test_pil_hashes(void) {
    FILE *f = fopen(tu_src(DIR "decode.tsv"), "r");
    CHECK(f != NULL, "cannot open decode.tsv");
    if (!f) return;
    vlm_image img;
    vlm_image_init(&img);
    char line[512], name[256], mode[32], hash[32];
    int w, h, n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%255s %d %d %31s %31s", name, &w, &h, mode, hash) != 5) continue;
        char path[600];
        snprintf(path, sizeof path, DIR "src/%s", name);
        vlm_error err = {0};
        vlm_status st = vlm_image_load(&img, tu_src(path), NULL, &err);
        CHECK(st == VLM_OK, "%s: %s", name, err.msg);
        if (st) continue;
        CHECK(img.w == w && img.h == h, "%s: %dx%d, PIL says %dx%d", name, img.w, img.h, w, h);
        char got[32];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)fnv1a64(img.px, (size_t)img.w * img.h * 3));
        CHECK(!strcmp(got, hash), "%s (PIL mode %s): pixels differ from PIL convert(\"RGB\") (%s vs %s)", name, mode,
              got, hash);
        n++;
    }
    fclose(f);
    CHECK(n >= 26, "only %d sources", n);
    vlm_image_free(&img);
}

static void test_composite(void) {
    // RGBA with alpha: composite over white differs from drop; fully opaque
    // pixels stay; a palette image with tRNS composites too.
    vlm_decode_opts o;
    vlm_decode_opts_default(&o);
    vlm_image a, b;
    vlm_image_init(&a);
    vlm_image_init(&b);
    vlm_error err = {0};
    const char *names[] = {"rgba_64x48.png", "p_trns_50x37.png", "la_40x30.png", "gray4_trns_27x19.png"};
    for (int k = 0; k < 4; k++) {
        char path[300];
        snprintf(path, sizeof path, DIR "src/%s", names[k]);
        o.alpha = VLM_ALPHA_DROP;
        CHECK(vlm_image_load(&a, tu_src(path), &o, &err) == VLM_OK, "%s", err.msg);
        o.alpha = VLM_ALPHA_COMPOSITE;
        o.background[0] = 255, o.background[1] = 0, o.background[2] = 255;
        CHECK(vlm_image_load(&b, tu_src(path), &o, &err) == VLM_OK, "%s", err.msg);
        CHECK(a.w == b.w && a.h == b.h, "%s: sizes", names[k]);
        size_t n = (size_t)a.w * a.h * 3, differ = 0;
        for (size_t i = 0; i < n; i++) differ += a.px[i] != b.px[i];
        CHECK(differ > 0, "%s: compositing changed nothing", names[k]);
    }
    vlm_image_free(&a);
    vlm_image_free(&b);
}

static void expect_fail(const void *data, size_t n, const char *name, vlm_status want, const char *needle) {
    vlm_image img;
    vlm_image_init(&img);
    vlm_error err = {0};
    vlm_status st = vlm_image_decode(&img, data, n, name, NULL, &err);
    CHECK(st == want, "%s: status %d (%s), want %d", name, st, err.msg, want);
    CHECK(strstr(err.msg, name) != NULL, "%s: error does not name the file: %s", name, err.msg);
    CHECK(strstr(err.msg, needle) != NULL, "%s: error lacks '%s': %s", name, needle, err.msg);
    vlm_image_free(&img);
}

static void test_bad_inputs(void) {
    size_t n;
    uint8_t *png = slurp(tu_src(DIR "src/rgb_200x150.png"), &n);
    CHECK(png != NULL, "fixture");
    if (!png) return;
    // truncated PNG at several points
    size_t cuts[] = {4, 8, 20, 33, 60, n / 2, n - 20};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "trunc%zu.png", cuts[i]);
        expect_fail(png, cuts[i], nm, VLM_ERR_FORMAT, cuts[i] < 8 ? "not a PNG, JPEG or SVG" : "PNG");
    }
    // corrupt IDAT byte -> CRC error
    uint8_t *bad = malloc(n);
    memcpy(bad, png, n);
    bad[n / 2] ^= 0x55;
    expect_fail(bad, n, "flipped.png", VLM_ERR_FORMAT, "corrupt PNG");
    // 100000 x 100000 header, valid CRC: refused before allocating
    uint8_t bomb[8 + 25 + 12 + 12];
    memcpy(bomb, png, 8);
    put32(bomb + 8, 13);
    memcpy(bomb + 12, "IHDR", 4);
    put32(bomb + 16, 100000);
    put32(bomb + 20, 100000);
    bomb[24] = 8, bomb[25] = 2, bomb[26] = 0, bomb[27] = 0, bomb[28] = 0;
    put32(bomb + 29, (uint32_t)crc32(0, bomb + 12, 17));
    memcpy(bomb + 33, "\0\0\0\0IDAT", 8);
    put32(bomb + 41, (uint32_t)crc32(0, bomb + 37, 4));
    memcpy(bomb + 45, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    expect_fail(bomb, sizeof bomb, "bomb.png", VLM_ERR_OOM, "100000x100000");
    vlm_image img;
    vlm_image_init(&img);
    vlm_error err = {0};
    vlm_image_decode(&img, bomb, sizeof bomb, "bomb.png", NULL, &err);
    CHECK(img.cap == 0, "bomb: allocated %zu bytes", img.cap);
    // a raised limit lets the header through (then it fails on missing data, not OOM)
    vlm_decode_opts o;
    vlm_decode_opts_default(&o);
    o.max_pixels = 20000;
    uint8_t *jpg0 = slurp(tu_src(DIR "src/jpeg_baseline_200x150.jpg"), &n);
    CHECK(vlm_image_decode(&img, jpg0, n, "small-limit.jpg", &o, &err) == VLM_ERR_OOM, "limit applies to JPEG");
    CHECK(strstr(err.msg, "200x150") != NULL, "%s", err.msg);
    // probe reads the size without decoding
    int w = 0, h = 0;
    vlm_image_format fmt;
    CHECK(vlm_image_probe(bomb, sizeof bomb, "bomb.png", &w, &h, &fmt, &err) == VLM_OK && w == 100000 &&
              h == 100000 && fmt == VLM_IMAGE_PNG,
          "probe: %s", err.msg);
    free(bad);
    free(png);

    // JPEG: truncated, bomb (SOF patched to 65000 x 65000), garbage after SOI
    size_t jn = n;
    uint8_t *jpg = jpg0;
    expect_fail(jpg, jn / 2, "trunc.jpg", VLM_ERR_FORMAT, "truncated");
    expect_fail(jpg, 100, "trunc100.jpg", VLM_ERR_FORMAT, "corrupt JPEG");
    uint8_t *jb = malloc(jn);
    memcpy(jb, jpg, jn);
    for (size_t i = 2; i + 9 < jn; i++)
        if (jb[i] == 0xFF && jb[i + 1] == 0xC0) {
            jb[i + 5] = 0xFD, jb[i + 6] = 0xE8; // height 65000
            jb[i + 7] = 0xFD, jb[i + 8] = 0xE8; // width 65000
            break;
        }
    expect_fail(jb, jn, "bomb.jpg", VLM_ERR_OOM, "65000x65000");
    uint8_t junk[64] = {0xFF, 0xD8, 0xFF, 0xE0};
    for (int i = 4; i < 64; i++) junk[i] = (uint8_t)(i * 37);
    expect_fail(junk, sizeof junk, "junk.jpg", VLM_ERR_FORMAT, "corrupt JPEG");
    free(jb);
    free(jpg);

    // zero bytes, unknown format
    expect_fail("", 0, "empty.png", VLM_ERR_FORMAT, "empty file");
    expect_fail("GIF89a......", 12, "anim.gif", VLM_ERR_FORMAT, "not a PNG, JPEG or SVG");
    // a JPEG named .png decodes by content
    CHECK(vlm_image_load(&img, tu_src(DIR "src/jpeg_named.png"), NULL, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.src_format == VLM_IMAGE_JPEG && img.w == 52 && img.h == 39, "jpeg_named.png decoded as %d", img.src_format);
    // missing file
    CHECK(vlm_image_load(&img, "/nonexistent/x.png", NULL, &err) == VLM_ERR_IO && strstr(err.msg, "/nonexistent/x.png"),
          "missing file: %s", err.msg);
    vlm_image_free(&img);
}

static void test_write_roundtrip(void) {
    int w = 13, h = 7;
    uint8_t px[13 * 7 * 3];
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(i * 7);
    vlm_error err = {0};
    const char *path = "test_image_roundtrip.png";
    CHECK(vlm_image_write_png(path, px, w, h, &err) == VLM_OK, "%s", err.msg);
    vlm_image img;
    vlm_image_init(&img);
    CHECK(vlm_image_load(&img, path, NULL, &err) == VLM_OK, "%s", err.msg);
    CHECK(img.w == w && img.h == h && !memcmp(img.px, px, sizeof px), "roundtrip differs");
    vlm_image_free(&img);
    remove(path);
    CHECK(vlm_image_write_png("/nonexistent/dir/x.png", px, w, h, &err) == VLM_ERR_IO, "write to bad dir");
}

int main(void) {
    test_pil_hashes();
    test_composite();
    test_bad_inputs();
    test_write_roundtrip();
    return tu_done("test_image_decode");
}
