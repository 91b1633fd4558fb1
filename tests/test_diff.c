/* SPDX-License-Identifier: MIT */
/*
 * test_diff.c - base against adapted (diff.h): ranks and remapping groups on
 * hand-made class counts (exact), Jaccard and Δ on hand-made data (Table 1's
 * own numbers), and on a synthetic index: groups equal idx_diff_compute's,
 * stored rows read back, per-latent deltas and overlaps equal what idx.h's
 * readers give latent by latent, accuracies equal a per-image count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "idx.h"
#include "ps.h"
#include "test.h"

static int
has(const DiffList *l, int cls, int grp, int lat)
{
    for (int i = 0; i < l->n; i++)
        if (l->e[i].cls == cls && l->e[i].grp == grp && l->e[i].latent == lat)
            return 1;
    return 0;
}

static void
check_groups(void)
{
    char err[PS_ERRLEN];
    enum { S = 10 };
    /* base: 0:10 1:9 2:8 3:7 4:7 (tie: 3 first) 6:5 9:1, others 0 */
    int64_t base[S] = { 10, 9, 8, 7, 7, 0, 5, 0, 0, 1 };
    /* adapted: 0 and 5 tie at 9 (0 first), then 1:2, 8:1 */
    int64_t adap[S] = { 9, 2, 0, 0, 0, 9, 0, 0, 1, 0 };
    int rb[S], ra[S];
    int32_t ord[S];
    diff_ranks(base, S, rb, ord);
    int wb[S] = { 1, 2, 3, 4, 5, 0, 6, 0, 0, 7 };
    CHECK(!memcmp(rb, wb, sizeof wb));
    diff_ranks(adap, S, ra, ord);
    int wa[S] = { 1, 3, 0, 0, 0, 2, 0, 0, 4, 0 };
    CHECK(!memcmp(ra, wa, sizeof wa));

    DiffList l = { 0 };
    /* hi 2, lo 2: high {0}; high_low {1} (adapted rank 3 > 2); low_high {5} (no base rank) */
    CHECK(diff_class_groups(7, base, adap, S, 2, 2, rb, ra, ord, &l, err) == PS_OK);
    CHECK_EQ_INT(l.n, 3);
    CHECK(has(&l, 7, DIFF_HIGH, 0) && has(&l, 7, DIFF_HIGH_LOW, 1) && has(&l, 7, DIFF_LOW_HIGH, 5));
    if (l.n == 3) {
        CHECK_EQ_INT(l.e[1].base_rank, 2);
        CHECK_EQ_INT(l.e[1].adapted_rank, 3);
        CHECK_EQ_INT(l.e[2].base_rank, 0);
        CHECK_EQ_INT(l.e[2].adapted_count, 9);
    }
    diff_list_free(&l);
    /* hi 2, lo 3: latent 1 is within the adapted top-3, so no high_low */
    CHECK(diff_class_groups(0, base, adap, S, 2, 3, rb, ra, ord, &l, err) == PS_OK);
    CHECK_EQ_INT(l.n, 2);
    CHECK(has(&l, 0, DIFF_HIGH, 0) && has(&l, 0, DIFF_LOW_HIGH, 5));
    diff_list_free(&l);
    /* hi 5, lo 5: high {0,1}; high_low {2,3,4} (adapted count 0); low_high {5,8} */
    CHECK(diff_class_groups(1, base, adap, S, 5, 5, rb, ra, ord, &l, err) == PS_OK);
    CHECK_EQ_INT(l.n, 7);
    CHECK(has(&l, 1, DIFF_HIGH, 0) && has(&l, 1, DIFF_HIGH, 1));
    CHECK(has(&l, 1, DIFF_HIGH_LOW, 2) && has(&l, 1, DIFF_HIGH_LOW, 3) &&
          has(&l, 1, DIFF_HIGH_LOW, 4));
    CHECK(has(&l, 1, DIFF_LOW_HIGH, 5) && has(&l, 1, DIFF_LOW_HIGH, 8));
    /* summary over classes 0..3 (base classes 0,1): class 1 has 2 high, 3 h->l, 2 l->h */
    DiffSummary sm;
    diff_summarise(l.e, l.n, 4, &sm);
    CHECK_EQ_INT(sm.n_base, 2);
    CHECK_NEAR(sm.grp[DIFF_HIGH][0], 1.0, 1e-12);
    CHECK_NEAR(sm.grp[DIFF_HIGH_LOW][0], 1.5, 1e-12);
    CHECK_NEAR(sm.grp[DIFF_LOW_HIGH][0], 1.0, 1e-12);
    CHECK_NEAR(sm.grp[DIFF_HIGH][1], 0.0, 1e-12);
    diff_summarise(l.e, l.n, 5, &sm);
    CHECK_EQ_INT(sm.n_base, 3); /* ceil(5/2) */
    diff_list_free(&l);
    CHECK(diff_class_groups(0, base, adap, S, 3, 2, rb, ra, ord, &l, err) == PS_EUSAGE);
    CHECK(diff_class_groups(0, base, adap, S, 0, 2, rb, ra, ord, &l, err) == PS_EUSAGE);
    CHECK_EQ_INT(l.n, 0);

    /* Jaccard */
    int64_t a[] = { 1, 2, 3 }, b[] = { 4, 3, 2, 4 }, c[] = { 9 };
    CHECK_NEAR(diff_jaccard(a, 3, b, 4), 0.5, 1e-12);
    CHECK_NEAR(diff_jaccard(b, 4, a, 3), 0.5, 1e-12);
    CHECK_NEAR(diff_jaccard(a, 3, a, 3), 1.0, 1e-12);
    CHECK_NEAR(diff_jaccard(a, 3, c, 1), 0.0, 1e-12);
    CHECK_NEAR(diff_jaccard(a, 3, NULL, 0), 0.0, 1e-12);
    CHECK(isnan(diff_jaccard(NULL, 0, NULL, 0)));

    /* Δ of paper Table 1: StanfordCars 53.45 -> 56.16 is 5.82, Flowers102 56.32 -> 88.07 is 72.69,
     * EuroSAT 42.61 -> 73.07 is 53.08 */
    CHECK_NEAR(diff_delta(53.45, 56.16), 5.82, 0.005);
    CHECK_NEAR(diff_delta(56.32, 88.07), 72.69, 0.005);
    CHECK_NEAR(diff_delta(42.61, 73.07), 53.08, 0.005);
    CHECK(isnan(diff_delta(100, 100)));
    CHECK(isnan(diff_delta(NAN, 50)));

    /* sorting: jaccard ascending with NAN last; |Δ| descending */
    DiffLatent v[4];
    memset(v, 0, sizeof v);
    double jac[] = { 0.5, NAN, 0.0, 0.5 }, df[] = { 0.1, -0.3, NAN, 0.2 };
    for (int i = 0; i < 4; i++) {
        v[i].latent = i;
        v[i].jaccard = jac[i];
        v[i].d_freq = df[i];
    }
    diff_sort(v, 4, DIFF_SORT_JACCARD);
    CHECK(v[0].latent == 2 && v[1].latent == 0 && v[2].latent == 3 && v[3].latent == 1);
    diff_sort(v, 4, DIFF_SORT_FREQ);
    CHECK(v[0].latent == 1 && v[1].latent == 3 && v[2].latent == 0 && v[3].latent == 2);
    CHECK_EQ_INT(diff_sort_parse("dpurity"), DIFF_SORT_PURITY);
    CHECK_EQ_INT(diff_sort_parse("x"), -1);
}

