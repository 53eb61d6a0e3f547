// Reading CLIP weights in OpenAI's, open_clip's and Hugging Face's layouts,
// and writing them back (see import.h).
#include "fusion/import.h"
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/fs.h"
#include "fusion/checkpoint.h"
#include "text/tokenizer.h"

void vlm_import_opts_default(vlm_import_opts *o) {
    o->act = -1;
    o->tokenizer = NULL;
}

// ---------------------------------------------------------------- names

static const char *const hf_fixed[][2] = {
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
    {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
    {"ln_final.weight", "text_model.final_layer_norm.weight"},
    {"ln_final.bias", "text_model.final_layer_norm.bias"},
    {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
    {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
    {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
    {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"}, // sic: HF's spelling
    {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"},
    {"visual.ln_post.weight", "vision_model.post_layernorm.weight"},
    {"visual.ln_post.bias", "vision_model.post_layernorm.bias"},
    {"logit_scale", "logit_scale"},
};
static const char *const hf_block[][2] = {
    {"attn.out_proj.weight", "self_attn.out_proj.weight"}, {"attn.out_proj.bias", "self_attn.out_proj.bias"},
    {"ln_1.weight", "layer_norm1.weight"}, {"ln_1.bias", "layer_norm1.bias"},
    {"ln_2.weight", "layer_norm2.weight"}, {"ln_2.bias", "layer_norm2.bias"},
    {"mlp.c_fc.weight", "mlp.fc1.weight"}, {"mlp.c_fc.bias", "mlp.fc1.bias"},
    {"mlp.c_proj.weight", "mlp.fc2.weight"}, {"mlp.c_proj.bias", "mlp.fc2.bias"},
};

const char *vlm_hf_from_openai(const char *name, char *buf, size_t cap) {
    for (size_t i = 0; i < sizeof hf_fixed / sizeof hf_fixed[0]; i++)
        if (!strcmp(name, hf_fixed[i][0])) return snprintf(buf, cap, "%s", hf_fixed[i][1]), buf;
    int vis = !strncmp(name, "visual.", 7), layer, n = 0;
    const char *rest = vis ? name + 7 : name;
    if (sscanf(rest, "transformer.resblocks.%d.%n", &layer, &n) != 1 || !n) return NULL;
    for (size_t i = 0; i < sizeof hf_block / sizeof hf_block[0]; i++)
        if (!strcmp(rest + n, hf_block[i][0])) {
            snprintf(buf, cap, "%s.encoder.layers.%d.%s", vis ? "vision_model" : "text_model", layer, hf_block[i][1]);
            return buf;
        }
    return NULL;
}

// A transposed copy of a 2-D tensor [r, c] -> [c, r].
static float *transposed(const vlm_ftensor *t) {
    const int64_t r = t->shape[0], c = t->shape[1];
    float *d = malloc(sizeof(float) * (size_t)(r * c > 0 ? r * c : 1));
    if (d)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) d[j * r + i] = t->data[i * c + j];
    return d;
}

static vlm_status add_copy(vlm_fset *out, const char *name, const vlm_ftensor *t, vlm_error *err) {
    float *d = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (!d) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    memcpy(d, t->data, sizeof(float) * (size_t)t->numel);
    return vlm_fset_add(out, name, t->ndim, t->shape, t->src, d, err);
}

// q, k, v projections of one layer -> in_proj [3W, ...] under the OpenAI name.
static vlm_status fuse_qkv(const vlm_fset *hf, const char *tower, int layer, const char *kind, const char *oa_name,
                           vlm_fset *out, vlm_error *err) {
    const vlm_ftensor *p[3];
    for (int k = 0; k < 3; k++) {
        char n[256];
        snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.%c_proj.%s", tower, layer, "qkv"[k], kind);
        if (!(p[k] = vlm_fset_find(hf, n))) return vlm_errorf(err, VLM_ERR_FORMAT, "HF weights: %s missing", n);
        if (p[k]->numel != p[0]->numel || p[k]->ndim != p[0]->ndim)
            return vlm_errorf(err, VLM_ERR_SHAPE, "HF weights: %s differs in shape from the q projection", n);
    }
    const int64_t n1 = p[0]->numel;
    float *d = malloc(sizeof(float) * (size_t)(3 * n1));
    if (!d) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    for (int k = 0; k < 3; k++) memcpy(d + k * n1, p[k]->data, sizeof(float) * (size_t)n1);
    int64_t sh[2] = {3 * p[0]->shape[0], p[0]->ndim > 1 ? p[0]->shape[1] : 1};
    return vlm_fset_add(out, oa_name, p[0]->ndim, sh, p[0]->src, d, err);
}

// Hugging Face CLIPModel names -> OpenAI names (q/k/v fused, projections transposed).
static vlm_status from_hf(const vlm_fset *hf, vlm_fset *out, vlm_error *err) {
    memset(out, 0, sizeof *out);
    vlm_status st = VLM_OK;
    for (size_t i = 0; i < sizeof hf_fixed / sizeof hf_fixed[0] && !st; i++) {
        const vlm_ftensor *t = vlm_fset_find(hf, hf_fixed[i][1]);
        if (t) st = add_copy(out, hf_fixed[i][0], t, err);
    }
    const char *proj[2][2] = {{"text_projection.weight", "text_projection"}, {"visual_projection.weight", "visual.proj"}};
    for (int i = 0; i < 2 && !st; i++) {
        const vlm_ftensor *t = vlm_fset_find(hf, proj[i][0]);
        if (!t) continue;
        if (t->ndim != 2) return vlm_errorf(err, VLM_ERR_SHAPE, "HF weights: %s is not 2-D", proj[i][0]);
        float *d = transposed(t);
        int64_t sh[2] = {t->shape[1], t->shape[0]};
        st = d ? vlm_fset_add(out, proj[i][1], 2, sh, t->src, d, err) : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    }
    for (int tw = 0; tw < 2 && !st; tw++) {
        const char *tower = tw ? "vision_model" : "text_model", *pre = tw ? "visual." : "";
        for (int l = 0; !st; l++) {
            char q[256], oa[256], hn[256];
            snprintf(q, sizeof q, "%s.encoder.layers.%d.self_attn.q_proj.weight", tower, l);
            if (!vlm_fset_find(hf, q)) break;
            snprintf(oa, sizeof oa, "%stransformer.resblocks.%d.attn.in_proj_weight", pre, l);
            if ((st = fuse_qkv(hf, tower, l, "weight", oa, out, err))) break;
            snprintf(oa, sizeof oa, "%stransformer.resblocks.%d.attn.in_proj_bias", pre, l);
            if ((st = fuse_qkv(hf, tower, l, "bias", oa, out, err))) break;
            for (size_t i = 0; i < sizeof hf_block / sizeof hf_block[0] && !st; i++) {
                snprintf(oa, sizeof oa, "%stransformer.resblocks.%d.%s", pre, l, hf_block[i][0]);
                const vlm_ftensor *t = vlm_fset_find(hf, vlm_hf_from_openai(oa, hn, sizeof hn));
                if (!t) st = vlm_errorf(err, VLM_ERR_FORMAT, "HF weights: %s missing", hn);
                else st = add_copy(out, oa, t, err);
            }
        }
    }
    if (st) vlm_fset_free(out);
    return st;
}

// Drops a common key prefix ("state_dict.", "module.") in place.
static void strip_prefix(vlm_fset *s, const char *pre) {
    const size_t n = strlen(pre);
    int all = s->n > 0;
    for (int i = 0; i < s->n && all; i++) all = !strncmp(s->t[i].name, pre, n);
    if (!all) {
        // a torch.save dict: keep only what is under the prefix (the state dict), drop the rest (optimizer)
        int any = 0;
        for (int i = 0; i < s->n; i++) any |= !strncmp(s->t[i].name, pre, n);
        if (!any) return;
        int k = 0;
        for (int i = 0; i < s->n; i++) {
            if (!strncmp(s->t[i].name, pre, n)) s->t[k++] = s->t[i];
            else free(s->t[i].name), free(s->t[i].data);
        }
        s->n = k;
    }
    for (int i = 0; i < s->n; i++) memmove(s->t[i].name, s->t[i].name + n, strlen(s->t[i].name) - n + 1);
}

// ---------------------------------------------------------------- config

static int count_layers(const vlm_fset *s, const char *fmt) {
    int n = 0;
    for (;; n++) {
        char name[256];
        snprintf(name, sizeof name, fmt, n);
        if (!vlm_fset_find(s, name)) return n;
    }
}

static const vlm_ftensor *need_t(const vlm_fset *s, const char *name, int ndim, vlm_error *err) {
    const vlm_ftensor *t = vlm_fset_find(s, name);
    if (!t) vlm_errorf(err, VLM_ERR_FORMAT, "weights: %s missing (not an OpenAI-layout ViT CLIP?)", name);
    else if (t->ndim != ndim) vlm_errorf(err, VLM_ERR_SHAPE, "weights: %s has %d dimensions, expected %d", name, t->ndim, ndim), t = NULL;
    return t;
}

vlm_status vlm_clip_cfg_infer(const vlm_fset *s, int heads_v, int heads_t, vlm_act act, vlm_clip_cfg *cfg,
                              vlm_error *err) {
    if (vlm_fset_find(s, "visual.layer1.0.conv1.weight") || vlm_fset_find(s, "visual.attnpool.positional_embedding"))
        return vlm_errorf(err, VLM_ERR_FORMAT, "weights: a ResNet CLIP; vlm reads ViT CLIP models only");
    const vlm_ftensor *conv = need_t(s, "visual.conv1.weight", 4, err), *vpos = conv ? need_t(s, "visual.positional_embedding", 2, err) : NULL,
                      *tp = vpos ? need_t(s, "text_projection", 2, err) : NULL, *pos = tp ? need_t(s, "positional_embedding", 2, err) : NULL,
                      *tok = pos ? need_t(s, "token_embedding.weight", 2, err) : NULL,
                      *lnf = tok ? need_t(s, "ln_final.weight", 1, err) : NULL,
                      *vfc = lnf ? need_t(s, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, err) : NULL,
                      *tfc = vfc ? need_t(s, "transformer.resblocks.0.mlp.c_fc.weight", 2, err) : NULL;
    if (!tfc) return err->status ? err->status : VLM_ERR_FORMAT;
    const int vw = (int)conv->shape[0], patch = (int)conv->shape[3], tw = (int)lnf->shape[0];
    int grid = 0;
    while ((int64_t)(grid + 1) * (grid + 1) <= vpos->shape[0] - 1) grid++;
    if ((int64_t)grid * grid + 1 != vpos->shape[0])
        return vlm_errorf(err, VLM_ERR_SHAPE, "weights: visual.positional_embedding has %lld rows, not a square grid + 1",
                          (long long)vpos->shape[0]);
    const int vl = count_layers(s, "visual.transformer.resblocks.%d.attn.in_proj_weight"),
              tl = count_layers(s, "transformer.resblocks.%d.attn.in_proj_weight");
    if (!heads_v) heads_v = vw / 64 > 0 ? vw / 64 : 1;
    if (!heads_t) heads_t = tw / 64 > 0 ? tw / 64 : 1;
    if (vl < 1 || tl < 1 || vw % heads_v || tw % heads_t)
        return vlm_errorf(err, VLM_ERR_SHAPE, "weights: %d vision / %d text layers, widths %d / %d for %d / %d heads", vl,
                          tl, vw, tw, heads_v, heads_t);
    char json[1024];
    snprintf(json, sizeof json,
             "{\"embed_dim\": %lld, \"quick_gelu\": %s, \"vision_cfg\": {\"image_size\": %d, \"patch_size\": %d, "
             "\"width\": %d, \"heads\": %d, \"layers\": %d, \"mlp_ratio\": %.17g}, \"text_cfg\": {\"context_length\": %lld, "
             "\"vocab_size\": %lld, \"width\": %d, \"heads\": %d, \"layers\": %d, \"mlp_ratio\": %.17g}}",
             (long long)tp->shape[1], act == VLM_ACT_QUICK_GELU ? "true" : "false", grid * patch, patch, vw, heads_v, vl,
             (double)vfc->shape[0] / vw, (long long)pos->shape[0], (long long)tok->shape[0], tw, heads_t, tl,
             (double)tfc->shape[0] / tw);
    vlm_status st = vlm_clip_cfg_from_json(json, cfg, err);
    if (!st && act != VLM_ACT_QUICK_GELU) cfg->vision.act = cfg->text.act = act;
    return st;
}

// Shapes equal but for dimensions of size 1 (a scalar may be [] or [1]).
static int same_shape(const int64_t *a, int na, const int64_t *b, int nb) {
    int i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == 1) i++;
        while (j < nb && b[j] == 1) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return 0;
    }
}

// Copies every model parameter from s (OpenAI names), shapes checked.
static vlm_status load_fset(vlm_clip *m, const vlm_fset *s, vlm_error *err) {
    for (int i = 0; i < m->ps.n; i++) {
        vlm_param *p = &m->ps.p[i];
        const vlm_ftensor *t = vlm_fset_find(s, p->name);
        if (!t) {
            if (i == m->logit_bias) continue; // a CLIP file for a SigLIP model: the bias keeps its init
            return vlm_errorf(err, VLM_ERR_FORMAT, "tensor %s missing", p->name);
        }
        if (!same_shape(t->shape, t->ndim, p->t.shape, p->t.ndim))
            return vlm_errorf(err, VLM_ERR_SHAPE, "tensor %s has another shape than the config gives", p->name);
        memcpy(p->t.data, t->data, sizeof(float) * (size_t)p->numel);
    }
    return VLM_OK;
}

// ---------------------------------------------------------------- formats

static vlm_status read_gguf(const char *path, vlm_fset *s, int *hv, int *ht, int *act, char **tok, vlm_error *err);

static int is_dir(const char *p) {
    struct stat sb;
    return !stat(p, &sb) && S_ISDIR(sb.st_mode);
}

static int exists(const char *p) {
    struct stat sb;
    return !stat(p, &sb);
}

static int starts_with_bytes(const char *path, const char *magic, size_t n) {
    FILE *f = fopen(path, "rb");
    char b[8] = {0};
    size_t got = f ? fread(b, 1, n, f) : 0;
    if (f) fclose(f);
    return got == n && !memcmp(b, magic, n);
}

static int has_hf_names(const vlm_fset *s) {
    return vlm_fset_find(s, "text_model.embeddings.token_embedding.weight") ||
           vlm_fset_find(s, "vision_model.embeddings.patch_embedding.weight");
}

// A whole JSON file (jansson), or NULL with err set.
static json_t *load_json(const char *path, vlm_error *err) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) vlm_errorf(err, VLM_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    return j;
}

// HF config.json: heads and activation.
static vlm_status hf_config(const char *dir, int *hv, int *ht, int *act, vlm_error *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *j = load_json(p, err);
    if (!j) return err->status;
    json_t *tc = json_object_get(j, "text_config"), *vc = json_object_get(j, "vision_config");
    *ht = (int)json_integer_value(json_object_get(tc, "num_attention_heads"));
    *hv = (int)json_integer_value(json_object_get(vc, "num_attention_heads"));
    const char *a = json_string_value(json_object_get(vc, "hidden_act"));
    if (*act < 0) *act = a && !strcmp(a, "gelu") ? VLM_ACT_GELU : VLM_ACT_QUICK_GELU; // HF's default is quick_gelu
    json_decref(j);
    if (*hv <= 0 || *ht <= 0) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: num_attention_heads missing", p);
    return VLM_OK;
}

// The weights of path in OpenAI names (*s), with what the format says about heads and activation.
static vlm_status read_any(const char *path, vlm_fset *s, int *hv, int *ht, int *act, char **tok, char *what,
                           size_t wcap, vlm_error *err) {
    char p[1200];
    vlm_status st;
    vlm_fset raw = {0};
    if (is_dir(path)) {
        snprintf(p, sizeof p, "%s/open_clip_config.json", path);
        if (exists(p)) { // open_clip hub folder: the config's heads and activation
            json_t *j = load_json(p, err);
            if (!j) return err->status;
            vlm_clip_cfg c;
            char *mc = json_dumps(json_object_get(j, "model_cfg"), 0);
            st = mc ? vlm_clip_cfg_from_json(mc, &c, err) : vlm_errorf(err, VLM_ERR_FORMAT, "%s: no model_cfg", p);
            free(mc);
            json_decref(j);
            if (st) return st;
            *hv = c.vision.heads, *ht = c.text.heads;
            if (*act < 0) *act = c.vision.act;
            snprintf(p, sizeof p, "%s/open_clip_model.safetensors", path);
            snprintf(what, wcap, "open_clip hub folder");
            return vlm_fset_read_safetensors(p, s, err);
        }
        snprintf(p, sizeof p, "%s/config.json", path);
        if (!exists(p))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: a folder without open_clip_config.json or config.json (HF)", path);
        if ((st = hf_config(path, hv, ht, act, err))) return st;
        snprintf(p, sizeof p, "%s/model.safetensors", path);
        if (exists(p)) st = vlm_fset_read_safetensors(p, &raw, err);
        else {
            snprintf(p, sizeof p, "%s/pytorch_model.bin", path);
            st = vlm_fset_read_torch(p, &raw, err);
        }
        if (!st) {
            snprintf(p, sizeof p, "%s/merges.txt", path);
            if (tok && !*tok && exists(p)) st = vlm_tokenizer_read_merges(p, tok, err);
        }
        snprintf(what, wcap, "Hugging Face CLIPModel folder");
    } else if (starts_with_bytes(path, "GGUF", 4)) {
        snprintf(what, wcap, "GGUF file");
        return read_gguf(path, s, hv, ht, act, tok, err);
    } else if (starts_with_bytes(path, "PK\003\004", 4)) {
        if ((st = vlm_fset_read_torch(path, &raw, err))) return st;
        int ts = raw.info && !strncmp(raw.info, "__torch__.", 10);
        if (*act < 0) *act = ts || (raw.info && strstr(raw.info, "quickgelu")) ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
        if (ts) snprintf(what, wcap, "OpenAI TorchScript archive (%s)", raw.info);
        else snprintf(what, wcap, "PyTorch checkpoint%s%s", raw.info ? ", name " : "", raw.info ? raw.info : "");
        strip_prefix(&raw, "state_dict.");
        strip_prefix(&raw, "module.");
    } else {
        st = vlm_fset_read_safetensors(path, &raw, err);
        if (*act < 0) *act = VLM_ACT_QUICK_GELU; // OpenAI's layout, OpenAI's activation
        snprintf(what, wcap, "safetensors state dict");
    }
    if (st) return vlm_fset_free(&raw), st;
    if (has_hf_names(&raw)) {
        st = from_hf(&raw, s, err);
        vlm_fset_free(&raw);
        return st;
    }
    *s = raw;
    return VLM_OK;
}

// OpenAI's vocabulary file or a merges.txt beside the weights (in the folder,
// for a folder): the tokenizer that goes with them. None found: *tok stays NULL.
static vlm_status beside_tokenizer(const char *path, char **tok, vlm_error *err) {
    char dir[1100], p[1200];
    if (is_dir(path)) snprintf(dir, sizeof dir, "%s", path);
    else {
        const char *sl = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", sl ? (int)(sl - path) : 1, sl ? path : ".");
    }
    static const char *names[] = {"bpe_simple_vocab_16e6.txt.gz", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (exists(p)) return vlm_tokenizer_read_merges(p, tok, err);
    }
    return VLM_OK;
}

vlm_status vlm_clip_import(const char *path, const vlm_import_opts *o, vlm_clip *m, char **tokenizer_text, char *what,
                           size_t what_cap, vlm_error *err) {
    char wbuf[256];
    if (!what) what = wbuf, what_cap = sizeof wbuf;
    if (tokenizer_text) *tokenizer_text = NULL;
    vlm_status st;
    if (vlm_ckpt_is_vlm(path)) {
        snprintf(what, what_cap, "vlm model file");
        if ((st = vlm_ckpt_load_vlm(path, m, tokenizer_text, err))) return st;
        goto tokenizer;
    }
    vlm_fset s = {0};
    int hv = 0, ht = 0, act = o ? o->act : -1;
    char *tok = NULL;
    if ((st = read_any(path, &s, &hv, &ht, &act, tokenizer_text ? &tok : NULL, what, what_cap, err))) return st;
    vlm_clip_cfg cfg;
    if (!(st = vlm_clip_cfg_infer(&s, hv, ht, (vlm_act)act, &cfg, err)) && !(st = vlm_clip_init(m, &cfg, err)) &&
        (st = load_fset(m, &s, err)))
        vlm_clip_free(m);
    vlm_fset_free(&s);
    if (st) return free(tok), vlm_error_prefix(err, "%s", path);
    if (tokenizer_text) *tokenizer_text = tok;
    if (tokenizer_text && !*tokenizer_text && !(o && o->tokenizer) && (st = beside_tokenizer(path, tokenizer_text, err)))
        return vlm_clip_free(m), st;
tokenizer:
    if (o && o->tokenizer && tokenizer_text) { // an explicit tokenizer replaces the file's
        free(*tokenizer_text);
        *tokenizer_text = NULL;
        if ((st = vlm_tokenizer_read_merges(o->tokenizer, tokenizer_text, err))) return vlm_clip_free(m), st;
    }
    return VLM_OK;
}

// ---------------------------------------------------------------- export

int vlm_export_parse(const char *name) {
    static const char *n[] = {"vlm", "hf", "open_clip", "gguf"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, n[i])) return i;
    return -1;
}

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static vlm_status write_json(const char *dir, const char *file, json_t *j, vlm_error *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int bad = !j || json_dump_file(j, p, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    return bad ? vlm_errorf(err, VLM_ERR_IO, "%s: cannot write", p) : VLM_OK;
}

static vlm_status write_text(const char *dir, const char *file, const char *text, vlm_error *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: %s", p, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? vlm_errorf(err, VLM_ERR_IO, "%s: write failed", p) : VLM_OK;
}

static vlm_status make_dir(const char *dir, vlm_error *err) {
    if (mkdir(dir, 0755) && errno != EEXIST) return vlm_errorf(err, VLM_ERR_IO, "%s: %s", dir, strerror(errno));
    return VLM_OK;
}

static json_t *mean_std(const float *v) { return json_pack("[f, f, f]", (double)v[0], (double)v[1], (double)v[2]); }

static vlm_status export_open_clip(const vlm_clip *m, const char *dir, vlm_error *err) {
    vlm_status st = make_dir(dir, err);
    if (st) return st;
    char *cfg = vlm_clip_cfg_to_json(&m->cfg);
    json_error_t je;
    json_t *mc = cfg ? json_loads(cfg, 0, &je) : NULL;
    free(cfg);
    if (!mc) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if ((st = write_json(dir, "open_clip_config.json",
                         json_pack("{s:o, s:{s:o, s:o}}", "model_cfg", mc, "preprocess_cfg", "mean", mean_std(clip_mean),
                                   "std", mean_std(clip_std)),
                         err)))
        return st;
    vlm_st_tensor *t = malloc(sizeof *t * (size_t)m->ps.n);
    if (!t) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    for (int i = 0; i < m->ps.n; i++)
        t[i] = (vlm_st_tensor){m->ps.p[i].name, VLM_F32, m->ps.p[i].t.ndim, m->ps.p[i].t.shape, m->ps.p[i].t.data};
    char p[1200];
    snprintf(p, sizeof p, "%s/open_clip_model.safetensors", dir);
    st = vlm_st_write(p, t, m->ps.n, NULL, NULL, 0, err);
    free(t);
    return st;
}

// GPT-2's byte-to-unicode table (CLIP's vocab.json spells bytes with it):
// printable bytes stand for themselves, the others for 256 + n in byte order.
static int byte_cp(int b) {
    int n = 0;
    for (int x = 0; x < 256; x++) {
        int printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
        if (x == b) return printable ? x : 256 + n;
        if (!printable) n++;
    }
    return -1;
}

static size_t put_utf8(char *o, int cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    return o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)), o[2] = (char)(0x80 | (cp & 63)), 3;
}

