// The Recent Tasks pane: running and queued first (the server's order), live figures,
// and Cancel for what may still be cancelled.

import {ApiError, may, post} from './api.js';
import {h, replaceChildren} from './dom.js';
import {clock} from './format.js';
import {copyState, jobTarget, jobTitle, progressBar, stateBadge} from './jobs.js';
import {UNFINISHED} from './state.js';

const SHOWN = 8;

export function cancelButton(job, onError) {
  if (!UNFINISHED.has(job.state) || job.state === 'cancelling') return null;
  return h('button', {
    type: 'button', class: 'small', 'aria-label': `Cancel ${jobTitle(job)}`,
    disabled: !may('operator'),
    title: may('operator') ? null : 'cancelling a job needs role operator',
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await post(`/jobs/${job.id}/cancel`);
      } catch (err) {
        onError(err instanceof ApiError ? err.message : String(err));
      }
    },
  }, 'Cancel');
}

export function renderTasks(el, jobs) {
  // One alert kept across pushes, so a refusal stays readable.
  el.alert ??= h('p', {class: 'error', role: 'alert'});
  const error = el.alert;
  const onError = (message) => { error.textContent = message; };
  const rows = jobs.slice(0, SHOWN).map((job) => {
    const copy = copyState(job);
    return h('tr', {'data-job': job.id, 'data-state': job.state},
      h('td', {}, h('a', {href: `#/job/${job.id}`}, jobTitle(job))),
      h('td', {}, jobTarget(job)),
      h('td', {}, stateBadge(job)),
      h('td', {}, job.phase),
      h('td', {class: 'bar'}, progressBar(job)),
      h('td', {class: 'figures'}, job.state === 'running' && copy ? copy[2] : job.error || ''),
      h('td', {}, job.requested_by || '-'),
      h('td', {}, clock(job.created_at)),
      h('td', {}, cancelButton(job, onError)));
  });
  replaceChildren(el, error, h('table', {class: 'grid tasks-grid'},
    h('thead', {}, h('tr', {}, ['Task', 'Target', 'State', 'Phase', 'Progress', 'Details',
      'By', 'Started', ''].map((name) => h('th', {scope: 'col'}, name)))),
    h('tbody', {}, rows.length ? rows
      : h('tr', {}, h('td', {colspan: 9, class: 'empty'}, 'no tasks yet')))),
  h('a', {href: '#/jobs'}, 'All tasks'));
}
