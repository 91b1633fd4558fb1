/* SPDX-License-Identifier: MIT */
/*
 * test_eval.c - top-k masking (eval.h): k lists, latent orders from
 * hand-made class counts (exact), masks, the seeded random order, and on the
 * small CLIP fixture (tests/data/clip_tiny/small) with a random SAE of 64
 * latents: all latents on = the plain reconstruction, all off = b_dec + c on
 * every token, the cached-layer rerun = a plain-loop forward of the
 * remaining blocks on the patched residual (relative error <= 1e-5), and
 * eval_batch's tallies = predictions made by hand.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "eval.h"
#include "idx.h"
#include "maple.h"
#include "ps.h"
#include "ref.h"
#include "sae.h"
#include "test.h"

static void
check_ks(void)
{
    char err[PS_ERRLEN];
    int ks[EVAL_MAX_K], n;
    CHECK(eval_parse_ks(EVAL_DEFAULT_KS, 64, ks, &n, err) == PS_OK);
    int want[] = { 1, 2, 5, 10, 50, 64 };
    CHECK_EQ_INT(n, 6);
    for (int i = 0; i < 6 && i < n; i++)
        CHECK_EQ_INT(ks[i], want[i]);
    CHECK(eval_parse_ks("all,3,3,1", 49152, ks, &n, err) == PS_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(ks[2], 49152);
    const char *bad[] = { "", "0", "-1", "x", "1,,2", "1,", "2.5", "99999999999999999999" };
    for (size_t i = 0; i < LEN(bad); i++)
        CHECK_MSG(eval_parse_ks(bad[i], 64, ks, &n, err) == PS_EUSAGE, "k list \"%s\" accepted",
                  bad[i]);
    EvalConfig cfg;
    eval_config_init(&cfg, 49152);
    CHECK_EQ_INT(cfg.n_k, 10);
    CHECK_EQ_INT(cfg.k[9], 49152);
    CHECK_NEAR(cfg.add_const, 0.105131256516992, 1e-8);
}

static void
check_rank(void)
{
    char err[PS_ERRLEN];
    /* class 0: latents 3 and 1 tie at 5 (lower index first), then 4; class 1: only latent 0;
     * class 2: nothing. Dataset sums: 1:5+2=7, 3:5, 4:2, 5:2, 0:1 -> 1,3,4,5,0,2 */
    int32_t cls[] = { 0, 0, 0, 1, 0, 2, 1, 1 };
    int32_t lat[] = { 3, 1, 4, 0, 5, 2, 1, 5 };
    int64_t cnt[] = { 5, 5, 2, 1, 0, 0, 2, 2 };
    EvalRank r;
    CHECK(eval_rank_build(&r, 3, 6, 6, LEN(cls), cls, lat, cnt, err) == PS_OK);
    int32_t w0[] = { 1, 3, 4, 0, 2, 5 }, w1[] = { 1, 5, 0, 2, 3, 4 }, w2[] = { 0, 1, 2, 3, 4, 5 };
    int32_t wd[] = { 1, 3, 4, 5, 0, 2 };
    CHECK(!memcmp(r.order, w0, sizeof w0));
    CHECK(!memcmp(r.order + 6, w1, sizeof w1));
    CHECK(!memcmp(r.order + 12, w2, sizeof w2));
    CHECK(!memcmp(r.dataset, wd, sizeof wd));
    CHECK_EQ_INT(r.n_pos[0], 3);
    CHECK_EQ_INT(r.n_pos[1], 3);
    CHECK_EQ_INT(r.n_pos[2], 0);
    eval_rank_free(&r);
    eval_rank_free(&r);
    /* depth truncates */
    CHECK(eval_rank_build(&r, 3, 6, 2, LEN(cls), cls, lat, cnt, err) == PS_OK);
    CHECK_EQ_INT(r.depth, 2);
    CHECK(r.order[0] == 1 && r.order[1] == 3 && r.order[2] == 1 && r.order[3] == 5);
    CHECK(r.order[4] == 0 && r.order[5] == 1);
    eval_rank_free(&r);
    /* hostile rows */
    int32_t bc[] = { 3 }, bl[] = { 0 }, nl[] = { 6 };
    int64_t one[] = { 1 }, neg[] = { -1 };
    CHECK(eval_rank_build(&r, 3, 6, 6, 1, bc, bl, one, err) == PS_EFORMAT);
    CHECK(eval_rank_build(&r, 3, 6, 6, 1, bl, nl, one, err) == PS_EFORMAT);
    CHECK(eval_rank_build(&r, 3, 6, 6, 1, bl, bl, neg, err) == PS_EFORMAT);
    int32_t dc[] = { 1, 1 }, dl[] = { 2, 2 };
    int64_t dn[] = { 1, 3 };
    CHECK(eval_rank_build(&r, 3, 6, 6, 2, dc, dl, dn, err) == PS_EFORMAT);
    CHECK(r.order == NULL);

    /* masks */
    uint8_t keep[6];
    int32_t ord[] = { 4, 2 };
    eval_mask(ord, 2, 6, 1, keep);
    CHECK(keep[4] == 1 && keep[2] == 1 && keep[0] + keep[1] + keep[3] + keep[5] == 0);
    eval_mask(ord, 2, 6, 0, keep);
    CHECK(keep[4] == 0 && keep[2] == 0 && keep[0] + keep[1] + keep[3] + keep[5] == 4);
    eval_mask(NULL, 6, 6, 1, keep);
    CHECK(keep[0] + keep[1] + keep[2] + keep[3] + keep[4] + keep[5] == 6);
    eval_mask(NULL, 6, 6, 0, keep);
    CHECK(keep[0] + keep[1] + keep[2] + keep[3] + keep[4] + keep[5] == 0);

    /* random orders: a prefix of a permutation, reproducible, class dependent */
    int32_t perm[100], a[40], b[40], c[40];
    eval_random_order(7, 3, 100, 40, perm, a);
    eval_random_order(7, 3, 100, 40, perm, b);
    eval_random_order(7, 4, 100, 40, perm, c);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);
    uint8_t seen[100] = { 0 };
    int ok = 1;
    for (int i = 0; i < 40; i++) {
        ok &= a[i] >= 0 && a[i] < 100 && !seen[a[i]];
        if (a[i] >= 0 && a[i] < 100)
            seen[a[i]] = 1;
    }
    CHECK(ok);
}

