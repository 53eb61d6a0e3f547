// `vlm preprocess` (images -> eval-transformed tensor in safetensors) and
// `vlm data stats|preview|convert|bench|scenes` (inspect, visualise, reshard
// and time datasets; build the detection scenes).
#include <jansson.h>
#include "core/clock.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/scenes.h"
#include "data/transform.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static double cpu_s(void) { // user + system time of the whole process (all threads)
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static int parse_floats3(const char *s, float out[3]) {
    char *e;
    for (int i = 0; i < 3; i++) {
        out[i] = strtof(s, &e);
        if (e == s || (i < 2 && *e != ',') || (i == 2 && *e)) return -1;
        s = e + 1;
    }
    return 0;
}

static int parse_rgb(const char *s, uint8_t out[3]) {
    float f[3];
    if (parse_floats3(s, f)) return -1;
    for (int i = 0; i < 3; i++) {
        if (f[i] < 0 || f[i] > 255) return -1;
        out[i] = (uint8_t)f[i];
    }
    return 0;
}

// Options shared by the subcommands that open datasets or decode images.
typedef struct {
    cli_data_opts d;
    const char *classnames;
    vlm_dataset_opts ds; // built from d after parsing
} common_opts;

#define COMMON_HELP \
    "dataset options (DATA is a .tsv/.csv manifest, a tar shard pattern such as\n" \
    "'shards/{000000..000009}.tar', an ImageFolder directory or an IDX images file):\n" \
    "  --csv-separator C    manifest separator: 'tab' (default, as open_clip) or one character\n" \
    "  --csv-img-key K      manifest image column (default filepath)\n" \
    "  --csv-caption-key K  manifest caption column (default title)\n" \
    "  --csv-caption-sep S  a caption cell holds several captions split at S\n" \
    "  --csv-label-key K    manifest label column (default label)\n" \
    "                       (old spellings --sep, --img-key, --caption-key, --label-key still work)\n" \
    "  --classnames FILE    class names, one per line (label = line number)\n" \
    "  --labels FILE        IDX labels file (default: derived from the images file name)\n" \
    "  --max-pixels N       refuse larger images (default 89478485, as PIL; 0 = no limit)\n" \
    "  --composite R,G,B    composite transparent images over this colour (default: drop alpha, as PIL)\n"

// Parses the command's own flags plus the dataset flags (with --batch-size and
// --workers if loader); 0 with *first_pos at the positionals, 1 --help, -1 usage error.
static int parse_common(const char *cmd, int argc, char **argv, const cli_opt *own, common_opts *c, int loader,
                        int *first_pos, vlm_error *err) {
    cli_data_opts_default(&c->d, 256);
    c->classnames = NULL;
    const cli_opt cls[] = {{"classnames", CLI_STR, &c->classnames, 0, 0, NULL, NULL}, CLI_END};
    cli_opt data[CLI_DATA_OPTS];
    cli_data_table(data, &c->d, loader);
    const cli_opt *tabs[] = {own, cls, data};
    int r = cli_parse(cmd, argc, argv, tabs, 3, first_pos, err);
    if (r) return r;
    cli_data_dataset_opts(&c->d, &c->ds);
    c->ds.classnames = c->classnames;
    return 0;
}

// The same for the commands that take exactly one DATA argument (*spec).
static int parse_one(const char *cmd, int argc, char **argv, const cli_opt *own, common_opts *c, int loader,
                     const char **spec, vlm_error *err) {
    int pos, r = parse_common(cmd, argc, argv, own, c, loader, &pos, err);
    if (r) return r;
    if (pos >= argc) {
        vlm_errorf(err, VLM_ERR_ARG, "no dataset given (see vlm %s --help)", cmd);
        return -1;
    }
    if (pos + 1 < argc) {
        vlm_errorf(err, VLM_ERR_ARG, "one dataset at a time (got '%s' and '%s')", argv[pos], argv[pos + 1]);
        return -1;
    }
    *spec = argv[pos];
    return 0;
}

static void print_open_bad(const vlm_dataset *ds) {
    if (!ds->n_bad) return;
    printf("skipped while indexing: %lld\n", (long long)ds->n_bad);
    for (int i = 0; i < VLM_DATASET_BAD_KEEP && i < ds->n_bad; i++)
        if (ds->bad[i]) printf("  %s\n", ds->bad[i]);
    if (ds->n_bad > VLM_DATASET_BAD_KEEP) printf("  ... and %lld more\n", (long long)(ds->n_bad - VLM_DATASET_BAD_KEEP));
}

// ------------------------------------------------------------ preprocess

static const char *preprocess_help =
    "usage: vlm preprocess --image-size S --out OUT.safetensors [options] IMAGE...\n"
    "Decodes PNG/JPEG images (by content) and applies open_clip's eval transform:\n"
    "Resize(S, bicubic) + CenterCrop(S) + ToTensor + Normalize. Writes tensor 'images'\n"
    "[N, 3, S, S] f32 and metadata 'files' (JSON list) and 'image_size'.\n"
    "  --mean R,G,B       normalisation mean (default CLIP's)\n"
    "  --std R,G,B        normalisation std (default CLIP's)\n"
    "  --max-pixels N     refuse larger images (default 89478485; 0 = no limit)\n"
    "  --composite R,G,B  composite transparency over this colour (default: drop alpha)\n";

static int fn_floats3(const char *v, void *dst, vlm_error *err) {
    if (!parse_floats3(v, dst)) return 0;
    vlm_errorf(err, VLM_ERR_ARG, "three comma-separated numbers expected, got '%s'", v);
    return -1;
}

