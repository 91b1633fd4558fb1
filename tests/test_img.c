/* SPDX-License-Identifier: MIT */
/*
 * test_img.c - images: decoding against PIL's Image.open(p).convert("RGB")
 * and preprocessing against HF CLIPProcessor (both recorded by
 * tools/gen_img_fixtures.py in tests/data/img/manifest.txt), hostile files
 * (empty, garbage, truncated, bit flips, huge declared sizes), YCCK/CMYK
 * JPEGs written here with libjpeg, JPEG/PNG writing and display scaling.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <zlib.h>

#include "img.h"
#include "ps.h"
#include "test.h"

static const char *
img_data(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s", t_data("img/"));
    snprintf(path + strlen(path), sizeof path - strlen(path), "%s", name);
    return path;
}

static int
read_data(const char *name, char **buf, size_t *n)
{
    char err[PS_ERRLEN];
    int rc = ps_read_file(img_data(name), (size_t)1 << 26, buf, n, err);
    CHECK_MSG(rc == PS_OK, "%s", err);
    return rc;
}

/* tools/gen_img_fixtures.py gen_pattern(): 8x8 blocks of hash noise and a wrapping gradient. */
static void
gen_pattern(Image *im, int w, int h, uint32_t seed)
{
    char err[PS_ERRLEN];
    uint8_t *g = xmalloc((size_t)w * h);
    memset(g, 0, (size_t)w * h);
    CHECK(img_from_gray(im, g, w, h, err) == PS_OK);
    free(g);
    for (uint32_t y = 0; y < (uint32_t)h; y++)
        for (uint32_t x = 0; x < (uint32_t)w; x++)
            for (uint32_t c = 0; c < 3; c++) {
                uint32_t k = (x * 73856093u) ^ (y * 19349663u) ^ ((c + 1) * 83492791u) ^
                             (seed * 2654435761u);
                k ^= k >> 13;
                k *= 0x5bd1e995u;
                k ^= k >> 15;
                uint32_t v = ((x >> 3) + (y >> 3)) & 1 ? k & 255 : (x * 3 + y * 5 + c * 60) & 255;
                im->rgb[(y * (uint32_t)w + x) * 3 + c] = (uint8_t)v;
            }
}

static uint64_t
fnv1a64(const uint8_t *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Count of differing bytes and the largest difference. */
static size_t
diff_u8(const uint8_t *a, const uint8_t *b, size_t n, int *maxd)
{
    size_t bad = 0;
    *maxd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) {
            bad++;
            if (d > *maxd)
                *maxd = d;
        }
    }
    return bad;
}

static int n_decode, n_prep;

static void
check_decode(const char *file, int w, int h, const char *expect)
{
    char err[PS_ERRLEN] = "";
    Image im;
    int rc = img_load(&im, img_data(file), err);
    CHECK_MSG(rc == PS_OK, "%s: %s", file, err);
    if (rc)
        return;
    CHECK_MSG(im.w == w && im.h == h, "%s: %dx%d, expected %dx%d", file, im.w, im.h, w, h);
    char *ref;
    size_t n;
    if (read_data(expect, &ref, &n) == PS_OK) {
        CHECK_EQ_INT(n, (size_t)w * h * 3);
        if (n == (size_t)w * h * 3 && im.w == w && im.h == h) {
            int maxd;
            size_t bad = diff_u8(im.rgb, (uint8_t *)ref, n, &maxd);
            CHECK_MSG(bad == 0, "%s: %zu of %zu bytes differ from PIL (max %d)", file, bad, n,
                      maxd);
        }
        free(ref);
    }
    /* the same bytes from memory give the same pixels */
    char *buf;
    if (read_data(file, &buf, &n) == PS_OK) {
        Image m;
        rc = img_decode_mem(&m, buf, n, err);
        CHECK_MSG(rc == PS_OK, "%s from memory: %s", file, err);
        if (!rc)
            CHECK_MSG(m.w == im.w && m.h == im.h &&
                      !memcmp(m.rgb, im.rgb, (size_t)im.w * im.h * 3), "%s: memory != file", file);
        img_free(&m);
        free(buf);
    }
    img_free(&im);
    n_decode++;
}

