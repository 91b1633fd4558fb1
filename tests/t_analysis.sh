#!/bin/sh
# t_analysis.sh - `patchsae eval` and `patchsae diff` from the command line, on a
# synthetic index (`patchsae synth`: 64 latents, 3 classes, base + adapted), the
# small CLIP fixture, a random 64-latent SAE fixture and an image folder of the
# fixture PNGs (3 classes): exit codes, outputs, rows in the index, determinism,
# and clear refusals of mismatched inputs. Then, when OpenAI's BPE file is there,
# on a real index built by `patchsae index` (tiny CLIP + MaPLe, tiny SAE): eval of
# both models, whose unmasked accuracy must equal the index's own predictions,
# and diff.
. tests/lib.sh
D=tests/data
M=$D/clip_tiny/small/hf
SAE=$D/eval/sae_small.safetensors
X=$T_TMP/x.db

mkdir -p "$T_TMP/data/car" "$T_TMP/data/cat" "$T_TMP/data/dog"
cp "$D/clip_tiny/img_land.png" "$D/clip_tiny/img_port.png" "$T_TMP/data/cat/"
cp "$D/clip_tiny/img_square.png" "$D/clip_tiny/img_gray.png" "$T_TMP/data/dog/"
cp "$D/clip_tiny/img_rgba.png" "$D/clip_tiny/img_big.png" "$T_TMP/data/car/"
"$PS" synth "$X" --latents 64 --classes 3 --models 2 --images 60 --quiet >/dev/null 2>&1
t_check "synth index made" [ -s "$X" ]

ev() { "$PS" eval --quiet --index "$X" --model "$M" --sae "$SAE" --data "$T_TMP/data" "$@"; }
out=$(ev --csv "$T_TMP/a.csv" 2>/dev/null); rc=$?
t_check "eval exits 0" [ "$rc" -eq 0 ]
t_check "eval prints 38 conditions and a header" [ "$(printf '%s\n' "$out" | wc -l)" -eq 39 ]
t_check "eval prints orig, recon and on/off rows" sh -c 'for r in "orig	0	6	" "recon	0	6	" "off	64	6	" "random_on	5	6	" "dataset_off	50	6	"; do printf "%s\n" "$1" | grep -q "^$r" || exit 1; done' _ "$out"
recon=$(printf '%s\n' "$out" | awk -F'\t' '$1=="recon"{print $4}')
onall=$(printf '%s\n' "$out" | awk -F'\t' '$1=="on" && $2==64 {print $4}')
t_check "recon = every latent on" [ -n "$recon" ] && [ "$recon" = "$onall" ]
t_check "CSV header" sh -c 'head -1 "$1" | grep -qx "class,class_name,mode,k,n_images,correct,accuracy"' _ "$T_TMP/a.csv"
t_check "CSV has overall and per-class rows" [ "$(wc -l < "$T_TMP/a.csv")" -eq $((1 + 4 * 38)) ]
t_check "no temporary CSV left" [ ! -e "$T_TMP/a.csv.tmp" ]
t_check "index holds 4 x 38 eval rows" [ "$("$PS" query "$X" sql "SELECT count(*) FROM eval" | tail -1)" -eq 152 ]
ev --csv "$T_TMP/b.csv" >/dev/null 2>&1
t_check "eval is deterministic" cmp -s "$T_TMP/a.csv" "$T_TMP/b.csv"
t_check "a rerun replaces its rows" [ "$("$PS" query "$X" sql "SELECT count(*) FROM eval" | tail -1)" -eq 152 ]
ev --seed 5 --csv "$T_TMP/c.csv" >/dev/null 2>&1
t_check "the seed changes only random rows" sh -c 'diff "$1" "$2" | grep "^[<>]" | grep -v ",random_o" | grep -q . && exit 1 || exit 0' _ "$T_TMP/a.csv" "$T_TMP/c.csv"
out=$(ev --no-baselines --k 1,5,all --bias-const 0 2>/dev/null); rc=$?
t_check "--no-baselines --k 1,5,all exits 0" [ "$rc" -eq 0 ]
t_check "... with 2 + 2*3 conditions" [ "$(printf '%s\n' "$out" | wc -l)" -eq 9 ]
t_status "--rank-by adapted" 0 ev --rank-by adapted --k 2 --no-baselines
t_check "rows selected by the adapted model" [ "$("$PS" query "$X" sql "SELECT count(*) FROM eval_names WHERE selected_by = 'adapted'" | tail -1)" -gt 0 ]
t_status "--max-per-class 1 --batch 1" 0 ev --max-per-class 1 --batch 1 --k 1 --no-baselines

