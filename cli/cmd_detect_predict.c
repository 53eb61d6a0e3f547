// `vlm detect predict`: run an open-vocabulary detector on one image with
// free-text queries; print the detections, draw them (boxes + labels) into a
// PNG and write them as COCO results.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "data/font.h"
#include "cli/opts.h"
#include "core/fs.h"
#include "data/coco.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/detection.h"
#include "eval/templates.h"
#include "fusion/classes.h"

static const char *usage =
    "usage: vlm detect predict --checkpoint DET --image IMG [--query TEXT ...] [options]\n"
    "Finds what the text queries name in one image with a detector from `vlm detect train`.\n"
    "  --checkpoint DET       detector model file (model.safetensors of a detect train run)\n"
    "  --image IMG            PNG or JPEG image (alpha dropped, as in training)\n"
    "  --query TEXT           a query (repeatable, in order); any free text, e.g. \"a red sneaker\"\n"
    "  --queries-file FILE    one query per line, after the --query texts\n"
    "                         (no queries given: the checkpoint's training class names)\n"
    "  --templates NAME|FILE  query templates: imagenet, imagenet7, cifar10, mnist, photo, name, or a\n"
    "                         file with one template per line containing {} (default: the text itself)\n"
    "  --clip CKPT --ensemble SEEN,NOVEL   fuse each token's score with this frozen CLIP's classification\n"
    "                         of its box's crop: p_det^(1-w) * p_clip^w, w = SEEN for the detector's training\n"
    "                         classes, NOVEL for other queries (as `vlm detect train --ensemble`)\n"
    "  --ensemble-context F   crop side = F x the box's longer side (default 1)\n"
    "  --threshold T          keep detections with score >= T (default 0.1)\n"
    "  --max-det N            at most N detections, best first (default 20)\n"
    "  --out VIS.png          the image with boxes and \"query score\" labels, one colour per query\n"
    "  --scale K              upscale VIS.png K times, nearest neighbour (default: the smallest K that\n"
    "                         makes the longer side >= 384 px)\n"
    "  --results OUT.json     COCO results [{image_id, category_id, bbox, score}], category_id = query\n"
    "                         index + 1 (the first query is 1)\n"
    "  --image-id ID          image_id in OUT.json (default 0)\n"
    "  --json                 end with one JSON line: {\"image\", \"detections\": [{\"query\",\n"
    "                         \"category_id\", \"score\", \"bbox\": [x, y, w, h]}, ...]}\n"
    "Prints one tab-separated line per detection: query, score, x, y, w, h (pixels of IMG).\n"
    "A non-square image is padded to a square (bottom and right, grey 128) before it is resized to\n"
    "the detector's input, so the whole image is seen undistorted; boxes are clipped to the image and\n"
    "boxes lying wholly in the padding are dropped. Each box takes its best-scoring query (OWL-ViT's\n"
    "post-processing), so one object gets one label.\n";

#define CMD "detect predict"

typedef struct {
    const char *checkpoint, *image, *queries_file, *templates, *out, *results;
    const char **query; // the --query values (argv pointers), in order
    int n_query;
    double threshold;
    long long max_det, image_id, scale; // scale 0: automatic
    int json;
    const char *clip; // --ensemble's CLIP
    int ensemble;
    double ens_w[2], ens_context;
} popts;

static int fn_ensemble(const char *v, void *dst, vlm_error *err) {
    popts *o = dst;
    if (cli_parse_ensemble(v, o->ens_w, err)) return -1;
    o->ensemble = 1;
    return 0;
}

static int fn_query(const char *v, void *dst, vlm_error *err) { // repeatable, in order
    popts *o = dst;
    if (!*v) return vlm_errorf(err, VLM_ERR_ARG, "--query: empty text"), -1;
    const char **q = realloc(o->query, sizeof(char *) * (size_t)(o->n_query + 1));
    if (!q) return vlm_errorf(err, VLM_ERR_OOM, "out of memory"), -1;
    o->query = q;
    o->query[o->n_query++] = v;
    return 0;
}

