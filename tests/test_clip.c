/* SPDX-License-Identifier: MIT */
/*
 * test_clip.c - CLIP loading and forward passes.
 *
 * The oracle here is a second CLIP forward written with the ref.c kernels
 * straight from the HF tensor names of the file (separate q/k/v, the full
 * context without the EOT cut, the convolution as a convolution), on random
 * tiny models that `patchsae init` makes in both layouts. The PyTorch
 * fixtures of tests/data/clip_tiny (branch pyref) are checked when present.
 * Loader errors are checked on damaged copies of a good model.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clip.h"
#include "img.h"
#include "cmd.h"
#include "ps.h"
#include "ref.h"
#include "st.h"
#include "test.h"

static const float *
W(StFile *f, const char *fmt, ...) PS_PRINTF(2, 3);

static const float *
W(StFile *f, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const float *p = NULL;
    PS_ASSERT(st_get_f32(f, name, 0, NULL, &p, NULL) == PS_OK);
    return p;
}

/* One block with ref kernels from HF names: x (nseq*T, D). */
static void
ref_block(StFile *f, const char *tw, int i, const ClipTowerConfig *t, float *x, int nseq, int T,
          int causal)
{
    int D = t->width, F = t->mlp, M = nseq * T;
    float *h = xmalloc((size_t)M * D * sizeof *h), *qkv = xmalloc((size_t)M * 3 * D * sizeof *qkv);
    float *q = xmalloc((size_t)M * D * sizeof *q), *a = xmalloc((size_t)M * D * sizeof *a);
    float *fh = xmalloc((size_t)M * F * sizeof *fh);
    const char *pre = "%s.encoder.layers.%d.";
    char p[128];
    snprintf(p, sizeof p, pre, tw, i);
    ref_layernorm(h, x, W(f, "%slayer_norm1.weight", p), W(f, "%slayer_norm1.bias", p), M, D,
                  t->eps);
    static const char *const nm[3] = { "q", "k", "v" };
    for (int j = 0; j < 3; j++) {
        ref_linear(q, h, W(f, "%sself_attn.%s_proj.weight", p, nm[j]),
                   W(f, "%sself_attn.%s_proj.bias", p, nm[j]), M, D, D);
        for (int r = 0; r < M; r++)
            memcpy(qkv + (size_t)r * 3 * D + (size_t)j * D, q + (size_t)r * D, D * sizeof *q);
    }
    ref_attention(a, qkv, nseq, T, D, t->heads, causal);
    ref_linear(h, a, W(f, "%sself_attn.out_proj.weight", p), W(f, "%sself_attn.out_proj.bias", p),
               M, D, D);
    ref_add(x, h, (size_t)M * D);
    ref_layernorm(h, x, W(f, "%slayer_norm2.weight", p), W(f, "%slayer_norm2.bias", p), M, D,
                  t->eps);
    ref_linear(fh, h, W(f, "%smlp.fc1.weight", p), W(f, "%smlp.fc1.bias", p), M, D, F);
    if (t->act == CLIP_GELU)
        ref_gelu(fh, (size_t)M * F);
    else
        ref_quick_gelu(fh, (size_t)M * F);
    ref_linear(h, fh, W(f, "%smlp.fc2.weight", p), W(f, "%smlp.fc2.bias", p), M, F, D);
    ref_add(x, h, (size_t)M * D);
    free(h), free(qkv), free(q), free(a), free(fh);
}

