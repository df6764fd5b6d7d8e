/*
 * migrate-state: what a qmproxy-migrate keeps beside its disks, as it is
 * freed, saved with --state and read back by a restarted proxy.
 */
#include <stdlib.h>

#include "jsonobj.h"
#include "migrate.h"
#include "migrate-internal.h"
#include "op.h"
#include "util.h"

void migration_free(void *priv)
{
    struct migration *m = priv;

    free(m->uri);
    free(m->tls_creds);
    free(m->tls_hostname);
    free(m->tls_source_dir);
    free(m->tls_dest_dir);
    free(m->status);
    mig_dest_close(m->dest);
    free(m->destination);
    free(m->nbd_host);
    free(m->nbd_port);
    free(m);
}

/* What a restarted proxy needs to carry the migration on: where the VM
 * state goes, the destination's monitor and what was made there. */
json_object *migration_save(const struct op *op)
{
    const struct migration *m = op->priv;
    json_object *o = json_object_new_object();

    jobj_add_str(o, "uri", m->uri);
    jobj_add_str(o, "tls-creds", m->tls_creds);
    jobj_add_str(o, "tls-hostname", m->tls_hostname);
    jobj_add_str(o, "tls-source-dir", m->tls_source_dir);
    jobj_add_str(o, "tls-dest-dir", m->tls_dest_dir);
    jobj_add_bool(o, "tls-made", m->tls_made);
    jobj_add_bool(o, "quit-source", m->quit_source);
    jobj_add_str(o, "destination", m->destination);
    jobj_add_bool(o, "start-destination", m->start_dest);
    jobj_add_str(o, "nbd-host", m->nbd_host);
    jobj_add_str(o, "nbd-port", m->nbd_port);
    return o;
}

static char *saved_str(json_object *o, const char *key)
{
    const char *v = jobj_str(o, key);

    return v ? xstrdup(v) : NULL;
}

struct migration *migration_load(json_object *o)
{
    struct migration *m = xcalloc(1, sizeof(*m));

    m->uri = saved_str(o, "uri");
    m->tls_creds = saved_str(o, "tls-creds");
    m->tls_hostname = saved_str(o, "tls-hostname");
    m->tls_source_dir = saved_str(o, "tls-source-dir");
    m->tls_dest_dir = saved_str(o, "tls-dest-dir");
    m->tls_made = jobj_bool(o, "tls-made", false);
    m->quit_source = jobj_bool(o, "quit-source", true);
    m->destination = saved_str(o, "destination");
    m->start_dest = jobj_bool(o, "start-destination", true);
    m->nbd_host = saved_str(o, "nbd-host");
    m->nbd_port = saved_str(o, "nbd-port");
    return m;
}

