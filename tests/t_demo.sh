#!/bin/sh
# t_demo.sh - the demo pipeline end to end on a reduced dataset, with the C
# tools only and the committed assets: `patchsae train` (a short run on
# Fashion-MNIST train), `index` of base CLIP and MaPLe on the first N test
# images and their inverted copies, `eval` and `diff`; then checks that the
# numbers are sane, not just present:
#   - integrity ok, four final statsets of N images, few dead latents;
#   - label entropy of the top-16 images (latent_stats.entropy, nats, max
#     ln 10 = 2.30): most live latents are below HMAX, and against a
#     shuffled-label baseline (the same top images, each labelled with the
#     label of image (7 pos + 13) mod N, a permutation since gcd(7, N) = 1)
#     only a few are;
#   - the stored top-1 predictions and probabilities of both models equal
#     `patchsae embed --classes` (and `--maple --classes`) on the same images,
#     written as PGM files;
#   - eval: full reconstruction = every latent kept, and removing a class's
#     top-50 latents hurts more than removing 50 random ones;
#   - diff: both Table-1 rows, groups stored, MaPLe beats CLIP on the
#     inverted base classes and CLIP beats MaPLe on the original ones.
# The reduced IDX files are slices of the gunzipped IDX with the count field
# rewritten. Measured here (2 shared cores, load about 2): 18 s, 9 of them
# training.
. tests/lib.sh
FM=/usr/share/datasets/fashion-mnist
M=assets/demo-clip
MAPLE=assets/demo-maple/model.pth.tar-10
SHIFT=assets/fashion-shift
CL=$SHIFT/classes.txt
N=300          # images per dataset (gcd(7, N) must be 1 for the shuffle)
HMAX=1.7       # "low" label entropy, nats
X="$T_TMP"
DB="$X/demo.db"
SAE="$X/sae.safetensors"
if [ ! -r "$FM/t10k-images-idx3-ubyte.gz" ] || [ ! -r "$FM/train-images-idx3-ubyte.gz" ]; then
    echo "$0: $FM missing (Debian dataset-fashion-mnist): skipped" >&2
    t_done
    exit 0
fi
q() { sqlite3 "$DB" "$1"; }
# t_eq "description" EXPECTED ACTUAL
t_eq() {
    if [ "$2" = "$3" ]; then T_PASS=$((T_PASS + 1)); else T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $1 (got '$3', expected '$2')" >&2; fi
}
# t_awk "description" 'AWK CONDITION on $1 $2 ...' VALUE...   (the values are also printed)
t_awk() {
    d=$1; c=$2; shift 2
    echo "$0: $d: $*" >&2
    t_check "$d" awk "BEGIN { split(\"$*\", v, \" \"); \$0 = \"$*\"; exit !($c) }"
}

# ---- the reduced datasets: first N test images, original and inverted
byte() { printf "\\$(printf %o "$1")"; }
# slice SRC_IMAGES.gz SRC_LABELS.gz DIR
slice() {
    mkdir -p "$3"
    { printf '\0\0\010\003\0\0'; byte $((N / 256)); byte $((N % 256)); printf '\0\0\0\034\0\0\0\034'
      gzip -dc "$1" | tail -c +17 | head -c $((N * 784)); } > "$3/t10k-images-idx3-ubyte"
    { printf '\0\0\010\001\0\0'; byte $((N / 256)); byte $((N % 256))
      gzip -dc "$2" | tail -c +9 | head -c "$N"; } > "$3/t10k-labels-idx1-ubyte"
}
slice "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" "$X/orig"
slice "$SHIFT/t10k-images-idx3-ubyte.gz" "$SHIFT/t10k-labels-idx1-ubyte.gz" "$X/inv"
t_check "reduced IDX read back" sh -c '"$1" info "$2/orig/t10k-images-idx3-ubyte" | grep -q "$3 items, 10 classes"' _ "$PS" "$X" "$N"

# ---- train: the demo recipe (16x -> 8x, lr x10) in 100 steps of 64 images
t_check "train" "$PS" train --quiet --model $M --data fashion-mnist:train --expansion 8 --batch 64 \
    --steps 100 --warmup 10 --lr 4e-3 --l1 2e-3 --seed 42 --log "$X/train.csv" -o "$SAE"
# step,images,lr,loss,mse_loss,l1_loss,ghost_loss,l0,explained_variance,dead,fired,seconds
last=$(tail -n 1 "$X/train.csv" | tr , ' ')
set -- $last
t_awk "train: last step, L0, explained variance, dead" '$1 == 100 && $2 < 150 && $3 > 0.6 && $4 < 77' "$1 $8 $9 ${10}"

# ---- index both models on both datasets
IDX="$PS index --quiet --model $M --sae $SAE --maple $MAPLE --classes $CL"
t_check "index original" $IDX --data "$X/orig/t10k-images-idx3-ubyte" --dataset-name fashion-mnist -o "$DB"
t_check "index inverted (--resume adds a dataset)" $IDX --data "$X/inv/t10k-images-idx3-ubyte" \
    --dataset-name fashion-inverted --resume -o "$DB"
