// The git commit the tools were built from (see build_info.c).
#ifndef BUILD_INFO_H
#define BUILD_INFO_H

/// Short hash of the commit, "-dirty" appended when tracked files had local
/// changes, or "unknown" when the build did not record it.
const char *subdistill_build_commit(void);

#endif
