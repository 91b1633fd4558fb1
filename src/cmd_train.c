/* SPDX-License-Identifier: MIT */
/*
 * cmd_train.c - `patchsae train`: trains a PatchSAE sparse autoencoder on the
 * residual stream of one CLIP vision block (train.c does the step).
 *
 * Data order: as PatchSAE (which shuffles its dataset with seed 42 and
 * streams it, restarting when exhausted), the images are visited in a seeded
 * random order, a fresh permutation per epoch, and each step trains on every
 * selected token of B images. The order is a pure function of (seed, epoch),
 * so a checkpoint needs only (epoch, position) to continue bit for bit.
 * Images that fail to decode are skipped with a warning (the next image in
 * the order takes their place), the same way on every run.
 *
 * Activations come live from CLIP (sub-batches of CLIP_SUB images), or with
 * --cache DIR from shards computed once (acts-NNNNNN.safetensors, F16 or
 * F32, each written to a temporary name and renamed, so an interrupted cache
 * build resumes at the first missing shard) and read through mmap.
 *
 * Outputs: -o OUT (the project's SAE format through sae_save, the recipe and
 * final metrics as JSON in the "recipe" metadata), a checkpoint every
 * --checkpoint-every steps and on Ctrl-C (OUT.ckpt.safetensors unless
 * --checkpoint), an optional CSV log, and a progress line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "clip.h"
#include "cmd.h"
#include "data.h"
#include "img.h"
#include "ps.h"
#include "sae.h"
#include "st.h"
#include "train.h"

const char cmd_train_usage[] =
    "train a sparse autoencoder on CLIP activations (PatchSAE's recipe)\n"
    "usage: patchsae train --model MODEL --data DATA -o OUT.safetensors [options]\n"
    "\n"
    "  --model MODEL        HF model directory or OpenAI-named .safetensors\n"
    "  --layer L            hooked block, 0-based (default n_layers-2, PatchSAE's)\n"
    "  --tokens all|cls|patches  tokens of each image trained on (default all)\n"
    "  --data DATA          image folder, .tsv manifest, IDX file or fashion-mnist:train\n"
    "  --expansion E        d_sae = E * width (default 64); or --d-sae S\n"
    "  --l1 X               L1 coefficient (default 8e-5)\n"
    "  --lr X               Adam learning rate (default 4e-4)\n"
    "  --warmup N           linear warm-up steps (default 500)\n"
    "  --batch B            images per step (default 128, PatchSAE's)\n"
    "  --steps N | --images N  length of the run (default: one pass over DATA)\n"
    "  --no-ghost           no ghost grads\n"
    "  --dead-window N      dead = not fired for more than N steps (default 64)\n"
    "  --b-dec-init geometric_median|mean|zeros  (default geometric_median, from the first batch)\n"
    "  --seed N             image order and initialisation (default 42)\n"
    "  --cache DIR          compute activations once into DIR (resumable), then train from it\n"
    "  --cache-dtype f16|f32  cache precision (default f16)\n"
    "  --cache-shard N      images per cache shard (default: about 256 MB a shard)\n"
    "  --checkpoint PATH    checkpoint file (default OUT with .ckpt before .safetensors)\n"
    "  --checkpoint-every N steps between checkpoints (default steps/10)\n"
    "  --resume CKPT        continue a run from its checkpoint (same options), bit for bit\n"
    "  --log FILE.csv       one CSV row per step (appended when resuming)\n"
    "  --quiet              no progress line on stderr\n"
    "  -o OUT.safetensors   the trained SAE (patchsae info OUT shows the recipe)\n"
    "\n"
    "Ctrl-C writes a checkpoint and stops; --resume continues from it.\n"
    "Exit status: 0 done, 1 interrupted or some images skipped, 2 usage or nothing done.\n";

#define CLIP_SUB 16      /* images per CLIP forward */
#define SHARD_BYTES (256u << 20)

typedef enum { TOK_ALL, TOK_CLS, TOK_PATCHES } TokSel;
static const char *const tok_names[] = { "all", "cls", "patches" };

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct Opts {
    const char *model, *data, *out, *cache, *ckpt, *resume, *log;
    int layer, tokens, expansion, d_sae, batch, warmup, ghost, dead_window, bdec, cache_f16, quiet;
    int cache_shard;
    long long steps, images, ckpt_every;
    float l1, lr;
    uint64_t seed;
} Opts;

