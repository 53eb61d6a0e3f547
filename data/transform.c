// open_clip transforms: Pillow-exact bicubic resampling (ImagingResample in
// fixed point), torchvision's Resize/CenterCrop/RandomResizedCrop geometry,
// ColorJitter/RandomGrayscale with torchvision's tensor formulas.
#include "data/transform.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void vlm_transform_init(vlm_transform *t, int size) {
    memset(t, 0, sizeof *t);
    t->size = size;
    t->mean[0] = VLM_CLIP_MEAN_R;
    t->mean[1] = VLM_CLIP_MEAN_G;
    t->mean[2] = VLM_CLIP_MEAN_B;
    t->std[0] = VLM_CLIP_STD_R;
    t->std[1] = VLM_CLIP_STD_G;
    t->std[2] = VLM_CLIP_STD_B;
    t->scale_min = 0.9f;
    t->scale_max = 1.0f;
    t->ratio_min = 3.0f / 4.0f;
    t->ratio_max = 4.0f / 3.0f;
}

void vlm_transform_scratch_init(vlm_transform_scratch *s) { memset(s, 0, sizeof *s); }

void vlm_transform_scratch_free(vlm_transform_scratch *s) {
    free(s->tmp);
    free(s->out8);
    free(s->kx);
    free(s->ky);
    free(s->bx);
    free(s->by);
    free(s->w);
    free(s->acc);
    memset(s, 0, sizeof *s);
}

static int grow(void **p, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < bytes) c *= 2;
    void *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

void vlm_transform_resized_size(int w, int h, int size, int *nw, int *nh) {
    // torchvision _compute_resized_output_size: new_long = int(size * long / short)
    if (w <= h) {
        *nw = size;
        *nh = (int)((double)size * (double)h / (double)w);
    } else {
        *nh = size;
        *nw = (int)((double)size * (double)w / (double)h);
    }
}

// ------------------------------------------------------------ resampling

