#!/bin/sh
# tui-perf.sh INDEX [MODE] -- drives patchsae-tui over INDEX with a fixed key
# script and reports the --trace figures: start-up (first screen and the
# background table load) and the p50 / p99 / max time from a key to the
# redrawn text. MODE "tmux" (default: blocks, in a private tmux server) or
# "xterm" (sixel, in a VT340 xterm under Xvfb through tools/tui-shot.sh, which
# also gives the sixel encode times). Keys are sent one at a time 80 ms apart
# so each gets its own redraw. Make a ViT-B/16-scale index first with
#   build/patchsae synth big.db --images 50000 --latents 49152 --grid 14 --thumb 224
set -eu
DB=$1; MODE=${2:-tmux}
BUILD=${BUILD:-build}
TR=$(mktemp /tmp/tui-perf-XXXXXX)
# one step a line: a key name (tmux/xdotool spelling differs only for a few)
STEPS="j j j j j j j j j j j j j j j j j j j j PgDn PgDn PgDn G g s s r
slash c l a s s space 3 Return n n n n N
Return l l l l l l j j h k Return
l l l l l j j j j j h h k k J J J K x
4 j j j j j J J K 5 1 colon l a t e n t space 2 0 3 5 6 Return bracketright bracketright bracketright
3 l l j j m m m b b 1 d d D D"
keyname() { # xdotool name -> tmux name
    case $1 in
        Return) echo Enter ;; slash) echo / ;; space) echo Space ;; colon) echo : ;;
        bracketright) echo ] ;; bracketleft) echo [ ;; PgDn) echo NPage ;; *) echo "$1" ;;
    esac
}
if [ "$MODE" = tmux ]; then
    export LANG=C.UTF-8
    T="tmux -u -L tui-perf-$$ -f /dev/null"
    $T new-session -d -s s -x 100 -y 32 "TERM=tmux-256color $BUILD/patchsae-tui --trace $TR $DB; sleep 600"
    sleep 2
    for k in $STEPS; do $T send-keys -t s "$(keyname "$k")"; sleep 0.08; done
    sleep 0.5
    $T kill-server
else
    xk() { case $1 in PgDn) echo Next ;; *) echo "$1" ;; esac; }
    { for k in $STEPS; do echo "key $(xk "$k")"; done; echo "sleep 1"; } |
        sh tools/tui-shot.sh /tmp/tui-perf-shots "$BUILD/patchsae-tui" --trace "$TR" "$DB"
fi
echo "trace: $TR" >&2
grep -E '^(#|startup|loaded)' "$TR"
awk '/^key=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
               t[n++] = v["text_ms"] + 0; if (v["encode_ms"] + 0 > 0) e[m++] = v["encode_ms"] + 0
               if (v["encoded"] + 0 > 0) { ms += v["encode_ms"]; pics += v["encoded"] } }
     function sort(a, k,   i, j, x) { for (i = 1; i < k; i++) { x = a[i]; for (j = i - 1; j >= 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
     END { sort(t, n); sort(e, m)
           printf "keys %d: text_ms p50 %.2f p99 %.2f max %.2f\n", n, t[int(n * 0.5)], t[int(n * 0.99)], t[n - 1]
           if (m) printf "redraws with pictures %d: encode_ms p50 %.2f p99 %.2f max %.2f\n", m, e[int(m * 0.5)], e[int(m * 0.99)], e[m - 1]
           if (pics) printf "sixel pictures encoded %d: %.2f ms each on average (render + encode)\n", pics, ms / pics }' "$TR"