// 1: --help; 0: ok; -1: usage error in err.
static int parse(int argc, char **argv, popts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->threshold = 0.1;
    o->max_det = 20;
    o->ens_context = 1;
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &o->checkpoint, 0, 0, NULL, NULL},
        {"image", CLI_STR, &o->image, 0, 0, NULL, NULL},
        {"query", CLI_FN, o, 0, 0, fn_query, NULL},
        {"queries-file", CLI_STR, &o->queries_file, 0, 0, NULL, NULL},
        {"templates", CLI_STR, &o->templates, 0, 0, NULL, NULL},
        {"threshold", CLI_FLT, &o->threshold, 0, 1, NULL, NULL},
        {"max-det", CLI_INT, &o->max_det, 1, 100000, NULL, NULL},
        {"out", CLI_STR, &o->out, 0, 0, NULL, NULL},
        {"scale", CLI_INT, &o->scale, 1, 64, NULL, NULL},
        {"results", CLI_STR, &o->results, 0, 0, NULL, NULL},
        {"image-id", CLI_INT, &o->image_id, -9.3e18, 9.3e18, NULL, NULL},
        {"json", CLI_FLAG, &o->json, 0, 0, NULL, NULL},
        {"clip", CLI_STR, &o->clip, 0, 0, NULL, NULL},
        {"ensemble", CLI_FN, o, 0, 0, fn_ensemble, NULL},
        {"ensemble-context", CLI_FLT, &o->ens_context, 1, 4, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int r = cli_parse_flags(CMD, argc, argv, tabs, 1, err);
    if (r) return r;
    if (!o->checkpoint || !o->image) {
        vlm_errorf(err, VLM_ERR_ARG, "%s is required (usage: vlm detect predict --checkpoint DET --image IMG "
                   "--query TEXT ...)", o->checkpoint ? "--image" : "--checkpoint");
        return -1;
    }
    if (o->ensemble != (o->clip != NULL)) {
        vlm_errorf(err, VLM_ERR_ARG, "--ensemble SEEN,NOVEL and --clip CKPT go together (the CLIP scores the crops)");
        return -1;
    }
    return 0;
}

