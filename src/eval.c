/* SPDX-License-Identifier: MIT */
/*
 * eval.c - top-k latent masking classification (PatchSAE §4.1; reference §5).
 *
 * Per batch of one class's images: one forward to the hook layer that also
 * finishes the unmodified model (the "orig" prediction), one sparse SAE
 * encode of every token, then for each condition a masked sparse decode
 * (sae_decode_masked, + c on every element) into the patched residual and
 * the remaining blocks (clip_image_from_layer). The two masks of k = S (keep
 * everything = the plain reconstruction; keep nothing = b_dec + c) are the
 * same for every selection, so they run once per batch and are shared.
 * Predictions are the argmax of the image-text similarity (the logit scale
 * does not change it; first class on ties).
 *
 * Latent orders (EvalRank) are computed once from the index's class counts;
 * the random baseline's order of a class is drawn when the class is first
 * seen. Nothing is allocated per batch.
 */
#include "eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "ps.h"

/* ---------------------------------------------------------------- orders */

typedef struct Ent {
    int32_t lat;
    int64_t cnt;
} Ent;

/* count descending, then latent ascending */
static int
ent_cmp(const void *a, const void *b)
{
    const Ent *x = a, *y = b;
    if (x->cnt != y->cnt)
        return x->cnt > y->cnt ? -1 : 1;
    return (x->lat > y->lat) - (x->lat < y->lat);
}

/* out (depth) = the first depth latents of ents (sorted, positive) then zero-count ones. */
static void
fill_order(const Ent *ents, int64_t n, int S, int depth, uint8_t *mark, int32_t *out)
{
    int64_t j = 0;
    for (; j < n && j < depth; j++)
        out[j] = ents[j].lat;
    if (j == depth)
        return;
    memset(mark, 0, (size_t)S);
    for (int64_t i = 0; i < n; i++)
        mark[ents[i].lat] = 1;
    for (int s = 0; s < S && j < depth; s++)
        if (!mark[s])
            out[j++] = s;
    PS_ASSERT(j == depth);
}

void
eval_rank_free(EvalRank *r)
{
    if (!r)
        return;
    free(r->order);
    free(r->dataset);
    free(r->n_pos);
    memset(r, 0, sizeof *r);
}

/*
 * Orders of C classes over S latents from n (cls, lat, cnt) triples; see
 * eval.h. Memory: the triples once more (as Ent) plus C*depth int32.
 */