// CLIP's vocabulary from the merges text, in id order: 256 byte tokens in
// bytes_to_unicode order, the same with "</w>", one per merge (the merges
// CLIP's tokenizer uses), then SOT and EOT. *merges_end: where the used merges
// end in the text (after the header line and them).
static char **clip_vocab(const char *merges, int *n, const char **merges_end, vlm_error *err) {
    vlm_tokenizer tk; // the merges CLIP's tokenizer uses (OpenAI's file has far more lines than it reads)
    if (vlm_tokenizer_init_from_memory(&tk, merges, strlen(merges), err)) return NULL;
    const int n_merges = vlm_tokenizer_n_merges(&tk), total = 512 + n_merges + 2;
    vlm_tokenizer_free(&tk);
    char **v = calloc((size_t)total, sizeof *v);
    if (!v) return vlm_errorf(err, VLM_ERR_OOM, "out of memory"), NULL;
    int bytes_order[256], nb = 0, id = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int x = 0; x < 256; x++) {
            int printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            if (printable == !pass) bytes_order[nb++] = x;
        }
    char tokb[512];
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 256; i++) {
            size_t k = put_utf8(tokb, byte_cp(bytes_order[i]));
            snprintf(tokb + k, sizeof tokb - k, "%s", w ? "</w>" : "");
            v[id++] = strdup(tokb);
        }
    const char *p = strchr(merges, '\n');
    for (p = p ? p + 1 : merges; *p && id < 512 + n_merges;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p), k = 0;
        for (size_t i = 0; i < len && k + 1 < sizeof tokb; i++)
            if (p[i] != ' ') tokb[k++] = p[i];
        tokb[k] = 0;
        if (len) v[id++] = strdup(tokb);
        p = e ? e + 1 : p + len;
    }
    if (merges_end) *merges_end = p;
    v[id++] = strdup("<|startoftext|>");
    v[id++] = strdup("<|endoftext|>");
    *n = id;
    for (int i = 0; i < id; i++)
        if (!v[i]) return vlm_strlist_free(v, id), vlm_errorf(err, VLM_ERR_OOM, "out of memory"), NULL;
    return v;
}

