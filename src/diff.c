/* SPDX-License-Identifier: MIT */
/*
 * diff.c - base against adapted (diff.h): remapping groups per class from the
 * full class-level counts, per-latent deltas and top-image overlap, and the
 * Table 1 summary.
 *
 * The index is read with plain SELECTs through idx_select (rows stream in
 * class or latent order; one class or latent is held at a time, plus dense
 * (S) vectors), and groups are written with multi-row INSERTs through
 * idx_exec in one transaction: idx.h has no bulk insert for diff_groups
 * with ranks from full counts. Ids and numbers are formatted by us, never
 * user text, so the SQL needs no quoting.
 */
#include "diff.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "ps.h"

const char *const diff_grp_names[DIFF_N_GRP] = { "high", "high_low", "low_high" };

void
diff_list_free(DiffList *l)
{
    if (!l)
        return;
    free(l->e);
    memset(l, 0, sizeof *l);
}

static void
list_add(DiffList *l, const DiffEntry *e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->e = xrealloc(l->e, (size_t)l->cap * sizeof *l->e);
    }
    l->e[l->n++] = *e;
}

/* ---------------------------------------------------------------- groups */

static const int64_t *sort_cnt; /* qsort has no context argument; only diff_ranks sets it */

static int
by_count(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sort_cnt[x] != sort_cnt[y])
        return sort_cnt[x] > sort_cnt[y] ? -1 : 1;
    return (x > y) - (x < y);
}

void
diff_ranks(const int64_t *cnt, int S, int *rank, int32_t *order)
{
    int m = 0;
    for (int s = 0; s < S; s++) {
        rank[s] = 0;
        if (cnt[s] > 0)
            order[m++] = s;
    }
    sort_cnt = cnt;
    qsort(order, (size_t)m, sizeof *order, by_count);
    sort_cnt = NULL;
    for (int i = 0; i < m; i++)
        rank[order[i]] = i + 1;
}

int
diff_class_groups(int cls, const int64_t *base, const int64_t *adapted, int S, int hi, int lo,
                  int *rb, int *ra, int32_t *order, DiffList *out, char *err)
{
    if (hi < 1 || lo < hi)
        return ps_seterr(err, PS_EUSAGE, "diff: need 1 <= top-n (%d) <= low-n (%d)", hi, lo);
    diff_ranks(base, S, rb, order);
    diff_ranks(adapted, S, ra, order);
    for (int g = 0; g < DIFF_N_GRP; g++)
        for (int s = 0; s < S; s++) {
            int b = rb[s], a = ra[s];
            int bh = b && b <= hi, ah = a && a <= hi, bl = !b || b > lo, al = !a || a > lo;
            int in = g == DIFF_HIGH ? bh && ah : g == DIFF_HIGH_LOW ? bh && al : ah && bl;
            if (!in)
                continue;
            DiffEntry e = { cls, g, s, b, a, base[s], adapted[s] };
            list_add(out, &e);
        }
    return PS_OK;
}

static int
i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts and deduplicates v in place; returns the new length. */
static int
uniq(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, i64_cmp);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!m || v[m - 1] != v[i])
            v[m++] = v[i];
    return m;
}

/* Distinct ids of a and b: *n, *m; returns the number in both. */
static int
overlap(const int64_t *a, int na, const int64_t *b, int nb, int *n, int *m)
{
    int64_t *x = xmalloc((size_t)MAX(na, 1) * sizeof *x);
    int64_t *y = xmalloc((size_t)MAX(nb, 1) * sizeof *y);
    if (na)
        memcpy(x, a, (size_t)na * sizeof *x);
    if (nb)
        memcpy(y, b, (size_t)nb * sizeof *y);
    *n = uniq(x, na);
    *m = uniq(y, nb);
    int i = 0, j = 0, common = 0;
    while (i < *n && j < *m) {
        if (x[i] == y[j]) {
            common++;
            i++;
            j++;
        } else if (x[i] < y[j])
            i++;
        else
            j++;
    }
    free(x);
    free(y);
    return common;
}

double
diff_jaccard(const int64_t *a, int na, const int64_t *b, int nb)
{
    int n, m, common = overlap(a, na, b, nb, &n, &m), uni = n + m - common;
    return uni ? (double)common / uni : NAN;
}

