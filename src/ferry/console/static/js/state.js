// What the server last pushed, and who wants to hear of a change.

export const state = {inventory: null, jobs: []};
const listeners = new Set();

export function listen(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function receive(name, data) {
  state[name] = data;
  for (const fn of [...listeners]) fn(name);
}

export function findVm(name) {
  return state.inventory?.vms.find((vm) => vm.name === name || vm.uuid === name) ?? null;
}

export function findHost(name) {
  return state.inventory?.hosts.find((host) => host.name === name) ?? null;
}

export const UNFINISHED = new Set(['queued', 'running', 'cancelling']);
