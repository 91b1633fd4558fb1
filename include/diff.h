/* SPDX-License-Identifier: MIT */
/*
 * diff.h - base against adapted model (PatchSAE §4.2, Table 1): per class,
 * the remapping groups of latents from the class-level counts of both
 * models, and per latent the change of its statistics and of its top images.
 *
 * Ranks: within a class, latents with a positive count are ranked by count
 * descending, ties by lower latent index (1 = first); a latent with count 0
 * has no rank (0). Groups (paper §4.2.1; the exact rule is inferred,
 * UNCONFIRMED), with hi = 50 and lo = 100 by default:
 *   high      rank <= hi under both models;
 *   high_low  rank <= hi under base, no rank or rank > lo under adapted;
 *   low_high  the reverse.
 * These equal idx_diff_compute's groups whenever lo is within the class_top
 * depth of the index; here every rank comes from the full counts.
 *
 * Per latent: Δ = adapted − base of the activation frequency, of the mean
 * activation over activated images and of the top-k class purity (share of
 * the top images carrying the most frequent label), and the Jaccard overlap
 * |A ∩ B| / |A ∪ B| of the two top-image sets (by image-level activation).
 * Undefined values are NAN (a dead latent's mean; Jaccard of two empty sets).
 *
 * Table 1 summary: classes [0, ceil(C/2)) are "base", the rest "novel"
 * (Dassl/MaPLe's base-to-novel split); mean group sizes per class over each
 * half, top-1 accuracy of both models from the index's stored predictions,
 * and Δ = 100 (acc_adapted − acc_base) / (100 − acc_base) on base classes.
 */
#ifndef PS_DIFF_H
#define PS_DIFF_H

#include <stddef.h>
#include <stdint.h>

typedef struct Idx Idx;

#define DIFF_HI 50
#define DIFF_LO 100

typedef enum DiffGrp { DIFF_HIGH, DIFF_HIGH_LOW, DIFF_LOW_HIGH, DIFF_N_GRP } DiffGrp;
extern const char *const diff_grp_names[DIFF_N_GRP]; /* "high" "high_low" "low_high" */

typedef struct DiffEntry {
    int cls;
    int grp;                        /* DiffGrp */
    int32_t latent;
    int base_rank, adapted_rank;    /* 1-based; 0 = count 0 */
    int64_t base_count, adapted_count;
} DiffEntry;

/* A growing list of entries (malloc'd; diff_list_free). */
typedef struct DiffList {
    DiffEntry *e;
    int n, cap;
} DiffList;
void diff_list_free(DiffList *l);

/* rank (S): rank of every latent in cnt (S) as above; order (S) is scratch. */
void diff_ranks(const int64_t *cnt, int S, int *rank, int32_t *order);
/*
 * Appends the groups of class cls from the dense counts base (S) and adapted
 * (S), in latent order within each group (high, high_low, low_high).
 * rb, ra, order (S) are scratch. PS_EUSAGE unless 1 <= hi <= lo.
 */
int diff_class_groups(int cls, const int64_t *base, const int64_t *adapted, int S, int hi,
                      int lo, int *rb, int *ra, int32_t *order, DiffList *out, char *err);

/* |A ∩ B| / |A ∪ B| of two id sets (duplicates ignored); NAN when both are empty. */
double diff_jaccard(const int64_t *a, int na, const int64_t *b, int nb);

typedef struct DiffLatent {
    int32_t latent;
    double freq[2], mean[2], purity[2]; /* [0] base, [1] adapted; NAN if undefined */
    double d_freq, d_mean, d_purity;    /* adapted − base; NAN if either is */
    double jaccard;                     /* NAN if neither has top images */
    int n_top[2], n_common;
} DiffLatent;

typedef enum DiffSort { DIFF_SORT_JACCARD, DIFF_SORT_FREQ, DIFF_SORT_MEAN, DIFF_SORT_PURITY }
    DiffSort;
/* "jaccard", "dfreq", "dmean", "dpurity"; -1 if unknown. */
int diff_sort_parse(const char *s);
/* Sorts: jaccard ascending, the others by |Δ| descending; NAN last; ties by latent. */
void diff_sort(DiffLatent *l, int n, int key);

typedef struct DiffSummary {
    int n_class, n_base;         /* C, ceil(C/2) */
    double grp[DIFF_N_GRP][2];   /* mean entries per class: [g][0] base, [g][1] novel classes */
    double acc[2][2];            /* percent top-1: [model 0 base / 1 adapted][0 base / 1 novel] */
    int64_t n_img[2][2];         /* images with a prediction, same layout */
    double delta;                /* 100 (acc[1][0] − acc[0][0]) / (100 − acc[0][0]) */
} DiffSummary;
/* The group part of the summary (acc and delta NAN, counts 0). */
void diff_summarise(const DiffEntry *e, int n, int C, DiffSummary *s);
/* Δ of two accuracies (percent); NAN if base is 100 or either is NAN. */
double diff_delta(double base, double adapted);

/* ---- the index ---- */

/* Groups of every class from the class_counts of statsets base and adapted (S latents). */
int diff_groups_load(Idx *ix, int64_t base, int64_t adapted, int S, int hi, int lo, DiffList *out,
                     char *err);
/* Replaces diff_groups and diffs rows of (base, adapted) with e[0..n), in one transaction. */
int diff_groups_store(Idx *ix, int64_t base, int64_t adapted, int hi, int lo, const DiffEntry *e,
                      int n, char *err);
/* Per-latent comparison of statsets base and adapted: *out (S) malloc'd (free()). */
int diff_latents_load(Idx *ix, int64_t base, int64_t adapted, int S, DiffLatent **out, char *err);
/*
 * Top-1 accuracy of a model's stored predictions over the labelled images of
 * a dataset: acc[0] on classes < n_base, acc[1] on the others (NAN if none);
 * n[0], n[1] the images counted.
 */
int diff_accuracy_load(Idx *ix, int64_t model, int64_t dataset, int n_base, double acc[2],
                       int64_t n[2], char *err);

#endif
