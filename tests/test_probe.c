/* SPDX-License-Identifier: MIT */
/*
 * test_probe.c - probing images against an index (probe.h). Indexes are
 * built with build.h on the tiny CLIP + MaPLe fixtures and the tiny SAE;
 * then every indexed image is probed and compared with its rows: built with
 * batch 1, every number must be equal bit for bit (predictions, the 32
 * image-level latents, the PSP1 blob bytes, the thumbnail JPEG bytes); built
 * in batches of 4, within float rounding. Also: the grouping rules on
 * hand-made sets, the noise filter against latent_stats, a changed weights
 * file (warning naming both digests, refusal, --force), missing files and
 * overrides, and probe_save (rows equal to the result, no duplicates).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "idx.h"
#include "img.h"
#include "probe.h"
#include "ps.h"
#include "sha256.h"
#include "test.h"

#define TOK t_shared("bpe_simple_vocab_16e6.txt.gz")

static int
build_index(const char *data, const char *sae, int batch, int maple, const char *out, char *err)
{
    static char model[512], mp[512];
    snprintf(model, sizeof model, "%s", t_data("clip_tiny/hf"));
    snprintf(mp, sizeof mp, "%s", t_data("clip_tiny/maple/model.pth.tar-5"));
    BuildOptions o;
    build_options_init(&o);
    o.model = model;
    o.tokenizer = TOK;
    o.sae = sae;
    o.data = data;
    o.out = out;
    o.batch = batch;
    o.force = 1;
    if (maple) {
        o.maple[0] = mp;
        o.n_maple = 1;
    }
    Build b;
    int rc = build_open(&b, &o, err), done = 0;
    while (!rc && !done)
        rc = build_step(&b, &done, err);
    if (!rc)
        rc = build_finish(&b, err);
    build_close(&b);
    return rc;
}

typedef struct Warns {
    int n;
    char last[2 * PS_ERRLEN];
} Warns;

static void
collect(void *ctx, const char *msg)
{
    Warns *w = ctx;
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

/* Relative difference, 0 when both are 0. */
static double
rel(double a, double b)
{
    double m = fmax(fabs(a), fabs(b));
    return m > 0 ? fabs(a - b) / m : 0;
}

/*
 * Probes every image of ix's dataset and compares it with its rows. exact:
 * bit for bit; else within float rounding (values) and one code step (blobs).
 */
