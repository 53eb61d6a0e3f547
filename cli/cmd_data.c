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

static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *e;
    long long v = strtoll(s, &e, 10);
    if (!*s || *e || v < lo || v > hi) return -1;
    *out = v;
    return 0;
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
    vlm_dataset_opts ds;
    vlm_decode_opts dec;
} common_opts;

static const char *COMMON_HELP =
    "dataset options (DATA is a .tsv/.csv manifest, a tar shard pattern such as\n"
    "'shards/{000000..000009}.tar', an ImageFolder directory or an IDX images file):\n"
    "  --sep C            manifest separator: 'tab' (default, as open_clip) or one character\n"
    "  --img-key K        manifest image column (default filepath)\n"
    "  --caption-key K    manifest caption column (default title)\n"
    "  --label-key K      manifest label column (default label)\n"
    "  --classnames FILE  class names, one per line (label = line number)\n"
    "  --labels FILE      IDX labels file (default: derived from the images file name)\n"
    "  --max-pixels N     refuse larger images (default 89478485, as PIL; 0 = no limit)\n"
    "  --composite R,G,B  composite transparent images over this colour (default: drop alpha, as PIL)\n";

// Consumes a common option at argv[*i]; returns 1 if used, 0 if not ours, -1 on error.
static int common_arg(const char *cmd, int argc, char **argv, int *i, common_opts *c) {
    const char *a = argv[*i];
    const char *names[] = {"--sep", "--img-key", "--caption-key", "--label-key", "--classnames", "--labels",
                           "--max-pixels", "--composite"};
    int k = -1;
    for (int j = 0; j < 8; j++)
        if (!strcmp(a, names[j])) k = j;
    if (k < 0) return 0;
    if (*i + 1 >= argc) {
        cli_failf(cmd, "%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    long long n;
    switch (k) {
    case 0:
        if (!strcmp(v, "tab") || !strcmp(v, "\\t")) c->ds.sep = '\t';
        else if (strlen(v) == 1) c->ds.sep = v[0];
        else {
            cli_failf(cmd, "--sep wants 'tab' or one character, got '%s'", v);
            return -1;
        }
        break;
    case 1: c->ds.img_key = v; break;
    case 2: c->ds.caption_key = v; break;
    case 3: c->ds.label_key = v; break;
    case 4: c->ds.classnames = v; break;
    case 5: c->ds.idx_labels = v; break;
    case 6:
        if (parse_int(v, 0, (long long)1 << 50, &n)) {
            cli_failf(cmd, "--max-pixels wants a count, got '%s'", v);
            return -1;
        }
        c->dec.max_pixels = n;
        break;
    case 7:
        if (parse_rgb(v, c->dec.background)) {
            cli_failf(cmd, "--composite wants R,G,B in 0..255, got '%s'", v);
            return -1;
        }
        c->dec.alpha = VLM_ALPHA_COMPOSITE;
        break;
    }
    return 1;
}

static void common_init(common_opts *c) {
    vlm_dataset_opts_default(&c->ds);
    vlm_decode_opts_default(&c->dec);
}

static void print_open_bad(const vlm_dataset *ds) {
    if (!ds->n_bad) return;
    printf("skipped while indexing: %lld\n", (long long)ds->n_bad);
    for (int i = 0; i < VLM_DATASET_BAD_KEEP && i < ds->n_bad; i++)
        if (ds->bad[i]) printf("  %s\n", ds->bad[i]);
    if (ds->n_bad > VLM_DATASET_BAD_KEEP) printf("  ... and %lld more\n", (long long)(ds->n_bad - VLM_DATASET_BAD_KEEP));
}

// ------------------------------------------------------------ preprocess

static void preprocess_help(FILE *f) {
    fprintf(f,
            "usage: vlm preprocess --image-size S --out OUT.safetensors [options] IMAGE...\n"
            "Decodes PNG/JPEG images (by content) and applies open_clip's eval transform:\n"
            "Resize(S, bicubic) + CenterCrop(S) + ToTensor + Normalize. Writes tensor 'images'\n"
            "[N, 3, S, S] f32 and metadata 'files' (JSON list) and 'image_size'.\n"
            "  --mean R,G,B       normalisation mean (default CLIP's)\n"
            "  --std R,G,B        normalisation std (default CLIP's)\n"
            "  --max-pixels N     refuse larger images (default 89478485; 0 = no limit)\n"
            "  --composite R,G,B  composite transparency over this colour (default: drop alpha)\n");
}

int cmd_preprocess(int argc, char **argv) {
    const char *cmd = "preprocess", *out = NULL;
    long long S = 0;
    vlm_transform t;
    vlm_transform_init(&t, 224);
    common_opts c;
    common_init(&c);
    int nfiles = 0;
    char **files = calloc((size_t)argc, sizeof *files);
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            preprocess_help(stdout);
            free(files);
            return 0;
        }
        int r = common_arg(cmd, argc, argv, &i, &c);
        if (r < 0) goto done;
        if (r) continue;
        if (!strcmp(a, "--image-size") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 4096, &S)) {
                rc = cli_failf(cmd, "--image-size wants 1..4096, got '%s'", argv[i]);
                goto done;
            }
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if ((!strcmp(a, "--mean") || !strcmp(a, "--std")) && i + 1 < argc) {
            float *dst = a[2] == 'm' ? t.mean : t.std;
            if (parse_floats3(argv[++i], dst)) {
                rc = cli_failf(cmd, "%s wants three comma-separated numbers, got '%s'", a, argv[i]);
                goto done;
            }
        } else if (a[0] == '-' && a[1]) {
            preprocess_help(stderr);
            rc = cli_failf(cmd, "unknown option '%s'", a);
            goto done;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (!S || !out || !nfiles) {
        preprocess_help(stderr);
        rc = cli_failf(cmd, "need --image-size, --out and at least one image");
        goto done;
    }
    t.size = (int)S;
    size_t per = (size_t)3 * S * S;
    float *x = malloc(sizeof(float) * per * (size_t)nfiles);
    if (!x) {
        rc = cli_failf(cmd, "cannot allocate %d x 3 x %lld x %lld floats", nfiles, S, S);
        goto done;
    }
    int failed = -1;
    vlm_error ferr = {0};
#pragma omp parallel
    {
        vlm_image img;
        vlm_image_init(&img);
        vlm_transform_scratch s;
        vlm_transform_scratch_init(&s);
        vlm_error e = {0};
#pragma omp for schedule(dynamic)
        for (int k = 0; k < nfiles; k++) {
            vlm_status st = vlm_image_load(&img, files[k], &c.dec, &e);
            if (!st) {
                st = vlm_transform_eval(&t, &img, x + per * (size_t)k, &s, &e);
                if (st) vlm_error_prefix(&e, "%s", files[k]);
            }
            if (st) {
#pragma omp critical
                if (failed < 0 || k < failed) {
                    failed = k;
                    ferr = e;
                }
            }
        }
        vlm_image_free(&img);
        vlm_transform_scratch_free(&s);
    }
    if (failed >= 0) {
        rc = cli_fail(cmd, &ferr);
        free(x);
        goto done;
    }
    json_t *arr = json_array();
    for (int k = 0; k < nfiles; k++) json_array_append_new(arr, json_string(files[k]));
    char *fj = json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(arr);
    char ssz[32], mean[96], std[96];
    snprintf(ssz, sizeof ssz, "%lld", S);
    snprintf(mean, sizeof mean, "%.8g,%.8g,%.8g", t.mean[0], t.mean[1], t.mean[2]);
    snprintf(std, sizeof std, "%.8g,%.8g,%.8g", t.std[0], t.std[1], t.std[2]);
    const char *mk[] = {"files", "image_size", "mean", "std", "transform"};
    const char *mv[] = {fj ? fj : "[]", ssz, mean, std, "open_clip eval: Resize(S, bicubic), CenterCrop(S), Normalize"};
    int64_t shape[4] = {nfiles, 3, S, S};
    vlm_st_tensor tens = {.name = "images", .dtype = VLM_F32, .ndim = 4, .shape = shape, .data = x};
    vlm_error err = {0};
    vlm_status st = vlm_st_write(out, &tens, 1, mk, mv, 5, &err);
    free(fj);
    free(x);
    if (st) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    printf("wrote %s: images [%d, 3, %lld, %lld] f32\n", out, nfiles, S, S);
    rc = 0;
done:
    free(files);
    return rc;
}

// ------------------------------------------------------------ data stats

static void stats_help(FILE *f) {
    fprintf(f,
            "usage: vlm data stats DATA [options]\n"
            "Counts samples, captions and labels, decodes every image (in parallel) and\n"
            "reports unreadable ones and a histogram of image sizes.\n"
            "  --probe            read only the image headers (faster; corrupt pixel data goes unnoticed)\n"
            "  --limit N          look at the first N samples only\n"
            "%s",
            COMMON_HELP);
}

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

static int data_stats(int argc, char **argv) {
    const char *cmd = "data stats", *spec = NULL;
    common_opts c;
    common_init(&c);
    int probe = 0;
    long long limit = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            stats_help(stdout);
            return 0;
        }
        int r = common_arg(cmd, argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "--probe")) probe = 1;
        else if (!strcmp(a, "--limit") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, (long long)1 << 40, &limit)) return cli_failf(cmd, "bad --limit '%s'", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            stats_help(stderr);
            return cli_failf(cmd, "unknown option '%s'", a);
        } else if (!spec) spec = a;
        else return cli_failf(cmd, "one dataset at a time (got '%s' and '%s')", spec, a);
    }
    if (!spec) {
        stats_help(stderr);
        return cli_failf(cmd, "no dataset given");
    }
    vlm_dataset ds;
    vlm_error err = {0};
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
    // captions and labels
    int64_t ncap = 0, cmin = -1, cmax = 0;
    double csum = 0;
    long long *lab = ds.n_classes > 0 ? calloc((size_t)ds.n_classes, sizeof *lab) : NULL;
    int64_t nlab = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *cap = vlm_dataset_caption(&ds, i);
        if (cap) {
            int64_t l = (int64_t)strlen(cap);
            ncap++;
            csum += (double)l;
            if (cmin < 0 || l < cmin) cmin = l;
            if (l > cmax) cmax = l;
        }
        int32_t lb = vlm_dataset_label(&ds, i);
        if (lb >= 0) {
            nlab++;
            if (lab && lb < ds.n_classes) lab[lb]++;
        }
    }
    if (ncap)
        printf("captions: %lld (bytes: min %lld, mean %.1f, max %lld)\n", (long long)ncap, (long long)cmin,
               csum / (double)ncap, (long long)cmax);
    else printf("captions: none\n");
    if (nlab) {
        printf("labels: %lld in %d classes\n", (long long)nlab, ds.n_classes);
        long long lmin = -1, lmax = 0;
        for (int k = 0; k < ds.n_classes; k++) {
            if (lmin < 0 || lab[k] < lmin) lmin = lab[k];
            if (lab[k] > lmax) lmax = lab[k];
        }
        printf("  per class: min %lld, max %lld\n", lmin, lmax);
        for (int k = 0; k < ds.n_classes && k < 12; k++)
            printf("  %3d %-28s %lld\n", k, ds.classnames && k < ds.n_classes ? ds.classnames[k] : "", lab[k]);
        if (ds.n_classes > 12) printf("  ... (%d more classes)\n", ds.n_classes - 12);
    } else printf("labels: none\n");
    free(lab);

    // decode everything
    long long buckets[NBUCKET] = {0}, nbad = 0, fmt[3] = {0}, ch[5] = {0};
    char *bad_first[5] = {0};
    size_count *sizes = calloc(64, sizeof *sizes);
    int nsizes = 0, sizes_overflow = 0;
    t0 = vlm_now();
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
                st = vlm_dataset_read(&ds, i, &s, &e);
                if (!st && s.raw_w) w = s.raw_w, h = s.raw_h, chans = s.raw_c;
                else if (!st) {
                    st = vlm_image_probe(s.data, s.size, s.name, &w, &h, &f, &e);
                    if (!st && c.dec.max_pixels > 0 && (int64_t)w * h > c.dec.max_pixels)
                        st = vlm_errorf(&e, VLM_ERR_OOM, "%s: %dx%d over the pixel limit", s.name, w, h);
                }
            } else {
                st = vlm_dataset_load_image(&ds, i, &s, &img, &c.dec, &e);
                if (!st) w = img.w, h = img.h, f = img.src_format, chans = img.src_channels;
            }
