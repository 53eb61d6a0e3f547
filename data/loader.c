// Threaded loader (see loader.h). One mutex guards the dispatch state; the
// expensive work (read, decode, transform) runs unlocked, writing into the
// batch slot it was given. A batch is filled from consecutive positions; a
// bad sample leaves a hole that the next position refills, and the batch is
// reordered by position when it completes, so its content is a function of
// (seed, epoch, position) only. The next batch starts only once the current
// one is complete (its end position is known only then).
#include "data/loader.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BUF_FREE = 0, BUF_FILLING, BUF_READY, BUF_USER };

typedef struct {
    float *images;        // [B, 3, S, S]
    int32_t *labels;      // [B]
    int64_t *indices;     // [B]
    int64_t *positions;   // [B] epoch-local position of each slot's sample
    char *capbuf;         // [B, caption_max]
    const char **caps;    // [B] -> capbuf rows
    vlm_batch b;
    int state;
} lbuf;

typedef struct {
    vlm_loader *L;
    pthread_t th;
    int started;
    vlm_sample sample;
    vlm_image img;
    vlm_transform_scratch scratch;
} worker;

struct vlm_loader {
    vlm_loader_opts o;
    const vlm_dataset *ds;
    int B, S;
    size_t img_floats;         // 3 * S * S
    int64_t n_rank;            // samples per rank per epoch
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    worker *w;
    lbuf *bufs;
    int nbufs;
    // --- guarded by mu
    int stop, failed, finished;
    vlm_error fail_err;
    int64_t fill_seq, take_seq;
    lbuf *user;                // batch in the trainer's hands
    vlm_loader_pos pos_after_user;
    int64_t epoch, cursor;     // next position to dispatch
    uint32_t *perm;            // [N] order of the current epoch
    int64_t perm_epoch;
    lbuf *cur;                 // batch being filled
    vlm_loader_pos cur_start;
    int next_slot, pending, n_holes, good;
    int *holes;                // [B]
    int64_t batches_in_epoch;
    int64_t epoch_first;       // position the current epoch started from (0 unless seeked mid-epoch)
    // scratch for reordering a completed batch
    float *tmp_img;
    char *tmp_cap;
    int *ord, *where, *occ;
    // stats
    int64_t n_ok, n_batches, n_bad, n_bad_events;
    uint8_t *bad_seen;         // [N bits]
    char *bad_first[VLM_DATASET_BAD_KEEP];
};

void vlm_loader_opts_default(vlm_loader_opts *o, int image_size, int batch_size) {
    memset(o, 0, sizeof *o);
    o->batch_size = batch_size;
    o->workers = 2;
    o->prefetch = 3;
    o->shuffle = 1;
    vlm_transform_init(&o->transform, image_size);
    vlm_decode_opts_default(&o->decode);
    o->world_size = 1;
    o->drop_last = 1;
    o->max_bad = -1;
    o->captions = 1;
    o->caption_max = 512;
}

void vlm_loader_opts_eval(vlm_loader_opts *o, int image_size, int batch_size, int workers) {
    vlm_loader_opts_default(o, image_size, batch_size);
    o->workers = workers;
    o->shuffle = 0;
    o->train = 0;
    o->drop_last = 0;
    o->epochs = 1;
    o->captions = 0;
}

// ------------------------------------------------------------ helpers (mu held)

static void ensure_perm(vlm_loader *L) {
    if (L->perm_epoch == L->epoch) return;
    int64_t n = L->ds->n;
    for (int64_t i = 0; i < n; i++) L->perm[i] = (uint32_t)i;
    if (L->o.shuffle) {
        vlm_rng r;
        vlm_rng_init(&r, L->o.seed, VLM_RNG_DATA, (uint64_t)L->epoch);
        vlm_rng_shuffle_u32(&r, L->perm, (uint64_t)n);
    }
    L->perm_epoch = L->epoch;
}

static int64_t index_at(vlm_loader *L, int64_t pos) {
    return L->perm[L->o.rank + (int64_t)L->o.world_size * pos];
}

static void fail(vlm_loader *L, const vlm_error *e) {
    if (!L->failed) {
        L->failed = 1;
        L->fail_err = *e;
    }
    pthread_cond_broadcast(&L->cv_ready);
    pthread_cond_broadcast(&L->cv_work);
}

