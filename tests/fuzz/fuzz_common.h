/*
 * fuzz_common: what the libFuzzer targets share: reading typed choices off
 * the front of the input, a per-process scratch folder for the loaders
 * that read files, and a quiet log.  Include it in one file of a target.
 */
#ifndef QMPROXY_FUZZ_COMMON_H
#define QMPROXY_FUZZ_COMMON_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Stop the target at once, with a message libFuzzer shows as a crash. */
#define FUZZ_ASSERT(cond)                                                \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n",        \
                    __FILE__, __LINE__, #cond);                          \
            abort();                                                     \
        }                                                                \
    } while (0)

/* Every input makes the daemon's modules warn; only errors are worth a
 * line.  Before LLVMFuzzerInitialize, which only targets with a setup of
 * their own define. */
__attribute__((constructor)) static void fuzz_quiet_log(void)
{
    log_set_level(LOG_ERROR);
}

/* The input, consumed from the front (choices) and handed on (data). */
struct fuzz_input {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
    uint8_t v = 0;
    if (in->n) {
        v = in->p[0];
        in->p++;
        in->n--;
    }
    return v;
}

static inline uint32_t fuzz_u32(struct fuzz_input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v = v << 8 | fuzz_u8(in);
    }
    return v;
}

/* A per-process scratch folder (libFuzzer's -jobs/-fork run several);
 * removed at exit when the process ends normally.  In memory (/dev/shm)
 * unless TMPDIR says otherwise: on a disk, rewriting the same file for
 * every input made the file system write it back each time (ext4 flushes
 * a truncated file on close), which was most of the loaders' time. */
static char fuzz_dir_path[64];

static inline void fuzz_dir_clean(bool remove_dir)
{
    DIR *d = opendir(fuzz_dir_path);
    struct dirent *e;
    char path[512];

    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", fuzz_dir_path, e->d_name);
            if (unlink(path) != 0) {
                rmdir(path);
            }
        }
    }
    if (d) {
        closedir(d);
    }
    if (remove_dir) {
        rmdir(fuzz_dir_path);
    }
}

static inline void fuzz_dir_remove(void)
{
    fuzz_dir_clean(true);
}

static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_path[0]) {
        const char *tmp = getenv("TMPDIR");
        if (!tmp) {
            tmp = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
        }
        snprintf(fuzz_dir_path, sizeof(fuzz_dir_path),
                 "%.40s/qmproxy-fuzz-XXXXXX", tmp);
        if (!mkdtemp(fuzz_dir_path)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_path;
}

/* Write data to NAME in the scratch folder; returns the path (static). */
static inline const char *fuzz_write_file(const char *name, const void *data,
                                          size_t len)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", fuzz_dir(), name);
    unlink(path);  /* a new file, not a truncated one (see fuzz_dir) */
    f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

#endif
