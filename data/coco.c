// COCO ground-truth and results JSON: reading with validation, building in
// code, and atomic writing (see coco.h).
#include "data/coco.h"
#include "core/fs.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

// ------------------------------------------------------------ helpers

static int grow(void **p, long *cap, long need, size_t elem) {
    if (need <= *cap) return 1;
    long c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, elem * (size_t)c);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

// A short description of a JSON value for error messages ("a string \"abc\"").
static const char *describe(const json_t *v, char *buf, size_t cap) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: snprintf(buf, cap, "an array of %zu", json_array_size(v)); return buf;
    case JSON_STRING: snprintf(buf, cap, "a string \"%.40s\"", json_string_value(v)); return buf;
    case JSON_INTEGER: snprintf(buf, cap, "the integer %" PRId64, (int64_t)json_integer_value(v)); return buf;
    case JSON_REAL: snprintf(buf, cap, "the number %.17g", json_real_value(v)); return buf;
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

static vlm_status read_whole(const char *path, char **out, size_t *len, vlm_error *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                fclose(f);
                return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory reading %zu bytes", path, cap * 2);
            }
            buf = b;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return vlm_errorf(err, VLM_ERR_IO, "%s: read failed", path);
    }
    *out = buf;
    *len = n;
    return VLM_OK;
}

static vlm_status parse_root(const char *json, size_t len, const char *name, json_t **root, vlm_error *err) {
    json_error_t je;
    *root = json_loadb(json, len, 0, &je);
    if (!*root) {
        if (len == 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: empty file, not JSON", name);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", name, je.line,
                          je.column, je.text);
    }
    return VLM_OK;
}

static vlm_status get_id(const json_t *o, const char *key, int64_t *out, const char *ctx, vlm_error *err) {
    const json_t *v = json_object_get(o, key);
    char d[96];
    if (!v) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: missing \"%s\"", ctx, key);
    if (!json_is_integer(v))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" must be an integer, got %s", ctx, key, describe(v, d, sizeof d));
    *out = (int64_t)json_integer_value(v);
    return VLM_OK;
}

static vlm_status get_number(const json_t *o, const char *key, double *out, const char *ctx, vlm_error *err) {
    const json_t *v = json_object_get(o, key);
    char d[96];
    if (!v) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: missing \"%s\"", ctx, key);
    if (!json_is_number(v))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" must be a number, got %s", ctx, key, describe(v, d, sizeof d));
    *out = json_number_value(v);
    if (!isfinite(*out)) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" is not finite", ctx, key);
    return VLM_OK;
}

// Optional non-negative integer (integral numbers accepted); absent or null -> 0.
static vlm_status get_opt_size(const json_t *o, const char *key, int64_t *out, const char *ctx, vlm_error *err) {
    const json_t *v = json_object_get(o, key);
    char d[96];
    *out = 0;
    if (!v || json_is_null(v)) return VLM_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15) {
        *out = (int64_t)json_real_value(v);
    } else {
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" must be an integer, got %s", ctx, key, describe(v, d, sizeof d));
    }
    if (*out < 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" is negative (%" PRId64 ")", ctx, key, *out);
    return VLM_OK;
}

// Optional string; absent or null -> NULL.
static vlm_status get_opt_string(const json_t *o, const char *key, const char **out, const char *ctx, vlm_error *err) {
    const json_t *v = json_object_get(o, key);
    char d[96];
    *out = NULL;
    if (!v || json_is_null(v)) return VLM_OK;
    if (!json_is_string(v))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" must be a string, got %s", ctx, key, describe(v, d, sizeof d));
    *out = json_string_value(v);
    return VLM_OK;
}

// A 0/1 flag given as an integer or a boolean; absent -> missing_value (or an error if < 0).
static vlm_status get_flag(const json_t *o, const char *key, int missing_value, int *out, const char *ctx,
                           vlm_error *err) {
    const json_t *v = json_object_get(o, key);
    char d[96];
    if (!v) {
        if (missing_value < 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: missing \"%s\"", ctx, key);
        *out = missing_value;
        return VLM_OK;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
    } else if (json_is_integer(v)) {
        *out = json_integer_value(v) != 0;
    } else {
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" must be 0/1 (integer or boolean), got %s", ctx, key,
                          describe(v, d, sizeof d));
    }
    return VLM_OK;
}

