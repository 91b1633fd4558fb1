/* SPDX-License-Identifier: MIT */
/*
 * pt.c - torch.save checkpoints without Python: the zip container (libzip,
 * from memory), the legacy stream format, and a restricted pickle machine.
 *
 * The machine interprets pickle protocols 0-5 opcode by opcode, but it never
 * imports or calls anything. GLOBAL yields an inert placeholder naming
 * "module.name"; a name that could run code (os.*, subprocess.*, builtins
 * other than a few data types, eval/exec/getattr/open/... anywhere, ...) is
 * refused at once with PS_EREFUSED, even if it is never called. REDUCE (a
 * call) is accepted only for an allowlist of data constructors: the torch
 * tensor/parameter rebuild functions, OrderedDict, set, torch.Size,
 * torch.device, copyreg._reconstructor, a few value types (slice, complex,
 * pathlib, datetime, numpy scalars...). NEWOBJ (cls.__new__, how protocol 2
 * pickles a dataclass) and BUILD on a placeholder just record the arguments
 * and the state, so PatchSAE's pickled ViTSAERunnerConfig loads as data.
 *
 * Tensors are views (dtype, shape, stride, offset) on storages named by
 * persistent ids ('storage', torch.FloatStorage, key, location, numel). The
 * extent of every view is checked against its storage when the pickle
 * rebuilds it; each storage is checked against its zip entry (or legacy
 * record) once the pickle is done, and read only when a tensor is first
 * asked for its data. Strided views are copied out contiguously on demand.
 *
 * Hostile input: every length is checked against the bytes left, the memo
 * index against the pickle size, the stack, the marks, the object count and
 * the nesting depth against fixed limits. All objects live in one list owned
 * by the PtFile, so shared and even cyclic references free cleanly.
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zip.h>

#include "ps.h"

#define MAX_STACK (1u << 22)      /* values on the pickle stack */
#define MAX_MARKS 4096            /* nested MARKs */
#define MAX_OBJECTS (1u << 23)    /* objects in one file */
#define MAX_MEMO (1u << 26)       /* memo index (also below the pickle's size) */
#define MAX_PICKLE ((size_t)1 << 30)  /* data.pkl size */
#define MAX_STORAGE ((size_t)1 << 40) /* bytes in one storage */
#define MAX_LINE 512              /* text opcodes (GLOBAL, INT, ...) */
#define MAX_BROADCAST (1u << 24) /* elements of a view larger than its storage */
#define ZIP_MAX_RATIO 1100        /* deflate cannot expand more than ~1032x */

static const unsigned char legacy_magic[] = {
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
};

struct PtStorage {
    PtFile *file;
    char *key;
    StDtype dtype;
    int64_t numel;      /* elements, from the persistent id */
    size_t nbytes;
    zip_int64_t zindex; /* zip: entry index */
    const unsigned char *data; /* loaded (zip: owned copy; legacy: view into the file) */
    unsigned char *owned;
    int located;        /* zip entry found / legacy record found */
};

struct PtFile {
    char *name;
    const unsigned char *buf; /* the whole file */
    size_t n;
    void *map;                /* pt_load's mmap, or NULL */
    zip_t *zip;
    char *prefix;             /* zip top directory */
    const char *format;
    PtObj *root;
    PtObj **objs;             /* every object, for pt_close */
    size_t nobj, capobj;
    PtStorage **stor;         /* every storage */
    size_t nstor, capstor;
    PtStorage **htab;         /* key -> storage, open addressing */
    size_t hcap;
};

typedef struct Out {
    char *b;
    size_t n, len;
} Out;

static void
out_put(Out *o, const char *s, size_t n)
{
    if (o->len + 1 >= o->n)
        return;
    size_t room = o->n - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->b + o->len, s, n);
    o->len += n;
    o->b[o->len] = 0;
}

static void
out_printf(Out *o, const char *fmt, ...) PS_PRINTF(2, 3);

static void
out_printf(Out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_put(o, tmp, MIN((size_t)n, sizeof tmp - 1));
}

/* ---- objects ---- */

static PtObj *
obj_new(PtFile *f, PtType type)
{
    if (f->nobj >= MAX_OBJECTS)
        return NULL;
    if (f->nobj == f->capobj) {
        f->capobj = f->capobj ? 2 * f->capobj : 256;
        f->objs = xrealloc(f->objs, f->capobj * sizeof *f->objs);
    }
    PtObj *o = xcalloc(1, sizeof *o);
    o->type = type;
    o->depth = 1;
    f->objs[f->nobj++] = o;
    return o;
}

static void
obj_free(PtObj *o)
{
    switch (o->type) {
    case PT_STR:
    case PT_BYTES:
        free(o->u.str.s);
        break;
    case PT_TUPLE:
    case PT_LIST:
    case PT_SET:
    case PT_DICT:
        free(o->u.seq.v);
        break;
    case PT_TENSOR:
        if (o->u.t) {
            free(o->u.t->contig);
            free(o->u.t->f32);
            free(o->u.t);
        }
        break;
    case PT_OBJECT:
        free(o->u.obj.name);
        break;
    default:
        break;
    }
    free(o);
}

static int
is_seq(const PtObj *o)
{
    return o && (o->type == PT_TUPLE || o->type == PT_LIST || o->type == PT_SET ||
                 o->type == PT_DICT);
}

static void
seq_push(PtObj *c, PtObj *item)
{
    if (c->u.seq.n == c->u.seq.cap) {
        c->u.seq.cap = c->u.seq.cap ? 2 * c->u.seq.cap : 4;
        c->u.seq.v = xrealloc(c->u.seq.v, c->u.seq.cap * sizeof *c->u.seq.v);
    }
    c->u.seq.v[c->u.seq.n++] = item;
}

/* ---- storages ---- */

static uint64_t
hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static PtStorage *
storage_find(PtFile *f, const char *key)
{
    if (!f->hcap)
        return NULL;
    for (size_t i = hash_str(key) & (f->hcap - 1);; i = (i + 1) & (f->hcap - 1)) {
        if (!f->htab[i])
            return NULL;
        if (!strcmp(f->htab[i]->key, key))
            return f->htab[i];
    }
}

static void
storage_insert(PtFile *f, PtStorage *s)
{
    if (2 * (f->nstor + 1) > f->hcap) {
        size_t ncap = f->hcap ? 2 * f->hcap : 64;
        PtStorage **nt = xcalloc(ncap, sizeof *nt);
        for (size_t k = 0; k < f->nstor; k++) {
            size_t i = hash_str(f->stor[k]->key) & (ncap - 1);
            while (nt[i])
                i = (i + 1) & (ncap - 1);
            nt[i] = f->stor[k];
        }
        free(f->htab);
        f->htab = nt;
        f->hcap = ncap;
    }
    if (f->nstor == f->capstor) {
        f->capstor = f->capstor ? 2 * f->capstor : 16;
        f->stor = xrealloc(f->stor, f->capstor * sizeof *f->stor);
    }
    f->stor[f->nstor++] = s;
    size_t i = hash_str(s->key) & (f->hcap - 1);
    while (f->htab[i])
        i = (i + 1) & (f->hcap - 1);
    f->htab[i] = s;
}

static const struct {
    const char *name;
    StDtype dtype;
} storage_types[] = {
    {"FloatStorage", ST_F32},  {"HalfStorage", ST_F16},   {"BFloat16Storage", ST_BF16},
    {"DoubleStorage", ST_F64}, {"LongStorage", ST_I64},   {"IntStorage", ST_I32},
    {"ShortStorage", ST_I16},  {"CharStorage", ST_I8},    {"ByteStorage", ST_U8},
    {"BoolStorage", ST_BOOL},  {"UntypedStorage", ST_U8},
};

/* "torch.FloatStorage" (or torch.cuda.FloatStorage) -> dtype; -1 if not a storage type. */
static int
storage_dtype(const char *name)
{
    const char *base;
    if (!strncmp(name, "torch.cuda.", 11))
        base = name + 11;
    else if (!strncmp(name, "torch.", 6))
        base = name + 6;
    else
        return -1;
    for (size_t i = 0; i < LEN(storage_types); i++)
        if (!strcmp(base, storage_types[i].name))
            return (int)storage_types[i].dtype;
    return -1;
}

