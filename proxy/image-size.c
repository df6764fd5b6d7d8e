/*
 * image-size: the size an image file gives itself.  One open, one read of
 * 32 bytes (or one fstat) and a close per image: local files whose header
 * block the page cache holds (QEMU has them open and wrote them last).
 */
#include "image-size.h"

#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* qcow2's header (docs/interop/qcow2.txt): "QFI\xfb", then big-endian
 * version (4), backing_file_offset (8), backing_file_size (4),
 * cluster_bits (4), size (8) at byte 24. */
#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_SIZE_AT 24

static int64_t be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return (int64_t)v;
}

int64_t image_file_size(const char *path, const char *format)
{
    bool qcow2 = format && !strcmp(format, "qcow2");
    bool raw = format && !strcmp(format, "raw");
    unsigned char head[QCOW2_SIZE_AT + 8];
    struct stat st;
    int64_t size = -1;
    int fd;

    if (!path || path[0] != '/' || !(qcow2 || raw)) {
        return -1;  /* not a local file, or no size of its own to read */
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (raw) {
            size = st.st_size;
        } else if (pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head)
                   && !memcmp(head, QCOW2_MAGIC, 4)) {
            size = be64(head + QCOW2_SIZE_AT);
        }
    }
    close(fd);
    return size;
}
