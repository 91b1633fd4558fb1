/* SPDX-License-Identifier: MIT */
/*
 * train.h - SAE training with PatchSAE's exact recipe (patchsae-reference.md
 * §2.1-2.4): W_dec rows renormalised before each step; f = ReLU((x - b_dec)
 * W_enc + b_enc); x_hat = f W_dec + b_dec; loss = mean((x_hat - x)^2 / ||x||)
 * + l1 * mean_tokens(sum_j f_j) + ghost grads for latents that have not fired
 * for more than dead_window steps; the gradient component parallel to each
 * decoder row removed; PyTorch's Adam with lr * min(1, (t+1) / warmup).
 *
 * The backward pass is written by hand and uses ReLU sparsity everywhere but
 * the encoder GEMM (performance.md): decoder forward, decoder and encoder
 * gradients touch only the latents active on a token; ghost grads touch the
 * dead latents through GEMMs over those columns only.
 *
 * Layout: W_enc is kept transposed, W_encT (S, D), so that everything a
 * latent owns (its encoder column, its decoder row, their gradients and Adam
 * moments) is one contiguous row; train_get/train_set convert to and from
 * PatchSAE's W_enc (D, S). Every buffer is allocated once by train_init; a
 * step allocates nothing.
 */
#ifndef PS_TRAIN_H
#define PS_TRAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct SaeTrainConfig {
    int d_in;        /* D */
    int d_sae;       /* S */
    int max_tok;     /* N: most tokens per step (batch buffers are sized for it) */
    float l1;        /* lambda, PatchSAE 8e-5 */
    float lr;        /* base learning rate, 4e-4 */
    int warmup;      /* lr_t = lr * min(1, (t+1) / warmup), 500 */
    int ghost;       /* ghost grads on (1) or off */
    int dead_window; /* dead <=> steps since the latent last fired > dead_window (64) */
    float beta1, beta2, eps; /* Adam: 0.9, 0.999, 1e-8 */
    int chunk;       /* tokens per encoder GEMM (0: 256) */
    int threads;     /* 0 or 2: the sparse passes and Adam on two threads; 1: one */
    int cap_l0;      /* sparse buffer capacity in active latents per token (0: 512);
                        more active latents only split the step into more passes */
} SaeTrainConfig;

/* What one step measured (over the step's tokens, before its update). */
typedef struct SaeTrainStats {
    double loss, mse, l1, ghost; /* loss = mse + l1 + ghost (l1 already times lambda) */
    double l0;                   /* mean active latents per token */
    double explained_var;        /* 1 - sum ||x - x_hat||^2 / sum ||x - mean x||^2 */
    int n_dead;                  /* latents in this step's dead mask */
    int n_fired;                 /* latents active on some token of the batch */
    double lr;                   /* learning rate of this step's update */
    int n_pass;                  /* sparse passes (1 unless L0 exceeded cap_l0) */
    double sec_encode, sec_sparse, sec_ghost, sec_adam; /* wall time of the step's phases */
} SaeTrainStats;

typedef enum TrainBdecInit { TRAIN_BDEC_GEOMETRIC_MEDIAN, TRAIN_BDEC_MEAN, TRAIN_BDEC_ZEROS } TrainBdecInit;

/* Tensors for train_get / train_set, in PatchSAE's layout and parameter order. */
typedef enum TrainTensor {
    TRAIN_W_ENC, TRAIN_B_ENC, TRAIN_W_DEC, TRAIN_B_DEC,         /* (D,S) (S) (S,D) (D) */
    TRAIN_M_W_ENC, TRAIN_M_B_ENC, TRAIN_M_W_DEC, TRAIN_M_B_DEC, /* Adam exp_avg */
    TRAIN_V_W_ENC, TRAIN_V_B_ENC, TRAIN_V_W_DEC, TRAIN_V_B_DEC, /* Adam exp_avg_sq */
    TRAIN_N_TENSOR
} TrainTensor;

typedef struct TrainScratch TrainScratch;

