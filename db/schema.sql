-- SPDX-License-Identifier: MIT
--
-- db/schema.sql - the patchsae index: one SQLite file holding everything the
-- explorer (patchsae-tui), `patchsae query` and a plain `sqlite3` session need.
-- It is compiled into the binary (build/gen/schema_sql.h) and applied by
-- idx_open() to an empty file. The version below is PRAGMA user_version;
-- idx_open refuses any other version with a message naming both versions.
--
-- Vocabulary: a "model" is one CLIP (base, or adapted with MaPLe prompts);
-- an "SAE" is one sparse autoencoder; a "dataset" is one list of images; a
-- "statset" is the statistics of one SAE on one model's activations over one
-- dataset (the unit PatchSAE computes with compute_sae_feature_data.py).
-- Latents are 0-based SAE latent indices; tokens are 0-based (0 = CLS, then
-- the patches row-major, then MaPLe prompt tokens if any); class indices are
-- 0-based positions in the dataset's class list. NULL in a statistic means
-- "undefined" (e.g. the mean activation of a dead latent).
--
-- Example questions (the views at the end make them short):
--   -- latents mostly one class under the adapted model but not under the base:
--   SELECT latent, adapted_top_class_name, adapted_top_share, base_top_share
--     FROM latent_compare WHERE adapted_top_share >= 0.8 AND base_top_share < 0.2;
--   -- the 20 most frequent latents with their annotation:
--   SELECT latent, freq, mean_act, entropy, top_class_name, name
--     FROM latent_summary WHERE model = 'clip' ORDER BY freq DESC LIMIT 20;
--   -- the top latents of class "tench" under each model:
--   SELECT model, rank, latent, n_tokens FROM class_latents WHERE class_name = 'tench';

PRAGMA user_version = 1;

-- Free-form facts about the index: "created" (ISO time), "patchsae_version",
-- "blob_format" (the patch blob format, "PSP1"), "k_per_token" (the top-K
-- latents kept per token in patch blobs), and whatever a builder records.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,  -- name of the fact
    value TEXT               -- its value, as text
);

-- The CLIP models whose activations are indexed.
CREATE TABLE models (
    id         INTEGER PRIMARY KEY,  -- referenced by every per-model table
    name       TEXT NOT NULL UNIQUE, -- short name used on command lines ("clip", "maple")
    kind       TEXT NOT NULL CHECK (kind IN ('base', 'adapted')), -- base CLIP or adapted (MaPLe)
    path       TEXT,                 -- the model path exactly as given on the command line
    resolved   TEXT,                 -- the absolute path it resolved to
    size       INTEGER,              -- size in bytes of the weights file
    sha256     TEXT,                 -- hex sha256 of the weights file (adapted: of the MaPLe checkpoint)
    hook_layer INTEGER,              -- 0-based vision block whose residual output is read
    n_tokens   INTEGER,              -- tokens per image T (1 + grid^2, + MaPLe prompt tokens)
    d_model    INTEGER,              -- residual width D
    extra      TEXT                  -- JSON object: anything else (base model of an adapted one, n_ctx, ...)
);

