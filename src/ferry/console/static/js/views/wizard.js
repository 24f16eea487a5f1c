// The Migrate wizard: the seed's three choices (and a cold move for a powered-off VM),
// the target, and the full pre-flight beside them, asked again at every change.
// Migrate is enabled only by a report with no error for exactly the choice shown.

import {ApiError, get, post} from '../api.js';
import {h, replaceChildren} from '../dom.js';
import {bytes} from '../format.js';
import {findVm, state} from '../state.js';
import {alertBox, heading} from './common.js';
import {findingsReport} from './findings.js';

const CHOICES = [
  ['change-host', 'Change host',
    'Move the running VM to another host; its disks stay where they are (shared storage).',
    {host: true, datastore: false, live: true}],
  ['change-datastore', 'Change datastore',
    'Move the running VM\'s disks to another datastore; the VM stays on its host.',
    {host: false, datastore: true, live: true}],
  ['change-both', 'Change host and datastore',
    'Move the running VM to another host and copy its disks to a datastore there.',
    {host: true, datastore: true, live: true}],
  ['cold', 'Cold migration',
    'Move a powered-off VM: its files are copied and its definition moved.',
    {host: true, datastore: true, live: false}],
];
const FORMATS = [['same', 'Same as source'], ['thin', 'Thin provisioned (qcow2)'],
  ['thick-lazy', 'Thick, lazily zeroed (raw, reserved)'],
  ['thick-eager', 'Thick, eagerly zeroed (raw, written)']];
const CHECK_DELAY_MS = 250;

function select(id, label, options, help) {
  return h('div', {class: 'field', id: `${id}-field`},
    h('label', {for: id}, label),
    h('select', {id, name: id, 'aria-describedby': help ? `${id}-help` : null},
      options.map(([value, text]) => h('option', {value}, text))),
    help ? h('p', {class: 'hint', id: `${id}-help`}, help) : null);
}

