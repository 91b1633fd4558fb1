# tui_lib.sh - helpers for the explorer's tmux suites (t_tui.sh, t_tui_probe.sh):
# a private tmux server, screen capture, and checks that poll the screen.
# Source it after tests/lib.sh.
TUI="$BUILD/patchsae-tui"
export LANG=C.UTF-8
unset PATCHSAE_GRAPHICS
SOCK="patchsae-$(basename "$0" .sh)-$$"
T="tmux -u -L $SOCK -f /dev/null"
trap '$T kill-server 2>/dev/null; rm -rf "$T_TMP"' EXIT

ok() { T_PASS=$((T_PASS + 1)); }
bad() { T_FAIL=$((T_FAIL + 1)); echo "$0: FAILED: $1" >&2; [ -n "${2:-}" ] && screen >&2; }
screen() { $T capture-pane -p -t s 2>/dev/null; }
# wait_for TEXT [SECONDS]: polls the screen (fixed string); 0 when it shows up
wait_for() {
    n=0; lim=$(( ${2:-5} * 10 ))
    until screen | grep -qF -- "$1"; do
        n=$((n + 1)); [ $n -gt $lim ] && return 1; sleep 0.1
    done
}
check_for() { if wait_for "$2" "${3:-5}"; then ok; else bad "$1 (no \"$2\")" show; fi; }
# wait_until SECONDS 'SHELL TEST': polls the test (eval'd, so it may call the functions
# here) until it holds; 0 then, 1 after SECONDS. A screen is drawn in several writes:
# a check of its content right after the text that announces it can read half of it
# on a loaded machine, so every check of the screen's content polls.
wait_until() {
    n=0; lim=$(( $1 * 10 ))
    until eval "$2"; do
        n=$((n + 1)); [ $n -gt $lim ] && return 1; sleep 0.1
    done
}
check_until() { if wait_until 5 "$2"; then ok; else bad "$1" show; fi; }
check_not() { if screen | grep -qF -- "$2"; then bad "$1 (\"$2\" shown)" show; else ok; fi; }
