/* SPDX-License-Identifier: MIT */
/*
 * sae.c - PatchSAE's sparse autoencoder: loading its three file layouts into
 * one Sae, saving the project's own, and the encode/decode kernels.
 *
 * Encoding runs over blocks of up to SAE_BLOCK tokens: x − b_dec into a
 * (B, D) block, then, tile by tile across the latents, W_enc's columns
 * c0..c0+nc into a reused dense (B, nc) tile of 8 MiB (nc = SAE_COLS for a
 * full block, wider for fewer tokens). Each tile is cut into one column part
 * per thread of ten.h's pool; a thread runs the part's GEMM single-threaded
 * and then, while the part is still in its cache, adds b_enc, applies the
 * ReLU and appends each row's positive values to its own list (so the
 * compaction is not a single-threaded pause between GEMMs, and OpenBLAS's
 * idle workers are not spinning beside the pool). Sixteen latents are tested
 * at once before any is appended (a loop the compiler turns branch-free),
 * since at L0 ≈ 150 of 49152 most groups of 16 are all zero. The parts'
 * lists are then spliced into CSR rows in latent order. The dense encoder
 * makes the same GEMM calls, so both give the same bits. Large blocks
 * matter: W_enc (151 MB for ViT-B/16) is streamed from memory once per
 * block, so 8 images of 197 tokens in one call are about 20 % faster per
 * image than one at a time (bench/bench_sae.sh).
 * Decoding walks the non-zeros only (about 150 of 49152 per token):
 * xhat[t] = b_dec + Σ f[t,s] W_dec[s], optionally skipping masked latents.
 *
 * The GEMM is called here rather than through ten_matmul: the block, the
 * bias and the compaction are one kernel whose point is to never write the
 * biased dense block back (house-style puts cblas in ten.c/ref.c only; this
 * is the one other place, on purpose).
 *
 * Weights live in one ps_big_alloc block (W_enc | b_enc | W_dec | b_dec),
 * copied out of the file and converted to float32, so the file is closed
 * as soon as the SAE is loaded.
 */
#include "sae.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>
#include <jansson.h>

#include "ps.h"
#include "pt.h"
#include "st.h"
#include "ten.h"

#define SAE_MAX_BYTES ((size_t)1 << 37) /* 128 GiB of weights: far above any real SAE */

/* ---- weights ---- */

static int
alloc_weights(Sae *s, int64_t D, int64_t S, const char *path, char *err)
{
    if (D <= 0 || S <= 0 || D > INT_MAX / 2 || S > INT_MAX / 2)
        return ps_seterr(err, PS_ESHAPE, "%s: bad SAE shape d_in %lld, d_sae %lld", path,
                         (long long)D, (long long)S);
    size_t ds, n;
    if (ps_mul((size_t)D, (size_t)S, &ds) || ps_mul(ds, 2, &n) || ps_add(n, (size_t)(D + S), &n) ||
        ps_mul(n, sizeof(float), &n) || n > SAE_MAX_BYTES)
        return ps_seterr(err, PS_ENOMEM, "%s: SAE of d_in %lld, d_sae %lld is too large", path,
                         (long long)D, (long long)S);
    float *m = ps_big_alloc(n);
    if (!m)
        return ps_seterr(err, PS_ENOMEM, "%s: cannot allocate %zu bytes of SAE weights", path, n);
    s->mem = m;
    s->mem_n = n;
    s->d_in = (int)D;
    s->d_sae = (int)S;
    s->W_enc = m;
    s->b_enc = s->W_enc + ds;
    s->W_dec = s->b_enc + S;
    s->b_dec = s->W_dec + ds;
    return PS_OK;
}

static void
sae_defaults(Sae *s)
{
    memset(s, 0, sizeof *s);
    s->hook_layer = SAE_NO_LAYER;
    s->apply_b_dec_to_input = 1;
}

int
sae_init(Sae *s, int d_in, int d_sae, char *err)
{
    sae_defaults(s);
    return alloc_weights(s, d_in, d_sae, "sae_init", err);
}

