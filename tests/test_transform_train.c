// Train-time augmentation: RandomResizedCrop geometry (the algorithm of
// torchvision's RandomResizedCrop.get_params, incl. the centre-crop fallback,
// checked against its definition here: there is no torchvision fixture),
// reproducible draws from (seed, epoch, index), flip, grayscale and
// colour-jitter formulas.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "data/transform.h"
#include "tests/testutil.h"

static void fill(vlm_image *img, int w, int h) {
    vlm_error err = {0};
    CHECK(vlm_image_alloc(img, w, h, &err) == VLM_OK, "%s", err.msg);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            p[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            p[2] = (uint8_t)((x * 7 + y * 13) & 255);
        }
}

static void unnormalize(const vlm_transform *t, float *x, int S) {
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S * S; i++) x[c * S * S + i] = x[c * S * S + i] * t->std[c] + t->mean[c];
}

static void test_draws(void) {
    vlm_transform t;
    vlm_transform_init(&t, 32);
    vlm_rng r1, r2, r3;
    vlm_augment_params a, b, c;
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int w = 50 + i % 10, h = 50 + (i * 7) % 10; // aspect inside 3/4..4/3: no fallback
        vlm_transform_rng(&r1, 5, 2, (uint64_t)i);
        vlm_transform_rng(&r2, 5, 2, (uint64_t)i);
        vlm_transform_rng(&r3, 5, 3, (uint64_t)i);
        vlm_transform_draw(&t, w, h, &r1, &a);
        vlm_transform_draw(&t, w, h, &r2, &b);
        vlm_transform_draw(&t, w, h, &r3, &c);
        CHECK(!memcmp(&a, &b, sizeof a), "same (seed, epoch, index) gave different draws");
        differ += memcmp(&a, &c, sizeof a) != 0;
        CHECK(a.crop_x >= 0 && a.crop_y >= 0 && a.crop_w >= 1 && a.crop_h >= 1 && a.crop_x + a.crop_w <= w &&
                  a.crop_y + a.crop_h <= h,
              "crop (%d,%d,%d,%d) outside %dx%d", a.crop_x, a.crop_y, a.crop_w, a.crop_h, w, h);
        double area = (double)a.crop_w * a.crop_h / ((double)w * h);
        CHECK(area > 0.8 && area <= 1.1, "area fraction %.3f", area);
        CHECK(!a.flip && !a.jitter && !a.gray, "augmentations off by default");
    }
    CHECK(differ > 150, "epochs give the same draws (%d differ)", differ);
    // extreme aspect ratio: the 10 tries fail, centre-crop fallback
    vlm_transform_rng(&r1, 1, 0, 0);
    vlm_transform_draw(&t, 400, 10, &r1, &a);
    CHECK(a.crop_h == 10 && a.crop_w == 13 && a.crop_x == (400 - 13) / 2 && a.crop_y == 0, "fallback (%d,%d,%d,%d)",
          a.crop_x, a.crop_y, a.crop_w, a.crop_h);
    vlm_transform_draw(&t, 2, 300, &r1, &a);
    CHECK(a.crop_w == 2 && a.crop_h == 3 && a.crop_y == (300 - 3) / 2, "fallback tall (%d,%d)", a.crop_w, a.crop_h);
}

