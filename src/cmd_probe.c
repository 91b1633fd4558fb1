/* SPDX-License-Identifier: MIT */
/*
 * cmd_probe.c - `patchsae probe`: "try your own image" from PatchSAE's demo
 * on the command line. Each FILE runs through the index's models and SAE
 * (probe.h); the output is its base and adapted predictions, its top latents
 * at image level and on one patch, grouped common / base-only / adapted-only
 * as the demo groups them, and for each latent its top reference images from
 * the index's base statistics (the demo's reference images also come from
 * base CLIP's feature data, reference §7.1). --json prints the same as one
 * object; --save stores the probed images in the index (dataset "probed").
 *
 * The index is opened read-only unless --save. A weights file whose size or
 * SHA-256 differs from the index's record is refused (exit 2) unless
 * --force, which probes anyway with a warning.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd.h"
#include "idx.h"
#include "ps.h"
#include "probe.h"

const char cmd_probe_usage[] =
    "probe your own images: latents, patches and predictions beside an index\n"
    "usage: patchsae probe INDEX FILE... [--patch R,C] [--json] [--save]\n"
    "                      [--model M] [--sae S] [--maple CKPT]... [--force]\n"
    "                      [--noise-filter T | --no-noise-filter]\n"
    "\n"
    "Runs each image through the base CLIP, every adapted (MaPLe) model and the SAE that\n"
    "built INDEX, exactly as `patchsae index` did (same crop, prompts, blobs, top lists),\n"
    "and prints its top-5 predictions per model, its top latents at image level (mean over\n"
    "all tokens) and on a patch, grouped as PatchSAE's demo: common (in the top-5 of both\n"
    "models, by the larger value), BASE-only and ADAPTED-only (by latent index descending,\n"
    "the demo's order); and for each latent its top reference images in the index.\n"
    "\n"
    "  --patch R,C         also group the latents of patch row R, column C (0-based): the\n"
    "                      image-level top-5 and the patch's top-5, patch values first (demo)\n"
    "  --patch-only        with --patch, group the patch's own top-5 only\n"
    "  --noise-filter T    hide latents whose mean activation in the index's base statistics\n"
    "                      is above T (default 0.1, the demo's)\n"
    "  --no-noise-filter   show every latent\n"
    "  --refs N            reference images per latent (default 5; 0 = none)\n"
    "  --dataset D         the indexed dataset whose classes and statistics are used\n"
    "                      (default: the first)\n"
    "  --model M, --tokenizer T, --sae S, --maple CKPT (repeatable, index order)\n"
    "                      load these instead of the paths the index records\n"
    "  --force             probe even if a file's size or SHA-256 differs from the record\n"
    "  --save              store the probed images in INDEX (dataset \"probed\", replaced\n"
    "                      when the same path is probed again), for the explorer\n"
    "  --save-dataset NAME store them in dataset NAME instead\n"
    "  --json              one JSON object on stdout\n"
    "  --quiet             no warnings on stderr\n"
    "  --timings           print where the time went on stderr (hashing, loading, class\n"
    "                      prompts, each image)\n"
    "\n"
    "exit status: 0 all probed, 1 some images could not be read or saved, 2 usage, a\n"
    "missing or mismatching model (without --force), or a bad index\n";

typedef struct Opts {
    int json, save, quiet, patch_only, refs, timings;
    int row, col;               /* -1: no patch */
    float noise;
    const char *save_ds;
} Opts;

static void
on_warn(void *ctx, const char *msg)
{
    const Opts *o = ctx;
    if (!o->quiet)
        fprintf(stderr, "patchsae probe: %s\n", msg);
}

static const char *
cls_name(const Probe *p, int c)
{
    return c >= 0 && c < p->C ? p->class_names[c] : "-";
}

/* ---- text ---- */

