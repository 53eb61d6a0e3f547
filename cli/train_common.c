// Shared CLI helpers for training and evaluation (see train_common.h).
#include "cli/train_common.h"
#include "core/clock.h"
#include <signal.h>
#include "cli/cli.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}





void cli_dist_opts_default(cli_dist_opts *o) {
    memset(o, 0, sizeof *o);
    o->timeout_s = 300;
}

// ---- a trainer on this terminal ----
static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int g_progress_open = 0; // a progress line without its newline yet (a terminal)

static void log_line(void *user, int progress, const char *line) {
    (void)user;
    const int tty = isatty(2);
    if (progress) {
        fprintf(stderr, "%s%s%s", tty ? "\r" : "", line, tty ? "   " : "\n");
        g_progress_open = tty;
        return;
    }
    cli_progress_end();
    fprintf(stderr, "%s\n", line);
}

void cli_progress_end(void) {
    if (g_progress_open) fputc('\n', stderr);
    g_progress_open = 0;
}

// At the start of `step`: the requested fault, if it is this rank's and step
// (a hung rank never reaches its next collective; a dead one exits with 9).
static void fault_hook(void *user, int64_t step) {
    const cli_dist_opts *o = user;
    const vlm_dist *d = cli_dist();
    if (!o->fault_kind || o->fault_kind == 3 || d->rank != o->fault_rank || step != o->fault_step) return;
    if (o->fault_kind == 2) _exit(9);
    for (;;) sleep(1);
}

void cli_trainer_setup(vlm_train_common *c, cli_dist_opts *d) {
    vlm_dist *D = cli_dist();
    D->timeout_s = d->timeout_s;
    c->dist = D;
    c->log = log_line;
    c->log_user = NULL;
    c->stop_flag = &g_stop;
    c->before_step = fault_hook;
    c->hook_user = d;
    if (d->fault_kind == 3 && D->rank == d->fault_rank) c->debug_nan_after = d->fault_step;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

int cli_train_fail(const char *cmd, const vlm_error *err) {
    cli_progress_end();
    cli_fail(cmd, err);
    return err->status == VLM_ERR_NUMERIC ? 3 : 1;
}
