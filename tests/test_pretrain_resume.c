// `vlm pretrain` resume: (1) a run stopped at a step and resumed reproduces
// the uninterrupted run's loss curve bit for bit; (2) a run killed with
// SIGKILL at a random moment leaves only intact checkpoint files, resumes from
// the last one (losing at most the steps since it) and finishes with the same
// losses. Uses a small PNG manifest written here and a micro model config.
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
    // Wait for the first checkpoint, then kill at a random moment after it.
    char state[512];
    snprintf(state, sizeof state, LOGS "/%s/checkpoints/epoch_latest.state.safetensors", name);
    struct stat sb;
    for (int i = 0; i < 60000 && stat(state, &sb); i++) usleep(2000); // up to 2 min under sanitizers
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    usleep((useconds_t)(ts.tv_nsec % 700000));
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

int main(void) {
    system("rm -rf " LOGS " " DIRN);
    mkdir(LOGS, 0755);
    tu_make_squares(DIRN, 256, 0);
    double full[64] = {0}, res[64] = {0}, killed[64] = {0};
    CHECK(run("full", "", 0) == 0, "uninterrupted run failed (see " LOGS "/stderr.txt)");
    int nfull = read_losses("full", full, 64);
    CHECK(nfull == 32, "uninterrupted run logged %d steps, expected 32", nfull);
    // Stop at step 11 (mid-epoch, between checkpoints) and resume.
    CHECK(run("stopped", "--stop-at-step 11", 0) == 0, "stopped run failed");
    CHECK(run("stopped", "--resume latest", 0) == 0, "resumed run failed");
    int nres = read_losses("stopped", res, 64);
    int same = nres == nfull;
    for (int s = 1; s <= nfull; s++) same &= res[s] == full[s];
    CHECK(same, "resumed loss curve differs from the uninterrupted one");
    // SIGKILL at a random moment, then resume.
    run("killed", "", 1);
    check_ckpts_intact("killed", 1);
    vlm_st_file st;
    vlm_error err;
    int64_t ck_step = -1;
    if (vlm_st_read(&st, LOGS "/killed/checkpoints/epoch_latest.state.safetensors", &err) == VLM_OK) {
        ck_step = atoll(vlm_st_meta(&st, "step"));
        vlm_st_free(&st);
    }
    int logged = read_losses("killed", killed, 64);
    CHECK(ck_step >= 3, "no usable checkpoint after the kill (step %lld)", (long long)ck_step);
    CHECK(logged - ck_step < 3 + 1, "lost %lld steps, more than the checkpoint interval", (long long)(logged - ck_step));
    printf("killed after step %d; last checkpoint at step %lld\n", logged, (long long)ck_step);
    CHECK(run("killed", "--resume latest", 0) == 0, "resume after SIGKILL failed");
    int nk = read_losses("killed", killed, 64);
    same = nk == nfull;
    for (int s = 1; s <= nfull; s++) same &= killed[s] == full[s];
    CHECK(same, "loss curve after SIGKILL + resume differs from the uninterrupted one");
    check_ckpts_intact("killed", 0);
    return tu_done("test_pretrain_resume");
}
