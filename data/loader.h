// Threaded batch loader: worker threads read, decode and transform samples
// straight into preallocated batch buffers (double/triple buffered) while the
// model trains. Order is a per-epoch permutation from (seed, epoch), sharded by
// (rank, world_size); augmentation draws come from (seed, epoch, sample), so a
// batch's content never depends on thread count or timing. Bad samples
// (unreadable, corrupt, oversized) are skipped, counted and summarised; a
// batch is the next B good samples in order. Positions are exact: resume a run
// mid-epoch with vlm_loader_seek(batch.next).
//
//   vlm_loader *L;
//   vlm_loader_opts o; vlm_loader_opts_default(&o, 224, 256);
//   o.train = 1; o.seed = 42;
//   vlm_loader_open(&L, &ds, &o, &err);
//   vlm_batch b;
//   while (vlm_loader_next(L, &b, &err) == VLM_OK && b.n) { ...b.images [b.n,3,S,S]...; save b.next }
//   vlm_loader_free(L);
#ifndef VLM_DATA_LOADER_H
#define VLM_DATA_LOADER_H

#include <stdint.h>
#include "core/error.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/transform.h"

// A position in the sample stream of one rank: sample `index` (0-based,
// counting bad samples too) of epoch `epoch`'s order.
typedef struct {
    int64_t epoch;
    int64_t index;
} vlm_loader_pos;

typedef struct {
    int batch_size;          // B (default from vlm_loader_opts_default)
    int workers;             // decode threads, >= 1 (default 2)
    int prefetch;            // batch buffers, >= 2 (default 3: one in the trainer's hands, two filling)
    uint64_t seed;           // shuffle + augmentation seed
    int shuffle;             // per-epoch permutation (default 1); 0 = dataset order
    int train;               // 1: RandomResizedCrop etc. (transform's train fields); 0: eval transform
    vlm_transform transform; // size S, mean/std, augmentation settings
    vlm_decode_opts decode;  // alpha handling, max_pixels
    float random_background; // train, with decode.alpha = COMPOSITE: the probability that an
                             // image is composited over a random colour (each channel uniform in
                             // 30..225) instead of decode.background, drawn per (epoch, sample),
                             // so a transparent object is seen on many backgrounds (default 0)
    int rank, world_size;    // this process's shard of every epoch (default 0 / 1)
    int drop_last;           // default 1: an epoch's tail shorter than B is skipped
    int64_t epochs;          // stop after this many epochs (0 = endless)
    int64_t max_bad;         // distinct bad samples allowed before next() fails (-1 = no limit)
    int captions;            // copy captions into batches (default 1)
    int caption_max;         // bytes per caption slot incl. NUL; longer ones are cut at a UTF-8 boundary
    vlm_loader_pos start;    // where to begin (default epoch 0, index 0)
} vlm_loader_opts;

typedef struct {
    int n;                   // samples in the batch: B, fewer only for a final partial
                             // batch (drop_last = 0), 0 = no more data (epochs done)
    int size;                // S
    float *images;           // [B, 3, S, S] f32, normalised (first n valid)
    int32_t *labels;         // [B], -1 where the dataset has none
    const char *const *captions; // [B] NUL-terminated ("" if none); NULL if captions are off
    const int64_t *indices;  // [B] dataset sample indices
    vlm_loader_pos pos;      // position of the batch's first sample
    vlm_loader_pos next;     // position right after the batch: store it to resume
    int64_t seq;             // batches delivered since open/seek
} vlm_batch;

typedef struct {
    int64_t samples;         // good samples delivered into batches
    int64_t batches;
    int64_t bad;             // distinct bad samples seen
    int64_t bad_events;      // bad reads (a bad sample counts again each epoch)
} vlm_loader_stats;

typedef struct vlm_loader vlm_loader;

// Defaults: eval transform at size S, batch B, 2 workers, triple buffering.
void vlm_loader_opts_default(vlm_loader_opts *o, int image_size, int batch_size);
// For evaluation: the defaults with one pass in dataset order, the eval
// transform, the last partial batch kept, no captions, `workers` threads.
void vlm_loader_opts_eval(vlm_loader_opts *o, int image_size, int batch_size, int workers);
// ds must outlive the loader. Allocates every buffer up front; workers start
// at once, from o->start.
vlm_status vlm_loader_open(vlm_loader **out, const vlm_dataset *ds, const vlm_loader_opts *o, vlm_error *err);
// Hands out the next batch; the previous one returned goes back to the pool
// (its memory is reused), so copy anything needed beyond the next call.
// Fails when more than max_bad distinct samples were bad or an epoch yields
// no batch at all (fewer than B usable samples per rank).
vlm_status vlm_loader_next(vlm_loader *L, vlm_batch *b, vlm_error *err);
// Discards prefetched batches and restarts at pos (e.g. a checkpoint's saved
// batch.next). pos.index may equal the per-rank epoch length.
vlm_status vlm_loader_seek(vlm_loader *L, vlm_loader_pos pos, vlm_error *err);
// Position after the last batch handed out (the start position before any).
vlm_loader_pos vlm_loader_position(const vlm_loader *L);
// Samples per rank and epoch: floor(N / world_size).
int64_t vlm_loader_epoch_size(const vlm_loader *L);
void vlm_loader_get_stats(vlm_loader *L, vlm_loader_stats *s);
// "N bad samples skipped: <path>: <reason>; ... (and K more)", or "" if none.
void vlm_loader_bad_summary(vlm_loader *L, char *buf, size_t n);
void vlm_loader_free(vlm_loader *L);

#endif
