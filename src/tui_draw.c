/* SPDX-License-Identifier: MIT */
/*
 * tui_draw.c - the only code that calls curses to draw: the tab bar, the
 * status line and one tui_<view>_draw per view, painting stdscr from the
 * state in Tui and the layout of tui_layout (so mouse hit-testing in tui.c
 * and drawing agree). Pictures are recorded in t->frame; in sixel mode their
 * cells get U+2800 (blank braille) so ncurses never clears across them with
 * erase-to-end-of-line, in block mode they are drawn here as U+2580 half
 * blocks with 256-colour pairs (alloc_pair), and with no graphics (or fewer
 * than 256 colours) as a luminance ramp of ASCII characters.
 *
 * Colours are one X-macro table (ncdu's UI_COLORS). Strings are drawn as
 * wide characters clipped to a width in columns (wcwidth), so UTF-8 class
 * names never overflow their column.
 */
#include "tui.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <curses.h>

#include "ps.h"

/* name, foreground, background, attributes */
#define TUI_COLORS \
    C(TAB, COLOR_BLACK, COLOR_WHITE, 0) \
    C(TABON, COLOR_WHITE, COLOR_BLUE, A_BOLD) \
    C(HDR, -1, -1, A_BOLD | A_UNDERLINE) \
    C(SEL, COLOR_BLACK, COLOR_CYAN, 0) \
    C(DIM, -1, -1, A_DIM) \
    C(ERR, COLOR_RED, -1, A_BOLD) \
    C(OK, COLOR_GREEN, -1, A_BOLD) \
    C(BASE, COLOR_CYAN, -1, A_BOLD) \
    C(ADAPT, COLOR_MAGENTA, -1, A_BOLD) \
    C(BAR, COLOR_BLUE, -1, 0) \
    C(TITLE, -1, -1, A_BOLD)

enum {
#define C(n, f, b, a) P_##n,
    P_NONE_ = 0,
    TUI_COLORS
#undef C
    P_COUNT
};

static const struct {
    short fg, bg;
    attr_t attr;
} colors[] = {
    { 0, 0, 0 },
#define C(n, f, b, a) { f, b, a },
    TUI_COLORS
#undef C
};

static int has_color;

static attr_t
A(int p)
{
    return colors[p].attr | (has_color ? COLOR_PAIR(p) : (p == P_SEL || p == P_TABON ? A_REVERSE : 0));
}

void
tui_draw_init(Tui *t)
{
    has_color = has_colors();
    if (has_color) {
        start_color();
        use_default_colors();
        for (int i = 1; i < P_COUNT; i++)
            init_pair((short)i, colors[i].fg, colors[i].bg);
    }
    t->colors256 = has_color && COLORS >= 256 && COLOR_PAIRS >= 256;
}

/* --------------------------------------------------------------- strings */

/* Draws s at (y, x) clipped to w columns (and to the screen); returns columns used. */
static int
putw_(int y, int x, int w, attr_t a, const char *s)
{
    if (y < 0 || y >= LINES || x >= COLS || w <= 0)
        return 0;
    if (x + w > COLS)
        w = COLS - x;
    wchar_t wb[512];
    mbstate_t ms;
    memset(&ms, 0, sizeof ms);
    const char *src = s;
    size_t n = mbsrtowcs(wb, &src, LEN(wb) - 1, &ms);
    if (n == (size_t)-1) { /* invalid UTF-8: show bytes as '?' */
        n = 0;
        for (const char *p = s; *p && n < LEN(wb) - 1; p++)
            wb[n++] = (unsigned char)*p < 128 ? (wchar_t)*p : L'?';
    }
    wb[n] = 0;
    int cols = 0;
    size_t k = 0;
    for (; k < n; k++) {
        int cw = wcwidth(wb[k]);
        if (cw < 0)
            wb[k] = L'?', cw = 1;
        if (cols + cw > w)
            break;
        cols += cw;
    }
    wb[k] = 0;
    attrset(a);
    mvaddnwstr(y, x, wb, (int)k);
    attrset(A_NORMAL);
    return cols;
}

static int
put(int y, int x, int w, attr_t a, const char *fmt, ...) PS_PRINTF(5, 6);
static int
put(int y, int x, int w, attr_t a, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return putw_(y, x, w, a, buf);
}

/* Fills w cells at (y, x) with spaces in attribute a (a selection bar). */
static void
fill(int y, int x, int w, attr_t a)
{
    if (y < 0 || y >= LINES)
        return;
    attrset(a);
    for (int i = 0; i < w && x + i < COLS; i++)
        mvaddch(y, x + i, ' ');
    attrset(A_NORMAL);
}

static const char *
cname(const Tui *t, int c)
{
    return c >= 0 && c < t->n_classes && t->classes[c] ? t->classes[c] : c < 0 ? "-" : "?";
}

static void
fmt_num(char *b, size_t n, double v)
{
    if (isnan(v))
        snprintf(b, n, "-");
    else if (v != 0 && (fabs(v) < 1e-3 || fabs(v) >= 1e5))
        snprintf(b, n, "%.2e", v);
    else
        snprintf(b, n, "%.4f", v);
}

/* ------------------------------------------------------------- pictures */

static void
cell_wch(int y, int x, const wchar_t *w, attr_t a, int pair)
{
    cchar_t cc;
    setcchar(&cc, w, a, 0, &pair);
    mvadd_wch(y, x, &cc);
}

