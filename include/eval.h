/* SPDX-License-Identifier: MIT */
/*
 * eval.h - classification with top-k latent masking (PatchSAE §4.1,
 * reference §5): the SAE reconstruction replaces the residual stream of every
 * token at the hook layer, with only a class's top-k latents kept ("on") or
 * with them removed ("off"), and the per-class zero-shot accuracy is measured.
 *
 *   x' = (f ⊙ m) W_dec + b_dec + c        f = ReLU((x − b_dec) W_enc + b_enc)
 *
 * c = SAE_PATCH_BIAS (+0.10513: PatchSAE subtracts SAE_BIAS = −0.10513) by
 * default, 0 on request. Each class's images are scored with that class's
 * mask (the true label picks the latents). Latent orders come from the
 * class-level counts (tokens with f > τ) of one statset of the index:
 * descending count, ties by lower latent index (PatchSAE's NumPy argsort
 * leaves ties unspecified), zero-count latents last in index order.
 * Baselines of the same size: a seeded random order per class, and the
 * dataset-level order (counts summed over classes).
 *
 * Cost: one forward to the hook layer per image (which also gives the
 * unmodified prediction), one sparse SAE encode, then per mask only a masked
 * sparse decode and the blocks after the hook (clip_image_from_layer). Masks
 * of k = S are the same for every selection and are computed once.
 */
#ifndef PS_EVAL_H
#define PS_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "clip.h"
#include "sae.h"

typedef struct Idx Idx;

#define EVAL_MAX_K 32
#define EVAL_BATCH 16 /* images per forward */
/* PatchSAE's TOPK_LIST without its last entry 49152, which is "all" (= S) here. */
#define EVAL_DEFAULT_KS "1,2,5,10,50,100,500,1000,2000,all"

typedef enum EvalSel { EVAL_SEL_CLASS, EVAL_SEL_RANDOM, EVAL_SEL_DATASET } EvalSel;

/* One evaluated condition (a row of PatchSAE's metrics.csv). */
typedef struct EvalCond {
    char mode[16];  /* index eval.mode: orig recon on off random dataset */
    char name[16];  /* CSV: orig recon on off random_on random_off dataset_on dataset_off */
    int sel;        /* EvalSel; -1 for orig and recon */
    int on;         /* 1: keep only the selected latents; 0: remove them */
    int k;          /* latents selected (0 for orig and recon) */
} EvalCond;

/* Latent orders by class-level count. */
typedef struct EvalRank {
    int n_class, d_sae; /* C, S */
    int depth;          /* latents kept per order (the largest k below S) */
    int32_t *order;     /* (C, depth) class c's latents, count desc, ties latent asc */
    int32_t *dataset;   /* (depth) the same for counts summed over classes */
    int64_t *n_pos;     /* (C) latents with a positive count */
} EvalRank;

/*
 * Builds the orders from n (class, latent, count) triples in any order
 * (absent pairs count 0; counts >= 0). depth is clamped to [1, S].
 * PS_EFORMAT for a class or latent out of range, a negative count or a
 * duplicated pair.
 */
int eval_rank_build(EvalRank *r, int C, int S, int depth, int64_t n, const int32_t *cls,
                    const int32_t *lat, const int64_t *cnt, char *err);
/* The same from the class_counts rows of a statset of an index. */
int eval_rank_load(EvalRank *r, Idx *ix, int64_t statset, int C, int S, int depth, char *err);
void eval_rank_free(EvalRank *r); /* NULL-safe, zeroes */

/*
 * The first depth entries of a seeded random permutation of [0, S) for class
 * cls (partial Fisher-Yates over splitmix64; the same seed and class give the
 * same order on every machine). perm (S) is scratch.
 */
void eval_random_order(uint64_t seed, int cls, int S, int depth, int32_t *perm, int32_t *out);
/*
 * keep (S): with on, 1 for the first k latents of order and 0 elsewhere;
 * without, the reverse. k >= S (order may then be NULL) selects every latent.
 */
void eval_mask(const int32_t *order, int k, int S, int on, uint8_t *keep);

