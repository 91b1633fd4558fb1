/* SPDX-License-Identifier: MIT */
/*
 * maple.c - MaPLe's learned prompts (reference §6) read from a Dassl
 * checkpoint and run through clip.c's prompt hooks.
 *
 * Loading: the checkpoint is read by pt.c's restricted pickle machine
 * (nothing is executed). Only the learned tensors are used: ctx (n_ctx, Wt),
 * the coupling function proj (Wt -> Wv), depth-1 compound text prompts
 * (n_ctx, Wt) and their projections (Wt -> Wv). token_prefix/suffix are the
 * embeddings of the training class names and are recomputed from the names
 * given here, as the original does on load; the frozen image_encoder.* /
 * text_encoder.* copies are ignored in favour of the base model, and so are
 * the optimizer and scheduler states. Every tensor is copied to float32 and
 * checked for shape (against the other tensors and the model) and for
 * non-finite values, so a damaged file fails at load with a message naming
 * the tensor, never later in a forward.
 *
 * The visual prompts do not depend on the input, so they are computed once
 * at load: the shallow one proj(ctx) (n_ctx, Wv), appended after the patches
 * before ln_pre, and the deep ones projection_i(compound_i), which replace
 * the last n_ctx tokens before blocks 1..depth-1. On the text side ctx
 * replaces the token embeddings at positions 1..n_ctx of the class prompt
 * and compound_i replaces those positions before block i. clip.c does the
 * replacing (ClipPrompts); this file only builds the per-block tables.
 *
 * Class prompts follow MaPLe's prompt learner: with CTX_INIT "a photo of a"
 * and n_ctx <= 4 the prompt is "a photo of a {name}." ('_' -> ' '), the
 * first n_ctx words being overwritten by ctx; with more prompt tokens the
 * original initialises ctx randomly and prompts "X X ... X {name}.". The
 * PatchSAE configuration (N_CTX 2, PROMPT_DEPTH 9) gives the first form.
 *
 * The original runs in fp16 (weights and activations); this runs in fp32
 * from the stored values, as tools/refclip.py does, so results differ from
 * a CUDA fp16 run by fp16 rounding (~1e-3 relative), not by the method.
 */
#include "maple.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"
#include "pt.h"
#include "st.h"
#include "ten.h"

#define MAPLE_MAX_DEPTH 1024 /* compound prompts probed at most (real files: 8) */
#define MAPLE_MAX_CTX 64     /* prompt tokens accepted (real files: 2) */

/* Checkpoint names (reference §6.3), without the optional "module." prefix. */
#define MAPLE_TN_CTX "prompt_learner.ctx"
#define MAPLE_TN_PROJ_W "prompt_learner.proj.weight"
#define MAPLE_TN_PROJ_B "prompt_learner.proj.bias"
#define MAPLE_TN_TEXT "prompt_learner.compound_prompts_text.%d"
#define MAPLE_TN_DEEP_W "prompt_learner.compound_prompt_projections.%d.weight"
#define MAPLE_TN_DEEP_B "prompt_learner.compound_prompt_projections.%d.bias"
#define MAPLE_TN_TEXT_STEM "prompt_learner.compound_prompts_text."
#define MAPLE_TN_DEEP_STEM "prompt_learner.compound_prompt_projections."

/* CTX_INIT of the PatchSAE configuration (reference §6.1). */
static const char ctx_init[] = "a photo of a";

/* The dict behind o: itself, or a placeholder instance's items / state. */
static const PtObj *
as_dict(const PtObj *o)
{
    if (!o)
        return NULL;
    if (o->type == PT_DICT)
        return o;
    if (o->type == PT_OBJECT) {
        if (o->u.obj.items && o->u.obj.items->type == PT_DICT)
            return o->u.obj.items;
        if (o->u.obj.state && o->u.obj.state->type == PT_DICT)
            return o->u.obj.state;
    }
    return NULL;
}

/* sd[key], or sd["module." key] (a checkpoint saved from a DataParallel model). */
static const PtObj *
sd_get(const PtObj *sd, const char *key)
{
    const PtObj *o = pt_get(sd, key);
    if (!o) {
        char buf[256];
        snprintf(buf, sizeof buf, "module.%s", key);
        o = pt_get(sd, buf);
    }
    return o;
}

