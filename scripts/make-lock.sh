#!/usr/bin/env bash
# One make per artifacts folder. Called by the Makefile while it reads the
# pipeline (before it writes any parameter file):
#   make-lock.sh DIR MAKE_PID WAIT
# Takes an flock(1) lock on DIR/.make.lock in a small background holder that
# keeps it for as long as process MAKE_PID (the make) lives, then prints
# "ok". When another make holds it: with WAIT=1 waits for it; otherwise
# prints why it refuses (who holds it, since when) and make stops.
# A killed make leaves no stale lock: the kernel drops an flock when its
# holder dies, and the holder leaves within half a second of its make.
set -u
dir=$1 owner=$2 wait=${3:-0}
mkdir -p "$dir" || { echo "cannot create the artifacts folder $dir"; exit 0; }
lock=$dir/.make.lock
ready=$(mktemp "${TMPDIR:-/tmp}/make-lock.XXXXXX")
# Without WAIT, allow a finished make's holder its half second to leave.
if [ "$wait" = 1 ]; then timeout=(); else timeout=(-w 3); fi
(
    exec 9>>"$lock" || exit 1
    flock "${timeout[@]}" 9 || exit 1
    printf 'make pid %s on %s since %s\n' "$owner" "$(hostname)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$lock.owner"
    echo ok > "$ready"
    while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done
) </dev/null >/dev/null 2>&1 &
holder=$!
said=0
while [ ! -s "$ready" ] && kill -0 "$holder" 2>/dev/null; do
    if [ "$wait" = 1 ] && [ $said = 0 ]; then
        sleep 1
        [ -s "$ready" ] && break
        echo "make: waiting for the other make on $dir ($(cat "$lock.owner" 2>/dev/null || echo 'holder unknown'))" >&2
        said=1
    fi
    sleep 0.05
done
if [ -s "$ready" ]; then
    echo ok
else
    echo "another make is running on $dir ($(cat "$lock.owner" 2>/dev/null || echo 'holder unknown')); two makes on one artifacts folder would write the same files. Wait for it to finish, stop it, or run with LOCK_WAIT=1 to wait"
fi
rm -f "$ready"
