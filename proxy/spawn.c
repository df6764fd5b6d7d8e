/*
 * spawn: fork/exec with the child's output read on the event loop.  The
 * end of its output (the pipe closing) says it is exiting; its status is
 * then collected with WNOHANG, retried on a short timer if needed.
 */
#include "spawn.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct child {
    pid_t pid;
    int fd;
    struct event *ev, *reap;
    struct strbuf out;
    spawn_done_fn done;
    void *opaque;
};

static void finish(struct child *c, int status)
{
    c->done(c->opaque, status, c->out.buf ? c->out.buf : "");
    if (c->ev) {
        event_free(c->ev);
    }
    if (c->reap) {
        event_free(c->reap);
    }
    strbuf_release(&c->out);
    free(c);
}

static void try_reap(evutil_socket_t fd, short what, void *arg)
{
    struct child *c = arg;
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    (void)fd;
    (void)what;

    if (r == 0) {
        struct timeval tv = { 0, 10000 };
        evtimer_add(c->reap, &tv);
        return;
    }
    finish(c, r < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
    struct child *c = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)what;

    if (n > 0) {
        if (c->out.len < 65536) {
            strbuf_add(&c->out, buf, (size_t)n);
        }
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    event_del(c->ev);
    close(c->fd);
    try_reap(-1, 0, c);
}

void spawn_run(struct event_base *base, char *const argv[],
               spawn_done_fn done, void *opaque)
{
    spawn_run_with_fd(base, argv, -1, done, opaque);
}

void spawn_run_with_fd(struct event_base *base, char *const argv[], int fd,
                       spawn_done_fn done, void *opaque)
{
    struct child *c = xcalloc(1, sizeof(*c));
    int p[2];

    c->done = done;
    c->opaque = opaque;
    if (pipe2(p, O_CLOEXEC) < 0) {
        finish(c, -1);
        return;
    }
    c->pid = fork();
    if (c->pid < 0) {
        close(p[0]);
        close(p[1]);
        finish(c, -1);
        return;
    }
    if (c->pid == 0) {
        int null;
        if (fd >= 0 && fd < 3) {
            fd = fcntl(fd, F_DUPFD, 10);   /* out of the way of 0-2 */
        }
        null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        if (fd == 3) {
            fcntl(3, F_SETFD, 0);   /* dup2 onto itself keeps cloexec */
        } else if (fd >= 0) {
            dup2(fd, 3);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    c->fd = p[0];
    fd_set_nonblock_cloexec(c->fd);
    c->ev = event_new(base, c->fd, EV_READ | EV_PERSIST, on_output, c);
    c->reap = evtimer_new(base, try_reap, c);
    event_add(c->ev, NULL);
}
