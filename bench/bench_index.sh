#!/bin/sh
# bench_index.sh - `patchsae index` end to end at PatchSAE's scale: a random
# ViT-B/16 (`patchsae init --arch vit-b-16`) and a random 49,152-latent SAE
# with PatchSAE's sparsity (bench_index_sae.c, L0 ~ 150) over Fashion-MNIST
# test images (upsampled to 224), base model only, batch 8. Prints images/s,
# where the time went (--timings), SQLite's share, and bytes per image of the
# index. OpenBLAS runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
# (performance.md). Machines here are shared: quote medians and ratios.
#   sh bench/bench_index.sh [BUILD] [IMAGES]
set -eu
BUILD=${1:-build}
N=${2:-200}
W=$(mktemp -d /tmp/patchsae-bench-XXXXXX)
trap 'rm -rf "$W"' EXIT
PKGS="openblas jansson libpng libjpeg libsixel libzip sqlite3 zlib"
cc -O2 -Iinclude bench/bench_index_sae.c "$BUILD/libps.a" $(pkg-config --cflags --libs $PKGS) \
    -lpthread -lm -o "$W/mksae"
RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
"$BUILD/patchsae" init --arch vit-b-16 --seed 1 -o "$W/b16" >/dev/null
$RUN "$W/mksae" "$W/b16" 49152 150 "$W/sae.safetensors"
# shard 0 of 10000/N: the first N test images
SH=$((10000 / N))
start=$(date +%s.%N)
$RUN "$BUILD/patchsae" index --quiet --timings --model "$W/b16" --sae "$W/sae.safetensors" \
    --data fashion-mnist:test --shard 0/$SH -o "$W/idx.db" 2> "$W/err" || { cat "$W/err"; exit 1; }
end=$(date +%s.%N)
cat "$W/err"
n=$(sqlite3 "$W/idx.db" 'SELECT count(*) FROM images')
bytes=$(stat -c %s "$W/idx.db")
awk -v s="$start" -v e="$end" -v n="$n" -v b="$bytes" '
/^timings:/ {
    all = $4; dec = $7; clip = $9; sae = $11; st = $13; rows = $16; com = $18; ncom = $19
    fin = $21
    gsub(/,/, "", dec); gsub(/,/, "", clip); gsub(/,/, "", sae)
    gsub(/,/, "", st); gsub(/,/, "", rows); gsub(/[(),]/, "", ncom)
}
END {
    w = e - s
    printf "wall %.1f s for %d images (model/SAE loading and hashing included): %.2f images/s\n", w, n, n / w
    loop = all - fin
    printf "batch loop %.1f s = %.2f images/s: clip %.0f%%, sae %.0f%%, stats+blobs %.0f%%, decode %.0f%%, sqlite rows %.0f%%, %d commits with snapshots %.0f%%\n",
        loop, n / loop, 100 * clip / loop, 100 * sae / loop, 100 * st / loop, 100 * dec / loop, 100 * rows / loop, ncom, 100 * com / loop
    printf "SQLite share of the batch loop (rows + commits with snapshots): %.1f%%\n", 100 * (rows + com) / loop
    printf "finalise (49,152 latents: statistics, top images, class counts; once per build): %.1f s\n", fin
    printf "index file %d bytes\n", b
}' "$W/err"
# per-image bytes: the tables that grow with the images (dbstat), against the fixed ones
sqlite3 "$W/idx.db" "SELECT 'per image: ' || CAST(sum(pgsize) / $n AS INT) || ' B in images, thumbnails, predictions, patches, image_latents' FROM dbstat WHERE name IN ('images', 'thumbnails', 'predictions', 'patches', 'image_latents') OR name LIKE 'sqlite_autoindex_images%' OR name LIKE 'sqlite_autoindex_patches%';
SELECT 'fixed: ' || CAST(sum(pgsize) AS INT) || ' B in everything else (statistics, snapshot)' FROM dbstat WHERE name NOT IN ('images', 'thumbnails', 'predictions', 'patches', 'image_latents') AND name NOT LIKE 'sqlite_autoindex_images%' AND name NOT LIKE 'sqlite_autoindex_patches%';" 2>/dev/null || true
sqlite3 "$W/idx.db" "SELECT 'per image: thumbnail ' || CAST(avg(length(jpeg)) AS INT) || ' B' FROM thumbnails;
SELECT 'per image: patch blob ' || CAST(avg(length(blob)) AS INT) || ' B' FROM patches;
SELECT 'snapshot ' || length(state) || ' B' FROM progress;"
