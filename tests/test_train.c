/* SPDX-License-Identifier: MIT */
/*
 * test_train.c - the SAE trainer (train.c):
 *   - gradients of the full loss (normalised MSE + L1 + ghost grads, with the
 *     reference's detached factors held fixed) against central finite
 *     differences of a double-precision re-implementation written here, on a
 *     tiny SAE with dead latents, one of them active;
 *   - PyTorch's own steps (tests/data/sae_train, tools/refsae.py): loss parts,
 *     reconstruction, dead masks, counters, gradients, parameters and Adam
 *     moments after each of 4 steps, and the geometric-median b_dec;
 *   - several sparse passes (a tiny buffer) give the single-pass result;
 *   - checkpoint save/load continues bit for bit;
 *   - convergence on synthetic tokens made of planted sparse directions.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"
#include "st.h"
#include "test.h"
#include "train.h"

/* ---- double-precision reference of the loss with frozen detached factors ---- */

typedef struct Ref {
    int N, D, S, nd;
    const int *dead;
    double l1;
    const double *x;  /* (N, D) */
    /* detached quantities, taken at the base point */
    double *scale;    /* (N) */
    double *r;        /* (N, D) residual x - x_hat */
    double *rn;       /* (N) */
    double *w;        /* (N, D) m / (gm + 1e-6) */
} Ref;

/* theta = W_enc (D,S) | b_enc (S) | W_dec (S,D) | b_dec (D). freeze: record the detached factors. */
static double
ref_loss(Ref *R, const double *th, int freeze, double *parts)
{
    int N = R->N, D = R->D, S = R->S;
    const double *We = th, *be = We + D * S, *Wd = be + S, *bd = Wd + S * D;
    double mse = 0, l1 = 0, ghost = 0;
    double *h = calloc((size_t)S, sizeof *h), *xh = calloc((size_t)D, sizeof *xh),
           *g = calloc((size_t)D, sizeof *g);
    for (int t = 0; t < N; t++) {
        const double *x = R->x + t * D;
        for (int s = 0; s < S; s++) {
            h[s] = be[s];
            for (int d = 0; d < D; d++)
                h[s] += (x[d] - bd[d]) * We[d * S + s];
        }
        double xn = 0;
        for (int d = 0; d < D; d++) {
            xh[d] = bd[d];
            for (int s = 0; s < S; s++)
                xh[d] += (h[s] > 0 ? h[s] : 0) * Wd[s * D + d];
            xn += x[d] * x[d];
        }
        xn = sqrt(xn);
        for (int s = 0; s < S; s++)
            l1 += h[s] > 0 ? h[s] : 0;
        for (int d = 0; d < D; d++)
            mse += (xh[d] - x[d]) * (xh[d] - x[d]) / xn;
        if (R->nd == 0)
            continue;
        double gn = 0, rn = 0;
        for (int d = 0; d < D; d++) {
            g[d] = 0;
            for (int k = 0; k < R->nd; k++)
                g[d] += exp(h[R->dead[k]]) * Wd[R->dead[k] * D + d];
            gn += g[d] * g[d];
            rn += (x[d] - xh[d]) * (x[d] - xh[d]);
        }
        if (freeze) {
            R->scale[t] = sqrt(rn) / (2 * sqrt(gn) + 1e-6);
            R->rn[t] = sqrt(rn);
            for (int d = 0; d < D; d++)
                R->r[t * D + d] = x[d] - xh[d];
        }
        for (int d = 0; d < D; d++) {
            double diff = g[d] * R->scale[t] - R->r[t * D + d];
            double gm = diff * diff / R->rn[t];
            if (freeze) {
                double m = (xh[d] - x[d]) * (xh[d] - x[d]) / xn;
                R->w[t * D + d] = m / (gm + 1e-6);
            }
            ghost += gm * R->w[t * D + d];
        }
    }
    free(h);
    free(xh);
    free(g);
    mse /= (double)N * D;
    l1 = R->l1 * l1 / N;
    ghost /= (double)N * D;
    if (parts) {
        parts[0] = mse;
        parts[1] = l1;
        parts[2] = ghost;
    }
    return mse + l1 + ghost;
}

