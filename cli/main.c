// The `vlm` command: dispatches to subcommands (cli/cmd_*.c).
#include "core/cpu.h"
#include "cli/cli.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "cli/train_common.h"

static const struct {
    const char *name;
    vlm_cmd_fn fn;
    const char *help;
} commands[] = {
    {"bench", cmd_bench, "`vlm bench ops` (op GFLOPS) and `vlm bench --model M` (training steps/s, RSS)"},
    {"tokenize", cmd_tokenize, "tokenize stdin lines with a CLIP BPE vocabulary"},
    {"bpe", cmd_bpe, "`vlm bpe train`: learn a BPE vocabulary from captions"},
    {"preprocess", cmd_preprocess, "decode + eval-transform images into a safetensors file"},
    {"pretrain", cmd_pretrain, "contrastive CLIP pretraining on image-caption pairs (open_clip flags)"},
    {"zeroshot", cmd_zeroshot, "zero-shot classification of labelled images from class names"},
    {"finetune", cmd_finetune, "train/fine-tune a ViT image classifier (from a CLIP or scratch)"},
    {"linprobe", cmd_linprobe, "logistic-regression linear probe on frozen image features"},
    {"detect", cmd_detect, "`vlm detect eval|train|predict`: open-vocabulary detection, COCO evaluation"},
    {"caption", cmd_caption, "captions from a CoCa model (greedy or beam search)"},
    {"lm", cmd_lm, "`vlm lm train|eval|sample`: masked-token (BERT) or causal (GPT) language models on the text tower"},
    {"generate", cmd_generate, "`vlm generate train|sample|eval`: CLIP-conditioned diffusion (DiT) image generation"},
    {"embed", cmd_embed, "images or texts to an embeddings file (L2-normalised, with ids; resumable)"},
    {"search", cmd_search, "exact top-k search of an embeddings file by text or image"},
    {"serve", cmd_serve, "HTTP JSON API over a CLIP: embed, zero-shot classify, metrics, a browser page"},
    {"convert", cmd_convert, "CLIP weights between vlm, OpenAI .pt, open_clip, Hugging Face and GGUF layouts"},
    {"clip-step", cmd_clip_step, "reference harness: one CLIP forward/backward (+ AdamW steps) to safetensors"},
    {"data", cmd_data, "`vlm data stats|preview|convert|bench|scenes`: inspect, convert, time datasets; detection scenes"},
};

int cli_fail(const char *cmd, const vlm_error *err) {
    fprintf(stderr, "vlm %s: error: %s\n", cmd, err && err->msg[0] ? err->msg : "unknown error");
    return 1;
}

int cli_usage_fail(const char *cmd, const vlm_error *err) {
    cli_fail(cmd, err);
    return 2;
}

int cli_parse_exit(int pr, const char *cmd, const char *usage, const vlm_error *err) {
    if (pr == 1) return fputs(usage, stdout), 0;
    return cli_usage_fail(cmd, err);
}

static void vfail(const char *cmd, const char *fmt, va_list ap) {
    fprintf(stderr, "vlm %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_failf(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(cmd, fmt, ap);
    va_end(ap);
    return 1;
}

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

int cli_usagef(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(cmd, fmt, ap);
    va_end(ap);
    return 2;
}

// The process's data-parallel context: owned by main, reached through cli_dist().
static vlm_dist process_dist = {.world = 1};
vlm_dist *cli_dist(void) { return &process_dist; }

// Subcommands that train data-parallel under mpirun; anything else would just
// run W identical copies, so it is refused.
static int runs_distributed(int argc, char **argv) {
    if (!strcmp(argv[1], "pretrain") || !strcmp(argv[1], "finetune")) return 1;
    return argc > 2 && (!strcmp(argv[1], "generate") || !strcmp(argv[1], "detect") || !strcmp(argv[1], "lm")) &&
           !strcmp(argv[2], "train");
}

// `vlm --version`: version, commit, build options and the CPU features the
// kernels can use (so a speed figure can name what ran).
static void version(void) {
    printf("vlm %s (git %s)\n", VLM_VERSION, VLM_GIT);
    printf("build: %s",
#ifdef VLM_HAVE_OPENBLAS
           "OpenBLAS (OpenMP)"
#else
           "reference GEMM"
#endif
    );
#ifdef _OPENMP
    printf(", OpenMP %d", _OPENMP);
#endif
#ifdef VLM_HAVE_MPI
    printf(", MPI");
#endif
#ifdef __AVX2__
    printf(", compiled with AVX2");
#endif
    vlm_isa hw = vlm_cpu_detect(), used = vlm_cpu_isa();
    printf("\ncpu: %s (kernels: %s%s; bf16 GEMM: %s)\n", vlm_isa_name(hw), vlm_isa_name(used),
           used < hw ? ", capped by VLM_ISA" : "", used >= VLM_ISA_AVX512_BF16 ? "vdpbf16ps" : "emulated in fp32");
}

static void usage(FILE *f) {
    fprintf(f, "usage: vlm <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`vlm <command> --help` describes a command's options; `vlm --version` the build.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    vlm_error err = {0};
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        version();
        return 0;
    }
    if (vlm_dist_init(&process_dist, &argc, &argv, &err)) {
        fprintf(stderr, "vlm: error: %s\n", err.msg);
        return 1;
    }
    vlm_dist *d = &process_dist;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (d->world > 1 && !runs_distributed(argc, argv)) {
                if (d->rank == 0)
                    fprintf(stderr, "vlm %s: error: does not run data-parallel; run it without mpirun "
                                    "(mpirun runs: pretrain, finetune, detect train, generate train, lm train)\n", argv[1]);
                vlm_dist_free(d);
                return 2;
            }
            int rc = commands[i].fn(argc - 1, argv + 1);
            if (rc && d->world > 1) {
                // One rank failed: take the others down now instead of leaving
                // them blocked in the next collective.
                fprintf(stderr, "vlm %s: rank %d of %d stopped with status %d; aborting every rank\n", argv[1], d->rank,
                        d->world, rc);
                vlm_dist_abort(d, rc);
            }
            vlm_dist_free(d);
            return rc;
        }
    vlm_dist_free(d);
    fprintf(stderr, "vlm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
