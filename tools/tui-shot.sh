#!/bin/sh
# tui-shot.sh DIR CMD [ARGS...] -- runs CMD (patchsae-tui ...) in a sixel-capable
# xterm (VT340, 100x32 cells of 8x17 px, DejaVu Sans Mono 10) on a private Xvfb
# display and plays the script read from standard input, one step a line:
#   key NAME...    xdotool key names (Return, Down, j, question, ctrl+l, ...)
#   type TEXT      types TEXT
#   sleep S        waits S seconds
#   shot NAME      saves a screenshot of the window as DIR/NAME.png
# Each key/type step is followed by a 0.6 s pause for the redraw. The recipe is
# docs/testing-as-a-user.md §1 (every external wait is under `timeout`: xdotool
# and import hang forever on a window that is gone). Needs xterm xvfb x11-utils
# xdotool imagemagick fonts-dejavu-core.
set -eu
DIR=$1; shift
mkdir -p "$DIR"
STEPS=$(cat)
exec xvfb-run -a -s '-screen 0 1280x800x24 -nolisten tcp' sh -eu -c '
  DIR=$1; STEPS=$2; shift 2
  xterm -ti vt340 -T tuishot -geometry 100x32+0+0 -fa "DejaVu Sans Mono" -fs 10 \
        -xrm "XTerm*disallowedWindowOps: 20,21,SetXprop" -e "$@" &
  XT=$!
  WID=$(timeout 10 xdotool search --sync --name "^tuishot$" | head -1) || true
  [ -n "$WID" ] || { echo "tui-shot: no xterm window" >&2; kill $XT 2>/dev/null; exit 1; }
  timeout 5 xdotool mousemove --sync 100 100  # no window manager: focus follows the pointer
  sleep 1.2
  printf "%s\n" "$STEPS" | while read -r op arg; do
    [ -n "$op" ] || continue
    xwininfo -id "$WID" >/dev/null 2>&1 || { echo "tui-shot: xterm exited at: $op $arg" >&2; exit 1; }
    case $op in
      key) timeout 5 xdotool key --delay 80 $arg; sleep 0.6 ;;
      type) timeout 5 xdotool type --delay 60 "$arg"; sleep 0.6 ;;
      sleep) sleep "$arg" ;;
      shot) timeout 20 import -window "$WID" "$DIR/$arg.png" ;;
      *) echo "tui-shot: unknown step $op" >&2; exit 1 ;;
    esac
  done
  kill $XT 2>/dev/null || true
' sh "$DIR" "$STEPS" "$@"
