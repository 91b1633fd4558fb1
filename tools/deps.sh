#!/bin/sh
# deps.sh - installs the Debian packages patchsae needs when they are missing.
#   sh tools/deps.sh          build + test + demo packages
# Uses apt-get (with sudo when not root); says what it does; does nothing when
# everything is present.
set -eu
PKGS="gcc make pkg-config libopenblas-dev libsqlite3-dev libsixel-dev libsixel-bin
libncurses-dev libjpeg62-turbo-dev libpng-dev libjansson-dev libzip-dev zlib1g-dev
dataset-fashion-mnist sqlite3 tmux xterm xvfb x11-utils xdotool imagemagick fonts-dejavu-core"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "patchsae deps: installing missing Debian packages:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "patchsae deps: not root and no sudo; install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >&2
echo "patchsae deps: done" >&2
