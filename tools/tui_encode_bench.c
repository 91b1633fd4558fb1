/* SPDX-License-Identifier: MIT */
/*
 * tui_encode_bench.c - times the explorer's picture path on an index: for N
 * images, decode the stored JPEG thumbnail, resize it to SIZE x SIZE, draw
 * the mask overlay of the image's top latent and the patch grid, then encode
 * the sixel (256 colours). Prints the median and p99 per picture of render,
 * encode, and both. Not part of `make`; build and run with
 *   cc -O2 -Iinclude tools/tui_encode_bench.c build/libps.a \
 *      $(pkg-config --libs ncursesw sqlite3 libsixel openblas jansson libzip libpng libjpeg zlib) \
 *      -lpthread -lm -o build/tui-encode-bench
 *   build/tui-encode-bench INDEX [N] [SIZE]
 */
#include <stdio.h>
#include <stdlib.h>

#include "ps.h"
#include "tui.h"

static int
cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tui-encode-bench INDEX [N] [SIZE]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 50, size = argc > 3 ? atoi(argv[3]) : 224;
    char err[PS_ERRLEN];
    Tui t;
    if (tui_open(&t, argv[1], 0, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double *r = xmalloc((size_t)n * 3 * sizeof *r), *e = r + n, *b = r + 2 * n;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        int64_t im = 1 + i * 997 % (t.n_images > 0 ? t.n_images : 1);
        IdxAct top[1];
        int nt = 0;
        idx_image_latents(t.ix, im, t.model_id[0], t.sae_id, top, 1, &nt, NULL);
        TuiPic p = { TUI_PIC_THUMB, im, 0, nt ? top[0].latent : 0, TUI_OV_MASK, 40, 1, 0 };
        uint8_t *rgb;
        char *six;
        size_t len;
        double t0 = ps_now();
        if (tui_gfx_render(&t, &p, size, size, &rgb, err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        double t1 = ps_now();
        if (tui_gfx_sixel(rgb, size, size, 256, &six, &len, err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        double t2 = ps_now();
        r[i] = (t1 - t0) * 1e3;
        e[i] = (t2 - t1) * 1e3;
        b[i] = (t2 - t0) * 1e3;
        bytes += len;
        free(rgb);
        free(six);
    }
    qsort(r, (size_t)n, sizeof *r, cmpd);
    qsort(e, (size_t)n, sizeof *e, cmpd);
    qsort(b, (size_t)n, sizeof *b, cmpd);
    int p99 = (int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1;
    printf("%d pictures %dx%d with mask overlay, %.0f KB sixel each on average\n", n, size, size,
           bytes / 1024.0 / n);
    printf("render (thumbnail decode + resize + overlay + grid): median %.2f ms, p99 %.2f ms\n",
           r[n / 2], r[p99]);
    printf("sixel encode (256 colours):                           median %.2f ms, p99 %.2f ms\n",
           e[n / 2], e[p99]);
    printf("both:                                                 median %.2f ms, p99 %.2f ms\n",
           b[n / 2], b[p99]);
    free(r);
    tui_close(&t);
    return 0;
}
