// Named f32 tensors from safetensors and PyTorch zip files (see tensorfile.h).
// The unpickler is a small stack machine over tagged values; every value lives
// in one list freed at the end, so shared (memoised) values need no counting.
#include "core/tensorfile.h"
#include <archive.h>
#include <archive_entry.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------- sets

void vlm_fset_free(vlm_fset *s) {
    for (int i = 0; i < s->n; i++) free(s->t[i].name), free(s->t[i].data);
    free(s->t);
    free(s->info);
    memset(s, 0, sizeof *s);
}

const vlm_ftensor *vlm_fset_find(const vlm_fset *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

vlm_status vlm_fset_add(vlm_fset *s, const char *name, int ndim, const int64_t *shape, vlm_dtype src, float *data,
                        vlm_error *err) {
    if (ndim < 0 || ndim > VLM_ST_MAX_DIMS) {
        free(data);
        return vlm_errorf(err, VLM_ERR_FORMAT, "tensor %s: %d dimensions (at most %d)", name, ndim, VLM_ST_MAX_DIMS);
    }
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 64;
        vlm_ftensor *p = realloc(s->t, sizeof *p * (size_t)nc);
        if (!p) return free(data), vlm_errorf(err, VLM_ERR_OOM, "out of memory for tensor %s", name);
        s->t = p, s->cap = nc;
    }
    vlm_ftensor *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return free(data), vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    t->ndim = ndim, t->src = src, t->data = data, t->numel = 1;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->numel *= shape[d];
    s->n++;
    return VLM_OK;
}

static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) { // zero or subnormal: man * 2^-24
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (man << 13); // inf / nan
    else bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

vlm_status vlm_to_f32(const void *src, vlm_dtype dt, int64_t n, float *dst, vlm_error *err) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case VLM_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case VLM_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        case VLM_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = half_to_f32(h);
            break;
        }
        case VLM_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t b = (uint32_t)h << 16;
            memcpy(&dst[i], &b, 4);
            break;
        }
        default: return vlm_errorf(err, VLM_ERR_FORMAT, "dtype %s is not a float type", vlm_dtype_name(dt));
        }
    }
    return VLM_OK;
}

vlm_status vlm_fset_read_safetensors(const char *path, vlm_fset *out, vlm_error *err) {
    memset(out, 0, sizeof *out);
    vlm_st_file f;
    vlm_status st = vlm_st_read(&f, path, err);
    if (st) return st;
    for (int i = 0; i < f.n && !st; i++) {
        const vlm_st_entry *e = &f.entries[i];
        if (e->dtype != VLM_F32 && e->dtype != VLM_F16 && e->dtype != VLM_BF16 && e->dtype != VLM_F64) continue;
        float *d = malloc(sizeof(float) * (size_t)(e->numel ? e->numel : 1));
        if (!d) st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for %s", path, e->name);
        else if (!(st = vlm_to_f32(vlm_st_data(&f, e), e->dtype, e->numel, d, err)))
            st = vlm_fset_add(out, e->name, e->ndim, e->shape, e->dtype, d, err);
        else free(d);
    }
    vlm_st_free(&f);
    if (st) vlm_fset_free(out);
    return st;
}

// ---------------------------------------------------------------- zip members

typedef struct {
    char *name;
    uint8_t *data;
    size_t size;
} member;

typedef struct {
    member *m;
    int n, cap;
} members;

static void members_free(members *z) {
    for (int i = 0; i < z->n; i++) free(z->m[i].name), free(z->m[i].data);
    free(z->m);
}

static const member *members_find(const members *z, const char *name) {
    for (int i = 0; i < z->n; i++)
        if (!strcmp(z->m[i].name, name)) return &z->m[i];
    return NULL;
}

