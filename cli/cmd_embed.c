// `vlm embed` (images of any dataset, or texts, to an embeddings file;
// resumable) and `vlm search` (exact top-k over such a file).
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "api/index.h"
#include "api/model.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/evalread.h"

static const char *embed_usage =
    "usage: vlm embed --checkpoint C (--data DATA | --texts FILE) --out EMB.safetensors [options]\n"
    "Embeds images (any dataset vlm reads: manifest, shards, ImageFolder, IDX) or texts (one per line) with a CLIP\n"
    "(any weights vlm reads) into an embeddings file: `embeddings` [n, E] L2-normalised, ids (the image paths or\n"
    "the texts) in the metadata. Unreadable images are skipped and counted. Every --chunk images the progress is\n"
    "saved to EMB.partial; rerunning the same command continues from there.\n"
    "  --tokenizer FILE     the weights' BPE merges if they lack one (texts)\n"
    "  --chunk N (4096)     images between progress saves\n"
    "  --csv-img-key K  --csv-separator C  --labels FILE  --composite R,G,B  --max-pixels N\n";

typedef struct {
    const char *ckpt, *data, *texts, *out, *tokenizer;
    long long chunk;
    cli_data_opts d;
} embed_opts;

static int embed_parse(int argc, char **argv, embed_opts *o, vlm_error *err) {
    memset(o, 0, sizeof *o);
    o->chunk = 4096;
    cli_data_opts_default(&o->d, 64);
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &o->ckpt, 0, 0, NULL, NULL},
        {"clip", CLI_STR, &o->ckpt, 0, 0, NULL, NULL},
        {"data", CLI_STR, &o->data, 0, 0, NULL, NULL},
        {"texts", CLI_STR, &o->texts, 0, 0, NULL, NULL},
        {"out", CLI_STR, &o->out, 0, 0, NULL, NULL},
        {"tokenizer", CLI_STR, &o->tokenizer, 0, 0, NULL, NULL},
        {"chunk", CLI_INT, &o->chunk, 1, 1 << 24, NULL, NULL},
        CLI_END,
    };
    cli_opt data[CLI_DATA_OPTS];
    cli_data_table(data, &o->d, 0);
    const cli_opt *tabs[] = {own, data};
    int r = cli_parse_flags("embed", argc, argv, tabs, 2, err);
    if (r) return r;
    if (!o->ckpt || !o->out || !o->data == !o->texts)
        return vlm_errorf(err, VLM_ERR_ARG, "--checkpoint, --out and one of --data or --texts are required"), -1;
    return 0;
}

static vlm_status add_rows(vlm_index *ix, int64_t cap, const float *e, char **ids, int n, vlm_error *err) {
    if (ix->n + n > cap) return vlm_errorf(err, VLM_ERR_STATE, "embed: more rows than samples");
    memcpy(ix->emb + ix->n * ix->dim, e, sizeof(float) * (size_t)n * ix->dim);
    for (int i = 0; i < n; i++) ix->ids[ix->n + i] = ids[i], ids[i] = NULL;
    ix->n += n;
    return VLM_OK;
}

// One batch of samples [i0, i0 + b): decoded in parallel at the model's size,
// embedded; unreadable ones skipped (*bad counts them, the first is reported).
static vlm_status embed_batch(vlm_model *m, const vlm_dataset *ds, const vlm_decode_opts *dec, int64_t i0, int b,
                              uint8_t *rgb, float *e, char **ids, int *kept, int64_t *bad, char *first_bad,
                              vlm_error *err) {
    const int S = vlm_model_image_size(m);
    int ok[256] = {0};
#pragma omp parallel
    {
        vlm_eval_reader rd;
        vlm_eval_reader_init(&rd, S, dec);
#pragma omp for schedule(dynamic)
        for (int k = 0; k < b; k++) {
            vlm_error e2 = {0};
            ok[k] = !vlm_eval_read_sample_u8(&rd, ds, i0 + k, rgb + (size_t)k * S * S * 3, &e2);
            ids[k] = strdup(rd.s.name ? rd.s.name : "");
            if (!ok[k] && !first_bad[0])
#pragma omp critical
                snprintf(first_bad, 512, "%s", e2.msg);
        }
        vlm_eval_reader_free(&rd);
    }
    int n = 0;
    for (int k = 0; k < b; k++) {
        if (!ok[k]) {
            (*bad)++;
            free(ids[k]);
            continue;
        }
        if (n != k) memmove(rgb + (size_t)n * S * S * 3, rgb + (size_t)k * S * S * 3, (size_t)S * S * 3), ids[n] = ids[k];
        n++;
    }
    *kept = n;
    return n ? vlm_model_embed_rgb(m, rgb, n, S, S, e, err) : VLM_OK;
}