static int
storage_load(PtStorage *s, char *err)
{
    PtFile *f = s->file;
    if (s->data || s->nbytes == 0) {
        if (!s->data)
            s->data = (const unsigned char *)"";
        return PS_OK;
    }
    if (!f->zip || !s->located)
        return ps_seterr(err, PS_EFORMAT, "%s: storage %s has no data", f->name, s->key);
    unsigned char *buf = ps_try_malloc(s->nbytes, err);
    if (!buf)
        return ps_preferr(err, PS_ENOMEM, "%s: storage %s", f->name, s->key);
    zip_file_t *zf = zip_fopen_index(f->zip, (zip_uint64_t)s->zindex, 0);
    if (!zf) {
        free(buf);
        return ps_seterr(err, PS_EFORMAT, "%s: storage %s: %s", f->name, s->key,
                         zip_strerror(f->zip));
    }
    size_t got = 0;
    while (got < s->nbytes) {
        zip_int64_t r = zip_fread(zf, buf + got, s->nbytes - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int bad = got < s->nbytes;
    char zmsg[128];
    snprintf(zmsg, sizeof zmsg, "%s", bad ? zip_file_strerror(zf) : "");
    zip_fclose(zf);
    if (bad) {
        free(buf);
        return ps_seterr(err, PS_EFORMAT, "%s: storage %s: read %zu of %zu bytes (%s)", f->name,
                         s->key, got, s->nbytes, zmsg);
    }
    s->owned = buf;
    s->data = buf;
    return PS_OK;
}

/* ---- the pickle machine ---- */

typedef struct Vm {
    PtFile *f;
    const char *what;              /* "data.pkl" etc., for messages */
    const unsigned char *start, *p, *end;
    int persid;                    /* 0: refused; 1: torch storages */
    PtObj **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    PtObj **memo;
    size_t memo_cap, memo_limit;
    size_t memo_count;             /* slots set (MEMOIZE's next index) */
    char *err;
} Vm;

#define VM_POS(vm) ((size_t)((vm)->p - (vm)->start))

static int
vm_fail(Vm *vm, int code, const char *fmt, ...) PS_PRINTF(3, 4);

static int
vm_fail(Vm *vm, int code, const char *fmt, ...)
{
    if (vm->err) {
        char msg[PS_ERRLEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ps_seterr(vm->err, code, "%.180s: %s at byte %zu: %.280s", vm->f->name, vm->what,
                  VM_POS(vm), msg);
    }
    return code;
}

static PtObj *
vm_new(Vm *vm, PtType type)
{
    PtObj *o = obj_new(vm->f, type);
    if (!o)
        vm_fail(vm, PS_ENOMEM, "more than %u objects", MAX_OBJECTS);
    return o;
}

static int
vm_push(Vm *vm, PtObj *o)
{
    if (!o)
        return PS_ENOMEM;
    if (vm->sn >= MAX_STACK)
        return vm_fail(vm, PS_EFORMAT, "pickle stack deeper than %u", MAX_STACK);
    if (vm->sn == vm->scap) {
        vm->scap = vm->scap ? 2 * vm->scap : 64;
        vm->stack = xrealloc(vm->stack, vm->scap * sizeof *vm->stack);
    }
    vm->stack[vm->sn++] = o;
    return PS_OK;
}

static size_t
vm_fence(const Vm *vm)
{
    return vm->mn ? vm->marks[vm->mn - 1] : 0;
}

static int
vm_pop(Vm *vm, PtObj **o)
{
    if (vm->sn <= vm_fence(vm))
        return vm_fail(vm, PS_EFORMAT, "stack underflow");
    *o = vm->stack[--vm->sn];
    return PS_OK;
}

static int
vm_top(Vm *vm, PtObj **o)
{
    if (vm->sn <= vm_fence(vm))
        return vm_fail(vm, PS_EFORMAT, "stack underflow");
    *o = vm->stack[vm->sn - 1];
    return PS_OK;
}

/* Pops everything above the last MARK: items at *base .. sn, then sn = *base. */
static int
vm_pop_mark(Vm *vm, size_t *base)
{
    if (!vm->mn)
        return vm_fail(vm, PS_EFORMAT, "no MARK on the stack");
    *base = vm->marks[--vm->mn];
    return PS_OK;
}

static int
vm_need(Vm *vm, size_t n)
{
    if ((size_t)(vm->end - vm->p) < n)
        return vm_fail(vm, PS_EFORMAT, "truncated (%zu bytes needed, %zu left)", n,
                       (size_t)(vm->end - vm->p));
    return PS_OK;
}

static uint64_t
rd_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A text line (protocol 0 operands): returns its length without the '\n'. */
static int
vm_line(Vm *vm, const char **s, size_t *len)
{
    const unsigned char *nl = memchr(vm->p, '\n', MIN((size_t)(vm->end - vm->p), MAX_LINE));
    if (!nl)
        return vm_fail(vm, PS_EFORMAT, "unterminated or over-long text operand");
    *s = (const char *)vm->p;
    *len = (size_t)(nl - vm->p);
    vm->p = nl + 1;
    return PS_OK;
}

/* Depth bookkeeping: parent gets deeper than child; too deep is an error. */
static int
vm_nest(Vm *vm, PtObj *parent, const PtObj *child)
{
    if (child && child->depth + 1 > parent->depth) {
        parent->depth = child->depth + 1;
        if (parent->depth > PT_MAX_DEPTH)
            return vm_fail(vm, PS_EFORMAT, "objects nested deeper than %d", PT_MAX_DEPTH);
    }
    return PS_OK;
}

static int
vm_add(Vm *vm, PtObj *c, PtObj *item)
{
    int rc = vm_nest(vm, c, item);
    if (rc)
        return rc;
    seq_push(c, item);
    return PS_OK;
}

static PtObj *
vm_int(Vm *vm, int64_t v)
{
    PtObj *o = vm_new(vm, PT_INT);
    if (o)
        o->u.i = v;
    return o;
}

static PtObj *
vm_str(Vm *vm, PtType type, const char *s, size_t n)
{
    PtObj *o = vm_new(vm, type);
    if (!o)
        return NULL;
    o->u.str.s = xmalloc(n + 1);
    memcpy(o->u.str.s, s, n);
    o->u.str.s[n] = 0;
    o->u.str.len = n;
    return o;
}

/* Tuple of the stack items base..sn (popped). */
static int
vm_tuple_from(Vm *vm, PtType type, size_t base)
{
    PtObj *t = vm_new(vm, type);
    if (!t)
        return PS_ENOMEM;
    for (size_t i = base; i < vm->sn; i++) {
        int rc = vm_add(vm, t, vm->stack[i]);
        if (rc)
            return rc;
    }
    vm->sn = base;
    return vm_push(vm, t);
}

static int
vm_memo_put(Vm *vm, uint64_t idx)
{
    PtObj *o = NULL;
    int rc = vm_top(vm, &o);
    if (rc)
        return rc;
    if (idx >= vm->memo_limit)
        return vm_fail(vm, PS_EFORMAT, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= vm->memo_cap) {
        size_t ncap = MAX(2 * vm->memo_cap, (size_t)idx + 1);
        ncap = MIN(MAX(ncap, 64), vm->memo_limit);
        vm->memo = xrealloc(vm->memo, ncap * sizeof *vm->memo);
        memset(vm->memo + vm->memo_cap, 0, (ncap - vm->memo_cap) * sizeof *vm->memo);
        vm->memo_cap = ncap;
    }
    if (!vm->memo[idx])
        vm->memo_count++;
    vm->memo[idx] = o;
    return PS_OK;
}

static int
vm_memo_get(Vm *vm, uint64_t idx)
{
    if (idx >= vm->memo_cap || !vm->memo[idx])
        return vm_fail(vm, PS_EFORMAT, "memo index %llu was never set", (unsigned long long)idx);
    return vm_push(vm, vm->memo[idx]);
}

/* Signed little-endian integer of n bytes (LONG1/LONG4). Beyond 64 bits it
 * becomes an approximate float: checkpoints never need more. */
static PtObj *
vm_long(Vm *vm, const unsigned char *b, size_t n)
{
    if (n <= 8) {
        uint64_t u = n ? rd_le(b, (int)n) : 0;
        if (n && n < 8 && (b[n - 1] & 0x80))
            u |= ~(uint64_t)0 << (8 * n);
        int64_t v;
        memcpy(&v, &u, sizeof v);
        return vm_int(vm, v);
    }
    int neg = b[n - 1] & 0x80;
    double v = 0;
    for (size_t i = n; i-- > 0;)
        v = v * 256.0 + (neg ? (double)(unsigned char)~b[i] : (double)b[i]);
    PtObj *o = vm_new(vm, PT_FLOAT);
    if (o)
        o->u.f = neg ? -(v + 1) : v;
    return o;
}

/* ---- the global policy ---- */

/* Modules that could run code, touch files, the network or the interpreter. */
static const char *const denied_modules[] = {
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "sys",
    "builtins", "__builtin__", "__builtins__", "importlib", "imp", "pkgutil", "zipimport",
    "shutil", "socket", "ssl", "select", "selectors", "pickle", "_pickle", "cPickle",
    "pickletools", "shelve", "dbm", "marshal", "runpy", "code", "codeop", "ctypes", "_ctypes",
    "cffi", "webbrowser", "pty", "tty", "termios", "fcntl", "resource", "mmap", "signal",
    "commands", "popen2", "platform", "multiprocessing", "concurrent", "threading", "_thread",
    "asyncio", "pdb", "bdb", "timeit", "trace", "profile", "cProfile", "tempfile", "io", "_io",
    "glob", "fileinput", "urllib", "urllib2", "urllib3", "http", "httplib", "ftplib",
    "smtplib", "telnetlib", "xmlrpc", "requests", "functools", "operator", "_operator",
    "types", "inspect", "gc", "copyreg", "copy_reg", "dill", "cloudpickle", "joblib",
    "setuptools", "distutils", "pip", "site", "sysconfig", "venv", "zipfile", "tarfile",
    "sqlite3", "pexpect", "paramiko", "torch.hub", "torch.jit", "torch._C", "torch.ops",
    "torch.utils.cpp_extension", "torch.cuda", "torch.serialization", "torch.package",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "yaml",
};

/* Names refused in any module (builtins and friends reached some other way). */
static const char *const denied_names[] = {
    "eval", "exec", "execfile", "compile", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "open", "input", "breakpoint", "apply", "load", "loads",
    "_load_from_bytes", "load_module", "import_module", "run", "call", "check_call",
    "check_output", "Popen", "getoutput", "getstatusoutput", "__reduce__", "__reduce_ex__",
    "__getattribute__", "__getattr__", "__setattr__", "__call__", "__init_subclass__",
    "__subclasses__", "__globals__", "__builtins__", "__code__", "attrgetter", "methodcaller",
};
static const char *const denied_name_prefixes[] = {"exec", "fork"};
static const char *const denied_name_parts[] = {"system", "popen", "spawn", "shell"};

/* The builtins that are plain data types (referenced by copyreg._reconstructor
 * or as set/frozenset/bytearray constructors). */
static const char *const builtin_types[] = {
    "object", "set", "frozenset", "slice", "complex", "bytearray", "bytes", "list", "dict",
    "tuple", "int", "float", "str", "bool", "range", "Ellipsis", "NotImplemented",
};

static int
in_module(const char *mod, const char *m)
{
    size_t n = strlen(m);
    return !strncmp(mod, m, n) && (mod[n] == 0 || mod[n] == '.');
}

static int
valid_ident(const char *s, size_t n, int dots)
{
    if (!n || n > 200)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (dots && c == '.')))
            return 0;
    }
    return 1;
}

/* Why module.name is refused, or NULL when it may be referenced. */
static const char *
global_denied(const char *mod, const char *name)
{
    int builtin = !strcmp(mod, "builtins") || !strcmp(mod, "__builtin__");
    if (builtin) {
        for (size_t i = 0; i < LEN(builtin_types); i++)
            if (!strcmp(name, builtin_types[i]))
                return NULL;
        return "a builtin that is not a plain data type";
    }
    if ((!strcmp(mod, "copyreg") || !strcmp(mod, "copy_reg")) &&
        (!strcmp(name, "_reconstructor") || !strcmp(name, "__newobj__") ||
         !strcmp(name, "__newobj_ex__")))
        return NULL;
    for (size_t i = 0; i < LEN(denied_modules); i++)
        if (in_module(mod, denied_modules[i]))
            return "its module can run code or touch the system";
    /* every dotted component of the qualified name */
    for (const char *c = name; *c;) {
        size_t n = strcspn(c, ".");
        for (size_t i = 0; i < LEN(denied_names); i++)
            if (strlen(denied_names[i]) == n && !strncmp(c, denied_names[i], n))
                return "the name can run code";
        for (size_t i = 0; i < LEN(denied_name_prefixes); i++) {
            size_t m = strlen(denied_name_prefixes[i]);
            if (n >= m && !strncmp(c, denied_name_prefixes[i], m))
                return "the name can run code";
        }
        for (size_t i = 0; i < LEN(denied_name_parts); i++) {
            size_t m = strlen(denied_name_parts[i]);
            for (size_t k = 0; k + m <= n; k++)
                if (!strncmp(c + k, denied_name_parts[i], m))
                    return "the name can run code";
        }
        c += n;
        if (*c == '.')
            c++;
    }
    return NULL;
}

static int
vm_global(Vm *vm, const char *mod, size_t nm, const char *name, size_t nn)
{
    if (!valid_ident(mod, nm, 1) || !valid_ident(name, nn, 1))
        return vm_fail(vm, PS_EFORMAT, "malformed global name");
    char full[420];
    snprintf(full, sizeof full, "%.*s.%.*s", (int)nm, mod, (int)nn, name);
    char m[210];
    snprintf(m, sizeof m, "%.*s", (int)nm, mod);
    const char *why = global_denied(m, full + nm + 1);
    if (why)
        return vm_fail(vm, PS_EREFUSED, "refusing global %s: %s (nothing was executed)", full,
                       why);
    PtObj *o = vm_new(vm, PT_OBJECT);
    if (!o)
        return PS_ENOMEM;
    o->u.obj.name = xstrdup(full);
    return vm_push(vm, o);
}

/* ---- calls: REDUCE on the allowlist ---- */

