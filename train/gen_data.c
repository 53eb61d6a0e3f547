// A generator's data in memory and its conditioning embeddings (see gen_data.h).
#include "train/gen_data.h"
#include "data/evalread.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/fs.h"
#include "data/transform.h"
#include "fusion/classes.h"

// Tokenizer of the generator's CLIP + text embeddings [n, E] (L2-normalised).
vlm_status vlm_gen_embed_texts(vlm_gen *g, const char *const *texts, int n, float *out, vlm_error *err) {
    vlm_tokenizer tok;
    vlm_status st = vlm_tokenizer_init_from_memory(&tok, g->tokenizer_text, strlen(g->tokenizer_text), err);
    if (st) return st;
    st = vlm_clip_encode_texts(&g->clip, &tok, texts, n, out, err);
    vlm_tokenizer_free(&tok);
    return st;
}

// Runs f (a model on [b, 3, S, S] eval-transformed images -> [b, dout]) over
// 8-bit RGB images [n, s, s, 3] in batches of 64; rows into out [n, dout].
vlm_status vlm_images_forward(const uint8_t *rgb, int64_t n, int s, int S, vlm_image_fn f, void *model, int dout,
                                 float *out, vlm_error *err) {
    const int B = 64;
    vlm_transform tf;
    vlm_transform_init(&tf, S);
    vlm_transform_scratch sc;
    vlm_transform_scratch_init(&sc);
    vlm_image img;
    vlm_image_init(&img);
    float *x = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    vlm_ctx c;
    vlm_status st = !x ? vlm_errorf(err, VLM_ERR_OOM, "out of memory") : vlm_ctx_init(&c, 64u << 20, 0, err);
    if (st) {
        free(x);
        return st;
    }
    c.grad_enabled = 0;
    c.training = 0;
    if ((st = vlm_image_alloc(&img, s, s, err))) goto done;
    for (int64_t i0 = 0; i0 < n && !st; i0 += B) {
        int b = n - i0 < B ? (int)(n - i0) : B;
        for (int k = 0; k < b && !st; k++) {
            memcpy(img.px, rgb + (i0 + k) * s * s * 3, (size_t)s * s * 3);
            st = vlm_transform_eval(&tf, &img, x + (int64_t)k * 3 * S * S, &sc, err);
        }
        if (st) break;
        vlm_ctx_reset(&c);
        vlm_tensor *y = f(&c, model, vlm_tensor_wrap(&c, VLM_F32, 4, (int64_t[]){b, 3, S, S}, x, NULL));
        if (!y) {
            st = c.status;
            *err = c.err;
            break;
        }
        memcpy(out + i0 * dout, vlm_f32(y), sizeof(float) * (size_t)b * dout);
    }
done:
    vlm_ctx_free(&c);
    vlm_image_free(&img);
    vlm_transform_scratch_free(&sc);
    free(x);
    return st;
}

static vlm_tensor *clip_embed_fn(vlm_ctx *c, void *m, vlm_tensor *images) {
    return vlm_op_l2norm(c, vlm_clip_encode_image(c, m, images, NULL));
}

// CLIP image embeddings [n, E] (L2-normalised) of 8-bit RGB images [n, s, s, 3]
// through the CLIP's eval transform (resize to its input size).
vlm_status vlm_gen_embed_images(vlm_clip *m, const uint8_t *rgb, int64_t n, int s, float *out, vlm_error *err) {
    return vlm_images_forward(rgb, n, s, m->cfg.vision.image_size, clip_embed_fn, m, m->cfg.embed_dim, out, err);
}


// Prompts from --prompt (repeatable), --prompts FILE or --classnames FILE (+ template).

void vlm_strvec_free(vlm_strvec *l) {
    vlm_strlist_free(l->p, l->n);
    l->p = NULL;
    l->n = 0;
}

vlm_status vlm_strvec_add(vlm_strvec *l, const char *s, vlm_error *err) {
    char **q = realloc(l->p, sizeof(char *) * (size_t)(l->n + 1));
    if (!q) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    l->p = q;
    if (!(l->p[l->n] = strdup(s))) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    l->n++;
    return VLM_OK;
}

// Class names -> prompts through the template.
vlm_status vlm_gen_fill_prompts(const char *tmpl, char **names, int n, vlm_strvec *out, vlm_error *err) {
    char buf[1024];
    for (int i = 0; i < n; i++) {
        vlm_status st = vlm_template_fill(tmpl, names[i], buf, sizeof buf, err);
        if (st || (st = vlm_strvec_add(out, buf, err))) return st;
    }
    return VLM_OK;
}

void vlm_gen_data_free(vlm_gen_data *d) {
    free(d->rgb);
    free(d->row);
    free(d->emb);
    vlm_strvec_free(&d->texts);
    memset(d, 0, sizeof *d);
}

typedef struct {
    const char *s;
    int64_t i;
} keyed;
static int keyed_cmp(const void *a, const void *b) {
    int c = strcmp(((const keyed *)a)->s, ((const keyed *)b)->s);
    if (c) return c;
    return (((const keyed *)a)->i > ((const keyed *)b)->i) - (((const keyed *)a)->i < ((const keyed *)b)->i);
}

