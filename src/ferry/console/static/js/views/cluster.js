// A cluster: its hosts and EVC, with what the mode hides on each host.

import {call, get, may} from '../api.js';
import {facts, h, replaceChildren, table} from '../dom.js';
import {when} from '../format.js';
import {alertBox, heading, needs} from './common.js';

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
  replaceChildren(view, heading(name, 'Cluster'), alert,
    h('section', {class: 'card'}, h('h2', {}, 'EVC'), form, refusal, evcBody));
  load();
  return {update: null};
}
