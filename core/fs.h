// Small filesystem helpers shared by the atomic writers (safetensors, COCO JSON).
#ifndef VLM_CORE_FS_H
#define VLM_CORE_FS_H

#include "core/error.h"

// Finishes an atomic write whose data is already flushed and fsynced in tmp:
// renames tmp over path, then fsyncs path's directory so the rename itself is
// durable. On failure tmp is removed and path is left as it was.
vlm_status vlm_fs_commit(const char *tmp, const char *path, vlm_error *err);

#endif