static void
draw_pic(Tui *t, TuiRect r, const TuiPic *pic)
{
    if (r.w <= 0 || r.h <= 0 || r.y + r.h > LINES - 1)
        return;
    if (t->n_frame < TUI_MAX_FRAME) {
        t->frame[t->n_frame].r = r;
        t->frame[t->n_frame].pic = *pic;
        t->n_frame++;
    }
    if (tui_gfx_oob(t)) { /* sent after doupdate by tui_gfx_flush */
        for (int y = 0; y < r.h; y++)
            for (int x = 0; x < r.w; x++)
                cell_wch(r.y + y, r.x + x, L"\x2800", A_NORMAL, 0);
        return;
    }
    int braille = pic->kind == TUI_PIC_SCATTER && !(t->gfx == TUI_GFX_BLOCKS && t->colors256);
    int pw = braille ? 2 * r.w : r.w;
    int ph = t->gfx == TUI_GFX_BLOCKS && t->colors256 ? r.h * 2 : braille ? 4 * r.h : r.h;
    const uint8_t *rgb = t->defer_pics ? tui_gfx_cached(t, pic, pw, ph)
                                       : tui_gfx_pixels(t, pic, pw, ph);
    if (!rgb) { /* text first: the picture comes in a second pass */
        t->pics_pending |= t->defer_pics;
        return;
    }
    if (t->gfx == TUI_GFX_BLOCKS && t->colors256) {
        for (int y = 0; y < r.h; y++)
            for (int x = 0; x < r.w; x++) {
                const uint8_t *u = rgb + ((size_t)(2 * y) * r.w + x) * 3, *l = u + (size_t)r.w * 3;
                int pair = alloc_pair(tui_rgb256(u), tui_rgb256(l));
                cell_wch(r.y + y, r.x + x, L"\x2580", A_NORMAL, pair < 0 ? 0 : pair);
            }
        return;
    }
    if (pic->kind == TUI_PIC_SCATTER) { /* no colours for a plot: braille dots, 2x4 a cell */
        for (int y = 0; y < r.h; y++)
            for (int x = 0; x < r.w; x++) {
                static const int bit[4][2] = { { 0x01, 0x08 }, { 0x02, 0x10 },
                                               { 0x04, 0x20 }, { 0x40, 0x80 } };
                int m = 0;
                for (int dy = 0; dy < 4; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        const uint8_t *p = rgb + ((size_t)(4 * y + dy) * (2 * r.w) + 2 * x + dx) * 3;
                        if (p[0] + p[1] + p[2] > 3 * 80) /* data and axes, not the decade lines */
                            m |= bit[dy][dx];
                    }
                wchar_t w[2] = { (wchar_t)(0x2800 + m), 0 };
                cell_wch(r.y + y, r.x + x, w, A_NORMAL, 0);
            }
        return;
    }
    /* no graphics: luminance ramp, one character per cell */
    static const char ramp[] = " .:-=+*#%@";
    for (int y = 0; y < r.h; y++)
        for (int x = 0; x < r.w; x++) {
            const uint8_t *p = rgb + ((size_t)y * r.w + x) * 3;
            int red = p[0] > 200 && p[1] < 80 && p[2] < 80; /* the patch cursor */
            int lum = (p[0] * 3 + p[1] * 6 + p[2]) / 10;
            attrset(red ? A(P_ERR) | A_REVERSE : A_NORMAL);
            mvaddch(r.y + y, r.x + x, red ? '#' : ramp[lum * 9 / 255]);
        }
    attrset(A_NORMAL);
}

/* ---------------------------------------------------------- tab, status */

static void
draw_tabs(Tui *t)
{
    fill(0, 0, COLS, A(P_TAB));
    int x = 0;
    for (int v = 0; v < TUI_HELP; v++) {
        char b[32];
        snprintf(b, sizeof b, " %d %s ", v + 1, tui_view_name((TuiView)v));
        x += put(0, x, COLS - x, A(v == (int)t->view ? P_TABON : P_TAB), "%s", b);
    }
    char right[400];
    const char *gfx = t->view == TUI_HELP ? "[help]" : t->gfx == TUI_GFX_SIXEL ? "sixel"
                                         : t->gfx == TUI_GFX_BLOCKS ? "blocks" : "text";
    /* the dataset first: it is what a narrow bar keeps longest */
    for (int full = 1; full >= 0; full--) {
        if (full)
            snprintf(right, sizeof right, " %s%s%s%s%s  %s ", t->dataset_name,
                     t->dataset_name[0] ? "  " : "", t->model ? "adapted" : "base",
                     t->model_name[t->model][0] ? ": " : "", t->model_name[t->model], gfx);
        else
            snprintf(right, sizeof right, " %s  %s ", t->dataset_name,
                     t->model ? "adapted" : "base");
        int w = (int)strlen(right);
        if (COLS - w > x + 1) {
            put(0, COLS - w, w, A(P_TAB), "%s", right);
            break;
        }
    }
}

static void
draw_status(Tui *t)
{
    int y = LINES - 1;
    move(y, 0);
    clrtoeol();
    if (t->prompt) {
        int n = put(y, 0, COLS - 1, A_NORMAL, "%c%s", t->prompt, t->input);
        attrset(A_REVERSE);
        mvaddch(y, n < COLS ? n : COLS - 1, ' ');
        attrset(A_NORMAL);
        const char *hint = t->prompt == '/' ? "  Enter keep, Esc cancel, arrows move" : "";
        put(y, n + 1, COLS - n - 1, A(P_DIM), "%s", hint);
        return;
    }
    char right[128] = "", busy[160];
    int x0 = 0;
    if (tui_probe_progress(t, busy, sizeof busy)) { /* a spinner while probing */
        static const char *const spin[] = { "\xe2\xa0\x8b", "\xe2\xa0\x99", "\xe2\xa0\xb9",
                                            "\xe2\xa0\xb8", "\xe2\xa0\xbc", "\xe2\xa0\xb4",
                                            "\xe2\xa0\xa6", "\xe2\xa0\xa7", "\xe2\xa0\x87",
                                            "\xe2\xa0\x8f" };
        int f = (int)((long long)(ps_now() * 10) % 10);
        x0 = put(y, 0, COLS - 1, A(P_TITLE), "%s %s (Esc cancels)  ", spin[f], busy);
    }
    if (t->view == TUI_LATENTS)
        snprintf(right, sizeof right, " %d/%d  %s%s ", t->n_order > 0 ? t->sel + 1 : 0, t->n_order,
                 idx_sort_name(t->sort), t->desc ? "\xe2\x96\xbc" : "\xe2\x96\xb2");
    int rw = (int)strlen(right) > 2 ? (int)strlen(right) - 2 : 0;
    int n = x0 + put(y, x0, COLS - rw - 1 - x0, t->status_err ? A(P_ERR) : A_NORMAL, "%s",
                     t->status[0] ? t->status : "? help  q back  / search  : command");
    if (rw && COLS - rw - 1 > n)
        put(y, COLS - rw - 1, rw + 1, A(P_DIM), "%s", right);
}

