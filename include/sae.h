/* SPDX-License-Identifier: MIT */
/*
 * sae.h - the sparse autoencoder of PatchSAE (a ReLU SAE on the residual
 * stream of one ViT block): its weights, loaded from PatchSAE .pt
 * checkpoints, SAELens folders or the project's own safetensors, and the
 * encode / decode kernels over many tokens at a time.
 *
 *   f    = ReLU((x − b_dec) W_enc + b_enc)      latents, (n_tok, S)
 *   xhat = f W_dec + b_dec                      reconstruction, (n_tok, D)
 *
 * Latents are sparse (L0 about 150 of 49152 for PatchSAE), so the encoder
 * returns them in CSR form (SaeSparse) and never keeps more than one dense
 * tile of SAE_BLOCK tokens x SAE_COLS latents; the decoder reads only the
 * non-zeros. Encode many images per call (e.g. 8 x 197 tokens): W_enc is
 * streamed from memory once per SAE_BLOCK tokens.
 */
#ifndef PS_SAE_H
#define PS_SAE_H

#include <stddef.h>
#include <stdint.h>

#define SAE_BLOCK 2048           /* tokens per encoder GEMM */
#define SAE_COLS 1024            /* latents per encoder GEMM for a full block (wider for fewer
                                  * tokens): the dense tile holds SAE_BLOCK x SAE_COLS floats */
#define SAE_NO_LAYER (-1000)     /* hook_layer when the file does not say */
#define SAE_PATCH_BIAS 0.105131256516992f /* PatchSAE adds this in masked patch-in (−SAE_BIAS) */

typedef struct Sae {
    int d_in, d_sae;     /* D, S */
    float *W_enc;        /* (D, S) */
    float *b_enc;        /* (S) */
    float *W_dec;        /* (S, D) */
    float *b_dec;        /* (D) */
    int hook_layer;      /* block whose output is hooked: >= 0 from the first, < 0 from the
                          * end (PatchSAE's block_layer -2); SAE_NO_LAYER if unknown */
    int apply_b_dec_to_input; /* 1 (PatchSAE, most SAELens): subtract b_dec before W_enc */
    char *model_name;    /* e.g. "openai/clip-vit-base-patch16", or NULL */
    char *hook_name;     /* "resid" (PatchSAE module_name), "blocks.9.hook_resid_post", or NULL */
    char *recipe;        /* training recipe JSON (own format), or NULL */
    float *mem;          /* one ps_big_alloc block behind the four tensors */
    size_t mem_n;        /* its size in bytes */
} Sae;

/*
 * Latents in CSR form: the latents of token t are idx[rowptr[t] .. rowptr[t+1])
 * in ascending order, with values val[...] > 0. Start from a zeroed struct;
 * the encoder grows the arrays and reuses them from call to call.
 */
typedef struct SaeSparse {
    int n_tok;
    int cap;         /* capacity of idx and val */
    int64_t *rowptr; /* (n_tok+1) */
    int32_t *idx;    /* (nnz) */
    float *val;      /* (nnz) */
} SaeSparse;

/* Scratch of the encoder: one dense tile, allocated once per SAE shape. Each
   tile is cut into n_parts column parts, one per pool thread (ten.h), each
   thread appending its parts' non-zeros to its own list. */
#define SAE_THREADS 8            /* lists: at least ten_threads() */
typedef struct SaeWork {
    int d_in, d_sae;
    int n_cols;      /* narrowest tile (for a full block): min(S, SAE_COLS) */
    int n_tiles;     /* most tiles across S: ceil(S / n_cols) */
    int n_parts;     /* parts per tile: ten_threads() */
    float *xc;       /* (SAE_BLOCK, D): x − b_dec */
    float *f;        /* (SAE_BLOCK * n_cols): one dense tile of nb tokens, as wide as fits */
    int32_t *cnt;    /* (n_tiles * n_parts, SAE_BLOCK) non-zeros per part row */
    int64_t *part;   /* (n_tiles * n_parts, 2): thread whose list holds the part, its start */
    int32_t *tidx[SAE_THREADS]; /* (tcap[k]): one token block's non-zeros, part after part */
    float *tval[SAE_THREADS];   /* (tcap[k]) */
    int64_t tcap[SAE_THREADS];
    int64_t tlen[SAE_THREADS];
    size_t bytes;    /* of xc and f */
} SaeWork;

/* Zeroed weights of the given shape (for training and tests). */
int sae_init(Sae *s, int d_in, int d_sae, char *err);
/*
 * Loads an SAE from path: a PatchSAE checkpoint (.pt: {"cfg" or "config":
 * ViTSAERunnerConfig, "state_dict": {W_enc, b_enc, W_dec, b_dec}}), a SAELens
 * folder or its sae_weights.safetensors (with cfg.json beside it), or the
 * project's own safetensors ("patchsae.format" = "sae" in the metadata).
 * Missing or misshapen tensors are PS_ESHAPE naming them; unsupported
 * SAELens variants (JumpReLU, TopK, normalised inputs) PS_EFORMAT.
 */
int sae_load(Sae *s, const char *path, char *err);
/* Writes the project's format: W_enc, b_enc, W_dec, b_dec (F32) and metadata
 * patchsae.format=sae, d_in, d_sae, hook_layer, model, hook_name, recipe. */
int sae_save(const Sae *s, const char *path, char *err);
void sae_free(Sae *s); /* NULL-safe; zeroes the struct */
/* The 0-based block index for a model of n_layers blocks, or -1 if unknown/out of range. */
int sae_layer(const Sae *s, int n_layers);

int sae_work_init(SaeWork *w, const Sae *s, char *err);
void sae_work_free(SaeWork *w);
void sae_sparse_free(SaeSparse *sp);
/* Non-zeros of sp. */
int64_t sae_sparse_nnz(const SaeSparse *sp);

/* f of n_tok tokens x (n_tok, D) into out (CSR). PS_ENOMEM if nnz passes INT_MAX. */
int sae_encode_sparse(const Sae *s, const float *x, int n_tok, SaeSparse *out, SaeWork *w,
                      char *err);
/* f (n_tok, S) dense, for tests: bit for bit the sparse path's values for the same x and
 * n_tok (the same GEMM tiles). */
void sae_encode_dense(const Sae *s, const float *x, int n_tok, float *f, SaeWork *w);
/* xhat (n_tok, D) = f W_dec + b_dec, reading only the non-zeros. */
void sae_decode_sparse(const Sae *s, const SaeSparse *sp, float *xhat);
/* xhat = (f ⊙ keep) W_dec + b_dec + add_const; keep (S) of 0/1, NULL keeps all.
 * PatchSAE's top-k masking uses add_const = SAE_PATCH_BIAS. */
void sae_decode_masked(const Sae *s, const SaeSparse *sp, const uint8_t *keep, float add_const,
                       float *xhat);
/* xhat (n_tok, D) = f (n_tok, S) W_dec + b_dec, dense (one GEMM). */
void sae_decode_dense(const Sae *s, const float *f, int n_tok, float *xhat);

#endif