/* ---- a plain-loop forward of blocks l0..L-1 and the head, from ClipLayer weights ---- */

static void
ref_rest(const Clip *c, const ClipPrompts *pr, const float *resid, int N, int l0, float *emb)
{
    const ClipConfig *g = &c->cfg;
    const ClipTowerConfig *t = &g->vision;
    int n_ctx = pr ? pr->n_ctx : 0, T = g->n_tok + n_ctx, D = t->width, F = t->mlp;
    int E = g->embed_dim, M = N * T;
    float *x = malloc((size_t)M * D * sizeof *x), *h = malloc((size_t)M * D * sizeof *h);
    float *qkv = malloc((size_t)M * 3 * D * sizeof *qkv), *a = malloc((size_t)M * D * sizeof *a);
    float *f = malloc((size_t)M * F * sizeof *f), *o = malloc((size_t)M * D * sizeof *o);
    memcpy(x, resid, (size_t)M * D * sizeof *x);
    for (int l = l0; l < t->layers; l++) {
        const ClipLayer *w = &c->vis.layers[l];
        if (pr && pr->deep && pr->deep[l]) /* MaPLe: the prompt tokens are replaced */
            for (int n = 0; n < N; n++)
                memcpy(x + ((size_t)n * T + g->n_tok) * D, pr->deep[l],
                       (size_t)n_ctx * D * sizeof *x);
        ref_layernorm(h, x, w->ln1_w, w->ln1_b, M, D, t->eps);
        ref_linear(qkv, h, w->w_qkv, w->b_qkv, M, D, 3 * D);
        ref_attention(a, qkv, N, T, D, t->heads, 0);
        ref_linear(o, a, w->w_out, w->b_out, M, D, D);
        ref_add(x, o, (size_t)M * D);
        ref_layernorm(h, x, w->ln2_w, w->ln2_b, M, D, t->eps);
        ref_linear(f, h, w->w_fc1, w->b_fc1, M, D, F);
        if (t->act == CLIP_QUICK_GELU)
            ref_quick_gelu(f, (size_t)M * F);
        else
            ref_gelu(f, (size_t)M * F);
        ref_linear(o, f, w->w_fc2, w->b_fc2, M, F, D);
        ref_add(x, o, (size_t)M * D);
    }
    for (int n = 0; n < N; n++) {
        float cls[4096];
        ref_layernorm(cls, x + (size_t)n * T * D, c->vis.ln_post_w, c->vis.ln_post_b, 1, D, t->eps);
        if (c->vis.proj_in_out)
            ref_matmul(emb + (size_t)n * E, cls, c->vis.proj, NULL, 1, D, E);
        else
            ref_linear(emb + (size_t)n * E, cls, c->vis.proj, NULL, 1, D, E);
    }
    ref_l2norm(emb, N, E);
    free(x);
    free(h);
    free(qkv);
    free(a);
    free(f);
    free(o);
}

