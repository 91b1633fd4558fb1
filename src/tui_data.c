/* SPDX-License-Identifier: MIT */
/*
 * tui_data.c - what the explorer reads from the index, through idx.h only:
 * the statistics sets of the base and the adapted model (the first base
 * statset of the shown dataset, and the adapted one over the same dataset
 * and SAE), the class names, the whole latents table of each model (kept
 * in memory so that sort, filter and search never touch SQLite: 49,152 rows
 * are ~2.5 MB), and the data behind the Latent, Image and Class views, loaded when a view opens.
 * Everything but the Image view (an image is an image, whatever the dataset)
 * follows one dataset, t->dataset_id: `:dataset` unloads and loads again.
 *
 * The Image view's latent lists follow the PatchSAE demo (reference §7.3):
 * the top 5 latents of each model, at image level and at the selected patch,
 * grouped as common (in both top-5 sets, sorted by the larger value), base
 * only and adapted only. One deviation: the one-model groups are sorted by
 * value, not by latent index as the demo does (an artefact of set order).
 * With the demo's noise filter on, latents whose mean activation under the
 * base model's statistics exceeds t->noise are dropped before the top 5 are
 * taken (the demo zeroes them: reference §7.1, probe.h probe_noisy).
 *
 * The lists read the shown image through two functions that hide its
 * source: tui_data_token (a token's latents: the index's top-K blob, or a
 * probed image's exact sparse row) and tui_data_map (one latent on every
 * token); the image-level list and the predictions are in TuiImageSide.
 *
 * Two reads idx.h has no function for go through idx_select: the class
 * names of a dataset in one query, and a class's accuracy from the stored
 * top-1 predictions when `patchsae eval` has not stored one.
 */
#include "tui.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "ps.h"

#define TOPN 5 /* the demo's top-5 per model */
#define TUI_FIRST_PAGE 256 /* rows read before the first screen when loading in the background */

/* The background load: its own read-only connection, both tables, then done = 1. */
typedef struct TuiLoader {
    pthread_t th;
    char path[1024];
    IdxStatset ss[2];
    int want[2];
    TuiStats st[2];
    int64_t dataset_id, model_id[2];
    int n_classes;
    double *acc[2];
    int rc;
    char err[PS_ERRLEN];
    atomic_int done;
} TuiLoader;

static void
free_stats(TuiStats *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->rows[i].name);
    free(s->rows);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

void
tui_data_image_clear(Tui *t)
{
    for (int m = 0; m < 2; m++) {
        free(t->is[m].blob);
        memset(&t->is[m], 0, sizeof t->is[m]);
    }
    t->n_items = 0;
}

static void
free_class(Tui *t)
{
    for (int m = 0; m < 2; m++) {
        free(t->cs[m].evals);
        memset(&t->cs[m], 0, sizeof t->cs[m]);
    }
    free(t->diff);
    t->diff = NULL;
    t->n_diff = 0;
}

void
tui_data_unload(Tui *t)
{
    if (t->loader) { /* let the thread finish, then drop its tables */
        pthread_join(t->loader->th, NULL);
        for (int m = 0; m < 2; m++) {
            free_stats(&t->loader->st[m]);
            free(t->loader->acc[m]);
        }
        free(t->loader);
        t->loader = NULL;
    }
    t->loading = 0;
    for (int m = 0; m < 2; m++) {
        free_stats(&t->st[m]);
        free(t->acc[m]);
        t->acc[m] = NULL;
    }
    for (int i = 0; i < t->n_classes; i++)
        free(t->classes[i]);
    free(t->classes);
    t->classes = NULL;
    t->n_classes = 0;
    free_class(t);
}

void
tui_data_free(Tui *t)
{
    tui_data_unload(t);
    tui_data_image_clear(t);
}

/* ---- latents tables: read with idx_select (exact values, no joins) ---- */

typedef struct RowsCtx {
    TuiRow *rows;
    int n, cap;
} RowsCtx;

static double
num(const char *v)
{
    return v ? strtod(v, NULL) : NAN;
}

static int
stat_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    RowsCtx *c = ctx;
    if (ncol < 8 || !v[0])
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->rows = xrealloc(c->rows, (size_t)c->cap * sizeof *c->rows);
    }
    TuiRow *r = &c->rows[c->n++];
    r->latent = (int32_t)strtol(v[0], NULL, 10);
    r->n_active = v[1] ? strtoll(v[1], NULL, 10) : 0;
    r->freq = (float)num(v[2]);
    r->mean_act = (float)num(v[3]);
    r->max_act = (float)num(v[4]);
    r->entropy = (float)num(v[5]);
    r->top_class = v[6] ? (int)strtol(v[6], NULL, 10) : -1;
    r->top_share = (float)num(v[7]);
    r->name = NULL;
    return 0;
}

