// Helpers shared by the training/eval subcommands: option parsing, run
// folders, tokenizer setup, batched encoding and timing.
#ifndef VLM_CLI_TRAIN_COMMON_H
#define VLM_CLI_TRAIN_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include "core/dist.h"
#include "core/error.h"
#include "data/dataset.h"
#include "fusion/clip.h"
#include "text/tokenizer.h"

double cli_now(void);
// Parses a number option value; on error fills err naming the flag.
int cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out, vlm_error *err);
int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out, vlm_error *err);
// mkdir -p
vlm_status cli_mkdirs(const char *path, vlm_error *err);
int cli_file_exists(const char *path);
// Reads a merges file (plain or .gz) into a malloc'd NUL-terminated string.
vlm_status cli_read_merges(const char *path, char **text, vlm_error *err);
// Builds the tokenizer from merges text.
vlm_status cli_tokenizer_from_text(vlm_tokenizer *tok, const char *text, vlm_error *err);
// "R,G,B" -> composite transparent pixels over that colour (default: drop alpha, as PIL).
int cli_parse_composite(const char *s, vlm_decode_opts *o, vlm_error *err);
// A training run's folder LOGS/NAME: checkpoints/ (the latest model and
// training state, written atomically), metrics.jsonl, and the state --resume
// names ("" for a fresh run).
typedef struct {
    char dir[1024], ckdir[1100], model[1300], state[1300], metrics[1200], resume[1300];
} cli_run;
// Fills the paths; on the writing rank (io) creates checkpoints/ and removes
// the temp files a killed run left there; resolves --resume (NULL: a fresh
// run, "latest": this run's state, else a state file), which must exist.
vlm_status cli_run_init(cli_run *r, const char *logs, const char *name, const char *resume, int io, vlm_error *err);
// Opens metrics.jsonl: appended to when resuming, truncated otherwise.
vlm_status cli_run_open_metrics(const cli_run *r, FILE **f, vlm_error *err);
// "1h02m" / "3m05s" / "12s"
void cli_fmt_duration(double s, char *buf, int n);

// ---- data-parallel runs (mpirun; see core/dist.h) ----
// The process's communication context, set up by main() before any command
// (a world of 1 unless launched by mpirun with an MPI build).
vlm_dist *cli_dist(void);
// Overlap of communication with backward for a model whose parameters
// [0, early) receive their last gradient before the rest (CLIP's text tower,
// registered first, encoded after the image tower): set `boundary` to the tape
// before the early part's forward (c->tape) each step and install
// cli_grad_overlap_hook as the context's backward hook; when backward reaches
// the boundary the prefix's allreduce starts and runs while the remaining
// backward computes.
typedef struct {
    vlm_dist *d;
    vlm_params *ps;
    int64_t early;          // floats in the prefix
    const void *boundary;   // the node before the early part's first node
    int started;            // this step's prefix reduction is in flight
    vlm_status st;
    vlm_error err;
} cli_grad_overlap;
void cli_grad_overlap_hook(void *user, const vlm_node *next);
// Every rank starts from rank 0's parameters.
vlm_status cli_dist_sync_params(vlm_dist *d, vlm_params *ps, vlm_error *err);
// The end of a data-parallel step, after backward: the global batch's
// gradient (ps->grad summed over ranks by a bucketed allreduce, divided by the
// world size, since each rank's loss is a mean over its own equal share of the
// batch; reduced_prefix: the first floats whose allreduce a cli_grad_overlap
// already started during backward, 0 if none), then one small allreduce on which every
// rank agrees: *loss (in: this rank's) becomes the mean over ranks, *stop (in:
// this rank's wish, a signal or its own stop condition) is set everywhere if
// any rank set it, and *elapsed (out) is rank 0's seconds since t_start, so
// time budgets and time-based schedules cannot differ between ranks. A world
// of 1: the gradient and loss unchanged, *elapsed this process's clock.
vlm_status cli_dist_step_end(vlm_dist *d, vlm_params *ps, int64_t reduced_prefix, double t_start, double *loss,
                             int *stop, double *elapsed, vlm_error *err);
// A resumed state must fit this world: the same global batch (per-rank batch
// x world size; older files record none) and a stream position every rank
// can start from (a multiple of the world size).
vlm_status cli_dist_check_resume(const vlm_dist *d, int64_t global_batch_saved, int64_t loader_index,
                                 int64_t per_rank_batch, const char *path, vlm_error *err);
// The options every data-parallel trainer takes: --dist-timeout S (seconds a
// rank waits for the others before the job stops, default 300) and
// --debug-fault hang|exit:RANK:STEP (tests of failure handling: that rank
// hangs or dies at the start of that step).
typedef struct {
    double timeout_s;
    int fault_kind; // 0 none, 1 hang, 2 exit
    int fault_rank;
    long long fault_step;
} cli_dist_opts;
void cli_dist_opts_default(cli_dist_opts *o);
// 1: `a` was one of these options (its value v consumed), 0: it was not, -1:
// a missing or bad value (err names the flag).
int cli_dist_parse_opt(const char *a, const char *v, cli_dist_opts *o, vlm_error *err);
// The process's context (cli_dist()) with the options' timeout applied.
vlm_dist *cli_dist_setup(const cli_dist_opts *o);
// At the start of `step`: the requested fault, if it is this rank's and step
// (a hung rank never reaches its next collective; a dead one exits with 9).
void cli_dist_fault(const cli_dist_opts *o, const vlm_dist *d, long long step);

#endif
