/* SPDX-License-Identifier: MIT */
/*
 * img.c - the first pipeline stage: image bytes -> RGB u8 -> CLIP pixel_values.
 *
 * Decoding matches what the Python pipeline does, PIL's
 * Image.open(p).convert("RGB"), byte for byte: JPEG goes through
 * libjpeg-turbo and PNG through libpng, the libraries PIL itself links, and
 * the conversion rules are PIL 9.4's, checked against it by
 * tools/gen_img_fixtures.py:
 *   - alpha is dropped, never composited (RGBA, LA, palette + tRNS, grey + tRNS);
 *   - 16-bit colour keeps the high byte; 16-bit grey opens as mode "I" and
 *     I -> RGB clips, so a sample above 255 becomes 255 (most 16-bit grey
 *     photos come out nearly white in PIL, and so here);
 *   - 1/2/4-bit grey is scaled to 0..255; palette indices past the PLTE map
 *     to PIL's padding, a grey ramp (index i -> (i, i, i));
 *   - JPEG: 1 component is grey, 3 are converted to RGB by libjpeg, 4 (CMYK
 *     or YCCK) are read as Adobe-inverted CMYK, as PIL always assumes, then
 *     PIL's cmyk2rgb: R = nk - C*nk/255 with nk = 255-K, rounded its way;
 *   - a truncated file is an error (PIL: "image file is truncated").
 * GIF, BMP and PNM go through libsixel's loader (its built-in stb_image), which
 * needs a path, so memory input goes through a temporary file. The type comes
 * from the magic bytes, and the declared size is checked against
 * IMG_MAX_PIXELS before anything is allocated.
 *
 * Preprocessing is HF CLIPProcessor's: the shortest edge is resized to S with
 * PIL's antialiased bicubic, then a centre crop, /255, (x-mean)/std. The
 * resize reproduces PIL's ImagingResample for 8-bit images exactly (written
 * from the algorithm, not PIL's code): per output pixel a window of the
 * bicubic kernel (a = -0.5) stretched by the downscale factor, weights
 * normalised to sum 1 and turned into 22-bit fixed point (rounded half away
 * from zero), a horizontal pass, rounding and clipping to u8, then a vertical
 * pass on that u8 image. Each output pixel depends only on its own window, so
 * only the rows and columns that survive the crop are computed.
 */
#include "img.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <sixel.h>

#include "ps.h"

#define FILE_LIMIT ((size_t)1 << 30) /* largest image file img_load reads */

/* ---------------------------------------------------------------- helpers */

static int
check_dims(long long w, long long h, const char *name, char *err)
{
    if (w < 1 || h < 1)
        return ps_seterr(err, PS_EFORMAT, "%s: bad image size %lldx%lld", name, w, h);
    if (w > IMG_MAX_PIXELS || h > IMG_MAX_PIXELS || w * h > IMG_MAX_PIXELS)
        return ps_seterr(err, PS_EFORMAT, "%s: image %lldx%lld is larger than %ld pixels",
                         name, w, h, (long)IMG_MAX_PIXELS);
    return PS_OK;
}

static int
alloc_image(Image *im, int w, int h, const char *name, char *err)
{
    int rc = check_dims(w, h, name, err);
    if (rc)
        return rc;
    im->rgb = ps_try_malloc((size_t)w * h * 3, err);
    if (!im->rgb)
        return ps_preferr(err, PS_ENOMEM, "%s", name);
    im->w = w;
    im->h = h;
    return PS_OK;
}

/* img_free - frees im->rgb and zeroes *im; NULL and repeated calls are fine. */
void
img_free(Image *im)
{
    if (!im)
        return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

/*
 * img_sniff - the image type from the first n bytes of buf: "png", "jpeg",
 * "gif", "bmp", "pnm" (binary or ASCII PBM/PGM/PPM), or NULL for anything
 * else. A static string; no allocation.
 */
const char *
img_sniff(const void *buf, size_t n)
{
    const unsigned char *b = buf;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return "png";
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "jpeg";
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
        return "gif";
    if (n >= 26 && b[0] == 'B' && b[1] == 'M')
        return "bmp";
    if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' &&
        (b[2] == ' ' || b[2] == '\t' || b[2] == '\n' || b[2] == '\r' || b[2] == '#'))
        return "pnm";
    return NULL;
}

/*
 * img_from_gray - an RGB image from (h, w) grey bytes, each copied to R, G and
 * B (what PIL's L -> RGB does). PS_EFORMAT for a bad or too large size,
 * PS_ENOMEM; on failure *im is zeroed.
 */
