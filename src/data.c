/* SPDX-License-Identifier: MIT */
/*
 * data.c - datasets (the contract is in data.h): the first stage of the
 * pipeline turns a dataset spec into a list of (image, label) items and the
 * class names.
 *
 * Image folders follow torchvision's ImageFolder exactly, so that label
 * indices agree with PyTorch code: classes are the sorted names of the
 * sub-directories (symlinks followed, hidden ones included, as os.scandir
 * sees them); within a class, every directory below it is visited in sorted
 * order of its path and its files in sorted order of their names (that is
 * `sorted(os.walk(dir, followlinks=True))`); a class without an image is an
 * error. Sorting is by bytes, which for UTF-8 names is Python's code-point
 * order. Item paths live in one string pool, not one malloc each.
 *
 * TSV manifests and class-name files are read whole and parsed line by line;
 * IDX files are read through zlib's gzread (which also reads uncompressed
 * files), validated (magic, element type, number of dims, sizes, no trailing
 * bytes) and kept in memory as (N, rows, cols) bytes. The buffer grows as the
 * data arrives, so a header that claims gigabytes costs nothing until the
 * bytes are really there. Every message names the file and the problem.
 */
#include "data.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <zlib.h>

#include "ps.h"

#define DATA_MAX_LABEL 10000000     /* integer labels above this are typos or hostile */
#define DATA_MAX_DEPTH 64           /* directory depth below a class (symlink loops) */
#define DATA_MAX_IDX ((size_t)1 << 36)
#define DATA_MAX_TEXT ((size_t)1 << 30)

const char *const data_fashion_mnist_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

static const char *const image_ext[] = { ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".webp" };

/* ---- small helpers ---- */

typedef struct Strs {
    char **v;
    int n, cap;
} Strs;

static void
strs_push(Strs *s, char *p)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = xrealloc(s->v, (size_t)s->cap * sizeof *s->v);
    }
    s->v[s->n++] = p;
}

static void
strs_free(Strs *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
strs_sort(Strs *s)
{
    if (s->n > 1)
        qsort(s->v, (size_t)s->n, sizeof *s->v, cmp_str);
}

static char *
join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = xmalloc(a + b + 2);
    memcpy(s, dir, a);
    s[a] = '/';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

static int
ends_with_ci(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    if (b > a)
        return 0;
    for (size_t i = 0; i < b; i++)
        if (tolower((unsigned char)s[a - b + i]) != tolower((unsigned char)suf[i]))
            return 0;
    return 1;
}

static int
is_image_name(const char *name)
{
    for (size_t i = 0; i < LEN(image_ext); i++)
        if (ends_with_ci(name, image_ext[i]))
            return 1;
    return 0;
}

static char *
trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static int
all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* Items under construction: paths go into one pool, referenced by offset until done. */
typedef struct Build {
    size_t *off; /* (n) path offsets into pool */
    int *label;  /* (n) */
    int n, cap;
    char *pool;
    size_t plen, pcap;
} Build;

static int
build_add(Build *b, const char *dir, const char *name, int label, const char *src, char *err)
{
    if (b->n == INT_MAX - 1)
        return ps_seterr(err, PS_EFORMAT, "%s: more than %d items", src, INT_MAX - 1);
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->off = xrealloc(b->off, (size_t)b->cap * sizeof *b->off);
        b->label = xrealloc(b->label, (size_t)b->cap * sizeof *b->label);
    }
    size_t dl = dir ? strlen(dir) + 1 : 0, nl = strlen(name) + 1;
    while (b->plen + dl + nl > b->pcap) {
        b->pcap = b->pcap ? 2 * b->pcap : 1 << 16;
        b->pool = xrealloc(b->pool, b->pcap);
    }
    b->off[b->n] = b->plen;
    b->label[b->n] = label;
    b->n++;
    if (dir) {
        memcpy(b->pool + b->plen, dir, dl - 1);
        b->pool[b->plen + dl - 1] = '/';
        b->plen += dl;
    }
    memcpy(b->pool + b->plen, name, nl);
    b->plen += nl;
    return PS_OK;
}