// Decodes and eval-transforms files[0..n) into x [n, 3, S, S] in parallel; on
// failure err names the first file (in order) that failed.
static vlm_status decode_all(char **files, int n, const vlm_transform *t, const vlm_decode_opts *dec, float *x,
                             vlm_error *err) {
    const size_t per = (size_t)3 * t->size * t->size;
    int failed = -1;
#pragma omp parallel
    {
        vlm_image img;
        vlm_image_init(&img);
        vlm_transform_scratch s;
        vlm_transform_scratch_init(&s);
        vlm_error e = {0};
#pragma omp for schedule(dynamic)
        for (int k = 0; k < n; k++) {
            vlm_status st = vlm_image_load(&img, files[k], dec, &e);
            if (!st) {
                st = vlm_transform_eval(t, &img, x + per * (size_t)k, &s, &e);
                if (st) vlm_error_prefix(&e, "%s", files[k]);
            }
            if (st) {
#pragma omp critical
                if (failed < 0 || k < failed) {
                    failed = k;
                    *err = e;
                }
            }
        }
        vlm_image_free(&img);
        vlm_transform_scratch_free(&s);
    }
    return failed >= 0 ? err->status : VLM_OK;
}

// Writes x [n, 3, S, S] as tensor 'images' with the file list and transform as metadata.
static vlm_status write_images(const char *out, char **files, int n, const vlm_transform *t, float *x, vlm_error *err) {
    json_t *arr = json_array();
    for (int k = 0; k < n; k++) json_array_append_new(arr, json_string(files[k]));
    char *fj = json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(arr);
    char ssz[32], mean[96], std[96];
    snprintf(ssz, sizeof ssz, "%d", t->size);
    snprintf(mean, sizeof mean, "%.8g,%.8g,%.8g", t->mean[0], t->mean[1], t->mean[2]);
    snprintf(std, sizeof std, "%.8g,%.8g,%.8g", t->std[0], t->std[1], t->std[2]);
    const char *mk[] = {"files", "image_size", "mean", "std", "transform"};
    const char *mv[] = {fj ? fj : "[]", ssz, mean, std, "open_clip eval: Resize(S, bicubic), CenterCrop(S), Normalize"};
    int64_t shape[4] = {n, 3, t->size, t->size};
    vlm_st_tensor tens = {.name = "images", .dtype = VLM_F32, .ndim = 4, .shape = shape, .data = x};
    vlm_status st = vlm_st_write(out, &tens, 1, mk, mv, 5, err);
    free(fj);
    return st;
}

int cmd_preprocess(int argc, char **argv) {
    const char *cmd = "preprocess", *out = NULL;
    long long S = 0;
    vlm_transform t;
    vlm_transform_init(&t, 224);
    common_opts c;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"image-size", CLI_INT, &S, 1, 4096, NULL, NULL},
        {"out", CLI_STR, &out, 0, 0, NULL, NULL},
        {"mean", CLI_FN, t.mean, 0, 0, fn_floats3, NULL},
        {"std", CLI_FN, t.std, 0, 0, fn_floats3, NULL},
        CLI_END,
    };
    int pos, pr = parse_common(cmd, argc, argv, own, &c, 0, &pos, &err);
    if (pr) return cli_parse_exit(pr, cmd, preprocess_help, &err);
    char **files = argv + pos;
    const int nfiles = argc - pos;
    if (!S || !out || !nfiles) return cli_usagef(cmd, "need --image-size, --out and at least one image (see vlm preprocess --help)");
    t.size = (int)S;
    size_t per = (size_t)3 * S * S;
    float *x = malloc(sizeof(float) * per * (size_t)nfiles);
    if (!x) return cli_failf(cmd, "cannot allocate %d x 3 x %lld x %lld floats", nfiles, S, S);
    vlm_status st = decode_all(files, nfiles, &t, &c.d.dec, x, &err);
    if (!st) st = write_images(out, files, nfiles, &t, x, &err);
    free(x);
    if (st) return cli_fail(cmd, &err);
    printf("wrote %s: images [%d, 3, %lld, %lld] f32\n", out, nfiles, S, S);
    return 0;
}

// ------------------------------------------------------------ data stats

static const char *stats_help =
    "usage: vlm data stats DATA [options]\n"
    "Counts samples, captions and labels, decodes every image (in parallel) and\n"
    "reports unreadable ones and a histogram of image sizes.\n"
    "  --probe            read only the image headers (faster; corrupt pixel data goes unnoticed)\n"
    "  --limit N          look at the first N samples only\n"
    COMMON_HELP;

#define NBUCKET 9
static const int bucket_hi[NBUCKET] = {16, 32, 64, 128, 256, 512, 1024, 2048, 1 << 30};

typedef struct {
    int w, h;
    long long n;
} size_count;

static int cmp_size_count(const void *a, const void *b) {
    const size_count *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : (x->w != y->w ? x->w - y->w : x->h - y->h);
}

