// safetensors: round trip with metadata, the OpenAI reference files load, and
// hostile files (truncated, huge header, bad JSON, offsets out of range,
// overlapping tensors, size/shape mismatch, duplicate keys) get clear errors.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/safetensors.h"
#include "tests/testutil.h"

static vlm_status parse_raw(const char *json, size_t data_bytes, vlm_error *err) {
    size_t hl = strlen(json), n = 8 + hl + data_bytes;
    unsigned char *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, json, hl);
    vlm_st_file f;
    vlm_status st = vlm_st_parse(&f, buf, n, "hostile", err);
    if (st == VLM_OK) vlm_st_free(&f);
    free(buf);
    return st;
}

static void expect_reject(const char *json, size_t data_bytes, const char *needle) {
    vlm_error err = {0};
    vlm_status st = parse_raw(json, data_bytes, &err);
    CHECK(st != VLM_OK, "accepted hostile header %s", json);
    CHECK(strstr(err.msg, needle) != NULL, "error for %s was '%s', expected it to mention '%s'", json, err.msg, needle);
}

int main(void) {
    vlm_error err = {0};
    // Round trip.
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[3] = {7, -8, 9};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    vlm_st_tensor ts[2] = {{"w.a", VLM_F32, 2, sa, a}, {"ids", VLM_I32, 1, sb, b}};
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    const char *path = "test_roundtrip.safetensors";
    CHECK(vlm_st_write(path, ts, 2, mk, mv, 1, &err) == VLM_OK, "write: %s", err.msg);
    vlm_st_file f;
    CHECK(vlm_st_read(&f, path, &err) == VLM_OK, "read: %s", err.msg);
    if (f.n == 2) {
        float a2[6];
        int32_t b2[3];
        CHECK(vlm_st_get(&f, "w.a", VLM_F32, 2, sa, a2, &err) == VLM_OK && !memcmp(a, a2, sizeof a), "w.a: %s", err.msg);
        CHECK(vlm_st_get(&f, "ids", VLM_I32, 1, sb, b2, &err) == VLM_OK && !memcmp(b, b2, sizeof b), "ids: %s", err.msg);
        CHECK(f.data_start % 8 == 0, "data section not 8-byte aligned");
        CHECK(vlm_st_meta(&f, "format") && !strcmp(vlm_st_meta(&f, "format"), "pt"), "metadata lost");
        int64_t wrong[2] = {3, 2};
        CHECK(vlm_st_get(&f, "w.a", VLM_F32, 2, wrong, a2, &err) == VLM_ERR_SHAPE && strstr(err.msg, "[2, 3]"),
              "shape mismatch not reported: %s", err.msg);
        CHECK(vlm_st_get(&f, "w.a", VLM_I32, 2, sa, a2, &err) == VLM_ERR_FORMAT, "dtype mismatch not reported");
        CHECK(vlm_st_get(&f, "nope", VLM_F32, 0, NULL, a2, &err) == VLM_ERR_FORMAT && strstr(err.msg, "nope"),
              "missing tensor not reported");
    } else
        CHECK(0, "expected 2 tensors, got %d", f.n);
    vlm_st_free(&f);
    remove(path);

    // The OpenAI reference files parse.
    const char *refs[] = {"../shared/reference/openai-clip/tiny.weights.safetensors",
                          "../shared/reference/openai-clip/tiny.io.safetensors"};
    for (int i = 0; i < 2; i++) {
        vlm_st_file r;
        vlm_status st = vlm_st_read(&r, tu_src(refs[i]), &err);
        CHECK(st == VLM_OK, "%s: %s", refs[i], err.msg);
        if (st == VLM_OK) {
            CHECK(r.n > 3, "%s: only %d tensors", refs[i], r.n);
            vlm_st_free(&r);
        }
    }

    // Hostile inputs.
    CHECK(vlm_st_read(&f, "does/not/exist.safetensors", &err) == VLM_ERR_IO && strstr(err.msg, "does/not/exist"),
          "missing file: %s", err.msg);
    unsigned char tiny[4] = {1, 2, 3, 4};
    CHECK(vlm_st_parse(&f, tiny, 4, "short", &err) == VLM_ERR_FORMAT, "4-byte file accepted");
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    CHECK(vlm_st_parse(&f, huge, 16, "huge", &err) == VLM_ERR_FORMAT && strstr(err.msg, "limit"), "huge header: %s", err.msg);
    unsigned char past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(vlm_st_parse(&f, past, 16, "past", &err) == VLM_ERR_FORMAT && strstr(err.msg, "past the end"), "header past end: %s",
          err.msg);
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8, "malformed JSON");
    expect_reject("[1, 2]", 0, "not an object");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8, "out of range");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "needs 12");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                  " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 16, "overlap");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 4]}}", 8, "invalid data_offsets");
    expect_reject("{\"a\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "unsupported dtype");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "bad shape");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 8]}}",
                  8, "overflow");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "data_offsets");
    expect_reject("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                  " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "malformed JSON");
    expect_reject("{\"__metadata__\": {\"k\": 3}}", 0, "not a string");
    // Writer refuses duplicate names and unwritable paths, leaving no temp file.
    vlm_st_tensor dup[2] = {{"x", VLM_F32, 1, sb, a}, {"x", VLM_F32, 1, sb, a}};
    CHECK(vlm_st_write("dup.safetensors", dup, 2, NULL, NULL, 0, &err) == VLM_ERR_ARG, "duplicate names written");
    CHECK(vlm_st_write("/nonexistent-dir/x.safetensors", ts, 1, NULL, NULL, 0, &err) == VLM_ERR_IO, "bad path accepted");
    return tu_done("test_safetensors");
}
