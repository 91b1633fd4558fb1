/* SPDX-License-Identifier: MIT */
/*
 * idx.c - the index (idx.h): the SQLite file's schema (db/schema.sql,
 * compiled in), its prepared statements, every insert and every read the
 * explorer and `patchsae query` need, and the PSP1 patch blob codec.
 *
 * Statements are prepared on first use and kept in Idx until idx_close
 * (SQLITE_PREPARE_PERSISTENT); each use resets and clears them. Writers run in
 * WAL mode so a reader (the explorer) can browse while a build commits.
 * idx_open applies the schema to an empty file inside one IMMEDIATE
 * transaction, so two processes racing to create the same file cannot both
 * apply it, and refuses files with another PRAGMA user_version rather than
 * misreading them (there is only version 1 so far: no migrations yet).
 *
 * The blob codec is pure (no SQLite) and checks everything it reads: a blob
 * comes from a file a user may have edited.
 */
#include "idx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "ps.h"
/* the schema is one long string literal (-Woverlength-strings is about C99 minimums) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#include "schema_sql.h"
#pragma GCC diagnostic pop

/* ---- patch blobs ---- */

size_t
idx_blob_bound(int n_tok, int k, int d_sae)
{
    size_t w = d_sae > 65536 ? 3 : 2;
    return IDX_BLOB_HDR + (size_t)n_tok + (size_t)n_tok * (size_t)k * (w + 1);
}

static void
wr16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static unsigned
rd16(const uint8_t *p)
{
    return p[0] | (unsigned)p[1] << 8;
}

static unsigned
rd24(const uint8_t *p)
{
    return p[0] | (unsigned)p[1] << 8 | (unsigned)p[2] << 16;
}

/* Entry order inside one token's selection: larger value, then lower latent. */
static int
sel_better(const IdxAct *a, const IdxAct *b)
{
    if (a->value != b->value)
        return a->value > b->value;
    return a->latent < b->latent;
}

/* Keeps the k best positive entries of a row in h (a min-heap); returns how many. */
static int
select_row(const int32_t *idx, const float *val, int64_t b, int64_t e, int k, IdxAct *h)
{
    int n = 0;
    for (int64_t j = b; j < e; j++) {
        if (!(val[j] > 0))
            continue;
        IdxAct c = { idx[j], val[j] };
        int i;
        if (n < k) {
            i = n++;
            while (i > 0 && sel_better(&h[(i - 1) / 2], &c)) {
                h[i] = h[(i - 1) / 2];
                i = (i - 1) / 2;
            }
            h[i] = c;
        } else if (sel_better(&c, &h[0])) {
            i = 0;
            for (;;) {
                int l = 2 * i + 1, r = l + 1, w = i;
                const IdxAct *wv = &c;
                if (l < k && sel_better(wv, &h[l]))
                    w = l, wv = &h[l];
                if (r < k && sel_better(wv, &h[r]))
                    w = r, wv = &h[r];
                if (w == i)
                    break;
                h[i] = h[w];
                i = w;
            }
            h[i] = c;
        }
    }
    return n;
}

static int
by_latent(const void *pa, const void *pb)
{
    const IdxAct *a = pa, *b = pb;
    return (a->latent > b->latent) - (a->latent < b->latent);
}

int
idx_blob_encode(int n_tok, const int64_t *rowptr, const int32_t *idx, const float *val, int k,
                int d_sae, uint8_t *out, size_t *n, char *err)
{
    *n = 0;
    if (n_tok < 1 || n_tok > 65535)
        return ps_seterr(err, PS_EUSAGE, "patch blob: %d tokens outside 1..65535", n_tok);
    if (k < 1 || k > 255)
        return ps_seterr(err, PS_EUSAGE, "patch blob: K %d outside 1..255", k);
    if (d_sae < 1 || d_sae > (1 << 24))
        return ps_seterr(err, PS_EUSAGE, "patch blob: d_sae %d outside 1..2^24", d_sae);
    const int w = d_sae > 65536 ? 3 : 2;
    const int64_t base = rowptr[0];
    IdxAct h[255];
    float lo = INFINITY, hi = 0;
    size_t nnz = 0;
    for (int t = 0; t < n_tok; t++) { /* pass 1: counts and range */
        int64_t b = rowptr[t] - base, e = rowptr[t + 1] - base;
        if (e < b)
            return ps_seterr(err, PS_EUSAGE, "patch blob: decreasing rowptr at token %d", t);
        int m = select_row(idx, val, b, e, k, h);
        for (int j = 0; j < m; j++) {
            if (h[j].latent < 0 || h[j].latent >= d_sae)
                return ps_seterr(err, PS_EUSAGE, "patch blob: latent %d outside [0, %d)",
                                 h[j].latent, d_sae);
            lo = MIN(lo, h[j].value);
            hi = MAX(hi, h[j].value);
        }
        out[IDX_BLOB_HDR + t] = (uint8_t)m;
        nnz += (size_t)m;
    }
    if (nnz == 0)
        lo = hi = 0;
    else if (lo < hi * IDX_BLOB_FLOOR)
        lo = hi * IDX_BLOB_FLOOR;
    double llo = nnz ? log(lo) : 0, step = (nnz && hi > lo) ? (log(hi) - llo) / 254.0 : 0;
    memcpy(out, IDX_BLOB_MAGIC, 4);
    wr16(out + 4, (unsigned)n_tok);
    out[6] = w == 3;
    out[7] = (uint8_t)k;
    memcpy(out + 8, &lo, 4);
    memcpy(out + 12, &hi, 4);
    uint8_t *pi = out + IDX_BLOB_HDR + n_tok, *pc = pi + nnz * (size_t)w;
    for (int t = 0; t < n_tok; t++) { /* pass 2: the same selection, written */
        int m = select_row(idx, val, rowptr[t] - base, rowptr[t + 1] - base, k, h);
        qsort(h, (size_t)m, sizeof *h, by_latent);
        for (int j = 0; j < m; j++) {
            unsigned s = (unsigned)h[j].latent;
            pi[0] = (uint8_t)s;
            pi[1] = (uint8_t)(s >> 8);
            if (w == 3)
                pi[2] = (uint8_t)(s >> 16);
            pi += w;
            int c = 1;
            if (step > 0) {
                double v = MAX(h[j].value, lo);
                c = 1 + (int)lround((log(v) - llo) / step);
                c = c < 1 ? 1 : c > 255 ? 255 : c;
            }
            *pc++ = (uint8_t)c;
        }
    }
    *n = (size_t)(pc - out);
    return PS_OK;
}

float
idx_blob_value(uint8_t code, float lo, float hi)
{
    if (!(hi > lo) || code <= 1)
        return lo;
    double llo = log(lo);
    return (float)exp(llo + (code - 1) * (log(hi) - llo) / 254.0);
}

/* Parsed view of a checked blob. */
typedef struct Blob {
    int T, w;
    float lo, hi;
    const uint8_t *cnt, *ix, *code;
} Blob;

static int
blob_parse(const uint8_t *p, size_t n, Blob *b, char *err)
{
    if (!p || n < IDX_BLOB_HDR || memcmp(p, IDX_BLOB_MAGIC, 4))
        return ps_seterr(err, PS_EFORMAT, "patch blob: missing PSP1 header (%zu bytes)", n);
    b->T = (int)rd16(p + 4);
    if (p[6] > 1 || p[7] == 0 || b->T == 0)
        return ps_seterr(err, PS_EFORMAT, "patch blob: bad header (T %d, flags %u, K %u)", b->T,
                         p[6], p[7]);
    b->w = p[6] ? 3 : 2;
    memcpy(&b->lo, p + 8, 4);
    memcpy(&b->hi, p + 12, 4);
    if (!isfinite(b->lo) || !isfinite(b->hi) || b->lo < 0 || b->lo > b->hi)
        return ps_seterr(err, PS_EFORMAT, "patch blob: bad value range [%g, %g]", (double)b->lo,
                         (double)b->hi);
    if (n < (size_t)IDX_BLOB_HDR + b->T)
        return ps_seterr(err, PS_EFORMAT, "patch blob: %zu bytes, too short for %d tokens", n,
                         b->T);
    b->cnt = p + IDX_BLOB_HDR;
    size_t nnz = 0;
    for (int t = 0; t < b->T; t++) {
        if (b->cnt[t] > p[7])
            return ps_seterr(err, PS_EFORMAT, "patch blob: token %d has %u entries > K %u", t,
                             b->cnt[t], p[7]);
        nnz += b->cnt[t];
    }
    if (n != IDX_BLOB_HDR + (size_t)b->T + nnz * (size_t)(b->w + 1))
        return ps_seterr(err, PS_EFORMAT, "patch blob: %zu bytes, expected %zu", n,
                         IDX_BLOB_HDR + (size_t)b->T + nnz * (size_t)(b->w + 1));
    b->ix = b->cnt + b->T;
    b->code = b->ix + nnz * (size_t)b->w;
    if (nnz && !(b->lo > 0))
        return ps_seterr(err, PS_EFORMAT, "patch blob: zero value range with %zu entries", nnz);
    size_t j = 0;
    for (int t = 0; t < b->T; t++) {
        long prev = -1;
        for (int e = 0; e < b->cnt[t]; e++, j++) {
            long s = (long)(b->w == 3 ? rd24(b->ix + 3 * j) : rd16(b->ix + 2 * j));
            if (s <= prev || b->code[j] == 0)
                return ps_seterr(err, PS_EFORMAT,
                                 "patch blob: token %d: latents not ascending or zero code", t);
            prev = s;
        }
    }
    return PS_OK;
}

int
idx_blob_check(const uint8_t *blob, size_t n, int *n_tok, char *err)
{
    Blob b;
    int rc = blob_parse(blob, n, &b, err);
    if (n_tok)
        *n_tok = rc ? 0 : b.T;
    return rc;
}

static int32_t
blob_latent(const Blob *b, size_t j)
{
    return (int32_t)(b->w == 3 ? rd24(b->ix + 3 * j) : rd16(b->ix + 2 * j));
}

int
idx_blob_token(const uint8_t *blob, size_t n, int t, IdxAct *out, int cap, int *n_out, char *err)
{
    *n_out = 0;
    Blob b;
    int rc = blob_parse(blob, n, &b, err);
    if (rc)
        return rc;
    if (t < 0 || t >= b.T)
        return ps_seterr(err, PS_EUSAGE, "token %d outside [0, %d)", t, b.T);
    size_t off = 0;
    for (int i = 0; i < t; i++)
        off += b.cnt[i];
    int m = b.cnt[t];
    IdxAct all[255];
    for (int e = 0; e < m; e++)
        all[e] = (IdxAct){ blob_latent(&b, off + e), idx_blob_value(b.code[off + e], b.lo, b.hi) };
    /* insertion sort by value desc, latent asc (m <= 255) */
    for (int i = 1; i < m; i++) {
        IdxAct x = all[i];
        int j = i;
        while (j > 0 && sel_better(&x, &all[j - 1])) {
            all[j] = all[j - 1];
            j--;
        }
        all[j] = x;
    }
    memcpy(out, all, (size_t)MIN(m, cap) * sizeof *out);
    *n_out = m;
    return PS_OK;
}