// Captions (count, byte lengths) and labels (per class) of the first n samples.
static void print_text_stats(const vlm_dataset *ds, int64_t n) {
    int64_t ncap = 0, cmin = -1, cmax = 0;
    double csum = 0;
    long long *lab = ds->n_classes > 0 ? calloc((size_t)ds->n_classes, sizeof *lab) : NULL;
    int64_t nlab = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *cap = vlm_dataset_caption(ds, i);
        if (cap) {
            int64_t l = (int64_t)strlen(cap);
            ncap++;
            csum += (double)l;
            if (cmin < 0 || l < cmin) cmin = l;
            if (l > cmax) cmax = l;
        }
        int32_t lb = vlm_dataset_label(ds, i);
        if (lb >= 0) {
            nlab++;
            if (lab && lb < ds->n_classes) lab[lb]++;
        }
    }
    if (ncap)
        printf("captions: %lld (bytes: min %lld, mean %.1f, max %lld)\n", (long long)ncap, (long long)cmin,
               csum / (double)ncap, (long long)cmax);
    else printf("captions: none\n");
    if (nlab) {
        printf("labels: %lld in %d classes\n", (long long)nlab, ds->n_classes);
        long long lmin = -1, lmax = 0;
        for (int k = 0; k < ds->n_classes; k++) {
            if (lmin < 0 || lab[k] < lmin) lmin = lab[k];
            if (lab[k] > lmax) lmax = lab[k];
        }
        printf("  per class: min %lld, max %lld\n", lmin, lmax);
        for (int k = 0; k < ds->n_classes && k < 12; k++)
            printf("  %3d %-28s %lld\n", k, ds->classnames && k < ds->n_classes ? ds->classnames[k] : "", lab[k]);
        if (ds->n_classes > 12) printf("  ... (%d more classes)\n", ds->n_classes - 12);
    } else printf("labels: none\n");
    free(lab);
}

// What decoding (or probing) the first n images found.
typedef struct {
    long long buckets[NBUCKET], nbad, fmt[3], ch[5];
    char *bad_first[5];
    size_count sizes[64];
    int nsizes, sizes_overflow;
} image_stats;

static void image_stats_add(image_stats *r, int w, int h, vlm_image_format f, int chans) {
    int sh = w < h ? w : h, b = 0;
    while (b < NBUCKET - 1 && sh > bucket_hi[b]) b++;
    r->buckets[b]++;
    r->fmt[f == VLM_IMAGE_PNG ? 1 : f == VLM_IMAGE_JPEG ? 2 : 0]++;
    if (chans >= 1 && chans <= 4) r->ch[chans]++;
    int k = 0;
    while (k < r->nsizes && (r->sizes[k].w != w || r->sizes[k].h != h)) k++;
    if (k < r->nsizes) r->sizes[k].n++;
    else if (r->nsizes < 64) r->sizes[r->nsizes++] = (size_count){w, h, 1};
    else r->sizes_overflow = 1;
}

// Decodes (probe: reads only the headers of) the first n images in parallel.
static void scan_images(const vlm_dataset *ds, int64_t n, int probe, const vlm_decode_opts *dec, image_stats *r) {
    memset(r, 0, sizeof *r);
#pragma omp parallel
    {
        vlm_sample s;
        vlm_image img;
        vlm_sample_init(&s);
        vlm_image_init(&img);
        vlm_error e = {0};
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < n; i++) {
            int w = 0, h = 0, chans = 0;
            vlm_image_format f = VLM_IMAGE_UNKNOWN;
            vlm_status st;
            if (probe) {
                st = vlm_dataset_read(ds, i, &s, &e);
                if (!st && s.raw_w) w = s.raw_w, h = s.raw_h, chans = s.raw_c;
                else if (!st) {
                    st = vlm_image_probe(s.data, s.size, s.name, &w, &h, &f, &e);
                    if (!st && dec->max_pixels > 0 && (int64_t)w * h > dec->max_pixels)
                        st = vlm_errorf(&e, VLM_ERR_OOM, "%s: %dx%d over the pixel limit", s.name, w, h);
                }
            } else {
                st = vlm_dataset_load_image(ds, i, &s, &img, dec, &e);
                if (!st) w = img.w, h = img.h, f = img.src_format, chans = img.src_channels;
            }
#pragma omp critical
            {
                if (st) {
                    if (r->nbad < 5) r->bad_first[r->nbad] = strdup(e.msg);
                    r->nbad++;
                } else
                    image_stats_add(r, w, h, f, chans);
            }
        }
        vlm_sample_free(&s);
        vlm_image_free(&img);
    }
}

static void print_image_stats(image_stats *r, int64_t n, int probe, double t_dec) {
    printf("%s: %lld ok, %lld bad (%.2f s, %.0f images/s)\n", probe ? "headers" : "decoded", (long long)(n - r->nbad),
           r->nbad, t_dec, (double)n / (t_dec > 0 ? t_dec : 1e-9));
    for (int k = 0; k < 5 && k < r->nbad; k++) printf("  bad: %s\n", r->bad_first[k]);
    if (r->nbad > 5) printf("  ... and %lld more\n", r->nbad - 5);
    printf("formats: png %lld, jpeg %lld, raw %lld\n", r->fmt[1], r->fmt[2], r->fmt[0]);
    if (!probe) printf("source channels: gray %lld, gray+alpha %lld, rgb %lld, rgba %lld\n", r->ch[1], r->ch[2], r->ch[3], r->ch[4]);
    printf("shorter side histogram:\n");
    long long mx = 1;
    for (int b = 0; b < NBUCKET; b++)
        if (r->buckets[b] > mx) mx = r->buckets[b];
    for (int b = 0; b < NBUCKET; b++) {
        if (!r->buckets[b]) continue;
        char range[32];
        if (b == NBUCKET - 1) snprintf(range, sizeof range, "> %d", bucket_hi[b - 1]);
        else snprintf(range, sizeof range, "%d..%d", b ? bucket_hi[b - 1] + 1 : 1, bucket_hi[b]);
        int bar = (int)(40.0 * (double)r->buckets[b] / (double)mx + 0.5);
        printf("  %-12s %9lld %.*s\n", range, r->buckets[b], bar, "########################################");
    }
    qsort(r->sizes, (size_t)r->nsizes, sizeof r->sizes[0], cmp_size_count);
    printf("most common sizes (w x h):%s\n", r->sizes_overflow ? " (first 64 distinct sizes tracked)" : "");
    for (int k = 0; k < r->nsizes && k < 5; k++) printf("  %5d x %-5d %lld\n", r->sizes[k].w, r->sizes[k].h, r->sizes[k].n);
    for (int k = 0; k < 5; k++) free(r->bad_first[k]);
}