static void
check_prep(const char *input, int size, int crop, const char *eu8, const char *ef32)
{
    char err[PS_ERRLEN] = "";
    Image im;
    int w, h;
    unsigned seed;
    if (sscanf(input, "gen:%d:%d:%u", &w, &h, &seed) == 3) {
        gen_pattern(&im, w, h, seed);
    } else if (img_load(&im, img_data(input), err) != PS_OK) {
        CHECK_MSG(0, "%s: %s", input, err);
        return;
    }
    ImgPrep p = img_prep_clip();
    p.size = size;
    p.crop = crop;
    size_t n = (size_t)crop * crop * 3;
    uint8_t *u8 = xmalloc(n);
    float *f = xmalloc(n * sizeof(float));
    CHECK(img_resize_crop_u8(&im, &p, u8, err) == PS_OK);
    unsigned long long hash;
    if (sscanf(eu8, "fnv:%llx", &hash) == 1) {
        CHECK_MSG(fnv1a64(u8, n) == hash, "%s S=%d crop=%d: hash %016llx, PIL's %016llx", input,
                  size, crop, (unsigned long long)fnv1a64(u8, n), hash);
    } else {
        char *ref;
        size_t rn;
        if (read_data(eu8, &ref, &rn) == PS_OK) {
            CHECK_EQ_INT(rn, n);
            int maxd;
            size_t bad = rn == n ? diff_u8(u8, (uint8_t *)ref, n, &maxd) : 0;
            CHECK_MSG(bad == 0, "%s S=%d crop=%d: %zu of %zu bytes differ from PIL (max %d)",
                      input, size, crop, bad, n, maxd);
            free(ref);
        }
    }
    CHECK(img_preprocess(&im, &p, f, err) == PS_OK);
    if (strcmp(ef32, "-")) {
        char *ref;
        size_t rn;
        if (read_data(ef32, &ref, &rn) == PS_OK) {
            CHECK_EQ_INT(rn, n * sizeof(float));
            if (rn == n * sizeof(float)) {
                float *r = xmalloc(rn);
                memcpy(r, ref, rn);
                double m = t_maxabs(f, r, n);
                CHECK_MSG(m <= 1e-6, "%s: pixel_values max abs error %g vs HF", input, m);
                free(r);
            }
            free(ref);
        }
    }
    free(u8);
    free(f);
    img_free(&im);
    n_prep++;
}

static void
test_fixtures(void)
{
    char *man;
    size_t n;
    if (read_data("manifest.txt", &man, &n))
        return;
    for (char *line = strtok(man, "\n"); line; line = strtok(NULL, "\n")) {
        char a[256], b[256], c[256];
        int x, y;
        if (line[0] == '#')
            continue;
        if (sscanf(line, "decode %255s %d %d %255s", a, &x, &y, b) == 4)
            check_decode(a, x, y, b);
        else if (sscanf(line, "prep %255s %d %d %255s %255s", a, &x, &y, b, c) == 5)
            check_prep(a, x, y, b, c);
        else
            CHECK_MSG(0, "manifest line not understood: %s", line);
    }
    free(man);
    CHECK(n_decode >= 20);
    CHECK(n_prep >= 15);
}

/* ------------------------------------------------------------ hostile */

static void
expect_fail(const void *buf, size_t n, int code, const char *what)
{
    char err[PS_ERRLEN] = "";
    Image im;
    int rc = img_decode_mem(&im, buf, n, err);
    CHECK_MSG(rc == code, "%s: rc %s (%s), expected %s", what, ps_strcode(rc), err,
              ps_strcode(code));
    CHECK_MSG(im.rgb == NULL && im.w == 0, "%s: image not zeroed on failure", what);
    CHECK_MSG(err[0] != 0, "%s: no message", what);
    img_free(&im);
}

