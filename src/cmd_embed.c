/* SPDX-License-Identifier: MIT */
/*
 * cmd_embed.c - `patchsae embed`: images (and prompts) through CLIP into one
 * safetensors file, the stable contract of design.md that tests and users
 * rely on: pixel_values, resid (the residual stream after block L),
 * image_embeds and, with prompts, input_ids (int64, as PyTorch's), text_embeds
 * and logits.
 *
 * Flow: parse options; open the model (clip_open); decode and preprocess every
 * image into one (N,3,S,S) buffer (an unreadable image is reported and
 * skipped: exit 1); run the vision tower in batches of BATCH images over the
 * reserved scratch; tokenize and encode the prompts; write everything with
 * st_writer (temporary name, then rename). The SAE (--sae) stage is an
 * extension point: Embed carries its outputs, and the places where it plugs
 * in are marked; until then the option is refused. With --maple (maple.h)
 * the vision tower runs with MaPLe's prompts (T grows by n_ctx) and the
 * --classes rows use MaPLe's learned class prompts.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clip.h"
#include "cmd.h"
#include "img.h"
#include "maple.h"
#include "ps.h"
#include "st.h"

#define BATCH 8            /* images per vision forward */
#define MAX_LINE 4096      /* longest class-name line */

const char cmd_embed_usage[] =
    "run images and prompts through CLIP into a safetensors file\n"
    "usage: patchsae embed --model MODEL [--layer L] [--text PROMPT]... [--classes FILE]\n"
    "                      [--ensemble] [--maple CKPT] [--tokenizer PATH] [--quiet]\n"
    "                      -o OUT.safetensors IMAGE...\n"
    "\n"
    "  --model MODEL     HF model directory, or a safetensors file with OpenAI/open_clip names\n"
    "  --layer L         hook the residual stream after vision block L (0-based; default\n"
    "                    n_layers-2, PatchSAE's)\n"
    "  --text PROMPT     a prompt (repeatable)\n"
    "  --classes FILE    class names, one a line (a leading WordNet id \"n01440764 \" is\n"
    "                    dropped), each prompted as \"a photo of a {name}.\" after the --text ones\n"
    "  --ensemble        prompt each class with OpenAI's 80 ImageNet templates instead; its\n"
    "                    text_embeds row is the mean of the 80 L2-normalised embeddings, not\n"
    "                    renormalised (PatchSAE); input_ids then holds the 80 rows of each class\n"
    "  --tokenizer PATH  vocab.json (merges.txt beside it) or bpe_simple_vocab_16e6.txt.gz;\n"
    "                    default: found beside the model\n"
    "  --maple CKPT      MaPLe (Dassl checkpoint model.pth.tar-N, read without Python): images\n"
    "                    run with its learned prompts (resid gets n_ctx more tokens, last), and\n"
    "                    --classes rows use its learned class prompts (--text rows stay plain\n"
    "                    CLIP); computed in float32 (the original runs in fp16)\n"
    "  --quiet           no progress on stderr\n"
    "  -o OUT            output file (written to OUT.tmp, then renamed)\n"
    "  --sae             not available yet in this build\n"
    "\n"
    "OUT holds float32 tensors: pixel_values (N,3,S,S), resid (N,T,D), image_embeds (N,E)\n"
    "(L2-normalised) and, with prompts, input_ids (P,ctx) int64, text_embeds (P,E), logits (N,P)\n"
    "= exp(logit_scale) image_embeds text_embeds^T. __metadata__: model, layer, images and\n"
    "prompts (JSON arrays), logit_scale; with --maple also maple, n_ctx, prompt_depth.\n"
    "Unreadable images are skipped with a message (exit 1).\n";

/* Everything one run computes; later stages (SAE, MaPLe) add their fields here. */
typedef struct Embed {
    int N, P, n_ctx;        /* images kept, prompts (text rows), MaPLe prompt tokens (0) */
    const char *maple;      /* --maple checkpoint, or NULL */
    int maple_depth;        /* its prompt depth */
    int T;                  /* tokens per image: 1 + G*G (+ n_ctx) */
    float *pixels;          /* (N, 3, S, S) */
    float *resid;           /* (N, T, D) */
    float *image_embeds;    /* (N, E) */
    int P_ids;              /* rows of input_ids (P, or 80 P with --ensemble) */
    int64_t *input_ids;     /* (P_ids, ctx) */
    float *text_embeds;     /* (P, E) */
    float *logits;          /* (N, P) */
} Embed;

typedef struct Strs {
    char **s;
    int n, cap;
} Strs;