void
sae_free(Sae *s)
{
    if (!s)
        return;
    ps_big_free(s->mem, s->mem_n);
    free(s->model_name);
    free(s->hook_name);
    free(s->recipe);
    memset(s, 0, sizeof *s);
}

int
sae_layer(const Sae *s, int n_layers)
{
    if (s->hook_layer == SAE_NO_LAYER)
        return -1;
    int l = s->hook_layer < 0 ? n_layers + s->hook_layer : s->hook_layer;
    return l >= 0 && l < n_layers ? l : -1;
}

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static const char *const names[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};

/* Expected shapes of the four tensors for (D, S). */
static void
shapes(int64_t D, int64_t S, int nd[4], int64_t sh[4][2])
{
    nd[0] = 2, sh[0][0] = D, sh[0][1] = S;
    nd[1] = 1, sh[1][0] = S;
    nd[2] = 2, sh[2][0] = S, sh[2][1] = D;
    nd[3] = 1, sh[3][0] = D;
}

static float *
dest(Sae *s, int i)
{
    float *d[4] = {s->W_enc, s->b_enc, s->W_dec, s->b_dec};
    return d[i];
}

/* A PtTensor's shape against the expected one. */
static int
check_shape(const char *path, const char *name, int nd, const int64_t *have, int want_nd,
            const int64_t *want, char *err)
{
    int ok = nd == want_nd;
    for (int i = 0; ok && i < nd; i++)
        ok = have[i] == want[i];
    if (ok)
        return PS_OK;
    char a[96], b[96];
    return ps_seterr(err, PS_ESHAPE, "%s: %s has shape %s, expected %s", path, name,
                     st_shape_str(have, nd, a, sizeof a), st_shape_str(want, want_nd, b, sizeof b));
}

/* ---- PatchSAE .pt ---- */

static int
load_pt(Sae *s, const char *path, char *err)
{
    PtFile *f;
    int rc = pt_load(&f, path, err);
    if (rc)
        return rc;
    const PtObj *root = pt_root(f), *cfg = pt_get(root, "cfg");
    if (!cfg)
        cfg = pt_get(root, "config");
    const PtObj *sd = pt_get(root, "state_dict");
    if (!sd && pt_get(root, "W_enc"))
        sd = root; /* a bare state dict */
    const PtTensor *t[4];
    if (!sd) {
        rc = ps_seterr(err, PS_ESHAPE, "%s: no state_dict (not a PatchSAE checkpoint)", path);
        goto out;
    }
    for (int i = 0; i < 4; i++)
        if (!(t[i] = pt_as_tensor(pt_get(sd, names[i])))) {
            rc = ps_seterr(err, PS_ESHAPE, "%s: tensor state_dict.%s missing", path, names[i]);
            goto out;
        }
    if (t[0]->nd != 2) {
        rc = ps_seterr(err, PS_ESHAPE, "%s: W_enc is not a matrix", path);
        goto out;
    }
    int64_t D = t[0]->shape[0], S = t[0]->shape[1];
    int64_t cd = pt_as_int(pt_get(cfg, "d_in"), D), cs = pt_as_int(pt_get(cfg, "d_sae"), S);
    if (cd != D || cs != S) {
        rc = ps_seterr(err, PS_ESHAPE, "%s: cfg says d_in %lld, d_sae %lld but W_enc is (%lld, %lld)",
                       path, (long long)cd, (long long)cs, (long long)D, (long long)S);
        goto out;
    }
    int nd[4];
    int64_t sh[4][2];
    shapes(D, S, nd, sh);
    for (int i = 0; i < 4; i++)
        if ((rc = check_shape(path, names[i], t[i]->nd, t[i]->shape, nd[i], sh[i], err)))
            goto out;
    if ((rc = alloc_weights(s, D, S, path, err)))
        goto out;
    for (int i = 0; i < 4; i++) {
        const float *v;
        if ((rc = pt_tensor_f32(t[i], &v, err)))
            goto out;
        memcpy(dest(s, i), v, t[i]->numel * sizeof *v);
    }
    s->hook_layer = (int)pt_as_int(pt_get(cfg, "block_layer"), SAE_NO_LAYER);
    s->model_name = dup_or_null(pt_as_str(pt_get(cfg, "model_name")));
    s->hook_name = dup_or_null(pt_as_str(pt_get(cfg, "module_name")));
out:
    pt_close(f);
    return rc;
}

