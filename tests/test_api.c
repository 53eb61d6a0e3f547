// The public front door (api/model.h, api/index.h) and `vlm embed` /
// `vlm search`, on OpenAI's tiny reference CLIP: embeddings of files, encoded
// bytes and RGB buffers equal the towers' own (eval transform, l2norm);
// texts equal vlm_clip_encode_texts; zero-shot probabilities are the softmax
// of 100 x cosine to the class embeddings; exact top-k equals a brute-force
// sort; embeddings files round-trip; `vlm embed` resumed from a partial file
// gives the uninterrupted run's file; weights without a tokenizer refuse texts.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "api/index.h"
#include "api/model.h"
#include "core/rng.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/checkpoint.h"
#include "fusion/classes.h"
#include "testutil.h"

#define TMP "/tmp/vlm_test_api"

static int make_model(const char *path) {
    vlm_error err;
    vlm_clip_cfg cc;
    vlm_clip m;
    char *vocab = tu_read_file(tu_src("tests/fixtures/zeroshot/vocab.txt"), NULL);
    int ok = vocab && !vlm_clip_cfg_load(tu_src("../shared/reference/openai-clip/tiny.json"), &cc, &err) &&
             !vlm_clip_init(&m, &cc, &err) &&
             !vlm_clip_load_weights(&m, tu_src("../shared/reference/openai-clip/tiny.weights.safetensors"), &err) &&
             !vlm_ckpt_save_model(path, &m, vocab, 0, 0, &err);
    free(vocab);
    if (ok) vlm_clip_free(&m);
    return ok;
}

