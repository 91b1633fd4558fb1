/* SPDX-License-Identifier: MIT */
/*
 * st.c - safetensors files (the contract is in st.h).
 *
 * Reader: the file is mmap'd read-only and its JSON header parsed with
 * jansson. Everything in the header is treated as hostile: sizes are
 * overflow-checked, every tensor must lie inside the data area with exactly
 * numel * dtype-size bytes, tensors must not overlap and names must be unique.
 * Any failure is PS_EFORMAT with "FILE: problem". Gaps between tensors and
 * bytes after the last one are accepted (they are harmless). Tensor views
 * point into the mapping; st_get_f32 hands out float32, zero-copy for aligned
 * F32 and otherwise through a converted copy that the StFile owns (allocated
 * with ps_big_alloc, freed at st_close). The host is assumed little-endian,
 * as the file is.
 *
 * Writer: tensors are laid out contiguously, largest element size first
 * (stable in the order they were added), so that every tensor is aligned to
 * its element size without gaps; HuggingFace's reader rejects gaps, so this
 * is the layout that keeps our files readable by `safetensors` in Python.
 * The header is padded with spaces to a multiple of 8 bytes, as HF does, so
 * the data area starts 8-aligned. Metadata goes first, under "__metadata__".
 * The file is written to PATH.tmp, fsync'd and renamed over PATH.
 */
#include "st.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ps.h"

#define ST_MAX_HEADER (100u << 20) /* as HF: a longer header is hostile */

typedef struct StName {
    const char *name;
    int i;
} StName;

struct StFile {
    char *path;                /* the name used in messages */
    const unsigned char *buf;  /* whole file (mapping or caller's buffer) */
    size_t size;
    void *map;                 /* mmap'd region or NULL (st_open_buf) */
    size_t map_size;
    size_t data_off;           /* 8 + header length */
    int n;
    StTensor *t;               /* (n) sorted by data offset */
    StName *by_name;           /* (n) names sorted, with their index into t */
    float **conv;              /* (n) converted float32 copies, or NULL */
    size_t *conv_size;         /* (n) their sizes in bytes */
    int n_meta;
    char **meta_key, **meta_val; /* (n_meta) in file order */
};

static const char *dtype_names[] = { "F32", "F16", "BF16", "F64", "I64",
                                     "I32", "I16", "I8",   "U8",  "BOOL" };
static const size_t dtype_sizes[] = { 4, 2, 2, 8, 8, 4, 2, 1, 1, 1 };

const char *
st_dtype_name(StDtype d)
{
    return (unsigned)d < LEN(dtype_names) ? dtype_names[d] : "?";
}

size_t
st_dtype_size(StDtype d)
{
    return (unsigned)d < LEN(dtype_sizes) ? dtype_sizes[d] : 0;
}

int
st_dtype_from_name(const char *s)
{
    for (size_t i = 0; i < LEN(dtype_names); i++)
        if (!strcmp(s, dtype_names[i]))
            return (int)i;
    return -1;
}

int64_t
st_numel(const StTensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->nd; i++)
        n *= t->shape[i];
    return n;
}

const char *
st_shape_str(const int64_t *shape, int nd, char *buf, size_t n)
{
    size_t len = 0;
    if (n == 0)
        return buf;
    buf[0] = 0;
    len += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < n)
        snprintf(buf + len, n - len, ")");
    return buf;
}

/* Frees everything but the struct's memory; safe on a partly built file. */
static void
release(StFile *f)
{
    for (int i = 0; i < f->n; i++) {
        free((char *)f->t[i].name);
        if (f->conv && f->conv[i])
            ps_big_free(f->conv[i], f->conv_size[i]);
    }
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->t);
    free(f->by_name);
    free(f->conv);
    free(f->conv_size);
    free(f->meta_key);
    free(f->meta_val);
    if (f->map)
        munmap(f->map, f->map_size);
    free(f->path);
}

void
st_close(StFile *f)
{
    if (!f)
        return;
    release(f);
    free(f);
}

static int
cmp_offset(const void *a, const void *b)
{
    const StTensor *x = a, *y = b;
    if (x->data != y->data)
        return (const char *)x->data < (const char *)y->data ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int
cmp_name(const void *a, const void *b)
{
    return strcmp(((const StName *)a)->name, ((const StName *)b)->name);
}

/* Reads a non-negative JSON integer into *v; 0 on success. */
static int
get_uint(const json_t *j, int64_t *v)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *v = (int64_t)json_integer_value(j);
    return 0;
}

