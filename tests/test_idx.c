/* SPDX-License-Identifier: MIT */
/*
 * test_idx.c - the index (idx.c) and the statistics accumulator (stats.c):
 * schema creation and version refusal, every insert/read round trip, the
 * PSP1 blob codec against a brute-force top-K (and hostile blobs), the
 * statistics against a brute-force computation on random sparse data with
 * ties, merge == one pass, snapshot + continue == one pass, diff groups,
 * annotations, and a small synthetic index.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idx.h"
#include "ps.h"
#include "stats.h"
#include "test.h"

/* ---- random sparse images ---- */

typedef struct Img {
    int T;
    int64_t rowptr[65];
    int32_t idx[64 * 40];
    float val[64 * 40];
} Img;

/* Values are multiples of 1/8 (many ties), some 0 or negative (ignored), latents < S. */
static void
rand_img(Img *m, int T, int S, int maxper)
{
    m->T = T;
    int n = 0;
    for (int t = 0; t < T; t++) {
        m->rowptr[t] = n;
        int k = (int)(t_rand() % (unsigned)(maxper + 1));
        int s = (int)(t_rand() % 3);
        for (int j = 0; j < k && s < S; j++) {
            m->idx[n] = s;
            int q = (int)(t_rand() % 17) - 1; /* -1..15 */
            m->val[n] = (float)q / 8.0f;
            n++;
            s += 1 + (int)(t_rand() % 4);
        }
    }
    m->rowptr[T] = n;
}

/* ---- blob ---- */

static int
act_order(const void *pa, const void *pb)
{
    const IdxAct *a = pa, *b = pb;
    if (a->value != b->value)
        return a->value > b->value ? -1 : 1;
    return (a->latent > b->latent) - (a->latent < b->latent);
}

static void
test_blob(void)
{
    char err[PS_ERRLEN];
    t_seed(7);
    for (int trial = 0; trial < 40; trial++) {
        int S = trial % 2 ? 70000 : 300; /* u24 and u16 indices */
        int T = 1 + (int)(t_rand() % 30), K = 1 + (int)(t_rand() % 8);
        /* random rows with continuous values so ties are rare; a few exact ties too */
        int64_t rowptr[32];
        static int32_t idx[32 * 60];
        static float val[32 * 60];
        int n = 0;
        for (int t = 0; t < T; t++) {
            rowptr[t] = n;
            int k = (int)(t_rand() % 40), s = (int)(t_rand() % 5);
            for (int j = 0; j < k && s < S; j++) {
                idx[n] = s;
                val[n] = (t_rand() % 5 == 0) ? 0.5f : expf(4 * t_randf()) * (t_randf() > -0.9f);
                n++;
                s += 1 + (int)(t_rand() % (unsigned)(S / 50 + 1));
            }
        }
        rowptr[T] = n;
        size_t cap = idx_blob_bound(T, K, S), bn;
        uint8_t *b = malloc(cap);
        CHECK_EQ_INT(idx_blob_encode(T, rowptr, idx, val, K, S, b, &bn, err), PS_OK);
        CHECK(bn <= cap);
        int nt;
        CHECK_EQ_INT(idx_blob_check(b, bn, &nt, err), PS_OK);
        CHECK_EQ_INT(nt, T);
        float lo, hi;
        memcpy(&lo, b + 8, 4);
        memcpy(&hi, b + 12, 4);
        double bound = hi > lo ? exp(log((double)hi / lo) / 508.0) - 1 + 1e-6 : 1e-6;
        int ok_sets = 1, ok_vals = 1, ok_map = 1;
        for (int t = 0; t < T; t++) {
            IdxAct ref[64], got[255];
            int m = 0;
            for (int64_t j = rowptr[t]; j < rowptr[t + 1]; j++)
                if (val[j] > 0)
                    ref[m++] = (IdxAct){ idx[j], val[j] };
            qsort(ref, (size_t)m, sizeof *ref, act_order);
            int keep = MIN(m, K), ng;
            CHECK_EQ_INT(idx_blob_token(b, bn, t, got, 255, &ng, err), PS_OK);
            if (ng != keep) {
                ok_sets = 0;
                continue;
            }
            /* same set of latents (the K best, ties by lower latent) */
            for (int i = 0; i < keep; i++) {
                int f = 0;
                for (int j = 0; j < keep; j++)
                    f |= got[j].latent == ref[i].latent;
                ok_sets &= f;
            }
            for (int i = 0; i < keep; i++) {
                float want = 0;
                for (int j = 0; j < keep; j++)
                    if (ref[j].latent == got[i].latent)
                        want = MAX(ref[j].value, hi * IDX_BLOB_FLOOR);
                if (fabs(got[i].value - want) > bound * want)
                    ok_vals = 0;
                if (i && got[i].value > got[i - 1].value)
                    ok_vals = 0;
            }
            /* map of each kept latent agrees with the token view */
            for (int i = 0; i < keep; i++) {
                float map[32];
                int nm;
                idx_blob_map(b, bn, got[i].latent, map, 32, &nm, err);
                ok_map &= nm == T && map[t] == got[i].value;
            }
        }
        CHECK_MSG(ok_sets, "trial %d: decoded latents differ from the brute-force top-%d", trial, K);
        CHECK_MSG(ok_vals, "trial %d: quantisation error above %g", trial, bound);
        CHECK(ok_map);
        /* hostile variants */
        CHECK_EQ_INT(idx_blob_check(b, bn - 1, NULL, err), PS_EFORMAT);
        CHECK_EQ_INT(idx_blob_check(b, 10, NULL, err), PS_EFORMAT);
        uint8_t save = b[0];
        b[0] = 'X';
        CHECK_EQ_INT(idx_blob_check(b, bn, NULL, err), PS_EFORMAT);
        b[0] = save;
        save = b[IDX_BLOB_HDR];
        b[IDX_BLOB_HDR] = 255;
        CHECK_EQ_INT(idx_blob_check(b, bn, NULL, err), PS_EFORMAT);
        b[IDX_BLOB_HDR] = save;
        IdxAct one[1];
        int n1;
        CHECK_EQ_INT(idx_blob_token(b, bn, T, one, 1, &n1, err), PS_EUSAGE);
        free(b);
    }
    /* non-ascending latents are refused; a latent >= d_sae is refused at encode */
    int64_t rp[2] = { 0, 2 };
    int32_t ix2[2] = { 5, 3 };
    float v2[2] = { 1, 2 };
    uint8_t b[64];
    size_t bn;
    CHECK_EQ_INT(idx_blob_encode(1, rp, ix2, v2, 4, 10, b, &bn, err), PS_OK);
    CHECK_EQ_INT(idx_blob_check(b, bn, NULL, err), PS_OK);
    uint8_t t0 = b[IDX_BLOB_HDR + 1];
    b[IDX_BLOB_HDR + 1] = b[IDX_BLOB_HDR + 3];
    b[IDX_BLOB_HDR + 3] = t0; /* swap the two u16 latents */
    CHECK_EQ_INT(idx_blob_check(b, bn, NULL, err), PS_EFORMAT);
    CHECK_EQ_INT(idx_blob_encode(1, rp, ix2, v2, 4, 4, b, &bn, err), PS_EUSAGE);
    /* ViT-B/16 budget: T=197, K=32, S=49152 */
    CHECK(idx_blob_bound(197, 32, 49152) == 19125);
}

