/* SPDX-License-Identifier: MIT */
/*
 * cmd_index.c - `patchsae index`: builds (or resumes, or shards) an index
 * with build.h, showing progress on stderr. The command owns what a library
 * must not: options, signals, the terminal and the exit status.
 *
 * Signals: SIGINT and SIGTERM (Ctrl-C, a Slurm preemption) finish the
 * current batch, commit it and exit 2 with a hint to --resume; SIGKILL loses
 * only the open chunk (SQLite's WAL keeps the file consistent). SIGXFSZ is
 * ignored so that a file-size limit surfaces as a write error from SQLite,
 * like a full disk, instead of killing the process mid-write.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "cmd.h"
#include "ps.h"

const char cmd_index_usage[] =
    "build an index: images through CLIP (and MaPLe), SAE latents, statistics, one SQLite file\n"
    "usage: patchsae index --model MODEL --sae SAE --data DATA [--maple CKPT]... [--classes FILE]\n"
    "                      [options] -o INDEX.db\n"
    "\n"
    "  --model MODEL       base CLIP: HF model directory or OpenAI-named safetensors file\n"
    "  --tokenizer PATH    vocab.json (merges.txt beside it) or bpe_simple_vocab_16e6.txt.gz\n"
    "  --sae SAE           PatchSAE .pt, SAELens folder or sae_weights.safetensors, or the\n"
    "                      project's own safetensors SAE; its hook layer is used\n"
    "  --maple CKPT        an adapted model: MaPLe checkpoint on top of MODEL (repeatable);\n"
    "                      it classifies with its learned prompts\n"
    "  --data DATA         image folder (one sub-folder a class), TSV manifest (path<TAB>label),\n"
    "                      IDX images file, or fashion-mnist:train|test\n"
    "  --classes FILE      class names (one a line, `nXXXXXXXX name`, or JSON) replacing the\n"
    "                      dataset's; prompted as \"a photo of a {name}.\"\n"
    "  --ensemble          prompt the base model with OpenAI's 80 ImageNet templates instead\n"
    "                      (mean of the normalised embeddings, as PatchSAE)\n"
    "  -o, --output FILE   the index (SQLite, WAL mode; readable while it is being built)\n"
    "  --resume            continue an interrupted build of FILE (or add a dataset to it)\n"
    "  --force             delete an existing FILE first\n"
    "  --shard I/N         only shard I of N (contiguous, deterministic); combine the N files\n"
    "                      with `patchsae merge`\n"
    "  --layer L           hook layer when the SAE does not record one (default n_layers-2)\n"
    "  --batch N           images per forward (default 8); batch k is always images kB..kB+B-1\n"
    "                      of the dataset, so results depend on N but not on shards or resumes\n"
    "  --name NAME         the base model's name in the index (default clip)\n"
    "  --maple-name NAME   names of the adapted models, in --maple order (default maple,\n"
    "                      maple-2, ...)\n"
    "  --dataset-name NAME the dataset's name in the index (default from DATA)\n"
    "  --top-images K      top images kept per latent (default 16)\n"
    "  --patch-latents K   latents kept per token in the patch blobs (default 32)\n"
    "  --tau T             class-count threshold (default 0.2)\n"
    "  --class-top N       top latents stored per class (default 100)\n"
    "  --checkpoint SEC    least seconds between commits (default 0: every batch, unless the\n"
    "                      commit costs over a tenth of the work between commits)\n"
    "  --timings           print where the time went at the end\n"
    "  --quiet             no progress bar (also off when stderr is not a terminal)\n"
    "\n"
    "Per image and model the index stores the preprocessed crop as a JPEG thumbnail, the top-5\n"
    "predictions, the top latents by image-level activation (mean over all tokens, CLS and\n"
    "MaPLe prompts included) and a patch blob (top latents of CLS and every patch).\n"
    "Every commit holds the images, their predictions and patch latents, the accumulated\n"
    "statistics and the position reached, so a killed build resumes with --resume and gives\n"
    "the same index as an uninterrupted one. Unreadable images are skipped with a message\n"
    "(exit 1 at the end). Exit 2 for bad usage, refused inputs or a failed write (the file\n"
    "then holds the last commit: free space and --resume).\n";

static volatile sig_atomic_t stop_sig;

static void
on_signal(int sig)
{
    stop_sig = sig;
}

typedef struct Bar {
    int on;         /* drawing */
    int drawn;      /* a line is on screen */
    double t0, last;
} Bar;

static void
bar_clear(Bar *bar)
{
    if (bar->drawn) {
        fputs("\r\033[K", stderr);
        bar->drawn = 0;
    }
}

static void
warn(void *ctx, const char *msg)
{
    bar_clear(ctx);
    fprintf(stderr, "patchsae index: %s\n", msg);
}

