/* SPDX-License-Identifier: MIT */
/*
 * test_tui.c - the explorer without a terminal: keys fed to the pure
 * handlers of tui.c over synthetic indexes (idx_synth) in the scratch
 * directory, checking the state they leave (sort order, filters, search,
 * views, patch cursor, grouped lists, commands, annotations, mouse hits);
 * the overlay and colour arithmetic against hand-computed values (PatchSAE's
 * mask, reference §7.3); terminal reply parsing; the sixel encoder's framing;
 * and the hostile cases: an empty index, no adapted model, no thumbnails,
 * a 20x5 screen.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <sqlite3.h>

#include "idx.h"
#include "ps.h"
#include "test.h"
#include "tui.h"

static void
keys(Tui *t, const char *s)
{
    for (; *s; s++)
        tui_key(t, *s == '\n' ? TUI_KEY_ENTER : (unsigned char)*s);
}

/* Opens a fresh synthetic index as a Tui (screen 100x32, no graphics). */
static int
synth_tui(Tui *t, const char *name, int n_models, int thumb, int grid)
{
    char err[PS_ERRLEN];
    const char *path = t_tmp(name);
    unlink(path);
    Idx *ix;
    if (idx_open(&ix, path, err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    IdxSynth s;
    idx_synth_init(&s);
    s.n_images = 60;
    s.d_sae = 96;
    s.grid = grid;
    s.n_classes = 6;
    s.n_models = n_models;
    s.thumb = thumb;
    s.seed = 7;
    if (idx_synth(ix, &s, NULL, err)) {
        fprintf(stderr, "synth: %s\n", err);
        idx_close(ix);
        return -1;
    }
    int rc = tui_init(t, ix, path, err);
    if (rc) {
        fprintf(stderr, "tui_init: %s\n", err);
        return -1;
    }
    tui_resize(t, 32, 100);
    return 0;
}

static const TuiRow *
sel_row(const Tui *t)
{
    const TuiStats *s = &t->st[t->model && t->st[1].present ? 1 : 0];
    return t->n_order ? &s->rows[t->order[t->sel]] : NULL;
}

static int
sorted_by(const Tui *t, int key, int desc)
{
    const TuiStats *s = &t->st[t->model && t->st[1].present ? 1 : 0];
    for (int i = 1; i < t->n_order; i++) {
        const TuiRow *a = &s->rows[t->order[i - 1]], *b = &s->rows[t->order[i]];
        double x = key == IDX_SORT_FREQ ? a->freq : key == IDX_SORT_MEAN ? a->mean_act
                 : key == IDX_SORT_ENTROPY ? a->entropy : a->latent;
        double y = key == IDX_SORT_FREQ ? b->freq : key == IDX_SORT_MEAN ? b->mean_act
                 : key == IDX_SORT_ENTROPY ? b->entropy : b->latent;
        if (isnan(x) && !isnan(y))
            return 0; /* undefined values go last */
        if (isnan(x) || isnan(y))
            continue;
        if (desc ? x < y : x > y)
            return 0;
    }
    return 1;
}

static void
test_table(Tui *t)
{
    CHECK(t->st[0].present && t->st[1].present);
    CHECK_EQ_INT(t->n_classes, 6);
    CHECK_EQ_INT(t->n_order, 96);
    CHECK(sorted_by(t, IDX_SORT_FREQ, 1));
    keys(t, "s"); /* freq -> mean */
    CHECK_EQ_INT(t->sort, IDX_SORT_MEAN);
    CHECK(sorted_by(t, IDX_SORT_MEAN, 1));
    keys(t, "r");
    CHECK(sorted_by(t, IDX_SORT_MEAN, 0));
    CHECK_EQ_INT(tui_command(t, "sort entropy asc"), 0);
    CHECK(sorted_by(t, IDX_SORT_ENTROPY, 0));
    CHECK(tui_command(t, "sort bogus") < 0 && t->status_err);
    CHECK_EQ_INT(tui_command(t, "sort latent"), 0);
    CHECK(sorted_by(t, IDX_SORT_LATENT, 0));
    keys(t, "g");
    CHECK_EQ_INT(sel_row(t)->latent, 0);

    /* movement */
    keys(t, "jjj");
    CHECK_EQ_INT(t->sel, 3);
    tui_key(t, TUI_KEY_UP);
    CHECK_EQ_INT(t->sel, 2);
    keys(t, "G");
    CHECK_EQ_INT(t->sel, 95);
    CHECK(t->top > 0 && t->top <= t->sel);
    keys(t, "g");
    CHECK_EQ_INT(t->sel, 0);
    CHECK_EQ_INT(t->top, 0);
    tui_key(t, TUI_KEY_PGDN);
    CHECK_EQ_INT(t->sel, 29); /* a page is the 29 visible rows */

    /* filters */
    int dead = 0;
    for (int i = 0; i < t->st[0].n; i++)
        dead += t->st[0].rows[i].n_active == 0;
    keys(t, "d");
    CHECK_EQ_INT(t->n_order, 96 - dead);
    keys(t, "d");
    CHECK_EQ_INT(tui_command(t, "filter clear class=class 2"), 0);
    CHECK(t->n_order > 0);
    int ok = 1;
    for (int i = 0; i < t->n_order; i++)
        ok &= t->st[0].rows[t->order[i]].top_class == 2;
    CHECK(ok);
    CHECK_EQ_INT(tui_command(t, "filter clear freq>0.5"), 0);
    ok = 1;
    for (int i = 0; i < t->n_order; i++)
        ok &= t->st[0].rows[t->order[i]].freq >= 0.5f;
    CHECK(ok);
    CHECK(tui_command(t, "filter freq>abc") < 0);
    CHECK(tui_command(t, "filter class=nosuchclass") < 0);
    keys(t, "D");
    ok = 1;
    for (int i = 0; i < t->n_order; i++)
        ok &= t->st[0].rows[t->order[i]].freq <= TUI_DENSE_FREQ;
    CHECK(ok);
    CHECK_EQ_INT(tui_command(t, "filter clear"), 0);
    CHECK_EQ_INT(t->n_order, 96);
}

static void
test_search(Tui *t)
{
    tui_command(t, "sort latent");
    keys(t, "g");
    /* search by class name, incremental, with n / N */
    keys(t, "/class 4");
    CHECK_EQ_INT(t->prompt, '/');
    CHECK(sel_row(t)->top_class == 4);
    int first = t->sel;
    keys(t, "\n");
    CHECK_EQ_INT(t->prompt, 0);
    CHECK_STR(t->search, "class 4");
    keys(t, "n");
    CHECK(t->sel != first && sel_row(t)->top_class == 4);
    keys(t, "N");
    CHECK_EQ_INT(t->sel, first);
    /* Esc restores the selection; j while typing goes into the text, Down moves */
    keys(t, "g");
    keys(t, "/cj");
    CHECK_STR(t->input, "cj");
    tui_key(t, TUI_KEY_ESC);
    CHECK_EQ_INT(t->sel, 0);
    CHECK_EQ_INT(t->prompt, 0);
    keys(t, "/x");
    tui_key(t, TUI_KEY_DOWN);
    CHECK_EQ_INT(t->prompt, '/');
    CHECK_EQ_INT(t->sel, 1);
    tui_key(t, TUI_KEY_PGDN);
    CHECK(t->sel > 1);
    tui_key(t, TUI_KEY_ESC);
    keys(t, "/no such thing\n");
    CHECK(t->status_err);
    /* annotations: set, search, remove */
    keys(t, "g");
    CHECK_EQ_INT(tui_command(t, "annotate striped thing -- looks at stripes"), 0);
    CHECK_STR(sel_row(t)->name, "striped thing");
    char name[64], note[64];
    int found = 0;
    CHECK_EQ_INT(idx_annotation(t->ix, t->sae_id, sel_row(t)->latent, name, sizeof name, note,
                                sizeof note, &found, NULL), 0);
    CHECK(found);
    CHECK_STR(name, "striped thing");
    CHECK_STR(note, "looks at stripes");
    keys(t, "G/stripe\n");
    CHECK_EQ_INT(sel_row(t)->latent, 0);
    keys(t, "a");
    CHECK_EQ_INT(t->n_order, 1);
    keys(t, "a");
    CHECK_EQ_INT(tui_command(t, "annotate -"), 0);
    CHECK(sel_row(t)->name == NULL);
}

static void
test_views(Tui *t)
{
    tui_command(t, "sort freq");
    keys(t, "g");
    int32_t s = sel_row(t)->latent;
    keys(t, "\n");
    CHECK_EQ_INT(t->view, TUI_LATENT);
    CHECK_EQ_INT(t->latent, s);
    CHECK(t->ls[0].ok && t->ls[0].n_top > 0 && t->ls[1].ok);
    CHECK(t->ls[0].n_labels > 0);
    int hist = 0;
    for (int i = 0; i < TUI_HIST_BINS; i++)
        hist += t->ls[0].hist[i];
    CHECK(hist > 0);
    /* the grid: l across the base side into the adapted side */
    TuiLayout l;
    tui_layout(t, &l);
    CHECK(l.gcols >= 1);
    for (int i = 0; i < l.gcols; i++)
        keys(t, "l");
    CHECK_EQ_INT(t->gside, 1);
    CHECK_EQ_INT(t->gsel, 0);
    keys(t, "h");
    CHECK_EQ_INT(t->gside, 0);
    CHECK_EQ_INT(t->gsel, l.gcols - 1);
    keys(t, "gj");
    CHECK_EQ_INT(t->gsel, MIN(l.gcols, t->ls[0].n_top - 1));
    keys(t, "g");
    int64_t im = t->ls[0].top[0].image_id;
    keys(t, "\n");
    CHECK_EQ_INT(t->view, TUI_IMAGE);
    CHECK_EQ_INT(t->image, im);
    CHECK_EQ_INT(t->ilatent, s);
    CHECK(t->is[0].n_pred > 0 && t->is[1].n_pred > 0);
    CHECK(t->is[0].blob != NULL);
    CHECK(t->n_items > 0);
    /* patch cursor: the first move puts it in the middle, then it moves and clamps */
    int g = t->img.grid;
    CHECK_EQ_INT(t->px, -1);
    keys(t, "l");
    CHECK_EQ_INT(t->px, g / 2);
    CHECK_EQ_INT(t->py, g / 2);
    keys(t, "lj");
    CHECK_EQ_INT(t->px, g / 2 + 1);
    CHECK_EQ_INT(t->py, g / 2 + 1);
    tui_key(t, TUI_KEY_LEFT);
    tui_key(t, TUI_KEY_UP);
    CHECK_EQ_INT(t->px, g / 2);
    CHECK_EQ_INT(t->py, g / 2);
    for (int i = 0; i < 3 * g; i++)
        keys(t, "hk");
    CHECK_EQ_INT(t->px, 0);
    CHECK_EQ_INT(t->py, 0);
    keys(t, "G");
    CHECK_EQ_INT(t->px, g - 1);
    CHECK_EQ_INT(t->py, g - 1);
    /* patch lists against the index: group 0 = in both top-5 sets */
    IdxAct pa[2][64];
    int np[2];
    int tok = 1 + t->py * g + t->px;
    for (int m = 0; m < 2; m++)
        CHECK_EQ_INT(idx_patch_latents(t->ix, t->image, t->model_id[m], t->sae_id, tok, pa[m], 64,
                                       &np[m], NULL), 0);
    int n1 = 0, good = 1;
    for (int i = 0; i < t->n_items; i++) {
        const TuiItem *it = &t->items[i];
        if (it->level != 1)
            continue;
        n1++;
        int in[2] = { 0, 0 };
        for (int m = 0; m < 2; m++)
            for (int k = 0; k < MIN(np[m], 5); k++)
                in[m] |= pa[m][k].latent == it->latent;
        good &= it->group == 0 ? in[0] && in[1] : it->group == 1 ? in[0] && !in[1] : !in[0] && in[1];
    }
    CHECK(n1 > 0);
    CHECK(good);
    /* items are grouped: level, then group ascending */
    int sorted = 1;
    for (int i = 1; i < t->n_items; i++)
        sorted &= t->items[i - 1].level < t->items[i].level ||
                  (t->items[i - 1].level == t->items[i].level &&
                   t->items[i - 1].group <= t->items[i].group);
    CHECK(sorted);
    int before = t->isel;
    keys(t, "J");
    CHECK_EQ_INT(t->isel, MIN(before + 1, t->n_items - 1));
    CHECK_EQ_INT(t->ilatent, t->items[t->isel].latent);
    keys(t, "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK");
    CHECK_EQ_INT(t->isel, 0);
    keys(t, "x");
    CHECK_EQ_INT(t->px, -1);
    for (int i = 0; i < t->n_items; i++)
        CHECK_EQ_INT(t->items[i].level, 0);
    /* mouse: a click on a cell of the main picture moves the cursor there */
    tui_layout(t, &l);
    tui_mouse(t, TUI_MOUSE_PRESS, l.main_img.y, l.main_img.x);
    CHECK_EQ_INT(t->px, 0);
    CHECK_EQ_INT(t->py, 0);
    int pw, ph;
    tui_pic_pixels(t, l.main_img, &pw, &ph); /* no graphics: 1 x 2 pixels a cell */
    tui_mouse(t, TUI_MOUSE_PRESS, l.main_img.y + ph / 2 - 1, l.main_img.x + pw - 1);
    CHECK_EQ_INT(t->px, g - 1);
    CHECK_EQ_INT(t->py, g - 1);
    tui_mouse(t, TUI_MOUSE_PRESS, 0, 1); /* the tab bar */
    CHECK_EQ_INT(t->view, TUI_LATENTS);
    keys(t, "3");
    CHECK_EQ_INT(t->view, TUI_IMAGE);

    /* back stack: Image <- Latent <- Latents (tabs and digits do not push) */
    keys(t, "q");
    CHECK_EQ_INT(t->view, TUI_LATENT);
    keys(t, "q");
    CHECK_EQ_INT(t->view, TUI_LATENTS);
    keys(t, "q");
    CHECK(t->quit);
    t->quit = 0;

    /* commands and the other views */
    /* eval results: the accuracy comes from `orig`, the masking curve from on/off rows */
    static const char *const modes[] = { "orig", "off", "off", "on", "on" };
    static const int ks[] = { 0, 1, 10, 1, 10 };
    for (int i = 0; i < 5; i++) {
        IdxEval e = { t->model_id[0], t->dataset_id, t->sae_id, t->model_id[0], 3, "", ks[i], 20,
                      50.0 + i };
        snprintf(e.mode, sizeof e.mode, "%s", modes[i]);
        CHECK_EQ_INT(idx_put_eval(t->ix, &e, NULL), 0);
    }
    CHECK_EQ_INT(tui_command(t, "class class 3"), 0);
    CHECK_EQ_INT(t->cs[0].n_evals, 5);
    CHECK(t->cs[0].acc_from_eval && t->cs[0].acc == 50.0);
    CHECK(!t->cs[1].acc_from_eval);
    CHECK_EQ_INT(t->view, TUI_CLASS);
    CHECK_EQ_INT(t->cls, 3);
    CHECK(t->cs[0].n_top > 0 && t->cs[1].n_top > 0);
    CHECK_NEAR(t->acc[0][3], tui_data_class_acc(t, t->model_id[0], 3), 1e-9);
    CHECK_NEAR(t->cs[1].acc, tui_data_class_acc(t, t->model_id[1], 3), 1e-9);
    keys(t, "j");
    CHECK_EQ_INT(t->cls, 4);
    keys(t, "J");
    CHECK_EQ_INT(t->latent, t->cs[0].top[0].latent);
    keys(t, "\n");
    CHECK_EQ_INT(t->view, TUI_LATENT);
    CHECK_EQ_INT(t->latent, t->cs[0].top[0].latent);
    CHECK(tui_command(t, "latent 100000") < 0 && t->status_err);
    CHECK_EQ_INT(t->view, TUI_LATENT);
    CHECK(tui_command(t, "image 0") < 0 && t->status_err);
    CHECK(tui_command(t, "image 99999") < 0);
    CHECK(tui_command(t, "frobnicate") < 0 && t->status_err);
    CHECK(tui_command(t, "class nosuch") < 0);
    CHECK_EQ_INT(tui_command(t, "image 5"), 0);
    CHECK_EQ_INT(t->image, 5);
    CHECK_EQ_INT(tui_command(t, "latent 7"), 0);
    CHECK_EQ_INT(t->latent, 7);
    keys(t, "5");
    CHECK_EQ_INT(t->view, TUI_OVERVIEW);
    tui_key(t, TUI_KEY_TAB);
    CHECK_EQ_INT(t->view, TUI_LATENTS);
    tui_key(t, TUI_KEY_BTAB);
    CHECK_EQ_INT(t->view, TUI_OVERVIEW);
    keys(t, "?");
    CHECK_EQ_INT(t->view, TUI_HELP);
    keys(t, "/filter\n");
    CHECK(strstr(tui_help_lines[t->help_top], "filter") != NULL);
    keys(t, "q");
    CHECK_EQ_INT(t->view, TUI_OVERVIEW);
    keys(t, "m");
    CHECK_EQ_INT(t->overlay, TUI_OV_HEAT);
    keys(t, "mm");
    CHECK_EQ_INT(t->overlay, TUI_OV_MASK);
    keys(t, "b");
    CHECK_EQ_INT(t->model, 1);
    CHECK_EQ_INT(t->n_order, t->st[1].n);
    keys(t, "b");
    CHECK_EQ_INT(t->model, 0);
    CHECK_EQ_INT(tui_command(t, "q"), 0);
    CHECK(t->quit);
    t->quit = 0;
}

/* Every key in every view on a too-small screen and on odd states: nothing crashes. */
static void
test_every_key(Tui *t)
{
    static const int special[] = { TUI_KEY_UP, TUI_KEY_DOWN, TUI_KEY_LEFT, TUI_KEY_RIGHT,
                                   TUI_KEY_PGUP, TUI_KEY_PGDN, TUI_KEY_HOME, TUI_KEY_END,
                                   TUI_KEY_BTAB, TUI_KEY_RESIZE, TUI_KEY_ENTER, TUI_KEY_BS,
                                   TUI_KEY_ESC, TUI_KEY_CTRL_L };
    for (int v = 0; v < TUI_NVIEWS; v++) {
        for (int k = 1; k < 128; k++) {
            if (k == 'q' || k == 'Q' || k == ':' || k == '/')
                continue;
            tui_goto(t, (TuiView)v, 0);
            tui_key(t, k);
            t->prompt = 0;
        }
        for (size_t k = 0; k < LEN(special); k++) {
            tui_goto(t, (TuiView)v, 0);
            tui_key(t, special[k]);
        }
        tui_mouse(t, TUI_MOUSE_PRESS, 5, 5);
        tui_mouse(t, TUI_MOUSE_DOUBLE, 10, 30);
        tui_mouse(t, TUI_MOUSE_WHEEL_DOWN, 10, 30);
    }
    t->quit = 0;
    t->n_stack = 0;
    CHECK(1);
}

static void
test_small(Tui *t)
{
    tui_resize(t, 5, 20);
    TuiLayout l;
    tui_layout(t, &l);
    CHECK(l.too_small);
    test_every_key(t);
    tui_resize(t, 9, 40);
    tui_layout(t, &l);
    CHECK(!l.too_small);
    test_every_key(t);
    /* resize storm: layouts of every size keep rectangles on the screen, above the last row */
    int bad = 0;
    for (int r = 1; r < 60; r += 3)
        for (int c = 1; c < 200; c += 7) {
            tui_resize(t, r, c);
            for (int v = 0; v < TUI_NVIEWS; v++) {
                t->view = (TuiView)v;
                tui_layout(t, &l);
                if (l.too_small)
                    continue;
                TuiRect rs[] = { l.main_img, l.ov[0], l.ov[1], l.scatter, l.grid[0], l.grid[1] };
                for (size_t i = 0; i < LEN(rs); i++)
                    bad += rs[i].h > 0 && (rs[i].y < 1 || rs[i].y + rs[i].h > r - 1 ||
                                           rs[i].x < 0 || rs[i].x + rs[i].w > c);
            }
        }
    CHECK_EQ_INT(bad, 0);
    tui_resize(t, 32, 100);
    t->view = TUI_LATENTS;
}

static void
test_overlays(void)
{
    /* 4x4 picture, 2x2 map {0, 1, 2, 0}: quadrants at the minimum are darkened to v*30/255 */
    uint8_t rgb[4 * 4 * 3];
    for (int i = 0; i < 48; i++)
        rgb[i] = 200;
    float map[4] = { 0, 1, 2, 0 };
    tui_overlay_mask(rgb, 4, 4, map, 2);
    CHECK_EQ_INT(rgb[0], 200 * 30 / 255);             /* (0,0): patch 0 */
    CHECK_EQ_INT(rgb[(0 * 4 + 2) * 3], 200);          /* (2,0): patch 1 */
    CHECK_EQ_INT(rgb[(2 * 4 + 0) * 3], 200);          /* (0,2): patch 2 */
    CHECK_EQ_INT(rgb[(3 * 4 + 3) * 3 + 2], 200 * 30 / 255); /* (3,3): patch 3 */
    /* nearest upsampling when the size is not a multiple of the grid: 5 px over 2 patches */
    uint8_t r5[5 * 1 * 3];
    memset(r5, 255, sizeof r5);
    float m2[4] = { 1, 0, 1, 0 };
    tui_overlay_mask(r5, 5, 1, m2, 2);
    /* torch nearest: src = floor(x * 2 / 5) -> 0 0 0 1 1 */
    CHECK(r5[0] == 255 && r5[3] == 255 && r5[6] == 255 && r5[9] == 30 && r5[12] == 30);
    /* a constant map darkens everything (PatchSAE's behaviour) */
    uint8_t rc[3] = { 255, 128, 0 };
    float one = 0.5f;
    tui_overlay_mask(rc, 1, 1, &one, 1);
    CHECK(rc[0] == 30 && rc[1] == 128 * 30 / 255 && rc[2] == 0);
    /* heat: the minimum stays, the maximum is blended toward red */
    uint8_t h[2 * 1 * 3] = { 100, 100, 100, 100, 100, 100 };
    float hm[4] = { 0, 3, 0, 3 };
    tui_overlay_heat(h, 2, 1, hm, 2);
    CHECK(h[0] == 100 && h[1] == 100);
    uint8_t red[3];
    tui_colormap(1, red);
    CHECK(red[0] > 200 && red[1] < 60);
    CHECK_NEAR(h[3], 100 * 0.35 + red[0] * 0.65, 1);
    /* the cursor outline is red, the inside of a big patch is not */
    uint8_t g[32 * 32 * 3];
    memset(g, 0, sizeof g);
    tui_draw_grid(g, 32, 32, 2, 0, 3); /* patch (1,1): pixels 16..31 */
    CHECK(g[(16 * 32 + 16) * 3] == 255 && g[(16 * 32 + 16) * 3 + 1] == 32);
    CHECK(g[(24 * 32 + 24) * 3] == 0);
    CHECK(g[(8 * 32 + 8) * 3] == 0);
    /* xterm 256-colour cube and grey ramp */
    uint8_t c1[3] = { 255, 0, 0 }, c2[3] = { 255, 255, 255 }, c3[3] = { 0, 0, 0 },
            c4[3] = { 128, 128, 128 };
    CHECK_EQ_INT(tui_rgb256(c1), 196);
    CHECK_EQ_INT(tui_rgb256(c2), 231);
    CHECK_EQ_INT(tui_rgb256(c3), 16);
    CHECK_EQ_INT(tui_rgb256(c4), 244);
    /* the scatter survives no data and NaNs */
    uint8_t sc[40 * 30 * 3];
    tui_scatter(NULL, 0, sc, 40, 30);
    TuiRow rows[3] = { { .freq = 0.5f, .mean_act = 0.1f, .entropy = 1 },
                       { .freq = NAN, .mean_act = NAN, .entropy = NAN },
                       { .freq = 0.001f, .mean_act = 2, .entropy = NAN } };
    tui_scatter(rows, 3, sc, 40, 30);
    float x0, x1, y0, y1;
    CHECK_EQ_INT(tui_scatter_range(rows, 3, &x0, &x1, &y0, &y1), 2);
    CHECK(x0 == -3 && x1 == 0 && y0 == -1 && y1 == 1);
    /* the frame is the picture's edge: labels next to the picture line up with it */
    CHECK_EQ_INT(tui_scatter_x(x0, x0, x1, 40), 1);
    CHECK_EQ_INT(tui_scatter_x(x1, x0, x1, 40), 38);
    CHECK_EQ_INT(tui_scatter_x(-1.5f, x0, x1, 40), 20);
    CHECK_EQ_INT(tui_scatter_y(y0, y0, y1, 30), 28);
    CHECK_EQ_INT(tui_scatter_y(y1, y0, y1, 30), 1);
    CHECK_EQ_INT(sc[(29 * 40 + 20) * 3], 150); /* x axis on the bottom row */
    CHECK_EQ_INT(sc[(15 * 40 + 0) * 3], 150);  /* y axis in the first column */
    CHECK_EQ_INT(sc[(5 * 40 + 39) * 3 + 2], 18); /* no frame on the right: background */
}

static void
test_term(void)
{
    TuiTerm tt = { .cell_w = 10, .cell_h = 20, .cell_src = "default", .colors = 256 };
    static const char xterm[] = "\033[6;17;8t\033[4;544;800t\033[?1;0;1024S"
                                "\033[?63;1;2;4;6;9;15;16;22;28c";
    tui_term_parse(&tt, xterm, sizeof xterm - 1, 32, 100);
    CHECK(tt.sixel && tt.da1_seen);
    CHECK_EQ_INT(tt.cell_w, 8);
    CHECK_EQ_INT(tt.cell_h, 17);
    CHECK_EQ_INT(tt.colors, 256);
    CHECK_STR(tt.cell_src, "CSI 16 t");
    TuiTerm t2 = { .cell_w = 10, .cell_h = 20, .cell_src = "default", .colors = 256 };
    static const char area[] = "\033[4;544;800t\033[?1;0;16S\033[?64;1;2;6;9;15;16;17;18;21;22;28c";
    tui_term_parse(&t2, area, sizeof area - 1, 32, 100);
    CHECK(!t2.sixel && t2.da1_seen);
    CHECK_EQ_INT(t2.cell_w, 8);
    CHECK_EQ_INT(t2.cell_h, 17);
    CHECK_EQ_INT(t2.colors, 16);
    TuiTerm t3 = { .cell_w = 8, .cell_h = 16, .cell_src = "TIOCGWINSZ", .colors = 256 };
    static const char tmux[] = "\033[?1;2c\033[6;99;99t";
    tui_term_parse(&t3, tmux, sizeof tmux - 1, 32, 100);
    CHECK(!t3.sixel);
    CHECK_EQ_INT(t3.cell_w, 8); /* TIOCGWINSZ wins */
    /* keys typed during the probe are kept, replies are not */
    TuiTerm t6 = { .cell_w = 10, .cell_h = 20, .cell_src = "default", .colors = 256 };
    static const char mixed[] = "j\033[6;17;8tk\033[A\033[?62;4cq";
    tui_term_parse(&t6, mixed, sizeof mixed - 1, 32, 100);
    CHECK(t6.sixel && t6.cell_w == 8);
    CHECK_EQ_INT(t6.n_left, 6);
    CHECK(!memcmp(t6.left, "jk\033[Aq", 6));
    /* hostile replies: truncated, absurd, garbage */
    TuiTerm t4 = { .cell_w = 10, .cell_h = 20, .cell_src = "default", .colors = 256 };
    static const char junk[] = "\033[6;0;99999999t\033[4;1;1t\033[?\033[\033[?1;0;9999S\033[?62;4";
    tui_term_parse(&t4, junk, sizeof junk - 1, 0, 0);
    CHECK_EQ_INT(t4.cell_w, 10);
    CHECK_EQ_INT(t4.colors, 256);
    CHECK(!t4.da1_seen);
    char rnd[512];
    for (int it = 0; it < 200; it++) {
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = "\033[?;0123456789ctS"[t_rand() % 17];
        tui_term_parse(&t4, rnd, sizeof rnd, 30, 90);
    }
    CHECK(t4.cell_w > 0 && t4.cell_h > 0 && t4.colors <= 256);
    /* a probe on something that is not a terminal returns at once with defaults */
    int fd = open("/dev/null", O_RDWR);
    TuiTerm t5 = { 0 };
    double t0 = ps_now();
    tui_term_probe(&t5, fd, 200);
    CHECK(ps_now() - t0 < 0.1);
    CHECK(t5.cell_w == 10 && t5.cell_h == 20 && !t5.sixel);
    close(fd);
    /* choice: forced, then the environment, then tmux, then DA1 */
    TuiTerm s = { .sixel = 1 };
    unsetenv("PATCHSAE_GRAPHICS");
    CHECK_EQ_INT(tui_gfx_choose(&s, TUI_GFX_NONE), TUI_GFX_NONE);
    CHECK_EQ_INT(tui_gfx_choose(&s, -1), TUI_GFX_SIXEL);
    s.in_tmux = 1;
    CHECK_EQ_INT(tui_gfx_choose(&s, -1), TUI_GFX_BLOCKS);
    setenv("PATCHSAE_GRAPHICS", "none", 1);
    CHECK_EQ_INT(tui_gfx_choose(&s, -1), TUI_GFX_NONE);
    CHECK_EQ_INT(tui_gfx_choose(&s, TUI_GFX_SIXEL), TUI_GFX_SIXEL);
    unsetenv("PATCHSAE_GRAPHICS");
    CHECK_EQ_INT(tui_gfx_parse("blocks"), TUI_GFX_BLOCKS);
    CHECK_EQ_INT(tui_gfx_parse("kitty"), -1);
    CHECK_EQ_INT(tui_gfx_parse(NULL), -1);
}

static void
test_sixel(Tui *t)
{
    uint8_t rgb[16 * 12 * 3];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7);
    char *six;
    size_t n;
    CHECK_EQ_INT(tui_gfx_sixel(rgb, 16, 12, 256, &six, &n, NULL), 0);
    CHECK(n > 10 && six[0] == 27 && six[1] == 'P');
    CHECK(six[n - 2] == 27 && six[n - 1] == '\\');
    CHECK(memchr(six, 'q', 12) != NULL);
    free(six);
    char *tc;
    CHECK_EQ_INT(tui_gfx_blocks(rgb, 16, 12, 3, 4, 1, &tc, &n), 0);
    CHECK(!strncmp(tc, "\0337\033[4;5H", 8));
    CHECK(strstr(tc, "\033[9;5H") != NULL); /* 6 rows of half blocks: rows 4..9 */
    CHECK(!strstr(tc, "\033[10;5H"));
    CHECK(strstr(tc, "38;2;") && !strstr(tc, "38;5;"));
    free(tc);
    CHECK_EQ_INT(tui_gfx_blocks(rgb, 16, 11, 0, 0, 0, &tc, &n), 0); /* odd height: last row repeats */
    CHECK(strstr(tc, "38;5;") && !strstr(tc, "38;2;") && strstr(tc, "\033[6;1H"));
    free(tc);
    /* a thumbnail with the mask overlay renders at any size, cached */
    TuiPic p = { TUI_PIC_THUMB, 1, 0, t->st[0].rows[0].latent, TUI_OV_MASK, 3, 1, 0 };
    const uint8_t *a = tui_gfx_pixels(t, &p, 40, 40);
    const uint8_t *b = tui_gfx_pixels(t, &p, 40, 40);
    CHECK(a != NULL && a == b);
    TuiPic sc = { TUI_PIC_SCATTER, 0, 0, -1, 0, -1, 0, 1 };
    CHECK(tui_gfx_pixels(t, &sc, 120, 100) != NULL);
    uint8_t *rr;
    CHECK(tui_gfx_render(t, &p, 0, 10, &rr, NULL) < 0);
}

/* An index with no statistics, no images: every view and key still works. */
static void
test_empty(void)
{
    char err[PS_ERRLEN];
    Idx *ix;
    Tui t;
    CHECK_EQ_INT(idx_open(&ix, ":memory:", err), 0);
    CHECK_EQ_INT(tui_init(&t, ix, ":memory:", err), 0);
    tui_resize(&t, 32, 100);
    CHECK(!t.st[0].present);
    CHECK_EQ_INT(t.n_order, 0);
    keys(&t, "\njjGg");
    CHECK(tui_command(&t, "latent 1") < 0);
    CHECK(tui_command(&t, "image 1") < 0);
    CHECK(tui_command(&t, "class x") < 0);
    CHECK(tui_command(&t, "annotate x") < 0);
    keys(&t, "/abc\n");
    keys(&t, "nNmbd");
    test_every_key(&t);
    TuiPic sc = { TUI_PIC_SCATTER, 0, 0, -1, 0, -1, 0, 1 };
    CHECK(tui_gfx_pixels(&t, &sc, 50, 50) != NULL);
    TuiPic th = { TUI_PIC_THUMB, 42, 0, 3, TUI_OV_MASK, -1, 1, 0 };
    CHECK(tui_gfx_pixels(&t, &th, 50, 50) != NULL); /* no such image: a grey placeholder */
    tui_close(&t);
    /* tui_open refuses what is not an index, clearly */
    const char *junk = t_tmp("junk.db");
    t_write_file(junk, "hello, not sqlite at all, no no no no no no no no no no no", 58);
    CHECK(tui_open(&t, junk, 0, err) != 0);
    CHECK(tui_open(&t, t_tmp("does-not-exist.db"), 0, err) == PS_EIO && strstr(err, "no such"));
    const char *empty = t_tmp("empty.db");
    t_write_file(empty, "", 0);
    CHECK(tui_open(&t, empty, 0, err) == PS_EFORMAT);
}

/*
 * Two datasets: the synthetic index plus a copy of its statistics over a
 * second dataset ("inverted", mean activations 2m + 1, classes renamed) with
 * an eval stored for the adapted model only. `:dataset` and t switch every
 * view over; the Class view shows the adapted model's eval rows.
 */
static void
test_dataset(void)
{
    Tui t;
    char err[PS_ERRLEN];
    if (synth_tui(&t, "tuids.db", 2, 0, 4)) {
        CHECK(0);
        return;
    }
    int64_t ds0 = t.dataset_id, ss0 = t.st[0].ss.id, m1 = t.model_id[1];
    CHECK_EQ_INT(t.n_ds, 1);
    keys(&t, "t");
    CHECK(t.status_err && t.dataset_id == ds0); /* one dataset: t says so */
    tui_close(&t);
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(t_tmp("tuids.db"), &db), SQLITE_OK);
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO datasets(id, name, spec, n_images, n_classes) "
             "  SELECT 1000, 'inverted', 'x', n_images, n_classes FROM datasets WHERE id = %lld;"
             "INSERT INTO classes SELECT 1000, idx, 'inv ' || name FROM classes WHERE dataset_id = %lld;"
             "INSERT INTO statsets(id, model_id, dataset_id, sae_id, k_top, tau, n_images, final) "
             "  SELECT id + 100, model_id, 1000, sae_id, k_top, tau, n_images, final FROM statsets;"
             "CREATE TEMP TABLE x AS SELECT * FROM latent_stats;"
             "UPDATE x SET statset_id = statset_id + 100, mean_act = 2 * mean_act + 1;"
             "INSERT INTO latent_stats SELECT * FROM x;"
             "INSERT INTO eval(model_id, dataset_id, sae_id, select_model_id, class, mode, k, n_images, accuracy)"
             "  SELECT %lld, 1000, id, %lld, -1, 'orig', 0, 60, 42.5 FROM saes;",
             (long long)ds0, (long long)ds0, (long long)m1, (long long)m1);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    CHECK_EQ_INT(tui_open(&t, t_tmp("tuids.db"), 0, err), 0);
    tui_resize(&t, 32, 100);
    CHECK_EQ_INT(t.n_ds, 2);
    CHECK(t.dataset_id == ds0 && t.st[0].ss.id == ss0); /* the first statset's dataset first */
    CHECK_EQ_INT(tui_command(&t, "latent 5"), 0);
    double m5 = t.ls[0].st.mean_act;
    CHECK_EQ_INT(tui_command(&t, "class 1"), 0);
    CHECK_EQ_INT(t.cs[1].n_evals, 0);
    CHECK_EQ_INT(tui_command(&t, "dataset"), 0); /* lists them */
    CHECK(strstr(t.status, "2 inverted") && strstr(t.status, "(shown)"));
    CHECK(tui_command(&t, "dataset nope") < 0 && t.status_err);
    CHECK(tui_command(&t, "dataset 3") < 0 && t.status_err);

    CHECK_EQ_INT(tui_command(&t, "dataset inv"), 0); /* unique prefix */
    CHECK(t.dataset_id == 1000 && !strcmp(t.dataset_name, "inverted"));
    CHECK(t.st[0].ss.id == ss0 + 100 && t.st[1].present && t.st[1].ss.dataset_id == 1000);
    CHECK(t.classes && t.classes[1] && !strcmp(t.classes[1], "inv class 1"));
    CHECK_EQ_INT(t.latent, 5); /* the Latent view follows */
    CHECK_NEAR(t.ls[0].st.mean_act, 2 * m5 + 1, 1e-4);
    CHECK_EQ_INT(t.cls, 1); /* so does the Class view: the adapted model's eval shows */
    CHECK(t.cs[1].n_evals == 1 && t.cs[1].evals_all && t.cs[0].n_evals == 0);
    CHECK_EQ_INT(t.n_order, 96);
    const TuiRow *r = &t.st[0].rows[t.st[0].pos[5]];
    CHECK_NEAR(r->mean_act, 2 * m5 + 1, 1e-4);

    keys(&t, "t"); /* t cycles back */
    CHECK(t.dataset_id == ds0 && t.st[0].ss.id == ss0 && t.cs[1].n_evals == 0);
    CHECK_NEAR(t.ls[0].st.mean_act, m5, 1e-6);
    CHECK_EQ_INT(tui_command(&t, "dataset 2"), 0);
    CHECK_EQ_INT(t.dataset_id, 1000);
    tui_close(&t);

    /* the background load opens on the first dataset and switches like the synchronous one */
    CHECK_EQ_INT(tui_open(&t, t_tmp("tuids.db"), 1, err), 0);
    CHECK(t.loading);
    keys(&t, "t");
    CHECK(!t.loading && t.dataset_id == 1000 && t.st[1].present && t.n_order == 96);
    tui_close(&t);
}

