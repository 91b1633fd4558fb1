/* SPDX-License-Identifier: MIT */
/*
 * test_build.c - the index builder (build.h) on the tiny CLIP fixture and
 * the tiny SAE of tests/data/index: predictions against `patchsae embed`'s
 * logits on the same images; patch blobs and image latents against the
 * SAE run by hand; an interrupted build resumed, and shards merged, equal to
 * one uninterrupted build (the accumulator snapshots byte for byte); the
 * refusals (existing file, SAE width, hook layer); dataset names.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "cmd.h"
#include "idx.h"
#include "ps.h"
#include "sae.h"
#include "st.h"
#include "stats.h"
#include "test.h"

#define TOK ((char *)t_shared("bpe_simple_vocab_16e6.txt.gz"))

static const char *const imgs[6] = { "img_land.png", "img_port.png", "img_square.png",
                                     "img_big.png", "img_gray.png", "img_rgba.png" };

/* A manifest of n lines cycling through the six images (cat, cat, cat, dog, dog, dog). */
static const char *
make_manifest(const char *name, int n)
{
    static char path[512];
    snprintf(path, sizeof path, "%s", t_tmp(name));
    FILE *f = fopen(path, "w");
    PS_ASSERT(f);
    for (int i = 0; i < n; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "clip_tiny/%s", imgs[i % 6]);
        char *abs = realpath(t_data(rel), NULL);
        PS_ASSERT(abs);
        fprintf(f, "%s\t%s\n", abs, i % 6 < 3 ? "cat" : "dog");
        free(abs);
    }
    fclose(f);
    return path;
}

static void
opts(BuildOptions *o, const char *data, const char *out)
{
    static char model[512], sae[512];
    snprintf(model, sizeof model, "%s", t_data("clip_tiny/hf"));
    snprintf(sae, sizeof sae, "%s", t_data("index/sae_tiny.safetensors"));
    build_options_init(o);
    o->model = model;
    o->tokenizer = TOK;
    o->sae = sae;
    o->data = data;
    o->out = out;
    o->batch = 4;
}

static int
run_all(const BuildOptions *o, char *err)
{
    Build b;
    int rc = build_open(&b, o, err), done = 0;
    while (!rc && !done)
        rc = build_step(&b, &done, err);
    if (!rc)
        rc = build_finish(&b, err);
    build_close(&b);
    return rc;
}

/* The final accumulator snapshot stored in an index's progress row (shard 0/1 unless given). */
static size_t
snapshot(const char *path, int si, int sn, uint8_t **out)
{
    Idx *ix;
    *out = NULL;
    if (idx_open_readonly(&ix, path, NULL) != PS_OK)
        return 0;
    IdxState *s;
    int n;
    size_t len = 0;
    if (idx_states(ix, &s, &n, NULL) == PS_OK) {
        for (int i = 0; i < n; i++)
            if (s[i].p.shard_i == si && s[i].p.shard_n == sn && s[i].p.done && s[i].state) {
                *out = s[i].state;
                len = s[i].state_n;
                s[i].state = NULL;
                break;
            }
        idx_states_free(s, n);
    }
    idx_close(ix);
    return len;
}

/* Byte-equal snapshots (same accumulation order), or with exact = 0 equal contents. */
static void
check_same_snapshot(const char *a, const char *b, int exact, const char *what)
{
    uint8_t *x, *y;
    size_t nx = snapshot(a, 0, 1, &x), ny = snapshot(b, 0, 1, &y);
    CHECK_MSG(nx > 0 && ny > 0, "%s: no final snapshot", what);
    if (exact) {
        CHECK_MSG(nx == ny && !memcmp(x, y, nx), "%s: snapshots differ (%zu, %zu bytes)", what,
                  nx, ny);
    } else if (nx > 0 && ny > 0) {
        /* a merge builds its heaps in another order: compare what they hold */
        Stats p, q;
        PS_ASSERT(stats_load(&p, x, nx, NULL) == PS_OK && stats_load(&q, y, ny, NULL) == PS_OK);
        int S = p.cfg.d_sae, k = p.cfg.k_top, bad = 0;
        bad |= memcmp(&p.cfg, &q.cfg, sizeof p.cfg) || p.n_images != q.n_images;
        StatsTop *tp = malloc((size_t)k * sizeof *tp), *tq = malloc((size_t)k * sizeof *tq);
        for (int s = 0; s < S && !bad; s++) {
            bad |= memcmp(&p.lat[s], &q.lat[s], sizeof p.lat[s]) != 0;
            for (int kind = 0; kind < 2; kind++) {
                int np = stats_top(&p, kind, s, tp), nq = stats_top(&q, kind, s, tq);
                bad |= np != nq || memcmp(tp, tq, (size_t)np * sizeof *tp);
            }
        }
        for (int c = 0; c < p.cfg.n_classes && !bad; c++) {
            bad |= !p.cls_count[c] != !q.cls_count[c];
            if (p.cls_count[c] && q.cls_count[c])
                bad |= memcmp(p.cls_count[c], q.cls_count[c], (size_t)S * sizeof(int64_t)) ||
                       memcmp(p.cls_sum[c], q.cls_sum[c], (size_t)S * sizeof(int64_t));
        }
        CHECK_MSG(!bad, "%s: statistics differ", what);
        free(tp);
        free(tq);
        stats_free(&p);
        stats_free(&q);
    }
    free(x);
    free(y);
}