/* Vision forward of an HF-named file with ref kernels. */
static void
ref_vision(StFile *f, const ClipConfig *g, const float *pix, int N, const ClipPrompts *pr,
           int hook, float *resid, float *emb)
{
    int D = g->vision.width, G = g->grid, S = g->image_size, P = g->patch_size;
    int n_ctx = pr ? pr->n_ctx : 0, T = g->n_tok + n_ctx, E = g->embed_dim;
    float *conv = xmalloc((size_t)N * D * G * G * sizeof *conv);
    float *x = xmalloc((size_t)N * T * D * sizeof *x);
    ref_conv_patch(conv, pix, W(f, "vision_model.embeddings.patch_embedding.weight"), N, 3, S, P,
                   D);
    const float *cls = W(f, "vision_model.embeddings.class_embedding");
    const float *pos = W(f, "vision_model.embeddings.position_embedding.weight");
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                float v;
                if (t == 0)
                    v = cls[d] + pos[d];
                else if (t < g->n_tok)
                    v = conv[((size_t)n * D + d) * G * G + (size_t)(t - 1)] + pos[(size_t)t * D + d];
                else
                    v = pr->first[(size_t)(t - g->n_tok) * D + d];
                x[((size_t)n * T + t) * D + d] = v;
            }
    ref_layernorm(x, x, W(f, "vision_model.pre_layrnorm.weight"),
                  W(f, "vision_model.pre_layrnorm.bias"), N * T, D, g->vision.eps);
    for (int l = 0; l < g->vision.layers; l++) {
        if (n_ctx && pr->deep && pr->deep[l])
            for (int n = 0; n < N; n++)
                memcpy(x + ((size_t)n * T + g->n_tok) * D, pr->deep[l], (size_t)n_ctx * D * 4);
        ref_block(f, "vision_model", l, &g->vision, x, N, T, 0);
        if (l == hook)
            memcpy(resid, x, (size_t)N * T * D * sizeof *x);
    }
    float *c = xmalloc((size_t)N * D * sizeof *c);
    for (int n = 0; n < N; n++)
        memcpy(c + (size_t)n * D, x + (size_t)n * T * D, D * sizeof *c);
    ref_layernorm(c, c, W(f, "vision_model.post_layernorm.weight"),
                  W(f, "vision_model.post_layernorm.bias"), N, D, g->vision.eps);
    ref_linear(emb, c, W(f, "visual_projection.weight"), NULL, N, D, E);
    ref_l2norm(emb, N, E);
    free(conv), free(x), free(c);
}

/* Text forward over the full context (no EOT cut), ref kernels. */
static void
ref_text(StFile *f, const ClipConfig *g, const int32_t *ids, int Pn, const ClipPrompts *pr,
         float *emb)
{
    int D = g->text.width, T = g->ctx, E = g->embed_dim, n_ctx = pr ? pr->n_ctx : 0;
    float *x = xmalloc((size_t)Pn * T * D * sizeof *x), *c = xmalloc((size_t)Pn * D * sizeof *c);
    const float *tok = W(f, "text_model.embeddings.token_embedding.weight");
    const float *pos = W(f, "text_model.embeddings.position_embedding.weight");
    for (int p = 0; p < Pn; p++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                float e = (n_ctx && t >= 1 && t <= n_ctx) ? pr->first[(size_t)(t - 1) * D + d]
                                                          : tok[(size_t)ids[p * T + t] * D + d];
                x[((size_t)p * T + t) * D + d] = e + pos[(size_t)t * D + d];
            }
    for (int l = 0; l < g->text.layers; l++) {
        if (n_ctx && pr->deep && pr->deep[l])
            for (int p = 0; p < Pn; p++)
                memcpy(x + ((size_t)p * T + 1) * D, pr->deep[l], (size_t)n_ctx * D * 4);
        ref_block(f, "text_model", l, &g->text, x, Pn, T, 1);
    }
    for (int p = 0; p < Pn; p++) {
        int k = 0;
        for (int t = 1; t < T; t++)
            if (ids[p * T + t] > ids[p * T + k])
                k = t;
        memcpy(c + (size_t)p * D, x + ((size_t)p * T + k) * D, D * sizeof *c);
    }
    ref_layernorm(c, c, W(f, "text_model.final_layer_norm.weight"),
                  W(f, "text_model.final_layer_norm.bias"), Pn, D, g->text.eps);
    ref_linear(emb, c, W(f, "text_projection.weight"), NULL, Pn, D, E);
    ref_l2norm(emb, Pn, E);
    free(x), free(c);
}

static int
run_init(const char *dir, const char *arch, const char *format, const char *act)
{
    char *argv[] = { "init", "--arch", (char *)arch, "--seed", "7", "--format", (char *)format,
                     "--act", (char *)act, "-o", (char *)dir, NULL };
    return cmd_init(11, argv);
}

static float *
rnd(size_t n, float s)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = t_randf() * s;
    return p;
}