#pragma omp critical
            {
                if (st) {
                    if (nbad < 5) bad_first[nbad] = strdup(e.msg);
                    nbad++;
                } else {
                    int sh = w < h ? w : h, b = 0;
                    while (b < NBUCKET - 1 && sh > bucket_hi[b]) b++;
                    buckets[b]++;
                    fmt[f == VLM_IMAGE_PNG ? 1 : f == VLM_IMAGE_JPEG ? 2 : 0]++;
                    if (chans >= 1 && chans <= 4) ch[chans]++;
                    int k = 0;
                    while (k < nsizes && (sizes[k].w != w || sizes[k].h != h)) k++;
                    if (k < nsizes) sizes[k].n++;
                    else if (nsizes < 64) sizes[nsizes++] = (size_count){w, h, 1};
                    else sizes_overflow = 1;
                }
            }
        }
        vlm_sample_free(&s);
        vlm_image_free(&img);
    }
    double t_dec = vlm_now() - t0;
    printf("%s: %lld ok, %lld bad (%.2f s, %.0f images/s)\n", probe ? "headers" : "decoded", (long long)(n - nbad),
           nbad, t_dec, (double)n / (t_dec > 0 ? t_dec : 1e-9));
    for (int k = 0; k < 5 && k < nbad; k++) printf("  bad: %s\n", bad_first[k]);
    if (nbad > 5) printf("  ... and %lld more\n", nbad - 5);
    printf("formats: png %lld, jpeg %lld, raw %lld\n", fmt[1], fmt[2], fmt[0]);
    if (!probe) printf("source channels: gray %lld, gray+alpha %lld, rgb %lld, rgba %lld\n", ch[1], ch[2], ch[3], ch[4]);
    printf("shorter side histogram:\n");
    long long mx = 1;
    for (int b = 0; b < NBUCKET; b++)
        if (buckets[b] > mx) mx = buckets[b];
    for (int b = 0; b < NBUCKET; b++) {
        if (!buckets[b]) continue;
        char range[32];
        if (b == NBUCKET - 1) snprintf(range, sizeof range, "> %d", bucket_hi[b - 1]);
        else snprintf(range, sizeof range, "%d..%d", b ? bucket_hi[b - 1] + 1 : 1, bucket_hi[b]);
        int bar = (int)(40.0 * (double)buckets[b] / (double)mx + 0.5);
        printf("  %-12s %9lld %.*s\n", range, buckets[b], bar, "########################################");
    }
    qsort(sizes, (size_t)nsizes, sizeof *sizes, cmp_size_count);
    printf("most common sizes (w x h):%s\n", sizes_overflow ? " (first 64 distinct sizes tracked)" : "");
    for (int k = 0; k < nsizes && k < 5; k++) printf("  %5d x %-5d %lld\n", sizes[k].w, sizes[k].h, sizes[k].n);
    for (int k = 0; k < 5; k++) free(bad_first[k]);
    free(sizes);
    vlm_dataset_free(&ds);
    return 0;
}

