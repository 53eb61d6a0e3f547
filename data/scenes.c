// `vlm data scenes`: pastes Fashion-MNIST items and emoji onto small canvases
// and writes PNGs + COCO ground truth. Every image is a pure function of
// (seed, split, index) through its own Philox stream, so images are built in
// parallel and the output does not depend on the thread count.
#include "data/scenes.h"
#include "core/clock.h"
#include "core/box.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include "core/rng.h"
#include "data/dataset.h"
#include "data/image.h"
#ifdef _OPENMP
#include <omp.h>
#endif

// Philox stream ids of this module (any uint32 not used elsewhere).
enum {
    STREAM_CLASSES = 0x53434c31, // emoji pick, held-out pick
    STREAM_IMAGE = 0x53434e30,   // + split: one sub-stream per image
};

// A source pixel belongs to the object when its alpha is >= this (of 255),
// both in the source cut and after resampling; weaker pixels are not drawn,
// so the drawn pixels and the box agree exactly.
#define ALPHA_MIN 64
// A Fashion-MNIST pixel is part of the item when its gray value is >= this.
#define FM_INK 16
#define MAX_ATTEMPTS 30
#define MAX_OBJECTS 64

static const char *FMNIST_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
static const char *DEFAULT_CATEGORIES = "animals & nature,food & drink,travel & places,activities,objects";
// Emoji whose names use one of these words (or its plural) are left out when
// Fashion-MNIST is a source too, so no text query means both an emoji and a
// Fashion-MNIST class ("dress", "t-shirt", "womans boots", "handbag").
static const char *CLOTHING_WORDS[] = {"t-shirt", "shirt",   "top",    "trouser",  "pullover", "sweater", "dress",
                                       "coat",    "sandal",  "sneaker", "bag",     "handbag",  "purse",   "boot",
                                       "shoe",    "jeans",   "clothes", "kimono",  "sari",     "bikini",  "swimsuit",
                                       "sock",    "glove",   "scarf",  "satchel",  "pouch",    "briefcase", "luggage",
                                       "ankle",   "clutch",  "heel"};

void vlm_scenes_opts_default(vlm_scenes_opts *o) {
    memset(o, 0, sizeof *o);
    o->fmnist_dir = "data/fashion-mnist";
    o->emoji_dir = "data/emoji";
    o->sizes[0] = 64;
    o->sizes[1] = 96;
    o->n_sizes = 2;
    o->n_train = 10000;
    o->n_val = 1000;
    o->n_heldout = 500;
    o->max_objects = 4;
    o->emoji_classes = 32;
    o->emoji_categories = DEFAULT_CATEGORIES;
    o->heldout_n = -1;
    o->min_scale = 0.25f;
    o->max_scale = 0.6f;
    o->max_iou = 0.3f;
    o->min_visible = 0.7f;
    o->background = VLM_SCENES_BG_MIXED;
    o->emoji_split = VLM_SCENES_EMOJI_SHARED;
}

vlm_status vlm_scenes_parse_sizes(const char *s, vlm_scenes_opts *o, vlm_error *err) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p || (*e && *e != ',') || v < 16 || v > 1024)
            return vlm_errorf(err, VLM_ERR_ARG, "scenes: bad canvas size list '%s' (want sides in 16..1024, e.g. 64,96)",
                              s);
        if (n == VLM_SCENES_MAX_SIZES)
            return vlm_errorf(err, VLM_ERR_ARG, "scenes: at most %d canvas sizes, got '%s'", VLM_SCENES_MAX_SIZES, s);
        o->sizes[n++] = (int)v;
        p = *e ? e + 1 : e;
    }
    if (!n) return vlm_errorf(err, VLM_ERR_ARG, "scenes: empty canvas size list");
    o->n_sizes = n;
    return VLM_OK;
}

// ------------------------------------------------------------ small helpers

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static int grow(void **p, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < bytes) c *= 2;
    void *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int is_dir(const char *p) {
    struct stat sb;
    return p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static vlm_status mkdir_p(const char *path, vlm_error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: output path too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    if (!is_dir(path)) return vlm_errorf(err, VLM_ERR_IO, "%s: exists and is not a directory", path);
    return VLM_OK;
}

// The text query for a Fashion-MNIST class name: lowercased, first
// alternative only ("T-shirt/top" -> "t-shirt").
static char *query_name(const char *name) {
    char *q = xstrdup(name);
    if (!q) return NULL;
    char *slash = strchr(q, '/');
    if (slash) *slash = 0;
    for (char *p = q; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return q;
}

static int word_count(const char *s) {
    int n = 0, in = 0;
    for (; *s; s++) {
        if (*s == ' ') in = 0;
        else if (!in) in = 1, n++;
    }
    return n;
}

static int has_clothing_word(const char *s) {
    char w[64];
    while (*s) {
        while (*s == ' ') s++;
        size_t n = 0;
        while (s[n] && s[n] != ' ') n++;
        if (n && n < sizeof w) {
            memcpy(w, s, n);
            w[n] = 0;
            for (size_t k = 0; k < sizeof CLOTHING_WORDS / sizeof *CLOTHING_WORDS; k++) {
                size_t m = strlen(CLOTHING_WORDS[k]);
                if (!strcmp(w, CLOTHING_WORDS[k]) || (n == m + 1 && w[m] == 's' && !strncmp(w, CLOTHING_WORDS[k], m)))
                    return 1;
            }
        }
        s += n;
    }
    return 0;
}

// 1 if `name` is one of the comma-separated items of `list` (case-insensitive, trimmed).
static int in_list(const char *list, const char *name) {
    size_t nl = strlen(name);
    const char *p = list;
    while (*p) {
        while (*p == ' ') p++;
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        size_t m = n;
        while (m && p[m - 1] == ' ') m--;
        if (m == nl && !strncasecmp(p, name, nl)) return 1;
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

// ------------------------------------------------------------ sources

typedef struct {
    int w, h;           // the cut (alpha bounding box)
    uint8_t *rgba;      // [h, w, 4]
    char *src;          // path relative to the emoji folder
} em_inst;

typedef struct {
    char *name;         // text query
    int source;         // 0 Fashion-MNIST, 1 emoji
    int heldout;
    int64_t *inst[2];   // per style (0 train, 1 val): Fashion-MNIST sample or em_inst index
    int64_t n_inst[2];
} sc_class;

typedef struct {
    int em_ds; int64_t row; // manifest (0 train.tsv, 1 val_twitter.tsv) and row
    const char *title;
    int64_t order;
} em_row;

typedef struct {
    const vlm_scenes_opts *o;
    int use_fm, use_em;
    vlm_dataset fm[2];          // train, t10k
    int fm_open[2];
    int fm_n;                   // Fashion-MNIST classes
    vlm_dataset em_ds[2];       // train.tsv, val_twitter.tsv
    int em_open[2];
    char em_prefix[2][4096];    // folder prefix of each manifest's resolved paths
    em_inst *em;
    int64_t n_em;
    int64_t em_pool;
    sc_class *cls;
    int n_cls;
    int *split_cls[VLM_SCENES_SPLITS]; // classes that may appear in each split
    int split_n[VLM_SCENES_SPLITS];
} sc_ctx;

static vlm_status open_fmnist(sc_ctx *c, vlm_error *err) {
    const char *dir = c->o->fmnist_dir;
    if (!is_dir(dir))
        return vlm_errorf(err, VLM_ERR_IO,
                          "Fashion-MNIST source '%s': no such directory (fetch it with data/get-fashion-mnist.sh, "
                          "or leave fashion-mnist out of the sources)",
                          dir);
    const char *stem[2] = {"train", "t10k"};
    for (int s = 0; s < 2; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, stem[s]);
        if (!is_file(path)) snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, stem[s]);
        if (!is_file(path))
            return vlm_errorf(err, VLM_ERR_IO, "Fashion-MNIST source '%s': no %s-images-idx3-ubyte[.gz]", dir, stem[s]);
        vlm_dataset_opts dopts;
        vlm_dataset_opts_default(&dopts);
        dopts.require_label = 1;
        vlm_status st = vlm_dataset_open(&c->fm[s], path, &dopts, err);
        if (st) return vlm_error_prefix(err, "Fashion-MNIST source");
        c->fm_open[s] = 1;
        if (c->fm[s].kind != VLM_DS_IDX)
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: not an IDX images file", path);
    }
    c->fm_n = c->fm[0].n_classes > c->fm[1].n_classes ? c->fm[0].n_classes : c->fm[1].n_classes;
    if (c->fm_n < 2 || c->fm_n > 250)
        return vlm_errorf(err, VLM_ERR_FORMAT, "Fashion-MNIST source '%s': %d classes (want 2..250)", dir, c->fm_n);
    if (!c->fm[0].classnames && c->fm_n > 10)
        return vlm_errorf(err, VLM_ERR_FORMAT, "Fashion-MNIST source '%s': %d classes but no classnames.txt", dir,
                          c->fm_n);
    return VLM_OK;
}

static const char *fm_classname(const sc_ctx *c, int k) {
    if (c->fm[0].classnames && k < c->fm[0].n_classes && c->fm[0].classnames[k]) return c->fm[0].classnames[k];
    return FMNIST_NAMES[k];
}

static int cmp_row(const void *a, const void *b) {
    const em_row *x = a, *y = b;
    int d = strcmp(x->title, y->title);
    if (d) return d;
    return x->order < y->order ? -1 : x->order > y->order;
}

typedef struct {
    const char *path;
    int cat;
} path_cat;

static int cmp_path_cat(const void *a, const void *b) {
    return strcmp(((const path_cat *)a)->path, ((const path_cat *)b)->path);
}

typedef struct {
    int64_t first, count; // range in the sorted rows
    int64_t order;        // first appearance
    int n_style[2];
} em_group;

static int cmp_group_order(const void *a, const void *b) {
    const em_group *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

// Decodes a PNG to RGBA and cuts it to the bounding box of alpha >= ALPHA_MIN.
static vlm_status load_emoji(const vlm_dataset *ds, int64_t row, const char *prefix, vlm_sample *smp, em_inst *out,
                             vlm_error *err) {
    memset(out, 0, sizeof *out);
    vlm_status st = vlm_dataset_read(ds, row, smp, err);
    if (st) return st;
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, smp->data, smp->size))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: cannot read as PNG: %s", smp->name, im.message);
    if (im.width > 4096 || im.height > 4096) {
        png_image_free(&im);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: %ux%u is too large for an emoji source (max 4096)", smp->name,
                          im.width, im.height);
    }
    im.format = PNG_FORMAT_RGBA;
    int w = (int)im.width, h = (int)im.height;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(im));
    if (!px) {
        png_image_free(&im);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", smp->name);
    }
    if (!png_image_finish_read(&im, NULL, px, 0, NULL)) {
        free(px);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: corrupt PNG: %s", smp->name, im.message);
    }
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (px[((size_t)y * w + x) * 4 + 3] >= ALPHA_MIN) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) {
        free(px);
        return VLM_OK; // fully transparent: out->rgba stays NULL, the caller skips it
    }
    out->w = x1 - x0 + 1;
    out->h = y1 - y0 + 1;
    out->rgba = malloc((size_t)out->w * out->h * 4);
    size_t pl = strlen(prefix);
    out->src = xstrdup(strncmp(smp->name, prefix, pl) ? smp->name : smp->name + pl);
    if (!out->rgba || !out->src) {
        free(px);
        free(out->rgba);
        free(out->src);
        memset(out, 0, sizeof *out);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", smp->name);
    }
    for (int y = 0; y < out->h; y++)
        memcpy(out->rgba + (size_t)y * out->w * 4, px + ((size_t)(y0 + y) * w + x0) * 4, (size_t)out->w * 4);
    free(px);
    return VLM_OK;
}

