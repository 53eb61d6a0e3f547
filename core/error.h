// Status codes and error messages: the library never prints or exits; every
// failing call returns a vlm_status and fills a vlm_error naming the file,
// the op, the shapes or the offending input.
#ifndef VLM_CORE_ERROR_H
#define VLM_CORE_ERROR_H

#include <stdarg.h>

typedef enum {
    VLM_OK = 0,
    VLM_ERR_ARG,      // bad argument / flag
    VLM_ERR_SHAPE,    // shapes do not fit the op
    VLM_ERR_IO,       // open/read/write failed
    VLM_ERR_FORMAT,   // malformed or hostile file content
    VLM_ERR_OOM,      // allocation failed or over a configured limit
    VLM_ERR_NUMERIC,  // NaN/Inf where a finite value is required
    VLM_ERR_STATE,    // call out of order (e.g. backward without tape)
    VLM_ERR_COMM,     // a collective between processes failed or timed out
} vlm_status;

typedef struct {
    vlm_status status;
    char msg[1024];
} vlm_error;

// Sets err (if non-NULL) and returns status, so callers can `return vlm_errorf(...)`.
vlm_status vlm_errorf(vlm_error *err, vlm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Prefixes the existing message with context ("loading x.safetensors: ...").
vlm_status vlm_error_prefix(vlm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vlm_error_clear(vlm_error *err);
const char *vlm_status_name(vlm_status s);

#endif
