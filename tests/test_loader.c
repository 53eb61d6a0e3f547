// Threaded loader: full batches with bad samples skipped and summarised,
// results independent of worker count, per-epoch shuffles, exact resume via
// seek, rank sharding, epoch limits / partial batches, the bad-sample limit
// and caption copying; random backgrounds behind transparent pixels.
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "data/loader.h"
#include "tests/testutil.h"

#define T "test_loader_tmp"
#define N 37 // manifest rows: 34 good + 3 bad

static int is_bad_row(int k) { return k == 5 || k == 17 || k == 30; }

static void make_data(void) {
    mkdir(T, 0755);
    FILE *m = fopen(T "/m.tsv", "w");
    fprintf(m, "filepath\ttitle\tlabel\n");
    for (int k = 0; k < N; k++) {
        char p[256];
        snprintf(p, sizeof p, T "/%02d.png", k);
        if (k == 5) { // corrupt
            FILE *f = fopen(p, "wb");
            fputs("\x89PNG\r\n\x1a\n garbage", f);
            fclose(f);
        } else if (k == 17) { // zero bytes
            fclose(fopen(p, "wb"));
        } else if (k != 30) { // 30: missing file
            int w = 12 + k % 7, h = 9 + k % 4;
            uint8_t *px = malloc((size_t)w * h * 3);
            for (int i = 0; i < w * h; i++)
                px[3 * i] = (uint8_t)(k * 6), px[3 * i + 1] = (uint8_t)(250 - k * 3), px[3 * i + 2] = (uint8_t)(i % 256);
            vlm_error err = {0};
            CHECK(vlm_image_write_png(p, px, w, h, &err) == VLM_OK, "%s", err.msg);
            free(px);
        }
        if (k == 3)
            fprintf(m, "%02d.png\t%s\t%d\n", k,
                    "caf\xC3\xA9 caf\xC3\xA9 caf\xC3\xA9 caf\xC3\xA9 long caption that will not fit", k % 4);
        else
            fprintf(m, "%02d.png\tcaption %d\t%d\n", k, k, k % 4);
    }
    fclose(m);
}

typedef struct {
    int nb;
    int n[64];
    int64_t idx[64][16];
    vlm_loader_pos next[64];
    float sum[64];
    char cap0[64][64];
} run_log;

static float fsum(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i] * (double)(i % 13 + 1);
    return (float)s;
}

// Runs a loader for `batches` batches (or until the end) and logs them.
static vlm_status run(const vlm_dataset *ds, vlm_loader_opts *o, int batches, run_log *log, vlm_loader **keep,
                      vlm_error *err) {
    vlm_loader *L;
    vlm_status st = vlm_loader_open(&L, ds, o, err);
    if (st) return st;
    memset(log, 0, sizeof *log);
    for (int b = 0; b < batches && b < 64; b++) {
        vlm_batch bt;
        st = vlm_loader_next(L, &bt, err);
        if (st || bt.n == 0) break;
        log->n[b] = bt.n;
        memcpy(log->idx[b], bt.indices, sizeof(int64_t) * (size_t)bt.n);
        log->next[b] = bt.next;
        log->sum[b] = fsum(bt.images, (size_t)bt.n * 3 * bt.size * bt.size);
        if (bt.captions) snprintf(log->cap0[b], sizeof log->cap0[b], "%s", bt.captions[0]);
        log->nb++;
    }
    if (keep) *keep = L;
    else vlm_loader_free(L);
    return st;
}

static int same_runs(const run_log *a, const run_log *b, int from_a, int from_b, int count) {
    for (int k = 0; k < count; k++) {
        int i = from_a + k, j = from_b + k;
        if (a->n[i] != b->n[j] || memcmp(a->idx[i], b->idx[j], sizeof(int64_t) * (size_t)a->n[i]) ||
            a->sum[i] != b->sum[j] || strcmp(a->cap0[i], b->cap0[j]))
            return 0;
    }
    return 1;
}

