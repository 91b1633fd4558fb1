/* SPDX-License-Identifier: MIT */
/*
 * cmd_annotate.c - `patchsae annotate`: names a latent (and adds a note) in
 * an index, so the name shows in the explorer, in `query` and in the
 * latent_summary view, and travels with the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "idx.h"
#include "ps.h"

const char cmd_annotate_usage[] =
    "name a latent (with an optional note) in an index\n"
    "usage: patchsae annotate INDEX S NAME [NOTE] [--sae PATH]\n"
    "       patchsae annotate INDEX S --delete [--sae PATH]\n"
    "\n"
    "Sets (or replaces) the annotation of latent S of the index's SAE (--sae PATH\n"
    "picks one when the index holds several), or removes it with --delete.\n";

int
cmd_annotate(int argc, char **argv)
{
    const char *pos[4] = { 0 }, *sae_path = NULL;
    int np = 0, del = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--delete"))
            del = 1;
        else if (!strcmp(argv[i], "--sae") && i + 1 < argc)
            sae_path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "patchsae annotate: unknown option %s\n", argv[i]);
            return 2;
        } else if (np < 4)
            pos[np++] = argv[i];
        else {
            fprintf(stderr, "patchsae annotate: too many arguments\n");
            return 2;
        }
    }
    if (del ? np != 2 : (np < 3 || np > 4)) {
        fprintf(stderr, "usage: patchsae annotate INDEX S NAME [NOTE] | INDEX S --delete\n");
        return 2;
    }
    char *end;
    long s = strtol(pos[1], &end, 10);
    if (*end || end == pos[1] || s < 0) {
        fprintf(stderr, "patchsae annotate: '%s' is not a latent index\n", pos[1]);
        return 2;
    }
    if (!del && !pos[2][0]) {
        fprintf(stderr, "patchsae annotate: the name is empty (use --delete to remove)\n");
        return 2;
    }
    char err[PS_ERRLEN];
    Idx *ix;
    IdxSae sae;
    int rc = idx_open(&ix, pos[0], err);
    if (!rc)
        rc = idx_find_sae(ix, sae_path, &sae, err);
    if (!rc && s >= sae.d_sae)
        rc = ps_seterr(err, PS_EUSAGE, "latent %ld outside 0..%d of SAE %s", s, sae.d_sae - 1,
                       sae.path);
    if (!rc)
        rc = del ? idx_unannotate(ix, sae.id, (int32_t)s, err)
                 : idx_annotate(ix, sae.id, (int32_t)s, pos[2], np == 4 ? pos[3] : NULL, err);
    idx_close(ix);
    if (rc) {
        fprintf(stderr, "patchsae annotate: %s\n", err);
        return 2;
    }
    return 0;
}
