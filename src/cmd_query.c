/* SPDX-License-Identifier: MIT */
/*
 * cmd_query.c - `patchsae query`: answers from an index as tables, for
 * people (aligned columns on a tty), for scripts (TSV, the default when
 * stdout is not a tty) and for programs (--json, an object whose keys are
 * the table names and whose values are arrays of row objects).
 *
 * Every answer is built as one or more Tables of text cells with a numeric
 * flag per column, then printed in the chosen format; the queries themselves
 * are idx.h calls. Several tables print as "# name" sections in TSV.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "idx.h"
#include "ps.h"

const char cmd_query_usage[] =
    "answer questions from an index (TSV, aligned text or JSON)\n"
    "usage: patchsae query INDEX latent S\n"
    "       patchsae query INDEX image I [--patch R,C]\n"
    "       patchsae query INDEX class C\n"
    "       patchsae query INDEX top [--sort KEY] [--limit N] [--asc] [--alive] [--search TEXT]\n"
    "       patchsae query INDEX diff [--class C]\n"
    "       patchsae query INDEX sql \"SELECT ...\"\n"
    "\n"
    "  latent S      statistics of latent S under every model, its top images (by\n"
    "                image-level activation and by max patch activation) and the\n"
    "                label distribution of its top images\n"
    "  image I       image I (its id in the index): label, top-5 predictions of every\n"
    "                model, its top latents by image-level activation; with\n"
    "                --patch R,C (0-based row, column of the patch grid) the latents\n"
    "                firing on that patch, grouped common / MODEL-only\n"
    "  class C       class C (index or name): size, its top latents by class-level\n"
    "                count under every model, eval results, remapping groups\n"
    "  top           latents sorted by a statistic\n"
    "  diff          per class: latents in the high / high_low / low_high groups\n"
    "                between the base and the adapted model\n"
    "  sql           any read-only SELECT (see man patchsae-index(5) for the schema)\n"
    "\n"
    "options:\n"
    "  --model M     the model (default: every model, or the base one for top)\n"
    "  --dataset D   the dataset (default: the first)\n"
    "  --sort KEY    latent freq mean max maxpatch entropy share std (default freq)\n"
    "  --limit N     rows per list (default 20; 0 = all)\n"
    "  --asc         ascending order (default descending)\n"
    "  --alive       hide dead latents\n"
    "  --search TEXT latents whose annotation or top class contains TEXT\n"
    "  --base M, --adapted M  the models compared by diff (default: first of each kind)\n"
    "  --tsv | --json | --pretty   output format (default: --pretty on a tty, else --tsv)\n"
    "\n"
    "exit status: 0 found, 1 not found (no such latent, image or class), 2 usage or a bad index\n";

/* ---- tables ---- */

typedef struct Table {
    const char *name;
    int ncol;
    const char *cols[16];
    int num[16];                /* 1: numeric column (right-aligned, JSON number) */
    char **cells;               /* (nrow, ncol), malloc'd strings; NULL = null */
    int nrow, cap;
} Table;

static Table *
table_new(const char *name, const char *spec)
{
    /* spec: "name:n,name,..." where ":n" marks a numeric column */
    Table *t = xcalloc(1, sizeof *t);
    t->name = name;
    char *s = xstrdup(spec), *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok && t->ncol < 16;
         tok = strtok_r(NULL, ",", &save)) {
        char *c = strchr(tok, ':');
        t->num[t->ncol] = c != NULL;
        if (c)
            *c = 0;
        t->cols[t->ncol++] = xstrdup(tok);
    }
    free(s);
    return t;
}

static void
table_free(Table *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->nrow * t->ncol; i++)
        free(t->cells[i]);
    for (int i = 0; i < t->ncol; i++)
        free((char *)t->cols[i]);
    free(t->cells);
    free(t);
}

/* Appends a row; fmt has one conversion per column separated by '\t'. "-" alone = null. */
static void
row(Table *t, const char *fmt, ...) PS_PRINTF(2, 3);