/* ---- stats against brute force ---- */

#define NI 120
#define TT 6
#define SS 40
#define NC 4
#define KK 5

typedef struct Ref {
    float a[NI][SS], pmax[NI][SS];
    int ptok[NI][SS];
    int64_t cnt[NC][SS];
    int label[NI];
} Ref;

static void
brute(Ref *r, Img *im, const int *label)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NI; i++) {
        r->label[i] = label[i];
        double acc[SS] = { 0 };
        for (int t = 0; t < im[i].T; t++)
            for (int64_t j = im[i].rowptr[t]; j < im[i].rowptr[t + 1]; j++) {
                float v = im[i].val[j];
                int s = im[i].idx[j];
                if (!(v > 0))
                    continue;
                acc[s] += v;
                if (v > r->pmax[i][s]) {
                    r->pmax[i][s] = v;
                    r->ptok[i][s] = t;
                }
                if (v > IDX_TAU && label[i] >= 0)
                    r->cnt[label[i]][s]++;
            }
        for (int s = 0; s < SS; s++)
            r->a[i][s] = (float)(acc[s] / im[i].T);
    }
}

/* Brute-force top-k of latent s by kind: positions, best first. */
static int
brute_top(const Ref *r, int kind, int s, int64_t *pos, float *v)
{
    int used[NI] = { 0 }, n = 0;
    for (int k = 0; k < KK; k++) {
        int best = -1;
        for (int i = 0; i < NI; i++) {
            float x = kind ? r->pmax[i][s] : r->a[i][s];
            if (used[i] || !(x > 0))
                continue;
            float bx = best < 0 ? 0 : kind ? r->pmax[best][s] : r->a[best][s];
            if (best < 0 || x > bx)
                best = i;
        }
        if (best < 0)
            break;
        used[best] = 1;
        pos[n] = best;
        v[n] = kind ? r->pmax[best][s] : r->a[best][s];
        n++;
    }
    return n;
}

static void
fill(Stats *st, Img *im, const int *label, const int *order, int from, int to)
{
    char err[PS_ERRLEN];
    for (int j = from; j < to; j++) {
        int i = order[j];
        int rc = stats_add_image(st, i, label[i], im[i].T, im[i].rowptr, im[i].idx, im[i].val, 0,
                                 NULL, NULL, err);
        PS_ASSERT(rc == PS_OK);
    }
}

/* Same statistics (top lists compared sorted, so heap layout does not matter). */
static int
same_stats(const Stats *a, const Stats *b)
{
    int S = a->cfg.d_sae, k = a->cfg.k_top;
    if (a->n_images != b->n_images)
        return 0;
    StatsTop *x = malloc((size_t)k * sizeof *x), *y = malloc((size_t)k * sizeof *y);
    int ok = 1;
    for (int s = 0; s < S && ok; s++) {
        ok &= a->n_active[s] == b->n_active[s] && a->sum_fx[s] == b->sum_fx[s];
        ok &= a->max_act[s] == b->max_act[s] && a->max_patch[s] == b->max_patch[s];
        for (int h = 0; h < 2; h++) {
            int n = stats_top(a, h, s, x), m = stats_top(b, h, s, y);
            ok &= n == m;
            for (int j = 0; j < MIN(n, m); j++)
                ok &= x[j].value == y[j].value && x[j].pos == y[j].pos &&
                      x[j].label == y[j].label && x[j].token == y[j].token;
        }
    }
    for (int c = 0; c < a->cfg.n_classes && ok; c++) {
        if (!a->cls_count[c] != !b->cls_count[c]) {
            ok = 0;
            break;
        }
        if (a->cls_count[c])
            ok &= !memcmp(a->cls_count[c], b->cls_count[c], (size_t)S * 8) &&
                  !memcmp(a->cls_sum[c], b->cls_sum[c], (size_t)S * 8);
    }
    free(x);
    free(y);
    return ok;
}

static Img g_img[NI];
static Ref g_ref;

static void
setup_index(Idx *ix, int64_t *model, int64_t *sae, int64_t *ds, int n_img, const int *label)
{
    char err[PS_ERRLEN];
    IdxModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "base");
    snprintf(m.kind, sizeof m.kind, "base");
    snprintf(m.sha256, sizeof m.sha256, "aa");
    CHECK_EQ_INT(idx_add_model(ix, &m, err), PS_OK);
    *model = m.id;
    IdxSae a;
    memset(&a, 0, sizeof a);
    snprintf(a.path, sizeof a.path, "sae.safetensors");
    a.d_sae = SS;
    a.d_in = 8;
    CHECK_EQ_INT(idx_add_sae(ix, &a, err), PS_OK);
    *sae = a.id;
    IdxDataset d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "toy");
    d.n_images = n_img;
    d.n_classes = NC;
    CHECK_EQ_INT(idx_add_dataset(ix, &d, err), PS_OK);
    *ds = d.id;
    const char *names[NC] = { "tench", "goldfish", "Great White Shark", "cock" };
    CHECK_EQ_INT(idx_add_classes(ix, d.id, NC, names, err), PS_OK);
    for (int i = 0; i < n_img; i++) {
        IdxImage im;
        memset(&im, 0, sizeof im);
        im.dataset_id = d.id;
        im.pos = i;
        im.label = label[i];
        im.grid = 2;
        CHECK_EQ_INT(idx_add_image(ix, &im, "jpg", 3, 32, err), PS_OK);
    }
}

