/* SPDX-License-Identifier: MIT */
/*
 * idx_synth.c - a synthetic index in the real format (idx.h idx_synth), for
 * tests and for bench/bench_idx.sh: random sparse SAE activations with some
 * class structure (each class has a few latents that fire strongly on a
 * blob of patches), pushed through the same path a real build takes: patch
 * blobs, image-level top latents and the statistics accumulator (stats.h),
 * finalised, then the diff groups of base against adapted.
 *
 * Thumbnails are real JPEGs (libjpeg, quality 85) of a smooth pattern plus
 * noise, 64 distinct ones reused cyclically to save time; their size is
 * typical of a 224-pixel natural-image crop.
 */
#include "idx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "ps.h"
#include "stats.h"

void
idx_synth_init(IdxSynth *s)
{
    memset(s, 0, sizeof *s);
    s->n_images = 100;
    s->d_sae = 512;
    s->grid = 4;
    s->l0 = 20;
    s->k_blob = IDX_BLOB_K;
    s->k_top = IDX_TOPK;
    s->n_classes = 10;
    s->n_models = 2;
    s->thumb = 32;
    s->seed = 1;
}

static uint64_t
rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static double
unif(uint64_t *x)
{
    return (double)(rnd(x) >> 11) * (1.0 / 9007199254740992.0);
}

/* Encodes a size x size RGB pattern as JPEG into *out (malloc'd by libjpeg). */
static void
make_jpeg(int size, int seed, unsigned char **out, unsigned long *n)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    *out = NULL;
    *n = 0;
    jpeg_mem_dest(&c, out, n);
    c.image_width = (JDIMENSION)size;
    c.image_height = (JDIMENSION)size;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 85, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = xmalloc((size_t)size * 3);
    uint64_t r = 0x9E3779B97F4A7C15ull ^ (uint64_t)(seed + 1);
    double fx = 2 + seed % 5, fy = 1 + seed % 3;
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < size; x++) {
            double u = (double)x / size, v = (double)y / size;
            double a = 0.5 + 0.4 * sin(6.28 * (fx * u + 0.3 * v)) * cos(6.28 * fy * v);
            for (int ch = 0; ch < 3; ch++) {
                double val = 255 * a * (0.6 + 0.4 * ((seed >> ch) & 1)) + 40 * (unif(&r) - 0.5);
                row[3 * x + ch] = (unsigned char)(val < 0 ? 0 : val > 255 ? 255 : val);
            }
        }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
}

/* One image's random activations in CSR (at most 3 l0 + 12 entries a token). */
static void
gen_acts(const IdxSynth *s, int model, int label, uint64_t *r, int64_t *rowptr, int32_t *idx,
         float *val)
{
    const int T = 1 + s->grid * s->grid, S = s->d_sae;
    int n = 0;
    int cx = (int)(rnd(r) % (unsigned)s->grid), cy = (int)(rnd(r) % (unsigned)s->grid);
    int gap = MAX(1, 2 * S / MAX(s->l0, 1));
    for (int t = 0; t < T; t++) {
        rowptr[t] = n;
        int start = n;
        int most = MIN(S, 3 * MAX(s->l0, 1) + 8);
        for (int64_t x = (int64_t)(rnd(r) % (unsigned)gap); x < S && n - start < most;
             x += 1 + (int64_t)(rnd(r) % (unsigned)gap)) {
            idx[n] = (int32_t)x;
            val[n] = (float)(-log(unif(r) + 1e-12) * 0.15);
            n++;
        }
        /* class latents: 4 per class (the adapted model shifts one), on a patch blob */
        int px = t ? (t - 1) % s->grid : cx, py = t ? (t - 1) / s->grid : cy;
        int near = abs(px - cx) + abs(py - cy) <= s->grid / 3 + 1;
        if (label >= 0 && near) {
            for (int j = 0; j < 4; j++) {
                int32_t cl = (int32_t)(((int64_t)label * 4 + j + (model && j == 3)) % S);
                float cv = (float)(0.8 + 2.0 * unif(r));
                int k = start;
                while (k < n && idx[k] < cl)
                    k++;
                if (k < n && idx[k] == cl) {
                    val[k] += cv;
                    continue;
                }
                memmove(idx + k + 1, idx + k, (size_t)(n - k) * sizeof *idx);
                memmove(val + k + 1, val + k, (size_t)(n - k) * sizeof *val);
                idx[k] = cl;
                val[k] = cv;
                n++;
            }
        }
    }
    rowptr[T] = n;
}

