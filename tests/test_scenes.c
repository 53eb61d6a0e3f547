// Detection scenes and their loader, on synthetic sources made here (a tiny
// IDX set and a few RGBA PNG "emoji"): boxes equal the pasted pixels' extent,
// held-out classes never reach train, same seed = same bytes, augmented boxes
// follow the pixels, and bad inputs give clear errors.
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/rng.h"
#include "data/coco.h"
#include "data/detset.h"
#include "data/image.h"
#include "data/scenes.h"
#include "tests/testutil.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static char ROOT[256];

static void put_be32(FILE *f, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

// IDX images [n, 16, 16] with one bright rectangle per item (size depends on
// the class) on a black background, and their labels.
static void write_idx(const char *dir, const char *stem, int n, int seed) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, stem);
    FILE *f = fopen(p, "wb");
    put_be32(f, 0x803);
    put_be32(f, (uint32_t)n);
    put_be32(f, 16);
    put_be32(f, 16);
    for (int i = 0; i < n; i++) {
        int cls = i % 3, w = 6 + 3 * cls, h = 12 - 2 * cls, x0 = (i + seed) % (16 - w + 1), y0 = (i * 3) % (16 - h + 1);
        uint8_t px[256] = {0};
        for (int y = y0; y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) px[y * 16 + x] = (uint8_t)(180 + 10 * cls);
        fwrite(px, 1, 256, f);
    }
    fclose(f);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, stem);
    f = fopen(p, "wb");
    put_be32(f, 0x801);
    put_be32(f, (uint32_t)n);
    for (int i = 0; i < n; i++) fputc(i % 3, f);
    fclose(f);
}

// An RGBA PNG w x h: a solid ellipse of colour rgb, transparent elsewhere.
static void write_rgba(const char *path, int w, int h, const uint8_t rgb[3]) {
    uint8_t *px = calloc((size_t)w * h * 4, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x + 0.5 - w / 2.0) / (w / 2.0 - 2), dy = (y + 0.5 - h / 2.0) / (h / 2.0 - 4);
            if (dx * dx + dy * dy <= 1.0) {
                uint8_t *p = px + ((size_t)y * w + x) * 4;
                memcpy(p, rgb, 3);
                p[3] = 255;
            }
        }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGBA;
    CHECK(png_image_write_to_file(&im, path, 0, px, 0, NULL), "write %s", path);
    free(px);
}

static const char *EMOJI[4] = {"red ball", "green ball", "blue ball", "yellow ball"};
static const uint8_t EMOJI_RGB[4][3] = {{230, 20, 20}, {20, 210, 20}, {0, 0, 255}, {240, 230, 10}};

static void make_sources(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/fm", ROOT);
    mkdir(p, 0777);
    write_idx(p, "train", 60, 0);
    write_idx(p, "t10k", 30, 5);
    char cn[600];
    snprintf(cn, sizeof cn, "%s/classnames.txt", p);
    FILE *f = fopen(cn, "w");
    fprintf(f, "Block\nTall/thin\nWide box\n");
    fclose(f);
    const char *vendors[3] = {"apple", "google", "twitter"};
    for (int v = 0; v < 3; v++) {
        snprintf(p, sizeof p, "%s/emoji/img/%s/64", ROOT, vendors[v]);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
        CHECK(system(cmd) == 0, "%s", cmd);
        for (int e = 0; e < 4; e++) {
            char f2[700];
            snprintf(f2, sizeof f2, "%s/e%d.png", p, e);
            write_rgba(f2, 40 + 4 * e + 2 * v, 36 + 2 * v, EMOJI_RGB[e]);
        }
    }
    snprintf(p, sizeof p, "%s/emoji/train.tsv", ROOT);
    f = fopen(p, "w");
    fprintf(f, "filepath\ttitle\n");
    for (int e = 0; e < 4; e++)
        for (int v = 0; v < 2; v++) fprintf(f, "img/%s/64/e%d.png\t%s\n", vendors[v], e, EMOJI[e]);
    fclose(f);
    snprintf(p, sizeof p, "%s/emoji/val_twitter.tsv", ROOT);
    f = fopen(p, "w");
    fprintf(f, "filepath\ttitle\n");
    for (int e = 0; e < 4; e++) fprintf(f, "img/twitter/64/e%d.png\t%s\n", e, EMOJI[e]);
    fclose(f);
}