int
idx_blob_map(const uint8_t *blob, size_t n, int32_t s, float *map, int cap, int *n_tok, char *err)
{
    *n_tok = 0;
    Blob b;
    int rc = blob_parse(blob, n, &b, err);
    if (rc)
        return rc;
    size_t off = 0;
    for (int t = 0; t < b.T; t++) {
        int lo = 0, hi = b.cnt[t] - 1;
        float v = 0;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            int32_t x = blob_latent(&b, off + mid);
            if (x == s) {
                v = idx_blob_value(b.code[off + mid], b.lo, b.hi);
                break;
            }
            if (x < s)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        if (t < cap)
            map[t] = v;
        off += b.cnt[t];
    }
    *n_tok = b.T;
    return PS_OK;
}

/* ---- the handle ---- */

enum {
    Q_META_SET, Q_META_GET,
    Q_MODEL_FIND, Q_MODEL_INS, Q_SAE_FIND, Q_SAE_INS, Q_DS_FIND, Q_DS_INS, Q_CLASS_INS,
    Q_IMG_UPSERT, Q_THUMB_PUT, Q_THUMB_DEL, Q_PRED_DEL, Q_PRED_INS, Q_PATCH_PUT, Q_IL_DEL,
    Q_IL_INS, Q_SS_FIND, Q_SS_INS, Q_SS_DONE, Q_LAT_PUT, Q_TOP_PUT, Q_LAB_PUT, Q_CC_PUT,
    Q_CT_PUT, Q_EVAL_PUT, Q_ANN_PUT, Q_ANN_DEL, Q_ANN_GET, Q_SQ_PUT, Q_PROG_PUT, Q_PROG_GET,
    Q_SS_GET, Q_LAT_GET, Q_TOP_GET, Q_LAB_GET, Q_IMG_GET, Q_IMG_AT, Q_THUMB_GET, Q_PRED_GET,
    Q_IL_GET, Q_PATCH_GET, Q_CT_GET, Q_CC_GET, Q_CLS_FIND, Q_CLS_NAME, Q_CLS_SIZE, Q_EVAL_GET,
    Q_DIFF_GET, Q_N
};

static const char *const sql_text[Q_N] = {
    [Q_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_MODEL_FIND] = "SELECT id, name, kind, path, resolved, size, sha256, hook_layer, n_tokens, "
                     "d_model, extra FROM models WHERE (?1 IS NULL AND kind = 'base') OR name = ?1 "
                     "ORDER BY id LIMIT 1",
    [Q_MODEL_INS] = "INSERT INTO models(name, kind, path, resolved, size, sha256, hook_layer, "
                    "n_tokens, d_model, extra) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [Q_SAE_FIND] = "SELECT id, path, sha256, d_in, d_sae, hook_layer, trained_on FROM saes "
                   "WHERE ?1 IS NULL OR path = ?1 ORDER BY id LIMIT 1",
    [Q_SAE_INS] = "INSERT INTO saes(path, sha256, d_in, d_sae, hook_layer, trained_on) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_DS_FIND] = "SELECT id, spec, n_images, n_classes FROM datasets WHERE name = ?1",
    [Q_DS_INS] = "INSERT INTO datasets(name, spec, n_images, n_classes) VALUES (?1, ?2, ?3, ?4)",
    [Q_CLASS_INS] = "INSERT OR REPLACE INTO classes(dataset_id, idx, name) VALUES (?1, ?2, ?3)",
    [Q_IMG_UPSERT] = "INSERT INTO images(dataset_id, pos, path, label, grid) VALUES "
                     "(?1, ?2, ?3, ?4, ?5) ON CONFLICT(dataset_id, pos) DO UPDATE SET "
                     "path = excluded.path, label = excluded.label, grid = excluded.grid "
                     "RETURNING id",
    [Q_THUMB_PUT] = "INSERT OR REPLACE INTO thumbnails(image_id, size, jpeg) VALUES (?1, ?2, ?3)",
    [Q_THUMB_DEL] = "DELETE FROM thumbnails WHERE image_id = ?1",
    [Q_PRED_DEL] = "DELETE FROM predictions WHERE image_id = ?1 AND model_id = ?2",
    [Q_PRED_INS] = "INSERT INTO predictions(image_id, model_id, rank, class, prob) "
                   "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_PATCH_PUT] = "INSERT OR REPLACE INTO patches(image_id, model_id, sae_id, blob) "
                    "VALUES (?1, ?2, ?3, ?4)",
    [Q_IL_DEL] = "DELETE FROM image_latents WHERE image_id = ?1 AND model_id = ?2 AND sae_id = ?3",
    [Q_IL_INS] = "INSERT INTO image_latents(image_id, model_id, sae_id, rank, latent, value) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_SS_FIND] = "SELECT id, k_top, tau FROM statsets WHERE model_id = ?1 AND dataset_id = ?2 "
                  "AND sae_id = ?3",
    [Q_SS_INS] = "INSERT INTO statsets(model_id, dataset_id, sae_id, k_top, tau) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_SS_DONE] = "UPDATE statsets SET final = 1, n_images = ?2 WHERE id = ?1",
    [Q_LAT_PUT] = "INSERT OR REPLACE INTO latent_stats(statset_id, latent, n_active, freq, "
                  "mean_act, max_act, max_patch, entropy, label_std, top_class, top_share) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [Q_TOP_PUT] = "INSERT OR REPLACE INTO latent_top(statset_id, latent, kind, rank, image_id, "
                  "value, token) SELECT ?1, ?2, ?3, ?4, i.id, ?6, ?7 FROM statsets s JOIN images "
                  "i ON i.dataset_id = s.dataset_id AND i.pos = ?5 WHERE s.id = ?1",
    [Q_LAB_PUT] = "INSERT OR REPLACE INTO latent_labels(statset_id, latent, class, n, weight) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_CC_PUT] = "INSERT OR REPLACE INTO class_counts(statset_id, class, latent, n_tokens, "
                 "act_sum) VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_CT_PUT] = "INSERT OR REPLACE INTO class_top(statset_id, class, rank, latent, n_tokens) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_EVAL_PUT] = "INSERT OR REPLACE INTO eval(model_id, dataset_id, sae_id, select_model_id, "
                   "class, mode, k, n_images, accuracy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [Q_ANN_PUT] = "INSERT OR REPLACE INTO annotations(sae_id, latent, name, note, time) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_ANN_DEL] = "DELETE FROM annotations WHERE sae_id = ?1 AND latent = ?2",
    [Q_ANN_GET] = "SELECT name, note FROM annotations WHERE sae_id = ?1 AND latent = ?2",
    [Q_SQ_PUT] = "INSERT OR REPLACE INTO saved_queries(name, sql, note, time) "
                 "VALUES (?1, ?2, ?3, ?4)",
    [Q_PROG_PUT] = "INSERT OR REPLACE INTO progress(model_id, dataset_id, sae_id, shard_i, "
                   "shard_n, batch, n_done, done, state, time) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [Q_PROG_GET] = "SELECT batch, n_done, done, state FROM progress WHERE model_id = ?1 AND "
                   "dataset_id = ?2 AND sae_id = ?3 AND shard_i = ?4 AND shard_n = ?5",
    [Q_SS_GET] = "SELECT s.id, s.model_id, s.dataset_id, s.sae_id, m.name, m.kind, d.name, "
                 "s.n_images, s.k_top, s.tau, a.d_sae, d.n_classes, s.final FROM statsets s "
                 "JOIN models m ON m.id = s.model_id JOIN datasets d ON d.id = s.dataset_id "
                 "JOIN saes a ON a.id = s.sae_id WHERE ?1 IS NULL OR s.id = ?1 ORDER BY s.id",
    [Q_LAT_GET] = "SELECT l.latent, l.n_active, l.freq, l.mean_act, l.max_act, l.max_patch, "
                  "l.entropy, l.label_std, l.top_share, l.top_class, c.name, a.name "
                  "FROM latent_stats l JOIN statsets s ON s.id = l.statset_id "
                  "LEFT JOIN classes c ON c.dataset_id = s.dataset_id AND c.idx = l.top_class "
                  "LEFT JOIN annotations a ON a.sae_id = s.sae_id AND a.latent = l.latent "
                  "WHERE l.statset_id = ?1 AND l.latent = ?2",
    [Q_TOP_GET] = "SELECT t.rank, t.image_id, i.pos, i.label, t.value, t.token FROM latent_top t "
                  "JOIN images i ON i.id = t.image_id WHERE t.statset_id = ?1 AND t.latent = ?2 "
                  "AND t.kind = ?3 ORDER BY t.rank LIMIT ?4",
    [Q_LAB_GET] = "SELECT class, n, weight FROM latent_labels WHERE statset_id = ?1 AND "
                  "latent = ?2 ORDER BY n DESC, weight DESC, class LIMIT ?3",
    [Q_IMG_GET] = "SELECT i.dataset_id, i.pos, i.path, i.label, i.grid, c.name, t.size "
                  "FROM images i LEFT JOIN classes c ON c.dataset_id = i.dataset_id AND "
                  "c.idx = i.label LEFT JOIN thumbnails t ON t.image_id = i.id WHERE i.id = ?1",
    [Q_IMG_AT] = "SELECT id FROM images WHERE dataset_id = ?1 AND pos = ?2",
    [Q_THUMB_GET] = "SELECT size, jpeg FROM thumbnails WHERE image_id = ?1",
    [Q_PRED_GET] = "SELECT p.rank, p.class, p.prob, c.name FROM predictions p JOIN images i ON "
                   "i.id = p.image_id LEFT JOIN classes c ON c.dataset_id = i.dataset_id AND "
                   "c.idx = p.class WHERE p.image_id = ?1 AND p.model_id = ?2 ORDER BY p.rank "
                   "LIMIT ?3",
    [Q_IL_GET] = "SELECT latent, value FROM image_latents WHERE image_id = ?1 AND model_id = ?2 "
                 "AND sae_id = ?3 ORDER BY rank LIMIT ?4",
    [Q_PATCH_GET] = "SELECT blob FROM patches WHERE image_id = ?1 AND model_id = ?2 AND "
                    "sae_id = ?3",
    [Q_CT_GET] = "SELECT t.rank, t.latent, t.n_tokens, a.name FROM class_top t JOIN statsets s "
                 "ON s.id = t.statset_id LEFT JOIN annotations a ON a.sae_id = s.sae_id AND "
                 "a.latent = t.latent WHERE t.statset_id = ?1 AND t.class = ?2 ORDER BY t.rank "
                 "LIMIT ?3",
    [Q_CC_GET] = "SELECT n_tokens FROM class_counts WHERE statset_id = ?1 AND class = ?2 AND "
                 "latent = ?3",
    [Q_CLS_FIND] = "SELECT idx FROM classes WHERE dataset_id = ?1 AND (name = ?2 OR "
                   "lower(name) = lower(?2)) ORDER BY name = ?2 DESC, idx LIMIT 1",
    [Q_CLS_NAME] = "SELECT name FROM classes WHERE dataset_id = ?1 AND idx = ?2",
    [Q_CLS_SIZE] = "SELECT count(*) FROM images WHERE dataset_id = ?1 AND label = ?2",
    [Q_EVAL_GET] = "SELECT model_id, dataset_id, sae_id, select_model_id, class, mode, k, "
                   "n_images, accuracy FROM eval WHERE model_id = ?1 AND dataset_id = ?2 AND "
                   "class = ?3 ORDER BY select_model_id, mode, k",
    [Q_DIFF_GET] = "SELECT class, grp, latent, base_rank, adapted_rank, base_count, "
                   "adapted_count FROM diff_groups WHERE base_id = ?1 AND adapted_id = ?2 AND "
                   "(?3 < 0 OR class = ?3) ORDER BY class, grp, coalesce(base_rank, 1e9), latent",
};

