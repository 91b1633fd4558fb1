/* SPDX-License-Identifier: MIT */
/*
 * tui.c - the explorer's state machine (ncdu's shape: one state, a key
 * handler per view), the `:` command line, `/` search, the Latents table's
 * filter and sort, and the layout of every view. Nothing here touches the
 * terminal: keys arrive as TUI_KEY_* codes, mouse events as cell positions,
 * and the layout is computed from t->rows x t->cols and the cell size, so
 * tests drive all of it without a terminal (tests/test_tui.c).
 *
 * Key dispatch: an open prompt gets the key first, but movement keys (arrows,
 * PgUp/PgDn) still move the selection while typing (type-to-filter never
 * swallows movement); then the current view's handler; then the global keys
 * (q ? Tab 1-5 : / n N m b f Ctrl-L). Enter and `:` commands push the view
 * they leave on a back stack; q and Esc pop it, q on an empty stack quits.
 * Esc first cancels a probe in progress (:open, tui_probe.c).
 *
 * The Image view shows an indexed image or a probed one (TuiSrc): [ ] step
 * through the indexed images or through the probed ones (the strip), p
 * switches between the two sources.
 */
#include "tui.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ps.h"

static const char *const view_names[TUI_NVIEWS] = { "Latents", "Latent", "Image",
                                                    "Class",   "Overview", "Help" };

const char *
tui_view_name(TuiView v)
{
    return v >= 0 && v < TUI_NVIEWS ? view_names[v] : "?";
}

void
tui_status(Tui *t, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->status, sizeof t->status, fmt, ap);
    va_end(ap);
    for (char *p = t->status; *p; p++) /* one line: control characters would break the layout */
        if ((unsigned char)*p < 32)
            *p = ' ';
    t->status_err = err;
}

/* ------------------------------------------------------------ open, close */

static int
tui_init_(Tui *t, Idx *ix, const char *path, int async, char *err)
{
    memset(t, 0, sizeof *t);
    t->ix = ix;
    t->loading = async;
    snprintf(t->path, sizeof t->path, "%s", path ? path : "");
    t->rows = 24;
    t->cols = 80;
    t->gfx = TUI_GFX_NONE;
    t->term.cell_w = 10;
    t->term.cell_h = 20;
    t->term.colors = 256;
    t->overlay = TUI_OV_MASK;
    t->sort = IDX_SORT_FREQ;
    t->desc = 1;
    t->hide_dead = 0;
    t->min_freq = t->max_freq = t->min_mean = t->max_mean = t->min_ent = t->max_ent = NAN;
    t->filter_class = -1;
    t->latent = -1;
    t->image = -1;
    t->ilatent = -1;
    t->src = TUI_SRC_INDEX;
    t->probed = -1;
    t->noise = TUI_NOISE;
    t->cls = -1;
    t->px = t->py = -1;
    t->full_redraw = 1;
    int rc = tui_data_load(t, t->loading, err);
    if (rc)
        return rc;
    tui_refilter(t);
    if (!t->st[0].present)
        tui_status(t, 0, "%s: no statistics in this index yet (run `patchsae index`)", t->path);
    else
        tui_status(t, 0, "%s: %d latents, %lld images%s. ? for help", t->path,
                   t->st[0].ss.d_sae, (long long)t->n_images,
                   t->st[1].ss.id ? ", base and adapted" : "");
    return PS_OK;
}

int
tui_init(Tui *t, Idx *ix, const char *path, char *err)
{
    return tui_init_(t, ix, path, 0, err);
}

int
tui_open(Tui *t, const char *path, int async, char *err)
{
    struct stat sb;
    memset(t, 0, sizeof *t);
    if (stat(path, &sb) != 0)
        return ps_seterr(err, PS_EIO, "%s: no such index (build one with `patchsae index`)", path);
    if (!S_ISREG(sb.st_mode))
        return ps_seterr(err, PS_EIO, "%s: not a file", path);
    if (sb.st_size == 0)
        return ps_seterr(err, PS_EFORMAT, "%s: empty file, not an index", path);
    Idx *ix = NULL;
    int ro = 0, rc = idx_open(&ix, path, err);
    if (rc == PS_EFORMAT)
        return rc; /* wrong version or not an index: read-only would say the same */
    if (rc) {
        ro = 1;
        rc = idx_open_readonly(&ix, path, err);
        if (rc)
            return rc;
    }
    rc = tui_init_(t, ix, path, async, err);
    t->readonly = ro;
    return rc;
}

void
tui_close(Tui *t)
{
    tui_probe_free(t);
    tui_data_free(t);
    tui_gfx_cache_free(t);
    free(t->order);
    t->order = NULL;
    free(t->sorted);
    t->sorted = NULL;
    idx_close(t->ix);
    t->ix = NULL;
}

void
tui_resize(Tui *t, int rows, int cols)
{
    t->rows = rows > 0 ? rows : 1;
    t->cols = cols > 0 ? cols : 1;
    t->full_redraw = 1;
}

/* ----------------------------------------------------------- the table */

static TuiStats *
cur_stats(Tui *t)
{
    return &t->st[t->st[t->model].present ? t->model : 0];
}

static double
row_key(const TuiRow *r, int sort)
{
    switch (sort) {
    case IDX_SORT_FREQ: return r->freq;
    case IDX_SORT_MEAN: return r->mean_act;
    case IDX_SORT_MAX: return r->max_act;
    case IDX_SORT_ENTROPY: return r->entropy;
    case IDX_SORT_SHARE: return r->top_share;
    default: return r->latent;
    }
}

static int
ci_contains(const char *hay, const char *needle)
{
    if (!hay || !needle || !needle[0])
        return 0;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n))
            return 1;
    return 0;
}

static const char *
class_name(const Tui *t, int c)
{
    return c >= 0 && c < t->n_classes && t->classes[c] ? t->classes[c] : NULL;
}

static int
row_passes(const Tui *t, const TuiRow *r)
{
    if (t->hide_dead && r->n_active == 0)
        return 0;
    if (t->hide_dense && r->freq > TUI_DENSE_FREQ)
        return 0;
    if (t->only_annotated && !r->name)
        return 0;
    if (t->filter_class >= 0 && r->top_class != t->filter_class)
        return 0;
#define RANGE(v, lo, hi) \
    if ((!isnan(lo) || !isnan(hi)) && isnan(v)) return 0; \
    if (!isnan(lo) && (v) < (lo)) return 0; \
    if (!isnan(hi) && (v) > (hi)) return 0;
    RANGE(r->freq, t->min_freq, t->max_freq)
    RANGE(r->mean_act, t->min_mean, t->max_mean)
    RANGE(r->entropy, t->min_ent, t->max_ent)
#undef RANGE
    return 1;
}