typedef struct AnnCtx {
    TuiStats *s;
} AnnCtx;

static int
ann_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    TuiStats *s = ((AnnCtx *)ctx)->s;
    if (ncol < 2 || !v[0] || !v[1])
        return 0;
    long l = strtol(v[0], NULL, 10);
    if (l >= 0 && l < s->n_pos && s->pos[l] >= 0) {
        free(s->rows[s->pos[l]].name);
        s->rows[s->pos[l]].name = xstrdup(v[1]);
    }
    return 0;
}

/*
 * Reads the latents table of statset ss into s: every row (limit <= 0, latent
 * order) or the first `limit` rows by frequency descending (the start-up page).
 */
static int
read_rows(Idx *ix, const IdxStatset *ss, int limit, TuiStats *s, char *err)
{
    char sql[512];
    RowsCtx c = { 0 };
    snprintf(sql, sizeof sql,
             "SELECT latent, n_active, freq, mean_act, max_act, entropy, top_class, top_share "
             "FROM latent_stats WHERE statset_id = %lld ORDER BY %s LIMIT %d",
             (long long)ss->id, limit > 0 ? "freq DESC, latent" : "latent",
             limit > 0 ? limit : -1);
    int rc = idx_select(ix, sql, stat_row, &c, err);
    if (rc) {
        free(c.rows);
        return rc;
    }
    memset(s, 0, sizeof *s);
    s->ss = *ss;
    s->rows = c.rows ? c.rows : xmalloc(sizeof *s->rows);
    s->n = c.n;
    int32_t maxl = ss->d_sae;
    for (int i = 0; i < c.n; i++)
        if (c.rows[i].latent + 1 > maxl)
            maxl = c.rows[i].latent + 1;
    s->n_pos = maxl > 0 ? maxl : 0;
    s->pos = xmalloc((size_t)(s->n_pos ? s->n_pos : 1) * sizeof *s->pos);
    for (int i = 0; i < s->n_pos; i++)
        s->pos[i] = -1;
    for (int i = 0; i < c.n; i++)
        if (c.rows[i].latent >= 0)
            s->pos[c.rows[i].latent] = i;
    snprintf(sql, sizeof sql, "SELECT latent, name FROM annotations WHERE sae_id = %lld",
             (long long)ss->sae_id);
    AnnCtx a = { s };
    rc = idx_select(ix, sql, ann_row, &a, err);
    if (rc) {
        free_stats(s);
        return rc;
    }
    s->present = 1;
    s->partial = limit > 0;
    return PS_OK;
}

typedef struct AccCtx {
    double *acc;
    int n;
} AccCtx;

static int
acc_all_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    AccCtx *a = ctx;
    if (ncol < 3 || !v[0] || !v[1] || !v[2])
        return 0;
    long c = strtol(v[0], NULL, 10);
    double n = strtod(v[1], NULL);
    if (c >= 0 && c < a->n && n > 0)
        a->acc[c] = 100.0 * strtod(v[2], NULL) / n;
    return 0;
}

/* Accuracy of every class from the stored top-1 predictions of a model: *out (n_classes), NAN unknown. */
static int
read_acc(Idx *ix, int64_t dataset, int64_t model, int n_classes, double **out, char *err)
{
    *out = NULL;
    if (!dataset || !model || n_classes <= 0)
        return PS_OK;
    double *acc = xmalloc((size_t)n_classes * sizeof *acc);
    for (int i = 0; i < n_classes; i++)
        acc[i] = NAN;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT i.label, count(*), total(p.class = i.label) FROM predictions p "
             "JOIN images i ON i.id = p.image_id WHERE p.model_id = %lld AND p.rank = 1 "
             "AND i.dataset_id = %lld AND i.label IS NOT NULL GROUP BY i.label",
             (long long)model, (long long)dataset);
    AccCtx a = { acc, n_classes };
    int rc = idx_select(ix, sql, acc_all_row, &a, err);
    if (rc) {
        free(acc);
        return rc;
    }
    *out = acc;
    return PS_OK;
}

