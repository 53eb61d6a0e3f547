// Shared helpers for the CTest executables (see testutil.h).
#include "core/safetensors.h"
#include "tests/testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "data/image.h"

int tu_failures = 0;
int tu_checks = 0;

double tu_max_abs(const float *a, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

double tu_rel_err(const float *a, const float *b, long n, double floor) {
    double d = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (isnan(e)) return INFINITY;
        d = fmax(d, e);
    }
    return d / fmax(tu_max_abs(b, n), floor);
}

int tu_done(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, tu_checks);
    return 0;
}

// "../shared/..." (the steering repository's reference data) is found beside
// the source tree; when the checkout lives elsewhere, $VLM_SHARED_DIR or
// /work/shared is used instead.
const char *tu_src(const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", VLM_SOURCE_DIR, rel);
    if (!strncmp(rel, "../shared/", 10) && access(buf[k], F_OK) != 0) {
        const char *env = getenv("VLM_SHARED_DIR");
        snprintf(buf[k], sizeof buf[k], "%s/%s", env ? env : "/work/shared", rel + 10);
    }
    return buf[k];
}

char *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)len + 1))) {
        if (fread(b, 1, (size_t)len, f) != (size_t)len) {
            free(b);
            b = NULL;
        } else {
            b[len] = 0;
            if (n) *n = (size_t)len;
        }
    }
    fclose(f);
    return b;
}

int tu_read_losses(const char *metrics_path, double *loss, int cap) {
    char line[4096];
    FILE *f = fopen(metrics_path, "r");
    int maxs = 0;
    while (f && fgets(line, sizeof line, f)) {
        int s;
        double l;
        char *ps = strstr(line, "\"step\": "), *pl = strstr(line, "\"loss\": ");
        if (ps && pl && sscanf(ps + 8, "%d", &s) == 1 && sscanf(pl + 8, "%lf", &l) == 1 && s >= 0 && s < cap) {
            loss[s] = l;
            if (s > maxs) maxs = s;
        }
    }
    if (f) fclose(f);
    return maxs;
}

int tu_read_metric(const char *metrics_path, const char *key, double *values, int cap) {
    char line[4096], k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    FILE *f = fopen(metrics_path, "r");
    int maxs = 0;
    while (f && fgets(line, sizeof line, f)) {
        int s;
        double v;
        char *ps = strstr(line, "\"step\": "), *pv = strstr(line, k);
        if (ps && pv && sscanf(ps + 8, "%d", &s) == 1 && sscanf(pv + strlen(k), "%lf", &v) == 1 && s >= 0 && s < cap) {
            values[s] = v;
            if (s > maxs) maxs = s;
        }
    }
    if (f) fclose(f);
    return maxs;
}

int tu_read_step_seq(const char *metrics_path, int *steps, int cap) {
    char line[4096];
    FILE *f = fopen(metrics_path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        int s;
        char *ps = strstr(line, "\"step\": ");
        if (ps && strstr(line, "\"loss\": ") && sscanf(ps + 8, "%d", &s) == 1 && n < cap) steps[n++] = s;
    }
    if (f) fclose(f);
    return n;
}

int tu_steps_resumed(const int *seq, int n, int resumed_from, int last, char *why, size_t cap) {
    int i = 0, expect = 1;
    while (i < n && seq[i] == expect) i++, expect++; // the first process: 1, 2, ...
    if (resumed_from < 0) {
        if (i == n && expect == last + 1) return 1;
        snprintf(why, cap, "logged steps are not 1..%d once each (entry %d is step %d)", last, i, i < n ? seq[i] : -1);
        return 0;
    }
    if (i == n && expect == last + 1 && resumed_from <= last) return 1; // resumed exactly where it stopped
    if (resumed_from > expect - 1) {
        snprintf(why, cap, "the saved state is at step %d but the first process logged only up to %d", resumed_from,
                 expect - 1);
        return 0;
    }
    if (i == n || seq[i] != resumed_from + 1) {
        snprintf(why, cap, "the resumed process starts at step %d, not at %d (the saved state's step + 1)",
                 i < n ? seq[i] : -1, resumed_from + 1);
        return 0;
    }
    for (expect = resumed_from + 1; i < n && seq[i] == expect; i++, expect++) {}
    if (i != n || expect != last + 1) {
        snprintf(why, cap, "after resuming, the steps are not %d..%d once each (entry %d is step %d)",
                 resumed_from + 1, last, i, i < n ? seq[i] : -1);
        return 0;
    }
    return 1;
}

int tu_same_tensors(const char *a, const char *b, char *why, size_t cap) {
    vlm_st_file fa, fb;
    vlm_error err = {0};
    if (vlm_st_read(&fa, a, &err)) {
        snprintf(why, cap, "%s", err.msg);
        return 0;
    }
    if (vlm_st_read(&fb, b, &err)) {
        snprintf(why, cap, "%s", err.msg);
        vlm_st_free(&fa);
        return 0;
    }
    int same = fa.n == fb.n;
    if (!same) snprintf(why, cap, "%d tensors vs %d", fa.n, fb.n);
    for (int i = 0; same && i < fa.n; i++) {
        const vlm_st_entry *ea = &fa.entries[i], *eb = vlm_st_find(&fb, ea->name);
        if (!eb || eb->dtype != ea->dtype || eb->numel != ea->numel || eb->end - eb->begin != ea->end - ea->begin) {
            snprintf(why, cap, "tensor %s: missing or of another type/shape", ea->name);
            same = 0;
        } else if (memcmp(vlm_st_data(&fa, ea), vlm_st_data(&fb, eb), (size_t)(ea->end - ea->begin))) {
            snprintf(why, cap, "tensor %s: data differs", ea->name);
            same = 0;
        }
    }
    vlm_st_free(&fa);
    vlm_st_free(&fb);
    return same;
}

