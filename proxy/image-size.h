/*
 * image-size: the virtual size an image file states itself, read from the
 * file (the header of a qcow2 image, the length of a raw one), for the
 * chain model's freshness check: QEMU has no query cheaper than
 * query-block that shows sizes, and block_resize rewrites exactly this.
 */
#ifndef QMPROXY_IMAGE_SIZE_H
#define QMPROXY_IMAGE_SIZE_H

#include <stdint.h>

/* The virtual size the file at path says it has, as an image of format:
 * qcow2's header field, raw's file length.  -1 when the path is no local
 * file that can be read, or when the format keeps its size elsewhere. */
int64_t image_file_size(const char *path, const char *format);

#endif