static void
put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void
test_hostile(void)
{
    char err[PS_ERRLEN];
    Image im;
    /* missing, empty, garbage */
    CHECK_EQ_INT(img_load(&im, t_tmp("does-not-exist.png"), err), PS_EIO);
    CHECK(strstr(err, "does-not-exist.png") != NULL);
    t_write_file(t_tmp("empty.jpg"), "", 0);
    CHECK_EQ_INT(img_load(&im, t_tmp("empty.jpg"), err), PS_EFORMAT);
    CHECK(strstr(err, "empty.jpg") != NULL && strstr(err, "empty") != NULL);
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)t_rand();
    junk[0] = 'x';
    expect_fail(junk, sizeof junk, PS_EFORMAT, "garbage");
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    expect_fail(junk, sizeof junk, PS_EFORMAT, "PNG magic + garbage");
    memcpy(junk, "\xff\xd8\xff", 3);
    expect_fail(junk, sizeof junk, PS_EFORMAT, "JPEG magic + garbage");
    memcpy(junk, "GIF89a", 6);
    junk[6] = 20, junk[7] = 0, junk[8] = 20, junk[9] = 0;
    expect_fail(junk, sizeof junk, PS_EFORMAT, "GIF magic + garbage");
    expect_fail("\x89PNG", 4, PS_EFORMAT, "4 bytes of PNG magic");
    expect_fail("GIF89a", 6, PS_EFORMAT, "GIF magic only");
    expect_fail("P6\n", 3, PS_EFORMAT, "PNM magic only");

    /* truncations at many points: always an error, never a crash */
    const char *trunc[] = { "rgb_37x53.png", "adam7_19x13.png", "q90_96x72.jpg",
                            "q75_444_prog_45x31.jpg", "cmyk_21x14.jpg", "pal_15x9.gif",
                            "rgb_14x9.bmp" };
    for (size_t t = 0; t < LEN(trunc); t++) {
        char *buf;
        size_t n;
        if (read_data(trunc[t], &buf, &n))
            continue;
        int fails = 0, tries = 0;
        for (size_t cut = 0; cut < n; cut += 1 + n / 23, tries++) {
            Image m;
            int rc = img_decode_mem(&m, buf, cut, err);
            fails += rc != PS_OK;
            img_free(&m);
        }
        CHECK_MSG(fails == tries, "%s: %d of %d truncations decoded", trunc[t], tries - fails,
                  tries);
        /* a truncated file on disk names the file */
        t_write_file(t_tmp("cut.bin"), buf, n * 2 / 3);
        CHECK(img_load(&im, t_tmp("cut.bin"), err) == PS_EFORMAT && strstr(err, "cut.bin"));
        /* bit flips: any result is fine as long as it is clean (run under ASan) */
        int ok = 0;
        for (int k = 0; k < 60; k++) {
            char *m = xmalloc(n);
            memcpy(m, buf, n);
            for (int f = 0; f < 3; f++) {
                size_t at = 8 + t_rand() % (n - 8);
                m[at] ^= (char)(1 << (t_rand() % 8));
            }
            Image d;
            if (img_decode_mem(&d, m, n, err) == PS_OK) {
                ok++;
                CHECK(d.w > 0 && d.h > 0 && d.rgb);
            } else {
                CHECK(d.rgb == NULL);
            }
            img_free(&d);
            free(m);
        }
        free(buf);
    }

    /* huge declared sizes: refused before allocating */
    uint8_t png[8 + 25];
    memcpy(png, "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
    put_be32(png + 16, 100000);
    put_be32(png + 20, 100000);
    memcpy(png + 24, "\x08\x02\0\0\0", 5);
    put_be32(png + 29, (uint32_t)crc32(0, png + 12, 17));
    expect_fail(png, sizeof png, PS_EFORMAT, "PNG 100000x100000");
    CHECK(strstr(err, "") != NULL);
    {
        Image m;
        img_decode_mem(&m, png, sizeof png, err);
        CHECK_MSG(strstr(err, "larger than") != NULL, "huge PNG message: %s", err);
    }
    char *jpg;
    size_t jn;
    if (read_data("q90_96x72.jpg", &jpg, &jn) == PS_OK) {
        size_t i = 2;
        while (i + 9 < jn && !(jpg[i] == (char)0xff && jpg[i + 1] == (char)0xc0))
            i++;
        CHECK(i + 9 < jn);
        jpg[i + 5] = (char)0xff, jpg[i + 6] = (char)0xf0;   /* height 65520 */
        jpg[i + 7] = (char)0xff, jpg[i + 8] = (char)0xf0;   /* width 65520 */
        expect_fail(jpg, jn, PS_EFORMAT, "JPEG 65520x65520");
        free(jpg);
    }
    uint8_t gif[32] = "GIF89a\xff\xff\xff\xff";
    expect_fail(gif, sizeof gif, PS_EFORMAT, "GIF 65535x65535");
    uint8_t bmp[54] = { 'B', 'M' };
    bmp[14] = 40;
    put_be32(bmp + 18, 0x00000100); /* little-endian 65536 */
    put_be32(bmp + 22, 0x00000100);
    expect_fail(bmp, sizeof bmp, PS_EFORMAT, "BMP 65536x65536");
    const char *pnm = "P6\n# big\n100000 100000\n255\n";
    expect_fail(pnm, strlen(pnm), PS_EFORMAT, "PPM 100000x100000");
    const char *pnm0 = "P6 0 5 255\n";
    expect_fail(pnm0, strlen(pnm0), PS_EFORMAT, "PPM 0x5");
    expect_fail("P6 3 2", 6, PS_EFORMAT, "PPM header cut before maxval");
    expect_fail("P6 3 2 255\n\1\2\3", 14, PS_EFORMAT, "PPM data cut");
    uint8_t bmp30[30] = { 'B', 'M' };
    bmp30[14] = 40;
    expect_fail(bmp30, sizeof bmp30, PS_EFORMAT, "BMP cut inside the info header");
    memset(bmp + 2, 0, sizeof bmp - 2);
    bmp[10] = 54, bmp[14] = 40, bmp[18] = 100, bmp[22] = 100;
    bmp[28] = 0xff, bmp[29] = 0xff; /* 65535 bits per pixel */
    expect_fail(bmp, sizeof bmp, PS_EFORMAT, "BMP 100x100 at 65535 bpp");
    bmp[28] = 24, bmp[29] = 0;
    expect_fail(bmp, sizeof bmp, PS_EFORMAT, "BMP 100x100 without pixels");
}