/* Order-preserving map of a float onto an unsigned integer (IEEE bits, sign folded). */
static uint32_t
fkey(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* LSD radix sort of 64-bit keys, 8 bits a pass, passes where every digit agrees skipped. */
static void
radix64(uint64_t *a, uint64_t *tmp, int n)
{
    for (int shift = 0; shift < 64; shift += 8) {
        size_t cnt[257] = { 0 };
        for (int i = 0; i < n; i++)
            cnt[((a[i] >> shift) & 255) + 1]++;
        int skip = 0;
        for (int d = 1; d <= 256 && !skip; d++)
            skip = cnt[d] == (size_t)n;
        if (skip)
            continue;
        for (int d = 1; d <= 256; d++)
            cnt[d] += cnt[d - 1];
        for (int i = 0; i < n; i++)
            tmp[cnt[(a[i] >> shift) & 255]++] = a[i];
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}

/*
 * Sorts every row of s by the current key into t->sorted (kept until the key
 * changes): the key's order-preserving bits (flipped for descending, all ones
 * for NULL so it sorts last either way) above the latent, which breaks ties
 * in ascending order. One radix sort, no comparisons: ~1 ms for 49,152 rows.
 */
static void
sort_rows(Tui *t, const TuiStats *s)
{
    int key = t->sort * 4 + t->desc * 2 + t->model;
    if (t->sorted && t->sorted_key == key && t->sorted_rows == s->rows && t->sorted_n == s->n)
        return;
    int n = s->n;
    uint64_t *k = xmalloc((size_t)(n ? n : 1) * sizeof *k), *tmp = xmalloc((size_t)(n ? n : 1) * sizeof *tmp);
    for (int i = 0; i < n; i++) {
        const TuiRow *r = &s->rows[i];
        uint32_t hi;
        if (t->sort == IDX_SORT_LATENT) {
            hi = t->desc ? ~(uint32_t)r->latent : 0;
        } else {
            double v = row_key(r, t->sort);
            hi = isnan(v) ? 0xFFFFFFFFu : t->desc ? ~fkey((float)v) : fkey((float)v);
        }
        k[i] = (uint64_t)hi << 32 | (uint32_t)r->latent;
    }
    radix64(k, tmp, n);
    free(t->sorted);
    t->sorted = xmalloc((size_t)(n ? n : 1) * sizeof *t->sorted);
    for (int i = 0; i < n; i++) {
        int32_t l = (int32_t)(uint32_t)k[i];
        t->sorted[i] = l >= 0 && l < s->n_pos ? s->pos[l] : 0;
    }
    free(k);
    free(tmp);
    t->sorted_n = n;
    t->sorted_key = key;
    t->sorted_rows = s->rows;
}

void
tui_refilter(Tui *t)
{
    TuiStats *s = cur_stats(t);
    int32_t keep = t->n_order > 0 && t->sel < t->n_order ? t->order[t->sel] : -1;
    int32_t keep_latent = keep >= 0 && keep < s->n && t->sorted_rows == s->rows
                              ? s->rows[keep].latent : -1;
    free(t->order);
    t->order = NULL;
    t->n_order = 0;
    t->sel = t->top = 0;
    if (!s->present || s->n == 0)
        return;
    sort_rows(t, s);
    t->order = xmalloc((size_t)s->n * sizeof *t->order);
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        int32_t r = t->sorted[i];
        if (!row_passes(t, &s->rows[r]))
            continue;
        if (s->rows[r].latent == keep_latent)
            t->sel = n;
        t->order[n++] = r;
    }
    t->n_order = n;
}

static int
table_rows(const Tui *t)
{
    TuiLayout l;
    tui_layout(t, &l);
    return l.table.h > 1 ? l.table.h - 1 : 1;
}

static void
clamp_sel(Tui *t)
{
    int vis = table_rows(t);
    if (t->sel >= t->n_order)
        t->sel = t->n_order - 1;
    if (t->sel < 0)
        t->sel = 0;
    if (t->top > t->sel)
        t->top = t->sel;
    if (t->sel >= t->top + vis)
        t->top = t->sel - vis + 1;
    if (t->top > t->n_order - vis)
        t->top = t->n_order - vis;
    if (t->top < 0)
        t->top = 0;
}

int
tui_select_latent(Tui *t, int32_t s)
{
    TuiStats *st = cur_stats(t);
    if (!st->present || s < 0 || s >= st->n_pos || st->pos[s] < 0)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < t->n_order; i++)
            if (t->order[i] == st->pos[s]) {
                t->sel = i;
                clamp_sel(t);
                return 0;
            }
        /* hidden by the filter: clear it and try again */
        t->hide_dead = t->hide_dense = t->only_annotated = 0;
        t->filter_class = -1;
        t->min_freq = t->max_freq = t->min_mean = t->max_mean = t->min_ent = t->max_ent = NAN;
        tui_refilter(t);
    }
    return -1;
}

static int
row_matches(const Tui *t, const TuiRow *r, const char *q)
{
    return ci_contains(class_name(t, r->top_class), q) || ci_contains(r->name, q);
}

/* Searches from position `from` (inclusive) in direction dir; returns the index or -1. */
static int
search_rows(const Tui *t, const char *q, int from, int dir)
{
    const TuiStats *s = &t->st[t->st[t->model].present ? t->model : 0];
    if (!q[0] || t->n_order == 0)
        return -1;
    for (int k = 0; k < t->n_order; k++) {
        int i = ((from + dir * k) % t->n_order + t->n_order) % t->n_order;
        if (row_matches(t, &s->rows[t->order[i]], q))
            return i;
    }
    return -1;
}

static int
search_classes(const Tui *t, const char *q, int from, int dir)
{
    for (int k = 0; k < t->n_classes && q[0]; k++) {
        int i = ((from + dir * k) % t->n_classes + t->n_classes) % t->n_classes;
        if (ci_contains(class_name(t, i), q))
            return i;
    }
    return -1;
}

static int
help_count(void)
{
    int n = 0;
    while (tui_help_lines[n])
        n++;
    return n;
}

static int
search_help(const char *q, int from, int dir)
{
    int n = help_count();
    for (int k = 0; k < n && q[0]; k++) {
        int i = ((from + dir * k) % n + n) % n;
        if (ci_contains(tui_help_lines[i], q))
            return i;
    }
    return -1;
}

/* Runs search q from `from` in the current view; 0 if something matched. */
static int
search_at(Tui *t, const char *q, int from, int dir)
{
    int i;
    switch (t->view) {
    case TUI_CLASS:
        if ((i = search_classes(t, q, from, dir)) < 0)
            break;
        tui_open_class(t, i);
        return 0;
    case TUI_HELP:
        if ((i = search_help(q, from, dir)) < 0)
            break;
        t->help_top = i;
        return 0;
    default:
        if ((i = search_rows(t, q, from, dir)) < 0)
            break;
        t->sel = i;
        clamp_sel(t);
        return 0;
    }
    return -1;
}

static int
search_pos(const Tui *t)
{
    return t->view == TUI_CLASS ? t->cls : t->view == TUI_HELP ? t->help_top : t->sel;
}

int
tui_search_next(Tui *t, int dir)
{
    if (!t->search[0]) {
        tui_status(t, 0, "no search yet: / to search");
        return -1;
    }
    if (t->view != TUI_CLASS && t->view != TUI_HELP && t->view != TUI_LATENTS)
        tui_goto(t, TUI_LATENTS, 1);
    int rc = search_at(t, t->search, search_pos(t) + dir, dir);
    if (rc)
        tui_status(t, 1, "not found: %s", t->search);
    else
        tui_status(t, 0, "/%s", t->search);
    return rc;
}

static int parse_int(const char *s, long long *v);

/* ------------------------------------------------------------- views */

void
tui_goto(Tui *t, TuiView v, int push)
{
    if (v == t->view)
        return;
    if (push && t->n_stack < (int)LEN(t->stack))
        t->stack[t->n_stack++] = t->view;
    t->view = v;
    t->full_redraw = 1;
    if (v == TUI_LATENTS)
        clamp_sel(t);
}

static void
go_back(Tui *t)
{
    if (t->n_stack > 0) {
        t->view = t->stack[--t->n_stack];
        t->full_redraw = 1;
    } else {
        t->quit = 1;
    }
}

int
tui_open_latent(Tui *t, int32_t latent)
{
    char err[PS_ERRLEN];
    if (!t->st[0].present) {
        tui_status(t, 1, "no statistics in this index");
        return -1;
    }
    if (latent < 0 || latent >= t->st[0].ss.d_sae) {
        tui_status(t, 1, "latent %d out of range 0..%d", latent, t->st[0].ss.d_sae - 1);
        return -1;
    }
    if (tui_data_latent(t, latent, err)) {
        tui_status(t, 1, "%s", err);
        return -1;
    }
    t->latent = latent;
    t->gsel = 0;
    t->gside = t->model && t->ls[1].ok ? 1 : 0;
    t->full_redraw = 1;
    return 0;
}

