/* SPDX-License-Identifier: MIT */
/*
 * tui_gfx.c - the explorer's pictures: terminal detection, RGB composition
 * (thumbnail, activation overlay, patch grid and cursor; the Overview
 * scatter), and the two ways of putting RGB on a terminal - sixel through
 * libsixel, and coloured half-blocks (U+2580, top pixel = foreground) - plus
 * the cache of rendered and encoded pictures and the flush that writes them.
 *
 * Terminal detection (anchors.md C.3-C.4, testing-as-a-user.md §1): the
 * user's choice wins (--graphics, then PATCHSAE_GRAPHICS); inside tmux we
 * always use blocks (tmux drops sixel on redraw); otherwise one batch of
 * queries is written to the tty in raw mode - CSI 16 t (cell size), CSI 14 t
 * (text area), XTSMGRAPHICS ?1 (colour registers), and DA1 last as the
 * sentinel every terminal answers - and replies are read with select() for
 * at most the timeout (200 ms), so a terminal that never answers costs
 * 200 ms once. Sixel = DA1 has attribute 4. Cell size: TIOCGWINSZ pixels
 * when plausible, else CSI 16 t, else CSI 14 t / cells, else 10x20.
 *
 * ncurses does not know about sixel, so pictures are sent after doupdate():
 * DECSC, CUP to the picture's cell, the DCS, DECRC (the cursor is where
 * ncurses left it). The draw code fills picture cells with U+2800 (blank
 * braille) so ncurses never uses erase-to-end-of-line across a picture and
 * repaints those cells when a picture goes away. A picture is sent again when
 * it is new, moved or changed, after any full repaint (Ctrl-L, resize, view
 * change) and when rows it covers were repainted. Layouts keep every picture
 * above the last row: a sixel that reaches it scrolls the whole screen.
 *
 * Half-blocks: drawn by the curses code with 256-colour pairs when terminfo
 * has 256 colours; otherwise (TERM=xterm says 8, yet nearly every terminal
 * takes 256) and with COLORTERM=truecolor they are written after doupdate
 * like a sixel, as SGR 38;5 / 48;5 (or 38;2 / 48;2) runs of U+2580.
 *
 * Overlays follow PatchSAE (reference §7.3): the patch map of one latent is
 * upsampled nearest to the picture, min-max normalised, and pixels at 0 are
 * darkened to rgb*30/255 (the mask); or blended with a colormap (heat).
 *
 * The cache keeps rendered RGB and encoded sixel per (picture, size), least
 * recently used out first, within a byte budget; decoded thumbnails are cached
 * by image id. A probed image (TUI_PIC_PROBED) is drawn from its crop, kept
 * in the session as RGB (tui_probe.c), with its exact patch map.
 */
#include "tui.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <termios.h>
#include <unistd.h>

#include <sixel.h>

#include "img.h"
#include "ps.h"

#define CACHE_N 256
#define CACHE_BYTES (64u << 20)
#define THUMB_N 48
#define ENC_RGB 0
#define ENC_SIXEL 1

/* ------------------------------------------------------------ overlays */

static void
minmax(const float *m, int n, float *lo, float *hi)
{
    *lo = *hi = n > 0 ? m[0] : 0;
    for (int i = 1; i < n; i++) {
        *lo = m[i] < *lo ? m[i] : *lo;
        *hi = m[i] > *hi ? m[i] : *hi;
    }
}

/* Nearest upsampling as torch's F.interpolate(mode="nearest"): src = floor(dst * in / out). */
static int
near(int d, int out, int in)
{
    int s = (int)((long long)d * in / out);
    return s < in ? s : in - 1;
}

void
tui_overlay_mask(uint8_t *rgb, int w, int h, const float *map, int grid)
{
    if (grid <= 0 || w <= 0 || h <= 0)
        return;
    float lo, hi;
    minmax(map, grid * grid, &lo, &hi);
    for (int y = 0; y < h; y++) {
        int gy = near(y, h, grid);
        for (int x = 0; x < w; x++) {
            float m = (map[gy * grid + near(x, w, grid)] - lo) / (hi - lo + 1e-10f);
            if (m == 0) {
                uint8_t *p = rgb + ((size_t)y * w + x) * 3;
                for (int c = 0; c < 3; c++)
                    p[c] = (uint8_t)(p[c] * 30 / 255);
            }
        }
    }
}

