/* SPDX-License-Identifier: MIT */
/*
 * clip.c - CLIP in float32: loading (HF directory or OpenAI/open_clip
 * safetensors), the vision and text forwards, zero-shot classifier weights.
 *
 * Loading. An HF directory gives the config (config.json: vision_config /
 * text_config with transformers' CLIP defaults for absent keys,
 * projection_dim; preprocessor_config.json) and HF tensor names; q/k/v
 * projections are fused at load into one (3D, D) matrix per layer (an owned
 * buffer), so both layouts run the same kernels. An OpenAI-named file has its
 * config inferred from shapes as OpenAI's build_model does (heads = width /
 * 64, overridable by __metadata__ for models narrower than 64 a head). Every
 * needed tensor is fetched through st_get_f32 with its expected shape, so a
 * missing or misshapen tensor is PS_ESHAPE naming it and both shapes;
 * F16/BF16 are converted once by st. Unknown tensors are ignored.
 *
 * Forward. All N images of a call form one (N*T, D) activation matrix: every
 * linear layer is one GEMM over N*T rows, the patch convolution is one GEMM
 * after im2col (ten_patchify), attention reads the fused qkv in place. All
 * scratch comes from one arena sized by clip_reserve and reused; batches
 * larger than reserved are run in reserved-size chunks. The text side sorts
 * prompts by length, cuts each after its EOT (causal attention makes the
 * rest irrelevant) and packs prompts of similar length into GEMMs of at most
 * TEXT_ROWS tokens. MaPLe prompts (clip.h ClipPrompts) hook in before ln_pre
 * and before each block; clip_image_from_layer restarts after a hooked layer
 * (top-k masking reruns only the last blocks).
 */
#include "clip.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "st.h"
#include "ten.h"
#include "tok.h"

/* HF CLIPModel tensor names. */
#define HF_PATCH "vision_model.embeddings.patch_embedding.weight"
#define HF_CLS "vision_model.embeddings.class_embedding"
#define HF_VPOS "vision_model.embeddings.position_embedding.weight"
#define HF_PRE "vision_model.pre_layrnorm.%s"
#define HF_POST "vision_model.post_layernorm.%s"
#define HF_VPROJ "visual_projection.weight"
#define HF_TOK "text_model.embeddings.token_embedding.weight"
#define HF_TPOS "text_model.embeddings.position_embedding.weight"
#define HF_FINAL "text_model.final_layer_norm.%s"
#define HF_TPROJ "text_projection.weight"
#define HF_LAYER "%s.encoder.layers.%d.%s" /* tower ("vision_model"/"text_model"), i, rest */
/* OpenAI / open_clip names. */
#define OA_CONV "visual.conv1.weight"
#define OA_CLS "visual.class_embedding"
#define OA_VPOS "visual.positional_embedding"
#define OA_PRE "visual.ln_pre.%s"
#define OA_POST "visual.ln_post.%s"
#define OA_VPROJ "visual.proj"
#define OA_TOK "token_embedding.weight"
#define OA_TPOS "positional_embedding"
#define OA_FINAL "ln_final.%s"
#define OA_TPROJ "text_projection"
#define OA_LAYER "%stransformer.resblocks.%d.%s" /* tower prefix ("visual." or ""), i, rest */
#define TN_SCALE "logit_scale"

#define TEXT_ROWS 2048    /* max prompt tokens per text GEMM */
#define DEFAULT_BATCH 8   /* images per chunk when clip_reserve was not called */
#define MAX_LAYERS 1024
#define JSON_LIMIT (16u << 20)

static const float openai_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
static const float openai_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

/* ---------------------------------------------------------------- loading */

/* Tensor fetcher that keeps the first error: loading code reads as a list. */
typedef struct Ld {
    StFile *f;
    char *err;
    int rc;
} Ld;

static const float *
get(Ld *l, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
{
    if (l->rc)
        return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[4] = { d0, d1, d2, d3 };
    const float *p = NULL;
    l->rc = st_get_f32(l->f, name, nd, shape, &p, l->err);
    return p;
}

static int
file_exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static int
dir_exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

static char *
path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *
dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s)
        return xstrdup(".");
    if (s == path)
        return xstrdup("/");
    char *d = xmalloc((size_t)(s - path) + 1);
    memcpy(d, path, (size_t)(s - path));
    d[s - path] = 0;
    return d;
}

/* An optional positive integer key; PS_EFORMAT when present and not one. */
static int
jint(const json_t *o, const char *key, int *out, const char *what, char *err)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (!v || json_is_null(v))
        return PS_OK;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 24))
        return ps_seterr(err, PS_EFORMAT, "%s: %s is not a positive integer", what, key);
    *out = (int)json_integer_value(v);
    return PS_OK;
}

static int
jnum(const json_t *o, const char *key, float *out, const char *what, char *err)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (!v || json_is_null(v))
        return PS_OK;
    if (!json_is_number(v))
        return ps_seterr(err, PS_EFORMAT, "%s: %s is not a number", what, key);
    *out = (float)json_number_value(v);
    return PS_OK;
}

static int
parse_act(const char *s, ClipAct *out, const char *what, char *err)
{
    if (!strcmp(s, "quick_gelu"))
        *out = CLIP_QUICK_GELU;
    else if (!strcmp(s, "gelu"))
        *out = CLIP_GELU;
    else
        return ps_seterr(err, PS_EFORMAT, "%s: activation \"%s\" not supported (quick_gelu, gelu)",
                         what, s);
    return PS_OK;
}

static int
jact(const json_t *o, const char *key, ClipAct *out, const char *what, char *err)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (!v || json_is_null(v))
        return PS_OK;
    if (!json_is_string(v))
        return ps_seterr(err, PS_EFORMAT, "%s: %s is not a string", what, key);
    return parse_act(json_string_value(v), out, what, err);
}

/* One tower's keys, transformers' CLIPVisionConfig / CLIPTextConfig names. */
static int
hf_tower(const json_t *o, ClipTowerConfig *t, const char *what, char *err)
{
    int rc;
    if ((rc = jint(o, "hidden_size", &t->width, what, err)) || (rc = jint(o, "num_hidden_layers",
        &t->layers, what, err)) || (rc = jint(o, "num_attention_heads", &t->heads, what, err))
        || (rc = jint(o, "intermediate_size", &t->mlp, what, err))
        || (rc = jact(o, "hidden_act", &t->act, what, err))
        || (rc = jnum(o, "layer_norm_eps", &t->eps, what, err)))
        return rc;
    return PS_OK;
}