int
tui_open_image(Tui *t, int64_t image, int32_t latent)
{
    char err[PS_ERRLEN];
    if (tui_data_image(t, image, err)) {
        tui_status(t, 1, "%s", err);
        return -1;
    }
    t->image = image;
    t->src = TUI_SRC_INDEX;
    t->px = t->py = -1;
    tui_data_items(t);
    t->isel = 0;
    t->ilatent = latent;
    if (latent >= 0) {
        for (int i = 0; i < t->n_items; i++)
            if (t->items[i].latent == latent) {
                t->isel = i;
                break;
            }
    } else if (t->n_items > 0) {
        t->ilatent = t->items[0].latent;
    }
    t->full_redraw = 1;
    return 0;
}

int
tui_find_dataset(const Tui *t, const char *name)
{
    long long v;
    if (parse_int(name, &v) == 0 && v >= 1 && v <= t->n_ds)
        return (int)v - 1;
    for (int i = 0; i < t->n_ds; i++)
        if (!strcmp(t->ds[i].name, name))
            return i;
    int hit = -1, n = 0;
    for (int i = 0; i < t->n_ds; i++) /* unique prefix */
        if (name[0] && !strncasecmp(t->ds[i].name, name, strlen(name)))
            hit = i, n++;
    return n == 1 ? hit : -1;
}

int
tui_set_dataset(Tui *t, int k)
{
    char err[PS_ERRLEN];
    if (k < 0 || k >= t->n_ds) {
        tui_status(t, 1, "no such dataset (%d in this index)", t->n_ds);
        return -1;
    }
    if (t->loading)
        tui_data_poll(t, 1);
    int32_t keep = t->n_order && t->st[t->model].present
                       ? cur_stats(t)->rows[t->order[t->sel]].latent : -1;
    int cls = t->cls, latent = t->latent;
    tui_data_unload(t);
    memset(t->st, 0, sizeof t->st);
    memset(t->model_id, 0, sizeof t->model_id);
    memset(t->model_name, 0, sizeof t->model_name);
    t->sae_id = 0;
    t->n_images = 0;
    t->dataset_id = t->ds[k].id;
    free(t->sorted); /* new rows: the sort cache is stale */
    t->sorted = NULL;
    t->sorted_rows = NULL;
    int rc = tui_data_load(t, 0, err);
    if (t->filter_class >= t->n_classes)
        t->filter_class = -1;
    tui_refilter(t);
    if (keep >= 0)
        tui_select_latent(t, keep);
    clamp_sel(t);
    memset(t->ls, 0, sizeof t->ls);
    t->latent = -1;
    t->cls = -1;
    if (rc) {
        tui_status(t, 1, "%s", err);
        return -1;
    }
    if (latent >= 0 && t->st[0].present)
        tui_open_latent(t, latent);
    if (cls >= 0 && t->n_classes > 0)
        tui_open_class(t, cls < t->n_classes ? cls : 0);
    if (t->src == TUI_SRC_INDEX && t->image >= 0 && tui_image_shown(t))
        tui_data_items(t); /* the noise filter reads this dataset's statistics */
    t->full_redraw = 1;
    tui_status(t, 0, "dataset %d/%d: %s (%lld images)%s", k + 1, t->n_ds, t->dataset_name,
               (long long)t->n_images, t->st[1].present ? ", base and adapted" : "");
    return 0;
}

int
tui_open_class(Tui *t, int cls)
{
    char err[PS_ERRLEN];
    if (cls < 0 || cls >= t->n_classes) {
        tui_status(t, 1, "class %d out of range (%d classes)", cls, t->n_classes);
        return -1;
    }
    if (tui_data_class(t, cls, err)) {
        tui_status(t, 1, "%s", err);
        return -1;
    }
    t->cls = cls;
    TuiLayout l;
    tui_layout(t, &l);
    int vis = l.clist.h > 1 ? l.clist.h - 1 : 1;
    if (t->ctop > cls)
        t->ctop = cls;
    if (cls >= t->ctop + vis)
        t->ctop = cls - vis + 1;
    t->full_redraw = 1;
    return 0;
}

int
tui_image_shown(const Tui *t)
{
    return t->src == TUI_SRC_PROBE ? t->probed >= 0 && t->probed < t->n_probed : t->image >= 0;
}

/* Recomputes the Image view's lists, keeping the selected latent when it is still listed. */
static void
relist(Tui *t)
{
    int32_t keep = t->ilatent;
    tui_data_items(t);
    t->isel = 0;
    for (int i = 0; i < t->n_items; i++)
        if (t->items[i].latent == keep) {
            t->isel = i;
            return;
        }
    if (t->n_items > 0 && keep >= 0 && tui_noisy(t, keep))
        t->ilatent = t->items[0].latent; /* the filter hid it */
}

void
tui_set_noise(Tui *t, int on, float threshold)
{
    if (threshold > 0)
        t->noise = threshold;
    t->noise_on = on && t->noise > 0;
    if (tui_image_shown(t))
        relist(t);
}

void
tui_set_patch(Tui *t, int px, int py)
{
    int g = t->img.grid;
    if (px >= 0 && g > 0) {
        px = px < 0 ? 0 : px >= g ? g - 1 : px;
        py = py < 0 ? 0 : py >= g ? g - 1 : py;
    } else {
        px = py = -1;
    }
    t->px = px;
    t->py = py;
    relist(t);
}

/* Moves a selection index by key; returns 1 if the key was a movement key. */
static int
move_index(int key, int *sel, int n, int page)
{
    int s = *sel;
    switch (key) {
    case 'j': case TUI_KEY_DOWN: s++; break;
    case 'k': case TUI_KEY_UP: s--; break;
    case TUI_KEY_PGDN: case 6 /* Ctrl-F */: s += page; break;
    case TUI_KEY_PGUP: case 2 /* Ctrl-B */: s -= page; break;
    case 'g': case TUI_KEY_HOME: s = 0; break;
    case 'G': case TUI_KEY_END: s = n - 1; break;
    default: return 0;
    }
    if (s >= n)
        s = n - 1;
    if (s < 0)
        s = 0;
    *sel = s;
    return 1;
}

static const int sort_cycle[] = { IDX_SORT_FREQ, IDX_SORT_MEAN, IDX_SORT_ENTROPY, IDX_SORT_SHARE,
                                  IDX_SORT_MAX, IDX_SORT_LATENT };

int
tui_latents_key(Tui *t, int key)
{
    if (move_index(key, &t->sel, t->n_order, table_rows(t))) {
        clamp_sel(t);
        return 1;
    }
    TuiStats *s = cur_stats(t);
    switch (key) {
    case TUI_KEY_ENTER:
    case 'l':
    case TUI_KEY_RIGHT:
        if (t->n_order == 0)
            return 1;
        if (tui_open_latent(t, s->rows[t->order[t->sel]].latent) == 0)
            tui_goto(t, TUI_LATENT, 1);
        return 1;
    case 's': {
        int i = 0;
        while (i < (int)LEN(sort_cycle) && sort_cycle[i] != t->sort)
            i++;
        t->sort = sort_cycle[(i + 1) % (int)LEN(sort_cycle)];
        t->desc = t->sort != IDX_SORT_LATENT;
        tui_refilter(t);
        clamp_sel(t);
        tui_status(t, 0, "sorted by %s %s", idx_sort_name(t->sort), t->desc ? "descending" : "ascending");
        return 1;
    }
    case 'r':
        t->desc = !t->desc;
        tui_refilter(t);
        clamp_sel(t);
        tui_status(t, 0, "sorted by %s %s", idx_sort_name(t->sort), t->desc ? "descending" : "ascending");
        return 1;
    case 'd':
        t->hide_dead = !t->hide_dead;
        tui_refilter(t);
        clamp_sel(t);
        tui_status(t, 0, "dead latents %s", t->hide_dead ? "hidden" : "shown");
        return 1;
    case 'D':
        t->hide_dense = !t->hide_dense;
        tui_refilter(t);
        clamp_sel(t);
        tui_status(t, 0, "dense latents (freq > %g) %s", TUI_DENSE_FREQ,
                   t->hide_dense ? "hidden" : "shown");
        return 1;
    case 'a':
        t->only_annotated = !t->only_annotated;
        tui_refilter(t);
        clamp_sel(t);
        tui_status(t, 0, "%s", t->only_annotated ? "annotated latents only" : "all latents");
        return 1;
    case 'c':
        if (t->n_order && s->rows[t->order[t->sel]].top_class >= 0 &&
            tui_open_class(t, s->rows[t->order[t->sel]].top_class) == 0)
            tui_goto(t, TUI_CLASS, 1);
        return 1;
    }
    return 0;
}