enum {
    K_NONE, K_TENSOR_V2, K_TENSOR, K_PARAM, K_FROM_TYPE, K_ODICT, K_DEFAULTDICT, K_SET,
    K_FROZENSET, K_SIZE, K_ENCODE, K_BYTEARRAY, K_RECONSTRUCT, K_NEWOBJ, K_DATA,
};

static const struct {
    const char *name;
    int kind;
} call_kinds[] = {
    {"torch._utils._rebuild_tensor_v2", K_TENSOR_V2},
    {"torch._utils._rebuild_tensor", K_TENSOR},
    {"torch._utils._rebuild_parameter", K_PARAM},
    {"torch._utils._rebuild_parameter_with_state", K_PARAM},
    {"torch._tensor._rebuild_from_type_v2", K_FROM_TYPE},
    {"torch._tensor._rebuild_from_type", K_FROM_TYPE},
    {"torch._utils._rebuild_from_type_v2", K_FROM_TYPE},
    {"collections.OrderedDict", K_ODICT},
    {"collections.defaultdict", K_DEFAULTDICT},
    {"builtins.set", K_SET}, {"__builtin__.set", K_SET},
    {"builtins.frozenset", K_FROZENSET}, {"__builtin__.frozenset", K_FROZENSET},
    {"torch.Size", K_SIZE},
    {"_codecs.encode", K_ENCODE},
    {"builtins.bytearray", K_BYTEARRAY}, {"__builtin__.bytearray", K_BYTEARRAY},
    {"copyreg._reconstructor", K_RECONSTRUCT}, {"copy_reg._reconstructor", K_RECONSTRUCT},
    {"copyreg.__newobj__", K_NEWOBJ}, {"copy_reg.__newobj__", K_NEWOBJ},
    /* value types that become inert instances recording their arguments */
    {"torch.device", K_DATA}, {"torch.dtype", K_DATA}, {"torch.layout", K_DATA},
    {"torch.memory_format", K_DATA},
    {"builtins.slice", K_DATA}, {"builtins.complex", K_DATA}, {"builtins.range", K_DATA},
    {"__builtin__.slice", K_DATA}, {"__builtin__.complex", K_DATA},
    {"pathlib.Path", K_DATA}, {"pathlib.PosixPath", K_DATA}, {"pathlib.WindowsPath", K_DATA},
    {"pathlib.PurePath", K_DATA}, {"pathlib.PurePosixPath", K_DATA},
    {"pathlib.PureWindowsPath", K_DATA},
    {"datetime.datetime", K_DATA}, {"datetime.date", K_DATA}, {"datetime.time", K_DATA},
    {"datetime.timedelta", K_DATA}, {"datetime.timezone", K_DATA},
    {"decimal.Decimal", K_DATA}, {"fractions.Fraction", K_DATA}, {"uuid.UUID", K_DATA},
    {"numpy.dtype", K_DATA}, {"numpy.ndarray", K_DATA},
    {"numpy.core.multiarray.scalar", K_DATA}, {"numpy.core.multiarray._reconstruct", K_DATA},
    {"numpy._core.multiarray.scalar", K_DATA}, {"numpy._core.multiarray._reconstruct", K_DATA},
};

static int
call_kind(const PtObj *g)
{
    if (!g || g->type != PT_OBJECT || g->u.obj.inst)
        return K_NONE;
    for (size_t i = 0; i < LEN(call_kinds); i++)
        if (!strcmp(g->u.obj.name, call_kinds[i].name))
            return call_kinds[i].kind;
    /* the other tensor rebuild functions (sparse, quantized, meta, ...) */
    if (!strncmp(g->u.obj.name, "torch._utils._rebuild_", 22))
        return K_DATA;
    return K_NONE;
}

static int
tuple_len(const PtObj *o)
{
    return o && o->type == PT_TUPLE ? (int)o->u.seq.n : -1;
}

static int
as_i64(const PtObj *o, int64_t *v)
{
    if (!o || (o->type != PT_INT && o->type != PT_BOOL))
        return 0;
    *v = o->u.i;
    return 1;
}

