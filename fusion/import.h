// CLIP weights as other people publish them, read without Python: OpenAI's
// released .pt files (TorchScript), open_clip checkpoints (torch.save, keys
// possibly "module."-prefixed) and hub folders (open_clip_config.json +
// open_clip_model.safetensors), Hugging Face CLIPModel folders (config.json +
// model.safetensors or pytorch_model.bin; HF names, q/k/v split), bare
// OpenAI-named safetensors state dicts, and vlm's own model files. F16, BF16
// and F64 tensors become f32. The config is inferred from the weights as
// OpenAI's build_model does; the exporters write the same layouts back.
#ifndef VLM_FUSION_IMPORT_H
#define VLM_FUSION_IMPORT_H

#include <stddef.h>
#include "core/tensorfile.h"
#include "fusion/clip.h"

typedef struct {
    int act;               // -1: from the file (OpenAI: QuickGELU), else a vlm_act for both towers
    const char *tokenizer; // merges file (OpenAI's bpe_simple_vocab_16e6.txt.gz, HF merges.txt); NULL: the file's own
} vlm_import_opts;
void vlm_import_opts_default(vlm_import_opts *o);

// Builds *m from any of the formats above (path: a file or a folder).
// *tokenizer_text (may be NULL): the BPE merges text the weights come with
// (a vlm file's, an HF folder's merges.txt, o->tokenizer), else NULL: the
// caller must not pair the text tower with another vocabulary. what
// (may be NULL) receives a short description of the format read.
vlm_status vlm_clip_import(const char *path, const vlm_import_opts *o, vlm_clip *m, char **tokenizer_text, char *what,
                           size_t what_cap, vlm_error *err);

// Config from OpenAI-named tensors (ViT towers only): widths, layers, patch,
// resolution, context, vocabulary, MLP ratio; heads = width / 64 unless
// heads_v / heads_t > 0; act for both towers.
vlm_status vlm_clip_cfg_infer(const vlm_fset *s, int heads_v, int heads_t, vlm_act act, vlm_clip_cfg *cfg,
                              vlm_error *err);

// OpenAI state-dict name <-> Hugging Face CLIPModel name for everything but
// the fused attention projections and the two projections (transposed);
// NULL if the name has no counterpart.
const char *vlm_hf_from_openai(const char *name, char *buf, size_t cap);

typedef enum { VLM_EXPORT_VLM, VLM_EXPORT_HF, VLM_EXPORT_OPENCLIP, VLM_EXPORT_GGUF, VLM_EXPORT_GGUF_F32 } vlm_export_kind;
// "vlm" | "hf" | "open_clip" | "gguf"; -1 if unknown.
int vlm_export_parse(const char *name);
// Writes m (and the merges text, which HF and GGUF need) as a vlm model file,
// an HF CLIPModel folder, an open_clip hub folder or a GGUF file (clip.cpp's
// layout: matrices and the patch kernel f16, the rest f32; GGUF_F32: all f32).
vlm_status vlm_clip_export(const vlm_clip *m, const char *tokenizer_text, vlm_export_kind kind, const char *out,
                           vlm_error *err);

#endif
