/* SPDX-License-Identifier: MIT */
/*
 * test_data.c - datasets: image folders (torchvision ImageFolder order), TSV
 * manifests, IDX files (plain and gzipped) with hostile variants, the real
 * Fashion-MNIST test set, class-name files (ours and PatchSAE's from
 * /work/shared/data) and shard ranges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "data.h"
#include "ps.h"
#include "test.h"

static void
mkdirs(const char *rel)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", t_tmpdir(), rel);
    for (char *s = p + strlen(t_tmpdir()) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void
touch(const char *rel)
{
    CHECK(t_write_file(t_tmp(rel), "x", 1) == 0);
}

static void
text(const char *rel, const char *s)
{
    CHECK(t_write_file(t_tmp(rel), s, strlen(s)) == 0);
}

/* rc must be want and err must start with "prefix" and contain sub. */
static void
expect_err(int line, int rc, int want, const char *err, const char *prefix, const char *sub)
{
    int ok = rc == want && !strncmp(err, prefix, strlen(prefix)) && strstr(err, sub);
    CHECK_MSG(ok, "line %d: rc %s (want %s), err \"%s\", wanted \"%s\" ... \"%s\"", line,
              ps_strcode(rc), ps_strcode(want), err, prefix, sub);
}
#define EXPECT_ERR(rc, want, err, prefix, sub) expect_err(__LINE__, rc, want, err, prefix, sub)

static const char *
tail(const char *path) /* path relative to the scratch dir */
{
    size_t n = strlen(t_tmpdir());
    return !strncmp(path, t_tmpdir(), n) ? path + n + 1 : path;
}