// Keeps data.pkl and data/<key> members. Decompressed bytes are capped at
// 8x the file size + 16 MB (torch stores its members uncompressed), so a zip
// bomb stops early; libarchive checks each member's CRC.
static vlm_status read_zip(const char *path, members *z, vlm_error *err) {
    struct stat sb;
    if (stat(path, &sb)) return vlm_errorf(err, VLM_ERR_IO, "%s: cannot stat", path);
    const uint64_t budget = (uint64_t)sb.st_size * 8 + (16u << 20);
    uint64_t used = 0;
    struct archive *a = archive_read_new();
    if (!a) return vlm_errorf(err, VLM_ERR_OOM, "out of memory");
    archive_read_support_format_zip(a);
    vlm_status st = VLM_OK;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: not a zip archive (%s); PyTorch files older than 1.6 are not read",
                        path, archive_error_string(a));
        archive_read_free(a);
        return st;
    }
    struct archive_entry *e;
    int r;
    while (!st && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        const char *slash = name ? strchr(name, '/') : NULL;
        int want = slash && (!strcmp(slash + 1, "data.pkl") || !strncmp(slash + 1, "data/", 5));
        if (!want) continue;
        size_t cap = 1 << 16, n = 0;
        uint8_t *buf = malloc(cap);
        if (!buf) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
        for (;;) {
            if (st) break;
            if (n == cap) {
                uint8_t *nb = realloc(buf, cap *= 2);
                if (!nb) {
                    st = vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory reading %s", path, name);
                    break;
                }
                buf = nb;
            }
            la_ssize_t got = archive_read_data(a, buf + n, cap - n);
            if (got < 0) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: member %s: %s", path, name, archive_error_string(a));
            else if (got == 0) break;
            else if ((used += (uint64_t)got) > budget)
                st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: member %s decompresses past %llu bytes (a zip bomb?)", path,
                                name, (unsigned long long)budget);
            else n += (size_t)got;
        }
        if (!st && z->n == z->cap) {
            int nc = z->cap ? 2 * z->cap : 64;
            member *p = realloc(z->m, sizeof *p * (size_t)nc);
            if (!p) st = vlm_errorf(err, VLM_ERR_OOM, "out of memory");
            else z->m = p, z->cap = nc;
        }
        if (st) {
            free(buf);
            break;
        }
        z->m[z->n++] = (member){strdup(name), buf, n};
    }
    if (!st && r != ARCHIVE_EOF)
        st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: broken zip archive: %s", path, archive_error_string(a));
    archive_read_free(a);
    return st;
}

// ---------------------------------------------------------------- pickle values

typedef enum { PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL, PV_OBJ, PV_TENSOR,
               PV_STORAGE, PV_MARK } pv_kind;

typedef struct pv pv;
struct pv {
    pv_kind k;
    int64_t i;     // int, bool; storage: numel
    double f;
    char *s;       // str; global "module.name"; storage key
    pv **items;    // tuple/list; dict: key, value, key, value...
    int n, cap;
    pv *state;     // object: its BUILD state
    vlm_dtype dt;  // storage / tensor
    int ndim;      // tensor
    int64_t shape[VLM_ST_MAX_DIMS];
    float *data;   // tensor: f32 copy (owned)
};

typedef struct {
    const uint8_t *p, *end;
    const char *path, *prefix; // archive member prefix "<name>/"
    const members *z;
    pv **all;                  // every value made
    int n_all, cap_all;
    pv **stack;
    int sp, stack_cap;
    pv **memo;
    int64_t memo_cap;
    vlm_error *err;
    vlm_status st;
} vm;

static pv *mk(vm *v, pv_kind k) {
    if (v->st) return NULL;
    if (v->n_all == v->cap_all) {
        int nc = v->cap_all ? 2 * v->cap_all : 1024;
        pv **p = realloc(v->all, sizeof *p * (size_t)nc);
        if (!p) return v->st = vlm_errorf(v->err, VLM_ERR_OOM, "out of memory unpickling"), NULL;
        v->all = p, v->cap_all = nc;
    }
    pv *x = calloc(1, sizeof *x);
    if (!x) return v->st = vlm_errorf(v->err, VLM_ERR_OOM, "out of memory unpickling"), NULL;
    x->k = k;
    v->all[v->n_all++] = x;
    return x;
}

