// Tensor headers and views, the step arena, the autograd tape and backward
// walk, and the contiguous parameter store.
#include "core/tensor.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t vlm_numel(const vlm_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void vlm_set_contiguous_strides(vlm_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

int vlm_is_contiguous(const vlm_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

const char *vlm_shape_str(const vlm_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; t && i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

// ---- arena -----------------------------------------------------------------
#define ARENA_ALIGN 64

static vlm_arena_block *block_new(size_t cap) {
    vlm_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->mem = aligned_alloc(ARENA_ALIGN, (cap + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    b->used = 0;
    b->next = NULL;
    return b;
}

static void block_free(vlm_arena_block *b) {
    while (b) {
        vlm_arena_block *n = b->next;
        free(b->mem);
        free(b);
        b = n;
    }
}

vlm_status vlm_arena_init(vlm_arena *a, size_t cap, vlm_error *err) {
    memset(a, 0, sizeof *a);
    a->head = block_new(cap < 4096 ? 4096 : cap);
    if (!a->head) return vlm_errorf(err, VLM_ERR_OOM, "arena: cannot allocate %zu bytes", cap);
    return VLM_OK;
}

void vlm_arena_free(vlm_arena *a) {
    block_free(a->head);
    block_free(a->extra);
    memset(a, 0, sizeof *a);
}

void *vlm_arena_alloc(vlm_arena *a, size_t bytes) {
    bytes = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (!bytes) bytes = ARENA_ALIGN;
    a->used_total += bytes;
    if (a->used_total > a->high_water) a->high_water = a->used_total;
    vlm_arena_block *b = a->head->used + bytes <= a->head->cap ? a->head : a->extra;
    if (b == a->extra && (!b || b->used + bytes > b->cap)) {
        size_t cap = bytes > (a->head->cap >> 1) ? bytes : (a->head->cap >> 1);
        b = block_new(cap);
        if (!b) return NULL;
        b->next = a->extra;
        a->extra = b;
    }
    void *p = b->mem + b->used;
    b->used += bytes;
    return p;
}

void vlm_arena_reset(vlm_arena *a) {
    if (a->extra) {
        // Fold overflow into one block sized to the high-water mark (+1/8 slack).
        block_free(a->extra);
        a->extra = NULL;
        size_t cap = a->high_water + a->high_water / 8;
        vlm_arena_block *nb = block_new(cap);
        if (nb) {
            block_free(a->head);
            a->head = nb;
        }
    }
    a->head->used = 0;
    a->used_total = 0;
}

// ---- context -----------------------------------------------------------------
vlm_status vlm_ctx_init(vlm_ctx *c, size_t arena_bytes, uint64_t seed, vlm_error *err) {
    memset(c, 0, sizeof *c);
    c->grad_enabled = 1;
    c->training = 1;
    vlm_rng_init(&c->dropout_rng, seed, VLM_RNG_DROPOUT, 0);
    return vlm_arena_init(&c->arena, arena_bytes, err);
}

void vlm_ctx_free(vlm_ctx *c) {
    vlm_arena_free(&c->arena);
    free(c->gemm_scratch);
    c->gemm_scratch = NULL;
    c->gemm_scratch_bytes = 0;
}

void vlm_ctx_reset(vlm_ctx *c) {
    vlm_arena_reset(&c->arena);
    c->tape = NULL;
    c->n_nodes = 0;
    c->status = VLM_OK;
    c->err.msg[0] = 0;
}

void *vlm_ctx_fail(vlm_ctx *c, vlm_status st, const char *fmt, ...) {
    if (c->status != VLM_OK) return NULL; // keep the first error
    c->status = st;
    c->err.status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    va_end(ap);
    return NULL;
}

int vlm_needs_grad(const vlm_ctx *c, const vlm_tensor *a, const vlm_tensor *b, const vlm_tensor *d) {
    if (!c->grad_enabled) return 0;
    return (a && a->requires_grad) || (b && b->requires_grad) || (d && d->requires_grad);
}

static vlm_tensor *tensor_alloc(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, int requires_grad,
                                int zero) {
    if (c->status != VLM_OK) return NULL;
    if (ndim < 0 || ndim > VLM_MAX_DIMS) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "tensor: %d dims (max %d)", ndim, VLM_MAX_DIMS);
    vlm_tensor *t = vlm_arena_alloc(&c->arena, sizeof *t);
    if (!t) return vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory");
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "tensor: negative dim %lld", (long long)shape[i]);
        t->shape[i] = shape[i];
    }
    vlm_set_contiguous_strides(t);
    size_t bytes = (size_t)vlm_numel(t) * vlm_dtype_size(dt);
    t->data = vlm_arena_alloc(&c->arena, bytes);
    if (!t->data) return vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory for %zu bytes", bytes);
    if (zero) memset(t->data, 0, bytes);
    if (requires_grad && c->grad_enabled && dt == VLM_F32) {
        t->grad = vlm_arena_alloc(&c->arena, bytes);
        if (!t->grad) return vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory for %zu bytes", bytes);
        memset(t->grad, 0, bytes);
        t->requires_grad = 1;
    }
    return t;
}

vlm_tensor *vlm_tensor_new(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, int requires_grad) {
    return tensor_alloc(c, dt, ndim, shape, requires_grad, 0);
}

vlm_tensor *vlm_tensor_zeros(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, int requires_grad) {
    return tensor_alloc(c, dt, ndim, shape, requires_grad, 1);
}

vlm_tensor *vlm_tensor_wrap(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, void *data, float *grad) {
    if (c->status != VLM_OK) return NULL;
    if (ndim < 0 || ndim > VLM_MAX_DIMS) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "tensor: %d dims (max %d)", ndim, VLM_MAX_DIMS);
    vlm_tensor *t = vlm_arena_alloc(&c->arena, sizeof *t);
    if (!t) return vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory");
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    vlm_set_contiguous_strides(t);
    t->data = data;
    t->grad = grad;
    t->requires_grad = grad != NULL;
    return t;
}