void
tui_colormap(float t, uint8_t out[3])
{
    /* blue -> cyan -> green -> yellow -> red, piecewise linear */
    static const float k[5][3] = { { 40, 60, 220 }, { 0, 200, 230 }, { 40, 210, 60 },
                                   { 250, 230, 40 }, { 230, 30, 30 } };
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    float f = t * 4;
    int i = (int)f;
    if (i > 3)
        i = 3;
    float a = f - i;
    for (int c = 0; c < 3; c++)
        out[c] = (uint8_t)(k[i][c] + (k[i + 1][c] - k[i][c]) * a + 0.5f);
}

void
tui_overlay_heat(uint8_t *rgb, int w, int h, const float *map, int grid)
{
    if (grid <= 0 || w <= 0 || h <= 0)
        return;
    float lo, hi;
    minmax(map, grid * grid, &lo, &hi);
    for (int y = 0; y < h; y++) {
        int gy = near(y, h, grid);
        for (int x = 0; x < w; x++) {
            float m = (map[gy * grid + near(x, w, grid)] - lo) / (hi - lo + 1e-10f);
            if (m <= 0)
                continue;
            uint8_t col[3], *p = rgb + ((size_t)y * w + x) * 3;
            tui_colormap(m, col);
            float a = 0.65f * m;
            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)(p[c] * (1 - a) + col[c] * a + 0.5f);
        }
    }
}

void
tui_draw_grid(uint8_t *rgb, int w, int h, int grid, int lines, int cursor)
{
    if (grid <= 0 || w < grid || h < grid)
        return;
    if (lines && w / grid >= 6) /* faint lines only when a patch is at least 6 px */
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int on = (x > 0 && near(x, w, grid) != near(x - 1, w, grid)) ||
                         (y > 0 && near(y, h, grid) != near(y - 1, h, grid));
                if (!on)
                    continue;
                uint8_t *p = rgb + ((size_t)y * w + x) * 3;
                for (int c = 0; c < 3; c++)
                    p[c] = (uint8_t)((p[c] * 3 + 255) / 4);
            }
    if (cursor < 0 || cursor >= grid * grid)
        return;
    int cx = cursor % grid, cy = cursor / grid;
    int x0 = (cx * w + grid - 1) / grid, x1 = ((cx + 1) * w + grid - 1) / grid - 1;
    int y0 = (cy * h + grid - 1) / grid, y1 = ((cy + 1) * h + grid - 1) / grid - 1;
    int th = (x1 - x0) >= 8 ? 2 : 1;
    for (int y = y0; y <= y1 && y < h; y++)
        for (int x = x0; x <= x1 && x < w; x++) {
            int edge = x < x0 + th || x > x1 - th || y < y0 + th || y > y1 - th;
            if (!edge && (x1 - x0) >= 3)
                continue;
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = 255;
            p[1] = 32;
            p[2] = 32;
        }
}

int
tui_rgb256(const uint8_t c[3])
{
    static const int lv[6] = { 0, 95, 135, 175, 215, 255 };
    int q[3], d6 = 0;
    for (int i = 0; i < 3; i++) {
        int best = 0;
        for (int k = 1; k < 6; k++)
            if (abs(lv[k] - c[i]) < abs(lv[best] - c[i]))
                best = k;
        q[i] = best;
        d6 += (lv[best] - c[i]) * (lv[best] - c[i]);
    }
    int grey = (c[0] + c[1] + c[2]) / 3, gi = grey < 8 ? 0 : grey > 238 ? 23 : (grey - 8) / 10;
    int gv = 8 + 10 * gi, dg = 0;
    for (int i = 0; i < 3; i++)
        dg += (gv - c[i]) * (gv - c[i]);
    return dg < d6 ? 232 + gi : 16 + 36 * q[0] + 6 * q[1] + q[2];
}

/* ------------------------------------------------------------- scatter */

static void
put_px(uint8_t *rgb, int w, int h, int x, int y, const uint8_t c[3])
{
    if (x < 0 || y < 0 || x >= w || y >= h)
        return;
    memcpy(rgb + ((size_t)y * w + x) * 3, c, 3);
}

typedef struct Dot {
    float x, y, e;
} Dot;

static int
cmp_dot(const void *a, const void *b)
{
    const Dot *p = a, *q = b;
    return (p->e < q->e) - (p->e > q->e); /* high entropy first: low entropy drawn on top */
}