static void
test_gradcheck(void)
{
    enum { D = 6, S = 12, N = 9 };
    SaeTrainConfig c;
    train_config_default(&c, D, S, N);
    c.l1 = 0.01f;
    c.dead_window = 3;
    SaeTrain t;
    char err[PS_ERRLEN] = "";
    CHECK(train_init(&t, &c, err) == PS_OK);
    train_init_weights(&t, 7);
    t_seed(11);
    float x[N * D];
    for (int i = 0; i < N * D; i++)
        x[i] = t_randf() + (i % D == 0 ? 1.5f : 0.0f);
    for (int s = 0; s < S; s++)
        t.b_enc[s] = 0.1f * t_randf();
    static const int dead[] = { 2, 5, 9 };
    for (int k = 0; k < 3; k++)
        t.since_fired[dead[k]] = 4;
    t.b_enc[2] = -1.0f;
    t.b_enc[9] = -0.7f;
    t.b_enc[5] = 0.4f; /* dead by its counter, yet active on some tokens of this batch */
    for (int d = 0; d < D; d++)
        t.b_dec[d] = 0.2f * t_randf();

    /* parameters as the step will see them (W_dec renormalised) */
    enum { P = D * S + S + S * D + D };
    static double th[P], th2[P];
    float We[D * S], Wd[S * D];
    train_get(&t, TRAIN_W_ENC, We);
    train_get(&t, TRAIN_W_DEC, Wd);
    for (int s = 0; s < S; s++) {
        double q = 0;
        for (int d = 0; d < D; d++)
            q += (double)Wd[s * D + d] * Wd[s * D + d];
        for (int d = 0; d < D; d++)
            Wd[s * D + d] = (float)(Wd[s * D + d] / sqrt(q));
    }
    train_set(&t, TRAIN_W_DEC, Wd);
    for (int i = 0; i < D * S; i++)
        th[i] = We[i];
    for (int i = 0; i < S; i++)
        th[D * S + i] = t.b_enc[i];
    for (int i = 0; i < S * D; i++)
        th[D * S + S + i] = Wd[i];
    for (int i = 0; i < D; i++)
        th[D * S + S + S * D + i] = t.b_dec[i];

    static double xd[N * D], scale[N], r[N * D], rn[N], w[N * D];
    for (int i = 0; i < N * D; i++)
        xd[i] = x[i];
    Ref R = { N, D, S, 3, dead, c.l1, xd, scale, r, rn, w };
    double parts[3];
    double L0 = ref_loss(&R, th, 1, parts);

    SaeTrainStats st;
    train_step(&t, x, N, &st);
    CHECK_EQ_INT(st.n_dead, 3);
    CHECK(st.ghost > 0);
    CHECK_NEAR(st.mse, parts[0], 1e-6 * fabs(parts[0]) + 1e-9);
    CHECK_NEAR(st.l1, parts[1], 1e-6 * fabs(parts[1]) + 1e-9);
    CHECK_NEAR(st.ghost, parts[2], 1e-5 * fabs(parts[2]) + 1e-9);
    CHECK_NEAR(st.loss, L0, 1e-5 * fabs(L0));

    static float gWe[D * S], gbe[S], gWd[S * D], gbd[D], fd[P], got[P];
    train_last_grads(&t, gWe, gbe, gWd, gbd);
    memcpy(got, gWe, sizeof gWe);
    memcpy(got + D * S, gbe, sizeof gbe);
    memcpy(got + D * S + S, gWd, sizeof gWd);
    memcpy(got + D * S + S + S * D, gbd, sizeof gbd);
    const double eps = 1e-6;
    for (int i = 0; i < P; i++) {
        memcpy(th2, th, sizeof th);
        th2[i] = th[i] + eps;
        double a = ref_loss(&R, th2, 0, NULL);
        th2[i] = th[i] - eps;
        double b = ref_loss(&R, th2, 0, NULL);
        fd[i] = (float)((a - b) / (2 * eps));
    }
    /* W_dec: the parallel component is removed from the gradient */
    float *fdd = fd + D * S + S;
    for (int s = 0; s < S; s++) {
        double p = 0;
        for (int d = 0; d < D; d++)
            p += (double)fdd[s * D + d] * th[D * S + S + s * D + d];
        for (int d = 0; d < D; d++)
            fdd[s * D + d] -= (float)(p * th[D * S + S + s * D + d]);
    }
    CHECK_REL(got, fd, D * S, 1e-5);
    CHECK_REL(got + D * S, fd + D * S, S, 1e-5);
    CHECK_REL(got + D * S + S, fd + D * S + S, S * D, 1e-5);
    CHECK_REL(got + D * S + S + S * D, fd + D * S + S + S * D, D, 1e-5);
    /* the dead latents' ghost gradients are really there */
    double gd = 0;
    for (int d = 0; d < D; d++)
        gd += fabs(gWd[2 * D + d]) + fabs(gWe[d * S + 9]);
    CHECK(gd > 1e-7);

    /* without ghost grads: the gradient of MSE + L1 alone */
    SaeTrain t2;
    c.ghost = 0;
    CHECK(train_init(&t2, &c, err) == PS_OK);
    train_set(&t2, TRAIN_W_ENC, We);
    train_set(&t2, TRAIN_W_DEC, Wd);
    for (int s = 0; s < S; s++)
        t2.b_enc[s] = (float)th[D * S + s];
    for (int d = 0; d < D; d++)
        t2.b_dec[d] = (float)th[D * S + S + S * D + d];
    for (int k = 0; k < 3; k++)
        t2.since_fired[dead[k]] = 4;
    train_step(&t2, x, N, &st);
    CHECK_EQ_INT(st.n_dead, 0);
    CHECK(st.ghost == 0);
    R.nd = 0;
    CHECK_NEAR(st.loss, ref_loss(&R, th, 1, NULL), 1e-5 * L0);
    train_last_grads(&t2, gWe, gbe, gWd, gbd);
    for (int i = 0; i < P; i++) {
        memcpy(th2, th, sizeof th);
        th2[i] = th[i] + eps;
        double a = ref_loss(&R, th2, 0, NULL);
        th2[i] = th[i] - eps;
        fd[i] = (float)((a - ref_loss(&R, th2, 0, NULL)) / (2 * eps));
    }
    CHECK_REL(gWe, fd, D * S, 1e-5);
    CHECK_REL(gbe, fd + D * S, S, 1e-5);
    CHECK_REL(gbd, fd + D * S + S + S * D, D, 1e-5);
    train_free(&t);
    train_free(&t2);
}