static void base_opts(vlm_scenes_opts *o, const char *out) {
    static char fm[512], em[512];
    snprintf(fm, sizeof fm, "%s/fm", ROOT);
    snprintf(em, sizeof em, "%s/emoji", ROOT);
    vlm_scenes_opts_default(o);
    o->out_dir = out;
    o->fmnist_dir = fm;
    o->emoji_dir = em;
    o->sizes[0] = 32;
    o->sizes[1] = 48;
    o->n_sizes = 2;
    o->n_train = 40;
    o->n_val = 12;
    o->n_heldout = 10;
    o->emoji_classes = 4;
    o->seed = 7;
    o->emoji_split = VLM_SCENES_EMOJI_VENDOR; // the tests below check the style split
    o->background = VLM_SCENES_BG_FIXED; // black: every drawn object pixel differs from it
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    b[*n] = 0;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static int64_t cat_of(json_t *root, const char *name) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "categories"), i, c) if (!strcmp(
        json_string_value(json_object_get(c, "name")), name)) return json_integer_value(json_object_get(c, "id"));
    return -1;
}

// Checks every image of a split against its annotations: boxes inside the
// canvas; with one object the box is exactly the extent of the non-background
// pixels and area their count; with several, every non-background pixel lies
// in some box and each box edge touches a non-background pixel.
static void check_split(const char *dir, const char *split, int single, int64_t *n_ann) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s.json", dir, split);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    CHECK(root != NULL, "%s: %s", p, je.text);
    if (!root) return;
    json_t *imgs = json_object_get(root, "images"), *anns = json_object_get(root, "annotations");
    *n_ann = (int64_t)json_array_size(anns);
    vlm_image im;
    vlm_image_init(&im);
    vlm_error err = {0};
    size_t i, a;
    json_t *ji, *ja;
    int64_t exact = 0, seen_ids = 0;
    json_array_foreach(imgs, i, ji) {
        int64_t id = json_integer_value(json_object_get(ji, "id"));
        int W = (int)json_integer_value(json_object_get(ji, "width")), H = (int)json_integer_value(json_object_get(ji, "height"));
        snprintf(p, sizeof p, "%s/%s", dir, json_string_value(json_object_get(ji, "file_name")));
        CHECK(vlm_image_load(&im, p, NULL, &err) == VLM_OK, "%s", err.msg);
        CHECK(im.w == W && im.h == H && (W == 32 || W == 48), "%s: %dx%d vs %dx%d", p, im.w, im.h, W, H);
        int boxes[8][4], nb = 0;
        json_array_foreach(anns, a, ja) {
            if (json_integer_value(json_object_get(ja, "image_id")) != id) continue;
            json_t *bb = json_object_get(ja, "bbox");
            int x = (int)json_integer_value(json_array_get(bb, 0)), y = (int)json_integer_value(json_array_get(bb, 1));
            int w = (int)json_integer_value(json_array_get(bb, 2)), h = (int)json_integer_value(json_array_get(bb, 3));
            int64_t area = json_integer_value(json_object_get(ja, "area"));
            CHECK(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= W && y + h <= H, "%s: box %d,%d,%d,%d outside %dx%d",
                  p, x, y, w, h, W, H);
            CHECK(area > 0 && area <= (int64_t)w * h, "%s: area %lld for a %dx%d box", p, (long long)area, w, h);
            CHECK(json_integer_value(json_object_get(ja, "iscrowd")) == 0, "iscrowd");
            seen_ids++;
            if (nb < 8) {
                boxes[nb][0] = x, boxes[nb][1] = y, boxes[nb][2] = w, boxes[nb][3] = h;
                nb++;
                if (single) {
                    int x0 = W, y0 = H, x1 = -1, y1 = -1;
                    int64_t cnt = 0;
                    for (int yy = 0; yy < H; yy++)
                        for (int xx = 0; xx < W; xx++) {
                            const uint8_t *q = im.px + ((size_t)yy * W + xx) * 3;
                            if (!(q[0] | q[1] | q[2])) continue;
                            cnt++;
                            if (xx < x0) x0 = xx;
                            if (xx > x1) x1 = xx;
                            if (yy < y0) y0 = yy;
                            if (yy > y1) y1 = yy;
                        }
                    CHECK(x0 == x && y0 == y && x1 - x0 + 1 == w && y1 - y0 + 1 == h,
                          "%s: box %d,%d,%d,%d but pixels span %d,%d,%d,%d", p, x, y, w, h, x0, y0, x1 - x0 + 1,
                          y1 - y0 + 1);
                    CHECK(cnt == area, "%s: area %lld but %lld object pixels", p, (long long)area, (long long)cnt);
                    exact++;
                }
            }
        }
        if (single) CHECK(nb <= 1, "%s: %d objects with max 1", p, nb);
        // every object pixel in some box; every box edge touches one
        for (int yy = 0; yy < H; yy++)
            for (int xx = 0; xx < W; xx++) {
                const uint8_t *q = im.px + ((size_t)yy * W + xx) * 3;
                if (!(q[0] | q[1] | q[2])) continue;
                int in = 0;
                for (int k = 0; k < nb; k++)
                    in |= xx >= boxes[k][0] && xx < boxes[k][0] + boxes[k][2] && yy >= boxes[k][1] &&
                          yy < boxes[k][1] + boxes[k][3];
                CHECK(in, "%s: object pixel (%d,%d) outside every box", p, xx, yy);
                if (!in) goto next_image;
            }
        for (int k = 0; k < nb; k++) {
            int touch[4] = {0, 0, 0, 0};
            int x0 = boxes[k][0], y0 = boxes[k][1], x1 = x0 + boxes[k][2] - 1, y1 = y0 + boxes[k][3] - 1;
            for (int t = x0; t <= x1; t++) {
                const uint8_t *q0 = im.px + ((size_t)y0 * W + t) * 3, *q1 = im.px + ((size_t)y1 * W + t) * 3;
                touch[0] |= q0[0] | q0[1] | q0[2];
                touch[1] |= q1[0] | q1[1] | q1[2];
            }
            for (int t = y0; t <= y1; t++) {
                const uint8_t *q0 = im.px + ((size_t)t * W + x0) * 3, *q1 = im.px + ((size_t)t * W + x1) * 3;
                touch[2] |= q0[0] | q0[1] | q0[2];
                touch[3] |= q1[0] | q1[1] | q1[2];
            }
            CHECK(touch[0] && touch[1] && touch[2] && touch[3], "%s: box %d has an edge with no object pixel", p, k);
        }
    next_image:;
    }
    CHECK(seen_ids == *n_ann, "%s: %lld annotations, %lld matched to images", split, (long long)*n_ann,
          (long long)seen_ids);
    if (single) CHECK(exact > 0, "no single-object image checked");
    vlm_image_free(&im);
    json_decref(root);
}

