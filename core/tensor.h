// Tensors (dtype + shape + element strides; views share data and gradient),
// the per-step arena, the autograd context/tape, and the parameter store.
#ifndef VLM_CORE_TENSOR_H
#define VLM_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"

#define VLM_MAX_DIMS 6

typedef struct vlm_tensor {
    vlm_dtype dtype;
    int ndim;
    int64_t shape[VLM_MAX_DIMS];
    int64_t stride[VLM_MAX_DIMS]; // in elements; a view may have any strides
    void *data;                   // element [0, ..., 0]
    float *grad;                  // same strides as data; NULL when no gradient flows
    int requires_grad;
} vlm_tensor;

int64_t vlm_numel(const vlm_tensor *t);
int vlm_is_contiguous(const vlm_tensor *t);
static inline float *vlm_f32(const vlm_tensor *t) { return (float *)t->data; }
// "[2, 3, 4]" into buf (for error messages).
const char *vlm_shape_str(const vlm_tensor *t, char *buf, size_t n);
void vlm_set_contiguous_strides(vlm_tensor *t);

// ---- arena ---------------------------------------------------------------
// Bump allocator for activations. While a step runs past its capacity it
// chains overflow blocks; the next reset folds them into one block of the
// high-water size, so from the second step on a step does no malloc.
typedef struct vlm_arena_block {
    struct vlm_arena_block *next;
    size_t cap, used;
    char *mem;
} vlm_arena_block;

typedef struct {
    vlm_arena_block *head;  // primary block (never NULL after init)
    vlm_arena_block *extra; // overflow blocks of this step
    size_t used_total, high_water;
} vlm_arena;

vlm_status vlm_arena_init(vlm_arena *a, size_t cap, vlm_error *err);
void vlm_arena_free(vlm_arena *a);
void *vlm_arena_alloc(vlm_arena *a, size_t bytes); // 64-byte aligned, NULL on OOM
void vlm_arena_reset(vlm_arena *a);

// ---- autograd context ----------------------------------------------------
struct vlm_ctx;
typedef struct vlm_node {
    struct vlm_node *prev;
    void (*backward)(struct vlm_ctx *c, struct vlm_node *n);
    const char *op;
    vlm_tensor *out;
    vlm_tensor *in[4];
    void *saved;  // op-specific arena data
    float f[4];   // op-specific scalars
    int64_t i[4]; // op-specific integers
} vlm_node;

typedef struct vlm_ctx {
    vlm_arena arena;
    vlm_node *tape;     // last recorded node (linked through prev)
    int n_nodes;
    int grad_enabled;   // 0 = no-grad mode: nothing recorded, no grad buffers
    int training;       // dropout active
    vlm_rng dropout_rng;
    vlm_status status;  // sticky: the first error of the step
    vlm_error err;
    // Optional: called after each node's backward with the node that runs next
    // (NULL at the end), so a data-parallel trainer can start reducing the
    // gradients that are already final while the rest of backward runs.
    void (*backward_hook)(void *user, const vlm_node *next);
    void *backward_hook_user;
    // GEMM precision (core/bf16.h vlm_precision; 0 = fp32) and the bf16
    // packing space of its GEMMs (one slice per thread, grown once, kept).
    int precision;
    void *gemm_scratch;
    size_t gemm_scratch_bytes;
} vlm_ctx;