static void
compare_index(Idx *ix, Probe *p, int exact, const char *what)
{
    ProbeResult r;
    memset(&r, 0, sizeof r);
    char err[PS_ERRLEN];
    int n_img = 0, n_pred = 0, n_lat = 0, n_tok = 0, bad_pred = 0, bad_lat = 0, bad_blob = 0,
        bad_thumb = 0, blob_equal = 0;
    double worst = 0;
    for (int64_t pos = 0; pos < 6; pos++) {
        int64_t id;
        IdxImage im;
        if (idx_image_at(ix, p->dataset_id, pos, &id, err) || idx_image(ix, id, &im, err)) {
            CHECK_MSG(0, "%s: image %lld: %s", what, (long long)pos, err);
            continue;
        }
        int rc = probe_image(p, im.path, &r, err);
        CHECK_MSG(rc == PS_OK, "%s: probe %s: %s", what, im.path, err);
        if (rc)
            continue;
        n_img++;
        /* thumbnail: the crop, JPEG-encoded as the builder did */
        void *jpg;
        size_t jn;
        int size;
        unsigned char *mine;
        size_t mn;
        CHECK(idx_thumb(ix, id, &jpg, &jn, &size, err) == PS_OK);
        CHECK(img_encode_jpeg(r.crop, r.S, r.S, PROBE_THUMB_QUALITY, &mine, &mn, err) == PS_OK);
        if (exact)
            bad_thumb += !(size == r.S && jn == mn && !memcmp(jpg, mine, jn));
        free(jpg);
        free(mine);
        for (int m = 0; m < p->n_models; m++) {
            const ProbeModelResult *x = &r.m[m];
            int64_t mid = p->models[m].rec.id, sid = p->sae_rec.id;
            IdxPred pr[5];
            int np = 0;
            CHECK(idx_predictions(ix, id, mid, pr, 5, &np, err) == PS_OK);
            CHECK_EQ_INT(np, x->n_pred);
            for (int k = 0; k < np && k < x->n_pred; k++) {
                n_pred++;
                if (exact)
                    bad_pred += pr[k].cls != x->pred_cls[k] || pr[k].prob != x->pred_prob[k];
                else
                    bad_pred += pr[k].cls != x->pred_cls[k] ||
                                rel(pr[k].prob, x->pred_prob[k]) > 1e-4;
            }
            IdxAct il[PROBE_IMAGE_TOP];
            int nl = 0;
            CHECK(idx_image_latents(ix, id, mid, sid, il, PROBE_IMAGE_TOP, &nl, err) == PS_OK);
            CHECK_EQ_INT(nl, x->n_top);
            for (int k = 0; k < nl && k < x->n_top; k++) {
                n_lat++;
                if (exact) {
                    bad_lat += il[k].latent != x->top[k].latent || il[k].value != x->top[k].value;
                } else {
                    /* near ties may swap ranks: compare by latent with the dense vector */
                    double d = rel(il[k].value, x->image[il[k].latent]);
                    worst = fmax(worst, d);
                    bad_lat += d > 1e-4;
                }
                /* the dense vector agrees with the top list */
                bad_lat += x->image[x->top[k].latent] != x->top[k].value;
            }
            uint8_t *blob;
            size_t bn;
            CHECK(idx_patch_blob(ix, id, mid, sid, &blob, &bn, err) == PS_OK);
            int same = blob && bn == x->blob_n && !memcmp(blob, x->blob, bn);
            blob_equal += same;
            if (exact) {
                bad_blob += !same;
            } else if (blob) {
                /* every stored entry within a quantisation step of the probe's exact value */
                for (int t = 0; t < p->blob_tok; t++) {
                    IdxAct e[256];
                    int ne = 0;
                    if (idx_blob_token(blob, bn, t, e, 256, &ne, err)) {
                        bad_blob++;
                        continue;
                    }
                    for (int j = 0; j < ne; j++) {
                        n_tok++;
                        float v = 0;
                        const SaeSparse *sp = &x->sp;
                        for (int64_t q = sp->rowptr[t]; q < sp->rowptr[t + 1]; q++)
                            if (sp->idx[q] == e[j].latent)
                                v = sp->val[q];
                        /* one log step of the blob's range, plus the floor */
                        bad_blob += !(v > 0) || rel(v, e[j].value) > 0.05;
                    }
                }
            }
            free(blob);
        }
    }
    CHECK_EQ_INT(n_img, 6);
    CHECK_MSG(n_pred >= 6 * p->n_models * 2, "%s: %d predictions compared", what, n_pred);
    CHECK_MSG(n_lat >= 6 * p->n_models * 10, "%s: %d image latents compared", what, n_lat);
    CHECK_MSG(bad_pred == 0, "%s: %d of %d predictions differ", what, bad_pred, n_pred);
    CHECK_MSG(bad_lat == 0, "%s: %d of %d image latents differ", what, bad_lat, n_lat);
    CHECK_MSG(bad_blob == 0, "%s: %d patch blobs / entries differ (%d blobs byte-equal)", what,
              bad_blob, blob_equal);
    CHECK_MSG(bad_thumb == 0, "%s: %d thumbnails differ", what, bad_thumb);
    if (!exact && getenv("PS_VERBOSE"))
        fprintf(stderr, "%s: worst image-level rel diff %.3g, %d/%d blobs byte-equal, %d blob "
                "entries checked\n", what, worst, blob_equal, 6 * p->n_models, n_tok);
    probe_result_free(&r);
}

