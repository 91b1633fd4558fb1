/* SPDX-License-Identifier: MIT */
/*
 * bench_train.c - tokens/s of train_step, PatchSAE's recipe, on synthetic
 * activations with the statistics of CLIP's residual stream as far as they
 * matter for speed: a large shared offset, sparse non-negative mixtures of
 * many directions plus noise. The SAE starts in the state a trained one is
 * in (decoder rows on the directions, encoder their transpose, b_enc set so
 * that L0 is about 150), with a share of latents marked dead so that ghost
 * grads run. Built and run by bench/bench_train.sh; prints the OpenBLAS core.
 *   bench_train D S TOKENS STEPS DEAD_FRACTION
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "ps.h"
#include "train.h"

static uint64_t rng = 88172645463325252ULL;

static double
urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static float
nrand(void)
{
    return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()));
}

static int
cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
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
        fprintf(stderr, "usage: bench_train D S TOKENS STEPS DEAD_FRACTION\n");
        return 2;
    }
    int D = atoi(argv[1]), S = atoi(argv[2]), N = atoi(argv[3]), steps = atoi(argv[4]);
    double dead_frac = atof(argv[5]);
    char err[PS_ERRLEN];
    SaeTrainConfig c;
    train_config_default(&c, D, S, N);
    SaeTrain t;
    if (train_init(&t, &c, err) != PS_OK) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 2;
    }
    train_init_weights(&t, 42);
    /* K directions = the decoder rows of the first K latents; tokens mix ~60 of them */
    int K = S / 2;
    float *dirs = t.W_dec, *x = malloc(sizeof(float) * (size_t)N * D), *off = malloc(sizeof(float) * D);
    for (int d = 0; d < D; d++)
        off[d] = 3.0f * nrand();
    for (int i = 0; i < N; i++) {
        float *xr = x + (size_t)i * D;
        for (int d = 0; d < D; d++)
            xr[d] = off[d] + 0.3f * nrand();
        for (int j = 0; j < 60; j++) {
            int k = (int)(urand() * K);
            float a = (float)(2.0 * urand());
            for (int d = 0; d < D; d++)
                xr[d] += a * dirs[(size_t)k * D + d];
        }
    }
    for (int s = 0; s < S; s++) /* encoder = decoder transposed, scaled */
        for (int d = 0; d < D; d++)
            t.W_encT[(size_t)s * D + d] = 0.5f * t.W_dec[(size_t)s * D + d];
    train_init_b_dec(&t, TRAIN_BDEC_MEAN, x, 1, N, NULL);
    /* b_enc: one threshold that leaves about 150 active latents per token */
    int probe = 64;
    float *h = malloc(sizeof(float) * (size_t)probe * S);
    float *xc = malloc(sizeof(float) * (size_t)probe * D);
    for (int i = 0; i < probe * D; i++)
        xc[i] = x[i] - t.b_dec[i % D];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, probe, S, D, 1, xc, D, t.W_encT, D, 0, h, S);
    qsort(h, (size_t)probe * S, sizeof *h, cmp_desc);
    float thr = h[(size_t)probe * 150];
    for (int s = 0; s < S; s++)
        t.b_enc[s] = -thr;
    int n_dead = (int)(dead_frac * S);
    for (int k = 0; k < n_dead; k++) /* latents no direction uses, marked long dead */
        { t.since_fired[S - 1 - k] = 1000; t.b_enc[S - 1 - k] = -10 * thr; }
    SaeTrainStats st;
    double *sec = malloc(sizeof(double) * (size_t)steps);
    double enc = 0, sp = 0, gh = 0, ad = 0, l0 = 0;
    int warm = 2;
    for (int k = 0; k < warm + steps; k++) {
        double t0 = ps_now();
        train_step(&t, x, N, &st);
        double dt = ps_now() - t0;
        if (k < warm)
            continue;
        sec[k - warm] = dt;
        enc += st.sec_encode / steps;
        sp += st.sec_sparse / steps;
        gh += st.sec_ghost / steps;
        ad += st.sec_adam / steps;
        l0 += st.l0 / steps;
    }
    qsort(sec, (size_t)steps, sizeof *sec, cmp);
    double med = sec[steps / 2];
    printf("patchsae  %d -> %d, %d tokens a step, L0 %.0f, %d dead (%.1f%%, ghost grads): "
           "%.0f tokens/s (median of %d steps, %.2f s a step: encoder GEMM %.2f, sparse %.2f, "
           "ghost %.2f, Adam %.2f; openblas core %s)\n",
           D, S, N, l0, st.n_dead, 100.0 * st.n_dead / S, N / med, steps, med, enc, sp, gh, ad,
           openblas_get_corename());
    free(sec);
    free(h);
    free(xc);
    free(x);
    free(off);
    train_free(&t);
    return 0;
}
