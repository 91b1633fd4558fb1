/* SPDX-License-Identifier: MIT */
/*
 * cmd.h - the subcommands of `patchsae`. Each lives in src/cmd_NAME.c and
 * defines `int cmd_NAME(int argc, char **argv)` (argv[0] is "NAME"; returns
 * the exit status: 0 success, 1 some inputs failed, 2 usage or nothing done)
 * and `const char cmd_NAME_usage[]` (first line: a one-line summary; the rest:
 * the --help text). The Makefile registers every such file.
 */
#ifndef PS_CMD_H
#define PS_CMD_H

#define PS_VERSION "0.1.0"

#define CMD(name) int cmd_##name(int argc, char **argv); extern const char cmd_##name##_usage[];
#include "cmds.h"
#undef CMD

#endif
