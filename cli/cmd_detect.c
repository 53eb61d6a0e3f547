// `vlm detect <eval|train|predict>`: dispatch to the detection subcommands;
// `vlm detect eval` (pycocotools-exact COCO bbox scores) lives here.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "data/coco.h"
#include "eval/coco_eval.h"

static const char *eval_usage =
    "usage: vlm detect eval --gt GT.json --dt DT.json [--json]\n"
    "\n"
    "Scores a COCO results file against COCO ground truth exactly as pycocotools'\n"
    "COCOeval(gt, dt, \"bbox\") does (evaluate, accumulate, summarize) and prints\n"
    "its 12-line summary.\n"
    "\n"
    "  --gt FILE    ground truth: {\"images\": [...], \"annotations\": [{\"id\", \"image_id\",\n"
    "               \"category_id\", \"bbox\": [x, y, w, h], \"area\", \"iscrowd\"}, ...],\n"
    "               \"categories\": [...]}; the size ranges use \"area\"\n"
    "  --dt FILE    results: [{\"image_id\", \"category_id\", \"bbox\", \"score\"}, ...];\n"
    "               every image_id must be in the ground truth; results of\n"
    "               categories the ground truth lacks are skipped (as pycocotools)\n"
    "  --json       end with one JSON line: AP, AP50, AP75, APs, APm, APl, AR1,\n"
    "               AR10, AR100, ARs, ARm, ARl (%.17g) and \"per_category\": AP per\n"
    "               category id (IoU .50:.95, area all, maxDets 100; -1 for a\n"
    "               category without ground truth)\n"
    "\n"
    "Values of -1 mean there was no ground truth to score (pycocotools' convention).\n";

static int cmd_detect_eval(int argc, char **argv) {
    const char *gt_path = NULL, *dt_path = NULL;
    int json = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"gt", CLI_STR, &gt_path, 0, 0, NULL, NULL},
        {"dt", CLI_STR, &dt_path, 0, 0, NULL, NULL},
        {"json", CLI_FLAG, &json, 0, 0, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("detect eval", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "detect eval", eval_usage, &err);
    if (!gt_path || !dt_path)
        return cli_usagef("detect eval", "%s is required (usage: vlm detect eval --gt GT.json --dt DT.json [--json])",
                          gt_path ? "--dt" : "--gt");

    vlm_coco_gt gt;
    vlm_coco_results dt;
    vlm_coco_eval ev;
    if (vlm_coco_gt_load(&gt, gt_path, &err)) return cli_fail("detect eval", &err);
    if (vlm_coco_results_load(&dt, dt_path, &gt, &err)) {
        vlm_coco_gt_free(&gt);
        return cli_fail("detect eval", &err);
    }
    vlm_status st = vlm_coco_eval_run(&ev, &gt, &dt, &err);
    fprintf(stderr, "detect eval: %ld images, %ld categories, %ld annotations, %ld results\n", gt.n_images,
            gt.n_categories, gt.n_anns, dt.n);
    vlm_coco_results_free(&dt);
    vlm_coco_gt_free(&gt);
    if (st) return cli_fail("detect eval", &err);
    if (ev.n_results_unknown_category)
        fprintf(stderr, "detect eval: note: %ld results name categories not in %s; skipped, as pycocotools does\n",
                ev.n_results_unknown_category, gt_path);

    size_t n = vlm_coco_eval_summary(&ev, NULL, 0);
    char *buf = malloc(n + 1);
    if (!buf) {
        vlm_coco_eval_free(&ev);
        return cli_failf("detect eval", "out of memory");
    }
    vlm_coco_eval_summary(&ev, buf, n + 1);
    fputs(buf, stdout);
    free(buf);
    if (json) {
        putchar('{');
        for (int i = 0; i < VLM_COCO_NSTATS; i++)
            printf("%s\"%s\": %.17g", i ? ", " : "", vlm_coco_eval_stat_name(i), ev.stats[i]);
        printf(", \"per_category\": {");
        for (long k = 0; k < ev.n_categories; k++)
            printf("%s\"%" PRId64 "\": %.17g", k ? ", " : "", ev.category_ids[k], ev.category_ap[k]);
        printf("}}\n");
    }
    vlm_coco_eval_free(&ev);
    return fflush(stdout) ? cli_failf("detect eval", "writing to stdout failed") : 0;
}

int cmd_detect(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: vlm detect <command> [options]\n"
                "  eval      score a COCO results file against COCO ground truth (pycocotools' bbox metrics)\n"
                "  train     fine-tune an open-vocabulary detection head from a CLIP checkpoint\n"
                "  predict   detect text queries in an image, draw the boxes, write COCO results\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "eval")) return cmd_detect_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return cmd_detect_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "predict")) return cmd_detect_predict(argc - 1, argv + 1);
    return cli_usagef("detect", "unknown command '%s' (eval, train, predict)", argv[1]);
}
