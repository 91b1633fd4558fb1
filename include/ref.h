/* SPDX-License-Identifier: MIT */
/*
 * ref.h - plain-loop versions of every ten.h kernel: the oracle of the
 * differential tests (and of the reference CLIP forward in tests). Same
 * arguments and semantics as the ten_* function of the same name; sums are
 * accumulated in double. Slow on purpose; never use in a hot path.
 */
#ifndef PS_REF_H
#define PS_REF_H

#include <stddef.h>

void ref_linear(float *Y, const float *X, const float *W, const float *b, int M, int K, int N);
void ref_linear_acc(float *Y, const float *X, const float *W, const float *b, int M, int K, int N);
void ref_matmul(float *Y, const float *X, const float *W, const float *b, int M, int K, int N);
void ref_layernorm(float *y, const float *x, const float *g, const float *b, int M, int D,
                   float eps);
void ref_softmax(float *x, int M, int N);
void ref_quick_gelu(float *x, size_t n);
void ref_gelu(float *x, size_t n);
void ref_add(float *y, const float *x, size_t n);
void ref_scale(float *x, size_t n, float s);
void ref_l2norm(float *x, int M, int D);
void ref_patchify(float *cols, const float *pix, int N, int C, int S, int P);
/* Allocates its own scratch. */
void ref_attention(float *out, const float *qkv, int N, int T, int D, int H, int causal);
/* The convolution itself: out (N, D, G, G) = conv2d(pix (N,C,S,S), w (D,C,P,P), stride P). */
void ref_conv_patch(float *out, const float *pix, const float *w, int N, int C, int S, int P,
                    int D);

#endif