static int
parse_meta(StFile *f, json_t *m, char *err)
{
    if (!json_is_object(m))
        return ps_seterr(err, PS_EFORMAT, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = json_object_size(m);
    f->meta_key = ps_try_malloc(n * sizeof *f->meta_key, err);
    f->meta_val = ps_try_malloc(n * sizeof *f->meta_val, err);
    if (!f->meta_key || !f->meta_val)
        return PS_ENOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return ps_seterr(err, PS_EFORMAT, "%s: __metadata__ value of \"%.100s\" is not a string",
                             f->path, k);
        f->meta_key[f->n_meta] = xstrdup(k);
        f->meta_val[f->n_meta] = xstrdup(json_string_value(v));
        f->n_meta++;
    }
    return PS_OK;
}

/* One header entry into f->t[f->n]. */
static int
parse_tensor(StFile *f, const char *name, json_t *v, size_t data_size, char *err)
{
    const char *p = f->path;
    if (!json_is_object(v))
        return ps_seterr(err, PS_EFORMAT, "%s: entry \"%.100s\" is not a JSON object", p, name);
    StTensor *t = &f->t[f->n];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    f->n++;

    json_t *dt = json_object_get(v, "dtype");
    if (!dt)
        return ps_seterr(err, PS_EFORMAT, "%s: tensor \"%.100s\" has no dtype", p, name);
    int d = json_is_string(dt) ? st_dtype_from_name(json_string_value(dt)) : -1;
    if (d < 0)
        return ps_seterr(err, PS_EFORMAT, "%s: tensor \"%.100s\" has an unknown dtype %.40s", p,
                         name, json_is_string(dt) ? json_string_value(dt) : "(not a string)");
    t->dtype = (StDtype)d;

    json_t *sh = json_object_get(v, "shape");
    if (!json_is_array(sh))
        return ps_seterr(err, PS_EFORMAT, "%s: tensor \"%.100s\": shape is not an array", p, name);
    if (json_array_size(sh) > ST_MAX_DIM)
        return ps_seterr(err, PS_EFORMAT, "%s: tensor \"%.100s\" has %zu dimensions (at most %d)",
                         p, name, json_array_size(sh), ST_MAX_DIM);
    t->nd = (int)json_array_size(sh);
    for (int i = 0; i < t->nd; i++)
        if (get_uint(json_array_get(sh, (size_t)i), &t->shape[i]) != 0)
            return ps_seterr(err, PS_EFORMAT,
                             "%s: tensor \"%.100s\": shape is not an array of non-negative integers",
                             p, name);
    size_t nbytes;
    char s[160];
    if (ps_numel(t->shape, t->nd, dtype_sizes[d], SIZE_MAX, &nbytes, NULL) != PS_OK)
        return ps_seterr(err, PS_EFORMAT, "%s: tensor \"%.100s\": shape %s of %s overflows", p,
                         name, st_shape_str(t->shape, t->nd, s, sizeof s), dtype_names[d]);

    json_t *off = json_object_get(v, "data_offsets");
    int64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 || get_uint(json_array_get(off, 0), &b) ||
        get_uint(json_array_get(off, 1), &e) || b > e)
        return ps_seterr(err, PS_EFORMAT,
                         "%s: tensor \"%.100s\": data_offsets is not [begin, end] with "
                         "0 <= begin <= end", p, name);
    if ((uint64_t)(e - b) != (uint64_t)nbytes)
        return ps_seterr(err, PS_EFORMAT,
                         "%s: tensor \"%.100s\": data_offsets [%lld, %lld] hold %llu bytes but "
                         "shape %s of %s needs %zu", p, name, (long long)b, (long long)e,
                         (unsigned long long)(e - b), st_shape_str(t->shape, t->nd, s, sizeof s),
                         dtype_names[d], nbytes);
    if ((uint64_t)e > data_size)
        return ps_seterr(err, PS_EFORMAT,
                         "%s: tensor \"%.100s\": data_offsets [%lld, %lld] past the end of the "
                         "data (%zu bytes)", p, name, (long long)b, (long long)e, data_size);
    t->data = f->buf + f->data_off + (size_t)b;
    t->nbytes = nbytes;
    return PS_OK;
}