static vlm_status check_box(const double b[4], const char *ctx, vlm_error *err) {
    for (int i = 0; i < 4; i++)
        if (!isfinite(b[i])) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: bbox[%d] is not finite", ctx, i);
    if (b[2] < 0 || b[3] < 0)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: bbox [%.17g, %.17g, %.17g, %.17g] has a negative %s", ctx, b[0],
                          b[1], b[2], b[3], b[2] < 0 ? "width" : "height");
    return VLM_OK;
}

static vlm_status get_bbox(const json_t *o, double b[4], const char *ctx, vlm_error *err) {
    const json_t *v = json_object_get(o, "bbox");
    char d[96];
    if (!v) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: missing \"bbox\"", ctx);
    if (!json_is_array(v) || json_array_size(v) != 4)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"bbox\" must be [x, y, w, h] (4 numbers), got %s", ctx,
                          describe(v, d, sizeof d));
    for (size_t i = 0; i < 4; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_number(e))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: bbox[%zu] must be a number, got %s", ctx, i,
                              describe(e, d, sizeof d));
        b[i] = json_number_value(e);
    }
    return check_box(b, ctx, err);
}

// (id, position) pairs sorted by id: duplicate detection and lookups.
typedef struct {
    int64_t id;
    long idx;
} id_pos;

static int cmp_id_pos(const void *a, const void *b) {
    const id_pos *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static long find_sorted(const id_pos *s, long n, int64_t id) {
    long lo = 0, hi = n;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (s[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && s[lo].id == id ? s[lo].idx : -1;
}

// Sorted ids of n entries read through get(i); NULL on OOM. Fails with a
// message if an id repeats (what = "image", key = "images").
static id_pos *sorted_ids(long n, int64_t (*get)(const void *, long), const void *arr, const char *name,
                          const char *what, const char *key, vlm_status *st, vlm_error *err) {
    id_pos *s = malloc(sizeof *s * (size_t)(n ? n : 1));
    if (!s) {
        *st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", name);
        return NULL;
    }
    for (long i = 0; i < n; i++) s[i] = (id_pos){get(arr, i), i};
    qsort(s, (size_t)n, sizeof *s, cmp_id_pos);
    for (long i = 1; i < n; i++)
        if (s[i].id == s[i - 1].id) {
            *st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: duplicate %s id %" PRId64 " (%s[%ld] and %s[%ld])", name, what,
                             s[i].id, key, s[i - 1].idx, key, s[i].idx);
            free(s);
            return NULL;
        }
    *st = VLM_OK;
    return s;
}

static int64_t image_id_at(const void *a, long i) { return ((const vlm_coco_image *)a)[i].id; }
static int64_t category_id_at(const void *a, long i) { return ((const vlm_coco_category *)a)[i].id; }
static int64_t ann_id_at(const void *a, long i) { return ((const vlm_coco_ann *)a)[i].id; }

// Writes root to path through a temp file, fsync and rename (then fsyncs the folder).
static vlm_status dump_atomic(json_t *root, const char *path, vlm_error *err) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = json_dumpf(root, f, JSON_COMPACT | JSON_REAL_PRECISION(17)) != 0;
    bad |= fputc('\n', f) == EOF;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    int e = errno;
    bad |= fclose(f) != 0;
    if (bad) {
        unlink(tmp);
        return vlm_errorf(err, VLM_ERR_IO, "%s: write failed: %s", tmp, strerror(e ? e : errno));
    }
    return vlm_fs_commit(tmp, path, err);
}

// ------------------------------------------------------------ ground truth

void vlm_coco_gt_init(vlm_coco_gt *gt) { memset(gt, 0, sizeof *gt); }

void vlm_coco_gt_free(vlm_coco_gt *gt) {
    for (long i = 0; i < gt->n_images; i++) free(gt->images[i].file_name);
    for (long i = 0; i < gt->n_categories; i++) {
        free(gt->categories[i].name);
        free(gt->categories[i].supercategory);
    }
    free(gt->images);
    free(gt->categories);
    free(gt->anns);
    memset(gt, 0, sizeof *gt);
}

vlm_status vlm_coco_gt_add_image(vlm_coco_gt *gt, int64_t id, int64_t width, int64_t height, const char *file_name,
                                 vlm_error *err) {
    if (width < 0 || height < 0)
        return vlm_errorf(err, VLM_ERR_ARG, "image %" PRId64 ": negative size %" PRId64 " x %" PRId64, id, width, height);
    if (!grow((void **)&gt->images, &gt->cap_images, gt->n_images + 1, sizeof *gt->images))
        return vlm_errorf(err, VLM_ERR_OOM, "coco ground truth: out of memory adding image %" PRId64, id);
    vlm_coco_image *im = &gt->images[gt->n_images];
    *im = (vlm_coco_image){id, width, height, dup_or_null(file_name)};
    if (file_name && !im->file_name) return vlm_errorf(err, VLM_ERR_OOM, "coco ground truth: out of memory");
    gt->n_images++;
    return VLM_OK;
}

vlm_status vlm_coco_gt_add_category(vlm_coco_gt *gt, int64_t id, const char *name, const char *supercategory,
                                    vlm_error *err) {
    if (!grow((void **)&gt->categories, &gt->cap_categories, gt->n_categories + 1, sizeof *gt->categories))
        return vlm_errorf(err, VLM_ERR_OOM, "coco ground truth: out of memory adding category %" PRId64, id);
    vlm_coco_category *c = &gt->categories[gt->n_categories];
    *c = (vlm_coco_category){id, dup_or_null(name), dup_or_null(supercategory)};
    if ((name && !c->name) || (supercategory && !c->supercategory)) {
        free(c->name);
        free(c->supercategory);
        return vlm_errorf(err, VLM_ERR_OOM, "coco ground truth: out of memory");
    }
    gt->n_categories++;
    return VLM_OK;
}

vlm_status vlm_coco_gt_add_ann(vlm_coco_gt *gt, const vlm_coco_ann *ann, vlm_error *err) {
    vlm_coco_ann a = *ann;
    if (a.id == 0) a.id = gt->max_ann_id + 1;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "annotation %" PRId64, a.id);
    vlm_status st = check_box(a.bbox, ctx, err);
    if (st) return st;
    if (a.area < 0) a.area = a.bbox[2] * a.bbox[3];
    if (!isfinite(a.area)) return vlm_errorf(err, VLM_ERR_ARG, "%s: area is not finite", ctx);
    a.iscrowd = a.iscrowd != 0;
    a.ignore = a.ignore != 0;
    if (!grow((void **)&gt->anns, &gt->cap_anns, gt->n_anns + 1, sizeof *gt->anns))
        return vlm_errorf(err, VLM_ERR_OOM, "coco ground truth: out of memory adding %s", ctx);
    gt->anns[gt->n_anns++] = a;
    if (a.id > gt->max_ann_id) gt->max_ann_id = a.id;
    return VLM_OK;
}

