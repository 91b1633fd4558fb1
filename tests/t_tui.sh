#!/bin/sh
# t_tui.sh - patchsae-tui driven as a user: the real binary in a private tmux
# server (tmux -u -L SOCKET -f /dev/null, LANG=C.UTF-8), keys sent with
# send-keys, screens read with capture-pane and polled until the expected
# text shows up. Checks the latents table's sort, search, the Latent and
# Image views (patch cursor, predictions, mouse), help, commands, a 20x5
# screen, a resize storm, an empty index, an index without an adapted model,
# and the command-line contract (exit codes, --help, not a terminal).
. tests/lib.sh
. tests/tui_lib.sh
# start ARGS...: a fresh session of 100x32 running the explorer
N_SESS=0
start() {
    $T kill-server 2>/dev/null
    N_SESS=$((N_SESS + 1))
    T="tmux -u -L $SOCK-$N_SESS -f /dev/null" # a fresh server: no race with the dying one
    $T new-session -d -s s -x "${W:-100}" -y "${H:-32}" \
        "TERM=${TUITERM:-tmux-256color} $TUI $*; echo EXIT=\$?; sleep 600"
}
keys() { $T send-keys -t s "$@"; }

command -v tmux >/dev/null 2>&1 || { bad "tmux is not installed (sh tools/deps.sh)"; t_done; exit 0; }
[ -x "$TUI" ] || { bad "$TUI not built"; t_done; exit 0; }

DB="$T_TMP/t.db"
"$PS" synth "$DB" --images 80 --latents 128 --grid 14 --classes 10 --thumb 64 --quiet ||
    bad "patchsae synth"
EVALS=
if command -v sqlite3 >/dev/null 2>&1; then # masking results of class 3 for 9 values of k
    sqlite3 "$DB" "WITH RECURSIVE k(v) AS (SELECT 100 UNION ALL SELECT v + 100 FROM k WHERE v < 900)
        INSERT INTO eval SELECT m.id, d.id, s.id, m.id, 3, o.mode, k.v, 100,
                                CASE o.mode WHEN 'on' THEN k.v / 10.0 ELSE 100 - k.v / 10.0 END
        FROM models m, datasets d, saes s, k, (SELECT 'on' AS mode UNION SELECT 'off') o" &&
        EVALS=1 || bad "sqlite3: eval rows"
fi
DB1="$T_TMP/base-only.db"
"$PS" synth "$DB1" --images 30 --latents 64 --grid 4 --classes 5 --models 1 --thumb 0 --quiet ||
    bad "patchsae synth --models 1"

# ---- command line
t_status "--help exits 0" 0 "$TUI" --help
t_check "--help names the keys' man page" sh -c "'$TUI' --help | grep -q 'patchsae-tui(1)'"
t_status "unknown option exits 2" 2 "$TUI" --frobnicate "$DB"
t_status "bad --graphics exits 2" 2 "$TUI" --graphics kitty "$DB"
t_status "missing index exits 1" 1 "$TUI" "$T_TMP/nope.db"
t_check "missing index: one clear line" sh -c "'$TUI' '$T_TMP/nope.db' 2>&1 | grep -q 'nope.db: no such index'"
printf 'not an index at all, just text\n' > "$T_TMP/junk.db"
t_status "not an index exits 1" 1 "$TUI" "$T_TMP/junk.db"
t_status "not a terminal exits 2" 2 sh -c "echo | '$TUI' '$DB' > /dev/null"

# ---- Latents: sorted by frequency, then by mean
start "$DB"
check_for "table at start-up" "freq▼"
# column 2 (freq) of the table rows must not increase
sorted() { # $1 = column number
    screen | sed -n '3,30p' | awk -v c="$1" 'NF >= 4 { v = $c + 0; if (n++ && v > p + 1e-12) bad = 1; p = v }
                                                END { exit bad || n < 10 }'
}
check_until "table sorted by freq" 'sorted 2'
keys s
check_for "sort key s" "mean▼"
check_until "table sorted by mean" 'sorted 3'
keys r
check_for "reverse sort" "mean▲"
keys : 'sort freq' Enter
check_for ":sort freq" "freq▼"

# ---- search for a class, then open the latent: its top images are mostly that class
keys / 'class 7' Enter
check_for "search status" "/class 7"
keys Enter
check_for "Latent view" "labels of the top"
check_until "search found a latent of class 7" \
    "screen | grep -A1 'labels of the top' | sed -n 2p | grep -q '^class 7 '"
check_for "base and adapted side by side" "adapted (adapted)"
check_for "histogram" "patch activations in the top images"
$T resize-window -t s -x 100 -y 17
check_for "a cut label list says what it leaves out" "more: class "
$T resize-window -t s -x 100 -y 32
check_for "top bar names the dataset" "synthetic  base: base"
keys t
check_for "t with one dataset says so" "statistics for one dataset only"

