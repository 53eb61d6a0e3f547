// Importing other people's CLIP weights (fusion/import.h, core/tensorfile.h)
// against tests/reference/make_import_fixtures.py: OpenAI's TorchScript .pt
// (fp16 weights), an open_clip torch.save checkpoint ("module." keys, an
// optimizer beside), an HF CLIPModel folder and an open_clip hub folder (F16)
// all give the reference features within 1e-4 with an inferred config; the
// exporters round-trip exactly (vlm, HF, open_clip); hostile archives (unknown
// globals, storage overruns, short storages, a zip bomb, truncation, a bad
// CRC) are refused with a message naming the problem.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fusion/import.h"
#include "testutil.h"
#include "text/tokenizer.h"

#define FIX "tests/fixtures/import/"
#define TMP "/tmp/vlm_test_import"

static float *io_get(const vlm_st_file *f, const char *name, int64_t *n) {
    const vlm_st_entry *e = vlm_st_find(f, name);
    if (!e) return NULL;
    *n = e->numel;
    return (float *)vlm_st_data(f, e);
}

// Features of the fixture batch against the reference.
static void check_features(const char *what, vlm_clip *m, const vlm_st_file *io) {
    const vlm_st_entry *im = vlm_st_find(io, "image"), *tx = vlm_st_find(io, "text");
    int64_t ni = 0, nt = 0;
    const float *ri = io_get(io, "image_features", &ni), *rt = io_get(io, "text_features", &nt);
    vlm_ctx c;
    vlm_error err = {0};
    vlm_ctx_init(&c, 32u << 20, 0, &err);
    c.grad_enabled = 0, c.training = 0;
    vlm_tensor *fi = vlm_clip_encode_image(&c, m, vlm_tensor_wrap(&c, VLM_F32, 4, im->shape, (void *)vlm_st_data(io, im), NULL), NULL);
    vlm_tensor *ft = vlm_clip_encode_text(&c, m, vlm_tensor_wrap(&c, VLM_I32, 2, tx->shape, (void *)vlm_st_data(io, tx), NULL));
    CHECK(fi && ft && fi->shape[1] * fi->shape[0] == ni && ft->shape[0] * ft->shape[1] == nt, "%s: features %s", what,
          c.err.msg);
    if (fi && ft) {
        double ei = tu_rel_err(vlm_f32(fi), ri, (long)ni, 1e-3), et = tu_rel_err(vlm_f32(ft), rt, (long)nt, 1e-3);
        CHECK(ei < 1e-4 && et < 1e-4, "%s: image features rel err %.2e, text %.2e", what, ei, et);
    }
    vlm_ctx_free(&c);
}

static void test_formats(const vlm_st_file *io) {
    const char *paths[] = {FIX "openai_micro.pt", FIX "openclip_micro.pt", FIX "hf_micro", FIX "openclip_hub_micro"};
    const char *kinds[] = {"TorchScript", "name micro-quickgelu", "Hugging Face", "open_clip hub"};
    for (int i = 0; i < 4; i++) {
        vlm_clip m;
        vlm_error err = {0};
        char what[256] = "";
        char *tok = (char *)1;
        vlm_import_opts o;
        vlm_import_opts_default(&o);
        vlm_status st = vlm_clip_import(tu_src(paths[i]), &o, &m, &tok, what, sizeof what, &err);
        CHECK(st == VLM_OK, "%s: %s", paths[i], err.msg);
        if (st) continue;
        CHECK(strstr(what, kinds[i]) != NULL, "%s read as '%s'", paths[i], what);
        CHECK(tok == NULL, "%s: no tokenizer in the file, none invented", paths[i]);
        const vlm_clip_cfg *c = &m.cfg;
        CHECK(c->embed_dim == 32 && c->vision.image_size == 16 && c->vision.patch_size == 8 && c->vision.width == 64 &&
                  c->vision.heads == 1 && c->vision.layers == 2 && c->text.width == 128 && c->text.heads == 2 &&
                  c->text.layers == 1 && c->text.context_length == 8 && c->text.vocab_size == 300 &&
                  c->vision.act == VLM_ACT_QUICK_GELU && c->text.act == VLM_ACT_QUICK_GELU,
              "%s: inferred config", paths[i]);
        check_features(paths[i], &m, io);
        vlm_clip_free(&m);
    }
}

static int params_equal(const vlm_clip *a, const vlm_clip *b) {
    return a->ps.total == b->ps.total && !memcmp(a->ps.data, b->ps.data, sizeof(float) * (size_t)a->ps.total);
}