static int fail(vm *v, const char *fmt, const char *what) {
    if (!v->st) {
        char msg[300];
        snprintf(msg, sizeof msg, fmt, what);
        v->st = vlm_errorf(v->err, VLM_ERR_FORMAT, "%s: data.pkl: %s", v->path, msg);
    }
    return -1;
}

static int push(vm *v, pv *x) {
    if (!x) return -1;
    if (v->sp == v->stack_cap) {
        if (v->stack_cap >= (1 << 20)) return fail(v, "%s", "stack deeper than 1M values");
        int nc = v->stack_cap ? 2 * v->stack_cap : 256;
        pv **p = realloc(v->stack, sizeof *p * (size_t)nc);
        if (!p) return fail(v, "%s", "out of memory");
        v->stack = p, v->stack_cap = nc;
    }
    v->stack[v->sp++] = x;
    return 0;
}

static pv *pop(vm *v) {
    if (v->sp <= 0 || v->stack[v->sp - 1]->k == PV_MARK) return fail(v, "%s", "stack underflow"), NULL;
    return v->stack[--v->sp];
}

static pv *top(vm *v) { return v->sp > 0 ? v->stack[v->sp - 1] : (fail(v, "%s", "empty stack"), NULL); }

static int mark_pos(vm *v) {
    for (int i = v->sp - 1; i >= 0; i--)
        if (v->stack[i]->k == PV_MARK) return i;
    return fail(v, "%s", "no MARK on the stack");
}

static int append(vm *v, pv *c, pv *x) {
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 8;
        pv **p = realloc(c->items, sizeof *p * (size_t)nc);
        if (!p) return fail(v, "%s", "out of memory");
        c->items = p, c->cap = nc;
    }
    c->items[c->n++] = x;
    return 0;
}

static int need(vm *v, size_t n) { return (size_t)(v->end - v->p) >= n ? 0 : fail(v, "%s", "truncated"); }

static uint64_t rd_le(vm *v, int n) {
    uint64_t x = 0;
    for (int i = 0; i < n; i++) x |= (uint64_t)v->p[i] << (8 * i);
    v->p += n;
    return x;
}

static pv *mk_str(vm *v, const uint8_t *s, size_t n) {
    pv *x = mk(v, PV_STR);
    if (!x) return NULL;
    if (!(x->s = malloc(n + 1))) return v->st = vlm_errorf(v->err, VLM_ERR_OOM, "out of memory"), NULL;
    memcpy(x->s, s, n);
    x->s[n] = 0;
    return x;
}

static pv *mk_int(vm *v, int64_t i, pv_kind k) {
    pv *x = mk(v, k);
    if (x) x->i = i;
    return x;
}

static pv *collect(vm *v, pv_kind k, int from) { // the items above stack position `from` into a new tuple/list
    pv *t = mk(v, k);
    if (!t) return NULL;
    for (int i = from; i < v->sp; i++)
        if (append(v, t, v->stack[i])) return NULL;
    v->sp = from;
    return t;
}

// ---------------------------------------------------------------- globals

static const struct {
    const char *name;
    vlm_dtype dt;
} storages[] = {{"torch.FloatStorage", VLM_F32}, {"torch.HalfStorage", VLM_F16}, {"torch.BFloat16Storage", VLM_BF16},
                {"torch.DoubleStorage", VLM_F64}, {"torch.LongStorage", VLM_I64}, {"torch.IntStorage", VLM_I32},
                {"torch.ByteStorage", VLM_U8}, {"torch.BoolStorage", VLM_U8}};