static const json_t *
sub(const json_t *root, const char *key, const char *legacy)
{
    const json_t *o = json_object_get(root, key);
    if (!json_is_object(o))
        o = json_object_get(root, legacy);
    return json_is_object(o) ? o : NULL;
}

/* config.json of an HF CLIPModel; absent keys keep transformers' defaults. */
static int
hf_config(ClipConfig *cfg, const char *path, char *err)
{
    ClipTowerConfig v = { 768, 12, 12, 3072, CLIP_QUICK_GELU, 1e-5f };
    ClipTowerConfig t = { 512, 12, 8, 2048, CLIP_QUICK_GELU, 1e-5f };
    int S = 224, P = 32, V = 49408, ctx = 77, E = 512, rc;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return ps_seterr(err, PS_EFORMAT, "%s:%d: %s", path, je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ps_seterr(err, PS_EFORMAT, "%s: not a JSON object", path);
    }
    const json_t *vc = sub(root, "vision_config", "vision_config_dict");
    const json_t *tc = sub(root, "text_config", "text_config_dict");
    char what[600];
    snprintf(what, sizeof what, "%s: vision_config", path);
    if ((rc = hf_tower(vc, &v, what, err)) || (rc = jint(vc, "image_size", &S, what, err))
        || (rc = jint(vc, "patch_size", &P, what, err)))
        goto out;
    snprintf(what, sizeof what, "%s: text_config", path);
    if ((rc = hf_tower(tc, &t, what, err)) || (rc = jint(tc, "vocab_size", &V, what, err))
        || (rc = jint(tc, "max_position_embeddings", &ctx, what, err)))
        goto out;
    if ((rc = jint(root, "projection_dim", &E, path, err)))
        goto out;
    cfg->vision = v;
    cfg->text = t;
    cfg->image_size = S;
    cfg->patch_size = P;
    cfg->vocab = V;
    cfg->ctx = ctx;
    cfg->embed_dim = E;
out:
    json_decref(root);
    return rc;
}

/* int or {"shortest_edge": n} / {"height": h, "width": w}. */
static int
jsize(const json_t *o, const char *key, int *h, int *w, const char *what, char *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return PS_OK;
    if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 16)) {
        *h = *w = (int)json_integer_value(v);
        return PS_OK;
    }
    if (json_is_object(v)) {
        int a = 0, b = 0, rc;
        if ((rc = jint(v, "shortest_edge", &a, what, err)))
            return rc;
        if (a > 0 && a < (1 << 16)) {
            *h = *w = a;
            return PS_OK;
        }
        a = b = 0;
        if ((rc = jint(v, "height", &a, what, err)) || (rc = jint(v, "width", &b, what, err)))
            return rc;
        if (a > 0 && b > 0 && a < (1 << 16) && b < (1 << 16)) {
            *h = a;
            *w = b;
            return PS_OK;
        }
    }
    return ps_seterr(err, PS_EFORMAT, "%s: %s is neither an integer nor {\"shortest_edge\": n} "
                     "nor {\"height\", \"width\"}", what, key);
}

static int
jvec3(const json_t *o, const char *key, float *out, const char *what, char *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return PS_OK;
    if (!json_is_array(v) || json_array_size(v) != 3)
        return ps_seterr(err, PS_EFORMAT, "%s: %s is not an array of 3 numbers", what, key);
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        if (!json_is_number(x))
            return ps_seterr(err, PS_EFORMAT, "%s: %s is not an array of 3 numbers", what, key);
        out[i] = (float)json_number_value(x);
    }
    return PS_OK;
}

/* preprocessor_config.json (CLIPImageProcessor); absent file or keys keep the defaults. */
static int
hf_prep(ClipConfig *cfg, const char *path, char *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return ps_seterr(err, PS_EFORMAT, "%s:%d: %s", path, je.line, je.text);
    int rc = PS_OK, h = cfg->resize, w = cfg->resize;
    if (!json_is_object(root)) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: not a JSON object", path);
        goto out;
    }
    if ((rc = jsize(root, "size", &h, &w, path, err)))
        goto out;
    if (h != w) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: size {height %d, width %d}: only a shortest edge is "
                       "supported", path, h, w);
        goto out;
    }
    cfg->resize = h;
    if ((rc = jsize(root, "crop_size", &cfg->crop_h, &cfg->crop_w, path, err))
        || (rc = jvec3(root, "image_mean", cfg->mean, path, err))
        || (rc = jvec3(root, "image_std", cfg->std, path, err)))
        goto out;
    for (int i = 0; i < 3; i++)
        if (!(cfg->std[i] > 0)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: image_std[%d] is not positive", path, i);
            goto out;
        }
out:
    json_decref(root);
    return rc;
}

static int
meta_int(StFile *f, const char *key, int *out, char *err)
{
    const char *s = st_meta(f, key);
    if (!s)
        return PS_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > 4096)
        return ps_seterr(err, PS_EFORMAT, "%s: __metadata__ %s = \"%s\" is not a positive integer",
                         st_path(f), key, s);
    *out = (int)v;
    return PS_OK;
}

static int
count_layers(StFile *f, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < st_count(f); i++) {
        const char *name = st_at(f, i)->name;
        if (strncmp(name, prefix, pl))
            continue;
        const char *s = name + pl;
        char *end;
        long k = strtol(s, &end, 10);
        if (end != s && !strcmp(end, ".attn.in_proj_weight") && k >= 0 && k < MAX_LAYERS && k + 1 > n)
            n = (int)k + 1;
    }
    return n;
}

static const StTensor *
need(StFile *f, const char *name, int nd, char *err, int *rc)
{
    const StTensor *t = st_find(f, name);
    if (*rc)
        return NULL;
    if (!t)
        *rc = ps_seterr(err, PS_ESHAPE, "%s: tensor %s missing", st_path(f), name);
    else if (t->nd != nd) {
        char b[160];
        *rc = ps_seterr(err, PS_ESHAPE, "%s: tensor %s has shape %s, expected %d dimensions",
                        st_path(f), name, st_shape_str(t->shape, t->nd, b, sizeof b), nd);
    }
    return *rc ? NULL : t;
}