int
img_from_gray(Image *im, const uint8_t *gray, int w, int h, char *err)
{
    memset(im, 0, sizeof *im);
    int rc = alloc_image(im, w, h, "grey image", err);
    if (rc)
        return rc;
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++)
        im->rgb[3 * i] = im->rgb[3 * i + 1] = im->rgb[3 * i + 2] = gray[i];
    return PS_OK;
}

/* ------------------------------------------------------------------- JPEG */

typedef struct JpegErr {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    int truncated; /* libjpeg hit the end of the data and made up an EOI */
} JpegErr;

static void
jpeg_on_error(j_common_ptr c)
{
    longjmp(((JpegErr *)c->err)->jmp, 1);
}

static void
jpeg_on_message(j_common_ptr c, int level)
{
    JpegErr *e = (JpegErr *)c->err;
    if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF)
        e->truncated = 1;
}

static void
jpeg_quiet(j_common_ptr c)
{
    (void)c;
}

static void
jpeg_errinit(JpegErr *e)
{
    memset(e, 0, sizeof *e);
    jpeg_std_error(&e->pub);
    e->pub.error_exit = jpeg_on_error;
    e->pub.emit_message = jpeg_on_message;
    e->pub.output_message = jpeg_quiet;
}

static void
jpeg_errmsg(j_common_ptr c, const char *name, char *err)
{
    char msg[JMSG_LENGTH_MAX];
    c->err->format_message(c, msg);
    ps_seterr(err, PS_EFORMAT, "%s: JPEG: %s", name, msg);
}