// ------------------------------------------------------------ data preview

static void preview_help(FILE *f) {
    fprintf(f,
            "usage: vlm data preview DATA --out GRID.png [options]\n"
            "Writes a contact sheet of samples (eval transform: resize shorter side + centre crop).\n"
            "Unreadable samples show as red cells.\n"
            "  --n N        samples (default 64)\n"
            "  --cell PX    cell size (default 64)\n"
            "  --seed S     pick a random sample of the dataset with this seed (default: the first N)\n"
            "  --list       print each cell's sample index, label and caption\n"
            "%s",
            COMMON_HELP);
}

static int data_preview(int argc, char **argv) {
    const char *cmd = "data preview", *spec = NULL, *out = NULL;
    common_opts c;
    common_init(&c);
    long long n = 64, cell = 64, seed = -1;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            preview_help(stdout);
            return 0;
        }
        int r = common_arg(cmd, argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--n") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 100000, &n)) return cli_failf(cmd, "--n wants 1..100000, got '%s'", argv[i]);
        } else if (!strcmp(a, "--cell") && i + 1 < argc) {
            if (parse_int(argv[++i], 4, 1024, &cell)) return cli_failf(cmd, "--cell wants 4..1024, got '%s'", argv[i]);
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            if (parse_int(argv[++i], 0, INT64_MAX, &seed)) return cli_failf(cmd, "bad --seed '%s'", argv[i]);
        } else if (!strcmp(a, "--list")) list = 1;
        else if (a[0] == '-' && a[1]) {
            preview_help(stderr);
            return cli_failf(cmd, "unknown option '%s'", a);
        } else if (!spec) spec = a;
        else return cli_failf(cmd, "one dataset at a time");
    }
    if (!spec || !out) {
        preview_help(stderr);
        return cli_failf(cmd, "need DATA and --out");
    }
    vlm_dataset ds;
    vlm_error err = {0};
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
            int ok = vlm_dataset_load_image(&ds, idx, &s, &img, &c.dec, &e) == VLM_OK &&
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

