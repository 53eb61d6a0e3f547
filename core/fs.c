// Filesystem helpers (see fs.h).
#include "core/fs.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

vlm_status vlm_fs_commit(const char *tmp, const char *path, vlm_error *err) {
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return vlm_errorf(err, VLM_ERR_IO, "%s: rename failed: %s", path, strerror(e));
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return VLM_OK;
}