/* P prompts of random lengths: SOT, ids below SOT, EOT, zeros. */
static int32_t *
rand_ids(const ClipConfig *g, int P, int sot, int eot)
{
    int32_t *ids = xcalloc((size_t)P * g->ctx, sizeof *ids);
    for (int p = 0; p < P; p++) {
        int len = 2 + (int)(t_rand() % (unsigned)(g->ctx - 1)); /* 2..ctx */
        int32_t *r = ids + (size_t)p * g->ctx;
        r[0] = sot;
        for (int t = 1; t < len - 1; t++)
            r[t] = (int32_t)(t_rand() % (unsigned)sot);
        r[len - 1] = eot;
    }
    return ids;
}

static void
test_forward(const char *act)
{
    char err[PS_ERRLEN] = "";
    char hfdir[64], oadir[64];
    snprintf(hfdir, sizeof hfdir, "tiny_hf_%s", act);
    snprintf(oadir, sizeof oadir, "tiny_oa_%s", act);
    const char *hf = t_tmp(hfdir), *oa = t_tmp(oadir);
    CHECK_EQ_INT(run_init(hf, "tiny", "hf", act), 0);
    CHECK_EQ_INT(run_init(oa, "tiny", "openai", act), 0);
    Clip a, b;
    int rc = clip_open(&a, hf, NULL, err);
    CHECK_MSG(rc == PS_OK, "clip_open %s: %s", hf, err);
    if (rc)
        return;
    rc = clip_open(&b, oa, NULL, err);
    CHECK_MSG(rc == PS_OK, "clip_open %s: %s", oa, err);
    if (rc) {
        clip_close(&a);
        return;
    }
    const ClipConfig *g = &a.cfg;
    CHECK_EQ_INT(a.layout, CLIP_LAYOUT_HF);
    CHECK_EQ_INT(b.layout, CLIP_LAYOUT_OPENAI);
    CHECK(g->vision.width == 64 && g->vision.layers == 3 && g->vision.heads == 4
          && g->vision.mlp == 256 && g->image_size == 32 && g->patch_size == 8 && g->grid == 4
          && g->n_tok == 17);
    CHECK(g->text.width == 48 && g->text.layers == 2 && g->text.heads == 3 && g->text.mlp == 192
          && g->ctx == 24 && g->vocab == 521 && g->embed_dim == 32);
    CHECK_EQ_INT(g->vision.act, strcmp(act, "gelu") ? CLIP_QUICK_GELU : CLIP_GELU);
    CHECK(memcmp(&a.cfg.vision, &b.cfg.vision, sizeof a.cfg.vision) == 0);
    CHECK(memcmp(&a.cfg.text, &b.cfg.text, sizeof a.cfg.text) == 0);
    CHECK(a.cfg.vocab == b.cfg.vocab && a.cfg.ctx == b.cfg.ctx && a.cfg.n_tok == b.cfg.n_tok);
    CHECK_NEAR(g->logit_scale, 100, 1e-3);
    CHECK(g->resize == 32 && g->crop_h == 32 && g->crop_w == 32);
    CHECK_NEAR(g->mean[0], 0.48145466, 1e-7);
    CHECK_NEAR(g->std[2], 0.27577711, 1e-7);
    CHECK(a.tok_path && strstr(a.tok_path, "vocab.json"));

    /* vision: 5 images in chunks of 2, hook at layer 1 */
    int N = 5, D = g->vision.width, T = g->n_tok, E = g->embed_dim, S = g->image_size;
    CHECK_EQ_INT(clip_reserve(&a, 2, 0, err), PS_OK);
    float *pix = rnd((size_t)N * 3 * S * S, 2);
    float *res = xmalloc((size_t)N * T * D * 4), *emb = xmalloc((size_t)N * E * 4);
    float *rres = xmalloc((size_t)N * T * D * 4), *remb = xmalloc((size_t)N * E * 4);
    float *res2 = xmalloc((size_t)N * T * D * 4), *emb2 = xmalloc((size_t)N * E * 4);
    CHECK_EQ_INT(clip_encode_image(&a, pix, N, 1, res, emb, err), PS_OK);
    ref_vision(a.st, g, pix, N, NULL, 1, rres, remb);
    CHECK_REL(res, rres, (size_t)N * T * D, 1e-5);
    CHECK_REL(emb, remb, (size_t)N * E, 1e-5);
    CHECK_EQ_INT(clip_encode_image(&b, pix, N, 1, res2, emb2, err), PS_OK);
    CHECK_REL(res2, rres, (size_t)N * T * D, 1e-5);
    CHECK_REL(emb2, remb, (size_t)N * E, 1e-5);
    /* restart after the hook; hook only (no embeds) */
    memset(emb2, 0, (size_t)N * E * 4);
    CHECK_EQ_INT(clip_image_from_layer(&a, res, N, 1, NULL, emb2, err), PS_OK);
    CHECK_REL(emb2, emb, (size_t)N * E, 1e-6);
    memset(res2, 0, (size_t)N * T * D * 4);
    CHECK_EQ_INT(clip_encode_image(&b, pix, N, g->vision.layers - 1, res2, NULL, err), PS_OK);
    ref_vision(a.st, g, pix, N, NULL, g->vision.layers - 1, rres, remb);
    CHECK_REL(res2, rres, (size_t)N * T * D, 1e-5);
    CHECK_EQ_INT(clip_encode_image(&a, pix, N, 3, res, emb, err), PS_EUSAGE);
    CHECK(strstr(err, "layer 3") != NULL);
    CHECK_EQ_INT(clip_image_from_layer(&a, res, N, -2, NULL, emb, err), PS_EUSAGE);

    /* vision with MaPLe-style prompts: 2 tokens appended, replaced before blocks 1 and 2 */
    int nc = 2;
    float *first = rnd((size_t)nc * D, 1), *d1 = rnd((size_t)nc * D, 1), *d2 = rnd((size_t)nc * D, 1);
    const float *deep[3] = { NULL, d1, d2 };
    ClipPrompts pr = { nc, first, deep };
    int Tp = T + nc;
    float *pres = xmalloc((size_t)N * Tp * D * 4), *rpres = xmalloc((size_t)N * Tp * D * 4);
    CHECK_EQ_INT(clip_encode_image_ex(&a, pix, N, &pr, 0, pres, emb, err), PS_OK);
    ref_vision(a.st, g, pix, N, &pr, 0, rpres, remb);
    CHECK_REL(pres, rpres, (size_t)N * Tp * D, 1e-5);
    CHECK_REL(emb, remb, (size_t)N * E, 1e-5);
    CHECK_EQ_INT(clip_image_from_layer(&b, pres, N, 0, &pr, emb2, err), PS_OK);
    CHECK_REL(emb2, remb, (size_t)N * E, 1e-5);

    /* text: 41 prompts of random lengths (several GEMM chunks would need more; lengths vary) */
    int Pn = 41, ctx = g->ctx;
    int32_t *ids = rand_ids(g, Pn, 519, 520);
    float *te = xmalloc((size_t)Pn * E * 4), *rte = xmalloc((size_t)Pn * E * 4);
    float *te2 = xmalloc((size_t)Pn * E * 4);
    CHECK_EQ_INT(clip_encode_text(&a, ids, Pn, te, err), PS_OK);
    ref_text(a.st, g, ids, Pn, NULL, rte);
    CHECK_REL(te, rte, (size_t)Pn * E, 1e-5);
    CHECK_EQ_INT(clip_encode_text(&b, ids, Pn, te2, err), PS_OK);
    CHECK_REL(te2, rte, (size_t)Pn * E, 1e-5);
    float *tfirst = rnd((size_t)nc * g->text.width, 0.1f), *td = rnd((size_t)nc * g->text.width, 0.1f);
    const float *tdeep[2] = { NULL, td };
    ClipPrompts tp = { nc, tfirst, tdeep };
    for (int p = 0; p < Pn; p++) /* MaPLe prompts are longer than n_ctx + 1 */
        if (ids[(size_t)p * ctx + 1] == 520 || ids[(size_t)p * ctx + 2] == 520)
            ids[(size_t)p * ctx + 1] = ids[(size_t)p * ctx + 2] = 3, ids[(size_t)p * ctx + 3] = 520;
    CHECK_EQ_INT(clip_encode_text_ex(&a, ids, Pn, &tp, te, err), PS_OK);
    ref_text(a.st, g, ids, Pn, &tp, rte);
    CHECK_REL(te, rte, (size_t)Pn * E, 1e-5);
    ids[5] = 521;
    CHECK_EQ_INT(clip_encode_text(&a, ids, Pn, te, err), PS_EFORMAT);
    CHECK(strstr(err, "521") != NULL);

    /* logits */
    float *lg = xmalloc((size_t)N * Pn * 4), *rlg = xmalloc((size_t)N * Pn * 4);
    clip_logits(&a, remb, N, rte, Pn, lg);
    ref_linear(rlg, remb, rte, NULL, N, E, Pn);
    ref_scale(rlg, (size_t)N * Pn, 100);
    CHECK_REL(lg, rlg, (size_t)N * Pn, 1e-5);

    free(pix), free(res), free(emb), free(rres), free(remb), free(res2), free(emb2);
    free(first), free(d1), free(d2), free(pres), free(rpres), free(ids), free(te), free(rte);
    free(te2), free(tfirst), free(td), free(lg), free(rlg);
    clip_close(&a);
    clip_close(&b);
    clip_close(&b); /* twice: a no-op */
}