/* -------------------------------------------------------------- Latents */

void
tui_latents_draw(Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    TuiRect r = l.table;
    const TuiStats *s = &t->st[t->model && t->st[1].present ? 1 : 0];
    if (!s->present) {
        put(r.y + 1, 2, r.w - 4, A(P_TITLE), "No statistics in %s.", t->path);
        put(r.y + 3, 2, r.w - 4, A_NORMAL, "Build them with `patchsae index`, or open another index.");
        return;
    }
    static const char *const heads[] = { "latent", "freq", "mean", "max", "entropy", "top class",
                                         "share", "annotation" };
    static const int sorts[] = { IDX_SORT_LATENT, IDX_SORT_FREQ, IDX_SORT_MEAN, IDX_SORT_MAX,
                                 IDX_SORT_ENTROPY, -1, IDX_SORT_SHARE, -1 };
    int wcol[8] = { 8, 10, 9, 9, 8, 20, 6, 0 };
    int x = 0;
    fill(r.y, 0, r.w, A(P_HDR));
    for (int i = 0; i < 8; i++) {
        int w = i == 7 ? r.w - x : wcol[i];
        put(r.y, x, w, A(P_HDR), "%s%s", heads[i],
            sorts[i] == t->sort ? (t->desc ? "\xe2\x96\xbc" : "\xe2\x96\xb2") : "");
        x += w;
    }
    if (t->n_order == 0) {
        put(r.y + 2, 2, r.w - 4, A_NORMAL, "No latents pass the filter (:filter clear).");
        return;
    }
    for (int i = 0; i < r.h - 1; i++) {
        int k = t->top + i;
        if (k >= t->n_order)
            break;
        const TuiRow *row = &s->rows[t->order[k]];
        int y = r.y + 1 + i, sel = k == t->sel;
        attr_t a = sel ? A(P_SEL) : row->n_active == 0 ? A(P_DIM) : A_NORMAL;
        if (sel)
            fill(y, 0, r.w, a);
        char f[5][24];
        fmt_num(f[0], sizeof f[0], row->freq);
        fmt_num(f[1], sizeof f[1], row->mean_act);
        fmt_num(f[2], sizeof f[2], row->max_act);
        fmt_num(f[3], sizeof f[3], row->entropy);
        if (isnan(row->top_share))
            snprintf(f[4], sizeof f[4], "-");
        else
            snprintf(f[4], sizeof f[4], "%3.0f%%", 100 * row->top_share);
        x = 0;
        put(y, x, wcol[0], a, "%7d", row->latent);
        x += wcol[0];
        for (int c = 0; c < 4; c++) {
            put(y, x, wcol[c + 1], a, "%s", f[c]);
            x += wcol[c + 1];
        }
        put(y, x, wcol[5] - 1, a, "%s", cname(t, row->top_class));
        x += wcol[5];
        put(y, x, wcol[6], a, "%s", f[4]);
        x += wcol[6];
        put(y, x, r.w - x, a, "%s", row->name ? row->name : "");
    }
}

/* --------------------------------------------------------------- Latent */

static const char *const spark[] = { " ", "\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83",
                                     "\xe2\x96\x84", "\xe2\x96\x85", "\xe2\x96\x86",
                                     "\xe2\x96\x87", "\xe2\x96\x88" };

static void
bar(int y, int x, int w, double frac, attr_t a)
{
    int n = (int)(frac * w + 0.5);
    char b[512] = "";
    for (int i = 0; i < n && i < w && strlen(b) + 4 < sizeof b; i++)
        strcat(b, "\xe2\x96\x88");
    put(y, x, w, a, "%s", b);
}