struct Idx {
    sqlite3 *db;
    char path[512];
    int readonly;
    sqlite3_stmt *q[Q_N];
};

static int
dberr(Idx *ix, char *err, const char *what)
{
    return ps_seterr(err, PS_EDB, "%s: %s: %s", ix->path, what, sqlite3_errmsg(ix->db));
}

/* The prepared statement q, reset and unbound; NULL (err set) on failure. */
static sqlite3_stmt *
st(Idx *ix, int q, char *err)
{
    sqlite3_stmt *s = ix->q[q];
    if (!s) {
        if (sqlite3_prepare_v3(ix->db, sql_text[q], -1, SQLITE_PREPARE_PERSISTENT, &ix->q[q],
                               NULL) != SQLITE_OK) {
            dberr(ix, err, "prepare");
            return NULL;
        }
        return ix->q[q];
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Steps a statement that returns no rows (or whose rows are ignored). */
static int
run(Idx *ix, sqlite3_stmt *s, char *err, const char *what)
{
    int r = sqlite3_step(s);
    while (r == SQLITE_ROW)
        r = sqlite3_step(s);
    int rc = r == SQLITE_DONE ? PS_OK : dberr(ix, err, what);
    sqlite3_reset(s);
    return rc;
}

static void
bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void
bind_real(sqlite3_stmt *s, int i, double v)
{
    if (isnan(v))
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_double(s, i, v);
}

static void
col_text(sqlite3_stmt *s, int i, char *buf, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(buf, cap, "%s", t ? (const char *)t : "");
}

static double
col_real(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

static int
col_int_or(sqlite3_stmt *s, int i, int dflt)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? dflt : sqlite3_column_int(s, i);
}

static void
now_iso(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
user_version(Idx *ix, int *v, int *n_tables, char *err)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return ps_seterr(err, PS_EFORMAT, "%s: not an SQLite database (%s)", ix->path,
                         sqlite3_errmsg(ix->db));
    *v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(ix->db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) !=
        SQLITE_OK)
        return ps_seterr(err, PS_EFORMAT, "%s: not an SQLite database (%s)", ix->path,
                         sqlite3_errmsg(ix->db));
    int r = sqlite3_step(s);
    *n_tables = r == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_finalize(s);
    if (r != SQLITE_ROW)
        return ps_seterr(err, PS_EFORMAT, "%s: not an SQLite database (%s)", ix->path,
                         sqlite3_errmsg(ix->db));
    return PS_OK;
}

static int
check_version(Idx *ix, int v, int n_tables, char *err)
{
    if (v == IDX_SCHEMA_VERSION)
        return PS_OK;
    if (v == 0 && n_tables > 0)
        return ps_seterr(err, PS_EFORMAT, "%s: an SQLite file but not a patchsae index "
                         "(no schema version)", ix->path);
    if (v == 0)
        return ps_seterr(err, PS_EFORMAT, "%s: empty file, not a patchsae index", ix->path);
    return ps_seterr(err, PS_EFORMAT,
                     "%s: index schema version %d, but this patchsae reads version %d%s",
                     ix->path, v, IDX_SCHEMA_VERSION,
                     v > IDX_SCHEMA_VERSION ? " (made by a newer patchsae; upgrade)"
                                            : " (rebuild it with this patchsae)");
}

static int
open_common(Idx **out, const char *path, int readonly, char *err)
{
    *out = NULL;
    Idx *ix = xcalloc(1, sizeof *ix);
    snprintf(ix->path, sizeof ix->path, "%s", path);
    ix->readonly = readonly;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &ix->db, flags, NULL) != SQLITE_OK) {
        int rc = ps_seterr(err, readonly ? PS_EIO : PS_EDB, "%s: cannot open: %s", path,
                           ix->db ? sqlite3_errmsg(ix->db) : "out of memory");
        idx_close(ix);
        return rc;
    }
    sqlite3_busy_timeout(ix->db, 5000);
    sqlite3_extended_result_codes(ix->db, 1);
    int v, nt, rc = user_version(ix, &v, &nt, err);
    if (!rc && !readonly && v == 0 && nt == 0) {
        /* a new file: apply the schema once, even if another process races us */
        if (strcmp(path, ":memory:") && path[0])
            sqlite3_exec(ix->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        rc = idx_exec(ix, "BEGIN IMMEDIATE", err);
        if (!rc)
            rc = user_version(ix, &v, &nt, err);
        if (!rc && v == 0 && nt == 0) {
            char *msg = NULL;
            char tm[32];
            now_iso(tm, sizeof tm);
            if (sqlite3_exec(ix->db, schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
                rc = ps_seterr(err, PS_EDB, "%s: creating the schema: %s", path,
                               msg ? msg : sqlite3_errmsg(ix->db));
                sqlite3_free(msg);
            }
            if (!rc)
                rc = idx_set_meta(ix, "created", tm, err);
            if (!rc)
                rc = idx_set_meta(ix, "blob_format", IDX_BLOB_MAGIC, err);
            v = IDX_SCHEMA_VERSION;
        }
        if (!rc)
            rc = idx_exec(ix, "COMMIT", err);
        else
            sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (!rc)
        rc = check_version(ix, v, nt, err);
    if (!rc && !readonly && strcmp(path, ":memory:") && path[0]) {
        sqlite3_exec(ix->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        rc = idx_exec(ix, "PRAGMA synchronous=NORMAL", err);
    }
    if (!rc)
        rc = idx_exec(ix, "PRAGMA foreign_keys=ON", err);
    if (rc) {
        idx_close(ix);
        return rc;
    }
    *out = ix;
    return PS_OK;
}

int
idx_open(Idx **out, const char *path, char *err)
{
    return open_common(out, path, 0, err);
}

int
idx_open_readonly(Idx **out, const char *path, char *err)
{
    return open_common(out, path, 1, err);
}

void
idx_close(Idx *ix)
{
    if (!ix)
        return;
    for (int i = 0; i < Q_N; i++)
        sqlite3_finalize(ix->q[i]);
    sqlite3_close(ix->db);
    free(ix);
}

int
idx_exec(Idx *ix, const char *sql, char *err)
{
    char *msg = NULL;
    if (sqlite3_exec(ix->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = ps_seterr(err, PS_EDB, "%s: %s", ix->path, msg ? msg : sqlite3_errmsg(ix->db));
        sqlite3_free(msg);
        return rc;
    }
    return PS_OK;
}

int
idx_begin(Idx *ix, char *err)
{
    return idx_exec(ix, "BEGIN IMMEDIATE", err);
}

int
idx_commit(Idx *ix, char *err)
{
    return idx_exec(ix, "COMMIT", err);
}

void
idx_rollback(Idx *ix)
{
    if (!sqlite3_get_autocommit(ix->db))
        sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
}

int
idx_select(Idx *ix, const char *sql,
           int (*row)(void *, int, const char *const *, const char *const *), void *ctx,
           char *err)
{
    sqlite3_stmt *s;
    const char *tail;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, &tail) != SQLITE_OK)
        return dberr(ix, err, "query");
    if (!s)
        return ps_seterr(err, PS_EUSAGE, "empty query");
    if (!sqlite3_stmt_readonly(s)) {
        sqlite3_finalize(s);
        return ps_seterr(err, PS_EUSAGE, "only SELECT queries are allowed here");
    }
    int nc = sqlite3_column_count(s);
    const char **names = xcalloc((size_t)nc + 1, sizeof *names);
    const char **vals = xcalloc((size_t)nc + 1, sizeof *vals);
    for (int i = 0; i < nc; i++)
        names[i] = sqlite3_column_name(s, i);
    int r, rc = PS_OK;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < nc; i++)
            vals[i] = (const char *)sqlite3_column_text(s, i);
        if (row(ctx, nc, names, vals))
            break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = dberr(ix, err, "query");
    free(names);
    free(vals);
    sqlite3_finalize(s);
    return rc;
}

int
idx_set_meta(Idx *ix, const char *key, const char *value, char *err)
{
    sqlite3_stmt *s = st(ix, Q_META_SET, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, key);
    bind_text(s, 2, value);
    return run(ix, s, err, "set meta");
}

int
idx_get_meta(Idx *ix, const char *key, char *buf, size_t cap, char *err)
{
    sqlite3_stmt *s = st(ix, Q_META_GET, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, key);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        col_text(s, 0, buf, cap);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no meta key '%s'", ix->path, key);
    else
        rc = dberr(ix, err, "get meta");
    sqlite3_reset(s);
    return rc;
}

/* ---- inserts ---- */

static int
model_row(sqlite3_stmt *s, IdxModel *m)
{
    m->id = sqlite3_column_int64(s, 0);
    col_text(s, 1, m->name, sizeof m->name);
    col_text(s, 2, m->kind, sizeof m->kind);
    col_text(s, 3, m->path, sizeof m->path);
    col_text(s, 4, m->resolved, sizeof m->resolved);
    m->size = sqlite3_column_int64(s, 5);
    col_text(s, 6, m->sha256, sizeof m->sha256);
    m->hook_layer = sqlite3_column_int(s, 7);
    m->n_tokens = sqlite3_column_int(s, 8);
    m->d_model = sqlite3_column_int(s, 9);
    col_text(s, 10, m->extra, sizeof m->extra);
    return PS_OK;
}

int
idx_find_model(Idx *ix, const char *name, IdxModel *out, char *err)
{
    sqlite3_stmt *s = st(ix, Q_MODEL_FIND, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, name);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        model_row(s, out);
    else if (r == SQLITE_DONE)
        rc = name ? ps_seterr(err, PS_EUSAGE, "%s: no model named '%s'", ix->path, name)
                  : ps_seterr(err, PS_EUSAGE, "%s: no base model", ix->path);
    else
        rc = dberr(ix, err, "find model");
    sqlite3_reset(s);
    return rc;
}

int
idx_add_model(Idx *ix, IdxModel *m, char *err)
{
    if (strcmp(m->kind, "base") && strcmp(m->kind, "adapted"))
        return ps_seterr(err, PS_EUSAGE, "model %s: kind '%s' is not base or adapted", m->name,
                         m->kind);
    IdxModel old;
    char e2[PS_ERRLEN];
    if (m->name[0] && idx_find_model(ix, m->name, &old, e2) == PS_OK) {
        if (strcmp(old.sha256, m->sha256) || strcmp(old.kind, m->kind))
            return ps_seterr(err, PS_EREFUSED,
                             "%s: model '%s' is already indexed with another checkpoint "
                             "(sha256 %.12s, kind %s); give this one another name",
                             ix->path, m->name, old.sha256, old.kind);
        m->id = old.id;
        return PS_OK;
    }
    sqlite3_stmt *s = st(ix, Q_MODEL_INS, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, m->name);
    bind_text(s, 2, m->kind);
    bind_text(s, 3, m->path);
    bind_text(s, 4, m->resolved);
    sqlite3_bind_int64(s, 5, m->size);
    bind_text(s, 6, m->sha256);
    sqlite3_bind_int(s, 7, m->hook_layer);
    sqlite3_bind_int(s, 8, m->n_tokens);
    sqlite3_bind_int(s, 9, m->d_model);
    bind_text(s, 10, m->extra[0] ? m->extra : NULL);
    int rc = run(ix, s, err, "add model");
    if (!rc)
        m->id = sqlite3_last_insert_rowid(ix->db);
    return rc;
}

static void
sae_row(sqlite3_stmt *s, IdxSae *a)
{
    a->id = sqlite3_column_int64(s, 0);
    col_text(s, 1, a->path, sizeof a->path);
    col_text(s, 2, a->sha256, sizeof a->sha256);
    a->d_in = sqlite3_column_int(s, 3);
    a->d_sae = sqlite3_column_int(s, 4);
    a->hook_layer = sqlite3_column_int(s, 5);
    col_text(s, 6, a->trained_on, sizeof a->trained_on);
}

int
idx_find_sae(Idx *ix, const char *path, IdxSae *out, char *err)
{
    sqlite3_stmt *s = st(ix, Q_SAE_FIND, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, path);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        sae_row(s, out);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no SAE%s%s", ix->path, path ? " " : "",
                       path ? path : "");
    else
        rc = dberr(ix, err, "find sae");
    sqlite3_reset(s);
    return rc;
}

