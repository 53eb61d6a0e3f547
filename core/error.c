// Error formatting helpers (see error.h).
#include "core/error.h"
#include <stdio.h>
#include <string.h>

vlm_status vlm_errorf(vlm_error *err, vlm_status status, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return status;
}

vlm_status vlm_error_prefix(vlm_error *err, const char *fmt, ...) {
    if (!err) return VLM_OK;
    char pre[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", pre, old);
    return err->status;
}

void vlm_error_clear(vlm_error *err) {
    if (!err) return;
    err->status = VLM_OK;
    err->msg[0] = 0;
}

const char *vlm_status_name(vlm_status s) {
    switch (s) {
    case VLM_OK: return "ok";
    case VLM_ERR_ARG: return "bad argument";
    case VLM_ERR_SHAPE: return "shape mismatch";
    case VLM_ERR_IO: return "I/O error";
    case VLM_ERR_FORMAT: return "malformed input";
    case VLM_ERR_OOM: return "out of memory";
    case VLM_ERR_NUMERIC: return "non-finite value";
    case VLM_ERR_STATE: return "invalid state";
    case VLM_ERR_COMM: return "communication failure";
    }
    return "unknown";
}
