#!/bin/sh
# run-demo.sh BUILD - builds the demo index if it is missing and opens the explorer on it.
set -eu
B=${1:-build}
if [ ! -x "$B/patchsae-tui" ]; then
    echo "patchsae: the explorer (patchsae-tui) is not built yet in this version; nothing to run" >&2
    exit 2
fi
[ -f db/demo.db ] || make --no-print-directory demo
exec "$B/patchsae-tui" db/demo.db
