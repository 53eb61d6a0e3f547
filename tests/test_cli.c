// The `vlm` command line as a user meets it (cli/opts.c): every command's
// --help on stdout with exit 0; usage errors (unknown flag, missing or bad
// value, missing required flag, stray argument) exit 2 with a message naming
// the flag; --flag=value and --flag value alike; old spellings work with a
// note; --json leaves exactly one line on stdout; --version. And the data,
// preprocess, tokenize and bpe commands end to end on a tiny generated set.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/cpu.h"
#include "core/safetensors.h"
#include "testutil.h"

#define DIRN "/tmp/vlm_test_cli"

static char out_buf[1 << 16], err_buf[1 << 16];

// Runs `vlm ARGS`, capturing stdout and stderr; returns the exit status.
static int vlm(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/vlm %s >" DIRN "/out.txt 2>" DIRN "/err.txt", VLM_BINARY_DIR, args);
    int rc = system(cmd);
    char *o = tu_read_file(DIRN "/out.txt", NULL), *e = tu_read_file(DIRN "/err.txt", NULL);
    snprintf(out_buf, sizeof out_buf, "%s", o ? o : "");
    snprintf(err_buf, sizeof err_buf, "%s", e ? e : "");
    free(o);
    free(e);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// Every command and subcommand answers --help on stdout and rejects an
// unknown flag with exit 2.
static void test_help_and_unknown(void) {
    static const char *cmds[] = {"pretrain", "finetune", "zeroshot", "linprobe", "detect eval", "detect train",
                                 "detect predict", "generate train", "generate sample", "generate eval", "data stats",
                                 "data preview", "data convert", "data bench", "data scenes", "preprocess",
                                 "tokenize", "bpe train", "bench", "bench ops", "clip-step", "convert"};
    char a[256];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(a, sizeof a, "%s --help", cmds[i]);
        CHECK(vlm(a) == 0 && strstr(out_buf, "usage: vlm "), "%s --help: exit 0 and usage on stdout (%s)", cmds[i],
              err_buf);
        snprintf(a, sizeof a, "%s --no-such-flag 1", cmds[i]);
        CHECK(vlm(a) == 2 && strstr(err_buf, "--no-such-flag"), "%s: unknown flag exits 2 naming it: %s", cmds[i],
              err_buf);
    }
    CHECK(vlm("frobnicate") == 2, "unknown command exits 2");
    CHECK(vlm("data frobnicate") == 2 && vlm("detect frobnicate") == 2 && vlm("generate frobnicate") == 2 &&
              vlm("bpe frobnicate") == 2,
          "unknown subcommand exits 2");
    CHECK(vlm("") == 2 && strstr(err_buf, "usage: vlm <command>"), "no command: usage, exit 2");
    CHECK(vlm("--version") == 0 && !strncmp(out_buf, "vlm ", 4) && strstr(out_buf, "git ") && strstr(out_buf, "cpu:"),
          "--version: %s", out_buf);
}

