#!/bin/sh
# t_tui_probe.sh - probing your own images in patchsae-tui as a user does it:
# an index of the tiny CLIP + MaPLe fixtures (`patchsae index`), then the real
# binary in a private tmux server (as t_tui.sh): --image opens the Image view
# on the probed image with predictions of both models; the patch cursor moves
# and the patch's latent list changes; :open probes another image (strip,
# [ ] switch, p to an indexed image and back); f toggles the noise filter;
# Enter opens the Latent view; :save stores the probed images (sqlite3 sees
# them); a changed SAE is refused with both digests unless --force; and the
# command-line contract of the new options.
. tests/lib.sh
. tests/tui_lib.sh
N_SESS=0
start() {
    $T kill-server 2>/dev/null
    N_SESS=$((N_SESS + 1))
    T="tmux -u -L $SOCK-$N_SESS -f /dev/null"
    $T new-session -d -s s -x 100 -y 32 "TERM=tmux-256color $TUI $*; echo EXIT=\$?; sleep 600"
}
keys() { $T send-keys -t s "$@"; }
# the patch list: the middle column of the lists under the pictures
patch_list() { screen | sed -n '/top latents/,$p' | cut -c34-66; }

command -v tmux >/dev/null 2>&1 || { bad "tmux is not installed (sh tools/deps.sh)"; t_done; exit 0; }
[ -x "$TUI" ] || { bad "$TUI not built"; t_done; exit 0; }

D=tests/data/clip_tiny
X="$T_TMP"
mkdir -p "$X/ds/cat" "$X/ds/dog"
cp $D/img_land.png $D/img_port.png $D/img_square.png "$X/ds/cat/"
cp $D/img_gray.png $D/img_rgba.png $D/img_big.png "$X/ds/dog/"
cp tests/data/index/sae_tiny.safetensors "$X/sae.safetensors"
A="$X/a.db"
t_check "build the index" "$PS" index --quiet --model "$D/hf" \
    --tokenizer "$T_BPE" --sae "$X/sae.safetensors" \
    --maple "$D/maple/model.pth.tar-5" --data "$X/ds" -o "$A"

# ---- command line
t_status "--image of a missing file exits 1" 1 "$TUI" "$A" --image "$X/nope.png"
t_check "  and says so" sh -c "'$TUI' '$A' --image '$X/nope.png' 2>&1 | grep -q 'nope.png: no such file'"
t_status "--save without --image exits 2" 2 "$TUI" "$A" --save
t_status "--noise-filter needs a threshold > 0" 2 "$TUI" "$A" --noise-filter x
t_check "--help lists --image" sh -c "'$TUI' --help | grep -q -- '--image FILE'"

# ---- --image: the Image view on the probed image
start "$A" --image "$X/ds/cat/img_land.png"
check_for "--image opens the Image view" "Probed 1/1: img_land.png"
check_for "the strip" "probed:  1 img_land.png"
check_for "base predictions" "base (clip) top-5"
check_for "adapted predictions" "adapted (maple) top-5"
check_for "no true label" "true label: (none: probed)"
check_for "image-level lists" "image-level top latents"
keys l
check_for "patch cursor" "patch (2,2) token 11"
check_for "patch lists" "patch (2,2) top latents"
before=$(patch_list)
keys l j h h
check_for "the cursor moved" "patch (3,1) top latents"
check_until "moving the patch cursor changes the patch list" '[ "$(patch_list)" != "$before" ]'
keys f
check_for "f: noise filter on" "noise > 0.1 hidden"
keys f
check_for "f: noise filter off" "noise filter off"

# ---- :open another image, the strip, [ ], p
keys : "open $X/ds/dog/img_big.png" Enter
check_for ":open probes another" "Probed 2/2: img_big.png"
check_for "  both in the strip" "2 img_big.png"
keys '['
check_for "[ goes back in the strip" "Probed 1/2: img_land.png"
keys ']'
check_for "] forward" "Probed 2/2: img_big.png"
keys : 'image 3' Enter
check_for ":image shows an indexed image" "Image 3 (pos 2)"
keys p
check_for "p: back to the probed image" "Probed 2/2"
keys p
check_for "p: the indexed image again" "Image 3 (pos 2)"
keys p
keys : 'open /nonexistent.png' Enter
check_for ":open of a missing file" "/nonexistent.png: no such file"
keys J Enter
check_for "Enter opens the Latent view" "labels of the top"
keys q
check_for "q back to the probed image" "Probed 2/2"

# ---- :save
keys : save Enter
check_for ":save" "saved 2 probed images"
n=$(sqlite3 "$A" "SELECT count(*) FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE d.name = 'probed'" 2>/dev/null)
if [ "$n" = 2 ]; then ok; else bad ":save stored 2 images (got '$n')"; fi

# ---- help lists the new keys and commands
$T resize-window -t s -x 120 -y 90
keys '?'
check_for "help" "Everywhere"
for k in 'f ' 'p ' '[ ]' ':open FILE' ':save' ':noise'; do
    check_until "help lists \"$k\"" 'screen | grep -qF -- "  $k"'
done
keys Q
check_for "Q quits with status 0" "EXIT=0"

# ---- a changed SAE: refused (both digests named), --force probes with a warning
cp "$X/sae.safetensors" "$X/changed.safetensors"
printf 'X' | dd of="$X/changed.safetensors" bs=1 seek=$(( $(wc -c < "$X/changed.safetensors") - 1 )) conv=notrunc 2>/dev/null
start "$A" --sae "$X/changed.safetensors" --image "$X/ds/cat/img_port.png"
check_for "a changed SAE is refused" "refused (--force probes anyway): SAE"
check_until "both digests on the status line" \
    "screen | grep -q 'sha256 [0-9a-f]\\{12\\}…, the index [0-9a-f]\\{12\\}…'"
keys Q
start "$A" --force --sae "$X/changed.safetensors" --image "$X/ds/cat/img_port.png"
check_for "--force probes it" "Probed 1/1: img_port.png"
check_for "  with a warning" "warning (--force, results differ from the index): SAE"
keys Q
check_for "quits" "EXIT=0"

t_done
