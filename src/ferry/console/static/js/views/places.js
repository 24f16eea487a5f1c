// Datastores and networks: where disks and NICs can go.

import {badge, h, replaceChildren, table} from '../dom.js';
import {bytes} from '../format.js';
import {heading, inventory, redrawnOn} from './common.js';

export function mountDatastores(view, name) {
  function draw() {
    const inv = inventory();
    if (!inv) return;
    const shown = inv.datastores.filter((ds) => !name || ds.name === name);
    replaceChildren(view, heading(name || 'Datastores', name ? 'Datastore' : null),
      ...shown.map((ds) => h('section', {class: 'card'},
        h('h2', {}, ds.name, ds.shared ? badge('shared', 'info') : badge('local', '')),
        table(['Host', 'Pool', 'Type', 'Active', 'Capacity', 'Free'], ds.pools.map((pool) => [
          pool.host, pool.name, pool.pool_type, pool.active ? 'yes' : 'no',
          bytes(pool.capacity), bytes(pool.available)])))));
  }
  return redrawnOn('inventory', draw);
}

export function mountNetworks(view, name) {
  function draw() {
    const inv = inventory();
    if (!inv) return;
    const shown = inv.networks.filter((net) => !name || net.name === name);
    replaceChildren(view, heading(name || 'Networks', name ? 'Network' : null),
      table(['Network', 'Host', 'Bridge', 'Forward', 'Active', 'Port groups', 'Internal only'],
        shown.map((net) => [net.name, net.host, net.bridge, net.forward_mode || 'isolated',
          net.active ? 'yes' : 'no', net.portgroups.join(', ') || '-',
          net.internal_only ? 'yes' : 'no'])));
  }
  return redrawnOn('inventory', draw);
}
