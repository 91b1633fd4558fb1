/* SPDX-License-Identifier: MIT */
/*
 * idx.h - the index: one SQLite file (schema in db/schema.sql, compiled in)
 * holding models, SAEs, datasets, images with thumbnails, predictions, patch
 * activations, per-latent statistics and top images, class-level counts,
 * eval and diff results, annotations, saved queries and build progress.
 *
 * Idx is opaque (a sqlite3 handle and its prepared statements); only idx.c
 * includes <sqlite3.h>. Every fallible function returns PS_OK or a negative
 * PS_E* code and fills err (PS_ERRLEN, may be NULL). Strings returned inside
 * structs are copied into fixed buffers (truncated) unless said otherwise.
 *
 * Patch blob format "PSP1" (pure functions idx_blob_*, no SQLite): the
 * top-K latents of every token of one image under one model, little-endian:
 *
 *   off  size      field
 *   0    4         magic "PSP1"
 *   4    2         n_tok T (u16)
 *   6    1         flags: bit 0 = latent indices are u24 (else u16); others 0
 *   7    1         k_max: the K used when encoding (1..255)
 *   8    4         lo (f32): value of code 1
 *   12   4         hi (f32): value of code 255
 *   16   T         count[t] (u8, <= k_max): entries stored for token t
 *   16+T nnz*w     latent indices (w = 2 or 3 bytes), token-major, each
 *                  token's indices strictly ascending; nnz = sum count[t]
 *   ...  nnz       codes (u8, 1..255), same order
 *
 * Value of code c: exp(ln lo + (c-1) * (ln hi - ln lo) / 254), i.e.
 * logarithmic steps between the smallest and largest stored value (lo is
 * raised to hi * IDX_BLOB_FLOOR if smaller; smaller values become lo). The
 * relative quantisation error is at most exp(ln(hi/lo)/508) - 1 (<= 2.8 %
 * with the floor; typically ~1 %). A token keeps its K largest activations
 * (ties: lower latent index); the rest are dropped. Size: 16 + T + nnz*(w+1)
 * bytes: ViT-B/16, T=197, K=32, S=49152 (u16) -> at most 19,125 bytes
 * (18.7 KiB) per image per model; with a ~12-20 KB JPEG thumbnail that is
 * under the 48 KiB budget. K=32 of ~150 active latents keeps the strong
 * ones: dropped entries are the smallest of their token, so "which latents
 * fire on this patch" is exact for the top 32 and an overlay of latent s
 * shows 0 on tokens where s was not among the top 32. Exact image-level
 * values live in image_latents; exact statistics come from the accumulator
 * (stats.h), never from blobs.
 */
#ifndef PS_IDX_H
#define PS_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_SCHEMA_VERSION 1
#define IDX_BLOB_MAGIC "PSP1"
#define IDX_BLOB_HDR 16
#define IDX_BLOB_K 32          /* default latents kept per token */
#define IDX_BLOB_FLOOR 1e-6f   /* lo >= hi * IDX_BLOB_FLOOR */
#define IDX_TOPK 16            /* default top images per latent */
#define IDX_TAU 0.2f           /* default class-count threshold */
#define IDX_CLASS_TOP 100      /* default class_top rows per class */
#define IDX_NAMELEN 128

typedef struct Idx Idx;

/* One (latent, value) pair: a blob entry, an image-level value, ... */
typedef struct IdxAct {
    int32_t latent;
    float value;
} IdxAct;

/* ---- patch blobs (pure functions) ---- */

/* Upper bound of the encoded size for T tokens, K per token, d_sae latents. */
size_t idx_blob_bound(int n_tok, int k, int d_sae);
/*
 * Encodes tokens [0, n_tok) of a CSR sparse matrix (latents of token t are
 * idx[rowptr[t]-rowptr[0] .. rowptr[t+1]-rowptr[0]) relative to idx/val, i.e.
 * idx and val point at row 0's first entry; values <= 0 are skipped) keeping
 * the k largest per token. out must hold idx_blob_bound bytes; *n gets the size.
 * PS_EUSAGE for n_tok outside 1..65535, k outside 1..255, a latent outside
 * [0, d_sae) or d_sae > 2^24.
 */
