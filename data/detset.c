// COCO detection ground truth (read and validated by data/coco.h) + its images
// decoded into memory, and augmented batches whose boxes move with the pixels
// (window crop / zoom-out, flip, resize).
#include "data/detset.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/coco.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void vlm_detset_free(vlm_detset *ds) {
    for (int k = 0; k < ds->n_classes; k++) free(ds->classnames ? ds->classnames[k] : NULL);
    for (int64_t i = 0; i < ds->n_images; i++) {
        if (ds->file_names) free(ds->file_names[i]);
        if (ds->pixels) free(ds->pixels[i]);
    }
    free(ds->classnames);
    free(ds->category_ids);
    free(ds->class_boxes);
    free(ds->image_ids);
    free(ds->file_names);
    free(ds->width);
    free(ds->height);
    free(ds->box_first);
    free(ds->box_count);
    free(ds->boxes);
    free(ds->box_class);
    free(ds->pixels);
    memset(ds, 0, sizeof *ds);
}

typedef struct {
    int64_t id;
    int64_t idx;
} id_idx;

static int cmp_id(const void *a, const void *b) {
    const id_idx *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int64_t find_id(const id_idx *v, int64_t n, int64_t id) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (v[m].id < id) lo = m + 1;
        else hi = m;
    }
    return lo < n && v[lo].id == id ? v[lo].idx : -1;
}

