/* SPDX-License-Identifier: MIT */
/*
 * stats.c - the statistics accumulator of stats.h: fed one image at a time
 * from the SAE's sparse output, merged across shards, snapshotted for
 * resume, finalised into the index.
 *
 * Per image, one pass over the CSR entries gathers, for every latent that
 * fires, the token sum, the max token value and its token, and the number of
 * tokens above tau, into dense scratch indexed by latent with a list of the
 * latents touched (so clearing costs what the image touched, not S). Then
 * each touched latent updates its counters and its two k-entry min-heaps
 * (root = the worst kept entry; a candidate enters if it beats the root).
 *
 * Determinism: the order "value descending, then position ascending" is
 * total (positions are unique), so a heap keeps exactly the k best of all
 * images it saw whatever the order; sums are int64 fixed point (2^-24), so
 * addition is associative. Hence merge == one pass, bit for bit.
 *
 * Snapshot format (before zlib, little-endian host layout): "PSST", u32
 * version 1, the config (5 x i32/f32), n_images (i64), then per latent
 * n_active, sum_fx (i64), max_act, max_patch (f32), two u8 heap sizes and the
 * heap entries (f32 value, i32 label, i64 pos, i32 token), then a u8 per
 * class (row present) and the present rows (count then sum, i64 x S each).
 */
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "idx.h"
#include "ps.h"

#define FX_ONE 16777216.0 /* 2^24 */

void
stats_config_init(StatsConfig *c, int d_sae, int n_classes)
{
    c->d_sae = d_sae;
    c->k_top = IDX_TOPK;
    c->tau = IDX_TAU;
    c->n_classes = n_classes;
    c->class_top = IDX_CLASS_TOP;
}

static int
check_cfg(const StatsConfig *c, char *err)
{
    if (c->d_sae < 1 || c->d_sae > (1 << 24))
        return ps_seterr(err, PS_EUSAGE, "stats: d_sae %d outside 1..2^24", c->d_sae);
    if (c->k_top < 1 || c->k_top > 255)
        return ps_seterr(err, PS_EUSAGE, "stats: k %d outside 1..255", c->k_top);
    if (c->n_classes < 0 || c->n_classes > 1000000)
        return ps_seterr(err, PS_EUSAGE, "stats: %d classes", c->n_classes);
    if (c->class_top < 0 || !(c->tau >= 0))
        return ps_seterr(err, PS_EUSAGE, "stats: bad class_top %d or tau %g", c->class_top,
                         (double)c->tau);
    return PS_OK;
}

int
stats_init(Stats *st, const StatsConfig *cfg, char *err)
{
    memset(st, 0, sizeof *st);
    int rc = check_cfg(cfg, err);
    if (rc)
        return rc;
    st->cfg = *cfg;
    size_t S = (size_t)cfg->d_sae, k = (size_t)cfg->k_top;
    st->n_active = calloc(S, sizeof *st->n_active);
    st->sum_fx = calloc(S, sizeof *st->sum_fx);
    st->max_act = calloc(S, sizeof *st->max_act);
    st->max_patch = calloc(S, sizeof *st->max_patch);
    st->n_top = calloc(2 * S, 1);
    st->top = calloc(2 * S * k, sizeof *st->top);
    st->cls_count = calloc(cfg->n_classes ? (size_t)cfg->n_classes : 1, sizeof(int64_t *));
    st->cls_sum = calloc(cfg->n_classes ? (size_t)cfg->n_classes : 1, sizeof(int64_t *));
    st->acc = malloc(S * sizeof *st->acc);
    st->pmax = malloc(S * sizeof *st->pmax);
    st->ptok = malloc(S * sizeof *st->ptok);
    st->pcnt = malloc(S * sizeof *st->pcnt);
    st->touched = malloc(S * sizeof *st->touched);
    st->mark = calloc(S, 1);
    if (!st->n_active || !st->sum_fx || !st->max_act || !st->max_patch || !st->n_top ||
        !st->top || !st->cls_count || !st->cls_sum || !st->acc || !st->pmax || !st->ptok ||
        !st->pcnt || !st->touched || !st->mark) {
        stats_free(st);
        return ps_seterr(err, PS_ENOMEM, "stats: out of memory for %d latents", cfg->d_sae);
    }
    return PS_OK;
}