static PtObj *
vm_instance(Vm *vm, const PtObj *cls, PtObj *args, PtObj *kwargs)
{
    PtObj *o = vm_new(vm, PT_OBJECT);
    if (!o)
        return NULL;
    o->u.obj.name = xstrdup(cls->u.obj.name);
    o->u.obj.inst = 1;
    o->u.obj.args = args;
    o->u.obj.kwargs = kwargs;
    if (vm_nest(vm, o, args) || vm_nest(vm, o, kwargs))
        return NULL;
    return o;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int
vm_tensor(Vm *vm, const PtObj *args, PtObj **out)
{
    if (tuple_len(args) < 4)
        return vm_fail(vm, PS_EFORMAT, "tensor rebuild needs 4 or more arguments");
    PtObj *const *a = args->u.seq.v;
    if (a[0]->type != PT_STORAGE)
        return vm_fail(vm, PS_EFORMAT, "tensor rebuild without a storage");
    PtStorage *s = a[0]->u.storage;
    int64_t off;
    if (!as_i64(a[1], &off) || off < 0)
        return vm_fail(vm, PS_EFORMAT, "bad tensor storage offset");
    /* torch.Size arrives as a tuple */
    int nd = tuple_len(a[2]);
    if (nd < 0 || nd > PT_MAX_DIM || tuple_len(a[3]) != nd)
        return vm_fail(vm, PS_EFORMAT, "tensor size/stride are not tuples of one rank <= %d",
                       PT_MAX_DIM);
    PtTensor *t = xcalloc(1, sizeof *t);
    t->dtype = s->dtype;
    t->nd = nd;
    t->offset = off;
    t->storage = s;
    uint64_t numel = 1, last = (uint64_t)off; /* index of the last element touched */
    int empty = 0;
    for (int i = 0; i < nd; i++) {
        int64_t n, st;
        if (!as_i64(a[2]->u.seq.v[i], &n) || !as_i64(a[3]->u.seq.v[i], &st) || n < 0 || st < 0) {
            free(t);
            return vm_fail(vm, PS_EFORMAT, "bad tensor size or stride in dimension %d", i);
        }
        t->shape[i] = n;
        t->stride[i] = st;
        if (n == 0)
            empty = 1;
        size_t nn;
        if (ps_mul((size_t)numel, (size_t)n, &nn) || nn > (size_t)INT64_MAX) {
            free(t);
            return vm_fail(vm, PS_EFORMAT, "tensor size overflows");
        }
        numel = nn;
    }
    if (!empty) {
        for (int i = 0; i < nd; i++) {
            size_t ext, nl;
            if (ps_mul((size_t)(t->shape[i] - 1), (size_t)t->stride[i], &ext) ||
                ps_add((size_t)last, ext, &nl)) {
                free(t);
                return vm_fail(vm, PS_EFORMAT, "tensor extent overflows");
            }
            last = nl;
        }
        if (last >= (uint64_t)s->numel) {
            free(t);
            return vm_fail(vm, PS_EFORMAT,
                           "tensor view (offset %lld, last element %llu) past its storage %s "
                           "of %lld elements",
                           (long long)off, (unsigned long long)last, s->key,
                           (long long)s->numel);
        }
    }
    /* stride-0 (expanded) views may hold more elements than their storage; cap them */
    if (numel > (uint64_t)s->numel && numel > MAX_BROADCAST) {
        free(t);
        return vm_fail(vm, PS_EFORMAT, "expanded tensor view of %llu elements over %lld stored",
                       (unsigned long long)numel, (long long)s->numel);
    }
    t->numel = (size_t)numel;
    PtObj *o = vm_new(vm, PT_TENSOR);
    if (!o) {
        free(t);
        return PS_ENOMEM;
    }
    o->u.t = t;
    *out = o;
    return PS_OK;
}

static int vm_call(Vm *vm, PtObj *fn, PtObj *args, int nested, PtObj **out);

/* Items of an iterable argument (list/tuple/set) for set(), OrderedDict(), ... */
static int
vm_fill(Vm *vm, PtObj *dst, const PtObj *src, int pairs)
{
    if (!src || src->type == PT_NONE)
        return PS_OK;
    if (src->type == PT_DICT && pairs) {
        for (size_t i = 0; i < src->u.seq.n; i++) {
            int rc = vm_add(vm, dst, src->u.seq.v[i]);
            if (rc)
                return rc;
        }
        return PS_OK;
    }
    if (src->type != PT_LIST && src->type != PT_TUPLE && src->type != PT_SET)
        return vm_fail(vm, PS_EFORMAT, "constructor argument is not a sequence");
    for (size_t i = 0; i < src->u.seq.n; i++) {
        const PtObj *it = src->u.seq.v[i];
        if (pairs) {
            if (tuple_len(it) != 2 && !(it->type == PT_LIST && it->u.seq.n == 2))
                return vm_fail(vm, PS_EFORMAT, "dict constructor item is not a pair");
            int rc = vm_add(vm, dst, it->u.seq.v[0]);
            if (!rc)
                rc = vm_add(vm, dst, it->u.seq.v[1]);
            if (rc)
                return rc;
        } else {
            int rc = vm_add(vm, dst, (PtObj *)it);
            if (rc)
                return rc;
        }
    }
    return PS_OK;
}

/* Latin-1 text (a str holding code points < 256 as UTF-8) to bytes. */
static int
vm_latin1(Vm *vm, const PtObj *s, PtObj **out)
{
    PtObj *o = vm_new(vm, PT_BYTES);
    if (!o)
        return PS_ENOMEM;
    o->u.str.s = xmalloc(s->u.str.len + 1);
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s->u.str.s, *e = p + s->u.str.len;
    while (p < e) {
        if (*p < 0x80) {
            o->u.str.s[n++] = (char)*p++;
        } else if ((*p & 0xe0) == 0xc0 && *p <= 0xc3 && p + 1 < e) {
            o->u.str.s[n++] = (char)(((p[0] & 3) << 6) | (p[1] & 0x3f));
            p += 2;
        } else {
            return vm_fail(vm, PS_EFORMAT, "bytes encoded as text hold a non-latin-1 character");
        }
    }
    o->u.str.s[n] = 0;
    o->u.str.len = n;
    *out = o;
    return PS_OK;
}

/* fn(*args) for the allowlisted constructors; everything else is refused. */
static int
vm_call(Vm *vm, PtObj *fn, PtObj *args, int nested, PtObj **out)
{
    int kind = call_kind(fn);
    if (kind == K_NONE) {
        if (fn->type == PT_OBJECT)
            return vm_fail(vm, PS_EREFUSED,
                           "refusing to call %s%s: not an allowed data constructor (nothing "
                           "was executed)",
                           fn->u.obj.name, fn->u.obj.inst ? " (an instance)" : "");
        return vm_fail(vm, PS_EREFUSED, "refusing to call a non-global object");
    }
    if (args->type != PT_TUPLE)
        return vm_fail(vm, PS_EFORMAT, "call arguments are not a tuple");
    int na = (int)args->u.seq.n;
    PtObj *const *a = args->u.seq.v;
    PtObj *o;
    int rc;
    switch (kind) {
    case K_TENSOR_V2:
    case K_TENSOR:
        return vm_tensor(vm, args, out);
    case K_PARAM:
        if (na < 1 || a[0]->type != PT_TENSOR)
            return vm_fail(vm, PS_EFORMAT, "parameter rebuild without a tensor");
        *out = a[0];
        return PS_OK;
    case K_FROM_TYPE: /* (func, type, args, state): func(*args) */
        if (nested || na < 3 || a[2]->type != PT_TUPLE)
            return vm_fail(vm, PS_EFORMAT, "bad _rebuild_from_type arguments");
        if (call_kind(a[0]) != K_TENSOR_V2 && call_kind(a[0]) != K_TENSOR &&
            call_kind(a[0]) != K_PARAM)
            return vm_fail(vm, PS_EREFUSED, "_rebuild_from_type with a function that is not a "
                                            "tensor rebuild (nothing was executed)");
        return vm_call(vm, a[0], a[2], 1, out);
    case K_ODICT:
    case K_DEFAULTDICT:
        if (!(o = vm_new(vm, PT_DICT)))
            return PS_ENOMEM;
        if (kind == K_ODICT && na >= 1 && (rc = vm_fill(vm, o, a[0], 1)))
            return rc;
        *out = o;
        return PS_OK;
    case K_SET:
    case K_FROZENSET:
        if (!(o = vm_new(vm, PT_SET)))
            return PS_ENOMEM;
        if (na >= 1 && (rc = vm_fill(vm, o, a[0], 0)))
            return rc;
        *out = o;
        return PS_OK;
    case K_SIZE:
        if (!(o = vm_new(vm, PT_TUPLE)))
            return PS_ENOMEM;
        if (na >= 1 && (rc = vm_fill(vm, o, a[0], 0)))
            return rc;
        *out = o;
        return PS_OK;
    case K_ENCODE: /* _codecs.encode(str, "latin1"): protocol 2 bytes */
    case K_BYTEARRAY:
        if (na == 0 && kind == K_BYTEARRAY) {
            *out = vm_str(vm, PT_BYTES, "", 0);
            return *out ? PS_OK : PS_ENOMEM;
        }
        if (na >= 1 && a[0]->type == PT_BYTES) {
            *out = a[0];
            return PS_OK;
        }
        if (na != 2 || a[0]->type != PT_STR || a[1]->type != PT_STR ||
            (strcmp(a[1]->u.str.s, "latin1") && strcmp(a[1]->u.str.s, "latin-1")))
            return vm_fail(vm, PS_EFORMAT, "unsupported encode/bytearray arguments");
        return vm_latin1(vm, a[0], out);
    case K_RECONSTRUCT: /* (cls, base, state): an instance of cls */
        if (na != 3 || a[0]->type != PT_OBJECT || a[0]->u.obj.inst)
            return vm_fail(vm, PS_EFORMAT, "bad copyreg._reconstructor arguments");
        *out = vm_instance(vm, a[0], a[2]->type == PT_NONE ? NULL : a[2], NULL);
        return *out ? PS_OK : PS_EFORMAT;
    case K_NEWOBJ: /* (cls, *args) */
        if (na < 1 || a[0]->type != PT_OBJECT || a[0]->u.obj.inst)
            return vm_fail(vm, PS_EFORMAT, "bad copyreg.__newobj__ arguments");
        *out = vm_instance(vm, a[0], args, NULL);
        return *out ? PS_OK : PS_EFORMAT;
    case K_DATA:
        *out = vm_instance(vm, fn, args, NULL);
        return *out ? PS_OK : PS_EFORMAT;
    }
    return vm_fail(vm, PS_EFORMAT, "internal: unknown call kind");
}

/* NEWOBJ / NEWOBJ_EX: cls.__new__(cls, *args) records an inert instance. */
static int
vm_newobj(Vm *vm, PtObj *cls, PtObj *args, PtObj *kwargs)
{
    if (cls->type != PT_OBJECT || cls->u.obj.inst)
        return vm_fail(vm, PS_EREFUSED, "NEWOBJ on something that is not a class");
    if (args->type != PT_TUPLE)
        return vm_fail(vm, PS_EFORMAT, "NEWOBJ arguments are not a tuple");
    int kind = call_kind(cls);
    PtObj *o;
    if (kind == K_ODICT || kind == K_DEFAULTDICT)
        o = vm_new(vm, PT_DICT);
    else if (kind == K_SET || kind == K_FROZENSET)
        o = vm_new(vm, PT_SET);
    else
        o = vm_instance(vm, cls, args->u.seq.n ? args : NULL, kwargs);
    return o ? vm_push(vm, o) : PS_EFORMAT;
}

static int
vm_build(Vm *vm)
{
    PtObj *state, *o;
    int rc = vm_pop(vm, &state);
    if (!rc)
        rc = vm_top(vm, &o);
    if (rc)
        return rc;
    if (o->type == PT_OBJECT && o->u.obj.inst) {
        o->u.obj.state = state;
        return vm_nest(vm, o, state);
    }
    /* an OrderedDict's attributes (state_dict._metadata), a tensor subclass's state */
    if (o->type == PT_DICT || o->type == PT_TENSOR || o->type == PT_SET)
        return PS_OK;
    return vm_fail(vm, PS_EFORMAT, "BUILD on a value that has no state");
}

/* Container for SETITEM(S)/APPEND(S): a dict/list, or a placeholder instance's items. */
static int
vm_target(Vm *vm, PtObj *o, PtType want, PtObj **c)
{
    if (o->type == want || (want == PT_LIST && o->type == PT_SET)) {
        *c = o;
        return PS_OK;
    }
    if (o->type == PT_OBJECT && o->u.obj.inst) {
        if (!o->u.obj.items) {
            if (!(o->u.obj.items = vm_new(vm, want)))
                return PS_ENOMEM;
        } else if (o->u.obj.items->type != want) {
            return vm_fail(vm, PS_EFORMAT, "both items and pairs added to one object");
        }
        *c = o->u.obj.items;
        return PS_OK;
    }
    return vm_fail(vm, PS_EFORMAT, "%s on a value that is not a %s",
                   want == PT_DICT ? "SETITEM" : "APPEND", want == PT_DICT ? "dict" : "list");
}

static int
vm_setitems(Vm *vm, size_t base)
{
    if ((vm->sn - base) % 2)
        return vm_fail(vm, PS_EFORMAT, "odd number of items for SETITEMS");
    if (base == 0 || base <= vm_fence(vm))
        return vm_fail(vm, PS_EFORMAT, "stack underflow");
    PtObj *d, *holder = vm->stack[base - 1];
    int rc = vm_target(vm, holder, PT_DICT, &d);
    for (size_t i = base; !rc && i < vm->sn; i++)
        rc = vm_add(vm, d, vm->stack[i]);
    if (!rc && d != holder)
        rc = vm_nest(vm, holder, d);
    vm->sn = base;
    return rc;
}

static int
vm_appends(Vm *vm, size_t base, PtType want)
{
    if (base == 0 || base <= vm_fence(vm))
        return vm_fail(vm, PS_EFORMAT, "stack underflow");
    PtObj *l, *holder = vm->stack[base - 1];
    int rc;
    if (want == PT_SET) {
        if (holder->type != PT_SET)
            return vm_fail(vm, PS_EFORMAT, "ADDITEMS on a value that is not a set");
        l = holder;
        rc = PS_OK;
    } else {
        rc = vm_target(vm, holder, PT_LIST, &l);
    }
    for (size_t i = base; !rc && i < vm->sn; i++)
        rc = vm_add(vm, l, vm->stack[i]);
    if (!rc && l != holder)
        rc = vm_nest(vm, holder, l);
    vm->sn = base;
    return rc;
}

/* ('storage', storage_type, key, location, numel[, view_metadata]) */
static int
vm_persid(Vm *vm, PtObj *pid)
{
    if (!vm->persid)
        return vm_fail(vm, PS_EFORMAT, "persistent id where none is expected");
    int n = tuple_len(pid);
    if (n < 1 || pid->u.seq.v[0]->type != PT_STR)
        return vm_fail(vm, PS_EFORMAT, "persistent id is not a tagged tuple");
    PtObj *const *a = pid->u.seq.v;
    if (!strcmp(a[0]->u.str.s, "module") && n >= 2) /* legacy: a module's source, ignored */
        return vm_push(vm, a[1]);
    if (strcmp(a[0]->u.str.s, "storage") || (n != 5 && n != 6))
        return vm_fail(vm, PS_EFORMAT, "unknown persistent id");
    if (n == 6 && a[5]->type != PT_NONE)
        return vm_fail(vm, PS_EFORMAT, "storage views (pre-1.0 files) are not supported");
    int dt = a[1]->type == PT_OBJECT && !a[1]->u.obj.inst ? storage_dtype(a[1]->u.obj.name) : -1;
    if (dt < 0)
        return vm_fail(vm, PS_EFORMAT, "persistent id names an unsupported storage type %s",
                       a[1]->type == PT_OBJECT ? a[1]->u.obj.name : "(not a global)");
    const PtObj *key = a[2];
    int64_t numel;
    if (key->type != PT_STR || !valid_ident(key->u.str.s, key->u.str.len, 0))
        return vm_fail(vm, PS_EFORMAT, "bad storage key");
    if (!as_i64(a[4], &numel) || numel < 0)
        return vm_fail(vm, PS_EFORMAT, "bad storage size");
    size_t nbytes;
    if (ps_mul((size_t)numel, st_dtype_size((StDtype)dt), &nbytes) || nbytes > MAX_STORAGE)
        return vm_fail(vm, PS_EFORMAT, "storage %s of %lld elements is too large", key->u.str.s,
                       (long long)numel);
    PtStorage *s = storage_find(vm->f, key->u.str.s);
    if (s) {
        if (s->dtype != (StDtype)dt || s->numel != numel)
            return vm_fail(vm, PS_EFORMAT, "storage %s named twice with different types or sizes",
                           key->u.str.s);
    } else {
        s = xcalloc(1, sizeof *s);
        s->file = vm->f;
        s->key = xstrdup(key->u.str.s);
        s->dtype = (StDtype)dt;
        s->numel = numel;
        s->nbytes = nbytes;
        storage_insert(vm->f, s);
    }
    PtObj *o = vm_new(vm, PT_STORAGE);
    if (!o)
        return PS_ENOMEM;
    o->u.storage = s;
    return vm_push(vm, o);
}

/* Runs one pickle from p; *used is how many bytes it took (through STOP). */
static int
vm_run(PtFile *f, const unsigned char *p, size_t n, int persid, const char *what, PtObj **out,
       size_t *used, char *err)
{
    Vm vm = {.f = f, .what = what, .start = p, .p = p, .end = p + n, .persid = persid, .err = err};
    vm.memo_limit = MIN(n + 1, (size_t)MAX_MEMO);
    int rc = PS_OK, stop = 0;
    while (!rc && !stop) {
        if (vm.p >= vm.end) {
            rc = vm_fail(&vm, PS_EFORMAT, "truncated pickle (no STOP)");
            break;
        }
        unsigned op = *vm.p++;
        PtObj *o = NULL, *o2 = NULL;
        size_t base = 0, len = 0;
        uint64_t u;
        const char *s = NULL, *s2 = NULL;
        switch (op) {
        case 0x80: /* PROTO */
            if (!(rc = vm_need(&vm, 1)) && *vm.p++ > 5)
                rc = vm_fail(&vm, PS_EFORMAT, "unsupported pickle protocol %u", vm.p[-1]);
            break;
        case 0x95: /* FRAME: a length hint, checked and ignored */
            if (!(rc = vm_need(&vm, 8))) {
                u = rd_le(vm.p, 8);
                vm.p += 8;
                if (u > (uint64_t)(vm.end - vm.p))
                    rc = vm_fail(&vm, PS_EFORMAT, "frame of %llu bytes past the end",
                                 (unsigned long long)u);
            }
            break;
        case '.': /* STOP */
            if ((rc = vm_pop(&vm, &o)))
                break;
            if (vm.sn || vm.mn) {
                rc = vm_fail(&vm, PS_EFORMAT, "values left on the stack at STOP");
                break;
            }
            *out = o;
            stop = 1;
            break;
        case '(': /* MARK */
            if (vm.mn >= MAX_MARKS) {
                rc = vm_fail(&vm, PS_EFORMAT, "MARKs nested deeper than %d", MAX_MARKS);
                break;
            }
            if (vm.mn == vm.mcap) {
                vm.mcap = vm.mcap ? 2 * vm.mcap : 16;
                vm.marks = xrealloc(vm.marks, vm.mcap * sizeof *vm.marks);
            }
            vm.marks[vm.mn++] = vm.sn;
            break;
        case '0': /* POP */
            if (vm.sn > vm_fence(&vm))
                vm.sn--;
            else if (vm.mn && vm.marks[vm.mn - 1] == vm.sn)
                vm.mn--; /* pops the mark itself, as CPython does */
            else
                rc = vm_fail(&vm, PS_EFORMAT, "stack underflow");
            break;
        case '1': /* POP_MARK */
            if (!(rc = vm_pop_mark(&vm, &base)))
                vm.sn = base;
            break;
        case '2': /* DUP */
            if (!(rc = vm_top(&vm, &o)))
                rc = vm_push(&vm, o);
            break;
        case 'N':
            rc = vm_push(&vm, vm_new(&vm, PT_NONE));
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if ((o = vm_new(&vm, PT_BOOL)))
                o->u.i = op == 0x88;
            rc = vm_push(&vm, o);
            break;
        case 'J': /* BININT */
            if (!(rc = vm_need(&vm, 4))) {
                rc = vm_push(&vm, vm_int(&vm, (int32_t)(uint32_t)rd_le(vm.p, 4)));
                vm.p += 4;
            }
            break;
        case 'K': /* BININT1 */
            if (!(rc = vm_need(&vm, 1)))
                rc = vm_push(&vm, vm_int(&vm, *vm.p++));
            break;
        case 'M': /* BININT2 */
            if (!(rc = vm_need(&vm, 2))) {
                rc = vm_push(&vm, vm_int(&vm, (int64_t)rd_le(vm.p, 2)));
                vm.p += 2;
            }
            break;
        case 0x8a: /* LONG1 */
        case 0x8b: /* LONG4 */
            if ((rc = vm_need(&vm, op == 0x8a ? 1 : 4)))
                break;
            u = op == 0x8a ? *vm.p : rd_le(vm.p, 4);
            vm.p += op == 0x8a ? 1 : 4;
            if (op == 0x8b && (u & 0x80000000u))
                rc = vm_fail(&vm, PS_EFORMAT, "negative LONG4 length");
            else if (!(rc = vm_need(&vm, (size_t)u))) {
                rc = vm_push(&vm, vm_long(&vm, vm.p, (size_t)u));
                vm.p += u;
            }
            break;
        case 'I': /* INT text (I01/I00 are bools) */
        case 'L': /* LONG text */
            if ((rc = vm_line(&vm, &s, &len)))
                break;
            {
                char tmp[MAX_LINE + 1], *endp;
                memcpy(tmp, s, len);
                tmp[len] = 0;
                if (len && tmp[len - 1] == 'L')
                    tmp[len - 1] = 0;
                if (op == 'I' && (!strcmp(tmp, "01") || !strcmp(tmp, "00"))) {
                    if ((o = vm_new(&vm, PT_BOOL)))
                        o->u.i = tmp[1] == '1';
                    rc = vm_push(&vm, o);
                    break;
                }
                errno = 0;
                long long v = strtoll(tmp, &endp, 10);
                if (!tmp[0] || *endp || errno)
                    rc = vm_fail(&vm, PS_EFORMAT, "bad text integer");
                else
                    rc = vm_push(&vm, vm_int(&vm, v));
            }
            break;
        case 'F': /* FLOAT text */
            if ((rc = vm_line(&vm, &s, &len)))
                break;
            {
                char tmp[MAX_LINE + 1], *endp;
                memcpy(tmp, s, len);
                tmp[len] = 0;
                double v = strtod(tmp, &endp);
                if (!tmp[0] || *endp) {
                    rc = vm_fail(&vm, PS_EFORMAT, "bad text float");
                    break;
                }
                if ((o = vm_new(&vm, PT_FLOAT)))
                    o->u.f = v;
                rc = vm_push(&vm, o);
            }
            break;
        case 'G': /* BINFLOAT, big-endian */
            if (!(rc = vm_need(&vm, 8))) {
                u = 0;
                for (int i = 0; i < 8; i++)
                    u = (u << 8) | vm.p[i];
                vm.p += 8;
                if ((o = vm_new(&vm, PT_FLOAT)))
                    memcpy(&o->u.f, &u, 8);
                rc = vm_push(&vm, o);
            }
            break;
        case 'X':  /* BINUNICODE */
        case 0x8c: /* SHORT_BINUNICODE */
        case 0x8d: /* BINUNICODE8 */
        case 'B':  /* BINBYTES */
        case 'C':  /* SHORT_BINBYTES */
        case 0x8e: /* BINBYTES8 */
        case 0x96: /* BYTEARRAY8 */
        case 'T':  /* BINSTRING (Python 2 str) */
        case 'U':  /* SHORT_BINSTRING */
        {
            int w = (op == 0x8c || op == 'C' || op == 'U') ? 1 : (op == 0x8d || op == 0x8e ||
                                                                  op == 0x96) ? 8 : 4;
            if ((rc = vm_need(&vm, (size_t)w)))
                break;
            u = rd_le(vm.p, w);
            vm.p += w;
            if (op == 'T' && (u & 0x80000000u)) {
                rc = vm_fail(&vm, PS_EFORMAT, "negative BINSTRING length");
                break;
            }
            if ((rc = vm_need(&vm, u)))
                break;
            int text = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
            rc = vm_push(&vm, vm_str(&vm, text ? PT_STR : PT_BYTES, (const char *)vm.p, u));
            vm.p += u;
            break;
        }
        case 'V': /* UNICODE text (raw-unicode-escape): ASCII only here */
            if ((rc = vm_line(&vm, &s, &len)))
                break;
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] >= 0x80 || s[i] == '\\')
                    rc = vm_fail(&vm, PS_EFORMAT, "escaped text UNICODE is not supported");
            if (!rc)
                rc = vm_push(&vm, vm_str(&vm, PT_STR, s, len));
            break;
        case ')': /* EMPTY_TUPLE */
            rc = vm_push(&vm, vm_new(&vm, PT_TUPLE));
            break;
        case 't': /* TUPLE */
            if (!(rc = vm_pop_mark(&vm, &base)))
                rc = vm_tuple_from(&vm, PT_TUPLE, base);
            break;
        case 0x85: /* TUPLE1..3 */
        case 0x86:
        case 0x87:
            len = op - 0x84;
            if (vm.sn < vm_fence(&vm) + len)
                rc = vm_fail(&vm, PS_EFORMAT, "stack underflow");
            else
                rc = vm_tuple_from(&vm, PT_TUPLE, vm.sn - len);
            break;
        case ']': /* EMPTY_LIST */
            rc = vm_push(&vm, vm_new(&vm, PT_LIST));
            break;
        case 'l': /* LIST */
            if (!(rc = vm_pop_mark(&vm, &base)))
                rc = vm_tuple_from(&vm, PT_LIST, base);
            break;
        case 'a': /* APPEND */
            if (!(rc = vm_pop(&vm, &o)) && !(rc = vm_push(&vm, o)))
                rc = vm_appends(&vm, vm.sn - 1, PT_LIST);
            break;
        case 'e': /* APPENDS */
            if (!(rc = vm_pop_mark(&vm, &base)))
                rc = vm_appends(&vm, base, PT_LIST);
            break;
        case '}': /* EMPTY_DICT */
            rc = vm_push(&vm, vm_new(&vm, PT_DICT));
            break;
        case 'd': /* DICT */
            if ((rc = vm_pop_mark(&vm, &base)))
                break;
            if ((vm.sn - base) % 2) {
                rc = vm_fail(&vm, PS_EFORMAT, "odd number of items for DICT");
                break;
            }
            rc = vm_tuple_from(&vm, PT_DICT, base);
            break;
        case 's': /* SETITEM */
            if (vm.sn < vm_fence(&vm) + 3)
                rc = vm_fail(&vm, PS_EFORMAT, "stack underflow");
            else
                rc = vm_setitems(&vm, vm.sn - 2);
            break;
        case 'u': /* SETITEMS */
            if (!(rc = vm_pop_mark(&vm, &base)))
                rc = vm_setitems(&vm, base);
            break;
        case 0x8f: /* EMPTY_SET */
            rc = vm_push(&vm, vm_new(&vm, PT_SET));
            break;
        case 0x90: /* ADDITEMS */
            if (!(rc = vm_pop_mark(&vm, &base)))
                rc = vm_appends(&vm, base, PT_SET);
            break;
        case 0x91: /* FROZENSET */
            if (!(rc = vm_pop_mark(&vm, &base)))
                rc = vm_tuple_from(&vm, PT_SET, base);
            break;
        case 'c': /* GLOBAL module\nname\n */
            if (!(rc = vm_line(&vm, &s, &len)) && !(rc = vm_line(&vm, &s2, &base)))
                rc = vm_global(&vm, s, len, s2, base);
            break;
        case 0x93: /* STACK_GLOBAL */
            if ((rc = vm_pop(&vm, &o2)) || (rc = vm_pop(&vm, &o)))
                break;
            if (o->type != PT_STR || o2->type != PT_STR)
                rc = vm_fail(&vm, PS_EFORMAT, "STACK_GLOBAL operands are not strings");
            else
                rc = vm_global(&vm, o->u.str.s, o->u.str.len, o2->u.str.s, o2->u.str.len);
            break;
        case 'R': /* REDUCE */
            if ((rc = vm_pop(&vm, &o2)) || (rc = vm_pop(&vm, &o)))
                break;
            if (!(rc = vm_call(&vm, o, o2, 0, &o)))
                rc = vm_push(&vm, o);
            break;
        case 0x81: /* NEWOBJ */
            if ((rc = vm_pop(&vm, &o2)) || (rc = vm_pop(&vm, &o)))
                break;
            rc = vm_newobj(&vm, o, o2, NULL);
            break;
        case 0x92: /* NEWOBJ_EX */
        {
            PtObj *kw;
            if ((rc = vm_pop(&vm, &kw)) || (rc = vm_pop(&vm, &o2)) || (rc = vm_pop(&vm, &o)))
                break;
            if (kw->type != PT_DICT)
                rc = vm_fail(&vm, PS_EFORMAT, "NEWOBJ_EX keywords are not a dict");
            else
                rc = vm_newobj(&vm, o, o2, kw->u.seq.n ? kw : NULL);
            break;
        }
        case 'i': /* INST module\nname\n, args since MARK: a call */
            if ((rc = vm_line(&vm, &s, &len)) || (rc = vm_line(&vm, &s2, &base)))
                break;
            if ((rc = vm_global(&vm, s, len, s2, base)))
                break;
            o = vm.stack[--vm.sn];
            if ((rc = vm_pop_mark(&vm, &base)) || (rc = vm_tuple_from(&vm, PT_TUPLE, base)))
                break;
            o2 = vm.stack[--vm.sn];
            if (!(rc = vm_call(&vm, o, o2, 0, &o)))
                rc = vm_push(&vm, o);
            break;
        case 'o': /* OBJ: MARK cls args... */
            if ((rc = vm_pop_mark(&vm, &base)))
                break;
            if (vm.sn == base) {
                rc = vm_fail(&vm, PS_EFORMAT, "OBJ without a class");
                break;
            }
            o = vm.stack[base];
            if ((rc = vm_tuple_from(&vm, PT_TUPLE, base + 1)))
                break;
            o2 = vm.stack[--vm.sn];
            vm.sn--; /* the class */
            if (!(rc = vm_call(&vm, o, o2, 0, &o)))
                rc = vm_push(&vm, o);
            break;
        case 'b': /* BUILD */
            rc = vm_build(&vm);
            break;
        case 'q': /* BINPUT */
            if (!(rc = vm_need(&vm, 1)))
                rc = vm_memo_put(&vm, *vm.p++);
            break;
        case 'r': /* LONG_BINPUT */
            if (!(rc = vm_need(&vm, 4))) {
                u = rd_le(vm.p, 4);
                vm.p += 4;
                rc = vm_memo_put(&vm, u);
            }
            break;
        case 0x94: /* MEMOIZE: the next index is the memo's size */
            rc = vm_memo_put(&vm, vm.memo_count);
            break;
        case 'h': /* BINGET */
            if (!(rc = vm_need(&vm, 1)))
                rc = vm_memo_get(&vm, *vm.p++);
            break;
        case 'j': /* LONG_BINGET */
            if (!(rc = vm_need(&vm, 4))) {
                u = rd_le(vm.p, 4);
                vm.p += 4;
                rc = vm_memo_get(&vm, u);
            }
            break;
        case 'p': /* PUT text */
        case 'g': /* GET text */
            if ((rc = vm_line(&vm, &s, &len)))
                break;
            {
                char tmp[MAX_LINE + 1], *endp;
                memcpy(tmp, s, len);
                tmp[len] = 0;
                errno = 0;
                unsigned long long v = strtoull(tmp, &endp, 10);
                if (!tmp[0] || *endp || errno || tmp[0] == '-')
                    rc = vm_fail(&vm, PS_EFORMAT, "bad text memo index");
                else
                    rc = op == 'p' ? vm_memo_put(&vm, v) : vm_memo_get(&vm, v);
            }
            break;
        case 'Q': /* BINPERSID */
            if (!(rc = vm_pop(&vm, &o)))
                rc = vm_persid(&vm, o);
            break;
        case 'P': /* PERSID text */
            rc = vm_fail(&vm, PS_EFORMAT, "text persistent ids are not supported");
            break;
        default:
            rc = vm_fail(&vm, PS_EFORMAT, "unsupported pickle opcode 0x%02x", op);
            break;
        }
    }
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    if (!rc && used)
        *used = VM_POS(&vm);
    return rc;
}

