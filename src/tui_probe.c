/* SPDX-License-Identifier: MIT */
/*
 * tui_probe.c - "probe your own image" in the explorer (PatchSAE's demo,
 * reference §7.3 step 1): image files given with --image or :open run
 * through the models and the SAE that built the index (probe.h) on a worker
 * thread, so the explorer stays responsive (a spinner in the status line,
 * Esc cancels), and each result becomes a source of the Image view exactly
 * like an indexed image: it fills the same TuiImageSide and IdxImage fields.
 *
 * Threads. The worker owns the Probe while it runs. It opens its own
 * read-only connection to the index for probe_open (an Idx and its prepared
 * statements are not shared between threads) and keeps it, with the loaded
 * models, for the rest of the session: only the first probe pays for
 * hashing and loading. One worker runs at a time over a list of files;
 * results and warnings go through a mutex-guarded outbox that the main
 * thread empties in tui_probe_poll (the main loop polls every 10 ms while a
 * worker runs). Cancelling sets a flag the worker reads between images and
 * marks every request made so far as cancelled: an image being probed is
 * not interrupted, its result is dropped when it arrives. Saving (probe_save)
 * runs on the main thread while no worker runs, over the explorer's own
 * (read-write) connection. The models are loaded by the first worker; the
 * command line starts one with no files as soon as `:o` is typed
 * (tui_probe_prepare), so that by the time the file name is typed and Enter
 * pressed only the image itself is left to compute.
 *
 * The session keeps every probed image (its ProbeResult) until the explorer
 * quits; a file opened again unchanged (same real path, size and mtime) is
 * shown from the session at once. The Image view reads a probed image's
 * exact per-token latents (TuiImageSide.pr), not a top-K blob as for
 * indexed images; its image-level list is the top TUI_MAX_LIST of all d_sae
 * exact image-level values.
 */
#include "tui.h"

#include <glob.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "idx.h"
#include "probe.h"
#include "ps.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* A file to probe, as it was when it was asked for. */
typedef struct Job {
    char path[1024];        /* real path */
    char name[256];         /* base name, for the strip and the status line */
    int64_t size, mtime;
    int req;                /* the request (an :open) it belongs to */
} Job;

/* A worker's answer for one job. */
typedef struct Done {
    Job job;
    int rc;
    int open_failed;        /* probe_open failed: err is about the index or the weights */
    char err[PS_ERRLEN];
    ProbeResult r;
    double open_ms, image_ms;
} Done;

/* A probed image of the session. */
typedef struct Probed {
    Job file;
    ProbeResult r;
    int64_t saved_id;       /* its image id after :save, 0 before */
    int gen;                /* bumped when the file is probed again (picture cache key) */
} Probed;

typedef struct TuiProber {
    ProbeOptions opt;       /* strings owned */
    char *own[4 + PROBE_MAX_MODELS];
    int echo;               /* warnings also to stderr, in full */
    char path[1024];        /* the index */
    /* the worker's while one runs */
    Idx *ix;
    Probe probe;
    atomic_int opened;      /* probe is open (set by a worker, read by the status line) */
    Job *run;
    int n_run;
    atomic_int cur, cancel, finished;
    pthread_t th;
    int running;            /* started and not joined */
    /* the outbox */
    pthread_mutex_t mu;
    Done *out;
    int n_out, cap_out;
    char **msgs;
    int n_msgs;
    /* the main thread's */
    Job *queue;
    int n_queue;
    int req;                /* the last request */
    int cancelled_below;    /* results of requests below this are dropped */
    int shown_req;          /* the last request whose first result was shown */
    int save_when_done;
    char *warning;          /* the last warning since the last request (stays on the status line) */
    Probed **img;           /* (n_img) pointers: results do not move while the view borrows them */
    int n_img;
    int pm[2];              /* the probe's model for the Tui's base and adapted side, -1 none */
} TuiProber;

