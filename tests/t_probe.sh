#!/bin/sh
# t_probe.sh - `patchsae probe` as a user runs it: an index of the tiny CLIP +
# MaPLe on six images (built with --batch 1, so a probe of an indexed image
# equals its rows exactly), then probes: text and --json output against the
# index's own rows (jq when installed, else grep), --patch, the noise filter,
# exit statuses (unreadable image 1; usage, missing index, bad patch,
# changed weights 2), --force, overrides and --save.
. tests/lib.sh
D=tests/data/clip_tiny
M="$D/hf"
TOK=$T_BPE
SAE=tests/data/index/sae_tiny.safetensors
MP="$D/maple/model.pth.tar-5"
X="$T_TMP"
t_eq() {
    d=$1; want=$2; got=$3
    if [ "$got" = "$want" ]; then T_PASS=$((T_PASS + 1)); else T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $d (got '$got', expected '$want')" >&2; fi
}
mkdir -p "$X/ds/cat" "$X/ds/dog"
cp $D/img_land.png $D/img_port.png $D/img_square.png "$X/ds/cat/"
cp $D/img_gray.png $D/img_rgba.png $D/img_big.png "$X/ds/dog/"
cp "$SAE" "$X/sae.safetensors"
A="$X/a.db"
t_check "build the index" $PS index --quiet --model "$M" --tokenizer "$TOK" --sae "$X/sae.safetensors" --maple "$MP" --data "$X/ds" --batch 1 -o "$A"
IMG="$X/ds/cat/img_land.png"
ID=$(sqlite3 "$A" "SELECT id FROM images WHERE path = '$IMG'")

t_check "--help" $PS probe --help
t_check "probe an indexed image" $PS probe "$A" "$IMG"
$PS probe "$A" "$IMG" --patch 1,2 > "$X/out.txt" 2> "$X/err.txt"
t_check "  predictions of both models" grep -q "clip .*maple" "$X/out.txt"
t_check "  image-level groups" grep -q "image-level latents" "$X/out.txt"
t_check "  patch groups" grep -q "patch (1,2) latents" "$X/out.txt"
t_check "  common group" grep -q "^    common" "$X/out.txt"
t_check "  reference images" grep -q "#[0-9]* cat" "$X/out.txt"
t_check "  no warnings" test ! -s "$X/err.txt"
TOP1=$(sqlite3 "$A" "SELECT c.name FROM predictions p JOIN classes c ON c.idx = p.class WHERE p.image_id = $ID AND p.model_id = 1 AND p.rank = 1")
t_check "  top prediction as indexed" grep -q "^    1 *$TOP1 " "$X/out.txt"

# --json against the index's rows
$PS probe "$A" "$IMG" --json --patch 0,3 --no-noise-filter > "$X/o.json"
t_status "--json exit status" 0 $PS probe "$A" "$IMG" --json
if command -v jq >/dev/null 2>&1; then
    t_check "  parses" jq -e . "$X/o.json"
    for m in 1 2; do
        name=$(sqlite3 "$A" "SELECT name FROM models WHERE id = $m")
        t_eq "  $name image latents = image_latents rows" \
            "$(sqlite3 "$A" "SELECT latent FROM image_latents WHERE image_id = $ID AND model_id = $m ORDER BY rank" | tr '\n' ' ')" \
            "$(jq -r ".images[0].image_latents.$name[].latent" "$X/o.json" | tr '\n' ' ')"
        t_eq "  $name image latent values (9 digits)" \
            "$(sqlite3 "$A" "SELECT printf('%.8e', value) FROM image_latents WHERE image_id = $ID AND model_id = $m ORDER BY rank" | tr '\n' ' ')" \
            "$(jq -r ".images[0].image_latents.$name[].value" "$X/o.json" | awk '{ printf "%.8e ", $1 }')"
        t_eq "  $name predictions = predictions rows" \
            "$(sqlite3 "$A" "SELECT class || ' ' || printf('%.8e', prob) FROM predictions WHERE image_id = $ID AND model_id = $m ORDER BY rank" | tr '\n' ' ')" \
            "$(jq -r ".images[0].predictions.$name[] | \"\(.class) \(.prob)\"" "$X/o.json" | awk '{ printf "%s %.8e ", $1, $2 }')"
    done
    t_eq "  image and patch groups" "image patch" "$(jq -r '[.images[0].groups[].level] | join(" ")' "$X/o.json")"
    t_eq "  filter off" null "$(jq -r .noise_filter "$X/o.json")"
    t_check "  references of the grouped latents" jq -e '.images[0].references | length > 0' "$X/o.json"
    $PS probe "$A" "$IMG" --json > "$X/f.json"
    HIDDEN=$(sqlite3 "$A" "SELECT group_concat(latent) FROM latent_stats WHERE statset_id = 1 AND mean_act > 0.1")
    t_check "  the noise filter hides latents with base mean > 0.1" sh -c "jq -r '.images[0].groups[] | (.base_top, .adapted_top, .base_only, .adapted_only)[].latent, .common[].latent' '$X/f.json' | while read s; do case \",$HIDDEN,\" in *,\$s,*) exit 1;; esac; done"