vlm_node *vlm_record(vlm_ctx *c, const char *op, vlm_tensor *out, void (*backward)(vlm_ctx *, vlm_node *),
                     vlm_tensor *a, vlm_tensor *b, vlm_tensor *d, vlm_tensor *e) {
    if (c->status != VLM_OK || !c->grad_enabled || !out->requires_grad) return NULL;
    vlm_node *n = vlm_arena_alloc(&c->arena, sizeof *n);
    if (!n) return vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory recording %s", op);
    memset(n, 0, sizeof *n);
    n->op = op;
    n->out = out;
    n->backward = backward;
    n->in[0] = a;
    n->in[1] = b;
    n->in[2] = d;
    n->in[3] = e;
    n->prev = c->tape;
    c->tape = n;
    c->n_nodes++;
    return n;
}

vlm_status vlm_backward(vlm_ctx *c, vlm_tensor *loss) {
    if (c->status != VLM_OK) return c->status;
    if (!loss || vlm_numel(loss) != 1) {
        vlm_ctx_fail(c, VLM_ERR_SHAPE, "backward: loss must hold exactly one element");
        return c->status;
    }
    if (!loss->grad) {
        vlm_ctx_fail(c, VLM_ERR_STATE, "backward: loss does not require grad (no-grad mode or all inputs frozen)");
        return c->status;
    }
    loss->grad[0] += 1.0f;
    for (vlm_node *n = c->tape; n && c->status == VLM_OK; n = n->prev) {
        n->backward(c, n);
        if (c->backward_hook) c->backward_hook(c->backward_hook_user, n->prev);
    }
    // The tape is consumed (as PyTorch frees the graph): a second backward in
    // the same step only walks ops recorded after this one.
    c->tape = NULL;
    c->n_nodes = 0;
    return c->status;
}

// ---- views -----------------------------------------------------------------
vlm_tensor *vlm_view(vlm_ctx *c, vlm_tensor *x) {
    if (c->status != VLM_OK || !x) return NULL;
    vlm_tensor *t = vlm_arena_alloc(&c->arena, sizeof *t);
    if (!t) return vlm_ctx_fail(c, VLM_ERR_OOM, "arena: out of memory");
    *t = *x;
    return t;
}

vlm_tensor *vlm_view_reshape(vlm_ctx *c, vlm_tensor *x, int ndim, const int64_t *shape) {
    if (c->status != VLM_OK || !x) return NULL;
    char a[96];
    if (!vlm_is_contiguous(x))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "reshape: input %s is not contiguous (use vlm_op_contiguous)",
                            vlm_shape_str(x, a, sizeof a));
    if (ndim < 0 || ndim > VLM_MAX_DIMS) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "reshape: %d dims", ndim);
    int64_t n = 1, infer = -1;
    int64_t sh[VLM_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "reshape: more than one -1");
            infer = i;
        } else
            n *= shape[i];
    }
    if (infer >= 0) sh[infer] = n ? vlm_numel(x) / n : 0;
    int64_t m = 1;
    for (int i = 0; i < ndim; i++) m *= sh[i];
    if (m != vlm_numel(x))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "reshape: %s (%lld elements) cannot become %lld elements",
                            vlm_shape_str(x, a, sizeof a), (long long)vlm_numel(x), (long long)m);
    vlm_tensor *t = vlm_view(c, x);
    if (!t) return NULL;
    t->ndim = ndim;
    memcpy(t->shape, sh, sizeof(int64_t) * (size_t)ndim);
    vlm_set_contiguous_strides(t);
    return t;
}

