// The CLI's one option parser: getopt_long over tables of flags (both
// `--flag value` and `--flag=value`), shared tables for what every trainer
// takes, one name for one thing across subcommands, old spellings kept as
// aliases that print a one-line deprecation note.
#ifndef VLM_CLI_OPTS_H
#define VLM_CLI_OPTS_H

#include "core/error.h"
#include "data/dataset.h"
#include "data/image.h"
#include "train/trainer.h"

typedef enum {
    CLI_STR,   // const char **dst
    CLI_INT,   // long long *dst in [lo, hi]
    CLI_FLT,   // double *dst in [lo, hi]
    CLI_FLAG,  // int *dst = 1 (no value)
    CLI_FN,    // fn(value, dst, err) parses the value
    CLI_FN0,   // fn(NULL, dst, err) with no value (a flag with an action)
} cli_kind;

typedef struct {
    const char *name; // without the leading "--"
    cli_kind kind;
    void *dst;
    double lo, hi;
    int (*fn)(const char *v, void *dst, vlm_error *err); // CLI_FN / CLI_FN0: 0 ok, -1 error (err set)
    const char *renamed_to; // an old spelling: sets the same dst, notes the new name once
} cli_opt;

// A table ends with an entry whose name is NULL.
#define CLI_END {NULL, CLI_STR, NULL, 0, 0, NULL, NULL}

// Parses argv[1..argc) (argv[0] is the subcommand) against the tables.
// Returns 0 and *first_pos = index of the first positional argument (argv is
// permuted so positionals come last), 1 for --help / -h, -1 on a usage error
// (err names the flag: unknown, missing value, bad value).
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *const *tables, int n_tables, int *first_pos,
              vlm_error *err);

// The same for commands without positional arguments: one is a usage error.
int cli_parse_flags(const char *cmd, int argc, char **argv, const cli_opt *const *tables, int n_tables, vlm_error *err);

// --json, the same in every command: the last line of stdout is one JSON
// object; whatever the command prints before it is unchanged.

// A number option's value in [lo, hi]; on error fills err naming the flag
// (e.g. "--lr") and returns -1.
int cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out, vlm_error *err);
int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out, vlm_error *err);

// Value parsers for CLI_FN entries.
// "a,b,..." into up to n doubles in [lo, hi]; returns the count or -1.
int cli_parse_list(const char *flag, const char *s, double *out, int n, double lo, double hi, vlm_error *err);
// The augmentation flags of pretrain and finetune (vlm_train_aug): --hflip P
// --jitter P --grayscale P --aug-scale LO,HI --aug-ratio LO,HI --color-jitter B,C,S,H.
#define CLI_AUG_OPTS 7
void cli_aug_table(cli_opt *tab, vlm_train_aug *a);
#define CLI_AUG_HELP                                                                                  \
    "augmentation (training images; data/transform.h):\n"                                             \
    "  --aug-scale LO,HI (0.9,1)  --aug-ratio LO,HI (0.75,1.333)   RandomResizedCrop\n"               \
    "  --hflip P (0)  --jitter P (0) with --color-jitter B,C,S,H (0.4,0.4,0.4,0.1)  --grayscale P (0)\n"
int cli_fn_sep(const char *v, void *dst, vlm_error *err);       // char: "tab", "\t", or one character
int cli_fn_composite(const char *v, void *dst, vlm_error *err); // vlm_decode_opts: "R,G,B"
// --ensemble SEEN,NOVEL: two weights in [0, 1] into w[2]; 0 ok, -1 error (err set).
int cli_parse_ensemble(const char *v, double w[2], vlm_error *err);
int cli_fn_precision(const char *v, void *dst, vlm_error *err); // open_clip's --precision: fp32 | amp_bf16 | bf16 into an int

// The flags every trainer takes, filling a vlm_train_common: --logs --name
// --resume --seed --batch-size --epochs --max-steps --warmup
// --save-every-steps --log-every --stop-at-step --workers --lr --wd --beta1
// --beta2 --eps --grad-clip-norm --max-minutes --lr-scheduler
// (--lr-schedule) --time-schedule --precision --dist-timeout --debug-fault,
// and --json (the int given).
typedef struct {
    double timeout_s;
    int fault_kind; // 0 none, 1 hang, 2 exit, 3 a NaN loss
    int fault_rank;
    long long fault_step;
} cli_dist_opts;
// Fills tab (room for CLI_TRAIN_OPTS entries) with the shared trainer flags.
#define CLI_TRAIN_OPTS 32
void cli_train_table(cli_opt *tab, vlm_train_common *c, cli_dist_opts *d, int *json);

// The dataset flags of the evaluation and data commands: --csv-img-key
// --csv-label-key --csv-caption-key --csv-separator (old spellings --img-key,
// --label-key, --caption-key, --sep kept), --labels (IDX labels file),
// --composite, --max-pixels; with loader flags also --batch-size, --workers.
typedef struct {
    const char *img_key, *label_key, *cap_key, *cap_sep, *idx_labels;
    char sep;
    vlm_decode_opts dec;
    long long batch, workers;
} cli_data_opts;
// Defaults: filepath / label / title columns, tab, drop alpha (PIL's pixel
// limit), the batch given, 2 workers.
void cli_data_opts_default(cli_data_opts *o, long long batch);
#define CLI_DATA_OPTS 16
void cli_data_table(cli_opt *tab, cli_data_opts *o, int loader_flags);
// The dataset options these flags give (columns and separator).
void cli_data_dataset_opts(const cli_data_opts *o, vlm_dataset_opts *dso);

#endif
