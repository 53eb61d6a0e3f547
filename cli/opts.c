// The CLI's option parser over getopt_long (see opts.h).
#include "core/bf16.h"
#include "core/cpu.h"
#include "cli/opts.h"
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 256

int cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out, vlm_error *err) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        vlm_errorf(err, VLM_ERR_ARG, "%s: '%s' is not an integer in [%lld, %lld]", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out, vlm_error *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        vlm_errorf(err, VLM_ERR_ARG, "%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

// One parsed option into its destination.
static int apply(const cli_opt *o, const char *v, vlm_error *err) {
    char flag[80];
    snprintf(flag, sizeof flag, "--%s", o->name);
    switch (o->kind) {
    case CLI_STR: *(const char **)o->dst = v; return 0;
    case CLI_INT: {
        long long lo = o->lo <= -9.2e18 ? INT64_MIN : (long long)o->lo, hi = o->hi >= 9.2e18 ? INT64_MAX : (long long)o->hi;
        return cli_parse_int(flag, v, lo, hi, o->dst, err);
    }
    case CLI_FLT: return cli_parse_float(flag, v, o->lo, o->hi, o->dst, err);
    case CLI_FLAG: *(int *)o->dst = 1; return 0;
    case CLI_FN:
    case CLI_FN0:
        if (o->fn(v, o->dst, err)) {
            if (!strstr(err->msg, o->name)) vlm_error_prefix(err, "--%s", o->name);
            return -1;
        }
        return 0;
    }
    return -1;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *const *tables, int n_tables, int *first_pos,
              vlm_error *err) {
    struct option lo[MAX_OPTS + 2];
    const cli_opt *ref[MAX_OPTS];
    int n = 0, short_ref[128];
    char shorts[MAX_OPTS * 2 + 4] = ":h";
    size_t ns = 2;
    for (int t = 0; t < n_tables; t++)
        for (const cli_opt *o = tables[t]; o->name && n < MAX_OPTS; o++, n++) {
            int has = o->kind == CLI_FLAG || o->kind == CLI_FN0 ? no_argument : required_argument;
            lo[n] = (struct option){o->name, has, NULL, 1000 + n};
            ref[n] = o;
            if (strlen(o->name) == 1 && o->name[0] != 'h' && (unsigned char)o->name[0] < 128) { // also -k V
                short_ref[(int)o->name[0]] = n;
                shorts[ns++] = o->name[0];
                if (has == required_argument) shorts[ns++] = ':';
                shorts[ns] = 0;
            }
        }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    optind = 0; // a fresh scan (GNU: also resets the parser's internal state)
    opterr = 0;
    int c, noted[MAX_OPTS] = {0};
    while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        const char *bad = argv[optind - 1];
        if (c == 'h') return 1;
        if (c == ':') {
            vlm_errorf(err, VLM_ERR_ARG, "option %s needs a value (see vlm %s --help)", bad, cmd);
            return -1;
        }
        if (c == '?') {
            vlm_errorf(err, VLM_ERR_ARG, "unknown option '%s' (see vlm %s --help)", bad, cmd);
            return -1;
        }
        if (c < 1000) c = 1000 + short_ref[c & 127];
        const cli_opt *o = ref[c - 1000];
        if (o->renamed_to && !noted[c - 1000]++)
            fprintf(stderr, "vlm %s: note: --%s is now --%s (the old name still works)\n", cmd, o->name, o->renamed_to);
        if (apply(o, optarg, err)) return -1;
    }
    *first_pos = optind;
    return 0;
}

int cli_parse_flags(const char *cmd, int argc, char **argv, const cli_opt *const *tables, int n_tables, vlm_error *err) {
    int pos, r = cli_parse(cmd, argc, argv, tables, n_tables, &pos, err);
    if (r || pos >= argc) return r;
    vlm_errorf(err, VLM_ERR_ARG, "unexpected argument '%s' (see vlm %s --help)", argv[pos], cmd);
    return -1;
}

int cli_parse_list(const char *flag, const char *s, double *out, int n, double lo, double hi, vlm_error *err) {
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v >= lo && v <= hi) || k == n || (*end && *end != ',')) {
            vlm_errorf(err, VLM_ERR_ARG, "%s: '%s' is not a list of at most %d numbers in [%g, %g]", flag, s, n, lo, hi);
            return -1;
        }
        out[k++] = v;
        p = *end ? end + 1 : end;
    }
    if (!k) vlm_errorf(err, VLM_ERR_ARG, "%s: empty list", flag);
    return k ? k : -1;
}