/* The image source: the dataset, the model and (optionally) the cache shards. */
typedef struct Src {
    const Opts *o;
    Dataset ds;
    Clip clip;
    ImgPrep prep;
    int layer, T, Tsel, D;     /* hooked block, tokens per image, selected tokens, width */
    float *pix;                /* (CLIP_SUB, 3, S, S) */
    float *resid;              /* (CLIP_SUB, T, D) */
    int shard_n, n_shard;      /* images per shard, shards */
    StFile **shards;           /* (n_shard) */
    int *perm;                 /* (ds.n) order of the current epoch */
    int perm_epoch;
    int64_t epoch, pos;        /* next image: perm[pos] of epoch */
    int skipped;
} Src;

static uint64_t
mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The image order of an epoch: Fisher-Yates driven by splitmix64(seed, epoch). */
static void
make_perm(Src *s, int64_t epoch)
{
    uint64_t x = s->o->seed * 0x9e3779b97f4a7c15ULL ^ (uint64_t)epoch * 0xd1b54a32d192ed03ULL;
    for (int i = 0; i < s->ds.n; i++)
        s->perm[i] = i;
    for (int i = s->ds.n - 1; i > 0; i--) {
        int j = (int)(mix(&x) % (uint64_t)(i + 1));
        int t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
    s->perm_epoch = (int)epoch;
}

static int
next_image(Src *s)
{
    if (s->pos >= s->ds.n) {
        s->epoch++;
        s->pos = 0;
    }
    if (s->perm_epoch != s->epoch)
        make_perm(s, s->epoch);
    return s->perm[s->pos++];
}

/* Selected tokens of resid (n, T, D) into out (n, Tsel, D). */
static void
select_tokens(const Src *s, const float *resid, int n, float *out)
{
    int t0 = s->o->tokens == TOK_PATCHES ? 1 : 0;
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * s->Tsel * s->D, resid + ((size_t)i * s->T + t0) * s->D,
               (size_t)s->Tsel * s->D * sizeof(float));
}

/* Preprocessed pixels of dataset item i into pix; PS_OK or an error naming the image. */
static int
load_pixels(Src *s, int i, float *pix, char *err)
{
    Image im;
    int rc;
    const char *path = data_item_path(&s->ds, i);
    if (path) {
        rc = img_load(&im, path, err);
    } else {
        const uint8_t *g;
        int w, h;
        rc = data_item_gray(&s->ds, i, &g, &w, &h);
        if (rc == PS_OK)
            rc = img_from_gray(&im, g, w, h, err);
    }
    if (rc == PS_OK)
        rc = img_preprocess(&im, &s->prep, pix, err);
    img_free(&im);
    return rc;
}

static void
warn_skip(Src *s, const char *msg)
{
    if (!s->o->quiet)
        fputc('\n', stderr);
    fprintf(stderr, "patchsae train: %s (skipped)\n", msg);
    s->skipped++;
}

/* Activations of n images in a row (items ids) through CLIP into out (n, Tsel, D);
   ok[i] = 0 for an image that failed. */
static int
encode_items(Src *s, const int *ids, int n, float *out, uint8_t *ok, char *err)
{
    size_t img = (size_t)3 * s->clip.cfg.image_size * s->clip.cfg.image_size;
    for (int b0 = 0; b0 < n; b0 += CLIP_SUB) {
        int m = MIN(CLIP_SUB, n - b0), k = 0;
        int pos[CLIP_SUB];
        for (int i = 0; i < m; i++) {
            char e2[PS_ERRLEN];
            ok[b0 + i] = load_pixels(s, ids[b0 + i], s->pix + (size_t)k * img, e2) == PS_OK;
            if (!ok[b0 + i]) {
                warn_skip(s, e2);
                continue;
            }
            pos[k++] = b0 + i;
        }
        if (k == 0)
            continue;
        int rc = clip_encode_image(&s->clip, s->pix, k, s->layer, s->resid, NULL, err);
        if (rc != PS_OK)
            return rc;
        for (int i = 0; i < k; i++)
            select_tokens(s, s->resid + (size_t)i * s->T * s->D, 1,
                          out + (size_t)pos[i] * s->Tsel * s->D);
    }
    return PS_OK;
}

/* ---- the activation cache ---- */

static char *
shard_path(const char *dir, int k)
{
    size_t n = strlen(dir) + 40;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/acts-%06d.safetensors", dir, k);
    return p;
}

/* The metadata every shard carries: a shard made for other settings is rebuilt. */
static void
cache_id(const Src *s, char *buf, size_t n)
{
    snprintf(buf, n, "model=%s;layer=%d;tokens=%s;data=%s;items=%d;shard=%d;dtype=%s",
             s->o->model, s->layer, tok_names[s->o->tokens], s->o->data, s->ds.n, s->shard_n,
             s->o->cache_f16 ? "F16" : "F32");
}