int
eval_rank_build(EvalRank *r, int C, int S, int depth, int64_t n, const int32_t *cls,
                const int32_t *lat, const int64_t *cnt, char *err)
{
    memset(r, 0, sizeof *r);
    if (C < 1 || S < 1 || n < 0)
        return ps_seterr(err, PS_EUSAGE, "class counts: %d classes, %d latents", C, S);
    depth = MAX(1, MIN(depth, S));
    size_t osz;
    if (ps_mul((size_t)C, (size_t)depth * sizeof(int32_t), &osz))
        return ps_seterr(err, PS_ENOMEM, "class counts: %d classes x %d latents", C, depth);
    int64_t *start = xcalloc((size_t)C + 1, sizeof *start);
    for (int64_t i = 0; i < n; i++) {
        if (cls[i] < 0 || cls[i] >= C || lat[i] < 0 || lat[i] >= S || cnt[i] < 0) {
            free(start);
            return ps_seterr(err, PS_EFORMAT,
                             "class counts: row (class %d, latent %d, count %lld) out of range "
                             "(%d classes, %d latents)",
                             cls[i], lat[i], (long long)cnt[i], C, S);
        }
        start[cls[i] + 1]++;
    }
    for (int c = 0; c < C; c++)
        start[c + 1] += start[c];
    Ent *ents = ps_try_malloc((size_t)MAX(n, 1) * sizeof *ents, err);
    int64_t *fill = xcalloc((size_t)C, sizeof *fill);
    int64_t *sum = xcalloc((size_t)S, sizeof *sum);
    uint8_t *mark = xmalloc((size_t)S);
    int rc = ents ? PS_OK : PS_ENOMEM;
    if (!rc) {
        r->order = ps_try_malloc(osz, err);
        if (!r->order)
            rc = PS_ENOMEM;
    }
    if (!rc) {
        r->n_class = C;
        r->d_sae = S;
        r->depth = depth;
        r->dataset = xmalloc((size_t)depth * sizeof *r->dataset);
        r->n_pos = xcalloc((size_t)C, sizeof *r->n_pos);
        for (int64_t i = 0; i < n; i++) {
            if (cnt[i] == 0)
                continue;
            Ent *e = &ents[start[cls[i]] + fill[cls[i]]++];
            e->lat = lat[i];
            e->cnt = cnt[i];
            sum[lat[i]] += cnt[i];
        }
        for (int c = 0; c < C && !rc; c++) {
            Ent *e = ents + start[c];
            int64_t m = fill[c];
            qsort(e, (size_t)m, sizeof *e, ent_cmp);
            for (int64_t i = 1; i < m; i++)
                if (e[i].lat == e[i - 1].lat)
                    rc = ps_seterr(err, PS_EFORMAT, "class counts: latent %d of class %d twice",
                                   e[i].lat, c);
            r->n_pos[c] = m;
            fill_order(e, m, S, depth, mark, r->order + (size_t)c * depth);
        }
    }
    if (!rc) {
        /* dataset level: a_D[s] = sum_c a_c[s] */
        Ent *d = ps_try_malloc((size_t)S * sizeof *d, err);
        if (!d)
            rc = PS_ENOMEM;
        else {
            int64_t m = 0;
            for (int s = 0; s < S; s++)
                if (sum[s] > 0)
                    d[m++] = (Ent){ s, sum[s] };
            qsort(d, (size_t)m, sizeof *d, ent_cmp);
            fill_order(d, m, S, depth, mark, r->dataset);
            free(d);
        }
    }
    free(start);
    free(ents);
    free(fill);
    free(sum);
    free(mark);
    if (rc)
        eval_rank_free(r);
    return rc;
}

typedef struct Rows {
    int64_t n, cap;
    int32_t *cls, *lat;
    int64_t *cnt;
    int bad;
} Rows;

static int
rows_cb(void *ctx, int ncol, const char *const *names, const char *const *v)
{
    (void)names;
    Rows *r = ctx;
    if (ncol != 3 || !v[0] || !v[1] || !v[2]) {
        r->bad = 1;
        return 1;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4096;
        r->cls = xrealloc(r->cls, (size_t)r->cap * sizeof *r->cls);
        r->lat = xrealloc(r->lat, (size_t)r->cap * sizeof *r->lat);
        r->cnt = xrealloc(r->cnt, (size_t)r->cap * sizeof *r->cnt);
    }
    long long c = strtoll(v[0], NULL, 10), l = strtoll(v[1], NULL, 10);
    r->cls[r->n] = c < INT32_MIN || c > INT32_MAX ? -1 : (int32_t)c;
    r->lat[r->n] = l < INT32_MIN || l > INT32_MAX ? -1 : (int32_t)l;
    r->cnt[r->n] = strtoll(v[2], NULL, 10);
    r->n++;
    return 0;
}

int
eval_rank_load(EvalRank *r, Idx *ix, int64_t statset, int C, int S, int depth, char *err)
{
    memset(r, 0, sizeof *r);
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT class, latent, n_tokens FROM class_counts WHERE statset_id = %lld",
             (long long)statset);
    Rows rows = { 0 };
    int rc = idx_select(ix, sql, rows_cb, &rows, err);
    if (!rc && rows.bad)
        rc = ps_seterr(err, PS_EFORMAT, "class_counts of statset %lld: NULL in a row",
                       (long long)statset);
    if (!rc && rows.n == 0)
        rc = ps_seterr(err, PS_EUSAGE, "statset %lld has no class counts (is it finalised?)",
                       (long long)statset);
    if (!rc)
        rc = eval_rank_build(r, C, S, depth, rows.n, rows.cls, rows.lat, rows.cnt, err);
    free(rows.cls);
    free(rows.lat);
    free(rows.cnt);
    return rc;
}