vlm_status vlm_gen_data_load(vlm_gen *g, const char *spec, const char *classnames, const vlm_decode_opts *dec,
                            int64_t limit, vlm_gen_data *d, vlm_error *err) {
    memset(d, 0, sizeof *d);
    const int S = g->dit.cfg.image_size, E = g->dit.cfg.cond_dim;
    d->S = S;
    vlm_dataset_opts dopt;
    vlm_dataset_opts_default(&dopt);
    dopt.classnames = classnames;
    vlm_dataset ds;
    vlm_status st = vlm_dataset_open(&ds, spec, &dopt, err);
    if (st) return st;
    int64_t N = limit > 0 && limit < ds.n ? limit : ds.n;
    char **caps = calloc((size_t)(N > 0 ? N : 1), sizeof(char *));
    d->rgb = malloc((size_t)(N > 0 ? N : 1) * S * S * 3);
    d->row = malloc(sizeof(int32_t) * (size_t)(N > 0 ? N : 1));
    uint8_t *ok = calloc((size_t)(N > 0 ? N : 1), 1);
    if (!caps || !d->rgb || !d->row || !ok) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %" PRId64 " images", spec, N);
        goto done;
    }
    int64_t n_nocap = 0;
    vlm_status first_bad = VLM_OK;
    char first_msg[512] = "";
#pragma omp parallel
    {
        vlm_eval_reader rd;
        vlm_eval_reader_init(&rd, S, dec);
        char buf[1024];
#pragma omp for schedule(dynamic, 64) reduction(+ : n_nocap)
        for (int64_t i = 0; i < N; i++) {
            vlm_error e = {0};
            // labelled data with class names: the template filled with the name; else the caption as is
            const char *cap = vlm_dataset_caption(&ds, i);
            int32_t lab = vlm_dataset_label(&ds, i);
            if (lab >= 0 && ds.classnames && lab < ds.n_classes &&
                vlm_template_fill(g->template_, ds.classnames[lab], buf, sizeof buf, &e) == VLM_OK)
                cap = buf;
            if (g->cond == VLM_GEN_TEXT && !cap) {
                n_nocap++;
                continue;
            }
            if (vlm_eval_read_sample_u8(&rd, &ds, i, d->rgb + i * S * S * 3, &e)) {
#pragma omp critical
                if (!first_bad) first_bad = e.status ? e.status : VLM_ERR_FORMAT, snprintf(first_msg, sizeof first_msg, "%s", e.msg);
                continue;
            }
            if (g->cond == VLM_GEN_TEXT) caps[i] = strdup(cap);
            ok[i] = 1;
        }
        vlm_eval_reader_free(&rd);
    }
    // compact the kept samples
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) {
        if (!ok[i]) continue;
        if (n != i) {
            memmove(d->rgb + n * S * S * 3, d->rgb + i * S * S * 3, (size_t)S * S * 3);
            caps[n] = caps[i];
            caps[i] = NULL;
        }
        n++;
    }
    d->n = n;
    d->skipped = N - n;
    if (d->skipped)
        snprintf(d->skip_note, sizeof d->skip_note, "skipped %" PRId64 " of %" PRId64 " samples (%" PRId64 " without a caption or class name%s%s)",
                 d->skipped, N, n_nocap, first_msg[0] ? "; first bad image: " : "", first_msg);
    if (n == 0) {
        st = vlm_errorf(err, VLM_ERR_ARG, "%s: no usable samples%s", spec,
                        g->cond == VLM_GEN_TEXT ? " (text conditioning needs captions, or labels with --classnames)" : "");
        goto done;
    }
    if (g->cond == VLM_GEN_TEXT) {
        // distinct prompts, embedded once
        keyed *k = malloc(sizeof(keyed) * (size_t)n);
        if (!k) {
            st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < n; i++) k[i] = (keyed){caps[i], i};
        qsort(k, (size_t)n, sizeof *k, keyed_cmp);
        for (int64_t i = 0; i < n && !st; i++) {
            if (i == 0 || strcmp(k[i].s, k[i - 1].s)) st = vlm_strvec_add(&d->texts, k[i].s, err);
            d->row[k[i].i] = d->texts.n - 1;
        }
        free(k);
        d->n_emb = d->texts.n;
        if (!st && !(d->emb = malloc(sizeof(float) * (size_t)d->n_emb * E)))
            st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        if (!st) st = vlm_gen_embed_texts(g, (const char *const *)d->texts.p, (int)d->n_emb, d->emb, err);
    } else {
        d->n_emb = n;
        for (int64_t i = 0; i < n; i++) d->row[i] = (int32_t)i;
        if (!(d->emb = malloc(sizeof(float) * (size_t)n * E))) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        if (!st) st = vlm_gen_embed_images(&g->clip, d->rgb, n, S, d->emb, err);
    }
done:
    if (caps)
        for (int64_t i = 0; i < N; i++) free(caps[i]);
    free(caps);
    free(ok);
    vlm_dataset_free(&ds);
    return st;
}