/* Predictions equal the argmax and softmax of `patchsae embed` logits on the same images. */
static void
test_predictions_and_rows(void)
{
    const char *dir = t_class_folder("build-ds");
    char data[512], out[512], emb[512], classes[512], paths[6][600];
    snprintf(data, sizeof data, "%s", dir);
    snprintf(out, sizeof out, "%s", t_tmp("build-a.db"));
    snprintf(emb, sizeof emb, "%s", t_tmp("build-a.safetensors"));
    snprintf(classes, sizeof classes, "%s", t_tmp("build-classes.txt"));
    PS_ASSERT(t_write_file(classes, "cat\ndog\n", 8) == 0);
    BuildOptions o;
    opts(&o, data, out);
    char err[PS_ERRLEN] = "";
    CHECK_MSG(run_all(&o, err) == PS_OK, "build: %s", err);

    for (int i = 0; i < 6; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s/%s", dir, i < 3 ? "cat" : "dog", imgs[i]);
    char *argv[] = { "embed", "--model", (char *)o.model, "--tokenizer", TOK, "--quiet",
                     "--classes", classes, "-o", emb, paths[0], paths[1], paths[2], paths[3],
                     paths[4], paths[5], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv) - 1, argv), 0);
    StFile *f;
    const float *logits = NULL, *resid = NULL;
    int64_t ls[2] = { 6, 2 }, rs[3] = { 6, 17, 32 };
    PS_ASSERT(st_open(&f, emb, NULL) == PS_OK);
    CHECK(st_get_f32(f, "logits", 2, ls, &logits, NULL) == PS_OK);
    CHECK(st_get_f32(f, "resid", 3, rs, &resid, NULL) == PS_OK);
    Idx *ix;
    PS_ASSERT(idx_open_readonly(&ix, out, NULL) == PS_OK);
    IdxModel m;
    IdxDataset d;
    IdxSae a;
    CHECK(idx_find_model(ix, "clip", &m, NULL) == PS_OK);
    CHECK(idx_find_dataset(ix, "build-ds", &d, NULL) == PS_OK);
    CHECK(idx_find_sae(ix, NULL, &a, NULL) == PS_OK);
    CHECK_EQ_INT(m.hook_layer, 2);
    CHECK_EQ_INT(m.n_tokens, 17);
    CHECK_EQ_INT(d.n_images, 6);
    CHECK_EQ_INT(d.n_classes, 2);
    CHECK_EQ_INT(a.d_sae, 96);
    Sae sae;
    SaeWork w;
    SaeSparse sp = { 0 };
    PS_ASSERT(sae_load(&sae, o.sae, NULL) == PS_OK && sae_work_init(&w, &sae, NULL) == PS_OK);
    for (int i = 0; i < 6 && logits && resid; i++) {
        int64_t id = -1;
        CHECK(idx_image_at(ix, d.id, i, &id, NULL) == PS_OK);
        IdxImage im;
        CHECK(idx_image(ix, id, &im, NULL) == PS_OK);
        CHECK_EQ_INT(im.label, i < 3 ? 0 : 1);
        CHECK_EQ_INT(im.grid, 4);
        CHECK_EQ_INT(im.thumb_size, 32);
        IdxPred p[5];
        int n = 0;
        CHECK(idx_predictions(ix, id, m.id, p, 5, &n, NULL) == PS_OK);
        CHECK_EQ_INT(n, 2);
        const float *l = logits + 2 * i;
        int arg = l[1] > l[0];
        double p0 = 1 / (1 + exp((double)l[1 - arg] - l[arg]));
        CHECK_EQ_INT(p[0].cls, arg);
        CHECK_NEAR(p[0].prob, p0, 1e-4);
        CHECK_NEAR(p[0].prob + p[1].prob, 1, 1e-5);
        /* the image's SAE latents, by hand from embed's resid */
        PS_ASSERT(sae_encode_sparse(&sae, resid + (size_t)i * 17 * 32, 17, &sp, &w, NULL) == 0);
        float mean[96] = { 0 };
        for (int t = 0; t < 17; t++)
            for (int64_t k = sp.rowptr[t]; k < sp.rowptr[t + 1]; k++)
                mean[sp.idx[k]] += sp.val[k] / 17;
        IdxAct top[32];
        CHECK(idx_image_latents(ix, id, m.id, a.id, top, 32, &n, NULL) == PS_OK);
        CHECK(n > 0);
        for (int j = 0; j < n; j++) {
            CHECK_NEAR(top[j].value, mean[top[j].latent], 1e-4);
            CHECK(j == 0 || top[j].value <= top[j - 1].value);
        }
        int best = 0;
        for (int s = 1; s < 96; s++)
            best = mean[s] > mean[best] ? s : best;
        CHECK_EQ_INT(top[0].latent, best);
        /* patch blob: the strongest latent of patch 5 (token 6) is stored first */
        IdxAct pa[32];
        CHECK(idx_patch_latents(ix, id, m.id, a.id, 6, pa, 32, &n, NULL) == PS_OK);
        int64_t r0 = sp.rowptr[6], r1 = sp.rowptr[7];
        CHECK_EQ_INT(n, MIN(r1 - r0, 32));
        if (n > 0) {
            int32_t s0 = sp.idx[r0];
            float v0 = sp.val[r0];
            for (int64_t k = r0; k < r1; k++)
                if (sp.val[k] > v0)
                    v0 = sp.val[k], s0 = sp.idx[k];
            /* the first stored entry is the largest up to the 8-bit quantisation */
            CHECK(fabsf(pa[0].value - v0) <= 0.03f * v0 + 1e-4f);
            for (int64_t k = r0; k < r1; k++)
                if (sp.idx[k] == pa[0].latent)
                    CHECK(sp.val[k] >= 0.97f * v0);
            (void)s0;
        }
        void *jpg;
        size_t jn;
        int size;
        CHECK(idx_thumb(ix, id, &jpg, &jn, &size, NULL) == PS_OK);
        CHECK(jpg && jn > 100 && size == 32 && !memcmp(jpg, "\xff\xd8", 2));
        free(jpg);
    }
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&sae);
    char v[64];
    CHECK(idx_get_meta(ix, "k_per_token", v, sizeof v, NULL) == PS_OK && !strcmp(v, "32"));
    CHECK(idx_get_meta(ix, "skipped:build-ds:0/1", v, sizeof v, NULL) == PS_OK && !strcmp(v, "0"));
    idx_close(ix);
    st_close(f);

    /* an existing output is refused, resume of a finished build changes nothing */
    Build b;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_EREFUSED);
    CHECK(strstr(err, "--resume") != NULL);
    o.resume = 1;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_OK);
    CHECK_EQ_INT(b.n_done, 6);
    int done = 0;
    CHECK_EQ_INT(build_step(&b, &done, err), PS_OK);
    CHECK(done);
    CHECK_EQ_INT(build_finish(&b, err), PS_OK);
    build_close(&b);
    build_close(&b);
}