int
idx_add_sae(Idx *ix, IdxSae *a, char *err)
{
    IdxSae old;
    char e2[PS_ERRLEN];
    if (idx_find_sae(ix, a->path, &old, e2) == PS_OK) {
        if (strcmp(old.sha256, a->sha256) || old.d_sae != a->d_sae)
            return ps_seterr(err, PS_EREFUSED,
                             "%s: SAE %s is already indexed with other contents (sha256 %.12s, "
                             "%d latents)", ix->path, a->path, old.sha256, old.d_sae);
        a->id = old.id;
        return PS_OK;
    }
    if (a->d_sae < 1 || a->d_sae > (1 << 24))
        return ps_seterr(err, PS_EUSAGE, "SAE %s: %d latents outside 1..2^24", a->path, a->d_sae);
    sqlite3_stmt *s = st(ix, Q_SAE_INS, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, a->path);
    bind_text(s, 2, a->sha256);
    sqlite3_bind_int(s, 3, a->d_in);
    sqlite3_bind_int(s, 4, a->d_sae);
    sqlite3_bind_int(s, 5, a->hook_layer);
    bind_text(s, 6, a->trained_on);
    int rc = run(ix, s, err, "add sae");
    if (!rc)
        a->id = sqlite3_last_insert_rowid(ix->db);
    return rc;
}

int
idx_add_dataset(Idx *ix, IdxDataset *d, char *err)
{
    sqlite3_stmt *s = st(ix, Q_DS_FIND, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, d->name);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        char spec[1024];
        col_text(s, 1, spec, sizeof spec);
        int64_t n = sqlite3_column_int64(s, 2);
        int nc = sqlite3_column_int(s, 3);
        d->id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (strcmp(spec, d->spec) || n != d->n_images || nc != d->n_classes)
            return ps_seterr(err, PS_EREFUSED,
                             "%s: dataset '%s' is already indexed as %s (%lld images, %d "
                             "classes); give this one another name", ix->path, d->name, spec,
                             (long long)n, nc);
        return PS_OK;
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE)
        return dberr(ix, err, "find dataset");
    if (!(s = st(ix, Q_DS_INS, err)))
        return PS_EDB;
    bind_text(s, 1, d->name);
    bind_text(s, 2, d->spec);
    sqlite3_bind_int64(s, 3, d->n_images);
    sqlite3_bind_int(s, 4, d->n_classes);
    int rc = run(ix, s, err, "add dataset");
    if (!rc)
        d->id = sqlite3_last_insert_rowid(ix->db);
    return rc;
}

int
idx_add_classes(Idx *ix, int64_t dataset, int n, const char *const *names, char *err)
{
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s = st(ix, Q_CLASS_INS, err);
        if (!s)
            return PS_EDB;
        sqlite3_bind_int64(s, 1, dataset);
        sqlite3_bind_int(s, 2, i);
        bind_text(s, 3, names[i]);
        int rc = run(ix, s, err, "add class");
        if (rc)
            return rc;
    }
    return PS_OK;
}

int
idx_add_image(Idx *ix, IdxImage *im, const void *jpeg, size_t jpeg_n, int thumb_size, char *err)
{
    sqlite3_stmt *s = st(ix, Q_IMG_UPSERT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, im->dataset_id);
    sqlite3_bind_int64(s, 2, im->pos);
    bind_text(s, 3, im->path[0] ? im->path : NULL);
    if (im->label >= 0)
        sqlite3_bind_int(s, 4, im->label);
    sqlite3_bind_int(s, 5, im->grid);
    int r = sqlite3_step(s);
    if (r != SQLITE_ROW) {
        int rc = dberr(ix, err, "add image");
        sqlite3_reset(s);
        return rc;
    }
    im->id = sqlite3_column_int64(s, 0);
    int rc = run(ix, s, err, "add image");
    if (rc)
        return rc;
    if (!(s = st(ix, jpeg ? Q_THUMB_PUT : Q_THUMB_DEL, err)))
        return PS_EDB;
    sqlite3_bind_int64(s, 1, im->id);
    if (jpeg) {
        sqlite3_bind_int(s, 2, thumb_size);
        sqlite3_bind_blob64(s, 3, jpeg, jpeg_n, SQLITE_STATIC);
    }
    return run(ix, s, err, "put thumbnail");
}

