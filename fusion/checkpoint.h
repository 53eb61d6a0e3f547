// CLIP checkpoints. A model file holds every parameter by its OpenAI
// state_dict name plus metadata "config" (open_clip-schema JSON) and
// "tokenizer" (the BPE merges text), so it is self-contained. A training-state
// file holds what resuming needs: the flat parameter, AdamW m and v buffers,
// step, epoch, loader position and RNG states. Both are written atomically.
#ifndef VLM_FUSION_CHECKPOINT_H
#define VLM_FUSION_CHECKPOINT_H

#include "core/optim.h"
#include "fusion/clip.h"

typedef struct {
    int64_t step;          // optimizer steps done
    int64_t epoch;         // loader epoch of the next sample
    int64_t loader_epoch, loader_index; // exact loader position of the next sample (loader_index
                                        // counts samples of the global stream: all ranks together)
    int64_t global_batch;  // samples per step over all ranks (0: unknown, older files)
    int64_t adam_step;
    uint32_t rng_key[2];   // dropout / patch-dropout stream state
    uint64_t rng_counter;
    uint32_t rng_buf[4];
    int rng_pos;
    double elapsed_s;      // training time so far (for --max-minutes and logs)
    float last_loss;
} vlm_train_state;

// Generic training-state file of any parameter store: "params", "adamw.m",
// "adamw.v" (flat) plus metadata: *s, a hash of the store's layout (names,
// offsets, sizes: resuming into a different model is refused), "format" and
// n_extra more key/value pairs (config, args, ...). Written atomically.
vlm_status vlm_state_save(const char *path, const vlm_params *ps, const vlm_train_state *s, const char *format,
                          const char *const *extra_keys, const char *const *extra_vals, int n_extra, vlm_error *err);
// Restores params, m and v (allocated if needed) and *s; the file's "format"
// must equal format and its layout hash the store's.
vlm_status vlm_state_load(const char *path, vlm_params *ps, vlm_train_state *s, const char *format, vlm_error *err);
// The same with one more flat buffer of ps->total floats (e.g. "ema") saved
// and restored by name (buf_name/buf NULL: none).
vlm_status vlm_state_save_with(const char *path, const vlm_params *ps, const vlm_train_state *s, const char *format,
                               const char *const *extra_keys, const char *const *extra_vals, int n_extra,
                               const char *buf_name, const float *buf, vlm_error *err);
vlm_status vlm_state_load_with(const char *path, vlm_params *ps, vlm_train_state *s, const char *format,
                               const char *buf_name, float *buf, vlm_error *err);
// FNV-1a over the names, offsets and sizes of the parameters.
uint64_t vlm_params_layout_hash(const vlm_params *ps);

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
