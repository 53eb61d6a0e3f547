// Shared bits of the libFuzzer harnesses: a NUL-terminated copy of the input
// and a temp file holding it (for parsers that take a path).
#ifndef VLM_FUZZ_UTIL_H
#define VLM_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline char *fz_str(const uint8_t *d, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, d, n);
    s[n] = 0;
    return s;
}

// Writes d to /tmp/vlm-fuzz-<pid>.<ext> (or $TMPDIR); returns the path (static).
static inline const char *fz_file(const uint8_t *d, size_t n, const char *ext) {
    static char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/vlm-fuzz-%d.%s", dir && *dir ? dir : "/tmp", (int)getpid(), ext);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(d, 1, n, f) != n)) abort();
    fclose(f);
    return path;
}

#endif
