/*
 * image-size-worker: image_file_size() on a thread of its own.
 *
 * The loop hands the thread one list at a time (to_read) and the thread hands
 * the sizes back (finished) with a byte on a pipe the loop listens to, as
 * the only two things they share under the mutex; the requests, their
 * bounds and the coalescing are the loop's alone.
 */
#include "image-size-worker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* A list of images and, once read, their sizes. */
struct batch {
    struct image_ref *refs;
    int64_t *sizes;
    int n;
};

/* What the loop and the thread share.  Freed by the loop, or by the
 * thread when the loop left it stuck in a read (abandoned). */
struct size_thread {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct batch *to_read, *finished;
    bool stop, abandoned;
    bool exited;          /* the thread is past its last use of this */
    int pipe_w;
    int64_t (*read_size)(const char *path, const char *format);
};

struct request {
    struct size_worker *w;
    size_worker_done_fn *done;
    void *opaque;
    struct event *timer;      /* the bound; NULL: unbounded */
    struct request *next;
};

struct size_worker {
    struct event_base *base;
    int bound_ms;
    pthread_t thread;
    struct size_thread *t;
    int pipe_r;
    struct event *answered;
    bool busy;                /* a batch is with the thread */
    struct timespec busy_since;
    struct request *running;  /* answered by the batch with the thread */
    struct request *waiting;  /* answered by the next one */
    struct batch *next;       /* the newest list asked while busy */
    unsigned late;
};

static struct image_ref *copy_refs(const struct image_ref *refs, int n)
{
    struct image_ref *c = xcalloc((size_t)(n ? n : 1), sizeof(*c));

    for (int i = 0; i < n; i++) {
        c[i].path = refs[i].path ? xstrdup(refs[i].path) : NULL;
        c[i].format = refs[i].format ? xstrdup(refs[i].format) : NULL;
    }
    return c;
}

static void batch_free(struct batch *b)
{
    if (!b) {
        return;
    }
    for (int i = 0; i < b->n; i++) {
        free(b->refs[i].path);
        free(b->refs[i].format);
    }
    free(b->refs);
    free(b->sizes);
    free(b);
}

static void shared_free(struct size_thread *t)
{
    batch_free(t->to_read);
    batch_free(t->finished);
    close(t->pipe_w);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->wake);
    free(t);
}

static void *reader(void *arg)
{
    struct size_thread *t = arg;

    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->to_read && !t->stop) {
            pthread_cond_wait(&t->wake, &t->mu);
        }
        if (t->stop) {
            break;
        }
        struct batch *b = t->to_read;
        t->to_read = NULL;
        pthread_mutex_unlock(&t->mu);
        for (int i = 0; i < b->n; i++) {  /* the one place that may block */
            b->sizes[i] = t->read_size(b->refs[i].path, b->refs[i].format);
        }
        pthread_mutex_lock(&t->mu);
        if (t->abandoned) {
            /* the proxy exited its loop while this read hung */
            pthread_mutex_unlock(&t->mu);
            batch_free(b);
            shared_free(t);
            return NULL;
        }
        t->finished = b;
        while (write(t->pipe_w, "", 1) < 0 && errno == EINTR) {
        }
    }
    t->exited = true;
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void give_to_thread(struct size_worker *w, struct batch *b)
{
    w->busy = true;
    clock_gettime(CLOCK_MONOTONIC, &w->busy_since);
    pthread_mutex_lock(&w->t->mu);
    w->t->to_read = b;
    pthread_cond_signal(&w->t->wake);
    pthread_mutex_unlock(&w->t->mu);
}

static void request_free(struct request *q)
{
    if (q->timer) {
        event_free(q->timer);
    }
    free(q);
}

static void on_answered(evutil_socket_t fd, short what, void *arg)
{
    struct size_worker *w = arg;
    struct request *q = w->running, *n;
    struct batch *b;
    char drain[16];

    while (read(fd, drain, sizeof(drain)) > 0) {
    }
    pthread_mutex_lock(&w->t->mu);
    b = w->t->finished;
    w->t->finished = NULL;
    pthread_mutex_unlock(&w->t->mu);
    if (!b) {
        return;
    }
    /* the next read starts before anyone is answered, so a request made
     * from an answer waits for a read that starts after it */
    w->busy = false;
    w->running = w->waiting;
    w->waiting = NULL;
    if (w->next) {
        give_to_thread(w, w->next);
        w->next = NULL;
    }
    for (; q; q = n) {
        n = q->next;
        q->done(q->opaque, SIZES_READ, b->refs, b->sizes, b->n);
        request_free(q);
    }
    batch_free(b);
}

static void append_request(struct request **list, struct request *q)
{
    while (*list) {
        list = &(*list)->next;
    }
    *list = q;
}

