/* SPDX-License-Identifier: MIT */
/*
 * ten.c - the tensor kernels of ten.h over OpenBLAS's cblas_sgemm.
 *
 * Everything big is a GEMM: linear layers run over all N*T rows of a batch at
 * once, the patch convolution is one GEMM after ten_patchify, and attention
 * is two strided GEMMs per (sequence, head) reading q, k and v straight out
 * of the fused (N,T,3D) projection (lda = 3D), so nothing is copied or
 * transposed. Reductions (layernorm, softmax, L2 norm) are two-pass in float,
 * which stays within 1e-6 of a double-precision oracle at CLIP's widths (see
 * tests/test_ten.c).
 *
 * Threads: one pool of our own does everything (ten_parallel: the caller
 * plus ten_threads() - 1 persistent workers, as many as OpenBLAS would use,
 * taking chunks of about a quarter of a thread's share as they come). The
 * big GEMMs are split by output columns, one single-threaded cblas_sgemm per
 * pool thread (OpenBLAS is set to one thread meanwhile); attention splits the
 * (sequence, head) pairs the same way; layernorm, bias and the activations
 * split rows. Measured on 2 cores (performance.md): with OpenBLAS's own
 * threads, its idle worker spins through the element-wise work and attention
 * between the GEMMs and halves whatever runs beside it; one pool that never
 * competes with itself was 10-15 % faster per image than OpenBLAS threading
 * plus a pool for the rest. PS_NO_GEMM_SPLIT in the environment leaves the
 * big GEMMs to OpenBLAS's threads (for comparison).
 *
 * On AVX-512 the element-wise loops use intrinsics and an exp accurate to a
 * few 1e-7 relative (Cody-Waite range reduction and the Cephes expf
 * polynomial); elsewhere they are plain loops over expf. PS_NO_AVX512 in the
 * environment forces the plain loops.
 */
#include "ten.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TEN_X86 1
#endif

#include "ps.h"

/* ------------------------------------------------------------ thread pool */

#define TEN_MAX_THREADS 8
#define TEN_GRAIN 16384 /* below this many floats of work, stay on the caller */
#define TEN_SPIN 4000   /* polls (about 100 us) before a waiting thread sleeps */

static struct {
    pthread_once_t once;
    int n;                  /* threads including the caller */
    pthread_mutex_t mu;     /* guards the sleeping side of gen and pending */
    pthread_cond_t go, done;
    atomic_uint gen;        /* bumped per job, after the fields below are set */
    atomic_int pending;     /* workers still running the current job */
    void (*fn)(void *, int, int, int);
    void *ctx;
    int items, chunk;
    atomic_int next;        /* first item not yet taken */
    pthread_mutex_t owner;  /* held by the caller of the running job */
} pool = { .once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER,
           .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
           .owner = PTHREAD_MUTEX_INITIALIZER };

static inline void
relax(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_ia32_pause();
#endif
}

/* Takes chunks of the current job until none is left: a thread that starts
   late or shares its core with another process simply takes fewer. */
static void
run_share(void (*fn)(void *, int, int, int), void *ctx, int items, int chunk, int k)
{
    for (;;) {
        int lo = atomic_fetch_add(&pool.next, chunk);
        if (lo >= items)
            return;
        fn(ctx, lo, MIN(lo + chunk, items), k);
    }
}

/* Jobs come back to back between GEMMs, so a worker polls a little before it
   sleeps on the condition variable (a wake-up costs tens of microseconds). */
