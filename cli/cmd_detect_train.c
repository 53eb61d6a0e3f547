// `vlm detect train` and `vlm detect predict` (placeholders until the detection head lands).
#include "cli/cli.h"

int cmd_detect_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_failf("detect train", "not implemented yet");
}

int cmd_detect_predict(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_failf("detect predict", "not implemented yet");
}