static int fn_aug_scale(const char *v, void *dst, vlm_error *err) {
    if (cli_parse_list("--aug-scale", v, dst, 2, 1e-3, 1, err) == 2) return 0;
    vlm_errorf(err, VLM_ERR_ARG, "--aug-scale: expected LO,HI in (0, 1], got '%s'", v);
    return -1;
}

static int fn_aug_ratio(const char *v, void *dst, vlm_error *err) {
    if (cli_parse_list("--aug-ratio", v, dst, 2, 1e-2, 100, err) == 2) return 0;
    vlm_errorf(err, VLM_ERR_ARG, "--aug-ratio: expected LO,HI, got '%s'", v);
    return -1;
}

static int fn_color_jitter(const char *v, void *dst, vlm_error *err) {
    double *cj = dst;
    if (cli_parse_list("--color-jitter", v, cj, 4, 0, 10, err) == 4 && cj[3] <= 0.5) return 0;
    vlm_errorf(err, VLM_ERR_ARG, "--color-jitter: expected B,C,S,H (hue <= 0.5)");
    return -1;
}

void cli_aug_table(cli_opt *tab, vlm_train_aug *a) {
    const cli_opt t[CLI_AUG_OPTS] = {
        {"hflip", CLI_FLT, &a->hflip, 0, 1, NULL, NULL},
        {"jitter", CLI_FLT, &a->jitter, 0, 1, NULL, NULL},
        {"grayscale", CLI_FLT, &a->gray, 0, 1, NULL, NULL},
        {"aug-scale", CLI_FN, a->scale, 0, 0, fn_aug_scale, NULL},
        {"aug-ratio", CLI_FN, a->ratio, 0, 0, fn_aug_ratio, NULL},
        {"color-jitter", CLI_FN, a->cj, 0, 0, fn_color_jitter, NULL},
        CLI_END,
    };
    memcpy(tab, t, sizeof t);
}

int cli_fn_sep(const char *v, void *dst, vlm_error *err) {
    char *sep = dst;
    if (!strcmp(v, "\\t") || !strcmp(v, "tab") || !strcmp(v, "\t")) *sep = '\t';
    else if (!strcmp(v, "comma")) *sep = ',';
    else if (strlen(v) == 1) *sep = v[0];
    else {
        vlm_errorf(err, VLM_ERR_ARG, "--csv-separator: one character, 'tab' or 'comma' expected, got '%s'", v);
        return -1;
    }
    return 0;
}

int cli_parse_ensemble(const char *v, double w[2], vlm_error *err) {
    char tail;
    if (sscanf(v, "%lf,%lf%c", &w[0], &w[1], &tail) != 2 || !(w[0] >= 0 && w[0] <= 1) || !(w[1] >= 0 && w[1] <= 1)) {
        vlm_errorf(err, VLM_ERR_ARG, "--ensemble: expected SEEN,NOVEL weights in [0, 1], got '%s'", v);
        return -1;
    }
    return 0;
}

int cli_fn_composite(const char *v, void *dst, vlm_error *err) {
    vlm_decode_opts *o = dst;
    int r, g, b;
    char tail;
    if (sscanf(v, "%d,%d,%d%c", &r, &g, &b, &tail) != 3 || r < 0 || g < 0 || b < 0 || r > 255 || g > 255 || b > 255) {
        vlm_errorf(err, VLM_ERR_ARG, "--composite wants R,G,B in 0..255, got '%s'", v);
        return -1;
    }
    o->alpha = VLM_ALPHA_COMPOSITE;
    o->background[0] = (uint8_t)r;
    o->background[1] = (uint8_t)g;
    o->background[2] = (uint8_t)b;
    return 0;
}

