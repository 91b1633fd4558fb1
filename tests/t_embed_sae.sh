#!/bin/sh
# t_embed_sae.sh - `patchsae embed --sae` from the command line: outputs and
# their shapes for each SAE layout, the SAE's hook layer as the default
# --layer (and a warning when --layer differs), MaPLe's extra tokens, and
# refusals (exit 2, one line naming both widths, nothing written). Numbers
# are checked against PyTorch in tests/test_embed_sae.c.
. tests/lib.sh
D=tests/data/clip_tiny
M=$D/hf
SD=tests/data/sae_embed
O="$T_TMP/out.safetensors"
E="$PS embed --model $M --quiet"
has() { printf '%s' "$1" | grep -q -- "$2"; }

t_check "embed --sae PatchSAE .pt" $E --sae $SD/patchsae.pt -o "$O" $D/img_land.png $D/img_big.png
out=$("$PS" info "$O" 2>&1)
t_check "sae_acts (N, T, S)" has "$out" "sae_acts *F32 *(2, 17, 64)"
t_check "sae_recon (N, T, D)" has "$out" "sae_recon *F32 *(2, 17, 32)"
t_check "resid still there" has "$out" "resid *F32 *(2, 17, 32)"
t_check "metadata d_sae" has "$out" "d_sae: 64"
t_check "metadata names the SAE" has "$out" "sae: .*patchsae.pt"
t_check "block_layer -2 is layer 2" has "$out" "layer: 2"
t_check "embed --sae SAELens directory" $E --sae $SD/saelens -o "$O" $D/img_land.png
t_check "SAELens: sae_acts" has "$("$PS" info "$O")" "sae_acts *F32 *(1, 17, 64)"
t_check "embed --sae sae_weights.safetensors" $E --sae $SD/saelens/sae_weights.safetensors -o "$O" $D/img_square.png
BPE=$T_BPE
if [ -r "$BPE" ]; then
    t_check "embed --sae, text too" $E --tokenizer $BPE --sae $SD/patchsae.pt --text "a cat" -o "$O" $D/img_square.png
    out=$("$PS" info "$O")
    t_check "with text: logits" has "$out" "logits *F32 *(1, 1)"
    t_check "with text: sae_acts" has "$out" "sae_acts *F32 *(1, 17, 64)"
    t_check "embed --sae, text only" $E --tokenizer $BPE --sae $SD/patchsae.pt --text "a cat" -o "$O"
    t_check "text only: no sae_acts" sh -c '! "$1" info "$2" | grep -q sae_acts' _ "$PS" "$O"
else
    echo "$0: $BPE not found (set PS_SHARED_DATA): text checks skipped" >&2
fi

msg=$($E --sae $SD/layer0.pt -o "$O" $D/img_square.png 2>&1); rc=$?
t_check "SAE hook layer 0: exit 0" [ "$rc" -eq 0 ]
t_check "SAE hook layer 0: no warning" [ -z "$msg" ]
t_check "SAE hook layer becomes --layer" has "$("$PS" info "$O")" "layer: 0"
msg=$($E --sae $SD/layer0.pt --layer 1 -o "$O" $D/img_square.png 2>&1); rc=$?
t_check "--layer 1 against the SAE's 0: exit 0" [ "$rc" -eq 0 ]
t_check "--layer 1 against the SAE's 0: warned" has "$msg" "warning: --layer 1, but .*block 0"
t_check "--layer wins" has "$("$PS" info "$O")" "layer: 1"

mkdir "$T_TMP/mlp" && cp $SD/saelens/sae_weights.safetensors "$T_TMP/mlp/" &&
    sed 's/hook_resid_post/hook_mlp_out/' $SD/saelens/cfg.json > "$T_TMP/mlp/cfg.json"
msg=$($E --sae "$T_TMP/mlp" -o "$O" $D/img_square.png 2>&1); rc=$?
t_check "an SAE of another hook: exit 0" [ "$rc" -eq 0 ]
t_check "an SAE of another hook: warned" has "$msg" "warning: .*blocks.2.hook_mlp_out.*not the residual stream"

t_check "embed --maple --sae" $E --model $D/openai.safetensors --maple $D/maple/model.pth.tar-5 --sae $SD/patchsae.pt -o "$O" $D/img_land.png
t_check "MaPLe: sae_acts has T + n_ctx tokens" has "$("$PS" info "$O")" "sae_acts *F32 *(1, 19, 64)"

rm -f "$O"
msg=$($E --sae tests/data/sae_patchsae.pt -o "$O" $D/img_land.png 2>&1); rc=$?
t_check "d_in 16 against width 32: exit 2" [ "$rc" -eq 2 ]
t_check "the message has both numbers" has "$msg" "d_in 16 does not match the vision width 32"
t_check "the message is one line" [ "$(printf '%s\n' "$msg" | wc -l)" -eq 1 ]
t_check "nothing written on refusal" test ! -e "$O"
t_status "missing SAE: exit 2" 2 $E --sae "$T_TMP/none.pt" -o "$O" $D/img_land.png
t_status "not an SAE: exit 2" 2 $E --sae $D/maple/model.pth.tar-5 -o "$O" $D/img_land.png
t_status "a hostile pickle: exit 2" 2 $E --sae tests/data/evil_os_system.pt -o "$O" $D/img_land.png
t_status "a CLIP is not an SAE: exit 2" 2 $E --sae $D/openai.safetensors -o "$O" $D/img_land.png
t_status "--sae without a value: exit 2" 2 $E -o "$O" $D/img_land.png --sae
t_check "nothing written on failure" test ! -e "$O"
t_check "--help describes --sae" sh -c '"$1" embed --help 2>&1 | grep -q -- "--sae SAE"' _ "$PS"
t_done