int
tui_scatter_range(const TuiRow *rows, int n, float *x0, float *x1, float *y0, float *y1)
{
    int nd = 0;
    *x0 = *y0 = INFINITY;
    *x1 = *y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!(rows[i].freq > 0) || !(rows[i].mean_act > 0))
            continue;
        *x0 = fminf(*x0, log10f(rows[i].freq));
        *x1 = fmaxf(*x1, log10f(rows[i].freq));
        *y0 = fminf(*y0, log10f(rows[i].mean_act));
        *y1 = fmaxf(*y1, log10f(rows[i].mean_act));
        nd++;
    }
    if (!nd) {
        *x0 = -1, *x1 = 0, *y0 = -1, *y1 = 0;
        return 0;
    }
    *x0 = floorf(*x0);
    *x1 = ceilf(*x1);
    *y0 = floorf(*y0);
    *y1 = ceilf(*y1);
    if (!(*x1 > *x0)) /* one decade around a single value; frequencies end at 1e0 */
        *x0 = *x1 - 1;
    if (!(*y1 > *y0))
        *y1 = *y0 + 1;
    return nd;
}

/* The plot: x in 1 .. w-2 right of the axis at column 0, y in 1 .. h-2 above the axis at row h-1. */
int
tui_scatter_x(float v, float v0, float v1, int w)
{
    return 1 + (int)((v - v0) / (v1 - v0) * (float)(w - 3) + 0.5f);
}

int
tui_scatter_y(float v, float v0, float v1, int h)
{
    return 1 + (h - 3) - (int)((v - v0) / (v1 - v0) * (float)(h - 3) + 0.5f);
}

void
tui_scatter(const TuiRow *rows, int n, uint8_t *rgb, int w, int h)
{
    memset(rgb, 18, (size_t)w * h * 3);
    if (w < 8 || h < 8)
        return;
    Dot *d = xmalloc((size_t)(n ? n : 1) * sizeof *d);
    int nd = 0;
    float x0, x1, y0, y1, emax = 0;
    tui_scatter_range(rows, n, &x0, &x1, &y0, &y1);
    for (int i = 0; i < n; i++) {
        const TuiRow *r = &rows[i];
        if (!(r->freq > 0) || !(r->mean_act > 0))
            continue;
        d[nd].x = log10f(r->freq);
        d[nd].y = log10f(r->mean_act);
        d[nd].e = isnan(r->entropy) ? -1 : r->entropy;
        emax = fmaxf(emax, d[nd].e);
        nd++;
    }
    uint8_t axis[3] = { 150, 150, 150 }, tick[3] = { 70, 70, 70 };
    if (nd > 0) {
        for (float v = x0; v <= x1 + 1e-3f; v += 1) { /* decade grid lines */
            int x = tui_scatter_x(v, x0, x1, w);
            for (int y = 1; y < h - 1; y++)
                put_px(rgb, w, h, x, y, tick);
        }
        for (float v = y0; v <= y1 + 1e-3f; v += 1) {
            int y = tui_scatter_y(v, y0, y1, h);
            for (int x = 1; x < w; x++)
                put_px(rgb, w, h, x, y, tick);
        }
    }
    for (int x = 0; x < w; x++)
        put_px(rgb, w, h, x, h - 1, axis);
    for (int y = 0; y < h; y++)
        put_px(rgb, w, h, 0, y, axis);
    qsort(d, (size_t)nd, sizeof *d, cmp_dot);
    int dot = w >= 300 ? 2 : 1;
    for (int i = 0; i < nd; i++) {
        int x = tui_scatter_x(d[i].x, x0, x1, w) - (dot > 1 && d[i].x >= x1 - 1e-6f);
        int y = tui_scatter_y(d[i].y, y0, y1, h);
        uint8_t c[3] = { 120, 120, 120 };
        if (d[i].e >= 0)
            tui_colormap(emax > 0 ? 1 - d[i].e / emax : 1, c);
        for (int a = 0; a < dot; a++)
            for (int b = 0; b < dot; b++)
                put_px(rgb, w, h, x + a, y + b, c);
    }
    free(d);
}

/* --------------------------------------------------------------- cache */

typedef struct Entry {
    int used;
    TuiPic pic;
    int w, h, enc;
    unsigned char *data;
    size_t n;
    unsigned long long tick;
} Entry;

typedef struct Thumb {
    int64_t image;
    Image im;     /* im.rgb NULL: no thumbnail */
    int grid;
    unsigned long long tick;
} Thumb;

