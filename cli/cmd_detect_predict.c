// `vlm detect predict` (placeholder until the drawing code lands).
#include "cli/cli.h"

int cmd_detect_predict(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_failf("detect predict", "not implemented yet");
}
