/* SPDX-License-Identifier: MIT */
/*
 * tui.h - patchsae-tui, the explorer: one state machine (ncdu's shape) over an
 * index (idx.h). Six views - Latents, Latent, Image, Class, Overview, Help -
 * each with a pure key handler tui_<view>_key(Tui *, int key) that changes
 * state (and may read the index) but never touches the terminal, and a
 * tui_<view>_draw(Tui *) in tui_draw.c, the only code that calls curses.
 * Pictures (thumbnails with overlays, the Overview scatter) are described by
 * TuiPic, placed by the draw code into t->frame, rendered to RGB by the pure
 * functions of tui_gfx.c and sent as sixel (or coloured half-blocks) after
 * doupdate() by tui_gfx_flush.
 *
 * Files: tui.c (state, keys, commands, layout), tui_data.c (loading view data
 * through idx.h), tui_draw.c (curses), tui_gfx.c (terminal queries, RGB
 * composition, overlays, sixel/blocks encoding, the payload cache),
 * tui_probe.c (probing your own images on a worker thread, probe.h),
 * tui_main.c (the program: arguments, main loop, --trace).
 *
 * The Image view has two sources (TuiSrc): an indexed image (t->image, its
 * rows read through idx.h) or a probed image (t->probed, a ProbeResult kept
 * for the session). Both fill the same TuiImageSide / IdxImage fields, and
 * the view, the lists, the overlays and the keys read only those.
 *
 * Tui is transparent on purpose: the state is what tests/test_tui.c asserts
 * on. Only tui*.c write it. Keys are TUI_KEY_* codes (curses-free), so tests
 * need no terminal; tui_main.c maps curses keys onto them.
 */
#ifndef PS_TUI_H
#define PS_TUI_H

#include <stddef.h>
#include <stdint.h>

#include "idx.h"

typedef enum TuiView {
    TUI_LATENTS, TUI_LATENT, TUI_IMAGE, TUI_CLASS, TUI_OVERVIEW, TUI_HELP, TUI_NVIEWS
} TuiView;

typedef enum TuiGfx { TUI_GFX_NONE, TUI_GFX_BLOCKS, TUI_GFX_SIXEL } TuiGfx;

/* What the Image view shows: an image of the index, or one probed this session. */
typedef enum TuiSrc { TUI_SRC_INDEX, TUI_SRC_PROBE } TuiSrc;

/* What is drawn over a thumbnail: m cycles mask -> heat -> none -> mask. */
typedef enum TuiOverlay { TUI_OV_MASK, TUI_OV_HEAT, TUI_OV_NONE } TuiOverlay;

/* Keys: printable ASCII as itself, Ctrl-X as 1..26, the rest here. */
enum {
    TUI_KEY_ESC = 27,
    TUI_KEY_BS = 127,
    TUI_KEY_ENTER = '\n',
    TUI_KEY_TAB = '\t',
    TUI_KEY_CTRL_L = 12,
    TUI_KEY_UP = 0x200000, TUI_KEY_DOWN, TUI_KEY_LEFT, TUI_KEY_RIGHT,
    TUI_KEY_PGUP, TUI_KEY_PGDN, TUI_KEY_HOME, TUI_KEY_END, TUI_KEY_BTAB,
    TUI_KEY_RESIZE,
};

/* Mouse events for tui_mouse. */
enum { TUI_MOUSE_PRESS, TUI_MOUSE_DOUBLE, TUI_MOUSE_WHEEL_UP, TUI_MOUSE_WHEEL_DOWN };

/* Density above which a latent is "dense" (fires on more than 10 % of images). */
#define TUI_DENSE_FREQ 0.1
#define TUI_MAX_TOP 32       /* top images per latent shown */
#define TUI_MAX_LIST 64      /* latents in an Image-view list */
#define TUI_MAX_TOK 1024     /* tokens per image we handle (grid <= 31) */
#define TUI_MAX_FRAME 96     /* pictures on one screen */
#define TUI_MAX_PRED 5
#define TUI_HIST_BINS 24
#define TUI_NOISE 0.1f       /* the PatchSAE demo's noise threshold (base mean activation) */

