#!/bin/sh
# t_train.sh - `patchsae train` as a user runs it, on the tiny CLIP of
# tests/data/clip_tiny and a small IDX dataset made here: usage errors, a
# run with its CSV log and `info` on the result, an interrupted run (SIGINT)
# resumed bit for bit, a float32 activation cache giving the live result
# exactly, a cache rebuilt only where a shard is missing, and --resume with
# other options refused.
. tests/lib.sh

M=tests/data/clip_tiny/hf
# 48 random 28x28 grey images in IDX format, labels beside them.
idx="$T_TMP/tiny-images-idx3-ubyte"
printf '\000\000\010\003\000\000\000\060\000\000\000\034\000\000\000\034' > "$idx"
head -c $((48 * 28 * 28)) /dev/urandom >> "$idx"
printf '\000\000\010\001\000\000\000\060' > "$T_TMP/tiny-labels-idx1-ubyte"
head -c 48 /dev/zero >> "$T_TMP/tiny-labels-idx1-ubyte"
data_ok() { [ -s "$1" ]; }
body() { # body FILE: the tensor bytes of an SAE file (the 8352 floats at its end)
    tail -c 33408 "$1"
}
same_body() { body "$1" > "$T_TMP/a.bin"; body "$2" > "$T_TMP/b.bin"; cmp -s "$T_TMP/a.bin" "$T_TMP/b.bin"; }

t_status "--help exits 0" 0 "$PS" train --help
t_status "no --model: exit 2" 2 "$PS" train --data "$idx" -o "$T_TMP/x.safetensors"
t_status "no -o: exit 2" 2 "$PS" train --model $M --data "$idx"
t_status "bad --tokens: exit 2" 2 "$PS" train --model $M --data "$idx" --tokens some -o "$T_TMP/x.safetensors"
t_status "bad --b-dec-init: exit 2" 2 "$PS" train --model $M --data "$idx" --b-dec-init median -o "$T_TMP/x.safetensors"
t_status "--steps and --images: exit 2" 2 "$PS" train --model $M --data "$idx" --steps 2 --images 8 -o "$T_TMP/x.safetensors"
t_status "--layer past the model: exit 2" 2 "$PS" train --model $M --data "$idx" --layer 9 -o "$T_TMP/x.safetensors"
t_status "missing data: exit 2" 2 "$PS" train --model $M --data "$T_TMP/none.tsv" -o "$T_TMP/x.safetensors"
err=$("$PS" train --model $M --data "$T_TMP/none.tsv" -o "$T_TMP/x.safetensors" 2>&1)
t_check "the error names the data file" sh -c 'printf "%s" "$1" | grep -q "none.tsv"' _ "$err"
t_check "no output after a usage error" [ ! -e "$T_TMP/x.safetensors" ]

OPTS="--model $M --data $idx --expansion 4 --batch 4 --warmup 5 --lr 1e-3 --quiet"
t_status "a short run exits 0" 0 "$PS" train $OPTS --steps 40 --log "$T_TMP/log.csv" -o "$T_TMP/a.safetensors"
t_check "the SAE is written" data_ok "$T_TMP/a.safetensors"
t_check "the CSV log has a header and 40 rows" [ "$(wc -l < "$T_TMP/log.csv")" -eq 41 ]
t_check "the CSV columns" sh -c 'head -1 "$1" | grep -q "^step,images,lr,loss,mse_loss,l1_loss,ghost_loss,l0,explained_variance,dead,fired,seconds$"' _ "$T_TMP/log.csv"
out=$("$PS" info "$T_TMP/a.safetensors")
t_check "info: the project's SAE format" sh -c 'printf "%s" "$1" | grep -q "patchsae.format: sae"' _ "$out"
t_check "info: the recipe" sh -c 'printf "%s" "$1" | grep -q "l1_coefficient *8e-5"' _ "$out"
t_check "info: the batch" sh -c 'printf "%s" "$1" | grep -q "batch_tokens *68"' _ "$out"
t_check "info: final metrics" sh -c 'printf "%s" "$1" | grep -q "^final metrics:" && printf "%s" "$1" | grep -q "explained_variance"' _ "$out"
t_check "info: W_enc is (D, S)" sh -c 'printf "%s" "$1" | grep -q "W_enc F32 *(32, 128)"' _ "$out"
t_check "the checkpoint exists" data_ok "$T_TMP/a.ckpt.safetensors"