static TuiProber *
prober(Tui *t)
{
    if (!t->prober) {
        TuiProber *P = xcalloc(1, sizeof *P);
        pthread_mutex_init(&P->mu, NULL);
        snprintf(P->path, sizeof P->path, "%s", t->path);
        P->pm[0] = P->pm[1] = -1;
        atomic_init(&P->cur, 0);
        atomic_init(&P->cancel, 0);
        atomic_init(&P->finished, 0);
        atomic_init(&P->opened, 0);
        t->prober = P;
    }
    return t->prober;
}

static char *
own(TuiProber *P, int *k, const char *s)
{
    if (!s)
        return NULL;
    PS_ASSERT(*k < (int)LEN(P->own));
    return P->own[(*k)++] = xstrdup(s);
}

void
tui_probe_config(Tui *t, const ProbeOptions *o, int echo)
{
    TuiProber *P = prober(t);
    for (size_t i = 0; i < LEN(P->own); i++) {
        free(P->own[i]);
        P->own[i] = NULL;
    }
    probe_options_init(&P->opt);
    if (o) {
        int k = 0;
        P->opt = *o;
        P->opt.model = own(P, &k, o->model);
        P->opt.tokenizer = own(P, &k, o->tokenizer);
        P->opt.sae = own(P, &k, o->sae);
        P->opt.dataset = own(P, &k, o->dataset);
        for (int i = 0; i < o->n_maple && i < PROBE_MAX_MODELS - 1; i++)
            P->opt.maple[i] = own(P, &k, o->maple[i]);
    }
    P->echo = echo;
}

/* ------------------------------------------------------------ the worker */

static void
on_warn(void *ctx, const char *msg)
{
    TuiProber *P = ctx;
    pthread_mutex_lock(&P->mu);
    P->msgs = xrealloc(P->msgs, (size_t)(P->n_msgs + 1) * sizeof *P->msgs);
    P->msgs[P->n_msgs++] = xstrdup(msg);
    pthread_mutex_unlock(&P->mu);
}

static void
push(TuiProber *P, const Done *d)
{
    pthread_mutex_lock(&P->mu);
    if (P->n_out == P->cap_out) {
        P->cap_out = P->cap_out ? 2 * P->cap_out : 8;
        P->out = xrealloc(P->out, (size_t)P->cap_out * sizeof *P->out);
    }
    P->out[P->n_out++] = *d;
    pthread_mutex_unlock(&P->mu);
}

static void *
worker(void *arg)
{
    TuiProber *P = arg;
    double open_ms = 0;
    if (!atomic_load(&P->opened)) {
        Done d;
        memset(&d, 0, sizeof d);
        double t0 = ps_now();
        d.rc = idx_open_readonly(&P->ix, P->path, d.err);
        if (!d.rc) {
            ProbeOptions o = P->opt;
            o.warn = on_warn;
            o.warn_ctx = P;
            d.rc = probe_open(&P->probe, P->ix, &o, d.err);
        }
        if (d.rc) { /* one answer for the whole run; the next :open tries again */
            idx_close(P->ix);
            P->ix = NULL;
            d.open_failed = 1;
            if (P->n_run > 0) { /* a prepare (no files) fails quietly: :open will say why */
                d.job = P->run[0];
                push(P, &d);
            }
            atomic_store(&P->finished, 1);
            return NULL;
        }
        atomic_store(&P->opened, 1);
        open_ms = (ps_now() - t0) * 1e3;
    }
    for (int i = 0; i < P->n_run && !atomic_load(&P->cancel); i++) {
        atomic_store(&P->cur, i);
        Done d;
        memset(&d, 0, sizeof d);
        d.job = P->run[i];
        d.open_ms = i == 0 ? open_ms : 0;
        double t0 = ps_now();
        d.rc = probe_image(&P->probe, d.job.path, &d.r, d.err);
        d.image_ms = (ps_now() - t0) * 1e3;
        if (d.rc)
            probe_result_free(&d.r);
        push(P, &d);
    }
    atomic_store(&P->finished, 1);
    return NULL;
}

/* Hands the queue to a new worker (none may be running). */
static void
start(TuiProber *P)
{
    PS_ASSERT(!P->running);
    free(P->run);
    P->run = P->queue;
    P->n_run = P->n_queue;
    P->queue = NULL;
    P->n_queue = 0;
    atomic_store(&P->cur, 0);
    atomic_store(&P->cancel, 0);
    atomic_store(&P->finished, 0);
    if (pthread_create(&P->th, NULL, worker, P) == 0)
        P->running = 1;
    else
        worker(P); /* no thread: probe here, the explorer waits */
}

