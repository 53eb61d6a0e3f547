// Dataset formats: manifests (quoting, CRLF, bad rows, missing columns and
// files), webdataset shards (brace patterns, long names, gzip, json, damaged
// tar), ImageFolder, IDX (raw + gzip), and manifest -> shards conversion.
// Everything is generated under the build directory.
#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "data/dataset.h"
#include "data/loader.h"
#include "tests/testutil.h"

#define T "test_dataset_tmp"

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *path, const char *s) { write_file(path, s, strlen(s)); }

static uint8_t *slurp(const char *path, size_t *n) { return (uint8_t *)tu_read_file(path, n); }

// Solid-colour PNG whose colour encodes k.
static void make_png(const char *path, int k, int w, int h) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) px[3 * i] = (uint8_t)(k * 5), px[3 * i + 1] = (uint8_t)(255 - k), px[3 * i + 2] = 7;
    vlm_error err = {0};
    CHECK(vlm_image_write_png(path, px, w, h, &err) == VLM_OK, "%s", err.msg);
    free(px);
}

static void rm_rf(const char *p) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    CHECK(system(cmd) == 0, "rm -rf %s", p);
}

static void test_brace(void) {
    char **v;
    int n;
    vlm_error err = {0};
    CHECK(vlm_brace_expand("s/{0000..0003}.tar", &v, &n, &err) == VLM_OK && n == 4, "%s", err.msg);
    if (n == 4) CHECK(!strcmp(v[0], "s/0000.tar") && !strcmp(v[3], "s/0003.tar"), "%s %s", v[0], v[3]);
    vlm_brace_free(v, n);
    CHECK(vlm_brace_expand("{a,b}-{8..10}::z.tar", &v, &n, &err) == VLM_OK && n == 7, "n=%d %s", n, err.msg);
    if (n == 7) CHECK(!strcmp(v[0], "a-8") && !strcmp(v[2], "a-10") && !strcmp(v[5], "b-10") && !strcmp(v[6], "z.tar"), "%s", v[2]);
    vlm_brace_free(v, n);
    CHECK(vlm_brace_expand("x{3..1}", &v, &n, &err) == VLM_ERR_ARG, "reversed range accepted");
    CHECK(vlm_brace_expand("x{1..2", &v, &n, &err) == VLM_ERR_ARG && strstr(err.msg, "unbalanced"), "%s", err.msg);
}