static void *
loader_main(void *arg)
{
    TuiLoader *L = arg;
    Idx *ix = NULL;
    L->rc = idx_open_readonly(&ix, L->path, L->err);
    for (int m = 0; m < 2 && !L->rc; m++)
        if (L->want[m])
            L->rc = read_rows(ix, &L->ss[m], 0, &L->st[m], L->err);
    for (int m = 0; m < 2 && !L->rc; m++)
        L->rc = read_acc(ix, L->dataset_id, L->model_id[m], L->n_classes, &L->acc[m], L->err);
    idx_close(ix);
    atomic_store(&L->done, 1);
    return NULL;
}

static void
count_rows(Tui *t)
{
    t->n_dead = t->n_dense = 0;
    for (int i = 0; i < t->st[0].n; i++) {
        const TuiRow *r = &t->st[0].rows[i];
        t->n_dead += r->n_active == 0;
        t->n_dense += r->freq > TUI_DENSE_FREQ;
    }
    t->scatter_version++;
}

int
tui_data_poll(Tui *t, int wait)
{
    TuiLoader *L = t->loader;
    if (!t->loading)
        return 0;
    if (L && !wait && !atomic_load(&L->done))
        return 0;
    int32_t keep = t->n_order && t->st[t->model].present
                       ? t->st[t->model].rows[t->order[t->sel]].latent : -1;
    int rc = PS_OK;
    char err[PS_ERRLEN] = "";
    if (L) {
        pthread_join(L->th, NULL);
        rc = L->rc;
        snprintf(err, sizeof err, "%s", L->err);
    }
    if (!L || rc) {
        /* no thread (or it failed): read on this connection */
        for (int m = 0; m < 2 && L; m++) {
            free_stats(&L->st[m]);
            free(L->acc[m]);
        }
        rc = PS_OK;
        for (int m = 0; m < 2 && !rc; m++) {
            TuiStats s;
            if (!t->st[m].ss.id)
                continue;
            if ((rc = read_rows(t->ix, &t->st[m].ss, 0, &s, err)) == PS_OK) {
                free_stats(&t->st[m]);
                t->st[m] = s;
            }
        }
        for (int m = 0; m < 2 && !rc; m++) {
            free(t->acc[m]);
            rc = read_acc(t->ix, t->dataset_id, t->model_id[m], t->n_classes, &t->acc[m], err);
        }
    } else {
        for (int m = 0; m < 2; m++) {
            if (L->want[m]) {
                free_stats(&t->st[m]);
                t->st[m] = L->st[m];
            }
            free(t->acc[m]);
            t->acc[m] = L->acc[m];
        }
    }
    free(t->sorted); /* the rows are new: the sort cache is stale */
    t->sorted = NULL;
    t->sorted_rows = NULL;
    free(L);
    t->loader = NULL;
    t->loading = 0;
    if (rc)
        tui_status(t, 1, "%s", err);
    count_rows(t);
    tui_refilter(t);
    if (keep >= 0)
        tui_select_latent(t, keep);
    return 1;
}

static int
class_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    Tui *t = ctx;
    if (ncol < 2 || !v[0] || !v[1])
        return 0;
    long c = strtol(v[0], NULL, 10);
    if (c < 0 || c >= t->n_classes)
        return 0;
    free(t->classes[c]);
    t->classes[c] = xstrdup(v[1]);
    return 0;
}

static int
dataset_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    Tui *t = ctx;
    if (ncol >= 3 && v[0]) {
        t->dataset_id = strtoll(v[0], NULL, 10);
        t->n_images = v[1] ? strtoll(v[1], NULL, 10) : 0;
        t->n_classes = v[2] ? (int)strtol(v[2], NULL, 10) : 0;
        snprintf(t->dataset_name, sizeof t->dataset_name, "%s", ncol >= 4 && v[3] ? v[3] : "");
    }
    return 1;
}

static int
max_class_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    if (ncol >= 1 && v[0])
        *(int *)ctx = (int)strtol(v[0], NULL, 10) + 1;
    return 1;
}

