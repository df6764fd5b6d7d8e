/*
 * metrics: a registry of counters and histograms that other modules
 * increment, and the Prometheus text exposition format of everything in
 * it.  It includes no other module of the proxy and calls nobody but the
 * collectors it was given: modules are handed the families (or single
 * series) they feed, and values that already live elsewhere (clients
 * connected, the chain model's jobs) are read by collectors at scrape
 * time rather than copied here on every change.
 *
 * Label values come from outside (command names clients type): every
 * family has a cap on its series, past which new label values are folded
 * into "other", so a hostile client cannot grow the proxy's memory or a
 * scrape without bound.
 */
#ifndef QMPROXY_METRICS_H
#define QMPROXY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metric;          /* one family: a name, its labels, its series */
struct metrics_out;     /* a scrape being written */

/* One series of a family: hot paths keep the pointer and add to value. */
struct metric_series {
    double value;            /* counter */
    uint64_t *buckets;       /* histogram: counts per bound (not cumulative) */
    double sum;              /* histogram */
    uint64_t count;          /* histogram */
};

/* The label value series past a family's cap are folded into. */
#define METRICS_OTHER "other"
/* Series per family before folding (commands: QEMU 10 has ~260). */
#define METRICS_MAX_SERIES 1024

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* A counter family; labels: comma-separated names ("command,outcome"),
 * NULL or "" for none.  name ends in _total (Prometheus' convention). */
struct metric *metrics_counter(struct metrics *m, const char *name,
                               const char *help, const char *labels);
/* A histogram family with these upper bounds (ascending; +Inf added). */
struct metric *metrics_histogram(struct metrics *m, const char *name,
                                 const char *help, const char *labels,
                                 const double *bounds, size_t nbounds);

/* The series with these label values (as many as the family's labels),
 * made on first use; never NULL (past the cap: the "other" series). */
struct metric_series *metric_series(struct metric *f,
                                    const char *const *values);
/* The series if it exists, else NULL (nothing is made). */
struct metric_series *metric_find(struct metric *f,
                                  const char *const *values);
/* A family without labels: its one series. */
struct metric_series *metric_single(struct metric *f);
void metric_observe(struct metric *f, struct metric_series *s, double v);

/* Values read at scrape time: fn writes whole families with the
 * metrics_out_* calls below. */
typedef void (*metrics_collect_fn)(void *opaque, struct metrics_out *out);
void metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
                           void *opaque);

/* Start a family (type: "gauge", "counter"); its samples follow. */
void metrics_out_family(struct metrics_out *out, const char *name,
                        const char *help, const char *type);
/* One sample: name, then label name/value pairs, NULL-terminated. */
void metrics_out_sample(struct metrics_out *out, double value,
                        const char *name, ...)
    __attribute__((sentinel));

/* The whole exposition (text format 0.0.4), owned; *len its length. */
char *metrics_format(struct metrics *m, size_t *len);

#endif
