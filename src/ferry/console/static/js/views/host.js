// A host: what it is, its settings, maintenance mode with the evacuation's live
// progress and its report, and the VMs it runs.

import {call, may, post} from '../api.js';
import {badge, facts, h, replaceChildren, table} from '../dom.js';
import {mib} from '../format.js';
import {copyState, progressBar, stateBadge} from '../jobs.js';
import {findHost, state, UNFINISHED} from '../state.js';
import {alertBox, heading, needs} from './common.js';
import {reportOf} from './job.js';

function settingsForm(host, showError) {
  const admin = may('admin');
  const input = (id, label, attrs) => h('div', {class: 'field'},
    h('label', {for: id}, label), h('input', {id, name: id, disabled: !admin, ...attrs}));
  const form = h('form', {class: 'settings', id: 'host-settings',
    'aria-label': `settings of ${host.name}`},
  input('set-migration-enabled', 'Accepts and sends migrations',
    {type: 'checkbox', checked: host.migration_enabled}),
  input('set-max-migrations', 'Concurrent migrations at most',
    {type: 'number', min: 1, max: 64, value: host.max_migrations}),
  input('set-memory-limit', 'Memory for VMs at most (MiB; empty: no limit)',
    {type: 'number', min: 64, value: host.memory_limit_mib ?? ''}),
  input('set-bandwidth', 'Migration bandwidth at most (MiB/s; empty: no limit)',
    {type: 'number', min: 1, value: host.migration_bandwidth_mibps ?? ''}),
  input('set-cleartext', 'Allow clear-text migration streams',
    {type: 'checkbox', checked: host.allow_cleartext_migration}),
  admin ? h('button', {type: 'submit'}, 'Save settings')
    : h('p', {class: 'hint'}, needs('admin', 'changing a host\'s settings')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const limit = form.querySelector('#set-memory-limit').value;
    const bandwidth = form.querySelector('#set-bandwidth').value;
    const body = {
      migration_enabled: form.querySelector('#set-migration-enabled').checked,
      max_migrations: Number(form.querySelector('#set-max-migrations').value),
      allow_cleartext_migration: form.querySelector('#set-cleartext').checked,
    };
    if (limit === '') body.clear_memory_limit = true;
    else body.memory_limit_mib = Number(limit);
    if (bandwidth === '') body.clear_migration_bandwidth = true;
    else body.migration_bandwidth_mibps = Number(bandwidth);
    try {
      showError(null);
      await call('PATCH', `/hosts/${encodeURIComponent(host.name)}`, body);
    } catch (err) {
      showError(err);
    }
  });
  return form;
}

function evacuation(host) {
  const job = state.jobs.find((j) => j.kind === 'evacuate' && j.source_host === host.name);
  if (!job) return h('p', {class: 'hint'}, 'No evacuation of this host among the recent tasks.');
  const copy = copyState(job);
  const vms = Object.entries(job.progress?.vms || {});
  return h('div', {id: 'evacuation', 'data-state': job.state},
    h('p', {}, h('a', {href: `#/job/${job.id}`}, `Evacuation ${job.id}`), ' ', stateBadge(job),
      UNFINISHED.has(job.state) ? [' ', progressBar(job, 'evacuation progress'),
        ` ${copy ? copy[2] : 'starting…'}`] : null),
    UNFINISHED.has(job.state) && vms.length ? table(['VM', 'Going to', 'Its move'],
      vms.map(([vm, e]) => [vm, e.host, e.state]), 'Moving') : null,
    job.report ? h('div', {id: 'evacuation-report'}, reportOf(job)) : null);
}

export function mount(view, name) {
  const [alert, showError] = alertBox();
  function draw() {
    const host = findHost(name);
    if (!host) {
      replaceChildren(view, heading(name, 'Host'), h('p', {class: 'hint'}, 'Not in the inventory.'));
      return;
    }
    const operator = may('operator');
    const maintenance = h('button', {type: 'button', id: 'maintenance-toggle',
      disabled: !operator, title: operator ? null : needs('operator', 'maintenance mode'),
      onclick: async () => {
        showError(null);
        try {
          await post(`/hosts/${encodeURIComponent(name)}/maintenance/` +
            `${host.maintenance ? 'exit' : 'enter'}`);
        } catch (err) {
          showError(err);
        }
      }}, host.maintenance ? 'Exit maintenance mode' : 'Enter maintenance mode');
    const vms = state.inventory.vms.filter((vm) => vm.host === name);
    replaceChildren(view, 
      heading(name, 'Host', maintenance), alert,
      h('p', {}, host.connected ? badge('connected', 'good')
        : badge(`disconnected: ${host.error || ''}`, 'bad'),
      host.maintenance ? badge('in maintenance mode', 'warn') : null),
      h('div', {class: 'columns'},
        h('section', {class: 'card'}, h('h2', {}, 'Summary'), facts([
          ['Hostname', host.hostname], ['URI', host.uri], ['Cluster', host.cluster],
          ['CPU', `${host.cpus} × ${host.cpu_vendor || ''} ${host.cpu_model || ''}`],
          ['Memory', `${mib(host.free_memory_mib)} free of ${mib(host.memory_mib)}`],
          ['Migration address', host.migration_address],
          ['libvirt', host.libvirt_version], ['Hypervisor', host.hypervisor_version],
        ], 'Host summary')),
        h('section', {class: 'card'}, h('h2', {}, 'Settings'), settingsForm(host, showError))),
      h('section', {class: 'card'}, h('h2', {}, 'Maintenance mode'), evacuation(host)),
      h('section', {class: 'card'}, h('h2', {}, 'VMs'),
        table(['VM', 'State', 'Memory', 'vCPUs'], vms.map((vm) => [
          h('a', {href: `#/vm/${encodeURIComponent(vm.name)}`}, vm.name), vm.state,
          mib(vm.memory_mib), String(vm.vcpus)]))));
  }
  draw();
  return {update: (what) => {
    // A push does not redraw the settings form under an admin's hands.
    if (view.contains(document.activeElement) &&
        document.activeElement.closest('#host-settings')) return;
    draw();
  }};
}