static void
strs_add(Strs *v, const char *s)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 16;
        v->s = xrealloc(v->s, (size_t)v->cap * sizeof *v->s);
    }
    v->s[v->n++] = xstrdup(s);
}

static void
strs_free(Strs *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->s[i]);
    free(v->s);
}

/* Class names, one a line; "nXXXXXXXX name" loses its WordNet id; blank lines skipped. */
static int
read_classes(const char *path, Strs *out, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    char line[MAX_LINE];
    int lineno = 0, rc = PS_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            rc = ps_seterr(err, PS_EFORMAT, "%s:%d: line longer than %d bytes", path, lineno,
                           MAX_LINE - 2);
            break;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            continue;
        if (s[0] == 'n' && strspn(s + 1, "0123456789") == 8 && (s[9] == ' ' || s[9] == '\t'))
            s += 10;
        strs_add(out, s);
    }
    if (!rc && ferror(f))
        rc = ps_seterr(err, PS_EIO, "%s: read error", path);
    fclose(f);
    return rc;
}

static char *
json_list(const Strs *v)
{
    json_t *a = json_array();
    for (int i = 0; i < v->n; i++)
        json_array_append_new(a, json_string(v->s[i]));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s ? s : xstrdup("[]");
}

static void
progress(int quiet, const char *what, int done, int total)
{
    if (quiet)
        return;
    fprintf(stderr, "\rembed: %s %d/%d", what, done, total);
    if (done == total)
        fputc('\n', stderr);
}

/* Text side: prompts -> input_ids, text_embeds (single prompts, or class ensembles). */
static int
run_text(Clip *c, const Strs *texts, const Strs *classes, int ensemble, const Maple *mp, Embed *e,
         char *err)
{
    int ctx = c->cfg.ctx, E = c->cfg.embed_dim, nt = texts->n, nc = classes->n, rc;
    int per = ensemble ? CLIP_N_TEMPLATES : 1;
    const char *const *tpl = ensemble ? clip_imagenet_templates : &clip_photo_template;
    e->P = nt + nc;
    e->P_ids = nt + nc * per;
    int32_t *ids = xmalloc((size_t)e->P_ids * ctx * sizeof *ids);
    char buf[MAX_LINE + 128];
    for (int p = 0; p < nt; p++)
        if ((rc = clip_tokenize(c, texts->s[p], ids + (size_t)p * ctx, err)))
            goto out;
    for (int k = 0; k < nc; k++)
        for (int j = 0; j < per; j++) {
            if (mp)
                maple_class_prompt(mp, classes->s[k], buf, sizeof buf);
            else
                clip_format_prompt(buf, sizeof buf, tpl[j], classes->s[k]);
            if ((rc = clip_tokenize(c, buf, ids + ((size_t)nt + (size_t)k * per + j) * ctx, err)))
                goto out;
        }
    e->input_ids = xmalloc((size_t)e->P_ids * ctx * sizeof *e->input_ids);
    for (size_t i = 0; i < (size_t)e->P_ids * ctx; i++)
        e->input_ids[i] = ids[i];
    e->text_embeds = xmalloc((size_t)e->P * E * sizeof *e->text_embeds);
    if ((rc = clip_encode_text(c, ids, nt, e->text_embeds, err)))
        goto out;
    if (mp) {
        rc = maple_encode_text(mp, c, ids + (size_t)nt * ctx, nc, e->text_embeds + (size_t)nt * E,
                               err);
    } else if (!ensemble) {
        rc = clip_encode_text(c, ids + (size_t)nt * ctx, nc, e->text_embeds + (size_t)nt * E, err);
    } else {
        rc = clip_zeroshot_weights(c, (const char *const *)classes->s, nc, clip_imagenet_templates,
                                   CLIP_N_TEMPLATES, 0, e->text_embeds + (size_t)nt * E, err);
    }
out:
    free(ids);
    return rc;
}