static void convert_help(FILE *f) {
    fprintf(f,
            "usage: vlm data convert DATA --out DIR [--shard-size N] [options]\n"
            "Writes webdataset tar shards DIR/000000.tar, ...: per sample KEY.png|jpg (the\n"
            "original bytes), KEY.txt (caption), KEY.cls (label); KEY = 9-digit sample index.\n"
            "Unreadable samples are skipped and reported.\n"
            "  --shard-size N   samples per shard (default 1000)\n"
            "%s",
            COMMON_HELP);
}

static int data_convert(int argc, char **argv) {
    const char *cmd = "data convert", *spec = NULL, *out = NULL;
    common_opts c;
    common_init(&c);
    long long shard = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            convert_help(stdout);
            return 0;
        }
        int r = common_arg(cmd, argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--shard-size") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, (long long)1 << 40, &shard))
                return cli_failf(cmd, "--shard-size wants a positive count, got '%s'", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            convert_help(stderr);
            return cli_failf(cmd, "unknown option '%s'", a);
        } else if (!spec) spec = a;
        else return cli_failf(cmd, "one dataset at a time");
    }
    if (!spec || !out) {
        convert_help(stderr);
        return cli_failf(cmd, "need DATA and --out DIR");
    }
    vlm_dataset ds;
    vlm_error err = {0};
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    print_open_bad(&ds);
    vlm_convert_report rep;
    double t0 = vlm_now();
    vlm_status st = vlm_dataset_write_shards(&ds, out, shard, &rep, &err);
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

