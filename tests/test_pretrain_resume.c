// `vlm pretrain` resume: (1) a run stopped at a step and resumed reproduces
// the uninterrupted run bit for bit (losses, final weights and AdamW state),
// the resumed process starting at the saved step (every step logged exactly
// once across the two); (2) a run killed with SIGKILL at a random moment
// before its last step leaves only intact checkpoint files, resumes from the
// last one (losing at most the steps since it) and finishes with the same
// losses and byte-identical weights. Uses a small PNG manifest written here
// and a micro model config.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include "core/safetensors.h"
#include "data/image.h"
#include "tests/testutil.h"

#define DIRN "pretrain_resume_data"
#define LOGS "pretrain_resume_logs"


static int run(const char *name, const char *extra, int kill_after_ckpt) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/vlm pretrain --train-data " DIRN "/train.tsv --model %s --batch-size 16 --epochs 2 --warmup 4 "
             "--log-every 1 --save-every-steps 3 --workers 2 --logs " LOGS " --name %s %s",
             VLM_BINARY_DIR, tu_src("tests/fixtures/models/micro.json"), name, extra);
    if (!kill_after_ckpt) {
        char full[2200];
        snprintf(full, sizeof full, "%s >/dev/null 2>>" LOGS "/stderr.txt", cmd);
        return system(full);
    }
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen(LOGS "/stderr.txt", "a", stderr);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    // Kill at a random moment between the first checkpoint (step 3) and the
    // last step: wait until a random step in [4, 28] is logged, then up to
    // 20 ms more. The test checks afterwards that the kill did land early.
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int target = 4 + (int)(ts.tv_nsec / 1000 % 25), seq[256];
    char metrics[512];
    snprintf(metrics, sizeof metrics, LOGS "/%s/metrics.jsonl", name);
    for (int i = 0; i < 120000; i++) { // up to 2 min under sanitizers
        int n = tu_read_step_seq(metrics, seq, 256);
        if (n > 0 && seq[n - 1] >= target) break;
        usleep(1000);
    }
    usleep((useconds_t)(ts.tv_nsec % 20000));
    kill(pid, SIGKILL);
    kill(-pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    system("pkill -9 -f 'vlm pretrain --train-data " DIRN "' 2>/dev/null");
    return 0;
}


// allow_tmp: a run killed mid-write may leave its temp file (never the real one);
// the next run removes it.
static void check_ckpts_intact(const char *name, int allow_tmp) {
    char d[512];
    snprintf(d, sizeof d, LOGS "/%s/checkpoints", name);
    DIR *dir = opendir(d);
    struct dirent *e;
    int n = 0;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        CHECK(allow_tmp || !strstr(e->d_name, ".tmp."), "%s: stale temp file %s", name, e->d_name);
        if (strstr(e->d_name, ".tmp.")) continue;
        vlm_st_file f;
        vlm_error err;
        CHECK(vlm_st_read(&f, p, &err) == VLM_OK, "corrupt checkpoint %s: %s", p, err.msg);
        vlm_st_free(&f);
        n++;
    }
    if (dir) closedir(dir);
    CHECK(n >= 2, "%s: expected checkpoint files, found %d", name, n);
}

static int read_losses(const char *name, double *loss, int cap) {
    char p[512];
    snprintf(p, sizeof p, LOGS "/%s/metrics.jsonl", name);
    return tu_read_losses(p, loss, cap);
}

// Every logged step reports the share of its time spent waiting for the loader.
static void check_data_wait(const char *name, int steps) {
    char p[512], line[4096];
    snprintf(p, sizeof p, LOGS "/%s/metrics.jsonl", name);
    FILE *f = fopen(p, "r");
    CHECK(f != NULL, "cannot open %s", p);
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *w = strstr(line, "\"data_wait\": ");
        if (!strstr(line, "\"loss\"")) continue; // validation records
        CHECK(w != NULL, "%s: a step without data_wait: %s", p, line);
        double v = w ? atof(w + 13) : -1;
        CHECK(v >= 0 && v <= 1, "%s: data_wait %g outside [0, 1]", p, v);
        n++;
    }
    if (f) fclose(f);
    CHECK(n == steps, "%s: %d steps with data_wait, expected %d", p, n, steps);
}

static void check_steps(const char *name, int resumed_from, int last) { tu_check_steps(LOGS, name, resumed_from, last); }
static void check_same_weights(const char *a, const char *b) { tu_check_same_final(LOGS, a, b); }
static int64_t state_step(const char *name) { return tu_state_step(LOGS, name); }

int main(void) {
    system("rm -rf " LOGS " " DIRN);
    mkdir(LOGS, 0755);
    tu_make_squares(DIRN, 256, 0);
    double full[64] = {0}, res[64] = {0}, killed[64] = {0};
    CHECK(run("full", "", 0) == 0, "uninterrupted run failed (see " LOGS "/stderr.txt)");
    int nfull = read_losses("full", full, 64);
    CHECK(nfull == 32, "uninterrupted run logged %d steps, expected 32", nfull);
    check_steps("full", -1, 32);
    check_data_wait("full", 32);
    // Stop at step 11 (mid-epoch, between checkpoints) and resume.
    CHECK(run("stopped", "--stop-at-step 11", 0) == 0, "stopped run failed");
    int64_t st_step = state_step("stopped");
    CHECK(st_step == 11, "stopped run saved its state at step %lld, not 11", (long long)st_step);
    CHECK(run("stopped", "--resume latest", 0) == 0, "resumed run failed");
    int nres = read_losses("stopped", res, 64);
    int same = nres == nfull;
    for (int s = 1; s <= nfull; s++) same &= res[s] == full[s];
    CHECK(same, "resumed loss curve differs from the uninterrupted one");
    // every step logged once across the two processes, the second starting at 12
    check_steps("stopped", 11, 32);
    check_same_weights("full", "stopped");
    // SIGKILL at a random moment, then resume.
    run("killed", "", 1);
    check_ckpts_intact("killed", 1);
    int64_t ck_step = state_step("killed");
    int logged = read_losses("killed", killed, 64);
    CHECK(logged < nfull, "the SIGKILL landed after the last step (%d logged): nothing was interrupted", logged);
    CHECK(ck_step >= 3, "no usable checkpoint after the kill (step %lld)", (long long)ck_step);
    CHECK(logged - ck_step < 3 + 1, "lost %lld steps, more than the checkpoint interval", (long long)(logged - ck_step));
    printf("killed after step %d; last checkpoint at step %lld\n", logged, (long long)ck_step);
    CHECK(run("killed", "--resume latest", 0) == 0, "resume after SIGKILL failed");
    int nk = read_losses("killed", killed, 64);
    same = nk == nfull;
    for (int s = 1; s <= nfull; s++) same &= killed[s] == full[s];
    CHECK(same, "loss curve after SIGKILL + resume differs from the uninterrupted one");
    check_steps("killed", (int)ck_step, 32);
    check_same_weights("full", "killed");
    check_ckpts_intact("killed", 0);
    return tu_done("test_pretrain_resume");
}
