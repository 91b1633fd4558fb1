#!/bin/sh
# t_index.sh - `patchsae index` as a user runs it, on the tiny CLIP and a tiny
# SAE: row counts and integrity, refusal of an existing output, --force,
# --resume after kill -9 equal to an uninterrupted build, shards merged equal
# to one build, skipped unreadable images (exit 1), refused inputs (exit 2),
# a write failure (file-size limit) leaving a consistent, resumable file.
. tests/lib.sh
D=tests/data/clip_tiny
M="$D/hf"
TOK=$T_BPE
SAE=tests/data/index/sae_tiny.safetensors
X="$T_TMP"
IDX="$PS index --quiet --model $M --tokenizer $TOK --sae $SAE"
idx() { $IDX "$@"; }
# t_eq "description" EXPECTED DB SQL   passes when sqlite3 prints EXPECTED
t_eq() {
    d=$1; want=$2; got=$(sqlite3 "$3" "$4" 2>&1)
    if [ "$got" = "$want" ]; then T_PASS=$((T_PASS + 1)); else T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $d (got '$got', expected '$want')" >&2; fi
}
# everything a build computes, keyed by dataset position (not image id), one text file
dump() {
    sqlite3 "$1" "
SELECT 'L', latent, n_active, freq, mean_act, max_act, max_patch, entropy, label_std, top_class, top_share FROM latent_stats ORDER BY statset_id, latent;
SELECT 'T', t.latent, t.kind, t.rank, i.pos, t.value, t.token FROM latent_top t JOIN images i ON i.id = t.image_id ORDER BY 2, 3, 4;
SELECT 'B', latent, class, n, weight FROM latent_labels ORDER BY 2, 3;
SELECT 'C', class, latent, n_tokens, act_sum FROM class_counts ORDER BY 2, 3;
SELECT 'K', class, rank, latent, n_tokens FROM class_top ORDER BY 2, 3;
SELECT 'P', i.pos, p.model_id, p.rank, p.class, p.prob FROM predictions p JOIN images i ON i.id = p.image_id ORDER BY 2, 3, 4;
SELECT 'I', i.pos, l.rank, l.latent, l.value FROM image_latents l JOIN images i ON i.id = l.image_id ORDER BY 2, 3;
SELECT 'X', i.pos, hex(x.blob) FROM patches x JOIN images i ON i.id = x.image_id ORDER BY 2;
SELECT 'J', i.pos, i.label, i.path, t.size, hex(t.jpeg) FROM images i JOIN thumbnails t ON t.image_id = i.id ORDER BY 2;
SELECT 'S', n_images, final FROM statsets;
SELECT 'G', base_id, adapted_id, class, grp, latent, base_rank, adapted_rank FROM diff_groups ORDER BY 2, 3, 4, 5, 6;
SELECT 'M', name, kind, n_tokens, sha256 FROM models ORDER BY id;" > "$2"
}

# a two-class image folder
mkdir -p "$X/ds/cat" "$X/ds/dog"
cp $D/img_land.png $D/img_port.png $D/img_square.png "$X/ds/cat/"
cp $D/img_gray.png $D/img_rgba.png $D/img_big.png "$X/ds/dog/"
A="$X/a.db"
t_check "index an image folder" idx --data "$X/ds" -o "$A"
t_check "integrity ok" sh -c "[ \"\$(sqlite3 '$A' 'PRAGMA integrity_check')\" = ok ]"
t_check "WAL journal" sh -c "[ \"\$(sqlite3 '$A' 'PRAGMA journal_mode')\" = wal ]"
t_eq "6 images, 6 thumbnails, 6 blobs" 666 "$A" "SELECT (SELECT count(*) FROM images) || (SELECT count(*) FROM thumbnails) || (SELECT count(*) FROM patches)"
t_eq "2 predictions an image (2 classes)" 12 "$A" "SELECT count(*) FROM predictions"
t_eq "probabilities sum to 1" 0 "$A" "SELECT count(*) FROM (SELECT image_id, abs(sum(prob) - 1) AS e FROM predictions GROUP BY image_id) WHERE e > 1e-5"
t_eq "96 latent rows" 96 "$A" "SELECT count(*) FROM latent_stats"
t_eq "image latents stored" 6 "$A" "SELECT count(DISTINCT image_id) FROM image_latents"
t_eq "class counts stored" 2 "$A" "SELECT count(DISTINCT class) FROM class_top"
t_eq "classes from folders" cat,dog "$A" "SELECT group_concat(name) FROM classes"
t_eq "statset final over 6 images" 61 "$A" "SELECT n_images || final FROM statsets"
t_eq "model recorded with sha256" "$(sha256sum $M/model.safetensors | cut -c1-64)" "$A" "SELECT sha256 FROM models"
t_eq "model size, hook layer, tokens" "$(stat -c %s $M/model.safetensors),2,17" "$A" "SELECT size || ',' || hook_layer || ',' || n_tokens FROM models"
t_eq "SAE recorded with sha256" "$(sha256sum $SAE | cut -c1-64)" "$A" "SELECT sha256 FROM saes"
t_check "query reads the index" sh -c "$PS query '$A' latent 3 | grep -q top_images"
t_eq "thumbnails are the 32x32 crop" 32 "$A" "SELECT DISTINCT size FROM thumbnails"