#define TUI_MAX_DS 16        /* datasets the explorer can switch between (:dataset, t) */

/* A dataset of the index that has statistics (or, without any, the first dataset). */
typedef struct TuiDataset {
    int64_t id;
    char name[IDX_NAMELEN];
    int64_t n_images;
} TuiDataset;

/* A rectangle of cells. */
typedef struct TuiRect {
    int y, x, h, w;
} TuiRect;

/* A picture: what to render into a rectangle (the cache key). */
typedef enum TuiPicKind { TUI_PIC_THUMB, TUI_PIC_SCATTER, TUI_PIC_PROBED } TuiPicKind;
typedef struct TuiPic {
    int kind;          /* TuiPicKind */
    int64_t image;     /* TUI_PIC_THUMB: image id; TUI_PIC_PROBED: probed image number */
    int model;         /* 0 base, 1 adapted: whose patch map the overlay uses */
    int32_t latent;    /* overlay latent, -1 none */
    int overlay;       /* TuiOverlay */
    int cursor;        /* patch index to outline, -1 none */
    int grid;          /* draw the patch grid lines */
    int64_t version;   /* TUI_PIC_SCATTER, TUI_PIC_PROBED: bump when the data changes */
} TuiPic;

/* A picture placed on the screen; pw/ph = its size in pixels, set at flush. */
typedef struct TuiPlace {
    TuiRect r;
    TuiPic pic;
} TuiPlace;

/* One row of the Latents table (compact copy of IdxLatent). */
typedef struct TuiRow {
    int32_t latent;
    int top_class;      /* -1 none */
    int64_t n_active;
    float freq, mean_act, max_act, entropy, top_share; /* NAN = undefined */
    char *name;         /* annotation name or NULL (owned) */
} TuiRow;

/* One model's statistics set with its latents table. */
typedef struct TuiStats {
    int present;
    int partial;        /* only the first page (freq descending) is loaded yet */
    IdxStatset ss;
    TuiRow *rows;       /* (n) indexed by load order (latent ascending) */
    int n;
    int32_t *pos;       /* (d_sae) row of each latent, -1 if absent */
    int n_pos;
} TuiStats;

/* Latent view: one model's side. */
typedef struct TuiLatentSide {
    int ok;                      /* the latent exists in this statset */
    IdxLatent st;
    IdxTopImage top[TUI_MAX_TOP];
    int n_top;
    IdxLabelCount labels[TUI_MAX_TOP];
    int n_labels;
    int hist[TUI_HIST_BINS];     /* token activations over the top images, log bins */
    float hist_lo, hist_hi;
} TuiLatentSide;

/* Image view: a latent in the grouped lists. */
typedef struct TuiItem {
    int32_t latent;
    float v[2];         /* value under base / adapted (0 if not in its top) */
    int group;          /* 0 common, 1 base only, 2 adapted only */
    int level;          /* 0 image-level, 1 patch */
} TuiItem;

struct ProbeModelResult;
struct ProbeOptions;

typedef struct TuiImageSide {
    int ok;
    IdxPred pred[TUI_MAX_PRED];
    int n_pred;
    IdxAct top[TUI_MAX_LIST];    /* image-level top latents */
    int n_top;
    uint8_t *blob;               /* indexed: patch blob (malloc'd) or NULL */
    size_t blob_n;
    const struct ProbeModelResult *pr; /* probed: exact latents of every token (borrowed), else NULL */
} TuiImageSide;

typedef struct TuiClassSide {
    int ok;
    double acc;                  /* percent, NAN if unknown */
    int acc_from_eval;
    IdxClassLatent top[16];
    int n_top;
    IdxEval *evals;              /* malloc'd */
    int n_evals;
    int evals_all;               /* the evals are of all classes (none for this class) */
    int64_t n_images;            /* images of the class */
} TuiClassSide;