static void
print_refs(Probe *p, int32_t s, const Opts *o)
{
    if (o->refs <= 0 || p->models[0].statset < 0)
        return;
    IdxTopImage top[64];
    int n = 0;
    char err[PS_ERRLEN];
    if (idx_latent_top(p->ix, p->models[0].statset, s, IDX_TOP_MEAN, top, MIN(o->refs, 64), &n,
                       err)) {
        printf("  (%s)", err);
        return;
    }
    for (int i = 0; i < n; i++)
        printf("  #%lld %s %.4g", (long long)top[i].image_id, cls_name(p, top[i].label),
               (double)top[i].value);
}

static void
print_row(Probe *p, const char *grp, int32_t s, int mark, float vb, float va, int two,
          const Opts *o)
{
    char b[32], a[32], l[32];
    snprintf(b, sizeof b, vb > 0 ? "%.4f" : "-", (double)vb);
    snprintf(a, sizeof a, va > 0 ? "%.4f" : "-", (double)va);
    snprintf(l, sizeof l, "%d%s", s, mark ? "*" : "");
    if (two)
        printf("    %-16s %8s %9s %9s ", grp, l, b, a);
    else
        printf("    %-16s %8s %9s ", grp, l, b);
    print_refs(p, s, o);
    putchar('\n');
}

/* The value of latent s for model m at the level the groups were made (image, or patch). */
static float
value_of(const ProbeResult *r, int m, int patch, int32_t s)
{
    if (patch < 0)
        return r->m[m].image[s];
    const SaeSparse *sp = &r->m[m].sp;
    for (int64_t j = sp->rowptr[1 + patch]; j < sp->rowptr[2 + patch]; j++)
        if (sp->idx[j] == s)
            return sp->val[j];
    return 0;
}

/*
 * At a patch with the demo's union, 1 when latent s is in neither model's own
 * patch top-5 (it came from an image-level top-5); pg holds the patch-only groups.
 */
static int
via_image(const ProbeGroups *pg, int patch, int flags, int32_t s)
{
    if (patch < 0 || (flags & PROBE_PATCH_ONLY))
        return 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < pg->n_top[k]; i++)
            if (pg->top[k][i].latent == s)
                return 0;
    return 1;
}

static void
print_groups(Probe *p, const ProbeResult *r, int patch, const Opts *o)
{
    char err[PS_ERRLEN];
    const char *bn = p->models[0].rec.name;
    int marked = 0;
    for (int a = p->n_models > 1 ? 1 : 0; a < p->n_models; a++) {
        const char *an = p->models[a].rec.name;
        ProbeGroups g, pg;
        if (probe_groups(p, r, a, patch, o->patch_only, o->noise, &g, err) ||
            (patch >= 0 && probe_groups(p, r, a, patch, PROBE_PATCH_ONLY, o->noise, &pg, err))) {
            printf("    (%s)\n", err);
            continue;
        }
        if (!a) {
            printf("    %-16s %8s %9s   reference images (%s on %s): #id label value\n", "group",
                   "latent", bn, bn, p->dataset[0] ? p->dataset : "-");
            for (int i = 0; i < g.n_top[0]; i++) {
                int32_t s = g.top[0][i].latent;
                int v = via_image(&pg, patch, o->patch_only, s);
                marked |= v;
                print_row(p, "top", s, v, value_of(r, 0, patch, s), 0, 0, o);
            }
            continue;
        }
        printf("    %-16s %8s %9s %9s   reference images (%s on %s): #id label value\n", "group",
               "latent", bn, an, bn, p->dataset[0] ? p->dataset : "-");
        char lab[IDX_NAMELEN + 8];
        for (int i = 0; i < g.n_common; i++) {
            int32_t s = g.common[i].latent;
            int v = via_image(&pg, patch, o->patch_only, s);
            marked |= v;
            print_row(p, "common", s, v, value_of(r, 0, patch, s), value_of(r, a, patch, s), 1, o);
        }
        for (int k = 0; k < 2; k++) {
            snprintf(lab, sizeof lab, "%s-only", k ? an : bn);
            for (int i = 0; i < g.n_only[k]; i++) {
                int32_t s = g.only[k][i].latent;
                int v = via_image(&pg, patch, o->patch_only, s);
                marked |= v;
                print_row(p, lab, s, v, value_of(r, 0, patch, s), value_of(r, a, patch, s), 1, o);
            }
        }
    }
    if (marked)
        printf("    * from the image-level top-5, not the patch's (values are on the patch)\n");
}