/* ---- containers ---- */

/* An entry's size and compression checked against the archive, then read whole. */
static int
zip_entry_check(PtFile *f, zip_uint64_t idx, const char *what, size_t need, size_t limit,
                zip_stat_t *st, char *err)
{
    zip_stat_init(st);
    if (zip_stat_index(f->zip, idx, 0, st) != 0)
        return ps_seterr(err, PS_EFORMAT, "%s: %s: %s", f->name, what, zip_strerror(f->zip));
    if (!(st->valid & ZIP_STAT_SIZE) || !(st->valid & ZIP_STAT_COMP_SIZE) ||
        !(st->valid & ZIP_STAT_COMP_METHOD))
        return ps_seterr(err, PS_EFORMAT, "%s: %s: incomplete zip directory entry", f->name, what);
    if (st->comp_size > f->n ||
        (st->comp_method == ZIP_CM_STORE && st->size != st->comp_size) ||
        st->size / ZIP_MAX_RATIO > st->comp_size + 1)
        return ps_seterr(err, PS_EFORMAT, "%s: %s: sizes in the zip directory are inconsistent",
                         f->name, what);
    if (st->size < need)
        return ps_seterr(err, PS_EFORMAT, "%s: %s holds %llu bytes, %zu needed", f->name, what,
                         (unsigned long long)st->size, need);
    if (st->size > limit)
        return ps_seterr(err, PS_EFORMAT, "%s: %s is too large (%llu bytes)", f->name, what,
                         (unsigned long long)st->size);
    return PS_OK;
}

