// Sign-in, the page's frame (tree, view, Recent Tasks) and the routes of the views.

import {ApiError, resume, session, signIn, signOut, stream} from './api.js';
import {h, replaceChildren} from './dom.js';
import {listen, receive, state} from './state.js';
import {renderTasks} from './tasks.js';
import {renderTree} from './tree.js';
import * as cluster from './views/cluster.js';
import * as home from './views/home.js';
import * as host from './views/host.js';
import * as job from './views/job.js';
import * as jobs from './views/jobs.js';
import * as places from './views/places.js';
import * as vm from './views/vm.js';
import * as wizard from './views/wizard.js';

const ROUTES = [
  [/^$/, home.mount],
  [/^vm\/([^/]+)$/, vm.mount],
  [/^vm\/([^/]+)\/migrate$/, wizard.mount],
  [/^host\/([^/]+)$/, host.mount],
  [/^cluster\/([^/]+)$/, cluster.mount],
  [/^job\/([^/]+)$/, job.mount],
  [/^jobs$/, jobs.mount],
  [/^datastores$/, places.mountDatastores],
  [/^datastore\/([^/]+)$/, places.mountDatastores],
  [/^networks$/, places.mountNetworks],
  [/^network\/([^/]+)$/, places.mountNetworks],
];

const $ = (id) => document.getElementById(id);
let current = null;  // the shown view's {update, dispose}
let stopStream = null;

function route() {
  current?.dispose?.();
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  const view = $('view');
  view.replaceChildren();
  for (const [pattern, mount] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      current = mount(view, ...match.slice(1)) || null;
      break;
    }
  }
  if (!current && view.childElementCount === 0) {
    view.append(h('h1', {}, 'Not found'), h('p', {}, `Nothing is at ${path}.`));
  }
  markSelected();
}

function markSelected() {
  for (const link of $('tree').querySelectorAll('a')) {
    if (link.getAttribute('href') === location.hash) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function onPush(name) {
  if (name === 'inventory') {
    replaceChildren($('tree'), renderTree(state.inventory));
    markSelected();
  }
  if (name === 'jobs') renderTasks($('tasks-body'), state.jobs);
  current?.update?.(name);
}

function showSignIn(message) {
  stopStream?.();
  stopStream = null;
  $('shell').hidden = true;
  $('signout').hidden = true;
  $('whoami').textContent = '';
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-user').focus();
}

function start(who) {
  $('signin').hidden = true;
  $('shell').hidden = false;
  $('signout').hidden = false;
  $('whoami').textContent = `${who.user} (${who.role})`;
  stopStream = stream((name, data) => {
    if (name === 'signed-out') {
      signOut();
      showSignIn(`Signed out: ${data.message}`);
      return;
    }
    receive(name, data);
  }, (status) => {
    $('feed').textContent = status === 'live' ? 'live' : 'reconnecting…';
    $('feed').dataset.status = status;
  });
  route();
}

listen(onPush);
window.addEventListener('hashchange', route);

$('signin').addEventListener('submit', async (event) => {
  event.preventDefault();
  const user = $('signin-user').value.trim();
  const token = $('signin-token').value.trim();
  try {
    const who = await signIn(user, token);
    $('signin-token').value = '';
    start(who);
  } catch (err) {
    $('signin-error').textContent = err instanceof ApiError ? err.message : String(err);
  }
});

$('signout').addEventListener('click', () => {
  signOut();
  showSignIn('');
});

resume().then((who) => (who ? start(who) : showSignIn(session.token ? 'Signed out' : '')));
