/* SPDX-License-Identifier: MIT */
/*
 * train.c - one PatchSAE training step, forward and analytic backward by
 * hand, using ReLU sparsity everywhere except the encoder GEMM.
 *
 * A step (patchsae-reference.md §2.2-2.4), N tokens x (N, D):
 *   1. renormalise the W_dec rows; the dead mask is since_fired > window.
 *   2. per chunk of M tokens: h = (x - b_dec) W_enc + b_enc (the one dense
 *      GEMM, M x S into a reused buffer); per token pick the active latents
 *      (h > 0) into a sparse list, x_hat = b_dec + sum_active f_s W_dec[s]
 *      (decoder rows of the active latents only), the loss terms, dL/dx_hat
 *      and dL/dh_s = dL/dx_hat . W_dec[s] + l1/N for each active s.
 *      Ghost grads for the chunk (only over the dead columns, each a GEMM):
 *      E = exp(h[:, dead]), g = E W_dec[dead], the detached scales, then
 *      dL/dh[:, dead], dL/dW_dec[dead] and dL/dW_enc[:, dead].
 *   3. the sparse lists are transposed to per-latent lists (a counting
 *      sort), and each active latent's gradient rows are one pass over its
 *      tokens: dW_enc^T[s] = sum_t dh_ts (x_t - b_dec), dW_dec[s] =
 *      sum_t f_ts dL/dx_hat_t, db_enc[s] = sum_t dh_ts. When the lists
 *      outgrow their buffer (early training, L0 in the thousands), steps 2-3
 *      run in several passes over the tokens, adding onto the rows.
 *   4. db_dec = sum_t dL/dx_hat_t - W_enc db_enc: reduced over the batch
 *      first, then one mat-vec over the latents with a non-zero db_enc.
 *   5. Adam over every parameter (moments decay even where the gradient is
 *      zero), with the parallel component of each W_dec row's gradient
 *      removed first; latents that nothing touched skip reading a gradient.
 *
 * Exactness: the loss and gradients are PatchSAE's to float rounding
 * (tests/test_train.c checks them against finite differences in double and
 * against PyTorch's autograd and Adam, tests/data/sae_train). The mse_cls
 * coefficient (1.0 in PatchSAE) is not modelled.
 *
 * Vector kernels: the build is plain -O2 (no auto-vectorisation, no -march),
 * so the few hot loops here have an AVX-512 version chosen at run time and a
 * portable one; both round identically except for summation order in dot
 * products.
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TRAIN_X86 1
#endif

#include <pthread.h>

#include "ps.h"
#include "st.h"
#include "ten.h"

/* ---- vector kernels ---- */

static int use_avx512 = -1;

static void
detect_cpu(void)
{
    if (use_avx512 >= 0)
        return;
#ifdef TRAIN_X86
    __builtin_cpu_init();
    use_avx512 = __builtin_cpu_supports("avx512f") && !getenv("PS_NO_AVX512");
#else
    use_avx512 = 0;
#endif
}

#ifdef TRAIN_X86
__attribute__((target("avx512f"))) static float
dot512(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

__attribute__((target("avx512f"))) static void
axpy512(float *y, float a, const float *x, int n)
{
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

/* Indices and values of h[s] > 0 (s in [0, n)), compressed; returns their count. */
__attribute__((target("avx512f"))) static int
pick512(const float *h, int n, int32_t *idx, float *val)
{
    int k = 0, i = 0;
    __m512 zero = _mm512_setzero_ps();
    __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(h + i);
        __mmask16 m = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
        if (m) {
            _mm512_mask_compressstoreu_ps(val + k, m, v);
            _mm512_mask_compressstoreu_epi32(idx + k, m,
                                             _mm512_add_epi32(iota, _mm512_set1_epi32(i)));
            k += __builtin_popcount(m);
        }
    }
    for (; i < n; i++)
        if (h[i] > 0) {
            idx[k] = i;
            val[k++] = h[i];
        }
    return k;
}

/* PyTorch Adam on n elements: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   p += -step * (m / (sqrt(v) / bc2s + eps)). g NULL means a zero gradient. */
__attribute__((target("avx512f"))) static void
adam512(float *p, float *m, float *v, const float *g, int n, float b1, float c1, float b2,
        float c2, float step, float bc2s, float eps)
{
    __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(c1), vb2 = _mm512_set1_ps(b2),
           vc2 = _mm512_set1_ps(c2), vstep = _mm512_set1_ps(step), vbc = _mm512_set1_ps(bc2s),
           veps = _mm512_set1_ps(eps);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gi = g ? _mm512_loadu_ps(g + i) : _mm512_setzero_ps();
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), vb1), _mm512_mul_ps(gi, vc1));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), vb2),
                                  _mm512_mul_ps(_mm512_mul_ps(gi, gi), vc2));
        __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc), veps);
        __m512 pi = _mm512_sub_ps(_mm512_loadu_ps(p + i), _mm512_mul_ps(vstep, _mm512_div_ps(mi, den)));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        _mm512_storeu_ps(p + i, pi);
    }
    for (; i < n; i++) {
        float gi = g ? g[i] : 0.0f;
        float mi = m[i] * b1 + gi * c1, vi = v[i] * b2 + gi * gi * c2;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * (mi / (sqrtf(vi) / bc2s + eps));
    }
}
#endif