static void test_apply(void) {
    const int S = 24;
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_image img;
    vlm_image_init(&img);
    fill(&img, S, S);
    vlm_transform_scratch s;
    vlm_transform_scratch_init(&s);
    vlm_error err = {0};
    size_t n = (size_t)3 * S * S;
    float *ev = malloc(n * sizeof(float)), *tr = malloc(n * sizeof(float)), *fl = malloc(n * sizeof(float));
    // whole-image crop at the output size = eval transform exactly
    vlm_augment_params p = {.crop_x = 0, .crop_y = 0, .crop_w = S, .crop_h = S, .b = 1, .c = 1, .s = 1};
    CHECK(vlm_transform_eval(&t, &img, ev, &s, &err) == VLM_OK, "%s", err.msg);
    CHECK(vlm_transform_apply(&t, &img, &p, tr, &s, &err) == VLM_OK, "%s", err.msg);
    CHECK(!memcmp(ev, tr, n * sizeof(float)), "identity crop != eval");
    // flip mirrors
    p.flip = 1;
    CHECK(vlm_transform_apply(&t, &img, &p, fl, &s, &err) == VLM_OK, "%s", err.msg);
    int mirrored = 1;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                mirrored &= fl[(c * S + y) * S + x] == tr[(c * S + y) * S + (S - 1 - x)];
    CHECK(mirrored, "flip is not a mirror");
    p.flip = 0;
    // grayscale: equal channels, 0.2989 R + 0.587 G + 0.114 B
    p.gray = 1;
    CHECK(vlm_transform_apply(&t, &img, &p, fl, &s, &err) == VLM_OK, "%s", err.msg);
    unnormalize(&t, fl, S);
    unnormalize(&t, tr, S);
    double md = 0;
    for (int i = 0; i < S * S; i++) {
        float g = 0.2989f * tr[i] + 0.587f * tr[S * S + i] + 0.114f * tr[2 * S * S + i];
        md = fmax(md, fabs(fl[i] - g) + fabs(fl[S * S + i] - g) + fabs(fl[2 * S * S + i] - g));
    }
    CHECK(md < 1e-5, "grayscale off by %g", md);
    p.gray = 0;
    // brightness 0.5 halves; contrast 0 gives the mean gray everywhere
    p.jitter = 1;
    p.order[0] = 0, p.order[1] = 1, p.order[2] = 2, p.order[3] = 3;
    p.b = 0.5f;
    CHECK(vlm_transform_apply(&t, &img, &p, fl, &s, &err) == VLM_OK, "%s", err.msg);
    unnormalize(&t, fl, S);
    md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs(fl[i] - 0.5f * tr[i]));
    CHECK(md < 1e-5, "brightness off by %g", md);
    p.b = 1, p.c = 0;
    CHECK(vlm_transform_apply(&t, &img, &p, fl, &s, &err) == VLM_OK, "%s", err.msg);
    unnormalize(&t, fl, S);
    md = 0;
    for (size_t i = 1; i < n; i++) md = fmax(md, fabs(fl[i] - fl[0]));
    CHECK(md < 1e-5, "contrast 0 is not flat (%g)", md);
    // hue: +1/3 turns pure red into pure green; a full turn is the identity
    p.c = 1;
    uint8_t *px = img.px;
    for (int i = 0; i < S * S; i++) px[3 * i] = 255, px[3 * i + 1] = 0, px[3 * i + 2] = 0;
    p.h = 1.0f / 3.0f;
    CHECK(vlm_transform_apply(&t, &img, &p, fl, &s, &err) == VLM_OK, "%s", err.msg);
    unnormalize(&t, fl, S);
    CHECK(fabsf(fl[0]) < 1e-5 && fabsf(fl[S * S] - 1) < 1e-5 && fabsf(fl[2 * S * S]) < 1e-5, "hue: %f %f %f", fl[0],
          fl[S * S], fl[2 * S * S]);
    fill(&img, S, S);
    p.h = 0.5f;
    CHECK(vlm_transform_apply(&t, &img, &p, fl, &s, &err) == VLM_OK, "%s", err.msg);
    p.h = -0.5f;
    CHECK(vlm_transform_apply(&t, &img, &p, tr, &s, &err) == VLM_OK, "%s", err.msg);
    md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs(fl[i] - tr[i]));
    CHECK(md < 1e-4, "hue +0.5 vs -0.5 differ by %g", md);
    // full pipeline from a stream, different sources sizes
    vlm_rng r;
    t.hflip_prob = 0.5f, t.jitter_prob = 1, t.brightness = 0.3f, t.hue = 0.2f, t.gray_prob = 0.3f;
    for (int i = 0; i < 20; i++) {
        fill(&img, 10 + i * 9, 7 + i * 5);
        vlm_transform_rng(&r, 9, 1, (uint64_t)i);
        CHECK(vlm_transform_train(&t, &img, &r, fl, &s, &err) == VLM_OK, "%s", err.msg);
        int finite = 1;
        for (size_t k = 0; k < n; k++) finite &= isfinite(fl[k]) && fabsf(fl[k]) < 3;
        CHECK(finite, "train output out of range for %dx%d", img.w, img.h);
    }
    // errors: bad sizes
    t.size = 0;
    CHECK(vlm_transform_eval(&t, &img, fl, &s, &err) == VLM_ERR_ARG, "size 0 accepted");
    free(ev);
    free(tr);
    free(fl);
    vlm_image_free(&img);
    vlm_transform_scratch_free(&s);
}

int main(void) {
    test_draws();
    test_apply();
    return tu_done("test_transform_train");
}