static int
heads_for(StFile *f, int width, const char *key, int *out, char *err)
{
    int h = width / 64, rc;
    if ((rc = meta_int(f, "heads", &h, err)) || (rc = meta_int(f, key, &h, err)))
        return rc;
    if (h <= 0 || width % h)
        return ps_seterr(err, PS_EFORMAT, "%s: cannot infer the heads of width %d (width / 64); "
                         "set __metadata__ \"%s\"", st_path(f), width, key);
    *out = h;
    return PS_OK;
}

/* Config of an OpenAI/open_clip-named file, from shapes (OpenAI build_model). */
static int
openai_config(ClipConfig *cfg, StFile *f, char *err)
{
    int rc = PS_OK;
    const StTensor *conv = need(f, OA_CONV, 4, err, &rc), *vpos = need(f, OA_VPOS, 2, err, &rc);
    const StTensor *vproj = need(f, OA_VPROJ, 2, err, &rc), *tok = need(f, OA_TOK, 2, err, &rc);
    const StTensor *tpos = need(f, OA_TPOS, 2, err, &rc);
    const StTensor *vfc = need(f, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, err, &rc);
    const StTensor *tfc = need(f, "transformer.resblocks.0.mlp.c_fc.weight", 2, err, &rc);
    if (rc)
        return rc;
    int64_t D = conv->shape[0], P = conv->shape[3], T = vpos->shape[0];
    int64_t G = (int64_t)llround(sqrt((double)(T - 1)));
    if (conv->shape[1] != 3 || conv->shape[2] != P || P <= 0 || D <= 0 || D > 65536 || P > 4096
        || T < 2 || G * G != T - 1 || G > 4096) {
        char a[160], b[160];
        return ps_seterr(err, PS_ESHAPE, "%s: %s %s and %s %s do not make a square ViT",
                         st_path(f), OA_CONV, st_shape_str(conv->shape, 4, a, sizeof a), OA_VPOS,
                         st_shape_str(vpos->shape, 2, b, sizeof b));
    }
    int64_t Dt = tok->shape[1], V = tok->shape[0], ctx = tpos->shape[0], E = vproj->shape[1];
    if (Dt <= 0 || Dt > 65536 || V <= 0 || V > (1 << 24) || ctx <= 0 || ctx > 65536 || E <= 0
        || E > 65536 || vfc->shape[0] <= 0 || vfc->shape[0] > (1 << 20) || tfc->shape[0] <= 0
        || tfc->shape[0] > (1 << 20))
        return ps_seterr(err, PS_ESHAPE, "%s: implausible text tower shapes", st_path(f));
    ClipTowerConfig v = { (int)D, count_layers(f, "visual.transformer.resblocks."), 0,
                          (int)vfc->shape[0], CLIP_QUICK_GELU, 1e-5f };
    ClipTowerConfig t = { (int)Dt, count_layers(f, "transformer.resblocks."), 0,
                          (int)tfc->shape[0], CLIP_QUICK_GELU, 1e-5f };
    if ((rc = heads_for(f, v.width, "vision_heads", &v.heads, err))
        || (rc = heads_for(f, t.width, "text_heads", &t.heads, err)))
        return rc;
    const char *act = st_meta(f, "act");
    if (!act)
        act = st_meta(f, "hidden_act");
    if (act) {
        if ((rc = parse_act(act, &v.act, st_path(f), err)))
            return rc;
        t.act = v.act;
    }
    cfg->vision = v;
    cfg->text = t;
    cfg->image_size = (int)(G * P);
    cfg->patch_size = (int)P;
    cfg->vocab = (int)V;
    cfg->ctx = (int)ctx;
    cfg->embed_dim = (int)E;
    return PS_OK;
}

static int
check_config(const ClipConfig *c, const char *path, char *err)
{
    const ClipTowerConfig *tw[2] = { &c->vision, &c->text };
    for (int i = 0; i < 2; i++) {
        const ClipTowerConfig *t = tw[i];
        if (t->layers <= 0 || t->layers > MAX_LAYERS || t->width <= 0 || t->heads <= 0
            || t->width % t->heads || t->mlp <= 0 || !(t->eps > 0))
            return ps_seterr(err, PS_EFORMAT, "%s: bad %s tower (width %d, layers %d, heads %d, "
                             "mlp %d)", path, i ? "text" : "vision", t->width, t->layers, t->heads,
                             t->mlp);
    }
    if (c->patch_size <= 0 || c->image_size % c->patch_size)
        return ps_seterr(err, PS_EFORMAT, "%s: image size %d is not a multiple of patch size %d",
                         path, c->image_size, c->patch_size);
    if (c->crop_h != c->image_size || c->crop_w != c->image_size)
        return ps_seterr(err, PS_EFORMAT, "%s: crop %dx%d differs from the model's image size %d",
                         path, c->crop_h, c->crop_w, c->image_size);
    if ((int64_t)c->vision.width * c->vision.mlp > (int64_t)1 << 31
        || (int64_t)c->text.width * c->text.mlp > (int64_t)1 << 31
        || (int64_t)c->vocab * c->text.width > (int64_t)1 << 34)
        return ps_seterr(err, PS_EFORMAT, "%s: model too large", path);
    return PS_OK;
}

