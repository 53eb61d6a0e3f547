// `vlm detect predict` and its drawing helpers (data/font.c): text widths,
// glyph identity, exact rectangle and text pixels, clipping at the borders
// (guard bytes; ASan in the sanitizer build), then end to end through the
// built binary: a detector made from the shared tiny CLIP, a non-square PNG,
// the visualisation's size, COCO results, the JSON line and the errors.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "data/coco.h"
#include "data/font.h"
#include "data/image.h"
#include "eval/detect_eval.h"
#include "fusion/detection.h"
#include "tests/testutil.h"

static const uint8_t RED[3] = {255, 0, 0};

static int is_set(const uint8_t *rgb, int w, int x, int y) {
    const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
    return p[0] == RED[0] && p[1] == RED[1] && p[2] == RED[2];
}

static void test_text_width(void) {
    CHECK(vlm_text_width("", 1) == 0 && vlm_text_width("", 3) == 0, "empty");
    CHECK(vlm_text_width("A", 1) == 5, "one glyph: %d", vlm_text_width("A", 1));
    CHECK(vlm_text_width("AB", 1) == 11, "two glyphs: %d", vlm_text_width("AB", 1));
    CHECK(vlm_text_width("dog 0.87", 2) == (8 * 6 - 1) * 2, "scale 2: %d", vlm_text_width("dog 0.87", 2));
    CHECK(vlm_text_width("x", 0) == 5, "scale < 1 counts as 1");
    // UTF-8: one '?' per code point (2-, 3- and 4-byte sequences), stray bytes one each
    CHECK(vlm_text_chars("caf\xC3\xA9") == 4, "2-byte: %d", vlm_text_chars("caf\xC3\xA9"));
    CHECK(vlm_text_chars("\xE2\x9C\x93") == 1, "3-byte");
    CHECK(vlm_text_chars("\xF0\x9F\x98\x80 face") == 6, "emoji: %d", vlm_text_chars("\xF0\x9F\x98\x80 face"));
    CHECK(vlm_text_chars("\x80\x80") == 2 && vlm_text_chars("\xF0\x9F") == 1, "broken sequences");
    CHECK(vlm_text_width("\xF0\x9F\x98\x80", 1) == vlm_text_width("?", 1), "emoji width");
    CHECK(vlm_text_prefix_bytes("\xF0\x9F\x98\x80" "ab", 1) == 4 && vlm_text_prefix_bytes("ab", 5) == 2,
          "prefix bytes");
}

static void test_glyphs(void) {
    // every printable glyph but space has ink, and no two glyphs are the same
    int blank = 0, dup = 0;
    for (int a = 33; a < 127; a++) {
        const uint8_t *g = vlm_font_glyph((unsigned char)a);
        blank += !(g[0] | g[1] | g[2] | g[3] | g[4]);
        for (int b = a + 1; b < 127; b++) dup += !memcmp(g, vlm_font_glyph((unsigned char)b), VLM_FONT_W);
    }
    CHECK(blank == 0, "%d printable glyphs are blank", blank);
    CHECK(dup == 0, "%d pairs of identical glyphs", dup);
    CHECK(vlm_font_glyph(' ')[2] == 0, "space is blank");
    CHECK(vlm_font_glyph(200) == vlm_font_glyph('?') && vlm_font_glyph('\n') == vlm_font_glyph('?'), "others -> ?");
    // drawn: '1' vs 'l' vs 'I', 'O' vs '0', a lowercase vs its capital; non-ASCII as '?'
    const char *pairs[][2] = {{"1", "l"}, {"l", "I"}, {"O", "0"}, {"a", "A"}, {"e", "E"}, {"5", "S"}, {"g", "9"}, {".", ","}};
    uint8_t a[VLM_FONT_H * VLM_FONT_W * 3], b[VLM_FONT_H * VLM_FONT_W * 3];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        memset(a, 0, sizeof a);
        memset(b, 0, sizeof b);
        vlm_draw_text(a, VLM_FONT_W, VLM_FONT_H, 0, 0, pairs[i][0], RED, 1);
        vlm_draw_text(b, VLM_FONT_W, VLM_FONT_H, 0, 0, pairs[i][1], RED, 1);
        CHECK(memcmp(a, b, sizeof a), "'%s' and '%s' draw the same pixels", pairs[i][0], pairs[i][1]);
    }
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    vlm_draw_text(a, VLM_FONT_W, VLM_FONT_H, 0, 0, "\xF0\x9F\x90\xB6", RED, 1);
    vlm_draw_text(b, VLM_FONT_W, VLM_FONT_H, 0, 0, "?", RED, 1);
    CHECK(!memcmp(a, b, sizeof a), "an emoji draws as '?'");
}

