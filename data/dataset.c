// Dataset formats (manifest, webdataset shards, ImageFolder, IDX): indexing at
// open, thread-safe random access afterwards, and webdataset shard writing.
// Tar is read and written with libarchive, JSON with jansson, gzip with zlib.
#include "data/dataset.h"
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_MANIFEST_BYTES ((size_t)8 << 30)
#define MAX_MEMBER_BYTES ((size_t)1 << 30)   // one image inside a shard
#define MAX_TEXT_BYTES ((size_t)1 << 20)     // one .txt / .cls / .json member
#define MAX_FILE_BYTES ((size_t)1 << 30)     // one image file

void vlm_dataset_opts_default(vlm_dataset_opts *o) {
    memset(o, 0, sizeof *o);
    o->img_key = "filepath";
    o->caption_key = "title";
    o->label_key = "label";
    o->sep = '\t';
    o->max_bad = -1;
}

const char *vlm_dataset_kind_name(vlm_dataset_kind k) {
    switch (k) {
    case VLM_DS_MANIFEST: return "manifest";
    case VLM_DS_WEBDATASET: return "webdataset";
    case VLM_DS_IMAGEFOLDER: return "imagefolder";
    case VLM_DS_IDX: return "idx";
    }
    return "unknown";
}

void vlm_sample_init(vlm_sample *s) { memset(s, 0, sizeof *s); }

void vlm_sample_free(vlm_sample *s) {
    free(s->buf);
    memset(s, 0, sizeof *s);
}

void vlm_dataset_free(vlm_dataset *ds) {
    free(ds->spec);
    for (int i = 0; i < ds->n_classes && ds->classnames; i++) free(ds->classnames[i]);
    free(ds->classnames);
    for (int i = 0; i < VLM_DATASET_BAD_KEEP; i++) free(ds->bad[i]);
    free(ds->items);
    free(ds->strs);
    vlm_brace_free(ds->shards, ds->n_shards);
    free(ds->mem);
    memset(ds, 0, sizeof *ds);
}

// ------------------------------------------------------------ helpers

static int64_t str_add(vlm_dataset *ds, const char *s, size_t len) {
    if (ds->strs_len + len + 1 > ds->strs_cap) {
        size_t c = ds->strs_cap ? ds->strs_cap : 65536;
        while (c < ds->strs_len + len + 1) c *= 2;
        char *p = realloc(ds->strs, c);
        if (!p) return -1;
        ds->strs = p;
        ds->strs_cap = c;
    }
    int64_t off = (int64_t)ds->strs_len;
    memcpy(ds->strs + off, s, len);
    ds->strs[off + (int64_t)len] = 0;
    ds->strs_len += len + 1;
    return off;
}

// Adds captions: the text s [len] split into pieces at `sep` (a byte string;
// NULL = '\n' with '\r' dropped), each trimmed of blanks, empty pieces
// dropped, stored joined by '\n' (the multi-caption form). -1 on OOM; -2
// if no caption is left.
static int64_t caps_add(vlm_dataset *ds, const char *s, size_t len, const char *sep) {
    char *tmp = malloc(len + 1);
    if (!tmp) return -1;
    size_t n = 0, seplen = sep ? strlen(sep) : 1;
    const char *end = s + len;
    while (s <= end) {
        const char *e = s;
        while (e < end && !(sep ? (size_t)(end - e) >= seplen && !memcmp(e, sep, seplen) : *e == '\n')) e++;
        const char *a = s, *b = e;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r' || *a == '\n')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r' || b[-1] == '\n')) b--;
        if (b > a) {
            if (n) tmp[n++] = '\n';
            for (const char *q = a; q < b; q++) tmp[n++] = *q == '\n' || *q == '\r' ? ' ' : *q;
        }
        if (e >= end) break;
        s = e + seplen;
    }
    int64_t off = n ? str_add(ds, tmp, n) : -2;
    free(tmp);
    return off;
}

int vlm_caption_count(const char *s) {
    if (!s || !*s) return 0;
    int n = 1;
    for (; *s; s++) n += *s == '\n';
    return n;
}

const char *vlm_caption_pick(const char *s, int k, size_t *len) {
    if (!s) {
        *len = 0;
        return "";
    }
    for (; k > 0; k--) {
        const char *nl = strchr(s, '\n');
        if (!nl) break;
        s = nl + 1;
    }
    const char *nl = strchr(s, '\n');
    *len = nl ? (size_t)(nl - s) : strlen(s);
    return s;
}

static int64_t mem_add(vlm_dataset *ds, const void *p, size_t len) {
    if (ds->mem_len + len > ds->mem_cap) {
        size_t c = ds->mem_cap ? ds->mem_cap : 1 << 20;
        while (c < ds->mem_len + len) c *= 2;
        uint8_t *q = realloc(ds->mem, c);
        if (!q) return -1;
        ds->mem = q;
        ds->mem_cap = c;
    }
    int64_t off = (int64_t)ds->mem_len;
    if (len) memcpy(ds->mem + off, p, len);
    ds->mem_len += len;
    return off;
}

static vlm_status item_add(vlm_dataset *ds, size_t *cap, const vlm_dataset_item *it, vlm_error *err) {
    if ((size_t)ds->n + 1 > *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        vlm_dataset_item *p = realloc(ds->items, c * sizeof *p);
        if (!p) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory indexing samples", ds->spec);
        ds->items = p;
        *cap = c;
    }
    ds->items[ds->n++] = *it;
    return VLM_OK;
}

__attribute__((format(printf, 2, 3))) static void bad_add(vlm_dataset *ds, const char *fmt, ...) {
    if (ds->n_bad < VLM_DATASET_BAD_KEEP) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ds->bad[ds->n_bad] = strdup(msg);
    }
    ds->n_bad++;
}

static vlm_status check_bad_limit(const vlm_dataset *ds, const vlm_dataset_opts *o, vlm_error *err) {
    if (o->max_bad >= 0 && ds->n_bad > o->max_bad)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: %lld bad entries (limit %lld); first: %s", ds->spec,
                          (long long)ds->n_bad, (long long)o->max_bad, ds->bad[0] ? ds->bad[0] : "?");
    return VLM_OK;
}

static int ends_with_ci(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

static int is_image_ext(const char *ext) {
    return !strcasecmp(ext, "png") || !strcasecmp(ext, "jpg") || !strcasecmp(ext, "jpeg") || !strcasecmp(ext, "svg");
}

// Directory part of path including the trailing '/', or "" (cwd).
static void dir_of(const char *path, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path + 1) : 0;
    if (len >= n) len = n - 1;
    memcpy(out, path, len);
    out[len] = 0;
}