static vlm_status embed_images(vlm_model *m, const embed_opts *o, vlm_index *ix, const char *partial, vlm_error *err) {
    vlm_dataset_opts dso;
    cli_data_dataset_opts(&o->d, &dso);
    vlm_dataset ds;
    vlm_status st = vlm_dataset_open(&ds, o->data, &dso, err);
    if (st) return st;
    const int S = vlm_model_image_size(m), E = ix->dim, B = 64;
    float *nemb = realloc(ix->emb, sizeof(float) * (size_t)(ds.n + 1) * E);
    char **nids = nemb ? realloc(ix->ids, sizeof(char *) * (size_t)(ds.n + 1)) : NULL;
    uint8_t *rgb = malloc((size_t)B * S * S * 3);
    float *e = malloc(sizeof(float) * (size_t)B * E);
    char *ids[64] = {0}, first_bad[512] = "";
    if (nemb) ix->emb = nemb;
    if (nids) ix->ids = nids;
    if (!nemb || !nids || !rgb || !e) st = vlm_errorf(err, VLM_ERR_OOM, "embed: out of memory for %lld rows", (long long)ds.n);
    int64_t bad = 0, since = 0;
    double t0 = vlm_now(), tl = t0;
    const int64_t start = ix->next;
    for (int64_t i0 = ix->next; !st && i0 < ds.n; i0 += B) {
        int b = ds.n - i0 < B ? (int)(ds.n - i0) : B, kept = 0;
        if (!(st = embed_batch(m, &ds, &o->d.dec, i0, b, rgb, e, ids, &kept, &bad, first_bad, err)))
            st = add_rows(ix, ds.n, e, ids, kept, err);
        ix->next = i0 + b, since += b;
        double now = vlm_now();
        if (!st && (since >= o->chunk || now - tl > 10)) {
            fprintf(stderr, "embed: %lld/%lld (%.0f img/s)\n", (long long)ix->next, (long long)ds.n,
                    (double)(ix->next - start) / (now - t0));
            if (since >= o->chunk) st = vlm_index_save(ix, partial, err), since = 0;
            tl = now;
        }
    }
    if (bad) fprintf(stderr, "embed: skipped %lld unreadable images (first: %s)\n", (long long)bad, first_bad);
    if (!st) fprintf(stderr, "embed: %lld images embedded (%lld read) in %.1f s (%.0f img/s)\n", (long long)(ix->n),
                     (long long)(ix->next - start), vlm_now() - t0, (double)(ix->next - start - bad) / (vlm_now() - t0 + 1e-9));
    free(rgb), free(e);
    vlm_dataset_free(&ds);
    return st;
}

static vlm_status embed_texts(vlm_model *m, const embed_opts *o, vlm_index *ix, vlm_error *err) {
    char **lines = NULL;
    int n = 0;
    vlm_status st = vlm_lines_load_nonblank(o->texts, &lines, &n, err);
    if (st) return st;
    ix->emb = malloc(sizeof(float) * (size_t)(n ? n : 1) * ix->dim);
    if (!ix->emb) return vlm_strlist_free(lines, n), vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    st = vlm_model_embed_texts(m, (const char *const *)lines, n, ix->emb, err);
    ix->ids = lines, ix->n = n, ix->next = n;
    return st;
}

int cmd_embed(int argc, char **argv) {
    embed_opts o;
    vlm_error err = {0};
    int pr = embed_parse(argc, argv, &o, &err);
    if (pr) return cli_parse_exit(pr, "embed", embed_usage, &err);
    vlm_model *m;
    if (vlm_model_open(&m, o.ckpt, o.tokenizer, &err)) return cli_fail("embed", &err);
    char partial[1100];
    snprintf(partial, sizeof partial, "%s.partial", o.out);
    vlm_index ix = {0};
    struct stat sb;
    vlm_status st = VLM_OK;
    if (o.data && !stat(partial, &sb)) { // resume
        if (!(st = vlm_index_load(&ix, partial, &err)) &&
            (!ix.source || strcmp(ix.source, o.data) || ix.dim != vlm_model_dim(m)))
            st = vlm_errorf(&err, VLM_ERR_ARG, "%s was made from other data or another model: remove it to start over", partial);
        if (!st) fprintf(stderr, "embed: resuming %s at sample %lld\n", partial, (long long)ix.next);
    }
    ix.dim = vlm_model_dim(m);
    if (!ix.model) ix.model = strdup(o.ckpt);
    if (!ix.source) ix.source = strdup(o.data ? o.data : o.texts);
    if (!st) st = o.data ? embed_images(m, &o, &ix, partial, &err) : embed_texts(m, &o, &ix, &err);
    if (!st) st = vlm_index_save(&ix, o.out, &err);
    if (!st) unlink(partial);
    vlm_index_free(&ix);
    vlm_model_close(m);
    if (st) return cli_fail("embed", &err);
    printf("wrote %s\n", o.out);
    return 0;
}

// ---------------------------------------------------------------- search

