/* SPDX-License-Identifier: MIT */
/*
 * cmd_synth.c - `patchsae synth`: writes an index with random content in the
 * real format (idx_synth), to try the explorer and `query` without a model
 * and to benchmark queries at full scale (bench/bench_idx.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "idx.h"
#include "ps.h"

const char cmd_synth_usage[] =
    "write a synthetic index (random content, real format) for trials and benchmarks\n"
    "usage: patchsae synth OUT.db [--images N] [--latents S] [--grid G] [--l0 L]\n"
    "                      [--classes C] [--models 1|2] [--k-blob K] [--k-top K]\n"
    "                      [--thumb PX] [--seed N] [--shard I/N] [--quiet]\n"
    "\n"
    "Defaults: 100 images, 512 latents, grid 4, l0 20, 10 classes, 2 models, thumbnails\n"
    "of 32 px. ViT-B/16 scale: --images 50000 --latents 49152 --grid 14 --thumb 224.\n"
    "OUT.db must not exist.\n";

static void
show(int done, int total)
{
    fprintf(stderr, "\r%d / %d images", done, total);
}

int
cmd_synth(int argc, char **argv)
{
    IdxSynth s;
    idx_synth_init(&s);
    const char *out = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *dst = NULL;
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "--images"))
            dst = &s.n_images;
        else if (!strcmp(a, "--latents"))
            dst = &s.d_sae;
        else if (!strcmp(a, "--grid"))
            dst = &s.grid;
        else if (!strcmp(a, "--l0"))
            dst = &s.l0;
        else if (!strcmp(a, "--classes"))
            dst = &s.n_classes;
        else if (!strcmp(a, "--models"))
            dst = &s.n_models;
        else if (!strcmp(a, "--k-blob"))
            dst = &s.k_blob;
        else if (!strcmp(a, "--k-top"))
            dst = &s.k_top;
        else if (!strcmp(a, "--thumb"))
            dst = &s.thumb;
        else if (!strcmp(a, "--seed") || !strcmp(a, "--shard")) {
            if (i + 1 >= argc)
                goto usage;
            const char *v = argv[++i];
            if (a[2] == 's' && a[3] == 'e') {
                s.seed = (unsigned)strtoul(v, NULL, 10);
            } else if (sscanf(v, "%d/%d", &s.shard_i, &s.shard_n) != 2 || s.shard_n < 1 ||
                       s.shard_i < 0 || s.shard_i >= s.shard_n) {
                fprintf(stderr, "patchsae synth: --shard %s: want I/N with 0 <= I < N\n", v);
                return 2;
            }
            continue;
        } else if (a[0] == '-') {
            fprintf(stderr, "patchsae synth: unknown option %s\n", a);
            return 2;
        } else if (!out) {
            out = a;
            continue;
        } else {
            goto usage;
        }
        if (i + 1 >= argc)
            goto usage;
        char *end;
        *dst = (int)strtol(argv[++i], &end, 10);
        if (*end || *dst < 0) {
            fprintf(stderr, "patchsae synth: %s %s is not a count\n", a, argv[i]);
            return 2;
        }
    }
    if (!out)
        goto usage;
    if (access(out, F_OK) == 0) {
        fprintf(stderr, "patchsae synth: %s exists\n", out);
        return 2;
    }
    char err[PS_ERRLEN];
    Idx *ix;
    int rc = idx_open(&ix, out, err);
    if (!rc)
        rc = idx_synth(ix, &s, quiet || !isatty(2) ? NULL : show, err);
    idx_close(ix);
    if (!quiet && isatty(2))
        fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "patchsae synth: %s\n", err);
        unlink(out);
        return 2;
    }
    return 0;
usage:
    fprintf(stderr, "usage: patchsae synth OUT.db [--images N] [--latents S] ... (--help)\n");
    return 2;
}
