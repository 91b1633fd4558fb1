/* SPDX-License-Identifier: MIT */
/*
 * test_tuiprobe.c - probing your own images in the explorer (tui_probe.c)
 * without a terminal: an index of the tiny CLIP + MaPLe fixtures and the
 * tiny SAE (build.h, as test_probe.c), opened as a Tui; :open runs the
 * worker thread and tui_probe_poll(wait) takes its results. Checked: the
 * Image view's source switches to the probed image and back (p, :image),
 * [ ] walk the strip, the grouped lists equal probe_groups on the same
 * result (image level and patch, with and without the noise filter, whose
 * hidden latents equal probe_noisy's), the predictions equal the result's,
 * the session cache (an unchanged file is not probed again), Esc cancels
 * (the result is dropped), pictures of a probed image render, :save stores
 * the images (and says so on a read-only index), and a changed SAE file is
 * refused with both digests on the status line unless forced.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "idx.h"
#include "probe.h"
#include "ps.h"
#include "test.h"
#include "tui.h"

#define TOK t_shared("bpe_simple_vocab_16e6.txt.gz")

static const char *const imgs[6] = { "img_land.png", "img_port.png", "img_square.png",
                                     "img_big.png", "img_gray.png", "img_rgba.png" };
static char folder[512], db[512];

/* t_tmp("tuiprobe_ds")/{cat,dog}/ with three fixture images each, indexed into db. */
static int
build_fixture(char *err)
{
    char model[512], mp[512], sae[512];
    snprintf(folder, sizeof folder, "%s", t_class_folder("tuiprobe_ds"));
    snprintf(db, sizeof db, "%s", t_tmp("tuiprobe.db"));
    unlink(db);
    snprintf(model, sizeof model, "%s", t_data("clip_tiny/hf"));
    snprintf(mp, sizeof mp, "%s", t_data("clip_tiny/maple/model.pth.tar-5"));
    snprintf(sae, sizeof sae, "%s", t_data("index/sae_tiny.safetensors"));
    BuildOptions o;
    build_options_init(&o);
    o.model = model;
    o.tokenizer = TOK;
    o.sae = sae;
    o.data = folder;
    o.out = db;
    o.batch = 1;
    o.force = 1;
    o.maple[0] = mp;
    o.n_maple = 1;
    Build b;
    int rc = build_open(&b, &o, err), done = 0;
    while (!rc && !done)
        rc = build_step(&b, &done, err);
    if (!rc)
        rc = build_finish(&b, err);
    build_close(&b);
    return rc;
}

static const char *
img(const char *cls, int i)
{
    static char b[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(b[k], sizeof b[k], "%s/%s/%s", folder, cls, imgs[(strcmp(cls, "dog") ? 0 : 3) + i]);
    return b[k];
}

static int
open_cmd(Tui *t, const char *files)
{
    char line[2200];
    snprintf(line, sizeof line, "open %s", files);
    return tui_command(t, line);
}

/* Is latent s among the items of (level, group)? */
static int
listed(const Tui *t, int level, int group, int32_t s)
{
    for (int i = 0; i < t->n_items; i++)
        if (t->items[i].level == level && t->items[i].group == group && t->items[i].latent == s)
            return 1;
    return 0;
}

static int
count(const Tui *t, int level, int group)
{
    int n = 0;
    for (int i = 0; i < t->n_items; i++)
        n += t->items[i].level == level && t->items[i].group == group;
    return n;
}

/* The Tui's groups at one level are probe_groups' (as sets: one-model groups differ in order). */
static int
same_groups(const Tui *t, int level, const ProbeGroups *g)
{
    int ok = count(t, level, 0) == g->n_common && count(t, level, 1) == g->n_only[0] &&
             count(t, level, 2) == g->n_only[1];
    for (int i = 0; i < g->n_common; i++)
        ok &= listed(t, level, 0, g->common[i].latent);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < g->n_only[k]; i++)
            ok &= listed(t, level, 1 + k, g->only[k][i].latent);
    return ok;
}