/* ---- safetensors: SAELens and our own ---- */

static const char *
json_str(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (!v)
        v = json_object_get(json_object_get(cfg, "metadata"), key); /* SAELens >= 6 */
    return json_string_value(v);
}

static json_t *
json_get(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    return v ? v : json_object_get(json_object_get(cfg, "metadata"), key);
}

/* "blocks.9.hook_resid_post" -> 9 */
static int
layer_from_hook(const char *hook)
{
    if (!hook || strncmp(hook, "blocks.", 7))
        return SAE_NO_LAYER;
    char *end;
    long l = strtol(hook + 7, &end, 10);
    return end != hook + 7 && *end == '.' && l >= 0 && l < 10000 ? (int)l : SAE_NO_LAYER;
}

static int
apply_saelens_cfg(Sae *s, const char *cfgpath, char *err)
{
    json_error_t je;
    json_t *cfg = json_load_file(cfgpath, 0, &je);
    if (!cfg)
        return ps_seterr(err, PS_EFORMAT, "%s: %s (line %d)", cfgpath, je.text, je.line);
    int rc = PS_OK;
    const char *arch = json_str(cfg, "architecture"), *act = json_str(cfg, "activation_fn_str");
    const char *norm = json_str(cfg, "normalize_activations");
    json_t *fs = json_get(cfg, "finetuning_scaling_factor"), *ab = json_get(cfg,
                                                                            "apply_b_dec_to_input");
    json_t *din = json_get(cfg, "d_in"), *dsae = json_get(cfg, "d_sae");
    if (!json_is_object(cfg))
        rc = ps_seterr(err, PS_EFORMAT, "%s: not a JSON object", cfgpath);
    else if (arch && strcmp(arch, "standard"))
        rc = ps_seterr(err, PS_EFORMAT, "%s: SAELens architecture \"%s\" is not supported (only "
                       "\"standard\" ReLU SAEs)", cfgpath, arch);
    else if (act && strcmp(act, "relu"))
        rc = ps_seterr(err, PS_EFORMAT, "%s: activation \"%s\" is not supported (only relu)",
                       cfgpath, act);
    else if (norm && strcmp(norm, "none"))
        rc = ps_seterr(err, PS_EFORMAT, "%s: normalize_activations \"%s\" is not supported",
                       cfgpath, norm);
    else if (json_is_true(fs))
        rc = ps_seterr(err, PS_EFORMAT, "%s: finetuning_scaling_factor is not supported", cfgpath);
    else if ((din && (!json_is_integer(din) || json_integer_value(din) != s->d_in)) ||
             (dsae && (!json_is_integer(dsae) || json_integer_value(dsae) != s->d_sae)))
        rc = ps_seterr(err, PS_ESHAPE, "%s: d_in/d_sae do not match W_enc (%d, %d)", cfgpath,
                       s->d_in, s->d_sae);
    if (rc == PS_OK) {
        json_t *hl = json_get(cfg, "hook_layer");
        const char *hook = json_str(cfg, "hook_name");
        s->hook_layer = json_is_integer(hl) ? (int)json_integer_value(hl) : layer_from_hook(hook);
        s->hook_name = dup_or_null(hook);
        s->model_name = dup_or_null(json_str(cfg, "model_name"));
        if (json_is_boolean(ab))
            s->apply_b_dec_to_input = json_is_true(ab);
    }
    json_decref(cfg);
    return rc;
}

static int
meta_int(const StFile *f, const char *key, int dflt, int *out)
{
    const char *v = st_meta(f, key);
    if (!v) {
        *out = dflt;
        return 1;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < INT_MIN || x > INT_MAX)
        return 0;
    *out = (int)x;
    return 1;
}