static int
zip_entry_read(PtFile *f, zip_uint64_t idx, const char *what, size_t limit, unsigned char **out,
               size_t *n, char *err)
{
    zip_stat_t st;
    int rc = zip_entry_check(f, idx, what, 0, limit, &st, err);
    if (rc)
        return rc;
    size_t len = (size_t)st.size;
    unsigned char *buf = ps_try_malloc(len + 1, err);
    if (!buf)
        return PS_ENOMEM;
    zip_file_t *zf = zip_fopen_index(f->zip, idx, 0);
    size_t got = 0;
    while (zf && got < len) {
        zip_int64_t r = zip_fread(zf, buf + got, len - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (!zf || got < len) {
        rc = ps_seterr(err, PS_EFORMAT, "%s: %s: %s", f->name, what,
                       zf ? zip_file_strerror(zf) : zip_strerror(f->zip));
        if (zf)
            zip_fclose(zf);
        free(buf);
        return rc;
    }
    zip_fclose(zf);
    buf[len] = 0;
    *out = buf;
    *n = len;
    return PS_OK;
}

static int
load_zip(PtFile *f, char *err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(f->buf, f->n, 0, &ze);
    if (src)
        f->zip = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!f->zip) {
        int rc = ps_seterr(err, PS_EFORMAT, "%s: not a readable zip: %s", f->name,
                           zip_error_strerror(&ze));
        if (src)
            zip_source_free(src);
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);

    zip_int64_t ne = zip_get_num_entries(f->zip, 0), pkl = -1;
    int script = 0;
    for (zip_int64_t i = 0; i < ne; i++) {
        const char *nm = zip_get_name(f->zip, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        const char *sl = nm ? strchr(nm, '/') : NULL;
        if (!sl)
            continue;
        if (!strcmp(sl, "/constants.pkl"))
            script = 1;
        if (strcmp(sl, "/data.pkl"))
            continue;
        if (pkl >= 0)
            return ps_seterr(err, PS_EFORMAT, "%s: more than one data.pkl in the zip", f->name);
        pkl = i;
        f->prefix = xmalloc((size_t)(sl - nm) + 1);
        memcpy(f->prefix, nm, (size_t)(sl - nm));
        f->prefix[sl - nm] = 0;
    }
    if (pkl < 0)
        return ps_seterr(err, PS_EFORMAT, "%s: %s", f->name,
                         script ? "a TorchScript archive, not a torch.save checkpoint"
                                : "zip without <dir>/data.pkl: not a PyTorch checkpoint");

    size_t plen = strlen(f->prefix);
    char *nm = xmalloc(plen + 300);
    unsigned char *buf;
    size_t n;
    int rc = PS_OK;
    snprintf(nm, plen + 300, "%s/byteorder", f->prefix);
    zip_int64_t bo = zip_name_locate(f->zip, nm, ZIP_FL_ENC_RAW);
    if (bo >= 0) {
        if ((rc = zip_entry_read(f, (zip_uint64_t)bo, "byteorder", 64, &buf, &n, err)))
            goto out;
        if (!strcmp((char *)buf, "big"))
            rc = ps_seterr(err, PS_EFORMAT, "%s: big-endian checkpoint (not supported)", f->name);
        else if (strcmp((char *)buf, "little"))
            rc = ps_seterr(err, PS_EFORMAT, "%s: unknown byteorder \"%.20s\"", f->name, buf);
        free(buf);
        if (rc)
            goto out;
    }

    if ((rc = zip_entry_read(f, (zip_uint64_t)pkl, "data.pkl", MAX_PICKLE, &buf, &n, err)))
        goto out;
    rc = vm_run(f, buf, n, 1, "data.pkl", &f->root, NULL, err);
    free(buf);
    if (rc)
        goto out;

    for (size_t i = 0; i < f->nstor; i++) {
        PtStorage *s = f->stor[i];
        snprintf(nm, plen + 300, "%s/data/%s", f->prefix, s->key);
        zip_int64_t idx = zip_name_locate(f->zip, nm, ZIP_FL_ENC_RAW);
        if (idx < 0) {
            rc = ps_seterr(err, PS_EFORMAT, "%s: storage %s: no entry %s in the zip", f->name,
                           s->key, nm);
            goto out;
        }
        zip_stat_t st;
        if ((rc = zip_entry_check(f, (zip_uint64_t)idx, nm, s->nbytes, MAX_STORAGE, &st, err)))
            goto out;
        s->zindex = idx;
        s->located = 1;
    }
out:
    free(nm);
    return rc;
}

static int
load_legacy(PtFile *f, char *err)
{
    const unsigned char *p = f->buf + sizeof legacy_magic, *end = f->buf + f->n;
    PtObj *o;
    size_t used;
    int rc = vm_run(f, p, (size_t)(end - p), 0, "protocol pickle", &o, &used, err);
    if (rc)
        return rc;
    if (o->type != PT_INT || o->u.i != 1001)
        return ps_seterr(err, PS_EFORMAT, "%s: unsupported legacy protocol version", f->name);
    p += used;
    if ((rc = vm_run(f, p, (size_t)(end - p), 0, "sys_info pickle", &o, &used, err)))
        return rc;
    const PtObj *le = pt_get(o, "little_endian");
    if (!le || le->type != PT_BOOL)
        return ps_seterr(err, PS_EFORMAT, "%s: sys_info without little_endian", f->name);
    if (!le->u.i)
        return ps_seterr(err, PS_EFORMAT, "%s: big-endian checkpoint (not supported)", f->name);
    p += used;
    if ((rc = vm_run(f, p, (size_t)(end - p), 1, "object pickle", &f->root, &used, err)))
        return rc;
    p += used;
    if ((rc = vm_run(f, p, (size_t)(end - p), 0, "storage key pickle", &o, &used, err)))
        return rc;
    p += used;
    if (o->type != PT_LIST)
        return ps_seterr(err, PS_EFORMAT, "%s: storage keys are not a list", f->name);
    for (size_t i = 0; i < o->u.seq.n; i++) {
        const PtObj *k = o->u.seq.v[i];
        PtStorage *s = k->type == PT_STR ? storage_find(f, k->u.str.s) : NULL;
        if (!s)
            return ps_seterr(err, PS_EFORMAT, "%s: storage key %zu names no storage", f->name, i);
        if ((size_t)(end - p) < 8)
            return ps_seterr(err, PS_EFORMAT, "%s: storage %s: truncated", f->name, s->key);
        uint64_t numel = rd_le(p, 8);
        p += 8;
        if (numel != (uint64_t)s->numel)
            return ps_seterr(err, PS_EFORMAT, "%s: storage %s holds %llu elements, %lld expected",
                             f->name, s->key, (unsigned long long)numel, (long long)s->numel);
        if ((size_t)(end - p) < s->nbytes)
            return ps_seterr(err, PS_EFORMAT, "%s: storage %s: truncated (%zu of %zu bytes)",
                             f->name, s->key, (size_t)(end - p), s->nbytes);
        if (s->located)
            return ps_seterr(err, PS_EFORMAT, "%s: storage %s listed twice", f->name, s->key);
        s->data = p;
        s->located = 1;
        p += s->nbytes;
    }
    for (size_t i = 0; i < f->nstor; i++)
        if (!f->stor[i]->located)
            return ps_seterr(err, PS_EFORMAT, "%s: storage %s has no data", f->name,
                             f->stor[i]->key);
    return PS_OK;
}

int
pt_load_buf(PtFile **out, const void *buf, size_t n, const char *name, char *err)
{
    *out = NULL;
    PtFile *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name ? name : "(buffer)");
    f->buf = buf;
    f->n = n;
    const unsigned char *b = buf;
    int rc;
    if (n >= 4 && b[0] == 'P' && b[1] == 'K') {
        f->format = "zip";
        rc = load_zip(f, err);
    } else if (n >= sizeof legacy_magic && !memcmp(b, legacy_magic, sizeof legacy_magic)) {
        f->format = "legacy";
        rc = load_legacy(f, err);
    } else if (n >= 2 && b[0] == 0x80) {
        f->format = "pickle";
        rc = vm_run(f, b, n, 0, "pickle", &f->root, NULL, err);
    } else {
        rc = ps_seterr(err, PS_EFORMAT, "%s: not a PyTorch checkpoint (neither a zip nor a pickle)",
                       f->name);
    }
    if (rc) {
        pt_close(f);
        return rc;
    }
    *out = f;
    return PS_OK;
}

int
pt_load(PtFile **out, const char *path, char *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ps_seterr(err, PS_EIO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return ps_seterr(err, PS_EFORMAT, "%s: empty file", path);
    }
    size_t n = (size_t)sb.st_size;
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return ps_seterr(err, PS_EIO, "%s: mmap: %s", path, strerror(errno));
    int rc = pt_load_buf(out, map, n, path, err);
    if (rc) {
        munmap(map, n);
        return rc;
    }
    (*out)->map = map;
    return PS_OK;
}

void
pt_close(PtFile *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nobj; i++)
        obj_free(f->objs[i]);
    free(f->objs);
    for (size_t i = 0; i < f->nstor; i++) {
        free(f->stor[i]->key);
        free(f->stor[i]->owned);
        free(f->stor[i]);
    }
    free(f->stor);
    free(f->htab);
    if (f->zip)
        zip_discard(f->zip);
    if (f->map)
        munmap(f->map, f->n);
    free(f->prefix);
    free(f->name);
    free(f);
}

