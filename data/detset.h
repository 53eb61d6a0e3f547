// Detection training data: a COCO ground-truth JSON + its images decoded into
// memory, and batches of normalised images with boxes that follow the pixels
// through the augmentation (random crop / zoom-out, horizontal flip, resize to
// S x S). Every draw comes from (seed, epoch, image index).
//
//   vlm_detset ds;  vlm_detset_load(&ds, "scenes/train.json", NULL, &err);
//   vlm_detaug aug; vlm_detaug_init(&aug, 64);          // flip 0.5, crop area 0.5..1
//   vlm_detbatch b; vlm_detbatch_init(&b, 32, 64, ds.max_boxes, &err);
//   vlm_detset_order(ds.n_images, seed, epoch, perm);   // then batches of perm[k..k+32)
//   vlm_detset_batch(&ds, &aug, perm + k, 32, 1, seed, epoch, &b, &err);
//   // image i: b.images + i*3*S*S, its b.n_boxes[i] boxes b.boxes + i*M*4 (cx, cy, w, h
//   // in [0, 1] of the S x S input) with classes b.classes + i*M (index into ds.classnames)
#ifndef VLM_DATA_DETSET_H
#define VLM_DATA_DETSET_H

#include <stdint.h>
#include "core/error.h"
#include "core/rng.h"
#include "data/coco.h"
#include "data/image.h"
#include "data/transform.h"

typedef struct {
    int64_t n_images;
    int64_t n_boxes;             // annotations kept (iscrowd 0, w > 0, h > 0)
    int n_classes;               // the file's categories, sorted by id
    char **classnames;           // [n_classes] category names: the text queries
    int64_t *category_ids;       // [n_classes] COCO id of class k (ascending)
    int64_t *class_boxes;        // [n_classes] boxes of class k in this file
    int64_t *image_ids;          // [n_images] COCO image id
    char **file_names;           // [n_images] as in the JSON
    int *width, *height;         // [n_images]
    int64_t *box_first;          // [n_images] first box of image i
    int *box_count;              // [n_images]
    float *boxes;                // [n_boxes, 4] COCO x, y, w, h in pixels, grouped by image
    int32_t *box_class;          // [n_boxes] class index
    uint8_t **pixels;            // [n_images] RGB [height, width, 3]
    int max_boxes;               // most boxes on one image
    int64_t n_crowd, n_degenerate; // annotations skipped: iscrowd 1; w or h <= 0
} vlm_detset;

// Reads gt_json with vlm_coco_gt_load (data/coco.h: validated COCO ground
// truth; images need file_name, categories name; width/height, if given, must
// match the image) and decodes every image (file_name relative to image_dir;
// NULL = the JSON's folder) into RGB. Crowd and empty boxes are skipped
// (counted); images without boxes are kept. Errors name the file and entry.
vlm_status vlm_detset_load(vlm_detset *ds, const char *gt_json, const char *image_dir, vlm_error *err);
// The same from ground truth already loaded from gt_json (callers that also
// evaluate against it read the file once); gt is not kept.
vlm_status vlm_detset_from_gt(vlm_detset *ds, const vlm_coco_gt *gt, const char *gt_json, const char *image_dir,
                              vlm_error *err);
void vlm_detset_free(vlm_detset *ds);
// The image as a vlm_image view (no copy; do not free or decode into it).
void vlm_detset_image(const vlm_detset *ds, int64_t i, vlm_image *view);
// perm[0..n) = shuffle of 0..n-1 for the epoch, from (seed, VLM_RNG_DATA, epoch)
// like the classification loader's order.
void vlm_detset_order(int64_t n, uint64_t seed, uint64_t epoch, int64_t *perm);

// ---- augmentation

typedef struct {
    int size;                    // S: output [3, S, S]
    float mean[3], std[3];       // Normalize (CLIP values)
    float hflip_prob;            // mirror left-right, default 0.5
    float scale_min, scale_max;  // crop window area / image area, default 0.5..1.0; above 1 the
                                 // window is larger than the image (zoom out; the margin is `fill`)
    float ratio_min, ratio_max;  // window aspect w/h, log-uniform, default 3/4..4/3
    float min_visible;           // a box is kept if at least this fraction of its area stays
                                 // inside the window, default 0.5 (then clipped to it)
    uint8_t fill[3];             // margin colour for zoom-out, default the CLIP mean (0 after Normalize)
} vlm_detaug;

// One sample's draws: the window in source pixels (may extend past the image
// when zooming out) and the flip.
typedef struct {
    int x, y, w, h;
    int flip;
} vlm_detaug_params;

void vlm_detaug_init(vlm_detaug *a, int size);
// Draws the window and flip for a w x h image. Per axis the window lies
// inside the image, or (if larger) contains it.
void vlm_detaug_draw(const vlm_detaug *a, int w, int h, vlm_rng *rng, vlm_detaug_params *p);
// The eval choice: the whole image, no flip (plain resize to S x S).
void vlm_detaug_identity(int w, int h, vlm_detaug_params *p);
// Boxes through p: in [n, 4] COCO x, y, w, h pixels -> out [*n_out, 4]
// (cx, cy, w, h) normalised to the S x S output, clipped to the window,
// mirrored if p->flip; boxes with less than min_visible of their area inside
// the window (or empty) are dropped. cls_out[k] = cls[i] of kept box i
// (either may be NULL). Returns the number kept.
int vlm_detaug_boxes(const vlm_detaug_params *p, float min_visible, const float *boxes, const int32_t *cls, int n,
                     float *out, int32_t *cls_out);
// Pixels through p: the window (margin = a->fill), bicubic resize to S x S
// (Pillow-exact, data/transform.h), mirror. out: [S, S, 3] u8. win is a reusable
// image buffer for the window.
vlm_status vlm_detaug_pixels_u8(const vlm_detaug *a, const vlm_image *img, const vlm_detaug_params *p, uint8_t *out,
                                vlm_image *win, vlm_transform_scratch *s, vlm_error *err);

// ---- batches

typedef struct {
    vlm_transform_scratch ts;
    vlm_image win;
    uint8_t *u8;                 // [S, S, 3]
    vlm_status st;               // this slot's result in the last batch
    vlm_error err;
} vlm_detslot;

typedef struct {
    int capacity;                // B
    int size;                    // S
    int max_boxes;               // M: boxes per image slot
    int n;                       // images in the batch (<= B)
    float *images;               // [B, 3, S, S] normalised
    float *boxes;                // [B, M, 4] cx, cy, w, h in [0, 1]; rows past n_boxes are 0
    int32_t *classes;            // [B, M] class index, -1 past n_boxes
    int32_t *n_boxes;            // [B]
    int64_t *indices;            // [B] image index in the detset
    vlm_detslot *slots;          // [B] per-image scratch (images are augmented in parallel)
} vlm_detbatch;

vlm_status vlm_detbatch_init(vlm_detbatch *b, int capacity, int size, int max_boxes, vlm_error *err);
void vlm_detbatch_free(vlm_detbatch *b);
// Fills b with images idx[0..n) (n <= capacity; a.size must equal b->size).
// train: draws from vlm_transform_rng(seed, epoch, idx[i]) (a pure function
// of those, whatever the thread count); else the eval choice (resize only).
// An image with more boxes than b->max_boxes is an error.
vlm_status vlm_detset_batch(const vlm_detset *ds, const vlm_detaug *a, const int64_t *idx, int n, int train,
                            uint64_t seed, uint64_t epoch, vlm_detbatch *b, vlm_error *err);

#endif