static void test_round_trips(const vlm_st_file *io) {
    vlm_clip m;
    vlm_error err = {0};
    if (vlm_clip_import(tu_src(FIX "openai_micro.pt"), NULL, &m, NULL, NULL, 0, &err)) {
        CHECK(0, "import: %s", err.msg);
        return;
    }
    char *merges = NULL;
    CHECK(vlm_tokenizer_read_merges(tu_src("../shared/reference/openai-clip/bpe_simple_vocab_16e6.txt.gz"), &merges,
                                    &err) == VLM_OK, "merges: %s", err.msg);
    const char *outs[3] = {TMP "/m.safetensors", TMP "/hf", TMP "/oc"};
    const vlm_export_kind kinds[3] = {VLM_EXPORT_VLM, VLM_EXPORT_HF, VLM_EXPORT_OPENCLIP};
    for (int i = 0; i < 3; i++) {
        CHECK(vlm_clip_export(&m, merges, kinds[i], outs[i], &err) == VLM_OK, "export %d: %s", i, err.msg);
        vlm_clip b;
        char *tok = NULL;
        if (vlm_clip_import(outs[i], NULL, &b, &tok, NULL, 0, &err)) {
            CHECK(0, "re-import %s: %s", outs[i], err.msg);
            continue;
        }
        CHECK(params_equal(&m, &b), "%s: the round trip is exact", outs[i]);
        CHECK(b.cfg.vision.act == VLM_ACT_QUICK_GELU && b.cfg.text.heads == 2, "%s: config kept", outs[i]);
        if (kinds[i] != VLM_EXPORT_OPENCLIP) { // the same tokenizer: the merges CLIP uses
            vlm_tokenizer t1, t2;
            int32_t a[16], b2[16];
            int na = 0, nb = 0;
            const char *txt = "a photo of a dog, jumping.";
            CHECK(tok && !vlm_tokenizer_init_from_memory(&t1, tok, strlen(tok), &err) &&
                      !vlm_tokenizer_init_from_memory(&t2, merges, strlen(merges), &err), "%s: tokenizer", outs[i]);
            if (tok) {
                vlm_tokenizer_encode(&t1, txt, strlen(txt), a, 16, &na, &err);
                vlm_tokenizer_encode(&t2, txt, strlen(txt), b2, 16, &nb, &err);
                CHECK(na == nb && na > 0 && !memcmp(a, b2, sizeof(int32_t) * (size_t)na) &&
                          vlm_tokenizer_vocab_size(&t1) == 49408,
                      "%s: the tokenizer comes back", outs[i]);
                vlm_tokenizer_free(&t1), vlm_tokenizer_free(&t2);
            }
        }
        check_features(outs[i], &b, io);
        free(tok);
        vlm_clip_free(&b);
    }
    // GGUF: f32 exact (weights and tokenizer), f16 within its rounding; an
    // independent reader (tests/reference/check_gguf.py) agrees where Python is here
    for (int f16 = 0; f16 < 2; f16++) {
        const char *g = f16 ? TMP "/m16.gguf" : TMP "/m32.gguf";
        CHECK(vlm_clip_export(&m, merges, f16 ? VLM_EXPORT_GGUF : VLM_EXPORT_GGUF_F32, g, &err) == VLM_OK, "gguf: %s", err.msg);
        vlm_clip b;
        char *tok = NULL;
        if (vlm_clip_import(g, NULL, &b, &tok, NULL, 0, &err)) {
            CHECK(0, "re-import %s: %s", g, err.msg);
            continue;
        }
        if (!f16) {
            CHECK(params_equal(&m, &b), "gguf f32: the round trip is exact");
            CHECK(tok != NULL, "gguf f32: the tokenizer comes back (tokenizer.ggml.merges)");
            check_features(g, &b, io);
        } else {
            double e = tu_rel_err(b.ps.data, m.ps.data, (long)m.ps.total, 1e-2);
            CHECK(e < 2e-3, "gguf f16: weights within f16 rounding (%.2e)", e);
        }
        CHECK(b.cfg.text.heads == 2 && b.cfg.vision.heads == 1 && b.cfg.vision.act == VLM_ACT_QUICK_GELU, "gguf config");
        if (tok) {
            vlm_tokenizer t1;
            CHECK(!vlm_tokenizer_init_from_memory(&t1, tok, strlen(tok), &err) && vlm_tokenizer_vocab_size(&t1) == 49408,
                  "gguf tokenizer: %s", err.msg);
            vlm_tokenizer_free(&t1);
        }
        free(tok);
        vlm_clip_free(&b);
        if (!system("python3 -c 'import struct' 2>/dev/null")) { // the standard library is all it needs
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "python3 %s %s " TMP "/hf", tu_src("tests/reference/check_gguf.py"), g);
            CHECK(system(cmd) == 0, "independent GGUF reader on %s", g);
        }
    }
    // HF vocab.json: CLIP's ids (byte tokens in bytes_to_unicode order, then merges, SOT/EOT last)
    char *vj = tu_read_file(TMP "/hf/vocab.json", NULL);
    CHECK(vj && strstr(vj, "\"!\": 0") && strstr(vj, "\"<|endoftext|>\": 49407") && strstr(vj, "\"!</w>\": 256"),
          "vocab.json ids");
    free(vj);
    free(merges);
    vlm_clip_free(&m);
}