/* splitmix64 (Steele, Lea, Flood 2014): a full-period 64-bit generator, one add and a mix. */
static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void
eval_random_order(uint64_t seed, int cls, int S, int depth, int32_t *perm, int32_t *out)
{
    uint64_t st = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(cls + 1));
    for (int s = 0; s < S; s++)
        perm[s] = s;
    depth = MIN(depth, S);
    for (int i = 0; i < depth; i++) {
        /* uniform j in [i, S): multiply-shift of a 32-bit draw (bias below 2^-16 for S < 2^16) */
        uint64_t u = splitmix64(&st) >> 32;
        int j = i + (int)((u * (uint64_t)(S - i)) >> 32);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        out[i] = perm[i];
    }
}

void
eval_mask(const int32_t *order, int k, int S, int on, uint8_t *keep)
{
    if (k >= S) {
        memset(keep, on ? 1 : 0, (size_t)S);
        return;
    }
    memset(keep, on ? 0 : 1, (size_t)S);
    for (int i = 0; i < k; i++) {
        PS_ASSERT(order[i] >= 0 && order[i] < S);
        keep[order[i]] = on ? 1 : 0;
    }
}

static int
int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int
eval_parse_ks(const char *s, int S, int *ks, int *n, char *err)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[32];
        if (len == 0 || len >= sizeof tok)
            return ps_seterr(err, PS_EUSAGE, "--k %s: empty or overlong entry", s);
        memcpy(tok, p, len);
        tok[len] = 0;
        long v;
        if (!strcmp(tok, "all"))
            v = S;
        else {
            char *end;
            errno = 0;
            v = strtol(tok, &end, 10);
            if (*end || errno || v < 1)
                return ps_seterr(err, PS_EUSAGE, "--k %s: \"%s\" is not a positive integer or all",
                                 s, tok);
        }
        if (*n == EVAL_MAX_K)
            return ps_seterr(err, PS_EUSAGE, "--k %s: more than %d values", s, EVAL_MAX_K);
        ks[(*n)++] = (int)MIN(v, (long)S);
        p += len;
        if (*p == ',' && !*++p)
            return ps_seterr(err, PS_EUSAGE, "--k %s: trailing comma", s);
    }
    if (*n == 0)
        return ps_seterr(err, PS_EUSAGE, "--k: empty list");
    qsort(ks, (size_t)*n, sizeof *ks, int_cmp);
    int m = 0;
    for (int i = 0; i < *n; i++)
        if (m == 0 || ks[m - 1] != ks[i])
            ks[m++] = ks[i];
    *n = m;
    return PS_OK;
}

void
eval_config_init(EvalConfig *cfg, int S)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = eval_parse_ks(EVAL_DEFAULT_KS, S, cfg->k, &cfg->n_k, NULL);
    PS_ASSERT(rc == PS_OK);
    cfg->add_const = SAE_PATCH_BIAS;
    cfg->baselines = 1;
    cfg->seed = 1;
    cfg->batch = EVAL_BATCH;
}

/* ---------------------------------------------------------------- evaluation */

void
eval_free(Eval *ev)
{
    if (!ev)
        return;
    free(ev->cond);
    free(ev->n_img);
    free(ev->correct);
    if (ev->resid)
        ps_big_free(ev->resid, 2 * (size_t)ev->cfg.batch * ev->n_tok * ev->d_model * sizeof(float));
    free(ev->embeds);
    free(ev->logits);
    free(ev->pred);
    free(ev->pred_recon);
    free(ev->pred_off);
    free(ev->keep);
    free(ev->perm);
    free(ev->rorder);
    sae_sparse_free(&ev->sp);
    sae_work_free(&ev->work);
    memset(ev, 0, sizeof *ev);
}

