// `vlm serve`: an HTTP/1.1 JSON API on libmicrohttpd over one model. Request
// threads parse and decode; one worker thread owns the model and embeds the
// images of concurrent requests together (dynamic batching: up to
// --max-batch, waiting at most --max-wait-ms); the queue is bounded (503),
// bodies are limited (413), every request has a deadline (408); SIGTERM
// drains what is in flight and exits 0.
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "api/model.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/serve_req.h"
#include "core/clock.h"
#include "data/image.h"
#include "data/transform.h"
#include "fusion/detection.h"
#include "fusion/generator.h"
#include "train/gen_data.h"

static const char *usage =
    "usage: vlm serve --checkpoint C [--host 127.0.0.1] [--port 8080] [options]\n"
    "Serves a CLIP over HTTP/1.1 (JSON):\n"
    "  POST /v1/embed      {\"text\": \"...\"} or {\"image\": BASE64} or the image bytes (Content-Type image/*)\n"
    "                      -> {\"embedding\": [...], \"dim\": E}\n"
    "  POST /v1/classify   {\"image\": BASE64, \"labels\": [...], \"templates\": [...] (optional, \"{}\")}\n"
    "                      -> {\"labels\": [...], \"probs\": [...]}\n"
    "  POST /v1/detect     {\"image\": BASE64, \"queries\": [...], \"threshold\": 0.1, \"max_det\": 20} (with --detector)\n"
    "                      -> {\"detections\": [{\"query\", \"score\", \"bbox\": [x, y, w, h]}]}\n"
    "  POST /v1/generate   {\"prompt\": \"...\", \"steps\": 50, \"guidance\": 3, \"seed\": 0} (with --generator) -> image/png\n"
    "  GET /healthz, GET /metrics (Prometheus text), GET / (a page: drop an image, type labels)\n"
    "  --detector D  --generator G   models for /v1/detect and /v1/generate\n"
    "  --tokenizer FILE        the weights' BPE merges if they lack one\n"
    "  --token T               require Authorization: Bearer T (401 otherwise)\n"
    "  --max-batch N (32)  --max-wait-ms MS (5)   dynamic batching of concurrent images\n"
    "  --queue N (256)         queued requests before 503 (Retry-After: 1)\n"
    "  --max-body BYTES (16 MiB) larger bodies get 413   --timeout S (30) a request's deadline (408)\n"
    "Binds 127.0.0.1 unless --host says otherwise. SIGTERM/SIGINT: stop accepting, finish in-flight, exit 0.\n";

typedef struct {
    vlm_model *m;
    vlm_owl *det;          // --detector (NULL: no /v1/detect)
    vlm_gen *gen;          // --generator (NULL: no /v1/generate)
    int S, E, max_batch, max_wait_ms, queue_cap;
    pthread_mutex_t mu;
    pthread_cond_t more, finished;
    job *head, *tail;
    int depth, stop;
    // metrics
    long long req[8][6]; // route x status class (2xx 4xx 5xx, 401 413 503)
    long long lat[12], batch_hist[7];
    double lat_sum;
    long long in_flight;
} server;

static const char *routes[8] = {"/", "/healthz", "/metrics", "/v1/embed", "/v1/classify", "/v1/detect", "/v1/generate", "other"};
static const double lat_bounds[11] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static const int batch_bounds[6] = {1, 2, 4, 8, 16, 32};


static vlm_status run_detect(server *s, job *j, vlm_error *err) {
    const int Q = j->n_labels, E = s->det->det.cfg.embed_dim;
    float *qe = malloc(sizeof(float) * (size_t)Q * E);
    j->det = malloc(sizeof(vlm_det_box) * (size_t)j->max_det);
    vlm_status st = qe && j->det ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (!st) st = vlm_owl_queries(s->det, (const char *const *)j->labels, Q, NULL, 0, qe, err);
    if (!st) st = vlm_owl_detect(s->det, &j->img, qe, Q, (float)j->threshold, j->max_det, j->det, &j->n_det, err);
    free(qe);
    return st;
}