static void
row(Table *t, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (t->nrow == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cells = xrealloc(t->cells, (size_t)t->cap * (size_t)t->ncol * sizeof *t->cells);
    }
    char *p = buf;
    for (int c = 0; c < t->ncol; c++) {
        char *tab = strchr(p, '\t');
        if (tab)
            *tab = 0;
        char **cell = &t->cells[t->nrow * t->ncol + c];
        *cell = strcmp(p, "\x01") ? xstrdup(p) : NULL;
        p = tab ? tab + 1 : p + strlen(p);
    }
    t->nrow++;
}

static int g_digits = 6; /* significant digits: 6 on a tty, 9 for TSV and JSON (float-exact) */

/* A cell for a double, or the null marker for NaN. */
static const char *
fnum(char *buf, double v)
{
    if (isnan(v))
        return "\x01";
    snprintf(buf, 32, "%.*g", g_digits, v);
    return buf;
}

/* Text cells must not contain tabs or newlines (TSV). */
static const char *
clean(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r')
            *p = ' ';
    return s[0] ? s : "\x01";
}

enum { OUT_TSV, OUT_PRETTY, OUT_JSON };

static void
print_tables(Table **ts, int n, int mode)
{
    if (mode == OUT_JSON) {
        json_t *root = json_object();
        for (int i = 0; i < n; i++) {
            json_t *arr = json_array();
            for (int r = 0; r < ts[i]->nrow; r++) {
                json_t *o = json_object();
                for (int c = 0; c < ts[i]->ncol; c++) {
                    const char *v = ts[i]->cells[r * ts[i]->ncol + c];
                    json_t *j;
                    char *end;
                    if (!v)
                        j = json_null();
                    else if (ts[i]->num[c] && (strtod(v, &end), *end == 0 && end != v))
                        j = strchr(v, '.') || strchr(v, 'e') || strchr(v, 'n')
                                ? json_real(strtod(v, NULL))
                                : json_integer(strtoll(v, NULL, 10));
                    else
                        j = json_string(v);
                    json_object_set_new(o, ts[i]->cols[c], j);
                }
                json_array_append_new(arr, o);
            }
            json_object_set_new(root, ts[i]->name, arr);
        }
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        if (s)
            puts(s);
        free(s);
        json_decref(root);
        return;
    }
    for (int i = 0; i < n; i++) {
        Table *t = ts[i];
        if (n > 1)
            printf("%s# %s\n", i ? "\n" : "", t->name);
        if (mode == OUT_TSV) {
            for (int c = 0; c < t->ncol; c++)
                printf("%s%s", c ? "\t" : "", t->cols[c]);
            putchar('\n');
            for (int r = 0; r < t->nrow; r++) {
                for (int c = 0; c < t->ncol; c++) {
                    const char *v = t->cells[r * t->ncol + c];
                    printf("%s%s", c ? "\t" : "", v ? v : "");
                }
                putchar('\n');
            }
            continue;
        }
        int w[16];
        for (int c = 0; c < t->ncol; c++) {
            w[c] = (int)strlen(t->cols[c]);
            for (int r = 0; r < t->nrow; r++) {
                const char *v = t->cells[r * t->ncol + c];
                w[c] = MAX(w[c], v ? (int)strlen(v) : 1);
            }
            w[c] = MIN(w[c], 40);
        }
        for (int c = 0; c < t->ncol; c++)
            printf("%s%*s", c ? "  " : "", t->num[c] ? w[c] : -w[c], t->cols[c]);
        putchar('\n');
        for (int r = 0; r < t->nrow; r++) {
            for (int c = 0; c < t->ncol; c++) {
                const char *v = t->cells[r * t->ncol + c];
                printf("%s%*.*s", c ? "  " : "", t->num[c] ? w[c] : -w[c], w[c], v ? v : "-");
            }
            putchar('\n');
        }
        if (t->nrow == 0)
            printf("(none)\n");
    }
}