static int data_stats(int argc, char **argv) {
    const char *cmd = "data stats", *spec = NULL;
    common_opts c;
    int probe = 0;
    long long limit = -1;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"probe", CLI_FLAG, &probe, 0, 0, NULL, NULL},
        {"limit", CLI_INT, &limit, 1, 1099511627776.0, NULL, NULL},
        CLI_END,
    };
    int pr = parse_one(cmd, argc, argv, own, &c, 0, &spec, &err);
    if (pr) return cli_parse_exit(pr, cmd, stats_help, &err);
    vlm_dataset ds;
    double t0 = vlm_now();
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    double t_open = vlm_now() - t0;
    int64_t n = limit > 0 && limit < ds.n ? limit : ds.n;
    if (ds.kind == VLM_DS_WEBDATASET)
        printf("dataset: %s (webdataset, %d shard%s)\n", spec, ds.n_shards, ds.n_shards == 1 ? "" : "s");
    else printf("dataset: %s (%s)\n", spec, vlm_dataset_kind_name(ds.kind));
    printf("samples: %lld (indexed in %.2f s)%s\n", (long long)ds.n, t_open, n < ds.n ? ", looking at the first" : "");
    if (n < ds.n) printf("limit: %lld\n", (long long)n);
    print_open_bad(&ds);
    print_text_stats(&ds, n);
    image_stats r;
    t0 = vlm_now();
    scan_images(&ds, n, probe, &c.d.dec, &r);
    print_image_stats(&r, n, probe, vlm_now() - t0);
    vlm_dataset_free(&ds);
    return 0;
}

// ------------------------------------------------------------ data preview

static const char *preview_help =
    "usage: vlm data preview DATA --out GRID.png [options]\n"
    "Writes a contact sheet of samples (eval transform: resize shorter side + centre crop).\n"
    "Unreadable samples show as red cells.\n"
    "  --n N        samples (default 64)\n"
    "  --cell PX    cell size (default 64)\n"
    "  --seed S     pick a random sample of the dataset with this seed (default: the first N)\n"
    "  --list       print each cell's sample index, label and caption\n"
    COMMON_HELP;

static int data_preview(int argc, char **argv) {
    const char *cmd = "data preview", *spec = NULL, *out = NULL;
    common_opts c;
    long long n = 64, cell = 64, seed = -1;
    int list = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"out", CLI_STR, &out, 0, 0, NULL, NULL},
        {"n", CLI_INT, &n, 1, 100000, NULL, NULL},
        {"cell", CLI_INT, &cell, 4, 1024, NULL, NULL},
        {"seed", CLI_INT, &seed, 0, 9.3e18, NULL, NULL},
        {"list", CLI_FLAG, &list, 0, 0, NULL, NULL},
        CLI_END,
    };
    int pr = parse_one(cmd, argc, argv, own, &c, 0, &spec, &err);
    if (pr) return cli_parse_exit(pr, cmd, preview_help, &err);
    if (!out) return cli_usagef(cmd, "--out GRID.png is required");
    vlm_dataset ds;
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    if (n > ds.n) n = ds.n;
    uint32_t *pick = malloc(sizeof(uint32_t) * (size_t)ds.n);
    for (int64_t i = 0; i < ds.n; i++) pick[i] = (uint32_t)i;
    if (seed >= 0) {
        vlm_rng r;
        vlm_rng_init(&r, (uint64_t)seed, VLM_RNG_DATA, 0);
        vlm_rng_shuffle_u32(&r, pick, (uint64_t)ds.n);
    }
    int cols = (int)ceil(sqrt((double)n)), rows = (int)((n + cols - 1) / cols), gap = 2;
    int W = cols * ((int)cell + gap) + gap, H = rows * ((int)cell + gap) + gap;
    uint8_t *grid = malloc((size_t)W * H * 3);
    memset(grid, 32, (size_t)W * H * 3);
    vlm_transform t;
    vlm_transform_init(&t, (int)cell);
    long long nbad = 0;