static int
load_st(Sae *s, const char *path, const char *cfgpath, char *err)
{
    StFile *f;
    int rc = st_open(&f, path, err);
    if (rc)
        return rc;
    const StTensor *we = st_find(f, "W_enc");
    if (!we || we->nd != 2) {
        rc = ps_seterr(err, PS_ESHAPE, "%s: %s", path,
                       we ? "W_enc is not a matrix" : "tensor W_enc missing (not an SAE)");
        goto out;
    }
    int nd[4];
    int64_t sh[4][2];
    shapes(we->shape[0], we->shape[1], nd, sh);
    const float *v[4];
    for (int i = 0; i < 4; i++)
        if ((rc = st_get_f32(f, names[i], nd[i], sh[i], &v[i], err)))
            goto out;
    if ((rc = alloc_weights(s, we->shape[0], we->shape[1], path, err)))
        goto out;
    for (int i = 0; i < 4; i++)
        memcpy(dest(s, i), v[i], (size_t)(nd[i] == 2 ? sh[i][0] * sh[i][1] : sh[i][0]) * 4);
    const char *fmt = st_meta(f, "patchsae.format");
    if (fmt && !strcmp(fmt, "sae")) {
        int din, dsae, ab;
        if (!meta_int(f, "d_in", s->d_in, &din) || !meta_int(f, "d_sae", s->d_sae, &dsae) ||
            !meta_int(f, "hook_layer", SAE_NO_LAYER, &s->hook_layer) ||
            !meta_int(f, "apply_b_dec_to_input", 1, &ab)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: bad integer in the metadata", path);
            goto out;
        }
        if (din != s->d_in || dsae != s->d_sae) {
            rc = ps_seterr(err, PS_ESHAPE, "%s: metadata d_in %d, d_sae %d but W_enc is (%d, %d)",
                           path, din, dsae, s->d_in, s->d_sae);
            goto out;
        }
        s->apply_b_dec_to_input = ab != 0;
        s->model_name = dup_or_null(st_meta(f, "model"));
        s->hook_name = dup_or_null(st_meta(f, "hook_name"));
        s->recipe = dup_or_null(st_meta(f, "recipe"));
    } else if (cfgpath) {
        rc = apply_saelens_cfg(s, cfgpath, err);
    }
out:
    st_close(f);
    return rc;
}

static char *
sibling(const char *path, const char *name, int is_dir)
{
    size_t n = strlen(path), m = strlen(name);
    const char *slash = strrchr(path, '/');
    size_t dirlen = is_dir ? n : slash ? (size_t)(slash - path) : 0;
    char *s = xmalloc(dirlen + m + 3);
    if (is_dir || slash)
        snprintf(s, dirlen + m + 3, "%.*s/%s", (int)dirlen, path, name);
    else
        snprintf(s, dirlen + m + 3, "%s", name);
    return s;
}

int
sae_load(Sae *s, const char *path, char *err)
{
    sae_defaults(s);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    int rc;
    if (S_ISDIR(sb.st_mode)) {
        char *w = sibling(path, "sae_weights.safetensors", 1), *c = sibling(path, "cfg.json", 1);
        if (access(w, R_OK) != 0)
            rc = ps_seterr(err, PS_EIO, "%s: no sae_weights.safetensors in this directory", path);
        else
            rc = load_st(s, w, access(c, R_OK) == 0 ? c : NULL, err);
        free(w);
        free(c);
    } else {
        unsigned char head[2] = {0, 0};
        FILE *fp = fopen(path, "rb");
        if (!fp)
            return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
        size_t got = fread(head, 1, 2, fp);
        fclose(fp);
        if (got == 2 && ((head[0] == 'P' && head[1] == 'K') || head[0] == 0x80)) {
            rc = load_pt(s, path, err);
        } else {
            char *c = sibling(path, "cfg.json", 0);
            rc = load_st(s, path, access(c, R_OK) == 0 ? c : NULL, err);
            free(c);
        }
    }
    if (rc)
        sae_free(s);
    return rc;
}