// Values: both spellings, bad values, missing values and required flags.
static void test_values(void) {
    CHECK(vlm("bench ops --reps=0") == 2 && strstr(err_buf, "--reps") && strstr(err_buf, "'0'"),
          "--reps=0 out of range: %s", err_buf);
    CHECK(vlm("bench ops --reps") == 2 && strstr(err_buf, "--reps needs a value"), "dangling flag: %s", err_buf);
    CHECK(vlm("pretrain --lr abc --train-data x") == 2 && strstr(err_buf, "--lr"), "bad float: %s", err_buf);
    CHECK(vlm("pretrain --lr-scheduler=sawtooth --train-data x") == 2 && strstr(err_buf, "sawtooth"),
          "bad scheduler: %s", err_buf);
    // auto: amp_bf16 only where the CPU has the bf16 dot product, else fp32
    const char *want = vlm_cpu_isa() >= VLM_ISA_AVX512_BF16 ? "\"precision\": \"amp_bf16\"" : "\"precision\": \"fp32\"";
    CHECK(vlm("bench --model tiny --batch-size 2 --steps 1 --warmup 0 --precision auto --json") == 0 && strstr(out_buf, want),
          "--precision auto: %s", out_buf);
    CHECK(vlm("finetune --precision fp16") == 2 && strstr(err_buf, "fp32, amp_bf16, bf16 or auto"), "precision: %s", err_buf);
    CHECK(vlm("zeroshot --data x") == 2 && strstr(err_buf, "--clip"), "missing required: %s", err_buf);
    CHECK(vlm("detect train --eval-only --checkpoint d --heldout-data h --ensemble 0.35,0.65") == 2 &&
              strstr(err_buf, "--clip"),
          "ensemble without a CLIP: %s", err_buf);
    CHECK(vlm("detect train --clip c --train-data t --ensemble 0.35") == 2 && strstr(err_buf, "--ensemble"),
          "ensemble weights: %s", err_buf);
    // pretrain's option combinations that cannot work: usage errors (vlm_pretrain_opts_check), before any file is read
    CHECK(vlm("pretrain --train-data x --lock-image --lock-text") == 2 && strstr(err_buf, "nothing to train"), "lock both: %s",
          err_buf);
    CHECK(vlm("pretrain --train-data x --coca 1 --accum-freq 2") == 2 && strstr(err_buf, "--coca"), "coca + accum: %s", err_buf);
    CHECK(vlm("pretrain --train-data x --pretrained-text lm --tokenizer t") == 2 && strstr(err_buf, "--pretrained-text"),
          "pretrained-text + tokenizer: %s", err_buf);
    CHECK(vlm("pretrain --train-data x --random-background 0.5") == 2 && strstr(err_buf, "--composite"),
          "random background without --composite: %s", err_buf);
    CHECK(vlm("pretrain --train-data x --random-background 1.5") == 2 && strstr(err_buf, "--random-background"),
          "random background 1.5: %s", err_buf);
    CHECK(vlm("linprobe --checkpoint a --train-data b --val-data c --features mid") == 2 && strstr(err_buf, "mid"),
          "bad choice: %s", err_buf);
    CHECK(vlm("tokenize --vocab v extra") == 2 && strstr(err_buf, "unexpected argument 'extra'"), "stray: %s", err_buf);
    CHECK(vlm("tokenize --truncate --vocab v") == 2 && strstr(err_buf, "--context-length"), "conflict: %s", err_buf);
    CHECK(vlm("data scenes --out " DIRN "/s --scale 0.5") == 2 && strstr(err_buf, "--scale"), "scale: %s", err_buf);
    CHECK(vlm("data scenes --out " DIRN "/s --max-iou 2") == 2 && strstr(err_buf, "--max-iou"), "unit: %s", err_buf);
    CHECK(vlm("generate sample --checkpoint x --guidance-interval 3,1") == 2 && strstr(err_buf, "--guidance-interval"),
          "interval: %s", err_buf);
    CHECK(vlm("detect predict --checkpoint x --image y --query ''") == 2 && strstr(err_buf, "empty"),
          "empty query: %s", err_buf);
    // --json: the last stdout line is the JSON object (bench prints nothing else)
    CHECK(vlm("bench --model tiny --batch-size=2 --steps 1 --warmup 0 --json") == 0 && lines(out_buf) == 1 &&
              out_buf[0] == '{' && strstr(out_buf, "\"pairs_per_s\""),
          "bench --json: %s", out_buf);
    // A run-time failure (missing file) is exit 1, not a usage error.
    CHECK(vlm("data stats " DIRN "/missing.tsv") == 1 && strstr(err_buf, "missing.tsv"), "missing data: %s", err_buf);
}