static int
shard_ok(const Src *s, StFile *f, int k)
{
    char id[2048];
    cache_id(s, id, sizeof id);
    const char *m = st_meta(f, "patchsae.cache");
    const StTensor *a = st_find(f, "acts"), *v = st_find(f, "valid");
    int n = MIN(s->shard_n, s->ds.n - k * s->shard_n);
    return m && !strcmp(m, id) && a && v && a->nd == 3 && a->shape[0] == n &&
           a->shape[1] == s->Tsel && a->shape[2] == s->D &&
           a->dtype == (s->o->cache_f16 ? ST_F16 : ST_F32) && v->dtype == ST_U8 && v->nd == 1 &&
           v->shape[0] == n;
}

static int
cache_build(Src *s, char *err)
{
    const Opts *o = s->o;
    if (mkdir(o->cache, 0777) != 0 && errno != EEXIST)
        return ps_seterr(err, PS_EIO, "%s: %s", o->cache, strerror(errno));
    size_t per = (size_t)s->Tsel * s->D * (o->cache_f16 ? 2 : 4);
    s->shard_n = o->cache_shard > 0 ? o->cache_shard : (int)MAX(1, SHARD_BYTES / per);
    s->shard_n = MIN(s->shard_n, s->ds.n);
    s->n_shard = (s->ds.n + s->shard_n - 1) / s->shard_n;
    s->shards = xcalloc((size_t)s->n_shard, sizeof *s->shards);
    size_t nf = (size_t)s->shard_n * s->Tsel * s->D;
    float *acts = ps_big_alloc(nf * sizeof(float));
    uint16_t *half = o->cache_f16 ? ps_big_alloc(nf * sizeof(uint16_t)) : NULL;
    uint8_t *valid = xmalloc((size_t)s->shard_n);
    int *ids = xmalloc((size_t)s->shard_n * sizeof *ids);
    int rc = PS_OK, built = 0;
    if (!acts || (o->cache_f16 && !half)) {
        rc = ps_seterr(err, PS_ENOMEM, "cannot map a cache shard of %zu floats", nf);
        goto out;
    }
    char id[2048];
    cache_id(s, id, sizeof id);
    double t0 = ps_now();
    for (int k = 0; k < s->n_shard && !interrupted; k++) {
        char *p = shard_path(o->cache, k);
        StFile *f = NULL;
        if (st_open(&f, p, NULL) == PS_OK && shard_ok(s, f, k)) {
            s->shards[k] = f;
            free(p);
            continue;
        }
        st_close(f);
        int n = MIN(s->shard_n, s->ds.n - k * s->shard_n);
        for (int i = 0; i < n; i++)
            ids[i] = k * s->shard_n + i;
        for (int b = 0; b < n && rc == PS_OK && !interrupted; b += CLIP_SUB) {
            int m = MIN(CLIP_SUB, n - b);
            rc = encode_items(s, ids + b, m, acts + (size_t)b * s->Tsel * s->D, valid + b, err);
            if (!o->quiet && isatty(2)) {
                double done = (double)k * s->shard_n + b + m, el = ps_now() - t0;
                fprintf(stderr, "\rtrain: caching activations %.0f/%d images (%.1f images/s)\033[K",
                        done, s->ds.n, (done - 0) / MAX(el, 1e-9));
            }
        }
        if (rc != PS_OK || interrupted) {
            free(p);
            break;
        }
        size_t cnt = (size_t)n * s->Tsel * s->D;
        int64_t sh[3] = { n, s->Tsel, s->D }, vn = n;
        if (half)
            for (size_t i = 0; i < cnt; i++)
                half[i] = ps_f32_to_f16(acts[i]);
        StWriter *w = st_writer_new();
        st_writer_add(w, "acts", half ? ST_F16 : ST_F32, 3, sh, half ? (void *)half : (void *)acts);
        st_writer_add(w, "valid", ST_U8, 1, &vn, valid);
        st_writer_meta(w, "patchsae.cache", id);
        rc = st_writer_save(w, p, err);
        st_writer_free(w);
        if (rc == PS_OK)
            rc = st_open(&s->shards[k], p, err);
        free(p);
        if (rc != PS_OK)
            break;
        built++;
    }
    if (!o->quiet && isatty(2) && built)
        fputc('\n', stderr);
out:
    ps_big_free(acts, nf * sizeof(float));
    ps_big_free(half, nf * sizeof(uint16_t));
    free(valid);
    free(ids);
    if (rc == PS_OK && interrupted)
        rc = ps_seterr(err, PS_ECANCEL, "interrupted while building the cache in %s "
                       "(run again to continue it)", o->cache);
    return rc;
}