/* Moves the built items into ds. */
static void
build_finish(Build *b, Dataset *ds)
{
    ds->n = b->n;
    ds->items = xcalloc((size_t)b->n + 1, sizeof *ds->items);
    ds->pool = b->pool;
    for (int i = 0; i < b->n; i++) {
        ds->items[i].path = b->pool + b->off[i];
        ds->items[i].gray = -1;
        ds->items[i].label = b->label[i];
    }
    free(b->off);
    free(b->label);
    memset(b, 0, sizeof *b);
}

static void
build_free(Build *b)
{
    free(b->off);
    free(b->label);
    free(b->pool);
    memset(b, 0, sizeof *b);
}

/* Class names "0".."n-1" for integer labels. */
static void
numeric_names(Dataset *ds, int n)
{
    ds->n_class = n;
    ds->class_names = xcalloc((size_t)n + 1, sizeof *ds->class_names);
    for (int i = 0; i < n; i++) {
        char b[16];
        snprintf(b, sizeof b, "%d", i);
        ds->class_names[i] = xstrdup(b);
    }
}

/* ---- image folders ---- */

/* Sorted names of the entries of dir: sub-directories (symlinks followed) and everything else. */
static int
list_dir(const char *dir, Strs *dirs, Strs *files, char *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ps_seterr(err, PS_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *full = join(dir, e->d_name);
        struct stat sb;
        int isdir = stat(full, &sb) == 0 && S_ISDIR(sb.st_mode);
        free(full);
        strs_push(isdir ? dirs : files, xstrdup(e->d_name));
    }
    closedir(d);
    strs_sort(dirs);
    strs_sort(files);
    return PS_OK;
}

/* Appends dir and every directory below it (full paths) to out. */
static int
walk(const char *dir, int depth, Strs *out, char *err)
{
    if (depth > DATA_MAX_DEPTH)
        return ps_seterr(err, PS_EFORMAT, "%s: more than %d directories deep (a symlink loop?)",
                         dir, DATA_MAX_DEPTH);
    strs_push(out, xstrdup(dir));
    Strs dirs = { 0 }, files = { 0 };
    int rc = list_dir(dir, &dirs, &files, err);
    for (int i = 0; rc == PS_OK && i < dirs.n; i++) {
        char *sub = join(dir, dirs.v[i]);
        rc = walk(sub, depth + 1, out, err);
        free(sub);
    }
    strs_free(&dirs);
    strs_free(&files);
    return rc;
}

static int
open_folder(Dataset *ds, const char *spec, char *err)
{
    char *root = xstrdup(spec);
    for (size_t n = strlen(root); n > 1 && root[n - 1] == '/'; n--)
        root[n - 1] = 0;
    Strs classes = { 0 }, junk = { 0 };
    Build b = { 0 };
    int rc = list_dir(root, &classes, &junk, err);
    if (rc == PS_OK && classes.n == 0)
        rc = ps_seterr(err, PS_EFORMAT, "%s: no class folders (an image folder has one "
                       "sub-folder per class)", spec);
    for (int c = 0; rc == PS_OK && c < classes.n; c++) {
        char *cdir = join(root, classes.v[c]);
        Strs dirs = { 0 };
        rc = walk(cdir, 0, &dirs, err);
        strs_sort(&dirs);
        int before = b.n;
        for (int k = 0; rc == PS_OK && k < dirs.n; k++) {
            Strs sub = { 0 }, files = { 0 };
            rc = list_dir(dirs.v[k], &sub, &files, err);
            for (int i = 0; rc == PS_OK && i < files.n; i++)
                if (is_image_name(files.v[i]))
                    rc = build_add(&b, dirs.v[k], files.v[i], c, spec, err);
            strs_free(&sub);
            strs_free(&files);
        }
        if (rc == PS_OK && b.n == before)
            rc = ps_seterr(err, PS_EFORMAT, "%s: class folder %s has no image files "
                           "(.jpg .jpeg .png .bmp .gif .ppm .webp)", spec, classes.v[c]);
        strs_free(&dirs);
        free(cdir);
    }
    if (rc == PS_OK) {
        build_finish(&b, ds);
        ds->n_class = classes.n;
        ds->class_names = classes.v; /* the sorted folder names */
        ds->named = 1;
        memset(&classes, 0, sizeof classes);
    }
    build_free(&b);
    strs_free(&classes);
    strs_free(&junk);
    free(root);
    return rc;
}