int
idx_put_predictions(Idx *ix, int64_t image, int64_t model, int n, const int *cls,
                    const float *prob, char *err)
{
    if (n < 0 || n > 5)
        return ps_seterr(err, PS_EUSAGE, "%d predictions (at most 5)", n);
    sqlite3_stmt *s = st(ix, Q_PRED_DEL, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    sqlite3_bind_int64(s, 2, model);
    int rc = run(ix, s, err, "delete predictions");
    for (int i = 0; i < n && !rc; i++) {
        if (!(s = st(ix, Q_PRED_INS, err)))
            return PS_EDB;
        sqlite3_bind_int64(s, 1, image);
        sqlite3_bind_int64(s, 2, model);
        sqlite3_bind_int(s, 3, i + 1);
        sqlite3_bind_int(s, 4, cls[i]);
        sqlite3_bind_double(s, 5, prob[i]);
        rc = run(ix, s, err, "add prediction");
    }
    return rc;
}

int
idx_put_patches(Idx *ix, int64_t image, int64_t model, int64_t sae, const uint8_t *blob,
                size_t n, char *err)
{
    int rc = idx_blob_check(blob, n, NULL, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = st(ix, Q_PATCH_PUT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    sqlite3_bind_int64(s, 2, model);
    sqlite3_bind_int64(s, 3, sae);
    sqlite3_bind_blob64(s, 4, blob, n, SQLITE_STATIC);
    return run(ix, s, err, "put patches");
}

int
idx_put_image_latents(Idx *ix, int64_t image, int64_t model, int64_t sae, int n,
                      const IdxAct *top, char *err)
{
    sqlite3_stmt *s = st(ix, Q_IL_DEL, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    sqlite3_bind_int64(s, 2, model);
    sqlite3_bind_int64(s, 3, sae);
    int rc = run(ix, s, err, "delete image latents");
    for (int i = 0; i < n && !rc; i++) {
        if (!(s = st(ix, Q_IL_INS, err)))
            return PS_EDB;
        sqlite3_bind_int64(s, 1, image);
        sqlite3_bind_int64(s, 2, model);
        sqlite3_bind_int64(s, 3, sae);
        sqlite3_bind_int(s, 4, i + 1);
        sqlite3_bind_int(s, 5, top[i].latent);
        sqlite3_bind_double(s, 6, top[i].value);
        rc = run(ix, s, err, "add image latent");
    }
    return rc;
}

int
idx_add_statset(Idx *ix, int64_t model, int64_t dataset, int64_t sae, int k_top, float tau,
                int64_t *id, char *err)
{
    sqlite3_stmt *s = st(ix, Q_SS_FIND, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, model);
    sqlite3_bind_int64(s, 2, dataset);
    sqlite3_bind_int64(s, 3, sae);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        int k = sqlite3_column_int(s, 1);
        double t = sqlite3_column_double(s, 2);
        sqlite3_reset(s);
        if (k != k_top || (float)t != tau)
            return ps_seterr(err, PS_EREFUSED,
                             "%s: statistics already built with k %d, tau %g (asked k %d, tau %g)",
                             ix->path, k, t, k_top, (double)tau);
        return PS_OK;
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE)
        return dberr(ix, err, "find statset");
    if (!(s = st(ix, Q_SS_INS, err)))
        return PS_EDB;
    sqlite3_bind_int64(s, 1, model);
    sqlite3_bind_int64(s, 2, dataset);
    sqlite3_bind_int64(s, 3, sae);
    sqlite3_bind_int(s, 4, k_top);
    sqlite3_bind_double(s, 5, tau);
    int rc = run(ix, s, err, "add statset");
    if (!rc)
        *id = sqlite3_last_insert_rowid(ix->db);
    return rc;
}

int
idx_clear_statset(Idx *ix, int64_t statset, char *err)
{
    static const char *const tables[] = { "latent_stats", "latent_top", "latent_labels",
                                          "class_counts", "class_top" };
    for (size_t i = 0; i < LEN(tables); i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE statset_id = %lld", tables[i],
                 (long long)statset);
        int rc = idx_exec(ix, sql, err);
        if (rc)
            return rc;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE statsets SET final = 0 WHERE id = %lld", (long long)statset);
    return idx_exec(ix, sql, err);
}

int
idx_set_statset_done(Idx *ix, int64_t statset, int64_t n_images, char *err)
{
    sqlite3_stmt *s = st(ix, Q_SS_DONE, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int64(s, 2, n_images);
    return run(ix, s, err, "finish statset");
}

int
idx_put_latent(Idx *ix, int64_t statset, const IdxLatent *l, char *err)
{
    sqlite3_stmt *s = st(ix, Q_LAT_PUT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, l->latent);
    sqlite3_bind_int64(s, 3, l->n_active);
    sqlite3_bind_double(s, 4, l->freq);
    bind_real(s, 5, l->mean_act);
    bind_real(s, 6, l->max_act);
    bind_real(s, 7, l->max_patch);
    bind_real(s, 8, l->entropy);
    bind_real(s, 9, l->label_std);
    if (l->top_class >= 0)
        sqlite3_bind_int(s, 10, l->top_class);
    bind_real(s, 11, l->top_share);
    return run(ix, s, err, "put latent stats");
}

int
idx_put_latent_top(Idx *ix, int64_t statset, int32_t latent, int kind, int n,
                   const IdxTopImage *top, char *err)
{
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s = st(ix, Q_TOP_PUT, err);
        if (!s)
            return PS_EDB;
        sqlite3_bind_int64(s, 1, statset);
        sqlite3_bind_int(s, 2, latent);
        sqlite3_bind_int(s, 3, kind);
        sqlite3_bind_int(s, 4, top[i].rank);
        sqlite3_bind_int64(s, 5, top[i].pos);
        sqlite3_bind_double(s, 6, top[i].value);
        if (kind == IDX_TOP_PATCH)
            sqlite3_bind_int(s, 7, top[i].token);
        int rc = run(ix, s, err, "put latent top");
        if (rc)
            return rc;
        if (sqlite3_changes(ix->db) != 1)
            return ps_seterr(err, PS_EUSAGE,
                             "%s: top image at position %lld of latent %d is not in the index",
                             ix->path, (long long)top[i].pos, latent);
    }
    return PS_OK;
}

int
idx_put_latent_labels(Idx *ix, int64_t statset, int32_t latent, int n, const IdxLabelCount *lc,
                      char *err)
{
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s = st(ix, Q_LAB_PUT, err);
        if (!s)
            return PS_EDB;
        sqlite3_bind_int64(s, 1, statset);
        sqlite3_bind_int(s, 2, latent);
        sqlite3_bind_int(s, 3, lc[i].cls);
        sqlite3_bind_int(s, 4, lc[i].n);
        sqlite3_bind_double(s, 5, lc[i].weight);
        int rc = run(ix, s, err, "put latent labels");
        if (rc)
            return rc;
    }
    return PS_OK;
}

int
idx_put_class_count(Idx *ix, int64_t statset, int cls, int32_t latent, int64_t n_tokens,
                    double act_sum, char *err)
{
    sqlite3_stmt *s = st(ix, Q_CC_PUT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, cls);
    sqlite3_bind_int(s, 3, latent);
    sqlite3_bind_int64(s, 4, n_tokens);
    sqlite3_bind_double(s, 5, act_sum);
    return run(ix, s, err, "put class count");
}

int
idx_put_class_top(Idx *ix, int64_t statset, int cls, int n, const IdxClassLatent *top, char *err)
{
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s = st(ix, Q_CT_PUT, err);
        if (!s)
            return PS_EDB;
        sqlite3_bind_int64(s, 1, statset);
        sqlite3_bind_int(s, 2, cls);
        sqlite3_bind_int(s, 3, top[i].rank);
        sqlite3_bind_int(s, 4, top[i].latent);
        sqlite3_bind_int64(s, 5, top[i].n_tokens);
        int rc = run(ix, s, err, "put class top");
        if (rc)
            return rc;
    }
    return PS_OK;
}

int
idx_put_eval(Idx *ix, const IdxEval *e, char *err)
{
    sqlite3_stmt *s = st(ix, Q_EVAL_PUT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, e->model_id);
    sqlite3_bind_int64(s, 2, e->dataset_id);
    sqlite3_bind_int64(s, 3, e->sae_id);
    sqlite3_bind_int64(s, 4, e->select_model_id);
    sqlite3_bind_int(s, 5, e->cls);
    bind_text(s, 6, e->mode);
    sqlite3_bind_int(s, 7, e->k);
    sqlite3_bind_int64(s, 8, e->n_images);
    sqlite3_bind_double(s, 9, e->accuracy);
    return run(ix, s, err, "put eval");
}

int
idx_diff_compute(Idx *ix, int64_t base, int64_t adapted, int hi, int lo, char *err)
{
    if (hi < 1 || lo < hi)
        return ps_seterr(err, PS_EUSAGE, "diff: need 1 <= hi (%d) <= lo (%d)", hi, lo);
    static const char *const sql[] = {
        "DELETE FROM diff_groups WHERE base_id = ?1 AND adapted_id = ?2",
        "INSERT OR REPLACE INTO diffs(base_id, adapted_id, hi, lo) VALUES (?1, ?2, ?3, ?4)",
        "WITH b AS (SELECT class, latent, rank FROM class_top WHERE statset_id = ?1), "
        "a AS (SELECT class, latent, rank FROM class_top WHERE statset_id = ?2), "
        "u AS (SELECT class, latent FROM b WHERE rank <= ?3 UNION "
        "SELECT class, latent FROM a WHERE rank <= ?3), "
        "j AS (SELECT u.class, u.latent, b.rank AS br, a.rank AS ar, "
        "coalesce((SELECT n_tokens FROM class_counts WHERE statset_id = ?1 AND class = u.class "
        "AND latent = u.latent), 0) AS bc, "
        "coalesce((SELECT n_tokens FROM class_counts WHERE statset_id = ?2 AND class = u.class "
        "AND latent = u.latent), 0) AS ac FROM u "
        "LEFT JOIN b ON b.class = u.class AND b.latent = u.latent "
        "LEFT JOIN a ON a.class = u.class AND a.latent = u.latent) "
        "INSERT INTO diff_groups(base_id, adapted_id, class, grp, latent, base_rank, "
        "adapted_rank, base_count, adapted_count) "
        "SELECT ?1, ?2, class, CASE WHEN br <= ?3 AND ar <= ?3 THEN 'high' "
        "WHEN br <= ?3 THEN 'high_low' ELSE 'low_high' END, latent, br, ar, bc, ac FROM j "
        "WHERE (br <= ?3 AND ar <= ?3) OR (br <= ?3 AND (ar IS NULL OR ar > ?4)) "
        "OR (ar <= ?3 AND (br IS NULL OR br > ?4))",
    };
    for (size_t i = 0; i < LEN(sql); i++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(ix->db, sql[i], -1, &s, NULL) != SQLITE_OK)
            return dberr(ix, err, "diff");
        sqlite3_bind_int64(s, 1, base);
        sqlite3_bind_int64(s, 2, adapted);
        if (sqlite3_bind_parameter_count(s) >= 3)
            sqlite3_bind_int(s, 3, hi);
        if (sqlite3_bind_parameter_count(s) >= 4)
            sqlite3_bind_int(s, 4, lo);
        int rc = run(ix, s, err, "diff");
        sqlite3_finalize(s);
        if (rc)
            return rc;
    }
    return PS_OK;
}

int
idx_annotate(Idx *ix, int64_t sae, int32_t latent, const char *name, const char *note, char *err)
{
    char tm[32];
    now_iso(tm, sizeof tm);
    sqlite3_stmt *s = st(ix, Q_ANN_PUT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, sae);
    sqlite3_bind_int(s, 2, latent);
    bind_text(s, 3, name);
    bind_text(s, 4, note);
    bind_text(s, 5, tm);
    return run(ix, s, err, "annotate");
}

int
idx_unannotate(Idx *ix, int64_t sae, int32_t latent, char *err)
{
    sqlite3_stmt *s = st(ix, Q_ANN_DEL, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, sae);
    sqlite3_bind_int(s, 2, latent);
    return run(ix, s, err, "remove annotation");
}

int
idx_annotation(Idx *ix, int64_t sae, int32_t latent, char *name, size_t name_cap, char *note,
               size_t note_cap, int *found, char *err)
{
    *found = 0;
    if (name_cap)
        name[0] = 0;
    if (note_cap)
        note[0] = 0;
    sqlite3_stmt *s = st(ix, Q_ANN_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, sae);
    sqlite3_bind_int(s, 2, latent);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW) {
        *found = 1;
        if (name_cap)
            col_text(s, 0, name, name_cap);
        if (note_cap)
            col_text(s, 1, note, note_cap);
    } else if (r != SQLITE_DONE) {
        rc = dberr(ix, err, "get annotation");
    }
    sqlite3_reset(s);
    return rc;
}

int
idx_save_query(Idx *ix, const char *name, const char *sql, const char *note, char *err)
{
    char tm[32];
    now_iso(tm, sizeof tm);
    sqlite3_stmt *s = st(ix, Q_SQ_PUT, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, name);
    bind_text(s, 2, sql);
    bind_text(s, 3, note);
    bind_text(s, 4, tm);
    return run(ix, s, err, "save query");
}

int
idx_put_progress(Idx *ix, const IdxProgress *p, const void *state, size_t state_n, char *err)
{
    char tm[32];
    now_iso(tm, sizeof tm);
    sqlite3_stmt *s = st(ix, Q_PROG_PUT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, p->model_id);
    sqlite3_bind_int64(s, 2, p->dataset_id);
    sqlite3_bind_int64(s, 3, p->sae_id);
    sqlite3_bind_int(s, 4, p->shard_i);
    sqlite3_bind_int(s, 5, p->shard_n);
    sqlite3_bind_int64(s, 6, p->batch);
    sqlite3_bind_int64(s, 7, p->n_done);
    sqlite3_bind_int(s, 8, p->done);
    if (state)
        sqlite3_bind_blob64(s, 9, state, state_n, SQLITE_STATIC);
    bind_text(s, 10, tm);
    return run(ix, s, err, "put progress");
}

