// Faults, through the `vlm` binary on small runs:
//  - SIGKILL at random moments (K per trainer; 20 by default, VLM_FAULT_KILLS
//    sets it): pretrain, finetune, generate train, detect train and lm train (mlm) are killed
//    and resumed again and again until they finish; the final weights and training state
//    equal the uninterrupted run's byte for byte, and after every kill each
//    checkpoint file on disk is whole (its CRC-32 checks out);
//  - a non-finite loss injected at step N (--debug-fault nan:0:N): exit 3,
//    the last good state saved (step N) and named, and resuming from it
//    finishes like the uninterrupted run;
//  - a full disk while checkpointing (a file-size limit, RLIMIT_FSIZE, and a
//    16 KB tmpfs when the machine lets us mount one): the run stops with an
//    error naming the file and the cause, the previous checkpoint stays
//    intact, no temp file is left, and resuming later finishes the run;
//  - a truncated or corrupted state on --resume: refused with a message
//    naming the file, nothing trained or logged.
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "core/safetensors.h"
#include "tests/testutil.h"

#define DIRN "faults_data"
#define LOGS "faults_logs"
#define MNT "faults_tmpfs"

static char pre_base[2048], ft_base[2048], gen_base[2048], det_base[2048], lm_base[2048];


// Runs cmd (stdout to /dev/null, stderr appended to LOGS/<name>.err); with
// fsize > 0 under a file-size limit. Returns the exit status (128 + signal).
static int run_limited(const char *cmd, const char *name, long fsize) {
    fflush(NULL); // the child's freopen would flush our buffered output a second time
    pid_t pid = fork();
    if (pid == 0) {
        char err[512];
        snprintf(err, sizeof err, LOGS "/%s.err", name);
        if (!freopen("/dev/null", "w", stdout) || !freopen(err, "a", stderr)) _exit(126);
        if (fsize > 0) {
            struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
            signal(SIGXFSZ, SIG_IGN); // a write past the limit fails with EFBIG instead of killing
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run(const char *base, const char *name, const char *extra) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s --logs " LOGS " --name %s %s", base, name, extra);
    return run_limited(cmd, name, 0);
}

static int file_has(const char *path, const char *needle) {
    char *s = tu_read_file(path, NULL);
    int r = s && strstr(s, needle);
    free(s);
    return r;
}

// Every checkpoint file of the run reads back whole (CRC-32 included); temp
// files (a write the kill interrupted) are allowed when allow_tmp.
static int ckpts_whole(const char *name, int allow_tmp, char *why, size_t cap) {
    char d[512];
    snprintf(d, sizeof d, LOGS "/%s/checkpoints", name);
    DIR *dir = opendir(d);
    struct dirent *e;
    int ok = 1;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        if (strstr(e->d_name, ".tmp.")) {
            if (!allow_tmp) snprintf(why, cap, "temp file %s left", e->d_name), ok = 0;
            continue;
        }
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        vlm_st_file f;
        vlm_error err;
        if (strstr(e->d_name, ".safetensors") && vlm_st_read(&f, p, &err) != VLM_OK) {
            snprintf(why, cap, "%s", err.msg);
            ok = 0;
            continue;
        }
        if (strstr(e->d_name, ".safetensors")) vlm_st_free(&f);
    }
    if (dir) closedir(dir);
    return ok;
}

// Starts `base ... --name name [--resume latest]`, kills it with SIGKILL once
// it has logged a random step between its first and its last (or at a random
// moment when it logs too fast), checks the files, and repeats until a run
// finishes. Returns the number of kills that landed mid-run.
static int kill_loop(const char *base, const char *name, int kills, int last_step) {
    char metrics[512];
    snprintf(metrics, sizeof metrics, LOGS "/%s/metrics.jsonl", name);
    int landed = 0;
    char state[512];
    snprintf(state, sizeof state, LOGS "/%s/checkpoints/epoch_latest.state.safetensors", name);
    for (int round = 0; round <= kills + 50; round++) {
        // resume when a state was saved; a run killed before its first save starts afresh
        struct stat sb;
        const char *resume = stat(state, &sb) == 0 ? "--resume latest" : "";
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec %s --logs " LOGS " --name %s %s", base, name, resume);
        int seq[4096];
        int before = tu_read_step_seq(metrics, seq, 4096), done_before = before ? seq[before - 1] : 0;
        if (landed >= kills) return landed + (run(base, name, resume) != 0) * 1000;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            char err[512];
            snprintf(err, sizeof err, LOGS "/%s.err", name);
            if (!freopen("/dev/null", "w", stdout) || !freopen(err, "a", stderr)) _exit(126);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        // kill within the next 1-3 logged steps (plus up to 5 ms), so the kills spread over the whole run
        int span = last_step - done_before - 1 < 3 ? last_step - done_before - 1 : 3;
        int target = done_before + 1 + (span > 0 ? (int)(ts.tv_nsec / 1000 % span) : 0);
        int st = 0, exited = 0;
        for (int i = 0; i < 120000; i++) { // until the target step is logged (2 min at most)
            if (waitpid(pid, &st, WNOHANG) == pid) {
                exited = 1;
                break;
            }
            int n = tu_read_step_seq(metrics, seq, 4096);
            if (n > before && seq[n - 1] >= target) break;
            usleep(500);
        }
        if (!exited) {
            usleep((useconds_t)(ts.tv_nsec % 5000));
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            int n = tu_read_step_seq(metrics, seq, 4096);
            if (WIFSIGNALED(st) && (n == 0 || seq[n - 1] < last_step)) landed++;
        }
        char why[512] = "";
        if (!ckpts_whole(name, 1, why, sizeof why)) {
            CHECK(0, "%s: after kill %d: %s", name, landed, why);
            return landed;
        }
        if (exited && WIFEXITED(st) && WEXITSTATUS(st) == 0) return landed; // finished before a kill
    }
    return landed;
}

static void test_kills(const char *base, const char *tag, int kills, int last_step) {
    char full[64], killed[64], why[256] = "";
    snprintf(full, sizeof full, "%s-full", tag);
    snprintf(killed, sizeof killed, "%s-killed", tag);
    CHECK(run(base, full, "") == 0, "%s: uninterrupted run failed (see " LOGS "/%s.err)", tag, full);
    int landed = kill_loop(base, killed, kills, last_step);
    CHECK(landed < 1000, "%s: the final resume failed (see " LOGS "/%s.err)", tag, killed);
    landed %= 1000;
    printf("%s: %d SIGKILLs landed before the last step, then resumed to the end\n", tag, landed);
    CHECK(landed >= kills / 2, "%s: only %d of %d kills landed mid-run", tag, landed, kills);
    tu_check_same_final(LOGS, full, killed);
    CHECK(ckpts_whole(killed, 0, why, sizeof why), "%s: %s", tag, why);
}

static void test_nan(void) {
    CHECK(run(pre_base, "nan", "--debug-fault nan:0:7") == 3, "a NaN loss did not stop the run with exit 3");
    CHECK(file_has(LOGS "/nan.err", "loss is NaN/Inf at step 8") &&
              file_has(LOGS "/nan.err", "nan/checkpoints/epoch_latest.state.safetensors") &&
              file_has(LOGS "/nan.err", "saved just now, at step 7"),
          "NaN stop: message (see " LOGS "/nan.err)");
    CHECK(tu_state_step(LOGS, "nan") == 7, "NaN stop: the saved state is at step %lld, not 7", tu_state_step(LOGS, "nan"));
    CHECK(run(pre_base, "nan", "--resume latest") == 0, "resuming after the NaN stop failed");
    tu_check_steps(LOGS, "nan", 7, 40);
    tu_check_same_final(LOGS, "pre-full", "nan");
}

// The checkpoint writes fail on a full disk: the run stops naming the file and
// the cause; the state before stays; no temp file; a later resume finishes.
// fill: after the first part, fill the file system up with a filler file.
static void full_disk_case(const char *name, const char *logs_dir, long fsize, int fill, const char *cause) {
    char cmd[4096], err[512], why[256] = "";
    snprintf(cmd, sizeof cmd, "exec %s --logs %s --name %s --stop-at-step 8", pre_base, logs_dir, name);
    CHECK(run_limited(cmd, name, 0) == 0, "%s: first part failed", name);
    if (fill) {
        char filler[512];
        snprintf(filler, sizeof filler, "%s/filler", logs_dir);
        FILE *fp = fopen(filler, "wb");
        static char block[4096];
        while (fp && fwrite(block, 1, sizeof block, fp) == sizeof block) {}
        if (fp) fclose(fp);
    }
    snprintf(cmd, sizeof cmd, "exec %s --logs %s --name %s --resume latest", pre_base, logs_dir, name);
    int rc = run_limited(cmd, name, fsize);
    snprintf(err, sizeof err, LOGS "/%s.err", name);
    CHECK(rc == 1, "%s: a failed checkpoint write gave exit %d, not 1", name, rc);
    CHECK(file_has(err, "checkpoints/epoch_latest") && file_has(err, cause), "%s: the error names neither the file nor "
          "'%s' (see %s)", name, cause, err);
    char state[512];
    snprintf(state, sizeof state, "%s/%s/checkpoints/epoch_latest.state.safetensors", logs_dir, name);
    vlm_st_file f;
    vlm_error e;
    CHECK(vlm_st_read(&f, state, &e) == VLM_OK && !strcmp(vlm_st_meta(&f, "step"), "8"),
          "%s: the previous state is not intact at step 8: %s", name, e.msg);
    if (f.buf) vlm_st_free(&f);
    char d[512];
    snprintf(d, sizeof d, "%s/%s/checkpoints", logs_dir, name);
    DIR *dir = opendir(d);
    struct dirent *de;
    while (dir && (de = readdir(dir))) CHECK(!strstr(de->d_name, ".tmp."), "%s: temp file %s left", name, de->d_name);
    if (dir) closedir(dir);
    (void)why;
}

static void test_full_disk(void) {
    // (1) file-size limit: any checkpoint write past 4 KB fails with EFBIG
    full_disk_case("fsize", LOGS, 4096, 0, "File too large");
    CHECK(run(pre_base, "fsize", "--resume latest") == 0, "fsize: resuming with room again failed");
    tu_check_same_final(LOGS, "pre-full", "fsize");
    // (2) a real 8 MB tmpfs, filled up after the first part, when this process may
    // mount one (root with CAP_SYS_ADMIN); then room again and the run finishes
    mkdir(MNT, 0755);
    if (mount("tmpfs", MNT, "tmpfs", 0, "size=8m") != 0) {
        printf("full disk: tmpfs skipped (mount not permitted here); the file-size limit case ran\n");
        return;
    }
    full_disk_case("tmpfs", MNT, 0, 1, "No space left on device");
    unlink(MNT "/filler");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s --logs " MNT " --name tmpfs --resume latest", pre_base);
    CHECK(run_limited(cmd, "tmpfs", 0) == 0, "tmpfs: resuming with room again failed");
    char a[512], b[512], why[256];
    snprintf(a, sizeof a, LOGS "/pre-full/checkpoints/epoch_latest.state.safetensors");
    snprintf(b, sizeof b, MNT "/tmpfs/checkpoints/epoch_latest.state.safetensors");
    CHECK(tu_same_tensors(a, b, why, sizeof why), "tmpfs: final state differs from the uninterrupted run: %s", why);
    printf("full disk: a tmpfs filled up mid-run: stopped naming the file, previous state intact, resumed to the end\n");
    umount2(MNT, MNT_DETACH);
}

static void test_bad_state(void) {
    CHECK(run(pre_base, "bad", "--stop-at-step 8") == 0, "bad: first part failed");
    const char *state = LOGS "/bad/checkpoints/epoch_latest.state.safetensors";
    size_t n = 0;
    char *good = tu_read_file(state, &n);
    int seq[256], before = tu_read_step_seq(LOGS "/bad/metrics.jsonl", seq, 256);
    // truncated to half; one byte flipped in the tensors; a header cut short
    for (int k = 0; k < 3 && good; k++) {
        FILE *f = fopen(state, "wb");
        if (k == 0) fwrite(good, 1, n / 2, f);
        if (k == 1) {
            good[n - 100] ^= 0x10;
            fwrite(good, 1, n, f);
            good[n - 100] ^= 0x10;
        }
        if (k == 2) fwrite(good, 1, 20, f);
        fclose(f);
        CHECK(run(pre_base, "bad", "--resume latest") == 1, "bad state %d was not refused", k);
        CHECK(file_has(LOGS "/bad.err", state), "bad state %d: the message does not name the file", k);
        CHECK(k != 1 || file_has(LOGS "/bad.err", "corrupted: the data's CRC-32"), "bad state: no checksum message");
        CHECK(tu_read_step_seq(LOGS "/bad/metrics.jsonl", seq, 256) == before, "bad state %d: the refused run logged steps", k);
    }
    free(good);
}

int main(void) {
    system("rm -rf " LOGS " " DIRN);
    mkdir(LOGS, 0755);
    tu_make_squares(DIRN, 256, 1);
    FILE *f = fopen(DIRN "/classnames.txt", "w");
    fputs("red\ngreen\nblue\nyellow\npurple\ncyan\nwhite\nblack\n", f);
    fclose(f);
    const char *env = getenv("VLM_FAULT_KILLS");
#if defined(__SANITIZE_ADDRESS__)
    int kills = env ? atoi(env) : 5;
#else
    int kills = env ? atoi(env) : 20;
#endif
    const char *micro = tu_src("tests/fixtures/models/micro.json");
    snprintf(pre_base, sizeof pre_base,
             "%s/vlm pretrain --train-data " DIRN "/train.tsv --model %s --batch-size 16 --max-steps 40 --epochs 3 "
             "--warmup 4 --log-every 1 --save-every-steps 2 --workers 2",
             VLM_BINARY_DIR, micro);
    test_kills(pre_base, "pre", kills, 40);
    test_nan();
    test_full_disk();
    test_bad_state();
    snprintf(ft_base, sizeof ft_base,
             "%s/vlm finetune --train-data " DIRN "/train.tsv --clip " LOGS "/pre-full/checkpoints/epoch_latest.safetensors "
             "--classnames " DIRN "/classnames.txt --batch-size 16 --max-steps 40 --epochs 3 --warmup 4 --log-every 1 "
             "--save-every-steps 2 --workers 2",
             VLM_BINARY_DIR);
    test_kills(ft_base, "ft", kills, 40);
    snprintf(gen_base, sizeof gen_base,
             "%s/vlm generate train --clip " LOGS "/pre-full/checkpoints/epoch_latest.safetensors --train-data " DIRN
             "/train.tsv --classnames " DIRN "/classnames.txt --template 'a {} square' --image-size 8 --patch-size 2 "
             "--width 32 --heads 2 --layers 2 --batch-size 16 --max-steps 40 --warmup 4 --log-every 1 --save-every-steps 2 "
             "--grid-n 0",
             VLM_BINARY_DIR);
    test_kills(gen_base, "gen", kills, 40);
    tu_make_squares_coco(DIRN "/det.json", 256);
    snprintf(det_base, sizeof det_base,
             "%s/vlm detect train --clip " LOGS "/pre-full/checkpoints/epoch_latest.safetensors --train-data " DIRN
             "/det.json --batch-size 8 --max-steps 40 --warmup 4 --lr 1e-3 --log-every 1 --save-every-steps 2",
             VLM_BINARY_DIR);
    test_kills(det_base, "det", kills, 40);
    FILE *tf = fopen(DIRN "/text.txt", "w");
    CHECK(tf != NULL, "cannot write " DIRN "/text.txt");
    for (int i = 0; tf && i < 400; i++)
        fprintf(tf, "the %s square is next to the %s one\n", (const char *[]){"red", "green", "blue", "grey"}[i % 4],
                (const char *[]){"big", "small", "round"}[i % 3]);
    if (tf) fclose(tf);
    snprintf(lm_base, sizeof lm_base,
             "%s/vlm lm train --train-data " DIRN "/text.txt --objective mlm --model micro --context 16 --vocab-size 600 "
             "--batch-size 8 --max-steps 40 --warmup 4 --log-every 1 --save-every-steps 2",
             VLM_BINARY_DIR);
    test_kills(lm_base, "lm", kills, 40);
    if (!tu_failures && system("rm -rf " LOGS " " DIRN " " MNT) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_faults");
}