// vocab.json and merges.txt (CLIP's ids, the merges it uses).
static vlm_status export_hf_tokenizer(const char *dir, const char *merges, vlm_error *err) {
    int n = 0;
    const char *end = NULL;
    char **voc = clip_vocab(merges, &n, &end, err);
    if (!voc) return err->status;
    json_t *v = json_object();
    for (int i = 0; v && i < n; i++) json_object_set_new(v, voc[i], json_integer(i));
    vlm_strlist_free(voc, n);
    vlm_status st = v ? write_json(dir, "vocab.json", v, err) : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    if (st) return st;
    char *mt = strndup(merges, (size_t)(end - merges)); // header + the merges used
    if (!mt) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    st = write_text(dir, "merges.txt", mt, err);
    free(mt);
    return st;
}

static vlm_status export_hf_config(const vlm_clip *m, const char *dir, vlm_error *err) {
    const vlm_clip_cfg *c = &m->cfg;
    const char *act = c->vision.act == VLM_ACT_QUICK_GELU ? "quick_gelu" : "gelu";
    json_t *j = json_pack(
        "{s:[s], s:s, s:i, s:f, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:i, s:i, s:i}, "
        "s:{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:i, s:i}, s:s}",
        "architectures", "CLIPModel", "model_type", "clip", "projection_dim", c->embed_dim, "logit_scale_init_value",
        2.6592, "text_config", "hidden_size", c->text.width, "intermediate_size", c->text.mlp_width,
        "num_attention_heads", c->text.heads, "num_hidden_layers", c->text.layers, "max_position_embeddings",
        c->text.context_length, "vocab_size", c->text.vocab_size, "hidden_act", act, "layer_norm_eps", 1e-5,
        "projection_dim", c->embed_dim, "bos_token_id", c->text.vocab_size - 2, "eos_token_id", c->text.vocab_size - 1,
        "vision_config", "hidden_size", c->vision.width, "intermediate_size", c->vision.mlp_width, "num_attention_heads",
        c->vision.heads, "num_hidden_layers", c->vision.layers, "image_size", c->vision.image_size, "patch_size",
        c->vision.patch_size, "hidden_act", act, "layer_norm_eps", 1e-5, "num_channels", 3, "projection_dim",
        c->embed_dim, "torch_dtype", "float32");
    vlm_status st = write_json(dir, "config.json", j, err);
    if (st) return st;
    const int S = c->vision.image_size;
    st = write_json(dir, "preprocessor_config.json",
                    json_pack("{s:{s:i, s:i}, s:b, s:b, s:b, s:b, s:o, s:o, s:i, s:f, s:{s:i}, s:s}", "crop_size",
                              "height", S, "width", S, "do_center_crop", 1, "do_normalize", 1, "do_resize", 1,
                              "do_rescale", 1, "image_mean", mean_std(clip_mean), "image_std", mean_std(clip_std),
                              "resample", 3, "rescale_factor", 1.0 / 255, "size", "shortest_edge", S,
                              "image_processor_type", "CLIPImageProcessor"),
                    err);
    if (st) return st;
    return write_json(dir, "tokenizer_config.json",
                      json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:b}", "model_max_length", c->text.context_length,
                                "bos_token", "<|startoftext|>", "eos_token", "<|endoftext|>", "unk_token",
                                "<|endoftext|>", "pad_token", "<|endoftext|>", "tokenizer_class", "CLIPTokenizer",
                                "do_lower_case", 1),
                      err);
}