/* One block's tensors; HF's q/k/v go into the owned buffer at *own. */
static void
load_layer(Ld *l, ClipLayer *ly, const ClipTowerConfig *t, ClipLayout lay, const char *tower,
           int i, float **own)
{
    int64_t D = t->width, F = t->mlp;
    if (lay == CLIP_LAYOUT_OPENAI) {
        const char *p = tower;
        ly->ln1_w = get(l, 1, D, 0, 0, 0, OA_LAYER, p, i, "ln_1.weight");
        ly->ln1_b = get(l, 1, D, 0, 0, 0, OA_LAYER, p, i, "ln_1.bias");
        ly->w_qkv = get(l, 2, 3 * D, D, 0, 0, OA_LAYER, p, i, "attn.in_proj_weight");
        ly->b_qkv = get(l, 1, 3 * D, 0, 0, 0, OA_LAYER, p, i, "attn.in_proj_bias");
        ly->w_out = get(l, 2, D, D, 0, 0, OA_LAYER, p, i, "attn.out_proj.weight");
        ly->b_out = get(l, 1, D, 0, 0, 0, OA_LAYER, p, i, "attn.out_proj.bias");
        ly->ln2_w = get(l, 1, D, 0, 0, 0, OA_LAYER, p, i, "ln_2.weight");
        ly->ln2_b = get(l, 1, D, 0, 0, 0, OA_LAYER, p, i, "ln_2.bias");
        ly->w_fc1 = get(l, 2, F, D, 0, 0, OA_LAYER, p, i, "mlp.c_fc.weight");
        ly->b_fc1 = get(l, 1, F, 0, 0, 0, OA_LAYER, p, i, "mlp.c_fc.bias");
        ly->w_fc2 = get(l, 2, D, F, 0, 0, OA_LAYER, p, i, "mlp.c_proj.weight");
        ly->b_fc2 = get(l, 1, D, 0, 0, 0, OA_LAYER, p, i, "mlp.c_proj.bias");
        return;
    }
    const char *p = tower;
    ly->ln1_w = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, "layer_norm1.weight");
    ly->ln1_b = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, "layer_norm1.bias");
    static const char *const qkv[3][2] = {
        { "self_attn.q_proj.weight", "self_attn.q_proj.bias" },
        { "self_attn.k_proj.weight", "self_attn.k_proj.bias" },
        { "self_attn.v_proj.weight", "self_attn.v_proj.bias" },
    };
    float *w = *own, *b = w + 3 * D * D;
    for (int j = 0; j < 3; j++) {
        const float *pw = get(l, 2, D, D, 0, 0, HF_LAYER, p, i, qkv[j][0]);
        const float *pb = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, qkv[j][1]);
        if (pw && pb) {
            memcpy(w + j * D * D, pw, (size_t)(D * D) * sizeof *w);
            memcpy(b + j * D, pb, (size_t)D * sizeof *b);
        }
    }
    ly->w_qkv = w;
    ly->b_qkv = b;
    *own = b + 3 * D;
    ly->w_out = get(l, 2, D, D, 0, 0, HF_LAYER, p, i, "self_attn.out_proj.weight");
    ly->b_out = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, "self_attn.out_proj.bias");
    ly->ln2_w = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, "layer_norm2.weight");
    ly->ln2_b = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, "layer_norm2.bias");
    ly->w_fc1 = get(l, 2, F, D, 0, 0, HF_LAYER, p, i, "mlp.fc1.weight");
    ly->b_fc1 = get(l, 1, F, 0, 0, 0, HF_LAYER, p, i, "mlp.fc1.bias");
    ly->w_fc2 = get(l, 2, D, F, 0, 0, HF_LAYER, p, i, "mlp.fc2.weight");
    ly->b_fc2 = get(l, 1, D, 0, 0, 0, HF_LAYER, p, i, "mlp.fc2.bias");
}

static int
load_weights(Clip *c, char *err)
{
    ClipConfig *g = &c->cfg;
    Ld l = { c->st, err, PS_OK };
    int64_t D = g->vision.width, Dt = g->text.width, P = g->patch_size, T = g->n_tok;
    int64_t E = g->embed_dim;
    int hf = c->layout == CLIP_LAYOUT_HF;
    c->vis.layers = xcalloc((size_t)g->vision.layers, sizeof *c->vis.layers);
    c->txt.layers = xcalloc((size_t)g->text.layers, sizeof *c->txt.layers);
    if (hf) {
        size_t n = (size_t)g->vision.layers * (size_t)(3 * D * D + 3 * D)
                   + (size_t)g->text.layers * (size_t)(3 * Dt * Dt + 3 * Dt);
        c->owned = ps_big_alloc(n * sizeof(float));
        if (!c->owned)
            return ps_seterr(err, PS_ENOMEM, "%s: out of memory for the fused q/k/v weights",
                             c->path);
        c->owned_n = n;
    }
    float *own = c->owned;
    ClipVision *v = &c->vis;
    ClipText *t = &c->txt;
    if (hf) {
        v->patch_w = get(&l, 4, D, 3, P, P, HF_PATCH);
        v->cls = get(&l, 1, D, 0, 0, 0, HF_CLS);
        v->pos = get(&l, 2, T, D, 0, 0, HF_VPOS);
        v->ln_pre_w = get(&l, 1, D, 0, 0, 0, HF_PRE, "weight");
        v->ln_pre_b = get(&l, 1, D, 0, 0, 0, HF_PRE, "bias");
        v->ln_post_w = get(&l, 1, D, 0, 0, 0, HF_POST, "weight");
        v->ln_post_b = get(&l, 1, D, 0, 0, 0, HF_POST, "bias");
        v->proj = get(&l, 2, E, D, 0, 0, HF_VPROJ);
        t->tok_emb = get(&l, 2, g->vocab, Dt, 0, 0, HF_TOK);
        t->pos = get(&l, 2, g->ctx, Dt, 0, 0, HF_TPOS);
        t->ln_w = get(&l, 1, Dt, 0, 0, 0, HF_FINAL, "weight");
        t->ln_b = get(&l, 1, Dt, 0, 0, 0, HF_FINAL, "bias");
        t->proj = get(&l, 2, E, Dt, 0, 0, HF_TPROJ);
    } else {
        v->patch_w = get(&l, 4, D, 3, P, P, OA_CONV);
        v->cls = get(&l, 1, D, 0, 0, 0, OA_CLS);
        v->pos = get(&l, 2, T, D, 0, 0, OA_VPOS);
        v->ln_pre_w = get(&l, 1, D, 0, 0, 0, OA_PRE, "weight");
        v->ln_pre_b = get(&l, 1, D, 0, 0, 0, OA_PRE, "bias");
        v->ln_post_w = get(&l, 1, D, 0, 0, 0, OA_POST, "weight");
        v->ln_post_b = get(&l, 1, D, 0, 0, 0, OA_POST, "bias");
        v->proj = get(&l, 2, D, E, 0, 0, OA_VPROJ);
        t->tok_emb = get(&l, 2, g->vocab, Dt, 0, 0, OA_TOK);
        t->pos = get(&l, 2, g->ctx, Dt, 0, 0, OA_TPOS);
        t->ln_w = get(&l, 1, Dt, 0, 0, 0, OA_FINAL, "weight");
        t->ln_b = get(&l, 1, Dt, 0, 0, 0, OA_FINAL, "bias");
        t->proj = get(&l, 2, Dt, E, 0, 0, OA_TPROJ);
        v->proj_in_out = t->proj_in_out = 1;
    }
    for (int i = 0; i < g->vision.layers; i++)
        load_layer(&l, &v->layers[i], &g->vision, c->layout, hf ? "vision_model" : "visual.", i,
                   &own);
    for (int i = 0; i < g->text.layers; i++)
        load_layer(&l, &t->layers[i], &g->text, c->layout, hf ? "text_model" : "", i, &own);
    if (l.rc)
        return l.rc;
    const StTensor *s = st_find(c->st, TN_SCALE);
    if (!s || !(s->nd == 0 || (s->nd == 1 && s->shape[0] == 1)))
        return ps_seterr(err, PS_ESHAPE, "%s: tensor %s %s (expected a scalar)", st_path(c->st),
                         TN_SCALE, s ? "is not a scalar" : "missing");
    const float *ls;
    int rc = st_get_f32(c->st, TN_SCALE, s->nd, s->shape, &ls, err);
    if (rc)
        return rc;
    g->logit_scale = expf(*ls);
    return PS_OK;
}

