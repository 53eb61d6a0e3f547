// safetensors reader (validating) and atomic writer. The JSON header is parsed
// with jansson; every offset, shape and size is checked before use.
#include "core/safetensors.h"
#include "core/fs.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

void vlm_st_free(vlm_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->entries);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

static int cmp_begin(const void *a, const void *b) {
    const vlm_st_entry *x = *(const vlm_st_entry *const *)a, *y = *(const vlm_st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// Checks the 8-byte little-endian header length against the limit and the
// file size; sets f->data_start = 8 + *hlen.
static vlm_status header_len(vlm_st_file *f, const unsigned char *buf, size_t size, const char *what, uint64_t *hlen,
                             vlm_error *err) {
    if (size < 8)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a safetensors file (%zu bytes, need at least 8)", what, size);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | buf[i];
    if (h > VLM_ST_MAX_HEADER)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", what,
                          (unsigned long long)h, VLM_ST_MAX_HEADER);
    if (h > size - 8)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                          what, (unsigned long long)h, size);
    f->data_start = 8 + h;
    *hlen = h;
    return VLM_OK;
}

// The "__metadata__" object: string values only, copied to f->meta_keys/vals.
static vlm_status parse_metadata(vlm_st_file *f, json_t *val, const char *what, vlm_error *err) {
    if (!json_is_object(val)) return vlm_errorf(err, VLM_ERR_FORMAT, "%s: __metadata__ is not an object", what);
    size_t nm = json_object_size(val);
    f->meta_keys = calloc(nm ? nm : 1, sizeof(char *));
    f->meta_vals = calloc(nm ? nm : 1, sizeof(char *));
    const char *mk;
    json_t *mv;
    json_object_foreach(val, mk, mv) {
        if (!json_is_string(mv))
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: __metadata__ value for '%s' is not a string", what, mk);
        f->meta_keys[f->n_meta] = strdup(mk);
        f->meta_vals[f->n_meta] = strdup(json_string_value(mv));
        f->n_meta++;
    }
    return VLM_OK;
}

// Shape of tensor `key` into e->ndim, e->shape; *numel = product, checked so
// numel * 16 (the widest dtype) cannot overflow.
static vlm_status parse_shape(vlm_st_entry *e, json_t *js, const char *key, const char *what, uint64_t *numel,
                              vlm_error *err) {
    if (json_array_size(js) > VLM_ST_MAX_DIMS)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' has %zu dims (max %d)", what, key,
                          json_array_size(js), VLM_ST_MAX_DIMS);
    e->ndim = (int)json_array_size(js);
    uint64_t ne = 1;
    for (int d = 0; d < e->ndim; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' has a bad shape entry at dim %d", what, key, d);
        e->shape[d] = json_integer_value(x);
        if (e->shape[d] && ne > UINT64_MAX / 16 / (uint64_t)e->shape[d])
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' shape overflows", what, key);
        ne *= (uint64_t)e->shape[d];
    }
    *numel = ne;
    return VLM_OK;
}

// One tensor entry {dtype, shape, data_offsets [begin, end]}: its offsets must
// lie in the data section (data_size bytes) and match shape x dtype size.
static vlm_status parse_entry(vlm_st_entry *e, const char *key, json_t *val, uint64_t data_size, const char *what,
                              vlm_error *err) {
    json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
           *jo = json_object_get(val, "data_offsets");
    if (!json_is_object(val) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' needs dtype, shape and data_offsets [begin, end]",
                          what, key);
    if (vlm_dtype_from_name(json_string_value(jd), &e->dtype))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' has unsupported dtype '%s'", what, key,
                          json_string_value(jd));
    uint64_t numel = 1;
    vlm_status st = parse_shape(e, js, key, what, &numel, err);
    if (st) return st;
    e->numel = (int64_t)numel;
    json_t *b = json_array_get(jo, 0), *en = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' has invalid data_offsets", what, key);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    if (e->end > data_size)
        return vlm_errorf(err, VLM_ERR_FORMAT,
                          "%s: tensor '%s' data_offsets [%llu, %llu] out of range (data section is %llu bytes)", what,
                          key, (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)data_size);
    if (e->end - e->begin != numel * vlm_dtype_size(e->dtype))
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensor '%s' holds %llu bytes but shape x %s needs %llu", what,
                          key, (unsigned long long)(e->end - e->begin), vlm_dtype_name(e->dtype),
                          (unsigned long long)(numel * vlm_dtype_size(e->dtype)));
    return VLM_OK;
}

