// One thread's eval-transform reader (see evalread.h).
#include "data/evalread.h"

void vlm_eval_reader_init(vlm_eval_reader *r, int S, const vlm_decode_opts *dec) {
    if (dec) r->dec = *dec;
    else vlm_decode_opts_default(&r->dec);
    vlm_transform_init(&r->t, S);
    vlm_transform_scratch_init(&r->sc);
    vlm_sample_init(&r->s);
    vlm_image_init(&r->img);
}

void vlm_eval_reader_free(vlm_eval_reader *r) {
    vlm_transform_scratch_free(&r->sc);
    vlm_sample_free(&r->s);
    vlm_image_free(&r->img);
}

vlm_status vlm_eval_read_sample_u8(vlm_eval_reader *r, const vlm_dataset *ds, int64_t i, uint8_t *out, vlm_error *err) {
    vlm_status st = vlm_dataset_load_image(ds, i, &r->s, &r->img, &r->dec, err);
    return st ? st : vlm_transform_eval_u8(&r->t, &r->img, out, &r->sc, err);
}

vlm_status vlm_eval_read_file_u8(vlm_eval_reader *r, const char *path, uint8_t *out, vlm_error *err) {
    vlm_status st = vlm_image_load(&r->img, path, &r->dec, err);
    if (!st && (st = vlm_transform_eval_u8(&r->t, &r->img, out, &r->sc, err))) vlm_error_prefix(err, "%s", path);
    return st;
}
