#!/bin/sh
# bench_idx.sh - query latencies of the index at ViT-B/16 scale: builds (once)
# a synthetic index of 50,000 images x 49,152 latents x 2 models with 224-px
# thumbnails in /tmp (about 3 GB; never in the repository), then times the
# explorer's queries (bench_idx.c). Usage: sh bench/bench_idx.sh [BUILD] [REPS]
# Environment: PS_BENCH_DIR (default /tmp/psbench), PS_BENCH_IMAGES (50000).
#
# Measured 2026-11-27 (2 vCPU VM shared with other jobs, load average 8.5, so
# wall times are ~2-3x the CPU times; index 3.6 GB, built in 20 min wall):
#   storage: blob 19,125 B + thumbnail 15,227 B = 33.5 KiB per image per model
#   top images of a latent 0.016 ms | latents on a patch, 2 models 0.026 ms
#   image top latents, 2 models 0.015 ms | latent map, 2 models 0.027 ms
#   latent list: first call (load 49,152 rows + sort) 72 ms wall / 31 ms CPU;
#   re-sort by freq/mean/max/entropy 13-27 ms wall / 6-7 ms CPU (100 rows);
#   all 49,152 rows copied out 37-52 ms wall / 17 ms CPU; next page 0.014 ms
set -e
BUILD=${1:-build}
REPS=${2:-300}
DIR=${PS_BENCH_DIR:-/tmp/psbench}
N=${PS_BENCH_IMAGES:-50000}
DB="$DIR/big-$N.db"
mkdir -p "$DIR"
make --no-print-directory BUILD="$BUILD" all >/dev/null
if [ ! -f "$DB" ]; then
    echo "building $DB (50,000 images take about 5 minutes) ..."
    start=$(date +%s)
    "$BUILD/patchsae" synth "$DB.part" --images "$N" --latents 49152 --grid 14 --thumb 224 \
        --l0 150 --classes 100 --quiet
    mv "$DB.part" "$DB"
    echo "built in $(( $(date +%s) - start )) s, $(du -m "$DB" | cut -f1) MB"
fi
cc -O2 -Iinclude -I"$BUILD/gen" $(pkg-config --cflags sqlite3) -o "$DIR/bench_idx" \
    bench/bench_idx.c "$BUILD/libps.a" \
    $(pkg-config --libs ncursesw sqlite3 libsixel openblas jansson libzip libpng libjpeg zlib) \
    -lpthread -lm
"$DIR/bench_idx" "$DB" "$REPS"