static void
test_group_rules(void)
{
    ProbeGroups g;
    /* base {9, 3, 7, 1, 5}, adapted {3, 8, 9, 2, 6}: common 9 and 3 */
    IdxAct b[5] = { { 9, 0.9f }, { 3, 0.8f }, { 7, 0.7f }, { 1, 0.6f }, { 5, 0.5f } };
    IdxAct a[5] = { { 3, 0.95f }, { 8, 0.85f }, { 9, 0.5f }, { 2, 0.4f }, { 6, 0.3f } };
    probe_group(b, 5, a, 5, &g);
    CHECK_EQ_INT(g.n_top[0], 5);
    CHECK_EQ_INT(g.top[1][0].latent, 3);
    CHECK_EQ_INT(g.n_common, 2);
    CHECK_EQ_INT(g.common[0].latent, 3); /* max(0.8, 0.95) beats max(0.9, 0.5) */
    CHECK(g.common[0].value == 0.95f);
    CHECK(g.common_v[0][0] == 0.8f && g.common_v[0][1] == 0.95f);
    CHECK_EQ_INT(g.common[1].latent, 9);
    CHECK_EQ_INT(g.n_only[0], 3); /* 7 5 1: latent descending, not by value */
    CHECK(g.only[0][0].latent == 7 && g.only[0][1].latent == 5 && g.only[0][2].latent == 1);
    CHECK_EQ_INT(g.n_only[1], 3); /* 8 6 2 */
    CHECK(g.only[1][0].latent == 8 && g.only[1][1].latent == 6 && g.only[1][2].latent == 2);
    /* union sets of 10, disjoint: each only-group capped at 5, highest latents kept */
    IdxAct u[10], v[10];
    for (int i = 0; i < 10; i++) {
        u[i] = (IdxAct){ i, 1.0f - i * 0.05f };
        v[i] = (IdxAct){ 100 + i, 1.0f - i * 0.05f };
    }
    probe_group(u, 10, v, 10, &g);
    CHECK_EQ_INT(g.n_common, 0);
    CHECK_EQ_INT(g.n_only[0], 5);
    CHECK_EQ_INT(g.only[0][0].latent, 9);
    CHECK_EQ_INT(g.only[0][4].latent, 5);
    CHECK_EQ_INT(g.only[1][0].latent, 109);
    CHECK_EQ_INT(g.n_top[0], 5);
    CHECK_EQ_INT(g.top[0][4].latent, 4);
    /* identical sets: all common, ties by latent ascending */
    IdxAct t[3] = { { 4, 0.5f }, { 2, 0.5f }, { 8, 0.1f } };
    probe_group(t, 3, t, 3, &g);
    CHECK_EQ_INT(g.n_common, 3);
    CHECK(g.common[0].latent == 2 && g.common[1].latent == 4 && g.common[2].latent == 8);
    CHECK(g.n_only[0] == 0 && g.n_only[1] == 0);
    probe_group(NULL, 0, NULL, 0, &g);
    CHECK(g.n_common == 0 && g.n_top[0] == 0);
}

