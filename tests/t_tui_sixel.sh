#!/bin/sh
# t_tui_sixel.sh - the sixel path without X: patchsae-tui runs in a pty
# (script(1)) with --graphics sixel forced; nothing in a pty answers terminal
# queries, so this is also the "terminal that never answers" case. The DCS
# strings are cut out of the typescript, decoded with sixel2png and compared
# by RMSE (ImageMagick compare) with references built independently: the
# thumbnail JPEG taken out of the index with sqlite3 and resized by
# ImageMagick (overlay off), and the same with PatchSAE's mask applied from
# the latent's per-patch values as `patchsae query ... --patch` reports them
# (inactive patches multiplied by 30/255).
. tests/lib.sh
TUI="$BUILD/patchsae-tui"
for c in script sixel2png convert compare sqlite3 perl; do
    command -v $c >/dev/null 2>&1 || { T_FAIL=$((T_FAIL + 1)); echo "$0: $c missing (sh tools/deps.sh)" >&2; t_done; exit 0; }
done
ok() { T_PASS=$((T_PASS + 1)); }
bad() { T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $*" >&2; }

DB="$T_TMP/s.db"
IMG=3 LAT=5
"$PS" synth "$DB" --images 12 --latents 64 --grid 14 --classes 5 --thumb 224 --quiet || bad "synth"

# the session: Latent view of latent LAT, Image view of image IMG, then m m (overlay -> heat -> none)
TS="$T_TMP/typescript"
start=$(date +%s%N)
( sleep 1.5; printf ':latent %s\r' $LAT; sleep 0.6; printf ':image %s\r' $IMG; sleep 0.6
  printf m; sleep 0.5; printf m; sleep 0.5; printf Q; sleep 0.3 ) |
    TERM=xterm script -q -e -c "stty cols 100 rows 32; $TUI --graphics sixel --trace $T_TMP/trace $DB" "$TS" > /dev/null 2>&1
rc=$?
[ $rc -eq 0 ] && ok || bad "the session exited with status $rc"
grep -q '^startup' "$T_TMP/trace" && ok || bad "no start-up line in the trace"
# 200 ms query timeout + start-up: well under a second even though nothing answers
su=$(awk '/^startup/ { for (i = 1; i <= NF; i++) if ($i ~ /^text_ms=/) { sub("text_ms=", "", $i); print $i } }' "$T_TMP/trace")
awk -v s="${su:-9999}" 'BEGIN { exit !(s < 1000) }' && ok || bad "start-up took ${su} ms with a silent terminal"
grep -q 'cell=10x20 (default)' "$T_TMP/trace" && ok || bad "default cell size in a plain pty"

# every picture: "ESC 7 ESC [ row ; col H  DCS ... ST  ESC 8"; list them as "row col w h file"
perl -e '
    local $/; my $d = <STDIN>; my $n = 0;
    while ($d =~ /\e7\e\[(\d+);(\d+)H(\eP[0-9;]*q"1;1;(\d+);(\d+).*?\e\\)\e8/sg) {
        my $f = sprintf("%s/pic%03d.six", $ARGV[0], $n++);
        open(my $o, ">", $f) or die; print $o $3; close $o;
        print "$1 $2 $4 $5 $f\n";
    }' "$T_TMP" < "$TS" > "$T_TMP/pics"
npics=$(wc -l < "$T_TMP/pics")
[ "$npics" -ge 7 ] && ok || bad "only $npics pictures in the typescript"
# no picture reaches the last row (row 32): top row + ceil(h / 20) <= 31
awk '{ if ($1 + int(($4 + 19) / 20) - 1 > 31) exit 1 }' "$T_TMP/pics" && ok || bad "a picture reaches the last row"

# the Image view's pictures are the big ones; the second column holds the base overlay
big=$(awk '$3 >= 200' "$T_TMP/pics")
col=$(printf '%s\n' "$big" | awk '{ print $2 }' | sort -n | uniq | sed -n 2p)
ov=$(printf '%s\n' "$big" | awk -v c="$col" '$2 == c { print $5 }')
n_ov=$(printf '%s\n' "$ov" | grep -c six)
[ "$n_ov" -eq 3 ] && ok || bad "expected 3 versions of the base overlay (mask, heat, none), got $n_ov"
mask_six=$(printf '%s\n' "$ov" | sed -n 1p)
none_six=$(printf '%s\n' "$ov" | sed -n 3p)
sixel2png < "$mask_six" > "$T_TMP/mask.png" && sixel2png < "$none_six" > "$T_TMP/none.png" && ok ||
    bad "sixel2png could not decode the pictures"
W=$(identify -format %w "$T_TMP/none.png") H=$(identify -format %h "$T_TMP/none.png")
[ "$W" = 280 ] && [ "$H" = 280 ] && ok || bad "picture is ${W}x$H, expected 280x280 (28x14 cells of 10x20)"

# reference 1: the thumbnail, resized by ImageMagick
sqlite3 "$DB" "SELECT writefile('$T_TMP/thumb.jpg', jpeg) FROM thumbnails WHERE image_id = $IMG" > /dev/null
convert "$T_TMP/thumb.jpg" -filter Triangle -resize "${W}x${H}!" "$T_TMP/ref.png"
rmse() { compare -metric RMSE "$1" "$2" null: 2>&1 | sed 's/.*(\(.*\)).*/\1/'; }
r_none=$(rmse "$T_TMP/none.png" "$T_TMP/ref.png")
awk -v r="$r_none" 'BEGIN { exit !(r < 0.04) }' && ok || bad "plain thumbnail RMSE $r_none >= 0.04"

# reference 2: PatchSAE's mask from the per-patch values that `patchsae query` reports
for r in 0 1 2 3 4 5 6 7 8 9 10 11 12 13; do
    for c in 0 1 2 3 4 5 6 7 8 9 10 11 12 13; do
        v=$("$PS" query "$DB" image $IMG --patch $r,$c --model base --limit 0 --tsv |
            awk -v s=$LAT '/^# patch/ { p = 1; next } p && $4 == s { print $5 }')
        echo "${v:-0}"
    done
done > "$T_TMP/map.txt"
awk 'NR == 1 || $1 < m { m = $1 } { v[NR] = $1 } END {
        print "P2\n14 14\n255"; for (i = 1; i <= 196; i++) print (v[i] > m ? 255 : 30) }' \
    "$T_TMP/map.txt" > "$T_TMP/mask.pgm"
active=$(grep -c '^255$' "$T_TMP/mask.pgm")
[ "$active" -gt 0 ] && [ "$active" -lt 196 ] && ok || bad "latent $LAT is active on $active of 196 patches: a poor test"
convert "$T_TMP/mask.pgm" -filter point -resize "${W}x${H}!" "$T_TMP/maskbig.png"
convert "$T_TMP/ref.png" "$T_TMP/maskbig.png" -compose multiply -composite "$T_TMP/refmask.png"
r_mask=$(rmse "$T_TMP/mask.png" "$T_TMP/refmask.png")
awk -v r="$r_mask" 'BEGIN { exit !(r < 0.05) }' && ok || bad "masked thumbnail RMSE $r_mask >= 0.05"
# and the test can fail: the masked picture is far from the plain reference
r_cross=$(rmse "$T_TMP/mask.png" "$T_TMP/ref.png")
awk -v r="$r_cross" -v m="$r_mask" 'BEGIN { exit !(r > 2 * m && r > 0.05) }' && ok ||
    bad "masked vs plain RMSE $r_cross is not clearly above $r_mask"
echo "rmse: plain $r_none, mask $r_mask, mask-vs-plain $r_cross ($active/196 patches active)" >&2
# a key typed while the terminal is being asked is not lost: '5' at once opens the Overview
( printf 5; sleep 1.5; printf Q; sleep 0.3 ) |
    TERM=xterm script -q -e -c "stty cols 100 rows 32; $TUI --graphics sixel $DB" "$TS.2" > /dev/null 2>&1
grep -q 'SAE latents' "$TS.2" && ok || bad "a key typed during the terminal probe was lost"
[ -n "${PS_KEEP_TMP:-}" ] && cp "$T_TMP"/*.png /tmp/ 2>/dev/null
t_done