// Opens train.tsv and val_twitter.tsv (the latter optional for the shared
// split) of the emoji folder; em_prefix[s] = the folder prefix of their paths.
static vlm_status open_manifests(sc_ctx *c, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    const char *dir = o->emoji_dir;
    if (!is_dir(dir))
        return vlm_errorf(err, VLM_ERR_IO,
                          "emoji source '%s': no such directory (fetch it with data/get-emoji.sh, or leave emoji out "
                          "of the sources)",
                          dir);
    const char *man[2] = {"train.tsv", "val_twitter.tsv"};
    for (int s = 0; s < 2; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, man[s]);
        if (!is_file(path)) {
            if (s == 1 && o->emoji_split == VLM_SCENES_EMOJI_SHARED) continue;
            return vlm_errorf(err, VLM_ERR_IO, "emoji source '%s': no %s%s", dir, man[s],
                              s == 1 ? " (needed for the vendor split; or use the shared split)" : "");
        }
        vlm_dataset_opts dopts;
        vlm_dataset_opts_default(&dopts);
        dopts.require_caption = 1;
        vlm_status st = vlm_dataset_open(&c->em_ds[s], path, &dopts, err);
        if (st) return vlm_error_prefix(err, "emoji source");
        c->em_open[s] = 1;
        snprintf(c->em_prefix[s], sizeof c->em_prefix[s], "%s", path);
        char *slash = strrchr(c->em_prefix[s], '/');
        slash[1] = 0;
    }
    return VLM_OK;
}

// The emoji folder's top-level categories (categories.tsv, labels named by
// category_classnames.txt), needed only to filter by category.
typedef struct {
    int filter;     // 1: keep only titles with an image in o->emoji_categories
    vlm_dataset ds; // categories.tsv
    int open;
    path_cat *pc;   // [n_pc] (emoji path, category), sorted by path
    int64_t n_pc;
} em_cats;

// Loads the categories when filtering (o->emoji_categories not "all"); the
// default filter without the category files (e.g. a hand-made folder) keeps all.
static vlm_status load_categories(const sc_ctx *c, em_cats *cat, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    const char *dir = o->emoji_dir;
    cat->filter = o->emoji_categories && strcasecmp(o->emoji_categories, "all") != 0;
    if (!cat->filter) return VLM_OK;
    char path[4096], names[4096];
    snprintf(path, sizeof path, "%s/categories.tsv", dir);
    snprintf(names, sizeof names, "%s/category_classnames.txt", dir);
    if (!is_file(path) || !is_file(names)) {
        if (o->emoji_categories != DEFAULT_CATEGORIES)
            return vlm_errorf(err, VLM_ERR_IO,
                              "emoji source '%s': filtering by category needs categories.tsv and "
                              "category_classnames.txt",
                              dir);
        cat->filter = 0; // default filter, no category files (e.g. a hand-made folder): keep all
        return VLM_OK;
    }
    vlm_dataset_opts dopts;
    vlm_dataset_opts_default(&dopts);
    dopts.classnames = names;
    dopts.require_label = 1;
    if (vlm_dataset_open(&cat->ds, path, &dopts, err)) return vlm_error_prefix(err, "emoji source");
    cat->open = 1;
    cat->pc = malloc(sizeof *cat->pc * (size_t)(cat->ds.n ? cat->ds.n : 1));
    if (!cat->pc) return vlm_errorf(err, VLM_ERR_OOM, "emoji source: out of memory");
    char buf[64];
    for (int64_t i = 0; i < cat->ds.n; i++) {
        cat->pc[cat->n_pc].path = vlm_dataset_source(&cat->ds, i, buf, sizeof buf);
        cat->pc[cat->n_pc].cat = vlm_dataset_label(&cat->ds, i);
        cat->n_pc++;
    }
    qsort(cat->pc, (size_t)cat->n_pc, sizeof *cat->pc, cmp_path_cat);
    return VLM_OK;
}

