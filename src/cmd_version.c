/* SPDX-License-Identifier: MIT */
/* cmd_version.c - `patchsae version`: the program version and the libraries it runs on. */
#include <cblas.h>
#include <sqlite3.h>
#include <stdio.h>

#include "cmd.h"

const char cmd_version_usage[] =
    "print the version and the libraries in use\n"
    "usage: patchsae version\n";

int
cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("patchsae %s\nsqlite %s\nopenblas %s (core %s, %d threads)\n", PS_VERSION,
           sqlite3_libversion(), openblas_get_config(), openblas_get_corename(),
           openblas_get_num_threads());
    return 0;
}