static void
add_cond(Eval *ev, const char *mode, const char *name, int sel, int on, int k)
{
    EvalCond *c = &ev->cond[ev->n_cond++];
    snprintf(c->mode, sizeof c->mode, "%s", mode);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->sel = sel;
    c->on = on;
    c->k = k;
}

int
eval_init(Eval *ev, const EvalConfig *cfg, Clip *c, const ClipPrompts *prompts, const Sae *s,
          int hook_layer, const EvalRank *rank, const float *text, int C, char *err)
{
    memset(ev, 0, sizeof *ev);
    const ClipConfig *g = &c->cfg;
    if (s->d_in != g->vision.width)
        return ps_seterr(err, PS_EUSAGE, "SAE input width %d != model width %d", s->d_in,
                         g->vision.width);
    if (rank->d_sae != s->d_sae || rank->n_class != C)
        return ps_seterr(err, PS_EUSAGE,
                         "class counts cover %d classes x %d latents; the SAE has %d latents "
                         "and the dataset %d classes",
                         rank->n_class, rank->d_sae, s->d_sae, C);
    if (hook_layer < 0 || hook_layer >= g->vision.layers)
        return ps_seterr(err, PS_EUSAGE, "hook layer %d out of range 0..%d", hook_layer,
                         g->vision.layers - 1);
    if (cfg->n_k < 1 || cfg->n_k > EVAL_MAX_K || cfg->batch < 1)
        return ps_seterr(err, PS_EUSAGE, "eval: bad configuration (%d k values, batch %d)",
                         cfg->n_k, cfg->batch);
    for (int i = 0; i < cfg->n_k; i++)
        if (cfg->k[i] < 1 || cfg->k[i] > s->d_sae || (cfg->k[i] < s->d_sae &&
                                                      cfg->k[i] > rank->depth))
            return ps_seterr(err, PS_EUSAGE, "k = %d outside 1..%d (orders hold %d)", cfg->k[i],
                             s->d_sae, rank->depth);
    int rc = clip_reserve(c, cfg->batch, prompts ? prompts->n_ctx : 0, err);
    if (rc)
        return rc;
    ev->cfg = *cfg;
    ev->clip = c;
    ev->prompts = prompts;
    ev->sae = s;
    ev->rank = rank;
    ev->text = text;
    ev->hook_layer = hook_layer;
    ev->n_class = C;
    ev->n_tok = g->n_tok + (prompts ? prompts->n_ctx : 0);
    ev->d_model = g->vision.width;
    ev->d_embed = g->embed_dim;
    int n_sel = cfg->baselines ? 3 : 1;
    ev->cond = xcalloc(2 + (size_t)n_sel * 2 * cfg->n_k, sizeof *ev->cond);
    add_cond(ev, "orig", "orig", -1, 0, 0);
    add_cond(ev, "recon", "recon", -1, 1, 0);
    static const char *const modes[3][2] = { { "off", "on" }, { "random", "random" },
                                             { "dataset", "dataset" } };
    static const char *const names[3][2] = { { "off", "on" }, { "random_off", "random_on" },
                                             { "dataset_off", "dataset_on" } };
    for (int sel = 0; sel < n_sel; sel++)
        for (int i = 0; i < cfg->n_k; i++)
            for (int on = 1; on >= 0; on--)
                add_cond(ev, modes[sel][on], names[sel][on], sel, on, cfg->k[i]);
    ev->n_img = xcalloc((size_t)C, sizeof *ev->n_img);
    ev->correct = xcalloc((size_t)C * ev->n_cond, sizeof *ev->correct);
    size_t res = (size_t)cfg->batch * ev->n_tok * ev->d_model;
    ev->resid = ps_big_alloc(2 * res * sizeof(float));
    if (!ev->resid) {
        eval_free(ev);
        return ps_seterr(err, PS_ENOMEM, "eval: out of memory for %d images of %d tokens",
                         cfg->batch, ev->n_tok);
    }
    ev->patched = ev->resid + res;
    ev->embeds = xmalloc((size_t)cfg->batch * ev->d_embed * sizeof *ev->embeds);
    ev->logits = xmalloc((size_t)cfg->batch * C * sizeof *ev->logits);
    ev->pred = xmalloc((size_t)cfg->batch * sizeof *ev->pred);
    ev->pred_recon = xmalloc((size_t)cfg->batch * sizeof *ev->pred_recon);
    ev->pred_off = xmalloc((size_t)cfg->batch * sizeof *ev->pred_off);
    ev->keep = xmalloc((size_t)s->d_sae);
    ev->perm = xmalloc((size_t)s->d_sae * sizeof *ev->perm);
    ev->rorder = xmalloc((size_t)rank->depth * sizeof *ev->rorder);
    ev->rorder_cls = -1;
    if ((rc = sae_work_init(&ev->work, s, err))) {
        eval_free(ev);
        return rc;
    }
    return PS_OK;
}