int
diff_sort_parse(const char *s)
{
    static const char *const names[] = { "jaccard", "dfreq", "dmean", "dpurity" };
    for (size_t i = 0; i < LEN(names); i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    return -1;
}

static int sort_key; /* qsort context for diff_sort */

static double
key_of(const DiffLatent *l)
{
    switch (sort_key) {
    case DIFF_SORT_FREQ: return -fabs(l->d_freq);
    case DIFF_SORT_MEAN: return -fabs(l->d_mean);
    case DIFF_SORT_PURITY: return -fabs(l->d_purity);
    default: return l->jaccard;
    }
}

static int
lat_cmp(const void *a, const void *b)
{
    const DiffLatent *x = a, *y = b;
    double u = key_of(x), v = key_of(y);
    int nu = isnan(u), nv = isnan(v);
    if (nu != nv)
        return nu - nv;
    if (!nu && u != v)
        return u < v ? -1 : 1;
    return (x->latent > y->latent) - (x->latent < y->latent);
}

void
diff_sort(DiffLatent *l, int n, int key)
{
    sort_key = key;
    qsort(l, (size_t)n, sizeof *l, lat_cmp);
}

double
diff_delta(double base, double adapted)
{
    if (isnan(base) || isnan(adapted) || base >= 100.0)
        return NAN;
    return 100.0 * (adapted - base) / (100.0 - base);
}

void
diff_summarise(const DiffEntry *e, int n, int C, DiffSummary *s)
{
    memset(s, 0, sizeof *s);
    s->n_class = C;
    s->n_base = (C + 1) / 2;
    for (int i = 0; i < n; i++)
        if (e[i].cls >= 0 && e[i].cls < C)
            s->grp[e[i].grp][e[i].cls >= s->n_base] += 1;
    int nc[2] = { s->n_base, C - s->n_base };
    for (int g = 0; g < DIFF_N_GRP; g++)
        for (int h = 0; h < 2; h++)
            s->grp[g][h] = nc[h] ? s->grp[g][h] / nc[h] : NAN;
    for (int m = 0; m < 2; m++)
        for (int h = 0; h < 2; h++)
            s->acc[m][h] = NAN;
    s->delta = NAN;
}

/* ---------------------------------------------------------------- the index */

static int64_t
to_i64(const char *v)
{
    return v ? strtoll(v, NULL, 10) : 0;
}

static double
to_dbl(const char *v)
{
    return v ? strtod(v, NULL) : NAN;
}

/* Streaming state of diff_groups_load: one class at a time. */
typedef struct GroupLoad {
    int64_t base, adapted;
    int S, hi, lo, cls, bad, rc;
    int64_t *cnt[2];   /* (S) each */
    int *rb, *ra;
    int32_t *order;
    DiffList *out;
    char *err;
} GroupLoad;

static int
flush_class(GroupLoad *g)
{
    if (g->cls < 0)
        return PS_OK;
    int rc = diff_class_groups(g->cls, g->cnt[0], g->cnt[1], g->S, g->hi, g->lo, g->rb, g->ra,
                               g->order, g->out, g->err);
    memset(g->cnt[0], 0, (size_t)g->S * sizeof *g->cnt[0]);
    memset(g->cnt[1], 0, (size_t)g->S * sizeof *g->cnt[1]);
    return rc;
}

static int
group_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    GroupLoad *g = ctx;
    if (ncol != 4 || !v[0] || !v[1] || !v[2] || !v[3]) {
        g->bad = 1;
        return 1;
    }
    int64_t ss = to_i64(v[0]), cls = to_i64(v[1]), lat = to_i64(v[2]), n = to_i64(v[3]);
    if (cls < 0 || cls > INT32_MAX || lat < 0 || lat >= g->S || n < 0) {
        g->bad = 1;
        return 1;
    }
    if (cls != g->cls) {
        if ((g->rc = flush_class(g)))
            return 1;
        g->cls = (int)cls;
    }
    g->cnt[ss == g->adapted][lat] = n;
    return 0;
}