static void
print_text(Probe *p, const ProbeResult *r, int patch, const Opts *o, int64_t saved)
{
    printf("%s\n", r->path);
    if (p->C > 0) {
        printf("  predictions (%d classes of %s)\n", p->C, p->dataset);
        printf("    %-4s", "rank");
        for (int m = 0; m < p->n_models; m++)
            printf("  %-28s", p->models[m].rec.name);
        putchar('\n');
        for (int k = 0; k < 5; k++) {
            int any = 0;
            for (int m = 0; m < p->n_models; m++)
                any |= k < r->m[m].n_pred;
            if (!any)
                break;
            printf("    %-4d", k + 1);
            for (int m = 0; m < p->n_models; m++) {
                char cell[64] = "";
                if (k < r->m[m].n_pred)
                    snprintf(cell, sizeof cell, "%-20.20s %.4f", cls_name(p, r->m[m].pred_cls[k]),
                             (double)r->m[m].pred_prob[k]);
                printf("  %-28s", cell);
            }
            putchar('\n');
        }
    }
    char nf[64] = "noise filter off";
    if (o->noise > 0)
        snprintf(nf, sizeof nf, "noise filter: base mean activation > %g hidden", (double)o->noise);
    printf("  image-level latents (mean over all tokens; %s)\n", nf);
    print_groups(p, r, PROBE_IMAGE, o);
    if (patch >= 0) {
        printf("  patch (%d,%d) latents (%s)\n", o->row, o->col,
               o->patch_only ? "the patch's top-5"
                             : "image-level top-5 and the patch's top-5, patch values first");
        print_groups(p, r, patch, o);
    }
    if (saved >= 0)
        printf("  saved as image %lld\n", (long long)saved);
}

/* ---- JSON ---- */

static json_t *
jreal(float v)
{
    return json_real((double)v);
}

static json_t *
jacts(const IdxAct *a, int n)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "latent", json_integer(a[i].latent));
        json_object_set_new(o, "value", jreal(a[i].value));
        json_array_append_new(arr, o);
    }
    return arr;
}

static void
add_ref(Probe *p, json_t *refs, int32_t s, const Opts *o)
{
    char key[32];
    snprintf(key, sizeof key, "%d", s);
    if (o->refs <= 0 || p->models[0].statset < 0 || json_object_get(refs, key))
        return;
    IdxTopImage top[64];
    int n = 0;
    json_t *arr = json_array();
    if (idx_latent_top(p->ix, p->models[0].statset, s, IDX_TOP_MEAN, top, MIN(o->refs, 64), &n,
                       NULL) == PS_OK)
        for (int i = 0; i < n; i++) {
            json_t *x = json_object();
            json_object_set_new(x, "image_id", json_integer(top[i].image_id));
            json_object_set_new(x, "pos", json_integer(top[i].pos));
            json_object_set_new(x, "label", json_integer(top[i].label));
            json_object_set_new(x, "class_name", top[i].label >= 0
                                                     ? json_string(cls_name(p, top[i].label))
                                                     : json_null());
            json_object_set_new(x, "value", jreal(top[i].value));
            json_array_append_new(arr, x);
        }
    json_object_set_new(refs, key, arr);
}