/* Tokenizer files: explicit, else vocab.json + merges.txt, else the OpenAI .txt.gz, beside. */
static void
find_tokenizer(Clip *c, const char *dir, const char *explicit_path)
{
    if (explicit_path) {
        c->tok_path = xstrdup(explicit_path);
        return;
    }
    char *v = path_join(dir, "vocab.json"), *m = path_join(dir, "merges.txt");
    char *g = path_join(dir, "bpe_simple_vocab_16e6.txt.gz");
    if (file_exists(v) && file_exists(m))
        c->tok_path = xstrdup(v);
    else if (file_exists(g))
        c->tok_path = xstrdup(g);
    free(v), free(m), free(g);
}

int
clip_open(Clip *c, const char *path, const char *tokenizer, char *err)
{
    memset(c, 0, sizeof *c);
    int rc;
    char *dir, *weights, *config = NULL;
    if (dir_exists(path)) {
        dir = xstrdup(path);
        weights = path_join(dir, "model.safetensors");
    } else {
        dir = dir_of(path);
        weights = xstrdup(path);
    }
    c->path = xstrdup(path);
    if ((rc = st_open(&c->st, weights, err)))
        goto out;
    ClipConfig *g = &c->cfg;
    if (st_find(c->st, OA_CONV)) {
        c->layout = CLIP_LAYOUT_OPENAI;
        if ((rc = openai_config(g, c->st, err)))
            goto out;
    } else if (st_find(c->st, HF_PATCH)) {
        c->layout = CLIP_LAYOUT_HF;
        config = path_join(dir, "config.json");
        if (!file_exists(config)) {
            rc = ps_seterr(err, PS_EIO, "%s: HF tensor names but no %s", weights, config);
            goto out;
        }
        if ((rc = hf_config(g, config, err)))
            goto out;
    } else {
        rc = ps_seterr(err, PS_EFORMAT, "%s: neither HF (%s) nor OpenAI (%s) CLIP tensor names",
                       weights, HF_PATCH, OA_CONV);
        goto out;
    }
    g->resize = g->crop_h = g->crop_w = g->image_size;
    memcpy(g->mean, openai_mean, sizeof g->mean);
    memcpy(g->std, openai_std, sizeof g->std);
    char *prep = path_join(dir, "preprocessor_config.json");
    if (c->layout == CLIP_LAYOUT_HF && file_exists(prep))
        rc = hf_prep(g, prep, err);
    free(prep);
    if (rc)
        goto out;
    if ((rc = check_config(g, config ? config : weights, err)))
        goto out;
    g->grid = g->image_size / g->patch_size;
    g->n_tok = 1 + g->grid * g->grid;
    if ((rc = load_weights(c, err)))
        goto out;
    find_tokenizer(c, dir, tokenizer);
out:
    free(dir), free(weights), free(config);
    if (rc)
        clip_close(c);
    return rc;
}

void
clip_close(Clip *c)
{
    if (!c)
        return;
    st_close(c->st);
    ps_big_free(c->owned, c->owned_n * sizeof(float));
    free(c->vis.layers);
    free(c->txt.layers);
    free(c->path);
    free(c->tok_path);
    tok_free(&c->tok);
    ps_arena_free(&c->ws);
    memset(c, 0, sizeof *c);
}

/* -------------------------------------------------------------- workspace */

typedef struct Work {
    float *x;   /* (M, D) residual stream */
    float *h;   /* (M, D) LayerNorm output / linear output */
    float *qkv; /* (M, 3D) */
    float *a;   /* (M, D) attention output */
    float *f;   /* (M, F) MLP hidden */
    float *scr; /* (threads, T, T) attention scores */
} Work;

static size_t
fl(size_t n) /* bytes of n floats, rounded up to the arena's 64-byte alignment */
{
    return (n * sizeof(float) + 63) & ~(size_t)63;
}

static size_t
tower_bytes(const ClipTowerConfig *t, size_t M, size_t T)
{
    size_t D = (size_t)t->width;
    return fl(M * D) * 3 + fl(M * 3 * D) + fl(M * (size_t)t->mlp)
           + fl(ten_attention_scratch((int)T, t->width));
}

static size_t
vision_bytes(const ClipConfig *g, int N, int n_ctx)
{
    size_t T = (size_t)g->n_tok + (size_t)n_ctx, M = (size_t)N * T;
    size_t K = 3 * (size_t)g->patch_size * g->patch_size, GG = (size_t)g->grid * g->grid;
    size_t head = fl((size_t)N * MAX(g->vision.width, g->embed_dim)) * 2;
    return tower_bytes(&g->vision, M, T) + MAX(fl((size_t)N * GG * K), head);
}

