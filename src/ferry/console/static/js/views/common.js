// Pieces several pages share: a heading with actions, an alert, a pending view.

import {ApiError} from '../api.js';
import {h} from '../dom.js';
import {state} from '../state.js';

export function heading(title, kind, ...actions) {
  return h('div', {class: 'heading'},
    h('h1', {}, kind ? h('span', {class: 'kind'}, kind) : null, title),
    h('div', {class: 'actions'}, actions));
}

/** An alert region and a function that shows an error (or clears it with null). */
export function alertBox() {
  const box = h('p', {class: 'error', role: 'alert'});
  const show = (err) => {
    box.textContent = err === null ? '' : err instanceof ApiError ? err.message : String(err);
  };
  return [box, show];
}

/** The pushed inventory, once it came; the view re-renders on the next push otherwise. */
export function inventory() {
  return state.inventory;
}

export function needs(role, what) {
  return `${what} needs role ${role}`;
}

/** A view that ``draw`` makes now and again at each push of ``part``. */
export function redrawnOn(part, draw) {
  draw();
  return {update: (pushed) => pushed === part && draw()};
}

/** A select of the convergence policies (GET /policies) for a default: ``current`` is
 * the one set (null: none of its own, which ``unset`` names); ``pick`` gets the name
 * chosen, or null. */
export function policyDefault(id, label, policies, current, unset, disabled, pick) {
  const select = h('select', {id, name: id, disabled},
    h('option', {value: ''}, unset),
    policies.map((p) => h('option', {value: p.name, title: p.description}, p.name)));
  select.value = current || '';
  select.addEventListener('change', () => pick(select.value || null));
  return h('div', {class: 'field'}, h('label', {for: id}, label), select);
}
