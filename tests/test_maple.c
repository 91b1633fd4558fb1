/* SPDX-License-Identifier: MIT */
/*
 * test_maple.c - MaPLe against the PyTorch fixture (tests/data/clip_tiny:
 * tiny CLIP, maple/model.pth.tar-5 and ref_maple.safetensors from
 * tools/refclip.py): visual prompts, the adapted residual stream after
 * blocks 0, 2 and 3, image embeddings, restart from a layer, class token ids
 * (exact), text embeddings and logits; `patchsae embed --maple` end to end;
 * checkpoints from tools/gen_maple_bad_fixtures.py (loadable variants give
 * the same prompts, damaged ones a message naming the tensor); `info`.
 * The tiny model uses OpenAI's vocabulary from the shared data directory
 * ($PS_SHARED_DATA or /work/shared/data); without it the suite is skipped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "cmd.h"
#include "maple.h"
#include "ps.h"
#include "pt.h"
#include "st.h"
#include "test.h"

#define N_IMG 6
#define N_CLS 4

static const char *
shared_bpe(void)
{
    return t_shared("bpe_simple_vocab_16e6.txt.gz");
}

static const float *
ref_f32(StFile *f, const char *name, size_t n)
{
    const StTensor *t = st_find(f, name);
    const float *p = NULL;
    if (!t || t->nbytes != 4 * n || st_get_f32(f, name, 0, NULL, &p, NULL) != PS_OK) {
        CHECK_MSG(0, "%s: %s missing or of the wrong size", st_path(f), name);
        return NULL;
    }
    return p;
}

static void
rel(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    if (!ref)
        return;
    double r = t_relerr(got, ref, n);
    CHECK_MSG(r <= tol, "%s: relative error %.3g > %g", what, r, tol);
}

static const char *const class_names[N_CLS] = { "cat", "golden_retriever", "sea lion", "café" };

/* The learned tensors of m equal those of the fixture checkpoint (exactly: same stored values). */
static int
same_prompts(const Maple *a, const Maple *b)
{
    size_t nt = (size_t)a->n_ctx * a->d_text, nv = (size_t)a->n_ctx * a->d_vis;
    size_t nd = (size_t)(a->depth - 1);
    return a->n_ctx == b->n_ctx && a->depth == b->depth && a->d_text == b->d_text &&
           a->d_vis == b->d_vis && !memcmp(a->ctx, b->ctx, nt * 4) &&
           !memcmp(a->vis_first, b->vis_first, nv * 4) &&
           !memcmp(a->text_deep, b->text_deep, nd * nt * 4) &&
           !memcmp(a->vis_deep, b->vis_deep, nd * nv * 4);
}