// Reads "one name per line" class names (trailing \r and blanks stripped).
static vlm_status load_classnames(vlm_dataset *ds, const char *path, vlm_error *err) {
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    vlm_status st = vlm_file_read(path, &buf, &cap, &n, 64u << 20, err);
    if (st) return vlm_error_prefix(err, "class names");
    int count = 0, alloc = 0;
    char **names = NULL;
    char *p = (char *)buf, *end = p + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        char *q = e;
        while (q > p && (q[-1] == '\r' || q[-1] == ' ' || q[-1] == '\t')) q--;
        if (q > p || nl) { // keep empty lines inside the file: they still take an index
            if (count == alloc) {
                alloc = alloc ? alloc * 2 : 64;
                char **t = realloc(names, sizeof *t * (size_t)alloc);
                if (!t) break;
                names = t;
            }
            names[count++] = strndup(p, (size_t)(q - p));
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
    for (int i = 0; i < ds->n_classes && ds->classnames; i++) free(ds->classnames[i]);
    free(ds->classnames);
    ds->classnames = names;
    ds->n_classes = count;
    return VLM_OK;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// ------------------------------------------------------------ manifest

// Splits one CSV record starting at *pp (quotes: "a ""b"" c"), in place:
// fields are NUL-terminated inside the buffer. Returns the field count (0 for
// a blank line); *pp moves past the record; *lines counts newlines consumed.
static int csv_record(char **pp, char *end, char sep, char **fields, int max_fields, int *lines) {
    char *p = *pp;
    if (p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))) {
        *pp = p + (*p == '\r' ? 2 : 1);
        (*lines)++;
        return 0;
    }
    int nf = 0;
    for (;;) {
        char *start = p, *out = p;
        if (p < end && *p == '"') {
            p++;
            while (p < end) {
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (*p == '\n') (*lines)++;
                *out++ = *p++;
            }
            // text after the closing quote up to the separator is kept verbatim
            while (p < end && *p != sep && *p != '\n') {
                if (*p != '\r') *out++ = *p;
                p++;
            }
        } else {
            while (p < end && *p != sep && *p != '\n') p++;
            out = p;
            if (out > start && out[-1] == '\r') out--; // CRLF line ends
        }
        // p is at the end, a separator or a newline
        int at_sep = p < end && *p == sep, at_nl = p < end && *p == '\n';
        *out = 0; // out <= p; the buffer has a NUL at `end`
        if (nf < max_fields) fields[nf] = start;
        nf++;
        if (at_sep) {
            p++;
            continue; // "a<sep>" at the very end gives a trailing empty field
        }
        if (at_nl) {
            p++;
            (*lines)++;
        }
        break;
    }
    *pp = p;
    return nf;
}

enum { MANIFEST_MAXF = 256 }; // fields kept per manifest row (more are counted, not stored)

// Column indices in the header row f [nf] into col: image (required), caption
// and label (-1 when absent; an error when o requires them).
static vlm_status manifest_columns(char **f, int nf, const char *path, const vlm_dataset_opts *o, int col[3],
                                   vlm_error *err) {
    int ci = -1, ki = -1, li = -1, hf = nf < MANIFEST_MAXF ? nf : MANIFEST_MAXF;
    char cols[512] = "";
    for (int i = 0; i < hf; i++) {
        if (!strcmp(f[i], o->img_key)) ci = i;
        if (o->caption_key && !strcmp(f[i], o->caption_key)) ki = i;
        if (o->label_key && !strcmp(f[i], o->label_key)) li = i;
        size_t cl = strlen(cols);
        snprintf(cols + cl, sizeof cols - cl, "%s'%s'", i ? ", " : "", f[i]);
    }
    if (ci < 0) {
        char hint[160] = "";
        if (o->sep == '\t' && nf == 1 && strchr(f[0], ','))
            snprintf(hint, sizeof hint, " (the header has commas: comma-separated? set the separator to ',')");
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: no image column '%s' in the header (columns: %s)%s", path,
                          o->img_key, cols, hint);
    }
    if (o->require_caption && ki < 0)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: no caption column '%s' in the header (columns: %s)", path,
                          o->caption_key ? o->caption_key : "", cols);
    if (o->require_label && li < 0)
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: no label column '%s' in the header (columns: %s)", path,
                          o->label_key ? o->label_key : "", cols);
    col[0] = ci, col[1] = ki, col[2] = li;
    return VLM_OK;
}

// A row's label field as a class index >= 0 into *label; 0 (and a bad entry) if it is not one.
static int manifest_label(vlm_dataset *ds, const char *path, int row_line, const char *s, int32_t *label) {
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    while (*e == ' ') e++;
    if (!s[0] || *e || errno || v < 0 || v > INT32_MAX) {
        bad_add(ds, "%s:%d: bad label '%.40s' (want a class index >= 0)", path, row_line, s);
        return 0;
    }
    *label = (int32_t)v;
    return 1;
}

// dir (dlen bytes, '/' included) + ip (*il bytes) in *pb (grown to *pbcap);
// *il becomes the joined length. NULL when out of memory.
static const char *join_dir(const char *dir, size_t dlen, const char *ip, size_t *il, char **pb, size_t *pbcap) {
    if (dlen + *il + 1 > *pbcap) {
        *pbcap = dlen + *il + 1;
        char *t = realloc(*pb, *pbcap);
        if (!t) return NULL;
        *pb = t;
    }
    memcpy(*pb, dir, dlen);
    memcpy(*pb + dlen, ip, *il + 1);
    *il += dlen;
    return *pb;
}