/* A build stopped with an open chunk (as a kill would) and resumed equals one uninterrupted. */
static void
test_resume_and_shards(void)
{
    const char *man = make_manifest("build-m.tsv", 24);
    char data[512], full[512], part[512];
    snprintf(data, sizeof data, "%s", man);
    snprintf(full, sizeof full, "%s", t_tmp("build-full.db"));
    snprintf(part, sizeof part, "%s", t_tmp("build-part.db"));
    char err[PS_ERRLEN] = "";
    BuildOptions o;
    opts(&o, data, full);
    o.batch = 5; /* shards of 8 end mid-batch */
    CHECK_MSG(run_all(&o, err) == PS_OK, "%s", err);

    opts(&o, data, part);
    o.batch = 5;
    Build b;
    int done = 0;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_OK);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(build_step(&b, &done, err), PS_OK);
        CHECK_EQ_INT(build_commit(&b, err), PS_OK);
    }
    b.opt.checkpoint = 1e9;
    for (int i = 0; i < 2; i++)
        CHECK_EQ_INT(build_step(&b, &done, err), PS_OK); /* open, rolled back by close */
    CHECK_EQ_INT(b.n_committed, 10);
    CHECK_EQ_INT(b.n_done, 20);
    build_close(&b);
    o.resume = 1;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_OK);
    CHECK_EQ_INT(b.n_resumed, 10);
    CHECK_EQ_INT(b.chunk, 2);
    while (!done && build_step(&b, &done, err) == PS_OK)
        ;
    CHECK(done);
    CHECK_EQ_INT(build_finish(&b, err), PS_OK);
    build_close(&b);
    check_same_snapshot(full, part, 1, "resumed");
    Idx *ix;
    PS_ASSERT(idx_open_readonly(&ix, part, NULL) == PS_OK);
    int64_t n = 0;
    CHECK(idx_class_size(ix, 1, 0, &n, NULL) == PS_OK);
    CHECK_EQ_INT(n, 12);
    idx_close(ix);

    /* three shards (boundaries 8 and 16, inside batches of 5) merged */
    char sh[3][512], merged[512];
    const char *list[3];
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "build-s%d.db", i);
        snprintf(sh[i], sizeof sh[i], "%s", t_tmp(name));
        list[i] = sh[i];
        opts(&o, data, sh[i]);
        o.shard_i = i;
        o.shard_n = 3;
        o.batch = 5;
        CHECK_MSG(run_all(&o, err) == PS_OK, "%s", err);
    }
    uint8_t *x;
    CHECK(snapshot(sh[1], 1, 3, &x) > 0);
    free(x);
    /* another shard into the same file is refused */
    opts(&o, data, sh[1]);
    o.shard_i = 2;
    o.shard_n = 3;
    o.resume = 1;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_EREFUSED);
    CHECK(strstr(err, "merge") != NULL);
    snprintf(merged, sizeof merged, "%s", t_tmp("build-merged.db"));
    PS_ASSERT(idx_open(&ix, merged, NULL) == PS_OK);
    CHECK_MSG(stats_merge_shards(ix, 3, list, err) == PS_OK, "%s", err);
    idx_close(ix);
    check_same_snapshot(full, merged, 0, "merged");
}