static int
text_rows(const ClipConfig *g)
{
    return MAX(TEXT_ROWS, g->ctx);
}

static size_t
text_bytes(const ClipConfig *g)
{
    size_t M = (size_t)text_rows(g);
    return tower_bytes(&g->text, M, (size_t)g->ctx) + 2 * fl(M * MAX(g->text.width, g->embed_dim));
}

int
clip_reserve(Clip *c, int max_images, int n_ctx, char *err)
{
    PS_ASSERT(max_images > 0 && n_ctx >= 0);
    size_t need = MAX(vision_bytes(&c->cfg, max_images, n_ctx), text_bytes(&c->cfg));
    if (need > c->ws.cap) {
        ps_arena_free(&c->ws);
        int rc = ps_arena_init(&c->ws, need, err);
        if (rc) {
            c->ws_images = 0;
            return rc;
        }
    }
    c->ws_images = max_images;
    c->ws_ctx = n_ctx;
    return PS_OK;
}

static void
work_alloc(Work *w, Arena *a, const ClipTowerConfig *t, size_t M, size_t T)
{
    size_t D = (size_t)t->width;
    w->x = ps_arena_alloc(a, M * D * sizeof(float));
    w->h = ps_arena_alloc(a, M * D * sizeof(float));
    w->qkv = ps_arena_alloc(a, M * 3 * D * sizeof(float));
    w->a = ps_arena_alloc(a, M * D * sizeof(float));
    w->f = ps_arena_alloc(a, M * (size_t)t->mlp * sizeof(float));
    w->scr = ps_arena_alloc(a, ten_attention_scratch((int)T, t->width) * sizeof(float));
}

/* ---------------------------------------------------------------- forward */

/* x (nseq*T, D) += attn(ln1 x); x += mlp(ln2 x). */
static void
block(const ClipTowerConfig *t, const ClipLayer *ly, Work *w, int nseq, int T, int causal)
{
    int D = t->width, F = t->mlp, M = nseq * T;
    ten_layernorm(w->h, w->x, ly->ln1_w, ly->ln1_b, M, D, t->eps);
    ten_linear(w->qkv, w->h, ly->w_qkv, ly->b_qkv, M, D, 3 * D);
    ten_attention(w->a, w->qkv, nseq, T, D, t->heads, causal, w->scr);
    ten_linear_acc(w->x, w->a, ly->w_out, ly->b_out, M, D, D);
    ten_layernorm(w->h, w->x, ly->ln2_w, ly->ln2_b, M, D, t->eps);
    ten_linear(w->f, w->h, ly->w_fc1, ly->b_fc1, M, D, F);
    if (t->act == CLIP_GELU)
        ten_gelu(w->f, (size_t)M * F);
    else
        ten_quick_gelu(w->f, (size_t)M * F);
    ten_linear_acc(w->x, w->f, ly->w_fc2, ly->b_fc2, M, F, D);
}

/* Rows `rows` (n, D) -> LayerNorm -> projection -> L2 norm into out (n, E). */
static void
head(const ClipConfig *g, int D, const float *ln_w, const float *ln_b, float eps,
     const float *proj, int in_out, float *rows, int n, float *out)
{
    ten_layernorm(rows, rows, ln_w, ln_b, n, D, eps);
    if (in_out)
        ten_matmul(out, rows, proj, NULL, n, D, g->embed_dim);
    else
        ten_linear(out, rows, proj, NULL, n, D, g->embed_dim);
    ten_l2norm(out, n, g->embed_dim);
}

static void
replace_tail(float *x, int N, int T, int D, int n_ctx, const float *src)
{
    for (int n = 0; n < N; n++)
        memcpy(x + ((size_t)n * T + (size_t)(T - n_ctx)) * D, src,
               (size_t)n_ctx * D * sizeof *x);
}

/* Blocks from..to-1 on w->x (N, T, D); hook copy after block `hook`. */
static void
vision_blocks(Clip *c, Work *w, int N, int T, const ClipPrompts *pr, int from, int to, int hook,
              float *resid)
{
    const ClipTowerConfig *t = &c->cfg.vision;
    for (int l = from; l < to; l++) {
        if (pr && pr->n_ctx > 0 && pr->deep && pr->deep[l])
            replace_tail(w->x, N, T, t->width, pr->n_ctx, pr->deep[l]);
        block(t, &c->vis.layers[l], w, N, T, 0);
        if (l == hook && resid)
            memcpy(resid, w->x, (size_t)N * T * t->width * sizeof *resid);
    }
}

static void
vision_head(Clip *c, Work *w, int N, int T, float *embeds)
{
    const ClipConfig *g = &c->cfg;
    int D = g->vision.width;
    float *cls = ps_arena_alloc(&c->ws, (size_t)N * D * sizeof *cls);
    for (int n = 0; n < N; n++)
        memcpy(cls + (size_t)n * D, w->x + (size_t)n * T * D, (size_t)D * sizeof *cls);
    head(g, D, c->vis.ln_post_w, c->vis.ln_post_b, g->vision.eps, c->vis.proj,
         c->vis.proj_in_out, cls, N, embeds);
}

static int
ensure(Clip *c, int N, int n_ctx, char *err)
{
    if (c->ws_images > 0 && n_ctx <= c->ws_ctx)
        return PS_OK;
    return clip_reserve(c, c->ws_images > 0 ? c->ws_images : MIN(N, DEFAULT_BATCH),
                        MAX(n_ctx, c->ws_ctx), err);
}

static int
check_prompts(const ClipPrompts *pr, char *err)
{
    if (pr && (pr->n_ctx < 0 || pr->n_ctx > 4096))
        return ps_seterr(err, PS_EUSAGE, "%d prompt tokens: must be 0..4096", pr->n_ctx);
    return PS_OK;
}

int
clip_encode_image(Clip *c, const float *pixels, int N, int hook_layer, float *resid,
                  float *embeds, char *err)
{
    return clip_encode_image_ex(c, pixels, N, NULL, hook_layer, resid, embeds, err);
}