static void test_exact_pixels(void) {
    enum { W = 20, H = 18 };
    uint8_t img[W * H * 3];
    // outline of (2,3)-(10,12), 2 px inwards
    memset(img, 0, sizeof img);
    vlm_draw_rect(img, W, H, 2, 3, 10, 12, RED, 2);
    int bad = 0, set = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int in = x >= 2 && x <= 10 && y >= 3 && y <= 12;
            int want = in && (x <= 3 || x >= 9 || y <= 4 || y >= 11);
            bad += is_set(img, W, x, y) != want;
            set += is_set(img, W, x, y);
        }
    CHECK(bad == 0 && set == 9 * 10 - 5 * 6, "rect outline: %d wrong pixels, %d set", bad, set);
    // reversed corners, thickness 1
    memset(img, 0, sizeof img);
    vlm_draw_rect(img, W, H, 10, 12, 2, 3, RED, 1);
    bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int want = x >= 2 && x <= 10 && y >= 3 && y <= 12 && (x == 2 || x == 10 || y == 3 || y == 12);
            bad += is_set(img, W, x, y) != want;
        }
    CHECK(bad == 0, "reversed corners: %d wrong pixels", bad);
    // filled
    memset(img, 0, sizeof img);
    vlm_fill_rect(img, W, H, 4, 5, 6, 5, RED);
    bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) bad += is_set(img, W, x, y) != (x >= 4 && x <= 6 && y == 5);
    CHECK(bad == 0, "fill: %d wrong pixels", bad);
    // '-' is row 3 of columns 0..4; at scale 2 from (1, 2): rows 8..9, columns 1..10
    memset(img, 0, sizeof img);
    vlm_draw_text(img, W, H, 1, 2, "-", RED, 2);
    bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) bad += is_set(img, W, x, y) != (x >= 1 && x <= 10 && y >= 8 && y <= 9);
    CHECK(bad == 0, "'-' at scale 2: %d wrong pixels", bad);
    // "--" leaves one spacing column: columns 0..4 and 6..10 of row 3
    memset(img, 0, sizeof img);
    vlm_draw_text(img, W, H, 0, 0, "--", RED, 1);
    bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) bad += is_set(img, W, x, y) != (y == 3 && x <= 10 && x != 5);
    CHECK(bad == 0, "'--': %d wrong pixels", bad);
}

