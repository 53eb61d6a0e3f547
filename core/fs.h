// Small filesystem helpers: the atomic writers' commit (safetensors, COCO JSON)
// and reading text files of one entry per line (class names, templates).
#ifndef VLM_CORE_FS_H
#define VLM_CORE_FS_H

#include "core/error.h"

// Finishes an atomic write whose data is already flushed and fsynced in tmp:
// renames tmp over path, then fsyncs path's directory so the rename itself is
// durable. On failure tmp is removed and path is left as it was.
vlm_status vlm_fs_commit(const char *tmp, const char *path, vlm_error *err);

// One string per line (trailing CR/LF stripped; a blank line or a NUL byte is
// an error naming the file and line). Free with vlm_strlist_free.
vlm_status vlm_lines_load(const char *path, char ***lines, int *n, vlm_error *err);
// The same with blank lines skipped.
vlm_status vlm_lines_load_nonblank(const char *path, char ***lines, int *n, vlm_error *err);
void vlm_strlist_free(char **list, int n);

#endif