static void swap_slots(vlm_loader *L, lbuf *b, int i, int j) {
    size_t nb = L->img_floats * sizeof(float);
    float *a = b->images + (size_t)i * L->img_floats, *c = b->images + (size_t)j * L->img_floats;
    memcpy(L->tmp_img, a, nb);
    memcpy(a, c, nb);
    memcpy(c, L->tmp_img, nb);
    if (L->o.captions) {
        size_t cm = (size_t)L->o.caption_max;
        char *x = b->capbuf + (size_t)i * cm, *y = b->capbuf + (size_t)j * cm;
        memcpy(L->tmp_cap, x, cm);
        memcpy(x, y, cm);
        memcpy(y, L->tmp_cap, cm);
    }
    int32_t tl = b->labels[i];
    b->labels[i] = b->labels[j];
    b->labels[j] = tl;
    int64_t t = b->indices[i];
    b->indices[i] = b->indices[j];
    b->indices[j] = t;
    t = b->positions[i];
    b->positions[i] = b->positions[j];
    b->positions[j] = t;
}

// Moves the good samples of slots [0, used) into [0, good) in position order.
static void order_batch(vlm_loader *L, lbuf *b, int used) {
    int n = 0, sorted = 1;
    for (int s = 0; s < used; s++) {
        L->occ[s] = -1;
        if (b->positions[s] >= 0) L->ord[n++] = s;
    }
    for (int k = 1; k < n; k++)
        if (b->positions[L->ord[k]] < b->positions[L->ord[k - 1]]) sorted = 0;
    if (sorted && n == used) return;
    // insertion sort of slot ids by position (B is small; this is rare)
    for (int k = 1; k < n; k++) {
        int s = L->ord[k], m = k - 1;
        while (m >= 0 && b->positions[L->ord[m]] > b->positions[s]) {
            L->ord[m + 1] = L->ord[m];
            m--;
        }
        L->ord[m + 1] = s;
    }
    for (int k = 0; k < n; k++) {
        L->where[k] = L->ord[k]; // where the k-th sample is now
        L->occ[L->ord[k]] = k;   // which sample a slot holds (-1: hole)
    }
    for (int t = 0; t < n; t++) {
        int s = L->where[t];
        if (s == t) continue;
        swap_slots(L, b, t, s);
        int k = L->occ[t];
        L->occ[s] = k;
        if (k >= 0) L->where[k] = s;
        L->occ[t] = t;
        L->where[t] = t;
    }
}

static void finalize(vlm_loader *L, int n, vlm_loader_pos next) {
    lbuf *b = L->cur;
    order_batch(L, b, L->next_slot);
    b->b.n = n;
    b->b.pos = L->cur_start;
    b->b.next = next;
    b->b.seq = L->fill_seq;
    b->state = BUF_READY;
    L->fill_seq++;
    L->cur = NULL;
    L->batches_in_epoch++;
    pthread_cond_broadcast(&L->cv_ready);
}

static void reset_cur(vlm_loader *L) {
    L->next_slot = L->pending = L->n_holes = L->good = 0;
    for (int s = 0; s < L->B; s++) L->cur->positions[s] = -1;
}

// The epoch ran out while the current batch still wants samples (no
// samples in flight).
static void epoch_end(vlm_loader *L) {
    if (!L->o.drop_last && L->good > 0) {
        finalize(L, L->good, (vlm_loader_pos){L->epoch + 1, 0});
    } else {
        reset_cur(L);
        L->cur->state = BUF_FREE;
        L->cur = NULL;
    }
    if (L->batches_in_epoch == 0 && L->epoch_first == 0) {
        vlm_error e;
        vlm_errorf(&e, VLM_ERR_FORMAT,
                   "%s: epoch %lld gave no batch: %lld samples per rank (world size %d), batch size %d, %lld bad "
                   "samples so far",
                   L->ds->spec, (long long)L->epoch, (long long)L->n_rank, L->o.world_size, L->B,
                   (long long)L->n_bad);
        fail(L, &e);
        return;
    }
    L->epoch++;
    L->cursor = 0;
    L->epoch_first = 0;
    L->batches_in_epoch = 0;
    if (L->o.epochs > 0 && L->epoch >= L->o.epochs) {
        L->finished = 1;
        pthread_cond_broadcast(&L->cv_ready);
    }
}

static void bad_summary_locked(vlm_loader *L, char *buf, size_t n);

