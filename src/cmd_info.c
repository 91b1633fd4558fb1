/* SPDX-License-Identifier: MIT */
/*
 * cmd_info.c - `patchsae info FILE...`: says what each input is and what is
 * inside it. A dispatcher by file type: types[] pairs a cheap probe (name,
 * stat, first bytes) with one function that describes that type; the first
 * probe that matches wins, so more specific types go first. New types (.pt
 * checkpoints, indexes, SAE directories) are one probe and one function each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "data.h"
#include "maple.h"
#include "ps.h"
#include "pt.h"
#include "st.h"

const char cmd_info_usage[] =
    "describe safetensors files, model directories and datasets\n"
    "usage: patchsae info FILE...\n"
    "\n"
    "For each FILE, says what it is and what is inside:\n"
    "  X.safetensors        tensors (name, dtype, shape) and metadata\n"
    "  X.pt, X.pth, ...     PyTorch checkpoints (read without Python, never executed):\n"
    "                       tensors with dotted names, and the other values, with\n"
    "                       pickled objects shown as <module.Class field=value ...>;\n"
    "                       MaPLe checkpoints (model.pth.tar-N): n_ctx and prompt depth\n"
    "  DIR with config.json a HuggingFace model directory and its files\n"
    "  datasets             a directory of class folders, a .tsv manifest (path<TAB>label),\n"
    "                       an X-images-idx3-ubyte[.gz] file, fashion-mnist:train|test:\n"
    "                       items, image size, classes and their counts\n"
    "\n"
    "Exit status: 0 all described, 1 some failed, 2 none described or bad usage.\n";

typedef struct Probe {
    const char *path;
    int exists;         /* stat succeeded */
    struct stat sb;
    unsigned char head[16]; /* first bytes of a regular file */
    size_t nhead;
} Probe;

static int
has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Prints s with control characters escaped, so one metadata value stays one line. */
static void
put_escaped(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

/* ---- safetensors ---- */

static int
probe_st(const Probe *p)
{
    if (!p->exists || !S_ISREG(p->sb.st_mode))
        return 0;
    if (has_suffix(p->path, ".safetensors"))
        return 1;
    if (p->nhead < 9 || p->head[8] != '{')
        return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | p->head[i];
    return n + 8 <= (uint64_t)p->sb.st_size;
}

static void
human(double bytes, char *buf, size_t n)
{
    static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

/*
 * The training recipe and final metrics that `patchsae train` stores as JSON
 * in the "recipe" metadata of an SAE or a training checkpoint, one field a line.
 */
static void
info_train_recipe(const char *recipe)
{
    json_t *j = json_loads(recipe, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    const char *k;
    json_t *v;
    printf("training recipe:\n");
    json_object_foreach(j, k, v) {
        if (json_is_object(v))
            continue;
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(7));
        printf("  %-22s %s\n", k, s ? s : "?");
        free(s);
    }
    json_t *f = json_object_get(j, "final");
    if (json_is_object(f)) {
        printf("final metrics:\n");
        json_object_foreach(f, k, v) {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(5));
            printf("  %-22s %s\n", k, s ? s : "?");
            free(s);
        }
    }
    json_decref(j);
}

static int
info_st(const char *path, char *err)
{
    StFile *f;
    int rc = st_open(&f, path, err);
    if (rc != PS_OK)
        return rc;
    int64_t params = 0;
    size_t bytes = 0;
    int width = 4;
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        params += st_numel(t);
        bytes += t->nbytes;
        width = MAX(width, MIN(60, (int)strlen(t->name)));
    }
    char hb[32];
    human((double)bytes, hb, sizeof hb);
    printf("%s: safetensors, %d tensors, %lld parameters, %s of data\n", path, st_count(f),
           (long long)params, hb);
    if (st_meta_count(f)) {
        printf("metadata:\n");
        for (int i = 0; i < st_meta_count(f); i++) {
            if (!strcmp(st_meta_key(f, i), "recipe") && st_meta(f, "recipe")[0] == '{')
                continue; /* shown below, one field a line */
            printf("  ");
            put_escaped(st_meta_key(f, i));
            printf(": ");
            put_escaped(st_meta(f, st_meta_key(f, i)));
            printf("\n");
        }
    }
    if (st_meta(f, "recipe"))
        info_train_recipe(st_meta(f, "recipe"));
    if (st_count(f))
        printf("tensors:\n");
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        char sb[160];
        printf("  %-*s %-4s %s\n", width, t->name, st_dtype_name(t->dtype),
               st_shape_str(t->shape, t->nd, sb, sizeof sb));
    }
    st_close(f);
    return PS_OK;
}