typedef struct TuiGfxCache {
    Entry e[CACHE_N];
    size_t bytes;
    Thumb th[THUMB_N];
    unsigned long long tick;
    TuiPlace prev[TUI_MAX_FRAME];
    int n_prev;
    unsigned char stale[1024]; /* rows repainted since the last flush */
} TuiGfxCache;

static TuiGfxCache *
cache(Tui *t)
{
    if (!t->cache)
        t->cache = xcalloc(1, sizeof *t->cache);
    return t->cache;
}

void
tui_gfx_cache_free(Tui *t)
{
    TuiGfxCache *c = t->cache;
    if (!c)
        return;
    for (int i = 0; i < CACHE_N; i++)
        free(c->e[i].data);
    for (int i = 0; i < THUMB_N; i++)
        img_free(&c->th[i].im);
    free(c);
    t->cache = NULL;
}

static int
pic_eq(const TuiPic *a, const TuiPic *b)
{
    return a->kind == b->kind && a->image == b->image && a->model == b->model &&
           a->latent == b->latent && a->overlay == b->overlay && a->cursor == b->cursor &&
           a->grid == b->grid && a->version == b->version;
}

static Entry *
lookup(TuiGfxCache *c, const TuiPic *p, int w, int h, int enc)
{
    for (int i = 0; i < CACHE_N; i++) {
        Entry *e = &c->e[i];
        if (e->used && e->w == w && e->h == h && e->enc == enc && pic_eq(&e->pic, p)) {
            e->tick = ++c->tick;
            return e;
        }
    }
    return NULL;
}

static void
evict(TuiGfxCache *c, Entry *e)
{
    c->bytes -= e->n;
    free(e->data);
    memset(e, 0, sizeof *e);
}

static Entry *
store(TuiGfxCache *c, const TuiPic *p, int w, int h, int enc, unsigned char *data, size_t n)
{
    while (c->bytes + n > CACHE_BYTES) { /* drop least recently used until it fits */
        Entry *old = NULL;
        for (int i = 0; i < CACHE_N; i++)
            if (c->e[i].used && (!old || c->e[i].tick < old->tick))
                old = &c->e[i];
        if (!old)
            break;
        evict(c, old);
    }
    Entry *slot = NULL;
    for (int i = 0; i < CACHE_N && !slot; i++)
        if (!c->e[i].used)
            slot = &c->e[i];
    if (!slot) {
        slot = &c->e[0];
        for (int i = 1; i < CACHE_N; i++)
            if (c->e[i].tick < slot->tick)
                slot = &c->e[i];
        evict(c, slot);
    }
    slot->used = 1;
    slot->pic = *p;
    slot->w = w;
    slot->h = h;
    slot->enc = enc;
    slot->data = data;
    slot->n = n;
    slot->tick = ++c->tick;
    c->bytes += n;
    return slot;
}

/* Decoded thumbnail of an image (cached); th->im.rgb NULL when it has none. */
static Thumb *
thumb(Tui *t, int64_t image, char *err)
{
    TuiGfxCache *c = cache(t);
    Thumb *slot = &c->th[0];
    for (int i = 0; i < THUMB_N; i++) {
        if (c->th[i].tick && c->th[i].image == image) {
            c->th[i].tick = ++c->tick;
            return &c->th[i];
        }
        if (c->th[i].tick < slot->tick)
            slot = &c->th[i];
    }
    img_free(&slot->im);
    memset(slot, 0, sizeof *slot);
    slot->image = image;
    slot->tick = ++c->tick;
    IdxImage im;
    if (t->src == TUI_SRC_INDEX && t->image == image)
        slot->grid = t->img.grid;
    else if (idx_image(t->ix, image, &im, NULL) == PS_OK)
        slot->grid = im.grid;
    void *jpeg = NULL;
    size_t n = 0;
    int size = 0;
    if (idx_thumb(t->ix, image, &jpeg, &n, &size, err) == PS_OK && jpeg) {
        if (img_decode_mem(&slot->im, jpeg, n, err) != PS_OK)
            img_free(&slot->im);
    }
    free(jpeg);
    return slot;
}

/* Patch map (grid*grid, patch tokens only) of latent s on an image under model m; 0 if none. */
static int
patch_map(Tui *t, int64_t image, int m, int32_t s, int grid, float *out)
{
    float map[TUI_MAX_TOK];
    int nt = 0;
    if (grid <= 0 || 1 + grid * grid > TUI_MAX_TOK || m < 0 || m > 1)
        return 0;
    if (t->src == TUI_SRC_INDEX && image == t->image) {
        if (tui_data_map(t, m, s, map, &nt))
            return 0;
    } else if (!t->model_id[m] ||
               idx_latent_map(t->ix, image, t->model_id[m], t->sae_id, s, map, TUI_MAX_TOK, &nt,
                              NULL) != PS_OK) {
        return 0;
    }
    if (nt < 1 + grid * grid)
        return 0;
    memcpy(out, map + 1, (size_t)grid * grid * sizeof *out);
    return 1;
}