/* Mismatched SAEs are refused up front with both numbers; skipped images are counted. */
static void
test_refusals(void)
{
    const char *dir = t_class_folder("build-ds2");
    char data[512], out[512], sae_path[512];
    snprintf(data, sizeof data, "%s", dir);
    snprintf(out, sizeof out, "%s", t_tmp("build-r.db"));
    BuildOptions o;
    Build b;
    char err[PS_ERRLEN] = "";
    opts(&o, data, out);
    o.sae = t_data("saelens");
    CHECK_EQ_INT(build_open(&b, &o, err), PS_EUSAGE);
    CHECK(strstr(err, "16") && strstr(err, "32"));

    Sae s;
    PS_ASSERT(sae_init(&s, 32, 8, NULL) == PS_OK);
    s.hook_layer = 7;
    snprintf(sae_path, sizeof sae_path, "%s", t_tmp("build-l7.safetensors"));
    PS_ASSERT(sae_save(&s, sae_path, NULL) == PS_OK);
    opts(&o, data, out);
    o.sae = sae_path;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_EUSAGE);
    CHECK(strstr(err, "7") && strstr(err, "4 layers"));
    s.hook_layer = -2; /* PatchSAE's block_layer: from the end */
    PS_ASSERT(sae_save(&s, sae_path, NULL) == PS_OK);
    CHECK_EQ_INT(build_open(&b, &o, err), PS_OK);
    CHECK_EQ_INT(b.layer, 2);
    build_close(&b);
    CHECK(remove(out) == 0);
    o.layer = 1;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_EUSAGE);
    s.hook_layer = SAE_NO_LAYER; /* none recorded: --layer decides */
    PS_ASSERT(sae_save(&s, sae_path, NULL) == PS_OK);
    CHECK_EQ_INT(build_open(&b, &o, err), PS_OK);
    CHECK_EQ_INT(b.layer, 1);
    build_close(&b);
    sae_free(&s);

    /* an unreadable image is skipped, reported and counted */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/dog/zz_broken.png", dir);
    PS_ASSERT(t_write_file(bad, "\x89PNG\r\n\x1a\nxx", 10) == 0);
    opts(&o, data, out);
    o.force = 1;
    CHECK_EQ_INT(build_open(&b, &o, err), PS_OK);
    CHECK_EQ_INT(build_total(&b), 7);
    int done = 0;
    while (!done && build_step(&b, &done, err) == PS_OK)
        ;
    CHECK_EQ_INT(b.n_skipped, 1);
    CHECK_EQ_INT(b.n_indexed, 6);
    CHECK_EQ_INT(build_finish(&b, err), PS_OK);
    build_close(&b);
}