static void
latent_side(Tui *t, const TuiLayout *l, int side, int stats_y)
{
    const TuiLatentSide *ls = &t->ls[side];
    TuiRect g = l->grid[side];
    int hy = g.y - 1;
    attr_t ha = A(side ? P_ADAPT : P_BASE);
    const char *who = side ? "adapted" : "base";
    if (!t->model_id[side]) {
        put(hy, g.x, g.w, ha, "%s: no adapted model in this index", who);
        return;
    }
    if (!ls->ok) {
        put(hy, g.x, g.w, ha, "%s (%s): no statistics for this latent", who, t->model_name[side]);
        return;
    }
    char f[2][24];
    fmt_num(f[0], sizeof f[0], ls->st.freq);
    fmt_num(f[1], sizeof f[1], ls->st.mean_act);
    put(hy, g.x, g.w, ha, "%s (%s)  freq %s  mean %s  H %.2f", who, t->model_name[side], f[0],
        f[1], isnan(ls->st.entropy) ? 0.0 : ls->st.entropy);
    if (ls->n_top == 0)
        put(g.y + 1, g.x + 2, g.w - 2, A(P_DIM), "never fires: no top images");
    int per = l->gcols * l->grows, first = 0;
    if (t->gside == side && t->gsel >= per)
        first = t->gsel / per * per;
    for (int i = first; i < ls->n_top && i < first + per; i++) {
        int k = i - first, gx = g.x + (k % l->gcols) * (l->cell_w + 1);
        int gy = g.y + (k / l->gcols) * l->cell_h;
        TuiRect pr = { gy, gx, l->cell_h - 1, l->cell_w };
        TuiPic pic = { TUI_PIC_THUMB, ls->top[i].image_id, side, t->latent, t->overlay, -1, 0, 0 };
        draw_pic(t, pr, &pic);
        int sel = t->gside == side && t->gsel == i;
        put(gy + l->cell_h - 1, gx, l->cell_w, sel ? A(P_SEL) : A_NORMAL, "%-*.*s", l->cell_w,
            l->cell_w, "");
        put(gy + l->cell_h - 1, gx, l->cell_w, sel ? A(P_SEL) : A_NORMAL, "%.2f %s",
            ls->top[i].value, cname(t, ls->top[i].label));
    }
    if (stats_y < 0)
        return;
    int y = stats_y, w = g.w;
    /* every label that fits between the grid and the histogram (3 rows at least, the
     * layout keeps them; the same on both sides so the histograms line up); a cut
     * list says how many it leaves out */
    int want = MAX(3, MAX(t->ls[0].n_labels, t->ls[1].n_labels));
    int rows = MIN(want, MAX(3, l->body.y + l->body.h - stats_y - 4));
    int shown = ls->n_labels <= rows ? ls->n_labels : rows - 1;
    put(y++, g.x, w, A(P_TITLE), "labels of the top %d images", ls->n_top);
    for (int i = 0; i < rows; i++, y++) {
        if (i == shown && i < ls->n_labels) {
            char more[256];
            size_t o = (size_t)snprintf(more, sizeof more, "+%d more:", ls->n_labels - shown);
            for (int k = shown; k < ls->n_labels && o < sizeof more; k++)
                o += (size_t)snprintf(more + o, sizeof more - o, " %s %d%s",
                                      cname(t, ls->labels[k].cls), ls->labels[k].n,
                                      k + 1 < ls->n_labels ? "," : "");
            put(y, g.x, w, A(P_DIM), "%s", more);
        }
        if (i >= shown)
            continue;
        int nw = MIN(16, w / 3);
        put(y, g.x, nw, A_NORMAL, "%s", cname(t, ls->labels[i].cls));
        put(y, g.x + nw + 1, 9, A_NORMAL, "%2d %3.0f%%", ls->labels[i].n, 100 * ls->labels[i].weight);
        bar(y, g.x + nw + 11, w - nw - 11, ls->labels[i].weight, A(side ? P_ADAPT : P_BASE));
    }
    put(y++, g.x, w, A(P_TITLE), "patch activations in the top images (log bins)");
    int mx = 0;
    for (int i = 0; i < TUI_HIST_BINS; i++)
        mx = MAX(mx, ls->hist[i]);
    char sb[TUI_HIST_BINS * 4 + 1] = "";
    for (int i = 0; i < TUI_HIST_BINS; i++)
        strcat(sb, spark[mx ? (ls->hist[i] * 8 + mx - 1) / mx : 0]);
    put(y++, g.x, w, A(side ? P_ADAPT : P_BASE), "%s", sb);
    if (mx)
        put(y, g.x, w, A(P_DIM), "%-*.3g%*.3g", TUI_HIST_BINS / 2, ls->hist_lo, TUI_HIST_BINS / 2,
            ls->hist_hi);
}

void
tui_latent_draw(Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    TuiRect b = l.body;
    if (t->latent < 0) {
        put(b.y + 1, 2, b.w - 4, A_NORMAL, "No latent selected: Enter on a row of the Latents "
                                           "table, or :latent N.");
        return;
    }
    const TuiLatentSide *cur = &t->ls[t->gside];
    const char *name = t->ls[0].ok ? t->ls[0].st.name : t->ls[1].st.name;
    int x = put(b.y, 0, b.w, A(P_TITLE), "Latent %d%s%s%s", t->latent, name[0] ? "  \"" : "",
                name, name[0] ? "\"" : "");
    if (t->gsel < cur->n_top) {
        const IdxTopImage *ti = &cur->top[t->gsel];
        put(b.y, x + 3, b.w - x - 3, A_NORMAL, "#%d %s: image %lld (pos %lld) %s, value %.4g",
            ti->rank, t->gside ? "adapted" : "base", (long long)ti->image_id, (long long)ti->pos,
            cname(t, ti->label), ti->value);
    }
    int stats_y = l.grid[0].y + l.grid[0].h;
    if (stats_y + 7 > b.y + b.h)
        stats_y = -1;
    for (int s = 0; s < 2; s++)
        latent_side(t, &l, s, stats_y);
}

/* ---------------------------------------------------------------- Image */

static const char *const group_names[2][3] = { { "common", "base only", "adapted only" },
                                               { "base", "base", "adapted" } };

static void
item_list(Tui *t, TuiRect r, int level, const char *title)
{
    int y = r.y;
    put(y++, r.x, r.w, A(P_TITLE), "%s", title);
    int grp = -1, two = t->is[1].ok, first = 0;
    while (first < t->n_items && t->items[first].level != level)
        first++;
    for (int i = 0; i < t->n_items && y < r.y + r.h; i++) {
        const TuiItem *it = &t->items[i];
        if (it->level != level)
            continue;
        if (it->group != grp) {
            grp = it->group;
            put(y, r.x, r.w, A(grp == 2 ? P_ADAPT : grp == 1 ? P_BASE : P_HDR), "%s",
                group_names[!two][grp]);
            if (r.w >= 32) /* column names on the first group line */
                put(y, r.x + 14, r.w - 14, A(P_DIM), "%s", grp == it[0].group && i == first
                    ? (two ? "  base adapted" : " value") : "");
            y++;
            if (y >= r.y + r.h)
                break;
        }
        int sel = i == t->isel;
        attr_t a = sel ? A(P_SEL) : A_NORMAL;
        if (sel)
            fill(y, r.x, r.w, a);
        const TuiStats *s = &t->st[0];
        const char *nm = s->present && it->latent < s->n_pos && s->pos[it->latent] >= 0
                             ? s->rows[s->pos[it->latent]].name : NULL;
        if (two)
            put(y, r.x, r.w, a, " %6d %7.3f %7.3f %s", it->latent, it->v[0], it->v[1], nm ? nm : "");
        else
            put(y, r.x, r.w, a, " %6d %7.3f %s", it->latent, it->v[0], nm ? nm : "");
        y++;
    }
}