// The data commands on a small manifest: --flag=value, an old spelling with
// its note, the outputs.
static void test_data_commands(void) {
    tu_make_squares(DIRN "/sq", 24, 1);
    CHECK(vlm("data stats " DIRN "/sq/train.tsv --limit=10 --csv-label-key=label --classnames " DIRN
              "/sq/classnames.txt") == 0 &&
              strstr(out_buf, "samples: 24") && strstr(out_buf, "limit: 10") && strstr(out_buf, "decoded: 10 ok, 0 bad") &&
              strstr(out_buf, "in 8 classes") && strstr(out_buf, "20 x 20"),
          "data stats: %s %s", out_buf, err_buf);
    CHECK(vlm("data stats --probe --sep tab " DIRN "/sq/train.tsv") == 0 && strstr(out_buf, "headers: 24 ok") &&
              strstr(err_buf, "--sep is now --csv-separator"),
          "old spelling with a note: %s", err_buf);
    CHECK(vlm("data stats " DIRN "/sq/train.tsv " DIRN "/sq/train.tsv") == 2 && strstr(err_buf, "one dataset"),
          "two datasets: %s", err_buf);
    CHECK(vlm("data preview " DIRN "/sq/train.tsv --out=" DIRN "/grid.png --n 8 --cell 16 --list") == 0 &&
              strstr(out_buf, "a red square"),
          "data preview: %s %s", out_buf, err_buf);
    struct stat sb;
    CHECK(stat(DIRN "/grid.png", &sb) == 0 && sb.st_size > 100, "preview PNG written");
    CHECK(vlm("data convert " DIRN "/sq/train.tsv --out " DIRN "/shards --shard-size=10") == 0 &&
              strstr(out_buf, "wrote 24 samples into 3 shards"),
          "data convert: %s %s", out_buf, err_buf);
    CHECK(vlm("data stats '" DIRN "/shards/{000000..000002}.tar'") == 0 && strstr(out_buf, "samples: 24"),
          "shards read back: %s %s", out_buf, err_buf);
    CHECK(vlm("data bench " DIRN "/sq/train.tsv --image-size 16 --batch 8 --seconds 0.2 --workers=1") == 0 &&
              strstr(err_buf, "--batch is now --batch-size"),
          "data bench: %s %s", out_buf, err_buf);
    CHECK(vlm("preprocess --image-size=16 --out " DIRN "/pre.safetensors " DIRN "/sq/000.png " DIRN "/sq/001.png") == 0,
          "preprocess: %s", err_buf);
    vlm_st_file f;
    vlm_error err = {0};
    if (vlm_st_read(&f, DIRN "/pre.safetensors", &err) == VLM_OK) {
        int64_t shape[4] = {2, 3, 16, 16};
        float *x = malloc(sizeof(float) * 2 * 3 * 16 * 16);
        CHECK(x && vlm_st_get(&f, "images", VLM_F32, 4, shape, x, &err) == VLM_OK, "images [2,3,16,16]: %s", err.msg);
        free(x);
        vlm_st_free(&f);
    } else
        CHECK(0, "preprocess output: %s", err.msg);
    CHECK(vlm("preprocess --image-size 16 --out " DIRN "/pre.safetensors") == 2, "preprocess without images: exit 2");
}

// tokenize and bpe train: a vocabulary learnt here tokenizes a caption.
static void test_text_commands(void) {
    FILE *f = fopen(DIRN "/caps.txt", "w");
    for (int i = 0; f && i < 200; i++) fprintf(f, "a red square at %d\na blue circle\n", i % 10);
    if (f) fclose(f);
    CHECK(vlm("bpe train --input=" DIRN "/caps.txt --vocab-size 520 --out " DIRN "/bpe.txt") == 0 &&
              strstr(out_buf, "vocab size 520"),
          "bpe train: %s %s", out_buf, err_buf);
    CHECK(vlm("bpe train --input " DIRN "/caps.txt --vocab-size 100 --out " DIRN "/bpe.txt") == 2 &&
              strstr(err_buf, "--vocab-size"),
          "vocab too small: %s", err_buf);
    CHECK(system("echo 'a red square' > " DIRN "/in.txt") == 0, "write input");
    CHECK(vlm("tokenize --vocab " DIRN "/bpe.txt --context-length=16 < " DIRN "/in.txt") == 0 && lines(out_buf) == 1 &&
              out_buf[0] == '[' && strstr(out_buf, ", 0]"),
          "tokenize: %s %s", out_buf, err_buf);
}

