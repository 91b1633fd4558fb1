#!/bin/sh
# t_pt.sh - PyTorch checkpoints from the command line: `patchsae info` on
# .pt files (tensors, pickled config objects), `patchsae convert` to
# safetensors and back through info, and refusals of hostile checkpoints
# with exit status 2, one error line naming the file, and no side effect.
. tests/lib.sh
D=tests/data

out=$("$PS" info "$D/sae_patchsae.pt" 2>&1); rc=$?
t_check "info on a PatchSAE checkpoint exits 0" [ "$rc" -eq 0 ]
t_check "info names the format and counts" sh -c 'printf "%s" "$1" | grep -q "PyTorch checkpoint (zip), 4 tensors, 2128 parameters"' _ "$out"
t_check "info shows the pickled config" sh -c 'printf "%s" "$1" | grep -q "cfg = <src.sae_training.config.ViTSAERunnerConfig .* d_in=16 .*device=torch.device(.cpu.) .*dtype=torch.float32"' _ "$out"
t_check "info lists W_enc" sh -c 'printf "%s" "$1" | grep -q "state_dict.W_enc F32  (16, 64)"' _ "$out"
t_check "info on a legacy file" sh -c '"$1" info "$2" | grep -q "PyTorch checkpoint (legacy), 19 tensors"' _ "$PS" "$D/pt_mixed_legacy.pt"
cp "$D/dassl.pt" "$T_TMP/model.pth.tar-5"
t_check "info on a Dassl checkpoint" sh -c '"$1" info "$2" | grep -q "epoch = 5"' _ "$PS" "$T_TMP/model.pth.tar-5"
cp "$D/dassl.pt" "$T_TMP/noext"
t_check "a zip checkpoint is recognised by content" sh -c '"$1" info "$2" | grep -q "PyTorch checkpoint (zip)"' _ "$PS" "$T_TMP/noext"

t_status "convert exits 0" 0 "$PS" convert "$D/pt_mixed.pt" "$T_TMP/m.safetensors"
out=$("$PS" info "$T_TMP/m.safetensors" 2>&1)
t_check "converted file has 19 tensors" sh -c 'printf "%s" "$1" | grep -q "safetensors, 19 tensors, 125 parameters"' _ "$out"
t_check "strided views keep their shapes" sh -c 'printf "%s" "$1" | grep -q "transposed *F32 *(6, 4)"' _ "$out"
t_check "bf16 stays bf16" sh -c 'printf "%s" "$1" | grep -q "bf16 *BF16 *(3, 2)"' _ "$out"
t_status "convert --key state_dict --f32" 0 "$PS" convert --key state_dict --f32 "$D/sae_patchsae.pt" "$T_TMP/s.safetensors"
t_check "--key drops the prefix" sh -c '"$1" info "$2" | grep -q "^  W_dec F32  (64, 16)"' _ "$PS" "$T_TMP/s.safetensors"
t_status "convert with a missing key exits 2" 2 "$PS" convert --key nope "$D/sae_patchsae.pt" "$T_TMP/x.safetensors"
t_status "convert with one argument exits 2" 2 "$PS" convert "$D/sae_patchsae.pt"
t_status "convert with a bad option exits 2" 2 "$PS" convert --bogus a b
t_check "convert --help" sh -c '"$1" convert --help 2>&1 | grep -q "usage: patchsae convert"' _ "$PS"

rm -f /tmp/patchsae_pwned_os
t_status "a checkpoint calling os.system is refused (info)" 2 "$PS" info "$D/evil_os_system.pt"
t_status "a checkpoint calling os.system is refused (convert)" 2 "$PS" convert "$D/evil_os_system.pt" "$T_TMP/e.safetensors"
err=$("$PS" convert "$D/evil_os_system.pt" "$T_TMP/e.safetensors" 2>&1 >/dev/null)
t_check "the refusal names the file and the global" sh -c 'printf "%s" "$1" | grep -q "evil_os_system.pt: .*refusing global os.system.*nothing was executed"' _ "$err"
t_check "the refusal is one line" [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]
t_check "no file was created by the pickle" [ ! -e /tmp/patchsae_pwned_os ]
t_check "no output was left behind" [ ! -e "$T_TMP/e.safetensors" ]
head -c 3000 "$D/sae_patchsae.pt" > "$T_TMP/cut.pt"
t_status "a truncated checkpoint exits 2" 2 "$PS" info "$T_TMP/cut.pt"
t_done