static vlm_status run_generate(server *s, job *j, vlm_error *err) {
    const int E = s->gen->dit.cfg.cond_dim, S = s->gen->dit.cfg.image_size, C = s->gen->dit.cfg.in_channels;
    float *emb = malloc(sizeof(float) * (size_t)E), *x = malloc(sizeof(float) * (size_t)C * S * S);
    uint8_t *rgb = malloc((size_t)S * S * 3);
    vlm_status st = emb && x && rgb ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    vlm_gen_sample_opts so;
    vlm_gen_sample_opts_default(&so);
    so.steps = j->steps, so.guidance = j->guidance, so.seed = j->seed;
    if (!st) st = vlm_gen_embed_texts(s->gen, (const char *const *)&j->text, 1, emb, err);
    if (!st) st = vlm_gen_sample(s->gen, emb, 1, &so, x, err);
    if (!st) vlm_gen_to_rgb(x, 1, C, S, rgb), st = vlm_image_encode_png(rgb, S, S, 3, &j->png, &j->png_n, err);
    free(emb), free(x), free(rgb);
    return st;
}

// Runs the batch's image embeddings together, then each job's text part.
static void run_batch(server *s, job **b, int n) {
    uint8_t *rgb = malloc((size_t)n * s->S * s->S * 3);
    float *e = malloc(sizeof(float) * (size_t)n * s->E);
    int ni = 0;
    job *img[256];
    for (int i = 0; i < n; i++)
        if ((b[i]->kind == 0 || b[i]->kind == 2) && rgb) memcpy(rgb + (size_t)ni * s->S * s->S * 3, b[i]->rgb, (size_t)s->S * s->S * 3), img[ni++] = b[i];
    vlm_error err = {0};
    if (!rgb || !e || (ni && vlm_model_embed_rgb(s->m, rgb, ni, s->S, s->S, e, &err)))
        for (int i = 0; i < ni; i++) img[i]->status = 500, snprintf(img[i]->err, sizeof img[i]->err, "%s", err.msg);
    for (int i = 0; i < ni && !img[0]->status; i++) memcpy(img[i]->out, e + (size_t)i * s->E, sizeof(float) * s->E);
    for (int i = 0; i < n; i++) {
        job *j = b[i];
        if (j->status) continue;
        vlm_status st = VLM_OK;
        if (j->kind == 1) st = vlm_model_embed_texts(s->m, (const char *const *)&j->text, 1, j->out, &err);
        else if (j->kind == 2)
            st = vlm_model_classify(s->m, j->out, (const char *const *)j->labels, j->n_labels,
                                    j->n_tmpl ? (const char *const *)j->tmpl : NULL, j->n_tmpl, j->probs, &err);
        else if (j->kind == 3) st = run_detect(s, j, &err);
        else if (j->kind == 4) st = run_generate(s, j, &err);
        if (st) j->status = st == VLM_ERR_ARG ? 400 : 500, snprintf(j->err, sizeof j->err, "%s", err.msg);
    }
    free(rgb), free(e);
}

static void *worker(void *arg) {
    server *s = arg;
    job *b[256];
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop) pthread_cond_wait(&s->more, &s->mu);
        if (!s->head && s->stop) break;
        // wait up to max_wait for the batch to fill
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)s->max_wait_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L, until.tv_nsec %= 1000000000L;
        while (s->depth < s->max_batch && !s->stop && pthread_cond_timedwait(&s->more, &s->mu, &until) == 0) {}
        int n = 0;
        while (s->head && n < s->max_batch) b[n++] = s->head, s->head = s->head->next, s->depth--;
        if (!s->head) s->tail = NULL;
        int hb = 0;
        while (hb < 5 && n > batch_bounds[hb]) hb++;
        s->batch_hist[hb]++;
        pthread_mutex_unlock(&s->mu);
        run_batch(s, b, n);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < n; i++) b[i]->done = 1;
        pthread_cond_broadcast(&s->finished);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// Queues j and waits for it (deadline: timeout_s). 0 ok; else the HTTP status.
