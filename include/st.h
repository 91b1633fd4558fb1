/* SPDX-License-Identifier: MIT */
/*
 * st.h - safetensors files: an mmap'd reader that validates everything it is
 * given (hostile headers give PS_EFORMAT naming the file and the problem,
 * never a crash) and a writer that writes to a temporary name and renames.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data. Shapes are outermost-first, as
 * PyTorch stores them.
 */
#ifndef PS_ST_H
#define PS_ST_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIM 8

typedef enum StDtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
} StDtype;

typedef struct StTensor {
    const char *name;     /* owned by the StFile */
    StDtype dtype;
    int nd;
    int64_t shape[ST_MAX_DIM];
    const void *data;     /* view into the mmap; not necessarily aligned */
    size_t nbytes;
} StTensor;

typedef struct StFile StFile;

/* Opens and validates path. *out is NULL on failure. */
int st_open(StFile **out, const char *path, char *err);
/* Same on a caller's buffer (kept borrowed until st_close); name is used in messages. */
int st_open_buf(StFile **out, const void *buf, size_t n, const char *name, char *err);
void st_close(StFile *f); /* NULL is a no-op; frees every converted copy */

const char *st_path(const StFile *f);
int st_count(const StFile *f);
const StTensor *st_at(const StFile *f, int i);           /* in file order of data offsets */
const StTensor *st_find(const StFile *f, const char *name); /* NULL when absent */
const char *st_meta(const StFile *f, const char *key);  /* __metadata__ value or NULL */
int st_meta_count(const StFile *f);
const char *st_meta_key(const StFile *f, int i);
const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);
int st_dtype_from_name(const char *s);       /* "F32" -> ST_F32; -1 when unknown */
int64_t st_numel(const StTensor *t);         /* product of the dims (1 for a scalar) */

/*
 * The tensor `name` as float32, converting F16/BF16/F64 (and copying
 * unaligned F32). shape (nd dims) is checked when not NULL: a missing tensor
 * or a different shape is PS_ESHAPE with a message naming the tensor, the
 * expected and the actual shape. The pointer is valid until st_close.
 */
int st_get_f32(StFile *f, const char *name, int nd, const int64_t *shape, const float **out,
               char *err);
/* Shape as "(3, 224, 224)" into buf. */
const char *st_shape_str(const int64_t *shape, int nd, char *buf, size_t n);

/* Writer: tensors are borrowed until st_writer_save returns. */
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);
void st_writer_add(StWriter *w, const char *name, StDtype dtype, int nd, const int64_t *shape,
                   const void *data);
void st_writer_meta(StWriter *w, const char *key, const char *value);
/* Writes path.tmp then renames to path (fsync'd). */
int st_writer_save(StWriter *w, const char *path, char *err);
void st_writer_free(StWriter *w);

#endif
