// A job: its phases on a time line, the copy drawn from its samples, and its report.

import {get} from '../api.js';
import {facts, h, replaceChildren, table} from '../dom.js';
import {bytes, clock, ms, percent, rate, when} from '../format.js';
import {copyChart, timeline} from '../chart.js';
import {copyState, jobTarget, jobTitle, progressBar, stateBadge} from '../jobs.js';
import {state, UNFINISHED} from '../state.js';
import {cancelButton} from '../tasks.js';
import {alertBox, heading} from './common.js';

function heartbeat(report) {
  if (report.heartbeat_gap_ms === null || report.heartbeat_gap_ms === undefined) return '-';
  return `${ms(report.heartbeat_gap_ms)} longest gap, ${report.heartbeat_lost ?? 0} lost`;
}

function disksTable(disks) {
  const rows = Object.entries(disks || {}).map(([target, d]) => [target, d.format, d.target,
    `${bytes(d.copied)} of ${bytes(d.capacity)}`,
    d.target_allocation === null ? 'unknown' : bytes(d.target_allocation), d.mode || '-']);
  return rows.length ? table(['Disk', 'Format', 'Target file', 'Copied', 'Allocated',
    'Mode'], rows, 'Disks') : null;
}

function warningsList(warnings) {
  if (!warnings?.length) return null;
  return h('ul', {class: 'warnings-list'}, warnings.map((w) => h('li', {},
    h('strong', {}, w.code), ` ${w.message}`, w.remedy ? ` Remedy: ${w.remedy}` : '')));
}

function liveReport(r) {
  return [facts([
    ['Total', ms(r.total_ms)],
    ['Downtime', ms(r.downtime_ms)],
    ['Heartbeat', h('span', {id: 'report-heartbeat'}, heartbeat(r))],
    ['Data sent', `${bytes(r.data_bytes)}${r.data_bytes_basis ? ` (${r.data_bytes_basis})` : ''}`],
    ['Memory', bytes(r.memory_total)],
    ['Iterations', r.iterations ?? '-'],
    ['Highest dirty rate', rate(r.max_dirty_rate_bps)],
    ['Highest throttle', r.max_throttle_pct ? `${r.max_throttle_pct} %` : 'none'],
    ['Policy', r.policy],
    ['Policy actions', r.policy_actions?.length ? r.policy_actions.join('; ') : 'none'],
    ['Stream', r.encrypted === false ? 'CLEAR TEXT (allowed by the admin)'
      : r.encrypted ? 'encrypted (TLS)' : '-'],
    ['Running on destination after', ms(r.running_on_dest_ms)],
    ['Outcome', r.outcome || r.rollback || 'as libvirt reported'],
  ], 'Report'), warningsList(r.warnings), disksTable(r.disks)];
}

function copyReport(r) {
  return [facts([
    ['Total', ms(r.total_ms)],
    ['Datastore', r.datastore],
    ['Heartbeat', 'heartbeat_gap_ms' in r ? h('span', {id: 'report-heartbeat'}, heartbeat(r))
      : 'powered off'],
    ['Transport', r.transport],
    ['Clean-up', r.cleanup_error || 'done'],
  ].filter(([, v]) => v !== undefined), 'Report'), disksTable(r.disks)];
}

function evacuationReport(r) {
  return [facts([['Total', ms(r.total_ms)], ['Stopped by', r.error || 'nothing']], 'Report'),
    table(['VM', 'Moved to', 'Job'], Object.entries(r.moved).map(([vm, host]) => [vm, host,
      r.jobs[vm] ? h('a', {href: `#/job/${r.jobs[vm]}`}, r.jobs[vm]) : '-']), 'Moved'),
    table(['VM', 'Why it stayed'], Object.entries(r.not_moved), 'Not moved')];
}

export function reportOf(job) {
  const r = job.report;
  if (!r) return [h('p', {class: 'hint'}, job.error || 'No report yet.')];
  if (job.kind === 'evacuate') return evacuationReport(r);
  if (job.kind === 'migrate' || job.kind === 'migrate-with-storage') return liveReport(r);
  return copyReport(r);
}

function diskBars(job) {
  const disks = job.progress?.disks;
  if (!disks || job.state !== 'running') return null;
  return h('ul', {class: 'disk-bars'}, Object.entries(disks).map(([target, d]) =>
    h('li', {}, h('label', {}, target, ' ',
      h('progress', {max: 100, value: percent(d.copied, d.total) ?? 0,
        'aria-label': `disk ${target} copied`})),
    ` ${bytes(d.copied)} of ${bytes(d.total)} · ${rate(d.rate_bps)}` +
    `${d.mode ? ` · ${d.mode}` : ''}`)));
}

export function mount(view, id) {
  const [alert, showError] = alertBox();
  let job = null;

  function draw() {
    if (!job) return;
    const trace = job.report?.trace?.length ? job.report.trace : job.progress?.trace || [];
    const copy = copyState(job);
    replaceChildren(view, 
      heading(jobTitle(job), 'Task', cancelButton(job, showError)),
      alert,
      h('div', {class: 'columns'},
        h('section', {class: 'card'}, h('h2', {}, 'Summary'), facts([
          ['State', h('span', {id: 'job-state'}, stateBadge(job))],
          ['Phase', h('span', {id: 'job-phase'}, job.phase)],
          ['Hosts', jobTarget(job)],
          ['Asked by', job.requested_by],
          ['Requested', when(job.created_at)],
          ['Finished', job.finished_at ? when(job.finished_at) : '-'],
          ['Server', job.owner],
          ['Error', job.error],
        ], 'Task summary'),
        UNFINISHED.has(job.state) ? h('div', {class: 'live', id: 'job-live'},
          progressBar(job), h('p', {id: 'job-figures'}, copy ? copy[2] : 'starting…'),
          diskBars(job)) : null),
        h('section', {class: 'card'}, h('h2', {}, 'Phases'),
          timeline(job, Date.now() / 1000))),
      trace.length > 1 ? h('section', {class: 'card'},
        h('h2', {}, 'The copy, sample by sample'),
        copyChart(trace, `memory remaining and dirty rate over ${trace.length} samples`)) : null,
      h('section', {class: 'card', id: 'job-report'}, h('h2', {}, 'Report'), reportOf(job)),
      h('section', {class: 'card'}, h('h2', {}, 'Events'),
        table(['Time', 'Phase', 'Event'], job.events.map((e) => [clock(e.at), e.phase,
          e.message]))));
  }

  async function load() {
    try {
      job = await get(`/jobs/${encodeURIComponent(id)}`);
      draw();
    } catch (err) {
      showError(err);
      replaceChildren(view, heading(`Task ${id}`), alert);
    }
  }
  load();
  // The pushed list says when the job changed; its whole record (events included, which
  // the list leaves out) is then read again.
  let seen = null;
  return {
    update(what) {
      if (what !== 'jobs' || !job) return;
      const pushed = state.jobs.find((j) => j.id === id);
      const now = pushed ? JSON.stringify(pushed) : null;
      if ((pushed && now !== seen) || (!pushed && UNFINISHED.has(job.state))) load();
      seen = now;
    },
  };
}