# re-runs
t_status "an existing output is refused" 2 idx --data "$X/ds" -o "$A"
t_check "the refusal says what to do" sh -c "$IDX --data '$X/ds' -o '$A' 2>&1 | grep -q -- --resume"
dump "$A" "$X/a.txt"
t_check "--resume of a finished build does nothing" idx --data "$X/ds" -o "$A" --resume
dump "$A" "$X/a2.txt"
t_check "  and changes nothing" cmp "$X/a.txt" "$X/a2.txt"
t_check "--force starts over" idx --data "$X/ds" -o "$A" --force
dump "$A" "$X/a3.txt"
t_check "  with the same result" cmp "$X/a.txt" "$X/a3.txt"
t_status "--resume and --force together" 2 idx --data "$X/ds" -o "$X/rf.db" --resume --force
t_check "--resume of a missing file builds it" idx --data "$X/ds" -o "$X/new.db" --resume
t_check "batch size does not change the statistics (beyond GEMM rounding)" sh -c "$IDX --data '$X/ds' -o '$X/b1.db' --batch 1 && sqlite3 '$X/b1.db' 'SELECT latent, n_active, round(max_act, 4), top_class FROM latent_stats ORDER BY latent' > '$X/b1' && sqlite3 '$A' 'SELECT latent, n_active, round(max_act, 4), top_class FROM latent_stats ORDER BY latent' > '$X/b8' && cmp '$X/b1' '$X/b8'"

# refused inputs
t_status "missing --sae" 2 $PS index --quiet --model "$M" --data "$X/ds" -o "$X/r.db"
t_status "SAE of another width" 2 $PS index --quiet --model "$M" --tokenizer "$TOK" --sae tests/data/saelens --data "$X/ds" -o "$X/r.db"
t_check "  the message gives both widths" sh -c "$PS index --model '$M' --tokenizer '$TOK' --sae tests/data/saelens --data '$X/ds' -o '$X/r.db' 2>&1 | grep -q '16.*32'"
t_check "  and nothing is written" test ! -e "$X/r.db"
t_status "--layer contradicting the SAE" 2 idx --data "$X/ds" -o "$X/r.db" --layer 1
t_status "missing dataset" 2 idx --data "$X/none" -o "$X/r.db"
t_status "bad shard" 2 idx --data "$X/ds" -o "$X/r.db" --shard 2/2
t_status "read-only location" 2 idx --data "$X/ds" -o /sys/patchsae-test.db
t_check "  named in the message" sh -c "$IDX --data '$X/ds' -o /sys/patchsae-test.db 2>&1 | grep -q /sys/patchsae-test.db"

# unreadable images are skipped and counted
mkdir -p "$X/bad/cat" "$X/bad/dog"
cp $D/img_land.png $D/img_port.png "$X/bad/cat/"
cp $D/img_big.png "$X/bad/dog/"
printf 'not a png' > "$X/bad/dog/broken.png"
t_status "a broken image gives exit 1" 1 idx --data "$X/bad" -o "$X/bad.db"
t_check "  named in a message" sh -c "$IDX --data '$X/bad' -o '$X/bad2.db' 2>&1 | grep -q 'broken.png'"
t_eq "  the others are indexed" 3 "$X/bad.db" "SELECT count(*) FROM images"
t_eq "  the index is complete" 31 "$X/bad.db" "SELECT n_images || final FROM statsets"

# shards merged equal one build (manifest of 60 images, 3 shards)
for i in $(seq 1 10); do
    for f in land port square; do printf '%s\tcat\n' "$PWD/$D/img_$f.png"; done
    for f in gray rgba big; do printf '%s\tdog\n' "$PWD/$D/img_$f.png"; done
done > "$X/m.tsv"
t_check "one build of 60 (batches of 3: shard ends mid-batch)" idx --data "$X/m.tsv" -o "$X/one.db" --batch 3
for i in 0 1 2; do
    t_check "shard $i/3" idx --data "$X/m.tsv" -o "$X/s$i.db" --batch 3 --shard $i/3
done
t_eq "shard 1/3 holds its 20 images" 20,39,20 "$X/s1.db" "SELECT min(pos) || ',' || max(pos) || ',' || count(*) FROM images"
t_status "another shard into the same file is refused" 2 idx --data "$X/m.tsv" -o "$X/s1.db" --batch 4 --shard 2/3 --resume
t_check "merge the shards" $PS merge --quiet "$X/merged.db" "$X/s0.db" "$X/s1.db" "$X/s2.db"
dump "$X/one.db" "$X/one.txt"
dump "$X/merged.db" "$X/merged.txt"
t_check "merged shards equal one build" cmp "$X/one.txt" "$X/merged.txt"

