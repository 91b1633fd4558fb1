/* SPDX-License-Identifier: MIT */
/*
 * clip.h - CLIP (vision and text transformers, projections, zero-shot
 * classification) in float32 over ten.h, loaded from a HuggingFace model
 * directory or one safetensors file with OpenAI/open_clip names.
 *
 * Shapes (ten.h vocabulary): N images, S image side, P patch side, G = S/P,
 * T = 1 + G*G tokens (CLS first, then patches row-major) plus n_ctx prompt
 * tokens with MaPLe, D width, L layers, E embedding width; on the text side
 * prompts P_t of ctx token ids. Layers are 0-based.
 *
 * Lifecycle: clip_open / clip_close. A Clip owns its mmap'd weights and one
 * scratch arena reused by every forward (clip_reserve sizes it up front; a
 * bigger batch than reserved grows it once). A Clip is not thread-safe.
 */
#ifndef PS_CLIP_H
#define PS_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "ps.h"
#include "tok.h"

typedef struct StFile StFile;

typedef enum ClipAct { CLIP_QUICK_GELU, CLIP_GELU } ClipAct;
typedef enum ClipLayout { CLIP_LAYOUT_HF, CLIP_LAYOUT_OPENAI } ClipLayout;

/* One transformer tower (vision or text). */
typedef struct ClipTowerConfig {
    int width;   /* D */
    int layers;  /* L */
    int heads;   /* H; D % H == 0 */
    int mlp;     /* F */
    ClipAct act;
    float eps;   /* LayerNorm epsilon */
} ClipTowerConfig;

typedef struct ClipConfig {
    ClipTowerConfig vision, text;
    int image_size; /* S */
    int patch_size; /* P */
    int grid;       /* G = S / P */
    int n_tok;      /* T = 1 + G*G (without prompts) */
    int vocab;      /* V */
    int ctx;        /* text context length (77) */
    int embed_dim;  /* E */
    float logit_scale; /* exp(logit_scale) of the checkpoint (100 for OpenAI's) */
    /* Preprocessing (HF CLIPProcessor): shortest edge resized to `resize`, centre crop. */
    int resize;
    int crop_h, crop_w; /* == S for a usable model */
    float mean[3], std[3];
} ClipConfig;

/* One pre-LN residual block: x += out(attn(ln1 x)); x += fc2(act(fc1(ln2 x))). */
typedef struct ClipLayer {
    const float *ln1_w, *ln1_b; /* (D) */
    const float *w_qkv;         /* (3D, D): q | k | v rows (HF's three fused at load) */
    const float *b_qkv;         /* (3D) */
    const float *w_out, *b_out; /* (D, D), (D) */
    const float *ln2_w, *ln2_b; /* (D) */
    const float *w_fc1, *b_fc1; /* (F, D), (F) */
    const float *w_fc2, *b_fc2; /* (D, F), (D) */
} ClipLayer;

typedef struct ClipVision {
    const float *patch_w;        /* (D, 3, P, P) = (D, 3*P*P) */
    const float *cls;            /* (D) */
    const float *pos;            /* (T, D) */
    const float *ln_pre_w, *ln_pre_b;   /* (D) */
    ClipLayer *layers;           /* L */
    const float *ln_post_w, *ln_post_b; /* (D) */
    const float *proj;           /* (E, D) when !proj_in_out (HF), (D, E) when proj_in_out (OpenAI) */
    int proj_in_out;
} ClipVision;

typedef struct ClipText {
    const float *tok_emb;        /* (V, D) */
    const float *pos;            /* (ctx, D) */
    ClipLayer *layers;           /* L */
    const float *ln_w, *ln_b;    /* (D) final LayerNorm */
    const float *proj;           /* (E, D) or (D, E) as above */
    int proj_in_out;
} ClipText;

typedef struct Clip {
    ClipConfig cfg;
    ClipVision vis;
    ClipText txt;
    ClipLayout layout;
    char *path;        /* what was opened (directory or file) */
    char *tok_path;    /* tokenizer found: vocab.json (merges.txt beside it) or a .txt.gz, or NULL */
    Tok tok;           /* loaded on first use by clip_tokenize */
    int tok_loaded;
    StFile *st;        /* the weights, mmap'd */
    float *owned;      /* (owned_n) fused HF q/k/v weights and biases */
    size_t owned_n;
    Arena ws;          /* forward scratch */
    int ws_images, ws_ctx; /* what ws is sized for: images per call, prompt tokens */
} Clip;

/*
 * MaPLe-style learned prompts (reference §6.2), for one tower; NULL = none.
 * Vision: `first` (n_ctx, D) is appended after the patches (after the
 * positional embedding, before ln_pre), so T grows by n_ctx; before block l
 * the last n_ctx tokens are replaced by deep[l] when deep and deep[l] are not
 * NULL. Text: `first` (n_ctx, D) replaces the token embeddings of positions
 * 1..n_ctx (before the positional embedding is added); before block l,
 * positions 1..n_ctx are replaced by deep[l]. deep has L entries (MaPLe sets
 * 1..depth-1 and leaves 0 NULL).
 */