static int submit(server *s, job *j, double timeout_s) {
    pthread_mutex_lock(&s->mu);
    if (s->depth >= s->queue_cap || s->stop) {
        pthread_mutex_unlock(&s->mu);
        return 503;
    }
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j, s->depth++;
    pthread_cond_signal(&s->more);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout_s;
    int rc = 0;
    while (!j->done && rc == 0) rc = pthread_cond_timedwait(&s->finished, &s->mu, &until);
    int timed_out = !j->done;
    while (!j->done) pthread_cond_wait(&s->finished, &s->mu); // the worker still holds it: wait, then answer 408
    pthread_mutex_unlock(&s->mu);
    return timed_out ? 408 : j->status;
}

// ---------------------------------------------------------------- requests

typedef struct {
    char *body;
    size_t n, cap;
    int too_big;
    double t0;
} conn_state;

typedef struct {
    server *s;
    const char *token;
    size_t max_body;
    double timeout;
} app;

static enum MHD_Result reply(struct MHD_Connection *c, int code, const char *type, const char *body, size_t n) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (code == 503) MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_err(struct MHD_Connection *c, int code, const char *msg) {
    json_t *j = json_pack("{s:s, s:i}", "error", msg, "status", code);
    char *t = json_dumps(j, JSON_COMPACT);
    enum MHD_Result r = reply(c, code, "application/json", t ? t : "{}", t ? strlen(t) : 2);
    free(t);
    json_decref(j);
    return r;
}

// The reply: floats printed directly (a JSON value per float would cost more than the model).
static enum MHD_Result answer_job(struct MHD_Connection *c, server *s, const job *j) {
    if (j->kind == 4) return reply(c, 200, "image/png", (const char *)j->png, j->png_n);
    if (j->kind == 3) {
        json_t *a = json_array();
        for (int i = 0; i < j->n_det; i++)
            json_array_append_new(a, json_pack("{s:s, s:f, s:[f, f, f, f]}", "query", j->labels[j->det[i].query], "score",
                                               (double)j->det[i].score, "bbox", (double)j->det[i].x, (double)j->det[i].y,
                                               (double)j->det[i].w, (double)j->det[i].h));
        json_t *r = json_pack("{s:o}", "detections", a);
        char *t = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(6));
        json_decref(r);
        enum MHD_Result ret = reply(c, 200, "application/json", t ? t : "{}", t ? strlen(t) : 2);
        free(t);
        return ret;
    }
    const int n = j->kind == 2 ? j->n_labels : s->E;
    size_t cap = 64 + (size_t)n * 20, o = 0;
    for (int i = 0; j->kind == 2 && i < n; i++) cap += 2 * strlen(j->labels[i]) + 8;
    char *t = malloc(cap);
    if (!t) return MHD_NO;
    if (j->kind == 2) {
        json_t *l = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(l, json_string(j->labels[i]));
        char *ls = json_dumps(l, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(l);
        o += (size_t)snprintf(t + o, cap - o, "{\"labels\":%s,\"probs\":[", ls ? ls : "[]");
        free(ls);
    } else
        o += (size_t)snprintf(t + o, cap - o, "{\"dim\":%d,\"embedding\":[", s->E);
    const float *v = j->kind == 2 ? j->probs : j->out;
    for (int i = 0; i < n && o < cap; i++) o += (size_t)snprintf(t + o, cap - o, "%s%.7g", i ? "," : "", (double)v[i]);
    if (o < cap) o += (size_t)snprintf(t + o, cap - o, "]}");
    enum MHD_Result ret = reply(c, 200, "application/json", t, o < cap ? o : cap - 1);
    free(t);
    return ret;
}

