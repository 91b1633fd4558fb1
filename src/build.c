/* SPDX-License-Identifier: MIT */
/*
 * build.c - the index builder of build.h, the glue between the pipeline
 * stages: data (items) -> img (decode, PIL-exact resize and crop, the crop
 * itself becomes the JPEG thumbnail so the patch grid lines up, normalise)
 * -> clip (forward to the hook layer and on to the embedding, batched) ->
 * sae (sparse encode of every token of the batch at once) -> stats (the
 * accumulator) and idx (rows), per model.
 *
 * Three activation definitions are kept apart (patchsae-reference.md §10):
 * image-level statistics and the per-image top latents use the mean over
 * all T tokens (CLS and MaPLe prompt tokens included, as PatchSAE), via
 * stats_add_image; class counts are tokens above tau, also over all T
 * tokens (stats.h); the patch blob, which the explorer's overlays read,
 * holds only CLS and the G*G patches (the first 1 + G*G tokens).
 *
 * Transactions: a chunk (one or more batches) is one transaction holding
 * its image rows, every model's rows, every model's accumulator snapshot
 * and progress row (n_done = items of the shard handled, skipped ones
 * included) and the skipped count (meta "skipped:DATASET:i/n"). Chunks end
 * when opt.checkpoint seconds have passed since the last commit and the work
 * since then is at least ten times what the last commit cost (the snapshot
 * of a 49,152-latent accumulator is tens of MB before zlib), so crash safety
 * costs under ~10 % of the time; results do not depend on where chunks end.
 *
 * Batches are blocks of the whole dataset: batch k holds items [kB, kB+B),
 * one slot each, whatever the shard; slots of items outside the shard or
 * unreadable are zero images, computed and not stored. BLAS rounding
 * depends on a row's place in a GEMM, so this makes every number a function
 * of (dataset, models, B) alone: shards merged, resumed builds and builds
 * with skipped images give bit-identical rows and statistics. It costs at
 * most B-1 wasted images at each end of a shard.
 *
 * Buffers are allocated once in build_open (pixels, residual stream and
 * embeddings in one ps_big_alloc; the SAE's dense block in SaeWork; the CSR
 * arrays grow once and are reused).
 */
#include "build.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "img.h"
#include "maple.h"
#include "ps.h"
#include "sha256.h"
#include "ten.h"

void
build_options_init(BuildOptions *o)
{
    memset(o, 0, sizeof *o);
    o->layer = -1;
    o->batch = BUILD_BATCH;
    o->shard_n = 1;
    o->tau = -1;
}

void
build_dataset_name(const char *spec, char *out, size_t n)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    size_t l = strlen(buf);
    while (l > 1 && buf[l - 1] == '/')
        buf[--l] = 0;
    const char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    char name[1024];
    snprintf(name, sizeof name, "%s", base);
    /* IDX files: "t10k-images-idx3-ubyte.gz" -> "t10k"; others lose their extension */
    char *p = strstr(name, "-images-idx");
    if (!p)
        p = strstr(name, "-labels-idx");
    if (p && p != name)
        *p = 0;
    else if ((p = strrchr(name, '.')) && p != name)
        *p = 0;
    for (p = name; *p; p++)
        if (*p == ':' || *p == ' ')
            *p = '-';
    snprintf(out, n, "%s", name[0] ? name : "dataset");
}

int64_t
build_total(const Build *b)
{
    return b->end - b->begin;
}

/* ---- models: base CLIP, or CLIP + MaPLe prompts, behind two calls ---- */

/* resid (N, T, D) at the hook layer and embeds (N, E) of N preprocessed images. */
static int
model_encode(Build *b, BuildModel *m, const float *pixels, int N, char *err)
{
    if (m->maple)
        return maple_encode_image(m->maple, &b->clip, pixels, N, b->layer, b->resid, b->embeds,
                                  err);
    return clip_encode_image(&b->clip, pixels, N, b->layer, b->resid, b->embeds, err);
}