static void test_manifest(void) {
    mkdir(T "/img", 0755);
    for (int k = 0; k < 5; k++) {
        char p[256];
        snprintf(p, sizeof p, T "/img/%d.png", k);
        make_png(p, k, 10 + k, 8);
    }
    // quoted caption with tab and quotes, CRLF row, blank line, short row, bad label
    write_text(T "/m.tsv", "filepath\ttitle\tlabel\n"
                           "img/0.png\ta cat\t0\n"
                           "img/1.png\t\"say \"\"hi\"\"\tthere\"\t1\r\n"
                           "\n"
                           "img/2.png\tshort row\n"
                           "img/3.png\tbad label\tx\n"
                           "img/4.png\tlast\t4\n"
                           "img/missing.png\tgone\t2\n");
    vlm_dataset ds;
    vlm_error err = {0};
    CHECK(vlm_dataset_open(&ds, T "/m.tsv", NULL, &err) == VLM_OK, "%s", err.msg);
    CHECK(ds.kind == VLM_DS_MANIFEST && ds.n == 4 && ds.n_bad == 2, "n=%lld bad=%lld", (long long)ds.n,
          (long long)ds.n_bad);
    CHECK(ds.has_captions && ds.has_labels && ds.n_classes == 5, "classes %d", ds.n_classes);
    CHECK(ds.bad[0] && strstr(ds.bad[0], "m.tsv:5") && strstr(ds.bad[0], "2 fields"), "%s", ds.bad[0]);
    CHECK(ds.bad[1] && strstr(ds.bad[1], "m.tsv:6") && strstr(ds.bad[1], "bad label"), "%s", ds.bad[1]);
    CHECK(!strcmp(vlm_dataset_caption(&ds, 1), "say \"hi\"\tthere"), "quoted: [%s]", vlm_dataset_caption(&ds, 1));
    CHECK(vlm_dataset_label(&ds, 1) == 1 && vlm_dataset_label(&ds, 2) == 4, "labels");
    vlm_sample s;
    vlm_sample_init(&s);
    vlm_image img;
    vlm_image_init(&img);
    CHECK(vlm_dataset_load_image(&ds, 2, &s, &img, NULL, &err) == VLM_OK && img.w == 14 && img.px[0] == 20,
          "relative path resolved: %s", err.msg);
    CHECK(strstr(s.name, T "/img/4.png") != NULL, "name %s", s.name);
    // missing file: open succeeds, the read names the path
    CHECK(vlm_dataset_read(&ds, 3, &s, &err) == VLM_ERR_IO && strstr(err.msg, "img/missing.png"), "%s", err.msg);
    vlm_dataset_free(&ds);

    // max_bad at open
    vlm_dataset_opts o;
    vlm_dataset_opts_default(&o);
    o.max_bad = 1;
    CHECK(vlm_dataset_open(&ds, T "/m.tsv", &o, &err) == VLM_ERR_FORMAT && strstr(err.msg, "2 bad entries"), "%s",
          err.msg);
    // missing image column: clear error listing the columns
    write_text(T "/nocol.tsv", "path\ttitle\nimg/0.png\tx\n");
    CHECK(vlm_dataset_open(&ds, T "/nocol.tsv", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "'filepath'") &&
              strstr(err.msg, "'path', 'title'"),
          "%s", err.msg);
    // comma CSV with the default tab separator: hint; with ',' it works
    write_text(T "/c.csv", "filepath,title\nimg/0.png,zero\nimg/1.png,one\n");
    CHECK(vlm_dataset_open(&ds, T "/c.csv", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "comma"), "%s", err.msg);
    vlm_dataset_opts_default(&o);
    o.sep = ',';
    CHECK(vlm_dataset_open(&ds, T "/c.csv", &o, &err) == VLM_OK && ds.n == 2 && !ds.has_labels, "%s", err.msg);
    vlm_dataset_free(&ds);
    // required caption column absent
    write_text(T "/lab.tsv", "filepath\tlabel\nimg/0.png\t0\n");
    o.sep = '\t';
    o.require_caption = 1;
    CHECK(vlm_dataset_open(&ds, T "/lab.tsv", &o, &err) == VLM_ERR_FORMAT && strstr(err.msg, "'title'"), "%s", err.msg);
    // empty manifest, header only, nonexistent
    write_text(T "/empty.tsv", "");
    CHECK(vlm_dataset_open(&ds, T "/empty.tsv", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "empty"), "%s", err.msg);
    write_text(T "/hdr.tsv", "filepath\ttitle\n");
    CHECK(vlm_dataset_open(&ds, T "/hdr.tsv", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "no samples"), "%s",
          err.msg);
    CHECK(vlm_dataset_open(&ds, T "/nope.tsv", NULL, &err) == VLM_ERR_IO && strstr(err.msg, "nope.tsv"), "%s", err.msg);
    // classnames beside the manifest
    write_text(T "/m_classnames.txt", "zero\none\ntwo\nthree\nfour\n");
    CHECK(vlm_dataset_open(&ds, T "/m.tsv", NULL, &err) == VLM_OK && ds.classnames && ds.n_classes == 5 &&
              !strcmp(ds.classnames[4], "four"),
          "classnames: %s", err.msg);
    vlm_dataset_free(&ds);
    vlm_sample_free(&s);
    vlm_image_free(&img);
}