typedef struct SaeTrain {
    SaeTrainConfig cfg;
    float *W_encT;  /* (S, D) W_enc transposed */
    float *b_enc;   /* (S) */
    float *W_dec;   /* (S, D) */
    float *b_dec;   /* (D) */
    float *m[4];    /* Adam exp_avg of W_encT, b_enc, W_dec, b_dec (same shapes) */
    float *v[4];    /* Adam exp_avg_sq, same */
    int32_t *since_fired; /* (S) steps since each latent was last active */
    int64_t step;   /* steps done (Adam's step count) */
    TrainScratch *s;
} SaeTrain;

/* PatchSAE's hyperparameters for D -> S with room for max_tok tokens a step. */
void train_config_default(SaeTrainConfig *c, int d_in, int d_sae, int max_tok);
/* Name, shape (nd dims into shape) and element count of a TrainTensor. */
const char *train_tensor_name(TrainTensor w);
size_t train_tensor_shape(const SaeTrain *t, TrainTensor w, int *nd, int64_t shape[2]);

/* Allocates everything (parameters zero). PS_EUSAGE for a bad config, PS_ENOMEM. */
int train_init(SaeTrain *t, const SaeTrainConfig *c, char *err);
void train_free(SaeTrain *t); /* NULL-safe; zeroes t */

/*
 * PatchSAE's initialisation from a seed: W_enc ~ U(+-sqrt(6/S)), W_dec ~
 * U(+-sqrt(6/D)) with unit-norm rows, b_enc = b_dec = 0; Adam state and
 * counters zeroed, step 0.
 */
void train_init_weights(SaeTrain *t, uint64_t seed);

/*
 * Weiszfeld geometric median of n points of dim floats (row-major): starts at
 * the mean, weights 1 / max(||p - m||, eps), stops when the objective changes
 * by <= ftol * objective or after maxiter updates. med (dim). Returns the
 * number of updates made. Needs 2*dim + n doubles of scratch (allocated).
 */
int train_geometric_median(const float *pts, int n, size_t dim, double eps, int maxiter,
                           double ftol, float *med);
/*
 * b_dec from one batch x (n_img, n_tok, D): the geometric median of the
 * images as points in R^(T*D) (eps 1e-6, maxiter 100, ftol 1e-20), then its
 * mean over tokens; or the mean of all tokens; or zeros. *n_iter (may be
 * NULL) gets the Weiszfeld updates made.
 */
void train_init_b_dec(SaeTrain *t, TrainBdecInit how, const float *x, int n_img, int n_tok,
                      int *n_iter);
/* "geometric_median" / "mean" / "zeros" -> value; -1 when unknown. */
int train_b_dec_init_from_name(const char *s);
const char *train_b_dec_init_name(TrainBdecInit how);

/* Learning rate the next step will use. */
double train_lr(const SaeTrain *t);

/*
 * One training step on x (n, D), n <= max_tok tokens (for PatchSAE, images x
 * tokens flattened). Updates the parameters, Adam state, counters and step;
 * st (may be NULL) gets the step's measurements.
 */
void train_step(SaeTrain *t, const float *x, int n, SaeTrainStats *st);

/*
 * Debug/testing view of the last step: the gradients after the parallel
 * removal (W_encT (S,D) layout for W_enc), the reconstruction of its tokens,
 * and its dead mask. Valid until the next step.
 */
void train_last_grads(const SaeTrain *t, float *g_W_enc, float *g_b_enc, float *g_W_dec,
                      float *g_b_dec);
const float *train_last_xhat(const SaeTrain *t); /* (n, D) */
void train_last_dead(const SaeTrain *t, uint8_t *dead); /* (S) */

/* Copies a tensor out in PatchSAE's layout (W_enc (D,S)) / in. */
void train_get(const SaeTrain *t, TrainTensor w, float *out);
void train_set(SaeTrain *t, TrainTensor w, const float *in);

/*
 * Checkpoint: the parameters, Adam moments (PatchSAE layout) and counters in
 * one safetensors file with metadata d_in, d_sae, step and every SaeTrainConfig
 * field, plus n_meta extra (key, value) pairs. Written to a temporary name and
 * renamed. train_load checks d_in/d_sae against t and restores everything
 * (the config's l1, lr, ... stay as t has them).
 */
int train_save(const SaeTrain *t, const char *path, int n_meta, const char *const *keys,
               const char *const *values, char *err);
int train_load(SaeTrain *t, const char *path, char *err);

#endif
