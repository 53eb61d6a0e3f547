// Embeddings of a whole dataset: every image (eval transform) and, on
// request, its caption through a CLIP, for retrieval, probes and statistics.
#include "eval/embed.h"
#include <stdlib.h>
#include <string.h>
#include "core/ops.h"
#include "data/loader.h"

vlm_status vlm_clip_encode_dataset(vlm_clip *m, const vlm_dataset *ds, vlm_tokenizer *tok, int batch, int workers,
                              const vlm_decode_opts *dec, float **img_out, float **txt_out, int64_t **idx_out, int64_t *n_out, vlm_error *err) {
    vlm_loader_opts o;
    vlm_loader_opts_eval(&o, m->cfg.vision.image_size, batch, workers);
    o.captions = txt_out != NULL;
    if (dec) o.decode = *dec;
    vlm_loader *L;
    vlm_status st = vlm_loader_open(&L, ds, &o, err);
    if (st) return st;
    int E = m->cfg.embed_dim, S = m->cfg.vision.image_size, ctxlen = m->cfg.text.context_length;
    float *img = malloc(sizeof(float) * (size_t)(ds->n ? ds->n : 1) * E);
    float *txt = txt_out ? malloc(sizeof(float) * (size_t)(ds->n ? ds->n : 1) * E) : NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)batch * ctxlen);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(ds->n ? ds->n : 1));
    vlm_ctx c;
    if (!img || (txt_out && !txt) || !ids || !idx || vlm_ctx_init(&c, 16u << 20, 0, err)) {
        free(img); free(txt); free(ids); free(idx);
        vlm_loader_free(L);
        return VLM_ERR_OOM;
    }
    c.grad_enabled = 0;
    c.training = 0;
    int64_t n = 0;
    vlm_batch b;
    while ((st = vlm_loader_next(L, &b, err)) == VLM_OK && b.n > 0) {
        vlm_ctx_reset(&c);
        int64_t ish[4] = {b.n, 3, S, S};
        vlm_tensor *fi = vlm_op_l2norm(&c, vlm_clip_encode_image(&c, m, vlm_tensor_wrap(&c, VLM_F32, 4, ish, b.images, NULL), NULL));
        vlm_tensor *ft = NULL;
        if (txt_out) {
            if ((st = vlm_tokenizer_encode_batch(tok, b.captions, b.n, ctxlen, ids, err))) break;
            int64_t tsh[2] = {b.n, ctxlen};
            ft = vlm_op_l2norm(&c, vlm_clip_encode_text(&c, m, vlm_tensor_wrap(&c, VLM_I32, 2, tsh, ids, NULL)));
        }
        if (!fi || (txt_out && !ft)) {
            st = c.status;
            if (err) *err = c.err;
            break;
        }
        memcpy(img + n * E, vlm_f32(fi), sizeof(float) * (size_t)b.n * E);
        if (txt_out) memcpy(txt + n * E, vlm_f32(ft), sizeof(float) * (size_t)b.n * E);
        memcpy(idx + n, b.indices, sizeof(int64_t) * (size_t)b.n);
        n += b.n;
    }
    vlm_ctx_free(&c);
    vlm_loader_free(L);
    free(ids);
    if (st) {
        free(img);
        free(txt);
        free(idx);
        return st;
    }
    *idx_out = idx;
    *img_out = img;
    if (txt_out) *txt_out = txt;
    *n_out = n;
    return VLM_OK;
}