int
idx_synth(Idx *ix, const IdxSynth *s, void (*progress)(int, int), char *err)
{
    const int T = 1 + s->grid * s->grid, S = s->d_sae, NM = s->n_models == 2 ? 2 : 1;
    if (s->n_images < 1 || S < 8 || s->grid < 1 || T > 65535 || s->n_classes < 1)
        return ps_seterr(err, PS_EUSAGE, "idx_synth: bad parameters");
    int rc = idx_begin(ix, err);
    if (rc)
        return rc;
    IdxModel m[2];
    int64_t model[2], ss[2];
    for (int i = 0; i < NM; i++) {
        memset(&m[i], 0, sizeof m[i]);
        snprintf(m[i].name, sizeof m[i].name, i ? "adapted" : "base");
        snprintf(m[i].kind, sizeof m[i].kind, i ? "adapted" : "base");
        snprintf(m[i].path, sizeof m[i].path, "synthetic");
        snprintf(m[i].sha256, sizeof m[i].sha256, "%064d", i);
        m[i].n_tokens = T;
        m[i].d_model = 768;
        m[i].hook_layer = 10;
        if (!rc)
            rc = idx_add_model(ix, &m[i], err);
        model[i] = m[i].id;
    }
    IdxSae a;
    memset(&a, 0, sizeof a);
    snprintf(a.path, sizeof a.path, "synthetic-sae");
    a.d_in = 768;
    a.d_sae = S;
    a.hook_layer = 10;
    snprintf(a.trained_on, sizeof a.trained_on, "base");
    if (!rc)
        rc = idx_add_sae(ix, &a, err);
    IdxDataset d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "synthetic");
    snprintf(d.spec, sizeof d.spec, "idx_synth seed %u", s->seed);
    d.n_images = s->n_images;
    d.n_classes = s->n_classes;
    if (!rc)
        rc = idx_add_dataset(ix, &d, err);
    char **names = xcalloc((size_t)s->n_classes, sizeof *names);
    for (int c = 0; c < s->n_classes; c++) {
        names[c] = xmalloc(32);
        snprintf(names[c], 32, "class %d", c);
    }
    if (!rc)
        rc = idx_add_classes(ix, d.id, s->n_classes, (const char *const *)names, err);
    for (int c = 0; c < s->n_classes; c++)
        free(names[c]);
    free(names);
    Stats st[2];
    memset(st, 0, sizeof st);
    StatsConfig cfg;
    stats_config_init(&cfg, S, s->n_classes);
    cfg.k_top = s->k_top;
    for (int i = 0; i < NM && !rc; i++) {
        rc = stats_init(&st[i], &cfg, err);
        if (!rc)
            rc = idx_add_statset(ix, model[i], d.id, a.id, cfg.k_top, cfg.tau, &ss[i], err);
    }
    /* scratch: worst case every latent on every token plus the class latents */
    size_t cap = (size_t)T * (size_t)(MIN(S, 3 * MAX(s->l0, 1) + 8) + 4);
    int64_t *rowptr = xmalloc((size_t)(T + 1) * sizeof *rowptr);
    int32_t *idx = xmalloc(cap * sizeof *idx);
    float *val = xmalloc(cap * sizeof *val);
    uint8_t *blob = xmalloc(idx_blob_bound(T, s->k_blob, S));
    unsigned char *jpg[64] = { 0 };
    unsigned long jn[64] = { 0 };
    if (s->thumb > 0)
        for (int j = 0; j < 64; j++)
            make_jpeg(s->thumb, j, &jpg[j], &jn[j]);
    uint64_t r;
    int sn = s->shard_n > 0 ? s->shard_n : 1, si = s->shard_i;
    int64_t done = 0;
    for (int i = 0; i < s->n_images && !rc; i++) {
        if (i % sn != si)
            continue;
        done++;
        r = (0x853C49E6748FEA9Bull ^ ((uint64_t)s->seed * 0x9E3779B97F4A7C15ull) ^
             ((uint64_t)(i + 1) * 0xBF58476D1CE4E5B9ull)) | 1;
        for (int w = 0; w < 4; w++)
            rnd(&r);
        int label = (int)(rnd(&r) % (unsigned)s->n_classes);
        IdxImage im;
        memset(&im, 0, sizeof im);
        im.dataset_id = d.id;
        im.pos = i;
        im.label = label;
        im.grid = s->grid;
        snprintf(im.path, sizeof im.path, "synthetic/%06d.jpg", i);
        rc = idx_add_image(ix, &im, s->thumb > 0 ? jpg[i % 64] : NULL, jn[i % 64], s->thumb, err);
        for (int mi = 0; mi < NM && !rc; mi++) {
            uint64_t rr = r ^ (uint64_t)(mi + 1) * 0xD1B54A32D192ED03ull;
            gen_acts(s, mi, label, &rr, rowptr, idx, val);
            IdxAct top[32];
            int nt;
            rc = stats_add_image(&st[mi], i, label, T, rowptr, idx, val, 32, top, &nt, err);
            size_t bn;
            if (!rc)
                rc = idx_blob_encode(T, rowptr, idx, val, s->k_blob, S, blob, &bn, err);
            if (!rc)
                rc = idx_put_patches(ix, im.id, model[mi], a.id, blob, bn, err);
            if (!rc)
                rc = idx_put_image_latents(ix, im.id, model[mi], a.id, nt, top, err);
            int cls[5];
            float prob[5];
            float left = 1;
            for (int j = 0; j < 5; j++) {
                cls[j] = j == 0 && unif(&rr) < 0.7 ? label
                                                   : (int)(rnd(&rr) % (unsigned)s->n_classes);
                prob[j] = left * (float)(0.5 + 0.4 * unif(&rr));
                left -= prob[j];
            }
            if (!rc)
                rc = idx_put_predictions(ix, im.id, model[mi], 5, cls, prob, err);
        }
        if (!rc && (i + 1) % 500 == 0) {
            rc = idx_commit(ix, err);
            if (!rc)
                rc = idx_begin(ix, err);
        }
        if (progress && (i + 1) % 1000 == 0)
            progress(i + 1, s->n_images);
    }
    for (int i = 0; i < NM && !rc; i++) {
        rc = stats_finalise(&st[i], ix, ss[i], err);
        uint8_t *snap = NULL;
        size_t snap_n = 0;
        if (!rc)
            rc = stats_save(&st[i], &snap, &snap_n, err);
        IdxProgress p = { model[i], d.id, a.id, si, sn, done, done, 1 };
        if (!rc)
            rc = idx_put_progress(ix, &p, snap, snap_n, err);
        free(snap);
    }
    if (!rc && NM == 2)
        rc = idx_diff_compute(ix, ss[0], ss[1], 50, 100, err);
    if (!rc)
        rc = idx_commit(ix, err);
    else
        idx_rollback(ix);
    for (int i = 0; i < NM; i++)
        stats_free(&st[i]);
    for (int j = 0; j < 64; j++)
        free(jpg[j]);
    free(rowptr);
    free(idx);
    free(val);
    free(blob);
    return rc;
}
