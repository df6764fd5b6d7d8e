/*
 * conn: non-blocking socket I/O with SCM_RIGHTS in both directions.
 */
#include "conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util.h"

/* Room for the control message that carries up to CONN_MAX_FDS. */
union cmsg_fds {
    char buf[CMSG_SPACE(sizeof(int) * CONN_MAX_FDS)];
    struct cmsghdr align;
};

/* File descriptors that must leave with the byte at offset `at`. */
struct fd_mark {
    STAILQ_ENTRY(fd_mark) link;
    size_t at;   /* bytes of the queue ahead of them */
    int nfds;
    int fds[CONN_MAX_FDS];
};

struct conn {
    int fd;                  /* read from; also written to unless wfd */
    int wfd;                 /* written to (the same as fd for a socket) */
    bool rsock, wsock;       /* sockets: recvmsg/sendmsg, else read/write */
    bool drain_on_write_error;
    bool write_dead;         /* writes fail: output dropped, reading on */
    char *write_error;       /* owned: why, told when reading ends */
    struct event_base *base;
    struct event *rev, *wev, *flush_timer;
    struct evbuffer *out;
    STAILQ_HEAD(, fd_mark) marks;
    const struct conn_input *input;
    void *stream;            /* borrowed: what input feeds */
    const struct conn_callbacks *cb;
    void *opaque;
    bool reading, closing, dead, discard;
    bool read_eof;           /* the peer half-closed; writing goes on */
    int busy;                /* inside a callback: defer freeing */
    bool free_when_idle;
    double *bytes_in, *bytes_out;  /* the owner's counters, or NULL */
};

static void conn_shut(struct conn *c, const char *why);

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
}

static void release(struct conn *c)
{
    struct fd_mark *m;

    if (c->rev) {
        event_free(c->rev);
    }
    if (c->wev) {
        event_free(c->wev);
    }
    if (c->flush_timer) {
        event_free(c->flush_timer);
    }
    while ((m = STAILQ_FIRST(&c->marks))) {
        STAILQ_REMOVE_HEAD(&c->marks, link);
        close_fds(m->fds, m->nfds);
        free(m);
    }
    evbuffer_free(c->out);
    if (c->wfd >= 0 && c->wfd != c->fd) {
        close(c->wfd);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->write_error);
    free(c);
}

static void maybe_release(struct conn *c)
{
    if (c->free_when_idle && c->busy == 0) {
        release(c);
    }
}

/*
 * A write failed.  Usually the connection is over.  But a peer that closes
 * may have written its last messages first (QEMU answering `quit`): for
 * such a peer what is already on its way to us must still be read, so
 * only the output is given up and the reading goes on to end-of-file.
 * Returns false when the conn was closed.
 */
static bool write_failed(struct conn *c, const char *why)
{
    struct fd_mark *m;

    if (!c->drain_on_write_error) {
        conn_shut(c, why);
        return false;
    }
    if (!c->write_dead) {
        c->write_dead = true;
        c->write_error = xstrdup(why);
    }
    event_del(c->wev);
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    while ((m = STAILQ_FIRST(&c->marks))) {
        STAILQ_REMOVE_HEAD(&c->marks, link);
        close_fds(m->fds, m->nfds);
        free(m);
    }
    if (c->closing || c->read_eof) {
        conn_shut(c, c->write_error);
        return false;
    }
    return true;
}