/* A random SAE at PatchSAE's scales (unit decoder rows), b_enc slightly positive so many fire. */
static void
random_sae(Sae *s, int D, int S)
{
    char err[PS_ERRLEN];
    PS_ASSERT(sae_init(s, D, S, err) == PS_OK);
    for (size_t i = 0; i < (size_t)D * S; i++)
        s->W_enc[i] = 0.3f * t_randf();
    for (int j = 0; j < S; j++) {
        s->b_enc[j] = 0.05f * t_randf();
        double nrm = 0;
        for (int d = 0; d < D; d++) {
            float v = t_randf();
            s->W_dec[(size_t)j * D + d] = v;
            nrm += (double)v * v;
        }
        for (int d = 0; d < D; d++)
            s->W_dec[(size_t)j * D + d] /= (float)sqrt(nrm);
    }
    for (int d = 0; d < D; d++)
        s->b_dec[d] = 0.1f * t_randf();
}

static int
argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static void
check_model(void)
{
    char err[PS_ERRLEN];
    Clip c;
    if (clip_open(&c, t_data("clip_tiny/small/hf"), NULL, err)) {
        CHECK_MSG(0, "open small clip: %s", err);
        return;
    }
    const ClipConfig *g = &c.cfg;
    int D = g->vision.width, T = g->n_tok, E = g->embed_dim, L = g->vision.layers;
    int hook = L - 2, N = 4, S = 64, C = 3, Sz = g->image_size;
    t_seed(11);
    Sae s;
    random_sae(&s, D, S);
    /* save and reload in the project's format: what a user would hand to eval */
    CHECK(sae_save(&s, t_tmp("eval_sae.safetensors"), err) == PS_OK);
    sae_free(&s);
    CHECK(sae_load(&s, t_tmp("eval_sae.safetensors"), err) == PS_OK);
    CHECK_EQ_INT(s.d_sae, S);

    size_t px = (size_t)3 * Sz * Sz;
    float *pix = malloc((size_t)N * px * sizeof *pix);
    for (size_t i = 0; i < N * px; i++)
        pix[i] = 1.5f * t_randf();
    float *resid = malloc((size_t)N * T * D * sizeof *resid);
    float *full = malloc((size_t)N * E * sizeof *full), *emb = malloc((size_t)N * E * sizeof *emb);
    float *remb = malloc((size_t)N * E * sizeof *remb);
    float *xhat = malloc((size_t)N * T * D * sizeof *xhat);
    float *xm = malloc((size_t)N * T * D * sizeof *xm);
    CHECK(clip_encode_image(&c, pix, N, hook, resid, full, err) == PS_OK);

    /* restarting from the cached residual = the full forward */
    CHECK(clip_image_from_layer(&c, resid, N, hook, NULL, emb, err) == PS_OK);
    CHECK_REL(emb, full, (size_t)N * E, 1e-6);

    /* counts: class c favours latents 10c.. (any order will do for the checks) */
    int32_t cl[3 * S], lt[3 * S];
    int64_t ct[3 * S];
    for (int k = 0; k < C; k++)
        for (int j = 0; j < S; j++) {
            cl[k * S + j] = k;
            lt[k * S + j] = j;
            ct[k * S + j] = (j * 7 + k * 13) % 17;
        }
    EvalRank r;
    CHECK(eval_rank_build(&r, C, S, S, 3 * S, cl, lt, ct, err) == PS_OK);
    float *text = malloc((size_t)C * E * sizeof *text);
    for (int i = 0; i < C * E; i++)
        text[i] = t_randf();
    ref_l2norm(text, C, E);
    EvalConfig cfg;
    eval_config_init(&cfg, S);
    cfg.batch = N;
    Eval ev;
    CHECK(eval_init(&ev, &cfg, &c, NULL, &s, hook, &r, text, C, err) == PS_OK);
    CHECK_EQ_INT(ev.n_cond, 2 + 3 * 2 * 6);

    /* all latents on = the plain reconstruction (exactly), + c on every element */
    SaeSparse sp = { 0 };
    SaeWork w;
    CHECK(sae_work_init(&w, &s, err) == PS_OK);
    CHECK(sae_encode_sparse(&s, resid, N * T, &sp, &w, err) == PS_OK);
    CHECK(sae_sparse_nnz(&sp) > N * T); /* the SAE does fire */
    uint8_t keep[64];
    eval_mask(NULL, S, S, 1, keep);
    sae_decode_sparse(&s, &sp, xhat);
    sae_decode_masked(&s, &sp, keep, 0.0f, xm);
    CHECK(!memcmp(xhat, xm, (size_t)N * T * D * sizeof *xm));
    sae_decode_masked(&s, &sp, keep, SAE_PATCH_BIAS, xm);
    double md = 0;
    for (size_t i = 0; i < (size_t)N * T * D; i++)
        md = fmax(md, fabs(xm[i] - (xhat[i] + SAE_PATCH_BIAS)));
    CHECK_NEAR(md, 0, 1e-6);
    /* all off: b_dec + c on every token */
    eval_mask(NULL, S, S, 0, keep);
    sae_decode_masked(&s, &sp, keep, SAE_PATCH_BIAS, xm);
    int ok = 1;
    for (int t = 0; t < N * T; t++)
        for (int d = 0; d < D; d++)
            ok &= xm[(size_t)t * D + d] == s.b_dec[d] + SAE_PATCH_BIAS;
    CHECK(ok);

    /* the cached-layer rerun = a plain-loop forward of the remaining blocks on the patched
     * residual, for all-on, all-off and a top-5 mask */
    for (int m = 0; m < 3; m++) {
        if (m < 2)
            eval_mask(NULL, S, S, m == 0, keep);
        else
            eval_mask(r.order + S, 5, S, 1, keep);
        CHECK(eval_forward_masked(&ev, resid, N, keep, emb, err) == PS_OK);
        sae_decode_masked(&s, &sp, keep, SAE_PATCH_BIAS, xm);
        ref_rest(&c, NULL, xm, N, hook + 1, remb);
        CHECK_REL(emb, remb, (size_t)N * E, 1e-5);
    }

    /* eval_batch: every tally equals a prediction made by hand */
    int cls = 1;
    CHECK(eval_batch(&ev, cls, pix, N, err) == PS_OK);
    CHECK_EQ_INT(eval_count(&ev, cls), N);
    CHECK_EQ_INT(eval_count(&ev, -1), N);
    int32_t rperm[64], rord[64];
    eval_random_order(cfg.seed, cls, S, r.depth, rperm, rord);
    float lg[8];
    int all_ok = 1;
    for (int i = 0; i < ev.n_cond; i++) {
        const EvalCond *cd = &ev.cond[i];
        const float *e = full;
        if (i > 0) {
            const int32_t *ord = cd->sel == EVAL_SEL_CLASS    ? r.order + (size_t)cls * S
                                 : cd->sel == EVAL_SEL_RANDOM ? rord
                                                              : r.dataset;
            if (i == 1)
                eval_mask(NULL, S, S, 1, keep);
            else
                eval_mask(ord, cd->k, S, cd->on, keep);
            sae_decode_masked(&s, &sp, keep, SAE_PATCH_BIAS, xm);
            ref_rest(&c, NULL, xm, N, hook + 1, remb);
            e = remb;
        }
        int right = 0;
        for (int n = 0; n < N; n++) {
            clip_logits(&c, e + (size_t)n * E, 1, text, C, lg);
            right += argmax(lg, C) == cls;
        }
        double acc = eval_accuracy(&ev, cls, i);
        if (fabs(acc - 100.0 * right / N) > 1e-9) {
            all_ok = 0;
            t_failf(__FILE__, __LINE__, "condition %s k=%d: eval %.2f%%, by hand %.2f%%",
                    cd->name, cd->k, acc, 100.0 * right / N);
        }
    }
    CHECK(all_ok);
    CHECK(isnan(eval_accuracy(&ev, 0, 0)));

    /* store and CSV */
    Idx *ix;
    CHECK(idx_open(&ix, ":memory:", err) == PS_OK);
    IdxModel mo = { 0 };
    snprintf(mo.name, sizeof mo.name, "clip");
    snprintf(mo.kind, sizeof mo.kind, "base");
    IdxSae is = { 0 };
    snprintf(is.path, sizeof is.path, "sae");
    is.d_in = D;
    is.d_sae = S;
    IdxDataset ds = { 0 };
    snprintf(ds.name, sizeof ds.name, "d");
    ds.n_classes = C;
    CHECK(idx_add_model(ix, &mo, err) == PS_OK);
    CHECK(idx_add_sae(ix, &is, err) == PS_OK);
    CHECK(idx_add_dataset(ix, &ds, err) == PS_OK);
    CHECK(eval_store(&ev, ix, mo.id, ds.id, is.id, mo.id, err) == PS_OK);
    IdxEval *rows;
    int nr;
    CHECK(idx_evals(ix, mo.id, ds.id, cls, &rows, &nr, err) == PS_OK);
    CHECK_EQ_INT(nr, ev.n_cond);
    int neg = 0;
    for (int i = 0; i < nr; i++)
        neg += rows[i].k < 0;
    CHECK_EQ_INT(neg, 12); /* random and dataset off-variants */
    free(rows);
    CHECK(idx_evals(ix, mo.id, ds.id, -1, &rows, &nr, err) == PS_OK);
    CHECK_EQ_INT(nr, ev.n_cond);
    free(rows);
    idx_close(ix);
    const char *names[] = { "a", "b,c", "d" };
    CHECK(eval_write_csv(&ev, names, t_tmp("eval.csv"), err) == PS_OK);
    char *txt;
    size_t tn;
    CHECK(ps_read_file(t_tmp("eval.csv"), 1 << 20, &txt, &tn, err) == PS_OK);
    if (txt) {
        CHECK(!strncmp(txt, "class,class_name,mode,k,n_images,correct,accuracy\n-1,all,orig,0,4,",
                       66));
        CHECK(strstr(txt, "\n1,\"b,c\",random_off,64,4,") != NULL);
        free(txt);
    }
    CHECK(eval_write_csv(&ev, names, "/nonexistent/dir/x.csv", err) == PS_EIO);

    eval_free(&ev);
    eval_free(&ev);
    eval_rank_free(&r);
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&s);
    free(text);
    free(pix);
    free(resid);
    free(full);
    free(emb);
    free(remb);
    free(xhat);
    free(xm);
    clip_close(&c);
}