void
stats_free(Stats *st)
{
    if (!st)
        return;
    if (st->cls_count)
        for (int c = 0; c < st->cfg.n_classes; c++)
            free(st->cls_count[c]);
    if (st->cls_sum)
        for (int c = 0; c < st->cfg.n_classes; c++)
            free(st->cls_sum[c]);
    free(st->cls_count);
    free(st->cls_sum);
    free(st->n_active);
    free(st->sum_fx);
    free(st->max_act);
    free(st->max_patch);
    free(st->n_top);
    free(st->top);
    free(st->acc);
    free(st->pmax);
    free(st->ptok);
    free(st->pcnt);
    free(st->touched);
    free(st->mark);
    memset(st, 0, sizeof *st);
}

/* a ranks before b: larger value, then smaller position. */
static int
better(const StatsTop *a, const StatsTop *b)
{
    if (a->value != b->value)
        return a->value > b->value;
    return a->pos < b->pos;
}

/* Min-heap (root = worst) of up to k entries. */
static void
heap_push(StatsTop *h, uint8_t *n, int k, const StatsTop *e)
{
    int i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!better(&h[p], e))
                break;
            h[i] = h[p];
            i = p;
        }
        h[i] = *e;
        return;
    }
    if (!better(e, &h[0]))
        return;
    i = 0; /* sift the new entry down from the root */
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        const StatsTop *wv = e;
        if (l < k && better(wv, &h[l]))
            w = l, wv = &h[l];
        if (r < k && better(wv, &h[r]))
            w = r, wv = &h[r];
        if (w == i)
            break;
        h[i] = h[w];
        i = w;
    }
    h[i] = *e;
}

static int64_t
to_fx(float a)
{
    return (int64_t)llrint((double)a * FX_ONE);
}

static int
ensure_class(Stats *st, int c, char *err)
{
    if (st->cls_count[c])
        return PS_OK;
    st->cls_count[c] = calloc((size_t)st->cfg.d_sae, sizeof(int64_t));
    st->cls_sum[c] = calloc((size_t)st->cfg.d_sae, sizeof(int64_t));
    if (!st->cls_count[c] || !st->cls_sum[c]) {
        free(st->cls_count[c]);
        free(st->cls_sum[c]);
        st->cls_count[c] = st->cls_sum[c] = NULL;
        return ps_seterr(err, PS_ENOMEM, "stats: out of memory for class %d", c);
    }
    return PS_OK;
}

/* Image top-m selection order: larger value, then lower latent. */
static int
act_better(const IdxAct *a, const IdxAct *b)
{
    if (a->value != b->value)
        return a->value > b->value;
    return a->latent < b->latent;
}

static int
act_cmp(const void *pa, const void *pb)
{
    const IdxAct *a = pa, *b = pb;
    return act_better(a, b) ? -1 : act_better(b, a) ? 1 : 0;
}

