/* SPDX-License-Identifier: MIT */
/*
 * cmd_convert.c - `patchsae convert IN.pt OUT.safetensors`: every tensor of a
 * PyTorch checkpoint (read by pt.c, nothing executed) written to safetensors
 * under its dotted name ("state_dict.W_enc"), contiguous, in its own dtype or
 * as float32 with --f32. --key picks a subtree ("state_dict") and drops it
 * from the names. The other top-level values (a pickled config, an epoch)
 * go to the metadata as their Python-like text, so nothing readable is lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "ps.h"
#include "pt.h"
#include "st.h"

const char cmd_convert_usage[] =
    "convert a PyTorch checkpoint to safetensors\n"
    "usage: patchsae convert [--key KEY] [--f32] IN.pt OUT.safetensors\n"
    "\n"
    "Reads IN (a torch.save file: zip or legacy format; PatchSAE SAEs, Dassl/MaPLe\n"
    "checkpoints, state dicts) without Python and without running any of its code,\n"
    "and writes every tensor to OUT under its dotted name, e.g. state_dict.W_enc.\n"
    "Other top-level values (a pickled config, the epoch) are kept as metadata text.\n"
    "A checkpoint that names code to run (os.system, eval, ...) is refused.\n"
    "\n"
    "  --key KEY   convert only the subtree KEY (dotted, e.g. state_dict) and drop\n"
    "              it from the names\n"
    "  --f32       store floating-point tensors as F32 (default: their own dtype)\n"
    "\n"
    "Exit status: 0 written, 2 nothing written (bad usage, unreadable or refused input).\n";

#define MAX_META 256

typedef struct Conv {
    PtTensor const **t; /* tensors to write */
    char **name;
    int n, cap;
    char **mkey, **mval; /* metadata */
    int nm;
    int dup;            /* a name seen twice */
    char dupname[128];
} Conv;

static int
name_seen(const Conv *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->name[i], name))
            return 1;
    return 0;
}

static int
collect(void *ctx, const char *name, const PtObj *o)
{
    Conv *c = ctx;
    if (o->type != PT_TENSOR) {
        /* top-level scalars and objects: metadata */
        if (*name && !strchr(name, '.') && o->type != PT_DICT && c->nm < MAX_META) {
            char buf[4096];
            c->mkey[c->nm] = xstrdup(name);
            c->mval[c->nm++] = xstrdup(pt_repr(o, buf, sizeof buf));
        }
        return 0;
    }
    const char *nm = *name ? name : "tensor";
    if (!strcmp(nm, "__metadata__") || name_seen(c, nm)) {
        c->dup = 1;
        snprintf(c->dupname, sizeof c->dupname, "%s", nm);
        return -1;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->t = xrealloc(c->t, (size_t)c->cap * sizeof *c->t);
        c->name = xrealloc(c->name, (size_t)c->cap * sizeof *c->name);
    }
    c->t[c->n] = o->u.t;
    c->name[c->n++] = xstrdup(nm);
    return 1;
}

static int
is_float(StDtype d)
{
    return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F64;
}

static int
convert(const char *in, const char *out, const char *key, int f32, char *err)
{
    PtFile *f;
    int rc = pt_load(&f, in, err);
    if (rc)
        return rc;
    const PtObj *root = key ? pt_find(pt_root(f), key) : pt_root(f);
    Conv c = { 0 };
    c.mkey = xcalloc(MAX_META, sizeof *c.mkey);
    c.mval = xcalloc(MAX_META, sizeof *c.mval);
    StWriter *w = NULL;
    if (!root) {
        rc = ps_seterr(err, PS_EUSAGE, "%s: no key %s", in, key);
        goto out;
    }
    rc = pt_walk(root, collect, &c, err);
    if (c.dup)
        rc = ps_seterr(err, PS_EFORMAT, "%s: two tensors named %s", in, c.dupname);
    if (rc)
        goto out;
    if (c.n == 0) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: no tensors%s%s", in, key ? " under " : "",
                       key ? key : "");
        goto out;
    }
    w = st_writer_new();
    for (int i = 0; i < c.n; i++) {
        const PtTensor *t = c.t[i];
        const void *data;
        StDtype dt = t->dtype;
        if (f32 && is_float(dt)) {
            const float *y;
            rc = pt_tensor_f32(t, &y, err);
            data = y;
            dt = ST_F32;
        } else {
            rc = pt_tensor_data(t, &data, NULL, err);
        }
        if (rc) {
            ps_preferr(err, rc, "%s", c.name[i]);
            goto out;
        }
        st_writer_add(w, c.name[i], dt, t->nd, t->shape, data);
    }
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "patchsae.source", in);
    for (int i = 0; i < c.nm; i++)
        if (strcmp(c.mkey[i], "format") && strncmp(c.mkey[i], "patchsae.", 9))
            st_writer_meta(w, c.mkey[i], c.mval[i]);
    rc = st_writer_save(w, out, err);
    if (rc == PS_OK)
        printf("%s: %d tensors written to %s\n", in, c.n, out);
out:
    st_writer_free(w);
    for (int i = 0; i < c.n; i++)
        free(c.name[i]);
    for (int i = 0; i < c.nm; i++) {
        free(c.mkey[i]);
        free(c.mval[i]);
    }
    free(c.t);
    free(c.name);
    free(c.mkey);
    free(c.mval);
    pt_close(f);
    return rc;
}

int
cmd_convert(int argc, char **argv)
{
    const char *key = NULL, *files[2];
    int nf = 0, f32 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--key") && i + 1 < argc) {
            key = argv[++i];
        } else if (!strcmp(argv[i], "--f32")) {
            f32 = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "patchsae convert: unknown option %s\n%s", argv[i], cmd_convert_usage);
            return 2;
        } else if (nf < 2) {
            files[nf++] = argv[i];
        } else {
            fprintf(stderr, "patchsae convert: too many arguments\n%s", cmd_convert_usage);
            return 2;
        }
    }
    if (nf != 2) {
        fputs(cmd_convert_usage, stderr);
        return 2;
    }
    char err[PS_ERRLEN] = "";
    if (convert(files[0], files[1], key, f32, err) != PS_OK) {
        fprintf(stderr, "patchsae convert: %s\n", err);
        return 2;
    }
    return 0;
}
