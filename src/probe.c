/* SPDX-License-Identifier: MIT */
/*
 * probe.c - probing one image against an index (probe.h): the builder's
 * per-image path (build.c) replayed for an image that is not in the index,
 * plus the grouping of PatchSAE's demo.
 *
 * Exactness is the design constraint: every number a ProbeResult holds is
 * computed the way build.c computes the row it will be compared with (the
 * same ImgPrep from the model's config, the same forwards, the same
 * single-template batched text forward or ensemble or MaPLe class prompts,
 * softmax then top-5 with ties to the lower class, stats.h's image-level
 * sum in double in token order, idx_blob_encode of the first 1 + G*G tokens
 * with the index's K). The image runs alone (N = 1); see probe.h for what
 * that means against an index built in batches.
 *
 * Finding the weights: an override wins; else the resolved (absolute) path
 * the builder recorded, then the path as given (relative to the current
 * directory). A directory stands for the file the builder hashed inside it
 * (model.safetensors, sae_weights.safetensors). The size is compared first
 * (cheap), then the SHA-256 (sha256.h, ~0.4 s per 100 MB here).
 *
 * Buffers: the Probe's scratch (pixels, residual stream, embedding,
 * image-level sums) is allocated once in probe_open; a ProbeResult's arrays
 * grow on first use and are reused by later calls.
 */
#include "probe.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "img.h"
#include "maple.h"
#include "ps.h"
#include "sha256.h"
#include "ten.h"

void
probe_options_init(ProbeOptions *o)
{
    memset(o, 0, sizeof *o);
}

static void warnf(const ProbeOptions *o, const char *fmt, ...) PS_PRINTF(2, 3);

