// Filesystem helpers (see fs.h).
#include "core/fs.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
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

void vlm_strlist_free(char **list, int n) {
    for (int i = 0; list && i < n; i++) free(list[i]);
    free(list);
}

static vlm_status read_lines(const char *path, char ***out, int *n, int skip_blank, vlm_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char **v = NULL;
    int cnt = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    vlm_status st = VLM_OK;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if ((size_t)len != strlen(line)) {
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s:%d: NUL byte in line", path, lineno);
            break;
        }
        if (len == 0) {
            if (skip_blank) continue;
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s:%d: empty line", path, lineno);
            break;
        }
        if (cnt == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, sizeof(char *) * (size_t)cap);
            if (!nv) { st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path); break; }
            v = nv;
        }
        v[cnt++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!st && cnt == 0) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: no lines", path);
    if (st) {
        vlm_strlist_free(v, cnt);
        return st;
    }
    *out = v;
    *n = cnt;
    return VLM_OK;
}

vlm_status vlm_lines_load(const char *path, char ***lines, int *n, vlm_error *err) { return read_lines(path, lines, n, 0, err); }

vlm_status vlm_lines_load_nonblank(const char *path, char ***lines, int *n, vlm_error *err) {
    return read_lines(path, lines, n, 1, err);
}