int
sae_save(const Sae *s, const char *path, char *err)
{
    StWriter *w = st_writer_new();
    int nd[4];
    int64_t sh[4][2];
    shapes(s->d_in, s->d_sae, nd, sh);
    const float *src[4] = {s->W_enc, s->b_enc, s->W_dec, s->b_dec};
    for (int i = 0; i < 4; i++)
        st_writer_add(w, names[i], ST_F32, nd[i], sh[i], src[i]);
    char num[32];
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "patchsae.format", "sae");
    snprintf(num, sizeof num, "%d", s->d_in);
    st_writer_meta(w, "d_in", num);
    snprintf(num, sizeof num, "%d", s->d_sae);
    st_writer_meta(w, "d_sae", num);
    if (s->hook_layer != SAE_NO_LAYER) {
        snprintf(num, sizeof num, "%d", s->hook_layer);
        st_writer_meta(w, "hook_layer", num);
    }
    if (!s->apply_b_dec_to_input)
        st_writer_meta(w, "apply_b_dec_to_input", "0");
    if (s->model_name)
        st_writer_meta(w, "model", s->model_name);
    if (s->hook_name)
        st_writer_meta(w, "hook_name", s->hook_name);
    if (s->recipe)
        st_writer_meta(w, "recipe", s->recipe);
    int rc = st_writer_save(w, path, err);
    st_writer_free(w);
    return rc;
}

/* ---- scratch ---- */

int
sae_work_init(SaeWork *w, const Sae *s, char *err)
{
    memset(w, 0, sizeof *w);
    int nc = MIN(s->d_sae, SAE_COLS), nt = (s->d_sae + nc - 1) / nc;
    size_t nx, nf;
    if (ps_mul((size_t)SAE_BLOCK * sizeof(float), (size_t)s->d_in, &nx) ||
        ps_mul((size_t)SAE_BLOCK * sizeof(float), (size_t)nc, &nf))
        return ps_seterr(err, PS_ENOMEM, "SAE scratch too large");
    w->xc = ps_big_alloc(nx);
    w->f = ps_big_alloc(nf);
    int np = ten_threads();
    PS_ASSERT(np >= 1 && np <= SAE_THREADS);
    w->cnt = malloc((size_t)nt * np * SAE_BLOCK * sizeof *w->cnt);
    w->part = malloc((size_t)nt * np * 2 * sizeof *w->part);
    if (!w->xc || !w->f || !w->cnt || !w->part) {
        ps_big_free(w->xc, nx);
        ps_big_free(w->f, nf);
        free(w->cnt);
        free(w->part);
        memset(w, 0, sizeof *w);
        return ps_seterr(err, PS_ENOMEM, "cannot allocate %zu bytes of SAE scratch", nx + nf);
    }
    w->d_in = s->d_in;
    w->d_sae = s->d_sae;
    w->n_cols = nc;
    w->n_tiles = nt;
    w->n_parts = np;
    w->bytes = nx + nf;
    return PS_OK;
}

void
sae_work_free(SaeWork *w)
{
    if (!w)
        return;
    ps_big_free(w->xc, (size_t)SAE_BLOCK * sizeof(float) * (size_t)w->d_in);
    ps_big_free(w->f, (size_t)SAE_BLOCK * sizeof(float) * (size_t)w->n_cols);
    free(w->cnt);
    free(w->part);
    for (int k = 0; k < SAE_THREADS; k++)
        free(w->tidx[k]), free(w->tval[k]);
    memset(w, 0, sizeof *w);
}

void
sae_sparse_free(SaeSparse *sp)
{
    if (!sp)
        return;
    free(sp->rowptr);
    free(sp->idx);
    free(sp->val);
    memset(sp, 0, sizeof *sp);
}

int64_t
sae_sparse_nnz(const SaeSparse *sp)
{
    return sp->rowptr ? sp->rowptr[sp->n_tok] : 0;
}

/* ---- kernels ---- */

/* The GEMM's left side for nb <= SAE_BLOCK tokens: x − b_dec in w->xc, or x itself. */
static const float *
centre(const Sae *s, const float *x, int nb, SaeWork *w)
{
    int D = s->d_in;
    if (!s->apply_b_dec_to_input)
        return x;
    for (int i = 0; i < nb; i++) {
        const float *xr = x + (size_t)i * D;
        float *cr = w->xc + (size_t)i * D;
        for (int d = 0; d < D; d++)
            cr[d] = xr[d] - s->b_dec[d];
    }
    return w->xc;
}