/* Noise filter and groups on a real result. */
static void
check_groups(Idx *ix, Probe *p, const char *image)
{
    ProbeResult r;
    memset(&r, 0, sizeof r);
    char err[PS_ERRLEN];
    CHECK(probe_image(p, image, &r, err) == PS_OK);
    /* base_mean is the base statset's mean_act */
    int n_mean = 0, noisy = 0;
    for (int32_t s = 0; s < p->sae.d_sae; s++) {
        IdxLatent l;
        if (idx_latent(ix, p->models[0].statset, s, &l, err) == PS_OK) {
            n_mean += isnan(l.mean_act) ? isnan(p->base_mean[s]) : p->base_mean[s] == (float)l.mean_act;
            noisy += probe_noisy(p, s, PROBE_NOISE);
        }
    }
    CHECK_EQ_INT(n_mean, p->sae.d_sae);
    CHECK_MSG(noisy > 0 && noisy < p->sae.d_sae, "%d noisy latents", noisy);
    CHECK(!probe_noisy(p, 0, 0)); /* threshold 0: filter off */
    ProbeGroups g, f;
    CHECK(probe_groups(p, &r, 1, PROBE_IMAGE, 0, 0, &g, err) == PS_OK);
    CHECK(probe_groups(p, &r, 1, PROBE_IMAGE, 0, PROBE_NOISE, &f, err) == PS_OK);
    /* unfiltered image-level top-5 = the first five of the index order */
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(g.n_top[k], MIN(5, r.m[k].n_top));
        for (int i = 0; i < g.n_top[k]; i++)
            CHECK(g.top[k][i].latent == r.m[k].top[i].latent);
        for (int i = 0; i < f.n_top[k]; i++)
            CHECK(!probe_noisy(p, f.top[k][i].latent, PROBE_NOISE));
    }
    int hidden = 0;
    for (int i = 0; i < g.n_top[0]; i++)
        hidden += probe_noisy(p, g.top[0][i].latent, PROBE_NOISE);
    CHECK_MSG(hidden > 0, "the filter should hide something in this image's top-5");
    /* groups partition: every latent of both top sets is common or in one only-group */
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < f.n_top[k]; i++) {
            int32_t s = f.top[k][i].latent;
            int in = 0;
            for (int j = 0; j < f.n_common; j++)
                in += f.common[j].latent == s;
            for (int j = 0; j < f.n_only[k]; j++)
                in += f.only[k][j].latent == s;
            CHECK_EQ_INT(in, 1);
        }
    /* a patch: its own top-5, and the demo's union (patch values first) */
    const int32_t *pi;
    const float *pv;
    int pn;
    probe_patch(&r, 0, 1, 2, &pi, &pv, &pn);
    const SaeSparse *sp = &r.m[0].sp;
    CHECK(pi == sp->idx + sp->rowptr[1 + 1 * r.G + 2]);
    CHECK_EQ_INT(pn, sp->rowptr[2 + 1 * r.G + 2] - sp->rowptr[1 + 1 * r.G + 2]);
    int patch = 1 * r.G + 2;
    ProbeGroups po, pu;
    CHECK(probe_groups(p, &r, 1, patch, PROBE_PATCH_ONLY, 0, &po, err) == PS_OK);
    CHECK(probe_groups(p, &r, 1, patch, 0, 0, &pu, err) == PS_OK);
    float best = 0;
    int32_t bs = -1;
    for (int j = 0; j < pn; j++)
        if (pv[j] > best)
            best = pv[j], bs = pi[j];
    CHECK(po.n_top[0] > 0 && po.top[0][0].latent == bs && po.top[0][0].value == best);
    /* union: every patch top and every image top latent is grouped somewhere */
    for (int k = 0; k < 2; k++) {
        const IdxAct *lists[2] = { po.top[k], g.top[k] };
        int ns[2] = { po.n_top[k], g.n_top[k] };
        for (int l = 0; l < 2; l++)
            for (int i = 0; i < ns[l]; i++) {
                int32_t s = lists[l][i].latent;
                int in = 0;
                for (int j = 0; j < pu.n_common; j++)
                    in += pu.common[j].latent == s;
                for (int j = 0; j < pu.n_only[k]; j++)
                    in += pu.only[k][j].latent == s;
                /* common and only lists are capped at 5: count only when there was room */
                if (pu.n_common < PROBE_TOP && pu.n_only[k] < PROBE_TOP)
                    CHECK_MSG(in == 1, "latent %d of model %d in %d groups", s, k, in);
            }
    }
    CHECK(probe_groups(p, &r, 2, PROBE_IMAGE, 0, 0, &g, err) == PS_EUSAGE);
    CHECK(probe_groups(p, &r, 1, r.G * r.G, 0, 0, &g, err) == PS_EUSAGE);
    probe_result_free(&r);
}

