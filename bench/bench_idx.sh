#!/bin/sh
# bench_idx.sh - query latencies of the index at ViT-B/16 scale: builds (once)
# a synthetic index of 50,000 images x 49,152 latents x 2 models with 224-px
# thumbnails in /tmp (about 3 GB; never in the repository), then times the
# explorer's queries (bench_idx.c). Usage: sh bench/bench_idx.sh [BUILD] [REPS]
# Environment: PS_BENCH_DIR (default /tmp/psbench), PS_BENCH_IMAGES (50000).
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
