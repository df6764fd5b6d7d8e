/*
 * fixture: a conversation recorded from a real QEMU (tests/data/chain/,
 * see its README), to be replayed by a scripted QEMU peer.  Each command
 * carries an "id" naming its step; QEMU's lines are its exact bytes.
 */
#ifndef QMPROXY_TEST_FIXTURE_H
#define QMPROXY_TEST_FIXTURE_H

#include <stdbool.h>

struct fixture;

/* tests/data/chain/NAME */
struct fixture *fixture_load(const char *name);
void fixture_free(struct fixture *fx);

/* The first line (QEMU's greeting), CRLF-terminated; owned. */
char *fixture_greeting(const struct fixture *fx);
/* The command of step id as it was sent; borrowed. */
const char *fixture_command(const struct fixture *fx, const char *id);
/* QEMU's reply to step id, CRLF-terminated, owned; without its id unless
 * keep_id (QEMU echoes none to a command sent without one). */
char *fixture_reply(const struct fixture *fx, const char *id, bool keep_id);
/* What QEMU wrote after the command of step id up to and including its
 * reply: events as it interleaved them; owned. */
char *fixture_answer(const struct fixture *fx, const char *id);
/* The events QEMU wrote after its reply to step id, up to the next
 * command; owned. */
char *fixture_events_after(const struct fixture *fx, const char *id);
/* The first event NAME about job (data "id" or "device") after the
 * command of step id; with status, a JOB_STATUS_CHANGE to it.  Owned. */
char *fixture_event(const struct fixture *fx, const char *id,
                    const char *name, const char *job, const char *status);

#endif