int
diff_groups_load(Idx *ix, int64_t base, int64_t adapted, int S, int hi, int lo, DiffList *out,
                 char *err)
{
    if (hi < 1 || lo < hi)
        return ps_seterr(err, PS_EUSAGE, "diff: need 1 <= top-n (%d) <= low-n (%d)", hi, lo);
    if (S < 1 || base == adapted)
        return ps_seterr(err, PS_EUSAGE, "diff: %d latents, statsets %lld and %lld", S,
                         (long long)base, (long long)adapted);
    GroupLoad g = { .base = base, .adapted = adapted, .S = S, .hi = hi, .lo = lo, .cls = -1,
                    .out = out, .err = err };
    g.cnt[0] = xcalloc((size_t)S, sizeof *g.cnt[0]);
    g.cnt[1] = xcalloc((size_t)S, sizeof *g.cnt[1]);
    g.rb = xmalloc((size_t)S * sizeof *g.rb);
    g.ra = xmalloc((size_t)S * sizeof *g.ra);
    g.order = xmalloc((size_t)S * sizeof *g.order);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT statset_id, class, latent, n_tokens FROM class_counts "
             "WHERE statset_id IN (%lld, %lld) ORDER BY class",
             (long long)base, (long long)adapted);
    int rc = idx_select(ix, sql, group_row, &g, err);
    if (!rc && g.bad)
        rc = ps_seterr(err, PS_EFORMAT, "class_counts of statsets %lld/%lld: a row out of range "
                       "(%d latents)", (long long)base, (long long)adapted, S);
    if (!rc)
        rc = g.rc;
    if (!rc)
        rc = flush_class(&g);
    free(g.cnt[0]);
    free(g.cnt[1]);
    free(g.rb);
    free(g.ra);
    free(g.order);
    return rc;
}

int
diff_groups_store(Idx *ix, int64_t base, int64_t adapted, int hi, int lo, const DiffEntry *e,
                  int n, char *err)
{
    enum { ROWS = 256 };
    int rc = idx_begin(ix, err);
    if (rc)
        return rc;
    char head[512];
    snprintf(head, sizeof head,
             "DELETE FROM diff_groups WHERE base_id = %lld AND adapted_id = %lld;"
             "INSERT OR REPLACE INTO diffs(base_id, adapted_id, hi, lo) "
             "VALUES (%lld, %lld, %d, %d);",
             (long long)base, (long long)adapted, (long long)base, (long long)adapted, hi, lo);
    rc = idx_exec(ix, head, err);
    size_t cap = 256 + (size_t)ROWS * 160;
    char *sql = xmalloc(cap);
    for (int i0 = 0; i0 < n && !rc; i0 += ROWS) {
        size_t len = (size_t)snprintf(sql, cap,
                                      "INSERT INTO diff_groups(base_id, adapted_id, class, grp, "
                                      "latent, base_rank, adapted_rank, base_count, "
                                      "adapted_count) VALUES ");
        for (int i = i0; i < MIN(n, i0 + ROWS); i++) {
            char rb[24] = "NULL", ra[24] = "NULL";
            if (e[i].base_rank)
                snprintf(rb, sizeof rb, "%d", e[i].base_rank);
            if (e[i].adapted_rank)
                snprintf(ra, sizeof ra, "%d", e[i].adapted_rank);
            len += (size_t)snprintf(sql + len, cap - len,
                                    "%s(%lld,%lld,%d,'%s',%d,%s,%s,%lld,%lld)", i > i0 ? "," : "",
                                    (long long)base, (long long)adapted, e[i].cls,
                                    diff_grp_names[e[i].grp], e[i].latent, rb, ra,
                                    (long long)e[i].base_count, (long long)e[i].adapted_count);
            PS_ASSERT(len < cap);
        }
        rc = idx_exec(ix, sql, err);
    }
    free(sql);
    if (!rc)
        rc = idx_commit(ix, err);
    if (rc)
        idx_rollback(ix);
    return rc;
}

typedef struct LatLoad {
    int64_t adapted;
    int S, bad;
    DiffLatent *l;
    /* top images of the current latent */
    int32_t cur;
    int64_t *ids[2];
    int n[2], cap[2];
} LatLoad;

static int
stat_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    LatLoad *g = ctx;
    int64_t lat = ncol == 5 && v[0] && v[1] ? to_i64(v[1]) : -1;
    if (lat < 0 || lat >= g->S) {
        g->bad = 1;
        return 1;
    }
    int m = to_i64(v[0]) == g->adapted;
    DiffLatent *d = &g->l[lat];
    d->freq[m] = to_dbl(v[2]);
    d->mean[m] = to_dbl(v[3]);
    d->purity[m] = to_dbl(v[4]);
    return 0;
}

static void
flush_top(LatLoad *g)
{
    if (g->cur < 0)
        return;
    DiffLatent *d = &g->l[g->cur];
    d->n_common = overlap(g->ids[0], g->n[0], g->ids[1], g->n[1], &d->n_top[0], &d->n_top[1]);
    int uni = d->n_top[0] + d->n_top[1] - d->n_common;
    d->jaccard = uni ? (double)d->n_common / uni : NAN;
    g->n[0] = g->n[1] = 0;
}

