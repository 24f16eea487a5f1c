import {h, replaceChildren, table} from '../dom.js';
import {mib} from '../format.js';
import {heading, inventory, redrawnOn} from './common.js';

export function mount(view) {
  function draw() {
    const inv = inventory();
    if (!inv) {
      replaceChildren(view, h('p', {class: 'hint'}, 'Loading the inventory…'));
      return;
    }
    const running = inv.vms.filter((vm) => vm.state === 'running').length;
    replaceChildren(view, 
      heading('Inventory'),
      h('p', {class: 'summary'}, `${inv.hosts.length} hosts, ${inv.vms.length} VMs ` +
        `(${running} running), ${inv.datastores.length} datastores, ` +
        `${inv.clusters.length} clusters`),
      table(['Host', 'Connection', 'Cluster', 'VMs', 'CPU', 'Memory free', 'Maintenance'],
        inv.hosts.map((host) => [
          h('a', {href: `#/host/${encodeURIComponent(host.name)}`}, host.name),
          host.connected ? 'connected' : `disconnected: ${host.error || ''}`,
          host.cluster || '-',
          String(inv.vms.filter((vm) => vm.host === host.name).length),
          `${host.cpus} × ${host.cpu_model || '?'}`,
          `${mib(host.free_memory_mib)} of ${mib(host.memory_mib)}`,
          host.maintenance ? 'yes' : 'no',
        ]), 'Hosts'));
  }
  return redrawnOn('inventory', draw);
}