static void record_bad(vlm_loader *L, int64_t idx, const vlm_error *e) {
    L->n_bad_events++;
    uint8_t bit = (uint8_t)(1u << (idx & 7));
    if (L->bad_seen[idx >> 3] & bit) return;
    L->bad_seen[idx >> 3] |= bit;
    if (L->n_bad < VLM_DATASET_BAD_KEEP) L->bad_first[L->n_bad] = strdup(e->msg);
    L->n_bad++;
    if (L->o.max_bad >= 0 && L->n_bad > L->o.max_bad) {
        char sum[900];
        bad_summary_locked(L, sum, sizeof sum);
        vlm_error f;
        vlm_errorf(&f, VLM_ERR_FORMAT, "%s: more than %lld bad samples: %s", L->ds->spec, (long long)L->o.max_bad,
                   sum);
        fail(L, &f);
    }
}

// ------------------------------------------------------------ worker

// Cuts s [n] to at most max-1 bytes without splitting a UTF-8 sequence.
static void copy_caption(char *dst, const char *s, size_t n, int max) {
    if (n > (size_t)max - 1) {
        n = (size_t)max - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    if (n) memcpy(dst, s, n);
    dst[n] = 0;
}

static int process(worker *w, lbuf *b, int slot, int64_t idx, int64_t epoch, vlm_error *e) {
    vlm_loader *L = w->L;
    vlm_decode_opts dec = L->o.decode;
    if (L->o.train && L->o.random_background > 0 && dec.alpha == VLM_ALPHA_COMPOSITE) {
        vlm_rng r;
        vlm_rng_init(&r, L->o.seed, VLM_RNG_BACKGROUND, ((uint64_t)epoch << 40) ^ (uint64_t)idx);
        if (vlm_rng_uniform(&r) < L->o.random_background)
            for (int c = 0; c < 3; c++) dec.background[c] = (uint8_t)(30 + vlm_rng_below(&r, 196));
    }
    vlm_status st = vlm_dataset_load_image(L->ds, idx, &w->sample, &w->img, &dec, e);
    if (st) return -1;
    float *out = b->images + (size_t)slot * L->img_floats;
    if (L->o.train) {
        vlm_rng r;
        vlm_transform_rng(&r, L->o.seed, (uint64_t)epoch, (uint64_t)idx);
        st = vlm_transform_train(&L->o.transform, &w->img, &r, out, &w->scratch, e);
    } else {
        st = vlm_transform_eval(&L->o.transform, &w->img, out, &w->scratch, e);
    }
    if (st) {
        vlm_error_prefix(e, "%s", w->sample.name);
        return -1;
    }
    b->labels[slot] = w->sample.label;
    b->indices[slot] = idx;
    if (L->o.captions) {
        // Several captions: training draws one per (epoch, sample) from its
        // own stream, so the choice survives resume; evaluation takes the first.
        int nc = vlm_caption_count(w->sample.caption), k = 0;
        if (L->o.train && nc > 1) {
            vlm_rng r;
            vlm_rng_init(&r, L->o.seed, VLM_RNG_CAPTION, ((uint64_t)epoch << 40) ^ (uint64_t)idx);
            k = (int)vlm_rng_below(&r, (uint32_t)nc);
        }
        size_t len;
        const char *c = vlm_caption_pick(w->sample.caption, k, &len);
        copy_caption(b->capbuf + (size_t)slot * L->o.caption_max, c, len, L->o.caption_max);
    }
    return 0;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    vlm_loader *L = w->L;
    pthread_mutex_lock(&L->mu);
    while (!L->stop) {
        if (L->failed || L->finished) {
            pthread_cond_wait(&L->cv_work, &L->mu);
            continue;
        }
        if (!L->cur) {
            lbuf *b = &L->bufs[L->fill_seq % L->nbufs];
            if (b->state != BUF_FREE) {
                pthread_cond_wait(&L->cv_work, &L->mu);
                continue;
            }
            b->state = BUF_FILLING;
            L->cur = b;
            reset_cur(L);
            L->cur_start = (vlm_loader_pos){L->epoch, L->cursor};
        }
        if (L->n_holes == 0 && L->next_slot == L->B) { // all dispatched: wait for the rest
            pthread_cond_wait(&L->cv_work, &L->mu);
            continue;
        }
        if (L->cursor >= L->n_rank) {
            if (L->pending > 0) {
                pthread_cond_wait(&L->cv_work, &L->mu);
                continue;
            }
            epoch_end(L);
            pthread_cond_broadcast(&L->cv_work);
            continue;
        }
        ensure_perm(L);
        lbuf *b = L->cur;
        int slot = L->n_holes ? L->holes[--L->n_holes] : L->next_slot++;
        int64_t pos = L->cursor++, epoch = L->epoch, idx = index_at(L, pos);
        L->pending++;
        pthread_mutex_unlock(&L->mu);
        vlm_error e = {0};
        int bad = process(w, b, slot, idx, epoch, &e);
        pthread_mutex_lock(&L->mu);
        L->pending--;
        if (bad) {
            b->positions[slot] = -1;
            L->holes[L->n_holes++] = slot;
            record_bad(L, idx, &e);
        } else {
            b->positions[slot] = pos;
            L->good++;
            L->n_ok++;
            if (L->good == L->B) {
                vlm_loader_pos next = {L->epoch, L->cursor};
                if (next.index >= L->n_rank) next = (vlm_loader_pos){L->epoch + 1, 0};
                finalize(L, L->B, next);
                // an epoch that ends exactly here rolls over on the next dispatch
            }
        }
        pthread_cond_broadcast(&L->cv_work);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

// ------------------------------------------------------------ lifecycle

static void stop_workers(vlm_loader *L) {
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_broadcast(&L->cv_work);
    pthread_cond_broadcast(&L->cv_ready);
    pthread_mutex_unlock(&L->mu);
    for (int i = 0; i < L->o.workers; i++)
        if (L->w[i].started) {
            pthread_join(L->w[i].th, NULL);
            L->w[i].started = 0;
        }
}

static vlm_status start_workers(vlm_loader *L, vlm_error *err) {
    L->stop = 0;
    for (int i = 0; i < L->o.workers; i++) {
        if (pthread_create(&L->w[i].th, NULL, worker_main, &L->w[i]) != 0) {
            stop_workers(L);
            return vlm_errorf(err, VLM_ERR_STATE, "loader: cannot start worker thread %d", i);
        }
        L->w[i].started = 1;
    }
    return VLM_OK;
}

// Resets the pipeline to pos (workers stopped).
static void reset_to(vlm_loader *L, vlm_loader_pos pos) {
    for (int i = 0; i < L->nbufs; i++) L->bufs[i].state = BUF_FREE;
    L->user = NULL;
    L->cur = NULL;
    L->failed = L->finished = 0;
    vlm_error_clear(&L->fail_err);
    L->fill_seq = L->take_seq = 0;
    L->epoch = pos.epoch;
    L->cursor = pos.index;
    L->pos_after_user = pos;
    L->batches_in_epoch = 0;
    L->epoch_first = pos.index;
    L->next_slot = L->pending = L->n_holes = L->good = 0;
    if (L->o.epochs > 0 && L->epoch >= L->o.epochs) L->finished = 1;
}

static vlm_status check_pos(const vlm_loader *L, vlm_loader_pos p, vlm_error *err) {
    if (p.epoch < 0 || p.index < 0 || p.index > L->n_rank)
        return vlm_errorf(err, VLM_ERR_ARG, "loader: position (epoch %lld, index %lld) outside [0, %lld]",
                          (long long)p.epoch, (long long)p.index, (long long)L->n_rank);
    return VLM_OK;
}

void vlm_loader_free(vlm_loader *L) {
    if (!L) return;
    if (L->w) {
        stop_workers(L);
        for (int i = 0; i < L->o.workers; i++) {
            vlm_sample_free(&L->w[i].sample);
            vlm_image_free(&L->w[i].img);
            vlm_transform_scratch_free(&L->w[i].scratch);
        }
    }
    for (int i = 0; L->bufs && i < L->nbufs; i++) {
        lbuf *b = &L->bufs[i];
        free(b->images);
        free(b->labels);
        free(b->indices);
        free(b->positions);
        free(b->capbuf);
        free(b->caps);
    }
    for (int i = 0; i < VLM_DATASET_BAD_KEEP; i++) free(L->bad_first[i]);
    free(L->bufs);
    free(L->w);
    free(L->perm);
    free(L->holes);
    free(L->tmp_img);
    free(L->tmp_cap);
    free(L->ord);
    free(L->where);
    free(L->occ);
    free(L->bad_seen);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv_work);
    pthread_cond_destroy(&L->cv_ready);
    free(L);
}

vlm_status vlm_loader_open(vlm_loader **out, const vlm_dataset *ds, const vlm_loader_opts *o, vlm_error *err) {
    *out = NULL;
    if (!ds || ds->n <= 0) return vlm_errorf(err, VLM_ERR_ARG, "loader: empty dataset");
    if (ds->n > UINT32_MAX) return vlm_errorf(err, VLM_ERR_ARG, "%s: over 2^32 samples", ds->spec);
    if (o->batch_size <= 0 || o->batch_size > (1 << 20))
        return vlm_errorf(err, VLM_ERR_ARG, "loader: bad batch size %d", o->batch_size);
    if (o->workers <= 0 || o->workers > 256) return vlm_errorf(err, VLM_ERR_ARG, "loader: bad worker count %d", o->workers);
    if (o->prefetch < 2 || o->prefetch > 64)
        return vlm_errorf(err, VLM_ERR_ARG, "loader: prefetch must be 2..64 buffers, got %d", o->prefetch);
    if (o->world_size <= 0 || o->rank < 0 || o->rank >= o->world_size)
        return vlm_errorf(err, VLM_ERR_ARG, "loader: bad rank %d of world size %d", o->rank, o->world_size);
    if (o->transform.size <= 0 || o->transform.size > 4096)
        return vlm_errorf(err, VLM_ERR_ARG, "loader: bad image size %d", o->transform.size);
    if (o->captions && o->caption_max < 8)
        return vlm_errorf(err, VLM_ERR_ARG, "loader: caption_max %d too small", o->caption_max);
    int64_t n_rank = ds->n / o->world_size;
    if (n_rank <= 0)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: %lld samples cannot be split over %d ranks", ds->spec,
                          (long long)ds->n, o->world_size);
    vlm_loader *L = calloc(1, sizeof *L);
    if (!L) return vlm_errorf(err, VLM_ERR_OOM, "loader: out of memory");
    L->o = *o;
    L->ds = ds;
    L->B = o->batch_size;
    L->S = o->transform.size;
    L->img_floats = (size_t)3 * L->S * L->S;
    L->n_rank = n_rank;
    L->nbufs = o->prefetch;
    L->perm_epoch = -1;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv_work, NULL);
    pthread_cond_init(&L->cv_ready, NULL);
    int B = L->B;
    size_t cm = o->captions ? (size_t)o->caption_max : 0;
    int ok = 1;
    L->bufs = calloc((size_t)L->nbufs, sizeof *L->bufs);
    L->w = calloc((size_t)o->workers, sizeof *L->w);
    L->perm = malloc(sizeof(uint32_t) * (size_t)ds->n);
    L->holes = malloc(sizeof(int) * (size_t)B);
    L->tmp_img = malloc(sizeof(float) * L->img_floats);
    L->tmp_cap = malloc(cm ? cm : 1);
    L->ord = malloc(sizeof(int) * (size_t)B);
    L->where = malloc(sizeof(int) * (size_t)B);
    L->occ = malloc(sizeof(int) * (size_t)B);
    L->bad_seen = calloc((size_t)(ds->n + 7) / 8, 1);
    ok = L->bufs && L->w && L->perm && L->holes && L->tmp_img && L->tmp_cap && L->ord && L->where && L->occ &&
         L->bad_seen;
    for (int i = 0; ok && i < L->nbufs; i++) {
        lbuf *b = &L->bufs[i];
        b->images = malloc(sizeof(float) * L->img_floats * (size_t)B);
        b->labels = malloc(sizeof(int32_t) * (size_t)B);
        b->indices = malloc(sizeof(int64_t) * (size_t)B);
        b->positions = malloc(sizeof(int64_t) * (size_t)B);
        if (cm) {
            b->capbuf = calloc((size_t)B, cm);
            b->caps = malloc(sizeof(char *) * (size_t)B);
        }
        ok = b->images && b->labels && b->indices && b->positions && (!cm || (b->capbuf && b->caps));
        if (!ok) break;
        for (int s = 0; s < B; s++) {
            if (cm) b->caps[s] = b->capbuf + (size_t)s * cm;
            b->positions[s] = -1;
        }
        b->b.size = L->S;
        b->b.images = b->images;
        b->b.labels = b->labels;
        b->b.indices = b->indices;
        b->b.captions = cm ? (const char *const *)b->caps : NULL;
    }
    if (!ok) {
        vlm_loader_free(L);
        return vlm_errorf(err, VLM_ERR_OOM, "loader: cannot allocate %d batch buffers of %d x 3 x %d x %d", o->prefetch,
                          B, o->transform.size, o->transform.size);
    }
    for (int i = 0; i < o->workers; i++) {
        L->w[i].L = L;
        vlm_sample_init(&L->w[i].sample);
        vlm_image_init(&L->w[i].img);
        vlm_transform_scratch_init(&L->w[i].scratch);
    }
    vlm_status st = check_pos(L, o->start, err);
    if (!st) {
        reset_to(L, o->start);
        st = start_workers(L, err);
    }
    if (st) {
        vlm_loader_free(L);
        return st;
    }
    *out = L;
    return VLM_OK;
}