int
clip_encode_image_ex(Clip *c, const float *pixels, int N, const ClipPrompts *pr, int hook_layer,
                     float *resid, float *embeds, char *err)
{
    const ClipConfig *g = &c->cfg;
    int L = g->vision.layers, D = g->vision.width, rc;
    if (hook_layer < -1 || hook_layer >= L)
        return ps_seterr(err, PS_EUSAGE, "layer %d out of range: the model has %d (0..%d)",
                         hook_layer, L, L - 1);
    if ((rc = check_prompts(pr, err)))
        return rc;
    int n_ctx = pr ? pr->n_ctx : 0, T = g->n_tok + n_ctx, GG = g->grid * g->grid;
    int S = g->image_size, P = g->patch_size, K = 3 * P * P;
    int last = embeds ? L : hook_layer + 1;
    if (N <= 0 || last <= 0)
        return PS_OK;
    if ((rc = ensure(c, N, n_ctx, err)))
        return rc;
    for (int n0 = 0; n0 < N; n0 += c->ws_images) {
        int B = MIN(c->ws_images, N - n0);
        ps_arena_reset(&c->ws);
        Work w;
        work_alloc(&w, &c->ws, &g->vision, (size_t)B * T, (size_t)T);
        float *cols = ps_arena_alloc(&c->ws, (size_t)B * GG * K * sizeof *cols);
        ten_patchify(cols, pixels + (size_t)n0 * 3 * S * S, B, 3, S, P);
        ten_linear(w.h, cols, c->vis.patch_w, NULL, B * GG, K, D); /* (B*GG, D) patch tokens */
        const float *pos = c->vis.pos;
        for (int n = 0; n < B; n++) {
            float *x = w.x + (size_t)n * T * D;
            for (int j = 0; j < D; j++)
                x[j] = c->vis.cls[j] + pos[j];
            for (int p = 0; p < GG; p++) {
                const float *e = w.h + ((size_t)n * GG + p) * D, *q = pos + (size_t)(1 + p) * D;
                float *xr = x + (size_t)(1 + p) * D;
                for (int j = 0; j < D; j++)
                    xr[j] = e[j] + q[j];
            }
            if (n_ctx > 0 && pr->first)
                memcpy(x + (size_t)g->n_tok * D, pr->first, (size_t)n_ctx * D * sizeof *x);
            else if (n_ctx > 0)
                memset(x + (size_t)g->n_tok * D, 0, (size_t)n_ctx * D * sizeof *x);
        }
        ten_layernorm(w.x, w.x, c->vis.ln_pre_w, c->vis.ln_pre_b, B * T, D, g->vision.eps);
        vision_blocks(c, &w, B, T, pr, 0, last, hook_layer,
                      resid ? resid + (size_t)n0 * T * D : NULL);
        if (embeds) {
            c->ws.used = (size_t)((unsigned char *)cols - c->ws.base); /* cols are dead */
            vision_head(c, &w, B, T, embeds + (size_t)n0 * g->embed_dim);
        }
    }
    return PS_OK;
}

int
clip_image_from_layer(Clip *c, const float *resid, int N, int layer, const ClipPrompts *pr,
                      float *embeds, char *err)
{
    const ClipConfig *g = &c->cfg;
    int L = g->vision.layers, D = g->vision.width, rc;
    if (layer < -1 || layer >= L)
        return ps_seterr(err, PS_EUSAGE, "layer %d out of range: the model has %d (0..%d)", layer,
                         L, L - 1);
    if ((rc = check_prompts(pr, err)))
        return rc;
    int n_ctx = pr ? pr->n_ctx : 0, T = g->n_tok + n_ctx;
    if (N <= 0)
        return PS_OK;
    if ((rc = ensure(c, N, n_ctx, err)))
        return rc;
    for (int n0 = 0; n0 < N; n0 += c->ws_images) {
        int B = MIN(c->ws_images, N - n0);
        ps_arena_reset(&c->ws);
        Work w;
        work_alloc(&w, &c->ws, &g->vision, (size_t)B * T, (size_t)T);
        memcpy(w.x, resid + (size_t)n0 * T * D, (size_t)B * T * D * sizeof *w.x);
        vision_blocks(c, &w, B, T, pr, layer + 1, L, -1, NULL);
        vision_head(c, &w, B, T, embeds + (size_t)n0 * g->embed_dim);
    }
    return PS_OK;
}

/* Position of the largest id (the EOT: OpenAI's and HF's pooling), first on ties. */
static int
eot_pos(const int32_t *ids, int ctx)
{
    int k = 0;
    for (int i = 1; i < ctx; i++)
        if (ids[i] > ids[k])
            k = i;
    return k;
}

typedef struct TextLen {
    int len, idx;
} TextLen;

