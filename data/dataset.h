// Datasets of (image, caption and/or label) samples with random access:
// open_clip CSV/TSV manifests, webdataset tar shards (brace patterns),
// ImageFolder trees and IDX files (MNIST / Fashion-MNIST, raw or gzip).
// Opening indexes everything once; reading sample i afterwards is
// thread-safe and costs one file read (manifest, ImageFolder, shard member
// via pread) or nothing (IDX, in memory).
#ifndef VLM_DATA_DATASET_H
#define VLM_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "data/image.h"

typedef enum {
    VLM_DS_MANIFEST = 1, // CSV/TSV: header row, img/caption/label columns
    VLM_DS_WEBDATASET,   // tar shards: key.{png,jpg,jpeg} + key.txt / key.cls / key.json
    VLM_DS_IMAGEFOLDER,  // ROOT/<class>/**/*.{png,jpg,jpeg}, classes sorted
    VLM_DS_IDX,          // *-images-idx3-ubyte[.gz] (+ *-labels-idx1-ubyte[.gz])
} vlm_dataset_kind;

#define VLM_DATASET_BAD_KEEP 8 // messages kept for the first bad entries

typedef struct {
    const char *img_key;     // manifest image column, default "filepath"
    const char *caption_key; // manifest caption column, default "title" (optional column)
    const char *caption_sep; // manifest: a cell holds several captions split at this string
                             // (NULL: one caption per cell). Webdataset .txt members hold
                             // one caption per line; .json members "caption" or "captions": [...]
    const char *label_key;   // manifest label column, default "label" (optional column)
    char sep;                // manifest separator, default '\t' (open_clip's default)
    int require_caption;     // error at open if the dataset has no captions
    int require_label;       // error at open if the dataset has no labels
    const char *idx_labels;  // IDX labels file; default: the images path with
                             // "images-idx3" replaced by "labels-idx1", if it exists
    const char *classnames;  // one class name per line (label = line index); default:
                             // "<manifest stem>_classnames.txt" or "classnames.txt" beside
                             // the data, if present
    int64_t max_bad;         // entries skipped at open (malformed rows, damaged
                             // shards, groups without an image) before open fails; -1 = no limit
    const char *upsampling;  // webdataset: "F1::F2::..." integer factors, one per "::" source of
                             // the spec (open_clip's --train-data-upsampling-factors): the k-th
                             // source's samples are listed Fk times (copies draw their own
                             // captions and augmentations); NULL = once each
} vlm_dataset_opts;

typedef struct {
    int64_t src;    // offset in strs: path (manifest, folder), member name (wds)
    int64_t cap;    // offset in strs of the caption, -1 if none
    int64_t off;    // wds: byte offset in the shard (or in mem); idx: pixel offset
    uint32_t size;  // wds: image bytes
    int32_t shard;  // wds: shard index; -1 when the bytes are in mem (compressed shards)
    int32_t label;  // -1 if none
} vlm_dataset_item;

typedef struct {
    vlm_dataset_kind kind;
    char *spec;              // as given to open
    int64_t n;               // samples
    int has_captions, has_labels;
    int n_classes;           // max label + 1 (or number of class names)
    char **classnames;       // n_classes entries or NULL
    // entries dropped while opening (counted, first few kept with reasons)
    int64_t n_bad;
    char *bad[VLM_DATASET_BAD_KEEP];
    // internals
    vlm_dataset_item *items;
    char *strs;              // NUL-separated strings
    size_t strs_len, strs_cap;
    char **shards;           // wds shard paths
    int n_shards;
    uint8_t *mem;            // idx pixels / members of compressed shards
    size_t mem_len, mem_cap;
    int idx_w, idx_h;        // idx image size
} vlm_dataset;

// One sample as read; buffers inside are reused across reads (one per thread).
typedef struct {
    const uint8_t *data;     // encoded PNG/JPEG bytes, or raw pixels if raw_w > 0
    size_t size;
    int raw_w, raw_h, raw_c; // IDX: [raw_h, raw_w, raw_c] u8
    const char *caption;     // NULL if none (points into the dataset)
    int32_t label;           // -1 if none
    const char *name;        // for messages: path, or "shard.tar:member"
    // owned buffers
    uint8_t *buf;
    size_t cap;
    char name_buf[1024];
} vlm_sample;

void vlm_dataset_opts_default(vlm_dataset_opts *o);
// spec: a .csv/.tsv (or any other file with a header row) manifest; a tar
// pattern ("dir/{0000..0099}.tar", several joined with "::"); a directory
// (ImageFolder); an IDX images file (name containing "idx3", or IDX magic).
// opts may be NULL.
vlm_status vlm_dataset_open(vlm_dataset *ds, const char *spec, const vlm_dataset_opts *opts, vlm_error *err);
void vlm_dataset_free(vlm_dataset *ds);
const char *vlm_dataset_kind_name(vlm_dataset_kind k);

void vlm_sample_init(vlm_sample *s);
void vlm_sample_free(vlm_sample *s);
// Reads sample i (0 <= i < n). Thread-safe for distinct vlm_sample objects.
vlm_status vlm_dataset_read(const vlm_dataset *ds, int64_t i, vlm_sample *s, vlm_error *err);
// read + decode (or expand raw pixels) into img as RGB.
vlm_status vlm_dataset_load_image(const vlm_dataset *ds, int64_t i, vlm_sample *s, vlm_image *img,
                                  const vlm_decode_opts *o, vlm_error *err);
// Caption / label / printable source of sample i without reading the image.
// A sample's captions are one string, several joined by '\n' (multi-caption).
const char *vlm_dataset_caption(const vlm_dataset *ds, int64_t i); // NULL if none
int vlm_caption_count(const char *s);                             // 0 for NULL or ""
// Caption k (0-based; past the last gives the last) of s: start and *len bytes.
const char *vlm_caption_pick(const char *s, int k, size_t *len);
int32_t vlm_dataset_label(const vlm_dataset *ds, int64_t i);       // -1 if none
const char *vlm_dataset_source(const vlm_dataset *ds, int64_t i, char *buf, size_t n);

// Expands webdataset brace patterns: "{0000..0099}" (zero padding kept from
// the first number) and "{a,b,c}", several per pattern; "::" separates
// patterns. *out is a malloc'd array of malloc'd strings.
vlm_status vlm_brace_expand(const char *pattern, char ***out, int *n, vlm_error *err);
void vlm_brace_free(char **list, int n);

typedef struct {
    int64_t written, bad, shards;
    char *bad_first[VLM_DATASET_BAD_KEEP]; // reasons for the first skipped samples
} vlm_convert_report;

// Writes the dataset as webdataset shards DIR/000000.tar, ... with at most
// shard_size samples each: key.{png,jpg} (original bytes, extension from the
// content), key.txt (caption), key.cls (label). Keys are the 9-digit sample
// index. Unreadable samples are skipped and reported. Raw (IDX) samples are
// stored as PNG. raster non-NULL: SVG images are drawn with these decode
// options (svg_size, background) and stored as PNG; NULL keeps SVG bytes.
vlm_status vlm_dataset_write_shards(const vlm_dataset *ds, const char *dir, int64_t shard_size,
                                    const vlm_decode_opts *raster, vlm_convert_report *rep, vlm_error *err);
void vlm_convert_report_free(vlm_convert_report *r);

#endif
