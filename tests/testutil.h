// Tiny assertion helpers for CTest executables: a failed check prints where
// and why, and the test exits non-zero at the end.
#ifndef VLM_TESTUTIL_H
#define VLM_TESTUTIL_H

#include <stddef.h>
#include <stdio.h>

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        tu_checks++;                                                            \
        if (!(cond)) {                                                          \
            tu_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

// max |a-b| / max(max|b|, floor) over n floats.
double tu_rel_err(const float *a, const float *b, long n, double floor);
double tu_max_abs(const float *a, long n);
// Prints a summary and returns the exit code.
int tu_done(const char *name);
// Whole file, NUL-terminated, malloc'd (NULL if unreadable); *n = its size (n may be NULL).
char *tu_read_file(const char *path, size_t *n);
// Path under the source tree (static buffer rotation of 4).
const char *tu_src(const char *rel);

// losses[step] from a training run's metrics.jsonl (a later line for the same
// step wins); returns the largest step seen (0 if none).
int tu_read_losses(const char *metrics_path, double *loss, int cap);
// n 20x20 PNGs DIR/NNN.png (a square of one of 8 colours at one of 10
// positions on grey) and DIR/train.tsv "filepath<TAB>title" with captions
// "a <colour> square"; detailed: captions "a <colour> square at <pos>" and a
// third column "label" (the colour's index 0..7).
void tu_make_squares(const char *dir, int n, int detailed);

#endif