/* ------------------------------------------------- CMYK / YCCK JPEGs */

/* Writes (h, w, 4) CMYK with libjpeg, stored as YCCK or CMYK, with or without the Adobe marker. */
static unsigned char *
write_cmyk_jpeg(const uint8_t *cmyk, int w, int h, int ycck, int adobe, size_t *n)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *mem = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, ycck ? JCS_YCCK : JCS_CMYK);
    c.write_Adobe_marker = adobe ? TRUE : FALSE;
    jpeg_set_quality(&c, 100, TRUE);
    for (int i = 0; i < c.num_components; i++)
        c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(cmyk + (size_t)c.next_scanline * w * 4);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *n = len;
    return mem;
}

static void
test_cmyk(void)
{
    enum { W = 24, H = 16 };
    uint8_t cmyk[W * H * 4], want[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        for (int c = 0; c < 4; c++) /* smooth, so quality 100 is near lossless */
            cmyk[4 * i + c] = (uint8_t)(40 + ((i % W) * (3 + c) + (i / W) * (5 - c)) % 180);
        /* PIL: the stored bytes are Adobe-inverted CMYK; R = nk - C*nk/255 */
        for (int c = 0; c < 3; c++)
            want[3 * i + c] = (uint8_t)(cmyk[4 * i + c] * cmyk[4 * i + 3] / 255.0 + 0.5);
    }
    char err[PS_ERRLEN];
    for (int ycck = 0; ycck < 2; ycck++)
        for (int adobe = 0; adobe < 2; adobe++) {
            if (ycck && !adobe)
                continue; /* YCCK is only signalled by the Adobe marker */
            size_t n;
            unsigned char *j = write_cmyk_jpeg(cmyk, W, H, ycck, adobe, &n);
            Image im;
            int rc = img_decode_mem(&im, j, n, err);
            CHECK_MSG(rc == PS_OK, "CMYK ycck=%d adobe=%d: %s", ycck, adobe, err);
            if (!rc) {
                int maxd;
                diff_u8(im.rgb, want, sizeof want, &maxd);
                CHECK_MSG(maxd <= 4, "CMYK ycck=%d adobe=%d: off by %d", ycck, adobe, maxd);
            }
            img_free(&im);
            free(j);
        }
}

/* --------------------------------------------------- writing, scaling */