const PtObj *
pt_root(const PtFile *f)
{
    return f->root;
}

const char *
pt_name(const PtFile *f)
{
    return f->name;
}

const char *
pt_format(const PtFile *f)
{
    return f->format;
}

/* ---- lookups ---- */

const PtObj *
pt_get(const PtObj *o, const char *key)
{
    if (!o)
        return NULL;
    if (o->type == PT_OBJECT) {
        const PtObj *r = pt_get(o->u.obj.state, key);
        return r ? r : pt_get(o->u.obj.items, key);
    }
    if (o->type != PT_DICT)
        return NULL;
    for (size_t i = o->u.seq.n; i >= 2; i -= 2) {
        const PtObj *k = o->u.seq.v[i - 2];
        if (k->type == PT_STR && !strcmp(k->u.str.s, key))
            return o->u.seq.v[i - 1];
    }
    return NULL;
}

/* Length of the key text if `path` starts with it followed by '.' or the end. */
static size_t
key_prefix(const PtObj *k, const char *path)
{
    char num[32];
    const char *s;
    size_t n;
    if (k->type == PT_STR) {
        s = k->u.str.s;
        n = k->u.str.len;
    } else if (k->type == PT_INT) {
        n = (size_t)snprintf(num, sizeof num, "%lld", (long long)k->u.i);
        s = num;
    } else {
        return 0;
    }
    if (n && !strncmp(path, s, n) && (path[n] == 0 || path[n] == '.'))
        return n;
    return 0;
}

static const PtObj *
find_rec(const PtObj *o, const char *path, int depth)
{
    if (!o || !*path)
        return o;
    if (depth > PT_MAX_DEPTH)
        return NULL;
    if (o->type == PT_OBJECT) {
        const PtObj *r = find_rec(o->u.obj.state, path, depth + 1);
        return r ? r : find_rec(o->u.obj.items, path, depth + 1);
    }
    if (o->type == PT_DICT) {
        for (size_t i = o->u.seq.n; i >= 2; i -= 2) {
            size_t n = key_prefix(o->u.seq.v[i - 2], path);
            if (!n)
                continue;
            const PtObj *r = find_rec(o->u.seq.v[i - 1], path[n] ? path + n + 1 : "", depth + 1);
            if (r)
                return r;
        }
        return NULL;
    }
    if (o->type == PT_LIST || o->type == PT_TUPLE) {
        char *end;
        unsigned long long i = strtoull(path, &end, 10);
        if (end == path || (*end && *end != '.') || *path == '-' || i >= o->u.seq.n)
            return NULL;
        return find_rec(o->u.seq.v[i], *end ? end + 1 : "", depth + 1);
    }
    return NULL;
}

const PtObj *
pt_find(const PtObj *o, const char *dotted)
{
    return find_rec(o, dotted, 0);
}

int64_t
pt_as_int(const PtObj *o, int64_t dflt)
{
    if (o && (o->type == PT_INT || o->type == PT_BOOL))
        return o->u.i;
    if (o && o->type == PT_FLOAT && o->u.f == floor(o->u.f) && fabs(o->u.f) < 9e18)
        return (int64_t)o->u.f;
    return dflt;
}

double
pt_as_float(const PtObj *o, double dflt)
{
    if (o && o->type == PT_FLOAT)
        return o->u.f;
    if (o && (o->type == PT_INT || o->type == PT_BOOL))
        return (double)o->u.i;
    return dflt;
}

const char *
pt_as_str(const PtObj *o)
{
    return o && o->type == PT_STR ? o->u.str.s : NULL;
}

const PtTensor *
pt_as_tensor(const PtObj *o)
{
    return o && o->type == PT_TENSOR ? o->u.t : NULL;
}

/* ---- tensor data ---- */

static int
is_contiguous(const PtTensor *t)
{
    int64_t expect = 1;
    for (int i = t->nd - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect)
            return 0;
        expect *= t->shape[i];
    }
    return 1;
}

int
pt_tensor_data(const PtTensor *tc, const void **data, size_t *nbytes, char *err)
{
    PtTensor *t = (PtTensor *)tc;
    PtStorage *s = t->storage;
    size_t es = st_dtype_size(t->dtype), nb;
    if (ps_mul(t->numel, es, &nb) || nb > MAX_STORAGE)
        return ps_seterr(err, PS_ENOMEM, "%s: tensor of %zu elements is too large",
                         s->file->name, t->numel);
    if (nbytes)
        *nbytes = nb;
    if (t->numel == 0) {
        *data = "";
        return PS_OK;
    }
    int rc = storage_load(s, err);
    if (rc)
        return rc;
    const unsigned char *base = s->data;
    if (is_contiguous(t)) {
        *data = base + (size_t)t->offset * es;
        return PS_OK;
    }
    if (!t->contig) {
        unsigned char *dst = ps_try_malloc(nb, err);
        if (!dst)
            return ps_preferr(err, PS_ENOMEM, "%s", s->file->name);
        int64_t idx[PT_MAX_DIM] = {0};
        size_t off = (size_t)t->offset; /* element index in the storage, checked at rebuild */
        for (size_t k = 0; k < t->numel; k++) {
            memcpy(dst + k * es, base + off * es, es);
            for (int d = t->nd - 1; d >= 0; d--) {
                if (++idx[d] < t->shape[d]) {
                    off += (size_t)t->stride[d];
                    break;
                }
                off -= (size_t)((t->shape[d] - 1) * t->stride[d]);
                idx[d] = 0;
            }
        }
        t->contig = dst;
    }
    *data = t->contig;
    return PS_OK;
}

int
pt_tensor_f32(const PtTensor *tc, const float **out, char *err)
{
    PtTensor *t = (PtTensor *)tc;
    if (t->f32) {
        *out = t->f32;
        return PS_OK;
    }
    const unsigned char *d;
    size_t nb;
    int rc = pt_tensor_data(t, (const void **)&d, &nb, err);
    if (rc)
        return rc;
    if (t->dtype == ST_F32 && ((uintptr_t)d % sizeof(float)) == 0) {
        *out = (const float *)(const void *)d;
        return PS_OK;
    }
    size_t n4;
    if (ps_mul(t->numel, sizeof(float), &n4))
        return ps_seterr(err, PS_ENOMEM, "tensor too large");
    float *y = ps_try_malloc(n4, err);
    if (!y)
        return PS_ENOMEM;
    for (size_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case ST_F32: memcpy(&y[i], d + 4 * i, 4); break;
        case ST_F16: y[i] = ps_f16_to_f32((uint16_t)rd_le(d + 2 * i, 2)); break;
        case ST_BF16: y[i] = ps_bf16_to_f32((uint16_t)rd_le(d + 2 * i, 2)); break;
        case ST_F64: { double v; memcpy(&v, d + 8 * i, 8); y[i] = (float)v; break; }
        case ST_I64: { int64_t v; memcpy(&v, d + 8 * i, 8); y[i] = (float)v; break; }
        case ST_I32: { int32_t v; memcpy(&v, d + 4 * i, 4); y[i] = (float)v; break; }
        case ST_I16: { int16_t v; memcpy(&v, d + 2 * i, 2); y[i] = (float)v; break; }
        case ST_I8: y[i] = (float)(int8_t)d[i]; break;
        case ST_U8: y[i] = (float)d[i]; break;
        case ST_BOOL: y[i] = d[i] ? 1.0f : 0.0f; break;
        }
    }
    t->f32 = y;
    *out = y;
    return PS_OK;
}

/* ---- walking ---- */

typedef struct Walk {
    PtVisit fn;
    void *ctx;
    char *err;
    char *name;
    size_t cap;
    size_t visits;
} Walk;

/* Writes "parent.part" (or "part" at the root) at name[len]; returns the new length. */
static size_t
walk_name(Walk *w, size_t len, const char *part, size_t n)
{
    size_t need = len + 1 + n + 1;
    if (need > w->cap) {
        w->cap = MAX(need, 2 * w->cap);
        w->name = xrealloc(w->name, w->cap);
    }
    if (len)
        w->name[len++] = '.';
    memcpy(w->name + len, part, n);
    w->name[len + n] = 0;
    return len + n;
}