/* ---- TSV manifests ---- */

static int
open_tsv(Dataset *ds, const char *path, char *err)
{
    char *buf;
    size_t len;
    int rc = ps_read_file(path, DATA_MAX_TEXT, &buf, &len, err);
    if (rc != PS_OK)
        return rc;
    if (memchr(buf, 0, len)) {
        free(buf);
        return ps_seterr(err, PS_EFORMAT, "%s: contains NUL bytes (not a text manifest)", path);
    }
    char *dir = NULL; /* relative paths are relative to the manifest's directory */
    const char *slash = strrchr(path, '/');
    if (slash) {
        dir = xstrdup(path);
        dir[slash == path ? 1 : slash - path] = 0;
    }
    Build b = { 0 };
    Strs lname = { 0 }; /* named labels, per item */
    int kind = 0;       /* 1 integer labels, 2 names */
    int maxlab = -1, ln = 0, first = 1;
    char *line = buf;
    while (rc == PS_OK && line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        ln++;
        char *s = line;
        line = nl ? nl + 1 : NULL;
        size_t sl = strlen(s);
        if (sl && s[sl - 1] == '\r')
            s[--sl] = 0;
        if (s[0] == '#' || strspn(s, " \t") == sl)
            continue;
        char *tab = strchr(s, '\t');
        if (!tab || strchr(tab + 1, '\t')) {
            rc = ps_seterr(err, PS_EFORMAT, "%s:%d: expected path<TAB>label", path, ln);
            break;
        }
        *tab = 0;
        char *p = s, *lab = trim(tab + 1);
        if (!*p || !*lab) {
            rc = ps_seterr(err, PS_EFORMAT, "%s:%d: empty %s", path, ln, *p ? "label" : "path");
            break;
        }
        if (first && !strcmp(p, "path") && !strcmp(lab, "label")) {
            first = 0; /* a header line */
            continue;
        }
        first = 0;
        int k = all_digits(lab) ? 1 : 2, label = 0;
        if (lab[0] == '-' && all_digits(lab + 1)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s:%d: negative label %s", path, ln, lab);
            break;
        }
        if (kind && k != kind) {
            rc = ps_seterr(err, PS_EFORMAT, "%s:%d: label \"%.100s\" is %s but earlier labels "
                           "are %s", path, ln, lab, k == 1 ? "an integer" : "a name",
                           kind == 1 ? "integers" : "names");
            break;
        }
        kind = k;
        if (k == 1) {
            errno = 0;
            long long v = strtoll(lab, NULL, 10);
            if (errno || v > DATA_MAX_LABEL) {
                rc = ps_seterr(err, PS_EFORMAT, "%s:%d: label %.40s too large (at most %d)", path,
                               ln, lab, DATA_MAX_LABEL);
                break;
            }
            label = (int)v;
            maxlab = MAX(maxlab, label);
        } else {
            strs_push(&lname, xstrdup(lab));
        }
        rc = build_add(&b, p[0] == '/' ? NULL : dir, p, label, path, err);
    }
    if (rc == PS_OK && b.n == 0)
        rc = ps_seterr(err, PS_EFORMAT, "%s: no items (expected path<TAB>label lines)", path);
    if (rc == PS_OK) {
        build_finish(&b, ds);
        if (kind == 1) {
            numeric_names(ds, maxlab + 1);
        } else { /* classes = sorted unique names, as ImageFolder sorts folders */
            char **u = xmalloc((size_t)lname.n * sizeof *u);
            memcpy(u, lname.v, (size_t)lname.n * sizeof *u);
            qsort(u, (size_t)lname.n, sizeof *u, cmp_str);
            int nu = 0;
            for (int i = 0; i < lname.n; i++)
                if (nu == 0 || strcmp(u[nu - 1], u[i]))
                    u[nu++] = u[i];
            ds->n_class = nu;
            ds->class_names = xcalloc((size_t)nu + 1, sizeof *ds->class_names);
            for (int i = 0; i < nu; i++)
                ds->class_names[i] = xstrdup(u[i]);
            for (int i = 0; i < ds->n; i++) {
                char **hit = bsearch(&lname.v[i], ds->class_names, (size_t)nu, sizeof *u, cmp_str);
                PS_ASSERT(hit);
                ds->items[i].label = (int)(hit - ds->class_names);
            }
            ds->named = 1;
            free(u);
        }
    }
    build_free(&b);
    strs_free(&lname);
    free(dir);
    free(buf);
    return rc;
}