static void
test_stats(void)
{
    char err[PS_ERRLEN];
    t_seed(11);
    int label[NI], order[NI];
    for (int i = 0; i < NI; i++) {
        rand_img(&g_img[i], TT, SS, 12);
        label[i] = (int)(t_rand() % (NC + 1)) - 1; /* some unlabelled */
        order[i] = i;
    }
    brute(&g_ref, g_img, label);
    StatsConfig cfg;
    stats_config_init(&cfg, SS, NC);
    cfg.k_top = KK;
    Stats one;
    CHECK_EQ_INT(stats_init(&one, &cfg, err), PS_OK);
    fill(&one, g_img, label, order, 0, NI);
    CHECK_EQ_INT(one.n_images, NI);

    /* counters, maxima, top-k against brute force */
    int ok_cnt = 1, ok_top = 1, ok_cls = 1;
    for (int s = 0; s < SS; s++) {
        int64_t na = 0;
        double sum = 0;
        float mx = 0, mp = 0;
        for (int i = 0; i < NI; i++)
            if (g_ref.a[i][s] > 0) {
                na++;
                sum += g_ref.a[i][s];
                mx = MAX(mx, g_ref.a[i][s]);
                mp = MAX(mp, g_ref.pmax[i][s]);
            }
        ok_cnt &= one.n_active[s] == na && one.max_act[s] == mx && one.max_patch[s] == mp;
        ok_cnt &= fabs((double)one.sum_fx[s] / 16777216.0 - sum) < 1e-5;
        for (int h = 0; h < 2; h++) {
            int64_t pos[KK];
            float v[KK];
            StatsTop got[KK];
            int n = brute_top(&g_ref, h, s, pos, v), m = stats_top(&one, h, s, got);
            ok_top &= n == m;
            for (int j = 0; j < MIN(n, m); j++) {
                ok_top &= got[j].pos == pos[j] && got[j].value == v[j];
                ok_top &= got[j].label == label[pos[j]];
                if (h)
                    ok_top &= got[j].token == g_ref.ptok[pos[j]][s];
            }
        }
        for (int c = 0; c < NC; c++)
            ok_cls &= (one.cls_count[c] ? one.cls_count[c][s] : 0) == g_ref.cnt[c][s];
    }
    CHECK_MSG(ok_cnt, "n_active / sum / max differ from brute force");
    CHECK_MSG(ok_top, "top-k (with ties by position) differs from brute force");
    CHECK_MSG(ok_cls, "class counts differ from brute force");

    /* merge of two shards in another order == one pass */
    for (int i = NI - 1; i > 0; i--) {
        int j = (int)(t_rand() % (unsigned)(i + 1)), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    Stats a, b;
    stats_init(&a, &cfg, err);
    stats_init(&b, &cfg, err);
    fill(&a, g_img, label, order, 0, NI / 3);
    fill(&b, g_img, label, order, NI / 3, NI);
    CHECK_EQ_INT(stats_merge(&b, &a, err), PS_OK);
    CHECK_MSG(same_stats(&one, &b), "merge of two shards differs from one pass");

    /* snapshot mid-way, restore, continue == one pass */
    Stats c, d;
    stats_init(&c, &cfg, err);
    fill(&c, g_img, label, order, 0, 50);
    uint8_t *snap;
    size_t sn;
    CHECK_EQ_INT(stats_save(&c, &snap, &sn, err), PS_OK);
    stats_free(&c);
    CHECK_EQ_INT(stats_load(&d, snap, sn, err), PS_OK);
    fill(&d, g_img, label, order, 50, NI);
    CHECK_MSG(same_stats(&one, &d), "snapshot + continue differs from one pass");
    /* hostile snapshots */
    Stats e;
    CHECK_EQ_INT(stats_load(&e, snap, sn / 2, err), PS_EFORMAT);
    snap[sn - 3] ^= 0x55;
    CHECK(stats_load(&e, snap, sn, err) != PS_OK);
    uint8_t junk[16] = { 200, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3 };
    CHECK_EQ_INT(stats_load(&e, junk, sizeof junk, err), PS_EFORMAT);
    free(snap);

    /* a config mismatch is refused */
    StatsConfig cfg2 = cfg;
    cfg2.k_top = KK + 1;
    Stats f2;
    stats_init(&f2, &cfg2, err);
    CHECK_EQ_INT(stats_merge(&f2, &one, err), PS_EUSAGE);
    stats_free(&f2);

    /* a bad latent or label is an error, and leaves the scratch clean */
    Img bad = g_img[0];
    bad.idx[0] = SS + 3;
    bad.val[0] = 1;
    CHECK_EQ_INT(stats_add_image(&a, 999, 0, bad.T, bad.rowptr, bad.idx, bad.val, 0, NULL, NULL,
                                 err), PS_EFORMAT);
    CHECK_EQ_INT(stats_add_image(&a, 999, NC, bad.T, bad.rowptr, bad.idx, bad.val, 0, NULL, NULL,
                                 err), PS_EFORMAT);
    int clean = 1;
    for (int s = 0; s < SS; s++)
        clean &= a.mark[s] == 0;
    CHECK(clean);

    /* image top-m */
    IdxAct top[4];
    int nt;
    Stats g;
    stats_init(&g, &cfg, err);
    CHECK_EQ_INT(stats_add_image(&g, 3, label[3], g_img[3].T, g_img[3].rowptr, g_img[3].idx,
                                 g_img[3].val, 4, top, &nt, err), PS_OK);
    IdxAct ref[SS];
    int nr = 0;
    for (int s = 0; s < SS; s++)
        if (g_ref.a[3][s] > 0)
            ref[nr++] = (IdxAct){ s, g_ref.a[3][s] };
    qsort(ref, (size_t)nr, sizeof *ref, act_order);
    CHECK_EQ_INT(nt, MIN(4, nr));
    int same = 1;
    for (int j = 0; j < nt; j++)
        same &= top[j].latent == ref[j].latent && top[j].value == ref[j].value;
    CHECK(same);
    stats_free(&g);

    /* finalise into an index and read back: entropy, std, share, labels */
    Idx *ix;
    CHECK_EQ_INT(idx_open(&ix, ":memory:", err), PS_OK);
    int64_t model, sae, ds, ss;
    setup_index(ix, &model, &sae, &ds, NI, label);
    CHECK_EQ_INT(idx_add_statset(ix, model, ds, sae, KK, IDX_TAU, &ss, err), PS_OK);
    CHECK_EQ_INT(idx_begin(ix, err), PS_OK);
    CHECK_EQ_INT(stats_finalise(&one, ix, ss, err), PS_OK);
    CHECK_EQ_INT(idx_commit(ix, err), PS_OK);
    int ok_ent = 1, ok_dead = 1, n_dead = 0, n_neg = 0;
    for (int s = 0; s < SS; s++) {
        IdxLatent l;
        CHECK_EQ_INT(idx_latent(ix, ss, s, &l, err), PS_OK);
        int64_t pos[KK];
        float v[KK];
        int n = brute_top(&g_ref, 0, s, pos, v);
        if (n == 0) {
            n_dead++;
            ok_dead &= isnan(l.mean_act) && isnan(l.entropy) && l.top_class == -1 && l.freq == 0;
            continue;
        }
        double w[NC] = { 0 }, tot = 0, ls = 0, lq = 0;
        int nl = 0, cnt[NC] = { 0 };
        for (int j = 0; j < n; j++)
            if (label[pos[j]] >= 0) {
                w[label[pos[j]]] += v[j];
                tot += v[j];
                cnt[label[pos[j]]]++;
                ls += label[pos[j]];
                lq += label[pos[j]] * label[pos[j]];
                nl++;
            }
        double h = -1;
        if (nl >= KK) {
            h = 0;
            for (int c = 0; c < NC; c++)
                if (w[c] > 0)
                    h -= w[c] / tot * log(w[c] / tot + 1e-9);
            h = MAX(h, 0);
        } else {
            n_neg++;
        }
        ok_ent &= fabs(l.entropy - h) < 1e-9;
        ok_ent &= fabs(l.freq - (double)one.n_active[s] / NI) < 1e-12;
        if (nl) {
            double mu = ls / nl;
            ok_ent &= fabs(l.label_std - sqrt(MAX(lq / nl - mu * mu, 0))) < 1e-9;
            int bc = 0;
            for (int c = 1; c < NC; c++)
                if (cnt[c] > cnt[bc] || (cnt[c] == cnt[bc] && w[c] > w[bc]))
                    bc = c;
            ok_ent &= l.top_class == bc && fabs(l.top_share - (double)cnt[bc] / n) < 1e-12;
            IdxLabelCount lc[KK];
            int nlc;
            idx_latent_labels(ix, ss, s, lc, KK, &nlc, err);
            ok_ent &= nlc >= 1 && lc[0].cls == bc && lc[0].n == cnt[bc];
        }
        IdxTopImage ti[KK];
        int nti;
        CHECK_EQ_INT(idx_latent_top(ix, ss, s, IDX_TOP_MEAN, ti, KK, &nti, err), PS_OK);
        ok_ent &= nti == n;
        for (int j = 0; j < MIN(n, nti); j++)
            ok_ent &= ti[j].pos == pos[j] && ti[j].value == v[j] && ti[j].rank == j + 1 &&
                      ti[j].token == -1;
    }
    CHECK_MSG(ok_ent, "finalised entropy/std/top class/top images differ from brute force");
    CHECK(ok_dead);
    CHECK_MSG(n_neg > 0 && n_neg < SS, "entropy -1 cases: %d (want some)", n_neg);
    (void)n_dead;
    /* class counts and class top */
    int ok_ct = 1;
    for (int c = 0; c < NC; c++) {
        IdxClassLatent ct[SS];
        int n;
        CHECK_EQ_INT(idx_class_top(ix, ss, c, ct, SS, &n, err), PS_OK);
        int nz = 0;
        for (int s = 0; s < SS; s++)
            nz += g_ref.cnt[c][s] > 0;
        ok_ct &= n == nz;
        for (int j = 0; j < n; j++) {
            ok_ct &= ct[j].n_tokens == g_ref.cnt[c][ct[j].latent] && ct[j].rank == j + 1;
            if (j)
                ok_ct &= ct[j].n_tokens < ct[j - 1].n_tokens ||
                         (ct[j].n_tokens == ct[j - 1].n_tokens && ct[j].latent > ct[j - 1].latent);
            int64_t cc;
            idx_class_count(ix, ss, c, ct[j].latent, &cc, err);
            ok_ct &= cc == ct[j].n_tokens;
        }
    }
    CHECK_MSG(ok_ct, "class_top / class_counts differ from brute force");
    /* latent list: sorted by freq desc, NULLs last, filters */
    IdxLatent *ls;
    int nls;
    int64_t total;
    CHECK_EQ_INT(idx_latents(ix, ss, IDX_SORT_FREQ, 1, NULL, 0, 0, &ls, &nls, &total, err), PS_OK);
    CHECK_EQ_INT(nls, SS);
    CHECK_EQ_INT(total, SS);
    int sorted = 1;
    for (int j = 1; j < nls; j++)
        sorted &= ls[j].freq < ls[j - 1].freq ||
                  (ls[j].freq == ls[j - 1].freq && ls[j].latent > ls[j - 1].latent);
    CHECK(sorted);
    free(ls);
    CHECK_EQ_INT(idx_latents(ix, ss, IDX_SORT_ENTROPY, 0, NULL, 5, 2, &ls, &nls, &total, err),
                 PS_OK);
    CHECK_EQ_INT(nls, 5);
    CHECK_EQ_INT(total, SS);
    free(ls);
    IdxFilter f;
    idx_filter_init(&f);
    f.hide_dead = 1;
    f.min_freq = 0.05;
    CHECK_EQ_INT(idx_latents(ix, ss, IDX_SORT_MEAN, 1, &f, 0, 0, &ls, &nls, &total, err), PS_OK);
    int want = 0;
    for (int s = 0; s < SS; s++)
        want += one.n_active[s] > 0 && (double)one.n_active[s] / NI >= 0.05;
    CHECK_EQ_INT(nls, want);
    free(ls);
    idx_filter_init(&f);
    f.search = "shark";
    CHECK_EQ_INT(idx_latents(ix, ss, IDX_SORT_LATENT, 0, &f, 0, 0, &ls, &nls, NULL, err), PS_OK);
    int all_shark = nls > 0;
    for (int j = 0; j < nls; j++)
        all_shark &= ls[j].top_class == 2 && !strcmp(ls[j].top_class_name, "Great White Shark");
    CHECK(all_shark);
    free(ls);
    CHECK_EQ_INT(idx_latents(ix, ss, 99, 0, NULL, 0, 0, &ls, &nls, NULL, err), PS_EUSAGE);
    CHECK_EQ_INT(idx_sort_parse("entropy"), IDX_SORT_ENTROPY);
    CHECK_EQ_INT(idx_sort_parse("nope"), -1);
    /* finalise twice replaces (no duplicate rows) */
    CHECK_EQ_INT(stats_finalise(&one, ix, ss, err), PS_OK);
    idx_close(ix);

    stats_free(&one);
    stats_free(&a);
    stats_free(&b);
    stats_free(&d);
}

/* ---- open, version, round trips ---- */

static int
count_rows(void *ctx, int nc, const char *const *names, const char *const *vals)
{
    (void)nc;
    (void)names;
    *(long *)ctx = vals[0] ? atol(vals[0]) : -1;
    return 0;
}

static long
scalar(Idx *ix, const char *sql)
{
    long v = -2;
    char err[PS_ERRLEN];
    if (idx_select(ix, sql, count_rows, &v, err))
        fprintf(stderr, "%s\n", err);
    return v;
}

static char g_text[64];

static int
first_text(void *ctx, int nc, const char *const *names, const char *const *vals)
{
    (void)ctx;
    (void)nc;
    (void)names;
    snprintf(g_text, sizeof g_text, "%s", vals[0] ? vals[0] : "(null)");
    return 1;
}

static void
test_open(void)
{
    char err[PS_ERRLEN];
    Idx *ix;
    CHECK_EQ_INT(idx_open(&ix, ":memory:", err), PS_OK);
    CHECK_EQ_INT(scalar(ix, "PRAGMA user_version"), IDX_SCHEMA_VERSION);
    char buf[64];
    CHECK_EQ_INT(idx_get_meta(ix, "blob_format", buf, sizeof buf, err), PS_OK);
    CHECK_STR(buf, "PSP1");
    CHECK_EQ_INT(idx_get_meta(ix, "nope", buf, sizeof buf, err), PS_EUSAGE);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"), 7);
    CHECK_EQ_INT(idx_select(ix, "DELETE FROM meta", count_rows, NULL, err), PS_EUSAGE);
    idx_close(ix);
    idx_close(NULL);

    /* a file: WAL, reopen, other versions refused */
    const char *p = t_tmp("v.db");
    CHECK_EQ_INT(idx_open(&ix, p, err), PS_OK);
    CHECK_EQ_INT(idx_set_meta(ix, "k", "v", err), PS_OK);
    char walp[512];
    snprintf(walp, sizeof walp, "%s-wal", p);
    CHECK_MSG(access(walp, F_OK) == 0, "no WAL file %s", walp);
    idx_close(ix);
    CHECK_EQ_INT(idx_open_readonly(&ix, p, err), PS_OK);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM models"), 0);
    idx_close(ix);
    CHECK_EQ_INT(idx_open(&ix, p, err), PS_OK);
    CHECK_EQ_INT(idx_exec(ix, "PRAGMA user_version = 7", err), PS_OK);
    idx_close(ix);
    CHECK_EQ_INT(idx_open(&ix, p, err), PS_EFORMAT);
    CHECK(ix == NULL);
    CHECK_MSG(strstr(err, "version 7") && strstr(err, "version 1"), "message: %s", err);
    CHECK_EQ_INT(idx_open_readonly(&ix, p, err), PS_EFORMAT);
    /* an SQLite file that is not an index, and a file that is not SQLite */
    const char *q = t_tmp("other.db");
    CHECK_EQ_INT(idx_open(&ix, q, err), PS_OK);
    CHECK_EQ_INT(idx_exec(ix, "PRAGMA user_version = 0; DROP VIEW latent_summary", err), PS_OK);
    idx_close(ix);
    CHECK_EQ_INT(idx_open(&ix, q, err), PS_EFORMAT);
    CHECK_MSG(strstr(err, "not a patchsae index"), "message: %s", err);
    const char *r = t_tmp("junk.db");
    t_write_file(r, "this is not a database, just some text that is long enough to matter....",
                 72);
    CHECK(idx_open(&ix, r, err) != PS_OK);
    CHECK(ix == NULL);
    CHECK(idx_open_readonly(&ix, t_tmp("missing.db"), err) != PS_OK);
}

static void
test_roundtrip(void)
{
    char err[PS_ERRLEN];
    Idx *ix;
    CHECK_EQ_INT(idx_open(&ix, ":memory:", err), PS_OK);
    IdxModel m, m2;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "clip");
    snprintf(m.kind, sizeof m.kind, "base");
    snprintf(m.path, sizeof m.path, "openai/clip");
    snprintf(m.sha256, sizeof m.sha256, "abc");
    m.hook_layer = 10;
    m.n_tokens = 5;
    m.d_model = 8;
    snprintf(m.extra, sizeof m.extra, "{\"x\":1}");
    CHECK_EQ_INT(idx_add_model(ix, &m, err), PS_OK);
    int64_t base = m.id;
    CHECK_EQ_INT(idx_add_model(ix, &m, err), PS_OK); /* same: found */
    CHECK_EQ_INT(m.id, base);
    snprintf(m.sha256, sizeof m.sha256, "def");
    CHECK_EQ_INT(idx_add_model(ix, &m, err), PS_EREFUSED);
    snprintf(m.kind, sizeof m.kind, "weird");
    CHECK_EQ_INT(idx_add_model(ix, &m, err), PS_EUSAGE);
    memset(&m2, 0, sizeof m2);
    snprintf(m2.name, sizeof m2.name, "maple");
    snprintf(m2.kind, sizeof m2.kind, "adapted");
    CHECK_EQ_INT(idx_add_model(ix, &m2, err), PS_OK);
    int64_t adapted = m2.id;
    IdxModel got;
    CHECK_EQ_INT(idx_find_model(ix, NULL, &got, err), PS_OK);
    CHECK_STR(got.name, "clip");
    CHECK_EQ_INT(got.hook_layer, 10);
    CHECK_STR(got.extra, "{\"x\":1}");
    CHECK_EQ_INT(idx_find_model(ix, "nope", &got, err), PS_EUSAGE);
    IdxModel *ms;
    int nm;
    CHECK_EQ_INT(idx_models(ix, &ms, &nm, err), PS_OK);
    CHECK_EQ_INT(nm, 2);
    free(ms);

    int64_t sae, ds;
    int label[8] = { 0, 1, 2, 3, 0, 1, -1, 2 };
    {
        IdxSae a;
        memset(&a, 0, sizeof a);
        snprintf(a.path, sizeof a.path, "sae.pt");
        a.d_sae = 100;
        CHECK_EQ_INT(idx_add_sae(ix, &a, err), PS_OK);
        sae = a.id;
        a.d_sae = 101;
        CHECK_EQ_INT(idx_add_sae(ix, &a, err), PS_EREFUSED);
        IdxDataset d;
        memset(&d, 0, sizeof d);
        snprintf(d.name, sizeof d.name, "toy");
        d.n_images = 8;
        d.n_classes = NC;
        CHECK_EQ_INT(idx_add_dataset(ix, &d, err), PS_OK);
        ds = d.id;
        CHECK_EQ_INT(idx_add_dataset(ix, &d, err), PS_OK);
        CHECK_EQ_INT(d.id, ds);
        d.n_images = 9;
        CHECK_EQ_INT(idx_add_dataset(ix, &d, err), PS_EREFUSED);
        const char *names[NC] = { "tench", "goldfish", "Great White Shark", "cock" };
        CHECK_EQ_INT(idx_add_classes(ix, ds, NC, names, err), PS_OK);
    }
    int64_t img[8];
    for (int i = 0; i < 8; i++) {
        IdxImage im;
        memset(&im, 0, sizeof im);
        im.dataset_id = ds;
        im.pos = i;
        im.label = label[i];
        im.grid = 2;
        snprintf(im.path, sizeof im.path, "img/%d.png", i);
        char jpeg[8] = "JPEGxx";
        jpeg[5] = (char)('0' + i);
        CHECK_EQ_INT(idx_add_image(ix, &im, jpeg, 6, 32, err), PS_OK);
        img[i] = im.id;
    }
    /* re-adding (resume) updates in place */
    IdxImage im;
    memset(&im, 0, sizeof im);
    im.dataset_id = ds;
    im.pos = 3;
    im.label = 3;
    im.grid = 2;
    CHECK_EQ_INT(idx_add_image(ix, &im, "NEW", 3, 16, err), PS_OK);
    CHECK_EQ_INT(im.id, img[3]);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM images"), 8);
    CHECK_EQ_INT(idx_image(ix, img[3], &im, err), PS_OK);
    CHECK_STR(im.class_name, "cock");
    CHECK_EQ_INT(im.thumb_size, 16);
    CHECK_EQ_INT(idx_image(ix, img[6], &im, err), PS_OK);
    CHECK_EQ_INT(im.label, -1);
    CHECK_STR(im.path, "img/6.png");
    CHECK_EQ_INT(idx_image(ix, 999, &im, err), PS_EUSAGE);
    int64_t at;
    CHECK_EQ_INT(idx_image_at(ix, ds, 5, &at, err), PS_OK);
    CHECK_EQ_INT(at, img[5]);
    void *jp;
    size_t jn;
    int tsz;
    CHECK_EQ_INT(idx_thumb(ix, img[3], &jp, &jn, &tsz, err), PS_OK);
    CHECK(jn == 3 && !memcmp(jp, "NEW", 3) && tsz == 16);
    free(jp);

    int cls[5] = { 2, 0, 1, 3, 0 };
    float prob[5] = { 0.5f, 0.2f, 0.1f, 0.1f, 0.05f };
    CHECK_EQ_INT(idx_put_predictions(ix, img[0], base, 5, cls, prob, err), PS_OK);
    CHECK_EQ_INT(idx_put_predictions(ix, img[0], base, 3, cls, prob, err), PS_OK);
    CHECK_EQ_INT(idx_put_predictions(ix, img[0], base, 6, cls, prob, err), PS_EUSAGE);
    IdxPred pr[5];
    int np;
    CHECK_EQ_INT(idx_predictions(ix, img[0], base, pr, 5, &np, err), PS_OK);
    CHECK_EQ_INT(np, 3);
    CHECK(pr[0].cls == 2 && pr[0].rank == 1 && !strcmp(pr[0].name, "Great White Shark"));
    CHECK_NEAR(pr[0].prob, 0.5, 1e-7);

    /* patches: latents on a token and maps, both models */
    int64_t rowptr[6] = { 0, 2, 3, 3, 5, 6 };
    int32_t ix0[6] = { 4, 9, 4, 1, 4, 77 };
    float v0[6] = { 1.0f, 2.0f, 0.5f, 3.0f, 0.25f, 8.0f };
    uint8_t blob[256];
    size_t bn;
    CHECK_EQ_INT(idx_blob_encode(5, rowptr, ix0, v0, 32, 100, blob, &bn, err), PS_OK);
    CHECK_EQ_INT(idx_put_patches(ix, img[1], base, sae, blob, bn, err), PS_OK);
    CHECK_EQ_INT(idx_put_patches(ix, img[1], base, sae, blob, bn, err), PS_OK);
    CHECK_EQ_INT(idx_put_patches(ix, img[1], base, sae, blob, bn - 1, err), PS_EFORMAT);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM patches"), 1);
    IdxAct acts[8];
    int na;
    CHECK_EQ_INT(idx_patch_latents(ix, img[1], base, sae, 0, acts, 8, &na, err), PS_OK);
    CHECK_EQ_INT(na, 2);
    CHECK(acts[0].latent == 9 && acts[1].latent == 4);
    CHECK_NEAR(acts[0].value, 2.0, 2.0 * 0.03);
    CHECK_EQ_INT(idx_patch_latents(ix, img[1], adapted, sae, 0, acts, 8, &na, err), PS_OK);
    CHECK_EQ_INT(na, 0); /* no blob for the adapted model */
    float map[8];
    int ntok;
    CHECK_EQ_INT(idx_latent_map(ix, img[1], base, sae, 4, map, 8, &ntok, err), PS_OK);
    CHECK_EQ_INT(ntok, 5);
    CHECK(map[0] > 0.9f && map[1] > 0.45f && map[2] == 0 && map[3] > 0.2f && map[4] == 0);
    uint8_t *cp;
    size_t cn;
    CHECK_EQ_INT(idx_patch_blob(ix, img[1], base, sae, &cp, &cn, err), PS_OK);
    CHECK(cn == bn && !memcmp(cp, blob, bn));
    free(cp);
    /* a corrupted stored blob gives a clean error naming the image */
    CHECK_EQ_INT(idx_exec(ix, "UPDATE patches SET blob = x'50535031ffff'", err), PS_OK);
    CHECK_EQ_INT(idx_latent_map(ix, img[1], base, sae, 4, map, 8, &ntok, err), PS_EFORMAT);
    CHECK_MSG(strstr(err, "image"), "message: %s", err);

    IdxAct il[3] = { { 7, 3.0f }, { 2, 1.5f }, { 40, 0.25f } };
    CHECK_EQ_INT(idx_put_image_latents(ix, img[2], base, sae, 3, il, err), PS_OK);
    CHECK_EQ_INT(idx_put_image_latents(ix, img[2], base, sae, 2, il, err), PS_OK);
    CHECK_EQ_INT(idx_image_latents(ix, img[2], base, sae, acts, 8, &na, err), PS_OK);
    CHECK(na == 2 && acts[0].latent == 7 && acts[1].latent == 2 && acts[1].value == 1.5f);

    /* statsets; class top for diff */
    int64_t sb, sa;
    CHECK_EQ_INT(idx_add_statset(ix, base, ds, sae, 16, 0.2f, &sb, err), PS_OK);
    CHECK_EQ_INT(idx_add_statset(ix, adapted, ds, sae, 16, 0.2f, &sa, err), PS_OK);
    int64_t again;
    CHECK_EQ_INT(idx_add_statset(ix, base, ds, sae, 16, 0.2f, &again, err), PS_OK);
    CHECK_EQ_INT(again, sb);
    CHECK_EQ_INT(idx_add_statset(ix, base, ds, sae, 10, 0.2f, &again, err), PS_EREFUSED);
    IdxStatset ssv;
    CHECK_EQ_INT(idx_find_statset(ix, NULL, NULL, &ssv, err), PS_OK);
    CHECK_EQ_INT(ssv.id, sb);
    CHECK_EQ_INT(ssv.d_sae, 100);
    CHECK_EQ_INT(idx_find_statset(ix, "maple", "toy", &ssv, err), PS_OK);
    CHECK_EQ_INT(ssv.id, sa);
    CHECK_STR(ssv.kind, "adapted");
    CHECK_EQ_INT(idx_find_statset(ix, "maple", "other", &ssv, err), PS_EUSAGE);
    /* class 0: base top = 10,11,12,13 ; adapted top = 10,12,20,21 ; hi 2, lo 3 */
    IdxClassLatent bt[4] = { { 1, 10, 50, "" }, { 2, 11, 40, "" }, { 3, 12, 30, "" },
                             { 4, 13, 20, "" } };
    IdxClassLatent at4[4] = { { 1, 10, 60, "" }, { 2, 20, 50, "" }, { 3, 12, 40, "" },
                              { 4, 21, 30, "" } };
    CHECK_EQ_INT(idx_put_class_top(ix, sb, 0, 4, bt, err), PS_OK);
    CHECK_EQ_INT(idx_put_class_top(ix, sa, 0, 4, at4, err), PS_OK);
    for (int j = 0; j < 4; j++) {
        idx_put_class_count(ix, sb, 0, bt[j].latent, bt[j].n_tokens, 1.0, err);
        idx_put_class_count(ix, sa, 0, at4[j].latent, at4[j].n_tokens, 1.0, err);
    }
    CHECK_EQ_INT(idx_diff_compute(ix, sb, sa, 2, 3, err), PS_OK);
    CHECK_EQ_INT(idx_diff_compute(ix, sb, sa, 2, 3, err), PS_OK); /* replaces */
    IdxDiffRow *dr;
    int nd;
    CHECK_EQ_INT(idx_diff_rows(ix, sb, sa, -1, &dr, &nd, err), PS_OK);
    /* high: 10 ; high_low: 11 (adapted rank none) ; low_high: 20 (base none) */
    CHECK_EQ_INT(nd, 3);
    int seen = 0;
    for (int j = 0; j < nd; j++) {
        if (!strcmp(dr[j].grp, "high") && dr[j].latent == 10 && dr[j].base_count == 50 &&
            dr[j].adapted_count == 60)
            seen |= 1;
        if (!strcmp(dr[j].grp, "high_low") && dr[j].latent == 11 && dr[j].adapted_rank == 0)
            seen |= 2;
        if (!strcmp(dr[j].grp, "low_high") && dr[j].latent == 20 && dr[j].base_count == 0)
            seen |= 4;
    }
    CHECK_EQ_INT(seen, 7);
    free(dr);
    CHECK_EQ_INT(idx_diff_compute(ix, sb, sa, 5, 3, err), PS_EUSAGE);
    CHECK_EQ_INT(scalar(ix, "SELECT high FROM diff_summary WHERE class = 0"), 1);

    /* eval */
    IdxEval e;
    memset(&e, 0, sizeof e);
    e.model_id = base;
    e.dataset_id = ds;
    e.sae_id = sae;
    e.select_model_id = base;
    e.cls = 0;
    snprintf(e.mode, sizeof e.mode, "on");
    e.k = 10;
    e.n_images = 2;
    e.accuracy = 50;
    CHECK_EQ_INT(idx_put_eval(ix, &e, err), PS_OK);
    snprintf(e.mode, sizeof e.mode, "orig");
    e.k = 0;
    e.accuracy = 100;
    CHECK_EQ_INT(idx_put_eval(ix, &e, err), PS_OK);
    snprintf(e.mode, sizeof e.mode, "bogus");
    CHECK_EQ_INT(idx_put_eval(ix, &e, err), PS_EDB);
    IdxEval *ev;
    int ne;
    CHECK_EQ_INT(idx_evals(ix, base, ds, 0, &ev, &ne, err), PS_OK);
    CHECK_EQ_INT(ne, 2);
    CHECK(ne == 2 && !strcmp(ev[0].mode, "on") && ev[1].accuracy == 100);
    free(ev);

    /* annotations */
    char nm2[64], note[64];
    int found;
    CHECK_EQ_INT(idx_annotate(ix, sae, 10, "stripes", "zebra-like", err), PS_OK);
    CHECK_EQ_INT(idx_annotate(ix, sae, 10, "tiger stripes", NULL, err), PS_OK);
    CHECK_EQ_INT(idx_annotation(ix, sae, 10, nm2, sizeof nm2, note, sizeof note, &found, err),
                 PS_OK);
    CHECK(found);
    CHECK_STR(nm2, "tiger stripes");
    CHECK_STR(note, "");
    CHECK_EQ_INT(idx_annotation(ix, sae, 11, nm2, sizeof nm2, note, sizeof note, &found, err),
                 PS_OK);
    CHECK(!found);
    IdxClassLatent ct[4];
    int nct;
    CHECK_EQ_INT(idx_class_top(ix, sb, 0, ct, 4, &nct, err), PS_OK);
    CHECK(nct == 4 && !strcmp(ct[0].name, "tiger stripes") && ct[1].name[0] == 0);
    CHECK_EQ_INT(idx_unannotate(ix, sae, 10, err), PS_OK);
    CHECK_EQ_INT(idx_annotation(ix, sae, 10, nm2, sizeof nm2, note, sizeof note, &found, err),
                 PS_OK);
    CHECK(!found);
    CHECK_EQ_INT(idx_save_query(ix, "fish", "SELECT 1", "fishy", err), PS_OK);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM saved_queries"), 1);

    /* classes */
    int c;
    CHECK_EQ_INT(idx_class_find(ix, ds, "great white shark", &c, err), PS_OK);
    CHECK_EQ_INT(c, 2);
    CHECK_EQ_INT(idx_class_find(ix, ds, "whale", &c, err), PS_EUSAGE);
    char cn2[64];
    CHECK_EQ_INT(idx_class_name(ix, ds, 1, cn2, sizeof cn2, err), PS_OK);
    CHECK_STR(cn2, "goldfish");
    int64_t csz;
    CHECK_EQ_INT(idx_class_size(ix, ds, 0, &csz, err), PS_OK);
    CHECK_EQ_INT(csz, 2);

    /* progress */
    IdxProgress p = { base, ds, sae, 0, 1, 4, 40, 0 };
    CHECK_EQ_INT(idx_put_progress(ix, &p, "STATE", 5, err), PS_OK);
    p.batch = 5;
    p.n_done = 48;
    CHECK_EQ_INT(idx_put_progress(ix, &p, "STATE2", 6, err), PS_OK);
    IdxProgress q = { base, ds, sae, 0, 1, 0, 0, 0 };
    void *stt;
    size_t sn;
    CHECK_EQ_INT(idx_get_progress(ix, &q, &found, &stt, &sn, err), PS_OK);
    CHECK(found && q.batch == 5 && q.n_done == 48 && sn == 6 && !memcmp(stt, "STATE2", 6));
    free(stt);
    q.shard_i = 1;
    q.shard_n = 2;
    CHECK_EQ_INT(idx_get_progress(ix, &q, &found, &stt, &sn, err), PS_OK);
    CHECK(!found && stt == NULL);

    /* transactions */
    CHECK_EQ_INT(idx_begin(ix, err), PS_OK);
    CHECK_EQ_INT(idx_set_meta(ix, "x", "1", err), PS_OK);
    idx_rollback(ix);
    CHECK_EQ_INT(idx_get_meta(ix, "x", cn2, sizeof cn2, err), PS_EUSAGE);
    idx_rollback(ix); /* no-op */

    /* the views answer */
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM latent_compare"), 0);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM eval_names WHERE class_name = 'tench'"), 2);
    /* deleting a model cascades */
    CHECK_EQ_INT(idx_exec(ix, "DELETE FROM models WHERE name = 'clip'", err), PS_OK);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM predictions"), 0);
    idx_close(ix);
}

