#!/usr/bin/env bash
# Records the git commit the tools are built from in
# Sources/Core/CBuildInfo/build_commit.h (git-ignored; see build_info.c there):
# the short hash, with "-dirty" when tracked files have local changes, or
# "unknown" outside a git checkout. Rewrites the header, and touches
# build_info.c so that SwiftPM recompiles it, only when the text changes,
# so an unchanged commit rebuilds nothing. Prints the commit.
# Run by the Makefile before every build (make build, make, make test).
set -u
cd "$(dirname "$0")/.."
dir=Sources/Core/CBuildInfo
commit=unknown
if hash=$(git rev-parse --short=7 HEAD 2>/dev/null); then
    commit=$hash
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit-dirty"; fi
fi
text="#define SUBDISTILL_COMMIT \"$commit\""
if [ ! -f "$dir/build_commit.h" ] || [ "$(cat "$dir/build_commit.h")" != "$text" ]; then
    printf '%s\n' "$text" > "$dir/build_commit.h"
    touch "$dir/build_info.c"
fi
echo "$commit"