/* m->cls_w (C, E): the zero-shot classifier over the dataset's class names. */
static int
model_classifier(Build *b, BuildModel *m, char *err)
{
    const char *const *names = (const char *const *)b->ds.class_names;
    m->cls_w = xmalloc((size_t)MAX(b->C, 1) * b->E * sizeof *m->cls_w);
    if (b->C == 0)
        return PS_OK;
    if (m->maple) /* its learned prompts: "X X {name}." with ctx in place of the X */
        return maple_encode_classes(m->maple, &b->clip, names, b->C, NULL, m->cls_w, err);
    if (b->opt.ensemble)
        return clip_zeroshot_weights(&b->clip, names, b->C, clip_imagenet_templates,
                                     CLIP_N_TEMPLATES, 0, m->cls_w, err);
    /* one template: every class in one batched text forward */
    int ctx = b->clip.cfg.ctx, rc = PS_OK;
    int32_t *ids = xmalloc((size_t)b->C * ctx * sizeof *ids);
    char text[1024];
    for (int k = 0; k < b->C && !rc; k++) {
        clip_format_prompt(text, sizeof text, clip_photo_template, names[k]);
        rc = clip_tokenize(&b->clip, text, ids + (size_t)k * ctx, err);
    }
    if (!rc)
        rc = clip_encode_text(&b->clip, ids, b->C, m->cls_w, err);
    free(ids);
    return rc;
}

static void
model_free(BuildModel *m)
{
    if (m->maple) {
        maple_free(m->maple);
        free(m->maple);
    }
    free(m->cls_w);
    stats_free(&m->st);
    memset(m, 0, sizeof *m);
}

/* ---- records: path, resolved path, size, sha256 of the weights file ---- */

/* The file whose bytes are the weights: path itself, or NAME inside a directory. */
static void
weights_file(const char *path, const char *const *names, char *out, size_t n)
{
    struct stat sb;
    snprintf(out, n, "%s", path);
    if (stat(path, &sb) || !S_ISDIR(sb.st_mode))
        return;
    for (int i = 0; names[i]; i++) {
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (!stat(p, &sb) && S_ISREG(sb.st_mode)) {
            snprintf(out, n, "%s", p);
            return;
        }
    }
}

static int
record_file(const char *path, const char *const *names, char *resolved, size_t rn, char *sha,
            int64_t *size, char *file, size_t fn, char *err)
{
    char *r = realpath(path, NULL);
    snprintf(resolved, rn, "%s", r ? r : path);
    free(r);
    weights_file(path, names, file, fn);
    return sha256_file(file, sha, size, err);
}

static char *
json_extra(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* ---- opening ---- */

static int
file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int
remove_index(const char *path, char *err)
{
    static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < LEN(sfx); i++) {
        char p[2048];
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        if (unlink(p) && errno != ENOENT)
            return ps_seterr(err, PS_EIO, "%s: cannot remove: %s", p, strerror(errno));
    }
    return PS_OK;
}

static int
load_inputs(Build *b, char *err)
{
    const BuildOptions *o = &b->opt;
    int rc = data_open(&b->ds, o->data, err);
    if (!rc && o->classes)
        rc = data_set_classnames(&b->ds, o->classes, err);
    if (rc)
        return rc;
    if ((rc = clip_open(&b->clip, o->model, o->tokenizer, err)))
        return rc;
    if ((rc = sae_load(&b->sae, o->sae, err)))
        return rc;
    const ClipConfig *g = &b->clip.cfg;
    int L = g->vision.layers;
    if (b->sae.d_in != g->vision.width)
        return ps_seterr(err, PS_EUSAGE,
                         "SAE %s reads %d-wide activations but model %s is %d wide", o->sae,
                         b->sae.d_in, o->model, g->vision.width);
    if (b->sae.hook_layer == SAE_NO_LAYER) {
        b->layer = o->layer >= 0 ? o->layer : MAX(L - 2, 0);
    } else {
        b->layer = sae_layer(&b->sae, L);
        if (b->layer < 0)
            return ps_seterr(err, PS_EUSAGE,
                             "SAE %s hooks layer %d but model %s has %d layers (0..%d)", o->sae,
                             b->sae.hook_layer, o->model, L, L - 1);
        if (o->layer >= 0 && o->layer != b->layer)
            return ps_seterr(err, PS_EUSAGE, "--layer %d, but SAE %s was trained on layer %d",
                             o->layer, o->sae, b->layer);
    }
    if (b->layer >= L)
        return ps_seterr(err, PS_EUSAGE, "--layer %d: model %s has %d layers (0..%d)", b->layer,
                         o->model, L, L - 1);
    /* the models: base, then one per MaPLe checkpoint on top of it */
    BuildModel *m0 = &b->models[0];
    snprintf(m0->name, sizeof m0->name, "%s", o->name ? o->name : "clip");
    m0->path = o->model;
    m0->n_tok = g->n_tok;
    b->n_models = 1;
    for (int i = 0; i < o->n_maple; i++) {
        BuildModel *m = &b->models[b->n_models];
        Maple *mp = xcalloc(1, sizeof *mp);
        if ((rc = maple_load(mp, o->maple[i], &b->clip, err))) {
            free(mp);
            return rc;
        }
        m->maple = mp;
        m->adapted = 1;
        m->path = o->maple[i];
        m->n_tok = g->n_tok + mp->n_ctx;
        if (o->maple_name[i])
            snprintf(m->name, sizeof m->name, "%s", o->maple_name[i]);
        else if (i == 0)
            snprintf(m->name, sizeof m->name, "maple");
        else
            snprintf(m->name, sizeof m->name, "maple-%d", i + 1);
        b->n_models++;
        for (int j = 0; j < b->n_models - 1; j++)
            if (!strcmp(b->models[j].name, m->name))
                return ps_seterr(err, PS_EUSAGE, "two models named '%s': give --maple-name",
                                 m->name);
    }
    return PS_OK;
}