static void *
worker(void *arg)
{
    int k = (int)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        for (int i = 0; i < TEN_SPIN && atomic_load(&pool.gen) == seen; i++)
            relax();
        pthread_mutex_lock(&pool.mu);
        while (atomic_load(&pool.gen) == seen)
            pthread_cond_wait(&pool.go, &pool.mu);
        pthread_mutex_unlock(&pool.mu);
        seen = atomic_load(&pool.gen);
        run_share(pool.fn, pool.ctx, pool.items, pool.chunk, k);
        if (atomic_fetch_sub(&pool.pending, 1) == 1) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

/* A forked child has no workers: everything runs on its one thread. */
static void
pool_after_fork(void)
{
    pool.n = 1;
    pthread_mutex_init(&pool.owner, NULL);
}

static void
pool_init(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = openblas_get_num_threads();
    n = MIN(n, (int)MIN(cpus, TEN_MAX_THREADS));
    pool.n = 1;
    for (int k = 1; k < n; k++) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int ok = pthread_create(&t, &at, worker, (void *)(intptr_t)k) == 0;
        pthread_attr_destroy(&at);
        if (!ok)
            break;
        pool.n = k + 1;
    }
    pthread_atfork(NULL, NULL, pool_after_fork);
}

int
ten_threads(void)
{
    pthread_once(&pool.once, pool_init);
    return pool.n;
}

/*
 * ten_parallel; blas1 also sets OpenBLAS to one thread while the job runs
 * (for jobs that call cblas themselves), only by the pool's owner, so
 * concurrent callers cannot leave it at one. A caller that finds the pool
 * busy runs the whole job itself with OpenBLAS as it is.
 */
static void
parallel(int items, void (*fn)(void *ctx, int lo, int hi, int thread), void *ctx, int blas1)
{
    PS_ASSERT(items >= 0);
    int n = ten_threads();
    if (items == 0)
        return;
    if (n == 1 || items == 1 || pthread_mutex_trylock(&pool.owner) != 0) {
        fn(ctx, 0, items, 0);
        return;
    }
    int blas = 0;
    if (blas1) {
        blas = openblas_get_num_threads();
        openblas_set_num_threads(1);
    }
    pool.fn = fn, pool.ctx = ctx, pool.items = items, pool.chunk = MAX(1, items / (4 * n));
    atomic_store(&pool.next, 0);
    atomic_store(&pool.pending, n - 1);
    pthread_mutex_lock(&pool.mu);
    atomic_fetch_add(&pool.gen, 1);
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    run_share(fn, ctx, items, pool.chunk, 0);
    for (int i = 0; i < TEN_SPIN && atomic_load(&pool.pending) > 0; i++)
        relax();
    if (atomic_load(&pool.pending) > 0) {
        pthread_mutex_lock(&pool.mu);
        while (atomic_load(&pool.pending) > 0)
            pthread_cond_wait(&pool.done, &pool.mu);
        pthread_mutex_unlock(&pool.mu);
    }
    if (blas1)
        openblas_set_num_threads(blas);
    pthread_mutex_unlock(&pool.owner);
}

void
ten_parallel(int items, void (*fn)(void *ctx, int lo, int hi, int thread), void *ctx)
{
    parallel(items, fn, ctx, 0);
}

void
ten_parallel_blas(int items, void (*fn)(void *ctx, int lo, int hi, int thread), void *ctx)
{
    parallel(items, fn, ctx, 1);
}

/* ------------------------------------------------------ AVX-512 kernels */

static int use_avx512 = -1;

static int
avx512(void)
{
    if (use_avx512 < 0) {
#ifdef TEN_X86
        __builtin_cpu_init();
        use_avx512 = __builtin_cpu_supports("avx512f") && !getenv("PS_NO_AVX512");
#else
        use_avx512 = 0;
#endif
    }
    return use_avx512;
}

#ifdef TEN_X86
/* e^x for x in float range: x = n ln2 + r, |r| <= ln2/2, e^r by the Cephes
   expf polynomial, 2^n put into the exponent. Below -87.34 (FLT_MIN) it is 0;
   the top is clamped at 88 (e^88 = 1.65e38), NaN stays NaN. */