t_eq "integrity ok" ok "$(q 'PRAGMA integrity_check')"
t_eq "four final statsets of N images" "4 4 $N $N" "$(q 'SELECT count(*) || " " || sum(final) || " " || min(n_images) || " " || max(n_images) FROM statsets')"
t_eq "2 N images, each with a thumbnail" "$((2 * N)) $((2 * N))" "$(q 'SELECT (SELECT count(*) FROM images) || " " || (SELECT count(*) FROM thumbnails)')"
t_eq "5 predictions per image and model" "$((2 * N * 10))" "$(q 'SELECT count(*) FROM predictions')"
dead=$(q "SELECT max(d) FROM (SELECT 1.0 * sum(mean_act IS NULL) / count(*) AS d FROM latent_stats GROUP BY statset_id)")
t_awk "dead fraction per statset at most 5%" '$1 <= 0.05' "$dead"

# ---- label entropy of the top images against a shuffled-label baseline
# one row per (statset, latent) with 16 top images: statset | H | H shuffled
q "
WITH t AS (
  SELECT lt.statset_id AS sid, lt.latent, lt.value AS v, i.label AS lab,
         (SELECT j.label FROM images j WHERE j.dataset_id = i.dataset_id AND j.pos = (7 * i.pos + 13) % $N) AS slab
  FROM latent_top lt JOIN images i ON i.id = lt.image_id WHERE lt.kind = 0),