// The titled rows of both manifests sorted by title (*rows), grouped into one
// group per title (*groups [*n_groups]) in order of first appearance.
static vlm_status group_titles(const sc_ctx *c, em_row **rows_out, em_group **groups_out, int64_t *n_groups_out,
                               vlm_error *err) {
    int64_t n_rows = 0, cap_rows = 0;
    for (int s = 0; s < 2; s++) cap_rows += c->em_open[s] ? c->em_ds[s].n : 0;
    em_row *rows = *rows_out = malloc(sizeof *rows * (size_t)(cap_rows ? cap_rows : 1));
    if (!rows) return vlm_errorf(err, VLM_ERR_OOM, "emoji source: out of memory");
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; c->em_open[s] && i < c->em_ds[s].n; i++) {
            const char *t = vlm_dataset_caption(&c->em_ds[s], i);
            if (!t || !*t) continue;
            rows[n_rows] = (em_row){s, i, t, n_rows};
            n_rows++;
        }
    qsort(rows, (size_t)n_rows, sizeof *rows, cmp_row);
    em_group *groups = *groups_out = malloc(sizeof *groups * (size_t)(n_rows ? n_rows : 1));
    if (!groups) return vlm_errorf(err, VLM_ERR_OOM, "emoji source: out of memory");
    int64_t n_groups = 0;
    for (int64_t i = 0; i < n_rows;) {
        int64_t j = i;
        em_group g = {i, 0, rows[i].order, {0, 0}};
        while (j < n_rows && !strcmp(rows[j].title, rows[i].title)) {
            g.n_style[rows[j].em_ds]++;
            j++;
        }
        g.count = j - i;
        groups[n_groups++] = g;
        i = j;
    }
    qsort(groups, (size_t)n_groups, sizeof *groups, cmp_group_order);
    *n_groups_out = n_groups;
    return VLM_OK;
}

// 1 if one of group G's images lies in one of the allowed categories.
static int in_category(const sc_ctx *c, const em_cats *cat, const em_row *rows, const em_group *G) {
    for (int64_t r = G->first; r < G->first + G->count; r++) {
        char buf[64];
        path_cat key = {vlm_dataset_source(&c->em_ds[rows[r].em_ds], rows[r].row, buf, sizeof buf), 0};
        path_cat *hit = bsearch(&key, cat->pc, (size_t)cat->n_pc, sizeof *cat->pc, cmp_path_cat);
        if (hit && hit->cat >= 0 && hit->cat < cat->ds.n_classes && cat->ds.classnames &&
            in_list(c->o->emoji_categories, cat->ds.classnames[hit->cat]))
            return 1;
    }
    return 0;
}

// The pool: titles with images for every split, in an allowed category,
// short (<= 3 words, no ',' or ':'), not naming clothing next to Fashion-MNIST.
// Moves the pool's groups to the front of groups (order kept); returns their count.
static int64_t filter_pool(const sc_ctx *c, const em_cats *cat, const em_row *rows, em_group *groups,
                           int64_t n_groups) {
    const vlm_scenes_opts *o = c->o;
    int64_t n_pool = 0;
    for (int64_t g = 0; g < n_groups; g++) {
        em_group *G = &groups[g];
        const char *t = rows[G->first].title;
        int ok = o->emoji_split == VLM_SCENES_EMOJI_VENDOR ? G->n_style[0] > 0 && G->n_style[1] > 0 : G->count > 0;
        ok = ok && word_count(t) <= 3 && !strpbrk(t, ",:") && !(c->use_fm && has_clothing_word(t));
        if (ok && cat->filter) ok = in_category(c, cat, rows, G);
        if (ok) groups[n_pool++] = *G;
    }
    return n_pool;
}

// Picks the emoji classes among the pool [n_pool]: forced names (from
// --heldout) first, then the seed's shuffle of the pool, up to
// o->emoji_classes in all. *picked_out: [n_pool] 1 = picked (malloc'd).
static vlm_status pick_titles(const sc_ctx *c, const em_row *rows, const em_group *pool, int64_t n_pool,
                              char **forced, int n_forced, int filter, char **picked_out, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    int want = o->emoji_classes > n_forced ? o->emoji_classes : n_forced;
    if (want > n_pool) want = (int)n_pool;
    uint32_t *perm = malloc(sizeof *perm * (size_t)(n_pool ? n_pool : 1));
    char *picked = calloc((size_t)(n_pool ? n_pool : 1), 1);
    if (!perm || !picked) {
        free(perm);
        free(picked);
        return vlm_errorf(err, VLM_ERR_OOM, "emoji source: out of memory");
    }
    int n_picked = 0;
    for (int f = 0; f < n_forced; f++) {
        int64_t hit = -1;
        for (int64_t g = 0; g < n_pool && hit < 0; g++)
            if (!strcasecmp(rows[pool[g].first].title, forced[f])) hit = g;
        if (hit < 0) {
            free(perm);
            free(picked);
            return vlm_errorf(err, VLM_ERR_ARG,
                              "held-out class '%s' is neither a Fashion-MNIST class nor an emoji of the pool (%lld "
                              "titles in %s with images for every split, at most 3 words, in the categories '%s')",
                              forced[f], (long long)n_pool, o->emoji_dir, filter ? o->emoji_categories : "all");
        }
        if (!picked[hit]) picked[hit] = 1, n_picked++;
    }
    for (int64_t g = 0; g < n_pool; g++) perm[g] = (uint32_t)g;
    vlm_rng r;
    vlm_rng_init(&r, o->seed, STREAM_CLASSES, 0);
    vlm_rng_shuffle_u32(&r, perm, (uint64_t)n_pool);
    for (int64_t k = 0; k < n_pool && n_picked < want; k++)
        if (!picked[perm[k]]) picked[perm[k]] = 1, n_picked++;
    free(perm);
    *picked_out = picked;
    return VLM_OK;
}

// Appends the class of title group G to c->cls, its images decoded and cut
// into c->em (instances per style: shared split both, vendor split by manifest).
static vlm_status add_emoji_class(sc_ctx *c, const em_row *rows, const em_group *G, vlm_sample *smp,
                                  vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    sc_class *k = &c->cls[c->n_cls];
    memset(k, 0, sizeof *k);
    c->n_cls++;
    k->name = xstrdup(rows[G->first].title);
    k->source = 1;
    for (int s = 0; s < 2; s++) {
        k->inst[s] = malloc(sizeof(int64_t) * (size_t)G->count);
        if (!k->inst[s] || !k->name) return vlm_errorf(err, VLM_ERR_OOM, "emoji source: out of memory");
    }
    em_inst *grown = realloc(c->em, sizeof *c->em * (size_t)(c->n_em + G->count));
    if (!grown) return vlm_errorf(err, VLM_ERR_OOM, "emoji source: out of memory");
    c->em = grown;
    for (int64_t r2 = G->first; r2 < G->first + G->count; r2++) {
        int s = rows[r2].em_ds;
        em_inst *e = &c->em[c->n_em];
        vlm_status st = load_emoji(&c->em_ds[s], rows[r2].row, c->em_prefix[s], smp, e, err);
        if (st) return st;
        if (!e->rgba) continue;
        int64_t id = c->n_em++;
        if (o->emoji_split == VLM_SCENES_EMOJI_SHARED) {
            k->inst[0][k->n_inst[0]++] = id;
            k->inst[1][k->n_inst[1]++] = id;
        } else {
            k->inst[s][k->n_inst[s]++] = id;
        }
    }
    if (!k->n_inst[0] || !k->n_inst[1])
        return vlm_errorf(err, VLM_ERR_FORMAT, "emoji source '%s': class '%s' has no visible image for %s",
                          o->emoji_dir, k->name, !k->n_inst[0] ? "train" : "val");
    return VLM_OK;
}

// Opens the emoji manifests, filters the pool of titles and picks the classes
// (forced names first, then by seed). Fills c->cls[first..] and c->em.
static vlm_status open_emoji(sc_ctx *c, char **forced, int n_forced, vlm_error *err) {
    vlm_status st = open_manifests(c, err);
    if (st) return st;
    em_cats cat;
    memset(&cat, 0, sizeof cat);
    em_row *rows = NULL;
    em_group *groups = NULL;
    char *picked = NULL;
    int64_t n_groups = 0, n_pool = 0;
    vlm_sample smp;
    vlm_sample_init(&smp);
    if ((st = load_categories(c, &cat, err))) goto done;
    if ((st = group_titles(c, &rows, &groups, &n_groups, err))) goto done;
    n_pool = c->em_pool = filter_pool(c, &cat, rows, groups, n_groups);
    if ((st = pick_titles(c, rows, groups, n_pool, forced, n_forced, cat.filter, &picked, err))) goto done;
    // Classes in pool order; decode and cut their images.
    for (int64_t g = 0; g < n_pool && !st; g++)
        if (picked[g]) st = add_emoji_class(c, rows, &groups[g], &smp, err);
done:
    vlm_sample_free(&smp);
    free(picked);
    free(groups);
    free(rows);
    free(cat.pc);
    if (cat.open) vlm_dataset_free(&cat.ds);
    return st;
}