int idx_blob_encode(int n_tok, const int64_t *rowptr, const int32_t *idx, const float *val,
                    int k, int d_sae, uint8_t *out, size_t *n, char *err);
/* Checks a blob's header and sizes; gets T (may be NULL). PS_EFORMAT if malformed. */
int idx_blob_check(const uint8_t *blob, size_t n, int *n_tok, char *err);
/* Value of a code (1..255) under a blob's lo/hi. */
float idx_blob_value(uint8_t code, float lo, float hi);
/*
 * Entries of token t, sorted by value descending (ties: lower latent): up to
 * cap into out, total count in *n_out. PS_EFORMAT for a bad blob, PS_EUSAGE
 * for t outside [0, T).
 */
int idx_blob_token(const uint8_t *blob, size_t n, int t, IdxAct *out, int cap, int *n_out,
                   char *err);
/* map[t] = value of latent s on token t (0 where not stored), t < min(T, cap); *n_tok = T. */
int idx_blob_map(const uint8_t *blob, size_t n, int32_t s, float *map, int cap, int *n_tok,
                 char *err);

/* ---- open, close, transactions ---- */

/*
 * Opens path read-write, creating the schema if the file is new or empty
 * (":memory:" works). WAL journal, 5 s busy timeout, foreign keys on.
 * PS_EFORMAT with a clear message if the file's user_version is not
 * IDX_SCHEMA_VERSION (or the file is not an index). *out is NULL on failure.
 */
int idx_open(Idx **out, const char *path, char *err);
/* Opens an existing index read-only (the explorer, `query`). */
int idx_open_readonly(Idx **out, const char *path, char *err);
void idx_close(Idx *ix); /* NULL is a no-op */
int idx_begin(Idx *ix, char *err);
int idx_commit(Idx *ix, char *err);
void idx_rollback(Idx *ix); /* no-op outside a transaction */
/* Runs SQL text (several statements allowed; results discarded). */
int idx_exec(Idx *ix, const char *sql, char *err);
/*
 * Runs one SELECT and calls row(ctx, ncol, names, values) per row (values as
 * text, NULL as NULL); a non-zero return from row stops early. For `:sql`.
 */
int idx_select(Idx *ix, const char *sql,
               int (*row)(void *ctx, int ncol, const char *const *names,
                          const char *const *values),
               void *ctx, char *err);
int idx_set_meta(Idx *ix, const char *key, const char *value, char *err);
/* Copies the value into buf (cap bytes); PS_EUSAGE if absent. */
int idx_get_meta(Idx *ix, const char *key, char *buf, size_t cap, char *err);

/* ---- inserts ---- */

typedef struct IdxModel {
    int64_t id;                 /* out of idx_add_model; in for lookups */
    char name[IDX_NAMELEN];     /* short name, unique */
    char kind[16];              /* "base" or "adapted" */
    char path[1024];            /* as given */
    char resolved[1024];        /* absolute */
    int64_t size;               /* bytes */
    char sha256[65];            /* hex */
    int hook_layer, n_tokens, d_model;
    char extra[1024];           /* JSON object or "" */
} IdxModel;

typedef struct IdxSae {
    int64_t id;
    char path[1024];
    char sha256[65];
    int d_in, d_sae, hook_layer;
    char trained_on[IDX_NAMELEN];
} IdxSae;

typedef struct IdxDataset {
    int64_t id;
    char name[IDX_NAMELEN];
    char spec[1024];
    int64_t n_images;
    int n_classes;
} IdxDataset;

