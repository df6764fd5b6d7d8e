/*
 * policy: loading (libxml2, RelaxNG) and evaluating the policy.
 */
#include "policy.h"

#include <errno.h>
#include <fnmatch.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonobj.h"
#include "nbd-target.h"
#include "policy-internal.h"
#include "util.h"
#include "xml-error.h"

extern const unsigned char policy_rng[];
extern const unsigned long policy_rng_len;

/* ---- evaluation ---------------------------------------------------- */

static const struct role *find_role(const struct policy *p, const char *name)
{
    for (int i = 0; name && i < p->nroles; i++) {
        if (!strcmp(p->roles[i].name, name)) {
            return &p->roles[i];
        }
    }
    return NULL;
}

static const char *role_of(const struct policy *p, const char *listener)
{
    for (int i = 0; i < p->nlisteners; i++) {
        if (!strcmp(p->listeners[i].listener, listener)) {
            return p->listeners[i].role;
        }
    }
    return p->default_role;
}

/* The index of the first of role's rules matching command, -1: none
 * (the role's default decides). */
static int deciding_rule(const struct role *role, const char *command)
{
    for (int i = 0; i < role->nrules; i++) {
        if (fnmatch(role->rules[i].glob, command, 0) == 0) {
            return i;
        }
    }
    return -1;
}

static char *check_command(const struct policy *p, const char *listener,
                           const char *command)
{
    const char *rolename = role_of(p, listener);
    const struct role *role = find_role(p, rolename);
    int i;

    if (!role) {
        return xasprintf("command '%s' is not allowed by policy %s: it gives "
                         "no role for listener '%s'", command, p->path,
                         listener);
    }
    if ((i = deciding_rule(role, command)) >= 0) {
        const struct rule *r = &role->rules[i];
        if (r->allow) {
            return NULL;
        }
        if (!role->line) {
            return xasprintf("command '%s' is not allowed by policy: "
                             "the built-in role '%s' allows only "
                             "queries, for listener '%s'", command,
                             role->name, listener);
        }
        return xasprintf("command '%s' is not allowed by policy: rule "
                         "<deny command='%s'/> (%s line %d) of role "
                         "'%s', for listener '%s'", command, r->glob,
                         p->path, r->line, role->name, listener);
    }
    if (role->default_allow) {
        return NULL;
    }
    if (!role->line) {
        return xasprintf("command '%s' is not allowed by policy: the built-in "
                         "role '%s' allows only queries, for listener '%s'",
                         command, role->name, listener);
    }
    return xasprintf("command '%s' is not allowed by policy: role '%s' (%s "
                     "line %d) denies what no rule allows, for listener "
                     "'%s'", command, role->name, p->path, role->line,
                     listener);
}

char *policy_explain_command(const struct policy *p, const char *listener,
                             const char *command, bool *allowed)
{
    const char *rolename = role_of(p, listener);
    const struct role *role = find_role(p, rolename);
    const char *where = role && role->line ? p->path : "built in";

    if (!role) {
        *allowed = false;
        return xasprintf("listener '%s' has role '%s', which the policy does "
                         "not define", listener, rolename ? rolename : "?");
    }
    int i = deciding_rule(role, command);
    if (i >= 0) {
        const struct rule *r = &role->rules[i];
        *allowed = r->allow;
        return xasprintf("role '%s' (%s), rule %d <%s command='%s'/>"
                         "%s%.0d", role->name, where, i + 1,
                         r->allow ? "allow" : "deny", r->glob,
                         r->line ? " line " : "", r->line);
    }
    *allowed = role->default_allow;
    return xasprintf("role '%s' (%s), no rule matches: its default, %s",
                     role->name, where, role->default_allow ? "allow" : "deny");
}

char *policy_rule_id(const struct policy *p, const char *listener,
                     const char *command)
{
    const struct role *role = p ? find_role(p, role_of(p, listener)) : NULL;
    int i;

    if (!role) {
        return xstrdup("no-role");
    }
    i = deciding_rule(role, command);
    if (i >= 0 ? role->rules[i].allow : role->default_allow) {
        return xstrdup("paths");
    }
    return i >= 0 ? xasprintf("%s/rule-%d", role->name, i + 1)
                  : xasprintf("%s/default", role->name);
}

bool policy_confines_places(const struct policy *p)
{
    return p && p->has_paths;
}