// ------------------------------------------------------------ drawing

// Antialiased linear (triangle) filter taps along one axis, in -> out pixels:
// support widened by the downscale factor (as PIL's BILINEAR).
typedef struct {
    int *first, *count;
    float *w;
    size_t cap_first, cap_count, cap_w;
    int k;
} axis_taps;

static int taps_build(axis_taps *t, int in, int out) {
    double scale = (double)in / out, support = scale > 1.0 ? scale : 1.0;
    int k = (int)ceil(support) * 2 + 2;
    if (grow((void **)&t->first, &t->cap_first, sizeof(int) * (size_t)out) ||
        grow((void **)&t->count, &t->cap_count, sizeof(int) * (size_t)out) ||
        grow((void **)&t->w, &t->cap_w, sizeof(float) * (size_t)out * (size_t)k))
        return -1;
    t->k = k;
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        double sum = 0;
        int n = 0;
        float *w = t->w + (size_t)o * k;
        for (int i = lo; i < hi && n < k; i++, n++) {
            double d = fabs((i + 0.5 - center) / support);
            w[n] = (float)(d < 1.0 ? 1.0 - d : 0.0);
            sum += w[n];
        }
        if (sum > 0) {
            for (int i = 0; i < n; i++) w[i] = (float)(w[i] / sum);
        } else { // cannot happen for in >= 1; nearest pixel as a guard
            lo = (int)center < in ? (int)center : in - 1;
            n = 1;
            w[0] = 1.0f;
        }
        t->first[o] = lo;
        t->count[o] = n;
    }
    return 0;
}

typedef struct {
    float *canvas;       // [S, S, 3] in 0..255
    uint8_t *owner;      // [S, S]: 0 background, k + 1 object k
    uint8_t *rgb;        // [S, S, 3] final image
    float *cut, *obj, *tmp;
    size_t cap_canvas, cap_owner, cap_rgb, cap_cut, cap_obj, cap_tmp;
    axis_taps tx, ty;
    vlm_sample smp;
} scene_ws;

static void ws_free(scene_ws *w) {
    free(w->canvas);
    free(w->owner);
    free(w->rgb);
    free(w->cut);
    free(w->obj);
    free(w->tmp);
    free(w->tx.first);
    free(w->tx.count);
    free(w->tx.w);
    free(w->ty.first);
    free(w->ty.count);
    free(w->ty.w);
    vlm_sample_free(&w->smp);
}

// src [sh, sw, 4] premultiplied -> dst [dh, dw, 4] premultiplied.
static int resample(scene_ws *w, const float *src, int sw, int sh, float *dst, int dw, int dh) {
    if (taps_build(&w->tx, sw, dw) || taps_build(&w->ty, sh, dh)) return -1;
    if (grow((void **)&w->tmp, &w->cap_tmp, sizeof(float) * (size_t)sh * dw * 4)) return -1;
    float *tmp = w->tmp;
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < dw; x++) {
            const float *wt = w->tx.w + (size_t)x * w->tx.k;
            const float *s = src + ((size_t)y * sw + w->tx.first[x]) * 4;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int i = 0; i < w->tx.count[x]; i++) {
                a0 += wt[i] * s[4 * i];
                a1 += wt[i] * s[4 * i + 1];
                a2 += wt[i] * s[4 * i + 2];
                a3 += wt[i] * s[4 * i + 3];
            }
            float *d = tmp + ((size_t)y * dw + x) * 4;
            d[0] = a0, d[1] = a1, d[2] = a2, d[3] = a3;
        }
    for (int y = 0; y < dh; y++) {
        const float *wt = w->ty.w + (size_t)y * w->ty.k;
        float *d = dst + (size_t)y * dw * 4;
        for (size_t x = 0; x < (size_t)dw * 4; x++) d[x] = 0;
        for (int i = 0; i < w->ty.count[y]; i++) {
            const float *s = tmp + (size_t)(w->ty.first[y] + i) * dw * 4;
            for (size_t x = 0; x < (size_t)dw * 4; x++) d[x] += wt[i] * s[x];
        }
    }
    return 0;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static void draw_background(const vlm_scenes_opts *o, vlm_rng *r, float *cv, int S) {
    float c1[3], c2[3];
    int kind = o->background == VLM_SCENES_BG_MIXED ? (int)vlm_rng_below(r, 3) : 0;
    for (int c = 0; c < 3; c++)
        c1[c] = o->background == VLM_SCENES_BG_FIXED ? (float)o->bg_rgb[c] : 30.0f + 195.0f * vlm_rng_uniform(r);
    if (kind == 1) { // linear gradient to a nearby colour along a random direction
        for (int c = 0; c < 3; c++) c2[c] = clampf(c1[c] + (vlm_rng_uniform(r) * 2 - 1) * 70.0f, 0, 255);
        float th = 6.2831853f * vlm_rng_uniform(r), ca = cosf(th), sa = sinf(th);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                float t = clampf(((x + 0.5f - S * 0.5f) * ca + (y + 0.5f - S * 0.5f) * sa) / S + 0.5f, 0, 1);
                float *p = cv + ((size_t)y * S + x) * 3;
                for (int c = 0; c < 3; c++) p[c] = c1[c] + t * (c2[c] - c1[c]);
            }
    } else if (kind == 2) { // mild per-pixel noise around one colour: uniform +-14 (sd 8), one draw per pixel
        for (size_t i = 0; i < (size_t)S * S; i++) {
            uint32_t u = vlm_rng_u32(r);
            for (int c = 0; c < 3; c++) cv[3 * i + c] = clampf(c1[c] + ((float)((u >> (8 * c)) & 255) - 127.5f) * (28.0f / 256.0f), 0, 255);
        }
    } else {
        for (size_t i = 0; i < (size_t)S * S; i++)
            for (int c = 0; c < 3; c++) cv[3 * i + c] = c1[c];
    }
}

// One pasted object of an image.
typedef struct {
    int cls, style;
    int64_t inst;
    int x, y, w, h;  // box of the visible pixels
    int64_t area;    // visible pixels
} sc_obj;

// The source cut of (class, style, instance) as premultiplied RGBA floats in
// w->cut: [*ch, *cw, 4].
static vlm_status load_cut(const sc_ctx *c, scene_ws *w, const sc_class *k, int style, int64_t inst, int *cw, int *ch,
                           vlm_error *err) {
    if (k->source == 1) {
        const em_inst *e = &c->em[inst];
        if (grow((void **)&w->cut, &w->cap_cut, sizeof(float) * (size_t)e->w * e->h * 4))
            return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
        for (size_t i = 0; i < (size_t)e->w * e->h; i++) {
            float a = e->rgba[4 * i + 3] / 255.0f;
            for (int q = 0; q < 3; q++) w->cut[4 * i + q] = e->rgba[4 * i + q] / 255.0f * a;
            w->cut[4 * i + 3] = a;
        }
        *cw = e->w;
        *ch = e->h;
        return VLM_OK;
    }
    vlm_status st = vlm_dataset_read(&c->fm[style], inst, &w->smp, err);
    if (st) return st;
    const uint8_t *px = w->smp.data;
    int W = w->smp.raw_w, H = w->smp.raw_h, C = w->smp.raw_c;
    // The item is its silhouette: v >= FM_INK is opaque (colour = the gray
    // value, dark cloth stays dark), the black background transparent. A
    // ramped alpha (faint pixels half-transparent) made the box edges
    // invisible: the box counted pixels that were drawn at 25% alpha in
    // near-black, so no model could see where an item ended.
    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (px[((size_t)y * W + x) * C] >= FM_INK) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) { // an empty item: a 1x1 transparent cut, never placed
        x0 = y0 = x1 = y1 = 0;
    }
    *cw = x1 - x0 + 1;
    *ch = y1 - y0 + 1;
    if (grow((void **)&w->cut, &w->cap_cut, sizeof(float) * (size_t)*cw * *ch * 4))
        return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
    for (int y = 0; y < *ch; y++)
        for (int x = 0; x < *cw; x++) {
            int v = px[((size_t)(y0 + y) * W + x0 + x) * C];
            float a = v >= FM_INK ? 1.0f : 0.0f, g = v / 255.0f * a;
            float *d = w->cut + ((size_t)y * *cw + x) * 4;
            d[0] = d[1] = d[2] = g;
            d[3] = a;
        }
    return VLM_OK;
}

