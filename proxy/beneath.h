/*
 * beneath: open or create a file beneath a folder the caller holds open,
 * so that no symbolic link (dangling or not, at any component) and no
 * ".." can take the open anywhere else, whatever happens to the names in
 * between.  This is how the proxy closes the check-then-use window for the
 * images its own operations make QEMU create or open: it opens them here
 * and hands QEMU the descriptor (add-fd, /dev/fdset/N).
 *
 * These are opens of local files; they do not wait on anything but the
 * file system, so calling them on the loop is as acceptable as the stat()
 * the checks already make (docs/DESIGN.md, "What may still wait on the
 * loop").
 */
#ifndef QMPROXY_BENEATH_H
#define QMPROXY_BENEATH_H

#include <sys/types.h>

/*
 * Open relpath beneath the folder dirfd with open(2)'s flags and mode
 * (O_CREAT | O_EXCL to create a new file, never an existing one).  The
 * descriptor is close-on-exec.  relpath must be relative; ".." may be
 * used as long as it never leaves dirfd.  -1 with errno: EXDEV for a path
 * that would leave dirfd (absolute, or ".." above it), ELOOP for a
 * symbolic link at any component (EEXIST for one in the last place with
 * O_EXCL), else open(2)'s.
 *
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) when the kernel has it
 * (5.6), else beneath_walk().
 */
int beneath_open(int dirfd, const char *relpath, int flags, mode_t mode);

/* The same by a walk of the components, each opened with O_NOFOLLOW
 * (and O_DIRECTORY but the last), ".." going back to the folder already
 * held; for kernels without openat2, and for the tests. */
int beneath_walk(int dirfd, const char *relpath, int flags, mode_t mode);

#endif