static void
test_forward(Clip *c, StFile *ref)
{
    Maple m;
    char err[PS_ERRLEN] = "";
    int rc = maple_load(&m, t_data("clip_tiny/maple/model.pth.tar-5"), c, err);
    CHECK_MSG(rc == PS_OK, "maple_load: %s", err);
    if (rc)
        return;
    CHECK_EQ_INT(m.n_ctx, 2);
    CHECK_EQ_INT(m.depth, 3);
    CHECK_EQ_INT(m.d_text, 16);
    CHECK_EQ_INT(m.d_vis, 32);
    CHECK_EQ_INT(m.epoch, 5);
    CHECK(m.vision.deep && !m.vision.deep[0] && m.vision.deep[1] && m.vision.deep[2] &&
          !m.vision.deep[3]);
    CHECK(m.text.deep && !m.text.deep[0] && m.text.deep[2] && !m.text.deep[3]);
    rel("visual_prompt", m.vis_first, ref_f32(ref, "visual_prompt", 2 * 32), 2 * 32, 1e-6);
    rel("visual_deep_prompts", m.vis_deep, ref_f32(ref, "visual_deep_prompts", 2 * 2 * 32),
        2 * 2 * 32, 1e-6);

    const int T = 19, D = 32, E = 24;
    const float *px = ref_f32(ref, "pixel_values", (size_t)N_IMG * 3 * 32 * 32);
    float *resid = xmalloc((size_t)N_IMG * T * D * sizeof *resid);
    float *emb = xmalloc((size_t)N_IMG * E * sizeof *emb);
    static const struct { int layer; const char *name; } hooks[] = {
        { 0, "resid_layer0" }, { 2, "resid" }, { 3, "resid_layer3" } };
    for (size_t h = 0; px && h < LEN(hooks); h++) {
        rc = maple_encode_image(&m, c, px, N_IMG, hooks[h].layer, resid, emb, err);
        CHECK_MSG(rc == PS_OK, "maple_encode_image: %s", err);
        rel(hooks[h].name, resid, ref_f32(ref, hooks[h].name, (size_t)N_IMG * T * D),
            (size_t)N_IMG * T * D, 1e-4);
        rel("image_embeds", emb, ref_f32(ref, "image_embeds", (size_t)N_IMG * E),
            (size_t)N_IMG * E, 1e-4);
    }
    /* the prompt tokens really are there: the plain forward differs */
    float *plain = xmalloc((size_t)N_IMG * E * sizeof *plain);
    if (px && clip_encode_image(c, px, N_IMG, -1, NULL, plain, err) == PS_OK)
        CHECK(t_relerr(plain, emb, (size_t)N_IMG * E) > 1e-2);
    free(plain);
    /* restart from the reference's layer-2 stream */
    const float *r2 = ref_f32(ref, "resid", (size_t)N_IMG * T * D);
    if (r2) {
        memset(emb, 0, (size_t)N_IMG * E * sizeof *emb);
        CHECK_EQ_INT(maple_image_from_layer(&m, c, r2, N_IMG, 2, emb, err), PS_OK);
        rel("image_embeds from layer 2", emb, ref_f32(ref, "image_embeds", (size_t)N_IMG * E),
            (size_t)N_IMG * E, 1e-4);
    }

    /* text: ids exactly, embeddings, logits */
    int ctx = c->cfg.ctx;
    int32_t *ids = xmalloc((size_t)N_CLS * ctx * sizeof *ids);
    float *te = xmalloc((size_t)N_CLS * E * sizeof *te), lg[N_IMG * N_CLS];
    rc = maple_encode_classes(&m, c, class_names, N_CLS, ids, te, err);
    CHECK_MSG(rc == PS_OK, "maple_encode_classes: %s", err);
    const StTensor *ri = st_find(ref, "input_ids");
    int same = ri && ri->dtype == ST_I64 && ri->nbytes == (size_t)N_CLS * ctx * 8;
    for (int i = 0; same && i < N_CLS * ctx; i++) {
        int64_t v;
        memcpy(&v, (const char *)ri->data + 8 * (size_t)i, 8);
        same = v == ids[i];
    }
    CHECK_MSG(same, "MaPLe class prompt token ids differ from the reference");
    rel("text_embeds", te, ref_f32(ref, "text_embeds", (size_t)N_CLS * E), (size_t)N_CLS * E,
        1e-4);
    clip_logits(c, ref_f32(ref, "image_embeds", (size_t)N_IMG * E), N_IMG, te, N_CLS, lg);
    rel("logits", lg, ref_f32(ref, "logits", (size_t)N_IMG * N_CLS), (size_t)N_IMG * N_CLS,
        1e-4);
    /* pre-tokenized path and ids = NULL give the same */
    float *te2 = xmalloc((size_t)N_CLS * E * sizeof *te2);
    CHECK_EQ_INT(maple_encode_text(&m, c, ids, N_CLS, te2, err), PS_OK);
    CHECK(!memcmp(te, te2, (size_t)N_CLS * E * sizeof *te));
    CHECK_EQ_INT(maple_encode_classes(&m, c, class_names, N_CLS, NULL, te2, err), PS_OK);
    CHECK(!memcmp(te, te2, (size_t)N_CLS * E * sizeof *te));

    char buf[64];
    maple_class_prompt(&m, "golden_retriever", buf, sizeof buf);
    CHECK_STR(buf, "a photo of a golden retriever.");
    maple_class_prompt(&m, "golden_retriever", buf, 10);
    CHECK_STR(buf, "a photo o");

    /* loadable variants: the same prompts */
    static const char *const ok[] = { "maple/ok_module.pth", "maple/ok_bare.pth" };
    for (size_t i = 0; i < LEN(ok); i++) {
        Maple v;
        rc = maple_load(&v, t_data(ok[i]), c, err);
        CHECK_MSG(rc == PS_OK, "%s: %s", ok[i], err);
        if (rc == PS_OK) {
            CHECK_MSG(same_prompts(&m, &v), "%s: prompts differ from the fixture's", ok[i]);
            CHECK_EQ_INT(v.epoch, i == 0 ? 5 : -1);
        }
        maple_free(&v);
    }
    free(resid), free(emb), free(ids), free(te), free(te2);
    maple_free(&m);
    maple_free(&m); /* twice: no-op */
}