static double box_iou(int ax, int ay, int aw, int ah, int bx, int by, int bw, int bh) {
    const double a[4] = {ax, ay, aw, ah}, b[4] = {bx, by, bw, bh};
    return vlm_box_iou_xywh(a, b, 0);
}

// The resampled object w->obj [oh, ow, 4] placed at (x0, y0) on the S x S
// canvas: its mask (alpha >= ALPHA_MIN) pixel count (returned), the mask's
// extent m = {x0, y0, x1, y1} within the object, and per earlier object j the
// visible pixels it would cover (covered[j] += ..).
static int64_t mask_scan(const scene_ws *w, int S, int ow, int oh, int x0, int y0, int m[4], int64_t *covered) {
    int mx0 = ow, my0 = oh, mx1 = -1, my1 = -1;
    int64_t cnt = 0;
    const float amin = ALPHA_MIN / 255.0f;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            if (w->obj[((size_t)y * ow + x) * 4 + 3] < amin) continue;
            cnt++;
            if (x < mx0) mx0 = x;
            if (x > mx1) mx1 = x;
            if (y < my0) my0 = y;
            if (y > my1) my1 = y;
            int ow_ = w->owner[(size_t)(y0 + y) * S + x0 + x];
            if (ow_) covered[ow_ - 1]++;
        }
    m[0] = mx0, m[1] = my0, m[2] = mx1, m[3] = my1;
    return cnt;
}

// Composites the object's mask pixels over the canvas (premultiplied "over")
// and hands them to owner id (object index + 1).
static void paste_obj(scene_ws *w, int S, int ow, int oh, int x0, int y0, int id) {
    const float amin = ALPHA_MIN / 255.0f;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            const float *p = w->obj + ((size_t)y * ow + x) * 4;
            if (p[3] < amin) continue;
            size_t q = (size_t)(y0 + y) * S + x0 + x;
            float a = p[3] > 1.0f ? 1.0f : p[3];
            for (int cc = 0; cc < 3; cc++) w->canvas[3 * q + cc] = p[cc] * 255.0f + (1.0f - a) * w->canvas[3 * q + cc];
            w->owner[q] = (uint8_t)id;
        }
}

// Boxes and areas of objs [n] from the pixels each object still owns in w->owner [S, S].
static void owned_boxes(const scene_ws *w, int S, sc_obj *objs, int n) {
    int ext[MAX_OBJECTS][4];
    for (int j = 0; j < n; j++) ext[j][0] = S, ext[j][1] = S, ext[j][2] = -1, ext[j][3] = -1, objs[j].area = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int q = w->owner[(size_t)y * S + x];
            if (!q) continue;
            int *e = ext[q - 1];
            if (x < e[0]) e[0] = x;
            if (y < e[1]) e[1] = y;
            if (x > e[2]) e[2] = x;
            if (y > e[3]) e[3] = y;
            objs[q - 1].area++;
        }
    for (int j = 0; j < n; j++) {
        objs[j].x = ext[j][0];
        objs[j].y = ext[j][1];
        objs[j].w = ext[j][2] - ext[j][0] + 1;
        objs[j].h = ext[j][3] - ext[j][1] + 1;
    }
}

// Builds image `index` of `split`: canvas side *S, objects in objs (*n_obj),
// pixels in w->rgb [S, S, 3].
static vlm_status build_image(const sc_ctx *c, int split, int64_t index, scene_ws *w, int *S_out, sc_obj *objs,
                              int *n_obj, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    vlm_rng r;
    vlm_rng_init(&r, o->seed, STREAM_IMAGE + (uint32_t)split, (uint64_t)index);
    const int S = o->sizes[vlm_rng_below(&r, (uint64_t)o->n_sizes)];
    *S_out = S;
    const size_t np = (size_t)S * S;
    if (grow((void **)&w->canvas, &w->cap_canvas, sizeof(float) * np * 3) ||
        grow((void **)&w->owner, &w->cap_owner, np) || grow((void **)&w->rgb, &w->cap_rgb, np * 3))
        return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
    draw_background(o, &r, w->canvas, S);
    memset(w->owner, 0, np);
    const int style = split == VLM_SCENES_TRAIN ? 0 : 1;
    const int want = 1 + (int)vlm_rng_below(&r, (uint64_t)o->max_objects);
    int64_t pasted[MAX_OBJECTS], visible[MAX_OBJECTS]; // per placed object: mask pixels, still visible
    int pbox[MAX_OBJECTS][4];                           // its box when placed
    int n = 0;
    const double lmin = log(o->min_scale), lmax = log(o->max_scale);
    for (int slot = 0; slot < want; slot++) {
        const int ci = c->split_cls[split][vlm_rng_below(&r, (uint64_t)c->split_n[split])];
        const sc_class *k = &c->cls[ci];
        const int64_t inst = k->inst[style][vlm_rng_below(&r, (uint64_t)k->n_inst[style])];
        int cw = 1, ch = 1;
        vlm_status st = load_cut(c, w, k, style, inst, &cw, &ch, err);
        if (st) return st;
        // Random log-uniform size and position until the box overlaps little
        // and every earlier object stays visible enough.
        for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
            double L = S * exp(lmin + (lmax - lmin) * vlm_rng_uniform_d(&r));
            double f = L / (cw > ch ? cw : ch);
            int ow = (int)lround(cw * f), oh = (int)lround(ch * f);
            ow = ow < 1 ? 1 : ow > S ? S : ow;
            oh = oh < 1 ? 1 : oh > S ? S : oh;
            const int x0 = (int)vlm_rng_below(&r, (uint64_t)(S - ow + 1));
            const int y0 = (int)vlm_rng_below(&r, (uint64_t)(S - oh + 1));
            if (grow((void **)&w->obj, &w->cap_obj, sizeof(float) * (size_t)ow * oh * 4) ||
                resample(w, w->cut, cw, ch, w->obj, ow, oh))
                return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
            int m[4];
            int64_t covered[MAX_OBJECTS] = {0};
            const int64_t cnt = mask_scan(w, S, ow, oh, x0, y0, m, covered);
            if (!cnt) continue;
            int bx = x0 + m[0], by = y0 + m[1], bw = m[2] - m[0] + 1, bh = m[3] - m[1] + 1, ok = 1;
            for (int j = 0; j < n && ok; j++) {
                if (box_iou(bx, by, bw, bh, pbox[j][0], pbox[j][1], pbox[j][2], pbox[j][3]) > o->max_iou) ok = 0;
                if ((double)(visible[j] - covered[j]) < o->min_visible * (double)pasted[j]) ok = 0;
            }
            if (!ok) continue;
            paste_obj(w, S, ow, oh, x0, y0, n + 1);
            for (int j = 0; j < n; j++) visible[j] -= covered[j];
            pasted[n] = visible[n] = cnt;
            pbox[n][0] = bx, pbox[n][1] = by, pbox[n][2] = bw, pbox[n][3] = bh;
            objs[n] = (sc_obj){ci, style, inst, 0, 0, 0, 0, 0};
            n++;
            break;
        }
    }
    owned_boxes(w, S, objs, n);
    *n_obj = n;
    for (size_t i = 0; i < np * 3; i++) w->rgb[i] = (uint8_t)(clampf(w->canvas[i], 0, 255) + 0.5f);
    return VLM_OK;
}

// ------------------------------------------------------------ output