else
    t_check "  looks like JSON" grep -q '"image_latents"' "$X/o.json"
    L1=$(sqlite3 "$A" "SELECT latent FROM image_latents WHERE image_id = $ID AND model_id = 1 AND rank = 1")
    t_check "  first image latent as indexed" grep -q "\"latent\": $L1," "$X/o.json"
fi

# exit statuses
printf 'not a png' > "$X/broken.png"
t_status "an unreadable image: exit 1" 1 $PS probe "$A" "$IMG" "$X/broken.png"
t_check "  named in a message" sh -c "$PS probe '$A' '$X/broken.png' 2>&1 | grep -q broken.png"
t_status "no image: exit 2" 2 $PS probe "$A"
t_status "missing index: exit 2" 2 $PS probe "$X/none.db" "$IMG"
t_check "  nothing created" test ! -e "$X/none.db"
t_status "not an index: exit 2" 2 $PS probe "$IMG" "$IMG"
t_status "patch outside the 4x4 grid: exit 2" 2 $PS probe "$A" "$IMG" --patch 4,0
t_status "bad --patch: exit 2" 2 $PS probe "$A" "$IMG" --patch x
t_status "bad --noise-filter: exit 2" 2 $PS probe "$A" "$IMG" --noise-filter -1
t_status "unknown option: exit 2" 2 $PS probe "$A" "$IMG" --frobnicate

# the SAE file changed since the index was built
cp "$X/sae.safetensors" "$X/sae.orig"
printf '\001' | dd of="$X/sae.safetensors" bs=1 seek=1000 conv=notrunc 2>/dev/null
t_status "changed SAE: refused, exit 2" 2 $PS probe "$A" "$IMG"
OLD=$(sha256sum "$X/sae.orig" | cut -c1-64)
NEW=$(sha256sum "$X/sae.safetensors" | cut -c1-64)
t_check "  the message names both digests" sh -c "$PS probe '$A' '$IMG' 2>&1 | grep -q '$NEW.*$OLD'"
t_status "  --force probes anyway" 0 $PS probe "$A" "$IMG" --force
t_check "  with a warning" sh -c "$PS probe '$A' '$IMG' --force 2>&1 >/dev/null | grep -q 'warning.*force'"
t_status "  --sae with the original file" 0 $PS probe "$A" "$IMG" --sae "$X/sae.orig"
t_status "more --maple overrides than adapted models: exit 2" 2 $PS probe "$A" "$IMG" --sae "$X/sae.orig" --maple "$MP" --maple "$MP"
mv "$X/sae.orig" "$X/sae.safetensors"

# --save
t_check "--save" $PS probe --quiet "$A" "$X/ds/dog/img_big.png" "$IMG" --save
t_eq "  two probed images" 2 "$(sqlite3 "$A" "SELECT n_images FROM datasets WHERE name = 'probed'")"
t_check "--save again: replaced, not duplicated" $PS probe --quiet "$A" "$IMG" --save
t_eq "  still two" 2 "$(sqlite3 "$A" "SELECT count(*) FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE d.name = 'probed'")"
P=$(sqlite3 "$A" "SELECT i.id FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE d.name = 'probed' AND i.path = '$IMG'")
t_eq "  its rows equal the indexed image's (latents, blobs, predictions)" \
    "$(sqlite3 "$A" "SELECT model_id, rank, latent, value FROM image_latents WHERE image_id = $ID; SELECT model_id, hex(blob) FROM patches WHERE image_id = $ID; SELECT model_id, rank, class, prob FROM predictions WHERE image_id = $ID; SELECT hex(jpeg) FROM thumbnails WHERE image_id = $ID")" \
    "$(sqlite3 "$A" "SELECT model_id, rank, latent, value FROM image_latents WHERE image_id = $P; SELECT model_id, hex(blob) FROM patches WHERE image_id = $P; SELECT model_id, rank, class, prob FROM predictions WHERE image_id = $P; SELECT hex(jpeg) FROM thumbnails WHERE image_id = $P")"
t_check "  query reads it" sh -c "$PS query '$A' image $P | grep -q img_land"
t_eq "  the index is consistent" ok "$(sqlite3 "$A" 'PRAGMA integrity_check')"
t_check "--save-dataset NAME" $PS probe --quiet "$A" "$IMG" --save-dataset mine
t_eq "  into its own dataset" 1 "$(sqlite3 "$A" "SELECT n_images FROM datasets WHERE name = 'mine'")"
t_done