/*
 * Tile width for a block of nb tokens: the tile buffer's SAE_BLOCK x SAE_COLS
 * floats, as wide as they go (a multiple of 16), at least SAE_COLS, at most S.
 * A small block (one image) then needs a few wide GEMMs rather than many
 * narrow ones, each of which waits for every OpenBLAS thread.
 */
static int
tile_cols(const SaeWork *w, int nb)
{
    int64_t c = (int64_t)SAE_BLOCK * w->n_cols / MAX(nb, 1);
    c -= c % 16;
    return (int)MIN((int64_t)w->d_sae, MAX(c, (int64_t)w->n_cols));
}

/*
 * Appends j0 + j and v = row[j] + b[j] for every j < n with v > 0 to idx/val
 * (room for n); returns how many. Groups of 16 are tested first: the test
 * loop has no branch and is vectorised, and most groups hold no positive v.
 */
static int
compact(const float *row, const float *b, int n, int j0, int32_t *idx, float *val)
{
    int m = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        int any = 0;
        for (int k = 0; k < 16; k++)
            any |= row[j + k] + b[j + k] > 0;
        if (!any)
            continue;
        for (int k = 0; k < 16; k++) {
            float v = row[j + k] + b[j + k];
            if (v > 0) {
                idx[m] = j0 + j + k;
                val[m] = v;
                m++;
            }
        }
    }
    for (; j < n; j++) {
        float v = row[j] + b[j];
        if (v > 0) {
            idx[m] = j0 + j;
            val[m] = v;
            m++;
        }
    }
    return m;
}

/* idx/val arrays of capacity *cap grown to hold need entries (at most INT_MAX). */
static int
grow_pair(int32_t **idx, float **val, int64_t *cap, int64_t need, char *err)
{
    if (need <= *cap)
        return PS_OK;
    if (need > INT_MAX)
        return ps_seterr(err, PS_ENOMEM, "more than %d SAE non-zeros in one call; encode fewer "
                         "tokens at a time", INT_MAX);
    int64_t c = MAX(need, MIN(*cap * 2, (int64_t)INT_MAX));
    int32_t *i = realloc(*idx, (size_t)c * sizeof *i);
    if (i)
        *idx = i;
    float *v = i ? realloc(*val, (size_t)c * sizeof *v) : NULL;
    if (v)
        *val = v;
    if (!i || !v)
        return ps_seterr(err, PS_ENOMEM, "out of memory for %lld SAE non-zeros", (long long)c);
    *cap = c;
    return PS_OK;
}

/* Columns p0..p1-1 of part k of P of a tile n wide (cut at multiples of 16). */
static void
part_cols(int n, int P, int k, int *p0, int *p1)
{
    *p0 = k == 0 ? 0 : (int)((int64_t)n * k / P) & ~15;
    *p1 = k + 1 == P ? n : (int)((int64_t)n * (k + 1) / P) & ~15;
}

/* Columns p0..p1-1 of w->f (nb, n) = a (nb, D) · W_enc[:, c0+p0 .. c0+p1), without b_enc:
   one single-threaded GEMM per part, the same calls for the sparse and the dense encoder. */
static void
part_gemm(const Sae *s, const float *a, int nb, int c0, int n, int p0, int p1, SaeWork *w)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, p1 - p0, s->d_in, 1.0f, a, s->d_in,
                s->W_enc + c0 + p0, s->d_sae, 0.0f, w->f + p0, n);
}

/* Part k of a tile: the job of one pool thread. */
typedef struct {
    const Sae *s;
    SaeWork *w;
    const float *a; /* (nb, D) */
    int nb, c, c0, n; /* tile index, first latent, width */
    int rc[SAE_THREADS];
} EncJob;