static const char *SPLIT_NAMES[VLM_SCENES_SPLITS] = {"train", "val", "heldout"};

typedef struct {
    int64_t n;
    int *size;       // [n] canvas side
    int *n_obj;      // [n]
    sc_obj *obj;     // [n * K]
} split_out;

static void source_name(const sc_ctx *c, const sc_obj *ob, char *buf, size_t n) {
    if (c->cls[ob->cls].source == 1) snprintf(buf, n, "emoji:%s", c->em[ob->inst].src);
    else snprintf(buf, n, "fashion-mnist:%s:%lld", ob->style ? "t10k" : "train", (long long)ob->inst);
}

static vlm_status write_json(const sc_ctx *c, int split, const split_out *so, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    const int K = o->max_objects;
    json_t *root = json_object(), *info = json_object(), *imgs = json_array(), *anns = json_array(),
           *cats = json_array(), *sizes = json_array();
    if (!root || !info || !imgs || !anns || !cats || !sizes) {
        json_decref(root), json_decref(info), json_decref(imgs), json_decref(anns), json_decref(cats), json_decref(sizes);
        return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
    }
    for (int s = 0; s < o->n_sizes; s++) json_array_append_new(sizes, json_integer(o->sizes[s]));
    json_object_set_new(info, "description", json_string("vlm data scenes: Fashion-MNIST items and emoji pasted on canvases"));
    json_object_set_new(info, "split", json_string(SPLIT_NAMES[split]));
    json_object_set_new(info, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(info, "sizes", sizes);
    json_object_set_new(info, "max_objects", json_integer(K));
    json_object_set_new(info, "emoji_split", json_string(o->emoji_split == VLM_SCENES_EMOJI_SHARED ? "shared" : "vendor"));
    json_object_set_new(info, "area", json_string("visible pixel count"));
    json_object_set_new(root, "info", info);
    int64_t ann_id = 1;
    char buf[4200];
    for (int64_t i = 0; i < so->n; i++) {
        json_t *im = json_object();
        snprintf(buf, sizeof buf, "%s/%06lld.png", SPLIT_NAMES[split], (long long)i);
        json_object_set_new(im, "id", json_integer(i + 1));
        json_object_set_new(im, "file_name", json_string(buf));
        json_object_set_new(im, "width", json_integer(so->size[i]));
        json_object_set_new(im, "height", json_integer(so->size[i]));
        json_array_append_new(imgs, im);
        for (int j = 0; j < so->n_obj[i]; j++) {
            const sc_obj *ob = &so->obj[i * K + j];
            json_t *a = json_object(), *bb = json_array();
            json_array_append_new(bb, json_integer(ob->x));
            json_array_append_new(bb, json_integer(ob->y));
            json_array_append_new(bb, json_integer(ob->w));
            json_array_append_new(bb, json_integer(ob->h));
            json_object_set_new(a, "id", json_integer(ann_id++));
            json_object_set_new(a, "image_id", json_integer(i + 1));
            json_object_set_new(a, "category_id", json_integer(ob->cls + 1));
            json_object_set_new(a, "bbox", bb);
            json_object_set_new(a, "area", json_integer(ob->area));
            json_object_set_new(a, "iscrowd", json_integer(0));
            source_name(c, ob, buf, sizeof buf);
            json_object_set_new(a, "source", json_string(buf));
            json_array_append_new(anns, a);
        }
    }
    for (int k = 0; k < c->n_cls; k++) {
        if (c->cls[k].heldout != (split == VLM_SCENES_HELDOUT)) continue;
        json_t *ct = json_object();
        json_object_set_new(ct, "id", json_integer(k + 1));
        json_object_set_new(ct, "name", json_string(c->cls[k].name));
        json_object_set_new(ct, "supercategory", json_string(c->cls[k].source ? "emoji" : "fashion-mnist"));
        json_array_append_new(cats, ct);
    }
    json_object_set_new(root, "images", imgs);
    json_object_set_new(root, "annotations", anns);
    json_object_set_new(root, "categories", cats);
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s.json", o->out_dir, SPLIT_NAMES[split]);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = json_dump_file(root, tmp, JSON_COMPACT);
    json_decref(root);
    if (rc != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return vlm_errorf(err, VLM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    return VLM_OK;
}

static FILE *open_out(const char *dir, const char *name, char *path, size_t n, vlm_error *err) {
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return f;
}

static vlm_status close_out(FILE *f, const char *path, vlm_error *err) {
    if (ferror(f) | (fclose(f) != 0)) return vlm_errorf(err, VLM_ERR_IO, "%s: write failed", path);
    return VLM_OK;
}

static vlm_status write_texts(const sc_ctx *c, const vlm_scenes_report *rep, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    char path[4200];
    const char *files[3] = {"classnames.txt", "seen_classnames.txt", "heldout_classnames.txt"};
    for (int f = 0; f < 3; f++) {
        FILE *fp = open_out(o->out_dir, files[f], path, sizeof path, err);
        if (!fp) return err ? err->status : VLM_ERR_IO;
        for (int k = 0; k < c->n_cls; k++)
            if (f == 0 || c->cls[k].heldout == (f == 2)) fprintf(fp, "%s\n", c->cls[k].name);
        vlm_status st = close_out(fp, path, err);
        if (st) return st;
    }
    FILE *fp = open_out(o->out_dir, "README", path, sizeof path, err);
    if (!fp) return err ? err->status : VLM_ERR_IO;
    fprintf(fp,
            "Detection scenes made by `vlm data scenes` (see docs/DATA.md in vlm).\n\n"
            "seed %llu; canvas sides", (unsigned long long)o->seed);
    for (int s = 0; s < o->n_sizes; s++) fprintf(fp, "%s%d", s ? ", " : " ", o->sizes[s]);
    fprintf(fp,
            "; 1..%d objects per image; object's longer side %.2f..%.2f of the canvas;\n"
            "placements redrawn when box IoU > %.2f or an earlier object keeps < %.0f%% of its pixels;\n"
            "emoji split: %s; background: %s.\n\n",
            o->max_objects, o->min_scale, o->max_scale, o->max_iou, 100.0 * o->min_visible,
            o->emoji_split == VLM_SCENES_EMOJI_SHARED ? "shared (all vendors in every split)"
                                                      : "vendor (train: train.tsv images; val, heldout: val_twitter.tsv)",
            o->background == VLM_SCENES_BG_MIXED ? "plain / gradient / noise" : o->background == VLM_SCENES_BG_PLAIN ? "plain" : "fixed");
    fprintf(fp,
            "Files: {train,val,heldout}.json (COCO: bbox [x,y,w,h] in pixels = extent of the visible pixels,\n"
            "area = visible pixel count, iscrowd 0; train/val categories = seen classes, heldout = held-out\n"
            "classes; ids shared), {train,val,heldout}/NNNNNN.png, classnames.txt (all, line k = id k+1),\n"
            "seen_classnames.txt, heldout_classnames.txt.\n\n");
    fprintf(fp, "split     images   boxes\n");
    for (int s = 0; s < VLM_SCENES_SPLITS; s++)
        fprintf(fp, "%-8s %7lld %7lld\n", SPLIT_NAMES[s], (long long)rep->images[s], (long long)rep->boxes[s]);
    fprintf(fp, "\n id  class                          source         held-out  train   val  heldout  instances (train/val style)\n");
    for (int k = 0; k < c->n_cls; k++)
        fprintf(fp, "%3d  %-30s %-14s %-8s %6lld %5lld %8lld  %lld/%lld\n", k + 1, c->cls[k].name,
                c->cls[k].source ? "emoji" : "fashion-mnist", c->cls[k].heldout ? "yes" : "no",
                (long long)rep->class_boxes[0 * c->n_cls + k], (long long)rep->class_boxes[1 * c->n_cls + k],
                (long long)rep->class_boxes[2 * c->n_cls + k], (long long)c->cls[k].n_inst[0],
                (long long)c->cls[k].n_inst[1]);
    return close_out(fp, path, err);
}

// PNG with libpng's speed-first settings (the scenes are intermediate files,
// read back by the trainer; about half the CPU time of the default level).
static vlm_status write_png_fast(const char *path, const uint8_t *rgb, int S, vlm_error *err) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)S;
    im.height = (png_uint_32)S;
    im.format = PNG_FORMAT_RGB;
    im.flags = PNG_IMAGE_FLAG_FAST;
    if (!png_image_write_to_file(&im, path, 0, rgb, 0, NULL))
        return vlm_errorf(err, VLM_ERR_IO, "%s: cannot write PNG: %s", path, im.message);
    return VLM_OK;
}

static vlm_status build_split(const sc_ctx *c, int split, split_out *so, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    const int64_t n = so->n;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", o->out_dir, SPLIT_NAMES[split]);
    vlm_status st = mkdir_p(dir, err);
    if (st) return st;
    if (n && !c->split_n[split])
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: %lld %s images asked for but the split has no classes",
                          (long long)n, SPLIT_NAMES[split]);
    int64_t bad = -1;
    int stop = 0;
    vlm_error first = {0};
#pragma omp parallel
    {
        scene_ws w;
        memset(&w, 0, sizeof w);
        vlm_sample_init(&w.smp);
        vlm_error e = {0};
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            int failed;
#pragma omp atomic read
            failed = stop;
            if (failed) continue;
            int S = 0;
            char path[4300];
            vlm_status s2 = build_image(c, split, i, &w, &S, so->obj + i * o->max_objects, &so->n_obj[i], &e);
            if (!s2) {
                so->size[i] = S;
                snprintf(path, sizeof path, "%s/%06lld.png", dir, (long long)i);
                s2 = write_png_fast(path, w.rgb, S, &e);
            }
            if (s2) {
#pragma omp critical(scenes_err)
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
        ws_free(&w);
    }
    if (bad >= 0) {
        if (err) *err = first;
        return first.status ? first.status : VLM_ERR_IO;
    }
    return VLM_OK;
}

// ------------------------------------------------------------ build

static void ctx_free(sc_ctx *c) {
    for (int s = 0; s < 2; s++) {
        if (c->fm_open[s]) vlm_dataset_free(&c->fm[s]);
        if (c->em_open[s]) vlm_dataset_free(&c->em_ds[s]);
    }
    for (int64_t i = 0; i < c->n_em; i++) {
        free(c->em[i].rgba);
        free(c->em[i].src);
    }
    free(c->em);
    for (int k = 0; k < c->n_cls; k++) {
        free(c->cls[k].name);
        free(c->cls[k].inst[0]);
        free(c->cls[k].inst[1]);
    }
    free(c->cls);
    for (int s = 0; s < VLM_SCENES_SPLITS; s++) free(c->split_cls[s]);
}

void vlm_scenes_report_free(vlm_scenes_report *r) {
    if (!r) return;
    for (int k = 0; k < r->n_classes; k++) free(r->names ? r->names[k] : NULL);
    free(r->names);
    free(r->source);
    free(r->heldout);
    free(r->instances);
    free(r->class_boxes);
    memset(r, 0, sizeof *r);
}

static vlm_status check_opts(const vlm_scenes_opts *o, vlm_error *err) {
    if (!o->out_dir || !*o->out_dir) return vlm_errorf(err, VLM_ERR_ARG, "scenes: no output directory");
    if (!o->fmnist_dir && !o->emoji_dir) return vlm_errorf(err, VLM_ERR_ARG, "scenes: no source (fashion-mnist, emoji)");
    if (o->n_sizes < 1 || o->n_sizes > VLM_SCENES_MAX_SIZES)
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: %d canvas sizes (want 1..%d)", o->n_sizes, VLM_SCENES_MAX_SIZES);
    for (int s = 0; s < o->n_sizes; s++)
        if (o->sizes[s] < 16 || o->sizes[s] > 1024)
            return vlm_errorf(err, VLM_ERR_ARG, "scenes: canvas size %d out of range (16..1024)", o->sizes[s]);
    if (o->n_train < 0 || o->n_val < 0 || o->n_heldout < 0 || o->n_train > 100000000 || o->n_val > 100000000 ||
        o->n_heldout > 100000000)
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: image counts must be in 0..1e8");
    if (o->max_objects < 1 || o->max_objects > MAX_OBJECTS)
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: max objects %d out of range (1..%d)", o->max_objects, MAX_OBJECTS);
    if (o->emoji_classes < 1 || o->emoji_classes > 10000)
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: emoji classes %d out of range (1..10000)", o->emoji_classes);
    if (!(o->min_scale > 0 && o->min_scale <= o->max_scale && o->max_scale <= 1))
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: object scale %g..%g (want 0 < min <= max <= 1)", o->min_scale,
                          o->max_scale);
    if (!(o->max_iou >= 0 && o->max_iou <= 1) || !(o->min_visible >= 0 && o->min_visible <= 1))
        return vlm_errorf(err, VLM_ERR_ARG, "scenes: max IoU / min visible fraction must be in 0..1");
    return VLM_OK;
}

