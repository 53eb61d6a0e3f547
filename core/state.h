// Training state of any parameter store: what resuming needs besides the
// weights' meaning (optimizer step, loader position, RNG stream, clock), and
// its safetensors file: the flat parameter, AdamW m and v buffers plus the
// state as metadata, written atomically.
#ifndef VLM_CORE_STATE_H
#define VLM_CORE_STATE_H

#include "core/rng.h"
#include "core/tensor.h"

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

// The dropout stream's position into / out of a state (the RNG every trainer
// saves: it draws dropout, patch dropout and the head's dropout masks).
void vlm_train_state_set_rng(vlm_train_state *s, const vlm_rng *r);
void vlm_train_state_get_rng(const vlm_train_state *s, vlm_rng *r);

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

#endif