typedef struct IdxImage {
    int64_t id;
    int64_t dataset_id;
    int64_t pos;                /* position in the dataset */
    char path[1024];
    int label;                  /* -1 = unlabelled */
    int grid;                   /* patch grid side */
    char class_name[IDX_NAMELEN]; /* idx_image only: name of the label */
    int thumb_size;             /* idx_image only: thumbnail side, 0 if none */
} IdxImage;

/*
 * Adds a model, SAE or dataset, or finds the identical one already there
 * (same name; for models and SAEs same sha256 too, else PS_EREFUSED naming
 * the conflict). Sets m->id.
 */
int idx_add_model(Idx *ix, IdxModel *m, char *err);
int idx_add_sae(Idx *ix, IdxSae *s, char *err);
int idx_add_dataset(Idx *ix, IdxDataset *d, char *err);
/* Sets (or replaces) class names 0..n-1 of a dataset. */
int idx_add_classes(Idx *ix, int64_t dataset_id, int n, const char *const *names, char *err);
/*
 * Adds an image, or updates the one at (dataset, pos) (resume never
 * duplicates). Sets im->id. jpeg may be NULL (no thumbnail).
 */
int idx_add_image(Idx *ix, IdxImage *im, const void *jpeg, size_t jpeg_n, int thumb_size,
                  char *err);
/* Replaces the top-n predictions (n <= 5) of an image under a model. */
int idx_put_predictions(Idx *ix, int64_t image, int64_t model, int n, const int *cls,
                        const float *prob, char *err);
/* Replaces the patch blob of (image, model, sae); checks it with idx_blob_check. */
int idx_put_patches(Idx *ix, int64_t image, int64_t model, int64_t sae, const uint8_t *blob,
                    size_t n, char *err);
/* Replaces the image-level top latents of (image, model, sae); top[0] is rank 1. */
int idx_put_image_latents(Idx *ix, int64_t image, int64_t model, int64_t sae, int n,
                          const IdxAct *top, char *err);
/* Adds (or finds) the statset of (model, dataset, sae); *id. k and tau must match if found. */
int idx_add_statset(Idx *ix, int64_t model, int64_t dataset, int64_t sae, int k_top, float tau,
                    int64_t *id, char *err);
/* Deletes every per-latent and per-class row of a statset (before a re-finalise). */
int idx_clear_statset(Idx *ix, int64_t statset, char *err);
int idx_set_statset_done(Idx *ix, int64_t statset, int64_t n_images, char *err);

/* One row of latent_stats. NAN = NULL for the nullable fields; top_class -1 = NULL. */
typedef struct IdxLatent {
    int32_t latent;
    int64_t n_active;
    double freq, mean_act, max_act, max_patch, entropy, label_std, top_share;
    int top_class;
    char top_class_name[IDX_NAMELEN]; /* read only */
    char name[IDX_NAMELEN];           /* read only: annotation name, "" if none */
} IdxLatent;
int idx_put_latent(Idx *ix, int64_t statset, const IdxLatent *l, char *err);

#define IDX_TOP_MEAN 0  /* ranking by image-level activation */
#define IDX_TOP_PATCH 1 /* ranking by max patch activation */
/* Top-k entry; image_id is resolved from (statset's dataset, pos) on insert. */
typedef struct IdxTopImage {
    int rank;                   /* 1-based */
    int64_t image_id;
    int64_t pos;
    int label;                  /* -1 unlabelled */
    float value;
    int token;                  /* IDX_TOP_PATCH: token of the max; else -1 */
} IdxTopImage;
int idx_put_latent_top(Idx *ix, int64_t statset, int32_t latent, int kind, int n,
                       const IdxTopImage *top, char *err);
typedef struct IdxLabelCount {
    int cls;
    int n;
    double weight;
} IdxLabelCount;
int idx_put_latent_labels(Idx *ix, int64_t statset, int32_t latent, int n,
                          const IdxLabelCount *lc, char *err);