static void
check_save(const char *db, Probe *p0, const char *img_a, const char *img_b)
{
    (void)p0;
    char err[PS_ERRLEN];
    Idx *ix;
    CHECK(idx_open(&ix, db, err) == PS_OK);
    ProbeOptions o;
    probe_options_init(&o);
    Probe p;
    CHECK(probe_open(&p, ix, &o, err) == PS_OK);
    ProbeResult r;
    memset(&r, 0, sizeof r);
    int64_t id1 = -1, id2 = -1, id3 = -1;
    CHECK(probe_image(&p, img_a, &r, err) == PS_OK);
    CHECK(probe_save(&p, &r, NULL, &id1, err) == PS_OK);
    CHECK(probe_save(&p, &r, NULL, &id2, err) == PS_OK); /* same path: replaced */
    CHECK_EQ_INT(id1, id2);
    IdxDataset d;
    CHECK(idx_find_dataset(ix, PROBE_DATASET, &d, err) == PS_OK);
    CHECK_EQ_INT(d.n_images, 1);
    CHECK_EQ_INT(d.n_classes, 2);
    char name[64];
    CHECK(idx_class_name(ix, d.id, 1, name, sizeof name, err) == PS_OK);
    CHECK_STR(name, "dog");
    for (int m = 0; m < p.n_models; m++) {
        IdxPred pr[5];
        int np;
        CHECK(idx_predictions(ix, id1, p.models[m].rec.id, pr, 5, &np, err) == PS_OK);
        CHECK_EQ_INT(np, r.m[m].n_pred);
        CHECK(pr[0].cls == r.m[m].pred_cls[0] && pr[0].prob == r.m[m].pred_prob[0]);
        IdxAct il[PROBE_IMAGE_TOP];
        int nl;
        CHECK(idx_image_latents(ix, id1, p.models[m].rec.id, p.sae_rec.id, il, PROBE_IMAGE_TOP,
                                &nl, err) == PS_OK);
        CHECK_EQ_INT(nl, r.m[m].n_top);
        CHECK(nl > 0 && !memcmp(il, r.m[m].top, (size_t)nl * sizeof *il));
        uint8_t *blob;
        size_t bn;
        CHECK(idx_patch_blob(ix, id1, p.models[m].rec.id, p.sae_rec.id, &blob, &bn, err) ==
              PS_OK);
        CHECK(blob && bn == r.m[m].blob_n && !memcmp(blob, r.m[m].blob, bn));
        free(blob);
    }
    IdxImage im;
    CHECK(idx_image(ix, id1, &im, err) == PS_OK);
    CHECK_STR(im.path, img_a);
    CHECK_EQ_INT(im.label, -1);
    CHECK_EQ_INT(im.thumb_size, r.S);
    CHECK(probe_image(&p, img_b, &r, err) == PS_OK);
    CHECK(probe_save(&p, &r, NULL, &id3, err) == PS_OK);
    CHECK(id3 != id1);
    CHECK(idx_find_dataset(ix, PROBE_DATASET, &d, err) == PS_OK);
    CHECK_EQ_INT(d.n_images, 2);
    /* the statistics of the real dataset are untouched: the probe dataset has none */
    IdxStatset ss;
    CHECK(idx_find_statset(ix, NULL, PROBE_DATASET, &ss, err) == PS_EUSAGE);
    probe_result_free(&r);
    probe_close(&p);
    idx_close(ix);
}

