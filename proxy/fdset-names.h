/*
 * fdset-names: the real paths of the images the proxy's own operations
 * handed QEMU by descriptor (add-fd).  QEMU calls such a file /dev/fdset/N
 * in every answer from then on; the chain model translates it back here,
 * so that what clients see, what an operation looks the copy up by and the
 * state file all say the path.
 *
 * The proxy's fd sets have ids of their own (FDSET_NAMES_FIRST and above,
 * the proxy run's tag in them), far from the ones QEMU picks (the lowest
 * free) and from those libvirt counts up from query-fdsets, so that no
 * client's add-fd joins one of them by accident.
 */
#ifndef QMPROXY_FDSET_NAMES_H
#define QMPROXY_FDSET_NAMES_H

#include <stdbool.h>
#include <stdint.h>

/* QEMU parses /dev/fdset/N as a non-negative int. */
#define FDSET_NAMES_FIRST 0x40000000

/* A new fd set id for this run of the proxy (tag: 12 bits that tell runs
 * apart); wraps after 65536. */
int64_t fdset_names_next_id(unsigned tag);
/* The image handed over in fd set id is path (copied). */
void fdset_names_set(int64_t id, const char *path);
/* The path of a QEMU name /dev/fdset/N the proxy handed over (borrowed),
 * or NULL (not such a name, or not the proxy's). */
const char *fdset_names_path(const char *qemu_name);
/* Is path an image the proxy handed over (QEMU calls it /dev/fdset/N)? */
bool fdset_names_handed_over(const char *path);
void fdset_names_clear(void);
/* Every name, for the state file: how many, and the i-th. */
int fdset_names_count(void);
void fdset_names_at(int i, int64_t *id, const char **path);

#endif