/* pred[n] = argmax over classes of embeds[n] . text[c] (first on ties). */
static void
predict(Eval *ev, int N, int *pred)
{
    clip_logits(ev->clip, ev->embeds, N, ev->text, ev->n_class, ev->logits);
    for (int n = 0; n < N; n++) {
        const float *l = ev->logits + (size_t)n * ev->n_class;
        int best = 0;
        for (int c = 1; c < ev->n_class; c++)
            if (l[c] > l[best])
                best = c;
        pred[n] = best;
    }
}

int
eval_forward_masked(Eval *ev, const float *resid, int N, const uint8_t *keep, float *embeds,
                    char *err)
{
    PS_ASSERT(N >= 0 && N <= ev->cfg.batch);
    int rc = sae_encode_sparse(ev->sae, resid, N * ev->n_tok, &ev->sp, &ev->work, err);
    if (rc)
        return rc;
    sae_decode_masked(ev->sae, &ev->sp, keep, ev->cfg.add_const, ev->patched);
    return clip_image_from_layer(ev->clip, ev->patched, N, ev->hook_layer, ev->prompts, embeds,
                                 err);
}

/* Decode under keep (NULL: all) and finish the forward; predictions into pred. */
static int
run_mask(Eval *ev, int N, const uint8_t *keep, int *pred, char *err)
{
    sae_decode_masked(ev->sae, &ev->sp, keep, ev->cfg.add_const, ev->patched);
    int rc = clip_image_from_layer(ev->clip, ev->patched, N, ev->hook_layer, ev->prompts,
                                   ev->embeds, err);
    if (!rc)
        predict(ev, N, pred);
    return rc;
}

static void
tally(Eval *ev, int cls, int i, const int *pred, int N)
{
    int64_t k = 0;
    for (int n = 0; n < N; n++)
        k += pred[n] == cls;
    ev->correct[(size_t)cls * ev->n_cond + i] += k;
}

int
eval_batch(Eval *ev, int cls, const float *pixels, int N, char *err)
{
    PS_ASSERT(cls >= 0 && cls < ev->n_class && N >= 0 && N <= ev->cfg.batch);
    if (N == 0)
        return PS_OK;
    int S = ev->sae->d_sae, *pr = ev->pred;
    /* one forward: the hook-layer residual and the unmodified prediction */
    int rc = clip_encode_image_ex(ev->clip, pixels, N, ev->prompts, ev->hook_layer, ev->resid,
                                  ev->embeds, err);
    if (rc)
        return rc;
    predict(ev, N, pr);
    tally(ev, cls, 0, pr, N);
    if ((rc = sae_encode_sparse(ev->sae, ev->resid, N * ev->n_tok, &ev->sp, &ev->work, err)))
        return rc;
    if ((rc = run_mask(ev, N, NULL, ev->pred_recon, err)))
        return rc;
    tally(ev, cls, 1, ev->pred_recon, N);
    int need_off = 0;
    for (int i = 2; i < ev->n_cond; i++)
        need_off |= ev->cond[i].k >= S && !ev->cond[i].on;
    if (need_off) {
        memset(ev->keep, 0, (size_t)S);
        if ((rc = run_mask(ev, N, ev->keep, ev->pred_off, err)))
            return rc;
    }
    if (ev->cfg.baselines && ev->rorder_cls != cls) {
        eval_random_order(ev->cfg.seed, cls, S, ev->rank->depth, ev->perm, ev->rorder);
        ev->rorder_cls = cls;
    }
    for (int i = 2; i < ev->n_cond; i++) {
        const EvalCond *c = &ev->cond[i];
        if (c->k >= S) {
            tally(ev, cls, i, c->on ? ev->pred_recon : ev->pred_off, N);
            continue;
        }
        const int32_t *order = c->sel == EVAL_SEL_CLASS
                                   ? ev->rank->order + (size_t)cls * ev->rank->depth
                               : c->sel == EVAL_SEL_RANDOM ? ev->rorder
                                                           : ev->rank->dataset;
        eval_mask(order, c->k, S, c->on, ev->keep);
        if ((rc = run_mask(ev, N, ev->keep, pr, err)))
            return rc;
        tally(ev, cls, i, pr, N);
    }
    ev->n_img[cls] += N;
    return PS_OK;
}