/* ---- options ---- */

typedef struct Opt {
    const char *model, *dataset, *base, *adapted, *search, *patch, *cls;
    int sort, limit, asc, alive, mode;
} Opt;

static int
statsets_for(Idx *ix, const Opt *o, IdxStatset **out, int *n, char *err)
{
    IdxStatset *all;
    int na, rc = idx_statsets(ix, &all, &na, err);
    if (rc)
        return rc;
    *n = 0;
    const char *ds = o->dataset;
    if (!ds && na)
        ds = all[0].dataset;
    for (int i = 0; i < na; i++)
        if ((!o->model || !strcmp(all[i].model, o->model)) && !strcmp(all[i].dataset, ds))
            all[(*n)++] = all[i];
    *out = all;
    if (*n == 0)
        return ps_seterr(err, PS_EUSAGE, "no statistics for model %s on dataset %s",
                         o->model ? o->model : "(any)", ds ? ds : "(none)");
    return PS_OK;
}

static int
q_latent(Idx *ix, const Opt *o, const char *arg, Table **ts, int *nt, char *err)
{
    char *end;
    long s = strtol(arg, &end, 10);
    if (*end || s < 0 || s > (1 << 24))
        return ps_seterr(err, PS_EUSAGE, "latent '%s' is not a latent index", arg);
    IdxStatset *ss;
    int n, rc = statsets_for(ix, o, &ss, &n, err);
    if (rc) {
        free(ss);
        return rc;
    }
    Table *st = table_new("stats", "model,dataset,latent:n,n_active:n,freq:n,mean_act:n,max_act:n,"
                                   "max_patch:n,entropy:n,label_std:n,top_class:n,class_name,"
                                   "top_share:n,name");
    Table *tp = table_new("top_images", "model,kind,rank:n,image:n,pos:n,label:n,class_name,"
                                        "value:n,token:n");
    Table *lb = table_new("labels", "model,class:n,class_name,n:n,weight:n");
    ts[(*nt)++] = st;
    ts[(*nt)++] = tp;
    ts[(*nt)++] = lb;
    int found = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (s >= ss[i].d_sae)
            continue;
        IdxLatent l;
        if (idx_latent(ix, ss[i].id, (int32_t)s, &l, err))
            continue;
        found = 1;
        char b[8][32];
        row(st, "%s\t%s\t%ld\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", ss[i].model,
            ss[i].dataset, s, (long long)l.n_active, fnum(b[0], l.freq), fnum(b[1], l.mean_act),
            fnum(b[2], l.max_act), fnum(b[3], l.max_patch), fnum(b[4], l.entropy),
            fnum(b[5], l.label_std), l.top_class >= 0 ? fnum(b[6], l.top_class) : "\x01",
            clean(l.top_class_name), fnum(b[7], l.top_share), clean(l.name));
        for (int kind = 0; kind < 2 && !rc; kind++) {
            IdxTopImage top[256];
            int nt2;
            rc = idx_latent_top(ix, ss[i].id, (int32_t)s, kind, top,
                                o->limit > 0 ? MIN(o->limit, 256) : 256, &nt2, err);
            for (int j = 0; j < nt2 && !rc; j++) {
                char cn[IDX_NAMELEN] = "";
                if (top[j].label >= 0)
                    idx_class_name(ix, ss[i].dataset_id, top[j].label, cn, sizeof cn, NULL);
                char tk[16];
                snprintf(tk, sizeof tk, "%d", top[j].token);
                row(tp, "%s\t%s\t%d\t%lld\t%lld\t%s\t%s\t%s\t%s", ss[i].model,
                    kind ? "patch" : "mean", top[j].rank, (long long)top[j].image_id,
                    (long long)top[j].pos, top[j].label >= 0 ? fnum(b[0], top[j].label) : "\x01",
                    clean(cn), fnum(b[1], top[j].value), kind ? tk : "\x01");
            }
        }
        IdxLabelCount lc[256];
        int nl;
        if (!rc)
            rc = idx_latent_labels(ix, ss[i].id, (int32_t)s, lc, 256, &nl, err);
        for (int j = 0; j < nl && !rc; j++) {
            char cn[IDX_NAMELEN] = "";
            idx_class_name(ix, ss[i].dataset_id, lc[j].cls, cn, sizeof cn, NULL);
            row(lb, "%s\t%d\t%s\t%d\t%s", ss[i].model, lc[j].cls, clean(cn), lc[j].n,
                fnum(b[0], lc[j].weight));
        }
    }
    free(ss);
    if (!rc && !found)
        rc = ps_seterr(err, PS_EUSAGE, "no latent %ld in this index", s);
    return rc;
}

