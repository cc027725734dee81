/* cli/cli.h: what the qs subcommands in separate files share. */
#ifndef QS_CLI_H
#define QS_CLI_H

#include "quantscope/status.h"

/* Prints "prog: message (STATUS)" to stderr. */
void qs_cli_error(const char *prog, const qs_error *e);

/* qs train (cli/train.c); argv[1] is "train". */
int qs_cli_train(int argc, char **argv);

#endif
