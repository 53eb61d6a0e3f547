// Text for the language models: documents from a plain-text file (one per
// line) or from the captions of any dataset vlm reads (a manifest's caption
// column, webdataset .txt members: every caption of every sample), packed
// into one token stream (SOT doc EOT SOT doc EOT ...) cut into rows; and the
// held-out evaluation: perplexity (clm), masked-token top-1 (mlm).
#ifndef VLM_EVAL_LM_EVAL_H
#define VLM_EVAL_LM_EVAL_H

#include "text/lm.h"
#include "text/tokenizer.h"

typedef struct {
    char **doc;
    int64_t n;
    char *buf;    // the documents' bytes
} vlm_docs;

// path: a .tsv/.csv manifest (with caption_key), a tar pattern or ImageFolder
// (captions), else a plain-text file (one document per line, empty lines
// skipped). Files over 4 GiB are refused.
vlm_status vlm_docs_read(vlm_docs *d, const char *path, const char *caption_key, vlm_error *err);
void vlm_docs_free(vlm_docs *d);

typedef struct {
    int32_t *ids;
    int64_t n;
} vlm_token_stream;

// SOT doc EOT for every document (each cut to 1024 tokens).
vlm_status vlm_docs_tokenize(const vlm_docs *d, vlm_tokenizer *tok, vlm_token_stream *s, vlm_error *err);
void vlm_token_stream_free(vlm_token_stream *s);
// Rows of the stream: row i starts at i*T; clm rows hold T+1 tokens (the
// last one is the next row's first), mlm rows T.
int64_t vlm_lm_rows(const vlm_lm *m, const vlm_token_stream *s, int T);

typedef struct {
    int64_t rows, tokens;   // rows evaluated, targets scored
    double loss;            // mean cross-entropy over the targets
    double perplexity;      // exp(loss) (clm)
    double top1;            // share of targets predicted exactly (mlm: the masked tokens)
} vlm_lm_eval_result;

// Every row of s, batch B; mlm masks with a fixed stream (seed 0), so the
// figure repeats. Context T = the model's.
vlm_status vlm_lm_evaluate(vlm_lm *m, const vlm_token_stream *s, int B, vlm_lm_eval_result *r, vlm_error *err);

// The baseline a clm must beat: the perplexity on the clm targets of s's rows
// (context T) of a unigram model counted on train (add-one smoothing over V ids).
double vlm_unigram_perplexity(const vlm_token_stream *train, const vlm_token_stream *s, int V, int T);

#endif