/*
 * Parses a k list "1,2,5,all" (all = S) into ks (sorted, deduplicated, values
 * above S clamped to S): PS_EUSAGE for anything else or more than EVAL_MAX_K.
 */
int eval_parse_ks(const char *s, int S, int *ks, int *n, char *err);

typedef struct EvalConfig {
    int n_k;
    int k[EVAL_MAX_K];  /* ascending, 1..S */
    float add_const;    /* c above: SAE_PATCH_BIAS or 0 */
    int baselines;      /* 1: random and dataset-level selections too */
    uint64_t seed;      /* random selections */
    int batch;          /* images per forward (EVAL_BATCH) */
} EvalConfig;
void eval_config_init(EvalConfig *cfg, int S); /* default k list, PatchSAE's c, baselines on */

typedef struct Eval {
    EvalConfig cfg;
    Clip *clip;                  /* borrowed */
    const ClipPrompts *prompts;  /* vision prompts (MaPLe) or NULL; borrowed */
    const Sae *sae;              /* borrowed */
    const EvalRank *rank;        /* borrowed */
    const float *text;           /* (C, E) class embeddings; borrowed */
    int hook_layer;
    int n_class, n_tok, d_model, d_embed; /* C, T (with prompts), D, E */
    int n_cond;
    EvalCond *cond;              /* (n_cond): orig, recon, then per selection and k: on, off */
    int64_t *n_img;              /* (C) images scored */
    int64_t *correct;            /* (C, n_cond) correct predictions */
    /* scratch, sized once */
    float *resid, *patched;      /* (batch, T, D) */
    float *embeds;               /* (batch, E) */
    float *logits;               /* (batch, C) */
    int *pred;                   /* (batch) predictions of the current condition */
    int *pred_recon, *pred_off;  /* (batch) predictions of the k = S masks */
    uint8_t *keep;               /* (S) */
    int32_t *perm, *rorder;      /* (S), (depth) */
    int rorder_cls;              /* class whose random order is in rorder, -1 none */
    SaeSparse sp;
    SaeWork work;
} Eval;

/*
 * Sets up an evaluation of C classes: text (C, E) are the class embeddings
 * (L2-normalised rows, or PatchSAE's unrenormalised template mean), rank the
 * latent orders (C classes, S = s->d_sae), hook_layer the block whose output
 * is replaced, prompts the vision prompts or NULL. Every pointer is borrowed
 * until eval_free. PS_EUSAGE for mismatched shapes.
 */
int eval_init(Eval *ev, const EvalConfig *cfg, Clip *c, const ClipPrompts *prompts,
              const Sae *s, int hook_layer, const EvalRank *rank, const float *text, int C,
              char *err);
void eval_free(Eval *ev); /* NULL-safe, zeroes */

/* Scores N <= cfg.batch preprocessed images (N, 3, S, S) of class cls under every condition. */
int eval_batch(Eval *ev, int cls, const float *pixels, int N, char *err);
/*
 * The patched forward of one condition: embeds (N, E) for N <= cfg.batch
 * images whose hook-layer residual (N, T, D) is resid (for tests and tools;
 * eval_batch does the same for every condition at once).
 */
int eval_forward_masked(Eval *ev, const float *resid, int N, const uint8_t *keep, float *embeds,
                        char *err);

/* Percent correct of class cls (-1: all images) under condition i; NAN with no images. */
double eval_accuracy(const Eval *ev, int cls, int i);
/* Images scored in class cls (-1: all). */
int64_t eval_count(const Eval *ev, int cls);

/*
 * Writes every (class, condition) and the overall (class -1) accuracy into
 * the index's eval table, in one transaction. The off-variants of the
 * baselines are stored as mode random / dataset with k negative (-k): the
 * schema's modes have no separate name for them.
 */
int eval_store(const Eval *ev, Idx *ix, int64_t model, int64_t dataset, int64_t sae,
               int64_t select_model, char *err);
/* CSV: class,class_name,mode,k,n_images,correct,accuracy; overall rows have class -1, "all".
 * Written to path.tmp, then renamed. names may be NULL. */
int eval_write_csv(const Eval *ev, const char *const *names, const char *path, char *err);

#endif