typedef struct Key {
    int cls, latent;
    char grp[16];
} Key;

static int
key_cmp(const void *a, const void *b)
{
    const Key *x = a, *y = b;
    if (x->cls != y->cls)
        return x->cls - y->cls;
    if (x->latent != y->latent)
        return x->latent - y->latent;
    return strcmp(x->grp, y->grp);
}

static void
check_index(void)
{
    char err[PS_ERRLEN];
    Idx *ix;
    CHECK(idx_open(&ix, ":memory:", err) == PS_OK);
    IdxSynth sy;
    idx_synth_init(&sy);
    sy.n_images = 120;
    sy.d_sae = 300;
    sy.n_classes = 5;
    sy.l0 = 40;
    sy.thumb = 0;
    CHECK(idx_synth(ix, &sy, NULL, err) == PS_OK);
    IdxStatset b, a;
    CHECK(idx_find_statset(ix, "base", NULL, &b, err) == PS_OK);
    CHECK(idx_find_statset(ix, "adapted", NULL, &a, err) == PS_OK);
    int S = b.d_sae, C = b.n_classes;

    /* groups from full counts = idx_diff_compute's from class_top (hi 50, lo 100 = its depth) */
    DiffList l = { 0 };
    CHECK(diff_groups_load(ix, b.id, a.id, S, DIFF_HI, DIFF_LO, &l, err) == PS_OK);
    CHECK(l.n > 0);
    CHECK(idx_diff_compute(ix, b.id, a.id, DIFF_HI, DIFF_LO, err) == PS_OK);
    IdxDiffRow *rows;
    int nr;
    CHECK(idx_diff_rows(ix, b.id, a.id, -1, &rows, &nr, err) == PS_OK);
    CHECK_EQ_INT(nr, l.n);
    int ngrp[DIFF_N_GRP] = { 0 };
    for (int i = 0; i < l.n; i++)
        ngrp[l.e[i].grp]++;
    CHECK(ngrp[DIFF_HIGH] > 0);
    if (nr == l.n) {
        Key *x = xmalloc((size_t)nr * sizeof *x), *y = xmalloc((size_t)nr * sizeof *y);
        for (int i = 0; i < nr; i++) {
            x[i] = (Key){ rows[i].cls, rows[i].latent, "" };
            snprintf(x[i].grp, sizeof x[i].grp, "%s", rows[i].grp);
            y[i] = (Key){ l.e[i].cls, l.e[i].latent, "" };
            snprintf(y[i].grp, sizeof y[i].grp, "%s", diff_grp_names[l.e[i].grp]);
        }
        qsort(x, (size_t)nr, sizeof *x, key_cmp);
        qsort(y, (size_t)nr, sizeof *y, key_cmp);
        int same = 1;
        for (int i = 0; i < nr; i++)
            same &= !key_cmp(&x[i], &y[i]);
        CHECK(same);
        free(x);
        free(y);
    }
    free(rows);
    /* a per-class count cross-check against idx_class_count */
    int ok = 1;
    for (int i = 0; i < l.n; i += 7) {
        int64_t nb, na;
        CHECK(idx_class_count(ix, b.id, l.e[i].cls, l.e[i].latent, &nb, err) == PS_OK);
        CHECK(idx_class_count(ix, a.id, l.e[i].cls, l.e[i].latent, &na, err) == PS_OK);
        ok &= nb == l.e[i].base_count && na == l.e[i].adapted_count;
    }
    CHECK(ok);

    /* store: replaces idx_diff_compute's rows, reads back the same count; a second store too */
    CHECK(diff_groups_store(ix, b.id, a.id, 50, 100, l.e, l.n, err) == PS_OK);
    CHECK(diff_groups_store(ix, b.id, a.id, 50, 100, l.e, l.n, err) == PS_OK);
    CHECK(idx_diff_rows(ix, b.id, a.id, -1, &rows, &nr, err) == PS_OK);
    CHECK_EQ_INT(nr, l.n);
    free(rows);
    DiffList l2 = { 0 };
    CHECK(diff_groups_load(ix, b.id, a.id, S, 5, 300, &l2, err) == PS_OK);
    CHECK(diff_groups_store(ix, b.id, a.id, 5, 300, l2.e, l2.n, err) == PS_OK);
    CHECK(idx_diff_rows(ix, b.id, a.id, -1, &rows, &nr, err) == PS_OK);
    CHECK_EQ_INT(nr, l2.n);
    free(rows);
    diff_list_free(&l2);
    /* a latent outside the SAE is refused */
    CHECK(diff_groups_load(ix, b.id, a.id, 10, 5, 5, &l2, err) == PS_EFORMAT);
    diff_list_free(&l2);

    /* per-latent deltas and overlaps = idx_latent / idx_latent_top, latent by latent */
    DiffLatent *dl;
    CHECK(diff_latents_load(ix, b.id, a.id, S, &dl, err) == PS_OK);
    int lat_ok = 1, tested = 0, any_partial = 0;
    for (int s = 0; s < S; s += 3) {
        IdxLatent lb, la;
        if (idx_latent(ix, b.id, s, &lb, NULL) || idx_latent(ix, a.id, s, &la, NULL))
            continue;
        tested++;
        lat_ok &= fabs(dl[s].d_freq - (la.freq - lb.freq)) < 1e-12;
        lat_ok &= isnan(lb.mean_act) || isnan(la.mean_act)
                      ? isnan(dl[s].d_mean)
                      : fabs(dl[s].d_mean - (la.mean_act - lb.mean_act)) < 1e-9;
        IdxTopImage tb[64], ta[64];
        int nb, na;
        CHECK(idx_latent_top(ix, b.id, s, IDX_TOP_MEAN, tb, 64, &nb, err) == PS_OK);
        CHECK(idx_latent_top(ix, a.id, s, IDX_TOP_MEAN, ta, 64, &na, err) == PS_OK);
        int64_t ib[64], ia[64];
        for (int i = 0; i < nb; i++)
            ib[i] = tb[i].image_id;
        for (int i = 0; i < na; i++)
            ia[i] = ta[i].image_id;
        double j = diff_jaccard(ib, nb, ia, na);
        lat_ok &= isnan(j) ? isnan(dl[s].jaccard) : fabs(j - dl[s].jaccard) < 1e-12;
        lat_ok &= dl[s].n_top[0] == nb && dl[s].n_top[1] == na;
        any_partial |= j > 0 && j < 1;
    }
    CHECK(lat_ok);
    CHECK(tested > 50);
    CHECK(any_partial);
    free(dl);

    /* accuracy from stored predictions = a per-image count */
    double acc[2];
    int64_t n[2];
    int nbase = (C + 1) / 2;
    CHECK(diff_accuracy_load(ix, b.model_id, b.dataset_id, nbase, acc, n, err) == PS_OK);
    int64_t right[2] = { 0 }, tot[2] = { 0 };
    for (int pos = 0; pos < sy.n_images; pos++) {
        int64_t id;
        IdxImage im;
        IdxPred pr[5];
        int np;
        if (idx_image_at(ix, b.dataset_id, pos, &id, NULL) || idx_image(ix, id, &im, NULL) ||
            idx_predictions(ix, id, b.model_id, pr, 5, &np, NULL) || np == 0 || im.label < 0)
            continue;
        int h = im.label >= nbase;
        tot[h]++;
        right[h] += pr[0].cls == im.label;
    }
    CHECK_EQ_INT(n[0], tot[0]);
    CHECK_EQ_INT(n[1], tot[1]);
    CHECK(tot[0] > 0 && tot[1] > 0);
    if (tot[0] && tot[1]) {
        CHECK_NEAR(acc[0], 100.0 * right[0] / tot[0], 1e-9);
        CHECK_NEAR(acc[1], 100.0 * right[1] / tot[1], 1e-9);
    }
    diff_list_free(&l);
    idx_close(ix);
}

void
test_diff(void)
{
    check_groups();
    check_index();
}