/* Without a model: the checkpoint alone is checked and the prompts are not usable. */
static void
test_unbound(Clip *c)
{
    Maple m;
    char err[PS_ERRLEN] = "";
    int rc = maple_load(&m, t_data("clip_tiny/maple/model.pth.tar-5"), NULL, err);
    CHECK_MSG(rc == PS_OK, "maple_load without a model: %s", err);
    CHECK_EQ_INT(m.n_ctx, 2);
    CHECK_EQ_INT(m.depth, 3);
    CHECK_EQ_INT(m.d_vis, 32);
    float emb[24];
    int32_t ids[77] = { 0 };
    CHECK_EQ_INT(maple_encode_text(&m, c, ids, 1, emb, err), PS_EUSAGE);
    maple_free(&m);
    /* a damaged width is still caught without a model (the tensors disagree) */
    CHECK_EQ_INT(maple_load(&m, t_data("maple/wide_vis.pth"), NULL, err), PS_OK); /* consistent */
    CHECK_EQ_INT(m.d_vis, 40);
    maple_free(&m);
    CHECK_EQ_INT(maple_load(&m, t_data("maple/deep_shape.pth"), NULL, err), PS_ESHAPE);
    CHECK(m.ctx == NULL && m.vis_ptr == NULL);
}

static void
test_bad(Clip *c)
{
    static const struct {
        const char *file;
        int rc;
        const char *msg[3]; /* substrings the message must hold */
    } cases[] = {
        { "maple/no_ctx.pth", PS_ESHAPE, { "prompt_learner.ctx missing", "not a MaPLe" } },
        { "maple/missing_proj.pth", PS_ESHAPE, { "prompt_learner.proj.weight missing" } },
        { "maple/missing_deep_b.pth", PS_ESHAPE,
          { "compound_prompt_projections.1.bias missing" } },
        { "maple/wide_text.pth", PS_ESHAPE, { "prompt_learner.ctx is (2, 20)", "(2, 16)",
                                               "text width 16" } },
        { "maple/wide_vis.pth", PS_ESHAPE, { "prompt_learner.proj.weight is (40, 16)",
                                              "expected (32, 16)", "vision width 32" } },
        { "maple/deep_shape.pth", PS_ESHAPE, { "compound_prompts_text.1 is (3, 16)",
                                                "expected (2, 16)" } },
        { "maple/gap.pth", PS_ESHAPE, { "compound_prompts_text.2 present",
                                         "compound_prompts_text.1 missing" } },
        { "maple/extra_proj.pth", PS_ESHAPE, { "compound_prompt_projections.2", "2 compound" } },
        { "maple/too_deep.pth", PS_ESHAPE, { "prompt depth 5", "4 vision" } },
        { "maple/int_ctx.pth", PS_ESHAPE, { "prompt_learner.ctx is I64", "floating-point" } },
        { "maple/nan_ctx.pth", PS_EFORMAT, { "prompt_learner.ctx", "non-finite" } },
        { "maple/list_ctx.pth", PS_ESHAPE, { "prompt_learner.ctx is not a tensor" } },
        { "maple/nonexistent.pth", PS_EIO, { "nonexistent.pth" } },
        { "pt_mixed.pt", PS_ESHAPE, { "pt_mixed.pt", "not a" } },
        { "evil_os_system.pt", PS_EREFUSED, { "evil_os_system.pt" } },
    };
    for (size_t i = 0; i < LEN(cases); i++) {
        Maple m;
        char err[PS_ERRLEN] = "";
        int rc = maple_load(&m, t_data(cases[i].file), c, err);
        CHECK_MSG(rc == cases[i].rc, "%s: rc %s, expected %s (%s)", cases[i].file,
                  ps_strcode(rc), ps_strcode(cases[i].rc), err);
        for (int k = 0; k < 3 && cases[i].msg[k]; k++)
            CHECK_MSG(strstr(err, cases[i].msg[k]), "%s: message \"%s\" lacks \"%s\"",
                      cases[i].file, err, cases[i].msg[k]);
        CHECK(m.ctx == NULL && m.vis_ptr == NULL); /* zeroed on failure */
        maple_free(&m);
    }
    /* the fixture checks as a MaPLe checkpoint; an SAE checkpoint does not */
    PtFile *f;
    if (pt_load(&f, t_data("clip_tiny/maple/model.pth.tar-5"), NULL) == PS_OK) {
        CHECK(maple_is_checkpoint(pt_root(f)));
        pt_close(f);
    }
    if (pt_load(&f, t_data("sae_patchsae.pt"), NULL) == PS_OK) {
        CHECK(!maple_is_checkpoint(pt_root(f)));
        pt_close(f);
    }
}