int idx_put_class_count(Idx *ix, int64_t statset, int cls, int32_t latent, int64_t n_tokens,
                        double act_sum, char *err);
typedef struct IdxClassLatent {
    int rank;
    int32_t latent;
    int64_t n_tokens;
    char name[IDX_NAMELEN];     /* read only: annotation name */
} IdxClassLatent;
int idx_put_class_top(Idx *ix, int64_t statset, int cls, int n, const IdxClassLatent *top,
                      char *err);

typedef struct IdxEval {
    int64_t model_id, dataset_id, sae_id, select_model_id;
    int cls;                    /* -1 = all classes */
    char mode[16];              /* orig recon on off random dataset */
    int k;
    int64_t n_images;
    double accuracy;            /* percent */
} IdxEval;
int idx_put_eval(Idx *ix, const IdxEval *e, char *err);
/*
 * Fills diff_groups for (base, adapted) from their class_top ranks: high =
 * rank <= hi in both; high_low = rank <= hi in base and not <= lo in adapted;
 * low_high the reverse (paper §4.2.1: hi 50, lo 100). Replaces earlier rows.
 */
int idx_diff_compute(Idx *ix, int64_t base, int64_t adapted, int hi, int lo, char *err);

/* Sets or replaces the annotation of a latent; note may be NULL. */
int idx_annotate(Idx *ix, int64_t sae, int32_t latent, const char *name, const char *note,
                 char *err);
/* Removes it (no error if absent). */
int idx_unannotate(Idx *ix, int64_t sae, int32_t latent, char *err);
int idx_save_query(Idx *ix, const char *name, const char *sql, const char *note, char *err);

/* Build progress of one (model, dataset, sae, shard). */
typedef struct IdxProgress {
    int64_t model_id, dataset_id, sae_id;
    int shard_i, shard_n;
    int64_t batch;              /* last committed batch, -1 none */
    int64_t n_done;
    int done;
} IdxProgress;
/* Upserts p with its accumulator snapshot (state may be NULL). */
int idx_put_progress(Idx *ix, const IdxProgress *p, const void *state, size_t state_n,
                     char *err);
/*
 * Reads the row keyed by p's ids and shard; *found = 0 if none. With state
 * non-NULL, *state gets a malloc'd copy of the snapshot (NULL if none; free()).
 */
int idx_get_progress(Idx *ix, IdxProgress *p, int *found, void **state, size_t *state_n,
                     char *err);

/* One progress row with names instead of ids (for merging shards). */
typedef struct IdxState {
    IdxProgress p;
    char model[IDX_NAMELEN];
    char dataset[IDX_NAMELEN];
    char sae_path[1024];
    char sae_sha256[65];
    uint8_t *state;             /* malloc'd snapshot, NULL if none */
    size_t state_n;
} IdxState;
/* All progress rows, with their snapshots: *out malloc'd; free with idx_states_free. */
int idx_states(Idx *ix, IdxState **out, int *n, char *err);
void idx_states_free(IdxState *s, int n);
/*
 * Copies a shard index's rows into ix, in one transaction of its own (call
 * it outside a transaction: SQLite cannot detach inside one):
 * models, SAEs, datasets (matched by name / path+sha256; conflicts refused),
 * classes, images (ids remapped; an image already present is PS_EREFUSED:
 * shards must not overlap), thumbnails, predictions, patches, image latents,
 * eval rows, annotations, saved queries. Not statistics: merge accumulators.
 */
int idx_copy_shard(Idx *ix, const char *shard, char *err);
int idx_find_dataset(Idx *ix, const char *name, IdxDataset *out, char *err);

/* ---- reads ---- */

