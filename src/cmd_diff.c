/* SPDX-License-Identifier: MIT */
/*
 * cmd_diff.c - `patchsae diff`: a base model against an adapted one over the
 * same dataset and SAE of an index (diff.h): the per-class remapping groups
 * (stored into the index's diff_groups), per-latent changes ranked, and the
 * paper's Table 1 summary, as TSV sections ("# name" lines, as `query`) or
 * one JSON object.
 *
 * Every result is first built as jansson arrays of objects (keys in column
 * order); TSV prints the same objects, so both outputs always agree.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "diff.h"
#include "idx.h"
#include "ps.h"

const char cmd_diff_usage[] =
    "compare a base and an adapted model: remapping groups, latent changes, Table 1\n"
    "usage: patchsae diff --index I [--base M] [--adapted M2] [--dataset NAME] [--top-n 50]\n"
    "                     [--low-n 100] [--class C] [--sort KEY] [--latents N] [--json]\n"
    "                     [--table1] [--no-store]\n"
    "\n"
    "  --index I       the index (models, statistics and predictions of both)\n"
    "  --base M        the base model's name in the index (default: the first base model)\n"
    "  --adapted M2    the adapted model's name (default: the first adapted model)\n"
    "  --dataset NAME  the dataset (default: the first with statistics of the base model)\n"
    "  --top-n N       \"high\" bound: a class's top-N latents by class count (default 50)\n"
    "  --low-n N       \"low\" bound: outside the top-N (default 100)\n"
    "  --class C       group rows of one class only (name or index)\n"
    "  --sort KEY      latent table order: jaccard (ascending, default), dfreq, dmean,\n"
    "                  dpurity (by |delta| descending)\n"
    "  --latents N     rows of the latent table (default 50; 0 = all)\n"
    "  --json          one JSON object instead of TSV sections\n"
    "  --table1        only the summary as a Markdown row in the paper's Table 1 layout\n"
    "  --no-store      do not write the groups into the index\n"
    "\n"
    "Per class, latents are ranked by class-level count (tokens above tau; ties by lower\n"
    "latent; count 0 = unranked). Groups (paper §4.2.1; the exact rule is inferred): high =\n"
    "top-N under both models; high_low = top-N under base but not in the adapted top-low-N;\n"
    "low_high the reverse. Sections: summary (mean group sizes per class over base classes,\n"
    "the first ceil(C/2), and novel classes; top-1 accuracy of both models from the stored\n"
    "predictions; delta = 100 (adapted - base) / (100 - base) on base classes), classes\n"
    "(group sizes per class), groups (one row per latent), latents (delta of frequency, mean\n"
    "activation and top-image class purity, adapted - base, and the Jaccard overlap of the\n"
    "top images). Empty TSV cells / JSON null: undefined.\n";

enum { O_INDEX = 256, O_BASE, O_ADAPTED, O_DATASET, O_TOPN, O_LOWN, O_CLASS, O_SORT, O_LATENTS,
       O_JSON, O_TABLE1, O_NOSTORE, O_HELP };

static const struct option longopts[] = {
    { "index", required_argument, NULL, O_INDEX },
    { "base", required_argument, NULL, O_BASE },
    { "adapted", required_argument, NULL, O_ADAPTED },
    { "dataset", required_argument, NULL, O_DATASET },
    { "top-n", required_argument, NULL, O_TOPN },
    { "low-n", required_argument, NULL, O_LOWN },
    { "class", required_argument, NULL, O_CLASS },
    { "sort", required_argument, NULL, O_SORT },
    { "latents", required_argument, NULL, O_LATENTS },
    { "json", no_argument, NULL, O_JSON },
    { "table1", no_argument, NULL, O_TABLE1 },
    { "no-store", no_argument, NULL, O_NOSTORE },
    { "help", no_argument, NULL, O_HELP },
    { NULL, 0, NULL, 0 },
};

static int
parse_int(const char *opt, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "patchsae diff: %s %s: expected an integer in %ld..%ld\n", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static json_t *
jnum(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

/* One TSV section from an array of objects (keys of the first row are the header). */
static void
print_tsv(const char *name, json_t *rows, int first)
{
    printf("%s# %s\n", first ? "" : "\n", name);
    if (!json_array_size(rows))
        return;
    const char *k;
    json_t *v;
    int c = 0;
    json_object_foreach(json_array_get(rows, 0), k, v)
        printf("%s%s", c++ ? "\t" : "", k);
    putchar('\n');
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        c = 0;
        json_object_foreach(row, k, v) {
            fputs(c++ ? "\t" : "", stdout);
            if (json_is_integer(v))
                printf("%lld", (long long)json_integer_value(v));
            else if (json_is_real(v))
                printf("%.9g", json_real_value(v));
            else if (json_is_string(v)) {
                for (const char *p = json_string_value(v); *p; p++)
                    putchar(*p == '\t' || *p == '\n' || *p == '\r' ? ' ' : *p);
            }
        }
        putchar('\n');
    }
}

