// Training-state files (see state.h).
#include "core/state.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"

void vlm_train_state_set_rng(vlm_train_state *s, const vlm_rng *r) {
    memcpy(s->rng_key, r->key, sizeof s->rng_key);
    s->rng_counter = r->counter;
    memcpy(s->rng_buf, r->buf, sizeof s->rng_buf);
    s->rng_pos = r->buf_pos;
}

void vlm_train_state_get_rng(const vlm_train_state *s, vlm_rng *r) {
    memcpy(r->key, s->rng_key, sizeof s->rng_key);
    r->counter = s->rng_counter;
    memcpy(r->buf, s->rng_buf, sizeof s->rng_buf);
    r->buf_pos = s->rng_pos;
}

// The layout fingerprint: parameter names, offsets and total, so a state file
// is never loaded into a model whose flat buffer means something else.
uint64_t vlm_params_layout_hash(const vlm_params *ps) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < ps->n; i++) {
        for (const char *c = ps->p[i].name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
        h = (h ^ (uint64_t)ps->p[i].offset) * 1099511628211ull;
        h = (h ^ (uint64_t)ps->p[i].numel) * 1099511628211ull;
    }
    return h ^ (uint64_t)ps->total;
}

#define STATE_KEYS 11
#define STATE_MAX_EXTRA 8

vlm_status vlm_state_save(const char *path, const vlm_params *ps, const vlm_train_state *s, const char *format,
                          const char *const *extra_keys, const char *const *extra_vals, int n_extra, vlm_error *err) {
    return vlm_state_save_with(path, ps, s, format, extra_keys, extra_vals, n_extra, NULL, NULL, err);
}

vlm_status vlm_state_save_with(const char *path, const vlm_params *ps, const vlm_train_state *s, const char *format,
                               const char *const *extra_keys, const char *const *extra_vals, int n_extra,
                               const char *buf_name, const float *buf, vlm_error *err) {
    if (!ps->m) return vlm_errorf(err, VLM_ERR_STATE, "%s: optimizer moments not allocated", path);
    if (n_extra < 0 || n_extra > STATE_MAX_EXTRA)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: %d extra metadata entries (at most %d)", path, n_extra, STATE_MAX_EXTRA);
    int64_t n = ps->total;
    vlm_st_tensor t[4] = {{"params", VLM_F32, 1, &n, ps->data}, {"adamw.m", VLM_F32, 1, &n, ps->m},
                          {"adamw.v", VLM_F32, 1, &n, ps->v}, {buf_name, VLM_F32, 1, &n, (void *)buf}};
    char v[10][128]; // the RNG line needs up to 8 numbers of 10-20 digits
    snprintf(v[0], sizeof v[0], "%" PRId64, s->step);
    snprintf(v[1], sizeof v[1], "%" PRId64, s->epoch);
    snprintf(v[2], sizeof v[2], "%" PRId64, s->loader_epoch);
    snprintf(v[3], sizeof v[3], "%" PRId64, s->loader_index);
    snprintf(v[4], sizeof v[4], "%" PRId64, s->adam_step);
    snprintf(v[5], sizeof v[5], "%u %u %" PRIu64 " %u %u %u %u %d", s->rng_key[0], s->rng_key[1], s->rng_counter, s->rng_buf[0],
             s->rng_buf[1], s->rng_buf[2], s->rng_buf[3], s->rng_pos);
    snprintf(v[6], sizeof v[6], "%.17g", s->elapsed_s);
    snprintf(v[7], sizeof v[7], "%" PRIu64, vlm_params_layout_hash(ps));
    snprintf(v[8], sizeof v[8], "%.9g", (double)s->last_loss);
    snprintf(v[9], sizeof v[9], "%" PRId64, s->global_batch);
    const char *keys[STATE_KEYS + STATE_MAX_EXTRA] = {"step",      "epoch",  "loader_epoch", "loader_index", "adam_step",
                                                      "rng",       "elapsed_s", "layout",    "last_loss",    "global_batch", "format"};
    const char *vals[STATE_KEYS + STATE_MAX_EXTRA] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], format};
    for (int i = 0; i < n_extra; i++) {
        keys[STATE_KEYS + i] = extra_keys[i];
        vals[STATE_KEYS + i] = extra_vals[i];
    }
    return vlm_st_write(path, t, buf ? 4 : 3, keys, vals, STATE_KEYS + n_extra, err);
}

static int meta_i64(const vlm_st_file *f, const char *k, int64_t *out) {
    const char *s = vlm_st_meta(f, k);
    if (!s) return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || end == s) return -1;
    *out = v;
    return 0;
}

vlm_status vlm_state_load(const char *path, vlm_params *ps, vlm_train_state *s, const char *format, vlm_error *err) {
    return vlm_state_load_with(path, ps, s, format, NULL, NULL, err);
}

vlm_status vlm_state_load_with(const char *path, vlm_params *ps, vlm_train_state *s, const char *format,
                               const char *buf_name, float *buf, vlm_error *err) {
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    memset(s, 0, sizeof *s);
    const char *fmt = vlm_st_meta(&f, "format"), *rng = vlm_st_meta(&f, "rng"), *el = vlm_st_meta(&f, "elapsed_s"),
               *lay = vlm_st_meta(&f, "layout"), *ll = vlm_st_meta(&f, "last_loss");
    char want[32];
    snprintf(want, sizeof want, "%" PRIu64, vlm_params_layout_hash(ps));
    if (!fmt || strcmp(fmt, format)) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a %s file (format \"%s\")", path, format, fmt ? fmt : "none");
    } else if (!lay || strcmp(lay, want)) {
        st = vlm_errorf(err, VLM_ERR_FORMAT,
                        "%s: parameter layout differs from the model being resumed (pass the same model options as "
                        "the original run)",
                        path);
    } else if (meta_i64(&f, "step", &s->step) || meta_i64(&f, "epoch", &s->epoch) ||
               meta_i64(&f, "loader_epoch", &s->loader_epoch) || meta_i64(&f, "loader_index", &s->loader_index) ||
               meta_i64(&f, "adam_step", &s->adam_step) || !rng ||
               sscanf(rng, "%u %u %" SCNu64 " %u %u %u %u %d", &s->rng_key[0], &s->rng_key[1], &s->rng_counter,
                      &s->rng_buf[0], &s->rng_buf[1], &s->rng_buf[2], &s->rng_buf[3], &s->rng_pos) != 8 ||
               s->rng_pos < 0 || s->rng_pos > 4) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: training-state metadata incomplete or malformed", path);
    } else {
        s->elapsed_s = el ? atof(el) : 0;
        s->last_loss = ll ? (float)atof(ll) : 0;
        if (meta_i64(&f, "global_batch", &s->global_batch)) s->global_batch = 0; // older files: unknown
        vlm_error e2;
        int64_t n = ps->total;
        if (!ps->m && vlm_params_alloc_moments(ps, &e2)) st = vlm_errorf(err, VLM_ERR_OOM, "%s", e2.msg);
        else if (vlm_st_get(&f, "params", VLM_F32, 1, &n, ps->data, err) ||
                 vlm_st_get(&f, "adamw.m", VLM_F32, 1, &n, ps->m, err) ||
                 vlm_st_get(&f, "adamw.v", VLM_F32, 1, &n, ps->v, err) ||
                 (buf && vlm_st_get(&f, buf_name, VLM_F32, 1, &n, buf, err)))
            st = vlm_error_prefix(err, "%s", path);
    }
    vlm_st_free(&f);
    return st;
}