vlm_status vlm_ctx_init(vlm_ctx *c, size_t arena_bytes, uint64_t seed, vlm_error *err);
void vlm_ctx_free(vlm_ctx *c);
// Drops the tape and every activation; keeps the arena's memory.
void vlm_ctx_reset(vlm_ctx *c);
// Records the first error of the step; ops return NULL once the context has failed.
void *vlm_ctx_fail(vlm_ctx *c, vlm_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int vlm_ctx_ok(const vlm_ctx *c) { return c->status == VLM_OK; }
// Reverse-mode pass: seeds d(loss)=1 (loss must hold one element) and walks
// the tape backwards, accumulating into every grad buffer, then drops the tape.
vlm_status vlm_backward(vlm_ctx *c, vlm_tensor *loss);

// New arena tensor (contiguous, data uninitialised). With requires_grad and
// grad mode on, a zeroed grad buffer is attached.
vlm_tensor *vlm_tensor_new(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, int requires_grad);
vlm_tensor *vlm_tensor_zeros(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, int requires_grad);
// Wraps caller memory (no copy). grad may be NULL.
vlm_tensor *vlm_tensor_wrap(vlm_ctx *c, vlm_dtype dt, int ndim, const int64_t *shape, void *data, float *grad);
// Records a node whose output is `out`; returns the node (NULL if no grad flows).
vlm_node *vlm_record(vlm_ctx *c, const char *op, vlm_tensor *out, void (*backward)(vlm_ctx *, vlm_node *),
                     vlm_tensor *a, vlm_tensor *b, vlm_tensor *d, vlm_tensor *e);
// True when any of the inputs needs a gradient and grad mode is on.
int vlm_needs_grad(const vlm_ctx *c, const vlm_tensor *a, const vlm_tensor *b, const vlm_tensor *d);

// ---- views (no copy; gradients flow into the base's grad buffer) -----------
vlm_tensor *vlm_view(vlm_ctx *c, vlm_tensor *x);  // shallow copy of the header
vlm_tensor *vlm_view_reshape(vlm_ctx *c, vlm_tensor *x, int ndim, const int64_t *shape); // contiguous x only
vlm_tensor *vlm_view_transpose(vlm_ctx *c, vlm_tensor *x, int d0, int d1);
vlm_tensor *vlm_view_permute(vlm_ctx *c, vlm_tensor *x, const int *perm);
vlm_tensor *vlm_view_slice(vlm_ctx *c, vlm_tensor *x, int dim, int64_t start, int64_t len);
vlm_tensor *vlm_view_select(vlm_ctx *c, vlm_tensor *x, int dim, int64_t index); // drops dim
// Any shape/strides (elements) at element offset `offset` of x; checked to stay inside x's extent.
vlm_tensor *vlm_view_strided(vlm_ctx *c, vlm_tensor *x, int ndim, const int64_t *shape, const int64_t *stride,
                             int64_t offset);

// ---- parameter store -------------------------------------------------------
// All parameters in one contiguous f32 buffer; grad, Adam m and v mirror it,
// so zero-grad is one memset and a checkpoint is one write.
typedef struct {
    char name[160];
    int64_t offset, numel;
    int frozen;        // no gradient flows
    int no_decay;      // excluded from weight decay
    vlm_tensor t;      // data/grad point into the store's buffers (after alloc)
} vlm_param;

typedef struct {
    vlm_param *p;
    int n, cap;
    int64_t total;
    float *data, *grad, *m, *v; // m, v allocated by vlm_params_alloc_moments
    int allocated;
} vlm_params;

void vlm_params_init(vlm_params *ps);
void vlm_params_free(vlm_params *ps);
// Registers a parameter before vlm_params_alloc; returns its index or -1.
int vlm_params_add(vlm_params *ps, const char *name, int ndim, const int64_t *shape, vlm_error *err);
vlm_status vlm_params_alloc(vlm_params *ps, vlm_error *err);     // data + grad (zeroed)
vlm_status vlm_params_alloc_moments(vlm_params *ps, vlm_error *err);
vlm_tensor *vlm_params_get(vlm_params *ps, int idx);
int vlm_params_find(const vlm_params *ps, const char *name);    // -1 if absent
void vlm_params_zero_grad(vlm_params *ps);
void vlm_params_set_frozen(vlm_params *ps, int idx, int frozen);
// open_clip's rule: no decay for ndim < 2, norms ("ln" in the name), biases, logit_scale.
void vlm_params_default_decay(vlm_params *ps);

#endif