static int
q_image(Idx *ix, const Opt *o, const char *arg, Table **ts, int *nt, char *err)
{
    char *end;
    long long id = strtoll(arg, &end, 10);
    if (*end)
        return ps_seterr(err, PS_EUSAGE, "image '%s' is not an image id", arg);
    IdxImage im;
    int rc = idx_image(ix, id, &im, err);
    if (rc)
        return rc;
    int token = -1;
    if (o->patch) {
        int r, c;
        if (sscanf(o->patch, "%d,%d", &r, &c) != 2 || r < 0 || c < 0 || r >= im.grid ||
            c >= im.grid)
            return ps_seterr(err, PS_EUSAGE, "--patch %s: want ROW,COL in 0..%d", o->patch,
                             im.grid - 1);
        token = 1 + r * im.grid + c;
    }
    Table *ti = table_new("image", "image:n,dataset:n,pos:n,path,label:n,class_name,grid:n,"
                                   "thumb_size:n");
    ts[(*nt)++] = ti;
    char b[4][32];
    row(ti, "%lld\t%lld\t%lld\t%s\t%s\t%s\t%d\t%d", id, (long long)im.dataset_id,
        (long long)im.pos, clean(im.path), im.label >= 0 ? fnum(b[0], im.label) : "\x01",
        clean(im.class_name), im.grid, im.thumb_size);
    IdxModel *ms;
    int nm;
    if ((rc = idx_models(ix, &ms, &nm, err)))
        return rc;
    IdxSae sae;
    int have_sae = idx_find_sae(ix, NULL, &sae, NULL) == PS_OK;
    Table *tp = table_new("predictions", "model,rank:n,class:n,class_name,prob:n,correct");
    Table *tl = table_new("latents", "model,rank:n,latent:n,value:n,name");
    Table *tk = token >= 0 ? table_new("patch", "model,token:n,rank:n,latent:n,value:n,group,name")
                           : NULL;
    ts[(*nt)++] = tp;
    ts[(*nt)++] = tl;
    if (tk)
        ts[(*nt)++] = tk;
    int lim = o->limit > 0 ? MIN(o->limit, 1024) : 1024;
    IdxAct *acts = xmalloc(2 * 1024 * sizeof *acts);
    int nacts[2] = { 0, 0 }, mids[2] = { -1, -1 }, nmod = 0;
    for (int m = 0; m < nm && !rc; m++) {
        if (o->model && strcmp(ms[m].name, o->model))
            continue;
        IdxPred pr[5];
        int np;
        rc = idx_predictions(ix, id, ms[m].id, pr, 5, &np, err);
        for (int j = 0; j < np && !rc; j++)
            row(tp, "%s\t%d\t%d\t%s\t%s\t%s", ms[m].name, pr[j].rank, pr[j].cls,
                clean(pr[j].name), fnum(b[0], pr[j].prob),
                im.label < 0 ? "\x01" : pr[j].cls == im.label ? "yes" : "no");
        if (!have_sae || rc)
            continue;
        IdxAct il[1024];
        int ni;
        rc = idx_image_latents(ix, id, ms[m].id, sae.id, il, lim, &ni, err);
        for (int j = 0; j < ni && !rc; j++) {
            char nmb[IDX_NAMELEN];
            int f;
            idx_annotation(ix, sae.id, il[j].latent, nmb, sizeof nmb, NULL, 0, &f, NULL);
            row(tl, "%s\t%d\t%d\t%s\t%s", ms[m].name, j + 1, il[j].latent, fnum(b[0], il[j].value),
                clean(nmb));
        }
        if (tk && !rc && nmod < 2) {
            int na;
            rc = idx_patch_latents(ix, id, ms[m].id, sae.id, token, acts + nmod * 1024, lim, &na,
                                   err);
            nacts[nmod] = na;
            mids[nmod++] = m;
        }
    }
    /* group patch latents as in PatchSAE's demo: common / MODEL-only (top 5 of each) */
    for (int k = 0; k < nmod && tk; k++) {
        for (int j = 0; j < nacts[k]; j++) {
            const IdxAct *a = &acts[k * 1024 + j];
            int common = 0;
            if (nmod == 2 && j < 5)
                for (int q = 0; q < MIN(5, nacts[1 - k]); q++)
                    common |= acts[(1 - k) * 1024 + q].latent == a->latent;
            char grp[IDX_NAMELEN + 8], nmb[IDX_NAMELEN];
            int f;
            snprintf(grp, sizeof grp, "%s", j >= 5 ? "" : common ? "common" : "");
            if (j < 5 && !common)
                snprintf(grp, sizeof grp, "%s-only", ms[mids[k]].name);
            idx_annotation(ix, sae.id, a->latent, nmb, sizeof nmb, NULL, 0, &f, NULL);
            row(tk, "%s\t%d\t%d\t%d\t%s\t%s\t%s", ms[mids[k]].name, token, j + 1, a->latent,
                fnum(b[0], a->value), clean(grp), clean(nmb));
        }
    }
    free(acts);
    free(ms);
    return rc;
}