static void test_model(void) {
    vlm_error err = {0};
    vlm_model *m;
    CHECK(make_model(TMP "/tiny.safetensors"), "tiny model");
    if (vlm_model_open(&m, TMP "/tiny.safetensors", NULL, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    const int E = vlm_model_dim(m), S = vlm_model_image_size(m);
    CHECK(E == 64 && S == 32 && vlm_model_has_text(m), "dim %d, size %d", E, S);
    // an RGB image 40 x 30 through the API and through the towers directly
    enum { W = 40, H = 30 };
    static uint8_t rgb[W * H * 3];
    vlm_rng r;
    vlm_rng_init(&r, 2, 1, 0);
    for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)vlm_rng_below(&r, 256);
    float a[64], b[64], c[64];
    CHECK(vlm_model_embed_rgb(m, rgb, 1, W, H, a, &err) == VLM_OK, "embed_rgb: %s", err.msg);
    vlm_clip clip;
    vlm_ckpt_load_model(TMP "/tiny.safetensors", &clip, NULL, &err);
    vlm_image img;
    vlm_image_init(&img);
    vlm_image_alloc(&img, W, H, &err);
    memcpy(img.px, rgb, sizeof rgb);
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    float *x = malloc(sizeof(float) * 3 * S * S);
    vlm_transform_eval(&t, &img, x, &sc, &err);
    vlm_ctx ctx;
    vlm_ctx_init(&ctx, 16u << 20, 0, &err);
    ctx.grad_enabled = 0, ctx.training = 0;
    int64_t sh[4] = {1, 3, S, S};
    vlm_tensor *f = vlm_op_l2norm(&ctx, vlm_clip_encode_image(&ctx, &clip, vlm_tensor_wrap(&ctx, VLM_F32, 4, sh, x, NULL), NULL));
    CHECK(f && tu_rel_err(a, vlm_f32(f), E, 1e-3) < 1e-6, "embed_rgb = the image tower's normalised output");
    // the same image as PNG: a file and its bytes
    CHECK(!vlm_image_write_png(TMP "/x.png", rgb, W, H, &err), "png");
    size_t n = 0;
    char *png = tu_read_file(TMP "/x.png", &n);
    const char *p = TMP "/x.png";
    CHECK(!vlm_model_embed_files(m, &p, 1, b, &err) && !vlm_model_embed_encoded(m, png, n, "x.png", c, &err) &&
              !memcmp(a, b, sizeof a) && !memcmp(a, c, sizeof a),
          "files, encoded bytes and RGB agree: %s", err.msg);
    CHECK(vlm_model_embed_encoded(m, png, n / 2, "half.png", c, &err) != VLM_OK && strstr(err.msg, "half.png"),
          "a truncated image is an error naming it: %s", err.msg);
    free(png);
    // texts, and zero-shot
    const char *labels[3] = {"a cat", "a dog", "a car"};
    float tx[3 * 64], W3[3 * 64], probs[3];
    vlm_tokenizer tok;
    char *merges = tu_read_file(tu_src("tests/fixtures/zeroshot/vocab.txt"), NULL);
    vlm_tokenizer_init_from_memory(&tok, merges, strlen(merges), &err);
    CHECK(!vlm_model_embed_texts(m, labels, 3, tx, &err), "texts: %s", err.msg);
    float ref[3 * 64];
    vlm_clip_encode_texts(&clip, &tok, labels, 3, ref, &err);
    CHECK(!memcmp(tx, ref, sizeof tx), "embed_texts = vlm_clip_encode_texts");
    const char *tmpl[1] = {"{}"};
    vlm_zeroshot_classifier(&clip, &tok, labels, 3, tmpl, 1, W3, &err);
    CHECK(!vlm_model_classify(m, a, labels, 3, NULL, 0, probs, &err), "classify: %s", err.msg);
    double z = 0, lg[3], sum = 0;
    for (int k = 0; k < 3; k++) {
        lg[k] = 0;
        for (int e = 0; e < E; e++) lg[k] += 100.0 * a[e] * W3[k * E + e];
        z += exp(lg[k]);
        sum += probs[k];
    }
    for (int k = 0; k < 3; k++) CHECK(fabs(probs[k] - exp(lg[k]) / z) < 1e-5, "p[%d] %g vs %g", k, probs[k], exp(lg[k]) / z);
    CHECK(fabs(sum - 1) < 1e-5, "probabilities sum to 1");
    vlm_tokenizer_free(&tok);
    free(merges), free(x);
    vlm_transform_scratch_free(&sc);
    vlm_image_free(&img);
    vlm_ctx_free(&ctx);
    vlm_clip_free(&clip);
    vlm_model_close(m);
    // weights without a tokenizer: images yes, texts refused
    if (vlm_model_open(&m, tu_src("tests/fixtures/import/openai_micro.pt"), NULL, &err)) {
        CHECK(0, "open .pt: %s", err.msg);
        return;
    }
    CHECK(!vlm_model_has_text(m) && vlm_model_embed_texts(m, labels, 1, tx, &err) != VLM_OK && strstr(err.msg, "tokenizer"),
          "no tokenizer, no texts");
    vlm_model_close(m);
}

static int cmp_desc(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

static void test_index(void) {
    enum { N = 1000, D = 16, K = 5 };
    vlm_index ix = {.n = N, .dim = D, .model = "m", .source = "s", .next = N};
    ix.emb = malloc(sizeof(float) * N * D);
    ix.ids = malloc(sizeof(char *) * N);
    vlm_rng r;
    vlm_rng_init(&r, 5, 1, 0);
    for (int i = 0; i < N * D; i++) ix.emb[i] = vlm_rng_normal(&r);
    char buf[32];
    for (int i = 0; i < N; i++) snprintf(buf, sizeof buf, "id %d \"q\"", i), ix.ids[i] = strdup(buf);
    float q[2 * D], sc[2 * K], all[N];
    int64_t id[2 * K];
    for (int i = 0; i < 2 * D; i++) q[i] = vlm_rng_normal(&r);
    vlm_error err = {0};
    CHECK(!vlm_index_search(&ix, q, 2, K, id, sc, &err), "search: %s", err.msg);
    for (int j = 0; j < 2; j++) {
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += (double)ix.emb[i * D + d] * q[j * D + d];
            all[i] = (float)s;
        }
        qsort(all, N, sizeof(float), cmp_desc);
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += (double)ix.emb[id[j * K + k] * D + d] * q[j * D + d];
            CHECK(fabsf(sc[j * K + k] - all[k]) < 1e-4 && fabs(s - sc[j * K + k]) < 1e-4, "query %d rank %d", j, k);
        }
    }
    CHECK(vlm_index_search(&ix, q, 1, N + 1, id, sc, &err) != VLM_OK, "k > n refused");
    CHECK(!vlm_index_save(&ix, TMP "/ix.safetensors", &err), "save: %s", err.msg);
    vlm_index b;
    CHECK(!vlm_index_load(&b, TMP "/ix.safetensors", &err) && b.n == N && b.dim == D &&
              !memcmp(b.emb, ix.emb, sizeof(float) * N * D) && !strcmp(b.ids[7], "id 7 \"q\"") && !strcmp(b.model, "m") &&
              b.next == N,
          "round trip: %s", err.msg);
    vlm_index_free(&b);
    CHECK(vlm_index_load(&b, tu_src("tests/fixtures/import/micro.io.safetensors"), &err) != VLM_OK &&
              strstr(err.msg, "not a vlm embeddings file"),
          "other safetensors refused");
    for (int i = 0; i < N; i++) free(ix.ids[i]);
    free(ix.ids), free(ix.emb);
}