/* ---- the PyTorch fixture ---- */

static const float *
get(StFile *f, const char *name, size_t n)
{
    const StTensor *t = st_find(f, name);
    CHECK_MSG(t != NULL, "fixture tensor %s missing", name);
    if (!t)
        return NULL;
    CHECK_EQ_INT(st_numel(t), (long long)n);
    const float *p = NULL;
    char err[PS_ERRLEN];
    if (t->dtype != ST_F32 || st_get_f32(f, name, 0, NULL, &p, err) != PS_OK)
        return NULL;
    return p;
}

static double
scalar(StFile *f, const char *name)
{
    const float *p = get(f, name, 1);
    return p ? *p : NAN;
}

static void
test_fixture(void)
{
    StFile *f;
    char err[PS_ERRLEN] = "";
    int rc = st_open(&f, t_data("sae_train/sae_train.safetensors"), err);
    CHECK_MSG(rc == PS_OK, "%s", err);
    if (rc != PS_OK)
        return;
    int D = atoi(st_meta(f, "d_in")), S = atoi(st_meta(f, "d_sae"));
    int B = atoi(st_meta(f, "batch")), T = atoi(st_meta(f, "tokens"));
    int steps = atoi(st_meta(f, "n_steps"));
    CHECK(D == 8 && S == 32 && B * T == 10 && steps == 4);
    SaeTrainConfig c;
    train_config_default(&c, D, S, B * T);
    c.lr = (float)atof(st_meta(f, "lr"));
    c.warmup = atoi(st_meta(f, "warmup"));
    c.l1 = (float)atof(st_meta(f, "l1_coefficient"));
    c.dead_window = atoi(st_meta(f, "dead_feature_window"));
    SaeTrain t;
    CHECK(train_init(&t, &c, err) == PS_OK);

    /* geometric median b_dec on gm.acts (4, 5, 8) */
    const float *acts = get(f, "gm.acts", 4 * 5 * 8);
    const float *med = get(f, "gm.median", 5 * 8), *gmb = get(f, "gm.b_dec", 8);
    if (acts && med && gmb) {
        float mine[40];
        int it = train_geometric_median(acts, 4, 40, 1e-6, 100, 1e-20, mine);
        CHECK_REL(mine, med, 40, 1e-5);
        CHECK_EQ_INT(it, atoi(st_meta(f, "gm_iters")));
        int n_iter;
        train_init_b_dec(&t, TRAIN_BDEC_GEOMETRIC_MEDIAN, acts, 4, 5, &n_iter);
        CHECK_REL(t.b_dec, gmb, 8, 1e-5);
        train_init_b_dec(&t, TRAIN_BDEC_MEAN, acts, 4, 5, NULL);
        float mean[8] = { 0 };
        for (int i = 0; i < 20; i++)
            for (int d = 0; d < 8; d++)
                mean[d] += acts[i * 8 + d] / 20;
        CHECK_REL(t.b_dec, mean, 8, 1e-6);
        train_init_b_dec(&t, TRAIN_BDEC_ZEROS, acts, 4, 5, NULL);
        CHECK(t.b_dec[0] == 0 && t.b_dec[7] == 0);
    }

    static const char *pn[4] = { "W_enc", "b_enc", "W_dec", "b_dec" };
    char name[96];
    for (int i = 0; i < 4; i++) {
        int nd;
        int64_t sh[2];
        size_t n = train_tensor_shape(&t, (TrainTensor)i, &nd, sh);
        snprintf(name, sizeof name, "init.%s", pn[i]);
        const float *p = get(f, name, n);
        if (!p)
            goto out;
        train_set(&t, (TrainTensor)i, p);
    }
    float *buf = xmalloc(sizeof(float) * 4 * (size_t)D * S), *g[4];
    for (int i = 0; i < 4; i++)
        g[i] = xmalloc(sizeof(float) * (size_t)D * S);
    uint8_t dead[64];
    for (int k = 0; k < steps; k++) {
        snprintf(name, sizeof name, "batch.%d", k);
        const float *x = get(f, name, (size_t)B * T * D);
        if (!x)
            break;
        SaeTrainStats st;
        train_step(&t, x, B * T, &st);
#define STEPNAME(s) (snprintf(name, sizeof name, "step%d.%s", k, s), name)
        CHECK_NEAR(st.lr, scalar(f, STEPNAME("lr")), 1e-9);
        double ref_loss = scalar(f, STEPNAME("loss")), ref_mse = scalar(f, STEPNAME("mse_loss"));
        double ref_l1 = scalar(f, STEPNAME("l1_loss")), ref_ghost = scalar(f, STEPNAME("ghost_loss"));
        CHECK_NEAR(st.loss, ref_loss, 1e-5 * ref_loss);
        CHECK_NEAR(st.mse, ref_mse, 1e-5 * ref_mse);
        CHECK_NEAR(st.l1, ref_l1, 1e-5 * ref_l1);
        CHECK_NEAR(st.ghost, ref_ghost, 1e-5 * ref_ghost + 1e-12);
        const StTensor *dm = st_find(f, STEPNAME("dead_mask"));
        train_last_dead(&t, dead);
        CHECK(dm && dm->dtype == ST_U8 && !memcmp(dm->data, dead, (size_t)S));
        const float *sf = get(f, STEPNAME("since_fired"), (size_t)S);
        int same = 1;
        for (int s = 0; sf && s < S; s++)
            same &= (float)t.since_fired[s] == sf[s];
        CHECK_MSG(same, "step %d: since_fired differs", k);
        const float *xh = get(f, STEPNAME("x_hat"), (size_t)B * T * D);
        if (xh)
            CHECK_REL(train_last_xhat(&t), xh, (size_t)B * T * D, 1e-5);
        train_last_grads(&t, g[0], g[1], g[2], g[3]);
        for (int i = 0; i < 4; i++) {
            int nd;
            int64_t sh[2];
            size_t n = train_tensor_shape(&t, (TrainTensor)i, &nd, sh);
            snprintf(name, sizeof name, "step%d.grad.%s", k, pn[i]);
            const float *rg = get(f, name, n);
            if (rg)
                CHECK_MSG(t_relerr(g[i], rg, n) < 1e-4, "step %d %s: relative error %.3g", k,
                          name, t_relerr(g[i], rg, n));
            static const char *pre[3] = { "", "adam.exp_avg.", "adam.exp_avg_sq." };
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "step%d.%s%s", k, pre[j], pn[i]);
                const float *rp = get(f, name, n);
                train_get(&t, (TrainTensor)(i + 4 * j), buf);
                if (rp)
                    CHECK_MSG(t_relerr(buf, rp, n) < 1e-4, "step %d %s: relative error %.3g", k,
                              name, t_relerr(buf, rp, n));
            }
        }
        CHECK_NEAR((double)t.step, scalar(f, STEPNAME("adam.step")), 0);