vlm_tensor *vlm_view_transpose(vlm_ctx *c, vlm_tensor *x, int d0, int d1) {
    if (c->status != VLM_OK || !x) return NULL;
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim)
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "transpose: dims %d,%d out of range for %d-d tensor", d0, d1, x->ndim);
    vlm_tensor *t = vlm_view(c, x);
    if (!t) return NULL;
    int64_t s = t->shape[d0], st = t->stride[d0];
    t->shape[d0] = t->shape[d1];
    t->stride[d0] = t->stride[d1];
    t->shape[d1] = s;
    t->stride[d1] = st;
    return t;
}

vlm_tensor *vlm_view_permute(vlm_ctx *c, vlm_tensor *x, const int *perm) {
    if (c->status != VLM_OK || !x) return NULL;
    vlm_tensor *t = vlm_view(c, x);
    if (!t) return NULL;
    int seen = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || (seen >> perm[i] & 1))
            return vlm_ctx_fail(c, VLM_ERR_SHAPE, "permute: invalid permutation for %d-d tensor", x->ndim);
        seen |= 1 << perm[i];
        t->shape[i] = x->shape[perm[i]];
        t->stride[i] = x->stride[perm[i]];
    }
    return t;
}

vlm_tensor *vlm_view_slice(vlm_ctx *c, vlm_tensor *x, int dim, int64_t start, int64_t len) {
    if (c->status != VLM_OK || !x) return NULL;
    if (dim < 0) dim += x->ndim;
    char a[96];
    if (dim < 0 || dim >= x->ndim || start < 0 || len < 0 || start + len > x->shape[dim])
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "slice: [%lld, %lld) of dim %d out of range for %s", (long long)start,
                            (long long)(start + len), dim, vlm_shape_str(x, a, sizeof a));
    vlm_tensor *t = vlm_view(c, x);
    if (!t) return NULL;
    size_t es = vlm_dtype_size(x->dtype);
    t->data = (char *)x->data + (size_t)(start * x->stride[dim]) * es;
    if (x->grad) t->grad = x->grad + start * x->stride[dim];
    t->shape[dim] = len;
    return t;
}

vlm_tensor *vlm_view_select(vlm_ctx *c, vlm_tensor *x, int dim, int64_t index) {
    vlm_tensor *t = vlm_view_slice(c, x, dim, index, 1);
    if (!t) return NULL;
    if (dim < 0) dim += x->ndim;
    for (int i = dim; i < t->ndim - 1; i++) {
        t->shape[i] = t->shape[i + 1];
        t->stride[i] = t->stride[i + 1];
    }
    t->ndim--;
    return t;
}

static void extent(int ndim, const int64_t *shape, const int64_t *stride, int64_t *lo, int64_t *hi) {
    *lo = *hi = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) { *lo = 0; *hi = -1; return; }
        int64_t e = (shape[i] - 1) * stride[i];
        if (e < 0) *lo += e; else *hi += e;
    }
}

vlm_tensor *vlm_view_strided(vlm_ctx *c, vlm_tensor *x, int ndim, const int64_t *shape, const int64_t *stride,
                             int64_t offset) {
    if (c->status != VLM_OK || !x) return NULL;
    if (ndim < 0 || ndim > VLM_MAX_DIMS) return vlm_ctx_fail(c, VLM_ERR_SHAPE, "view_strided: %d dims", ndim);
    int64_t xlo, xhi, lo, hi;
    extent(x->ndim, x->shape, x->stride, &xlo, &xhi);
    extent(ndim, shape, stride, &lo, &hi);
    char a[96];
    if (hi >= lo && (offset + lo < xlo || offset + hi > xhi))
        return vlm_ctx_fail(c, VLM_ERR_SHAPE, "view_strided: view at offset %lld reaches outside %s", (long long)offset,
                            vlm_shape_str(x, a, sizeof a));
    vlm_tensor *t = vlm_view(c, x);
    if (!t) return NULL;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(t->stride, stride, sizeof(int64_t) * (size_t)ndim);
    t->data = (char *)x->data + (size_t)offset * vlm_dtype_size(x->dtype);
    if (x->grad) t->grad = x->grad + offset;
    return t;
}

