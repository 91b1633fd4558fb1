/* SPDX-License-Identifier: MIT */
/*
 * data.h - the datasets the pipeline reads (design.md "Inputs"): a list of
 * labelled items, each an image file or an in-memory grey image, plus the
 * class names. Sources:
 *   - an image-folder tree: one sub-folder per class, as torchvision's
 *     ImageFolder (classes = sorted sub-folder names, files found recursively
 *     in sorted order; extensions jpg jpeg png bmp gif ppm webp, any case);
 *   - a TSV manifest: `path<TAB>label` lines, label an integer or a class
 *     name, relative paths relative to the manifest's directory, `#` comments;
 *   - IDX files (MNIST / Fashion-MNIST, gzipped or not): X-images-idx3-ubyte[.gz]
 *     with X-labels-idx1-ubyte[.gz] beside it;
 *   - "fashion-mnist:train" / "fashion-mnist:test": Debian's
 *     dataset-fashion-mnist, with the ten class names built in.
 * Class-name files in PatchSAE's formats (one name a line; `nXXXXXXXX name`;
 * JSON {"1": "name", ...}) are read by data_read_classnames.
 */
#ifndef PS_DATA_H
#define PS_DATA_H

#include <stddef.h>
#include <stdint.h>

#define DATA_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct DataItem {
    const char *path; /* image file (owned by the Dataset), NULL for in-memory images */
    int gray;         /* index into Dataset.gray, -1 for file items */
    int label;        /* class index in [0, n_class) */
} DataItem;

typedef struct Dataset {
    char *spec;          /* what data_open was given */
    int n;               /* items */
    DataItem *items;     /* (n) */
    int n_class;
    char **class_names;  /* (n_class) */
    int named;           /* labels came from names (folders, TSV names), not integers */
    int w, h;            /* size of the in-memory grey images */
    uint8_t *gray;       /* (n, h, w) in-memory grey images (IDX), or NULL */
    char *pool;          /* storage of the item paths */
} Dataset;

/* The Fashion-MNIST class names, label order. */
extern const char *const data_fashion_mnist_classes[10];

/*
 * Opens spec: a directory (image folder), a .tsv manifest, an IDX images file
 * or "fashion-mnist:train|test". On failure ds is zeroed and the message
 * names the file and the problem (PS_EFORMAT for bad contents, PS_EIO when
 * unreadable, PS_EUSAGE for a spec of no known kind). Free with data_close.
 */
int data_open(Dataset *ds, const char *spec, char *err);
void data_close(Dataset *ds); /* zeroes ds; a second call does nothing */

/* Path of item i, or NULL when it is an in-memory image. */
const char *data_item_path(const Dataset *ds, int i);
/* In-memory grey image i (h rows of w bytes, valid until data_close): PS_OK, or PS_EUSAGE for file items. */
int data_item_gray(const Dataset *ds, int i, const uint8_t **pix, int *w, int *h);
/* A stable name for item i: its path, or "SPEC#i" for in-memory images. */
const char *data_item_name(const Dataset *ds, int i, char *buf, size_t n);

/*
 * Class names from a file: one name a line (blank lines skipped), or
 * `nXXXXXXXX name` lines (name = everything after the first space), or a JSON
 * object {"1": "name", ...} ordered by its integer keys, which must be
 * consecutive from 0 or 1. *names (n entries) is freed with data_free_classnames.
 */
int data_read_classnames(const char *path, char ***names, int *n, char *err);
void data_free_classnames(char **names, int n);
/*
 * Replaces ds's class names with those of a class-name file. Integer labels
 * index the file's names (each label must be < their count). Named labels
 * (folders, TSV names) are matched to the file's names, or to the wnids of an
 * `nXXXXXXXX name` file, and relabelled to the file's order.
 */
int data_set_classnames(Dataset *ds, const char *path, char *err);

/* Parses "--shard i/n" (0 <= i < n). */
int data_parse_shard(const char *s, int *i, int *n, char *err);
/* Items [*begin, *end) of shard i of n: contiguous, deterministic, sizes differ by at most 1. */
void data_shard_range(int n_items, int i, int n, int *begin, int *end);

#endif