/* MaPLe on the tiny CLIP: T grows by the prompt tokens, blocks after the hook replace them. */
static void
check_maple(void)
{
    char err[PS_ERRLEN];
    Clip c;
    Maple m;
    if (clip_open(&c, t_data("clip_tiny/hf"), NULL, err)) {
        CHECK_MSG(0, "open tiny clip: %s", err);
        return;
    }
    if (maple_load(&m, t_data("clip_tiny/maple/model.pth.tar-5"), &c, err)) {
        CHECK_MSG(0, "load maple: %s", err);
        clip_close(&c);
        return;
    }
    const ClipConfig *g = &c.cfg;
    int D = g->vision.width, E = g->embed_dim, N = 3, S = 64, C = 2, Sz = g->image_size;
    int T = g->n_tok + m.n_ctx;
    /* hook 0: deep prompts still replace tokens in blocks 1 and 2 of the rerun */
    int hook = 0;
    t_seed(5);
    Sae s;
    random_sae(&s, D, S);
    size_t px = (size_t)3 * Sz * Sz;
    float *pix = malloc((size_t)N * px * sizeof *pix), *resid = malloc((size_t)N * T * D * 4);
    float *full = malloc((size_t)N * E * 4), *emb = malloc((size_t)N * E * 4);
    float *remb = malloc((size_t)N * E * 4), *xm = malloc((size_t)N * T * D * 4);
    for (size_t i = 0; i < N * px; i++)
        pix[i] = 1.5f * t_randf();
    CHECK(clip_encode_image_ex(&c, pix, N, &m.vision, hook, resid, full, err) == PS_OK);
    CHECK(clip_image_from_layer(&c, resid, N, hook, &m.vision, emb, err) == PS_OK);
    CHECK_REL(emb, full, (size_t)N * E, 1e-6);
    ref_rest(&c, &m.vision, resid, N, hook + 1, remb);
    CHECK_REL(remb, full, (size_t)N * E, 1e-5);
    int32_t cl[] = { 0, 1 }, lt[] = { 3, 4 };
    int64_t ct[] = { 5, 6 };
    EvalRank r;
    CHECK(eval_rank_build(&r, C, S, S, 2, cl, lt, ct, err) == PS_OK);
    float text[2 * 64];
    for (int i = 0; i < C * E; i++)
        text[i] = t_randf();
    EvalConfig cfg;
    eval_config_init(&cfg, S);
    cfg.batch = N;
    Eval ev;
    CHECK(eval_init(&ev, &cfg, &c, &m.vision, &s, hook, &r, text, C, err) == PS_OK);
    CHECK_EQ_INT(ev.n_tok, T);
    SaeSparse sp = { 0 };
    SaeWork w;
    CHECK(sae_work_init(&w, &s, err) == PS_OK);
    CHECK(sae_encode_sparse(&s, resid, N * T, &sp, &w, err) == PS_OK);
    uint8_t keep[64];
    for (int k = 0; k < 2; k++) {
        eval_mask(r.order, k ? 1 : S, S, 1, keep);
        CHECK(eval_forward_masked(&ev, resid, N, keep, emb, err) == PS_OK);
        sae_decode_masked(&s, &sp, keep, SAE_PATCH_BIAS, xm);
        ref_rest(&c, &m.vision, xm, N, hook + 1, remb);
        CHECK_REL(emb, remb, (size_t)N * E, 1e-5);
    }
    CHECK(eval_batch(&ev, 1, pix, N, err) == PS_OK);
    CHECK_EQ_INT(eval_count(&ev, -1), N);
    eval_free(&ev);
    eval_rank_free(&r);
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&s);
    free(pix);
    free(resid);
    free(full);
    free(emb);
    free(remb);
    free(xm);
    maple_free(&m);
    clip_close(&c);
}

void
test_eval(void)
{
    check_ks();
    check_rank();
    check_model();
    check_maple();
}