int
stats_add_image(Stats *st, int64_t pos, int label, int n_tok, const int64_t *rowptr,
                const int32_t *idx, const float *val, int m, IdxAct *top, int *n_top, char *err)
{
    const int S = st->cfg.d_sae, k = st->cfg.k_top;
    const float tau = st->cfg.tau;
    if (n_top)
        *n_top = 0;
    if (label < -1 || label >= st->cfg.n_classes)
        return ps_seterr(err, PS_EFORMAT, "stats: label %d outside [-1, %d)", label,
                         st->cfg.n_classes);
    if (n_tok < 1)
        return ps_seterr(err, PS_EFORMAT, "stats: image at %lld has %d tokens", (long long)pos,
                         n_tok);
    int nt = 0;
    int64_t base = rowptr[0];
    for (int t = 0; t < n_tok; t++) {
        int64_t b = rowptr[t] - base, e = rowptr[t + 1] - base;
        if (e < b)
            goto bad_rows;
        for (int64_t j = b; j < e; j++) {
            float v = val[j];
            int32_t s = idx[j];
            if (!(v > 0))
                continue;
            if (s < 0 || s >= S) {
                for (int i = 0; i < nt; i++)
                    st->mark[st->touched[i]] = 0;
                return ps_seterr(err, PS_EFORMAT, "stats: latent %d outside [0, %d) at token %d",
                                 s, S, t);
            }
            if (!st->mark[s]) {
                st->mark[s] = 1;
                st->touched[nt++] = s;
                st->acc[s] = 0;
                st->pmax[s] = 0;
                st->ptok[s] = t;
                st->pcnt[s] = 0;
            }
            st->acc[s] += v;
            if (v > st->pmax[s]) {
                st->pmax[s] = v;
                st->ptok[s] = t;
            }
            if (v > tau)
                st->pcnt[s]++;
        }
    }
    if (label >= 0 && nt > 0) {
        int rc = ensure_class(st, label, err);
        if (rc) {
            for (int i = 0; i < nt; i++)
                st->mark[st->touched[i]] = 0;
            return rc;
        }
    }
    int nm = 0;
    for (int i = 0; i < nt; i++) {
        int32_t s = st->touched[i];
        st->mark[s] = 0;
        float a = (float)(st->acc[s] / n_tok);
        if (!(a > 0))
            continue; /* underflow of a tiny sum */
        int64_t fx = to_fx(a);
        st->n_active[s]++;
        st->sum_fx[s] += fx;
        if (a > st->max_act[s])
            st->max_act[s] = a;
        if (st->pmax[s] > st->max_patch[s])
            st->max_patch[s] = st->pmax[s];
        StatsTop e0 = { a, label, pos, -1 };
        heap_push(st->top + (size_t)s * k, &st->n_top[s], k, &e0);
        StatsTop e1 = { st->pmax[s], label, pos, st->ptok[s] };
        heap_push(st->top + ((size_t)S + s) * k, &st->n_top[S + s], k, &e1);
        if (label >= 0) {
            st->cls_count[label][s] += st->pcnt[s];
            st->cls_sum[label][s] += fx;
        }
        if (m > 0 && top) { /* keep the m best in a min-heap on top[0..nm) */
            IdxAct c = { s, a };
            int j;
            if (nm < m) {
                j = nm++;
                while (j > 0 && act_better(&top[(j - 1) / 2], &c)) {
                    top[j] = top[(j - 1) / 2];
                    j = (j - 1) / 2;
                }
                top[j] = c;
            } else if (act_better(&c, &top[0])) {
                j = 0;
                for (;;) {
                    int l = 2 * j + 1, r = l + 1, w = j;
                    const IdxAct *wv = &c;
                    if (l < m && act_better(wv, &top[l]))
                        w = l, wv = &top[l];
                    if (r < m && act_better(wv, &top[r]))
                        w = r, wv = &top[r];
                    if (w == j)
                        break;
                    top[j] = top[w];
                    j = w;
                }
                top[j] = c;
            }
        }
    }
    st->n_images++;
    if (m > 0 && top) {
        qsort(top, (size_t)nm, sizeof *top, act_cmp);
        if (n_top)
            *n_top = nm;
    }
    return PS_OK;
bad_rows:
    for (int i = 0; i < nt; i++)
        st->mark[st->touched[i]] = 0;
    return ps_seterr(err, PS_EFORMAT, "stats: decreasing rowptr in image at %lld", (long long)pos);
}

int
stats_merge(Stats *dst, const Stats *src, char *err)
{
    const StatsConfig *a = &dst->cfg, *b = &src->cfg;
    if (a->d_sae != b->d_sae || a->k_top != b->k_top || a->tau != b->tau ||
        a->n_classes != b->n_classes)
        return ps_seterr(err, PS_EUSAGE,
                         "stats: cannot merge (d_sae %d/%d, k %d/%d, tau %g/%g, classes %d/%d)",
                         a->d_sae, b->d_sae, a->k_top, b->k_top, (double)a->tau, (double)b->tau,
                         a->n_classes, b->n_classes);
    const int S = a->d_sae, k = a->k_top;
    for (int c = 0; c < a->n_classes; c++) {
        if (!src->cls_count[c])
            continue;
        int rc = ensure_class(dst, c, err);
        if (rc)
            return rc;
        for (int s = 0; s < S; s++) {
            dst->cls_count[c][s] += src->cls_count[c][s];
            dst->cls_sum[c][s] += src->cls_sum[c][s];
        }
    }
    dst->n_images += src->n_images;
    for (int s = 0; s < S; s++) {
        dst->n_active[s] += src->n_active[s];
        dst->sum_fx[s] += src->sum_fx[s];
        dst->max_act[s] = MAX(dst->max_act[s], src->max_act[s]);
        dst->max_patch[s] = MAX(dst->max_patch[s], src->max_patch[s]);
        for (int h = 0; h < 2; h++) {
            size_t o = ((size_t)h * S + s);
            for (int j = 0; j < src->n_top[o]; j++)
                heap_push(dst->top + o * k, &dst->n_top[o], k, &src->top[o * k + j]);
        }
    }
    return PS_OK;
}

