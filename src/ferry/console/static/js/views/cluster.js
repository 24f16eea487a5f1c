// A cluster: its hosts and EVC, with what the mode hides on each host, and the default
// convergence policy of its VMs' moves.

import {call, get, may} from '../api.js';
import {facts, h, replaceChildren, table} from '../dom.js';
import {when} from '../format.js';
import {alertBox, heading, needs, policyDefault} from './common.js';

export function mount(view, name) {
  const [alert, showError] = alertBox();
  const refusal = h('div', {id: 'evc-refusal'});
  const evcBody = h('div', {id: 'evc'});
  const admin = may('admin');

  function drawEvc(report) {
    const mode = report.mode;
    replaceChildren(evcBody,
      facts([['EVC', mode ? `${mode.model} (asked: ${mode.requested})` : 'disabled'],
        ['Vendor', mode?.vendor], ['Enabled', mode ? when(mode.enabled_at) : '-'],
        ['Hosts not at the mode', report.not_at_mode.join(', ') || 'none']], 'EVC mode'),
      report.warnings.length ? h('ul', {class: 'warnings-list'},
        report.warnings.map((w) => h('li', {}, w))) : null,
      table(['Host', 'CPU model', 'Vendor', 'Hidden by the mode', 'Missing', 'Error'],
        report.hosts.map((row) => [row.host, row.model, row.vendor,
          row.hidden.join(' ') || 'nothing', row.missing.join(' ') || '-', row.error]),
        'Per host'));
  }
  async function load() {
    try {
      drawEvc(await get(`/clusters/${encodeURIComponent(name)}/evc`));
    } catch (err) {
      showError(err);
    }
  }
  async function change(method, body) {
    showError(null);
    replaceChildren(refusal);
    try {
      drawEvc(await call(method, `/clusters/${encodeURIComponent(name)}/evc`, body));
    } catch (err) {
      showError(err);
      if (err.findings?.length) {
        replaceChildren(refusal, table(['Check', 'Host or object', 'Why', 'Remedy'],
          err.findings.map((f) => [f.code, Object.values(f.objects || {}).join(', '),
            f.message, f.remedy]), 'Refused, row by row'));
      }
    }
  }
  const modeInput = h('input', {id: 'evc-mode', value: 'auto', disabled: !admin,
    'aria-describedby': 'evc-mode-help'});
  const form = h('form', {class: 'evc-form', 'aria-label': 'EVC mode'},
    h('div', {class: 'field'}, h('label', {for: 'evc-mode'}, 'EVC mode'), modeInput,
      h('p', {class: 'hint', id: 'evc-mode-help'},
        '"auto" (the newest model every host can run) or a CPU model such as Westmere.')),
    h('button', {type: 'submit', disabled: !admin}, 'Enable EVC'),
    h('button', {type: 'button', disabled: !admin, onclick: () => change('DELETE')},
      'Disable EVC'),
    admin ? null : h('p', {class: 'hint'}, needs('admin', 'changing EVC')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    change('PUT', {mode: modeInput.value.trim() || 'auto'});
  });
  const migration = h('section', {class: 'card', id: 'cluster-migration'},
    h('h2', {}, 'Migration'), h('p', {class: 'hint'}, 'Loading…'));
  let policies = null;  // GET /policies, once
  async function drawPolicy(setTo) {
    showError(null);
    try {
      const cluster = setTo === undefined
        ? (await get('/clusters')).find((c) => c.name === name)
        : await call('PUT', `/clusters/${encodeURIComponent(name)}/policy`, {policy: setTo});
      policies ??= await get('/policies');
      replaceChildren(migration, h('h2', {}, 'Migration'),
        policyDefault('cluster-policy', 'Default policy of its VMs\' moves', policies,
          cluster?.migration_policy, 'None: ferry\'s default', !admin, drawPolicy),
        h('p', {class: 'hint'}, 'A VM\'s own default, or a policy asked for a move, comes ' +
          'first.'),
        admin ? null : h('p', {class: 'hint'}, needs('admin', 'changing it')));
    } catch (err) {
      showError(err);
    }
  }
  replaceChildren(view, heading(name, 'Cluster'), alert,
    h('section', {class: 'card'}, h('h2', {}, 'EVC'), form, refusal, evcBody), migration);
  load();
  drawPolicy();
  return {update: null};
}