// One colour per query: ten well-separated colours (matplotlib's tab10 with
// its grey swapped out, which would vanish on the grey padding), then hues
// spaced by the golden angle.
static void query_color(int q, uint8_t c[3]) {
    static const uint8_t pal[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                       {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {0, 200, 120},
                                       {188, 189, 34},  {23, 190, 207}};
    if (q < 10) {
        memcpy(c, pal[q], 3);
        return;
    }
    double hue = fmod(q * 0.6180339887498949, 1.0) * 6.0, s = 0.85, v = 0.95;
    int i = (int)hue;
    double f = hue - i, p = v * (1 - s), qq = v * (1 - s * f), t = v * (1 - s * (1 - f));
    double rgb[6][3] = {{v, t, p}, {qq, v, p}, {p, v, t}, {p, qq, v}, {t, p, v}, {v, p, qq}};
    for (int k = 0; k < 3; k++) c[k] = (uint8_t)lround(255 * rgb[i % 6][k]);
}

// The label "<query> 0.87" in at most max_w pixels: the query is cut (ending
// in "..") when the whole label would not fit.
static void make_label(char *buf, size_t cap, const char *query, double score, int max_w, int fscale) {
    char sc[16];
    snprintf(sc, sizeof sc, " %.2f", score);
    snprintf(buf, cap, "%s%s", query, sc);
    if (vlm_text_width(buf, fscale) <= max_w) return;
    int n = vlm_text_chars(query) - 1, fit = max_w / (VLM_FONT_ADVANCE * fscale);
    for (n = n < fit ? n : fit; n >= 0; n--) {
        snprintf(buf, cap, "%.*s..%s", vlm_text_prefix_bytes(query, n), query, sc);
        if (vlm_text_width(buf, fscale) <= max_w) return;
    }
}

// A box (image pixels) in the k-times upscaled picture: inclusive corners,
// covering every upscaled pixel the box touches.
static void box_px(const vlm_det_box *d, int k, int *x0, int *y0, int *x1, int *y1) {
    *x0 = (int)floor(d->x * k), *y0 = (int)floor(d->y * k);
    *x1 = (int)ceil((d->x + d->w) * k) - 1, *y1 = (int)ceil((d->y + d->h) * k) - 1;
    if (*x1 < *x0) *x1 = *x0;
    if (*y1 < *y0) *y1 = *y0;
}

// The visualisation: img upscaled k times, boxes (2 px) then labels on
// filled backgrounds of the box colour, drawn worst first so the best
// detection's label ends on top.
static vlm_status write_vis(const char *path, const vlm_image *img, int k, const vlm_det_box *d, int n,
                            const char *const *queries, vlm_error *err) {
    int vw = img->w * k, vh = img->h * k;
    uint8_t *v = malloc((size_t)vw * (size_t)vh * 3);
    char *label = malloc(4096);
    if (!v || !label) {
        free(v);
        free(label);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for a %dx%d image", path, vw, vh);
    }
    for (int y = 0; y < vh; y++) {
        const uint8_t *src = img->px + (size_t)(y / k) * (size_t)img->w * 3;
        uint8_t *dst = v + (size_t)y * (size_t)vw * 3;
        for (int x = 0; x < vw; x++) memcpy(dst + 3 * (size_t)x, src + 3 * (size_t)(x / k), 3);
    }
    // Text grows with the picture: 7 px tall below 384 px, 14 px from 384
    // (the default upscaling's target), 21 px from 768, at most 28 px.
    int fs = (vw > vh ? vw : vh) / 384 + 1;
    if (fs > 4) fs = 4;
    int pad = fs;
    for (int i = n - 1; i >= 0; i--) {
        uint8_t c[3];
        int x0, y0, x1, y1;
        query_color(d[i].query, c);
        box_px(&d[i], k, &x0, &y0, &x1, &y1);
        vlm_draw_rect(v, vw, vh, x0, y0, x1, y1, c, 2);
    }
    for (int i = n - 1; i >= 0; i--) {
        uint8_t c[3];
        int x0, y0, x1, y1;
        query_color(d[i].query, c);
        box_px(&d[i], k, &x0, &y0, &x1, &y1);
        make_label(label, 4096, queries[d[i].query], d[i].score, vw - 2 * pad, fs);
        int lw = vlm_text_width(label, fs) + 2 * pad, lh = VLM_FONT_H * fs + 2 * pad;
        // above the box's top-left corner, moved inside the image when it would leave it
        int lx = x0, ly = y0 - lh;
        if (lx > vw - lw) lx = vw - lw;
        if (ly > vh - lh) ly = vh - lh;
        if (lx < 0) lx = 0;
        if (ly < 0) ly = 0;
        vlm_fill_rect(v, vw, vh, lx, ly, lx + lw - 1, ly + lh - 1, c);
        // dark text on light colours, white on dark ones
        int lum = (299 * c[0] + 587 * c[1] + 114 * c[2]) / 1000;
        const uint8_t ink[3] = {lum > 150 ? 0 : 255, lum > 150 ? 0 : 255, lum > 150 ? 0 : 255};
        vlm_draw_text(v, vw, vh, lx + pad, ly + pad, label, ink, fs);
    }
    vlm_status st = vlm_image_write_png(path, v, vw, vh, err);
    free(v);
    free(label);
    return st;
}

// The queries: the --query texts, then the file's lines; with neither, the
// checkpoint's training class names (newline-separated, split in place).
static int collect_queries(const popts *o, char **file_q, int n_file, char *classnames, const char ***out) {
    int Q = 0, cnt = o->n_query + n_file + 1;
    if (!o->n_query && !n_file && classnames)
        for (const char *p = classnames; *p; p++) cnt += *p == '\n';
    const char **q = malloc(sizeof(char *) * (size_t)cnt);
    if (!q) return -1;
    for (int i = 0; i < o->n_query; i++) q[Q++] = o->query[i];
    for (int i = 0; i < n_file; i++) q[Q++] = file_q[i];
    if (!Q && classnames)
        for (char *p = classnames, *e; p; p = e) {
            e = strchr(p, '\n');
            if (e) *e++ = 0;
            if (*p) q[Q++] = p;
        }
    *out = q;
    return Q;
}

static void print_json(const popts *o, const char **queries, const vlm_det_box *det, int n) {
    printf("{\"image\": ");
    cli_json_str(stdout, o->image);
    printf(", \"detections\": [");
    for (int i = 0; i < n; i++) {
        printf("%s{\"query\": ", i ? ", " : "");
        cli_json_str(stdout, queries[det[i].query]);
        printf(", \"category_id\": %d, \"score\": %.6f, \"bbox\": [%.2f, %.2f, %.2f, %.2f]}", det[i].query + 1,
               det[i].score, det[i].x, det[i].y, det[i].w, det[i].h);
    }
    printf("]}\n");
}

// The outputs: detection lines (stdout; stderr with --json), --results,
// --out and the --json line.
static vlm_status emit(const popts *o, const vlm_image *img, const char **queries, const vlm_det_box *det, int n,
                       vlm_error *err) {
    const int W = img->w, H = img->h, P = W > H ? W : H;
    FILE *f = stdout; // with --json the JSON line follows the report
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\t%.4f\t%.1f\t%.1f\t%.1f\t%.1f\n", queries[det[i].query], det[i].score, det[i].x, det[i].y,
                det[i].w, det[i].h);
    vlm_status st = VLM_OK;
    if (o->results) {
        vlm_coco_results res;
        vlm_coco_results_init(&res);
        for (int i = 0; i < n && !st; i++) {
            double b[4] = {det[i].x, det[i].y, det[i].w, det[i].h};
            st = vlm_coco_results_add(&res, o->image_id, det[i].query + 1, b, det[i].score, err);
        }
        if (!st) st = vlm_coco_results_save(&res, o->results, err);
        vlm_coco_results_free(&res);
        if (st) return st;
        fprintf(stderr, "%s: wrote %s\n", CMD, o->results);
    }
    if (o->out) {
        int k = (int)o->scale;
        if (!k) k = (384 + P - 1) / P; // the longer side reaches 384 px
        if (k < 1) k = 1;
        if ((long long)W * k * H * k > VLM_IMAGE_DEFAULT_MAX_PIXELS)
            return vlm_errorf(err, VLM_ERR_ARG, "--scale %d: a %dx%d visualisation exceeds %lld pixels", k, W * k, H * k,
                              (long long)VLM_IMAGE_DEFAULT_MAX_PIXELS);
        if ((st = write_vis(o->out, img, k, det, n, queries, err))) return st;
        fprintf(stderr, "%s: wrote %s (%dx%d)\n", CMD, o->out, W * k, H * k);
    }
    if (o->json) print_json(o, queries, det, n);
    return fflush(stdout) ? vlm_errorf(err, VLM_ERR_IO, "writing to stdout failed") : VLM_OK;
}