// Splits a comma list into trimmed, malloc'd items.
static vlm_status split_names(const char *s, char ***out, int *n, vlm_error *err) {
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    char **v = calloc((size_t)cap, sizeof *v);
    if (!v) return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
    const char *p = s;
    while (1) {
        while (*p == ' ') p++;
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t m = len;
        while (m && p[m - 1] == ' ') m--;
        if (m) {
            v[*n] = malloc(m + 1);
            if (!v[*n]) return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
            memcpy(v[*n], p, m);
            v[*n][m] = 0;
            (*n)++;
        }
        if (!e) break;
        p = e + 1;
    }
    *out = v;
    return VLM_OK;
}

// Picks k of the classes [lo, hi) as held out, by the seed's shuffle.
static void pick_heldout(sc_ctx *c, int lo, int hi, int k, uint64_t sub) {
    int n = hi - lo;
    if (n <= 0 || k <= 0) return;
    uint32_t *perm = malloc(sizeof *perm * (size_t)n);
    if (!perm) return; // k classes stay seen; caught by the caller's count check
    for (int i = 0; i < n; i++) perm[i] = (uint32_t)i;
    vlm_rng r;
    vlm_rng_init(&r, c->o->seed, STREAM_CLASSES, sub);
    vlm_rng_shuffle_u32(&r, perm, (uint64_t)n);
    for (int i = 0; i < k && i < n; i++) c->cls[lo + (int)perm[i]].heldout = 1;
    free(perm);
}

// Held-out names that are not Fashion-MNIST classes must be emoji: *forced
// [*n_forced] points at them in names (an error when emoji are not a source).
static vlm_status forced_emoji(const sc_ctx *c, char **names, int n_names, char ***forced_out, int *n_forced,
                               vlm_error *err) {
    char **forced = calloc((size_t)(n_names ? n_names : 1), sizeof *forced);
    if (!forced) return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
    for (int i = 0; i < n_names; i++) {
        int fm = 0;
        for (int k = 0; c->use_fm && k < c->fm_n && !fm; k++) {
            char *q = query_name(fm_classname(c, k));
            fm = q && (!strcasecmp(q, names[i]) || !strcasecmp(fm_classname(c, k), names[i]));
            free(q);
        }
        if (!fm) forced[(*n_forced)++] = names[i];
    }
    if (*n_forced && !c->use_em) {
        vlm_status st = vlm_errorf(err, VLM_ERR_ARG, "held-out class '%s' is not a Fashion-MNIST class", forced[0]);
        free(forced);
        return st;
    }
    *forced_out = forced;
    return VLM_OK;
}

// Fashion-MNIST classes first (label order), instances by label per style.
static vlm_status add_fmnist_classes(sc_ctx *c, vlm_error *err) {
    for (int k = 0; c->use_fm && k < c->fm_n; k++) {
        sc_class *cl = &c->cls[c->n_cls++];
        cl->name = query_name(fm_classname(c, k));
        for (int s = 0; s < 2; s++) {
            cl->inst[s] = malloc(sizeof(int64_t) * (size_t)(c->fm[s].n ? c->fm[s].n : 1));
            if (!cl->inst[s] || !cl->name) return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
            for (int64_t i = 0; i < c->fm[s].n; i++)
                if (vlm_dataset_label(&c->fm[s], i) == k) cl->inst[s][cl->n_inst[s]++] = i;
        }
    }
    return VLM_OK;
}