static int vlm(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/vlm %s >/dev/null 2>>" TMP "/stderr.txt", VLM_BINARY_DIR, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// `vlm embed` resumed from a partial file = the uninterrupted run.
static void test_embed_resume(void) {
    tu_make_squares(TMP "/sq", 20, 0);
    CHECK(vlm("embed --checkpoint " TMP "/tiny.safetensors --data " TMP "/sq/train.tsv --out " TMP "/a.safetensors") == 0,
          "embed");
    vlm_index a, p;
    vlm_error err = {0};
    if (vlm_index_load(&a, TMP "/a.safetensors", &err)) {
        CHECK(0, "load: %s", err.msg);
        return;
    }
    CHECK(a.n == 20 && a.dim == 64 && strstr(a.ids[3], "003.png"), "20 rows with ids");
    p = a; // the first 8 rows as a partial file
    p.n = 8, p.next = 8;
    CHECK(!vlm_index_save(&p, TMP "/b.safetensors.partial", &err), "partial: %s", err.msg);
    CHECK(vlm("embed --checkpoint " TMP "/tiny.safetensors --data " TMP "/sq/train.tsv --out " TMP "/b.safetensors") == 0,
          "resumed embed");
    vlm_index b;
    if (!vlm_index_load(&b, TMP "/b.safetensors", &err)) {
        // (equal up to the GEMM's summation order, which depends on the batch's rows)
        int same = b.n == a.n && tu_rel_err(b.emb, a.emb, (long)(a.n * a.dim), 1e-3) < 1e-5;
        for (int64_t i = 0; same && i < a.n; i++) same = !strcmp(a.ids[i], b.ids[i]);
        CHECK(same, "the resumed file equals the uninterrupted one (rel err %.2e)",
              b.n == a.n ? tu_rel_err(b.emb, a.emb, (long)(a.n * a.dim), 1e-3) : -1.0);
        vlm_index_free(&b);
    } else
        CHECK(0, "load b: %s", err.msg);
    char *log = tu_read_file(TMP "/stderr.txt", NULL);
    CHECK(log && strstr(log, "resuming") && strstr(log, "at sample 8"), "it said it resumed");
    free(log);
    CHECK(vlm("search --index " TMP "/a.safetensors --text 'a red square' -k 3") == 0, "search");
    CHECK(vlm("search --index " TMP "/a.safetensors") == 2, "search without a query: usage error");
    vlm_index_free(&a);
}

int main(void) {
    if (system("rm -rf " TMP " && mkdir -p " TMP) != 0) return 1;
    test_model();
    test_index();
    test_embed_resume();
    if (!tu_failures && system("rm -rf " TMP) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_api");
}
