/* SPDX-License-Identifier: MIT */
/*
 * pt.h - PyTorch checkpoints (torch.save files) read without Python and
 * without executing anything.
 *
 * A checkpoint is a pickle plus raw storages: either a zip (`<top>/data.pkl`,
 * `<top>/data/<key>`, PyTorch >= 1.6) or the legacy stream (magic pickle,
 * protocol pickle, sys_info pickle, the object pickle, the storage-key list,
 * then each storage). The pickle is interpreted by a restricted machine that
 * builds a tree of tagged PtObj values: Python data (None, bool, int, float,
 * str, bytes, tuple, list, dict, set), tensors rebuilt from storages, and
 * inert placeholders for every other global (a config dataclass,
 * torch.device, torch.float32), which record the class name, the arguments
 * and the state they were given. Globals that could run code (os.system,
 * builtins.eval, subprocess.Popen, ...) are refused with PS_EREFUSED, and a
 * call (REDUCE) is only accepted on a short allowlist of data constructors.
 *
 * The whole tree belongs to the PtFile and is freed by pt_close. Objects can
 * be shared (the pickle memo), and a hostile pickle can even make cycles:
 * pt_walk and pt_print cope with both.
 */
#ifndef PS_PT_H
#define PS_PT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "st.h"

#define PT_MAX_DIM 8       /* tensor rank limit */
#define PT_MAX_DEPTH 1000  /* container nesting limit (deeper pickles are PS_EFORMAT) */

typedef enum PtType {
    PT_NONE, PT_BOOL, PT_INT, PT_FLOAT, PT_STR, PT_BYTES,
    PT_TUPLE, PT_LIST, PT_DICT, PT_SET,
    PT_TENSOR,
    PT_OBJECT,  /* inert placeholder: a global, or an "instance" of one */
    PT_STORAGE, /* a bare storage (only seen when a pickle stores one outside a tensor) */
} PtType;

typedef struct PtObj PtObj;
typedef struct PtStorage PtStorage; /* opaque: a storage of the file, loaded on first use */

typedef struct PtTensor {
    StDtype dtype;                /* from the storage type (FloatStorage -> ST_F32, ...) */
    int nd;                       /* 0 for a scalar */
    int64_t shape[PT_MAX_DIM];    /* outermost first */
    int64_t stride[PT_MAX_DIM];   /* in elements, as in the pickle */
    int64_t offset;               /* storage offset in elements */
    size_t numel;
    PtStorage *storage;
    void *contig;                 /* contiguous copy when the layout is not (lazy) */
    float *f32;                   /* float32 copy when dtype is not F32 (lazy) */
} PtTensor;

struct PtObj {
    PtType type;
    int depth;      /* nesting depth below this object (1 for a leaf) */
    unsigned mark;  /* walk bookkeeping (cycle detection) */
    union {
        int64_t i;  /* PT_BOOL (0/1) and PT_INT */
        double f;   /* PT_FLOAT */
        struct {
            char *s;    /* NUL-terminated (may contain NULs before len) */
            size_t len;
        } str;      /* PT_STR (UTF-8) and PT_BYTES */
        struct {
            PtObj **v;  /* PT_DICT: v[2k] key, v[2k+1] value, in insertion order */
            size_t n;   /* number of v entries (PT_DICT: twice the items) */
            size_t cap;
        } seq;      /* PT_TUPLE, PT_LIST, PT_SET, PT_DICT */
        PtTensor *t;
        struct {
            char *name;     /* "module.qualname", e.g. "torch.device" */
            int inst;       /* 0: the global itself; 1: made by REDUCE/NEWOBJ/INST */
            PtObj *args;    /* tuple given to the constructor (inst), or NULL */
            PtObj *kwargs;  /* NEWOBJ_EX keyword arguments, or NULL */
            PtObj *state;   /* BUILD state (usually a dict of fields), or NULL */
            PtObj *items;   /* SETITEM(S) / APPEND(S) on the instance: a dict or list, or NULL */
        } obj;
        PtStorage *storage;
    } u;
};

typedef struct PtFile PtFile;

/* Reads path (mmap'd until pt_close). *out is NULL on failure. */
int pt_load(PtFile **out, const char *path, char *err);
/*
 * The same on a caller's buffer, borrowed until pt_close (the fuzzing
 * entry). name is used in messages. Zip and legacy files are told apart by
 * their first bytes; a bare pickle is accepted too (no storages).
 */
int pt_load_buf(PtFile **out, const void *buf, size_t n, const char *name, char *err);
void pt_close(PtFile *f); /* NULL is a no-op */

const PtObj *pt_root(const PtFile *f);
const char *pt_name(const PtFile *f);
const char *pt_format(const PtFile *f); /* "zip", "legacy" or "pickle" */

/* Dict lookup by str key (o may be NULL or not a dict: NULL). A placeholder
 * instance is looked up in its state dict, then its items. */
const PtObj *pt_get(const PtObj *o, const char *key);
/* Walks nested dicts / instances / lists by a dotted name ("state_dict.W_enc",
 * "cfg.d_in", "state_dict.prompt_learner.ctx"); keys may contain dots. */
const PtObj *pt_find(const PtObj *o, const char *dotted);
/* Scalar accessors: the value, or dflt when o is NULL or of another type.
 * pt_as_float accepts ints; pt_as_int accepts bools and integral floats. */
int64_t pt_as_int(const PtObj *o, int64_t dflt);
double pt_as_float(const PtObj *o, double dflt);
const char *pt_as_str(const PtObj *o); /* PT_STR only, else NULL */
const PtTensor *pt_as_tensor(const PtObj *o); /* PT_TENSOR only, else NULL */

/*
 * Visits root and everything below it in pre-order: dict values (name
 * "parent.key"; int keys print as numbers), list/tuple/set items ("parent.i"),
 * and a placeholder instance's state fields, items and args ("parent.field").
 * fn returns 0 to descend into the object, 1 to skip its contents, or a
 * negative code to stop (returned as is). Objects already on the current
 * path (cycles) are skipped. PS_EFORMAT past PT_MAX_DEPTH levels or after
 * PT_MAX_VISIT visits (shared-reference bombs). Not reentrant on one file.
 */
#define PT_MAX_VISIT (1u << 22)
typedef int (*PtVisit)(void *ctx, const char *name, const PtObj *o);
int pt_walk(const PtObj *root, PtVisit fn, void *ctx, char *err);

/* Contiguous row-major bytes of the tensor in its own dtype (little-endian),
 * copying strided layouts. Valid until pt_close. */
int pt_tensor_data(const PtTensor *t, const void **data, size_t *nbytes, char *err);
/* The tensor as contiguous float32 (converted from any dtype). Valid until pt_close. */
int pt_tensor_f32(const PtTensor *t, const float **data, char *err);

/* One-line Python-like rendering, truncated to fit n bytes ("..."). */
const char *pt_repr(const PtObj *o, char *buf, size_t n);
/* Human listing, one item a line after `indent` (may be NULL): tensors
 * ("name  F32 (16, 64)", names aligned), placeholders ("cfg = <mod.Class
 * d_in=16 ...>") and other values ("epoch = 5"); dicts are expanded, and
 * lists/tuples/objects only when they hold tensors. */
int pt_print(FILE *fp, const PtObj *root, const char *indent, char *err);

#endif
