/* SPDX-License-Identifier: MIT */
/*
 * bench_index_sae.c - a random SAE with PatchSAE's shape and sparsity for
 * bench/bench_index.sh: d_in = the model's width, S latents, hook_layer -2
 * (PatchSAE's block_layer). W_dec rows are random unit vectors and W_enc =
 * W_dec^T (SAELens's initialisation); b_dec is the mean residual stream of a
 * few Fashion-MNIST images at the hook layer, and b_enc puts each latent's
 * threshold where it fires on a share L0 / S of those images' tokens (its
 * largest value there scaled to about 1), so a token has about L0 active
 * latents, as a trained PatchSAE (L0 ~ 150 of 49,152). Also prints the
 * OpenBLAS core in use.
 *   bench_index_sae MODEL S L0 OUT.safetensors
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "clip.h"
#include "data.h"
#include "img.h"
#include "sae.h"

static double
gauss(unsigned long long *x)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
        u[i] = ((*x >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

int
main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_index_sae MODEL S L0 OUT.safetensors\n");
        return 2;
    }
    int S = atoi(argv[2]);
    double l0 = atof(argv[3]);
    char err[PS_ERRLEN];
    Clip c;
    Dataset ds;
    if (clip_open(&c, argv[1], NULL, err) || clip_reserve(&c, 4, 0, err) ||
        data_open(&ds, "fashion-mnist:test", err)) {
        fprintf(stderr, "bench_index_sae: %s\n", err);
        return 2;
    }
    const ClipConfig *g = &c.cfg;
    int D = g->vision.width, T = g->n_tok, N = 4, L = g->vision.layers;
    size_t px = (size_t)3 * g->image_size * g->image_size;
    float *pix = malloc(N * px * sizeof *pix), *x = malloc((size_t)N * T * D * sizeof *x);
    ImgPrep ip = { g->resize, g->crop_h, { g->mean[0], g->mean[1], g->mean[2] },
                   { g->std[0], g->std[1], g->std[2] } };
    for (int i = 0; i < N; i++) {
        const uint8_t *gr;
        int w, h;
        Image im;
        if (data_item_gray(&ds, i, &gr, &w, &h) || img_from_gray(&im, gr, w, h, err) ||
            img_preprocess(&im, &ip, pix + i * px, err)) {
            fprintf(stderr, "bench_index_sae: image %d: %s\n", i, err);
            return 2;
        }
        img_free(&im);
    }
    if (clip_encode_image(&c, pix, N, L - 2, x, NULL, err)) {
        fprintf(stderr, "bench_index_sae: %s\n", err);
        return 2;
    }
    Sae s;
    if (sae_init(&s, D, S, err)) {
        fprintf(stderr, "bench_index_sae: %s\n", err);
        return 2;
    }
    s.hook_layer = -2;
    s.model_name = strdup("random vit-b-16 (bench)");
    unsigned long long r = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < S; k++) {
        float *row = s.W_dec + (size_t)k * D;
        double n2 = 0;
        for (int d = 0; d < D; d++)
            row[d] = (float)gauss(&r), n2 += (double)row[d] * row[d];
        for (int d = 0; d < D; d++) {
            row[d] /= (float)sqrt(n2);
            s.W_enc[(size_t)d * S + k] = row[d];
        }
    }
    int M = N * T;
    for (int d = 0; d < D; d++) {
        double m = 0;
        for (int t = 0; t < M; t++)
            m += x[(size_t)t * D + d];
        s.b_dec[d] = (float)(m / M);
    }
    for (int t = 0; t < M; t++)
        for (int d = 0; d < D; d++)
            x[(size_t)t * D + d] -= s.b_dec[d];
    float *pre = malloc((size_t)M * S * sizeof *pre);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, S, D, 1, x, D, s.W_enc, S, 0, pre,
                S);
    /* each latent fires on its k = L0/S share of the calibration tokens: the threshold is
     * its k-th largest pre-activation (selection by a partial insertion sort of k + 1) */
    int k = (int)(l0 / S * M + 0.5);
    k = k < 1 ? 1 : k;
    float *best = malloc((size_t)(k + 1) * sizeof *best);
    for (int j = 0; j < S; j++) {
        int nb = 0;
        for (int t = 0; t < M; t++) {
            float v = pre[(size_t)t * S + j];
            if (nb == k + 1 && v <= best[nb - 1])
                continue;
            int q = nb < k + 1 ? nb++ : nb - 1;
            while (q > 0 && best[q - 1] < v) {
                best[q] = best[q - 1];
                q--;
            }
            best[q] = v;
        }
        /* between the k-th and the (k+1)-th largest; scaled so the k-th is about 1 */
        float thr = 0.5f * (best[k - 1] + best[k]), scale = best[0] > thr ? best[0] - thr : 1;
        for (int d = 0; d < D; d++)
            s.W_enc[(size_t)d * S + j] /= scale;
        s.b_enc[j] = -thr / scale;
    }
    free(best);
    if (sae_save(&s, argv[4], err)) {
        fprintf(stderr, "bench_index_sae: %s\n", err);
        return 2;
    }
    printf("SAE %d -> %d, hook -2, target L0 %.0f; OpenBLAS core %s\n", D, S, l0,
           openblas_get_corename());
    free(pre), free(pix), free(x);
    sae_free(&s);
    data_close(&ds);
    clip_close(&c);
    return 0;
}