static int
parse(StFile *f, char *err)
{
    const char *p = f->path;
    if (f->size < 8)
        return ps_seterr(err, PS_EFORMAT, "%s: %zu bytes, too short for a safetensors file", p,
                         f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->buf[i];
    if (hlen > ST_MAX_HEADER)
        return ps_seterr(err, PS_EFORMAT, "%s: header length %llu is absurd (more than %u bytes)",
                         p, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return ps_seterr(err, PS_EFORMAT, "%s: header length %llu past end of file (%zu bytes)", p,
                         (unsigned long long)hlen, f->size);
    f->data_off = 8 + (size_t)hlen;
    size_t data_size = f->size - f->data_off;

    json_error_t je;
    json_t *root = json_loadb((const char *)f->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (strstr(je.text, "duplicate"))
            return ps_seterr(err, PS_EFORMAT, "%s: duplicate name in header (%.200s)", p, je.text);
        return ps_seterr(err, PS_EFORMAT, "%s: bad JSON header: %.200s at byte %d", p, je.text,
                         je.position);
    }
    int rc = PS_OK;
    if (!json_is_object(root)) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: header is not a JSON object", p);
        goto out;
    }
    size_t cap = json_object_size(root);
    f->t = ps_try_malloc(cap * sizeof *f->t, err);
    if (!f->t) {
        rc = PS_ENOMEM;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__"))
            rc = parse_meta(f, v, err);
        else
            rc = parse_tensor(f, key, v, data_size, err);
        if (rc != PS_OK)
            goto out;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_offset);
    const StTensor *last = NULL; /* the tensor reaching furthest so far */
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->t[i];
        if (last && (const char *)t->data < (const char *)last->data + last->nbytes) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: tensors \"%.100s\" and \"%.100s\" overlap", p,
                           last->name, t->name);
            goto out;
        }
        if (!last || (const char *)t->data + t->nbytes > (const char *)last->data + last->nbytes)
            last = t;
    }
    f->by_name = ps_try_malloc((size_t)f->n * sizeof *f->by_name, err);
    f->conv = calloc((size_t)f->n + 1, sizeof *f->conv);
    f->conv_size = calloc((size_t)f->n + 1, sizeof *f->conv_size);
    if (!f->by_name || !f->conv || !f->conv_size) {
        rc = ps_seterr(err, PS_ENOMEM, "%s: out of memory for %d tensors", p, f->n);
        goto out;
    }
    for (int i = 0; i < f->n; i++)
        f->by_name[i] = (StName){ f->t[i].name, i };
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_name);
out:
    json_decref(root);
    return rc;
}

int
st_open_buf(StFile **out, const void *buf, size_t n, const char *name, char *err)
{
    *out = NULL;
    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(name);
    f->buf = buf;
    f->size = n;
    int rc = parse(f, err);
    if (rc != PS_OK) {
        st_close(f);
        return rc;
    }
    *out = f;
    return PS_OK;
}

int
st_open(StFile **out, const char *path, char *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ps_seterr(err, PS_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return ps_seterr(err, PS_ENOMEM, "%s: too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size >= 8) { /* mmap of 0 bytes fails; short files are rejected by parse */
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ps_seterr(err, PS_EIO, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd);
    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    f->map = map;
    f->map_size = size;
    static const unsigned char empty[1];
    f->buf = map ? map : empty;
    f->size = size;
    int rc = parse(f, err);
    if (rc != PS_OK) {
        st_close(f);
        return rc;
    }
    *out = f;
    return PS_OK;
}

const char *
st_path(const StFile *f)
{
    return f->path;
}

int
st_count(const StFile *f)
{
    return f->n;
}

const StTensor *
st_at(const StFile *f, int i)
{
    PS_ASSERT(i >= 0 && i < f->n);
    return &f->t[i];
}

static int
find_index(const StFile *f, const char *name)
{
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, f->by_name[mid].name);
        if (c == 0)
            return f->by_name[mid].i;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

const StTensor *
st_find(const StFile *f, const char *name)
{
    int i = find_index(f, name);
    return i < 0 ? NULL : &f->t[i];
}

const char *
st_meta(const StFile *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key))
            return f->meta_val[i];
    return NULL;
}

int
st_meta_count(const StFile *f)
{
    return f->n_meta;
}

