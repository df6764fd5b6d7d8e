/*
 * spawn: run a helper program (qemu-img) without waiting for it on the
 * event loop; its output and exit status come back through a callback.
 */
#ifndef QMPROXY_SPAWN_H
#define QMPROXY_SPAWN_H

struct event_base;

/* status: the exit status (-1 if it could not run or was killed); output:
 * what it printed on stdout and stderr. */
typedef void (*spawn_done_fn)(void *opaque, int status, const char *output);

void spawn_run(struct event_base *base, char *const argv[],
               spawn_done_fn done, void *opaque);
/* The same, the child getting fd (kept by the caller) as its descriptor
 * 3, which argv can name as /dev/fd/3 (-1: none). */
void spawn_run_with_fd(struct event_base *base, char *const argv[], int fd,
                       spawn_done_fn done, void *opaque);

#endif