static void expect_refused(const char *path, const char *needle) {
    vlm_fset s;
    vlm_error err = {0};
    vlm_status st = vlm_fset_read_torch(path, &s, &err);
    CHECK(st != VLM_OK && strstr(err.msg, needle), "%s: expected an error with '%s', got %d '%s'", path, needle, st,
          err.msg);
    if (!st) vlm_fset_free(&s);
}

static void test_hostile(void) {
    vlm_fset s;
    vlm_error err = {0};
    CHECK(vlm_fset_read_torch(tu_src(FIX "tiny_ok.pt"), &s, &err) == VLM_OK && s.n == 1 && !strcmp(s.t[0].name, "w") &&
              s.t[0].numel == 4 && s.t[0].data[3] == 3.0f,
          "a minimal checkpoint reads: %s", err.msg);
    if (!err.status) vlm_fset_free(&s);
    expect_refused(tu_src(FIX "evil_global.pt"), "os.system");
    expect_refused(tu_src(FIX "evil_eval.pt"), "builtins.eval");
    expect_refused(tu_src(FIX "evil_offset.pt"), "past its storage");
    expect_refused(tu_src(FIX "evil_short.pt"), "shorter");
    expect_refused(tu_src(FIX "bomb.pt"), "zip bomb");
    // truncated and corrupted copies of OpenAI's file
    size_t n = 0;
    char *b = tu_read_file(tu_src(FIX "openai_micro.pt"), &n);
    FILE *f = fopen(TMP "/trunc.pt", "wb");
    if (f && b) fwrite(b, 1, n / 2, f), fclose(f);
    expect_refused(TMP "/trunc.pt", "Truncated");
    char *d = b ? memmem(b, n, "openai_micro/data/0", 19) : NULL; // the first storage's bytes follow its local header
    if (d) d[19 + 200] ^= 0x55;
    f = fopen(TMP "/crc.pt", "wb");
    if (f && b) fwrite(b, 1, n, f), fclose(f);
    expect_refused(TMP "/crc.pt", "CRC");
    free(b);
    expect_refused(tu_src(FIX "micro.io.safetensors"), "not a zip");
    expect_refused(tu_src(FIX "evil_dtype.pt"), "torch.ComplexFloatStorage");
    // a vlm import of something that is no CLIP
    vlm_clip m;
    CHECK(vlm_clip_import(tu_src(FIX "tiny_ok.pt"), NULL, &m, NULL, NULL, 0, &err) != VLM_OK &&
              strstr(err.msg, "visual.conv1.weight missing"),
          "not a CLIP: %s", err.msg);
    // a tensor whose shape disagrees with the config the others give
    if (vlm_clip_import(tu_src(FIX "openai_micro.pt"), NULL, &m, NULL, NULL, 0, &err) == VLM_OK) {
        vlm_st_tensor *t = malloc(sizeof *t * (size_t)m.ps.n);
        int64_t bad[1] = {127};
        for (int i = 0; t && i < m.ps.n; i++) {
            const vlm_param *p = &m.ps.p[i];
            t[i] = (vlm_st_tensor){p->name, VLM_F32, p->t.ndim, p->t.shape, p->t.data};
            if (!strcmp(p->name, "ln_final.bias")) t[i].shape = bad;
        }
        CHECK(t && vlm_st_write(TMP "/badshape.safetensors", t, m.ps.n, NULL, NULL, 0, &err) == VLM_OK, "write: %s", err.msg);
        free(t);
        vlm_clip b;
        CHECK(vlm_clip_import(TMP "/badshape.safetensors", NULL, &b, NULL, NULL, 0, &err) != VLM_OK &&
                  strstr(err.msg, "ln_final.bias"),
              "a shape that disagrees: %s", err.msg);
        vlm_clip_free(&m);
    }
}

