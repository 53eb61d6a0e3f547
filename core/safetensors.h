// safetensors read/write: 8-byte little-endian header length, JSON header
// {name: {dtype, shape, data_offsets}} (+ "__metadata__" string map), raw
// little-endian data. Reading validates everything a hostile file could break.
#ifndef VLM_CORE_SAFETENSORS_H
#define VLM_CORE_SAFETENSORS_H

#include <stdint.h>
#include "core/dtype.h"
#include "core/error.h"

#define VLM_ST_MAX_DIMS 8
#define VLM_ST_MAX_HEADER (100u << 20)   // refuse JSON headers above 100 MB

typedef struct {
    char *name;
    vlm_dtype dtype;
    int ndim;
    int64_t shape[VLM_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;   // byte offsets into the data section
} vlm_st_entry;

typedef struct {
    unsigned char *buf;    // whole file (read into memory)
    size_t size;
    size_t data_start;     // 8 + header length
    int n;
    vlm_st_entry *entries; // in header order
    int n_meta;
    char **meta_keys, **meta_vals;
} vlm_st_file;

vlm_status vlm_st_read(vlm_st_file *f, const char *path, vlm_error *err);
// Parses an in-memory image (takes a copy); `what` names it in errors.
vlm_status vlm_st_parse(vlm_st_file *f, const void *data, size_t size, const char *what, vlm_error *err);
void vlm_st_free(vlm_st_file *f);
const vlm_st_entry *vlm_st_find(const vlm_st_file *f, const char *name);
const void *vlm_st_data(const vlm_st_file *f, const vlm_st_entry *e);
const char *vlm_st_meta(const vlm_st_file *f, const char *key); // NULL if absent
// Looks up `name`, checks dtype and (if shape != NULL) the exact shape, and
// copies the data into dst (numel elements). Errors name the file and tensor.
vlm_status vlm_st_get(const vlm_st_file *f, const char *name, vlm_dtype dtype, int ndim,
                      const int64_t *shape, void *dst, vlm_error *err);

typedef struct {
    const char *name;
    vlm_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} vlm_st_tensor;

// Writes atomically: PATH.tmp.<pid>, fsync, rename, fsync of the directory.
// meta: n_meta key/value string pairs for "__metadata__" (may be 0).
vlm_status vlm_st_write(const char *path, const vlm_st_tensor *t, int n, const char *const *meta_keys,
                        const char *const *meta_vals, int n_meta, vlm_error *err);

#endif
