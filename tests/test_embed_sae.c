/* SPDX-License-Identifier: MIT */
/*
 * test_embed_sae.c - `patchsae embed --sae` against PyTorch: the SAE of
 * tests/data/sae_embed (written by tools/gen_sae_embed_fixture.py for the tiny
 * CLIP, d_in 32, d_sae 64) on the six fixture images. sae_acts and sae_recon
 * must match PyTorch's (computed from the reference resid) to 1e-4 relative;
 * the same weights as a SAELens folder, its sae_weights.safetensors alone and
 * the project's own format must give bit-identical outputs; the SAE's hook
 * layer must become the default --layer; MaPLe's prompt tokens are encoded
 * too; a d_in that is not the model's width is refused with nothing written.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "ps.h"
#include "sae.h"
#include "st.h"
#include "test.h"

#define N_IMG 6
#define T 17
#define D 32
#define S 64

static char imgs[N_IMG][512];

static const float *
get(StFile *f, const char *name, size_t n)
{
    const StTensor *t = st_find(f, name);
    const float *p = NULL;
    if (!t || t->nbytes != 4 * n || st_get_f32(f, name, 0, NULL, &p, NULL) != PS_OK) {
        CHECK_MSG(0, "%s: tensor %s missing or of the wrong size", st_path(f), name);
        return NULL;
    }
    return p;
}

static void
rel(const char *what, const float *a, const float *b, size_t n, double tol)
{
    if (a && b)
        CHECK_MSG(t_relerr(a, b, n) <= tol, "%s: relative error %.3g > %g", what,
                  t_relerr(a, b, n), tol);
}

/* Runs embed with model, sae and extra options (NULL-terminated) on the six images into out. */
static int
embed(const char *model, const char *sae, const char *out, const char *const *extra)
{
    char *argv[32];
    int n = 0;
    argv[n++] = "embed";
    argv[n++] = "--model";
    argv[n++] = (char *)model;
    argv[n++] = "--sae";
    argv[n++] = (char *)sae;
    argv[n++] = "--quiet";
    argv[n++] = "-o";
    argv[n++] = (char *)out;
    for (; extra && *extra; extra++)
        argv[n++] = (char *)*extra;
    for (int i = 0; i < N_IMG; i++)
        argv[n++] = imgs[i];
    argv[n] = NULL;
    return cmd_embed(n, argv);
}

/* Tensor name of file a equals file b's byte for byte. */
static void
same(const char *a, const char *b, const char *name)
{
    StFile *fa, *fb;
    if (st_open(&fa, a, NULL) != PS_OK || st_open(&fb, b, NULL) != PS_OK) {
        CHECK_MSG(0, "cannot open %s or %s", a, b);
        return;
    }
    const StTensor *x = st_find(fa, name), *y = st_find(fb, name);
    CHECK_MSG(x && y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes),
              "%s differs between %s and %s", name, a, b);
    st_close(fa);
    st_close(fb);
}

/* The SAE alone on PyTorch's resid: isolates the SAE numerics from CLIP's. */
static void
test_direct(StFile *ref, StFile *clip_ref)
{
    Sae s;
    SaeWork w;
    SaeSparse sp = { 0 };
    char err[PS_ERRLEN];
    if (sae_load(&s, t_data("sae_embed/patchsae.pt"), err) != PS_OK) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    CHECK_EQ_INT(s.d_in, D);
    CHECK_EQ_INT(s.d_sae, S);
    CHECK_EQ_INT(sae_layer(&s, 4), 2);
    PS_ASSERT(sae_work_init(&w, &s, NULL) == PS_OK);
    const float *x = get(clip_ref, "resid", N_IMG * T * D);
    static float f[N_IMG * T * S], xhat[N_IMG * T * D];
    if (x) {
        sae_encode_dense(&s, x, N_IMG * T, f, &w);
        rel("direct sae_acts", f, get(ref, "sae_acts", N_IMG * T * S), N_IMG * T * S, 1e-5);
        CHECK_EQ_INT(sae_encode_sparse(&s, x, N_IMG * T, &sp, &w, err), PS_OK);
        sae_decode_sparse(&s, &sp, xhat);
        rel("direct sae_recon", xhat, get(ref, "sae_recon", N_IMG * T * D), N_IMG * T * D, 1e-5);
    }
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&s);
}

