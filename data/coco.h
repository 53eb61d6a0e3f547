// COCO detection formats: ground-truth JSON (images, annotations, categories)
// and results JSON (a list of {image_id, category_id, bbox, score}), read and
// written with jansson and validated entry by entry, so a bad file fails with
// a message naming the file and the entry instead of skewing the scores.
#ifndef VLM_DATA_COCO_H
#define VLM_DATA_COCO_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

typedef struct {
    int64_t id;
    int64_t width, height;  // pixels; 0 when the file does not give them
    char *file_name;        // NULL when absent
} vlm_coco_image;

typedef struct {
    int64_t id;
    char *name;             // NULL when absent
    char *supercategory;    // NULL when absent
} vlm_coco_category;

typedef struct {
    int64_t id;             // nonzero (pycocotools reads a match to id 0 as "no match")
    int64_t image_id, category_id;
    double bbox[4];         // x, y, w, h in pixels; w, h >= 0
    double area;            // the small/medium/large ranges use this field, not w*h
    int iscrowd;            // nonzero: a crowd region (ignored, matched by intersection / detection area)
    int ignore;             // the optional "ignore" field, kept for round trips; it does not
                            // change evaluation, because pycocotools overwrites it with iscrowd
} vlm_coco_ann;

// Ground truth. Entries keep the file's order (pycocotools' order within an
// image, which decides ties in matching).
typedef struct {
    vlm_coco_image *images;
    long n_images, cap_images;
    vlm_coco_category *categories;
    long n_categories, cap_categories;
    vlm_coco_ann *anns;
    long n_anns, cap_anns;
    int64_t max_ann_id;     // largest annotation id so far (vlm_coco_gt_add_ann numbers from it)
} vlm_coco_gt;

// One detection of the results format. Its area is w*h, as pycocotools'
// loadRes sets it, and its id is its position in the list + 1.
typedef struct {
    int64_t image_id, category_id;
    double bbox[4];         // x, y, w, h; w, h >= 0
    double score;
} vlm_coco_det;

typedef struct {
    vlm_coco_det *dets;
    long n, cap;
} vlm_coco_results;

// ------------------------------------------------------------ ground truth

void vlm_coco_gt_init(vlm_coco_gt *gt);
void vlm_coco_gt_free(vlm_coco_gt *gt);

// Reads a COCO ground-truth file into *gt (which need not be initialised and
// is overwritten, not freed; on failure it is left empty). Required:
// top-level "images", "annotations", "categories" arrays; image "id";
// category "id"; annotation "id", "image_id", "category_id", "bbox"
// ([x, y, w, h], 4 finite numbers, w, h >= 0), "area" (finite, >= 0) and
// "iscrowd" (integer or boolean). Optional: image "width", "height",
// "file_name"; category "name", "supercategory"; annotation "ignore".
// Other keys (segmentation, info, licenses, ...) are ignored. Ids must be
// integers, unique per kind, annotation ids nonzero, and every annotation
// must name a listed image and category.
vlm_status vlm_coco_gt_load(vlm_coco_gt *gt, const char *path, vlm_error *err);
// The same from JSON text in memory; `name` labels error messages.
vlm_status vlm_coco_gt_parse(vlm_coco_gt *gt, const char *json, size_t len, const char *name, vlm_error *err);

// Building ground truth in code (the scene builder). file_name, name and
// supercategory are copied (NULL allowed). add_ann copies *ann; ann->id == 0
// assigns the next free id (max_ann_id + 1); area < 0 means w*h.
vlm_status vlm_coco_gt_add_image(vlm_coco_gt *gt, int64_t id, int64_t width, int64_t height, const char *file_name,
                                 vlm_error *err);
vlm_status vlm_coco_gt_add_category(vlm_coco_gt *gt, int64_t id, const char *name, const char *supercategory,
                                    vlm_error *err);
vlm_status vlm_coco_gt_add_ann(vlm_coco_gt *gt, const vlm_coco_ann *ann, vlm_error *err);

// Unique ids, nonzero annotation ids, annotations naming listed images and
// categories, valid boxes and areas. `name` labels the messages.
vlm_status vlm_coco_gt_validate(const vlm_coco_gt *gt, const char *name, vlm_error *err);

// Writes {"images": [...], "annotations": [...], "categories": [...]}
// (validated first; doubles with 17 significant digits, so they read back
// bit-identical) atomically: temp file, fsync, rename.
vlm_status vlm_coco_gt_save(const vlm_coco_gt *gt, const char *path, vlm_error *err);

// Index of the image / category with this id, or -1 (linear scan).
long vlm_coco_gt_find_image(const vlm_coco_gt *gt, int64_t id);
long vlm_coco_gt_find_category(const vlm_coco_gt *gt, int64_t id);

// ------------------------------------------------------------ results

void vlm_coco_results_init(vlm_coco_results *r);
void vlm_coco_results_free(vlm_coco_results *r);

// Reads a COCO results file (a JSON array of objects with integer
// "image_id" and "category_id", "bbox" [x, y, w, h] of 4 finite numbers with
// w, h >= 0, and a finite "score"; other keys are ignored) into *r (need not
// be initialised; overwritten; empty on failure). With gt != NULL every
// image_id must be one of gt's images, as pycocotools' loadRes asserts.
// Results whose category is not in gt are kept; the evaluator skips them
// as pycocotools does. An empty list is accepted (pycocotools fails on it).
vlm_status vlm_coco_results_load(vlm_coco_results *r, const char *path, const vlm_coco_gt *gt, vlm_error *err);
vlm_status vlm_coco_results_parse(vlm_coco_results *r, const char *json, size_t len, const char *name,
                                  const vlm_coco_gt *gt, vlm_error *err);

// Appends one detection (validated: finite, w, h >= 0).
vlm_status vlm_coco_results_add(vlm_coco_results *r, int64_t image_id, int64_t category_id, const double bbox[4],
                                double score, vlm_error *err);

// Writes the results list atomically (17 significant digits).
vlm_status vlm_coco_results_save(const vlm_coco_results *r, const char *path, vlm_error *err);

#endif