static void
fmt2(char *b, size_t n, double x, double y)
{
    char u[32], w[32];
    snprintf(u, sizeof u, isnan(x) ? "-" : "%.2f", x);
    snprintf(w, sizeof w, isnan(y) ? "-" : "%.2f", y);
    snprintf(b, n, "%s/%s", u, w);
}

int
cmd_diff(int argc, char **argv)
{
    const char *index = NULL, *bname = NULL, *aname = NULL, *dsname = NULL, *cls_arg = NULL;
    int hi = DIFF_HI, lo = DIFF_LO, sort = DIFF_SORT_JACCARD, n_lat = 50, json = 0, table1 = 0;
    int store = 1, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_INDEX: index = optarg; break;
        case O_BASE: bname = optarg; break;
        case O_ADAPTED: aname = optarg; break;
        case O_DATASET: dsname = optarg; break;
        case O_TOPN:
            if (parse_int("--top-n", optarg, 1, 1 << 30, &hi))
                return 2;
            break;
        case O_LOWN:
            if (parse_int("--low-n", optarg, 1, 1 << 30, &lo))
                return 2;
            break;
        case O_CLASS: cls_arg = optarg; break;
        case O_SORT:
            if ((sort = diff_sort_parse(optarg)) < 0) {
                fprintf(stderr, "patchsae diff: --sort %s: one of jaccard dfreq dmean dpurity\n",
                        optarg);
                return 2;
            }
            break;
        case O_LATENTS:
            if (parse_int("--latents", optarg, 0, 1 << 30, &n_lat))
                return 2;
            break;
        case O_JSON: json = 1; break;
        case O_TABLE1: table1 = 1; break;
        case O_NOSTORE: store = 0; break;
        case 'h':
        case O_HELP: fputs(cmd_diff_usage, stdout); return 0;
        default: fprintf(stderr, "usage: see patchsae diff --help\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "patchsae diff: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (!index) {
        fprintf(stderr, "patchsae diff: --index is required (see --help)\n");
        return 2;
    }
    if (lo < hi) {
        fprintf(stderr, "patchsae diff: --low-n %d is below --top-n %d\n", lo, hi);
        return 2;
    }

    char err[PS_ERRLEN];
    int status = 2, nm = 0;
    Idx *ix = NULL;
    IdxModel *ms = NULL;
    DiffList gl = { 0 };
    DiffLatent *lat = NULL;
    json_t *root = NULL;
    if (access(index, F_OK)) {
        fprintf(stderr, "patchsae diff: %s: %s\n", index, strerror(errno));
        goto done;
    }
    if ((store ? idx_open(&ix, index, err) : idx_open_readonly(&ix, index, err)) ||
        idx_models(ix, &ms, &nm, err)) {
        fprintf(stderr, "patchsae diff: %s\n", err);
        goto done;
    }
    if (!aname)
        for (int i = 0; i < nm && !aname; i++)
            if (!strcmp(ms[i].kind, "adapted"))
                aname = ms[i].name;
    if (!aname) {
        fprintf(stderr, "patchsae diff: %s has no adapted model\n", index);
        goto done;
    }
    IdxStatset b, a;
    if (idx_find_statset(ix, bname, dsname, &b, err) ||
        idx_find_statset(ix, aname, dsname ? dsname : b.dataset, &a, err)) {
        fprintf(stderr, "patchsae diff: %s\n", err);
        goto done;
    }
    if (b.id == a.id || b.sae_id != a.sae_id || b.d_sae != a.d_sae) {
        fprintf(stderr, "patchsae diff: %s and %s on %s: need two models with the same SAE\n",
                b.model, a.model, b.dataset);
        goto done;
    }
    int C = b.n_classes, S = b.d_sae, only = -1;
    if (cls_arg) {
        char *end;
        long v = strtol(cls_arg, &end, 10);
        if (*cls_arg && !*end && v >= 0 && v < C)
            only = (int)v;
        else if (idx_class_find(ix, b.dataset_id, cls_arg, &only, err)) {
            fprintf(stderr, "patchsae diff: --class %s: %s\n", cls_arg, err);
            goto done;
        }
    }
    if (diff_groups_load(ix, b.id, a.id, S, hi, lo, &gl, err)) {
        fprintf(stderr, "patchsae diff: %s: %s\n", index, err);
        goto done;
    }
    if (store && diff_groups_store(ix, b.id, a.id, hi, lo, gl.e, gl.n, err)) {
        fprintf(stderr, "patchsae diff: %s\n", err);
        goto done;
    }
    DiffSummary sm;
    diff_summarise(gl.e, gl.n, C, &sm);
    if (diff_accuracy_load(ix, b.model_id, b.dataset_id, sm.n_base, sm.acc[0], sm.n_img[0], err) ||
        diff_accuracy_load(ix, a.model_id, a.dataset_id, sm.n_base, sm.acc[1], sm.n_img[1], err)) {
        fprintf(stderr, "patchsae diff: %s\n", err);
        goto done;
    }
    sm.delta = diff_delta(sm.acc[0][0], sm.acc[1][0]);
    status = 0;

    if (table1) {
        char h[64], hl[64], lh[64], ab[64], aa[64];
        fmt2(h, sizeof h, sm.grp[DIFF_HIGH][0], sm.grp[DIFF_HIGH][1]);
        fmt2(hl, sizeof hl, sm.grp[DIFF_HIGH_LOW][0], sm.grp[DIFF_HIGH_LOW][1]);
        fmt2(lh, sizeof lh, sm.grp[DIFF_LOW_HIGH][0], sm.grp[DIFF_LOW_HIGH][1]);
        fmt2(ab, sizeof ab, sm.acc[0][0], sm.acc[0][1]);
        fmt2(aa, sizeof aa, sm.acc[1][0], sm.acc[1][1]);
        printf("| Dataset | high b/n | h→l b/n | l→h b/n | %s base/novel | %s base/novel "
               "| Δ base %% |\n", b.model, a.model);
        printf("|---|---|---|---|---|---|---|\n");
        printf("| %s | %s | %s | %s | %s | %s | ", b.dataset, h, hl, lh, ab, aa);
        printf(isnan(sm.delta) ? "- |\n" : "%.2f |\n", sm.delta);
        goto done;
    }

    root = json_object();
    json_t *jsum = json_array(), *o = json_object();
    json_object_set_new(o, "dataset", json_string(b.dataset));
    json_object_set_new(o, "base", json_string(b.model));
    json_object_set_new(o, "adapted", json_string(a.model));
    json_object_set_new(o, "top_n", json_integer(hi));
    json_object_set_new(o, "low_n", json_integer(lo));
    json_object_set_new(o, "classes", json_integer(C));
    json_object_set_new(o, "base_classes", json_integer(sm.n_base));
    static const char *const half[2] = { "base", "novel" };
    for (int g = 0; g < DIFF_N_GRP; g++)
        for (int h = 0; h < 2; h++) {
            char k[32];
            snprintf(k, sizeof k, "%s_%s", diff_grp_names[g], half[h]);
            json_object_set_new(o, k, jnum(sm.grp[g][h]));
        }
    for (int m = 0; m < 2; m++)
        for (int h = 0; h < 2; h++) {
            char k[48];
            snprintf(k, sizeof k, "%s_acc_%s", m ? "adapted" : "base", half[h]);
            json_object_set_new(o, k, jnum(sm.acc[m][h]));
            snprintf(k, sizeof k, "%s_images_%s", m ? "adapted" : "base", half[h]);
            json_object_set_new(o, k, json_integer(sm.n_img[m][h]));
        }
    json_object_set_new(o, "delta_base", jnum(sm.delta));
    json_array_append_new(jsum, o);
    json_object_set_new(root, "summary", jsum);

    json_t *jcls = json_array(), *jgrp = json_array(), *jlat = json_array();
    int *cnt = xcalloc((size_t)C * DIFF_N_GRP, sizeof *cnt);
    for (int i = 0; i < gl.n; i++)
        if (gl.e[i].cls < C)
            cnt[gl.e[i].cls * DIFF_N_GRP + gl.e[i].grp]++;
    char **names = xcalloc((size_t)C, sizeof *names);
    for (int k = 0; k < C; k++) {
        char nb[IDX_NAMELEN] = "";
        idx_class_name(ix, b.dataset_id, k, nb, sizeof nb, NULL);
        names[k] = xstrdup(nb);
        if (only >= 0 && k != only)
            continue;
        o = json_object();
        json_object_set_new(o, "class", json_integer(k));
        json_object_set_new(o, "class_name", json_string(names[k]));
        for (int g = 0; g < DIFF_N_GRP; g++)
            json_object_set_new(o, diff_grp_names[g], json_integer(cnt[k * DIFF_N_GRP + g]));
        json_array_append_new(jcls, o);
    }
    free(cnt);
    for (int i = 0; i < gl.n; i++) {
        const DiffEntry *e = &gl.e[i];
        if ((only >= 0 && e->cls != only) || e->cls >= C)
            continue;
        o = json_object();
        json_object_set_new(o, "class", json_integer(e->cls));
        json_object_set_new(o, "class_name", json_string(names[e->cls]));
        json_object_set_new(o, "group", json_string(diff_grp_names[e->grp]));
        json_object_set_new(o, "latent", json_integer(e->latent));
        json_object_set_new(o, "base_rank",
                            e->base_rank ? json_integer(e->base_rank) : json_null());
        json_object_set_new(o, "adapted_rank",
                            e->adapted_rank ? json_integer(e->adapted_rank) : json_null());
        json_object_set_new(o, "base_count", json_integer(e->base_count));
        json_object_set_new(o, "adapted_count", json_integer(e->adapted_count));
        json_array_append_new(jgrp, o);
    }
    for (int k = 0; k < C; k++)
        free(names[k]);
    free(names);
    if (diff_latents_load(ix, b.id, a.id, S, &lat, err)) {
        fprintf(stderr, "patchsae diff: %s\n", err);
        status = 2;
        goto done;
    }
    diff_sort(lat, S, sort);
    for (int i = 0; i < S && (n_lat == 0 || i < n_lat); i++) {
        const DiffLatent *d = &lat[i];
        o = json_object();
        json_object_set_new(o, "latent", json_integer(d->latent));
        json_object_set_new(o, "base_freq", jnum(d->freq[0]));
        json_object_set_new(o, "adapted_freq", jnum(d->freq[1]));
        json_object_set_new(o, "d_freq", jnum(d->d_freq));
        json_object_set_new(o, "base_mean", jnum(d->mean[0]));
        json_object_set_new(o, "adapted_mean", jnum(d->mean[1]));
        json_object_set_new(o, "d_mean", jnum(d->d_mean));
        json_object_set_new(o, "base_purity", jnum(d->purity[0]));
        json_object_set_new(o, "adapted_purity", jnum(d->purity[1]));
        json_object_set_new(o, "d_purity", jnum(d->d_purity));
        json_object_set_new(o, "jaccard", jnum(d->jaccard));
        json_object_set_new(o, "n_common", json_integer(d->n_common));
        json_array_append_new(jlat, o);
    }
    json_object_set_new(root, "classes", jcls);
    json_object_set_new(root, "groups", jgrp);
    json_object_set_new(root, "latents", jlat);
    if (json) {
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        if (s)
            puts(s);
        free(s);
    } else {
        print_tsv("summary", json_object_get(root, "summary"), 1);
        print_tsv("classes", jcls, 0);
        print_tsv("groups", jgrp, 0);
        print_tsv("latents", jlat, 0);
    }

done:
    json_decref(root);
    free(lat);
    diff_list_free(&gl);
    free(ms);
    idx_close(ix);
    return status;
}