// The model's tensors under HF names: in_proj split into q/k/v, projections
// transposed (copies owned here), the rest pointing into the model.
typedef struct {
    vlm_st_tensor *t;
    char (*names)[160];
    int64_t (*shapes)[2];
    float **owned;
    int n, cap;
} hf_tensors;

static void hf_tensors_free(hf_tensors *h) {
    for (int i = 0; h->owned && i < h->cap; i++) free(h->owned[i]);
    free(h->t), free(h->names), free(h->shapes), free(h->owned);
    memset(h, 0, sizeof *h);
}

static vlm_status hf_tensors_make(const vlm_clip *m, hf_tensors *h, vlm_error *err) {
    memset(h, 0, sizeof *h);
    h->cap = m->ps.n + 4 * (m->cfg.vision.layers + m->cfg.text.layers);
    h->t = calloc((size_t)h->cap, sizeof *h->t);
    h->names = calloc((size_t)h->cap, sizeof *h->names);
    h->shapes = calloc((size_t)h->cap, sizeof *h->shapes);
    h->owned = calloc((size_t)h->cap, sizeof *h->owned);
    vlm_status st = h->t && h->names && h->shapes && h->owned ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    int k = 0;
    for (int i = 0; i < m->ps.n && !st; i++) {
        const vlm_param *p = &m->ps.p[i];
        const char *nm = p->name;
        size_t L = strlen(nm);
        if (i == m->logit_bias) continue;
        if (!strcmp(nm, "text_projection") || !strcmp(nm, "visual.proj")) {
            vlm_ftensor ft = {.ndim = 2, .shape = {p->t.shape[0], p->t.shape[1]}, .data = p->t.data};
            if (!(h->owned[k] = transposed(&ft))) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
            snprintf(h->names[k], 160, "%s", nm[0] == 't' ? "text_projection.weight" : "visual_projection.weight");
            h->shapes[k][0] = p->t.shape[1], h->shapes[k][1] = p->t.shape[0];
            h->t[k] = (vlm_st_tensor){h->names[k], VLM_F32, 2, h->shapes[k], h->owned[k]};
            k++;
        } else if (L > 14 && (!strcmp(nm + L - 14, "in_proj_weight") || !strcmp(nm + L - 12, "in_proj_bias"))) {
            int w = !strcmp(nm + L - 14, "in_proj_weight");
            char base[200], hn[200];
            snprintf(base, sizeof base, "%.*sout_proj.%s", (int)(L - (w ? 14 : 12)), nm, w ? "weight" : "bias");
            if (!vlm_hf_from_openai(base, hn, sizeof hn)) st = vlm_errorf(err, VLM_ERR_STATE, "no HF name for %s", nm);
            const int64_t rows = p->t.shape[0] / 3, cols = w ? p->t.shape[1] : 1;
            for (int q = 0; q < 3 && !st; q++) {
                char *o = strstr(hn, "out_proj");
                snprintf(h->names[k], 160, "%.*s%c_proj%s", (int)(o - hn), hn, "qkv"[q], o + 8);
                h->shapes[k][0] = rows, h->shapes[k][1] = cols;
                h->t[k] = (vlm_st_tensor){h->names[k], VLM_F32, w ? 2 : 1, h->shapes[k], (float *)p->t.data + q * rows * cols};
                k++;
            }
        } else {
            if (!vlm_hf_from_openai(nm, h->names[k], 160)) st = vlm_errorf(err, VLM_ERR_STATE, "no HF name for %s", nm);
            h->t[k] = (vlm_st_tensor){h->names[k], VLM_F32, p->t.ndim, p->t.shape, p->t.data};
            k++;
        }
    }
    h->n = k;
    if (st) hf_tensors_free(h);
    return st;
}

