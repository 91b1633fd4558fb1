#!/bin/sh
# t_embed.sh - `patchsae init` and `patchsae embed` from the command line: exit
# statuses, one-line error messages naming the problem, nothing half-written.
. tests/lib.sh
D=tests/data/clip_tiny
M="$T_TMP/m"
t_check "init tiny" $PS init --arch tiny --seed 3 -o "$M"
t_check "init wrote config.json" test -s "$M/config.json"
t_check "init wrote tokenizer" test -s "$M/vocab.json" -a -s "$M/merges.txt"
t_status "init without -o" 2 $PS init --arch tiny
t_status "init unknown arch" 2 $PS init --arch vit-h-99 -o "$T_TMP/x"
t_status "init bad seed" 2 $PS init --arch tiny --seed abc -o "$T_TMP/x"
t_check "init openai layout" $PS init --arch tiny --format openai -o "$T_TMP/oa"
t_check "init --vocab from a vocab.json" $PS init --arch tiny --vocab $D/small/hf/vocab.json -o "$T_TMP/v"
t_check "init --vocab copied merges" cmp $D/small/hf/merges.txt "$T_TMP/v/merges.txt"

O="$T_TMP/out.safetensors"
t_check "embed images and prompts" $PS embed --model "$M" --quiet --text "a photo of a cat." -o "$O" $D/img_land.png $D/img_big.png
t_check "embed output exists" test -s "$O"
t_check "embed openai layout" $PS embed --model "$T_TMP/oa" --quiet --text "the photo" -o "$O" $D/img_land.png
t_check "embed text only" $PS embed --model "$M" --quiet --text "of" -o "$O"
t_status "embed: one unreadable image gives 1" 1 $PS embed --model "$M" --quiet -o "$O" $D/img_land.png "$T_TMP/none.png"
t_status "embed: no readable image gives 2" 2 $PS embed --model "$M" --quiet -o "$T_TMP/no.safetensors" "$T_TMP/none.png"
t_check "embed: nothing written on failure" test ! -e "$T_TMP/no.safetensors"
t_status "embed: no model" 2 $PS embed -o "$O" $D/img_land.png
t_status "embed: no output" 2 $PS embed --model "$M" $D/img_land.png
t_status "embed: nothing to do" 2 $PS embed --model "$M" -o "$O"
t_status "embed: layer out of range" 2 $PS embed --model "$M" --layer 3 -o "$O" $D/img_land.png
t_status "embed: layer not a number" 2 $PS embed --model "$M" --layer x -o "$O" $D/img_land.png
t_status "embed: --sae refused for now" 2 $PS embed --model "$M" --sae foo.pt -o "$O" $D/img_land.png
t_status "embed: --maple refused for now" 2 $PS embed --model "$M" --maple foo.pth -o "$O" $D/img_land.png
t_status "embed: --ensemble needs --classes" 2 $PS embed --model "$M" --ensemble -o "$O" $D/img_land.png
t_status "embed: missing classes file" 2 $PS embed --model "$M" --classes "$T_TMP/none.txt" -o "$O" $D/img_land.png
t_status "embed: missing model" 2 $PS embed --model "$T_TMP/nomodel" -o "$O" $D/img_land.png
msg=$($PS embed --model "$T_TMP/nomodel" -o "$O" $D/img_land.png 2>&1)
t_check "embed: message names the file" sh -c "echo '$msg' | grep -q nomodel"
t_done
