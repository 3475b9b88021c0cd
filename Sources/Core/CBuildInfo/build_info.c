// The git commit baked into the tools at build time.
//
// SwiftPM has no build-time script hook for plain targets, so the commit is
// written by scripts/build-info.sh, which `make build` (and every make goal
// that builds: make, make test, make bench, CI) runs before `swift build`:
// it writes build_commit.h beside this file (git-ignored, so it never
// dirties `git status`) with `#define SUBDISTILL_COMMIT "<short hash>[-dirty]"`,
// rewriting it and touching this file only when the commit changes. Only
// this C file includes it, behind a private header: a new commit recompiles
// one C file and relinks the tools, no Swift module. A plain `swift build`
// without make compiles too: without the header the commit is "unknown"
// (with a header left by an earlier make, that make's commit).
#include "build_info.h"

#if __has_include("build_commit.h")
#include "build_commit.h"
#endif
#ifndef SUBDISTILL_COMMIT
#define SUBDISTILL_COMMIT "unknown"
#endif

const char *subdistill_build_commit(void) { return SUBDISTILL_COMMIT; }