static void test_single(void) {
    char out[300];
    snprintf(out, sizeof out, "%s/single", ROOT);
    vlm_scenes_opts o;
    base_opts(&o, out);
    o.max_objects = 1;
    vlm_scenes_report rep;
    vlm_error err = {0};
    vlm_status st = vlm_scenes_build(&o, &rep, &err);
    CHECK(st == VLM_OK, "build: %s", err.msg);
    if (st) return;
    CHECK(rep.n_classes == 7, "3 + 4 classes, got %d", rep.n_classes);
    CHECK(rep.images[0] == 40 && rep.images[1] == 12 && rep.images[2] == 10, "image counts");
    for (int s = 0; s < 3; s++) CHECK(rep.boxes[s] == rep.images[s], "split %d: one object per image (%lld boxes)", s, (long long)rep.boxes[s]);
    CHECK(!strcmp(rep.names[0], "block") && !strcmp(rep.names[1], "tall") && !strcmp(rep.names[3], "red ball"),
          "class names: %s, %s, %s", rep.names[0], rep.names[1], rep.names[3]);
    vlm_scenes_report_free(&rep);
    const char *splits[3] = {"train", "val", "heldout"};
    for (int s = 0; s < 3; s++) {
        int64_t n;
        check_split(out, splits[s], 1, &n);
        // the evaluator's reader (data/coco.h) accepts what was written
        char p[600];
        snprintf(p, sizeof p, "%s/%s.json", out, splits[s]);
        vlm_coco_gt gt;
        CHECK(vlm_coco_gt_load(&gt, p, &err) == VLM_OK, "coco reader: %s", err.msg);
        CHECK(gt.n_anns == n && gt.n_images == (s == 0 ? 40 : s == 1 ? 12 : 10), "coco reader counts");
        vlm_coco_gt_free(&gt);
    }
}