static void
check_checksums(const char *folder)
{
    char err[PS_ERRLEN];
    /* an index built from a copy of the SAE, then the copy changed in place (same size) */
    const char *sae = t_tmp("probe_sae.safetensors"), *db = t_tmp("probe_sum.db");
    t_copy_file(t_data("index/sae_tiny.safetensors"), sae);
    CHECK(build_index(folder, sae, 8, 0, db, err) == PS_OK);
    Idx *ix;
    CHECK(idx_open_readonly(&ix, db, err) == PS_OK);
    Warns w = { 0, "" };
    ProbeOptions o;
    probe_options_init(&o);
    o.warn = collect;
    o.warn_ctx = &w;
    Probe p;
    CHECK(probe_open(&p, ix, &o, err) == PS_OK); /* unchanged: fine, no warning */
    CHECK_EQ_INT(w.n, 0);
    CHECK_EQ_INT(p.n_models, 1);
    probe_close(&p);
    char old_sha[65], new_sha[65];
    CHECK(sha256_file(sae, old_sha, NULL, err) == PS_OK);
    char *buf;
    size_t n;
    PS_ASSERT(ps_read_file(sae, 1 << 24, &buf, &n, NULL) == PS_OK);
    buf[n - 3] ^= 0x10; /* a bit of the last float */
    PS_ASSERT(t_write_file(sae, buf, n) == 0);
    free(buf);
    CHECK(sha256_file(sae, new_sha, NULL, err) == PS_OK);
    int rc = probe_open(&p, ix, &o, err);
    CHECK_EQ_INT(rc, PS_EREFUSED);
    CHECK_MSG(strstr(err, old_sha) && strstr(err, new_sha), "error names both digests: %s", err);
    CHECK_MSG(w.n == 1 && strstr(w.last, old_sha) && strstr(w.last, new_sha),
              "warning names both digests: %s", w.last);
    o.force = 1;
    CHECK(probe_open(&p, ix, &o, err) == PS_OK);
    CHECK_EQ_INT(w.n, 2);
    CHECK(strstr(w.last, "force") != NULL);
    probe_close(&p);
    o.force = 0;
    /* the original file as an override: digests agree */
    o.sae = t_data("index/sae_tiny.safetensors");
    CHECK(probe_open(&p, ix, &o, err) == PS_OK);
    CHECK_EQ_INT(w.n, 2);
    probe_close(&p);
    /* a different size is a mismatch too */
    PS_ASSERT(t_write_file(sae, "x", 1) == 0);
    o.sae = NULL;
    CHECK_EQ_INT(probe_open(&p, ix, &o, err), PS_EREFUSED);
    CHECK_MSG(strstr(err, "1 bytes") != NULL, "names the sizes: %s", err);
    /* gone: names what the index records */
    remove(sae);
    CHECK_EQ_INT(probe_open(&p, ix, &o, err), PS_EUSAGE);
    CHECK_MSG(strstr(err, "probe_sae.safetensors") != NULL, "names the path: %s", err);
    o.sae = t_tmp("nowhere.safetensors");
    CHECK_EQ_INT(probe_open(&p, ix, &o, err), PS_EUSAGE);
    /* a model override that does not match the record */
    o.sae = t_data("index/sae_tiny.safetensors");
    o.model = t_data("clip_tiny/openai.safetensors");
    CHECK_EQ_INT(probe_open(&p, ix, &o, err), PS_EREFUSED);
    /* an index without a MaPLe model refuses a MaPLe override */
    o.model = NULL;
    o.maple[0] = t_data("clip_tiny/maple/model.pth.tar-5");
    o.n_maple = 1;
    CHECK_EQ_INT(probe_open(&p, ix, &o, err), PS_EUSAGE);
    probe_close(&p); /* closed twice: fine */
    idx_close(ix);
}