/* ---- IDX ---- */

static int
gz_fail(gzFile g, const char *path, char *err)
{
    int e;
    const char *m = gzerror(g, &e);
    if (e == Z_ERRNO)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    return ps_seterr(err, PS_EFORMAT, "%s: %s", path, m && *m ? m : "read error");
}

/*
 * Reads an IDX file of unsigned bytes with nd dims into *data (malloc'd,
 * product of dims bytes). dims get the sizes.
 */
static int
read_idx(const char *path, int nd, uint32_t *dims, uint8_t **data, char *err)
{
    *data = NULL;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return ps_seterr(err, PS_EIO, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    unsigned char h[4 + 4 * 3];
    int hl = 4 + 4 * nd, rc = PS_OK;
    uint8_t *buf = NULL;
    int r = gzread(g, h, (unsigned)hl);
    if (r < 0) {
        rc = gz_fail(g, path, err);
        goto out;
    }
    if (r < 4 || h[0] || h[1]) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: bad magic (not an IDX file)", path);
        goto out;
    }
    if (h[2] != 0x08) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: IDX element type 0x%02x (only unsigned bytes, 0x08, "
                       "are supported)", path, h[2]);
        goto out;
    }
    if (h[3] != nd) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: IDX file with %d dimensions, expected %d", path, h[3],
                       nd);
        goto out;
    }
    if (r < hl) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: truncated IDX header", path);
        goto out;
    }
    size_t total = 1;
    for (int i = 0; i < nd; i++) {
        const unsigned char *p = h + 4 + 4 * i;
        dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (ps_mul(total, dims[i], &total) != 0 || total > DATA_MAX_IDX) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: IDX sizes too large", path);
            goto out;
        }
    }
    size_t cap = MIN(total, (size_t)16 << 20), got = 0;
    buf = ps_try_malloc(cap, err);
    if (!buf) {
        rc = ps_preferr(err, PS_ENOMEM, "%s", path);
        goto out;
    }
    while (got < total) {
        if (got == cap) {
            cap = MIN(total, 2 * cap);
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory (%zu bytes)", path, cap);
                goto out;
            }
            buf = nb;
        }
        size_t want = MIN(cap - got, (size_t)1 << 30);
        r = gzread(g, buf + got, (unsigned)want);
        if (r < 0) {
            rc = gz_fail(g, path, err);
            goto out;
        }
        if (r == 0) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: truncated: %zu of %zu data bytes", path, got,
                           total);
            goto out;
        }
        got += (size_t)r;
    }
    unsigned char extra;
    int zerr;
    r = gzread(g, &extra, 1);
    if (r > 0)
        rc = ps_seterr(err, PS_EFORMAT, "%s: trailing bytes after %zu data bytes", path, total);
    else if (r < 0 || (gzerror(g, &zerr), zerr != Z_OK)) /* Z_BUF_ERROR: gzip trailer cut off */
        rc = gz_fail(g, path, err);
out:
    gzclose(g);
    if (rc != PS_OK)
        free(buf);
    else
        *data = buf;
    return rc;
}

/* X-images-idx3-ubyte[.gz] -> X-labels-idx1-ubyte[.gz] (also "images.idx3-ubyte"); NULL if no match. */
static char *
labels_path(const char *images)
{
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    const char *m = strstr(base, "images-idx3-ubyte");
    if (!m)
        m = strstr(base, "images.idx3-ubyte");
    if (!m)
        return NULL;
    char *s = xstrdup(images);
    size_t at = (size_t)(m - images);
    memcpy(s + at, "labels", 6);
    memcpy(s + at + 7, "idx1", 4);
    return s;
}

