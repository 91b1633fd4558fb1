/* SPDX-License-Identifier: MIT */
/*
 * probe.h - "try your own image" (PatchSAE demo, reference §7): one image
 * that is not in the index runs through the models, the SAE and the class
 * prompts that built the index, so its latents, patches and predictions can
 * be set beside the index's statistics and reference images.
 *
 * probe_open reads from an index (idx.h) where the weights are (models and
 * saes rows: the path as given and resolved; the builder's meta keys
 * "sae:ID:resolved" and "sae:ID:size"), checks each file's size and SHA-256
 * against the record (a mismatch is a warning naming both digests, and a
 * refusal unless force), loads the base CLIP, the SAE and every adapted
 * (MaPLe) model of the index, and builds each model's zero-shot classifier
 * over the class list of the index's dataset with the prompts the builder
 * recorded (models.extra "prompts": one template, the 80 ImageNet templates,
 * or MaPLe's learned prompts).
 *
 * probe_image then does what the builder did for one image, so every number
 * is comparable with the index's rows for that image (see ProbeModelResult):
 * the same resize and crop (the crop is the thumbnail), the same forwards,
 * the same SAE encode of all T tokens, the same image-level definition
 * (mean over ALL tokens, CLS and MaPLe prompts included, summed in double in
 * token order, as stats.h), the same top-32 order, the same PSP1 blob
 * encoding and the same top-5 predictions. Bit-for-bit equality holds when
 * the index was built with --batch 1; with larger batches BLAS may round an
 * image's GEMM rows differently by its place in the batch (build.c), so
 * values agree to float rounding (~1e-6 relative) and blob codes to one step.
 *
 * probe_groups gives the demo's grouping of the top latents of a base and an
 * adapted model (image level, or one patch): top-5 of each, `common` (in
 * both sets; by the larger of the two values, descending), base-only and
 * adapted-only (by latent index DESCENDING, as the original demo orders
 * them: app.py get_init_radio_options), each at most PROBE_TOP; optionally
 * after the demo's noise filter (latents whose mean activation in the
 * index's base statistics exceeds a threshold, 0.1 in the demo, are hidden).
 * probe_group is the same grouping on any two ranked lists, for callers that
 * hold index rows rather than a ProbeResult (the explorer's Image view).
 *
 * Lifecycle: probe_open / probe_close (a Probe borrows the Idx: close the
 * Probe first); a ProbeResult is zeroed by the caller, filled (and its
 * buffers reused) by every probe_image, freed with probe_result_free.
 * A Probe is not thread-safe (one Clip scratch arena).
 */
#ifndef PS_PROBE_H
#define PS_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "clip.h"
#include "idx.h"
#include "sae.h"

typedef struct Image Image;
typedef struct Maple Maple;

#define PROBE_MAX_MODELS 8      /* base + up to 7 adapted (as build.h) */
#define PROBE_TOP 5             /* latents per model and per group (the demo's 5) */
#define PROBE_IMAGE_TOP 32      /* image-level top latents kept (build.h BUILD_IMAGE_TOP) */
#define PROBE_NOISE 0.1f        /* the demo's noise threshold on base mean activation */
#define PROBE_THUMB_QUALITY 85  /* JPEG quality of saved thumbnails (build.h) */
#define PROBE_DATASET "probed"  /* dataset name probe_save uses by default */

typedef struct ProbeOptions {
    /* Overrides of the recorded paths (NULL: from the index). */
    const char *model;          /* base CLIP (directory or safetensors) */
    const char *tokenizer;      /* tokenizer (NULL: recorded, else beside the model) */
    const char *sae;            /* SAE file or SAELens directory */
    const char *maple[PROBE_MAX_MODELS - 1]; /* adapted models in index order */
    int n_maple;
    /* The dataset whose class list, prompts and base statistics are used (NULL:
     * the first dataset with statistics of the base model). */
    const char *dataset;
    int force;                  /* load despite a size or SHA-256 mismatch (still warned) */
    int no_verify;              /* skip hashing entirely (benchmarks; sizes are still checked) */
    /* Receives each warning (one line, no newline); NULL: warnings are dropped. */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} ProbeOptions;

typedef struct ProbeModel {
    IdxModel rec;               /* its row in the index */
    char file[1024];            /* the weights file that was loaded and hashed */
    int adapted;                /* 0: base CLIP; 1: MaPLe prompts on the base */
    Maple *maple;               /* owned; NULL for the base */
    int n_tok;                  /* T = 1 + G*G (+ n_ctx) */
    int64_t statset;            /* its statistics on the dataset; -1 if none */
    float *cls_w;               /* (C, E) zero-shot classifier, rows L2-normalised */
} ProbeModel;

typedef struct Probe {
    Idx *ix;                    /* borrowed */
    Clip clip;                  /* base weights, shared by every model */
    Sae sae;
    SaeWork work;
    IdxSae sae_rec;             /* the SAE's row */
    char sae_file[1024];        /* the SAE file loaded */
    int n_models;
    ProbeModel models[PROBE_MAX_MODELS]; /* [0] the base model, then adapted ones */
    int layer;                  /* hook layer, 0-based */
    int S, G, D, E, T_max;      /* image side, grid, width, embedding, most tokens */
    int k_blob;                 /* latents per token in blobs (meta k_per_token) */
    int blob_tok;               /* tokens in blobs: 1 + G*G (meta blob_tokens) */
    int64_t dataset_id;         /* the dataset of classes and statistics; -1 if none */
    char dataset[IDX_NAMELEN];
    int C;                      /* classes (0: no predictions) */
    char **class_names;         /* (C) */
    char prompts[64];           /* how the base model was prompted ("a photo of a {}.", ...) */
    float *base_mean;           /* (S) base statset's mean_act (NAN: dead or no statistics) */
    /* scratch, allocated once */
    float *pixels;              /* (3, S, S) */
    float *resid;               /* (T_max, D) */
    float *embeds;              /* (E) */
    float *logits;              /* (C) */
    double *acc;                /* (S) image-level sums */
    /* seconds: probe_open hashing, loading, class prompts; the last probe_image */
    double t_hash, t_load, t_text, t_image;
} Probe;