static void test_f16_bf16(void) {
    const uint16_t h[5] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x3555}; // 1, -2, 2^-24, 65504, ~0.333
    const uint16_t bf[3] = {0x3f80, 0xc040, 0x3eab};                // 1, -3, ~0.334
    float o[5];
    vlm_error err;
    vlm_to_f32(h, VLM_F16, 5, o, &err);
    CHECK(o[0] == 1 && o[1] == -2 && o[2] == ldexpf(1, -24) && o[3] == 65504 && fabsf(o[4] - 0.33325195f) < 1e-7,
          "f16: %g %g %g %g %g", o[0], o[1], o[2], o[3], o[4]);
    vlm_to_f32(bf, VLM_BF16, 3, o, &err);
    CHECK(o[0] == 1 && o[1] == -3 && fabsf(o[2] - 0.333984375f) < 1e-9, "bf16: %g %g %g", o[0], o[1], o[2]);
}

// OpenAI's released shapes give the presets (tensors calloc'd: untouched pages cost nothing).
static void add_shape(vlm_fset *s, const char *name, int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t sh[4] = {a, b, c, d}, n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    vlm_error err;
    vlm_fset_add(s, name, nd, sh, VLM_F16, calloc((size_t)n, sizeof(float)), &err);
}

static void test_presets(void) {
    const char *names[4] = {"ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"};
    for (int i = 0; i < 4; i++) {
        vlm_clip_cfg want, got;
        vlm_error err = {0};
        CHECK(vlm_clip_cfg_preset(names[i], &want, &err) == VLM_OK, "preset %s: %s", names[i], err.msg);
        const vlm_vit_cfg *v = &want.vision;
        const vlm_text_cfg *t = &want.text;
        vlm_fset s = {0};
        int64_t grid = v->image_size / v->patch_size;
        add_shape(&s, "visual.conv1.weight", 4, v->width, 3, v->patch_size, v->patch_size);
        add_shape(&s, "visual.positional_embedding", 2, grid * grid + 1, v->width, 0, 0);
        add_shape(&s, "text_projection", 2, t->width, want.embed_dim, 0, 0);
        add_shape(&s, "positional_embedding", 2, t->context_length, t->width, 0, 0);
        add_shape(&s, "token_embedding.weight", 2, t->vocab_size, t->width, 0, 0);
        add_shape(&s, "ln_final.weight", 1, t->width, 0, 0, 0);
        char n[128];
        for (int l = 0; l < v->layers; l++) {
            snprintf(n, sizeof n, "visual.transformer.resblocks.%d.attn.in_proj_weight", l);
            add_shape(&s, n, 2, 3 * v->width, v->width, 0, 0);
        }
        for (int l = 0; l < t->layers; l++) {
            snprintf(n, sizeof n, "transformer.resblocks.%d.attn.in_proj_weight", l);
            add_shape(&s, n, 2, 3 * t->width, t->width, 0, 0);
        }
        add_shape(&s, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, 4 * v->width, v->width, 0, 0);
        add_shape(&s, "transformer.resblocks.0.mlp.c_fc.weight", 2, 4 * t->width, t->width, 0, 0);
        CHECK(vlm_clip_cfg_infer(&s, 0, 0, VLM_ACT_QUICK_GELU, &got, &err) == VLM_OK, "infer %s: %s", names[i], err.msg);
        CHECK(!memcmp(&got, &want, sizeof got), "%s: inferred config = preset (vision %d/%d/%d/%d, text %d/%d/%d)",
              names[i], got.vision.image_size, got.vision.width, got.vision.layers, got.vision.heads, got.text.width,
              got.text.layers, got.text.heads);
        vlm_fset_free(&s);
    }
}

int main(void) {
    if (system("rm -rf " TMP " && mkdir -p " TMP) != 0) return 1;
    vlm_st_file io;
    vlm_error err = {0};
    if (vlm_st_read(&io, tu_src(FIX "micro.io.safetensors"), &err)) {
        CHECK(0, "fixture: %s", err.msg);
        return tu_done("test_import");
    }
    test_f16_bf16();
    test_presets();
    test_formats(&io);
    test_round_trips(&io);
    test_hostile();
    vlm_st_free(&io);
    if (!tu_failures && system("rm -rf " TMP) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_import");
}
