// `vlm serve` on loopback with OpenAI's tiny reference CLIP: every route, the
// error codes (400 bad JSON / corrupt image, 401 without the token, 404, 405,
// 413 oversized body, 415 wrong content type), a slow client trickling its
// request while others succeed, concurrent requests batched together, the
// embeddings equal the library's, /metrics counts them, SIGTERM exits 0.
#include <arpa/inet.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include "api/model.h"
#include "data/image.h"
#include "fusion/checkpoint.h"
#include "fusion/detection.h"
#include "fusion/generator.h"
#include "testutil.h"

#define TMP "/tmp/vlm_test_serve"
static int port;

// One HTTP/1.1 request (Connection: close); returns the status, body into out.
static int http(const char *method, const char *path, const char *ctype, const char *body, size_t n, const char *extra,
                char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) return close(fd), -1;
    char head[1024];
    int h = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s%sContent-Length: %zu\r\n\r\n",
                     method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", extra ? extra : "", n);
    if (write(fd, head, (size_t)h) != h || (n && write(fd, body, n) != (ssize_t)n)) return close(fd), -1;
    size_t got = 0;
    ssize_t r;
    static char buf[1 << 20];
    while ((r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    close(fd);
    buf[got] = 0;
    int status = -1;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(out, cap, "%s", b ? b + 4 : "");
    return status;
}

static char *b64(const unsigned char *d, size_t n) {
    static const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * (n / 3 + 2)), *p = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *p++ = t[v >> 18 & 63], *p++ = t[v >> 12 & 63];
        *p++ = i + 1 < n ? t[v >> 6 & 63] : '=', *p++ = i + 2 < n ? t[v & 63] : '=';
    }
    *p = 0;
    return o;
}

static char *png_b64;

// Starts `vlm serve` with extra flags; returns its pid, sets port.
static pid_t start(const char *log, const char *const *extra, int n_extra) {
    const char *args[32] = {"vlm", "serve", "--checkpoint", TMP "/tiny.safetensors", "--port", "0", "--token", "s3",
                            "--max-body", "65536", "--detector", TMP "/det.safetensors", "--generator", TMP "/gen.safetensors"};
    int n = 14;
    for (int i = 0; i < n_extra; i++) args[n++] = extra[i];
    args[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr)) _exit(126);
        execv(VLM_BINARY_DIR "/vlm", (char *const *)args);
        _exit(127);
    }
    port = 0;
    for (int i = 0; i < 200 && !port; i++) { // the log names the port
        usleep(50000);
        char *l = tu_read_file(log, NULL);
        const char *p = l ? strstr(l, "http://127.0.0.1:") : NULL;
        if (p) port = atoi(p + 17);
        free(l);
    }
    return pid;
}

static void *slow_generate(void *arg) {
    char out[4096];
    const char *g = "{\"prompt\": \"a cat\", \"steps\": 300}";
    *(int *)arg = http("POST", "/v1/generate", "application/json", g, strlen(g), "Authorization: Bearer s3\r\n", out, sizeof out);
    return NULL;
}

// A queue of 1 and a 0.1 s deadline: concurrent slow requests get 503 and 408, and the server lives on.
static void test_overload(void) {
    const char *extra[4] = {"--queue", "1", "--timeout", "0.1"};
    pid_t pid = start(TMP "/serve2.log", extra, 4);
    CHECK(port > 0, "second server up");
    pthread_t th[6];
    int codes[6], n503 = 0, n408 = 0;
    for (int i = 0; i < 6; i++) pthread_create(&th[i], NULL, slow_generate, &codes[i]);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL), n503 += codes[i] == 503, n408 += codes[i] == 408;
    CHECK(n503 > 0 && n408 > 0, "overload: %d x 503, %d x 408 of 6", n503, n408);
    char out[4096];
    CHECK(http("GET", "/healthz", NULL, "", 0, NULL, out, sizeof out) == 200, "alive after overload");
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "overloaded server: SIGTERM exit 0");
}
static void *client(void *arg) {
    char body[4096], out[65536];
    snprintf(body, sizeof body, "{\"image\": \"%s\", \"labels\": [\"a\", \"b\"]}", png_b64);
    *(int *)arg = http("POST", "/v1/classify", "application/json", body, strlen(body), "Authorization: Bearer s3\r\n", out, sizeof out);
    return NULL;
}