// model.safetensors with HF names.
static vlm_status export_hf_weights(const vlm_clip *m, const char *dir, vlm_error *err) {
    hf_tensors h;
    vlm_status st = hf_tensors_make(m, &h, err);
    if (st) return st;
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    st = vlm_st_write(path, h.t, h.n, mk, mv, 1, err);
    hf_tensors_free(&h);
    return st;
}

// ---------------------------------------------------------------- GGUF

// GGUF value types and ggml tensor types used here (ggml's docs/gguf.md).
enum { GG_U32 = 4, GG_I32 = 5, GG_F32 = 6, GG_BOOL = 7, GG_STR = 8, GG_ARR = 9, GG_U64 = 10 };
enum { GGML_F32 = 0, GGML_F16 = 1 };
#define GGUF_ALIGN 32

// clip.cpp's tensor name for an HF name: kept if it names a projection, else
// its chain of replacements (text_model -> t, encoder.layers -> blk, ...).
static void gguf_name(const char *hf, char *out, size_t cap) {
    static const char *rep[][2] = {{"text_model", "t"}, {"vision_model", "v"}, {"encoder.layers", "blk"},
                                   {"embeddings.", ""}, {"_proj", ""}, {"self_attn.", "attn_"}, {"layer_norm", "ln"},
                                   {"layernorm", "ln"}, {"mlp.fc1", "ffn_down"}, {"mlp.fc2", "ffn_up"},
                                   {"embedding", "embd"}, {"final", "post"}, {"layrnorm", "ln"}};
    snprintf(out, cap, "%s", hf);
    if (strstr(hf, "projection")) return;
    for (size_t r = 0; r < sizeof rep / sizeof rep[0]; r++) {
        char *p, tmp[256];
        while ((p = strstr(out, rep[r][0]))) {
            snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - out), out, rep[r][1], p + strlen(rep[r][0]));
            snprintf(out, cap, "%s", tmp);
        }
    }
}

