// Named tensors read from other frameworks' files, converted to f32: PyTorch
// zip checkpoints (torch.save since 1.6 and TorchScript archives such as
// OpenAI's released CLIP .pt files) through a minimal, hostile-input-safe
// unpickler, and safetensors files of any float dtype (F32/F16/BF16/F64).
#ifndef VLM_CORE_TENSORFILE_H
#define VLM_CORE_TENSORFILE_H

#include <stddef.h>
#include <stdint.h>
#include "core/dtype.h"
#include "core/error.h"
#include "core/safetensors.h"

typedef struct {
    char *name;
    int ndim;
    int64_t shape[VLM_ST_MAX_DIMS];
    int64_t numel;
    vlm_dtype src; // the dtype in the file
    float *data;   // [numel], row-major, owned
} vlm_ftensor;

typedef struct {
    vlm_ftensor *t;
    int n, cap;
    char *info; // what the file said about itself (TorchScript class, open_clip "name"); may be NULL
} vlm_fset;

void vlm_fset_free(vlm_fset *s);
const vlm_ftensor *vlm_fset_find(const vlm_fset *s, const char *name);
// Takes ownership of data ([numel] f32).
vlm_status vlm_fset_add(vlm_fset *s, const char *name, int ndim, const int64_t *shape, vlm_dtype src, float *data,
                        vlm_error *err);
// n elements of dtype dt at src (little-endian) to f32; an integer or unknown dtype is an error.
vlm_status vlm_to_f32(const void *src, vlm_dtype dt, int64_t n, float *dst, vlm_error *err);

// Every float tensor of a safetensors file, converted to f32.
vlm_status vlm_fset_read_safetensors(const char *path, vlm_fset *out, vlm_error *err);

// Every tensor reachable from a PyTorch zip checkpoint's data.pkl, named by
// its path: dict keys and object attributes joined with '.' ("state_dict.
// visual.conv1.weight" for torch.save({"state_dict": ...}), "visual.conv1.
// weight" for a TorchScript module). Only the pickle opcodes and globals a
// state dict needs are accepted (tensor and parameter rebuilds, storages,
// OrderedDict, TorchScript module classes); anything else is refused with a
// message naming it. Storage offsets, sizes and strides are checked against
// the data; archive members are size-limited (zip bombs) and CRC-checked.
vlm_status vlm_fset_read_torch(const char *path, vlm_fset *out, vlm_error *err);

#endif
