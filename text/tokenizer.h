// CLIP-compatible byte-level BPE tokenizer (bit-exact with OpenAI CLIP's
// simple_tokenizer.py, ftfy approximated by NFC) and a BPE trainer that
// writes vocabularies in the same merges-file format. See docs/TOKENIZER.md.
#ifndef VLM_TEXT_TOKENIZER_H
#define VLM_TEXT_TOKENIZER_H

#include "core/error.h"
#include <stddef.h>
#include <stdint.h>

// Vocabulary = 256 byte symbols, the same 256 with "</w>", one token per
// merge (in file order), then <|startoftext|> and <|endoftext|>. At most
// 48,894 merges are read (CLIP's lines[1:49152-256-2+1]), so the largest
// vocabulary is 49,408 and CLIP's file gives SOT = 49406, EOT = 49407.
#define VLM_TOKENIZER_MAX_VOCAB 49408

// Not thread-safe: encoding reuses a word cache and scratch buffers inside
// the object. Use one tokenizer per thread.
typedef struct vlm_tokenizer {
    struct vlm_tokenizer_impl *impl;
} vlm_tokenizer;

// Loads a merges file (gzip or plain text): a header line (skipped), then
// one "a b" merge per line; empty lines are only allowed at the end.
vlm_status vlm_tokenizer_init(vlm_tokenizer *tok, const char *merges_path, vlm_error *err);
// Same from memory (gzip-compressed or plain merges text), e.g. a vocabulary
// carried in a checkpoint. The buffer is not kept.
vlm_status vlm_tokenizer_init_from_memory(vlm_tokenizer *tok, const void *data, size_t len, vlm_error *err);
void vlm_tokenizer_free(vlm_tokenizer *tok);

int vlm_tokenizer_vocab_size(const vlm_tokenizer *tok);
int32_t vlm_tokenizer_sot(const vlm_tokenizer *tok); // vocab_size - 2
int32_t vlm_tokenizer_eot(const vlm_tokenizer *tok); // vocab_size - 1
int vlm_tokenizer_n_merges(const vlm_tokenizer *tok);

// Word cache size in slots (rounded up to a power of two; 0 disables it).
// Default 16384 slots (~1.5 MB), words over 30 bytes are never cached.
vlm_status vlm_tokenizer_set_cache(vlm_tokenizer *tok, int slots, vlm_error *err);

// Encodes text[0..len) (any bytes: invalid UTF-8 becomes U+FFFD, NUL is an
// ordinary character) to BPE ids without SOT/EOT. Like snprintf: writes at
// most cap ids and sets *n to the full count, which may exceed cap.
vlm_status vlm_tokenizer_encode(vlm_tokenizer *tok, const char *text, size_t len, int32_t *ids, int cap, int *n,
                                vlm_error *err);

// out[0..ctx) = SOT, ids, EOT, then zeros. If that does not fit: with
// truncate, SOT + the first ctx-2 ids + EOT (open_clip's truncate=True);
// without, VLM_ERR_SHAPE and out is untouched. *n_tokens (may be NULL) gets
// the untruncated count including SOT/EOT, also on VLM_ERR_SHAPE. ctx >= 2.
vlm_status vlm_tokenizer_encode_ctx(vlm_tokenizer *tok, const char *text, size_t len, int32_t *out, int ctx,
                                    int truncate, int *n_tokens, vlm_error *err);

// CLIP's decode: concatenates the tokens' bytes, decodes UTF-8 with U+FFFD
// for invalid sequences, then replaces every "</w>" with a space (so the
// result has a space after each word, and SOT/EOT/padding ids decode to
// their own text: strip them first). Like snprintf: writes at most cap-1
// bytes plus NUL (if cap > 0), *len (may be NULL) gets the full length.
vlm_status vlm_tokenizer_decode(const vlm_tokenizer *tok, const int32_t *ids, int n, char *out, size_t cap,
                                size_t *len, vlm_error *err);

// The text the BPE sees: whitespace_clean(basic_clean(text)).lower() with
// ftfy.fix_text approximated by NFC. snprintf-like like decode.
vlm_status vlm_tokenizer_clean(vlm_tokenizer *tok, const char *text, size_t len, char *out, size_t cap,
                               size_t *out_len, vlm_error *err);

// ----------------------------------------------------------- BPE training

typedef struct {
    int vocab_size;      // reached: 512 + n_merges + 2
    int n_merges;
    int stopped_early;   // 1 if no pair was left before the requested size
    long n_words;        // pre-tokens used for training, with multiplicity
    long n_unique_words;
    long n_skipped;      // pre-tokens over VLM_BPE_MAX_WORD bytes (ignored)
} vlm_bpe_train_info;

// Pre-tokens longer than this (bytes) are left out of training: they are
// noise (URLs, base64) and would make every merge touching them slow.
#define VLM_BPE_MAX_WORD 1024

// Learns merges from texts (cleaned and pre-tokenised exactly like
// encoding) until the vocabulary holds vocab_size tokens (512 byte tokens +
// merges + 2 specials; 514 <= vocab_size <= VLM_TOKENIZER_MAX_VOCAB).
// Each step merges the adjacent pair with the highest count (summed over
// word occurrences); ties go to the pair whose first, then second, token
// sorts first as UTF-8 bytes of its merges-file spelling. A pair whose
// concatenation is already a token is never merged, so every token is
// distinct. lens may be NULL (NUL-terminated texts). Deterministic.
// _mem returns the merges text (plain, malloc'd, caller frees); the other
// writes it to out_path (gzip if it ends in ".gz").
vlm_status vlm_bpe_train_mem(const char *const *texts, const size_t *lens, int n, int vocab_size, char **merges,
                             size_t *merges_len, vlm_bpe_train_info *info, vlm_error *err);
vlm_status vlm_bpe_train(const char *const *texts, const size_t *lens, int n, int vocab_size, const char *out_path,
                         vlm_bpe_train_info *info, vlm_error *err);

// Tokenizes n texts into ids [n, ctx] (SOT..EOT, zero padded, truncated
// keeping EOT); a NULL text counts as "".
vlm_status vlm_tokenizer_encode_batch(vlm_tokenizer *tok, const char *const *texts, int n, int ctx, int32_t *ids,
                                      vlm_error *err);

// Reads a merges file (plain or .gz, at most 256 MB) into a malloc'd
// NUL-terminated string.
vlm_status vlm_tokenizer_read_merges(const char *path, char **text, vlm_error *err);

#endif