static void
json_groups(Probe *p, const ProbeResult *r, int patch, const Opts *o, json_t *out, json_t *refs)
{
    for (int a = p->n_models > 1 ? 1 : 0; a < p->n_models; a++) {
        ProbeGroups g;
        if (probe_groups(p, r, a, patch, o->patch_only, o->noise, &g, NULL))
            continue;
        json_t *x = json_object();
        json_object_set_new(x, "level", json_string(patch < 0 ? "image" : "patch"));
        if (patch >= 0) {
            json_object_set_new(x, "row", json_integer(o->row));
            json_object_set_new(x, "col", json_integer(o->col));
        }
        json_object_set_new(x, "base", json_string(p->models[0].rec.name));
        json_object_set_new(x, "adapted", a ? json_string(p->models[a].rec.name) : json_null());
        json_object_set_new(x, "base_top", jacts(g.top[0], g.n_top[0]));
        if (a) {
            json_object_set_new(x, "adapted_top", jacts(g.top[1], g.n_top[1]));
            json_t *c = json_array();
            for (int i = 0; i < g.n_common; i++) {
                json_t *e = json_object();
                json_object_set_new(e, "latent", json_integer(g.common[i].latent));
                json_object_set_new(e, "base", jreal(g.common_v[i][0]));
                json_object_set_new(e, "adapted", jreal(g.common_v[i][1]));
                json_array_append_new(c, e);
                add_ref(p, refs, g.common[i].latent, o);
            }
            json_object_set_new(x, "common", c);
            json_object_set_new(x, "base_only", jacts(g.only[0], g.n_only[0]));
            json_object_set_new(x, "adapted_only", jacts(g.only[1], g.n_only[1]));
            for (int k = 0; k < 2; k++)
                for (int i = 0; i < g.n_only[k]; i++)
                    add_ref(p, refs, g.only[k][i].latent, o);
        }
        for (int i = 0; i < g.n_top[0]; i++)
            add_ref(p, refs, g.top[0][i].latent, o);
        json_array_append_new(out, x);
    }
}

static json_t *
json_image(Probe *p, const ProbeResult *r, int patch, const Opts *o, int64_t saved)
{
    json_t *im = json_object();
    json_object_set_new(im, "path", json_string(r->path));
    json_t *pred = json_object(), *lat = json_object(), *blobs = json_object();
    for (int m = 0; m < p->n_models; m++) {
        const ProbeModelResult *x = &r->m[m];
        json_t *arr = json_array();
        for (int k = 0; k < x->n_pred; k++) {
            json_t *e = json_object();
            json_object_set_new(e, "rank", json_integer(k + 1));
            json_object_set_new(e, "class", json_integer(x->pred_cls[k]));
            json_object_set_new(e, "name", json_string(cls_name(p, x->pred_cls[k])));
            json_object_set_new(e, "prob", jreal(x->pred_prob[k]));
            json_array_append_new(arr, e);
        }
        json_object_set_new(pred, p->models[m].rec.name, arr);
        json_object_set_new(lat, p->models[m].rec.name, jacts(x->top, x->n_top));
        json_object_set_new(blobs, p->models[m].rec.name, json_integer((json_int_t)x->blob_n));
    }
    json_object_set_new(im, "predictions", pred);
    json_object_set_new(im, "image_latents", lat);
    json_object_set_new(im, "blob_bytes", blobs);
    json_t *groups = json_array(), *refs = json_object();
    json_groups(p, r, PROBE_IMAGE, o, groups, refs);
    if (patch >= 0)
        json_groups(p, r, patch, o, groups, refs);
    json_object_set_new(im, "groups", groups);
    json_object_set_new(im, "references", refs);
    json_object_set_new(im, "saved_image_id", saved >= 0 ? json_integer(saved) : json_null());
    return im;
}