static void
join(TuiProber *P)
{
    if (P->running) {
        pthread_join(P->th, NULL);
        P->running = 0;
    }
}

/* --------------------------------------------------------- main thread */

/* A copy of msg for the status line: every 64-digit hex run (a SHA-256) cut to 12 digits. */
static void
shorten(const char *msg, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = msg; *p && j + 4 < n;) {
        size_t h = 0;
        while (p[h] && strchr("0123456789abcdef", p[h]))
            h++;
        if (h == 64) {
            for (int i = 0; i < 12 && j + 4 < n; i++)
                out[j++] = p[i];
            if (j + 4 < n)
                j += (size_t)snprintf(out + j, n - j, "\xe2\x80\xa6"); /* ... */
            p += h;
        } else if (h > 0) {
            for (size_t i = 0; i < h && j + 4 < n; i++)
                out[j++] = p[i];
            p += h;
        } else {
            out[j++] = *p++;
        }
    }
    out[j] = 0;
}

/*
 * A weights mismatch from probe.c ("[warning: ]WHAT FILE has sha256 A (N bytes)
 * but the index was built from sha256 B (N bytes); refusing ..." or "; going
 * on ...") made to fit a status line of cols columns: "refused (--force probes
 * anyway): WHAT FILE has sha256 A..., the index B...", with the file's base
 * name, or no file, when the path does not fit (the full text goes to stderr).
 * 0 if msg is not one.
 */
static int
compact_mismatch(const char *msg, int cols, char *out, size_t n)
{
    const char *has = strstr(msg, " has sha256 "), *from = strstr(msg, "from sha256 ");
    if (!has || !from || from < has)
        return 0;
    const char *what = msg + (strncmp(msg, "warning: ", 9) ? 0 : 9);
    const char *a = has + 12, *b = from + 12;
    const char *head = strstr(msg, "going on") ? "warning (--force, results differ from the index)"
                                               : "refused (--force probes anyway)";
    const char *sp = memchr(what, ' ', (size_t)(has - what)), *base = sp ? sp + 1 : what;
    for (const char *q = base; q < has; q++)
        if (*q == '/')
            base = q + 1;
    int kind = sp ? (int)(sp - what) : (int)(has - what);
    for (int pass = 0; pass < 3; pass++) {
        /* the whole path, its last component, no file */
        const char *f = pass == 0 ? (sp ? sp + 1 : has) : pass == 1 ? base : has;
        snprintf(out, n, "%s: %.*s%s%.*s has sha256 %.12s\xe2\x80\xa6, the index %.12s\xe2\x80\xa6",
                 head, kind, what, f < has ? " " : "", (int)(has - f), f, a, b);
        int len = 0;
        for (const char *q = out; *q; q++)
            len += ((unsigned char)*q & 0xC0) != 0x80;
        if (len < cols)
            break;
    }
    return 1;
}

static void
show_msg(Tui *t, TuiProber *P, int err, const char *msg)
{
    char s[sizeof t->status];
    if (!compact_mismatch(msg, t->cols, s, sizeof s))
        shorten(msg, s, sizeof s);
    tui_status(t, err, "%s", s);
    if (P->echo)
        fprintf(stderr, "patchsae-tui: %s\n", msg);
}

static int
find_session(const TuiProber *P, const Job *j)
{
    for (int k = 0; k < P->n_img; k++)
        if (!strcmp(P->img[k]->file.path, j->path))
            return k;
    return -1;
}

/* The probe's model for each side of the Tui (by model id; the base falls back to model 0). */
static void
map_models(Tui *t, TuiProber *P)
{
    for (int m = 0; m < 2; m++) {
        P->pm[m] = -1;
        for (int i = 0; i < P->probe.n_models && t->model_id[m]; i++)
            if (P->probe.models[i].rec.id == t->model_id[m])
                P->pm[m] = i;
    }
    if (P->pm[0] < 0 && P->probe.n_models > 0)
        P->pm[0] = 0;
}

