/*
 * policy-internal: the loaded policy as the policy's own files see it.
 */
#ifndef QMPROXY_POLICY_INTERNAL_H
#define QMPROXY_POLICY_INTERNAL_H

#include <stdbool.h>
#include <json-c/json.h>

#include "location.h"
#include "policy.h"

struct rule {
    bool allow;
    char *glob;
    int line;
};

struct role {
    char *name;
    bool default_allow;
    struct rule *rules;
    int nrules;
    int line;        /* 0: built in */
};

struct listener_role {
    char *listener;
    char *role;
};

struct policy {
    char *path;
    struct role *roles;
    int nroles;
    struct listener_role *listeners;
    int nlisteners;
    char *default_role;
    bool has_paths;
    char **dirs;     /* resolved */
    int ndirs;
    /* endpoints a listener may name under <paths> */
    char **nbd;      /* "unix:/resolved/path", "tcp:host:port", ... */
    int nnbd;
    char **protocols;  /* block drivers or URI schemes allowed as such */
    int nprotocols;
    struct policy_mirror_rule *mirrors;
    int nmirrors;
};

/* An absolute path resolved as the kernel will when QEMU opens it;
 * NULL when it goes through too many symbolic links. */
char *policy_resolve(const char *path);
/* Every place the command's declared locations name (policy-locations.c). */
char *policy_check_paths(const struct policy *p,
                         const struct location_lookup *lookup,
                         const char *command, json_object *args);

#endif