static int
alloc_buffers(Build *b, char *err)
{
    const ClipConfig *g = &b->clip.cfg;
    b->S = g->image_size;
    b->G = g->grid;
    b->D = g->vision.width;
    b->E = g->embed_dim;
    b->C = b->ds.n_class;
    b->T_max = 0;
    for (int i = 0; i < b->n_models; i++)
        b->T_max = MAX(b->T_max, b->models[i].n_tok);
    size_t S = (size_t)b->S, B = (size_t)b->B;
    size_t nf = B * 3 * S * S + B * (size_t)b->T_max * b->D + B * b->E + B * MAX(b->C, 1);
    b->big_n = nf * sizeof(float);
    b->pixels = ps_big_alloc(b->big_n);
    if (!b->pixels)
        return ps_seterr(err, PS_ENOMEM, "out of memory for a batch of %d images", b->B);
    b->resid = b->pixels + B * 3 * S * S;
    b->embeds = b->resid + B * (size_t)b->T_max * b->D;
    b->logits = b->embeds + B * b->E;
    b->crop = xmalloc(S * S * 3);
    b->blob = xmalloc(idx_blob_bound(1 + b->G * b->G, b->opt.k_blob, b->sae.d_sae));
    b->pos = xmalloc(B * sizeof *b->pos);
    b->slot = xmalloc(B * sizeof *b->slot);
    b->image_id = xmalloc(B * sizeof *b->image_id);
    int rc = sae_work_init(&b->work, &b->sae, err);
    if (!rc)
        rc = clip_reserve(&b->clip, b->B, b->T_max - g->n_tok, err);
    return rc;
}

static void
skipped_key(const Build *b, char *key, size_t n)
{
    snprintf(key, n, "skipped:%s:%d/%d", b->dataset, b->opt.shard_i, b->opt.shard_n);
}