/* The state dict: root["state_dict"] (Dassl), or root itself when it holds ctx. */
static const PtObj *
state_dict(const PtObj *root)
{
    const PtObj *sd = pt_get(root, "state_dict");
    if (sd_get(sd, MAPLE_TN_CTX))
        return sd;
    if (sd_get(root, MAPLE_TN_CTX))
        return root;
    return sd;
}

int
maple_is_checkpoint(const PtObj *root)
{
    return sd_get(state_dict(root), MAPLE_TN_CTX) != NULL;
}

/*
 * Largest index i of keys "[module.]stem%d..." in sd, or -1; *bad = 1 when a
 * key has the stem but no plain decimal index after it.
 */
static int
max_index(const PtObj *sd, const char *stem, int *bad)
{
    const PtObj *d = as_dict(sd);
    int best = -1;
    size_t ns = strlen(stem);
    for (size_t i = 0; d && i + 1 < d->u.seq.n; i += 2) {
        const PtObj *k = d->u.seq.v[i];
        if (k->type != PT_STR)
            continue;
        const char *s = k->u.str.s;
        if (!strncmp(s, "module.", 7))
            s += 7;
        if (strncmp(s, stem, ns))
            continue;
        s += ns;
        long v = 0;
        int nd = 0;
        while (*s >= '0' && *s <= '9' && nd < 8) {
            v = v * 10 + (*s++ - '0');
            nd++;
        }
        if (nd == 0 || nd == 8 || (*s && *s != '.') || (nd > 1 && s[-nd] == '0')) {
            *bad = 1;
            continue;
        }
        best = MAX(best, (int)v);
    }
    return best;
}

/*
 * Copies tensor key of sd, of shape want (nd dims; -1 = any), to a new
 * float32 buffer *out. got (may be NULL) receives the actual shape. why
 * explains the expected shape in the error message.
 */