static void test_shards(void) {
    vlm_dataset ds, w;
    vlm_error err = {0};
    CHECK(vlm_dataset_open(&ds, T "/m.tsv", NULL, &err) == VLM_OK, "%s", err.msg);
    vlm_convert_report rep;
    CHECK(vlm_dataset_write_shards(&ds, T "/shards", 2, NULL, &rep, &err) == VLM_OK, "%s", err.msg);
    CHECK(rep.written == 3 && rep.bad == 1 && rep.shards == 2, "written %lld bad %lld shards %lld",
          (long long)rep.written, (long long)rep.bad, (long long)rep.shards);
    CHECK(rep.bad_first[0] && strstr(rep.bad_first[0], "missing.png"), "%s", rep.bad_first[0]);
    vlm_convert_report_free(&rep);
    CHECK(vlm_dataset_open(&w, T "/shards/{000000..000001}.tar", NULL, &err) == VLM_OK, "%s", err.msg);
    CHECK(w.kind == VLM_DS_WEBDATASET && w.n == 3 && w.has_captions && w.has_labels && w.n_bad == 0, "n=%lld",
          (long long)w.n);
    vlm_sample a, b;
    vlm_sample_init(&a);
    vlm_sample_init(&b);
    for (int i = 0; i < 3 && w.n == 3; i++) {
        CHECK(vlm_dataset_read(&ds, i, &a, &err) == VLM_OK, "%s", err.msg);
        CHECK(vlm_dataset_read(&w, i, &b, &err) == VLM_OK, "%s", err.msg);
        CHECK(a.size == b.size && !memcmp(a.data, b.data, a.size), "sample %d: bytes differ", i);
        CHECK(!strcmp(a.caption, b.caption) && a.label == b.label, "sample %d: %s vs %s", i, a.caption, b.caption);
        CHECK(strstr(b.name, "000000.tar:") || strstr(b.name, "000001.tar:"), "name %s", b.name);
    }
    vlm_dataset_free(&w);

    // open_clip's upsampling factors: each '::' source's samples listed Fk times
    // (a brace pattern is one source); wrong counts and values refused by name.
    vlm_dataset_opts uo;
    vlm_dataset_opts_default(&uo);
    uo.upsampling = "1::3";
    CHECK(vlm_dataset_open(&w, T "/shards/000000.tar::" T "/shards/000001.tar", &uo, &err) == VLM_OK, "%s", err.msg);
    CHECK(w.n == 5, "1::3 gave %lld samples, expected 2 + 3 x 1", (long long)w.n);
    CHECK(vlm_dataset_read(&ds, 2, &a, &err) == VLM_OK, "%s", err.msg);
    for (int i = 2; i < 5 && w.n == 5; i++) {
        CHECK(vlm_dataset_read(&w, i, &b, &err) == VLM_OK, "%s", err.msg);
        CHECK(strstr(b.name, "000001.tar:") && a.size == b.size && !memcmp(a.data, b.data, a.size) &&
                  !strcmp(a.caption, b.caption),
              "upsampled sample %d is %s, not the second source's", i, b.name);
    }
    vlm_dataset_free(&w);
    uo.upsampling = "2";
    CHECK(vlm_dataset_open(&w, T "/shards/{000000..000001}.tar", &uo, &err) == VLM_OK && w.n == 6, "n=%lld %s",
          (long long)w.n, err.msg);
    for (int i = 0; i < 3 && w.n == 6; i++) {
        CHECK(vlm_dataset_read(&ds, i, &a, &err) == VLM_OK && vlm_dataset_read(&w, i + 3, &b, &err) == VLM_OK, "%s",
              err.msg);
        CHECK(a.size == b.size && !memcmp(a.data, b.data, a.size), "copy %d differs from sample %d", i + 3, i);
    }
    vlm_dataset_free(&w);
    const char *bad[][2] = {{"2::1::1", "3 factors for the 2"}, {"0::1", "whole number"}, {"1::x", "whole number"},
                            {"1::", "whole number"}, {"1::2000", "whole number"}};
    for (int i = 0; i < 5; i++) {
        uo.upsampling = bad[i][0];
        CHECK(vlm_dataset_open(&w, T "/shards/000000.tar::" T "/shards/000001.tar", &uo, &err) == VLM_ERR_ARG &&
                  strstr(err.msg, bad[i][1]) && strstr(err.msg, bad[i][0]),
              "factors '%s': %s", bad[i][0], err.msg);
    }
    uo.upsampling = "2";
    CHECK(vlm_dataset_open(&w, T "/m.tsv", &uo, &err) == VLM_ERR_ARG && strstr(err.msg, "webdataset"), "manifest: %s",
          err.msg);

    // A shard written by hand: long member names (pax headers), json
    // caption/label, a group without an image, gzip compression.
    for (int gz = 0; gz < 2; gz++) {
        const char *path = gz ? T "/hand.tar.gz" : T "/hand.tar";
        struct archive *ar = archive_write_new();
        archive_write_set_format_pax_restricted(ar);
        if (gz) archive_write_add_filter_gzip(ar);
        CHECK(archive_write_open_filename(ar, path) == ARCHIVE_OK, "open %s", path);
        char lname[300];
        memset(lname, 'd', 200); // > 155-byte ustar prefix: needs a pax header
        snprintf(lname + 200, sizeof lname - 200, "/sample_with_a_rather_long_key_name_%s.png", "abcdefghijklmnopqrstuvwxyz");
        CHECK(vlm_dataset_read(&ds, 0, &a, &err) == VLM_OK, "%s", err.msg);
        struct {
            const char *name;
            const void *data;
            size_t n;
        } m[] = {
            {lname, a.data, a.size},
            {"k2.jpg", NULL, 0},
            {"k2.json", "{\"caption\": \"from json\", \"label\": 3}", 36},
            {"k3.txt", "no image here", 13},
            {"dir/k4.seg.png", NULL, 0},
            {"dir/k4.txt", "dotted key\n", 11},
        };
        size_t jn;
        uint8_t *jpg = slurp(tu_src("tests/fixtures/data/transform/src/jpeg_444_33x47.jpg"), &jn);
        m[1].data = jpg, m[1].n = jn;
        m[4].data = a.data, m[4].n = a.size;
        for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
            struct archive_entry *e = archive_entry_new();
            archive_entry_set_pathname(e, m[k].name);
            archive_entry_set_size(e, (la_int64_t)m[k].n);
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_write_header(ar, e);
            archive_write_data(ar, m[k].data, m[k].n);
            archive_entry_free(e);
        }
        archive_write_close(ar);
        archive_write_free(ar);
        CHECK(vlm_dataset_open(&w, path, NULL, &err) == VLM_OK, "%s: %s", path, err.msg);
        CHECK(w.n == 3 && w.n_bad == 1 && w.bad[0] && strstr(w.bad[0], "'k3' has no .png"), "%s: n=%lld bad=%s", path,
              (long long)w.n, w.bad[0] ? w.bad[0] : "-");
        if (w.n == 3) {
            CHECK(vlm_dataset_read(&w, 0, &b, &err) == VLM_OK && b.size == a.size && !memcmp(b.data, a.data, a.size),
                  "long-name member bytes: %s", err.msg);
            CHECK(vlm_dataset_read(&w, 1, &b, &err) == VLM_OK && b.size == jn && !memcmp(b.data, jpg, jn), "jpg bytes");
            CHECK(b.caption && !strcmp(b.caption, "from json") && b.label == 3, "json caption/label");
            CHECK(vlm_dataset_read(&w, 2, &b, &err) == VLM_OK && !strcmp(b.caption, "dotted key"), "key up to the first dot, image type from the last");
            CHECK(gz ? w.items[0].shard == -1 : w.items[0].shard == 0, "gz=%d stored %d", gz, w.items[0].shard);
        }
        vlm_dataset_free(&w);
        free(jpg);
    }

    // Damaged tar: corrupt the second member's header checksum -> the first
    // sample is kept, the damage is counted and named.
    size_t n;
    uint8_t *t = slurp(T "/shards/000000.tar", &n);
    CHECK(t != NULL && n > 4096, "shard");
    if (t) {
        // find the 2nd ustar header (after the first image's data)
        size_t hits = 0, at = 0;
        for (size_t o = 0; o + 512 <= n; o += 512)
            if (!memcmp(t + o + 257, "ustar", 5) && ++hits == 5) {
                at = o;
                break;
            }
        CHECK(at > 0, "no 5th header");
        memset(t + at + 148, 'x', 8); // checksum field
        write_file(T "/bad.tar", t, n);
        CHECK(vlm_dataset_open(&w, T "/bad.tar", NULL, &err) == VLM_OK, "%s", err.msg);
        CHECK(w.n >= 1 && w.n_bad == 1 && strstr(w.bad[0], "bad.tar: damaged tar"), "n=%lld %s", (long long)w.n,
              w.bad[0] ? w.bad[0] : "-");
        vlm_dataset_free(&w);
        // garbage and truncation
        write_text(T "/junk.tar", "this is not a tar archive at all, not even close....");
        CHECK(vlm_dataset_open(&w, T "/junk.tar", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "junk.tar"), "%s",
              err.msg);
        write_file(T "/trunc.tar", t, 1500);
        CHECK(vlm_dataset_open(&w, T "/trunc.tar", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "trunc.tar"),
              "%s", err.msg);
        CHECK(vlm_dataset_open(&w, T "/{nope0,nope1}.tar", NULL, &err) == VLM_ERR_IO && strstr(err.msg, "nope0.tar"),
              "%s", err.msg);
        free(t);
    }
    vlm_sample_free(&a);
    vlm_sample_free(&b);
    vlm_dataset_free(&ds);
}