/*
 * Parts lo..hi-1 of tile j->c (columns cut at multiples of 16): the GEMM of
 * the part's columns (single-threaded: each pool thread runs its own) into
 * its columns of w->f, then each row's positive b_enc-added values appended
 * to this thread's list while the part is still in cache.
 */
static void
enc_parts(void *p, int lo, int hi, int thread)
{
    EncJob *j = p;
    SaeWork *w = j->w;
    const Sae *s = j->s;
    int P = w->n_parts, n = j->n, nb = j->nb;
    for (int k = lo; k < hi && !j->rc[thread]; k++) {
        int p0, p1, u = j->c * P + k;
        part_cols(n, P, k, &p0, &p1);
        int32_t *cnt = w->cnt + (size_t)u * SAE_BLOCK;
        w->part[2 * u] = thread;
        w->part[2 * u + 1] = w->tlen[thread];
        if (p1 <= p0) {
            memset(cnt, 0, (size_t)nb * sizeof *cnt);
            continue;
        }
        part_gemm(s, j->a, nb, j->c0, n, p0, p1, w);
        for (int i = 0; i < nb; i++) {
            int64_t m = w->tlen[thread];
            if ((j->rc[thread] = grow_pair(&w->tidx[thread], &w->tval[thread], &w->tcap[thread],
                                           m + (p1 - p0), NULL)))
                return;
            cnt[i] = compact(w->f + (size_t)i * n + p0, s->b_enc + j->c0 + p0, p1 - p0,
                             j->c0 + p0, w->tidx[thread] + m, w->tval[thread] + m);
            w->tlen[thread] = m + cnt[i];
        }
    }
}

/*
 * One block of nb tokens into out's rows t0 .. t0+nb, whose first non-zero
 * goes at *nnz (advanced): tile after tile, the pool threads each take parts
 * (enc_parts), with w->cnt[part * SAE_BLOCK + row] counts; the lists are then
 * copied row by row, tile by tile, part by part, so each row's latents come
 * out ascending.
 */
static int
enc_block_sparse(const Sae *s, const float *x, int nb, int t0, SaeSparse *out, SaeWork *w,
                 int64_t *nnz, char *err)
{
    int S = s->d_sae, nc = tile_cols(w, nb), n_tiles = (S + nc - 1) / nc, P = w->n_parts, rc;
    const float *a = centre(s, x, nb, w);
    for (int k = 0; k < SAE_THREADS; k++)
        w->tlen[k] = 0;
    for (int c = 0; c < n_tiles; c++) {
        EncJob j = { s, w, a, nb, c, c * nc, MIN(nc, S - c * nc), { 0 } };
        ten_parallel_blas(P, enc_parts, &j);
        for (int k = 0; k < SAE_THREADS; k++)
            if (j.rc[k])
                return ps_seterr(err, j.rc[k], "out of memory for the SAE non-zeros of %d tokens",
                                 nb);
    }
    int64_t m = 0;
    for (int k = 0; k < SAE_THREADS; k++)
        m += w->tlen[k];
    int64_t cap = out->cap;
    rc = grow_pair(&out->idx, &out->val, &cap, *nnz + m, err);
    out->cap = (int)cap;
    if (rc)
        return rc;
    int64_t k = *nnz, *part = w->part; /* part[2u + 1] becomes the part's cursor */
    for (int i = 0; i < nb; i++) {
        for (int u = 0; u < n_tiles * P; u++) {
            int32_t n = w->cnt[(size_t)u * SAE_BLOCK + i];
            int th = (int)part[2 * u];
            memcpy(out->idx + k, w->tidx[th] + part[2 * u + 1], (size_t)n * sizeof *out->idx);
            memcpy(out->val + k, w->tval[th] + part[2 * u + 1], (size_t)n * sizeof *out->val);
            part[2 * u + 1] += n;
            k += n;
        }
        out->rowptr[t0 + i + 1] = k;
    }
    *nnz = k;
    return PS_OK;
}