#pragma omp parallel
    {
        vlm_sample s;
        vlm_image img;
        vlm_transform_scratch sc;
        vlm_sample_init(&s);
        vlm_image_init(&img);
        vlm_transform_scratch_init(&sc);
        uint8_t *tile = malloc((size_t)cell * cell * 3);
        vlm_error e = {0};
#pragma omp for schedule(dynamic)
        for (int k = 0; k < (int)n; k++) {
            int64_t idx = pick[k];
            int ok = vlm_dataset_load_image(&ds, idx, &s, &img, &c.d.dec, &e) == VLM_OK &&
                     vlm_transform_eval_u8(&t, &img, tile, &sc, &e) == VLM_OK;
            if (!ok) {
                for (long long p = 0; p < cell * cell; p++) tile[3 * p] = 200, tile[3 * p + 1] = 30, tile[3 * p + 2] = 30;
#pragma omp atomic
                nbad++;
            }
            int x0 = gap + (k % cols) * ((int)cell + gap), y0 = gap + (k / cols) * ((int)cell + gap);
            for (int y = 0; y < cell; y++)
                memcpy(grid + ((size_t)(y0 + y) * W + x0) * 3, tile + (size_t)y * cell * 3, (size_t)cell * 3);
        }
        free(tile);
        vlm_sample_free(&s);
        vlm_image_free(&img);
        vlm_transform_scratch_free(&sc);
    }
    int rc = 0;
    if (vlm_image_write_png(out, grid, W, H, &err)) rc = cli_fail(cmd, &err);
    else {
        printf("wrote %s: %lld samples, %dx%d cells of %lldpx (%d x %d pixels)\n", out, n, cols, rows, cell, W, H);
        if (nbad) printf("%lld unreadable samples shown in red\n", nbad);
        if (list)
            for (int k = 0; k < (int)n; k++) {
                const char *cap = vlm_dataset_caption(&ds, pick[k]);
                printf("  cell %3d (row %d, col %d): #%u label %d %s\n", k, k / cols, k % cols, pick[k],
                       vlm_dataset_label(&ds, pick[k]), cap ? cap : "");
            }
    }
    free(grid);
    free(pick);
    vlm_dataset_free(&ds);
    return rc;
}

// ------------------------------------------------------------ data convert

static const char *convert_help =
    "usage: vlm data convert DATA --out DIR [--shard-size N] [options]\n"
    "Writes webdataset tar shards DIR/000000.tar, ...: per sample KEY.png|jpg (the\n"
    "original bytes), KEY.txt (caption), KEY.cls (label); KEY = 9-digit sample index.\n"
    "Unreadable samples are skipped and reported.\n"
    "  --shard-size N   samples per shard (default 1000)\n"
    "  --rasterize S    draw SVG images with their longest side S pixels (over white, or over\n"
    "                   --composite R,G,B) and store them as PNG; default: keep the SVG bytes\n"
    COMMON_HELP;

static int data_convert(int argc, char **argv) {
    const char *cmd = "data convert", *spec = NULL, *out = NULL;
    common_opts c;
    long long shard = 1000, rasterize = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"out", CLI_STR, &out, 0, 0, NULL, NULL},
        {"shard-size", CLI_INT, &shard, 1, 1099511627776.0, NULL, NULL},
        {"rasterize", CLI_INT, &rasterize, 1, 8192, NULL, NULL},
        CLI_END,
    };
    int pr = parse_one(cmd, argc, argv, own, &c, 0, &spec, &err);
    if (pr) return cli_parse_exit(pr, cmd, convert_help, &err);
    if (!out) return cli_usagef(cmd, "--out DIR is required");
    vlm_dataset ds;
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    print_open_bad(&ds);
    vlm_convert_report rep;
    double t0 = vlm_now();
    vlm_decode_opts raster = c.d.dec;
    raster.svg_size = (int)rasterize;
    vlm_status st = vlm_dataset_write_shards(&ds, out, shard, rasterize ? &raster : NULL, &rep, &err);
    int rc = 0;
    if (st) rc = cli_fail(cmd, &err);
    else {
        printf("wrote %lld samples into %lld shard%s in %.2f s: %s/{000000..%06lld}.tar\n", (long long)rep.written,
               (long long)rep.shards, rep.shards == 1 ? "" : "s", vlm_now() - t0, out,
               (long long)(rep.shards ? rep.shards - 1 : 0));
        if (rep.bad) {
            printf("skipped %lld unreadable samples:\n", (long long)rep.bad);
            for (int k = 0; k < VLM_DATASET_BAD_KEEP && k < rep.bad; k++) printf("  %s\n", rep.bad_first[k]);
            if (rep.bad > VLM_DATASET_BAD_KEEP) printf("  ... and %lld more\n", (long long)(rep.bad - VLM_DATASET_BAD_KEEP));
        }
    }
    vlm_convert_report_free(&rep);
    vlm_dataset_free(&ds);
    return rc;
}

// ------------------------------------------------------------ data bench

static const char *bench_help =
    "usage: vlm data bench DATA --image-size S [options]\n"
    "Runs the threaded loader (read + decode + transform into batches) and prints images/s.\n"
    "  --workers N    loader threads (default 2)\n"
    "  --batch-size B batch size (default 256; old name --batch)\n"
    "  --seconds T    measure for about T seconds after one warm-up batch (default 5)\n"
    "  --train        train augmentation (RandomResizedCrop) instead of the eval transform\n"
    "  --seed S       shuffle/augmentation seed (default 0)\n"
    COMMON_HELP;

