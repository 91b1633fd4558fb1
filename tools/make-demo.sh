#!/bin/sh
# make-demo.sh BUILD - builds db/demo.db from the committed demo assets with the
# C tools only (`make demo`):
#   1. trains the demo SAE on the base model's block-2 residual stream over the
#      Fashion-MNIST training set (`patchsae train`, 16x expansion = 1536 latents);
#   2. indexes base CLIP and its MaPLe adaptation on the Fashion-MNIST test set
#      and on the inverted test set (assets/fashion-shift) (`patchsae index`);
#   3. runs the top-k masking evaluation (200 images a class) for both models
#      and the base-to-adapted comparison on both datasets (`eval`, `diff`).
# Everything is built under a temporary name and renamed into place at the end,
# so an interrupted run leaves no half-made demo behind.
set -eu
B=${1:-build}
PS="$B/patchsae"
M=assets/demo-clip
MAPLE=assets/demo-maple/model.pth.tar-10
SHIFT=assets/fashion-shift/t10k-images-idx3-ubyte.gz
SHIFT_CLASSES=assets/fashion-shift/classes.txt  # a bare IDX file has no class names
OUT=db/demo.db
SAE=db/demo-sae.safetensors
T=db/.demo-build
Q=""
[ -t 2 ] || Q=--quiet
mkdir -p db
rm -rf "$T"; mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
t0=$(date +%s)
say() { echo "patchsae demo: $* ($(( $(date +%s) - t0 )) s)" >&2; }

if [ ! -f "$SAE" ]; then
    say "training the SAE (96 -> 1536 latents, 900 steps of 64 images)"
    "$PS" train $Q --model "$M" --data fashion-mnist:train --expansion 16 --batch 64 \
        --steps 900 --warmup 100 --l1 2e-3 --seed 42 --log "$T/train.csv" -o "$T/sae.safetensors"
    mv "$T/sae.safetensors" "$SAE"
fi
say "indexing the Fashion-MNIST test set (base CLIP and MaPLe)"
"$PS" index $Q --model "$M" --sae "$SAE" --maple "$MAPLE" --data fashion-mnist:test \
    --dataset-name fashion-mnist -o "$T/demo.db"
say "indexing the inverted test set"
"$PS" index $Q --model "$M" --sae "$SAE" --maple "$MAPLE" --data "$SHIFT" \
    --classes "$SHIFT_CLASSES" --dataset-name fashion-inverted --resume -o "$T/demo.db"
say "top-k masking: base CLIP on fashion-mnist"
"$PS" eval $Q --index "$T/demo.db" --model "$M" --sae "$SAE" --data fashion-mnist:test \
    --dataset fashion-mnist --max-per-class 200 --csv "$T/eval-base.csv" >/dev/null
say "top-k masking: MaPLe on fashion-inverted"
"$PS" eval $Q --index "$T/demo.db" --model "$M" --sae "$SAE" --maple "$MAPLE" --data "$SHIFT" \
    --classes "$SHIFT_CLASSES" --dataset fashion-inverted --max-per-class 200 --csv "$T/eval-maple.csv" >/dev/null
for d in fashion-mnist fashion-inverted; do
    say "base against adapted on $d"
    "$PS" diff --index "$T/demo.db" --dataset "$d" --table1
done
rm -f "$OUT" "$OUT-wal" "$OUT-shm"
sqlite3 "$T/demo.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
mv "$T/demo.db" "$OUT"
say "done: $OUT ($(du -h "$OUT" | cut -f1))"