static void
preds(Tui *t, TuiRect r)
{
    int y = r.y;
    put(y++, r.x, r.w, A(P_TITLE), "true label: %s", t->img.label >= 0 ? cname(t, t->img.label)
                                               : t->src == TUI_SRC_PROBE ? "(none: probed)" : "(none)");
    for (int m = 0; m < 2 && y < r.y + r.h; m++) {
        const TuiImageSide *s = &t->is[m];
        if (!s->ok) {
            if (m == 1)
                put(y++, r.x, r.w, A(P_DIM), "no adapted model");
            continue;
        }
        put(y++, r.x, r.w, A(m ? P_ADAPT : P_BASE), "%s (%s) top-5", m ? "adapted" : "base",
            t->model_name[m]);
        if (s->n_pred == 0 && y < r.y + r.h)
            put(y++, r.x + 1, r.w - 1, A(P_DIM), "no predictions stored");
        for (int i = 0; i < s->n_pred && y < r.y + r.h; i++, y++) {
            int ok = s->pred[i].cls == t->img.label;
            put(y, r.x, r.w, ok ? A(P_OK) : A_NORMAL, " %d %-*.*s %5.1f%% %s", s->pred[i].rank,
                MAX(4, r.w - 18), MAX(4, r.w - 18),
                s->pred[i].name[0] ? s->pred[i].name : cname(t, s->pred[i].cls),
                100 * s->pred[i].prob, ok ? "\xe2\x9c\x93" : "");
        }
    }
}

/* The probed-images strip: one line of numbers and names, the shown one highlighted. */
static void
strip(Tui *t, TuiRect r)
{
    put(r.y, r.x, 8, A(P_DIM), "probed:");
    int end = 8;
    for (int k = 0; k < t->n_probed; k++) {
        int x, w;
        char lab[128];
        if (tui_strip_entry(t, k, r.w, &x, &w, lab, sizeof lab))
            continue;
        int on = t->src == TUI_SRC_PROBE && k == t->probed;
        put(r.y, r.x + x, w, on ? A(P_SEL) : A(P_ADAPT), "%s", lab);
        end = x + w;
    }
    int x, w;
    char lab[8];
    if (t->n_probed > 0 && tui_strip_entry(t, 0, r.w, &x, &w, lab, sizeof lab))
        put(r.y, r.x + 8, 2, A(P_DIM), "\xe2\x80\xa6"); /* scrolled: earlier entries hidden */
    const char *hint = t->src == TUI_SRC_PROBE ? "  [ ] switch  p indexed  :save" :
                                                 "  p probed images";
    if (end + (int)strlen(hint) < r.w)
        put(r.y, r.x + end, r.w - end, A(P_DIM), "%s", hint);
}

void
tui_image_draw(Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    TuiRect b = l.body;
    if (l.strip.h > 0)
        strip(t, l.strip);
    if (!tui_image_shown(t)) {
        put(b.y + 1 + (l.strip.h > 0), 2, b.w - 4, A_NORMAL,
            t->src == TUI_SRC_PROBE ? "No probed image yet: :open FILE."
                                    : "No image selected: Enter on a top image in the Latent "
                                      "view, :image N, or :open FILE to probe your own.");
        return;
    }
    char where[64], head[1200], noise[48] = "";
    int g = t->img.grid, probed = t->src == TUI_SRC_PROBE;
    if (t->px >= 0) /* (row,col), as `patchsae query --patch R,C` takes it */
        snprintf(where, sizeof where, "patch (%d,%d) token %d", t->py, t->px, 1 + t->py * g + t->px);
    else
        snprintf(where, sizeof where, "image level");
    if (t->noise_on)
        snprintf(noise, sizeof noise, "  noise > %g hidden", t->noise);
    if (probed)
        snprintf(head, sizeof head, "Probed %d/%d: %s", t->probed + 1, t->n_probed,
                 tui_probe_name(t, t->probed, NULL));
    else
        snprintf(head, sizeof head, "Image %lld (pos %lld)  label: %s", (long long)t->image,
                 (long long)t->img.pos, t->img.label >= 0 ? cname(t, t->img.label) : "-");
    put(b.y, 0, b.w, A(P_TITLE), "%s  %s  latent %s%d  overlay: %s%s", head, where,
        t->ilatent >= 0 ? "" : "-", t->ilatent,
        t->overlay == TUI_OV_MASK ? "mask" : t->overlay == TUI_OV_HEAT ? "heat" : "none", noise);
    int cursor = t->px >= 0 ? t->py * g + t->px : -1, gen = 0, side, grid;
    if (probed)
        tui_probe_crop(t, t->probed, &side, &grid, &gen);
    int kind = probed ? TUI_PIC_PROBED : TUI_PIC_THUMB;
    int64_t id = probed ? t->probed : t->image;
    TuiPic main = { kind, id, 0, -1, TUI_OV_NONE, cursor, 1, gen };
    put(l.main_img.y - 1, l.main_img.x, l.main_img.w, A_NORMAL, "image %dx%d patches", g, g);
    draw_pic(t, l.main_img, &main);
    for (int m = 0; m < 2; m++) {
        TuiRect r = l.ov[m];
        if (!t->is[m].ok) {
            put(r.y - 1, r.x, r.w, A(P_DIM), "%s", m ? "no adapted model" : "no base model");
            continue;
        }
        put(r.y - 1, r.x, r.w, A(m ? P_ADAPT : P_BASE), "%s: latent %d", m ? "adapted" : "base",
            t->ilatent);
        if (!t->is[m].blob && !t->is[m].pr)
            put(r.y, r.x, r.w, A(P_DIM), "no patch data");
        TuiPic ov = { kind, id, m, t->ilatent, t->overlay, cursor, 0, gen };
        draw_pic(t, r, &ov);
    }
    TuiRect li = l.lists;
    int half = li.w / 2;
    TuiRect a = { li.y, li.x, li.h, half - 1 }, p = { li.y, li.x + half, li.h, li.w - half };
    item_list(t, a, 0, "image-level top latents");
    if (t->px >= 0) {
        char title[96];
        snprintf(title, sizeof title, "patch (%d,%d) top latents", t->py, t->px);
        item_list(t, p, 1, title);
    } else {
        put(p.y, p.x, p.w, A(P_TITLE), "patch top latents");
        put(p.y + 1, p.x, p.w, A(P_DIM), "hjkl or a click: patch cursor");
    }
    preds(t, l.preds);
}

/* ---------------------------------------------------------------- Class */