# ---- Image view: patch cursor, lists, predictions
keys Enter
check_for "Image view" "image level"
check_for "predictions shown" "base (base) top-5"
check_for "adapted predictions" "adapted (adapted) top-5"
check_for "true label" "true label: class"
check_for "image-level lists" "image-level"
keys l
check_for "patch cursor appears in the middle" "patch (7,7) token 106"
keys l j
check_for "patch cursor moves right and down" "patch (8,8) token 121"
keys Left Up Up
check_for "arrows move it (row,col)" "patch (6,7) token 92"
check_for "patch lists" "patch (6,7) top latents"
keys x
check_for "cursor off" "image level"
# a mouse click (X10 encoding) on the first cell of the main picture selects patch (0,0)
printf '\033[M !$' > "$T_TMP/click"
$T send-keys -t s -l "$(cat "$T_TMP/click")"
check_for "mouse click picks a patch" "patch (0,0) token 1"
keys J J
keys Enter
check_for "Enter opens the selected latent" "labels of the top"
keys q q q
check_for "q goes back three times" "freq▼"

# ---- views by digit and Tab, commands
keys 4
check_for "Class view" "classes (10)"
check_for "class accuracy" "accuracy: base"
check_for "class remapping groups" "remapping: high"
keys : 'class class 3' Enter
check_for ":class" "Class 3: class 3"
if [ -n "$EVALS" ]; then # 9 k of masking results, on and off, both models: all fit at 100x32
    check_for "masking table: on/off of both models per k" "k   base on   base off    adapted on  adapted off"
    check_for "masking table: the last k row shows" "   900     90.0%      10.0%         90.0%        10.0%"
fi
keys 5
check_for "Overview" "SAE latents: 128"
keys Tab
check_for "Tab cycles to Latents" "freq▼"
keys : 'latent 5' Enter
check_for ":latent 5" "Latent 5"
keys : 'image 4' Enter
check_for ":image 4" "Image 4 (pos 3)"
keys : 'nonsense' Enter
check_for "unknown command in the status line" 'unknown command ":nonsense"'
keys : 'filter dead' Enter
check_for ":filter" "latents pass the filter"
keys : 'annotate stripes -- a test note' Enter
check_for ":annotate" '"stripes"'
keys / stripes Enter
check_for "search finds an annotation" "/stripes"
keys b
check_for "b switches to the adapted model" "model: adapted"
keys m
check_for "m cycles the overlay" "overlay: heatmap"

# ---- help lists every key
$T resize-window -t s -x 120 -y 90
keys '?'
check_for "help" "Everywhere"
for k in 'q ' 'Q ' '? ' 'Tab  Shift-Tab' '1 2 3 4 5' ': ' '/ ' 'n  N' 'm ' 'b ' 't ' 'Ctrl-L' 'Esc' \
         'j k  Down Up' 'PgUp PgDn' 'g G  Home End' 'Enter' 'mouse' 's ' 'r ' 'd ' 'D ' 'a ' \
         'c ' 'h j k l  arrows' '[ ]' 'x  Backspace' 'J K' ':latent N' ':image N' ':class NAME' \
         ':sort KEY' ':filter' ':annotate' ':dataset' ':model' ':overlay' ':graphics' ':search'; do
    check_until "help lists \"$k\"" 'screen | grep -qF -- "  $k"'
done
keys q
$T resize-window -t s -x 100 -y 32

# ---- a tiny screen, then a resize storm
$T resize-window -t s -x 20 -y 5
check_for "20x5 says so" "terminal too small"
$T resize-window -t s -x 100 -y 32
check_for "back to normal size" "1 Latents"
keys 3
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    $T resize-window -t s -x $((20 + i * 7 % 130)) -y $((4 + i * 5 % 60))
done
$T resize-window -t s -x 100 -y 32
keys 1
check_for "alive after a resize storm" "freq"
check_not "no exit during the storm" "EXIT="
keys C-l
check_for "Ctrl-L redraws" "1 Latents"
keys Q
check_for "Q quits with status 0" "EXIT=0"

# ---- an index without an adapted model and without thumbnails
start "$DB1"
check_for "base-only index opens" "freq▼"
keys b
check_for "b says there is no adapted model" "no adapted model"
keys Enter
check_for "Latent view without adapted" "no adapted model in this index"
keys Enter
check_for "Image view without adapted" "no adapted model"
keys l
check_for "patch cursor on a 4x4 grid" "patch (2,2) token 11"
keys Q
check_for "Q quits" "EXIT=0"

# ---- an empty index (schema only)
EMPTY="$T_TMP/empty.db"
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$EMPTY" < db/schema.sql
    start "$EMPTY"
    check_for "empty index opens" "No statistics"
    keys Enter 2 3 4 5 Tab : 'latent 3' Enter / x Enter j k g G
    check_not "no crash on an empty index" "EXIT="
    keys Q
    check_for "empty index quits" "EXIT=0"
fi

# ---- no graphics at all, and an 8-colour terminal
W=90 H=30 TUITERM=screen start --graphics none "$DB"
check_for "--graphics none" "text"
keys : 'latent 3' Enter
check_for "Latent view in text mode" "labels of the top"
keys Enter l
check_for "Image view in text mode" "patch (7,7)"
keys 5
check_for "Overview in text mode (braille)" "x: freq"
keys 3
keys q q q
check_for "q from the first view quits with status 0" "EXIT=0"

t_done