int
sae_encode_sparse(const Sae *s, const float *x, int n_tok, SaeSparse *out, SaeWork *w, char *err)
{
    PS_ASSERT(n_tok >= 0 && w->d_in == s->d_in && w->d_sae == s->d_sae);
    int64_t *rp = realloc(out->rowptr, ((size_t)n_tok + 1) * sizeof *rp);
    if (!rp)
        return ps_seterr(err, PS_ENOMEM, "out of memory for %d SAE rows", n_tok);
    out->rowptr = rp;
    out->n_tok = 0;
    rp[0] = 0;
    int64_t nnz = 0;
    for (int t0 = 0; t0 < n_tok; t0 += SAE_BLOCK) {
        int nb = MIN(SAE_BLOCK, n_tok - t0);
        int rc = enc_block_sparse(s, x + (size_t)t0 * s->d_in, nb, t0, out, w, &nnz, err);
        if (rc)
            return rc;
        out->n_tok = t0 + nb;
    }
    out->n_tok = n_tok;
    return PS_OK;
}

typedef struct {
    const Sae *s;
    SaeWork *w;
    const float *a; /* (nb, D) */
    float *f;       /* (nb, S): the block's output rows */
    int nb, c0, n;
} DenseJob;

static void
dense_parts(void *p, int lo, int hi, int thread)
{
    const DenseJob *j = p;
    const Sae *s = j->s;
    int S = s->d_sae, n = j->n;
    (void)thread;
    for (int k = lo; k < hi; k++) {
        int p0, p1;
        part_cols(n, j->w->n_parts, k, &p0, &p1);
        if (p1 <= p0)
            continue;
        part_gemm(s, j->a, j->nb, j->c0, n, p0, p1, j->w);
        for (int i = 0; i < j->nb; i++) {
            const float *row = j->w->f + (size_t)i * n, *b = s->b_enc + j->c0;
            float *fr = j->f + (size_t)i * S + j->c0;
            for (int c = p0; c < p1; c++) {
                float v = row[c] + b[c];
                fr[c] = v > 0 ? v : 0.0f;
            }
        }
    }
}

void
sae_encode_dense(const Sae *s, const float *x, int n_tok, float *f, SaeWork *w)
{
    PS_ASSERT(n_tok >= 0 && w->d_in == s->d_in && w->d_sae == s->d_sae);
    int D = s->d_in, S = s->d_sae;
    for (int t0 = 0; t0 < n_tok; t0 += SAE_BLOCK) {
        int nb = MIN(SAE_BLOCK, n_tok - t0), nc = tile_cols(w, nb);
        const float *a = centre(s, x + (size_t)t0 * D, nb, w);
        for (int c0 = 0; c0 < S; c0 += nc) {
            DenseJob j = { s, w, a, f + (size_t)t0 * S, nb, c0, MIN(nc, S - c0) };
            ten_parallel_blas(w->n_parts, dense_parts, &j);
        }
    }
}

void
sae_decode_masked(const Sae *s, const SaeSparse *sp, const uint8_t *keep, float add_const,
                  float *xhat)
{
    int D = s->d_in;
    for (int t = 0; t < sp->n_tok; t++) {
        float *y = xhat + (size_t)t * D;
        for (int d = 0; d < D; d++)
            y[d] = s->b_dec[d] + add_const;
        for (int64_t k = sp->rowptr[t]; k < sp->rowptr[t + 1]; k++) {
            int32_t j = sp->idx[k];
            PS_ASSERT(j >= 0 && j < s->d_sae);
            if (keep && !keep[j])
                continue;
            cblas_saxpy(D, sp->val[k], s->W_dec + (size_t)j * D, 1, y, 1);
        }
    }
}

void
sae_decode_sparse(const Sae *s, const SaeSparse *sp, float *xhat)
{
    sae_decode_masked(s, sp, NULL, 0.0f, xhat);
}

void
sae_decode_dense(const Sae *s, const float *f, int n_tok, float *xhat)
{
    int D = s->d_in, S = s->d_sae;
    if (n_tok <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_tok, D, S, 1.0f, f, S, s->W_dec, D,
                0.0f, xhat, D);
    for (int t = 0; t < n_tok; t++)
        for (int d = 0; d < D; d++)
            xhat[(size_t)t * D + d] += s->b_dec[d];
}
