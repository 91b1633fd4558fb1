/* SPDX-License-Identifier: MIT */
/*
 * test_embed.c - `patchsae embed` end to end on the PyTorch fixture
 * (tests/data/clip_tiny/small: own vocabulary, so no shared data is needed):
 * every output tensor against ref.safetensors, token ids exactly; plus the
 * class-file path and the 80-template ensemble against clip_zeroshot_weights.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "cmd.h"
#include "ps.h"
#include "st.h"
#include "test.h"

static const float *
f32(StFile *f, const char *name, size_t n)
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
compare(StFile *got, StFile *ref, const char *name, size_t n, double tol)
{
    const float *a = f32(got, name, n), *b = f32(ref, name, n);
    if (a && b)
        CHECK_MSG(t_relerr(a, b, n) <= tol, "%s: relative error %.3g", name, t_relerr(a, b, n));
}

static void
test_small_fixture(void)
{
    char model[512], vocab[512], out[512], imgs[6][512];
    static const char *const names[6] = { "img_land.png", "img_port.png", "img_square.png",
                                          "img_gray.png", "img_rgba.png", "img_big.png" };
    snprintf(model, sizeof model, "%s", t_data("clip_tiny/small/hf"));
    snprintf(vocab, sizeof vocab, "%s", t_data("clip_tiny/small/hf/vocab.json"));
    snprintf(out, sizeof out, "%s", t_tmp("small.safetensors"));
    for (int i = 0; i < 6; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "clip_tiny/%s", names[i]);
        snprintf(imgs[i], sizeof imgs[i], "%s", t_data(rel));
    }
    char *argv[] = { "embed", "--model", model, "--quiet", "--text", "a photo of a cat.", "--text",
                     "THE QUICK brown fox", "--text", "it's 42", "--text", "", "--text",
                     "one two three four five six seven eight nine ten eleven twelve thirteen "
                     "fourteen",
                     "-o", out, imgs[0], imgs[1], imgs[2], imgs[3], imgs[4], imgs[5], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv) - 1, argv), 0);
    StFile *got, *ref;
    char err[PS_ERRLEN];
    if (st_open(&got, out, err) != PS_OK) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    PS_ASSERT(st_open(&ref, t_data("clip_tiny/small/ref.safetensors"), NULL) == PS_OK);
    compare(got, ref, "pixel_values", 6 * 3 * 30 * 30, 1e-6);
    compare(got, ref, "resid", 6 * 10 * 24, 1e-4);
    compare(got, ref, "image_embeds", 6 * 12, 1e-4);
    compare(got, ref, "text_embeds", 5 * 12, 1e-4);
    compare(got, ref, "logits", 6 * 5, 1e-4);
    const StTensor *a = st_find(got, "input_ids"), *b = st_find(ref, "input_ids");
    CHECK(a && b && a->dtype == ST_I64 && a->nbytes == b->nbytes
          && memcmp(a->data, b->data, a->nbytes) == 0);
    CHECK_STR(st_meta(got, "layer"), "0");
    CHECK(st_meta(got, "prompts") && strstr(st_meta(got, "prompts"), "THE QUICK brown fox"));
    st_close(got);

    /* a class file: blank lines skipped, WordNet ids dropped, one prompt per class */
    char classes[512];
    snprintf(classes, sizeof classes, "%s", t_tmp("classes.txt"));
    const char *txt = "cat\n\nn01440764 tench\r\nsea lion\n";
    t_write_file(classes, txt, strlen(txt));
    char *argv2[] = { "embed", "--model", model, "--quiet", "--classes", classes, "-o", out,
                      imgs[0], imgs[2], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv2) - 1, argv2), 0);
    Clip c;
    PS_ASSERT(clip_open(&c, model, NULL, err) == PS_OK);
    PS_ASSERT(st_open(&got, out, NULL) == PS_OK);
    const char *prompts[3] = { "a photo of a cat.", "a photo of a tench.", "a photo of a sea lion." };
    int32_t ids[3 * 16];
    float te[3 * 12];
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(clip_tokenize(&c, prompts[i], ids + 16 * i, err), PS_OK);
    CHECK_EQ_INT(clip_encode_text(&c, ids, 3, te, err), PS_OK);
    const float *p0 = f32(got, "pixel_values", 2 * 3 * 30 * 30);
    const float *r0 = f32(ref, "pixel_values", 6 * 3 * 30 * 30);
    if (p0 && r0) /* image 0 of both; the second image here is reference image 2 */
        CHECK(t_relerr(p0, r0, 2700) < 1e-6 && t_relerr(p0 + 2700, r0 + 2 * 2700, 2700) < 1e-6);
    const float *gt = f32(got, "text_embeds", 3 * 12);
    if (gt)
        CHECK_REL(gt, te, 3 * 12, 1e-6);
    st_close(got);

    /* --ensemble: the PatchSAE mean of 80 templates, not renormalised */
    char *argv3[] = { "embed", "--model", model, "--quiet", "--classes", classes, "--ensemble",
                      "-o", out, imgs[0], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv3) - 1, argv3), 0);
    PS_ASSERT(st_open(&got, out, NULL) == PS_OK);
    const char *cn[3] = { "cat", "tench", "sea lion" };
    float zw[3 * 12], zr[3 * 12];
    CHECK_EQ_INT(clip_zeroshot_weights(&c, cn, 3, clip_imagenet_templates, CLIP_N_TEMPLATES, 0, zw,
                                       err), PS_OK);
    CHECK_EQ_INT(clip_zeroshot_weights(&c, cn, 3, clip_imagenet_templates, CLIP_N_TEMPLATES, 1, zr,
                                       err), PS_OK);
    gt = f32(got, "text_embeds", 3 * 12);
    if (gt)
        CHECK_REL(gt, zw, 3 * 12, 1e-6);
    double n2 = 0;
    for (int j = 0; j < 12; j++)
        n2 += (double)zw[j] * zw[j];
    CHECK(n2 < 0.999); /* a mean of unit vectors is shorter */
    n2 = 0;
    for (int j = 0; j < 12; j++)
        n2 += (double)zr[j] * zr[j];
    CHECK_NEAR(n2, 1, 1e-5);
    a = st_find(got, "input_ids");
    CHECK(a && a->nd == 2 && a->shape[0] == 3 * 80 && a->shape[1] == 16);
    /* the ensemble of one template is the single prompt */
    CHECK_EQ_INT(clip_zeroshot_weights(&c, cn, 3, &clip_photo_template, 1, 0, zw, err), PS_OK);
    CHECK_REL(zw, te, 3 * 12, 1e-6);
    st_close(got);
    st_close(ref);
    clip_close(&c);
}

void
test_embed(void)
{
    test_small_fixture();
}