/* Keeps a finished result in the session; returns its number. */
static int
keep(TuiProber *P, Done *d)
{
    int k = find_session(P, &d->job);
    if (k >= 0) { /* the file changed since: replace, and let the pictures know */
        Probed *e = P->img[k];
        probe_result_free(&e->r);
        e->file = d->job;
        e->r = d->r;
        e->saved_id = 0;
        e->gen++;
        return k;
    }
    Probed *e = xcalloc(1, sizeof *e);
    e->file = d->job;
    e->r = d->r;
    P->img = xrealloc(P->img, (size_t)(P->n_img + 1) * sizeof *P->img);
    P->img[P->n_img] = e;
    return P->n_img++;
}

/* Base name of path into out. */
static void
base_name(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b && b[1] ? b + 1 : path;
    size_t len = strlen(b);
    if (len >= n) /* names are for display: cut, never overflow */
        len = n - 1;
    memcpy(out, b, len);
    out[len] = 0;
}

/* One named file -> a job (real path, size, mtime); -1 with a message if unusable. */
static int
make_job(const char *file, Job *j, char *err)
{
    struct stat sb;
    char real[PATH_MAX];
    memset(j, 0, sizeof *j);
    if (stat(file, &sb) != 0)
        return ps_seterr(err, PS_EIO, "%s: no such file", file);
    if (!S_ISREG(sb.st_mode))
        return ps_seterr(err, PS_EIO, "%s: not a file", file);
    if (!realpath(file, real))
        snprintf(real, sizeof real, "%s", file);
    if (strlen(real) >= sizeof j->path)
        return ps_seterr(err, PS_EIO, "%s: path too long", file);
    memcpy(j->path, real, strlen(real) + 1); /* fits: checked above */
    base_name(real, j->name, sizeof j->name);
    j->size = (int64_t)sb.st_size;
    j->mtime = (int64_t)sb.st_mtime;
    return PS_OK;
}

void
tui_probe_prepare(Tui *t)
{
    TuiProber *P = prober(t);
    if (!atomic_load(&P->opened) && !P->running && P->n_queue == 0)
        start(P); /* no files: loads the models and ends */
}

int
tui_probe_open(Tui *t, const char *const *files, int n)
{
    TuiProber *P = prober(t);
    char err[PS_ERRLEN] = "";
    int req = ++P->req, queued = 0, shown = 0, bad = 0;
    free(P->warning);
    P->warning = NULL;
    t->probe_req = ps_now();
    for (int i = 0; i < n; i++) {
        glob_t g;
        memset(&g, 0, sizeof g);
        int grc = glob(files[i], GLOB_NOCHECK | GLOB_TILDE, NULL, &g);
        for (size_t f = 0; grc == 0 && f < g.gl_pathc; f++) {
            Job j;
            if (make_job(g.gl_pathv[f], &j, bad ? NULL : err)) {
                bad++;
                continue;
            }
            j.req = req;
            int k = find_session(P, &j);
            if (k >= 0 && P->img[k]->file.size == j.size && P->img[k]->file.mtime == j.mtime) {
                if (!shown && !queued) { /* already probed and unchanged: show it now */
                    tui_probe_show(t, k);
                    tui_goto(t, TUI_IMAGE, 1);
                    P->shown_req = req;
                }
                shown++;
                continue;
            }
            P->queue = xrealloc(P->queue, (size_t)(P->n_queue + 1) * sizeof *P->queue);
            P->queue[P->n_queue++] = j;
            queued++;
        }
        globfree(&g);
    }
    if (queued && !P->running)
        start(P);
    if (bad)
        tui_status(t, 1, "%s%s", err, queued || shown ? " (the other files are opened)" : "");
    else if (!queued && shown)
        tui_status(t, 0, "%s: probed before, shown from this session", P->img[t->probed]->file.name);
    else if (!queued)
        tui_status(t, 1, "usage: :open FILE...");
    return queued || shown ? 0 : -1;
}

