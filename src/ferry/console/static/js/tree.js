// The inventory tree: clusters, their hosts, each host's VMs; then datastores, networks.

import {badge, h} from './dom.js';

function hostState(host) {
  if (!host.connected) return badge('disconnected', 'bad');
  if (host.maintenance) return badge('maintenance', 'warn');
  return null;
}

function vmItem(vm) {
  return h('li', {},
    h('a', {href: `#/vm/${encodeURIComponent(vm.name)}`, 'data-vm': vm.name,
      'data-host': vm.host},
      h('span', {class: `dot ${vm.state}`, 'aria-hidden': 'true'}), vm.name,
      h('span', {class: 'sr'}, ` (${vm.state})`),
      vm.moving ? badge('moving', 'info') : null));
}

function hostItem(host, vms) {
  const mine = vms.filter((vm) => vm.host === host.name)
    .sort((a, b) => a.name.localeCompare(b.name));
  return h('li', {},
    h('a', {href: `#/host/${encodeURIComponent(host.name)}`, 'data-host': host.name},
      host.name, hostState(host)),
    mine.length ? h('ul', {}, mine.map(vmItem)) : null);
}

export function renderTree(inventory) {
  if (!inventory) return [h('p', {class: 'hint'}, 'Loading the inventory…')];
  const {hosts, clusters, vms, datastores, networks} = inventory;
  const clustered = new Set(clusters.flatMap((c) => c.hosts));
  const byName = new Map(hosts.map((host) => [host.name, host]));
  const section = (title, items) => [h('h2', {}, title), h('ul', {}, items)];
  const networkNames = [...new Set(networks.map((n) => n.name))].sort();
  return [
    section('Clusters', clusters.map((cluster) => h('li', {},
      h('a', {href: `#/cluster/${encodeURIComponent(cluster.name)}`}, cluster.name,
        cluster.evc ? badge(`EVC ${cluster.evc.model}`, 'info') : null),
      h('ul', {}, cluster.hosts.filter((name) => byName.has(name))
        .map((name) => hostItem(byName.get(name), vms)))))),
    section('Hosts', hosts.filter((host) => !clustered.has(host.name))
      .map((host) => hostItem(host, vms))),
    section('Datastores', datastores.map((ds) => h('li', {},
      h('a', {href: `#/datastore/${encodeURIComponent(ds.name)}`}, ds.name,
        ds.shared ? badge('shared', 'info') : null)))),
    section('Networks', networkNames.map((name) => h('li', {},
      h('a', {href: `#/network/${encodeURIComponent(name)}`}, name)))),
  ];
}