/* ---- PyTorch checkpoints ---- */

static int
probe_pt(const Probe *p)
{
    static const unsigned char legacy[] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46 };
    if (!p->exists || !S_ISREG(p->sb.st_mode))
        return 0;
    if (has_suffix(p->path, ".pt") || has_suffix(p->path, ".pth") || has_suffix(p->path, ".ckpt") ||
        strstr(p->path, ".pth.tar"))
        return 1;
    if (p->nhead >= 4 && !memcmp(p->head, "PK\3\4", 4))
        return 1;
    return p->nhead >= sizeof legacy && !memcmp(p->head, legacy, sizeof legacy);
}

typedef struct PtCount {
    int n;
    int64_t params;
    double bytes;
} PtCount;

static int
pt_count(void *ctx, const char *name, const PtObj *o)
{
    PtCount *c = ctx;
    (void)name;
    if (o->type == PT_TENSOR) {
        c->n++;
        c->params += (int64_t)o->u.t->numel;
        c->bytes += (double)o->u.t->numel * (double)st_dtype_size(o->u.t->dtype);
    }
    return 0;
}

/* One line on a MaPLe (Dassl) checkpoint: its prompt shapes, or why it cannot be used. */
static void
info_maple(const PtObj *root, const char *path)
{
    Maple m;
    char err[PS_ERRLEN];
    if (maple_from_pt(&m, root, path, NULL, err) != PS_OK) {
        printf("MaPLe checkpoint, not usable: %s\n", err);
        return;
    }
    printf("MaPLe checkpoint: n_ctx %d, prompt depth %d (%d deep prompts), text width %d, "
           "vision width %d", m.n_ctx, m.depth, m.depth - 1, m.d_text, m.d_vis);
    if (m.epoch >= 0)
        printf(", epoch %d", m.epoch);
    printf("\n");
    maple_free(&m);
}

static int
info_pt(const char *path, char *err)
{
    PtFile *f;
    int rc = pt_load(&f, path, err);
    if (rc != PS_OK)
        return rc;
    PtCount c = { 0 };
    rc = pt_walk(pt_root(f), pt_count, &c, err);
    if (rc == PS_OK) {
        char hb[32];
        human(c.bytes, hb, sizeof hb);
        printf("%s: PyTorch checkpoint (%s), %d tensors, %lld parameters, %s of data\n", path,
               pt_format(f), c.n, (long long)c.params, hb);
        if (maple_is_checkpoint(pt_root(f)))
            info_maple(pt_root(f), path);
        rc = pt_print(stdout, pt_root(f), "  ", err);
    }
    pt_close(f);
    return rc;
}

/* ---- HuggingFace model directories ---- */

static char *
join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = xmalloc(a + b + 2);
    snprintf(s, a + b + 2, "%s/%s", dir, name);
    return s;
}

static int
probe_hfdir(const Probe *p)
{
    if (!p->exists || !S_ISDIR(p->sb.st_mode))
        return 0;
    char *c = join(p->path, "config.json");
    int ok = access(c, R_OK) == 0;
    free(c);
    return ok;
}