static const char *search_usage =
    "usage: vlm search --index EMB (--text TEXT | --image FILE) [-k K] [--checkpoint C] [--tokenizer FILE]\n"
    "Exact top-k by inner product over an embeddings file (vlm embed); the query is embedded with the index's\n"
    "model (recorded in the file) or --checkpoint. Prints one JSON line: query, results [{id, score}], ms.\n"
    "  --bench N --dim D    time queries against a random index of N vectors of D dims (no model needed)\n";

static int search_bench(long long n, long long dim, long long k) {
    vlm_index ix = {.n = n, .dim = (int)dim};
    vlm_error err = {0};
    ix.emb = malloc(sizeof(float) * (size_t)(n * dim));
    float *q = malloc(sizeof(float) * (size_t)dim), sc[1024];
    int64_t id[1024];
    if (!ix.emb || !q) return cli_failf("search", "out of memory for %lld x %lld", n, dim);
    vlm_rng r;
    vlm_rng_init(&r, 1, VLM_RNG_DATA, 0);
    for (long long i = 0; i < n * dim; i++) ix.emb[i] = vlm_rng_normal(&r);
    for (long long i = 0; i < dim; i++) q[i] = vlm_rng_normal(&r);
    double best = 1e30, sum = 0;
    for (int rep = 0; rep < 12; rep++) {
        double t0 = vlm_now();
        if (vlm_index_search(&ix, q, 1, (int)k, id, sc, &err)) return cli_fail("search", &err);
        double dt = vlm_now() - t0;
        if (rep >= 2) sum += dt, best = dt < best ? dt : best;
    }
    printf("{\"n\": %lld, \"dim\": %lld, \"k\": %lld, \"ms_mean\": %.3f, \"ms_best\": %.3f}\n", n, dim, k, 1e3 * sum / 10,
           1e3 * best);
    free(ix.emb), free(q);
    return 0;
}

int cmd_search(int argc, char **argv) {
    const char *index = NULL, *text = NULL, *image = NULL, *ckpt = NULL, *tokenizer = NULL;
    long long k = 10, bench = 0, dim = 512;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"index", CLI_STR, &index, 0, 0, NULL, NULL},   {"text", CLI_STR, &text, 0, 0, NULL, NULL},
        {"image", CLI_STR, &image, 0, 0, NULL, NULL},   {"checkpoint", CLI_STR, &ckpt, 0, 0, NULL, NULL},
        {"tokenizer", CLI_STR, &tokenizer, 0, 0, NULL, NULL}, {"k", CLI_INT, &k, 1, 1000, NULL, NULL},
        {"bench", CLI_INT, &bench, 1, 1e9, NULL, NULL}, {"dim", CLI_INT, &dim, 1, 65536, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("search", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "search", search_usage, &err);
    if (bench) return search_bench(bench, dim, k);
    if (!index || !text == !image) return cli_usagef("search", "--index and one of --text or --image are required");
    vlm_index ix;
    if (vlm_index_load(&ix, index, &err)) return cli_fail("search", &err);
    if (!ckpt) ckpt = ix.model;
    vlm_model *m = NULL;
    int rc = 1;
    float *q = NULL, sc[1000];
    int64_t id[1000];
    if (k > ix.n) k = ix.n;
    if (!ckpt) vlm_errorf(&err, VLM_ERR_ARG, "%s records no model: pass --checkpoint", index);
    else if (!vlm_model_open(&m, ckpt, tokenizer, &err)) {
        if (vlm_model_dim(m) != ix.dim) vlm_errorf(&err, VLM_ERR_ARG, "%s has %d dims, the model %d", index, ix.dim, vlm_model_dim(m));
        else if (!(q = malloc(sizeof(float) * (size_t)ix.dim))) vlm_errorf(&err, VLM_ERR_OOM, "out of memory");
        else {
            double t0 = vlm_now();
            vlm_status st = text ? vlm_model_embed_texts(m, &text, 1, q, &err) : vlm_model_embed_files(m, &image, 1, q, &err);
            double t1 = vlm_now();
            if (!st && !vlm_index_search(&ix, q, 1, (int)k, id, sc, &err)) {
                printf("{\"query\": ");
                cli_json_str(stdout, text ? text : image);
                printf(", \"results\": [");
                for (int i = 0; i < k; i++) {
                    printf("%s{\"id\": ", i ? ", " : "");
                    cli_json_str(stdout, ix.ids[id[i]]);
                    printf(", \"score\": %.6f}", sc[i]);
                }
                printf("], \"embed_ms\": %.2f, \"search_ms\": %.3f}\n", 1e3 * (t1 - t0), 1e3 * (vlm_now() - t1));
                rc = 0;
            }
        }
    }
    if (rc) cli_fail("search", &err);
    free(q);
    vlm_model_close(m);
    vlm_index_free(&ix);
    return rc;
}