static int
top_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    LatLoad *g = ctx;
    int64_t lat = ncol == 3 && v[0] && v[1] && v[2] ? to_i64(v[1]) : -1;
    if (lat < 0 || lat >= g->S) {
        g->bad = 1;
        return 1;
    }
    if (lat != g->cur) {
        flush_top(g);
        g->cur = (int32_t)lat;
    }
    int m = to_i64(v[0]) == g->adapted;
    if (g->n[m] == g->cap[m]) {
        g->cap[m] = g->cap[m] ? 2 * g->cap[m] : 64;
        g->ids[m] = xrealloc(g->ids[m], (size_t)g->cap[m] * sizeof *g->ids[m]);
    }
    g->ids[m][g->n[m]++] = to_i64(v[2]);
    return 0;
}

static double
sub(double a, double b)
{
    return isnan(a) || isnan(b) ? NAN : a - b;
}

int
diff_latents_load(Idx *ix, int64_t base, int64_t adapted, int S, DiffLatent **out, char *err)
{
    *out = NULL;
    if (S < 1)
        return ps_seterr(err, PS_EUSAGE, "diff: %d latents", S);
    LatLoad g = { .adapted = adapted, .S = S, .cur = -1 };
    size_t bytes;
    if (ps_mul((size_t)S, sizeof *g.l, &bytes) || !(g.l = ps_try_malloc(bytes, err)))
        return ps_seterr(err, PS_ENOMEM, "diff: %d latents", S);
    for (int s = 0; s < S; s++) {
        DiffLatent *d = &g.l[s];
        memset(d, 0, sizeof *d);
        d->latent = s;
        for (int m = 0; m < 2; m++)
            d->freq[m] = d->mean[m] = d->purity[m] = NAN;
        d->jaccard = NAN;
    }
    char sql[320];
    snprintf(sql, sizeof sql,
             "SELECT statset_id, latent, freq, mean_act, top_share FROM latent_stats "
             "WHERE statset_id IN (%lld, %lld)",
             (long long)base, (long long)adapted);
    int rc = idx_select(ix, sql, stat_row, &g, err);
    if (!rc && !g.bad) {
        snprintf(sql, sizeof sql,
                 "SELECT statset_id, latent, image_id FROM latent_top "
                 "WHERE statset_id IN (%lld, %lld) AND kind = 0 ORDER BY latent",
                 (long long)base, (long long)adapted);
        rc = idx_select(ix, sql, top_row, &g, err);
        if (!rc && !g.bad)
            flush_top(&g);
    }
    if (!rc && g.bad)
        rc = ps_seterr(err, PS_EFORMAT, "statsets %lld/%lld: a latent outside 0..%d",
                       (long long)base, (long long)adapted, S - 1);
    free(g.ids[0]);
    free(g.ids[1]);
    if (rc) {
        free(g.l);
        return rc;
    }
    for (int s = 0; s < S; s++) {
        DiffLatent *d = &g.l[s];
        d->d_freq = sub(d->freq[1], d->freq[0]);
        d->d_mean = sub(d->mean[1], d->mean[0]);
        d->d_purity = sub(d->purity[1], d->purity[0]);
    }
    *out = g.l;
    return PS_OK;
}

typedef struct AccLoad {
    int64_t right[2], n[2];
    int bad;
} AccLoad;

static int
acc_row(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    AccLoad *a = ctx;
    if (ncol != 3 || !v[0]) {
        a->bad = 1;
        return 1;
    }
    int h = to_i64(v[0]) != 0;
    a->n[h] += to_i64(v[1]);
    a->right[h] += to_i64(v[2]);
    return 0;
}

int
diff_accuracy_load(Idx *ix, int64_t model, int64_t dataset, int n_base, double acc[2],
                   int64_t n[2], char *err)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT i.label >= %d, COUNT(*), SUM(p.class = i.label) FROM images i "
             "JOIN predictions p ON p.image_id = i.id AND p.model_id = %lld AND p.rank = 1 "
             "WHERE i.dataset_id = %lld AND i.label IS NOT NULL AND i.label >= 0 GROUP BY 1",
             n_base, (long long)model, (long long)dataset);
    AccLoad a = { 0 };
    int rc = idx_select(ix, sql, acc_row, &a, err);
    if (!rc && a.bad)
        rc = ps_seterr(err, PS_EFORMAT, "predictions of model %lld: bad row", (long long)model);
    for (int h = 0; h < 2; h++) {
        n[h] = a.n[h];
        acc[h] = a.n[h] ? 100.0 * (double)a.right[h] / (double)a.n[h] : NAN;
    }
    return rc;
}