// Overlap check: sort by begin, each must start at or after the previous end.
static vlm_status check_overlap(const vlm_st_file *f, const char *what, vlm_error *err) {
    if (f->n <= 1) return VLM_OK;
    const vlm_st_entry **order = malloc(sizeof(*order) * f->n);
    if (!order) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", what);
    for (int i = 0; i < f->n; i++) order[i] = &f->entries[i];
    qsort(order, f->n, sizeof *order, cmp_begin);
    vlm_status st = VLM_OK;
    for (int i = 1; i < f->n && !st; i++)
        if (order[i]->begin < order[i - 1]->end && order[i]->end > order[i]->begin)
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", what, order[i - 1]->name,
                            order[i]->name);
    free(order);
    return st;
}

// Takes ownership of buf (freed on error too).
// Files vlm writes carry the CRC-32 of their data section in the metadata
// ("vlm_crc32", 8 hex digits): a flipped or lost byte anywhere in the tensors
// is refused on read instead of loaded. Files from elsewhere have none.
#define CRC_KEY "vlm_crc32"
static uint32_t crc_of(uint32_t crc, const void *p, uint64_t n) {
    const unsigned char *b = p;
    while (n > 0) { // zlib's crc32 takes a uInt length
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k;
        n -= k;
    }
    return crc;
}

static vlm_status check_crc(const vlm_st_file *f, const char *what, vlm_error *err) {
    const char *want = vlm_st_meta(f, CRC_KEY);
    if (!want) return VLM_OK;
    uint32_t got = crc_of((uint32_t)crc32(0, Z_NULL, 0), f->buf + f->data_start, f->size - f->data_start);
    char hex[16];
    snprintf(hex, sizeof hex, "%08x", got);
    if (strcmp(hex, want))
        return vlm_errorf(err, VLM_ERR_FORMAT,
                          "%s: corrupted: the data's CRC-32 is %s, the header records %.16s (a damaged or partly "
                          "overwritten file)", what, hex, want);
    return VLM_OK;
}

static vlm_status parse_owned(vlm_st_file *f, unsigned char *buf, size_t size, const char *what, vlm_error *err) {
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->size = size;
    json_t *root = NULL;
    uint64_t hlen = 0;
    vlm_status st = header_len(f, buf, size, what, &hlen, err);
    if (st) goto fail;
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: malformed JSON header: %s", what, root ? "not an object" : jerr.text);
        goto fail;
    }
    size_t nkeys = json_object_size(root);
    f->entries = calloc(nkeys ? nkeys : 1, sizeof *f->entries);
    if (!f->entries) {
        st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", what);
        goto fail;
    }
    uint64_t data_size = size - f->data_start;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if ((st = parse_metadata(f, val, what, err))) goto fail;
            continue;
        }
        vlm_st_entry *e = &f->entries[f->n];
        e->name = strdup(key);
        f->n++;
        if ((st = parse_entry(e, key, val, data_size, what, err))) goto fail;
    }
    if ((st = check_overlap(f, what, err))) goto fail;
    if ((st = check_crc(f, what, err))) goto fail;
    json_decref(root);
    return VLM_OK;
fail:
    json_decref(root);
    vlm_st_free(f);
    return st;
}

