/*
 * conn: one non-blocking stream socket on the event loop.  It reads into a
 * jsonstream (collecting file descriptors that arrive with SCM_RIGHTS),
 * writes through an output queue that can carry file descriptors attached
 * to a byte position, and tells its owner when the peer went away.
 *
 * Writes are attempted at once when nothing is queued, so a reply usually
 * leaves in the same loop iteration that produced it.
 */
#ifndef QMPROXY_CONN_H
#define QMPROXY_CONN_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct conn;

/* Where read bytes go: room is asked for, read into, then committed (the
 * stream parses them at once and calls its owner back). */
struct conn_input {
    char *(*reserve)(void *stream, size_t min, size_t *avail);
    void (*commit)(void *stream, size_t n);
};

struct conn_callbacks {
    /* File descriptors received with the bytes that are about to be fed. */
    void (*fds)(void *opaque, int *fds, int nfds);
    /* The peer closed, or an I/O error: the conn is already closed. */
    void (*closed)(void *opaque, const char *why);
    /* The output queue dropped to empty (optional). */
    void (*drained)(void *opaque);
    /* End of file while writing still works (optional): the peer shut
     * down its sending side and may still read.  Reading stops; the owner
     * closes when it has answered.  Without it, end of file closes. */
    void (*eof)(void *opaque);
};

#define CONN_MAX_FDS 16

struct conn *conn_new(struct event_base *base, int fd,
                      const struct conn_callbacks *cb, void *opaque);
/* Reading and writing apart (standard input and output); a descriptor
 * that is not a socket is read and written plainly, without fds. */
struct conn *conn_new_pair(struct event_base *base, int rfd, int wfd,
                           const struct conn_callbacks *cb, void *opaque);
/* A failed write drops the output but keeps reading until end-of-file,
 * then closed() says why: for a peer whose last words must not be lost. */
void conn_drain_on_write_error(struct conn *c);
/* Start reading into stream (not owned); may be called again. */
void conn_read_into(struct conn *c, const struct conn_input *input,
                    void *stream);
/* Read and throw away whatever the peer sends (read-only observers). */
void conn_read_discard(struct conn *c);
/* Add the bytes read to *in and those given to write to *out (either
 * NULL: not counted); the counters must outlive the conn. */
void conn_count_bytes(struct conn *c, double *in, double *out);
void conn_pause_read(struct conn *c);
void conn_resume_read(struct conn *c);

/* Queue bytes; fds (owned by the conn from now on) travel with them. */
void conn_write(struct conn *c, const void *data, size_t len);
void conn_write_fds(struct conn *c, const void *data, size_t len,
                    const int *fds, int nfds);
size_t conn_output_pending(const struct conn *c);
/* Refuse further input; close once the output queue is empty or after
 * timeout_ms, then call closed(). */
void conn_close_after_flush(struct conn *c, int timeout_ms);
/* Close now; no callback. */
void conn_free(struct conn *c);
int conn_fd(const struct conn *c);

#endif
