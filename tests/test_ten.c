/* SPDX-License-Identifier: MIT */
/*
 * test_ten.c - every ten_* kernel against its plain-loop ref_* twin on
 * random inputs of odd shapes (relative error), plus a few values known by
 * hand so that a kernel and its oracle cannot be wrong the same way.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ps.h"
#include "ref.h"
#include "ten.h"
#include "test.h"

static float *
rnd(size_t n, float scale)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = t_randf() * scale;
    return p;
}

static float *
dupf(const float *x, size_t n)
{
    float *p = xmalloc(n * sizeof *p);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static void
test_linear_matmul(void)
{
    static const int shapes[][3] = { { 1, 1, 1 }, { 7, 13, 5 }, { 197, 33, 17 }, { 3, 64, 129 },
        { 150, 130, 211 }, { 64, 300, 333 }, { 400, 150, 70 } }; /* the last three are split
                                                                  * over the pool (by rows last) */
    for (size_t s = 0; s < LEN(shapes); s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *X = rnd((size_t)M * K, 1), *W = rnd((size_t)N * K, 0.5f), *b = rnd(N, 1);
        float *Y = rnd((size_t)M * N, 1), *R = rnd((size_t)M * N, 1);
        for (int bias = 0; bias < 2; bias++) {
            ten_linear(Y, X, W, bias ? b : NULL, M, K, N);
            ref_linear(R, X, W, bias ? b : NULL, M, K, N);
            CHECK_REL(Y, R, (size_t)M * N, 1e-6);
            ten_linear_acc(Y, X, W, bias ? b : NULL, M, K, N); /* Y = 2 (X W^T + b) */
            ref_linear_acc(R, X, W, bias ? b : NULL, M, K, N);
            CHECK_REL(Y, R, (size_t)M * N, 1e-6);
            ten_matmul(Y, X, W, bias ? b : NULL, M, K, N); /* W viewed as (K, N) */
            ref_matmul(R, X, W, bias ? b : NULL, M, K, N);
            CHECK_REL(Y, R, (size_t)M * N, 1e-6);
        }
        free(X), free(W), free(b), free(Y), free(R);
    }
    /* by hand: [1 2] [[1 0] [0 1] [1 1]]^T + [0 0 1] = [1 2 4] */
    float X[2] = { 1, 2 }, W[6] = { 1, 0, 0, 1, 1, 1 }, b[3] = { 0, 0, 1 }, Y[3];
    ten_linear(Y, X, W, b, 1, 2, 3);
    CHECK(Y[0] == 1 && Y[1] == 2 && Y[2] == 4);
}

static void
test_layernorm(void)
{
    static const int shapes[][2] = { { 1, 2 }, { 5, 37 }, { 197, 768 }, { 3, 1 } };
    for (size_t s = 0; s < LEN(shapes); s++) {
        int M = shapes[s][0], D = shapes[s][1];
        size_t n = (size_t)M * D;
        float *x = rnd(n, 3), *g = rnd(D, 1), *b = rnd(D, 1), *y = rnd(n, 1), *r = rnd(n, 1);
        for (size_t i = 0; i < n; i++)
            x[i] += 5; /* an offset: the variance must not cancel */
        ten_layernorm(y, x, g, b, M, D, 1e-5f);
        ref_layernorm(r, x, g, b, M, D, 1e-5f);
        CHECK_REL(y, r, n, 1e-5);
        ten_layernorm(x, x, g, b, M, D, 1e-5f); /* in place */
        CHECK_REL(x, r, n, 1e-5);
        free(x), free(g), free(b), free(y), free(r);
    }
    float x[2] = { 1, 3 }, g[2] = { 1, 1 }, b[2] = { 0, 0 };
    ten_layernorm(x, x, g, b, 1, 2, 0);
    CHECK_NEAR(x[0], -1, 1e-6);
    CHECK_NEAR(x[1], 1, 1e-6);
}

static void
test_elementwise(void)
{
    size_t n = 1001;
    float *x = rnd(n, 8);
    x[0] = 0, x[1] = -30, x[2] = 30;
    float *a = dupf(x, n), *b = dupf(x, n);
    ten_quick_gelu(a, n);
    ref_quick_gelu(b, n);
    CHECK_REL(a, b, n, 1e-6);
    CHECK(a[0] == 0 && fabsf(a[1]) < 1e-15f && a[2] == 30);
    memcpy(a, x, n * sizeof *a), memcpy(b, x, n * sizeof *b);
    ten_gelu(a, n);
    ref_gelu(b, n);
    CHECK_REL(a, b, n, 1e-6);
    float one = 1;
    ten_gelu(&one, 1);
    CHECK_NEAR(one, 0.8413447460685429, 1e-6);
    memcpy(a, x, n * sizeof *a), memcpy(b, x, n * sizeof *b);
    ten_add(a, x, n);
    ref_add(b, x, n);
    CHECK_REL(a, b, n, 0);
    ten_scale(a, n, 0.3f);
    ref_scale(b, n, 0.3f);
    CHECK_REL(a, b, n, 0);
    free(x), free(a), free(b);
}