int
idx_get_progress(Idx *ix, IdxProgress *p, int *found, void **state, size_t *state_n, char *err)
{
    *found = 0;
    if (state) {
        *state = NULL;
        *state_n = 0;
    }
    sqlite3_stmt *s = st(ix, Q_PROG_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, p->model_id);
    sqlite3_bind_int64(s, 2, p->dataset_id);
    sqlite3_bind_int64(s, 3, p->sae_id);
    sqlite3_bind_int(s, 4, p->shard_i);
    sqlite3_bind_int(s, 5, p->shard_n);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW) {
        *found = 1;
        p->batch = sqlite3_column_int64(s, 0);
        p->n_done = sqlite3_column_int64(s, 1);
        p->done = sqlite3_column_int(s, 2);
        if (state && sqlite3_column_type(s, 3) == SQLITE_BLOB) {
            size_t n = (size_t)sqlite3_column_bytes(s, 3);
            void *b = malloc(n ? n : 1);
            if (!b)
                rc = ps_seterr(err, PS_ENOMEM, "progress state of %zu bytes", n);
            else {
                memcpy(b, sqlite3_column_blob(s, 3), n);
                *state = b;
                *state_n = n;
            }
        }
    } else if (r != SQLITE_DONE) {
        rc = dberr(ix, err, "get progress");
    }
    sqlite3_reset(s);
    return rc;
}

/* ---- reads ---- */

static void
statset_row(sqlite3_stmt *s, IdxStatset *o)
{
    o->id = sqlite3_column_int64(s, 0);
    o->model_id = sqlite3_column_int64(s, 1);
    o->dataset_id = sqlite3_column_int64(s, 2);
    o->sae_id = sqlite3_column_int64(s, 3);
    col_text(s, 4, o->model, sizeof o->model);
    col_text(s, 5, o->kind, sizeof o->kind);
    col_text(s, 6, o->dataset, sizeof o->dataset);
    o->n_images = sqlite3_column_int64(s, 7);
    o->k_top = sqlite3_column_int(s, 8);
    o->tau = (float)sqlite3_column_double(s, 9);
    o->d_sae = sqlite3_column_int(s, 10);
    o->n_classes = sqlite3_column_int(s, 11);
    o->final = sqlite3_column_int(s, 12);
}

int
idx_statsets(Idx *ix, IdxStatset **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_SS_GET, err);
    if (!s)
        return PS_EDB;
    int r, cap = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        statset_row(s, &(*out)[(*n)++]);
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return dberr(ix, err, "list statsets");
    }
    return PS_OK;
}

int
idx_statset(Idx *ix, int64_t id, IdxStatset *out, char *err)
{
    sqlite3_stmt *s = st(ix, Q_SS_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, id);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        statset_row(s, out);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no statistics set %lld", ix->path, (long long)id);
    else
        rc = dberr(ix, err, "get statset");
    sqlite3_reset(s);
    return rc;
}

int
idx_find_statset(Idx *ix, const char *model, const char *dataset, IdxStatset *out, char *err)
{
    IdxStatset *all;
    int n, rc = idx_statsets(ix, &all, &n, err);
    if (rc)
        return rc;
    int best = -1;
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (int i = 0; i < n && best < 0; i++) {
            if (model ? strcmp(all[i].model, model) : (pass == 0 && strcmp(all[i].kind, "base")))
                continue;
            if (dataset && strcmp(all[i].dataset, dataset))
                continue;
            best = i;
        }
    if (best >= 0)
        *out = all[best];
    else
        rc = ps_seterr(err, PS_EUSAGE, "%s: no statistics for model %s, dataset %s", ix->path,
                       model ? model : "(any)", dataset ? dataset : "(any)");
    free(all);
    return rc;
}

int
idx_models(Idx *ix, IdxModel **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ix->db,
                           "SELECT id, name, kind, path, resolved, size, sha256, hook_layer, "
                           "n_tokens, d_model, extra FROM models ORDER BY id", -1, &s,
                           NULL) != SQLITE_OK)
        return dberr(ix, err, "list models");
    int r, cap = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        model_row(s, &(*out)[(*n)++]);
    }
    int rc = r == SQLITE_DONE ? PS_OK : dberr(ix, err, "list models");
    sqlite3_finalize(s);
    return rc;
}

static const char *const sort_names[] = { "latent", "freq", "mean", "max", "maxpatch",
                                          "entropy", "share", "std" };
static const char *const sort_cols[] = { "l.latent", "l.freq", "l.mean_act", "l.max_act",
                                         "l.max_patch", "l.entropy", "l.top_share",
                                         "l.label_std" };

int
idx_sort_parse(const char *s)
{
    for (size_t i = 0; i < LEN(sort_names); i++)
        if (!strcmp(s, sort_names[i]))
            return (int)i;
    return -1;
}

const char *
idx_sort_name(int sort)
{
    return sort >= 0 && sort < (int)LEN(sort_names) ? sort_names[sort] : "?";
}

void
idx_filter_init(IdxFilter *f)
{
    memset(f, 0, sizeof *f);
    f->min_freq = f->max_freq = f->min_mean = f->max_mean = NAN;
    f->min_entropy = f->max_entropy = NAN;
    f->top_class = -1;
}

static void
latent_row(sqlite3_stmt *s, IdxLatent *l)
{
    l->latent = sqlite3_column_int(s, 0);
    l->n_active = sqlite3_column_int64(s, 1);
    l->freq = sqlite3_column_double(s, 2);
    l->mean_act = col_real(s, 3);
    l->max_act = col_real(s, 4);
    l->max_patch = col_real(s, 5);
    l->entropy = col_real(s, 6);
    l->label_std = col_real(s, 7);
    l->top_share = col_real(s, 8);
    l->top_class = col_int_or(s, 9, -1);
    col_text(s, 10, l->top_class_name, sizeof l->top_class_name);
    col_text(s, 11, l->name, sizeof l->name);
}

int
idx_latents(Idx *ix, int64_t statset, int sort, int desc, const IdxFilter *f, int limit,
            int offset, IdxLatent **out, int *n, int64_t *total, char *err)
{
    *out = NULL;
    *n = 0;
    if (total)
        *total = 0;
    if (sort < 0 || sort >= (int)LEN(sort_cols))
        return ps_seterr(err, PS_EUSAGE, "unknown sort key %d", sort);
    IdxFilter none;
    if (!f) {
        idx_filter_init(&none);
        f = &none;
    }
    char sql[2048];
    int o = snprintf(sql, sizeof sql,
                     "SELECT l.latent, l.n_active, l.freq, l.mean_act, l.max_act, l.max_patch, "
                     "l.entropy, l.label_std, l.top_share, l.top_class, c.name, a.name, "
                     "count(*) OVER () FROM latent_stats l JOIN statsets s ON s.id = l.statset_id "
                     "LEFT JOIN classes c ON c.dataset_id = s.dataset_id AND c.idx = l.top_class "
                     "LEFT JOIN annotations a ON a.sae_id = s.sae_id AND a.latent = l.latent "
                     "WHERE l.statset_id = ?1");
#define ADD(...) (o += snprintf(sql + o, sizeof sql - (size_t)o, __VA_ARGS__))
    if (f->hide_dead)
        ADD(" AND l.n_active > 0");
    if (!isnan(f->min_freq))
        ADD(" AND l.freq >= ?2");
    if (!isnan(f->max_freq))
        ADD(" AND l.freq <= ?3");
    if (!isnan(f->min_mean))
        ADD(" AND l.mean_act >= ?4");
    if (!isnan(f->max_mean))
        ADD(" AND l.mean_act <= ?5");
    if (!isnan(f->min_entropy))
        ADD(" AND l.entropy >= ?6");
    if (!isnan(f->max_entropy))
        ADD(" AND l.entropy <= ?7");
    if (f->top_class >= 0)
        ADD(" AND l.top_class = ?8");
    if (f->search && f->search[0])
        ADD(" AND (instr(lower(a.name), lower(?9)) OR instr(lower(a.note), lower(?9)) OR "
            "instr(lower(c.name), lower(?9)))");
    if (f->annotated)
        ADD(" AND a.name IS NOT NULL");
    if (sort == IDX_SORT_LATENT)
        ADD(" ORDER BY l.latent %s", desc ? "DESC" : "");
    else
        ADD(" ORDER BY %s IS NULL, %s %s, l.latent", sort_cols[sort], sort_cols[sort],
            desc ? "DESC" : "");
    if (limit > 0)
        ADD(" LIMIT %d OFFSET %d", limit, offset > 0 ? offset : 0);
#undef ADD
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK)
        return dberr(ix, err, "list latents");
    sqlite3_bind_int64(s, 1, statset);
    bind_real(s, 2, f->min_freq);
    bind_real(s, 3, f->max_freq);
    bind_real(s, 4, f->min_mean);
    bind_real(s, 5, f->max_mean);
    bind_real(s, 6, f->min_entropy);
    bind_real(s, 7, f->max_entropy);
    sqlite3_bind_int(s, 8, f->top_class);
    bind_text(s, 9, f->search);
    int r, cap = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        latent_row(s, &(*out)[(*n)++]);
        if (total)
            *total = sqlite3_column_int64(s, 12);
    }
    int rc = PS_OK;
    if (r != SQLITE_DONE) {
        rc = dberr(ix, err, "list latents");
        free(*out);
        *out = NULL;
        *n = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

int
idx_latent(Idx *ix, int64_t statset, int32_t latent, IdxLatent *out, char *err)
{
    sqlite3_stmt *s = st(ix, Q_LAT_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, latent);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        latent_row(s, out);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no latent %d in statistics set %lld", ix->path,
                       latent, (long long)statset);
    else
        rc = dberr(ix, err, "get latent");
    sqlite3_reset(s);
    return rc;
}

int
idx_latent_top(Idx *ix, int64_t statset, int32_t latent, int kind, IdxTopImage *out, int cap,
               int *n, char *err)
{
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_TOP_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, latent);
    sqlite3_bind_int(s, 3, kind);
    sqlite3_bind_int(s, 4, cap);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        IdxTopImage *t = &out[(*n)++];
        t->rank = sqlite3_column_int(s, 0);
        t->image_id = sqlite3_column_int64(s, 1);
        t->pos = sqlite3_column_int64(s, 2);
        t->label = col_int_or(s, 3, -1);
        t->value = (float)sqlite3_column_double(s, 4);
        t->token = col_int_or(s, 5, -1);
    }
    sqlite3_reset(s);
    return r == SQLITE_DONE ? PS_OK : dberr(ix, err, "latent top");
}

int
idx_latent_labels(Idx *ix, int64_t statset, int32_t latent, IdxLabelCount *out, int cap, int *n,
                  char *err)
{
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_LAB_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, latent);
    sqlite3_bind_int(s, 3, cap);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        out[(*n)++] = (IdxLabelCount){ sqlite3_column_int(s, 0), sqlite3_column_int(s, 1),
                                       sqlite3_column_double(s, 2) };
    sqlite3_reset(s);
    return r == SQLITE_DONE ? PS_OK : dberr(ix, err, "latent labels");
}

