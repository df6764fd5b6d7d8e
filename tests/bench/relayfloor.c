/*
 * relayfloor: the least a relay can do — read from one socket, write to
 * the other, nothing else.  The benchmark measures it beside qmproxy so the
 * cost of an extra hop on this machine (two more process wake-ups per round
 * trip) is visible apart from the cost of qmproxy's own work.
 *
 *   relayfloor LISTEN_PATH UPSTREAM_PATH   (one client, then exits)
 */
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int unix_socket(const char *path, int listening)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
    if (listening) {
        unlink(path);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1)) {
            perror(path);
            return -1;
        }
    } else if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        perror(path);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    static char buf[1 << 18];
    struct epoll_event ev = { .events = EPOLLIN };
    int l, c, u, ep;

    if (argc != 3) {
        fprintf(stderr, "usage: relayfloor LISTEN_PATH UPSTREAM_PATH\n");
        return 2;
    }
    l = unix_socket(argv[1], 1);
    if (l < 0 || (c = accept(l, NULL, NULL)) < 0
        || (u = unix_socket(argv[2], 0)) < 0) {
        return 1;
    }
    ep = epoll_create1(0);
    ev.data.fd = c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
    ev.data.fd = u;
    epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
    for (;;) {
        struct epoll_event got[2];
        int n = epoll_wait(ep, got, 2, -1);
        for (int i = 0; i < n; i++) {
            int from = got[i].data.fd, to = from == c ? u : c;
            ssize_t r = read(from, buf, sizeof(buf));
            if (r <= 0) {
                unlink(argv[1]);
                return 0;
            }
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(to, buf + off, (size_t)(r - off));
                if (w <= 0) {
                    return 1;
                }
                off += w;
            }
        }
    }
}
