/*
 * sdlisten: the listening sockets systemd passes to a socket-activated
 * service (sd_listen_fds(3)'s protocol, without libsystemd): LISTEN_PID
 * names this process, LISTEN_FDS counts the descriptors from 3 up, and
 * LISTEN_FDNAMES names them (FileDescriptorName= of the socket unit).
 */
#ifndef QMPROXY_SDLISTEN_H
#define QMPROXY_SDLISTEN_H

#include <stddef.h>

struct sdlisten_socket {
    int fd;
    char *name;   /* owned: the listener name the policy sees */
};

/* Take the passed sockets (close-on-exec from now on) and remove the
 * variables from the environment, so no child takes them for its own.
 * Returns the array (*n entries; free with sdlisten_free), or NULL with
 * *error (owned) saying what is missing or wrong. */
struct sdlisten_socket *sdlisten_take(size_t *n, char **error);
void sdlisten_free(struct sdlisten_socket *s, size_t n);

#endif