/* Grid position of cell i: side-local column and row. */
static int
grid_n(const Tui *t, int side)
{
    return t->ls[side].ok ? t->ls[side].n_top : 0;
}

int
tui_latent_key(Tui *t, int key)
{
    if (t->latent < 0)
        return 0;
    TuiLayout lay;
    tui_layout(t, &lay);
    int gc = lay.gcols > 0 ? lay.gcols : 1;
    int n = grid_n(t, t->gside), col = t->gsel % gc, row = t->gsel / gc;
    switch (key) {
    case 'h': case TUI_KEY_LEFT:
        if (col > 0)
            t->gsel--;
        else if (t->gside == 1 && grid_n(t, 0) > 0) {
            t->gside = 0;
            int n0 = grid_n(t, 0), s = row * gc + gc - 1;
            t->gsel = s < n0 ? s : n0 - 1;
        }
        return 1;
    case 'l': case TUI_KEY_RIGHT:
        if (col < gc - 1 && t->gsel + 1 < n)
            t->gsel++;
        else if (t->gside == 0 && grid_n(t, 1) > 0) {
            t->gside = 1;
            int n1 = grid_n(t, 1), s = row * gc;
            t->gsel = s < n1 ? s : n1 - 1;
        }
        return 1;
    case 'j': case TUI_KEY_DOWN:
        if (t->gsel + gc < n)
            t->gsel += gc;
        return 1;
    case 'k': case TUI_KEY_UP:
        if (t->gsel - gc >= 0)
            t->gsel -= gc;
        return 1;
    case 'g': case TUI_KEY_HOME:
        t->gsel = 0;
        return 1;
    case 'G': case TUI_KEY_END:
        t->gsel = n > 0 ? n - 1 : 0;
        return 1;
    case TUI_KEY_PGDN: case ']':
    case TUI_KEY_PGUP: case '[': {
        int dir = key == TUI_KEY_PGDN || key == ']' ? 1 : -1;
        if (t->n_order == 0)
            return 1;
        t->sel = t->sel + dir < 0 ? 0 : t->sel + dir >= t->n_order ? t->n_order - 1 : t->sel + dir;
        clamp_sel(t);
        tui_open_latent(t, cur_stats(t)->rows[t->order[t->sel]].latent);
        return 1;
    }
    case TUI_KEY_ENTER:
        if (t->gsel < n &&
            tui_open_image(t, t->ls[t->gside].top[t->gsel].image_id, t->latent) == 0)
            tui_goto(t, TUI_IMAGE, 1);
        return 1;
    case 'c':
        if (t->gsel < n && t->ls[t->gside].top[t->gsel].label >= 0 &&
            tui_open_class(t, t->ls[t->gside].top[t->gsel].label) == 0)
            tui_goto(t, TUI_CLASS, 1);
        return 1;
    }
    return 0;
}

/* p: between the indexed image and the probed ones. */
static void
switch_source(Tui *t)
{
    if (t->src == TUI_SRC_INDEX) {
        if (t->n_probed == 0) {
            tui_status(t, 1, "no probed images: :open FILE probes one");
            return;
        }
        tui_probe_show(t, t->probed >= 0 && t->probed < t->n_probed ? t->probed : t->n_probed - 1);
        tui_status(t, 0, "probed images: [ ] step through them, p the indexed image");
    } else if (t->image >= 0) {
        if (tui_open_image(t, t->image, t->ilatent) == 0)
            tui_status(t, 0, "indexed images: [ ] step through them, p the probed images");
    } else {
        tui_status(t, 1, "no indexed image opened yet (:image N, or Enter on a top image)");
    }
}

int
tui_image_key(Tui *t, int key)
{
    if (key == 'p') {
        switch_source(t);
        return 1;
    }
    if (!tui_image_shown(t))
        return 0;
    int g = t->img.grid, dx = 0, dy = 0;
    switch (key) {
    case 'h': case TUI_KEY_LEFT: dx = -1; break;
    case 'l': case TUI_KEY_RIGHT: dx = 1; break;
    case 'k': case TUI_KEY_UP: dy = -1; break;
    case 'j': case TUI_KEY_DOWN: dy = 1; break;
    case 'g': case TUI_KEY_HOME: tui_set_patch(t, 0, 0); return 1;
    case 'G': case TUI_KEY_END: tui_set_patch(t, g - 1, g - 1); return 1;
    case 'x': case TUI_KEY_BS:
        tui_set_patch(t, -1, -1);
        tui_status(t, 0, "patch cursor off: image-level latents");
        return 1;
    case 'J': case TUI_KEY_PGDN:
    case 'K': case TUI_KEY_PGUP:
        if (t->n_items == 0)
            return 1;
        t->isel += key == 'J' || key == TUI_KEY_PGDN ? 1 : -1;
        t->isel = t->isel < 0 ? 0 : t->isel >= t->n_items ? t->n_items - 1 : t->isel;
        t->ilatent = t->items[t->isel].latent;
        return 1;
    case TUI_KEY_ENTER:
        if (t->ilatent >= 0 && tui_open_latent(t, t->ilatent) == 0)
            tui_goto(t, TUI_LATENT, 1);
        return 1;
    case 'c':
        if (t->img.label >= 0 && tui_open_class(t, t->img.label) == 0)
            tui_goto(t, TUI_CLASS, 1);
        return 1;
    case ']': case '[': {
        if (t->src == TUI_SRC_PROBE) {
            int to = t->probed + (key == ']' ? 1 : -1);
            if (to >= 0 && to < t->n_probed)
                tui_probe_show(t, to);
            return 1;
        }
        int64_t to = t->image + (key == ']' ? 1 : -1);
        if (to >= 1)
            tui_open_image(t, to, t->ilatent);
        return 1;
    }
    default:
        return 0;
    }
    if (g <= 0)
        return 1;
    if (t->px < 0) {
        tui_set_patch(t, g / 2, g / 2);
        return 1;
    }
    int x = t->px + dx, y = t->py + dy;
    tui_set_patch(t, x < 0 ? 0 : x >= g ? g - 1 : x, y < 0 ? 0 : y >= g ? g - 1 : y);
    return 1;
}

int
tui_class_key(Tui *t, int key)
{
    int c = t->cls < 0 ? 0 : t->cls;
    TuiLayout l;
    tui_layout(t, &l);
    if (t->n_classes > 0 && move_index(key, &c, t->n_classes, l.clist.h > 2 ? l.clist.h - 2 : 1)) {
        if (c != t->cls)
            tui_open_class(t, c);
        return 1;
    }
    int side = t->model && t->cs[1].ok ? 1 : 0;
    switch (key) {
    case 'J': case 'K': {
        int n = t->cs[side].n_top;
        if (n == 0)
            return 1;
        int s = 0;
        while (s < n && t->cs[side].top[s].latent != t->latent)
            s++;
        s = s >= n ? 0 : s + (key == 'J' ? 1 : -1);
        s = s < 0 ? 0 : s >= n ? n - 1 : s;
        t->latent = t->cs[side].top[s].latent;
        return 1;
    }
    case TUI_KEY_ENTER: {
        int32_t s = t->latent;
        int found = 0;
        for (int i = 0; i < t->cs[side].n_top; i++)
            found |= t->cs[side].top[i].latent == s;
        if (!found && t->cs[side].n_top > 0)
            s = t->cs[side].top[0].latent;
        if (s >= 0 && tui_open_latent(t, s) == 0)
            tui_goto(t, TUI_LATENT, 1);
        return 1;
    }
    }
    return 0;
}

int
tui_overview_key(Tui *t, int key)
{
    if (key == TUI_KEY_ENTER) {
        tui_goto(t, TUI_LATENTS, 1);
        return 1;
    }
    return 0;
}