/* `patchsae embed --maple CKPT --classes FILE` against the reference file. */
static void
test_cli(const char *bpe, StFile *ref)
{
    char model[512], ckpt[512], classes[512], out[512], tok[600], imgs[N_IMG][512];
    static const char *const names[N_IMG] = { "img_land.png", "img_port.png", "img_square.png",
                                              "img_gray.png", "img_rgba.png", "img_big.png" };
    snprintf(model, sizeof model, "%s", t_data("clip_tiny/openai.safetensors"));
    snprintf(ckpt, sizeof ckpt, "%s", t_data("clip_tiny/maple/model.pth.tar-5"));
    snprintf(classes, sizeof classes, "%s", t_data("clip_tiny/maple/classes.txt"));
    snprintf(out, sizeof out, "%s", t_tmp("maple.safetensors"));
    snprintf(tok, sizeof tok, "%s", bpe);
    for (int i = 0; i < N_IMG; i++) {
        char r[64];
        snprintf(r, sizeof r, "clip_tiny/%s", names[i]);
        snprintf(imgs[i], sizeof imgs[i], "%s", t_data(r));
    }
    char *argv[] = { "embed", "--model", model, "--tokenizer", tok, "--maple", ckpt, "--classes",
                     classes, "--quiet", "-o", out, imgs[0], imgs[1], imgs[2], imgs[3], imgs[4],
                     imgs[5], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv) - 1, argv), 0);
    StFile *got;
    char err[PS_ERRLEN];
    if (st_open(&got, out, err) != PS_OK) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    static const struct { const char *name; size_t n; double tol; } cmp[] = {
        { "pixel_values", N_IMG * 3 * 32 * 32, 1e-6 }, { "resid", N_IMG * 19 * 32, 1e-4 },
        { "image_embeds", N_IMG * 24, 1e-4 },           { "text_embeds", N_CLS * 24, 1e-4 },
        { "logits", N_IMG * N_CLS, 1e-4 },
    };
    for (size_t i = 0; i < LEN(cmp); i++) {
        const float *a = ref_f32(got, cmp[i].name, cmp[i].n);
        if (a)
            rel(cmp[i].name, a, ref_f32(ref, cmp[i].name, cmp[i].n), cmp[i].n, cmp[i].tol);
    }
    const StTensor *a = st_find(got, "input_ids"), *b = st_find(ref, "input_ids");
    CHECK(a && b && a->dtype == ST_I64 && a->nbytes == b->nbytes &&
          !memcmp(a->data, b->data, a->nbytes));
    CHECK_STR(st_meta(got, "n_ctx"), "2");
    CHECK_STR(st_meta(got, "prompt_depth"), "3");
    CHECK(st_meta(got, "maple") && strstr(st_meta(got, "maple"), "model.pth.tar-5"));
    CHECK(st_meta(got, "prompts") &&
          strstr(st_meta(got, "prompts"), "a photo of a golden retriever."));
    st_close(got);
}

void
test_maple(void)
{
    const char *bpe = shared_bpe();
    if (!bpe) {
        fprintf(stderr, "test_maple: bpe_simple_vocab_16e6.txt.gz not found (set "
                        "PS_SHARED_DATA): skipped\n");
        return;
    }
    Clip c;
    char err[PS_ERRLEN];
    if (clip_open(&c, t_data("clip_tiny/openai.safetensors"), bpe, err) != PS_OK) {
        CHECK_MSG(0, "clip_open: %s", err);
        return;
    }
    StFile *ref;
    if (st_open(&ref, t_data("clip_tiny/ref_maple.safetensors"), err) != PS_OK) {
        CHECK_MSG(0, "%s", err);
        clip_close(&c);
        return;
    }
    test_forward(&c, ref);
    test_unbound(&c);
    test_bad(&c);
    test_cli(bpe, ref);
    st_close(ref);
    clip_close(&c);
}