# the same run with the same seed gives the same bytes
"$PS" train $OPTS --steps 40 -o "$T_TMP/a2.safetensors" 2>/dev/null
t_check "deterministic" cmp -s "$T_TMP/a.safetensors" "$T_TMP/a2.safetensors"

# interrupted by SIGINT, resumed: the same SAE as one straight run
N=4000
"$PS" train $OPTS --steps $N --checkpoint-every 100000 -o "$T_TMP/full.safetensors" 2>/dev/null
"$PS" train $OPTS --steps $N --checkpoint-every 100000 -o "$T_TMP/int.safetensors" 2>"$T_TMP/int.err" &
pid=$!
sleep 1
kill -INT $pid
wait $pid; rc=$?
t_check "SIGINT: exit 1" [ "$rc" -eq 1 ]
t_check "SIGINT: a checkpoint and no SAE" sh -c '[ -s "$1" ] && [ ! -e "$2" ]' _ "$T_TMP/int.ckpt.safetensors" "$T_TMP/int.safetensors"
t_check "SIGINT: the message says how to resume" grep -q -- "--resume" "$T_TMP/int.err"
t_status "resume exits 0" 0 "$PS" train $OPTS --steps $N --checkpoint-every 100000 --resume "$T_TMP/int.ckpt.safetensors" -o "$T_TMP/int.safetensors"
t_check "resumed = straight, bit for bit" cmp -s "$T_TMP/full.safetensors" "$T_TMP/int.safetensors"
t_status "resume with another --batch: exit 2" 2 "$PS" train $OPTS --batch 5 --steps $N --resume "$T_TMP/int.ckpt.safetensors" -o "$T_TMP/other.safetensors"
err=$("$PS" train $OPTS --batch 5 --steps $N --resume "$T_TMP/int.ckpt.safetensors" -o "$T_TMP/other.safetensors" 2>&1)
t_check "the refusal names the field" sh -c 'printf "%s" "$1" | grep -q "batch_images"' _ "$err"

# a float32 cache trains as the live activations do
t_status "cached run exits 0" 0 "$PS" train $OPTS --steps 40 --cache "$T_TMP/cache" --cache-dtype f32 --cache-shard 20 --log "$T_TMP/clog.csv" -o "$T_TMP/c.safetensors"
t_check "three shards" [ "$(ls "$T_TMP/cache" | grep -c '^acts-.*safetensors$')" -eq 3 ]
# CLIP runs on other sub-batches when caching: equal up to GEMM rounding
close_loss() { # the loss of the last rows of two logs within 1e-4 relative
    a=$(tail -1 "$1" | cut -d, -f4); b=$(tail -1 "$2" | cut -d, -f4)
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * a) }'
}
t_check "f32 cache = live, to rounding" close_loss "$T_TMP/log.csv" "$T_TMP/clog.csv"
touch -d '2001-01-01' "$T_TMP/cache/acts-000000.safetensors"
rm "$T_TMP/cache/acts-000001.safetensors"
t_status "cache rebuilt where missing" 0 "$PS" train $OPTS --steps 40 --cache "$T_TMP/cache" --cache-dtype f32 --cache-shard 20 -o "$T_TMP/c2.safetensors"
t_check "the kept shard was not rewritten" sh -c '[ "$(date -r "$1" +%Y)" = 2001 ] && [ -s "$2" ]' _ "$T_TMP/cache/acts-000000.safetensors" "$T_TMP/cache/acts-000001.safetensors"
t_check "same result" same_body "$T_TMP/c.safetensors" "$T_TMP/c2.safetensors"
t_status "f16 cache run exits 0" 0 "$PS" train $OPTS --steps 40 --cache "$T_TMP/c16" -o "$T_TMP/h.safetensors"
t_check "f16 cache: a valid SAE" sh -c '"$1" info "$2" | grep -q "activation_cache"' _ "$PS" "$T_TMP/h.safetensors"
t_status "--tokens cls exits 0" 0 "$PS" train $OPTS --steps 5 --tokens cls --b-dec-init mean -o "$T_TMP/cls.safetensors"
t_check "cls: 4 tokens a step" sh -c '"$1" info "$2" | grep -q "batch_tokens *4$"' _ "$PS" "$T_TMP/cls.safetensors"
t_status "--tokens patches --no-ghost exits 0" 0 "$PS" train $OPTS --steps 5 --tokens patches --no-ghost -o "$T_TMP/p.safetensors"
t_check "patches: 16 tokens an image" sh -c '"$1" info "$2" | grep -q "tokens_per_image *16$"' _ "$PS" "$T_TMP/p.safetensors"
t_done
