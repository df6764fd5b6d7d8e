/*
 * rig: the real router, upstream and listener on a libevent loop, with the
 * test playing QEMU on a unix socket (a scripted peer) and its clients on
 * the proxy's socket.  A fake QEMU is the point: the test decides what
 * QEMU answers and when, which a real QEMU cannot be asked to do.
 */
#ifndef QMPROXY_TEST_RIG_H
#define QMPROXY_TEST_RIG_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct router;
struct upstream;
struct listener;

struct rig {
    struct event_base *base;
    struct router *router;
    struct upstream *up;
    struct listener *listener;
    char dir[40], qemu_path[96], proxy_path[96];
    int qemu_listen, qemu;   /* the test's end of QEMU's monitor */
};

/* QEMU 7.2's greeting, as the rig's QEMU sends it. */
extern const char rig_greeting[];

/* The proxy, not yet connected; its clients get these session extras. */
void rig_init(struct rig *r, unsigned extras);
/* Play QEMU's part of the handshake with this greeting line (CRLF
 * included); returns once the proxy has sent its first questions about
 * the disks, unanswered (read them with rig_drain). */
void rig_connect(struct rig *r, const char *greeting);
/* rig_init, rig_connect, and QEMU without disks or jobs. */
void rig_up(struct rig *r);
void rig_down(struct rig *r);

/* Run the loop for about ms milliseconds. */
void rig_spin(struct rig *r, int ms);
/* A negotiated client of the proxy. */
int rig_client(struct rig *r);
/* oob: negotiate it (a client without oob has one command at a time in
 * QEMU's hands, as QEMU reads it; with oob several) */
int rig_client_caps(struct rig *r, bool oob);
int rig_unix_connect(const char *path);
/* Whatever is readable on fd now (empty when nothing); owned. */
char *rig_drain(int fd);
void rig_send(int fd, const char *s);
/* After a short spin, fd has exactly this to read. */
void rig_expect(struct rig *r, int fd, const char *want);
/* The whole file (NUL-terminated, owned); *len may be NULL. */
char *rig_read_file(const char *path, size_t *len);

#endif
