/* SPDX-License-Identifier: MIT */
/*
 * cmd_eval.c - `patchsae eval`: PatchSAE's classification with top-k latent
 * masking (eval.h) over a dataset, with the latents chosen by the class
 * counts of an index, results stored back into that index and optionally
 * written as CSV.
 *
 * Flow: open the index and find the model row the results belong to, the
 * statset whose class counts choose the latents (--rank-by) and its SAE;
 * open the CLIP model, the SAE file (its width and latent count must match)
 * and the dataset (its class count must match the index's); build the
 * zero-shot class embeddings once; then class by class, batch by batch:
 * decode and preprocess the images into one reused buffer and score them
 * under every condition (eval_batch). Unreadable images are skipped (exit 1).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clip.h"
#include "cmd.h"
#include "data.h"
#include "eval.h"
#include "idx.h"
#include "img.h"
#include "maple.h"
#include "ps.h"
#include "sae.h"

const char cmd_eval_usage[] =
    "classification with a class's top-k SAE latents kept or removed (PatchSAE §4.1)\n"
    "usage: patchsae eval --index I --model M --sae S --data D [--maple CKPT]\n"
    "                     [--rank-by base|adapted|NAME] [--k LIST] [--bias-const C]\n"
    "                     [--no-baselines] [--seed N] [--csv F] [--ensemble] [options]\n"
    "\n"
    "  --index I         the index whose class counts choose the latents; results are\n"
    "                    stored in its eval table\n"
    "  --model M         the CLIP model (HF directory or OpenAI-named safetensors)\n"
    "  --maple CKPT      evaluate the MaPLe-adapted model (a Dassl/MaPLe checkpoint on top\n"
    "                    of --model): its visual prompts at every forward, its learned\n"
    "                    class prompts for the class embeddings\n"
    "  --sae S           the SAE (PatchSAE .pt, SAELens, or the project's safetensors)\n"
    "  --data D          the dataset (image folder, TSV manifest, IDX, fashion-mnist:test)\n"
    "  --classes FILE    class names for the dataset (default: the dataset's own)\n"
    "  --dataset NAME    the index's dataset (default: the first with statistics)\n"
    "  --name NAME       the index model the results belong to (default: the first base\n"
    "                    model, or the first adapted one with --maple)\n"
    "  --rank-by R       whose class counts rank the latents: base, adapted or a model name\n"
    "                    (default: the evaluated model's own)\n"
    "  --k LIST          k values (default " EVAL_DEFAULT_KS "; all = every latent)\n"
    "  --bias-const C    constant added to every element of the patched residual (default\n"
    "                    0.105131256516992: PatchSAE subtracts SAE_BIAS = -0.10513...; 0 turns\n"
    "                    it off)\n"
    "  --no-baselines    skip the random and dataset-level selections of the same sizes\n"
    "  --seed N          seed of the random selections (default 1)\n"
    "  --csv F           also write class,class_name,mode,k,n_images,correct,accuracy rows\n"
    "  --ensemble        base model: class embeddings from OpenAI's 80 ImageNet templates,\n"
    "                    averaged without renormalising (PatchSAE); default \"a photo of a\n"
    "                    {}.\" (MaPLe always uses its learned prompts)\n"
    "  --layer L         the hook layer (default: the SAE's, else n_layers-2)\n"
    "  --max-per-class N evaluate at most N images of each class (first in dataset order)\n"
    "  --batch N         images per forward (default 16)\n"
    "  --tokenizer PATH  vocab.json or bpe_simple_vocab_16e6.txt.gz (default: beside the model)\n"
    "  --quiet           no progress on stderr\n"
    "\n"
    "For each class, its latents are ordered by class-level count (tokens with activation\n"
    "above tau; ties by lower latent index). Every token's residual after the hook layer is\n"
    "replaced by (f * m) W_dec + b_dec + C, with m keeping only the top-k latents (on) or all\n"
    "but them (off), and each class's images are classified with that class's mask. Also:\n"
    "orig (no SAE), recon (every latent kept), and as baselines a seeded random order per\n"
    "class and the dataset-level order (counts summed over classes), on and off. The index\n"
    "stores modes orig recon on off random dataset; the off-variants of random and dataset\n"
    "have k < 0. stdout: mode, k, images, overall accuracy (percent) as TSV.\n";

enum {
    O_INDEX = 256, O_MODEL, O_MAPLE, O_SAE, O_DATA, O_CLASSES, O_DATASET, O_NAME, O_RANK, O_K,
    O_BIAS, O_NOBASE, O_SEED, O_CSV, O_ENSEMBLE, O_LAYER, O_MAXPC, O_BATCH, O_TOK, O_QUIET,
    O_HELP,
};

static const struct option longopts[] = {
    { "index", required_argument, NULL, O_INDEX },
    { "model", required_argument, NULL, O_MODEL },
    { "maple", required_argument, NULL, O_MAPLE },
    { "sae", required_argument, NULL, O_SAE },
    { "data", required_argument, NULL, O_DATA },
    { "classes", required_argument, NULL, O_CLASSES },
    { "dataset", required_argument, NULL, O_DATASET },
    { "name", required_argument, NULL, O_NAME },
    { "rank-by", required_argument, NULL, O_RANK },
    { "k", required_argument, NULL, O_K },
    { "bias-const", required_argument, NULL, O_BIAS },
    { "no-baselines", no_argument, NULL, O_NOBASE },
    { "seed", required_argument, NULL, O_SEED },
    { "csv", required_argument, NULL, O_CSV },
    { "ensemble", no_argument, NULL, O_ENSEMBLE },
    { "layer", required_argument, NULL, O_LAYER },
    { "max-per-class", required_argument, NULL, O_MAXPC },
    { "batch", required_argument, NULL, O_BATCH },
    { "tokenizer", required_argument, NULL, O_TOK },
    { "quiet", no_argument, NULL, O_QUIET },
    { "help", no_argument, NULL, O_HELP },
    { NULL, 0, NULL, 0 },
};

static int
parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "patchsae eval: %s %s: expected an integer in %ld..%ld\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* The model row named name, or the first of kind (NULL: any). */
static int
find_model(const IdxModel *ms, int n, const char *name, const char *kind)
{
    for (int i = 0; i < n; i++)
        if (name ? !strcmp(ms[i].name, name) : !strcmp(ms[i].kind, kind))
            return i;
    return -1;
}