static int
open_idx(Dataset *ds, const char *images, int fashion, char *err)
{
    char *lpath = labels_path(images);
    if (!lpath)
        return ps_seterr(err, PS_EUSAGE, "%s: cannot tell where its labels are (expected a name "
                         "like X-images-idx3-ubyte[.gz] with X-labels-idx1-ubyte[.gz] beside it)",
                         images);
    uint32_t id[3], ld[1];
    uint8_t *pix = NULL, *lab = NULL;
    int rc = read_idx(images, 3, id, &pix, err);
    if (rc == PS_OK)
        rc = read_idx(lpath, 1, ld, &lab, err);
    if (rc == PS_OK && (id[1] == 0 || id[2] == 0 || id[1] > 65535 || id[2] > 65535))
        rc = ps_seterr(err, PS_EFORMAT, "%s: images of %ux%u pixels", images, id[2], id[1]);
    if (rc == PS_OK && id[0] > INT_MAX - 1)
        rc = ps_seterr(err, PS_EFORMAT, "%s: %u images (too many)", images, id[0]);
    if (rc == PS_OK && id[0] != ld[0])
        rc = ps_seterr(err, PS_EFORMAT, "%s: %u labels for %u images in %s", lpath, ld[0], id[0],
                       images);
    int maxlab = -1;
    for (uint32_t i = 0; rc == PS_OK && i < ld[0]; i++)
        maxlab = MAX(maxlab, lab[i]);
    if (rc == PS_OK && fashion && maxlab > 9)
        rc = ps_seterr(err, PS_EFORMAT, "%s: label %d in Fashion-MNIST (10 classes)", lpath, maxlab);
    if (rc == PS_OK && maxlab < 0)
        rc = ps_seterr(err, PS_EFORMAT, "%s: no images", images);
    if (rc == PS_OK) {
        ds->n = (int)id[0];
        ds->h = (int)id[1];
        ds->w = (int)id[2];
        ds->gray = pix;
        pix = NULL;
        ds->items = xcalloc((size_t)ds->n + 1, sizeof *ds->items);
        for (int i = 0; i < ds->n; i++) {
            ds->items[i].gray = i;
            ds->items[i].label = lab[i];
        }
        if (fashion) {
            ds->n_class = 10;
            ds->class_names = xcalloc(11, sizeof *ds->class_names);
            for (int i = 0; i < 10; i++)
                ds->class_names[i] = xstrdup(data_fashion_mnist_classes[i]);
        } else {
            numeric_names(ds, maxlab + 1);
        }
    }
    free(pix);
    free(lab);
    free(lpath);
    return rc;
}

/* ---- the public entry points ---- */

/*
 * Opens a dataset (see data.h for the kinds of spec). ds is always
 * initialised: filled on PS_OK, zeroed on failure.
 */
int
data_open(Dataset *ds, const char *spec, char *err)
{
    memset(ds, 0, sizeof *ds);
    int rc;
    if (!strncmp(spec, "fashion-mnist:", 14)) {
        const char *split = spec + 14, *pre = !strcmp(split, "train") ? "train"
                                              : !strcmp(split, "test") ? "t10k" : NULL;
        if (!pre)
            return ps_seterr(err, PS_EUSAGE, "%s: unknown split (fashion-mnist:train or "
                             "fashion-mnist:test)", spec);
        char path[512];
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", DATA_FASHION_MNIST_DIR, pre);
        rc = open_idx(ds, path, 1, err);
        if (rc == PS_EIO)
            ps_preferr(err, rc, "%s (install Debian's dataset-fashion-mnist)", spec);
    } else {
        struct stat sb;
        if (stat(spec, &sb) != 0)
            return ps_seterr(err, PS_EIO, "%s: %s", spec, strerror(errno));
        const char *base = strrchr(spec, '/');
        base = base ? base + 1 : spec;
        if (S_ISDIR(sb.st_mode))
            rc = open_folder(ds, spec, err);
        else if (ends_with_ci(base, ".tsv"))
            rc = open_tsv(ds, spec, err);
        else if (strstr(base, "idx3-ubyte"))
            rc = open_idx(ds, spec, 0, err);
        else
            return ps_seterr(err, PS_EUSAGE, "%s: not a dataset (expected a directory of class "
                             "folders, a .tsv manifest, an X-images-idx3-ubyte[.gz] file or "
                             "fashion-mnist:train|test)", spec);
    }
    if (rc != PS_OK) {
        data_close(ds);
        return rc;
    }
    ds->spec = xstrdup(spec);
    return PS_OK;
}