__attribute__((target("avx512f"))) static inline __m512
exp512(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.0f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(hi, x); /* a NaN x is the second operand: it comes out */
    x = _mm512_max_ps(lo, x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
}

__attribute__((target("avx512f"))) static void
quick_gelu512(float *x, size_t n)
{
    const __m512 a = _mm512_set1_ps(-1.702f), one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 e = exp512(_mm512_mul_ps(v, a));
        _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 e = exp512(_mm512_mul_ps(v, a));
        _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
}

__attribute__((target("avx512f"))) static void
softmax512(float *x, int n)
{
    __m512 mv = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
    if (tail)
        mv = _mm512_mask_max_ps(mv, tail, mv, _mm512_maskz_loadu_ps(tail, x + i));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv)), s = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
        _mm512_storeu_ps(x + i, e);
        s = _mm512_add_ps(s, e);
    }
    if (tail) {
        __m512 e = _mm512_maskz_mov_ps(tail, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), m)));
        _mm512_mask_storeu_ps(x + i, tail, e);
        s = _mm512_add_ps(s, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s));
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (tail)
        _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inv));
}

__attribute__((target("avx512f"))) static void
layernorm512(float *y, const float *x, const float *g, const float *b, int D, float eps)
{
    int i = 0;
    __mmask16 tail = (__mmask16)((1u << (D % 16)) - 1);
    __m512 s = _mm512_setzero_ps();
    for (; i + 16 <= D; i += 16)
        s = _mm512_add_ps(s, _mm512_loadu_ps(x + i));
    s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail, x + i));
    __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(s) / (float)D), v = _mm512_setzero_ps();
    for (i = 0; i + 16 <= D; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), mean);
        v = _mm512_fmadd_ps(d, d, v);
    }
    __m512 d = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, x + i), mean);
    v = _mm512_fmadd_ps(d, d, v);
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(v) / (float)D + eps));
    for (i = 0; i + 16 <= D; i += 16) {
        __m512 z = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mean), inv);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(z, _mm512_loadu_ps(g + i), _mm512_loadu_ps(b + i)));
    }
    if (tail) {
        __m512 z = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), mean), inv);
        _mm512_mask_storeu_ps(y + i, tail, _mm512_fmadd_ps(z, _mm512_maskz_loadu_ps(tail, g + i),
                                                          _mm512_maskz_loadu_ps(tail, b + i)));
    }
}
#endif

/* Rows of Y (M, N) set to b (add = 0) or b added to them (add = 1), over the pool. */
typedef struct {
    float *Y;
    const float *b;
    int N, add;
} BiasJob;

static void
bias_rows(void *p, int lo, int hi, int thread)
{
    const BiasJob *j = p;
    (void)thread;
    for (int i = lo; i < hi; i++) {
        float *y = j->Y + (size_t)i * j->N;
        if (j->add)
            for (int k = 0; k < j->N; k++)
                y[k] += j->b[k];
        else
            memcpy(y, j->b, (size_t)j->N * sizeof *y);
    }
}

static void
bias(float *Y, const float *b, int M, int N, int add)
{
    BiasJob j = { Y, b, N, add };
    if ((size_t)M * N < TEN_GRAIN)
        bias_rows(&j, 0, M, 0);
    else
        ten_parallel(M, bias_rows, &j);
}

/* Y(M,N) = alpha X(M,K) op(W) + beta Y, op(W) = W^T for W (N,K) (transw) or W for W (K,N). */
typedef struct {
    float *Y;
    const float *X, *W;
    int M, N, K, transw, parts, rows;
    float beta;
} GemmJob;

