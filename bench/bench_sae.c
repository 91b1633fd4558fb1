/* SPDX-License-Identifier: MIT */
/*
 * bench_sae.c - images/s of the SAE encoder (sae_encode_sparse: GEMM, b_enc,
 * ReLU and CSR compaction) on ViT-B/16-shaped activations, T tokens x D ->
 * S latents, BATCH images per call. Built and run by bench/bench_sae.sh;
 * prints the OpenBLAS core next to every figure (performance.md).
 *   bench_sae D S T BATCH REPS
 *
 * The SAE is random with realistic scales: x − b_dec has unit variance per
 * dimension and W_enc entries variance 1/D, so pre-activations are about
 * N(b_enc, 1); b_enc = −2.75 ± 0.1 leaves about 0.3 % of the latents firing
 * (L0 ≈ 150 of 49152, PatchSAE's order). L0 is measured and printed, since
 * the compaction's cost follows it.
 *
 * On a shared machine the wall clock says more about the neighbours than
 * about the kernel, so each figure comes with the process CPU time per image
 * (both OpenBLAS threads, their spinning included) and what that would give
 * on two cores of our own (2 / CPU seconds per image, an upper estimate).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

#include "ps.h"
#include "sae.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float
uni(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static double
cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    if (argc != 6) {
        fprintf(stderr, "usage: bench_sae D S T BATCH REPS\n");
        return 2;
    }
    int D = atoi(argv[1]), S = atoi(argv[2]), T = atoi(argv[3]), B = atoi(argv[4]);
    int reps = atoi(argv[5]);
    if (D <= 0 || S <= 0 || T <= 0 || B <= 0 || reps <= 0) {
        fprintf(stderr, "bench_sae: bad arguments\n");
        return 2;
    }
    char err[PS_ERRLEN];
    Sae s;
    SaeWork w;
    SaeSparse sp = { 0 };
    if (sae_init(&s, D, S, err) || sae_work_init(&w, &s, err)) {
        fprintf(stderr, "bench_sae: %s\n", err);
        return 2;
    }
    float a = sqrtf(3.0f / (float)D); /* U(-a, a) has variance 1/D */
    for (size_t i = 0; i < (size_t)D * S; i++)
        s.W_enc[i] = a * uni();
    for (int j = 0; j < S; j++)
        s.b_enc[j] = -2.75f + 0.1f * uni();
    for (int d = 0; d < D; d++)
        s.b_dec[d] = 0.5f * uni();
    size_t nx = (size_t)B * T * D;
    float *x = malloc(nx * sizeof *x);
    for (size_t i = 0; i < nx; i++) /* sum of 3 U(-1,1): variance 1, near-normal */
        x[i] = s.b_dec[i % (size_t)D] + uni() + uni() + uni();
    if (sae_encode_sparse(&s, x, B * T, &sp, &w, err)) { /* warm up: page faults, threads */
        fprintf(stderr, "bench_sae: %s\n", err);
        return 2;
    }
    double *t = malloc((size_t)reps * sizeof *t), *c = malloc((size_t)reps * sizeof *c);
    for (int r = 0; r < reps; r++) {
        double t0 = ps_now(), c0 = cpu_now();
        sae_encode_sparse(&s, x, B * T, &sp, &w, err);
        t[r] = ps_now() - t0;
        c[r] = cpu_now() - c0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    qsort(c, (size_t)reps, sizeof *c, cmp);
    double med = t[reps / 2], cpu = c[reps / 2] / B, gflop = 2.0 * B * T * (double)D * S * 1e-9;
    printf("patchsae sparse encode, batch %d: %.2f images/s (median of %d, %.1f ms per batch, "
           "%.0f GFLOP/s, L0 %.1f; openblas core %s)\n"
           "    cpu %.1f ms per image -> %.1f images/s on 2 idle cores\n",
           B, B / med, reps, 1e3 * med, gflop / med,
           (double)sae_sparse_nnz(&sp) / ((double)B * T), openblas_get_corename(), 1e3 * cpu,
           2.0 / cpu);
    free(x), free(t), free(c);
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&s);
    return 0;
}
