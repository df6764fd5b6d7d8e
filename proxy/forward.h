/*
 * forward: a client's command goes to QEMU as the exact bytes it sent,
 * file descriptors with it, and QEMU's reply comes back to the client's
 * slot as QEMU's bytes.  On the way the chain model is told of the
 * commands it follows, the proxy keeps its duplicate of a getfd
 * descriptor (RHEL's reopen witness) until QEMU uses it, the proxy's own
 * queries are held once `quit` goes up, and query-commands gains the
 * proxy's commands for a client that asked for them.
 */
#ifndef QMPROXY_FORWARD_H
#define QMPROXY_FORWARD_H

#include <stdbool.h>

#include "session.h"

struct cmd_env;

/* ROUTE_NEED_ROOM: the window is full and granted is false; nothing was
 * sent, the session queues the command and waits for room. */
enum route_result forward_command(const struct cmd_env *env,
                                  struct session *s, struct slot *slot,
                                  struct client_cmd *cmd, bool granted);

#endif