// ---- parameter store ---------------------------------------------------------
void vlm_params_init(vlm_params *ps) { memset(ps, 0, sizeof *ps); }

void vlm_params_free(vlm_params *ps) {
    free(ps->p);
    free(ps->data);
    free(ps->grad);
    free(ps->m);
    free(ps->v);
    memset(ps, 0, sizeof *ps);
}

int vlm_params_add(vlm_params *ps, const char *name, int ndim, const int64_t *shape, vlm_error *err) {
    if (ps->allocated) {
        vlm_errorf(err, VLM_ERR_STATE, "params: cannot add '%s' after allocation", name);
        return -1;
    }
    if (ndim < 0 || ndim > VLM_MAX_DIMS || strlen(name) >= sizeof ps->p[0].name) {
        vlm_errorf(err, VLM_ERR_ARG, "params: bad parameter '%s' (%d dims)", name, ndim);
        return -1;
    }
    if (vlm_params_find(ps, name) >= 0) {
        vlm_errorf(err, VLM_ERR_ARG, "params: duplicate parameter '%s'", name);
        return -1;
    }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 64;
        vlm_param *p = realloc(ps->p, sizeof *p * (size_t)cap);
        if (!p) {
            vlm_errorf(err, VLM_ERR_OOM, "params: out of memory");
            return -1;
        }
        ps->p = p;
        ps->cap = cap;
    }
    vlm_param *p = &ps->p[ps->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->t.dtype = VLM_F32;
    p->t.ndim = ndim;
    if (ndim) memcpy(p->t.shape, shape, sizeof(int64_t) * (size_t)ndim);
    vlm_set_contiguous_strides(&p->t);
    p->numel = vlm_numel(&p->t);
    // Keep each parameter 16-float aligned (64 bytes) inside the buffer.
    p->offset = ps->total;
    ps->total += (p->numel + 15) / 16 * 16;
    return ps->n++;
}

static float *alloc_buf(int64_t n) {
    size_t bytes = ((size_t)(n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    float *b = aligned_alloc(64, bytes);
    if (b) memset(b, 0, bytes);
    return b;
}

vlm_status vlm_params_alloc(vlm_params *ps, vlm_error *err) {
    ps->data = alloc_buf(ps->total);
    ps->grad = alloc_buf(ps->total);
    if (!ps->data || !ps->grad)
        return vlm_errorf(err, VLM_ERR_OOM, "params: cannot allocate %lld floats", (long long)ps->total);
    for (int i = 0; i < ps->n; i++) {
        vlm_param *p = &ps->p[i];
        p->t.data = ps->data + p->offset;
        p->t.grad = ps->grad + p->offset;
        p->t.requires_grad = !p->frozen;
    }
    ps->allocated = 1;
    vlm_params_default_decay(ps);
    return VLM_OK;
}

vlm_status vlm_params_alloc_moments(vlm_params *ps, vlm_error *err) {
    if (ps->m) return VLM_OK;
    ps->m = alloc_buf(ps->total);
    ps->v = alloc_buf(ps->total);
    if (!ps->m || !ps->v) return vlm_errorf(err, VLM_ERR_OOM, "params: cannot allocate optimizer moments");
    return VLM_OK;
}

vlm_tensor *vlm_params_get(vlm_params *ps, int idx) { return idx >= 0 && idx < ps->n ? &ps->p[idx].t : NULL; }

int vlm_params_find(const vlm_params *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i].name, name)) return i;
    return -1;
}

void vlm_params_zero_grad(vlm_params *ps) {
    if (ps->grad) memset(ps->grad, 0, sizeof(float) * (size_t)ps->total);
}

void vlm_params_set_frozen(vlm_params *ps, int idx, int frozen) {
    if (idx < 0 || idx >= ps->n) return;
    ps->p[idx].frozen = frozen;
    ps->p[idx].t.requires_grad = !frozen && ps->allocated;
}

void vlm_params_default_decay(vlm_params *ps) {
    for (int i = 0; i < ps->n; i++) {
        vlm_param *p = &ps->p[i];
        p->no_decay = p->t.ndim < 2 || strstr(p->name, "ln") || strstr(p->name, "bias") ||
                      strstr(p->name, "logit_scale") || strstr(p->name, "norm");
    }
}