// From the validated ground truth (data/coco.h: unique ids, annotations naming
// listed images and categories, finite boxes with w, h >= 0) to the training
// layout: classes by ascending category id, boxes grouped by image in file order.
static vlm_status convert(vlm_detset *ds, const char *path, const vlm_coco_gt *gt, vlm_error *err) {
    const int64_t ni = gt->n_images, na = gt->n_anns, nc = gt->n_categories;
    if (nc > 1000000) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: %lld categories", path, (long long)nc);
    id_idx *cid = malloc(sizeof *cid * (size_t)(nc ? nc : 1));
    id_idx *iid = malloc(sizeof *iid * (size_t)(ni ? ni : 1));
    ds->n_classes = (int)nc;
    ds->classnames = calloc((size_t)(nc ? nc : 1), sizeof *ds->classnames);
    ds->category_ids = calloc((size_t)(nc ? nc : 1), sizeof(int64_t));
    ds->class_boxes = calloc((size_t)(nc ? nc : 1), sizeof(int64_t));
    ds->n_images = ni;
    ds->image_ids = calloc((size_t)(ni ? ni : 1), sizeof(int64_t));
    ds->file_names = calloc((size_t)(ni ? ni : 1), sizeof(char *));
    ds->width = calloc((size_t)(ni ? ni : 1), sizeof(int));
    ds->height = calloc((size_t)(ni ? ni : 1), sizeof(int));
    ds->box_first = calloc((size_t)(ni ? ni : 1), sizeof(int64_t));
    ds->box_count = calloc((size_t)(ni ? ni : 1), sizeof(int));
    ds->pixels = calloc((size_t)(ni ? ni : 1), sizeof(uint8_t *));
    int64_t *ann_img = malloc(sizeof(int64_t) * (size_t)(na ? na : 1));
    int32_t *ann_cls = malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
    vlm_status st = VLM_OK;
    if (!cid || !iid || !ds->classnames || !ds->category_ids || !ds->class_boxes || !ds->image_ids ||
        !ds->file_names || !ds->width || !ds->height || !ds->box_first || !ds->box_count || !ds->pixels || !ann_img ||
        !ann_cls) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
        goto out;
    }
    for (int64_t k = 0; k < nc; k++) cid[k] = (id_idx){gt->categories[k].id, k};
    qsort(cid, (size_t)nc, sizeof *cid, cmp_id);
    for (int64_t k = 0; k < nc; k++) {
        const vlm_coco_category *c = &gt->categories[cid[k].idx];
        if (!c->name) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: category id %lld has no name (the text query)", path,
                            (long long)c->id);
            goto out;
        }
        ds->category_ids[k] = c->id;
        if (!(ds->classnames[k] = xstrdup(c->name))) {
            st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            goto out;
        }
        cid[k].idx = k; // now maps id -> class index
    }
    for (int64_t i = 0; i < ni; i++) {
        const vlm_coco_image *im = &gt->images[i];
        if (!im->file_name || !*im->file_name) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: images[%lld] (id %lld) has no file_name", path, (long long)i,
                            (long long)im->id);
            goto out;
        }
        if (im->width < 0 || im->height < 0 || im->width > 65535 || im->height > 65535) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: images[%lld] (id %lld): size %lldx%lld out of 0..65535", path,
                            (long long)i, (long long)im->id, (long long)im->width, (long long)im->height);
            goto out;
        }
        iid[i] = (id_idx){im->id, i};
        ds->image_ids[i] = im->id;
        ds->width[i] = (int)im->width; // 0 = not given: taken from the decoded image
        ds->height[i] = (int)im->height;
        if (!(ds->file_names[i] = xstrdup(im->file_name))) {
            st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            goto out;
        }
    }
    qsort(iid, (size_t)ni, sizeof *iid, cmp_id);
    int64_t kept = 0;
    for (int64_t a = 0; a < na; a++) {
        const vlm_coco_ann *an = &gt->anns[a];
        ann_img[a] = -1;
        if (an->iscrowd) {
            ds->n_crowd++;
            continue;
        }
        if (!(an->bbox[2] > 0) || !(an->bbox[3] > 0)) {
            ds->n_degenerate++;
            continue;
        }
        int64_t ii = find_id(iid, ni, an->image_id), kk = find_id(cid, nc, an->category_id);
        if (ii < 0 || kk < 0) { // validated by the reader; a guard only
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: annotations[%lld]: unknown %s", path, (long long)a,
                            ii < 0 ? "image_id" : "category_id");
            goto out;
        }
        ann_img[a] = ii;
        ann_cls[a] = (int32_t)kk;
        ds->box_count[ii]++;
        kept++;
    }
    ds->n_boxes = kept;
    ds->boxes = malloc(sizeof(float) * 4 * (size_t)(kept ? kept : 1));
    ds->box_class = malloc(sizeof(int32_t) * (size_t)(kept ? kept : 1));
    if (!ds->boxes || !ds->box_class) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
        goto out;
    }
    int64_t acc = 0;
    for (int64_t i = 0; i < ni; i++) {
        ds->box_first[i] = acc;
        acc += ds->box_count[i];
        if (ds->box_count[i] > ds->max_boxes) ds->max_boxes = ds->box_count[i];
        ds->box_count[i] = 0; // refilled below
    }
    for (int64_t a = 0; a < na; a++) {
        if (ann_img[a] < 0) continue;
        int64_t i = ann_img[a], j = ds->box_first[i] + ds->box_count[i]++;
        for (int q = 0; q < 4; q++) ds->boxes[4 * j + q] = (float)gt->anns[a].bbox[q];
        ds->box_class[j] = ann_cls[a];
        ds->class_boxes[ann_cls[a]]++;
    }
out:
    free(cid);
    free(iid);
    free(ann_img);
    free(ann_cls);
    return st;
}

vlm_status vlm_detset_load(vlm_detset *ds, const char *gt_json, const char *image_dir, vlm_error *err) {
    memset(ds, 0, sizeof *ds);
    vlm_coco_gt gt;
    vlm_status st = vlm_coco_gt_load(&gt, gt_json, err);
    if (st) return st;
    st = vlm_detset_from_gt(ds, &gt, gt_json, image_dir, err);
    vlm_coco_gt_free(&gt);
    return st;
}