/* A MaPLe model next to the base: its predictions and image latents against `embed --maple`. */
static void
test_maple(void)
{
    const char *man = make_manifest("build-mp.tsv", 6);
    char data[512], out[512], emb[512], ckpt[512], classes[512], lab[512];
    snprintf(ckpt, sizeof ckpt, "%s", t_data("clip_tiny/maple/model.pth.tar-5"));
    snprintf(classes, sizeof classes, "%s", t_data("clip_tiny/maple/classes.txt"));
    /* integer labels 0..3 index the checkpoint's four class names */
    snprintf(lab, sizeof lab, "%s", t_tmp("build-mp4.tsv"));
    FILE *in = fopen(man, "r"), *o4 = fopen(lab, "w");
    PS_ASSERT(in && o4);
    char line[600];
    char paths[6][600];
    for (int i = 0; i < 6 && fgets(line, sizeof line, in); i++) {
        *strchr(line, '\t') = 0;
        snprintf(paths[i], sizeof paths[i], "%s", line);
        fprintf(o4, "%s\t%d\n", line, i % 4);
    }
    fclose(in);
    fclose(o4);
    snprintf(data, sizeof data, "%s", lab);
    snprintf(out, sizeof out, "%s", t_tmp("build-mp.db"));
    snprintf(emb, sizeof emb, "%s", t_tmp("build-mp.safetensors"));
    BuildOptions o;
    opts(&o, data, out);
    o.classes = classes;
    o.maple[0] = ckpt;
    o.n_maple = 1;
    char err[PS_ERRLEN] = "";
    CHECK_MSG(run_all(&o, err) == PS_OK, "maple build: %s", err);
    char *argv[] = { "embed", "--model", (char *)o.model, "--tokenizer", TOK, "--quiet",
                     "--maple", ckpt, "--classes", classes, "-o", emb, paths[0], paths[1],
                     paths[2], paths[3], paths[4], paths[5], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv) - 1, argv), 0);
    StFile *f;
    const float *logits = NULL, *resid = NULL;
    int64_t ls[2] = { 6, 4 }, rs[3] = { 6, 19, 32 };
    if (st_open(&f, emb, err) != PS_OK) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    CHECK(st_get_f32(f, "logits", 2, ls, &logits, NULL) == PS_OK);
    CHECK(st_get_f32(f, "resid", 3, rs, &resid, NULL) == PS_OK);
    Idx *ix;
    PS_ASSERT(idx_open_readonly(&ix, out, NULL) == PS_OK);
    IdxModel m;
    IdxSae a;
    CHECK(idx_find_model(ix, "maple", &m, NULL) == PS_OK);
    CHECK_STR(m.kind, "adapted");
    CHECK_EQ_INT(m.n_tokens, 19);
    CHECK(strstr(m.extra, "\"n_ctx\":2") != NULL);
    CHECK(idx_find_sae(ix, NULL, &a, NULL) == PS_OK);
    Sae sae;
    SaeWork w;
    SaeSparse sp = { 0 };
    PS_ASSERT(sae_load(&sae, o.sae, NULL) == PS_OK && sae_work_init(&w, &sae, NULL) == PS_OK);
    for (int i = 0; i < 6 && logits && resid; i++) {
        int64_t id = -1;
        CHECK(idx_image_at(ix, 1, i, &id, NULL) == PS_OK);
        IdxPred p[5];
        int n = 0;
        CHECK(idx_predictions(ix, id, m.id, p, 5, &n, NULL) == PS_OK);
        CHECK_EQ_INT(n, 4);
        int arg = 0;
        for (int c = 1; c < 4; c++)
            arg = logits[4 * i + c] > logits[4 * i + arg] ? c : arg;
        CHECK_EQ_INT(p[0].cls, arg);
        /* image-level activation = mean over all 19 tokens, the 2 prompt tokens included */
        PS_ASSERT(sae_encode_sparse(&sae, resid + (size_t)i * 19 * 32, 19, &sp, &w, NULL) == 0);
        float mean[96] = { 0 };
        for (int t = 0; t < 19; t++)
            for (int64_t k = sp.rowptr[t]; k < sp.rowptr[t + 1]; k++)
                mean[sp.idx[k]] += sp.val[k] / 19;
        IdxAct top[32];
        CHECK(idx_image_latents(ix, id, m.id, a.id, top, 32, &n, NULL) == PS_OK);
        for (int j = 0; j < n; j++)
            CHECK_NEAR(top[j].value, mean[top[j].latent], 1e-4);
        /* the patch blob holds CLS and the 16 patches only */
        float map[32];
        int nt = 0;
        CHECK(idx_latent_map(ix, id, m.id, a.id, top[0].latent, map, 32, &nt, NULL) == PS_OK);
        CHECK_EQ_INT(nt, 17);
    }
    sae_sparse_free(&sp);
    sae_work_free(&w);
    sae_free(&sae);
    IdxStatset *ss;
    int nss = 0;
    CHECK(idx_statsets(ix, &ss, &nss, NULL) == PS_OK);
    CHECK_EQ_INT(nss, 2);
    for (int i = 0; i < nss; i++)
        CHECK(ss[i].final && ss[i].n_images == 6);
    free(ss);
    idx_close(ix);
    st_close(f);
}