typedef struct TuiTerm {
    int sixel;          /* DA1 had attribute 4 */
    int da1_seen;
    int cell_w, cell_h; /* pixels per cell */
    const char *cell_src; /* "TIOCGWINSZ", "CSI 16 t", "CSI 14 t", "default" */
    int colors;         /* sixel colour registers (<= 256) */
    int truecolor;      /* COLORTERM says 24-bit */
    int in_tmux;
    double probe_ms;
    char left[64];      /* bytes read during the probe that were no reply (typed keys) */
    int n_left;
} TuiTerm;

struct TuiGfxCache;
struct TuiLoader;
struct TuiProber;

typedef struct Tui {
    Idx *ix;
    char path[1024];
    int readonly;
    int loading;               /* the full latents tables are being read in the background */
    struct TuiLoader *loader;
    int rows, cols;            /* screen size */
    TuiGfx gfx;
    TuiTerm term;
    int colors256;             /* curses can draw 256 colours */
    TuiView view;
    TuiView stack[64];         /* back stack for q */
    int n_stack;
    int quit;
    int overlay;               /* TuiOverlay */
    int model;                 /* 0 base, 1 adapted: the model tables and lists follow */
    char status[512];          /* message line; errors go here */
    int status_err;

    /* the index */
    TuiStats st[2];            /* base, adapted */
    int64_t model_id[2];       /* base and adapted model ids (0 = none) */
    char model_name[2][IDX_NAMELEN];
    int64_t sae_id;            /* 0 = none */
    int64_t dataset_id;        /* the shown dataset: every view reads its statsets */
    char dataset_name[IDX_NAMELEN];
    TuiDataset ds[TUI_MAX_DS]; /* datasets to switch between, in statset order */
    int n_ds;
    char **classes;            /* class names (n_classes) */
    int n_classes;
    int64_t n_images;

    /* Latents view */
    int32_t *order;            /* rows of st[model] after filter and sort */
    int n_order;
    int32_t *sorted;           /* every row of st[model] in sort order (the filter walks it) */
    int sorted_n, sorted_key;  /* rows, and the (sort, desc, model, table) it was made for */
    const TuiRow *sorted_rows;
    int sel, top;              /* selected row and first visible row in order[] */
    int sort, desc;
    int hide_dead, hide_dense, only_annotated;
    double min_freq, max_freq, min_mean, max_mean, min_ent, max_ent;
    int filter_class;          /* -1 any */

    /* prompt (`/` search, `:` command) */
    int prompt;                /* 0, '/' or ':' */
    char input[256];
    int input_n;
    char search[256];          /* last search */
    int search_origin;         /* selection when the prompt opened (incremental search) */

    /* Latent view */
    int32_t latent;            /* -1 none */
    TuiLatentSide ls[2];
    int gsel;                  /* selected grid cell (index into top[]) */
    int gside;                 /* 0 base, 1 adapted */

    /* Image view */
    int src;                   /* TuiSrc: which of the two below is shown */
    int64_t image;             /* the indexed image (shown or last shown), -1 none */
    int probed;                /* the probed image (shown or last shown), -1 none */
    IdxImage img;              /* of the shown image; a probed one: id 0, label -1, pos = number */
    TuiImageSide is[2];
    int px, py;                /* patch cursor; px < 0: no patch (image level) */
    TuiItem items[4 * TUI_MAX_LIST];
    int n_items;
    int isel;                  /* selected item */
    int32_t ilatent;           /* latent whose overlay is shown, -1 none */
    int noise_on;              /* the demo's noise filter hides latents from the lists */
    float noise;               /* its threshold on the base mean activation (TUI_NOISE) */

    /* probing your own images (tui_probe.c) */
    struct TuiProber *prober;  /* NULL until the first :open */
    int n_probed;              /* probed images kept this session */
    double probe_req;          /* ps_now() of the last :open / --image */
    double probe_open_ms, probe_image_ms; /* the last result: probe_open (0 if already open), probe_image */
    int probe_shown;           /* a poll opened the Image view on a new result (tui_main traces it) */

    /* Class view */
    int cls;                   /* selected class, -1 none */
    int ctop;                  /* first visible class in the list */
    TuiClassSide cs[2];
    IdxDiffRow *diff;          /* malloc'd */
    int n_diff;
    double *acc[2];            /* accuracy of every class from top-1 predictions (NAN unknown) */

    /* Overview */
    int64_t scatter_version;
    int n_dead, n_dense;

    /* Help */
    int help_top;

    /* screen bookkeeping */
    TuiPlace frame[TUI_MAX_FRAME];  /* pictures placed by the last draw */
    int n_frame;
    int full_redraw;           /* next flush: repaint everything and re-send pictures */
    int defer_pics;            /* draw: pictures not yet rendered become placeholders */
    int pics_pending;          /* draw: some were (draw again with defer_pics = 0) */
    int n_encoded;             /* last flush: pictures rendered and encoded (not from the cache) */
    int n_sent;                /* last flush: pictures written */
    struct TuiGfxCache *cache;
    double last_click;         /* for double clicks */
    int last_click_y, last_click_x;
} Tui;

