// Internals shared by the tokenizer and the BPE trainer (not a public API):
// CLIP's text cleaning, its pre-tokenisation regex as a scanner, UTF-8 helpers
// and the GPT-2/CLIP byte<->unicode alphabet.
#ifndef VLM_TEXT_INTERNAL_H
#define VLM_TEXT_INTERNAL_H

#include "core/error.h"
#include <stddef.h>
#include <stdint.h>

// Longest input accepted by one clean/encode call; keeps every size
// computation (x3 for U+FFFD, x4 for UTF-8) far from overflow.
#define VLM_TEXT_MAX_BYTES ((size_t)1 << 30)

// Growable buffers reused across calls so the hot path does not allocate.
typedef struct {
    uint8_t *u8;
    size_t u8_cap;
    int32_t *a, *b;
    size_t a_cap, b_cap;
} vlm_text_scratch;

void vlm_text_scratch_free(vlm_text_scratch *s);

// whitespace_clean(basic_clean(text)).lower() of CLIP's simple_tokenizer.py,
// with ftfy.fix_text approximated by NFC. Invalid UTF-8 decodes as Python's
// bytes.decode("utf-8", errors="replace"). *out points into the scratch and
// stays valid until the next call with it.
vlm_status vlm_text_clean(vlm_text_scratch *s, const char *text, size_t len, const int32_t **out,
                          size_t *n, vlm_error *err);

// Next match of CLIP's pre-tokenisation regex in cp[*pos, n) (re.findall
// semantics); returns 0 when there is none, else 1 with [*start, *end) and
// *pos advanced past it.
int vlm_text_pretok_next(const int32_t *cp, size_t n, size_t *pos, size_t *start, size_t *end);

// UTF-8 of n code points; dst needs 4*n bytes. Returns the byte count.
size_t vlm_text_utf8_encode(const int32_t *cp, size_t n, uint8_t *dst);

// Python's bytes.decode("utf-8", errors="replace") re-encoded as UTF-8: each
// maximal ill-formed subsequence becomes U+FFFD. dst needs 3*len bytes.
// *ascii (if non-NULL) is set when the input was pure ASCII.
size_t vlm_text_utf8_sanitize(const uint8_t *src, size_t len, uint8_t *dst, int *ascii);

// Decodes one code point of valid UTF-8 at s[0..len); returns its length, or
// 0 if the bytes there are not well-formed UTF-8.
size_t vlm_text_utf8_decode1(const uint8_t *s, size_t len, int32_t *cp);

// bytes_to_unicode() of CLIP: printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100..U+0143 in byte order.
int32_t vlm_text_byte_to_unicode(uint8_t b);
// Inverse; -1 if cp is not in the 256-character alphabet.
int vlm_text_unicode_to_byte(int32_t cp);
// Position of byte b in CLIP's vocabulary order (printable bytes first): the
// id of the single-byte token; +256 for the "</w>" variant.
int vlm_text_byte_rank(uint8_t b);

#define VLM_TEXT_SOT "<|startoftext|>"
#define VLM_TEXT_EOT "<|endoftext|>"
// Largest number of merges CLIP reads (lines[1:49152-256-2+1]).
#define VLM_TEXT_MAX_MERGES (49152 - 256 - 2)

#endif