-- The sparse autoencoders.
CREATE TABLE saes (
    id         INTEGER PRIMARY KEY,  -- referenced by per-SAE tables
    path       TEXT NOT NULL,        -- the SAE path as given
    sha256     TEXT,                 -- hex sha256 of the SAE file
    d_in       INTEGER NOT NULL,     -- input width (= the model's d_model)
    d_sae      INTEGER NOT NULL,     -- number of latents S
    hook_layer INTEGER,              -- the layer it was trained on
    trained_on TEXT,                 -- name or path of the model it was trained on
    UNIQUE (path, sha256)
);

-- The image collections.
CREATE TABLE datasets (
    id        INTEGER PRIMARY KEY,   -- referenced by images, classes and statsets
    name      TEXT NOT NULL UNIQUE,  -- short name ("fashion-mnist-test")
    spec      TEXT,                  -- how it was given (folder path, manifest, IDX file, ...)
    n_images  INTEGER,               -- number of images in the whole dataset (all shards)
    n_classes INTEGER                -- number of classes in its class list
);

-- Class names of each dataset.
CREATE TABLE classes (
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, -- the dataset
    idx        INTEGER NOT NULL,     -- 0-based class index (the label value)
    name       TEXT NOT NULL,        -- human-readable class name
    PRIMARY KEY (dataset_id, idx)
) WITHOUT ROWID;

-- One row per indexed image. Image ids are assigned by the index; (dataset, pos)
-- is the stable identity that shards and rebuilds agree on.
CREATE TABLE images (
    id         INTEGER PRIMARY KEY,  -- referenced by every per-image table
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, -- its dataset
    pos        INTEGER NOT NULL,     -- 0-based position in the dataset's order
    path       TEXT,                 -- source file (or "file.idx#123" for IDX datasets)
    label      INTEGER,              -- true class index, NULL if unlabelled
    grid       INTEGER NOT NULL,     -- patch grid side (14 for ViT-B/16 at 224); patch p = token 1+p
    UNIQUE (dataset_id, pos)
);

-- Thumbnails, kept apart from `images` so that scans of image rows stay small.
CREATE TABLE thumbnails (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, -- the image
    size     INTEGER NOT NULL,       -- side in pixels: the preprocessed crop, so the patch grid lines up
    jpeg     BLOB NOT NULL           -- JPEG file bytes
);

-- Top-5 zero-shot predictions of each model on each image.
CREATE TABLE predictions (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, -- the image
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, -- the model that predicted
    rank     INTEGER NOT NULL CHECK (rank BETWEEN 1 AND 5),           -- 1 = best
    class    INTEGER NOT NULL,       -- predicted class index
    prob     REAL NOT NULL,          -- softmax probability over the class list
    PRIMARY KEY (image_id, model_id, rank)
) WITHOUT ROWID;

-- Per-token SAE activations of an image under a model, in the patch blob format
-- "PSP1" (see include/idx.h: top-K latents per token, u16/u24 latent index,
-- 8-bit log-quantised value). Answers "which latents fire on patch p" and "where
-- does latent s fire on this image".
CREATE TABLE patches (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, -- the image
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, -- the model
    sae_id   INTEGER NOT NULL REFERENCES saes(id) ON DELETE CASCADE,   -- the SAE
    blob     BLOB NOT NULL,          -- PSP1 blob
    PRIMARY KEY (image_id, model_id, sae_id)
);

-- Top latents of each image by image-level activation (mean over all tokens, CLS
-- and prompt tokens included), exact values, for the Image view.
CREATE TABLE image_latents (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, -- the image
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, -- the model
    sae_id   INTEGER NOT NULL REFERENCES saes(id) ON DELETE CASCADE,   -- the SAE
    rank     INTEGER NOT NULL,       -- 1 = highest image-level activation
    latent   INTEGER NOT NULL,       -- latent index
    value    REAL NOT NULL,          -- image-level activation (> 0)
    PRIMARY KEY (image_id, model_id, sae_id, rank)
) WITHOUT ROWID;

-- One set of statistics: an SAE on a model's activations over a dataset.
CREATE TABLE statsets (
    id         INTEGER PRIMARY KEY,  -- referenced by the per-latent and per-class tables
    model_id   INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,   -- the model
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, -- the dataset
    sae_id     INTEGER NOT NULL REFERENCES saes(id) ON DELETE CASCADE,     -- the SAE
    k_top      INTEGER NOT NULL,     -- top images kept per latent (default 16)
    tau        REAL NOT NULL,        -- class-count threshold (default 0.2)
    n_images   INTEGER NOT NULL DEFAULT 0, -- images accumulated
    final      INTEGER NOT NULL DEFAULT 0, -- 1 once the per-latent tables below are written
    UNIQUE (model_id, dataset_id, sae_id)
);

-- Per-latent statistics (PatchSAE compute_sae_feature_data.py, paper §3.2).
-- Image-level activation a(i,s) = sum over all T tokens of f(i,t,s) / T.
CREATE TABLE latent_stats (
    statset_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- the statset
    latent     INTEGER NOT NULL,     -- latent index
    n_active   INTEGER NOT NULL,     -- images with a(i,s) > 0
    freq       REAL NOT NULL,        -- n_active / n_images (PatchSAE "sparsity")
    mean_act   REAL,                 -- sum a(i,s) / n_active; NULL if dead
    max_act    REAL,                 -- max over images of a(i,s); NULL if dead
    max_patch  REAL,                 -- max over images and tokens of f(i,t,s); NULL if dead
    entropy    REAL,                 -- label entropy of the top-k images (see top_share); -1 if fewer
                                     -- than k labelled top images; NULL if dead
    label_std  REAL,                 -- std of the class indices of the labelled top images; NULL if none
    top_class  INTEGER,              -- most frequent class among the top-k images; NULL if none
    top_share  REAL,                 -- share of the top-k images with that class (count / images kept)
    PRIMARY KEY (statset_id, latent)
) WITHOUT ROWID;
-- entropy: p_c = (sum of top values with label c) / (sum of top values),
-- H = -sum p_c ln(p_c + 1e-9), over the top-k images by image-level activation.

-- Top-k images of each latent, two rankings.
CREATE TABLE latent_top (
    statset_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- the statset
    latent     INTEGER NOT NULL,     -- latent index
    kind       INTEGER NOT NULL CHECK (kind IN (0, 1)), -- 0: by image-level activation, 1: by max patch
    rank       INTEGER NOT NULL,     -- 1 = highest; ties broken by lower dataset position
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, -- the image
    value      REAL NOT NULL,        -- kind 0: a(i,s); kind 1: max over tokens of f(i,t,s)
    token      INTEGER,              -- kind 1: the token of that maximum (lowest on ties); kind 0: NULL
    PRIMARY KEY (statset_id, latent, kind, rank)
) WITHOUT ROWID;

-- Label distribution of the top-k images (kind 0) of each latent.
CREATE TABLE latent_labels (
    statset_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- the statset
    latent     INTEGER NOT NULL,     -- latent index
    class      INTEGER NOT NULL,     -- class index
    n          INTEGER NOT NULL,     -- top images with that label
    weight     REAL NOT NULL,        -- p_c: their share of the summed top values
    PRIMARY KEY (statset_id, latent, class)
) WITHOUT ROWID;

-- PatchSAE class-level counts (compute_class_wise_sae_activation.py, paper Eq. 4-5):
-- number of (image, token) pairs of the class with f(i,t,s) > tau. Only rows with
-- n_tokens > 0 are stored.
CREATE TABLE class_counts (
    statset_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- the statset
    class      INTEGER NOT NULL,     -- class index
    latent     INTEGER NOT NULL,     -- latent index
    n_tokens   INTEGER NOT NULL,     -- (image, token) pairs above tau
    act_sum    REAL NOT NULL,        -- sum of a(i,s) over the class's images
    PRIMARY KEY (statset_id, class, latent)
) WITHOUT ROWID;

-- Top latents of each class by class-level count (PatchSAE's argsort of
-- cls_sae_cnt[c]; ties broken by lower latent index).
CREATE TABLE class_top (
    statset_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- the statset
    class      INTEGER NOT NULL,     -- class index
    rank       INTEGER NOT NULL,     -- 1 = most tokens above tau
    latent     INTEGER NOT NULL,     -- latent index
    n_tokens   INTEGER NOT NULL,     -- its class-level count
    PRIMARY KEY (statset_id, class, rank)
) WITHOUT ROWID;

-- Classification accuracy with top-k latent masking (PatchSAE §4.1; `patchsae eval`).
CREATE TABLE eval (
    model_id        INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,   -- model classified with
    dataset_id      INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, -- dataset evaluated
    sae_id          INTEGER NOT NULL REFERENCES saes(id) ON DELETE CASCADE,     -- SAE patched in
    select_model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,   -- model whose class
                                     -- counts chose the latents (= model_id unless crossed, Fig. 5c)
    class     INTEGER NOT NULL,      -- class index; -1 = all classes
    mode      TEXT NOT NULL CHECK (mode IN ('orig', 'recon', 'on', 'off', 'random', 'dataset')),
                                     -- orig: no SAE; recon: full reconstruction; on/off: only / all
                                     -- but the class's top-k; random / dataset: baselines of size k
    k         INTEGER NOT NULL,      -- number of latents selected (0 for orig/recon)
    n_images  INTEGER NOT NULL,      -- images evaluated
    accuracy  REAL NOT NULL,         -- percent correct
    PRIMARY KEY (model_id, dataset_id, sae_id, select_model_id, class, mode, k)
) WITHOUT ROWID;

-- Per-class remapping groups between a base and an adapted statset (paper §4.2.1,
-- Table 1): high = in the top-hi of both; high_low = top-hi for base, outside the
-- top-lo for adapted; low_high = the reverse. Written by idx_diff_compute.
CREATE TABLE diff_groups (
    base_id    INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- base statset
    adapted_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- adapted statset
    class      INTEGER NOT NULL,     -- class index
    grp        TEXT NOT NULL CHECK (grp IN ('high', 'high_low', 'low_high')), -- the group
    latent     INTEGER NOT NULL,     -- latent index
    base_rank    INTEGER,            -- rank in the base class_top (NULL if beyond what is stored)
    adapted_rank INTEGER,            -- rank in the adapted class_top (NULL likewise)
    base_count    INTEGER NOT NULL,  -- base class-level count
    adapted_count INTEGER NOT NULL,  -- adapted class-level count
    PRIMARY KEY (base_id, adapted_id, class, grp, latent)
) WITHOUT ROWID;

-- Parameters of each diff_groups computation.
CREATE TABLE diffs (
    base_id    INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- base statset
    adapted_id INTEGER NOT NULL REFERENCES statsets(id) ON DELETE CASCADE, -- adapted statset
    hi         INTEGER NOT NULL,     -- "high" bound (top-50 in the paper)
    lo         INTEGER NOT NULL,     -- "low" bound (outside the top-100)
    PRIMARY KEY (base_id, adapted_id)
) WITHOUT ROWID;

-- User annotations: a name and a note per latent of an SAE.
CREATE TABLE annotations (
    sae_id INTEGER NOT NULL REFERENCES saes(id) ON DELETE CASCADE, -- the SAE
    latent INTEGER NOT NULL,         -- latent index
    name   TEXT NOT NULL,            -- short name ("granny smith apple")
    note   TEXT,                     -- free text
    time   TEXT NOT NULL,            -- ISO 8601 UTC of the last change
    PRIMARY KEY (sae_id, latent)
) WITHOUT ROWID;

-- Saved queries (explorer `:sql`, or by hand), shared with the index.
CREATE TABLE saved_queries (
    name TEXT PRIMARY KEY,           -- short name
    sql  TEXT NOT NULL,              -- the SELECT
    note TEXT,                       -- what it answers
    time TEXT NOT NULL               -- ISO 8601 UTC when saved
);

-- Build progress for `index --resume`: one row per (model, dataset, SAE, shard).
-- The accumulator snapshot and every image row up to n_done are committed in the
-- same transaction, so a killed build resumes from n_done with identical results.
CREATE TABLE progress (
    model_id   INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,   -- the model
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, -- the dataset
    sae_id     INTEGER NOT NULL REFERENCES saes(id) ON DELETE CASCADE,     -- the SAE
    shard_i    INTEGER NOT NULL,     -- this shard (0-based)
    shard_n    INTEGER NOT NULL,     -- number of shards (1 = unsharded)
    batch      INTEGER NOT NULL,     -- last committed batch (0-based; -1 = none)
    n_done     INTEGER NOT NULL,     -- images of this shard accumulated so far
    done       INTEGER NOT NULL DEFAULT 0, -- 1 when the shard is complete
    state      BLOB,                 -- stats_save() snapshot of the accumulator (zlib)
    time       TEXT NOT NULL,        -- ISO 8601 UTC of the last commit
    PRIMARY KEY (model_id, dataset_id, sae_id, shard_i, shard_n)
) WITHOUT ROWID;

CREATE INDEX images_label ON images(dataset_id, label);
CREATE INDEX latent_stats_freq ON latent_stats(statset_id, freq);
CREATE INDEX latent_stats_mean ON latent_stats(statset_id, mean_act);
CREATE INDEX latent_stats_max ON latent_stats(statset_id, max_act);
CREATE INDEX latent_stats_entropy ON latent_stats(statset_id, entropy);
CREATE INDEX latent_top_image ON latent_top(image_id);
CREATE INDEX class_counts_latent ON class_counts(statset_id, latent);
CREATE INDEX class_top_latent ON class_top(statset_id, latent);

-- Statsets with readable names.
CREATE VIEW statset_names AS
SELECT s.id AS statset_id, m.name AS model, m.kind AS kind, d.name AS dataset, s.sae_id,
       s.n_images, s.k_top, s.tau, s.final
  FROM statsets s JOIN models m ON m.id = s.model_id JOIN datasets d ON d.id = s.dataset_id;

-- One row per latent and statset, with model and dataset names, the top class
-- name and the annotation.
CREATE VIEW latent_summary AS
SELECT n.statset_id, n.model, n.kind, n.dataset, l.latent, l.n_active, l.freq, l.mean_act,
       l.max_act, l.max_patch, l.entropy, l.label_std, l.top_class, c.name AS top_class_name,
       l.top_share, a.name AS name, a.note AS note
  FROM latent_stats l
  JOIN statset_names n ON n.statset_id = l.statset_id
  JOIN statsets s ON s.id = l.statset_id
  LEFT JOIN classes c ON c.dataset_id = s.dataset_id AND c.idx = l.top_class
  LEFT JOIN annotations a ON a.sae_id = s.sae_id AND a.latent = l.latent;

-- Each latent under a base and an adapted model, same dataset and SAE, side by side
-- (one row per base/adapted statset pair and latent), with deltas adapted - base.
CREATE VIEW latent_compare AS
SELECT b.id AS base_id, a.id AS adapted_id, mb.name AS base_model, ma.name AS adapted_model,
       d.name AS dataset, lb.latent,
       lb.freq AS base_freq, la.freq AS adapted_freq, la.freq - lb.freq AS d_freq,
       lb.mean_act AS base_mean, la.mean_act AS adapted_mean, la.mean_act - lb.mean_act AS d_mean,
       lb.entropy AS base_entropy, la.entropy AS adapted_entropy,
       lb.top_class AS base_top_class, cb.name AS base_top_class_name, lb.top_share AS base_top_share,
       la.top_class AS adapted_top_class, ca.name AS adapted_top_class_name,
       la.top_share AS adapted_top_share
  FROM statsets b
  JOIN models mb ON mb.id = b.model_id AND mb.kind = 'base'
  JOIN statsets a ON a.dataset_id = b.dataset_id AND a.sae_id = b.sae_id AND a.id <> b.id
  JOIN models ma ON ma.id = a.model_id AND ma.kind = 'adapted'
  JOIN datasets d ON d.id = b.dataset_id
  JOIN latent_stats lb ON lb.statset_id = b.id
  JOIN latent_stats la ON la.statset_id = a.id AND la.latent = lb.latent
  LEFT JOIN classes cb ON cb.dataset_id = b.dataset_id AND cb.idx = lb.top_class
  LEFT JOIN classes ca ON ca.dataset_id = a.dataset_id AND ca.idx = la.top_class;

-- Top latents of every class with model and class names.
CREATE VIEW class_latents AS
SELECT n.statset_id, n.model, n.dataset, t.class, c.name AS class_name, t.rank, t.latent,
       t.n_tokens, a.name AS annotation
  FROM class_top t
  JOIN statset_names n ON n.statset_id = t.statset_id
  JOIN statsets s ON s.id = t.statset_id
  LEFT JOIN classes c ON c.dataset_id = s.dataset_id AND c.idx = t.class
  LEFT JOIN annotations a ON a.sae_id = s.sae_id AND a.latent = t.latent;

-- Top images of every latent with labels, class names and paths.
CREATE VIEW latent_images AS
SELECT n.statset_id, n.model, n.dataset, t.latent, t.kind, t.rank, t.image_id, i.pos, i.path,
       i.label, c.name AS class_name, t.value, t.token
  FROM latent_top t
  JOIN statset_names n ON n.statset_id = t.statset_id
  JOIN images i ON i.id = t.image_id
  LEFT JOIN classes c ON c.dataset_id = i.dataset_id AND c.idx = i.label;

-- Per-class accuracy of base and adapted models with readable names.
CREATE VIEW eval_names AS
SELECT m.name AS model, sm.name AS selected_by, d.name AS dataset, e.class,
       c.name AS class_name, e.mode, e.k, e.n_images, e.accuracy
  FROM eval e
  JOIN models m ON m.id = e.model_id JOIN models sm ON sm.id = e.select_model_id
  JOIN datasets d ON d.id = e.dataset_id
  LEFT JOIN classes c ON c.dataset_id = e.dataset_id AND c.idx = e.class;

-- Number of latents per class in each remapping group (paper Table 1 per class).
CREATE VIEW diff_summary AS
SELECT g.base_id, g.adapted_id, g.class, c.name AS class_name,
       SUM(g.grp = 'high') AS high, SUM(g.grp = 'high_low') AS high_low,
       SUM(g.grp = 'low_high') AS low_high
  FROM diff_groups g
  JOIN statsets s ON s.id = g.base_id
  LEFT JOIN classes c ON c.dataset_id = s.dataset_id AND c.idx = g.class
 GROUP BY g.base_id, g.adapted_id, g.class;
