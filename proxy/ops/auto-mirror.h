/*
 * auto-mirror: the policy's automatic mirroring rules, as operations.
 */
#ifndef QMPROXY_AUTO_MIRROR_H
#define QMPROXY_AUTO_MIRROR_H

struct cmd_env;

/* A disk got a new overlay (from the chain model). */
void auto_mirror_snapshot(const struct cmd_env *env, const char *disk,
                          const char *overlay, const char *below,
                          const char *below_format, long long size);
/* The proxy is attached (or the policy reloaded): start replicas. */
void auto_mirror_connect(const struct cmd_env *env);

#endif
