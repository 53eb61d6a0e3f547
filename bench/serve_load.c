// Load client for bench/serve.sh: N threads POST the same request for T
// seconds on loopback; prints one JSON line: requests/s, p50/p99 latency ms, errors.
// usage: serve_load PORT CONCURRENCY SECONDS PATH BODY_FILE CONTENT_TYPE [TOKEN]
#define _GNU_SOURCE // strcasestr
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, secs;
static const char *path, *ctype, *token;
static char *body;
static size_t body_n;
static double t_end;

typedef struct {
    double *lat;
    long n, cap, errors;
} stats;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) return close(fd), -1;
    return fd;
}

// One request on a kept-alive connection (*fd reopened when the server closed it); the HTTP status or -1.
static int one(int *fd) {
    if (*fd < 0 && (*fd = dial()) < 0) return -1;
    char head[512];
    int h = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n%s%s%s"
                     "Content-Length: %zu\r\n\r\n", path, ctype, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", body_n);
    if (write(*fd, head, (size_t)h) != h || write(*fd, body, body_n) != (ssize_t)body_n) return close(*fd), *fd = -1, -1;
    static __thread char buf[1 << 16];
    size_t got = 0;
    char *end = NULL;
    while (!end) { // headers
        ssize_t r = read(*fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) return close(*fd), *fd = -1, -1;
        got += (size_t)r;
        buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    int st = -1;
    sscanf(buf, "HTTP/1.%*d %d", &st);
    char *cl = strcasestr(buf, "Content-Length:");
    size_t len = cl ? (size_t)atol(cl + 15) : 0, have = got - (size_t)(end + 4 - buf);
    while (have < len) { // body
        ssize_t r = read(*fd, buf, sizeof buf < len - have ? sizeof buf : len - have);
        if (r <= 0) return close(*fd), *fd = -1, -1;
        have += (size_t)r;
    }
    if (strcasestr(buf, "Connection: close")) close(*fd), *fd = -1;
    return st;
}

static void *run(void *arg) {
    stats *s = arg;
    int fd = -1;
    while (now() < t_end) {
        double t0 = now();
        int st = one(&fd);
        if (st != 200) s->errors++;
        if (s->n == s->cap) s->cap = s->cap ? 2 * s->cap : 1024, s->lat = realloc(s->lat, sizeof(double) * (size_t)s->cap);
        s->lat[s->n++] = now() - t0;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 7) return fprintf(stderr, "usage: serve_load PORT CONCURRENCY SECONDS PATH BODY_FILE CONTENT_TYPE [TOKEN]\n"), 2;
    port = atoi(argv[1]);
    int conc = atoi(argv[2]);
    secs = atoi(argv[3]);
    path = argv[4], ctype = argv[6], token = argc > 7 ? argv[7] : NULL;
    FILE *f = fopen(argv[5], "rb");
    if (!f) return perror(argv[5]), 1;
    fseek(f, 0, SEEK_END);
    body_n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    body = malloc(body_n);
    if (fread(body, 1, body_n, f) != body_n) return 1;
    fclose(f);
    stats *s = calloc((size_t)conc, sizeof *s);
    pthread_t *th = malloc(sizeof(pthread_t) * (size_t)conc);
    double t0 = now();
    t_end = t0 + secs;
    for (int i = 0; i < conc; i++) pthread_create(&th[i], NULL, run, &s[i]);
    long n = 0, errors = 0;
    for (int i = 0; i < conc; i++) pthread_join(th[i], NULL), n += s[i].n, errors += s[i].errors;
    double el = now() - t0, *all = malloc(sizeof(double) * (size_t)(n ? n : 1));
    long k = 0;
    for (int i = 0; i < conc; i++) memcpy(all + k, s[i].lat, sizeof(double) * (size_t)s[i].n), k += s[i].n;
    qsort(all, (size_t)n, sizeof(double), cmp);
    printf("{\"concurrency\": %d, \"seconds\": %.1f, \"requests\": %ld, \"requests_per_s\": %.1f, \"p50_ms\": %.2f, "
           "\"p99_ms\": %.2f, \"errors\": %ld}\n", conc, el, n, (double)n / el, n ? 1e3 * all[n / 2] : 0,
           n ? 1e3 * all[(long)(0.99 * (double)(n - 1))] : 0, errors);
    return 0;
}