static void
test_write(void)
{
    enum { W = 41, H = 29 };
    uint8_t rgb[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgb + (y * W + x) * 3;
            p[0] = (uint8_t)(x * 6), p[1] = (uint8_t)(y * 8), p[2] = (uint8_t)(128 + x - y);
        }
    char err[PS_ERRLEN];
    Image im;
    CHECK(img_save_png(t_tmp("w.png"), rgb, W, H, err) == PS_OK);
    CHECK(img_load(&im, t_tmp("w.png"), err) == PS_OK);
    CHECK(im.w == W && im.h == H && !memcmp(im.rgb, rgb, sizeof rgb));
    img_free(&im);
    img_free(&im); /* second free is harmless */
    CHECK_EQ_INT(img_save_png("/nonexistent-dir/x.png", rgb, W, H, err), PS_EIO);

    unsigned char *j = NULL, *j10 = NULL;
    size_t n = 0, n10 = 0;
    CHECK(img_encode_jpeg(rgb, W, H, 95, &j, &n, err) == PS_OK);
    CHECK(img_encode_jpeg(rgb, W, H, 10, &j10, &n10, err) == PS_OK);
    CHECK(n > 100 && j[0] == 0xff && j[1] == 0xd8 && n10 < n);
    CHECK(img_decode_mem(&im, j, n, err) == PS_OK);
    CHECK(im.w == W && im.h == H);
    if (im.rgb) {
        double sum = 0;
        for (size_t i = 0; i < sizeof rgb; i++)
            sum += abs((int)im.rgb[i] - (int)rgb[i]);
        CHECK_MSG(sum / sizeof rgb < 2.5, "JPEG q95 mean abs error %g", sum / sizeof rgb);
    }
    img_free(&im);
    free(j);
    free(j10);
    CHECK_EQ_INT(img_encode_jpeg(rgb, 0, H, 90, &j, &n, err), PS_EUSAGE);
    CHECK(j == NULL && n == 0);

    uint8_t g[6] = { 0, 50, 100, 150, 200, 255 };
    CHECK(img_from_gray(&im, g, 3, 2, err) == PS_OK);
    CHECK(im.w == 3 && im.h == 2 && im.rgb[15] == 255 && im.rgb[16] == 255 && im.rgb[3] == 50 &&
          im.rgb[4] == 50 && im.rgb[5] == 50);
    img_free(&im);
    CHECK_EQ_INT(img_from_gray(&im, g, 0, 2, err), PS_EFORMAT);

    /* GIF from memory goes through a temporary file: same pixels as from disk */
    char *gif;
    if (read_data("pal_15x9.gif", &gif, &n) == PS_OK) {
        Image a, b;
        CHECK(img_decode_mem(&a, gif, n, err) == PS_OK);
        CHECK(img_load(&b, img_data("pal_15x9.gif"), err) == PS_OK);
        CHECK(a.rgb && b.rgb && a.w == b.w && !memcmp(a.rgb, b.rgb, (size_t)a.w * a.h * 3));
        img_free(&a);
        img_free(&b);
        free(gif);
    }
    CHECK_STR(img_sniff("\xff\xd8\xff\xe0", 4), "jpeg");
    CHECK_STR(img_sniff("P5\n", 3), "pnm");
    CHECK(img_sniff("P9\n", 3) == NULL && img_sniff("", 0) == NULL);
}

static void
test_scale(void)
{
    uint8_t src[4 * 4 * 3], dst[8 * 8 * 3], back[4 * 4 * 3];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 5);
    img_resize_rgb(src, 4, 4, back, 4, 4, IMG_NEAREST);
    CHECK(!memcmp(src, back, sizeof src));
    img_resize_rgb(src, 4, 4, back, 4, 4, IMG_BILINEAR);
    CHECK(!memcmp(src, back, sizeof src));
    img_resize_rgb(src, 4, 4, dst, 2, 2, IMG_NEAREST); /* centres 1.5 -> rounds to pixel 2 */
    CHECK(!memcmp(dst, src + (1 * 4 + 1) * 3, 3) || !memcmp(dst, src + (2 * 4 + 2) * 3, 3));
    img_resize_rgb(src, 4, 4, dst, 2, 2, IMG_BILINEAR); /* average of the 2x2 block */
    CHECK_EQ_INT(dst[0], (src[0] + src[3] + src[12] + src[15] + 2) / 4);
    img_resize_rgb(src, 4, 4, dst, 8, 8, IMG_NEAREST);
    CHECK(!memcmp(dst, src, 3) && !memcmp(dst + 3, src, 3) && !memcmp(dst + 6, src + 3, 3));
    uint8_t one[3] = { 7, 8, 9 };
    img_resize_rgb(one, 1, 1, dst, 8, 8, IMG_BILINEAR);
    CHECK(dst[0] == 7 && dst[8 * 8 * 3 - 1] == 9);

    int ow, oh;
    img_resize_dims(250, 180, 224, &ow, &oh);
    CHECK(ow == 311 && oh == 224);
    img_resize_dims(37, 53, 32, &ow, &oh);
    CHECK(ow == 32 && oh == 45);
    img_resize_dims(500, 500, 224, &ow, &oh);
    CHECK(ow == 224 && oh == 224);

    ImgPrep p = img_prep_clip();
    CHECK(p.size == 224 && p.crop == 224);
    uint8_t px[3] = { 0, 255, 123 };
    float f[3];
    p.crop = 1;
    img_normalize(px, &p, f);
    CHECK_NEAR(f[0], -0.48145466 / 0.26862954, 1e-6);
    CHECK_NEAR(f[1], (1 - 0.4578275) / 0.26130258, 1e-6);
    CHECK_NEAR(f[2], (123 / 255.0 - 0.40821073) / 0.27577711, 1e-6);
}

void
test_img(void)
{
    test_fixtures();
    test_hostile();
    test_cmyk();
    test_write();
    test_scale();
}