#undef STEPNAME
    }
    for (int i = 0; i < 4; i++)
        free(g[i]);
    free(buf);
out:
    train_free(&t);
    st_close(f);
}

/* ---- planted sparse features ---- */

typedef struct Planted {
    int D, K;
    float *dirs; /* (K, D) unit rows */
    uint64_t rng;
} Planted;

static double
urand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void
planted_init(Planted *p, int D, int K, uint64_t seed)
{
    p->D = D;
    p->K = K;
    p->rng = seed;
    p->dirs = xmalloc(sizeof(float) * (size_t)K * D);
    for (int k = 0; k < K; k++) {
        double q = 0;
        for (int d = 0; d < D; d++) {
            double u1 = urand(&p->rng) + 1e-12, u2 = urand(&p->rng);
            float v = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
            p->dirs[k * D + d] = v;
            q += (double)v * v;
        }
        for (int d = 0; d < D; d++)
            p->dirs[k * D + d] /= (float)sqrt(q);
    }
}

/* n tokens: a constant offset plus each feature on with probability 3/K, magnitude U(0.5, 2). */
static void
planted_batch(Planted *p, float *x, int n)
{
    for (int i = 0; i < n; i++) {
        float *xr = x + (size_t)i * p->D;
        for (int d = 0; d < p->D; d++)
            xr[d] = d == 0 ? 1.0f : 0.0f;
        for (int k = 0; k < p->K; k++)
            if (urand(&p->rng) < 3.0 / p->K) {
                float a = (float)(0.5 + 1.5 * urand(&p->rng));
                for (int d = 0; d < p->D; d++)
                    xr[d] += a * p->dirs[k * p->D + d];
            }
    }
}