/* ---- tui.c: state ---- */

/*
 * Opens the index at path (read-write if possible, else read-only; the file
 * must exist) and loads the base (and adapted) statistics. An index without
 * statistics still opens (views say so). PS_EIO / PS_EFORMAT with a message.
 * With async, only the first page of the table is read now and the rest by a
 * thread on its own connection (tui_data_poll picks it up): start-up stays
 * fast at 49,152 latents.
 */
int tui_open(Tui *t, const char *path, int async, char *err);
/* Same over an already open index (tests); takes ownership of ix. */
int tui_init(Tui *t, Idx *ix, const char *path, char *err);
void tui_close(Tui *t);               /* frees everything; NULL-safe fields */
void tui_resize(Tui *t, int rows, int cols); /* sets the screen size (no curses) */

/* Feeds one key (TUI_KEY_* or a character); returns 1 if the state changed. */
int tui_key(Tui *t, int key);
/* Mouse event at cell (y, x). */
int tui_mouse(Tui *t, int kind, int y, int x);
/* Runs a `:` command line (without the colon). Errors go to the status line. */
int tui_command(Tui *t, const char *line);
/* Switches view, pushing the current one on the back stack when push != 0. */
void tui_goto(Tui *t, TuiView v, int push);
/* Status line message (errors: err != 0). */
void tui_status(Tui *t, int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *tui_view_name(TuiView v);
/* View under column x of the tab bar (row 0), -1 if none. */
int tui_tab_at(const Tui *t, int x);

/* Per-view pure key handlers: 1 if the key was used. */
int tui_latents_key(Tui *t, int key);
int tui_latent_key(Tui *t, int key);
int tui_image_key(Tui *t, int key);
int tui_class_key(Tui *t, int key);
int tui_overview_key(Tui *t, int key);
int tui_help_key(Tui *t, int key);

/* Latents table: rebuild order[] from the filter and sort (keeps the selected latent if visible). */
void tui_refilter(Tui *t);
/* Selects latent s in the Latents table (clearing filters if hidden); 0 if found. */
int tui_select_latent(Tui *t, int32_t s);
/* Search: next (dir 1) or previous (-1) row matching t->search from the selection; 0 if found. */
int tui_search_next(Tui *t, int dir);
/*
 * Shows dataset ds[k] (`:dataset NAME|N`, key t): reloads the statsets of
 * both models over it, the classes and the tables, and reopens the Latent and
 * Class views on the same latent / class. 0 on success; errors to the status line.
 */
int tui_set_dataset(Tui *t, int k);
/* Index into ds[] of a dataset given by name, unique prefix or number (1-based); -1 if none. */
int tui_find_dataset(const Tui *t, const char *name);
/* Opens views on an object (loads data; errors to the status line). */
int tui_open_latent(Tui *t, int32_t latent);
int tui_open_image(Tui *t, int64_t image, int32_t latent);
int tui_open_class(Tui *t, int cls);
/* Sets the patch cursor (px < 0: image level) and recomputes the lists. */
void tui_set_patch(Tui *t, int px, int py);
/* 1 when the Image view has an image to show (from either source). */
int tui_image_shown(const Tui *t);
/* Turns the noise filter on (threshold > 0) or off (<= 0) and recomputes the lists. */
void tui_set_noise(Tui *t, int on, float threshold);
/*
 * The probed-images strip of the Image view: entry k's label (" 3 name "),
 * its column x and width w inside a strip w_strip columns wide (scrolled so
 * the shown probed image is visible); 0 if entry k is visible.
 */
int tui_strip_entry(const Tui *t, int k, int w_strip, int *x, int *w, char *label, size_t n);

/* ---- layout (tui.c, pure) ---- */

typedef struct TuiLayout {
    int too_small;
    TuiRect body;               /* between the tab bar and the status line */
    /* Latents */
    TuiRect table;
    /* Latent: grids of the two sides */
    TuiRect grid[2];
    int cell_w, cell_h;         /* grid cell size in cells (picture + label line) */
    int gcols, grows;
    /* Image */
    TuiRect main_img, ov[2], preds, lists;
    TuiRect strip;              /* the probed-images strip (h = 0 when nothing was probed) */
    /* Class */
    TuiRect clist, cdetail;
    /* Overview */
    TuiRect scatter, summary;
} TuiLayout;
/* Computes the layout of the current view for t->rows x t->cols. */
void tui_layout(const Tui *t, TuiLayout *l);
/* Picture side in pixels for a rectangle (square, fits both ways). */
void tui_pic_pixels(const Tui *t, TuiRect r, int *pw, int *ph);

/* ---- tui_data.c: loading through idx.h ---- */

/*
 * Statsets, classes, latents tables of dataset t->dataset_id (0: the first
 * base statset's); fills t->ds with every dataset that has statistics.
 */
int tui_data_load(Tui *t, int async, char *err);
/* Frees what tui_data_load read (tables, classes, Class view data); keeps the Image view's. */
void tui_data_unload(Tui *t);
/* Takes the background load's result when it is done (wait: block until it is); 1 if taken. */
int tui_data_poll(Tui *t, int wait);
int tui_data_latent(Tui *t, int32_t latent, char *err);
int tui_data_image(Tui *t, int64_t image, char *err);
int tui_data_class(Tui *t, int cls, char *err);
void tui_data_free(Tui *t);
/* Recomputes t->items (grouped lists) from the image data and the cursor. */
void tui_data_items(Tui *t);
/* Per-token values of latent s under model m for the current image (map has TUI_MAX_TOK). */
int tui_data_map(const Tui *t, int m, int32_t s, float *map, int *n_tok);
/* Accuracy of class cls under a model from stored predictions (percent, NAN if none). */
double tui_data_class_acc(Tui *t, int64_t model_id, int cls);
/* Drops the Image view's per-image data (both sources). */
void tui_data_image_clear(Tui *t);
/* Latents of token tok under model m of the shown image, value descending (cap entries). */
int tui_data_token(const Tui *t, int m, int tok, IdxAct *out, int cap);
/* 1 when latent s is hidden by the noise filter (on, and its base mean activation > t->noise). */
int tui_noisy(const Tui *t, int32_t s);

/* ---- tui_probe.c: probing your own images (probe.h) on a worker thread ---- */

/*
 * Weights overrides and --force for probing (copied; NULL: those the index
 * records). echo: also write every probe warning in full to stderr.
 */
void tui_probe_config(Tui *t, const struct ProbeOptions *o, int echo);
/*
 * Queues image files (each may be a glob pattern; ~ is expanded) to probe in
 * the background; the first result of the request opens the Image view on
 * it. A file probed before and unchanged is shown at once from the session.
 * Returns 0 if anything was queued or shown; errors go to the status line.
 */
int tui_probe_open(Tui *t, const char *const *files, int n);
/* Loads the models in the background now (the command line calls it when `:o` is typed). */
void tui_probe_prepare(Tui *t);
/*
 * Takes the worker's finished results into the session (wait: until every
 * queued file is done) and starts queued work; 1 if the state changed.
 */
int tui_probe_poll(Tui *t, int wait);
int tui_probe_busy(const Tui *t);       /* 1 while files are being probed or queued */
int tui_probe_running(const Tui *t);    /* 1 while a worker (even a cancelled one) is not joined */
/* What is being probed ("probing a.png (2/3)") into buf; 0 if nothing. */
int tui_probe_progress(const Tui *t, char *buf, size_t n);
/* Esc: discards the running and queued probes (results that arrive are dropped); 1 if any. */
int tui_probe_cancel(Tui *t);
/* Shows probed image k in the Image view (keeps the patch cursor when the grid is the same). */
int tui_probe_show(Tui *t, int k);
/* :save - stores the unsaved probed images in the index (probe_save); 0 on success. */
int tui_probe_save(Tui *t);
/* --save: save when every queued probe is done. */
void tui_probe_save_when_done(Tui *t);
/* Name (base name), crop (side x side x 3) and grid of probed image k; NULL if none. */
const char *tui_probe_name(const Tui *t, int k, int64_t *saved_id);
const uint8_t *tui_probe_crop(const Tui *t, int k, int *side, int *grid, int *gen);
/* Per-token values of latent s on probed image k under Tui model m (0 base, 1 adapted). */
int tui_probe_map(const Tui *t, int k, int m, int32_t s, float *map, int cap, int *n_tok);
void tui_probe_free(Tui *t);            /* joins the worker; frees the session */

/* ---- tui_gfx.c: pure picture functions ---- */

/*
 * PatchSAE's segmentation mask (reference §7.3): the grid x grid map (row
 * major, patch tokens only) upsampled nearest to w x h, min-max normalised;
 * pixels where the normalised value is 0 are darkened to rgb*30/255, the others
 * keep their colour. rgb (h, w, 3) is changed in place. A constant map darkens
 * everything (PatchSAE's behaviour).
 */
void tui_overlay_mask(uint8_t *rgb, int w, int h, const float *map, int grid);
/* Heatmap blend: rgb = (1-a) rgb + a colormap(m) with a = 0.6 m, m min-max normalised. */
void tui_overlay_heat(uint8_t *rgb, int w, int h, const float *map, int grid);
/* Draws faint patch grid lines and/or a red outline around patch cursor (-1 none). */
void tui_draw_grid(uint8_t *rgb, int w, int h, int grid, int lines, int cursor);
/* Colour of t in [0, 1] on the scatter/heat colormap (blue -> green -> yellow -> red). */
void tui_colormap(float t, uint8_t out[3]);
/*
 * Overview scatter: log10 frequency (x) against log10 mean activation (y) of
 * rows, coloured by label entropy, into rgb (h, w, 3) with axes.
 */
void tui_scatter(const TuiRow *rows, int n, uint8_t *rgb, int w, int h);
/* The scatter's axes: whole decades of log10 freq [x0, x1] and log10 mean [y0, y1]; 0 if no data. */
int tui_scatter_range(const TuiRow *rows, int n, float *x0, float *x1, float *y0, float *y1);
/*
 * Where the scatter puts log10 value v of range [v0, v1] in a picture w (or h)
 * pixels across: the frame is the picture's left and bottom edge (no margins,
 * so labels in cells next to the picture line up with it); pixel column of a
 * frequency, pixel row of a mean activation.
 */
int tui_scatter_x(float v, float v0, float v1, int w);
int tui_scatter_y(float v, float v0, float v1, int h);
/* Nearest xterm-256 colour index (16..255) of an RGB triple. */
int tui_rgb256(const uint8_t c[3]);

/* RGB of a picture at w x h from the cache (rendered if needed); owned by the cache, valid
 * until the next tui_gfx_* call; NULL on failure (message in the status line). */
const uint8_t *tui_gfx_pixels(Tui *t, const TuiPic *p, int w, int h);
/* The cached RGB of a picture at w x h, or NULL if it is not rendered yet. */
const uint8_t *tui_gfx_cached(Tui *t, const TuiPic *p, int w, int h);
/* Renders a picture to RGB at w x h (malloc'd into *rgb); errors to err. */
int tui_gfx_render(Tui *t, const TuiPic *p, int w, int h, uint8_t **rgb, char *err);
/* Sixel DCS for an RGB image (malloc'd into *out, *n bytes). */
int tui_gfx_sixel(const uint8_t *rgb, int w, int h, int colors, char **out, size_t *n, char *err);
/* Half-block rows of rgb (h rows: 2 a cell) at cell (y, x) in 24-bit or 256-colour SGR, in DECSC/DECRC. */
int tui_gfx_blocks(const uint8_t *rgb, int w, int h, int y, int x, int truecolor, char **out,
                   size_t *n);
/* Pictures go to the terminal after doupdate (sixel; blocks curses cannot colour). */
int tui_gfx_oob(const Tui *t);

/* ---- tui_gfx.c: terminal side ---- */

/*
 * Probes the terminal on fd (a tty in any mode; raw mode is set and restored):
 * TIOCGWINSZ, then one batch CSI 16 t, CSI 14 t, XTSMGRAPHICS ?1, DA1 (the
 * sentinel), each reply read with select() until DA1 or timeout_ms. Fills tt.
 */
void tui_term_probe(TuiTerm *tt, int fd, int timeout_ms);
/* After a resize: the cell size again from TIOCGWINSZ when it is plausible (the font may change). */
void tui_term_winsz(TuiTerm *tt, int fd);
/* Parses terminal replies in buf (tests): fills the fields it finds. */
void tui_term_parse(TuiTerm *tt, const char *buf, size_t n, int rows, int cols);
/* Chooses sixel/blocks/none: forced (>= 0) wins, else env PATCHSAE_GRAPHICS, else probe. */
TuiGfx tui_gfx_choose(const TuiTerm *tt, int forced);
int tui_gfx_parse(const char *s); /* "sixel" "blocks" "none" -> TuiGfx, -1 if unknown */

void tui_gfx_cache_free(Tui *t);
/*
 * After doupdate(): sends the pictures of t->frame that are new, moved or
 * changed since the previous flush (all of them after a full redraw) to fd.
 * Returns bytes written; *encode_ms gets the time spent rendering/encoding.
 */
size_t tui_gfx_flush(Tui *t, int fd, double *encode_ms);
/* Rows that held pictures last flush but not now (the draw must repaint them). */
void tui_gfx_stale_rows(Tui *t, unsigned char *rows, int n_rows);

/* ---- tui_draw.c: curses ---- */

void tui_draw(Tui *t);          /* draws the current view into stdscr (no refresh) */
void tui_latents_draw(Tui *t);
void tui_latent_draw(Tui *t);
void tui_image_draw(Tui *t);
void tui_class_draw(Tui *t);
void tui_overview_draw(Tui *t);
void tui_help_draw(Tui *t);
void tui_draw_init(Tui *t);     /* colours (after initscr) */

/* The help text: one key a line ("key\tdescription"), NULL-terminated. */
extern const char *const tui_help_lines[];

#endif
