/*
 * metrics-http: GET /metrics over evhttp.
 */
#include "metrics-http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* A scraper that stalls is dropped after this, so it holds no memory for
 * long; requests are a line and a few headers, anything bigger is not a
 * scraper. */
#define HTTP_TIMEOUT_S 10
#define HTTP_MAX_HEADERS 8192
#define HTTP_MAX_BODY 1024

struct metrics_http {
    struct evhttp *http;
    struct metrics *metrics;
    char *unix_path;     /* unlinked when done */
};

static void free_formatted(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct metrics_http *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *body;
    char *text;
    size_t len;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET
        && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, HEAD");
        evhttp_send_error(req, 405, "qmproxy's metrics are read with GET");
        return;
    }
    if (!path || (strcmp(path, "/metrics") && strcmp(path, "/"))) {
        evhttp_send_error(req, HTTP_NOTFOUND, "qmproxy serves /metrics");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp would send a body given one: none, and nothing formatted */
        evhttp_send_reply(req, HTTP_OK, "OK", NULL);
        return;
    }
    text = metrics_format(h->metrics, &len);
    body = evbuffer_new();
    /* the text is handed over, not copied */
    evbuffer_add_reference(body, text, len, free_formatted, NULL);
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

struct metrics_http *metrics_http_new(struct event_base *base,
                                      const char *spec, int mode,
                                      struct metrics *m, char **error)
{
    struct metrics_http *h;
    struct address addr;
    int fd;

    if ((*error = address_parse(spec, 0, &addr))) {
        return NULL;
    }
    fd = listener_socket(&addr, mode, error);
    if (fd < 0) {
        address_clear(&addr);
        return NULL;
    }
    h = xcalloc(1, sizeof(*h));
    h->metrics = m;
    h->http = evhttp_new(base);
    if (addr.kind == ADDR_UNIX) {
        h->unix_path = xstrdup(addr.path);
    }
    address_clear(&addr);
    evhttp_set_timeout(h->http, HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(h->http, HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(h->http, HTTP_MAX_BODY);
    /* the others get 405 from on_request (evhttp would say 501) */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD
                               | EVHTTP_REQ_POST | EVHTTP_REQ_PUT
                               | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS
                               | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->http, on_request, h);
    if (!evhttp_accept_socket_with_handle(h->http, fd)) {
        *error = xstrdup("evhttp cannot accept on the socket");
        close(fd);
        metrics_http_free(h);
        return NULL;
    }
    return h;
}

void metrics_http_free(struct metrics_http *h)
{
    if (!h) {
        return;
    }
    evhttp_free(h->http);   /* closes the listening socket */
    if (h->unix_path) {
        unlink(h->unix_path);
        free(h->unix_path);
    }
    free(h);
}