/* Registers models, SAE, dataset, classes and statsets; reads progress. In one transaction. */
static int
register_all(Build *b, char *err)
{
    const BuildOptions *o = &b->opt;
    Idx *ix = b->ix;
    int rc = PS_OK;
    static const char *const model_names[] = { "model.safetensors", NULL };
    static const char *const sae_names[] = { "sae_weights.safetensors", NULL };
    for (int i = 0; i < b->n_models && !rc; i++) {
        BuildModel *m = &b->models[i];
        IdxModel r;
        memset(&r, 0, sizeof r);
        snprintf(r.name, sizeof r.name, "%s", m->name);
        snprintf(r.kind, sizeof r.kind, "%s", m->adapted ? "adapted" : "base");
        snprintf(r.path, sizeof r.path, "%s", m->path);
        char file[2048];
        rc = record_file(m->path, model_names, r.resolved, sizeof r.resolved, r.sha256, &r.size,
                         file, sizeof file, err);
        r.hook_layer = b->layer;
        r.n_tokens = m->n_tok;
        r.d_model = b->D;
        json_t *x = json_object();
        json_object_set_new(x, "weights", json_string(file));
        json_object_set_new(x, "layout",
                            json_string(b->clip.layout == CLIP_LAYOUT_HF ? "hf" : "openai"));
        if (b->clip.tok_path)
            json_object_set_new(x, "tokenizer", json_string(b->clip.tok_path));
        json_object_set_new(x, "image_size", json_integer(b->S));
        json_object_set_new(x, "grid", json_integer(b->G));
        if (m->maple) {
            const Maple *mp = m->maple;
            json_object_set_new(x, "base", json_string(b->models[0].name));
            json_object_set_new(x, "base_sha256", json_string(b->models[0].sha256));
            json_object_set_new(x, "n_ctx", json_integer(mp->n_ctx));
            json_object_set_new(x, "depth", json_integer(mp->depth));
            json_object_set_new(x, "epoch", json_integer(mp->epoch));
            json_object_set_new(x, "prompts", json_string("maple"));
        } else {
            json_object_set_new(x, "prompts",
                                json_string(o->ensemble ? "imagenet-80" : clip_photo_template));
        }
        char *ex = json_extra(x);
        snprintf(r.extra, sizeof r.extra, "%s", ex ? ex : "");
        free(ex);
        if (!rc)
            rc = idx_add_model(ix, &r, err);
        m->id = r.id;
        snprintf(m->sha256, sizeof m->sha256, "%s", r.sha256);
    }
    IdxSae a;
    memset(&a, 0, sizeof a);
    snprintf(a.path, sizeof a.path, "%s", o->sae);
    a.d_in = b->sae.d_in;
    a.d_sae = b->sae.d_sae;
    a.hook_layer = b->layer;
    snprintf(a.trained_on, sizeof a.trained_on, "%s",
             b->sae.model_name ? b->sae.model_name : "");
    char resolved[1024], file[2048];
    int64_t size = 0;
    if (!rc)
        rc = record_file(o->sae, sae_names, resolved, sizeof resolved, a.sha256, &size, file,
                         sizeof file, err);
    if (!rc)
        rc = idx_add_sae(ix, &a, err);
    b->sae_id = a.id;
    if (!rc) {
        char key[64], val[64];
        snprintf(key, sizeof key, "sae:%lld:resolved", (long long)a.id);
        rc = idx_set_meta(ix, key, resolved, err);
        snprintf(key, sizeof key, "sae:%lld:size", (long long)a.id);
        snprintf(val, sizeof val, "%lld", (long long)size);
        if (!rc)
            rc = idx_set_meta(ix, key, val, err);
    }
    IdxDataset d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", b->dataset);
    snprintf(d.spec, sizeof d.spec, "%s", o->data);
    d.n_images = b->ds.n;
    d.n_classes = b->C;
    if (!rc)
        rc = idx_add_dataset(ix, &d, err);
    b->dataset_id = d.id;
    if (!rc && b->C > 0)
        rc = idx_add_classes(ix, d.id, b->C, (const char *const *)b->ds.class_names, err);
    for (int i = 0; i < b->n_models && !rc; i++)
        rc = idx_add_statset(ix, b->models[i].id, d.id, a.id, o->k_top, o->tau,
                             &b->models[i].statset, err);
    if (!rc) {
        char v[32];
        snprintf(v, sizeof v, "%d", o->k_blob);
        rc = idx_set_meta(ix, "k_per_token", v, err);
    }
    if (!rc)
        rc = idx_set_meta(ix, "blob_tokens", "cls+patches", err);
    return rc;
}

/* Another shard of the same (model, dataset, SAE) in this file cannot be mixed with ours. */
static int
check_other_shards(Build *b, char *err)
{
    IdxState *s;
    int n, rc = idx_states(b->ix, &s, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n && !rc; i++)
        for (int j = 0; j < b->n_models; j++)
            if (s[i].p.model_id == b->models[j].id && s[i].p.dataset_id == b->dataset_id &&
                s[i].p.sae_id == b->sae_id &&
                (s[i].p.shard_i != b->opt.shard_i || s[i].p.shard_n != b->opt.shard_n)) {
                rc = ps_seterr(err, PS_EREFUSED,
                               "%s holds shard %d/%d of model %s on %s, not %d/%d: build each "
                               "shard into its own file and `patchsae merge` them",
                               b->opt.out, s[i].p.shard_i, s[i].p.shard_n, s[i].model,
                               s[i].dataset, b->opt.shard_i, b->opt.shard_n);
                break;
            }
    idx_states_free(s, n);
    return rc;
}