static void
test_planted(void)
{
    enum { D = 32, K = 48, S = 256, N = 512, STEPS = 1500 };
    Planted p;
    planted_init(&p, D, K, 99);
    SaeTrainConfig c;
    train_config_default(&c, D, S, N);
    c.l1 = 1e-2f;
    c.lr = 2e-3f;
    c.warmup = 100;
    c.dead_window = 64;
    SaeTrain t;
    char err[PS_ERRLEN];
    CHECK(train_init(&t, &c, err) == PS_OK);
    train_init_weights(&t, 42);
    float *x = xmalloc(sizeof(float) * N * D);
    planted_batch(&p, x, N);
    int it;
    train_init_b_dec(&t, TRAIN_BDEC_GEOMETRIC_MEDIAN, x, N / 8, 8, &it);
    SaeTrainStats st, first = { 0 };
    double l_end = 0, l0_end = 0, ev_end = 0;
    int ghost_steps = 0;
    for (int k = 0; k < STEPS; k++) {
        planted_batch(&p, x, N);
        train_step(&t, x, N, &st);
        if (k == 0)
            first = st;
        ghost_steps += st.n_dead > 0;
        if (k >= STEPS - 50) {
            l_end += st.loss / 50;
            l0_end += st.l0 / 50;
            ev_end += st.explained_var / 50;
        }
    }
    int dead = 0;
    for (int s = 0; s < S; s++)
        dead += t.since_fired[s] > c.dead_window;
    /* planted directions recovered: some decoder row within cosine 0.9 */
    float *Wd = xmalloc(sizeof(float) * S * D);
    train_get(&t, TRAIN_W_DEC, Wd);
    int found = 0;
    for (int k = 0; k < K; k++) {
        double best = -1;
        for (int s = 0; s < S; s++) {
            double a = 0, q = 0;
            for (int d = 0; d < D; d++) {
                a += (double)Wd[s * D + d] * p.dirs[k * D + d];
                q += (double)Wd[s * D + d] * Wd[s * D + d];
            }
            best = MAX(best, a / sqrt(q));
        }
        found += best > 0.9;
    }
    printf("  planted: loss %.4f -> %.4f, L0 %.1f -> %.2f, explained variance %.3f, dead %d/%d "
           "(ghost grads in %d steps), recovered %d/%d planted directions (cos > 0.9)\n",
           first.loss, l_end, first.l0, l0_end, ev_end, dead, S, ghost_steps, found, K);
    CHECK(l_end < 0.5 * first.loss);
    CHECK(l0_end > 1 && l0_end < 20);
    CHECK(ev_end > 0.8);
    CHECK(dead < S / 2);
    CHECK(ghost_steps > 0); /* the ghost path ran on a real dead set */
    CHECK(found >= K * 3 / 4);
    free(Wd);
    free(x);
    free(p.dirs);
    train_free(&t);
}

/* ---- several sparse passes; checkpoints ---- */

