/* SPDX-License-Identifier: MIT */
/*
 * bench_idx.c - query latencies on an index (bench/bench_idx.sh builds a
 * ViT-B/16-scale synthetic one): top images of a latent, latents on a patch
 * (both models), image top latents, a latent map, and sorting all latents by
 * each statistic. Prints median and 95th percentile in ms over random picks,
 * and the storage per image per model.
 *
 * usage: bench_idx INDEX [REPS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "ps.h"

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
report(const char *what, double *t, int n, double limit)
{
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    double med = t[n / 2] * 1e3, p95 = t[(int)(n * 0.95)] * 1e3, mx = t[n - 1] * 1e3;
    printf("%-44s median %8.3f ms  p95 %8.3f ms  max %8.3f ms  (target <= %g ms: %s)\n", what,
           med, p95, mx, limit, med <= limit ? "ok" : "MISSED");
}

static unsigned long long rs = 88172645463325252ull;
static unsigned
rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (unsigned)(rs >> 11);
}

static int
count_cb(void *ctx, int nc, const char *const *names, const char *const *vals)
{
    (void)nc;
    (void)names;
    *(double *)ctx = vals[0] ? atof(vals[0]) : 0;
    return 1;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_idx INDEX [REPS]\n");
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 200;
    char err[PS_ERRLEN];
    Idx *ix;
    if (idx_open_readonly(&ix, argv[1], err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    IdxStatset *ss;
    int nss;
    if (idx_statsets(ix, &ss, &nss, err) || nss < 1) {
        fprintf(stderr, "no statistics: %s\n", err);
        return 2;
    }
    IdxSae sae;
    idx_find_sae(ix, NULL, &sae, err);
    double nimg = 0, blob = 0, thumb = 0, npatch = 0;
    idx_select(ix, "SELECT count(*) FROM images", count_cb, &nimg, err);
    idx_select(ix, "SELECT count(*) FROM patches", count_cb, &npatch, err);
    idx_select(ix, "SELECT avg(length(blob)) FROM patches", count_cb, &blob, err);
    idx_select(ix, "SELECT avg(length(jpeg)) FROM thumbnails", count_cb, &thumb, err);
    printf("index: %.0f images, %d latents, %d statsets, %.0f patch blobs\n", nimg, ss[0].d_sae,
           nss, npatch);
    printf("storage: patch blob %.0f B + thumbnail %.0f B = %.1f KiB per image per model "
           "(%.1f KiB per image with 2 models)\n",
           blob, thumb, (blob + thumb) / 1024, (2 * blob + thumb) / 1024);
    double *t = malloc((size_t)reps * sizeof *t);
    int S = ss[0].d_sae, N = (int)nimg;
    int64_t m0 = ss[0].model_id, m1 = nss > 1 ? ss[1].model_id : m0;
    /* warm the file cache a little: one pass of each query */
    IdxTopImage top[64];
    IdxAct acts[256];
    float map[256];
    int n;
    for (int r = 0; r < reps; r++) {
        int32_t s = (int32_t)(rnd() % (unsigned)S);
        double t0 = ps_now();
        idx_latent_top(ix, ss[0].id, s, IDX_TOP_MEAN, top, 64, &n, err);
        t[r] = ps_now() - t0;
    }
    report("top images of a latent (16 rows)", t, reps, 5);
    for (int r = 0; r < reps; r++) {
        int64_t img = 1 + (int64_t)(rnd() % (unsigned)N);
        int tok = 1 + (int)(rnd() % 196);
        double t0 = ps_now();
        idx_patch_latents(ix, img, m0, sae.id, tok, acts, 256, &n, err);
        idx_patch_latents(ix, img, m1, sae.id, tok, acts, 256, &n, err);
        t[r] = ps_now() - t0;
    }
    report("latents on a patch (both models)", t, reps, 5);
    for (int r = 0; r < reps; r++) {
        int64_t img = 1 + (int64_t)(rnd() % (unsigned)N);
        double t0 = ps_now();
        idx_image_latents(ix, img, m0, sae.id, acts, 256, &n, err);
        idx_image_latents(ix, img, m1, sae.id, acts, 256, &n, err);
        t[r] = ps_now() - t0;
    }
    report("image top latents (both models)", t, reps, 10);
    for (int r = 0; r < reps; r++) {
        int64_t img = 1 + (int64_t)(rnd() % (unsigned)N);
        int32_t s = (int32_t)(rnd() % 64);
        double t0 = ps_now();
        idx_latent_map(ix, img, m0, sae.id, s, map, 256, &n, err);
        idx_latent_map(ix, img, m1, sae.id, s, map, 256, &n, err);
        t[r] = ps_now() - t0;
    }
    report("map of a latent on an image (both models)", t, reps, 5);
    for (int r = 0; r < reps; r++) {
        int64_t img = 1 + (int64_t)(rnd() % (unsigned)N);
        void *j;
        size_t jn;
        int sz;
        double t0 = ps_now();
        idx_thumb(ix, img, &j, &jn, &sz, err);
        t[r] = ps_now() - t0;
        free(j);
    }
    report("thumbnail of an image", t, reps, 5);
    int sreps = reps / 10 > 5 ? reps / 10 : 5;
    static const int sorts[] = { IDX_SORT_FREQ, IDX_SORT_MEAN, IDX_SORT_MAX, IDX_SORT_ENTROPY };
    for (size_t k = 0; k < LEN(sorts); k++) {
        for (int lim = 0; lim < 2; lim++) {
            for (int r = 0; r < sreps; r++) {
                IdxLatent *ls;
                int64_t total;
                double t0 = ps_now();
                if (idx_latents(ix, ss[0].id, sorts[k], r & 1, NULL, lim ? 100 : 0, 0, &ls, &n,
                                &total, err)) {
                    fprintf(stderr, "%s\n", err);
                    return 1;
                }
                t[r] = ps_now() - t0;
                free(ls);
            }
            char what[96];
            snprintf(what, sizeof what, "sort all latents by %s (%s)", idx_sort_name(sorts[k]),
                     lim ? "first 100 rows" : "all rows");
            report(what, t, sreps, 50);
        }
    }
    free(t);
    free(ss);
    idx_close(ix);
    return 0;
}
