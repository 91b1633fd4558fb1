/* SPDX-License-Identifier: MIT */
/*
 * build.h - building an index (`patchsae index`): a dataset runs through
 * the base CLIP and each adapted (MaPLe) model in batches, the residual
 * stream at the SAE's hook layer is encoded with the SAE, and everything the
 * index holds is stored through idx.h / stats.h: thumbnails, top-5
 * predictions, PSP1 patch blobs, image-level top latents, and the
 * per-latent / per-class statistics.
 *
 * A "model" (BuildModel) is the base Clip, or the base Clip plus one MaPLe
 * checkpoint's prompts: both answer the same two questions, "residual
 * stream and embedding of these pixels" and "zero-shot classifier of these
 * class names", so the batch loop does not know which one it runs.
 *
 * Crash safety: images, their rows under every model, each model's
 * accumulator snapshot (stats_save) and its progress row are committed in
 * one transaction per chunk (one or more batches; see BuildOptions.checkpoint).
 * A killed build leaves the last committed chunk; build_open with resume
 * restores the snapshots and continues after progress.n_done, so the result
 * equals an uninterrupted build bit for bit (stats.h is order-independent),
 * and no row is ever written twice.
 *
 * Lifecycle: build_open (loads everything, checks it, prepares the index and
 * the text classifiers), build_step until *done, build_finish (finalises the
 * statistics), build_close. build_close without build_finish leaves the
 * index resumable at its last commit, as a kill would.
 */
#ifndef PS_BUILD_H
#define PS_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "clip.h"
#include "data.h"
#include "idx.h"
#include "sae.h"
#include "stats.h"

#define BUILD_MAX_MODELS 8      /* base + up to 7 adapted */
#define BUILD_IMAGE_TOP 32      /* image-level top latents stored per image */
#define BUILD_BATCH 8           /* images per forward */
#define BUILD_JPEG_QUALITY 85   /* thumbnails */

typedef struct BuildOptions {
    const char *model;          /* base CLIP: HF directory or OpenAI-named safetensors */
    const char *tokenizer;      /* NULL: beside the model */
    const char *name;           /* base model's name in the index (NULL: "clip") */
    const char *maple[BUILD_MAX_MODELS - 1]; /* MaPLe checkpoints */
    const char *maple_name[BUILD_MAX_MODELS - 1]; /* their names (NULL: "maple", "maple-2", ...) */
    int n_maple;
    const char *sae;            /* SAE file or SAELens directory */
    const char *data;           /* dataset spec (data_open) */
    const char *classes;        /* class-name file (NULL: the dataset's names) */
    const char *dataset_name;   /* NULL: derived from the spec */
    const char *out;            /* the index file */
    int layer;                  /* -1: the SAE's hook layer (or n_layers-2 if it has none) */
    int batch;                  /* images per forward (<= 0: BUILD_BATCH) */
    int shard_i, shard_n;       /* shard_n <= 1: the whole dataset */
    int ensemble;               /* 80 ImageNet templates instead of "a photo of a {}." */
    int resume;                 /* continue an existing index */
    int force;                  /* delete an existing output first */
    int k_top, k_blob, class_top; /* 0: IDX_TOPK, IDX_BLOB_K, IDX_CLASS_TOP */
    float tau;                  /* < 0: IDX_TAU */
    int thumb_quality;          /* 0: BUILD_JPEG_QUALITY */
    double checkpoint;          /* least seconds between commits (0: every batch, unless a
                                 * snapshot costs more than a tenth of the work since the last) */
    /* Called for each image that cannot be read (it is skipped and counted). */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} BuildOptions;

typedef struct BuildModel {
    char name[IDX_NAMELEN];
    int adapted;                /* 0: base CLIP; 1: MaPLe prompts on top of it */
    const char *path;           /* weights as given (base model or MaPLe checkpoint) */
    struct Maple *maple;        /* the MaPLe prompts (adapted models), owned; NULL for the base */
    char sha256[65];            /* of the weights file (the checkpoint for MaPLe) */
    int n_tok;                  /* T = 1 + G*G (+ n_ctx) */
    float *cls_w;               /* (C, E) zero-shot classifier, L2-normalised rows (ensemble: mean) */
    Stats st;                   /* accumulator over this shard */
    int64_t id, statset;        /* rows in the index */
} BuildModel;

typedef struct Build {
    BuildOptions opt;
    Clip clip;                  /* the base model's weights, shared by all models */
    Sae sae;
    SaeWork work;
    SaeSparse sp;               /* latents of one batch under one model, (B*T) rows */
    Dataset ds;
    Idx *ix;
    int n_models;
    BuildModel models[BUILD_MAX_MODELS];
    int layer;                  /* hook layer, 0-based */
    int C, B, S, G, D, E, T_max; /* classes, batch, image side, grid, width, embed, max tokens */
    int begin, end;             /* this shard's items [begin, end) */
    char dataset[IDX_NAMELEN];  /* the dataset's name in the index */
    int64_t dataset_id, sae_id;
    int64_t n_done;             /* items of the shard handled (read or skipped), committed or not */
    int64_t n_committed;        /* items covered by the last commit */
    int64_t chunk;              /* chunks committed (progress.batch = chunk - 1) */
    int64_t n_skipped;          /* items skipped, all runs of this shard */
    int64_t n_indexed;          /* images indexed in this run */
    int64_t n_resumed;          /* items already done when this run started */
    int in_txn;                 /* a chunk is open */
    double last_commit, commit_cost;
    /* scratch, allocated once */
    float *pixels;              /* (B, 3, S, S) */
    uint8_t *crop;              /* (S, S, 3) */
    float *resid;               /* (B, T_max, D) */
    float *embeds;              /* (B, E) */
    float *logits;              /* (B, C) */
    uint8_t *blob;              /* idx_blob_bound(T, k_blob, d_sae) */
    int *pos;                   /* (B) dataset positions of the batch's loaded images */
    int *slot;                  /* (B) their slots in the batch */
    int64_t *image_id;          /* (B) */
    size_t big_n;               /* bytes behind pixels..embeds (one ps_big_alloc) */
    /* seconds spent, this run */
    double t_decode, t_clip, t_sae, t_stats, t_db, t_commit;
} Build;

void build_options_init(BuildOptions *o);
/*
 * Opens the model(s), SAE and dataset, checks they fit together (SAE d_in
 * against the model width, hook layer in range: PS_EUSAGE naming both
 * numbers), creates or reopens the index (an existing file is PS_EREFUSED
 * unless resume or force), records models, SAE and dataset with path,
 * resolved path, size and sha256, computes each model's class embeddings,
 * and restores the snapshots when resuming. On failure b is closed.
 */
int build_open(Build *b, const BuildOptions *o, char *err);
/*
 * Processes the next batch of the shard under every model; commits when a
 * chunk is due (and always at the shard's end). *done = 1 once every item
 * is handled. Unreadable images are skipped (opt.warn) and counted.
 */
int build_step(Build *b, int *done, char *err);
/* Commits the open chunk, if any (an early stop that keeps all work so far). */
int build_commit(Build *b, char *err);
/* Finalises every model's statistics, marks the shard done, computes the base/adapted diff. */
int build_finish(Build *b, char *err);
/* Frees everything; an open chunk is rolled back (as if killed). NULL-safe, idempotent. */
void build_close(Build *b);

/* Total items of the shard, and how many are handled. */
int64_t build_total(const Build *b);

/* "dir/x.safetensors", "fashion-mnist:test" -> a short dataset name ("x", "fashion-mnist-test"). */
void build_dataset_name(const char *spec, char *out, size_t n);

#endif