export function mount(view, name) {
  const vm = findVm(name);
  if (!vm) {  // the first push has not come yet: build the form when it does
    replaceChildren(view, heading(`Migrate ${name}`, 'VM'),
      h('p', {class: 'hint'}, 'Loading the inventory…'));
    const waiting = {};
    waiting.update = (what) => {
      if (what === 'inventory' && findVm(name)) Object.assign(waiting, mount(view, name));
    };
    return waiting;
  }
  const running = vm.state === 'running';
  const inv = state.inventory;
  const [alert, showError] = alertBox();

  const choices = h('fieldset', {class: 'choices'},
    h('legend', {}, '1. Migration type'),
    CHOICES.map(([value, label, help, need], i) => {
      const usable = need.live === running;
      return h('div', {class: usable ? 'choice' : 'choice unusable'},
        h('input', {type: 'radio', name: 'type', id: `type-${value}`, value,
          disabled: !usable, checked: usable && (i === 0 || (!running && value === 'cold')),
          'aria-describedby': `type-${value}-help`}),
        h('label', {for: `type-${value}`}, label),
        h('p', {class: 'hint', id: `type-${value}-help`}, help,
          usable ? '' : running ? ' (the VM must be powered off)' : ' (the VM must be running)'));
    }));

  const hosts = inv.hosts.filter((host) => host.name !== vm.host).map((host) => [host.name,
    `${host.name}${host.maintenance ? ' (maintenance)' : ''}` +
    `${host.connected ? '' : ' (disconnected)'}${host.cluster ? ` · ${host.cluster}` : ''}`]);
  // A move names a datastore as the destination host knows it: a shared datastore by
  // its name, a host's own pool by the pool's name there.
  const datastoresOn = (hostName) => inv.datastores.flatMap((ds) => ds.pools
    .filter((pool) => pool.host === hostName && pool.active)
    .map((pool) => [ds.shared ? ds.name : pool.name,
      `${ds.shared ? ds.name : pool.name} (${ds.shared ? 'shared' : `local to ${hostName}`}, ` +
      `${bytes(pool.available)} free)`]));
  const hostField = select('target-host', 'Destination host',
    [['', 'Choose a host…'], ...hosts]);
  const dsField = select('target-datastore', 'Destination datastore', []);
  const dsSelect = dsField.querySelector('select');
  function fillDatastores(hostName) {
    const kept = dsSelect.value;
    const options = [['', `Choose a datastore of ${hostName}…`], ...datastoresOn(hostName)];
    dsSelect.replaceChildren(...options.map(([value, text]) => h('option', {value}, text)));
    if (options.some(([value]) => value === kept)) dsSelect.value = kept;
  }
  const formatField = select('disk-format', 'Disk format', FORMATS,
    'Thin copies only what is written; thick reserves the whole size.');
  const disks = vm.disks.filter((d) => d.device === 'disk' && d.source);
  const diskField = h('fieldset', {class: 'disks', id: 'disks-field'},
    h('legend', {}, 'Disks to move'),
    disks.map((disk) => h('div', {class: 'choice'},
      h('input', {type: 'checkbox', id: `disk-${disk.target}`, value: disk.target,
        checked: true}),
      h('label', {for: `disk-${disk.target}`}, `${disk.target} (${disk.driver_format || '?'})`))));
  const target = h('fieldset', {class: 'target'}, h('legend', {}, '2. Target'),
    hostField, dsField, formatField, diskField);
  // How a live move between hosts copies the memory: its policy (the VM's default unless
  // another is chosen) and a bandwidth of its own, below the hosts' limits.
  const policyField = select('move-policy', 'Convergence policy',
    [['', 'The VM\'s default']], 'Loading the policies…');
  const policySelect = policyField.querySelector('select');
  const bandwidthField = h('div', {class: 'field', id: 'move-bandwidth-field'},
    h('label', {for: 'move-bandwidth'}, 'Bandwidth at most (MiB/s)'),
    h('input', {id: 'move-bandwidth', name: 'move-bandwidth', type: 'number', min: 1,
      placeholder: 'the hosts\' limits', 'aria-describedby': 'move-bandwidth-help'}),
    h('p', {class: 'hint', id: 'move-bandwidth-help'},
      'Empty: the hosts\' own limits, if any. The lowest limit wins.'));
  const tuning = h('fieldset', {class: 'tuning', id: 'tuning'},
    h('legend', {}, '3. Memory copy'), policyField, bandwidthField);
  (async () => {  // the choices as the server names and describes them
    try {
      const [policies, chosen] = await Promise.all([get('/policies'),
        get(`/vms/${encodeURIComponent(vm.name)}/policy`)]);
      const kept = policySelect.value;
      policySelect.replaceChildren(
        h('option', {value: ''}, `The VM's default: ${chosen.policy} (${chosen.why})`),
        ...policies.map((p) => h('option', {value: p.name}, p.name)));
      policySelect.value = kept;
      const help = policyField.querySelector('.hint');
      const describe = () => {
        const picked = policies.find((p) => p.name === (policySelect.value || chosen.policy));
        help.textContent = picked ? picked.description : '';
      };
      policySelect.addEventListener('change', describe);
      describe();
    } catch (err) {
      policyField.querySelector('.hint').textContent =
        err instanceof ApiError ? err.message : String(err);
    }
  })();

  const submit = h('button', {type: 'submit', id: 'migrate-submit', class: 'primary',
    disabled: true}, 'Migrate');
  const panel = h('aside', {class: 'preflight', id: 'preflight', 'aria-live': 'polite',
    'aria-labelledby': 'preflight-title'}, h('h2', {id: 'preflight-title'}, 'Pre-flight'),
  h('div', {id: 'preflight-body'}, h('p', {class: 'hint'}, 'Choose a target.')));
  const form = h('form', {class: 'wizard', id: 'wizard', 'aria-label': `Migrate ${vm.name}`},
    choices, target, tuning, alert,
    h('div', {class: 'actions'}, submit,
      h('a', {class: 'button', href: `#/vm/${encodeURIComponent(vm.name)}`}, 'Cancel')));
  replaceChildren(view, heading(`Migrate ${vm.name}`, 'VM'),
    h('p', {class: 'hint'}, `Now on ${vm.host}, ${vm.state}.`),
    h('div', {class: 'wizard-layout'}, form, panel));

  const value = (id) => view.querySelector(`#${id}`).value;
  function choice() {
    const checked = form.querySelector('input[name="type"]:checked');
    return CHOICES.find(([v]) => v === checked?.value) || null;
  }
  function request() {
    const picked = choice();
    if (!picked) return [null, 'Choose a migration type.'];
    const [kind, , , need] = picked;
    const body = {vm: vm.name, cold: kind === 'cold'};
    const host = value('target-host');
    const ds = value('target-datastore');
    if (need.host && host) body.host = host;
    if (need.datastore && ds) body.datastore = ds;
    if (need.datastore) {
      body.disk_format = value('disk-format');
      const chosen = disks.filter((d) => view.querySelector(`#disk-${d.target}`).checked)
        .map((d) => d.target);
      if (!chosen.length) return [null, 'Choose at least one disk.'];
      if (chosen.length < disks.length) body.disks = chosen;
    }
    if (kind === 'cold' && !body.host && !body.datastore) {
      return [null, 'Choose a host, a datastore, or both.'];
    }
    if (need.live && need.host && !body.host) return [null, 'Choose a host.'];
    if (need.live && need.datastore && !body.datastore) return [null, 'Choose a datastore.'];
    return [body, null];
  }
  function showFields() {
    const need = choice()?.[3] || {};
    fillDatastores(need.host && value('target-host') ? value('target-host') : vm.host);
    hostField.hidden = !need.host;
    dsField.hidden = !need.datastore;
    formatField.hidden = !need.datastore;
    diskField.hidden = !need.datastore || !disks.length;
    tuning.hidden = !(need.live && need.host);
  }

  let asked = 0;
  let allowedFor = null;  // the request a clean report answered
  let timer = null;
  const body = () => view.querySelector('#preflight-body');
  function recheck() {
    showFields();
    showError(null);
    allowedFor = null;
    submit.disabled = true;
    clearTimeout(timer);
    const [req, missing] = request();
    if (!req) {
      replaceChildren(body(), h('p', {class: 'hint'}, missing));
      return;
    }
    const key = JSON.stringify(req);
    const mine = ++asked;
    replaceChildren(body(), h('p', {class: 'hint', id: 'checking'}, 'Checking…'));
    timer = setTimeout(async () => {
      try {
        const report = await post('/checks', req);
        if (mine !== asked) return;  // the choice changed while this was asked
        replaceChildren(body(), findingsReport(report));
        allowedFor = report.allowed ? key : null;
        submit.disabled = !report.allowed;
      } catch (err) {
        if (mine !== asked) return;
        replaceChildren(body(), h('p', {class: 'error'},
          err instanceof ApiError ? err.message : String(err)));
      }
    }, CHECK_DELAY_MS);
  }

  // The memory copy's choices are not judged by the pre-flight: they keep its verdict.
  form.addEventListener('change', (event) => {
    if (!tuning.contains(event.target)) recheck();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const [req] = request();
    if (!req || JSON.stringify(req) !== allowedFor) return;
    submit.disabled = true;
    const need = choice()[3];
    if (need.live && need.host) {
      if (policySelect.value) req.policy = policySelect.value;
      const bandwidth = value('move-bandwidth');
      if (bandwidth !== '') req.bandwidth_mibps = Number(bandwidth);
    }
    try {
      const job = await post('/migrations', req);
      location.hash = `#/job/${job.id}`;
    } catch (err) {
      showError(err);
      submit.disabled = false;
    }
  });
  recheck();
  // Pushes do not redraw the form: it keeps the admin's choice, the check asks the server.
  return {update: null};
}