printf 'not an image' > "$T_TMP/data/cat/broken.png"
t_status "an unreadable image is skipped (exit 1)" 1 ev --k 1 --no-baselines
err=$(ev --k 1 --no-baselines 2>&1 >/dev/null)
t_check "... and named" sh -c 'printf "%s" "$1" | grep -q "broken.png"' _ "$err"
rm "$T_TMP/data/cat/broken.png"

t_status "missing --data exits 2" 2 "$PS" eval --index "$X" --model "$M" --sae "$SAE"
t_status "a bad k list exits 2" 2 ev --k 1,x
t_status "a bad --bias-const exits 2" 2 ev --bias-const abc
t_status "an unknown --rank-by exits 2" 2 ev --rank-by nobody
t_status "an SAE of another width exits 2" 2 "$PS" eval --quiet --index "$X" --model "$M" --sae "$D/sae_patchsae.pt" --data "$T_TMP/data"
t_status "a missing index exits 2" 2 "$PS" eval --quiet --index "$T_TMP/none.db" --model "$M" --sae "$SAE" --data "$T_TMP/data"
t_check "... and is not created" [ ! -e "$T_TMP/none.db" ]
mkdir -p "$T_TMP/two/a" "$T_TMP/two/b"
cp "$D/clip_tiny/img_land.png" "$T_TMP/two/a/"; cp "$D/clip_tiny/img_port.png" "$T_TMP/two/b/"
err=$("$PS" eval --quiet --index "$X" --model "$M" --sae "$SAE" --data "$T_TMP/two" 2>&1); rc=$?
t_check "a dataset with other classes exits 2" [ "$rc" -eq 2 ]
t_check "... naming both counts" sh -c 'printf "%s" "$1" | grep -q "has 2 classes, the index.s dataset .* has 3"' _ "$err"
t_check "eval --help" sh -c '"$1" eval --help | grep -q "usage: patchsae eval"' _ "$PS"

# diff
out=$("$PS" diff --index "$X" 2>/dev/null); rc=$?
t_check "diff exits 0" [ "$rc" -eq 0 ]
t_check "diff prints four sections" [ "$(printf '%s\n' "$out" | grep -c '^# ')" -eq 4 ]
t_check "summary columns" sh -c 'printf "%s\n" "$1" | grep -q "^dataset	base	adapted	top_n	low_n	classes	base_classes	high_base"' _ "$out"
t_check "50 latent rows by default" [ "$(printf '%s\n' "$out" | sed -n '/^# latents/,$p' | wc -l)" -eq 52 ]
ng=$(printf '%s\n' "$out" | sed -n '/^# groups/,/^$/p' | grep -c '^[0-9]')
t_check "groups stored in the index" [ "$("$PS" query "$X" sql "SELECT count(*) FROM diff_groups" | tail -1)" -eq "$ng" ]
t_check "and the bounds" [ "$("$PS" query "$X" sql "SELECT hi || '/' || lo FROM diffs" | tail -1)" = "50/100" ]
t_check "diff --json" sh -c '"$1" diff --index "$2" --json --latents 3 | grep -q "\"delta_base\":"' _ "$PS" "$X"
t_check "diff --table1" sh -c '"$1" diff --index "$2" --table1 | grep -q "^| synthetic | [0-9.]*/[0-9.]* |"' _ "$PS" "$X"
out=$("$PS" diff --index "$X" --top-n 5 --low-n 10 --class 1 --sort dfreq --latents 0 2>/dev/null); rc=$?
t_check "diff --top-n 5 --low-n 10 --class 1 exits 0" [ "$rc" -eq 0 ]
t_check "... only class 1 rows" sh -c 'printf "%s\n" "$1" | sed -n "/^# groups/,/^\$/p" | grep "^[0-9]" | cut -f1 | sort -u | grep -qx 1' _ "$out"
t_check "... all 64 latents" [ "$(printf '%s\n' "$out" | sed -n '/^# latents/,$p' | wc -l)" -eq 66 ]
t_check "... bounds updated" [ "$("$PS" query "$X" sql "SELECT hi || '/' || lo FROM diffs" | tail -1)" = "5/10" ]
t_status "low-n below top-n exits 2" 2 "$PS" diff --index "$X" --top-n 10 --low-n 5
t_status "an unknown sort key exits 2" 2 "$PS" diff --index "$X" --sort nope
t_status "an unknown class exits 2" 2 "$PS" diff --index "$X" --class nope
t_status "a missing index exits 2" 2 "$PS" diff --index "$T_TMP/none.db"
"$PS" synth "$T_TMP/one.db" --latents 64 --classes 3 --models 1 --images 20 --quiet >/dev/null 2>&1
t_status "an index without an adapted model exits 2" 2 "$PS" diff --index "$T_TMP/one.db"
t_status "--no-store on a read-only copy" 0 sh -c 'cp "$1" "$2" && chmod a-w "$2" && "$3" diff --index "$2" --no-store --table1' _ "$X" "$T_TMP/ro.db" "$PS"
t_check "diff --help" sh -c '"$1" diff --help | grep -q "usage: patchsae diff"' _ "$PS"