static void
test_softmax_l2(void)
{
    int M = 9, N = 53;
    size_t n = (size_t)M * N;
    float *x = rnd(n, 20), *a = dupf(x, n), *b = dupf(x, n);
    x[0] = 1000; /* would overflow without the max subtracted */
    a[0] = b[0] = 1000;
    ten_softmax(a, M, N);
    ref_softmax(b, M, N);
    CHECK_REL(a, b, n, 1e-6);
    CHECK_NEAR(a[0], 1, 1e-6);
    memcpy(a, x, n * sizeof *a), memcpy(b, x, n * sizeof *b);
    memset(a + N, 0, N * sizeof *a), memset(b + N, 0, N * sizeof *b); /* a zero row stays zero */
    ten_l2norm(a, M, N);
    ref_l2norm(b, M, N);
    CHECK_REL(a, b, n, 1e-6);
    double s = 0;
    for (int j = 0; j < N; j++)
        s += (double)a[2 * N + j] * a[2 * N + j];
    CHECK_NEAR(s, 1, 1e-6);
    CHECK(a[N] == 0 && a[2 * N - 1] == 0);
    free(x), free(a), free(b);
}

static void
test_patchify(void)
{
    static const int shapes[][5] = { /* N C S P D */
        { 1, 3, 4, 2, 5 }, { 2, 3, 15, 5, 7 }, { 3, 1, 7, 7, 3 }, { 2, 3, 32, 16, 11 } };
    for (size_t s = 0; s < LEN(shapes); s++) {
        int N = shapes[s][0], C = shapes[s][1], S = shapes[s][2], P = shapes[s][3];
        int D = shapes[s][4], G = S / P, K = C * P * P;
        float *pix = rnd((size_t)N * C * S * S, 2), *w = rnd((size_t)D * K, 1);
        float *cols = xmalloc((size_t)N * G * G * K * sizeof *cols);
        float *rc = xmalloc((size_t)N * G * G * K * sizeof *rc);
        ten_patchify(cols, pix, N, C, S, P);
        ref_patchify(rc, pix, N, C, S, P);
        CHECK_REL(cols, rc, (size_t)N * G * G * K, 0);
        /* patchify + linear == the convolution (transposed to tokens) */
        float *y = xmalloc((size_t)N * G * G * D * sizeof *y);
        float *conv = xmalloc((size_t)N * D * G * G * sizeof *conv);
        float *yt = xmalloc((size_t)N * G * G * D * sizeof *yt);
        ten_linear(y, cols, w, NULL, N * G * G, K, D);
        ref_conv_patch(conv, pix, w, N, C, S, P, D);
        for (int n = 0; n < N; n++)
            for (int d = 0; d < D; d++)
                for (int t = 0; t < G * G; t++)
                    yt[((size_t)n * G * G + t) * D + d] = conv[((size_t)n * D + d) * G * G + t];
        CHECK_REL(y, yt, (size_t)N * G * G * D, 1e-6);
        free(pix), free(w), free(cols), free(rc), free(y), free(conv), free(yt);
    }
}

static void
test_attention(void)
{
    static const int shapes[][4] = { /* N T D H */
        { 1, 1, 4, 1 }, { 2, 5, 12, 3 }, { 3, 17, 40, 5 }, { 1, 197, 64, 4 }, { 2, 77, 96, 2 } };
    for (size_t s = 0; s < LEN(shapes); s++) {
        int N = shapes[s][0], T = shapes[s][1], D = shapes[s][2], H = shapes[s][3];
        float *qkv = rnd((size_t)N * T * 3 * D, 2);
        float *out = rnd((size_t)N * T * D, 1), *ref = rnd((size_t)N * T * D, 1);
        float *scr = xmalloc(ten_attention_scratch(T, D) * sizeof *scr);
        for (int causal = 0; causal < 2; causal++) {
            ten_attention(out, qkv, N, T, D, H, causal, scr);
            ref_attention(ref, qkv, N, T, D, H, causal);
            CHECK_REL(out, ref, (size_t)N * T * D, 1e-5);
        }
        /* causal: the first token sees only itself, so its output is its own v */
        int ok = 1;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < D; j++)
                ok &= fabsf(out[(size_t)n * T * D + j] - qkv[(size_t)n * T * 3 * D + 2 * D + j])
                      < 1e-6f;
        CHECK(ok);
        free(qkv), free(out), free(ref), free(scr);
    }
}