/* One model's view of one image; every field matches an index row for it. */
typedef struct ProbeModelResult {
    int n_tok;                  /* T (tokens encoded: CLS, patches, MaPLe prompts) */
    SaeSparse sp;               /* latents of all T tokens, CSR, rowptr[0] = 0 */
    float *image;               /* (S) image-level a(s) = sum_t f(t,s) / T, exact as stats.h */
    IdxAct top[PROBE_IMAGE_TOP]; /* == image_latents rows (value desc, latent asc) */
    int n_top;
    uint8_t *blob;              /* PSP1 of tokens [0, blob_tok) == patches.blob */
    size_t blob_n, blob_cap;
    int n_pred;                 /* == predictions rows: top-5 (ties to the lower class) */
    int pred_cls[5];
    float pred_prob[5];
} ProbeModelResult;

typedef struct ProbeResult {
    char path[1024];            /* what was probed */
    int S, G;                   /* crop side, patch grid */
    uint8_t *crop;              /* (S, S, 3) the preprocessed crop: the thumbnail */
    int n_models;
    ProbeModelResult m[PROBE_MAX_MODELS]; /* in Probe.models order */
    int d_sae;                  /* sizes the buffers are allocated for */
} ProbeResult;

/* The demo's groups of one base / adapted pair. */
typedef struct ProbeGroups {
    IdxAct top[2][PROBE_TOP];   /* [0] base, [1] adapted: the first PROBE_TOP of each set */
    int n_top[2];
    IdxAct common[PROBE_TOP];   /* in both sets; value = the larger; value desc, latent asc */
    float common_v[PROBE_TOP][2]; /* the two values of each common latent */
    int n_common;
    IdxAct only[2][PROBE_TOP];  /* [0] base-only, [1] adapted-only: latent DESCENDING (demo) */
    int n_only[2];
} ProbeGroups;

#define PROBE_IMAGE (-1)        /* probe_groups: image level */
#define PROBE_PATCH_ONLY 1      /* flags: a patch's own top-5 (default: the demo's union) */

void probe_options_init(ProbeOptions *o);
/*
 * Opens the models of ix as described above. Errors: PS_EUSAGE (the index has
 * no base model or SAE, a file cannot be found: the message names what was
 * tried), PS_EREFUSED (size or SHA-256 differ from the record, without
 * o->force: the message names the file and both digests), and whatever
 * loading returns. On failure p is closed.
 */
int probe_open(Probe *p, Idx *ix, const ProbeOptions *o, char *err);
void probe_close(Probe *p); /* NULL-safe, idempotent */

/* Probes an image file (decoded with img_load). r is reused from call to call. */
int probe_image(Probe *p, const char *path, ProbeResult *r, char *err);
/* The same on a decoded image; name (may be NULL) goes into r->path. */
int probe_image_rgb(Probe *p, const Image *im, const char *name, ProbeResult *r, char *err);
void probe_result_free(ProbeResult *r); /* zeroes it */

/* Latents of patch (row, col) (token 1 + row*G + col) under model m: CSR row, n entries. */
void probe_patch(const ProbeResult *r, int m, int row, int col, const int32_t **idx,
                 const float **val, int *n);
/* 1 when latent s is hidden by the noise filter at threshold noise (<= 0: filter off). */
int probe_noisy(const Probe *p, int32_t s, float noise);

/*
 * Pure grouping: base and adapted sets (ranked best first, distinct latents,
 * any length) -> g. PatchSAE app.py semantics; see the top of this file.
 */
void probe_group(const IdxAct *base, int n_base, const IdxAct *adapted, int n_adapted,
                 ProbeGroups *g);
/*
 * Groups models 0 (base) and `adapted` of r at image level (patch =
 * PROBE_IMAGE) or at patch index patch (row*G + col). Sets: the top
 * PROBE_TOP latents by value (ties: lower latent) after the noise filter
 * (noise <= 0: off); for a patch, the demo's union of the image-level and
 * the patch's top-5, a latent in both taking its patch value
 * (flags & PROBE_PATCH_ONLY: the patch's top-5 alone). PS_EUSAGE for a bad
 * model or patch.
 */
int probe_groups(const Probe *p, const ProbeResult *r, int adapted, int patch, int flags,
                 float noise, ProbeGroups *g, char *err);

/*
 * Stores r in the index (opened read-write) as an image of dataset `dataset`
 * (NULL: PROBE_DATASET; created with the class list of p's dataset), with its
 * thumbnail, predictions, patch blobs and image-level top latents under every
 * model, in one transaction. An image of that dataset with the same path is
 * replaced, not duplicated. *image_id (may be NULL) gets its id.
 */
int probe_save(Probe *p, const ProbeResult *r, const char *dataset, int64_t *image_id,
               char *err);

#endif