// Drawing that reaches past every border writes only inside the image: the
// buffer is exactly w*h*3 bytes between guard zones (ASan also checks it).
static void test_clipping(void) {
    enum { W = 13, H = 9, G = 4096 };
    uint8_t *buf = malloc(W * H * 3 + 2 * G);
    if (!buf) {
        CHECK(0, "malloc");
        return;
    }
    memset(buf, 0xAB, W * H * 3 + 2 * G);
    uint8_t *img = buf + G;
    memset(img, 0, W * H * 3);
    vlm_draw_rect(img, W, H, -100, -100, -50, -50, RED, 2);   // wholly outside
    vlm_draw_rect(img, W, H, W + 1, 0, W + 40, H, RED, 5);
    vlm_draw_rect(img, W, H, 3, 3, 5, 5, RED, 1000);          // thicker than the box: filled
    vlm_fill_rect(img, W, H, -3, H - 2, W + 3, H + 50, RED);
    vlm_draw_text(img, W, H, -8, -3, "Hello, World 0.87", RED, 1);
    vlm_draw_text(img, W, H, W - 3, H - 4, "WWW", RED, 3);
    vlm_draw_text(img, W, H, -1000, 2, "far left but long enough? no", RED, 2);
    vlm_draw_text(img, W, H, 2, -1000, "above", RED, 50);
    vlm_draw_text(img, W, H, 0, 0, "\xF0\x9F\x98\x80\xE2\x9C\x93 end", RED, 1);
    int guard_ok = 1;
    for (int i = 0; i < G; i++) guard_ok &= buf[i] == 0xAB && buf[G + W * H * 3 + i] == 0xAB;
    CHECK(guard_ok, "drawing wrote outside the image");
    CHECK(is_set(img, W, 4, 4) && is_set(img, W, 6, H - 1), "clipped fills drawn");
    // An outline 3 px wide whose bands all lie off the image draws nothing;
    // one whose bands straddle the borders leaves exactly the image's edge.
    memset(img, 0, W * H * 3);
    vlm_draw_rect(img, W, H, -5, -7, W + 6, H + 3, RED, 3);
    int set = 0, bad = 0;
    for (int i = 0; i < W * H; i++) set += is_set(img, W, i % W, i / W);
    CHECK(set == 0, "off-image bands drew %d pixels", set);
    vlm_draw_rect(img, W, H, -2, -2, W + 1, H + 1, RED, 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) bad += is_set(img, W, x, y) != (x == 0 || x == W - 1 || y == 0 || y == H - 1);
    CHECK(bad == 0, "straddling outline: %d wrong pixels", bad);
    for (int i = 0; i < G; i++) guard_ok &= buf[i] == 0xAB && buf[G + W * H * 3 + i] == 0xAB;
    CHECK(guard_ok, "drawing wrote outside the image");
    // an empty image is fine too
    vlm_draw_rect(img, 0, 0, 0, 0, 5, 5, RED, 2);
    vlm_draw_text(img, 0, 0, 0, 0, "x", RED, 1);
    free(buf);
}

// ---------------------------------------------------------------- end to end

// Runs the vlm binary with args; stdout and stderr to files in dir; returns
// the exit status (-1 if it did not exit normally).
static int run_vlm(const char *dir, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/vlm detect predict %s >%s/stdout.txt 2>%s/stderr.txt", VLM_BINARY_DIR, args, dir,
             dir);
    int s = system(cmd);
    return s != -1 && WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

static int stderr_has(const char *dir, const char *needle) {
    char p[512];
    snprintf(p, sizeof p, "%s/stderr.txt", dir);
    char *s = tu_read_file(p, NULL);
    int ok = s && strstr(s, needle) != NULL;
    if (!ok) fprintf(stderr, "  (stderr was: %s)\n", s ? s : "(none)");
    free(s);
    return ok;
}

