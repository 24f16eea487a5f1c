// What a job is doing, in a few words and one bar: shared by the task pane and pages.

import {bytes, percent, rate} from './format.js';
import {h} from './dom.js';

export function jobTitle(job) {
  return `${KIND_WORDS[job.kind] || job.kind} ${job.kind === 'evacuate' ? job.source_host : job.vm}`;
}

export const KIND_WORDS = {
  migrate: 'Change host', 'migrate-with-storage': 'Change host and datastore',
  'storage-migrate': 'Change datastore', 'cold-migrate': 'Cold migrate',
  evacuate: 'Enter maintenance mode',
};

export function jobTarget(job) {
  if (job.kind === 'evacuate') return job.source_host;
  return `${job.source_host} → ${job.dest_host || job.source_host}`;
}

/** [done, total, words] of the job's copy so far; null when it has no figures yet. */
export function copyState(job) {
  const p = job.progress;
  if (!p) return null;
  if (p.memory_total !== undefined && p.memory_total !== null) {
    const diskLeft = p.disk_remaining || 0;
    if (p.disk_total && diskLeft > 0) {
      return [p.disk_processed, p.disk_total,
        `disks ${bytes(p.disk_processed)} copied, ${bytes(diskLeft)} left`];
    }
    const done = (p.memory_total || 0) - (p.memory_remaining || 0);
    return [done, p.memory_total, `${bytes(p.memory_processed)} sent, ` +
      `${bytes(p.memory_remaining)} left · ${rate(p.memory_bps)} · iteration ` +
      `${p.iteration ?? '-'} · dirty ${rate(p.dirty_rate_bps)}`];
  }
  if (p.disks) {
    const disks = Object.values(p.disks);
    const copied = disks.reduce((sum, d) => sum + d.copied, 0);
    const total = disks.reduce((sum, d) => sum + d.total, 0);
    const speed = disks.reduce((sum, d) => sum + (d.rate_bps || 0), 0);
    return [copied, total, `${bytes(copied)} of ${bytes(total)} copied, ` +
      `${bytes(total - copied)} left · ${rate(speed)}`];
  }
  if (p.vms) {
    const all = Object.values(p.vms);
    const done = all.filter((vm) => vm.state === 'succeeded').length;
    return [done, all.length, `${done} of ${all.length} VMs moved`];
  }
  return null;
}

export function progressBar(job, label) {
  const copy = copyState(job);
  const value = copy ? percent(copy[0], copy[1]) : null;
  return h('progress', {max: 100, value: job.state === 'succeeded' ? 100 : value ?? undefined,
    'aria-label': label || `progress of ${jobTitle(job)}`});
}

export function stateBadge(job) {
  const kinds = {succeeded: 'good', failed: 'bad', cancelled: 'warn', running: 'info',
    queued: 'info', cancelling: 'warn'};
  return h('span', {class: `badge ${kinds[job.state] || ''}`, 'data-state': job.state},
    job.state);
}
