/* SPDX-License-Identifier: MIT */
/*
 * maple.h - MaPLe (multi-modal prompt learning, reference §6) on top of a
 * base Clip: the learned prompts read from a Dassl/MaPLe checkpoint
 * (`model.pth.tar-N`, a torch.save dict whose "state_dict" holds
 * prompt_learner.*) and the adapted image and text forwards.
 *
 * Shapes: Wt text width, Wv vision width, n_ctx prompt tokens, depth the
 * prompt depth (1 shallow prompt + depth-1 deep prompts), C classes, N
 * images. With MaPLe an image has T = 1 + G*G + n_ctx tokens (the prompt
 * tokens last). Everything runs in float32; the original runs in fp16.
 *
 * Lifecycle: maple_load / maple_free. A Maple owns float32 copies of its
 * tensors and is bound to the Clip it was loaded against (widths and layer
 * counts); it holds no reference to it.
 */
#ifndef PS_MAPLE_H
#define PS_MAPLE_H

#include <stddef.h>
#include <stdint.h>

#include "clip.h"

typedef struct PtObj PtObj;

typedef struct Maple {
    int n_ctx;            /* prompt tokens (N_CTX) */
    int depth;            /* PROMPT_DEPTH = number of compound prompts + 1 */
    int d_text, d_vis;    /* Wt, Wv */
    int epoch;            /* the checkpoint's "epoch", -1 when absent */
    char prefix[256];     /* prompt prefix: "a photo of a" (n_ctx <= 4) or n_ctx "X" words */
    float *ctx;           /* (n_ctx, Wt) shallow text prompt */
    float *proj_w;        /* (Wv, Wt) coupling function */
    float *proj_b;        /* (Wv) */
    float *text_deep;     /* (depth-1, n_ctx, Wt) compound_prompts_text */
    float *deep_w;        /* (depth-1, Wv, Wt) compound_prompt_projections weights */
    float *deep_b;        /* (depth-1, Wv) */
    float *vis_first;     /* (n_ctx, Wv) = proj(ctx), the shallow visual prompt */
    float *vis_deep;      /* (depth-1, n_ctx, Wv) = projection_i(text_deep_i) */
    /* Bound to a Clip (NULL / 0 when loaded without one): */
    int vis_layers, txt_layers;  /* L of each tower */
    const float **vis_ptr;       /* (vis_layers) vis_deep rows by block, NULL elsewhere */
    const float **txt_ptr;       /* (txt_layers) text_deep rows by block, NULL elsewhere */
    ClipPrompts vision, text;    /* for clip_encode_image_ex / clip_encode_text_ex */
} Maple;

/*
 * Reads a Dassl/MaPLe checkpoint (read by pt.h: nothing is executed). The
 * state dict is root["state_dict"] (or root itself when it holds
 * prompt_learner.ctx); "module." prefixes are accepted; token_prefix/suffix,
 * the frozen encoders and the optimizer/scheduler are ignored. n_ctx comes
 * from ctx, depth from the number of compound prompts. With c, widths and
 * depth are checked against the model and the prompts bound to it; c NULL
 * only checks the checkpoint against itself (maple_encode_* then refuse).
 * Errors: PS_EIO, PS_EFORMAT/PS_EREFUSED (from pt), PS_ESHAPE (a tensor
 * missing or misshapen: the message names it and both shapes). m is zeroed
 * on failure.
 */
int maple_load(Maple *m, const char *path, const Clip *c, char *err);
/* The same on a checkpoint already read (name is used in messages). */
int maple_from_pt(Maple *m, const PtObj *root, const char *name, const Clip *c, char *err);
/* 1 when root looks like a MaPLe checkpoint (a prompt_learner.ctx entry), else 0. */
int maple_is_checkpoint(const PtObj *root);
void maple_free(Maple *m); /* NULL or already freed: no-op */

/* out = MaPLe's class prompt: prefix + " " + name + ".", '_' -> ' ' (truncated to n). */
void maple_class_prompt(const Maple *m, const char *name, char *out, size_t n);

/*
 * Image forward with the learned prompts, as clip_encode_image_ex: resid
 * (N, T, Wv) with T = n_tok + n_ctx (may be NULL), embeds (N, E) (NULL stops
 * after hook_layer).
 */
int maple_encode_image(const Maple *m, Clip *c, const float *pixels, int N, int hook_layer,
                       float *resid, float *embeds, char *err);
/* Continues from the output of block layer (resid (N, T, Wv)), as clip_image_from_layer. */
int maple_image_from_layer(const Maple *m, Clip *c, const float *resid, int N, int layer,
                           float *embeds, char *err);
/*
 * Class embeddings (C, E), L2-normalised: each name is prompted with
 * maple_class_prompt and tokenized; positions 1..n_ctx take ctx (and the
 * compound prompts in blocks 1..depth-1); pooled at the EOT. ids (C, ctx)
 * receives the token ids when not NULL.
 */
int maple_encode_classes(const Maple *m, Clip *c, const char *const *names, int C, int32_t *ids,
                         float *embeds, char *err);
/* The same on prompts already tokenized: ids (P, ctx). */
int maple_encode_text(const Maple *m, Clip *c, const int32_t *ids, int P, float *embeds,
                      char *err);

#endif
