// CLIP checkpoints. A model file holds every parameter by its OpenAI
// state_dict name plus metadata "config" (open_clip-schema JSON) and
// "tokenizer" (the BPE merges text), so it is self-contained. A training-state
// file holds what resuming needs: the flat parameter, AdamW m and v buffers,
// step, epoch, loader position and RNG states. Both are written atomically.
#ifndef VLM_FUSION_CHECKPOINT_H
#define VLM_FUSION_CHECKPOINT_H

#include "core/optim.h"
#include "core/state.h"
#include "fusion/clip.h"

// Model file (OpenAI names). tokenizer_text may be NULL.
vlm_status vlm_ckpt_save_model(const char *path, const vlm_clip *m, const char *tokenizer_text, int64_t step,
                               int64_t epoch, vlm_error *err);
// Builds the model from a file or folder with its weights: a vlm model or
// state file (its "config"), or any format fusion/import.h reads (OpenAI .pt,
// open_clip, Hugging Face). *tokenizer_text (malloc'd) is NULL when the
// weights come without a tokenizer: pair the text tower with none other
// (VLM_NO_TOKENIZER says what to give).
vlm_status vlm_ckpt_load_model(const char *path, vlm_clip *m, char **tokenizer_text, vlm_error *err);
// The same for vlm's own files only; and whether path is one.
vlm_status vlm_ckpt_load_vlm(const char *path, vlm_clip *m, char **tokenizer_text, vlm_error *err);
int vlm_ckpt_is_vlm(const char *path);
// The message for weights without a tokenizer (printf: the path).
#define VLM_NO_TOKENIZER                                                                                          \
    "%s comes without a tokenizer, and its text tower works only with its own: put OpenAI's "                    \
    "bpe_simple_vocab_16e6.txt.gz (or the model's merges.txt) beside it, pass --tokenizer FILE where the "         \
    "command has it, or make a self-contained file with `vlm convert IN OUT --tokenizer FILE`"
// Training state (includes the parameters, so model and state never disagree).
vlm_status vlm_ckpt_save_state(const char *path, const vlm_clip *m, const char *tokenizer_text,
                               const vlm_train_state *s, const char *args_json, vlm_error *err);
// Restores params, m, v and *s into an already built model with the same layout.
vlm_status vlm_ckpt_load_state(const char *path, vlm_clip *m, vlm_train_state *s, vlm_error *err);

#endif