/* The vector exp and the pool: long arrays (split over threads, tails of
   every length), the float range's ends, NaN, rows of every short length. */
static void
test_vector_kernels(void)
{
    size_t n = 100003; /* not a multiple of 16 or of a chunk */
    float *x = rnd(n, 12), *a, *b;
    static const float edge[] = { -1000, -100, -60, -51.3f, -51.2f, 0, 1e-30f, 51.3f, 100, 1000 };
    memcpy(x, edge, sizeof edge);
    a = dupf(x, n), b = dupf(x, n);
    ten_quick_gelu(a, n);
    ref_quick_gelu(b, n);
    CHECK_REL(a, b, n, 1e-6);
    double worst = 0; /* element by element too, away from the zero crossing */
    for (size_t i = 0; i < n; i++)
        if (fabsf(b[i]) > 1e-3f)
            worst = fmax(worst, fabs(((double)a[i] - b[i]) / b[i]));
    CHECK(worst < 1e-6);
    CHECK(a[8] == 100 && a[9] == 1000 && a[0] <= 0 && a[0] > -1e-30f && a[5] == 0);
    float nan[20];
    for (int i = 0; i < 20; i++)
        nan[i] = i == 17 ? NAN : 1.0f;
    ten_quick_gelu(nan, 20);
    CHECK(isnan(nan[17]) && !isnan(nan[16]) && !isnan(nan[18]));
    free(a), free(b);
    for (int N = 1; N <= 40; N++) { /* every tail length */
        int M = 3;
        float *r = rnd((size_t)M * N, 40);
        r[0] = -1e30f; /* underflows to 0 */
        a = dupf(r, (size_t)M * N), b = dupf(r, (size_t)M * N);
        ten_softmax(a, M, N);
        ref_softmax(b, M, N);
        CHECK_REL(a, b, (size_t)M * N, 1e-6);
        free(r), free(a), free(b);
    }
    free(x);
}

typedef struct {
    int *seen, bad;
} ParJob;

static void
par_mark(void *p, int lo, int hi, int thread)
{
    ParJob *j = p;
    if (thread < 0 || thread >= ten_threads() || lo >= hi)
        j->bad = 1;
    for (int i = lo; i < hi; i++)
        j->seen[i]++;
}

static void
par_nested(void *p, int lo, int hi, int thread)
{
    ParJob *j = p;
    (void)thread;
    for (int i = lo; i < hi; i++) {
        int s[3] = { 0, 0, 0 };
        ParJob in = { s, 0 };
        ten_parallel(3, par_mark, &in); /* busy pool: runs on this thread */
        j->seen[i] += s[0] + s[1] + s[2] == 3 && !in.bad;
    }
}

static void
test_parallel(void)
{
    CHECK(ten_threads() >= 1 && ten_threads() <= 8);
    static const int sizes[] = { 0, 1, 2, 3, 7, 1000 };
    for (size_t s = 0; s < LEN(sizes); s++) {
        int n = sizes[s], ok = 1;
        int *seen = calloc((size_t)n + 1, sizeof *seen);
        ParJob j = { seen, 0 };
        for (int r = 0; r < 50; r++)
            ten_parallel(n, par_mark, &j);
        for (int i = 0; i < n; i++)
            ok &= seen[i] == 50;
        CHECK(ok && !j.bad);
        free(seen);
    }
    int seen[5] = { 0 };
    ParJob j = { seen, 0 };
    ten_parallel(5, par_nested, &j);
    CHECK(seen[0] + seen[1] + seen[2] + seen[3] + seen[4] == 5);
    fflush(NULL);
    pid_t pid = fork(); /* a child has no workers: the pool must not wait for them */
    if (pid == 0) {
        alarm(20); /* a hang fails the check below rather than the suite */
        int s2[100] = { 0 }, ok = ten_threads() == 1;
        ParJob c = { s2, 0 };
        ten_parallel(100, par_mark, &c);
        for (int i = 0; i < 100; i++)
            ok &= s2[i] == 1;
        _exit(ok && !c.bad ? 0 : 1);
    }
    int st = -1;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

void
test_ten(void)
{
    t_seed(1234);
    test_linear_matmul();
    test_layernorm();
    test_elementwise();
    test_softmax_l2();
    test_patchify();
    test_attention();
    test_vector_kernels();
    test_parallel();
}