static void test_end_to_end(void) {
    char bin[512];
    snprintf(bin, sizeof bin, "%s/vlm", VLM_BINARY_DIR);
    if (access(bin, X_OK)) {
        CHECK(0, "%s not built", bin);
        return;
    }
    vlm_error err;
    vlm_clip m;
    char *vocab;
    if (tu_tiny_clip(&m, &vocab)) return;
    char dir[] = "/tmp/vlm_test_predict_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        vlm_clip_free(&m);
        free(vocab);
        return;
    }
    char clip[256], det[256], det_bare[256], png[256], vis[256], res[256], outp[256], args[2048], qf[256];
    snprintf(clip, sizeof clip, "%s/clip.safetensors", dir);
    snprintf(det, sizeof det, "%s/det.safetensors", dir);
    snprintf(det_bare, sizeof det_bare, "%s/det_bare.safetensors", dir);
    snprintf(png, sizeof png, "%s/scene.png", dir);
    snprintf(vis, sizeof vis, "%s/vis.png", dir);
    snprintf(res, sizeof res, "%s/results.json", dir);
    snprintf(outp, sizeof outp, "%s/stdout.txt", dir);
    snprintf(qf, sizeof qf, "%s/queries.txt", dir);
    CHECK(vlm_ckpt_save_model(clip, &m, vocab, 0, 0, &err) == VLM_OK, "save clip: %s", err.msg);
    vlm_owl o;
    if (vlm_owl_from_clip(&o, clip, 64, 0, 5, &err)) {
        CHECK(0, "from_clip: %s", err.msg);
    } else {
        CHECK(vlm_owl_save(det, &o, "dog\nsneaker\nface", &err) == VLM_OK, "save: %s", err.msg);
        CHECK(vlm_owl_save(det_bare, &o, NULL, &err) == VLM_OK, "save: %s", err.msg);
        vlm_owl_free(&o);
    }
    // a non-square scene, 80 x 48: grey-blue background, two coloured blocks
    enum { IW = 80, IH = 48 };
    static uint8_t px[IW * IH * 3];
    for (int y = 0; y < IH; y++)
        for (int x = 0; x < IW; x++) {
            uint8_t *p = px + (y * IW + x) * 3;
            p[0] = 90, p[1] = 110, p[2] = 140;
            if (x >= 8 && x < 30 && y >= 10 && y < 40) p[0] = 240, p[1] = 200, p[2] = 40;
            if (x >= 45 && x < 75 && y >= 5 && y < 25) p[0] = 200, p[1] = 30, p[2] = 60;
        }
    CHECK(vlm_image_write_png(png, px, IW, IH, &err) == VLM_OK, "png: %s", err.msg);

    // threshold 0 keeps the untrained head's (low) scores, so boxes exist
    snprintf(args, sizeof args,
             "--checkpoint %s --image %s --query 'a yellow dog' --query 'a red sneaker' --threshold 0 --max-det 6 "
             "--out %s --results %s --image-id 42 --json",
             det, png, vis, res);
    int rc = run_vlm(dir, args);
    CHECK(rc == 0, "predict exit %d", rc);
    CHECK(stderr_has(dir, "2 queries"), "summary on stderr");
    vlm_image img;
    vlm_image_init(&img);
    // 80 x 48 -> the smallest factor making the longer side >= 384 is 5
    if (vlm_image_load(&img, vis, NULL, &err)) {
        CHECK(0, "vis: %s", err.msg);
    } else {
        CHECK(img.w == 400 && img.h == 240, "vis size %dx%d", img.w, img.h);
        // some pixel has the first or second query's colour (tab10 blue / orange)
        int coloured = 0;
        for (int i = 0; i < img.w * img.h; i++) {
            const uint8_t *p = img.px + 3 * i;
            coloured += (p[0] == 31 && p[1] == 119 && p[2] == 180) || (p[0] == 255 && p[1] == 127 && p[2] == 14);
        }
        CHECK(coloured > 0, "boxes drawn in the query colours");
    }
    vlm_coco_results r;
    if (vlm_coco_results_load(&r, res, NULL, &err)) {
        CHECK(0, "results: %s", err.msg);
    } else {
        // boxes wholly in the padding (below row 48) are dropped, so up to 6
        CHECK(r.n >= 1 && r.n <= 6, "1..6 results, got %ld", r.n);
        for (long i = 0; i < r.n; i++) {
            const vlm_coco_det *d = &r.dets[i];
            CHECK(d->image_id == 42 && (d->category_id == 1 || d->category_id == 2), "ids %lld %lld",
                  (long long)d->image_id, (long long)d->category_id);
            CHECK(d->bbox[0] >= 0 && d->bbox[1] >= 0 && d->bbox[2] > 0 && d->bbox[3] > 0 &&
                      d->bbox[0] + d->bbox[2] <= IW + 1e-3 && d->bbox[1] + d->bbox[3] <= IH + 1e-3,
                  "box %d clipped to the image: %g %g %g %g", (int)i, d->bbox[0], d->bbox[1], d->bbox[2], d->bbox[3]);
            CHECK(i == 0 || d->score <= r.dets[i - 1].score, "sorted by score");
        }
        // stdout: the tab-separated detection lines, then the JSON line, matching the file
        char *out = tu_read_file(outp, NULL);
        int lines = 0;
        char *last = NULL;
        for (char *p = out, *e; p && *p; p = e + 1) {
            e = strchr(p, '\n');
            if (!e) break;
            *e = 0;
            lines++;
            if (*p == '{') last = p;
            else CHECK(!strncmp(p, "a yellow dog\t", 13) || !strncmp(p, "a red sneaker\t", 14), "line '%s'", p);
        }
        CHECK(lines == r.n + 1, "%d stdout lines for %ld detections", lines, r.n);
        json_error_t je;
        json_t *j = last ? json_loads(last, 0, &je) : NULL;
        json_t *ds = j ? json_object_get(j, "detections") : NULL;
        CHECK(j && !strcmp(json_string_value(json_object_get(j, "image")), png), "JSON line: image");
        CHECK(json_is_array(ds) && (long)json_array_size(ds) == r.n, "JSON line: detections");
        for (size_t i = 0; ds && i < json_array_size(ds) && (long)i < r.n; i++) {
            json_t *e = json_array_get(ds, i);
            long long cat = json_integer_value(json_object_get(e, "category_id"));
            const char *q = json_string_value(json_object_get(e, "query"));
            CHECK(cat == r.dets[i].category_id && q && !strcmp(q, cat == 1 ? "a yellow dog" : "a red sneaker"),
                  "JSON detection %d: %lld %s", (int)i, cat, q ? q : "?");
            CHECK(fabs(json_number_value(json_object_get(e, "score")) - r.dets[i].score) < 1e-5, "score");
            CHECK(fabs(json_number_value(json_array_get(json_object_get(e, "bbox"), 2)) - r.dets[i].bbox[2]) < 0.01,
                  "bbox");
        }
        json_decref(j);
        free(out);
        // the library call the CLI makes: the same detections from vlm_owl_detect
        vlm_owl lo;
        if (vlm_owl_load(&lo, det, NULL, &err) == VLM_OK) {
            const char *qs[2] = {"a yellow dog", "a red sneaker"};
            float qe[2 * 1024];
            vlm_det_box boxes[6];
            int nb = -1;
            vlm_image scene;
            vlm_image_init(&scene);
            CHECK(lo.det.cfg.embed_dim <= 1024 && vlm_owl_queries(&lo, qs, 2, NULL, 0, qe, &err) == VLM_OK &&
                      vlm_image_load(&scene, png, NULL, &err) == VLM_OK &&
                      vlm_owl_detect(&lo, &scene, qe, 2, 0.0f, 6, boxes, &nb, &err) == VLM_OK,
                  "vlm_owl_detect: %s", err.msg);
            CHECK(nb == r.n, "vlm_owl_detect found %d, the CLI %ld", nb, r.n);
            for (int i = 0; i < nb && i < r.n; i++)
                CHECK(boxes[i].query + 1 == r.dets[i].category_id && fabs(boxes[i].score - r.dets[i].score) < 1e-5 &&
                          fabs(boxes[i].x - r.dets[i].bbox[0]) < 0.01 && fabs(boxes[i].w - r.dets[i].bbox[2]) < 0.01,
                      "detection %d as the CLI's", i);
            CHECK(vlm_owl_detect(&lo, &scene, qe, 0, 0.0f, 6, boxes, &nb, &err) == VLM_ERR_ARG, "no queries refused");
            // vlm_owl_evaluate on a one-image COCO split: its statistics are
            // pycocotools' on the results file it writes
            char gtp[300], dtp[300];
            snprintf(gtp, sizeof gtp, "%s/gt.json", dir);
            snprintf(dtp, sizeof dtp, "%s/dt.json", dir);
            FILE *gf = fopen(gtp, "w");
            if (gf) {
                fprintf(gf, "{\"images\": [{\"id\": 1, \"file_name\": \"scene.png\", \"width\": 80, \"height\": 48}], "
                            "\"categories\": [{\"id\": 1, \"name\": \"dog\"}, {\"id\": 2, \"name\": \"sneaker\"}], "
                            "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [8, 10, 22, 30], "
                            "\"area\": 660, \"iscrowd\": 0}, {\"id\": 2, \"image_id\": 1, \"category_id\": 2, "
                            "\"bbox\": [45, 5, 30, 20], \"area\": 600, \"iscrowd\": 0}]}\n");
                fclose(gf);
            }
            vlm_det_split sp;
            vlm_det_eval ev;
            char summary[2048];
            CHECK(vlm_det_split_load(&sp, gtp, 0, &err) == VLM_OK &&
                      vlm_owl_evaluate(&lo, NULL, &sp, NULL, 0, 2, 10, dtp, &ev, summary, sizeof summary, &err) == VLM_OK,
                  "vlm_owl_evaluate: %s", err.msg);
            CHECK(ev.n_images == 1 && ev.n_dets >= 1 && ev.n_dets <= 10 && strstr(summary, "Average Precision"),
                  "evaluate: %ld images, %ld detections", ev.n_images, ev.n_dets);
            vlm_coco_gt g2;
            vlm_coco_results d2;
            vlm_coco_eval e2;
            if (vlm_coco_gt_load(&g2, gtp, &err) == VLM_OK) {
                if (vlm_coco_results_load(&d2, dtp, &g2, &err) == VLM_OK) {
                    CHECK(d2.n == ev.n_dets && vlm_coco_eval_run(&e2, &g2, &d2, &err) == VLM_OK, "re-evaluate: %s",
                          err.msg);
                    for (int k = 0; k < VLM_COCO_NSTATS; k++)
                        CHECK(e2.stats[k] == ev.stats[k], "stat %d: %g vs %g", k, ev.stats[k], e2.stats[k]);
                    vlm_coco_eval_free(&e2);
                    vlm_coco_results_free(&d2);
                }
                vlm_coco_gt_free(&g2);
            }
            vlm_det_split_free(&sp);
            unlink(gtp), unlink(dtp);
            vlm_image_free(&scene);
            vlm_owl_free(&lo);
        } else
            CHECK(0, "load detector: %s", err.msg);
        vlm_coco_results_free(&r);
    }

    // the training class names when no query is given; --scale; a queries file with an emoji
    snprintf(args, sizeof args, "--checkpoint %s --image %s --threshold 0 --max-det 3 --out %s --scale 2", det, png,
             vis);
    CHECK(run_vlm(dir, args) == 0, "class names as queries");
    CHECK(stderr_has(dir, "3 queries"), "three class names");
    vlm_image_free(&img);
    vlm_image_init(&img);
    CHECK(!vlm_image_load(&img, vis, NULL, &err) && img.w == 160 && img.h == 96, "--scale 2: %dx%d", img.w, img.h);
    FILE *f = fopen(qf, "w");
    if (f) {
        fputs("grinning face \xF0\x9F\x98\x80\na \"quoted\" dog\n", f);
        fclose(f);
    }
    snprintf(args, sizeof args, "--checkpoint %s --image %s --queries-file %s --templates photo --threshold 0 "
             "--max-det 4 --out %s --json", det, png, qf, vis);
    CHECK(run_vlm(dir, args) == 0, "queries file");
    char *out = tu_read_file(outp, NULL);
    char *js = out ? strstr(out, "{\"image\"") : NULL;
    json_error_t je;
    json_t *j = js ? json_loads(js, JSON_DISABLE_EOF_CHECK, &je) : NULL;
    CHECK(j && json_array_size(json_object_get(j, "detections")) >= 1, "JSON with quotes and UTF-8 parses");
    json_decref(j);
    free(out);

    // errors: clear messages, exit code 1, nothing leaked (LeakSanitizer in the ASan build)
    snprintf(args, sizeof args, "--checkpoint %s/missing.safetensors --image %s --query x", dir, png);
    CHECK(run_vlm(dir, args) == 1 && stderr_has(dir, "missing.safetensors"), "missing checkpoint");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x", clip, png);
    CHECK(run_vlm(dir, args) == 1 && stderr_has(dir, "not a vlm detector"), "a CLIP is not a detector");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x", det, qf);
    CHECK(run_vlm(dir, args) == 1 && stderr_has(dir, "queries.txt"), "unreadable image");
    snprintf(args, sizeof args, "--checkpoint %s --image %s", det_bare, png);
    CHECK(run_vlm(dir, args) == 1 && stderr_has(dir, "no queries"), "no queries");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x --threshold 1.5", det, png);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "--threshold"), "bad threshold");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x --max-det many", det, png);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "--max-det"), "bad max-det");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x --colour red", det, png);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "unknown option '--colour'"), "unknown flag");
    snprintf(args, sizeof args, "--image %s --query x", png);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "--checkpoint is required"), "no checkpoint");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query", det, png);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "--query needs a value"), "dangling flag");
    // --ensemble: the CLIP's crop scores fused in. With w = 1 for novel queries (det_bare has no
    // training classes: x and y are novel) a score is p_clip alone, and a box takes its best of
    // two queries, so every score is >= 0.5 (tokens outside the top fuse with 1/Q = 0.5).
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x --query y --threshold 0 --max-det 40 --clip %s --ensemble 0,1 --json",
             det_bare, png, clip);
    CHECK(run_vlm(dir, args) == 0, "--ensemble run");
    char *ej = tu_read_file(outp, NULL);
    json_t *ejs = ej ? json_loads(strrchr(ej, '{') ? strstr(ej, "{\"image\"") : ej, 0, NULL) : NULL;
    json_t *eds = json_object_get(ejs, "detections");
    CHECK(json_array_size(eds) > 0, "--ensemble detections: %s", ej ? ej : "(no output)");
    for (size_t i = 0; i < json_array_size(eds); i++) {
        double sc = json_number_value(json_object_get(json_array_get(eds, i), "score"));
        CHECK(sc >= 0.4999 && sc <= 1, "--ensemble 0,1 score %g of detection %d outside [0.5, 1]", sc, (int)i);
    }
    json_decref(ejs);
    free(ej);
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x --ensemble 0.35,0.65", det, png);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "--clip"), "--ensemble without --clip");
    snprintf(args, sizeof args, "--checkpoint %s --image %s --query x --clip %s --ensemble 0.35", det, png, clip);
    CHECK(run_vlm(dir, args) == 2 && stderr_has(dir, "--ensemble"), "--ensemble one weight");
    CHECK(run_vlm(dir, "--help") == 0, "--help");
    char *help = tu_read_file(outp, NULL);
    CHECK(help && strstr(help, "usage: vlm detect predict"), "usage on stdout");
    free(help);

    vlm_image_free(&img);
    const char *files[] = {clip, det, det_bare, png, vis, res, qf};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(files[i]);
    char p[512];
    snprintf(p, sizeof p, "%s/stdout.txt", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/stderr.txt", dir);
    unlink(p);
    rmdir(dir);
    vlm_clip_free(&m);
    free(vocab);
}

int main(void) {
    test_text_width();
    test_glyphs();
    test_exact_pixels();
    test_clipping();
    test_end_to_end();
    return tu_done("test_detect_predict");
}
