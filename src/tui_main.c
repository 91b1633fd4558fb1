/* SPDX-License-Identifier: MIT */
/*
 * tui_main.c - the patchsae-tui program: arguments, terminal detection
 * before curses starts, the main loop (read keys, let the pure handlers of
 * tui.c change the state, draw, doupdate, then send pictures), and --trace,
 * which logs for every redraw the time from key to redrawn text and the time
 * spent on pictures.
 *
 * Nothing may reach stderr while curses owns the screen: stderr is sent to a
 * temporary file from initscr to endwin and replayed after endwin - on a
 * normal exit, an exit() from deep inside the library (atexit), and on a
 * crash signal (the handler restores the terminal before re-raising).
 * Keys that queue up while a slow redraw runs (a held j, a resize storm)
 * are all handled before the next redraw. While the latents table loads or
 * an image is being probed (--image, :open) the loop wakes every 10 ms to
 * take the result and turn the spinner; --trace logs, for each probed image
 * that opens the Image view, the time from the request to the first full
 * screen (text and pictures sent).
 */
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curses.h>

#include "probe.h"
#include "ps.h"
#include "tui.h"

static const char usage[] =
    "usage: patchsae-tui [options] [INDEX] [--image FILE...]\n"
    "Browse a patchsae index (default db/demo.db) in the terminal: latents, their top images\n"
    "with activation overlays, images patch by patch, classes, and an overview.\n"
    "\n"
    "  --graphics MODE  sixel, blocks or none (default: detected; env PATCHSAE_GRAPHICS)\n"
    "  --trace FILE     log start-up, per-key redraw and probe times (ms) to FILE\n"
    "  --probe          print what the terminal answered and exit\n"
    "  --help           this text\n"
    "\n"
    "Probe your own images (as :open FILE does inside):\n"
    "  --image FILE...  run FILE (and every later argument that is not an option) through the\n"
    "                   index's models and SAE in the background and open the Image view on it\n"
    "  --model M, --tokenizer T, --sae S, --maple CKPT (repeatable, index order)\n"
    "                   load these instead of the weights the index records\n"
    "  --force          probe even if a file's size or SHA-256 differs from the index's record\n"
    "  --save           store the probed images in INDEX (dataset \"probed\"), as :save does\n"
    "  --noise-filter T start with the demo's noise filter on at threshold T (key f; 0.1)\n"
    "\n"
    "Keys: ? in the program lists every key; q goes back and quits. See patchsae-tui(1).\n";

static int curses_on;
static int saved_err = -1;
static FILE *err_tmp;

/* Ends curses and replays what was written to stderr meanwhile. */
static void
restore_terminal(void)
{
    if (curses_on) {
        endwin();
        curses_on = 0;
    }
    if (saved_err >= 0) {
        fflush(stderr);
        dup2(saved_err, 2);
        close(saved_err);
        saved_err = -1;
        if (err_tmp) {
            char buf[4096];
            size_t n;
            rewind(err_tmp);
            while ((n = fread(buf, 1, sizeof buf, err_tmp)) > 0)
                if (write(2, buf, n) < 0)
                    break;
            fclose(err_tmp);
            err_tmp = NULL;
        }
    }
}