typedef struct IdxStatset {
    int64_t id, model_id, dataset_id, sae_id;
    char model[IDX_NAMELEN];
    char kind[16];
    char dataset[IDX_NAMELEN];
    int64_t n_images;
    int k_top;
    float tau;
    int d_sae;
    int n_classes;
    int final;
} IdxStatset;
/* All statsets, ordered by id: *out malloc'd (free()), *n entries. */
int idx_statsets(Idx *ix, IdxStatset **out, int *n, char *err);
int idx_statset(Idx *ix, int64_t id, IdxStatset *out, char *err);
/*
 * Finds a statset by model name (NULL: the first base model's, else the
 * first) and dataset name (NULL: the first). PS_EUSAGE naming what is missing.
 */
int idx_find_statset(Idx *ix, const char *model, const char *dataset, IdxStatset *out,
                     char *err);
/* Looks up models by name (NULL = first base) / SAEs (NULL path = the only/first one). */
int idx_find_model(Idx *ix, const char *name, IdxModel *out, char *err);
int idx_find_sae(Idx *ix, const char *path, IdxSae *out, char *err);
int idx_models(Idx *ix, IdxModel **out, int *n, char *err);

typedef enum IdxSort {
    IDX_SORT_LATENT, IDX_SORT_FREQ, IDX_SORT_MEAN, IDX_SORT_MAX, IDX_SORT_MAXPATCH,
    IDX_SORT_ENTROPY, IDX_SORT_SHARE, IDX_SORT_STD,
} IdxSort;
/* Parses "latent", "freq", "mean", "max", "maxpatch", "entropy", "share", "std"; -1 if unknown. */
int idx_sort_parse(const char *s);
const char *idx_sort_name(int sort);

typedef struct IdxFilter {
    int hide_dead;              /* drop latents with n_active = 0 */
    double min_freq, max_freq;  /* NAN = no bound */
    double min_mean, max_mean;
    double min_entropy, max_entropy;
    int top_class;              /* -1 any */
    const char *search;         /* substring of the annotation name/note or top class name; NULL */
    int annotated;              /* only annotated latents */
} IdxFilter;
void idx_filter_init(IdxFilter *f); /* no filtering */
/*
 * Latents of a statset, filtered, sorted (desc != 0: descending; NULL stats
 * last either way; ties by latent), rows [offset, offset+limit) (limit <= 0:
 * all). *out malloc'd (free()), *n rows; *total (may be NULL) = rows before
 * the limit.
 */
int idx_latents(Idx *ix, int64_t statset, int sort, int desc, const IdxFilter *f, int limit,
                int offset, IdxLatent **out, int *n, int64_t *total, char *err);
/* One latent's statistics; PS_EUSAGE if the statset has no such latent. */
int idx_latent(Idx *ix, int64_t statset, int32_t latent, IdxLatent *out, char *err);
/* Top images of a latent by kind, best first: up to cap into out, *n. */
int idx_latent_top(Idx *ix, int64_t statset, int32_t latent, int kind, IdxTopImage *out,
                   int cap, int *n, char *err);
/* Label distribution of the top images, by n descending. */
int idx_latent_labels(Idx *ix, int64_t statset, int32_t latent, IdxLabelCount *out, int cap,
                      int *n, char *err);
/* Annotation of a latent: name/note into buffers ("" if none); *found. */
int idx_annotation(Idx *ix, int64_t sae, int32_t latent, char *name, size_t name_cap,
                   char *note, size_t note_cap, int *found, char *err);

int idx_image(Idx *ix, int64_t image, IdxImage *out, char *err);
/* Image id of (dataset, pos); PS_EUSAGE if absent. */
int idx_image_at(Idx *ix, int64_t dataset, int64_t pos, int64_t *image, char *err);
/* Thumbnail JPEG: *jpeg malloc'd (free()), *n bytes, *size side; *jpeg NULL if none. */
int idx_thumb(Idx *ix, int64_t image, void **jpeg, size_t *n, int *size, char *err);
typedef struct IdxPred {
    int rank, cls;
    float prob;
    char name[IDX_NAMELEN];
} IdxPred;
int idx_predictions(Idx *ix, int64_t image, int64_t model, IdxPred *out, int cap, int *n,
                    char *err);
