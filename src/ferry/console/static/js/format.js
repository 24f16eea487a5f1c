// Figures as an admin reads them: 1024-based sizes, rates per second, short durations.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  if (n === null || n === undefined) return '-';
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${Math.abs(value) < 10 ? value.toFixed(1) : value.toFixed(0)} ${UNITS[unit]}`;
}

export function rate(bps) {
  return bps === null || bps === undefined ? '-' : `${bytes(bps)}/s`;
}

export function ms(value) {
  if (value === null || value === undefined) return '-';
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 120000) return `${(value / 1000).toFixed(1)} s`;
  return `${Math.floor(value / 60000)} min ${Math.round((value % 60000) / 1000)} s`;
}

export function clock(unix) {
  if (!unix) return '-';
  return new Date(unix * 1000).toLocaleTimeString([], {hour12: false});
}

export function when(unix) {
  if (!unix) return '-';
  const d = new Date(unix * 1000);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], {hour12: false})}`;
}

export function mib(value) {
  return value === null || value === undefined ? '-' : bytes(value * 1024 * 1024);
}

export function percent(done, total) {
  if (!total) return null;
  return Math.max(0, Math.min(100, Math.round((100 * done) / total)));
}