static vlm_status open_manifest(vlm_dataset *ds, const char *path, const vlm_dataset_opts *o, vlm_error *err) {
    uint8_t *raw = NULL;
    size_t cap = 0, n = 0;
    vlm_status st = vlm_file_read(path, &raw, &cap, &n, MAX_MANIFEST_BYTES, err);
    if (st) return st;
    char *p = (char *)raw, *end = p + n;
    // vlm_file_read NUL-terminates, so the in-place parser may write at *end.
    if (n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    char *f[MANIFEST_MAXF];
    int line = 1, nf;
    do {
        nf = csv_record(&p, end, o->sep, f, MANIFEST_MAXF, &line);
    } while (nf == 0 && p < end);
    if (nf == 0) {
        free(raw);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: empty manifest (no header row)", path);
    }
    int col[3] = {-1, -1, -1};
    if ((st = manifest_columns(f, nf, path, o, col, err))) {
        free(raw);
        return st;
    }
    const int ci = col[0], ki = col[1], li = col[2];
    ds->has_captions = ki >= 0;
    ds->has_labels = li >= 0;
    int need = ci;
    if (ki > need) need = ki;
    if (li > need) need = li;
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    size_t dlen = strlen(dir), icap = 0;
    char *pathbuf = malloc(dlen + 1);
    size_t pbcap = dlen + 1;
    int32_t maxlab = -1;
    while (p < end) {
        int row_line = line;
        nf = csv_record(&p, end, o->sep, f, MANIFEST_MAXF, &line);
        if (nf == 0) continue;
        if (nf <= need) {
            bad_add(ds, "%s:%d: %d field%s, but column '%s' is field %d", path, row_line, nf, nf == 1 ? "" : "s",
                    need == ci ? o->img_key : need == ki ? o->caption_key : o->label_key, need + 1);
            continue;
        }
        if (!f[ci][0]) {
            bad_add(ds, "%s:%d: empty %s", path, row_line, o->img_key);
            continue;
        }
        vlm_dataset_item it = {.cap = -1, .shard = -1, .label = -1};
        if (li >= 0) {
            if (!manifest_label(ds, path, row_line, f[li], &it.label)) continue;
            if (it.label > maxlab) maxlab = it.label;
        }
        const char *ip = f[ci];
        size_t il = strlen(ip);
        // relative to the manifest's folder (out of memory: stop indexing here)
        if (ip[0] != '/' && dlen && !(ip = join_dir(dir, dlen, ip, &il, &pathbuf, &pbcap))) break;
        it.src = str_add(ds, ip, il);
        if (ki >= 0) {
            it.cap = o->caption_sep ? caps_add(ds, f[ki], strlen(f[ki]), o->caption_sep)
                                    : str_add(ds, f[ki], strlen(f[ki]));
            if (it.cap == -2) it.cap = str_add(ds, "", 0);
        }
        if (it.src < 0 || (ki >= 0 && it.cap < 0)) {
            st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            break;
        }
        if ((st = item_add(ds, &icap, &it, err))) break;
    }
    free(pathbuf);
    free(raw);
    if (st) return st;
    ds->n_classes = maxlab + 1;
    return VLM_OK;
}

// ------------------------------------------------------------ brace patterns

void vlm_brace_free(char **list, int n) {
    for (int i = 0; i < n && list; i++) free(list[i]);
    free(list);
}

typedef struct {
    char **v;
    int n, cap;
} strlist;

static int sl_push(strlist *l, char *s) {
    if (!s) return -1;
    if (l->n == l->cap) {
        int c = l->cap ? l->cap * 2 : 16;
        char **t = realloc(l->v, sizeof *t * (size_t)c);
        if (!t) {
            free(s);
            return -1;
        }
        l->v = t;
        l->cap = c;
    }
    l->v[l->n++] = s;
    return 0;
}

#define MAX_EXPANSION 10000000

// Expands the first {...} of s (recursively the rest) into l.
static vlm_status expand_one(const char *s, strlist *l, const char *orig, vlm_error *err) {
    const char *open = strchr(s, '{');
    if (!open) return sl_push(l, strdup(s)) ? vlm_errorf(err, VLM_ERR_OOM, "brace expansion: out of memory") : VLM_OK;
    const char *close = strchr(open, '}');
    if (!close) return vlm_errorf(err, VLM_ERR_ARG, "'%s': unbalanced '{'", orig);
    size_t pre = (size_t)(open - s), inner_len = (size_t)(close - open - 1);
    char inner[256];
    if (inner_len >= sizeof inner) return vlm_errorf(err, VLM_ERR_ARG, "'%s': brace group too long", orig);
    memcpy(inner, open + 1, inner_len);
    inner[inner_len] = 0;
    const char *post = close + 1;
    size_t plen = strlen(post);
    char *dots = strstr(inner, "..");
    if (dots && !strchr(inner, ',')) {
        *dots = 0;
        const char *a = inner, *b = dots + 2;
        char *ea, *eb;
        long long lo = strtoll(a, &ea, 10), hi = strtoll(b, &eb, 10);
        if (!*a || !*b || *ea || *eb || hi < lo)
            return vlm_errorf(err, VLM_ERR_ARG, "'%s': bad range {%s..%s}", orig, a, b);
        if (hi - lo >= MAX_EXPANSION) return vlm_errorf(err, VLM_ERR_ARG, "'%s': range too large", orig);
        int width = (int)strlen(a);
        for (long long v = lo; v <= hi; v++) {
            size_t len = pre + 32 + plen + 1;
            char *t = malloc(len);
            if (!t) return vlm_errorf(err, VLM_ERR_OOM, "brace expansion: out of memory");
            int k = snprintf(t, len, "%.*s%0*lld%s", (int)pre, s, a[0] == '0' ? width : 1, v, post);
            (void)k;
            vlm_status st = expand_one(t, l, orig, err);
            free(t);
            if (st) return st;
            if (l->n > MAX_EXPANSION) return vlm_errorf(err, VLM_ERR_ARG, "'%s': expands to too many names", orig);
        }
        return VLM_OK;
    }
    // comma alternatives
    char *save = NULL;
    for (char *tok = strtok_r(inner, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t len = pre + strlen(tok) + plen + 1;
        char *t = malloc(len);
        if (!t) return vlm_errorf(err, VLM_ERR_OOM, "brace expansion: out of memory");
        snprintf(t, len, "%.*s%s%s", (int)pre, s, tok, post);
        vlm_status st = expand_one(t, l, orig, err);
        free(t);
        if (st) return st;
    }
    return VLM_OK;
}

vlm_status vlm_brace_expand(const char *pattern, char ***out, int *n, vlm_error *err) {
    strlist l = {0};
    char *copy = strdup(pattern);
    if (!copy) return vlm_errorf(err, VLM_ERR_OOM, "brace expansion: out of memory");
    vlm_status st = VLM_OK;
    char *p = copy;
    while (p && !st) {
        char *sep = strstr(p, "::");
        if (sep) *sep = 0;
        if (*p) st = expand_one(p, &l, pattern, err);
        p = sep ? sep + 2 : NULL;
    }
    free(copy);
    if (!st && l.n == 0) st = vlm_errorf(err, VLM_ERR_ARG, "'%s': empty pattern", pattern);
    if (st) {
        vlm_brace_free(l.v, l.n);
        return st;
    }
    *out = l.v;
    *n = l.n;
    return VLM_OK;
}

// ------------------------------------------------------------ webdataset

// Reads up to max bytes of the current member into *buf (grown); returns
// bytes read or -1 on a libarchive error.
static ssize_t member_read(struct archive *a, uint8_t **buf, size_t *cap, size_t want) {
    if (want + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < want + 1) c *= 2;
        uint8_t *p = realloc(*buf, c);
        if (!p) return -1;
        *buf = p;
        *cap = c;
    }
    size_t got = 0;
    while (got < want) {
        la_ssize_t r = archive_read_data(a, *buf + got, want - got);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    (*buf)[got] = 0;
    return (ssize_t)got;
}

// Finds where a member's data starts in an uncompressed shard: libarchive
// reports the position of the entry's first header block (long-name and pax
// blocks included), so the data sits a few 512-byte blocks later; the
// candidate must hold the member's first bytes and follow a ustar header.
static int64_t locate_data(int fd, int64_t file_size, int64_t hp, const uint8_t *first, size_t nfirst, uint64_t size,
                           uint8_t *win, size_t win_cap) {
    size_t tries[2] = {8 * 512, win_cap};
    for (int t = 0; t < 2; t++) {
        size_t want = tries[t];
        if ((int64_t)want > file_size - hp) want = (size_t)(file_size - hp);
        if (want < 512) return -1;
        ssize_t got = pread(fd, win, want, hp);
        if (got < 512) return -1;
        for (size_t k = 1; 512 * k + nfirst <= (size_t)got; k++) {
            int64_t off = hp + 512 * (int64_t)k;
            if (off + (int64_t)size > file_size) break;
            if (memcmp(win + 512 * k, first, nfirst)) continue;
            if (k > 1 && memcmp(win + 512 * (k - 1) + 257, "ustar", 5)) continue;
            return off;
        }
        if ((size_t)got < tries[t]) return -1; // whole rest of the file searched
    }
    return -1;
}

typedef struct {
    char *key;           // current group key
    int has_img;
    vlm_dataset_item it; // image location + label
    int64_t txt, json_cap; // caption from .txt / .json (strs offsets)
    int32_t json_label;
    int bad_label;
} wds_group;

static vlm_status flush_group(vlm_dataset *ds, wds_group *g, const char *shard, size_t *icap, vlm_error *err) {
    vlm_status st = VLM_OK;
    if (!g->key) return VLM_OK;
    if (g->has_img < 0) {
        // oversized image: counted when seen
    } else if (!g->has_img) {
        bad_add(ds, "%s: sample '%s' has no .png/.jpg/.jpeg/.svg member", shard, g->key);
    } else if (g->bad_label) {
        bad_add(ds, "%s: sample '%s' has a bad .cls label", shard, g->key);
    } else {
        g->it.cap = g->txt >= 0 ? g->txt : g->json_cap;
        if (g->it.label < 0 && g->json_label >= 0) g->it.label = g->json_label;
        if (g->it.cap >= 0) ds->has_captions = 1;
        if (g->it.label >= 0) {
            ds->has_labels = 1;
            if (g->it.label + 1 > ds->n_classes) ds->n_classes = g->it.label + 1;
        }
        st = item_add(ds, icap, &g->it, err);
    }
    free(g->key);
    memset(g, 0, sizeof *g);
    return st;
}

// One shard being indexed: its tar reader, and scratch buffers shared by all shards.
typedef struct {
    vlm_dataset *ds;
    const char *path;
    int si;            // shard index (items with data in place point at it)
    int fd;            // the raw file, for locate_data's pread
    int64_t file_size;
    struct archive *a;
    int compressed;    // -1 until the first header is read
    uint8_t **buf;     // the current member's bytes (grown)
    size_t *bcap;
    uint8_t *win;      // [win_cap] locate_data's search window
    size_t win_cap;
} shard_rd;

// Counts member `name` as cut short by a damaged tar (libarchive's reason, if any).
static void bad_damaged(shard_rd *r, const char *name) {
    bad_add(r->ds, "%s: damaged tar in member %s: %s", r->path, name,
            archive_error_string(r->a) ? archive_error_string(r->a) : "short read");
}

// Opens r->path as a tar (any compression). An unreadable tar is a bad entry,
// not an error: VLM_OK with r->a NULL. On success r->fd and r->a are open.
static vlm_status open_shard(shard_rd *r, vlm_error *err) {
    const char *path = r->path;
    r->a = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open shard: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return vlm_errorf(err, VLM_ERR_IO, "%s: not a regular file", path);
    }
    struct archive *a = archive_read_new();
    if (!a) {
        close(fd);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: cannot create tar reader", path);
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        bad_add(r->ds, "%s: not a readable tar: %s", path, archive_error_string(a));
        archive_read_free(a);
        close(fd);
        return VLM_OK;
    }
    r->fd = fd;
    r->file_size = sb.st_size;
    r->a = a;
    return VLM_OK;
}

// The group's image member (size bytes): located in place in an uncompressed
// shard, else copied into ds->mem. Returns 1 if the tar is damaged here.
static int read_image(shard_rd *r, wds_group *g, const char *name, int64_t size) {
    if (g->has_img) return 0; // first image of a group wins
    if (size < 0 || (uint64_t)size > MAX_MEMBER_BYTES) {
        bad_add(r->ds, "%s: member %s is %lld bytes, over the limit", r->path, name, (long long)size);
        g->has_img = -1;
        return 0;
    }
    int64_t hp = archive_read_header_position(r->a);
    size_t nfirst = size < 512 ? (size_t)size : 512;
    ssize_t got = member_read(r->a, r->buf, r->bcap, nfirst);
    if (got != (ssize_t)nfirst) {
        bad_damaged(r, name);
        return 1;
    }
    int64_t off = -1;
    if (!r->compressed && hp >= 0)
        off = locate_data(r->fd, r->file_size, hp, *r->buf, nfirst, (uint64_t)size, r->win, r->win_cap);
    if (off < 0) { // compressed shard (or unusual layout): keep the bytes in memory
        int64_t moff = mem_add(r->ds, *r->buf, nfirst);
        ssize_t rest = (size_t)size > nfirst ? member_read(r->a, r->buf, r->bcap, (size_t)size - nfirst) : 0;
        if (moff < 0 || rest < 0 || (size_t)rest + nfirst != (size_t)size ||
            mem_add(r->ds, *r->buf, (size_t)rest) < 0) {
            bad_damaged(r, name);
            return 1;
        }
        g->it.shard = -1;
        g->it.off = moff;
    } else {
        g->it.shard = r->si;
        g->it.off = off;
    }
    g->it.size = (uint32_t)size;
    g->it.src = str_add(r->ds, name, strlen(name));
    g->has_img = 1;
    return 0;
}

// A .json member (got bytes in buf): "caption" (or "text") and "label", when present and valid.
static void parse_json_member(vlm_dataset *ds, wds_group *g, const uint8_t *buf, size_t got) {
    json_error_t je;
    json_t *j = json_loadb((const char *)buf, got, 0, &je);
    if (j && json_is_object(j)) {
        json_t *c = json_object_get(j, "caption");
        if (!json_is_string(c)) c = json_object_get(j, "text");
        json_t *cs = json_object_get(j, "captions");
        if (json_is_array(cs) && json_array_size(cs) > 0) {
            // several captions: joined by '\n' (newlines inside one become spaces)
            size_t tot = 0, k;
            json_t *v;
            json_array_foreach(cs, k, v) if (json_is_string(v)) tot += json_string_length(v) + 1;
            char *all = tot ? malloc(tot) : NULL;
            size_t n = 0;
            if (all) {
                json_array_foreach(cs, k, v) {
                    if (!json_is_string(v)) continue;
                    const char *t = json_string_value(v);
                    size_t tl = json_string_length(v);
                    if (n) all[n++] = '\n';
                    for (size_t q = 0; q < tl; q++) all[n++] = t[q] == '\n' || t[q] == '\r' ? ' ' : t[q];
                }
                int64_t off = caps_add(ds, all, n, NULL);
                if (off >= 0) g->json_cap = off;
            }
            free(all);
        } else if (json_is_string(c))
            g->json_cap = str_add(ds, json_string_value(c), json_string_length(c));
        json_t *l = json_object_get(j, "label");
        if (json_is_integer(l) && json_integer_value(l) >= 0 && json_integer_value(l) <= INT32_MAX)
            g->json_label = (int32_t)json_integer_value(l);
    }
    json_decref(j);
}

// A .txt / .cls / .json member (read up to MAX_TEXT_BYTES): caption, label or
// both for the group. Returns 1 if the tar is damaged here.
static int read_text(shard_rd *r, wds_group *g, const char *name, const char *ext, int64_t size) {
    size_t want = size < 0 ? 0 : (size_t)size > MAX_TEXT_BYTES ? MAX_TEXT_BYTES : (size_t)size;
    ssize_t got = member_read(r->a, r->buf, r->bcap, want);
    if (got < 0 || (size_t)got != want) {
        bad_damaged(r, name);
        return 1;
    }
    const uint8_t *b = *r->buf;
    if (!strcasecmp(ext, "txt")) {
        // one caption per line (blank lines dropped)
        g->txt = caps_add(r->ds, (const char *)b, (size_t)got, NULL);
        if (g->txt == -2) g->txt = str_add(r->ds, "", 0);
    } else if (!strcasecmp(ext, "cls")) {
        char *end;
        errno = 0;
        long v = strtol((const char *)b, &end, 10);
        while (*end && isspace((unsigned char)*end)) end++;
        if (!got || *end || errno || v < 0 || v > INT32_MAX) g->bad_label = 1;
        else g->it.label = (int32_t)v;
    } else {
        parse_json_member(r->ds, g, b, (size_t)got);
    }
    return 0;
}

// Indexes shard si: one item per group of members sharing a key (the name up
// to the first '.' of its last path part); damage and bad groups are counted.
static vlm_status index_shard(vlm_dataset *ds, int si, size_t *icap, uint8_t **buf, size_t *bcap, uint8_t *win,
                              size_t win_cap, vlm_error *err) {
    shard_rd r = {.ds = ds, .path = ds->shards[si], .si = si, .fd = -1, .compressed = -1, .buf = buf, .bcap = bcap,
                  .win = win, .win_cap = win_cap};
    const char *path = r.path;
    vlm_status st = open_shard(&r, err);
    if (st || !r.a) return st;
    wds_group g = {0};
    int members = 0, damaged = 0;
    while (!damaged) {
        struct archive_entry *e;
        int rc = archive_read_next_header(r.a, &e);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) { // RETRY = bad header checksum, FATAL = truncated etc.
            bad_add(ds, "%s: damaged tar after %d member%s: %s", path, members, members == 1 ? "" : "s",
                    archive_error_string(r.a) ? archive_error_string(r.a) : "unknown error");
            damaged = 1;
            break;
        }
        if (r.compressed < 0) r.compressed = archive_filter_code(r.a, 0) != ARCHIVE_FILTER_NONE;
        members++;
        if (archive_entry_filetype(e) != AE_IFREG) continue;
        const char *name = archive_entry_pathname(e);
        if (!name) continue;
        // group key: the name up to the first '.' of its last path part
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        const char *dot = strchr(base, '.');
        size_t klen = dot ? (size_t)(dot - name) : strlen(name);
        const char *ext = dot ? dot + 1 : "";
        if (!g.key || strlen(g.key) != klen || strncmp(g.key, name, klen)) {
            if ((st = flush_group(ds, &g, path, icap, err))) break;
            g.key = strndup(name, klen);
            g.txt = g.json_cap = -1;
            g.json_label = -1;
            g.it.label = -1;
            g.it.cap = -1;
        }
        int64_t size = archive_entry_size(e);
        // webdataset field names may have dots ("seg.png"): the type is the last part
        const char *last = strrchr(ext, '.');
        last = last ? last + 1 : ext;
        if (is_image_ext(last))
            damaged = read_image(&r, &g, name, size);
        else if (!strcasecmp(ext, "txt") || !strcasecmp(ext, "cls") || !strcasecmp(ext, "json"))
            damaged = read_text(&r, &g, name, ext, size);
    }
    // The group cut by damage may be incomplete (caption or label lost): drop
    // it with the damage already counted; an oversized image was counted too.
    if (!st && !damaged) st = flush_group(ds, &g, path, icap, err);
    else free(g.key);
    archive_read_free(r.a);
    close(r.fd);
    return st;
}

