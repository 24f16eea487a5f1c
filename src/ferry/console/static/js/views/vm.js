// A VM: what it is, where it runs, its disks and NICs, power, and Migrate.

import {call, get, may, post, session} from '../api.js';
import {badge, facts, h, replaceChildren, table} from '../dom.js';
import {mib} from '../format.js';
import {findVm} from '../state.js';
import {alertBox, heading, needs, policyDefault, redrawnOn} from './common.js';

const POWER = [
  ['on', 'Power on', (vm) => vm.state !== 'running'],
  ['off', 'Shut down', (vm) => vm.state === 'running'],
  ['force-off', 'Power off', (vm) => vm.state === 'running'],
];

export function mount(view, name) {
  const [alert, showError] = alertBox();
  const path = `/vms/${encodeURIComponent(name)}/policy`;
  let policies = null;  // GET /policies, once
  let choice = null;  // GET /vms/{name}/policy: its default and what a move runs with

  async function setPolicy(picked) {
    showError(null);
    try {
      choice = await call('PUT', path, {policy: picked});
    } catch (err) {
      showError(err);
    }
    draw();
  }
  function migrationCard(operator) {
    const body = policies && choice ? [
      facts([['A move runs with', h('span', {id: 'vm-policy-now'},
        `${choice.policy} (${choice.why})`)]], 'Migration policy'),
      policyDefault('vm-policy', 'Its own default policy', policies, choice.default,
        'None: its cluster\'s, else ferry\'s', !operator, setPolicy),
      operator ? null : h('p', {class: 'hint'}, needs('operator', 'changing it')),
    ] : h('p', {class: 'hint'}, 'Loading…');
    return h('section', {class: 'card', id: 'vm-migration'}, h('h2', {}, 'Migration'), body);
  }

  function draw() {
    const vm = findVm(name);
    if (!vm) {
      replaceChildren(view, heading(name, 'VM'), alert,
        h('p', {class: 'hint'}, 'No VM of this name in the inventory (yet).'));
      return;
    }
    const operator = may('operator');
    const powerButtons = POWER.map(([action, label, allowed]) => h('button', {
      type: 'button', disabled: !operator || !allowed(vm) || Boolean(vm.moving),
      title: operator ? null : needs('operator', label),
      onclick: async () => {
        showError(null);
        try {
          await post(`/vms/${encodeURIComponent(vm.name)}/power`, {action});
        } catch (err) {
          showError(err);
        }
      },
    }, label));
    const migrate = operator && !vm.moving
      ? h('a', {class: 'button primary', href: `#/vm/${encodeURIComponent(vm.name)}/migrate`,
        id: 'migrate'}, 'Migrate…')
      : h('button', {type: 'button', class: 'primary', id: 'migrate', disabled: true,
        title: vm.moving ? 'the VM is being moved' : needs('operator', 'migrating')},
      'Migrate…');
    replaceChildren(view, 
      heading(vm.name, 'VM', ...powerButtons, migrate),
      alert,
      operator ? null : h('p', {class: 'hint', id: 'role-note'},
        `Your role is ${session.role}: power and Migrate need role operator.`),
      vm.moving ? h('p', {class: 'notice'}, 'Being moved: ',
        h('a', {href: `#/job/${vm.moving.job_id}`}, `${vm.moving.kind} job ${vm.moving.job_id}`),
        vm.moving.dest_host ? ` to ${vm.moving.dest_host}` : '') : null,
      h('div', {class: 'columns'},
        h('section', {class: 'card'}, h('h2', {}, 'Summary'), facts([
          ['State', h('span', {id: 'vm-state'}, vm.state)],
          ['Host', h('a', {href: `#/host/${encodeURIComponent(vm.host)}`, id: 'vm-host'},
            vm.host)],
          ['Memory', mib(vm.memory_mib)],
          ['vCPUs', String(vm.vcpus)],
          ['CPU', [vm.cpu_mode, vm.cpu_model].filter(Boolean).join(' ') || '-'],
          ['Virtualization', vm.domain_type],
          ['Persistent', vm.persistent ? 'yes' : 'no'],
          ['Snapshots', String(vm.snapshot_count)],
          ['CPU pinning', vm.affinity.pinned ? 'pinned' : 'none'],
          ['UUID', vm.uuid],
          ['Up to date', vm.current ? 'yes' : badge('host not answering', 'bad')],
        ], 'VM summary')),
        migrationCard(operator),
        h('section', {class: 'card'}, h('h2', {}, 'Disks'),
          table(['Disk', 'Device', 'Format', 'Source', 'Notes'], vm.disks.map((disk) => [
            disk.target, disk.device, disk.driver_format, disk.source,
            [disk.readonly && 'read-only', disk.transient && 'transient',
              disk.backing_store && `backing ${disk.backing_store}`]
              .filter(Boolean).join(', ') || '-']))),
        h('section', {class: 'card'}, h('h2', {}, 'Network adapters'),
          table(['MAC', 'Network', 'Port group', 'Model'], vm.interfaces.map((nic) => [
            nic.mac, nic.network || nic.kind, nic.portgroup, nic.model])))));
  }
  (async () => {
    try {
      [policies, choice] = await Promise.all([get('/policies'), get(path)]);
      draw();
    } catch (err) {
      showError(err);
    }
  })();
  return redrawnOn('inventory', draw);
}
