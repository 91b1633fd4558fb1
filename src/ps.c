/* SPDX-License-Identifier: MIT */
/*
 * ps.c - the shared basics declared in ps.h: error messages, asserts, the
 * allocation helpers, the huge-page arena and half-precision conversion.
 */
#include "ps.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

int
ps_seterr(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PS_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

int
ps_preferr(char *err, int code, const char *fmt, ...)
{
    if (err) {
        char old[PS_ERRLEN], pre[PS_ERRLEN];
        snprintf(old, sizeof old, "%s", err);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pre, sizeof pre, fmt, ap);
        va_end(ap);
        snprintf(err, PS_ERRLEN, "%.200s: %.300s", pre, old);
    }
    return code;
}

const char *
ps_strcode(int code)
{
    switch (code) {
    case PS_OK: return "PS_OK";
    case PS_EIO: return "PS_EIO";
    case PS_EFORMAT: return "PS_EFORMAT";
    case PS_ENOMEM: return "PS_ENOMEM";
    case PS_ESHAPE: return "PS_ESHAPE";
    case PS_EDB: return "PS_EDB";
    case PS_EUSAGE: return "PS_EUSAGE";
    case PS_EREFUSED: return "PS_EREFUSED";
    case PS_ECANCEL: return "PS_ECANCEL";
    }
    return "PS_E?";
}

void
ps_abort(const char *file, int line, const char *expr)
{
    fflush(stdout);
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}

void
die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("patchsae: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

void *
xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, m);
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

char *
xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

int
ps_mul(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int
ps_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return -1;
    *out = a + b;
    return 0;
}

int
ps_numel(const int64_t *shape, int nd, size_t elem, size_t limit, size_t *out, char *err)
{
    size_t n = elem;
    for (int i = 0; i < nd; i++) {
        if (shape[i] < 0)
            return ps_seterr(err, PS_EFORMAT, "negative dimension %lld", (long long)shape[i]);
        if (ps_mul(n, (size_t)shape[i], &n) != 0 || (uint64_t)shape[i] > SIZE_MAX)
            return ps_seterr(err, PS_ENOMEM, "shape too large (size overflows)");
    }
    if (n > limit)
        return ps_seterr(err, PS_ENOMEM, "shape too large (%zu bytes, limit %zu)", n, limit);
    *out = n;
    return PS_OK;
}

void *
ps_try_malloc(size_t n, char *err)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        ps_seterr(err, PS_ENOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *
ps_big_alloc(size_t n)
{
    if (n == 0)
        n = 1;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (n >= (2u << 20))
        madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

void
ps_big_free(void *p, size_t n)
{
    if (p)
        munmap(p, n ? n : 1);
}

int
ps_arena_init(Arena *a, size_t cap, char *err)
{
    memset(a, 0, sizeof *a);
    a->base = ps_big_alloc(cap);
    if (!a->base)
        return ps_seterr(err, PS_ENOMEM, "cannot map a %zu-byte scratch arena", cap);
    a->cap = cap;
    return PS_OK;
}

void *
ps_arena_alloc(Arena *a, size_t n)
{
    size_t off = (a->used + 63) & ~(size_t)63;
    PS_ASSERT(off <= a->cap && n <= a->cap - off);
    a->used = off + n;
    return a->base + off;
}

void
ps_arena_reset(Arena *a)
{
    a->used = 0;
}

void
ps_arena_free(Arena *a)
{
    if (!a)
        return;
    ps_big_free(a->base, a->cap);
    memset(a, 0, sizeof *a);
}

float
ps_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float
ps_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t
ps_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

uint16_t
ps_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (a < 0x33000000u)
            return (uint16_t)sign;
        uint32_t e = a >> 23, man = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((a >> 13) - (112u << 10));
    uint32_t rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

int
ps_read_file(const char *path, size_t limit, char **out, size_t *n, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > limit) {
                free(buf);
                fclose(f);
                return ps_seterr(err, PS_EFORMAT, "%s: larger than %zu bytes", path, limit);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return ps_seterr(err, PS_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - 1 - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ps_seterr(err, PS_EIO, "%s: read error", path);
    }
    if (len > limit) {
        free(buf);
        return ps_seterr(err, PS_EFORMAT, "%s: larger than %zu bytes", path, limit);
    }
    buf[len] = 0;
    *out = buf;
    if (n)
        *n = len;
    return PS_OK;
}

int
ps_check_output(const char *path, char *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return ps_seterr(err, PS_EUSAGE,
                         "%s: exists and is not a regular file; refusing to replace it", path);
    return PS_OK;
}

double
ps_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