static void
test_session(Probe *p)
{
    char err[PS_ERRLEN];
    Tui t;
    CHECK_EQ_INT(tui_open(&t, db, 0, err), 0);
    tui_resize(&t, 32, 100);
    tui_probe_config(&t, NULL, 0);

    /* :open: a worker probes, the poll shows the result in the Image view */
    CHECK_EQ_INT(open_cmd(&t, img("cat", 0)), 0);
    CHECK(tui_probe_poll(&t, 1));
    CHECK(!tui_probe_busy(&t) && !tui_probe_running(&t));
    CHECK_EQ_INT(t.view, TUI_IMAGE);
    CHECK_EQ_INT(t.src, TUI_SRC_PROBE);
    CHECK_EQ_INT(t.probed, 0);
    CHECK_EQ_INT(t.n_probed, 1);
    CHECK(tui_image_shown(&t));
    CHECK(!t.status_err);
    CHECK(t.is[0].ok && t.is[1].ok && t.is[0].pr && t.is[1].pr);

    /* the same image through probe.h directly */
    ProbeResult r;
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(probe_image(p, img("cat", 0), &r, err), 0);
    CHECK_EQ_INT(t.img.grid, r.G);
    CHECK_EQ_INT(t.img.label, -1);
    for (int m = 0; m < 2; m++) {
        CHECK_EQ_INT(t.is[m].n_pred, r.m[m].n_pred);
        for (int i = 0; i < t.is[m].n_pred; i++) {
            CHECK_EQ_INT(t.is[m].pred[i].cls, r.m[m].pred_cls[i]);
            CHECK(t.is[m].pred[i].prob == r.m[m].pred_prob[i]);
            CHECK_STR(t.is[m].pred[i].name, p->class_names[r.m[m].pred_cls[i]]);
        }
        CHECK(t.is[m].n_top >= r.m[m].n_top);
        for (int i = 0; i < r.m[m].n_top; i++)
            CHECK(t.is[m].top[i].latent == r.m[m].top[i].latent &&
                  t.is[m].top[i].value == r.m[m].top[i].value);
    }
    ProbeGroups g;
    CHECK_EQ_INT(probe_groups(p, &r, 1, PROBE_IMAGE, 0, 0, &g, err), 0);
    CHECK(same_groups(&t, 0, &g));
    CHECK(t.n_items > 0 && t.ilatent == t.items[0].latent);

    /* patch cursor: patch lists appear and equal the patch's own groups */
    CHECK_EQ_INT(t.px, -1);
    tui_key(&t, 'l');
    CHECK_EQ_INT(t.px, r.G / 2);
    CHECK_EQ_INT(t.py, r.G / 2);
    int changed = 0;
    for (int step = 0; step < 4; step++) {
        int patch = t.py * r.G + t.px;
        CHECK_EQ_INT(probe_groups(p, &r, 1, patch, PROBE_PATCH_ONLY, 0, &g, err), 0);
        CHECK(same_groups(&t, 1, &g));
        CHECK(count(&t, 1, 0) + count(&t, 1, 1) + count(&t, 1, 2) > 0);
        int32_t before = t.n_items ? t.items[t.n_items - 1].latent : -1;
        tui_key(&t, step % 2 ? 'j' : 'h');
        changed |= t.items[t.n_items - 1].latent != before;
    }
    CHECK(changed); /* moving the cursor changes the patch lists */
    /* the overlay map of the selected latent is the exact token values */
    float map[TUI_MAX_TOK];
    int nt = 0;
    CHECK_EQ_INT(tui_data_map(&t, 1, t.ilatent, map, &nt), 0);
    CHECK_EQ_INT(nt, r.m[1].n_tok);
    int exact = 1;
    for (int tok = 1; tok < 1 + r.G * r.G; tok++) {
        const int32_t *ix;
        const float *v;
        int n;
        probe_patch(&r, 1, (tok - 1) / r.G, (tok - 1) % r.G, &ix, &v, &n);
        float want = 0;
        for (int k = 0; k < n; k++)
            if (ix[k] == t.ilatent)
                want = v[k];
        exact &= map[tok] == want;
    }
    CHECK(exact);

    /* the noise filter: a threshold that hides some of this image's latents */
    float th = NAN;
    for (int i = 0; i < r.m[0].n_top && isnan(th); i++) {
        float m = p->base_mean[r.m[0].top[i].latent];
        if (!isnan(m) && m > 0)
            th = m * 0.999f;
    }
    CHECK(!isnan(th));
    char cmd[64];
    snprintf(cmd, sizeof cmd, "noise %.9g", (double)th);
    CHECK_EQ_INT(tui_command(&t, cmd), 0);
    CHECK(t.noise_on && t.noise == th);
    int agree = 1, hidden = 0;
    for (int32_t s = 0; s < r.d_sae; s++) {
        agree &= tui_noisy(&t, s) == probe_noisy(p, s, th);
        hidden += tui_noisy(&t, s);
    }
    CHECK(agree);
    CHECK(hidden > 0);
    for (int i = 0; i < t.n_items; i++)
        CHECK(!tui_noisy(&t, t.items[i].latent));
    CHECK_EQ_INT(probe_groups(p, &r, 1, PROBE_IMAGE, 0, th, &g, err), 0);
    CHECK(same_groups(&t, 0, &g));
    CHECK_EQ_INT(probe_groups(p, &r, 1, t.py * r.G + t.px, PROBE_PATCH_ONLY, th, &g, err), 0);
    CHECK(same_groups(&t, 1, &g));
    tui_key(&t, 'f');
    CHECK(!t.noise_on);
    CHECK_EQ_INT(probe_groups(p, &r, 1, PROBE_IMAGE, 0, 0, &g, err), 0);
    CHECK(same_groups(&t, 0, &g));
    tui_key(&t, 'f');
    CHECK(t.noise_on && t.noise == th); /* the key keeps the threshold */
    CHECK_EQ_INT(tui_command(&t, "noise off"), 0);
    CHECK(!t.noise_on);
    CHECK(tui_command(&t, "noise banana") < 0 && t.status_err);

    /* pictures of a probed image: the crop itself, the overlay changes it */
    TuiPic pic = { TUI_PIC_PROBED, 0, 0, -1, TUI_OV_NONE, -1, 0, 0 };
    const uint8_t *rgb = tui_gfx_pixels(&t, &pic, r.S, r.S);
    CHECK(rgb && !memcmp(rgb, r.crop, (size_t)r.S * r.S * 3));
    pic.latent = t.ilatent;
    pic.overlay = TUI_OV_MASK;
    rgb = tui_gfx_pixels(&t, &pic, r.S, r.S);
    CHECK(rgb && memcmp(rgb, r.crop, (size_t)r.S * r.S * 3));

    /* two more files (one as a glob pattern): the first is shown, the strip walks them */
    char two[1500];
    snprintf(two, sizeof two, "%s %s/dog/img_g*.png", img("cat", 1), folder);
    CHECK_EQ_INT(open_cmd(&t, two), 0);
    tui_probe_poll(&t, 1);
    CHECK_EQ_INT(t.n_probed, 3);
    CHECK_EQ_INT(t.probed, 1);
    int gx = t.px;
    CHECK(gx >= 0); /* the patch cursor stays on the same grid */
    tui_key(&t, ']');
    CHECK_EQ_INT(t.probed, 2);
    tui_key(&t, ']');
    CHECK_EQ_INT(t.probed, 2);
    CHECK_STR(tui_probe_name(&t, 2, NULL), "img_gray.png");
    tui_key(&t, '[');
    tui_key(&t, '[');
    tui_key(&t, '[');
    CHECK_EQ_INT(t.probed, 0);
    int x, w;
    char lab[64];
    CHECK_EQ_INT(tui_strip_entry(&t, 1, 100, &x, &w, lab, sizeof lab), 0);
    CHECK(strstr(lab, "2 img_port.png") != NULL);
    TuiLayout l;
    tui_layout(&t, &l);
    CHECK(l.strip.h == 1 && l.main_img.y > l.strip.y);
    tui_mouse(&t, TUI_MOUSE_PRESS, l.strip.y, l.strip.x + x + 1);
    CHECK_EQ_INT(t.probed, 1);
    CHECK(tui_strip_entry(&t, 1, 30, &x, &w, lab, sizeof lab) == 0); /* scrolled into view */

    /* the session cache: an unchanged file is shown at once, no worker */
    CHECK_EQ_INT(open_cmd(&t, img("cat", 0)), 0);
    CHECK(!tui_probe_running(&t));
    CHECK_EQ_INT(t.probed, 0);
    CHECK_EQ_INT(t.n_probed, 3);
    CHECK(open_cmd(&t, "/nonexistent/x.png") < 0 && t.status_err);
    CHECK(strstr(t.status, "no such file") != NULL);
    CHECK(tui_command(&t, "open") < 0 && t.status_err);

    /* p: to the indexed image and back */
    tui_key(&t, 'p');
    CHECK(t.status_err); /* no indexed image opened yet */
    CHECK_EQ_INT(t.src, TUI_SRC_PROBE);
    CHECK_EQ_INT(tui_command(&t, "image 2"), 0);
    CHECK_EQ_INT(t.src, TUI_SRC_INDEX);
    CHECK(t.is[0].blob && !t.is[0].pr);
    tui_key(&t, 'p');
    CHECK_EQ_INT(t.src, TUI_SRC_PROBE);
    CHECK_EQ_INT(t.probed, 0);
    tui_key(&t, 'p');
    CHECK_EQ_INT(t.src, TUI_SRC_INDEX);
    CHECK_EQ_INT(t.image, 2);
    tui_key(&t, ']');
    CHECK_EQ_INT(t.image, 3); /* [ ] on an indexed image still step through the index */
    tui_key(&t, 'p');

    /* Esc cancels: the result is dropped when it arrives */
    CHECK_EQ_INT(open_cmd(&t, img("dog", 0)), 0);
    CHECK(tui_probe_busy(&t));
    char prog[128];
    CHECK(tui_probe_progress(&t, prog, sizeof prog) && strstr(prog, "img_big.png"));
    tui_key(&t, TUI_KEY_ESC);
    CHECK(!tui_probe_busy(&t));
    CHECK(strstr(t.status, "cancelled") != NULL);
    tui_probe_poll(&t, 1);
    CHECK_EQ_INT(t.n_probed, 3);
    CHECK_EQ_INT(t.view, TUI_IMAGE);

    /* Enter opens the Latent view of the selected latent, reference images from the index */
    int32_t s = t.ilatent;
    tui_key(&t, TUI_KEY_ENTER);
    CHECK_EQ_INT(t.view, TUI_LATENT);
    CHECK_EQ_INT(t.latent, s);
    tui_key(&t, 'q');
    CHECK_EQ_INT(t.view, TUI_IMAGE);
    CHECK_EQ_INT(t.src, TUI_SRC_PROBE);

    /* every key on a probed image: nothing crashes */
    for (int k = 1; k < 128; k++) {
        if (k == 'q' || k == 'Q' || k == ':' || k == '/' || k == TUI_KEY_ESC)
            continue;
        tui_goto(&t, TUI_IMAGE, 0);
        tui_key(&t, k);
        t.prompt = 0;
    }
    t.quit = 0;

    /* :save: the probed images become images of dataset "probed" */
    CHECK_EQ_INT(tui_command(&t, "save"), 0);
    CHECK(!t.status_err && strstr(t.status, "saved 3 probed images"));
    IdxDataset d;
    CHECK_EQ_INT(idx_find_dataset(t.ix, PROBE_DATASET, &d, err), 0);
    int64_t saved = 0;
    CHECK(tui_probe_name(&t, 0, &saved) && saved > 0);
    IdxImage im;
    CHECK_EQ_INT(idx_image(t.ix, saved, &im, err), 0);
    CHECK_EQ_INT(im.dataset_id, d.id);
    CHECK(strstr(im.path, "img_land.png") != NULL);
    CHECK_EQ_INT(tui_strip_entry(&t, 0, 100, &x, &w, lab, sizeof lab), 0);
    CHECK(strstr(lab, "*") != NULL);
    CHECK_EQ_INT(tui_command(&t, "save"), 0);
    CHECK(strstr(t.status, "saved already") != NULL);
    /* the saved image opened as an indexed one has the probed predictions */
    CHECK_EQ_INT(tui_open_image(&t, saved, -1), 0);
    CHECK_EQ_INT(t.is[0].n_pred, r.m[0].n_pred);
    CHECK_EQ_INT(t.is[0].pred[0].cls, r.m[0].pred_cls[0]);
    probe_result_free(&r);
    tui_close(&t);
}

