// Job history, filtered by state, kind, VM or host, and user.

import {get} from '../api.js';
import {h, replaceChildren, table} from '../dom.js';
import {ms, when} from '../format.js';
import {KIND_WORDS, jobTarget, stateBadge} from '../jobs.js';
import {alertBox, heading} from './common.js';

const LIMIT = 1000;

export function mount(view) {
  const [alert, showError] = alertBox();
  const states = ['', 'queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'];
  const field = (id, label, control) => h('div', {class: 'field'},
    h('label', {for: id}, label), control);
  const byState = h('select', {id: 'filter-state'},
    states.map((v) => h('option', {value: v}, v || 'any')));
  const byKind = h('select', {id: 'filter-kind'}, h('option', {value: ''}, 'any'),
    Object.entries(KIND_WORDS).map(([v, text]) => h('option', {value: v}, text)));
  const byText = h('input', {id: 'filter-text', type: 'search',
    placeholder: 'VM or host name'});
  const byUser = h('input', {id: 'filter-user', type: 'search', placeholder: 'user'});
  const results = h('div', {id: 'history'});
  let jobs = [];

  function draw() {
    const text = byText.value.trim().toLowerCase();
    const user = byUser.value.trim().toLowerCase();
    const shown = jobs.filter((job) => (!byState.value || job.state === byState.value)
      && (!byKind.value || job.kind === byKind.value)
      && (!text || [job.vm, job.source_host, job.dest_host].some(
        (v) => v && v.toLowerCase().includes(text)))
      && (!user || (job.requested_by || '').toLowerCase().includes(user)));
    replaceChildren(results, h('p', {class: 'hint'}, `${shown.length} of ${jobs.length} tasks`),
      table(['Task', 'Kind', 'VM', 'Hosts', 'State', 'By', 'Requested', 'Took'],
        shown.map((job) => [h('a', {href: `#/job/${job.id}`}, job.id), KIND_WORDS[job.kind],
          job.vm, jobTarget(job), stateBadge(job), job.requested_by, when(job.created_at),
          job.finished_at && job.started_at
            ? ms((job.finished_at - job.started_at) * 1000) : '-'])));
  }
  async function load() {
    try {
      jobs = await get(`/jobs?limit=${LIMIT}`);
      draw();
    } catch (err) {
      showError(err);
    }
  }
  for (const control of [byState, byKind, byText, byUser]) {
    control.addEventListener('input', draw);
  }
  replaceChildren(view, heading('Tasks'), alert,
    h('form', {class: 'filters', 'aria-label': 'Filter tasks', onsubmit: (e) => e.preventDefault()},
      field('filter-state', 'State', byState), field('filter-kind', 'Kind', byKind),
      field('filter-text', 'VM or host', byText), field('filter-user', 'Asked by', byUser)),
    results);
  load();
  return {update: (what) => what === 'jobs' && load()};
}
