// Collectives for data-parallel training (see dist.h): MPI non-blocking calls
// polled against a deadline, or single-process stand-ins.
#include "core/dist.h"
#include "core/clock.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef VLM_HAVE_MPI
#include <mpi.h>
#endif

#ifdef VLM_HAVE_MPI
#endif

int vlm_dist_compiled(void) {
#ifdef VLM_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

// Launchers export their world size: Open MPI's mpirun, PMI (MPICH, Slurm's srun).
static int launched_world(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(keys[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

static void defaults(vlm_dist *d) {
    memset(d, 0, sizeof *d);
    d->world = 1;
    d->timeout_s = 300;
    d->bucket_elems = 4 << 20;
}

vlm_status vlm_dist_init(vlm_dist *d, int *argc, char ***argv, vlm_error *err) {
    defaults(d);
    int w = launched_world();
#ifdef VLM_HAVE_MPI
    if (w <= 0) return VLM_OK; // a plain run: no MPI at all
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return vlm_errorf(err, VLM_ERR_COMM, "MPI_Init failed (launcher reports world size %d)", w);
    d->mpi = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    return VLM_OK;
#else
    (void)argc;
    (void)argv;
    if (w > 1)
        return vlm_errorf(err, VLM_ERR_ARG,
                          "started by an MPI launcher with %d processes, but this vlm was built without MPI "
                          "(rebuild with cmake -DVLM_MPI=ON)", w);
    return VLM_OK;
#endif
}

#define MAX_PENDING 256 // buckets in flight (a 605 MB ViT-B-32 gradient is 38 of 16 MB)

#ifndef VLM_HAVE_MPI
// Collectives with a world > 1 in an MPI-free build cannot happen (init refuses
// such launches); this names the misuse if a caller fakes a world size.
static vlm_status no_mpi(const vlm_dist *d, vlm_error *err) {
    return vlm_errorf(err, VLM_ERR_STATE, "dist: world %d without MPI", d->world);
}
#endif

void vlm_dist_free(vlm_dist *d) {
#ifdef VLM_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    free(d->pending);
    d->pending = NULL;
    d->n_pending = 0;
    d->mpi = 0;
}

void vlm_dist_abort(vlm_dist *d, int code) {
#ifdef VLM_HAVE_MPI
    if (d->mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)d;
    (void)code;
}

#ifdef VLM_HAVE_MPI
// Polls one request until done or past the deadline. Spins briefly (a
// collective between busy ranks usually completes within microseconds), then
// sleeps 50 us between polls so a rank waiting for a slow peer yields its core.
static vlm_status wait_req(vlm_dist *d, MPI_Request *rq, const char *what, double t0, vlm_error *err) {
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            return vlm_errorf(err, VLM_ERR_COMM, "rank %d of %d: %s failed: %s", d->rank, d->world, what, msg);
        }
        if (done) return VLM_OK;
        double el = vlm_now() - t0;
        if (el > d->timeout_s)
            return vlm_errorf(err, VLM_ERR_COMM,
                              "rank %d of %d: %s did not complete within %.0f s: another rank died or hangs "
                              "(--dist-timeout sets the limit)", d->rank, d->world, what, d->timeout_s);
        if (spins > 2000) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

// The tail of every single-request collective: the start call's status, the
// polled wait, the accounting.
static vlm_status finish(vlm_dist *d, int rc, MPI_Request *rq, const char *call, const char *what, double t0,
                         int64_t bytes, vlm_error *err) {
    if (rc != MPI_SUCCESS) return vlm_errorf(err, VLM_ERR_COMM, "rank %d of %d: %s: %s failed", d->rank, d->world, what, call);
    if (wait_req(d, rq, what, t0, err)) return err->status;
    d->comm_s += vlm_now() - t0;
    d->comm_bytes += bytes;
    return VLM_OK;
}
#endif

// Blocking form: the buckets go out back to back (transfers of one overlap the
// reductions of the next), then everything in flight is completed.
vlm_status vlm_dist_allreduce_f32(vlm_dist *d, float *buf, int64_t n, const char *what, vlm_error *err) {
    if (vlm_dist_iallreduce_f32(d, buf, n, what, err)) return err->status;
    return vlm_dist_wait(d, what, err);
}

vlm_status vlm_dist_iallreduce_f32(vlm_dist *d, float *buf, int64_t n, const char *what, vlm_error *err) {
    if (d->world <= 1 || n <= 0) return VLM_OK;
#ifdef VLM_HAVE_MPI
    if (!d->pending && !(d->pending = malloc(sizeof(MPI_Request) * MAX_PENDING)))
        return vlm_errorf(err, VLM_ERR_OOM, "%s: out of memory for requests", what);
    MPI_Request *rq = d->pending;
    int64_t chunk = d->bucket_elems > 0 && d->bucket_elems < INT_MAX ? d->bucket_elems : INT_MAX / 4;
    double t0 = vlm_now();
    for (int64_t off = 0; off < n; off += chunk) {
        if (d->n_pending == MAX_PENDING)
            return vlm_errorf(err, VLM_ERR_ARG, "%s: more than %d buckets in flight (raise the bucket size)", what, MAX_PENDING);
        int64_t len = n - off < chunk ? n - off : chunk;
        if (MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq[d->n_pending]) !=
            MPI_SUCCESS)
            return vlm_errorf(err, VLM_ERR_COMM, "rank %d of %d: %s: MPI_Iallreduce failed", d->rank, d->world, what);
        d->n_pending++;
    }
    d->comm_s += vlm_now() - t0;
    d->comm_bytes += n * (int64_t)sizeof(float);
    return VLM_OK;
#else
    (void)buf; (void)what;
    return no_mpi(d, err);
#endif
}

void vlm_dist_progress(vlm_dist *d) {
#ifdef VLM_HAVE_MPI
    if (d->n_pending) {
        int flag;
        MPI_Testall(d->n_pending, d->pending, &flag, MPI_STATUSES_IGNORE);
    }
#endif
    (void)d;
}

vlm_status vlm_dist_wait(vlm_dist *d, const char *what, vlm_error *err) {
    if (!d->n_pending) return VLM_OK;
#ifdef VLM_HAVE_MPI
    double t0 = vlm_now();
    MPI_Request *rq = d->pending;
    for (int i = 0; i < d->n_pending; i++)
        if (wait_req(d, &rq[i], what, t0, err)) return err->status;
    d->n_pending = 0;
    d->comm_s += vlm_now() - t0;
    return VLM_OK;
#else
    (void)what;
    return no_mpi(d, err);
#endif
}

vlm_status vlm_dist_allreduce_f64(vlm_dist *d, double *buf, int n, const char *what, vlm_error *err) {
    if (d->world <= 1 || n <= 0) return VLM_OK;
#ifdef VLM_HAVE_MPI
    double t0 = vlm_now();
    MPI_Request rq;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &rq);
    return finish(d, rc, &rq, "MPI_Iallreduce", what, t0, n * (int64_t)sizeof(double), err);
#else
    (void)buf; (void)what;
    return no_mpi(d, err);
#endif
}

vlm_status vlm_dist_reduce_scatter_f32(vlm_dist *d, const float *send, float *recv, int64_t n, const char *what,
                                       vlm_error *err) {
    if (d->world <= 1) {
        if (n > 0 && recv != send) memmove(recv, send, sizeof(float) * (size_t)n);
        return VLM_OK;
    }
#ifdef VLM_HAVE_MPI
    if (n > INT_MAX) return vlm_errorf(err, VLM_ERR_ARG, "%s: %lld floats per rank exceed MPI's count limit", what, (long long)n);
    double t0 = vlm_now();
    MPI_Request rq;
    int rc = MPI_Ireduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq);
    return finish(d, rc, &rq, "MPI_Ireduce_scatter_block", what, t0, n * d->world * (int64_t)sizeof(float), err);
#else
    (void)what;
    return no_mpi(d, err);
#endif
}

vlm_status vlm_dist_allgather(vlm_dist *d, const void *send, int64_t bytes, void *recv, const char *what, vlm_error *err) {
    if (d->world <= 1) {
        if (bytes > 0 && recv != send) memmove(recv, send, (size_t)bytes);
        return VLM_OK;
    }
#ifdef VLM_HAVE_MPI
    if (bytes > INT_MAX)
        return vlm_errorf(err, VLM_ERR_ARG, "%s: %lld bytes per rank exceed MPI's count limit", what, (long long)bytes);
    double t0 = vlm_now();
    MPI_Request rq;
    int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &rq);
    return finish(d, rc, &rq, "MPI_Iallgather", what, t0, bytes, err);
#else
    (void)what;
    return no_mpi(d, err);
#endif
}