int
idx_image(Idx *ix, int64_t image, IdxImage *out, char *err)
{
    sqlite3_stmt *s = st(ix, Q_IMG_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW) {
        out->id = image;
        out->dataset_id = sqlite3_column_int64(s, 0);
        out->pos = sqlite3_column_int64(s, 1);
        col_text(s, 2, out->path, sizeof out->path);
        out->label = col_int_or(s, 3, -1);
        out->grid = sqlite3_column_int(s, 4);
        col_text(s, 5, out->class_name, sizeof out->class_name);
        out->thumb_size = col_int_or(s, 6, 0);
    } else if (r == SQLITE_DONE) {
        rc = ps_seterr(err, PS_EUSAGE, "%s: no image %lld", ix->path, (long long)image);
    } else {
        rc = dberr(ix, err, "get image");
    }
    sqlite3_reset(s);
    return rc;
}

int
idx_image_at(Idx *ix, int64_t dataset, int64_t pos, int64_t *image, char *err)
{
    sqlite3_stmt *s = st(ix, Q_IMG_AT, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, dataset);
    sqlite3_bind_int64(s, 2, pos);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        *image = sqlite3_column_int64(s, 0);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no image at position %lld of dataset %lld", ix->path,
                       (long long)pos, (long long)dataset);
    else
        rc = dberr(ix, err, "image at");
    sqlite3_reset(s);
    return rc;
}

/* Copies blob column c of the current row into a malloc'd buffer. */
static int
col_blob_copy(sqlite3_stmt *s, int c, void **out, size_t *n, char *err)
{
    size_t len = (size_t)sqlite3_column_bytes(s, c);
    const void *p = sqlite3_column_blob(s, c);
    void *b = malloc(len ? len : 1);
    if (!b)
        return ps_seterr(err, PS_ENOMEM, "blob of %zu bytes", len);
    if (len)
        memcpy(b, p, len);
    *out = b;
    *n = len;
    return PS_OK;
}

int
idx_thumb(Idx *ix, int64_t image, void **jpeg, size_t *n, int *size, char *err)
{
    *jpeg = NULL;
    *n = 0;
    *size = 0;
    sqlite3_stmt *s = st(ix, Q_THUMB_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW) {
        *size = sqlite3_column_int(s, 0);
        rc = col_blob_copy(s, 1, jpeg, n, err);
    } else if (r != SQLITE_DONE) {
        rc = dberr(ix, err, "get thumbnail");
    }
    sqlite3_reset(s);
    return rc;
}

int
idx_predictions(Idx *ix, int64_t image, int64_t model, IdxPred *out, int cap, int *n, char *err)
{
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_PRED_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    sqlite3_bind_int64(s, 2, model);
    sqlite3_bind_int(s, 3, cap);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        IdxPred *p = &out[(*n)++];
        p->rank = sqlite3_column_int(s, 0);
        p->cls = sqlite3_column_int(s, 1);
        p->prob = (float)sqlite3_column_double(s, 2);
        col_text(s, 3, p->name, sizeof p->name);
    }
    sqlite3_reset(s);
    return r == SQLITE_DONE ? PS_OK : dberr(ix, err, "predictions");
}

int
idx_image_latents(Idx *ix, int64_t image, int64_t model, int64_t sae, IdxAct *out, int cap,
                  int *n, char *err)
{
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_IL_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    sqlite3_bind_int64(s, 2, model);
    sqlite3_bind_int64(s, 3, sae);
    sqlite3_bind_int(s, 4, cap);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        out[(*n)++] = (IdxAct){ sqlite3_column_int(s, 0), (float)sqlite3_column_double(s, 1) };
    sqlite3_reset(s);
    return r == SQLITE_DONE ? PS_OK : dberr(ix, err, "image latents");
}

/* Runs fn on the patch blob of (image, model, sae) in place; *have = 0 if none. */
static int
with_blob(Idx *ix, int64_t image, int64_t model, int64_t sae, int *have,
          int (*fn)(const uint8_t *, size_t, void *, char *), void *ctx, char *err)
{
    *have = 0;
    sqlite3_stmt *s = st(ix, Q_PATCH_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, image);
    sqlite3_bind_int64(s, 2, model);
    sqlite3_bind_int64(s, 3, sae);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW) {
        *have = 1;
        const uint8_t *p = sqlite3_column_blob(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        rc = fn(p, n, ctx, err);
        if (rc)
            ps_preferr(err, rc, "%s: image %lld", ix->path, (long long)image);
    } else if (r != SQLITE_DONE) {
        rc = dberr(ix, err, "get patches");
    }
    sqlite3_reset(s);
    return rc;
}

typedef struct TokCtx {
    int token, cap, n;
    IdxAct *out;
} TokCtx;

static int
tok_fn(const uint8_t *p, size_t n, void *c, char *err)
{
    TokCtx *t = c;
    return idx_blob_token(p, n, t->token, t->out, t->cap, &t->n, err);
}

int
idx_patch_latents(Idx *ix, int64_t image, int64_t model, int64_t sae, int token, IdxAct *out,
                  int cap, int *n, char *err)
{
    TokCtx c = { token, cap, 0, out };
    int have, rc = with_blob(ix, image, model, sae, &have, tok_fn, &c, err);
    *n = MIN(c.n, cap);
    return rc;
}

typedef struct MapCtx {
    int32_t latent;
    int cap, n_tok;
    float *map;
} MapCtx;

static int
map_fn(const uint8_t *p, size_t n, void *c, char *err)
{
    MapCtx *m = c;
    return idx_blob_map(p, n, m->latent, m->map, m->cap, &m->n_tok, err);
}

int
idx_latent_map(Idx *ix, int64_t image, int64_t model, int64_t sae, int32_t latent, float *map,
               int cap, int *n_tok, char *err)
{
    MapCtx c = { latent, cap, 0, map };
    int have, rc = with_blob(ix, image, model, sae, &have, map_fn, &c, err);
    *n_tok = c.n_tok;
    return rc;
}

typedef struct CopyCtx {
    uint8_t *p;
    size_t n;
} CopyCtx;

static int
copy_fn(const uint8_t *p, size_t n, void *c, char *err)
{
    CopyCtx *x = c;
    void *b;
    int rc = 0;
    if (!p)
        n = 0;
    b = malloc(n ? n : 1);
    if (!b)
        return ps_seterr(err, PS_ENOMEM, "blob of %zu bytes", n);
    if (n)
        memcpy(b, p, n);
    x->p = b;
    x->n = n;
    return rc;
}

int
idx_patch_blob(Idx *ix, int64_t image, int64_t model, int64_t sae, uint8_t **blob, size_t *n,
               char *err)
{
    CopyCtx c = { NULL, 0 };
    int have, rc = with_blob(ix, image, model, sae, &have, copy_fn, &c, err);
    *blob = c.p;
    *n = c.n;
    return rc;
}

int
idx_class_top(Idx *ix, int64_t statset, int cls, IdxClassLatent *out, int cap, int *n, char *err)
{
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_CT_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, cls);
    sqlite3_bind_int(s, 3, cap);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        IdxClassLatent *c = &out[(*n)++];
        c->rank = sqlite3_column_int(s, 0);
        c->latent = sqlite3_column_int(s, 1);
        c->n_tokens = sqlite3_column_int64(s, 2);
        col_text(s, 3, c->name, sizeof c->name);
    }
    sqlite3_reset(s);
    return r == SQLITE_DONE ? PS_OK : dberr(ix, err, "class top");
}

int
idx_class_count(Idx *ix, int64_t statset, int cls, int32_t latent, int64_t *n_tokens, char *err)
{
    *n_tokens = 0;
    sqlite3_stmt *s = st(ix, Q_CC_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, statset);
    sqlite3_bind_int(s, 2, cls);
    sqlite3_bind_int(s, 3, latent);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *n_tokens = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : dberr(ix, err, "class count");
}

int
idx_class_find(Idx *ix, int64_t dataset, const char *name, int *cls, char *err)
{
    sqlite3_stmt *s = st(ix, Q_CLS_FIND, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, dataset);
    bind_text(s, 2, name);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        *cls = sqlite3_column_int(s, 0);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no class named '%s'", ix->path, name);
    else
        rc = dberr(ix, err, "find class");
    sqlite3_reset(s);
    return rc;
}

int
idx_class_name(Idx *ix, int64_t dataset, int cls, char *buf, size_t cap, char *err)
{
    buf[0] = 0;
    sqlite3_stmt *s = st(ix, Q_CLS_NAME, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, dataset);
    sqlite3_bind_int(s, 2, cls);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW)
        col_text(s, 0, buf, cap);
    else if (r == SQLITE_DONE)
        rc = ps_seterr(err, PS_EUSAGE, "%s: no class %d", ix->path, cls);
    else
        rc = dberr(ix, err, "class name");
    sqlite3_reset(s);
    return rc;
}

int
idx_class_size(Idx *ix, int64_t dataset, int cls, int64_t *n, char *err)
{
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_CLS_SIZE, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, dataset);
    sqlite3_bind_int(s, 2, cls);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return r == SQLITE_ROW ? PS_OK : dberr(ix, err, "class size");
}

int
idx_evals(Idx *ix, int64_t model, int64_t dataset, int cls, IdxEval **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_EVAL_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, model);
    sqlite3_bind_int64(s, 2, dataset);
    sqlite3_bind_int(s, 3, cls);
    int r, cap = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        IdxEval *e = &(*out)[(*n)++];
        e->model_id = sqlite3_column_int64(s, 0);
        e->dataset_id = sqlite3_column_int64(s, 1);
        e->sae_id = sqlite3_column_int64(s, 2);
        e->select_model_id = sqlite3_column_int64(s, 3);
        e->cls = sqlite3_column_int(s, 4);
        col_text(s, 5, e->mode, sizeof e->mode);
        e->k = sqlite3_column_int(s, 6);
        e->n_images = sqlite3_column_int64(s, 7);
        e->accuracy = sqlite3_column_double(s, 8);
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return dberr(ix, err, "evals");
    }
    return PS_OK;
}

int
idx_diff_rows(Idx *ix, int64_t base, int64_t adapted, int cls, IdxDiffRow **out, int *n,
              char *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = st(ix, Q_DIFF_GET, err);
    if (!s)
        return PS_EDB;
    sqlite3_bind_int64(s, 1, base);
    sqlite3_bind_int64(s, 2, adapted);
    sqlite3_bind_int(s, 3, cls);
    int r, cap = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        IdxDiffRow *d = &(*out)[(*n)++];
        d->cls = sqlite3_column_int(s, 0);
        col_text(s, 1, d->grp, sizeof d->grp);
        d->latent = sqlite3_column_int(s, 2);
        d->base_rank = col_int_or(s, 3, 0);
        d->adapted_rank = col_int_or(s, 4, 0);
        d->base_count = sqlite3_column_int64(s, 5);
        d->adapted_count = sqlite3_column_int64(s, 6);
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return dberr(ix, err, "diff rows");
    }
    return PS_OK;
}

/* ---- shards ---- */