int
tui_probe_busy(const Tui *t)
{
    const TuiProber *P = t->prober;
    return P && ((P->running && P->n_run > 0 && !atomic_load(&P->cancel)) || P->n_queue > 0);
}

int
tui_probe_running(const Tui *t)
{
    const TuiProber *P = t->prober;
    return P && (P->running || P->n_queue > 0);
}

int
tui_probe_progress(const Tui *t, char *buf, size_t n)
{
    TuiProber *P = t->prober;
    if (!tui_probe_busy(t))
        return 0;
    int opened = atomic_load(&P->opened);
    if (P->running && P->n_run > 0 && !atomic_load(&P->cancel)) {
        int i = atomic_load(&P->cur);
        i = i < 0 ? 0 : i >= P->n_run ? P->n_run - 1 : i;
        if (!opened)
            snprintf(buf, n, "loading the models, then %s%s", P->run[i].name,
                     P->n_run + P->n_queue > 1 ? " and more" : "");
        else
            snprintf(buf, n, "probing %s (%d/%d)", P->run[i].name, i + 1, P->n_run + P->n_queue);
    } else {
        snprintf(buf, n, "%s %s", opened ? "probing" : "loading the models, then",
                 P->queue[0].name);
    }
    return 1;
}

int
tui_probe_cancel(Tui *t)
{
    TuiProber *P = t->prober;
    if (!tui_probe_busy(t))
        return 0;
    P->cancelled_below = P->req + 1;
    atomic_store(&P->cancel, 1);
    free(P->queue);
    P->queue = NULL;
    P->n_queue = 0;
    P->save_when_done = 0;
    tui_status(t, 0, "probe cancelled");
    return 1;
}

int
tui_probe_poll(Tui *t, int wait)
{
    TuiProber *P = t->prober;
    if (!P)
        return 0;
    int changed = 0;
    for (;;) {
        if (P->running && (wait || atomic_load(&P->finished))) {
            join(P);
            changed = 1;
        }
        pthread_mutex_lock(&P->mu);
        Done *out = P->out;
        int n_out = P->n_out;
        char **msgs = P->msgs;
        int n_msgs = P->n_msgs;
        P->out = NULL;
        P->n_out = P->cap_out = 0;
        P->msgs = NULL;
        P->n_msgs = 0;
        pthread_mutex_unlock(&P->mu);
        int failed = 0;
        for (int i = 0; i < n_msgs; i++) { /* warnings first: errors below take the line */
            show_msg(t, P, 1, msgs[i]);
            free(P->warning);
            P->warning = xstrdup(msgs[i]);
        }
        for (int i = 0; i < n_out; i++) {
            Done *d = &out[i];
            changed = 1;
            if (d->job.req < P->cancelled_below) {
                probe_result_free(&d->r);
                continue;
            }
            if (d->rc) {
                show_msg(t, P, 1, d->err);
                failed = 1;
                if (d->open_failed)
                    P->save_when_done = 0;
                continue;
            }
            if (P->pm[0] < 0)
                map_models(t, P);
            int k = keep(P, d);
            t->n_probed = P->n_img;
            t->probe_open_ms = d->open_ms;
            t->probe_image_ms = d->image_ms;
            if (d->job.req > P->shown_req) { /* the first result of an :open: show it */
                P->shown_req = d->job.req;
                tui_probe_show(t, k);
                tui_goto(t, TUI_IMAGE, 1);
                t->probe_shown = 1;
                tui_status(t, 0, "probed %s in %.0f ms%s: [ ] other probed images, p the "
                           "indexed image", d->job.name, d->open_ms + d->image_ms,
                           d->open_ms > 0 ? " (with loading the models)" : "");
            } else if (t->src == TUI_SRC_PROBE && t->probed == k) {
                tui_probe_show(t, k); /* the shown file was probed again */
            }
        }
        free(out);
        if (P->warning && !failed && n_out > 0) { /* a warning outlives the "probed" message */
            int echo = P->echo;
            P->echo = 0;
            show_msg(t, P, 1, P->warning);
            P->echo = echo;
        }
        for (int i = 0; i < n_msgs; i++)
            free(msgs[i]);
        free(msgs);
        if (!P->running && P->n_queue > 0) {
            start(P);
            changed = 1;
            if (wait)
                continue;
        }
        break;
    }
    if (!P->running && P->n_queue == 0 && P->save_when_done) {
        P->save_when_done = 0;
        tui_probe_save(t);
        changed = 1;
    }
    return changed;
}

