// Data-parallel communication between processes: MPI when built with
// -DVLM_MPI=ON and launched by mpirun, a single-process stand-in otherwise
// (rank 0 of 1; every collective is a copy or a no-op). Every collective is
// non-blocking underneath and polled against a deadline, so a rank that died
// or hangs turns into an error naming the collective instead of a hang.
#ifndef VLM_CORE_DIST_H
#define VLM_CORE_DIST_H

#include <stdint.h>
#include "core/error.h"

typedef struct vlm_dist {
    int rank, world;        // this process, number of processes
    int mpi;                // 1 when MPI was initialised here (launched by mpirun)
    double timeout_s;       // a collective still incomplete after this long fails (default 300)
    int64_t bucket_elems;   // gradient allreduce bucket in floats (default 4M floats = 16 MB)
    double comm_s;          // wall time spent inside collectives since init
    int64_t comm_bytes;     // payload bytes this rank contributed to collectives
    void *pending;          // in-flight non-blocking allreduces (dist.c)
    int n_pending;
} vlm_dist;

// 1 if this build can talk MPI.
int vlm_dist_compiled(void);
// Initialises MPI when the process was started by mpirun (Open MPI's or a
// PMI launcher's environment); otherwise a world of 1 without touching MPI.
// A launch under mpirun with an MPI-free build is an error (every rank would
// train alone on the whole data).
vlm_status vlm_dist_init(vlm_dist *d, int *argc, char ***argv, vlm_error *err);
// MPI_Finalize (after a clean run).
void vlm_dist_free(vlm_dist *d);
// Stops every rank of the job (MPI_Abort) after a fatal error; no-op without MPI.
void vlm_dist_abort(vlm_dist *d, int code);

// In-place sum over ranks of n floats, in buckets of d->bucket_elems; also
// completes any allreduce started with vlm_dist_iallreduce_f32.
vlm_status vlm_dist_allreduce_f32(vlm_dist *d, float *buf, int64_t n, const char *what, vlm_error *err);
// Overlap: starts an in-place sum over ranks of n floats (in buckets) and
// returns at once; vlm_dist_progress lets MPI move it along (call it between
// pieces of work), vlm_dist_wait completes every started one. buf must not be
// touched until then.
vlm_status vlm_dist_iallreduce_f32(vlm_dist *d, float *buf, int64_t n, const char *what, vlm_error *err);
void vlm_dist_progress(vlm_dist *d);
vlm_status vlm_dist_wait(vlm_dist *d, const char *what, vlm_error *err);
// In-place sum over ranks of n doubles (small control vectors).
vlm_status vlm_dist_allreduce_f64(vlm_dist *d, double *buf, int n, const char *what, vlm_error *err);
// recv[0..n) = sum over ranks of their send[rank * n .. (rank+1) * n)
// (send holds world * n floats): the backward of an all-gather.
vlm_status vlm_dist_reduce_scatter_f32(vlm_dist *d, const float *send, float *recv, int64_t n, const char *what,
                                       vlm_error *err);
// recv[r * bytes .. (r+1) * bytes) = rank r's send (rank order).
vlm_status vlm_dist_allgather(vlm_dist *d, const void *send, int64_t bytes, void *recv, const char *what, vlm_error *err);
// Every rank's buf becomes root's.
vlm_status vlm_dist_bcast(vlm_dist *d, void *buf, int64_t bytes, int root, const char *what, vlm_error *err);
vlm_status vlm_dist_barrier(vlm_dist *d, const char *what, vlm_error *err);

#endif