static json_t *
json_head(const Probe *p, const char *index, const Opts *o)
{
    json_t *root = json_object();
    json_object_set_new(root, "index", json_string(index));
    json_object_set_new(root, "dataset", p->dataset[0] ? json_string(p->dataset) : json_null());
    char nf[32];
    snprintf(nf, sizeof nf, "%g", (double)o->noise); /* as given, not the float's expansion */
    json_object_set_new(root, "noise_filter", o->noise > 0 ? json_real(strtod(nf, NULL))
                                                           : json_null());
    json_t *ms = json_array();
    for (int m = 0; m < p->n_models; m++) {
        json_t *x = json_object();
        json_object_set_new(x, "name", json_string(p->models[m].rec.name));
        json_object_set_new(x, "kind", json_string(p->models[m].rec.kind));
        json_object_set_new(x, "file", json_string(p->models[m].file));
        json_object_set_new(x, "sha256", json_string(p->models[m].rec.sha256));
        json_object_set_new(x, "n_tokens", json_integer(p->models[m].n_tok));
        json_array_append_new(ms, x);
    }
    json_object_set_new(root, "models", ms);
    json_t *sae = json_object();
    json_object_set_new(sae, "file", json_string(p->sae_file));
    json_object_set_new(sae, "sha256", json_string(p->sae_rec.sha256));
    json_object_set_new(sae, "d_sae", json_integer(p->sae.d_sae));
    json_object_set_new(sae, "hook_layer", json_integer(p->layer));
    json_object_set_new(root, "sae", sae);
    json_object_set_new(root, "grid", json_integer(p->G));
    return root;
}

/* ---- main ---- */