void tu_check_steps(const char *logs, const char *name, int resumed_from, int last) {
    char p[512], why[256];
    static int seq[1 << 16];
    snprintf(p, sizeof p, "%s/%s/metrics.jsonl", logs, name);
    int n = tu_read_step_seq(p, seq, 1 << 16);
    CHECK(tu_steps_resumed(seq, n, resumed_from, last, why, sizeof why), "%s: %s", name, why);
}

void tu_check_same_final(const char *logs, const char *a, const char *b) {
    static const char *files[2] = {"epoch_latest.safetensors", "epoch_latest.state.safetensors"};
    for (int k = 0; k < 2; k++) {
        char pa[512], pb[512], why[256];
        snprintf(pa, sizeof pa, "%s/%s/checkpoints/%s", logs, a, files[k]);
        snprintf(pb, sizeof pb, "%s/%s/checkpoints/%s", logs, b, files[k]);
        CHECK(tu_same_tensors(pa, pb, why, sizeof why), "%s of %s and %s differ: %s", files[k], a, b, why);
    }
}

long long tu_state_step(const char *logs, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s/checkpoints/epoch_latest.state.safetensors", logs, name);
    vlm_st_file st;
    vlm_error err;
    long long step = -1;
    if (vlm_st_read(&st, p, &err) == VLM_OK) {
        const char *v = vlm_st_meta(&st, "step");
        step = v ? atoll(v) : -1;
        vlm_st_free(&st);
    }
    return step;
}

void tu_make_squares_coco(const char *path, int n) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    const char *names[8] = {"red", "green", "blue", "yellow", "purple", "cyan", "white", "black"};
    fprintf(f, "{\"images\": [");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s{\"id\": %d, \"file_name\": \"%03d.png\", \"width\": 20, \"height\": 20}", i ? ", " : "", i + 1, i);
    fprintf(f, "], \"annotations\": [");
    for (int i = 0; i < n; i++) {
        int s = 4 + (i / 8) % 10;
        fprintf(f, "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, \"bbox\": [%d, %d, 8, 8], \"area\": 64, "
                   "\"iscrowd\": 0}", i ? ", " : "", i + 1, i + 1, i % 8 + 1, s, s);
    }
    fprintf(f, "], \"categories\": [");
    for (int k = 0; k < 8; k++) fprintf(f, "%s{\"id\": %d, \"name\": \"%s\"}", k ? ", " : "", k + 1, names[k]);
    fprintf(f, "]}\n");
    fclose(f);
}

void tu_make_squares(const char *dir, int n, int detailed) {
    mkdir(dir, 0755);
    static const char *names[8] = {"red", "green", "blue", "yellow", "purple", "cyan", "white", "black"};
    static const unsigned char col[8][3] = {{220, 20, 20}, {20, 200, 20}, {20, 20, 220}, {230, 230, 20},
                                            {150, 20, 150}, {20, 200, 200}, {250, 250, 250}, {5, 5, 5}};
    char p[1024];
    snprintf(p, sizeof p, "%s/train.tsv", dir);
    FILE *f = fopen(p, "w");
    if (!f) return;
    fprintf(f, detailed ? "filepath\ttitle\tlabel\n" : "filepath\ttitle\n");
    unsigned char px[20 * 20 * 3];
    vlm_error err;
    for (int i = 0; i < n; i++) {
        int k = i % 8, s = 4 + (i / 8) % 10;
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 20; x++)
                for (int ch = 0; ch < 3; ch++)
                    px[(y * 20 + x) * 3 + ch] = (x >= s && y >= s && x < s + 8 && y < s + 8) ? col[k][ch] : 128;
        snprintf(p, sizeof p, "%s/%03d.png", dir, i);
        vlm_image_write_png(p, px, 20, 20, &err);
        if (detailed) fprintf(f, "%03d.png\ta %s square at %d\t%d\n", i, names[k], s, k);
        else fprintf(f, "%03d.png\ta %s square\n", i, names[k]);
    }
    fclose(f);
    if (detailed) {
        snprintf(p, sizeof p, "%s/classnames.txt", dir);
        if ((f = fopen(p, "w"))) {
            for (int k = 0; k < 8; k++) fprintf(f, "%s\n", names[k]);
            fclose(f);
        }
    }
}

int tu_tiny_clip(vlm_clip *m, char **vocab) {
    vlm_error err = {0};
    vlm_clip_cfg cc;
    *vocab = tu_read_file(tu_src("tests/fixtures/zeroshot/vocab.txt"), NULL);
    if (!*vocab || vlm_clip_cfg_load(tu_src("../shared/reference/openai-clip/tiny.json"), &cc, &err) ||
        vlm_clip_init(m, &cc, &err)) {
        CHECK(0, "tiny CLIP setup: %s", *vocab ? err.msg : "vocab fixture");
        free(*vocab);
        *vocab = NULL;
        return -1;
    }
    if (vlm_clip_load_weights(m, tu_src("../shared/reference/openai-clip/tiny.weights.safetensors"), &err)) {
        CHECK(0, "tiny CLIP weights: %s", err.msg);
        vlm_clip_free(m);
        free(*vocab);
        *vocab = NULL;
        return -1;
    }
    return 0;
}