/* Records an index should not hold: each is a clear error, never a crash. */
static void
check_hostile(const char *db1)
{
    static const struct {
        const char *sql;
        int rc;
        const char *msg;
    } cases[] = {
        { "UPDATE meta SET value = '999' WHERE key = 'k_per_token'", PS_EFORMAT, "k_per_token" },
        { "UPDATE models SET hook_layer = 77 WHERE kind = 'base'", PS_EFORMAT, "hook layer 77" },
        { "UPDATE models SET n_tokens = 5 WHERE kind = 'adapted'", PS_EUSAGE, "records 5" },
        { "UPDATE models SET extra = '{\"prompts\":\"rm -rf\"}' WHERE kind = 'base'", PS_EFORMAT,
          "unknown prompts" },
        { "UPDATE models SET extra = 'not json' WHERE kind = 'base'", PS_EIO, "no tokenizer" },
        { "UPDATE models SET kind = 'adapted' WHERE kind = 'base'", PS_EUSAGE, "no base model" },
        { "UPDATE saes SET d_sae = 7", PS_EUSAGE, "96" },
        { "UPDATE models SET resolved = '', path = '/nonexistent/m' WHERE kind = 'base'",
          PS_EUSAGE, "/nonexistent/m" },
        { "DELETE FROM saes", PS_EUSAGE, "no SAE" },
    };
    char err[PS_ERRLEN];
    const char *db = t_tmp("probe_hostile.db");
    for (size_t i = 0; i < LEN(cases); i++) {
        t_copy_file(db1, db);
        Idx *ix;
        CHECK(idx_open(&ix, db, err) == PS_OK);
        CHECK(idx_exec(ix, cases[i].sql, err) == PS_OK);
        ProbeOptions o;
        probe_options_init(&o);
        Probe p;
        int rc = probe_open(&p, ix, &o, err);
        CHECK_MSG(rc == cases[i].rc, "%s: rc %d, expected %d (%s)", cases[i].sql, rc,
                  cases[i].rc, rc ? err : "");
        if (cases[i].msg && rc)
            CHECK_MSG(strstr(err, cases[i].msg) != NULL, "%s: message '%s' lacks '%s'",
                      cases[i].sql, err, cases[i].msg);
        probe_close(&p);
        idx_close(ix);
    }
}

void
test_probe(void)
{
    char err[PS_ERRLEN];
    test_group_rules();
    const char *folder = t_class_folder("probe_ds");
    char sae[512];
    snprintf(sae, sizeof sae, "%s", t_data("index/sae_tiny.safetensors"));
    const char *db1 = t_tmp("probe_b1.db"), *db4 = t_tmp("probe_b4.db");
    int rc = build_index(folder, sae, 1, 1, db1, err);
    CHECK_MSG(rc == PS_OK, "build: %s", err);
    rc = build_index(folder, sae, 4, 1, db4, err);
    CHECK_MSG(rc == PS_OK, "build: %s", err);
    if (rc)
        return;
    Idx *ix;
    Probe p;
    ProbeOptions o;
    probe_options_init(&o);
    Warns w = { 0, "" };
    o.warn = collect;
    o.warn_ctx = &w;
    CHECK(idx_open_readonly(&ix, db1, err) == PS_OK);
    rc = probe_open(&p, ix, &o, err);
    CHECK_MSG(rc == PS_OK, "probe_open: %s", err);
    if (!rc) {
        CHECK_EQ_INT(w.n, 0);
        CHECK_EQ_INT(p.n_models, 2);
        CHECK_EQ_INT(p.models[1].adapted, 1);
        CHECK_EQ_INT(p.models[0].n_tok, 17);
        CHECK_EQ_INT(p.models[1].n_tok, 19);
        CHECK_EQ_INT(p.C, 2);
        CHECK_STR(p.class_names[0], "cat");
        CHECK_EQ_INT(p.k_blob, IDX_BLOB_K);
        CHECK(p.models[0].statset >= 0 && p.models[1].statset >= 0);
        compare_index(ix, &p, 1, "batch 1");
        char path[600];
        snprintf(path, sizeof path, "%s/cat/img_land.png", folder);
        check_groups(ix, &p, path);
        probe_close(&p);
    }
    idx_close(ix);
    CHECK(idx_open_readonly(&ix, db4, err) == PS_OK);
    rc = probe_open(&p, ix, &o, err);
    CHECK_MSG(rc == PS_OK, "probe_open: %s", err);
    if (!rc) {
        compare_index(ix, &p, 0, "batch 4");
        probe_close(&p);
    }
    idx_close(ix);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/cat/img_port.png", folder);
    snprintf(b, sizeof b, "%s/dog/img_big.png", folder);
    check_hostile(db1);
    check_save(db1, NULL, a, b);
    check_checksums(folder);
}