/* Restores each model's accumulator and the position to continue from. */
static int
restore(Build *b, int *complete, char *err)
{
    StatsConfig cfg;
    stats_config_init(&cfg, b->sae.d_sae, b->C);
    cfg.k_top = b->opt.k_top;
    cfg.tau = b->opt.tau;
    cfg.class_top = b->opt.class_top;
    int n_found = 0, n_done_all = 0, rc = check_other_shards(b, err);
    int64_t n_done = -1, batch = -1;
    for (int i = 0; i < b->n_models && !rc; i++) {
        BuildModel *m = &b->models[i];
        IdxProgress p = { m->id, b->dataset_id, b->sae_id, b->opt.shard_i, b->opt.shard_n,
                          -1, 0, 0 };
        int found;
        void *state = NULL;
        size_t state_n = 0;
        rc = idx_get_progress(b->ix, &p, &found, &state, &state_n, err);
        if (rc)
            break;
        if (!found || !state) {
            free(state);
            rc = stats_init(&m->st, &cfg, err);
            continue;
        }
        n_found++;
        n_done_all += p.done != 0;
        if (n_done >= 0 && p.n_done != n_done)
            rc = ps_seterr(err, PS_EREFUSED, "%s: models were committed at different points "
                           "(%lld and %lld items)", b->opt.out, (long long)n_done,
                           (long long)p.n_done);
        n_done = p.n_done;
        batch = p.batch;
        if (!rc)
            rc = stats_load(&m->st, state, state_n, err);
        free(state);
        if (rc)
            break;
        const StatsConfig *c = &m->st.cfg;
        if (c->d_sae != cfg.d_sae || c->k_top != cfg.k_top || c->tau != cfg.tau ||
            c->n_classes != cfg.n_classes || c->class_top != cfg.class_top)
            rc = ps_seterr(err, PS_EREFUSED,
                           "%s: model %s was built with other settings (%d latents, k %d, tau "
                           "%g, %d classes, class top %d); use --force to start over",
                           b->opt.out, m->name, c->d_sae, c->k_top, (double)c->tau,
                           c->n_classes, c->class_top);
    }
    if (rc)
        return rc;
    if (n_found > 0 && n_found < b->n_models)
        return ps_seterr(err, PS_EREFUSED,
                         "%s: only %d of the %d models have been built on %s; resume with the "
                         "same models as before", b->opt.out, n_found, b->n_models, b->dataset);
    if (n_found > 0 && (n_done < 0 || n_done > build_total(b)))
        return ps_seterr(err, PS_EFORMAT, "%s: progress says %lld items done of %lld",
                         b->opt.out, (long long)n_done, (long long)build_total(b));
    b->n_done = b->n_committed = b->n_resumed = n_found ? n_done : 0;
    b->chunk = n_found ? batch + 1 : 0;
    *complete = n_found > 0 && n_done_all == b->n_models;
    char key[IDX_NAMELEN + 64], val[32];
    skipped_key(b, key, sizeof key);
    if (n_found && idx_get_meta(b->ix, key, val, sizeof val, NULL) == PS_OK)
        b->n_skipped = strtoll(val, NULL, 10);
    return PS_OK;
}