static void
test_synth(void)
{
    char err[PS_ERRLEN];
    Idx *ix;
    CHECK_EQ_INT(idx_open(&ix, t_tmp("synth.db"), err), PS_OK);
    IdxSynth s;
    idx_synth_init(&s);
    s.n_images = 60;
    s.d_sae = 300;
    s.n_models = 2;
    int rc = idx_synth(ix, &s, NULL, err);
    CHECK_MSG(rc == PS_OK, "idx_synth: %s", err);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM images"), 60);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM patches"), 120);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM latent_stats"), 600);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM statsets WHERE final = 1"), 2);
    CHECK(scalar(ix, "SELECT count(*) FROM latent_compare") == 300);
    CHECK(scalar(ix, "SELECT count(*) FROM diff_groups") > 0);
    CHECK_EQ_INT(idx_select(ix, "PRAGMA integrity_check", first_text, NULL, err), PS_OK);
    CHECK_STR(g_text, "ok");
    CHECK_EQ_INT(scalar(ix, "PRAGMA foreign_key_check"), -2); /* no rows */
    idx_close(ix);
}

/* dst = tmpl with every "%s" replaced by schema. */
static void
subst(char *dst, size_t cap, const char *tmpl, const char *schema)
{
    size_t o = 0, ls = strlen(schema);
    for (const char *p = tmpl; *p && o + ls + 1 < cap; p++) {
        if (p[0] == '%' && p[1] == 's') {
            memcpy(dst + o, schema, ls);
            o += ls;
            p++;
        } else {
            dst[o++] = *p;
        }
    }
    dst[o] = 0;
}

