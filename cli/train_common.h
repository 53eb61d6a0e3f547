// Helpers shared by the training/eval subcommands: option parsing, run
// folders, tokenizer setup, batched encoding and timing.
#ifndef VLM_CLI_TRAIN_COMMON_H
#define VLM_CLI_TRAIN_COMMON_H

#include <stdint.h>
#include "core/error.h"
#include "data/dataset.h"
#include "fusion/clip.h"
#include "text/tokenizer.h"

double cli_now(void);
// Parses a number option value; on error fills err naming the flag.
int cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out, vlm_error *err);
int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out, vlm_error *err);
// mkdir -p
vlm_status cli_mkdirs(const char *path, vlm_error *err);
int cli_file_exists(const char *path);
// Reads a merges file (plain or .gz) into a malloc'd NUL-terminated string.
vlm_status cli_read_merges(const char *path, char **text, vlm_error *err);
// Builds the tokenizer from merges text.
vlm_status cli_tokenizer_from_text(vlm_tokenizer *tok, const char *text, vlm_error *err);
// Tokenizes n captions into ids [n, ctx] (SOT..EOT, zero padded, truncated keeping EOT).
vlm_status cli_tokenize_batch(vlm_tokenizer *tok, const char *const *caps, int n, int ctx, int32_t *ids, vlm_error *err);
// Encodes every image (eval transform) and, when caps != NULL, the given
// texts of a dataset into normalised embeddings img [n, E], txt [n, E]
// (txt may be NULL), with the dataset index of each row in *idx (bad samples
// are skipped, so n <= ds->n).
vlm_status cli_encode_dataset(vlm_clip *m, const vlm_dataset *ds, vlm_tokenizer *tok, int batch, int workers,
                              const vlm_decode_opts *dec, float **img, float **txt, int64_t **idx, int64_t *n,
                              vlm_error *err);
// "R,G,B" -> composite transparent pixels over that colour (default: drop alpha, as PIL).
int cli_parse_composite(const char *s, vlm_decode_opts *o, vlm_error *err);
// Encodes texts into normalised embeddings [n, E].
vlm_status cli_encode_texts(vlm_clip *m, vlm_tokenizer *tok, const char *const *texts, int n, float *out, vlm_error *err);
// "1h02m" / "3m05s" / "12s"
void cli_fmt_duration(double s, char *buf, int n);

#endif
