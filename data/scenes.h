// Synthetic detection scenes from real images (`vlm data scenes`): objects
// cut from Fashion-MNIST and from the emoji sets, pasted at random scales and
// positions onto small canvases, written as PNGs with COCO JSON ground truth
// (train / val / heldout splits; held-out classes never appear in train).
#ifndef VLM_DATA_SCENES_H
#define VLM_DATA_SCENES_H

#include <stdint.h>
#include "core/error.h"

#define VLM_SCENES_MAX_SIZES 8

typedef enum {
    VLM_SCENES_BG_MIXED = 0, // per image: a plain colour, a two-colour gradient or mild noise
    VLM_SCENES_BG_PLAIN,     // per image: one random plain colour
    VLM_SCENES_BG_FIXED,     // every image: opts.bg_rgb (tests: object pixels are easy to find)
} vlm_scenes_bg;

typedef enum {
    // Every split draws from all vendors' images (train.tsv and, if present,
    // val_twitter.tsv): val scenes are new compositions of the same objects,
    // as in most synthetic detection sets; open vocabulary is measured by the
    // held-out classes. The default.
    VLM_SCENES_EMOJI_SHARED = 0,
    // Emoji train scenes use DIR/train.tsv's images (apple, google, facebook),
    // val and heldout scenes DIR/val_twitter.tsv's (twitter): a style shift
    // on top (only 3 training images per class; much harder).
    VLM_SCENES_EMOJI_VENDOR,
} vlm_scenes_emoji_split;

typedef struct {
    const char *out_dir;         // DIR (created; existing files are overwritten)
    const char *fmnist_dir;      // Fashion-MNIST folder (train-/t10k-*-ubyte[.gz]); NULL = not a source
    const char *emoji_dir;       // emoji folder (train.tsv, val_twitter.tsv, img/); NULL = not a source
    int sizes[VLM_SCENES_MAX_SIZES]; // canvas sides; each image draws one (default 64, 96)
    int n_sizes;
    int64_t n_train, n_val, n_heldout; // images per split (default 10000, 1000, 500)
    int max_objects;             // K: an image asks for 1..K objects (default 4)
    int emoji_classes;           // emoji classes drawn from the pool by seed (default 32)
    const char *emoji_categories; // comma-separated top-level emoji categories of the pool
                                 // (default: animals & nature, food & drink, travel & places,
                                 // activities, objects); "all" = no filter
    const char *heldout;         // comma-separated held-out class names (overrides heldout_n)
    int heldout_n;               // held-out classes chosen by seed, split between the
                                 // sources in proportion to their class counts; -1 = default
                                 // (2 Fashion-MNIST classes + 25% of the emoji classes)
    uint64_t seed;
    float min_scale, max_scale;  // object's longer side / canvas side, log-uniform (0.25..0.6)
    float max_iou;               // a placement whose box IoU with an earlier one exceeds this is redrawn (0.3)
    float min_visible;           // ... and so is one that leaves an earlier object less than
                                 // this fraction of its pixels visible (0.7)
    vlm_scenes_bg background;
    uint8_t bg_rgb[3];           // VLM_SCENES_BG_FIXED colour
    vlm_scenes_emoji_split emoji_split;
} vlm_scenes_opts;

enum { VLM_SCENES_TRAIN = 0, VLM_SCENES_VAL = 1, VLM_SCENES_HELDOUT = 2, VLM_SCENES_SPLITS = 3 };

// What was built (for the CLI summary and tests).
typedef struct {
    int n_classes;               // all classes; class k has COCO category id k + 1
    char **names;                // [n_classes] the text query ("sneaker", "grinning face")
    int *source;                 // [n_classes] 0 Fashion-MNIST, 1 emoji
    int *heldout;                // [n_classes] 1 = never in train
    int64_t *instances;          // [n_classes * 2] source images: train-style, val-style
    int64_t images[VLM_SCENES_SPLITS], boxes[VLM_SCENES_SPLITS];
    int64_t *class_boxes;        // [VLM_SCENES_SPLITS * n_classes]
    int64_t size_images[VLM_SCENES_MAX_SIZES]; // images per canvas size (all splits)
    int64_t emoji_pool;          // emoji titles that passed the filters
    double seconds;
} vlm_scenes_report;

// Defaults above; out_dir NULL, fmnist_dir "data/fashion-mnist", emoji_dir "data/emoji".
void vlm_scenes_opts_default(vlm_scenes_opts *o);
// Builds DIR/{train,val,heldout}/NNNNNN.png, DIR/{train,val,heldout}.json
// (COCO: images, annotations with bbox [x,y,w,h] in pixels = the extent of the
// object's visible pixels, area = the visible pixel count, iscrowd 0;
// categories: train/val hold the seen classes, heldout the held-out ones, ids
// shared), DIR/classnames.txt (all classes, line k = id k + 1),
// DIR/{seen,heldout}_classnames.txt (the files' category lists in order) and
// DIR/README. Output is a pure function of opts (thread count does not matter).
// rep may be NULL; otherwise free it with vlm_scenes_report_free.
vlm_status vlm_scenes_build(const vlm_scenes_opts *o, vlm_scenes_report *rep, vlm_error *err);
void vlm_scenes_report_free(vlm_scenes_report *r);
// Parses "64,96" into sizes (16..1024 each).
vlm_status vlm_scenes_parse_sizes(const char *s, vlm_scenes_opts *o, vlm_error *err);

#endif
