#!/bin/sh
# t_maple.sh - MaPLe from the command line: `patchsae embed --maple` on the
# tiny fixture (resid gets the n_ctx prompt tokens, MaPLe class prompts,
# metadata), refusals with exit 2 and a message naming the tensor, nothing
# written on failure, and `patchsae info` on MaPLe checkpoints. Numbers are
# checked against PyTorch in tests/test_maple.c; this checks the plumbing.
. tests/lib.sh
D=tests/data/clip_tiny
M=$D/openai.safetensors
CK=$D/maple/model.pth.tar-5
BPE=$T_BPE
O="$T_TMP/out.safetensors"
if [ ! -r "$BPE" ]; then
    echo "$0: $BPE not found (set PS_SHARED_DATA): skipped" >&2
    t_done
    exit 0
fi
E="$PS embed --model $M --tokenizer $BPE --quiet"
has() { printf '%s' "$1" | grep -q -- "$2"; }

t_check "embed --maple --classes" $E --maple $CK --classes $D/maple/classes.txt -o "$O" $D/img_land.png $D/img_big.png
out=$("$PS" info "$O" 2>&1)
t_check "resid has T + n_ctx tokens" has "$out" "resid *F32 *(2, 19, 32)"
t_check "one text row per class" has "$out" "text_embeds *F32 *(4, 24)"
t_check "logits (N, C)" has "$out" "logits *F32 *(2, 4)"
t_check "metadata n_ctx" has "$out" "n_ctx: 2"
t_check "metadata prompt_depth" has "$out" "prompt_depth: 3"
t_check "metadata names the checkpoint" has "$out" "maple: .*model.pth.tar-5"
t_check "underscores become spaces" has "$out" "a photo of a golden retriever\\."

t_check "embed --maple, images only" $E --maple $CK -o "$O" $D/img_square.png
t_check "images only: resid (1, 19, 32)" has "$("$PS" info "$O")" "resid *F32 *(1, 19, 32)"
t_check "embed --maple --layer 0 with --text" $E --maple $CK --layer 0 --text "a cat" --classes $D/maple/classes.txt -o "$O" $D/img_square.png
t_check "--text rows come first" has "$("$PS" info "$O")" "text_embeds *F32 *(5, 24)"
t_check "embed without --maple keeps T" $E -o "$O" $D/img_square.png
t_check "plain resid (1, 17, 32)" has "$("$PS" info "$O")" "resid *F32 *(1, 17, 32)"

rm -f "$O"
t_status "missing checkpoint: exit 2" 2 $E --maple "$T_TMP/none.pth" -o "$O" $D/img_square.png
msg=$($E --maple tests/data/maple/wide_vis.pth -o "$O" $D/img_square.png 2>&1); rc=$?
t_check "wrong vision width: exit 2" [ "$rc" -eq 2 ]
t_check "the message names the tensor and shapes" has "$msg" "prompt_learner.proj.weight is (40, 16), expected (32, 16)"
t_check "the message is one line" [ "$(printf '%s\n' "$msg" | wc -l)" -eq 1 ]
t_status "not a MaPLe checkpoint: exit 2" 2 $E --maple tests/data/sae_patchsae.pt -o "$O" $D/img_square.png
t_status "a hostile pickle: exit 2" 2 $E --maple tests/data/evil_os_system.pt -o "$O" $D/img_square.png
t_status "--maple with --ensemble: exit 2" 2 $E --maple $CK --ensemble --classes $D/maple/classes.txt -o "$O" $D/img_square.png
t_check "nothing written on failure" test ! -e "$O"
t_check "--help mentions --maple" sh -c '"$1" embed --help 2>&1 | grep -q -- "--maple CKPT"' _ "$PS"

out=$("$PS" info $CK 2>&1)
t_check "info says MaPLe, n_ctx and depth" has "$out" "MaPLe checkpoint: n_ctx 2, prompt depth 3 (2 deep prompts), text width 16, vision width 32, epoch 5"
t_check "info on a damaged MaPLe file says why" has "$("$PS" info tests/data/maple/gap.pth 2>&1)" "MaPLe checkpoint, not usable: .*compound_prompts_text.1 missing"
t_check "info on an SAE checkpoint does not say MaPLe" sh -c '! "$1" info tests/data/sae_patchsae.pt | grep -q MaPLe' _ "$PS"
t_done