typedef struct {
    FILE *f;
    int bad;
} gw;

static void w_raw(gw *w, const void *p, size_t n) { w->bad |= fwrite(p, 1, n, w->f) != n; }
static void w_u32(gw *w, uint32_t v) { w_raw(w, &v, 4); }
static void w_u64(gw *w, uint64_t v) { w_raw(w, &v, 8); }
static void w_str(gw *w, const char *s) { w_u64(w, strlen(s)), w_raw(w, s, strlen(s)); }
static void kv_u32(gw *w, const char *k, uint32_t v) { w_str(w, k), w_u32(w, GG_U32), w_u32(w, v); }
static void kv_f32(gw *w, const char *k, float v) { w_str(w, k), w_u32(w, GG_F32), w_raw(w, &v, 4); }
static void kv_bool(gw *w, const char *k, int v) { uint8_t b = (uint8_t)!!v; w_str(w, k), w_u32(w, GG_BOOL), w_raw(w, &b, 1); }
static void kv_str(gw *w, const char *k, const char *v) { w_str(w, k), w_u32(w, GG_STR), w_str(w, v); }
static void kv_f32s(gw *w, const char *k, const float *v, int n) {
    w_str(w, k), w_u32(w, GG_ARR), w_u32(w, GG_F32), w_u64(w, (uint64_t)n), w_raw(w, v, 4 * (size_t)n);
}
static void kv_strs(gw *w, const char *k, char **v, int n) {
    w_str(w, k), w_u32(w, GG_ARR), w_u32(w, GG_STR), w_u64(w, (uint64_t)n);
    for (int i = 0; i < n; i++) w_str(w, v[i]);
}

static uint16_t f32_to_f16(float f) { // round to nearest even
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 255, m = x & 0x7fffff;
    if (e == 255) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
    int ex = (int)e - 127 + 15;
    if (ex >= 31) return (uint16_t)(sign | 0x7c00);
    if (ex <= 0) {
        if (ex < -10) return (uint16_t)sign;
        m |= 0x800000;
        int sh = 14 - ex;
        uint32_t h = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = (uint32_t)ex << 10 | m >> 13, rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

// f16 files follow clip.cpp's rule: 4-D tensors and 2-D ".weight" matrices f16, the rest f32.
static int gguf_is_f16(const vlm_st_tensor *t, int f16) {
    size_t L = strlen(t->name);
    return f16 && (t->ndim == 4 || (t->ndim == 2 && L > 7 && !strcmp(t->name + L - 7, ".weight")));
}

static void gguf_keys(gw *w, const vlm_clip *m, const char *tok, int f16, int n_tensors, vlm_error *err) {
    const vlm_clip_cfg *c = &m->cfg;
    w_raw(w, "GGUF", 4), w_u32(w, 3), w_u64(w, (uint64_t)n_tensors);
    int nvoc = 0;
    char **voc = tok ? clip_vocab(tok, &nvoc, NULL, err) : NULL;
    w_u64(w, 27 + (voc ? 2 : 0));
    kv_str(w, "general.architecture", "clip");
    kv_bool(w, "clip.has_text_encoder", 1), kv_bool(w, "clip.has_vision_encoder", 1);
    kv_u32(w, "general.file_type", f16 ? 1 : 0);
    kv_str(w, "general.name", "vlm CLIP"), kv_str(w, "general.description", "two-tower CLIP model");
    kv_u32(w, "clip.text.context_length", (uint32_t)c->text.context_length);
    kv_u32(w, "clip.text.embedding_length", (uint32_t)c->text.width);
    kv_u32(w, "clip.text.feed_forward_length", (uint32_t)c->text.mlp_width);
    kv_u32(w, "clip.text.projection_dim", (uint32_t)c->embed_dim);
    kv_u32(w, "clip.text.attention.head_count", (uint32_t)c->text.heads);
    kv_f32(w, "clip.text.attention.layer_norm_epsilon", 1e-5f);
    kv_u32(w, "clip.text.block_count", (uint32_t)c->text.layers);
    kv_u32(w, "clip.vision.image_size", (uint32_t)c->vision.image_size);
    kv_u32(w, "clip.vision.patch_size", (uint32_t)c->vision.patch_size);
    kv_u32(w, "clip.vision.embedding_length", (uint32_t)c->vision.width);
    kv_u32(w, "clip.vision.feed_forward_length", (uint32_t)c->vision.mlp_width);
    kv_u32(w, "clip.vision.projection_dim", (uint32_t)c->embed_dim);
    kv_u32(w, "clip.vision.attention.head_count", (uint32_t)c->vision.heads);
    kv_f32(w, "clip.vision.attention.layer_norm_epsilon", 1e-5f);
    kv_u32(w, "clip.vision.block_count", (uint32_t)c->vision.layers);
    kv_f32s(w, "clip.vision.image_mean", clip_mean, 3), kv_f32s(w, "clip.vision.image_std", clip_std, 3);
    kv_bool(w, "clip.use_gelu", c->vision.act == VLM_ACT_GELU);
    kv_u32(w, "clip.text.vocab_size", (uint32_t)c->text.vocab_size);  // vlm's: a vocabulary other than CLIP's
    kv_f32(w, "clip.logit_scale", *(const float *)m->ps.p[m->logit_scale].t.data); // vlm's: exact round trips
    kv_u32(w, "general.alignment", GGUF_ALIGN);
    if (voc) {
        kv_strs(w, "tokenizer.ggml.tokens", voc, nvoc);
        // the merges themselves ("a b"), so a reader gets the tokenizer back exactly
        char **mg = calloc((size_t)(nvoc - 514 > 0 ? nvoc - 514 : 1), sizeof *mg);
        const char *p = strchr(tok, '\n');
        int nm = 0;
        for (p = p ? p + 1 : tok; mg && *p && nm < nvoc - 514;) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len) mg[nm++] = strndup(p, len);
            p = e ? e + 1 : p + len;
        }
        kv_strs(w, "tokenizer.ggml.merges", mg, nm);
        vlm_strlist_free(mg, nm);
        vlm_strlist_free(voc, nvoc);
    }
}