static void
test_folder(void)
{
    char err[PS_ERRLEN];
    Dataset ds;
    mkdirs("imf/b_cls/sub/deeper");
    mkdirs("imf/b_cls/sub b");
    mkdirs("imf/a_cls");
    mkdirs("imf/A_upper");
    touch("imf/b_cls/z.PNG");
    touch("imf/b_cls/a.jpg");
    touch("imf/b_cls/notes.txt");
    touch("imf/b_cls/sub/x.jpeg");
    touch("imf/b_cls/sub b/y.jpg");
    touch("imf/b_cls/sub/deeper/w.Jpg");
    touch("imf/a_cls/2.gif");
    touch("imf/a_cls/1.bmp");
    touch("imf/a_cls/c.webp");
    touch("imf/a_cls/d.ppm");
    touch("imf/a_cls/e.tif");
    touch("imf/A_upper/.hidden.png");
    touch("imf/stray.jpg");
    char spec[4200];
    snprintf(spec, sizeof spec, "%s/", t_tmp("imf")); /* a trailing slash is fine */
    CHECK(data_open(&ds, spec, err) == PS_OK);
    /* what torchvision.datasets.ImageFolder gives on the same tree */
    static const char *want[] = {
        "imf/A_upper/.hidden.png", "imf/a_cls/1.bmp", "imf/a_cls/2.gif", "imf/a_cls/c.webp",
        "imf/a_cls/d.ppm", "imf/b_cls/a.jpg", "imf/b_cls/z.PNG", "imf/b_cls/sub/x.jpeg",
        "imf/b_cls/sub b/y.jpg", "imf/b_cls/sub/deeper/w.Jpg",
    };
    static const int wlab[] = { 0, 1, 1, 1, 1, 2, 2, 2, 2, 2 };
    CHECK_EQ_INT(ds.n, 10);
    CHECK_EQ_INT(ds.n_class, 3);
    CHECK(ds.named == 1);
    if (ds.n_class == 3) {
        CHECK_STR(ds.class_names[0], "A_upper");
        CHECK_STR(ds.class_names[1], "a_cls");
        CHECK_STR(ds.class_names[2], "b_cls");
    }
    for (int i = 0; i < ds.n && i < 10; i++) {
        CHECK_STR(tail(data_item_path(&ds, i)), want[i]);
        CHECK_EQ_INT(ds.items[i].label, wlab[i]);
        CHECK_EQ_INT(ds.items[i].gray, -1);
    }
    const uint8_t *pix;
    int w, h;
    CHECK(data_item_gray(&ds, 0, &pix, &w, &h) == PS_EUSAGE);
    char nb[4200];
    CHECK_STR(data_item_name(&ds, 1, nb, sizeof nb), data_item_path(&ds, 1));
    data_close(&ds);
    data_close(&ds); /* twice is harmless */
    CHECK(ds.n == 0 && ds.items == NULL);

    /* a class without images, no classes, a symlink loop */
    mkdirs("imf/c_empty/sub");
    touch("imf/c_empty/sub/readme.txt");
    CHECK(data_open(&ds, t_tmp("imf"), err) == PS_EFORMAT);
    EXPECT_ERR(PS_EFORMAT, PS_EFORMAT, err, t_tmp("imf"), "class folder c_empty has no image");
    CHECK(ds.n == 0 && ds.items == NULL && ds.class_names == NULL);
    mkdirs("flat");
    touch("flat/a.jpg");
    EXPECT_ERR(data_open(&ds, t_tmp("flat"), err), PS_EFORMAT, err, t_tmp("flat"),
               "no class folders");
    mkdirs("loop/cls");
    touch("loop/cls/a.jpg");
    CHECK(symlink("..", t_tmp("loop/cls/up")) == 0);
    EXPECT_ERR(data_open(&ds, t_tmp("loop"), err), PS_EFORMAT, err, t_tmp("loop"),
               "symlink loop");

    /* ImageNet-style wnid folders take their names from an `nXXXXXXXX name` file */
    mkdirs("wn/n01443537");
    mkdirs("wn/n01440764");
    touch("wn/n01443537/g.JPEG");
    touch("wn/n01440764/t.JPEG");
    text("wn.txt", "n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n");
    CHECK(data_open(&ds, t_tmp("wn"), err) == PS_OK);
    CHECK(data_set_classnames(&ds, t_tmp("wn.txt"), err) == PS_OK);
    CHECK_EQ_INT(ds.n_class, 3);
    if (ds.n == 2 && ds.n_class == 3) {
        CHECK_STR(ds.class_names[ds.items[0].label], "tench");
        CHECK_STR(ds.class_names[ds.items[1].label], "goldfish");
        CHECK_EQ_INT(ds.items[1].label, 1);
    }
    text("wn2.txt", "tench\n");
    EXPECT_ERR(data_set_classnames(&ds, t_tmp("wn2.txt"), err), PS_EFORMAT, err, t_tmp("wn2.txt"),
               "no class named \"goldfish\""); /* names now: goldfish missing */
    data_close(&ds);
}