// Shards per "::" source of spec (empty sources skipped, as vlm_brace_expand
// does) into per[cap], the number of sources into *ns.
static vlm_status shards_per_source(const char *spec, int *per, int cap, int *ns, vlm_error *err) {
    char *copy = strdup(spec), *p = copy;
    vlm_status st = copy ? VLM_OK : vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", spec);
    *ns = 0;
    while (p && !st) {
        char *sep = strstr(p, "::");
        if (sep) *sep = 0;
        char **v;
        int n;
        if (*p && *ns == cap) st = vlm_errorf(err, VLM_ERR_ARG, "%s: more than %d '::' sources", spec, cap);
        else if (*p && !(st = vlm_brace_expand(p, &v, &n, err))) vlm_brace_free(v, n), per[(*ns)++] = n;
        p = sep ? sep + 2 : NULL;
    }
    free(copy);
    return st;
}

// open_clip's --train-data-upsampling-factors with whole-number factors: the
// samples of the k-th "::" source are appended factors[k] - 1 more times.
// first[i]: the first sample of shard i (first[n_shards] = ds->n).
static vlm_status upsample_sources(vlm_dataset *ds, const char *spec, const char *factors, const int64_t *first,
                                   vlm_error *err) {
    enum { MAXSRC = 64 };
    int per[MAXSRC], f[MAXSRC], ns, nf = 0;
    vlm_status st = shards_per_source(spec, per, MAXSRC, &ns, err);
    if (st) return st;
    for (const char *p = factors; p && nf < MAXSRC;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && strncmp(end, "::", 2)) || v < 1 || v > 1000)
            return vlm_errorf(err, VLM_ERR_ARG, "upsampling factors '%s': each must be a whole number in 1..1000",
                              factors);
        f[nf++] = (int)v;
        p = *end ? end + 2 : NULL;
    }
    if (nf != ns)
        return vlm_errorf(err, VLM_ERR_ARG, "upsampling factors '%s': %d factors for the %d '::' sources of %s", factors,
                          nf, ns, spec);
    int64_t extra = 0, s0 = 0;
    for (int k = 0; k < ns; s0 += per[k++]) extra += (int64_t)(f[k] - 1) * (first[s0 + per[k]] - first[s0]);
    if (!extra) return VLM_OK;
    vlm_dataset_item *it = realloc(ds->items, sizeof *it * (size_t)(ds->n + extra));
    if (!it) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory upsampling to %lld samples", spec,
                               (long long)(ds->n + extra));
    ds->items = it;
    int64_t n = ds->n;
    s0 = 0;
    for (int k = 0; k < ns; s0 += per[k++]) {
        int64_t a = first[s0], len = first[s0 + per[k]] - a;
        for (int r = 1; r < f[k]; r++, n += len) memcpy(it + n, it + a, sizeof *it * (size_t)len);
    }
    ds->n = n;
    return VLM_OK;
}