int
tui_gfx_render(Tui *t, const TuiPic *p, int w, int h, uint8_t **rgb, char *err)
{
    *rgb = NULL;
    if (w <= 0 || h <= 0 || w > 4096 || h > 4096)
        return ps_seterr(err, PS_EUSAGE, "picture size %dx%d", w, h);
    uint8_t *out = xmalloc((size_t)w * h * 3);
    if (p->kind == TUI_PIC_SCATTER) {
        TuiStats *s = &t->st[t->model && t->st[1].present ? 1 : 0];
        tui_scatter(s->rows, s->n, out, w, h);
        *rgb = out;
        return PS_OK;
    }
    int grid = 0, side = 0;
    const uint8_t *crop = NULL;
    Thumb *th = NULL;
    if (p->kind == TUI_PIC_PROBED) {
        crop = tui_probe_crop(t, (int)p->image, &side, &grid, NULL);
    } else {
        th = thumb(t, p->image, err);
        grid = th->grid;
    }
    if (crop) {
        img_resize_rgb(crop, side, side, out, w, h, IMG_BILINEAR);
    } else if (th && th->im.rgb) {
        img_resize_rgb(th->im.rgb, th->im.w, th->im.h, out, w, h, IMG_BILINEAR);
    } else { /* no thumbnail: grey with a cross, the grid and overlay still drawn */
        memset(out, 60, (size_t)w * h * 3);
        for (int y = 0; y < h; y++) {
            int x = (int)((long long)y * w / h);
            memset(out + ((size_t)y * w + x) * 3, 110, 3);
            memset(out + ((size_t)y * w + (w - 1 - x)) * 3, 110, 3);
        }
    }
    if (p->latent >= 0 && p->overlay != TUI_OV_NONE && grid > 0) {
        float map[TUI_MAX_TOK], full[TUI_MAX_TOK];
        int nt = 0, ok = 0;
        if (p->kind == TUI_PIC_PROBED) {
            ok = tui_probe_map(t, (int)p->image, p->model, p->latent, full, TUI_MAX_TOK, &nt) == 0 &&
                 nt >= 1 + grid * grid;
            if (ok)
                memcpy(map, full + 1, (size_t)grid * grid * sizeof *map);
        } else {
            ok = patch_map(t, p->image, p->model, p->latent, grid, map);
        }
        if (ok) {
            if (p->overlay == TUI_OV_MASK)
                tui_overlay_mask(out, w, h, map, grid);
            else
                tui_overlay_heat(out, w, h, map, grid);
        }
    }
    if (p->grid || p->cursor >= 0)
        tui_draw_grid(out, w, h, grid, p->grid, p->cursor);
    *rgb = out;
    return PS_OK;
}

const uint8_t *
tui_gfx_cached(Tui *t, const TuiPic *p, int w, int h)
{
    Entry *e = lookup(cache(t), p, w, h, ENC_RGB);
    return e ? e->data : NULL;
}

const uint8_t *
tui_gfx_pixels(Tui *t, const TuiPic *p, int w, int h)
{
    TuiGfxCache *c = cache(t);
    Entry *e = lookup(c, p, w, h, ENC_RGB);
    if (e)
        return e->data;
    char err[PS_ERRLEN];
    uint8_t *rgb;
    if (tui_gfx_render(t, p, w, h, &rgb, err)) {
        tui_status(t, 1, "%s", err);
        return NULL;
    }
    return store(c, p, w, h, ENC_RGB, rgb, (size_t)w * h * 3)->data;
}

/* ---------------------------------------------------------------- sixel */

typedef struct Buf {
    char *p;
    size_t n, cap;
} Buf;

