// Helpers shared by the subcommands: the process's data-parallel context, and the glue
// that connects a trainer (train/trainer.h) to the terminal: its log lines,
// stop signals and the fault-injection hook of the MPI tests.
#ifndef VLM_CLI_TRAIN_COMMON_H
#define VLM_CLI_TRAIN_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include "cli/opts.h"
#include "core/dist.h"
#include "core/error.h"
#include "train/trainer.h"

int cli_file_exists(const char *path);

// ---- data-parallel runs (mpirun; see core/dist.h) ----
// The process's communication context, set up by main() before any command
// (a world of 1 unless launched by mpirun with an MPI build).
vlm_dist *cli_dist(void);
// --dist-timeout 300, no fault.
void cli_dist_opts_default(cli_dist_opts *o);

// Connects a trainer's options to this process: messages and progress lines
// to stderr (progress overwritten in place on a terminal), SIGINT/SIGTERM as
// a clean stop, the --debug-fault hook (the named rank hangs or exits with 9
// at the start of the named step) and the process's data-parallel context
// with the --dist-timeout applied.
void cli_trainer_setup(vlm_train_common *c, cli_dist_opts *d);
// Ends an open progress line (a terminal).
void cli_progress_end(void);
// Exit status of a failed trainer: 3 for a non-finite stop, else 1; prints the error.
int cli_train_fail(const char *cmd, const vlm_error *err);

#endif
