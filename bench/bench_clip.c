/* SPDX-License-Identifier: MIT */
/*
 * bench_clip.c - images/s of the CLIP image forward (clip_encode_image with
 * the PatchSAE hook, embeddings included) at a given batch, on a model from
 * `patchsae init`. Built and run by bench/bench_clip.sh; prints the OpenBLAS
 * core next to every figure (performance.md). Each figure also gives the
 * process CPU time per image (all threads, OpenBLAS's spinning included),
 * which a busy shared machine disturbs less than the wall clock, and the
 * page faults per batch (after the warm-up call there should be none).
 *   bench_clip MODEL BATCH REPS
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "clip.h"

static double
cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long
faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_clip MODEL BATCH REPS\n");
        return 2;
    }
    int B = atoi(argv[2]), reps = atoi(argv[3]);
    char err[PS_ERRLEN];
    Clip c;
    if (clip_open(&c, argv[1], NULL, err) || clip_reserve(&c, B, 0, err)) {
        fprintf(stderr, "bench_clip: %s\n", err);
        return 2;
    }
    const ClipConfig *g = &c.cfg;
    size_t S = (size_t)g->image_size, T = (size_t)g->n_tok, D = (size_t)g->vision.width;
    float *pix = malloc((size_t)B * 3 * S * S * sizeof *pix);
    float *res = malloc((size_t)B * T * D * sizeof *res);
    float *emb = malloc((size_t)B * g->embed_dim * sizeof *emb);
    for (size_t i = 0; i < (size_t)B * 3 * S * S; i++)
        pix[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    int L = g->vision.layers - 2;
    clip_encode_image(&c, pix, B, L, res, emb, err); /* warm up: page faults, OpenBLAS threads */
    double *t = malloc((size_t)reps * sizeof *t), *cp = malloc((size_t)reps * sizeof *cp);
    long f0 = faults();
    for (int r = 0; r < reps; r++) {
        double t0 = ps_now(), c0 = cpu_now();
        clip_encode_image(&c, pix, B, L, res, emb, err);
        t[r] = ps_now() - t0;
        cp[r] = cpu_now() - c0;
    }
    double pf = (double)(faults() - f0) / reps;
    qsort(t, (size_t)reps, sizeof *t, cmp);
    qsort(cp, (size_t)reps, sizeof *cp, cmp);
    double cpu = cp[reps / 2] / B;
    printf("patchsae  batch %d: %.2f images/s (median of %d, %.1f ms per batch; openblas core %s)\n"
           "    cpu %.1f ms per image -> %.1f images/s on 2 idle cores; %.0f page faults per batch\n",
           B, B / t[reps / 2], reps, 1e3 * t[reps / 2], openblas_get_corename(), 1e3 * cpu,
           2.0 / cpu, pf);
    free(pix), free(res), free(emb), free(t), free(cp);
    clip_close(&c);
    return 0;
}
