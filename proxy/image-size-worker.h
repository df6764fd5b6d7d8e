/*
 * image-size-worker: image_file_size() off the event loop.  An open or a
 * read of a file on a network file system (an NFS hard mount, a FUSE
 * file system) may wait minutes for its server; on the loop that would
 * freeze the proxy for every client.  One thread does the reads, one list
 * at a time, and hands the sizes back to the loop through a pipe.
 */
#ifndef QMPROXY_IMAGE_SIZE_WORKER_H
#define QMPROXY_IMAGE_SIZE_WORKER_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct size_worker;

/* One image to read: its file and format, as image_file_size() takes. */
struct image_ref {
    char *path;
    char *format;
};

enum size_answer {
    SIZES_READ,      /* sizes[i] is refs[i]'s size (-1: unknown, as
                      * image_file_size() says) */
    SIZES_LATE,      /* not read within the bound (a file system not
                      * answering, as a rule): refs and sizes NULL, n 0 */
    SIZES_DROPPED,   /* the worker is being freed: release opaque only */
};

/* The answer to a request, on the loop.  refs and sizes are the worker's,
 * valid for the call only; refs are those of the read that answered,
 * which may be a newer list than the one asked with (requests coalesce). */
typedef void size_worker_done_fn(void *opaque, enum size_answer answer,
                                 const struct image_ref *refs,
                                 const int64_t *sizes, int n);

/* A worker whose reads answer on base; read_size is image_file_size but
 * for tests; bound_ms is how long a request waits for its answer. */
struct size_worker *size_worker_new(struct event_base *base,
                                    int64_t (*read_size)(const char *path,
                                                         const char *format),
                                    int bound_ms);
/* Stop the thread and free everything; requests not answered are
 * answered SIZES_DROPPED, from within this call.  A thread stuck in a read for good
 * is left to the process's exit. */
void size_worker_free(struct size_worker *w);

/*
 * Read the sizes of refs[0..n) (copied) and call done on the loop, never
 * from within this call.  One read runs at a time: a request made while
 * one runs waits for the next read, which every request made meanwhile
 * shares (with the newest list: what the caller has now).  bounded: done
 * is called with in_time false once bound_ms passed without an answer, at
 * once when the read under way is already past its bound (a stuck file
 * system answers nobody sooner); unbounded: done waits for the read, how
 * long it takes.
 */
void size_worker_read(struct size_worker *w, const struct image_ref *refs,
                      int n, bool bounded, size_worker_done_fn *done,
                      void *opaque);

/* How many requests were answered "not in time" (for tests, the log). */
unsigned size_worker_late(const struct size_worker *w);
/* No read with the thread and no request waiting for an answer (NULL: a
 * worker never started); for tests that must wait for the loop's turn. */
bool size_worker_idle(const struct size_worker *w);

#endif