long vlm_coco_gt_find_image(const vlm_coco_gt *gt, int64_t id) {
    for (long i = 0; i < gt->n_images; i++)
        if (gt->images[i].id == id) return i;
    return -1;
}

long vlm_coco_gt_find_category(const vlm_coco_gt *gt, int64_t id) {
    for (long i = 0; i < gt->n_categories; i++)
        if (gt->categories[i].id == id) return i;
    return -1;
}

vlm_status vlm_coco_gt_validate(const vlm_coco_gt *gt, const char *name, vlm_error *err) {
    vlm_status st;
    if (!name) name = "coco ground truth";
    id_pos *img = sorted_ids(gt->n_images, image_id_at, gt->images, name, "image", "images", &st, err);
    if (!img) return st;
    id_pos *cat = sorted_ids(gt->n_categories, category_id_at, gt->categories, name, "category", "categories", &st, err);
    id_pos *ann = cat ? sorted_ids(gt->n_anns, ann_id_at, gt->anns, name, "annotation", "annotations", &st, err) : NULL;
    for (long i = 0; ann && i < gt->n_anns && !st; i++) {
        const vlm_coco_ann *a = &gt->anns[i];
        char ctx[1024];
        snprintf(ctx, sizeof ctx, "%s: annotations[%ld] (id %" PRId64 ")", name, i, a->id);
        if (a->id == 0)
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: annotation id 0 is not allowed (pycocotools counts a match to id 0 as a miss)", ctx);
        else if (find_sorted(img, gt->n_images, a->image_id) < 0)
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: image_id %" PRId64 " is not in \"images\"", ctx, a->image_id);
        else if (find_sorted(cat, gt->n_categories, a->category_id) < 0)
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: category_id %" PRId64 " is not in \"categories\"", ctx,
                            a->category_id);
        else if (!(st = check_box(a->bbox, ctx, err)) && !(isfinite(a->area) && a->area >= 0))
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"area\" must be finite and >= 0, got %.17g", ctx, a->area);
    }
    free(img);
    free(cat);
    free(ann);
    return st;
}

