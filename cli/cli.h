// Subcommand entry points of the `vlm` CLI; each returns the process exit code.
#ifndef VLM_CLI_H
#define VLM_CLI_H

#include <stdio.h>
#include "core/error.h"

typedef int (*vlm_cmd_fn)(int argc, char **argv);

// Prints "vlm <cmd>: error: <msg>" to stderr and returns 1.
int cli_fail(const char *cmd, const vlm_error *err);
// Prints the usage error and returns 2 (the exit status of a usage error).
int cli_usage_fail(const char *cmd, const vlm_error *err);
int cli_failf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// After option parsing returned pr != 0: 1 (--help) prints usage on stdout
// and gives 0; -1 (a usage error) reports err and gives 2.
int cli_parse_exit(int pr, const char *cmd, const char *usage, const vlm_error *err);
// The same for a usage error (missing or conflicting flags): returns 2.
int cli_usagef(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Writes s as a JSON string literal (UTF-8 passes through; quotes,
// backslashes and control bytes escaped).
void cli_json_str(FILE *f, const char *s);

int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bpe(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_clip_step(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_zeroshot(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_linprobe(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_serve(int argc, char **argv);
// `vlm detect eval|train|predict`: cli/cmd_detect.c (dispatch, eval),
// cli/cmd_detect_train.c, cli/cmd_detect_predict.c.
int cmd_detect(int argc, char **argv);
int cmd_detect_train(int argc, char **argv);
int cmd_detect_predict(int argc, char **argv);
// `vlm generate train|sample|eval`: cli/cmd_generate.c.
int cmd_generate(int argc, char **argv);
// `vlm caption`: cli/cmd_caption.c.
int cmd_caption(int argc, char **argv);
// `vlm lm train|eval|sample`: cli/cmd_lm.c.
int cmd_lm(int argc, char **argv);

#endif
