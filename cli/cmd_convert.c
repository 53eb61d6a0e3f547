// `vlm convert IN OUT --to vlm|hf|open_clip|gguf`: CLIP weights from any
// format fusion/import.h reads into vlm's own, Hugging Face's, open_clip's or
// GGUF (clip.cpp's layout).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/ops.h"
#include "fusion/checkpoint.h"
#include "fusion/import.h"

static const char *usage =
    "usage: vlm convert IN OUT [--to vlm|hf|open_clip|gguf] [--tokenizer FILE] [--act quick_gelu|gelu]\n"
    "IN: a vlm model file, OpenAI's released .pt (TorchScript), an open_clip checkpoint (.pt, torch.save) or hub\n"
    "folder (open_clip_config.json + open_clip_model.safetensors), a Hugging Face CLIPModel folder (config.json +\n"
    "model.safetensors or pytorch_model.bin), or an OpenAI-named safetensors state dict; F16/BF16 become f32.\n"
    "The model's config is inferred from the weights (OpenAI's build_model: heads = width / 64 unless the\n"
    "format says otherwise). OUT:\n"
    "  --to vlm (default)   one self-contained model file (weights, config, tokenizer)\n"
    "  --to hf              a CLIPModel folder: config.json, model.safetensors, vocab.json, merges.txt,\n"
    "                       preprocessor_config.json, tokenizer_config.json\n"
    "  --to open_clip       a hub folder: open_clip_config.json, open_clip_model.safetensors\n"
    "  --to gguf            a GGUF file in clip.cpp's tensor names and keys\n"
    "  --gguf-type f16|f32  f16 (default): clip.cpp's rule (matrices and the patch kernel f16, the rest f32);\n"
    "                       f32: every tensor f32 (exact)\n"
    "  --tokenizer FILE     the weights' BPE merges (OpenAI's bpe_simple_vocab_16e6.txt.gz, merges.txt) when IN\n"
    "                       has none; looked for beside IN otherwise\n"
    "  --act quick_gelu|gelu  the towers' activation when IN cannot say (OpenAI: quick_gelu)\n";

static int fn_act(const char *v, void *dst, vlm_error *err) {
    if (!strcmp(v, "quick_gelu")) *(int *)dst = VLM_ACT_QUICK_GELU;
    else if (!strcmp(v, "gelu")) *(int *)dst = VLM_ACT_GELU;
    else return vlm_errorf(err, VLM_ERR_ARG, "--act: quick_gelu or gelu, not '%s'", v), -1;
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *to = "vlm", *gtype = "f16";
    vlm_import_opts io;
    vlm_import_opts_default(&io);
    vlm_error err = {0};
    const cli_opt own[] = {
        {"to", CLI_STR, &to, 0, 0, NULL, NULL},
        {"tokenizer", CLI_STR, &io.tokenizer, 0, 0, NULL, NULL},
        {"act", CLI_FN, &io.act, 0, 0, fn_act, NULL},
        {"gguf-type", CLI_STR, &gtype, 0, 0, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pos, pr = cli_parse("convert", argc, argv, tabs, 1, &pos, &err);
    if (pr) return cli_parse_exit(pr, "convert", usage, &err);
    int kind = vlm_export_parse(to);
    if (kind < 0) return cli_usagef("convert", "--to: vlm, hf, open_clip or gguf, not '%s'", to);
    if (strcmp(gtype, "f16") && strcmp(gtype, "f32")) return cli_usagef("convert", "--gguf-type: f16 or f32, not '%s'", gtype);
    if (argc - pos != 2) return cli_usagef("convert", "expected IN and OUT (see vlm convert --help)");
    const char *in = argv[pos], *out = argv[pos + 1];
    vlm_clip m;
    char *tok = NULL, what[256] = "";
    if (vlm_clip_import(in, &io, &m, &tok, what, sizeof what, &err)) return cli_fail("convert", &err);
    const vlm_clip_cfg *c = &m.cfg;
    fprintf(stderr, "convert: %s: %s; ViT %d px / patch %d, width %d x %d layers (%d heads), text width %d x %d layers "
                    "(%d heads), context %d, vocab %d, embed %d, %s, %lld params; tokenizer: %s\n",
            in, what, c->vision.image_size, c->vision.patch_size, c->vision.width, c->vision.layers, c->vision.heads,
            c->text.width, c->text.layers, c->text.heads, c->text.context_length, c->text.vocab_size, c->embed_dim,
            c->vision.act == VLM_ACT_QUICK_GELU ? "QuickGELU" : "GELU", (long long)m.ps.total, tok ? "yes" : "none");
    if (!tok && kind != VLM_EXPORT_OPENCLIP)
        fprintf(stderr, "convert: warning: " VLM_NO_TOKENIZER "\n", in);
    vlm_status st = vlm_clip_export(&m, tok, kind == VLM_EXPORT_GGUF && !strcmp(gtype, "f32") ? VLM_EXPORT_GGUF_F32 : kind,
                                    out, &err);
    free(tok);
    vlm_clip_free(&m);
    if (st) return cli_fail("convert", &err);
    printf("wrote %s (%s)\n", out, to);
    return 0;
}