int
tui_data_load(Tui *t, int async, char *err)
{
    IdxStatset *ss;
    int n, rc = idx_statsets(t->ix, &ss, &n, err);
    if (rc)
        return rc;
    int b = -1, a = -1;
    t->n_ds = 0;
    for (int i = 0; i < n; i++) { /* the datasets with statistics, in statset order */
        int k = 0;
        while (k < t->n_ds && t->ds[k].id != ss[i].dataset_id)
            k++;
        if (k == t->n_ds && k < TUI_MAX_DS) {
            t->ds[k].id = ss[i].dataset_id;
            snprintf(t->ds[k].name, sizeof t->ds[k].name, "%s", ss[i].dataset);
            t->ds[k].n_images = ss[i].n_images;
            t->n_ds++;
        }
    }
    /* the base statset of the wanted dataset (any dataset if it has none), else any statset */
    for (int pass = 0; pass < 4 && b < 0; pass++)
        for (int i = 0; i < n && b < 0; i++)
            if ((pass & 1 || !strcmp(ss[i].kind, "base")) &&
                (pass >= 2 || !t->dataset_id || ss[i].dataset_id == t->dataset_id))
                b = i;
    for (int i = 0; i < n && b >= 0 && a < 0; i++)
        if (i != b && !strcmp(ss[i].kind, "adapted") && ss[i].dataset_id == ss[b].dataset_id &&
            ss[i].sae_id == ss[b].sae_id)
            a = i;
    if (b >= 0) {
        t->st[0].ss = ss[b];
        t->model_id[0] = ss[b].model_id;
        snprintf(t->model_name[0], sizeof t->model_name[0], "%s", ss[b].model);
        t->sae_id = ss[b].sae_id;
        t->dataset_id = ss[b].dataset_id;
        t->n_images = ss[b].n_images;
        t->n_classes = ss[b].n_classes;
        snprintf(t->dataset_name, sizeof t->dataset_name, "%s", ss[b].dataset);
    }
    if (a >= 0) {
        t->st[1].ss = ss[a];
        t->model_id[1] = ss[a].model_id;
        snprintf(t->model_name[1], sizeof t->model_name[1], "%s", ss[a].model);
    }
    free(ss);

    if (b < 0) {
        /* no statistics (yet): images and predictions may still be there */
        IdxModel *ms;
        int nm;
        if (idx_models(t->ix, &ms, &nm, err) == PS_OK) {
            for (int i = 0; i < nm; i++) {
                int m = !strcmp(ms[i].kind, "adapted");
                if (!t->model_id[m]) {
                    t->model_id[m] = ms[i].id;
                    snprintf(t->model_name[m], sizeof t->model_name[m], "%s", ms[i].name);
                }
            }
            free(ms);
        }
        IdxSae sae;
        if (idx_find_sae(t->ix, NULL, &sae, NULL) == PS_OK)
            t->sae_id = sae.id;
        idx_select(t->ix, "SELECT id, n_images, n_classes, name FROM datasets ORDER BY id LIMIT 1",
                   dataset_row, t, NULL);
        if (t->dataset_id) {
            t->ds[0].id = t->dataset_id;
            snprintf(t->ds[0].name, sizeof t->ds[0].name, "%s", t->dataset_name);
            t->ds[0].n_images = t->n_images;
            t->n_ds = 1;
        }
    }
    if (t->dataset_id) {
        char sql[160];
        int mc = 0;
        snprintf(sql, sizeof sql, "SELECT max(idx) FROM classes WHERE dataset_id = %lld",
                 (long long)t->dataset_id);
        idx_select(t->ix, sql, max_class_row, &mc, NULL);
        if (mc > t->n_classes)
            t->n_classes = mc;
        if (t->n_classes > 0) {
            t->classes = xcalloc((size_t)t->n_classes, sizeof *t->classes);
            snprintf(sql, sizeof sql, "SELECT idx, name FROM classes WHERE dataset_id = %lld",
                     (long long)t->dataset_id);
            rc = idx_select(t->ix, sql, class_row, t, err);
            if (rc)
                return rc;
        }
    }
    if (!t->st[0].ss.id || !async) {
        for (int m = 0; m < 2; m++) {
            IdxStatset ss = t->st[m].ss;
            if (ss.id && (rc = read_rows(t->ix, &ss, 0, &t->st[m], err)))
                return rc;
            if ((rc = read_acc(t->ix, t->dataset_id, t->model_id[m], t->n_classes, &t->acc[m],
                               err)))
                return rc;
        }
        count_rows(t);
        return PS_OK;
    }
    /* the first page now, everything else in the background */
    IdxStatset ss0 = t->st[0].ss;
    if ((rc = read_rows(t->ix, &ss0, TUI_FIRST_PAGE, &t->st[0], err)))
        return rc;
    TuiLoader *L = xcalloc(1, sizeof *L);
    snprintf(L->path, sizeof L->path, "%s", t->path);
    for (int m = 0; m < 2; m++) {
        L->ss[m] = t->st[m].ss;
        L->want[m] = t->st[m].ss.id != 0;
        L->model_id[m] = t->model_id[m];
    }
    L->dataset_id = t->dataset_id;
    L->n_classes = t->n_classes;
    atomic_init(&L->done, 0);
    if (pthread_create(&L->th, NULL, loader_main, L) != 0) {
        free(L); /* tui_data_poll reads synchronously */
        L = NULL;
    }
    t->loader = L;
    t->loading = 1;
    return PS_OK;
}