void
tui_class_draw(Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    TuiRect cl = l.clist, d = l.cdetail;
    put(cl.y, cl.x, cl.w, A(P_HDR), "classes (%d)", t->n_classes);
    if (t->n_classes == 0) {
        put(cl.y + 2, cl.x, cl.w, A(P_DIM), "no classes");
        return;
    }
    for (int i = 0; i < cl.h - 1 && t->ctop + i < t->n_classes; i++) {
        int c = t->ctop + i, sel = c == t->cls;
        if (sel)
            fill(cl.y + 1 + i, cl.x, cl.w, A(P_SEL));
        put(cl.y + 1 + i, cl.x, cl.w, sel ? A(P_SEL) : A_NORMAL, "%4d %s", c, cname(t, c));
    }
    if (t->cls < 0)
        return;
    int y = d.y;
    put(y++, d.x, d.w, A(P_TITLE), "Class %d: %s   %lld images", t->cls, cname(t, t->cls),
        (long long)t->cs[0].n_images);
    char acc[2][64];
    for (int m = 0; m < 2; m++) {
        const TuiClassSide *c = &t->cs[m];
        if (!c->ok)
            snprintf(acc[m], sizeof acc[m], "-");
        else if (isnan(c->acc))
            snprintf(acc[m], sizeof acc[m], "unknown");
        else
            snprintf(acc[m], sizeof acc[m], "%.1f%%%s", c->acc, c->acc_from_eval ? "" : " (top-1)");
    }
    put(y++, d.x, d.w, A_NORMAL, "accuracy: base %s   adapted %s", acc[0], acc[1]);
    y++;
    /* the masking table (its k values) keeps its rows; the top-latents lists give up theirs */
    int ks[32], nk = 0;
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < t->cs[m].n_evals; i++) {
            const IdxEval *e = &t->cs[m].evals[i];
            if (strcmp(e->mode, "off") && strcmp(e->mode, "on"))
                continue;
            int j = 0;
            while (j < nk && ks[j] < e->k)
                j++;
            if ((j < nk && ks[j] == e->k) || nk == (int)LEN(ks))
                continue;
            memmove(ks + j + 1, ks + j, (size_t)(nk - j) * sizeof ks[0]);
            ks[j] = e->k;
            nk++;
        }
    int rest = d.y + d.h - y - (t->st[1].present ? 5 : 0) - (nk ? 2 + nk : 1);
    int ntop = MAX(3, MIN(10, rest - 3));
    int colw = d.w / 2;
    for (int m = 0; m < 2; m++) {
        int x = d.x + m * colw, yy = y;
        const TuiClassSide *c = &t->cs[m];
        put(yy++, x, colw - 1, A(m ? P_ADAPT : P_BASE), "%s top latents (tokens > tau)",
            m ? "adapted" : "base");
        put(yy++, x, colw - 1, A(P_DIM), "rank  latent   tokens annotation");
        if (!c->ok || c->n_top == 0)
            put(yy, x, colw - 1, A(P_DIM), "%s", c->ok ? "no class counts" : "no adapted model");
        for (int i = 0; i < c->n_top && i < ntop; i++, yy++) {
            int sel = c->top[i].latent == t->latent && (m == (t->model && t->cs[1].ok));
            put(yy, x, colw - 1, sel ? A(P_SEL) : A_NORMAL, "%3d %7d %8lld %s", c->top[i].rank,
                c->top[i].latent, (long long)c->top[i].n_tokens, c->top[i].name);
        }
    }
    y += ntop + 3;
    if (y < d.y + d.h && t->st[1].present) {
        int cnt[3] = { 0, 0, 0 };
        static const char *const gn[3] = { "high", "high_low", "low_high" };
        for (int i = 0; i < t->n_diff; i++)
            for (int k = 0; k < 3; k++)
                cnt[k] += !strcmp(t->diff[i].grp, gn[k]);
        put(y++, d.x, d.w, A(P_TITLE), "remapping: high %d   high\xe2\x86\x92low %d   "
                                       "low\xe2\x86\x92high %d", cnt[0], cnt[1], cnt[2]);
        for (int k = 0; k < 3 && y < d.y + d.h; k++) {
            char b[512];
            int o = snprintf(b, sizeof b, "%-9s", gn[k]);
            for (int i = 0, n = 0; i < t->n_diff && n < 12 && o < (int)sizeof b - 16; i++)
                if (!strcmp(t->diff[i].grp, gn[k]))
                    o += snprintf(b + o, sizeof b - (size_t)o, " %d", t->diff[i].latent), n++;
            put(y++, d.x, d.w, A_NORMAL, "%s", cnt[k] || t->n_diff ? b : "");
        }
        if (t->n_diff == 0)
            put(y - 3, d.x, d.w, A(P_DIM), "no remapping groups (run `patchsae diff`)");
        y++;
    }
    /* the top-k masking curve: one row per k, on and off of both models side by side */
    if (y >= d.y + d.h)
        return;
    if (!nk) {
        put(y, d.x, d.w, A(P_DIM), "no masking results for this dataset (run `patchsae eval`)");
        return;
    }
    put(y++, d.x, d.w, A(P_TITLE), "top-k masking%s: accuracy with only (on) / without (off) the "
                                   "top-k latents", t->cs[0].evals_all || t->cs[1].evals_all
                                                        ? " (all classes)" : "");
    static const char *const modes[2] = { "on", "off" };
    int cx[5] = { 0, 8, 19, 30, 43 };
    put(y, d.x + cx[0], d.w, A(P_DIM), "%6s", "k");
    for (int m = 0; m < 2; m++)
        for (int o = 0; o < 2; o++) {
            char h[16];
            snprintf(h, sizeof h, "%s %s", m ? "adapted" : "base", modes[o]);
            put(y, d.x + cx[1 + 2 * m + o], d.w - cx[1 + 2 * m + o], A(m ? P_ADAPT : P_BASE),
                "%*s", m ? 11 : 8, h);
        }
    y++;
    for (int j = 0; j < nk; j++, y++) {
        if (y >= d.y + d.h - 1 && j < nk - 1) { /* the last row left: say what is cut */
            put(y, d.x, d.w, A(P_DIM), "+%d more k (k = %d .. %d): a taller terminal shows them",
                nk - j, ks[j], ks[nk - 1]);
            break;
        }
        put(y, d.x + cx[0], 7, A_NORMAL, "%6d", ks[j]);
        for (int m = 0; m < 2; m++)
            for (int o = 0; o < 2; o++) {
                const IdxEval *e = NULL;
                for (int i = 0; i < t->cs[m].n_evals && !e; i++)
                    if (t->cs[m].evals[i].k == ks[j] && !strcmp(t->cs[m].evals[i].mode, modes[o]))
                        e = &t->cs[m].evals[i];
                int x = d.x + cx[1 + 2 * m + o];
                if (e)
                    put(y, x, d.w - (x - d.x), A_NORMAL, "%*.1f%%", m ? 10 : 7, e->accuracy);
                else
                    put(y, x, d.w - (x - d.x), A(P_DIM), "%*s", m ? 11 : 8, "-");
            }
    }
}