// "auto": amp_bf16 where the CPU has AVX512-BF16, else fp32 (the emulated
// bf16 GEMM keeps amp_bf16's numerics but is slower than fp32's BLAS: 68
// against 91 pairs/s for `vlm bench --model tiny --batch-size 256` on a Zen 3).
int cli_fn_precision(const char *v, void *dst, vlm_error *err) {
    int hw = vlm_cpu_isa() >= VLM_ISA_AVX512_BF16;
    int p = !strcmp(v, "auto") ? (hw ? VLM_PREC_AMP_BF16 : VLM_PREC_FP32)
                               : vlm_precision_parse(!strcmp(v, "float32") ? "fp32" : v);
    if (p < 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--precision must be fp32, amp_bf16, bf16 or auto, not '%s'", v);
        return -1;
    }
    if (dst) *(int *)dst = p;
    if (p != VLM_PREC_FP32 && !hw)
        fprintf(stderr, "note: --precision %s: this CPU (or VLM_ISA) has no AVX512-BF16, so the bf16 GEMMs are "
                        "emulated in fp32: the same numerics, slower than --precision fp32 (auto picks fp32 here)\n", v);
    return 0;
}

static int fn_fault(const char *v, void *dst, vlm_error *err) {
    cli_dist_opts *o = dst;
    char k[16];
    int r;
    long long st;
    if (sscanf(v, "%15[a-z]:%d:%lld", k, &r, &st) != 3 || (strcmp(k, "hang") && strcmp(k, "exit") && strcmp(k, "nan")) ||
        r < 0 || st < 0) {
        vlm_errorf(err, VLM_ERR_ARG, "--debug-fault: expected hang:RANK:STEP, exit:RANK:STEP or nan:RANK:STEP, got '%s'",
                   v);
        return -1;
    }
    o->fault_kind = !strcmp(k, "hang") ? 1 : !strcmp(k, "exit") ? 2 : 3;
    o->fault_rank = r;
    o->fault_step = st;
    return 0;
}

static int fn_sched(const char *v, void *dst, vlm_error *err) {
    vlm_sched_kind k;
    if (vlm_sched_parse(v, &k)) {
        vlm_errorf(err, VLM_ERR_ARG, "--lr-scheduler must be cosine, const or const-cooldown, not '%s'", v);
        return -1;
    }
    *(const char **)dst = v;
    return 0;
}

void cli_train_table(cli_opt *tab, vlm_train_common *c, cli_dist_opts *d, int *json) {
    const double BIG = 1099511627776.0; // 2^40
    const cli_opt t[] = {
        {"logs", CLI_STR, &c->logs, 0, 0, NULL, NULL},
        {"name", CLI_STR, &c->name, 0, 0, NULL, NULL},
        {"resume", CLI_STR, &c->resume, 0, 0, NULL, NULL},
        {"seed", CLI_INT, &c->seed, 0, 9.3e18, NULL, NULL},
        {"batch-size", CLI_INT, &c->batch, 1, 1 << 20, NULL, NULL},
        {"epochs", CLI_INT, &c->epochs, 1, 1 << 20, NULL, NULL},
        {"max-steps", CLI_INT, &c->max_steps, 1, BIG, NULL, NULL},
        {"warmup", CLI_INT, &c->warmup, 0, BIG, NULL, NULL},
        {"save-every-steps", CLI_INT, &c->save_every, 1, BIG, NULL, NULL},
        {"log-every", CLI_INT, &c->log_every, 1, 1 << 30, NULL, NULL},
        {"stop-at-step", CLI_INT, &c->stop_at, 1, BIG, NULL, NULL},
        {"workers", CLI_INT, &c->workers, 1, 256, NULL, NULL},
        {"lr", CLI_FLT, &c->lr, 0, 10, NULL, NULL},
        {"wd", CLI_FLT, &c->wd, 0, 10, NULL, NULL},
        {"beta1", CLI_FLT, &c->beta1, 0, 0.999999, NULL, NULL},
        {"beta2", CLI_FLT, &c->beta2, 0, 0.9999999, NULL, NULL},
        {"eps", CLI_FLT, &c->eps, 1e-30, 1, NULL, NULL},
        {"grad-clip-norm", CLI_FLT, &c->clip_norm, 0, 1e9, NULL, NULL},
        {"max-minutes", CLI_FLT, &c->max_minutes, 0, 1e9, NULL, NULL},
        {"lr-scheduler", CLI_FN, &c->lr_scheduler, 0, 0, fn_sched, NULL},
        {"lr-schedule", CLI_FN, &c->lr_scheduler, 0, 0, fn_sched, "lr-scheduler"},
        {"time-schedule", CLI_FLAG, &c->time_schedule, 0, 0, NULL, NULL},
        {"precision", CLI_FN, &c->precision, 0, 0, cli_fn_precision, NULL},
        {"dist-timeout", CLI_FLT, &d->timeout_s, 0.1, 1e7, NULL, NULL},
        {"debug-fault", CLI_FN, d, 0, 0, fn_fault, NULL},
        {"json", CLI_FLAG, json, 0, 0, NULL, NULL},
        CLI_END,
    };
    _Static_assert(sizeof t / sizeof t[0] <= CLI_TRAIN_OPTS, "CLI_TRAIN_OPTS too small");
    memcpy(tab, t, sizeof t);
}