static int data_bench(int argc, char **argv) {
    const char *cmd = "data bench", *spec = NULL;
    common_opts c;
    long long S = 0, seed = 0;
    double seconds = 5;
    int train = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"image-size", CLI_INT, &S, 1, 4096, NULL, NULL},
        {"batch", CLI_INT, &c.d.batch, 1, 1 << 16, NULL, "batch-size"},
        {"seconds", CLI_FLT, &seconds, 1e-3, 1e7, NULL, NULL},
        {"seed", CLI_INT, &seed, 0, 9.3e18, NULL, NULL},
        {"train", CLI_FLAG, &train, 0, 0, NULL, NULL},
        CLI_END,
    };
    int pr = parse_one(cmd, argc, argv, own, &c, 1, &spec, &err);
    if (pr) return cli_parse_exit(pr, cmd, bench_help, &err);
    if (!S) return cli_usagef(cmd, "--image-size is required");
    long long batch = c.d.batch, workers = c.d.workers;
    vlm_dataset ds;
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    if (batch > ds.n) batch = ds.n;
    vlm_loader_opts o;
    vlm_loader_opts_default(&o, (int)S, (int)batch);
    o.workers = (int)workers;
    o.train = train;
    o.seed = (uint64_t)seed;
    o.decode = c.d.dec;
    vlm_loader *L;
    if (vlm_loader_open(&L, &ds, &o, &err)) {
        vlm_dataset_free(&ds);
        return cli_fail(cmd, &err);
    }
    vlm_batch b;
    int rc = 0;
    double t0 = vlm_now();
    if (vlm_loader_next(L, &b, &err)) rc = cli_fail(cmd, &err); // warm-up: buffers, decoder state
    double t_first = vlm_now() - t0;
    long long imgs = 0, nb = 0;
    double t1 = vlm_now(), el = 0, c1 = cpu_s();
    while (!rc && (el < seconds || nb < 3)) {
        if (vlm_loader_next(L, &b, &err)) {
            rc = cli_fail(cmd, &err);
            break;
        }
        imgs += b.n;
        nb++;
        el = vlm_now() - t1;
    }
    if (!rc) {
        vlm_loader_stats st;
        vlm_loader_get_stats(L, &st);
        printf("%s: %lld samples, %s transform at S=%lld, batch %lld, %lld worker%s\n", spec, (long long)ds.n,
               train ? "train" : "eval", S, batch, workers, workers == 1 ? "" : "s");
        double cpu = cpu_s() - c1;
        printf("first batch %.3f s; then %lld batches, %lld images in %.2f s: %.0f images/s\n", t_first, nb, imgs, el,
               (double)imgs / el);
        printf("cpu time %.2f s (%.2f cores busy): %.0f images per cpu-second\n", cpu, cpu / el, (double)imgs / cpu);
        if (st.bad) {
            char sum[1024];
            vlm_loader_bad_summary(L, sum, sizeof sum);
            printf("%s\n", sum);
        }
    }
    vlm_loader_free(L);
    vlm_dataset_free(&ds);
    return rc;
}

// ------------------------------------------------------------ data hash

static const char *hash_help =
    "usage: vlm data hash DATA [options]\n"
    "Prints one line per sample: a 64-bit FNV-1a hash of the decoded RGB pixels (and the\n"
    "size), then the sample's source. The same picture in any container or file name gives\n"
    "the same hash, so two datasets' overlap is a join of their hash lists (used to check\n"
    "that held-out images never reach a training corpus). Unreadable samples print\n"
    "'unreadable' and are counted on stderr.\n"
    COMMON_HELP;

static int data_hash(int argc, char **argv) {
    const char *cmd = "data hash", *spec = NULL;
    common_opts c;
    vlm_error err = {0};
    const cli_opt own[] = {CLI_END};
    int pr = parse_one(cmd, argc, argv, own, &c, 0, &spec, &err);
    if (pr) return cli_parse_exit(pr, cmd, hash_help, &err);
    vlm_dataset ds;
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    print_open_bad(&ds);
    vlm_sample s;
    vlm_image img;
    vlm_sample_init(&s);
    vlm_image_init(&img);
    long long bad = 0;
    char src[4200];
    for (int64_t i = 0; i < ds.n; i++) {
        vlm_error e2 = {0};
        const char *where = vlm_dataset_source(&ds, i, src, sizeof src);
        if (vlm_dataset_load_image(&ds, i, &s, &img, &c.d.dec, &e2)) {
            printf("unreadable\t%s\n", where);
            bad++;
            continue;
        }
        uint64_t h = 1469598103934665603ULL;
        size_t n = (size_t)img.w * (size_t)img.h * 3;
        for (size_t k = 0; k < n; k++) h = (h ^ img.px[k]) * 1099511628211ULL;
        printf("%016llx-%dx%d\t%s\n", (unsigned long long)h, img.w, img.h, where);
    }
    if (bad) fprintf(stderr, "data hash: %lld unreadable samples\n", bad);
    vlm_sample_free(&s);
    vlm_image_free(&img);
    vlm_dataset_free(&ds);
    return 0;
}

// ------------------------------------------------------------ data scenes

static const char *scenes_help =
    "usage: vlm data scenes --out DIR [options]\n"
    "Builds a detection dataset: Fashion-MNIST items and emoji pasted at random scales and\n"
    "positions on small canvases. Writes DIR/{train,val,heldout}/NNNNNN.png, COCO ground truth\n"
    "DIR/{train,val,heldout}.json (bbox = extent of the visible pixels, area = their count),\n"
    "DIR/classnames.txt, DIR/seen_classnames.txt, DIR/heldout_classnames.txt and DIR/README.\n"
    "Held-out classes never appear in train or val images; heldout.json has only them.\n"
    "  --sources LIST        fashion-mnist,emoji (default both)\n"
    "  --fmnist DIR          Fashion-MNIST folder (default data/fashion-mnist)\n"
    "  --emoji DIR           emoji folder from data/get-emoji.sh (default data/emoji)\n"
    "  --size S[,S...]       canvas sides, one drawn per image (default 64,96; repeatable)\n"
    "  --train N             train images (default 10000)\n"
    "  --val N               val images, seen classes (default 1000)\n"
    "  --heldout-images N    heldout images, held-out classes only (default 500)\n"
    "  --heldout LIST        held-out class names, comma-separated (e.g. 'sneaker,pig')\n"
    "  --heldout-n K         K held-out classes by seed, split between the sources in\n"
    "                        proportion (default: 2 Fashion-MNIST + 25% of the emoji classes)\n"
    "  --max-objects K       1..K objects per image (default 4)\n"
    "  --emoji-classes N     emoji classes drawn from the pool by seed (default 32)\n"
    "  --emoji-categories L  emoji top-level categories of the pool, comma-separated, or 'all'\n"
    "                        (default: animals & nature,food & drink,travel & places,activities,objects)\n"
    "  --emoji-split MODE    shared: every split draws from all vendors' images (default);\n"
    "                        vendor: train from train.tsv (apple/google/facebook), val and\n"
    "                        heldout from val_twitter.tsv (twitter), a style shift\n"
    "  --scale MIN,MAX       object's longer side / canvas side (default 0.25,0.6)\n"
    "  --max-iou F           redraw a placement whose box IoU with an earlier one exceeds F (0.3)\n"
    "  --min-visible F       ... or that leaves an earlier object less than F of its pixels (0.7)\n"
    "  --background B        mixed (plain / gradient / noise, default), plain, or R,G,B\n"
    "  --seed S              default 0; the output is a function of the options alone\n";

