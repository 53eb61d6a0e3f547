// `vlm serve`'s request parsing (cli/serve_req.h).
#include "cli/serve_req.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/transform.h"

void job_free(job *j) {
    if (!j) return;
    free(j->rgb), free(j->text), free(j->out), free(j->probs), free(j->det), free(j->png);
    vlm_image_free(&j->img);
    for (int i = 0; i < j->n_labels; i++) free(j->labels[i]);
    for (int i = 0; i < j->n_tmpl; i++) free(j->tmpl[i]);
    free(j->labels), free(j->tmpl), free(j);
}

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' || c == '-' ? 62 : c == '/' || c == '_' ? 63 : -1;
}

uint8_t *serve_b64_decode(const char *s, size_t *n) {
    const char *comma = strncmp(s, "data:", 5) ? NULL : strchr(s, ',');
    if (comma) s = comma + 1;
    size_t L = strlen(s), o = 0;
    uint8_t *out = malloc(L / 4 * 3 + 4);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; out && i < L; i++) {
        if (s[i] == '=' || s[i] == '\n' || s[i] == '\r') continue;
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return free(out), NULL;
        acc = acc << 6 | (uint32_t)v, bits += 6;
        if (bits >= 8) bits -= 8, out[o++] = (uint8_t)(acc >> bits);
    }
    *n = o;
    return out;
}

// Decodes and eval-transforms an image into j->rgb; 0 or an HTTP status (message in j->err).
static int prepare_image(int S, job *j, const void *data, size_t n) {
    vlm_image img;
    vlm_image_init(&img);
    vlm_decode_opts dec;
    vlm_decode_opts_default(&dec);
    vlm_transform t;
    vlm_transform_init(&t, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    vlm_error err = {0};
    j->rgb = malloc((size_t)S * S * 3);
    int code = !j->rgb ? 500 : vlm_image_decode(&img, data, n, "image", &dec, &err) ? 400
               : vlm_transform_eval_u8(&t, &img, j->rgb, &sc, &err) ? 400 : 0;
    if (code) snprintf(j->err, sizeof j->err, "%s", err.msg[0] ? err.msg : "out of memory");
    vlm_image_free(&img);
    vlm_transform_scratch_free(&sc);
    return code;
}

static char **str_array(json_t *a, int *n) {
    *n = 0;
    if (!json_is_array(a) || json_array_size(a) > 1000) return NULL;
    char **v = calloc(json_array_size(a) + 1, sizeof *v);
    for (size_t i = 0; v && i < json_array_size(a); i++) {
        const char *x = json_string_value(json_array_get(a, i));
        if (!x || !*x) {
            for (int k = 0; k < *n; k++) free(v[k]);
            free(v);
            *n = -1;
            return NULL;
        }
        v[(*n)++] = strdup(x);
    }
    return v;
}

// /v1/detect and /v1/generate bodies (JSON object root); 0 or an HTTP status.
static int parse_other(int route, json_t *root, job *j) {
    if (route == R_GENERATE) {
        const char *p = json_string_value(json_object_get(root, "prompt"));
        json_t *st = json_object_get(root, "steps"), *g = json_object_get(root, "guidance"), *sd = json_object_get(root, "seed");
        j->kind = 4, j->steps = st ? (int)json_integer_value(st) : 50;
        j->guidance = g ? (float)json_number_value(g) : 3.0f, j->seed = sd ? (uint64_t)json_integer_value(sd) : 0;
        if (!p || !*p) return snprintf(j->err, sizeof j->err, "prompt: a non-empty string expected"), 400;
        if (j->steps < 1 || j->steps > 1000 || !(j->guidance >= 0 && j->guidance <= 100))
            return snprintf(j->err, sizeof j->err, "steps 1..1000 and guidance 0..100 expected"), 400;
        return (j->text = strdup(p)) ? 0 : 500;
    }
    json_t *th = json_object_get(root, "threshold"), *md = json_object_get(root, "max_det");
    j->kind = 3, j->threshold = th ? json_number_value(th) : 0.1, j->max_det = md ? (int)json_integer_value(md) : 20;
    j->labels = str_array(json_object_get(root, "queries"), &j->n_labels);
    if (j->n_labels < 1) return j->n_labels = 0, snprintf(j->err, sizeof j->err, "queries: 1 to 1000 non-empty strings expected"), 400;
    if (j->max_det < 1 || j->max_det > 1000 || !(j->threshold >= 0 && j->threshold <= 1))
        return snprintf(j->err, sizeof j->err, "max_det 1..1000 and threshold 0..1 expected"), 400;
    const char *b64 = json_string_value(json_object_get(root, "image"));
    size_t n = 0;
    uint8_t *bytes = b64 ? serve_b64_decode(b64, &n) : NULL;
    if (!bytes) return snprintf(j->err, sizeof j->err, "image: base64 expected"), 400;
    vlm_decode_opts dec;
    vlm_decode_opts_default(&dec);
    vlm_error err = {0};
    int code = vlm_image_decode(&j->img, bytes, n, "image", &dec, &err) ? 400 : 0;
    if (code) snprintf(j->err, sizeof j->err, "%s", err.msg);
    free(bytes);
    return code;
}

int serve_parse_job(int S, int E, int route, const char *ctype, const char *body, size_t nbody, job *j) {
    const int classify = route == R_CLASSIFY;
    vlm_image_init(&j->img);
    j->out = malloc(sizeof(float) * (size_t)E);
    if (!j->out) return 500;
    if (ctype && !strncmp(ctype, "image/", 6) && route == R_EMBED) {
        j->kind = 0;
        return prepare_image(S, j, body, nbody);
    }
    if (!ctype || strncmp(ctype, "application/json", 16))
        return snprintf(j->err, sizeof j->err, "Content-Type must be application/json%s", route == R_EMBED ? " or image/*" : ""), 415;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", nbody, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return snprintf(j->err, sizeof j->err, "bad JSON: %s", je.text), 400;
    }
    const char *text = json_string_value(json_object_get(root, "text")), *b64 = json_string_value(json_object_get(root, "image"));
    int code = 0;
    if (route == R_DETECT || route == R_GENERATE) {
        code = parse_other(route, root, j);
        json_decref(root);
        return code;
    }
    if (classify) {
        j->kind = 2;
        j->labels = str_array(json_object_get(root, "labels"), &j->n_labels);
        j->tmpl = str_array(json_object_get(root, "templates"), &j->n_tmpl);
        if (j->n_tmpl < 0) j->n_tmpl = 0, code = 400, snprintf(j->err, sizeof j->err, "templates: non-empty strings expected");
        if (j->n_labels < 1) j->n_labels = 0, code = 400, snprintf(j->err, sizeof j->err, "labels: 1 to 1000 non-empty strings expected");
        if (!code && !(j->probs = malloc(sizeof(float) * (size_t)j->n_labels))) code = 500;
    } else if (text) {
        j->kind = 1;
        if (!(j->text = strdup(text))) code = 500;
    } else
        j->kind = 0;
    if (!code && j->kind != 1) {
        size_t n = 0;
        uint8_t *bytes = b64 ? serve_b64_decode(b64, &n) : NULL;
        if (!bytes) code = 400, snprintf(j->err, sizeof j->err, "%s", b64 ? "image: invalid base64" : "give \"text\" or \"image\" (base64)");
        else code = prepare_image(S, j, bytes, n);
        free(bytes);
    }
    json_decref(root);
    return code;
}

