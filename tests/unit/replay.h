/*
 * replay: a real conversation recorded through qmproxy (its traffic log,
 * see tests/data/ops/README.md) played again against the proxy on the
 * rig, without QEMU.  The test plays QEMU and the client: QEMU's lines go
 * to the proxy when the recording says QEMU wrote them, the client's
 * commands likewise, and every command the proxy sends QEMU must be the
 * recorded one (the same JSON), every reply the client gets the recorded
 * one (same id, same outcome).  The first difference fails the test and
 * says where.
 *
 * The proxy chooses job ids and node-names with a tag of its own
 * ("qmp<tag>..."); the replay learns the new tag from the first command
 * that carries one and writes it into every later recorded line.
 */
#ifndef QMPROXY_TEST_REPLAY_H
#define QMPROXY_TEST_REPLAY_H

#include <stdbool.h>
#include <json-c/json.h>

struct rig;
struct replay;

/* tests/data/ops/NAME.jsonl */
struct replay *replay_load(const char *name);
void replay_free(struct replay *rp);

/* Connect the rig's proxy to the recorded QEMU and a client. */
void replay_start(struct replay *rp, struct rig *r);
/* Play recorded lines until (not including) the first that satisfies
 * stop (NULL: to the end).  Returns the index of that line, or -1. */
int replay_until(struct replay *rp,
                 bool (*stop)(json_object *entry, void *opaque),
                 void *opaque);
/* The recorded entry at index i (borrowed), its "msg" with the tag
 * rewritten (owned). */
json_object *replay_entry(struct replay *rp, int i);
char *replay_msg_text(struct replay *rp, int i);
/* Skip the line at index i (the test plays that part itself). */
void replay_skip(struct replay *rp, int i);

/* What the test plays itself. */
void replay_qemu_writes(struct replay *rp, const char *line);  /* no CRLF */
/* The next command the proxy sends QEMU (owned), waiting for it. */
json_object *replay_proxy_sends(struct replay *rp);
/* The next reply the client gets (owned), waiting for it; the events
 * on the way (QEMU's reach every client) are passed over. */
json_object *replay_client_gets(struct replay *rp);
/* The client's socket (once the recording connected it). */
int replay_client(const struct replay *rp);
/* The proxy's tag ("qmp" + 3 hex digits), once learnt. */
const char *replay_tag(const struct replay *rp);

#endif