static void
buf_add(Buf *b, const void *d, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void
buf_printf(Buf *b, const char *fmt, ...) PS_PRINTF(2, 3);
static void
buf_printf(Buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_add(b, tmp, (size_t)(n < (int)sizeof tmp ? n : (int)sizeof tmp - 1));
}

static int
sixel_write(char *data, int size, void *priv)
{
    buf_add(priv, data, (size_t)size);
    return size;
}

int
tui_gfx_sixel(const uint8_t *rgb, int w, int h, int colors, char **out, size_t *n, char *err)
{
    *out = NULL;
    *n = 0;
    Buf b = { 0 };
    sixel_output_t *o = NULL;
    sixel_dither_t *d = NULL;
    colors = colors < 2 ? 2 : colors > 256 ? 256 : colors;
    SIXELSTATUS st = sixel_output_new(&o, sixel_write, &b, NULL);
    if (SIXEL_SUCCEEDED(st))
        st = sixel_dither_new(&d, colors, NULL);
    if (SIXEL_SUCCEEDED(st))
        st = sixel_dither_initialize(d, (unsigned char *)rgb, w, h, SIXEL_PIXELFORMAT_RGB888,
                                     SIXEL_LARGE_AUTO, SIXEL_REP_AUTO, SIXEL_QUALITY_AUTO);
    if (SIXEL_SUCCEEDED(st))
        st = sixel_encode((unsigned char *)rgb, w, h, 3, d, o);
    if (d)
        sixel_dither_unref(d);
    if (o)
        sixel_output_unref(o);
    if (SIXEL_FAILED(st)) {
        free(b.p);
        return ps_seterr(err, PS_EFORMAT, "sixel encoding failed: %s",
                         sixel_helper_format_error(st));
    }
    *out = b.p;
    *n = b.n;
    return PS_OK;
}

int
tui_gfx_blocks(const uint8_t *rgb, int w, int h, int y, int x, int truecolor, char **out,
               size_t *n)
{
    Buf b = { 0 };
    buf_add(&b, "\0337", 2);
    for (int r = 0; r < h; r += 2) {
        buf_printf(&b, "\033[%d;%dH", y + r / 2 + 1, x + 1);
        for (int c = 0; c < w; c++) {
            const uint8_t *u = rgb + ((size_t)r * w + c) * 3;
            const uint8_t *l = r + 1 < h ? u + (size_t)w * 3 : u;
            if (truecolor)
                buf_printf(&b, "\033[38;2;%d;%d;%d;48;2;%d;%d;%dm\xe2\x96\x80", u[0], u[1], u[2],
                           l[0], l[1], l[2]);
            else
                buf_printf(&b, "\033[38;5;%d;48;5;%dm\xe2\x96\x80", tui_rgb256(u), tui_rgb256(l));
        }
    }
    buf_add(&b, "\033[0m\0338", 6);
    *out = b.p;
    *n = b.n;
    return PS_OK;
}

/* ------------------------------------------------------------- terminal */

int
tui_gfx_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "sixel"))
        return TUI_GFX_SIXEL;
    if (!strcmp(s, "blocks") || !strcmp(s, "block"))
        return TUI_GFX_BLOCKS;
    if (!strcmp(s, "none") || !strcmp(s, "text"))
        return TUI_GFX_NONE;
    return -1;
}

TuiGfx
tui_gfx_choose(const TuiTerm *tt, int forced)
{
    if (forced >= 0)
        return (TuiGfx)forced;
    int env = tui_gfx_parse(getenv("PATCHSAE_GRAPHICS"));
    if (env >= 0)
        return (TuiGfx)env;
    if (tt->in_tmux)
        return TUI_GFX_BLOCKS;
    return tt->sixel ? TUI_GFX_SIXEL : TUI_GFX_BLOCKS;
}

static int
params(const char *s, const char *end, int *v, int cap)
{
    int n = 0;
    while (s < end && n < cap) {
        long x = 0;
        int any = 0;
        while (s < end && *s >= '0' && *s <= '9' && x < 1000000) {
            x = x * 10 + (*s++ - '0');
            any = 1;
        }
        v[n++] = any ? (int)x : 0;
        if (s < end && *s == ';')
            s++;
        else
            break;
    }
    return n;
}