typedef struct ClipPrompts {
    int n_ctx;
    const float *first;       /* (n_ctx, D) or NULL */
    const float *const *deep; /* L pointers to (n_ctx, D) or NULL, or NULL */
} ClipPrompts;

/*
 * Opens path: a directory (HF: config.json + model.safetensors, optional
 * preprocessor_config.json; or any directory holding one model.safetensors
 * with OpenAI names) or a .safetensors file (OpenAI/open_clip names; HF names
 * need config.json beside it). OpenAI-named files have their config inferred
 * from shapes as OpenAI's build_model does: heads = width / 64 unless the
 * file's __metadata__ sets "heads" (both towers), "vision_heads" or
 * "text_heads"; activation quick_gelu unless __metadata__ "act" (or
 * "hidden_act") is "gelu"
 * (open_clip's non-OpenAI models). tokenizer may name the tokenizer
 * (vocab.json, merges.txt beside it, or a bpe .txt.gz); NULL looks beside the
 * model. Errors: PS_EIO, PS_EFORMAT (bad config), PS_ESHAPE (a tensor missing
 * or misshapen: the message names it and both shapes).
 */
int clip_open(Clip *c, const char *path, const char *tokenizer, char *err);
void clip_close(Clip *c); /* NULL or already closed: no-op */

/* Sizes the scratch for up to max_images images with n_ctx prompt tokens (and for text). */
int clip_reserve(Clip *c, int max_images, int n_ctx, char *err);

/*
 * Image forward. pixels (N, 3, S, S) preprocessed. hook_layer in [0, L) or -1:
 * resid (N, T, D) (T includes prompts) receives the residual stream output
 * of that block; resid may be NULL. embeds (N, E) receives the L2-normalised
 * projected embeddings; when NULL the forward stops after hook_layer.
 * PS_EUSAGE for a bad layer, PS_ENOMEM if the scratch cannot grow.
 */
int clip_encode_image(Clip *c, const float *pixels, int N, int hook_layer, float *resid,
                      float *embeds, char *err);
int clip_encode_image_ex(Clip *c, const float *pixels, int N, const ClipPrompts *prompts,
                         int hook_layer, float *resid, float *embeds, char *err);
/*
 * Continues a forward from the residual stream output of block `layer`
 * (resid (N, T, D), T including prompt tokens, not modified): runs blocks
 * layer+1..L-1 (with prompts->deep replacement), ln_post on CLS, projection,
 * L2 norm into embeds (N, E). layer = -1 runs every block on resid as the
 * ln_pre output.
 */
int clip_image_from_layer(Clip *c, const float *resid, int N, int layer,
                          const ClipPrompts *prompts, float *embeds, char *err);

/*
 * Text forward: ids (P, ctx) token ids (SOS .. EOT, zero padded); embeds
 * (P, E) L2-normalised, pooled at the argmax id (EOT). Each prompt is cut
 * after its EOT before the transformer (attention is causal: the same
 * result). PS_EFORMAT for an id outside [0, V).
 */
int clip_encode_text(Clip *c, const int32_t *ids, int P, float *embeds, char *err);
int clip_encode_text_ex(Clip *c, const int32_t *ids, int P, const ClipPrompts *prompts,
                        float *embeds, char *err);

/* ids (ctx) = the tokenizer's ids of text (loads the tokenizer on first use). */
int clip_tokenize(Clip *c, const char *text, int32_t *ids, char *err);

/* logits (N, P) = logit_scale * img (N, E) txt (P, E)^T. */
void clip_logits(const Clip *c, const float *img, int N, const float *txt, int P, float *logits);

/* OpenAI's 80 ImageNet prompt templates; "{}" stands for the class name. */
#define CLIP_N_TEMPLATES 80
extern const char *const clip_imagenet_templates[CLIP_N_TEMPLATES];
/* The single-prompt template "a photo of a {}." */
extern const char *const clip_photo_template;

/* Formats template with name in place of "{}" into out (n bytes, truncated). */
void clip_format_prompt(char *out, size_t n, const char *template_, const char *name);

/*
 * Zero-shot classifier weights: out (C, E), class c = mean over the templates
 * of the L2-normalised text embeddings of template(c). renorm = 0 keeps the
 * mean as is (PatchSAE, reference §5.1); renorm = 1 L2-normalises it again
 * (OpenAI's notebook). One template gives the plain normalised embedding.
 * Class names are used as given.
 */
int clip_zeroshot_weights(Clip *c, const char *const *classes, int C,
                          const char *const *templates, int n_templates, int renorm, float *out,
                          char *err);

#endif