TOK=$T_BPE
if [ -f "$TOK" ]; then
    TD=$D/clip_tiny
    TS=$D/index/sae_tiny.safetensors
    MP=$TD/maple/model.pth.tar-5
    R=$T_TMP/real.db
    mkdir -p "$T_TMP/ds/cat" "$T_TMP/ds/dog"
    cp $TD/img_land.png $TD/img_port.png $TD/img_square.png "$T_TMP/ds/cat/"
    cp $TD/img_gray.png $TD/img_rgba.png $TD/img_big.png "$T_TMP/ds/dog/"
    t_status "index with MaPLe" 0 "$PS" index --quiet --model $TD/hf --tokenizer "$TOK" --sae $TS --maple $MP --data "$T_TMP/ds" -o "$R"
    rev() { "$PS" eval --quiet --index "$R" --model $TD/hf --tokenizer "$TOK" --sae $TS --data "$T_TMP/ds" "$@"; }
    t_status "eval of the base model" 0 rev --k 1,5,all
    t_status "eval of the MaPLe model" 0 rev --k 1,5,all --maple $MP
    t_status "eval of MaPLe with latents ranked by the base model" 0 rev --k 5 --maple $MP --rank-by base --no-baselines
    for m in clip maple; do
        acc=$(sqlite3 "$R" "SELECT printf('%.6f', accuracy) FROM eval_names WHERE model = '$m' AND selected_by = '$m' AND class = -1 AND mode = 'orig'")
        ref=$(sqlite3 "$R" "SELECT printf('%.6f', 100.0 * SUM(p.class = i.label) / COUNT(*)) FROM predictions p JOIN images i ON i.id = p.image_id JOIN models m ON m.id = p.model_id WHERE m.name = '$m' AND p.rank = 1")
        t_check "eval's unmasked $m accuracy ($acc) = the index's predictions ($ref)" [ -n "$acc" ] && [ "$acc" = "$ref" ]
    done
    t_check "crossed selection stored" [ "$(sqlite3 "$R" "SELECT count(*) FROM eval_names WHERE model = 'maple' AND selected_by = 'clip'")" -gt 0 ]
    t_check "diff on the real index" sh -c '"$1" diff --index "$2" --table1 | grep -q "^| ds | "' _ "$PS" "$R"
    t_check "diff groups stored" [ "$(sqlite3 "$R" "SELECT count(*) FROM diff_groups")" -gt 0 ]
    t_check "integrity" [ "$(sqlite3 "$R" "PRAGMA integrity_check")" = ok ]
else
    echo "$0: $TOK missing: the real-index part is skipped" >&2
fi
t_done