/* ------------------------------------------------------------- Overview */

void
tui_overview_draw(Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    TuiRect sc = l.scatter, su = l.summary;
    const TuiStats *s = &t->st[t->model && t->st[1].present ? 1 : 0];
    put(l.body.y, 0, l.body.w, A(P_TITLE), "Latents: frequency (x) against mean activation (y), "
                                           "log scales, colour = label entropy (%s)",
        t->model ? "adapted" : "base");
    if (s->present && s->n > 0) {
        TuiPic pic = { TUI_PIC_SCATTER, 0, t->model, -1, 0, -1, 0, t->scatter_version };
        draw_pic(t, sc, &pic);
        float x0, x1, y0, y1;
        tui_scatter_range(s->rows, s->n, &x0, &x1, &y0, &y1);
        /* the picture's pixels and pixels per cell, as draw_pic / the flush render it */
        int pw, ph, cw, ch;
        if (t->gfx == TUI_GFX_SIXEL) {
            tui_pic_pixels(t, sc, &pw, &ph);
            cw = t->term.cell_w, ch = t->term.cell_h;
        } else if (t->gfx == TUI_GFX_BLOCKS && t->colors256) {
            pw = sc.w, ph = 2 * sc.h, cw = 1, ch = 2;
        } else { /* braille */
            pw = 2 * sc.w, ph = 4 * sc.h, cw = 2, ch = 4;
        }
        /* y: mean activation decades, right-aligned against the frame */
        int last = -1;
        for (float v = y1; v >= y0 - 1e-3f && cw > 0 && ch > 0; v -= 1) {
            int row = sc.y + tui_scatter_y(v, y0, y1, ph) / ch;
            if (row == last || row >= sc.y + sc.h)
                continue;
            char b[16];
            snprintf(b, sizeof b, "1e%+.0f", v + 0.0);
            put(row, sc.x - 1 - (int)strlen(b), (int)strlen(b), A(P_DIM), "%s", b);
            last = row;
        }
        /* x: frequency decades under their grid lines (the first from the frame, the last
         * ending at the frame's right end) */
        int ly = sc.y + (ph + ch - 1) / ch, end = sc.x + (pw + cw - 1) / cw, nx = sc.x;
        for (float v = x0; v <= x1 + 1e-3f && ly < LINES - 1; v += 1) {
            char b[16];
            int n = snprintf(b, sizeof b, "1e%+.0f", v + 0.0);
            int col = sc.x + tui_scatter_x(v, x0, x1, pw) / cw - n / 2;
            col = v <= x0 + 1e-3f ? sc.x : v >= x1 - 1e-3f ? end - n : col;
            if (col < nx)
                continue;
            put(ly, col, n, A(P_DIM), "%s", b);
            nx = col + n + 1;
        }
    } else {
        put(sc.y + 1, sc.x, sc.w, A(P_DIM), "no statistics");
    }
    int y = su.y, w = su.w;
    if (s->present && s->n > 0) {
        float x0, x1, y0, y1;
        tui_scatter_range(s->rows, s->n, &x0, &x1, &y0, &y1);
        put(y++, su.x, w, A(P_DIM), "y: mean act 1e%+.0f .. 1e%+.0f", y0 + 0.0, y1 + 0.0);
        put(y++, su.x, w, A(P_DIM), "x: freq 1e%+.0f .. 1e%+.0f", x0 + 0.0, x1 + 0.0);
        put(y++, su.x, w, A(P_DIM), "lines at every decade");
        y++;
    }
    put(y++, su.x, w, A(P_HDR), "index");
    put(y++, su.x, w, A_NORMAL, "%s%s", t->path, t->readonly ? " (read-only)" : "");
    y++;
    for (int m = 0; m < 2; m++) {
        if (!t->model_id[m])
            continue;
        put(y++, su.x, w, A(m ? P_ADAPT : P_BASE), "%s model: %s", m ? "adapted" : "base",
            t->model_name[m]);
    }
    if (!t->model_id[1])
        put(y++, su.x, w, A(P_DIM), "no adapted model");
    if (t->st[0].present) {
        const IdxStatset *ss = &t->st[0].ss;
        put(y++, su.x, w, A_NORMAL, "dataset: %s", ss->dataset);
        put(y++, su.x, w, A_NORMAL, "images: %lld   classes: %d", (long long)ss->n_images,
            t->n_classes);
        put(y++, su.x, w, A_NORMAL, "SAE latents: %d", ss->d_sae);
        put(y++, su.x, w, A_NORMAL, "top images: %d   tau: %.2g", ss->k_top, ss->tau);
        put(y++, su.x, w, A_NORMAL, "dead: %d (%.1f%%)", t->n_dead,
            ss->d_sae ? 100.0 * t->n_dead / ss->d_sae : 0.0);
        put(y++, su.x, w, A_NORMAL, "dense (freq > %g): %d", TUI_DENSE_FREQ, t->n_dense);
        int ann = 0;
        for (int i = 0; i < t->st[0].n; i++)
            ann += t->st[0].rows[i].name != NULL;
        put(y++, su.x, w, A_NORMAL, "annotated: %d", ann);
    } else {
        put(y++, su.x, w, A(P_DIM), "no statistics yet");
    }
    y++;
    put(y++, su.x, w, A(P_HDR), "colour");
    put(y++, su.x, w, A(P_ERR), "red: low entropy (one class)");
    put(y++, su.x, w, A(P_BAR), "blue: high entropy (many)");
    put(y++, su.x, w, A(P_DIM), "grey: too few labelled images");
    y++;
    put(y++, su.x, w, A(P_DIM), "terminal: %s",
        t->gfx == TUI_GFX_SIXEL ? "sixel" : t->gfx == TUI_GFX_BLOCKS ? "half blocks" : "text");
    put(y++, su.x, w, A(P_DIM), "cell %dx%d px (%s)", t->term.cell_w, t->term.cell_h,
        t->term.cell_src ? t->term.cell_src : "default");
}