static int allowed_global(const char *g) {
    static const char *ok[] = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                               "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor",
                               "torch._tensor._rebuild_from_type_v2", "torch.Tensor", "torch.nn.parameter.Parameter",
                               "torch.device", "builtins.set", "torch.Size", "torch.float16", "torch.float32",
                               "torch.bfloat16"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(g, ok[i])) return 1;
    for (size_t i = 0; i < sizeof storages / sizeof storages[0]; i++)
        if (!strcmp(g, storages[i].name)) return 1;
    return !strncmp(g, "__torch__.", 10); // TorchScript module classes: plain objects
}

static pv *mk_global(vm *v, const char *mod, size_t ml, const char *name, size_t nl) {
    char g[512];
    if (ml + nl + 2 > sizeof g) return fail(v, "%s", "global name too long"), NULL;
    snprintf(g, sizeof g, "%.*s.%.*s", (int)ml, mod, (int)nl, name);
    if (!allowed_global(g)) return fail(v, "refused global %s (only what a state dict needs is allowed)", g), NULL;
    pv *x = mk(v, PV_GLOBAL);
    if (x && !(x->s = strdup(g))) v->st = vlm_errorf(v->err, VLM_ERR_OOM, "out of memory");
    return x;
}

static int64_t as_int(vm *v, const pv *x, const char *what) {
    if (!x || (x->k != PV_INT && x->k != PV_BOOL)) return fail(v, "%s: integer expected", what), 0;
    return x->i;
}