int main(void) {
    if (system("rm -rf " TMP " && mkdir -p " TMP) != 0) return 1;
    vlm_error err = {0};
    vlm_clip_cfg cc;
    vlm_clip m;
    char *vocab = tu_read_file(tu_src("tests/fixtures/zeroshot/vocab.txt"), NULL);
    if (!vocab || vlm_clip_cfg_load(tu_src("../shared/reference/openai-clip/tiny.json"), &cc, &err) || vlm_clip_init(&m, &cc, &err) ||
        vlm_clip_load_weights(&m, tu_src("../shared/reference/openai-clip/tiny.weights.safetensors"), &err) ||
        vlm_ckpt_save_model(TMP "/tiny.safetensors", &m, vocab, 0, 0, &err))
    {
        CHECK(0, "setup: %s", err.msg);
        return tu_done("test_serve");
    }
    vlm_clip_free(&m);
    free(vocab);
    // a detector and a generator on that CLIP (untrained heads: the routes, not the quality)
    vlm_owl o;
    vlm_gen g;
    vlm_dit_cfg dc;
    vlm_dit_cfg_default(&dc);
    dc.image_size = 16, dc.patch_size = 4, dc.width = 32, dc.layers = 1, dc.heads = 2, dc.timesteps = 100;
    CHECK(!vlm_owl_from_clip(&o, TMP "/tiny.safetensors", 64, 0, 5, &err) && !vlm_owl_save(TMP "/det.safetensors", &o, NULL, &err),
          "detector: %s", err.msg);
    vlm_owl_free(&o);
    CHECK(!vlm_gen_from_clip(&g, TMP "/tiny.safetensors", dc, 3, &err) && !vlm_gen_save(TMP "/gen.safetensors", &g, NULL, 0, &err),
          "generator: %s", err.msg);
    vlm_gen_free(&g);
    unsigned char px[20 * 20 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (unsigned char)(i * 7);
    vlm_image_write_png(TMP "/x.png", px, 20, 20, &err);
    size_t pn;
    char *png = tu_read_file(TMP "/x.png", &pn);
    png_b64 = b64((unsigned char *)png, pn);

    const char *extra[2] = {"--max-wait-ms", "50"};
    pid_t pid = start(TMP "/serve.log", extra, 2);
    CHECK(port > 0, "server up");
    if (!port) {
        kill(pid, SIGKILL);
        return tu_done("test_serve");
    }
    static char out[1 << 20], body[1 << 17];
    const char *auth = "Authorization: Bearer s3\r\n";
    CHECK(http("GET", "/healthz", NULL, "", 0, NULL, out, sizeof out) == 200 && strstr(out, "ok"), "healthz");
    CHECK(http("GET", "/", NULL, "", 0, NULL, out, sizeof out) == 200 && strstr(out, "/v1/classify"), "the page");
    CHECK(http("GET", "/nope", NULL, "", 0, NULL, out, sizeof out) == 404, "404");
    CHECK(http("GET", "/v1/embed", NULL, "", 0, auth, out, sizeof out) == 405, "405");
    const char *t = "{\"text\": \"a cat\"}";
    CHECK(http("POST", "/v1/embed", "application/json", t, strlen(t), NULL, out, sizeof out) == 401, "401 without token");
    CHECK(http("POST", "/v1/embed", "application/json", t, strlen(t), auth, out, sizeof out) == 200 && strstr(out, "\"dim\":64"),
          "embed text: %.200s", out);
    // the image embedding equals the library's
    CHECK(http("POST", "/v1/embed", "image/png", png, pn, auth, out, sizeof out) == 200, "embed raw png: %.200s", out);
    vlm_model *vm;
    float e[64];
    const char *xp = TMP "/x.png";
    if (!vlm_model_open(&vm, TMP "/tiny.safetensors", NULL, &err) && !vlm_model_embed_files(vm, &xp, 1, e, &err)) {
        const char *p = strstr(out, "[");
        double worst = 0;
        for (int i = 0; p && i < 64; i++) {
            char *end;
            double v = strtod(p + 1, &end);
            worst = fmax(worst, fabs(v - e[i]));
            p = end;
        }
        CHECK(p && worst < 1e-5, "served embedding = library's (max diff %g)", worst);
        vlm_model_close(vm);
    }
    snprintf(body, sizeof body, "{\"image\": \"%s\", \"labels\": [\"a cat\", \"a dog\"], \"templates\": [\"a photo of {}\"]}", png_b64);
    CHECK(http("POST", "/v1/classify", "application/json", body, strlen(body), auth, out, sizeof out) == 200 &&
              strstr(out, "\"probs\""), "classify: %.200s", out);
    snprintf(body, sizeof body, "{\"image\": \"%s\", \"queries\": [\"a cat\", \"a dog\"], \"threshold\": 0, \"max_det\": 3}", png_b64);
    CHECK(http("POST", "/v1/detect", "application/json", body, strlen(body), auth, out, sizeof out) == 200 &&
              strstr(out, "\"detections\":[{\"query\":") && strstr(out, "\"bbox\""), "detect: %.300s", out);
    const char *gq = "{\"prompt\": \"a cat\", \"steps\": 3, \"seed\": 1}";
    CHECK(http("POST", "/v1/generate", "application/json", gq, strlen(gq), auth, out, sizeof out) == 200 &&
              !memcmp(out, "\x89PNG", 4), "generate returns a PNG");
    const char *gbad = "{\"prompt\": \"\"}";
    CHECK(http("POST", "/v1/generate", "application/json", gbad, strlen(gbad), auth, out, sizeof out) == 400, "empty prompt");
    // errors
    CHECK(http("POST", "/v1/embed", "application/json", "{\"text\": ", 9, auth, out, sizeof out) == 400 && strstr(out, "JSON"), "bad JSON");
    const char *bad = "{\"image\": \"iVBORw0KGgoAAAA\"}";
    CHECK(http("POST", "/v1/embed", "application/json", bad, strlen(bad), auth, out, sizeof out) == 400, "corrupt image: %s", out);
    CHECK(http("POST", "/v1/embed", "image/png", png, pn / 2, auth, out, sizeof out) == 400, "truncated png");
    CHECK(http("POST", "/v1/embed", "text/plain", "hi", 2, auth, out, sizeof out) == 415, "415");
    const char *nol = "{\"image\": \"AAAA\", \"labels\": []}";
    CHECK(http("POST", "/v1/classify", "application/json", nol, strlen(nol), auth, out, sizeof out) == 400, "no labels");
    memset(body, 'a', 100000);
    CHECK(http("POST", "/v1/embed", "application/json", body, 100000, auth, out, sizeof out) == 413, "413");
    // a slow client trickles its request while 8 concurrent ones succeed (batched together)
    int slow = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(!connect(slow, (struct sockaddr *)&a, sizeof a) && write(slow, "POST /v1/em", 11) == 11, "slow client");
    pthread_t th[8];
    int codes[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, client, &codes[i]);
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK(codes[i] == 200, "concurrent %d: %d", i, codes[i]);
    }
    close(slow);
    CHECK(http("GET", "/metrics", NULL, "", 0, NULL, out, sizeof out) == 200 &&
              strstr(out, "vlm_requests_total{route=\"/v1/classify\",status=\"2xx\"} 9") &&
              strstr(out, "status=\"413\"} 1") && strstr(out, "vlm_batch_size_bucket") && strstr(out, "vlm_queue_depth 0"),
          "metrics: %.1500s", out);
    char *mb = strstr(out, "vlm_batch_size_bucket{le=\"1\"} ");
    long long singles = mb ? atoll(mb + 30) : -1, all = -1;
    char *mc = strstr(out, "vlm_batch_size_count ");
    if (mc) all = atoll(mc + 21);
    CHECK(singles >= 0 && all > singles, "some batches held more than one request (%lld of %lld were single)", singles, all);
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: exit 0");
    test_overload();
    free(png), free(png_b64);
    if (!tu_failures && system("rm -rf " TMP) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_serve");
}