void
data_close(Dataset *ds)
{
    if (!ds)
        return;
    for (int i = 0; i < ds->n_class; i++)
        free(ds->class_names[i]);
    free(ds->class_names);
    free(ds->items);
    free(ds->gray);
    free(ds->pool);
    free(ds->spec);
    memset(ds, 0, sizeof *ds);
}

const char *
data_item_path(const Dataset *ds, int i)
{
    PS_ASSERT(i >= 0 && i < ds->n);
    return ds->items[i].path;
}

int
data_item_gray(const Dataset *ds, int i, const uint8_t **pix, int *w, int *h)
{
    PS_ASSERT(i >= 0 && i < ds->n);
    int g = ds->items[i].gray;
    if (g < 0 || !ds->gray)
        return PS_EUSAGE;
    *pix = ds->gray + (size_t)g * (size_t)ds->w * (size_t)ds->h;
    *w = ds->w;
    *h = ds->h;
    return PS_OK;
}

const char *
data_item_name(const Dataset *ds, int i, char *buf, size_t n)
{
    PS_ASSERT(i >= 0 && i < ds->n);
    if (ds->items[i].path)
        snprintf(buf, n, "%s", ds->items[i].path);
    else
        snprintf(buf, n, "%s#%d", ds->spec ? ds->spec : "", i);
    return buf;
}

/* ---- class-name files ---- */

typedef struct KeyName {
    long long key;
    char *name;
} KeyName;

static int
cmp_key(const void *a, const void *b)
{
    const KeyName *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

static int
names_json(const char *path, const char *buf, size_t len, Strs *names, char *err)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return ps_seterr(err, PS_EFORMAT, "%s: bad JSON: %.200s (line %d)", path, je.text, je.line);
    int rc = PS_OK;
    size_t n = json_object_size(root);
    KeyName *kn = xcalloc(n + 1, sizeof *kn);
    size_t k = 0;
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: not a JSON object {\"1\": \"name\", ...}", path);
        goto out;
    }
    json_object_foreach(root, key, v) {
        if (!all_digits(key) || strlen(key) > 9) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: key \"%.100s\" is not an integer", path, key);
            goto out;
        }
        if (!json_is_string(v)) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: value of key %s is not a string", path, key);
            goto out;
        }
        kn[k].key = atoll(key);
        kn[k].name = (char *)json_string_value(v);
        k++;
    }
    if (k == 0) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: no class names", path);
        goto out;
    }
    qsort(kn, k, sizeof *kn, cmp_key);
    for (size_t i = 0; i < k; i++)
        if (kn[i].key != kn[0].key + (long long)i || kn[0].key > 1) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: keys are not consecutive integers from 0 or 1 "
                           "(key %lld)", path, kn[i].key);
            goto out;
        }
    for (size_t i = 0; i < k; i++)
        strs_push(names, xstrdup(kn[i].name));
out:
    free(kn);
    json_decref(root);
    return rc;
}