/* --------------------------------------------------------------- Latent */

static void
side_hist(Tui *t, int m, TuiLatentSide *ls, int32_t latent)
{
    float map[TUI_MAX_TOK];
    float *vals = xmalloc((size_t)TUI_MAX_TOP * TUI_MAX_TOK * sizeof *vals);
    int nv = 0;
    for (int i = 0; i < ls->n_top; i++) {
        int nt = 0;
        if (idx_latent_map(t->ix, ls->top[i].image_id, t->model_id[m], t->sae_id, latent, map,
                           TUI_MAX_TOK, &nt, NULL) != PS_OK)
            continue;
        for (int k = 0; k < nt && k < TUI_MAX_TOK; k++)
            if (map[k] > 0)
                vals[nv++] = map[k];
    }
    memset(ls->hist, 0, sizeof ls->hist);
    ls->hist_lo = ls->hist_hi = 0;
    if (nv > 0) {
        float lo = vals[0], hi = vals[0];
        for (int i = 1; i < nv; i++) {
            lo = vals[i] < lo ? vals[i] : lo;
            hi = vals[i] > hi ? vals[i] : hi;
        }
        ls->hist_lo = lo;
        ls->hist_hi = hi;
        double a = log(lo), w = hi > lo ? (log(hi) - a) / TUI_HIST_BINS : 1;
        for (int i = 0; i < nv; i++) {
            int k = (int)((log(vals[i]) - a) / w);
            ls->hist[k < 0 ? 0 : k >= TUI_HIST_BINS ? TUI_HIST_BINS - 1 : k]++;
        }
    }
    free(vals);
}

int
tui_data_latent(Tui *t, int32_t latent, char *err)
{
    for (int m = 0; m < 2; m++) {
        TuiLatentSide *ls = &t->ls[m];
        memset(ls, 0, sizeof *ls);
        if (!t->st[m].present)
            continue;
        int64_t ss = t->st[m].ss.id;
        int rc = idx_latent(t->ix, ss, latent, &ls->st, err);
        if (rc == PS_EUSAGE)
            continue; /* not in this statset */
        if (rc)
            return rc;
        if ((rc = idx_latent_top(t->ix, ss, latent, IDX_TOP_MEAN, ls->top, TUI_MAX_TOP,
                                 &ls->n_top, err)) ||
            (rc = idx_latent_labels(t->ix, ss, latent, ls->labels, TUI_MAX_TOP, &ls->n_labels,
                                    err)))
            return rc;
        side_hist(t, m, ls, latent);
        ls->ok = 1;
    }
    if (!t->ls[0].ok && !t->ls[1].ok)
        return ps_seterr(err, PS_EUSAGE, "latent %d: no statistics", latent);
    return PS_OK;
}

/* ---------------------------------------------------------------- Image */

int
tui_data_image(Tui *t, int64_t image, char *err)
{
    IdxImage im;
    int rc = idx_image(t->ix, image, &im, err);
    if (rc)
        return rc;
    tui_data_image_clear(t);
    t->img = im;
    if (t->img.grid < 0 || 1 + t->img.grid * t->img.grid > TUI_MAX_TOK)
        t->img.grid = 0; /* a grid we cannot show: no patch cursor */
    for (int m = 0; m < 2; m++) {
        TuiImageSide *s = &t->is[m];
        if (!t->model_id[m])
            continue;
        s->ok = 1;
        if ((rc = idx_predictions(t->ix, image, t->model_id[m], s->pred, TUI_MAX_PRED, &s->n_pred,
                                  err)))
            return rc;
        if (!t->sae_id)
            continue;
        if ((rc = idx_image_latents(t->ix, image, t->model_id[m], t->sae_id, s->top,
                                    TUI_MAX_LIST, &s->n_top, err)) ||
            (rc = idx_patch_blob(t->ix, image, t->model_id[m], t->sae_id, &s->blob, &s->blob_n,
                                 err)))
            return rc;
        if (s->blob && idx_blob_check(s->blob, s->blob_n, NULL, NULL)) {
            free(s->blob); /* unreadable blob: no patch data rather than a crash */
            s->blob = NULL;
            s->blob_n = 0;
        }
    }
    return PS_OK;
}