# base + MaPLe: two models, T = 17 + 2, diff groups; shards merged equal one build
MP="$D/maple/model.pth.tar-5"
awk -F'\t' '{ printf "%s\t%d\n", $1, (NR - 1) % 4 }' "$X/m.tsv" > "$X/m4.tsv"
MA="--maple $MP --classes $D/maple/classes.txt --batch 4"
t_check "base + MaPLe build" idx --data "$X/m4.tsv" -o "$X/mp.db" $MA
t_eq "  two models, 19 tokens with MaPLe" "clip|base|17
maple|adapted|19" "$X/mp.db" "SELECT name, kind, n_tokens FROM models ORDER BY id"
t_eq "  MaPLe checkpoint's sha256" "$(sha256sum $MP | cut -c1-64)" "$X/mp.db" "SELECT sha256 FROM models WHERE kind = 'adapted'"
t_eq "  predictions of both" "480" "$X/mp.db" "SELECT count(*) FROM predictions"
t_eq "  blobs of both" "120" "$X/mp.db" "SELECT count(*) FROM patches"
t_eq "  two final statsets" "2" "$X/mp.db" "SELECT sum(final) FROM statsets"
t_check "  diff groups computed" sh -c "[ \$(sqlite3 '$X/mp.db' 'SELECT count(*) FROM diff_groups') -gt 0 ]"
t_status "  a name clash is refused" 2 idx --data "$X/m4.tsv" -o "$X/mpx.db" $MA --maple-name clip
for i in 0 1; do
    t_check "  MaPLe shard $i/2" idx --data "$X/m4.tsv" -o "$X/mp$i.db" $MA --shard $i/2 --dataset-name m4
done
t_check "  merge" $PS merge --quiet "$X/mpm.db" "$X/mp0.db" "$X/mp1.db"
dump "$X/mp.db" "$X/mp.txt"
dump "$X/mpm.db" "$X/mpm.txt"
t_check "  merged shards equal one build" cmp "$X/mp.txt" "$X/mpm.txt"

# kill -9 in the middle, then --resume: the same index as an uninterrupted build
for i in $(seq 1 50); do cat "$X/m.tsv"; done > "$X/k.tsv"
N=$(wc -l < "$X/k.tsv")
t_check "uninterrupted build of $N" idx --data "$X/k.tsv" -o "$X/full.db" --batch 2
K="$X/k.db"
$IDX --data "$X/k.tsv" -o "$K" --batch 2 2>/dev/null &
pid=$!
n=0
for w in $(seq 1 400); do
    [ -s "$K" ] && n=$(sqlite3 -readonly "$K" "SELECT n_done FROM progress" 2>/dev/null)
    [ -n "$n" ] && [ "$n" -gt 0 ] && break
    sleep 0.01
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
n=$(sqlite3 "$K" "SELECT n_done FROM progress" 2>/dev/null)
t_check "killed mid-build (at $n of $N)" sh -c "[ -n '$n' ] && [ '$n' -gt 0 ] && [ '$n' -lt $N ]"
t_check "  integrity ok after kill -9" sh -c "[ \"\$(sqlite3 '$K' 'PRAGMA integrity_check')\" = ok ]"
t_eq "  committed images match the progress row" "$n" "$K" "SELECT count(*) FROM images"
t_eq "  statistics not final yet" 0 "$K" "SELECT final FROM statsets"
t_check "--resume finishes it" idx --data "$X/k.tsv" -o "$K" --batch 2 --resume
dump "$X/full.db" "$X/full.txt"
dump "$K" "$X/k.txt"
t_check "  equal to the uninterrupted build" cmp "$X/full.txt" "$X/k.txt"
t_eq "  no duplicated rows" $N "$K" "SELECT count(*) FROM images"

# a write failure (file-size limit, as a full disk): clear message, consistent file, resumable
sh -c "ulimit -f 2048; exec $PS index --quiet --model '$M' --tokenizer '$TOK' --sae '$SAE' --data '$X/k.tsv' -o '$X/f.db' --batch 2" 2> "$X/f.err"
st=$?
t_check "a write failure gives exit 2 (got $st)" [ "$st" -eq 2 ]
t_check "  with a message naming the index" grep -q "f.db" "$X/f.err"
t_check "  and the way out" grep -q -- "--resume" "$X/f.err"
t_check "  integrity ok" sh -c "[ \"\$(sqlite3 '$X/f.db' 'PRAGMA integrity_check')\" = ok ]"
t_check "  --resume completes it" idx --data "$X/k.tsv" -o "$X/f.db" --batch 2 --resume
dump "$X/f.db" "$X/f.txt"
t_check "  equal to the uninterrupted build" cmp "$X/full.txt" "$X/f.txt"
t_done
