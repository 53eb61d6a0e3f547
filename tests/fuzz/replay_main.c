// Replays fuzz inputs without libFuzzer: every file in the directories given
// (the committed seed corpus and tests/fuzz/repro/NAME, the inputs of crashes
// found and fixed) through the harness's LLVMFuzzerTestOneInput, in the
// regular test suite (and under its sanitizer build).
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static int replay_dir(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
        if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
            fprintf(stderr, "replay: cannot read %s\n", path);
            exit(1);
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
        count++;
    }
    closedir(dp);
    return count;
}

int main(int argc, char **argv) {
    int total = 0;
    for (int i = 1; i < argc; i++) total += replay_dir(argv[i]);
    printf("%s: %d inputs replayed\n", argc > 0 ? argv[0] : "replay", total);
    return total > 0 ? 0 : 1;
}