char *policy_check_request(const struct policy *p, const char *listener,
                           const char *command, json_object *args,
                           const struct location_lookup *locations)
{
    char *err;
    json_object *actions;

    /* like qmp_capabilities, it only changes what this client is sent:
     * every role may ask for the proxy's events */
    if (!p || !strcmp(command, "qmproxy-capabilities")) {
        return NULL;
    }
    err = check_command(p, listener, command);
    if (err) {
        return err;
    }
    /* a transaction's actions are commands in their own right */
    if (!strcmp(command, "transaction") && args
        && json_object_object_get_ex(args, "actions", &actions)
        && json_object_is_type(actions, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(actions); i++) {
            json_object *act = json_object_array_get_idx(actions, i), *data;
            const char *type = jobj_str(act, "type");
            if (!type) {
                continue;  /* QEMU will refuse it in its own words */
            }
            err = check_command(p, listener, type);
            if (!err && json_object_object_get_ex(act, "data", &data)) {
                err = policy_check_paths(p, locations, type, data);
            }
            if (err) {
                char *in = xasprintf("transaction action %zu: %s", i, err);
                free(err);
                return in;
            }
        }
        return NULL;
    }
    return policy_check_paths(p, locations, command, args);
}

int policy_mirror_rule_count(const struct policy *p)
{
    return p ? p->nmirrors : 0;
}

const struct policy_mirror_rule *policy_mirror_rule(const struct policy *p,
                                                    int i)
{
    return &p->mirrors[i];
}

const struct policy_mirror_rule *policy_mirror_for(const struct policy *p,
                                                   enum mirror_trigger on,
                                                   const char *disk)
{
    for (int i = 0; p && i < p->nmirrors; i++) {
        if (p->mirrors[i].on == on && fnmatch(p->mirrors[i].disks, disk, 0) == 0) {
            return &p->mirrors[i];
        }
    }
    return NULL;
}

const char *policy_path(const struct policy *p)
{
    return p->path;
}

/* ---- loading ------------------------------------------------------- */

struct errors {
    const char *file;
    struct strbuf sb;
};

