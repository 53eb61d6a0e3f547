// Tiny assertion helpers for CTest executables: a failed check prints where
// and why, and the test exits non-zero at the end.
#ifndef VLM_TESTUTIL_H
#define VLM_TESTUTIL_H

#include <stddef.h>
#include <stdio.h>
#include "fusion/clip.h"

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

// The shared tiny OpenAI CLIP (../shared/reference/openai-clip/tiny.*) built
// into *m, with the small test vocabulary (BPE merges) in *vocab (malloc'd):
// 0, or -1 after a failed CHECK naming the cause (nothing left allocated).
int tu_tiny_clip(vlm_clip *m, char **vocab);

// losses[step] from a training run's metrics.jsonl (a later line for the same
// step wins); returns the largest step seen (0 if none).
int tu_read_losses(const char *metrics_path, double *loss, int cap);
// values[step] of a numeric field ("grad_norm", ...) of metrics.jsonl's
// training lines (a later line for the same step wins); returns the largest
// step seen (0 if none).
int tu_read_metric(const char *metrics_path, const char *key, double *values, int cap);
// The steps of the training lines of metrics.jsonl (lines with "step" and
// "loss") in file order, appended runs included; returns how many (<= cap).
int tu_read_step_seq(const char *metrics_path, int *steps, int cap);
// Checks that seq (n logged steps of a run, then of its resumption, appended)
// is 1..a then (resumed_from + 1)..last, each exactly once, with the second
// process starting where the saved state left off (resumed_from <= a). With
// resumed_from < 0: the run was never interrupted, seq must be 1..last.
// Returns 1 when it is; *why gets a message otherwise.
int tu_steps_resumed(const int *seq, int n, int resumed_from, int last, char *why, size_t cap);
// 1 when the two safetensors files hold the same tensors (names, dtypes,
// shapes) with byte-identical data; *why gets the first difference.
int tu_same_tensors(const char *a, const char *b, char *why, size_t cap);
// For a run folder LOGS/NAME: CHECKs that its metrics log holds steps 1..last
// once each across the processes that wrote it (tu_steps_resumed);
// CHECKs that runs a and b ended with byte-identical weights and training
// state (checkpoints/epoch_latest.safetensors and .state.safetensors); the
// step of its saved training state (-1 if none).
void tu_check_steps(const char *logs, const char *name, int resumed_from, int last);
void tu_check_same_final(const char *logs, const char *a, const char *b);
long long tu_state_step(const char *logs, const char *name);
// The squares of tu_make_squares (n images) as COCO ground truth at path:
// one 8x8 box per image, categories 1..8 named by the colours.
void tu_make_squares_coco(const char *path, int n);
// n 20x20 PNGs DIR/NNN.png (a square of one of 8 colours at one of 10
// positions on grey) and DIR/train.tsv "filepath<TAB>title" with captions
// "a <colour> square"; detailed: captions "a <colour> square at <pos>" and a
// third column "label" (the colour's index 0..7).
void tu_make_squares(const char *dir, int n, int detailed);

#endif