/* Activations of item i from the cache into out (Tsel, D); 0 if the image had failed. */
static int
cache_get(Src *s, int i, float *out)
{
    StFile *f = s->shards[i / s->shard_n];
    int r = i % s->shard_n;
    const uint8_t *v = st_find(f, "valid")->data;
    if (!v[r])
        return 0;
    const StTensor *a = st_find(f, "acts");
    size_t n = (size_t)s->Tsel * s->D;
    if (a->dtype == ST_F16) {
        const unsigned char *p = (const unsigned char *)a->data + (size_t)r * n * 2;
        for (size_t j = 0; j < n; j++)
            out[j] = ps_f16_to_f32((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
    } else {
        memcpy(out, (const unsigned char *)a->data + (size_t)r * n * 4, n * sizeof(float));
    }
    return 1;
}

/* The next batch of B images (in the run's order, failed images replaced) into x. */
static int
next_batch(Src *s, int B, float *x, char *err)
{
    int got = 0, ids[CLIP_SUB];
    uint8_t ok[CLIP_SUB];
    size_t per = (size_t)s->Tsel * s->D;
    while (got < B) {
        if (s->shards) {
            int i = next_image(s);
            if (cache_get(s, i, x + got * per))
                got++;
            continue;
        }
        int m = MIN(CLIP_SUB, B - got);
        for (int j = 0; j < m; j++)
            ids[j] = next_image(s);
        int rc = encode_items(s, ids, m, x + got * per, ok, err);
        if (rc != PS_OK)
            return rc;
        int w = got;
        for (int j = 0; j < m; j++) /* close the gaps left by failed images */
            if (ok[j]) {
                if (w != got + j)
                    memmove(x + w * per, x + (got + j) * per, per * sizeof(float));
                w++;
            }
        got = w;
        if (s->skipped > 0 && s->skipped >= s->ds.n)
            return ps_seterr(err, PS_EFORMAT, "%s: no image could be read", s->o->data);
    }
    return PS_OK;
}

/* ---- options ---- */

static int
parse_ll(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "patchsae train: %s %s: expected an integer in [%lld, %lld]\n", opt, s,
                lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int
parse_f(const char *opt, const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e6) {
        fprintf(stderr, "patchsae train: %s %s: expected a non-negative number\n", opt, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static char *
recipe_json(const Opts *o, const Src *s, const SaeTrain *t, long long steps,
            const SaeTrainStats *last, int64_t images_seen)
{
    json_t *j = json_object();
    json_object_set_new(j, "method", json_string("PatchSAE"));
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "layer", json_integer(s->layer));
    json_object_set_new(j, "module_name", json_string("resid"));
    json_object_set_new(j, "tokens", json_string(tok_names[o->tokens]));
    json_object_set_new(j, "tokens_per_image", json_integer(s->Tsel));
    json_object_set_new(j, "data", json_string(o->data));
    json_object_set_new(j, "data_images", json_integer(s->ds.n));
    json_object_set_new(j, "d_in", json_integer(t->cfg.d_in));
    json_object_set_new(j, "d_sae", json_integer(t->cfg.d_sae));
    json_object_set_new(j, "l1_coefficient", json_real(t->cfg.l1));
    json_object_set_new(j, "lr", json_real(t->cfg.lr));
    json_object_set_new(j, "lr_scheduler", json_string("constantwithwarmup"));
    json_object_set_new(j, "lr_warm_up_steps", json_integer(t->cfg.warmup));
    json_object_set_new(j, "batch_images", json_integer(o->batch));
    json_object_set_new(j, "batch_tokens", json_integer((json_int_t)o->batch * s->Tsel));
    json_object_set_new(j, "steps", json_integer(steps));
    json_object_set_new(j, "use_ghost_grads", json_boolean(t->cfg.ghost));
    json_object_set_new(j, "dead_feature_window", json_integer(t->cfg.dead_window));
    json_object_set_new(j, "b_dec_init", json_string(train_b_dec_init_name(o->bdec)));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "optimizer", json_string("adam(0.9,0.999,1e-8)"));
    json_object_set_new(j, "activation_cache", o->cache ? json_string(o->cache) : json_null());
    if (last) {
        json_t *f = json_object();
        json_object_set_new(f, "step", json_integer(t->step));
        json_object_set_new(f, "images", json_integer(images_seen));
        json_object_set_new(f, "loss", json_real(last->loss));
        json_object_set_new(f, "mse_loss", json_real(last->mse));
        json_object_set_new(f, "l1_loss", json_real(last->l1));
        json_object_set_new(f, "ghost_loss", json_real(last->ghost));
        json_object_set_new(f, "l0", json_real(last->l0));
        json_object_set_new(f, "explained_variance", json_real(last->explained_var));
        json_object_set_new(f, "dead_fraction", json_real((double)last->n_dead / t->cfg.d_sae));
        json_object_set_new(j, "final", f);
    }
    char *r = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(j);
    return r ? r : xstrdup("{}");
}

static int
save_ckpt(const char *path, const Opts *o, const Src *s, const SaeTrain *t, long long steps,
          const SaeTrainStats *last, int64_t images_seen, char *err)
{
    char *rec = recipe_json(o, s, t, steps, last, images_seen);
    char ep[32], pos[32], im[32];
    snprintf(ep, sizeof ep, "%lld", (long long)s->epoch);
    snprintf(pos, sizeof pos, "%lld", (long long)s->pos);
    snprintf(im, sizeof im, "%lld", (long long)images_seen);
    const char *keys[] = { "patchsae.format", "recipe", "data_epoch", "data_pos", "images_seen" };
    const char *vals[] = { "train_checkpoint", rec, ep, pos, im };
    int rc = train_save(t, path, 5, keys, vals, err);
    free(rec);
    return rc;
}

/* A checkpoint resumes only the run it came from: the fields that define it must agree. */
static int
check_resume(const char *path, const char *rec, const char *mine, char *err)
{
    static const char *keys[] = { "model", "layer", "tokens", "data", "data_images", "d_sae",
                                  "batch_images", "seed", "b_dec_init", "use_ghost_grads",
                                  "l1_coefficient", "lr", "lr_warm_up_steps",
                                  "dead_feature_window" };
    json_t *a = json_loads(rec ? rec : "", 0, NULL), *b = json_loads(mine, 0, NULL);
    int rc = PS_OK;
    if (!a) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: no readable recipe in the metadata", path);
    } else {
        for (size_t i = 0; i < LEN(keys) && rc == PS_OK; i++)
            if (!json_equal(json_object_get(a, keys[i]), json_object_get(b, keys[i]))) {
                char *x = json_dumps(json_object_get(a, keys[i]), JSON_ENCODE_ANY);
                char *y = json_dumps(json_object_get(b, keys[i]), JSON_ENCODE_ANY);
                rc = ps_seterr(err, PS_EUSAGE, "%s: the checkpoint has %s %s, this run %s: resume "
                               "with the options of the original run", path, keys[i],
                               x ? x : "null", y ? y : "null");
                free(x);
                free(y);
            }
    }
    json_decref(a);
    json_decref(b);
    return rc;
}

static void
progress_line(const SaeTrain *t, long long steps, const SaeTrainStats *st, double tok_s)
{
    fprintf(stderr, "\rstep %lld/%lld  %.0f tok/s  loss %.4g (mse %.4g l1 %.4g ghost %.3g)  "
            "L0 %.1f  EV %.3f  dead %.1f%%\033[K", (long long)t->step, steps, tok_s, st->loss,
            st->mse, st->l1, st->ghost, st->l0, st->explained_var,
            100.0 * st->n_dead / t->cfg.d_sae);
}

int
cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' }, { "layer", required_argument, NULL, 'L' },
        { "tokens", required_argument, NULL, 'T' }, { "data", required_argument, NULL, 'd' },
        { "expansion", required_argument, NULL, 'x' }, { "d-sae", required_argument, NULL, 'S' },
        { "l1", required_argument, NULL, '1' }, { "lr", required_argument, NULL, 'r' },
        { "warmup", required_argument, NULL, 'w' }, { "batch", required_argument, NULL, 'b' },
        { "steps", required_argument, NULL, 's' }, { "images", required_argument, NULL, 'i' },
        { "no-ghost", no_argument, NULL, 'G' }, { "dead-window", required_argument, NULL, 'W' },
        { "b-dec-init", required_argument, NULL, 'B' }, { "seed", required_argument, NULL, 'e' },
        { "cache", required_argument, NULL, 'c' }, { "cache-dtype", required_argument, NULL, 'C' },
        { "checkpoint", required_argument, NULL, 'k' }, { "cache-shard", required_argument, NULL, 'H' },
        { "checkpoint-every", required_argument, NULL, 'K' },
        { "resume", required_argument, NULL, 'R' }, { "log", required_argument, NULL, 'g' },
        { "quiet", no_argument, NULL, 'q' }, { "output", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    Opts o = { .layer = -1, .expansion = 64, .batch = 128, .warmup = 500, .ghost = 1,
               .dead_window = 64, .bdec = TRAIN_BDEC_GEOMETRIC_MEDIAN, .cache_f16 = 1,
               .l1 = 8e-5f, .lr = 4e-4f, .seed = 42, .steps = -1, .images = -1,
               .ckpt_every = -1, .quiet = !isatty(2) };
    long long v;
    int ch;
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "o:q", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model = optarg; break;
        case 'd': o.data = optarg; break;
        case 'o': o.out = optarg; break;
        case 'c': o.cache = optarg; break;
        case 'k': o.ckpt = optarg; break;
        case 'R': o.resume = optarg; break;
        case 'g': o.log = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'G': o.ghost = 0; break;
        case 'L': if (parse_ll("--layer", optarg, 0, 10000, &v)) return 2; o.layer = (int)v; break;
        case 'x': if (parse_ll("--expansion", optarg, 1, 4096, &v)) return 2; o.expansion = (int)v; break;
        case 'S': if (parse_ll("--d-sae", optarg, 1, 1 << 24, &v)) return 2; o.d_sae = (int)v; break;
        case 'w': if (parse_ll("--warmup", optarg, 1, 1LL << 40, &v)) return 2; o.warmup = (int)MIN(v, 1 << 30); break;
        case 'b': if (parse_ll("--batch", optarg, 1, 1 << 20, &v)) return 2; o.batch = (int)v; break;
        case 's': if (parse_ll("--steps", optarg, 1, 1LL << 40, &o.steps)) return 2; break;
        case 'i': if (parse_ll("--images", optarg, 1, 1LL << 50, &o.images)) return 2; break;
        case 'W': if (parse_ll("--dead-window", optarg, 0, 1 << 30, &v)) return 2; o.dead_window = (int)v; break;
        case 'e': if (parse_ll("--seed", optarg, 0, 1LL << 62, &v)) return 2; o.seed = (uint64_t)v; break;
        case 'H': if (parse_ll("--cache-shard", optarg, 1, 1 << 30, &v)) return 2; o.cache_shard = (int)v; break;
        case 'K': if (parse_ll("--checkpoint-every", optarg, 1, 1LL << 40, &o.ckpt_every)) return 2; break;
        case '1': if (parse_f("--l1", optarg, &o.l1)) return 2; break;
        case 'r': if (parse_f("--lr", optarg, &o.lr) || o.lr <= 0) return 2; break;
        case 'T':
            for (o.tokens = 0; o.tokens < 3 && strcmp(optarg, tok_names[o.tokens]); o.tokens++)
                ;
            if (o.tokens == 3) {
                fprintf(stderr, "patchsae train: --tokens %s: expected all, cls or patches\n", optarg);
                return 2;
            }
            break;
        case 'B':
            o.bdec = train_b_dec_init_from_name(optarg);
            if (o.bdec < 0) {
                fprintf(stderr, "patchsae train: --b-dec-init %s: expected geometric_median, "
                        "mean or zeros\n", optarg);
                return 2;
            }
            break;
        case 'C':
            if (strcmp(optarg, "f16") && strcmp(optarg, "f32")) {
                fprintf(stderr, "patchsae train: --cache-dtype %s: expected f16 or f32\n", optarg);
                return 2;
            }
            o.cache_f16 = !strcmp(optarg, "f16");
            break;
        default:
            fprintf(stderr, "patchsae train: unknown option or missing value: %s\n%s",
                    argv[optind - 1], cmd_train_usage);
            return 2;
        }
    }
    if (optind < argc || !o.model || !o.data || !o.out) {
        fprintf(stderr, "patchsae train: %s\n%s",
                optind < argc ? "unexpected argument" : !o.model ? "--model is required"
                : !o.data ? "--data is required" : "-o OUT is required", cmd_train_usage);
        return 2;
    }
    if (o.steps > 0 && o.images > 0) {
        fprintf(stderr, "patchsae train: give --steps or --images, not both\n");
        return 2;
    }

    char err[PS_ERRLEN] = "";
    int status = 2;
    Src s = { .o = &o, .perm_epoch = -1 };
    SaeTrain t = { 0 };
    float *x = NULL;
    size_t xbytes = 0;
    FILE *log = NULL;
    char *ckpt = NULL;
    if (data_open(&s.ds, o.data, err) != PS_OK) {
        fprintf(stderr, "patchsae train: %s\n", err);
        return 2;
    }
    if (s.ds.n == 0) {
        fprintf(stderr, "patchsae train: %s: no images\n", o.data);
        data_close(&s.ds);
        return 2;
    }
    if (clip_open(&s.clip, o.model, NULL, err) != PS_OK) {
        fprintf(stderr, "patchsae train: %s\n", err);
        data_close(&s.ds);
        return 2;
    }
    const ClipConfig *g = &s.clip.cfg;
    s.layer = o.layer >= 0 ? o.layer : g->vision.layers - 2;
    if (s.layer < 0 || s.layer >= g->vision.layers) {
        fprintf(stderr, "patchsae train: --layer %d: the model has %d vision blocks\n", s.layer,
                g->vision.layers);
        goto done;
    }
    o.layer = s.layer;
    s.T = g->n_tok;
    s.D = g->vision.width;
    s.Tsel = o.tokens == TOK_ALL ? s.T : o.tokens == TOK_CLS ? 1 : s.T - 1;
    s.prep = (ImgPrep){ g->resize, g->crop_h, { g->mean[0], g->mean[1], g->mean[2] },
                        { g->std[0], g->std[1], g->std[2] } };
    if (clip_reserve(&s.clip, CLIP_SUB, 0, err) != PS_OK) {
        fprintf(stderr, "patchsae train: %s\n", err);
        goto done;
    }
    size_t img = (size_t)3 * g->image_size * g->image_size;
    s.pix = xmalloc(CLIP_SUB * img * sizeof(float));
    s.resid = xmalloc((size_t)CLIP_SUB * s.T * s.D * sizeof(float));
    s.perm = xmalloc((size_t)s.ds.n * sizeof *s.perm);
    int S = o.d_sae ? o.d_sae : o.expansion * s.D;
    long long steps = o.steps > 0 ? o.steps
                      : o.images > 0 ? (o.images + o.batch - 1) / o.batch
                                     : (s.ds.n + o.batch - 1) / o.batch;
    long long every = o.ckpt_every > 0 ? o.ckpt_every : MAX(1, steps / 10);
    int N = o.batch * s.Tsel;
    if ((long long)o.batch * s.Tsel > (1 << 30)) {
        fprintf(stderr, "patchsae train: --batch %d x %d tokens is too large\n", o.batch, s.Tsel);
        goto done;
    }
    SaeTrainConfig c;
    train_config_default(&c, s.D, S, N);
    c.l1 = o.l1;
    c.lr = o.lr;
    c.warmup = o.warmup;
    c.ghost = o.ghost;
    c.dead_window = o.dead_window;
    if (train_init(&t, &c, err) != PS_OK) {
        fprintf(stderr, "patchsae train: %s\n", err);
        goto done;
    }
    xbytes = (size_t)N * s.D * sizeof(float);
    x = ps_big_alloc(xbytes);
    if (!x) {
        fprintf(stderr, "patchsae train: out of memory for a batch of %d tokens\n", N);
        goto done;
    }
    if (o.ckpt) {
        ckpt = xstrdup(o.ckpt);
    } else {
        size_t n = strlen(o.out);
        const char *suf = ".safetensors";
        size_t k = n >= strlen(suf) && !strcmp(o.out + n - strlen(suf), suf) ? n - strlen(suf) : n;
        ckpt = xmalloc(k + 32);
        snprintf(ckpt, k + 32, "%.*s.ckpt.safetensors", (int)k, o.out);
    }
    struct sigaction sa = { 0 }, old_sa;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_sa);

    if (o.cache && cache_build(&s, err) != PS_OK) {
        fprintf(stderr, "patchsae train: %s\n", err);
        status = interrupted ? 1 : 2;
        goto restore;
    }

    int64_t images_seen = 0;
    if (o.resume) {
        StFile *f;
        if (st_open(&f, o.resume, err) != PS_OK) {
            fprintf(stderr, "patchsae train: %s\n", err);
            goto restore;
        }
        char *mine = recipe_json(&o, &s, &t, steps, NULL, 0);
        int rc = check_resume(o.resume, st_meta(f, "recipe"), mine, err);
        free(mine);
        const char *ep = st_meta(f, "data_epoch"), *ps = st_meta(f, "data_pos"),
                   *im = st_meta(f, "images_seen");
        if (rc == PS_OK && (!ep || !ps || !im)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: not a training checkpoint (no data position)",
                           o.resume);
        }
        if (rc == PS_OK) {
            s.epoch = atoll(ep);
            s.pos = atoll(ps);
            images_seen = atoll(im);
            if (s.epoch < 0 || s.pos < 0 || s.pos > s.ds.n)
                rc = ps_seterr(err, PS_EFORMAT, "%s: bad data position %s/%s", o.resume, ep, ps);
        }
        st_close(f);
        if (rc == PS_OK)
            rc = train_load(&t, o.resume, err);
        if (rc != PS_OK) {
            fprintf(stderr, "patchsae train: %s\n", err);
            goto restore;
        }
    } else {
        train_init_weights(&t, o.seed);
        if (o.bdec != TRAIN_BDEC_ZEROS) {
            int64_t ep = s.epoch, pos = s.pos, sk = s.skipped;
            if (next_batch(&s, o.batch, x, err) != PS_OK) {
                fprintf(stderr, "patchsae train: %s\n", err);
                goto restore;
            }
            s.epoch = ep; /* the first step trains on the same images */
            s.pos = pos;
            s.skipped = (int)sk;
            train_init_b_dec(&t, o.bdec, x, o.batch, s.Tsel, NULL);
        }
    }
    if (o.log) {
        struct stat sb;
        int fresh = !(o.resume && stat(o.log, &sb) == 0 && sb.st_size > 0);
        log = fopen(o.log, fresh ? "w" : "a");
        if (!log) {
            fprintf(stderr, "patchsae train: %s: %s\n", o.log, strerror(errno));
            goto restore;
        }
        if (fresh)
            fprintf(log, "step,images,lr,loss,mse_loss,l1_loss,ghost_loss,l0,explained_variance,"
                         "dead,fired,seconds\n");
    }

    int show = !o.quiet && isatty(2);
    SaeTrainStats st = { 0 };
    double t0 = ps_now(), tl = 0;
    int64_t tok0 = 0;
    status = 0;
    while (t.step < steps && !interrupted) {
        double a = ps_now();
        if (next_batch(&s, o.batch, x, err) != PS_OK) {
            if (show)
                fputc('\n', stderr);
            fprintf(stderr, "patchsae train: %s\n", err);
            status = 2;
            break;
        }
        train_step(&t, x, N, &st);
        images_seen += o.batch;
        tok0 += N;
        double b = ps_now();
        if (log)
            fprintf(log, "%lld,%lld,%.6g,%.7g,%.7g,%.7g,%.7g,%.3f,%.6f,%d,%d,%.3f\n",
                    (long long)t.step, (long long)images_seen, st.lr, st.loss, st.mse, st.l1,
                    st.ghost, st.l0, st.explained_var, st.n_dead, st.n_fired, b - a);
        if (show && (b - tl > 0.2 || t.step == steps)) {
            progress_line(&t, steps, &st, tok0 / MAX(b - t0, 1e-9));
            tl = b;
        }
        if (t.step % every == 0 && t.step < steps &&
            save_ckpt(ckpt, &o, &s, &t, steps, &st, images_seen, err) != PS_OK) {
            if (show)
                fputc('\n', stderr);
            fprintf(stderr, "patchsae train: %s\n", err);
            status = 2;
            break;
        }
    }
    if (show)
        fputc('\n', stderr);
    if (status == 0 && (interrupted || t.step < steps)) {
        if (save_ckpt(ckpt, &o, &s, &t, steps, &st, images_seen, err) != PS_OK) {
            fprintf(stderr, "patchsae train: %s\n", err);
            status = 2;
        } else {
            fprintf(stderr, "patchsae train: interrupted at step %lld; checkpoint %s "
                    "(continue with --resume %s)\n", (long long)t.step, ckpt, ckpt);
            status = 1;
        }
    } else if (status == 0) {
        /* the final SAE, in PatchSAE's layout, through sae.c's writer */
        Sae sae = { .d_in = s.D, .d_sae = S, .hook_layer = s.layer, .apply_b_dec_to_input = 1,
                    .model_name = (char *)o.model, .hook_name = "resid" };
        size_t ne = (size_t)s.D * S;
        sae.W_enc = ps_big_alloc(ne * sizeof(float));
        if (!sae.W_enc) {
            fprintf(stderr, "patchsae train: out of memory writing %s\n", o.out);
            status = 2;
        } else {
            train_get(&t, TRAIN_W_ENC, sae.W_enc);
            sae.b_enc = t.b_enc;
            sae.W_dec = t.W_dec;
            sae.b_dec = t.b_dec;
            sae.recipe = recipe_json(&o, &s, &t, steps, &st, images_seen);
            if (sae_save(&sae, o.out, err) != PS_OK) {
                fprintf(stderr, "patchsae train: %s\n", err);
                status = 2;
            } else if (!o.quiet) {
                fprintf(stderr, "patchsae train: %lld steps, %lld images; loss %.4g, L0 %.1f, "
                        "explained variance %.3f, dead %.1f%%; wrote %s\n", (long long)t.step,
                        (long long)images_seen, st.loss, st.l0, st.explained_var,
                        100.0 * st.n_dead / S, o.out);
            }
            free(sae.recipe);
            ps_big_free(sae.W_enc, ne * sizeof(float));
        }
        if (status == 0 && s.skipped)
            status = 1;
    }
restore:
    sigaction(SIGINT, &old_sa, NULL);
done:
    if (log)
        fclose(log);
    free(ckpt);
    ps_big_free(x, xbytes);
    train_free(&t);
    for (int k = 0; k < s.n_shard; k++)
        st_close(s.shards ? s.shards[k] : NULL);
    free(s.shards);
    free(s.pix);
    free(s.resid);
    free(s.perm);
    clip_close(&s.clip);
    data_close(&s.ds);
    return status;
}