// Half-transparent images (left half alpha 0, right half opaque red) through
// --random-background: the transparent half takes one colour per (epoch,
// sample), each channel in 30..225, with about the asked probability; the
// rest stays the --composite colour; the draws are the same for any worker
// count; the opaque half never changes.
static void test_random_background(void) {
    enum { W = 16, NB = 48 };
    FILE *m = fopen(T "/rgba.tsv", "w");
    fprintf(m, "filepath\ttitle\n");
    uint8_t px[W * W * 4];
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *q = px + 4 * (y * W + x);
            q[0] = 255, q[1] = 0, q[2] = 0, q[3] = x < W / 2 ? 0 : 255;
        }
    for (int k = 0; k < NB; k++) {
        char p[256];
        snprintf(p, sizeof p, T "/rgba%02d.png", k);
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        im.width = im.height = W;
        im.format = PNG_FORMAT_RGBA;
        CHECK(png_image_write_to_file(&im, p, 0, px, 0, NULL), "write %s", p);
        fprintf(m, "rgba%02d.png\tcaption\n", k);
    }
    fclose(m);
    vlm_dataset ds;
    vlm_error err = {0};
    if (vlm_dataset_open(&ds, T "/rgba.tsv", NULL, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    static const float mean[3] = {VLM_CLIP_MEAN_R, VLM_CLIP_MEAN_G, VLM_CLIP_MEAN_B};
    static const float sd[3] = {VLM_CLIP_STD_R, VLM_CLIP_STD_G, VLM_CLIP_STD_B};
    int colours[2][NB][3];
    int random[2] = {0, 0};
    for (int workers = 1; workers <= 2; workers++) {
        vlm_loader_opts o;
        vlm_loader_opts_default(&o, W, NB);
        o.train = 1;
        o.shuffle = 0;
        o.workers = workers;
        o.transform.scale_min = o.transform.scale_max = 1; // the whole image: pixels stay in place
        o.transform.ratio_min = o.transform.ratio_max = 1;
        o.decode.alpha = VLM_ALPHA_COMPOSITE; // over white, unless drawn
        o.random_background = 0.5f;
        vlm_loader *L;
        vlm_batch bt;
        if (vlm_loader_open(&L, &ds, &o, &err) || vlm_loader_next(L, &bt, &err) || bt.n != NB) {
            CHECK(0, "loader: %s", err.msg);
            break;
        }
        for (int i = 0; i < NB; i++) {
            const float *img = bt.images + (size_t)i * 3 * W * W;
            int uniform = 1, red = 1, v0[3];
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < W; y++)
                    for (int x = 0; x < W; x++) {
                        int v = (int)lrintf((img[(size_t)c * W * W + y * W + x] * sd[c] + mean[c]) * 255);
                        if (x == 0 && y == 0) v0[c] = v;
                        if (x < W / 2 - 2 && v != v0[c]) uniform = 0; // away from the resize's seam
                        if (x >= W / 2 + 2 && v != (c == 0 ? 255 : 0)) red = 0;
                    }
                colours[workers - 1][i][c] = v0[c];
            }
            int white = v0[0] == 255 && v0[1] == 255 && v0[2] == 255;
            int drawn = v0[0] >= 30 && v0[0] <= 225 && v0[1] >= 30 && v0[1] <= 225 && v0[2] >= 30 && v0[2] <= 225;
            CHECK(uniform && red && (white || drawn), "sample %d: uniform %d, red %d, background %d,%d,%d", i, uniform, red,
                  v0[0], v0[1], v0[2]);
            random[workers - 1] += !white;
        }
        vlm_loader_free(L);
    }
    CHECK(!memcmp(colours[0], colours[1], sizeof colours[0]), "background draws depend on the worker count");
    CHECK(random[0] >= NB / 4 && random[0] <= 3 * NB / 4, "%d of %d backgrounds drawn at p = 0.5", random[0], NB);
    int distinct = 0;
    for (int i = 1; i < NB; i++) distinct += memcmp(colours[0][i], colours[0][i - 1], sizeof colours[0][i]) != 0;
    CHECK(distinct >= NB / 4, "only %d colour changes", distinct);
    vlm_dataset_free(&ds);
}