/* --ensemble: predictions follow `embed --ensemble` (80 templates, mean not renormalised). */
static void
test_ensemble(void)
{
    const char *dir = t_class_folder("build-dse");
    char data[512], out[512], emb[512], classes[512], paths[6][600];
    snprintf(data, sizeof data, "%s", dir);
    snprintf(out, sizeof out, "%s", t_tmp("build-e.db"));
    snprintf(emb, sizeof emb, "%s", t_tmp("build-e.safetensors"));
    snprintf(classes, sizeof classes, "%s", t_tmp("build-classes.txt"));
    PS_ASSERT(t_write_file(classes, "cat\ndog\n", 8) == 0);
    BuildOptions o;
    opts(&o, data, out);
    o.ensemble = 1;
    char err[PS_ERRLEN] = "";
    CHECK_MSG(run_all(&o, err) == PS_OK, "build: %s", err);
    for (int i = 0; i < 6; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s/%s", dir, i < 3 ? "cat" : "dog", imgs[i]);
    char *argv[] = { "embed", "--model", (char *)o.model, "--tokenizer", TOK, "--quiet",
                     "--classes", classes, "--ensemble", "-o", emb, paths[0], paths[1], paths[2],
                     paths[3], paths[4], paths[5], NULL };
    CHECK_EQ_INT(cmd_embed((int)LEN(argv) - 1, argv), 0);
    StFile *f;
    const float *logits = NULL;
    int64_t ls[2] = { 6, 2 };
    PS_ASSERT(st_open(&f, emb, NULL) == PS_OK);
    CHECK(st_get_f32(f, "logits", 2, ls, &logits, NULL) == PS_OK);
    Idx *ix;
    PS_ASSERT(idx_open_readonly(&ix, out, NULL) == PS_OK);
    IdxModel m;
    CHECK(idx_find_model(ix, "clip", &m, NULL) == PS_OK);
    CHECK(strstr(m.extra, "imagenet-80") != NULL);
    for (int i = 0; i < 6 && logits; i++) {
        int64_t id;
        IdxPred p[5];
        int n = 0;
        CHECK(idx_image_at(ix, 1, i, &id, NULL) == PS_OK);
        CHECK(idx_predictions(ix, id, m.id, p, 5, &n, NULL) == PS_OK);
        const float *l = logits + 2 * i;
        int arg = l[1] > l[0];
        CHECK_EQ_INT(p[0].cls, arg);
        CHECK_NEAR(p[0].prob, 1 / (1 + exp((double)l[1 - arg] - l[arg])), 1e-4);
    }
    idx_close(ix);
    st_close(f);
}

void
test_build(void)
{
    char n[64];
    build_dataset_name("fashion-mnist:test", n, sizeof n);
    CHECK_STR(n, "fashion-mnist-test");
    build_dataset_name("/data/imagenet/val/", n, sizeof n);
    CHECK_STR(n, "val");
    build_dataset_name("x/list.tsv", n, sizeof n);
    CHECK_STR(n, "list");
    build_dataset_name("/u/t10k-images-idx3-ubyte.gz", n, sizeof n);
    CHECK_STR(n, "t10k");
    build_dataset_name(".hidden", n, sizeof n);
    CHECK_STR(n, ".hidden");
    test_predictions_and_rows();
    test_resume_and_shards();
    test_refusals();
    test_maple();
    test_ensemble();
}
