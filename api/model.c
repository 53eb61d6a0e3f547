// The front door for a trained CLIP (see model.h).
#include "api/model.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "data/image.h"
#include "data/transform.h"
#include "fusion/checkpoint.h"
#include "fusion/classes.h"
#include "fusion/import.h"

struct vlm_model {
    vlm_clip clip;
    int have_ctx;
    vlm_tokenizer tok;
    int has_tok;
    vlm_ctx c;
    vlm_transform t;
    vlm_transform_scratch sc;
    vlm_image img;
    vlm_decode_opts dec;
    float *x; // [batch, 3, S, S] scratch
};

enum { BATCH = 32 };

vlm_status vlm_model_open(vlm_model **out, const char *path, const char *tokenizer, vlm_error *err) {
    *out = NULL;
    vlm_model *m = calloc(1, sizeof *m);
    if (!m) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    vlm_import_opts o;
    vlm_import_opts_default(&o);
    o.tokenizer = tokenizer;
    char *merges = NULL;
    vlm_status st = vlm_clip_import(path, &o, &m->clip, &merges, NULL, 0, err);
    if (st) return free(m), st;
    if (merges) {
        st = vlm_tokenizer_init_from_memory(&m->tok, merges, strlen(merges), err);
        free(merges);
        m->has_tok = !st;
    }
    const int S = m->clip.cfg.vision.image_size;
    if (!st && !(st = vlm_ctx_init(&m->c, 64u << 20, 0, err))) m->have_ctx = 1;
    if (!st && !(m->x = malloc(sizeof(float) * BATCH * 3 * (size_t)S * S))) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (st) {
        vlm_model_close(m);
        return st;
    }
    m->c.grad_enabled = 0, m->c.training = 0;
    vlm_transform_init(&m->t, S);
    vlm_transform_scratch_init(&m->sc);
    vlm_image_init(&m->img);
    vlm_decode_opts_default(&m->dec);
    *out = m;
    return VLM_OK;
}

void vlm_model_close(vlm_model *m) {
    if (!m) return;
    vlm_clip_free(&m->clip);
    if (m->has_tok) vlm_tokenizer_free(&m->tok);
    if (m->have_ctx) vlm_ctx_free(&m->c);
    vlm_transform_scratch_free(&m->sc);
    vlm_image_free(&m->img);
    free(m->x);
    free(m);
}

int vlm_model_dim(const vlm_model *m) { return m->clip.cfg.embed_dim; }
int vlm_model_image_size(const vlm_model *m) { return m->clip.cfg.vision.image_size; }
int vlm_model_has_text(const vlm_model *m) { return m->has_tok; }

// The b transformed images in m->x through the image tower -> out [b, E], normalised.
static vlm_status encode_batch(vlm_model *m, int b, float *out, vlm_error *err) {
    const int S = m->clip.cfg.vision.image_size, E = m->clip.cfg.embed_dim;
    vlm_ctx_reset(&m->c);
    int64_t sh[4] = {b, 3, S, S};
    vlm_tensor *f = vlm_clip_encode_image(&m->c, &m->clip, vlm_tensor_wrap(&m->c, VLM_F32, 4, sh, m->x, NULL), NULL);
    if (f) f = vlm_op_l2norm(&m->c, f);
    if (!f) {
        *err = m->c.err;
        return m->c.status ? m->c.status : VLM_ERR_STATE;
    }
    memcpy(out, vlm_f32(f), sizeof(float) * (size_t)b * E);
    return VLM_OK;
}

// Embeds n images that load(i) puts into m->img.
typedef vlm_status (*load_fn)(vlm_model *m, const void *user, int i, vlm_error *err);