static void test_multi_heldout_determinism(void) {
    char a[300], b[300], c[300];
    snprintf(a, sizeof a, "%s/multi_a", ROOT);
    snprintf(b, sizeof b, "%s/multi_b", ROOT);
    snprintf(c, sizeof c, "%s/multi_c", ROOT);
    vlm_scenes_opts o;
    base_opts(&o, a);
    o.heldout = "blue ball, Wide box";
    vlm_scenes_report rep;
    vlm_error err = {0};
    vlm_status st = vlm_scenes_build(&o, &rep, &err);
    CHECK(st == VLM_OK, "build: %s", err.msg);
    if (st) return;
    int held = 0;
    for (int k = 0; k < rep.n_classes; k++) {
        int want = !strcmp(rep.names[k], "blue ball") || !strcmp(rep.names[k], "wide box");
        CHECK(rep.heldout[k] == want, "class %s held-out flag %d", rep.names[k], rep.heldout[k]);
        held += rep.heldout[k];
        if (rep.heldout[k]) CHECK(rep.class_boxes[k] == 0 && rep.class_boxes[rep.n_classes + k] == 0, "held-out %s in train/val", rep.names[k]);
        else CHECK(rep.class_boxes[2 * rep.n_classes + k] == 0, "seen %s in heldout", rep.names[k]);
    }
    CHECK(held == 2, "2 held-out classes, got %d", held);
    CHECK(rep.boxes[0] > rep.images[0], "several objects per image (%lld boxes, %lld images)", (long long)rep.boxes[0],
          (long long)rep.images[0]);
    vlm_scenes_report_free(&rep);
    const char *splits[3] = {"train", "val", "heldout"};
    for (int s = 0; s < 3; s++) {
        int64_t n;
        check_split(a, splits[s], 0, &n);
    }
    // GT: held-out ids only in heldout.json, and no train pixel is the held-out emoji's blue
    char p[600];
    json_error_t je;
    snprintf(p, sizeof p, "%s/train.json", a);
    json_t *tr = json_load_file(p, 0, &je);
    snprintf(p, sizeof p, "%s/heldout.json", a);
    json_t *ho = json_load_file(p, 0, &je);
    CHECK(tr && ho, "json");
    if (tr && ho) {
        int64_t blue = cat_of(ho, "blue ball"), wide = cat_of(ho, "wide box");
        CHECK(blue > 0 && wide > 0 && cat_of(tr, "blue ball") < 0 && cat_of(tr, "wide box") < 0 &&
                  cat_of(ho, "red ball") < 0 && cat_of(tr, "red ball") > 0,
              "categories per file");
        size_t i;
        json_t *an;
        json_array_foreach(json_object_get(tr, "annotations"), i, an) {
            int64_t cid = json_integer_value(json_object_get(an, "category_id"));
            CHECK(cid != blue && cid != wide, "held-out category %lld in train", (long long)cid);
        }
        int64_t hn = 0;
        json_array_foreach(json_object_get(ho, "annotations"), i, an) {
            int64_t cid = json_integer_value(json_object_get(an, "category_id"));
            CHECK(cid == blue || cid == wide, "seen category %lld in heldout", (long long)cid);
            hn++;
        }
        CHECK(hn >= 10, "heldout annotations %lld", (long long)hn);
        vlm_image im;
        vlm_image_init(&im);
        vlm_error e2 = {0};
        int64_t bluepx = 0;
        json_t *ji;
        json_array_foreach(json_object_get(tr, "images"), i, ji) {
            snprintf(p, sizeof p, "%s/%s", a, json_string_value(json_object_get(ji, "file_name")));
            if (vlm_image_load(&im, p, NULL, &e2)) continue;
            for (int q = 0; q < im.w * im.h; q++) {
                const uint8_t *px = im.px + 3 * q;
                bluepx += px[2] > 100 && px[0] < 40 && px[1] < 40;
            }
        }
        CHECK(bluepx == 0, "%lld pixels of the held-out emoji's colour in train images", (long long)bluepx);
        vlm_image_free(&im);
    }
    json_decref(tr);
    json_decref(ho);
    // Same seed, other thread count: identical bytes. Other seed: different.
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    omp_set_num_threads(nt > 1 ? 1 : 2);
#endif
    o.out_dir = b;
    st = vlm_scenes_build(&o, NULL, &err);
    CHECK(st == VLM_OK, "build b: %s", err.msg);
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    const char *files[] = {"train.json", "val.json", "heldout.json", "classnames.txt", "seen_classnames.txt",
                           "heldout_classnames.txt", "README", "train/000000.png", "train/000017.png",
                           "train/000039.png", "val/000011.png", "heldout/000009.png"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s", a, files[k]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[k]);
        CHECK(same_file(pa, pb), "%s differs between two builds with the same seed", files[k]);
    }
    for (int i = 0; i < 40; i++) {
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/train/%06d.png", a, i);
        snprintf(pb, sizeof pb, "%s/train/%06d.png", b, i);
        CHECK(same_file(pa, pb), "train image %d differs", i);
    }
    o.out_dir = c;
    o.seed = 8;
    st = vlm_scenes_build(&o, NULL, &err);
    CHECK(st == VLM_OK, "build c: %s", err.msg);
    char pa[600], pc[600];
    snprintf(pa, sizeof pa, "%s/train.json", a);
    snprintf(pc, sizeof pc, "%s/train.json", c);
    CHECK(!same_file(pa, pc), "another seed gave the same train.json");

    // The loader reads what was written.
    vlm_detset ds;
    snprintf(pa, sizeof pa, "%s/train.json", a);
    st = vlm_detset_load(&ds, pa, NULL, &err);
    CHECK(st == VLM_OK, "detset: %s", err.msg);
    if (st) return;
    CHECK(ds.n_images == 40 && ds.n_classes == 5, "detset %lld images %d classes", (long long)ds.n_images, ds.n_classes);
    int64_t total = 0;
    for (int64_t i = 0; i < ds.n_images; i++) total += ds.box_count[i];
    CHECK(total == ds.n_boxes && ds.max_boxes >= 2 && ds.max_boxes <= 4, "boxes %lld/%lld max %d", (long long)total,
          (long long)ds.n_boxes, ds.max_boxes);
    CHECK(!strcmp(ds.classnames[0], "block") && ds.category_ids[0] == 1, "class 0 = %s id %lld", ds.classnames[0],
          (long long)ds.category_ids[0]);
    // eval at S = 32 on a 32 x 32 image: pixels unchanged, boxes = bbox / 32
    vlm_detaug aug;
    vlm_detaug_init(&aug, 32);
    vlm_detbatch bt;
    CHECK(vlm_detbatch_init(&bt, 4, 32, ds.max_boxes, &err) == VLM_OK, "%s", err.msg);
    int64_t i32 = -1;
    for (int64_t i = 0; i < ds.n_images && i32 < 0; i++)
        if (ds.width[i] == 32 && ds.box_count[i] > 0) i32 = i;
    CHECK(i32 >= 0, "a 32 px image");
    if (i32 >= 0) {
        int64_t idx[1] = {i32};
        CHECK(vlm_detset_batch(&ds, &aug, idx, 1, 0, 0, 0, &bt, &err) == VLM_OK, "%s", err.msg);
        CHECK(bt.n_boxes[0] == ds.box_count[i32], "eval keeps every box");
        for (int j = 0; j < bt.n_boxes[0]; j++) {
            const float *g = ds.boxes + 4 * (ds.box_first[i32] + j), *q = bt.boxes + 4 * j;
            CHECK(fabsf(q[0] - (g[0] + g[2] / 2) / 32) < 1e-6f && fabsf(q[2] - g[2] / 32) < 1e-6f &&
                      fabsf(q[1] - (g[1] + g[3] / 2) / 32) < 1e-6f && fabsf(q[3] - g[3] / 32) < 1e-6f &&
                      bt.classes[j] == ds.box_class[ds.box_first[i32] + j],
                  "eval box %d", j);
        }
        const uint8_t *px = ds.pixels[i32];
        float worst = 0;
        for (int q = 0; q < 32 * 32; q++)
            for (int ch = 0; ch < 3; ch++) {
                float want = ((float)px[3 * q + ch] / 255.0f - aug.mean[ch]) / aug.std[ch];
                float d = fabsf(bt.images[ch * 32 * 32 + q] - want);
                if (d > worst) worst = d;
            }
        CHECK(worst < 1e-6f, "eval pixels off by %g", worst);
    }
    // train batches: same (seed, epoch) -> same batch; boxes in [0, 1]
    int64_t idx[4] = {0, 5, 9, 3};
    float *copy = malloc(sizeof(float) * 4 * 3 * 32 * 32);
    CHECK(vlm_detset_batch(&ds, &aug, idx, 4, 1, 3, 1, &bt, &err) == VLM_OK, "%s", err.msg);
    memcpy(copy, bt.images, sizeof(float) * 4 * 3 * 32 * 32);
    int32_t nb0[4];
    memcpy(nb0, bt.n_boxes, sizeof nb0);
    CHECK(vlm_detset_batch(&ds, &aug, idx, 4, 1, 3, 1, &bt, &err) == VLM_OK, "%s", err.msg);
    CHECK(!memcmp(copy, bt.images, sizeof(float) * 4 * 3 * 32 * 32) && !memcmp(nb0, bt.n_boxes, sizeof nb0),
          "train batch not reproducible");
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < bt.n_boxes[i]; j++) {
            const float *q = bt.boxes + ((size_t)i * bt.max_boxes + j) * 4;
            CHECK(q[2] > 0 && q[3] > 0 && q[0] - q[2] / 2 >= -1e-6f && q[0] + q[2] / 2 <= 1 + 1e-6f &&
                      q[1] - q[3] / 2 >= -1e-6f && q[1] + q[3] / 2 <= 1 + 1e-6f,
                  "train box outside [0,1]");
        }
    int64_t perm[40], perm2[40];
    vlm_detset_order(40, 3, 2, perm);
    vlm_detset_order(40, 3, 2, perm2);
    int64_t sum = 0;
    for (int i = 0; i < 40; i++) sum += perm[i];
    CHECK(!memcmp(perm, perm2, sizeof perm) && sum == 780, "order");
    free(copy);
    vlm_detbatch_free(&bt);
    vlm_detset_free(&ds);
}

