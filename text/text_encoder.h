// OpenAI CLIP's text transformer: token + positional embeddings, causal
// pre-LN blocks (shared with the vision tower), ln_final, pooling at the EOT
// position (argmax of ids) and text_projection. Names follow OpenAI's state_dict.
#ifndef VLM_TEXT_ENCODER_H
#define VLM_TEXT_ENCODER_H

#include "core/transformer.h"

typedef struct {
    int context_length, vocab_size, width, heads, layers, mlp_width, output_dim;
    vlm_act act;
} vlm_text_cfg;

typedef struct {
    vlm_text_cfg cfg;
    int tok_emb, pos_emb, ln_final_w, ln_final_b, proj; // param indices
    vlm_transformer tr;
    // Pooled features of a batch run in up to this many length buckets (rows
    // sorted by EOT position, each bucket at its own longest length): the
    // same features, less work when caption lengths vary. 1 turns it off.
    int max_buckets;
} vlm_text_encoder;

vlm_status vlm_text_init(vlm_text_encoder *t, vlm_params *ps, vlm_text_cfg cfg, vlm_error *err);
void vlm_text_free(vlm_text_encoder *t);
void vlm_text_init_weights(const vlm_text_encoder *t, vlm_params *ps, vlm_rng *rng);
// ids: I32 [B, T] (T <= context_length) -> features [B, output_dim].
vlm_tensor *vlm_text_forward(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids);
// The same, and *tokens = ln_final of every position [B, T', W] (T' = the
// batch's last EOT + 1, or T with all_positions: prefixes being decoded have
// no EOT yet) and *eot [B] (arena) each row's EOT position (CoCa).
vlm_tensor *vlm_text_forward_tokens(vlm_ctx *c, const vlm_text_encoder *t, vlm_params *ps, vlm_tensor *ids,
                                    int all_positions, vlm_tensor **tokens, int32_t **eot);

#endif