static vlm_status gt_from_json(vlm_coco_gt *gt, const json_t *root, const char *name, vlm_error *err) {
    char ctx[1024], d[96];
    if (!json_is_object(root))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: COCO ground truth must be a JSON object, got %s", name,
                          describe(root, d, sizeof d));
    const char *keys[3] = {"images", "annotations", "categories"};
    const json_t *arr[3];
    for (int k = 0; k < 3; k++) {
        arr[k] = json_object_get(root, keys[k]);
        if (!arr[k]) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: missing \"%s\" (COCO ground truth needs images, annotations, categories)", name, keys[k]);
        if (!json_is_array(arr[k]))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: \"%s\" must be an array, got %s", name, keys[k],
                              describe(arr[k], d, sizeof d));
    }
    vlm_status st;
    size_t i;
    const json_t *v;
    json_array_foreach(arr[0], i, v) {
        snprintf(ctx, sizeof ctx, "%s: images[%zu]", name, i);
        if (!json_is_object(v))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: must be an object, got %s", ctx, describe(v, d, sizeof d));
        int64_t id = 0, w = 0, h = 0;
        const char *fn = NULL;
        if ((st = get_id(v, "id", &id, ctx, err))) return st;
        snprintf(ctx, sizeof ctx, "%s: images[%zu] (id %" PRId64 ")", name, i, id);
        if ((st = get_opt_size(v, "width", &w, ctx, err)) || (st = get_opt_size(v, "height", &h, ctx, err)) ||
            (st = get_opt_string(v, "file_name", &fn, ctx, err)) ||
            (st = vlm_coco_gt_add_image(gt, id, w, h, fn, err)))
            return st;
    }
    json_array_foreach(arr[2], i, v) {
        snprintf(ctx, sizeof ctx, "%s: categories[%zu]", name, i);
        if (!json_is_object(v))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: must be an object, got %s", ctx, describe(v, d, sizeof d));
        int64_t id = 0;
        const char *nm = NULL, *sup = NULL;
        if ((st = get_id(v, "id", &id, ctx, err))) return st;
        snprintf(ctx, sizeof ctx, "%s: categories[%zu] (id %" PRId64 ")", name, i, id);
        if ((st = get_opt_string(v, "name", &nm, ctx, err)) || (st = get_opt_string(v, "supercategory", &sup, ctx, err)) ||
            (st = vlm_coco_gt_add_category(gt, id, nm, sup, err)))
            return st;
    }
    json_array_foreach(arr[1], i, v) {
        snprintf(ctx, sizeof ctx, "%s: annotations[%zu]", name, i);
        if (!json_is_object(v))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: must be an object, got %s", ctx, describe(v, d, sizeof d));
        vlm_coco_ann a = {0};
        if ((st = get_id(v, "id", &a.id, ctx, err))) return st;
        snprintf(ctx, sizeof ctx, "%s: annotations[%zu] (id %" PRId64 ")", name, i, a.id);
        if (a.id == 0)
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: annotation id 0 is not allowed (pycocotools counts a match to id 0 as a miss)", ctx);
        if ((st = get_id(v, "image_id", &a.image_id, ctx, err)) ||
            (st = get_id(v, "category_id", &a.category_id, ctx, err)) || (st = get_bbox(v, a.bbox, ctx, err)) ||
            (st = get_number(v, "area", &a.area, ctx, err)) || (st = get_flag(v, "iscrowd", -1, &a.iscrowd, ctx, err)) ||
            (st = get_flag(v, "ignore", 0, &a.ignore, ctx, err)))
            return st;
        if (a.area < 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: negative \"area\" %.17g", ctx, a.area);
        if ((st = vlm_coco_gt_add_ann(gt, &a, err))) return st;
    }
    return vlm_coco_gt_validate(gt, name, err);
}

