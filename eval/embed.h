// Embeddings of a whole dataset through a CLIP (eval/embed.c).
#ifndef VLM_EVAL_EMBED_H
#define VLM_EVAL_EMBED_H

#include <stdint.h>
#include "data/dataset.h"
#include "data/image.h"
#include "fusion/clip.h"
#include "text/tokenizer.h"

// Encodes every image (eval transform) and, when caps != NULL, the given
// texts of a dataset into normalised embeddings img [n, E], txt [n, E]
// (txt may be NULL), with the dataset index of each row in *idx (bad samples
// are skipped, so n <= ds->n).
vlm_status vlm_clip_encode_dataset(vlm_clip *m, const vlm_dataset *ds, vlm_tokenizer *tok, int batch, int workers,
                              const vlm_decode_opts *dec, float **img, float **txt, int64_t **idx, int64_t *n,
                              vlm_error *err);

#endif