int cmd_detect_predict(int argc, char **argv) {
    vlm_error err = {0};
    popts o;
    int pr = parse(argc, argv, &o, &err);
    if (pr) {
        free(o.query);
        return cli_parse_exit(pr, CMD, usage, &err);
    }
    int rc = 1, have_model = 0, Q = 0, n_file = 0, nt = 0, n = 0, own_tmpl = 0;
    char **file_q = NULL, **tmpl = NULL, *classnames = NULL;
    const char **queries = NULL;
    float *qe = NULL;
    vlm_det_box *det = NULL;
    vlm_image img;
    vlm_image_init(&img);
    vlm_owl m;
    memset(&m, 0, sizeof m);
    vlm_det_ensemble ens;
    memset(&ens, 0, sizeof ens);
    // Cheap inputs first, so a typo fails before the model loads.
    vlm_decode_opts dec;
    vlm_decode_opts_default(&dec);
    if (vlm_image_load(&img, o.image, &dec, &err)) goto done;
    if (o.templates && vlm_templates_resolve(o.templates, &tmpl, &nt, &own_tmpl, &err)) goto done;
    if (o.queries_file && vlm_lines_load(o.queries_file, &file_q, &n_file, &err)) {
        file_q = NULL, n_file = 0;
        goto done;
    }
    if (vlm_owl_load(&m, o.checkpoint, &classnames, &err)) goto done;
    have_model = 1;
    if ((Q = collect_queries(&o, file_q, n_file, classnames, &queries)) < 0) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto done;
    }
    if (!Q) {
        vlm_errorf(&err, VLM_ERR_ARG, "no queries: give --query TEXT or --queries-file FILE (%s has no training class names)",
                   o.checkpoint);
        goto done;
    }
    qe = malloc(sizeof(float) * (size_t)Q * m.det.cfg.embed_dim);
    det = malloc(sizeof(vlm_det_box) * (size_t)o.max_det);
    if (!qe || !det) {
        vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        goto done;
    }
    if (vlm_owl_queries(&m, queries, Q, (const char *const *)tmpl, nt, qe, &err)) goto done;
    if (o.ensemble) {
        vlm_det_ensemble_opts eo;
        vlm_det_ensemble_opts_default(&eo);
        eo.clip = o.clip, eo.w_seen = (float)o.ens_w[0], eo.w_novel = (float)o.ens_w[1], eo.context = (float)o.ens_context;
        if (vlm_det_ensemble_init(&ens, &eo, &err)) goto done;
        ens.seen = classnames;
        if (vlm_det_ensemble_queries(&ens, queries, Q, (const char *const *)tmpl, nt, &err)) goto done;
        m.ens = &ens;
    }
    if (vlm_owl_detect(&m, &img, qe, Q, (float)o.threshold, (int)o.max_det, det, &n, &err)) {
        vlm_error_prefix(&err, "%s", o.image);
        goto done;
    }
    const int S = m.det.cfg.vit.image_size;
    fprintf(stderr, "%s: %s (%dx%d) at %dx%d, %d quer%s: %d detection%s with score >= %g\n", CMD, o.image, img.w, img.h,
            S, S, Q, Q == 1 ? "y" : "ies", n, n == 1 ? "" : "s", o.threshold);
    rc = emit(&o, &img, queries, det, n, &err) ? 1 : 0;
done:
    if (rc) cli_fail(CMD, &err);
    if (have_model) vlm_owl_free(&m);
    vlm_det_ensemble_free(&ens);
    if (own_tmpl) vlm_strlist_free(tmpl, nt);
    vlm_strlist_free(file_q, n_file);
    vlm_image_free(&img);
    free(classnames), free(queries), free(qe), free(det), free(o.query);
    return rc;
}