static vlm_status open_wds(vlm_dataset *ds, const char *spec, const vlm_dataset_opts *opts, vlm_error *err) {
    vlm_status st = vlm_brace_expand(spec, &ds->shards, &ds->n_shards, err);
    if (st) return st;
    size_t icap = 0, bcap = 0, win_cap = 64 * 1024 + 512;
    uint8_t *buf = NULL, *win = malloc(win_cap);
    int64_t *first = malloc(sizeof(int64_t) * ((size_t)ds->n_shards + 1));
    if (!win || !first) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", spec);
    for (int i = 0; i < ds->n_shards && !st; i++) {
        first[i] = ds->n;
        st = index_shard(ds, i, &icap, &buf, &bcap, win, win_cap, err);
    }
    if (!st && opts->upsampling) {
        first[ds->n_shards] = ds->n;
        st = upsample_sources(ds, spec, opts->upsampling, first, err);
    }
    free(first);
    free(buf);
    free(win);
    return st;
}

// ------------------------------------------------------------ ImageFolder

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Collects sub-directories of dir (full paths, recursive, incl. dir itself).
static int list_dirs(const char *dir, strlist *out, int depth) {
    if (depth > 64) return 0;
    if (sl_push(out, strdup(dir))) return -1;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    strlist subs = {0};
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) sl_push(&subs, strdup(p));
    }
    closedir(d);
    for (int i = 0; i < subs.n; i++) list_dirs(subs.v[i], out, depth + 1);
    vlm_brace_free(subs.v, subs.n);
    return 0;
}