static float
dot(const float *a, const float *b, int n)
{
#ifdef TRAIN_X86
    if (use_avx512)
        return dot512(a, b, n);
#endif
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void
axpy(float *y, float a, const float *x, int n)
{
#ifdef TRAIN_X86
    if (use_avx512) {
        axpy512(y, a, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

static int
pick(const float *h, int n, int32_t *idx, float *val)
{
#ifdef TRAIN_X86
    if (use_avx512)
        return pick512(h, n, idx, val);
#endif
    int k = 0;
    for (int i = 0; i < n; i++)
        if (h[i] > 0) {
            idx[k] = i;
            val[k++] = h[i];
        }
    return k;
}

static void
prefetch_row(const float *p, int n)
{
    for (int i = 0; i < n; i += 16)
        __builtin_prefetch(p + i);
}

typedef struct AdamK {
    float b1, c1, b2, c2, step, bc2s, eps;
} AdamK;

static void
adam(float *p, float *m, float *v, const float *g, int n, const AdamK *k)
{
#ifdef TRAIN_X86
    if (use_avx512) {
        adam512(p, m, v, g, n, k->b1, k->c1, k->b2, k->c2, k->step, k->bc2s, k->eps);
        return;
    }
#endif
    for (int i = 0; i < n; i++) {
        float gi = g ? g[i] : 0.0f;
        float mi = m[i] * k->b1 + gi * k->c1, vi = v[i] * k->b2 + gi * gi * k->c2;
        m[i] = mi;
        v[i] = vi;
        p[i] -= k->step * (mi / (sqrtf(vi) / k->bc2s + k->eps));
    }
}

/* ---- state ---- */

#define MAX_BUF 48

struct TrainScratch {
    int N, D, S, M;
    size_t cap;                 /* sparse entries per pass */
    float *xc;                  /* (N, D) x - b_dec */
    float *xhat;                /* (N, D) */
    float *dx;                  /* (N, D) dL/dx_hat (MSE part; the ghost term does not reach x_hat) */
    float *dsum;                /* (D) sum_t dx_t */
    double *xsum;               /* (D) sum_t x_t */
    float *h;                   /* (M, S) pre-activations of one chunk */
    int64_t *rp;                /* (N + 1) per-token start in the sparse lists of the pass */
    int32_t *e_idx;             /* (cap) latent of each entry, token-major */
    float *e_f, *e_dh;          /* (cap) f and dL/dh of each entry */
    int64_t *cp;                /* (S + 1) per-latent start, latent-major */
    int32_t *c_tok;             /* (cap) */
    float *c_f, *c_dh;          /* (cap) */
    uint8_t *touched;           /* (S) 1 when the gradient rows of s hold this step's values */
    float *gWeT, *gWd;          /* (S, D) gradients (rows valid where touched) */
    float *gbe;                 /* (S) */
    float *gbd;                 /* (D) */
    int nd;                     /* dead latents this step */
    int32_t *dead;              /* (S) their ids */
    int32_t *dpos;              /* (S) position in dead[], or -1 */
    float *Wd;                  /* (nd, D) W_dec[dead] */
    float *gWd_dead, *gWe_dead; /* (nd, D) ghost gradient rows */
    float *gb_dead;             /* (nd) */
    float *E, *Et, *Pt;         /* (M, nd), (nd, M), (nd, M) */
    float *g, *Gs;              /* (M, D) */
    float *GsT, *xcT;           /* (D, M) */
    float *row;                 /* (D) */
    int last_n;
    AdamK ak;                   /* this step's Adam constants */
    /* one worker thread: par2 splits a row range between it and the caller */
    int threads;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*job)(SaeTrain *, int, int);
    SaeTrain *job_t;
    int job_lo, job_hi;
    unsigned gen, done;         /* jobs posted, jobs finished */
    int quit;
    void *buf[MAX_BUF];
    size_t bufn[MAX_BUF];
    int nbuf;
};

static void *
big(TrainScratch *s, size_t n, int *ok)
{
    PS_ASSERT(s->nbuf < MAX_BUF);
    void *p = ps_big_alloc(n);
    if (!p) {
        *ok = 0;
        return NULL;
    }
    s->buf[s->nbuf] = p;
    s->bufn[s->nbuf++] = n;
    return p;
}

/* ---- the worker ---- */

static void *
worker(void *arg)
{
    TrainScratch *s = arg;
    unsigned seen = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->gen == seen && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit)
            break;
        seen = s->gen;
        pthread_mutex_unlock(&s->mu);
        s->job(s->job_t, s->job_lo, s->job_hi);
        pthread_mutex_lock(&s->mu);
        s->done = seen;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* fn(t, 0, mid) on the caller and fn(t, mid, end) on the worker, then both done. */
static void
par2(TrainScratch *s, void (*fn)(SaeTrain *, int, int), SaeTrain *t, int mid, int end)
{
    if (s->threads < 2 || mid <= 0 || mid >= end) {
        fn(t, 0, end);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->job = fn;
    s->job_t = t;
    s->job_lo = mid;
    s->job_hi = end;
    unsigned g = ++s->gen;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    fn(t, 0, mid);
    pthread_mutex_lock(&s->mu);
    while (s->done != g)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void
train_config_default(SaeTrainConfig *c, int d_in, int d_sae, int max_tok)
{
    memset(c, 0, sizeof *c);
    c->d_in = d_in;
    c->d_sae = d_sae;
    c->max_tok = max_tok;
    c->l1 = 8e-5f;
    c->lr = 4e-4f;
    c->warmup = 500;
    c->ghost = 1;
    c->dead_window = 64;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
}

static const char *const tensor_names[TRAIN_N_TENSOR] = {
    "W_enc", "b_enc", "W_dec", "b_dec",
    "adam.exp_avg.W_enc", "adam.exp_avg.b_enc", "adam.exp_avg.W_dec", "adam.exp_avg.b_dec",
    "adam.exp_avg_sq.W_enc", "adam.exp_avg_sq.b_enc", "adam.exp_avg_sq.W_dec",
    "adam.exp_avg_sq.b_dec",
};

const char *
train_tensor_name(TrainTensor w)
{
    PS_ASSERT((unsigned)w < TRAIN_N_TENSOR);
    return tensor_names[w];
}

size_t
train_tensor_shape(const SaeTrain *t, TrainTensor w, int *nd, int64_t shape[2])
{
    int64_t D = t->cfg.d_in, S = t->cfg.d_sae;
    switch (w % 4) {
    case 0: *nd = 2; shape[0] = D; shape[1] = S; break;
    case 1: *nd = 1; shape[0] = S; break;
    case 2: *nd = 2; shape[0] = S; shape[1] = D; break;
    default: *nd = 1; shape[0] = D; break;
    }
    return (size_t)(*nd == 2 ? shape[0] * shape[1] : shape[0]);
}

/*
 * train_init: checks the config (positive sizes, max_tok * D and S * D that
 * fit in memory arithmetic), fills the defaults of chunk and cap_l0 and maps
 * every buffer. Buffers sized by the dead set (up to S rows) are mapped at
 * their largest size but only touched as far as they are used. On failure t
 * is zeroed and the message says what could not be allocated.
 */
int
train_init(SaeTrain *t, const SaeTrainConfig *c, char *err)
{
    memset(t, 0, sizeof *t);
    detect_cpu();
    if (c->d_in <= 0 || c->d_sae <= 0 || c->max_tok <= 0 || c->warmup <= 0 ||
        c->dead_window < 0 || !(c->lr > 0) || !(c->l1 >= 0))
        return ps_seterr(err, PS_EUSAGE,
                         "bad training config: d_in %d, d_sae %d, max_tok %d, warmup %d, "
                         "dead_window %d, lr %g, l1 %g", c->d_in, c->d_sae, c->max_tok,
                         c->warmup, c->dead_window, (double)c->lr, (double)c->l1);
    t->cfg = *c;
    SaeTrainConfig *cf = &t->cfg;
    if (cf->chunk <= 0)
        cf->chunk = 256;
    cf->chunk = MIN(cf->chunk, cf->max_tok);
    if (cf->cap_l0 <= 0)
        cf->cap_l0 = 512;
    size_t D = (size_t)cf->d_in, S = (size_t)cf->d_sae, N = (size_t)cf->max_tok,
           M = (size_t)cf->chunk, SD, ND, MS, cap;
    if (ps_mul(S, D, &SD) || ps_mul(N, D, &ND) || ps_mul(M, S, &MS) ||
        ps_mul(N, (size_t)MIN(cf->cap_l0, cf->d_sae), &cap) || SD > ((size_t)1 << 40) / 4 ||
        ND > ((size_t)1 << 40) / 4 || MS > ((size_t)1 << 40) / 4)
        return ps_seterr(err, PS_ENOMEM, "training buffers for D %zu, S %zu, %zu tokens "
                         "overflow", D, S, N);
    cap = MAX(cap, S);
    TrainScratch *s = xcalloc(1, sizeof *s);
    t->s = s;
    s->N = (int)N;
    s->D = (int)D;
    s->S = (int)S;
    s->M = (int)M;
    s->cap = cap;
    int ok = 1;
    size_t fz = sizeof(float);
    t->W_encT = big(s, SD * fz, &ok);
    t->b_enc = big(s, S * fz, &ok);
    t->W_dec = big(s, SD * fz, &ok);
    t->b_dec = big(s, D * fz, &ok);
    for (int i = 0; i < 4; i++) {
        size_t n = i == 0 || i == 2 ? SD : i == 1 ? S : D;
        t->m[i] = big(s, n * fz, &ok);
        t->v[i] = big(s, n * fz, &ok);
    }
    t->since_fired = big(s, S * sizeof(int32_t), &ok);
    s->xc = big(s, ND * fz, &ok);
    s->xhat = big(s, ND * fz, &ok);
    s->dx = big(s, ND * fz, &ok);
    s->dsum = big(s, D * fz, &ok);
    s->xsum = big(s, D * sizeof(double), &ok);
    s->h = big(s, MS * fz, &ok);
    s->rp = big(s, (N + 1) * sizeof(int64_t), &ok);
    s->e_idx = big(s, cap * sizeof(int32_t), &ok);
    s->e_f = big(s, cap * fz, &ok);
    s->e_dh = big(s, cap * fz, &ok);
    s->cp = big(s, (S + 1) * sizeof(int64_t), &ok);
    s->c_tok = big(s, cap * sizeof(int32_t), &ok);
    s->c_f = big(s, cap * fz, &ok);
    s->c_dh = big(s, cap * fz, &ok);
    s->touched = big(s, S, &ok);
    s->gWeT = big(s, SD * fz, &ok);
    s->gWd = big(s, SD * fz, &ok);
    s->gbe = big(s, S * fz, &ok);
    s->gbd = big(s, D * fz, &ok);
    s->dead = big(s, S * sizeof(int32_t), &ok);
    s->dpos = big(s, S * sizeof(int32_t), &ok);
    s->Wd = big(s, SD * fz, &ok);
    s->gWd_dead = big(s, SD * fz, &ok);
    s->gWe_dead = big(s, SD * fz, &ok);
    s->gb_dead = big(s, S * fz, &ok);
    s->E = big(s, MS * fz, &ok);
    s->Et = big(s, MS * fz, &ok);
    s->Pt = big(s, MS * fz, &ok);
    s->g = big(s, M * D * fz, &ok);
    s->Gs = big(s, M * D * fz, &ok);
    s->GsT = big(s, M * D * fz, &ok);
    s->xcT = big(s, M * D * fz, &ok);
    s->row = big(s, 2 * D * fz, &ok);
    if (!ok) {
        train_free(t);
        return ps_seterr(err, PS_ENOMEM, "cannot map the training buffers for D %zu, S %zu, "
                         "%zu tokens a step", D, S, N);
    }
    for (size_t i = 0; i < S; i++)
        s->dpos[i] = -1;
    s->threads = 1;
    if (cf->threads != 1 && S >= 64) {
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        if (pthread_create(&s->th, NULL, worker, s) == 0) {
            s->threads = 2;
        } else {
            pthread_cond_destroy(&s->cv);
            pthread_mutex_destroy(&s->mu);
        }
    }
    return PS_OK;
}

void
train_free(SaeTrain *t)
{
    if (!t)
        return;
    if (t->s) {
        TrainScratch *s = t->s;
        if (s->threads == 2) {
            pthread_mutex_lock(&s->mu);
            s->quit = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            pthread_join(s->th, NULL);
            pthread_cond_destroy(&s->cv);
            pthread_mutex_destroy(&s->mu);
        }
        for (int i = 0; i < t->s->nbuf; i++)
            ps_big_free(t->s->buf[i], t->s->bufn[i]);
        free(t->s);
    }
    memset(t, 0, sizeof *t);
}

/* splitmix64: a small, well-mixed generator for the initialisation. */
static uint64_t
mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static float
unif(uint64_t *x) /* [-1, 1) */
{
    return (float)((double)(mix(x) >> 40) * (2.0 / 16777216.0) - 1.0);
}

static void
renorm_rows(float *W, int S, int D)
{
    for (int s = 0; s < S; s++) {
        float *w = W + (size_t)s * D;
        float n = sqrtf(dot(w, w, D));
        for (int d = 0; d < D; d++)
            w[d] /= n;
    }
}

/*
 * train_init_weights: W_enc ~ U(+-sqrt(6/S)) (PyTorch's kaiming_uniform on a
 * (D,S) tensor takes fan_in = S), W_dec ~ U(+-sqrt(6/D)) then unit rows,
 * biases zero (reference §2.1). Deterministic in seed.
 */
void
train_init_weights(SaeTrain *t, uint64_t seed)
{
    int D = t->cfg.d_in, S = t->cfg.d_sae;
    uint64_t x = seed * 0x2545f4914f6cdd1dULL + 1;
    float be = sqrtf(6.0f / (float)S), bd = sqrtf(6.0f / (float)D);
    for (size_t i = 0; i < (size_t)S * D; i++)
        t->W_encT[i] = be * unif(&x);
    for (size_t i = 0; i < (size_t)S * D; i++)
        t->W_dec[i] = bd * unif(&x);
    renorm_rows(t->W_dec, S, D);
    memset(t->b_enc, 0, (size_t)S * sizeof(float));
    memset(t->b_dec, 0, (size_t)D * sizeof(float));
    for (int i = 0; i < 4; i++) {
        size_t n = i == 0 || i == 2 ? (size_t)S * D : i == 1 ? (size_t)S : (size_t)D;
        memset(t->m[i], 0, n * sizeof(float));
        memset(t->v[i], 0, n * sizeof(float));
    }
    memset(t->since_fired, 0, (size_t)S * sizeof(int32_t));
    t->step = 0;
}

static void
renorm_part(SaeTrain *t, int l0, int l1)
{
    renorm_rows(t->W_dec + (size_t)l0 * t->s->D, l1 - l0, t->s->D);
}

/* ---- b_dec initialisation ---- */

int
train_geometric_median(const float *pts, int n, size_t dim, double eps, int maxiter,
                       double ftol, float *med)
{
    PS_ASSERT(n > 0 && dim > 0);
    double *acc = xmalloc(dim * sizeof *acc), *dist = xmalloc((size_t)n * sizeof *dist);
    /* The median and the objective are kept in float, as the reference
       computes in float32 (sums are taken in double, then rounded): ftol
       1e-20 then stops the iteration when the float objective stops
       changing, after the same number of updates as PyTorch's. */
    memset(acc, 0, dim * sizeof *acc);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++)
            acc[j] += pts[(size_t)i * dim + j];
    for (size_t j = 0; j < dim; j++)
        med[j] = (float)(acc[j] / n);
    float obj = 0;
    double o = 0;
    for (int i = 0; i < n; i++) {
        double q = 0;
        for (size_t j = 0; j < dim; j++) {
            double d = (double)pts[(size_t)i * dim + j] - med[j];
            q += d * d;
        }
        dist[i] = sqrt(q);
        o += (float)dist[i];
    }
    obj = (float)o;
    int it = 0;
    while (it < maxiter) {
        it++;
        float prev = obj;
        double wsum = 0;
        memset(acc, 0, dim * sizeof *acc);
        for (int i = 0; i < n; i++) {
            double w = 1.0 / MAX(dist[i], eps);
            wsum += w;
            for (size_t j = 0; j < dim; j++)
                acc[j] += w * pts[(size_t)i * dim + j];
        }
        for (size_t j = 0; j < dim; j++)
            med[j] = (float)(acc[j] / wsum);
        o = 0;
        for (int i = 0; i < n; i++) {
            double q = 0;
            for (size_t j = 0; j < dim; j++) {
                double d = (double)pts[(size_t)i * dim + j] - med[j];
                q += d * d;
            }
            dist[i] = sqrt(q);
            o += (float)dist[i];
        }
        obj = (float)o;
        if (fabs((double)prev - obj) <= ftol * obj)
            break;
    }
    free(acc);
    free(dist);
    return it;
}

void
train_init_b_dec(SaeTrain *t, TrainBdecInit how, const float *x, int n_img, int n_tok,
                 int *n_iter)
{
    int D = t->cfg.d_in;
    if (n_iter)
        *n_iter = 0;
    if (how == TRAIN_BDEC_ZEROS || n_img <= 0 || n_tok <= 0) {
        memset(t->b_dec, 0, (size_t)D * sizeof(float));
        return;
    }
    size_t TD = (size_t)n_tok * D;
    const float *src = x;
    float *med = NULL;
    int rows = n_img * n_tok;
    if (how == TRAIN_BDEC_GEOMETRIC_MEDIAN) {
        med = xmalloc(TD * sizeof *med);
        int it = train_geometric_median(x, n_img, TD, 1e-6, 100, 1e-20, med);
        if (n_iter)
            *n_iter = it;
        src = med;
        rows = n_tok;
    }
    for (int d = 0; d < D; d++) {
        double a = 0;
        for (int r = 0; r < rows; r++)
            a += src[(size_t)r * D + d];
        t->b_dec[d] = (float)(a / rows);
    }
    free(med);
}

int
train_b_dec_init_from_name(const char *s)
{
    if (!strcmp(s, "geometric_median"))
        return TRAIN_BDEC_GEOMETRIC_MEDIAN;
    if (!strcmp(s, "mean"))
        return TRAIN_BDEC_MEAN;
    if (!strcmp(s, "zeros"))
        return TRAIN_BDEC_ZEROS;
    return -1;
}

const char *
train_b_dec_init_name(TrainBdecInit how)
{
    return how == TRAIN_BDEC_MEAN ? "mean" : how == TRAIN_BDEC_ZEROS ? "zeros"
                                                                      : "geometric_median";
}

double
train_lr(const SaeTrain *t)
{
    double f = (double)(t->step + 1) / t->cfg.warmup;
    return (double)t->cfg.lr * (f < 1 ? f : 1);
}

/* ---- the step ---- */

typedef struct Acc {
    double mse, l1, ghost, sse, xsq;
    int64_t entries;
} Acc;

/* The gradient rows of latents [l0, l1) from their per-latent entry lists. */
static void
latent_rows(SaeTrain *t, int l0, int l1)
{
    TrainScratch *s = t->s;
    int D = s->D;
    const int64_t *cp = s->cp;
    int64_t start = l0 > 0 ? cp[l0 - 1] : 0;
    for (int l = l0; l < l1; l++) {
        int64_t end = cp[l];
        if (end == start)
            continue;
        float *ge = s->gWeT + (size_t)l * D, *gd = s->gWd + (size_t)l * D;
        int64_t j = start;
        float gb = 0;
        if (!s->touched[l]) {
            const float *xc = s->xc + (size_t)s->c_tok[j] * D, *dx = s->dx + (size_t)s->c_tok[j] * D;
            float dh = s->c_dh[j], f = s->c_f[j];
            for (int d = 0; d < D; d++) {
                ge[d] = dh * xc[d];
                gd[d] = f * dx[d];
            }
            gb = dh;
            j++;
            s->gbe[l] = 0;
            s->touched[l] = 1;
        }
        for (; j < end; j++) {
            axpy(ge, s->c_dh[j], s->xc + (size_t)s->c_tok[j] * D, D);
            axpy(gd, s->c_f[j], s->dx + (size_t)s->c_tok[j] * D, D);
            gb += s->c_dh[j];
        }
        s->gbe[l] += gb;
        start = end;
    }
}

/*
 * Latent-major pass over the sparse entries of tokens [t0, t1): a counting
 * sort by latent, then each active latent's gradient rows in one pass over
 * its tokens (stored on the first touch of the step, added on later ones).
 */
static void
latent_pass(SaeTrain *t, int t0, int t1)
{
    TrainScratch *s = t->s;
    int S = s->S;
    int64_t n = s->rp[t1] - s->rp[t0];
    if (n == 0)
        return;
    int64_t *cp = s->cp;
    memset(cp, 0, ((size_t)S + 1) * sizeof *cp);
    for (int64_t j = 0; j < n; j++)
        cp[s->e_idx[j] + 1]++;
    for (int i = 0; i < S; i++)
        cp[i + 1] += cp[i];
    for (int tk = t0; tk < t1; tk++)
        for (int64_t j = s->rp[tk] - s->rp[t0]; j < s->rp[tk + 1] - s->rp[t0]; j++) {
            int64_t q = cp[s->e_idx[j]]++;
            s->c_tok[q] = tk;
            s->c_f[q] = s->e_f[j];
            s->c_dh[q] = s->e_dh[j];
        }
    /* cp[i] now holds the end of latent i, the start of latent i + 1: split
       the latents where half of the entries are done */
    int lo = 0, hi = S - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cp[mid] < n / 2)
            lo = mid + 1;
        else
            hi = mid;
    }
    par2(s, latent_rows, t, lo + 1, S);
}

/* Ghost grads for the chunk of tokens [c0, c0 + m) whose pre-activations are in s->h. */
static void
ghost_chunk(SaeTrain *t, const float *x, int n, int c0, int m, Acc *acc)
{
    TrainScratch *s = t->s;
    int S = s->S, D = s->D, nd = s->nd;
    const float inv = 1.0f / ((float)n * (float)D);
    for (int i = 0; i < m; i++) {
        const float *hr = s->h + (size_t)i * S;
        for (int k = 0; k < nd; k++) {
            float e = expf(hr[s->dead[k]]);
            s->E[(size_t)i * nd + k] = e;
            s->Et[(size_t)k * m + i] = e;
        }
    }
    ten_matmul(s->g, s->E, s->Wd, NULL, m, nd, D); /* g = exp(h[:, dead]) W_dec[dead] */
    for (int i = 0; i < m; i++) {
        int tk = c0 + i;
        const float *xr = x + (size_t)tk * D, *xh = s->xhat + (size_t)tk * D;
        float *gr = s->g + (size_t)i * D, *Gs = s->Gs + (size_t)i * D;
        float xn = 0, rn = 0, gn = 0;
        for (int d = 0; d < D; d++) {
            float r = xr[d] - xh[d];
            xn += xr[d] * xr[d];
            rn += r * r;
            gn += gr[d] * gr[d];
        }
        xn = sqrtf(xn);
        rn = sqrtf(rn);
        gn = sqrtf(gn);
        float scale = rn / (2 * gn + 1e-6f); /* detached */
        double gsum = 0;
        for (int d = 0; d < D; d++) {
            float r = xr[d] - xh[d];
            float mm = (xh[d] - xr[d]) * (xh[d] - xr[d]) / xn;
            float diff = gr[d] * scale - r;
            float gm = diff * diff / rn;
            float w = mm / (gm + 1e-6f); /* detached */
            gsum += gm * w;
            float G = w * 2 * diff / rn * inv; /* d ghost / d g */
            Gs[d] = G * scale;                 /* d ghost / d (E W_dec[dead]) */
            s->GsT[(size_t)d * m + i] = Gs[d];
            s->xcT[(size_t)d * m + i] = s->xc[(size_t)tk * D + d];
        }
        acc->ghost += gsum;
    }
    /* Pt = W_dec[dead] Gs^T; dL/dh[:, dead]^T = Et * Pt */
    ten_linear(s->Pt, s->Wd, s->Gs, NULL, nd, D, m);
    for (int k = 0; k < nd; k++) {
        float *p = s->Pt + (size_t)k * m;
        const float *e = s->Et + (size_t)k * m;
        float b = 0;
        for (int i = 0; i < m; i++) {
            p[i] *= e[i];
            b += p[i];
        }
        s->gb_dead[k] += b;
    }
    ten_linear_acc(s->gWd_dead, s->Et, s->GsT, NULL, nd, m, D); /* += E^T Gs */
    ten_linear_acc(s->gWe_dead, s->Pt, s->xcT, NULL, nd, m, D); /* += dh^T (x - b_dec) */
}

/* Adam over the rows of latents [l0, l1) of W_enc and W_dec (part: which scratch row). */
static void
adam_rows(SaeTrain *t, int l0, int l1)
{
    TrainScratch *s = t->s;
    int D = s->D;
    const AdamK ak = s->ak;
    float *row = s->row + (l0 == 0 ? 0 : D);
    for (int l = l0; l < l1; l++) {
        size_t o = (size_t)l * D;
        int k = s->dpos[l], tch = s->touched[l] & 1;
        const float *g = NULL;
        if (tch && k >= 0) {
            for (int d = 0; d < D; d++)
                row[d] = s->gWeT[o + d] + s->gWe_dead[(size_t)k * D + d];
            g = row;
        } else if (tch) {
            g = s->gWeT + o;
        } else if (k >= 0) {
            g = s->gWe_dead + (size_t)k * D;
        }
        adam(t->W_encT + o, t->m[0] + o, t->v[0] + o, g, D, &ak);
        /* W_dec: the component of the gradient parallel to the (renormalised) row is removed */
        g = NULL;
        if (tch || k >= 0) {
            float *gd = s->gWd + o;
            if (!tch)
                memset(gd, 0, (size_t)D * sizeof(float));
            if (k >= 0)
                ten_add(gd, s->gWd_dead + (size_t)k * D, (size_t)D);
            const float *w = t->W_dec + o;
            axpy(gd, -dot(gd, w, D), w, D);
            g = gd;
            s->touched[l] |= 2; /* the gWd row is valid (for train_last_grads) */
        }
        adam(t->W_dec + o, t->m[2] + o, t->v[2] + o, g, D, &ak);
        if (!tch && k < 0)
            s->gbe[l] = 0;
    }
}

/*
 * train_step: one PatchSAE step on x (n, D), n in [1, max_tok]. The loss
 * parts are sums over the step's tokens divided by n (and by D for the MSE
 * and ghost terms), as the reference's means. Allocates nothing.
 */
void
train_step(SaeTrain *t, const float *x, int n, SaeTrainStats *st)
{
    TrainScratch *s = t->s;
    const SaeTrainConfig *c = &t->cfg;
    int S = s->S, D = s->D, M = s->M;
    PS_ASSERT(n >= 1 && n <= s->N);
    s->last_n = n;
    par2(s, renorm_part, t, S / 2, S);

    /* dead mask from the counters, before the forward pass */
    s->nd = 0;
    for (int l = 0; l < S; l++) {
        s->dpos[l] = -1;
        if (c->ghost && t->since_fired[l] > c->dead_window) {
            s->dpos[l] = s->nd;
            s->dead[s->nd++] = l;
        }
    }
    int nd = s->nd;
    if (nd) {
        for (int k = 0; k < nd; k++)
            memcpy(s->Wd + (size_t)k * D, t->W_dec + (size_t)s->dead[k] * D, (size_t)D * sizeof(float));
        memset(s->gWd_dead, 0, (size_t)nd * D * sizeof(float));
        memset(s->gWe_dead, 0, (size_t)nd * D * sizeof(float));
        memset(s->gb_dead, 0, (size_t)nd * sizeof(float));
    }
    memset(s->touched, 0, (size_t)S);
    memset(s->dsum, 0, (size_t)D * sizeof(float));
    memset(s->xsum, 0, (size_t)D * sizeof(double));
    for (int tk = 0; tk < n; tk++) {
        const float *xr = x + (size_t)tk * D;
        float *xc = s->xc + (size_t)tk * D;
        for (int d = 0; d < D; d++) {
            xc[d] = xr[d] - t->b_dec[d];
            s->xsum[d] += xr[d];
        }
    }

    Acc acc = { 0 };
    double tm0 = ps_now(), t_enc = 0, t_ghost = 0, ta;
    const float inv = 1.0f / ((float)n * (float)D), l1n = c->l1 / (float)n;
    int g0 = 0, n_pass = 1;
    s->rp[0] = 0;
    for (int c0 = 0; c0 < n; c0 += M) {
        int m = MIN(M, n - c0);
        ta = ps_now();
        ten_linear(s->h, s->xc + (size_t)c0 * D, t->W_encT, t->b_enc, m, D, S);
        t_enc += ps_now() - ta;
        for (int i = 0; i < m; i++) {
            int tk = c0 + i;
            if (s->rp[tk] - s->rp[g0] + S > (int64_t)s->cap) {
                /* the sparse lists are full: fold the tokens so far into the rows */
                latent_pass(t, g0, tk);
                g0 = tk;
                n_pass++;
            }
            int64_t off = s->rp[tk] - s->rp[g0];
            int32_t *idx = s->e_idx + off;
            float *f = s->e_f + off, *dh = s->e_dh + off;
            int k = pick(s->h + (size_t)i * S, S, idx, f);
            s->rp[tk + 1] = s->rp[tk] + k;
            acc.entries += k;
            const float *xr = x + (size_t)tk * D;
            float *xh = s->xhat + (size_t)tk * D, *dx = s->dx + (size_t)tk * D;
            memcpy(xh, t->b_dec, (size_t)D * sizeof(float));
            double fs = 0;
            for (int j = 0; j < k; j++) {
                if (j + 1 < k) /* the next decoder row: random rows miss every cache */
                    prefetch_row(t->W_dec + (size_t)idx[j + 1] * D, D);
                axpy(xh, f[j], t->W_dec + (size_t)idx[j] * D, D);
                fs += f[j];
            }
            acc.l1 += fs;
            float xn = 0;
            for (int d = 0; d < D; d++)
                xn += xr[d] * xr[d];
            acc.xsq += xn;
            xn = sqrtf(xn);
            float cst = 2 / xn * inv;
            double ms = 0, se = 0;
            for (int d = 0; d < D; d++) {
                float e = xh[d] - xr[d];
                ms += e * e / xn;
                se += e * e;
                dx[d] = cst * e;
                s->dsum[d] += dx[d];
            }
            acc.mse += ms;
            acc.sse += se;
            for (int j = 0; j < k; j++)
                dh[j] = dot(dx, t->W_dec + (size_t)idx[j] * D, D) + l1n;
        }
        if (nd) {
            ta = ps_now();
            ghost_chunk(t, x, n, c0, m, &acc);
            t_ghost += ps_now() - ta;
        }
    }
    latent_pass(t, g0, n);

    /* counters: +1 for all, 0 for the latents active on some token */
    int n_fired = 0;
    for (int l = 0; l < S; l++) {
        if (s->touched[l]) {
            t->since_fired[l] = 0;
            n_fired++;
        } else {
            t->since_fired[l]++;
        }
    }

    /* db_enc totals; db_dec = sum_t dx_t - W_enc db_enc */
    memcpy(s->gbd, s->dsum, (size_t)D * sizeof(float));
    for (int l = 0; l < S; l++) {
        int k = s->dpos[l];
        if (!s->touched[l] && k < 0)
            continue;
        float gb = (s->touched[l] ? s->gbe[l] : 0) + (k >= 0 ? s->gb_dead[k] : 0);
        s->gbe[l] = gb;
        axpy(s->gbd, -gb, t->W_encT + (size_t)l * D, D);
    }

    /* Adam, PyTorch 1.13 single-tensor formula */
    double tm1 = ps_now();
    double lr = train_lr(t);
    int64_t kstep = t->step + 1;
    double bc1 = 1 - pow(c->beta1, (double)kstep), bc2 = 1 - pow(c->beta2, (double)kstep);
    AdamK ak = { c->beta1, (float)(1 - (double)c->beta1), c->beta2, (float)(1 - (double)c->beta2),
                 (float)(lr / bc1), (float)sqrt(bc2), c->eps };
    s->ak = ak;
    par2(s, adam_rows, t, S / 2, S);
    adam(t->b_enc, t->m[1], t->v[1], s->gbe, S, &ak);
    adam(t->b_dec, t->m[3], t->v[3], s->gbd, D, &ak);
    t->step++;
    double tm2 = ps_now();

    if (st) {
        double mu2 = 0; /* ||mean x||^2 for the explained variance */
        for (int d = 0; d < D; d++)
            mu2 += (s->xsum[d] / n) * (s->xsum[d] / n);
        double var = acc.xsq - n * mu2;
        st->mse = acc.mse / ((double)n * D);
        st->l1 = c->l1 * acc.l1 / n;
        st->ghost = acc.ghost / ((double)n * D);
        st->loss = st->mse + st->l1 + st->ghost;
        st->l0 = (double)acc.entries / n;
        st->explained_var = var > 0 ? 1 - acc.sse / var : 0;
        st->n_dead = nd;
        st->n_fired = n_fired;
        st->lr = lr;
        st->n_pass = n_pass;
        st->sec_encode = t_enc;
        st->sec_ghost = t_ghost;
        st->sec_sparse = tm1 - tm0 - t_enc - t_ghost;
        st->sec_adam = tm2 - tm1;
    }
}

void
train_last_grads(const SaeTrain *t, float *g_W_enc, float *g_b_enc, float *g_W_dec,
                 float *g_b_dec)
{
    const TrainScratch *s = t->s;
    int S = s->S, D = s->D;
    for (int l = 0; l < S; l++) {
        size_t o = (size_t)l * D;
        int k = s->dpos[l];
        int tch = s->touched[l] & 1;
        for (int d = 0; d < D; d++) {
            float ge = (tch ? s->gWeT[o + d] : 0) + (k >= 0 ? s->gWe_dead[(size_t)k * D + d] : 0);
            if (g_W_enc)
                g_W_enc[(size_t)d * S + l] = ge;
            if (g_W_dec)
                g_W_dec[o + d] = s->touched[l] ? s->gWd[o + d] : 0;
        }
        if (g_b_enc)
            g_b_enc[l] = s->gbe[l];
    }
    if (g_b_dec)
        memcpy(g_b_dec, s->gbd, (size_t)D * sizeof(float));
}

const float *
train_last_xhat(const SaeTrain *t)
{
    return t->s->xhat;
}

void
train_last_dead(const SaeTrain *t, uint8_t *dead)
{
    for (int l = 0; l < t->s->S; l++)
        dead[l] = t->s->dpos[l] >= 0;
}

/* ---- tensors in PatchSAE's layout ---- */

static float *
tensor_ptr(const SaeTrain *t, TrainTensor w)
{
    int p = w % 4;
    float *base[4] = { t->W_encT, t->b_enc, t->W_dec, t->b_dec };
    return w < 4 ? base[p] : w < 8 ? t->m[p] : t->v[p];
}

/* Blocked transpose: dst (cols, rows) = src (rows, cols)^T. */
static void
transpose(float *dst, const float *src, int rows, int cols)
{
    const int B = 32;
    for (int r0 = 0; r0 < rows; r0 += B)
        for (int c0 = 0; c0 < cols; c0 += B)
            for (int r = r0; r < MIN(r0 + B, rows); r++)
                for (int c = c0; c < MIN(c0 + B, cols); c++)
                    dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

void
train_get(const SaeTrain *t, TrainTensor w, float *out)
{
    int nd;
    int64_t sh[2];
    size_t n = train_tensor_shape(t, w, &nd, sh);
    const float *p = tensor_ptr(t, w);
    if (w % 4 == 0)
        transpose(out, p, t->cfg.d_sae, t->cfg.d_in);
    else
        memcpy(out, p, n * sizeof(float));
}

void
train_set(SaeTrain *t, TrainTensor w, const float *in)
{
    int nd;
    int64_t sh[2];
    size_t n = train_tensor_shape(t, w, &nd, sh);
    float *p = tensor_ptr(t, w);
    if (w % 4 == 0)
        transpose(p, in, t->cfg.d_in, t->cfg.d_sae);
    else
        memcpy(p, in, n * sizeof(float));
}

/* ---- checkpoints ---- */

int
train_save(const SaeTrain *t, const char *path, int n_meta, const char *const *keys,
           const char *const *values, char *err)
{
    StWriter *w = st_writer_new();
    float *tmp[TRAIN_N_TENSOR] = { 0 };
    size_t tmpn[TRAIN_N_TENSOR] = { 0 };
    int rc = PS_OK;
    for (int i = 0; i < TRAIN_N_TENSOR; i++) {
        int nd;
        int64_t sh[2];
        size_t n = train_tensor_shape(t, (TrainTensor)i, &nd, sh);
        const float *data = tensor_ptr(t, (TrainTensor)i);
        if (i % 4 == 0) { /* W_enc and its moments are stored (D, S) */
            tmpn[i] = n * sizeof(float);
            tmp[i] = ps_big_alloc(tmpn[i]);
            if (!tmp[i]) {
                rc = ps_seterr(err, PS_ENOMEM, "%s: cannot map %zu bytes", path, tmpn[i]);
                goto out;
            }
            train_get(t, (TrainTensor)i, tmp[i]);
            data = tmp[i];
        }
        st_writer_add(w, train_tensor_name((TrainTensor)i), ST_F32, nd, sh, data);
    }
    int64_t S = t->cfg.d_sae;
    st_writer_add(w, "since_fired", ST_I32, 1, &S, t->since_fired);
    char b[64];
    const SaeTrainConfig *c = &t->cfg;
#define META_I(k, v) (snprintf(b, sizeof b, "%lld", (long long)(v)), st_writer_meta(w, k, b))
#define META_F(k, v) (snprintf(b, sizeof b, "%.9g", (double)(v)), st_writer_meta(w, k, b))
    META_I("d_in", c->d_in);
    META_I("d_sae", c->d_sae);
    META_I("step", t->step);
    META_F("l1_coefficient", c->l1);
    META_F("lr", c->lr);
    META_I("lr_warm_up_steps", c->warmup);
    META_I("use_ghost_grads", c->ghost);
    META_I("dead_feature_window", c->dead_window);
    META_F("adam_beta1", c->beta1);
    META_F("adam_beta2", c->beta2);
    META_F("adam_eps", c->eps);
#undef META_I
#undef META_F
    for (int i = 0; i < n_meta; i++)
        st_writer_meta(w, keys[i], values[i]);
    rc = st_writer_save(w, path, err);
out:
    st_writer_free(w);
    for (int i = 0; i < TRAIN_N_TENSOR; i++)
        ps_big_free(tmp[i], tmpn[i]);
    return rc;
}

int
train_load(SaeTrain *t, const char *path, char *err)
{
    StFile *f;
    int rc = st_open(&f, path, err);
    if (rc != PS_OK)
        return rc;
    const char *sd = st_meta(f, "d_in"), *ss = st_meta(f, "d_sae"), *sst = st_meta(f, "step");
    if (!sd || !ss || !sst || atoi(sd) != t->cfg.d_in || atoi(ss) != t->cfg.d_sae) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: not a training checkpoint for d_in %d, d_sae %d "
                       "(metadata d_in %s, d_sae %s, step %s)", path, t->cfg.d_in, t->cfg.d_sae,
                       sd ? sd : "missing", ss ? ss : "missing", sst ? sst : "missing");
        goto out;
    }
    char *end;
    long long step = strtoll(sst, &end, 10);
    if (*end || step < 0) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: bad step \"%s\" in the metadata", path, sst);
        goto out;
    }
    for (int i = 0; i < TRAIN_N_TENSOR; i++) {
        int nd;
        int64_t sh[2];
        train_tensor_shape(t, (TrainTensor)i, &nd, sh);
        const float *p;
        rc = st_get_f32(f, train_tensor_name((TrainTensor)i), nd, sh, &p, err);
        if (rc != PS_OK)
            goto out;
        train_set(t, (TrainTensor)i, p);
    }
    const StTensor *sf = st_find(f, "since_fired");
    if (!sf || sf->dtype != ST_I32 || sf->nd != 1 || sf->shape[0] != t->cfg.d_sae) {
        rc = ps_seterr(err, PS_ESHAPE, "%s: since_fired missing or not I32 (%d)", path,
                       t->cfg.d_sae);
        goto out;
    }
    memcpy(t->since_fired, sf->data, (size_t)t->cfg.d_sae * sizeof(int32_t));
    t->step = step;
out:
    st_close(f);
    return rc;
}