// A red square on white through many windows / flips / zooms: the box from
// vlm_detaug_boxes matches the red pixels found in vlm_detaug_pixels_u8's
// output (within the resampling blur), and is dropped only when less than
// half of the square stays in the window.
static void test_augment(void) {
    vlm_image img;
    vlm_image_init(&img);
    vlm_error err = {0};
    const int W = 40, H = 30, sx = 5, sy = 8, sw = 12, sh = 10;
    CHECK(vlm_image_alloc(&img, W, H, &err) == VLM_OK, "%s", err.msg);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = img.px + ((size_t)y * W + x) * 3;
            int in = x >= sx && x < sx + sw && y >= sy && y < sy + sh;
            p[0] = 255;
            p[1] = p[2] = in ? 0 : 255;
        }
    const float box[4] = {sx, sy, sw, sh};
    const int32_t cls[1] = {3};
    vlm_detaug a;
    vlm_detaug_init(&a, 48);
    a.scale_min = 0.2f;
    a.scale_max = 2.0f;
    a.fill[0] = a.fill[1] = a.fill[2] = 255;
    vlm_transform_scratch ts;
    vlm_transform_scratch_init(&ts);
    vlm_image win;
    vlm_image_init(&win);
    uint8_t *out = malloc(48 * 48 * 3);
    int kept = 0, dropped = 0, flips = 0, zoomed = 0;
    for (int it = 0; it < 300; it++) {
        vlm_rng r;
        vlm_transform_rng(&r, 11, 0, (uint64_t)it);
        vlm_detaug_params p;
        vlm_detaug_draw(&a, W, H, &r, &p);
        CHECK(p.w >= 1 && p.h >= 1, "window size");
        CHECK((p.w <= W ? p.x >= 0 && p.x + p.w <= W : p.x <= 0 && p.x + p.w >= W) &&
                  (p.h <= H ? p.y >= 0 && p.y + p.h <= H : p.y <= 0 && p.y + p.h >= H),
              "window %d,%d,%d,%d vs %dx%d", p.x, p.y, p.w, p.h, W, H);
        flips += p.flip;
        zoomed += p.w > W || p.h > H;
        float ob[4];
        int32_t oc[1] = {-9};
        int k = vlm_detaug_boxes(&p, 0.5f, box, cls, 1, ob, oc);
        CHECK(vlm_detaug_pixels_u8(&a, &img, &p, out, &win, &ts, &err) == VLM_OK, "%s", err.msg);
        // red pixels: g < 128 (more than half of the way from white to red)
        int x0 = 48, y0 = 48, x1 = -1, y1 = -1;
        for (int y = 0; y < 48; y++)
            for (int x = 0; x < 48; x++)
                if (out[((size_t)y * 48 + x) * 3 + 1] < 128) {
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                }
        // the fraction of the square inside the window, from the geometry alone
        double ix = fmin(sx + sw, p.x + p.w) - fmax(sx, p.x), iy = fmin(sy + sh, p.y + p.h) - fmax(sy, p.y);
        double frac = ix > 0 && iy > 0 ? ix * iy / (sw * sh) : 0;
        CHECK((k == 1) == (frac >= 0.5), "kept %d with %.2f of the square inside", k, frac);
        if (k == 1) {
            kept++;
            CHECK(oc[0] == 3, "class carried");
            double bx0 = (ob[0] - ob[2] / 2) * 48, bx1 = (ob[0] + ob[2] / 2) * 48;
            double by0 = (ob[1] - ob[3] / 2) * 48, by1 = (ob[1] + ob[3] / 2) * 48;
            // a red pixel run covering >= 1 output pixel is always found
            if (bx1 - bx0 >= 2 && by1 - by0 >= 2) {
                const double tol = 1.01;
                CHECK(x1 >= 0 && fabs(x0 - bx0) <= tol && fabs(x1 + 1 - bx1) <= tol && fabs(y0 - by0) <= tol &&
                          fabs(y1 + 1 - by1) <= tol,
                      "it %d (window %d,%d,%d,%d flip %d): box x %.2f..%.2f y %.2f..%.2f, red pixels x %d..%d y %d..%d",
                      it, p.x, p.y, p.w, p.h, p.flip, bx0, bx1, by0, by1, x0, x1 + 1, y0, y1 + 1);
            }
        } else {
            dropped++;
        }
    }
    CHECK(kept > 100 && dropped > 10 && flips > 100 && flips < 200 && zoomed > 50,
          "coverage: kept %d dropped %d flips %d zoomed %d", kept, dropped, flips, zoomed);
    // identity: the whole image, boxes normalised
    vlm_detaug_params id;
    vlm_detaug_identity(W, H, &id);
    float ob[4];
    CHECK(vlm_detaug_boxes(&id, 0.5f, box, NULL, 1, ob, NULL) == 1 && fabsf(ob[0] - 11.0f / 40) < 1e-6f &&
              fabsf(ob[1] - 13.0f / 30) < 1e-6f && fabsf(ob[2] - 12.0f / 40) < 1e-6f && fabsf(ob[3] - 10.0f / 30) < 1e-6f,
          "identity box %g %g %g %g", ob[0], ob[1], ob[2], ob[3]);
    free(out);
    vlm_image_free(&win);
    vlm_transform_scratch_free(&ts);
    vlm_image_free(&img);
}