static const char *page =
    "<!doctype html><html><head><meta charset=utf-8><title>vlm</title><style>"
    "body{font:15px sans-serif;max-width:720px;margin:2em auto}#drop{border:2px dashed #888;padding:2em;text-align:center}"
    "img{max-width:256px;margin:1em 0}td{padding:2px 8px}.bar{background:#4a8;height:12px}</style></head><body>"
    "<h2>vlm: zero-shot classification</h2><div id=drop>drop an image here, or <input type=file id=file accept='image/*'></div>"
    "<p><label>labels (comma-separated) <input id=labels size=50 value='a cat, a dog, a car'></label>"
    " <button id=go>classify</button></p><img id=preview><table id=out></table><pre id=err></pre><script>"
    "let b64=null;function load(f){const r=new FileReader();r.onload=()=>{preview.src=r.result;b64=r.result;};r.readAsDataURL(f);}"
    "file.onchange=e=>load(e.target.files[0]);drop.ondragover=e=>e.preventDefault();"
    "drop.ondrop=e=>{e.preventDefault();load(e.dataTransfer.files[0]);};"
    "go.onclick=async()=>{err.textContent='';out.innerHTML='';if(!b64){err.textContent='no image';return;}"
    "const labels=document.getElementById('labels').value.split(',').map(s=>s.trim()).filter(s=>s);"
    "const r=await fetch('/v1/classify',{method:'POST',headers:{'Content-Type':'application/json'},"
    "body:JSON.stringify({image:b64,labels})});const j=await r.json();if(!r.ok){err.textContent=j.error;return;}"
    "j.labels.map((l,i)=>[l,j.probs[i]]).sort((a,b)=>b[1]-a[1]).forEach(([l,p])=>{out.insertRow().innerHTML="
    "`<td>${l}</td><td>${p.toFixed(4)}</td><td><div class=bar style='width:${Math.round(300*p)}px'></div></td>`;});};"
    // ?image=DATA_URL&labels=a,b fills the form and classifies on load (headless tests, shareable links)
    "const q=new URLSearchParams(location.search);if(q.get('labels'))document.getElementById('labels').value=q.get('labels');"
    "if(q.get('image')){b64=q.get('image');preview.src=b64;go.onclick();}"
    "</script></body></html>";

static void metrics_text(server *s, char *buf, size_t cap) {
    static const char *cls[6] = {"2xx", "4xx", "5xx", "401", "413", "503"};
    size_t o = (size_t)snprintf(buf, cap, "# TYPE vlm_requests_total counter\n");
    pthread_mutex_lock(&s->mu);
    for (int r = 0; r < 8; r++)
        for (int k = 0; k < 6; k++)
            if (s->req[r][k] && o < cap)
                o += (size_t)snprintf(buf + o, cap - o, "vlm_requests_total{route=\"%s\",status=\"%s\"} %lld\n", routes[r], cls[k], s->req[r][k]);
    long long cum = 0, total = 0;
    for (int i = 0; i < 12; i++) total += s->lat[i];
    if (o < cap) o += (size_t)snprintf(buf + o, cap - o, "# TYPE vlm_request_seconds histogram\n");
    for (int i = 0; i < 11 && o < cap; i++)
        cum += s->lat[i], o += (size_t)snprintf(buf + o, cap - o, "vlm_request_seconds_bucket{le=\"%g\"} %lld\n", lat_bounds[i], cum);
    if (o < cap)
        o += (size_t)snprintf(buf + o, cap - o, "vlm_request_seconds_bucket{le=\"+Inf\"} %lld\nvlm_request_seconds_sum %.6f\n"
                                                "vlm_request_seconds_count %lld\n# TYPE vlm_batch_size histogram\n", total, s->lat_sum, total);
    cum = 0;
    long long nb = 0;
    for (int i = 0; i < 7; i++) nb += s->batch_hist[i];
    for (int i = 0; i < 6 && o < cap; i++)
        cum += s->batch_hist[i], o += (size_t)snprintf(buf + o, cap - o, "vlm_batch_size_bucket{le=\"%d\"} %lld\n", batch_bounds[i], cum);
    if (o < cap)
        snprintf(buf + o, cap - o, "vlm_batch_size_bucket{le=\"+Inf\"} %lld\nvlm_batch_size_count %lld\n"
                                   "# TYPE vlm_queue_depth gauge\nvlm_queue_depth %d\n# TYPE vlm_in_flight gauge\nvlm_in_flight %lld\n",
                 nb, nb, s->depth, s->in_flight);
    pthread_mutex_unlock(&s->mu);
}

