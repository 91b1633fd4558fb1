/* SPDX-License-Identifier: MIT */
/*
 * cmd_merge.c - `patchsae merge`: combines the indexes that sharded builds
 * (`index --shard i/n`) wrote into one, with the same statistics and top-k
 * lists as a single build (stats_merge_shards). The output is written under
 * a temporary name beside OUT and renamed when complete, so a failed or
 * killed merge never leaves a half-written OUT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "idx.h"
#include "ps.h"
#include "stats.h"

const char cmd_merge_usage[] =
    "combine shard indexes into one\n"
    "usage: patchsae merge [--force] [--quiet] OUT.db SHARD.db...\n"
    "\n"
    "Copies the images, thumbnails, predictions, patch activations, annotations and\n"
    "eval results of every shard into OUT.db and merges their statistics exactly\n"
    "(frequency, mean and max activation, top images, class counts), then\n"
    "recomputes the base/adapted remapping groups. Shards must not overlap and\n"
    "must be finished. OUT.db must not exist unless --force is given.\n";

/* Removes an SQLite file's -wal and -shm companions (and the file itself if main). */
static void
unlink_db(const char *p, int main_too)
{
    size_t n = strlen(p);
    char *b = xmalloc(n + 5);
    if (main_too)
        unlink(p);
    memcpy(b, p, n);
    memcpy(b + n, "-wal", 5);
    unlink(b);
    memcpy(b + n, "-shm", 5);
    unlink(b);
    free(b);
}

int
cmd_merge(int argc, char **argv)
{
    int force = 0, quiet = 0, np = 0;
    const char **pos = xcalloc((size_t)argc, sizeof *pos);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--force"))
            force = 1;
        else if (!strcmp(argv[i], "--quiet"))
            quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "patchsae merge: unknown option %s\n", argv[i]);
            free(pos);
            return 2;
        } else
            pos[np++] = argv[i];
    }
    if (np < 2) {
        fprintf(stderr, "usage: patchsae merge [--force] OUT.db SHARD.db...\n");
        free(pos);
        return 2;
    }
    const char *out = pos[0];
    if (!force && access(out, F_OK) == 0) {
        fprintf(stderr, "patchsae merge: %s exists (use --force to replace it)\n", out);
        free(pos);
        return 2;
    }
    for (int i = 1; i < np; i++)
        if (!strcmp(pos[i], out)) {
            fprintf(stderr, "patchsae merge: %s is both the output and a shard\n", out);
            free(pos);
            return 2;
        }
    char tmp[4096], err[PS_ERRLEN];
    if (ps_check_output(out, err)) {
        fprintf(stderr, "patchsae merge: %s\n", err);
        free(pos);
        return 2;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    unlink_db(tmp, 1);
    Idx *ix;
    int rc = idx_open(&ix, tmp, err);
    if (!rc) {
        if (!quiet && isatty(2))
            fprintf(stderr, "merging %d shards into %s ...\n", np - 1, out);
        double t0 = ps_now();
        rc = stats_merge_shards(ix, np - 1, pos + 1, err);
        if (!rc)
            rc = idx_exec(ix, "PRAGMA wal_checkpoint(TRUNCATE)", err);
        idx_close(ix);
        if (!rc)
            unlink_db(out, 0); /* a stale -wal of a replaced OUT must not apply to the new file */
        if (!rc && rename(tmp, out) != 0)
            rc = ps_seterr(err, PS_EIO, "rename %s to %s failed", tmp, out);
        if (!rc && !quiet && isatty(2))
            fprintf(stderr, "merged %d shards in %.1f s\n", np - 1, ps_now() - t0);
    }
    if (rc) {
        fprintf(stderr, "patchsae merge: %s\n", err);
        unlink_db(tmp, 1);
    }
    free(pos);
    return rc ? 2 : 0;
}