static void
fmt_time(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

static void
bar_draw(Bar *bar, const Build *b, int force)
{
    double now = ps_now();
    if (!bar->on || (!force && now - bar->last < 0.2))
        return;
    bar->last = now;
    int64_t total = build_total(b), done = b->n_done, run = done - b->n_resumed;
    double el = now - bar->t0, rate = el > 0 ? run / el : 0;
    char eta[32] = "?";
    if (rate > 0)
        fmt_time((double)(total - done) / rate, eta, sizeof eta);
    int w = 24, fill = total ? (int)(w * done / total) : w;
    char line[64];
    for (int i = 0; i < w; i++)
        line[i] = i < fill ? '#' : '.';
    line[w] = 0;
    fprintf(stderr, "\rindex [%s] %lld/%lld  %.1f img/s  ETA %s\033[K", line, (long long)done,
            (long long)total, rate, eta);
    bar->drawn = 1;
}

static int
parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "patchsae index: %s %s: expected an integer in %d..%d\n", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int
parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "patchsae index: %s %s: expected a number in %g..%g\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int
cmd_index(int argc, char **argv)
{
    enum { O_MODEL = 256, O_TOK, O_SAE, O_MAPLE, O_DATA, O_CLASSES, O_ENSEMBLE, O_RESUME,
           O_FORCE, O_SHARD, O_LAYER, O_BATCH, O_NAME, O_MNAME, O_DSNAME, O_TOPK, O_KPATCH,
           O_TAU, O_CTOP, O_CKPT, O_TIMINGS, O_QUIET };
    static const struct option opts[] = {
        { "model", required_argument, NULL, O_MODEL },
        { "tokenizer", required_argument, NULL, O_TOK },
        { "sae", required_argument, NULL, O_SAE },
        { "maple", required_argument, NULL, O_MAPLE },
        { "data", required_argument, NULL, O_DATA },
        { "classes", required_argument, NULL, O_CLASSES },
        { "ensemble", no_argument, NULL, O_ENSEMBLE },
        { "output", required_argument, NULL, 'o' },
        { "resume", no_argument, NULL, O_RESUME },
        { "force", no_argument, NULL, O_FORCE },
        { "shard", required_argument, NULL, O_SHARD },
        { "layer", required_argument, NULL, O_LAYER },
        { "batch", required_argument, NULL, O_BATCH },
        { "name", required_argument, NULL, O_NAME },
        { "maple-name", required_argument, NULL, O_MNAME },
        { "dataset-name", required_argument, NULL, O_DSNAME },
        { "top-images", required_argument, NULL, O_TOPK },
        { "patch-latents", required_argument, NULL, O_KPATCH },
        { "tau", required_argument, NULL, O_TAU },
        { "class-top", required_argument, NULL, O_CTOP },
        { "checkpoint", required_argument, NULL, O_CKPT },
        { "timings", no_argument, NULL, O_TIMINGS },
        { "quiet", no_argument, NULL, O_QUIET },
        { NULL, 0, NULL, 0 },
    };
    BuildOptions o;
    build_options_init(&o);
    int quiet = 0, timings = 0, n_mname = 0, ch;
    char err[PS_ERRLEN];
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "o:q", opts, NULL)) != -1) {
        double d;
        switch (ch) {
        case O_MODEL: o.model = optarg; break;
        case O_TOK: o.tokenizer = optarg; break;
        case O_SAE: o.sae = optarg; break;
        case O_MAPLE:
            if (o.n_maple == BUILD_MAX_MODELS - 1) {
                fprintf(stderr, "patchsae index: at most %d --maple models\n",
                        BUILD_MAX_MODELS - 1);
                return 2;
            }
            o.maple[o.n_maple++] = optarg;
            break;
        case O_MNAME:
            if (n_mname == BUILD_MAX_MODELS - 1) {
                fprintf(stderr, "patchsae index: too many --maple-name\n");
                return 2;
            }
            o.maple_name[n_mname++] = optarg;
            break;
        case O_DATA: o.data = optarg; break;
        case O_CLASSES: o.classes = optarg; break;
        case O_ENSEMBLE: o.ensemble = 1; break;
        case 'o': o.out = optarg; break;
        case O_RESUME: o.resume = 1; break;
        case O_FORCE: o.force = 1; break;
        case O_SHARD:
            if (data_parse_shard(optarg, &o.shard_i, &o.shard_n, err)) {
                fprintf(stderr, "patchsae index: %s\n", err);
                return 2;
            }
            break;
        case O_LAYER:
            if (parse_int("--layer", optarg, 0, 10000, &o.layer))
                return 2;
            break;
        case O_BATCH:
            if (parse_int("--batch", optarg, 1, 4096, &o.batch))
                return 2;
            break;
        case O_NAME: o.name = optarg; break;
        case O_DSNAME: o.dataset_name = optarg; break;
        case O_TOPK:
            if (parse_int("--top-images", optarg, 1, 255, &o.k_top))
                return 2;
            break;
        case O_KPATCH:
            if (parse_int("--patch-latents", optarg, 1, 255, &o.k_blob))
                return 2;
            break;
        case O_CTOP:
            if (parse_int("--class-top", optarg, 1, 1 << 24, &o.class_top))
                return 2;
            break;
        case O_TAU:
            if (parse_double("--tau", optarg, 0, 1e30, &d))
                return 2;
            o.tau = (float)d;
            break;
        case O_CKPT:
            if (parse_double("--checkpoint", optarg, 0, 1e9, &o.checkpoint))
                return 2;
            break;
        case O_TIMINGS: timings = 1; break;
        case 'q':
        case O_QUIET: quiet = 1; break;
        default:
            fprintf(stderr, "patchsae index: unknown option or missing value: %s\n%s",
                    argv[optind - 1], cmd_index_usage);
            return 2;
        }
    }
    const char *missing = !o.model ? "--model" : !o.sae ? "--sae" : !o.data ? "--data"
                        : !o.out ? "-o INDEX.db" : NULL;
    if (missing || optind < argc) {
        if (missing)
            fprintf(stderr, "patchsae index: %s is required\n", missing);
        else
            fprintf(stderr, "patchsae index: unexpected argument %s\n", argv[optind]);
        fputs(cmd_index_usage, stderr);
        return 2;
    }
    if (o.resume && o.force) {
        fprintf(stderr, "patchsae index: --resume and --force contradict each other\n");
        return 2;
    }
    if (n_mname > o.n_maple) {
        fprintf(stderr, "patchsae index: %d --maple-name for %d --maple\n", n_mname, o.n_maple);
        return 2;
    }
    Bar bar = { !quiet && isatty(2), 0, ps_now(), 0 };
    o.warn = warn;
    o.warn_ctx = &bar;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int, old_term, old_xfsz;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &sa, &old_xfsz);
    stop_sig = 0;
    int status = 0, done = 0;
    Build b;
    int rc = build_open(&b, &o, err);
    if (rc) {
        fprintf(stderr, "patchsae index: %s\n", err);
        if (rc == PS_EDB)
            fprintf(stderr, "patchsae index: could not write %s (disk full, file too large or "
                    "read-only?); it is unchanged or holds its last commit: fix the problem and "
                    "run again with --resume\n", o.out);
        status = 2;
        goto out;
    }

    int64_t total = build_total(&b);
    if (b.n_resumed > 0 && b.n_resumed < total && !quiet)
        fprintf(stderr, "patchsae index: resuming %s after %lld of %lld images\n", o.out,
                (long long)b.n_resumed, (long long)total);
    bar.t0 = ps_now();
    while (!rc && !done && !stop_sig) {
        rc = build_step(&b, &done, err);
        bar_draw(&bar, &b, 0);
    }
    if (!rc && done) {
        bar_draw(&bar, &b, 1);
        double t = ps_now();
        rc = build_finish(&b, err);
        b.t_commit += ps_now() - t;
    } else if (!rc) {
        rc = build_commit(&b, err);
        bar_clear(&bar);
        if (!rc) {
            fprintf(stderr, "patchsae index: interrupted after %lld of %lld images; continue with "
                    "--resume\n", (long long)b.n_done, (long long)total);
            status = 2;
        }
    }
    bar_clear(&bar);
    if (rc) {
        fprintf(stderr, "patchsae index: %s\n", err);
        fprintf(stderr, "patchsae index: %s%s holds the first %lld of %lld images of its "
                "shard, consistent; fix the problem and continue with --resume\n",
                rc == PS_EDB ? "could not write (disk full, file too large or read-only?); " : "",
                o.out, (long long)b.n_committed, (long long)total);
        status = 2;
    } else if (done) {
        if (!quiet)
            fprintf(stderr, "patchsae index: %lld images in %s (%d model%s, %.1f s)\n",
                    (long long)(total - b.n_skipped), o.out, b.n_models,
                    b.n_models > 1 ? "s" : "", ps_now() - bar.t0);
        if (b.n_skipped > 0) {
            fprintf(stderr, "patchsae index: %lld of %lld images could not be read and were "
                    "skipped\n", (long long)b.n_skipped, (long long)total);
            status = 1;
        }
    }
    if (timings) {
        double all = ps_now() - bar.t0;
        fprintf(stderr,
                "timings: images %lld, %.3f s: decode %.3f, clip %.3f, sae %.3f, stats+blobs "
                "%.3f, sqlite rows %.3f, commits+finalise %.3f\n",
                (long long)b.n_indexed, all, b.t_decode, b.t_clip, b.t_sae, b.t_stats, b.t_db,
                b.t_commit);
    }
    build_close(&b);
out:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGXFSZ, &old_xfsz, NULL);
    return status;
}