/* Top cap of the exact image-level values a (d_sae): value descending, latent ascending. */
static int
image_top(const float *a, int d_sae, IdxAct *top, int cap)
{
    int n = 0;
    for (int s = 0; s < d_sae; s++) {
        if (!(a[s] > 0) || (n == cap && !(a[s] > top[cap - 1].value)))
            continue;
        int j = n < cap ? n++ : cap - 1;
        while (j > 0 && a[s] > top[j - 1].value) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = (IdxAct){ s, a[s] };
    }
    return n;
}

int
tui_probe_show(Tui *t, int k)
{
    TuiProber *P = t->prober;
    if (!P || k < 0 || k >= P->n_img) {
        tui_status(t, 1, "no probed image %d (:open FILE probes one)", k + 1);
        return -1;
    }
    const Probed *e = P->img[k];
    if (P->pm[0] < 0)
        map_models(t, P);
    int old_grid = t->img.grid, keep_cursor = t->px >= 0 && old_grid == e->r.G;
    tui_data_image_clear(t);
    memset(&t->img, 0, sizeof t->img);
    t->img.pos = k;
    t->img.label = -1;
    t->img.grid = e->r.G > 0 && 1 + e->r.G * e->r.G <= TUI_MAX_TOK ? e->r.G : 0;
    snprintf(t->img.path, sizeof t->img.path, "%s", e->file.path);
    t->img.thumb_size = e->r.S;
    for (int m = 0; m < 2; m++) {
        TuiImageSide *s = &t->is[m];
        int i = P->pm[m];
        if (i < 0 || i >= e->r.n_models)
            continue;
        const ProbeModelResult *r = &e->r.m[i];
        s->ok = 1;
        s->pr = r;
        s->n_pred = MIN(r->n_pred, TUI_MAX_PRED);
        for (int j = 0; j < s->n_pred; j++) {
            IdxPred *p = &s->pred[j];
            p->rank = j + 1;
            p->cls = r->pred_cls[j];
            p->prob = r->pred_prob[j];
            snprintf(p->name, sizeof p->name, "%s",
                     p->cls >= 0 && p->cls < P->probe.C ? P->probe.class_names[p->cls] : "?");
        }
        s->n_top = image_top(r->image, e->r.d_sae, s->top, TUI_MAX_LIST);
    }
    t->src = TUI_SRC_PROBE;
    t->probed = k;
    if (!keep_cursor || !t->img.grid)
        t->px = t->py = -1;
    int32_t want = t->ilatent;
    tui_data_items(t);
    t->isel = 0;
    t->ilatent = t->n_items > 0 ? t->items[0].latent : -1;
    for (int i = 0; i < t->n_items; i++)
        if (t->items[i].latent == want && want >= 0) {
            t->isel = i;
            t->ilatent = want;
            break;
        }
    t->full_redraw = 1;
    return 0;
}

int
tui_probe_save(Tui *t)
{
    TuiProber *P = t->prober;
    if (!P || P->n_img == 0) {
        tui_status(t, 1, "nothing probed to save (:open FILE first)");
        return -1;
    }
    if (tui_probe_busy(t)) {
        tui_status(t, 1, "still probing: :save when it is done (or Esc cancels)");
        return -1;
    }
    if (t->readonly) {
        tui_status(t, 1, "%s is opened read-only: cannot :save probed images (make the file "
                   "writable and open it again)", t->path);
        return -1;
    }
    join(P); /* a cancelled worker may still be finishing its image */
    char err[PS_ERRLEN] = "";
    int n = 0, rc = PS_OK;
    int64_t lo = 0, hi = 0;
    Idx *mine = P->probe.ix;
    P->probe.ix = t->ix; /* the explorer's read-write connection, on this thread */
    for (int k = 0; k < P->n_img && !rc; k++) {
        Probed *e = P->img[k];
        if (e->saved_id)
            continue;
        int64_t id = 0;
        if ((rc = probe_save(&P->probe, &e->r, NULL, &id, err)))
            break;
        e->saved_id = id;
        lo = n ? MIN(lo, id) : id;
        hi = n ? MAX(hi, id) : id;
        n++;
    }
    P->probe.ix = mine;
    if (rc) {
        tui_status(t, 1, "save: %s", err);
        return -1;
    }
    if (n == 0)
        tui_status(t, 0, "every probed image is saved already");
    else if (n == 1)
        tui_status(t, 0, "saved 1 probed image into dataset \"%s\" as image %lld (:image %lld)",
                   PROBE_DATASET, (long long)lo, (long long)lo);
    else
        tui_status(t, 0, "saved %d probed images into dataset \"%s\" as images %lld..%lld", n,
                   PROBE_DATASET, (long long)lo, (long long)hi);
    return 0;
}

