/*
 * beneath: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), or the same by a
 * walk that opens one component at a time with O_NOFOLLOW.
 */
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Deeper than any path the kernel takes (PATH_MAX 4096: "a/" 2048 times). */
#define MAX_DEPTH 2048

int beneath_open(int dirfd, const char *relpath, int flags, mode_t mode)
{
#ifdef SYS_openat2
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        /* no magic links either (/proc/self/fd/N names anything) */
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
                   | RESOLVE_NO_MAGICLINKS,
    };
    long fd;

    do {
        fd = syscall(SYS_openat2, dirfd, relpath, &how, sizeof(how));
    } while (fd < 0 && errno == EAGAIN);   /* a rename raced a ".." */
    /* ENOSYS: a kernel before 5.6; EPERM: a seccomp filter that does not
     * know the call */
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) {
        return (int)fd;
    }
#endif
    return beneath_walk(dirfd, relpath, flags, mode);
}

static void close_above(int *stack, int depth)
{
    for (int i = depth; i > 0; i--) {
        close(stack[i]);
    }
}

int beneath_walk(int dirfd, const char *relpath, int flags, mode_t mode)
{
    int *stack, depth = 0, fd = -1, saved;
    const char *p = relpath;

    if (relpath[0] == '/') {
        errno = EXDEV;   /* as openat2: an absolute path leaves the folder */
        return -1;
    }
    if (!relpath[0]) {
        errno = ENOENT;  /* as open("") */
        return -1;
    }
    stack = calloc(MAX_DEPTH + 1, sizeof(*stack));
    if (!stack) {
        return -1;
    }
    stack[0] = dirfd;   /* the caller's, never closed here */
    for (;;) {
        size_t n;
        char name[256];
        bool last;

        p += strspn(p, "/");
        n = strcspn(p, "/");
        last = !p[n + strspn(p + n, "/")];
        if (n >= sizeof(name)) {
            errno = ENAMETOOLONG;
            break;
        }
        memcpy(name, p, n);
        name[n] = 0;
        p += n;
        if (!strcmp(name, "..")) {
            if (depth == 0) {
                errno = EXDEV;
                break;
            }
            /* back to the folder already held: no name is looked up */
            close(stack[depth--]);
            if (!last) {
                continue;
            }
            strcpy(name, ".");
        }
        if (!name[0]) {
            strcpy(name, ".");   /* "" or a trailing "/": the folder */
        }
        if (last) {
            fd = openat(stack[depth], name, flags | O_NOFOLLOW | O_CLOEXEC,
                        mode);
            break;
        }
        if (!strcmp(name, ".")) {
            continue;
        }
        if (depth == MAX_DEPTH) {
            errno = ENAMETOOLONG;
            break;
        }
        fd = openat(stack[depth], name,
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            /* a symbolic link with O_DIRECTORY | O_NOFOLLOW: ENOTDIR on
             * some kernels, ELOOP on others; say ELOOP as openat2 */
            if (errno == ENOTDIR) {
                char buf[1];
                if (readlinkat(stack[depth], name, buf, sizeof(buf)) >= 0) {
                    errno = ELOOP;
                } else {
                    errno = ENOTDIR;
                }
            }
            break;
        }
        stack[++depth] = fd;
        fd = -1;
    }
    saved = errno;
    close_above(stack, depth);
    free(stack);
    errno = saved;
    return fd;
}