static int
by_len(const void *a, const void *b)
{
    const TextLen *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int
clip_encode_text(Clip *c, const int32_t *ids, int P, float *embeds, char *err)
{
    return clip_encode_text_ex(c, ids, P, NULL, embeds, err);
}

int
clip_encode_text_ex(Clip *c, const int32_t *ids, int P, const ClipPrompts *pr, float *embeds,
                    char *err)
{
    const ClipConfig *g = &c->cfg;
    int ctx = g->ctx, D = g->text.width, L = g->text.layers, rc;
    int n_ctx = pr ? pr->n_ctx : 0;
    if (n_ctx < 0 || n_ctx > ctx - 2)
        return ps_seterr(err, PS_EUSAGE, "%d text prompt tokens: must be 0..%d", n_ctx, ctx - 2);
    for (size_t i = 0; i < (size_t)P * ctx; i++)
        if (ids[i] < 0 || ids[i] >= g->vocab)
            return ps_seterr(err, PS_EFORMAT, "prompt %zu: token id %d outside the vocabulary "
                             "(0..%d)", i / (size_t)ctx, (int)ids[i], g->vocab - 1);
    if (P <= 0)
        return PS_OK;
    if ((rc = ensure(c, 1, 0, err)))
        return rc;
    TextLen *lens = xmalloc((size_t)P * sizeof *lens);
    for (int p = 0; p < P; p++) {
        lens[p].len = MAX(eot_pos(ids + (size_t)p * ctx, ctx) + 1, n_ctx + 1);
        lens[p].idx = p;
    }
    qsort(lens, (size_t)P, sizeof *lens, by_len);
    int rows = text_rows(g);
    for (int p0 = 0; p0 < P;) {
        /* greedy: add prompts (increasing length) while B * T fits in `rows` */
        int B = 1;
        while (p0 + B < P && (B + 1) * lens[p0 + B].len <= rows)
            B++;
        int T = lens[p0 + B - 1].len;
        ps_arena_reset(&c->ws);
        Work w;
        work_alloc(&w, &c->ws, &g->text, (size_t)B * T, (size_t)T);
        for (int b = 0; b < B; b++) {
            const int32_t *id = ids + (size_t)lens[p0 + b].idx * ctx;
            for (int t = 0; t < T; t++) {
                float *x = w.x + ((size_t)b * T + t) * D;
                const float *e = (n_ctx > 0 && pr->first && t >= 1 && t <= n_ctx)
                                     ? pr->first + (size_t)(t - 1) * D
                                     : c->txt.tok_emb + (size_t)id[t] * D;
                const float *q = c->txt.pos + (size_t)t * D;
                for (int j = 0; j < D; j++)
                    x[j] = e[j] + q[j];
            }
        }
        for (int l = 0; l < L; l++) {
            if (n_ctx > 0 && pr->deep && pr->deep[l])
                for (int b = 0; b < B; b++)
                    memcpy(w.x + ((size_t)b * T + 1) * D, pr->deep[l],
                           (size_t)n_ctx * D * sizeof *w.x);
            block(&g->text, &c->txt.layers[l], &w, B, T, 1);
        }
        float *rows_ = ps_arena_alloc(&c->ws, (size_t)B * D * sizeof *rows_); /* (B, D) pooled */
        float *out = ps_arena_alloc(&c->ws, (size_t)B * g->embed_dim * sizeof *out); /* (B, E) */
        for (int b = 0; b < B; b++) {
            int e = eot_pos(ids + (size_t)lens[p0 + b].idx * ctx, ctx);
            memcpy(rows_ + (size_t)b * D, w.x + ((size_t)b * T + e) * D, (size_t)D * sizeof *rows_);
        }
        head(g, D, c->txt.ln_w, c->txt.ln_b, g->text.eps, c->txt.proj, c->txt.proj_in_out, rows_,
             B, out);
        for (int b = 0; b < B; b++)
            memcpy(embeds + (size_t)lens[p0 + b].idx * g->embed_dim, out + (size_t)b * g->embed_dim,
                   (size_t)g->embed_dim * sizeof *out);
        p0 += B;
    }
    free(lens);
    return PS_OK;
}

/* -------------------------------------------------------- zero-shot, text */

int
clip_tokenize(Clip *c, const char *text, int32_t *ids, char *err)
{
    if (!c->tok_loaded) {
        if (!c->tok_path)
            return ps_seterr(err, PS_EIO, "%s: no tokenizer found beside the model (vocab.json + "
                             "merges.txt, or bpe_simple_vocab_16e6.txt.gz); name one", c->path);
        size_t n = strlen(c->tok_path);
        int rc;
        if (n > 3 && !strcmp(c->tok_path + n - 3, ".gz")) {
            rc = tok_load_bpe_gz(&c->tok, c->tok_path, err);
        } else {
            char *dir = dir_of(c->tok_path), *merges = path_join(dir, "merges.txt");
            rc = tok_load_hf(&c->tok, c->tok_path, merges, err);
            free(dir), free(merges);
        }
        if (rc)
            return rc;
        if (c->tok.n_vocab > c->cfg.vocab) {
            int n_tok = c->tok.n_vocab;
            tok_free(&c->tok);
            return ps_seterr(err, PS_EFORMAT, "%s: tokenizer has %d tokens, the model %d",
                             c->tok_path, n_tok, c->cfg.vocab);
        }
        c->tok_loaded = 1;
    }
    int rc = tok_tokenize(&c->tok, text, c->cfg.ctx, ids);
    if (rc)
        return ps_seterr(err, rc, "cannot tokenize \"%.40s...\"", text);
    return PS_OK;
}

void
clip_logits(const Clip *c, const float *img, int N, const float *txt, int P, float *logits)
{
    if (N <= 0 || P <= 0)
        return;
    ten_linear(logits, img, txt, NULL, N, c->cfg.embed_dim, P);
    ten_scale(logits, (size_t)N * P, c->cfg.logit_scale);
}

void
clip_format_prompt(char *out, size_t n, const char *tpl, const char *name)
{
    const char *at = strstr(tpl, "{}");
    if (!at)
        snprintf(out, n, "%s", tpl);
    else
        snprintf(out, n, "%.*s%s%s", (int)(at - tpl), tpl, name, at + 2);
}

int
clip_zeroshot_weights(Clip *c, const char *const *classes, int C, const char *const *templates,
                      int n_templates, int renorm, float *out, char *err)
{
    int E = c->cfg.embed_dim, ctx = c->cfg.ctx, rc = PS_OK;
    PS_ASSERT(n_templates > 0);
    int32_t *ids = xmalloc((size_t)n_templates * ctx * sizeof *ids);
    float *emb = xmalloc((size_t)n_templates * E * sizeof *emb);
    char text[1024];
    for (int k = 0; k < C && !rc; k++) {
        for (int j = 0; j < n_templates && !rc; j++) {
            clip_format_prompt(text, sizeof text, templates[j], classes[k]);
            rc = clip_tokenize(c, text, ids + (size_t)j * ctx, err);
        }
        if (rc || (rc = clip_encode_text(c, ids, n_templates, emb, err)))
            break;
        float *o = out + (size_t)k * E;
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int j = 0; j < n_templates; j++)
                s += emb[(size_t)j * E + e];
            o[e] = (float)(s / n_templates);
        }
        if (renorm)
            ten_l2norm(o, 1, E);
    }
    free(ids);
    free(emb);
    return rc;
}

const char *const clip_photo_template = "a photo of a {}.";

/* OpenAI CLIP's 80 ImageNet templates (Prompt_Engineering_for_ImageNet), in their order. */
const char *const clip_imagenet_templates[CLIP_N_TEMPLATES] = {
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.", "the plastic {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.",
    "art of a {}.", "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.",
    "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
};