/* PIL's MULDIV255: a*b/255 rounded with (t + (t >> 8)) >> 8, t = a*b + 128. */
static inline int
muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static int
decode_jpeg(Image *im, const uint8_t *buf, size_t n, const char *name, char *err)
{
    struct jpeg_decompress_struct cinfo;
    JpegErr je;
    uint8_t *volatile row = NULL;
    jpeg_errinit(&je);
    cinfo.err = &je.pub;
    if (setjmp(je.jmp)) {
        jpeg_errmsg((j_common_ptr)&cinfo, name, err);
        jpeg_destroy_decompress(&cinfo);
        free(row);
        img_free(im);
        return PS_EFORMAT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    int nc = cinfo.num_components;
    if (nc != 1 && nc != 3 && nc != 4) {
        jpeg_destroy_decompress(&cinfo);
        return ps_seterr(err, PS_EFORMAT, "%s: JPEG with %d components", name, nc);
    }
    int rc = check_dims(cinfo.image_width, cinfo.image_height, name, err);
    if (rc) {
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    cinfo.out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    PS_ASSERT(cinfo.output_components == nc);
    if ((rc = alloc_image(im, w, h, name, err)) ||
        (nc != 3 && !(row = ps_try_malloc((size_t)w * nc, err)))) {
        jpeg_destroy_decompress(&cinfo);
        img_free(im);
        return rc ? rc : PS_ENOMEM;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = im->rgb + (size_t)cinfo.output_scanline * w * 3;
        JSAMPROW rp = nc == 3 ? dst : row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        if (nc == 1) {
            for (int x = 0; x < w; x++)
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (nc == 4) {
            for (int x = 0; x < w; x++) {
                /* stored values are Adobe-inverted: C = 255 - s, nk = 255 - K = s_k */
                const uint8_t *s = row + 4 * x;
                int nk = s[3];
                for (int c = 0; c < 3; c++) {
                    int v = nk - muldiv255(255 - s[c], nk);
                    dst[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
        if (je.truncated)
            break;
    }
    if (je.truncated) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        img_free(im);
        return ps_seterr(err, PS_EFORMAT, "%s: JPEG: truncated file", name);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return PS_OK;
}

/* -------------------------------------------------------------------- PNG */

typedef struct PngIo {
    const uint8_t *buf;
    size_t n, pos;
    char msg[200]; /* libpng's error text */
} PngIo;

static void
png_on_error(png_structp png, png_const_charp msg)
{
    PngIo *io = png_get_error_ptr(png);
    snprintf(io->msg, sizeof io->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void
png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void
png_read_mem(png_structp png, png_bytep out, png_size_t len)
{
    PngIo *io = png_get_io_ptr(png);
    if (len > io->n - io->pos)
        png_error(png, "truncated file");
    memcpy(out, io->buf + io->pos, len);
    io->pos += len;
}

/* One row of raw samples (after png_set_packing) -> RGB, with PIL's rules (top of file). */
static void
png_row_rgb(const uint8_t *s, uint8_t *d, int w, int ctype, int depth, const uint8_t *pal)
{
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        for (int x = 0; x < w; x++)
            memcpy(d + 3 * x, pal + 3 * s[x], 3);
        return;
    }
    int ch = ctype == PNG_COLOR_TYPE_GRAY ? 1 : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
           : ctype == PNG_COLOR_TYPE_RGB ? 3 : 4;
    int bps = depth == 16 ? 2 : 1;
    for (int x = 0; x < w; x++, s += ch * bps, d += 3) {
        if (ch <= 2) {
            int v;
            if (depth == 16 && ch == 1)
                v = s[0] ? 255 : s[1];   /* mode I -> RGB clips */
            else if (depth < 8)
                v = s[0] * (depth == 1 ? 255 : depth == 2 ? 85 : 17);
            else
                v = s[0];                /* 8-bit, or the high byte of LA;16B */
            d[0] = d[1] = d[2] = (uint8_t)v;
        } else {
            for (int c = 0; c < 3; c++)
                d[c] = s[c * bps];       /* 8-bit, or the high byte */
        }
    }
}

static uint32_t
be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int
decode_png(Image *im, const uint8_t *buf, size_t n, const char *name, char *err)
{
    /* IHDR is the first chunk: refuse a huge size before libpng reads further */
    if (n >= 24 && !memcmp(buf + 12, "IHDR", 4)) {
        int rc = check_dims(be32(buf + 16), be32(buf + 20), name, err);
        if (rc)
            return rc;
    }
    PngIo io = { buf, n, 0, "" };
    uint8_t *volatile raw = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory starting libpng", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(raw);
        img_free(im);
        return ps_seterr(err, PS_EFORMAT, "%s: PNG: %s", name, io.msg);
    }
    png_set_read_fn(png, &io, png_read_mem);
#ifdef PNG_CHECK_FOR_INVALID_INDEX_SUPPORTED
    png_set_check_for_invalid_index(png, 0); /* out-of-range indices are handled below */
#endif
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    int rc = check_dims(w, h, name, err);
    if (rc) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    uint8_t pal[256 * 3];
    for (int i = 0; i < 256; i++) /* PIL pads a short palette with a grey ramp */
        pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte;
        int np = 0;
        if (!png_get_PLTE(png, info, &plte, &np))
            png_error(png, "palette image without PLTE");
        for (int i = 0; i < np && i < 256; i++) {
            pal[3 * i] = plte[i].red;
            pal[3 * i + 1] = plte[i].green;
            pal[3 * i + 2] = plte[i].blue;
        }
    }
    if (depth < 8)
        png_set_packing(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((rc = alloc_image(im, (int)w, (int)h, name, err)))
        goto fail;
    size_t rawn;
    if (ps_mul(rowbytes, passes > 1 ? h : 1, &rawn)) {
        rc = ps_seterr(err, PS_ENOMEM, "%s: PNG rows overflow", name);
        goto fail;
    }
    if (!(raw = ps_try_malloc(rawn, err))) {
        rc = ps_preferr(err, PS_ENOMEM, "%s", name);
        goto fail;
    }
    if (passes > 1) { /* Adam7: the whole image first, then convert */
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++)
                png_read_row(png, raw + y * rowbytes, NULL);
        for (png_uint_32 y = 0; y < h; y++)
            png_row_rgb(raw + y * rowbytes, im->rgb + (size_t)y * w * 3, (int)w, ctype, depth, pal);
    } else {
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, raw, NULL);
            png_row_rgb(raw, im->rgb + (size_t)y * w * 3, (int)w, ctype, depth, pal);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    return PS_OK;
fail:
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    img_free(im);
    return rc;
}

/* ------------------------------------------------- GIF, BMP, PNM: libsixel */

static uint32_t
le(const uint8_t *b, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/*
 * Size declared in a PNM header: "P6 <ws/comments> W <ws> H <ws> MAXVAL" then
 * one whitespace byte. *end: offset of the binary data of an 8-bit P4/P5/P6,
 * else 0 (ASCII or 16-bit: not checked). Returns 0 if unreadable.
 */
static int
pnm_dims(const uint8_t *b, size_t n, long long *w, long long *h, size_t *end)
{
    size_t i = 2;
    long long v[3] = { 0, 0, 0 };
    int nv = b[1] == '1' || b[1] == '4' ? 2 : 3;
    *end = 0;
    for (int k = 0; k < nv; k++) {
        for (;;) {
            while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
                i++;
            if (i < n && b[i] == '#') {
                while (i < n && b[i] != '\n')
                    i++;
                continue;
            }
            break;
        }
        if (i >= n || b[i] < '0' || b[i] > '9')
            return 0;
        while (i < n && b[i] >= '0' && b[i] <= '9' && v[k] < (1LL << 40))
            v[k] = v[k] * 10 + (b[i++] - '0');
        if (k < 2 && i >= n)
            break; /* the size is known; the rest may be cut */
    }
    *w = v[0];
    *h = v[1];
    if (i < n && b[1] >= '4' && (nv == 2 || v[2] <= 255))
        *end = i + 1;
    return 1;
}

/*
 * Whether a GIF holds its whole first image: stb_image decodes a cut file
 * without complaint, PIL calls it truncated. Walks the blocks to the end of
 * the first image's data sub-blocks.
 */
static int
gif_complete(const uint8_t *b, size_t n)
{
    size_t i = 13;
    if (n < 13)
        return 0;
    if (b[10] & 0x80)
        i += (size_t)3 << ((b[10] & 7) + 1);
    for (;;) {
        if (i >= n)
            return 0;
        int image = b[i] == 0x2c;
        if (b[i] == 0x21) { /* extension: introducer, label, sub-blocks */
            i += 2;
        } else if (image) { /* descriptor, local colour table, LZW code size, sub-blocks */
            if (i + 10 > n)
                return 0;
            int flags = b[i + 9];
            i += 10;
            if (flags & 0x80)
                i += (size_t)3 << ((flags & 7) + 1);
            i++;
        } else {
            return 0;
        }
        while (i < n && b[i])
            i += (size_t)b[i] + 1;
        if (i >= n)
            return 0;
        i++; /* the zero-length terminator */
        if (image)
            return 1;
    }
}

/* The size a GIF/BMP/PNM header declares, checked before libsixel allocates. */
static int
check_header(const uint8_t *b, size_t n, const char *type, const char *name, char *err)
{
    const char *tn = !strcmp(type, "gif") ? "GIF" : !strcmp(type, "bmp") ? "BMP" : "PNM";
    long long w = 0, h = 0;
    int bpp = 0, comp = 0;
    size_t data = 0; /* offset of uncompressed pixel data, 0 if not checked */
    if (!strcmp(type, "gif") && n >= 10) {
        w = le(b + 6, 2);
        h = le(b + 8, 2);
    } else if (!strcmp(type, "bmp") && n >= 26) {
        if (le(b + 14, 4) == 12) { /* OS/2 core header */
            w = le(b + 18, 2);
            h = le(b + 20, 2);
            bpp = (int)le(b + 24, 2);
        } else if (n >= 34) {
            w = (int32_t)le(b + 18, 4);
            h = (int32_t)le(b + 22, 4);
            if (h < 0)
                h = -h; /* top-down */
            bpp = (int)le(b + 28, 2);
            comp = (int)le(b + 30, 4);
        } else {
            return ps_seterr(err, PS_EFORMAT, "%s: truncated BMP header", name);
        }
        if (comp == 0 || comp == 3)
            data = le(b + 10, 4);
    } else if (!strcmp(type, "pnm")) {
        if (!pnm_dims(b, n, &w, &h, &data))
            return ps_seterr(err, PS_EFORMAT, "%s: unreadable PNM header", name);
    } else {
        return ps_seterr(err, PS_EFORMAT, "%s: truncated %s header", name, tn);
    }
    int rc = check_dims(w, h, name, err);
    if (rc)
        return rc;
    /* bytes an uncompressed file must hold (w * h <= IMG_MAX_PIXELS: no overflow) */
    long long need = 0;
    if (!strcmp(type, "bmp") && data && bpp >= 1 && bpp <= 64)
        need = (long long)data + (bpp * w + 31) / 32 * 4 * h;
    else if (!strcmp(type, "pnm") && data)
        need = (long long)data + (b[1] == '4' ? (w + 7) / 8 * h : w * h * (b[1] == '5' ? 1 : 3));
    if ((long long)n < need || (!strcmp(type, "gif") && !gif_complete(b, n)))
        return ps_seterr(err, PS_EFORMAT, "%s: truncated %s file", name, tn);
    return PS_OK;
}

typedef struct SixelOut {
    Image *im;
    const char *name;
    char *err;
    int rc;
} SixelOut;

static SIXELSTATUS
sixel_on_frame(sixel_frame_t *frame, void *ctx)
{
    SixelOut *o = ctx;
    int w = sixel_frame_get_width(frame), h = sixel_frame_get_height(frame);
    int fmt = sixel_frame_get_pixelformat(frame);
    const uint8_t *px = sixel_frame_get_pixels(frame);
    int ch = fmt == SIXEL_PIXELFORMAT_RGB888 ? 3 : fmt == SIXEL_PIXELFORMAT_RGBA8888 ? 4
           : fmt == SIXEL_PIXELFORMAT_G8 ? 1 : 0;
    if (!ch) {
        o->rc = ps_seterr(o->err, PS_EFORMAT, "%s: libsixel gave pixel format %d", o->name, fmt);
        return SIXEL_BAD_INPUT;
    }
    img_free(o->im);
    if ((o->rc = alloc_image(o->im, w, h, o->name, o->err)))
        return SIXEL_BAD_INPUT;
    size_t np = (size_t)w * h;
    for (size_t i = 0; i < np; i++)
        for (int c = 0; c < 3; c++)
            o->im->rgb[3 * i + c] = px[ch * i + (ch == 1 ? 0 : c)];
    return SIXEL_OK;
}

static int
decode_sixel(Image *im, const char *path, const char *name, char *err)
{
    sixel_allocator_t *al = NULL;
    if (SIXEL_FAILED(sixel_allocator_new(&al, NULL, NULL, NULL, NULL)))
        return ps_seterr(err, PS_ENOMEM, "%s: libsixel allocator", name);
    SixelOut o = { im, name, err, PS_OK };
    SIXELSTATUS st = sixel_helper_load_image_file(path, 1, 0, SIXEL_PALETTE_MAX, NULL,
                                                  SIXEL_LOOP_DISABLE, sixel_on_frame, 0, NULL,
                                                  &o, al);
    sixel_allocator_unref(al);
    if (o.rc) {
        img_free(im);
        return o.rc;
    }
    if (SIXEL_FAILED(st) || !im->rgb) {
        img_free(im);
        return ps_seterr(err, PS_EFORMAT, "%s: libsixel: %s", name,
                         SIXEL_FAILED(st) ? sixel_helper_format_error(st) : "no frame");
    }
    return PS_OK;
}

/* --------------------------------------------------------------- decoding */

/* path, if not NULL, holds the same bytes (libsixel reads files only). */
static int
decode(Image *im, const uint8_t *buf, size_t n, const char *name, const char *path, char *err)
{
    memset(im, 0, sizeof *im);
    const char *type = img_sniff(buf, n);
    if (!type)
        return ps_seterr(err, PS_EFORMAT, "%s: %s", name,
                         n ? "not a JPEG, PNG, GIF, BMP or PNM image" : "empty file");
    if (!strcmp(type, "jpeg"))
        return decode_jpeg(im, buf, n, name, err);
    if (!strcmp(type, "png"))
        return decode_png(im, buf, n, name, err);
    int rc = check_header(buf, n, type, name, err);
    if (rc)
        return rc;
    if (path)
        return decode_sixel(im, path, name, err);
    char tmp[4096];
    const char *dir = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/patchsae-img-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return ps_seterr(err, PS_EIO, "%s: temporary file %s: %s", name, tmp, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    int ok = f && fwrite(buf, 1, n, f) == n;
    if (f ? fclose(f) != 0 : close(fd) != 0)
        ok = 0;
    rc = ok ? decode_sixel(im, tmp, name, err)
            : ps_seterr(err, PS_EIO, "%s: writing %s: %s", name, tmp, strerror(errno));
    unlink(tmp);
    return rc;
}

/*
 * img_load - decodes the image file at path into im (RGB u8, as PIL's
 * Image.open(path).convert("RGB")). The format comes from the magic bytes:
 * JPEG and PNG here, GIF/BMP/PNM through libsixel. On failure im is zeroed
 * and err names the file: PS_EIO (unreadable), PS_EFORMAT (not an image,
 * corrupt, truncated, larger than IMG_MAX_PIXELS), PS_ENOMEM.
 */
int
img_load(Image *im, const char *path, char *err)
{
    char *buf;
    size_t n;
    memset(im, 0, sizeof *im);
    int rc = ps_read_file(path, FILE_LIMIT, &buf, &n, err);
    if (rc)
        return rc;
    rc = decode(im, (const uint8_t *)buf, n, path, path, err);
    free(buf);
    return rc;
}

/*
 * img_decode_mem - as img_load, from n bytes at buf (not kept). Messages say
 * "memory" where img_load names the file.
 */
int
img_decode_mem(Image *im, const void *buf, size_t n, char *err)
{
    return decode(im, buf, n, "memory", NULL, err);
}

/* ---------------------------------------------------------- preprocessing */

/*
 * img_prep_clip - openai/clip-vit-base-patch16's preprocessor_config.json:
 * shortest_edge 224, crop 224, OpenAI's mean and std.
 */
ImgPrep
img_prep_clip(void)
{
    ImgPrep p = { 224, 224, { 0.48145466f, 0.4578275f, 0.40821073f },
                  { 0.26862954f, 0.26130258f, 0.27577711f } };
    return p;
}

/*
 * img_resize_dims - the output size of HF's shortest-edge resize:
 * the short side becomes size, the long one int(size * long / short)
 * (a double division truncated, as Python's int() of a float).
 */
void
img_resize_dims(int w, int h, int size, int *ow, int *oh)
{
    PS_ASSERT(w > 0 && h > 0 && size > 0);
    int s = w <= h ? w : h, l = w <= h ? h : w;
    int nl = (int)((double)size * l / s);
    *ow = w <= h ? size : nl;
    *oh = w <= h ? nl : size;
}

#define PREC 22 /* PIL's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */

/* Keys' cubic convolution kernel with a = -0.5 (support 2). */
static double
bicubic(double x)
{
    const double a = -0.5;
    if (x < 0)
        x = -x;
    if (x < 1)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* Resample weights for one axis, for outputs first..first+count-1 of out_size. */
typedef struct Taps {
    int ksize;     /* taps per output (the widest window) */
    int *lo, *n;   /* (count) first input index and number of taps */
    int32_t *k;    /* (count, ksize) fixed point, PREC fraction bits */
} Taps;

static int
taps_init(Taps *t, int in_size, int out_size, int first, int count, char *err)
{
    double scale = (double)in_size / out_size;
    double fscale = scale < 1 ? 1 : scale;
    double support = 2 * fscale, ss = 1 / fscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    size_t nk;
    if (ps_mul((size_t)count, (size_t)t->ksize, &nk))
        return ps_seterr(err, PS_ENOMEM, "resize taps overflow");
    t->lo = ps_try_malloc(sizeof(int) * 2 * (size_t)count, err);
    t->k = ps_try_malloc(sizeof(int32_t) * nk, err);
    double *w = ps_try_malloc(sizeof(double) * (size_t)t->ksize, err);
    if (!t->lo || !t->k || !w) {
        free(t->lo);
        free(t->k);
        free(w);
        t->lo = NULL;
        t->k = NULL;
        return PS_ENOMEM;
    }
    t->n = t->lo + count;
    for (int i = 0; i < count; i++) {
        double center = (first + i + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        double sum = 0;
        for (int j = 0; j < hi - lo; j++)
            sum += w[j] = bicubic((j + lo - center + 0.5) * ss);
        int32_t *k = t->k + (size_t)i * t->ksize;
        for (int j = 0; j < t->ksize; j++) {
            double v = j < hi - lo ? (sum != 0 ? w[j] / sum : w[j]) : 0;
            k[j] = (int32_t)(v < 0 ? v * (1 << PREC) - 0.5 : v * (1 << PREC) + 0.5);
        }
        t->lo[i] = lo;
        t->n[i] = hi - lo;
    }
    free(w);
    return PS_OK;
}

static void
taps_free(Taps *t)
{
    free(t->lo);
    free(t->k);
}

static inline uint8_t
clip8(int32_t v)
{
    return v <= 0 ? 0 : v >= (255 << PREC) ? 255 : (uint8_t)(v >> PREC);
}

/* What the crop keeps of one resized axis of length o: source offset, destination offset, count. */
static void
crop_axis(int o, int crop, int *src, int *dst, int *count)
{
    if (o >= crop) {
        *src = (o - crop) / 2;
        *dst = 0;
        *count = crop;
    } else { /* HF pads with zeros: the image lands at ceil((crop - o) / 2) */
        *src = 0;
        *dst = (crop - o + 1) / 2;
        *count = o;
    }
}

/*
 * img_resize_crop_u8 - HF CLIPProcessor up to the centre crop, on u8:
 * resize so the short side is p->size (img_resize_dims) with PIL's bicubic,
 * bit-exact, then take the centred (p->crop, p->crop) window, top =
 * (H - crop) // 2, left = (W - crop) // 2; where the resized image is
 * smaller than the crop, it is centred on zeros as HF's center_crop pads.
 * out: (crop, crop, 3) RGB u8, the thumbnail whose patch grid lines up with
 * the model input. Allocates scratch per call; PS_ENOMEM is the only error.
 */
int
img_resize_crop_u8(const Image *im, const ImgPrep *p, uint8_t *out, char *err)
{
    PS_ASSERT(im && im->rgb && im->w > 0 && im->h > 0 && p->size > 0 && p->crop > 0);
    int ow, oh, sx, dx, cw, sy, dy, ch, cr = p->crop;
    img_resize_dims(im->w, im->h, p->size, &ow, &oh);
    crop_axis(ow, cr, &sx, &dx, &cw);
    crop_axis(oh, cr, &sy, &dy, &ch);
    memset(out, 0, (size_t)cr * cr * 3);

    Taps th = { 0 }, tv = { 0 };
    int rc = taps_init(&th, im->w, ow, sx, cw, err);
    if (!rc)
        rc = taps_init(&tv, im->h, oh, sy, ch, err);
    if (rc) {
        taps_free(&th);
        return rc;
    }
    /* input rows the kept output rows read */
    int r0 = tv.lo[0], r1 = tv.lo[ch - 1] + tv.n[ch - 1];
    uint8_t *tmp = ps_try_malloc((size_t)(r1 - r0) * cw * 3, err);
    if (!tmp) {
        taps_free(&th);
        taps_free(&tv);
        return PS_ENOMEM;
    }
    /* horizontal pass: rows r0..r1-1, kept columns only */
    for (int y = r0; y < r1; y++) {
        const uint8_t *src = im->rgb + (size_t)y * im->w * 3;
        uint8_t *d = tmp + (size_t)(y - r0) * cw * 3;
        for (int x = 0; x < cw; x++) {
            const int32_t *k = th.k + (size_t)x * th.ksize;
            const uint8_t *s = src + (size_t)th.lo[x] * 3;
            int32_t a0 = 1 << (PREC - 1), a1 = a0, a2 = a0;
            for (int j = 0; j < th.n[x]; j++) {
                a0 += s[3 * j] * k[j];
                a1 += s[3 * j + 1] * k[j];
                a2 += s[3 * j + 2] * k[j];
            }
            d[3 * x] = clip8(a0);
            d[3 * x + 1] = clip8(a1);
            d[3 * x + 2] = clip8(a2);
        }
    }
    /* vertical pass on the u8 result, into the crop */
    for (int y = 0; y < ch; y++) {
        const int32_t *k = tv.k + (size_t)y * tv.ksize;
        const uint8_t *s = tmp + (size_t)(tv.lo[y] - r0) * cw * 3;
        uint8_t *d = out + ((size_t)(dy + y) * cr + dx) * 3;
        for (int x = 0; x < cw * 3; x++) {
            int32_t a = 1 << (PREC - 1);
            for (int j = 0; j < tv.n[y]; j++)
                a += s[(size_t)j * cw * 3 + x] * k[j];
            d[x] = clip8(a);
        }
    }
    free(tmp);
    taps_free(&th);
    taps_free(&tv);
    return PS_OK;
}

/*
 * img_normalize - HF's rescale and normalize on the u8 crop, with numpy's
 * rounding: x = float(v * (1/255.0)) (a double product cast to float), then
 * (x - mean) / std in float. out: (3, crop, crop), channel-major.
 */
void
img_normalize(const uint8_t *crop_rgb, const ImgPrep *p, float *out)
{
    size_t n = (size_t)p->crop * p->crop;
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)(v * (1 / 255.0)) - p->mean[c]) / p->std[c];
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            out[c * n + i] = lut[c][crop_rgb[3 * i + c]];
}

/*
 * img_preprocess - CLIPProcessor's pixel_values for one image:
 * img_resize_crop_u8 then img_normalize. out: (3, crop, crop) float.
 */
int
img_preprocess(const Image *im, const ImgPrep *p, float *out, char *err)
{
    size_t n = (size_t)p->crop * p->crop * 3;
    uint8_t *u8 = ps_try_malloc(n, err);
    if (!u8)
        return PS_ENOMEM;
    int rc = img_resize_crop_u8(im, p, u8, err);
    if (!rc)
        img_normalize(u8, p, out);
    free(u8);
    return rc;
}

/* ---------------------------------------------------------------- writing */

/*
 * img_encode_jpeg - JPEG (baseline, 4:2:0, libjpeg defaults) of the
 * (h, w, 3) RGB image at quality 1..100 (clamped). On success *out is a
 * malloc'd buffer the caller frees with free(), *n its length. PS_EUSAGE for
 * a size libjpeg cannot hold, PS_ENOMEM/PS_EFORMAT from libjpeg.
 */
int
img_encode_jpeg(const uint8_t *rgb, int w, int h, int quality, unsigned char **out, size_t *n,
                char *err)
{
    *out = NULL;
    *n = 0;
    if (w < 1 || h < 1 || w > JPEG_MAX_DIMENSION || h > JPEG_MAX_DIMENSION)
        return ps_seterr(err, PS_EUSAGE, "JPEG: cannot encode a %dx%d image", w, h);
    struct jpeg_compress_struct cinfo;
    JpegErr je;
    unsigned char *mem = NULL; /* libjpeg writes it through its address, so it lives in memory */
    unsigned long len = 0;
    jpeg_errinit(&je);
    cinfo.err = &je.pub;
    if (setjmp(je.jmp)) {
        jpeg_errmsg((j_common_ptr)&cinfo, "encoding", err);
        jpeg_destroy_compress(&cinfo);
        free(mem);
        return PS_EFORMAT;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &mem, &len);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * w * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = mem;
    *n = len;
    return PS_OK;
}

/*
 * img_save_png - writes the (h, w, 3) RGB image to path as an 8-bit RGB PNG
 * (zlib level 6). PS_EIO if the file cannot be written (it is removed),
 * PS_EFORMAT for libpng's complaints (e.g. a zero size).
 */
int
img_save_png(const char *path, const uint8_t *rgb, int w, int h, char *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return ps_seterr(err, PS_EIO, "%s: %s", path, strerror(errno));
    PngIo io = { NULL, 0, 0, "" };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        remove(path);
        return ps_seterr(err, PS_ENOMEM, "%s: out of memory starting libpng", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        return ps_seterr(err, PS_EFORMAT, "%s: PNG: %s", path, io.msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, rgb + (size_t)y * w * 3);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    if (ferror(f) | fclose(f)) {
        remove(path);
        return ps_seterr(err, PS_EIO, "%s: write failed", path);
    }
    return PS_OK;
}

/* ---------------------------------------------------------------- display */

/*
 * img_resize_rgb - scaling for display only (the TUI, sixel output), not
 * for the model. Pixel centres are aligned: source coordinate
 * (x + 0.5) * sw / dw - 0.5. IMG_NEAREST takes the pixel under the centre;
 * IMG_BILINEAR blends the 2x2 neighbours (edges clamped) and rounds. No
 * antialiasing, so strong downscaling aliases; that is fine for thumbnails
 * already near the target size. dst (dh, dw, 3) must not overlap src.
 */
void
img_resize_rgb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, int mode)
{
    PS_ASSERT(sw > 0 && sh > 0 && dw > 0 && dh > 0);
    double fx = (double)sw / dw, fy = (double)sh / dh;
    for (int y = 0; y < dh; y++) {
        double syf = (y + 0.5) * fy - 0.5;
        for (int x = 0; x < dw; x++) {
            double sxf = (x + 0.5) * fx - 0.5;
            uint8_t *d = dst + ((size_t)y * dw + x) * 3;
            if (mode == IMG_NEAREST) {
                int sx = (int)floor(sxf + 0.5), sy = (int)floor(syf + 0.5);
                sx = sx < 0 ? 0 : sx >= sw ? sw - 1 : sx;
                sy = sy < 0 ? 0 : sy >= sh ? sh - 1 : sy;
                memcpy(d, src + ((size_t)sy * sw + sx) * 3, 3);
                continue;
            }
            int x0 = (int)floor(sxf), y0 = (int)floor(syf);
            double ax = sxf - x0, ay = syf - y0;
            int x1 = x0 + 1, y1 = y0 + 1;
            x0 = x0 < 0 ? 0 : x0 >= sw ? sw - 1 : x0;
            x1 = x1 < 0 ? 0 : x1 >= sw ? sw - 1 : x1;
            y0 = y0 < 0 ? 0 : y0 >= sh ? sh - 1 : y0;
            y1 = y1 < 0 ? 0 : y1 >= sh ? sh - 1 : y1;
            const uint8_t *r0 = src + (size_t)y0 * sw * 3, *r1 = src + (size_t)y1 * sw * 3;
            const uint8_t *p00 = r0 + x0 * 3, *p01 = r0 + x1 * 3;
            const uint8_t *p10 = r1 + x0 * 3, *p11 = r1 + x1 * 3;
            for (int c = 0; c < 3; c++) {
                double top = p00[c] + (p01[c] - p00[c]) * ax;
                double bot = p10[c] + (p11[c] - p10[c]) * ax;
                d[c] = (uint8_t)(top + (bot - top) * ay + 0.5);
            }
        }
    }
}
