// Charts drawn as SVG from a job's own samples: a line per series, the left axis for
// bytes, the right for rates, and a mark where each iteration of the copy began.

import {s} from './dom.js';
import {bytes, rate} from './format.js';

const W = 640;
const H = 240;
const PAD = {left: 64, right: 72, top: 16, bottom: 32};

function scale(max, size, flip) {
  const top = max > 0 ? max : 1;
  return (v) => (flip ? size - (v / top) * size : (v / top) * size);
}

/**
 * points: [{elapsed_ms, iteration, memory_remaining, dirty_rate_bps, disk_remaining}]
 * Returns an <svg> with role img and a label that says what it shows.
 */
export function copyChart(points, label) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const t0 = points[0].elapsed_ms;
  const tMax = Math.max(1, points[points.length - 1].elapsed_ms - t0);
  const left = Math.max(...points.map((p) => Math.max(p.memory_remaining, p.disk_remaining)));
  const right = Math.max(...points.map((p) => p.dirty_rate_bps));
  const x = (p) => PAD.left + ((p.elapsed_ms - t0) / tMax) * plotW;
  const yLeft = scale(left, plotH, true);
  const yRight = scale(right, plotH, true);
  const line = (field, y) => points.map((p, i) =>
    `${i ? 'L' : 'M'}${x(p).toFixed(1)},${(PAD.top + y(p[field])).toFixed(1)}`).join(' ');
  const marks = points.filter((p, i) => i > 0 && p.iteration !== points[i - 1].iteration);
  const ticks = [0, 0.5, 1];
  const hasDisk = points.some((p) => p.disk_remaining > 0);
  return s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label},
    s('title', {}, label),
    ticks.map((f) => s('g', {class: 'tick'},
      s('line', {x1: PAD.left, x2: W - PAD.right, y1: PAD.top + plotH * (1 - f),
        y2: PAD.top + plotH * (1 - f)}),
      s('text', {x: PAD.left - 6, y: PAD.top + plotH * (1 - f) + 4, 'text-anchor': 'end'},
        bytes(left * f)),
      s('text', {x: W - PAD.right + 6, y: PAD.top + plotH * (1 - f) + 4}, rate(right * f)))),
    marks.map((p) => s('g', {class: 'iteration'},
      s('line', {x1: x(p), x2: x(p), y1: PAD.top, y2: PAD.top + plotH}),
      s('text', {x: x(p) + 3, y: PAD.top + 10}, `it ${p.iteration}`))),
    s('path', {d: line('memory_remaining', yLeft), class: 'series remaining'}),
    hasDisk ? s('path', {d: line('disk_remaining', yLeft), class: 'series disk'}) : null,
    s('path', {d: line('dirty_rate_bps', yRight), class: 'series dirty'}),
    s('text', {x: PAD.left, y: H - 8}, '0 s'),
    s('text', {x: W - PAD.right, y: H - 8, 'text-anchor': 'end'},
      `${(tMax / 1000).toFixed(1)} s`),
    s('g', {class: 'legend'},
      s('text', {x: PAD.left + 60, y: H - 8, class: 'remaining'}, '— memory remaining'),
      hasDisk ? s('text', {x: PAD.left + 210, y: H - 8, class: 'disk'}, '— disk remaining')
        : null,
      s('text', {x: PAD.left + 340, y: H - 8, class: 'dirty'}, '— dirty rate (right)')));
}

/** The job's phases on a time line, from its request to its end (or now). */
export function timeline(job, now) {
  const events = job.events;
  if (!events.length) return null;
  const start = events[0].at;
  const end = Math.max(job.finished_at || now, events[events.length - 1].at, start + 0.001);
  const left = 150;  // room for the phases' names
  const width = W - left - PAD.right;
  const x = (t) => left + ((t - start) / (end - start)) * width;
  const phases = [];
  for (const e of events) {
    if (!phases.length || phases[phases.length - 1].phase !== e.phase) {
      phases.push({phase: e.phase, at: e.at});
    }
  }
  const rowH = 18;
  const height = PAD.top + phases.length * rowH + 28;
  return s('svg', {viewBox: `0 0 ${W} ${height}`, class: 'timeline', role: 'img',
    'aria-label': `timeline of ${phases.length} phases over ${(end - start).toFixed(1)} s`},
  phases.map((p, i) => {
    const until = i + 1 < phases.length ? phases[i + 1].at : end;
    const y = PAD.top + i * rowH;
    return s('g', {class: `phase ${p.phase}`},
      s('text', {x: left - 6, y: y + 12, 'text-anchor': 'end'}, p.phase),
      s('rect', {x: x(p.at), y, width: Math.max(2, x(until) - x(p.at)), height: rowH - 4}),
      s('text', {x: Math.min(x(until) + 4, W - PAD.right + 4), y: y + 12, class: 'dur'},
        `${((until - p.at) * 1000).toFixed(0)} ms`));
  }),
  s('text', {x: left, y: height - 6}, '0 s'),
  s('text', {x: W - PAD.right, y: height - 6, 'text-anchor': 'end'},
    `${(end - start).toFixed(2)} s`));
}