const char *
st_meta_key(const StFile *f, int i)
{
    PS_ASSERT(i >= 0 && i < f->n_meta);
    return f->meta_key[i];
}

/*
 * The tensor as float32 (see st.h). Aligned F32 is returned in place; F16,
 * BF16, F64 and unaligned F32 are converted once into a copy cached in f.
 * Integer and BOOL tensors are PS_EFORMAT.
 */
int
st_get_f32(StFile *f, const char *name, int nd, const int64_t *shape, const float **out,
           char *err)
{
    char a[160], b[160];
    *out = NULL;
    int i = find_index(f, name);
    if (i < 0) {
        if (shape)
            return ps_seterr(err, PS_ESHAPE, "%s: tensor %s missing (expected shape %s)", f->path,
                             name, st_shape_str(shape, nd, b, sizeof b));
        return ps_seterr(err, PS_ESHAPE, "%s: tensor %s missing", f->path, name);
    }
    const StTensor *t = &f->t[i];
    if (shape && (t->nd != nd || memcmp(t->shape, shape, (size_t)nd * sizeof *shape) != 0))
        return ps_seterr(err, PS_ESHAPE, "%s: tensor %s has shape %s, expected %s", f->path, name,
                         st_shape_str(t->shape, t->nd, a, sizeof a),
                         st_shape_str(shape, nd, b, sizeof b));
    switch (t->dtype) {
    case ST_F32: case ST_F16: case ST_BF16: case ST_F64:
        break;
    default:
        return ps_seterr(err, PS_EFORMAT, "%s: tensor %s is %s, not a floating-point type",
                         f->path, name, st_dtype_name(t->dtype));
    }
    if (t->dtype == ST_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return PS_OK;
    }
    if (!f->conv[i]) {
        size_t n = t->nbytes / st_dtype_size(t->dtype), bytes;
        if (ps_mul(n, sizeof(float), &bytes) != 0)
            return ps_seterr(err, PS_ENOMEM, "%s: tensor %s too large to convert", f->path, name);
        float *dst = ps_big_alloc(bytes);
        if (!dst)
            return ps_seterr(err, PS_ENOMEM, "%s: out of memory converting tensor %s (%zu bytes)",
                             f->path, name, bytes);
        const unsigned char *src = t->data;
        switch (t->dtype) {
        case ST_F32:
            memcpy(dst, src, t->nbytes);
            break;
        case ST_F16:
            for (size_t k = 0; k < n; k++) {
                uint16_t h;
                memcpy(&h, src + 2 * k, 2);
                dst[k] = ps_f16_to_f32(h);
            }
            break;
        case ST_BF16:
            for (size_t k = 0; k < n; k++) {
                uint16_t h;
                memcpy(&h, src + 2 * k, 2);
                dst[k] = ps_bf16_to_f32(h);
            }
            break;
        default:
            for (size_t k = 0; k < n; k++) {
                double d;
                memcpy(&d, src + 8 * k, 8);
                dst[k] = (float)d;
            }
            break;
        }
        f->conv[i] = dst;
        f->conv_size[i] = bytes;
    }
    *out = f->conv[i];
    return PS_OK;
}

/* ---- writer ---- */

typedef struct WEnt {
    char *name;
    StDtype dtype;
    int nd;
    int64_t shape[ST_MAX_DIM];
    const void *data;
    size_t nbytes;
} WEnt;

struct StWriter {
    WEnt *e;
    int n, cap;
    char **mk, **mv;
    int nm, mcap;
};

StWriter *
st_writer_new(void)
{
    return xcalloc(1, sizeof(StWriter));
}

void
st_writer_free(StWriter *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->e);
    free(w->mk);
    free(w->mv);
    free(w);
}

/* Adds a tensor (data borrowed until st_writer_save returns). Names must be unique. */
void
st_writer_add(StWriter *w, const char *name, StDtype dtype, int nd, const int64_t *shape,
              const void *data)
{
    PS_ASSERT((unsigned)dtype < LEN(dtype_names));
    PS_ASSERT(nd >= 0 && nd <= ST_MAX_DIM);
    PS_ASSERT(strcmp(name, "__metadata__") != 0);
    for (int i = 0; i < w->n; i++)
        PS_ASSERT(strcmp(w->e[i].name, name) != 0);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->e = xrealloc(w->e, (size_t)w->cap * sizeof *w->e);
    }
    WEnt *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->nd = nd;
    if (nd)
        memcpy(e->shape, shape, (size_t)nd * sizeof *shape);
    PS_ASSERT(ps_numel(e->shape, nd, dtype_sizes[dtype], SIZE_MAX, &e->nbytes, NULL) == PS_OK);
    PS_ASSERT(data || e->nbytes == 0);
    e->data = data;
}

