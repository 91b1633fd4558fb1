/* SPDX-License-Identifier: MIT */
/*
 * test_sae.c - the SAE: encode/decode against plain loops on random SAEs
 * (several block boundaries), CSR invariants, sparse == dense bit for bit,
 * masked decoding; loading the PatchSAE .pt (cfg/config, zip/legacy), a
 * SAELens folder, the project's own format round trip, with exact weights;
 * outputs against PyTorch's (sae_ref.f32); refusals of misshapen files.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"
#include "sae.h"
#include "st.h"
#include "test.h"

static void
random_sae(Sae *s, int D, int S)
{
    char err[PS_ERRLEN];
    CHECK(sae_init(s, D, S, err) == PS_OK);
    for (int i = 0; i < D * S; i++) {
        s->W_enc[i] = t_randf() * 0.5f;
        s->W_dec[i] = t_randf() * 0.5f;
    }
    for (int i = 0; i < S; i++)
        s->b_enc[i] = t_randf() * 0.3f - 0.1f;
    for (int i = 0; i < D; i++)
        s->b_dec[i] = t_randf() * 0.2f;
}

/* f = ReLU((x - b_dec) W_enc + b_enc) in double, plain loops. */
static void
ref_encode(const Sae *s, const float *x, int n, float *f)
{
    int D = s->d_in, S = s->d_sae;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < S; j++) {
            double acc = s->b_enc[j];
            for (int d = 0; d < D; d++)
                acc += ((double)x[t * D + d] - (s->apply_b_dec_to_input ? s->b_dec[d] : 0)) *
                       s->W_enc[d * S + j];
            f[(size_t)t * S + j] = acc > 0 ? (float)acc : 0.0f;
        }
}

static void
ref_decode(const Sae *s, const float *f, const uint8_t *keep, float c, int n, float *y)
{
    int D = s->d_in, S = s->d_sae;
    for (int t = 0; t < n; t++)
        for (int d = 0; d < D; d++) {
            double acc = 0;
            for (int j = 0; j < S; j++)
                if (!keep || keep[j])
                    acc += (double)f[(size_t)t * S + j] * s->W_dec[j * D + d];
            y[t * D + d] = (float)(acc + s->b_dec[d] + c);
        }
}