static int
save(const char *out, const Clip *c, const Embed *e, const char *model, int layer,
     const Strs *images, const Strs *prompts, char *err)
{
    const ClipConfig *g = &c->cfg;
    int64_t S = g->image_size, D = g->vision.width, E = g->embed_dim, N = e->N, P = e->P;
    StWriter *w = st_writer_new();
    if (N > 0) {
        int64_t px[4] = { N, 3, S, S }, rs[3] = { N, e->T, D }, em[2] = { N, E };
        st_writer_add(w, "pixel_values", ST_F32, 4, px, e->pixels);
        st_writer_add(w, "resid", ST_F32, 3, rs, e->resid);
        st_writer_add(w, "image_embeds", ST_F32, 2, em, e->image_embeds);
    }
    if (P > 0) {
        int64_t id[2] = { e->P_ids, g->ctx }, te[2] = { P, E }, lg[2] = { N, P };
        st_writer_add(w, "input_ids", ST_I64, 2, id, e->input_ids);
        st_writer_add(w, "text_embeds", ST_F32, 2, te, e->text_embeds);
        if (N > 0)
            st_writer_add(w, "logits", ST_F32, 2, lg, e->logits);
    }
    /* --sae adds sae_acts (N,T,S) and sae_recon (N,T,D) here. */
    char buf[64], *im = json_list(images), *pr = json_list(prompts);
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "model", model);
    snprintf(buf, sizeof buf, "%d", layer);
    st_writer_meta(w, "layer", buf);
    snprintf(buf, sizeof buf, "%.9g", (double)g->logit_scale);
    st_writer_meta(w, "logit_scale", buf);
    st_writer_meta(w, "images", im);
    st_writer_meta(w, "prompts", pr);
    if (e->maple) {
        st_writer_meta(w, "maple", e->maple);
        snprintf(buf, sizeof buf, "%d", e->n_ctx);
        st_writer_meta(w, "n_ctx", buf);
        snprintf(buf, sizeof buf, "%d", e->maple_depth);
        st_writer_meta(w, "prompt_depth", buf);
    }
    int rc = st_writer_save(w, out, err);
    st_writer_free(w);
    free(im), free(pr);
    return rc;
}

static void
embed_free(Embed *e)
{
    free(e->input_ids), free(e->text_embeds), free(e->logits);
}