static void
gemm_parts(void *p, int lo, int hi, int thread)
{
    const GemmJob *j = p;
    (void)thread;
    for (int k = lo; k < hi; k++) {
        if (j->rows) {
            int i0 = (int)((long long)j->M * k / j->parts);
            int i1 = (int)((long long)j->M * (k + 1) / j->parts);
            if (i1 > i0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, j->transw ? CblasTrans : CblasNoTrans,
                            i1 - i0, j->N, j->K, 1.0f, j->X + (size_t)i0 * j->K, j->K, j->W,
                            j->transw ? j->K : j->N, j->beta, j->Y + (size_t)i0 * j->N, j->N);
            continue;
        }
        int j0 = (int)((long long)j->N * k / j->parts) & ~15;
        int j1 = k + 1 == j->parts ? j->N : (int)((long long)j->N * (k + 1) / j->parts) & ~15;
        if (j1 <= j0)
            continue;
        const float *W = j->transw ? j->W + (size_t)j0 * j->K : j->W + j0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, j->transw ? CblasTrans : CblasNoTrans, j->M,
                    j1 - j0, j->K, 1.0f, j->X, j->K, W, j->transw ? j->K : j->N, j->beta,
                    j->Y + j0, j->N);
    }
}

static int split = -1;

/* Y = X op(W) + beta Y over the pool, or straight to OpenBLAS when small or
   narrow. Split by rows when M > N (each thread then reads its rows of X and
   all of W, less than all of X and its columns of W: the MLP's second layer
   at batch 8), else by columns (16-aligned). */
static void
gemm(float *Y, const float *X, const float *W, int M, int N, int K, int transw, float beta)
{
    if (split < 0)
        split = !getenv("PS_NO_GEMM_SPLIT");
    int n = ten_threads();
    if (!split || n == 1 || N < 32 * n || (double)M * N * K < 4e6) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transw ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                    X, K, W, transw ? K : N, beta, Y, N);
        return;
    }
    GemmJob j = { Y, X, W, M, N, K, transw, n, M > N, beta };
    parallel(n, gemm_parts, &j, 1);
}

/* Y(M,N) = X(M,K) W(N,K)^T + b: PyTorch's Linear with W stored (out, in). */
void
ten_linear(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    PS_ASSERT(M >= 0 && K > 0 && N > 0);
    if (M == 0)
        return;
    if (b) /* preload the bias so the GEMM accumulates onto it */
        bias(Y, b, M, N, 0);
    gemm(Y, X, W, M, N, K, 1, b ? 1.0f : 0.0f);
}

/* Y(M,N) += X(M,K) W(N,K)^T + b: the bias is added first, then the GEMM with beta = 1. */
void
ten_linear_acc(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    PS_ASSERT(M >= 0 && K > 0 && N > 0);
    if (M == 0)
        return;
    if (b)
        bias(Y, b, M, N, 1);
    gemm(Y, X, W, M, N, K, 1, 1.0f);
}

/* Y(M,N) = X(M,K) W(K,N) + b: weights stored (in, out), as OpenAI's `proj`. */
void
ten_matmul(float *Y, const float *X, const float *W, const float *b, int M, int K, int N)
{
    PS_ASSERT(M >= 0 && K > 0 && N > 0);
    if (M == 0)
        return;
    if (b)
        bias(Y, b, M, N, 0);
    gemm(Y, X, W, M, N, K, 0, b ? 1.0f : 0.0f);
}