// vlm convert, and an imported model without a tokenizer refused by zeroshot.
static void test_convert(void) {
    char a[2048];
    snprintf(a, sizeof a, "convert %s " DIRN "/hf --to=hf --tokenizer %s", tu_src("tests/fixtures/import/openai_micro.pt"),
             tu_src("../shared/reference/openai-clip/bpe_simple_vocab_16e6.txt.gz"));
    CHECK(vlm(a) == 0 && strstr(err_buf, "OpenAI TorchScript") && strstr(err_buf, "QuickGELU") && strstr(out_buf, "wrote"),
          "convert to hf: %s", err_buf);
    struct stat sb;
    CHECK(stat(DIRN "/hf/vocab.json", &sb) == 0 && stat(DIRN "/hf/config.json", &sb) == 0, "HF folder written");
    CHECK(vlm("convert " DIRN "/hf " DIRN "/m.gguf --to gguf") == 0 && strstr(err_buf, "Hugging Face"), "hf to gguf: %s",
          err_buf);
    CHECK(vlm("convert " DIRN "/m.gguf " DIRN "/m.safetensors") == 0 && strstr(err_buf, "GGUF"), "gguf to vlm: %s", err_buf);
    // clip-step takes the config from the weights: OpenAI's .pt gives the reference features
    snprintf(a, sizeof a, "clip-step --weights %s --inputs %s --out " DIRN "/step.safetensors",
             tu_src("tests/fixtures/import/openai_micro.pt"), tu_src("tests/fixtures/import/micro.io.safetensors"));
    CHECK(vlm(a) == 0, "clip-step without --config: %s", err_buf);
    vlm_st_file f1, f2;
    vlm_error err = {0};
    if (!vlm_st_read(&f1, DIRN "/step.safetensors", &err)) {
        if (!vlm_st_read(&f2, tu_src("tests/fixtures/import/micro.io.safetensors"), &err)) {
            const vlm_st_entry *x = vlm_st_find(&f1, "image_features"), *y = vlm_st_find(&f2, "image_features");
            CHECK(x && y && x->numel == y->numel &&
                      tu_rel_err(vlm_st_data(&f1, x), vlm_st_data(&f2, y), (long)x->numel, 1e-3) < 1e-4,
                  "clip-step features of the imported weights");
            vlm_st_free(&f2);
        }
        vlm_st_free(&f1);
    } else
        CHECK(0, "clip-step output: %s", err.msg);
    CHECK(vlm("convert a b --to onnx") == 2 && strstr(err_buf, "onnx"), "bad --to: %s", err_buf);
    CHECK(vlm("convert a") == 2, "one path: exit 2");
    snprintf(a, sizeof a, "zeroshot --clip %s --data " DIRN "/sq/train.tsv --classnames " DIRN "/sq/classnames.txt",
             tu_src("tests/fixtures/import/openai_micro.pt"));
    CHECK(vlm(a) == 1 && strstr(err_buf, "without a tokenizer") && strstr(err_buf, "bpe_simple_vocab_16e6.txt.gz"),
          "no tokenizer invented: %s", err_buf);
    snprintf(a, sizeof a, "pretrain --pretrained %s --train-data " DIRN "/sq/train.tsv --logs " DIRN "/logs --max-steps 1",
             tu_src("tests/fixtures/import/hf_micro"));
    CHECK(vlm(a) == 1 && strstr(err_buf, "without a tokenizer"), "pretrain --pretrained without a tokenizer: %s", err_buf);
}

int main(void) {
    if (system("rm -rf " DIRN " && mkdir -p " DIRN) != 0) return 1;
    test_help_and_unknown();
    test_values();
    test_data_commands();
    test_text_commands();
    test_convert();
    if (!tu_failures && system("rm -rf " DIRN) != 0) fprintf(stderr, "cleanup failed\n");
    return tu_done("test_cli");
}