static int
top_cmp(const void *pa, const void *pb)
{
    const StatsTop *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

int
stats_top(const Stats *st, int kind, int32_t s, StatsTop *out)
{
    PS_ASSERT(kind == 0 || kind == 1);
    PS_ASSERT(s >= 0 && s < st->cfg.d_sae);
    size_t o = (size_t)kind * st->cfg.d_sae + s;
    int n = st->n_top[o];
    memcpy(out, st->top + o * st->cfg.k_top, (size_t)n * sizeof *out);
    qsort(out, (size_t)n, sizeof *out, top_cmp);
    return n;
}

/* ---- snapshot ---- */

typedef struct Buf {
    uint8_t *p;
    size_t n, cap;
} Buf;

static void
put(Buf *b, const void *x, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = MAX(b->cap * 2, b->n + n + 4096);
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

int
stats_save(const Stats *st, uint8_t **out, size_t *n, char *err)
{
    *out = NULL;
    *n = 0;
    const int S = st->cfg.d_sae, k = st->cfg.k_top;
    Buf b = { 0 };
    uint32_t ver = 1;
    put(&b, "PSST", 4);
    put(&b, &ver, 4);
    put(&b, &st->cfg.d_sae, 4);
    put(&b, &st->cfg.k_top, 4);
    put(&b, &st->cfg.tau, 4);
    put(&b, &st->cfg.n_classes, 4);
    put(&b, &st->cfg.class_top, 4);
    put(&b, &st->n_images, 8);
    for (int s = 0; s < S; s++) {
        put(&b, &st->n_active[s], 8);
        put(&b, &st->sum_fx[s], 8);
        put(&b, &st->max_act[s], 4);
        put(&b, &st->max_patch[s], 4);
        for (int h = 0; h < 2; h++) {
            size_t o = (size_t)h * S + s;
            put(&b, &st->n_top[o], 1);
            for (int j = 0; j < st->n_top[o]; j++) {
                const StatsTop *e = &st->top[o * k + j];
                put(&b, &e->value, 4);
                put(&b, &e->label, 4);
                put(&b, &e->pos, 8);
                put(&b, &e->token, 4);
            }
        }
    }
    for (int c = 0; c < st->cfg.n_classes; c++) {
        uint8_t present = st->cls_count[c] != NULL;
        put(&b, &present, 1);
    }
    for (int c = 0; c < st->cfg.n_classes; c++)
        if (st->cls_count[c]) {
            put(&b, st->cls_count[c], (size_t)S * 8);
            put(&b, st->cls_sum[c], (size_t)S * 8);
        }
    uLongf zn = compressBound(b.n);
    uint8_t *z = malloc(zn + 8);
    if (!z) {
        free(b.p);
        return ps_seterr(err, PS_ENOMEM, "stats: out of memory for a %zu-byte snapshot", b.n);
    }
    uint64_t raw = b.n;
    memcpy(z, &raw, 8);
    int zr = compress2(z + 8, &zn, b.p, b.n, 1);
    free(b.p);
    if (zr != Z_OK) {
        free(z);
        return ps_seterr(err, PS_ENOMEM, "stats: zlib compress failed (%d)", zr);
    }
    *out = z;
    *n = zn + 8;
    return PS_OK;
}

typedef struct Rd {
    const uint8_t *p;
    size_t n, off;
    int bad;
} Rd;

static void
get(Rd *r, void *x, size_t n)
{
    if (r->bad || r->n - r->off < n) {
        r->bad = 1;
        memset(x, 0, n);
        return;
    }
    memcpy(x, r->p + r->off, n);
    r->off += n;
}

int
stats_load(Stats *st, const uint8_t *buf, size_t n, char *err)
{
    memset(st, 0, sizeof *st);
    if (n < 8)
        return ps_seterr(err, PS_EFORMAT, "stats snapshot: %zu bytes is too short", n);
    uint64_t raw;
    memcpy(&raw, buf, 8);
    if (raw < 40 || raw > ((uint64_t)1 << 36))
        return ps_seterr(err, PS_EFORMAT, "stats snapshot: implausible size %llu",
                         (unsigned long long)raw);
    uint8_t *p = ps_try_malloc((size_t)raw, err);
    if (!p)
        return PS_ENOMEM;
    uLongf pn = (uLongf)raw;
    int zr = uncompress(p, &pn, buf + 8, (uLong)(n - 8));
    if (zr != Z_OK || pn != raw) {
        free(p);
        return ps_seterr(err, PS_EFORMAT, "stats snapshot: corrupt compressed data (zlib %d)", zr);
    }
    Rd r = { p, (size_t)raw, 0, 0 };
    char magic[4];
    uint32_t ver;
    StatsConfig c;
    get(&r, magic, 4);
    get(&r, &ver, 4);
    get(&r, &c.d_sae, 4);
    get(&r, &c.k_top, 4);
    get(&r, &c.tau, 4);
    get(&r, &c.n_classes, 4);
    get(&r, &c.class_top, 4);
    if (r.bad || memcmp(magic, "PSST", 4) || ver != 1) {
        free(p);
        return ps_seterr(err, PS_EFORMAT, "stats snapshot: bad magic or version");
    }
    int rc = stats_init(st, &c, err);
    if (rc) {
        free(p);
        return ps_preferr(err, PS_EFORMAT, "stats snapshot");
    }
    const int S = c.d_sae, k = c.k_top;
    get(&r, &st->n_images, 8);
    for (int s = 0; s < S && !r.bad; s++) {
        get(&r, &st->n_active[s], 8);
        get(&r, &st->sum_fx[s], 8);
        get(&r, &st->max_act[s], 4);
        get(&r, &st->max_patch[s], 4);
        for (int h = 0; h < 2; h++) {
            size_t o = (size_t)h * S + s;
            get(&r, &st->n_top[o], 1);
            if (st->n_top[o] > k)
                r.bad = 1;
            for (int j = 0; j < st->n_top[o] && !r.bad; j++) {
                StatsTop *e = &st->top[o * k + j];
                get(&r, &e->value, 4);
                get(&r, &e->label, 4);
                get(&r, &e->pos, 8);
                get(&r, &e->token, 4);
                if (e->label < -1 || e->label >= c.n_classes)
                    r.bad = 1;
            }
        }
    }
    uint8_t *present = calloc(c.n_classes ? (size_t)c.n_classes : 1, 1);
    if (!present) {
        free(p);
        stats_free(st);
        return ps_seterr(err, PS_ENOMEM, "stats snapshot: out of memory");
    }
    get(&r, present, (size_t)c.n_classes);
    for (int cl = 0; cl < c.n_classes && !r.bad; cl++) {
        if (!present[cl])
            continue;
        if (r.n - r.off < (size_t)S * 16) {
            r.bad = 1;
            break;
        }
        if ((rc = ensure_class(st, cl, err)))
            break;
        get(&r, st->cls_count[cl], (size_t)S * 8);
        get(&r, st->cls_sum[cl], (size_t)S * 8);
    }
    free(present);
    if (!rc && (r.bad || r.off != r.n))
        rc = ps_seterr(err, PS_EFORMAT, "stats snapshot: truncated or malformed at byte %zu",
                       r.off);
    free(p);
    if (rc)
        stats_free(st);
    return rc;
}

/* ---- finalise ---- */

typedef struct ClsAgg {
    int cls, n;
    double w;
} ClsAgg;

static int
cls_top_cmp(const void *pa, const void *pb)
{
    const IdxClassLatent *a = pa, *b = pb;
    if (a->n_tokens != b->n_tokens)
        return a->n_tokens > b->n_tokens ? -1 : 1;
    return (a->latent > b->latent) - (a->latent < b->latent);
}

static int
lc_cmp(const void *pa, const void *pb)
{
    const IdxLabelCount *a = pa, *b = pb;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    if (a->weight != b->weight)
        return a->weight > b->weight ? -1 : 1;
    return (a->cls > b->cls) - (a->cls < b->cls);
}

int
stats_finalise(const Stats *st, Idx *ix, int64_t statset, char *err)
{
    const int S = st->cfg.d_sae, k = st->cfg.k_top;
    int rc = idx_clear_statset(ix, statset, err);
    if (rc)
        return rc;
    StatsTop *tops = xmalloc((size_t)k * sizeof *tops);
    IdxTopImage *ti = xmalloc((size_t)k * sizeof *ti);
    IdxLabelCount *lc = xmalloc((size_t)k * sizeof *lc);
    for (int s = 0; s < S && !rc; s++) {
        IdxLatent l;
        memset(&l, 0, sizeof l);
        l.latent = s;
        l.n_active = st->n_active[s];
        l.freq = st->n_images ? (double)l.n_active / (double)st->n_images : 0;
        l.mean_act = l.max_act = l.max_patch = l.entropy = l.label_std = l.top_share = NAN;
        l.top_class = -1;
        int nl = 0;
        if (l.n_active > 0) {
            l.mean_act = (double)st->sum_fx[s] / FX_ONE / (double)l.n_active;
            l.max_act = st->max_act[s];
            l.max_patch = st->max_patch[s];
            int n = stats_top(st, 0, s, tops);
            double wsum = 0, lsum = 0, lsq = 0;
            int nlab = 0;
            for (int j = 0; j < n; j++) {
                if (tops[j].label < 0)
                    continue;
                nlab++;
                wsum += tops[j].value;
                lsum += tops[j].label;
                lsq += (double)tops[j].label * tops[j].label;
                int f = 0;
                while (f < nl && lc[f].cls != tops[j].label)
                    f++;
                if (f == nl)
                    lc[nl++] = (IdxLabelCount){ tops[j].label, 0, 0 };
                lc[f].n++;
                lc[f].weight += tops[j].value;
            }
            for (int f = 0; f < nl; f++)
                lc[f].weight = wsum > 0 ? lc[f].weight / wsum : 0;
            if (nlab < k) {
                l.entropy = -1;
            } else {
                double h = 0;
                for (int f = 0; f < nl; f++)
                    h -= lc[f].weight * log(lc[f].weight + 1e-9);
                l.entropy = h > 0 ? h : 0; /* one class: -1 * ln(1 + 1e-9) = -1e-9 -> 0 */
            }
            if (nlab > 0) {
                double mu = lsum / nlab, var = lsq / nlab - mu * mu;
                l.label_std = sqrt(var > 0 ? var : 0);
                qsort(lc, (size_t)nl, sizeof *lc, lc_cmp);
                l.top_class = lc[0].cls;
                l.top_share = (double)lc[0].n / n;
            }
            for (int h = 0; h < 2 && !rc; h++) {
                int m = stats_top(st, h, s, tops);
                for (int j = 0; j < m; j++)
                    ti[j] = (IdxTopImage){ j + 1, 0, tops[j].pos, tops[j].label, tops[j].value,
                                           h ? tops[j].token : -1 };
                rc = idx_put_latent_top(ix, statset, s, h, m, ti, err);
            }
            if (!rc && nl)
                rc = idx_put_latent_labels(ix, statset, s, nl, lc, err);
        }
        if (!rc)
            rc = idx_put_latent(ix, statset, &l, err);
    }
    free(tops);
    free(ti);
    free(lc);
    IdxClassLatent *ct = rc ? NULL : xmalloc((size_t)S * sizeof *ct);
    for (int c = 0; c < st->cfg.n_classes && !rc; c++) {
        if (!st->cls_count[c])
            continue;
        int n = 0;
        for (int s = 0; s < S && !rc; s++) {
            if (st->cls_count[c][s] <= 0)
                continue;
            rc = idx_put_class_count(ix, statset, c, s, st->cls_count[c][s],
                                     (double)st->cls_sum[c][s] / FX_ONE, err);
            memset(&ct[n], 0, sizeof ct[n]);
            ct[n].latent = s;
            ct[n].n_tokens = st->cls_count[c][s];
            n++;
        }
        if (rc)
            break;
        qsort(ct, (size_t)n, sizeof *ct, cls_top_cmp);
        n = MIN(n, st->cfg.class_top);
        for (int j = 0; j < n; j++)
            ct[j].rank = j + 1;
        rc = idx_put_class_top(ix, statset, c, n, ct, err);
    }
    free(ct);
    if (!rc)
        rc = idx_set_statset_done(ix, statset, st->n_images, err);
    return rc;
}

/* ---- merging shard indexes ---- */

typedef struct Group {
    char model[IDX_NAMELEN], dataset[IDX_NAMELEN], sae_path[1024], sae_sha[65];
    Stats st;
    int have;
} Group;

static int
merge_states(const char *shard, Group **gs, int *ng, char *err)
{
    Idx *sh;
    int rc = idx_open_readonly(&sh, shard, err);
    if (rc)
        return rc;
    IdxState *s;
    int n;
    rc = idx_states(sh, &s, &n, err);
    idx_close(sh);
    if (rc)
        return rc;
    if (n == 0)
        rc = ps_seterr(err, PS_EREFUSED, "%s: no statistics to merge (no progress rows)", shard);
    for (int i = 0; i < n && !rc; i++) {
        if (!s[i].p.done || !s[i].state) {
            rc = ps_seterr(err, PS_EREFUSED,
                           "%s: model %s on %s (shard %d/%d) is unfinished; finish it with "
                           "`index --resume` before merging", shard, s[i].model, s[i].dataset,
                           s[i].p.shard_i, s[i].p.shard_n);
            break;
        }
        Stats one;
        if ((rc = stats_load(&one, s[i].state, s[i].state_n, err))) {
            ps_preferr(err, rc, "%s", shard);
            break;
        }
        int g = 0;
        while (g < *ng && (strcmp((*gs)[g].model, s[i].model) ||
                           strcmp((*gs)[g].dataset, s[i].dataset) ||
                           strcmp((*gs)[g].sae_path, s[i].sae_path) ||
                           strcmp((*gs)[g].sae_sha, s[i].sae_sha256)))
            g++;
        if (g == *ng) {
            *gs = xrealloc(*gs, (size_t)(*ng + 1) * sizeof **gs);
            Group *x = &(*gs)[(*ng)++];
            memset(x, 0, sizeof *x);
            snprintf(x->model, sizeof x->model, "%s", s[i].model);
            snprintf(x->dataset, sizeof x->dataset, "%s", s[i].dataset);
            snprintf(x->sae_path, sizeof x->sae_path, "%s", s[i].sae_path);
            snprintf(x->sae_sha, sizeof x->sae_sha, "%s", s[i].sae_sha256);
            x->st = one;
            x->have = 1;
            continue;
        }
        rc = stats_merge(&(*gs)[g].st, &one, err);
        stats_free(&one);
        if (rc)
            ps_preferr(err, rc, "%s", shard);
    }
    idx_states_free(s, n);
    return rc;
}

int
stats_merge_shards(Idx *ix, int n, const char *const *shards, char *err)
{
    Group *gs = NULL;
    int ng = 0, rc = PS_OK;
    for (int i = 0; i < n && !rc; i++)
        rc = merge_states(shards[i], &gs, &ng, err);
    for (int i = 0; i < n && !rc; i++)
        rc = idx_copy_shard(ix, shards[i], err);
    if (!rc)
        rc = idx_begin(ix, err);
    if (rc)
        goto out;
    int64_t *ss = xcalloc((size_t)ng + 1, sizeof *ss);
    for (int g = 0; g < ng && !rc; g++) {
        IdxModel m;
        IdxDataset d;
        IdxSae a;
        rc = idx_find_model(ix, gs[g].model, &m, err);
        if (!rc)
            rc = idx_find_dataset(ix, gs[g].dataset, &d, err);
        if (!rc)
            rc = idx_find_sae(ix, gs[g].sae_path, &a, err);
        if (!rc)
            rc = idx_add_statset(ix, m.id, d.id, a.id, gs[g].st.cfg.k_top, gs[g].st.cfg.tau,
                                 &ss[g], err);
        if (!rc)
            rc = stats_finalise(&gs[g].st, ix, ss[g], err);
        uint8_t *snap = NULL;
        size_t sn = 0;
        if (!rc)
            rc = stats_save(&gs[g].st, &snap, &sn, err);
        IdxProgress p = { m.id, d.id, a.id, 0, 1, -1, gs[g].st.n_images, 1 };
        if (!rc)
            rc = idx_put_progress(ix, &p, snap, sn, err);
        free(snap);
    }
    /* diff groups for every base/adapted pair on the same dataset and SAE */
    IdxStatset *all = NULL;
    int na = 0;
    if (!rc)
        rc = idx_statsets(ix, &all, &na, err);
    for (int i = 0; i < na && !rc; i++)
        for (int j = 0; j < na && !rc; j++)
            if (!strcmp(all[i].kind, "base") && !strcmp(all[j].kind, "adapted") &&
                all[i].dataset_id == all[j].dataset_id && all[i].sae_id == all[j].sae_id &&
                all[i].final && all[j].final)
                rc = idx_diff_compute(ix, all[i].id, all[j].id, 50, 100, err);
    free(all);
    free(ss);
    if (!rc)
        rc = idx_commit(ix, err);
    else
        idx_rollback(ix);
out:
    for (int g = 0; g < ng; g++)
        stats_free(&gs[g].st);
    free(gs);
    return rc;
}