static void test_errors(void) {
    char out[300];
    snprintf(out, sizeof out, "%s/err", ROOT);
    vlm_scenes_opts o;
    vlm_error err = {0};
    base_opts(&o, out);
    o.fmnist_dir = "/nonexistent/fashion-mnist";
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_IO && strstr(err.msg, "/nonexistent/fashion-mnist") &&
              strstr(err.msg, "get-fashion-mnist.sh"),
          "missing Fashion-MNIST dir: %s", err.msg);
    base_opts(&o, out);
    o.emoji_dir = "/nonexistent/emoji";
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_IO && strstr(err.msg, "/nonexistent/emoji"),
          "missing emoji dir: %s", err.msg);
    base_opts(&o, out);
    CHECK(vlm_scenes_parse_sizes("8", &o, &err) == VLM_ERR_ARG && strstr(err.msg, "16..1024"), "size 8: %s", err.msg);
    CHECK(vlm_scenes_parse_sizes("64,x", &o, &err) == VLM_ERR_ARG, "size list 64,x");
    CHECK(vlm_scenes_parse_sizes("64,96", &o, &err) == VLM_OK && o.n_sizes == 2 && o.sizes[1] == 96, "64,96");
    o.sizes[0] = 5000;
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_ARG && strstr(err.msg, "5000"), "size 5000: %s", err.msg);
    base_opts(&o, out);
    o.heldout = "purple ball";
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_ARG && strstr(err.msg, "purple ball"), "unknown held-out: %s",
          err.msg);
    base_opts(&o, out);
    o.heldout_n = 7;
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_ARG && strstr(err.msg, "no seen class"), "all held out: %s",
          err.msg);
    base_opts(&o, out);
    o.heldout_n = 0; // no held-out class: an empty heldout split, not an error
    vlm_scenes_report r0;
    vlm_status s0 = vlm_scenes_build(&o, &r0, &err);
    CHECK(s0 == VLM_OK, "no held-out classes: %s", err.msg);
    if (!s0) {
        CHECK(r0.images[2] == 0 && r0.boxes[2] == 0 && r0.images[0] == 40, "no held-out classes: %lld heldout images",
              (long long)r0.images[2]);
        vlm_scenes_report_free(&r0);
    }
    base_opts(&o, out);
    o.max_objects = 0;
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_ARG, "max objects 0");
    // emoji only, shared split, no val_twitter.tsv needed; vendor split needs it
    char em2[400], cmd[900];
    snprintf(em2, sizeof em2, "%s/emoji2", ROOT);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -r '%s/emoji/img' '%s/emoji/train.tsv' '%s/'", em2, ROOT, ROOT, em2);
    CHECK(system(cmd) == 0, "%s", cmd);
    base_opts(&o, out);
    o.fmnist_dir = NULL;
    o.emoji_dir = em2;
    CHECK(vlm_scenes_build(&o, NULL, &err) == VLM_ERR_IO && strstr(err.msg, "val_twitter.tsv"), "vendor split: %s",
          err.msg);
    o.emoji_split = VLM_SCENES_EMOJI_SHARED;
    o.heldout_n = 1;
    vlm_scenes_report rep;
    vlm_status s1 = vlm_scenes_build(&o, &rep, &err);
    CHECK(s1 == VLM_OK, "shared split: %s", err.msg);
    if (!s1) {
        CHECK(rep.n_classes == 4 && rep.source[0] == 1 && rep.instances[0] == 2 && rep.instances[1] == 2,
              "shared: %d classes, instances %lld/%lld", rep.n_classes, (long long)rep.instances[0],
              (long long)rep.instances[1]);
        vlm_scenes_report_free(&rep);
    }
    // detset: missing file, bad annotation, size mismatch
    vlm_detset ds;
    CHECK(vlm_detset_load(&ds, "/nonexistent/x.json", NULL, &err) == VLM_ERR_IO && strstr(err.msg, "/nonexistent/x.json"),
          "missing json: %s", err.msg);
    char p[600];
    snprintf(p, sizeof p, "%s/bad.json", ROOT);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"images\":[{\"id\":1,\"file_name\":\"single/train/000000.png\",\"width\":32,\"height\":32}],"
               "\"annotations\":[{\"id\":1,\"image_id\":2,\"category_id\":1,\"bbox\":[1,1,2,2],"
               "\"area\":4,\"iscrowd\":0}],"
               "\"categories\":[{\"id\":1,\"name\":\"a\"}]}");
    fclose(f);
    CHECK(vlm_detset_load(&ds, p, NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "annotations[0]") &&
              strstr(err.msg, "image_id 2"),
          "unknown image: %s", err.msg);
    f = fopen(p, "w");
    fprintf(f, "{\"images\":[{\"id\":1,\"file_name\":\"single/train/000000.png\",\"width\":31,\"height\":32}],"
               "\"annotations\":[],\"categories\":[]}");
    fclose(f);
    CHECK(vlm_detset_load(&ds, p, NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "000000.png"),
          "size mismatch: %s", err.msg);
    f = fopen(p, "w");
    fprintf(f, "{\"images\": [");
    fclose(f);
    CHECK(vlm_detset_load(&ds, p, NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "bad.json"), "truncated: %s",
          err.msg);
}

int main(void) {
    snprintf(ROOT, sizeof ROOT, "/tmp/vlm_test_scenes_XXXXXX");
    if (!mkdtemp(ROOT)) {
        perror("mkdtemp");
        return 1;
    }
    make_sources();
    test_single();
    test_multi_heldout_determinism();
    test_augment();
    test_errors();
    if (!tu_failures) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", ROOT);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", ROOT);
    } else {
        fprintf(stderr, "test files kept in %s\n", ROOT);
    }
    return tu_done("test_scenes");
}