vlm_status vlm_loader_next(vlm_loader *L, vlm_batch *b, vlm_error *err) {
    pthread_mutex_lock(&L->mu);
    if (L->user) {
        L->user->state = BUF_FREE;
        L->user = NULL;
        pthread_cond_broadcast(&L->cv_work);
    }
    for (;;) {
        lbuf *x = &L->bufs[L->take_seq % L->nbufs];
        if (x->state == BUF_READY && x->b.seq == L->take_seq) {
            x->state = BUF_USER;
            L->user = x;
            L->take_seq++;
            L->pos_after_user = x->b.next;
            L->n_batches++;
            *b = x->b;
            pthread_mutex_unlock(&L->mu);
            return VLM_OK;
        }
        if (L->failed) {
            vlm_error e = L->fail_err;
            pthread_mutex_unlock(&L->mu);
            if (err) *err = e;
            return e.status ? e.status : VLM_ERR_STATE;
        }
        if (L->finished && L->take_seq == L->fill_seq) {
            memset(b, 0, sizeof *b);
            b->size = L->S;
            b->pos = b->next = L->pos_after_user;
            pthread_mutex_unlock(&L->mu);
            return VLM_OK;
        }
        pthread_cond_wait(&L->cv_ready, &L->mu);
    }
}

vlm_status vlm_loader_seek(vlm_loader *L, vlm_loader_pos pos, vlm_error *err) {
    vlm_status st = check_pos(L, pos, err);
    if (st) return st;
    stop_workers(L);
    reset_to(L, pos);
    return start_workers(L, err);
}