vlm_status vlm_detset_from_gt(vlm_detset *ds, const vlm_coco_gt *gt, const char *gt_json, const char *image_dir,
                              vlm_error *err) {
    memset(ds, 0, sizeof *ds);
    vlm_status st = convert(ds, gt_json, gt, err);
    if (st) {
        vlm_detset_free(ds);
        return st;
    }
    // Image folder: given, or the JSON's own folder.
    char dir[4096];
    if (image_dir) snprintf(dir, sizeof dir, "%s", image_dir);
    else {
        snprintf(dir, sizeof dir, "%s", gt_json);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    // Decode every image once (in parallel; each writes only its own slot).
    int64_t bad = -1;
    int stop = 0;
    vlm_error first = {0};
    const int64_t n = ds->n_images;
#pragma omp parallel
    {
        vlm_image img;
        vlm_image_init(&img);
        uint8_t *buf = NULL;
        size_t cap = 0, size = 0;
        vlm_error e = {0};
        char path[8192];
#pragma omp for schedule(dynamic, 32)
        for (int64_t i = 0; i < n; i++) {
            int failed;
#pragma omp atomic read
            failed = stop;
            if (failed) continue;
            const char *fn = ds->file_names[i];
            if (fn[0] == '/') snprintf(path, sizeof path, "%s", fn);
            else snprintf(path, sizeof path, "%s/%s", dir, fn);
            vlm_status s2 = vlm_file_read(path, &buf, &cap, &size, (size_t)1 << 30, &e);
            if (!s2) s2 = vlm_image_decode(&img, buf, size, path, NULL, &e);
            if (!s2 && ds->width[i] == 0 && ds->height[i] == 0) {
                ds->width[i] = img.w;
                ds->height[i] = img.h;
            }
            if (!s2 && (img.w != ds->width[i] || img.h != ds->height[i]))
                s2 = vlm_errorf(&e, VLM_ERR_FORMAT, "%s: image is %dx%d but %s says %dx%d", path, img.w, img.h, gt_json,
                                ds->width[i], ds->height[i]);
            if (!s2) {
                size_t bytes = (size_t)img.w * img.h * 3;
                ds->pixels[i] = malloc(bytes);
                if (ds->pixels[i]) memcpy(ds->pixels[i], img.px, bytes);
                else s2 = vlm_errorf(&e, VLM_ERR_OOM, "%s: out of memory", path);
            }
            if (s2) {
#pragma omp critical(detset_err)
                {
                    if (bad < 0 || i < bad) {
                        bad = i;
                        first = e;
                    }
#pragma omp atomic write
                    stop = 1;
                }
            }
        }
        free(buf);
        vlm_image_free(&img);
    }
    if (bad >= 0) {
        vlm_detset_free(ds);
        if (err) *err = first;
        return first.status ? first.status : VLM_ERR_IO;
    }
    return VLM_OK;
}

void vlm_detset_image(const vlm_detset *ds, int64_t i, vlm_image *view) {
    memset(view, 0, sizeof *view);
    view->w = ds->width[i];
    view->h = ds->height[i];
    view->px = ds->pixels[i];
    view->cap = (size_t)view->w * view->h * 3;
    view->src_format = VLM_IMAGE_PNG;
    view->src_channels = 3;
    view->src_bit_depth = 8;
}

void vlm_detset_order(int64_t n, uint64_t seed, uint64_t epoch, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    vlm_rng r;
    vlm_rng_init(&r, seed, VLM_RNG_DATA, epoch);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)vlm_rng_below(&r, (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

// ------------------------------------------------------------ augmentation

void vlm_detaug_init(vlm_detaug *a, int size) {
    memset(a, 0, sizeof *a);
    a->size = size;
    a->mean[0] = VLM_CLIP_MEAN_R, a->mean[1] = VLM_CLIP_MEAN_G, a->mean[2] = VLM_CLIP_MEAN_B;
    a->std[0] = VLM_CLIP_STD_R, a->std[1] = VLM_CLIP_STD_G, a->std[2] = VLM_CLIP_STD_B;
    a->hflip_prob = 0.5f;
    a->scale_min = 0.5f;
    a->scale_max = 1.0f;
    a->ratio_min = 3.0f / 4.0f;
    a->ratio_max = 4.0f / 3.0f;
    a->min_visible = 0.5f;
    for (int c = 0; c < 3; c++) a->fill[c] = (uint8_t)lrintf(a->mean[c] * 255.0f);
}

void vlm_detaug_identity(int w, int h, vlm_detaug_params *p) {
    p->x = p->y = 0;
    p->w = w;
    p->h = h;
    p->flip = 0;
}

// Window position on one axis: inside the image, or containing it.
static int place(int win, int img, vlm_rng *r) {
    if (win <= img) return (int)vlm_rng_below(r, (uint64_t)(img - win + 1));
    return -(int)vlm_rng_below(r, (uint64_t)(win - img + 1));
}

void vlm_detaug_draw(const vlm_detaug *a, int w, int h, vlm_rng *rng, vlm_detaug_params *p) {
    // Always the same five draws, so streams stay aligned whatever the settings.
    double s = a->scale_min + (a->scale_max - a->scale_min) * vlm_rng_uniform_d(rng);
    double l0 = log(a->ratio_min > 0 ? a->ratio_min : 1.0), l1 = log(a->ratio_max > 0 ? a->ratio_max : 1.0);
    double ar = exp(l0 + (l1 - l0) * vlm_rng_uniform_d(rng));
    double area = s * (double)w * h;
    int ww = (int)lround(sqrt(area * ar)), hh = (int)lround(sqrt(area / ar));
    int wmax = a->scale_max > 1.0f ? 4 * w : w, hmax = a->scale_max > 1.0f ? 4 * h : h;
    ww = ww < 1 ? 1 : ww > wmax ? wmax : ww;
    hh = hh < 1 ? 1 : hh > hmax ? hmax : hh;
    p->w = ww;
    p->h = hh;
    p->x = place(ww, w, rng);
    p->y = place(hh, h, rng);
    p->flip = vlm_rng_uniform(rng) < a->hflip_prob;
}

int vlm_detaug_boxes(const vlm_detaug_params *p, float min_visible, const float *boxes, const int32_t *cls, int n,
                     float *out, int32_t *cls_out) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        const float *b = boxes + 4 * i;
        double x0 = b[0], y0 = b[1], x1 = (double)b[0] + b[2], y1 = (double)b[1] + b[3];
        double area = (double)b[2] * b[3];
        double cx0 = fmax(x0, p->x), cy0 = fmax(y0, p->y);
        double cx1 = fmin(x1, (double)p->x + p->w), cy1 = fmin(y1, (double)p->y + p->h);
        if (!(cx1 > cx0) || !(cy1 > cy0) || !(area > 0)) continue;
        if ((cx1 - cx0) * (cy1 - cy0) < (double)min_visible * area) continue;
        double u0 = (cx0 - p->x) / p->w, u1 = (cx1 - p->x) / p->w;
        double v0 = (cy0 - p->y) / p->h, v1 = (cy1 - p->y) / p->h;
        if (p->flip) {
            double t = 1.0 - u1;
            u1 = 1.0 - u0;
            u0 = t;
        }
        if (out) {
            float *o = out + 4 * k;
            o[0] = (float)((u0 + u1) * 0.5);
            o[1] = (float)((v0 + v1) * 0.5);
            o[2] = (float)(u1 - u0);
            o[3] = (float)(v1 - v0);
        }
        if (cls_out) cls_out[k] = cls ? cls[i] : -1;
        k++;
    }
    return k;
}

vlm_status vlm_detaug_pixels_u8(const vlm_detaug *a, const vlm_image *img, const vlm_detaug_params *p, uint8_t *out,
                                vlm_image *win, vlm_transform_scratch *s, vlm_error *err) {
    const int S = a->size;
    if (S <= 0 || S > 16384) return vlm_errorf(err, VLM_ERR_ARG, "detection augment: bad output size %d", S);
    if (p->w <= 0 || p->h <= 0 || p->w > 65536 || p->h > 65536)
        return vlm_errorf(err, VLM_ERR_ARG, "detection augment: bad window %dx%d", p->w, p->h);
    vlm_status st;
    if (p->x >= 0 && p->y >= 0 && p->x + p->w <= img->w && p->y + p->h <= img->h) {
        st = vlm_image_resize_bicubic(img, p->x, p->y, p->w, p->h, S, S, 0, 0, S, S, out, s, err);
    } else {
        // Zoom-out: copy the image into a window filled with a->fill.
        if ((st = vlm_image_alloc(win, p->w, p->h, err))) return st;
        for (int y = 0; y < p->h; y++) {
            uint8_t *row = win->px + (size_t)y * p->w * 3;
            int sy = p->y + y;
            for (int x = 0; x < p->w; x++) memcpy(row + 3 * x, a->fill, 3);
            if (sy < 0 || sy >= img->h) continue;
            int x0 = p->x < 0 ? -p->x : 0, sx0 = p->x < 0 ? 0 : p->x;
            int n = p->w - x0;
            if (n > img->w - sx0) n = img->w - sx0;
            if (n > 0) memcpy(row + 3 * x0, img->px + ((size_t)sy * img->w + sx0) * 3, (size_t)n * 3);
        }
        st = vlm_image_resize_bicubic(win, 0, 0, p->w, p->h, S, S, 0, 0, S, S, out, s, err);
    }
    if (st) return st;
    if (p->flip)
        for (int y = 0; y < S; y++) {
            uint8_t *row = out + (size_t)y * S * 3;
            for (int x = 0; x < S / 2; x++) {
                uint8_t t[3];
                memcpy(t, row + 3 * x, 3);
                memcpy(row + 3 * x, row + 3 * (S - 1 - x), 3);
                memcpy(row + 3 * (S - 1 - x), t, 3);
            }
        }
    return VLM_OK;
}

// ------------------------------------------------------------ batches

void vlm_detbatch_free(vlm_detbatch *b) {
    if (b->slots)
        for (int i = 0; i < b->capacity; i++) {
            vlm_transform_scratch_free(&b->slots[i].ts);
            vlm_image_free(&b->slots[i].win);
            free(b->slots[i].u8);
        }
    free(b->slots);
    free(b->images);
    free(b->boxes);
    free(b->classes);
    free(b->n_boxes);
    free(b->indices);
    memset(b, 0, sizeof *b);
}

vlm_status vlm_detbatch_init(vlm_detbatch *b, int capacity, int size, int max_boxes, vlm_error *err) {
    memset(b, 0, sizeof *b);
    if (capacity < 1 || size < 1 || size > 16384 || max_boxes < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "detection batch: bad capacity %d / size %d / max boxes %d", capacity, size,
                          max_boxes);
    const size_t B = (size_t)capacity, S = (size_t)size, M = (size_t)(max_boxes ? max_boxes : 1);
    b->capacity = capacity;
    b->size = size;
    b->max_boxes = max_boxes;
    b->images = malloc(sizeof(float) * B * 3 * S * S);
    b->boxes = calloc(B * M * 4, sizeof(float));
    b->classes = malloc(sizeof(int32_t) * B * M);
    b->n_boxes = calloc(B, sizeof(int32_t));
    b->indices = calloc(B, sizeof(int64_t));
    b->slots = calloc(B, sizeof *b->slots);
    if (!b->images || !b->boxes || !b->classes || !b->n_boxes || !b->indices || !b->slots) {
        vlm_detbatch_free(b);
        return vlm_errorf(err, VLM_ERR_OOM, "detection batch: out of memory (%d x %d^2)", capacity, size);
    }
    for (size_t i = 0; i < B * M; i++) b->classes[i] = -1;
    for (size_t i = 0; i < B; i++) {
        vlm_transform_scratch_init(&b->slots[i].ts);
        vlm_image_init(&b->slots[i].win);
        if (!(b->slots[i].u8 = malloc(S * S * 3))) {
            vlm_detbatch_free(b);
            return vlm_errorf(err, VLM_ERR_OOM, "detection batch: out of memory");
        }
    }
    return VLM_OK;
}

vlm_status vlm_detset_batch(const vlm_detset *ds, const vlm_detaug *a, const int64_t *idx, int n, int train,
                            uint64_t seed, uint64_t epoch, vlm_detbatch *b, vlm_error *err) {
    if (n < 0 || n > b->capacity) return vlm_errorf(err, VLM_ERR_ARG, "detection batch: %d images for %d slots", n, b->capacity);
    if (a->size != b->size)
        return vlm_errorf(err, VLM_ERR_ARG, "detection batch: augment size %d != batch size %d", a->size, b->size);
    for (int c = 0; c < 3; c++)
        if (!(a->std[c] > 0)) return vlm_errorf(err, VLM_ERR_ARG, "detection batch: bad std for channel %d", c);
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= ds->n_images)
            return vlm_errorf(err, VLM_ERR_ARG, "detection batch: image index %lld out of 0..%lld", (long long)idx[i],
                              (long long)ds->n_images - 1);
        if (ds->box_count[idx[i]] > b->max_boxes)
            return vlm_errorf(err, VLM_ERR_ARG, "detection batch: %s has %d boxes, over the batch's %d",
                              ds->file_names[idx[i]], ds->box_count[idx[i]], b->max_boxes);
    }
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - a->mean[c]) / a->std[c];
    const int S = b->size, M = b->max_boxes;
    const size_t plane = (size_t)S * S;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        vlm_detslot *sl = &b->slots[i];
        vlm_image img;
        vlm_detset_image(ds, idx[i], &img);
        vlm_detaug_params p;
        if (train) {
            vlm_rng r;
            vlm_transform_rng(&r, seed, epoch, (uint64_t)idx[i]);
            vlm_detaug_draw(a, img.w, img.h, &r, &p);
        } else {
            vlm_detaug_identity(img.w, img.h, &p);
        }
        sl->st = vlm_detaug_pixels_u8(a, &img, &p, sl->u8, &sl->win, &sl->ts, &sl->err);
        if (sl->st) continue;
        float *o = b->images + (size_t)i * 3 * plane;
        for (size_t q = 0; q < plane; q++) {
            o[q] = lut[0][sl->u8[3 * q]];
            o[plane + q] = lut[1][sl->u8[3 * q + 1]];
            o[2 * plane + q] = lut[2][sl->u8[3 * q + 2]];
        }
        const int64_t f = ds->box_first[idx[i]];
        float *bo = b->boxes + (size_t)i * M * 4;
        int32_t *co = b->classes + (size_t)i * M;
        int k = vlm_detaug_boxes(&p, train ? a->min_visible : 0.0f, ds->boxes + 4 * f, ds->box_class + f,
                                 ds->box_count[idx[i]], bo, co);
        for (int j = k; j < M; j++) {
            bo[4 * j] = bo[4 * j + 1] = bo[4 * j + 2] = bo[4 * j + 3] = 0.0f;
            co[j] = -1;
        }
        b->n_boxes[i] = k;
        b->indices[i] = idx[i];
    }
    vlm_status st = VLM_OK;
    for (int i = 0; i < n && !st; i++)
        if (b->slots[i].st) {
            st = b->slots[i].st;
            if (err) *err = b->slots[i].err;
        }
    b->n = st ? 0 : n;
    return st;
}
