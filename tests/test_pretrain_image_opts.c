// `vlm pretrain`'s training-image options on a micro model, 4 steps:
// --patch-dropout changes the first step's loss; with --unmasked-tail 0.5
// (FLIP's unmasked tuning) steps 1-2 equal the plain patch-dropout run and
// steps 3-4 do not (every patch kept); a run stopped at step 2 and resumed
// switches at the same step (the loss curve of the uninterrupted run, bit for
// bit); --grayscale 1 and --hflip 1 each change step 1 (the augmentation
// flags reach the loader); a run started --pretrained from the patch-dropout
// run's model keeps every patch unless it asks for --patch-dropout (the
// weights' config says 0.5: a training choice of that run, not of this one);
// --unmasked-tail without --patch-dropout and an --aug-scale with LO > HI are
// usage errors.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tests/testutil.h"

#define DIRN "pretrain_image_opts_data"
#define LOGS "pretrain_image_opts_logs"

// model: "--model FILE", or "" where --pretrained weights define the model.
static int run_model(const char *name, const char *model, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/vlm pretrain --train-data " DIRN "/train.tsv %s --batch-size 16 --max-steps 4 --warmup 1 "
             "--lr 5e-3 --log-every 1 --workers 1 --logs " LOGS " --name %s %s >/dev/null 2>>" LOGS "/stderr.txt",
             VLM_BINARY_DIR, model, name, extra);
    return system(cmd);
}

static int run(const char *name, const char *extra) {
    char model[1024];
    snprintf(model, sizeof model, "--model %s", tu_src("tests/fixtures/models/micro.json"));
    return run_model(name, model, extra);
}

static int losses(const char *name, double *l) {
    char path[512];
    snprintf(path, sizeof path, LOGS "/%s/metrics.jsonl", name);
    return tu_read_losses(path, l, 8);
}

int main(void) {
    if (system("rm -rf " LOGS " " DIRN) != 0) return 1;
    mkdir(LOGS, 0755);
    tu_make_squares(DIRN, 64, 0);
    double none[8] = {0}, pd[8] = {0}, tail[8] = {0}, res[8] = {0};
    CHECK(run("none", "") == 0 && losses("none", none) == 4, "run without patch dropout");
    CHECK(run("pd", "--patch-dropout 0.5") == 0 && losses("pd", pd) == 4, "run with patch dropout");
    CHECK(run("tail", "--patch-dropout 0.5 --unmasked-tail 0.5") == 0 && losses("tail", tail) == 4, "run with a tail");
    CHECK(pd[1] != none[1], "patch dropout left step 1's loss unchanged (%.9g)", pd[1]);
    CHECK(tail[1] == pd[1] && tail[2] == pd[2], "before the tail: %.9g %.9g against %.9g %.9g", tail[1], tail[2], pd[1],
          pd[2]);
    CHECK(tail[3] != pd[3] && tail[4] != pd[4], "in the tail every patch is kept: step 3 %.9g against %.9g", tail[3], pd[3]);
    CHECK(run("resumed", "--patch-dropout 0.5 --unmasked-tail 0.5 --stop-at-step 2") == 0 &&
              run("resumed", "--patch-dropout 0.5 --unmasked-tail 0.5 --resume latest") == 0,
          "stopped and resumed run");
    CHECK(losses("resumed", res) == 4, "resumed run logged 4 steps");
    int same = 1;
    for (int s = 1; s <= 4; s++) same &= res[s] == tail[s];
    CHECK(same, "resumed: %.9g %.9g %.9g %.9g against %.9g %.9g %.9g %.9g", res[1], res[2], res[3], res[4], tail[1], tail[2],
          tail[3], tail[4]);
    double gray[8] = {0}, flip[8] = {0};
    CHECK(run("gray", "--grayscale 1") == 0 && losses("gray", gray) == 4, "run with --grayscale 1");
    CHECK(run("flip", "--hflip 1") == 0 && losses("flip", flip) == 4, "run with --hflip 1");
    CHECK(gray[1] != none[1] && flip[1] != none[1] && gray[1] != flip[1], "augmentation flags: step 1 %.9g %.9g against %.9g",
          gray[1], flip[1], none[1]);
    double ft0[8] = {0}, ft5[8] = {0};
    const char *pd_model = "--pretrained " LOGS "/pd/checkpoints/epoch_latest.safetensors";
    char a[512];
    snprintf(a, sizeof a, "%s --patch-dropout 0.5", pd_model);
    // No --model: its config would replace the weights' (patch dropout 0 included).
    CHECK(run_model("ft0", "", pd_model) == 0 && losses("ft0", ft0) == 4, "run from the patch-dropout run's model");
    CHECK(run_model("ft5", "", a) == 0 && losses("ft5", ft5) == 4, "the same with --patch-dropout 0.5");
    CHECK(ft0[1] != ft5[1], "--pretrained: the weights' patch dropout was kept (step 1 %.9g both)", ft0[1]);
    // A --model config that names patch_dropout is honoured with --pretrained, as for a new model.
    double ftc[8] = {0};
    FILE *f = fopen(DIRN "/micro_pd.json", "w");
    CHECK(f != NULL, "write " DIRN "/micro_pd.json");
    if (f) {
        fputs("{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 4, \"width\": 32, \"head_width\": 16, "
              "\"layers\": 2, \"patch_dropout\": 0.5}, \"text_cfg\": {\"context_length\": 12, \"vocab_size\": 600, "
              "\"width\": 32, \"heads\": 2, \"layers\": 2}}\n",
              f);
        fclose(f);
    }
    CHECK(run_model("ftc", "--model " DIRN "/micro_pd.json", pd_model) == 0 && losses("ftc", ftc) == 4,
          "run from the weights with a --model config naming patch_dropout 0.5");
    CHECK(ftc[1] != ft0[1], "--pretrained with --model: the config's patch_dropout was dropped (step 1 %.9g both)", ftc[1]);
    CHECK(run("bad", "--unmasked-tail 0.2") >> 8 == 2, "--unmasked-tail without --patch-dropout: usage error");
    CHECK(run("bad", "--aug-scale 0.9,0.5") >> 8 == 2, "--aug-scale LO > HI: usage error");
    if (!tu_failures && system("rm -rf " LOGS " " DIRN) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_pretrain_image_opts");
}