int
build_open(Build *b, const BuildOptions *o, char *err)
{
    memset(b, 0, sizeof *b);
    b->opt = *o;
    BuildOptions *op = &b->opt;
    if (op->batch <= 0)
        op->batch = BUILD_BATCH;
    if (op->shard_n < 1)
        op->shard_n = 1, op->shard_i = 0;
    if (!op->k_top)
        op->k_top = IDX_TOPK;
    if (!op->k_blob)
        op->k_blob = IDX_BLOB_K;
    if (!op->class_top)
        op->class_top = IDX_CLASS_TOP;
    if (op->tau < 0)
        op->tau = IDX_TAU;
    if (!op->thumb_quality)
        op->thumb_quality = BUILD_JPEG_QUALITY;
    b->B = op->batch;
    if (op->k_blob < 1 || op->k_blob > 255 || op->k_top < 1 || op->k_top > 255)
        return ps_seterr(err, PS_EUSAGE, "latents per token and top images must be 1..255");
    if (op->shard_i < 0 || op->shard_i >= op->shard_n)
        return ps_seterr(err, PS_EUSAGE, "shard %d/%d", op->shard_i, op->shard_n);
    if (!op->model || !op->sae || !op->data || !op->out)
        return ps_seterr(err, PS_EUSAGE, "model, SAE, dataset and output are required");
    int exists = file_exists(op->out);
    if (exists && !op->resume && !op->force)
        return ps_seterr(err, PS_EREFUSED,
                         "%s exists: add --resume to continue it (or add to it), or --force "
                         "to start over", op->out);
    int rc = load_inputs(b, err);
    if (rc)
        goto fail;
    if ((rc = alloc_buffers(b, err)))
        goto fail;
    data_shard_range(b->ds.n, op->shard_i, op->shard_n, &b->begin, &b->end);
    for (int i = 0; i < b->n_models && !rc; i++)
        rc = model_classifier(b, &b->models[i], err);
    if (rc)
        goto fail;
    if (exists && op->force && (rc = remove_index(op->out, err)))
        goto fail;
    if ((rc = idx_open(&b->ix, op->out, err)))
        goto fail;
    if (op->dataset_name)
        snprintf(b->dataset, sizeof b->dataset, "%s", op->dataset_name);
    else
        build_dataset_name(op->data, b->dataset, sizeof b->dataset);
    if ((rc = idx_begin(b->ix, err)))
        goto fail;
    rc = register_all(b, err);
    int complete = 0;
    if (!rc)
        rc = restore(b, &complete, err);
    if (!rc)
        rc = idx_commit(b->ix, err);
    else
        idx_rollback(b->ix);
    if (rc)
        goto fail;
    if (complete)
        b->n_done = b->n_committed = build_total(b);
    b->last_commit = ps_now();
    return PS_OK;
fail:
    build_close(b);
    return rc;
}

/* ---- the batch loop ---- */

/* Decodes item i into the crop, its thumbnail and pixels row nb; PS_OK or an error to skip. */
static int
load_item(Build *b, int i, float *pix, unsigned char **jpg, size_t *jn, char *err)
{
    Image im = { 0 };
    int rc;
    const char *path = data_item_path(&b->ds, i);
    if (path) {
        rc = img_load(&im, path, err);
    } else {
        const uint8_t *g;
        int w, h;
        rc = data_item_gray(&b->ds, i, &g, &w, &h);
        if (!rc)
            rc = img_from_gray(&im, g, w, h, err);
    }
    const ClipConfig *c = &b->clip.cfg;
    ImgPrep ip = { c->resize, c->crop_h, { c->mean[0], c->mean[1], c->mean[2] },
                   { c->std[0], c->std[1], c->std[2] } };
    if (!rc)
        rc = img_resize_crop_u8(&im, &ip, b->crop, err);
    img_free(&im);
    if (rc)
        return rc;
    img_normalize(b->crop, &ip, pix);
    return img_encode_jpeg(b->crop, b->S, b->S, b->opt.thumb_quality, jpg, jn, err);
}

/* Top n (<= 5) classes of one row of probabilities: larger first, ties to the lower class. */
static int
top5(const float *p, int C, int *cls, float *prob)
{
    int n = MIN(5, C);
    for (int j = 0; j < n; j++) {
        int best = -1;
        for (int k = 0; k < C; k++) {
            int taken = 0;
            for (int q = 0; q < j; q++)
                taken |= cls[q] == k;
            if (!taken && (best < 0 || p[k] > p[best]))
                best = k;
        }
        cls[j] = best;
        prob[j] = p[best];
    }
    return n;
}