/* Rows in one schema's SELECT (template with %s = schema) but not the other's. */
static long
symdiff(Idx *ix, const char *tmpl)
{
    char a[1024], b[1024], q[8192];
    subst(a, sizeof a, tmpl, "main");
    subst(b, sizeof b, tmpl, "m");
    snprintf(q, sizeof q, "SELECT (SELECT count(*) FROM (%s EXCEPT %s)) + "
             "(SELECT count(*) FROM (%s EXCEPT %s)) + abs((SELECT count(*) FROM (%s)) - "
             "(SELECT count(*) FROM (%s)))", a, b, b, a, a, b);
    return scalar(ix, q);
}

static void
test_merge(void)
{
    char err[PS_ERRLEN];
    const char *path[4] = { t_tmp("full.db"), t_tmp("s0.db"), t_tmp("s1.db"), t_tmp("m.db") };
    for (int i = 0; i < 3; i++) {
        Idx *ix;
        CHECK_EQ_INT(idx_open(&ix, path[i], err), PS_OK);
        IdxSynth s;
        idx_synth_init(&s);
        s.n_images = 90;
        s.d_sae = 200;
        s.k_top = 6;
        s.shard_i = i ? i - 1 : 0;
        s.shard_n = i ? 2 : 1;
        int rc = idx_synth(ix, &s, NULL, err);
        CHECK_MSG(rc == PS_OK, "synth %d: %s", i, err);
        idx_close(ix);
    }
    Idx *m;
    CHECK_EQ_INT(idx_open(&m, path[3], err), PS_OK);
    int rc = stats_merge_shards(m, 2, path + 1, err);
    CHECK_MSG(rc == PS_OK, "merge: %s", err);
    /* merging a shard again is refused (overlap) and changes nothing */
    rc = stats_merge_shards(m, 1, path + 1, err);
    CHECK_EQ_INT(rc, PS_EREFUSED);
    idx_close(m);
    Idx *ix;
    CHECK_EQ_INT(idx_open(&ix, path[0], err), PS_OK);
    char att[600];
    snprintf(att, sizeof att, "ATTACH '%s' AS m", path[3]);
    CHECK_EQ_INT(idx_exec(ix, att, err), PS_OK);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM m.images"), 90);
    CHECK_EQ_INT(scalar(ix, "SELECT count(*) FROM m.latent_stats"), 400);
    CHECK_EQ_INT(symdiff(ix, "SELECT mo.name, l.latent, l.n_active, l.freq, l.mean_act, "
                             "l.max_act, l.max_patch, l.entropy, l.label_std, l.top_class, "
                             "l.top_share FROM %s.latent_stats l JOIN %s.statsets s ON s.id = "
                             "l.statset_id JOIN %s.models mo ON mo.id = s.model_id"), 0);
    CHECK_EQ_INT(symdiff(ix, "SELECT mo.name, t.latent, t.kind, t.rank, i.pos, t.value, t.token "
                             "FROM %s.latent_top t JOIN %s.statsets s ON s.id = t.statset_id JOIN "
                             "%s.models mo ON mo.id = s.model_id JOIN %s.images i ON i.id = "
                             "t.image_id"), 0);
    CHECK_EQ_INT(symdiff(ix, "SELECT mo.name, c.class, c.latent, c.n_tokens, c.act_sum FROM "
                             "%s.class_counts c JOIN %s.statsets s ON s.id = c.statset_id JOIN "
                             "%s.models mo ON mo.id = s.model_id"), 0);
    CHECK_EQ_INT(symdiff(ix, "SELECT mo.name, c.class, c.rank, c.latent, c.n_tokens FROM "
                             "%s.class_top c JOIN %s.statsets s ON s.id = c.statset_id JOIN "
                             "%s.models mo ON mo.id = s.model_id"), 0);
    CHECK_EQ_INT(symdiff(ix, "SELECT class, grp, latent, base_rank, adapted_rank FROM "
                             "%s.diff_groups"), 0);
    CHECK_EQ_INT(symdiff(ix, "SELECT i.pos, mo.name, p.blob FROM %s.patches p JOIN %s.images i "
                             "ON i.id = p.image_id JOIN %s.models mo ON mo.id = p.model_id"), 0);
    CHECK_EQ_INT(symdiff(ix, "SELECT i.pos, i.label, t.jpeg FROM %s.images i JOIN "
                             "%s.thumbnails t ON t.image_id = i.id"), 0);
    CHECK(scalar(ix, "SELECT count(*) FROM main.latent_labels") > 0);
    idx_close(ix);
    /* an unfinished shard is refused */
    CHECK_EQ_INT(idx_open(&ix, path[1], err), PS_OK);
    CHECK_EQ_INT(idx_exec(ix, "UPDATE progress SET done = 0", err), PS_OK);
    idx_close(ix);
    CHECK_EQ_INT(idx_open(&m, t_tmp("m2.db"), err), PS_OK);
    CHECK_EQ_INT(stats_merge_shards(m, 2, path + 1, err), PS_EREFUSED);
    CHECK_MSG(strstr(err, "unfinished"), "message: %s", err);
    CHECK_EQ_INT(scalar(m, "SELECT count(*) FROM images"), 0);
    idx_close(m);
}

void
test_idx(void)
{
    test_blob();
    test_open();
    test_roundtrip();
    test_stats();
    test_synth();
    test_merge();
}