/* Per row: (x - mean) / sqrt(var + eps) * g + b, biased variance (PyTorch LayerNorm). */
static void
layernorm_row(float *yr, const float *xr, const float *g, const float *b, int D, float eps)
{
#ifdef TEN_X86
    if (avx512()) {
        layernorm512(yr, xr, g, b, D, eps);
        return;
    }
#endif
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

typedef struct {
    float *y;
    const float *x, *g, *b;
    int D;
    float eps;
} LnJob;

static void
layernorm_rows(void *p, int lo, int hi, int thread)
{
    const LnJob *j = p;
    (void)thread;
    for (int i = lo; i < hi; i++)
        layernorm_row(j->y + (size_t)i * j->D, j->x + (size_t)i * j->D, j->g, j->b, j->D, j->eps);
}

void
ten_layernorm(float *y, const float *x, const float *g, const float *b, int M, int D, float eps)
{
    LnJob j = { y, x, g, b, D, eps };
    if ((size_t)M * D < TEN_GRAIN)
        layernorm_rows(&j, 0, M, 0);
    else
        ten_parallel(M, layernorm_rows, &j);
}

static void
softmax_row(float *x, int n)
{
#ifdef TEN_X86
    if (avx512()) {
        softmax512(x, n);
        return;
    }
#endif
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

/* Element-wise activations in place, split into 4096-float chunks over the pool. */
typedef struct {
    float *x;
    size_t n;
    void (*f)(float *, size_t);
} ActJob;

#define ACT_CHUNK 4096

static void
act_chunks(void *p, int lo, int hi, int thread)
{
    const ActJob *j = p;
    (void)thread;
    size_t a = (size_t)lo * ACT_CHUNK, e = MIN((size_t)hi * ACT_CHUNK, j->n);
    j->f(j->x + a, e - a);
}

static void
act(float *x, size_t n, void (*f)(float *, size_t))
{
    ActJob j = { x, n, f };
    if (n < TEN_GRAIN || n / ACT_CHUNK >= (size_t)1 << 30)
        f(x, n);
    else
        ten_parallel((int)((n + ACT_CHUNK - 1) / ACT_CHUNK), act_chunks, &j);
}

static void
quick_gelu_span(float *x, size_t n)
{
#ifdef TEN_X86
    if (avx512()) {
        quick_gelu512(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

/* quick_gelu(x) = x * sigmoid(1.702 x), OpenAI CLIP's activation. */
void
ten_quick_gelu(float *x, size_t n)
{
    act(x, n, quick_gelu_span);
}

static void
gelu_span(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form (PyTorch's default, HF "gelu"). */
void
ten_gelu(float *x, size_t n)
{
    act(x, n, gelu_span);
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
    return (size_t)ten_threads() * T * T;
}

typedef struct {
    float *out, *scratch;
    const float *qkv;
    int T, D, H, causal;
} AttnJob;

/* Items lo..hi-1 = (sequence, head) pairs n*H + h; thread k uses scratch slot k. */
static void
attn_items(void *p, int lo, int hi, int thread)
{
    const AttnJob *j = p;
    int T = j->T, D = j->D, H = j->H, Dh = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)Dh), *scr = j->scratch + (size_t)thread * T * T;
    for (int it = lo; it < hi; it++) {
        int n = it / H, h = it % H;
        const float *q = j->qkv + (size_t)n * T * ld + (size_t)h * Dh, *k = q + D, *v = q + 2 * D;
        float *o = j->out + (size_t)n * T * D + (size_t)h * Dh;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, Dh, scale, q, ld, k, ld, 0.0f,
                    scr, T);
        for (int i = 0; i < T; i++) {
            float *row = scr + (size_t)i * T;
            if (j->causal) {
                softmax_row(row, i + 1);
                memset(row + i + 1, 0, (size_t)(T - i - 1) * sizeof *row);
            } else {
                softmax_row(row, T);
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, Dh, T, 1.0f, scr, T, v, ld, 0.0f,
                    o, D);
    }
}

/*
 * Per sequence n and head h: S(T,T) = q_h k_h^T / sqrt(Dh), softmax per row
 * (causal: row i over columns 0..i, the rest zero, the same as adding -inf
 * above the diagonal), out_h = S v_h written into columns h*Dh.. of out.
 * The N*H pairs are split over the pool, each GEMM single-threaded.
 */
void
ten_attention(float *out, const float *qkv, int N, int T, int D, int H, int causal,
              float *scratch)
{
    PS_ASSERT(H > 0 && D % H == 0 && T > 0);
    AttnJob j = { out, scratch, qkv, T, D, H, causal };
    int items = N * H;
    if (items < 2 || ten_threads() == 1 || (size_t)T * T * (D / H) < TEN_GRAIN) {
        attn_items(&j, 0, items, 0);
        return;
    }
    parallel(items, attn_items, &j, 1);
}