static vlm_status embed_loaded(vlm_model *m, const void *user, int n, load_fn load, float *out, vlm_error *err) {
    const int S = m->clip.cfg.vision.image_size, E = m->clip.cfg.embed_dim;
    for (int i0 = 0; i0 < n; i0 += BATCH) {
        int b = n - i0 < BATCH ? n - i0 : BATCH;
        for (int k = 0; k < b; k++) {
            vlm_status st = load(m, user, i0 + k, err);
            if (!st) st = vlm_transform_eval(&m->t, &m->img, m->x + (size_t)k * 3 * S * S, &m->sc, err);
            if (st) return st;
        }
        vlm_status st = encode_batch(m, b, out + (size_t)i0 * E, err);
        if (st) return st;
    }
    return VLM_OK;
}

static vlm_status load_file(vlm_model *m, const void *user, int i, vlm_error *err) {
    return vlm_image_load(&m->img, ((const char *const *)user)[i], &m->dec, err);
}

vlm_status vlm_model_embed_files(vlm_model *m, const char *const *paths, int n, float *out, vlm_error *err) {
    return embed_loaded(m, paths, n, load_file, out, err);
}

typedef struct {
    const void *data;
    size_t size;
    const char *what;
} encoded;

static vlm_status load_encoded(vlm_model *m, const void *user, int i, vlm_error *err) {
    (void)i;
    const encoded *e = user;
    return vlm_image_decode(&m->img, e->data, e->size, e->what, &m->dec, err);
}

vlm_status vlm_model_embed_encoded(vlm_model *m, const void *data, size_t size, const char *what, float *out,
                                   vlm_error *err) {
    encoded e = {data, size, what ? what : "image"};
    return embed_loaded(m, &e, 1, load_encoded, out, err);
}

typedef struct {
    const uint8_t *rgb;
    int w, h;
} rgbs;

static vlm_status load_rgb(vlm_model *m, const void *user, int i, vlm_error *err) {
    const rgbs *r = user;
    vlm_status st = vlm_image_alloc(&m->img, r->w, r->h, err);
    if (!st) memcpy(m->img.px, r->rgb + (size_t)i * r->w * r->h * 3, (size_t)r->w * r->h * 3);
    return st;
}

vlm_status vlm_model_embed_rgb(vlm_model *m, const uint8_t *rgb, int n, int w, int h, float *out, vlm_error *err) {
    if (w < 1 || h < 1 || n < 0) return vlm_errorf(err, VLM_ERR_ARG, "embed_rgb: %d images of %dx%d", n, w, h);
    rgbs r = {rgb, w, h};
    return embed_loaded(m, &r, n, load_rgb, out, err);
}

vlm_status vlm_model_embed_texts(vlm_model *m, const char *const *texts, int n, float *out, vlm_error *err) {
    if (!m->has_tok) return vlm_errorf(err, VLM_ERR_ARG, "the model has no tokenizer: open it with one to embed texts");
    return vlm_clip_encode_texts(&m->clip, &m->tok, texts, n, out, err);
}

vlm_status vlm_model_classify(vlm_model *m, const float *img, const char *const *labels, int n,
                              const char *const *templates, int nt, float *probs, vlm_error *err) {
    if (!m->has_tok) return vlm_errorf(err, VLM_ERR_ARG, "the model has no tokenizer: open it with one to classify");
    if (n < 1) return vlm_errorf(err, VLM_ERR_ARG, "classify: no labels");
    const int E = m->clip.cfg.embed_dim;
    static const char *const plain[1] = {"{}"};
    float *W = malloc(sizeof(float) * (size_t)n * E);
    if (!W) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    vlm_status st = vlm_zeroshot_classifier(&m->clip, &m->tok, labels, n, templates ? templates : plain,
                                            templates ? nt : 1, W, err);
    if (!st) {
        double mx = -1e300;
        for (int k = 0; k < n; k++) {
            double s = 0;
            for (int e = 0; e < E; e++) s += (double)img[e] * W[(size_t)k * E + e];
            probs[k] = (float)(100.0 * s);
            if (probs[k] > mx) mx = probs[k];
        }
        double z = 0;
        for (int k = 0; k < n; k++) z += exp(probs[k] - mx);
        for (int k = 0; k < n; k++) probs[k] = (float)(exp(probs[k] - mx) / z);
    }
    free(W);
    return st;
}