/* A copy of src without tensor `drop`, with `reshape` given a wrong shape, or all F16. */
static void
damaged_copy(const char *src, const char *dst, const char *drop, const char *reshape, int f16)
{
    StFile *f;
    PS_ASSERT(st_open(&f, src, NULL) == PS_OK);
    StWriter *w = st_writer_new();
    uint16_t **halves = xcalloc((size_t)st_count(f), sizeof *halves);
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        int64_t shape[ST_MAX_DIM];
        memcpy(shape, t->shape, sizeof shape);
        int nd = t->nd;
        if (reshape && !strcmp(t->name, reshape)) { /* (a, b) -> (b, a) or (a) -> (a-1) */
            if (nd == 2) {
                int64_t x = shape[0];
                shape[0] = shape[1];
                shape[1] = x;
            } else {
                shape[0]--;
            }
        }
        if (f16 && t->dtype == ST_F32) {
            size_t n = t->nbytes / 4;
            halves[i] = xmalloc(n * 2);
            for (size_t k = 0; k < n; k++) {
                float v;
                memcpy(&v, (const char *)t->data + 4 * k, 4);
                halves[i][k] = ps_f32_to_f16(v);
            }
            st_writer_add(w, t->name, ST_F16, nd, shape, halves[i]);
        } else {
            st_writer_add(w, t->name, t->dtype, nd, shape, t->data);
        }
    }
    st_writer_meta(w, "format", "pt");
    for (int i = 0; i < st_meta_count(f); i++)
        st_writer_meta(w, st_meta_key(f, i), st_meta(f, st_meta_key(f, i)));
    PS_ASSERT(st_writer_save(w, dst, NULL) == PS_OK);
    st_writer_free(w);
    for (int i = 0; i < st_count(f); i++)
        free(halves[i]);
    free(halves);
    st_close(f);
}

