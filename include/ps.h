/* SPDX-License-Identifier: MIT */
/*
 * ps.h - what every patchsae module shares: result codes and the caller's
 * message buffer, programmer-error asserts, allocation helpers (dying ones for
 * bookkeeping, checked ones for sizes read from files, huge-page ones for the
 * big reusable buffers), a bump arena for scratch, and half-precision
 * conversion.
 *
 * Conventions (house-style.md): a function that can fail for reasons outside
 * the program returns PS_OK or a negative PS_E* code and takes `char *err`
 * (PS_ERRLEN bytes, NULL allowed) as its last parameter. Invariants of our
 * own code are checked with PS_ASSERT, which aborts with file:line.
 */
#ifndef PS_PS_H
#define PS_PS_H

#include <stddef.h>
#include <stdint.h>

enum {
    PS_OK = 0,
    PS_EIO = -1,      /* file or OS error */
    PS_EFORMAT = -2,  /* malformed or hostile input */
    PS_ENOMEM = -3,   /* allocation failed or size overflow */
    PS_ESHAPE = -4,   /* tensor missing or of the wrong shape */
    PS_EDB = -5,      /* SQLite error */
    PS_EUSAGE = -6,   /* bad arguments from the user */
    PS_EREFUSED = -7, /* input refused on purpose (e.g. a pickle naming os.system) */
    PS_ECANCEL = -8,  /* interrupted by the user */
};

#define PS_ERRLEN 512

#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define PS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define PS_NORETURN __attribute__((noreturn))
#else
#define PS_PRINTF(f, a)
#define PS_NORETURN
#endif

/* Formats the message into err (if not NULL) and returns code. */
int ps_seterr(char *err, int code, const char *fmt, ...) PS_PRINTF(3, 4);
/* Prepends "prefix: " to the message already in err (if not NULL); returns code. */
int ps_preferr(char *err, int code, const char *fmt, ...) PS_PRINTF(3, 4);
/* Short name of a result code ("PS_EIO", ...). */
const char *ps_strcode(int code);

PS_NORETURN void ps_abort(const char *file, int line, const char *expr);
#define PS_ASSERT(c) ((c) ? (void)0 : ps_abort(__FILE__, __LINE__, #c))

/* Prints "patchsae: message" to stderr and exits with status 2. Only main/cmd code. */
PS_NORETURN void die(const char *fmt, ...) PS_PRINTF(1, 2);

/* Bookkeeping allocations: die on failure (sizes never come from files). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Overflow-checked size arithmetic: return 0 and set *out, or -1 on overflow. */
int ps_mul(size_t a, size_t b, size_t *out);
int ps_add(size_t a, size_t b, size_t *out);
/* Product of nd dims (each must be >= 0) times elem; PS_ENOMEM on overflow or above limit. */
int ps_numel(const int64_t *shape, int nd, size_t elem, size_t limit, size_t *out, char *err);

/* Allocation sized from file contents: NULL-and-PS_ENOMEM instead of dying. */
void *ps_try_malloc(size_t n, char *err);

/*
 * Big buffers (activations, SAE blocks, weights converted from F16): mmap'd,
 * advised MADV_HUGEPAGE (first touch of 4 KiB pages costs ~13 us here), and
 * meant to be allocated once and reused. Returns NULL on failure.
 */
void *ps_big_alloc(size_t n);
void ps_big_free(void *p, size_t n);

/*
 * Arena: one big buffer handed out in 64-byte aligned pieces; reset per batch,
 * freed once. Pieces are valid until the next ps_arena_reset or free.
 */
typedef struct Arena {
    unsigned char *base; /* ps_big_alloc'd */
    size_t cap, used;
} Arena;
int ps_arena_init(Arena *a, size_t cap, char *err);
void *ps_arena_alloc(Arena *a, size_t n); /* asserts that it fits */
void ps_arena_reset(Arena *a);
void ps_arena_free(Arena *a);

/* IEEE half and bfloat16 to float (exact). */
float ps_f16_to_f32(uint16_t h);
float ps_bf16_to_f32(uint16_t h);
uint16_t ps_f32_to_f16(float f); /* round to nearest even */
uint16_t ps_f32_to_bf16(float f);

/* Reads a whole file into a malloc'd buffer (NUL-terminated). limit caps the size. */
int ps_read_file(const char *path, size_t limit, char **out, size_t *n, char *err);

/*
 * Outputs are written to a temporary name and renamed over path. Renaming
 * over a device or a directory (e.g. `-o /dev/null` as root) would replace
 * it, so this refuses any existing path that is not a regular file
 * (PS_EUSAGE, message names the path).
 */
int ps_check_output(const char *path, char *err);

/* Monotonic clock in seconds. */
double ps_now(void);

#endif
