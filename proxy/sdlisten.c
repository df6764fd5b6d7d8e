/*
 * sdlisten: sockets passed by systemd's socket activation.
 */
#include "sdlisten.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "util.h"

#define SD_LISTEN_FDS_START 3
/* more would be a unit mistake, not a need of one VM's proxy */
#define SDLISTEN_MAX 64

static void unset_listen_env(void)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* The idx-th colon-separated name of LISTEN_FDNAMES, owned; NULL if the
 * list is shorter. */
static char *nth_name(const char *names, size_t idx)
{
    const char *p = names;

    for (size_t i = 0; p && i < idx; i++) {
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    if (!p) {
        return NULL;
    }
    return xstrndup(p, strcspn(p, ":"));
}

struct sdlisten_socket *sdlisten_take(size_t *n, char **error)
{
    const char *pid_s = getenv("LISTEN_PID");
    const char *fds_s = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    struct sdlisten_socket *out;
    char *end;
    long pid, count;

    *n = 0;
    *error = NULL;
    if (!pid_s || !fds_s) {
        *error = xstrdup("no sockets were passed (LISTEN_PID and LISTEN_FDS "
                         "are not set): --listen systemd is for a service "
                         "started by its .socket unit or by "
                         "systemd-socket-activate");
        return NULL;
    }
    errno = 0;
    pid = strtol(pid_s, &end, 10);
    if (errno || *end || pid != (long)getpid()) {
        *error = xasprintf("the passed sockets are not this process's "
                           "(LISTEN_PID=%s, this is %ld)", pid_s,
                           (long)getpid());
        return NULL;
    }
    count = strtol(fds_s, &end, 10);
    if (errno || *end || count < 1 || count > SDLISTEN_MAX) {
        *error = xasprintf("LISTEN_FDS=%s: expected 1 to %d sockets", fds_s,
                           SDLISTEN_MAX);
        return NULL;
    }
    out = xcalloc((size_t)count, sizeof(*out));
    for (long i = 0; i < count; i++) {
        int fd = SD_LISTEN_FDS_START + (int)i;
        char *name = names ? nth_name(names, (size_t)i) : xstrdup("default");
        if (!name || !*name) {
            free(name);
            name = xstrdup("default");
        }
        if (fcntl(fd, F_GETFD) < 0) {
            *error = xasprintf("descriptor %d of LISTEN_FDS=%s is not open",
                               fd, fds_s);
        } else if (!address_valid_name(name)) {
            *error = xasprintf("descriptor %d is named '%s' (LISTEN_FDNAMES), "
                               "which cannot name a listener (letters, "
                               "digits, '-' and '_'): set FileDescriptorName= "
                               "in the socket unit", fd, name);
        }
        if (*error) {
            free(name);
            sdlisten_free(out, (size_t)i);
            return NULL;
        }
        /* a child (qemu-img) must not hold the clients' socket open */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        out[i].fd = fd;
        out[i].name = name;
    }
    unset_listen_env();
    *n = (size_t)count;
    return out;
}

void sdlisten_free(struct sdlisten_socket *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].name);
    }
    free(s);
}