vlm_loader_pos vlm_loader_position(const vlm_loader *L) {
    pthread_mutex_lock((pthread_mutex_t *)&L->mu);
    vlm_loader_pos p = L->pos_after_user;
    pthread_mutex_unlock((pthread_mutex_t *)&L->mu);
    return p;
}

int64_t vlm_loader_epoch_size(const vlm_loader *L) { return L->n_rank; }

void vlm_loader_get_stats(vlm_loader *L, vlm_loader_stats *s) {
    pthread_mutex_lock(&L->mu);
    s->samples = L->n_ok;
    s->batches = L->n_batches;
    s->bad = L->n_bad;
    s->bad_events = L->n_bad_events;
    pthread_mutex_unlock(&L->mu);
}

static void bad_summary_locked(vlm_loader *L, char *buf, size_t n) {
    if (!n) return;
    buf[0] = 0;
    int64_t nb = L->n_bad;
    if (!nb) return;
    size_t len = (size_t)snprintf(buf, n, "%lld bad sample%s skipped: ", (long long)nb, nb == 1 ? "" : "s");
    int shown = 0;
    for (int i = 0; i < VLM_DATASET_BAD_KEEP && i < nb && len < n; i++) {
        if (!L->bad_first[i]) continue;
        if (shown == 3) break; // a summary, not a flood
        len += (size_t)snprintf(buf + len, n - len, "%s%s", shown ? "; " : "", L->bad_first[i]);
        shown++;
    }
    if (nb > shown && len < n) snprintf(buf + len, n - len, " (and %lld more)", (long long)(nb - shown));
}

void vlm_loader_bad_summary(vlm_loader *L, char *buf, size_t n) {
    pthread_mutex_lock(&L->mu);
    bad_summary_locked(L, buf, n);
    pthread_mutex_unlock(&L->mu);
}