static vlm_status open_imagefolder(vlm_dataset *ds, const char *root, vlm_error *err) {
    DIR *d = opendir(root);
    if (!d) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open directory: %s", root, strerror(errno));
    strlist classes = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", root, de->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) sl_push(&classes, strdup(de->d_name));
    }
    closedir(d);
    if (classes.n == 0) {
        vlm_brace_free(classes.v, classes.n);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: no class sub-folders (ImageFolder wants ROOT/<class>/<images>)",
                          root);
    }
    qsort(classes.v, (size_t)classes.n, sizeof(char *), cmp_str);
    ds->classnames = classes.v;
    ds->n_classes = classes.n;
    ds->has_labels = ds->has_captions = 1;
    size_t icap = 0;
    vlm_status st = VLM_OK;
    for (int c = 0; c < classes.n && !st; c++) {
        char cdir[4096];
        snprintf(cdir, sizeof cdir, "%s/%s", root, classes.v[c]);
        // caption = class name with '_' as ' '
        char cap[1024];
        snprintf(cap, sizeof cap, "%s", classes.v[c]);
        for (char *q = cap; *q; q++)
            if (*q == '_') *q = ' ';
        int64_t capoff = str_add(ds, cap, strlen(cap));
        strlist dirs = {0};
        list_dirs(cdir, &dirs, 0);
        qsort(dirs.v, (size_t)dirs.n, sizeof(char *), cmp_str); // os.walk sorted by path
        for (int k = 0; k < dirs.n && !st; k++) {
            DIR *dd = opendir(dirs.v[k]);
            if (!dd) continue;
            strlist files = {0};
            while ((de = readdir(dd))) {
                const char *dot = strrchr(de->d_name, '.');
                if (!dot || de->d_name[0] == 0) continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", dirs.v[k], de->d_name);
                struct stat sb;
                if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
                if (is_image_ext(dot + 1)) sl_push(&files, strdup(de->d_name));
                else if (!strcasecmp(dot, ".ppm") || !strcasecmp(dot, ".bmp") || !strcasecmp(dot, ".pgm") ||
                         !strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff") || !strcasecmp(dot, ".webp"))
                    bad_add(ds, "%s: unsupported image format (PNG and JPEG only)", p);
            }
            closedir(dd);
            qsort(files.v, (size_t)files.n, sizeof(char *), cmp_str);
            for (int j = 0; j < files.n && !st; j++) {
                char p[8192];
                int len = snprintf(p, sizeof p, "%s/%s", dirs.v[k], files.v[j]);
                vlm_dataset_item it = {.cap = capoff, .shard = -1, .label = c};
                it.src = str_add(ds, p, (size_t)len);
                if (it.src < 0 || capoff < 0) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", root);
                else st = item_add(ds, &icap, &it, err);
            }
            vlm_brace_free(files.v, files.n);
        }
        vlm_brace_free(dirs.v, dirs.n);
    }
    return st;
}