// Held-out classes: the named ones, else o->heldout_n of them (default: 2
// Fashion-MNIST and a quarter of the emoji) split between the two sources in
// proportion and picked by the seed. n_fm, n_em: classes per source.
static vlm_status mark_heldout(sc_ctx *c, char **names, int n_names, int n_fm, int n_em, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    if (n_names) {
        for (int i = 0; i < n_names; i++) {
            int hit = 0;
            for (int k = 0; k < c->n_cls; k++) {
                int match = !strcasecmp(c->cls[k].name, names[i]);
                if (!match && c->cls[k].source == 0) match = !strcasecmp(fm_classname(c, k), names[i]);
                if (match) c->cls[k].heldout = hit = 1;
            }
            if (!hit) return vlm_errorf(err, VLM_ERR_ARG, "held-out class '%s' is not one of the classes", names[i]);
        }
        return VLM_OK;
    }
    int fk, ek;
    if (o->heldout_n < 0) {
        fk = n_fm ? 2 : 0;
        if (fk > n_fm - 1) fk = n_fm - 1 > 0 ? n_fm - 1 : 0;
        ek = (int)lround(0.25 * n_em);
    } else {
        int K = o->heldout_n, tot = n_fm + n_em;
        if (K >= tot)
            return vlm_errorf(err, VLM_ERR_ARG, "%d held-out classes leave no seen class (%d classes)", K, tot);
        fk = (int)lround((double)K * n_fm / tot);
        if (fk > n_fm) fk = n_fm;
        ek = K - fk;
        if (ek > n_em) ek = n_em, fk = K - ek;
    }
    pick_heldout(c, 0, n_fm, fk, 1);
    pick_heldout(c, n_fm, c->n_cls, ek, 2);
    return VLM_OK;
}

// The classes each split may draw: seen classes for train and val, held-out
// ones for heldout, each with instances of the split's style.
static vlm_status fill_splits(sc_ctx *c, vlm_error *err) {
    for (int s = 0; s < VLM_SCENES_SPLITS; s++) {
        c->split_cls[s] = malloc(sizeof(int) * (size_t)(c->n_cls ? c->n_cls : 1));
        if (!c->split_cls[s]) return vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
        for (int k = 0; k < c->n_cls; k++)
            if (c->cls[k].heldout == (s == VLM_SCENES_HELDOUT) && c->cls[k].n_inst[s == VLM_SCENES_TRAIN ? 0 : 1] > 0)
                c->split_cls[s][c->split_n[s]++] = k;
    }
    if (!c->split_n[VLM_SCENES_TRAIN]) return vlm_errorf(err, VLM_ERR_ARG, "scenes: every class is held out");
    return VLM_OK;
}

static vlm_status setup_classes(sc_ctx *c, vlm_error *err) {
    const vlm_scenes_opts *o = c->o;
    char **names = NULL, **forced = NULL;
    int n_names = 0, n_forced = 0, n_fm = 0, n_em = 0;
    vlm_status st = VLM_OK;
    if (o->heldout && (st = split_names(o->heldout, &names, &n_names, err))) goto out;
    c->use_fm = o->fmnist_dir != NULL;
    c->use_em = o->emoji_dir != NULL;
    if (c->use_fm && (st = open_fmnist(c, err))) goto out;
    if ((st = forced_emoji(c, names, n_names, &forced, &n_forced, err))) goto out;
    int cap = (c->use_fm ? c->fm_n : 0) + (c->use_em ? (o->emoji_classes > n_forced ? o->emoji_classes : n_forced) : 0);
    c->cls = calloc((size_t)(cap ? cap : 1), sizeof *c->cls);
    if (!c->cls) st = vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
    if (!st) st = add_fmnist_classes(c, err);
    if (!st && c->use_em) st = open_emoji(c, forced, n_forced, err);
    free(forced);
    if (st) goto out;
    n_fm = c->use_fm ? c->fm_n : 0, n_em = c->n_cls - n_fm;
    if (c->use_em && n_em == 0) {
        st = vlm_errorf(err, VLM_ERR_ARG, "emoji source '%s': no emoji title passes the filters", o->emoji_dir);
        goto out;
    }
    if ((st = mark_heldout(c, names, n_names, n_fm, n_em, err))) goto out;
    st = fill_splits(c, err);
out:
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    return st;
}

vlm_status vlm_scenes_build(const vlm_scenes_opts *o, vlm_scenes_report *rep, vlm_error *err) {
    double t0 = vlm_now();
    vlm_scenes_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    vlm_status st = check_opts(o, err);
    if (st) return st;
    sc_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    split_out so[VLM_SCENES_SPLITS];
    memset(so, 0, sizeof so);
    if ((st = setup_classes(&c, err))) goto done;
    if ((st = mkdir_p(o->out_dir, err))) goto done;
    // No held-out class (--heldout-n 0): an empty heldout split.
    const int64_t counts[VLM_SCENES_SPLITS] = {o->n_train, o->n_val, c.split_n[VLM_SCENES_HELDOUT] ? o->n_heldout : 0};
    for (int s = 0; s < VLM_SCENES_SPLITS; s++) {
        so[s].n = counts[s];
        size_t n = (size_t)(counts[s] ? counts[s] : 1);
        so[s].size = calloc(n, sizeof(int));
        so[s].n_obj = calloc(n, sizeof(int));
        so[s].obj = calloc(n * (size_t)o->max_objects, sizeof(sc_obj));
        if (!so[s].size || !so[s].n_obj || !so[s].obj) {
            st = vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory for %lld images", (long long)counts[s]);
            goto done;
        }
    }
    for (int s = 0; s < VLM_SCENES_SPLITS && !st; s++) st = build_split(&c, s, &so[s], err);
    if (st) goto done;
    // Report.
    rep->n_classes = c.n_cls;
    rep->names = calloc((size_t)c.n_cls + 1, sizeof *rep->names);
    rep->source = calloc((size_t)c.n_cls + 1, sizeof(int));
    rep->heldout = calloc((size_t)c.n_cls + 1, sizeof(int));
    rep->instances = calloc(2 * (size_t)c.n_cls + 1, sizeof(int64_t));
    rep->class_boxes = calloc(VLM_SCENES_SPLITS * (size_t)c.n_cls + 1, sizeof(int64_t));
    if (!rep->names || !rep->source || !rep->heldout || !rep->instances || !rep->class_boxes) {
        st = vlm_errorf(err, VLM_ERR_OOM, "scenes: out of memory");
        goto done;
    }
    for (int k = 0; k < c.n_cls; k++) {
        rep->names[k] = xstrdup(c.cls[k].name);
        rep->source[k] = c.cls[k].source;
        rep->heldout[k] = c.cls[k].heldout;
        rep->instances[2 * k] = c.cls[k].n_inst[0];
        rep->instances[2 * k + 1] = c.cls[k].n_inst[1];
    }
    rep->emoji_pool = c.em_pool;
    for (int s = 0; s < VLM_SCENES_SPLITS; s++) {
        rep->images[s] = so[s].n;
        for (int64_t i = 0; i < so[s].n; i++) {
            for (int z = 0; z < o->n_sizes; z++)
                if (o->sizes[z] == so[s].size[i]) {
                    rep->size_images[z]++;
                    break;
                }
            for (int j = 0; j < so[s].n_obj[i]; j++) {
                rep->boxes[s]++;
                rep->class_boxes[s * c.n_cls + so[s].obj[i * o->max_objects + j].cls]++;
            }
        }
    }
    for (int s = 0; s < VLM_SCENES_SPLITS && !st; s++) st = write_json(&c, s, &so[s], err);
    if (!st) st = write_texts(&c, rep, err);
    rep->seconds = vlm_now() - t0;
done:
    for (int s = 0; s < VLM_SCENES_SPLITS; s++) {
        free(so[s].size);
        free(so[s].n_obj);
        free(so[s].obj);
    }
    ctx_free(&c);
    if (st || rep == &local) vlm_scenes_report_free(rep);
    return st;
}