int
tui_help_key(Tui *t, int key)
{
    return move_index(key, &t->help_top, help_count(), 10);
}

/* ------------------------------------------------------------ commands */

static int
parse_int(const char *s, long long *v)
{
    char *end;
    if (!s || !*s)
        return -1;
    long long x = strtoll(s, &end, 10);
    while (*end == ' ')
        end++;
    if (*end)
        return -1;
    *v = x;
    return 0;
}

static int
find_class(Tui *t, const char *name)
{
    long long v;
    if (parse_int(name, &v) == 0 && v >= 0 && v < t->n_classes)
        return (int)v;
    for (int i = 0; i < t->n_classes; i++)
        if (t->classes[i] && !strcmp(t->classes[i], name))
            return i;
    for (int i = 0; i < t->n_classes; i++)
        if (t->classes[i] && !strcasecmp(t->classes[i], name))
            return i;
    for (int i = 0; i < t->n_classes; i++) /* unique prefix or substring */
        if (ci_contains(t->classes[i], name))
            return i;
    return -1;
}

static void
clear_filters(Tui *t)
{
    t->hide_dead = t->hide_dense = t->only_annotated = 0;
    t->filter_class = -1;
    t->min_freq = t->max_freq = t->min_mean = t->max_mean = t->min_ent = t->max_ent = NAN;
}

/* One `:filter` term: dead dense annotated clear class=NAME freq>X mean<X entropy<=X ... */
static int
filter_term(Tui *t, char *w)
{
    if (!strcmp(w, "dead")) { t->hide_dead = 1; return 0; }
    if (!strcmp(w, "dense")) { t->hide_dense = 1; return 0; }
    if (!strcmp(w, "annotated")) { t->only_annotated = 1; return 0; }
    if (!strcmp(w, "clear") || !strcmp(w, "none") || !strcmp(w, "all") || !strcmp(w, "off")) {
        clear_filters(t);
        return 0;
    }
    if (!strncmp(w, "class=", 6)) {
        int c = find_class(t, w + 6);
        if (c < 0)
            return -1;
        t->filter_class = c;
        return 0;
    }
    const char *fields[] = { "freq", "mean", "entropy" };
    double *lo[] = { &t->min_freq, &t->min_mean, &t->min_ent };
    double *hi[] = { &t->max_freq, &t->max_mean, &t->max_ent };
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(fields[i]);
        if (strncmp(w, fields[i], n) || (w[n] != '<' && w[n] != '>'))
            continue;
        char op = w[n];
        const char *num = w + n + 1 + (w[n + 1] == '=');
        char *end;
        double v = strtod(num, &end);
        if (end == num || *end)
            return -1;
        *(op == '<' ? hi[i] : lo[i]) = v;
        return 0;
    }
    return -1;
}

static char *
skip_ws(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

int
tui_command(Tui *t, const char *line)
{
    if (t->loading)
        tui_data_poll(t, 1);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    char *cmd = skip_ws(buf), *arg = cmd;
    while (*arg && *arg != ' ' && *arg != '\t')
        arg++;
    if (*arg)
        *arg++ = 0;
    arg = skip_ws(arg);
    for (char *e = arg + strlen(arg); e > arg && (e[-1] == ' ' || e[-1] == '\t'); )
        *--e = 0;
    long long v;

    if (!*cmd)
        return 0;
    if (!strcmp(cmd, "q") || !strcmp(cmd, "quit") || !strcmp(cmd, "qa")) {
        t->quit = 1;
        return 0;
    }
    if (!strcmp(cmd, "latent") || !strcmp(cmd, "l")) {
        if (parse_int(arg, &v) || v < 0 || v > INT32_MAX) {
            tui_status(t, 1, "usage: :latent N");
            return -1;
        }
        if (tui_open_latent(t, (int32_t)v))
            return -1;
        tui_select_latent(t, (int32_t)v);
        tui_goto(t, TUI_LATENT, 1);
        return 0;
    }
    if (!strcmp(cmd, "image") || !strcmp(cmd, "i")) {
        if (parse_int(arg, &v) || v < 0) {
            tui_status(t, 1, "usage: :image N (image id)");
            return -1;
        }
        if (tui_open_image(t, v, t->latent))
            return -1;
        tui_goto(t, TUI_IMAGE, 1);
        return 0;
    }
    if (!strcmp(cmd, "class") || !strcmp(cmd, "c")) {
        int c = arg[0] ? find_class(t, arg) : -1;
        if (c < 0) {
            tui_status(t, 1, arg[0] ? "no class \"%s\"" : "usage: :class NAME%s", arg);
            return -1;
        }
        if (tui_open_class(t, c))
            return -1;
        tui_goto(t, TUI_CLASS, 1);
        return 0;
    }
    if (!strcmp(cmd, "dataset") || !strcmp(cmd, "ds")) {
        if (!arg[0]) {
            char b[400] = "";
            size_t o = 0;
            for (int i = 0; i < t->n_ds && o < sizeof b; i++)
                o += (size_t)snprintf(b + o, sizeof b - o, "%s%d %s%s", i ? ", " : "", i + 1,
                                      t->ds[i].name, t->ds[i].id == t->dataset_id ? " (shown)" : "");
            tui_status(t, 0, "datasets: %s", t->n_ds ? b : "none");
            return 0;
        }
        int k = tui_find_dataset(t, arg);
        if (k < 0) {
            tui_status(t, 1, "no dataset \"%s\" (:dataset lists them)", arg);
            return -1;
        }
        return tui_set_dataset(t, k);
    }
    if (!strcmp(cmd, "sort")) {
        char *dir = arg;
        while (*dir && *dir != ' ')
            dir++;
        if (*dir)
            *dir++ = 0;
        dir = skip_ws(dir);
        int s = idx_sort_parse(arg);
        if (s < 0 || s == IDX_SORT_MAXPATCH || s == IDX_SORT_STD ||
            (*dir && strcmp(dir, "asc") && strcmp(dir, "desc"))) {
            tui_status(t, 1, "usage: :sort latent|freq|mean|max|entropy|share [asc|desc]");
            return -1;
        }
        t->sort = s;
        t->desc = *dir ? !strcmp(dir, "desc") : s != IDX_SORT_LATENT;
        tui_refilter(t);
        clamp_sel(t);
        tui_goto(t, TUI_LATENTS, 0);
        tui_status(t, 0, "sorted by %s %s", idx_sort_name(t->sort), t->desc ? "descending" : "ascending");
        return 0;
    }
    if (!strcmp(cmd, "filter") || !strcmp(cmd, "f")) {
        if (!arg[0]) {
            tui_status(t, 1, "usage: :filter dead dense annotated class=NAME freq>X mean<X "
                             "entropy<X clear");
            return -1;
        }
        /* class=NAME takes the rest of the line: class names have spaces */
        char *cl = strstr(arg, "class=");
        int c = -1;
        if (cl && (cl == arg || cl[-1] == ' ')) {
            if ((c = find_class(t, skip_ws(cl + 6))) < 0) {
                tui_status(t, 1, "no class \"%s\"", cl + 6);
                return -1;
            }
            *cl = 0;
        }
        for (char *w = strtok(arg, " \t"); w; w = strtok(NULL, " \t"))
            if (filter_term(t, w)) {
                tui_status(t, 1, "bad filter term \"%s\"", w);
                tui_refilter(t);
                return -1;
            }
        if (c >= 0)
            t->filter_class = c;
        tui_refilter(t);
        clamp_sel(t);
        tui_goto(t, TUI_LATENTS, 0);
        tui_status(t, 0, "%d latents pass the filter", t->n_order);
        return 0;
    }
    if (!strcmp(cmd, "annotate") || !strcmp(cmd, "a")) {
        char err[PS_ERRLEN];
        int32_t s = t->view == TUI_LATENTS && t->n_order ? cur_stats(t)->rows[t->order[t->sel]].latent
                  : t->view == TUI_IMAGE ? t->ilatent : t->latent;
        if (s < 0 || !t->st[0].present) {
            tui_status(t, 1, "no latent selected to annotate");
            return -1;
        }
        if (!arg[0]) {
            tui_status(t, 1, "usage: :annotate NAME [-- NOTE]   (:annotate - removes it)");
            return -1;
        }
        char *note = strstr(arg, " -- ");
        if (note) {
            *note = 0;
            note = skip_ws(note + 4);
        }
        int rc = !strcmp(arg, "-") ? idx_unannotate(t->ix, t->st[0].ss.sae_id, s, err)
                                   : idx_annotate(t->ix, t->st[0].ss.sae_id, s, arg, note, err);
        if (rc) {
            tui_status(t, 1, "%s%s", err, t->readonly ? " (index opened read-only)" : "");
            return -1;
        }
        for (int m = 0; m < 2; m++) {
            TuiStats *st = &t->st[m];
            if (!st->present || s >= st->n_pos || st->pos[s] < 0)
                continue;
            TuiRow *r = &st->rows[st->pos[s]];
            free(r->name);
            r->name = strcmp(arg, "-") ? xstrdup(arg) : NULL;
        }
        for (int m = 0; m < 2; m++)
            if (t->ls[m].ok && t->latent == s)
                snprintf(t->ls[m].st.name, sizeof t->ls[m].st.name, "%s",
                         strcmp(arg, "-") ? arg : "");
        tui_status(t, 0, strcmp(arg, "-") ? "latent %d: \"%s\"" : "latent %d: annotation removed%s",
                   s, strcmp(arg, "-") ? arg : "");
        return 0;
    }
    if (!strcmp(cmd, "model") || !strcmp(cmd, "b")) {
        int m = !strcmp(arg, "base") ? 0 : !strcmp(arg, "adapted") ? 1 : !arg[0] ? !t->model : -1;
        if (m < 0) {
            tui_status(t, 1, "usage: :model base|adapted");
            return -1;
        }
        return tui_key(t, m == t->model ? 0 : 'b') ? 0 : 0;
    }
    if (!strcmp(cmd, "overlay") || !strcmp(cmd, "mask")) {
        int o = !strcmp(arg, "mask") ? TUI_OV_MASK : !strcmp(arg, "heat") ? TUI_OV_HEAT
              : !strcmp(arg, "none") || !strcmp(arg, "off") ? TUI_OV_NONE : -1;
        if (o < 0) {
            tui_status(t, 1, "usage: :overlay mask|heat|none");
            return -1;
        }
        t->overlay = o;
        return 0;
    }
    if (!strcmp(cmd, "graphics")) {
        int g = tui_gfx_parse(arg);
        if (g < 0) {
            tui_status(t, 1, "usage: :graphics sixel|blocks|none");
            return -1;
        }
        t->gfx = (TuiGfx)g;
        t->full_redraw = 1;
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "h")) {
        tui_goto(t, TUI_HELP, 1);
        return 0;
    }
    if (!strcmp(cmd, "open") || !strcmp(cmd, "o") || !strcmp(cmd, "e")) {
        if (!arg[0]) {
            tui_status(t, 1, "usage: :open FILE... (image files or glob patterns)");
            return -1;
        }
        struct stat sb;
        if (stat(arg, &sb) == 0) { /* one file, spaces and all */
            const char *one[1] = { arg };
            return tui_probe_open(t, one, 1);
        }
        const char *files[64];
        int n = 0;
        for (char *w = strtok(arg, " \t"); w && n < (int)LEN(files); w = strtok(NULL, " \t"))
            files[n++] = w;
        return tui_probe_open(t, files, n);
    }
    if (!strcmp(cmd, "save") || !strcmp(cmd, "w")) {
        return tui_probe_save(t);
    }
    if (!strcmp(cmd, "noise")) {
        double x = 0;
        char *end = NULL;
        if (!strcmp(arg, "off") || !strcmp(arg, "0")) {
            tui_set_noise(t, 0, 0);
        } else if (!arg[0] || !strcmp(arg, "on")) {
            tui_set_noise(t, 1, 0);
        } else if ((x = strtod(arg, &end)) > 0 && end && !*end) {
            tui_set_noise(t, 1, (float)x);
        } else {
            tui_status(t, 1, "usage: :noise [T|on|off] (hide latents with base mean activation > T)");
            return -1;
        }
        tui_status(t, 0, "noise filter %s (threshold %g)", t->noise_on ? "on" : "off", t->noise);
        return 0;
    }
    if (!strcmp(cmd, "search")) {
        snprintf(t->search, sizeof t->search, "%s", arg);
        return tui_search_next(t, 1);
    }
    tui_status(t, 1, "unknown command \":%s\" (? lists them)", cmd);
    return -1;
}