int
idx_find_dataset(Idx *ix, const char *name, IdxDataset *out, char *err)
{
    sqlite3_stmt *s = st(ix, Q_DS_FIND, err);
    if (!s)
        return PS_EDB;
    bind_text(s, 1, name);
    int r = sqlite3_step(s), rc = PS_OK;
    if (r == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        snprintf(out->name, sizeof out->name, "%s", name);
        col_text(s, 1, out->spec, sizeof out->spec);
        out->n_images = sqlite3_column_int64(s, 2);
        out->n_classes = sqlite3_column_int(s, 3);
    } else if (r == SQLITE_DONE) {
        rc = ps_seterr(err, PS_EUSAGE, "%s: no dataset named '%s'", ix->path, name);
    } else {
        rc = dberr(ix, err, "find dataset");
    }
    sqlite3_reset(s);
    return rc;
}

void
idx_states_free(IdxState *s, int n)
{
    for (int i = 0; s && i < n; i++)
        free(s[i].state);
    free(s);
}

int
idx_states(Idx *ix, IdxState **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ix->db,
                           "SELECT p.model_id, p.dataset_id, p.sae_id, p.shard_i, p.shard_n, "
                           "p.batch, p.n_done, p.done, m.name, d.name, a.path, a.sha256, p.state "
                           "FROM progress p JOIN models m ON m.id = p.model_id JOIN datasets d ON "
                           "d.id = p.dataset_id JOIN saes a ON a.id = p.sae_id ORDER BY "
                           "p.model_id, p.dataset_id, p.sae_id, p.shard_n, p.shard_i", -1, &s,
                           NULL) != SQLITE_OK)
        return dberr(ix, err, "list progress");
    int r, cap = 0, rc = PS_OK;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        IdxState *x = &(*out)[(*n)++];
        memset(x, 0, sizeof *x);
        x->p.model_id = sqlite3_column_int64(s, 0);
        x->p.dataset_id = sqlite3_column_int64(s, 1);
        x->p.sae_id = sqlite3_column_int64(s, 2);
        x->p.shard_i = sqlite3_column_int(s, 3);
        x->p.shard_n = sqlite3_column_int(s, 4);
        x->p.batch = sqlite3_column_int64(s, 5);
        x->p.n_done = sqlite3_column_int64(s, 6);
        x->p.done = sqlite3_column_int(s, 7);
        col_text(s, 8, x->model, sizeof x->model);
        col_text(s, 9, x->dataset, sizeof x->dataset);
        col_text(s, 10, x->sae_path, sizeof x->sae_path);
        col_text(s, 11, x->sae_sha256, sizeof x->sae_sha256);
        if (sqlite3_column_type(s, 12) == SQLITE_BLOB &&
            (rc = col_blob_copy(s, 12, (void **)&x->state, &x->state_n, err)))
            break;
    }
    if (!rc && r != SQLITE_DONE)
        rc = dberr(ix, err, "list progress");
    sqlite3_finalize(s);
    if (rc) {
        idx_states_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* Counts rows of a query (one integer column). */
static int
count_of(Idx *ix, const char *sql, int64_t *v, char *err)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK)
        return dberr(ix, err, "merge");
    int r = sqlite3_step(s);
    *v = r == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : dberr(ix, err, "merge");
}

int
idx_copy_shard(Idx *ix, const char *shard, char *err)
{
    /* check the shard on its own first: version, readable */
    Idx *sh;
    int rc = idx_open_readonly(&sh, shard, err);
    if (rc)
        return rc;
    idx_close(sh);
    if (!sqlite3_get_autocommit(ix->db))
        return ps_seterr(err, PS_EUSAGE, "%s: idx_copy_shard inside a transaction", ix->path);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ix->db, "ATTACH ?1 AS shard", -1, &s, NULL) != SQLITE_OK)
        return dberr(ix, err, "attach");
    bind_text(s, 1, shard);
    rc = run(ix, s, err, "attach");
    sqlite3_finalize(s);
    if (rc)
        return ps_preferr(err, rc, "%s", shard);
    int64_t bad = 0;
    rc = idx_begin(ix, err);
    if (!rc)
        rc = count_of(ix,
                  "SELECT count(*) FROM shard.models sm JOIN main.models m ON m.name = sm.name "
                  "WHERE m.sha256 IS NOT sm.sha256 OR m.kind <> sm.kind", &bad, err);
    if (!rc && bad)
        rc = ps_seterr(err, PS_EREFUSED, "%s: a model has the same name as one in %s but another "
                       "checkpoint", shard, ix->path);
    if (!rc)
        rc = count_of(ix,
                      "SELECT count(*) FROM shard.datasets sd JOIN main.datasets d ON d.name = "
                      "sd.name WHERE d.spec IS NOT sd.spec OR d.n_images IS NOT sd.n_images",
                      &bad, err);
    if (!rc && bad)
        rc = ps_seterr(err, PS_EREFUSED, "%s: a dataset has the same name as one in %s but "
                       "another spec or size", shard, ix->path);
    static const char *const steps[] = {
        "CREATE TEMP TABLE IF NOT EXISTS map_model(old INTEGER PRIMARY KEY, new INTEGER)",
        "CREATE TEMP TABLE IF NOT EXISTS map_sae(old INTEGER PRIMARY KEY, new INTEGER)",
        "CREATE TEMP TABLE IF NOT EXISTS map_ds(old INTEGER PRIMARY KEY, new INTEGER)",
        "CREATE TEMP TABLE IF NOT EXISTS map_img(old INTEGER PRIMARY KEY, new INTEGER)",
        "DELETE FROM map_model", "DELETE FROM map_sae", "DELETE FROM map_ds", "DELETE FROM map_img",
        "INSERT INTO main.models(name, kind, path, resolved, size, sha256, hook_layer, n_tokens, "
        "d_model, extra) SELECT name, kind, path, resolved, size, sha256, hook_layer, n_tokens, "
        "d_model, extra FROM shard.models WHERE name NOT IN (SELECT name FROM main.models)",
        "INSERT INTO map_model SELECT sm.id, m.id FROM shard.models sm JOIN main.models m "
        "ON m.name = sm.name",
        "INSERT INTO main.saes(path, sha256, d_in, d_sae, hook_layer, trained_on) SELECT path, "
        "sha256, d_in, d_sae, hook_layer, trained_on FROM shard.saes sa WHERE NOT EXISTS "
        "(SELECT 1 FROM main.saes a WHERE a.path = sa.path AND a.sha256 IS sa.sha256)",
        "INSERT INTO map_sae SELECT sa.id, a.id FROM shard.saes sa JOIN main.saes a ON "
        "a.path = sa.path AND a.sha256 IS sa.sha256",
        "INSERT INTO main.datasets(name, spec, n_images, n_classes) SELECT name, spec, n_images, "
        "n_classes FROM shard.datasets WHERE name NOT IN (SELECT name FROM main.datasets)",
        "INSERT INTO map_ds SELECT sd.id, d.id FROM shard.datasets sd JOIN main.datasets d ON "
        "d.name = sd.name",
        "INSERT OR REPLACE INTO main.classes(dataset_id, idx, name) SELECT m.new, c.idx, c.name "
        "FROM shard.classes c JOIN map_ds m ON m.old = c.dataset_id",
        NULL, /* here: refuse overlapping shards */
        "INSERT INTO main.images(dataset_id, pos, path, label, grid) SELECT m.new, i.pos, i.path, "
        "i.label, i.grid FROM shard.images i JOIN map_ds m ON m.old = i.dataset_id ORDER BY i.id",
        "INSERT INTO map_img SELECT i.id, j.id FROM shard.images i JOIN map_ds m ON m.old = "
        "i.dataset_id JOIN main.images j ON j.dataset_id = m.new AND j.pos = i.pos",
        "INSERT INTO main.thumbnails(image_id, size, jpeg) SELECT m.new, t.size, t.jpeg FROM "
        "shard.thumbnails t JOIN map_img m ON m.old = t.image_id",
        "INSERT INTO main.predictions(image_id, model_id, rank, class, prob) SELECT mi.new, "
        "mm.new, p.rank, p.class, p.prob FROM shard.predictions p JOIN map_img mi ON mi.old = "
        "p.image_id JOIN map_model mm ON mm.old = p.model_id",
        "INSERT INTO main.patches(image_id, model_id, sae_id, blob) SELECT mi.new, mm.new, "
        "ms.new, p.blob FROM shard.patches p JOIN map_img mi ON mi.old = p.image_id JOIN "
        "map_model mm ON mm.old = p.model_id JOIN map_sae ms ON ms.old = p.sae_id",
        "INSERT INTO main.image_latents(image_id, model_id, sae_id, rank, latent, value) SELECT "
        "mi.new, mm.new, ms.new, l.rank, l.latent, l.value FROM shard.image_latents l JOIN "
        "map_img mi ON mi.old = l.image_id JOIN map_model mm ON mm.old = l.model_id JOIN map_sae "
        "ms ON ms.old = l.sae_id",
        "INSERT OR REPLACE INTO main.eval(model_id, dataset_id, sae_id, select_model_id, class, "
        "mode, k, n_images, accuracy) SELECT m1.new, d.new, a.new, m2.new, e.class, e.mode, e.k, "
        "e.n_images, e.accuracy FROM shard.eval e JOIN map_model m1 ON m1.old = e.model_id JOIN "
        "map_ds d ON d.old = e.dataset_id JOIN map_sae a ON a.old = e.sae_id JOIN map_model m2 "
        "ON m2.old = e.select_model_id",
        "INSERT OR IGNORE INTO main.annotations(sae_id, latent, name, note, time) SELECT a.new, "
        "n.latent, n.name, n.note, n.time FROM shard.annotations n JOIN map_sae a ON a.old = "
        "n.sae_id",
        "INSERT OR IGNORE INTO main.saved_queries(name, sql, note, time) SELECT name, sql, note, "
        "time FROM shard.saved_queries",
    };
    for (size_t i = 0; i < LEN(steps) && !rc; i++) {
        char *msg = NULL;
        if (!steps[i]) {
            int64_t overlap = 0;
            rc = count_of(ix,
                          "SELECT count(*) FROM shard.images i JOIN map_ds m ON m.old = "
                          "i.dataset_id JOIN main.images j ON j.dataset_id = m.new AND j.pos = "
                          "i.pos", &overlap, err);
            if (!rc && overlap)
                rc = ps_seterr(err, PS_EREFUSED,
                               "%s: %lld images are already in %s (shards must not overlap)",
                               shard, (long long)overlap, ix->path);
            continue;
        }
        if (sqlite3_exec(ix->db, steps[i], NULL, NULL, &msg) != SQLITE_OK) {
            rc = ps_seterr(err, PS_EDB, "%s: merging into %s: %s", shard, ix->path,
                           msg ? msg : sqlite3_errmsg(ix->db));
            sqlite3_free(msg);
        }
    }
    if (!rc)
        rc = idx_commit(ix, err);
    else
        idx_rollback(ix);
    sqlite3_exec(ix->db, "DETACH shard", NULL, NULL, NULL);
    return rc;
}