// What `data scenes` parses into: the library's options plus the source choice.
typedef struct {
    vlm_scenes_opts o;
    int use_fm, use_em, sizes_given;
    long long n_train, n_val, n_heldout, heldout_n, max_objects, emoji_classes, seed;
} scenes_cli;

static int fn_sources(const char *v, void *dst, vlm_error *err) {
    scenes_cli *c = dst;
    c->use_fm = c->use_em = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (!strcmp(t, "fashion-mnist") || !strcmp(t, "fmnist")) c->use_fm = 1;
        else if (!strcmp(t, "emoji")) c->use_em = 1;
        else return vlm_errorf(err, VLM_ERR_ARG, "--sources: unknown source '%s' (want fashion-mnist, emoji)", t), -1;
    }
    if (!c->use_fm && !c->use_em) return vlm_errorf(err, VLM_ERR_ARG, "--sources: no source given"), -1;
    return 0;
}

static int fn_sizes(const char *v, void *dst, vlm_error *err) { // repeatable: the sizes given add up
    scenes_cli *c = dst;
    vlm_scenes_opts tmp = c->o;
    if (vlm_scenes_parse_sizes(v, &tmp, err)) return -1;
    if (!c->sizes_given) c->o.n_sizes = 0;
    c->sizes_given = 1;
    for (int k = 0; k < tmp.n_sizes; k++) {
        if (c->o.n_sizes == VLM_SCENES_MAX_SIZES)
            return vlm_errorf(err, VLM_ERR_ARG, "--size: at most %d canvas sizes", VLM_SCENES_MAX_SIZES), -1;
        c->o.sizes[c->o.n_sizes++] = tmp.sizes[k];
    }
    return 0;
}

static int fn_emoji_split(const char *v, void *dst, vlm_error *err) {
    vlm_scenes_opts *o = dst;
    if (!strcmp(v, "vendor")) o->emoji_split = VLM_SCENES_EMOJI_VENDOR;
    else if (!strcmp(v, "shared")) o->emoji_split = VLM_SCENES_EMOJI_SHARED;
    else return vlm_errorf(err, VLM_ERR_ARG, "--emoji-split wants vendor or shared, got '%s'", v), -1;
    return 0;
}

static int fn_scale(const char *v, void *dst, vlm_error *err) {
    vlm_scenes_opts *o = dst;
    char *e;
    o->min_scale = strtof(v, &e);
    if (e == v || *e != ',') return vlm_errorf(err, VLM_ERR_ARG, "--scale wants MIN,MAX, got '%s'", v), -1;
    const char *m = e + 1;
    o->max_scale = strtof(m, &e);
    if (e == m || *e) return vlm_errorf(err, VLM_ERR_ARG, "--scale wants MIN,MAX, got '%s'", v), -1;
    return 0;
}

static int fn_unit(const char *v, void *dst, vlm_error *err) { // a float in [0, 1]
    double f;
    if (cli_parse_float("value", v, 0, 1, &f, err)) return -1;
    *(float *)dst = (float)f;
    return 0;
}

static int fn_background(const char *v, void *dst, vlm_error *err) {
    vlm_scenes_opts *o = dst;
    if (!strcmp(v, "mixed")) o->background = VLM_SCENES_BG_MIXED;
    else if (!strcmp(v, "plain")) o->background = VLM_SCENES_BG_PLAIN;
    else if (!parse_rgb(v, o->bg_rgb)) o->background = VLM_SCENES_BG_FIXED;
    else return vlm_errorf(err, VLM_ERR_ARG, "--background wants mixed, plain or R,G,B, got '%s'", v), -1;
    return 0;
}