/* Image-level top latents (exact), rank order. */
int idx_image_latents(Idx *ix, int64_t image, int64_t model, int64_t sae, IdxAct *out, int cap,
                      int *n, char *err);
/* Latents stored for one token (0 = CLS, patch p = 1+p), value descending. *n = 0 if no blob. */
int idx_patch_latents(Idx *ix, int64_t image, int64_t model, int64_t sae, int token, IdxAct *out,
                      int cap, int *n, char *err);
/* Per-token values of latent s (map[t], t < cap); *n_tok = T, 0 if no blob. */
int idx_latent_map(Idx *ix, int64_t image, int64_t model, int64_t sae, int32_t latent,
                   float *map, int cap, int *n_tok, char *err);
/* The raw patch blob: *blob malloc'd (free()); NULL if none. */
int idx_patch_blob(Idx *ix, int64_t image, int64_t model, int64_t sae, uint8_t **blob,
                   size_t *n, char *err);

/* Class detail: top latents (rank order) of a class under a statset. */
int idx_class_top(Idx *ix, int64_t statset, int cls, IdxClassLatent *out, int cap, int *n,
                  char *err);
/* Class-level count of one latent for one class (0 if not stored). */
int idx_class_count(Idx *ix, int64_t statset, int cls, int32_t latent, int64_t *n_tokens,
                    char *err);
/* Class index by name in a dataset (exact, then case-insensitive); PS_EUSAGE if none. */
int idx_class_find(Idx *ix, int64_t dataset, const char *name, int *cls, char *err);
int idx_class_name(Idx *ix, int64_t dataset, int cls, char *buf, size_t cap, char *err);
/* Number of images of a class in a dataset. */
int idx_class_size(Idx *ix, int64_t dataset, int cls, int64_t *n, char *err);
/* Eval rows for (model, dataset, class), mode/k order: *out malloc'd (free()). */
int idx_evals(Idx *ix, int64_t model, int64_t dataset, int cls, IdxEval **out, int *n,
              char *err);
typedef struct IdxDiffRow {
    int cls;
    char grp[16];               /* high high_low low_high */
    int32_t latent;
    int base_rank, adapted_rank; /* 0 = beyond stored */
    int64_t base_count, adapted_count;
} IdxDiffRow;
/* Diff rows of (base, adapted) for a class (-1: all classes): *out malloc'd (free()). */
int idx_diff_rows(Idx *ix, int64_t base, int64_t adapted, int cls, IdxDiffRow **out, int *n,
                  char *err);

/* ---- synthetic content (tests, benchmarks) ---- */

typedef struct IdxSynth {
    int n_images;               /* images in the dataset */
    int d_sae;                  /* latents */
    int grid;                   /* patch grid side (T = 1 + grid^2) */
    int l0;                     /* mean active latents per token */
    int k_blob;                 /* latents per token in blobs */
    int k_top;                  /* top images per latent */
    int n_classes;
    int n_models;               /* 1: base only; 2: base + adapted */
    int thumb;                  /* thumbnail side in pixels (0 = none) */
    unsigned seed;
    int shard_i, shard_n;       /* only images with pos % shard_n == shard_i (0/1 = all) */
} IdxSynth;
void idx_synth_init(IdxSynth *s); /* small defaults */
/*
 * Fills an empty index with random content in the real format: models
 * "base" (and "adapted"), one SAE, one dataset with classes, images with
 * JPEG thumbnails, predictions, patch blobs, image latents, and finalised
 * statistics computed with stats.h from the same random activations, and a
 * progress row per model holding the final accumulator snapshot (so shards
 * can be merged). An image's content depends only on (seed, pos), so shards
 * merged equal one build. Commits in batches of 500 images. progress (may
 * be NULL) is called every 1000 images.
 */
int idx_synth(Idx *ix, const IdxSynth *s, void (*progress)(int done, int total), char *err);

#endif
