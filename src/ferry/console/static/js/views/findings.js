// A pre-flight report: errors, then warnings, then what passed, each with the objects it
// names and its remedy.

import {h} from '../dom.js';

function objects(finding) {
  const entries = Object.entries(finding.objects || {});
  if (!entries.length) return null;
  return h('ul', {class: 'objects', 'aria-label': 'objects'},
    entries.map(([kind, name]) => h('li', {}, h('span', {class: 'okind'}, kind), ' ', name)));
}

function row(finding) {
  return h('li', {class: `finding ${finding.status}`, 'data-code': finding.code},
    h('div', {class: 'code'}, finding.code),
    h('div', {class: 'message'}, finding.message),
    objects(finding),
    finding.remedy ? h('div', {class: 'remedy'}, h('strong', {}, 'Remedy: '), finding.remedy)
      : null);
}

export function findingsReport(report) {
  const by = (status) => report.findings.filter((f) => f.status === status);
  const errors = by('error');
  const warnings = by('warning');
  const passed = report.findings.filter((f) => f.status === 'pass' || f.status === 'n/a');
  return [
    h('p', {class: report.allowed ? 'verdict good' : 'verdict bad', id: 'verdict'},
      report.allowed
        ? `Compatible: no error, ${warnings.length} warning(s). Migrate is allowed.`
        : `${errors.length} error(s) stand: Migrate stays disabled.`),
    errors.length ? h('section', {class: 'errors', 'aria-label': 'Errors'},
      h('h3', {}, `Errors (${errors.length})`), h('ul', {id: 'errors'}, errors.map(row))) : null,
    warnings.length ? h('section', {class: 'warnings', 'aria-label': 'Warnings'},
      h('h3', {}, `Warnings (${warnings.length})`),
      h('ul', {id: 'warnings'}, warnings.map(row))) : null,
    h('details', {}, h('summary', {}, `Passed (${passed.length})`),
      h('ul', {}, passed.map(row))),
  ];
}