vlm_status vlm_coco_gt_parse(vlm_coco_gt *gt, const char *json, size_t len, const char *name, vlm_error *err) {
    vlm_coco_gt_init(gt);
    if (!name) name = "coco ground truth";
    json_t *root;
    vlm_status st = parse_root(json, len, name, &root, err);
    if (st) return st;
    st = gt_from_json(gt, root, name, err);
    json_decref(root);
    if (st) vlm_coco_gt_free(gt);
    return st;
}

vlm_status vlm_coco_gt_load(vlm_coco_gt *gt, const char *path, vlm_error *err) {
    vlm_coco_gt_init(gt);
    char *buf;
    size_t len;
    vlm_status st = read_whole(path, &buf, &len, err);
    if (st) return st;
    st = vlm_coco_gt_parse(gt, buf, len, path, err);
    free(buf);
    return st;
}

// json_object_set_new that remembers a failed allocation.
static void put(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v || json_object_set_new(o, key, v)) *bad = 1;
}

static json_t *box_json(const double b[4]) {
    return json_pack("[ffff]", b[0], b[1], b[2], b[3]);
}

vlm_status vlm_coco_gt_save(const vlm_coco_gt *gt, const char *path, vlm_error *err) {
    vlm_status st = vlm_coco_gt_validate(gt, path, err);
    if (st) return st;
    int bad = 0;
    json_t *root = json_object(), *images = json_array(), *anns = json_array(), *cats = json_array();
    if (!root || !images || !anns || !cats) bad = 1;
    for (long i = 0; i < gt->n_images && !bad; i++) {
        const vlm_coco_image *im = &gt->images[i];
        json_t *o = json_object();
        put(o, "id", json_integer(im->id), &bad);
        if (im->width || im->height) {
            put(o, "width", json_integer(im->width), &bad);
            put(o, "height", json_integer(im->height), &bad);
        }
        if (im->file_name) put(o, "file_name", json_string(im->file_name), &bad);
        if (!o || json_array_append_new(images, o)) bad = 1;
    }
    for (long i = 0; i < gt->n_anns && !bad; i++) {
        const vlm_coco_ann *a = &gt->anns[i];
        json_t *o = json_object();
        put(o, "id", json_integer(a->id), &bad);
        put(o, "image_id", json_integer(a->image_id), &bad);
        put(o, "category_id", json_integer(a->category_id), &bad);
        put(o, "bbox", box_json(a->bbox), &bad);
        put(o, "area", json_real(a->area), &bad);
        put(o, "iscrowd", json_integer(a->iscrowd), &bad);
        if (a->ignore) put(o, "ignore", json_integer(a->ignore), &bad);
        if (!o || json_array_append_new(anns, o)) bad = 1;
    }
    for (long i = 0; i < gt->n_categories && !bad; i++) {
        const vlm_coco_category *c = &gt->categories[i];
        json_t *o = json_object();
        put(o, "id", json_integer(c->id), &bad);
        if (c->name) put(o, "name", json_string(c->name), &bad);
        if (c->supercategory) put(o, "supercategory", json_string(c->supercategory), &bad);
        if (!o || json_array_append_new(cats, o)) bad = 1;
    }
    if (root) {
        put(root, "images", images, &bad);
        put(root, "annotations", anns, &bad);
        put(root, "categories", cats, &bad);
    } else {
        json_decref(images);
        json_decref(anns);
        json_decref(cats);
    }
    // json_string fails on invalid UTF-8 as well as on OOM.
    if (bad) st = vlm_errorf(err, VLM_ERR_ARG, "%s: cannot build the JSON (out of memory, or a name that is not UTF-8)", path);
    else st = dump_atomic(root, path, err);
    json_decref(root);
    return st;
}

// ------------------------------------------------------------ results

void vlm_coco_results_init(vlm_coco_results *r) { memset(r, 0, sizeof *r); }

void vlm_coco_results_free(vlm_coco_results *r) {
    free(r->dets);
    memset(r, 0, sizeof *r);
}