#define PRECISION_BITS (32 - 8 - 2) // Pillow's 8-bit-per-channel precision

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static int taps_size(int in_size, int out_size) {
    double filterscale = (double)in_size / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    return (int)ceil(2.0 * filterscale) * 2 + 1;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for outputs
// [o0, o0 + n) of a resize in_size -> out_size. bounds: (first, count) per
// output; k: [n, ksize] fixed-point taps.
static void precompute(int in_size, int out_size, int o0, int n, int ksize, int *bounds, int32_t *k, double *w) {
    double scale = (double)in_size / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = 2.0 * filterscale, ss = 1.0 / filterscale;
    for (int i = 0; i < n; i++) {
        int xx = o0 + i;
        double center = (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize; // cannot happen; keeps w in bounds
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *kk = k + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            kk[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS; // arithmetic shift, as in Pillow
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

vlm_status vlm_image_resize_bicubic(const vlm_image *src, int bx, int by, int bw, int bh, int ow, int oh,
                                    int wx, int wy, int ww, int wh, uint8_t *out, vlm_transform_scratch *s,
                                    vlm_error *err) {
    if (bw <= 0 || bh <= 0 || bx < 0 || by < 0 || bx + bw > src->w || by + bh > src->h)
        return vlm_errorf(err, VLM_ERR_ARG, "resize: box (%d,%d,%d,%d) outside the %dx%d image", bx, by, bw, bh,
                          src->w, src->h);
    if (ow <= 0 || oh <= 0 || ww <= 0 || wh <= 0 || wx < 0 || wy < 0 || wx + ww > ow || wy + wh > oh)
        return vlm_errorf(err, VLM_ERR_ARG, "resize: window (%d,%d,%d,%d) outside the %dx%d output", wx, wy, ww, wh,
                          ow, oh);
    const int need_h = ow != bw, need_v = oh != bh;
    int kxs = 0, kys = 0;
    if (need_h) {
        kxs = taps_size(bw, ow);
        if (grow((void **)&s->kx, &s->kx_cap, sizeof(int32_t) * (size_t)ww * kxs) ||
            grow((void **)&s->bx, &s->bx_cap, sizeof(int) * 2 * (size_t)ww) ||
            grow((void **)&s->w, &s->w_cap, sizeof(double) * (size_t)kxs))
            return vlm_errorf(err, VLM_ERR_OOM, "resize: out of memory");
        precompute(bw, ow, wx, ww, kxs, s->bx, s->kx, s->w);
    }
    // Source rows the vertical pass reads: [r0, r1) relative to the box.
    int r0 = wy, r1 = wy + wh;
    if (need_v) {
        kys = taps_size(bh, oh);
        if (grow((void **)&s->ky, &s->ky_cap, sizeof(int32_t) * (size_t)wh * kys) ||
            grow((void **)&s->by, &s->by_cap, sizeof(int) * 2 * (size_t)wh) ||
            grow((void **)&s->w, &s->w_cap, sizeof(double) * (size_t)kys))
            return vlm_errorf(err, VLM_ERR_OOM, "resize: out of memory");
        precompute(bh, oh, wy, wh, kys, s->by, s->ky, s->w);
        r0 = s->by[0];
        r1 = s->by[2 * (wh - 1)] + s->by[2 * (wh - 1) + 1];
    }
    const int nrows = r1 - r0;
    const size_t sstride = (size_t)src->w * 3;
    const uint8_t *base = src->px + (size_t)by * sstride + (size_t)bx * 3;

    // Horizontal pass: rows [r0, r1) -> tmp [nrows, ww, 3] (or straight to
    // out when no vertical pass follows).
    uint8_t *hout;
    size_t hstride = (size_t)ww * 3;
    if (need_v) {
        if (grow((void **)&s->tmp, &s->tmp_cap, (size_t)nrows * hstride))
            return vlm_errorf(err, VLM_ERR_OOM, "resize: out of memory");
        hout = s->tmp;
    } else {
        hout = out;
    }
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = base + (size_t)(r0 + y) * sstride;
        uint8_t *o = hout + (size_t)y * hstride;
        if (!need_h) {
            memcpy(o, row + (size_t)wx * 3, hstride);
            continue;
        }
        for (int x = 0; x < ww; x++) {
            const int xmin = s->bx[2 * x], cnt = s->bx[2 * x + 1];
            const int32_t *k = s->kx + (size_t)x * kxs;
            const uint8_t *p = row + (size_t)xmin * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int i = 0; i < cnt; i++) {
                s0 += p[3 * i] * k[i];
                s1 += p[3 * i + 1] * k[i];
                s2 += p[3 * i + 2] * k[i];
            }
            o[3 * x] = clip8(s0);
            o[3 * x + 1] = clip8(s1);
            o[3 * x + 2] = clip8(s2);
        }
    }
    if (!need_v) return VLM_OK;

    // Vertical pass: tmp -> out [wh, ww, 3]. Taps outermost so the inner
    // loop runs over a contiguous row (vectorises); same sums as Pillow.
    if (grow((void **)&s->acc, &s->acc_cap, sizeof(int32_t) * hstride))
        return vlm_errorf(err, VLM_ERR_OOM, "resize: out of memory");
    int32_t *acc = s->acc;
    for (int y = 0; y < wh; y++) {
        const int ymin = s->by[2 * y] - r0, cnt = s->by[2 * y + 1];
        const int32_t *k = s->ky + (size_t)y * kys;
        uint8_t *o = out + (size_t)y * hstride;
        for (size_t x = 0; x < hstride; x++) acc[x] = 1 << (PRECISION_BITS - 1);
        for (int i = 0; i < cnt; i++) {
            const uint8_t *row = s->tmp + (size_t)(ymin + i) * hstride;
            const int32_t ki = k[i];
            for (size_t x = 0; x < hstride; x++) acc[x] += row[x] * ki;
        }
        for (size_t x = 0; x < hstride; x++) o[x] = clip8(acc[x]);
    }
    return VLM_OK;
}

// ------------------------------------------------------------ eval

static vlm_status check_t(const vlm_transform *t, const vlm_image *img, vlm_error *err) {
    if (t->size <= 0 || t->size > 16384) return vlm_errorf(err, VLM_ERR_ARG, "transform: bad image size %d", t->size);
    if (!img || !img->px || img->w <= 0 || img->h <= 0)
        return vlm_errorf(err, VLM_ERR_ARG, "transform: empty input image");
    for (int c = 0; c < 3; c++)
        if (!(t->std[c] > 0) || !isfinite(t->mean[c]))
            return vlm_errorf(err, VLM_ERR_ARG, "transform: bad mean/std for channel %d", c);
    return VLM_OK;
}

vlm_status vlm_transform_eval_u8(const vlm_transform *t, const vlm_image *img, uint8_t *out,
                                 vlm_transform_scratch *s, vlm_error *err) {
    vlm_status st = check_t(t, img, err);
    if (st) return st;
    const int S = t->size;
    int lo = img->w < img->h ? img->w : img->h, hi = img->w < img->h ? img->h : img->w;
    if ((double)S * hi / lo > (double)(1 << 30))
        return vlm_errorf(err, VLM_ERR_ARG, "transform: %dx%d image is too elongated to resize to %d", img->w, img->h, S);
    int nw, nh;
    vlm_transform_resized_size(img->w, img->h, S, &nw, &nh);
    // torchvision CenterCrop: top = int(round((h - S) / 2.0)), Python's
    // round-half-to-even, which rint() does in the default rounding mode.
    int left = (int)rint((nw - S) / 2.0), top = (int)rint((nh - S) / 2.0);
    return vlm_image_resize_bicubic(img, 0, 0, img->w, img->h, nw, nh, left, top, S, S, out, s, err);
}

// u8 HWC -> f32 CHW in [0, 1] (ToTensor), optionally mirrored left-right.
static void to_unit_chw(const uint8_t *in, int S, int flip, float *out) {
    const size_t plane = (size_t)S * S;
    for (int y = 0; y < S; y++) {
        const uint8_t *row = in + (size_t)y * S * 3;
        for (int x = 0; x < S; x++) {
            const uint8_t *p = row + (size_t)(flip ? S - 1 - x : x) * 3;
            size_t o = (size_t)y * S + x;
            out[o] = (float)p[0] / 255.0f;
            out[plane + o] = (float)p[1] / 255.0f;
            out[2 * plane + o] = (float)p[2] / 255.0f;
        }
    }
}

// ToTensor + Normalize in one pass through a per-channel table; the table
// holds exactly torch's float32 ((v / 255) - mean) / std.
static void to_normalized_chw(const vlm_transform *t, const uint8_t *in, int S, int flip, float *out) {
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - t->mean[c]) / t->std[c];
    const size_t plane = (size_t)S * S;
    for (int y = 0; y < S; y++) {
        const uint8_t *row = in + (size_t)y * S * 3;
        float *o0 = out + (size_t)y * S, *o1 = o0 + plane, *o2 = o1 + plane;
        for (int x = 0; x < S; x++) {
            const uint8_t *p = row + (size_t)(flip ? S - 1 - x : x) * 3;
            o0[x] = lut[0][p[0]];
            o1[x] = lut[1][p[1]];
            o2[x] = lut[2][p[2]];
        }
    }
}

void vlm_transform_to_tensor(const vlm_transform *t, const uint8_t *in, float *out) {
    to_normalized_chw(t, in, t->size, 0, out);
}

static void normalize(const vlm_transform *t, float *x, int S) {
    const size_t plane = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        const float m = t->mean[c], sd = t->std[c];
        float *p = x + c * plane;
        for (size_t i = 0; i < plane; i++) p[i] = (p[i] - m) / sd;
    }
}

vlm_status vlm_transform_eval(const vlm_transform *t, const vlm_image *img, float *out,
                              vlm_transform_scratch *s, vlm_error *err) {
    const int S = t->size;
    if (S > 0 && grow((void **)&s->out8, &s->out8_cap, (size_t)S * S * 3))
        return vlm_errorf(err, VLM_ERR_OOM, "transform: out of memory");
    vlm_status st = vlm_transform_eval_u8(t, img, s->out8, s, err);
    if (st) return st;
    to_normalized_chw(t, s->out8, S, 0, out);
    return VLM_OK;
}

// ------------------------------------------------------------ train

void vlm_transform_rng(vlm_rng *r, uint64_t seed, uint64_t epoch, uint64_t index) {
    vlm_rng_init(r, seed, VLM_RNG_AUGMENT, (epoch << 40) ^ index);
}

static double uniform_range(vlm_rng *r, double lo, double hi) { return lo + (hi - lo) * vlm_rng_uniform_d(r); }

void vlm_transform_draw(const vlm_transform *t, int width, int height, vlm_rng *rng, vlm_augment_params *p) {
    memset(p, 0, sizeof *p);
    // RandomResizedCrop.get_params
    const double area = (double)width * height;
    const double lr0 = log((double)t->ratio_min), lr1 = log((double)t->ratio_max);
    int found = 0;
    for (int attempt = 0; attempt < 10 && !found; attempt++) {
        double target = area * uniform_range(rng, t->scale_min, t->scale_max);
        double ar = exp(uniform_range(rng, lr0, lr1));
        int w = (int)rint(sqrt(target * ar)), h = (int)rint(sqrt(target / ar));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            p->crop_y = (int)vlm_rng_below(rng, (uint64_t)(height - h + 1));
            p->crop_x = (int)vlm_rng_below(rng, (uint64_t)(width - w + 1));
            p->crop_w = w;
            p->crop_h = h;
            found = 1;
        }
    }
    if (!found) { // centre-crop fallback
        double in_ratio = (double)width / height;
        int w, h;
        double rmin = fmin(t->ratio_min, t->ratio_max), rmax = fmax(t->ratio_min, t->ratio_max);
        if (in_ratio < rmin) {
            w = width;
            h = (int)rint(w / rmin);
        } else if (in_ratio > rmax) {
            h = height;
            w = (int)rint(h * rmax);
        } else {
            w = width;
            h = height;
        }
        if (w < 1) w = 1;
        if (h < 1) h = 1;
        if (w > width) w = width;
        if (h > height) h = height;
        p->crop_w = w;
        p->crop_h = h;
        p->crop_y = (height - h) / 2;
        p->crop_x = (width - w) / 2;
    }
    p->flip = t->hflip_prob > 0 && vlm_rng_uniform(rng) < t->hflip_prob;
    p->b = p->c = p->s = 1.0f;
    p->h = 0.0f;
    for (int i = 0; i < 4; i++) p->order[i] = i;
    if (t->jitter_prob > 0 && vlm_rng_uniform(rng) < t->jitter_prob) {
        p->jitter = 1;
        vlm_rng_shuffle_u32(rng, (uint32_t *)p->order, 4);
        if (t->brightness > 0) p->b = (float)uniform_range(rng, fmax(0.0, 1.0 - t->brightness), 1.0 + t->brightness);
        if (t->contrast > 0) p->c = (float)uniform_range(rng, fmax(0.0, 1.0 - t->contrast), 1.0 + t->contrast);
        if (t->saturation > 0)
            p->s = (float)uniform_range(rng, fmax(0.0, 1.0 - t->saturation), 1.0 + t->saturation);
        if (t->hue > 0) p->h = (float)uniform_range(rng, -t->hue, t->hue);
    }
    p->gray = t->gray_prob > 0 && vlm_rng_uniform(rng) < t->gray_prob;
}

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }
static inline float gray_of(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

// torchvision functional_tensor adjust_* on x: [3, n] in [0, 1].
static void adjust(float *x, size_t n, int op, float f) {
    float *R = x, *G = x + n, *B = x + 2 * n;
    if (op == 0) { // brightness: blend with black
        for (size_t i = 0; i < 3 * n; i++) x[i] = clamp01(f * x[i]);
    } else if (op == 1) { // contrast: blend with the mean gray level
        double m = 0;
        for (size_t i = 0; i < n; i++) m += gray_of(R[i], G[i], B[i]);
        float mean = (float)(m / (double)n);
        for (size_t i = 0; i < 3 * n; i++) x[i] = clamp01(f * x[i] + (1.0f - f) * mean);
    } else if (op == 2) { // saturation: blend with the pixel's gray
        for (size_t i = 0; i < n; i++) {
            float g = gray_of(R[i], G[i], B[i]);
            R[i] = clamp01(f * R[i] + (1.0f - f) * g);
            G[i] = clamp01(f * G[i] + (1.0f - f) * g);
            B[i] = clamp01(f * B[i] + (1.0f - f) * g);
        }
    } else { // hue: rotate in HSV
        for (size_t i = 0; i < n; i++) {
            float r = R[i], g = G[i], b = B[i];
            float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
            int eq = maxc == minc;
            float cr = maxc - minc;
            float sat = cr / (eq ? 1.0f : maxc), div = eq ? 1.0f : cr;
            float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
            float hh;
            if (maxc == r) hh = bc - gc;
            else if (maxc == g) hh = 2.0f + rc - bc;
            else hh = 4.0f + gc - rc;
            hh = fmodf(hh / 6.0f + 1.0f, 1.0f);
            hh = hh + f;
            hh = hh - floorf(hh); // Python's % 1.0 (non-negative)
            float v = maxc, h6 = hh * 6.0f, fi = floorf(h6), fr = h6 - fi;
            int sector = ((int)fi % 6 + 6) % 6;
            float pp = clamp01(v * (1.0f - sat)), q = clamp01(v * (1.0f - sat * fr)),
                  tt = clamp01(v * (1.0f - sat * (1.0f - fr)));
            switch (sector) {
            case 0: r = v, g = tt, b = pp; break;
            case 1: r = q, g = v, b = pp; break;
            case 2: r = pp, g = v, b = tt; break;
            case 3: r = pp, g = q, b = v; break;
            case 4: r = tt, g = pp, b = v; break;
            default: r = v, g = pp, b = q; break;
            }
            R[i] = r;
            G[i] = g;
            B[i] = b;
        }
    }
}

vlm_status vlm_transform_apply(const vlm_transform *t, const vlm_image *img, const vlm_augment_params *p,
                               float *out, vlm_transform_scratch *s, vlm_error *err) {
    vlm_status st = check_t(t, img, err);
    if (st) return st;
    const int S = t->size;
    if (grow((void **)&s->out8, &s->out8_cap, (size_t)S * S * 3))
        return vlm_errorf(err, VLM_ERR_OOM, "transform: out of memory");
    st = vlm_image_resize_bicubic(img, p->crop_x, p->crop_y, p->crop_w, p->crop_h, S, S, 0, 0, S, S, s->out8, s, err);
    if (st) return st;
    if (!p->jitter && !p->gray) {
        to_normalized_chw(t, s->out8, S, p->flip, out);
        return VLM_OK;
    }
    to_unit_chw(s->out8, S, p->flip, out);
    const size_t n = (size_t)S * S;
    if (p->jitter) {
        for (int i = 0; i < 4; i++) {
            int op = p->order[i];
            float f = op == 0 ? p->b : op == 1 ? p->c : op == 2 ? p->s : p->h;
            if ((op < 3 && f != 1.0f) || (op == 3 && f != 0.0f)) adjust(out, n, op, f);
        }
    }
    if (p->gray) {
        for (size_t i = 0; i < n; i++) {
            float g = gray_of(out[i], out[n + i], out[2 * n + i]);
            out[i] = out[n + i] = out[2 * n + i] = g;
        }
    }
    normalize(t, out, S);
    return VLM_OK;
}

vlm_status vlm_transform_train(const vlm_transform *t, const vlm_image *img, vlm_rng *rng, float *out,
                               vlm_transform_scratch *s, vlm_error *err) {
    vlm_status st = check_t(t, img, err);
    if (st) return st;
    vlm_augment_params p;
    vlm_transform_draw(t, img->w, img->h, rng, &p);
    return vlm_transform_apply(t, img, &p, out, s, err);
}