// 0: parsed, 1: --help, -1: usage error.
static int scenes_parse(int argc, char **argv, scenes_cli *c, vlm_error *err) {
    memset(c, 0, sizeof *c);
    vlm_scenes_opts *o = &c->o;
    vlm_scenes_opts_default(o);
    c->use_fm = c->use_em = 1;
    c->n_train = o->n_train, c->n_val = o->n_val, c->n_heldout = o->n_heldout, c->heldout_n = o->heldout_n;
    c->max_objects = o->max_objects, c->emoji_classes = o->emoji_classes, c->seed = (long long)o->seed;
    const cli_opt own[] = {
        {"out", CLI_STR, &o->out_dir, 0, 0, NULL, NULL},
        {"fmnist", CLI_STR, &o->fmnist_dir, 0, 0, NULL, NULL},
        {"emoji", CLI_STR, &o->emoji_dir, 0, 0, NULL, NULL},
        {"sources", CLI_FN, c, 0, 0, fn_sources, NULL},
        {"size", CLI_FN, c, 0, 0, fn_sizes, NULL},
        {"train", CLI_INT, &c->n_train, 0, 1e8, NULL, NULL},
        {"val", CLI_INT, &c->n_val, 0, 1e8, NULL, NULL},
        {"heldout-images", CLI_INT, &c->n_heldout, 0, 1e8, NULL, NULL},
        {"heldout", CLI_STR, &o->heldout, 0, 0, NULL, NULL},
        {"heldout-n", CLI_INT, &c->heldout_n, 0, 100000, NULL, NULL},
        {"max-objects", CLI_INT, &c->max_objects, 1, 64, NULL, NULL},
        {"emoji-classes", CLI_INT, &c->emoji_classes, 1, 10000, NULL, NULL},
        {"emoji-categories", CLI_STR, &o->emoji_categories, 0, 0, NULL, NULL},
        {"emoji-split", CLI_FN, o, 0, 0, fn_emoji_split, NULL},
        {"scale", CLI_FN, o, 0, 0, fn_scale, NULL},
        {"max-iou", CLI_FN, &o->max_iou, 0, 0, fn_unit, NULL},
        {"min-visible", CLI_FN, &o->min_visible, 0, 0, fn_unit, NULL},
        {"background", CLI_FN, o, 0, 0, fn_background, NULL},
        {"seed", CLI_INT, &c->seed, 0, 9.3e18, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int r = cli_parse_flags("data scenes", argc, argv, tabs, 1, err);
    if (r) return r;
    if (!o->out_dir) return vlm_errorf(err, VLM_ERR_ARG, "--out DIR is required (see vlm data scenes --help)"), -1;
    o->n_train = c->n_train, o->n_val = c->n_val, o->n_heldout = c->n_heldout, o->heldout_n = (int)c->heldout_n;
    o->max_objects = (int)c->max_objects, o->emoji_classes = (int)c->emoji_classes, o->seed = (uint64_t)c->seed;
    if (!c->use_fm) o->fmnist_dir = NULL;
    if (!c->use_em) o->emoji_dir = NULL;
    return 0;
}

static int data_scenes(int argc, char **argv) {
    const char *cmd = "data scenes";
    scenes_cli c;
    vlm_error err = {0};
    int pr = scenes_parse(argc, argv, &c, &err);
    if (pr) return cli_parse_exit(pr, cmd, scenes_help, &err);
    const vlm_scenes_opts o = c.o;
    vlm_scenes_report r;
    if (vlm_scenes_build(&o, &r, &err)) return cli_fail(cmd, &err);
    int n_held = 0;
    for (int k = 0; k < r.n_classes; k++) n_held += r.heldout[k];
    printf("wrote %s in %.1f s: %d classes (%d held out)", o.out_dir, r.seconds, r.n_classes, n_held);
    if (o.emoji_dir) printf("; emoji pool %lld titles", (long long)r.emoji_pool);
    printf("\ncanvas sizes:");
    for (int z = 0; z < o.n_sizes; z++) printf(" %dx%d (%lld images)", o.sizes[z], o.sizes[z], (long long)r.size_images[z]);
    printf("\n\nsplit     images   boxes  file\n");
    const char *names[3] = {"train", "val", "heldout"};
    for (int s = 0; s < 3; s++)
        printf("%-8s %7lld %7lld  %s/%s.json\n", names[s], (long long)r.images[s], (long long)r.boxes[s], o.out_dir,
               names[s]);
    printf("\n id  class                          source         held-out   train    val heldout\n");
    for (int k = 0; k < r.n_classes; k++)
        printf("%3d  %-30s %-14s %-8s %7lld %6lld %7lld\n", k + 1, r.names[k], r.source[k] ? "emoji" : "fashion-mnist",
               r.heldout[k] ? "yes" : "no", (long long)r.class_boxes[k], (long long)r.class_boxes[r.n_classes + k],
               (long long)r.class_boxes[2 * r.n_classes + k]);
    vlm_scenes_report_free(&r);
    return 0;
}

// ------------------------------------------------------------ dispatch

static void data_help(FILE *f) {
    fprintf(f, "usage: vlm data <stats|preview|convert|bench|scenes> [DATA] [options]\n"
               "  stats     counts, captions, labels, bad samples, image size histogram\n"
               "  preview   contact sheet PNG of samples\n"
               "  convert   write webdataset tar shards\n"
               "  bench     loader throughput (images/s)\n"
               "  scenes    build the detection scenes dataset (COCO JSON + PNGs)\n"
               "  hash      per-sample hashes of the decoded pixels (overlap checks)\n"
               "`vlm data <sub> --help` lists each one's options.\n");
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        data_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "stats")) return data_stats(argc - 1, argv + 1);
    if (!strcmp(argv[1], "preview")) return data_preview(argc - 1, argv + 1);
    if (!strcmp(argv[1], "convert")) return data_convert(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench")) return data_bench(argc - 1, argv + 1);
    if (!strcmp(argv[1], "scenes")) return data_scenes(argc - 1, argv + 1);
    if (!strcmp(argv[1], "hash")) return data_hash(argc - 1, argv + 1);
    data_help(stderr);
    return cli_usagef("data", "unknown subcommand '%s'", argv[1]);
}
