#!/bin/sh
# t_tui_xterm.sh - screenshots of patchsae-tui in a real sixel terminal (xterm
# -ti vt340 under Xvfb, tools/tui-shot.sh) with pixel assertions: the Image
# view's pictures sit exactly on their cells (RMSE of the crop against the
# thumbnail; one pixel off must be worse), the mask overlay changes the
# picture, the patch cursor is red where the layout says, and the half-block
# fallback shows the same picture at cell resolution. Cell (r, c) has its top
# left pixel at (2 + 8c, 2 + 17r): 8x17 cells, a 2 px border.
. tests/lib.sh
TUI="$BUILD/patchsae-tui"
for c in xvfb-run xterm xdotool import convert compare sqlite3; do
    command -v $c >/dev/null 2>&1 || { T_FAIL=$((T_FAIL + 1)); echo "$0: $c missing (sh tools/deps.sh)" >&2; t_done; exit 0; }
done
ok() { T_PASS=$((T_PASS + 1)); }
bad() { T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $*" >&2; }
rmse() { compare -metric RMSE "$1" "$2" null: 2>&1 | sed 's/.*(\(.*\)).*/\1/'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
crop() { convert "$1" -crop "$2" +repage "$3"; }

DB="$T_TMP/x.db"
IMG=3
"$PS" synth "$DB" --images 12 --latents 64 --grid 14 --classes 5 --thumb 224 --quiet || bad "synth"
sqlite3 "$DB" "SELECT writefile('$T_TMP/thumb.jpg', jpeg) FROM thumbnails WHERE image_id = $IMG" > /dev/null
S="$T_TMP/shots"
sh tools/tui-shot.sh "$S" "$TUI" --trace "$T_TMP/trace" "$DB" <<EOF
type :latent 5
key Return
type :image $IMG
key Return
sleep 0.5
shot mask
key m m
sleep 0.5
shot plain
key l
sleep 0.5
shot cursor
EOF
for f in mask plain cursor; do [ -s "$S/$f.png" ] && ok || bad "no screenshot $f"; done
grep -q 'graphics=sixel cell=8x17 (TIOCGWINSZ)' "$T_TMP/trace" && ok || bad "xterm -ti vt340 not detected as sixel with 8x17 cells"

# The Image view: pictures of 238x238 px (14 rows of 17 px) at cells (3,0), (3,31), (3,62)
P=238
convert "$T_TMP/thumb.jpg" -filter Triangle -resize "${P}x${P}!" "$T_TMP/ref.png"
crop "$S/plain.png" "${P}x$P+250+53" "$T_TMP/ov0.png"
crop "$S/plain.png" "${P}x$P+250+54" "$T_TMP/ov0_off.png"
crop "$S/plain.png" "${P}x$P+498+53" "$T_TMP/ov1.png"
r0=$(rmse "$T_TMP/ov0.png" "$T_TMP/ref.png"); r1=$(rmse "$T_TMP/ov1.png" "$T_TMP/ref.png")
roff=$(rmse "$T_TMP/ov0_off.png" "$T_TMP/ref.png")
lt "$r0" 0.035 && ok || bad "base picture (overlay off) vs thumbnail: RMSE $r0"
lt "$r1" 0.035 && ok || bad "adapted picture (overlay off) vs thumbnail: RMSE $r1"
lt "$r0" "$roff" && ok || bad "one pixel lower should match worse ($r0 vs $roff)"
crop "$S/mask.png" "${P}x$P+250+53" "$T_TMP/ov0_mask.png"
rm_=$(rmse "$T_TMP/ov0_mask.png" "$T_TMP/ref.png")
lt 0.08 "$rm_" && ok || bad "the mask overlay hardly changes the picture: RMSE $rm_"
# the patch cursor (7,7) of the main picture: outline from pixel 119 of the 238 (2 px wide)
px=$(convert "$S/cursor.png" -format '%[fx:int(255*p{122,173}.r)] %[fx:int(255*p{122,173}.g)] %[fx:int(255*p{122,173}.b)]' info:)
set -- $px
[ "$1" -gt 200 ] && [ "$2" -lt 90 ] && [ "$3" -lt 90 ] && ok || bad "no red cursor at patch (7,7): pixel $px"
echo "xterm rmse: base $r0, adapted $r1, one pixel off $roff, masked $rm_; cursor pixel $px" >&2

# The half-block fallback in the same terminal: 28x14 cells = 28x28 picture pixels
PATCHSAE_GRAPHICS=blocks sh tools/tui-shot.sh "$S" "$TUI" "$DB" <<EOF
type :image $IMG
key Return
key m m
sleep 0.5
shot blocks
EOF
# base picture at cell (3,29): 28 cols x 14 rows = 224 x 238 px
crop "$S/blocks.png" "224x238+234+53" "$T_TMP/bl.png"
convert "$T_TMP/thumb.jpg" -filter Triangle -resize '28x28!' -filter point -resize '224x238!' "$T_TMP/blref.png"
rb=$(rmse "$T_TMP/bl.png" "$T_TMP/blref.png")
lt "$rb" 0.08 && ok || bad "half-block picture vs thumbnail at 28x28: RMSE $rb"
echo "xterm blocks rmse $rb" >&2
[ -n "${PS_KEEP_TMP:-}" ] && cp "$S"/*.png /tmp/ 2>/dev/null
t_done