void
tui_probe_save_when_done(Tui *t)
{
    TuiProber *P = prober(t);
    P->save_when_done = 1;
    if (!tui_probe_busy(t))
        tui_probe_poll(t, 0);
}

const char *
tui_probe_name(const Tui *t, int k, int64_t *saved_id)
{
    const TuiProber *P = t->prober;
    if (!P || k < 0 || k >= P->n_img)
        return NULL;
    if (saved_id)
        *saved_id = P->img[k]->saved_id;
    return P->img[k]->file.name;
}

const uint8_t *
tui_probe_crop(const Tui *t, int k, int *side, int *grid, int *gen)
{
    const TuiProber *P = t->prober;
    if (!P || k < 0 || k >= P->n_img)
        return NULL;
    const Probed *e = P->img[k];
    *side = e->r.S;
    *grid = e->r.G > 0 && 1 + e->r.G * e->r.G <= TUI_MAX_TOK ? e->r.G : 0;
    if (gen)
        *gen = e->gen;
    return e->r.crop;
}

int
tui_probe_map(const Tui *t, int k, int m, int32_t s, float *map, int cap, int *n_tok)
{
    const TuiProber *P = t->prober;
    *n_tok = 0;
    if (!P || k < 0 || k >= P->n_img || m < 0 || m > 1 || P->pm[m] < 0)
        return -1;
    const ProbeModelResult *r = &P->img[k]->r.m[P->pm[m]];
    const SaeSparse *sp = &r->sp;
    int T = MIN(r->n_tok, cap);
    for (int tk = 0; tk < T; tk++) {
        float v = 0;
        /* latents ascend within a token (sae.h): binary search */
        int64_t lo = sp->rowptr[tk] - sp->rowptr[0], hi = sp->rowptr[tk + 1] - sp->rowptr[0];
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (sp->idx[mid] < s)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < sp->rowptr[tk + 1] - sp->rowptr[0] && sp->idx[lo] == s)
            v = sp->val[lo];
        map[tk] = v > 0 ? v : 0;
    }
    *n_tok = T;
    return 0;
}

void
tui_probe_free(Tui *t)
{
    TuiProber *P = t->prober;
    if (!P)
        return;
    atomic_store(&P->cancel, 1);
    join(P);
    for (int i = 0; i < P->n_out; i++)
        probe_result_free(&P->out[i].r);
    free(P->out);
    for (int i = 0; i < P->n_msgs; i++)
        free(P->msgs[i]);
    free(P->msgs);
    free(P->queue);
    free(P->run);
    free(P->warning);
    for (int k = 0; k < P->n_img; k++) {
        probe_result_free(&P->img[k]->r);
        free(P->img[k]);
    }
    free(P->img);
    if (atomic_load(&P->opened))
        probe_close(&P->probe);
    idx_close(P->ix);
    for (size_t i = 0; i < LEN(P->own); i++)
        free(P->own[i]);
    pthread_mutex_destroy(&P->mu);
    free(P);
    t->prober = NULL;
    t->n_probed = 0;
    if (t->src == TUI_SRC_PROBE) {
        tui_data_image_clear(t);
        t->src = TUI_SRC_INDEX;
        t->probed = -1;
    }
}