static int
get(const PtObj *sd, const char *name, const char *key, int nd, const int64_t *want,
    const char *why, int64_t *got, float **out, char *err)
{
    *out = NULL;
    const PtObj *o = sd_get(sd, key);
    if (!o)
        return ps_seterr(err, PS_ESHAPE, "%s: %s missing (not a MaPLe checkpoint, or damaged)",
                         name, key);
    const PtTensor *t = pt_as_tensor(o);
    if (!t) {
        char buf[80];
        return ps_seterr(err, PS_ESHAPE, "%s: %s is not a tensor but %s", name, key,
                         pt_repr(o, buf, sizeof buf));
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
        return ps_seterr(err, PS_ESHAPE, "%s: %s is %s, expected a floating-point tensor", name,
                         key, st_dtype_name(t->dtype));
    int ok = t->nd == nd;
    for (int i = 0; ok && i < nd; i++)
        ok = want[i] < 0 || t->shape[i] == want[i];
    if (!ok) {
        char a[96], b[96];
        int64_t w[PT_MAX_DIM];
        for (int i = 0; i < nd; i++)
            w[i] = want[i];
        /* show "any" dims as the file has them, when the rank matches */
        for (int i = 0; i < nd && t->nd == nd; i++)
            if (w[i] < 0)
                w[i] = t->shape[i];
        st_shape_str(t->shape, t->nd, a, sizeof a);
        st_shape_str(w, nd, b, sizeof b);
        return ps_seterr(err, PS_ESHAPE, "%s: %s is %s, expected %s%s%s", name, key, a, b,
                         why ? " " : "", why ? why : "");
    }
    for (int i = 0; i < nd; i++)
        if (t->shape[i] <= 0 || t->shape[i] > (1 << 24))
            return ps_seterr(err, PS_ESHAPE, "%s: %s has a dimension of %lld", name, key,
                             (long long)t->shape[i]);
    if (got)
        for (int i = 0; i < nd; i++)
            got[i] = t->shape[i];
    const float *p;
    int rc = pt_tensor_f32(t, &p, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(p[i]))
            return ps_seterr(err, PS_EFORMAT, "%s: %s holds a non-finite value (%g at %zu)", name,
                             key, (double)p[i], i);
    float *buf = ps_try_malloc(t->numel * sizeof *buf, err);
    if (!buf)
        return PS_ENOMEM;
    memcpy(buf, p, t->numel * sizeof *buf);
    *out = buf;
    return PS_OK;
}

/* Number of compound prompts, checked for gaps and for matching projections. */
static int
count_deep(const PtObj *sd, const char *name, int *n_out, char *err)
{
    char k[128];
    int n = 0;
    while (n < MAPLE_MAX_DEPTH) {
        snprintf(k, sizeof k, MAPLE_TN_TEXT, n);
        if (!sd_get(sd, k))
            break;
        n++;
    }
    int bad = 0, mt = max_index(sd, MAPLE_TN_TEXT_STEM, &bad);
    int mp = max_index(sd, MAPLE_TN_DEEP_STEM, &bad);
    if (bad)
        return ps_seterr(err, PS_ESHAPE, "%s: a compound prompt key has no valid index", name);
    if (mt >= n)
        return ps_seterr(err, PS_ESHAPE, "%s: " MAPLE_TN_TEXT " present but " MAPLE_TN_TEXT
                         " missing", name, mt, n);
    if (n >= MAPLE_MAX_DEPTH)
        return ps_seterr(err, PS_ESHAPE, "%s: more than %d compound prompts", name,
                         MAPLE_MAX_DEPTH - 1);
    if (mp >= n)
        return ps_seterr(err, PS_ESHAPE, "%s: " MAPLE_TN_DEEP_STEM "%d present but only "
                         "%d compound prompts", name, mp, n);
    *n_out = n;
    return PS_OK;
}

/* Binds the prompts to a model: checks and the per-block tables. */
static int
bind(Maple *m, const Clip *c, const char *name, char *err)
{
    const ClipConfig *g = &c->cfg;
    int Lv = g->vision.layers, Lt = g->text.layers;
    if (m->depth > Lv || m->depth > Lt)
        return ps_seterr(err, PS_ESHAPE, "%s: prompt depth %d needs at least %d layers; the model "
                         "has %d vision and %d text layers", name, m->depth, m->depth, Lv, Lt);
    if (m->n_ctx > g->ctx - 2)
        return ps_seterr(err, PS_ESHAPE, "%s: %d prompt tokens do not fit the model's %d-token "
                         "text context", name, m->n_ctx, g->ctx);
    m->vis_layers = Lv;
    m->txt_layers = Lt;
    m->vis_ptr = xcalloc((size_t)Lv, sizeof *m->vis_ptr);
    m->txt_ptr = xcalloc((size_t)Lt, sizeof *m->txt_ptr);
    for (int l = 1; l < m->depth; l++) {
        m->vis_ptr[l] = m->vis_deep + (size_t)(l - 1) * m->n_ctx * m->d_vis;
        m->txt_ptr[l] = m->text_deep + (size_t)(l - 1) * m->n_ctx * m->d_text;
    }
    m->vision = (ClipPrompts){ m->n_ctx, m->vis_first, m->vis_ptr };
    m->text = (ClipPrompts){ m->n_ctx, m->ctx, m->txt_ptr };
    return PS_OK;
}

/*
 * Contract: reads the learned prompts from the checkpoint tree root into m
 * (zeroed first). c may be NULL (no model checks, no binding). On failure m
 * is freed and zeroed and err names the tensor.
 */
int
maple_from_pt(Maple *m, const PtObj *root, const char *name, const Clip *c, char *err)
{
    PS_ASSERT(m && name);
    memset(m, 0, sizeof *m);
    m->epoch = -1;
    const PtObj *sd = state_dict(root);
    if (!sd)
        return ps_seterr(err, PS_ESHAPE, "%s: no state_dict (not a Dassl/MaPLe checkpoint)", name);
    if (!sd_get(sd, MAPLE_TN_CTX))
        return ps_seterr(err, PS_ESHAPE, "%s: " MAPLE_TN_CTX " missing (not a MaPLe checkpoint)",
                         name);
    const PtObj *ep = pt_get(root, "epoch");
    if (ep && ep->type == PT_INT && ep->u.i >= 0 && ep->u.i < (1 << 30))
        m->epoch = (int)ep->u.i;

    int Wt = c ? c->cfg.text.width : -1, Wv = c ? c->cfg.vision.width : -1, n = 0, rc;
    char why[160], k[128];
    int64_t s[2];
    if (c)
        snprintf(why, sizeof why, "(n_ctx, the model's text width %d)", Wt);
    else
        snprintf(why, sizeof why, "(n_ctx, text width)");
    if ((rc = get(sd, name, MAPLE_TN_CTX, 2, (int64_t[]){ -1, Wt }, why, s, &m->ctx, err)))
        goto fail;
    m->n_ctx = (int)s[0];
    m->d_text = Wt = (int)s[1];
    if (m->n_ctx > MAPLE_MAX_CTX) {
        rc = ps_seterr(err, PS_ESHAPE, "%s: " MAPLE_TN_CTX " has %d prompt tokens (at most %d)",
                       name, m->n_ctx, MAPLE_MAX_CTX);
        goto fail;
    }
    if (c)
        snprintf(why, sizeof why, "(the model's vision width %d, text width %d)", Wv, Wt);
    else
        snprintf(why, sizeof why, "(vision width, text width %d)", Wt);
    if ((rc = get(sd, name, MAPLE_TN_PROJ_W, 2, (int64_t[]){ Wv, Wt }, why, s, &m->proj_w, err)))
        goto fail;
    m->d_vis = Wv = (int)s[0];
    snprintf(why, sizeof why, "(vision width %d)", Wv);
    if ((rc = get(sd, name, MAPLE_TN_PROJ_B, 1, (int64_t[]){ Wv }, why, NULL, &m->proj_b, err)))
        goto fail;
    if ((rc = count_deep(sd, name, &n, err)))
        goto fail;
    m->depth = n + 1;

    size_t nt = (size_t)m->n_ctx * Wt, nw = (size_t)Wv * Wt, nv = (size_t)m->n_ctx * Wv;
    size_t dn = (size_t)MAX(n, 1);
    m->text_deep = xmalloc(dn * nt * sizeof *m->text_deep);
    m->deep_w = xmalloc(dn * nw * sizeof *m->deep_w);
    m->deep_b = xmalloc(dn * (size_t)Wv * sizeof *m->deep_b);
    m->vis_first = xmalloc(nv * sizeof *m->vis_first);
    m->vis_deep = xmalloc(dn * nv * sizeof *m->vis_deep);
    for (int i = 0; i < n; i++) {
        float *t;
        snprintf(k, sizeof k, MAPLE_TN_TEXT, i);
        snprintf(why, sizeof why, "(n_ctx %d, text width %d)", m->n_ctx, Wt);
        if ((rc = get(sd, name, k, 2, (int64_t[]){ m->n_ctx, Wt }, why, NULL, &t, err)))
            goto fail;
        memcpy(m->text_deep + i * nt, t, nt * sizeof *t);
        free(t);
        snprintf(k, sizeof k, MAPLE_TN_DEEP_W, i);
        snprintf(why, sizeof why, "(vision width %d, text width %d)", Wv, Wt);
        if ((rc = get(sd, name, k, 2, (int64_t[]){ Wv, Wt }, why, NULL, &t, err)))
            goto fail;
        memcpy(m->deep_w + i * nw, t, nw * sizeof *t);
        free(t);
        snprintf(k, sizeof k, MAPLE_TN_DEEP_B, i);
        snprintf(why, sizeof why, "(vision width %d)", Wv);
        if ((rc = get(sd, name, k, 1, (int64_t[]){ Wv }, why, NULL, &t, err)))
            goto fail;
        memcpy(m->deep_b + (size_t)i * Wv, t, (size_t)Wv * sizeof *t);
        free(t);
    }
    /* visual prompts: proj(ctx) and projection_i(compound_i), once */
    ten_linear(m->vis_first, m->ctx, m->proj_w, m->proj_b, m->n_ctx, Wt, Wv);
    for (int i = 0; i < n; i++)
        ten_linear(m->vis_deep + i * nv, m->text_deep + i * nt, m->deep_w + i * nw,
                   m->deep_b + (size_t)i * Wv, m->n_ctx, Wt, Wv);
    if (m->n_ctx <= 4) {
        snprintf(m->prefix, sizeof m->prefix, "%s", ctx_init);
    } else {
        for (int i = 0; i < m->n_ctx; i++)
            strcat(m->prefix, i ? " X" : "X");
    }
    if (c && (rc = bind(m, c, name, err)))
        goto fail;
    return PS_OK;
fail:
    maple_free(m);
    m->epoch = -1;
    return rc;
}

int
maple_load(Maple *m, const char *path, const Clip *c, char *err)
{
    PtFile *f;
    memset(m, 0, sizeof *m);
    int rc = pt_load(&f, path, err);
    if (rc)
        return rc;
    rc = maple_from_pt(m, pt_root(f), path, c, err);
    pt_close(f);
    return rc;
}

void
maple_free(Maple *m)
{
    if (!m)
        return;
    free(m->ctx), free(m->proj_w), free(m->proj_b), free(m->text_deep), free(m->deep_w);
    free(m->deep_b), free(m->vis_first), free(m->vis_deep);
    free(m->vis_ptr), free(m->txt_ptr);
    memset(m, 0, sizeof *m);
}

void
maple_class_prompt(const Maple *m, const char *name, char *out, size_t n)
{
    if (n == 0)
        return;
    size_t k = (size_t)snprintf(out, n, "%s %s.", m->prefix, name);
    size_t start = strlen(m->prefix) + 1;
    for (size_t i = start; i < MIN(k, n - 1); i++)
        if (out[i] == '_')
            out[i] = ' ';
}

/* The prompts must be bound to a model of c's widths and depths. */
static int
check_bound(const Maple *m, const Clip *c, char *err)
{
    if (!m->vis_ptr)
        return ps_seterr(err, PS_EUSAGE, "MaPLe prompts loaded without a model");
    if (m->d_vis != c->cfg.vision.width || m->d_text != c->cfg.text.width ||
        m->vis_layers != c->cfg.vision.layers || m->txt_layers != c->cfg.text.layers)
        return ps_seterr(err, PS_EUSAGE, "MaPLe prompts were loaded for another model");
    return PS_OK;
}

int
maple_encode_image(const Maple *m, Clip *c, const float *pixels, int N, int hook_layer,
                   float *resid, float *embeds, char *err)
{
    int rc = check_bound(m, c, err);
    return rc ? rc : clip_encode_image_ex(c, pixels, N, &m->vision, hook_layer, resid, embeds, err);
}

int
maple_image_from_layer(const Maple *m, Clip *c, const float *resid, int N, int layer,
                       float *embeds, char *err)
{
    int rc = check_bound(m, c, err);
    return rc ? rc : clip_image_from_layer(c, resid, N, layer, &m->vision, embeds, err);
}

int
maple_encode_text(const Maple *m, Clip *c, const int32_t *ids, int P, float *embeds, char *err)
{
    int rc = check_bound(m, c, err);
    return rc ? rc : clip_encode_text_ex(c, ids, P, &m->text, embeds, err);
}

int
maple_encode_classes(const Maple *m, Clip *c, const char *const *names, int C, int32_t *ids,
                     float *embeds, char *err)
{
    int rc = check_bound(m, c, err), ctx = c->cfg.ctx;
    if (rc || C <= 0)
        return rc;
    int32_t *own = ids ? ids : xmalloc((size_t)C * ctx * sizeof *own);
    size_t n = strlen(m->prefix) + 8;
    for (int i = 0; i < C && !rc; i++) {
        size_t len = strlen(names[i]) + n;
        char *buf = xmalloc(len);
        maple_class_prompt(m, names[i], buf, len);
        rc = clip_tokenize(c, buf, own + (size_t)i * ctx, err);
        free(buf);
    }
    if (!rc)
        rc = maple_encode_text(m, c, own, C, embeds, err);
    if (!ids)
        free(own);
    return rc;
}