// ------------------------------------------------------------ IDX

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Reads a whole (optionally gzipped) file; *n bytes; malloc'd.
static vlm_status read_gz_all(const char *path, uint8_t **out, size_t *n, size_t max, vlm_error *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    vlm_status st = VLM_OK;
    for (;;) {
        if (!buf) {
            st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
            break;
        }
        if (len == cap) {
            if (cap >= max) {
                st = vlm_errorf(err, VLM_ERR_OOM, "%s: over %zu bytes", path, max);
                break;
            }
            uint8_t *t = realloc(buf, cap * 2);
            if (!t) {
                st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
                break;
            }
            buf = t;
            cap *= 2;
        }
        int r = gzread(f, buf + len, (unsigned)((cap - len) > (1u << 30) ? (1u << 30) : (cap - len)));
        if (r < 0) {
            int e;
            const char *m = gzerror(f, &e);
            st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: corrupt gzip data: %s", path, m);
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(f);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *n = len;
    return VLM_OK;
}

static vlm_status open_idx(vlm_dataset *ds, const char *path, const vlm_dataset_opts *o, vlm_error *err) {
    uint8_t *img = NULL;
    size_t n = 0;
    vlm_status st = read_gz_all(path, &img, &n, (size_t)8 << 30, err);
    if (st) return st;
    if (n < 16 || be32(img) != 0x00000803) {
        free(img);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: not an IDX image file (want magic 0x00000803, u8 [n, rows, cols])",
                          path);
    }
    uint32_t cnt = be32(img + 4), rows = be32(img + 8), cols = be32(img + 12);
    if (!rows || !cols || rows > 65535 || cols > 65535 || (uint64_t)cnt * rows * cols > n - 16) {
        free(img);
        return vlm_errorf(err, VLM_ERR_FORMAT, "%s: IDX header says %u images of %ux%u but the file holds %zu bytes",
                          path, cnt, rows, cols, n - 16);
    }
    // Keep the pixels in place: shift out the header.
    memmove(img, img + 16, (size_t)cnt * rows * cols);
    ds->mem = img;
    ds->mem_len = ds->mem_cap = n;
    ds->idx_w = (int)cols;
    ds->idx_h = (int)rows;
    // labels
    char lpath[4096] = "";
    if (o->idx_labels) {
        snprintf(lpath, sizeof lpath, "%s", o->idx_labels);
    } else {
        const char *m = strstr(path, "images-idx3");
        if (m) {
            snprintf(lpath, sizeof lpath, "%.*slabels-idx1%s", (int)(m - path), path, m + strlen("images-idx3"));
            if (!file_exists(lpath)) lpath[0] = 0;
        }
    }
    uint8_t *lab = NULL;
    size_t ln = 0;
    if (lpath[0]) {
        st = read_gz_all(lpath, &lab, &ln, (size_t)1 << 32, err);
        if (st) return st;
        if (ln < 8 || be32(lab) != 0x00000801 || be32(lab + 4) != cnt || ln - 8 < cnt) {
            free(lab);
            return vlm_errorf(err, VLM_ERR_FORMAT, "%s: not an IDX label file for %u images (magic 0x00000801)", lpath,
                              cnt);
        }
        ds->has_labels = 1;
    }
    // class names: explicit, or classnames.txt beside the data
    char cpath[4096];
    if (o->classnames) snprintf(cpath, sizeof cpath, "%s", o->classnames);
    else {
        dir_of(path, cpath, sizeof cpath);
        size_t l = strlen(cpath);
        snprintf(cpath + l, sizeof cpath - l, "classnames.txt");
        if (!file_exists(cpath)) cpath[0] = 0;
    }
    if (cpath[0] && (st = load_classnames(ds, cpath, err))) {
        free(lab);
        return st;
    }
    int64_t *capoff = NULL;
    if (ds->n_classes > 0 && ds->has_labels) {
        capoff = malloc(sizeof *capoff * (size_t)ds->n_classes);
        for (int c = 0; capoff && c < ds->n_classes; c++)
            capoff[c] = str_add(ds, ds->classnames[c], strlen(ds->classnames[c]));
        ds->has_captions = capoff != NULL;
    }
    ds->items = malloc(sizeof *ds->items * (cnt ? cnt : 1));
    if (!ds->items) {
        free(lab);
        free(capoff);
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", path);
    }
    int32_t maxlab = -1;
    for (uint32_t i = 0; i < cnt; i++) {
        vlm_dataset_item it = {.src = -1, .cap = -1, .shard = -1, .label = -1};
        it.off = (int64_t)i * rows * cols;
        if (lab) {
            it.label = lab[8 + i];
            if (it.label > maxlab) maxlab = it.label;
            if (capoff && it.label < ds->n_classes) it.cap = capoff[it.label];
        }
        ds->items[ds->n++] = it;
    }
    if (maxlab + 1 > ds->n_classes && !ds->classnames) ds->n_classes = maxlab + 1;
    free(capoff);
    free(lab);
    return VLM_OK;
}

// ------------------------------------------------------------ open / read

static int looks_like_idx(const char *path) {
    if (strstr(path, "idx3")) return 1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t m[4] = {0};
    size_t got = fread(m, 1, 4, f);
    fclose(f);
    return got == 4 && m[0] == 0 && m[1] == 0 && m[2] == 0x08 && m[3] == 0x03;
}

vlm_status vlm_dataset_open(vlm_dataset *ds, const char *spec, const vlm_dataset_opts *opts, vlm_error *err) {
    memset(ds, 0, sizeof *ds);
    vlm_dataset_opts def;
    if (!opts) {
        vlm_dataset_opts_default(&def);
        opts = &def;
    }
    if (!spec || !*spec) return vlm_errorf(err, VLM_ERR_ARG, "dataset: empty path");
    ds->spec = strdup(spec);
    if (!ds->spec) return vlm_errorf(err, VLM_ERR_OOM, "dataset: out of memory");
    vlm_status st;
    struct stat sb;
    if (strchr(spec, '{') || strstr(spec, "::") || ends_with_ci(spec, ".tar") || ends_with_ci(spec, ".tar.gz") ||
        ends_with_ci(spec, ".tgz")) {
        ds->kind = VLM_DS_WEBDATASET;
        st = open_wds(ds, spec, opts, err);
    } else if (opts->upsampling) {
        st = vlm_errorf(err, VLM_ERR_ARG, "%s: upsampling factors need webdataset shards ('a/{0..9}.tar::b.tar')", spec);
    } else if (stat(spec, &sb) != 0) {
        st = vlm_errorf(err, VLM_ERR_IO, "%s: %s", spec, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        ds->kind = VLM_DS_IMAGEFOLDER;
        st = open_imagefolder(ds, spec, err);
    } else if (looks_like_idx(spec)) {
        ds->kind = VLM_DS_IDX;
        st = open_idx(ds, spec, opts, err);
    } else {
        ds->kind = VLM_DS_MANIFEST;
        st = open_manifest(ds, spec, opts, err);
    }
    // class names for manifests / shards: explicit, or <stem>_classnames.txt
    if (!st && opts->classnames && ds->kind != VLM_DS_IDX) st = load_classnames(ds, opts->classnames, err);
    if (!st && !opts->classnames && ds->kind == VLM_DS_MANIFEST) {
        char cp[4096];
        snprintf(cp, sizeof cp, "%s", spec);
        char *dot = strrchr(cp, '.'), *slash = strrchr(cp, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        size_t l = strlen(cp);
        snprintf(cp + l, sizeof cp - l, "_classnames.txt");
        if (file_exists(cp)) st = load_classnames(ds, cp, err);
    }
    if (!st && opts->require_caption && !ds->has_captions)
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: no captions in this %s dataset", spec, vlm_dataset_kind_name(ds->kind));
    if (!st && opts->require_label && !ds->has_labels)
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: no labels in this %s dataset", spec, vlm_dataset_kind_name(ds->kind));
    if (!st) st = check_bad_limit(ds, opts, err);
    if (!st && ds->n == 0) {
        st = ds->n_bad ? vlm_errorf(err, VLM_ERR_FORMAT, "%s: no usable samples (%lld bad; first: %s)", spec,
                                    (long long)ds->n_bad, ds->bad[0])
                       : vlm_errorf(err, VLM_ERR_FORMAT, "%s: no samples", spec);
    }
    if (st) vlm_dataset_free(ds);
    return st;
}

const char *vlm_dataset_caption(const vlm_dataset *ds, int64_t i) {
    if (i < 0 || i >= ds->n || ds->items[i].cap < 0) return NULL;
    return ds->strs + ds->items[i].cap;
}

int32_t vlm_dataset_label(const vlm_dataset *ds, int64_t i) {
    if (i < 0 || i >= ds->n) return -1;
    return ds->items[i].label;
}

const char *vlm_dataset_source(const vlm_dataset *ds, int64_t i, char *buf, size_t n) {
    if (i < 0 || i >= ds->n) {
        snprintf(buf, n, "%s[%lld]", ds->spec, (long long)i);
        return buf;
    }
    const vlm_dataset_item *it = &ds->items[i];
    switch (ds->kind) {
    case VLM_DS_MANIFEST:
    case VLM_DS_IMAGEFOLDER: return ds->strs + it->src;
    case VLM_DS_WEBDATASET:
        if (it->shard >= 0) snprintf(buf, n, "%s:%s", ds->shards[it->shard], ds->strs + it->src);
        else snprintf(buf, n, "%s:%s", ds->spec, ds->strs + it->src);
        return buf;
    default: snprintf(buf, n, "%s[%lld]", ds->spec, (long long)i); return buf;
    }
}

static int grow_buf(vlm_sample *s, size_t n) {
    if (n + 1 <= s->cap) return 0;
    size_t c = s->cap ? s->cap : 65536;
    while (c < n + 1) c *= 2;
    uint8_t *p = realloc(s->buf, c);
    if (!p) return -1;
    s->buf = p;
    s->cap = c;
    return 0;
}

vlm_status vlm_dataset_read(const vlm_dataset *ds, int64_t i, vlm_sample *s, vlm_error *err) {
    if (i < 0 || i >= ds->n)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: sample %lld out of range [0, %lld)", ds->spec, (long long)i,
                          (long long)ds->n);
    const vlm_dataset_item *it = &ds->items[i];
    s->caption = it->cap >= 0 ? ds->strs + it->cap : NULL;
    s->label = it->label;
    s->raw_w = s->raw_h = s->raw_c = 0;
    s->data = NULL;
    s->size = 0;
    s->name = vlm_dataset_source(ds, i, s->name_buf, sizeof s->name_buf);
    switch (ds->kind) {
    case VLM_DS_MANIFEST:
    case VLM_DS_IMAGEFOLDER: {
        vlm_status st = vlm_file_read(s->name, &s->buf, &s->cap, &s->size, MAX_FILE_BYTES, err);
        if (st) return st;
        s->data = s->buf;
        return VLM_OK;
    }
    case VLM_DS_WEBDATASET: {
        if (it->shard < 0) {
            s->data = ds->mem + it->off;
            s->size = it->size;
            return VLM_OK;
        }
        const char *path = ds->shards[it->shard];
        if (grow_buf(s, it->size)) return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory", s->name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        size_t got = 0;
        while (got < it->size) {
            ssize_t r = pread(fd, s->buf + got, it->size - got, it->off + (off_t)got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        close(fd);
        if (got != it->size)
            return vlm_errorf(err, VLM_ERR_IO, "%s: short read (%zu of %u bytes; shard changed since indexing?)",
                              s->name, got, it->size);
        s->data = s->buf;
        s->size = it->size;
        return VLM_OK;
    }
    case VLM_DS_IDX:
        s->data = ds->mem + it->off;
        s->size = (size_t)ds->idx_w * ds->idx_h;
        s->raw_w = ds->idx_w;
        s->raw_h = ds->idx_h;
        s->raw_c = 1;
        return VLM_OK;
    }
    return vlm_errorf(err, VLM_ERR_STATE, "dataset: not open");
}

vlm_status vlm_dataset_load_image(const vlm_dataset *ds, int64_t i, vlm_sample *s, vlm_image *img,
                                  const vlm_decode_opts *o, vlm_error *err) {
    vlm_status st = vlm_dataset_read(ds, i, s, err);
    if (st) return st;
    if (s->raw_w > 0) { // raw gray/RGB pixels: replicate to RGB
        if ((st = vlm_image_alloc(img, s->raw_w, s->raw_h, err))) return st;
        size_t n = (size_t)s->raw_w * s->raw_h;
        if (s->raw_c == 3) memcpy(img->px, s->data, n * 3);
        else
            for (size_t k = 0; k < n; k++) img->px[3 * k] = img->px[3 * k + 1] = img->px[3 * k + 2] = s->data[k];
        img->src_format = VLM_IMAGE_UNKNOWN;
        img->src_channels = s->raw_c;
        img->src_bit_depth = 8;
        return VLM_OK;
    }
    return vlm_image_decode(img, s->data, s->size, s->name, o, err);
}

// ------------------------------------------------------------ shard writer

void vlm_convert_report_free(vlm_convert_report *r) {
    for (int i = 0; i < VLM_DATASET_BAD_KEEP; i++) free(r->bad_first[i]);
    memset(r, 0, sizeof *r);
}

static int put_member(struct archive *a, const char *name, const void *data, size_t n) {
    struct archive_entry *e = archive_entry_new();
    if (!e) return -1;
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 0, 0);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK) return -1;
    if (n && archive_write_data(a, data, n) != (la_ssize_t)n) return -1;
    return 0;
}

static vlm_status close_shard(struct archive *a, const char *tmp, const char *final, vlm_error *err) {
    int r = archive_write_close(a);
    const char *msg = archive_error_string(a);
    vlm_status st = VLM_OK;
    if (r != ARCHIVE_OK) st = vlm_errorf(err, VLM_ERR_IO, "%s: writing tar failed: %s", final, msg ? msg : "?");
    archive_write_free(a);
    if (!st && rename(tmp, final) != 0) st = vlm_errorf(err, VLM_ERR_IO, "%s: rename failed: %s", final, strerror(errno));
    if (st) remove(tmp);
    return st;
}

// Sample i's members under key %09lld: the image (data, size bytes, .ext), then
// the caption (.txt) and label (.cls) when it has them. Nonzero on a write error.
static int put_sample(struct archive *a, int64_t i, const char *ext, const void *data, size_t size,
                      const vlm_sample *s) {
    char key[32], name[64];
    snprintf(key, sizeof key, "%09lld", (long long)i);
    snprintf(name, sizeof name, "%s.%s", key, ext);
    int bad = put_member(a, name, data, size);
    if (!bad && s->caption) {
        snprintf(name, sizeof name, "%s.txt", key);
        bad = put_member(a, name, s->caption, strlen(s->caption));
    }
    if (!bad && s->label >= 0) {
        char lab[16];
        int n = snprintf(lab, sizeof lab, "%d", s->label);
        snprintf(name, sizeof name, "%s.cls", key);
        bad = put_member(a, name, lab, (size_t)n);
    }
    return bad;
}

vlm_status vlm_dataset_write_shards(const vlm_dataset *ds, const char *dir, int64_t shard_size,
                                    const vlm_decode_opts *raster, vlm_convert_report *rep, vlm_error *err) {
    memset(rep, 0, sizeof *rep);
    if (shard_size <= 0) return vlm_errorf(err, VLM_ERR_ARG, "convert: shard size must be > 0");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return vlm_errorf(err, VLM_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    vlm_sample s;
    vlm_sample_init(&s);
    vlm_image img;
    vlm_image_init(&img);
    struct archive *a = NULL;
    char final[4096], tmp[4096 + 8];
    vlm_status st = VLM_OK;
    int64_t in_shard = 0;
    for (int64_t i = 0; i < ds->n && !st; i++) {
        vlm_error e2 = {0};
        uint8_t *png = NULL;
        const void *data;
        size_t size;
        const char *ext;
        if (vlm_dataset_read(ds, i, &s, &e2) == VLM_OK) {
            if (s.raw_w > 0) {
                if (vlm_image_encode_png(s.data, s.raw_w, s.raw_h, s.raw_c, &png, &size, &e2)) goto skip;
                data = png;
                ext = "png";
            } else {
                vlm_image_format f = vlm_image_sniff(s.data, s.size);
                if (f == VLM_IMAGE_UNKNOWN) {
                    vlm_image_decode(NULL, s.data, s.size, s.name, NULL, &e2); // fills the reason
                    goto skip;
                }
                data = s.data;
                size = s.size;
                ext = vlm_image_format_ext(f);
                if (f == VLM_IMAGE_SVG && raster) {
                    if (vlm_image_decode(&img, s.data, s.size, s.name, raster, &e2) ||
                        vlm_image_encode_png(img.px, img.w, img.h, 3, &png, &size, &e2))
                        goto skip;
                    data = png;
                    ext = "png";
                }
            }
        } else {
        skip:
            if (rep->bad < VLM_DATASET_BAD_KEEP) rep->bad_first[rep->bad] = strdup(e2.msg);
            rep->bad++;
            free(png);
            continue;
        }
        if (!a || in_shard == shard_size) {
            if (a && (st = close_shard(a, tmp, final, err))) {
                a = NULL;
                free(png);
                break;
            }
            snprintf(final, sizeof final, "%s/%06lld.tar", dir, (long long)rep->shards);
            snprintf(tmp, sizeof tmp, "%s.tmp", final);
            a = archive_write_new();
            if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
                archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
                st = vlm_errorf(err, VLM_ERR_IO, "%s: cannot create: %s", tmp,
                                a && archive_error_string(a) ? archive_error_string(a) : strerror(errno));
                if (a) archive_write_free(a);
                a = NULL;
                free(png);
                break;
            }
            rep->shards++;
            in_shard = 0;
        }
        int bad = put_sample(a, i, ext, data, size, &s);
        free(png);
        if (bad) {
            st = vlm_errorf(err, VLM_ERR_IO, "%s: writing tar failed: %s", tmp,
                            archive_error_string(a) ? archive_error_string(a) : "?");
            break;
        }
        rep->written++;
        in_shard++;
    }
    if (a) {
        if (st) {
            archive_write_free(a);
            remove(tmp);
        } else {
            st = close_shard(a, tmp, final, err);
        }
    }
    vlm_sample_free(&s);
    vlm_image_free(&img);
    return st;
}