static size_t
walk_key(Walk *w, size_t len, const PtObj *k)
{
    char tmp[80];
    if (k->type == PT_STR)
        return walk_name(w, len, k->u.str.s, k->u.str.len);
    if (k->type == PT_INT)
        return walk_name(w, len, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)k->u.i));
    pt_repr(k, tmp, sizeof tmp);
    return walk_name(w, len, tmp, strlen(tmp));
}

static int walk_rec(Walk *w, PtObj *o, size_t len, int depth);

static int
walk_children(Walk *w, PtObj *o, size_t len, int depth)
{
    int rc = PS_OK;
    char tmp[32];
    switch (o->type) {
    case PT_DICT:
        for (size_t i = 0; !rc && i + 1 < o->u.seq.n; i += 2)
            rc = walk_rec(w, o->u.seq.v[i + 1], walk_key(w, len, o->u.seq.v[i]), depth + 1);
        break;
    case PT_LIST:
    case PT_TUPLE:
    case PT_SET:
        for (size_t i = 0; !rc && i < o->u.seq.n; i++)
            rc = walk_rec(w, o->u.seq.v[i],
                          walk_name(w, len, tmp, (size_t)snprintf(tmp, sizeof tmp, "%zu", i)),
                          depth + 1);
        break;
    case PT_OBJECT: {
        PtObj *parts[3] = {o->u.obj.state, o->u.obj.items, o->u.obj.args};
        for (int p = 0; !rc && p < 3; p++) {
            PtObj *c = parts[p];
            if (!c || c->mark)
                continue;
            if (p < 2 && c->type == PT_DICT) { /* fields appear directly under the object */
                c->mark = 1;
                rc = walk_children(w, c, len, depth + 1);
                c->mark = 0;
            } else {
                static const char *const names[] = {"state", "items", "args"};
                rc = walk_rec(w, c, walk_name(w, len, names[p], strlen(names[p])), depth + 1);
            }
        }
        break;
    }
    default:
        break;
    }
    return rc;
}

static int
walk_rec(Walk *w, PtObj *o, size_t len, int depth)
{
    if (o->mark)
        return PS_OK; /* a cycle */
    if (depth > PT_MAX_DEPTH + 16)
        return ps_seterr(w->err, PS_EFORMAT, "objects nested deeper than %d", PT_MAX_DEPTH);
    if (++w->visits > PT_MAX_VISIT)
        return ps_seterr(w->err, PS_EFORMAT, "more than %u objects reached (shared references?)",
                         PT_MAX_VISIT);
    w->name[len] = 0;
    int rc = w->fn(w->ctx, w->name, o);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return PS_OK;
    o->mark = 1;
    rc = walk_children(w, o, len, depth);
    o->mark = 0;
    return rc;
}

int
pt_walk(const PtObj *root, PtVisit fn, void *ctx, char *err)
{
    if (!root)
        return PS_OK;
    Walk w = {.fn = fn, .ctx = ctx, .err = err, .cap = 256};
    w.name = xmalloc(w.cap);
    w.name[0] = 0;
    int rc = walk_rec(&w, (PtObj *)root, 0, 0);
    free(w.name);
    return rc;
}

/* ---- printing ---- */

static void
repr_text(Out *out, const char *s, size_t n, int bytes)
{
    size_t shown = MIN(n, bytes ? (size_t)32 : (size_t)120);
    out_put(out, bytes ? "b'" : "'", bytes ? 2 : 1);
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'' || c == '\\')
            out_printf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80))
            out_printf(out, "\\x%02x", c);
        else
            out_put(out, (const char *)&c, 1);
    }
    out_put(out, "'", 1);
    if (shown < n)
        out_put(out, "...", 3);
}

static void repr_rec(Out *out, const PtObj *o, int depth);

static void
repr_items(Out *out, const PtObj *o, int depth, int pairs)
{
    size_t step = pairs ? 2 : 1;
    for (size_t i = 0; i + step - 1 < o->u.seq.n; i += step) {
        if (i)
            out_put(out, ", ", 2);
        if (i >= 8 * step) {
            out_put(out, "...", 3);
            break;
        }
        repr_rec(out, o->u.seq.v[i], depth + 1);
        if (pairs) {
            out_put(out, ": ", 2);
            repr_rec(out, o->u.seq.v[i + 1], depth + 1);
        }
    }
}

static void
repr_rec(Out *out, const PtObj *o, int depth)
{
    if (out->len + 1 >= out->n)
        return;
    if (depth > 6 || o->mark) {
        out_put(out, "...", 3);
        return;
    }
    ((PtObj *)o)->mark = 1;
    char tmp[64];
    switch (o->type) {
    case PT_NONE: out_put(out, "None", 4); break;
    case PT_BOOL: out_put(out, o->u.i ? "True" : "False", o->u.i ? 4 : 5); break;
    case PT_INT: out_printf(out, "%lld", (long long)o->u.i); break;
    case PT_FLOAT:
        snprintf(tmp, sizeof tmp, "%.9g", o->u.f);
        if (!strpbrk(tmp, ".eni"))
            strcat(tmp, ".0");
        out_put(out, tmp, strlen(tmp));
        break;
    case PT_STR: repr_text(out, o->u.str.s, o->u.str.len, 0); break;
    case PT_BYTES: repr_text(out, o->u.str.s, o->u.str.len, 1); break;
    case PT_TUPLE:
        out_put(out, "(", 1);
        repr_items(out, o, depth, 0);
        out_put(out, o->u.seq.n == 1 ? ",)" : ")", o->u.seq.n == 1 ? 2 : 1);
        break;
    case PT_LIST:
        out_put(out, "[", 1);
        repr_items(out, o, depth, 0);
        out_put(out, "]", 1);
        break;
    case PT_SET:
        if (!o->u.seq.n) {
            out_put(out, "set()", 5);
            break;
        }
        out_put(out, "{", 1);
        repr_items(out, o, depth, 0);
        out_put(out, "}", 1);
        break;
    case PT_DICT:
        out_put(out, "{", 1);
        repr_items(out, o, depth, 1);
        out_put(out, "}", 1);
        break;
    case PT_TENSOR:
        out_printf(out, "tensor(%s, %s)", st_dtype_name(o->u.t->dtype),
                   st_shape_str(o->u.t->shape, o->u.t->nd, tmp, sizeof tmp));
        break;
    case PT_STORAGE:
        out_printf(out, "<storage %s %s x %lld>", o->u.storage->key,
                   st_dtype_name(o->u.storage->dtype), (long long)o->u.storage->numel);
        break;
    case PT_OBJECT: {
        const PtObj *st = o->u.obj.state, *a = o->u.obj.args;
        if (!o->u.obj.inst) {
            out_put(out, o->u.obj.name, strlen(o->u.obj.name));
        } else if (!st && !o->u.obj.items && !o->u.obj.kwargs) { /* torch.device('cpu') */
            out_put(out, o->u.obj.name, strlen(o->u.obj.name));
            out_put(out, "(", 1);
            if (a && a->type == PT_TUPLE)
                repr_items(out, a, depth, 0);
            else if (a)
                repr_rec(out, a, depth + 1);
            out_put(out, ")", 1);
        } else {
            out_put(out, "<", 1);
            out_put(out, o->u.obj.name, strlen(o->u.obj.name));
            if (a && a->type == PT_TUPLE && a->u.seq.n) {
                out_put(out, " args=", 6);
                repr_rec(out, a, depth + 1);
            }
            if (st && st->type == PT_DICT) {
                for (size_t i = 0; i + 1 < st->u.seq.n; i += 2) {
                    out_put(out, " ", 1);
                    const PtObj *k = st->u.seq.v[i];
                    if (k->type == PT_STR)
                        out_put(out, k->u.str.s, k->u.str.len);
                    else
                        repr_rec(out, k, depth + 1);
                    out_put(out, "=", 1);
                    repr_rec(out, st->u.seq.v[i + 1], depth + 1);
                }
            } else if (st) {
                out_put(out, " state=", 7);
                repr_rec(out, st, depth + 1);
            }
            if (o->u.obj.items) {
                out_put(out, " items=", 7);
                repr_rec(out, o->u.obj.items, depth + 1);
            }
            out_put(out, ">", 1);
        }
        break;
    }
    }
    ((PtObj *)o)->mark = 0;
}

const char *
pt_repr(const PtObj *o, char *buf, size_t n)
{
    if (!n)
        return buf;
    Out out = {buf, n, 0};
    buf[0] = 0;
    if (!o) {
        out_put(&out, "NULL", 4);
        return buf;
    }
    repr_rec(&out, o, 0);
    if (out.len + 1 >= n && n > 4)
        memcpy(buf + n - 4, "...", 4);
    return buf;
}

/* Does the subtree hold a tensor? (bounded: a hint for pt_print only) */
static int
has_tensor(const PtObj *o, int depth, int *budget)
{
    if (!o || depth > 12 || --*budget < 0 || o->mark)
        return 0;
    if (o->type == PT_TENSOR)
        return 1;
    const PtObj *parts[3];
    int np = 0;
    if (is_seq(o)) {
        for (size_t i = 0; i < o->u.seq.n; i++)
            if (has_tensor(o->u.seq.v[i], depth + 1, budget))
                return 1;
        return 0;
    }
    if (o->type == PT_OBJECT) {
        parts[np++] = o->u.obj.state;
        parts[np++] = o->u.obj.items;
        parts[np++] = o->u.obj.args;
    }
    for (int i = 0; i < np; i++)
        if (has_tensor(parts[i], depth + 1, budget))
            return 1;
    return 0;
}

typedef struct Print {
    FILE *fp;
    const char *indent;
    int width;   /* tensor name column */
    int measure; /* first pass: only compute width */
} Print;

static int
print_visit(void *ctx, const char *name, const PtObj *o)
{
    Print *pr = ctx;
    int budget = 100000;
    const char *nm = *name ? name : "(root)";
    if (o->type == PT_DICT && (o->u.seq.n || !*name))
        return 0;
    if ((o->type == PT_LIST || o->type == PT_TUPLE || o->type == PT_OBJECT) &&
        has_tensor(o, 0, &budget)) {
        if (o->type == PT_OBJECT && !pr->measure)
            fprintf(pr->fp, "%s%s = <%s>\n", pr->indent, nm, o->u.obj.name);
        return 0;
    }
    if (pr->measure) {
        if (o->type == PT_TENSOR)
            pr->width = MAX(pr->width, MIN(60, (int)strlen(nm)));
        return 1;
    }
    if (o->type == PT_TENSOR) {
        char shp[160];
        fprintf(pr->fp, "%s%-*s %-4s %s\n", pr->indent, pr->width, nm,
                st_dtype_name(o->u.t->dtype),
                st_shape_str(o->u.t->shape, o->u.t->nd, shp, sizeof shp));
        return 1;
    }
    char buf[2048];
    fprintf(pr->fp, "%s%s = %s\n", pr->indent, nm, pt_repr(o, buf, sizeof buf));
    return 1;
}

int
pt_print(FILE *fp, const PtObj *root, const char *indent, char *err)
{
    Print pr = {fp, indent ? indent : "", 4, 1};
    int rc = pt_walk(root, print_visit, &pr, err);
    if (rc)
        return rc;
    pr.measure = 0;
    return pt_walk(root, print_visit, &pr, err);
}
