// Zero-shot classifier construction and template/class-name files.
#include "fusion/zeroshot.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"

void vlm_strlist_free(char **list, int n) {
    for (int i = 0; list && i < n; i++) free(list[i]);
    free(list);
}

static vlm_status read_lines(const char *path, char ***out, int *n, int skip_blank, vlm_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char **v = NULL;
    int cnt = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    vlm_status st = VLM_OK;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if ((size_t)len != strlen(line)) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s:%d: NUL byte in line", path, lineno);
            break;
        }
        if (len == 0) {
            if (skip_blank) continue;
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s:%d: empty line", path, lineno);
            break;
        }
        if (cnt == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, sizeof(char *) * (size_t)cap);
            if (!nv) { st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path); break; }
            v = nv;
        }
        v[cnt++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!st && cnt == 0) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: no lines", path);
    if (st) {
        vlm_strlist_free(v, cnt);
        return st;
    }
    *out = v;
    *n = cnt;
    return VLM_OK;
}

vlm_status vlm_lines_load(const char *path, char ***lines, int *n, vlm_error *err) { return read_lines(path, lines, n, 0, err); }

vlm_status vlm_templates_resolve(const char *name_or_file, char ***templates, int *n, int *owned, vlm_error *err) {
    *templates = NULL;
    *n = 0;
    *owned = 0;
    const vlm_template_set *ts = vlm_templates_builtin(name_or_file);
    if (ts) {
        *templates = (char **)ts->t;
        *n = ts->n;
        return VLM_OK;
    }
    FILE *f = fopen(name_or_file, "r");
    if (!f)
        return vlm_errorf(err, VLM_ERR_ARG, "--templates: '%s' is neither a built-in set (%s) nor a readable file",
                          name_or_file, vlm_templates_builtin_names());
    fclose(f);
    vlm_status st = vlm_templates_load(name_or_file, templates, n, err);
    if (!st) *owned = 1;
    return st;
}

vlm_status vlm_templates_load(const char *path, char ***templates, int *n, vlm_error *err) {
    vlm_status st = read_lines(path, templates, n, 1, err);
    if (st) return st;
    for (int i = 0; i < *n; i++)
        if (!strstr((*templates)[i], "{}")) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: template %d \"%s\" has no {} placeholder", path, i + 1, (*templates)[i]);
            vlm_strlist_free(*templates, *n);
            return st;
        }
    return VLM_OK;
}

vlm_status vlm_template_fill(const char *tmpl, const char *name, char *out, size_t cap, vlm_error *err) {
    size_t o = 0, nl = strlen(name);
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            if (o + nl >= cap) return vlm_errorf(err, VLM_ERR_ARG, "template \"%s\" with \"%s\" is too long", tmpl, name);
            memcpy(out + o, name, nl);
            o += nl;
            p += 2;
        } else {
            if (o + 1 >= cap) return vlm_errorf(err, VLM_ERR_ARG, "template \"%s\" is too long", tmpl);
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    return VLM_OK;
}

vlm_status vlm_zeroshot_classifier(vlm_clip *m, vlm_tokenizer *tok, const char *const *classnames, int C,
                                   const char *const *templates, int T, float *W, vlm_error *err) {
    if (C < 1 || T < 1) return vlm_errorf(err, VLM_ERR_ARG, "zero-shot: need classes and templates (%d, %d)", C, T);
    const int E = m->cfg.embed_dim, ctxlen = m->cfg.text.context_length;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * ctxlen);
    char *buf = malloc(4096);
    vlm_ctx c;
    vlm_status st = vlm_ctx_init(&c, 8u << 20, 0, err);
    if (st || !ids || !buf) {
        free(ids);
        free(buf);
        return st ? st : vlm_errorf(err, VLM_ERR_OOM, "zero-shot: out of memory");
    }
    c.grad_enabled = 0;
    c.training = 0;
    for (int k = 0; k < C && !st; k++) {
        for (int t = 0; t < T && !st; t++) {
            int nt;
            if (!(st = vlm_template_fill(templates[t], classnames[k], buf, 4096, err)))
                st = vlm_tokenizer_encode_ctx(tok, buf, strlen(buf), ids + (int64_t)t * ctxlen, ctxlen, 1, &nt, err);
        }
        if (st) break;
        vlm_ctx_reset(&c);
        int64_t sh[2] = {T, ctxlen};
        // [T, E] normalised template embeddings -> mean -> renormalise
        vlm_tensor *f = vlm_op_l2norm(&c, vlm_clip_encode_text(&c, m, vlm_tensor_wrap(&c, VLM_I32, 2, sh, ids, NULL)));
        vlm_tensor *mean = vlm_op_l2norm(&c, vlm_op_mean_dim(&c, f, 0));
        if (!mean) {
            st = c.status;
            if (err) *err = c.err;
            break;
        }
        memcpy(W + (int64_t)k * E, vlm_f32(mean), sizeof(float) * (size_t)E);
    }
    vlm_ctx_free(&c);
    free(ids);
    free(buf);
    return st;
}