static int
q_class(Idx *ix, const Opt *o, const char *arg, Table **ts, int *nt, char *err)
{
    IdxStatset *ss;
    int n, rc = statsets_for(ix, o, &ss, &n, err);
    if (rc) {
        free(ss);
        return rc;
    }
    int cls;
    char *end;
    long v = strtol(arg, &end, 10);
    if (*end == 0 && end != arg)
        cls = (int)v;
    else if ((rc = idx_class_find(ix, ss[0].dataset_id, arg, &cls, err))) {
        free(ss);
        return rc;
    }
    char name[IDX_NAMELEN];
    if ((rc = idx_class_name(ix, ss[0].dataset_id, cls, name, sizeof name, err))) {
        free(ss);
        return rc;
    }
    int64_t size;
    idx_class_size(ix, ss[0].dataset_id, cls, &size, NULL);
    Table *tc = table_new("class", "dataset,class:n,class_name,n_images:n");
    Table *tt = table_new("top_latents", "model,rank:n,latent:n,n_tokens:n,name");
    Table *te = table_new("eval", "model,selected_by,mode,k:n,accuracy:n,n_images:n");
    Table *td = table_new("diff", "base,adapted,group,latent:n,base_rank:n,adapted_rank:n,"
                                  "base_count:n,adapted_count:n");
    ts[(*nt)++] = tc;
    ts[(*nt)++] = tt;
    ts[(*nt)++] = te;
    ts[(*nt)++] = td;
    row(tc, "%s\t%d\t%s\t%lld", ss[0].dataset, cls, clean(name), (long long)size);
    int lim = o->limit > 0 ? MIN(o->limit, 4096) : 4096;
    IdxClassLatent *ct = xmalloc(4096 * sizeof *ct);
    char b[2][32];
    for (int i = 0; i < n && !rc; i++) {
        int nc;
        rc = idx_class_top(ix, ss[i].id, cls, ct, lim, &nc, err);
        for (int j = 0; j < nc && !rc; j++)
            row(tt, "%s\t%d\t%d\t%lld\t%s", ss[i].model, ct[j].rank, ct[j].latent,
                (long long)ct[j].n_tokens, clean(ct[j].name));
        IdxEval *ev;
        int ne;
        if (!rc)
            rc = idx_evals(ix, ss[i].model_id, ss[i].dataset_id, cls, &ev, &ne, err);
        for (int j = 0; j < ne && !rc; j++) {
            char sel[IDX_NAMELEN] = "";
            for (int q = 0; q < n; q++)
                if (ss[q].model_id == ev[j].select_model_id)
                    snprintf(sel, sizeof sel, "%s", ss[q].model);
            row(te, "%s\t%s\t%s\t%d\t%s\t%lld", ss[i].model, clean(sel), ev[j].mode, ev[j].k,
                fnum(b[0], ev[j].accuracy), (long long)ev[j].n_images);
        }
        if (!rc)
            free(ev);
    }
    for (int i = 0; i < n && !rc; i++)
        for (int j = 0; j < n && !rc; j++) {
            if (strcmp(ss[i].kind, "base") || strcmp(ss[j].kind, "adapted"))
                continue;
            IdxDiffRow *dr;
            int nd;
            rc = idx_diff_rows(ix, ss[i].id, ss[j].id, cls, &dr, &nd, err);
            for (int k = 0; k < nd && !rc; k++)
                row(td, "%s\t%s\t%s\t%d\t%s\t%s\t%lld\t%lld", ss[i].model, ss[j].model, dr[k].grp,
                    dr[k].latent, dr[k].base_rank ? fnum(b[0], dr[k].base_rank) : "\x01",
                    dr[k].adapted_rank ? fnum(b[1], dr[k].adapted_rank) : "\x01",
                    (long long)dr[k].base_count, (long long)dr[k].adapted_count);
            if (!rc)
                free(dr);
        }
    free(ct);
    free(ss);
    return rc;
}