static void
test_tsv(void)
{
    char err[PS_ERRLEN];
    Dataset ds;
    mkdirs("man");
    text("man/list.tsv", "# a comment\r\n\nimg/a.jpg\t3\r\n/abs/b.png\t0\n  \nc d.jpg\t 1 \n");
    CHECK(data_open(&ds, t_tmp("man/list.tsv"), err) == PS_OK);
    CHECK_EQ_INT(ds.n, 3);
    CHECK_EQ_INT(ds.n_class, 4);
    CHECK(ds.named == 0);
    if (ds.n == 3) {
        CHECK_STR(data_item_path(&ds, 0), t_tmp("man/img/a.jpg"));
        CHECK_STR(data_item_path(&ds, 1), "/abs/b.png");
        CHECK_STR(data_item_path(&ds, 2), t_tmp("man/c d.jpg"));
        CHECK_EQ_INT(ds.items[0].label, 3);
        CHECK_EQ_INT(ds.items[2].label, 1);
        CHECK_STR(ds.class_names[3], "3");
        CHECK_STR(ds.spec, t_tmp("man/list.tsv"));
    }
    /* integer labels take names by position from a class-name file */
    text("names4.txt", "zero\none\ntwo\nthree\n");
    CHECK(data_set_classnames(&ds, t_tmp("names4.txt"), err) == PS_OK);
    CHECK(ds.n_class == 4 && !strcmp(ds.class_names[ds.items[0].label], "three"));
    text("names2.txt", "zero\none\n");
    EXPECT_ERR(data_set_classnames(&ds, t_tmp("names2.txt"), err), PS_EFORMAT, err,
               t_tmp("names2.txt"), "2 class names");
    data_close(&ds);

    /* named labels: classes are the sorted names; a header line is skipped */
    text("man/named.TSV", "path\tlabel\na.jpg\tcat\nb.jpg\tdog\nc.jpg\tcat\n");
    CHECK(data_open(&ds, t_tmp("man/named.TSV"), err) == PS_OK);
    CHECK_EQ_INT(ds.n, 3);
    CHECK_EQ_INT(ds.n_class, 2);
    if (ds.n == 3 && ds.n_class == 2) {
        CHECK_STR(ds.class_names[0], "cat");
        CHECK_STR(ds.class_names[1], "dog");
        CHECK(ds.items[0].label == 0 && ds.items[1].label == 1 && ds.items[2].label == 0);
    }
    text("pets.txt", "bird\ndog\ncat\n");
    CHECK(data_set_classnames(&ds, t_tmp("pets.txt"), err) == PS_OK);
    CHECK(ds.n_class == 3 && ds.items[0].label == 2 && ds.items[1].label == 1);
    data_close(&ds);

    /* hostile manifests: each names the file (and the line) */
    static const struct { const char *body, *want; } bad[] = {
        { "a.jpg 3\n", ":1: expected path<TAB>label" },
        { "a.jpg\t3\tx\n", ":1: expected path<TAB>label" },
        { "# c\na.jpg\t\n", ":2: empty label" },
        { "a.jpg\t  \n", ":1: empty label" },
        { "\t3\n", ":1: empty path" },
        { "a.jpg\t-1\n", ":1: negative label -1" },
        { "a.jpg\t3\nb.jpg\tcat\n", ":2: label \"cat\" is a name but earlier labels are integers" },
        { "a.jpg\tcat\nb.jpg\t3\n", ":2: label \"3\" is an integer" },
        { "a.jpg\t99999999999999999999999\n", ":1: label 9999" },
        { "a.jpg\t10000001\n", "too large" },
        { "# only a comment\n\n", "no items" },
        { "", "no items" },
    };
    for (size_t i = 0; i < LEN(bad); i++) {
        text("bad.tsv", bad[i].body);
        EXPECT_ERR(data_open(&ds, t_tmp("bad.tsv"), err), PS_EFORMAT, err, t_tmp("bad.tsv"),
                   bad[i].want);
    }
    CHECK(t_write_file(t_tmp("nul.tsv"), "a\0b\t1\n", 6) == 0);
    EXPECT_ERR(data_open(&ds, t_tmp("nul.tsv"), err), PS_EFORMAT, err, t_tmp("nul.tsv"), "NUL");
    EXPECT_ERR(data_open(&ds, "/nonexistent/x.tsv", err), PS_EIO, err, "/nonexistent/x.tsv", ":");
    text("what.csv", "a,1\n");
    EXPECT_ERR(data_open(&ds, t_tmp("what.csv"), err), PS_EUSAGE, err, t_tmp("what.csv"),
               "not a dataset");
    EXPECT_ERR(data_open(&ds, "fashion-mnist:val", err), PS_EUSAGE, err, "fashion-mnist:val",
               "unknown split");
}