static void test_imagefolder(void) {
    const char *dirs[] = {T "/if", T "/if/dog", T "/if/cat", T "/if/dog/sub", T "/if/ant_eater", T "/if/cat/zz"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) mkdir(dirs[i], 0755);
    make_png(T "/if/dog/b.png", 1, 4, 4);
    make_png(T "/if/dog/sub/a.PNG", 2, 4, 4);
    make_png(T "/if/cat/c.png", 3, 4, 4);
    make_png(T "/if/cat/zz/a.png", 4, 4, 4);
    make_png(T "/if/ant_eater/x.jpeg", 5, 4, 4); // PNG content, .jpeg name: fine
    write_text(T "/if/cat/notes.txt", "ignored");
    write_text(T "/if/cat/old.bmp", "BM....");
    vlm_dataset ds;
    vlm_error err = {0};
    CHECK(vlm_dataset_open(&ds, T "/if", NULL, &err) == VLM_OK, "%s", err.msg);
    CHECK(ds.kind == VLM_DS_IMAGEFOLDER && ds.n == 5 && ds.n_classes == 3 && ds.n_bad == 1, "n=%lld classes=%d bad=%lld",
          (long long)ds.n, ds.n_classes, (long long)ds.n_bad);
    if (ds.n == 5 && ds.n_classes == 3) {
        CHECK(!strcmp(ds.classnames[0], "ant_eater") && !strcmp(ds.classnames[2], "dog"), "sorted classes");
        const char *want[] = {"ant_eater/x.jpeg", "cat/c.png", "cat/zz/a.png", "dog/b.png", "dog/sub/a.PNG"};
        int labels[] = {0, 1, 1, 2, 2};
        char buf[512];
        for (int i = 0; i < 5; i++) {
            const char *src = vlm_dataset_source(&ds, i, buf, sizeof buf);
            CHECK(strstr(src, want[i]) != NULL, "order %d: %s want %s", i, src, want[i]);
            CHECK(vlm_dataset_label(&ds, i) == labels[i], "label %d", i);
        }
        CHECK(!strcmp(vlm_dataset_caption(&ds, 0), "ant eater"), "caption %s", vlm_dataset_caption(&ds, 0));
    }
    vlm_dataset_free(&ds);
    mkdir(T "/if_empty", 0755);
    CHECK(vlm_dataset_open(&ds, T "/if_empty", NULL, &err) == VLM_ERR_FORMAT && strstr(err.msg, "no class"), "%s",
          err.msg);
}

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void test_idx(void) {
    mkdir(T "/idx", 0755);
    enum { N = 5, R = 3, C = 4 };
    uint8_t img[16 + N * R * C], lab[8 + N];
    be32(img, 0x803), be32(img + 4, N), be32(img + 8, R), be32(img + 12, C);
    for (int i = 0; i < N * R * C; i++) img[16 + i] = (uint8_t)(i * 3);
    be32(lab, 0x801), be32(lab + 4, N);
    for (int i = 0; i < N; i++) lab[8 + i] = (uint8_t)(i % 2);
    write_file(T "/idx/train-images-idx3-ubyte", img, sizeof img);
    write_file(T "/idx/train-labels-idx1-ubyte", lab, sizeof lab);
    gzFile g = gzopen(T "/idx/t10k-images-idx3-ubyte.gz", "wb");
    gzwrite(g, img, sizeof img);
    gzclose(g);
    g = gzopen(T "/idx/t10k-labels-idx1-ubyte.gz", "wb");
    gzwrite(g, lab, sizeof lab);
    gzclose(g);
    write_text(T "/idx/classnames.txt", "even\nodd\n");
    const char *paths[] = {T "/idx/train-images-idx3-ubyte", T "/idx/t10k-images-idx3-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        vlm_dataset ds;
        vlm_error err = {0};
        CHECK(vlm_dataset_open(&ds, paths[k], NULL, &err) == VLM_OK, "%s", err.msg);
        CHECK(ds.kind == VLM_DS_IDX && ds.n == N && ds.has_labels && ds.n_classes == 2 && ds.has_captions, "idx %d", k);
        vlm_sample s;
        vlm_image im;
        vlm_sample_init(&s);
        vlm_image_init(&im);
        CHECK(vlm_dataset_load_image(&ds, 2, &s, &im, NULL, &err) == VLM_OK && im.w == C && im.h == R, "%s", err.msg);
        CHECK(im.px[0] == (uint8_t)(2 * R * C * 3) && im.px[1] == im.px[0] && im.px[5] == (uint8_t)((2 * R * C + 1) * 3),
              "pixels");
        CHECK(s.label == 0 && !strcmp(s.caption, "even") && vlm_dataset_label(&ds, 3) == 1, "label/caption");
        vlm_sample_free(&s);
        vlm_image_free(&im);
        vlm_dataset_free(&ds);
    }
    // truncated IDX -> clear error
    write_file(T "/idx/bad-images-idx3-ubyte", img, 40);
    vlm_dataset ds;
    vlm_error err = {0};
    CHECK(vlm_dataset_open(&ds, T "/idx/bad-images-idx3-ubyte", NULL, &err) == VLM_ERR_FORMAT &&
              strstr(err.msg, "5 images of 3x4"),
          "%s", err.msg);
}