static void
test_loader_errors(void)
{
    char err[PS_ERRLEN] = "", src[512], dst[512];
    const char *hf = t_tmp("tiny_hf_quick_gelu"), *oa = t_tmp("tiny_oa_quick_gelu");
    snprintf(src, sizeof src, "%s/model.safetensors", oa);
    snprintf(dst, sizeof dst, "%s", t_tmp("missing.safetensors"));
    Clip c;
    damaged_copy(src, dst, "visual.transformer.resblocks.1.ln_2.bias", NULL, 0);
    CHECK_EQ_INT(clip_open(&c, dst, NULL, err), PS_ESHAPE);
    CHECK_MSG(strstr(err, "visual.transformer.resblocks.1.ln_2.bias") && strstr(err, "missing")
              && strstr(err, "(64)"), "message: %s", err);
    snprintf(dst, sizeof dst, "%s", t_tmp("shape.safetensors"));
    damaged_copy(src, dst, NULL, "transformer.resblocks.0.attn.out_proj.bias", 0);
    CHECK_EQ_INT(clip_open(&c, dst, NULL, err), PS_ESHAPE);
    CHECK_MSG(strstr(err, "tensor transformer.resblocks.0.attn.out_proj.bias has shape (47), "
                          "expected (48)"), "message: %s", err);
    damaged_copy(src, dst, NULL, "visual.proj", 0); /* (64, 32) -> (32, 64): E inferred as 64 */
    CHECK_EQ_INT(clip_open(&c, dst, NULL, err), PS_ESHAPE);
    CHECK_MSG(strstr(err, "visual.proj has shape (32, 64), expected (64, 64)"), "message: %s",
              err);
    /* neither layout */
    damaged_copy(src, dst, "visual.conv1.weight", NULL, 0);
    CHECK_EQ_INT(clip_open(&c, dst, NULL, err), PS_EFORMAT);
    CHECK(strstr(err, "neither") != NULL);
    CHECK(c.st == NULL && c.path == NULL); /* zeroed after failure */

    /* HF: a q/k/v missing, a misshapen position embedding, a broken config */
    snprintf(src, sizeof src, "%s/model.safetensors", hf);
    char *dir = xstrdup(t_tmp("hfbad"));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/*.json %s/merges.txt %s/", dir, hf, hf, dir);
    PS_ASSERT(system(cmd) == 0);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    damaged_copy(src, dst, "text_model.encoder.layers.1.self_attn.k_proj.weight", NULL, 0);
    CHECK_EQ_INT(clip_open(&c, dir, NULL, err), PS_ESHAPE);
    CHECK_MSG(strstr(err, "text_model.encoder.layers.1.self_attn.k_proj.weight")
              && strstr(err, "(48, 48)"), "message: %s", err);
    damaged_copy(src, dst, NULL, "vision_model.embeddings.position_embedding.weight", 0);
    CHECK_EQ_INT(clip_open(&c, dir, NULL, err), PS_ESHAPE);
    CHECK_MSG(strstr(err, "position_embedding") && strstr(err, "(64, 17)")
              && strstr(err, "(17, 64)"), "message: %s", err);
    /* F16 copy: loads, within half precision of the original */
    damaged_copy(src, dst, NULL, NULL, 1);
    Clip a, b;
    CHECK_EQ_INT(clip_open(&a, dir, NULL, err), PS_OK);
    CHECK_EQ_INT(clip_open(&b, hf, NULL, err), PS_OK);
    float *pix = rnd(2 * 3 * 32 * 32, 1), e1[64], e2[64];
    CHECK_EQ_INT(clip_encode_image(&a, pix, 2, -1, NULL, e1, err), PS_OK);
    CHECK_EQ_INT(clip_encode_image(&b, pix, 2, -1, NULL, e2, err), PS_OK);
    CHECK_REL(e1, e2, 64, 1e-2);
    CHECK(t_relerr(e1, e2, 64) > 0); /* really converted */
    free(pix);
    clip_close(&a);
    clip_close(&b);
    static const struct {
        const char *json, *want;
    } bad[] = {
        { "{", "config.json" },
        { "[]", "not a JSON object" },
        { "{\"vision_config\": {\"hidden_size\": \"64\"}}", "hidden_size" },
        { "{\"vision_config\": {\"hidden_size\": -3}}", "hidden_size" },
        { "{\"text_config\": {\"hidden_act\": \"relu\"}}", "relu" },
        { "{\"vision_config\": {\"num_attention_heads\": 5, \"hidden_size\": 64}}", "heads 5" },
        { "{\"vision_config\": {\"image_size\": 30, \"patch_size\": 8}}", "multiple" },
    };
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    damaged_copy(src, dst, NULL, NULL, 0);
    for (size_t i = 0; i < LEN(bad); i++) {
        t_write_file(cfg, bad[i].json, strlen(bad[i].json));
        int rc = clip_open(&c, dir, NULL, err);
        CHECK_MSG(rc == PS_EFORMAT && strstr(err, bad[i].want), "%s: rc %d: %s", bad[i].json, rc,
                  err);
    }
    /* preprocessor variants */
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", hf, dir);
    PS_ASSERT(system(cmd) == 0);
    snprintf(cfg, sizeof cfg, "%s/preprocessor_config.json", dir);
    const char *pp = "{\"size\": 40, \"crop_size\": 32, \"image_mean\": [0.5, 0.5, 0.5], "
                     "\"image_std\": [0.25, 0.5, 1]}";
    t_write_file(cfg, pp, strlen(pp));
    CHECK_EQ_INT(clip_open(&c, dir, NULL, err), PS_OK);
    CHECK(c.cfg.resize == 40 && c.cfg.crop_h == 32 && c.cfg.mean[1] == 0.5f && c.cfg.std[0] == 0.25f);
    clip_close(&c);
    pp = "{\"size\": {\"shortest_edge\": 36}, \"crop_size\": {\"height\": 32, \"width\": 32}}";
    t_write_file(cfg, pp, strlen(pp));
    CHECK_EQ_INT(clip_open(&c, dir, NULL, err), PS_OK);
    CHECK(c.cfg.resize == 36 && c.cfg.crop_w == 32);
    clip_close(&c);
    pp = "{\"crop_size\": 30}";
    t_write_file(cfg, pp, strlen(pp));
    CHECK_EQ_INT(clip_open(&c, dir, NULL, err), PS_EFORMAT);
    CHECK(strstr(err, "crop") != NULL);
    pp = "{\"image_std\": [1, 0, 1]}";
    t_write_file(cfg, pp, strlen(pp));
    CHECK_EQ_INT(clip_open(&c, dir, NULL, err), PS_EFORMAT);
    CHECK(strstr(err, "image_std") != NULL);
    free(dir);
}