/* Sets metadata key to value (replacing an earlier value). */
void
st_writer_meta(StWriter *w, const char *key, const char *value)
{
    for (int i = 0; i < w->nm; i++)
        if (!strcmp(w->mk[i], key)) {
            free(w->mv[i]);
            w->mv[i] = xstrdup(value);
            return;
        }
    if (w->nm == w->mcap) {
        w->mcap = w->mcap ? 2 * w->mcap : 8;
        w->mk = xrealloc(w->mk, (size_t)w->mcap * sizeof *w->mk);
        w->mv = xrealloc(w->mv, (size_t)w->mcap * sizeof *w->mv);
    }
    w->mk[w->nm] = xstrdup(key);
    w->mv[w->nm] = xstrdup(value);
    w->nm++;
}

static int
write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The header as compact JSON, tensors in the order of order[]; NULL on bad UTF-8. */
static char *
make_header(const StWriter *w, const int *order, char *err, const char *path)
{
    json_t *root = json_object();
    if (w->nm) {
        json_t *m = json_object();
        for (int i = 0; i < w->nm; i++) {
            json_t *s = json_string(w->mv[i]);
            if (!s || json_object_set_new(m, w->mk[i], s) != 0) {
                json_decref(m);
                json_decref(root);
                ps_seterr(err, PS_EFORMAT, "%s: metadata \"%.100s\" is not valid UTF-8", path,
                          w->mk[i]);
                return NULL;
            }
        }
        json_object_set_new(root, "__metadata__", m);
    }
    size_t off = 0;
    for (int k = 0; k < w->n; k++) {
        const WEnt *e = &w->e[order[k]];
        json_t *t = json_object(), *sh = json_array();
        for (int i = 0; i < e->nd; i++)
            json_array_append_new(sh, json_integer(e->shape[i]));
        json_object_set_new(t, "dtype", json_string(dtype_names[e->dtype]));
        json_object_set_new(t, "shape", sh);
        json_object_set_new(t, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + e->nbytes)));
        if (json_object_set_new(root, e->name, t) != 0) {
            json_decref(root);
            ps_seterr(err, PS_EFORMAT, "%s: tensor name \"%.100s\" is not valid UTF-8", path,
                      e->name);
            return NULL;
        }
        off += e->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        ps_seterr(err, PS_ENOMEM, "%s: cannot format the header", path);
    return s;
}

/*
 * Writes the tensors and metadata to path (through path.tmp, fsync'd, then
 * renamed). On failure nothing is left at path.tmp and path is untouched.
 */
int
st_writer_save(StWriter *w, const char *path, char *err)
{
    int rc0 = ps_check_output(path, err);
    if (rc0)
        return rc0;
    int *order = xmalloc(((size_t)w->n + 1) * sizeof *order);
    int k = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2) /* largest elements first: natural alignment */
        for (int i = 0; i < w->n; i++)
            if (dtype_sizes[w->e[i].dtype] == sz)
                order[k++] = i;
    PS_ASSERT(k == w->n);
    char *hdr = make_header(w, order, err, path);
    if (!hdr) {
        free(order);
        return PS_EFORMAT;
    }
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)padded >> (8 * i));

    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = PS_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = ps_seterr(err, PS_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    static const char spaces[8] = "        ";
    int bad = write_all(fd, lenb, 8) || write_all(fd, hdr, hlen) ||
              write_all(fd, spaces, padded - hlen);
    for (int i = 0; i < w->n && !bad; i++)
        bad = write_all(fd, w->e[order[i]].data, w->e[order[i]].nbytes);
    if (!bad)
        bad = fsync(fd);
    if (bad) {
        rc = ps_seterr(err, PS_EIO, "%s: write: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        rc = ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    /* make the rename durable: fsync the directory (best effort) */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrdup(path) : xstrdup(".");
    if (slash)
        dir[slash == path ? 1 : slash - path] = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
out:
    free(tmp);
    free(hdr);
    free(order);
    return rc;
}