// Several captions per sample: webdataset .txt (one per line, blank lines
// and CR dropped), .json "captions", a manifest cell split at caption_sep;
// the loader draws one per (seed, epoch, sample) in training and the first
// in evaluation.
static void add_member(struct archive *ar, const char *name, const void *data, size_t n) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(ar, e);
    archive_write_data(ar, data, n);
    archive_entry_free(e);
}

#define NE 20 // epochs of caption draws
static void draw_captions(const vlm_dataset *ds, uint64_t seed, int train, char out[NE][3][32]) {
    vlm_loader_opts o;
    vlm_loader_opts_default(&o, 8, 3);
    o.seed = seed;
    o.train = train;
    o.epochs = NE;
    o.workers = 2;
    vlm_loader *L;
    vlm_error err = {0};
    memset(out, 0, sizeof(char[NE][3][32]));
    CHECK(vlm_loader_open(&L, ds, &o, &err) == VLM_OK, "%s", err.msg);
    vlm_batch b;
    for (int e = 0; e < NE; e++) {
        CHECK(vlm_loader_next(L, &b, &err) == VLM_OK && b.n == 3, "epoch %d: %s", e, err.msg);
        for (int i = 0; i < b.n; i++) snprintf(out[e][b.indices[i]], 32, "%s", b.captions[i]);
    }
    vlm_loader_free(L);
}