/* ----------------------------------------------------------------- keys */

static int
prompt_key(Tui *t, int key)
{
    switch (key) {
    case TUI_KEY_ESC:
        if (t->prompt == '/' && t->view != TUI_HELP && t->view != TUI_CLASS) {
            t->sel = t->search_origin;
            clamp_sel(t);
        }
        t->prompt = 0;
        return 1;
    case TUI_KEY_ENTER:
    case '\r': {
        int p = t->prompt;
        t->prompt = 0;
        t->input[t->input_n] = 0;
        if (p == ':')
            tui_command(t, t->input);
        else if (t->input_n) {
            snprintf(t->search, sizeof t->search, "%s", t->input);
            if (search_at(t, t->search, t->view == TUI_LATENTS ? t->search_origin : search_pos(t), 1))
                tui_status(t, 1, "not found: %s", t->search);
            else
                tui_status(t, 0, "/%s  (n next, N previous)", t->search);
        }
        return 1;
    }
    case TUI_KEY_BS:
    case 8:
        if (t->input_n > 0)
            t->input[--t->input_n] = 0;
        else
            t->prompt = 0; /* backspace on an empty prompt closes it, as in vim */
        break;
    case 21: /* Ctrl-U */
        t->input_n = 0;
        t->input[0] = 0;
        break;
    default:
        if (key >= 32 && key < 256 && key != 127) {
            if (t->input_n < (int)sizeof t->input - 1) {
                t->input[t->input_n++] = (char)key;
                t->input[t->input_n] = 0;
            }
            if (t->prompt == ':' && t->input_n == 1 && (key == 'o' || key == 'e'))
                tui_probe_prepare(t); /* :open is coming: load the models meanwhile */
            break;
        }
        return 0; /* not a prompt key: movement keys go on to the view */
    }
    if (t->prompt == '/' && t->view == TUI_LATENTS) { /* incremental */
        if (t->input_n && search_at(t, t->input, t->search_origin, 1) == 0)
            return 1;
        t->sel = t->search_origin;
        clamp_sel(t);
    }
    return 1;
}

static int
view_key(Tui *t, int key)
{
    switch (t->view) {
    case TUI_LATENTS: return tui_latents_key(t, key);
    case TUI_LATENT: return tui_latent_key(t, key);
    case TUI_IMAGE: return tui_image_key(t, key);
    case TUI_CLASS: return tui_class_key(t, key);
    case TUI_OVERVIEW: return tui_overview_key(t, key);
    case TUI_HELP: return tui_help_key(t, key);
    default: return 0;
    }
}

static void
open_prompt(Tui *t, int kind)
{
    t->prompt = kind;
    t->input_n = 0;
    t->input[0] = 0;
    if (kind == '/' && t->view != TUI_LATENTS && t->view != TUI_CLASS && t->view != TUI_HELP)
        tui_goto(t, TUI_LATENTS, 1);
    t->search_origin = search_pos(t);
}

/* Opens view v from the tab bar / digits / Tab with sensible defaults. */
static void
switch_view(Tui *t, TuiView v)
{
    TuiStats *s = cur_stats(t);
    if (v == TUI_LATENT && t->latent < 0 && t->n_order > 0)
        tui_open_latent(t, s->rows[t->order[t->sel]].latent);
    if (v == TUI_IMAGE && !tui_image_shown(t)) {
        int64_t im = t->latent >= 0 && t->ls[0].n_top > 0 ? t->ls[0].top[0].image_id : 1;
        tui_open_image(t, im, t->latent);
    }
    if (v == TUI_CLASS && t->cls < 0 && t->n_classes > 0)
        tui_open_class(t, 0);
    tui_goto(t, v, 0);
}