static void
test_passes_and_resume(void)
{
    enum { D = 16, S = 64, N = 40 };
    SaeTrainConfig c;
    train_config_default(&c, D, S, N);
    c.dead_window = 2;
    c.chunk = 7;
    SaeTrain a, b;
    char err[PS_ERRLEN];
    CHECK(train_init(&a, &c, err) == PS_OK);
    c.cap_l0 = 1; /* room for max(N, S) entries: every step takes several passes */
    CHECK(train_init(&b, &c, err) == PS_OK);
    train_init_weights(&a, 3);
    train_init_weights(&b, 3);
    float x[N * D];
    t_seed(5);
    SaeTrainStats sa, sb;
    int multi = 0;
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < N * D; i++)
            x[i] = t_randf() + (i % D == 1 ? 2.0f : 0.0f);
        train_step(&a, x, N - k, &sa);
        train_step(&b, x, N - k, &sb);
        multi += sb.n_pass > 1;
        CHECK_NEAR(sa.loss, sb.loss, 1e-6 * sa.loss);
    }
    CHECK(multi > 0);
    CHECK_EQ_INT(sa.n_pass, 1);
    CHECK_REL(b.W_encT, a.W_encT, (size_t)S * D, 1e-5);
    CHECK_REL(b.W_dec, a.W_dec, (size_t)S * D, 1e-5);
    CHECK_REL(b.b_enc, a.b_enc, (size_t)S, 1e-5);
    CHECK(!memcmp(a.since_fired, b.since_fired, sizeof(int32_t) * S));

    /* save, load into a fresh trainer, continue: identical bits */
    const char *path = t_tmp("ckpt.safetensors");
    static const char *keys[] = { "note" }, *vals[] = { "test" };
    CHECK(train_save(&a, path, 1, keys, vals, err) == PS_OK);
    SaeTrain r;
    c.cap_l0 = 0;
    CHECK(train_init(&r, &c, err) == PS_OK);
    int rc = train_load(&r, path, err);
    CHECK_MSG(rc == PS_OK, "%s", err);
    CHECK_EQ_INT(r.step, a.step);
    for (int i = 0; i < N * D; i++)
        x[i] = t_randf();
    train_step(&a, x, N, &sa);
    train_step(&r, x, N, &sb);
    CHECK(sa.loss == sb.loss);
    CHECK(!memcmp(a.W_encT, r.W_encT, sizeof(float) * S * D));
    CHECK(!memcmp(a.W_dec, r.W_dec, sizeof(float) * S * D));
    CHECK(!memcmp(a.v[0], r.v[0], sizeof(float) * S * D));
    CHECK(!memcmp(a.b_dec, r.b_dec, sizeof(float) * D));

    /* a checkpoint of another shape is refused */
    SaeTrain o;
    SaeTrainConfig c2;
    train_config_default(&c2, D, S + 1, N);
    CHECK(train_init(&o, &c2, err) == PS_OK);
    CHECK(train_load(&o, path, err) == PS_EFORMAT);
    CHECK(strstr(err, "d_sae") != NULL);
    train_free(&o);
    train_free(&a);
    train_free(&b);
    train_free(&r);
    train_free(&r); /* second free: no-op */
}

static void
test_config(void)
{
    SaeTrainConfig c;
    SaeTrain t;
    char err[PS_ERRLEN];
    train_config_default(&c, 768, 49152, 4096);
    CHECK(c.l1 == 8e-5f && c.lr == 4e-4f && c.warmup == 500 && c.dead_window == 64 && c.ghost);
    c.d_sae = 0;
    CHECK(train_init(&t, &c, err) == PS_EUSAGE);
    CHECK(strstr(err, "d_sae 0") != NULL);
    CHECK(train_b_dec_init_from_name("geometric_median") == TRAIN_BDEC_GEOMETRIC_MEDIAN);
    CHECK(train_b_dec_init_from_name("mean") == TRAIN_BDEC_MEAN);
    CHECK(train_b_dec_init_from_name("median") == -1);
    CHECK_STR(train_b_dec_init_name(TRAIN_BDEC_ZEROS), "zeros");
    /* warm-up schedule */
    train_config_default(&c, 4, 8, 4);
    c.warmup = 4;
    CHECK(train_init(&t, &c, err) == PS_OK);
    CHECK_NEAR(train_lr(&t), 1e-4, 1e-10);
    t.step = 2;
    CHECK_NEAR(train_lr(&t), 3e-4, 1e-10);
    t.step = 10;
    CHECK_NEAR(train_lr(&t), 4e-4, 1e-10);
    train_free(&t);
}

void
test_train(void)
{
    test_config();
    test_gradcheck();
    test_fixture();
    test_passes_and_resume();
    test_planted();
}
