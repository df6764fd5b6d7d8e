/*
 * metrics-http: serves the metrics registry to Prometheus over HTTP
 * (GET /metrics, libevent's evhttp) on the proxy's own event loop.  A
 * scrape is formatted in memory and handed to evhttp, which writes it as
 * the socket takes it: nothing waits for the scraper.
 */
#ifndef QMPROXY_METRICS_HTTP_H
#define QMPROXY_METRICS_HTTP_H

struct event_base;
struct metrics;
struct metrics_http;

/* Listen at spec (unix:PATH or tcp:HOST:PORT); NULL with *error (owned)
 * if it cannot.  mode: permissions of a Unix socket (-1: leave). */
struct metrics_http *metrics_http_new(struct event_base *base,
                                      const char *spec, int mode,
                                      struct metrics *m, char **error);
void metrics_http_free(struct metrics_http *h);

#endif