static void add_error(struct errors *e, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_error(struct errors *e, int line, const char *fmt, ...)
{
    va_list ap;
    char msg[1024];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    strbuf_addf(&e->sb, "%s:%d: %s\n", e->file, line, msg);
}

static void on_rng_error(void *ctx, xmlErrorPtr err)
{
    struct errors *e = ctx;
    char *msg = xml_error_text(err, "invalid");

    add_error(e, err->line, "%s", msg);
    free(msg);
}

/* libxml2 reports bytes its encoding cannot convert with no parser
 * context, so XML_PARSE_NOERROR does not hold them back: they went to
 * stderr, a line of no log's format, and the parser's own error then only
 * said the document ended early.  Keep the first for the error instead. */
static void on_encoding_error(void *ctx, xmlErrorPtr err)
{
    char **first = ctx;

    if (!*first && (err->domain == XML_FROM_I18N || err->domain == XML_FROM_IO)) {
        *first = xml_error_text(err, "?");
    }
}

static char *prop(xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetProp(n, BAD_CAST name);
    char *s = v ? xstrdup((const char *)v) : NULL;
    xmlFree(v);
    return s;
}

static bool is(xmlNodePtr n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

/* n or the first sibling after it that is a <name> element; NULL: none
 * (text, comments and other elements are passed over). */
static xmlNodePtr next_element(xmlNodePtr n, const char *name)
{
    while (n && !is(n, name)) {
        n = n->next;
    }
    return n;
}

#define FOR_EACH_ELEMENT(var, parent, name)                              \
    for (xmlNodePtr var = next_element((parent)->children, name); var;   \
         var = next_element(var->next, name))

static void add_builtin_roles(struct policy *p)
{
    static const char *const queries[] = { "query-*", "qmproxy-query-*" };

    p->roles = xcalloc(2, sizeof(*p->roles));
    p->roles[0].name = xstrdup("full");
    p->roles[0].default_allow = true;
    p->roles[1].name = xstrdup("monitor");
    p->roles[1].rules = xcalloc(2, sizeof(struct rule));
    for (int i = 0; i < 2; i++) {
        p->roles[1].rules[i].allow = true;
        p->roles[1].rules[i].glob = xstrdup(queries[i]);
    }
    p->roles[1].nrules = 2;
    p->nroles = 2;
}

static void load_roles(struct policy *p, xmlNodePtr roles, struct errors *e)
{
    FOR_EACH_ELEMENT(r, roles, "role") {
        struct role *role;
        char *def;
        char *name = prop(r, "name");
        if (find_role(p, name)) {
            add_error(e, (int)xmlGetLineNo(r), "role '%s' is %s", name,
                      find_role(p, name)->line ? "defined twice"
                                               : "built in; choose another "
                                                 "name");
            free(name);
            continue;
        }
        p->roles = xrealloc(p->roles, sizeof(*p->roles)
                            * (size_t)(p->nroles + 1));
        role = &p->roles[p->nroles++];
        memset(role, 0, sizeof(*role));
        role->name = name;
        role->line = (int)xmlGetLineNo(r);
        def = prop(r, "default");
        role->default_allow = def && !strcmp(def, "allow");
        free(def);
        for (xmlNodePtr x = r->children; x; x = x->next) {
            if (!is(x, "allow") && !is(x, "deny")) {
                continue;
            }
            role->rules = xrealloc(role->rules, sizeof(*role->rules)
                                   * (size_t)(role->nrules + 1));
            role->rules[role->nrules].allow = is(x, "allow");
            role->rules[role->nrules].glob = prop(x, "command");
            role->rules[role->nrules].line = (int)xmlGetLineNo(x);
            role->nrules++;
        }
    }
}

static void load_listeners(struct policy *p, xmlNodePtr ls, struct errors *e)
{
    free(p->default_role);  /* a second <listeners>: the last one says */
    p->default_role = prop(ls, "default-role");
    if (p->default_role && !find_role(p, p->default_role)) {
        add_error(e, (int)xmlGetLineNo(ls), "default-role '%s' is no role "
                  "(roles: full, monitor, and those under <roles>)",
                  p->default_role);
    }
    FOR_EACH_ELEMENT(l, ls, "listener") {
        char *name = prop(l, "name"), *role = prop(l, "role");
        for (int i = 0; i < p->nlisteners; i++) {
            if (!strcmp(p->listeners[i].listener, name)) {
                add_error(e, (int)xmlGetLineNo(l), "listener '%s' is given a "
                          "role twice", name);
            }
        }
        if (!find_role(p, role)) {
            add_error(e, (int)xmlGetLineNo(l), "listener '%s' is given role "
                      "'%s', which is not defined", name, role);
        }
        p->listeners = xrealloc(p->listeners, sizeof(*p->listeners)
                                * (size_t)(p->nlisteners + 1));
        p->listeners[p->nlisteners].listener = name;
        p->listeners[p->nlisteners].role = role;
        p->nlisteners++;
    }
}

static void load_paths(struct policy *p, xmlNodePtr paths, struct errors *e)
{
    p->has_paths = true;
    FOR_EACH_ELEMENT(a, paths, "allow") {
        char real[PATH_MAX];
        char *dir = prop(a, "dir"), *nbd = prop(a, "nbd");
        char *protocol = prop(a, "protocol");
        if (dir) {
            /* a directory that does not exist yet is taken as written,
             * ".." and all resolved as far as it goes */
            char *resolved = realpath(dir, real) ? xstrdup(real)
                                                 : policy_resolve(dir);
            if (!resolved) {
                add_error(e, (int)xmlGetLineNo(a), "folder %s goes through "
                          "too many symbolic links", dir);
            } else {
                p->dirs = xrealloc(p->dirs, sizeof(*p->dirs)
                                   * (size_t)(p->ndirs + 1));
                p->dirs[p->ndirs++] = resolved;
            }
        }
        if (nbd) {
            /* a unix socket is compared once resolved, as it is checked */
            char *path = !strncmp(nbd, "unix:", 5)
                ? policy_resolve(nbd + 5) : NULL;
            p->nbd = xrealloc(p->nbd, sizeof(*p->nbd) * (size_t)(p->nnbd + 1));
            p->nbd[p->nnbd++] = path ? xasprintf("unix:%s", path)
                                     : xstrdup(nbd);
            free(path);
        }
        if (protocol) {
            p->protocols = xrealloc(p->protocols, sizeof(*p->protocols)
                                    * (size_t)(p->nprotocols + 1));
            p->protocols[p->nprotocols++] = xstrdup(protocol);
        }
        free(dir);
        free(nbd);
        free(protocol);
    }
}

static int int_prop(xmlNodePtr n, const char *name, int dflt)
{
    char *v = prop(n, name);
    long long x = v ? strtoll(v, NULL, 10) : dflt;
    free(v);
    return x > INT32_MAX ? INT32_MAX : (int)x;
}

static void load_mirroring(struct policy *p, xmlNodePtr m, struct errors *e)
{
    FOR_EACH_ELEMENT(r, m, "rule") {
        struct policy_mirror_rule *rule;
        char *v;
        p->mirrors = xrealloc(p->mirrors, sizeof(*p->mirrors)
                              * (size_t)(p->nmirrors + 1));
        rule = &p->mirrors[p->nmirrors++];
        memset(rule, 0, sizeof(*rule));
        rule->name = prop(r, "name");
        for (int i = 0; i < p->nmirrors - 1; i++) {
            if (!strcmp(p->mirrors[i].name, rule->name)) {
                add_error(e, (int)xmlGetLineNo(r), "mirroring rule '%s' is "
                          "defined twice", rule->name);
            }
        }
        rule->disks = prop(r, "disks");
        v = prop(r, "on");
        rule->on = v && !strcmp(v, "connect") ? MIRROR_ON_CONNECT
                                              : MIRROR_ON_SNAPSHOT;
        free(v);
        rule->target = prop(r, "target");
        v = prop(r, "pivot");
        rule->pivot_when_ready = v && !strcmp(v, "when-ready");
        free(v);
        v = prop(r, "on-error");
        rule->retry = v && !strcmp(v, "retry");
        free(v);
        v = prop(r, "speed");
        rule->speed = v ? strtoll(v, NULL, 10) : 0;
        free(v);
        v = prop(r, "precreate");
        rule->precreate = v && !strcmp(v, "yes");
        free(v);
        rule->retries = int_prop(r, "retries", 5);
        rule->backoff_ms = int_prop(r, "backoff-ms", 1000);
        rule->max_backoff_ms = int_prop(r, "max-backoff-ms", 60000);
        rule->outage_budget_ms = int_prop(r, "outage-budget-ms", 300000);
        rule->format = prop(r, "format");
        if (!rule->format) {
            rule->format = xstrdup("qcow2");
        }
        if (nbd_target_is(rule->target)) {
            char *err = NULL, *server = NULL;
            if (rule->on != MIRROR_ON_CONNECT) {
                err = xstrdup("an NBD server as the target takes a replica "
                              "of the whole disk (on=\"connect\"): a "
                              "snapshot's copy needs an overlay made "
                              "beforehand on the receiving side, which "
                              "cannot know of the snapshot");
            } else if (rule->precreate) {
                err = xstrdup("precreate=\"yes\" needs a folder: the "
                              "receiving side makes the images it exports");
            } else {
                err = nbd_target_export_on("target", rule->target,
                                           "DISK-replica", &server);
            }
            free(server);
            if (err) {
                add_error(e, (int)xmlGetLineNo(r), "rule '%s': %s",
                          rule->name, err);
                free(err);
            }
        }
        if (p->has_paths) {
            char *err = policy_check_path(p, "target", rule->target);
            if (err) {
                add_error(e, (int)xmlGetLineNo(r), "rule '%s': %s",
                          rule->name, err);
                free(err);
            }
        }
    }
}

/*
 * The schema, compiled once a process: it is part of the binary and never
 * changes, and compiling it was four fifths of loading a small policy.
 * libxml2 validates any number of documents against one compiled schema,
 * each with a context of its own (as xmllint --relaxng does).
 */
static xmlRelaxNGPtr policy_schema(void)
{
    static xmlRelaxNGPtr rng;
    xmlDocPtr schema_doc;
    xmlRelaxNGParserCtxtPtr rng_parser;

    if (!rng) {
        schema_doc = xmlReadMemory((const char *)policy_rng,
                                   (int)policy_rng_len, "qmproxy.rng", NULL,
                                   XML_PARSE_NONET);
        /* the parser context works on its own copy of the document */
        rng_parser = xmlRelaxNGNewDocParserCtxt(schema_doc);
        rng = xmlRelaxNGParse(rng_parser);
        xmlRelaxNGFreeParserCtxt(rng_parser);
        xmlFreeDoc(schema_doc);
    }
    return rng;  /* NULL only when libxml2 ran out of memory: tried again */
}

struct policy *policy_load(const char *path, char **errors)
{
    struct errors e = { .file = path };
    xmlParserCtxtPtr pctxt;
    xmlDocPtr doc;
    xmlRelaxNGPtr schema;
    xmlRelaxNGValidCtxtPtr valid;
    struct policy *p = NULL;
    xmlNodePtr root;

    *errors = NULL;
    pctxt = xmlNewParserCtxt();
    xmlStructuredErrorFunc saved_handler = xmlStructuredError;
    void *saved_context = xmlStructuredErrorContext;
    char *encoding_error = NULL;
    xmlSetStructuredErrorFunc(&encoding_error, on_encoding_error);
    doc = xmlCtxtReadFile(pctxt, path, NULL, XML_PARSE_NONET
                          | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlSetStructuredErrorFunc(saved_context, saved_handler);
    if (!doc) {
        xmlErrorPtr err = xmlCtxtGetLastError(pctxt);
        if (access(path, R_OK) != 0) {
            *errors = xasprintf("%s: cannot read it: %s\n", path,
                                strerror(errno));
        } else if (encoding_error) {
            *errors = xasprintf("%s:%d: not well-formed XML: its bytes do not "
                                "follow the encoding its XML declaration "
                                "names: %s\n", path, err ? err->line : 0,
                                encoding_error);
        } else {
            char *msg = xml_error_text(err, "?");
            *errors = xasprintf("%s:%d:%d: not well-formed XML: %s\n", path,
                                err ? err->line : 0, err ? err->int2 : 0, msg);
            free(msg);
        }
        free(encoding_error);
        xmlFreeParserCtxt(pctxt);
        return NULL;
    }
    free(encoding_error);
    xmlFreeParserCtxt(pctxt);

    /* the schema is part of the binary: no file to lose or mismatch */
    schema = policy_schema();
    if (!schema) {
        add_error(&e, 1, "cannot compile the built-in policy schema");
    } else {
        valid = xmlRelaxNGNewValidCtxt(schema);
        xmlRelaxNGSetValidStructuredErrors(valid, on_rng_error, &e);
        if (xmlRelaxNGValidateDoc(valid, doc) != 0 && !e.sb.len) {
            add_error(&e, 1, "does not follow the qmproxy policy schema");
        }
        xmlRelaxNGFreeValidCtxt(valid);
    }

    if (!e.sb.len) {
        p = xcalloc(1, sizeof(*p));
        p->path = xstrdup(path);
        add_builtin_roles(p);
        root = xmlDocGetRootElement(doc);
        /* roles first: listeners refer to them; paths before mirroring */
        FOR_EACH_ELEMENT(n, root, "roles") {
            load_roles(p, n, &e);
        }
        for (xmlNodePtr n = root->children; n; n = n->next) {
            if (is(n, "listeners")) {
                load_listeners(p, n, &e);
            } else if (is(n, "paths")) {
                load_paths(p, n, &e);
            }
        }
        FOR_EACH_ELEMENT(n, root, "mirroring") {
            load_mirroring(p, n, &e);
        }
        if (!p->nlisteners && !p->default_role) {
            /* a policy without listeners constrains paths or mirroring
             * only: commands stay open to everyone */
            p->default_role = xstrdup("full");
        }
    }
    xmlFreeDoc(doc);
    if (e.sb.len) {
        policy_free(p);
        *errors = strbuf_detach(&e.sb, NULL);
        return NULL;
    }
    return p;
}

void policy_free(struct policy *p)
{
    if (!p) {
        return;
    }
    for (int i = 0; i < p->nroles; i++) {
        for (int k = 0; k < p->roles[i].nrules; k++) {
            free(p->roles[i].rules[k].glob);
        }
        free(p->roles[i].rules);
        free(p->roles[i].name);
    }
    free(p->roles);
    for (int i = 0; i < p->nlisteners; i++) {
        free(p->listeners[i].listener);
        free(p->listeners[i].role);
    }
    free(p->listeners);
    free(p->default_role);
    for (int i = 0; i < p->ndirs; i++) {
        free(p->dirs[i]);
    }
    free(p->dirs);
    for (int i = 0; i < p->nnbd; i++) {
        free(p->nbd[i]);
    }
    free(p->nbd);
    for (int i = 0; i < p->nprotocols; i++) {
        free(p->protocols[i]);
    }
    free(p->protocols);
    for (int i = 0; i < p->nmirrors; i++) {
        free(p->mirrors[i].name);
        free(p->mirrors[i].disks);
        free(p->mirrors[i].target);
        free(p->mirrors[i].format);
    }
    free(p->mirrors);
    free(p->path);
    free(p);
}