vlm_status vlm_dist_bcast(vlm_dist *d, void *buf, int64_t bytes, int root, const char *what, vlm_error *err) {
    if (d->world <= 1 || bytes <= 0) return VLM_OK;
#ifdef VLM_HAVE_MPI
    double t0 = vlm_now();
    for (int64_t off = 0; off < bytes; off += 1 << 30) {
        int len = (int)(bytes - off < (1 << 30) ? bytes - off : (1 << 30));
        MPI_Request rq;
        int rc = MPI_Ibcast((char *)buf + off, len, MPI_BYTE, root, MPI_COMM_WORLD, &rq);
        if (finish(d, rc, &rq, "MPI_Ibcast", what, t0, 0, err)) return err->status;
        t0 = vlm_now();
    }
    return VLM_OK;
#else
    (void)buf; (void)root; (void)what;
    return no_mpi(d, err);
#endif
}

vlm_status vlm_dist_barrier(vlm_dist *d, const char *what, vlm_error *err) {
    if (d->world <= 1) return VLM_OK;
#ifdef VLM_HAVE_MPI
    double t0 = vlm_now();
    MPI_Request rq;
    return finish(d, MPI_Ibarrier(MPI_COMM_WORLD, &rq), &rq, "MPI_Ibarrier", what, t0, 0, err);
#else
    (void)what;
    return no_mpi(d, err);
#endif
}