/* Runs the ns slots of the batch through model m; stores the nb loaded images' rows. */
static int
run_model(Build *b, BuildModel *m, int ns, int nb, char *err)
{
    double t0 = ps_now();
    int rc = model_encode(b, m, b->pixels, ns, err);
    double t1 = ps_now();
    b->t_clip += t1 - t0;
    if (!rc)
        rc = sae_encode_sparse(&b->sae, b->resid, ns * m->n_tok, &b->sp, &b->work, err);
    double t2 = ps_now();
    b->t_sae += t2 - t1;
    if (rc)
        return rc;
    if (b->C > 0) {
        clip_logits(&b->clip, b->embeds, ns, m->cls_w, b->C, b->logits);
        ten_softmax(b->logits, ns, b->C);
    }
    const int T = m->n_tok, Tb = 1 + b->G * b->G;
    for (int j = 0; j < nb && !rc; j++) {
        double ta = ps_now();
        const int sl = b->slot[j];
        const int64_t *rp = b->sp.rowptr + (size_t)sl * T;
        const int32_t *ix = b->sp.idx + rp[0];
        const float *v = b->sp.val + rp[0];
        IdxAct top[BUILD_IMAGE_TOP];
        int nt = 0;
        rc = stats_add_image(&m->st, b->pos[j], b->ds.items[b->pos[j]].label, T, rp, ix, v,
                             BUILD_IMAGE_TOP, top, &nt, err);
        size_t bn = 0;
        if (!rc)
            rc = idx_blob_encode(Tb, rp, ix, v, b->opt.k_blob, b->sae.d_sae, b->blob, &bn, err);
        double tb = ps_now();
        b->t_stats += tb - ta;
        if (!rc)
            rc = idx_put_patches(b->ix, b->image_id[j], m->id, b->sae_id, b->blob, bn, err);
        if (!rc)
            rc = idx_put_image_latents(b->ix, b->image_id[j], m->id, b->sae_id, nt, top, err);
        if (!rc && b->C > 0) {
            int cls[5];
            float prob[5];
            int n = top5(b->logits + (size_t)sl * b->C, b->C, cls, prob);
            rc = idx_put_predictions(b->ix, b->image_id[j], m->id, n, cls, prob, err);
        }
        b->t_db += ps_now() - tb;
    }
    return rc;
}

int
build_commit(Build *b, char *err)
{
    if (!b->in_txn)
        return PS_OK;
    double t0 = ps_now();
    int rc = PS_OK;
    for (int i = 0; i < b->n_models && !rc; i++) {
        BuildModel *m = &b->models[i];
        uint8_t *snap = NULL;
        size_t sn = 0;
        rc = stats_save(&m->st, &snap, &sn, err);
        IdxProgress p = { m->id, b->dataset_id, b->sae_id, b->opt.shard_i, b->opt.shard_n,
                          b->chunk, b->n_done, 0 };
        if (!rc)
            rc = idx_put_progress(b->ix, &p, snap, sn, err);
        free(snap);
    }
    if (!rc) {
        char key[IDX_NAMELEN + 64], val[32];
        skipped_key(b, key, sizeof key);
        snprintf(val, sizeof val, "%lld", (long long)b->n_skipped);
        rc = idx_set_meta(b->ix, key, val, err);
    }
    if (!rc)
        rc = idx_commit(b->ix, err);
    if (rc)
        return rc;
    b->in_txn = 0;
    b->chunk++;
    b->n_committed = b->n_done;
    double t1 = ps_now();
    b->t_commit += t1 - t0;
    b->commit_cost = t1 - t0;
    b->last_commit = t1;
    return PS_OK;
}