int
cmd_embed(int argc, char **argv)
{
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' }, { "layer", required_argument, NULL, 'l' },
        { "text", required_argument, NULL, 't' }, { "classes", required_argument, NULL, 'c' },
        { "ensemble", no_argument, NULL, 'e' }, { "tokenizer", required_argument, NULL, 'k' },
        { "quiet", no_argument, NULL, 'q' }, { "output", required_argument, NULL, 'o' },
        { "sae", required_argument, NULL, 'S' }, { "maple", required_argument, NULL, 'M' },
        { NULL, 0, NULL, 0 },
    };
    const char *model = NULL, *classes_path = NULL, *tokenizer = NULL, *out = NULL;
    const char *maple_path = NULL;
    Maple mp = { 0 };
    int layer = -1, have_layer = 0, ensemble = 0, quiet = !isatty(2), ch, status = 0;
    Strs texts = { 0 }, classes = { 0 }, kept = { 0 }, prompts = { 0 };
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "o:q", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 't': strs_add(&texts, optarg); break;
        case 'c': classes_path = optarg; break;
        case 'e': ensemble = 1; break;
        case 'k': tokenizer = optarg; break;
        case 'q': quiet = 1; break;
        case 'o': out = optarg; break;
        case 'l': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 1000000) {
                fprintf(stderr, "patchsae embed: --layer %s is not a layer number\n", optarg);
                status = 2;
                goto done;
            }
            layer = (int)v;
            have_layer = 1;
            break;
        }
        case 'M': maple_path = optarg; break;
        case 'S':
            fprintf(stderr, "patchsae embed: --sae is not available yet in this build\n");
            status = 2;
            goto done;
        default:
            fprintf(stderr, "patchsae embed: unknown option or missing value: %s\n%s",
                    argv[optind - 1], cmd_embed_usage);
            status = 2;
            goto done;
        }
    }
    int n_img = argc - optind;
    if (!model || !out || (n_img == 0 && texts.n == 0 && !classes_path)) {
        fprintf(stderr, "patchsae embed: %s\n%s",
                !model ? "--model is required" : !out ? "-o OUT is required"
                                                     : "nothing to embed: give images or prompts",
                cmd_embed_usage);
        status = 2;
        goto done;
    }
    char err[PS_ERRLEN];
    if (classes_path && read_classes(classes_path, &classes, err)) {
        fprintf(stderr, "patchsae embed: %s\n", err);
        status = 2;
        goto done;
    }
    if (ensemble && classes.n == 0) {
        fprintf(stderr, "patchsae embed: --ensemble needs --classes\n");
        status = 2;
        goto done;
    }
    if (ensemble && maple_path) {
        fprintf(stderr, "patchsae embed: --ensemble and --maple: MaPLe prompts classes with its "
                        "learned prompts, not templates\n");
        status = 2;
        goto done;
    }
    Clip c;
    if (clip_open(&c, model, tokenizer, err)) {
        fprintf(stderr, "patchsae embed: %s\n", err);
        status = 2;
        goto done;
    }
    const ClipConfig *g = &c.cfg;
    int L = g->vision.layers;
    if (!have_layer)
        layer = L >= 2 ? L - 2 : 0;
    if (layer >= L) {
        fprintf(stderr, "patchsae embed: --layer %d: %s has %d layers (0..%d)\n", layer, model, L,
                L - 1);
        status = 2;
        goto close;
    }
    Embed e = { 0 };
    if (maple_path) {
        if (maple_load(&mp, maple_path, &c, err)) {
            fprintf(stderr, "patchsae embed: %s\n", err);
            status = 2;
            goto close;
        }
        e.maple = maple_path;
        e.n_ctx = mp.n_ctx;
        e.maple_depth = mp.depth;
    }
    size_t S = (size_t)g->image_size, img_floats = 3 * S * S;
    e.T = g->n_tok + e.n_ctx;
    /* one mapping for pixels, resid and embeddings of all images: no per-image allocation */
    size_t per = img_floats + (size_t)e.T * g->vision.width + (size_t)g->embed_dim;
    if (n_img > 0) {
        e.pixels = ps_big_alloc((size_t)n_img * per * sizeof(float));
        if (!e.pixels) {
            fprintf(stderr, "patchsae embed: out of memory for %d images\n", n_img);
            status = 2;
            goto close;
        }
    }
    ImgPrep ip = { g->resize, g->crop_h, { g->mean[0], g->mean[1], g->mean[2] },
                   { g->std[0], g->std[1], g->std[2] } };
    for (int i = 0; i < n_img; i++) {
        const char *path = argv[optind + i];
        Image im;
        int rc = img_load(&im, path, err);
        if (!rc)
            rc = img_preprocess(&im, &ip, e.pixels + (size_t)e.N * img_floats, err);
        img_free(&im);
        if (rc) {
            if (!quiet)
                fputc('\n', stderr);
            fprintf(stderr, "patchsae embed: %s (skipped)\n", err);
            status = 1;
            continue;
        }
        strs_add(&kept, path);
        e.N++;
        progress(quiet, "decoded", i + 1, n_img);
    }
    if (n_img > 0 && e.N == 0 && texts.n == 0 && classes.n == 0) {
        fprintf(stderr, "patchsae embed: no image could be read\n");
        status = 2;
        goto free;
    }
    e.resid = e.pixels + (size_t)e.N * img_floats;
    e.image_embeds = e.resid + (size_t)e.N * e.T * g->vision.width;
    if (clip_reserve(&c, MIN(MAX(e.N, 1), BATCH), e.n_ctx, err)) {
        fprintf(stderr, "patchsae embed: %s\n", err);
        status = 2;
        goto free;
    }
    for (int n0 = 0; n0 < e.N; n0 += BATCH) {
        int B = MIN(BATCH, e.N - n0);
        if (clip_encode_image_ex(&c, e.pixels + (size_t)n0 * img_floats, B,
                                 maple_path ? &mp.vision : NULL, layer,
                                 e.resid + (size_t)n0 * e.T * g->vision.width,
                                 e.image_embeds + (size_t)n0 * g->embed_dim, err)) {
            fprintf(stderr, "patchsae embed: %s\n", err);
            status = 2;
            goto free;
        }
        /* --sae encodes e.resid rows n0..n0+B here. */
        progress(quiet, "images", n0 + B, e.N);
    }
    for (int i = 0; i < texts.n; i++)
        strs_add(&prompts, texts.s[i]);
    for (int i = 0; i < classes.n; i++) {
        char buf[MAX_LINE + 64];
        if (maple_path)
            maple_class_prompt(&mp, classes.s[i], buf, sizeof buf);
        else
            clip_format_prompt(buf, sizeof buf, ensemble ? "{}" : clip_photo_template,
                               classes.s[i]);
        strs_add(&prompts, buf);
    }
    if (prompts.n > 0) {
        if (run_text(&c, &texts, &classes, ensemble, maple_path ? &mp : NULL, &e, err)) {
            fprintf(stderr, "patchsae embed: %s\n", err);
            status = 2;
            goto free;
        }
        if (e.N > 0) {
            e.logits = xmalloc((size_t)e.N * e.P * sizeof *e.logits);
            clip_logits(&c, e.image_embeds, e.N, e.text_embeds, e.P, e.logits);
        }
    }
    if (save(out, &c, &e, model, layer, &kept, &prompts, err)) {
        fprintf(stderr, "patchsae embed: %s\n", err);
        status = 2;
    }
free:
    if (e.pixels)
        ps_big_free(e.pixels, (size_t)n_img * per * sizeof(float));
    e.pixels = NULL;
    embed_free(&e);
close:
    maple_free(&mp);
    clip_close(&c);
done:
    strs_free(&texts), strs_free(&classes), strs_free(&kept), strs_free(&prompts);
    return status;
}