vlm_status vlm_st_parse(vlm_st_file *f, const void *data, size_t size, const char *what, vlm_error *err) {
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %zu bytes", what, size);
    memcpy(buf, data, size);
    return parse_owned(f, buf, size, what, err);
}

vlm_status vlm_st_read(vlm_st_file *f, const char *path, vlm_error *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return vlm_errorf(err, VLM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(fp);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %zu bytes", path, size);
    }
    if (fread(buf, 1, size, fp) != size) {
        free(buf);
        fclose(fp);
        return vlm_errorf(err, VLM_ERR_IO, "%s: short read", path);
    }
    fclose(fp);
    return parse_owned(f, buf, size, path, err);
}

const vlm_st_entry *vlm_st_find(const vlm_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
    return NULL;
}

const void *vlm_st_data(const vlm_st_file *f, const vlm_st_entry *e) { return f->buf + f->data_start + e->begin; }

const char *vlm_st_meta(const vlm_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

vlm_status vlm_st_get(const vlm_st_file *f, const char *name, vlm_dtype dtype, int ndim, const int64_t *shape,
                      void *dst, vlm_error *err) {
    const vlm_st_entry *e = vlm_st_find(f, name);
    if (!e) return vlm_errorf(err, VLM_ERR_FORMAT, "tensor '%s' not found", name);
    if (e->dtype != dtype)
        return vlm_errorf(err, VLM_ERR_FORMAT, "tensor '%s' has dtype %s, expected %s", name, vlm_dtype_name(e->dtype),
                          vlm_dtype_name(dtype));
    if (shape) {
        int ok = e->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = e->shape[i] == shape[i];
        if (!ok) {
            char a[128], b[128];
            shape_str(a, sizeof a, e->ndim, e->shape);
            shape_str(b, sizeof b, ndim, shape);
            return vlm_errorf(err, VLM_ERR_SHAPE, "tensor '%s' has shape %s, expected %s", name, a, b);
        }
    }
    memcpy(dst, vlm_st_data(f, e), e->end - e->begin);
    return VLM_OK;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

vlm_status vlm_st_write(const char *path, const vlm_st_tensor *t, int n, const char *const *meta_keys,
                        const char *const *meta_vals, int n_meta, vlm_error *err) {
    json_t *root = json_object(), *m = json_object();
    uint32_t crc = (uint32_t)crc32(0, Z_NULL, 0);
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
        crc = crc_of(crc, t[i].data, numel * vlm_dtype_size(t[i].dtype));
    }
    char hex[16];
    snprintf(hex, sizeof hex, "%08x", crc);
    for (int i = 0; i < n_meta; i++)
        if (strcmp(meta_keys[i], CRC_KEY)) json_object_set_new(m, meta_keys[i], json_string(meta_vals[i]));
    json_object_set_new(m, CRC_KEY, json_string(hex));
    json_object_set_new(root, "__metadata__", m);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= (uint64_t)t[i].shape[d];
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        }
        uint64_t bytes = numel * vlm_dtype_size(t[i].dtype);
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(vlm_dtype_name(t[i].dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        if (json_object_get(root, t[i].name)) {
            json_decref(e);
            json_decref(root);
            return vlm_errorf(err, VLM_ERR_ARG, "%s: duplicate tensor name '%s'", path, t[i].name);
        }
        json_object_set_new(root, t[i].name, e);
        off += bytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return vlm_errorf(err, VLM_ERR_OOM, "%s: cannot serialise header", path);
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7; // 8-byte align the data section
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(hdr);
        return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int bad = write_all(fd, len8, 8) || write_all(fd, hdr, hlen) || write_all(fd, "        ", padded - hlen);
    free(hdr);
    for (int i = 0; i < n && !bad; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
        bad = write_all(fd, t[i].data, numel * vlm_dtype_size(t[i].dtype));
    }
    if (bad || fsync(fd)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return vlm_errorf(err, VLM_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
    }
    close(fd);
    return vlm_fs_commit(tmp, path, err);
}