static int
info_hfdir(const char *path, char *err)
{
    char *cfg = join(path, "config.json");
    json_error_t je;
    json_t *j = json_load_file(cfg, 0, &je);
    if (!j) {
        int rc = ps_seterr(err, PS_EFORMAT, "%s: %s (line %d)", cfg, je.text, je.line);
        free(cfg);
        return rc;
    }
    free(cfg);
    const char *type = json_string_value(json_object_get(j, "model_type"));
    json_t *arch = json_object_get(j, "architectures");
    printf("%s: HuggingFace model directory", path);
    if (type)
        printf(", model_type %s", type);
    if (json_is_array(arch) && json_is_string(json_array_get(arch, 0)))
        printf(", %s", json_string_value(json_array_get(arch, 0)));
    printf("\n");
    json_decref(j);
    static const char *files[] = { "model.safetensors", "pytorch_model.bin", "vocab.json",
                                   "merges.txt", "preprocessor_config.json", "tokenizer.json" };
    for (size_t i = 0; i < LEN(files); i++) {
        char *f = join(path, files[i]);
        struct stat sb;
        char hb[32] = "missing";
        if (stat(f, &sb) == 0)
            human((double)sb.st_size, hb, sizeof hb);
        printf("  %-25s %s\n", files[i], hb);
        free(f);
    }
    return PS_OK;
}

/* ---- datasets ---- */

static int
probe_dataset(const Probe *p)
{
    if (!strncmp(p->path, "fashion-mnist:", 14))
        return 1;
    if (!p->exists)
        return 0;
    if (S_ISDIR(p->sb.st_mode))
        return 1;
    const char *base = strrchr(p->path, '/');
    base = base ? base + 1 : p->path;
    size_t n = strlen(base);
    return (n >= 4 && !strcasecmp(base + n - 4, ".tsv")) || strstr(base, "idx3-ubyte");
}

static int
info_dataset(const char *path, char *err)
{
    Dataset ds;
    int rc = data_open(&ds, path, err);
    if (rc != PS_OK)
        return rc;
    printf("%s: dataset, %d items, %d classes", path, ds.n, ds.n_class);
    if (ds.gray)
        printf(", in-memory %dx%d grey images", ds.w, ds.h);
    printf("\n");
    int *count = xcalloc((size_t)ds.n_class + 1, sizeof *count);
    for (int i = 0; i < ds.n; i++)
        count[ds.items[i].label]++;
    int shown = MIN(ds.n_class, 20);
    for (int c = 0; c < shown; c++)
        printf("  %4d %-30s %d\n", c, ds.class_names[c], count[c]);
    if (shown < ds.n_class)
        printf("  ... %d more classes\n", ds.n_class - shown);
    free(count);
    data_close(&ds);
    return PS_OK;
}

/* ---- dispatch ---- */

static const struct {
    const char *what;
    int (*probe)(const Probe *p);
    int (*info)(const char *path, char *err);
} types[] = {
    { "safetensors file", probe_st, info_st },
    { "PyTorch checkpoint", probe_pt, info_pt },
    { "HuggingFace model directory", probe_hfdir, info_hfdir },
    { "dataset", probe_dataset, info_dataset },
};

static int
info_one(const char *path, char *err)
{
    Probe p = { .path = path };
    p.exists = stat(path, &p.sb) == 0;
    int serr = errno;
    if (p.exists && S_ISREG(p.sb.st_mode)) {
        FILE *f = fopen(path, "rb");
        if (!f)
            return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
        p.nhead = fread(p.head, 1, sizeof p.head, f);
        fclose(f);
    }
    for (size_t i = 0; i < LEN(types); i++)
        if (types[i].probe(&p))
            return types[i].info(path, err);
    if (!p.exists)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(serr));
    return ps_seterr(err, PS_EUSAGE, "%s: unknown file type (expected a .safetensors file, a "
                     "PyTorch checkpoint, a model directory or a dataset; see patchsae info --help)", path);
}

int
cmd_info(int argc, char **argv)
{
    int nfile = 0, nbad = 0;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "patchsae info: unknown option %s\n%s", argv[i], cmd_info_usage);
            return 2;
        }
    for (int i = 1; i < argc; i++) {
        char err[PS_ERRLEN] = "";
        nfile++;
        if (info_one(argv[i], err) != PS_OK) {
            fflush(stdout);
            fprintf(stderr, "patchsae info: %s\n", err);
            nbad++;
        }
    }
    if (nfile == 0) {
        fputs(cmd_info_usage, stderr);
        return 2;
    }
    return nbad == 0 ? 0 : nbad < nfile ? 1 : 2;
}
