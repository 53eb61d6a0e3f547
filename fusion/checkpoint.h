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
// Reads "config" from a model or state file and builds the model (weights
// loaded). *tokenizer_text (malloc'd, may be NULL when absent).
vlm_status vlm_ckpt_load_model(const char *path, vlm_clip *m, char **tokenizer_text, vlm_error *err);
// Training state (includes the parameters, so model and state never disagree).
vlm_status vlm_ckpt_save_state(const char *path, const vlm_clip *m, const char *tokenizer_text,
                               const vlm_train_state *s, const char *args_json, vlm_error *err);
// Restores params, m, v and *s into an already built model with the same layout.
vlm_status vlm_ckpt_load_state(const char *path, vlm_clip *m, vlm_train_state *s, vlm_error *err);

#endif