vlm_status vlm_coco_results_add(vlm_coco_results *r, int64_t image_id, int64_t category_id, const double bbox[4],
                                double score, vlm_error *err) {
    char ctx[96];
    snprintf(ctx, sizeof ctx, "result %ld (image_id %" PRId64 ")", r->n, image_id);
    vlm_status st = check_box(bbox, ctx, err);
    if (st) return st;
    if (!isfinite(score)) return vlm_errorf(err, VLM_ERR_ARG, "%s: score is not finite", ctx);
    if (!grow((void **)&r->dets, &r->cap, r->n + 1, sizeof *r->dets))
        return vlm_errorf(err, VLM_ERR_OOM, "coco results: out of memory adding %s", ctx);
    vlm_coco_det *d = &r->dets[r->n++];
    d->image_id = image_id;
    d->category_id = category_id;
    memcpy(d->bbox, bbox, sizeof d->bbox);
    d->score = score;
    return VLM_OK;
}

static vlm_status results_from_json(vlm_coco_results *r, const json_t *root, const char *name, const vlm_coco_gt *gt,
                                    vlm_error *err) {
    char ctx[1024], d[96];
    if (!json_is_array(root))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: COCO results must be a JSON array of detections, got %s", name,
                          describe(root, d, sizeof d));
    vlm_status st = VLM_OK;
    id_pos *img = NULL;
    if (gt) {
        img = sorted_ids(gt->n_images, image_id_at, gt->images, "ground truth", "image", "images", &st, err);
        if (!img) return st;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(root, i, v) {
        snprintf(ctx, sizeof ctx, "%s: results[%zu]", name, i);
        if (!json_is_object(v)) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: must be an object, got %s", ctx, describe(v, d, sizeof d));
            break;
        }
        int64_t image_id = 0, category_id = 0;
        double b[4] = {0}, score = 0;
        if ((st = get_id(v, "image_id", &image_id, ctx, err))) break;
        snprintf(ctx, sizeof ctx, "%s: results[%zu] (image_id %" PRId64 ")", name, i, image_id);
        if (img && find_sorted(img, gt->n_images, image_id) < 0) {
            st = vlm_errorf(err, VLM_ERR_FORMAT,
                            "%s: image_id %" PRId64 " is not an image of the ground truth (pycocotools: \"Results do not correspond to current coco set\")",
                            ctx, image_id);
            break;
        }
        if ((st = get_id(v, "category_id", &category_id, ctx, err)) || (st = get_bbox(v, b, ctx, err)) ||
            (st = get_number(v, "score", &score, ctx, err)) ||
            (st = vlm_coco_results_add(r, image_id, category_id, b, score, err)))
            break;
    }
    free(img);
    return st;
}

vlm_status vlm_coco_results_parse(vlm_coco_results *r, const char *json, size_t len, const char *name,
                                  const vlm_coco_gt *gt, vlm_error *err) {
    vlm_coco_results_init(r);
    if (!name) name = "coco results";
    json_t *root;
    vlm_status st = parse_root(json, len, name, &root, err);
    if (st) return st;
    st = results_from_json(r, root, name, gt, err);
    json_decref(root);
    if (st) vlm_coco_results_free(r);
    return st;
}

vlm_status vlm_coco_results_load(vlm_coco_results *r, const char *path, const vlm_coco_gt *gt, vlm_error *err) {
    vlm_coco_results_init(r);
    char *buf;
    size_t len;
    vlm_status st = read_whole(path, &buf, &len, err);
    if (st) return st;
    st = vlm_coco_results_parse(r, buf, len, path, gt, err);
    free(buf);
    return st;
}

vlm_status vlm_coco_results_save(const vlm_coco_results *r, const char *path, vlm_error *err) {
    int bad = 0;
    json_t *root = json_array();
    if (!root) bad = 1;
    for (long i = 0; i < r->n && !bad; i++) {
        const vlm_coco_det *dt = &r->dets[i];
        json_t *o = json_object();
        put(o, "image_id", json_integer(dt->image_id), &bad);
        put(o, "category_id", json_integer(dt->category_id), &bad);
        put(o, "bbox", box_json(dt->bbox), &bad);
        put(o, "score", json_real(dt->score), &bad);
        if (!o || json_array_append_new(root, o)) bad = 1;
    }
    vlm_status st = bad ? vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory building the results JSON", path)
                        : dump_atomic(root, path, err);
    json_decref(root);
    return st;
}
