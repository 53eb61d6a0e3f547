// Checkpoint files (see checkpoint.h).
#include "fusion/checkpoint.h"
#include "fusion/import.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"

vlm_status vlm_ckpt_save_model(const char *path, const vlm_clip *m, const char *tok, int64_t step, int64_t epoch,
                               vlm_error *err) {
    vlm_st_tensor *t = calloc((size_t)m->ps.n, sizeof *t);
    if (!t) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < m->ps.n; i++)
        t[i] = (vlm_st_tensor){m->ps.p[i].name, VLM_F32, m->ps.p[i].t.ndim, m->ps.p[i].t.shape, m->ps.p[i].t.data};
    char *cfg = vlm_clip_cfg_to_json(&m->cfg);
    char s_step[32], s_epoch[32];
    snprintf(s_step, sizeof s_step, "%" PRId64, step);
    snprintf(s_epoch, sizeof s_epoch, "%" PRId64, epoch);
    const char *keys[5] = {"format", "config", "step", "epoch", "tokenizer"};
    const char *vals[5] = {"vlm-clip", cfg, s_step, s_epoch, tok};
    vlm_status st = vlm_st_write(path, t, m->ps.n, keys, vals, tok ? 5 : 4, err);
    free(cfg);
    free(t);
    return st;
}

static vlm_status build_from_meta(const vlm_st_file *f, const char *path, vlm_clip *m, char **tok, vlm_error *err) {
    const char *cfg_json = vlm_st_meta(f, "config");
    if (!cfg_json) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: no \"config\" in metadata (not a vlm checkpoint)", path);
    vlm_clip_cfg cfg;
    if (vlm_clip_cfg_from_json(cfg_json, &cfg, err)) return vlm_error_prefix(err, "%s", path);
    if (vlm_clip_init(m, &cfg, err)) return vlm_error_prefix(err, "%s", path);
    if (tok) {
        const char *t = vlm_st_meta(f, "tokenizer");
        *tok = t ? strdup(t) : NULL;
    }
    return VLM_OK;
}

vlm_status vlm_ckpt_load_model(const char *path, vlm_clip *m, char **tok, vlm_error *err) {
    if (!vlm_ckpt_is_vlm(path)) return vlm_clip_import(path, NULL, m, tok, NULL, 0, err);
    return vlm_ckpt_load_vlm(path, m, tok, err);
}

int vlm_ckpt_is_vlm(const char *path) {
    vlm_st_file f;
    vlm_error e;
    if (vlm_st_read(&f, path, &e)) return 0;
    int own = vlm_st_meta(&f, "config") != NULL;
    vlm_st_free(&f);
    return own;
}

vlm_status vlm_ckpt_load_vlm(const char *path, vlm_clip *m, char **tok, vlm_error *err) {
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    if (tok) *tok = NULL;
    st = build_from_meta(&f, path, m, tok, err);
    if (!st) {
        const vlm_st_entry *flat = vlm_st_find(&f, "params");
        if (flat) { // a state file: flat parameter buffer
            if (flat->dtype != VLM_F32 || flat->numel != m->ps.total)
                st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: params has %lld floats, model needs %lld", path,
                                (long long)flat->numel, (long long)m->ps.total);
            else
                memcpy(m->ps.data, vlm_st_data(&f, flat), sizeof(float) * (size_t)m->ps.total);
        } else
            st = vlm_clip_load_weights_st(m, &f, path, err);
        if (st) {
            vlm_clip_free(m);
            if (tok) {
                free(*tok);
                *tok = NULL;
            }
        }
    }
    vlm_st_free(&f);
    return st;
}

vlm_status vlm_ckpt_save_state(const char *path, const vlm_clip *m, const char *tok, const vlm_train_state *s,
                               const char *args_json, vlm_error *err) {
    char *cfg = vlm_clip_cfg_to_json(&m->cfg);
    if (!cfg) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    const char *keys[3] = {"config", "args", "tokenizer"};
    const char *vals[3] = {cfg, args_json ? args_json : "{}", tok};
    vlm_status st = vlm_state_save(path, &m->ps, s, "vlm-train-state", keys, vals, tok ? 3 : 2, err);
    free(cfg);
    return st;
}

vlm_status vlm_ckpt_load_state(const char *path, vlm_clip *m, vlm_train_state *s, vlm_error *err) {
    return vlm_state_load(path, &m->ps, s, "vlm-train-state", err);
}
