/* SPDX-License-Identifier: MIT */
/*
 * stats.h - per-latent statistics of an SAE over a dataset, accumulated one
 * image at a time from the SAE's sparse output, mergeable across shards,
 * serialisable for resume, and finalised into an index (idx.h).
 *
 * Input per image: T tokens in CSR form (the three arrays of sae.h's
 * SaeSparse): latents of token t are idx[rowptr[t]-rowptr[0] ..
 * rowptr[t+1]-rowptr[0]) of the idx/val arrays passed (so a batch's arrays
 * can be passed at image b's first row), values > 0 (others are ignored).
 *
 * Definitions (PatchSAE compute_sae_feature_data.py and class-wise counts):
 *   a(i,s)      image-level activation = sum over all T tokens f(i,t,s) / T
 *               (CLS and MaPLe prompt tokens included), summed in double in
 *               token order, then rounded to float.
 *   n_active    images with a(i,s) > 0; freq = n_active / n_images.
 *   mean_act    sum a(i,s) / n_active (NULL if dead).
 *   max_act     max over images of a(i,s); max_patch: max over images and
 *               tokens of f(i,t,s) (both NULL if dead).
 *   top images  k best images by a(i,s), and k best by max_t f(i,t,s) (with
 *               the argmax token, lowest on ties); order: value descending,
 *               then lower dataset position. Only images with value > 0.
 *   entropy     over the top images by a(i,s): p_c = sum of values with label
 *               c / sum of labelled values, H = -sum p_c ln(p_c + 1e-9);
 *               -1 if fewer than k labelled top images; NULL if dead; the
 *               -1e-9 the formula gives for a single class is stored as 0.
 *   label_std   population std of the class indices of labelled top images.
 *   top_class   most frequent label among the top images (ties: larger value
 *               share, then lower class); top_share = its count / images kept.
 *   class count n_tokens(c,s) = #(image of class c, token) with f > tau;
 *               act_sum(c,s) = sum of a(i,s) over images of class c.
 *
 * Exactness: sums are kept in 64-bit fixed point (units of 2^-24) and maxima
 * and top-k use a total order, so accumulating in any order or split in any
 * way and merged (stats_merge) gives bit-identical results; a snapshot
 * (stats_save/stats_load) taken at a committed batch and continued gives the
 * same result as one uninterrupted pass.
 *
 * Memory: about (32 + 48 k) bytes per latent (k = 16: 0.8 KB; 49,152 latents:
 * 39 MB) plus 16 bytes per (class seen, latent) (ImageNet-1k at 49,152: 786
 * MB) plus 25 bytes per latent of scratch.
 */
#ifndef PS_STATS_H
#define PS_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct Idx Idx;
typedef struct IdxAct IdxAct;

typedef struct StatsConfig {
    int d_sae;                  /* latents S */
    int k_top;                  /* top images per latent (IDX_TOPK) */
    float tau;                  /* class-count threshold (IDX_TAU) */
    int n_classes;              /* labels must be in [0, n_classes) or -1 */
    int class_top;              /* class_top rows per class at finalise (IDX_CLASS_TOP) */
} StatsConfig;

typedef struct StatsTop {
    float value;
    int32_t label;              /* -1 unlabelled */
    int64_t pos;                /* position in the dataset */
    int32_t token;              /* max-patch ranking: the token; else -1 */
} StatsTop;

typedef struct Stats {
    StatsConfig cfg;
    int64_t n_images;
    int64_t *n_active;          /* (S) images with a > 0 */
    int64_t *sum_fx;            /* (S) sum of a, fixed point 2^-24 */
    float *max_act;             /* (S) */
    float *max_patch;           /* (S) */
    uint8_t *n_top;             /* (2, S) entries in each heap */
    StatsTop *top;              /* (2, S, k) min-heaps: [0] by a, [1] by max patch */
    int64_t **cls_count;        /* (n_classes) rows of (S), NULL until the class is seen */
    int64_t **cls_sum;          /* (n_classes) rows of (S), fixed point 2^-24 */
    /* scratch for one image */
    double *acc;                /* (S) sum of f over tokens */
    float *pmax;                /* (S) */
    int32_t *ptok;              /* (S) */
    int32_t *pcnt;              /* (S) tokens above tau */
    int32_t *touched;           /* (S) */
    uint8_t *mark;              /* (S) */
} Stats;

void stats_config_init(StatsConfig *c, int d_sae, int n_classes); /* defaults for the rest */
/* Allocates an empty accumulator. PS_EUSAGE for bad sizes, PS_ENOMEM. */
int stats_init(Stats *st, const StatsConfig *cfg, char *err);
void stats_free(Stats *st); /* NULL-safe, zeroes */
/*
 * Adds one image: pos (its dataset position, unique), label (-1 none), T
 * tokens of CSR data. With m > 0 and top non-NULL, writes the image's m best
 * latents by a(i,s) (value desc, latent asc) and sets *n_top (may be NULL).
 * PS_EFORMAT for a latent outside [0, S) or label outside [-1, n_classes).
 */
int stats_add_image(Stats *st, int64_t pos, int label, int n_tok, const int64_t *rowptr,
                    const int32_t *idx, const float *val, int m, IdxAct *top, int *n_top,
                    char *err);
/* dst += src (same config, else PS_EUSAGE). Equal to one pass over both image sets. */
int stats_merge(Stats *dst, const Stats *src, char *err);
/* Snapshot: *out malloc'd (free()), zlib-compressed, *n bytes. */
int stats_save(const Stats *st, uint8_t **out, size_t *n, char *err);
/* Restores a snapshot into an un-initialised st (PS_EFORMAT for anything malformed). */
int stats_load(Stats *st, const uint8_t *buf, size_t n, char *err);
/* The k (or fewer) best entries of latent s by ranking kind (0: a, 1: max patch), best first. */
int stats_top(const Stats *st, int kind, int32_t s, StatsTop *out);
/*
 * Writes latent_stats, latent_top, latent_labels, class_counts and class_top
 * of statset (clearing its earlier rows) and marks it final. Images of the top
 * lists must already be in the index. The caller wraps it in a transaction.
 */
int stats_finalise(const Stats *st, Idx *ix, int64_t statset, char *err);

/*
 * Merges shard indexes into ix (an open, empty or partial index): copies
 * their rows (idx_copy_shard), merges the accumulator snapshots of their
 * progress rows per (model, dataset, SAE) with stats_merge, finalises the
 * merged statistics, stores them as a done progress row (shard 0/1) so the
 * result can be merged again, and recomputes the base/adapted diff groups
 * (hi 50, lo 100). All snapshots are checked before anything is written;
 * then each shard's rows are copied in a transaction of its own and the
 * statistics are written in a last one, so a failure can leave the rows of
 * the shards copied before it: merge into a new file under a temporary name
 * (as `patchsae merge` does). PS_EREFUSED if a shard lacks a finished
 * snapshot or shards overlap.
 */
int stats_merge_shards(Idx *ix, int n, const char *const *shards, char *err);

#endif
