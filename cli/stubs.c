// Placeholders for subcommands whose modules have not landed yet; each is
// replaced by its cli/cmd_<name>.c (delete the stub when adding the real one).
#include "cli/cli.h"

#define STUB(fn, name) \
    int fn(int argc, char **argv) { (void)argc; (void)argv; return cli_failf(name, "not implemented yet"); }