static bool unlink_request(struct request **list, struct request *q)
{
    for (struct request **p = list; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            return true;
        }
    }
    return false;
}

static void on_bound(evutil_socket_t fd, short what, void *arg)
{
    struct request *q = arg;
    struct size_worker *w = q->w;

    if (!unlink_request(&w->running, q)) {
        unlink_request(&w->waiting, q);
    }
    w->late++;
    q->done(q->opaque, SIZES_LATE, NULL, NULL, 0);
    request_free(q);
}

/* Has the read with the thread run past the bound already? */
static bool stuck(const struct size_worker *w)
{
    struct timespec now;
    long long ms;

    if (!w->busy) {
        return false;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (now.tv_sec - w->busy_since.tv_sec) * 1000LL
         + (now.tv_nsec - w->busy_since.tv_nsec) / 1000000;
    return ms >= w->bound_ms;
}

void size_worker_read(struct size_worker *w, const struct image_ref *refs,
                      int n, bool bounded, size_worker_done_fn *done,
                      void *opaque)
{
    struct request *q = xcalloc(1, sizeof(*q));
    struct batch *b = xcalloc(1, sizeof(*b));

    b->refs = copy_refs(refs, n);
    b->sizes = xcalloc((size_t)(n ? n : 1), sizeof(*b->sizes));
    b->n = n;
    *q = (struct request){ w, done, opaque, NULL, NULL };
    if (bounded) {
        struct timeval tv = { w->bound_ms / 1000, (w->bound_ms % 1000) * 1000 };
        q->timer = evtimer_new(w->base, on_bound, q);
        if (stuck(w)) {
            tv = (struct timeval){ 0, 0 };  /* no answer is coming soon */
        }
        evtimer_add(q->timer, &tv);
    }
    if (!w->busy) {
        w->running = q;
        give_to_thread(w, b);
        return;
    }
    batch_free(w->next);  /* the newest list is the one to read */
    w->next = b;
    append_request(&w->waiting, q);  /* answered in the order asked */
}

unsigned size_worker_late(const struct size_worker *w)
{
    return w->late;
}

bool size_worker_idle(const struct size_worker *w)
{
    return !w || (!w->busy && !w->running && !w->waiting);
}

struct size_worker *size_worker_new(struct event_base *base,
                                    int64_t (*read_size)(const char *path,
                                                         const char *format),
                                    int bound_ms)
{
    struct size_worker *w = xcalloc(1, sizeof(*w));
    struct size_thread *t = xcalloc(1, sizeof(*t));
    int fds[2];

    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_error("cannot make the image size reader's pipe: %s",
                  strerror(errno));
        abort();
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->wake, NULL);
    t->pipe_w = fds[1];
    t->read_size = read_size;
    w->base = base;
    w->bound_ms = bound_ms;
    w->t = t;
    w->pipe_r = fds[0];
    w->answered = event_new(base, fds[0], EV_READ | EV_PERSIST, on_answered,
                            w);
    event_add(w->answered, NULL);
    if (pthread_create(&w->thread, NULL, reader, t)) {
        log_error("cannot start the image size reader thread");
        abort();
    }
    return w;
}

static void drop_requests(struct request *q)
{
    for (struct request *n; q; q = n) {
        n = q->next;
        q->done(q->opaque, SIZES_DROPPED, NULL, NULL, 0);
        request_free(q);
    }
}

void size_worker_free(struct size_worker *w)
{
    struct timespec deadline;
    bool joined = true;

    if (!w) {
        return;
    }
    pthread_mutex_lock(&w->t->mu);
    w->t->stop = true;
    pthread_cond_signal(&w->t->wake);
    pthread_mutex_unlock(&w->t->mu);
    if (w->busy) {
        /* a read under way: give it the bound to end, then leave it */
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += w->bound_ms / 1000;
        deadline.tv_nsec += (long)(w->bound_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        joined = !stuck(w) && pthread_timedjoin_np(w->thread, NULL,
                                                   &deadline) == 0;
    } else {
        joined = pthread_join(w->thread, NULL) == 0;
    }
    if (!joined) {
        /* it may have ended since: then join it after all */
        pthread_mutex_lock(&w->t->mu);
        joined = w->t->exited;
        w->t->abandoned = !joined;
        pthread_mutex_unlock(&w->t->mu);
        if (joined) {
            pthread_join(w->thread, NULL);
        }
    }
    if (joined) {
        shared_free(w->t);
    } else {
        pthread_detach(w->thread);
        log_warn("an image size read does not end (a file system not "
                 "answering?): its thread is left to the process's exit");
    }
    event_free(w->answered);
    close(w->pipe_r);
    drop_requests(w->running);
    drop_requests(w->waiting);
    batch_free(w->next);
    free(w);
}