int
build_step(Build *b, int *done, char *err)
{
    *done = 0;
    const int64_t total = build_total(b);
    int rc = PS_OK;
    if (b->n_done >= total) {
        *done = 1;
        return build_commit(b, err);
    }
    if (!b->in_txn) {
        if ((rc = idx_begin(b->ix, err)))
            return rc;
        b->in_txn = 1;
    }
    /* the batch is block k of the dataset: slot j holds item k*B + j, whatever the shard */
    const size_t per = (size_t)3 * b->S * b->S;
    const int first = b->begin + (int)b->n_done, k = first / b->B;
    const int s0 = k * b->B, ns = MIN(b->B, b->ds.n - s0), last = MIN(b->end, s0 + ns);
    int nb = 0;
    for (int i = first; i < last; i++) {
        unsigned char *jpg = NULL;
        size_t jn = 0;
        char e2[PS_ERRLEN];
        double t0 = ps_now();
        int r = load_item(b, i, b->pixels + (size_t)(i - s0) * per, &jpg, &jn, e2);
        double t1 = ps_now();
        b->t_decode += t1 - t0;
        b->n_done++;
        if (r) {
            b->n_skipped++;
            if (b->opt.warn) {
                char msg[PS_ERRLEN + 32];
                snprintf(msg, sizeof msg, "%s (skipped)", e2);
                b->opt.warn(b->opt.warn_ctx, msg);
            }
            free(jpg);
            memset(b->pixels + (size_t)(i - s0) * per, 0, per * sizeof(float));
            continue;
        }
        IdxImage im;
        memset(&im, 0, sizeof im);
        im.dataset_id = b->dataset_id;
        im.pos = i;
        char name[1024];
        snprintf(im.path, sizeof im.path, "%s", data_item_name(&b->ds, i, name, sizeof name));
        im.label = b->ds.items[i].label;
        im.grid = b->G;
        rc = idx_add_image(b->ix, &im, jpg, jn, b->S, err);
        free(jpg);
        b->t_db += ps_now() - t1;
        if (rc)
            return rc;
        b->pos[nb] = i;
        b->slot[nb] = i - s0;
        b->image_id[nb] = im.id;
        nb++;
    }
    /* slots of other shards (or unreadable) stay zero: computed, not stored */
    for (int i = s0; i < first; i++)
        memset(b->pixels + (size_t)(i - s0) * per, 0, per * sizeof(float));
    for (int i = last; i < s0 + ns; i++)
        memset(b->pixels + (size_t)(i - s0) * per, 0, per * sizeof(float));
    for (int i = 0; i < b->n_models && nb > 0 && !rc; i++)
        rc = run_model(b, &b->models[i], ns, nb, err);
    if (rc)
        return rc;
    b->n_indexed += nb;
    double since = ps_now() - b->last_commit;
    if (b->n_done >= total || (since >= b->opt.checkpoint && since >= 10 * b->commit_cost))
        rc = build_commit(b, err);
    *done = !rc && b->n_done >= total;
    return rc;
}

int
build_finish(Build *b, char *err)
{
    int rc = build_commit(b, err);
    if (rc)
        return rc;
    PS_ASSERT(b->n_done >= build_total(b));
    /* already finished (a resumed complete build): nothing to do */
    int all_done = 1;
    for (int i = 0; i < b->n_models && !rc; i++) {
        IdxProgress p = { b->models[i].id, b->dataset_id, b->sae_id, b->opt.shard_i,
                          b->opt.shard_n, -1, 0, 0 };
        int found;
        rc = idx_get_progress(b->ix, &p, &found, NULL, NULL, err);
        all_done &= found && p.done;
    }
    if (rc || all_done)
        return rc;
    if ((rc = idx_begin(b->ix, err)))
        return rc;
    for (int i = 0; i < b->n_models && !rc; i++) {
        BuildModel *m = &b->models[i];
        rc = stats_finalise(&m->st, b->ix, m->statset, err);
        uint8_t *snap = NULL;
        size_t sn = 0;
        if (!rc)
            rc = stats_save(&m->st, &snap, &sn, err);
        IdxProgress p = { m->id, b->dataset_id, b->sae_id, b->opt.shard_i, b->opt.shard_n,
                          b->chunk - 1, b->n_done, 1 };
        if (!rc)
            rc = idx_put_progress(b->ix, &p, snap, sn, err);
        free(snap);
    }
    for (int i = 1; i < b->n_models && !rc; i++)
        rc = idx_diff_compute(b->ix, b->models[0].statset, b->models[i].statset, 50, 100, err);
    if (!rc)
        rc = idx_commit(b->ix, err);
    else
        idx_rollback(b->ix);
    return rc;
}

void
build_close(Build *b)
{
    if (!b)
        return;
    if (b->ix) {
        if (b->in_txn)
            idx_rollback(b->ix);
        idx_close(b->ix);
    }
    for (int i = 0; i < BUILD_MAX_MODELS; i++)
        model_free(&b->models[i]);
    if (b->pixels)
        ps_big_free(b->pixels, b->big_n);
    free(b->crop);
    free(b->blob);
    free(b->pos);
    free(b->slot);
    free(b->image_id);
    sae_sparse_free(&b->sp);
    sae_work_free(&b->work);
    sae_free(&b->sae);
    clip_close(&b->clip);
    data_close(&b->ds);
    memset(b, 0, sizeof *b);
}
