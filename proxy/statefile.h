/*
 * statefile: the proxy's memory across restarts, kept in one JSON file.
 * Saving is atomic (write a temporary file, fsync it, rename it over the
 * old one, fsync the folder) and happens on a thread of its own, so the
 * event loop never waits for the disk; saves that come while one is being
 * written are coalesced into the next.  Loading refuses a file that is not
 * a complete, well-formed state and sets it aside under another name.
 */
#ifndef QMPROXY_STATEFILE_H
#define QMPROXY_STATEFILE_H

#include <stdbool.h>
#include <json-c/json.h>

struct statefile;

struct statefile *statefile_new(const char *path);
void statefile_free(struct statefile *sf);   /* writes what is pending */

/*
 * Load the saved state.  Returns a new reference, or NULL when there is no
 * file (first start) or it could not be trusted; in that case *problem is
 * set (owned) to what was wrong and where the file was moved.
 */
json_object *statefile_load(struct statefile *sf, char **problem);

/* Save this state (a reference is taken); returns at once. */
void statefile_save(struct statefile *sf, json_object *state);

#endif
