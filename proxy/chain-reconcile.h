/*
 * chain-reconcile: private to the chain modules.  Once QEMU has answered
 * every question of a reconciliation (c->q_block, q_nodes, q_jobs,
 * q_graph), its answers become the model: disks, node-names, jobs, the
 * announcements of what changed, the hooks.  The answers are consumed.
 */
#ifndef QMPROXY_CHAIN_RECONCILE_H
#define QMPROXY_CHAIN_RECONCILE_H

#include "chain-model.h"

void ch_reconciled(struct chain *c);

#endif