static void
check_csr(const SaeSparse *sp, int S)
{
    int bad = 0;
    CHECK_EQ_INT(sp->rowptr[0], 0);
    for (int t = 0; t < sp->n_tok; t++) {
        if (sp->rowptr[t + 1] < sp->rowptr[t])
            bad++;
        for (int64_t k = sp->rowptr[t]; k < sp->rowptr[t + 1]; k++) {
            if (sp->idx[k] < 0 || sp->idx[k] >= S || !(sp->val[k] > 0))
                bad++;
            if (k > sp->rowptr[t] && sp->idx[k] <= sp->idx[k - 1])
                bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void
sparse_to_dense(const SaeSparse *sp, int S, float *f)
{
    memset(f, 0, (size_t)sp->n_tok * S * sizeof *f);
    for (int t = 0; t < sp->n_tok; t++)
        for (int64_t k = sp->rowptr[t]; k < sp->rowptr[t + 1]; k++)
            f[(size_t)t * S + sp->idx[k]] = sp->val[k];
}

static void
test_kernels_shape(int D, int S, int n)
{
    Sae s;
    SaeWork w;
    SaeSparse sp = {0};
    char err[PS_ERRLEN];
    random_sae(&s, D, S);
    CHECK(sae_work_init(&w, &s, err) == PS_OK);
    float *x = malloc(sizeof(float) * (size_t)n * D + 1), *f = malloc(sizeof(float) * (size_t)n * S + 1);
    float *fr = malloc(sizeof(float) * (size_t)n * S + 1), *fd = malloc(sizeof(float) * (size_t)n * S + 1);
    float *y = malloc(sizeof(float) * (size_t)n * D + 1), *yr = malloc(sizeof(float) * (size_t)n * D + 1);
    float *y2 = malloc(sizeof(float) * (size_t)n * D + 1);
    uint8_t *keep = malloc((size_t)S), *all = malloc((size_t)S), *none = calloc((size_t)S, 1);
    for (int i = 0; i < n * D; i++)
        x[i] = t_randf();
    for (int j = 0; j < S; j++) {
        keep[j] = (t_rand() & 3) != 0;
        all[j] = 1;
    }

    ref_encode(&s, x, n, fr);
    CHECK(sae_encode_sparse(&s, x, n, &sp, &w, err) == PS_OK);
    CHECK_EQ_INT(sp.n_tok, n);
    check_csr(&sp, S);
    sparse_to_dense(&sp, S, f);
    CHECK_REL(f, fr, (size_t)n * S, 1e-5);
    sae_encode_dense(&s, x, n, fd, &w);
    CHECK_MSG(!memcmp(f, fd, (size_t)n * S * sizeof *f), "sparse != dense (D %d, S %d, n %d)", D,
              S, n);
    int64_t nnz = sae_sparse_nnz(&sp);
    CHECK_MSG(nnz > (int64_t)n * S / 10 && nnz < (int64_t)n * S, "nnz %lld of %lld", (long long)nnz,
              (long long)n * S);

    ref_decode(&s, fr, NULL, 0, n, yr);
    sae_decode_sparse(&s, &sp, y);
    CHECK_REL(y, yr, (size_t)n * D, 1e-5);
    sae_decode_dense(&s, fd, n, y2);
    CHECK_REL(y2, yr, (size_t)n * D, 1e-5);
    sae_decode_masked(&s, &sp, all, 0.0f, y2);
    CHECK_MSG(!memcmp(y, y2, (size_t)n * D * sizeof *y), "all-keep mask differs from plain decode");
    sae_decode_masked(&s, &sp, none, SAE_PATCH_BIAS, y2);
    int bad = 0;
    for (int t = 0; t < n; t++)
        for (int d = 0; d < D; d++)
            bad += y2[t * D + d] != s.b_dec[d] + SAE_PATCH_BIAS;
    CHECK_EQ_INT(bad, 0);
    ref_decode(&s, fr, keep, 0.25f, n, yr);
    sae_decode_masked(&s, &sp, keep, 0.25f, y2);
    CHECK_REL(y2, yr, (size_t)n * D, 1e-5);

    /* reuse: a smaller call after a larger one (OpenBLAS rounds differently for
     * another M, so not bit for bit), then an empty one */
    CHECK(sae_encode_sparse(&s, x, 3, &sp, &w, err) == PS_OK && sp.n_tok == 3);
    check_csr(&sp, S);
    sparse_to_dense(&sp, S, f);
    CHECK_REL(f, fd, 3 * (size_t)S, 1e-5);
    CHECK(sae_encode_sparse(&s, x, 0, &sp, &w, err) == PS_OK && sae_sparse_nnz(&sp) == 0);

    /* SAELens SAEs that do not subtract b_dec from the input */
    s.apply_b_dec_to_input = 0;
    ref_encode(&s, x, n, fr);
    sae_encode_dense(&s, x, n, fd, &w);
    CHECK_REL(fd, fr, (size_t)n * S, 1e-5);

    free(x), free(f), free(fr), free(fd), free(y), free(yr), free(y2);
    free(keep), free(all), free(none);
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&s);
}

static void
test_kernels(void)
{
    t_seed(17);
    test_kernels_shape(8, 32, 5);
    test_kernels_shape(24, 100, 300);  /* crosses one block boundary */
    test_kernels_shape(33, 257, 600);  /* odd sizes, three blocks */
    test_kernels_shape(16, 64, 256);   /* exactly one block */
}

/* ---- files ---- */

static float *
read_f32(const char *name, size_t want)
{
    char *buf, err[PS_ERRLEN];
    size_t n;
    if (ps_read_file(t_data(name), 1 << 22, &buf, &n, err) != PS_OK || n != want * 4) {
        CHECK_MSG(0, "%s: %s (%zu bytes)", name, err, n);
        return NULL;
    }
    return (float *)(void *)buf;
}

enum { D = 16, S = 64, T = 5 };

static void
check_weights(const Sae *s, const char *what)
{
    float *ref = read_f32("sae_weights.f32", 2 * D * S + S + D);
    if (!ref)
        return;
    CHECK_MSG(s->d_in == D && s->d_sae == S, "%s: shape %d x %d", what, s->d_in, s->d_sae);
    if (s->d_in == D && s->d_sae == S) {
        CHECK_MSG(!memcmp(s->W_enc, ref, D * S * 4), "%s: W_enc", what);
        CHECK_MSG(!memcmp(s->b_enc, ref + D * S, S * 4), "%s: b_enc", what);
        CHECK_MSG(!memcmp(s->W_dec, ref + D * S + S, S * D * 4), "%s: W_dec", what);
        CHECK_MSG(!memcmp(s->b_dec, ref + 2 * D * S + S, D * 4), "%s: b_dec", what);
    }
    free(ref);
}

/* Our outputs against PyTorch's: x, f, xhat, masked xhat (keep = s % 3 != 0, +0.10513). */
static void
check_against_torch(const Sae *s, const char *what)
{
    float *ref = read_f32("sae_ref.f32", T * D + T * S + 2 * T * D);
    if (!ref || s->d_in != D || s->d_sae != S) {
        free(ref);
        return;
    }
    const float *x = ref, *f = x + T * D, *xhat = f + T * S, *xmask = xhat + T * D;
    SaeWork w;
    SaeSparse sp = {0};
    float fd[T * S], y[T * D];
    uint8_t keep[S];
    for (int j = 0; j < S; j++)
        keep[j] = j % 3 != 0;
    char err[PS_ERRLEN];
    CHECK(sae_work_init(&w, s, err) == PS_OK);
    CHECK(sae_encode_sparse(s, x, T, &sp, &w, err) == PS_OK);
    sparse_to_dense(&sp, S, fd);
    CHECK_MSG(t_relerr(fd, f, T * S) <= 1e-4, "%s: f rel err %g", what, t_relerr(fd, f, T * S));
    sae_decode_sparse(s, &sp, y);
    CHECK_MSG(t_relerr(y, xhat, T * D) <= 1e-4, "%s: xhat rel err %g", what, t_relerr(y, xhat, T * D));
    sae_decode_masked(s, &sp, keep, SAE_PATCH_BIAS, y);
    CHECK_MSG(t_relerr(y, xmask, T * D) <= 1e-4, "%s: masked rel err %g", what,
              t_relerr(y, xmask, T * D));
    sae_sparse_free(&sp);
    sae_work_free(&w);
    free(ref);
}

static void
test_patchsae(void)
{
    static const char *const files[] = {"sae_patchsae.pt", "sae_patchsae_config.pt",
                                        "sae_patchsae_legacy.pt"};
    for (size_t i = 0; i < LEN(files); i++) {
        Sae s;
        char err[PS_ERRLEN] = "";
        int rc = sae_load(&s, t_data(files[i]), err);
        CHECK_MSG(rc == PS_OK, "%s: %s", files[i], err);
        if (rc)
            continue;
        check_weights(&s, files[i]);
        CHECK_EQ_INT(s.hook_layer, -2);
        CHECK_EQ_INT(sae_layer(&s, 12), 10);
        CHECK_EQ_INT(sae_layer(&s, 1), -1);
        CHECK_STR(s.model_name, "openai/clip-vit-base-patch16");
        CHECK_STR(s.hook_name, "resid");
        CHECK_EQ_INT(s.apply_b_dec_to_input, 1);
        check_against_torch(&s, files[i]);
        sae_free(&s);
        sae_free(&s); /* a second free is a no-op */
    }
}

static void
test_saelens(void)
{
    const char *paths[] = {t_data("saelens"), NULL};
    char file[512];
    snprintf(file, sizeof file, "%s", t_data("saelens/sae_weights.safetensors"));
    paths[1] = file;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", paths[0]);
    paths[0] = dir;
    for (int i = 0; i < 2; i++) {
        Sae s;
        char err[PS_ERRLEN] = "";
        int rc = sae_load(&s, paths[i], err);
        CHECK_MSG(rc == PS_OK, "%s: %s", paths[i], err);
        if (rc)
            continue;
        check_weights(&s, paths[i]);
        CHECK_EQ_INT(s.hook_layer, 9);
        CHECK_STR(s.hook_name, "blocks.9.hook_resid_post");
        CHECK_STR(s.model_name, "tiny-clip");
        check_against_torch(&s, paths[i]);
        sae_free(&s);
    }

    /* cfg.json variants next to a copy of the weights */
    char *w;
    size_t n;
    char err[PS_ERRLEN];
    CHECK(ps_read_file(file, 1 << 20, &w, &n, err) == PS_OK);
    static const struct {
        const char *json;
        int rc, layer;
    } cfgs[] = {
        {"{\"d_in\": 16, \"d_sae\": 64, \"hook_name\": \"blocks.4.hook_resid_post\"}", PS_OK, 4},
        {"{\"metadata\": {\"hook_name\": \"blocks.7.hook_resid_post\"}}", PS_OK, 7},
        {"{\"hook_name\": \"hook_embed\"}", PS_OK, SAE_NO_LAYER},
        {"{\"architecture\": \"jumprelu\"}", PS_EFORMAT, 0},
        {"{\"activation_fn_str\": \"topk\"}", PS_EFORMAT, 0},
        {"{\"normalize_activations\": \"expected_average_only_in\"}", PS_EFORMAT, 0},
        {"{\"d_in\": 768}", PS_ESHAPE, 0},
        {"{\"d_in\": 16", PS_EFORMAT, 0},
        {"{\"apply_b_dec_to_input\": false}", PS_OK, SAE_NO_LAYER},
    };
    for (size_t i = 0; i < LEN(cfgs); i++) {
        char d[64];
        snprintf(d, sizeof d, "saelens%zu", i);
        char sub[600], cmd[700];
        snprintf(sub, sizeof sub, "%s", t_tmp(d));
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", sub);
        CHECK(system(cmd) == 0);
        char p[700];
        snprintf(p, sizeof p, "%s/sae_weights.safetensors", sub);
        CHECK(t_write_file(p, w, n) == 0);
        snprintf(p, sizeof p, "%s/cfg.json", sub);
        CHECK(t_write_file(p, cfgs[i].json, strlen(cfgs[i].json)) == 0);
        Sae s;
        err[0] = 0;
        int rc = sae_load(&s, sub, err);
        CHECK_MSG(rc == cfgs[i].rc, "%s: got %s (%s)", cfgs[i].json, ps_strcode(rc), err);
        if (rc == PS_OK) {
            CHECK_EQ_INT(s.hook_layer, cfgs[i].layer);
            CHECK_EQ_INT(s.apply_b_dec_to_input, i != 8);
        } else {
            CHECK(strstr(err, "cfg.json") != NULL);
            CHECK(s.W_enc == NULL && s.mem == NULL);
        }
        sae_free(&s);
    }
    free(w);
}

static void
test_own_format(void)
{
    Sae s, r;
    char err[PS_ERRLEN] = "";
    CHECK(sae_load(&s, t_data("sae_patchsae.pt"), err) == PS_OK);
    free(s.model_name);
    s.model_name = xstrdup("tiny");
    s.recipe = xstrdup("{\"lr\": 0.0004, \"l1\": 8e-05}");
    const char *out = t_tmp("own_sae.safetensors");
    CHECK_MSG(sae_save(&s, out, err) == PS_OK, "%s", err);
    int rc = sae_load(&r, out, err);
    CHECK_MSG(rc == PS_OK, "%s", err);
    if (rc == PS_OK) {
        check_weights(&r, "own format");
        CHECK_EQ_INT(r.hook_layer, -2);
        CHECK_STR(r.model_name, "tiny");
        CHECK_STR(r.hook_name, "resid");
        CHECK_STR(r.recipe, "{\"lr\": 0.0004, \"l1\": 8e-05}");
        check_against_torch(&r, "own format");
        sae_free(&r);
    }
    StFile *f;
    if (st_open(&f, out, err) == PS_OK) {
        CHECK_STR(st_meta(f, "patchsae.format"), "sae");
        CHECK_STR(st_meta(f, "d_sae"), "64");
        st_close(f);
    }
    sae_free(&s);

    /* misshapen and inconsistent own-format files */
    static const struct {
        int64_t we[2], wd[2];
        const char *din, *layer;
        int rc;
        const char *needle;
    } bad[] = {
        {{16, 64}, {16, 64}, "16", "3", PS_ESHAPE, "W_dec"},
        {{16, 64}, {64, 16}, "17", "3", PS_ESHAPE, "d_in 17"},
        {{16, 64}, {64, 16}, "16", "three", PS_EFORMAT, "metadata"},
    };
    static float zeros[64 * 16 * 2];
    for (size_t i = 0; i < LEN(bad); i++) {
        StWriter *w = st_writer_new();
        int64_t be[1] = {64}, bd[1] = {16};
        st_writer_add(w, "W_enc", ST_F32, 2, bad[i].we, zeros);
        st_writer_add(w, "b_enc", ST_F32, 1, be, zeros);
        st_writer_add(w, "W_dec", ST_F32, 2, bad[i].wd, zeros);
        st_writer_add(w, "b_dec", ST_F32, 1, bd, zeros);
        st_writer_meta(w, "patchsae.format", "sae");
        st_writer_meta(w, "d_in", bad[i].din);
        st_writer_meta(w, "hook_layer", bad[i].layer);
        const char *p = t_tmp("bad_sae.safetensors");
        CHECK(st_writer_save(w, p, err) == PS_OK);
        st_writer_free(w);
        rc = sae_load(&r, p, err);
        CHECK_MSG(rc == bad[i].rc && strstr(err, bad[i].needle), "case %zu: %s (%s)", i,
                  ps_strcode(rc), err);
        sae_free(&r);
    }
    /* files that are not SAEs at all */
    rc = sae_load(&r, t_data("dassl.pt"), err);
    CHECK_MSG(rc == PS_ESHAPE && strstr(err, "W_enc"), "%s", err);
    rc = sae_load(&r, t_data("pt_mixed.pt"), err);
    CHECK(rc == PS_ESHAPE);
    rc = sae_load(&r, t_data("evil_os_system.pt"), err);
    CHECK(rc == PS_EREFUSED);
    rc = sae_load(&r, t_data("no_such_sae.pt"), err);
    CHECK(rc == PS_EIO && strstr(err, "no_such_sae.pt"));
    rc = sae_load(&r, t_data("clip_tiny/openai.safetensors"), err);
    CHECK_MSG(rc == PS_ESHAPE && strstr(err, "W_enc missing"), "%s", err);
    sae_free(&r);
}

void
test_sae(void)
{
    test_kernels();
    test_patchsae();
    test_saelens();
    test_own_format();
}
