// `vlm detect <eval|train|predict>`: dispatch to the detection subcommands.
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

int cmd_detect(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: vlm detect <command> [options]\n"
                "  eval      score a COCO results file against COCO ground truth (pycocotools' bbox metrics)\n"
                "  train     fine-tune an open-vocabulary detection head from a CLIP checkpoint\n"
                "  predict   detect text queries in an image, draw the boxes, write COCO results\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_detect_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "predict")) return cmd_detect_predict(argc - 1, argv + 1);
    return cli_failf("detect", "unknown command '%s' (eval, train, predict)", argv[1]);
}