/* ----------------------------------------------------------------- Help */

const char *const tui_help_lines[] = {
    "Everywhere",
    "q\tback to the previous view; quit from the first one",
    "Q\tquit at once",
    "?\tthis help",
    "Tab  Shift-Tab\tnext / previous view",
    "1 2 3 4 5\tLatents, Latent, Image, Class, Overview",
    ":\tcommand line (commands below)",
    "/\tsearch: class name or annotation (Latents), class (Class), text (Help)",
    "n  N\tnext / previous match of the last search",
    "m\toverlay: mask (inactive patches darkened) -> heatmap -> none",
    "b\tswitch base / adapted model",
    "t\tnext dataset (:dataset NAME|N; the top bar names the one shown)",
    "f\tnoise filter (PatchSAE demo): hide latents with base mean activation > 0.1 (:noise T)",
    "Ctrl-L\tredraw the screen and re-send the pictures",
    "Esc\tclose the prompt; cancel a probe in progress; back",
    "j k  Down Up\tmove the selection",
    "PgUp PgDn\tpage (Ctrl-B Ctrl-F)",
    "g G  Home End\tfirst / last",
    "Enter\topen the selection",
    "mouse\tclick tabs, rows, grid cells, patches, the probed strip; double-click opens; wheel "
    "scrolls",
    "Backspace  Ctrl-U\tin a prompt: delete a character / all; arrows and PgUp/PgDn still move",
    "",
    "Latents (1)",
    "s\tnext sort key: freq, mean, entropy, share, max, latent",
    "r\treverse the sort",
    "d\thide / show dead latents (never fire)",
    "D\thide / show dense latents (freq > 0.1)",
    "a\tannotated latents only / all",
    "c\topen the top class of the selected latent",
    "l  Right  Enter\topen the selected latent",
    "",
    "Latent (2)",
    "h j k l  arrows\tmove in the top-image grids (base left, adapted right)",
    "Enter\topen the selected image at this latent",
    "[ ]  PgUp PgDn\tprevious / next latent of the table",
    "c\topen the class of the selected image",
    "",
    "Image (3)",
    "h j k l  arrows\tmove the patch cursor (or click a patch)",
    "x  Backspace\tpatch cursor off: image-level latents only",
    "J K  PgDn PgUp\tselect a latent in the lists (its overlay is shown)",
    "Enter\topen the selected latent",
    "[ ]\tprevious / next image: of the index, or of the probed images (the strip)",
    "p\tswitch between the indexed image and the probed images",
    "c\topen the class of the image",
    "",
    "Class (4)",
    "j k\tselect a class",
    "J K\tselect one of its top latents",
    "Enter\topen the selected latent",
    "",
    "Overview (5)",
    "Enter\tthe Latents table",
    "",
    "Commands",
    ":latent N\topen latent N",
    ":image N\topen image N (index image id)",
    ":class NAME\topen a class (name, prefix or number)",
    ":sort KEY [asc|desc]\tlatent freq mean max entropy share",
    ":filter TERM...\tdead dense annotated class=NAME freq>X freq<X mean>X mean<X entropy>X "
    "entropy<X clear",
    ":annotate NAME [-- NOTE]\tname the selected latent (:annotate - removes it)",
    ":dataset [NAME|N]\tshow dataset NAME or number N in every view (none: list them)",
    ":model base|adapted\tswitch model",
    ":overlay mask|heat|none\tset the overlay",
    ":graphics sixel|blocks|none\tswitch picture mode",
    ":search TEXT\tsearch like /",
    ":open FILE...\tprobe your own images (globs too) in the background; Esc cancels",
    ":save\tstore the probed images in the index (dataset \"probed\")",
    ":noise [T|on|off]\tthe noise filter: threshold T (default 0.1), on, off",
    ":help  :q\thelp, quit",
    NULL,
};

void
tui_help_draw(Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    TuiRect b = l.body;
    int n = 0;
    while (tui_help_lines[n])
        n++;
    if (t->help_top > n - 1)
        t->help_top = n - 1;
    for (int i = 0; i < b.h && t->help_top + i < n; i++) {
        const char *s = tui_help_lines[t->help_top + i];
        const char *tab = strchr(s, '\t');
        int y = b.y + i;
        if (!tab) {
            put(y, 1, b.w - 1, A(P_HDR), "%s", s);
            continue;
        }
        int kw = 26;
        put(y, 2, kw - 1, A(P_TITLE), "%.*s", (int)(tab - s), s);
        put(y, 2 + kw, b.w - kw - 2, A_NORMAL, "%s", tab + 1);
    }
}

/* ------------------------------------------------------------------ all */

void
tui_draw(Tui *t)
{
    erase();
    t->n_frame = 0;
    t->pics_pending = 0;
    TuiLayout l;
    tui_layout(t, &l);
    if (l.too_small) {
        put(0, 0, COLS, A(P_ERR), "terminal too small");
        if (LINES > 1)
            put(1, 0, COLS, A_NORMAL, "need 40x8, have %dx%d", COLS, LINES);
        if (LINES > 2)
            put(2, 0, COLS, A(P_DIM), "q quits");
        return;
    }
    draw_tabs(t);
    switch (t->view) {
    case TUI_LATENTS: tui_latents_draw(t); break;
    case TUI_LATENT: tui_latent_draw(t); break;
    case TUI_IMAGE: tui_image_draw(t); break;
    case TUI_CLASS: tui_class_draw(t); break;
    case TUI_OVERVIEW: tui_overview_draw(t); break;
    case TUI_HELP: tui_help_draw(t); break;
    default: break;
    }
    draw_status(t);
}