static int
q_top(Idx *ix, const Opt *o, Table **ts, int *nt, char *err)
{
    IdxStatset s;
    int rc = idx_find_statset(ix, o->model, o->dataset, &s, err);
    if (rc)
        return rc;
    IdxFilter f;
    idx_filter_init(&f);
    f.hide_dead = o->alive;
    f.search = o->search;
    IdxLatent *ls;
    int n;
    int64_t total;
    rc = idx_latents(ix, s.id, o->sort, !o->asc, &f, o->limit, 0, &ls, &n, &total, err);
    if (rc)
        return rc;
    Table *t = table_new("latents", "latent:n,n_active:n,freq:n,mean_act:n,max_act:n,max_patch:n,"
                                    "entropy:n,label_std:n,top_class:n,class_name,top_share:n,"
                                    "name");
    ts[(*nt)++] = t;
    for (int i = 0; i < n; i++) {
        char b[8][32];
        row(t, "%d\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", ls[i].latent,
            (long long)ls[i].n_active, fnum(b[0], ls[i].freq), fnum(b[1], ls[i].mean_act),
            fnum(b[2], ls[i].max_act), fnum(b[3], ls[i].max_patch), fnum(b[4], ls[i].entropy),
            fnum(b[5], ls[i].label_std),
            ls[i].top_class >= 0 ? fnum(b[6], ls[i].top_class) : "\x01",
            clean(ls[i].top_class_name), fnum(b[7], ls[i].top_share), clean(ls[i].name));
    }
    free(ls);
    return PS_OK;
}

