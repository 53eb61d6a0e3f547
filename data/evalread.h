// One thread's eval-transform reader: decode options, the transform to S and
// its scratch, reused across images (no allocation per image once warm), for
// code that reads images one by one outside the threaded loader.
#ifndef VLM_DATA_EVALREAD_H
#define VLM_DATA_EVALREAD_H

#include "data/dataset.h"
#include "data/image.h"
#include "data/transform.h"

typedef struct {
    vlm_decode_opts dec;
    vlm_transform t;
    vlm_transform_scratch sc;
    vlm_sample s;
    vlm_image img;
} vlm_eval_reader;

// Transform to S x S; dec NULL: the default decoding (drop alpha, PIL's limit).
void vlm_eval_reader_init(vlm_eval_reader *r, int S, const vlm_decode_opts *dec);
void vlm_eval_reader_free(vlm_eval_reader *r);
// Sample i of ds -> 8-bit RGB out [S, S, 3].
vlm_status vlm_eval_read_sample_u8(vlm_eval_reader *r, const vlm_dataset *ds, int64_t i, uint8_t *out, vlm_error *err);
// An image file -> 8-bit RGB out [S, S, 3]; errors name the file.
vlm_status vlm_eval_read_file_u8(vlm_eval_reader *r, const char *path, uint8_t *out, vlm_error *err);

#endif