static void
on_crash(int sig)
{
    restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int
map_key(int rc, wint_t wch)
{
    if (rc == KEY_CODE_YES) {
        switch (wch) {
        case KEY_UP: return TUI_KEY_UP;
        case KEY_DOWN: return TUI_KEY_DOWN;
        case KEY_LEFT: return TUI_KEY_LEFT;
        case KEY_RIGHT: return TUI_KEY_RIGHT;
        case KEY_PPAGE: return TUI_KEY_PGUP;
        case KEY_NPAGE: return TUI_KEY_PGDN;
        case KEY_HOME: return TUI_KEY_HOME;
        case KEY_END: return TUI_KEY_END;
        case KEY_BTAB: return TUI_KEY_BTAB;
        case KEY_BACKSPACE: return TUI_KEY_BS;
        case KEY_ENTER: return TUI_KEY_ENTER;
        case KEY_RESIZE: return TUI_KEY_RESIZE;
        case KEY_F(1): return '?';
        default: return -1;
        }
    }
    if (wch == '\r' || wch == '\n')
        return TUI_KEY_ENTER;
    if (wch == 8 || wch == 127)
        return TUI_KEY_BS;
    if (wch > 255)
        return -1; /* prompts take Latin-1 at most; the index names are searched by substring */
    return (int)wch;
}

static void
handle_mouse(Tui *t)
{
    MEVENT ev;
    if (getmouse(&ev) != OK)
        return;
    if (ev.bstate & BUTTON4_PRESSED) {
        tui_mouse(t, TUI_MOUSE_WHEEL_UP, ev.y, ev.x);
        return;
    }
#ifdef BUTTON5_PRESSED
    if (ev.bstate & BUTTON5_PRESSED) {
        tui_mouse(t, TUI_MOUSE_WHEEL_DOWN, ev.y, ev.x);
        return;
    }
#endif
    if (ev.bstate & (BUTTON1_PRESSED | BUTTON1_CLICKED | BUTTON1_DOUBLE_CLICKED)) {
        double now = ps_now();
        int dbl = (ev.bstate & BUTTON1_DOUBLE_CLICKED) ||
                  (now - t->last_click < 0.4 && ev.y == t->last_click_y && ev.x == t->last_click_x);
        t->last_click = dbl ? 0 : now;
        t->last_click_y = ev.y;
        t->last_click_x = ev.x;
        tui_mouse(t, dbl ? TUI_MOUSE_DOUBLE : TUI_MOUSE_PRESS, ev.y, ev.x);
    }
}

/* Draws, repaints rows whose pictures went away, updates, sends pictures. */
static void
redraw(Tui *t, int fd, double *text_ms, double *gfx_ms, double *enc_ms, size_t *bytes, double t0)
{
    if (t->rows != LINES || t->cols != COLS)
        tui_resize(t, LINES, COLS);
    t->defer_pics = 1; /* text first; block pictures not in the cache follow below */
    tui_draw(t);
    unsigned char stale[1024] = { 0 };
    tui_gfx_stale_rows(t, stale, LINES < 1024 ? LINES : 1024);
    for (int y = 0; y < LINES && y < 1024; y++)
        if (stale[y])
            wredrawln(stdscr, y, 1);
    if (t->full_redraw)
        clearok(curscr, TRUE);
    wnoutrefresh(stdscr);
    doupdate();
    *text_ms = (ps_now() - t0) * 1e3;
    double g0 = ps_now(), pre = 0, enc = 0;
    if (t->pics_pending) {
        t->defer_pics = 0;
        tui_draw(t);
        wnoutrefresh(stdscr);
        doupdate();
        pre = (ps_now() - g0) * 1e3;
    }
    *bytes = tui_gfx_flush(t, fd, &enc);
    *enc_ms = pre + enc;
    *gfx_ms = (ps_now() - g0) * 1e3;
    t->full_redraw = 0;
}

int
main(int argc, char **argv)
{
    double t_start = ps_now();
    const char *path = "db/demo.db", *trace_path = NULL;
    int forced = -1, probe_only = 0, in_images = 0, save = 0, path_set = 0;
    /* --image files are collected in argv itself, over arguments already read
     * (image k goes to argv[k] while argument i > k is read, as getopt permutes
     * argv): nothing to allocate, nothing to free on the early returns */
    const char **images = (const char **)argv;
    int n_images = 0;
    float noise = 0;
    ProbeOptions po;
    probe_options_init(&po);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* options that take a value: --opt V or --opt=V */
#define VALUE(name) \
    (!strcmp(a, name) ? (i + 1 < argc ? argv[++i] : NULL) \
                      : !strncmp(a, name "=", sizeof name) ? a + sizeof name : NULL)
#define IS(name) (!strcmp(a, name) || !strncmp(a, name "=", sizeof name))
        if (IS("--image")) {
            const char *v = VALUE("--image");
            if (!v) {
                fprintf(stderr, "patchsae-tui: --image takes a file\n");
                return 2;
            }
            images[n_images++] = v;
            in_images = 1;
            continue;
        }
        if (IS("--model") || IS("--tokenizer") || IS("--sae") || IS("--maple")) {
            int which = IS("--model") ? 0 : IS("--tokenizer") ? 1 : IS("--sae") ? 2 : 3;
            const char *v = which == 0 ? VALUE("--model") : which == 1 ? VALUE("--tokenizer")
                          : which == 2 ? VALUE("--sae") : VALUE("--maple");
            if (!v) {
                fprintf(stderr, "patchsae-tui: %s takes a path\n", a);
                return 2;
            }
            if (which == 0)
                po.model = v;
            else if (which == 1)
                po.tokenizer = v;
            else if (which == 2)
                po.sae = v;
            else if (po.n_maple < PROBE_MAX_MODELS - 1)
                po.maple[po.n_maple++] = v;
            continue;
        }
        if (IS("--noise-filter")) {
            const char *v = VALUE("--noise-filter");
            char *end = NULL;
            if (!v || !((noise = strtof(v, &end)) > 0) || *end) {
                fprintf(stderr, "patchsae-tui: --noise-filter takes a threshold > 0 (the demo's "
                                "is 0.1)\n");
                return 2;
            }
            continue;
        }
#undef VALUE
#undef IS
        if (!strcmp(a, "--force")) {
            po.force = 1;
        } else if (!strcmp(a, "--save")) {
            save = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--graphics") || !strncmp(a, "--graphics=", 11)) {
            const char *v = a[10] == '=' ? a + 11 : i + 1 < argc ? argv[++i] : NULL;
            if ((forced = tui_gfx_parse(v)) < 0) {
                fprintf(stderr, "patchsae-tui: --graphics takes sixel, blocks or none\n");
                return 2;
            }
        } else if (!strcmp(a, "--trace") || !strncmp(a, "--trace=", 8)) {
            trace_path = a[7] == '=' ? a + 8 : i + 1 < argc ? argv[++i] : NULL;
            if (!trace_path) {
                fprintf(stderr, "patchsae-tui: --trace takes a file\n");
                return 2;
            }
        } else if (!strcmp(a, "--probe")) {
            probe_only = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "patchsae-tui: unknown option %s\n%s", a, usage);
            return 2;
        } else if (in_images || path_set) {
            images[n_images++] = a;
        } else {
            path = a;
            path_set = 1;
        }
    }
    if (save && n_images == 0) {
        fprintf(stderr, "patchsae-tui: --save stores probed images: give them with --image\n");
        return 2;
    }

    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    Tui t;
    TuiTerm tt = { 0 };
    int env = tui_gfx_parse(getenv("PATCHSAE_GRAPHICS"));
    int want = forced >= 0 ? forced : env;
    int timeout = 200;
    if (want == TUI_GFX_BLOCKS || want == TUI_GFX_NONE || (want < 0 && getenv("TMUX")))
        timeout = 0; /* no question to ask: blocks or text need no cell size */
    if (probe_only) {
        tui_term_probe(&tt, tty >= 0 ? tty : 0, 200);
        TuiGfx g = tui_gfx_choose(&tt, forced);
        printf("graphics: %s\nsixel (DA1 4): %s%s\ncell: %dx%d px (%s)\ncolour registers: %d\n"
               "truecolor: %s\ntmux: %s\nprobe: %.1f ms\n",
               g == TUI_GFX_SIXEL ? "sixel" : g == TUI_GFX_BLOCKS ? "blocks" : "none",
               tt.sixel ? "yes" : "no", tt.da1_seen ? "" : " (no DA1 reply)", tt.cell_w, tt.cell_h,
               tt.cell_src, tt.colors, tt.truecolor ? "yes" : "no", tt.in_tmux ? "yes" : "no",
               tt.probe_ms);
        return 0;
    }

    char err[PS_ERRLEN];
    if (tui_open(&t, path, 1, err)) {
        fprintf(stderr, "patchsae-tui: %s\n", err);
        return 1;
    }
    for (int i = 0; i < n_images; i++) { /* a missing image is a clear error before curses */
        FILE *f = fopen(images[i], "rb");
        if (!f) {
            fprintf(stderr, "patchsae-tui: %s: no such file or not readable\n", images[i]);
            tui_close(&t);
            return 1;
        }
        fclose(f);
    }
    if (!isatty(0) || !isatty(1)) {
        fprintf(stderr, "patchsae-tui: standard input and output must be a terminal\n");
        tui_close(&t);
        return 2;
    }
    FILE *trace = NULL;
    if (trace_path && !(trace = fopen(trace_path, "w"))) {
        fprintf(stderr, "patchsae-tui: %s: %s\n", trace_path, strerror(errno));
        tui_close(&t);
        return 2;
    }
    tui_probe_config(&t, &po, 1);
    if (noise > 0)
        tui_set_noise(&t, 1, noise);
    if (n_images > 0) { /* before the terminal probe: the models load meanwhile */
        if (tui_probe_open(&t, images, n_images) != 0) {
            fprintf(stderr, "patchsae-tui: %s\n", t.status);
            tui_close(&t);
            return 1;
        }
        if (save)
            tui_probe_save_when_done(&t);
    }
    double t_open = ps_now();
    tui_term_probe(&tt, tty >= 0 ? tty : 0, timeout);
    t.term = tt;
    t.gfx = tui_gfx_choose(&tt, forced);

    /* from here until endwin, stderr goes to a file */
    err_tmp = tmpfile();
    if (err_tmp) {
        fflush(stderr);
        saved_err = dup(2);
        dup2(fileno(err_tmp), 2);
    }
    atexit(restore_terminal);
    signal(SIGSEGV, on_crash);
    signal(SIGABRT, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);

    setlocale(LC_ALL, "");
    if (!initscr()) {
        restore_terminal();
        fprintf(stderr, "patchsae-tui: cannot initialise the terminal\n");
        return 2;
    }
    curses_on = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    idlok(stdscr, FALSE);
    idcok(stdscr, FALSE); /* no insert/delete character: it would shift pictures */
    set_escdelay(25);
    curs_set(0);
    mouseinterval(0);
    mousemask(BUTTON1_PRESSED | BUTTON4_PRESSED
#ifdef BUTTON5_PRESSED
                  | BUTTON5_PRESSED
#endif
              ,
              NULL);
    tui_draw_init(&t);
    t.full_redraw = 1;
    for (int i = t.term.n_left - 1; i >= 0; i--) /* keys typed while the terminal was asked */
        ungetch((unsigned char)t.term.left[i]);

    double text_ms, gfx_ms, enc_ms;
    size_t bytes;
    redraw(&t, 1, &text_ms, &gfx_ms, &enc_ms, &bytes, t_start);
    if (trace) {
        fprintf(trace, "# patchsae-tui %s graphics=%s cell=%dx%d (%s) probe_ms=%.1f size=%dx%d\n",
                path, t.gfx == TUI_GFX_SIXEL ? "sixel" : t.gfx == TUI_GFX_BLOCKS ? "blocks" : "none",
                t.term.cell_w, t.term.cell_h, t.term.cell_src ? t.term.cell_src : "default",
                t.term.probe_ms, COLS, LINES);
        fprintf(trace, "startup open_ms=%.3f text_ms=%.3f gfx_ms=%.3f encode_ms=%.3f bytes=%zu\n",
                (t_open - t_start) * 1e3, text_ms, gfx_ms, enc_ms, bytes);
        fflush(trace);
    }
    int spin = -1;
    while (!t.quit) {
        wint_t wch;
        /* poll the background load and the prober while they run */
        wtimeout(stdscr, t.loading || tui_probe_running(&t) ? 10 : -1);
        int rc = wget_wch(stdscr, &wch);
        if (rc == ERR) {
            /* a timeout while loading or probing, or EINTR; SIGWINCH comes back as KEY_RESIZE */
            if (t.loading && tui_data_poll(&t, 0)) {
                double t0 = ps_now();
                redraw(&t, 1, &text_ms, &gfx_ms, &enc_ms, &bytes, t0);
                if (trace) {
                    fprintf(trace, "loaded after_ms=%.3f text_ms=%.3f\n", (t0 - t_start) * 1e3,
                            text_ms);
                    fflush(trace);
                }
            }
            t.probe_shown = 0;
            int now = (int)(ps_now() * 10);
            if (tui_probe_poll(&t, 0) || (tui_probe_busy(&t) && now != spin)) {
                double t0 = ps_now();
                spin = now;
                redraw(&t, 1, &text_ms, &gfx_ms, &enc_ms, &bytes, t0);
                if (trace && t.probe_shown) {
                    fprintf(trace, "probed request_to_screen_ms=%.3f open_ms=%.3f image_ms=%.3f "
                                   "text_ms=%.3f gfx_ms=%.3f encode_ms=%.3f bytes=%zu\n",
                            (ps_now() - t.probe_req) * 1e3, t.probe_open_ms, t.probe_image_ms,
                            text_ms, gfx_ms, enc_ms, bytes);
                    fflush(trace);
                }
            }
            continue;
        }
        double t0 = ps_now();
        int nkeys = 0, first = -1;
        wtimeout(stdscr, 0);
        do {
            if (rc == KEY_CODE_YES && wch == KEY_MOUSE) {
                handle_mouse(&t);
            } else {
                int k = map_key(rc, wch);
                if (k == TUI_KEY_RESIZE) {
                    tui_term_winsz(&t.term, tty >= 0 ? tty : 0);
                    tui_resize(&t, LINES, COLS);
                }
                if (k >= 0)
                    tui_key(&t, k);
                if (first < 0)
                    first = k;
            }
            nkeys++;
        } while (!t.quit && nkeys < 256 && (rc = wget_wch(stdscr, &wch)) != ERR);
        if (t.quit)
            break;
        redraw(&t, 1, &text_ms, &gfx_ms, &enc_ms, &bytes, t0);
        if (trace) {
            fprintf(trace, "key=%d n=%d view=%s text_ms=%.3f gfx_ms=%.3f encode_ms=%.3f "
                           "encoded=%d sent=%d bytes=%zu\n",
                    first, nkeys, tui_view_name(t.view), text_ms, gfx_ms, enc_ms, t.n_encoded,
                    t.n_sent, bytes);
            fflush(trace);
        }
    }
    restore_terminal();
    if (trace)
        fclose(trace);
    if (tty >= 0)
        close(tty);
    tui_close(&t);
    return 0;
}