static int
is_wnid_line(const char *s)
{
    if (s[0] != 'n')
        return 0;
    for (int i = 1; i <= 8; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return s[9] == ' ' || s[9] == '\t';
}

/* Reads names (and wnids when the file has them; wnids may be NULL). */
static int
read_names(const char *path, Strs *names, Strs *wnids, char *err)
{
    char *buf;
    size_t len;
    int rc = ps_read_file(path, DATA_MAX_TEXT, &buf, &len, err);
    if (rc != PS_OK)
        return rc;
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (memchr(buf, 0, len)) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: contains NUL bytes (not a class-name file)", path);
    } else if (*s == '{') {
        rc = names_json(path, buf, len, names, err);
    } else {
        int wnid = is_wnid_line(s), ln = 0;
        char *line = buf;
        while (rc == PS_OK && line && *line) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = 0;
            ln++;
            char *t = trim(line);
            line = nl ? nl + 1 : NULL;
            if (!*t)
                continue;
            if (wnid) {
                if (!is_wnid_line(t) || !*trim(t + 10)) {
                    rc = ps_seterr(err, PS_EFORMAT, "%s:%d: expected \"nXXXXXXXX name\" like the "
                                   "first line", path, ln);
                    break;
                }
                t[9] = 0;
                if (wnids)
                    strs_push(wnids, xstrdup(t));
                t = trim(t + 10);
            }
            strs_push(names, xstrdup(t));
        }
        if (rc == PS_OK && names->n == 0)
            rc = ps_seterr(err, PS_EFORMAT, "%s: no class names", path);
    }
    free(buf);
    if (rc != PS_OK) {
        strs_free(names);
        if (wnids)
            strs_free(wnids);
    }
    return rc;
}

int
data_read_classnames(const char *path, char ***names, int *n, char *err)
{
    Strs s = { 0 };
    *names = NULL;
    *n = 0;
    int rc = read_names(path, &s, NULL, err);
    if (rc == PS_OK) {
        *names = s.v;
        *n = s.n;
    }
    return rc;
}

void
data_free_classnames(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int
data_set_classnames(Dataset *ds, const char *path, char *err)
{
    Strs names = { 0 }, wnids = { 0 };
    int rc = read_names(path, &names, &wnids, err);
    if (rc != PS_OK)
        return rc;
    int *map = xcalloc((size_t)ds->n_class + 1, sizeof *map);
    for (int c = 0; c < ds->n_class && rc == PS_OK; c++) {
        if (!ds->named) {
            if (c >= names.n)
                rc = ps_seterr(err, PS_EFORMAT, "%s: %d class names, but %s has label %d", path,
                               names.n, ds->spec ? ds->spec : "the dataset", ds->n_class - 1);
            map[c] = c;
            continue;
        }
        map[c] = -1;
        for (int j = 0; j < names.n && map[c] < 0; j++)
            if (!strcmp(ds->class_names[c], names.v[j]) ||
                (j < wnids.n && !strcmp(ds->class_names[c], wnids.v[j])))
                map[c] = j;
        if (map[c] < 0)
            rc = ps_seterr(err, PS_EFORMAT, "%s: no class named \"%.100s\" (a class of %s)", path,
                           ds->class_names[c], ds->spec ? ds->spec : "the dataset");
    }
    if (rc == PS_OK) {
        for (int i = 0; i < ds->n; i++)
            ds->items[i].label = map[ds->items[i].label];
        for (int c = 0; c < ds->n_class; c++)
            free(ds->class_names[c]);
        free(ds->class_names);
        ds->class_names = names.v;
        ds->n_class = names.n;
        memset(&names, 0, sizeof names);
    }
    free(map);
    strs_free(&names);
    strs_free(&wnids);
    return rc;
}

/* ---- shards ---- */

int
data_parse_shard(const char *s, int *i, int *n, char *err)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = -1;
    if (end != s && *end == '/' && isdigit((unsigned char)end[1]) && isdigit((unsigned char)*s)) {
        const char *q = end + 1;
        b = strtol(q, &end, 10);
    }
    if (errno || *end || b < 1 || b > 1000000 || a < 0 || a >= b)
        return ps_seterr(err, PS_EUSAGE, "--shard %s: expected i/n with 0 <= i < n", s);
    *i = (int)a;
    *n = (int)b;
    return PS_OK;
}

void
data_shard_range(int n_items, int i, int n, int *begin, int *end)
{
    PS_ASSERT(n >= 1 && i >= 0 && i < n && n_items >= 0);
    *begin = (int)((int64_t)n_items * i / n);
    *end = (int)((int64_t)n_items * (i + 1) / n);
}