static int
q_diff(Idx *ix, const Opt *o, Table **ts, int *nt, char *err)
{
    IdxStatset b, a;
    int rc = idx_find_statset(ix, o->base, o->dataset, &b, err);
    if (!rc && strcmp(b.kind, "base"))
        rc = ps_seterr(err, PS_EUSAGE, "model %s is not a base model", b.model);
    if (rc)
        return rc;
    IdxStatset *all;
    int n;
    if ((rc = idx_statsets(ix, &all, &n, err)))
        return rc;
    int found = 0;
    for (int i = 0; i < n && !found; i++)
        if (!strcmp(all[i].kind, "adapted") && all[i].dataset_id == b.dataset_id &&
            all[i].sae_id == b.sae_id && (!o->adapted || !strcmp(all[i].model, o->adapted))) {
            a = all[i];
            found = 1;
        }
    free(all);
    if (!found)
        return ps_seterr(err, PS_EUSAGE, "no adapted model%s%s on dataset %s",
                         o->adapted ? " named " : "", o->adapted ? o->adapted : "", b.dataset);
    int cls = -1;
    if (o->cls) {
        char *end;
        long v = strtol(o->cls, &end, 10);
        if (*end == 0 && end != o->cls)
            cls = (int)v;
        else if ((rc = idx_class_find(ix, b.dataset_id, o->cls, &cls, err)))
            return rc;
    }
    IdxDiffRow *dr;
    int nd;
    if ((rc = idx_diff_rows(ix, b.id, a.id, cls, &dr, &nd, err)))
        return rc;
    if (cls >= 0) {
        Table *t = table_new("diff", "class:n,group,latent:n,base_rank:n,adapted_rank:n,"
                                     "base_count:n,adapted_count:n");
        ts[(*nt)++] = t;
        char b1[32], b2[32];
        for (int k = 0; k < nd; k++)
            row(t, "%d\t%s\t%d\t%s\t%s\t%lld\t%lld", dr[k].cls, dr[k].grp, dr[k].latent,
                dr[k].base_rank ? fnum(b1, dr[k].base_rank) : "\x01",
                dr[k].adapted_rank ? fnum(b2, dr[k].adapted_rank) : "\x01",
                (long long)dr[k].base_count, (long long)dr[k].adapted_count);
    } else {
        Table *t = table_new("diff_summary", "class:n,class_name,high:n,high_low:n,low_high:n");
        ts[(*nt)++] = t;
        for (int c = 0; c < b.n_classes; c++) {
            int g[3] = { 0, 0, 0 };
            for (int k = 0; k < nd; k++)
                if (dr[k].cls == c)
                    g[!strcmp(dr[k].grp, "high") ? 0 : !strcmp(dr[k].grp, "high_low") ? 1 : 2]++;
            char cn[IDX_NAMELEN] = "";
            idx_class_name(ix, b.dataset_id, c, cn, sizeof cn, NULL);
            row(t, "%d\t%s\t%d\t%d\t%d", c, clean(cn), g[0], g[1], g[2]);
        }
    }
    free(dr);
    return PS_OK;
}

typedef struct SqlCtx {
    Table *t;
} SqlCtx;

static int
sql_row(void *ctx, int nc, const char *const *names, const char *const *vals)
{
    SqlCtx *c = ctx;
    if (!c->t) {
        char spec[2048] = "";
        for (int i = 0; i < nc && i < 16; i++) {
            char nm[128];
            snprintf(nm, sizeof nm, "%s", names[i]);
            for (char *p = nm; *p; p++)
                if (*p == ',' || *p == ':')
                    *p = '_';
            snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%s%s", i ? "," : "", nm);
        }
        c->t = table_new("rows", spec);
    }
    char line[4096] = "";
    for (int i = 0; i < c->t->ncol; i++) {
        char v[1024];
        snprintf(v, sizeof v, "%s", vals[i] ? vals[i] : "\x01");
        snprintf(line + strlen(line), sizeof line - strlen(line), "%s%s", i ? "\t" : "",
                 vals[i] ? clean(v) : "\x01");
    }
    row(c->t, "%s", line);
    return 0;
}

