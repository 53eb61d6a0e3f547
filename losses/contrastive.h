// Contrastive losses over a batch of paired, L2-normalised features:
// symmetric InfoNCE (open_clip's ClipLoss) and SigLIP's pairwise sigmoid loss.
#ifndef VLM_LOSSES_CONTRASTIVE_H
#define VLM_LOSSES_CONTRASTIVE_H

#include "core/ops.h"

// logits_per_image: [B, B] (already scaled). Targets are the diagonal, except
// that with `groups` (B ids, or NULL) an off-diagonal pair with the same group id
// (a duplicate caption) is masked out of the negatives.
// loss = (CE(logits, diag) + CE(logits^T, diag)) / 2.
vlm_tensor *vlm_loss_clip(vlm_ctx *c, vlm_tensor *logits_per_image, const int32_t *groups);
// SigLIP: img, txt [B, E] normalised; scale, bias: [1] tensors (scale is
// already exp'd by the caller). loss = -sum_ij log sigmoid(z_ij (scale x_i.y_j + bias)) / B
// with z_ij = 1 for matching pairs (same group) and -1 otherwise.
vlm_tensor *vlm_loss_siglip(vlm_ctx *c, vlm_tensor *img, vlm_tensor *txt, vlm_tensor *scale, vlm_tensor *bias,
                            const int32_t *groups);

// Data-parallel forms (open_clip's local_loss over gathered features): this
// rank's B samples are rows offset..offset+B-1 of the global batch of G.
// li: local images vs all texts [B, G]; lt: local texts vs all images [B, G];
// groups: G ids or NULL. loss = (CE(li) + CE(lt)) / 2 with targets offset + i;
// the mean over ranks of these losses is vlm_loss_clip over the global batch.
vlm_tensor *vlm_loss_clip_local(vlm_ctx *c, vlm_tensor *li, vlm_tensor *lt, int64_t offset, const int32_t *groups);
// img [B, E] local, txt [G, E] all: -sum_ij log sigmoid(...) / B; the mean over
// ranks is vlm_loss_siglip over the global batch.
vlm_tensor *vlm_loss_siglip_local(vlm_ctx *c, vlm_tensor *img, vlm_tensor *txt, vlm_tensor *scale, vlm_tensor *bias,
                                  int64_t offset, const int32_t *groups);

#endif