static void count(server *s, int route, int code, double secs) {
    int k = code == 401 ? 3 : code == 413 ? 4 : code == 503 ? 5 : code >= 500 ? 2 : code >= 400 ? 1 : 0;
    int b = 0;
    while (b < 11 && secs > lat_bounds[b]) b++;
    pthread_mutex_lock(&s->mu);
    s->req[route][k]++, s->lat[b]++, s->lat_sum += secs;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result counted(app *a, int route, conn_state *cs, int code, enum MHD_Result r) {
    count(a->s, route, code, vlm_now() - cs->t0);
    return r;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    app *a = cls;
    conn_state *cs = *con_cls;
    if (!cs) { // headers are in: start the body
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        cs->t0 = vlm_now();
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) { // body bytes
        if (cs->n + *upload_size > a->max_body) cs->too_big = 1;
        else {
            if (cs->n + *upload_size > cs->cap) {
                size_t nc = (cs->n + *upload_size) * 2;
                char *nb = realloc(cs->body, nc + 1);
                if (!nb) return MHD_NO;
                cs->body = nb, cs->cap = nc;
            }
            memcpy(cs->body + cs->n, upload, *upload_size);
            cs->n += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    int route = R_OTHER;
    for (int r = 0; r < R_OTHER; r++)
        if (!strcmp(url, routes[r])) route = r;
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (a->token && route >= R_EMBED && route < R_OTHER) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        char want[300];
        snprintf(want, sizeof want, "Bearer %s", a->token);
        if (!auth || strcmp(auth, want)) return counted(a, route, cs, 401, reply_err(c, 401, "missing or wrong bearer token"));
    }
    if (route == R_OTHER) return counted(a, route, cs, 404, reply_err(c, 404, "no such route"));
    if ((route == R_DETECT && !a->s->det) || (route == R_GENERATE && !a->s->gen))
        return counted(a, route, cs, 404, reply_err(c, 404, route == R_DETECT ? "start vlm serve with --detector D"
                                                                               : "start vlm serve with --generator G"));
    if (route <= 2 && !get) return counted(a, route, cs, 405, reply_err(c, 405, "GET only"));
    if (route >= 3 && !post) return counted(a, route, cs, 405, reply_err(c, 405, "POST only"));
    if (route == 0) return counted(a, route, cs, 200, reply(c, 200, "text/html; charset=utf-8", page, strlen(page)));
    if (route == 1) return counted(a, route, cs, 200, reply(c, 200, "application/json", "{\"status\": \"ok\"}", 16));
    if (route == 2) {
        char *buf = malloc(1 << 16);
        if (!buf) return MHD_NO;
        metrics_text(a->s, buf, 1 << 16);
        enum MHD_Result r = reply(c, 200, "text/plain; version=0.0.4", buf, strlen(buf));
        free(buf);
        return counted(a, route, cs, 200, r);
    }
    if (cs->too_big) return counted(a, route, cs, 413, reply_err(c, 413, "request body too large"));
    job *j = calloc(1, sizeof *j);
    if (!j) return MHD_NO;
    const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    int code = serve_parse_job(a->s->S, a->s->E, route, ctype, cs->body, cs->n, j);
    pthread_mutex_lock(&a->s->mu);
    a->s->in_flight++;
    pthread_mutex_unlock(&a->s->mu);
    if (!code) code = submit(a->s, j, a->timeout);
    pthread_mutex_lock(&a->s->mu);
    a->s->in_flight--;
    pthread_mutex_unlock(&a->s->mu);
    enum MHD_Result r = !code ? answer_job(c, a->s, j)
                        : reply_err(c, code, code == 503 ? "queue full" : code == 408 ? "timed out" : j->err[0] ? j->err : "error");
    job_free(j);
    return counted(a, route, cs, code ? code : 200, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (cs) free(cs->body), free(cs);
    *con_cls = NULL;
}

static volatile sig_atomic_t stop_now;
static void on_signal(int sig) {
    (void)sig;
    stop_now = 1;
}

int cmd_serve(int argc, char **argv) {
    const char *ckpt = NULL, *host = "127.0.0.1", *tokenizer = NULL, *token = NULL, *detector = NULL, *generator = NULL;
    long long port = 8080, max_batch = 32, max_wait = 5, queue = 256, max_body = 16 << 20;
    double timeout = 30;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"checkpoint", CLI_STR, &ckpt, 0, 0, NULL, NULL}, {"clip", CLI_STR, &ckpt, 0, 0, NULL, NULL},
        {"host", CLI_STR, &host, 0, 0, NULL, NULL}, {"port", CLI_INT, &port, 0, 65535, NULL, NULL},
        {"tokenizer", CLI_STR, &tokenizer, 0, 0, NULL, NULL}, {"token", CLI_STR, &token, 0, 0, NULL, NULL},
        {"max-batch", CLI_INT, &max_batch, 1, 256, NULL, NULL}, {"max-wait-ms", CLI_INT, &max_wait, 0, 10000, NULL, NULL},
        {"queue", CLI_INT, &queue, 1, 1 << 20, NULL, NULL}, {"max-body", CLI_INT, &max_body, 1024, 1LL << 31, NULL, NULL},
        {"timeout", CLI_FLT, &timeout, 0.01, 3600, NULL, NULL}, {"detector", CLI_STR, &detector, 0, 0, NULL, NULL},
        {"generator", CLI_STR, &generator, 0, 0, NULL, NULL}, CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("serve", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "serve", usage, &err);
    if (!ckpt) return cli_usagef("serve", "--checkpoint is required (see vlm serve --help)");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return cli_usagef("serve", "--host: an IPv4 address, not '%s'", host);
    server s = {.max_batch = (int)max_batch, .max_wait_ms = (int)max_wait, .queue_cap = (int)queue};
    if (vlm_model_open(&s.m, ckpt, tokenizer, &err)) return cli_fail("serve", &err);
    s.S = vlm_model_image_size(s.m), s.E = vlm_model_dim(s.m);
    vlm_owl owl;
    vlm_gen gen;
    memset(&owl, 0, sizeof owl), memset(&gen, 0, sizeof gen);
    if (detector && !vlm_owl_load(&owl, detector, NULL, &err)) s.det = &owl;
    else if (detector) return vlm_model_close(s.m), cli_fail("serve", &err);
    if (generator && !vlm_gen_load(generator, &gen, &err)) s.gen = &gen;
    else if (generator) return vlm_model_close(s.m), s.det ? vlm_owl_free(&owl) : (void)0, cli_fail("serve", &err);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.more, NULL);
    pthread_cond_init(&s.finished, NULL);
    pthread_t w;
    pthread_create(&w, NULL, worker, &s);
    app a = {&s, token, (size_t)max_body, timeout};
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, (uint16_t)port,
                                            NULL, NULL, handle, &a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                                            (unsigned int)ceil(timeout), MHD_OPTION_END);
    int rc = 0;
    if (!d) rc = cli_failf("serve", "cannot listen on %s:%lld (in use?)", host, port);
    else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        fprintf(stderr, "serve: %s on http://%s:%u/ (dim %d, image %d, max batch %d)\n", ckpt, host,
                info ? (unsigned)info->port : (unsigned)port, s.E, s.S, s.max_batch);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        while (!stop_now) usleep(50000);
        fprintf(stderr, "serve: stopping: no new connections, finishing %lld in flight\n", s.in_flight);
        MHD_quiesce_daemon(d);
        for (int i = 0; i < 600 && s.in_flight; i++) usleep(50000);
        MHD_stop_daemon(d);
    }
    pthread_mutex_lock(&s.mu);
    s.stop = 1;
    pthread_cond_broadcast(&s.more);
    pthread_mutex_unlock(&s.mu);
    pthread_join(w, NULL);
    vlm_model_close(s.m);
    if (s.det) vlm_owl_free(&owl);
    if (s.gen) vlm_gen_free(&gen);
    return rc;
}
