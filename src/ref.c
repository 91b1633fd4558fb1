/* SPDX-License-Identifier: MIT */
/*
 * ref.c - the plain-loop oracle of every ten.c kernel (ref.h). Written for
 * obviousness, straight from the formulas: triple loops, sums in double,
 * attention with an explicit -inf causal mask and its own scratch. The
 * differential tests compare ten_* against these on random odd shapes, and
 * tests build a reference CLIP forward from them.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>

#include "ps.h"

void
ref_linear(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b ? b[j] : 0;
            for (int k = 0; k < K; k++)
                s += (double)X[(size_t)i * K + k] * W[(size_t)j * K + k];
            Y[(size_t)i * N + j] = (float)s;
        }
}

void
ref_linear_acc(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = (double)Y[(size_t)i * N + j] + (b ? b[j] : 0);
            for (int k = 0; k < K; k++)
                s += (double)X[(size_t)i * K + k] * W[(size_t)j * K + k];
            Y[(size_t)i * N + j] = (float)s;
        }
}

void
ref_matmul(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b ? b[j] : 0;
            for (int k = 0; k < K; k++)
                s += (double)X[(size_t)i * K + k] * W[(size_t)k * N + j];
            Y[(size_t)i * N + j] = (float)s;
        }
}

void
ref_layernorm(float *y, const float *x, const float *g, const float *b, int M, int D, float eps)
{
    for (int i = 0; i < M; i++) {
        const float *xr = x + (size_t)i * D;
        double mean = 0, var = 0;
        for (int j = 0; j < D; j++)
            mean += xr[j];
        mean /= D;
        for (int j = 0; j < D; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= D;
        double inv = 1.0 / sqrt(var + eps);
        for (int j = 0; j < D; j++)
            y[(size_t)i * D + j] = (float)((xr[j] - mean) * inv * g[j] + b[j]);
    }
}

void
ref_softmax(float *x, int M, int N)
{
    for (int i = 0; i < M; i++) {
        float *r = x + (size_t)i * N;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < N; j++)
            m = r[j] > m ? r[j] : m;
        for (int j = 0; j < N; j++)
            s += exp(r[j] - m);
        for (int j = 0; j < N; j++)
            r[j] = (float)(exp(r[j] - m) / s);
    }
}

void
ref_quick_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(x[i] / (1.0 + exp(-1.702 * x[i])));
}

void
ref_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
}

void
ref_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void
ref_scale(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

void
ref_l2norm(float *x, int M, int D)
{
    for (int i = 0; i < M; i++) {
        double s = 0;
        for (int j = 0; j < D; j++)
            s += (double)x[(size_t)i * D + j] * x[(size_t)i * D + j];
        for (int j = 0; j < D && s > 0; j++)
            x[(size_t)i * D + j] = (float)(x[(size_t)i * D + j] / sqrt(s));
    }
}

void
ref_patchify(float *cols, const float *pix, int N, int C, int S, int P)
{
    int G = S / P;
    size_t K = (size_t)C * P * P;
    for (int n = 0; n < N; n++)
        for (int r = 0; r < G; r++)
            for (int c = 0; c < G; c++)
                for (int ch = 0; ch < C; ch++)
                    for (int i = 0; i < P; i++)
                        for (int j = 0; j < P; j++)
                            cols[((size_t)n * G * G + (size_t)r * G + c) * K
                                 + ((size_t)ch * P + i) * P + j] =
                                pix[(((size_t)n * C + ch) * S + (size_t)r * P + i) * S
                                    + (size_t)c * P + j];
}

void
ref_attention(float *out, const float *qkv, int N, int T, int D, int H, int causal)
{
    int Dh = D / H;
    double *p = xmalloc((size_t)T * sizeof *p);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)n * T + i) * 3 * D + (size_t)h * Dh;
                double m = -INFINITY, s = 0;
                for (int j = 0; j < T; j++) {
                    const float *k = qkv + ((size_t)n * T + j) * 3 * D + D + (size_t)h * Dh;
                    double d = 0;
                    for (int e = 0; e < Dh; e++)
                        d += (double)q[e] * k[e];
                    p[j] = causal && j > i ? -INFINITY : d / sqrt((double)Dh);
                    m = p[j] > m ? p[j] : m;
                }
                for (int j = 0; j < T; j++)
                    s += (p[j] = exp(p[j] - m));
                for (int e = 0; e < Dh; e++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += p[j] / s * qkv[((size_t)n * T + j) * 3 * D + 2 * D + (size_t)h * Dh + e];
                    out[((size_t)n * T + i) * D + (size_t)h * Dh + e] = (float)acc;
                }
            }
    free(p);
}

void
ref_conv_patch(float *out, const float *pix, const float *w, int N, int C, int S, int P, int D)
{
    int G = S / P;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++)
            for (int r = 0; r < G; r++)
                for (int c = 0; c < G; c++) {
                    double s = 0;
                    for (int ch = 0; ch < C; ch++)
                        for (int i = 0; i < P; i++)
                            for (int j = 0; j < P; j++)
                                s += (double)w[(((size_t)d * C + ch) * P + i) * P + j]
                                     * pix[(((size_t)n * C + ch) * S + (size_t)r * P + i) * S
                                           + (size_t)c * P + j];
                    out[(((size_t)n * D + d) * G + r) * G + c] = (float)s;
                }
}