void
test_embed_sae(void)
{
    static const char *const names[N_IMG] = { "img_land.png", "img_port.png", "img_square.png",
                                              "img_gray.png", "img_rgba.png", "img_big.png" };
    for (int i = 0; i < N_IMG; i++) {
        char r[64];
        snprintf(r, sizeof r, "clip_tiny/%s", names[i]);
        snprintf(imgs[i], sizeof imgs[i], "%s", t_data(r));
    }
    char model[512], openai[512], ckpt[512], pt[512], pt0[512], lens[512], lensw[512];
    char own[512], out[512], out2[512];
    snprintf(model, sizeof model, "%s", t_data("clip_tiny/hf"));
    snprintf(openai, sizeof openai, "%s", t_data("clip_tiny/openai.safetensors"));
    snprintf(ckpt, sizeof ckpt, "%s", t_data("clip_tiny/maple/model.pth.tar-5"));
    snprintf(pt, sizeof pt, "%s", t_data("sae_embed/patchsae.pt"));
    snprintf(pt0, sizeof pt0, "%s", t_data("sae_embed/layer0.pt"));
    snprintf(lens, sizeof lens, "%s", t_data("sae_embed/saelens"));
    snprintf(lensw, sizeof lensw, "%s", t_data("sae_embed/saelens/sae_weights.safetensors"));
    snprintf(own, sizeof own, "%s", t_tmp("own_sae.safetensors"));
    snprintf(out, sizeof out, "%s", t_tmp("sae.safetensors"));
    snprintf(out2, sizeof out2, "%s", t_tmp("sae2.safetensors"));

    StFile *ref, *clip_ref, *maple_ref, *got;
    PS_ASSERT(st_open(&ref, t_data("sae_embed/ref.safetensors"), NULL) == PS_OK);
    PS_ASSERT(st_open(&clip_ref, t_data("clip_tiny/ref.safetensors"), NULL) == PS_OK);
    PS_ASSERT(st_open(&maple_ref, t_data("clip_tiny/ref_maple.safetensors"), NULL) == PS_OK);
    test_direct(ref, clip_ref);

    /* PatchSAE .pt: block_layer -2 = block 2 of 4, the default anyway */
    CHECK_EQ_INT(embed(model, pt, out, NULL), 0);
    if (st_open(&got, out, NULL) == PS_OK) {
        rel("resid", get(got, "resid", N_IMG * T * D), get(clip_ref, "resid", N_IMG * T * D),
            N_IMG * T * D, 1e-4);
        rel("sae_acts", get(got, "sae_acts", N_IMG * T * S), get(ref, "sae_acts", N_IMG * T * S),
            N_IMG * T * S, 1e-4);
        rel("sae_recon", get(got, "sae_recon", N_IMG * T * D),
            get(ref, "sae_recon", N_IMG * T * D), N_IMG * T * D, 1e-4);
        CHECK_STR(st_meta(got, "layer"), "2");
        CHECK_STR(st_meta(got, "d_sae"), "64");
        CHECK(st_meta(got, "sae") && strstr(st_meta(got, "sae"), "patchsae.pt"));
        st_close(got);
    } else {
        CHECK_MSG(0, "embed --sae wrote no %s", out);
    }

    /* the same weights in the other layouts: identical outputs */
    CHECK_EQ_INT(embed(model, lens, out2, NULL), 0);
    same(out, out2, "sae_acts");
    same(out, out2, "sae_recon");
    CHECK_EQ_INT(embed(model, lensw, out2, NULL), 0);
    same(out, out2, "sae_acts");
    same(out, out2, "sae_recon");
    Sae s;
    char err[PS_ERRLEN];
    if (sae_load(&s, pt, err) == PS_OK) {
        CHECK_EQ_INT(sae_save(&s, own, err), PS_OK);
        sae_free(&s);
        CHECK_EQ_INT(embed(model, own, out2, NULL), 0);
        same(out, out2, "sae_acts");
        same(out, out2, "sae_recon");
        const char *const l2[] = { "--layer", "2", NULL };
        CHECK_EQ_INT(embed(openai, own, out2, l2), 0); /* the OpenAI layout of the same CLIP */
        if (st_open(&got, out2, NULL) == PS_OK) {
            rel("sae_acts (openai layout)", get(got, "sae_acts", N_IMG * T * S),
                get(ref, "sae_acts", N_IMG * T * S), N_IMG * T * S, 1e-4);
            st_close(got);
        }
    } else {
        CHECK_MSG(0, "%s", err);
    }

    /* the SAE's hook layer is the default --layer; an explicit one wins */
    CHECK_EQ_INT(embed(model, pt0, out2, NULL), 0);
    if (st_open(&got, out2, NULL) == PS_OK) {
        CHECK_STR(st_meta(got, "layer"), "0");
        rel("resid layer 0", get(got, "resid", N_IMG * T * D),
            get(clip_ref, "resid_layer0", N_IMG * T * D), N_IMG * T * D, 1e-4);
        rel("sae_acts layer 0", get(got, "sae_acts", N_IMG * T * S),
            get(ref, "sae_acts_layer0", N_IMG * T * S), N_IMG * T * S, 1e-4);
        rel("sae_recon layer 0", get(got, "sae_recon", N_IMG * T * D),
            get(ref, "sae_recon_layer0", N_IMG * T * D), N_IMG * T * D, 1e-4);
        st_close(got);
    }
    const char *const l3[] = { "--layer", "3", NULL };
    CHECK_EQ_INT(embed(model, pt0, out2, l3), 0);
    if (st_open(&got, out2, NULL) == PS_OK) {
        CHECK_STR(st_meta(got, "layer"), "3");
        rel("resid layer 3", get(got, "resid", N_IMG * T * D),
            get(clip_ref, "resid_layer3", N_IMG * T * D), N_IMG * T * D, 1e-4);
        st_close(got);
    }

    /* MaPLe: T + n_ctx = 19 tokens, the prompt tokens encoded too */
    const char *const mp[] = { "--maple", ckpt, NULL };
    CHECK_EQ_INT(embed(openai, pt, out2, mp), 0);
    if (st_open(&got, out2, NULL) == PS_OK) {
        rel("maple resid", get(got, "resid", N_IMG * 19 * D),
            get(maple_ref, "resid", N_IMG * 19 * D), N_IMG * 19 * D, 1e-4);
        rel("maple sae_acts", get(got, "sae_acts", N_IMG * 19 * S),
            get(ref, "sae_acts_maple", N_IMG * 19 * S), N_IMG * 19 * S, 1e-4);
        rel("maple sae_recon", get(got, "sae_recon", N_IMG * 19 * D),
            get(ref, "sae_recon_maple", N_IMG * 19 * D), N_IMG * 19 * D, 1e-4);
        st_close(got);
    }

    /* d_in 16 against width 32: refused before any work, nothing written */
    char bad[512];
    snprintf(bad, sizeof bad, "%s", t_data("sae_patchsae.pt"));
    unlink(out2);
    CHECK_EQ_INT(embed(model, bad, out2, NULL), 2);
    CHECK(access(out2, F_OK) != 0);
    CHECK_EQ_INT(embed(model, t_data("sae_embed/none.pt"), out2, NULL), 2);
    CHECK_EQ_INT(embed(model, t_data("evil_os_system.pt"), out2, NULL), 2);
    CHECK(access(out2, F_OK) != 0);

    st_close(ref);
    st_close(clip_ref);
    st_close(maple_ref);
}