static void bench_help(FILE *f) {
    fprintf(f,
            "usage: vlm data bench DATA --image-size S [options]\n"
            "Runs the threaded loader (read + decode + transform into batches) and prints images/s.\n"
            "  --workers N    loader threads (default 2)\n"
            "  --batch B      batch size (default 256)\n"
            "  --seconds T    measure for about T seconds after one warm-up batch (default 5)\n"
            "  --train        train augmentation (RandomResizedCrop) instead of the eval transform\n"
            "  --seed S       shuffle/augmentation seed (default 0)\n"
            "%s",
            COMMON_HELP);
}

static int data_bench(int argc, char **argv) {
    const char *cmd = "data bench", *spec = NULL;
    common_opts c;
    common_init(&c);
    long long S = 0, workers = 2, batch = 256, seed = 0;
    double seconds = 5;
    int train = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_help(stdout);
            return 0;
        }
        int r = common_arg(cmd, argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "--image-size") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 4096, &S)) return cli_failf(cmd, "--image-size wants 1..4096");
        } else if (!strcmp(a, "--workers") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 256, &workers)) return cli_failf(cmd, "--workers wants 1..256");
        } else if (!strcmp(a, "--batch") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 1 << 16, &batch)) return cli_failf(cmd, "--batch wants 1..65536");
        } else if (!strcmp(a, "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
            if (!(seconds > 0)) return cli_failf(cmd, "--seconds wants a positive number");
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            if (parse_int(argv[++i], 0, INT64_MAX, &seed)) return cli_failf(cmd, "bad --seed");
        } else if (!strcmp(a, "--train")) train = 1;
        else if (a[0] == '-' && a[1]) {
            bench_help(stderr);
            return cli_failf(cmd, "unknown option '%s'", a);
        } else if (!spec) spec = a;
        else return cli_failf(cmd, "one dataset at a time");
    }
    if (!spec || !S) {
        bench_help(stderr);
        return cli_failf(cmd, "need DATA and --image-size");
    }
    vlm_dataset ds;
    vlm_error err = {0};
    if (vlm_dataset_open(&ds, spec, &c.ds, &err)) return cli_fail(cmd, &err);
    if (batch > ds.n) batch = ds.n;
    vlm_loader_opts o;
    vlm_loader_opts_default(&o, (int)S, (int)batch);
    o.workers = (int)workers;
    o.train = train;
    o.seed = (uint64_t)seed;
    o.decode = c.dec;
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