void cli_data_opts_default(cli_data_opts *o, long long batch) {
    memset(o, 0, sizeof *o);
    o->img_key = "filepath", o->label_key = "label", o->cap_key = "title", o->sep = '\t';
    vlm_decode_opts_default(&o->dec);
    o->batch = batch, o->workers = 2;
}

static int fn_max_pixels(const char *v, void *dst, vlm_error *err) {
    long long n;
    if (cli_parse_int("--max-pixels", v, 0, 1LL << 50, &n, err)) return -1;
    ((vlm_decode_opts *)dst)->max_pixels = n;
    return 0;
}

void cli_data_table(cli_opt *tab, cli_data_opts *o, int loader_flags) {
    const cli_opt t[] = {
        {"csv-img-key", CLI_STR, &o->img_key, 0, 0, NULL, NULL},
        {"csv-label-key", CLI_STR, &o->label_key, 0, 0, NULL, NULL},
        {"csv-caption-key", CLI_STR, &o->cap_key, 0, 0, NULL, NULL},
        {"csv-caption-sep", CLI_STR, &o->cap_sep, 0, 0, NULL, NULL},
        {"csv-separator", CLI_FN, &o->sep, 0, 0, cli_fn_sep, NULL},
        {"img-key", CLI_STR, &o->img_key, 0, 0, NULL, "csv-img-key"},
        {"label-key", CLI_STR, &o->label_key, 0, 0, NULL, "csv-label-key"},
        {"caption-key", CLI_STR, &o->cap_key, 0, 0, NULL, "csv-caption-key"},
        {"sep", CLI_FN, &o->sep, 0, 0, cli_fn_sep, "csv-separator"},
        {"labels", CLI_STR, &o->idx_labels, 0, 0, NULL, NULL},
        {"composite", CLI_FN, &o->dec, 0, 0, cli_fn_composite, NULL},
        {"max-pixels", CLI_FN, &o->dec, 0, 0, fn_max_pixels, NULL},
        {"batch-size", CLI_INT, &o->batch, 1, 1 << 16, NULL, NULL},
        {"workers", CLI_INT, &o->workers, 1, 256, NULL, NULL},
        CLI_END,
    };
    _Static_assert(sizeof t / sizeof t[0] <= CLI_DATA_OPTS, "CLI_DATA_OPTS too small");
    memcpy(tab, t, sizeof t);
    if (!loader_flags) tab[sizeof t / sizeof t[0] - 3] = (cli_opt)CLI_END; // drop --batch-size, --workers
}

void cli_data_dataset_opts(const cli_data_opts *o, vlm_dataset_opts *dso) {
    vlm_dataset_opts_default(dso);
    dso->img_key = o->img_key;
    dso->label_key = o->label_key;
    dso->caption_key = o->cap_key;
    dso->caption_sep = o->cap_sep;
    dso->sep = o->sep;
    dso->idx_labels = o->idx_labels;
}