static const char *
shared_bpe(void)
{
    return t_shared("bpe_simple_vocab_16e6.txt.gz");
}

static const float *
ref_get(StFile *f, const char *name, size_t n)
{
    const StTensor *t = st_find(f, name);
    const float *p = NULL;
    if (!t || st_get_f32(f, name, 0, NULL, &p, NULL) != PS_OK || t->nbytes / 4 != n) {
        CHECK_MSG(0, "%s: tensor %s missing or of the wrong size", st_path(f), name);
        return NULL;
    }
    return p;
}

/* One model against tests/data/clip_tiny/<ref>: the PyTorch reference outputs. */
static void
check_fixture(const char *model, const char *tokenizer, const char *ref, const char *extra_layer,
              int extra_l)
{
    char err[PS_ERRLEN] = "";
    Clip c;
    char mpath[600];
    snprintf(mpath, sizeof mpath, "%s", t_data(model));
    int rc = clip_open(&c, mpath, tokenizer, err);
    CHECK_MSG(rc == PS_OK, "clip_open %s: %s", mpath, err);
    if (rc)
        return;
    StFile *f;
    rc = st_open(&f, t_data(ref), err);
    CHECK_MSG(rc == PS_OK, "%s", err);
    if (rc) {
        clip_close(&c);
        return;
    }
    const ClipConfig *g = &c.cfg;
    int N = 6, S = g->image_size, T = g->n_tok, D = g->vision.width, E = g->embed_dim;
    int L = atoi(st_meta(f, "layer"));
    const StTensor *it = st_find(f, "input_ids");
    int P = it ? (int)it->shape[0] : 0;
    const float *pix = ref_get(f, "pixel_values", (size_t)N * 3 * S * S);
    const float *rres = ref_get(f, "resid", (size_t)N * T * D);
    const float *rx = ref_get(f, extra_layer, (size_t)N * T * D);
    const float *remb = ref_get(f, "image_embeds", (size_t)N * E);
    const float *rte = ref_get(f, "text_embeds", (size_t)P * E);
    const float *rlg = ref_get(f, "logits", (size_t)N * P);
    if (!pix || !rres || !rx || !remb || !rte || !rlg || !it || it->dtype != ST_I64) {
        CHECK_MSG(0, "%s: incomplete reference", ref);
        goto out;
    }
    /* pixels from the PNGs through img (bit-exact PIL bicubic) */
    ImgPrep ip = { g->resize, g->crop_h, { g->mean[0], g->mean[1], g->mean[2] },
                   { g->std[0], g->std[1], g->std[2] } };
    char names[512];
    snprintf(names, sizeof names, "%s", st_meta(f, "images"));
    float *px = xmalloc((size_t)N * 3 * S * S * 4);
    int n = 0;
    for (char *s = strtok(names, ","); s && n < N; s = strtok(NULL, ","), n++) {
        char ipath[600];
        snprintf(ipath, sizeof ipath, "clip_tiny/%s", s);
        Image im;
        CHECK_EQ_INT(img_load(&im, t_data(ipath), err), PS_OK);
        CHECK_EQ_INT(img_preprocess(&im, &ip, px + (size_t)n * 3 * S * S, err), PS_OK);
        img_free(&im);
    }
    CHECK_EQ_INT(n, N);
    CHECK_REL(px, pix, (size_t)N * 3 * S * S, 1e-6);
    free(px);

    float *res = xmalloc((size_t)N * T * D * 4), *emb = xmalloc((size_t)N * E * 4);
    float *te = xmalloc((size_t)P * E * 4), *lg = xmalloc((size_t)N * P * 4);
    CHECK_EQ_INT(L, g->vision.layers - 2);
    CHECK_EQ_INT(clip_encode_image(&c, pix, N, L, res, emb, err), PS_OK);
    CHECK_REL(res, rres, (size_t)N * T * D, 1e-4);
    CHECK_REL(emb, remb, (size_t)N * E, 1e-4);
    CHECK_EQ_INT(clip_encode_image(&c, pix, N, extra_l, res, NULL, err), PS_OK);
    CHECK_REL(res, rx, (size_t)N * T * D, 1e-4);
    /* token ids exactly, then the text tower */
    int32_t *ids = xmalloc((size_t)P * g->ctx * sizeof *ids);
    CHECK_EQ_INT(it->shape[1], g->ctx);
    const char *pj = st_meta(f, "prompts");
    json_error_t je;
    json_t *arr = pj ? json_loads(pj, 0, &je) : NULL;
    CHECK(json_is_array(arr) && (int)json_array_size(arr) == P);
    int bad = 0;
    for (int p = 0; p < P && arr; p++) {
        rc = clip_tokenize(&c, json_string_value(json_array_get(arr, (size_t)p)),
                           ids + (size_t)p * g->ctx, err);
        CHECK_MSG(rc == PS_OK, "tokenize: %s", err);
        for (int k = 0; k < g->ctx; k++) {
            int64_t want;
            memcpy(&want, (const char *)it->data + 8 * ((size_t)p * g->ctx + k), 8);
            bad += ids[(size_t)p * g->ctx + k] != want;
        }
    }
    json_decref(arr);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(clip_encode_text(&c, ids, P, te, err), PS_OK);
    CHECK_REL(te, rte, (size_t)P * E, 1e-4);
    clip_logits(&c, emb, N, te, P, lg);
    CHECK_REL(lg, rlg, (size_t)N * P, 1e-4);
    free(res), free(emb), free(te), free(lg), free(ids);
out:
    st_close(f);
    clip_close(&c);
}