// ------------------------------------------------------------ data scenes

static void scenes_help(FILE *f) {
    fprintf(f,
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
            "                        proportion (default: 2 Fashion-MNIST + 25%% of the emoji classes)\n"
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
            "  --seed S              default 0; the output is a function of the options alone\n");
}

static int data_scenes(int argc, char **argv) {
    const char *cmd = "data scenes";
    vlm_scenes_opts o;
    vlm_scenes_opts_default(&o);
    vlm_error err = {0};
    int use_fm = 1, use_em = 1, sizes_given = 0;
    const char *fm_dir = o.fmnist_dir, *em_dir = o.emoji_dir;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            scenes_help(stdout);
            return 0;
        }
        if (a[0] == '-' && i + 1 >= argc) {
            scenes_help(stderr);
            return cli_failf(cmd, "%s needs a value (or is unknown)", a);
        }
        const char *v = argv[i + 1];
        long long n;
        if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--fmnist")) fm_dir = v;
        else if (!strcmp(a, "--emoji")) em_dir = v;
        else if (!strcmp(a, "--sources")) {
            use_fm = use_em = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (!strcmp(t, "fashion-mnist") || !strcmp(t, "fmnist")) use_fm = 1;
                else if (!strcmp(t, "emoji")) use_em = 1;
                else return cli_failf(cmd, "--sources: unknown source '%s' (want fashion-mnist, emoji)", t);
            }
            if (!use_fm && !use_em) return cli_failf(cmd, "--sources: no source given");
        } else if (!strcmp(a, "--size")) {
            vlm_scenes_opts tmp = o;
            if (vlm_scenes_parse_sizes(v, &tmp, &err)) return cli_fail(cmd, &err);
            if (!sizes_given) o.n_sizes = 0;
            sizes_given = 1;
            for (int k = 0; k < tmp.n_sizes; k++) {
                if (o.n_sizes == VLM_SCENES_MAX_SIZES)
                    return cli_failf(cmd, "--size: at most %d canvas sizes", VLM_SCENES_MAX_SIZES);
                o.sizes[o.n_sizes++] = tmp.sizes[k];
            }
        } else if (!strcmp(a, "--train") || !strcmp(a, "--val") || !strcmp(a, "--heldout-images")) {
            if (parse_int(v, 0, 100000000, &n)) return cli_failf(cmd, "%s wants a count in 0..1e8, got '%s'", a, v);
            if (a[2] == 't') o.n_train = n;
            else if (a[2] == 'v') o.n_val = n;
            else o.n_heldout = n;
        } else if (!strcmp(a, "--heldout")) o.heldout = v;
        else if (!strcmp(a, "--heldout-n")) {
            if (parse_int(v, 0, 100000, &n)) return cli_failf(cmd, "--heldout-n wants a count, got '%s'", v);
            o.heldout_n = (int)n;
        } else if (!strcmp(a, "--max-objects")) {
            if (parse_int(v, 1, 64, &n)) return cli_failf(cmd, "--max-objects wants 1..64, got '%s'", v);
            o.max_objects = (int)n;
        } else if (!strcmp(a, "--emoji-classes")) {
            if (parse_int(v, 1, 10000, &n)) return cli_failf(cmd, "--emoji-classes wants 1..10000, got '%s'", v);
            o.emoji_classes = (int)n;
        } else if (!strcmp(a, "--emoji-categories")) o.emoji_categories = v;
        else if (!strcmp(a, "--emoji-split")) {
            if (!strcmp(v, "vendor")) o.emoji_split = VLM_SCENES_EMOJI_VENDOR;
            else if (!strcmp(v, "shared")) o.emoji_split = VLM_SCENES_EMOJI_SHARED;
            else return cli_failf(cmd, "--emoji-split wants vendor or shared, got '%s'", v);
        } else if (!strcmp(a, "--scale")) {
            char *e;
            o.min_scale = strtof(v, &e);
            if (*e != ',') return cli_failf(cmd, "--scale wants MIN,MAX, got '%s'", v);
            o.max_scale = strtof(e + 1, &e);
            if (*e) return cli_failf(cmd, "--scale wants MIN,MAX, got '%s'", v);
        } else if (!strcmp(a, "--max-iou") || !strcmp(a, "--min-visible")) {
            char *e;
            float f = strtof(v, &e);
            if (e == v || *e || !(f >= 0 && f <= 1)) return cli_failf(cmd, "%s wants a number in 0..1, got '%s'", a, v);
            if (a[2] == 'm' && a[3] == 'a') o.max_iou = f;
            else o.min_visible = f;
        } else if (!strcmp(a, "--background")) {
            if (!strcmp(v, "mixed")) o.background = VLM_SCENES_BG_MIXED;
            else if (!strcmp(v, "plain")) o.background = VLM_SCENES_BG_PLAIN;
            else if (!parse_rgb(v, o.bg_rgb)) o.background = VLM_SCENES_BG_FIXED;
            else return cli_failf(cmd, "--background wants mixed, plain or R,G,B, got '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            if (parse_int(v, 0, INT64_MAX, &n)) return cli_failf(cmd, "--seed wants a non-negative integer, got '%s'", v);
            o.seed = (uint64_t)n;
        } else {
            scenes_help(stderr);
            return cli_failf(cmd, "unknown argument '%s'", a);
        }
        i++;
    }
    if (!o.out_dir) {
        scenes_help(stderr);
        return cli_failf(cmd, "need --out DIR");
    }
    o.fmnist_dir = use_fm ? fm_dir : NULL;
    o.emoji_dir = use_em ? em_dir : NULL;
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
    data_help(stderr);
    return cli_failf("data", "unknown subcommand '%s'", argv[1]);
}