int
cmd_eval(int argc, char **argv)
{
    const char *index = NULL, *model = NULL, *maple = NULL, *sae_path = NULL, *data = NULL;
    const char *classes = NULL, *dsname = NULL, *name = NULL, *rank_by = NULL, *klist = NULL;
    const char *csv = NULL, *tokenizer = NULL;
    int baselines = 1, ensemble = 0, quiet = !isatty(2), ch;
    long seed = 1, layer = -1, maxpc = 0, batch = EVAL_BATCH;
    float bias = SAE_PATCH_BIAS;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_INDEX: index = optarg; break;
        case O_MODEL: model = optarg; break;
        case O_MAPLE: maple = optarg; break;
        case O_SAE: sae_path = optarg; break;
        case O_DATA: data = optarg; break;
        case O_CLASSES: classes = optarg; break;
        case O_DATASET: dsname = optarg; break;
        case O_NAME: name = optarg; break;
        case O_RANK: rank_by = optarg; break;
        case O_K: klist = optarg; break;
        case O_BIAS: {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (!*optarg || *end || errno || !isfinite(v)) {
                fprintf(stderr, "patchsae eval: --bias-const %s: not a number\n", optarg);
                return 2;
            }
            bias = (float)v;
            break;
        }
        case O_NOBASE: baselines = 0; break;
        case O_SEED:
            if (parse_long("--seed", optarg, 0, 0x7fffffffL, &seed))
                return 2;
            break;
        case O_CSV: csv = optarg; break;
        case O_ENSEMBLE: ensemble = 1; break;
        case O_LAYER:
            if (parse_long("--layer", optarg, 0, 1023, &layer))
                return 2;
            break;
        case O_MAXPC:
            if (parse_long("--max-per-class", optarg, 1, 0x7fffffffL, &maxpc))
                return 2;
            break;
        case O_BATCH:
            if (parse_long("--batch", optarg, 1, 256, &batch))
                return 2;
            break;
        case O_TOK: tokenizer = optarg; break;
        case O_QUIET: quiet = 1; break;
        case 'h':
        case O_HELP: fputs(cmd_eval_usage, stdout); return 0;
        default: fprintf(stderr, "usage: see patchsae eval --help\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "patchsae eval: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (!index || !model || !sae_path || !data) {
        fprintf(stderr, "patchsae eval: --index, --model, --sae and --data are required "
                        "(see --help)\n");
        return 2;
    }

    char err[PS_ERRLEN];
    int status = 2, nm = 0;
    Idx *ix = NULL;
    IdxModel *ms = NULL;
    Clip c;
    int clip_ok = 0;
    Sae s = { 0 };
    Maple mp = { 0 };
    Dataset ds = { 0 };
    EvalRank r = { 0 };
    Eval ev = { 0 };
    float *text = NULL, *pix = NULL;
    int *byclass = NULL, *start = NULL;
    const char *kind = maple ? "adapted" : "base";

    if (access(index, F_OK)) {
        fprintf(stderr, "patchsae eval: %s: %s\n", index, strerror(errno));
        goto done;
    }
    if (idx_open(&ix, index, err) || idx_models(ix, &ms, &nm, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    int me = find_model(ms, nm, name, kind);
    if (me < 0) {
        fprintf(stderr, "patchsae eval: %s: no %s model%s%s in the index\n", index,
                name ? "" : kind, name ? " named " : "", name ? name : "");
        goto done;
    }
    int sel = me;
    if (rank_by) {
        int by_kind = !strcmp(rank_by, "base") || !strcmp(rank_by, "adapted");
        sel = find_model(ms, nm, by_kind ? NULL : rank_by, by_kind ? rank_by : NULL);
        if (sel < 0) {
            fprintf(stderr, "patchsae eval: --rank-by %s: no such model in %s\n", rank_by, index);
            goto done;
        }
    }
    IdxStatset ss;
    if (idx_find_statset(ix, ms[sel].name, dsname, &ss, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    if (!ss.final)
        fprintf(stderr, "patchsae eval: warning: the statistics of %s on %s are not final\n",
                ss.model, ss.dataset);

    if (clip_open(&c, model, tokenizer, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    clip_ok = 1;
    if (sae_load(&s, sae_path, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    if (maple && maple_load(&mp, maple, &c, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    const ClipPrompts *prompts = maple ? &mp.vision : NULL;
    const ClipConfig *g = &c.cfg;
    if (s.d_in != g->vision.width || s.d_sae != ss.d_sae) {
        fprintf(stderr,
                "patchsae eval: %s: %d inputs and %d latents, but the model is %d wide and the "
                "index's SAE has %d latents\n",
                sae_path, s.d_in, s.d_sae, g->vision.width, ss.d_sae);
        goto done;
    }
    int L = g->vision.layers;
    if (layer < 0)
        layer = sae_layer(&s, L) >= 0 ? sae_layer(&s, L) : MAX(L - 2, 0);
    if (layer >= L) {
        fprintf(stderr, "patchsae eval: --layer %ld: %s has %d layers\n", layer, model, L);
        goto done;
    }
    if (ms[me].hook_layer != (int)layer && ms[me].hook_layer >= 0 && ms[me].d_model > 0)
        fprintf(stderr, "patchsae eval: warning: the index hooked layer %d, eval uses %ld\n",
                ms[me].hook_layer, layer);
    if (data_open(&ds, data, err) || (classes && data_set_classnames(&ds, classes, err))) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    int C = ds.n_class;
    if (C != ss.n_classes) {
        fprintf(stderr, "patchsae eval: %s has %d classes, the index's dataset %s has %d\n", data,
                C, ss.dataset, ss.n_classes);
        goto done;
    }
    for (int k = 0; k < C; k++) {
        char nb[IDX_NAMELEN];
        if (!idx_class_name(ix, ss.dataset_id, k, nb, sizeof nb, NULL) &&
            strcasecmp(nb, ds.class_names[k])) {
            fprintf(stderr, "patchsae eval: warning: class %d is \"%s\" in %s but \"%s\" in the "
                            "index\n", k, ds.class_names[k], data, nb);
            break;
        }
    }

    EvalConfig cfg;
    eval_config_init(&cfg, s.d_sae);
    if (klist && eval_parse_ks(klist, s.d_sae, cfg.k, &cfg.n_k, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    cfg.add_const = bias;
    cfg.baselines = baselines;
    cfg.seed = (uint64_t)seed;
    cfg.batch = (int)batch;
    int depth = 1;
    for (int i = 0; i < cfg.n_k; i++)
        if (cfg.k[i] < s.d_sae)
            depth = MAX(depth, cfg.k[i]);
    if (eval_rank_load(&r, ix, ss.id, C, s.d_sae, depth, err)) {
        fprintf(stderr, "patchsae eval: %s: %s\n", index, err);
        goto done;
    }

    /* class embeddings, once */
    text = xmalloc((size_t)C * g->embed_dim * sizeof *text);
    const char *const *tpl = ensemble ? clip_imagenet_templates : &clip_photo_template;
    const char *const *cn = (const char *const *)ds.class_names;
    if (maple ? maple_encode_classes(&mp, &c, cn, C, NULL, text, err)
              : clip_zeroshot_weights(&c, cn, C, tpl, ensemble ? CLIP_N_TEMPLATES : 1, 0, text,
                                      err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }
    if (eval_init(&ev, &cfg, &c, prompts, &s, (int)layer, &r, text, C, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        goto done;
    }

    /* items grouped by class, dataset order within a class */
    start = xcalloc((size_t)C + 1, sizeof *start);
    byclass = xmalloc((size_t)MAX(ds.n, 1) * sizeof *byclass);
    for (int i = 0; i < ds.n; i++)
        start[ds.items[i].label + 1]++;
    for (int k = 0; k < C; k++)
        start[k + 1] += start[k];
    int *fill = xcalloc((size_t)C, sizeof *fill);
    for (int i = 0; i < ds.n; i++)
        byclass[start[ds.items[i].label] + fill[ds.items[i].label]++] = i;
    free(fill);
    int64_t total = 0;
    for (int k = 0; k < C; k++)
        total += maxpc ? MIN(maxpc, start[k + 1] - start[k]) : start[k + 1] - start[k];

    size_t px = (size_t)3 * g->image_size * g->image_size;
    pix = xmalloc((size_t)batch * px * sizeof *pix);
    ImgPrep ip = { g->resize, g->crop_h, { g->mean[0], g->mean[1], g->mean[2] },
                   { g->std[0], g->std[1], g->std[2] } };
    status = 0;
    int64_t done = 0, failed = 0;
    double t0 = ps_now();
    for (int k = 0; k < C; k++) {
        int n_k = start[k + 1] - start[k];
        if (maxpc)
            n_k = (int)MIN(maxpc, n_k);
        for (int i0 = 0; i0 < n_k; i0 += (int)batch) {
            int B = 0;
            for (int i = i0; i < MIN(n_k, i0 + (int)batch); i++) {
                int item = byclass[start[k] + i];
                Image im = { 0 };
                const uint8_t *gp;
                int gw, gh, rc;
                const char *path = data_item_path(&ds, item);
                if (path)
                    rc = img_load(&im, path, err);
                else if ((rc = data_item_gray(&ds, item, &gp, &gw, &gh)))
                    ps_seterr(err, rc, "%s: item %d has no image", data, item);
                else
                    rc = img_from_gray(&im, gp, gw, gh, err);
                if (!rc)
                    rc = img_preprocess(&im, &ip, pix + (size_t)B * px, err);
                img_free(&im);
                if (rc) {
                    if (!quiet)
                        fputc('\n', stderr);
                    fprintf(stderr, "patchsae eval: %s (skipped)\n", err);
                    failed++;
                    status = 1;
                    continue;
                }
                B++;
            }
            if (eval_batch(&ev, k, pix, B, err)) {
                fprintf(stderr, "patchsae eval: %s\n", err);
                status = 2;
                goto done;
            }
            done += MIN(n_k, i0 + (int)batch) - i0;
            if (!quiet)
                fprintf(stderr, "\rpatchsae eval: class %d/%d, %lld/%lld images, %.1f images/s ",
                        k + 1, C, (long long)done, (long long)total,
                        (double)done / fmax(ps_now() - t0, 1e-9));
        }
    }
    if (!quiet)
        fputc('\n', stderr);
    if (eval_count(&ev, -1) == 0) {
        fprintf(stderr, "patchsae eval: no image could be evaluated\n");
        status = 2;
        goto done;
    }
    if (eval_store(&ev, ix, ms[me].id, ss.dataset_id, ss.sae_id, ms[sel].id, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        status = 2;
        goto done;
    }
    if (csv && eval_write_csv(&ev, (const char *const *)ds.class_names, csv, err)) {
        fprintf(stderr, "patchsae eval: %s\n", err);
        status = 2;
        goto done;
    }
    printf("mode\tk\tn_images\taccuracy\n");
    for (int i = 0; i < ev.n_cond; i++)
        printf("%s\t%d\t%lld\t%.2f\n", ev.cond[i].name, ev.cond[i].k,
               (long long)eval_count(&ev, -1), eval_accuracy(&ev, -1, i));
    if (!quiet)
        fprintf(stderr, "patchsae eval: %lld images (%lld skipped), %d conditions, %.1f s\n",
                (long long)eval_count(&ev, -1), (long long)failed, ev.n_cond, ps_now() - t0);

done:
    eval_free(&ev);
    eval_rank_free(&r);
    free(text);
    free(pix);
    free(byclass);
    free(start);
    data_close(&ds);
    sae_free(&s);
    maple_free(&mp);
    if (clip_ok)
        clip_close(&c);
    free(ms);
    idx_close(ix);
    return status;
}