int
tui_key(Tui *t, int key)
{
    if (key == TUI_KEY_RESIZE) {
        t->full_redraw = 1;
        return 1;
    }
    if (key == '\r')
        key = TUI_KEY_ENTER;
    if (t->loading && key != 'j' && key != 'k' && key != TUI_KEY_UP && key != TUI_KEY_DOWN &&
        key != TUI_KEY_CTRL_L)
        tui_data_poll(t, 1); /* sort, filter, search, ... need every row */
    if (t->prompt && prompt_key(t, key))
        return 1;
    if (view_key(t, key))
        return 1;
    switch (key) {
    case 'q':
        go_back(t);
        return 1;
    case 'Q':
        t->quit = 1;
        return 1;
    case TUI_KEY_ESC:
        if (tui_probe_cancel(t))
            return 1;
        if (t->n_stack > 0)
            go_back(t);
        return 1;
    case 'f':
        if (t->loading)
            tui_data_poll(t, 1);
        tui_set_noise(t, !t->noise_on, 0);
        if (!t->st[0].present)
            tui_status(t, 1, "noise filter %s, but this index has no base statistics to filter "
                       "with", t->noise_on ? "on" : "off");
        else
            tui_status(t, 0, "noise filter %s: latents with base mean activation > %g %s",
                       t->noise_on ? "on" : "off", t->noise, t->noise_on ? "hidden" : "shown");
        return 1;
    case '?':
        if (t->view != TUI_HELP)
            tui_goto(t, TUI_HELP, 1);
        return 1;
    case TUI_KEY_TAB:
    case TUI_KEY_BTAB: {
        int v = t->view == TUI_HELP ? TUI_LATENTS : (int)t->view;
        v = (v + (key == TUI_KEY_TAB ? 1 : TUI_HELP - 1)) % TUI_HELP;
        switch_view(t, (TuiView)v);
        return 1;
    }
    case '1': case '2': case '3': case '4': case '5':
        switch_view(t, (TuiView)(key - '1'));
        return 1;
    case ':':
    case '/':
        open_prompt(t, key);
        return 1;
    case 'n':
    case 'N':
        tui_search_next(t, key == 'n' ? 1 : -1);
        return 1;
    case 't': {
        if (t->n_ds < 2) {
            tui_status(t, 1, "this index has statistics for one dataset only");
            return 1;
        }
        int k = 0;
        while (k < t->n_ds && t->ds[k].id != t->dataset_id)
            k++;
        tui_set_dataset(t, (k + 1) % t->n_ds);
        return 1;
    }
    case 'm':
        t->overlay = (t->overlay + 1) % 3;
        tui_status(t, 0, "overlay: %s", t->overlay == TUI_OV_MASK ? "mask (inactive patches darkened)"
                                      : t->overlay == TUI_OV_HEAT ? "heatmap" : "none");
        return 1;
    case 'b':
        if (!t->st[1].present && !t->is[1].ok) {
            tui_status(t, 1, "this index has no adapted model");
            return 1;
        }
        t->model = !t->model;
        if (t->st[1].present) {
            int32_t keep = t->n_order ? t->st[!t->model].rows[t->order[t->sel]].latent : -1;
            tui_refilter(t);
            if (keep >= 0)
                tui_select_latent(t, keep);
        }
        if (t->view == TUI_LATENT)
            t->gside = t->model && t->ls[1].ok ? 1 : 0,
            t->gsel = MIN(t->gsel, MAX(grid_n(t, t->gside) - 1, 0));
        tui_status(t, 0, "model: %s", t->model ? "adapted" : "base");
        return 1;
    case TUI_KEY_CTRL_L:
        t->full_redraw = 1;
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- mouse */

static int
in_rect(TuiRect r, int y, int x)
{
    return y >= r.y && y < r.y + r.h && x >= r.x && x < r.x + r.w;
}

/* Patch under cell (y, x) of picture rectangle r; -1 if outside the picture. */
static int
patch_at(const Tui *t, TuiRect r, int y, int x, int *px, int *py)
{
    int pw, ph, cw = t->gfx == TUI_GFX_SIXEL ? t->term.cell_w : 1;
    int ch = t->gfx == TUI_GFX_SIXEL ? t->term.cell_h : 2;
    int g = t->img.grid;
    tui_pic_pixels(t, r, &pw, &ph);
    if (g <= 0 || pw <= 0 || ph <= 0)
        return -1;
    int fx = (x - r.x) * cw + cw / 2, fy = (y - r.y) * ch + ch / 2;
    if (fx < 0 || fy < 0 || fx >= pw || fy >= ph)
        return -1;
    *px = fx * g / pw;
    *py = fy * g / ph;
    return 0;
}

int
tui_tab_at(const Tui *t, int x)
{
    (void)t;
    int cx = 0;
    for (int v = 0; v < TUI_HELP; v++) {
        int w = (int)strlen(view_names[v]) + 4; /* " 1 Name " */
        if (x >= cx && x < cx + w)
            return v;
        cx += w;
    }
    return -1;
}

int
tui_mouse(Tui *t, int kind, int y, int x)
{
    if (t->loading)
        tui_data_poll(t, 1);
    TuiLayout l;
    tui_layout(t, &l);
    if (l.too_small)
        return 0;
    if (kind == TUI_MOUSE_WHEEL_UP || kind == TUI_MOUSE_WHEEL_DOWN) {
        int k = kind == TUI_MOUSE_WHEEL_UP ? TUI_KEY_UP : TUI_KEY_DOWN;
        if (t->view == TUI_IMAGE)
            k = kind == TUI_MOUSE_WHEEL_UP ? 'K' : 'J';
        for (int i = 0; i < 3; i++)
            view_key(t, k);
        return 1;
    }
    int dbl = kind == TUI_MOUSE_DOUBLE;
    if (y == 0) {
        int v = tui_tab_at(t, x);
        if (v >= 0)
            switch_view(t, (TuiView)v);
        return v >= 0;
    }
    switch (t->view) {
    case TUI_LATENTS:
        if (in_rect(l.table, y, x) && y > l.table.y) {
            int i = t->top + (y - l.table.y - 1);
            if (i < t->n_order) {
                t->sel = i;
                if (dbl)
                    tui_latents_key(t, TUI_KEY_ENTER);
                return 1;
            }
        }
        break;
    case TUI_LATENT:
        for (int side = 0; side < 2; side++) {
            if (!in_rect(l.grid[side], y, x) || l.cell_w <= 0 || l.cell_h <= 0)
                continue;
            int c = (x - l.grid[side].x) / (l.cell_w + 1), r = (y - l.grid[side].y) / l.cell_h;
            int i = r * l.gcols + c;
            if (c < l.gcols && i < grid_n(t, side)) {
                t->gside = side;
                t->gsel = i;
                if (dbl)
                    tui_latent_key(t, TUI_KEY_ENTER);
                return 1;
            }
        }
        break;
    case TUI_IMAGE: {
        if (l.strip.h > 0 && in_rect(l.strip, y, x)) {
            for (int k = 0; k < t->n_probed; k++) {
                int ex, ew;
                char lab[64];
                if (tui_strip_entry(t, k, l.strip.w, &ex, &ew, lab, sizeof lab) == 0 &&
                    x - l.strip.x >= ex && x - l.strip.x < ex + ew) {
                    tui_probe_show(t, k);
                    return 1;
                }
            }
            return 0;
        }
        TuiRect pics[3] = { l.main_img, l.ov[0], l.ov[1] };
        for (int i = 0; i < 3; i++) {
            int px, py;
            if (in_rect(pics[i], y, x) && patch_at(t, pics[i], y, x, &px, &py) == 0) {
                tui_set_patch(t, px, py);
                return 1;
            }
        }
        if (in_rect(l.lists, y, x)) {
            /* the lists are drawn in two columns; tui_draw records item rows */
            int col = (x - l.lists.x) / (l.lists.w / 2 > 0 ? l.lists.w / 2 : 1);
            int row = y - l.lists.y, k = 0;
            for (int lev = 0; lev < 2; lev++) {
                if (lev != col)
                    continue;
                int line = 1, grp = -1;
                for (int i = 0; i < t->n_items; i++) {
                    if (t->items[i].level != lev)
                        continue;
                    if (t->items[i].group != grp) {
                        grp = t->items[i].group;
                        line++;
                    }
                    if (line == row) {
                        t->isel = i;
                        t->ilatent = t->items[i].latent;
                        if (dbl)
                            tui_image_key(t, TUI_KEY_ENTER);
                        return 1;
                    }
                    line++;
                    k++;
                }
            }
        }
        break;
    }
    case TUI_CLASS:
        if (in_rect(l.clist, y, x) && y > l.clist.y) {
            int c = t->ctop + (y - l.clist.y - 1);
            if (c < t->n_classes) {
                tui_open_class(t, c);
                return 1;
            }
        }
        break;
    default:
        break;
    }
    return 0;
}

/* --------------------------------------------------------------- layout */

void
tui_pic_pixels(const Tui *t, TuiRect r, int *pw, int *ph)
{
    int cw = t->gfx == TUI_GFX_SIXEL ? t->term.cell_w : 1;
    int ch = t->gfx == TUI_GFX_SIXEL ? t->term.cell_h : 2;
    int w = r.w * cw, h = r.h * ch, s = w < h ? w : h;
    *pw = *ph = s > 0 ? s : 0;
}

/* Width in cells of a square picture ph rows tall. */
static int
square_w(const Tui *t, int ph)
{
    int cw = t->gfx == TUI_GFX_SIXEL ? t->term.cell_w : 1;
    int ch = t->gfx == TUI_GFX_SIXEL ? t->term.cell_h : 2;
    return (ph * ch + cw - 1) / cw;
}

static TuiRect
rect(int y, int x, int h, int w)
{
    TuiRect r = { y, x, h > 0 ? h : 0, w > 0 ? w : 0 };
    return r;
}

void
tui_layout(const Tui *t, TuiLayout *l)
{
    memset(l, 0, sizeof *l);
    if (t->rows < 8 || t->cols < 40) {
        l->too_small = 1;
        return;
    }
    l->body = rect(1, 0, t->rows - 2, t->cols);
    TuiRect b = l->body;
    l->table = b;

    /* Latent: info line, two grids, 7 lines of per-side statistics */
    int stats_h = 7, info_h = 2;
    int side_w = (b.w - 1) / 2, grid_h = b.h - info_h - stats_h;
    if (grid_h < 3) {
        stats_h = 0;
        grid_h = b.h - info_h;
    }
    int need = 0;
    for (int s = 0; s < 2; s++)
        need = MAX(need, t->ls[s].ok ? t->ls[s].n_top : 0);
    if (need < 1)
        need = 1;
    int ph = 8;
    for (; ph > 2; ph--) {
        int pw = square_w(t, ph), gc = (side_w + 1) / (pw + 1), gr = grid_h / (ph + 1);
        if (gc >= 1 && gr >= 1 && gc * gr >= need)
            break;
    }
    if (ph < 2)
        ph = 2;
    l->cell_h = ph + 1;
    l->cell_w = square_w(t, ph);
    if (l->cell_w > side_w)
        l->cell_w = side_w;
    l->gcols = MAX(1, (side_w + 1) / (l->cell_w + 1));
    l->grows = MAX(1, grid_h / l->cell_h);
    for (int s = 0; s < 2; s++)
        l->grid[s] = rect(b.y + info_h, b.x + s * (side_w + 1), l->grows * l->cell_h, side_w);

    /* Image: the probed-images strip (if any), three square pictures in a row, then lists
     * and predictions */
    int strip = t->n_probed > 0 && b.h >= 8, lists_min = 8;
    l->strip = strip ? rect(b.y + 1, b.x, 1, b.w) : rect(0, 0, 0, 0);
    int iph = MIN(14, b.h - 2 - strip - lists_min);
    if (iph < 3)
        iph = MIN(3, b.h - 2 - strip);
    while (iph > 3 && 3 * (square_w(t, iph) + 1) > b.w)
        iph--;
    int ipw = MIN(square_w(t, iph), (b.w - 2) / 3);
    for (int i = 0; i < 3; i++) {
        TuiRect r = rect(b.y + 2 + strip, b.x + i * (ipw + 1), iph, ipw);
        if (i == 0)
            l->main_img = r;
        else
            l->ov[i - 1] = r;
    }
    int ly = b.y + 2 + strip + iph + 1, lh = b.y + b.h - ly;
    int pw_ = MIN(34, b.w / 3);
    int pics_w = 3 * (ipw + 1);
    if (b.w - pics_w >= 26 && lh < 12) {
        /* predictions beside the pictures when there is room */
        l->preds = rect(b.y + 1 + strip, pics_w, iph + 1, b.w - pics_w);
        l->lists = rect(ly, b.x, lh, b.w);
    } else {
        l->preds = rect(ly, b.w - pw_, lh, pw_);
        l->lists = rect(ly, b.x, lh, b.w - pw_ - 1);
    }

    /* Class: list of classes on the left */
    int cw = MIN(28, b.w / 4);
    l->clist = rect(b.y, b.x, b.h, cw);
    l->cdetail = rect(b.y, cw + 1, b.h, b.w - cw - 1);

    /* Overview: the scatter as big as fits in 60 % of the width, its y labels on the left */
    int sph = b.h - 2, ylab = 6;
    while (sph > 3 && ylab + square_w(t, sph) > b.w * 3 / 5)
        sph--;
    l->scatter = rect(b.y + 1, b.x + ylab, sph, square_w(t, sph));
    l->summary = rect(b.y + 1, l->scatter.x + l->scatter.w + 2, b.h - 1,
                      b.w - l->scatter.w - l->scatter.x - 2);
}

/* Columns a UTF-8 string takes (one a code point: names are mostly ASCII). */
static int
u8_cols(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int
tui_strip_entry(const Tui *t, int k, int w_strip, int *x, int *w, char *label, size_t n)
{
    enum { PREFIX = 8, NAME = 18 }; /* "probed: ", names cut to 18 columns */
    if (k < 0 || k >= t->n_probed || n < 8)
        return -1;
    int cur = t->probed >= 0 && t->probed < t->n_probed ? t->probed : 0;
    int first = 0, xs[2] = { 0, 0 };
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: scroll so the current entry fits; pass 1: place entry k */
        int cx = PREFIX + (first > 0 ? 2 : 0);
        for (int i = first; i < t->n_probed; i++) {
            int64_t saved = 0;
            const char *name = tui_probe_name(t, i, &saved);
            char cut[4 * NAME + 8];
            size_t b = 0;
            int cols = 0;
            for (const char *p = name ? name : "?"; *p && b + 5 < sizeof cut; p++) {
                if (((unsigned char)*p & 0xC0) != 0x80 && ++cols > NAME)
                    break;
                cut[b++] = *p;
            }
            cut[b] = 0;
            char lab[sizeof cut + 32];
            snprintf(lab, sizeof lab, " %d %s%s ", i + 1, cut, saved ? "*" : "");
            int lw = u8_cols(lab);
            if (pass == 0 && i == cur) {
                if (cx + lw > w_strip && first < cur) {
                    first++;
                    i = first - 1;
                    cx = PREFIX + 2;
                    continue;
                }
                break;
            }
            if (pass == 1 && i == k) {
                xs[0] = cx;
                xs[1] = lw;
                snprintf(label, n, "%s", lab);
                break;
            }
            cx += lw;
        }
    }
    if (k < first)
        return -1;
    *x = xs[0];
    *w = xs[1];
    return xs[1] > 0 && *x + *w <= w_strip ? 0 : -1;
}