static vlm_status vlm_gguf_write_clip(const vlm_clip *m, const char *tok, int f16, const char *path, vlm_error *err) {
    hf_tensors h;
    vlm_status st = hf_tensors_make(m, &h, err);
    if (st) return st;
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    gw w = {fopen(tmp, "wb"), 0};
    if (!w.f) return hf_tensors_free(&h), vlm_errorf(err, VLM_ERR_IO, "%s: %s", tmp, strerror(errno));
    int n = 0;
    for (int i = 0; i < h.n; i++) n += strcmp(h.t[i].name, "logit_scale") != 0;
    gguf_keys(&w, m, tok, f16, n, err);
    uint64_t off = 0;
    for (int i = 0; i < h.n; i++) { // tensor infos: name, dims (innermost first), type, offset
        const vlm_st_tensor *t = &h.t[i];
        if (!strcmp(t->name, "logit_scale")) continue;
        char g[256];
        gguf_name(t->name, g, sizeof g);
        w_str(&w, g), w_u32(&w, (uint32_t)t->ndim);
        int64_t numel = 1;
        for (int d = t->ndim - 1; d >= 0; d--) w_u64(&w, (uint64_t)t->shape[d]), numel *= t->shape[d];
        int is16 = gguf_is_f16(t, f16);
        w_u32(&w, is16 ? GGML_F16 : GGML_F32), w_u64(&w, off);
        off += ((uint64_t)numel * (is16 ? 2 : 4) + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    static const uint8_t zeros[GGUF_ALIGN];
    long pos = ftell(w.f);
    w_raw(&w, zeros, (size_t)((GGUF_ALIGN - pos % GGUF_ALIGN) % GGUF_ALIGN));
    for (int i = 0; i < h.n && !w.bad; i++) {
        const vlm_st_tensor *t = &h.t[i];
        if (!strcmp(t->name, "logit_scale")) continue;
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        const float *x = t->data;
        size_t bytes;
        if (gguf_is_f16(t, f16)) {
            for (int64_t j = 0; j < numel; j++) {
                uint16_t v = f32_to_f16(x[j]);
                w_raw(&w, &v, 2);
            }
            bytes = (size_t)numel * 2;
        } else
            w_raw(&w, x, (size_t)numel * 4), bytes = (size_t)numel * 4;
        w_raw(&w, zeros, (GGUF_ALIGN - bytes % GGUF_ALIGN) % GGUF_ALIGN);
    }
    hf_tensors_free(&h);
    w.bad |= fflush(w.f) != 0 || fsync(fileno(w.f)) != 0;
    w.bad |= fclose(w.f) != 0;
    if (w.bad || err->status) {
        unlink(tmp);
        return err->status ? err->status : vlm_errorf(err, VLM_ERR_IO, "%s: write failed", path);
    }
    return vlm_fs_commit(tmp, path, err);
}

// ---- reading GGUF back

typedef struct {
    const uint8_t *p, *end;
    int bad;
} gr;

static uint64_t r_n(gr *r, int n) {
    if (r->bad || (size_t)(r->end - r->p) < (size_t)n) return r->bad = 1, 0;
    uint64_t v = 0;
    memcpy(&v, r->p, (size_t)n);
    r->p += n;
    return v;
}

static char *r_str(gr *r) {
    uint64_t n = r_n(r, 8);
    if (r->bad || n > (uint64_t)(r->end - r->p) || n > (1u << 20)) return r->bad = 1, NULL;
    char *s = strndup((const char *)r->p, (size_t)n);
    r->p += n;
    return s;
}

// Skips (or keeps, for the keys vlm reads) one value of type ty.
typedef struct {
    int64_t u[16];
    float f;
    int have_f;
    char **merges;
    int n_merges;
} gg_meta;

static const char *gg_keys[] = {"clip.vision.attention.head_count", "clip.text.attention.head_count", "clip.use_gelu",
                                "clip.vision.patch_size", "clip.vision.image_size"};

static void r_value(gr *r, uint32_t ty, const char *key, gg_meta *m, int depth) {
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (ty == GG_STR) {
        free(r_str(r));
        return;
    }
    if (ty == GG_ARR) {
        uint32_t et = (uint32_t)r_n(r, 4);
        uint64_t n = r_n(r, 8);
        if (depth > 0 || et == GG_ARR || et > 12 || n > (1u << 26)) return (void)(r->bad = 1);
        int keep = key && !strcmp(key, "tokenizer.ggml.merges") && et == GG_STR;
        if (keep && m->merges) return (void)(r->bad = 1); // a second merges key: refused (the array is sized once)
        if (keep && !(m->merges = calloc((size_t)n + 1, sizeof *m->merges))) return (void)(r->bad = 1);
        for (uint64_t i = 0; i < n && !r->bad; i++) {
            if (keep) m->merges[m->n_merges++] = r_str(r);
            else r_value(r, et, NULL, m, 1);
        }
        return;
    }
    if (ty > 12) return (void)(r->bad = 1);
    uint64_t v = r_n(r, size[ty]);
    for (size_t k = 0; key && k < sizeof gg_keys / sizeof gg_keys[0]; k++)
        if (!strcmp(key, gg_keys[k])) m->u[k] = (int64_t)v;
    if (key && !strcmp(key, "clip.logit_scale") && ty == GG_F32) memcpy(&m->f, &v, 4), m->have_f = 1;
}

// HF name for a clip.cpp tensor name (the inverse of gguf_name for CLIP's tensors).
static void hf_of_gguf(const char *g, char *out, size_t cap) {
    static const char *rep[][2] = {
        {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
        {"attn_out", "self_attn.out_proj"}, {"ln1", "layer_norm1"}, {"ln2", "layer_norm2"},
        {"ffn_down", "mlp.fc1"}, {"ffn_up", "mlp.fc2"}, {"token_embd", "embeddings.token_embedding"},
        {"position_embd", "embeddings.position_embedding"}, {"patch_embd", "embeddings.patch_embedding"},
        {"class_embd", "embeddings.class_embedding"}, {"pre_ln", "pre_layrnorm"}};
    if (!g) g = "";
    if (strstr(g, "projection") || strlen(g) < 3) return (void)snprintf(out, cap, "%s", g); // (short: no prefix to strip)
    int vis = g[0] == 'v';
    char rest[256];
    snprintf(rest, sizeof rest, "%s", g + 2);
    int layer, n = 0;
    char buf[256];
    if (sscanf(rest, "blk.%d.%n", &layer, &n) == 1 && n) {
        snprintf(buf, sizeof buf, "encoder.layers.%d.%s", layer, rest + n);
        snprintf(rest, sizeof rest, "%s", buf);
    }
    if (!strncmp(rest, "post_ln", 7)) {
        snprintf(buf, sizeof buf, "%s%s", vis ? "post_layernorm" : "final_layer_norm", rest + 7);
        snprintf(rest, sizeof rest, "%s", buf);
    }
    for (size_t r = 0; r < sizeof rep / sizeof rep[0]; r++) {
        char *p = strstr(rest, rep[r][0]);
        if (!p) continue;
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - rest), rest, rep[r][1], p + strlen(rep[r][0]));
        snprintf(rest, sizeof rest, "%s", buf);
        break;
    }
    snprintf(out, cap, "%s.%s", vis ? "vision_model" : "text_model", rest);
}

// A GGUF CLIP (f32/f16 tensors) as OpenAI-named tensors, with heads,
// activation and (vlm's files) the merges.
static vlm_status read_gguf(const char *path, vlm_fset *s, int *hv, int *ht, int *act, char **tok, vlm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = size > 0 ? malloc((size_t)size) : NULL;
    int ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok) return free(buf), vlm_errorf(err, VLM_ERR_IO, "%s: cannot read", path);
    gr r = {buf + 4, buf + size, 0};
    gg_meta m = {0};
    uint32_t ver = (uint32_t)r_n(&r, 4);
    uint64_t nt = r_n(&r, 8), nkv = r_n(&r, 8), align = GGUF_ALIGN;
    if (ver < 2 || ver > 3 || nt > (1u << 20) || nkv > (1u << 20)) r.bad = 1;
    for (uint64_t i = 0; i < nkv && !r.bad; i++) {
        char *k = r_str(&r);
        uint32_t ty = (uint32_t)r_n(&r, 4);
        if (k && !strcmp(k, "general.alignment") && ty == GG_U32) align = r_n(&r, 4);
        else r_value(&r, ty, k, &m, 0);
        free(k);
    }
    if (!align || (align & (align - 1)) || align > (1u << 20)) r.bad = 1, align = GGUF_ALIGN; // (never divide by 0)
    vlm_fset hf = {0};
    typedef struct { char *name; int nd, ty; int64_t sh[4]; uint64_t off; } info;
    uint64_t nti = nt && !r.bad ? nt : 1; // entries of ti (nt is only trusted once checked)
    info *ti = calloc((size_t)nti, sizeof *ti);
    vlm_status st = ti ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    for (uint64_t i = 0; i < nt && !r.bad && !st; i++) {
        ti[i].name = r_str(&r);
        ti[i].nd = (int)r_n(&r, 4);
        if (ti[i].nd < 1 || ti[i].nd > 4) { r.bad = 1; break; }
        for (int d = ti[i].nd - 1; d >= 0; d--) ti[i].sh[d] = (int64_t)r_n(&r, 8);
        ti[i].ty = (int)r_n(&r, 4), ti[i].off = r_n(&r, 8);
    }
    size_t data = (size_t)(r.p - buf + align - 1) / align * align;
    for (uint64_t i = 0; i < nt && !r.bad && !st; i++) {
        int64_t numel = 1;
        for (int d = 0; d < ti[i].nd && !r.bad; d++) { // (stops before the product could overflow)
            if (ti[i].sh[d] < 0 || ti[i].sh[d] > (1LL << 32)) r.bad = 1;
            else if ((numel *= ti[i].sh[d]) > (1LL << 36)) r.bad = 1;
        }
        size_t es = ti[i].ty == GGML_F32 ? 4 : ti[i].ty == GGML_F16 ? 2 : 0;
        if (r.bad || !es || numel > (1LL << 36) || ti[i].off > (uint64_t)size || data + ti[i].off + (uint64_t)numel * es > (uint64_t)size) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor %s: type %d or extent outside the file", path,
                            ti[i].name ? ti[i].name : "?", ti[i].ty);
            break;
        }
        float *d = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        if (!d || vlm_to_f32(buf + data + ti[i].off, es == 4 ? VLM_F32 : VLM_F16, numel, d, err)) {
            free(d);
            st = err->status ? err->status : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
            break;
        }
        char hn[256];
        hf_of_gguf(ti[i].name, hn, sizeof hn);
        st = vlm_fset_add(&hf, hn, ti[i].nd, ti[i].sh, es == 4 ? VLM_F32 : VLM_F16, d, err);
    }
    if (!st && r.bad) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: malformed GGUF header", path);
    if (!st) { // logit_scale lives in a key
        float *ls = malloc(sizeof(float));
        int64_t one[1] = {1};
        if (ls) *ls = m.have_f ? m.f : 4.6051702f; // absent (clip.cpp's files): ln 100
        st = ls ? vlm_fset_add(&hf, "logit_scale", 0, one, VLM_F32, ls, err) : vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    }
    if (!st) st = from_hf(&hf, s, err);
    *hv = (int)m.u[0], *ht = (int)m.u[1];
    if (*act < 0) *act = m.u[2] ? VLM_ACT_GELU : VLM_ACT_QUICK_GELU;
    if (!st && tok && m.merges) { // "#version" + one merge per line, as the merges files
        size_t len = 16;
        for (int i = 0; i < m.n_merges; i++) len += strlen(m.merges[i] ? m.merges[i] : "") + 1;
        char *t = malloc(len);
        if (t) {
            char *o = t + sprintf(t, "#version: 0.2\n");
            for (int i = 0; i < m.n_merges; i++) o += sprintf(o, "%s\n", m.merges[i] ? m.merges[i] : "");
            *tok = t;
        }
    }
    for (uint64_t i = 0; ti && i < nti; i++) free(ti[i].name);
    free(ti);
    vlm_strlist_free(m.merges, m.n_merges);
    vlm_fset_free(&hf);
    free(buf);
    return st;
}

vlm_status vlm_clip_export(const vlm_clip *m, const char *tok, vlm_export_kind kind, const char *out, vlm_error *err) {
    vlm_status st;
    switch (kind) {
    case VLM_EXPORT_VLM: return vlm_ckpt_save_model(out, m, tok, 0, 0, err);
    case VLM_EXPORT_OPENCLIP: return export_open_clip(m, out, err);
    case VLM_EXPORT_HF:
        if ((st = make_dir(out, err)) || (st = export_hf_config(m, out, err)) || (st = export_hf_weights(m, out, err)))
            return st;
        return tok ? export_hf_tokenizer(out, tok, err) : VLM_OK;
    case VLM_EXPORT_GGUF: return vlm_gguf_write_clip(m, tok, 1, out, err);
    case VLM_EXPORT_GGUF_F32: return vlm_gguf_write_clip(m, tok, 0, out, err);
    }
    return vlm_errorf(err, VLM_ERR_ARG, "unknown export format %d", (int)kind);
}