// _rebuild_tensor_v2(storage, offset, size, stride, ...): the f32 copy,
// every element's offset checked to lie inside the storage.
static pv *rebuild_tensor(vm *v, pv *args) {
    if (!args || args->k != PV_TUPLE || args->n < 4) return fail(v, "%s", "_rebuild_tensor_v2: bad arguments"), NULL;
    pv *s = args->items[0], *size = args->items[2], *stride = args->items[3];
    if (s->k != PV_STORAGE || size->k != PV_TUPLE || stride->k != PV_TUPLE || size->n != stride->n ||
        size->n > VLM_ST_MAX_DIMS)
        return fail(v, "%s", "_rebuild_tensor_v2: bad storage, size or stride"), NULL;
    int64_t off = as_int(v, args->items[1], "storage offset"), numel = 1, hi = off;
    pv *t = mk(v, PV_TENSOR);
    if (!t || v->st) return NULL;
    t->ndim = size->n, t->dt = s->dt;
    int64_t st[VLM_ST_MAX_DIMS];
    for (int d = 0; d < size->n; d++) {
        t->shape[d] = as_int(v, size->items[d], "size"), st[d] = as_int(v, stride->items[d], "stride");
        if (v->st || t->shape[d] < 0 || st[d] < 0 || t->shape[d] > (1LL << 40)) return fail(v, "%s", "bad tensor shape"), NULL;
        numel *= t->shape[d];
        if (numel > (1LL << 40)) return fail(v, "%s", "tensor too large"), NULL;
        if (t->shape[d] > 0) hi += (t->shape[d] - 1) * st[d];
    }
    if (off < 0 || (numel > 0 && hi >= s->i))
        return fail(v, "%s", "tensor reaches past its storage (offset, size or stride)"), NULL;
    if (s->dt != VLM_F32 && s->dt != VLM_F16 && s->dt != VLM_BF16 && s->dt != VLM_F64) {
        t->k = PV_NONE; // integer tensors (position ids, optimizer steps) are not weights
        return t;
    }
    char key[600];
    snprintf(key, sizeof key, "%sdata/%s", v->prefix, s->s);
    const member *m = members_find(v->z, key);
    size_t es = vlm_dtype_size(s->dt);
    if (!m) return fail(v, "storage %s missing from the archive", key), NULL;
    if ((uint64_t)m->size < (uint64_t)s->i * es) return fail(v, "storage %s is shorter than its element count", key), NULL;
    if (!(t->data = malloc(sizeof(float) * (size_t)(numel ? numel : 1))))
        return v->st = vlm_errorf(v->err, VLM_ERR_OOM, "out of memory for a tensor of %lld elements", (long long)numel), NULL;
    int64_t idx[VLM_ST_MAX_DIMS] = {0};
    for (int64_t i = 0; i < numel; i++) { // row-major walk over the strided view
        int64_t o = off;
        for (int d = 0; d < t->ndim; d++) o += idx[d] * st[d];
        if (vlm_to_f32(m->data + (size_t)o * es, s->dt, 1, t->data + i, v->err)) return v->st = VLM_ERR_FORMAT, NULL;
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    return t;
}

// REDUCE: callable(*args) for the allowed callables.
static pv *reduce(vm *v, pv *fn, pv *args) {
    if (fn->k != PV_GLOBAL) return fail(v, "%s", "REDUCE of a non-callable"), NULL;
    const char *g = fn->s;
    if (!strcmp(g, "torch._utils._rebuild_tensor_v2") || !strcmp(g, "torch._utils._rebuild_tensor"))
        return rebuild_tensor(v, args);
    if (!strcmp(g, "torch._utils._rebuild_parameter")) {
        if (args->k != PV_TUPLE || args->n < 1 || args->items[0]->k != PV_TENSOR)
            return fail(v, "%s", "_rebuild_parameter: tensor expected"), NULL;
        return args->items[0];
    }
    if (!strcmp(g, "torch._tensor._rebuild_from_type_v2")) { // (func, type, args, state)
        if (args->k != PV_TUPLE || args->n < 3) return fail(v, "%s", "_rebuild_from_type_v2: bad arguments"), NULL;
        return reduce(v, args->items[0], args->items[2]);
    }
    if (!strcmp(g, "collections.OrderedDict")) return mk(v, PV_DICT);
    if (!strcmp(g, "builtins.set")) return mk(v, PV_LIST);
    pv *o = mk(v, PV_OBJ); // torch.device, torch.Size, TorchScript classes: kept as opaque objects
    if (o) o->s = fn->s, o->state = args;
    return o;
}

// BINPERSID: ('storage', storage_type, key, location, numel).
static pv *persistent(vm *v, pv *pid) {
    if (pid->k != PV_TUPLE || pid->n < 5 || pid->items[0]->k != PV_STR || strcmp(pid->items[0]->s, "storage") ||
        pid->items[1]->k != PV_GLOBAL || pid->items[2]->k != PV_STR)
        return fail(v, "%s", "unsupported persistent id (only tensor storages)"), NULL;
    pv *s = mk(v, PV_STORAGE);
    if (!s) return NULL;
    int found = 0;
    for (size_t i = 0; i < sizeof storages / sizeof storages[0]; i++)
        if (!strcmp(pid->items[1]->s, storages[i].name)) s->dt = storages[i].dt, found = 1;
    if (!found) return fail(v, "storage type %s is not supported", pid->items[1]->s), NULL;
    s->s = pid->items[2]->s;
    s->i = as_int(v, pid->items[4], "storage size");
    if (!v->st && (s->i < 0 || s->i > (1LL << 40))) return fail(v, "%s", "bad storage size"), NULL;
    for (const char *c = s->s; *c; c++)
        if (*c == '/' || *c == '.') return fail(v, "%s", "bad storage key"), NULL;
    return s;
}

static int memo_put(vm *v, int64_t i) {
    if (i < 0 || i > (1 << 24)) return fail(v, "%s", "memo index out of range");
    if (i >= v->memo_cap) {
        int64_t nc = v->memo_cap ? v->memo_cap : 256;
        while (nc <= i) nc *= 2;
        pv **p = realloc(v->memo, sizeof *p * (size_t)nc);
        if (!p) return fail(v, "%s", "out of memory");
        memset(p + v->memo_cap, 0, sizeof *p * (size_t)(nc - v->memo_cap));
        v->memo = p, v->memo_cap = nc;
    }
    pv *t = top(v);
    if (!t) return -1;
    v->memo[i] = t;
    return 0;
}

static int memo_get(vm *v, int64_t i) {
    if (i < 0 || i >= v->memo_cap || !v->memo[i]) return fail(v, "%s", "memo lookup of an unset index");
    return push(v, v->memo[i]);
}

static int setitems(vm *v, int from) {
    if (from < 1 || (v->sp - from) % 2) return fail(v, "%s", "SETITEMS: odd item count");
    pv *d = v->stack[from - 1];
    if (d->k != PV_DICT) return fail(v, "%s", "SETITEM(S) on a non-dict");
    for (int i = from; i < v->sp; i++)
        if (append(v, d, v->stack[i])) return -1;
    v->sp = from;
    return 0;
}

// One opcode; 1 at STOP, 0 to go on, -1 on error.
static int step(vm *v, int64_t *memo_next) {
    if (need(v, 1)) return -1;
    uint8_t op = *v->p++;
    pv *a, *b;
    int m;
    switch (op) {
    case 0x80: return need(v, 1) ? -1 : (v->p++, 0);                 // PROTO
    case 0x95: return need(v, 8) ? -1 : (v->p += 8, 0);              // FRAME
    case '(': return push(v, mk(v, PV_MARK));
    case '}': return push(v, mk(v, PV_DICT));
    case ']': return push(v, mk(v, PV_LIST));
    case ')': return push(v, mk(v, PV_TUPLE));
    case 0x8f: return push(v, mk(v, PV_LIST));                       // EMPTY_SET
    case 'N': return push(v, mk(v, PV_NONE));
    case 0x88: case 0x89: return push(v, mk_int(v, op == 0x88, PV_BOOL));
    case 'K': return need(v, 1) ? -1 : push(v, mk_int(v, (int64_t)rd_le(v, 1), PV_INT));
    case 'M': return need(v, 2) ? -1 : push(v, mk_int(v, (int64_t)rd_le(v, 2), PV_INT));
    case 'J': return need(v, 4) ? -1 : push(v, mk_int(v, (int32_t)rd_le(v, 4), PV_INT));
    case 0x8a: {                                                      // LONG1
        if (need(v, 1)) return -1;
        int n = *v->p++;
        if (n > 8 || need(v, (size_t)n)) return fail(v, "%s", "LONG1 wider than 64 bits");
        uint64_t x = n ? rd_le(v, n) : 0;
        if (n && n < 8 && (x >> (8 * n - 1)) & 1) x |= ~0ULL << (8 * n);
        return push(v, mk_int(v, (int64_t)x, PV_INT));
    }
    case 'G': {
        if (need(v, 8)) return -1;
        uint64_t x = 0;
        for (int i = 0; i < 8; i++) x = x << 8 | v->p[i];
        v->p += 8;
        pv *f = mk(v, PV_FLOAT);
        if (f) memcpy(&f->f, &x, 8);
        return push(v, f);
    }
    case 'X': case 0x8c: case 'T': case 'U': case 'B': case 'C': case 0x8e: case 0x8d: { // strings and bytes
        int w = op == 0x8c || op == 'U' || op == 'C' ? 1 : op == 0x8e || op == 0x8d ? 8 : 4;
        if (need(v, (size_t)w)) return -1;
        uint64_t n = rd_le(v, w);
        if (n > (uint64_t)(v->end - v->p)) return fail(v, "%s", "string runs past the end");
        pv *s = mk_str(v, v->p, (size_t)n);
        v->p += n;
        return push(v, s);
    }
    case 'c': {                                                       // GLOBAL "module\nname\n"
        const uint8_t *m1 = memchr(v->p, '\n', (size_t)(v->end - v->p));
        const uint8_t *m2 = m1 ? memchr(m1 + 1, '\n', (size_t)(v->end - m1 - 1)) : NULL;
        if (!m2) return fail(v, "%s", "GLOBAL: truncated");
        pv *g = mk_global(v, (const char *)v->p, (size_t)(m1 - v->p), (const char *)m1 + 1, (size_t)(m2 - m1 - 1));
        v->p = m2 + 1;
        return push(v, g);
    }
    case 0x93:                                                        // STACK_GLOBAL
        if (!(b = pop(v)) || !(a = pop(v))) return -1;
        if (a->k != PV_STR || b->k != PV_STR) return fail(v, "%s", "STACK_GLOBAL: strings expected");
        return push(v, mk_global(v, a->s, strlen(a->s), b->s, strlen(b->s)));
    case 'q': return need(v, 1) ? -1 : memo_put(v, (int64_t)rd_le(v, 1));
    case 'r': return need(v, 4) ? -1 : memo_put(v, (int64_t)rd_le(v, 4));
    case 0x94: return memo_put(v, (*memo_next)++);                    // MEMOIZE
    case 'h': return need(v, 1) ? -1 : memo_get(v, (int64_t)rd_le(v, 1));
    case 'j': return need(v, 4) ? -1 : memo_get(v, (int64_t)rd_le(v, 4));
    case 't': return (m = mark_pos(v)) < 0 ? -1 : (a = collect(v, PV_TUPLE, m + 1)) ? (v->sp--, push(v, a)) : -1;
    case 'l': return (m = mark_pos(v)) < 0 ? -1 : (a = collect(v, PV_LIST, m + 1)) ? (v->sp--, push(v, a)) : -1;
    case 0x85: case 0x86: case 0x87: {                                // TUPLE1..3
        int n = op - 0x84;
        if (v->sp < n) return fail(v, "%s", "stack underflow");
        for (int i = v->sp - n; i < v->sp; i++)
            if (v->stack[i]->k == PV_MARK) return fail(v, "%s", "MARK inside a tuple");
        return (a = collect(v, PV_TUPLE, v->sp - n)) ? push(v, a) : -1;
    }
    case 'a':
        if (!(b = pop(v)) || !(a = top(v))) return -1;
        return a->k == PV_LIST ? append(v, a, b) : fail(v, "%s", "APPEND to a non-list");
    case 'e': case 0x90: {                                            // APPENDS, ADDITEMS
        if ((m = mark_pos(v)) < 1) return -1;
        a = v->stack[m - 1];
        if (a->k != PV_LIST) return fail(v, "%s", "APPENDS to a non-list");
        for (int i = m + 1; i < v->sp; i++)
            if (append(v, a, v->stack[i])) return -1;
        v->sp = m;
        return 0;
    }
    case 's': return v->sp < 3 ? fail(v, "%s", "stack underflow") : setitems(v, v->sp - 2);
    case 'u': {
        if ((m = mark_pos(v)) < 0) return -1;
        memmove(v->stack + m, v->stack + m + 1, sizeof(pv *) * (size_t)(v->sp - m - 1)); // drop the mark
        v->sp--;
        return setitems(v, m);
    }
    case 'R':
        if (!(b = pop(v)) || !(a = pop(v))) return -1;
        return push(v, reduce(v, a, b));
    case 0x81:                                                        // NEWOBJ: cls.__new__(cls, *args)
        if (!(b = pop(v)) || !(a = pop(v))) return -1;
        if (a->k != PV_GLOBAL) return fail(v, "%s", "NEWOBJ of a non-class");
        return push(v, reduce(v, a, b));
    case 'b':                                                         // BUILD
        if (!(b = pop(v)) || !(a = top(v))) return -1;
        if (a->k == PV_OBJ) a->state = b;
        return 0; // tensors (requires_grad state) and dicts ignore it
    case 'Q':
        if (!(a = pop(v))) return -1;
        return push(v, persistent(v, a));
    case '0': return pop(v) ? 0 : -1;
    case '1': return (m = mark_pos(v)) < 0 ? -1 : (v->sp = m, 0); // POP_MARK
    case '2': return (a = top(v)) ? push(v, a) : -1;             // DUP
    case '.': return 1;
    default: {
        char o[16];
        snprintf(o, sizeof o, "0x%02x", op);
        return fail(v, "unsupported pickle opcode %s", o);
    }
    }
}

// Every tensor below x, named by its path; depth-limited (shared values are
// visited once per path, and a cycle ends at the limit).
static vlm_status flatten(vm *v, const pv *x, char *path, size_t len, int depth, vlm_fset *out) {
    if (depth > 48 || len > 900) return VLM_OK;
    if (x->k == PV_TENSOR) {
        int64_t n = 1;
        for (int i = 0; i < x->ndim; i++) n *= x->shape[i];
        float *copy = malloc(sizeof(float) * (size_t)(n ? n : 1));
        if (!copy) return vlm_errorf(v->err, VLM_ERR_OOM, "out of memory");
        memcpy(copy, x->data, sizeof(float) * (size_t)n);
        if (vlm_fset_find(out, path)) return free(copy), VLM_OK;
        return vlm_fset_add(out, path, x->ndim, x->shape, x->dt, copy, v->err);
    }
    const pv *d = x->k == PV_OBJ ? x->state : x;
    if (!d || d->k != PV_DICT) return VLM_OK;
    for (int i = 0; i + 1 < d->n; i += 2) {
        if (d->items[i]->k != PV_STR) continue;
        size_t l = (size_t)snprintf(path + len, 1024 - len, "%s%s", len ? "." : "", d->items[i]->s);
        vlm_status st = flatten(v, d->items[i + 1], path, len + l, depth + 1, out);
        path[len] = 0;
        if (st) return st;
    }
    return VLM_OK;
}

vlm_status vlm_fset_read_torch(const char *path, vlm_fset *out, vlm_error *err) {
    memset(out, 0, sizeof *out);
    members z = {0};
    vlm_status st = read_zip(path, &z, err);
    const member *pkl = NULL;
    for (int i = 0; !st && i < z.n; i++)
        if (strlen(z.m[i].name) > 9 && !strcmp(z.m[i].name + strlen(z.m[i].name) - 9, "/data.pkl")) pkl = &z.m[i];
    if (!st && !pkl) st = vlm_errorf(err, VLM_ERR_FORMAT, "%s: no data.pkl in the archive (not a PyTorch checkpoint)", path);
    if (st) return members_free(&z), st;
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(pkl->name) - 8), pkl->name); // "<name>/"
    vm v = {.p = pkl->data, .end = pkl->data + pkl->size, .path = path, .prefix = prefix, .z = &z, .err = err};
    int64_t memo_next = 0;
    int r = 0;
    while ((r = step(&v, &memo_next)) == 0) {}
    if (r > 0 && v.sp < 1) fail(&v, "%s", "nothing on the stack at STOP");
    if (!v.st && r > 0) {
        char name[1024] = "";
        const pv *root = v.stack[v.sp - 1];
        if (root->k == PV_OBJ && root->s) out->info = strdup(root->s);
        for (int i = 0; root->k == PV_DICT && i + 1 < root->n; i += 2) // open_clip's {"name": model name, ...}
            if (root->items[i]->k == PV_STR && !strcmp(root->items[i]->s, "name") && root->items[i + 1]->k == PV_STR)
                out->info = strdup(root->items[i + 1]->s);
        st = flatten(&v, root, name, 0, 0, out);
    } else
        st = v.st ? v.st : vlm_errorf(err, VLM_ERR_FORMAT, "%s: data.pkl: malformed", path);
    for (int i = 0; i < v.n_all; i++) {
        pv *x = v.all[i];
        free(x->items);
        if (x->k == PV_STR || x->k == PV_GLOBAL) free(x->s);
        if (x->k == PV_TENSOR) free(x->data);
        free(x);
    }
    free(v.all), free(v.stack), free(v.memo);
    members_free(&z);
    if (st) vlm_fset_free(out);
    return st;
}