int64_t
eval_count(const Eval *ev, int cls)
{
    if (cls >= 0)
        return ev->n_img[cls];
    int64_t n = 0;
    for (int c = 0; c < ev->n_class; c++)
        n += ev->n_img[c];
    return n;
}

static int64_t
n_correct(const Eval *ev, int cls, int i)
{
    if (cls >= 0)
        return ev->correct[(size_t)cls * ev->n_cond + i];
    int64_t k = 0;
    for (int c = 0; c < ev->n_class; c++)
        k += ev->correct[(size_t)c * ev->n_cond + i];
    return k;
}

double
eval_accuracy(const Eval *ev, int cls, int i)
{
    int64_t n = eval_count(ev, cls);
    return n ? 100.0 * (double)n_correct(ev, cls, i) / (double)n : NAN;
}

int
eval_store(const Eval *ev, Idx *ix, int64_t model, int64_t dataset, int64_t sae,
           int64_t select_model, char *err)
{
    int rc = idx_begin(ix, err);
    if (rc)
        return rc;
    for (int cls = -1; cls < ev->n_class && !rc; cls++) {
        int64_t n = eval_count(ev, cls);
        if (n == 0)
            continue;
        for (int i = 0; i < ev->n_cond && !rc; i++) {
            const EvalCond *c = &ev->cond[i];
            IdxEval e = { .model_id = model, .dataset_id = dataset, .sae_id = sae,
                          .select_model_id = select_model, .cls = cls, .n_images = n,
                          .accuracy = eval_accuracy(ev, cls, i) };
            snprintf(e.mode, sizeof e.mode, "%s", c->mode);
            e.k = c->sel > EVAL_SEL_CLASS && !c->on ? -c->k : c->k;
            rc = idx_put_eval(ix, &e, err);
        }
    }
    if (!rc)
        rc = idx_commit(ix, err);
    if (rc)
        idx_rollback(ix);
    return rc;
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void
csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int
eval_write_csv(const Eval *ev, const char *const *names, const char *path, char *err)
{
    size_t n = strlen(path) + 5;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = ps_seterr(err, PS_EIO, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    fprintf(f, "class,class_name,mode,k,n_images,correct,accuracy\n");
    for (int pass = 0; pass < 2; pass++)
        for (int cls = pass ? 0 : -1; cls < (pass ? ev->n_class : 0); cls++) {
            int64_t m = eval_count(ev, cls);
            if (m == 0)
                continue;
            for (int i = 0; i < ev->n_cond; i++) {
                fprintf(f, "%d,", cls);
                csv_field(f, cls < 0 ? "all" : names ? names[cls] : "");
                fprintf(f, ",%s,%d,%lld,%lld,%.4f\n", ev->cond[i].name, ev->cond[i].k,
                        (long long)m, (long long)n_correct(ev, cls, i),
                        eval_accuracy(ev, cls, i));
            }
        }
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmp, path)) {
        int rc = ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno ? errno : EIO));
        remove(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return PS_OK;
}
