#!/bin/sh
# run-demo.sh BUILD - `make run`: builds the demo index if it is missing, then
# opens the explorer on it.
set -eu
B=${1:-build}
[ -f db/demo.db ] || sh tools/make-demo.sh "$B"
exec "$B/patchsae-tui" db/demo.db
