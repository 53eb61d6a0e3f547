// A language model on the text tower: CLIP's token + positional embeddings
// and pre-LN transformer blocks, ln_final, and an output layer tied to the
// token embedding (logits = ln_final(h) @ token_embedding^T + lm_head.bias).
// Two objectives: "clm" (GPT: causal attention, next-token loss) and "mlm"
// (BERT: bidirectional attention, 15% of the tokens selected, of those 80%
// replaced by [MASK], 10% by a random token, 10% kept; loss on the selected
// positions only). Tensor names are the CLIP text tower's, so a CLIP can start
// its text tower from a language model (vlm pretrain --pretrained-text).
#ifndef VLM_TEXT_LM_H
#define VLM_TEXT_LM_H

#include "core/rng.h"
#include "core/transformer.h"

typedef enum { VLM_LM_CLM = 0, VLM_LM_MLM = 1 } vlm_lm_objective;

typedef struct {
    int context_length, vocab_size, width, heads, layers, mlp_width;
    vlm_act act;
    vlm_lm_objective objective;
    int sot, eot, mask;       // token ids: the tokenizer's SOT/EOT; mlm: [MASK] = vocab_size - 1 (else -1)
    float mask_prob;          // mlm: share of the (non-special) tokens selected, default 0.15
} vlm_lm_cfg;

typedef struct {
    vlm_lm_cfg cfg;
    vlm_params ps;
    int tok_emb, pos_emb, ln_w, ln_b, bias; // param indices
    vlm_transformer tr;
} vlm_lm;

// tokenizer_vocab: the tokenizer's size (its SOT/EOT are the last two ids);
// mlm adds [MASK] after them. Parameters allocated, not initialised.
vlm_status vlm_lm_init(vlm_lm *m, const vlm_lm_cfg *cfg, vlm_error *err);
void vlm_lm_free(vlm_lm *m);
void vlm_lm_init_weights(vlm_lm *m, vlm_rng *rng);
// Config from a preset name ("tiny": the tiny CLIP's text tower) and a
// tokenizer size; objective and context length as given.
vlm_status vlm_lm_cfg_preset(const char *name, vlm_lm_objective obj, int tokenizer_vocab, int context_length,
                             vlm_lm_cfg *cfg, vlm_error *err);
const char *vlm_lm_objective_name(vlm_lm_objective o);
int vlm_lm_objective_parse(const char *s); // -1 if unknown

// Hidden states: ids I32 [B, T] -> ln_final(h) [B, T, W].
vlm_tensor *vlm_lm_hidden(vlm_ctx *c, vlm_lm *m, vlm_tensor *ids);
// Tied output layer: h [N, W] -> logits [N, V].
vlm_tensor *vlm_lm_logits(vlm_ctx *c, vlm_lm *m, vlm_tensor *h);

// A batch made ready for the loss from B rows of T+1 (clm) or T (mlm) tokens.
typedef struct {
    int B, T;
    int32_t *in;       // [B, T] model input
    int32_t *target;   // clm: [B*T] next tokens; mlm: [n_sel] original tokens of the selected positions
    int32_t *sel;      // mlm: [n_sel] flat positions b*T + t of the selected tokens
    int n_sel;
} vlm_lm_batch;

vlm_status vlm_lm_batch_alloc(vlm_lm_batch *b, int B, int T, vlm_error *err);
void vlm_lm_batch_free(vlm_lm_batch *b);
// rows: B sequences (clm: T+1 tokens each, mlm: T). mlm: row i is masked
// from its own stream (seed, first + i): first = the row's place in the
// global stream of rows, so a resumed or data-parallel run masks alike.
void vlm_lm_batch_make(const vlm_lm *m, const int32_t *rows, uint64_t seed, uint64_t first, vlm_lm_batch *b);
// Mean cross-entropy over the batch's targets (the loss node; backward-able).
vlm_tensor *vlm_lm_loss(vlm_ctx *c, vlm_lm *m, const vlm_lm_batch *b);
// Correct top-1 predictions at the targets (no graph kept: call with grad off).
vlm_status vlm_lm_top1(vlm_ctx *c, vlm_lm *m, const vlm_lm_batch *b, int64_t *correct, int64_t *count, vlm_error *err);

char *vlm_lm_cfg_to_json(const vlm_lm_cfg *c); // malloc'd
// Model file: the parameters plus metadata "format" vlm-lm, "config" (JSON),
// "tokenizer" (the BPE merges text), "step". Written atomically.
vlm_status vlm_lm_save(const char *path, const vlm_lm *m, const char *tokenizer_text, int64_t step, vlm_error *err);
// Reads a model file (or the "params" of a training-state file written by
// vlm lm train); *tokenizer_text malloc'd (NULL if absent).
vlm_status vlm_lm_load(const char *path, vlm_lm *m, char **tokenizer_text, vlm_error *err);

typedef struct {
    int max_tokens;     // new tokens at most (default 32; the context length bounds it too)
    float temperature;  // 0: greedy
    int top_k;          // 0: all
    uint64_t seed;
} vlm_lm_sample_opts;
void vlm_lm_sample_opts_default(vlm_lm_sample_opts *o);
// clm only: continues ids [*n] (starting with SOT) in place up to cap tokens,
// stopping after EOT. Same seed, same text.
vlm_status vlm_lm_sample(vlm_lm *m, int32_t *ids, int *n, int cap, const vlm_lm_sample_opts *o, vlm_error *err);

#endif