void
test_tui(void)
{
    Tui t;
    if (synth_tui(&t, "tui.db", 2, 32, 4)) {
        CHECK(0);
        return;
    }
    test_table(&t);
    test_search(&t);
    test_views(&t);
    test_sixel(&t);
    test_small(&t);
    tui_close(&t);

    /* the background load: first page now, the rest from a thread; a key that needs it waits */
    char err[PS_ERRLEN];
    CHECK_EQ_INT(tui_open(&t, t_tmp("tui.db"), 1, err), 0);
    CHECK(t.loading && t.st[0].present && t.st[0].partial && !t.st[1].present);
    CHECK(sorted_by(&t, IDX_SORT_FREQ, 1));
    keys(&t, "j");
    keys(&t, "s");
    CHECK(!t.loading && !t.st[0].partial && t.st[1].present);
    CHECK_EQ_INT(t.n_order, 96);
    CHECK(sorted_by(&t, IDX_SORT_MEAN, 1));
    CHECK_EQ_INT(tui_data_poll(&t, 1), 0);
    tui_close(&t);
    CHECK_EQ_INT(tui_open(&t, t_tmp("tui.db"), 1, err), 0); /* closed while loading */
    tui_close(&t);
    CHECK_EQ_INT(tui_open(&t, t_tmp("tui.db"), 1, err), 0);
    while (!tui_data_poll(&t, 0))
        ;
    CHECK(t.st[1].present && t.n_order == 96 && t.n_dead + t.n_dense > 0);
    tui_close(&t);

    /* base model only, no thumbnails, a 14x14 grid */
    if (synth_tui(&t, "tui1.db", 1, 0, 14) == 0) {
        CHECK(t.st[0].present && !t.st[1].present);
        keys(&t, "b");
        CHECK(t.status_err && t.model == 0);
        keys(&t, "\n");
        CHECK_EQ_INT(t.view, TUI_LATENT);
        CHECK(t.ls[0].ok && !t.ls[1].ok);
        keys(&t, "lllllll\n");
        CHECK_EQ_INT(t.view, TUI_IMAGE);
        CHECK(t.is[0].ok && !t.is[1].ok);
        for (int i = 0; i < t.n_items; i++)
            CHECK_EQ_INT(t.items[i].group, 1);
        keys(&t, "jjj"); /* the first move puts the cursor in the middle (7,7) */
        CHECK_EQ_INT(t.py, 9);
        TuiPic p = { TUI_PIC_THUMB, t.image, 0, t.ilatent, TUI_OV_MASK, 20, 1, 0 };
        CHECK(tui_gfx_pixels(&t, &p, 64, 64) != NULL);
        CHECK_EQ_INT(tui_command(&t, "class 2"), 0);
        CHECK(!t.cs[1].ok);
        test_every_key(&t);
        tui_close(&t);
    } else {
        CHECK(0);
    }
    test_dataset();
    test_overlays();
    test_term();
    test_empty();
}