static float
value_in(const IdxAct *a, int n, int32_t s)
{
    for (int i = 0; i < n; i++)
        if (a[i].latent == s)
            return a[i].value;
    return 0;
}

static int
cmp_item(const void *a, const void *b)
{
    const TuiItem *x = a, *y = b;
    if (x->level != y->level)
        return x->level - y->level;
    if (x->group != y->group)
        return x->group - y->group;
    float vx = x->v[0] > x->v[1] ? x->v[0] : x->v[1], vy = y->v[0] > y->v[1] ? y->v[0] : y->v[1];
    if (vx != vy)
        return vx > vy ? -1 : 1;
    return (x->latent > y->latent) - (x->latent < y->latent);
}

/* Adds the grouped union of two top-N lists (full[m] hold the values for lookups). */
static void
group(Tui *t, int level, const IdxAct *full0, int n0, const IdxAct *full1, int n1, int two)
{
    int a = MIN(n0, TOPN), b = two ? MIN(n1, TOPN) : 0;
    for (int i = 0; i < a; i++) {
        TuiItem *it = &t->items[t->n_items++];
        it->latent = full0[i].latent;
        it->level = level;
        it->v[0] = full0[i].value;
        it->v[1] = two ? value_in(full1, n1, it->latent) : 0;
        int in1 = 0;
        for (int k = 0; k < b; k++)
            in1 |= full1[k].latent == it->latent;
        it->group = in1 ? 0 : 1;
    }
    for (int i = 0; i < b; i++) {
        int in0 = 0;
        for (int k = 0; k < a; k++)
            in0 |= full0[k].latent == full1[i].latent;
        if (in0)
            continue;
        TuiItem *it = &t->items[t->n_items++];
        it->latent = full1[i].latent;
        it->level = level;
        it->v[0] = value_in(full0, n0, it->latent);
        it->v[1] = full1[i].value;
        it->group = 2;
    }
}

int
tui_noisy(const Tui *t, int32_t s)
{
    const TuiStats *st = &t->st[0];
    if (!t->noise_on || !(t->noise > 0) || !st->present || s < 0 || s >= st->n_pos ||
        st->pos[s] < 0)
        return 0;
    float m = st->rows[st->pos[s]].mean_act;
    return !isnan(m) && m > t->noise;
}

/* Drops the noisy latents of a ranked list in place; returns the new length. */
static int
denoise(const Tui *t, IdxAct *a, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!tui_noisy(t, a[i].latent))
            a[k++] = a[i];
    return k;
}

/* Inserts (s, v) into a list ranked by value descending, then latent ascending. */
static void
rank_in(IdxAct *a, int *n, int cap, int32_t s, float v)
{
    if (*n == cap && !(v > a[cap - 1].value ||
                       (v == a[cap - 1].value && s < a[cap - 1].latent)))
        return;
    int j = *n < cap ? (*n)++ : cap - 1;
    while (j > 0 && (v > a[j - 1].value || (v == a[j - 1].value && s < a[j - 1].latent))) {
        a[j] = a[j - 1];
        j--;
    }
    a[j] = (IdxAct){ s, v };
}

int
tui_data_token(const Tui *t, int m, int tok, IdxAct *out, int cap)
{
    int n = 0;
    if (m < 0 || m > 1 || cap <= 0)
        return 0;
    const TuiImageSide *is = &t->is[m];
    if (is->pr) { /* probed: the exact row of the token (CSR, rowptr[0] = 0), ranked */
        const SaeSparse *sp = &is->pr->sp;
        if (tok < 0 || tok >= is->pr->n_tok)
            return 0;
        for (int64_t j = sp->rowptr[tok]; j < sp->rowptr[tok + 1]; j++)
            if (sp->val[j] > 0)
                rank_in(out, &n, cap, sp->idx[j], sp->val[j]);
        return n;
    }
    if (is->blob)
        idx_blob_token(is->blob, is->blob_n, tok, out, cap, &n, NULL);
    return n;
}

