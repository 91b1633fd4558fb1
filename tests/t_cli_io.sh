#!/bin/sh
# t_cli_io.sh - `patchsae info` as a user runs it: a safetensors file made by
# the writer (through the test runner's scratch copy), a truncated one, a HF
# model directory, datasets, unknown types, --help and usage errors.
. tests/lib.sh

# A valid safetensors file, built byte by byte: 8-byte LE header length, JSON, data.
hdr='{"__metadata__":{"format":"pt"},"vision.w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"ids":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}}'
mkst() { # mkst FILE JSON NDATA
    n=$(printf '%s' "$2" | wc -c)
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))\\000\\000\\000\\000" > "$1"
    printf '%s' "$2" >> "$1"
    head -c "$3" /dev/zero >> "$1"
}
mkst "$T_TMP/ok.safetensors" "$hdr" 40
out=$("$PS" info "$T_TMP/ok.safetensors" 2>&1); rc=$?
t_check "info on a valid file exits 0" [ "$rc" -eq 0 ]
t_check "info lists vision.w" sh -c 'printf "%s" "$1" | grep -q "vision.w *F32 *(2, 3)"' _ "$out"
t_check "info lists ids" sh -c 'printf "%s" "$1" | grep -q "ids *I64 *(2)"' _ "$out"
t_check "info shows metadata" sh -c 'printf "%s" "$1" | grep -q "format: pt"' _ "$out"

head -c 60 "$T_TMP/ok.safetensors" > "$T_TMP/cut.safetensors"
t_status "info on a truncated file exits 2" 2 "$PS" info "$T_TMP/cut.safetensors"
err=$("$PS" info "$T_TMP/cut.safetensors" 2>&1 >/dev/null)
t_check "the error names the file" sh -c 'printf "%s" "$1" | grep -q "cut.safetensors: "' _ "$err"
t_check "the error is one line" [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]
head -c 3 "$T_TMP/ok.safetensors" > "$T_TMP/tiny.safetensors"
t_status "info on a 3-byte file exits 2" 2 "$PS" info "$T_TMP/tiny.safetensors"
t_status "one good, one bad: exit 1" 1 "$PS" info "$T_TMP/ok.safetensors" "$T_TMP/cut.safetensors"
# sniffed by content without the extension
cp "$T_TMP/ok.safetensors" "$T_TMP/weights.bin"
t_check "safetensors recognised by content" sh -c '"$1" info "$2" | grep -q "safetensors, 2 tensors"' _ "$PS" "$T_TMP/weights.bin"

mkdir -p "$T_TMP/hf"
printf '{"model_type": "clip", "architectures": ["CLIPModel"]}' > "$T_TMP/hf/config.json"
t_check "a HF model dir is recognised" sh -c '"$1" info "$2" | grep -q "HuggingFace model directory, model_type clip"' _ "$PS" "$T_TMP/hf"
printf '{"model_type": ' > "$T_TMP/hf/config.json"
t_status "a broken config.json exits 2" 2 "$PS" info "$T_TMP/hf"

mkdir -p "$T_TMP/ds/cat" "$T_TMP/ds/dog"
: > "$T_TMP/ds/cat/a.jpg"; : > "$T_TMP/ds/dog/b.png"; : > "$T_TMP/ds/dog/c.png"
t_check "an image folder is described" sh -c '"$1" info "$2" | grep -q "dataset, 3 items, 2 classes"' _ "$PS" "$T_TMP/ds"
if [ -r /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    t_check "fashion-mnist:test" sh -c '"$1" info fashion-mnist:test | grep -q "10000 items, 10 classes, in-memory 28x28"' _ "$PS"
fi

printf 'hello\n' > "$T_TMP/notes.txt"
t_status "an unknown file type exits 2" 2 "$PS" info "$T_TMP/notes.txt"
t_check "the unknown-type error names the file" sh -c '"$1" info "$2" 2>&1 | grep -q "notes.txt: unknown file type"' _ "$PS" "$T_TMP/notes.txt"
t_status "a missing file exits 2" 2 "$PS" info "$T_TMP/nope.safetensors"
t_status "info --help exits 0" 0 "$PS" info --help
t_check "--help describes info" sh -c '"$1" info --help | grep -q "usage: patchsae info"' _ "$PS"
t_status "info with no file exits 2" 2 "$PS" info
t_status "an unknown option exits 2" 2 "$PS" info --frobnicate x
t_done