static void
warnf(const ProbeOptions *o, const char *fmt, ...)
{
    if (!o->warn)
        return;
    char msg[2 * PS_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->warn(o->warn_ctx, msg);
}

/* ---- finding and verifying the weights ---- */

static int
is_dir(const char *path)
{
    struct stat sb;
    return !stat(path, &sb) && S_ISDIR(sb.st_mode);
}

static int
exists(const char *path)
{
    struct stat sb;
    return path && path[0] && !stat(path, &sb);
}

/* The file whose bytes the builder hashed: path, or inner inside a directory. */
static void
weights_file(const char *path, const char *inner, char *out, size_t n)
{
    if (is_dir(path))
        snprintf(out, n, "%s/%s", path, inner);
    else
        snprintf(out, n, "%s", path);
}

/*
 * Picks where to load `what` from: the override, else resolved, else given.
 * out gets the path to open; PS_EUSAGE naming every place tried.
 */
static int
locate(const char *what, const char *override, const char *resolved, const char *given,
       char *out, size_t n, char *err)
{
    if (override) {
        if (!exists(override))
            return ps_seterr(err, PS_EUSAGE, "%s %s: no such file or directory", what, override);
        snprintf(out, n, "%s", override);
        return PS_OK;
    }
    if (exists(resolved)) {
        snprintf(out, n, "%s", resolved);
        return PS_OK;
    }
    if (exists(given)) {
        snprintf(out, n, "%s", given);
        return PS_OK;
    }
    return ps_seterr(err, PS_EUSAGE,
                     "%s: the index records %s (resolved %s) but neither exists here; give its "
                     "path as an override", what, given && given[0] ? given : "(nothing)",
                     resolved && resolved[0] ? resolved : "(nothing)");
}

/*
 * Compares file's size and SHA-256 with the record. A mismatch is a warning
 * naming both, and PS_EREFUSED unless force.
 */
static int
verify(Probe *p, const ProbeOptions *o, const char *what, const char *file, int64_t rec_size,
       const char *rec_sha, char *err)
{
    struct stat sb;
    if (stat(file, &sb))
        return ps_seterr(err, PS_EIO, "%s %s: cannot stat", what, file);
    int64_t size = (int64_t)sb.st_size;
    int bad_size = rec_size > 0 && size != rec_size;
    if (o->no_verify && !bad_size)
        return PS_OK;
    char sha[65] = "";
    if (!o->no_verify) {
        double t0 = ps_now();
        int rc = sha256_file(file, sha, NULL, err);
        p->t_hash += ps_now() - t0;
        if (rc)
            return rc;
    }
    int bad_sha = !o->no_verify && rec_sha && rec_sha[0] && strcmp(sha, rec_sha);
    if (!bad_size && !bad_sha)
        return PS_OK;
    char msg[PS_ERRLEN];
    if (bad_sha)
        snprintf(msg, sizeof msg,
                 "%s %s has sha256 %s (%lld bytes) but the index was built from sha256 %s "
                 "(%lld bytes)", what, file, sha, (long long)size, rec_sha, (long long)rec_size);
    else
        snprintf(msg, sizeof msg, "%s %s is %lld bytes but the index was built from %lld bytes",
                 what, file, (long long)size, (long long)rec_size);
    if (o->force) {
        warnf(o, "warning: %s; going on (--force): results will not match the index", msg);
        return PS_OK;
    }
    warnf(o, "warning: %s", msg);
    return ps_seterr(err, PS_EREFUSED, "%s; refusing (--force to probe anyway)", msg);
}

/* A string field of a JSON object text, or "" (out n bytes). */
static void
extra_str(const char *extra, const char *key, char *out, size_t n)
{
    out[0] = 0;
    if (!extra || !extra[0])
        return;
    json_t *o = json_loads(extra, 0, NULL);
    const char *v = json_string_value(json_object_get(o, key));
    if (v)
        snprintf(out, n, "%s", v);
    json_decref(o);
}

/* ---- opening ---- */

static int
read_models(Probe *p, const ProbeOptions *o, char *err)
{
    IdxModel *all;
    int n, rc = idx_models(p->ix, &all, &n, err);
    if (rc)
        return rc;
    int base = -1;
    for (int i = 0; i < n && base < 0; i++)
        if (!strcmp(all[i].kind, "base"))
            base = i;
    if (base < 0) {
        free(all);
        return ps_seterr(err, PS_EUSAGE, "the index has no base model: nothing to probe with");
    }
    p->models[0].rec = all[base];
    p->n_models = 1;
    for (int i = 0; i < n; i++) {
        if (strcmp(all[i].kind, "adapted"))
            continue;
        char b[IDX_NAMELEN];
        extra_str(all[i].extra, "base", b, sizeof b);
        if (b[0] && strcmp(b, all[base].name))
            continue; /* adapted on another base model */
        if (p->n_models == PROBE_MAX_MODELS) {
            warnf(o, "warning: more than %d adapted models; probing the first %d",
                  PROBE_MAX_MODELS - 1, PROBE_MAX_MODELS - 1);
            break;
        }
        p->models[p->n_models].rec = all[i];
        p->models[p->n_models].adapted = 1;
        p->n_models++;
    }
    free(all);
    if (o->n_maple > p->n_models - 1)
        return ps_seterr(err, PS_EUSAGE, "%d MaPLe overrides but the index has %d adapted "
                         "model%s", o->n_maple, p->n_models - 1, p->n_models == 2 ? "" : "s");
    return PS_OK;
}

static int
load_base(Probe *p, const ProbeOptions *o, char *err)
{
    ProbeModel *m = &p->models[0];
    char path[1024], tok[1024];
    int rc = locate("model", o->model, m->rec.resolved, m->rec.path, path, sizeof path, err);
    if (rc)
        return rc;
    weights_file(path, "model.safetensors", m->file, sizeof m->file);
    if ((rc = verify(p, o, "model", m->file, m->rec.size, m->rec.sha256, err)))
        return rc;
    const char *t = o->tokenizer;
    if (!t) {
        extra_str(m->rec.extra, "tokenizer", tok, sizeof tok);
        t = exists(tok) ? tok : NULL;
    }
    if ((rc = clip_open(&p->clip, path, t, err)))
        return rc;
    m->n_tok = p->clip.cfg.n_tok;
    return PS_OK;
}

static int
load_sae(Probe *p, const ProbeOptions *o, char *err)
{
    int rc = idx_find_sae(p->ix, NULL, &p->sae_rec, err);
    if (rc)
        return rc;
    char key[64], resolved[1024] = "", sz[32] = "", path[1024];
    snprintf(key, sizeof key, "sae:%lld:resolved", (long long)p->sae_rec.id);
    idx_get_meta(p->ix, key, resolved, sizeof resolved, NULL);
    snprintf(key, sizeof key, "sae:%lld:size", (long long)p->sae_rec.id);
    idx_get_meta(p->ix, key, sz, sizeof sz, NULL);
    if ((rc = locate("SAE", o->sae, resolved, p->sae_rec.path, path, sizeof path, err)))
        return rc;
    weights_file(path, "sae_weights.safetensors", p->sae_file, sizeof p->sae_file);
    if ((rc = verify(p, o, "SAE", p->sae_file, strtoll(sz, NULL, 10), p->sae_rec.sha256, err)))
        return rc;
    if ((rc = sae_load(&p->sae, path, err)))
        return rc;
    if (p->sae.d_sae != p->sae_rec.d_sae || p->sae.d_in != p->sae_rec.d_in)
        return ps_seterr(err, PS_EUSAGE, "SAE %s is %d -> %d but the index's is %d -> %d", path,
                         p->sae.d_in, p->sae.d_sae, p->sae_rec.d_in, p->sae_rec.d_sae);
    return PS_OK;
}

static int
load_adapted(Probe *p, const ProbeOptions *o, int i, char *err)
{
    ProbeModel *m = &p->models[i];
    char path[1024];
    const char *ov = i - 1 < o->n_maple ? o->maple[i - 1] : NULL;
    int rc = locate("MaPLe checkpoint", ov, m->rec.resolved, m->rec.path, path, sizeof path, err);
    if (rc)
        return rc;
    snprintf(m->file, sizeof m->file, "%s", path);
    if ((rc = verify(p, o, "MaPLe checkpoint", m->file, m->rec.size, m->rec.sha256, err)))
        return rc;
    m->maple = xcalloc(1, sizeof *m->maple);
    if ((rc = maple_load(m->maple, path, &p->clip, err)))
        return rc;
    m->n_tok = p->clip.cfg.n_tok + m->maple->n_ctx;
    return PS_OK;
}

/* The dataset, its classes, each model's statset, the base mean activations. */
static int
read_dataset(Probe *p, const ProbeOptions *o, char *err)
{
    IdxStatset ss;
    p->dataset_id = -1;
    for (int i = 0; i < p->n_models; i++)
        p->models[i].statset = -1;
    char e2[PS_ERRLEN];
    int rc = idx_find_statset(p->ix, p->models[0].rec.name, o->dataset, &ss, e2);
    if (rc) {
        if (o->dataset)
            return ps_seterr(err, rc, "%s", e2);
        warnf(o, "warning: the index has no statistics for model %s: no predictions, reference "
              "images or noise filter", p->models[0].rec.name);
        return PS_OK;
    }
    p->dataset_id = ss.dataset_id;
    snprintf(p->dataset, sizeof p->dataset, "%s", ss.dataset);
    p->models[0].statset = ss.id;
    for (int i = 1; i < p->n_models; i++) {
        IdxStatset a;
        if (idx_find_statset(p->ix, p->models[i].rec.name, ss.dataset, &a, NULL) == PS_OK)
            p->models[i].statset = a.id;
    }
    p->C = ss.n_classes;
    if (p->C > 0) {
        p->class_names = xcalloc((size_t)p->C, sizeof *p->class_names);
        for (int c = 0; c < p->C; c++) {
            char buf[IDX_NAMELEN];
            if ((rc = idx_class_name(p->ix, ss.dataset_id, c, buf, sizeof buf, err)))
                return rc;
            p->class_names[c] = xstrdup(buf);
        }
    }
    size_t S = (size_t)p->sae.d_sae;
    p->base_mean = xmalloc(S * sizeof *p->base_mean);
    for (size_t s = 0; s < S; s++)
        p->base_mean[s] = NAN;
    IdxFilter f;
    idx_filter_init(&f);
    IdxLatent *lat;
    int nl;
    if ((rc = idx_latents(p->ix, ss.id, IDX_SORT_LATENT, 0, &f, 0, 0, &lat, &nl, NULL, err)))
        return rc;
    for (int j = 0; j < nl; j++)
        if (lat[j].latent >= 0 && (size_t)lat[j].latent < S)
            p->base_mean[lat[j].latent] = (float)lat[j].mean_act;
    free(lat);
    return PS_OK;
}

/* m->cls_w (C, E) as build.c's model_classifier makes it. */
static int
classifier(Probe *p, ProbeModel *m, char *err)
{
    const char *const *names = (const char *const *)p->class_names;
    m->cls_w = xmalloc((size_t)MAX(p->C, 1) * p->E * sizeof *m->cls_w);
    if (p->C == 0)
        return PS_OK;
    if (m->maple)
        return maple_encode_classes(m->maple, &p->clip, names, p->C, NULL, m->cls_w, err);
    if (!strcmp(p->prompts, "imagenet-80"))
        return clip_zeroshot_weights(&p->clip, names, p->C, clip_imagenet_templates,
                                     CLIP_N_TEMPLATES, 0, m->cls_w, err);
    /* one template, every class in one batched text forward (as the builder) */
    int ctx = p->clip.cfg.ctx, rc = PS_OK;
    int32_t *ids = xmalloc((size_t)p->C * ctx * sizeof *ids);
    char text[1024];
    for (int k = 0; k < p->C && !rc; k++) {
        clip_format_prompt(text, sizeof text, p->prompts, p->class_names[k]);
        rc = clip_tokenize(&p->clip, text, ids + (size_t)k * ctx, err);
    }
    if (!rc)
        rc = clip_encode_text(&p->clip, ids, p->C, m->cls_w, err);
    free(ids);
    return rc;
}

int
probe_open(Probe *p, Idx *ix, const ProbeOptions *o, char *err)
{
    memset(p, 0, sizeof *p);
    p->ix = ix;
    double t0 = ps_now();
    int rc = read_models(p, o, err);
    if (!rc)
        rc = load_base(p, o, err);
    if (!rc)
        rc = load_sae(p, o, err);
    for (int i = 1; i < p->n_models && !rc; i++)
        rc = load_adapted(p, o, i, err);
    if (rc)
        goto fail;
    const ClipConfig *g = &p->clip.cfg;
    ProbeModel *b = &p->models[0];
    p->S = g->image_size;
    p->G = g->grid;
    p->D = g->vision.width;
    p->E = g->embed_dim;
    p->layer = b->rec.hook_layer;
    if (p->sae.d_in != p->D) {
        rc = ps_seterr(err, PS_EUSAGE, "SAE %s reads %d-wide activations but model %s is %d wide",
                       p->sae_file, p->sae.d_in, b->file, p->D);
        goto fail;
    }
    if (p->layer < 0 || p->layer >= g->vision.layers) {
        rc = ps_seterr(err, PS_EFORMAT, "the index records hook layer %d but model %s has %d "
                       "layers", p->layer, b->file, g->vision.layers);
        goto fail;
    }
    for (int i = 0; i < p->n_models; i++) {
        ProbeModel *m = &p->models[i];
        if (m->rec.n_tokens && m->rec.n_tokens != m->n_tok) {
            rc = ps_seterr(err, PS_EUSAGE, "model %s gives %d tokens an image but the index "
                           "records %d", m->rec.name, m->n_tok, m->rec.n_tokens);
            goto fail;
        }
        p->T_max = MAX(p->T_max, m->n_tok);
    }
    char v[64];
    p->k_blob = IDX_BLOB_K;
    if (idx_get_meta(ix, "k_per_token", v, sizeof v, NULL) == PS_OK)
        p->k_blob = atoi(v);
    if (p->k_blob < 1 || p->k_blob > 255) {
        rc = ps_seterr(err, PS_EFORMAT, "the index's k_per_token %d is outside 1..255", p->k_blob);
        goto fail;
    }
    p->blob_tok = 1 + p->G * p->G;
    if (idx_get_meta(ix, "blob_tokens", v, sizeof v, NULL) == PS_OK && strcmp(v, "cls+patches"))
        warnf(o, "warning: the index's patch blobs hold '%s', not cls+patches; probe blobs hold "
              "CLS and the patches", v);
    extra_str(b->rec.extra, "prompts", p->prompts, sizeof p->prompts);
    if (!p->prompts[0])
        snprintf(p->prompts, sizeof p->prompts, "%s", clip_photo_template);
    else if (strcmp(p->prompts, "imagenet-80") && !strstr(p->prompts, "{}")) {
        rc = ps_seterr(err, PS_EFORMAT, "model %s: unknown prompts '%s' in the index",
                       b->rec.name, p->prompts);
        goto fail;
    }
    if ((rc = read_dataset(p, o, err)))
        goto fail;
    double t1 = ps_now();
    for (int i = 0; i < p->n_models && !rc; i++)
        rc = classifier(p, &p->models[i], err);
    p->t_text = ps_now() - t1;
    if (!rc)
        rc = sae_work_init(&p->work, &p->sae, err);
    if (!rc)
        rc = clip_reserve(&p->clip, 1, p->T_max - g->n_tok, err);
    if (rc)
        goto fail;
    p->pixels = xmalloc((size_t)3 * p->S * p->S * sizeof *p->pixels);
    p->resid = xmalloc((size_t)p->T_max * p->D * sizeof *p->resid);
    p->embeds = xmalloc((size_t)p->E * sizeof *p->embeds);
    p->logits = xmalloc((size_t)MAX(p->C, 1) * sizeof *p->logits);
    p->acc = xcalloc((size_t)p->sae.d_sae, sizeof *p->acc);
    p->t_load = ps_now() - t0 - p->t_hash - p->t_text;
    return PS_OK;
fail:
    probe_close(p);
    return rc;
}

void
probe_close(Probe *p)
{
    if (!p)
        return;
    for (int i = 0; i < PROBE_MAX_MODELS; i++) {
        ProbeModel *m = &p->models[i];
        if (m->maple) {
            maple_free(m->maple);
            free(m->maple);
        }
        free(m->cls_w);
    }
    for (int c = 0; p->class_names && c < p->C; c++)
        free(p->class_names[c]);
    free(p->class_names);
    free(p->base_mean);
    free(p->pixels);
    free(p->resid);
    free(p->embeds);
    free(p->logits);
    free(p->acc);
    sae_work_free(&p->work);
    sae_free(&p->sae);
    clip_close(&p->clip);
    memset(p, 0, sizeof *p);
}

/* ---- probing ---- */

/* Inserts (s, a) into the ranked top list (value desc, latent asc; s arrives ascending). */
static void
top_offer(IdxAct *top, int *n, int cap, int32_t s, float a)
{
    if (*n == cap && !(a > top[cap - 1].value))
        return;
    int j = *n < cap ? (*n)++ : cap - 1;
    while (j > 0 && a > top[j - 1].value) {
        top[j] = top[j - 1];
        j--;
    }
    top[j] = (IdxAct){ s, a };
}

/* Top n (<= 5) of one row of probabilities: larger first, ties to the lower class. */
static int
top5(const float *prob, int C, int *cls, float *out)
{
    int n = 0;
    for (int k = 0; k < C; k++) {
        if (n == 5 && !(prob[k] > out[4]))
            continue;
        int j = n < 5 ? n++ : 4;
        while (j > 0 && prob[k] > out[j - 1]) {
            cls[j] = cls[j - 1];
            out[j] = out[j - 1];
            j--;
        }
        cls[j] = k;
        out[j] = prob[k];
    }
    return n;
}

static void
result_alloc(const Probe *p, ProbeResult *r)
{
    size_t S = (size_t)p->sae.d_sae;
    if (r->crop && (r->S != p->S || r->d_sae != p->sae.d_sae))
        probe_result_free(r);
    r->S = p->S;
    r->G = p->G;
    r->d_sae = p->sae.d_sae;
    r->n_models = p->n_models;
    if (!r->crop)
        r->crop = xmalloc((size_t)p->S * p->S * 3);
    size_t bound = idx_blob_bound(p->blob_tok, p->k_blob, p->sae.d_sae);
    for (int i = 0; i < p->n_models; i++) {
        ProbeModelResult *m = &r->m[i];
        if (!m->image)
            m->image = xmalloc(S * sizeof *m->image);
        if (m->blob_cap < bound) {
            free(m->blob);
            m->blob = xmalloc(bound);
            m->blob_cap = bound;
        }
    }
}

/* One model on the pixels already in p->pixels. */
static int
run_model(Probe *p, int i, ProbeResult *r, char *err)
{
    ProbeModel *pm = &p->models[i];
    ProbeModelResult *m = &r->m[i];
    int rc = pm->maple ? maple_encode_image(pm->maple, &p->clip, p->pixels, 1, p->layer, p->resid,
                                            p->embeds, err)
                       : clip_encode_image(&p->clip, p->pixels, 1, p->layer, p->resid,
                                           p->embeds, err);
    if (!rc)
        rc = sae_encode_sparse(&p->sae, p->resid, pm->n_tok, &m->sp, &p->work, err);
    if (rc)
        return rc;
    const int T = pm->n_tok, S = p->sae.d_sae;
    m->n_tok = T;
    /* image level: sum in double in token order, / T, rounded to float (stats.h) */
    const int64_t *rp = m->sp.rowptr;
    for (int t = 0; t < T; t++)
        for (int64_t j = rp[t] - rp[0]; j < rp[t + 1] - rp[0]; j++)
            if (m->sp.val[j] > 0)
                p->acc[m->sp.idx[j]] += m->sp.val[j];
    m->n_top = 0;
    for (int s = 0; s < S; s++) {
        float a = (float)(p->acc[s] / T);
        p->acc[s] = 0;
        m->image[s] = a > 0 ? a : 0;
        if (a > 0)
            top_offer(m->top, &m->n_top, PROBE_IMAGE_TOP, s, a);
    }
    rc = idx_blob_encode(p->blob_tok, rp, m->sp.idx, m->sp.val, p->k_blob, S, m->blob,
                         &m->blob_n, err);
    if (rc)
        return rc;
    m->n_pred = 0;
    if (p->C > 0) {
        clip_logits(&p->clip, p->embeds, 1, pm->cls_w, p->C, p->logits);
        ten_softmax(p->logits, 1, p->C);
        m->n_pred = top5(p->logits, p->C, m->pred_cls, m->pred_prob);
    }
    return PS_OK;
}

int
probe_image_rgb(Probe *p, const Image *im, const char *name, ProbeResult *r, char *err)
{
    double t0 = ps_now();
    result_alloc(p, r);
    snprintf(r->path, sizeof r->path, "%s", name ? name : "");
    const ClipConfig *c = &p->clip.cfg;
    ImgPrep ip = { c->resize, c->crop_h, { c->mean[0], c->mean[1], c->mean[2] },
                   { c->std[0], c->std[1], c->std[2] } };
    int rc = img_resize_crop_u8(im, &ip, r->crop, err);
    if (rc)
        return rc;
    img_normalize(r->crop, &ip, p->pixels);
    for (int i = 0; i < p->n_models && !rc; i++)
        rc = run_model(p, i, r, err);
    p->t_image = ps_now() - t0;
    return rc;
}

int
probe_image(Probe *p, const char *path, ProbeResult *r, char *err)
{
    Image im = { 0 };
    int rc = img_load(&im, path, err);
    if (!rc)
        rc = probe_image_rgb(p, &im, path, r, err);
    img_free(&im);
    return rc;
}

void
probe_result_free(ProbeResult *r)
{
    if (!r)
        return;
    free(r->crop);
    for (int i = 0; i < PROBE_MAX_MODELS; i++) {
        sae_sparse_free(&r->m[i].sp);
        free(r->m[i].image);
        free(r->m[i].blob);
    }
    memset(r, 0, sizeof *r);
}

void
probe_patch(const ProbeResult *r, int m, int row, int col, const int32_t **idx,
            const float **val, int *n)
{
    PS_ASSERT(m >= 0 && m < r->n_models && row >= 0 && row < r->G && col >= 0 && col < r->G);
    const SaeSparse *sp = &r->m[m].sp;
    int t = 1 + row * r->G + col;
    *idx = sp->idx + sp->rowptr[t];
    *val = sp->val + sp->rowptr[t];
    *n = (int)(sp->rowptr[t + 1] - sp->rowptr[t]);
}

int
probe_noisy(const Probe *p, int32_t s, float noise)
{
    return noise > 0 && p->base_mean && s >= 0 && s < p->sae.d_sae && p->base_mean[s] > noise;
}

/* ---- grouping ---- */

static int
find(const IdxAct *a, int n, int32_t s)
{
    for (int i = 0; i < n; i++)
        if (a[i].latent == s)
            return i;
    return -1;
}

static int
by_latent_desc(const void *x, const void *y)
{
    const IdxAct *a = x, *b = y;
    return (a->latent < b->latent) - (a->latent > b->latent);
}

void
probe_group(const IdxAct *base, int n_base, const IdxAct *adapted, int n_adapted,
            ProbeGroups *g)
{
    memset(g, 0, sizeof *g);
    const IdxAct *set[2] = { base, adapted };
    const int n[2] = { n_base, n_adapted };
    for (int k = 0; k < 2; k++) {
        g->n_top[k] = MIN(n[k], PROBE_TOP);
        if (g->n_top[k] > 0)
            memcpy(g->top[k], set[k], (size_t)g->n_top[k] * sizeof(IdxAct));
    }
    /* common: in both; by the larger value desc, then latent asc */
    IdxAct common[256]; /* sets are short (the demo's are 5 or 10): longer ones are cut at 256 */
    float cv[256][2];
    int nc = 0;
    for (int i = 0; i < n_base && nc < 256; i++) {
        int j = find(adapted, n_adapted, base[i].latent);
        if (j < 0)
            continue;
        float v = MAX(base[i].value, adapted[j].value);
        int q = nc++;
        while (q > 0 && (v > common[q - 1].value ||
                         (v == common[q - 1].value && base[i].latent < common[q - 1].latent))) {
            common[q] = common[q - 1];
            cv[q][0] = cv[q - 1][0];
            cv[q][1] = cv[q - 1][1];
            q--;
        }
        common[q] = (IdxAct){ base[i].latent, v };
        cv[q][0] = base[i].value;
        cv[q][1] = adapted[j].value;
    }
    g->n_common = MIN(nc, PROBE_TOP);
    memcpy(g->common, common, (size_t)g->n_common * sizeof(IdxAct));
    memcpy(g->common_v, cv, (size_t)g->n_common * sizeof cv[0]);
    /* only: in one set; by latent index descending (the demo's order) */
    for (int k = 0; k < 2; k++) {
        IdxAct only[256];
        int no = 0;
        for (int i = 0; i < n[k] && no < 256; i++)
            if (find(set[1 - k], n[1 - k], set[k][i].latent) < 0)
                only[no++] = set[k][i];
        qsort(only, (size_t)no, sizeof *only, by_latent_desc);
        g->n_only[k] = MIN(no, PROBE_TOP);
        memcpy(g->only[k], only, (size_t)g->n_only[k] * sizeof(IdxAct));
    }
}

/* Top PROBE_TOP of model m at image level (patch < 0) or of token 1 + patch, filtered. */
static int
ranked(const Probe *p, const ProbeResult *r, int m, int patch, float noise, IdxAct *out)
{
    int n = 0;
    const ProbeModelResult *x = &r->m[m];
    if (patch < 0) {
        for (int s = 0; s < r->d_sae; s++)
            if (x->image[s] > 0 && !probe_noisy(p, s, noise))
                top_offer(out, &n, PROBE_TOP, s, x->image[s]);
        return n;
    }
    const int64_t *rp = x->sp.rowptr;
    for (int64_t j = rp[1 + patch]; j < rp[2 + patch]; j++) /* latents ascend within a token */
        if (x->sp.val[j] > 0 && !probe_noisy(p, x->sp.idx[j], noise))
            top_offer(out, &n, PROBE_TOP, x->sp.idx[j], x->sp.val[j]);
    return n;
}

int
probe_groups(const Probe *p, const ProbeResult *r, int adapted, int patch, int flags,
             float noise, ProbeGroups *g, char *err)
{
    if (adapted < 0 || adapted >= r->n_models)
        return ps_seterr(err, PS_EUSAGE, "no model %d to compare with (%d models)", adapted,
                         r->n_models);
    if (patch < PROBE_IMAGE || patch >= r->G * r->G)
        return ps_seterr(err, PS_EUSAGE, "patch %d outside the %dx%d grid", patch, r->G, r->G);
    const int ms[2] = { 0, adapted };
    IdxAct set[2][2 * PROBE_TOP];
    int n[2];
    for (int k = 0; k < 2; k++) {
        if (patch == PROBE_IMAGE || (flags & PROBE_PATCH_ONLY)) {
            n[k] = ranked(p, r, ms[k], patch, noise, set[k]);
            continue;
        }
        /* the demo's union: image-level top-5 and the patch's top-5, patch values win */
        IdxAct img[PROBE_TOP], tile[PROBE_TOP];
        int ni = ranked(p, r, ms[k], PROBE_IMAGE, noise, img);
        int nt = ranked(p, r, ms[k], patch, noise, tile);
        n[k] = 0;
        for (int i = 0; i < nt; i++)
            top_offer(set[k], &n[k], 2 * PROBE_TOP, tile[i].latent, tile[i].value);
        for (int i = 0; i < ni; i++)
            if (find(tile, nt, img[i].latent) < 0) {
                /* top_offer's tie rule assumes ascending latents; insert by value then latent */
                int q = n[k]++;
                while (q > 0 && (img[i].value > set[k][q - 1].value ||
                                 (img[i].value == set[k][q - 1].value &&
                                  img[i].latent < set[k][q - 1].latent))) {
                    set[k][q] = set[k][q - 1];
                    q--;
                }
                set[k][q] = img[i];
            }
    }
    probe_group(set[0], n[0], set[1], n[1], g);
    return PS_OK;
}

/* ---- saving ---- */

typedef struct Found {
    int64_t v;
    int found;
} Found;

static int
one_int(void *ctx, int ncol, const char *const *names, const char *const *values)
{
    (void)names;
    Found *f = ctx;
    if (ncol > 0 && values[0]) {
        f->v = strtoll(values[0], NULL, 10);
        f->found = 1;
    }
    return 1;
}

/* SQL string literal of s ('' doubled) into out. */
static void
sql_quote(const char *s, char *out, size_t n)
{
    size_t j = 0;
    if (n < 3) {
        out[0] = 0;
        return;
    }
    out[j++] = '\'';
    for (; *s && j + 3 < n; s++) {
        if (*s == '\'')
            out[j++] = '\'';
        out[j++] = *s;
    }
    out[j++] = '\'';
    out[j] = 0;
}

int
probe_save(Probe *p, const ProbeResult *r, const char *dataset, int64_t *image_id, char *err)
{
    if (!dataset)
        dataset = PROBE_DATASET;
    if (r->n_models != p->n_models || r->d_sae != p->sae.d_sae)
        return ps_seterr(err, PS_EUSAGE, "probe result does not come from this probe");
    unsigned char *jpg = NULL;
    size_t jn = 0;
    int rc = img_encode_jpeg(r->crop, r->S, r->S, PROBE_THUMB_QUALITY, &jpg, &jn, err);
    if (rc)
        return rc;
    if ((rc = idx_begin(p->ix, err))) {
        free(jpg);
        return rc;
    }
    IdxDataset d;
    memset(&d, 0, sizeof d);
    if (idx_find_dataset(p->ix, dataset, &d, NULL) != PS_OK) {
        snprintf(d.name, sizeof d.name, "%s", dataset);
        snprintf(d.spec, sizeof d.spec, "images probed with `patchsae probe --save`%s%s",
                 p->dataset[0] ? "; classes of " : "", p->dataset);
        d.n_images = 0;
        d.n_classes = p->C;
        rc = idx_add_dataset(p->ix, &d, err);
        if (!rc && p->C > 0)
            rc = idx_add_classes(p->ix, d.id, p->C, (const char *const *)p->class_names, err);
    } else if (d.n_classes != p->C) {
        rc = ps_seterr(err, PS_EREFUSED, "dataset '%s' has %d classes but the probe predicts over "
                       "%d: save into another dataset", dataset, d.n_classes, p->C);
    }
    /* the same path again replaces its image; else the next position */
    char q[2600], lit[2200];
    Found f = { 0, 0 };
    sql_quote(r->path, lit, sizeof lit);
    snprintf(q, sizeof q, "SELECT pos FROM images WHERE dataset_id = %lld AND path = %s",
             (long long)d.id, lit);
    if (!rc)
        rc = idx_select(p->ix, q, one_int, &f, err);
    if (!rc && !f.found) {
        snprintf(q, sizeof q, "SELECT coalesce(max(pos) + 1, 0) FROM images WHERE dataset_id = "
                 "%lld", (long long)d.id);
        rc = idx_select(p->ix, q, one_int, &f, err);
    }
    IdxImage im;
    memset(&im, 0, sizeof im);
    im.dataset_id = d.id;
    im.pos = f.v;
    snprintf(im.path, sizeof im.path, "%s", r->path);
    im.label = -1;
    im.grid = r->G;
    if (!rc)
        rc = idx_add_image(p->ix, &im, jpg, jn, r->S, err);
    for (int i = 0; i < p->n_models && !rc; i++) {
        const ProbeModelResult *m = &r->m[i];
        int64_t mid = p->models[i].rec.id;
        rc = idx_put_patches(p->ix, im.id, mid, p->sae_rec.id, m->blob, m->blob_n, err);
        if (!rc)
            rc = idx_put_image_latents(p->ix, im.id, mid, p->sae_rec.id, m->n_top, m->top, err);
        if (!rc && m->n_pred > 0)
            rc = idx_put_predictions(p->ix, im.id, mid, m->n_pred, m->pred_cls, m->pred_prob,
                                     err);
    }
    if (!rc) {
        snprintf(q, sizeof q, "UPDATE datasets SET n_images = (SELECT count(*) FROM images WHERE "
                 "dataset_id = %lld) WHERE id = %lld", (long long)d.id, (long long)d.id);
        rc = idx_exec(p->ix, q, err);
    }
    if (!rc)
        rc = idx_commit(p->ix, err);
    else
        idx_rollback(p->ix);
    free(jpg);
    if (!rc && image_id)
        *image_id = im.id;
    return rc;
}
