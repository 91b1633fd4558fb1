/* SPDX-License-Identifier: MIT */
/*
 * ten.h - the tensor kernels every model stage uses, over OpenBLAS.
 *
 * Shape vocabulary (project-wide): N images in a batch, T tokens (1 CLS +
 * patches [+ prompts]), D model width, H heads, Dh = D/H head width, F MLP
 * width, L layers, S SAE latents, E embedding width. All arrays are row-major
 * float32, dims outermost-first (as PyTorch), contiguous.
 *
 * Linear weights are stored as PyTorch does, W (out, in):
 *   Y(M,out) = X(M,in) W^T + b  ==
 *   cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, in, 1, X, in, W, in, 0, Y, out)
 *
 * src/ref.c holds a plain-loop version of every kernel (ref_*): the oracle of
 * the differential tests.
 */
#ifndef PS_TEN_H
#define PS_TEN_H

#include <stddef.h>

/* Y(M,N) = X(M,K) W(N,K)^T + b(N) (b may be NULL). */
void ten_linear(float *Y, const float *X, const float *W, const float *b, int M, int K, int N);
/* Y(M,N) += X(M,K) W(N,K)^T + b(N) (b may be NULL): a linear layer added onto a residual. */
void ten_linear_acc(float *Y, const float *X, const float *W, const float *b, int M, int K, int N);
/* Y(M,N) = X(M,K) W(K,N) + b(N): weights stored (in, out), as OpenAI's `proj`. */
void ten_matmul(float *Y, const float *X, const float *W, const float *b, int M, int K, int N);
/* y(M,D) = (x - mean) / sqrt(var + eps) * g + b, per row (biased variance). y may be x. */
void ten_layernorm(float *y, const float *x, const float *g, const float *b, int M, int D,
                   float eps);
/* Softmax over each row of x (M,N), in place; subtracts the row max first. */
void ten_softmax(float *x, int M, int N);
/* x * sigmoid(1.702 x), OpenAI CLIP's QuickGELU, in place. */
void ten_quick_gelu(float *x, size_t n);
/* 0.5 x (1 + erf(x / sqrt 2)), exact GELU (HF "gelu"), in place. */
void ten_gelu(float *x, size_t n);
/* y += x, n floats. */
void ten_add(float *y, const float *x, size_t n);
/* Scales each of the M rows of x (M,D) to unit L2 norm (rows of zeros stay zero). */
void ten_l2norm(float *x, int M, int D);

/* x *= s, n floats. */
void ten_scale(float *x, size_t n, float s);

/*
 * Patch extraction for a stride = kernel convolution without bias (CLIP's
 * conv1), so the convolution becomes one GEMM with the weight viewed as
 * (D, C*P*P): cols (N*G*G, C*P*P) from pix (N,C,S,S), G = S/P (S % P == 0);
 * row n*G*G + r*G + c is patch (r, c) of image n, its columns in (C, P, P) order.
 */
void ten_patchify(float *cols, const float *pix, int N, int C, int S, int P);

/*
 * Multi-head self-attention core for N sequences of T tokens:
 * qkv (N,T,3D) holds q | k | v per token (as a fused in_proj makes them);
 * out (N,T,D) = concat_h softmax(q_h k_h^T / sqrt(Dh) [+ causal mask]) v_h.
 * scratch must hold ten_attention_scratch(T, D) floats (a (T,T) block per
 * pool thread). The output projection is not included. While it runs,
 * OpenBLAS is set to one thread (each pool thread runs its own GEMMs); so
 * it is during ten_linear, ten_linear_acc and ten_matmul when large.
 */
size_t ten_attention_scratch(int T, int D);
/* causal: token i attends to tokens 0..i only (the text encoder). */
void ten_attention(float *out, const float *qkv, int N, int T, int D, int H, int causal,
                   float *scratch);

/*
 * The pool that runs the work between GEMMs: the caller plus ten_threads() - 1
 * persistent workers (as many threads as OpenBLAS uses, at most 8; created on
 * first use). ten_parallel calls fn(ctx, lo, hi, thread) on contiguous chunks
 * covering items 0..items-1 once each (thread in 0..ten_threads()-1 names the
 * calling thread, e.g. for per-thread scratch; one thread may get several
 * chunks), and returns when all are done. A second caller while the pool is busy runs everything itself.
 */
int ten_threads(void);
void ten_parallel(int items, void (*fn)(void *ctx, int lo, int hi, int thread), void *ctx);
/* The same for jobs whose items call cblas themselves: OpenBLAS is set to one
   thread while the job runs (by the pool's owner only; a caller that finds
   the pool busy runs every item itself, OpenBLAS as it is). */
void ten_parallel_blas(int items, void (*fn)(void *ctx, int lo, int hi, int thread), void *ctx);

#endif