/* Writes an IDX file: magic 0 0 type nd, dims big-endian, then data (gzipped when gz). */
static void
idx_write(const char *rel, int type, int nd, const uint32_t *dims, const void *data, size_t n,
          int gz)
{
    unsigned char h[4 + 4 * 4] = { 0, 0, (unsigned char)type, (unsigned char)nd };
    for (int i = 0; i < nd; i++)
        for (int k = 0; k < 4; k++)
            h[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    size_t hl = 4 + 4 * (size_t)nd;
    if (gz) {
        gzFile g = gzopen(t_tmp(rel), "wb");
        CHECK(g != NULL);
        if (!g)
            return;
        CHECK(gzwrite(g, h, (unsigned)hl) == (int)hl);
        if (n)
            CHECK(gzwrite(g, data, (unsigned)n) == (int)n);
        CHECK(gzclose(g) == Z_OK);
    } else {
        unsigned char *b = malloc(hl + n + 1);
        memcpy(b, h, hl);
        if (n)
            memcpy(b + hl, data, n);
        CHECK(t_write_file(t_tmp(rel), b, hl + n) == 0);
        free(b);
    }
}

static void
test_idx(void)
{
    char err[PS_ERRLEN];
    Dataset ds;
    uint8_t pix[3 * 2 * 4], lab[3] = { 2, 0, 1 };
    for (int i = 0; i < 24; i++)
        pix[i] = (uint8_t)(i * 10);
    uint32_t d3[3] = { 3, 2, 4 }, d1[1] = { 3 };
    for (int gz = 0; gz < 2; gz++) {
        const char *img = gz ? "s-images-idx3-ubyte.gz" : "s-images-idx3-ubyte";
        idx_write(img, 8, 3, d3, pix, sizeof pix, gz);
        idx_write(gz ? "s-labels-idx1-ubyte.gz" : "s-labels-idx1-ubyte", 8, 1, d1, lab, 3, gz);
        CHECK(data_open(&ds, t_tmp(img), err) == PS_OK);
        CHECK_EQ_INT(ds.n, 3);
        CHECK(ds.w == 4 && ds.h == 2 && ds.n_class == 3 && ds.named == 0);
        const uint8_t *p;
        int w, h;
        if (ds.n == 3) {
            CHECK(data_item_gray(&ds, 1, &p, &w, &h) == PS_OK && w == 4 && h == 2);
            CHECK(p && p[0] == 80 && p[7] == 150);
            CHECK(data_item_path(&ds, 1) == NULL);
            CHECK(ds.items[0].label == 2 && ds.items[1].label == 0 && ds.items[2].label == 1);
            CHECK_STR(ds.class_names[2], "2");
            char nb[4200], wantn[4200];
            snprintf(wantn, sizeof wantn, "%s#2", t_tmp(img));
            CHECK_STR(data_item_name(&ds, 2, nb, sizeof nb), wantn);
        }
        data_close(&ds);
    }
    /* the Kaggle spelling "train-images.idx3-ubyte" */
    idx_write("k-images.idx3-ubyte", 8, 3, d3, pix, sizeof pix, 0);
    idx_write("k-labels.idx1-ubyte", 8, 1, d1, lab, 3, 0);
    CHECK(data_open(&ds, t_tmp("k-images.idx3-ubyte"), err) == PS_OK && ds.n == 3);
    data_close(&ds);

    /* hostile images files; the good labels file s-labels-idx1-ubyte stays beside them */
    const char *img = t_tmp("s-images-idx3-ubyte");
    uint8_t big[64] = { 0 };
    struct { int type, nd; uint32_t d[3]; size_t n; int gz; const char *want; } bad[] = {
        { 8, 3, { 3, 2, 4 }, 23, 0, "truncated: 23 of 24" },
        { 8, 3, { 3, 2, 4 }, 23, 1, "truncated" },
        { 8, 3, { 3, 2, 4 }, 25, 0, "trailing bytes" },
        { 8, 3, { 3, 2, 4 }, 25, 1, "trailing bytes" },
        { 0x0d, 3, { 3, 2, 4 }, 24, 0, "element type 0x0d" },
        { 8, 2, { 3, 8, 0 }, 24, 0, "2 dimensions, expected 3" },
        { 8, 3, { 3, 0, 4 }, 0, 0, "images of 4x0 pixels" },
        { 8, 3, { 3, 70000, 1 }, 0, 0, "truncated: 0 of 210000" },
        { 8, 3, { 0xffffffffu, 0xffffffffu, 0xffffffffu }, 24, 0, "too large" },
        { 8, 3, { 1u << 20, 256, 256 }, 24, 1, "truncated" }, /* claims 64 GiB */
        { 8, 3, { 2, 2, 4 }, 16, 0, "3 labels for 2 images" },
    };
    for (size_t i = 0; i < LEN(bad); i++) {
        size_t n = bad[i].n;
        idx_write("s-images-idx3-ubyte", bad[i].type, bad[i].nd, bad[i].d, big, n, bad[i].gz);
        int rc = data_open(&ds, img, err);
        CHECK_MSG(rc == PS_EFORMAT && strstr(err, bad[i].want) &&
                  (strstr(err, img) || strstr(err, "s-labels")),
                  "case %zu: rc %s err \"%s\" want \"%s\"", i, ps_strcode(rc), err, bad[i].want);
    }
    /* the labels count is checked against the labels file (named in the message) */
    CHECK(strstr(err, "s-labels-idx1-ubyte: 3 labels for 2 images"));
    CHECK(t_write_file(img, "\0\0\x08", 3) == 0);
    EXPECT_ERR(data_open(&ds, img, err), PS_EFORMAT, err, img, "bad magic");
    CHECK(t_write_file(img, "\0\0\x08\x03\0\0", 6) == 0);
    EXPECT_ERR(data_open(&ds, img, err), PS_EFORMAT, err, img, "truncated IDX header");
    CHECK(t_write_file(img, "\x89PNG\r\n\x1a\n....", 12) == 0);
    EXPECT_ERR(data_open(&ds, img, err), PS_EFORMAT, err, img, "bad magic");
    /* a corrupt gzip stream */
    idx_write("c-images-idx3-ubyte.gz", 8, 3, d3, pix, sizeof pix, 1);
    idx_write("c-labels-idx1-ubyte", 8, 1, d1, lab, 3, 0);
    char *gzb;
    size_t gzn;
    CHECK(ps_read_file(t_tmp("c-images-idx3-ubyte.gz"), 1 << 20, &gzb, &gzn, err) == PS_OK);
    for (size_t k = 12; k < gzn; k++)
        gzb[k] ^= 0x5a;
    CHECK(t_write_file(t_tmp("c-images-idx3-ubyte.gz"), gzb, gzn) == 0);
    EXPECT_ERR(data_open(&ds, t_tmp("c-images-idx3-ubyte.gz"), err), PS_EFORMAT, err,
               t_tmp("c-images-idx3-ubyte.gz"), "");
    /* every truncation of a gzipped file fails cleanly */
    idx_write("c-images-idx3-ubyte.gz", 8, 3, d3, pix, sizeof pix, 1);
    char *good;
    size_t gn;
    CHECK(ps_read_file(t_tmp("c-images-idx3-ubyte.gz"), 1 << 20, &good, &gn, err) == PS_OK);
    int fails = 0;
    for (size_t k = 0; k < gn; k++) {
        CHECK(t_write_file(t_tmp("c-images-idx3-ubyte.gz"), good, k) == 0);
        int rc = data_open(&ds, t_tmp("c-images-idx3-ubyte.gz"), err);
        fails += rc == PS_EFORMAT && strstr(err, "c-images") != NULL;
        if (rc == PS_OK)
            data_close(&ds);
    }
    CHECK_EQ_INT(fails, (int)gn);
    free(good);
    free(gzb);
    /* labels file missing, name with no labels twin */
    idx_write("m-images-idx3-ubyte", 8, 3, d3, pix, sizeof pix, 0);
    EXPECT_ERR(data_open(&ds, t_tmp("m-images-idx3-ubyte"), err), PS_EIO, err,
               t_tmp("m-labels-idx1-ubyte"), "No such file");
    idx_write("odd-idx3-ubyte", 8, 3, d3, pix, sizeof pix, 0);
    EXPECT_ERR(data_open(&ds, t_tmp("odd-idx3-ubyte"), err), PS_EUSAGE, err,
               t_tmp("odd-idx3-ubyte"), "labels");
    /* labels of a wrong rank */
    idx_write("r-images-idx3-ubyte", 8, 3, d3, pix, sizeof pix, 0);
    idx_write("r-labels-idx1-ubyte", 8, 3, d3, pix, sizeof pix, 0);
    EXPECT_ERR(data_open(&ds, t_tmp("r-images-idx3-ubyte"), err), PS_EFORMAT, err,
               t_tmp("r-labels-idx1-ubyte"), "3 dimensions, expected 1");
}

static void
test_fashion(void)
{
    char err[PS_ERRLEN];
    Dataset ds;
    if (access(DATA_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "  data: %s missing (Debian dataset-fashion-mnist), skipped\n",
                DATA_FASHION_MNIST_DIR);
        return;
    }
    double t0 = ps_now();
    int rc = data_open(&ds, "fashion-mnist:test", err);
    CHECK_MSG(rc == PS_OK, "%s", err);
    if (rc != PS_OK)
        return;
    double dt = ps_now() - t0;
    CHECK_EQ_INT(ds.n, 10000);
    CHECK(ds.w == 28 && ds.h == 28 && ds.n_class == 10);
    int count[10] = { 0 };
    for (int i = 0; i < ds.n; i++)
        if (ds.items[i].label >= 0 && ds.items[i].label < 10)
            count[ds.items[i].label]++;
    for (int c = 0; c < 10; c++)
        CHECK_EQ_INT(count[c], 1000);
    CHECK_STR(ds.class_names[0], "T-shirt/top");
    CHECK_STR(ds.class_names[9], "Ankle boot");
    CHECK_EQ_INT(ds.items[0].label, 9); /* the first test image is an ankle boot */
    const uint8_t *p;
    int w, h;
    CHECK(data_item_gray(&ds, 9999, &p, &w, &h) == PS_OK);
    long sum = 0;
    for (int i = 0; i < ds.n * 28 * 28; i++)
        sum += ds.gray[i];
    CHECK(sum > 0);
    fprintf(stderr, "  data: fashion-mnist:test read in %.0f ms, mean pixel %.2f\n", dt * 1e3,
            (double)sum / (ds.n * 784.0));
    data_close(&ds);
}

static const char *
shared(const char *name)
{
    const char *p = t_shared(name);
    return p ? p : "(shared data directory not found)";
}

static void
test_classnames(void)
{
    char err[PS_ERRLEN];
    char **nm;
    int n;
    if (access(shared("imagenet_classnames.txt"), R_OK) == 0) {
        CHECK(data_read_classnames(shared("imagenet_classnames.txt"), &nm, &n, err) == PS_OK);
        CHECK_EQ_INT(n, 1000);
        if (n == 1000) {
            CHECK_STR(nm[0], "tench");
            CHECK_STR(nm[3], "tiger shark");
            CHECK_STR(nm[2], "great white shark");
        }
        data_free_classnames(nm, n);
        CHECK(data_read_classnames(shared("caltech101_classnames.txt"), &nm, &n, err) == PS_OK);
        CHECK_EQ_INT(n, 102);
        if (n == 102) {
            CHECK_STR(nm[0], "accordion");
            CHECK_STR(nm[4], "background_google");
        }
        data_free_classnames(nm, n);
        CHECK(data_read_classnames(shared("oxford_flowers_classnames.json"), &nm, &n, err) ==
              PS_OK);
        CHECK_EQ_INT(n, 102);
        if (n == 102) {
            CHECK_STR(nm[0], "pink primrose");
            CHECK_STR(nm[2], "canterbury bells");
            CHECK_STR(nm[20], "fire lily");
        }
        data_free_classnames(nm, n);
    } else {
        fprintf(stderr, "  data: %s, PatchSAE class files skipped\n", shared("imagenet_classnames.txt"));
    }

    text("cn1.txt", "\n  cat \r\ndog house\n\n");
    CHECK(data_read_classnames(t_tmp("cn1.txt"), &nm, &n, err) == PS_OK && n == 2);
    if (n == 2)
        CHECK(!strcmp(nm[0], "cat") && !strcmp(nm[1], "dog house"));
    data_free_classnames(nm, n);
    text("cn2.json", " {\"10\": \"ten\", \"9\": \"nine\", \"0\": \"zero\", \"1\": \"one\", "
         "\"2\": \"2\", \"3\": \"3\", \"4\": \"4\", \"5\": \"5\", \"6\": \"6\", \"7\": \"7\", "
         "\"8\": \"8\"}");
    CHECK(data_read_classnames(t_tmp("cn2.json"), &nm, &n, err) == PS_OK && n == 11);
    if (n == 11) /* integer order, not string order */
        CHECK(!strcmp(nm[0], "zero") && !strcmp(nm[9], "nine") && !strcmp(nm[10], "ten"));
    data_free_classnames(nm, n);

    static const struct { const char *body, *want; } bad[] = {
        { "{\"1\": \"a\", \"x\": \"b\"}", "key \"x\" is not an integer" },
        { "{\"1\": \"a\", \"2\": 3}", "value of key 2 is not a string" },
        { "{\"1\": \"a\", \"3\": \"c\"}", "not consecutive" },
        { "{\"2\": \"a\", \"3\": \"c\"}", "not consecutive" },
        { "{\"1\": \"a\", \"1\": \"b\"}", "bad JSON" },
        { "{\"1\": \"a\"", "bad JSON" },
        { "{}", "no class names" },
        { "{\"-1\": \"a\"}", "not an integer" },
        { "n01440764 tench\ngoldfish\n", ":2: expected \"nXXXXXXXX name\"" },
        { "n01440764 tench\nn01443537 \n", ":2: expected" },
        { "", "no class names" },
        { "\n \n", "no class names" },
    };
    for (size_t i = 0; i < LEN(bad); i++) {
        text("bad.names", bad[i].body);
        nm = (char **)1;
        EXPECT_ERR(data_read_classnames(t_tmp("bad.names"), &nm, &n, err), PS_EFORMAT, err,
                   t_tmp("bad.names"), bad[i].want);
        CHECK(nm == NULL && n == 0);
    }
    EXPECT_ERR(data_read_classnames("/nonexistent/names", &nm, &n, err), PS_EIO, err,
               "/nonexistent/names", "");
}

static void
test_shard(void)
{
    char err[PS_ERRLEN];
    int b, e, i, n;
    data_shard_range(10, 0, 3, &b, &e);
    CHECK(b == 0 && e == 3);
    data_shard_range(10, 1, 3, &b, &e);
    CHECK(b == 3 && e == 6);
    data_shard_range(10, 2, 3, &b, &e);
    CHECK(b == 6 && e == 10);
    data_shard_range(2, 3, 5, &b, &e);
    CHECK(b == e);
    int bad = 0;
    for (int items = 0; items < 200; items += 7)
        for (n = 1; n < 40; n++) {
            int next = 0;
            for (i = 0; i < n; i++) {
                data_shard_range(items, i, n, &b, &e);
                bad += b != next || e - b < items / n || e - b > items / n + 1;
                next = e;
            }
            bad += next != items;
        }
    data_shard_range(2000000000, 6, 7, &b, &e); /* no int overflow */
    CHECK(e == 2000000000 && b == 1714285714);
    CHECK_EQ_INT(bad, 0);
    CHECK(data_parse_shard("0/4", &i, &n, err) == PS_OK && i == 0 && n == 4);
    CHECK(data_parse_shard("3/4", &i, &n, err) == PS_OK && i == 3 && n == 4);
    static const char *nope[] = { "4/4", "-1/2", "1/0", "a/b", "1/2x", "", "1", "/2", "1/",
                                  "1/-2", " 1/2", "99999999999999999999/2", "0/2000000" };
    for (size_t k = 0; k < LEN(nope); k++) {
        int rc = data_parse_shard(nope[k], &i, &n, err);
        CHECK_MSG(rc == PS_EUSAGE && strstr(err, "--shard"), "shard \"%s\" accepted", nope[k]);
    }
}

void
test_data(void)
{
    test_folder();
    test_tsv();
    test_idx();
    test_fashion();
    test_classnames();
    test_shard();
}