int main(void) {
    system("rm -rf " T);
    make_data();
    vlm_dataset ds;
    vlm_error err = {0};
    CHECK(vlm_dataset_open(&ds, T "/m.tsv", NULL, &err) == VLM_OK && ds.n == N, "%s", err.msg);
    if (ds.n != N) return tu_done("test_loader");
    const int B = 8, S = 16;

    // 1. worker count does not change anything (train augmentation on)
    vlm_loader_opts o;
    vlm_loader_opts_default(&o, S, B);
    o.train = 1;
    o.transform.hflip_prob = 0.5f;
    o.transform.jitter_prob = 0.8f;
    o.transform.brightness = o.transform.contrast = o.transform.saturation = 0.4f;
    o.transform.hue = 0.1f;
    o.transform.gray_prob = 0.2f;
    o.seed = 7;
    o.caption_max = 24;
    run_log a, b, c;
    vlm_loader *L = NULL;
    o.workers = 1;
    CHECK(run(&ds, &o, 12, &a, NULL, &err) == VLM_OK && a.nb == 12, "run 1 worker: %s (%d batches)", err.msg, a.nb);
    o.workers = 4;
    o.prefetch = 2;
    CHECK(run(&ds, &o, 12, &b, &L, &err) == VLM_OK && b.nb == 12, "run 4 workers: %s", err.msg);
    CHECK(same_runs(&a, &b, 0, 0, 12), "1 vs 4 workers differ");

    // 2. full batches; each epoch = 34 good samples -> 4 batches of 8 (2 dropped)
    //    and a good sample appears at most once per epoch, bad ones never
    for (int e = 0; e < 3; e++) {
        int seen[N] = {0};
        for (int k = 0; k < 4; k++) {
            int bi = e * 4 + k;
            CHECK(a.n[bi] == B, "batch %d has %d", bi, a.n[bi]);
            for (int s = 0; s < B; s++) {
                int64_t ix = a.idx[bi][s];
                CHECK(ix >= 0 && ix < N && !is_bad_row((int)ix), "bad sample %lld delivered", (long long)ix);
                if (ix >= 0 && ix < N) seen[ix]++;
            }
        }
        for (int k = 0; k < N; k++) CHECK(seen[k] <= 1, "epoch %d: sample %d seen %d times", e, k, seen[k]);
        CHECK(a.next[e * 4 + 3].epoch == e || a.next[e * 4 + 3].epoch == e + 1, "epoch positions");
    }
    CHECK(memcmp(a.idx[0], a.idx[4], sizeof(int64_t) * B) != 0, "epochs 0 and 1 have the same order");
    // caption cut to 23 bytes at a UTF-8 boundary wherever sample 3 landed
    for (int bi = 0; bi < 12; bi++)
        if (a.idx[bi][0] == 3) CHECK(!strcmp(a.cap0[bi], "caf\xC3\xA9 caf\xC3\xA9 caf\xC3\xA9 caf"), "caption [%s]", a.cap0[bi]);

    // 3. bad samples: counted once each, summary names a few paths
    vlm_loader_stats st;
    vlm_loader_get_stats(L, &st);
    CHECK(st.bad == 3 && st.bad_events >= 3, "bad %lld events %lld", (long long)st.bad, (long long)st.bad_events);
    char sum[1024];
    vlm_loader_bad_summary(L, sum, sizeof sum);
    CHECK(strstr(sum, "3 bad samples skipped") && strstr(sum, T "/") && strlen(sum) < 1000, "summary: %s", sum);
    CHECK(strstr(sum, "05.png") || strstr(sum, "17.png") || strstr(sum, "30.png"), "summary: %s", sum);

    // 4. resume: seek to the position after batch 5 -> batches 6.. repeat exactly
    vlm_loader_pos p = b.next[5];
    CHECK(vlm_loader_seek(L, p, &err) == VLM_OK, "%s", err.msg);
    for (int k = 6; k < 12; k++) {
        vlm_batch bt;
        CHECK(vlm_loader_next(L, &bt, &err) == VLM_OK && bt.n == B, "after seek: %s", err.msg);
        CHECK(bt.pos.epoch == (k == 6 ? p.epoch : bt.pos.epoch), "pos");
        CHECK(!memcmp(bt.indices, b.idx[k], sizeof(int64_t) * B) &&
                  fsum(bt.images, (size_t)B * 3 * S * S) == b.sum[k],
              "batch %d differs after resume", k);
    }
    vlm_loader_free(L);
    // a fresh loader started at the saved position gives the same
    o.start = b.next[2];
    o.workers = 3;
    CHECK(run(&ds, &o, 5, &c, NULL, &err) == VLM_OK && c.nb == 5, "%s", err.msg);
    CHECK(same_runs(&a, &c, 3, 0, 5), "fresh loader from a saved position differs");
    o.start = (vlm_loader_pos){0, 0};

    // 5. rank sharding: 2 ranks see disjoint halves of each epoch
    o.world_size = 2;
    o.drop_last = 0;
    o.epochs = 1;
    o.train = 0;
    int owner[N];
    for (int k = 0; k < N; k++) owner[k] = -1;
    for (int r = 0; r < 2; r++) {
        o.rank = r;
        run_log d;
        CHECK(run(&ds, &o, 64, &d, NULL, &err) == VLM_OK, "rank %d: %s", r, err.msg);
        int total = 0;
        for (int bi = 0; bi < d.nb; bi++) {
            CHECK(bi == d.nb - 1 || d.n[bi] == B, "only the last batch may be partial");
            for (int s = 0; s < d.n[bi]; s++) {
                int ix = (int)d.idx[bi][s];
                CHECK(owner[ix] == -1, "sample %d on both ranks", ix);
                owner[ix] = r;
                total++;
            }
        }
        CHECK(total >= 18 - 3 && total <= 18, "rank %d got %d of 18", r, total);
    }
    int covered = 0;
    for (int k = 0; k < N; k++) covered += owner[k] >= 0;
    CHECK(covered >= 34 - 1 && covered <= 34, "covered %d", covered); // N odd: one sample left out per epoch
    o.world_size = 1;
    o.rank = 0;

    // 6. epochs = 1, drop_last = 0: 4 full + 1 partial (2), then n = 0
    run_log e1;
    CHECK(run(&ds, &o, 64, &e1, NULL, &err) == VLM_OK && e1.nb == 5 && e1.n[4] == 2, "%s nb=%d last=%d", err.msg,
          e1.nb, e1.n[4]);
    CHECK(e1.next[4].epoch == 1 && e1.next[4].index == 0, "end position");
    // eval order without shuffle is the dataset order, bad rows skipped
    o.shuffle = 0;
    CHECK(run(&ds, &o, 1, &e1, NULL, &err) == VLM_OK && e1.idx[0][0] == 0 && e1.idx[0][5] == 6, "order");
    o.shuffle = 1;

    // 7. max_bad: the 2nd distinct bad sample fails next() with a summary
    o.max_bad = 1;
    o.epochs = 0;
    run_log f;
    vlm_status s7 = run(&ds, &o, 20, &f, NULL, &err);
    CHECK(s7 == VLM_ERR_FORMAT && strstr(err.msg, "more than 1 bad samples") && strstr(err.msg, ".png"), "%d %s", s7,
          err.msg);
    o.max_bad = -1;

    // 8. batch larger than an epoch with drop_last: clear error, no hang
    vlm_loader_opts_default(&o, S, 40);
    s7 = run(&ds, &o, 2, &f, NULL, &err);
    CHECK(s7 == VLM_ERR_FORMAT && strstr(err.msg, "gave no batch"), "%d %s", s7, err.msg);
    // bad options
    vlm_loader_opts_default(&o, S, 0);
    CHECK(vlm_loader_open(&L, &ds, &o, &err) == VLM_ERR_ARG, "batch 0 accepted");
    vlm_loader_opts_default(&o, S, 4);
    o.rank = 2;
    o.world_size = 2;
    CHECK(vlm_loader_open(&L, &ds, &o, &err) == VLM_ERR_ARG, "rank 2 of 2 accepted");
    vlm_loader_opts_default(&o, S, 4);
    o.start = (vlm_loader_pos){0, 99};
    CHECK(vlm_loader_open(&L, &ds, &o, &err) == VLM_ERR_ARG && strstr(err.msg, "index 99"), "%s", err.msg);

    vlm_dataset_free(&ds);
    test_random_background();
    int rc = tu_done("test_loader");
    if (!rc) system("rm -rf " T);
    return rc;
}