void
tui_term_parse(TuiTerm *tt, const char *buf, size_t n, int rows, int cols)
{
    int cell_w = 0, cell_h = 0, area_w = 0, area_h = 0;
    tt->n_left = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = i + 2;
        int priv = j < n && buf[j] == '?';
        if (priv)
            j++;
        size_t s = j;
        while (j < n && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == ';'))
            j++;
        int reply = i + 2 < n && buf[i] == 27 && buf[i + 1] == '[' && j < n &&
                    (buf[j] == 't' || buf[j] == 'S' || (priv && buf[j] == 'c'));
        if (!reply) { /* a key typed during the probe: handed back to the program */
            if (tt->n_left < (int)sizeof tt->left)
                tt->left[tt->n_left++] = buf[i];
            continue;
        }
        int v[32];
        int np = params(buf + s, buf + j, v, 32);
        char fin = buf[j];
        if (!priv && fin == 't' && np >= 3 && v[0] == 6) {
            cell_h = v[1];
            cell_w = v[2];
        } else if (!priv && fin == 't' && np >= 3 && v[0] == 4) {
            area_h = v[1];
            area_w = v[2];
        } else if (priv && fin == 'S' && np >= 3 && v[0] == 1 && v[1] == 0) {
            tt->colors = v[2] > 256 ? 256 : v[2];
        } else if (priv && fin == 'c') {
            tt->da1_seen = 1;
            for (int k = 1; k < np; k++)
                if (v[k] == 4)
                    tt->sixel = 1;
        }
        i = j;
    }
    if (strcmp(tt->cell_src ? tt->cell_src : "", "TIOCGWINSZ")) {
        if (cell_w >= 2 && cell_h >= 2 && cell_w < 1000 && cell_h < 1000) {
            tt->cell_w = cell_w;
            tt->cell_h = cell_h;
            tt->cell_src = "CSI 16 t";
        } else if (area_w > 0 && area_h > 0 && cols > 0 && rows > 0 && area_w / cols >= 2 &&
                   area_h / rows >= 2 && area_w < 32000 && area_h < 32000) {
            tt->cell_w = area_w / cols;
            tt->cell_h = area_h / rows;
            tt->cell_src = "CSI 14 t";
        }
    }
}

void
tui_term_winsz(TuiTerm *tt, int fd)
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0)
        return;
    int rows = ws.ws_row, cols = ws.ws_col;
    /* plausibility as timg: tmux fakes pixel sizes, plain ptys report 0 */
    if (!tt->in_tmux && cols > 0 && rows > 0 && ws.ws_xpixel >= 2 * cols &&
        ws.ws_ypixel >= 4 * rows) {
        tt->cell_w = ws.ws_xpixel / cols;
        tt->cell_h = ws.ws_ypixel / rows;
        tt->cell_src = "TIOCGWINSZ";
    }
}

void
tui_term_probe(TuiTerm *tt, int fd, int timeout_ms)
{
    double t0 = ps_now();
    const char *ct = getenv("COLORTERM");
    tt->truecolor = ct && (!strcmp(ct, "truecolor") || !strcmp(ct, "24bit"));
    tt->in_tmux = getenv("TMUX") != NULL;
    if (!tt->cell_w || !tt->cell_h) {
        tt->cell_w = 10;
        tt->cell_h = 20;
        tt->cell_src = "default";
    }
    if (!tt->colors)
        tt->colors = 256;
    struct winsize ws;
    int rows = 0, cols = 0;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0) {
        rows = ws.ws_row;
        cols = ws.ws_col;
    }
    tui_term_winsz(tt, fd);
    struct termios old, raw;
    if (timeout_ms <= 0 || !isatty(fd) || tcgetattr(fd, &old) != 0) {
        tt->probe_ms = (ps_now() - t0) * 1e3;
        return;
    }
    raw = old;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    tcsetattr(fd, TCSANOW, &raw);
    static const char q[] = "\033[16t\033[14t\033[?1;1;0S\033[c";
    ssize_t wr = write(fd, q, sizeof q - 1);
    char buf[1024];
    size_t n = 0;
    double deadline = t0 + timeout_ms / 1e3;
    while (wr > 0 && n < sizeof buf - 1) {
        double left = deadline - ps_now();
        if (left <= 0)
            break;
        fd_set rf;
        FD_ZERO(&rf);
        FD_SET(fd, &rf);
        struct timeval tv = { (time_t)left, (suseconds_t)((left - (time_t)left) * 1e6) };
        int r = select(fd + 1, &rf, NULL, NULL, &tv);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = 0;
        /* DA1 is the sentinel: "ESC [ ? ... c" */
        char *p = strstr(buf, "\033[?");
        int done = 0;
        while (p && !done) {
            char *e = p + 3;
            while (*e && ((*e >= '0' && *e <= '9') || *e == ';'))
                e++;
            if (*e == 'c')
                done = 1;
            p = strstr(p + 1, "\033[?");
        }
        if (done)
            break;
    }
    tcsetattr(fd, TCSANOW, &old);
    tui_term_parse(tt, buf, n, rows, cols);
    tt->probe_ms = (ps_now() - t0) * 1e3;
}

