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
/*
 * With QEMU's query-block (and block graph) in, but not its
 * query-named-block-nodes: would some layer be left without a node-name
 * (one the model did not know, under a file it did not know, or a name the
 * graph no longer has)?  Only then is the node-wide query worth its cost.
 */
bool ch_needs_node_names(const struct chain *c);

#endif