/* Returns false when the conn was closed. */
static bool flush(struct conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        struct fd_mark *m = STAILQ_FIRST(&c->marks);
        size_t len = evbuffer_get_length(c->out);
        ssize_t n;

        if (m && m->at == 0) {
            /* the descriptors ride on the first byte of this send */
            union cmsg_fds u;
            struct msghdr msg = { 0 };
            struct iovec iov;
            struct cmsghdr *cm;
            struct fd_mark *next = STAILQ_NEXT(m, link);
            size_t chunk = next ? next->at : len;

            iov.iov_base = evbuffer_pullup(c->out, (ssize_t)chunk);
            iov.iov_len = chunk;
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            memset(&u, 0, sizeof(u));
            msg.msg_control = u.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)m->nfds);
            cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)m->nfds);
            memcpy(CMSG_DATA(cm), m->fds, sizeof(int) * (size_t)m->nfds);
            n = sendmsg(c->wfd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                STAILQ_REMOVE_HEAD(&c->marks, link);
                close_fds(m->fds, m->nfds);
                free(m);
            }
        } else {
            n = evbuffer_write_atmost(c->out, c->wfd,
                                      m ? (ssize_t)m->at : -1);
            if (n > 0) {
                /* evbuffer_write_atmost drained n bytes already */
                struct fd_mark *k;
                STAILQ_FOREACH(k, &c->marks, link) {
                    k->at -= (size_t)n;
                }
                continue;
            }
        }
        if (n > 0) {
            struct fd_mark *k;
            evbuffer_drain(c->out, (size_t)n);
            STAILQ_FOREACH(k, &c->marks, link) {
                k->at -= (size_t)n;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(c->wev, NULL);
            return true;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return write_failed(c, n < 0 ? strerror(errno) : "write failed");
    }
    event_del(c->wev);
    if (c->closing) {
        conn_shut(c, NULL);
        return false;
    }
    if (c->cb->drained) {
        c->busy++;
        c->cb->drained(c->opaque);
        c->busy--;
    }
    return true;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    c->busy++;
    flush(c);
    c->busy--;
    maybe_release(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    union cmsg_fds u;
    struct msghdr msg = { 0 };
    struct iovec iov;
    size_t avail;
    ssize_t n;
    (void)fd;
    (void)what;

    if (c->dead) {
        return;
    }
    if (c->discard) {
        char sink[4096];
        n = read(c->fd, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                       && errno != EINTR)) {
            c->busy++;
            conn_shut(c, n < 0 ? strerror(errno) : NULL);
            c->busy--;
            maybe_release(c);
        }
        return;
    }
    if (!c->stream) {
        return;
    }
    iov.iov_base = c->input->reserve(c->stream, 16384, &avail);
    iov.iov_len = avail > 65536 ? 65536 : avail;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (c->rsock) {
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof(u.buf);
        n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } else {
        n = read(c->fd, iov.iov_base, iov.iov_len);
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    c->busy++;
    /* after a failed recvmsg (ECONNRESET) the control buffer holds
     * nothing the kernel wrote: never walk it then */
    if (n >= 0 && (n > 0 || msg.msg_controllen > 0)) {
        struct cmsghdr *cm;
        for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                int nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                int fds[CONN_MAX_FDS];
                memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)nfds);
                if (c->cb->fds) {
                    c->cb->fds(c->opaque, fds, nfds);
                } else {
                    close_fds(fds, nfds);
                }
            }
        }
    }
    if (n > 0 && c->bytes_in) {
        *c->bytes_in += (double)n;
    }
    if (n > 0 && !c->dead) {
        c->input->commit(c->stream, (size_t)n);
    } else if (n == 0 && c->cb->eof && !c->write_dead) {
        /* the peer sent all it will, but may still read what is due */
        c->read_eof = true;
        conn_pause_read(c);
        c->cb->eof(c->opaque);
    } else if (n == 0) {
        conn_shut(c, c->write_error);
    } else if (n < 0) {
        /* ECONNRESET comes only after every byte the peer sent was read */
        conn_shut(c, c->write_error ? c->write_error : strerror(errno));
    }
    c->busy--;
    maybe_release(c);
}

static void on_flush_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    c->busy++;
    conn_shut(c, "peer did not read its last messages in time");
    c->busy--;
    maybe_release(c);
}

/* The connection is over: stop events, tell the owner once. */
static void conn_shut(struct conn *c, const char *why)
{
    if (c->dead) {
        return;
    }
    c->dead = true;
    event_del(c->rev);
    event_del(c->wev);
    if (c->flush_timer) {
        event_del(c->flush_timer);
    }
    if (c->rsock) {
        shutdown(c->fd, SHUT_RDWR);
    }
    if (c->cb->closed) {
        c->busy++;
        c->cb->closed(c->opaque, why);
        c->busy--;
    }
}

static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

struct conn *conn_new(struct event_base *base, int fd,
                      const struct conn_callbacks *cb, void *opaque)
{
    return conn_new_pair(base, fd, fd, cb, opaque);
}