/* ---------------------------------------------------------------- flush */

static int
place_eq(const TuiPlace *a, const TuiPlace *b)
{
    return a->r.y == b->r.y && a->r.x == b->r.x && a->r.h == b->r.h && a->r.w == b->r.w &&
           pic_eq(&a->pic, &b->pic);
}

void
tui_gfx_stale_rows(Tui *t, unsigned char *rows, int n_rows)
{
    TuiGfxCache *c = cache(t);
    memset(c->stale, 0, sizeof c->stale);
    for (int i = 0; i < c->n_prev; i++) {
        int kept = 0;
        for (int k = 0; k < t->n_frame && !kept; k++)
            kept = place_eq(&c->prev[i], &t->frame[k]);
        if (kept)
            continue;
        for (int y = c->prev[i].r.y; y < c->prev[i].r.y + c->prev[i].r.h; y++)
            if (y >= 0 && y < (int)sizeof c->stale) {
                c->stale[y] = 1;
                if (rows && y < n_rows)
                    rows[y] = 1;
            }
    }
}

static void
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (errno == EAGAIN) {
                fd_set wf;
                FD_ZERO(&wf);
                FD_SET(fd, &wf);
                select(fd + 1, NULL, &wf, NULL, NULL);
            }
            continue;
        }
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

int
tui_gfx_oob(const Tui *t)
{
    return t->gfx == TUI_GFX_SIXEL ||
           (t->gfx == TUI_GFX_BLOCKS && (t->term.truecolor || !t->colors256));
}

size_t
tui_gfx_flush(Tui *t, int fd, double *encode_ms)
{
    TuiGfxCache *c = cache(t);
    double enc = 0;
    Buf out = { 0 };
    int oob = tui_gfx_oob(t);
    t->n_encoded = t->n_sent = 0;
    for (int i = 0; i < t->n_frame && oob; i++) {
        const TuiPlace *pl = &t->frame[i];
        int need = t->full_redraw, pw, ph;
        if (!need) {
            int same = 0;
            for (int k = 0; k < c->n_prev && !same; k++)
                same = place_eq(&c->prev[k], pl);
            need = !same;
            for (int y = pl->r.y; y < pl->r.y + pl->r.h && !need; y++)
                need = y >= 0 && y < (int)sizeof c->stale && c->stale[y];
        }
        if (!need)
            continue;
        if (pl->r.y + pl->r.h > t->rows - 1) /* never let a picture reach the last row */
            continue;
        double t0 = ps_now();
        if (t->gfx == TUI_GFX_SIXEL) {
            tui_pic_pixels(t, pl->r, &pw, &ph);
            if (pw <= 0 || ph <= 0)
                continue;
            Entry *e = lookup(c, &pl->pic, pw, ph, ENC_SIXEL);
            if (!e) {
                const uint8_t *rgb = tui_gfx_pixels(t, &pl->pic, pw, ph);
                char *six;
                size_t n;
                char err[PS_ERRLEN];
                if (!rgb)
                    continue;
                if (tui_gfx_sixel(rgb, pw, ph, t->term.colors, &six, &n, err)) {
                    tui_status(t, 1, "%s", err);
                    continue;
                }
                e = store(c, &pl->pic, pw, ph, ENC_SIXEL, (unsigned char *)six, n);
                t->n_encoded++;
            }
            t->n_sent++;
            buf_printf(&out, "\0337\033[%d;%dH", pl->r.y + 1, pl->r.x + 1);
            buf_add(&out, e->data, e->n);
            buf_add(&out, "\0338\033[?25l", 8);
        } else {
            const uint8_t *rgb = tui_gfx_pixels(t, &pl->pic, pl->r.w, pl->r.h * 2);
            char *tc;
            size_t n;
            if (!rgb)
                continue;
            tui_gfx_blocks(rgb, pl->r.w, pl->r.h * 2, pl->r.y, pl->r.x, t->term.truecolor, &tc, &n);
            buf_add(&out, tc, n);
            free(tc);
        }
        enc += ps_now() - t0;
    }
    size_t sent = out.n;
    if (out.n)
        write_all(fd, out.p, out.n);
    free(out.p);
    memcpy(c->prev, t->frame, (size_t)t->n_frame * sizeof *t->frame);
    c->n_prev = t->n_frame;
    memset(c->stale, 0, sizeof c->stale);
    if (encode_ms)
        *encode_ms = enc * 1e3;
    return sent;
}
