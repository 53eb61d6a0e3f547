// amp_bf16 training tracks fp32: 200 pretraining steps of a small CLIP on
// generated caption pairs, once in fp32 and once in amp_bf16 from the same
// seed; the logged loss of every 10th step agrees within 2%, and bf16 (the
// weights rounded to bf16 after every update) finishes and keeps them so.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/bf16.h"
#include "core/safetensors.h"
#include "tests/testutil.h"

#define DIRN "amp_train_data"
#define LOGS "amp_train_logs"
#define STEPS 200

static int run(const char *precision) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/vlm pretrain --train-data " DIRN "/train.tsv --model %s --batch-size 64 --max-steps %d --epochs 100 "
             "--warmup 10 --lr 3e-4 --log-every 10 --save-every-steps 1000 --workers 2 --seed 3 --logs " LOGS
             " --name %s --precision %s >/dev/null 2>>" LOGS "/stderr.txt",
             VLM_BINARY_DIR, tu_src("tests/fixtures/models/small.json"), STEPS, precision, precision);
    return system(cmd);
}

int main(void) {
    if (system("rm -rf " LOGS " " DIRN " && mkdir -p " LOGS) != 0) return 1;
    tu_make_squares(DIRN, 512, 1);
    static const char *precs[] = {"fp32", "amp_bf16", "bf16"};
    static double loss[3][STEPS + 2];
    for (int p = 0; p < 3; p++) {
        CHECK(run(precs[p]) == 0, "%s run failed (see " LOGS "/stderr.txt)", precs[p]);
        char path[256];
        snprintf(path, sizeof path, LOGS "/%s/metrics.jsonl", precs[p]);
        int last = tu_read_losses(path, loss[p], STEPS + 2);
        CHECK(last == STEPS, "%s: logged up to step %d", precs[p], last);
    }
    int compared = 0;
    double worst = 0;
    for (int s = 10; s <= STEPS; s += 10) {
        double rel = fabs(loss[1][s] - loss[0][s]) / loss[0][s];
        CHECK(loss[0][s] > 0 && rel <= 0.02, "step %d: amp_bf16 loss %.5f vs fp32 %.5f (%.2f%%)", s, loss[1][s],
              loss[0][s], 100 * rel);
        worst = fmax(worst, rel);
        compared++;
    }
    printf("fp32 loss %.4f -> %.4f; amp_bf16 within %.2f%% at all %d logged steps; bf16 ends at %.4f\n", loss[0][10],
           loss[0][STEPS], 100 * worst, compared, loss[2][STEPS]);
    CHECK(loss[0][STEPS] < 0.8 * loss[0][10], "fp32 learned: %.4f -> %.4f", loss[0][10], loss[0][STEPS]);
    CHECK(worst > 0, "amp_bf16 is not fp32 under another name");
    CHECK(isfinite(loss[2][STEPS]) && loss[2][STEPS] < loss[2][10], "bf16 learned: %.4f -> %.4f", loss[2][10],
          loss[2][STEPS]);
    // bf16: the saved weights are bf16 values
    vlm_st_file f;
    vlm_error err = {0};
    if (vlm_st_read(&f, LOGS "/bf16/checkpoints/epoch_latest.safetensors", &err) == VLM_OK) {
        long bad = 0, n = 0;
        for (int i = 0; i < f.n; i++) {
            const vlm_st_entry *e = &f.entries[i];
            if (e->dtype != VLM_F32) continue;
            float v;
            for (int64_t j = 0; j < e->numel; j++, n++) {
                memcpy(&v, (const char *)vlm_st_data(&f, e) + 4 * j, 4);
                bad += vlm_bf16_to_f32(vlm_f32_to_bf16(v)) != v;
            }
        }
        CHECK(n > 1000 && bad == 0, "bf16 checkpoint: %ld of %ld weights not bf16 values", bad, n);
        vlm_st_free(&f);
    } else {
        CHECK(0, "bf16 checkpoint: %s", err.msg);
    }
    if (!tu_failures && system("rm -rf " LOGS " " DIRN) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_amp_train");
}