tot AS (SELECT sid, latent, sum(v) AS s, count(*) AS n FROM t GROUP BY sid, latent),
pc AS (SELECT t.sid, t.latent, sum(v) / tot.s AS p FROM t JOIN tot USING (sid, latent) GROUP BY t.sid, t.latent, t.lab),
ps AS (SELECT t.sid, t.latent, sum(v) / tot.s AS p FROM t JOIN tot USING (sid, latent) GROUP BY t.sid, t.latent, t.slab),
h AS (SELECT sid, latent, -sum(p * ln(p + 1e-9)) AS h FROM pc GROUP BY sid, latent),
hs AS (SELECT sid, latent, -sum(p * ln(p + 1e-9)) AS h FROM ps GROUP BY sid, latent)
SELECT h.sid, h.h, hs.h FROM h JOIN hs USING (sid, latent) JOIN tot USING (sid, latent) WHERE tot.n = 16 ORDER BY 1, h.latent;" > "$X/entropy.txt"
for s in 1 2 3 4; do
    name=$(q "SELECT m.name || '/' || d.name FROM statsets s JOIN models m ON m.id = s.model_id JOIN datasets d ON d.id = s.dataset_id WHERE s.id = $s")
    r=$(awk -F'|' -v s=$s -v hm=$HMAX '$1 == s { n++; lo += $2 < hm; slo += $3 < hm; h += $2; sh += $3 }
        END { printf "%.3f %.3f %.3f %.3f %d", lo / n, slo / n, h / n, sh / n, n }' "$X/entropy.txt")
    t_awk "$name: share H<$HMAX real shuffled, mean H real shuffled, latents" \
        '$1 >= 0.5 && $2 <= 0.2 && $3 <= $4 - 0.25 && $5 >= 300' "$r"
done
# the stored entropy is the same quantity, for the same latents
t_eq "latent_stats.entropy = recomputed H" "0 $(wc -l < "$X/entropy.txt")" "$(q "SELECT entropy FROM latent_stats WHERE entropy >= 0 ORDER BY statset_id, latent" | \
    paste -d'|' - "$X/entropy.txt" | awk -F'|' '{ d = $1 - $3; if (d < 0) d = -d; if (d > 1e-4 || $3 == "") bad++ } END { print bad + 0, NR }')"

# ---- stored predictions against `patchsae embed` on the same images
# f32 FILE TENSOR: its float32 values, one a line
f32() {
    hl=$(od -An -tu4 -N4 "$1" | tr -d ' ')
    o=$(head -c $((8 + hl)) "$1" | tail -c "$hl" | grep -o "\"$2\":{[^}]*}" | sed 's/.*"data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/')
    set -- "$1" $o
    od -An -v -tf4 -j $((8 + hl + $2)) -N $(($3 - $2)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
POS="0 1 7 42 123 299"
for ds in orig inv; do
    imgs=""
    for p in $POS; do
        { printf 'P5\n28 28\n255\n'; tail -c +$((17 + p * 784)) "$X/$ds/t10k-images-idx3-ubyte" | head -c 784; } > "$X/$ds-$p.pgm"
        imgs="$imgs $X/$ds-$p.pgm"
    done
    [ $ds = orig ] && dn=fashion-mnist || dn=fashion-inverted
    for m in clip maple; do
        opt=""; [ $m = maple ] && opt="--maple $MAPLE"
        t_check "embed $m on $dn" "$PS" embed --quiet --model $M $opt --classes $CL -o "$X/e.safetensors" $imgs
        # embed: argmax and softmax probability of each row
        got=$(f32 "$X/e.safetensors" logits | awk '{ v[NR - 1] = $1 } END {
            for (i = 0; i < NR / 10; i++) { b = 0; for (c = 1; c < 10; c++) if (v[10 * i + c] > v[10 * i + b]) b = c
                z = 0; for (c = 0; c < 10; c++) z += exp(v[10 * i + c] - v[10 * i + b]); printf "%d %.4f\n", b, 1 / z } }')
        want=""
        for p in $POS; do
            want="$want$(q "SELECT p.class || ' ' || printf('%.4f', p.prob) FROM predictions p JOIN images i ON i.id = p.image_id
                JOIN datasets d ON d.id = i.dataset_id JOIN models m ON m.id = p.model_id
                WHERE d.name = '$dn' AND i.pos = $p AND m.name = '$m' AND p.rank = 1")
"
        done
        # probabilities to 1e-4 (printed to 4 decimals: allow one unit of rounding)
        printf '%s' "$want" > "$X/want.txt"
        bad=$(printf '%s\n' "$got" | paste -d' ' - "$X/want.txt" | awk '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > 2e-4) bad++ } END { print NR == 6 ? bad + 0 : "rows " NR }')
        t_eq "$m on $dn: stored top-1 class and probability = embed" 0 "$bad"
    done
done

# ---- eval: top-k masking
EV="$PS eval --quiet --index $DB --model $M --sae $SAE --classes $CL --max-per-class 20 --k 1,10,50,100,all"
t_check "eval base on fashion-mnist" $EV --data "$X/orig/t10k-images-idx3-ubyte" --dataset fashion-mnist --csv "$X/eval-base.csv"
t_check "eval MaPLe on fashion-inverted" $EV --maple $MAPLE --data "$X/inv/t10k-images-idx3-ubyte" --dataset fashion-inverted
# acc MODEL DATASET MODE K: overall accuracy stored in the eval table
acc() { q "SELECT e.accuracy FROM eval e JOIN models m ON m.id = e.model_id JOIN datasets d ON d.id = e.dataset_id
           WHERE m.name = '$1' AND d.name = '$2' AND e.class = -1 AND e.mode = '$3' AND e.k = $4"; }
for md in clip/fashion-mnist maple/fashion-inverted; do
    m=${md%/*}; d=${md#*/}
    t_eq "$md: 200 images evaluated" 200 "$(q "SELECT DISTINCT n_images FROM eval e JOIN models m ON m.id = e.model_id WHERE m.name = '$m' AND e.class = -1")"
    t_eq "$md: on(all latents) = recon" "$(acc $m $d recon 0)" "$(acc $m $d on 768)"
done
t_awk "clip/fashion-mnist: orig, recon accuracy" '$1 >= 70 && $2 >= $1 - 20' "$(acc clip fashion-mnist orig 0) $(acc clip fashion-mnist recon 0)"
t_awk "clip/fashion-mnist: class off(50) < random off(50) - 20" '$1 < $2 - 20' \
    "$(acc clip fashion-mnist off 50) $(acc clip fashion-mnist random -50)"
t_awk "clip/fashion-mnist: class on(100) > random on(100) + 20" '$1 > $2 + 20' \
    "$(acc clip fashion-mnist on 100) $(acc clip fashion-mnist random 100)"

# ---- diff: Table 1 for both datasets
for d in fashion-mnist fashion-inverted; do
    t_check "diff --table1 $d" sh -c '"$1" diff --index "$2" --dataset "$3" --table1 | grep -q "^| $3 |"' _ "$PS" "$DB" "$d"
done
t_awk "diff groups stored for both datasets (pairs, rows)" '$1 == 2 && $2 > 0' "$(q 'SELECT count(*) FROM diffs') $(q 'SELECT count(*) FROM diff_groups')"
# top-1 accuracy of a model on the base classes 0-4 (among all 10) from the stored predictions
bacc() { q "SELECT round(100.0 * avg(p.class = i.label), 2) FROM predictions p JOIN images i ON i.id = p.image_id
            JOIN datasets d ON d.id = i.dataset_id JOIN models m ON m.id = p.model_id
            WHERE d.name = '$2' AND m.name = '$1' AND p.rank = 1 AND i.label < 5"; }
t_awk "base classes, inverted: MaPLe > CLIP + 5" '$1 > $2 + 5' "$(bacc maple fashion-inverted) $(bacc clip fashion-inverted)"
t_awk "base classes, original: CLIP > MaPLe" '$1 > $2' "$(bacc clip fashion-mnist) $(bacc maple fashion-mnist)"
t_done