static void
test_readonly_and_checksums(void)
{
    char err[PS_ERRLEN];
    Tui t;
    Idx *ix;
    /* read-only: probing works, :save says why it cannot */
    CHECK_EQ_INT(idx_open_readonly(&ix, db, err), 0);
    CHECK_EQ_INT(tui_init(&t, ix, db, err), 0);
    t.readonly = 1;
    CHECK(tui_command(&t, "save") < 0 && t.status_err); /* nothing probed yet */
    CHECK_EQ_INT(open_cmd(&t, img("dog", 2)), 0);
    tui_probe_poll(&t, 1);
    CHECK_EQ_INT(t.n_probed, 1);
    CHECK(tui_command(&t, "save") < 0 && t.status_err);
    CHECK(strstr(t.status, "read-only") != NULL);
    tui_close(&t);

    /* a changed SAE file: refused, both digests named (cut to 12 digits) */
    char *buf;
    size_t n;
    const char *bad = t_tmp("tuiprobe_sae_changed.safetensors");
    PS_ASSERT(ps_read_file(t_data("index/sae_tiny.safetensors"), 1 << 24, &buf, &n, NULL) == 0);
    buf[n - 1] ^= 1; /* a weight's last byte: same size, different digest */
    PS_ASSERT(t_write_file(bad, buf, n) == 0);
    free(buf);
    ProbeOptions o;
    probe_options_init(&o);
    o.sae = bad;
    for (int force = 0; force < 2; force++) {
        CHECK_EQ_INT(tui_open(&t, db, 0, err), 0);
        tui_resize(&t, 32, 160);
        o.force = force;
        tui_probe_config(&t, &o, 0);
        CHECK_EQ_INT(open_cmd(&t, img("cat", 2)), 0);
        tui_probe_poll(&t, 1);
        CHECK(t.status_err);
        CHECK(strstr(t.status, "sha256") && strstr(t.status, "tuiprobe_sae_changed"));
        const char *a = strstr(t.status, "\xe2\x80\xa6"), *b = a ? strstr(a + 3, "\xe2\x80\xa6") : NULL;
        CHECK(a && b); /* two digests, each cut */
        CHECK(strlen(t.status) < 160);
        CHECK_EQ_INT(t.n_probed, force); /* refused without --force, probed with it */
        CHECK(force ? strstr(t.status, "warning") != NULL : strstr(t.status, "refused") != NULL);
        tui_close(&t);
    }
}

void
test_tuiprobe(void)
{
    char err[PS_ERRLEN];
    int rc = build_fixture(err);
    CHECK_MSG(rc == PS_OK, "build: %s", err);
    if (rc)
        return;
    Idx *ix;
    Probe p;
    ProbeOptions o;
    probe_options_init(&o);
    CHECK_EQ_INT(idx_open_readonly(&ix, db, err), 0);
    rc = probe_open(&p, ix, &o, err);
    CHECK_MSG(rc == PS_OK, "probe_open: %s", err);
    if (!rc) {
        test_session(&p);
        probe_close(&p);
    }
    idx_close(ix);
    test_readonly_and_checksums();
}