int
cmd_probe(int argc, char **argv)
{
    enum { O_PATCH = 256, O_PONLY, O_NOISE, O_NONOISE, O_REFS, O_DATASET, O_MODEL, O_TOK,
           O_SAE, O_MAPLE, O_FORCE, O_SAVE, O_SAVEDS, O_JSON, O_QUIET, O_TIMINGS, O_HELP };
    static const struct option lo[] = {
        { "patch", required_argument, NULL, O_PATCH },
        { "patch-only", no_argument, NULL, O_PONLY },
        { "noise-filter", required_argument, NULL, O_NOISE },
        { "no-noise-filter", no_argument, NULL, O_NONOISE },
        { "refs", required_argument, NULL, O_REFS },
        { "dataset", required_argument, NULL, O_DATASET },
        { "model", required_argument, NULL, O_MODEL },
        { "tokenizer", required_argument, NULL, O_TOK },
        { "sae", required_argument, NULL, O_SAE },
        { "maple", required_argument, NULL, O_MAPLE },
        { "force", no_argument, NULL, O_FORCE },
        { "save", no_argument, NULL, O_SAVE },
        { "save-dataset", required_argument, NULL, O_SAVEDS },
        { "json", no_argument, NULL, O_JSON },
        { "quiet", no_argument, NULL, O_QUIET },
        { "timings", no_argument, NULL, O_TIMINGS },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    Opts o = { .row = -1, .col = -1, .noise = PROBE_NOISE, .refs = 5 };
    ProbeOptions po;
    probe_options_init(&po);
    po.warn = on_warn;
    po.warn_ctx = &o;
    int ch;
    char *end;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "q", lo, NULL)) != -1) {
        switch (ch) {
        case O_PATCH:
            if (sscanf(optarg, "%d,%d", &o.row, &o.col) != 2 || o.row < 0 || o.col < 0) {
                fprintf(stderr, "patchsae probe: --patch %s: expected R,C (0-based)\n", optarg);
                return 2;
            }
            break;
        case O_PONLY: o.patch_only = PROBE_PATCH_ONLY; break;
        case O_NOISE:
            o.noise = strtof(optarg, &end);
            if (*end || !(o.noise > 0) || !isfinite(o.noise)) {
                fprintf(stderr, "patchsae probe: --noise-filter %s: expected a number > 0\n",
                        optarg);
                return 2;
            }
            break;
        case O_NONOISE: o.noise = 0; break;
        case O_REFS:
            o.refs = (int)strtol(optarg, &end, 10);
            if (*end || o.refs < 0 || o.refs > 64) {
                fprintf(stderr, "patchsae probe: --refs %s: expected 0..64\n", optarg);
                return 2;
            }
            break;
        case O_DATASET: po.dataset = optarg; break;
        case O_MODEL: po.model = optarg; break;
        case O_TOK: po.tokenizer = optarg; break;
        case O_SAE: po.sae = optarg; break;
        case O_MAPLE:
            if (po.n_maple == PROBE_MAX_MODELS - 1) {
                fprintf(stderr, "patchsae probe: at most %d --maple\n", PROBE_MAX_MODELS - 1);
                return 2;
            }
            po.maple[po.n_maple++] = optarg;
            break;
        case O_FORCE: po.force = 1; break;
        case O_SAVE: o.save = 1; break;
        case O_SAVEDS: o.save = 1; o.save_ds = optarg; break;
        case O_JSON: o.json = 1; break;
        case 'q':
        case O_QUIET: o.quiet = 1; break;
        case O_TIMINGS: o.timings = 1; break;
        case O_HELP: fputs(cmd_probe_usage, stdout); return 0;
        default: return 2;
        }
    }
    if (argc - optind < 2) {
        fprintf(stderr, "patchsae probe: need an index and at least one image (see --help)\n");
        return 2;
    }
    const char *index = argv[optind];
    char err[PS_ERRLEN];
    FILE *f = fopen(index, "rb");
    if (!f) {
        fprintf(stderr, "patchsae probe: %s: cannot open\n", index);
        return 2;
    }
    fclose(f);
    Idx *ix;
    if ((o.save ? idx_open(&ix, index, err) : idx_open_readonly(&ix, index, err))) {
        fprintf(stderr, "patchsae probe: %s\n", err);
        return 2;
    }
    Probe p;
    double t0 = ps_now();
    if (probe_open(&p, ix, &po, err)) {
        fprintf(stderr, "patchsae probe: %s\n", err);
        idx_close(ix);
        return 2;
    }
    if (o.timings)
        fprintf(stderr, "timings: open %.3f s: sha256 %.3f s, loading %.3f s, class prompts %.3f s "
                "(%d classes)\n", ps_now() - t0, p.t_hash, p.t_load, p.t_text, p.C);
    int patch = -1;
    if (o.row >= 0) {
        if (o.row >= p.G || o.col >= p.G) {
            fprintf(stderr, "patchsae probe: --patch %d,%d outside the %dx%d patch grid\n", o.row,
                    o.col, p.G, p.G);
            probe_close(&p);
            idx_close(ix);
            return 2;
        }
        patch = o.row * p.G + o.col;
    }
    json_t *root = o.json ? json_head(&p, index, &o) : NULL, *imgs = json_array();
    ProbeResult r;
    memset(&r, 0, sizeof r);
    int failed = 0;
    for (int i = optind + 1; i < argc; i++) {
        if (probe_image(&p, argv[i], &r, err)) {
            fprintf(stderr, "patchsae probe: %s\n", err);
            if (o.json) {
                json_t *e = json_object();
                json_object_set_new(e, "path", json_string(argv[i]));
                json_object_set_new(e, "error", json_string(err));
                json_array_append_new(imgs, e);
            }
            failed++;
            continue;
        }
        if (o.timings)
            fprintf(stderr, "timings: %s: %.3f s (%d models)\n", argv[i], p.t_image, p.n_models);
        int64_t saved = -1;
        if (o.save && probe_save(&p, &r, o.save_ds, &saved, err)) {
            fprintf(stderr, "patchsae probe: %s: not saved: %s\n", argv[i], err);
            saved = -1;
            failed++;
        }
        if (o.json)
            json_array_append_new(imgs, json_image(&p, &r, patch, &o, saved));
        else
            print_text(&p, &r, patch, &o, saved);
    }
    if (o.json) {
        json_object_set_new(root, "images", imgs);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        if (s)
            puts(s);
        free(s);
        json_decref(root);
    } else {
        json_decref(imgs);
    }
    probe_result_free(&r);
    probe_close(&p);
    idx_close(ix);
    return failed ? 1 : 0;
}
