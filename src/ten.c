/* SPDX-License-Identifier: MIT */
/*
 * ten.c - the tensor kernels of ten.h over OpenBLAS's cblas_sgemm.
 *
 * Everything big is a GEMM: linear layers run over all N*T rows of a batch at
 * once, the patch convolution is one GEMM after ten_patchify, and attention
 * is two strided GEMMs per (sequence, head) reading q, k and v straight out
 * of the fused (N,T,3D) projection (lda = 3D), so nothing is copied or
 * transposed. The element-wise kernels are plain loops (they are a few per
 * cent of a forward pass); reductions (layernorm, softmax, L2 norm) are
 * two-pass in float, which stays within 1e-6 of a double-precision oracle
 * at CLIP's widths (see tests/test_ten.c).
 */
#include "ten.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "ps.h"

/* Y(M,N) = X(M,K) W(N,K)^T + b: PyTorch's Linear with W stored (out, in). */
void
ten_linear(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    PS_ASSERT(M >= 0 && K > 0 && N > 0);
    if (M == 0)
        return;
    float beta = 0;
    if (b) { /* preload the bias so the GEMM accumulates onto it */
        for (int i = 0; i < M; i++)
            memcpy(Y + (size_t)i * N, b, (size_t)N * sizeof *Y);
        beta = 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, W, K, beta, Y, N);
}

/* Y(M,N) += X(M,K) W(N,K)^T + b: the bias is added first, then the GEMM with beta = 1. */
void
ten_linear_acc(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    PS_ASSERT(M >= 0 && K > 0 && N > 0);
    if (M == 0)
        return;
    if (b)
        for (int i = 0; i < M; i++)
            ten_add(Y + (size_t)i * N, b, (size_t)N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, W, K, 1.0f, Y, N);
}

/* Y(M,N) = X(M,K) W(K,N) + b: weights stored (in, out), as OpenAI's `proj`. */
void
ten_matmul(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    PS_ASSERT(M >= 0 && K > 0 && N > 0);
    if (M == 0)
        return;
    float beta = 0;
    if (b) {
        for (int i = 0; i < M; i++)
            memcpy(Y + (size_t)i * N, b, (size_t)N * sizeof *Y);
        beta = 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, X, K, W, N, beta, Y, N);
}

/* Per row: (x - mean) / sqrt(var + eps) * g + b, biased variance (PyTorch LayerNorm). */
void
ten_layernorm(float *y, const float *x, const float *g, const float *b, int M, int D, float eps)
{
    for (int i = 0; i < M; i++) {
        const float *xr = x + (size_t)i * D;
        float *yr = y + (size_t)i * D;
        float mean = 0;
        for (int j = 0; j < D; j++)
            mean += xr[j];
        mean /= (float)D;
        float var = 0; /* two passes: no cancellation from E[x^2] - mean^2 */
        for (int j = 0; j < D; j++) {
            float d = xr[j] - mean;
            var += d * d;
        }
        var /= (float)D;
        float inv = 1.0f / sqrtf(var + eps);
        for (int j = 0; j < D; j++)
            yr[j] = (xr[j] - mean) * inv * g[j] + b[j];
    }
}

static void
softmax_row(float *x, int n)
{
    float m = x[0];
    for (int j = 1; j < n; j++)
        m = x[j] > m ? x[j] : m;
    float s = 0;
    for (int j = 0; j < n; j++) { /* subtract the max: exp never overflows */
        x[j] = expf(x[j] - m);
        s += x[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < n; j++)
        x[j] *= inv;
}

void
ten_softmax(float *x, int M, int N)
{
    for (int i = 0; i < M; i++)
        softmax_row(x + (size_t)i * N, N);
}

/* quick_gelu(x) = x * sigmoid(1.702 x), OpenAI CLIP's activation. */
void
ten_quick_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form (PyTorch's default, HF "gelu"). */
void
ten_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void
ten_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void
ten_scale(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

/* x / ||x||_2 per row; PyTorch's x / x.norm(dim=-1) (no epsilon), zero rows left alone. */
void
ten_l2norm(float *x, int M, int D)
{
    for (int i = 0; i < M; i++) {
        float *r = x + (size_t)i * D;
        double s = 0;
        for (int j = 0; j < D; j++)
            s += (double)r[j] * r[j];
        if (s > 0) {
            float inv = (float)(1.0 / sqrt(s));
            for (int j = 0; j < D; j++)
                r[j] *= inv;
        }
    }
}

void
ten_patchify(float *cols, const float *pix, int N, int C, int S, int P)
{
    PS_ASSERT(P > 0 && S % P == 0);
    int G = S / P;
    size_t K = (size_t)C * P * P;
    for (int n = 0; n < N; n++)
        for (int r = 0; r < G; r++)
            for (int c = 0; c < G; c++) {
                float *row = cols + ((size_t)n * G * G + (size_t)r * G + c) * K;
                for (int ch = 0; ch < C; ch++)
                    for (int i = 0; i < P; i++) {
                        const float *src = pix + (((size_t)n * C + ch) * S + (size_t)r * P + i) * S
                                           + (size_t)c * P;
                        memcpy(row + ((size_t)ch * P + i) * P, src, (size_t)P * sizeof *row);
                    }
            }
}

size_t
ten_attention_scratch(int T, int D)
{
    (void)D;
    return (size_t)T * T;
}

/*
 * Per sequence n and head h: S(T,T) = q_h k_h^T / sqrt(Dh), softmax per row
 * (causal: row i over columns 0..i, the rest zero, the same as adding -inf
 * above the diagonal), out_h = S v_h written into columns h*Dh.. of out.
 */
void
ten_attention(float *out, const float *qkv, int N, int T, int D, int H, int causal,
              float *scratch)
{
    PS_ASSERT(H > 0 && D % H == 0 && T > 0);
    int Dh = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)Dh);
    for (int n = 0; n < N; n++) {
        const float *base = qkv + (size_t)n * T * ld;
        float *o = out + (size_t)n * T * D;
        for (int h = 0; h < H; h++) {
            const float *q = base + (size_t)h * Dh, *k = q + D, *v = q + 2 * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, Dh, scale, q, ld, k, ld,
                        0.0f, scratch, T);
            for (int i = 0; i < T; i++) {
                float *row = scratch + (size_t)i * T;
                if (causal) {
                    softmax_row(row, i + 1);
                    memset(row + i + 1, 0, (size_t)(T - i - 1) * sizeof *row);
                } else {
                    softmax_row(row, T);
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, Dh, T, 1.0f, scratch, T, v,
                        ld, 0.0f, o + (size_t)h * Dh, D);
        }
    }
}