static void
test_fixtures(void)
{
    const char *bpe = shared_bpe();
    if (!bpe) {
        fprintf(stderr, "test_clip: bpe_simple_vocab_16e6.txt.gz not found: tiny fixtures skipped\n");
    } else {
        check_fixture("clip_tiny/hf", bpe, "clip_tiny/ref.safetensors", "resid_layer0", 0);
        check_fixture("clip_tiny/hf", bpe, "clip_tiny/ref.safetensors", "resid_layer3", 3);
        check_fixture("clip_tiny/openai.safetensors", bpe, "clip_tiny/ref.safetensors",
                      "resid_layer3", 3);
    }
    char vocab[600];
    snprintf(vocab, sizeof vocab, "%s", t_data("clip_tiny/small/hf/vocab.json"));
    check_fixture("clip_tiny/small/hf", NULL, "clip_tiny/small/ref.safetensors", "resid_layer1", 1);
    check_fixture("clip_tiny/small/openai_bf16.safetensors", vocab,
                  "clip_tiny/small/ref.safetensors", "resid_layer1", 1);
}

void
test_clip(void)
{
    t_seed(99);
    test_forward("quick_gelu");
    test_forward("gelu");
    test_loader_errors();
    test_fixtures();
    CHECK_EQ_INT(LEN(clip_imagenet_templates), 80);
    char buf[64];
    clip_format_prompt(buf, sizeof buf, clip_photo_template, "goldfish");
    CHECK_STR(buf, "a photo of a goldfish.");
    clip_format_prompt(buf, sizeof buf, clip_imagenet_templates[35], "tench");
    CHECK_STR(buf, "a tench in a video game.");
}