struct conn *conn_new_pair(struct event_base *base, int rfd, int wfd,
                           const struct conn_callbacks *cb, void *opaque)
{
    struct conn *c = xcalloc(1, sizeof(*c));

    c->fd = rfd;
    c->wfd = wfd;
    c->rsock = is_socket(rfd);
    c->wsock = wfd == rfd ? c->rsock : is_socket(wfd);
    c->base = base;
    c->cb = cb;
    c->opaque = opaque;
    c->out = evbuffer_new();
    STAILQ_INIT(&c->marks);
    fd_set_nonblock_cloexec(rfd);
    if (wfd != rfd) {
        fd_set_nonblock_cloexec(wfd);
    }
    c->rev = event_new(base, rfd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(base, wfd, EV_WRITE | EV_PERSIST, on_write, c);
    return c;
}

void conn_drain_on_write_error(struct conn *c)
{
    c->drain_on_write_error = true;
}

void conn_read_into(struct conn *c, const struct conn_input *input,
                    void *stream)
{
    c->input = input;
    c->stream = stream;
    conn_resume_read(c);
}

void conn_read_discard(struct conn *c)
{
    c->discard = true;
    c->stream = NULL;
    conn_resume_read(c);
}

void conn_pause_read(struct conn *c)
{
    if (c->reading) {
        event_del(c->rev);
        c->reading = false;
    }
}

void conn_resume_read(struct conn *c)
{
    if (!c->reading && !c->dead && !c->closing && !c->read_eof
        && (c->stream || c->discard)) {
        event_add(c->rev, NULL);
        c->reading = true;
    }
}

void conn_count_bytes(struct conn *c, double *in, double *out)
{
    c->bytes_in = in;
    c->bytes_out = out;
}

void conn_write_fds(struct conn *c, const void *data, size_t len,
                    const int *fds, int nfds)
{
    if (c->dead || c->write_dead) {
        close_fds((int *)fds, nfds);
        return;
    }
    if (c->bytes_out) {
        *c->bytes_out += (double)len;
    }
    if (nfds > 0 && !c->wsock) {
        /* only a socket carries descriptors */
        close_fds((int *)fds, nfds);
        nfds = 0;
    }
    if (nfds > 0) {
        struct fd_mark *m = xcalloc(1, sizeof(*m));
        m->at = evbuffer_get_length(c->out);
        m->nfds = nfds > CONN_MAX_FDS ? CONN_MAX_FDS : nfds;
        memcpy(m->fds, fds, sizeof(int) * (size_t)m->nfds);
        close_fds((int *)fds + m->nfds, nfds - m->nfds);
        STAILQ_INSERT_TAIL(&c->marks, m, link);
    }
    if (evbuffer_get_length(c->out) == 0 && nfds == 0) {
        /* the fast path: straight to the socket */
        ssize_t n = c->wsock
            ? send(c->wfd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT)
            : write(c->wfd, data, len);
        if (n == (ssize_t)len) {
            return;
        }
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                   && errno != EINTR) {
            c->busy++;
            write_failed(c, strerror(errno));
            c->busy--;
            maybe_release(c);
            return;
        }
        evbuffer_add(c->out, data, len);
        event_add(c->wev, NULL);
        return;
    }
    evbuffer_add(c->out, data, len);
    c->busy++;
    flush(c);
    c->busy--;
    maybe_release(c);
}

void conn_write(struct conn *c, const void *data, size_t len)
{
    conn_write_fds(c, data, len, NULL, 0);
}

size_t conn_output_pending(const struct conn *c)
{
    return evbuffer_get_length(c->out);
}

void conn_close_after_flush(struct conn *c, int timeout_ms)
{
    if (c->dead || c->closing) {
        return;
    }
    c->closing = true;
    conn_pause_read(c);
    if (evbuffer_get_length(c->out) == 0 || c->write_dead) {
        c->busy++;
        conn_shut(c, c->write_error);
        c->busy--;
        maybe_release(c);
        return;
    }
    /* stop reading, but let the peer take what is queued */
    if (c->rsock) {
        shutdown(c->fd, SHUT_RD);
    }
    c->flush_timer = evtimer_new(c->base, on_flush_timeout, c);
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(c->flush_timer, &tv);
}

void conn_free(struct conn *c)
{
    if (!c) {
        return;
    }
    c->dead = true;
    event_del(c->rev);
    event_del(c->wev);
    c->free_when_idle = true;
    maybe_release(c);
}

int conn_fd(const struct conn *c)
{
    return c->fd;
}