static void test_multicaption(void) {
    const char *path = T "/multi.tar";
    struct archive *ar = archive_write_new();
    archive_write_set_format_pax_restricted(ar);
    CHECK(archive_write_open_filename(ar, path) == ARCHIVE_OK, "open %s", path);
    size_t pn;
    make_png(T "/mc.png", 3, 8, 8);
    uint8_t *png = slurp(T "/mc.png", &pn);
    const char *txt_a = "cat\n\n  a cat icon \r\nkitten\n", *json_b = "{\"captions\": [\"dog\", \"a\\ndog\"]}";
    add_member(ar, "a.png", png, pn);
    add_member(ar, "a.txt", txt_a, strlen(txt_a));
    add_member(ar, "b.png", png, pn);
    add_member(ar, "b.json", json_b, strlen(json_b));
    add_member(ar, "c.png", png, pn);
    add_member(ar, "c.txt", "one only", 8);
    archive_write_close(ar);
    archive_write_free(ar);
    vlm_dataset ds;
    vlm_error err = {0};
    CHECK(vlm_dataset_open(&ds, path, NULL, &err) == VLM_OK && ds.n == 3, "%s", err.msg);
    if (ds.n != 3) return;
    CHECK(!strcmp(vlm_dataset_caption(&ds, 0), "cat\na cat icon\nkitten"), "a: '%s'", vlm_dataset_caption(&ds, 0));
    CHECK(!strcmp(vlm_dataset_caption(&ds, 1), "dog\na dog"), "b: '%s'", vlm_dataset_caption(&ds, 1));
    CHECK(vlm_caption_count(vlm_dataset_caption(&ds, 0)) == 3 && vlm_caption_count(vlm_dataset_caption(&ds, 2)) == 1 &&
              vlm_caption_count("") == 0 && vlm_caption_count(NULL) == 0, "counts");
    size_t len;
    const char *c = vlm_caption_pick(vlm_dataset_caption(&ds, 0), 1, &len);
    CHECK(len == 10 && !strncmp(c, "a cat icon", len), "pick 1: '%.*s'", (int)len, c);
    c = vlm_caption_pick(vlm_dataset_caption(&ds, 0), 9, &len);
    CHECK(len == 6 && !strncmp(c, "kitten", len), "pick past the end: '%.*s'", (int)len, c);
    // training draws: every caption of a used, each draw one of the sample's,
    // the same seed gives the same draws, another seed other draws
    char d1[NE][3][32], d2[NE][3][32], d3[NE][3][32], ev[NE][3][32];
    draw_captions(&ds, 7, 1, d1);
    draw_captions(&ds, 7, 1, d2);
    draw_captions(&ds, 8, 1, d3);
    draw_captions(&ds, 7, 0, ev);
    CHECK(!memcmp(d1, d2, sizeof d1), "same seed, different caption draws");
    CHECK(memcmp(d1, d3, sizeof d1), "another seed drew the same 60 captions");
    int seen[3] = {0};
    for (int e = 0; e < NE; e++) {
        const char *a = d1[e][0];
        seen[0] += !strcmp(a, "cat"), seen[1] += !strcmp(a, "a cat icon"), seen[2] += !strcmp(a, "kitten");
        CHECK(!strcmp(d1[e][1], "dog") || !strcmp(d1[e][1], "a dog"), "b drew '%s'", d1[e][1]);
        CHECK(!strcmp(d1[e][2], "one only"), "c drew '%s'", d1[e][2]);
        CHECK(!strcmp(ev[e][0], "cat") && !strcmp(ev[e][1], "dog"), "eval drew '%s' '%s'", ev[e][0], ev[e][1]);
    }
    CHECK(seen[0] && seen[1] && seen[2] && seen[0] + seen[1] + seen[2] == NE, "draws of a: %d %d %d", seen[0],
          seen[1], seen[2]);
    vlm_dataset_free(&ds);
    // a manifest cell split at a separator
    write_text(T "/mc.tsv", "filepath\ttitle\nmc.png\tred || a red square ||  || square\n");
    vlm_dataset_opts o;
    vlm_dataset_opts_default(&o);
    o.caption_sep = "||";
    CHECK(vlm_dataset_open(&ds, T "/mc.tsv", &o, &err) == VLM_OK && ds.n == 1, "%s", err.msg);
    if (ds.n == 1)
        CHECK(!strcmp(vlm_dataset_caption(&ds, 0), "red\na red square\nsquare"), "'%s'", vlm_dataset_caption(&ds, 0));
    vlm_dataset_free(&ds);
    free(png);
}

int main(void) {
    rm_rf(T);
    mkdir(T, 0755);
    test_brace();
    test_manifest();
    test_shards();
    test_imagefolder();
    test_idx();
    test_multicaption();
    int rc = tu_done("test_dataset");
    if (!rc) rm_rf(T);
    return rc;
}