int
cmd_query(int argc, char **argv)
{
    Opt o = { 0 };
    o.sort = IDX_SORT_FREQ;
    o.limit = 20;
    o.mode = isatty(1) ? OUT_PRETTY : OUT_TSV;
    const char *pos[4] = { 0 };
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "--tsv"))
            o.mode = OUT_TSV;
        else if (!strcmp(a, "--json"))
            o.mode = OUT_JSON;
        else if (!strcmp(a, "--pretty"))
            o.mode = OUT_PRETTY;
        else if (!strcmp(a, "--asc"))
            o.asc = 1;
        else if (!strcmp(a, "--alive"))
            o.alive = 1;
        else if (!strcmp(a, "--model"))
            dst = &o.model;
        else if (!strcmp(a, "--dataset"))
            dst = &o.dataset;
        else if (!strcmp(a, "--base"))
            dst = &o.base;
        else if (!strcmp(a, "--adapted"))
            dst = &o.adapted;
        else if (!strcmp(a, "--search"))
            dst = &o.search;
        else if (!strcmp(a, "--patch"))
            dst = &o.patch;
        else if (!strcmp(a, "--class"))
            dst = &o.cls;
        else if (!strcmp(a, "--sort") || !strcmp(a, "--limit")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "patchsae query: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (a[2] == 's') {
                if ((o.sort = idx_sort_parse(v)) < 0) {
                    fprintf(stderr, "patchsae query: unknown sort key '%s' (latent freq mean max "
                                    "maxpatch entropy share std)\n", v);
                    return 2;
                }
            } else {
                char *end;
                o.limit = (int)strtol(v, &end, 10);
                if (*end || o.limit < 0) {
                    fprintf(stderr, "patchsae query: --limit %s is not a count\n", v);
                    return 2;
                }
            }
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "patchsae query: unknown option %s\n", a);
            return 2;
        } else if (np < 4) {
            pos[np++] = a;
        } else {
            fprintf(stderr, "patchsae query: too many arguments\n");
            return 2;
        }
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "patchsae query: %s needs a value\n", a);
                return 2;
            }
            *dst = argv[++i];
        }
    }
    if (np < 2) {
        fprintf(stderr, "usage: patchsae query INDEX latent S | image I [--patch R,C] | class C | "
                        "top | diff | sql SELECT   (--help for more)\n");
        return 2;
    }
    const char *what = pos[1];
    int need = !strcmp(what, "latent") || !strcmp(what, "image") || !strcmp(what, "class") ||
               !strcmp(what, "sql");
    int known = need || !strcmp(what, "top") || !strcmp(what, "diff");
    if (!known || (need && np != 3) || (!need && np != 2)) {
        fprintf(stderr, "patchsae query: %s\n",
                !known ? "unknown question (latent image class top diff sql)"
                       : need ? "this question takes one argument" : "this question takes no "
                                                                     "argument");
        return 2;
    }
    g_digits = o.mode == OUT_PRETTY ? 6 : 9;
    char err[PS_ERRLEN];
    Idx *ix;
    if (idx_open_readonly(&ix, pos[0], err)) {
        fprintf(stderr, "patchsae query: %s\n", err);
        return 2;
    }
    Table *ts[8] = { 0 };
    int nt = 0, rc;
    if (!strcmp(what, "latent"))
        rc = q_latent(ix, &o, pos[2], ts, &nt, err);
    else if (!strcmp(what, "image"))
        rc = q_image(ix, &o, pos[2], ts, &nt, err);
    else if (!strcmp(what, "class"))
        rc = q_class(ix, &o, pos[2], ts, &nt, err);
    else if (!strcmp(what, "top"))
        rc = q_top(ix, &o, ts, &nt, err);
    else if (!strcmp(what, "diff"))
        rc = q_diff(ix, &o, ts, &nt, err);
    else {
        SqlCtx c = { NULL };
        rc = idx_select(ix, pos[2], sql_row, &c, err);
        if (!c.t)
            c.t = table_new("rows", "result");
        ts[nt++] = c.t;
    }
    if (!rc)
        print_tables(ts, nt, o.mode);
    else
        fprintf(stderr, "patchsae query: %s\n", err);
    for (int i = 0; i < nt; i++)
        table_free(ts[i]);
    idx_close(ix);
    return rc == PS_OK ? 0 : rc == PS_EUSAGE ? 1 : 2;
}