void
tui_data_items(Tui *t)
{
    t->n_items = 0;
    if (t->noise_on && t->loading)
        tui_data_poll(t, 1); /* the filter needs every latent's mean activation */
    int two = t->is[1].ok;
    IdxAct top[2][TUI_MAX_LIST];
    int nt[2];
    for (int m = 0; m < 2; m++) {
        nt[m] = t->is[m].n_top;
        memcpy(top[m], t->is[m].top, (size_t)nt[m] * sizeof top[m][0]);
        nt[m] = denoise(t, top[m], nt[m]);
    }
    group(t, 0, top[0], nt[0], top[1], nt[1], two);
    if (t->px >= 0 && t->img.grid > 0) {
        IdxAct p[2][IDX_BLOB_K * 2];
        int np[2] = { 0, 0 };
        int tok = 1 + t->py * t->img.grid + t->px;
        for (int m = 0; m < 2; m++)
            np[m] = denoise(t, p[m], tui_data_token(t, m, tok, p[m], (int)LEN(p[m])));
        group(t, 1, p[0], np[0], p[1], np[1], two);
    }
    qsort(t->items, (size_t)t->n_items, sizeof *t->items, cmp_item);
}

int
tui_data_map(const Tui *t, int m, int32_t s, float *map, int *n_tok)
{
    *n_tok = 0;
    if (m < 0 || m > 1)
        return -1;
    if (t->is[m].pr)
        return tui_probe_map(t, t->probed, m, s, map, TUI_MAX_TOK, n_tok);
    if (!t->is[m].blob)
        return -1;
    return idx_blob_map(t->is[m].blob, t->is[m].blob_n, s, map, TUI_MAX_TOK, n_tok, NULL);
}

/* ---------------------------------------------------------------- Class */

static int
acc_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    double *r = ctx;
    if (ncol >= 2 && v[0] && v[1]) {
        r[0] = strtod(v[0], NULL);
        r[1] = strtod(v[1], NULL);
    }
    return 1;
}

double
tui_data_class_acc(Tui *t, int64_t model_id, int cls)
{
    char sql[512];
    double r[2] = { 0, 0 };
    snprintf(sql, sizeof sql,
             "SELECT count(*), total(p.class = i.label) FROM images i JOIN predictions p "
             "ON p.image_id = i.id AND p.model_id = %lld AND p.rank = 1 "
             "WHERE i.dataset_id = %lld AND i.label = %d",
             (long long)model_id, (long long)t->dataset_id, cls);
    if (idx_select(t->ix, sql, acc_row, r, NULL) || r[0] <= 0)
        return NAN;
    return 100.0 * r[1] / r[0];
}

int
tui_data_class(Tui *t, int cls, char *err)
{
    free_class(t);
    for (int m = 0; m < 2; m++) {
        TuiClassSide *c = &t->cs[m];
        c->acc = NAN;
        if (!t->model_id[m])
            continue;
        c->ok = 1;
        int rc;
        if (t->st[m].present &&
            (rc = idx_class_top(t->ix, t->st[m].ss.id, cls, c->top, (int)LEN(c->top), &c->n_top,
                                err)))
            return rc;
        if (t->sae_id && t->dataset_id) {
            if ((rc = idx_evals(t->ix, t->model_id[m], t->dataset_id, cls, &c->evals, &c->n_evals,
                                err)))
                return rc;
            for (int i = 0; i < c->n_evals; i++)
                if (!strcmp(c->evals[i].mode, "orig")) {
                    c->acc = c->evals[i].accuracy;
                    c->acc_from_eval = 1;
                }
            if (c->n_evals == 0) {
                free(c->evals);
                c->evals = NULL;
                if ((rc = idx_evals(t->ix, t->model_id[m], t->dataset_id, -1, &c->evals,
                                    &c->n_evals, err)))
                    return rc;
                c->evals_all = c->n_evals > 0;
            }
        }
        if (isnan(c->acc))
            c->acc = t->acc[m] ? t->acc[m][cls] : tui_data_class_acc(t, t->model_id[m], cls);
        if (t->dataset_id)
            idx_class_size(t->ix, t->dataset_id, cls, &c->n_images, NULL);
    }
    if (t->st[0].present && t->st[1].present)
        return idx_diff_rows(t->ix, t->st[0].ss.id, t->st[1].ss.id, cls, &t->diff, &t->n_diff, err);
    return PS_OK;
}
