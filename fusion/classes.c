// Class embeddings from names: templates filled with each class name, encoded
// by the CLIP text tower and averaged (the zero-shot head and OWL queries).
#include "fusion/classes.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"

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

vlm_status vlm_clip_encode_texts(vlm_clip *m, vlm_tokenizer *tok, const char *const *texts, int n, float *out,
                                 vlm_error *err) {
    const int ctxlen = m->cfg.text.context_length, E = m->cfg.embed_dim, chunk = 256;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)chunk * ctxlen);
    vlm_ctx c;
    if (!ids) return vlm_errorf(err, VLM_ERR_OOM, "encode texts: out of memory");
    vlm_status st = vlm_ctx_init(&c, 16u << 20, 0, err);
    if (st) {
        free(ids);
        return st;
    }
    c.grad_enabled = 0;
    c.training = 0;
    for (int i0 = 0; i0 < n && !st; i0 += chunk) {
        int b = n - i0 < chunk ? n - i0 : chunk;
        if ((st = vlm_tokenizer_encode_batch(tok, texts + i0, b, ctxlen, ids, err))) break;
        vlm_ctx_reset(&c);
        int64_t sh[2] = {b, ctxlen};
        vlm_tensor *f = vlm_op_l2norm(&c, vlm_clip_encode_text(&c, m, vlm_tensor_wrap(&c, VLM_I32, 2, sh, ids, NULL)));
        if (!f) {
            st = c.status;
            if (err) *err = c.err;
            break;
        }
        memcpy(out + (int64_t)i0 * E, vlm_f32(f), sizeof(float) * (size_t)b * E); // [b, E]
    }
    vlm_ctx_free(&c);
    free(ids);
    return st;
}
